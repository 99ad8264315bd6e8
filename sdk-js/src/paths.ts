/**
 * Document and collection paths (DESIGN §2): slash-separated, alternating collection and
 * document IDs. Validated here so a typo fails before a request is sent.
 *
 * @module
 * @internal
 */

import { invalidArgument } from './errors.js';

const AUTO_ID_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** Splits and checks a path; `kind` says whether it must name a document or a collection. */
export function splitPath(path: string, kind: 'document' | 'collection'): string[] {
  if (typeof path !== 'string' || path === '') throw invalidArgument(`a ${kind} path must be a non-empty string`);
  const segments = path.replace(/^\/+|\/+$/g, '').split('/');
  for (const segment of segments) checkId(segment, path);
  const isDocument = segments.length % 2 === 0;
  if (kind === 'document' && !isDocument) {
    throw invalidArgument(`${JSON.stringify(path)} is a collection path; a document path has an even number of segments`);
  }
  if (kind === 'collection' && isDocument) {
    throw invalidArgument(`${JSON.stringify(path)} is a document path; a collection path has an odd number of segments`);
  }
  return segments;
}

/** Checks one ID against the rules the SDK can see locally (the server checks the rest). */
export function checkId(id: string, context: string = id): void {
  if (id === '') throw invalidArgument(`empty segment in path ${JSON.stringify(context)}`);
  if (id === '.' || id === '..') throw invalidArgument(`"${id}" is not a valid ID (in ${JSON.stringify(context)})`);
  if (id.includes('/')) throw invalidArgument(`an ID may not contain "/": ${JSON.stringify(id)}`);
  if (/^__.*__$/.test(id)) throw invalidArgument(`IDs matching __.*__ are reserved: ${JSON.stringify(id)}`);
}

/** 20 random characters of `[A-Za-z0-9]`, like the server's auto IDs. */
export function autoId(): string {
  const bytes = new Uint8Array(40);
  let id = '';
  while (id.length < 20) {
    globalThis.crypto.getRandomValues(bytes);
    for (const byte of bytes) {
      // 248 = 62 * 4: reject the tail so every character is equally likely.
      if (byte < 248 && id.length < 20) id += AUTO_ID_ALPHABET[byte % 62];
    }
  }
  return id;
}
