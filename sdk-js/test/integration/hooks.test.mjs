// Hooks (DESIGN §6) end to end: the real `hearth` binary calls a Node function server that
// verifies every call with the npm `standardwebhooks` package and parses it with the npm
// `cloudevents` package (issue 6). A `before` hook allows, replaces or rejects writes made through
// the SDK; an `after` hook's delivery arrives verified and shows in the admin delivery log, and a
// failed one is redelivered with the same event id.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { WebhookVerificationError } from 'standardwebhooks';
import { createClient, HearthError } from '../../dist/index.js';
import { newSecret, startFunctionServer, verifyAndParse } from './function-server.mjs';
import { startServer, uniqueCollection } from './server.mjs';

const collection = uniqueCollection('notes');
const RULES = `rules_version = '2';
service cloud.firestore {
  match /databases/{database}/documents {
    match /${collection}/{id} {
      allow read: if request.auth != null && resource.data.owner == request.auth.uid;
      allow create, update: if request.auth != null && request.resource.data.owner == request.auth.uid;
    }
  }
}
`;

const secret = newSecret();
let server;
let fn;
let admin;
let adminClient;
let hearth;
let uid;

/** While true, `/audit` answers 500 for documents titled 'flaky' (a receiver outage). */
let flakyAuditDown = true;

/** The validation hook under test (after `fn` started), with `changes` over it. */
const validateHook = (changes = {}) => ({
  events: ['document.create', 'document.update'],
  match: `${collection}/{id}`,
  mode: 'before',
  url: fn.url('/validate'),
  secret,
  timeoutMs: 3000,
  onFailure: 'reject',
  ...changes,
});

/** The function: `/validate` judges titles, `/audit` accepts triggers (see flakyAuditDown). */
function handle(event, call) {
  if (call.path === '/audit') {
    if (flakyAuditDown && event.data.after?.data?.title === 'flaky') return { status: 500, body: { error: 'down' } };
    return { status: 200, body: { received: event.id } };
  }
  const data = event.data.after?.data ?? {};
  const title = data.title ?? '';
  if (/\bspam\b/i.test(title)) return { body: { allow: false, message: 'no spam, please' } };
  const tidy = title.trim().replace(/\s+/g, ' ');
  if (tidy !== title) return { body: { allow: true, data: { ...data, title: tidy, tidied: true } } };
  return { body: { allow: true } };
}

before(async () => {
  server = await startServer({
    extraEnv: {
      HEARTH_AUTH__RATE_LIMITS: 'false',
      // A failing trigger gives up (is marked failed, for redelivery) after about a second
      // instead of 24 hours, and the breaker stays out of the way of the outage test.
      HEARTH_HOOKS__RETRY_BASE_MS: '100',
      HEARTH_HOOKS__RETRY_WINDOW_SECS: '1',
      HEARTH_HOOKS__BREAKER_FAILURES: '1000',
    },
  });
  fn = await startFunctionServer({ secret, handle });
  // The rules (like Firestore's) refuse a read of a missing document, so existence checks use
  // the service key.
  adminClient = createClient(server.url, { serviceKey: server.serviceKey });
  admin = adminClient.admin;
  await admin.rules.set(RULES);
  const validate = await admin.hooks.put('validate-note', validateHook());
  assert.equal(validate.mode, 'before');
  const audit = await admin.hooks.put('audit-note', {
    events: ['document.create'],
    match: `${collection}/{id}`,
    mode: 'after',
    url: fn.url('/audit'),
    secret,
    timeoutMs: 3000,
  });
  assert.equal(audit.mode, 'after');
  hearth = createClient(server.url);
  ({
    user: { uid },
  } = await hearth.auth.signUp({ email: `hooks-${Date.now()}@example.com`, password: 'correct horse battery' }));
});

after(async () => {
  hearth?.close();
  adminClient?.close();
  await server?.stop();
  await fn?.stop();
});

