import assert from 'node:assert/strict';
import { test } from 'node:test';
import { and, createClient, DocumentSnapshot, or, where } from '../../dist/index.js';
import { fakeFetch, wireDoc } from './helpers.mjs';

function clientWith(handler = () => ({ body: { documents: [] } })) {
  const fake = fakeFetch(handler);
  return { hearth: createClient('http://127.0.0.1:8080', { fetch: fake.fetch }), calls: fake.calls };
}

test('a top-level collection query names the collection in "from"', () => {
  const { hearth } = clientWith();
  assert.deepEqual(hearth.collection('posts').toJSON(), { from: 'posts' });
});

test('a subcollection query sends the last segment as "from" and the owner as "parent"', () => {
  const { hearth } = clientWith();
  assert.deepEqual(hearth.collection('users/u1/posts').toJSON(), { from: 'posts', parent: 'users/u1' });
  assert.deepEqual(hearth.doc('users/u1').collection('posts').toJSON(), { from: 'posts', parent: 'users/u1' });
});

test('collectionGroup sets allDescendants', () => {
  const { hearth } = clientWith();
  assert.deepEqual(hearth.collectionGroup('posts').where('n', '>', 1).toJSON(), {
    from: 'posts',
    allDescendants: true,
    where: ['n', '>', 1],
  });
});

test('one where is a bare condition; several are AND-ed', () => {
  const { hearth } = clientWith();
  const posts = hearth.collection('posts');
  assert.deepEqual(posts.where('owner', '==', 'u1').toJSON().where, ['owner', '==', 'u1']);
  assert.deepEqual(posts.where('owner', '==', 'u1').where('n', '>=', 2).toJSON().where, {
    and: [
      ['owner', '==', 'u1'],
      ['n', '>=', 2],
    ],
  });
});

test('and()/or() composites produce the nested wire form of DESIGN §3', () => {
  const { hearth } = clientWith();
  const query = hearth
    .collection('posts')
    .where(and(where('owner', '==', 'u1'), or(where('n', '>', 5), where('tags', 'array-contains', 'x'))));
  assert.deepEqual(query.toJSON().where, {
    and: [['owner', '==', 'u1'], { or: [['n', '>', 5], ['tags', 'array-contains', 'x']] }],
  });
});

test('filter values use the typed wire encoding', () => {
  const { hearth } = clientWith();
  const query = hearth
    .collection('posts')
    .where('at', '<', new Date('2026-01-01T00:00:00Z'))
    .where('author', 'in', [hearth.doc('users/u1'), hearth.doc('users/u2')]);
  assert.deepEqual(query.toJSON().where, {
    and: [
      ['at', '<', { $timestamp: '2026-01-01T00:00:00.000000Z' }],
      ['author', 'in', [{ $ref: 'users/u1' }, { $ref: 'users/u2' }]],
    ],
  });
});

test('bad operators and non-array "in" values are rejected early', () => {
  const { hearth } = clientWith();
  assert.throws(() => hearth.collection('p').where('a', '=', 1), { code: 'invalid_argument' });
  assert.throws(() => hearth.collection('p').where('a', 'in', 1), { code: 'invalid_argument' });
  assert.throws(() => or(), { code: 'invalid_argument' });
});

test('orderBy, limit, offset, select and value cursors', () => {
  const { hearth } = clientWith();
  const query = hearth
    .collection('posts')
    .orderBy('n', 'desc')
    .orderBy('title')
    .limit(20)
    .offset(5)
    .startAfter(10, 'b', 'p9')
    .endAt(1)
    .select('title', 'n');
  assert.deepEqual(query.toJSON(), {
    from: 'posts',
    orderBy: [
      ['n', 'desc'],
      ['title', 'asc'],
    ],
    limit: 20,
    offset: 5,
    startAfter: [10, 'b', 'p9'],
    endAt: [1],
    select: ['title', 'n'],
  });
});

test('a snapshot cursor sends its orderBy values then the document id', () => {
  const { hearth } = clientWith();
  const snapshot = new DocumentSnapshot(hearth.doc('posts/p9'), { n: 10, meta: { at: new Date(0) } });
  const query = hearth.collection('posts').orderBy('n', 'desc').orderBy('meta.at').startAfter(snapshot);
  assert.deepEqual(query.toJSON().startAfter, [10, { $timestamp: '1970-01-01T00:00:00.000000Z' }, 'p9']);
  assert.deepEqual(hearth.collection('posts').startAt(snapshot).toJSON().startAt, ['p9']);
});

