// Realtime listeners over the real WebSocket endpoint (DESIGN §5). Node 20 has no global
// WebSocket, so this also exercises the SDK's fallback to the optional `ws` package. Skipped,
// with a reason, while the server has no /v1/realtime.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createClient } from '../../dist/index.js';
import { hasRealtime, startServer, uniqueCollection } from './server.mjs';

let server;
let supported = false;
const skipUnlessRealtime = (t) => {
  if (!supported) t.skip('the server has no /v1/realtime endpoint yet');
  return !supported;
};

before(async () => {
  server = await startServer();
  supported = await hasRealtime(server.url);
});

after(async () => {
  await server?.stop();
});

/**
 * Collects snapshots; `next(predicate)` resolves with the first snapshot after the previously
 * matched one that satisfies the predicate, so a test reads the stream in order.
 */
function collector() {
  const items = [];
  const waiters = [];
  let cursor = 0;
  const take = (predicate) => {
    for (let index = cursor; index < items.length; index++) {
      if (predicate(items[index])) {
        cursor = index + 1;
        return items[index];
      }
    }
    return undefined;
  };
  return {
    items,
    errors: [],
    push(item) {
      items.push(item);
      for (const waiter of [...waiters]) {
        const hit = take(waiter.predicate);
        if (hit) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(hit);
        }
      }
    },
    next(predicate, timeoutMs = 10_000) {
      const hit = take(predicate);
      if (hit) return Promise.resolve(hit);
      return new Promise((resolve, reject) => {
        waiters.push({ predicate, resolve });
        setTimeout(() => reject(new Error(`no matching snapshot within ${timeoutMs} ms; got ${items.length}`)), timeoutMs).unref();
      });
    },
  };
}

test('a query listener gets the current result, then ordered changes', async (t) => {
  if (skipUnlessRealtime(t)) return;
  const hearth = createClient(server.url, { serviceKey: server.serviceKey });
  const posts = hearth.collection(uniqueCollection('posts'));
  await posts.doc('a').set({ owner: 'u1', n: 1 });
  await posts.doc('b').set({ owner: 'u1', n: 5 });
  await posts.doc('x').set({ owner: 'u2', n: 3 });
  const seen = collector();
  const unsubscribe = posts.where('owner', '==', 'u1').orderBy('n', 'desc').onSnapshot(
    (s) => seen.push(s),
    (e) => seen.errors.push(e),
  );
  const first = await seen.next(() => true);
  assert.deepEqual(first.docs.map((d) => d.id), ['b', 'a']);
  assert.deepEqual(first.docChanges().map((c) => c.type), ['added', 'added']);

  await posts.doc('c').set({ owner: 'u1', n: 3 });
  const added = await seen.next((s) => s.size === 3);
  assert.deepEqual(added.docs.map((d) => d.id), ['b', 'c', 'a']);
  assert.deepEqual(added.docChanges().map((c) => [c.type, c.doc.id, c.newIndex]), [['added', 'c', 1]]);

  await posts.doc('a').update({ n: 10 });
  const moved = await seen.next((s) => s.docs[0]?.id === 'a');
  assert.deepEqual(moved.docs.map((d) => d.id), ['a', 'b', 'c']);
  const [change] = moved.docChanges();
  assert.deepEqual([change.type, change.oldIndex, change.newIndex], ['modified', 2, 0]);
  assert.equal(change.doc.data().n, 10);

  await posts.doc('b').delete();
  const removed = await seen.next((s) => s.size === 2);
  assert.deepEqual(removed.docs.map((d) => d.id), ['a', 'c']);
  assert.deepEqual(removed.docChanges().map((c) => [c.type, c.doc.id]), [['removed', 'b']]);

  // Writes outside the query never show up.
  const count = seen.items.length;
  await posts.doc('y').set({ owner: 'u2', n: 99 });
  await posts.doc('c').update({ n: 4 });
  await seen.next((s) => s.docs.find((d) => d.id === 'c')?.data().n === 4);
  assert.equal(seen.items.length, count + 1);
  assert.deepEqual(seen.errors, []);
  unsubscribe();
  hearth.close();
});

