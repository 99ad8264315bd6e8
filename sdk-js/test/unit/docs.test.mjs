import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient, deleteField, double, HearthError, increment, serverTimestamp } from '../../dist/index.js';
import { fakeFetch, wireDoc } from './helpers.mjs';

function clientWith(handler, options = {}) {
  const fake = fakeFetch(handler);
  return { hearth: createClient('http://127.0.0.1:8080/', { fetch: fake.fetch, ...options }), calls: fake.calls };
}

const notFound = { status: 404, body: { error: { code: 'not_found', message: 'no such document' } } };

test('references expose id, path, parent and subcollections', () => {
  const { hearth } = clientWith(() => ({}));
  const ref = hearth.doc('users/u1/posts/p1');
  assert.equal(ref.id, 'p1');
  assert.equal(ref.path, 'users/u1/posts/p1');
  assert.equal(ref.parent.path, 'users/u1/posts');
  assert.equal(ref.parent.parent.path, 'users/u1');
  assert.equal(hearth.collection('users').parent, null);
  assert.equal(ref.collection('likes').doc('l1').path, 'users/u1/posts/p1/likes/l1');
  const generated = hearth.collection('posts').doc();
  assert.match(generated.id, /^[A-Za-z0-9]{20}$/);
  assert.notEqual(generated.id, hearth.collection('posts').doc().id);
});

test('malformed paths are rejected before any request', () => {
  const { hearth } = clientWith(() => ({}));
  assert.throws(() => hearth.doc('users'), { code: 'invalid_argument' });
  assert.throws(() => hearth.collection('users/u1'), { code: 'invalid_argument' });
  assert.throws(() => hearth.doc('users//u1'), { code: 'invalid_argument' });
  assert.throws(() => hearth.doc('users/..'), { code: 'invalid_argument' });
  assert.throws(() => hearth.collection('posts').doc('__x__'), { code: 'invalid_argument' });
});

test('get() reads the document and decodes data and metadata', async () => {
  const { hearth, calls } = clientWith(() => ({ body: wireDoc('users/u1', { name: 'Ada', at: { $timestamp: '2026-11-25T10:00:00.123456Z' }, friend: { $ref: 'users/u2' } }, 42) }));
  const snap = await hearth.doc('users/u1').get();
  assert.equal(calls[0].method, 'GET');
  assert.equal(calls[0].url, 'http://127.0.0.1:8080/v1/docs/users/u1');
  assert.equal(snap.exists, true);
  assert.equal(snap.id, 'u1');
  assert.equal(snap.version, 42);
  assert.equal(snap.ref.path, 'users/u1');
  assert.equal(snap.data().name, 'Ada');
  assert.equal(snap.get('at').toISOString(), '2026-11-25T10:00:00.123Z');
  assert.equal(snap.get('friend').path, 'users/u2');
  assert.equal(snap.updateTime.toISOString(), '2026-11-25T10:00:00.000Z');
});

test('get() of a missing document resolves with exists === false', async () => {
  const { hearth } = clientWith(() => notFound);
  const snap = await hearth.doc('users/nobody').get();
  assert.equal(snap.exists, false);
  assert.equal(snap.data(), undefined);
  assert.equal(snap.version, undefined);
  assert.equal(snap.id, 'nobody');
});

test('IDs are percent-encoded per segment in URLs', async () => {
  const { hearth, calls } = clientWith(() => notFound);
  await hearth.doc('cities/São Paulo?x#y').get();
  assert.equal(calls[0].url, 'http://127.0.0.1:8080/v1/docs/cities/S%C3%A3o%20Paulo%3Fx%23y');
});

test('set() PUTs the encoded document; version adds If-Match', async () => {
  const { hearth, calls } = clientWith((request) => ({ status: 201, body: wireDoc('notes/n1', { ...request.body, at: { $timestamp: '2026-11-25T10:00:00Z' } }, 5) }));
  const snap = await hearth.doc('notes/n1').set({ text: 'hi', at: serverTimestamp(), score: double(2) });
  assert.equal(calls[0].method, 'PUT');
  assert.equal(calls[0].rawBody, '{"text":"hi","at":{"$serverTimestamp":true},"score":2.0}');
  assert.equal(calls[0].headers['content-type'], 'application/json');
  assert.equal(calls[0].headers['if-match'], undefined);
  assert.equal(snap.version, 5);
  assert.ok(snap.get('at') instanceof Date);
  await hearth.doc('notes/n1').set({ text: 'x' }, { version: 5 });
  assert.equal(calls[1].headers['if-match'], '"5"');
});

test('create() PUTs with If-None-Match: * and surfaces already_exists', async () => {
  const { hearth, calls } = clientWith(() => ({ status: 409, body: { error: { code: 'already_exists', message: 'exists' } } }));
  await assert.rejects(hearth.doc('notes/n1').create({ a: 1 }), (error) => error instanceof HearthError && error.code === 'already_exists' && error.status === 409);
  assert.equal(calls[0].headers['if-none-match'], '*');
});

