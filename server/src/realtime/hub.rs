//! The hub: one task follows `Store::committed()`, reads each new change-log record in commit
//! order, finds the subscriptions it may concern through the `SubscriptionIndex` and queues it
//! on their connections' bounded queues. A connection whose queue is full is a slow consumer:
//! it gets nothing more and is told to close with 4008 (its client resumes with `resumeFrom`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{mpsc, watch, Notify};

use super::index::{ConnId, Placement, SubKey, SubscriptionIndex};
use super::record::ChangeRecord;
use crate::config::RealtimeSettings;
use crate::docs::Docs;
use crate::metrics::Metrics;
use crate::roles::Roles;
use crate::store::changelog::{self, Retention};
use crate::store::SharedStore;

/// Records read from the change log per step.
const TAIL_BATCH: usize = 256;

/// One commit for one connection, with the connection's subscriptions it may concern.
pub struct Event {
    pub record: Arc<ChangeRecord>,
    pub subscriptions: Vec<u32>,
}

/// Why the hub wants a connection closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    SlowConsumer,
    Shutdown,
}

/// Lets the hub stop a connection from outside its task.
#[derive(Default)]
pub struct KillSwitch {
    reason: AtomicU8,
    pub notify: Notify,
}

impl KillSwitch {
    fn fire(&self, kill: Kill) {
        let code = match kill {
            Kill::SlowConsumer => 1,
            Kill::Shutdown => 2,
        };
        if self
            .reason
            .compare_exchange(0, code, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            self.notify.notify_one();
        }
    }

    pub fn reason(&self) -> Option<Kill> {
        match self.reason.load(Ordering::Acquire) {
            1 => Some(Kill::SlowConsumer),
            2 => Some(Kill::Shutdown),
            _ => None,
        }
    }
}

struct ConnHandle {
    sender: mpsc::Sender<Event>,
    kill: Arc<KillSwitch>,
}

#[derive(Default)]
struct HubState {
    index: SubscriptionIndex,
    connections: HashMap<ConnId, ConnHandle>,
}

pub struct Hub {
    state: Mutex<HubState>,
    pub store: SharedStore,
    pub docs: Arc<Docs>,
    pub roles: Arc<Roles>,
    pub metrics: Arc<Metrics>,
    pub settings: RealtimeSettings,
    next_connection: AtomicU64,
    /// The last version fanned out: the change log may be trimmed up to here.
    processed: Arc<AtomicU64>,
    stop: watch::Sender<bool>,
}

