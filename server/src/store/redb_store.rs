//! The embedded default `Store`: one redb file, written by a single group-commit thread.
//!
//! Concurrent commits queue on a channel; the writer drains what is queued, checks and applies
//! each write set inside one redb transaction, then commits once (one fsync) and answers them
//! all. A write set whose checks fail is skipped without touching the others. A `Prepare` is
//! run by the writer itself, on its own transaction, just before its write set is applied.
//!
//! Every key space lives in one redb table, keys prefixed by a space byte: a commit then dirties
//! one B-tree instead of four, which measurably cuts the pages written per fsync.

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use tokio::sync::{oneshot, watch};

use super::{
    CommitError, CommitReceiver, Entry, Expect, KeyRange, Prepare, ReadView, Space, Store,
    StoreError, WriteOp, WriteSet,
};
use crate::metrics::Metrics;

type Table = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// The single table holding every key space.
const DATA: Table = TableDefinition::new("hearth");

/// Where the writer keeps the next commit version (in the `Meta` space).
pub(crate) const NEXT_VERSION_KEY: &[u8] = b"__store.next_version";

fn space_tag(space: Space) -> u8 {
    match space {
        Space::Documents => b'd',
        Space::Index => b'i',
        Space::ChangeLog => b'l',
        Space::Meta => b'm',
        Space::Auth => b'a',
        Space::Hooks => b'h',
    }
}

/// The physical key: the space byte, then the key.
fn physical(space: Space, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 1);
    out.push(space_tag(space));
    out.extend_from_slice(key);
    out
}

fn physical_bound(space: Space, bound: &Bound<Vec<u8>>, start: bool) -> Bound<Vec<u8>> {
    match bound {
        Bound::Included(k) => Bound::Included(physical(space, k)),
        Bound::Excluded(k) => Bound::Excluded(physical(space, k)),
        Bound::Unbounded if start => Bound::Included(vec![space_tag(space)]),
        Bound::Unbounded => Bound::Excluded(vec![space_tag(space) + 1]),
    }
}

fn engine(err: impl std::fmt::Display) -> StoreError {
    StoreError::Engine(err.to_string())
}

/// Limits of one group commit.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitLimits {
    /// Write sets in one commit at most.
    pub max_write_sets: usize,
    /// Bytes in one commit at most (the first write set is always taken).
    pub max_bytes: usize,
    /// Write sets waiting for the writer at most; submitters wait beyond that.
    pub queue_capacity: usize,
}

impl Default for GroupCommitLimits {
    fn default() -> Self {
        GroupCommitLimits {
            max_write_sets: 1_024,
            max_bytes: 16 << 20,
            queue_capacity: 8_192,
        }
    }
}

/// A queued commit: a write set, or the work that prepares one inside the writer.
enum Work {
    Ready(WriteSet),
    Prepare(Prepare),
}

/// What a `Prepare` is assumed to weigh for group sizing (its write set is not known yet).
const PREPARE_WEIGHT: usize = 4 << 10;

struct Pending {
    /// Taken when the writer applies it.
    work: Option<Work>,
    reply: oneshot::Sender<Result<u64, CommitError>>,
}

impl Pending {
    fn weight(&self) -> usize {
        match &self.work {
            Some(Work::Ready(write_set)) => write_set.weight(),
            Some(Work::Prepare(_)) => PREPARE_WEIGHT,
            None => 0,
        }
    }
}

pub struct RedbStore {
    db: Arc<Database>,
    sender: Mutex<Option<SyncSender<Pending>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    committed: watch::Receiver<u64>,
    file: std::path::PathBuf,
}