test('update() PATCHes field paths, sentinels included', async () => {
  const { hearth, calls } = clientWith(() => ({ body: wireDoc('notes/n1', {}, 6) }));
  await hearth.doc('notes/n1').update({ text: 'bye', n: increment(1), 'meta.old': deleteField(), map: { a: 1 } }, { version: 5 });
  assert.equal(calls[0].method, 'PATCH');
  assert.deepEqual(calls[0].body, { text: 'bye', n: { $increment: 1 }, 'meta.old': { $delete: true }, map: { a: 1 } });
  assert.equal(calls[0].headers['if-match'], '"5"');
  await assert.rejects(hearth.doc('notes/n1').update({}), { code: 'invalid_argument' });
});

test('update() of a missing document throws not_found', async () => {
  const { hearth } = clientWith(() => notFound);
  await assert.rejects(hearth.doc('notes/n1').update({ a: 1 }), { code: 'not_found', status: 404 });
});

test('set(…, {merge: true}) PATCHes the leaf field paths', async () => {
  const { hearth, calls } = clientWith(() => ({ body: wireDoc('users/u1', {}, 3) }));
  await hearth.doc('users/u1').set({ profile: { name: 'Ada', 'nick.name': 'a' }, old: deleteField() }, { merge: true });
  assert.equal(calls.length, 1);
  assert.equal(calls[0].method, 'PATCH');
  assert.deepEqual(calls[0].body, { 'profile.name': 'Ada', 'profile.`nick.name`': 'a', old: { $delete: true } });
});

test('a merge into a missing document creates it without the deleted fields', async () => {
  const { hearth, calls } = clientWith((request) => (request.method === 'PATCH' ? notFound : { status: 201, body: wireDoc('users/u1', request.body, 1) }));
  const snap = await hearth.doc('users/u1').set({ profile: { name: 'Ada' }, old: deleteField() }, { merge: true });
  assert.deepEqual(
    calls.map((call) => call.method),
    ['PATCH', 'PUT'],
  );
  assert.deepEqual(calls[1].body, { profile: { name: 'Ada' } });
  assert.equal(calls[1].headers['if-none-match'], '*');
  assert.equal(snap.exists, true);
});

test('a merge that races a concurrent create merges again', async () => {
  const { hearth, calls } = clientWith((request, n) => {
    if (n === 1) return notFound;
    if (n === 2) return { status: 409, body: { error: { code: 'already_exists', message: 'raced' } } };
    return { body: wireDoc('users/u1', {}, 2) };
  });
  await hearth.doc('users/u1').set({ a: 1 }, { merge: true });
  assert.deepEqual(
    calls.map((call) => call.method),
    ['PATCH', 'PUT', 'PATCH'],
  );
});

test('delete() sends DELETE and honours version', async () => {
  const { hearth, calls } = clientWith(() => ({ status: 204 }));
  await hearth.doc('notes/n1').delete();
  await hearth.doc('notes/n1').delete({ version: 9 });
  assert.equal(calls[0].method, 'DELETE');
  assert.equal(calls[1].headers['if-match'], '"9"');
});

test('add() POSTs to the collection and returns the created reference', async () => {
  const { hearth, calls } = clientWith(() => ({
    status: 201,
    headers: { location: '/v1/docs/users/u1/notes/AbCdEfGhIjKlMnOpQrSt', 'content-type': 'application/json' },
    body: wireDoc('users/u1/notes/AbCdEfGhIjKlMnOpQrSt', { text: 'hi' }),
  }));
  const ref = await hearth.collection('users/u1/notes').add({ text: 'hi', at: serverTimestamp() });
  assert.equal(calls[0].method, 'POST');
  assert.equal(calls[0].path, '/v1/docs/users/u1/notes');
  assert.deepEqual(calls[0].body, { text: 'hi', at: { $serverTimestamp: true } });
  assert.equal(ref.id, 'AbCdEfGhIjKlMnOpQrSt');
  assert.equal(ref.parent.path, 'users/u1/notes');
});

test('add() falls back to the Location header when the body has no path', async () => {
  const { hearth } = clientWith(() => ({ status: 201, headers: { location: 'http://127.0.0.1:8080/v1/docs/notes/Xyz' }, body: {} }));
  const ref = await hearth.collection('notes').add({});
  assert.equal(ref.path, 'notes/Xyz');
});

test('the service key is sent as a bearer token', async () => {
  const { hearth, calls } = clientWith(() => notFound, { serviceKey: 'sk_test' });
  await hearth.doc('a/b').get();
  assert.equal(calls[0].headers.authorization, 'Bearer sk_test');
});

test('without credentials no Authorization header is sent', async () => {
  const { hearth, calls } = clientWith(() => notFound);
  await hearth.doc('a/b').get();
  assert.equal(calls[0].headers.authorization, undefined);
});
