// hearth.admin against the real server: every group of /v1/admin (hooks, rules, indexes, roles,
// users, minted tokens) with the wire shapes the server really sends. Hook deliveries after a
// real delivery are in hooks.test.mjs, next to the function server they need.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { startServer, uniqueCollection } from './server.mjs';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

let server;
let hearth;
let admin;

before(async () => {
  server = await startServer({ extraEnv: { HEARTH_AUTH__RATE_LIMITS: 'false' } });
  hearth = createClient(server.url, { serviceKey: server.serviceKey });
  admin = hearth.admin;
});

after(async () => {
  hearth?.close();
  await server?.stop();
});

/** The claims of a JWT (no verification: the server's tests do that). */
function jwtClaims(token) {
  return JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString('utf8'));
}

test('hooks: put creates, get and list show the secret masked, put without a secret keeps it, delete removes', async () => {
  const definition = {
    events: ['document.create'],
    match: 'posts/{id}',
    mode: 'before',
    url: 'http://127.0.0.1:9/validate',
    secret: SECRET,
    timeoutMs: 1000,
  };
  const created = await admin.hooks.put('validate-post', definition);
  assert.deepEqual(created, {
    name: 'validate-post',
    events: ['document.create'],
    match: 'posts/{id}',
    mode: 'before',
    url: 'http://127.0.0.1:9/validate',
    secret: 'whsec_****LaSw',
    timeoutMs: 1000,
    onFailure: 'reject',
    order: 0,
  });
  assert.deepEqual(await admin.hooks.get('validate-post'), created);
  const listed = await admin.hooks.list();
  assert.deepEqual(listed, [created]);
  assert.ok(!JSON.stringify(listed).includes(SECRET), 'the secret never comes back');

  const { secret: _kept, ...withoutSecret } = definition;
  const replaced = await admin.hooks.put('validate-post', { ...withoutSecret, events: ['document.update'], url: 'http://127.0.0.1:9/v2' });
  assert.equal(replaced.secret, 'whsec_****LaSw');
  assert.deepEqual(replaced.events, ['document.update']);
  assert.equal(replaced.url, 'http://127.0.0.1:9/v2');

  await admin.hooks.delete('validate-post');
  await assert.rejects(admin.hooks.get('validate-post'), (error) => error instanceof HearthError && error.code === 'not_found' && error.status === 404);
  assert.deepEqual(await admin.hooks.list(), []);
  await assert.rejects(admin.hooks.delete('validate-post'), { code: 'not_found' });
  // With the hook gone the write path calls nothing (its URL is dead: a call would fail with 503).
  await hearth.doc(`posts/after-delete`).set({ ok: true });
});

test('hooks: an invalid definition lists every problem in details.errors', async () => {
  await assert.rejects(
    admin.hooks.put('bad', { events: ['document.explode'], mode: 'before', url: 'ftp://x', secret: 'not-a-secret', timeoutMs: 999999, match: 'posts' }),
    (error) => {
      assert.ok(error instanceof HearthError);
      assert.equal(error.code, 'invalid_argument');
      const fields = error.details.errors.map((problem) => problem.split(':')[0]);
      for (const field of ['events', 'url', 'secret', 'timeoutMs', 'match']) assert.ok(fields.includes(field), `${field} in ${fields}`);
      return true;
    },
  );
});

test('admin calls without the service key are refused by the server', async () => {
  const impostor = createClient(server.url, { serviceKey: 'sk_wrong' });
  await assert.rejects(impostor.admin.hooks.list(), (error) => error instanceof HearthError && [401, 403].includes(error.status));
  impostor.close();
});

test('rules: set makes a ruleset live, get reads it back, a bad one is refused with line:column errors', async () => {
  const collection = uniqueCollection('open');
  const source = `rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /${collection}/{id} {
      allow read: if true;
    }
  }
}
`;
  await admin.rules.set(source);
  assert.equal(await admin.rules.get(), source);
  // The rules are live: a signed-out client may now read that collection.
  await hearth.doc(`${collection}/d1`).set({ n: 1 });
  const anonymous = createClient(server.url);
  assert.deepEqual((await anonymous.doc(`${collection}/d1`).get()).data(), { n: 1 });

  await assert.rejects(admin.rules.set("rules_version = '2';\nservice cloud.firestore {\n  match /x {\n    allow read: if ;\n  }\n}\n"), (error) => {
    assert.equal(error.code, 'invalid_argument');
    assert.ok(Array.isArray(error.details.errors) && error.details.errors.length > 0);
    for (const problem of error.details.errors) assert.match(problem, /^\d+:\d+: /);
    return true;
  });
  assert.equal(await admin.rules.get(), source, 'the old rules stay live');
  assert.deepEqual((await anonymous.doc(`${collection}/d1`).get()).data(), { n: 1 });
  anonymous.close();
});

