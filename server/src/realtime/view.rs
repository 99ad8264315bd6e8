//! Per-subscription ordered views: what a subscriber currently holds, kept in query order and
//! within `offset`/`limit`, and the `added`/`modified`/`removed` changes (with Firestore's
//! sequential `oldIndex`/`newIndex`) that move a client from one state to the next.
//!
//! `result_at` computes the exact result of a subscription at an earlier version: it reads the
//! current result and rewinds the documents changed since, using their `before` states from the
//! change log. It serves the first snapshot, `resumeFrom` and refilling a limited view.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::protocol::{ChangeKind, WireChange};
use super::record::{ChangeRecord, DocChange, DocState};
use crate::docs::index::Direction;
use crate::docs::query::{compare_keys, order_key, project, Query};
use crate::docs::{Docs, DocsError};
use crate::model::{DocPath, Document, FieldPath, Value};
use crate::store::changelog;
use crate::store::ReadView;

/// Records read per step when rewinding.
const REWIND_BATCH: usize = 512;

/// What a subscription watches, validated.
#[derive(Debug)]
pub enum Spec {
    Doc(DocPath),
    Query {
        query: Box<Query>,
        order: Vec<(FieldPath, Direction)>,
    },
}

impl Spec {
    pub fn query(query: Query) -> Spec {
        let order = query.effective_order();
        Spec::Query {
            query: Box::new(query),
            order,
        }
    }

    /// The document's order key if it belongs in the result (documents: the path alone).
    fn key_of(&self, document: &Document) -> Option<Vec<Value>> {
        match self {
            Spec::Doc(path) => (document.path == *path).then(Vec::new),
            Spec::Query { query, order } => {
                if query.matches(document, order) {
                    order_key(document, order)
                } else {
                    None
                }
            }
        }
    }

    fn compare(&self, a: &[Value], b: &[Value]) -> Ordering {
        match self {
            Spec::Doc(_) => Ordering::Equal,
            Spec::Query { order, .. } => compare_keys(a, b, order),
        }
    }

    /// How many documents the view keeps: `offset + limit` (everything when unlimited).
    fn capacity(&self) -> Option<usize> {
        match self {
            Spec::Doc(_) => None,
            Spec::Query { query, .. } => query.limit.map(|l| l + query.offset),
        }
    }

    pub fn offset(&self) -> usize {
        match self {
            Spec::Doc(_) => 0,
            Spec::Query { query, .. } => query.offset,
        }
    }

    /// The JSON a client receives for a document (projected when the query selects fields).
    pub fn render(&self, state: &DocState) -> Arc<str> {
        match self {
            Spec::Query { query, .. } => match &query.select {
                Some(fields) => {
                    let document = &state.document;
                    document
                        .to_json_with_data(project(document, fields))
                        .to_string()
                        .into()
                }
                None => state.json.clone(),
            },
            Spec::Doc(_) => state.json.clone(),
        }
    }

    /// Does a change to `path` concern this subscription at all (cheap pre-check)?
    pub fn touches(&self, path: &DocPath) -> bool {
        match self {
            Spec::Doc(own) => own == path,
            Spec::Query { query, .. } => query.reads_from(path),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub key: Vec<Value>,
    pub state: Arc<DocState>,
}

/// The documents a subscriber holds: the first `offset + limit` matches, in query order.
#[derive(Debug, Default)]
pub struct View {
    pub entries: Vec<Entry>,
}

/// The outcome of applying one change.
pub struct Applied {
    pub changes: Vec<WireChange>,
    /// A document left a full limited view: documents beyond it may now belong, so the view
    /// must be refilled from the store (`result_at`).
    pub needs_refill: bool,
}

impl View {
    pub fn new(entries: Vec<Entry>) -> View {
        View { entries }
    }

    /// The documents the client sees (after `offset`).
    pub fn visible<'a>(&'a self, spec: &Spec) -> impl Iterator<Item = &'a Entry> {
        self.entries.iter().skip(spec.offset())
    }

