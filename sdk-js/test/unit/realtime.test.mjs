import assert from 'node:assert/strict';
import { beforeEach, test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { fakeFetch, FakeSocket, tick, waitFor, wireDoc } from './helpers.mjs';

const fast = { reconnectBaseMs: 4, reconnectMaxMs: 16, idleCloseMs: 5 };

function client(options = {}) {
  const fake = fakeFetch(options.handler ?? (() => ({ body: {} })));
  const hearth = createClient('https://hearth.example:8443/base', {
    fetch: fake.fetch,
    WebSocket: FakeSocket,
    realtime: { ...fast, ...options.realtime },
    ...(options.serviceKey === null ? {} : { serviceKey: options.serviceKey ?? 'sk' }),
  });
  return { hearth, calls: fake.calls };
}

/** Opens the latest socket and answers the auth message with `ready`. */
async function openAndReady(uid = null) {
  const socket = await waitFor(() => FakeSocket.last);
  socket.open();
  await waitFor(() => socket.messages.some((m) => m.type === 'auth'));
  socket.receive({ type: 'ready', uid });
  return socket;
}

beforeEach(() => FakeSocket.reset());

test('the socket authenticates first and subscribes once the server is ready', async () => {
  const { hearth } = client();
  const query = hearth.collection('posts').where('owner', '==', 'u1').orderBy('n', 'desc').limit(2);
  const snapshots = [];
  const unsubscribe = query.onSnapshot((s) => snapshots.push(s));
  const socket = await waitFor(() => FakeSocket.last);
  assert.equal(socket.url, 'wss://hearth.example:8443/base/v1/realtime');
  socket.open();
  await waitFor(() => socket.messages.length > 0);
  assert.deepEqual(socket.messages, [{ type: 'auth', token: 'sk' }]);
  socket.receive({ type: 'ready', uid: null });
  assert.deepEqual(socket.messages[1], { type: 'subscribe', id: 's1', query: query.toJSON() });
  socket.receive({ type: 'snapshot', id: 's1', version: 5, docs: [wireDoc('posts/a', { n: 9 }, 4), wireDoc('posts/b', { n: 7 }, 5)] });
  assert.equal(snapshots.length, 1);
  assert.deepEqual(snapshots[0].docs.map((d) => d.id), ['a', 'b']);
  assert.equal(snapshots[0].version, 5);
  assert.deepEqual(snapshots[0].docChanges().map((c) => c.type), ['added', 'added']);
  unsubscribe();
  hearth.close();
});

test('changes keep the ordered view and report docChanges', async () => {
  const { hearth } = client();
  const snapshots = [];
  hearth.collection('posts').orderBy('n', 'desc').limit(2).onSnapshot((s) => snapshots.push(s));
  const socket = await openAndReady();
  socket.receive({ type: 'snapshot', id: 's1', version: 5, docs: [wireDoc('posts/a', { n: 9 }, 4), wireDoc('posts/b', { n: 7 }, 5)] });
  socket.receive({
    type: 'changes',
    id: 's1',
    version: 6,
    changes: [
      { kind: 'removed', doc: wireDoc('posts/b', { n: 7 }, 5), oldIndex: 1, newIndex: -1 },
      { kind: 'added', doc: wireDoc('posts/c', { n: 8 }, 6), oldIndex: -1, newIndex: 1 },
    ],
  });
  socket.receive({ type: 'changes', id: 's1', version: 7, changes: [{ kind: 'modified', doc: wireDoc('posts/a', { n: 1 }, 7), oldIndex: 0, newIndex: 1 }] });
  assert.equal(snapshots.length, 3);
  assert.deepEqual(snapshots[1].docs.map((d) => d.id), ['a', 'c']);
  assert.deepEqual(
    snapshots[1].docChanges().map((c) => [c.type, c.doc.id, c.oldIndex, c.newIndex]),
    [
      ['removed', 'b', 1, -1],
      ['added', 'c', -1, 1],
    ],
  );
  assert.deepEqual(snapshots[2].docs.map((d) => [d.id, d.data().n]), [
    ['c', 8],
    ['a', 1],
  ]);
  // Unchanged documents keep their snapshot object across deliveries.
  assert.equal(snapshots[2].docs[0], snapshots[1].docs[1]);
  hearth.close();
});

test('a document listener sees exists flip with added and removed', async () => {
  const { hearth } = client();
  const seen = [];
  hearth.doc('users/u1').onSnapshot((s) => seen.push(s.exists ? s.data().name : null));
  const socket = await openAndReady();
  assert.deepEqual(socket.messages.at(-1), { type: 'subscribe', id: 's1', doc: 'users/u1' });
  socket.receive({ type: 'snapshot', id: 's1', version: 3, docs: [] });
  socket.receive({ type: 'changes', id: 's1', version: 4, changes: [{ kind: 'added', doc: wireDoc('users/u1', { name: 'Ada' }, 4), newIndex: 0 }] });
  socket.receive({ type: 'changes', id: 's1', version: 5, changes: [{ kind: 'modified', doc: wireDoc('users/u1', { name: 'Ada L' }, 5), oldIndex: 0, newIndex: 0 }] });
  socket.receive({ type: 'changes', id: 's1', version: 6, changes: [{ kind: 'removed', doc: { path: 'users/u1' }, oldIndex: 0 }] });
  assert.deepEqual(seen, [null, 'Ada', 'Ada L', null]);
  hearth.close();
});

test('every listener shares one socket; unsubscribing sends unsubscribe and the idle socket closes', async () => {
  const { hearth } = client();
  const stopA = hearth.doc('a/1').onSnapshot(() => {});
  const stopB = hearth.collection('b').onSnapshot(() => {});
  const socket = await openAndReady();
  const stopC = hearth.doc('c/1').onSnapshot(() => {});
  assert.equal(FakeSocket.instances.length, 1);
  assert.deepEqual(socket.messages.filter((m) => m.type === 'subscribe').map((m) => m.id), ['s1', 's2', 's3']);
  stopA();
  stopA();
  stopB();
  assert.deepEqual(socket.messages.filter((m) => m.type === 'unsubscribe'), [
    { type: 'unsubscribe', id: 's1' },
    { type: 'unsubscribe', id: 's2' },
  ]);
  await tick(15);
  assert.equal(socket.closedByClient, null, 'still one listener');
  stopC();
  await waitFor(() => socket.closedByClient);
  assert.equal(socket.closedByClient.code, 1000);
  hearth.close();
});

test('after a drop the client reconnects, re-authenticates and resumes from the last version', async () => {
  const { hearth } = client();
  const snapshots = [];
  hearth.collection('posts').orderBy('n').onSnapshot((s) => snapshots.push(s));
  const docSeen = [];
  hearth.doc('posts/a').onSnapshot((s) => docSeen.push(s.version));
  const first = await openAndReady();
  first.receive({ type: 'snapshot', id: 's1', version: 10, docs: [wireDoc('posts/a', { n: 1 }, 9), wireDoc('posts/b', { n: 2 }, 10)] });
  first.receive({ type: 'snapshot', id: 's2', version: 10, docs: [wireDoc('posts/a', { n: 1 }, 9)] });
  first.receive({ type: 'changes', id: 's1', version: 12, changes: [{ kind: 'modified', doc: wireDoc('posts/b', { n: 3 }, 12), oldIndex: 1, newIndex: 1 }] });
  first.serverClose(4008, 'slow consumer');

  const second = await waitFor(() => FakeSocket.instances[1]);
  second.open();
  await waitFor(() => second.messages.length > 0);
  assert.deepEqual(second.messages[0], { type: 'auth', token: 'sk' });
  second.receive({ type: 'ready', uid: null });
  const subscribes = second.messages.filter((m) => m.type === 'subscribe');
  assert.deepEqual(
    subscribes.map((m) => [m.id, m.resumeFrom]),
    [
      ['s1', 12],
      ['s2', 10],
    ],
  );
  // The server's change log covered 12: only what was missed arrives, applied to the kept view.
  second.receive({ type: 'changes', id: 's1', version: 13, changes: [{ kind: 'added', doc: wireDoc('posts/c', { n: 0 }, 13), newIndex: 0 }] });
  assert.deepEqual(snapshots.at(-1).docs.map((d) => d.id), ['c', 'a', 'b']);
  assert.deepEqual(snapshots.at(-1).docChanges().map((c) => c.type), ['added']);
  // Nothing new for s2: an empty resume delivers nothing.
  second.receive({ type: 'changes', id: 's2', version: 13, changes: [] });
  assert.deepEqual(docSeen, [9]);
  hearth.close();
});

test('a resume answered with a fresh snapshot reports the difference', async () => {
  const { hearth } = client();
  const snapshots = [];
  hearth.collection('posts').onSnapshot((s) => snapshots.push(s));
  const first = await openAndReady();
  first.receive({ type: 'snapshot', id: 's1', version: 10, docs: [wireDoc('posts/a', {}, 9), wireDoc('posts/b', {}, 10)] });
  first.serverClose(1006);
  await waitFor(() => FakeSocket.instances[1]);
  const second = await openAndReady();
  second.receive({ type: 'snapshot', id: 's1', version: 99, docs: [wireDoc('posts/b', {}, 10), wireDoc('posts/d', {}, 99)] });
  assert.equal(snapshots.length, 2);
  assert.deepEqual(snapshots[1].docs.map((d) => d.id), ['b', 'd']);
  assert.deepEqual(snapshots[1].docChanges().map((c) => `${c.type}:${c.doc.id}`), ['removed:a', 'added:d']);
  hearth.close();
});

test('reconnect attempts back off while the server stays unreachable', async () => {
  const { hearth } = client();
  hearth.doc('a/1').onSnapshot(() => {});
  for (let i = 1; i <= 4; i++) {
    const socket = await waitFor(() => FakeSocket.instances[i - 1]);
    socket.serverClose(1006);
    assert.equal(hearth.realtime.reconnectAttempts, i);
  }
  await waitFor(() => FakeSocket.instances[4]);
  hearth.close();
});

test('an error for one subscription ends only that listener, with a HearthError', async () => {
  const { hearth } = client();
  const errors = [];
  const aSeen = [];
  const bSeen = [];
  hearth.collection('secret').onSnapshot(
    (s) => aSeen.push(s.size),
    (error) => errors.push(error),
  );
  hearth.collection('public').onSnapshot((s) => bSeen.push(s.size));
  const socket = await openAndReady();
  socket.receive({ type: 'error', id: 's1', code: 'permission_denied', message: 'rules deny list' });
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof HearthError);
  assert.equal(errors[0].code, 'permission_denied');
  assert.equal(errors[0].message, 'rules deny list');
  socket.receive({ type: 'snapshot', id: 's1', version: 1, docs: [] });
  socket.receive({ type: 'snapshot', id: 's2', version: 1, docs: [] });
  assert.deepEqual(aSeen, []);
  assert.deepEqual(bSeen, [0]);
  // The ended subscription is not resubscribed after a reconnect.
  socket.serverClose(1006);
  await waitFor(() => FakeSocket.instances[1]);
  const second = await openAndReady();
  assert.deepEqual(second.messages.filter((m) => m.type === 'subscribe').map((m) => m.id), ['s2']);
  hearth.close();
});

