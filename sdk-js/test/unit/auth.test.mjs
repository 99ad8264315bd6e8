import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { computeRefreshAt } from '../../dist/auth.js';
import { fakeFetch, tick, waitFor } from './helpers.mjs';

const user = { uid: 'u1', email: 'ada@example.com', emailVerified: false, displayName: null, anonymous: false, createdAt: '2026-11-25T10:00:00Z', claims: {} };

/**
 * A scripted auth server. Tokens are `at-N` / `rt-N`; `expiresIn` for logins comes from the
 * test so it can make a token stale at once.
 */
function authServer({ loginExpiresIn = 900, refreshExpiresIn = 900, refreshDelayMs = 0, refreshFails } = {}) {
  let generation = 0;
  const issue = (expiresIn) => {
    generation++;
    return { user, accessToken: `at-${generation}`, refreshToken: `rt-${generation}`, expiresIn };
  };
  const fake = fakeFetch(async (request) => {
    switch (request.path) {
      case '/v1/auth/signup':
        return { status: 201, body: issue(loginExpiresIn) };
      case '/v1/auth/login':
        if (request.body.password !== 'right') return { status: 401, body: { error: { code: 'invalid_credentials', message: 'wrong email or password' } } };
        return { body: issue(loginExpiresIn) };
      case '/v1/auth/anonymous':
        return { body: { ...issue(loginExpiresIn), user: { ...user, uid: 'anon', email: null, anonymous: true } } };
      case '/v1/auth/refresh':
        await tick(refreshDelayMs);
        if (refreshFails) return refreshFails;
        return { body: issue(refreshExpiresIn) };
      case '/v1/auth/logout':
        return { status: 204 };
      case '/v1/auth/link':
        return { body: { user: { ...user, uid: 'anon', anonymous: false } } };
      case '/v1/auth/user':
        if (request.method === 'PATCH') return { body: { user: { ...user, ...request.body } } };
        if (request.method === 'DELETE') return { status: 204 };
        return { body: { user } };
      default:
        return { body: { documents: [] } };
    }
  });
  return fake;
}

test('refresh happens a little before expiry: a minute early, or a fifth of short lifetimes', () => {
  assert.equal(computeRefreshAt(0, 900), 840_000);
  assert.equal(computeRefreshAt(0, 10), 8_000);
});

test('signUp stores the session, reports the user and sends the access token', async () => {
  const server = authServer();
  const hearth = createClient('http://h', { fetch: server.fetch });
  const seen = [];
  hearth.auth.onAuthStateChange((u) => seen.push(u?.uid ?? null));
  const { user: created, accessToken, expiresIn } = await hearth.auth.signUp({ email: 'ada@example.com', password: 'pw', displayName: 'Ada' });
  assert.equal(created.uid, 'u1');
  assert.equal(accessToken, 'at-1');
  assert.equal(expiresIn, 900);
  assert.deepEqual(server.calls[0].body, { email: 'ada@example.com', password: 'pw', displayName: 'Ada' });
  assert.equal(server.calls[0].headers.authorization, undefined);
  assert.equal(hearth.auth.currentUser.uid, 'u1');
  await hearth.collection('notes').get();
  assert.equal(server.calls[1].headers.authorization, 'Bearer at-1');
  await tick();
  assert.deepEqual(seen, [null, 'u1']);
  hearth.close();
});

test('wrong credentials throw invalid_credentials and leave the user signed out', async () => {
  const server = authServer();
  const hearth = createClient('http://h', { fetch: server.fetch });
  await assert.rejects(hearth.auth.signIn({ email: 'ada@example.com', password: 'wrong' }), (error) => error instanceof HearthError && error.code === 'invalid_credentials' && error.status === 401);
  assert.equal(hearth.auth.currentUser, null);
});

test('a user session takes precedence over the service key, which returns after sign-out', async () => {
  const server = authServer();
  const hearth = createClient('http://h', { fetch: server.fetch, serviceKey: 'sk' });
  await hearth.collection('n').get();
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await hearth.collection('n').get();
  await hearth.auth.signOut({ everywhere: true });
  await hearth.collection('n').get();
  const queryAuth = server.calls.filter((c) => c.path === '/v1/query').map((c) => c.headers.authorization);
  assert.deepEqual(queryAuth, ['Bearer sk', 'Bearer at-1', 'Bearer sk']);
  const logout = server.calls.find((c) => c.path === '/v1/auth/logout');
  assert.deepEqual(logout.body, { refreshToken: 'rt-1', everywhere: true });
  assert.equal(logout.headers.authorization, 'Bearer at-1');
  assert.equal(hearth.auth.currentUser, null);
  hearth.close();
});

