// The validation function on its own (no Hearth server, no browser): its verdicts, and that it
// refuses calls whose Standard Webhooks signature does not verify. Calls are signed with the npm
// `standardwebhooks` package, as the Hearth server signs them; e2e.test.mjs runs the function
// behind the real server and the real app.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { createValidateTodoServer, judge } from '../functions/validate-todo.mjs';

const secret = `whsec_${randomBytes(32).toString('base64')}`;
let server;
let url;

before(async () => {
  server = createValidateTodoServer({ secret });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${server.address().port}/validate-todo`;
});

after(() => {
  server.closeAllConnections();
  server.close();
});

/** A CloudEvent body as Hearth sends it for a `before` hook on `path`. */
function eventBody(type, path, data) {
  return JSON.stringify({
    specversion: '1.0',
    id: `evt_${randomBytes(8).toString('hex')}`,
    source: `/hearth/docs/${path}`,
    type,
    subject: path,
    time: new Date().toISOString(),
    datacontenttype: 'application/json',
    data: { before: null, after: { path, data }, auth: { uid: 'u1', token: {} } },
  });
}

/** POSTs `body` signed with `signingSecret` (or with `headers` overriding the signed ones). */
async function call(body, { signingSecret = secret, headers = {} } = {}) {
  const id = JSON.parse(body).id;
  const now = new Date();
  const signature = new Webhook(signingSecret).sign(id, now, body);
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/cloudevents+json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signature,
      ...headers,
    },
    body,
  });
  return { status: response.status, body: await response.json() };
}

const create = (text, extra = {}) => ({
  type: 'dev.hearth.document.beforeCreate',
  data: { after: { data: { owner: 'u1', text, done: false, ...extra } } },
});

test('judge: tidy text passes, messy whitespace is tidied, blank, long and banned text is refused', () => {
  assert.deepEqual(judge(create('Water the plants')), { allow: true });
  const at = { $timestamp: '2026-11-25T10:00:00.000000Z' };
  assert.deepEqual(judge(create('  Water \t the\n plants  ', { at })), {
    allow: true,
    data: { owner: 'u1', text: 'Water the plants', done: false, at },
  });
  assert.deepEqual(judge(create('   ')), { allow: false, message: 'A todo needs some text.' });
  assert.deepEqual(judge(create('x'.repeat(201))), { allow: false, message: 'A todo is at most 200 characters (this one has 201).' });
  assert.equal(judge(create('x    '.repeat(50))).allow, true, 'length counts after tidying (250 typed, 99 kept)');
  assert.deepEqual(judge(create('Buy SPAM today')), { allow: false, message: 'Todos may not mention "spam".' });
  assert.deepEqual(judge(create('spamalot tickets')), { allow: true }, 'whole words only');
  assert.deepEqual(judge({ type: 'dev.hearth.document.beforeUpdate', data: { after: { data: { text: 42 } } } }), {
    allow: false,
    message: 'A todo needs some text.',
  });
  assert.deepEqual(judge({ type: 'dev.hearth.document.beforeDelete', data: { after: null } }), { allow: true });
});

test('a signed call gets the verdict over HTTP', async () => {
  const ok = await call(eventBody('dev.hearth.document.beforeCreate', 'todos/t1', { owner: 'u1', text: ' a  b ', done: false }));
  assert.deepEqual(ok, { status: 200, body: { allow: true, data: { owner: 'u1', text: 'a b', done: false } } });
  const refused = await call(eventBody('dev.hearth.document.beforeUpdate', 'board/b1', { text: 'casino night' }));
  assert.deepEqual(refused, { status: 200, body: { allow: false, message: 'Todos may not mention "casino".' } });
});

test('unsigned, tampered or wrongly keyed calls are refused with 401', async () => {
  const body = eventBody('dev.hearth.document.beforeCreate', 'todos/t2', { owner: 'u1', text: 'fine', done: false });
  assert.equal((await call(body, { signingSecret: `whsec_${randomBytes(32).toString('base64')}` })).status, 401);
  assert.equal((await call(body, { headers: { 'webhook-id': 'evt_other' } })).status, 401);
  assert.equal((await call(body, { headers: { 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600) } })).status, 401);
  const unsigned = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/cloudevents+json' }, body });
  assert.equal(unsigned.status, 401);
  await unsigned.arrayBuffer();
  // A signed body that is not a CloudEvent gets past the signature but not the parser.
  const notAnEvent = JSON.stringify({ id: 'evt_x', hello: 'world' });
  assert.equal((await call(notAnEvent)).status, 400);
  // The genuine call passes.
  assert.equal((await call(body)).status, 200);
});