test('indexes: create starts building and becomes ready, list shows it, drop removes it', async () => {
  const collection = uniqueCollection('indexed');
  await hearth.doc(`${collection}/a`).set({ owner: 'u1', n: 1 });
  const index = await admin.indexes.create({ collection, fields: [['owner', 'asc'], ['n', 'desc']] });
  assert.equal(typeof index.id, 'number');
  assert.equal(index.collection, collection);
  assert.deepEqual(index.fields, [['owner', 'asc'], ['n', 'desc']]);
  assert.ok(['building', 'ready'].includes(index.state));
  let listed;
  for (let i = 0; i < 100; i++) {
    listed = (await admin.indexes.list()).find((ix) => ix.id === index.id);
    if (listed?.state === 'ready') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(listed.state, 'ready');
  await assert.rejects(admin.indexes.create({ collection, fields: [['owner', 'asc'], ['n', 'desc']] }), { code: 'already_exists' });
  await assert.rejects(admin.indexes.create({ collection, fields: [['owner', 'asc']] }), { code: 'invalid_argument' });
  await admin.indexes.drop(index.id);
  assert.equal((await admin.indexes.list()).find((ix) => ix.id === index.id), undefined);
  await assert.rejects(admin.indexes.drop(index.id), { code: 'not_found' });
});

test('roles: grant, grants, revoke, inherit and inherits', async () => {
  assert.deepEqual(await admin.roles.grant({ uid: 'role-user', role: 'editor' }), { uid: 'role-user', role: 'editor', domain: 'default' });
  assert.deepEqual(await admin.roles.grant({ uid: 'role-user', role: 'owner', domain: 'org1' }), { uid: 'role-user', role: 'owner', domain: 'org1' });
  const mine = await admin.roles.grants({ uid: 'role-user' });
  assert.deepEqual(
    mine.map((g) => `${g.role}@${g.domain}`).sort(),
    ['editor@default', 'owner@org1'],
  );
  assert.ok((await admin.roles.grants()).length >= 2);
  await admin.roles.revoke({ uid: 'role-user', role: 'owner', domain: 'org1' });
  assert.deepEqual(await admin.roles.grants({ uid: 'role-user' }), [{ uid: 'role-user', role: 'editor', domain: 'default' }]);

  assert.deepEqual(await admin.roles.inherit({ role: 'admin', inherits: 'editor' }), { role: 'admin', inherits: 'editor', domain: 'default' });
  assert.deepEqual(await admin.roles.inherits(), [{ role: 'admin', inherits: 'editor', domain: 'default' }]);
  await assert.rejects(admin.roles.inherit({ role: 'editor', inherits: 'admin' }), (error) => error instanceof HearthError && error.status >= 400 && error.status < 500);
  await assert.rejects(admin.roles.grant({ role: 'editor' }), { code: 'invalid_argument' });
});

test('users: create, get, list, update, setClaims, revoke, delete', async () => {
  const email = `admin-made-${Date.now()}@example.com`;
  const password = 'correct horse battery staple';
  const created = await admin.users.create({ email, password, displayName: 'Made', claims: { plan: 'pro' } });
  assert.equal(created.email, email);
  assert.equal(created.displayName, 'Made');
  assert.deepEqual(created.claims, { plan: 'pro' });
  assert.equal(created.disabled, false);
  assert.deepEqual(await admin.users.get(created.uid), created);

  const page = await admin.users.list({ limit: 1000 });
  assert.ok(page.users.some((u) => u.uid === created.uid));

  const claims = await admin.users.setClaims(created.uid, { plan: 'team', admin: true });
  assert.deepEqual(claims.claims, { plan: 'team', admin: true });

  // The user can sign in, and sees the claims in their token.
  const user = createClient(server.url);
  const { accessToken } = await user.auth.signIn({ email, password });
  assert.equal(jwtClaims(accessToken).plan, 'team');

  // Revoking ends the session: the next refresh is refused.
  await admin.users.revoke(created.uid);
  await assert.rejects(user.auth.refresh(), (error) => error instanceof HearthError && error.status === 401);
  user.close();

  const disabled = await admin.users.update(created.uid, { disabled: true, displayName: 'Gone' });
  assert.equal(disabled.disabled, true);
  assert.equal(disabled.displayName, 'Gone');
  const signIn = createClient(server.url);
  await assert.rejects(signIn.auth.signIn({ email, password }), (error) => error instanceof HearthError && error.status >= 400);
  signIn.close();
  await assert.rejects(admin.users.update(created.uid, { email: 'x@example.com' }), { code: 'invalid_argument' });

  await admin.users.delete(created.uid);
  await assert.rejects(admin.users.get(created.uid), { code: 'not_found' });
});

test('mintToken: an access token for any uid with extra claims, accepted by the server as that uid', async () => {
  const robot = await admin.mintToken('service-robot', { role: 'robot' });
  assert.ok(robot.expiresIn > 0);
  const claims = jwtClaims(robot.accessToken);
  assert.equal(claims.sub, 'service-robot', 'the uid need not be a registered user');
  assert.equal(claims.role, 'robot');

  // For a registered user the server resolves the token to that user.
  const made = await admin.users.create({ email: `minted-${Date.now()}@example.com`, password: 'correct horse battery staple' });
  const { accessToken } = await admin.mintToken(made.uid, { tier: 'gold' });
  assert.equal(jwtClaims(accessToken).tier, 'gold');
  const me = await fetch(`${server.url}/v1/auth/user`, { headers: { authorization: `Bearer ${accessToken}` } });
  assert.equal(me.status, 200);
  assert.equal((await me.json()).user.uid, made.uid);
  const forged = await fetch(`${server.url}/v1/auth/user`, { headers: { authorization: `Bearer ${accessToken.slice(0, -4)}AAAA` } });
  await forged.arrayBuffer();
  assert.equal(forged.status, 401, 'contrast: a tampered token is refused');
  await assert.rejects(admin.mintToken(''), { code: 'invalid_argument' });
});
