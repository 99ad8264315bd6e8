/**
 * Auth (DESIGN §3, `/v1/auth`): sign-up/in, anonymous users, linking, sign-out, password reset,
 * email verification, the user profile — and the session behind them: tokens kept in the session
 * store, refreshed shortly before expiry with at most one refresh in flight, and a retry after a
 * 401 on a user token.
 *
 * @module
 */

import { HearthError } from './errors.js';
import type { Transport } from './http.js';
import type { SessionStore } from './session.js';

/** The signed-in user, as the server describes it. */
export interface User {
  uid: string;
  email: string | null;
  emailVerified: boolean;
  displayName: string | null;
  anonymous: boolean;
  /** RFC 3339 creation time. */
  createdAt: string;
  /** Custom claims (set by an admin); also present in the access token. */
  claims: Record<string, unknown>;
}

/** What sign-up, sign-in, anonymous sign-in and linking resolve to. */
export interface AuthResult {
  user: User;
  accessToken: string;
  refreshToken: string;
  /** Access-token lifetime in seconds. */
  expiresIn: number;
}

/** Fields accepted by {@link Auth.updateUser}. A password change needs `currentPassword`. */
export interface UserUpdate {
  displayName?: string | null;
  email?: string;
  password?: string;
  currentPassword?: string;
  [field: string]: unknown;
}

/** The persisted session. @internal */
export interface Session {
  accessToken: string;
  refreshToken: string;
  /** Epoch ms when the access token expires. */
  expiresAt: number;
  /** Epoch ms after which the SDK refreshes before using the token. */
  refreshAt: number;
  user: User | null;
}

/** Listener of sign-in state. */
export type AuthStateListener = (user: User | null) => void;

/** Refresh this long before expiry at most; a fifth of the lifetime for short-lived tokens. */
const MAX_REFRESH_MARGIN_MS = 60_000;

/** @internal */
export function computeRefreshAt(now: number, expiresInSeconds: number): number {
  const lifetime = Math.max(0, expiresInSeconds * 1000);
  return now + lifetime - Math.min(MAX_REFRESH_MARGIN_MS, lifetime / 5);
}

/** @internal */
export interface AuthOptions {
  transport: Transport;
  store: SessionStore;
  storageKey: string;
  serviceKey: string | undefined;
  now?: () => number;
  /** Disable the background refresh timer (tests drive refresh explicitly). */
  backgroundRefresh?: boolean;
}

/**
 * `hearth.auth`. Reached through {@link HearthClient.auth}; construct clients with
 * `createClient`, not this class.
 */
export class Auth {
  private session: Session | null = null;
  private readonly loaded: Promise<void>;
  private refreshing: Promise<Session> | null = null;
  private refreshTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly listeners = new Set<AuthStateListener>();
  private readonly tokenListeners = new Set<(token: string | null) => void>();
  private readonly transport: Transport;
  private readonly store: SessionStore;
  private readonly storageKey: string;
  private readonly serviceKey: string | undefined;
  private readonly now: () => number;
  private readonly backgroundRefresh: boolean;
  private closed = false;

  /** @internal */
  constructor(options: AuthOptions) {
    this.transport = options.transport;
    this.store = options.store;
    this.storageKey = options.storageKey;
    this.serviceKey = options.serviceKey;
    this.now = options.now ?? Date.now;
    this.backgroundRefresh = options.backgroundRefresh ?? true;
    this.loaded = this.load();
  }

  /** The signed-in user, or null. Null until the stored session has loaded (see {@link ready}). */
  get currentUser(): User | null {
    return this.session?.user ?? null;
  }

  /** Resolves once the session store has been read, so {@link currentUser} is meaningful. */
  ready(): Promise<void> {
    return this.loaded;
  }