test('builders are immutable', () => {
  const { hearth } = clientWith();
  const base = hearth.collection('posts').where('a', '==', 1);
  base.limit(3);
  base.orderBy('a');
  assert.deepEqual(base.toJSON(), { from: 'posts', where: ['a', '==', 1] });
});

test('get() posts the query and wraps the documents as snapshots', async () => {
  const { hearth, calls } = clientWith(() => ({
    body: { documents: [wireDoc('posts/p1', { n: 1 }, 7), wireDoc('posts/p2', { n: 2, at: { $timestamp: '2026-11-25T10:00:00.5Z' } }, 8)] },
  }));
  const result = await hearth.collection('posts').where('n', '>', 0).get();
  assert.equal(calls[0].method, 'POST');
  assert.equal(calls[0].path, '/v1/query');
  assert.deepEqual(calls[0].body, { from: 'posts', where: ['n', '>', 0] });
  assert.equal(result.size, 2);
  assert.equal(result.empty, false);
  assert.deepEqual(
    result.docs.map((doc) => [doc.id, doc.version, doc.exists]),
    [
      ['p1', 7, true],
      ['p2', 8, true],
    ],
  );
  assert.ok(result.docs[1].data().at instanceof Date);
  assert.equal(result.docs[0].createTime.toISOString(), '2026-11-25T10:00:00.000Z');
  const seen = [];
  result.forEach((doc) => seen.push(doc.ref.path));
  assert.deepEqual(seen, ['posts/p1', 'posts/p2']);
  assert.deepEqual(
    result.docChanges().map((change) => [change.type, change.newIndex]),
    [
      ['added', 0],
      ['added', 1],
    ],
  );
});

test('count, sum, avg and aggregate send "aggregate" and read "aggregates"', async () => {
  const { hearth, calls } = clientWith((request) => {
    const aggregate = request.body.aggregate;
    if (aggregate.count && aggregate.sum) return { body: { aggregates: { count: 3, sum_n: 12, avg_n: 4.0 } } };
    if (aggregate.count) return { body: { aggregates: { count: 3 } } };
    if (aggregate.sum) return { body: { aggregates: { sum_n: 12 } } };
    return { body: { aggregates: { avg_n: null } } };
  });
  const query = hearth.collection('posts').where('owner', '==', 'u1');
  assert.equal(await query.count(), 3);
  assert.deepEqual(calls[0].body, { from: 'posts', where: ['owner', '==', 'u1'], aggregate: { count: true } });
  assert.equal(await query.sum('n'), 12);
  assert.deepEqual(calls[1].body.aggregate, { sum: ['n'] });
  assert.equal(await query.avg('n'), null);
  assert.deepEqual(calls[2].body.aggregate, { avg: ['n'] });
  assert.deepEqual(await query.aggregate({ count: true, sum: ['n'], avg: ['n'] }), { count: 3, sum_n: 12, avg_n: 4 });
  assert.deepEqual(calls[3].body.aggregate, { count: true, sum: ['n'], avg: ['n'] });
});

test('pages() follows nextPageToken until the server stops sending one', async () => {
  const { hearth, calls } = clientWith((request) => {
    const token = request.body.pageToken;
    if (!token) return { body: { documents: [wireDoc('posts/a', {}), wireDoc('posts/b', {})], nextPageToken: 't1' } };
    if (token === 't1') return { body: { documents: [wireDoc('posts/c', {}), wireDoc('posts/d', {})], nextPageToken: 't2' } };
    return { body: { documents: [wireDoc('posts/e', {})] } };
  });
  const ids = [];
  for await (const page of hearth.collection('posts').orderBy('n').limit(2).pages()) ids.push(page.docs.map((d) => d.id));
  assert.deepEqual(ids, [['a', 'b'], ['c', 'd'], ['e']]);
  assert.deepEqual(
    calls.map((call) => call.body.pageToken),
    [undefined, 't1', 't2'],
  );
  assert.ok(calls.every((call) => call.body.limit === 2 && call.body.orderBy[0][0] === 'n'));
});

test('explain() posts the same body to /v1/query/explain', async () => {
  const { hearth, calls } = clientWith(() => ({ body: { plan: 'scan' } }));
  const plan = await hearth.collection('posts').where('n', '>', 1).explain();
  assert.equal(calls[0].path, '/v1/query/explain');
  assert.deepEqual(calls[0].body, { from: 'posts', where: ['n', '>', 1] });
  assert.deepEqual(plan, { plan: 'scan' });
});
