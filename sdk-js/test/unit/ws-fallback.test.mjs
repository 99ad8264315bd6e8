// Node 20 has no global WebSocket: the SDK must load the optional `ws` package by itself. A tiny
// protocol-speaking ws server on 127.0.0.1 stands in for Hearth here (unit test; the real server
// is exercised in test/integration).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocketServer } from 'ws';
import { createClient } from '../../dist/index.js';
import { wireDoc } from './helpers.mjs';

test('without a global WebSocket the SDK falls back to the ws package', { skip: globalThis.WebSocket ? 'this Node has a global WebSocket' : false }, async () => {
  const server = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => server.once('listening', resolve));
  const received = [];
  server.on('connection', (socket, request) => {
    received.push(request.url);
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString());
      received.push(message);
      if (message.type === 'auth') socket.send(JSON.stringify({ type: 'ready', uid: null }));
      if (message.type === 'subscribe') socket.send(JSON.stringify({ type: 'snapshot', id: message.id, version: 3, docs: [wireDoc('a/1', { n: 1 }, 3)] }));
    });
  });
  const { port } = server.address();
  const hearth = createClient(`http://127.0.0.1:${port}`, { serviceKey: 'sk' });
  const snapshot = await new Promise((resolve, reject) => hearth.doc('a/1').onSnapshot(resolve, reject));
  assert.equal(snapshot.exists, true);
  assert.equal(snapshot.data().n, 1);
  assert.deepEqual(received, ['/v1/realtime', { type: 'auth', token: 'sk' }, { type: 'subscribe', id: 's1', doc: 'a/1' }]);
  hearth.close();
  await new Promise((resolve) => server.close(resolve));
});