test('concurrent calls with a stale token share one refresh', async () => {
  const server = authServer({ loginExpiresIn: 0.001, refreshDelayMs: 20 });
  const hearth = createClient('http://h', { fetch: server.fetch });
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await tick(5);
  await Promise.all(Array.from({ length: 5 }, () => hearth.collection('notes').get()));
  const refreshes = server.calls.filter((c) => c.path === '/v1/auth/refresh');
  assert.equal(refreshes.length, 1);
  assert.deepEqual(refreshes[0].body, { refreshToken: 'rt-1' });
  const queryAuth = server.calls.filter((c) => c.path === '/v1/query').map((c) => c.headers.authorization);
  assert.deepEqual(queryAuth, Array(5).fill('Bearer at-2'));
  hearth.close();
});

test('a 401 on a user token refreshes once and retries once', async () => {
  const base = authServer();
  let rejected = 0;
  const hearth = createClient('http://h', {
    fetch: async (url, init) => {
      if (url.endsWith('/v1/query') && init.headers.authorization === 'Bearer at-1') {
        rejected++;
        return new Response(JSON.stringify({ error: { code: 'unauthenticated', message: 'token revoked' } }), { status: 401 });
      }
      return base.fetch(url, init);
    },
  });
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await hearth.collection('notes').get();
  assert.equal(rejected, 1);
  assert.equal(base.calls.filter((c) => c.path === '/v1/auth/refresh').length, 1);
  assert.equal(base.calls.filter((c) => c.path === '/v1/query')[0].headers.authorization, 'Bearer at-2');
  hearth.close();
});

test('a 401 that persists after refresh is thrown, not retried forever', async () => {
  const base = authServer();
  const hearth = createClient('http://h', {
    fetch: async (url, init) => {
      if (url.endsWith('/v1/query')) return new Response(JSON.stringify({ error: { code: 'unauthenticated', message: 'no' } }), { status: 401 });
      return base.fetch(url, init);
    },
  });
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await assert.rejects(hearth.collection('notes').get(), { code: 'unauthenticated' });
  assert.equal(base.calls.filter((c) => c.path === '/v1/auth/refresh').length, 1);
  hearth.close();
});

test('a reused refresh token signs the user out', async () => {
  const server = authServer({
    loginExpiresIn: 0.001,
    refreshFails: { status: 401, body: { error: { code: 'token_reused', message: 'session revoked' } } },
  });
  const hearth = createClient('http://h', { fetch: server.fetch });
  const seen = [];
  hearth.auth.onAuthStateChange((u) => seen.push(u?.uid ?? null));
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  // The stale token is refreshed by the background timer or by the next request, whichever
  // comes first; either way the rejected refresh token ends the session.
  await hearth.auth.refresh().catch((error) => assert.ok(['token_reused', 'unauthenticated'].includes(error.code)));
  await waitFor(() => hearth.auth.currentUser === null);
  await tick();
  assert.deepEqual(seen, [null, 'u1', null]);
  await hearth.collection('notes').get();
  assert.equal(server.calls.at(-1).headers.authorization, undefined);
  hearth.close();
});

test('a network error during refresh keeps the session', async () => {
  const base = authServer({ loginExpiresIn: 0.001 });
  const hearth = createClient('http://h', {
    fetch: async (url, init) => {
      if (url.endsWith('/v1/auth/refresh')) throw new TypeError('fetch failed');
      return base.fetch(url, init);
    },
  });
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await tick(5);
  await assert.rejects(hearth.collection('notes').get(), { code: 'unavailable' });
  assert.equal(hearth.auth.currentUser.uid, 'u1');
  hearth.close();
});

test('the session survives in a custom store and is picked up by a new client', async () => {
  const map = new Map();
  const store = { get: async (k) => map.get(k) ?? null, set: async (k, v) => void map.set(k, v), remove: async (k) => void map.delete(k) };
  const server = authServer();
  const first = createClient('http://h', { fetch: server.fetch, session: store });
  await first.auth.signIn({ email: 'ada@example.com', password: 'right' });
  first.close();
  assert.equal(map.size, 1);
  const second = createClient('http://h', { fetch: server.fetch, session: store });
  assert.equal(second.auth.currentUser, null); // Not loaded yet: the store is async.
  const initial = await new Promise((resolve) => second.auth.onAuthStateChange(resolve));
  assert.equal(initial.uid, 'u1');
  await second.collection('n').get();
  assert.equal(server.calls.at(-1).headers.authorization, 'Bearer at-1');
  await second.auth.signOut();
  assert.equal(map.size, 0);
  second.close();
});

test('the background timer refreshes before expiry without any request', async () => {
  const server = authServer({ loginExpiresIn: 0.05, refreshExpiresIn: 900 });
  const hearth = createClient('http://h', { fetch: server.fetch });
  await hearth.auth.signIn({ email: 'ada@example.com', password: 'right' });
  await waitFor(() => server.calls.some((c) => c.path === '/v1/auth/refresh'));
  await hearth.collection('n').get();
  assert.equal(server.calls.at(-1).headers.authorization, 'Bearer at-2');
  hearth.close();
});

