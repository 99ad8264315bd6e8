/**
 * Realtime (DESIGN §5): one shared WebSocket per client carries every `onSnapshot` listener. It
 * authenticates first, re-authenticates when the access token changes, reconnects with
 * exponential backoff and jitter, and resubscribes with `resumeFrom` = the last version each
 * subscription saw, so a reconnect costs only the changes missed.
 *
 * @module
 */

import type { Auth } from './auth.js';
import { unrefTimer } from './auth.js';
import type { ClientContext } from './context.js';
import { HearthError } from './errors.js';
import type { Query } from './query.js';
import type { DocumentReference } from './references.js';
import {
  DocumentSnapshot,
  missingSnapshot,
  QuerySnapshot,
  snapshotFromWire,
  type DocumentChange,
  type DocumentData,
  type WireDocument,
} from './snapshot.js';
import { OrderedView, type AppliedChange, type WireChange } from './view.js';

/** Stops a listener. Calling it twice is harmless. */
export type Unsubscribe = () => void;

/** The part of the WebSocket API the SDK uses (browsers' `WebSocket` and the `ws` package fit). */
export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: any) => void) | null;
  onmessage: ((event: { data: any }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: any) => void) | null;
}

/** A WebSocket constructor (`globalThis.WebSocket`, `ws`'s default export, or a test fake). */
export type WebSocketConstructor = new (url: string) => WebSocketLike;

/** Tuning of the realtime connection (defaults suit production). */
export interface RealtimeOptions {
  /** First reconnect delay cap in ms (default 500); doubles per failed attempt. */
  reconnectBaseMs?: number;
  /** Largest reconnect delay in ms (default 30 000). */
  reconnectMaxMs?: number;
  /** Client ping interval in ms (default 25 000); the socket is recycled after two silent intervals. */
  heartbeatMs?: number;
  /** Delay before closing a socket that has no listeners left (default 1 000 ms). */
  idleCloseMs?: number;
}

const OPEN = 1;

interface Subscription {
  id: string;
  /** The `doc` or `query` part of the subscribe message. */
  target: { doc: string } | { query: unknown };
  /** Last `version` seen: sent as `resumeFrom` on resubscribe. */
  version: number | undefined;
  view: OrderedView<WireDocument>;
  /** Delivers a snapshot to the listener after the view changed. */
  deliver(applied: AppliedChange<WireDocument>[], version: number | undefined, first: boolean): void;
  fail(error: HearthError): void;
  delivered: boolean;
  /** Set while recovering from an `unauthenticated` error by refreshing the token (once). */
  authRetried: boolean;
}

type ConnectionState = 'idle' | 'connecting' | 'authenticating' | 'ready';

/** @internal */
export interface RealtimeConfig extends RealtimeOptions {
  url: string;
  auth: Auth;
  context: ClientContext;
  webSocket?: WebSocketConstructor | undefined;
  random?: () => number;
}

/** The client's realtime connection. Reached through listeners, not directly. @internal */
export class Realtime {
  private socket: WebSocketLike | null = null;
  private state: ConnectionState = 'idle';
  private readonly subscriptions = new Map<string, Subscription>();
  private nextId = 1;
  private attempt = 0;
  private readyAt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private idleTimer: ReturnType<typeof setTimeout> | null = null;
  private heartbeatTimer: ReturnType<typeof setInterval> | null = null;
  private lastMessageAt = 0;
  private authRecoveries = 0;
  /** The uid the server confirmed in `ready` (null for the service key or no identity). */
  private socketUid: string | null = null;
  private closed = false;
  private readonly stopTokenListener: () => void;
  private readonly reconnectBaseMs: number;
  private readonly reconnectMaxMs: number;
  private readonly heartbeatMs: number;
  private readonly idleCloseMs: number;
  private readonly random: () => number;

  constructor(private readonly config: RealtimeConfig) {
    this.reconnectBaseMs = config.reconnectBaseMs ?? 500;
    this.reconnectMaxMs = config.reconnectMaxMs ?? 30_000;
    this.heartbeatMs = config.heartbeatMs ?? 25_000;
    this.idleCloseMs = config.idleCloseMs ?? 1_000;
    this.random = config.random ?? Math.random;
    this.stopTokenListener = config.auth.onTokenChange((token) => this.tokenChanged(token));
  }

  /** Number of reconnect attempts since the last good connection (for tests and diagnostics). */
  get reconnectAttempts(): number {
    return this.attempt;
  }

  /** The connection state (for tests and diagnostics). */
  get connectionState(): ConnectionState {
    return this.state;
  }

