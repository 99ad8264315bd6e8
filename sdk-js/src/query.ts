/**
 * The query builder: immutable `Query` objects that compile to the body of `POST /v1/query`
 * (DESIGN §3), answer `get()`, aggregates, pagination and realtime `onSnapshot`.
 *
 * @module
 */

import type { ClientContext } from './context.js';
import { invalidArgument } from './errors.js';
import { getField } from './fieldpath.js';
import type { Unsubscribe } from './realtime.js';
import { DocumentSnapshot, QuerySnapshot, snapshotFromWire, type DocumentData, type WireDocument } from './snapshot.js';
import { encodeQueryValue, type WireValue } from './values.js';

/** Comparison operators of `where` (DESIGN §3). */
export type WhereOperator =
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | 'in'
  | 'not-in'
  | 'array-contains'
  | 'array-contains-any';

const OPERATORS = new Set<string>(['==', '!=', '<', '<=', '>', '>=', 'in', 'not-in', 'array-contains', 'array-contains-any']);

/** Sort direction. */
export type OrderDirection = 'asc' | 'desc';

/** A condition usable in `query.where(filter)`, `and(...)` and `or(...)`. */
export abstract class Filter {
  /** @internal */
  abstract toWire(): WireValue;
}

/** `field op value` — written on the wire as the bare triple `[field, op, value]`. */
export class FieldFilter extends Filter {
  /** @internal */
  constructor(
    readonly field: string,
    readonly op: WhereOperator,
    readonly value: unknown,
  ) {
    super();
    if (typeof field !== 'string' || field === '') throw invalidArgument('where(): the field path must be a non-empty string');
    if (!OPERATORS.has(op)) throw invalidArgument(`where(): unknown operator ${JSON.stringify(op)}`);
    if ((op === 'in' || op === 'not-in' || op === 'array-contains-any') && !Array.isArray(value)) {
      throw invalidArgument(`where(): "${op}" needs an array of values`);
    }
  }

  /** @internal */
  toWire(): WireValue {
    return [this.field, this.op, encodeQueryValue(this.value, `where(${this.field} ${this.op})`)];
  }
}

/** `{"and": [...]}` or `{"or": [...]}` of other filters. */
export class CompositeFilter extends Filter {
  /** @internal */
  constructor(
    readonly kind: 'and' | 'or',
    readonly filters: readonly Filter[],
  ) {
    super();
    if (filters.length === 0) throw invalidArgument(`${kind}() needs at least one filter`);
    for (const filter of filters) {
      if (!(filter instanceof Filter)) throw invalidArgument(`${kind}() takes filters made by where(), and() or or()`);
    }
  }

  /** @internal */
  toWire(): WireValue {
    return { [this.kind]: this.filters.map((filter) => filter.toWire()) };
  }
}

/** A standalone condition for `and()` / `or()`: `or(where('a', '==', 1), where('b', '>', 2))`. */
export function where(field: string, op: WhereOperator, value: unknown): FieldFilter {
  return new FieldFilter(field, op, value);
}

/** All of the filters must hold. */
export function and(...filters: Filter[]): CompositeFilter {
  return new CompositeFilter('and', filters);
}

/** At least one of the filters must hold. */
export function or(...filters: Filter[]): CompositeFilter {
  return new CompositeFilter('or', filters);
}

/** The aggregates of `query.aggregate()`; the answer has keys `count`, `sum_<field>`, `avg_<field>`. */
export interface AggregateSpec {
  count?: boolean;
  sum?: string[];
  avg?: string[];
}

/** The server's aggregate answer, e.g. `{count: 3, sum_n: 12, avg_n: 4}`. */
export type AggregateResult = Record<string, number | null>;

/** A cursor bound: either orderBy values (then optionally the doc id) or a snapshot. */
interface Bound {
  kind: 'startAt' | 'startAfter' | 'endAt' | 'endBefore';
  values: unknown[] | DocumentSnapshot;
}

/** The immutable state of a query. @internal */
export interface QueryState {
  collectionId: string;
  parent: string | undefined;
  allDescendants: boolean;
  filters: Filter[];
  orderBy: [string, OrderDirection][];
  limit: number | undefined;
  offset: number | undefined;
  start: Bound | undefined;
  end: Bound | undefined;
  select: string[] | undefined;
}

