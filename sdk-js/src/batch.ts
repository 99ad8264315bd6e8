/**
 * Atomic writes (`POST /v1/batch`, DESIGN §3) and optimistic transactions built on them: a
 * transaction reads documents, remembers their versions, and commits one batch whose writes carry
 * `{"version": N}` (or `{"exists": false}`) preconditions — plus `verify` entries for documents it
 * only read — retrying the whole function when another writer got there first.
 *
 * @module
 */

import type { ClientContext } from './context.js';
import { HearthError, invalidArgument } from './errors.js';
import { flattenForMerge } from './fieldpath.js';
import { DocumentReference, type SetOptions } from './references.js';
import type { DocumentData, DocumentSnapshot } from './snapshot.js';
import { encodeDocumentData, encodeFieldUpdates, FieldValue, type WireValue } from './values.js';

/** A condition a batch write checks on the stored document before anything is written. */
export type Precondition = { exists: boolean } | { version: number };

/** One entry of a batch body. @internal */
export interface BatchWrite {
  op: 'set' | 'create' | 'update' | 'delete' | 'verify';
  path: string;
  data?: { [key: string]: WireValue };
  precondition?: Precondition;
}

/** The answer to a committed batch. */
export interface BatchResult {
  /** The commit version shared by every write of the batch. */
  version: number;
  /** Each written document's path and new version, in request order. */
  results: { path: string; version: number }[];
}

/** The server's limit on writes per batch. */
export const MAX_BATCH_WRITES = 500;

/** Collects writes and commits them all-or-nothing (`hearth.batch()`). */
export class WriteBatch {
  /** @internal */
  protected readonly writes: BatchWrite[] = [];
  private committed = false;

  /** @internal */
  constructor(protected readonly context: ClientContext) {}

  /**
   * Creates or replaces a document. `{merge: true}` is not available in a plain batch (the batch
   * contract has no merge-upsert); use `update()` for existing documents, or a transaction.
   */
  set(ref: DocumentReference<any>, data: DocumentData, options: SetOptions & { precondition?: Precondition } = {}): this {
    if (options.merge) {
      throw invalidArgument('batch.set(…, {merge: true}) is not supported: use batch.update() for an existing document, or runTransaction()');
    }
    return this.push({ op: 'set', path: this.pathOf(ref), data: encodeDocumentData(data, 'batch set() data') }, preconditionOf(options));
  }

  /** Creates a document; the batch fails with `already_exists` if it exists. */
  create(ref: DocumentReference<any>, data: DocumentData): this {
    return this.push({ op: 'create', path: this.pathOf(ref), data: encodeDocumentData(data, 'batch create() data') }, undefined);
  }

  /** Updates field paths of an existing document (like `ref.update()`). */
  update(ref: DocumentReference<any>, data: Record<string, unknown>, options: { version?: number; precondition?: Precondition } = {}): this {
    const body = encodeFieldUpdates(data, 'batch update() data');
    if (Object.keys(body).length === 0) throw invalidArgument('update() needs at least one field');
    return this.push({ op: 'update', path: this.pathOf(ref), data: body }, preconditionOf(options));
  }

  /** Deletes a document. */
  delete(ref: DocumentReference<any>, options: { version?: number; precondition?: Precondition } = {}): this {
    return this.push({ op: 'delete', path: this.pathOf(ref) }, preconditionOf(options));
  }

  /** Writes nothing; fails the batch unless the precondition holds (`op: "verify"`). */
  verify(ref: DocumentReference<any>, precondition: Precondition): this {
    return this.push({ op: 'verify', path: this.pathOf(ref) }, precondition);
  }

  /** Sends the batch. A batch can be committed once. */
  async commit(): Promise<BatchResult> {
    if (this.committed) throw new HearthError('failed_precondition', 'this batch was already committed', { status: 0 });
    this.committed = true;
    return commitWrites(this.context, this.writes);
  }

  /** @internal */
  protected push(write: BatchWrite, precondition: Precondition | undefined): this {
    if (this.committed) throw new HearthError('failed_precondition', 'this batch was already committed', { status: 0 });
    if (this.writes.length >= MAX_BATCH_WRITES) throw invalidArgument(`a batch holds at most ${MAX_BATCH_WRITES} writes`);
    if (precondition) write.precondition = precondition;
    this.writes.push(write);
    return this;
  }

  /** @internal */
  protected pathOf(ref: DocumentReference<any>): string {
    if (!(ref instanceof DocumentReference)) throw invalidArgument('batch writes take a DocumentReference');
    if (ref.context !== this.context) throw invalidArgument('the reference belongs to another client');
    return ref.path;
  }
}

