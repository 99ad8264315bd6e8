// Structured queries (POST /v1/query) against the real server, as an admin (service key).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient, or, where } from '../../dist/index.js';
import { startServer, uniqueCollection } from './server.mjs';

let server;
let hearth;
let posts;

const seed = [
  { id: 'p1', owner: 'u1', n: 1, tags: ['x'], title: 'one', at: new Date('2026-01-01T00:00:00Z') },
  { id: 'p2', owner: 'u1', n: 5, tags: ['y'], title: 'two', at: new Date('2026-01-02T00:00:00Z') },
  { id: 'p3', owner: 'u2', n: 7, tags: ['x', 'y'], title: 'three', at: new Date('2026-01-03T00:00:00Z') },
  { id: 'p4', owner: 'u1', n: 9, tags: [], title: 'four', at: new Date('2026-01-04T00:00:00Z') },
  { id: 'p5', owner: 'u3', n: 3, tags: ['z'], title: 'five', at: new Date('2026-01-05T00:00:00Z') },
];

before(async () => {
  server = await startServer();
  hearth = createClient(server.url, { serviceKey: server.serviceKey });
  posts = hearth.collection(uniqueCollection('posts'));
  const batch = hearth.batch();
  for (const { id, ...data } of seed) batch.set(posts.doc(id), data);
  await batch.commit();
});

after(async () => {
  hearth?.close();
  await server?.stop();
});

const ids = (snapshot) => snapshot.docs.map((doc) => doc.id);

test('where == with orderBy desc and limit', async () => {
  const result = await posts.where('owner', '==', 'u1').orderBy('n', 'desc').limit(2).get();
  assert.deepEqual(ids(result), ['p4', 'p2']);
  assert.equal(result.size, 2);
  assert.equal(result.docs[0].data().title, 'four');
  assert.ok(result.docs[0].version > 0);
});

test('range filters, in, not-in and array-contains', async () => {
  assert.deepEqual(ids(await posts.where('n', '>', 4).orderBy('n').get()), ['p2', 'p3', 'p4']);
  assert.deepEqual(ids(await posts.where('n', '>=', 3).where('n', '<', 7).orderBy('n').get()), ['p5', 'p2']);
  assert.deepEqual(ids(await posts.where('owner', 'in', ['u2', 'u3']).orderBy('n').get()), ['p5', 'p3']);
  assert.deepEqual(ids(await posts.where('owner', 'not-in', ['u1']).orderBy('n').get()), ['p5', 'p3']);
  assert.deepEqual(ids(await posts.where('tags', 'array-contains', 'x').orderBy('n').get()), ['p1', 'p3']);
  assert.deepEqual(ids(await posts.where('tags', 'array-contains-any', ['y', 'z']).orderBy('n').get()), ['p5', 'p2', 'p3']);
  assert.deepEqual(ids(await posts.where('owner', '!=', 'u1').orderBy('n').get()), ['p5', 'p3']);
});

test('or() composites nested in and()', async () => {
  const query = posts.where('owner', '==', 'u1').where(or(where('n', '>', 5), where('tags', 'array-contains', 'x'))).orderBy('n');
  assert.deepEqual(ids(await query.get()), ['p1', 'p4']);
});

test('timestamps compare as timestamps in filters', async () => {
  const result = await posts.where('at', '>=', new Date('2026-01-03T00:00:00Z')).orderBy('at').get();
  assert.deepEqual(ids(result), ['p3', 'p4', 'p5']);
  assert.ok(result.docs[0].data().at instanceof Date);
});

test('offset skips results', async () => {
  assert.deepEqual(ids(await posts.orderBy('n').offset(3).get()), ['p3', 'p4']);
});

test('cursors by value and by snapshot', async () => {
  const byN = posts.orderBy('n');
  assert.deepEqual(ids(await byN.startAfter(5).get()), ['p3', 'p4']);
  assert.deepEqual(ids(await byN.startAt(5).get()), ['p2', 'p3', 'p4']);
  assert.deepEqual(ids(await byN.endBefore(5).get()), ['p1', 'p5']);
  assert.deepEqual(ids(await byN.endAt(5).get()), ['p1', 'p5', 'p2']);
  const first = await byN.limit(2).get();
  const next = await byN.startAfter(first.docs[1]).limit(2).get();
  assert.deepEqual(ids(next), ['p2', 'p3']);
});

test('select() returns only the named fields', async () => {
  const result = await posts.where('owner', '==', 'u2').select('title').get();
  assert.deepEqual(result.docs.map((d) => d.data()), [{ title: 'three' }]);
});

test('count, sum, avg and a combined aggregate', async () => {
  const u1 = posts.where('owner', '==', 'u1');
  assert.equal(await u1.count(), 3);
  assert.equal(await u1.sum('n'), 15);
  assert.equal(await u1.avg('n'), 5);
  assert.deepEqual(await u1.aggregate({ count: true, sum: ['n'], avg: ['n'] }), { count: 3, sum_n: 15, avg_n: 5 });
  assert.equal(await posts.where('owner', '==', 'nobody').count(), 0);
});

test('pages() walks the whole result through nextPageToken', async () => {
  const pages = [];
  for await (const page of posts.orderBy('n').limit(2).pages()) pages.push(ids(page));
  assert.deepEqual(pages.flat(), ['p1', 'p5', 'p2', 'p3', 'p4']);
  assert.ok(pages.length >= 3);
  assert.ok(pages.every((page) => page.length <= 2));
});

test('collectionGroup() queries every collection with that ID', async () => {
  const groupId = uniqueCollection('comments');
  await hearth.doc(`${posts.path}/p1/${groupId}/c1`).set({ by: 'u1' });
  await hearth.doc(`${posts.path}/p2/${groupId}/c2`).set({ by: 'u2' });
  await hearth.doc(`${uniqueCollection('other')}/o1/${groupId}/c3`).set({ by: 'u1' });
  const result = await hearth.collectionGroup(groupId).where('by', '==', 'u1').get();
  assert.deepEqual(result.docs.map((d) => d.id).sort(), ['c1', 'c3']);
  assert.ok(result.docs.some((d) => d.ref.path === `${posts.path}/p1/${groupId}/c1`));
});

test('a subcollection query only sees its own parent', async () => {
  const sub = uniqueCollection('likes');
  await hearth.doc(`${posts.path}/p1/${sub}/l1`).set({ n: 1 });
  await hearth.doc(`${posts.path}/p2/${sub}/l2`).set({ n: 2 });
  const result = await hearth.doc(`${posts.path}/p1`).collection(sub).get();
  assert.deepEqual(ids(result), ['l1']);
});

test('an invalid query is rejected with invalid_argument', async () => {
  const tooMany = Array.from({ length: 31 }, (_, i) => `v${i}`);
  await assert.rejects(posts.where('owner', 'in', tooMany).get(), { code: 'invalid_argument', status: 400 });
});

test('explain() answers a plan for the same query body', async () => {
  const plan = await posts.where('owner', '==', 'u1').orderBy('n').explain();
  assert.equal(typeof plan, 'object');
  assert.ok(Object.keys(plan).length > 0);
});