  listenDocument<T extends DocumentData>(
    ref: DocumentReference<T>,
    next: (snapshot: DocumentSnapshot<T>) => void,
    error?: (error: HearthError) => void,
  ): Unsubscribe {
    const context = this.config.context;
    return this.add({ doc: ref.path }, error, (subscription) => {
      const current = subscription.view.docs[0];
      const snapshot = current ? snapshotFromWire<T>(context, current) : missingSnapshot(ref);
      safeCall(() => next(snapshot));
    });
  }

  listenQuery<T extends DocumentData>(
    query: Query<T>,
    next: (snapshot: QuerySnapshot<T>) => void,
    error?: (error: HearthError) => void,
  ): Unsubscribe {
    const context = this.config.context;
    const body = query.toJSON(); // Validates cursors now, so a bad query throws synchronously.
    // Snapshots are reused across deliveries so unchanged documents keep their identity.
    const cache = new Map<string, { version: number | undefined; snapshot: DocumentSnapshot<T> }>();
    const toSnapshot = (doc: WireDocument): DocumentSnapshot<T> => {
      const hit = cache.get(doc.path);
      if (hit && hit.version === doc.version && doc.version !== undefined) return hit.snapshot;
      const snapshot = snapshotFromWire<T>(context, doc);
      cache.set(doc.path, { version: doc.version, snapshot });
      return snapshot;
    };
    return this.add({ query: body }, error, (subscription, applied, version) => {
      const docs = subscription.view.docs.map(toSnapshot);
      const changes: DocumentChange<T>[] = applied.map((change) => ({
        type: change.type,
        doc: toSnapshot(change.doc),
        oldIndex: change.oldIndex,
        newIndex: change.newIndex,
      }));
      const live = new Set(subscription.view.docs.map((doc) => doc.path));
      for (const path of cache.keys()) if (!live.has(path)) cache.delete(path);
      safeCall(() => next(new QuerySnapshot<T>(query, docs, changes, undefined, version)));
    });
  }

  /** Closes the socket and ends every listener silently (client shutdown). */
  close(): void {
    this.closed = true;
    this.stopTokenListener();
    this.subscriptions.clear();
    this.clearTimers();
    this.dropSocket(1000, 'client closed');
    this.state = 'idle';
  }

  // ---- subscriptions ------------------------------------------------------------------------

