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
