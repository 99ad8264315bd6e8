// Automatic token refresh against the real server, with access tokens that live 2 seconds.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createClient } from '../../dist/index.js';
import { hasRoute, startServer } from './server.mjs';

let server;
let supported = false;

before(async () => {
  server = await startServer({ extraEnv: { HEARTH_AUTH__ACCESS_TOKEN_TTL_SECS: '2', HEARTH_AUTH__RATE_LIMITS: 'false' } });
  supported = await hasRoute(server.url, 'POST', '/v1/auth/login', { email: 'probe@example.com', password: 'probe-password' });
});

after(async () => {
  await server?.stop();
});

test('short-lived access tokens are refreshed before they expire, in the background and on use', async (t) => {
  if (!supported) return t.skip('the server has no /v1/auth routes yet');
  const stored = [];
  const map = new Map();
  const store = {
    get: (key) => map.get(key) ?? null,
    set: (key, value) => {
      map.set(key, value);
      stored.push(JSON.parse(value).accessToken);
    },
    remove: (key) => void map.delete(key),
  };
  const hearth = createClient(server.url, { session: store });
  const { user, expiresIn } = await hearth.auth.signUp({ email: `r_${randomBytes(6).toString('hex')}@example.com`, password: 'correct horse battery staple' });
  assert.equal(expiresIn, 2);
  await new Promise((r) => setTimeout(r, 2_500));
  // The background timer refreshed at ~1.6 s: a new access token is stored and works.
  assert.ok(new Set(stored).size >= 2, 'the access token was rotated');
  assert.equal((await hearth.auth.getUser()).uid, user.uid);
  // Many concurrent calls with a stale token share one refresh and all succeed.
  await new Promise((r) => setTimeout(r, 1_800));
  const users = await Promise.all(Array.from({ length: 5 }, () => hearth.auth.getUser()));
  assert.ok(users.every((u) => u.uid === user.uid));
  hearth.close();
});