impl Hub {
    /// Creates the hub and starts its tail task and the change-log trimmer.
    pub fn start(
        store: SharedStore,
        docs: Arc<Docs>,
        roles: Arc<Roles>,
        metrics: Arc<Metrics>,
        settings: RealtimeSettings,
    ) -> Arc<Hub> {
        let committed = store.committed();
        let start = *committed.borrow();
        let (stop, stop_rx) = watch::channel(false);
        let retention = Retention {
            max_age: std::time::Duration::from_secs(settings.change_log_max_age_secs),
            max_bytes: settings.change_log_max_bytes,
            interval: std::time::Duration::from_secs(settings.change_log_trim_interval_secs.max(1)),
        };
        let hub = Arc::new(Hub {
            state: Mutex::new(HubState::default()),
            store: store.clone(),
            docs,
            roles,
            metrics,
            settings,
            next_connection: AtomicU64::new(1),
            processed: Arc::new(AtomicU64::new(start)),
            stop,
        });
        tokio::spawn(hub.clone().tail(committed, start, stop_rx.clone()));
        tokio::spawn(changelog::run_trimmer(
            store,
            retention,
            hub.processed.clone(),
            stop_rx,
        ));
        hub
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panic while holding the lock cannot leave the index half-updated in a way that
        // matters more than losing realtime entirely, so recover the guard.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers a connection: its id, its bounded event queue and its kill switch.
    pub fn connect(&self) -> (ConnId, mpsc::Receiver<Event>, Arc<KillSwitch>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = mpsc::channel(self.settings.send_queue_capacity.max(1));
        let kill = Arc::new(KillSwitch::default());
        self.lock().connections.insert(
            id,
            ConnHandle {
                sender,
                kill: kill.clone(),
            },
        );
        self.metrics
            .realtime
            .connections
            .fetch_add(1, Ordering::Relaxed);
        if *self.stop.borrow() {
            kill.fire(Kill::Shutdown);
        }
        (id, receiver, kill)
    }

    /// Files a subscription: every record fanned out after this call reaches it.
    pub fn subscribe(&self, key: SubKey, placement: &Placement) {
        self.lock().index.insert(placement, key);
        self.metrics
            .realtime
            .subscriptions
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn unsubscribe(&self, key: SubKey, placement: &Placement) {
        self.lock().index.remove(placement, key);
        self.metrics
            .realtime
            .subscriptions
            .fetch_sub(1, Ordering::Relaxed);
    }

    pub fn disconnect(&self, connection: ConnId, placements: Vec<(u32, Placement)>) {
        let mut state = self.lock();
        state.connections.remove(&connection);
        let count = placements.len() as i64;
        for (local, placement) in placements {
            state.index.remove(&placement, (connection, local));
        }
        drop(state);
        self.metrics
            .realtime
            .subscriptions
            .fetch_sub(count, Ordering::Relaxed);
        self.metrics
            .realtime
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Stops tailing and asks every connection to close (1001, going away).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        for handle in self.lock().connections.values() {
            handle.kill.fire(Kill::Shutdown);
        }
    }

    pub fn open_connections(&self) -> usize {
        self.lock().connections.len()
    }

    async fn tail(
        self: Arc<Self>,
        mut committed: watch::Receiver<u64>,
        mut processed: u64,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            let target = *committed.borrow_and_update();
            while processed < target {
                let noticed = Instant::now();
                let store = self.store.clone();
                let from = processed;
                let batch = tokio::task::spawn_blocking(move || {
                    let view = store.read()?;
                    let rows = changelog::records(view.as_ref(), from, target, TAIL_BATCH)?;
                    let full = rows.len() == TAIL_BATCH;
                    let decoded: Vec<Result<ChangeRecord, _>> = rows
                        .iter()
                        .map(|(version, bytes)| ChangeRecord::decode(*version, bytes))
                        .collect();
                    let last = if full {
                        rows.last().map_or(target, |(v, _)| *v)
                    } else {
                        target
                    };
                    Ok::<_, crate::store::StoreError>((decoded, last))
                })
                .await;
                let (records, last) = match batch {
                    Ok(Ok(found)) => found,
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "realtime cannot read the change log; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "realtime change log reader failed");
                        return;
                    }
                };
                for record in records {
                    match record {
                        Ok(record) => self.fan_out(Arc::new(record)),
                        Err(err) => tracing::error!(error = %err, "skipping a change log record"),
                    }
                }
                processed = last;
                self.processed.store(processed, Ordering::Release);
                self.metrics
                    .realtime
                    .fanout_latency
                    .observe(noticed.elapsed().as_secs_f64());
            }
            tokio::select! {
                changed = committed.changed() => if changed.is_err() { return },
                _ = stop.changed() => return,
            }
        }
    }

    /// Queues one record on every connection with a subscription it may concern.
    fn fan_out(&self, record: Arc<ChangeRecord>) {
        let state = self.lock();
        let mut keys: Vec<SubKey> = Vec::new();
        for change in &record.changes {
            state.index.lookup(
                &change.path,
                change.before.as_ref(),
                change.after.as_ref().map(|a| &a.document),
                &mut keys,
            );
        }
        if keys.is_empty() {
            return;
        }
        keys.sort_unstable();
        keys.dedup();
        let mut start = 0;
        while start < keys.len() {
            let connection = keys[start].0;
            let end = keys[start..]
                .iter()
                .position(|k| k.0 != connection)
                .map_or(keys.len(), |p| start + p);
            let subscriptions = keys[start..end].iter().map(|k| k.1).collect();
            start = end;
            let Some(handle) = state.connections.get(&connection) else {
                continue;
            };
            if handle.kill.reason().is_some() {
                continue;
            }
            let event = Event {
                record: record.clone(),
                subscriptions,
            };
            if let Err(mpsc::error::TrySendError::Full(_)) = handle.sender.try_send(event) {
                handle.kill.fire(Kill::SlowConsumer);
                self.metrics
                    .realtime
                    .slow_consumer_closes
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(state);
    }
}
