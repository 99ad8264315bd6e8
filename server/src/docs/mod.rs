//! Documents: reads, atomic writes with preconditions and transforms, queries and indexes,
//! on top of the `Store`. No HTTP here; the API layer turns requests into these calls.

pub mod access;
pub mod error;
pub mod execute;
pub mod index;
pub mod planner;
pub mod query;
pub mod schema;
pub mod write;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value as Json};

pub use access::Access;
use access::{RulesCatalog, WriteCheck};
pub use error::DocsError;
use execute::QueryAnswer;
use index::{
    entries_for, CatalogData, CatalogSnapshot, CompositeIndex, Direction, EntryKind, IndexCatalog,
    IndexState, CATALOG_KEY,
};
use query::Query;
use write::{apply_write, Write, WriteEffect};

use crate::hooks::{AfterEvent, BeforeCall, EventKind, Hooks, OutboxAdditions};
use crate::metrics::Metrics;
use crate::model::document::{write_response_with_version, StoredHeader};
use crate::model::keys::document_key;
use crate::model::{DocPath, Document, FieldPath, Timestamp};
use crate::store::{
    commit, CommitError, Expect, ReadView, SharedStore, Space, StoreError, WriteSet,
};

/// Stripes of the per-document write locks.
const WRITE_LOCK_STRIPES: usize = 1_024;

fn stripe_of(path: &DocPath) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    path.hash(&mut hasher);
    (hasher.finish() % WRITE_LOCK_STRIPES as u64) as usize
}

/// Commits of at most this many writes are prepared inside the store's writer (see
/// `Docs::commit_inner`).
const MAX_WRITES_PREPARED_IN_WRITER: usize = 16;

/// Commits retried this often when concurrent commits keep changing their documents.
const MAX_COMMIT_ATTEMPTS: u32 = 20;
/// Documents backfilled per commit while an index builds.
const BACKFILL_BATCH: usize = 256;

/// The outcome of one write within a commit.
#[derive(Debug, Clone)]
pub struct WriteResult {
    pub path: DocPath,
    pub effect: WriteEffect,
    /// The document after the write (with the commit's version), if it exists.
    pub document: Option<Document>,
}

#[derive(Debug, Clone)]
pub struct CommitOutcome {
    pub version: u64,
    pub results: Vec<WriteResult>,
}

/// A document read without decoding its data: the bytes are sent to the client as they are.
pub struct RawDocument {
    pub header: StoredHeader,
    pub bytes: Vec<u8>,
}

impl RawDocument {
    pub fn data_json(&self) -> &[u8] {
        StoredHeader::data_bytes(&self.bytes)
    }
}

/// Settings of the documents layer.
#[derive(Debug, Clone)]
pub struct DocsLimits {
    /// Page size of queries that give no limit.
    pub default_page_size: usize,
    /// Largest `limit` a query may ask for.
    pub max_page_size: usize,
}

pub struct Docs {
    store: SharedStore,
    catalog: IndexCatalog,
    rules: RulesCatalog,
    schemas: schema::SchemaCatalog,
    /// Serialises this process's writers per document (striped), so writers of one hot
    /// document queue instead of failing each other's optimistic checks until they give up.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    limits: DocsLimits,
    metrics: Arc<Metrics>,
    /// `before` hooks judge writes; `after` hooks get outbox entries in the same commit.
    hooks: Arc<Hooks>,
}

impl Docs {
    /// Loads the index catalog and resumes building any index left half-built.
    pub async fn open(
        store: SharedStore,
        limits: DocsLimits,
        metrics: Arc<Metrics>,
        hooks: Arc<Hooks>,
    ) -> Result<Arc<Docs>, DocsError> {
        let docs = Arc::new(Docs {
            hooks,
            store,
            catalog: IndexCatalog::default(),
            rules: RulesCatalog::default(),
            schemas: schema::SchemaCatalog::default(),
            write_locks: (0..WRITE_LOCK_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            limits,
            metrics,
        });
        let snapshot = docs.blocking(|docs| docs.load_catalog()).await?;
        let building: Vec<u32> = snapshot
            .data
            .indexes
            .iter()
            .filter(|ix| ix.state == IndexState::Building)
            .map(|ix| ix.id)
            .collect();
        docs.catalog.replace(snapshot);
        docs.reload_schemas().await?;
        if let Some(source) = docs.rules_source().await? {
            match hearth_rules::Ruleset::parse(&source) {
                Ok(ruleset) => docs.rules.replace(Some(Arc::new(ruleset))),
                // Only valid rulesets are stored; a parse failure here means a newer server
                // stored rules this one cannot read. Deny rather than guess.
                Err(errors) => tracing::error!(
                    errors = errors.len(),
                    "stored security rules do not parse; client access is denied"
                ),
            }
        }
        for id in building {
            docs.clone().spawn_backfill(id);
        }
        Ok(docs)
    }

    pub fn limits(&self) -> &DocsLimits {
        &self.limits
    }

    /// Runs storage work on the storage pool so the executor never waits on disk.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&Docs) -> Result<T, DocsError> + Send + 'static,
    ) -> Result<T, DocsError> {
        let docs = self.clone();
        crate::store::pool::run(move || work(&docs))
            .await
            .map_err(|err| DocsError::Task(err.to_string()))?
    }

