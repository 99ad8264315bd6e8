/**
 * The admin API (DESIGN §3, `/v1/admin`) for trusted code holding the service key: hooks and their
 * delivery log, security rules, composite indexes, roles, users and minted access tokens.
 *
 * Reached as `hearth.admin` on a client created with the `serviceKey` option. Every request is
 * sent with the service key — also while a user is signed in on the same client — and every
 * failure throws a {@link HearthError}, like the rest of the SDK.
 *
 * @module
 */

import type { User } from './auth.js';
import { invalidArgument } from './errors.js';
import type { Transport } from './http.js';

// ---- hooks --------------------------------------------------------------------------------

/** Events a hook can listen to (DESIGN §6); the union stays open for newer servers. */
export type HookEventName =
  | 'document.create'
  | 'document.update'
  | 'document.delete'
  | 'auth.signup'
  | 'auth.login'
  | (string & {});

/**
 * A hook definition as sent to `PUT /v1/admin/hooks/{name}` (DESIGN §6). The server validates it
 * and answers `invalid_argument` with every problem in `details.errors`.
 */
export interface HookDefinition {
  /** The events that call the function. */
  events: HookEventName[];
  /** Document path pattern, like a rules `match`: `posts/{postId}`, `logs/{path=**}`. Required for document events. */
  match?: string | null;
  /** `before`: synchronous, may allow, replace or reject the write. `after`: an at-least-once trigger. */
  mode: 'before' | 'after';
  /** The function's `http(s)` URL. */
  url: string;
  /**
   * The Standard Webhooks secret, `whsec_` + base64 of 24–64 random bytes. May be left out when
   * replacing a hook: the stored secret is kept.
   */
  secret?: string;
  /** Hard timeout of one call (default 5 000 ms; at most the server's `hooks.max_timeout_ms`). */
  timeoutMs?: number;
  /** What a timeout, network error or non-2xx answer of a `before` hook does (default `reject` → 503). */
  onFailure?: 'reject' | 'allow';
  /** Hooks on one event run by ascending `order`, then by name (default 0). */
  order?: number;
}

/** A stored hook as the admin API shows it: defaults filled in, the secret masked (`whsec_****abcd`). */
export interface Hook {
  name: string;
  events: HookEventName[];
  match: string | null;
  mode: 'before' | 'after';
  url: string;
  /** Masked: enough to tell secrets apart, never enough to sign. */
  secret: string;
  timeoutMs: number;
  onFailure: 'reject' | 'allow';
  order: number;
}