test('a before hook allows a write; the function got a verified CloudEvent describing it', async () => {
  const ref = hearth.doc(`${collection}/allowed`);
  await ref.set({ title: 'hello', owner: uid });
  assert.deepEqual((await ref.get()).data(), { title: 'hello', owner: uid });

  const call = fn.calls.find((c) => c.path === '/validate' && c.event?.subject === ref.path);
  assert.ok(call, 'the function was called');
  assert.equal(call.verified, true);
  const { event } = call;
  assert.equal(event.specversion, '1.0');
  assert.equal(event.type, 'dev.hearth.document.beforeCreate');
  assert.equal(event.source, `/hearth/docs/${ref.path}`);
  assert.equal(event.id, call.headers['webhook-id'], 'webhook-id is the event id');
  assert.equal(call.headers['content-type'], 'application/cloudevents+json');
  assert.equal(event.data.before, null);
  assert.deepEqual(event.data.after.data, { title: 'hello', owner: uid });
  assert.equal(event.data.auth.uid, uid, 'the caller is part of the event');

  await ref.update({ title: 'hello again' });
  const update = await fn.waitForCall((c) => c.event?.type === 'dev.hearth.document.beforeUpdate' && c.event.subject === ref.path);
  assert.equal(update.event.data.before.data.title, 'hello');
  assert.equal(update.event.data.after.data.title, 'hello again');
});

test("a before hook's data replaces the document", async () => {
  const ref = hearth.doc(`${collection}/tidied`);
  await ref.set({ title: '  Water \t the   plants ', owner: uid });
  assert.deepEqual((await ref.get()).data(), { title: 'Water the plants', owner: uid, tidied: true });
});

test('a before hook rejects a write: hook_rejected with the function message, nothing stored', async () => {
  const ref = hearth.doc(`${collection}/spam`);
  await assert.rejects(
    ref.set({ title: 'buy spam now', owner: uid }),
    (error) =>
      error instanceof HearthError &&
      error.code === 'hook_rejected' &&
      error.status === 422 &&
      error.message === 'no spam, please' &&
      error.details?.hook === 'validate-note',
  );
  assert.equal((await adminClient.doc(ref.path).get()).exists, false);
  // A batch with one rejected write commits nothing.
  const batch = hearth.batch();
  batch.set(hearth.doc(`${collection}/fine`), { title: 'fine', owner: uid });
  batch.set(hearth.doc(`${collection}/spam2`), { title: 'spam', owner: uid });
  await assert.rejects(batch.commit(), { code: 'hook_rejected', message: 'no spam, please' });
  assert.equal((await adminClient.doc(`${collection}/fine`).get()).exists, false);
});

test('an after hook delivery arrives verified and parsed, and the delivery log shows it', async () => {
  const ref = hearth.doc(`${collection}/audited`);
  const written = await ref.set({ title: 'audit me', owner: uid });
  const call = await fn.waitForCall((c) => c.path === '/audit' && c.event?.subject === ref.path);
  assert.equal(call.verified, true);
  const { event } = call;
  assert.equal(event.type, 'dev.hearth.document.created');
  assert.equal(event.source, `/hearth/docs/${ref.path}`);
  assert.equal(event.subject, ref.path);
  assert.equal(event.id, call.headers['webhook-id']);
  assert.ok(!Number.isNaN(Date.parse(event.time)), 'time is a timestamp');
  assert.equal(event.data.before, null);
  assert.equal(event.data.after.path, ref.path);
  assert.deepEqual(event.data.after.data, { title: 'audit me', owner: uid });
  assert.equal(event.data.after.version, written.version, 'the committed version');

  // The delivery log shows it once the function's 200 is recorded.
  const delivered = await waitForDelivery('audit-note', 'delivered', event.id);
  assert.equal(delivered.subject, ref.path);
  assert.equal(delivered.event, 'document.create');
  assert.equal(delivered.attempts, 1);
  assert.equal(delivered.lastError, null);
});