/** The JSON body of `POST /v1/query`. */
export interface QueryBody {
  from: string;
  parent?: string;
  allDescendants?: boolean;
  where?: WireValue;
  orderBy?: [string, OrderDirection][];
  limit?: number;
  offset?: number;
  pageToken?: string;
  startAt?: WireValue[];
  startAfter?: WireValue[];
  endAt?: WireValue[];
  endBefore?: WireValue[];
  select?: string[];
  aggregate?: { count?: boolean; sum?: string[]; avg?: string[] };
}

/**
 * A query over one collection (or, from `collectionGroup`, every collection with that ID). Each
 * builder method returns a new query; the original is unchanged.
 */
export class Query<T extends DocumentData = DocumentData> {
  /** @internal */
  constructor(
    /** @internal */
    protected readonly context: ClientContext,
    /** @internal */
    readonly state: QueryState,
  ) {}

  /** Adds a condition: `where('n', '>', 5)` or `where(or(where(...), where(...)))`. All are AND-ed. */
  where(field: string, op: WhereOperator, value: unknown): Query<T>;
  where(filter: Filter): Query<T>;
  where(fieldOrFilter: string | Filter, op?: WhereOperator, value?: unknown): Query<T> {
    const filter = fieldOrFilter instanceof Filter ? fieldOrFilter : new FieldFilter(fieldOrFilter, op as WhereOperator, value);
    return this.with({ filters: [...this.state.filters, filter] });
  }

  /** Sorts by a field; later calls break ties of earlier ones. */
  orderBy(field: string, direction: OrderDirection = 'asc'): Query<T> {
    if (direction !== 'asc' && direction !== 'desc') throw invalidArgument(`orderBy(): direction must be "asc" or "desc"`);
    return this.with({ orderBy: [...this.state.orderBy, [field, direction]] });
  }

  /** At most `n` results (per page). */
  limit(n: number): Query<T> {
    if (!Number.isInteger(n) || n < 0) throw invalidArgument('limit() needs a non-negative integer');
    return this.with({ limit: n });
  }

  /** Skips the first `n` results. */
  offset(n: number): Query<T> {
    if (!Number.isInteger(n) || n < 0) throw invalidArgument('offset() needs a non-negative integer');
    return this.with({ offset: n });
  }

  /** Starts at the given orderBy values (then doc id), or at a snapshot's position. */
  startAt(...values: unknown[]): Query<T> {
    return this.with({ start: bound('startAt', values) });
  }

  /** Starts after the given orderBy values (then doc id), or after a snapshot. */
  startAfter(...values: unknown[]): Query<T> {
    return this.with({ start: bound('startAfter', values) });
  }

  /** Ends at the given orderBy values (then doc id), or at a snapshot. */
  endAt(...values: unknown[]): Query<T> {
    return this.with({ end: bound('endAt', values) });
  }

  /** Ends before the given orderBy values (then doc id), or before a snapshot. */
  endBefore(...values: unknown[]): Query<T> {
    return this.with({ end: bound('endBefore', values) });
  }

  /** Returns only these fields of each document (a projection). */
  select(...fields: string[]): Query<T> {
    return this.with({ select: fields });
  }

  /** The body this query sends to `POST /v1/query` (useful for debugging and `explain`). */
  toJSON(): QueryBody {
    const state = this.state;
    const body: QueryBody = { from: state.collectionId };
    if (state.parent !== undefined) body.parent = state.parent;
    if (state.allDescendants) body.allDescendants = true;
    if (state.filters.length === 1) body.where = state.filters[0]!.toWire();
    else if (state.filters.length > 1) body.where = { and: state.filters.map((filter) => filter.toWire()) };
    if (state.orderBy.length > 0) body.orderBy = state.orderBy.map(([field, direction]) => [field, direction]);
    if (state.limit !== undefined) body.limit = state.limit;
    if (state.offset !== undefined) body.offset = state.offset;
    if (state.start) body[state.start.kind as 'startAt' | 'startAfter'] = this.boundValues(state.start);
    if (state.end) body[state.end.kind as 'endAt' | 'endBefore'] = this.boundValues(state.end);
    if (state.select) body.select = [...state.select];
    return body;
  }

  /** Runs the query once (`POST /v1/query`). */
  async get(options: { pageToken?: string } = {}): Promise<QuerySnapshot<T>> {
    const body: QueryBody = this.toJSON();
    if (options.pageToken) body.pageToken = options.pageToken;
    const { body: response } = await this.context.transport.request('POST', '/v1/query', { body });
    const documents: WireDocument[] = Array.isArray(response?.documents) ? response.documents : [];
    const docs = documents.map((document) => snapshotFromWire<T>(this.context, document));
    return new QuerySnapshot<T>(this, docs, null, typeof response?.nextPageToken === 'string' ? response.nextPageToken : undefined);
  }

