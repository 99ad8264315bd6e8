// hearth.admin against a scripted fetch: every helper's method, path, query and body (the wire
// shapes of server/src/api/{hooks,admin,admin_users}.rs), the service key on every request, and
// errors as HearthError. The real server is exercised in test/integration/admin.test.mjs.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { fakeFetch } from './helpers.mjs';

const KEY = 'sk_unit_admin';

function adminClient(handler) {
  const fake = fakeFetch(handler);
  return { hearth: createClient('http://127.0.0.1:8080', { fetch: fake.fetch, serviceKey: KEY }), calls: fake.calls };
}

const maskedHook = {
  name: 'validate',
  events: ['document.create'],
  match: 'posts/{id}',
  mode: 'before',
  url: 'http://127.0.0.1:9000/validate',
  secret: 'whsec_****LaSw',
  timeoutMs: 3000,
  onFailure: 'reject',
  order: 0,
};

test('hearth.admin needs the serviceKey option', () => {
  const hearth = createClient('http://127.0.0.1:8080', { fetch: fakeFetch(() => ({})).fetch });
  assert.throws(
    () => hearth.admin,
    (error) => error instanceof HearthError && error.code === 'invalid_argument' && /serviceKey/.test(error.message),
  );
  assert.throws(() => createClient('http://127.0.0.1:8080', { serviceKey: '', fetch: fakeFetch(() => ({})).fetch }).admin, {
    code: 'invalid_argument',
  });
});

test('hooks: put, get, list, delete, deliveries and redeliver send the documented requests', async () => {
  const delivery = { id: 'evt_0000000000000007_0000', event: 'document.create', subject: 'posts/p1', status: 'failed', attempts: 3 };
  const { hearth, calls } = adminClient((request) => {
    const route = `${request.method} ${request.path}`;
    switch (route) {
      case 'PUT /v1/admin/hooks/validate':
        return { status: 201, body: { ...maskedHook, ...request.body, secret: 'whsec_****LaSw' } };
      case 'GET /v1/admin/hooks/validate':
        return { body: maskedHook };
      case 'GET /v1/admin/hooks':
        return { body: { hooks: [maskedHook] } };
      case 'DELETE /v1/admin/hooks/validate':
        return { status: 204 };
      case 'GET /v1/admin/hooks/validate/deliveries':
        return { body: { deliveries: [delivery] } };
      case 'POST /v1/admin/hooks/validate/deliveries/evt_0000000000000007_0000/redeliver':
        return { status: 202, body: { ...delivery, status: 'pending', attempts: 0 } };
      default:
        return { status: 404, body: { error: { code: 'not_found', message: route } } };
    }
  });
  const definition = {
    events: ['document.create'],
    match: 'posts/{id}',
    mode: 'before',
    url: 'http://127.0.0.1:9000/validate',
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    timeoutMs: 3000,
    onFailure: 'reject',
  };
  const stored = await hearth.admin.hooks.put('validate', definition);
  assert.equal(stored.secret, 'whsec_****LaSw');
  assert.deepEqual(calls[0].body, definition);
  assert.deepEqual(await hearth.admin.hooks.get('validate'), maskedHook);
  assert.deepEqual(await hearth.admin.hooks.list(), [maskedHook]);
  assert.equal(await hearth.admin.hooks.delete('validate'), undefined);
  assert.deepEqual(await hearth.admin.hooks.deliveries('validate', { status: 'failed', limit: 5 }), [delivery]);
  assert.equal(calls[4].search, '?status=failed&limit=5');
  await hearth.admin.hooks.deliveries('validate');
  assert.equal(calls[5].search, '', 'no query parameters unless asked');
  const again = await hearth.admin.hooks.redeliver('validate', delivery.id);
  assert.equal(again.status, 'pending');
  assert.ok(calls.every((c) => c.headers.authorization === `Bearer ${KEY}`), 'every admin call carries the service key');
  assert.deepEqual(
    calls.map((c) => c.method),
    ['PUT', 'GET', 'GET', 'DELETE', 'GET', 'GET', 'POST'],
  );
});

