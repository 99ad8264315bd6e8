//! Hooks (DESIGN.md §6): functions reached over HTTP that validate writes before they commit
//! (`before`) or react to them afterwards (`after`, delivered from an outbox written in the
//! same commit as the change).
//!
//! This module knows nothing of documents or users: the documents and auth layers hand it
//! events as JSON, ask `run_before` for a verdict, and add `after` entries to their commits with
//! `add_after_entries`. It depends on the store, the settings and the metrics only.

pub mod call;
pub mod definition;
pub mod event;
pub mod outbox;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rand::Rng as _;
use serde_json::{json, Value as Json};

use call::{backoff, CallError, HookClient, HookRuntime, MetricsOut};
use definition::{parse_definition, DefinitionLimits};
pub use definition::{EventKind, HookDefinition, Mode, OnFailure};
use event::Event;
use outbox::{Entry, EventPosition, Status};

use crate::config::HookSettings;
use crate::store::{commit, KeyRange, SharedStore, Space, StoreError, WriteSet};

/// Longest rejection message passed on to the client.
const MAX_MESSAGE_CHARS: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum HooksError {
    /// A `before` hook said no; `message` is the function's, shown to the client.
    #[error("{message}")]
    Rejected { hook: String, message: String },
    /// A `before` hook with `onFailure: reject` could not give an answer.
    #[error("hook '{hook}' is unavailable: {reason}")]
    Unavailable { hook: String, reason: String },
    /// An invalid definition, every problem listed.
    #[error("invalid hook definition: {}", .0.join("; "))]
    Invalid(Vec<String>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored hook data is corrupt: {0}")]
    Corrupt(String),
}

/// One `before` event: what the function is asked to judge.
pub struct BeforeCall {
    pub kind: EventKind,
    /// The document path, or `users/{uid}` for auth events.
    pub subject: String,
    pub before: Json,
    pub after: Json,
    pub auth: Json,
}

/// One change of a commit, for the `after` hooks.
pub struct AfterEvent<'a> {
    /// The change's position among its commit's changes (unique per commit).
    pub index: u32,
    pub kind: EventKind,
    pub subject: &'a str,
    /// RFC 3339 time of the commit.
    pub time: &'a str,
    /// `{"before", "after", "auth"}`.
    pub data: &'a Json,
}

/// A pending outbox entry read for delivery: its key, position and content.
type PendingEntry = (Vec<u8>, EventPosition, Entry);

/// The hooks defined now, in run order (`order`, then name).
#[derive(Default)]
struct Catalog {
    hooks: Vec<Arc<HookDefinition>>,
}

/// Entries a commit adds to the outbox, announced to the delivery workers once it is durable.
#[derive(Default)]
pub struct OutboxAdditions {
    per_hook: HashMap<String, i64>,
}

impl OutboxAdditions {
    pub fn is_empty(&self) -> bool {
        self.per_hook.is_empty()
    }
}

pub struct Hooks {
    store: SharedStore,
    client: HookClient,
    catalog: RwLock<Arc<Catalog>>,
    runtimes: Mutex<HashMap<String, Arc<HookRuntime>>>,
    workers: Mutex<HashMap<String, tokio::task::JoinHandle<()>>>,
    /// Serialises definition changes: each reads the live catalog, stores, then swaps it.
    changes: tokio::sync::Mutex<()>,
}

impl Hooks {
    /// Loads the definitions and counts the outbox; `start_delivery` starts the workers.
    /// Reads the store: call it off the executor.
    pub fn open(store: SharedStore, settings: HookSettings) -> Result<Arc<Hooks>, HooksError> {
        let client = HookClient::new(settings).map_err(HooksError::InvalidArgument)?;
        let hooks = Arc::new(Hooks {
            store,
            client,
            catalog: RwLock::new(Arc::new(Catalog::default())),
            runtimes: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            changes: tokio::sync::Mutex::new(()),
        });
        let (definitions, depths) = hooks.load()?;
        for (name, depth) in &depths {
            hooks
                .runtime(name)
                .outbox_depth
                .store(*depth, std::sync::atomic::Ordering::Relaxed);
        }
        hooks.install(definitions);
        Ok(hooks)
    }

