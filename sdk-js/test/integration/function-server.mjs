// A hook function server as a Hearth user would write one in Node (DESIGN §6): plain node:http,
// every call verified with the npm `standardwebhooks` package (the Standard Webhooks reference
// library) and parsed with the npm `cloudevents` package (the CloudEvents SDK). Nothing here is
// Hearth code, so the tests that use it check the server against the outside world's libraries.

import { createServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { HTTP } from 'cloudevents';
import { Webhook } from 'standardwebhooks';

/** A fresh Standard Webhooks secret: `whsec_` + base64 of 32 random bytes. */
export function newSecret() {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/**
 * Verifies and parses one call: resolves `{event, payload}` or throws (a failed verification
 * throws the library's `WebhookVerificationError`). Exposed so a test can feed it tampered input.
 */
export function verifyAndParse(secret, headers, body) {
  // verify() checks webhook-id/-timestamp/-signature against the exact bytes received and
  // returns the parsed JSON; it throws on a bad signature or a stale timestamp.
  const payload = new Webhook(secret).verify(body, headers);
  // HTTP.toEvent reads structured mode from Content-Type: application/cloudevents+json; it parses
  // leniently, so validate() then checks the event against the CloudEvents 1.0 schema.
  const event = HTTP.toEvent({ headers, body });
  event.validate();
  return { event, payload };
}

/**
 * Starts the function on a free port. `handle(event, request)` answers a verified call with
 * `{status?, body}`. Every call is recorded in `calls` as `{path, headers, body, verified,
 * event?, error?}`; unverified calls get 401 and never reach `handle`.
 */
export async function startFunctionServer({ secret, handle }) {
  const calls = [];
  const waiters = new Set();
  const server = createServer((request, response) => {
    const chunks = [];
    request.on('data', (chunk) => chunks.push(chunk));
    request.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const call = { path: request.url, headers: request.headers, body, verified: false };
      calls.push(call);
      let answer;
      try {
        const { event } = verifyAndParse(secret, request.headers, body);
        call.verified = true;
        call.event = event;
        answer = (await handle(event, call)) ?? { status: 200, body: { allow: true } };
      } catch (error) {
        call.error = error;
        answer = call.verified
          ? { status: 500, body: { error: String(error) } }
          : { status: 401, body: { error: `unverified: ${error.message}` } };
      }
      response.writeHead(answer.status ?? 200, { 'content-type': 'application/json' });
      response.end(JSON.stringify(answer.body ?? {}));
      for (const waiter of [...waiters]) waiter();
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: (path = '/') => `http://127.0.0.1:${port}${path}`,
    calls,
    /** Resolves with the first call matching `predicate`, waiting for it up to `timeoutMs`. */
    waitForCall(predicate, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const found = calls.find(predicate);
          if (found) {
            waiters.delete(check);
            clearTimeout(timer);
            resolve(found);
          }
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`no matching call within ${timeoutMs} ms; calls: ${JSON.stringify(calls.map((c) => [c.path, c.verified]))}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    stop: () =>
      new Promise((resolve) => {
        server.close(resolve);
        // The server keeps connections alive between calls; close() alone would wait for them.
        server.closeAllConnections();
      }),
  };
}