test('admin calls keep using the service key while a user is signed in on the same client', async () => {
  const { hearth, calls } = adminClient((request) => {
    if (request.path === '/v1/auth/login') {
      return {
        body: {
          user: { uid: 'u1', email: 'a@example.com', emailVerified: false, displayName: null, anonymous: false, createdAt: '2026-11-25T10:00:00Z', claims: {} },
          accessToken: 'user-token',
          refreshToken: 'refresh',
          expiresIn: 900,
        },
      };
    }
    if (request.path === '/v1/docs/notes/n1') return { status: 404, body: { error: { code: 'not_found', message: 'no' } } };
    return { body: { hooks: [] } };
  });
  await hearth.auth.signIn({ email: 'a@example.com', password: 'correct horse battery' });
  await hearth.doc('notes/n1').get();
  await hearth.admin.hooks.list();
  hearth.close();
  assert.equal(calls[1].headers.authorization, 'Bearer user-token', 'document calls speak as the user');
  assert.equal(calls[2].headers.authorization, `Bearer ${KEY}`, 'admin calls speak with the service key');
});

test('hook names and delivery ids are checked and percent-encoded', async () => {
  const { hearth, calls } = adminClient(() => ({ body: maskedHook }));
  await assert.rejects(hearth.admin.hooks.get(''), { code: 'invalid_argument' });
  await assert.rejects(hearth.admin.hooks.put('x', null), { code: 'invalid_argument' });
  await assert.rejects(hearth.admin.hooks.redeliver('x', ''), { code: 'invalid_argument' });
  assert.equal(calls.length, 0, 'nothing was sent');
  await hearth.admin.hooks.get('a/b?c');
  assert.equal(calls[0].url, 'http://127.0.0.1:8080/v1/admin/hooks/a%2Fb%3Fc');
});

test('a refused hook definition is a HearthError with every problem in details', async () => {
  const problems = ['url: scheme must be http or https, not \'ftp\'', "secret: must start with 'whsec_'"];
  const { hearth } = adminClient(() => ({
    status: 400,
    body: { error: { code: 'invalid_argument', message: 'invalid hook definition', details: { errors: problems } } },
  }));
  await assert.rejects(
    hearth.admin.hooks.put('bad', { events: ['document.create'], match: 'a/{b}', mode: 'after', url: 'ftp://x', secret: 'nope' }),
    (error) => error instanceof HearthError && error.code === 'invalid_argument' && error.status === 400 && error.details.errors.length === 2,
  );
});

test('rules: get answers the source as text (null when none is loaded), set sends text', async () => {
  const source = "rules_version = '2';\nservice cloud.firestore {}\n";
  let loaded = true;
  const { hearth, calls } = adminClient((request) => {
    if (request.method === 'PUT') {
      if (request.rawBody.includes('oops')) {
        return { status: 400, body: { error: { code: 'invalid_argument', message: 'invalid rules', details: { errors: ['1:1: expected rules_version'] } } } };
      }
      return { body: { status: 'live' } };
    }
    if (!loaded) return { status: 404, body: { error: { code: 'not_found', message: 'no security rules are loaded' } } };
    return { body: source, headers: { 'content-type': 'text/plain; charset=utf-8' } };
  });
  assert.equal(await hearth.admin.rules.get(), source);
  loaded = false;
  assert.equal(await hearth.admin.rules.get(), null);
  await hearth.admin.rules.set(source);
  assert.equal(calls[2].method, 'PUT');
  assert.equal(calls[2].rawBody, source, 'the source goes as is, not JSON-encoded');
  assert.equal(calls[2].headers['content-type'], 'text/plain; charset=utf-8');
  await assert.rejects(hearth.admin.rules.set('oops'), (error) => error.code === 'invalid_argument' && error.details.errors[0] === '1:1: expected rules_version');
  await assert.rejects(hearth.admin.rules.set(42), { code: 'invalid_argument' });
});

test('indexes: create, list and drop', async () => {
  const index = { id: 3, collection: 'posts', fields: [['owner', 'asc'], ['n', 'desc']], state: 'building' };
  const { hearth, calls } = adminClient((request) => {
    if (request.method === 'POST') return { status: 201, body: index };
    if (request.method === 'DELETE') return { status: 204 };
    return { body: { indexes: [index] } };
  });
  assert.deepEqual(await hearth.admin.indexes.create({ collection: 'posts', fields: [['owner', 'asc'], ['n', 'desc']] }), index);
  assert.deepEqual(calls[0].body, { collection: 'posts', fields: [['owner', 'asc'], ['n', 'desc']] });
  assert.deepEqual(await hearth.admin.indexes.list(), [index]);
  await hearth.admin.indexes.drop(3);
  assert.equal(calls[2].path, '/v1/admin/indexes/3');
  assert.equal(calls[2].method, 'DELETE');
});

