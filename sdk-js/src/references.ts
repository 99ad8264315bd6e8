/**
 * Document and collection references: addresses of data, with the single-document REST calls
 * (`/v1/docs/...`, DESIGN §3) and `onSnapshot`.
 *
 * @module
 */

import type { ClientContext } from './context.js';
import { HearthError, invalidArgument } from './errors.js';
import { flattenForMerge } from './fieldpath.js';
import { encodePath } from './http.js';
import { autoId, checkId, splitPath } from './paths.js';
import { initialQueryState, Query } from './query.js';
import type { Unsubscribe } from './realtime.js';
import { DocumentSnapshot, missingSnapshot, snapshotFromWire, type DocumentData, type WireDocument } from './snapshot.js';
import { encodeDocumentData, encodeFieldUpdates, FieldValue, REFERENCE_BRAND } from './values.js';

/** Options of {@link DocumentReference.set}. */
export interface SetOptions {
  /**
   * Merge into the stored document instead of replacing it: only the fields present in `data`
   * change (nested maps are merged field by field) and `deleteField()` removes fields.
   */
  merge?: boolean;
  /** Only write if the stored document is still at this version (`If-Match`), else 412. */
  version?: number;
}

/** Options of {@link DocumentReference.update} and {@link DocumentReference.delete}. */
export interface WriteOptions {
  /** Only write if the stored document is still at this version (`If-Match`), else 412. */
  version?: number;
}

/** The address of one document, e.g. `users/u1/posts/p1`. */
export class DocumentReference<T extends DocumentData = DocumentData> {
  /** @internal */
  readonly [REFERENCE_BRAND] = true as const;
  /** The full slash-separated path. */
  readonly path: string;
  /** The document ID (last segment). */
  readonly id: string;

  /** @internal */
  constructor(
    /** @internal */
    readonly context: ClientContext,
    path: string,
  ) {
    const segments = splitPath(path, 'document');
    this.path = segments.join('/');
    this.id = segments[segments.length - 1]!;
  }

  /** The collection containing this document. */
  get parent(): CollectionReference<T> {
    return new CollectionReference<T>(this.context, this.path.slice(0, this.path.length - this.id.length - 1));
  }

  /** A subcollection of this document. */
  collection<U extends DocumentData = DocumentData>(collectionId: string): CollectionReference<U> {
    return new CollectionReference<U>(this.context, `${this.path}/${collectionId}`);
  }

  /** True when both references name the same path (on the same client). */
  isEqual(other: DocumentReference<any>): boolean {
    return other instanceof DocumentReference && other.path === this.path && other.context === this.context;
  }

  /** Reads the document; a missing document gives a snapshot with `exists === false`. */
  async get(): Promise<DocumentSnapshot<T>> {
    try {
      const { body } = await this.context.transport.request('GET', this.url());
      return snapshotFromWire<T>(this.context, body as WireDocument);
    } catch (error) {
      if (error instanceof HearthError && error.code === 'not_found') return missingSnapshot(this);
      throw error;
    }
  }

  /**
   * Creates or replaces the document (`PUT`). With `{merge: true}` only the given fields change
   * (`PATCH` with field paths); a merge into a missing document creates it.
   */
  async set(data: T | Record<string, unknown>, options: SetOptions = {}): Promise<DocumentSnapshot<T>> {
    if (options.merge) return this.mergeSet(data as Record<string, unknown>, options);
    const body = encodeDocumentData(data, 'set() data');
    return this.write('PUT', body, ifMatch(options.version));
  }

  /** Creates the document; throws `already_exists` if it exists (`PUT` with `If-None-Match: *`). */
  async create(data: T | Record<string, unknown>): Promise<DocumentSnapshot<T>> {
    const body = encodeDocumentData(data, 'create() data');
    return this.write('PUT', body, { 'if-none-match': '*' });
  }

  /**
   * Changes the named fields of an existing document (`PATCH`); throws `not_found` if it is
   * missing. Keys are field paths: `{"address.city": "Oslo"}` changes one nested field, while
   * `{address: {city: "Oslo"}}` replaces the whole `address` map.
   */
  async update(data: Record<string, unknown>, options: WriteOptions = {}): Promise<DocumentSnapshot<T>> {
    const body = encodeFieldUpdates(data, 'update() data');
    if (Object.keys(body).length === 0) throw invalidArgument('update() needs at least one field');
    return this.write('PATCH', body, ifMatch(options.version));
  }

  /** Deletes the document (succeeds when already absent). Subcollections are not deleted. */
  async delete(options: WriteOptions = {}): Promise<void> {
    await this.context.transport.request('DELETE', this.url(), { headers: ifMatch(options.version) });
  }

  /**
   * Listens to this document over the shared WebSocket: `next` gets the current snapshot
   * (`exists === false` when missing), then one per change. Returns the unsubscribe function.
   */
  onSnapshot(next: (snapshot: DocumentSnapshot<T>) => void, error?: (error: HearthError) => void): Unsubscribe {
    return this.context.realtime().listenDocument(this, next, error);
  }

