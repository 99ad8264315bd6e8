//! Reading and trimming the change log (`Space::ChangeLog`: 8-byte big-endian commit version →
//! the commit's change record). Realtime tails it after each commit and replays it for
//! `resumeFrom`; the trimmer keeps it within its age and size budget and records how far it
//! trimmed, so a resume knows whether the log still covers a version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{commit, KeyRange, ReadView, SharedStore, Space, StoreError, WriteSet};
use crate::model::Timestamp;

/// `Meta` key: the highest version the trimmer removed (8 bytes, big-endian); 0 when none.
pub const TRIMMED_THROUGH_KEY: &[u8] = b"__store.changelog_trimmed_through";

/// Entries read or deleted per step, so trimming never builds one huge commit.
const TRIM_BATCH: usize = 1_024;

fn be_u64(bytes: &[u8]) -> Option<u64> {
    bytes.get(..8)?.try_into().ok().map(u64::from_be_bytes)
}

/// The last commit version visible in `view`.
pub fn view_version(view: &dyn ReadView) -> Result<u64, StoreError> {
    let next = view
        .get_many(Space::Meta, &[super::redb_store::NEXT_VERSION_KEY.to_vec()])?
        .pop()
        .flatten()
        .and_then(|b| be_u64(&b))
        .unwrap_or(1);
    Ok(next.saturating_sub(1))
}

/// Versions up to and including this one may have been trimmed from the log.
pub fn trimmed_through(view: &dyn ReadView) -> Result<u64, StoreError> {
    Ok(view
        .get_many(Space::Meta, &[TRIMMED_THROUGH_KEY.to_vec()])?
        .pop()
        .flatten()
        .and_then(|b| be_u64(&b))
        .unwrap_or(0))
}

/// Up to `limit` records with `after < version <= through`, oldest first.
pub fn records(
    view: &dyn ReadView,
    after: u64,
    through: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    if after >= through {
        return Ok(Vec::new());
    }
    let range = KeyRange::between(
        std::ops::Bound::Excluded(after.to_be_bytes().to_vec()),
        std::ops::Bound::Included(through.to_be_bytes().to_vec()),
    );
    Ok(view
        .scan(Space::ChangeLog, &range, limit, false)?
        .into_iter()
        .filter_map(|(key, value)| be_u64(&key).map(|version| (version, value)))
        .collect())
}

/// How long and how large the change log may grow.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub max_age: Duration,
    pub max_bytes: u64,
    pub interval: Duration,
}

/// The commit time of a record (`{"time": RFC 3339, ...}`), if it can be read.
fn record_time(value: &[u8]) -> Option<Timestamp> {
    #[derive(serde::Deserialize)]
    struct Head {
        time: String,
    }
    let head: Head = serde_json::from_slice(value).ok()?;
    Timestamp::parse_rfc3339(&head.time).ok()
}

/// Trims the change log every `retention.interval`: oldest first, records older than `max_age`
/// or beyond `max_bytes`, never a version above `floor` (what realtime has already fanned out).
/// Each step deletes a bounded batch and records `TRIMMED_THROUGH_KEY` in the same commit.
pub async fn run_trimmer(
    store: SharedStore,
    retention: Retention,
    floor: Arc<AtomicU64>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut trimmer = Trimmer {
        counted_through: 0,
        bytes: 0,
    };
    loop {
        if let Err(err) = trimmer
            .pass(&store, retention, floor.load(Ordering::Acquire))
            .await
        {
            tracing::warn!(error = %err, "change log trimming failed; retrying next interval");
        }
        tokio::select! {
            _ = tokio::time::sleep(retention.interval) => {}
            _ = stop.changed() => return,
        }
    }
}

struct Trimmer {
    /// Every record up to this version is counted in `bytes`.
    counted_through: u64,
    /// Bytes of the retained records (key and value), so a pass needs no full scan; the
    /// records themselves are read again only in the oldest batch, so memory stays constant
    /// however long the log is.
    bytes: u64,
}

/// Reads through `read` off the executor.
async fn blocking<T: Send + 'static>(
    store: &SharedStore,
    read: impl FnOnce(&dyn ReadView) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || read(store.read()?.as_ref()))
        .await
        .map_err(|e| StoreError::Engine(e.to_string()))?
}

fn record_bytes(value: &[u8]) -> u64 {
    value.len() as u64 + 9
}

impl Trimmer {
    async fn pass(
        &mut self,
        store: &SharedStore,
        retention: Retention,
        floor: u64,
    ) -> Result<(), StoreError> {
        // Count what was committed since the last pass.
        loop {
            let from = self.counted_through;
            let (batch, trimmed) = blocking(store, move |view| {
                let trimmed = trimmed_through(view)?;
                Ok((
                    records(view, from.max(trimmed), u64::MAX, TRIM_BATCH)?,
                    trimmed,
                ))
            })
            .await?;
            self.counted_through = self.counted_through.max(trimmed);
            let full = batch.len() == TRIM_BATCH;
            for (version, value) in batch {
                self.bytes += record_bytes(&value);
                self.counted_through = version;
            }
            if !full {
                break;
            }
        }
        let cutoff = Timestamp::now().micros() - retention.max_age.as_micros() as i64;
        loop {
            let oldest = blocking(store, move |view| {
                records(view, trimmed_through(view)?, floor, TRIM_BATCH)
            })
            .await?;
            let mut write_set = WriteSet::default();
            let mut last = None;
            let mut freed = 0;
            for (version, value) in &oldest {
                let over = self.bytes - freed > retention.max_bytes;
                let old = record_time(value).is_some_and(|t| t.micros() < cutoff);
                if *version > self.counted_through || !(over || old) {
                    break;
                }
                write_set.delete(Space::ChangeLog, version.to_be_bytes().to_vec());
                freed += record_bytes(value);
                last = Some(*version);
            }
            let Some(last) = last else {
                return Ok(());
            };
            write_set.put(
                Space::Meta,
                TRIMMED_THROUGH_KEY.to_vec(),
                last.to_be_bytes().to_vec(),
            );
            commit(store.as_ref(), write_set)
                .await
                .map_err(|e| match e {
                    super::CommitError::Store(e) => e,
                    super::CommitError::Conflict => {
                        StoreError::Engine("unexpected conflict".into())
                    }
                })?;
            self.bytes -= freed;
            tracing::debug!(through = last, "trimmed the change log");
        }
    }
}
