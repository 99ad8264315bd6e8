/**
 * `@hearth/client` — the JavaScript/TypeScript SDK for Hearth.
 *
 * ```js
 * import { createClient, serverTimestamp } from '@hearth/client';
 * const hearth = createClient('http://127.0.0.1:8080', { session: 'memory' });
 * const ref = await hearth.collection('notes').add({ text: 'hi', at: serverTimestamp() });
 * ```
 *
 * @packageDocumentation
 */

export { createClient, HearthClient, type ClientOptions } from './client.js';
export { type FetchLike } from './http.js';
export { Auth, type AuthResult, type AuthStateListener, type User, type UserUpdate } from './auth.js';
export { memoryStore, localStore, type SessionStore, type SessionOption } from './session.js';
export { HearthError, type HearthErrorCode, type HearthErrorOptions } from './errors.js';
export {
  GeoPoint,
  Double,
  double,
  FieldValue,
  serverTimestamp,
  increment,
  arrayUnion,
  arrayRemove,
  deleteField,
  formatTimestamp,
  parseTimestamp,
  base64Encode,
  base64Decode,
  type FieldValueKind,
  type WireValue,
} from './values.js';
export { fieldPath, parseFieldPath, quoteSegment } from './fieldpath.js';
export { DocumentReference, CollectionReference, type SetOptions, type WriteOptions } from './references.js';
export {
  Query,
  Filter,
  FieldFilter,
  CompositeFilter,
  where,
  and,
  or,
  type WhereOperator,
  type OrderDirection,
  type AggregateSpec,
  type AggregateResult,
  type QueryBody,
} from './query.js';
export {
  DocumentSnapshot,
  QuerySnapshot,
  type DocumentChange,
  type DocumentChangeType,
  type DocumentData,
} from './snapshot.js';
export { WriteBatch, Transaction, MAX_BATCH_WRITES, type BatchResult, type Precondition, type TransactionOptions } from './batch.js';
export { type Unsubscribe, type WebSocketLike, type WebSocketConstructor, type RealtimeOptions } from './realtime.js';
export {
  Admin,
  AdminHooks,
  AdminRules,
  AdminIndexes,
  AdminRoles,
  AdminUsers,
  type HookEventName,
  type HookDefinition,
  type Hook,
  type HookDelivery,
  type DeliveryStatus,
  type DeliveriesOptions,
  type IndexField,
  type CompositeIndex,
  type RoleGrant,
  type RoleInheritance,
  type AdminUser,
  type NewUserFields,
  type AdminUserUpdate,
  type UserPage,
  type MintedToken,
} from './admin.js';
