/**
 * Mapping between JS values and Hearth's JSON value encoding (DESIGN §2): typed values
 * (`$timestamp`, `$bytes`, `$ref`, `$geo`), write sentinels (`$serverTimestamp`, `$increment`,
 * `$arrayUnion`, `$arrayRemove`, `$delete`) and the integer/double distinction.
 *
 * @module
 */

import { invalidArgument } from './errors.js';

/** A latitude/longitude pair, stored as `{"$geo": {"lat", "lng"}}`. */
export class GeoPoint {
  constructor(
    readonly latitude: number,
    readonly longitude: number,
  ) {
    if (!Number.isFinite(latitude) || latitude < -90 || latitude > 90) {
      throw invalidArgument(`GeoPoint latitude must be within [-90, 90], got ${latitude}`);
    }
    if (!Number.isFinite(longitude) || longitude < -180 || longitude > 180) {
      throw invalidArgument(`GeoPoint longitude must be within [-180, 180], got ${longitude}`);
    }
  }

  isEqual(other: GeoPoint): boolean {
    return this.latitude === other.latitude && this.longitude === other.longitude;
  }

  toJSON(): { lat: number; lng: number } {
    return { lat: this.latitude, lng: this.longitude };
  }
}

/**
 * A number that must be stored as a double even when it has no fractional part. Plain JS numbers
 * that are integers are sent as JSON integers (stored as i64), because JS cannot tell `1` from
 * `1.0`; wrap a value with {@link double} when the stored type matters (e.g. a field later compared
 * with doubles in rules via `is float`).
 */
export class Double {
  constructor(readonly value: number) {
    if (!Number.isFinite(value)) throw invalidArgument(`a double must be finite, got ${value}`);
  }
}

/** Marks a number to be stored as a double (`1` is sent as `1.0`). See {@link Double}. */
export function double(value: number): Double {
  return new Double(value);
}

/** The kinds of write-only transforms the server understands. */
export type FieldValueKind = 'serverTimestamp' | 'increment' | 'arrayUnion' | 'arrayRemove' | 'delete';

/**
 * A write sentinel: stands in for a value in `set`, `update`, `add` and batches and is resolved by
 * the server at commit time. Create them with {@link serverTimestamp}, {@link increment},
 * {@link arrayUnion}, {@link arrayRemove} and {@link deleteField}.
 */
export class FieldValue {
  /** @internal */
  constructor(
    readonly kind: FieldValueKind,
    /** @internal */
    readonly operand?: unknown,
  ) {}
}

/** The commit time of the write (`{"$serverTimestamp": true}`). */
export function serverTimestamp(): FieldValue {
  return new FieldValue('serverTimestamp');
}

/** Adds `n` to the stored number (missing or non-numeric fields start from 0). */
export function increment(n: number | Double): FieldValue {
  const value = n instanceof Double ? n.value : n;
  if (typeof value !== 'number' || !Number.isFinite(value)) {
    throw invalidArgument(`increment() needs a finite number, got ${String(n)}`);
  }
  return new FieldValue('increment', n);
}

/** Appends each element not already present in the stored array. */
export function arrayUnion(...elements: unknown[]): FieldValue {
  return new FieldValue('arrayUnion', elements);
}

/** Removes every occurrence of each element from the stored array. */
export function arrayRemove(...elements: unknown[]): FieldValue {
  return new FieldValue('arrayRemove', elements);
}

/** Removes the field (only in `update()` and merge `set()`). */
export function deleteField(): FieldValue {
  return new FieldValue('delete');
}

/**
 * Brand carried by `DocumentReference` so this module can recognise references without importing
 * the class (which itself depends on this module).
 * @internal
 */
export const REFERENCE_BRAND: unique symbol = Symbol.for('hearth.DocumentReference');

/** @internal */
export interface ReferenceLike {
  readonly [REFERENCE_BRAND]: true;
  readonly path: string;
}

/** @internal */
export function isReferenceLike(value: unknown): value is ReferenceLike {
  return typeof value === 'object' && value !== null && (value as any)[REFERENCE_BRAND] === true;
}