  /**
   * Calls `listener` with the current user once the stored session has loaded, then on every
   * sign-in, sign-out and profile change. Returns the unsubscribe function.
   */
  onAuthStateChange(listener: AuthStateListener): () => void {
    this.listeners.add(listener);
    void this.loaded.then(() => {
      if (this.listeners.has(listener)) safeCall(listener, this.currentUser);
    });
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Creates a password account and signs in (`POST /v1/auth/signup`). */
  async signUp(params: { email: string; password: string; displayName?: string }): Promise<AuthResult> {
    const { body } = await this.transport.request('POST', '/v1/auth/signup', { body: params, authenticate: false });
    return this.acceptAuthResult(body);
  }

  /** Signs in with email and password; wrong credentials throw `invalid_credentials`. */
  async signIn(params: { email: string; password: string }): Promise<AuthResult> {
    const { body } = await this.transport.request('POST', '/v1/auth/login', { body: params, authenticate: false });
    return this.acceptAuthResult(body);
  }

  /** Creates an anonymous user and signs in as it. */
  async signInAnonymously(): Promise<AuthResult> {
    const { body } = await this.transport.request('POST', '/v1/auth/anonymous', { authenticate: false });
    return this.acceptAuthResult(body);
  }

  /** Turns the signed-in anonymous user into a password account with the same uid. */
  async linkWithPassword(params: { email: string; password: string }): Promise<User> {
    await this.requireSession('linkWithPassword');
    const { body } = await this.transport.request('POST', '/v1/auth/link', { body: params });
    return this.acceptUserOrTokens(body);
  }

  /**
   * Signs out: revokes this session's refresh token on the server (every session of the user with
   * `everywhere: true`) and forgets the local session. The local session is forgotten even when the
   * server cannot be reached; the error is still thrown then.
   */
  async signOut(options: { everywhere?: boolean } = {}): Promise<void> {
    await this.loaded;
    const session = this.session;
    if (!session) return;
    try {
      await this.transport.request('POST', '/v1/auth/logout', {
        body: { refreshToken: session.refreshToken, ...(options.everywhere ? { everywhere: true } : {}) },
      });
    } catch (error) {
      // An already-revoked session is signed out all the same.
      if (!(error instanceof HearthError && error.status === 401)) {
        await this.replaceSession(null);
        throw error;
      }
    }
    await this.replaceSession(null);
  }

  /** Asks the server to mail a password-reset link. Always succeeds for well-formed emails. */
  async sendPasswordReset(email: string): Promise<void> {
    await this.transport.request('POST', '/v1/auth/password-reset/send', { body: { email }, authenticate: false });
  }

  /** Sets a new password with the token from the reset mail; revokes every session of that user. */
  async confirmPasswordReset(token: string, newPassword: string): Promise<void> {
    await this.transport.request('POST', '/v1/auth/password-reset/confirm', {
      body: { token, newPassword },
      authenticate: false,
    });
  }

  /** Mails a verification link to the signed-in user's email. */
  async sendEmailVerification(): Promise<void> {
    await this.requireSession('sendEmailVerification');
    await this.transport.request('POST', '/v1/auth/verify-email/send');
  }

  /** Confirms an email address with the token from the verification mail. */
  async confirmEmailVerification(token: string): Promise<void> {
    await this.transport.request('POST', '/v1/auth/verify-email/confirm', { body: { token } });
    // The stored user (and token claims) now lag behind; refresh both when signed in.
    if (this.session) {
      try {
        await this.refresh();
        await this.getUser();
      } catch {
        // The confirmation itself succeeded; a failed refresh only delays the new claims.
      }
    }
  }

  /** Fetches the signed-in user from the server and updates {@link currentUser}. */
  async getUser(): Promise<User> {
    await this.requireSession('getUser');
    const { body } = await this.transport.request('GET', '/v1/auth/user');
    return this.acceptUserOrTokens(body);
  }

  /**
   * Changes the signed-in user's profile. Changing the password needs `currentPassword` and
   * revokes the user's other sessions.
   */
  async updateUser(update: UserUpdate): Promise<User> {
    await this.requireSession('updateUser');
    const { body } = await this.transport.request('PATCH', '/v1/auth/user', { body: update });
    return this.acceptUserOrTokens(body);
  }

  /** Deletes the signed-in user's account and signs out locally. */
  async deleteUser(): Promise<void> {
    await this.requireSession('deleteUser');
    await this.transport.request('DELETE', '/v1/auth/user');
    await this.replaceSession(null);
  }

  /**
   * Refreshes the access token now (normally automatic). Concurrent callers share one request.
   * A rejected refresh token (`token_reused`, `unauthenticated`) signs the user out locally.
   */
  async refresh(): Promise<void> {
    await this.refreshSession();
  }

  // ---- CredentialSource (used by the transport and realtime) ------------------------------

  /** @internal */
  async bearer(): Promise<{ token: string; kind: 'user' | 'service' } | null> {
    await this.loaded;
    const session = this.session;
    if (session) {
      if (this.now() >= session.refreshAt) {
        try {
          const fresh = await this.refreshSession();
          return { token: fresh.accessToken, kind: 'user' };
        } catch (error) {
          // A network failure while the old token is still valid: use it and let the server
          // decide. A rejected refresh token has signed the user out: report that.
          if (this.session && this.now() < this.session.expiresAt) return { token: this.session.accessToken, kind: 'user' };
          throw error;
        }
      }
      return { token: session.accessToken, kind: 'user' };
    }
    return this.serviceKey ? { token: this.serviceKey, kind: 'service' } : null;
  }

  /** @internal */
  async recoverFromUnauthorized(usedToken: string): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    // Another call may already have refreshed since this request was sent.
    if (session.accessToken !== usedToken) return true;
    try {
      await this.refreshSession();
      return true;
    } catch {
      return false;
    }
  }

