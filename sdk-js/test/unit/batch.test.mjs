import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient, deleteField, increment, serverTimestamp } from '../../dist/index.js';
import { fakeFetch, wireDoc } from './helpers.mjs';

function clientWith(handler) {
  const fake = fakeFetch(handler);
  return { hearth: createClient('http://127.0.0.1:8080', { fetch: fake.fetch }), calls: fake.calls };
}

const batchOk = (request) => ({ body: { version: 10, results: request.body.writes.map((w) => ({ path: w.path, version: 10 })) } });

test('a batch posts every write in order with ops, data and preconditions', async () => {
  const { hearth, calls } = clientWith(batchOk);
  const batch = hearth.batch();
  batch
    .set(hearth.doc('a/1'), { n: 1, at: serverTimestamp() })
    .create(hearth.doc('a/2'), { n: 2 })
    .update(hearth.doc('a/3'), { 'x.y': increment(2), z: deleteField() }, { version: 4 })
    .delete(hearth.doc('a/4'), { precondition: { exists: true } })
    .verify(hearth.doc('a/5'), { version: 7 });
  const result = await batch.commit();
  assert.equal(calls[0].path, '/v1/batch');
  assert.deepEqual(calls[0].body, {
    writes: [
      { op: 'set', path: 'a/1', data: { n: 1, at: { $serverTimestamp: true } } },
      { op: 'create', path: 'a/2', data: { n: 2 } },
      { op: 'update', path: 'a/3', data: { 'x.y': { $increment: 2 }, z: { $delete: true } }, precondition: { version: 4 } },
      { op: 'delete', path: 'a/4', precondition: { exists: true } },
      { op: 'verify', path: 'a/5', precondition: { version: 7 } },
    ],
  });
  assert.equal(result.version, 10);
  assert.equal(result.results.length, 5);
  await assert.rejects(batch.commit(), { code: 'failed_precondition' });
});

test('a batch refuses merge sets, foreign references and more than 500 writes', () => {
  const { hearth } = clientWith(batchOk);
  const other = clientWith(batchOk).hearth;
  assert.throws(() => hearth.batch().set(hearth.doc('a/1'), {}, { merge: true }), { code: 'invalid_argument' });
  assert.throws(() => hearth.batch().delete(other.doc('a/1')), { code: 'invalid_argument' });
  const batch = hearth.batch();
  for (let i = 0; i < 500; i++) batch.delete(hearth.doc(`a/${i}`));
  assert.throws(() => batch.delete(hearth.doc('a/x')), { code: 'invalid_argument' });
});

test('a transaction guards writes with the versions it read and verifies read-only documents', async () => {
  const { hearth, calls } = clientWith((request) => {
    if (request.method === 'GET' && request.path === '/v1/docs/accounts/alice') return { body: wireDoc('accounts/alice', { balance: 100 }, 11) };
    if (request.method === 'GET' && request.path === '/v1/docs/accounts/bob') return { body: wireDoc('accounts/bob', { balance: 5 }, 12) };
    if (request.method === 'GET') return { status: 404, body: { error: { code: 'not_found', message: 'missing' } } };
    return batchOk(request);
  });
  const result = await hearth.runTransaction(async (tx) => {
    const alice = await tx.get(hearth.doc('accounts/alice'));
    const bob = await tx.get(hearth.doc('accounts/bob'));
    const audit = await tx.get(hearth.doc('audit/t1'));
    await tx.get(hearth.doc('config/limits')); // read only: verified, not written
    assert.equal(audit.exists, false);
    tx.update(hearth.doc('accounts/alice'), { balance: alice.data().balance - 10 });
    tx.set(hearth.doc('accounts/bob'), { balance: bob.data().balance + 10 });
    tx.set(hearth.doc('audit/t1'), { amount: 10 });
    return 'done';
  });
  assert.equal(result, 'done');
  const batch = calls.find((call) => call.path === '/v1/batch');
  assert.deepEqual(batch.body.writes, [
    { op: 'update', path: 'accounts/alice', data: { balance: 90 }, precondition: { version: 11 } },
    { op: 'set', path: 'accounts/bob', data: { balance: 15 }, precondition: { version: 12 } },
    { op: 'set', path: 'audit/t1', data: { amount: 10 }, precondition: { exists: false } },
    { op: 'verify', path: 'config/limits', precondition: { exists: false } },
  ]);
});