test('roles: grant, revoke, grants, inherit, inherits', async () => {
  const { hearth, calls } = adminClient((request) => {
    const route = `${request.method} ${request.path}`;
    if (route === 'POST /v1/admin/roles/grants') return { status: 201, body: { domain: 'default', ...request.body } };
    if (route === 'DELETE /v1/admin/roles/grants') return { status: 204 };
    if (route === 'GET /v1/admin/roles/grants') return { body: { grants: [{ uid: 'u1', role: 'editor', domain: 'default' }] } };
    if (route === 'POST /v1/admin/roles/inherits') return { status: 201, body: { domain: 'default', ...request.body } };
    return { body: { inherits: [{ role: 'admin', inherits: 'editor', domain: 'default' }] } };
  });
  assert.deepEqual(await hearth.admin.roles.grant({ uid: 'u1', role: 'editor' }), { uid: 'u1', role: 'editor', domain: 'default' });
  await hearth.admin.roles.revoke({ uid: 'u1', role: 'editor', domain: 'org1' });
  assert.deepEqual(calls[1].body, { uid: 'u1', role: 'editor', domain: 'org1' });
  assert.deepEqual(await hearth.admin.roles.grants({ uid: 'u1' }), [{ uid: 'u1', role: 'editor', domain: 'default' }]);
  assert.equal(calls[2].search, '?uid=u1');
  await hearth.admin.roles.grants();
  assert.equal(calls[3].search, '');
  assert.deepEqual(await hearth.admin.roles.inherit({ role: 'admin', inherits: 'editor' }), { role: 'admin', inherits: 'editor', domain: 'default' });
  assert.deepEqual(await hearth.admin.roles.inherits(), [{ role: 'admin', inherits: 'editor', domain: 'default' }]);
});

test('users and mintToken unwrap the server envelopes', async () => {
  const user = { uid: 'u1', email: 'a@example.com', emailVerified: false, displayName: null, anonymous: false, createdAt: '2026-11-25T10:00:00Z', claims: {}, disabled: false };
  const { hearth, calls } = adminClient((request) => {
    const route = `${request.method} ${request.path}`;
    switch (route) {
      case 'GET /v1/admin/users':
        return { body: { users: [user], nextPageToken: 'next' } };
      case 'POST /v1/admin/users':
        return { status: 201, body: { user } };
      case 'PATCH /v1/admin/users/u1':
        return { body: { user: { ...user, disabled: true } } };
      case 'PUT /v1/admin/users/u1/claims':
        return { body: { user: { ...user, claims: request.body.claims } } };
      case 'POST /v1/admin/users/u1/revoke':
      case 'DELETE /v1/admin/users/u1':
        return { status: 204 };
      case 'POST /v1/admin/tokens':
        return { body: { accessToken: 'minted', expiresIn: 900 } };
      default:
        return { body: { user } };
    }
  });
  assert.deepEqual(await hearth.admin.users.list({ limit: 10, pageToken: 'p' }), { users: [user], nextPageToken: 'next' });
  assert.equal(calls[0].search, '?limit=10&pageToken=p');
  assert.deepEqual(await hearth.admin.users.get('u1'), user);
  assert.deepEqual(await hearth.admin.users.create({ email: 'a@example.com', password: 'correct horse battery' }), user);
  assert.equal((await hearth.admin.users.update('u1', { disabled: true })).disabled, true);
  assert.deepEqual(calls[3].body, { disabled: true });
  assert.deepEqual((await hearth.admin.users.setClaims('u1', { admin: true })).claims, { admin: true });
  assert.deepEqual(calls[4].body, { claims: { admin: true } });
  await hearth.admin.users.revoke('u1');
  await hearth.admin.users.delete('u1');
  assert.deepEqual(await hearth.admin.mintToken('anyone', { role: 'x' }), { accessToken: 'minted', expiresIn: 900 });
  assert.deepEqual(calls[7].body, { uid: 'anyone', claims: { role: 'x' } });
  await hearth.admin.mintToken('anyone');
  assert.deepEqual(calls[8].body, { uid: 'anyone' }, 'no claims key when none are given');
  await assert.rejects(hearth.admin.mintToken(''), { code: 'invalid_argument' });
});
