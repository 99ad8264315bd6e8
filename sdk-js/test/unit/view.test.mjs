import assert from 'node:assert/strict';
import { test } from 'node:test';
import { OrderedView } from '../../dist/view.js';

const doc = (id, version = 1) => ({ path: `p/${id}`, version });
const ids = (view) => view.docs.map((d) => d.path.slice(2)).join(',');
const summary = (changes) => changes.map((c) => `${c.type}:${c.doc.path.slice(2)}:${c.oldIndex}->${c.newIndex}`);

test('a first snapshot reports every document as added in order', () => {
  const view = new OrderedView();
  const changes = view.applySnapshot([doc('a'), doc('b')]);
  assert.equal(ids(view), 'a,b');
  assert.deepEqual(summary(changes), ['added:a:-1->0', 'added:b:-1->1']);
});

test('added, modified and removed apply at their indices, one after another', () => {
  const view = new OrderedView();
  view.applySnapshot([doc('a'), doc('b'), doc('c')]);
  const changes = view.applyChanges([
    { kind: 'added', doc: doc('x'), newIndex: 1 }, // a,x,b,c
    { kind: 'removed', doc: doc('c'), oldIndex: 3 }, // a,x,b
    { kind: 'modified', doc: doc('a', 2), oldIndex: 0, newIndex: 2 }, // x,b,a
    { kind: 'modified', doc: doc('b', 2), oldIndex: 1, newIndex: 1 }, // x,b,a (in place)
  ]);
  assert.equal(ids(view), 'x,b,a');
  assert.equal(view.docs[2].version, 2);
  assert.deepEqual(summary(changes), ['added:x:-1->1', 'removed:c:3->-1', 'modified:a:0->2', 'modified:b:1->1']);
});

test('a limited view stays at its limit: the pushed-out document is removed, the newcomer added', () => {
  // orderBy n desc, limit 3: a(9) b(7) c(5); d(8) arrives.
  const view = new OrderedView();
  view.applySnapshot([doc('a'), doc('b'), doc('c')]);
  view.applyChanges([
    { kind: 'removed', doc: doc('c'), oldIndex: 2 },
    { kind: 'added', doc: doc('d'), newIndex: 1 },
  ]);
  assert.equal(ids(view), 'a,d,b');
  // b drops below the window, c (back in) replaces it at the end.
  view.applyChanges([
    { kind: 'removed', doc: doc('b'), oldIndex: 2 },
    { kind: 'added', doc: doc('c', 3), newIndex: 2 },
  ]);
  assert.equal(ids(view), 'a,d,c');
});

test('wrong or missing indices are corrected by locating the document by path', () => {
  const view = new OrderedView();
  view.applySnapshot([doc('a'), doc('b'), doc('c')]);
  const changes = view.applyChanges([
    { kind: 'removed', doc: doc('b'), oldIndex: 0 },
    { kind: 'modified', doc: doc('c', 2) },
    { kind: 'added', doc: doc('z') },
  ]);
  assert.equal(ids(view), 'a,c,z');
  assert.deepEqual(summary(changes), ['removed:b:1->-1', 'modified:c:1->1', 'added:z:-1->2']);
});

test('repeated changes after a resume do not duplicate or crash', () => {
  const view = new OrderedView();
  view.applySnapshot([doc('a')]);
  view.applyChanges([{ kind: 'added', doc: doc('b'), newIndex: 1 }]);
  const again = view.applyChanges([
    { kind: 'added', doc: doc('b', 2), newIndex: 1 },
    { kind: 'removed', doc: doc('q'), oldIndex: 5 },
  ]);
  assert.equal(ids(view), 'a,b');
  assert.deepEqual(summary(again), ['modified:b:1->1']);
});

test('a removed change reports the last data the view held', () => {
  const view = new OrderedView();
  view.applySnapshot([{ path: 'p/a', version: 4, data: { n: 1 } }]);
  const [change] = view.applyChanges([{ kind: 'removed', doc: { path: 'p/a' }, oldIndex: 0 }]);
  assert.deepEqual(change.doc.data, { n: 1 });
});

test('a later snapshot (resume beyond the change log) is diffed against the view', () => {
  const view = new OrderedView();
  view.applySnapshot([doc('a'), doc('b'), doc('c'), doc('d')]);
  const changes = view.applySnapshot([doc('d'), doc('a'), doc('e'), doc('c', 2)]);
  assert.equal(ids(view), 'd,a,e,c');
  assert.deepEqual(summary(changes), ['removed:b:1->-1', 'modified:d:2->0', 'added:e:-1->2', 'modified:c:3->3']);
  // Replaying the changes from the old list gives the new one: indices are sequential.
  const replay = ['a', 'b', 'c', 'd'];
  for (const change of changes) {
    const id = change.doc.path.slice(2);
    if (change.oldIndex >= 0) replay.splice(change.oldIndex, 1);
    if (change.newIndex >= 0) replay.splice(change.newIndex, 0, id);
  }
  assert.deepEqual(replay, ['d', 'a', 'e', 'c']);
});

test('an identical later snapshot yields no changes', () => {
  const view = new OrderedView();
  view.applySnapshot([doc('a'), doc('b')]);
  assert.deepEqual(view.applySnapshot([doc('a'), doc('b')]), []);
});