    /// Where the view holds `path`. An up-to-date view holds exactly the before-state of a
    /// change (the state of the previous commit), so a binary search by its key finds it; a
    /// document that did not exist or did not match is not held.
    fn position(&self, spec: &Spec, path: &DocPath, before: Option<&Document>) -> Option<usize> {
        let key = spec.key_of(before?)?;
        let at = self
            .entries
            .partition_point(|e| spec.compare(&e.key, &key) == Ordering::Less);
        self.entries
            .get(at)
            .is_some_and(|e| e.state.document.path == *path)
            .then_some(at)
    }

    /// Applies one document change in place.
    pub fn apply(&mut self, spec: &Spec, change: &DocChange) -> Applied {
        let offset = spec.offset();
        let window_before: Option<Vec<Entry>> =
            (offset > 0).then(|| self.visible(spec).cloned().collect());
        let capacity = spec.capacity();
        let was_full = capacity.is_some_and(|c| self.entries.len() >= c);
        let mut changes = Vec::new();
        let mut needs_refill = false;
        let old = self.position(spec, &change.path, change.before.as_ref());
        let removed = old.map(|i| self.entries.remove(i));
        let new_key = change
            .after
            .as_ref()
            .and_then(|state| spec.key_of(&state.document).map(|key| (key, state.clone())));
        let inserted = match new_key {
            Some((key, state)) => {
                let at = self
                    .entries
                    .partition_point(|e| spec.compare(&e.key, &key) == Ordering::Less);
                // Beyond a full view's end: the document is not among the first `capacity`
                // unless the view lost one (then the refill decides).
                let beyond =
                    capacity.is_some_and(|c| at >= c) || (was_full && at >= self.entries.len());
                if beyond {
                    None
                } else {
                    self.entries.insert(
                        at,
                        Entry {
                            key,
                            state: state.clone(),
                        },
                    );
                    Some((at, state))
                }
            }
            None => None,
        };
        match (old, &removed, &inserted) {
            (Some(i), Some(_), Some((at, state))) => changes.push(WireChange {
                kind: ChangeKind::Modified,
                doc: spec.render(state),
                old_index: i as i64,
                new_index: *at as i64,
            }),
            (Some(i), Some(entry), None) => {
                changes.push(WireChange {
                    kind: ChangeKind::Removed,
                    doc: spec.render(&entry.state),
                    old_index: i as i64,
                    new_index: -1,
                });
                needs_refill = was_full && !matches!(spec, Spec::Doc(_));
            }
            (None, _, Some((at, state))) => changes.push(WireChange {
                kind: ChangeKind::Added,
                doc: spec.render(state),
                old_index: -1,
                new_index: *at as i64,
            }),
            _ => {}
        }
        if let Some(c) = capacity {
            while self.entries.len() > c {
                if let Some(last) = self.entries.pop() {
                    changes.push(WireChange {
                        kind: ChangeKind::Removed,
                        doc: spec.render(&last.state),
                        old_index: self.entries.len() as i64,
                        new_index: -1,
                    });
                }
            }
        }
        if let Some(before) = window_before {
            let after: Vec<Entry> = self.visible(spec).cloned().collect();
            changes = diff(spec, &before, &after);
        }
        Applied {
            changes,
            needs_refill,
        }
    }

    /// Replaces the view with `next`, returning the changes that lead there.
    pub fn replace(&mut self, spec: &Spec, next: Vec<Entry>) -> Vec<WireChange> {
        let before: Vec<Entry> = self.visible(spec).cloned().collect();
        self.entries = next;
        let after: Vec<Entry> = self.visible(spec).cloned().collect();
        diff(spec, &before, &after)
    }
}