    fn load_catalog(&self) -> Result<CatalogSnapshot, DocsError> {
        let view = self.store.read()?;
        read_catalog(view.as_ref())
    }

    /// One document, still encoded.
    pub async fn get_raw(
        self: &Arc<Self>,
        path: DocPath,
        access: Access,
    ) -> Result<Option<RawDocument>, DocsError> {
        self.blocking(move |docs| {
            let view = docs.store.read()?;
            let bytes = view
                .get_many(Space::Documents, &[document_key(&path)])?
                .pop()
                .flatten();
            access.check_get_stored(view.as_ref(), &path, bytes.as_deref())?;
            Ok(bytes.and_then(|bytes| {
                StoredHeader::read(&bytes).map(|header| RawDocument { header, bytes })
            }))
        })
        .await
    }

    /// Applies the writes atomically: all or nothing, one commit version for all.
    /// Clients' writes are judged by the rules on the documents they would produce.
    pub async fn commit(
        self: &Arc<Self>,
        writes: Vec<Write>,
        access: Access,
    ) -> Result<CommitOutcome, DocsError> {
        self.commit_inner(writes, access, None).await
    }

    /// Commits `writes` (as the admin) together with what `stage` computes from the same read
    /// view: project data changes and bookkeeping of a migration, in one atomic commit. The
    /// staged schemas, when given, judge the writes instead of the live ones. Callers reload the
    /// project data afterwards (`reload`).
    pub async fn commit_staged(
        self: &Arc<Self>,
        writes: Vec<Write>,
        stage: Arc<Stage>,
    ) -> Result<CommitOutcome, DocsError> {
        self.commit_inner(writes, Access::as_admin(), Some(stage))
            .await
    }

