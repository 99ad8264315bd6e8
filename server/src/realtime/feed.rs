//! Shared query views ("feeds"). Every query subscription with the same query — whoever holds
//! it: a query subscription's rules are proven once, when it starts — watches the same result,
//! so the hub keeps one view per distinct query and computes and renders each commit's changes
//! once for all of them. A subscriber then costs one queued `Arc` and one frame per commit,
//! not a view update and a JSON rendering of its own.
//!
//! A feed's view always equals its query's result as of the last commit the hub fanned out (or
//! its first read, when that is newer): the hub routes every commit that may concern the feed
//! to it in commit order, and a commit that cannot concern it leaves the result unchanged.

use std::sync::Arc;

use super::index::{ConnId, Placement};
use super::mailbox::Mailbox;
use super::protocol;
use super::record::ChangeRecord;
use super::view::{diff, result_at, Entry, Spec, View};
use crate::docs::Docs;
use crate::store::SharedStore;

pub type FeedId = u64;

/// A subscription waiting for its first message from a feed.
pub struct Joiner {
    pub connection: ConnId,
    pub local: u32,
    /// The store's version when the subscription's access was checked: its first message
    /// reflects at least this version, so a client sees its own acknowledged writes.
    pub at_least: u64,
    /// `resumeFrom` covered by the change log: the result the client held then. The first
    /// message is then the changes from it, not a snapshot.
    pub resume: Option<Vec<Entry>>,
}

/// A subscription receiving a feed's changes, with its connection's mailbox at hand.
pub struct Member {
    pub connection: ConnId,
    pub local: u32,
    pub mailbox: Arc<Mailbox>,
}

/// The first message for a joiner.
pub enum Opening {
    Snapshot { version: u64, docs: Arc<str> },
    Changes { version: u64, changes: Arc<str> },
}

/// A feed could not follow its query any more; its subscriptions end.
#[derive(Debug)]
pub struct FeedFailed(pub String);

enum FeedState {
    /// The first result is still being read: commits wait here.
    Pending(Vec<Arc<ChangeRecord>>),
    Live,
}

pub struct Feed {
    /// The query's identity: subscriptions with the same key share this feed.
    pub key: String,
    pub spec: Arc<Spec>,
    pub placement: Placement,
    view: View,
    /// The last commit applied (or the first read's version).
    version: u64,
    state: FeedState,
    /// Subscriptions receiving every change.
    pub members: Vec<Member>,
    /// Subscriptions waiting for their first message.
    pub waiting: Vec<(Joiner, Arc<Mailbox>)>,
    /// The snapshot's `docs` array at a version, rendered once for every joiner at it.
    snapshot: Option<(u64, Arc<str>)>,
}

impl Feed {
    pub fn new(key: String, spec: Arc<Spec>, placement: Placement) -> Feed {
        Feed {
            key,
            spec,
            placement,
            view: View::default(),
            version: 0,
            state: FeedState::Pending(Vec::new()),
            members: Vec::new(),
            waiting: Vec::new(),
            snapshot: None,
        }
    }

    pub fn is_live(&self) -> bool {
        matches!(self.state, FeedState::Live)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.waiting.is_empty()
    }

    /// The version the view is exact at: no commit up to the hub's `processed` concerned it
    /// unless it was applied.
    pub fn version(&self, processed: u64) -> u64 {
        self.version.max(processed)
    }

    /// Takes the first result (read at `version`) and applies the commits after it that
    /// arrived meanwhile.
    pub fn start(
        &mut self,
        entries: Vec<Entry>,
        version: u64,
        docs: &Docs,
        store: &SharedStore,
    ) -> Result<(), FeedFailed> {
        self.view = View::new(entries);
        self.version = version;
        let waiting = match std::mem::replace(&mut self.state, FeedState::Live) {
            FeedState::Pending(records) => records,
            FeedState::Live => Vec::new(),
        };
        for record in waiting {
            self.apply(&record, docs, store)?;
        }
        Ok(())
    }

    /// Applies one commit. Returns the rendered `changes` array when the visible result changed
    /// (`None` while pending, for an old commit, or when nothing visible changed).
    pub fn apply(
        &mut self,
        record: &Arc<ChangeRecord>,
        docs: &Docs,
        store: &SharedStore,
    ) -> Result<Option<Arc<str>>, FeedFailed> {
        if let FeedState::Pending(records) = &mut self.state {
            records.push(record.clone());
            return Ok(None);
        }
        if record.version <= self.version {
            return Ok(None);
        }
        self.version = record.version;
        let spec = self.spec.clone();
        let mut changes = Vec::new();
        let mut refill = false;
        for change in record.changes.iter().filter(|c| spec.touches(&c.path)) {
            let applied = self.view.apply(&spec, change);
            changes.extend(applied.changes);
            refill |= applied.needs_refill;
        }
        if refill {
            // A document left a full limited view: the next ones come from the store, as of
            // this commit (later commits are rewound from the change log).
            let entries = store
                .read()
                .map_err(|e| FeedFailed(e.to_string()))
                .and_then(|view| {
                    result_at(docs, view.as_ref(), &spec, Some(record.version))
                        .map_err(|e| FeedFailed(e.to_string()))
                })?
                .0;
            changes.extend(self.view.replace(&spec, entries));
        }
        if changes.is_empty() {
            return Ok(None);
        }
        Ok(Some(protocol::changes_array(&changes).into()))
    }

    /// The first message for a joiner, at the feed's current version.
    pub fn opening(&mut self, joiner: &mut Joiner, processed: u64) -> Opening {
        let version = self.version(processed);
        match joiner.resume.take() {
            Some(old) => {
                let old_visible: Vec<Entry> = old.into_iter().skip(self.spec.offset()).collect();
                let now: Vec<Entry> = self.view.visible(&self.spec).cloned().collect();
                let changes = diff(&self.spec, &old_visible, &now);
                Opening::Changes {
                    version,
                    changes: protocol::changes_array(&changes).into(),
                }
            }
            None => {
                let docs = match &self.snapshot {
                    Some((at, docs)) if *at == version => docs.clone(),
                    _ => {
                        let rendered: Vec<Arc<str>> = self
                            .view
                            .visible(&self.spec)
                            .map(|e| self.spec.render(&e.state))
                            .collect();
                        let docs: Arc<str> =
                            protocol::docs_array(rendered.iter().map(|d| d.as_ref())).into();
                        self.snapshot = Some((version, docs.clone()));
                        docs
                    }
                };
                Opening::Snapshot { version, docs }
            }
        }
    }

    /// Removes a subscription; true when it was here.
    pub fn remove(&mut self, connection: ConnId, local: u32) -> bool {
        let before = self.members.len() + self.waiting.len();
        self.members
            .retain(|m| (m.connection, m.local) != (connection, local));
        self.waiting
            .retain(|(j, _)| (j.connection, j.local) != (connection, local));
        before != self.members.len() + self.waiting.len()
    }
}
