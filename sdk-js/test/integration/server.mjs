// Starts the real `hearth` binary for integration tests: `hearth serve --listen 127.0.0.1:0
// --data-dir <fresh tmp dir>` with a random HEARTH_SERVICE_KEY, waits for the
// `listening on http://ADDR` line and hands back the URL. No mocks here.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const sdkRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The binary under test: $HEARTH_BIN, else ../target/debug/hearth relative to sdk-js. */
export const hearthBin = resolve(sdkRoot, process.env.HEARTH_BIN ?? '../target/debug/hearth');

const LISTENING = /listening on (https?:\/\/[^\s"']+)/;

/**
 * Starts a server and resolves `{url, serviceKey, dataDir, output, stop}` once it listens.
 * `extraArgs`/`extraEnv` let a test add flags (e.g. `--rules`).
 */
export async function startServer({
  extraArgs = [],
  extraEnv = {},
  timeoutMs = 60_000,
  listen = '127.0.0.1:0',
  dataDir = mkdtempSync(join(tmpdir(), 'hearth-sdk-it-')),
  serviceKey = `sk_test_${randomBytes(24).toString('hex')}`,
} = {}) {
  if (!existsSync(hearthBin)) {
    throw new Error(`hearth binary not found at ${hearthBin}: build it (cargo build -p hearth) or set HEARTH_BIN`);
  }
  const child = spawn(hearthBin, ['serve', '--listen', listen, '--data-dir', dataDir, ...extraArgs], {
    env: { ...process.env, HEARTH_SERVICE_KEY: serviceKey, ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const url = await new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`hearth did not print "listening on" within ${timeoutMs} ms; output:\n${output}`));
    }, timeoutMs);
    // The contract says stdout; stderr is watched too so a logging change shows as a mismatch
    // report rather than a hang.
    const onData = (chunk) => {
      output += chunk.toString();
      const match = LISTENING.exec(output.replace(/\x1b\[[0-9;]*m/g, ''));
      if (match) {
        clearTimeout(timer);
        resolvePromise(match[1].replace(/\/+$/, ''));
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', (chunk) => {
      output += chunk.toString();
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`hearth exited early (code ${code}, signal ${signal}); output:\n${output}`));
    });
  });
  child.stdout.on('data', (chunk) => (output += chunk.toString()));
  return {
    url,
    serviceKey,
    dataDir,
    get output() {
      return output;
    },
    /** Stops the process; the data dir is removed unless `keepData` (for a restart). */
    async stop({ keepData = false } = {}) {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      if (!keepData) rmSync(dataDir, { recursive: true, force: true });
    },
    /** Stops and starts again on the same address and data dir (clients see a dropped connection). */
    async restart() {
      await this.stop({ keepData: true });
      return startServer({ extraArgs, extraEnv, timeoutMs, listen: new URL(url).host, dataDir, serviceKey });
    },
  };
}

/** A collection name no other test uses, so tests share a server without sharing data. */
export function uniqueCollection(prefix = 'c') {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/**
 * Whether the server implements a route: a 404 whose body is not the JSON error of a document
 * route (or a 405) means "no such route yet".
 */
export async function hasRoute(url, method, path, body) {
  const response = await fetch(url + path, {
    method,
    headers: body ? { 'content-type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  await response.arrayBuffer();
  return response.status !== 404 && response.status !== 405;
}

/** Whether `GET /v1/realtime` upgrades to a WebSocket (the `ws` dev dependency is the client). */
export async function hasRealtime(url) {
  const { WebSocket } = await import('ws');
  return new Promise((resolvePromise) => {
    const socket = new WebSocket(url.replace(/^http/, 'ws') + '/v1/realtime');
    const done = (value) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.on('error', () => {});
      socket.terminate();
      resolvePromise(value);
    };
    const timer = setTimeout(() => done(false), 5_000);
    socket.on('open', () => done(true));
    socket.on('error', () => done(false));
    socket.on('unexpected-response', () => done(false));
  });
}