test('a connection-wide error without a session ends every listener', async () => {
  const { hearth } = client();
  const errors = [];
  hearth.doc('a/1').onSnapshot(() => {}, (e) => errors.push(e.code));
  hearth.doc('a/2').onSnapshot(() => {}, (e) => errors.push(e.code));
  const socket = await openAndReady();
  socket.receive({ type: 'error', code: 'unauthenticated', message: 'bad token' });
  assert.deepEqual(errors, ['unauthenticated', 'unauthenticated']);
  assert.ok(socket.closedByClient);
  hearth.close();
});

test('without credentials the socket authenticates as nobody, then subscribes', async () => {
  const { hearth } = client({ serviceKey: null });
  hearth.doc('a/1').onSnapshot(() => {});
  const socket = await openAndReady(null);
  await waitFor(() => socket.messages.length > 1);
  assert.deepEqual(socket.messages, [
    { type: 'auth', token: null },
    { type: 'subscribe', id: 's1', doc: 'a/1' },
  ]);
  hearth.close();
});

test('a refreshed access token is sent on the open socket', async () => {
  let generation = 0;
  const { hearth } = client({
    serviceKey: null,
    handler: (request) => {
      if (request.path.includes('/v1/auth/')) {
        generation++;
        return { body: { user: { uid: 'u1' }, accessToken: `at-${generation}`, refreshToken: `rt-${generation}`, expiresIn: 900 } };
      }
      return { body: {} };
    },
  });
  await hearth.auth.signIn({ email: 'a@b.c', password: 'x' });
  hearth.doc('a/1').onSnapshot(() => {});
  const socket = await openAndReady('u1');
  assert.deepEqual(socket.messages[0], { type: 'auth', token: 'at-1' });
  await hearth.auth.refresh();
  assert.deepEqual(socket.messages.at(-1), { type: 'auth', token: 'at-2' });
  assert.equal(FakeSocket.instances.length, 1);
  // Signing out restarts the connection under the remaining identity (here: none).
  await hearth.auth.signOut();
  await waitFor(() => FakeSocket.instances[1]);
  assert.ok(socket.closedByClient);
  hearth.close();
});