/** How decoding turns a `{"$ref": path}` into a reference object. @internal */
export type ReferenceFactory = (path: string) => unknown;

/**
 * A value in Hearth's JSON wire form (what a query body or batch carries). It is plain JSON
 * except for {@link Double} and `bigint`, which the SDK prints with the exact number form the
 * server needs.
 */
export type WireValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Double
  | WireValue[]
  | { [key: string]: WireValue };

const I64_MIN = -(2n ** 63n);
const I64_MAX = 2n ** 63n - 1n;

/** Where encoding happens, to reject sentinels where the server would. @internal */
export interface EncodeOptions {
  /** Sentinels allowed (true in writes, false in queries and inside array operands). */
  allowSentinels: boolean;
  /** `deleteField()` allowed (only at the top of an update / merge). */
  allowDelete: boolean;
}

const WRITE: EncodeOptions = { allowSentinels: true, allowDelete: false };
const PLAIN: EncodeOptions = { allowSentinels: false, allowDelete: false };

/**
 * Encodes a JS value into Hearth's wire form.
 * - `Date` → `{"$timestamp": "…µs Z"}`, `Uint8Array`/`ArrayBuffer` → `{"$bytes": base64}`,
 *   `DocumentReference` → `{"$ref": path}`, `GeoPoint` → `{"$geo": {lat, lng}}`;
 * - sentinels → `{"$serverTimestamp": true}` etc. (only where `options` allows them);
 * - `undefined` map entries are dropped (as JSON does); `undefined` elsewhere is an error;
 * - map keys starting with `$` are rejected (the server reserves them).
 * @internal
 */
export function encodeValue(value: unknown, options: EncodeOptions = WRITE, where = 'value'): WireValue {
  if (value === null) return null;
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return value;
    case 'number':
      if (!Number.isFinite(value)) throw invalidArgument(`${where}: ${value} cannot be stored`);
      return value;
    case 'bigint':
      if (value < I64_MIN || value > I64_MAX) throw invalidArgument(`${where}: ${value} does not fit in i64`);
      return value;
    case 'undefined':
      throw invalidArgument(`${where}: undefined cannot be stored (use null or deleteField())`);
    case 'object':
      break;
    default:
      throw invalidArgument(`${where}: a ${typeof value} cannot be stored`);
  }
  if (value instanceof Double) return value;
  if (value instanceof Date) return { $timestamp: formatTimestamp(value) };
  if (value instanceof Uint8Array) return { $bytes: base64Encode(value) };
  if (value instanceof ArrayBuffer) return { $bytes: base64Encode(new Uint8Array(value)) };
  if (value instanceof GeoPoint) return { $geo: { lat: value.latitude, lng: value.longitude } };
  if (isReferenceLike(value)) return { $ref: value.path };
  if (value instanceof FieldValue) return encodeSentinel(value, options, where);
  if (Array.isArray(value)) {
    // Sentinels are not allowed inside arrays (as in Firestore): they address a whole field.
    const inner: EncodeOptions = { allowSentinels: false, allowDelete: false };
    return value.map((element, index) => encodeValue(element, inner, `${where}[${index}]`));
  }
  const prototype = Object.getPrototypeOf(value);
  if (prototype !== Object.prototype && prototype !== null) {
    const name = (value as object).constructor?.name ?? 'object';
    throw invalidArgument(`${where}: a ${name} cannot be stored (only plain objects, arrays and Hearth types)`);
  }
  const out: { [key: string]: WireValue } = {};
  const nested: EncodeOptions = { allowSentinels: options.allowSentinels, allowDelete: false };
  for (const [key, element] of Object.entries(value as Record<string, unknown>)) {
    if (element === undefined) continue;
    if (key.startsWith('$')) throw invalidArgument(`${where}: map key ${JSON.stringify(key)} may not start with "$"`);
    out[key] = encodeValue(element, nested, `${where}.${key}`);
  }
  return out;
}

