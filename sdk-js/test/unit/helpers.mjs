// Test doubles for unit tests only: a scripted fetch and a fake WebSocket. Integration tests
// (test/integration) talk to the real server and must not use these.

/**
 * A fetch that records every request and answers with `handler(request, callNumber)`, which
 * returns `{status?, body?, headers?}` (body: object → JSON, string → as is, undefined → empty).
 */
export function fakeFetch(handler) {
  const calls = [];
  async function fetch(url, init = {}) {
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const parsed = new URL(url);
    const request = {
      url,
      method: init.method ?? 'GET',
      path: parsed.pathname,
      search: parsed.search,
      headers,
      rawBody: init.body,
      // Text bodies (a rules source) stay as they are; JSON bodies are parsed.
      body: init.body && !headers['content-type']?.startsWith('text/') ? JSON.parse(init.body) : undefined,
    };
    calls.push(request);
    const answer = (await handler(request, calls.length)) ?? {};
    if (answer instanceof Error) throw answer;
    const status = answer.status ?? 200;
    const text = answer.body === undefined ? null : typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    return new Response(status === 204 ? null : text, { status, headers: answer.headers ?? { 'content-type': 'application/json' } });
  }
  return { fetch, calls };
}

/** A document body as the server sends it. */
export function wireDoc(path, data, version = 1) {
  return {
    path,
    id: path.split('/').pop(),
    data,
    createTime: '2026-11-25T10:00:00.000001Z',
    updateTime: '2026-11-25T10:00:00.000002Z',
    version,
  };
}

/** A fake WebSocket: tests drive the server side through `open()`, `receive()` and `serverClose()`. */
export class FakeSocket {
  static instances = [];
  static reset() {
    FakeSocket.instances = [];
  }
  static get last() {
    return FakeSocket.instances[FakeSocket.instances.length - 1];
  }

  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    this.closedByClient = null;
    this.onopen = this.onmessage = this.onclose = this.onerror = null;
    FakeSocket.instances.push(this);
  }

  /** Messages the client sent, parsed. */
  get messages() {
    return this.sent.map((text) => JSON.parse(text));
  }

  send(text) {
    if (this.readyState !== 1) throw new Error('not open');
    this.sent.push(text);
  }

  close(code = 1000, reason = '') {
    this.closedByClient = { code, reason };
    this.readyState = 3;
  }

  open() {
    this.readyState = 1;
    this.onopen?.({});
  }

  receive(message) {
    this.onmessage?.({ data: JSON.stringify(message) });
  }

  serverClose(code = 1006, reason = '') {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

/** Resolves after pending microtasks and timers of `ms` have run. */
export function tick(ms = 0) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `predicate` until it is truthy (or fails after `timeoutMs`). */
export async function waitFor(predicate, timeoutMs = 2000) {
  const start = Date.now();
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error('waitFor: timed out');
    await tick(2);
  }
}