    async fn blocking<T: Send + 'static>(
        self: Arc<Self>,
        work: impl FnOnce(&Hooks) -> Result<T, HooksError> + Send + 'static,
    ) -> Result<T, HooksError> {
        crate::store::pool::run(move || work(&self))
            .await
            .map_err(|e| HooksError::Corrupt(format!("background task failed: {e}")))?
    }

    /// Up to `limit` entries of `range` in `Space::Hooks`, off the executor.
    async fn scan(
        self: &Arc<Self>,
        range: KeyRange,
        limit: usize,
    ) -> Result<Vec<crate::store::Entry>, HooksError> {
        self.clone()
            .blocking(move |hooks| {
                Ok(hooks
                    .store
                    .read()?
                    .scan(Space::Hooks, &range, limit, false)?)
            })
            .await
    }

    /// Definitions and each hook's pending outbox size.
    #[allow(clippy::type_complexity)]
    fn load(&self) -> Result<(Vec<HookDefinition>, Vec<(String, i64)>), HooksError> {
        let view = self.store.read()?;
        let rows = view.scan(
            Space::Hooks,
            &KeyRange::prefix(outbox::DEFINITION_PREFIX),
            usize::MAX,
            false,
        )?;
        let mut definitions = Vec::with_capacity(rows.len());
        let mut depths = Vec::new();
        for (key, value) in rows {
            let name = String::from_utf8_lossy(&key[outbox::DEFINITION_PREFIX.len()..]).to_string();
            let json: Json = serde_json::from_slice(&value)
                .map_err(|e| HooksError::Corrupt(format!("hook '{name}': {e}")))?;
            let definition = parse_definition(&name, &json, None, &self.definition_limits(true))
                .map_err(|problems| {
                    HooksError::Corrupt(format!("hook '{name}': {}", problems.join("; ")))
                })?;
            // Counted once per start, in pages so a large backlog does not sit in memory;
            // afterwards commits and deliveries keep the gauge current.
            let mut range = KeyRange::prefix(&outbox::status_prefix(&name, Status::Pending));
            let mut pending = 0i64;
            loop {
                let page = view.scan(Space::Hooks, &range, 10_000, false)?;
                let Some((last, _)) = page.last() else { break };
                range = range.after(last);
                pending += page.len() as i64;
            }
            depths.push((name, pending));
            definitions.push(definition);
        }
        Ok((definitions, depths))
    }

    /// At load time stored definitions are trusted as to the allow-list (it may have changed);
    /// calls still check it.
    fn definition_limits(&self, loading: bool) -> DefinitionLimits<'_> {
        DefinitionLimits {
            max_timeout_ms: self.client.settings().max_timeout_ms,
            allowed_hosts: if loading {
                &[]
            } else {
                &self.client.settings().allowed_hosts
            },
        }
    }

    fn install(&self, mut definitions: Vec<HookDefinition>) {
        definitions.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
        let catalog = Catalog {
            hooks: definitions.into_iter().map(Arc::new).collect(),
        };
        if let Ok(mut slot) = self.catalog.write() {
            *slot = Arc::new(catalog);
        }
    }

    fn snapshot(&self) -> Arc<Catalog> {
        self.catalog.read().map(|c| c.clone()).unwrap_or_default()
    }

    fn runtime(&self, name: &str) -> Arc<HookRuntime> {
        let Ok(mut runtimes) = self.runtimes.lock() else {
            return Arc::new(HookRuntime::new(
                self.client.settings().max_concurrency_per_hook,
            ));
        };
        runtimes
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(HookRuntime::new(
                    self.client.settings().max_concurrency_per_hook,
                ))
            })
            .clone()
    }

    // ----- the admin API -----

    pub fn list(&self) -> Vec<Json> {
        self.snapshot()
            .hooks
            .iter()
            .map(|h| h.public_json())
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Json, HooksError> {
        self.definition(name)
            .map(|h| h.public_json())
            .ok_or_else(|| not_found(name))
    }

    fn definitions_except(&self, name: &str) -> Vec<HookDefinition> {
        self.snapshot()
            .hooks
            .iter()
            .filter(|h| h.name != name)
            .map(|h| (**h).clone())
            .collect()
    }

    fn definition(&self, name: &str) -> Option<Arc<HookDefinition>> {
        self.snapshot()
            .hooks
            .iter()
            .find(|h| h.name == name)
            .cloned()
    }

    /// Checks a definition without storing it (migrations validate before they apply).
    pub fn validate(&self, name: &str, body: &Json) -> Result<HookDefinition, Vec<String>> {
        let existing = self.definition(name);
        parse_definition(
            name,
            body,
            existing.as_ref().map(|h| &h.secret),
            &self.definition_limits(false),
        )
    }

    /// Creates or replaces a hook; true when it is new. Takes effect for the next request.
    pub async fn put(
        self: &Arc<Self>,
        name: &str,
        body: &Json,
    ) -> Result<(Json, bool), HooksError> {
        let definition = self.validate(name, body).map_err(HooksError::Invalid)?;
        let created = self.definition(name).is_none();
        let mut write = WriteSet::default();
        write.put(
            Space::Hooks,
            outbox::definition_key(name),
            serde_json::to_vec(&definition.stored_json()).unwrap_or_default(),
        );
        store_commit(&self.store, write).await?;
        let public = definition.public_json();
        let mut definitions = self.definitions_except(name);
        definitions.push(definition);
        self.install(definitions);
        self.sync_workers();
        Ok((public, created))
    }

    /// Deletes a hook with its outbox and delivery log.
    pub async fn delete(self: &Arc<Self>, name: &str) -> Result<(), HooksError> {
        let _change = self.changes.lock().await;
        if self.definition(name).is_none() {
            return Err(not_found(name));
        }
        let mut write = WriteSet::default();
        write.delete(Space::Hooks, outbox::definition_key(name));
        store_commit(&self.store, write).await?;
        self.install(self.definitions_except(name));
        self.sync_workers();
        // Entries of a deleted hook are never delivered; remove them in bounded commits.
        for status in [Status::Pending, Status::Delivered, Status::Failed] {
            let prefix = outbox::status_prefix(name, status);
            loop {
                let keys = self.scan(KeyRange::prefix(&prefix), 1_000).await?;
                if keys.is_empty() {
                    break;
                }
                let mut write = WriteSet::default();
                for (key, _) in keys {
                    write.delete(Space::Hooks, key);
                }
                store_commit(&self.store, write).await?;
            }
        }
        if let Ok(mut runtimes) = self.runtimes.lock() {
            runtimes.remove(name);
        }
        Ok(())
    }

    /// Deliveries of a hook in one state, oldest first, after the delivery `after` (an event
    /// id) when given: up to `limit` of them, and whether more follow.
    pub async fn deliveries(
        self: &Arc<Self>,
        name: &str,
        status: Status,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Json>, bool), HooksError> {
        if self.definition(name).is_none() {
            return Err(not_found(name));
        }
        let prefix = outbox::status_prefix(name, status);
        let mut range = KeyRange::prefix(&prefix);
        if let Some(id) = after {
            let position = EventPosition::parse_event_id(id).ok_or_else(|| {
                HooksError::InvalidArgument(format!("after: '{id}' is not a delivery id"))
            })?;
            range = range.after(&position.key(&prefix));
        }
        let rows = self.scan(range, limit + 1).await?;
        let more = rows.len() > limit;
        let deliveries = rows
            .iter()
            .take(limit)
            .filter_map(|(key, value)| {
                Some(Entry::decode(value)?.summary(EventPosition::from_key(&prefix, key)?))
            })
            .collect();
        Ok((deliveries, more))
    }

    /// Queues a failed delivery again, with fresh attempts and the same event id.
    pub async fn redeliver(self: &Arc<Self>, name: &str, id: &str) -> Result<Json, HooksError> {
        if self.definition(name).is_none() {
            return Err(not_found(name));
        }
        let position = EventPosition::parse_event_id(id)
            .ok_or_else(|| HooksError::NotFound(format!("no delivery '{id}' of hook '{name}'")))?;
        let log_key = position.key(&outbox::status_prefix(name, Status::Failed));
        let lookup = log_key.clone();
        let stored = self
            .clone()
            .blocking(move |hooks| {
                Ok(hooks
                    .store
                    .read()?
                    .get_many(Space::Hooks, &[lookup])?
                    .pop()
                    .flatten())
            })
            .await?;
        let Some(mut entry) = stored
            .as_deref()
            .and_then(Entry::decode)
            .filter(|e| e.status == Status::Failed)
        else {
            return Err(HooksError::NotFound(format!(
                "no failed delivery '{id}' of hook '{name}' (pending ones are retried already; delivered ones are done)"
            )));
        };
        let now = outbox::now_ms();
        entry.status = Status::Pending;
        entry.attempts = 0;
        entry.created_ms = now;
        entry.next_attempt_ms = 0;
        entry.finished_ms = None;
        let mut write = WriteSet::default();
        write.delete(Space::Hooks, log_key);
        write.put(
            Space::Hooks,
            position.key(&outbox::status_prefix(name, Status::Pending)),
            entry.encode(),
        );
        store_commit(&self.store, write).await?;
        let runtime = self.runtime(name);
        runtime
            .outbox_depth
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.wake.notify_one();
        Ok(entry.summary(position))
    }

    // ----- before hooks -----

    /// True when some `before` hook listens to `kind` at all (the fast path skips the rest).
    pub fn has_before(&self, kind: EventKind) -> bool {
        self.snapshot()
            .hooks
            .iter()
            .any(|h| h.mode == Mode::Before && h.events.contains(&kind))
    }

    /// True when some `before` hook listens to a document event (the write path's fast check).
    pub fn has_before_document_hooks(&self) -> bool {
        self.snapshot()
            .hooks
            .iter()
            .any(|h| h.mode == Mode::Before && h.events.iter().any(|e| e.is_document()))
    }

    pub fn wants_before(&self, kind: EventKind, subject: &str) -> bool {
        self.snapshot()
            .hooks
            .iter()
            .any(|h| h.wants(Mode::Before, kind, subject))
    }

    /// Runs every `before` hook of the event in order. `Ok(Some(data))` when hooks replaced
    /// the document data (each later hook sees the replacement); `check_data` decides whether a
    /// replacement is a valid document.
    pub async fn run_before(
        &self,
        call: BeforeCall,
        check_data: &(dyn Fn(&Json) -> Result<(), String> + Sync),
    ) -> Result<Option<Json>, HooksError> {
        let hooks: Vec<Arc<HookDefinition>> = self
            .snapshot()
            .hooks
            .iter()
            .filter(|h| h.wants(Mode::Before, call.kind, &call.subject))
            .cloned()
            .collect();
        let mut after = call.after;
        let mut replaced = None;
        for hook in hooks {
            let event = Event {
                id: random_event_id(),
                kind: call.kind,
                subject: call.subject.clone(),
                time: outbox::rfc3339_ms(outbox::now_ms()),
                data: json!({"before": call.before, "after": after, "auth": call.auth}),
            };
            let runtime = self.runtime(&hook.name);
            let kind = call.kind;
            let verdict = self
                .client
                .post(&hook, &runtime, &event, |body| {
                    read_verdict(body, kind, check_data)
                })
                .await;
            match verdict {
                Ok(Verdict::Reject(message)) => {
                    return Err(HooksError::Rejected {
                        hook: hook.name.clone(),
                        message,
                    })
                }
                Ok(Verdict::Allow(None)) => {}
                Ok(Verdict::Allow(Some(data))) => {
                    if let Some(doc) = after.as_object_mut() {
                        doc.insert("data".into(), data.clone());
                    }
                    replaced = Some(data);
                }
                Err(err) => match hook.on_failure {
                    OnFailure::Reject => {
                        tracing::warn!(hook = %hook.name, error = %err, "before hook failed; rejecting the request");
                        return Err(HooksError::Unavailable {
                            hook: hook.name.clone(),
                            reason: err.to_string(),
                        });
                    }
                    OnFailure::Allow => {
                        tracing::warn!(hook = %hook.name, error = %err, "before hook failed; allowing the request (onFailure: allow)");
                    }
                },
            }
        }
        Ok(replaced)
    }

    // ----- after hooks: the outbox -----

    /// Adds an outbox entry to `write` for every `after` hook of the event; `after.version`
    /// in its data is filled in when the event is sent.
    pub fn add_after_entries(
        &self,
        write: &mut WriteSet,
        additions: &mut OutboxAdditions,
        event: AfterEvent<'_>,
    ) {
        let now = outbox::now_ms();
        for hook in self
            .snapshot()
            .hooks
            .iter()
            .filter(|h| h.wants(Mode::After, event.kind, event.subject))
        {
            let entry = Entry::new(
                event.kind,
                event.subject,
                event.time,
                event.data.clone(),
                now,
            );
            write.put_at_version(
                Space::Hooks,
                outbox::status_prefix(&hook.name, Status::Pending),
                EventPosition::index_suffix(event.index),
                entry.encode(),
            );
            *additions.per_hook.entry(hook.name.clone()).or_insert(0) += 1;
        }
    }

    /// True when some `after` hook listens to `kind` (lets callers skip building event data).
    pub fn has_after(&self, kind: EventKind) -> bool {
        self.snapshot()
            .hooks
            .iter()
            .any(|h| h.mode == Mode::After && h.events.contains(&kind))
    }

    /// Called once the commit carrying `additions` is durable: wakes the delivery workers.
    pub fn committed(&self, additions: OutboxAdditions) {
        for (name, count) in additions.per_hook {
            let runtime = self.runtime(&name);
            runtime
                .outbox_depth
                .fetch_add(count, std::sync::atomic::Ordering::Relaxed);
            runtime.wake.notify_one();
        }
    }

    /// Starts a delivery worker for every `after` hook (and for each one defined later).
    pub fn start_delivery(self: &Arc<Self>) {
        self.sync_workers();
    }

    /// Stops the delivery workers (at shutdown). Pending entries stay in the outbox.
    pub fn stop_delivery(&self) {
        if let Ok(mut workers) = self.workers.lock() {
            for (_, worker) in workers.drain() {
                worker.abort();
            }
        }
    }

    fn sync_workers(self: &Arc<Self>) {
        let wanted: HashSet<String> = self
            .snapshot()
            .hooks
            .iter()
            .filter(|h| h.mode == Mode::After)
            .map(|h| h.name.clone())
            .collect();
        let Ok(mut workers) = self.workers.lock() else {
            return;
        };
        workers.retain(|name, worker| {
            let keep = wanted.contains(name) && !worker.is_finished();
            if !keep {
                worker.abort();
            }
            keep
        });
        for name in wanted {
            if !workers.contains_key(&name) {
                let hooks = self.clone();
                let worker_name = name.clone();
                workers.insert(
                    name,
                    tokio::spawn(async move { hooks.deliver_forever(worker_name).await }),
                );
            }
        }
    }

    async fn deliver_forever(self: Arc<Self>, name: String) {
        let runtime = self.runtime(&name);
        let mut last_trim = std::time::Instant::now();
        loop {
            let Some(hook) = self.definition(&name).filter(|h| h.mode == Mode::After) else {
                return;
            };
            let round = self.delivery_round(&hook, &runtime).await;
            // Trimmed while a backlog drains too, not only when the worker is idle.
            if last_trim.elapsed() > Duration::from_secs(60) {
                last_trim = std::time::Instant::now();
                if let Err(err) = self.trim_log(&name).await {
                    tracing::warn!(hook = %name, error = %err, "trimming the delivery log failed");
                }
            }
            let wait = match round {
                Ok(Round::More) => continue,
                Ok(Round::Idle { next_due_ms }) => {
                    let until =
                        next_due_ms.map_or(1_000, |due| (due - outbox::now_ms()).clamp(10, 1_000));
                    Duration::from_millis(until as u64)
                }
                Err(err) => {
                    tracing::error!(hook = %name, error = %err, "hook delivery round failed");
                    Duration::from_secs(1)
                }
            };
            let _ = tokio::time::timeout(wait, runtime.wake.notified()).await;
        }
    }

    /// Delivers what is due from the front of the outbox: each subject's entries in order, one
    /// after the other; different subjects concurrently (capped by the hook's connections).
    async fn delivery_round(
        self: &Arc<Self>,
        hook: &Arc<HookDefinition>,
        runtime: &Arc<HookRuntime>,
    ) -> Result<Round, HooksError> {
        let settings = self.client.settings().clone();
        let prefix = outbox::status_prefix(&hook.name, Status::Pending);
        let batch = settings.delivery_batch;
        let rows = self.scan(KeyRange::prefix(&prefix), batch).await?;
        let full_batch = rows.len() >= batch;
        let now = outbox::now_ms();
        let oldest = rows
            .first()
            .and_then(|(_, v)| Entry::decode(v))
            .map_or(0, |e| e.created_ms);
        runtime
            .oldest_pending_ms
            .store(oldest, std::sync::atomic::Ordering::Relaxed);
        if let Some(until) = runtime.breaker_open_until() {
            let wait = until.saturating_duration_since(std::time::Instant::now());
            return Ok(Round::Idle {
                next_due_ms: Some(now + wait.as_millis() as i64),
            });
        }

        // Chains of due entries per subject, in key (= commit) order. A subject whose first
        // pending entry is not due yet waits entirely: later entries must not overtake it.
        let mut stalled: HashSet<String> = HashSet::new();
        let mut chains: Vec<Vec<PendingEntry>> = Vec::new();
        let mut chain_of: HashMap<String, usize> = HashMap::new();
        let mut next_due_ms: Option<i64> = None;
        for (key, value) in rows {
            let (Some(position), Some(entry)) = (
                EventPosition::from_key(&prefix, &key),
                Entry::decode(&value),
            ) else {
                tracing::error!(hook = %hook.name, "skipping an undecodable outbox entry");
                continue;
            };
            if stalled.contains(&entry.subject) {
                continue;
            }
            if entry.next_attempt_ms > now {
                // Only a subject's first pending entry has been tried, so a waiting entry is
                // always the head of its subject: everything after it waits too.
                next_due_ms = Some(
                    next_due_ms.map_or(entry.next_attempt_ms, |d| d.min(entry.next_attempt_ms)),
                );
                stalled.insert(entry.subject.clone());
                continue;
            }
            let index = *chain_of.entry(entry.subject.clone()).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[index].push((key, position, entry));
        }
        if chains.is_empty() {
            return Ok(Round::Idle { next_due_ms });
        }

        let deliveries = chains.into_iter().map(|chain| {
            let hooks = self.clone();
            let hook = hook.clone();
            let runtime = runtime.clone();
            async move {
                let mut outcomes = Vec::new();
                for (key, position, entry) in chain {
                    let Some(event) = entry.to_event(position) else {
                        outcomes.push((
                            key,
                            position,
                            entry,
                            Err(CallError::InvalidAnswer("undecodable entry".into())),
                        ));
                        break;
                    };
                    let result = hooks.client.post(&hook, &runtime, &event, |_| Ok(())).await;
                    let stop = result.is_err();
                    outcomes.push((key, position, entry, result));
                    if stop {
                        break;
                    }
                }
                outcomes
            }
        });
        let outcomes: Vec<_> = futures_util::future::join_all(deliveries)
            .await
            .into_iter()
            .flatten()
            .collect();

        let now = outbox::now_ms();
        let mut write = WriteSet::default();
        let mut finished = 0i64;
        let mut delivered = 0u64;
        let delivered_prefix = outbox::status_prefix(&hook.name, Status::Delivered);
        let failed_prefix = outbox::status_prefix(&hook.name, Status::Failed);
        for (key, position, mut entry, result) in outcomes {
            match result {
                Ok(()) => {
                    // The log keeps what the admin API shows; the event data is not needed
                    // again (only failed deliveries can be redelivered), so it is not written.
                    entry.data = Json::Null;
                    entry.attempts += 1;
                    entry.status = Status::Delivered;
                    entry.last_attempt_ms = Some(now);
                    entry.finished_ms = Some(now);
                    entry.last_error = None;
                    write.delete(Space::Hooks, key);
                    write.put(
                        Space::Hooks,
                        position.key(&delivered_prefix),
                        entry.encode(),
                    );
                    finished += 1;
                    delivered += 1;
                }
                // The call was never made: nothing to record, the entry waits its turn.
                Err(CallError::BreakerOpen | CallError::Busy) => {}
                Err(err) => {
                    entry.attempts += 1;
                    entry.last_attempt_ms = Some(now);
                    entry.last_error = Some(err.to_string());
                    let age_ms = now - entry.created_ms;
                    if age_ms >= (settings.retry_window_secs as i64).saturating_mul(1_000) {
                        tracing::warn!(hook = %hook.name, id = %position.event_id(), attempts = entry.attempts, "giving up on a delivery; it stays in the log for redelivery");
                        entry.status = Status::Failed;
                        entry.finished_ms = Some(now);
                        write.delete(Space::Hooks, key);
                        write.put(Space::Hooks, position.key(&failed_prefix), entry.encode());
                        finished += 1;
                    } else {
                        let delay = backoff(
                            entry.attempts,
                            settings.retry_base_ms,
                            settings.retry_max_ms,
                        );
                        entry.next_attempt_ms = now + delay as i64;
                        next_due_ms = Some(
                            next_due_ms
                                .map_or(entry.next_attempt_ms, |d| d.min(entry.next_attempt_ms)),
                        );
                        write.put(Space::Hooks, key, entry.encode());
                    }
                }
            }
        }
        if !write.ops.is_empty() {
            store_commit(&self.store, write).await?;
        }
        runtime
            .outbox_depth
            .fetch_sub(finished, std::sync::atomic::Ordering::Relaxed);
        runtime
            .deliveries
            .fetch_add(delivered, std::sync::atomic::Ordering::Relaxed);
        if delivered > 0 && full_batch {
            Ok(Round::More)
        } else {
            Ok(Round::Idle { next_due_ms })
        }
    }

    /// Drops delivered entries older than the retention from the log (failed ones stay until
    /// redelivered or the hook is deleted).
    async fn trim_log(self: &Arc<Self>, name: &str) -> Result<(), HooksError> {
        let cutoff = outbox::now_ms()
            - (self.client.settings().delivery_log_retention_secs as i64).saturating_mul(1_000);
        let prefix = outbox::status_prefix(name, Status::Delivered);
        // Oldest first (commit order): stop at the first entry still within the retention.
        loop {
            let rows = self.scan(KeyRange::prefix(&prefix), 1_000).await?;
            let mut write = WriteSet::default();
            let mut reached_retained = rows.len() < 1_000;
            for (key, value) in rows {
                let finished = Entry::decode(&value)
                    .and_then(|e| e.finished_ms)
                    .unwrap_or(0);
                if finished >= cutoff {
                    reached_retained = true;
                    break;
                }
                write.delete(Space::Hooks, key);
            }
            if !write.ops.is_empty() {
                store_commit(&self.store, write).await?;
            }
            if reached_retained {
                return Ok(());
            }
        }
    }

    /// The hook families of `/metrics`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let mut parts = MetricsOut::default();
        let runtimes: Vec<(String, Arc<HookRuntime>)> = self
            .runtimes
            .lock()
            .map(|r| r.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        let now = outbox::now_ms();
        let mut sorted = runtimes;
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, runtime) in &sorted {
            runtime.render(name, &mut parts);
            let depth = runtime
                .outbox_depth
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(0);
            let _ = writeln!(
                parts.depth,
                "hearth_hook_outbox_depth{{hook=\"{name}\"}} {depth}"
            );
            let oldest = runtime
                .oldest_pending_ms
                .load(std::sync::atomic::Ordering::Relaxed);
            let age = if depth == 0 || oldest == 0 {
                0.0
            } else {
                (now - oldest).max(0) as f64 / 1_000.0
            };
            let _ = writeln!(
                parts.oldest,
                "hearth_hook_outbox_oldest_pending_seconds{{hook=\"{name}\"}} {age}"
            );
        }
        let mut out = String::new();
        for (name, kind, help, body) in [
            (
                "hearth_hook_calls_total",
                "counter",
                "Hook calls by hook, mode and outcome.",
                &parts.calls,
            ),
            (
                "hearth_hook_call_duration_seconds",
                "histogram",
                "Hook call latency.",
                &parts.latency,
            ),
            (
                "hearth_hook_breaker_state",
                "gauge",
                "Circuit breaker: 0 closed, 1 open, 2 half-open.",
                &parts.breaker,
            ),
            (
                "hearth_hook_outbox_depth",
                "gauge",
                "After-hook deliveries not yet delivered or given up.",
                &parts.depth,
            ),
            (
                "hearth_hook_outbox_oldest_pending_seconds",
                "gauge",
                "Age of the oldest pending delivery.",
                &parts.oldest,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            out.push_str(body);
        }
        out
    }
}

