// Compiled (not run) by `npm test`: the DESIGN §9 example must type-check against the shipped
// declarations in dist/, with skipLibCheck off so broken .d.ts files fail the build.
import {
  arrayRemove,
  arrayUnion,
  createClient,
  deleteField,
  HearthError,
  increment,
  serverTimestamp,
  GeoPoint,
  where,
  or,
  type DocumentSnapshot,
  type HearthErrorCode,
  type QuerySnapshot,
  type Unsubscribe,
  type User,
  type AdminUser,
  type CompositeIndex,
  type Hook,
  type HookDelivery,
  type RoleGrant,
} from '../../dist/index.js';

export async function designSection9(email: string, password: string): Promise<void> {
  const hearth = createClient('http://127.0.0.1:8080', { session: 'memory' });
  const { user } = await hearth.auth.signUp({ email, password });
  const stop: () => void = hearth.auth.onAuthStateChange((u: User | null) => void u);
  const current: User | null = hearth.auth.currentUser;
  const ref = await hearth.collection('notes').add({ text: 'hi', owner: user.uid, at: serverTimestamp() });
  const snap: DocumentSnapshot = await ref.get();
  const exists: boolean = snap.exists;
  const id: string = snap.id;
  const version: number | undefined = snap.version;
  const data = snap.data();
  await hearth.doc(`notes/${ref.id}`).set({ text: 'x', tags: arrayUnion('a'), old: arrayRemove('b') });
  await ref.update({ text: 'bye', n: increment(1), gone: deleteField() });
  await ref.delete();
  const q = hearth.collection('notes').where('owner', '==', user.uid).orderBy('at', 'desc').limit(10);
  const res: QuerySnapshot = await q.get();
  const sizes: [number, boolean] = [res.size, res.empty];
  const count: number = await q.count();
  const unsubscribe: Unsubscribe = q.onSnapshot(
    (s) => {
      s.docs.forEach((d) => d.data());
      s.docChanges().forEach((c) => [c.type, c.oldIndex, c.newIndex]);
    },
    (err: HearthError) => err.code,
  );
  ref.onSnapshot((s) => s.exists);
  const batch = hearth.batch();
  batch.set(ref, { place: new GeoPoint(1, 2) });
  await batch.commit();
  await hearth.runTransaction(async (tx) => {
    const d = await tx.get(ref);
    tx.update(ref, { seen: d.exists });
  });
  hearth.collection('p').where(or(where('a', '==', 1), where('b', 'in', [1, 2])));
  try {
    await ref.get();
  } catch (error) {
    if (error instanceof HearthError) {
      const code: HearthErrorCode = error.code;
      const known: HearthErrorCode = 'permission_denied';
      const future: HearthErrorCode = 'some_future_code';
      void [code, known, future, error.status, error.details];
    }
  }
  void [stop, current, exists, id, version, data, sizes, count, unsubscribe];
}

// The admin helpers (an extension, service key only) type-check with their wire shapes.
export async function adminHelpers(serviceKey: string): Promise<void> {
  const admin = createClient('http://127.0.0.1:8080', { serviceKey }).admin;
  const hook: Hook = await admin.hooks.put('validate', {
    events: ['document.create', 'document.update'],
    match: 'todos/{id}',
    mode: 'before',
    url: 'http://127.0.0.1:9000/validate',
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    timeoutMs: 3000,
    onFailure: 'reject',
  });
  const masked: string = hook.secret;
  const hooks: Hook[] = await admin.hooks.list();
  const deliveries: HookDelivery[] = await admin.hooks.deliveries('validate', { status: 'failed', limit: 10 });
  await admin.hooks.redeliver('validate', deliveries[0]!.id);
  await admin.hooks.delete('validate');
  const source: string | null = await admin.rules.get();
  await admin.rules.set(source ?? '');
  const index: CompositeIndex = await admin.indexes.create({ collection: 'posts', fields: [['owner', 'asc'], ['n', 'desc']] });
  await admin.indexes.drop(index.id);
  const grant: RoleGrant = await admin.roles.grant({ uid: 'u1', role: 'editor', domain: 'org1' });
  await admin.roles.inherit({ role: 'admin', inherits: 'editor' });
  const grants: RoleGrant[] = await admin.roles.grants({ uid: 'u1' });
  const user: AdminUser = await admin.users.create({ email: 'a@example.com', password: 'correct horse battery' });
  const disabled: boolean = (await admin.users.update(user.uid, { disabled: true })).disabled;
  const page = await admin.users.list({ limit: 10 });
  const next: string | undefined = page.nextPageToken;
  const { accessToken, expiresIn } = await admin.mintToken('u1', { role: 'admin' });
  void [masked, hooks, grant, grants, disabled, next, accessToken, expiresIn];
}
