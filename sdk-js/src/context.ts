/**
 * What references, queries and snapshots need from their client, as an interface so those
 * modules do not import the client (and so stay free of import cycles).
 *
 * @module
 * @internal
 */

import type { Transport } from './http.js';
import type { Realtime } from './realtime.js';
import type { DocumentReference } from './references.js';

/** @internal */
export interface ClientContext {
  readonly transport: Transport;
  /** The client's one realtime connection, created on first use. */
  realtime(): Realtime;
  /** Makes a reference (used when decoding `{"$ref": path}` values). */
  ref(path: string): DocumentReference;
}