test('anonymous sign-in, linking, profile and deletion use the auth routes', async () => {
  const server = authServer();
  const hearth = createClient('http://h', { fetch: server.fetch });
  const { user: anon } = await hearth.auth.signInAnonymously();
  assert.equal(anon.anonymous, true);
  const linked = await hearth.auth.linkWithPassword({ email: 'ada@example.com', password: 'pw' });
  assert.equal(linked.anonymous, false);
  assert.equal(hearth.auth.currentUser.anonymous, false);
  const updated = await hearth.auth.updateUser({ displayName: 'Ada' });
  assert.equal(updated.displayName, 'Ada');
  assert.equal(hearth.auth.currentUser.displayName, 'Ada');
  assert.equal((await hearth.auth.getUser()).uid, 'u1');
  await hearth.auth.sendPasswordReset('ada@example.com');
  await hearth.auth.confirmPasswordReset('tok', 'new-pw');
  await hearth.auth.sendEmailVerification();
  await hearth.auth.deleteUser();
  assert.equal(hearth.auth.currentUser, null);
  assert.deepEqual(
    server.calls.map((c) => `${c.method} ${c.path}`),
    [
      'POST /v1/auth/anonymous',
      'POST /v1/auth/link',
      'PATCH /v1/auth/user',
      'GET /v1/auth/user',
      'POST /v1/auth/password-reset/send',
      'POST /v1/auth/password-reset/confirm',
      'POST /v1/auth/verify-email/send',
      'DELETE /v1/auth/user',
    ],
  );
  assert.deepEqual(server.calls[5].body, { token: 'tok', newPassword: 'new-pw' });
  await assert.rejects(hearth.auth.getUser(), { code: 'unauthenticated' });
  hearth.close();
});

test('a client sharing the store adopts a session another client already refreshed', async () => {
  const map = new Map();
  const store = { get: (k) => map.get(k) ?? null, set: (k, v) => void map.set(k, v), remove: (k) => void map.delete(k) };
  const server = authServer({ loginExpiresIn: 0.2, refreshExpiresIn: 900 });
  const tabA = createClient('http://h', { fetch: server.fetch, session: store });
  await tabA.auth.signIn({ email: 'ada@example.com', password: 'right' });
  const tabB = createClient('http://h', { fetch: server.fetch, session: store });
  await tabB.auth.ready();
  await tabA.auth.refresh(); // Rotates rt-1 → rt-2 and stores it.
  await tick(250); // Now B's copy of the session is stale too.
  await tabB.collection('n').get();
  const refreshes = server.calls.filter((c) => c.path === '/v1/auth/refresh').map((c) => c.body.refreshToken);
  assert.deepEqual(refreshes, ['rt-1'], 'B adopted the stored session instead of presenting rt-1 again');
  assert.equal(server.calls.at(-1).headers.authorization, 'Bearer at-2');
  tabA.close();
  tabB.close();
});

test('with Web Locks (browsers), simultaneous refreshes in two tabs present the refresh token once', async () => {
  // A minimal navigator.locks: one holder per name, others queue (what browsers provide).
  const queues = new Map();
  const names = [];
  const locks = {
    request(name, callback) {
      names.push(name);
      const previous = queues.get(name) ?? Promise.resolve();
      const run = previous.then(() => callback());
      queues.set(name, run.catch(() => {}));
      return run;
    },
  };
  const hadNavigator = Object.getOwnPropertyDescriptor(globalThis, 'navigator');
  Object.defineProperty(globalThis, 'navigator', { value: { locks }, configurable: true, writable: true });
  try {
    const map = new Map();
    const store = { get: (k) => map.get(k) ?? null, set: (k, v) => void map.set(k, v), remove: (k) => void map.delete(k) };
    const server = authServer({ loginExpiresIn: 0.001, refreshExpiresIn: 900, refreshDelayMs: 10 });
    const tabA = createClient('http://h', { fetch: server.fetch, session: store });
    await tabA.auth.signIn({ email: 'ada@example.com', password: 'right' });
    const tabB = createClient('http://h', { fetch: server.fetch, session: store });
    await tabB.auth.ready();
    await tick(5);
    await Promise.all([tabA.collection('n').get(), tabB.collection('n').get()]);
    const refreshes = server.calls.filter((c) => c.path === '/v1/auth/refresh').map((c) => c.body.refreshToken);
    assert.deepEqual(refreshes, ['rt-1']);
    assert.ok(names.length > 0 && names.every((name) => name === 'hearth.refresh:hearth.session:http://h'));
    tabA.close();
    tabB.close();
  } finally {
    if (hadNavigator) Object.defineProperty(globalThis, 'navigator', hadNavigator);
    else delete globalThis.navigator;
  }
});
