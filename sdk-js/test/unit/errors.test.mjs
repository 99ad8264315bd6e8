import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createClient, HearthError } from '../../dist/index.js';
import { codeForStatus, errorFromResponse } from '../../dist/errors.js';
import { fakeFetch } from './helpers.mjs';

test('a server error body becomes a HearthError with code, status, message and details', async () => {
  const { fetch } = fakeFetch(() => ({
    status: 403,
    body: { error: { code: 'permission_denied', message: 'rules said no', details: { rule: 'line 3' } } },
  }));
  const hearth = createClient('http://127.0.0.1:8080', { fetch });
  const error = await hearth.doc('a/b').get().then(
    () => assert.fail('should reject'),
    (e) => e,
  );
  assert.ok(error instanceof HearthError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, 'HearthError');
  assert.equal(error.code, 'permission_denied');
  assert.equal(error.status, 403);
  assert.equal(error.message, 'rules said no');
  assert.deepEqual(error.details, { rule: 'line 3' });
});

test('every code of the server table maps through unchanged', () => {
  const table = {
    invalid_argument: 400,
    unauthenticated: 401,
    permission_denied: 403,
    not_found: 404,
    already_exists: 409,
    aborted: 409,
    failed_precondition: 412,
    payload_too_large: 413,
    hook_rejected: 422,
    rate_limited: 429,
    internal: 500,
    unavailable: 503,
    invalid_credentials: 401,
    token_reused: 401,
  };
  for (const [code, status] of Object.entries(table)) {
    const error = errorFromResponse(status, JSON.stringify({ error: { code, message: 'm' } }));
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    assert.equal(new HearthError(code, 'm').status, status, `default status of ${code}`);
  }
});

test('unknown codes from a newer server are kept as they are', () => {
  const error = errorFromResponse(418, JSON.stringify({ error: { code: 'teapot_overflow', message: 'short and stout' } }));
  assert.equal(error.code, 'teapot_overflow');
  assert.equal(error.status, 418);
});

test('a response without an error body is classified by status', () => {
  assert.equal(errorFromResponse(502, '<html>bad gateway</html>').code, 'unavailable');
  assert.equal(errorFromResponse(500, '').code, 'internal');
  assert.equal(errorFromResponse(404, 'nope').code, 'not_found');
  assert.equal(errorFromResponse(429, '').code, 'rate_limited');
  assert.equal(codeForStatus(413), 'payload_too_large');
  assert.equal(codeForStatus(418), 'invalid_argument');
});

test('a network failure is an unavailable HearthError with the cause attached', async () => {
  const cause = new TypeError('fetch failed');
  const hearth = createClient('http://127.0.0.1:8080', { fetch: async () => Promise.reject(cause) });
  await assert.rejects(hearth.collection('posts').get(), (error) => {
    assert.ok(error instanceof HearthError);
    assert.equal(error.code, 'unavailable');
    assert.equal(error.status, 0);
    assert.equal(error.cause, cause);
    return true;
  });
});

test('a successful response that is not JSON is an internal error', async () => {
  const hearth = createClient('http://127.0.0.1:8080', { fetch: async () => new Response('<html>', { status: 200 }) });
  await assert.rejects(hearth.collection('posts').get(), { code: 'internal' });
});

test('a bad base URL is an invalid_argument HearthError', () => {
  assert.throws(() => createClient('not a url'), (error) => error instanceof HearthError && error.code === 'invalid_argument');
  assert.throws(() => createClient('ftp://host'), { code: 'invalid_argument' });
});

test('a request that outlives requestTimeoutMs fails as unavailable', async () => {
  const hangingFetch = (url, init) =>
    new Promise((_, reject) => init.signal.addEventListener('abort', () => reject(init.signal.reason)));
  const hearth = createClient('http://127.0.0.1:8080', { fetch: hangingFetch, requestTimeoutMs: 20 });
  // AbortSignal.timeout does not keep Node alive (a real fetch's socket would): hold the loop open.
  const keepAlive = setTimeout(() => {}, 5_000);
  await assert.rejects(hearth.doc('a/b').get(), { code: 'unavailable', status: 0 });
  clearTimeout(keepAlive);
});