enum Round {
    /// A full batch was delivered: look again at once.
    More,
    Idle {
        next_due_ms: Option<i64>,
    },
}

enum Verdict {
    Allow(Option<Json>),
    Reject(String),
}

/// `{"allow": true}`, `{"allow": true, "data": {...}}` or `{"allow": false, "message": "..."}`.
fn read_verdict(
    body: &[u8],
    kind: EventKind,
    check_data: &(dyn Fn(&Json) -> Result<(), String> + Sync),
) -> Result<Verdict, String> {
    let answer: Json =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
    let object = answer
        .as_object()
        .ok_or("the answer must be a JSON object with 'allow'")?;
    match object.get("allow") {
        Some(Json::Bool(false)) => {
            let message = object
                .get("message")
                .and_then(Json::as_str)
                .unwrap_or("rejected by a hook");
            Ok(Verdict::Reject(
                message.chars().take(MAX_MESSAGE_CHARS).collect(),
            ))
        }
        Some(Json::Bool(true)) => match object.get("data") {
            None | Some(Json::Null) => Ok(Verdict::Allow(None)),
            Some(data) => {
                if !matches!(kind, EventKind::DocumentCreate | EventKind::DocumentUpdate) {
                    return Err(format!(
                        "'data' cannot replace anything on {}",
                        kind.as_str()
                    ));
                }
                check_data(data).map_err(|e| format!("'data' is not a valid document: {e}"))?;
                Ok(Verdict::Allow(Some(data.clone())))
            }
        },
        _ => Err("'allow' must be true or false".into()),
    }
}

fn random_event_id() -> String {
    let bytes: [u8; 12] = rand::rng().random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("evt_{hex}")
}

fn not_found(name: &str) -> HooksError {
    HooksError::NotFound(format!("no hook named '{name}'"))
}

async fn store_commit(store: &SharedStore, write: WriteSet) -> Result<(), HooksError> {
    match commit(store.as_ref(), write).await {
        Ok(_) => Ok(()),
        // Hook writes carry no checks, so a conflict cannot happen; treat it as a store fault.
        Err(crate::store::CommitError::Conflict) => {
            Err(StoreError::Engine("unexpected commit conflict".into()).into())
        }
        Err(crate::store::CommitError::Store(err)) => Err(err.into()),
    }
}