  private add(
    target: Subscription['target'],
    onError: ((error: HearthError) => void) | undefined,
    emit: (subscription: Subscription, applied: AppliedChange<WireDocument>[], version: number | undefined) => void,
  ): Unsubscribe {
    if (this.closed) throw new HearthError('failed_precondition', 'the client is closed', { status: 0 });
    const id = `s${this.nextId++}`;
    const subscription: Subscription = {
      id,
      target,
      version: undefined,
      view: new OrderedView<WireDocument>(),
      delivered: false,
      authRetried: false,
      deliver: (applied, version, first) => {
        // A resume that brought nothing new is not worth a callback.
        if (!first && applied.length === 0) return;
        subscription.delivered = true;
        emit(subscription, applied, version);
      },
      fail: (error) => {
        if (onError) safeCall(() => onError(error));
        else console.error(`hearth: realtime listener ${id} ended`, error);
      },
    };
    this.subscriptions.set(id, subscription);
    this.cancelIdleClose();
    if (this.state === 'ready') this.sendSubscribe(subscription);
    else if (this.state === 'idle' && !this.reconnectTimer) void this.connect();
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      if (this.subscriptions.delete(id) && this.state === 'ready') this.send({ type: 'unsubscribe', id });
      if (this.subscriptions.size === 0) this.scheduleIdleClose();
    };
  }

  private sendSubscribe(subscription: Subscription): void {
    const message: Record<string, unknown> = { type: 'subscribe', id: subscription.id, ...subscription.target };
    if (subscription.version !== undefined) message.resumeFrom = subscription.version;
    this.send(message);
  }

  // ---- connection ---------------------------------------------------------------------------

  private async connect(): Promise<void> {
    if (this.closed || this.subscriptions.size === 0) {
      this.state = 'idle';
      return;
    }
    this.state = 'connecting';
    let socket: WebSocketLike;
    try {
      const Constructor = await resolveWebSocket(this.config.webSocket);
      socket = new Constructor(this.config.url);
    } catch (cause) {
      // No WebSocket implementation, or a URL it refuses: retrying cannot help.
      const error =
        cause instanceof HearthError ? cause : new HearthError('unavailable', `cannot open the realtime socket: ${String(cause)}`, { status: 0, cause });
      this.state = 'idle';
      this.failAll(error);
      return;
    }
    if (this.closed) {
      socket.close(1000, 'client closed');
      return;
    }
    this.socket = socket;
    socket.onopen = () => {
      if (this.socket !== socket) return;
      void this.authenticate(socket);
    };
    socket.onmessage = (event) => {
      if (this.socket !== socket) return;
      this.lastMessageAt = Date.now();
      this.handleMessage(event.data);
    };
    socket.onerror = () => {
      // Every error is followed by a close event; reconnecting happens there.
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.stopHeartbeat();
      this.state = 'idle';
      if (this.readyAt && Date.now() - this.readyAt > 5_000) this.attempt = 0;
      this.readyAt = 0;
      if (!this.closed && this.subscriptions.size > 0) this.scheduleReconnect();
    };
  }

  private async authenticate(socket: WebSocketLike): Promise<void> {
    this.state = 'authenticating';
    let bearer: { token: string } | null = null;
    try {
      bearer = await this.config.auth.bearer();
    } catch {
      bearer = null; // The session was rejected; connect as whatever is left (service key or nobody).
    }
    if (this.socket !== socket) return;
    // Signed out, the socket authenticates as nobody (`token: null`, a Hearth extension of
    // DESIGN §5), so rules that make data public still let the listener through.
    this.send({ type: 'auth', token: bearer ? bearer.token : null });
    // Subscriptions go out when `ready` arrives.
  }

  private becomeReady(): void {
    this.state = 'ready';
    this.readyAt = Date.now();
    this.lastMessageAt = Date.now();
    this.startHeartbeat();
    for (const subscription of this.subscriptions.values()) this.sendSubscribe(subscription);
  }

  private handleMessage(data: unknown): void {
    let message: any;
    try {
      message = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer));
    } catch {
      return; // Not ours to interpret; the protocol is JSON text frames only.
    }
    if (!message || typeof message.type !== 'string') return;
    switch (message.type) {
      case 'ready':
        this.socketUid = typeof message.uid === 'string' ? message.uid : null;
        if (this.state === 'authenticating') this.becomeReady();
        return;
      case 'pong':
        return;
      case 'snapshot': {
        const subscription = this.subscriptions.get(message.id);
        if (!subscription) return;
        this.authRecoveries = 0;
        subscription.authRetried = false;
        const first = !subscription.delivered;
        if (typeof message.version === 'number') subscription.version = message.version;
        const docs: WireDocument[] = Array.isArray(message.docs) ? message.docs : [];
        const applied = subscription.view.applySnapshot(docs);
        subscription.deliver(applied, subscription.version, first);
        return;
      }
      case 'changes': {
        const subscription = this.subscriptions.get(message.id);
        if (!subscription) return;
        this.authRecoveries = 0;
        subscription.authRetried = false;
        const first = !subscription.delivered;
        if (typeof message.version === 'number') subscription.version = message.version;
        const changes: WireChange<WireDocument>[] = Array.isArray(message.changes) ? message.changes : [];
        const applied = subscription.view.applyChanges(changes);
        subscription.deliver(applied, subscription.version, first);
        return;
      }
      case 'error':
        this.handleError(message);
        return;
      default:
        return; // Unknown message types are ignored so newer servers stay compatible.
    }
  }

  private handleError(message: { id?: string; code?: string; message?: string }): void {
    const error = new HearthError(message.code ?? 'internal', message.message ?? message.code ?? 'realtime error', { status: 0 });
    if (message.id !== undefined && message.id !== null) {
      const subscription = this.subscriptions.get(message.id);
      if (!subscription) return;
      if (error.code === 'unauthenticated' && !subscription.authRetried && this.config.auth.currentUser) {
        // The token expired before the background refresh ran (e.g. a sleeping laptop). Refresh
        // (which re-sends `auth` on this socket) and subscribe again from the last version seen.
        subscription.authRetried = true;
        void this.config.auth.refresh().then(
          () => {
            if (this.subscriptions.get(subscription.id) === subscription && this.state === 'ready') this.sendSubscribe(subscription);
          },
          () => this.endSubscription(subscription, error),
        );
        return;
      }
      this.endSubscription(subscription, error);
      return;
    }
    // An error for the whole connection (bad or expired token). If the user has a session, one
    // refresh-and-reconnect may fix it; otherwise every subscription is over, as the contract says.
    if (error.code === 'unauthenticated' && this.authRecoveries === 0 && this.config.auth.currentUser) {
      this.authRecoveries++;
      void this.config.auth.refresh().then(
        () => this.restart(),
        () => this.failAll(error),
      );
      return;
    }
    this.failAll(error);
  }

  private endSubscription(subscription: Subscription, error: HearthError): void {
    if (this.subscriptions.get(subscription.id) !== subscription) return;
    this.subscriptions.delete(subscription.id);
    subscription.fail(error);
    if (this.subscriptions.size === 0) this.scheduleIdleClose();
  }

  private failAll(error: HearthError): void {
    const ended = [...this.subscriptions.values()];
    this.subscriptions.clear();
    for (const subscription of ended) subscription.fail(error);
    this.clearTimers();
    this.dropSocket(1000, 'no subscriptions');
    this.state = 'idle';
  }

  /** Reconnects now (resubscribing with `resumeFrom`), e.g. after the identity changed. */
  private restart(): void {
    this.socketUid = null;
    this.dropSocket(1000, 'restart');
    this.state = 'idle';
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.subscriptions.size > 0) void this.connect();
  }

  private tokenChanged(token: string | null): void {
    if (this.closed || !this.socket) return;
    const sameUser = token !== null && this.config.auth.currentUser?.uid === this.socketUid && this.socketUid !== null;
    if (sameUser && (this.state === 'ready' || this.state === 'authenticating')) {
      // Same user, fresh token: the server swaps it in place on the open connection (DESIGN §5).
      this.send({ type: 'auth', token });
      return;
    }
    // Signed in as someone else, or signed out: the server would end every subscription anyway,
    // so reconnect under the new identity and resubscribe.
    this.restart();
  }

  private scheduleReconnect(): void {
    if (this.reconnectTimer || this.closed) return;
    // Exponential backoff with "equal jitter": half the cap is fixed, half random, so retries
    // spread out without ever hammering the server at zero delay.
    const cap = Math.min(this.reconnectMaxMs, this.reconnectBaseMs * 2 ** this.attempt);
    const delay = cap / 2 + this.random() * (cap / 2);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.connect();
    }, delay);
  }

  private scheduleIdleClose(): void {
    this.cancelIdleClose();
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      if (this.subscriptions.size > 0) return;
      if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.stopHeartbeat();
      this.dropSocket(1000, 'idle');
      this.state = 'idle';
    }, this.idleCloseMs);
    unrefTimer(this.idleTimer);
  }

  private cancelIdleClose(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    this.heartbeatTimer = setInterval(() => {
      if (Date.now() - this.lastMessageAt > 2 * this.heartbeatMs) {
        // Two intervals without a word (not even a pong): the connection is dead but nobody told us.
        const socket = this.socket;
        this.dropSocket(4000, 'heartbeat timeout');
        this.state = 'idle';
        this.stopHeartbeat();
        if (socket && this.subscriptions.size > 0) this.scheduleReconnect();
        return;
      }
      this.send({ type: 'ping' });
    }, this.heartbeatMs);
    unrefTimer(this.heartbeatTimer);
  }

  private stopHeartbeat(): void {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = null;
  }

  private clearTimers(): void {
    this.stopHeartbeat();
    this.cancelIdleClose();
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private dropSocket(code: number, reason: string): void {
    const socket = this.socket;
    this.socket = null;
    if (!socket) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    socket.onerror = () => {};
    try {
      socket.close(code, reason);
    } catch {
      // Closing a socket that never opened may throw in some implementations; it is gone anyway.
    }
  }

  private send(message: unknown): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== OPEN) return;
    try {
      socket.send(JSON.stringify(message));
    } catch {
      // The close handler will reconnect and resubscribe.
    }
  }
}

let wsModule: Promise<WebSocketConstructor> | null = null;

/** The WebSocket to use: the option, the global one, or the optional `ws` package in Node. */
async function resolveWebSocket(option: WebSocketConstructor | undefined): Promise<WebSocketConstructor> {
  if (option) return option;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global) return global;
  wsModule ??= (async () => {
    const name = 'ws'; // A variable keeps bundlers from trying to bundle the Node-only package.
    try {
      const module: any = await import(/* webpackIgnore: true */ /* @vite-ignore */ name);
      return (module.WebSocket ?? module.default) as WebSocketConstructor;
    } catch (cause) {
      wsModule = null;
      throw new HearthError('unavailable', 'no WebSocket implementation: on Node < 22 install the "ws" package', { status: 0, cause });
    }
  })();
  return wsModule;
}

function safeCall(callback: () => void): void {
  try {
    callback();
  } catch (error) {
    console.error('hearth: a snapshot listener threw', error);
  }
}