impl RedbStore {
    /// Opens (or creates) `data_dir/hearth.redb` and starts the writer thread.
    pub fn open(
        data_dir: &Path,
        limits: GroupCommitLimits,
        metrics: Arc<Metrics>,
    ) -> Result<RedbStore, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(engine)?;
        let file = data_dir.join("hearth.redb");
        // redb calls this only when the file was not closed cleanly (a crash or kill -9): it then
        // rebuilds its allocator state from the last durable commit. Say so: operators and the
        // shutdown test read it.
        let db = Arc::new(
            Database::builder()
                .set_repair_callback(|_| {
                    tracing::warn!(
                        "the store was not closed cleanly; recovering from the last durable commit"
                    )
                })
                .create(&file)
                .map_err(engine)?,
        );
        let next_version = {
            let txn = db.begin_write().map_err(engine)?;
            let next = {
                let table = txn.open_table(DATA).map_err(engine)?;
                let stored = table
                    .get(physical(Space::Meta, NEXT_VERSION_KEY).as_slice())
                    .map_err(engine)?;
                stored
                    .and_then(|v| v.value().try_into().ok().map(u64::from_be_bytes))
                    .unwrap_or(1)
            };
            txn.commit().map_err(engine)?;
            next
        };
        let (committed_tx, committed) = watch::channel(next_version - 1);
        let (sender, receiver) = mpsc::sync_channel(limits.queue_capacity);
        let writer = {
            let db = db.clone();
            std::thread::Builder::new()
                .name("hearth-commit".into())
                .spawn(move || {
                    Writer {
                        db,
                        receiver,
                        limits,
                        next_version,
                        committed: committed_tx,
                        metrics,
                    }
                    .run()
                })
                .map_err(engine)?
        };
        Ok(RedbStore {
            db,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            committed,
            file,
        })
    }
}

impl RedbStore {
    fn enqueue(&self, work: Work) -> CommitReceiver {
        let (reply, receiver) = oneshot::channel();
        let sender = self.sender.lock().ok().and_then(|guard| guard.clone());
        let Some(sender) = sender else {
            let _ = reply.send(Err(CommitError::Store(StoreError::Closed)));
            return receiver;
        };
        let pending = Pending {
            work: Some(work),
            reply,
        };
        // Try without blocking first; a full queue means the writer is behind, so wait for it
        // on this (blocking-pool or writer-adjacent) thread rather than grow memory.
        match sender.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Full(pending)) => {
                if let Err(mpsc::SendError(pending)) = sender.send(pending) {
                    let _ = pending
                        .reply
                        .send(Err(CommitError::Store(StoreError::Closed)));
                }
            }
            Err(TrySendError::Disconnected(pending)) => {
                let _ = pending
                    .reply
                    .send(Err(CommitError::Store(StoreError::Closed)));
            }
        }
        receiver
    }
}

impl Store for RedbStore {
    fn read(&self) -> Result<Box<dyn ReadView>, StoreError> {
        let txn = self.db.begin_read().map_err(engine)?;
        Ok(Box::new(RedbReadView { txn }))
    }

    fn submit(&self, write_set: WriteSet) -> CommitReceiver {
        self.enqueue(Work::Ready(write_set))
    }

    fn submit_prepared(&self, prepare: Prepare) -> CommitReceiver {
        self.enqueue(Work::Prepare(prepare))
    }

    fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    fn size_bytes(&self) -> u64 {
        std::fs::metadata(&self.file).map(|m| m.len()).unwrap_or(0)
    }

    fn close(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(writer) = writer {
            let _ = writer.join();
        }
    }
}

struct RedbReadView {
    txn: ReadTransaction,
}

impl ReadView for RedbReadView {
    fn get_many(&self, space: Space, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let table = self.txn.open_table(DATA).map_err(engine)?;
        table_get_many(&table, space, keys)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        if range.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let table = self.txn.open_table(DATA).map_err(engine)?;
        table_scan(&table, space, range, limit, reverse)
    }
}

/// The writer's own transaction as a read view, for `Prepare` work: it sees every write set
/// applied earlier in the same group.
struct WriteTableView<'a, 'txn> {
    table: &'a redb::Table<'txn, &'static [u8], &'static [u8]>,
}