  /** The path, so references print and serialise readably. */
  toString(): string {
    return this.path;
  }

  /** @internal */
  toJSON(): { $ref: string } {
    return { $ref: this.path };
  }

  private url(): string {
    return `/v1/docs/${encodePath(this.path)}`;
  }

  private async write(method: 'PUT' | 'PATCH', body: unknown, headers: Record<string, string>): Promise<DocumentSnapshot<T>> {
    const response = await this.context.transport.request(method, this.url(), { body, headers });
    return this.snapshotFromWriteResponse(response.body);
  }

  private snapshotFromWriteResponse(body: unknown): DocumentSnapshot<T> {
    if (body && typeof body === 'object' && typeof (body as WireDocument).path === 'string') {
      return snapshotFromWire<T>(this.context, body as WireDocument);
    }
    // The contract promises the document body; be lenient with an empty one.
    return missingSnapshot(this);
  }

  private async mergeSet(data: Record<string, unknown>, options: SetOptions): Promise<DocumentSnapshot<T>> {
    encodeDocumentData(stripDeletes(data), 'set() data'); // Validate everything up front.
    const updates = encodeFieldUpdates(flattenForMerge(data), 'set() data');
    const headers = ifMatch(options.version);
    try {
      return await this.write('PATCH', updates, headers);
    } catch (error) {
      // PATCH only updates; a merge into a missing document must create it. The contract has no
      // upsert-PATCH, so create with If-None-Match and, if someone else created it meanwhile,
      // merge again.
      if (!(error instanceof HearthError && error.code === 'not_found') || options.version !== undefined) throw error;
    }
    try {
      return await this.write('PUT', encodeDocumentData(stripDeletes(data), 'set() data'), { 'if-none-match': '*' });
    } catch (error) {
      if (!(error instanceof HearthError && error.code === 'already_exists')) throw error;
    }
    return this.write('PATCH', updates, headers);
  }
}

/** The address of a collection, e.g. `users/u1/posts`; also a query over all its documents. */
export class CollectionReference<T extends DocumentData = DocumentData> extends Query<T> {
  /** The full slash-separated path. */
  readonly path: string;
  /** The collection ID (last segment). */
  readonly id: string;

  /** @internal */
  constructor(context: ClientContext, path: string) {
    const segments = splitPath(path, 'collection');
    const id = segments[segments.length - 1]!;
    const parent = segments.length > 1 ? segments.slice(0, -1).join('/') : undefined;
    super(context, initialQueryState(id, parent, false));
    this.path = segments.join('/');
    this.id = id;
  }

  /** The document owning this subcollection, or null for a top-level collection. */
  get parent(): DocumentReference | null {
    return this.state.parent === undefined ? null : new DocumentReference(this.context, this.state.parent);
  }

  /** A reference to a document in this collection; without an ID, a new random 20-character one. */
  doc<U extends T = T>(id?: string): DocumentReference<U> {
    const documentId = id ?? autoId();
    checkId(documentId);
    return new DocumentReference<U>(this.context, `${this.path}/${documentId}`);
  }

  /** Creates a document with a server-assigned ID (`POST`) and returns its reference. */
  async add(data: T | Record<string, unknown>): Promise<DocumentReference<T>> {
    const body = encodeDocumentData(data, 'add() data');
    const response = await this.context.transport.request('POST', `/v1/docs/${encodePath(this.path)}`, { body });
    const path = pathOfCreated(response.body, response.headers.get('location'));
    if (!path) throw new HearthError('internal', 'the server did not say where add() created the document', { status: response.status });
    return new DocumentReference<T>(this.context, path);
  }
}

function ifMatch(version: number | undefined): Record<string, string> {
  if (version === undefined) return {};
  if (!Number.isInteger(version) || version < 0) throw invalidArgument('version must be a non-negative integer');
  return { 'if-match': `"${version}"` };
}

/** The document path from a create response: the body's `path`, else the `Location` header. */
function pathOfCreated(body: unknown, location: string | null): string | undefined {
  if (body && typeof body === 'object' && typeof (body as WireDocument).path === 'string') return (body as WireDocument).path;
  if (!location) return undefined;
  const pathname = location.includes('://') ? new URL(location).pathname : location.split('?')[0]!;
  const marker = '/v1/docs/';
  const at = pathname.indexOf(marker);
  if (at < 0) return undefined;
  return pathname
    .slice(at + marker.length)
    .split('/')
    .map(decodeURIComponent)
    .join('/');
}

/** Drops `deleteField()` entries at any depth: creating a document has no fields to delete. */
function stripDeletes(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (value instanceof FieldValue && value.kind === 'delete') continue;
    if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
      out[key] = stripDeletes(value as Record<string, unknown>);
    } else {
      out[key] = value;
    }
  }
  return out;
}