function encodeSentinel(value: FieldValue, options: EncodeOptions, where: string): WireValue {
  if (!options.allowSentinels) {
    throw invalidArgument(`${where}: ${value.kind}() is only allowed as a field value in a write`);
  }
  switch (value.kind) {
    case 'serverTimestamp':
      return { $serverTimestamp: true };
    case 'increment':
      return { $increment: value.operand as number | Double };
    case 'arrayUnion':
    case 'arrayRemove': {
      const elements = (value.operand as unknown[]).map((element, index) =>
        encodeValue(element, PLAIN, `${where}.${value.kind}[${index}]`),
      );
      return value.kind === 'arrayUnion' ? { $arrayUnion: elements } : { $arrayRemove: elements };
    }
    case 'delete':
      if (!options.allowDelete) {
        throw invalidArgument(`${where}: deleteField() is only allowed as a top-level field of update() or set(…, {merge: true})`);
      }
      return { $delete: true };
  }
}

/**
 * Encodes a document body for a full write (set, create, add): a plain object whose values may be
 * sentinels except `deleteField()`.
 * @internal
 */
export function encodeDocumentData(data: unknown, what = 'document data'): { [key: string]: WireValue } {
  if (typeof data !== 'object' || data === null || Array.isArray(data) || Object.getPrototypeOf(data) !== Object.prototype && Object.getPrototypeOf(data) !== null) {
    throw invalidArgument(`${what} must be a plain object`);
  }
  return encodeValue(data, WRITE, what) as { [key: string]: WireValue };
}

/**
 * Encodes an update body: keys are field paths (kept as given), values may be any sentinel
 * including `deleteField()`.
 * @internal
 */
export function encodeFieldUpdates(data: unknown, what = 'update data'): { [fieldPath: string]: WireValue } {
  if (typeof data !== 'object' || data === null || Array.isArray(data)) {
    throw invalidArgument(`${what} must be an object of field paths to values`);
  }
  const out: { [fieldPath: string]: WireValue } = {};
  const top: EncodeOptions = { allowSentinels: true, allowDelete: true };
  for (const [path, value] of Object.entries(data as Record<string, unknown>)) {
    if (value === undefined) continue;
    if (path === '') throw invalidArgument(`${what}: empty field path`);
    out[path] = encodeValue(value, top, `${what}[${JSON.stringify(path)}]`);
  }
  return out;
}

/** Encodes a value used in a query (filters, cursors): no sentinels. @internal */
export function encodeQueryValue(value: unknown, where: string): WireValue {
  return encodeValue(value, PLAIN, where);
}

/**
 * Decodes a wire value into JS: typed values become `Date`, `Uint8Array`, references (through
 * `makeRef`) and `GeoPoint`; everything else stays as parsed JSON.
 * @internal
 */
