//! The embedded default `Store`: one redb file, written by a single group-commit thread, made
//! durable by a write-ahead log (`store::wal`).
//!
//! Concurrent commits queue on a channel; the writer drains what is queued, checks and applies
//! each write set inside one redb transaction, appends what the group changed to the log and
//! syncs it (one `fdatasync`), then commits the transaction without syncing and answers them
//! all. A write set whose checks fail is skipped without touching the others. A `Prepare` is
//! run by the writer itself, on its own transaction, just before its write set is applied.
//!
//! A checkpoint (a synced redb commit) every `checkpoint_interval` or `checkpoint_bytes` of log
//! makes the B-tree durable and empties the log; opening the store replays what the log holds
//! beyond the last checkpoint. Readers only ever see groups whose log record is durable.
//!
//! Every key space lives in one redb table, keys prefixed by a space byte: a commit then dirties
//! one B-tree instead of four, which measurably cuts the pages written per checkpoint.

use std::ops::Bound;
use std::path::Path;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
};
use tokio::sync::{oneshot, watch};

use super::wal::{RecordBuilder, Wal, WalAppendError, WalOp, WalRecord};
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
    /// A checkpoint at least this often while there are writes: it bounds the replay after a
    /// crash and the pages held in memory between checkpoints.
    pub checkpoint_interval: Duration,
    /// A checkpoint as soon as the write-ahead log holds this many bytes.
    pub checkpoint_bytes: u64,
}

impl Default for GroupCommitLimits {
    fn default() -> Self {
        GroupCommitLimits {
            max_write_sets: 1_024,
            max_bytes: 16 << 20,
            queue_capacity: 8_192,
            checkpoint_interval: Duration::from_secs(1),
            checkpoint_bytes: 64 << 20,
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
    wal_file: std::path::PathBuf,
    failure: Arc<OnceLock<StoreError>>,
}

impl RedbStore {
    /// Opens (or creates) `data_dir/hearth.redb` and its log `hearth.wal`, replays what the log
    /// holds beyond the last checkpoint, and starts the writer thread.
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
        let (mut wal, records) = Wal::open(&data_dir.join(WAL_FILE))?;
        let next_version = replay(&db, next_version, records)?;
        wal.clear()?;
        let failure = Arc::new(OnceLock::new());
        let (committed_tx, committed) = watch::channel(next_version - 1);
        let (sender, receiver) = mpsc::sync_channel(limits.queue_capacity);
        let writer = {
            let db = db.clone();
            let failure = failure.clone();
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
                        wal,
                        record_builder: RecordBuilder::default(),
                        last_checkpoint: Instant::now(),
                        failure,
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
            wal_file: data_dir.join(WAL_FILE),
            failure,
        })
    }
}

/// How long the writer sleeps when it has nothing to do, not even a checkpoint.
const IDLE_WAKE_UP: Duration = Duration::from_secs(60);

/// The write-ahead log, next to the redb file.
const WAL_FILE: &str = "hearth.wal";