test('a limited query keeps exactly its window as documents enter and leave', async (t) => {
  if (skipUnlessRealtime(t)) return;
  const hearth = createClient(server.url, { serviceKey: server.serviceKey });
  const scores = hearth.collection(uniqueCollection('scores'));
  for (const [id, n] of [['a', 9], ['b', 7], ['c', 5]]) await scores.doc(id).set({ n });
  const seen = collector();
  const stop = scores.orderBy('n', 'desc').limit(2).onSnapshot((s) => seen.push(s));
  await seen.next((s) => s.size === 2);
  await scores.doc('d').set({ n: 8 });
  const next = await seen.next((s) => s.docs.map((d) => d.id).join() === 'a,d');
  assert.equal(next.size, 2);
  await scores.doc('a').delete();
  await seen.next((s) => s.docs.map((d) => d.id).join() === 'd,b');
  stop();
  hearth.close();
});

test('a document listener follows create, update and delete', async (t) => {
  if (skipUnlessRealtime(t)) return;
  const hearth = createClient(server.url, { serviceKey: server.serviceKey });
  const ref = hearth.doc(`${uniqueCollection()}/d`);
  const seen = collector();
  const stop = ref.onSnapshot((s) => seen.push(s));
  const missing = await seen.next(() => true);
  assert.equal(missing.exists, false);
  await ref.set({ v: 1 });
  const created = await seen.next((s) => s.exists);
  assert.equal(created.data().v, 1);
  await ref.update({ v: 2 });
  await seen.next((s) => s.exists && s.data().v === 2);
  await ref.delete();
  await seen.next((s) => !s.exists);
  stop();
  hearth.close();
});

test('listeners share one socket and stop receiving after unsubscribe', async (t) => {
  if (skipUnlessRealtime(t)) return;
  const hearth = createClient(server.url, { serviceKey: server.serviceKey });
  const c = hearth.collection(uniqueCollection());
  const a = collector();
  const b = collector();
  const stopA = c.doc('1').onSnapshot((s) => a.push(s));
  const stopB = c.onSnapshot((s) => b.push(s));
  await a.next(() => true);
  await b.next(() => true);
  stopA();
  await c.doc('1').set({ n: 1 });
  await b.next((s) => s.size === 1);
  assert.equal(a.items.length, 1, 'the stopped listener got nothing more');
  stopB();
  hearth.close();
});

test('after the server restarts, listeners reconnect and resume without losing writes', async (t) => {
  if (skipUnlessRealtime(t)) return;
  const hearth = createClient(server.url, { serviceKey: server.serviceKey, realtime: { reconnectBaseMs: 100, reconnectMaxMs: 1_000 } });
  const c = hearth.collection(uniqueCollection('resume'));
  await c.doc('a').set({ n: 1 });
  const seen = collector();
  const stop = c.orderBy('n').onSnapshot((s) => seen.push(s), (e) => seen.errors.push(e));
  await seen.next((s) => s.size === 1);
  server = await server.restart();
  // Written while (or right after) the socket was down: the resumed stream must carry it.
  const writer = createClient(server.url, { serviceKey: server.serviceKey });
  await writer.doc(`${c.path}/b`).set({ n: 2 });
  const resumed = await seen.next((s) => s.size === 2, 20_000);
  assert.deepEqual(resumed.docs.map((d) => d.id), ['a', 'b']);
  // Exactly the missed change, nothing replayed: the view only gains `b`.
  assert.deepEqual(
    resumed.docChanges().map((change) => [change.type, change.doc.id, change.newIndex]),
    [['added', 'b', 1]],
  );
  assert.deepEqual(seen.errors, []);
  stop();
  hearth.close();
  writer.close();
});
