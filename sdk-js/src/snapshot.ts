/**
 * Snapshots: immutable views of a document or a query result at one version.
 *
 * @module
 */

import type { ClientContext } from './context.js';
import { getField } from './fieldpath.js';
import type { Query } from './query.js';
import type { DocumentReference } from './references.js';
import { decodeValue, parseTimestamp } from './values.js';

/** Document data as the SDK hands it out: plain objects with Hearth's typed values decoded. */
export type DocumentData = Record<string, any>;

/** The document body the server sends (REST responses, query results, realtime messages). @internal */
export interface WireDocument {
  path: string;
  id?: string;
  data?: Record<string, unknown>;
  createTime?: string;
  updateTime?: string;
  version?: number;
}

/** A document at one point in time; `exists` is false for a missing document. */
export class DocumentSnapshot<T extends DocumentData = DocumentData> {
  /** The document's ID (last path segment). */
  readonly id: string;
  /** The commit version that last wrote the document; undefined when it does not exist. */
  readonly version: number | undefined;
  /** When the document was created; undefined when it does not exist. */
  readonly createTime: Date | undefined;
  /** When the document was last written; undefined when it does not exist. */
  readonly updateTime: Date | undefined;
  private readonly decoded: T | undefined;

  /** @internal */
  constructor(
    /** The reference this snapshot belongs to. */
    readonly ref: DocumentReference<T>,
    decoded: T | undefined,
    meta: { version?: number; createTime?: Date; updateTime?: Date } = {},
  ) {
    this.id = ref.id;
    this.decoded = decoded;
    this.version = meta.version;
    this.createTime = meta.createTime;
    this.updateTime = meta.updateTime;
  }

  /** True when the document exists. */
  get exists(): boolean {
    return this.decoded !== undefined;
  }

  /** The full path, e.g. `users/u1/posts/p1`. */
  get path(): string {
    return this.ref.path;
  }

  /** The document's data, or undefined when it does not exist. The same object is returned each call: treat it as read-only. */
  data(): T | undefined {
    return this.decoded;
  }

  /** One field by field path (`address.city`, `` `first.name` ``), or undefined. */
  get(fieldPath: string): any {
    return this.decoded === undefined ? undefined : getField(this.decoded, fieldPath);
  }
}

/** Builds a snapshot from the server's document body. @internal */
export function snapshotFromWire<T extends DocumentData>(context: ClientContext, body: WireDocument): DocumentSnapshot<T> {
  const ref = context.ref(body.path) as unknown as DocumentReference<T>;
  const data = decodeValue(body.data ?? {}, (path) => context.ref(path)) as T;
  return new DocumentSnapshot<T>(ref, data, {
    ...(body.version !== undefined ? { version: body.version } : {}),
    ...(body.createTime ? { createTime: parseTimestamp(body.createTime) } : {}),
    ...(body.updateTime ? { updateTime: parseTimestamp(body.updateTime) } : {}),
  });
}

/** A missing document's snapshot. @internal */
export function missingSnapshot<T extends DocumentData>(ref: DocumentReference<T>): DocumentSnapshot<T> {
  return new DocumentSnapshot<T>(ref, undefined);
}

/** How a document entered, moved within or left a query result. */
export type DocumentChangeType = 'added' | 'modified' | 'removed';

/** One change between two consecutive query snapshots. */
export interface DocumentChange<T extends DocumentData = DocumentData> {
  type: DocumentChangeType;
  doc: DocumentSnapshot<T>;
  /** Index before the change; -1 for `added`. */
  oldIndex: number;
  /** Index after the change; -1 for `removed`. */
  newIndex: number;
}

/** The result of a query: ordered documents, plus the changes since the previous snapshot. */
export class QuerySnapshot<T extends DocumentData = DocumentData> {
  /** @internal */
  constructor(
    /** The query that produced this snapshot. */
    readonly query: Query<T>,
    /** The documents, in query order. */
    readonly docs: DocumentSnapshot<T>[],
    private readonly changes: DocumentChange<T>[] | null = null,
    /** Token for the next page (REST `get()` only), when the server says there are more results. */
    readonly nextPageToken: string | undefined = undefined,
    /** The realtime version this snapshot reflects (realtime snapshots only). */
    readonly version: number | undefined = undefined,
  ) {}

  get size(): number {
    return this.docs.length;
  }

  get empty(): boolean {
    return this.docs.length === 0;
  }

  forEach(callback: (doc: DocumentSnapshot<T>, index: number) => void): void {
    this.docs.forEach((doc, index) => callback(doc, index));
  }

  /**
   * The changes since the previous snapshot delivered to the same listener; for a first snapshot
   * (and for `get()` results) every document as `added`.
   */
  docChanges(): DocumentChange<T>[] {
    if (this.changes) return this.changes;
    return this.docs.map((doc, index) => ({ type: 'added' as const, doc, oldIndex: -1, newIndex: index }));
  }
}