test('an expired-token error with a session refreshes and resumes instead of ending listeners', async () => {
  let generation = 0;
  const { hearth } = client({
    serviceKey: null,
    handler: (request) => {
      if (request.path.includes('/v1/auth/')) {
        generation++;
        return { body: { user: { uid: 'u1' }, accessToken: `at-${generation}`, refreshToken: `rt-${generation}`, expiresIn: 900 } };
      }
      return { body: {} };
    },
  });
  await hearth.auth.signIn({ email: 'a@b.c', password: 'x' });
  const errors = [];
  hearth.doc('a/1').onSnapshot(() => {}, (e) => errors.push(e));
  const first = await openAndReady('u1');
  first.receive({ type: 'snapshot', id: 's1', version: 4, docs: [] });
  first.receive({ type: 'error', code: 'unauthenticated', message: 'token expired' });
  const second = await waitFor(() => FakeSocket.instances[1]);
  second.open();
  await waitFor(() => second.messages.length > 0);
  assert.deepEqual(second.messages[0], { type: 'auth', token: 'at-2' });
  second.receive({ type: 'ready', uid: 'u1' });
  assert.deepEqual(second.messages[1], { type: 'subscribe', id: 's1', doc: 'a/1', resumeFrom: 4 });
  assert.deepEqual(errors, []);
  hearth.close();
});