/** The state of an `after` hook's delivery. */
export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One delivery of one event to one `after` hook (the event's data is not included). */
export interface HookDelivery {
  /** The event id (also the CloudEvents `id` and `webhook-id` header), stable across retries. */
  id: string;
  /** `document.create`, `auth.signup`, ... */
  event: HookEventName;
  /** The document path, or `users/{uid}` for auth events. */
  subject: string;
  status: DeliveryStatus;
  attempts: number;
  /** RFC 3339 times. */
  createdAt: string;
  lastAttemptAt: string | null;
  nextAttemptAt: string | null;
  finishedAt: string | null;
  lastError: string | null;
}

/** Options of {@link AdminHooks.deliveries}. */
export interface DeliveriesOptions {
  /** Which deliveries to list (default `pending`). */
  status?: DeliveryStatus;
  /** At most this many, oldest first (default 100, at most 1 000). */
  limit?: number;
  /** Continue after this delivery id: the last id of the previous page. */
  after?: string;
}

/** `hearth.admin.hooks`: hook definitions, their delivery log and redelivery. */
export class AdminHooks {
  /** @internal */
  constructor(private readonly api: AdminTransport) {}

  /** Every hook, in run order (`GET /v1/admin/hooks`). */
  async list(): Promise<Hook[]> {
    const { body } = await this.api.request('GET', '/v1/admin/hooks');
    return body.hooks;
  }

  /** One hook by name; `not_found` if there is none. */
  async get(name: string): Promise<Hook> {
    const { body } = await this.api.request('GET', `/v1/admin/hooks/${segment(name, 'hook name')}`);
    return body;
  }

  /**
   * Creates or replaces the hook `name` (`PUT /v1/admin/hooks/{name}`); it applies from the next
   * request. Resolves with the stored hook (secret masked).
   */
  async put(name: string, definition: HookDefinition): Promise<Hook> {
    if (!definition || typeof definition !== 'object') throw invalidArgument('a hook definition must be an object');
    const { body } = await this.api.request('PUT', `/v1/admin/hooks/${segment(name, 'hook name')}`, { body: definition });
    return body;
  }

  /** Deletes the hook; `not_found` if there is none. Its pending deliveries are not sent any more. */
  async delete(name: string): Promise<void> {
    await this.api.request('DELETE', `/v1/admin/hooks/${segment(name, 'hook name')}`);
  }

  /** The delivery log of an `after` hook, oldest first: pending (default), delivered or failed. */
  async deliveries(name: string, options: DeliveriesOptions = {}): Promise<HookDelivery[]> {
    const { body } = await this.api.request('GET', `/v1/admin/hooks/${segment(name, 'hook name')}/deliveries`, {
      query: { status: options.status, limit: options.limit, after: options.after },
    });
    return body.deliveries;
  }

  /**
   * Queues a failed delivery again, with fresh attempts and the same event id; resolves with it,
   * now pending. Pending deliveries are retried already (`not_found`).
   */
  async redeliver(name: string, deliveryId: string): Promise<HookDelivery> {
    const path = `/v1/admin/hooks/${segment(name, 'hook name')}/deliveries/${segment(deliveryId, 'delivery id')}/redeliver`;
    const { body } = await this.api.request('POST', path);
    return body;
  }
}

// ---- rules --------------------------------------------------------------------------------

/** `hearth.admin.rules`: the live security rules source. */
export class AdminRules {
  /** @internal */
  constructor(private readonly api: AdminTransport) {}

  /** The live rules source, or null when no rules are loaded (`GET /v1/admin/rules`). */
  async get(): Promise<string | null> {
    try {
      const { body } = await this.api.request('GET', '/v1/admin/rules', { responseText: true });
      return body;
    } catch (error) {
      if ((error as { code?: string }).code === 'not_found') return null;
      throw error;
    }
  }

  /**
   * Validates `source` and makes it live atomically (`PUT /v1/admin/rules`). A bad ruleset throws
   * `invalid_argument` with every error as `line:column: message` in `details.errors`; the old
   * rules stay live.
   */
  async set(source: string): Promise<void> {
    if (typeof source !== 'string') throw invalidArgument('the rules source must be a string');
    await this.api.request('PUT', '/v1/admin/rules', { text: source });
  }
}

// ---- indexes ------------------------------------------------------------------------------

/** One field of a composite index: `[fieldPath, 'asc' | 'desc']`. */
export type IndexField = [fieldPath: string, direction: 'asc' | 'desc'];

/** A composite index. Queries use it once it is `ready` (existing documents are backfilled first). */
export interface CompositeIndex {
  id: number;
  /** The collection ID it covers (every collection with that ID, at any depth). */
  collection: string;
  fields: IndexField[];
  state: 'building' | 'ready' | (string & {});
}

/** `hearth.admin.indexes`: composite indexes (single-field indexes are automatic). */
export class AdminIndexes {
  /** @internal */
  constructor(private readonly api: AdminTransport) {}

  /** Every composite index with its build state. */
  async list(): Promise<CompositeIndex[]> {
    const { body } = await this.api.request('GET', '/v1/admin/indexes');
    return body.indexes;
  }

  /**
   * Declares a composite index of at least two fields; it starts `building`. `already_exists`
   * if an index covers the same fields.
   */
  async create(index: { collection: string; fields: IndexField[] }): Promise<CompositeIndex> {
    const { body } = await this.api.request('POST', '/v1/admin/indexes', {
      body: { collection: index?.collection, fields: index?.fields },
    });
    return body;
  }

  /** Drops an index; `not_found` if there is none. Its entries are removed in the background. */
  async drop(id: number | string): Promise<void> {
    await this.api.request('DELETE', `/v1/admin/indexes/${segment(String(id), 'index id')}`);
  }
}

// ---- roles --------------------------------------------------------------------------------

/** A role granted to a user in a domain (`default` when none is named); read by `hasRole()` in rules. */
export interface RoleGrant {
  uid: string;
  role: string;
  domain: string;
}

/** `role` includes every permission of `inherits`, in `domain`. */
export interface RoleInheritance {
  role: string;
  inherits: string;
  domain: string;
}

/** `hearth.admin.roles`: role grants and inheritance (casbin RBAC with domains). */
export class AdminRoles {
  /** @internal */
  constructor(private readonly api: AdminTransport) {}

  /** Grants `role` to `uid` (in `domain`, default `default`); resolves with the grant. Granting twice is fine. */
  async grant(grant: { uid: string; role: string; domain?: string }): Promise<RoleGrant> {
    const { body } = await this.api.request('POST', '/v1/admin/roles/grants', { body: grant });
    return body;
  }

  /** Revokes a grant (no error when there was none). */
  async revoke(grant: { uid: string; role: string; domain?: string }): Promise<void> {
    await this.api.request('DELETE', '/v1/admin/roles/grants', { body: grant });
  }

  /** Direct grants of one user (`{uid}`) or of everyone. */
  async grants(filter: { uid?: string } = {}): Promise<RoleGrant[]> {
    const { body } = await this.api.request('GET', '/v1/admin/roles/grants', { query: { uid: filter.uid } });
    return body.grants;
  }

  /** Makes `role` include `inherits` (in `domain`); a cycle is refused with `invalid_argument`. */
  async inherit(edge: { role: string; inherits: string; domain?: string }): Promise<RoleInheritance> {
    const { body } = await this.api.request('POST', '/v1/admin/roles/inherits', { body: edge });
    return body;
  }

  /** Every inheritance edge. */
  async inherits(): Promise<RoleInheritance[]> {
    const { body } = await this.api.request('GET', '/v1/admin/roles/inherits');
    return body.inherits;
  }
}

// ---- users --------------------------------------------------------------------------------

/** A user as the admin API shows it: the public shape plus `disabled`. */
export interface AdminUser extends User {
  disabled: boolean;
}

/** Fields of {@link AdminUsers.create}. Without email and password the user can only get minted tokens. */
export interface NewUserFields {
  email?: string;
  password?: string;
  displayName?: string | null;
  emailVerified?: boolean;
  claims?: Record<string, unknown>;
}

/** Fields {@link AdminUsers.update} may change. Disabling a user ends every session. */
export interface AdminUserUpdate {
  disabled?: boolean;
  displayName?: string | null;
  emailVerified?: boolean;
  /** Replaces the custom claims. */
  claims?: Record<string, unknown>;
}

/** One page of {@link AdminUsers.list}. */
export interface UserPage {
  users: AdminUser[];
  /** Pass as `pageToken` for the next page; absent on the last page. */
  nextPageToken?: string;
}

/** `hearth.admin.users`: every user account. */
export class AdminUsers {
  /** @internal */
  constructor(private readonly api: AdminTransport) {}

  /** One page of users (`limit` default 100, at most 1 000). */
  async list(options: { limit?: number; pageToken?: string } = {}): Promise<UserPage> {
    const { body } = await this.api.request('GET', '/v1/admin/users', {
      query: { limit: options.limit, pageToken: options.pageToken },
    });
    return body;
  }

  /** One user; `not_found` if there is none. */
  async get(uid: string): Promise<AdminUser> {
    const { body } = await this.api.request('GET', `/v1/admin/users/${segment(uid, 'uid')}`);
    return body.user;
  }

  /** Creates a user (`already_exists` if the email is taken). */
  async create(fields: NewUserFields = {}): Promise<AdminUser> {
    const { body } = await this.api.request('POST', '/v1/admin/users', { body: fields });
    return body.user;
  }

  /** Changes `disabled`, `displayName`, `emailVerified` or `claims`. */
  async update(uid: string, fields: AdminUserUpdate): Promise<AdminUser> {
    const { body } = await this.api.request('PATCH', `/v1/admin/users/${segment(uid, 'uid')}`, { body: fields });
    return body.user;
  }

  /** Deletes the user and ends their sessions. */
  async delete(uid: string): Promise<void> {
    await this.api.request('DELETE', `/v1/admin/users/${segment(uid, 'uid')}`);
  }

  /** Replaces the custom claims; they appear in the user's next access token. */
  async setClaims(uid: string, claims: Record<string, unknown>): Promise<AdminUser> {
    const { body } = await this.api.request('PUT', `/v1/admin/users/${segment(uid, 'uid')}/claims`, { body: { claims } });
    return body.user;
  }

  /** Ends every session of the user: their refresh tokens and current access tokens stop working. */
  async revoke(uid: string): Promise<void> {
    await this.api.request('POST', `/v1/admin/users/${segment(uid, 'uid')}/revoke`);
  }
}

// ---- the facade ---------------------------------------------------------------------------

/** What {@link Admin.mintToken} resolves to. */
export interface MintedToken {
  accessToken: string;
  /** Lifetime in seconds. */
  expiresIn: number;
}

/**
 * `hearth.admin`: the admin API. Only on a client created with the `serviceKey` option — never
 * ship a service key to a browser.
 */
export class Admin {
  readonly hooks: AdminHooks;
  readonly rules: AdminRules;
  readonly indexes: AdminIndexes;
  readonly roles: AdminRoles;
  readonly users: AdminUsers;
  private readonly api: AdminTransport;

  /** @internal */
  constructor(transport: Transport, serviceKey: string) {
    this.api = new AdminTransport(transport, serviceKey);
    this.hooks = new AdminHooks(this.api);
    this.rules = new AdminRules(this.api);
    this.indexes = new AdminIndexes(this.api);
    this.roles = new AdminRoles(this.api);
    this.users = new AdminUsers(this.api);
  }

  /**
   * Mints an access token for any `uid` (it need not be a registered user) with extra claims,
   * like Firebase custom tokens (`POST /v1/admin/tokens`).
   */
  async mintToken(uid: string, claims?: Record<string, unknown>): Promise<MintedToken> {
    if (typeof uid !== 'string' || uid === '') throw invalidArgument('mintToken needs a uid');
    const { body } = await this.api.request('POST', '/v1/admin/tokens', { body: claims === undefined ? { uid } : { uid, claims } });
    return body;
  }
}

/** The transport, always speaking with the service key. @internal */
class AdminTransport {
  constructor(
    private readonly transport: Transport,
    private readonly serviceKey: string,
  ) {}

  request(method: string, path: string, options: Parameters<Transport['request']>[2] = {}) {
    return this.transport.request(method, path, { ...options, bearerToken: this.serviceKey });
  }
}

/** One URL path segment from a caller's string, refused locally when empty. */
function segment(value: string, what: string): string {
  if (typeof value !== 'string' || value === '') throw invalidArgument(`${what} must be a non-empty string`);
  return encodeURIComponent(value);
}
