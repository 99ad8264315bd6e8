// `npm run functions`: starts the validation function (functions/validate-todo.mjs) and registers
// it with a running Hearth server as a `before` hook on the app's two collections, through the
// SDK's admin API (`hearth.admin.hooks.put`, service key required).
//
// Env:
//   HEARTH_SERVICE_KEY   the server's service key (required; `cat <data-dir>/service_key`)
//   HEARTH_URL           the server (default http://127.0.0.1:8080)
//   FUNCTION_HOST/PORT   where the function listens (default 127.0.0.1:9100; PORT=0 picks a free port)
//   HOOK_SECRET          the hooks' secret (default: a fresh `whsec_` + base64 of 32 random bytes)
//
// Prints `hooks registered: ...` once the hooks are live; Ctrl-C stops the function (the hooks stay
// registered, so writes fail with `unavailable` until it runs again — `onFailure: "reject"`).

import { randomBytes } from 'node:crypto';
import { createClient } from '@hearth/client';
import { createValidateTodoServer } from './validate-todo.mjs';

const hearthUrl = process.env.HEARTH_URL ?? 'http://127.0.0.1:8080';
const serviceKey = process.env.HEARTH_SERVICE_KEY;
const host = process.env.FUNCTION_HOST ?? '127.0.0.1';
const port = Number(process.env.PORT ?? 9100);
const secret = process.env.HOOK_SECRET ?? `whsec_${randomBytes(32).toString('base64')}`;

if (!serviceKey) {
  console.error('HEARTH_SERVICE_KEY is required (the hooks are registered with the admin API)');
  process.exit(2);
}

const server = createValidateTodoServer({ secret, log: (line) => console.log(`[validate-todo] ${line}`) });
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(port, host, resolve);
});
const url = `http://${host}:${server.address().port}/validate-todo`;
console.log(`validate-todo listening on ${url}`);

// One hook per collection (a hook has one `match` pattern), both calling the same function.
const hooks = { 'validate-todos': 'todos/{todoId}', 'validate-board': 'board/{itemId}' };
const hearth = createClient(hearthUrl, { serviceKey });
try {
  for (const [name, match] of Object.entries(hooks)) {
    await hearth.admin.hooks.put(name, {
      events: ['document.create', 'document.update'],
      match,
      mode: 'before',
      url,
      secret,
      timeoutMs: 3000,
      onFailure: 'reject',
    });
  }
} catch (error) {
  console.error(`could not register the hooks with ${hearthUrl}: ${error.code ?? ''} ${error.message}`);
  if (error.details) console.error(JSON.stringify(error.details));
  server.close();
  process.exit(1);
} finally {
  hearth.close();
}
console.log(`hooks registered: ${Object.keys(hooks).join(', ')} → ${url}`);

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
  });
}
