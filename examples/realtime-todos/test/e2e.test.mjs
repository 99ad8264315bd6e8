// Browser end-to-end tests of the example app: the real `hearth` binary (with this example's
// firestore.rules), the app built by Vite and served by `vite preview`, and Debian's Chromium
// driven by playwright-core. Two browser contexts stand for two people on two machines.
//
// Page A talks to the Hearth server directly (cross-origin, through the server's CORS); page B
// talks to it through the preview server's /v1 proxy (same-origin, WebSocket included), so both
// ways of running the app are exercised.
//
// The app runs as its README describes: `npm run functions` (functions/start.mjs) starts the
// validation function and registers it as a `before` hook, so every todo and board write goes
// through it — the tests at the end check its refusals and its tidying in both pages.
//
// Env: HEARTH_BIN (default ../../target/debug/hearth), CHROMIUM (default /usr/bin/chromium).
// Screenshots and the pages' console log go to <repo>/test-artifacts/realtime-todos/.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, preview } from 'vite';
import { chromium } from 'playwright-core';

const exampleRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const hearthBin = resolve(exampleRoot, process.env.HEARTH_BIN ?? '../../target/debug/hearth');
const chromiumPath = process.env.CHROMIUM ?? '/usr/bin/chromium';
const rulesFile = join(exampleRoot, 'firestore.rules');
const artifacts = resolve(exampleRoot, '../../test-artifacts/realtime-todos');
const WAIT = 15_000;

