// Batches and optimistic transactions (POST /v1/batch) against the real server.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient, HearthError, increment } from '../../dist/index.js';
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

test('a batch commits all its writes at one version', async () => {
  const c = hearth.collection(uniqueCollection());
  await c.doc('old').set({ n: 1 });
  await c.doc('upd').set({ n: 1, keep: true });
  const result = await hearth
    .batch()
    .set(c.doc('a'), { n: 1 })
    .create(c.doc('b'), { n: 2 })
    .update(c.doc('upd'), { n: increment(10) })
    .delete(c.doc('old'))
    .commit();
  assert.ok(Number.isInteger(result.version));
  assert.deepEqual(result.results.map((r) => r.path), [c.doc('a').path, c.doc('b').path, c.doc('upd').path, c.doc('old').path]);
  const a = await c.doc('a').get();
  assert.equal(a.version, result.version);
  assert.deepEqual((await c.doc('upd').get()).data(), { n: 11, keep: true });
  assert.equal((await c.doc('old').get()).exists, false);
});

test('a batch is all or nothing', async () => {
  const c = hearth.collection(uniqueCollection());
  await c.doc('exists').set({ n: 1 });
  const batch = hearth.batch().set(c.doc('new'), { n: 1 }).create(c.doc('exists'), { n: 2 });
  await assert.rejects(batch.commit(), (error) => error instanceof HearthError && error.code === 'already_exists');
  assert.equal((await c.doc('new').get()).exists, false);
  assert.deepEqual((await c.doc('exists').get()).data(), { n: 1 });
});

test('version and existence preconditions guard batch writes', async () => {
  const c = hearth.collection(uniqueCollection());
  const stale = await c.doc('d').set({ n: 1 });
  await c.doc('d').set({ n: 2 });
  await assert.rejects(hearth.batch().verify(c.doc('d'), { version: stale.version }).set(c.doc('other'), { x: 1 }).commit(), {
    code: 'failed_precondition',
  });
  assert.equal((await c.doc('other').get()).exists, false);
  await assert.rejects(hearth.batch().update(c.doc('d'), { n: 3 }, { precondition: { exists: false } }).commit(), { code: 'failed_precondition' });
  const current = await c.doc('d').get();
  await hearth.batch().update(c.doc('d'), { n: 3 }, { version: current.version }).commit();
  assert.equal((await c.doc('d').get()).data().n, 3);
});

test('an update in a batch on a missing document fails the batch', async () => {
  const c = hearth.collection(uniqueCollection());
  await assert.rejects(hearth.batch().update(c.doc('missing'), { n: 1 }).commit(), (error) => error instanceof HearthError && ['not_found', 'failed_precondition'].includes(error.code));
});

test('a transaction reads, then writes guarded by the versions it read', async () => {
  const c = hearth.collection(uniqueCollection('accounts'));
  await c.doc('alice').set({ balance: 100 });
  await c.doc('bob').set({ balance: 0 });
  const moved = await hearth.runTransaction(async (tx) => {
    const alice = await tx.get(c.doc('alice'));
    const bob = await tx.get(c.doc('bob'));
    const log = await tx.get(c.doc('log'));
    tx.update(c.doc('alice'), { balance: alice.data().balance - 30 });
    tx.update(c.doc('bob'), { balance: bob.data().balance + 30 });
    tx.set(c.doc('log'), { entries: log.exists ? log.data().entries + 1 : 1 });
    return 30;
  });
  assert.equal(moved, 30);
  assert.equal((await c.doc('alice').get()).data().balance, 70);
  assert.equal((await c.doc('bob').get()).data().balance, 30);
  assert.equal((await c.doc('log').get()).data().entries, 1);
});

test('concurrent transactions on one counter retry until every increment lands', async () => {
  const counter = hearth.doc(`${uniqueCollection()}/counter`);
  await counter.set({ n: 0 });
  let attempts = 0;
  const workers = 4;
  await Promise.all(
    Array.from({ length: workers }, () =>
      hearth.runTransaction(
        async (tx) => {
          attempts++;
          const snap = await tx.get(counter);
          tx.update(counter, { n: snap.data().n + 1 });
        },
        { maxAttempts: 10, backoffBaseMs: 20 },
      ),
    ),
  );
  assert.equal((await counter.get()).data().n, workers);
  assert.ok(attempts >= workers);
});

test('a transaction that lost the race to a plain write is retried and sees the new value', async () => {
  const doc = hearth.doc(`${uniqueCollection()}/d`);
  await doc.set({ n: 1 });
  const seen = [];
  await hearth.runTransaction(
    async (tx) => {
      const snap = await tx.get(doc);
      seen.push(snap.data().n);
      if (seen.length === 1) await doc.set({ n: 100 }); // Someone else writes between read and commit.
      tx.update(doc, { n: snap.data().n + 1 });
    },
    { backoffBaseMs: 5 },
  );
  assert.deepEqual(seen, [1, 100]);
  assert.equal((await doc.get()).data().n, 101);
});
