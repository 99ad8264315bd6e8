/**
 * Field paths (DESIGN §2): dot-separated segments; a segment that is not `[A-Za-z_][A-Za-z0-9_]*`
 * is back-quoted (`` `first.name` ``), with `` ` `` and `\` escaped by a backslash inside quotes.
 *
 * @module
 */

import { invalidArgument } from './errors.js';
import { Double, FieldValue, GeoPoint, isReferenceLike } from './values.js';

const SIMPLE_SEGMENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Quotes one segment when needed, so `fieldPath('first.name', 'x')` is `` `first.name`.x ``. */
export function quoteSegment(segment: string): string {
  if (SIMPLE_SEGMENT.test(segment)) return segment;
  return '`' + segment.replace(/[\\`]/g, (c) => '\\' + c) + '`';
}

/** Builds a field path string from raw segments, quoting those that need it. */
export function fieldPath(...segments: string[]): string {
  if (segments.length === 0) throw invalidArgument('a field path needs at least one segment');
  return segments.map(quoteSegment).join('.');
}

/** Splits a field path string into raw segments (undoing the back-quoting). */
export function parseFieldPath(path: string): string[] {
  const segments: string[] = [];
  let current = '';
  let quoted = false;
  let wasQuoted = false;
  for (let i = 0; i < path.length; i++) {
    const char = path[i]!;
    if (quoted) {
      if (char === '\\' && i + 1 < path.length) {
        current += path[++i];
      } else if (char === '`') {
        quoted = false;
      } else {
        current += char;
      }
    } else if (char === '`') {
      quoted = true;
      wasQuoted = true;
    } else if (char === '.') {
      if (current === '' && !wasQuoted) throw invalidArgument(`empty segment in field path ${JSON.stringify(path)}`);
      segments.push(current);
      current = '';
      wasQuoted = false;
    } else {
      current += char;
    }
  }
  if (quoted) throw invalidArgument(`unterminated back-quote in field path ${JSON.stringify(path)}`);
  if (current === '' && !wasQuoted) throw invalidArgument(`empty segment in field path ${JSON.stringify(path)}`);
  segments.push(current);
  return segments;
}

/** Reads a (decoded) field by path; `undefined` when any segment is missing. @internal */
export function getField(data: unknown, path: string): unknown {
  let current: unknown = data;
  for (const segment of parseFieldPath(path)) {
    if (typeof current !== 'object' || current === null || Array.isArray(current)) return undefined;
    current = (current as Record<string, unknown>)[segment];
  }
  return current;
}

/** True for values that are leaves for merge flattening (anything but a plain, non-empty map). */
function isMergeLeaf(value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return true;
  if (Array.isArray(value) || value instanceof Date || value instanceof Uint8Array || value instanceof ArrayBuffer) return true;
  if (value instanceof GeoPoint || value instanceof FieldValue || value instanceof Double || isReferenceLike(value)) return true;
  return Object.keys(value).length === 0;
}

/**
 * Turns a nested object into `{fieldPath: leafValue}` for a merge: `{a: {b: 1}, c: 2}` becomes
 * `{"a.b": 1, "c": 2}`, so a merge touches only the fields it names. An empty map is a leaf
 * (merging `{a: {}}` sets `a` to an empty map, as Firestore does).
 * @internal
 */
export function flattenForMerge(data: Record<string, unknown>, prefix: string[] = [], out: Record<string, unknown> = {}): Record<string, unknown> {
  for (const [key, value] of Object.entries(data)) {
    if (value === undefined) continue;
    const segments = [...prefix, key];
    if (isMergeLeaf(value)) out[fieldPath(...segments)] = value;
    else flattenForMerge(value as Record<string, unknown>, segments, out);
  }
  return out;
}