/** Starts `hearth serve` on a free port; resolves once it prints `listening on http://ADDR`. */
async function startHearth() {
  if (!existsSync(hearthBin)) {
    throw new Error(`hearth binary not found at ${hearthBin}: cargo build --bin hearth, or set HEARTH_BIN`);
  }
  const dataDir = mkdtempSync(join(tmpdir(), 'hearth-e2e-'));
  const serviceKey = `sk_e2e_${randomBytes(16).toString('hex')}`;
  const child = spawn(
    hearthBin,
    ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir, '--rules', rulesFile],
    {
      env: { ...process.env, HEARTH_SERVICE_KEY: serviceKey },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stderr.on('data', (chunk) => (output += chunk));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`hearth did not start in time:\n${output}`)), 60_000);
    child.stdout.on('data', (chunk) => {
      output += chunk;
      const match = /listening on (https?:\/\/[^\s"']+)/.exec(output.replace(/\x1b\[[0-9;]*m/g, ''));
      if (match) {
        clearTimeout(timer);
        resolveUrl(match[1].replace(/\/+$/, ''));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`hearth exited early (code ${code}):\n${output}`));
    });
  });
  return {
    url,
    serviceKey,
    async stop() {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * Starts the validation function and registers its hooks the way the README says
 * (`npm run functions`, i.e. functions/start.mjs), on a free port; resolves once it prints
 * `hooks registered`.
 */
async function startFunctions(hearth) {
  const child = spawn(process.execPath, [join(exampleRoot, 'functions', 'start.mjs')], {
    cwd: exampleRoot,
    env: { ...process.env, HEARTH_URL: hearth.url, HEARTH_SERVICE_KEY: hearth.serviceKey, PORT: '0' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stderr.on('data', (chunk) => (output += chunk));
  child.stdout.on('data', (chunk) => (output += chunk));
  await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`the function did not register its hooks in time:\n${output}`)), 30_000);
    const onData = () => {
      if (/hooks registered/.test(output)) {
        clearTimeout(timer);
        child.stdout.off('data', onData);
        resolveReady();
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the function exited early (code ${code}):\n${output}`));
    });
  });
  return {
    get output() {
      return output;
    },
    stop: () => stopChild(child),
  };
}

async function stopChild(child) {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  }
}

describe('realtime-todos example in Chromium', () => {
  let hearth;
  let functions;
  let site;
  let siteUrl;
  let browser;
  const pages = {};
  const logs = [];
  const stamp = randomBytes(4).toString('hex');
  const users = {
    a: { email: `ada-${stamp}@example.com`, password: 'correct horse battery A' },
    b: { email: `bob-${stamp}@example.com`, password: 'correct horse battery B' },
  };

  const shot = (page, name) => page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
  const item = (page, list, text) => page.locator(`#${list} li`, { hasText: text });

  before(async () => {
    mkdirSync(artifacts, { recursive: true });
    hearth = await startHearth();
    functions = await startFunctions(hearth);
    await build({ root: exampleRoot, logLevel: 'warn' });
    site = await preview({
      root: exampleRoot,
      logLevel: 'warn',
      preview: {
        host: '127.0.0.1',
        port: 0,
        proxy: { '/v1': { target: hearth.url, changeOrigin: true, ws: true } },
      },
    });
    siteUrl = site.resolvedUrls.local[0].replace(/\/+$/, '');
    browser = await chromium.launch({
      executablePath: chromiumPath,
      headless: true,
      // Playwright gives every launch a new, empty profile directory (--user-data-dir).
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
    for (const [name, server] of [
      ['a', hearth.url], // direct, cross-origin (CORS)
      ['b', siteUrl], // same-origin, through the preview server's /v1 proxy
    ]) {
      const context = await browser.newContext({ viewport: { width: 1100, height: 700 } });
      const page = await context.newPage();
      page.on('console', (m) => logs.push(`[${name}] ${m.type()}: ${m.text()}`));
      page.on('pageerror', (e) => logs.push(`[${name}] pageerror: ${e.message}`));
      await page.goto(`${siteUrl}/?server=${encodeURIComponent(server)}`);
      pages[name] = page;
    }
  });

  after(async () => {
    // The pages' console (expected 403s included), kept beside the screenshots for debugging.
    writeFileSync(join(artifacts, 'console.log'), logs.join('\n') + '\n');
    if (functions) writeFileSync(join(artifacts, 'functions.log'), functions.output);
    await browser?.close();
    await site?.close();
    await functions?.stop();
    await hearth?.stop();
  });

  test('a signed-out visitor sees only the sign-in form', async () => {
    for (const page of Object.values(pages)) {
      await page.locator('#auth-form').waitFor({ timeout: WAIT });
      assert.equal(await page.locator('#app').isVisible(), false);
      assert.equal(await page.locator('#user-panel').isVisible(), false);
    }
    await shot(pages.a, '01-signed-out');
  });

  test('two users sign up in two pages', async () => {
    for (const name of ['a', 'b']) {
      const page = pages[name];
      await page.fill('#email', users[name].email);
      await page.fill('#password', users[name].password);
      await page.click('#sign-up');
      await page.locator('#user-email', { hasText: users[name].email }).waitFor({ timeout: WAIT });
      assert.equal(await page.locator('#app').isVisible(), true);
      users[name].uid = await page.evaluate(() => document.body.dataset.user);
      assert.ok(users[name].uid, 'the page knows the signed-in uid');
    }
    assert.notEqual(users.a.uid, users.b.uid);
    await shot(pages.b, '02-signed-up');
  });

  test("A's board post appears in B's page in realtime, and B's tick appears in A's", async () => {
    const text = `Bring snacks ${stamp}`;
    await pages.a.fill('#board-text', text);
    await pages.a.click('#board-form button');
    await item(pages.a, 'board-list', text).waitFor({ timeout: WAIT });
    // No reload: B's page only learns of it through its realtime listener.
    await item(pages.b, 'board-list', text).waitFor({ timeout: WAIT });
    assert.match(await item(pages.b, 'board-list', text).innerText(), new RegExp(users.a.email));

    // B ticks it off; A sees it done.
    await item(pages.b, 'board-list', text).locator('input[type=checkbox]').check();
    await pages.a.locator('#board-list li.done', { hasText: text }).waitFor({ timeout: WAIT });
    assert.equal(await item(pages.a, 'board-list', text).locator('input[type=checkbox]').isChecked(), true);

    // And B's own post reaches A too.
    const reply = `I'll bring tea ${stamp}`;
    await pages.b.fill('#board-text', reply);
    await pages.b.press('#board-text', 'Enter');
    await item(pages.a, 'board-list', reply).waitFor({ timeout: WAIT });
    assert.deepEqual(
      await pages.a.locator('#board-list li .text').allInnerTexts(),
      [text, reply],
      'the board is ordered by time on both pages',
    );
    await shot(pages.a, '03-board-page-a');
    await shot(pages.b, '04-board-page-b');
  });

  test("rules hide A's private todos from B", async () => {
    const secret = `A's secret todo ${stamp}`;
    await pages.a.fill('#todo-text', secret);
    await pages.a.click('#todo-form button');
    await item(pages.a, 'todo-list', secret).waitFor({ timeout: WAIT });
    const secretId = await item(pages.a, 'todo-list', secret).getAttribute('data-id');

    const mine = `B's own todo ${stamp}`;
    await pages.b.fill('#todo-text', mine);
    await pages.b.click('#todo-form button');
    await item(pages.b, 'todo-list', mine).waitFor({ timeout: WAIT });
    // B's page lists only B's todo, and A's page only A's.
    assert.deepEqual(await pages.b.locator('#todo-list li .text').allInnerTexts(), [mine]);
    assert.deepEqual(await pages.a.locator('#todo-list li .text').allInnerTexts(), [secret]);
    assert.equal(await pages.b.getByText(secret).count(), 0);

    // B asking the server directly (the page's own client, window.hearth) is refused.
    const probes = await pages.b.evaluate(async ({ id, ownerA }) => {
      const code = (p) => p.then(() => 'allowed', (e) => e.code ?? String(e));
      const h = window.hearth;
      return {
        getById: await code(h.doc(`todos/${id}`).get()),
        queryAll: await code(h.collection('todos').get()),
        queryA: await code(h.collection('todos').where('owner', '==', ownerA).get()),
        listenA: await new Promise((done) => {
          const stop = h
            .collection('todos')
            .where('owner', '==', ownerA)
            .onSnapshot(
              () => (stop(), done('allowed')),
              (e) => done(e.code ?? String(e)),
            );
        }),
        overwrite: await code(h.doc(`todos/${id}`).update({ done: true })),
        remove: await code(h.doc(`todos/${id}`).delete()),
        forge: await code(h.collection('todos').add({ owner: ownerA, text: 'forged', done: false })),
      };
    }, { id: secretId, ownerA: users.a.uid });
    assert.deepEqual(probes, {
      getById: 'permission_denied',
      queryAll: 'permission_denied',
      queryA: 'permission_denied',
      listenA: 'permission_denied',
      overwrite: 'permission_denied',
      remove: 'permission_denied',
      forge: 'permission_denied',
    });
    // A's todo is untouched.
    assert.equal(await item(pages.a, 'todo-list', secret).locator('input[type=checkbox]').isChecked(), false);
    await shot(pages.a, '05-todos-page-a');
    await shot(pages.b, '06-todos-page-b');
  });

  test('rules validate board fields and keep deletes to the author', async () => {
    await pages.b.fill('#board-text', 'x'.repeat(201));
    await pages.b.click('#board-form button');
    await pages.b.locator('#error', { hasText: 'permission_denied' }).waitFor({ timeout: WAIT });
    assert.equal(await pages.b.locator('#board-list li').count(), 2);
    await shot(pages.b, '07-validation-error');

    const result = await pages.b.evaluate(async (authorA) => {
      const code = (p) => p.then(() => 'allowed', (e) => e.code ?? String(e));
      const h = window.hearth;
      const posts = await h.collection('board').where('by', '==', authorA).get();
      const ref = posts.docs[0].ref;
      return {
        remove: await code(ref.delete()),
        rewrite: await code(ref.update({ text: 'vandalised' })),
        impersonate: await code(
          h.collection('board').add({ text: 'hi', done: false, by: authorA, author: 'someone' }),
        ),
        extraField: await code(
          h.collection('board').add({
            text: 'hi',
            done: false,
            by: h.auth.currentUser.uid,
            author: 'bob',
            admin: true,
          }),
        ),
      };
    }, users.a.uid);
    assert.deepEqual(result, {
      remove: 'permission_denied',
      rewrite: 'permission_denied',
      impersonate: 'permission_denied',
      extraField: 'permission_denied',
    });

    // The author may delete: A removes the first post and it leaves B's page in realtime.
    const first = `Bring snacks ${stamp}`;
    await item(pages.a, 'board-list', first).locator('button').click();
    await item(pages.b, 'board-list', first).waitFor({ state: 'detached', timeout: WAIT });
  });

  test('the validation hook refuses blank and banned todos, and the page shows its message', async () => {
    const before = await pages.a.locator('#todo-list li').count();
    // Blank: the rules accept three spaces (1–200 characters), the function does not.
    await pages.a.fill('#todo-text', '   ');
    await pages.a.click('#todo-form button');
    await pages.a.locator('#error[data-code="hook_rejected"]').waitFor({ timeout: WAIT });
    assert.equal(await pages.a.locator('#error').textContent(), 'hook_rejected: A todo needs some text.');
    await shot(pages.a, '09-hook-refuses-blank');

    await pages.a.fill('#todo-text', 'Win the lottery');
    await pages.a.click('#todo-form button');
    await pages.a.locator('#error', { hasText: 'lottery' }).waitFor({ timeout: WAIT });
    assert.equal(await pages.a.locator('#error').textContent(), 'hook_rejected: Todos may not mention "lottery".');
    assert.equal(await pages.a.inputValue('#todo-text'), 'Win the lottery', 'the text stays for the user to fix');
    await shot(pages.a, '10-hook-refuses-banned-word');

    // The same on the board, from page B (through the proxy).
    await pages.b.fill('#board-text', 'Free CASINO chips');
    await pages.b.press('#board-text', 'Enter');
    await pages.b.locator('#error', { hasText: 'casino' }).waitFor({ timeout: WAIT });
    assert.equal(await pages.b.locator('#error').textContent(), 'hook_rejected: Todos may not mention "casino".');
    await shot(pages.b, '11-hook-refuses-on-the-board');

    // Nothing was stored: the lists are as they were, and the server has no such document.
    assert.equal(await pages.a.locator('#todo-list li').count(), before);
    assert.equal(await pages.a.locator('#todo-list li', { hasText: 'lottery' }).count(), 0);
    assert.equal(await pages.b.locator('#board-list li', { hasText: /casino/i }).count(), 0);
    const stored = await pages.b.evaluate(async () => {
      const board = await window.hearth.collection('board').get();
      return board.docs.map((d) => d.data().text);
    });
    assert.ok(!stored.some((text) => /casino/i.test(text)), `board: ${JSON.stringify(stored)}`);

    // A valid write clears the error.
    await pages.a.fill('#todo-text', `Fix the error ${stamp}`);
    await pages.a.click('#todo-form button');
    await item(pages.a, 'todo-list', `Fix the error ${stamp}`).waitFor({ timeout: WAIT });
    assert.equal(await pages.a.locator('#error').isVisible(), false);
  });

  test('messy whitespace is tidied by the hook: stored tidy, and shown tidy in the other page in realtime', async () => {
    const messy = `   Water \t  the     plants   ${stamp}  `;
    const tidy = `Water the plants ${stamp}`;
    await pages.a.fill('#board-text', messy);
    await pages.a.click('#board-form button');
    // B's page learns of it only through its realtime listener; textContent is the stored text
    // (innerText would collapse whitespace on its own and prove nothing).
    const inB = item(pages.b, 'board-list', tidy);
    await inB.waitFor({ timeout: WAIT });
    assert.equal(await inB.locator('.text').textContent(), tidy);
    assert.equal(await item(pages.a, 'board-list', tidy).locator('.text').textContent(), tidy);
    const stored = await pages.b.evaluate(async (text) => {
      const found = await window.hearth.collection('board').where('text', '==', text).get();
      return found.docs.map((d) => ({ ...d.data(), at: d.data().at instanceof Date ? 'a Date' : String(d.data().at) }));
    }, tidy);
    assert.equal(stored.length, 1, 'stored under the tidy text');
    assert.equal(stored[0].text, tidy);
    assert.equal(stored[0].by, users.a.uid, 'the other fields are kept');
    assert.equal(stored[0].at, 'a Date', 'the server timestamp is kept');

    // A private todo is tidied the same way.
    await pages.a.fill('#todo-text', `  Call    mum ${stamp} `);
    await pages.a.click('#todo-form button');
    const todo = item(pages.a, 'todo-list', `Call mum ${stamp}`);
    await todo.waitFor({ timeout: WAIT });
    assert.equal(await todo.locator('.text').textContent(), `Call mum ${stamp}`);

    // Ticking a tidy item off is an update the hook lets through unchanged.
    await inB.locator('input[type=checkbox]').check();
    await pages.a.locator('#board-list li.done', { hasText: tidy }).waitFor({ timeout: WAIT });
    await shot(pages.a, '12-hook-tidied-page-a');
    await shot(pages.b, '13-hook-tidied-page-b');
  });

  test('signing out hides the lists; signing back in shows them again', async () => {
    await pages.b.click('#sign-out');
    await pages.b.locator('#auth-form').waitFor({ timeout: WAIT });
    assert.equal(await pages.b.locator('#app').isVisible(), false);
    assert.equal(await pages.b.locator('#board-list li').count(), 0);
    await shot(pages.b, '08-signed-out-again');

    // A signed-out client may not read the board (the rules ask for a signed-in user).
    const denied = await pages.b.evaluate(() =>
      window.hearth.collection('board').get().then(() => 'allowed', (e) => e.code),
    );
    assert.equal(denied, 'permission_denied');

    await pages.b.fill('#email', users.b.email);
    await pages.b.fill('#password', users.b.password);
    await pages.b.click('#sign-in');
    await item(pages.b, 'board-list', `I'll bring tea ${stamp}`).waitFor({ timeout: WAIT });
    // The two lists have their own listeners: wait for the todos too before comparing them.
    await item(pages.b, 'todo-list', `B's own todo ${stamp}`).waitFor({ timeout: WAIT });
    assert.deepEqual(await pages.b.locator('#todo-list li .text').allInnerTexts(), [`B's own todo ${stamp}`]);
    assert.deepEqual(logs.filter((l) => l.includes('pageerror')), []);
  });
});