    async fn commit_inner(
        self: &Arc<Self>,
        writes: Vec<Write>,
        access: Access,
        stage: Option<Arc<Stage>>,
    ) -> Result<CommitOutcome, DocsError> {
        // Take the stripes of every written document in one global order: no deadlocks.
        let mut stripes: Vec<usize> = writes.iter().map(|w| stripe_of(&w.path)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.write_locks[stripe].lock().await);
        }
        // Hooks are asked once, under the write locks, so no writer of this process changes
        // the documents between the hook's verdict and the commit.
        // A migration's writes (staged commits) are the project's own changes: `before` hooks
        // do not judge them; `after` hooks still hear of them through the outbox.
        let writes = if stage.is_none() && self.hooks.has_before_document_hooks() {
            self.run_before_hooks(writes, &access).await?
        } else {
            writes
        };
        let writes = Arc::new(writes);
        // Small commits are prepared by the store's writer itself, on the latest state: no hop
        // to the storage pool, no read snapshot, and no retry because another commit came
        // first. Large batches and migrations' staged commits (whose stage may scan) are
        // prepared on the storage pool and checked optimistically instead, so they never hold
        // up every other commit while they compute.
        let in_writer = stage.is_none() && writes.len() <= MAX_WRITES_PREPARED_IN_WRITER;
        for attempt in 0..MAX_COMMIT_ATTEMPTS {
            let catalog = self.catalog.snapshot();
            let (prepared, committed) = if in_writer {
                self.prepare_in_writer(writes.clone(), catalog, access.clone())
                    .await?
            } else {
                let input = writes.clone();
                let access = access.clone();
                let stage = stage.clone();
                let mut prepared = self
                    .blocking(move |docs| {
                        docs.prepare(
                            &input,
                            &catalog,
                            &access,
                            stage.as_deref(),
                            Schemas::Enforce,
                        )
                    })
                    .await?;
                let write_set = std::mem::take(&mut prepared.write_set);
                (prepared, commit(self.store.as_ref(), write_set).await)
            };
            match committed {
                Ok(version) => {
                    if !prepared.outbox.is_empty() {
                        self.hooks.committed(prepared.outbox);
                    }
                    let results = prepared
                        .results
                        .into_iter()
                        .map(|mut r| {
                            if let Some(doc) = r.document.as_mut() {
                                if r.effect != WriteEffect::Unchanged {
                                    doc.version = version;
                                }
                            }
                            r
                        })
                        .collect();
                    return Ok(CommitOutcome { version, results });
                }
                Err(CommitError::Conflict) => {
                    self.metrics.record_commit_conflict();
                    // Back off a little, growing, so hot documents do not spin.
                    let pause = Duration::from_micros(200u64 << attempt.min(6));
                    tokio::time::sleep(pause).await;
                }
                Err(CommitError::Store(err)) => return Err(err.into()),
            }
        }
        Err(DocsError::Aborted(
            "too much contention on these documents; retry the request".into(),
        ))
    }

    /// Has the store's writer prepare `writes` on its own transaction and commit them; answers
    /// what was prepared (its write set taken) and how the commit went.
    async fn prepare_in_writer(
        self: &Arc<Self>,
        writes: Arc<Vec<Write>>,
        catalog: Arc<CatalogSnapshot>,
        access: Access,
    ) -> Result<(Prepared, Result<u64, CommitError>), DocsError> {
        let (sender, prepared) = tokio::sync::oneshot::channel();
        let docs = self.clone();
        let committed = self
            .store
            .submit_prepared(Box::new(move |view| {
                match docs.prepare_on(view, &writes, &catalog, &access, None, Schemas::Enforce) {
                    Ok(mut prepared) => {
                        let mut write_set = std::mem::take(&mut prepared.write_set);
                        // The documents were read on this very transaction: their version
                        // checks hold by construction, so the writer need not look them up
                        // again. (The catalog check stays: the entries were computed with the
                        // in-memory catalog.)
                        write_set
                            .checks
                            .retain(|check| check.space != Space::Documents);
                        let _ = sender.send(Ok(prepared));
                        Some(write_set)
                    }
                    Err(err) => {
                        let _ = sender.send(Err(err));
                        None
                    }
                }
            }))
            .await;
        match prepared.await {
            Ok(Ok(prepared)) => Ok((
                prepared,
                committed.unwrap_or(Err(CommitError::Store(StoreError::Closed))),
            )),
            Ok(Err(err)) => Err(err),
            // Never prepared: the store shut down first, or preparing panicked.
            Err(_) => match committed {
                Ok(Err(CommitError::Store(err))) => Err(err.into()),
                _ => Err(DocsError::Task("preparing the commit failed".into())),
            },
        }
    }

    /// Asks the `before` hooks about every write the rules allow (each write's hooks run in
    /// order; different writes concurrently). A rejection or failure of any write fails the
    /// whole commit. Writes whose data a hook replaced become a `set` (or `create`) of that
    /// data, which the commit then judges by the rules again.
    async fn run_before_hooks(
        self: &Arc<Self>,
        mut writes: Vec<Write>,
        access: &Access,
    ) -> Result<Vec<Write>, DocsError> {
        let catalog = self.catalog.snapshot();
        let input = Arc::new(writes.clone());
        let probe_access = access.clone();
        let prepared = self
            .blocking(move |docs| {
                // The schemas judge what will be stored: the data after the hooks.
                docs.prepare(&input, &catalog, &probe_access, None, Schemas::Skip)
            })
            .await?;
        let auth = access.event_auth();
        let mut calls = Vec::new();
        for (i, (result, before)) in prepared.results.iter().zip(&prepared.befores).enumerate() {
            let kind = match result.effect {
                WriteEffect::Created => EventKind::DocumentCreate,
                WriteEffect::Replaced | WriteEffect::Updated => EventKind::DocumentUpdate,
                WriteEffect::Deleted => EventKind::DocumentDelete,
                WriteEffect::Unchanged => continue,
            };
            if !self.hooks.wants_before(kind, result.path.as_str()) {
                continue;
            }
            let after = result.document.as_ref().map_or(Json::Null, |d| {
                let mut value = d.to_json();
                // Not committed yet: there is no version to show.
                value["version"] = Json::Null;
                value
            });
            let call = BeforeCall {
                kind,
                subject: result.path.as_str().to_string(),
                before: before.as_ref().map_or(Json::Null, Document::to_json),
                after,
                auth: auth.clone(),
            };
            let hooks = self.hooks.clone();
            calls.push(async move {
                let check = |data: &Json| {
                    Write::data_from_json(data)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                };
                (i, hooks.run_before(call, &check).await)
            });
        }
        for (i, verdict) in futures_util::future::join_all(calls).await {
            let Some(data) = verdict.map_err(DocsError::Hook)? else {
                continue;
            };
            let data = Write::data_from_json(&data)?;
            let write = &mut writes[i];
            write.kind = match write.kind {
                write::WriteKind::Create(_) => write::WriteKind::Create(data),
                _ => write::WriteKind::Set(data),
            };
        }
        Ok(writes)
    }

    /// Reads the current documents and builds the write set of `writes` with optimistic checks.
    fn prepare(
        &self,
        writes: &[Write],
        catalog: &CatalogSnapshot,
        access: &Access,
        stage: Option<&Stage>,
        schemas_check: Schemas,
    ) -> Result<Prepared, DocsError> {
        let view = self.store.read()?;
        self.prepare_on(view.as_ref(), writes, catalog, access, stage, schemas_check)
    }

    /// `prepare` on a given view: a snapshot, or the writer's own transaction.
    fn prepare_on(
        &self,
        view: &dyn ReadView,
        writes: &[Write],
        catalog: &CatalogSnapshot,
        access: &Access,
        stage: Option<&Stage>,
        schemas_check: Schemas,
    ) -> Result<Prepared, DocsError> {
        let staged = stage.map(|stage| stage(view)).transpose()?;
        let mut paths: Vec<DocPath> = Vec::new();
        for write in writes {
            if !paths.contains(&write.path) {
                paths.push(write.path.clone());
            }
        }
        let originals = read_documents(view, &paths)?;
        let mut current: HashMap<DocPath, Option<Document>> = paths
            .iter()
            .cloned()
            .zip(originals.iter().cloned())
            .collect();
        let now = Timestamp::now();
        let mut results = Vec::with_capacity(writes.len());
        let mut befores = Vec::with_capacity(writes.len());
        for write in writes {
            let before = current.get(&write.path).cloned().flatten();
            let (data, effect) = match apply_write(before.as_ref(), write, now) {
                Ok(applied) => applied,
                // A client must not learn whether a document exists from a write it may not
                // make: the rules judge the attempt first (as Firestore does), and only an
                // allowed attempt hears "not found" or "already exists".
                Err(
                    err @ (DocsError::NotFound(_)
                    | DocsError::AlreadyExists(_)
                    | DocsError::FailedPrecondition(_)),
                ) if !matches!(access, Access::Admin) => {
                    let method = match &write.kind {
                        write::WriteKind::Create(_) => hearth_rules::Method::Create,
                        write::WriteKind::Delete => hearth_rules::Method::Delete,
                        write::WriteKind::Verify => hearth_rules::Method::Get,
                        write::WriteKind::Set(_) if before.is_none() => {
                            hearth_rules::Method::Create
                        }
                        _ => hearth_rules::Method::Update,
                    };
                    let attempt = WriteCheck {
                        path: &write.path,
                        method,
                        before: before.as_ref(),
                        after: before.as_ref(),
                    };
                    access.check_writes(view, std::slice::from_ref(&attempt), &current, now)?;
                    return Err(err);
                }
                Err(err) => return Err(err),
            };
            let after = data.map(|data| Document {
                path: write.path.clone(),
                data,
                create_time: before.as_ref().map_or(now, |b| b.create_time),
                update_time: if effect == WriteEffect::Unchanged {
                    before.as_ref().map_or(now, |b| b.update_time)
                } else {
                    now
                },
                version: before.as_ref().map_or(0, |b| b.version),
            });
            if effect != WriteEffect::Unchanged {
                current.insert(write.path.clone(), after.clone());
            }
            results.push(WriteResult {
                path: write.path.clone(),
                effect,
                document: after,
            });
            befores.push(before);
        }
        if !matches!(access, Access::Admin) {
            let checks: Vec<WriteCheck<'_>> = writes
                .iter()
                .zip(&results)
                .zip(&befores)
                .map(|((write, result), before)| WriteCheck {
                    path: &write.path,
                    method: rules_method(&write.kind, result.effect),
                    before: before.as_ref(),
                    after: result.document.as_ref(),
                })
                .collect();
            access.check_writes(view, &checks, &current, now)?;
        }
        // The schema judges what would be stored, for the admin as for clients.
        let schemas = match staged.as_ref().and_then(|s| s.schemas.clone()) {
            Some(staged_schemas) => staged_schemas,
            None => self.schemas.current(),
        };
        if schemas_check == Schemas::Enforce && !schemas.is_empty() {
            let violations: Vec<schema::Violation> = results
                .iter()
                .filter(|r| {
                    matches!(
                        r.effect,
                        WriteEffect::Created | WriteEffect::Replaced | WriteEffect::Updated
                    )
                })
                .filter_map(|r| r.document.as_ref())
                .flat_map(|document| schemas.violations(document))
                .collect();
            if !violations.is_empty() {
                return Err(DocsError::SchemaViolation(violations));
            }
        }

        let mut write_set = WriteSet::default();
        match catalog.version {
            Some(version) => {
                write_set.check(Space::Meta, CATALOG_KEY.to_vec(), Expect::Version(version))
            }
            None => write_set.check(Space::Meta, CATALOG_KEY.to_vec(), Expect::Absent),
        }
        let mut changes: Vec<u8> = Vec::new();
        let mut change_count = 0u32;
        let mut outbox = OutboxAdditions::default();
        for (path, original) in paths.iter().zip(&originals) {
            let key = document_key(path);
            write_set.check(
                Space::Documents,
                key.clone(),
                original
                    .as_ref()
                    .map_or(Expect::Absent, |d| Expect::Version(d.version)),
            );
            let changed = results
                .iter()
                .any(|r| r.path == *path && r.effect != WriteEffect::Unchanged);
            if !changed {
                continue;
            }
            let after = current.get(path).cloned().flatten();
            let stored = after.as_ref().map(Document::encode_for_store);
            let old_entries = original
                .as_ref()
                .map(|d| entries_for(d, catalog))
                .unwrap_or_default();
            let new_entries = after
                .as_ref()
                .map(|d| entries_for(d, catalog))
                .unwrap_or_default();
            for entry in old_entries.keys().filter(|k| !new_entries.contains_key(*k)) {
                write_set.delete(Space::Index, entry.clone());
            }
            // A reference entry stays valid while its key does; a covering one holds the
            // document, so it is rewritten with every change.
            for (entry, kind) in new_entries
                .iter()
                .filter(|(k, kind)| **kind == EntryKind::Covering || !old_entries.contains_key(*k))
            {
                let value = kind.value(&key, stored.as_deref().unwrap_or_default());
                write_set.put_stamped(
                    Space::Index,
                    entry.clone(),
                    value.bytes,
                    value.holds_document,
                );
            }
            // The change record is written as JSON text directly: the stored form of the
            // new document already holds its data JSON, so it is spliced in, not re-encoded.
            if changes.is_empty() {
                changes.extend_from_slice(b"{\"time\":\"");
                now.write_rfc3339(&mut changes);
                changes.extend_from_slice(b"\",\"changes\":[");
            } else {
                changes.push(b',');
            }
            changes.extend_from_slice(b"{\"path\":");
            serde_json::to_writer(&mut changes, path.as_str())
                .map_err(|err| DocsError::Task(err.to_string()))?;
            changes.extend_from_slice(b",\"before\":");
            match original {
                Some(document) => serde_json::to_writer(&mut changes, &document.to_json())
                    .map_err(|err| DocsError::Task(err.to_string()))?,
                None => changes.extend_from_slice(b"null"),
            }
            changes.extend_from_slice(b",\"after\":");
            match &stored {
                // The commit version is the change log key; the store fills it on read.
                Some(stored) => write_response_with_version(&mut changes, path, stored, false),
                None => changes.extend_from_slice(b"null"),
            }
            changes.push(b'}');
            let kind = match (original.is_some(), after.is_some()) {
                (false, _) => EventKind::DocumentCreate,
                (true, true) => EventKind::DocumentUpdate,
                (true, false) => EventKind::DocumentDelete,
            };
            if self.hooks.has_after(kind) {
                let data = json!({
                    "before": original.as_ref().map(Document::to_json),
                    "after": after.as_ref().map(|d| {
                        let mut value = d.to_json();
                        value["version"] = Json::Null;
                        value
                    }),
                    "auth": access.event_auth(),
                });
                self.hooks.add_after_entries(
                    &mut write_set,
                    &mut outbox,
                    AfterEvent {
                        index: change_count,
                        kind,
                        subject: path.as_str(),
                        time: &now.to_rfc3339(),
                        data: &data,
                    },
                );
            }
            change_count += 1;
            match stored {
                Some(stored) => write_set.put_versioned(Space::Documents, key, stored),
                None => write_set.delete(Space::Documents, key),
            }
        }
        if !changes.is_empty() {
            changes.extend_from_slice(b"]}");
            write_set.change = Some(changes);
        }
        if let Some(staged) = staged {
            write_set.checks.extend(staged.write_set.checks);
            write_set.ops.extend(staged.write_set.ops);
        }
        Ok(Prepared {
            write_set,
            results,
            befores,
            outbox,
        })
    }

    /// Runs a query on one consistent snapshot.
    pub async fn query(
        self: &Arc<Self>,
        query: Query,
        access: Access,
    ) -> Result<QueryAnswer, DocsError> {
        let catalog = self.catalog.snapshot();
        self.blocking(move |docs| {
            let plan = planner::plan(&query, &catalog);
            let view = docs.store.read()?;
            access.check_list(view.as_ref(), &query)?;
            execute::run(view.as_ref(), &query, &plan, docs.limits.default_page_size)
        })
        .await
    }

    /// The documents matching `query` in `view`, decoded and in query order, at most `enough`
    /// (offset not applied). Realtime builds its views with this; access is checked by the caller.
    pub fn matching_documents(
        &self,
        view: &dyn ReadView,
        query: &Query,
        enough: Option<usize>,
    ) -> Result<Vec<Document>, DocsError> {
        let plan = planner::plan(query, &self.catalog.snapshot());
        execute::matching(view, query, &plan, enough)
    }

    /// The plan of a query; clients need the same `list` permission as for running it.
    pub async fn explain(
        self: &Arc<Self>,
        query: Query,
        access: Access,
    ) -> Result<Json, DocsError> {
        let catalog = self.catalog.snapshot();
        self.blocking(move |docs| {
            let view = docs.store.read()?;
            access.check_list(view.as_ref(), &query)?;
            Ok(execute::explain(&query, &planner::plan(&query, &catalog)))
        })
        .await
    }

    /// The live collection schemas.
    pub fn schemas(&self) -> Arc<schema::SchemaSet> {
        self.schemas.current()
    }

    async fn reload_schemas(self: &Arc<Self>) -> Result<(), DocsError> {
        let set = self
            .blocking(|docs| {
                let (sources, _) = schema::read_sources(docs.store.read()?.as_ref())?;
                schema::SchemaSet::from_sources(sources)
                    .map_err(|err| DocsError::Task(format!("stored schemas do not compile: {err}")))
            })
            .await?;
        self.schemas.replace(set);
        Ok(())
    }

    /// Re-reads the project data a staged commit may have changed (index catalog, rules,
    /// schemas) and swaps it in: builds indexes that appeared, purges the entries of dropped ones.
    pub async fn reload(self: &Arc<Self>) -> Result<(), DocsError> {
        let before = self.catalog.snapshot();
        let snapshot = self.blocking(|docs| docs.load_catalog()).await?;
        let building: Vec<u32> = snapshot
            .data
            .indexes
            .iter()
            .filter(|ix| ix.state == IndexState::Building)
            .filter(|ix| !before.data.indexes.iter().any(|old| old.id == ix.id))
            .map(|ix| ix.id)
            .collect();
        let dropped: Vec<CompositeIndex> = before
            .data
            .indexes
            .iter()
            .filter(|old| !snapshot.data.indexes.iter().any(|ix| ix.id == old.id))
            .cloned()
            .collect();
        self.catalog.replace(snapshot);
        for id in building {
            self.clone().spawn_backfill(id);
        }
        for index in dropped {
            let docs = self.clone();
            tokio::spawn(async move {
                if let Err(err) = docs.purge_index_entries(&index).await {
                    tracing::warn!(index = index.id, error = %err, "could not remove entries of a dropped index");
                }
            });
        }
        match self.rules_source().await? {
            Some(source) => match hearth_rules::Ruleset::parse(&source) {
                Ok(ruleset) => self.rules.replace(Some(Arc::new(ruleset))),
                Err(_) => {
                    tracing::error!("stored security rules do not parse; keeping the live rules")
                }
            },
            None => self.rules.replace(None),
        }
        self.reload_schemas().await
    }

    /// The live security rules.
    pub fn rules(&self) -> Option<Arc<hearth_rules::Ruleset>> {
        self.rules.current()
    }

    /// The stored rules source, if any.
    pub async fn rules_source(self: &Arc<Self>) -> Result<Option<String>, DocsError> {
        self.blocking(|docs| read_rules_source(docs.store.read()?.as_ref()))
            .await
    }

    /// Validates, stores and swaps in a new ruleset. A bad ruleset changes nothing and returns
    /// every error as `line:column: message`.
    pub async fn set_rules(self: &Arc<Self>, source: String) -> Result<(), DocsError> {
        let ruleset = hearth_rules::Ruleset::parse(&source).map_err(|errors| {
            DocsError::InvalidRules(
                errors
                    .iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.column, e.message))
                    .collect(),
            )
        })?;
        let mut value = vec![0u8; 8];
        value.extend_from_slice(source.as_bytes());
        let mut write_set = WriteSet::default();
        write_set.put_versioned(Space::Meta, RULES_KEY.to_vec(), value);
        commit(self.store.as_ref(), write_set)
            .await
            .map_err(|err| match err {
                CommitError::Store(e) => DocsError::Store(e),
                CommitError::Conflict => {
                    DocsError::Aborted("the rules changed meanwhile; retry".into())
                }
            })?;
        self.rules.replace(Some(Arc::new(ruleset)));
        Ok(())
    }

    /// Declares a composite index; existing documents are backfilled in the background. A
    /// `covering` index holds a copy of each document (`index`): faster queries, costlier writes.
    pub async fn create_index(
        self: &Arc<Self>,
        collection: String,
        fields: Vec<(FieldPath, Direction)>,
        covering: bool,
    ) -> Result<CompositeIndex, DocsError> {
        if fields.len() < 2 {
            return Err(error::invalid("a composite index needs at least two fields (single fields are indexed automatically)"));
        }
        crate::model::DocId::parse(&collection)?;
        let wire_fields: Vec<(String, Direction)> =
            fields.iter().map(|(f, d)| (f.to_string(), *d)).collect();
        let created = self
            .change_catalog(move |data| {
                if let Some(existing) = data
                    .indexes
                    .iter()
                    .find(|ix| ix.collection == collection && ix.fields == wire_fields)
                {
                    return Err(DocsError::AlreadyExists(format!(
                        "index {} already covers these fields",
                        existing.id
                    )));
                }
                data.next_id = data.next_id.max(1);
                let index = CompositeIndex {
                    id: data.next_id,
                    collection: collection.clone(),
                    fields: wire_fields.clone(),
                    state: IndexState::Building,
                    covering,
                };
                data.next_id += 1;
                data.indexes.push(index.clone());
                Ok(index)
            })
            .await?;
        self.clone().spawn_backfill(created.id);
        Ok(created)
    }

    pub fn list_indexes(&self) -> Vec<CompositeIndex> {
        self.catalog.snapshot().data.indexes.clone()
    }

    /// Drops the index from the catalog; its entries are removed in the background.
    pub async fn drop_index(self: &Arc<Self>, id: u32) -> Result<(), DocsError> {
        let dropped = self
            .change_catalog(move |data| {
                let position = data
                    .indexes
                    .iter()
                    .position(|ix| ix.id == id)
                    .ok_or_else(|| DocsError::NotFound(format!("no index with id {id}")))?;
                Ok(data.indexes.remove(position))
            })
            .await?;
        let docs = self.clone();
        tokio::spawn(async move {
            if let Err(err) = docs.purge_index_entries(&dropped).await {
                tracing::warn!(index = dropped.id, error = %err, "could not remove entries of a dropped index");
            }
        });
        Ok(())
    }

    /// Applies `change` to the stored catalog in one commit and swaps the live snapshot.
    async fn change_catalog<T: Send + 'static>(
        self: &Arc<Self>,
        change: impl Fn(&mut CatalogData) -> Result<T, DocsError> + Send + Sync + 'static,
    ) -> Result<T, DocsError> {
        let change = Arc::new(change);
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let change = change.clone();
            let (write_set, result, mut data) = self
                .blocking(move |docs| {
                    let snapshot = docs.load_catalog()?;
                    let mut data = snapshot.data.clone();
                    let result = change(&mut data)?;
                    let mut write_set = WriteSet::default();
                    write_set.check(
                        Space::Meta,
                        CATALOG_KEY.to_vec(),
                        snapshot.version.map_or(Expect::Absent, Expect::Version),
                    );
                    write_set.put_versioned(
                        Space::Meta,
                        CATALOG_KEY.to_vec(),
                        encode_catalog(&data),
                    );
                    Ok((write_set, result, data))
                })
                .await?;
            match commit(self.store.as_ref(), write_set).await {
                Ok(version) => {
                    data.indexes.sort_by_key(|ix| ix.id);
                    self.catalog.replace(CatalogSnapshot {
                        data,
                        version: Some(version),
                    });
                    return Ok(result);
                }
                Err(CommitError::Conflict) => continue,
                Err(CommitError::Store(err)) => return Err(err.into()),
            }
        }
        Err(DocsError::Aborted(
            "the index catalog kept changing; retry".into(),
        ))
    }

    fn spawn_backfill(self: Arc<Self>, id: u32) {
        tokio::spawn(async move {
            if let Err(err) = self.backfill(id).await {
                tracing::error!(index = id, error = %err, "index build failed; it stays in state building");
            }
        });
    }

    /// Writes the entries of index `id` for every existing document, batch by batch, then
    /// marks it ready. Each batch checks the versions of the documents it read, so a document
    /// written meanwhile is simply read again.
    async fn backfill(self: &Arc<Self>, id: u32) -> Result<(), DocsError> {
        let Some(index) = self
            .catalog
            .snapshot()
            .data
            .indexes
            .iter()
            .find(|ix| ix.id == id)
            .cloned()
        else {
            return Ok(());
        };
        let group = crate::model::keys::group_prefix(&index.collection);
        let mut range = crate::store::KeyRange::prefix(&group);
        loop {
            let catalog = self.catalog.snapshot();
            if !catalog.data.indexes.iter().any(|ix| ix.id == id) {
                return Ok(()); // dropped while building
            }
            let scan_range = range.clone();
            let index = index.clone();
            let batch = self
                .blocking(move |docs| {
                    let view = docs.store.read()?;
                    // Every document of a collection with the index's ID, at any depth.
                    let entries =
                        view.scan(Space::Documents, &scan_range, BACKFILL_BATCH, false)?;
                    let mut write_set = WriteSet::default();
                    write_set.check(
                        Space::Meta,
                        CATALOG_KEY.to_vec(),
                        catalog.version.map_or(Expect::Absent, Expect::Version),
                    );
                    for (key, bytes) in &entries {
                        let Some(path) = crate::model::keys::document_path_from_key(key) else {
                            continue;
                        };
                        let document = Document::decode_from_store(path, bytes)?;
                        write_set.check(
                            Space::Documents,
                            key.clone(),
                            Expect::Version(document.version),
                        );
                        let own_prefix = index.prefix(&document.path.collection());
                        // The stored bytes already carry the version the check above expects.
                        for (entry, kind) in entries_for(&document, &catalog) {
                            if entry.starts_with(&own_prefix) {
                                write_set.put(Space::Index, entry, kind.value(key, bytes).bytes);
                            }
                        }
                    }
                    Ok((
                        entries.last().map(|(k, _)| k.clone()),
                        entries.len(),
                        write_set,
                    ))
                })
                .await?;
            let (last, count, write_set) = batch;
            match commit(self.store.as_ref(), write_set).await {
                Ok(_) => {}
                Err(CommitError::Conflict) => continue,
                Err(CommitError::Store(err)) => return Err(err.into()),
            }
            match last {
                Some(last) if count == BACKFILL_BATCH => range = range.after(&last),
                _ => break,
            }
        }
        self.change_catalog(move |data| {
            if let Some(index) = data.indexes.iter_mut().find(|ix| ix.id == id) {
                index.state = IndexState::Ready;
            }
            Ok(())
        })
        .await?;
        tracing::info!(index = id, "index is ready");
        Ok(())
    }

    async fn purge_index_entries(
        self: &Arc<Self>,
        index: &CompositeIndex,
    ) -> Result<(), DocsError> {
        let mut prefix = vec![0x03u8];
        prefix.extend_from_slice(&index.id.to_be_bytes());
        let range = crate::store::KeyRange::prefix(&prefix);
        loop {
            let scan_range = range.clone();
            let write_set = self
                .blocking(move |docs| {
                    let view = docs.store.read()?;
                    let mut write_set = WriteSet::default();
                    for (key, _) in view.scan(Space::Index, &scan_range, 1_000, false)? {
                        write_set.delete(Space::Index, key);
                    }
                    Ok(write_set)
                })
                .await?;
            if write_set.ops.is_empty() {
                return Ok(());
            }
            commit(self.store.as_ref(), write_set)
                .await
                .map_err(|err| match err {
                    CommitError::Store(e) => DocsError::Store(e),
                    CommitError::Conflict => DocsError::Aborted("conflict while purging".into()),
                })?;
        }
    }
}