  /** Listens to access-token changes (new token, or null on sign-out). @internal */
  onTokenChange(listener: (token: string | null) => void): () => void {
    this.tokenListeners.add(listener);
    return () => this.tokenListeners.delete(listener);
  }

  /** The service key the client was created with, if any. @internal */
  get serviceKeyValue(): string | undefined {
    return this.serviceKey;
  }

  /** Stops the background refresh timer. @internal */
  close(): void {
    this.closed = true;
    this.clearTimer();
  }

  // ---- internals --------------------------------------------------------------------------

  private refreshSession(): Promise<Session> {
    if (this.refreshing) return this.refreshing;
    const attempt = (async () => {
      await this.loaded;
      // Browsers: serialise refreshes across tabs with the Web Locks API, so that a second tab
      // waits and then adopts the session the first one stored (below) instead of racing it.
      const locks = (globalThis as { navigator?: { locks?: { request?: Function } } }).navigator?.locks;
      if (typeof locks?.request === 'function') {
        return (await locks.request(`hearth.refresh:${this.storageKey}`, () => this.refreshNow())) as Session;
      }
      return this.refreshNow();
    })();
    this.refreshing = attempt;
    const clear = () => {
      if (this.refreshing === attempt) this.refreshing = null;
    };
    attempt.then(clear, clear);
    return attempt;
  }

  private async refreshNow(): Promise<Session> {
    const session = this.session;
    if (!session) throw new HearthError('unauthenticated', 'not signed in', { status: 401 });
    // Another client sharing the store (a second tab with 'local') may have rotated the refresh
    // token already; presenting the old one again would look like token theft and revoke the
    // whole session family. Adopt its fresher session instead.
    const shared = await this.readStoredSession();
    if (shared && shared.refreshToken !== session.refreshToken && this.now() < shared.refreshAt && this.session === session) {
      await this.replaceSession(shared, false);
      return shared;
    }
    let body: any;
    try {
      ({ body } = await this.transport.request('POST', '/v1/auth/refresh', {
        body: { refreshToken: session.refreshToken },
        authenticate: false,
      }));
    } catch (error) {
      // Only a verdict on the refresh token itself ends the session; a network error does not.
      if (error instanceof HearthError && (error.status === 401 || error.code === 'token_reused')) {
        if (this.session === session) await this.replaceSession(null);
      }
      throw error;
    }
    if (this.session !== session) {
      // Signed out (or in as someone else) while the refresh was in flight: drop its result.
      throw new HearthError('unauthenticated', 'the session changed during refresh', { status: 401 });
    }
    const next = this.sessionFromBody(body, session.user);
    await this.replaceSession(next);
    return next;
  }

  private async acceptAuthResult(body: any): Promise<AuthResult> {
    await this.loaded;
    const session = this.sessionFromBody(body, null);
    await this.replaceSession(session);
    return {
      user: session.user as User,
      accessToken: session.accessToken,
      refreshToken: session.refreshToken,
      expiresIn: Number(body.expiresIn),
    };
  }

