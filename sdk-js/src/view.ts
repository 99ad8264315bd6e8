/**
 * The ordered client-side view of a realtime query: starts from a `snapshot` message and applies
 * `changes` messages (DESIGN §5) so the result stays in query order without re-reading it.
 *
 * Changes are applied one after another, and each change's indices refer to the list as left by
 * the change before it (Firestore's `docChanges()` convention). The view also re-locates a
 * document by path when an index does not match, so a resumed stream that repeats or skips a
 * change cannot corrupt it.
 *
 * @module
 * @internal
 */

import type { DocumentChangeType } from './snapshot.js';

/** What the view stores per document: anything with a path and (optionally) a version. */
export interface ViewDocument {
  path: string;
  version?: number;
}

/** One entry of a `changes` message. */
export interface WireChange<D extends ViewDocument = ViewDocument> {
  kind: DocumentChangeType;
  doc: D;
  oldIndex?: number;
  newIndex?: number;
}

/** A change as applied to the view (indices as they really were). */
export interface AppliedChange<D extends ViewDocument = ViewDocument> {
  type: DocumentChangeType;
  /** The document after the change; for `removed`, the last version the view held. */
  doc: D;
  oldIndex: number;
  newIndex: number;
}

export class OrderedView<D extends ViewDocument = ViewDocument> {
  private items: D[] = [];
  private initialised = false;

  /** The documents, in query order (do not mutate). */
  get docs(): readonly D[] {
    return this.items;
  }

  /** True once a snapshot has been applied. */
  get hasSnapshot(): boolean {
    return this.initialised;
  }

  /**
   * Replaces the view with a full result. The first time every document is `added`; after that
   * (a snapshot sent on resume) the returned changes are the difference from the previous view.
   */
  applySnapshot(documents: readonly D[]): AppliedChange<D>[] {
    if (!this.initialised) {
      this.initialised = true;
      this.items = [...documents];
      return this.items.map((doc, index) => ({ type: 'added', doc, oldIndex: -1, newIndex: index }));
    }
    return this.diffTo(documents);
  }

  /** Applies the entries of a `changes` message in order and returns what they did. */
  applyChanges(changes: readonly WireChange<D>[]): AppliedChange<D>[] {
    this.initialised = true;
    const applied: AppliedChange<D>[] = [];
    for (const change of changes) {
      const result = this.applyOne(change);
      if (result) applied.push(result);
    }
    return applied;
  }

  private applyOne(change: WireChange<D>): AppliedChange<D> | null {
    const oldIndex = this.locate(change.doc.path, change.oldIndex);
    switch (change.kind) {
      case 'removed': {
        if (oldIndex < 0) return null; // Already gone (e.g. a change repeated across a resume).
        const [previous] = this.items.splice(oldIndex, 1);
        return { type: 'removed', doc: previous!, oldIndex, newIndex: -1 };
      }
      case 'added':
      case 'modified': {
        if (oldIndex >= 0) this.items.splice(oldIndex, 1);
        const fallback = oldIndex >= 0 ? oldIndex : this.items.length;
        const newIndex = clamp(change.newIndex ?? fallback, 0, this.items.length);
        this.items.splice(newIndex, 0, change.doc);
        // An `added` for a document the view already holds is a modification of it, and vice versa.
        const type: DocumentChangeType = oldIndex >= 0 ? 'modified' : 'added';
        return { type, doc: change.doc, oldIndex, newIndex };
      }
      default:
        return null;
    }
  }

  /** Finds a document, trusting `hint` only when it points at the right path. */
  private locate(path: string, hint: number | undefined): number {
    if (hint !== undefined && hint >= 0 && hint < this.items.length && this.items[hint]!.path === path) return hint;
    return this.items.findIndex((doc) => doc.path === path);
  }

  /**
   * Sequential changes that turn the current view into `next`: removals from the back first, then
   * one pass in the new order that inserts or moves each document into place.
   */
  private diffTo(next: readonly D[]): AppliedChange<D>[] {
    const changes: AppliedChange<D>[] = [];
    const nextPaths = new Set(next.map((doc) => doc.path));
    for (let index = this.items.length - 1; index >= 0; index--) {
      const doc = this.items[index]!;
      if (!nextPaths.has(doc.path)) {
        this.items.splice(index, 1);
        changes.push({ type: 'removed', doc, oldIndex: index, newIndex: -1 });
      }
    }
    next.forEach((doc, newIndex) => {
      const oldIndex = this.items.findIndex((item) => item.path === doc.path);
      if (oldIndex < 0) {
        this.items.splice(newIndex, 0, doc);
        changes.push({ type: 'added', doc, oldIndex: -1, newIndex });
        return;
      }
      const previous = this.items[oldIndex]!;
      this.items.splice(oldIndex, 1);
      this.items.splice(newIndex, 0, doc);
      if (oldIndex !== newIndex || previous.version !== doc.version) {
        changes.push({ type: 'modified', doc, oldIndex, newIndex });
      }
    });
    return changes;
  }
}

function clamp(value: number, low: number, high: number): number {
  return Math.min(Math.max(value, low), high);
}