/** @internal */
export async function commitWrites(context: ClientContext, writes: BatchWrite[]): Promise<BatchResult> {
  const { body } = await context.transport.request('POST', '/v1/batch', { body: { writes } });
  return {
    version: Number(body?.version),
    results: Array.isArray(body?.results) ? body.results : [],
  };
}

function preconditionOf(options: { version?: number; precondition?: Precondition }): Precondition | undefined {
  if (options.precondition) return options.precondition;
  if (options.version !== undefined) {
    if (!Number.isInteger(options.version) || options.version < 0) throw invalidArgument('version must be a non-negative integer');
    return { version: options.version };
  }
  return undefined;
}

/** What a transaction saw when it read a document: its version, or null when missing. */
type ReadVersion = number | null;

/**
 * The handle passed to a `runTransaction` function: read with `get()` first, then queue writes.
 * Nothing is written until the function returns.
 */
export class Transaction extends WriteBatch {
  private readonly reads = new Map<string, ReadVersion>();

  /** Reads a document and records its version for the commit's precondition. */
  async get<T extends DocumentData>(ref: DocumentReference<T>): Promise<DocumentSnapshot<T>> {
    const path = this.pathOf(ref);
    if (this.writes.length > 0) throw invalidArgument('a transaction must do all its reads before its writes');
    const snapshot = await ref.get();
    const version: ReadVersion = snapshot.exists ? (snapshot.version ?? null) : null;
    // Keep the first version seen: if a re-read differs, the commit must fail, and it will.
    if (!this.reads.has(path)) this.reads.set(path, version);
    return snapshot;
  }

  /**
   * Sets a document. Unlike a plain batch, a transaction can `{merge: true}` a document it has
   * read: into an existing one as a field-path update, into a missing one as a create.
   */
  override set(ref: DocumentReference<any>, data: DocumentData, options: SetOptions & { precondition?: Precondition } = {}): this {
    if (!options.merge) return super.set(ref, data, options);
    const path = this.pathOf(ref);
    if (!this.reads.has(path)) throw invalidArgument('in a transaction, set(…, {merge: true}) needs the document to be read first with tx.get()');
    if (this.reads.get(path) === null) {
      return this.push({ op: 'create', path, data: encodeDocumentData(withoutDeletes(data), 'transaction set() data') }, undefined);
    }
    return this.push({ op: 'update', path, data: encodeFieldUpdates(flattenForMerge(data), 'transaction set() data') }, preconditionOf(options));
  }

  /** The batch to commit: writes with read versions as preconditions, plus `verify` for reads. @internal */
  buildWrites(): BatchWrite[] {
    const guarded = new Set<string>();
    const writes = this.writes.map((write) => {
      const copy = { ...write };
      if (!guarded.has(write.path) && this.reads.has(write.path)) {
        guarded.add(write.path);
        copy.precondition ??= readPrecondition(this.reads.get(write.path)!);
      }
      return copy;
    });
    for (const [path, version] of this.reads) {
      if (!guarded.has(path)) writes.push({ op: 'verify', path, precondition: readPrecondition(version) });
    }
    return writes;
  }

  /** @internal */
  override async commit(): Promise<BatchResult> {
    throw invalidArgument('a transaction commits when its function returns; do not call commit()');
  }
}

function readPrecondition(version: ReadVersion): Precondition {
  return version === null ? { exists: false } : { version };
}

function withoutDeletes(data: DocumentData): DocumentData {
  const out: DocumentData = {};
  for (const [key, value] of Object.entries(data)) {
    if (value instanceof FieldValue && value.kind === 'delete') continue;
    out[key] = value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype ? withoutDeletes(value) : value;
  }
  return out;
}

/** Options of `runTransaction`. */
export interface TransactionOptions {
  /** Attempts in all, including the first (default 5). */
  maxAttempts?: number;
  /** First retry delay cap in ms (default 100); doubles per attempt, with jitter. */
  backoffBaseMs?: number;
}

/** Codes that mean "someone else wrote first": the transaction is run again. */
const RETRYABLE = new Set(['aborted', 'failed_precondition']);

/** @internal */
export async function runTransaction<R>(
  context: ClientContext,
  body: (transaction: Transaction) => Promise<R>,
  options: TransactionOptions = {},
): Promise<R> {
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const base = options.backoffBaseMs ?? 100;
  for (let attempt = 1; ; attempt++) {
    const transaction = new Transaction(context);
    const result = await body(transaction);
    const writes = transaction.buildWrites();
    if (writes.length === 0) return result;
    try {
      await commitWrites(context, writes);
      return result;
    } catch (error) {
      if (!(error instanceof HearthError) || !RETRYABLE.has(error.code) || attempt >= maxAttempts) throw error;
      const cap = base * 2 ** (attempt - 1);
      await new Promise((resolve) => setTimeout(resolve, cap / 2 + Math.random() * (cap / 2)));
    }
  }
}