/// Applies the log records the store does not hold yet (those from `next_version` on) in one
/// synced commit; returns the next version after them.
///
/// The store is always at a group boundary (a checkpoint commits whole groups), so the first
/// record to replay starts exactly at `next_version` and each one continues the last. A gap
/// means the log and the store do not belong together: refusing to start is safer than
/// serving a store with commits missing from its middle.
fn replay(db: &Database, next_version: u64, records: Vec<WalRecord>) -> Result<u64, StoreError> {
    let pending: Vec<WalRecord> = records
        .into_iter()
        .filter(|record| record.next_version > next_version)
        .collect();
    if pending.is_empty() {
        return Ok(next_version);
    }
    let mut expected = next_version;
    for record in &pending {
        if record.first_version != expected {
            return Err(StoreError::Engine(format!(
                "the write-ahead log continues at version {} but the store at version {expected}; \
                 refusing to start (move {WAL_FILE} aside only if the store was restored from a \
                 backup)",
                record.first_version
            )));
        }
        expected = record.next_version;
    }
    let txn = db.begin_write().map_err(engine)?;
    {
        let mut table = txn.open_table(DATA).map_err(engine)?;
        for op in pending.iter().flat_map(|record| &record.ops) {
            match op {
                WalOp::Put { key, value } => {
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(engine)?;
                }
                WalOp::Delete { key } => {
                    table.remove(key.as_slice()).map_err(engine)?;
                }
            }
        }
    }
    txn.commit().map_err(engine)?;
    // A warning like redb's repair message: the last stop was not clean.
    tracing::warn!(
        commits = pending.len(),
        from_version = next_version,
        to_version = expected - 1,
        "replayed the write-ahead log"
    );
    Ok(expected)
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
        [&self.file, &self.wal_file]
            .into_iter()
            .map(|file| std::fs::metadata(file).map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    fn failure(&self) -> Option<StoreError> {
        self.failure.get().cloned()
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
    wal: Wal,
    /// The log record of the group being applied (its buffer is reused).
    record_builder: RecordBuilder,
    last_checkpoint: Instant,
    /// Set when the log or the store can no longer be trusted to hold what was acknowledged:
    /// every later commit fails with it, and `/readyz` reports it (a restart replays the log).
    failure: Arc<OnceLock<StoreError>>,
}

impl Writer {
    fn run(mut self) {
        loop {
            // With an empty log there is nothing to checkpoint: no need to wake up often.
            let timeout = if self.wal.bytes() > 0 {
                self.limits.checkpoint_interval
            } else {
                IDLE_WAKE_UP
            };
            let first = match self.receiver.recv_timeout(timeout) {
                Ok(pending) => pending,
                Err(RecvTimeoutError::Timeout) => {
                    // Idle: make the B-tree durable so a restart has nothing to replay.
                    self.checkpoint_if(self.wal.bytes() > 0);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    // Closing: leave a store that opens without a replay.
                    self.checkpoint_if(self.wal.bytes() > 0);
                    return;
                }
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
            let due = self.wal.bytes() >= self.limits.checkpoint_bytes
                || (self.wal.bytes() > 0
                    && self.last_checkpoint.elapsed() >= self.limits.checkpoint_interval);
            self.checkpoint_if(due);
        }
    }

    /// Commits the B-tree durably and empties the log. A failed checkpoint keeps the log (it
    /// still holds every acknowledged commit) and stops the writer: redb refuses further
    /// writes after a failed commit, and a restart replays.
    fn checkpoint_if(&mut self, due: bool) {
        if !due || self.failure.get().is_some() {
            return;
        }
        let started = Instant::now();
        let outcome = self.sync_btree().and_then(|()| self.wal.clear());
        match outcome {
            Ok(()) => {
                self.last_checkpoint = Instant::now();
                self.metrics.record_checkpoint(started.elapsed());
            }
            Err(err) => self.stop(&err, "checkpoint failed"),
        }
    }

    /// Stops all later writes: the log or the store can no longer be trusted to hold what the
    /// next commits would acknowledge.
    fn stop(&self, err: &StoreError, what: &str) {
        tracing::error!(error = %err, "{what}; writes stop until a restart replays the log");
        let _ = self.failure.set(StoreError::Stopped(err.to_string()));
    }

    /// An empty synced commit: it writes out every page the unsynced commits left in memory.
    fn sync_btree(&self) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(engine)?;
        txn.set_durability(Durability::Immediate).map_err(engine)?;
        txn.commit().map_err(engine)
    }

    fn commit_group(&mut self, mut group: Vec<Pending>) {
        let started = Instant::now();
        let first_version = self.next_version;
        let outcome = match self.failure.get() {
            Some(err) => Err(err.clone()),
            None => self.apply_group(&mut group),
        };
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
        // The log record makes the group durable; the B-tree is synced at checkpoints.
        txn.set_durability(Durability::None).map_err(engine)?;
        let first_version = self.next_version;
        self.record_builder.start(first_version);
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
            if self.next_version == first_version {
                // Every write set failed its checks or declined: nothing to log or commit.
                drop(table);
                txn.abort().map_err(engine)?;
                return Ok(results);
            }
            let next = self.next_version.to_be_bytes();
            let key = physical(Space::Meta, NEXT_VERSION_KEY);
            table
                .insert(key.as_slice(), next.as_slice())
                .map_err(engine)?;
            self.record_builder.put(&key, &next);
        }
        let framed = self.record_builder.finish(self.next_version)?;
        let framed_len = framed.len();
        match self.wal.append(framed) {
            Ok(()) => {}
            // Dropping the transaction aborts it: the group failed as a whole.
            Err(WalAppendError::NotWritten(err)) => return Err(err),
            Err(WalAppendError::Unusable(err)) => {
                self.stop(&err, "the write-ahead log failed");
                return Err(err);
            }
        }
        if let Err(err) = txn.commit() {
            let err = engine(err);
            self.stop(
                &err,
                "a group commit failed after its log record was synced",
            );
            // redb leaves a failed commit undetermined (applied in full or not at all, perhaps
            // already visible), so ask a reader. A visible group is live, and its log record
            // keeps it durable: its clients get their versions. An invisible one leaves the
            // log, or a restart would replay what its clients were told failed. When even that
            // is unknown the record stays: the clients see an error, as after a timeout.
            match self.visible_next_version() {
                Some(visible) if visible == self.next_version => return Ok(results),
                Some(_) => {
                    if let Err(undo) = self.wal.undo_last_append(framed_len) {
                        tracing::error!(error = %undo, "could not take a failed commit out of the log");
                    }
                }
                None => {}
            }
            return Err(err);
        }
        Ok(results)
    }

    /// The next version as a new reader sees it; `None` when the store cannot say.
    fn visible_next_version(&self) -> Option<u64> {
        let txn = self.db.begin_read().ok()?;
        let table = txn.open_table(DATA).ok()?;
        let stored = table
            .get(physical(Space::Meta, NEXT_VERSION_KEY).as_slice())
            .ok()??;
        stored.value().try_into().ok().map(u64::from_be_bytes)
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
                        self.record_builder.put(&key, &stamped);
                    } else {
                        table
                            .insert(key.as_slice(), value.as_slice())
                            .map_err(engine)?;
                        self.record_builder.put(&key, value);
                    }
                }
                WriteOp::Delete { space, key } => {
                    let key = physical(*space, key);
                    table.remove(key.as_slice()).map_err(engine)?;
                    self.record_builder.delete(&key);
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
                    let key = physical(*space, &key);
                    table
                        .insert(key.as_slice(), value.as_slice())
                        .map_err(engine)?;
                    self.record_builder.put(&key, value);
                }
            }
        }
        if let Some(change) = &write_set.change {
            let key = physical(Space::ChangeLog, &version.to_be_bytes());
            table
                .insert(key.as_slice(), change.as_slice())
                .map_err(engine)?;
            self.record_builder.put(&key, change);
        }
        Ok(Ok(version))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn put(key: &[u8], value: &[u8]) -> WalOp {
        WalOp::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn record(first_version: u64, next_version: u64, ops: Vec<WalOp>) -> WalRecord {
        WalRecord {
            first_version,
            next_version,
            ops,
        }
    }

    /// Checkpoints only when the test closes the store.
    fn without_timed_checkpoints() -> GroupCommitLimits {
        GroupCommitLimits {
            checkpoint_interval: Duration::from_secs(3_600),
            ..GroupCommitLimits::default()
        }
    }

    async fn put_document(store: &RedbStore, key: &[u8], value: &[u8]) -> Result<u64, CommitError> {
        let mut write_set = WriteSet::default();
        write_set.put(Space::Documents, key.to_vec(), value.to_vec());
        super::super::commit(store, write_set).await
    }

    fn read_document(store: &RedbStore, key: &[u8]) -> Option<Vec<u8>> {
        let read = store.read().unwrap();
        let mut values = read.get_many(Space::Documents, &[key.to_vec()]).unwrap();
        values.pop().flatten()
    }

    fn stored(db: &Database, key: &[u8]) -> Option<Vec<u8>> {
        let txn = db.begin_read().unwrap();
        match txn.open_table(DATA) {
            Ok(table) => table.get(key).unwrap().map(|v| v.value().to_vec()),
            Err(redb::TableError::TableDoesNotExist(_)) => None,
            Err(err) => unreachable!("{err}"),
        }
    }

    #[test]
    fn replay_applies_only_what_the_store_does_not_hold_yet() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("x.redb")).unwrap();
        let records = vec![
            // Already in the store (a crash between a checkpoint and emptying the log).
            record(1, 3, vec![put(b"da", b"old")]),
            record(
                3,
                5,
                vec![
                    put(b"da", b"new"),
                    put(b"db", b"gone"),
                    WalOp::Delete {
                        key: b"db".to_vec(),
                    },
                ],
            ),
            record(5, 6, vec![put(b"dc", b"c")]),
        ];
        assert_eq!(replay(&db, 3, records).unwrap(), 6);
        assert_eq!(stored(&db, b"da").as_deref(), Some(&b"new"[..]));
        assert_eq!(stored(&db, b"db"), None);
        assert_eq!(stored(&db, b"dc").as_deref(), Some(&b"c"[..]));
        assert_eq!(replay(&db, 6, Vec::new()).unwrap(), 6);
    }

    #[test]
    fn replay_refuses_a_log_with_commits_missing_from_its_middle() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("x.redb")).unwrap();
        let gap = vec![record(4, 6, vec![put(b"da", b"a")])];
        assert!(replay(&db, 3, gap).is_err());
        assert_eq!(stored(&db, b"da"), None);
        let broken = vec![
            record(3, 4, vec![put(b"da", b"a")]),
            record(5, 6, vec![put(b"db", b"b")]),
        ];
        assert!(replay(&db, 3, broken).is_err());
        assert_eq!(
            stored(&db, b"da"),
            None,
            "nothing of a refused log is applied"
        );
    }

    #[tokio::test]
    async fn a_stopped_writer_refuses_writes_but_keeps_its_log_and_reads() {
        let dir = tempfile::tempdir().unwrap();
        let limits = without_timed_checkpoints();
        let store = RedbStore::open(dir.path(), limits, Arc::default()).unwrap();
        put_document(&store, b"a", b"1").await.unwrap();
        assert!(store.failure().is_none());
        // What `Writer::stop` records after a failed log sync or checkpoint.
        let _ = store
            .failure
            .set(StoreError::Stopped("the disk said EIO".into()));
        let refused = put_document(&store, b"b", b"2").await;
        assert!(matches!(
            refused,
            Err(CommitError::Store(StoreError::Stopped(_)))
        ));
        assert!(matches!(store.failure(), Some(StoreError::Stopped(_))));
        assert_eq!(read_document(&store, b"a").as_deref(), Some(&b"1"[..]));
        assert_eq!(read_document(&store, b"b"), None);
        // No checkpoint after a failure: the log keeps what the store may not hold.
        store.close();
        assert!(std::fs::metadata(dir.path().join(WAL_FILE)).unwrap().len() > 0);
        drop(store);
        let store =
            RedbStore::open(dir.path(), GroupCommitLimits::default(), Arc::default()).unwrap();
        assert_eq!(read_document(&store, b"a").as_deref(), Some(&b"1"[..]));
        store.close();
    }

    #[tokio::test]
    async fn commits_are_in_the_log_until_a_checkpoint_and_a_close_empties_it() {
        let dir = tempfile::tempdir().unwrap();
        let limits = without_timed_checkpoints();
        let store = RedbStore::open(dir.path(), limits, Arc::default()).unwrap();
        let version = put_document(&store, b"a", b"1").await.unwrap();
        let wal = dir.path().join(WAL_FILE);
        assert!(std::fs::metadata(&wal).unwrap().len() > 0);
        assert_eq!(read_document(&store, b"a").as_deref(), Some(&b"1"[..]));
        store.close();
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), 0);
        drop(store);
        let store = RedbStore::open(dir.path(), limits, Arc::default()).unwrap();
        let next = put_document(&store, b"b", b"2").await.unwrap();
        assert_eq!(next, version + 1, "versions continue after a reopen");
        store.close();
    }

    /// The files as `kill -9` leaves them (what the page cache holds, copied while the store
    /// runs): opening the copy replays the log up to the last acknowledged version.
    #[tokio::test]
    async fn a_copy_taken_while_running_opens_with_every_acknowledged_commit() {
        let dir = tempfile::tempdir().unwrap();
        let copy = tempfile::tempdir().unwrap();
        let limits = without_timed_checkpoints();
        let store = RedbStore::open(dir.path(), limits, Arc::default()).unwrap();
        let mut last = 0;
        for i in 0..200u32 {
            last = put_document(&store, format!("k{i}").as_bytes(), &[7; 3_000])
                .await
                .unwrap();
        }
        for file in ["hearth.redb", WAL_FILE] {
            std::fs::copy(dir.path().join(file), copy.path().join(file)).unwrap();
        }
        let reopened = RedbStore::open(copy.path(), limits, Arc::default()).unwrap();
        assert_eq!(*reopened.committed().borrow(), last);
        let read = reopened.read().unwrap();
        let keys: Vec<Vec<u8>> = (0..200u32).map(|i| format!("k{i}").into_bytes()).collect();
        let values = read.get_many(Space::Documents, &keys).unwrap();
        assert!(values.iter().all(Option::is_some));
        drop(read);
        reopened.close();
        store.close();
    }

    /// What the log relies on in redb: unsynced commits are not in the file's durable state,
    /// and an empty synced commit makes every one before it durable.
    #[test]
    fn redb_keeps_unsynced_commits_out_of_the_file_until_a_synced_one() {
        for sync in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let db = Database::create(dir.path().join("x.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            txn.open_table(DATA).unwrap();
            txn.commit().unwrap();
            for i in 0..50u32 {
                let mut txn = db.begin_write().unwrap();
                txn.set_durability(Durability::None).unwrap();
                txn.open_table(DATA)
                    .unwrap()
                    .insert(format!("k{i}").as_bytes(), &[1u8; 5_000][..])
                    .unwrap();
                txn.commit().unwrap();
            }
            if sync {
                let mut txn = db.begin_write().unwrap();
                txn.set_durability(Durability::Immediate).unwrap();
                txn.commit().unwrap();
            }
            std::fs::copy(dir.path().join("x.redb"), dir.path().join("y.redb")).unwrap();
            let copy = Database::create(dir.path().join("y.redb")).unwrap();
            let found = (0..50u32)
                .filter(|i| stored(&copy, format!("k{i}").as_bytes()).is_some())
                .count();
            assert_eq!(found, if sync { 50 } else { 0 }, "synced: {sync}");
        }
    }
}
