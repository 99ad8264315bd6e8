/**
 * `createClient(url, options)`: the facade that wires the transport, auth, references and the
 * realtime connection together.
 *
 * @module
 */

import { Admin } from './admin.js';
import { Auth } from './auth.js';
import { runTransaction, Transaction, WriteBatch, type TransactionOptions } from './batch.js';
import type { ClientContext } from './context.js';
import { invalidArgument } from './errors.js';
import { Transport, type FetchLike } from './http.js';
import { checkId } from './paths.js';
import { initialQueryState, Query } from './query.js';
import { Realtime, type RealtimeOptions, type WebSocketConstructor } from './realtime.js';
import { CollectionReference, DocumentReference } from './references.js';
import { resolveSessionStore, type SessionOption } from './session.js';
import type { DocumentData } from './snapshot.js';

/** Options of {@link createClient}. */
export interface ClientOptions {
  /**
   * Where the signed-in session (tokens and user) is kept: `'memory'` (default), `'local'`
   * (`localStorage`, survives reloads) or a custom `{get, set, remove}` store.
   */
  session?: SessionOption;
  /**
   * Extension for trusted code (Node scripts, admin tools, tests): a service key, sent as
   * `Authorization: Bearer <key>` whenever no user is signed in. Service keys bypass security
   * rules — never ship one to a browser.
   */
  serviceKey?: string;
  /** The `fetch` to use (default: the global one). */
  fetch?: FetchLike;
  /**
   * The WebSocket constructor to use (default: the global `WebSocket`, else the optional `ws`
   * package, loaded on first use).
   */
  WebSocket?: WebSocketConstructor;
  /** Tuning of the realtime connection. */
  realtime?: RealtimeOptions;
  /** Key under which the session is stored (default `hearth.session:<url>`). */
  storageKey?: string;
  /**
   * Give up on an HTTP request after this many milliseconds with an `unavailable` error
   * (default: no limit beyond the platform's own).
   */
  requestTimeoutMs?: number;
}

/** A Hearth client. Create one per server with {@link createClient}. */
export class HearthClient {
  /** Sign-up, sign-in, tokens and the current user. */
  readonly auth: Auth;
  /** The server's base URL, without a trailing slash. */
  readonly url: string;
  private readonly transport: Transport;
  private readonly context: ClientContext;
  private realtimeConnection: Realtime | null = null;
  private readonly serviceKey: string | undefined;
  private adminApi: Admin | null = null;

  /** @internal */
  constructor(url: string, options: ClientOptions = {}) {
    this.url = normaliseBaseUrl(url);
    // Like the auth module, an empty key counts as none.
    this.serviceKey = options.serviceKey || undefined;
    const fetchImpl = options.fetch ?? (globalThis.fetch ? globalThis.fetch.bind(globalThis) : undefined);
    if (!fetchImpl) throw invalidArgument('no fetch available: pass options.fetch (Node ≥ 20 and browsers have one)');
    this.transport = new Transport(this.url, fetchImpl, options.requestTimeoutMs);
    this.auth = new Auth({
      transport: this.transport,
      store: resolveSessionStore(options.session),
      storageKey: options.storageKey ?? `hearth.session:${this.url}`,
      serviceKey: options.serviceKey,
    });
    this.transport.credentials = this.auth;
    const realtimeUrl = this.url.replace(/^http/, 'ws') + '/v1/realtime';
    this.context = {
      transport: this.transport,
      realtime: () => {
        this.realtimeConnection ??= new Realtime({
          ...options.realtime,
          url: realtimeUrl,
          auth: this.auth,
          context: this.context,
          webSocket: options.WebSocket,
        });
        return this.realtimeConnection;
      },
      ref: (path) => new DocumentReference(this.context, path),
    };
  }

  /**
   * The admin API (`/v1/admin`): hooks, rules, indexes, roles, users, minted tokens. Only on a
   * client created with the `serviceKey` option (otherwise reading it throws `invalid_argument`);
   * its requests always carry the service key, also while a user is signed in.
   */
  get admin(): Admin {
    if (this.serviceKey === undefined) {
      throw invalidArgument('hearth.admin needs a client created with the serviceKey option (trusted code only)');
    }
    this.adminApi ??= new Admin(this.transport, this.serviceKey);
    return this.adminApi;
  }

  /** A collection by path: `collection('posts')`, `collection('users/u1/posts')`. */
  collection<T extends DocumentData = DocumentData>(path: string): CollectionReference<T> {
    return new CollectionReference<T>(this.context, path);
  }

  /** A document by path: `doc('posts/p1')`. */
  doc<T extends DocumentData = DocumentData>(path: string): DocumentReference<T> {
    return new DocumentReference<T>(this.context, path);
  }

  /** A query over every collection with this ID, at any depth (`allDescendants: true`). */
  collectionGroup<T extends DocumentData = DocumentData>(collectionId: string): Query<T> {
    checkId(collectionId);
    return new Query<T>(this.context, initialQueryState(collectionId, undefined, true));
  }

  /** A new atomic batch of writes. */
  batch(): WriteBatch {
    return new WriteBatch(this.context);
  }

  /**
   * Runs `body` as an optimistic transaction: reads through `tx.get()`, writes queued on `tx` and
   * committed as one batch guarded by the versions read. On a conflict (`aborted`,
   * `failed_precondition`) `body` runs again, up to 5 attempts — so keep it free of side effects.
   */
  runTransaction<R>(body: (transaction: Transaction) => Promise<R>, options?: TransactionOptions): Promise<R> {
    return runTransaction(this.context, body, options);
  }

  /** The realtime connection (created on first use). @internal */
  get realtime(): Realtime {
    return this.context.realtime();
  }

  /** Closes the realtime socket and stops background token refresh. The client is unusable after. */
  close(): void {
    this.realtimeConnection?.close();
    this.auth.close();
  }
}

/** Creates a client for the Hearth server at `url` (e.g. `http://127.0.0.1:8080`). */
export function createClient(url: string, options: ClientOptions = {}): HearthClient {
  return new HearthClient(url, options);
}

function normaliseBaseUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw invalidArgument(`not a URL: ${JSON.stringify(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw invalidArgument('the server URL must be http:// or https://');
  return `${parsed.origin}${parsed.pathname.replace(/\/+$/, '')}`;
}
