// Documents against the real server, as an admin (service key): DESIGN §2 values and §3 routes.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  arrayRemove,
  arrayUnion,
  createClient,
  deleteField,
  double,
  GeoPoint,
  HearthError,
  increment,
  serverTimestamp,
} from '../../dist/index.js';
import { startServer, uniqueCollection } from './server.mjs';

let server;
let hearth;

before(async () => {
  server = await startServer();
  hearth = createClient(server.url, { serviceKey: server.serviceKey });
});

after(async () => {
  hearth?.close();
  await server?.stop();
});

test('add() creates a document with a 20-character auto ID that get() reads back', async () => {
  const notes = hearth.collection(uniqueCollection('notes'));
  const ref = await notes.add({ text: 'hi', n: 1 });
  assert.match(ref.id, /^[A-Za-z0-9]{20}$/);
  assert.equal(ref.parent.path, notes.path);
  const snap = await ref.get();
  assert.equal(snap.exists, true);
  assert.equal(snap.id, ref.id);
  assert.deepEqual(snap.data(), { text: 'hi', n: 1 });
  assert.ok(Number.isInteger(snap.version) && snap.version > 0);
  assert.ok(snap.createTime instanceof Date && !Number.isNaN(snap.createTime.getTime()));
  assert.ok(snap.updateTime instanceof Date);
});

test('a missing document reads as exists === false', async () => {
  const snap = await hearth.doc(`${uniqueCollection()}/nobody`).get();
  assert.equal(snap.exists, false);
  assert.equal(snap.data(), undefined);
});

test('typed values round-trip through the server', async () => {
  const ref = hearth.doc(`${uniqueCollection('typed')}/t1`);
  const at = new Date('2026-11-25T10:00:00.123Z');
  const owner = hearth.doc('users/u1');
  await ref.set({
    at,
    blob: new Uint8Array([0, 1, 2, 250, 255]),
    owner,
    place: new GeoPoint(52.1, 4.3),
    nested: { list: [1, 2.5, 'x', null, true, { deep: at }] },
    ratio: double(2),
  });
  const data = (await ref.get()).data();
  assert.ok(data.at instanceof Date);
  assert.equal(data.at.getTime(), at.getTime());
  assert.ok(data.blob instanceof Uint8Array);
  assert.deepEqual([...data.blob], [0, 1, 2, 250, 255]);
  assert.equal(data.owner.path, 'users/u1');
  assert.ok(data.owner.isEqual(owner));
  assert.ok(data.place instanceof GeoPoint && data.place.isEqual(new GeoPoint(52.1, 4.3)));
  assert.deepEqual(data.nested.list.slice(0, 5), [1, 2.5, 'x', null, true]);
  assert.equal(data.nested.list[5].deep.getTime(), at.getTime());
  assert.equal(data.ratio, 2);
});

test('set() replaces the whole document and answers the written version', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/d1`);
  const created = await ref.set({ a: 1, b: 2 });
  assert.equal(created.exists, true);
  const replaced = await ref.set({ c: 3 });
  assert.ok(replaced.version > created.version, 'versions increase');
  assert.deepEqual((await ref.get()).data(), { c: 3 });
});

test('create() refuses an existing document with already_exists', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/once`);
  await ref.create({ n: 1 });
  await assert.rejects(ref.create({ n: 2 }), (error) => error instanceof HearthError && error.code === 'already_exists' && error.status === 409);
  assert.deepEqual((await ref.get()).data(), { n: 1 });
});

