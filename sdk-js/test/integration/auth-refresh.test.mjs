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

test('a realtime listener keeps streaming across several access-token refreshes', async (t) => {
  if (!supported) return t.skip('the server has no /v1/auth routes yet');
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'hearth-refresh-rules-'));
  const rules = join(dir, 'firestore.rules');
  writeFileSync(
    rules,
    "rules_version = '2';\nservice cloud.firestore { match /databases/{db}/documents { match /ticks/{id} { allow read, write: if request.auth != null; } } }\n",
  );
  const ruled = await startServer({ extraArgs: ['--rules', rules], extraEnv: { HEARTH_AUTH__ACCESS_TOKEN_TTL_SECS: '2', HEARTH_AUTH__RATE_LIMITS: 'false' } });
  t.after(() => ruled.stop());
  const hearth = createClient(ruled.url, { session: 'memory' });
  t.after(() => hearth.close());
  await hearth.auth.signUp({ email: `t_${randomBytes(6).toString('hex')}@example.com`, password: 'correct horse battery staple' });
  const ref = hearth.doc(`ticks/${randomBytes(4).toString('hex')}`);
  const seen = [];
  const errors = [];
  const stop = ref.onSnapshot((snap) => snap.exists && seen.push(snap.data().n), (err) => errors.push(err));
  t.after(() => stop());
  // Six seconds of writes span three 2-second access tokens; the socket must be re-authed.
  for (let n = 1; n <= 12; n++) {
    await ref.set({ n });
    await new Promise((r) => setTimeout(r, 500));
  }
  const deadline = Date.now() + 10_000;
  while (seen.at(-1) !== 12 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(errors, [], 'no listener error across refreshes');
  assert.equal(seen.at(-1), 12, `the listener saw the last write (saw ${JSON.stringify(seen)})`);
  assert.deepEqual(seen, [...seen].sort((a, b) => a - b), 'in commit order');
});
