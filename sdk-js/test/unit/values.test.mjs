import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  arrayRemove,
  arrayUnion,
  base64Decode,
  base64Encode,
  createClient,
  deleteField,
  double,
  fieldPath,
  formatTimestamp,
  GeoPoint,
  HearthError,
  increment,
  parseFieldPath,
  parseTimestamp,
  serverTimestamp,
} from '../../dist/index.js';
import { decodeValue, encodeDocumentData, encodeFieldUpdates, encodeQueryValue, stringifyJson } from '../../dist/values.js';
import { flattenForMerge } from '../../dist/fieldpath.js';

const client = createClient('http://127.0.0.1:1', { fetch: async () => new Response('{}') });
const makeRef = (path) => client.doc(path);

test('typed values encode to the single-key wire objects of DESIGN §2', () => {
  const data = {
    at: new Date('2026-11-25T10:00:00.123Z'),
    blob: new Uint8Array([0, 1, 2, 253, 254, 255]),
    owner: client.doc('users/u1'),
    place: new GeoPoint(52.1, 4.3),
    nested: { list: [1, 'two', null, true, { deep: new Date(0) }] },
  };
  assert.deepEqual(JSON.parse(stringifyJson(encodeDocumentData(data))), {
    at: { $timestamp: '2026-11-25T10:00:00.123000Z' },
    blob: { $bytes: 'AAEC/f7/' },
    owner: { $ref: 'users/u1' },
    place: { $geo: { lat: 52.1, lng: 4.3 } },
    nested: { list: [1, 'two', null, true, { deep: { $timestamp: '1970-01-01T00:00:00.000000Z' } }] },
  });
});

test('decoding the wire form gives back Date, Uint8Array, DocumentReference and GeoPoint', () => {
  const original = {
    at: new Date('2026-11-25T10:00:00.123Z'),
    blob: new Uint8Array([104, 105, 0, 255]),
    owner: client.doc('users/u1'),
    place: new GeoPoint(-33.5, 151.25),
    plain: { a: [1, 2.5, 'x'], b: null },
  };
  const wire = JSON.parse(stringifyJson(encodeDocumentData(original)));
  const decoded = decodeValue(wire, makeRef);
  assert.ok(decoded.at instanceof Date);
  assert.equal(decoded.at.getTime(), original.at.getTime());
  assert.ok(decoded.blob instanceof Uint8Array);
  assert.deepEqual([...decoded.blob], [104, 105, 0, 255]);
  assert.equal(decoded.owner.path, 'users/u1');
  assert.ok(decoded.owner.isEqual(original.owner));
  assert.ok(decoded.place instanceof GeoPoint);
  assert.ok(decoded.place.isEqual(original.place));
  assert.deepEqual(decoded.plain, original.plain);
});

test('sentinels encode to their wire form in writes', () => {
  const body = encodeDocumentData({
    at: serverTimestamp(),
    n: increment(5),
    half: increment(double(0.5)),
    tags: arrayUnion('a', new Date(0)),
    gone: arrayRemove(1, 2),
  });
  assert.deepEqual(JSON.parse(stringifyJson(body)), {
    at: { $serverTimestamp: true },
    n: { $increment: 5 },
    half: { $increment: 0.5 },
    tags: { $arrayUnion: ['a', { $timestamp: '1970-01-01T00:00:00.000000Z' }] },
    gone: { $arrayRemove: [1, 2] },
  });
});

test('deleteField is accepted only at the top of an update', () => {
  assert.deepEqual(encodeFieldUpdates({ 'a.b': deleteField(), c: 1 }), { 'a.b': { $delete: true }, c: 1 });
  assert.throws(() => encodeDocumentData({ a: deleteField() }), (error) => error instanceof HearthError && error.code === 'invalid_argument');
  assert.throws(() => encodeFieldUpdates({ a: { b: deleteField() } }), { code: 'invalid_argument' });
});

test('sentinels are rejected inside arrays and in query values', () => {
  assert.throws(() => encodeDocumentData({ list: [serverTimestamp()] }), { code: 'invalid_argument' });
  assert.throws(() => encodeQueryValue(serverTimestamp(), 'where'), { code: 'invalid_argument' });
});

test('update keys stay field paths and nested maps stay values', () => {
  const body = encodeFieldUpdates({ 'address.city': 'Oslo', profile: { name: 'x', 'odd.key': 1 } });
  assert.deepEqual(body, { 'address.city': 'Oslo', profile: { name: 'x', 'odd.key': 1 } });
});