  /** Accepts `{user}`, a bare user, or a full token response (e.g. after a password change). */
  private async acceptUserOrTokens(body: any): Promise<User> {
    if (body && typeof body.accessToken === 'string' && typeof body.refreshToken === 'string') {
      const session = this.sessionFromBody(body, this.session?.user ?? null);
      await this.replaceSession(session);
      return session.user as User;
    }
    const user: User = body && typeof body.user === 'object' && body.user !== null ? body.user : body;
    if (this.session) {
      await this.replaceSession({ ...this.session, user });
    }
    return user;
  }

  private sessionFromBody(body: any, previousUser: User | null): Session {
    if (!body || typeof body.accessToken !== 'string' || typeof body.refreshToken !== 'string') {
      throw new HearthError('internal', 'the server answered without tokens', { status: 0 });
    }
    const now = this.now();
    const expiresIn = Number(body.expiresIn);
    const lifetime = Number.isFinite(expiresIn) && expiresIn > 0 ? expiresIn : 900;
    return {
      accessToken: body.accessToken,
      refreshToken: body.refreshToken,
      expiresAt: now + lifetime * 1000,
      refreshAt: computeRefreshAt(now, lifetime),
      user: body.user ?? previousUser,
    };
  }

  private async requireSession(operation: string): Promise<Session> {
    await this.loaded;
    if (!this.session) throw new HearthError('unauthenticated', `${operation}() needs a signed-in user`, { status: 401 });
    return this.session;
  }

  private async load(): Promise<void> {
    this.session = await this.readStoredSession();
    this.scheduleRefresh();
  }

  private async readStoredSession(): Promise<Session | null> {
    try {
      const text = await this.store.get(this.storageKey);
      if (!text) return null;
      const parsed = JSON.parse(text) as Session;
      if (typeof parsed.accessToken === 'string' && typeof parsed.refreshToken === 'string') return parsed;
    } catch {
      // A corrupt or unreadable stored session is the same as none.
    }
    return null;
  }

  private async replaceSession(next: Session | null, persist = true): Promise<void> {
    const previous = this.session;
    this.session = next;
    if (persist) {
      if (next) await this.store.set(this.storageKey, JSON.stringify(next));
      else await this.store.remove(this.storageKey);
    }
    this.scheduleRefresh();
    if (previous?.accessToken !== next?.accessToken) {
      for (const listener of [...this.tokenListeners]) safeCall(listener, next?.accessToken ?? null);
    }
    if (!sameUser(previous?.user ?? null, next?.user ?? null)) {
      for (const listener of [...this.listeners]) safeCall(listener, next?.user ?? null);
    }
  }

  private scheduleRefresh(): void {
    this.clearTimer();
    if (!this.backgroundRefresh || this.closed || !this.session) return;
    // Keep realtime sockets authenticated without waiting for an HTTP call to trigger refresh.
    const delay = Math.max(0, Math.min(this.session.refreshAt - this.now(), 2 ** 31 - 1));
    const timer = setTimeout(() => {
      this.refreshTimer = null;
      this.refreshSession().catch(() => {
        // Network trouble: the next request (or a later timer after a new session) retries.
        if (this.session && !this.refreshTimer && !this.closed) {
          this.refreshTimer = setTimeout(() => this.scheduleRefresh(), 5_000);
          unrefTimer(this.refreshTimer);
        }
      });
    }, delay);
    unrefTimer(timer);
    this.refreshTimer = timer;
  }

  private clearTimer(): void {
    if (this.refreshTimer) clearTimeout(this.refreshTimer);
    this.refreshTimer = null;
  }
}

function sameUser(a: User | null, b: User | null): boolean {
  if (a === b) return true;
  if (!a || !b) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}

function safeCall<T>(listener: (value: T) => void, value: T): void {
  try {
    listener(value);
  } catch (error) {
    // A throwing listener must not break the SDK's own state changes.
    console.error('hearth: an auth listener threw', error);
  }
}

/** Lets Node exit while only an SDK timer is pending. @internal */
export function unrefTimer(timer: unknown): void {
  (timer as { unref?: () => void })?.unref?.();
}