impl ReadView for WriteTableView<'_, '_> {
    fn get_many(&self, space: Space, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        table_get_many(self.table, space, keys)
    }

    fn scan(
        &self,
        space: Space,
        range: &KeyRange,
        limit: usize,
        reverse: bool,
    ) -> Result<Vec<Entry>, StoreError> {
        table_scan(self.table, space, range, limit, reverse)
    }
}

/// `ReadView::get_many` on a table of either kind of transaction.
fn table_get_many(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    space: Space,
    keys: &[Vec<u8>],
) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
    keys.iter()
        .map(|key| {
            Ok(table
                .get(physical(space, key).as_slice())
                .map_err(engine)?
                .map(|v| v.value().to_vec()))
        })
        .collect()
}

/// `ReadView::scan` on a table of either kind of transaction.
fn table_scan(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    space: Space,
    range: &KeyRange,
    limit: usize,
    reverse: bool,
) -> Result<Vec<Entry>, StoreError> {
    if range.is_empty() || limit == 0 {
        return Ok(Vec::new());
    }
    let start = physical_bound(space, &range.start, true);
    let end = physical_bound(space, &range.end, false);
    let bounds: (Bound<&[u8]>, Bound<&[u8]>) = (as_ref_bound(&start), as_ref_bound(&end));
    let iter = table.range::<&[u8]>(bounds).map_err(engine)?;
    if reverse {
        take_entries(iter.rev(), limit)
    } else {
        take_entries(iter, limit)
    }
}

/// Copies up to `limit` entries out of a redb range iterator.
fn take_entries<'a>(
    iter: impl Iterator<
        Item = Result<
            (
                redb::AccessGuard<'a, &'static [u8]>,
                redb::AccessGuard<'a, &'static [u8]>,
            ),
            redb::StorageError,
        >,
    >,
    limit: usize,
) -> Result<Vec<Entry>, StoreError> {
    let mut out = Vec::new();
    for item in iter.take(limit) {
        let (key, value) = item.map_err(engine)?;
        // Strip the space byte: callers see their own keys.
        out.push((
            key.value().get(1..).unwrap_or_default().to_vec(),
            value.value().to_vec(),
        ));
    }
    Ok(out)
}