/// Computes, from the read view a staged commit prepares its writes on, the extra checks and
/// operations to commit with them and the schemas to judge them by.
pub type Stage = dyn Fn(&dyn ReadView) -> Result<Staged, DocsError> + Send + Sync;

/// What a `Stage` adds to a commit.
#[derive(Default)]
pub struct Staged {
    pub write_set: WriteSet,
    pub schemas: Option<Arc<schema::SchemaSet>>,
}

/// Whether `prepare` checks the collection schemas (not while asking the `before` hooks, whose
/// replacement is what gets stored and checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Schemas {
    Enforce,
    Skip,
}

struct Prepared {
    write_set: WriteSet,
    results: Vec<WriteResult>,
    /// The stored document before each write (same order as `results`).
    befores: Vec<Option<Document>>,
    outbox: OutboxAdditions,
}

pub(crate) fn read_documents(
    view: &dyn ReadView,
    paths: &[DocPath],
) -> Result<Vec<Option<Document>>, DocsError> {
    let keys: Vec<Vec<u8>> = paths.iter().map(document_key).collect();
    let values = view.get_many(Space::Documents, &keys)?;
    paths
        .iter()
        .zip(values)
        .map(|(path, bytes)| match bytes {
            Some(bytes) => Ok(Some(Document::decode_from_store(path.clone(), &bytes)?)),
            None => Ok(None),
        })
        .collect()
}