test('a delivery that keeps failing is marked failed, and redelivery sends the same event again', async () => {
  const ref = hearth.doc(`${collection}/flaky`);
  await ref.set({ title: 'flaky', owner: uid });
  const first = await fn.waitForCall((c) => c.path === '/audit' && c.event?.subject === ref.path);
  const id = first.event.id;
  const failed = await waitForDelivery('audit-note', 'failed', id);
  assert.ok(failed.attempts >= 1);
  assert.match(failed.lastError, /500/, 'the last error names the status');

  flakyAuditDown = false;
  const again = await admin.hooks.redeliver('audit-note', id);
  assert.equal(again.id, id);
  assert.equal(again.status, 'pending');
  await waitForDelivery('audit-note', 'delivered', id);
  const calls = fn.calls.filter((c) => c.path === '/audit' && c.event?.id === id);
  assert.ok(calls.length >= 2, 'called again');
  assert.ok(calls.every((c) => c.verified), 'every attempt was signed');
  assert.deepEqual(calls.at(-1).event.data, first.event.data, 'the same event again');

  await assert.rejects(admin.hooks.redeliver('audit-note', 'evt_ffffffffffffffff_0000'), { code: 'not_found' });
  await assert.rejects(admin.hooks.deliveries('no-such-hook'), { code: 'not_found' });
});

/** Polls the admin delivery log until the delivery `id` has `status`. */
async function waitForDelivery(hook, status, id, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const found = (await admin.hooks.deliveries(hook, { status, limit: 1000 })).find((d) => d.id === id);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`delivery ${id} of ${hook} is not ${status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('a tampered body, signature or secret fails standardwebhooks verification, and the function answers 401', async () => {
  const call = fn.calls.find((c) => c.verified);
  assert.ok(call, 'a verified call to replay');
  const headers = { ...call.headers };
  // The genuine call still verifies (within the library's 5-minute tolerance).
  assert.equal(verifyAndParse(secret, headers, call.body).event.id, call.event.id);

  const tamperedBody = call.body.replace('"specversion":"1.0"', '"specversion":"1.0" ');
  assert.notEqual(tamperedBody, call.body);
  assert.throws(() => verifyAndParse(secret, headers, tamperedBody), WebhookVerificationError);
  const signature = headers['webhook-signature'];
  const flipped = signature.slice(0, -3) + (signature.at(-3) === 'A' ? 'B' : 'A') + signature.slice(-2);
  assert.throws(() => verifyAndParse(secret, { ...headers, 'webhook-signature': flipped }, call.body), WebhookVerificationError);
  assert.throws(() => verifyAndParse(newSecret(), headers, call.body), WebhookVerificationError);
  assert.throws(() => verifyAndParse(secret, { ...headers, 'webhook-id': 'evt_other' }, call.body), WebhookVerificationError);

  // Over HTTP: the function refuses a forged call before looking at it.
  const response = await fetch(fn.url('/validate'), {
    method: 'POST',
    headers: {
      'content-type': headers['content-type'],
      'webhook-id': headers['webhook-id'],
      'webhook-timestamp': headers['webhook-timestamp'],
      'webhook-signature': flipped,
    },
    body: call.body,
  });
  assert.equal(response.status, 401);
  await response.arrayBuffer();
});

test('a function that answers 401 (a hook registered with the wrong secret) fails the write with unavailable', async () => {
  await admin.hooks.put('validate-note', validateHook({ secret: newSecret() }));
  const unverified = () => fn.calls.filter((c) => !c.verified && c.path === '/validate').length;
  const before = unverified();
  try {
    await assert.rejects(hearth.doc(`${collection}/wrong-secret`).set({ title: 'hi', owner: uid }), { code: 'unavailable', status: 503 });
    assert.equal(unverified(), before + 1, 'the function refused one unverifiable call');
    assert.equal((await adminClient.doc(`${collection}/wrong-secret`).get()).exists, false);
  } finally {
    await admin.hooks.put('validate-note', validateHook());
  }
});