fn as_ref_bound(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(k) => Bound::Included(k.as_slice()),
        Bound::Excluded(k) => Bound::Excluded(k.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

struct Writer {
    db: Arc<Database>,
    receiver: Receiver<Pending>,
    limits: GroupCommitLimits,
    next_version: u64,
    committed: watch::Sender<u64>,
    metrics: Arc<Metrics>,
}

impl Writer {
    fn run(mut self) {
        loop {
            let first = match self.receiver.recv_timeout(Duration::from_secs(1)) {
                Ok(pending) => pending,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut bytes = first.weight();
            let mut group = vec![first];
            while group.len() < self.limits.max_write_sets && bytes < self.limits.max_bytes {
                match self.receiver.try_recv() {
                    Ok(pending) => {
                        bytes += pending.weight();
                        group.push(pending);
                    }
                    Err(_) => break,
                }
            }
            self.commit_group(group);
        }
    }

    fn commit_group(&mut self, mut group: Vec<Pending>) {
        let started = Instant::now();
        let first_version = self.next_version;
        let outcome = self.apply_group(&mut group);
        match outcome {
            Ok(results) => {
                self.metrics.record_commit(group.len(), started.elapsed());
                let last = self.next_version - 1;
                if last >= first_version {
                    self.committed.send_replace(last);
                }
                for (pending, result) in group.into_iter().zip(results) {
                    // No result: the work declined to commit; dropping the reply says so.
                    if let Some(result) = result {
                        let _ = pending.reply.send(result);
                    }
                }
            }
            Err(err) => {
                // Nothing of the group is durable: hand its versions out again.
                self.next_version = first_version;
                tracing::error!(error = %err, "group commit failed");
                for pending in group {
                    let _ = pending.reply.send(Err(CommitError::Store(err.clone())));
                }
            }
        }
    }

    fn apply_group(
        &mut self,
        group: &mut [Pending],
    ) -> Result<Vec<Option<Result<u64, CommitError>>>, StoreError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        let mut results = Vec::with_capacity(group.len());
        {
            let mut table = txn.open_table(DATA).map_err(engine)?;
            for pending in group.iter_mut() {
                let write_set = match pending.work.take() {
                    Some(Work::Ready(write_set)) => write_set,
                    Some(Work::Prepare(prepare)) => {
                        let view = WriteTableView { table: &table };
                        // A panic in the work must not take the writer (and every later
                        // commit) down with it: it only loses its own commit.
                        let prepared =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                prepare(&view)
                            }));
                        match prepared {
                            Ok(Some(write_set)) => write_set,
                            Ok(None) => {
                                results.push(None);
                                continue;
                            }
                            Err(_) => {
                                tracing::error!("preparing a commit panicked; it is dropped");
                                results.push(None);
                                continue;
                            }
                        }
                    }
                    None => {
                        results.push(None);
                        continue;
                    }
                };
                let result = self.apply_write_set(&mut table, &write_set)?;
                results.push(Some(result));
            }
            let next = self.next_version.to_be_bytes();
            let key = physical(Space::Meta, NEXT_VERSION_KEY);
            table
                .insert(key.as_slice(), next.as_slice())
                .map_err(engine)?;
        }
        txn.commit().map_err(engine)?;
        Ok(results)
    }

    /// Runs one write set's checks and, if they pass, applies it under the next version.
    /// `Err` is an engine failure (the whole group fails); a failed check is `Ok(Err(Conflict))`.
    fn apply_write_set(
        &mut self,
        table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
        write_set: &WriteSet,
    ) -> Result<Result<u64, CommitError>, StoreError> {
        for check in &write_set.checks {
            let current = table
                .get(physical(check.space, &check.key).as_slice())
                .map_err(engine)?;
            let version = current.as_ref().map(|v| {
                v.value()
                    .get(..8)
                    .and_then(|b| b.try_into().ok())
                    .map(u64::from_be_bytes)
            });
            let ok = match (&check.expect, version) {
                (Expect::Absent, None) => true,
                (Expect::Version(expected), Some(Some(actual))) => *expected == actual,
                _ => false,
            };
            if !ok {
                return Ok(Err(CommitError::Conflict));
            }
        }
        if let Some(min) = write_set.min_version {
            self.next_version = self.next_version.max(min);
        }
        let version = self.next_version;
        self.next_version += 1;
        for op in &write_set.ops {
            match op {
                WriteOp::Put {
                    space,
                    key,
                    value,
                    stamp_version,
                } => {
                    let key = physical(*space, key);
                    if *stamp_version && value.len() >= 8 {
                        let mut stamped = value.clone();
                        stamped[..8].copy_from_slice(&version.to_be_bytes());
                        table
                            .insert(key.as_slice(), stamped.as_slice())
                            .map_err(engine)?;
                    } else {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(engine)?;
                    }
                }
                WriteOp::Delete { space, key } => {
                    table
                        .remove(physical(*space, key).as_slice())
                        .map_err(engine)?;
                }
                WriteOp::PutAtVersion {
                    space,
                    prefix,
                    suffix,
                    value,
                } => {
                    let mut key = prefix.clone();
                    key.extend_from_slice(&version.to_be_bytes());
                    key.extend_from_slice(suffix);
                    table
                        .insert(physical(*space, &key).as_slice(), value.as_slice())
                        .map_err(engine)?;
                }
            }
        }
        if let Some(change) = &write_set.change {
            let key = physical(Space::ChangeLog, &version.to_be_bytes());
            table
                .insert(key.as_slice(), change.as_slice())
                .map_err(engine)?;
        }
        Ok(Ok(version))
    }
}