/// Meta key of the security rules source (a versioned value).
pub const RULES_KEY: &[u8] = b"rules.source";

pub fn read_rules_source(view: &dyn ReadView) -> Result<Option<String>, DocsError> {
    let stored = view
        .get_many(Space::Meta, &[RULES_KEY.to_vec()])?
        .pop()
        .flatten();
    Ok(
        stored
            .map(|bytes| String::from_utf8_lossy(bytes.get(8..).unwrap_or_default()).into_owned()),
    )
}

/// The rules method of a write: create or update by prior existence, as Firestore decides.
fn rules_method(kind: &write::WriteKind, effect: WriteEffect) -> hearth_rules::Method {
    use hearth_rules::Method;
    match (kind, effect) {
        (write::WriteKind::Verify, _) => Method::Get,
        (write::WriteKind::Delete, _) | (_, WriteEffect::Deleted) => Method::Delete,
        (_, WriteEffect::Created) => Method::Create,
        _ => Method::Update,
    }
}

pub fn read_catalog(view: &dyn ReadView) -> Result<CatalogSnapshot, DocsError> {
    let stored = view
        .get_many(Space::Meta, &[CATALOG_KEY.to_vec()])?
        .pop()
        .flatten();
    let Some(bytes) = stored else {
        return Ok(CatalogSnapshot::default());
    };
    let version = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes);
    let data: CatalogData = serde_json::from_slice(bytes.get(8..).unwrap_or_default())
        .map_err(|err| DocsError::Task(format!("index catalog is corrupt: {err}")))?;
    Ok(CatalogSnapshot { data, version })
}

