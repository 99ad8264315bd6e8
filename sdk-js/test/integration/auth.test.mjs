// Auth routes (/v1/auth) and a rules-checked user session against the real server. Skipped, with
// a reason, while the server has no auth routes.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { hasRealtime, hasRoute, startServer } from './server.mjs';

const RULES = `rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /notes/{noteId} {
      allow read, update, delete: if request.auth != null && resource.data.owner == request.auth.uid;
      allow create: if request.auth != null && request.resource.data.owner == request.auth.uid;
    }
  }
}
`;

let server;
let supported = false;
let realtimeSupported = false;
const skipUnlessAuth = (t) => {
  if (!supported) t.skip('the server has no /v1/auth routes yet');
  return !supported;
};

before(async () => {
  const rulesFile = join(tmpdir(), `hearth-sdk-rules-${randomBytes(4).toString('hex')}.rules`);
  writeFileSync(rulesFile, RULES);
  server = await startServer({
    extraArgs: ['--rules', rulesFile],
    // A short reuse grace keeps the token-reuse test fast; rate limits are the server's own tests'
    // business and would only make this suite order-dependent.
    extraEnv: { HEARTH_AUTH__REFRESH_REUSE_GRACE_MS: '300', HEARTH_AUTH__RATE_LIMITS: 'false' },
  });
  supported = await hasRoute(server.url, 'POST', '/v1/auth/login', { email: 'probe@example.com', password: 'probe-password' });
  realtimeSupported = await hasRealtime(server.url);
});

after(async () => {
  await server?.stop();
});

const email = () => `user_${randomBytes(6).toString('hex')}@example.com`;

/**
 * The latest token mailed to `address`. Without SMTP settings the server appends mails to
 * `mail_outbox.txt` in its data dir, with a `token: ...` line in the body.
 */
async function mailedToken(address) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    let text = '';
    try {
      text = readFileSync(join(server.dataDir, 'mail_outbox.txt'), 'utf8').replace(/=\r?\n/g, '');
    } catch {
      // Not written yet.
    }
    const at = text.lastIndexOf(address);
    const match = at >= 0 ? /token: ([^\s]+)/.exec(text.slice(at)) : null;
    if (match) return match[1];
    if (Date.now() > deadline) throw new Error(`no mail with a token for ${address} in the outbox`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const password = 'correct horse battery staple';

test('signUp creates a user and signs in', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const states = [];
  hearth.auth.onAuthStateChange((user) => states.push(user?.uid ?? null));
  const address = email();
  const { user, accessToken, refreshToken, expiresIn } = await hearth.auth.signUp({ email: address, password, displayName: 'Ada' });
  assert.equal(user.email, address);
  assert.equal(user.displayName, 'Ada');
  assert.equal(user.anonymous, false);
  assert.equal(typeof user.uid, 'string');
  assert.equal(accessToken.split('.').length, 3, 'a JWT');
  assert.equal(typeof refreshToken, 'string');
  assert.ok(expiresIn > 0);
  assert.equal(hearth.auth.currentUser.uid, user.uid);
  assert.equal((await hearth.auth.getUser()).uid, user.uid);
  assert.deepEqual(states, [null, user.uid]);
  hearth.close();
});

test('signIn checks the password; both failure modes look the same', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const address = email();
  await hearth.auth.signUp({ email: address, password });
  await hearth.auth.signOut();
  const wrongPassword = await hearth.auth.signIn({ email: address, password: 'nope nope nope' }).catch((e) => e);
  const unknownEmail = await hearth.auth.signIn({ email: email(), password }).catch((e) => e);
  for (const error of [wrongPassword, unknownEmail]) {
    assert.ok(error instanceof HearthError);
    assert.equal(error.code, 'invalid_credentials');
    assert.equal(error.status, 401);
  }
  assert.equal(wrongPassword.message, unknownEmail.message);
  const { user } = await hearth.auth.signIn({ email: address, password });
  assert.equal(user.email, address);
  hearth.close();
});