test('integral numbers are sent as JSON integers, double() forces a fraction, bigint stays exact', () => {
  const text = stringifyJson(encodeDocumentData({ i: 3, f: 2.5, d: double(3), neg: double(-0), big: 9007199254740993n, e: 1e21 }));
  assert.equal(text, '{"i":3,"f":2.5,"d":3.0,"neg":0.0,"big":9007199254740993,"e":1e+21}');
});

test('values the server cannot store are rejected before sending', () => {
  for (const bad of [{ n: NaN }, { n: Infinity }, { $x: 1 }, { nested: { $ref: 'x' } }, { m: new Map() }, { f: () => 1 }, { big: 2n ** 64n }]) {
    assert.throws(() => encodeDocumentData(bad), { code: 'invalid_argument' }, JSON.stringify(Object.keys(bad)));
  }
  assert.throws(() => encodeDocumentData([1, 2]), { code: 'invalid_argument' });
  assert.throws(() => encodeDocumentData({ list: [undefined] }), { code: 'invalid_argument' });
  // Undefined map entries are skipped, as JSON.stringify does.
  assert.deepEqual(encodeDocumentData({ a: 1, b: undefined }), { a: 1 });
});

test('timestamps format with microseconds in UTC and parse any RFC 3339 form', () => {
  assert.equal(formatTimestamp(new Date(Date.UTC(2026, 10, 25, 10, 0, 0, 7))), '2026-11-25T10:00:00.007000Z');
  assert.equal(parseTimestamp('2026-11-25T10:00:00.123456Z').toISOString(), '2026-11-25T10:00:00.123Z');
  assert.equal(parseTimestamp('2026-11-25T10:00:00Z').toISOString(), '2026-11-25T10:00:00.000Z');
  assert.equal(parseTimestamp('2026-11-25T12:30:00.5+02:30').toISOString(), '2026-11-25T10:00:00.500Z');
  assert.equal(parseTimestamp('2026-11-25T10:00:00.999999999-01:00').toISOString(), '2026-11-25T11:00:00.999Z');
  assert.equal(parseTimestamp('0001-01-01T00:00:00Z').getUTCFullYear(), 1);
  assert.throws(() => parseTimestamp('yesterday'), { code: 'invalid_argument' });
});

test('base64 round-trips every length and accepts URL-safe input', () => {
  for (let length = 0; length < 20; length++) {
    const bytes = Uint8Array.from({ length }, (_, i) => (i * 37 + 11) & 0xff);
    const text = base64Encode(bytes);
    assert.equal(text, Buffer.from(bytes).toString('base64'));
    assert.deepEqual([...base64Decode(text)], [...bytes]);
  }
  assert.deepEqual([...base64Decode('-_8')], [0xfb, 0xff]);
});

test('GeoPoint rejects out-of-range coordinates', () => {
  assert.throws(() => new GeoPoint(91, 0), { code: 'invalid_argument' });
  assert.throws(() => new GeoPoint(0, -181), { code: 'invalid_argument' });
});

test('field paths back-quote segments that are not identifiers', () => {
  assert.equal(fieldPath('address', 'city'), 'address.city');
  assert.equal(fieldPath('first.name'), '`first.name`');
  assert.equal(fieldPath('we`ird\\', '1st'), '`we\\`ird\\\\`.`1st`');
  assert.deepEqual(parseFieldPath('`first.name`.x'), ['first.name', 'x']);
  assert.deepEqual(parseFieldPath('`we\\`ird\\\\`.`1st`'), ['we`ird\\', '1st']);
  assert.throws(() => parseFieldPath('a..b'), { code: 'invalid_argument' });
  assert.throws(() => parseFieldPath('`open'), { code: 'invalid_argument' });
});

test('merge flattening names leaf fields and keeps typed values, arrays and empty maps whole', () => {
  const at = new Date(0);
  const flat = flattenForMerge({ a: { b: 1, c: { d: [1, 2] } }, 'x.y': { z: at }, e: {}, f: deleteField(), g: client.doc('u/1') });
  assert.deepEqual(Object.keys(flat), ['a.b', 'a.c.d', '`x.y`.z', 'e', 'f', 'g']);
  assert.equal(flat['`x.y`.z'], at);
});