export function decodeValue(value: unknown, makeRef: ReferenceFactory): unknown {
  if (value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((element) => decodeValue(element, makeRef));
  const record = value as Record<string, unknown>;
  const keys = Object.keys(record);
  if (keys.length === 1 && keys[0]!.startsWith('$')) {
    const key = keys[0]!;
    const inner = record[key];
    if (key === '$timestamp' && typeof inner === 'string') return parseTimestamp(inner);
    if (key === '$bytes' && typeof inner === 'string') return base64Decode(inner);
    if (key === '$ref' && typeof inner === 'string') return makeRef(inner);
    if (key === '$geo' && typeof inner === 'object' && inner !== null) {
      const { lat, lng } = inner as { lat: number; lng: number };
      return new GeoPoint(lat, lng);
    }
  }
  const out: Record<string, unknown> = {};
  for (const key of keys) out[key] = decodeValue(record[key], makeRef);
  return out;
}

/**
 * Formats a `Date` as the server's RFC 3339 form with microseconds, always UTC:
 * `2026-11-25T10:00:00.123000Z`.
 */
export function formatTimestamp(date: Date): string {
  const ms = date.getTime();
  if (!Number.isFinite(ms)) throw invalidArgument('cannot store an invalid Date');
  const iso = date.toISOString(); // 2026-11-25T10:00:00.123Z (or ±YYYYYY for far years)
  return `${iso.slice(0, -1)}000Z`;
}

const TIMESTAMP_PATTERN =
  /^(-?\d{4,6})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$/;

/**
 * Parses an RFC 3339 timestamp (any number of fractional digits, any offset) into a `Date`.
 * Digits beyond milliseconds are truncated, since `Date` holds milliseconds.
 */
export function parseTimestamp(text: string): Date {
  const match = TIMESTAMP_PATTERN.exec(text);
  if (!match) throw invalidArgument(`not an RFC 3339 timestamp: ${JSON.stringify(text)}`);
  const [, year, month, day, hour, minute, second, fraction = '', offset] = match;
  const ms = Number((fraction + '000').slice(0, 3));
  let time = Date.UTC(Number(year), Number(month) - 1, Number(day), Number(hour), Number(minute), Number(second), ms);
  if (Number(year) < 100 && Number(year) >= 0) {
    // Date.UTC maps years 0–99 to 1900–1999; set the real year back.
    const fixed = new Date(time);
    fixed.setUTCFullYear(Number(year));
    time = fixed.getTime();
  }
  if (offset && offset !== 'Z' && offset !== 'z') {
    const sign = offset[0] === '-' ? -1 : 1;
    const minutes = Number(offset.slice(1, 3)) * 60 + Number(offset.slice(4, 6));
    time -= sign * minutes * 60_000;
  }
  return new Date(time);
}

const BASE64_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Standard base64 with padding (RFC 4648 §4), without depending on `Buffer` or `btoa`. */
export function base64Encode(bytes: Uint8Array): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += BASE64_ALPHABET[n >> 18]! + BASE64_ALPHABET[(n >> 12) & 63]! + BASE64_ALPHABET[(n >> 6) & 63]! + BASE64_ALPHABET[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += BASE64_ALPHABET[n >> 18]! + BASE64_ALPHABET[(n >> 12) & 63]! + '==';
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += BASE64_ALPHABET[n >> 18]! + BASE64_ALPHABET[(n >> 12) & 63]! + BASE64_ALPHABET[(n >> 6) & 63]! + '=';
  }
  return out;
}

const BASE64_LOOKUP: Record<string, number> = {};
for (let i = 0; i < BASE64_ALPHABET.length; i++) BASE64_LOOKUP[BASE64_ALPHABET[i]!] = i;
// Accept the URL-safe alphabet too; it costs nothing and servers sometimes differ.
BASE64_LOOKUP['-'] = 62;
BASE64_LOOKUP['_'] = 63;

/** Decodes standard or URL-safe base64, with or without padding. */
export function base64Decode(text: string): Uint8Array {
  const clean = text.replace(/[\s=]/g, '');
  if (clean.length % 4 === 1) throw invalidArgument('malformed base64');
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4));
  let buffer = 0;
  let bits = 0;
  let index = 0;
  for (const char of clean) {
    const sextet = BASE64_LOOKUP[char];
    if (sextet === undefined) throw invalidArgument(`malformed base64 character ${JSON.stringify(char)}`);
    buffer = (buffer << 6) | sextet;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[index++] = (buffer >> bits) & 0xff;
    }
  }
  return out;
}

/**
 * Serialises a wire tree to JSON text. Unlike `JSON.stringify` it prints {@link Double}s with a
 * fraction (`1.0`) so the server stores a double, and `bigint`s as plain integer literals.
 * @internal
 */
export function stringifyJson(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      if (!Number.isFinite(value)) throw invalidArgument(`${value} is not valid JSON`);
      return JSON.stringify(value);
    case 'bigint':
      return value.toString();
    case 'string':
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw invalidArgument(`a ${typeof value} is not valid JSON`);
  }
  if (value instanceof Double) {
    const text = JSON.stringify(value.value);
    return /[.eE]/.test(text) ? text : `${text}.0`;
  }
  if (Array.isArray(value)) return `[${value.map(stringifyJson).join(',')}]`;
  const parts: string[] = [];
  for (const [key, element] of Object.entries(value as Record<string, unknown>)) {
    if (element === undefined) continue;
    parts.push(`${JSON.stringify(key)}:${stringifyJson(element)}`);
  }
  return `{${parts.join(',')}}`;
}
