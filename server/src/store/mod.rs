//! The `Store` trait: an ordered key-value store with consistent read views, bounded range scans
//! and one atomic, durable `WriteSet` per commit that also assigns the commit version.
//!
//! The shape suits a networked engine as well as the embedded one: reads come in batches
//! (`get_many`), scans are bounded, and a commit is a single `submit` carrying its own
//! optimistic checks, so nothing loops over single-key round trips.

pub mod changelog;
pub mod pool;
pub mod redb_store;
pub mod wal;

use std::ops::Bound;
use std::sync::Arc;

use tokio::sync::{oneshot, watch};

pub use redb_store::RedbStore;

/// The key spaces the server keeps. Each is an independent ordered map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Space {
    /// Document key (`model::keys::document_key`) → stored document.
    Documents,
    /// Index entry keys (see `docs::index`) → the document key, or a copy of the document and
    /// its key (`docs::index::unpack_entry`).
    Index,
    /// Commit version (8 bytes, big-endian) → the change record of that commit.
    ChangeLog,
    /// Project data and bookkeeping (index definitions, counters) by name.
    Meta,
    /// Users, the email index, sessions and one-time tokens (`auth::users` key prefixes).
    Auth,
    /// Hook definitions, the outbox of `after` hooks and their delivery log (`hooks::outbox`).
    Hooks,
}

impl Space {
    pub const ALL: [Space; 6] = [
        Space::Documents,
        Space::Index,
        Space::ChangeLog,
        Space::Meta,
        Space::Auth,
        Space::Hooks,
    ];
}

/// A key range for scans; `Bound::Unbounded` on either side is allowed.
#[derive(Debug, Clone)]
pub struct KeyRange {
    pub start: Bound<Vec<u8>>,
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key that starts with `prefix`.
    pub fn prefix(prefix: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Included(prefix.to_vec()),
            end: Bound::Excluded(crate::model::keys::prefix_end(prefix)),
        }
    }

    pub fn between(start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KeyRange {
        KeyRange { start, end }
    }

    /// The same range without the keys up to and including `key` (ascending continuation).
    pub fn after(&self, key: &[u8]) -> KeyRange {
        KeyRange {
            start: Bound::Excluded(key.to_vec()),
            end: self.end.clone(),
        }
    }

    /// The same range without the keys from `key` upwards (descending continuation).
    pub fn before(&self, key: &[u8]) -> KeyRange {
        KeyRange {
            start: self.start.clone(),
            end: Bound::Excluded(key.to_vec()),
        }
    }

    /// True when the range cannot contain any key (start past end).
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e))
            | (Bound::Excluded(s), Bound::Included(e))
            | (Bound::Excluded(s), Bound::Excluded(e)) => s >= e,
            _ => false,
        }
    }
}

/// One key-value pair from a scan.
pub type Entry = (Vec<u8>, Vec<u8>);

/// A consistent snapshot of the store: every read through one view sees the same commit.
pub trait ReadView: Send {
    fn get_many(&self, space: Space, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError>;
    /// Up to `limit` entries of `range`, in key order (or reverse key order).
    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError>;
}

/// What a commit expects of a key before it applies; a failed check aborts only its own commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    Absent,
    /// The key holds a versioned value (first 8 bytes, big-endian) with this version.
    Version(u64),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub space: Space,
    pub key: Vec<u8>,
    pub expect: Expect,
}

#[derive(Debug, Clone)]
pub enum WriteOp {
    /// With `stamp_version`, the store overwrites the value's first 8 bytes with the commit version.
    Put {
        space: Space,
        key: Vec<u8>,
        value: Vec<u8>,
        stamp_version: bool,
    },
    Delete {
        space: Space,
        key: Vec<u8>,
    },
    /// Puts `value` under `prefix ‖ commit version (8 bytes, big-endian) ‖ suffix`, so entries
    /// written by different commits sort in commit order (the hook outbox).
    PutAtVersion {
        space: Space,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        value: Vec<u8>,
    },
}

/// Everything one logical commit writes, applied atomically or not at all.
#[derive(Debug, Clone, Default)]
pub struct WriteSet {
    pub checks: Vec<Check>,
    pub ops: Vec<WriteOp>,
    /// Stored in the change log under the commit's version.
    pub change: Option<Vec<u8>>,
    /// The commit (and every later one) gets a version of at least this: an import keeps the
    /// versions of the documents it restores and continues after them.
    pub min_version: Option<u64>,
}