test('a transaction set with merge becomes an update of a read document, or a create of a missing one', async () => {
  const { hearth, calls } = clientWith((request) => {
    if (request.method === 'GET' && request.path.endsWith('/here')) return { body: wireDoc('d/here', { a: { b: 1 } }, 3) };
    if (request.method === 'GET') return { status: 404, body: { error: { code: 'not_found', message: 'missing' } } };
    return batchOk(request);
  });
  await hearth.runTransaction(async (tx) => {
    await tx.get(hearth.doc('d/here'));
    await tx.get(hearth.doc('d/gone'));
    tx.set(hearth.doc('d/here'), { a: { c: 2 } }, { merge: true });
    tx.set(hearth.doc('d/gone'), { a: { c: 2 }, x: deleteField() }, { merge: true });
    assert.throws(() => tx.set(hearth.doc('d/unread'), { a: 1 }, { merge: true }), { code: 'invalid_argument' });
  });
  const batch = calls.find((call) => call.path === '/v1/batch');
  assert.deepEqual(batch.body.writes, [
    { op: 'update', path: 'd/here', data: { 'a.c': 2 }, precondition: { version: 3 } },
    { op: 'create', path: 'd/gone', data: { a: { c: 2 } }, precondition: { exists: false } },
  ]);
});

test('a conflicting transaction runs again, up to 5 attempts in all', async () => {
  let runs = 0;
  const { hearth, calls } = clientWith((request) => {
    if (request.method === 'GET') return { body: wireDoc('c/n', { n: runs }, runs) };
    return { status: 412, body: { error: { code: 'failed_precondition', message: 'version changed' } } };
  });
  await assert.rejects(
    hearth.runTransaction(
      async (tx) => {
        runs++;
        const snap = await tx.get(hearth.doc('c/n'));
        tx.update(hearth.doc('c/n'), { n: snap.data().n + 1 });
      },
      { backoffBaseMs: 1 },
    ),
    { code: 'failed_precondition' },
  );
  assert.equal(runs, 5);
  assert.equal(calls.filter((call) => call.path === '/v1/batch').length, 5);
});

test('a transaction succeeds when a retry commits, and aborted counts as a conflict', async () => {
  let commits = 0;
  const { hearth } = clientWith((request) => {
    if (request.method === 'GET') return { body: wireDoc('c/n', { n: 1 }, 1) };
    commits++;
    if (commits === 1) return { status: 409, body: { error: { code: 'aborted', message: 'contention' } } };
    return batchOk(request);
  });
  let runs = 0;
  const value = await hearth.runTransaction(
    async (tx) => {
      runs++;
      await tx.get(hearth.doc('c/n'));
      tx.update(hearth.doc('c/n'), { n: 2 });
      return runs;
    },
    { backoffBaseMs: 1 },
  );
  assert.equal(value, 2);
});

test('other errors and errors thrown by the function are not retried', async () => {
  let runs = 0;
  const { hearth } = clientWith((request) => {
    if (request.method === 'GET') return { body: wireDoc('c/n', { n: 1 }, 1) };
    return { status: 403, body: { error: { code: 'permission_denied', message: 'no' } } };
  });
  const work = async (tx) => {
    runs++;
    await tx.get(hearth.doc('c/n'));
    tx.update(hearth.doc('c/n'), { n: 2 });
  };
  await assert.rejects(hearth.runTransaction(work), { code: 'permission_denied' });
  assert.equal(runs, 1);
  await assert.rejects(
    hearth.runTransaction(async () => {
      runs++;
      throw new Error('user bug');
    }),
    /user bug/,
  );
  assert.equal(runs, 2);
});

test('reads after writes are refused in a transaction', async () => {
  const { hearth } = clientWith(() => ({ body: wireDoc('c/n', {}, 1) }));
  await assert.rejects(
    hearth.runTransaction(async (tx) => {
      tx.delete(hearth.doc('c/a'));
      await tx.get(hearth.doc('c/n'));
    }),
    { code: 'invalid_argument' },
  );
});