/// Sequential changes turning `old` into `new`: removals from the back, then one pass in the new
/// order inserting or moving each document into place (each index refers to the list as left by
/// the change before it).
pub fn diff(spec: &Spec, old: &[Entry], new: &[Entry]) -> Vec<WireChange> {
    let mut changes = Vec::new();
    let mut current: Vec<&Entry> = old.iter().collect();
    let wanted: HashSet<&DocPath> = new.iter().map(|e| &e.state.document.path).collect();
    for index in (0..current.len()).rev() {
        if !wanted.contains(&current[index].state.document.path) {
            let entry = current.remove(index);
            changes.push(WireChange {
                kind: ChangeKind::Removed,
                doc: spec.render(&entry.state),
                old_index: index as i64,
                new_index: -1,
            });
        }
    }
    for (index, entry) in new.iter().enumerate() {
        let path = &entry.state.document.path;
        let found = current
            .iter()
            .skip(index)
            .position(|e| e.state.document.path == *path)
            .map(|p| p + index);
        match found {
            Some(at) => {
                let same = current[at].state.document.version == entry.state.document.version
                    && current[at].state.json == entry.state.json;
                if at != index || !same {
                    current.remove(at);
                    current.insert(index, entry);
                    changes.push(WireChange {
                        kind: ChangeKind::Modified,
                        doc: spec.render(&entry.state),
                        old_index: at as i64,
                        new_index: index as i64,
                    });
                }
            }
            None => {
                current.insert(index, entry);
                changes.push(WireChange {
                    kind: ChangeKind::Added,
                    doc: spec.render(&entry.state),
                    old_index: -1,
                    new_index: index as i64,
                });
            }
        }
    }
    changes
}

#[derive(Debug, thiserror::Error)]
pub enum ResultError {
    /// The change log no longer holds every commit since the requested version.
    #[error("the change log no longer covers version {0}")]
    NotCovered(u64),
    #[error(transparent)]
    Docs(#[from] DocsError),
}

impl From<crate::store::StoreError> for ResultError {
    fn from(err: crate::store::StoreError) -> Self {
        ResultError::Docs(err.into())
    }
}

/// The view of `spec` as of version `at` (at most the view's version), and the view's version.
/// `at = None` means the view's own version (no rewind).
pub fn result_at(
    docs: &Docs,
    view: &dyn ReadView,
    spec: &Spec,
    at: Option<u64>,
) -> Result<(Vec<Entry>, u64), ResultError> {
    let now = changelog::view_version(view)?;
    let at = at.unwrap_or(now).min(now);
    let mut rewound: HashMap<DocPath, Option<Document>> = HashMap::new();
    if at < now {
        if changelog::trimmed_through(view)? > at {
            return Err(ResultError::NotCovered(at));
        }
        let mut after = at;
        loop {
            let batch = changelog::records(view, after, now, REWIND_BATCH)?;
            let full = batch.len() == REWIND_BATCH;
            for (version, bytes) in &batch {
                after = *version;
                let record = ChangeRecord::decode(*version, bytes)
                    .map_err(|e| DocsError::Task(e.to_string()))?;
                for change in record.changes {
                    if spec.touches(&change.path) {
                        rewound.entry(change.path).or_insert(change.before);
                    }
                }
            }
            if !full {
                break;
            }
        }
    }
    let mut documents: Vec<Document> = match spec {
        Spec::Doc(path) => crate::docs::read_documents(view, std::slice::from_ref(path))?
            .into_iter()
            .flatten()
            .collect(),
        Spec::Query { query, .. } => {
            let enough = spec.capacity().map(|c| c + rewound.len());
            docs.matching_documents(view, query, enough)?
        }
    };
    documents.retain(|d| !rewound.contains_key(&d.path));
    documents.extend(rewound.into_values().flatten());
    let mut entries: Vec<Entry> = documents
        .into_iter()
        .filter_map(|document| {
            spec.key_of(&document).map(|key| Entry {
                key,
                state: DocState::new(document),
            })
        })
        .collect();
    entries.sort_by(|a, b| spec.compare(&a.key, &b.key));
    if let Some(capacity) = spec.capacity() {
        entries.truncate(capacity);
    }
    Ok((entries, now))
}