  /**
   * Iterates page by page, following `nextPageToken` until the server sends none:
   * `for await (const page of query.limit(100).pages()) { ... }`.
   */
  async *pages(): AsyncGenerator<QuerySnapshot<T>, void, undefined> {
    let pageToken: string | undefined;
    do {
      const page: QuerySnapshot<T> = await this.get(pageToken ? { pageToken } : {});
      yield page;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  /** Counts the matching documents on the server. */
  async count(): Promise<number> {
    const result = await this.aggregate({ count: true });
    return Number(result.count ?? 0);
  }

  /** Sums a numeric field over the matching documents. */
  async sum(field: string): Promise<number> {
    const result = await this.aggregate({ sum: [field] });
    return Number(result[`sum_${field}`] ?? 0);
  }

  /** Averages a numeric field over the matching documents; null when none has a number there. */
  async avg(field: string): Promise<number | null> {
    const result = await this.aggregate({ avg: [field] });
    const value = result[`avg_${field}`];
    return value === undefined || value === null ? null : Number(value);
  }

  /** Several aggregates in one round trip: `{count: true, sum: ['n'], avg: ['n']}`. */
  async aggregate(spec: AggregateSpec): Promise<AggregateResult> {
    const aggregate: QueryBody['aggregate'] = {};
    if (spec.count) aggregate.count = true;
    if (spec.sum?.length) aggregate.sum = [...spec.sum];
    if (spec.avg?.length) aggregate.avg = [...spec.avg];
    if (Object.keys(aggregate).length === 0) throw invalidArgument('aggregate() needs count, sum or avg');
    const body = { ...this.toJSON(), aggregate };
    const { body: response } = await this.context.transport.request('POST', '/v1/query', { body });
    return (response?.aggregates ?? {}) as AggregateResult;
  }

  /** The server's plan for this query (`POST /v1/query/explain`): which index it would use. */
  async explain(): Promise<Record<string, unknown>> {
    const { body } = await this.context.transport.request('POST', '/v1/query/explain', { body: this.toJSON() });
    return (body ?? {}) as Record<string, unknown>;
  }

  /**
   * Listens to the query's results over the shared WebSocket: `next` gets a full snapshot first,
   * then one per change; `docChanges()` says what changed. An `error` (e.g. `permission_denied`)
   * ends the listener. Returns the unsubscribe function.
   */
  onSnapshot(next: (snapshot: QuerySnapshot<T>) => void, error?: (error: import('./errors.js').HearthError) => void): Unsubscribe {
    return this.context.realtime().listenQuery(this, next, error);
  }

  /** @internal */
  protected with(patch: Partial<QueryState>): Query<T> {
    return new Query<T>(this.context, { ...this.state, ...patch });
  }

  private boundValues(cursor: Bound): WireValue[] {
    const where = `${cursor.kind}()`;
    if (cursor.values instanceof DocumentSnapshot) {
      const snapshot = cursor.values;
      if (!snapshot.exists) throw invalidArgument(`${where}: the snapshot's document does not exist`);
      // Position = the orderBy fields' values, then the document ID as the final tie-breaker.
      const values = this.state.orderBy.map(([field]) => {
        const value = getField(snapshot.data(), field);
        if (value === undefined) throw invalidArgument(`${where}: the snapshot has no field ${JSON.stringify(field)} to order by`);
        return encodeQueryValue(value, where);
      });
      values.push(snapshot.id);
      return values;
    }
    return cursor.values.map((value, index) => encodeQueryValue(value, `${where}[${index}]`));
  }
}

function bound(kind: Bound['kind'], values: unknown[]): Bound {
  if (values.length === 1 && values[0] instanceof DocumentSnapshot) return { kind, values: values[0] };
  if (values.length === 0) throw invalidArgument(`${kind}() needs at least one value or a snapshot`);
  return { kind, values };
}

/** A fresh query state for a collection. @internal */
export function initialQueryState(collectionId: string, parent: string | undefined, allDescendants: boolean): QueryState {
  return {
    collectionId,
    parent,
    allDescendants,
    filters: [],
    orderBy: [],
    limit: undefined,
    offset: undefined,
    start: undefined,
    end: undefined,
    select: undefined,
  };
}