test('refresh rotates tokens; reusing an old refresh token is detected', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const first = await hearth.auth.signUp({ email: email(), password });
  await hearth.auth.refresh();
  const userAfterRefresh = await hearth.auth.getUser();
  assert.equal(userAfterRefresh.uid, first.user.uid);
  // Replay the rotated refresh token by hand, after the (shortened) grace period.
  await new Promise((r) => setTimeout(r, 800));
  const replay = await fetch(`${server.url}/v1/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken: first.refreshToken }),
  });
  assert.equal(replay.status, 401);
  assert.equal((await replay.json()).error.code, 'token_reused');
  hearth.close();
});

test('signOut revokes the refresh token', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const { refreshToken } = await hearth.auth.signUp({ email: email(), password });
  await hearth.auth.signOut();
  assert.equal(hearth.auth.currentUser, null);
  const response = await fetch(`${server.url}/v1/auth/refresh`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ refreshToken }),
  });
  assert.equal(response.status, 401);
  hearth.close();
});

test('an anonymous user can be linked to a password account with the same uid', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const { user: anon } = await hearth.auth.signInAnonymously();
  assert.equal(anon.anonymous, true);
  const address = email();
  const linked = await hearth.auth.linkWithPassword({ email: address, password });
  assert.equal(linked.uid, anon.uid);
  assert.equal(linked.anonymous, false);
  await hearth.auth.signOut();
  const { user } = await hearth.auth.signIn({ email: address, password });
  assert.equal(user.uid, anon.uid);
  hearth.close();
});

test('updateUser changes the profile; deleteUser removes the account', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const address = email();
  await hearth.auth.signUp({ email: address, password });
  const updated = await hearth.auth.updateUser({ displayName: 'Grace' });
  assert.equal(updated.displayName, 'Grace');
  assert.equal(hearth.auth.currentUser.displayName, 'Grace');
  await hearth.auth.deleteUser();
  assert.equal(hearth.auth.currentUser, null);
  await assert.rejects(hearth.auth.signIn({ email: address, password }), { code: 'invalid_credentials' });
  hearth.close();
});

test('password reset: any address is accepted, the mailed token sets a new password', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  await hearth.auth.sendPasswordReset(email()); // Unknown address: accepted all the same.
  await assert.rejects(hearth.auth.confirmPasswordReset('not-a-real-token', 'another long password'), (error) => error instanceof HearthError && error.status >= 400 && error.status < 500);
  const address = email();
  await hearth.auth.signUp({ email: address, password });
  await hearth.auth.signOut();
  await hearth.auth.sendPasswordReset(address);
  const token = await mailedToken(address);
  const newPassword = 'a brand new long password';
  await hearth.auth.confirmPasswordReset(token, newPassword);
  await assert.rejects(hearth.auth.signIn({ email: address, password }), { code: 'invalid_credentials' });
  const { user } = await hearth.auth.signIn({ email: address, password: newPassword });
  assert.equal(user.email, address);
  hearth.close();
});

test('email verification: the mailed token verifies the address and the SDK picks it up', async (t) => {
  if (skipUnlessAuth(t)) return;
  const hearth = createClient(server.url);
  const address = email();
  const { user } = await hearth.auth.signUp({ email: address, password });
  assert.equal(user.emailVerified, false);
  await hearth.auth.sendEmailVerification();
  const token = await mailedToken(address);
  await hearth.auth.confirmEmailVerification(token);
  assert.equal(hearth.auth.currentUser.emailVerified, true);
  assert.equal((await hearth.auth.getUser()).emailVerified, true);
  hearth.close();
});

test('a signed-in user reads and writes what the rules allow, and nothing else', async (t) => {
  if (skipUnlessAuth(t)) return;
  const alice = createClient(server.url);
  const bob = createClient(server.url);
  const { user: a } = await alice.auth.signUp({ email: email(), password });
  const { user: b } = await bob.auth.signUp({ email: email(), password });
  const ref = await alice.collection('notes').add({ owner: a.uid, text: 'mine' });
  assert.equal((await ref.get()).data().text, 'mine');
  await assert.rejects(bob.doc(ref.path).get(), { code: 'permission_denied', status: 403 });
  await assert.rejects(bob.collection('notes').add({ owner: a.uid, text: 'forged' }), { code: 'permission_denied' });
  const mine = await alice.collection('notes').where('owner', '==', a.uid).get();
  assert.deepEqual(mine.docs.map((d) => d.id), [ref.id]);
  // Rules are not filters: a query that could return others' notes is denied as a whole.
  await assert.rejects(bob.collection('notes').get(), { code: 'permission_denied' });
  assert.equal((await bob.collection('notes').where('owner', '==', b.uid).get()).size, 0);
  alice.close();
  bob.close();
});

test('realtime checks rules per subscription: an unprovable query is refused, a provable one streams', async (t) => {
  if (skipUnlessAuth(t)) return;
  if (!realtimeSupported) return t.skip('the server has no /v1/realtime endpoint yet');
  const alice = createClient(server.url);
  const { user } = await alice.auth.signUp({ email: email(), password });
  const refused = await new Promise((resolve) => {
    alice.collection('notes').onSnapshot(
      () => resolve(null),
      (error) => resolve(error),
    );
  });
  assert.ok(refused instanceof HearthError);
  assert.equal(refused.code, 'permission_denied');
  const snapshots = [];
  const stop = alice.collection('notes').where('owner', '==', user.uid).onSnapshot((s) => snapshots.push(s));
  await alice.collection('notes').add({ owner: user.uid, text: 'live' });
  const deadline = Date.now() + 10_000;
  while (!snapshots.some((s) => s.size === 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.ok(snapshots.some((s) => s.size === 1 && s.docs[0].data().text === 'live'));
  stop();
  alice.close();
});