pub fn encode_catalog(data: &CatalogData) -> Vec<u8> {
    let mut out = vec![0u8; 8];
    out.extend_from_slice(&serde_json::to_vec(data).unwrap_or_default());
    out
}

/// Parses an index definition's optional `covering` flag (default: covering).
pub fn parse_covering(json: Option<&Json>) -> Result<bool, DocsError> {
    match json {
        None | Some(Json::Null) => Ok(true),
        Some(Json::Bool(b)) => Ok(*b),
        Some(_) => Err(error::invalid("\"covering\" must be a boolean")),
    }
}

/// Parses `[["owner","asc"],["n","desc"]]` index field lists.
pub fn parse_index_fields(json: &Json) -> Result<Vec<(FieldPath, Direction)>, DocsError> {
    let items = json
        .as_array()
        .ok_or_else(|| error::invalid("\"fields\" must be an array of [field, direction]"))?;
    let mut fields = Vec::new();
    for item in items {
        let pair = item.as_array().map(Vec::as_slice);
        let (field, direction) = match pair {
            Some([Json::String(f), Json::String(d)]) => (f, d.as_str()),
            _ => {
                return Err(error::invalid(
                    "each index field is [field path, \"asc\"|\"desc\"]",
                ))
            }
        };
        let direction = match direction {
            "asc" => Direction::Asc,
            "desc" => Direction::Desc,
            other => {
                return Err(error::invalid(format!(
                    "index direction '{other}' is not asc or desc"
                )))
            }
        };
        let field = FieldPath::parse(field)?;
        if fields.iter().any(|(f, _)| *f == field) {
            return Err(error::invalid(format!("index names field '{field}' twice")));
        }
        fields.push((field, direction));
    }
    Ok(fields)
}
