//! The hub: one task follows `Store::committed()`, reads each new change-log record in commit
//! order, finds what it may concern through the `SubscriptionIndex` and queues it on the
//! connections' bounded queues: document subscriptions get the record (their connection checks
//! the rules per change), query subscriptions share one `Feed` per distinct query whose changes
//! are computed and rendered here once per commit. A connection whose queue is full is a slow
//! consumer: it gets nothing more and is told to close with 4008 (its client resumes with
//! `resumeFrom`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::watch;

use super::feed::{Feed, FeedFailed, FeedId, Joiner, Member, Opening};
use super::index::{ConnId, Placement, SubscriptionIndex, Watcher};
use super::mailbox::{Kill, Mailbox};
use super::record::ChangeRecord;
use super::view::{Entry, Spec};
use crate::config::RealtimeSettings;
use crate::docs::Docs;
use crate::metrics::Metrics;
use crate::roles::Roles;
use crate::store::changelog::{self, Retention};
use crate::store::SharedStore;

/// Records read from the change log per step.
const TAIL_BATCH: usize = 256;

/// What the hub queues for a connection, in commit order.
pub enum Event {
    /// One commit for the connection's document subscriptions it may concern.
    Record {
        record: Arc<ChangeRecord>,
        subscriptions: Vec<u32>,
    },
    /// A query subscription's first message: its feed's result, or the changes since the
    /// client's `resumeFrom`.
    Opening { local: u32, opening: Opening },
    /// The `changes` arrays of consecutive commits for a query subscription (each rendered
    /// once per feed; the mailbox merges them while the connection is behind), `version` the
    /// last one's, `bytes` their length.
    Changes {
        local: u32,
        version: u64,
        arrays: Vec<Arc<str>>,
        bytes: usize,
    },
    /// A query subscription's feed failed: the subscription is over.
    Failed { local: u32 },
}

struct ConnHandle {
    mailbox: Arc<Mailbox>,
    /// The connection's query subscriptions and their feeds.
    feeds: HashMap<u32, FeedId>,
}