test('update() changes named field paths only, and throws not_found for a missing document', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/u1`);
  await ref.set({ name: 'Ada', address: { city: 'London', zip: 'N1' }, keep: true });
  await ref.update({ 'address.city': 'Oslo', name: 'Ada L' });
  assert.deepEqual((await ref.get()).data(), { name: 'Ada L', address: { city: 'Oslo', zip: 'N1' }, keep: true });
  // A map value replaces the whole field.
  await ref.update({ address: { city: 'Paris' } });
  assert.deepEqual((await ref.get()).data().address, { city: 'Paris' });
  await assert.rejects(hearth.doc(`${ref.parent.path}/missing`).update({ a: 1 }), { code: 'not_found', status: 404 });
});

test('transforms are applied by the server', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/t`);
  const before = Date.now();
  await ref.set({ n: 1, tags: ['a', 'b'], gone: 'x', at: serverTimestamp() });
  await ref.update({ n: increment(4), tags: arrayUnion('b', 'c'), gone: deleteField() });
  await ref.update({ tags: arrayRemove('a') });
  const data = (await ref.get()).data();
  assert.equal(data.n, 5);
  assert.deepEqual(data.tags, ['b', 'c']);
  assert.equal('gone' in data, false);
  assert.ok(data.at instanceof Date);
  assert.ok(Math.abs(data.at.getTime() - before) < 60_000, 'server timestamp is now-ish');
});

test('set with merge merges nested fields and creates missing documents', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/m`);
  await ref.set({ profile: { name: 'Ada' }, old: deleteField() }, { merge: true });
  assert.deepEqual((await ref.get()).data(), { profile: { name: 'Ada' } });
  await ref.set({ profile: { city: 'Oslo' }, n: 1 }, { merge: true });
  assert.deepEqual((await ref.get()).data(), { profile: { name: 'Ada', city: 'Oslo' }, n: 1 });
  await ref.set({ n: deleteField() }, { merge: true });
  assert.deepEqual((await ref.get()).data(), { profile: { name: 'Ada', city: 'Oslo' } });
});

test('a stale version precondition fails with failed_precondition and writes nothing', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/v`);
  const first = await ref.set({ n: 1 });
  const second = await ref.update({ n: 2 }, { version: first.version });
  await assert.rejects(ref.update({ n: 3 }, { version: first.version }), { code: 'failed_precondition', status: 412 });
  await assert.rejects(ref.set({ n: 4 }, { version: first.version }), { code: 'failed_precondition' });
  await assert.rejects(ref.delete({ version: first.version }), { code: 'failed_precondition' });
  const snap = await ref.get();
  assert.equal(snap.data().n, 2);
  assert.equal(snap.version, second.version);
});

test('delete() removes the document and succeeds when it is already gone', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/gone`);
  await ref.set({ a: 1 });
  await ref.delete();
  assert.equal((await ref.get()).exists, false);
  await ref.delete();
});

test('subcollections are addressed by alternating paths and survive their parent', async () => {
  const user = hearth.doc(`${uniqueCollection('users')}/u1`);
  await user.set({ name: 'Ada' });
  const post = user.collection('posts').doc('p1');
  await post.set({ title: 'hello' });
  assert.equal(post.path, `${user.path}/posts/p1`);
  await user.delete();
  assert.equal((await post.get()).data().title, 'hello');
});

test('IDs with spaces and non-ASCII characters work end to end', async () => {
  const ref = hearth.doc(`${uniqueCollection()}/São Paulo #1`);
  await ref.set({ ok: true });
  const snap = await ref.get();
  assert.equal(snap.id, 'São Paulo #1');
  assert.equal(snap.data().ok, true);
});

test('a wrong service key is unauthenticated', async () => {
  const stranger = createClient(server.url, { serviceKey: 'not-the-key' });
  await assert.rejects(stranger.doc(`${uniqueCollection()}/x`).get(), (error) => error instanceof HearthError && error.code === 'unauthenticated' && error.status === 401);
});

test('a client without credentials is denied (no rules file means deny all)', async () => {
  const anonymous = createClient(server.url);
  await assert.rejects(anonymous.doc(`${uniqueCollection()}/x`).set({ a: 1 }), (error) => error instanceof HearthError && ['permission_denied', 'unauthenticated'].includes(error.code));
});

test('an unreachable server is an unavailable HearthError', async () => {
  const nowhere = createClient('http://127.0.0.1:9', { serviceKey: 'x' });
  await assert.rejects(nowhere.doc('a/b').get(), { code: 'unavailable', status: 0 });
});