test('a silent connection is recycled by the heartbeat', async () => {
  const { hearth } = client({ realtime: { heartbeatMs: 10 } });
  hearth.doc('a/1').onSnapshot(() => {});
  const socket = await openAndReady();
  await waitFor(() => socket.messages.some((m) => m.type === 'ping'));
  await waitFor(() => socket.closedByClient, 1000);
  assert.equal(socket.closedByClient.code, 4000);
  await waitFor(() => FakeSocket.instances[1]);
  hearth.close();
});

test('pongs keep a quiet connection alive', async () => {
  const { hearth } = client({ realtime: { heartbeatMs: 10 } });
  hearth.doc('a/1').onSnapshot(() => {});
  const socket = await openAndReady();
  const started = Date.now();
  while (Date.now() - started < 80) {
    if (socket.messages.at(-1)?.type === 'ping') socket.receive({ type: 'pong' });
    await tick(3);
  }
  assert.equal(socket.closedByClient, null);
  hearth.close();
});

test('a subscription ended as unauthenticated while signed in is refreshed and resumed once', async () => {
  let generation = 0;
  const { hearth } = client({
    serviceKey: null,
    handler: (request) => {
      if (request.path.includes('/v1/auth/')) {
        generation++;
        return { body: { user: { uid: 'u1' }, accessToken: `at-${generation}`, refreshToken: `rt-${generation}`, expiresIn: 900 } };
      }
      return { body: {} };
    },
  });
  await hearth.auth.signIn({ email: 'a@b.c', password: 'x' });
  const errors = [];
  hearth.collection('notes').onSnapshot(() => {}, (e) => errors.push(e.code));
  const socket = await openAndReady('u1');
  socket.receive({ type: 'snapshot', id: 's1', version: 8, docs: [] });
  socket.receive({ type: 'error', id: 's1', code: 'unauthenticated', message: 'token expired' });
  await waitFor(() => socket.messages.filter((m) => m.type === 'subscribe').length === 2);
  const tail = socket.messages.slice(-2);
  assert.deepEqual(tail, [
    { type: 'auth', token: 'at-2' },
    { type: 'subscribe', id: 's1', query: { from: 'notes' }, resumeFrom: 8 },
  ]);
  // A second refusal without any data in between is final.
  socket.receive({ type: 'error', id: 's1', code: 'unauthenticated', message: 'still expired' });
  assert.deepEqual(errors, ['unauthenticated']);
  hearth.close();
});

test('signing in as another user reconnects instead of swapping the token in place', async () => {
  let generation = 0;
  const { hearth } = client({
    serviceKey: null,
    handler: (request) => {
      if (request.path.includes('/v1/auth/')) {
        generation++;
        const uid = request.body?.email === 'b@b.c' ? 'u2' : 'u1';
        return { body: { user: { uid }, accessToken: `at-${generation}`, refreshToken: `rt-${generation}`, expiresIn: 900 } };
      }
      return { body: {} };
    },
  });
  await hearth.auth.signIn({ email: 'a@b.c', password: 'x' });
  hearth.doc('a/1').onSnapshot(() => {});
  const first = await openAndReady('u1');
  first.receive({ type: 'snapshot', id: 's1', version: 3, docs: [] });
  await hearth.auth.signIn({ email: 'b@b.c', password: 'x' });
  assert.ok(first.closedByClient, 'the old identity\'s socket is closed');
  assert.equal(first.messages.filter((m) => m.type === 'auth').length, 1);
  const second = await waitFor(() => FakeSocket.instances[1]);
  second.open();
  await waitFor(() => second.messages.length > 0);
  assert.deepEqual(second.messages[0], { type: 'auth', token: 'at-2' });
  second.receive({ type: 'ready', uid: 'u2' });
  assert.deepEqual(second.messages[1], { type: 'subscribe', id: 's1', doc: 'a/1', resumeFrom: 3 });
  hearth.close();
});