/// Queues an event for a connection; a full mailbox makes it a slow consumer.
fn deliver(mailbox: &Mailbox, event: Event, metrics: &Metrics) {
    if mailbox.push(event).is_err() {
        mailbox.kill(Kill::SlowConsumer);
        metrics
            .realtime
            .slow_consumer_closes
            .fetch_add(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct HubState {
    index: SubscriptionIndex,
    connections: HashMap<ConnId, ConnHandle>,
    feeds: HashMap<FeedId, Feed>,
    /// Query key → its feed.
    feed_keys: HashMap<String, FeedId>,
    next_feed: FeedId,
    /// Feeds with subscriptions waiting for their first message.
    waiting: HashSet<FeedId>,
    /// The last version fanned out.
    processed: u64,
}

/// Whether joining a feed created it: then the caller reads its first result.
pub enum Joined {
    Existing,
    Created(FeedId),
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
            state: Mutex::new(HubState {
                processed: start,
                ..HubState::default()
            }),
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

    /// Registers a connection: its id and its bounded mailbox.
    pub fn connect(&self) -> (ConnId, Arc<Mailbox>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let mailbox = Mailbox::new(self.settings.send_queue_capacity);
        self.lock().connections.insert(
            id,
            ConnHandle {
                mailbox: mailbox.clone(),
                feeds: HashMap::new(),
            },
        );
        self.metrics
            .realtime
            .connections
            .fetch_add(1, Ordering::Relaxed);
        if *self.stop.borrow() {
            mailbox.kill(Kill::Shutdown);
        }
        (id, mailbox)
    }

    /// Files a document subscription: every record fanned out after this call reaches it.
    pub fn subscribe_doc(&self, connection: ConnId, local: u32, placement: &Placement) {
        self.lock()
            .index
            .insert(placement, Watcher::Subscription(connection, local));
    }

    pub fn unsubscribe_doc(&self, connection: ConnId, local: u32, placement: &Placement) {
        self.lock()
            .index
            .remove(placement, Watcher::Subscription(connection, local));
    }

    /// Adds a query subscription to the feed of its query (created when there is none). The
    /// subscription's first message arrives on the connection's queue once the feed's result
    /// covers `joiner.at_least`. On `Created` the caller reads the first result and passes it to
    /// `start_feed`.
    pub fn join_feed(
        &self,
        key: String,
        spec: Arc<Spec>,
        placement: Placement,
        joiner: Joiner,
    ) -> Joined {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(handle) = state.connections.get_mut(&joiner.connection) else {
            return Joined::Existing; // Disconnected meanwhile.
        };
        let (id, created) = match state.feed_keys.get(&key) {
            Some(id) => (*id, false),
            None => {
                state.next_feed += 1;
                let id = state.next_feed;
                state.index.insert(&placement, Watcher::Feed(id));
                state.feed_keys.insert(key.clone(), id);
                state.feeds.insert(id, Feed::new(key, spec, placement));
                self.metrics.realtime.feeds.fetch_add(1, Ordering::Relaxed);
                (id, true)
            }
        };
        handle.feeds.insert(joiner.local, id);
        if let Some(feed) = state.feeds.get_mut(&id) {
            feed.waiting.push((joiner, handle.mailbox.clone()));
            state.waiting.insert(id);
        }
        open_waiting(state, &self.metrics);
        if created {
            Joined::Created(id)
        } else {
            Joined::Existing
        }
    }

    /// Takes a new feed's first result (read at `version`) and opens its waiting subscriptions.
    pub fn start_feed(&self, id: FeedId, first: Result<(Vec<Entry>, u64), String>) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(feed) = state.feeds.get_mut(&id) else {
            return; // Every subscription left meanwhile.
        };
        let started = first
            .map_err(FeedFailed)
            .and_then(|(entries, version)| feed.start(entries, version, &self.docs, &self.store));
        match started {
            Ok(()) => open_waiting(state, &self.metrics),
            Err(failed) => self.fail_feed(state, id, &failed),
        }
    }

    /// Removes a query subscription from its feed (the feed goes when its last one does).
    pub fn leave_feed(&self, connection: ConnId, local: u32) {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(id) = state
            .connections
            .get_mut(&connection)
            .and_then(|handle| handle.feeds.remove(&local))
        else {
            return;
        };
        self.remove_from_feed(state, id, connection, local);
    }

    fn remove_from_feed(&self, state: &mut HubState, id: FeedId, connection: ConnId, local: u32) {
        let Some(feed) = state.feeds.get_mut(&id) else {
            return;
        };
        feed.remove(connection, local);
        if feed.is_empty() {
            self.drop_feed(state, id);
        }
    }

    fn drop_feed(&self, state: &mut HubState, id: FeedId) {
        if let Some(feed) = state.feeds.remove(&id) {
            state.index.remove(&feed.placement, Watcher::Feed(id));
            if state.feed_keys.get(&feed.key) == Some(&id) {
                state.feed_keys.remove(&feed.key);
            }
            state.waiting.remove(&id);
            self.metrics.realtime.feeds.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Ends every subscription of a feed that cannot follow its query any more.
    fn fail_feed(&self, state: &mut HubState, id: FeedId, failed: &FeedFailed) {
        tracing::error!(error = %failed.0, "realtime could not follow a query");
        let Some(feed) = state.feeds.get(&id) else {
            return;
        };
        let subscriptions: Vec<(ConnId, u32)> = feed
            .members
            .iter()
            .map(|m| (m.connection, m.local))
            .chain(feed.waiting.iter().map(|(j, _)| (j.connection, j.local)))
            .collect();
        for (connection, local) in subscriptions {
            if let Some(handle) = state.connections.get_mut(&connection) {
                handle.feeds.remove(&local);
                deliver(&handle.mailbox, Event::Failed { local }, &self.metrics);
            }
        }
        self.drop_feed(state, id);
    }

    /// Forgets a closed connection: its document subscriptions and its places in feeds.
    pub fn disconnect(&self, connection: ConnId, documents: Vec<(u32, Placement)>) {
        let mut state = self.lock();
        let state = &mut *state;
        for (local, placement) in documents {
            state
                .index
                .remove(&placement, Watcher::Subscription(connection, local));
        }
        if let Some(handle) = state.connections.remove(&connection) {
            for (local, id) in handle.feeds {
                self.remove_from_feed(state, id, connection, local);
            }
        }
        self.metrics
            .realtime
            .connections
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// Stops tailing and asks every connection to close (1001, going away).
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
        for handle in self.lock().connections.values() {
            handle.mailbox.kill(Kill::Shutdown);
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
                let hub = self.clone();
                let from = processed;
                // Fan-out runs here too: feeds may refill from the store, and the hub's work
                // is synchronous (queues never block).
                let batch = tokio::task::spawn_blocking(move || hub.follow(from, target)).await;
                match batch {
                    Ok(Ok(last)) => processed = last,
                    Ok(Err(err)) => {
                        tracing::error!(error = %err, "realtime cannot read the change log; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        continue;
                    }
                    Err(err) => {
                        tracing::error!(error = %err, "realtime change log reader failed");
                        return;
                    }
                }
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

    /// Reads the records after `from` (up to `target`, one batch) and fans each out. Returns
    /// the version processed.
    fn follow(&self, from: u64, target: u64) -> Result<u64, crate::store::StoreError> {
        {
            // Nobody watches: nothing to read or decode. A subscription filed from now on reads
            // its first result at a version of at least `target`, so it skips these commits.
            let mut state = self.lock();
            if state.index.is_empty() {
                state.processed = state.processed.max(target);
                return Ok(target);
            }
        }
        let rows = {
            let view = self.store.read()?;
            changelog::records(view.as_ref(), from, target, TAIL_BATCH)?
        };
        let last = if rows.len() == TAIL_BATCH {
            rows.last().map_or(target, |(v, _)| *v)
        } else {
            target
        };
        for (version, bytes) in &rows {
            match ChangeRecord::decode(*version, bytes) {
                Ok(record) => self.fan_out(Arc::new(record)),
                Err(err) => tracing::error!(error = %err, "skipping a change log record"),
            }
        }
        let mut state = self.lock();
        state.processed = state.processed.max(last);
        open_waiting(&mut state, &self.metrics);
        Ok(last)
    }

    /// Queues one record on every connection with a document subscription it may concern, and
    /// applies it to every feed it may concern, queueing the feed's changes for its members.
    fn fan_out(&self, record: Arc<ChangeRecord>) {
        let mut state = self.lock();
        let state = &mut *state;
        state.processed = state.processed.max(record.version);
        let mut keys: Vec<Watcher> = Vec::new();
        for change in &record.changes {
            state.index.lookup(
                &change.path,
                change.before.as_ref(),
                change.after.as_ref().map(|a| &a.document),
                &mut keys,
            );
        }
        keys.sort_unstable();
        keys.dedup();
        let mut subscriptions: Vec<(ConnId, u32)> = Vec::new();
        for key in keys {
            match key {
                Watcher::Subscription(connection, local) => subscriptions.push((connection, local)),
                Watcher::Feed(id) => self.apply_to_feed(state, id, &record),
            }
        }
        let mut start = 0;
        while start < subscriptions.len() {
            let connection = subscriptions[start].0;
            let end = subscriptions[start..]
                .iter()
                .position(|k| k.0 != connection)
                .map_or(subscriptions.len(), |p| start + p);
            let locals = subscriptions[start..end].iter().map(|k| k.1).collect();
            start = end;
            if let Some(handle) = state.connections.get(&connection) {
                let event = Event::Record {
                    record: record.clone(),
                    subscriptions: locals,
                };
                deliver(&handle.mailbox, event, &self.metrics);
            }
        }
        if !state.waiting.is_empty() {
            open_waiting(state, &self.metrics);
        }
    }

    fn apply_to_feed(&self, state: &mut HubState, id: FeedId, record: &Arc<ChangeRecord>) {
        let Some(feed) = state.feeds.get_mut(&id) else {
            return;
        };
        match feed.apply(record, &self.docs, &self.store) {
            Ok(Some(changes)) => {
                for member in &feed.members {
                    let event = Event::Changes {
                        local: member.local,
                        version: record.version,
                        arrays: vec![changes.clone()],
                        bytes: changes.len(),
                    };
                    deliver(&member.mailbox, event, &self.metrics);
                }
            }
            Ok(None) => {}
            Err(failed) => self.fail_feed(state, id, &failed),
        }
    }
}

/// Sends their first message to the subscriptions whose feed now covers what they wait for.
fn open_waiting(state: &mut HubState, metrics: &Metrics) {
    let processed = state.processed;
    let waiting: Vec<FeedId> = state.waiting.iter().copied().collect();
    for id in waiting {
        let Some(feed) = state.feeds.get_mut(&id) else {
            state.waiting.remove(&id);
            continue;
        };
        if !feed.is_live() {
            continue;
        }
        let version = feed.version(processed);
        let (ready, still): (Vec<_>, Vec<_>) = std::mem::take(&mut feed.waiting)
            .into_iter()
            .partition(|(j, _)| j.at_least <= version);
        feed.waiting = still;
        for (mut joiner, mailbox) in ready {
            let opening = feed.opening(&mut joiner, processed);
            let event = Event::Opening {
                local: joiner.local,
                opening,
            };
            deliver(&mailbox, event, metrics);
            feed.members.push(Member {
                connection: joiner.connection,
                local: joiner.local,
                mailbox,
            });
        }
        if feed.waiting.is_empty() {
            state.waiting.remove(&id);
        }
    }
}