impl WriteSet {
    pub fn put(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.put_stamped(space, key, value, false);
    }

    pub fn put_versioned(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>) {
        self.put_stamped(space, key, value, true);
    }

    /// `put` or `put_versioned`, as `stamp_version` says.
    pub fn put_stamped(&mut self, space: Space, key: Vec<u8>, value: Vec<u8>, stamp_version: bool) {
        self.ops.push(WriteOp::Put {
            space,
            key,
            value,
            stamp_version,
        });
    }

    pub fn delete(&mut self, space: Space, key: Vec<u8>) {
        self.ops.push(WriteOp::Delete { space, key });
    }

    pub fn put_at_version(
        &mut self,
        space: Space,
        prefix: Vec<u8>,
        suffix: Vec<u8>,
        value: Vec<u8>,
    ) {
        self.ops.push(WriteOp::PutAtVersion {
            space,
            prefix,
            suffix,
            value,
        });
    }

    pub fn check(&mut self, space: Space, key: Vec<u8>, expect: Expect) {
        self.checks.push(Check { space, key, expect });
    }

    /// Bytes this write set carries, for group sizing.
    pub fn weight(&self) -> usize {
        let ops: usize = self
            .ops
            .iter()
            .map(|op| match op {
                WriteOp::Put { key, value, .. } => key.len() + value.len(),
                WriteOp::Delete { key, .. } => key.len(),
                WriteOp::PutAtVersion {
                    prefix,
                    suffix,
                    value,
                    ..
                } => prefix.len() + 8 + suffix.len() + value.len(),
            })
            .sum();
        ops + self.change.as_ref().map_or(0, Vec::len)
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("storage engine error: {0}")]
    Engine(String),
    #[error("the store is shut down")]
    Closed,
    /// The writer stopped after a failure that leaves the log unsure (a failed sync, a failed
    /// checkpoint): reads go on, writes fail until a restart replays the log.
    #[error("the store stopped taking writes after an error ({0}); a restart recovers")]
    Stopped(String),
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// A check failed: another commit changed a key this one read.
    #[error("a concurrent commit changed a key this commit depends on")]
    Conflict,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Resolves when the commit is durable (or failed).
pub type CommitReceiver = oneshot::Receiver<Result<u64, CommitError>>;

/// Work the writer runs inside its own write transaction: it reads the state every earlier
/// commit of the group left (through the view) and returns the write set to apply, or `None`
/// to commit nothing. It must be short and must not block: every commit waits for it.
pub type Prepare = Box<dyn FnOnce(&dyn ReadView) -> Option<WriteSet> + Send>;

pub trait Store: Send + Sync + 'static {
    fn read(&self) -> Result<Box<dyn ReadView>, StoreError>;
    /// Queues a write set for the next group commit; the receiver answers with its version
    /// once the commit is durable.
    fn submit(&self, write_set: WriteSet) -> CommitReceiver;
    /// Queues `prepare` for the next group commit; the writer runs it on the latest state, so
    /// its reads cannot be overtaken by another commit (no retries), and applies what it
    /// returns. The receiver answers with the version once durable; when `prepare` returns
    /// `None` (or panics) the receiver is dropped without an answer.
    fn submit_prepared(&self, prepare: Prepare) -> CommitReceiver;
    /// Follows the last durable commit version, for readers of the change log.
    fn committed(&self) -> watch::Receiver<u64>;
    /// Bytes on disk, for `/metrics`.
    fn size_bytes(&self) -> u64;
    /// Why the store stopped taking writes, if it did (`/readyz` reports it).
    fn failure(&self) -> Option<StoreError> {
        None
    }
    /// Finishes queued commits and stops the writer. Later submits fail with `Closed`.
    fn close(&self);
}

pub type SharedStore = Arc<dyn Store>;

/// Awaits a commit; a dropped receiver means the writer stopped.
pub async fn commit(store: &dyn Store, write_set: WriteSet) -> Result<u64, CommitError> {
    store
        .submit(write_set)
        .await
        .unwrap_or(Err(CommitError::Store(StoreError::Closed)))
}
