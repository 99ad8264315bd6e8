//! Applying a plan. Consecutive project-data steps (indexes, rules, roles, schemas, seeds) run
//! as one commit together with the migration's bookkeeping; each data step (`renameField`,
//! `setDefault`, `deleteField`, `transform`) runs in bounded batches, every batch committed
//! with the progress record (the last document key done). A crash therefore resumes exactly
//! where the last commit ended: nothing is applied twice and nothing is skipped. The record of
//! an applied migration is written with an `Expect::Absent` check, so it is written once.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Map as JsonMap, Value as Json};

use super::file::{MigrationFile, Step, Target};
use super::plan::Plan;
use super::{AppliedRecord, MigrationError, Progress, Track};
use crate::docs::index::{CompositeIndex, Direction, IndexState, CATALOG_KEY};
use crate::docs::query::{filter_matches, Filter};
use crate::docs::schema::{self, SchemaSet};
use crate::docs::write::{Precondition, Write, WriteKind};
use crate::docs::{encode_catalog, read_catalog, Docs, DocsError, Stage, Staged, RULES_KEY};
use crate::model::keys::{document_path_from_key, group_prefix};
use crate::model::{Document, FieldPath, Timestamp};
use crate::roles::{encode_policies, read_policies, Roles, ROLES_KEY};
use crate::store::{Expect, KeyRange, SharedStore, Space, WriteSet};

/// Puts one hook definition (upsert by name); supplied when the hooks module is built in.
pub type HookPut =
    dyn Fn(Json) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// The services a migration changes.
#[derive(Clone)]
pub struct Services {
    pub store: SharedStore,
    pub docs: Arc<Docs>,
    pub roles: Arc<Roles>,
    pub hooks: Option<Arc<HookPut>>,
}

/// Applies every pending migration of the plan, in order. Returns the names applied.
pub async fn apply(services: &Services, plan: &Plan) -> Result<Vec<String>, MigrationError> {
    let mut applied = Vec::new();
    let mut progress = plan.progress.clone();
    for file in plan.pending() {
        let resume = progress
            .take()
            .filter(|(p, _)| p.number == file.number && p.checksum == file.checksum);
        if let Some((p, _)) = &resume {
            tracing::info!(track = plan.track.as_str(), file = %file.file_name, step = p.step + 1, "resuming an interrupted migration");
        }
        Runner {
            services,
            track: plan.track,
            file,
            progress_version: resume.as_ref().map(|(_, v)| *v),
        }
        .run(resume.map(|(p, _)| p))
        .await?;
        tracing::info!(track = plan.track.as_str(), file = %file.file_name, "migration applied");
        applied.push(file.file_name.clone());
    }
    Ok(applied)
}

/// Where the next commit of a migration leaves it.
#[derive(Debug, Clone)]
enum Mark {
    /// Not done: record this progress.
    Progress(Progress),
    /// Done: write the applied record and drop the progress.
    Applied,
}

struct Runner<'a> {
    services: &'a Services,
    track: Track,
    file: &'a MigrationFile,
    /// The version of the stored progress value (`None` while there is none).
    progress_version: Option<u64>,
}

impl Runner<'_> {
    async fn run(mut self, resume: Option<Progress>) -> Result<(), MigrationError> {
        let steps = &self.file.steps;
        let mut index = resume.as_ref().map_or(0, |p| p.step);
        let mut cursor = resume
            .as_ref()
            .and_then(|p| p.cursor.as_deref())
            .map(decode_hex)
            .transpose()?;
        let mut changed = resume.as_ref().map_or(0, |p| p.changed);
        if steps.is_empty() || index >= steps.len() {
            return self.commit_group(&[], Mark::Applied).await;
        }
        while index < steps.len() {
            let step = &steps[index];
            if step.is_data_step() {
                self.run_data_step(index, cursor.take(), changed).await?;
                changed = 0;
                index += 1;
                continue;
            }
            if let Step::SetHooks { hooks } = step {
                self.put_hooks(index, hooks).await?;
                index += 1;
                let mark = self.mark_after(index);
                self.commit_group(&[], mark).await?;
                continue;
            }
            let end = steps[index..]
                .iter()
                .position(|s| s.is_data_step() || matches!(s, Step::SetHooks { .. }))
                .map_or(steps.len(), |offset| index + offset);
            let group = &steps[index..end];
            self.check_existing_documents(index, group).await?;
            let mark = self.mark_after(end);
            self.commit_group(group, mark).await.map_err(|err| {
                let step = blamed_step(group, &err).map_or(index, |offset| index + offset);
                self.step_failed(step, err)
            })?;
            index = end;
        }
        Ok(())
    }

    /// Refuses a `validateSchema` step with `"existing": "check"` while stored documents of its
    /// collection break the schema, listing them (up to the violation cap). Runs before the
    /// group commits, so a refusal leaves the group unapplied.
    async fn check_existing_documents(
        &self,
        first: usize,
        group: &[Step],
    ) -> Result<(), MigrationError> {
        for (offset, step) in group.iter().enumerate() {
            let Step::ValidateSchema {
                collection,
                schema: Some(schema),
                check_existing: true,
            } = step
            else {
                continue;
            };
            let mut sources = std::collections::BTreeMap::new();
            sources.insert(collection.as_str().to_string(), schema.clone());
            let set = SchemaSet::from_sources(sources)
                .map_err(|err| self.step_failed(first + offset, MigrationError::Io(err)))?;
            let store = self.services.store.clone();
            let pattern = collection.clone();
            let violations =
                tokio::task::spawn_blocking(move || existing_violations(&store, &pattern, &set))
                    .await
                    .map_err(|err| {
                        MigrationError::Io(format!("a schema check task failed: {err}"))
                    })?
                    .map_err(|err| self.step_failed(first + offset, err))?;
            if !violations.is_empty() {
                return Err(self.step_failed(
                    first + offset,
                    MigrationError::Docs(DocsError::SchemaViolation(violations)),
                ));
            }
        }
        Ok(())
    }

    /// The mark once every step before `next` is done.
    fn mark_after(&self, next: usize) -> Mark {
        if next >= self.file.steps.len() {
            Mark::Applied
        } else {
            Mark::Progress(self.progress(next, None, 0))
        }
    }

    fn progress(&self, step: usize, cursor: Option<&[u8]>, changed: u64) -> Progress {
        Progress {
            number: self.file.number,
            name: self.file.name.clone(),
            checksum: self.file.checksum.clone(),
            step,
            cursor: cursor.map(encode_hex),
            changed,
        }
    }

    fn step_failed(&self, index: usize, err: MigrationError) -> MigrationError {
        let reason = match err {
            MigrationError::Docs(DocsError::SchemaViolation(violations)) => {
                let lines: Vec<String> = violations
                    .iter()
                    .map(|v| {
                        let field = if v.field.is_empty() { "/" } else { &v.field };
                        format!("{} {field}: {}", v.document, v.message)
                    })
                    .collect();
                format!(
                    "documents would break their schema:\n  {}",
                    lines.join("\n  ")
                )
            }
            other => other.to_string(),
        };
        MigrationError::StepFailed {
            file: self.file.file_name.clone(),
            step: index + 1,
            kind: self.file.steps[index].kind().to_string(),
            reason,
        }
    }

    /// Remembers where the stored progress stands after a commit at `version`.
    fn committed(&mut self, mark: &Mark, version: u64) {
        self.progress_version = match mark {
            Mark::Progress(_) => Some(version),
            Mark::Applied => None,
        };
    }

    /// Commits project-data steps and seeds in one transaction with the bookkeeping.
    async fn commit_group(&mut self, group: &[Step], mark: Mark) -> Result<(), MigrationError> {
        let mut writes = Vec::new();
        for step in group {
            if let Step::Seed { documents } = step {
                for (path, data) in documents {
                    writes.push(Write {
                        path: path.clone(),
                        kind: WriteKind::Set(Write::data_from_json(data)?),
                        precondition: Precondition::None,
                    });
                }
            }
        }
        let group_steps: Vec<Step> = group.to_vec();
        let runner_mark = mark.clone();
        let bookkeeping = self.bookkeeping();
        let stage: Arc<Stage> = Arc::new(move |view| {
            let mut staged = stage_project_data(view, &group_steps)?;
            bookkeeping.stage_mark(&runner_mark, &mut staged.write_set)?;
            Ok(staged)
        });
        let outcome = self.services.docs.commit_staged(writes, stage).await?;
        self.committed(&mark, outcome.version);
        self.services.docs.reload().await?;
        self.services.roles.reload().await?;
        Ok(())
    }

    /// A copy of what `stage_mark` needs, for closures that outlive `self`.
    fn bookkeeping(&self) -> Bookkeeping {
        Bookkeeping {
            track: self.track,
            number: self.file.number,
            name: self.file.name.clone(),
            checksum: self.file.checksum.clone(),
            progress_version: self.progress_version,
        }
    }

    async fn put_hooks(&self, index: usize, hooks: &[Json]) -> Result<(), MigrationError> {
        let Some(put) = &self.services.hooks else {
            return Err(self.step_failed(
                index,
                MigrationError::Io("setHooks is not available in this server".into()),
            ));
        };
        // Upserts by name: repeating them after a crash gives the same hooks.
        for hook in hooks {
            put(hook.clone())
                .await
                .map_err(|reason| self.step_failed(index, MigrationError::Io(reason)))?;
        }
        Ok(())
    }

    /// Runs one data step over every matching document, batch by batch from `cursor`.
    async fn run_data_step(
        &mut self,
        index: usize,
        mut cursor: Option<Vec<u8>>,
        mut changed: u64,
    ) -> Result<(), MigrationError> {
        let step = self.file.steps[index].clone();
        let (target, batch_size) = match &step {
            Step::RenameField {
                target, batch_size, ..
            }
            | Step::SetDefault {
                target, batch_size, ..
            }
            | Step::DeleteField {
                target, batch_size, ..
            }
            | Step::Transform {
                target, batch_size, ..
            } => (target.clone(), *batch_size),
            _ => return Ok(()),
        };
        let range = KeyRange::prefix(&group_prefix(target.pattern.collection_id()));
        let started = std::time::Instant::now();
        let mut scanned_total: u64 = 0;
        loop {
            let scan = match &cursor {
                Some(key) => range.after(key),
                None => range.clone(),
            };
            let store = self.services.store.clone();
            let batch_step = step.clone();
            let batch_target = target.clone();
            let batch = tokio::task::spawn_blocking(move || {
                read_batch(&store, &scan, batch_size, &batch_target, &batch_step)
            })
            .await
            .map_err(|err| MigrationError::Io(format!("a migration batch task failed: {err}")))?
            .map_err(|err| self.step_failed(index, err))?;
            let finished = batch.scanned < batch_size;
            let Some(last_key) = batch.last_key.clone() else {
                // Nothing left in range: the step is done.
                let mark = self.mark_after(index + 1);
                return self.commit_group(&[], mark).await;
            };
            let count = batch.writes.len() as u64;
            let mark = if finished {
                self.mark_after(index + 1)
            } else {
                Mark::Progress(self.progress(index, Some(&last_key), changed + count))
            };
            let bookkeeping = self.bookkeeping();
            let stage_mark = mark.clone();
            let stage: Arc<Stage> = Arc::new(move |_view| {
                let mut staged = Staged::default();
                bookkeeping.stage_mark(&stage_mark, &mut staged.write_set)?;
                Ok(staged)
            });
            match self.services.docs.commit_staged(batch.writes, stage).await {
                Ok(outcome) => self.committed(&mark, outcome.version),
                // A document changed between the read and the commit: read the batch again.
                Err(DocsError::FailedPrecondition(_) | DocsError::NotFound(_)) => continue,
                Err(err) => return Err(self.step_failed(index, err.into())),
            }
            changed += count;
            scanned_total += batch.scanned as u64;
            tracing::debug!(
                file = %self.file.file_name,
                step = index + 1,
                scanned = scanned_total,
                changed,
                "migration batch committed"
            );
            if scanned_total % 50_000 < batch.scanned as u64 || finished {
                tracing::info!(
                    file = %self.file.file_name,
                    step = index + 1,
                    kind = step.kind(),
                    scanned = scanned_total,
                    changed,
                    seconds = started.elapsed().as_secs_f64(),
                    "migration data step progress"
                );
            }
            if finished {
                return Ok(());
            }
            cursor = Some(last_key);
        }
    }
}

/// Bookkeeping of one migration, detached from the runner.
#[derive(Clone)]
struct Bookkeeping {
    track: Track,
    number: u32,
    name: String,
    checksum: String,
    progress_version: Option<u64>,
}

impl Bookkeeping {
    fn stage_mark(&self, mark: &Mark, write_set: &mut WriteSet) -> Result<(), DocsError> {
        let progress_key = self.track.progress_key();
        write_set.check(
            Space::Meta,
            progress_key.clone(),
            self.progress_version
                .map_or(Expect::Absent, Expect::Version),
        );
        match mark {
            Mark::Progress(progress) => {
                write_set.put_versioned(Space::Meta, progress_key, versioned_json(progress)?);
            }
            Mark::Applied => {
                if self.progress_version.is_some() {
                    write_set.delete(Space::Meta, progress_key);
                }
                let key = self.track.applied_key(self.number);
                write_set.check(Space::Meta, key.clone(), Expect::Absent);
                let record = AppliedRecord {
                    number: self.number,
                    name: self.name.clone(),
                    checksum: self.checksum.clone(),
                    applied_at: Timestamp::now().to_rfc3339(),
                };
                write_set.put_versioned(Space::Meta, key, versioned_json(&record)?);
            }
        }
        Ok(())
    }
}

fn versioned_json(value: &impl serde::Serialize) -> Result<Vec<u8>, DocsError> {
    let mut out = vec![0u8; 8];
    out.extend_from_slice(
        &serde_json::to_vec(value).map_err(|err| DocsError::Task(err.to_string()))?,
    );
    Ok(out)
}

/// The project-data changes of `steps`, computed on `view`: checks on the values read and
/// puts of the changed ones, plus the schemas the group's seeds must satisfy.
fn stage_project_data(
    view: &dyn crate::store::ReadView,
    steps: &[Step],
) -> Result<Staged, DocsError> {
    let mut write_set = WriteSet::default();
    let catalog = read_catalog(view)?;
    let mut catalog_data = catalog.data.clone();
    let mut catalog_changed = false;
    let mut rules: Option<&str> = None;
    let (mut policies, policies_version) =
        read_policies(view).map_err(|err| DocsError::Task(err.to_string()))?;
    let mut policies_changed = false;
    let (mut schemas, schemas_version) = schema::read_sources(view)?;
    let mut schemas_changed = false;
    for step in steps {
        match step {
            Step::CreateIndex {
                collection,
                fields,
                covering,
            } => {
                let wire = wire_fields(fields);
                let exists = catalog_data
                    .indexes
                    .iter()
                    .any(|ix| ix.collection == *collection && ix.fields == wire);
                if !exists {
                    catalog_data.next_id = catalog_data.next_id.max(1);
                    catalog_data.indexes.push(CompositeIndex {
                        id: catalog_data.next_id,
                        collection: collection.clone(),
                        fields: wire,
                        state: IndexState::Building,
                        covering: *covering,
                    });
                    catalog_data.next_id += 1;
                    catalog_changed = true;
                }
            }
            Step::DropIndex { collection, fields } => {
                let wire = wire_fields(fields);
                let before = catalog_data.indexes.len();
                catalog_data
                    .indexes
                    .retain(|ix| !(ix.collection == *collection && ix.fields == wire));
                catalog_changed |= catalog_data.indexes.len() != before;
            }
            Step::SetRules { source } => rules = Some(source),
            Step::GrantRole(grant) => {
                if !policies.grants.contains(grant) {
                    policies.grants.push(grant.clone());
                    policies_changed = true;
                }
            }
            Step::RevokeRole(grant) => {
                let before = policies.grants.len();
                policies.grants.retain(|g| g != grant);
                policies_changed |= policies.grants.len() != before;
            }
            Step::ValidateSchema {
                collection, schema, ..
            } => {
                match schema {
                    Some(schema) => schemas.insert(collection.as_str().to_string(), schema.clone()),
                    None => schemas.remove(collection.as_str()),
                };
                schemas_changed = true;
            }
            Step::Seed { .. } | Step::SetHooks { .. } => {}
            Step::RenameField { .. }
            | Step::SetDefault { .. }
            | Step::DeleteField { .. }
            | Step::Transform { .. } => {}
        }
    }
    if catalog_changed {
        write_set.check(
            Space::Meta,
            CATALOG_KEY.to_vec(),
            catalog.version.map_or(Expect::Absent, Expect::Version),
        );
        write_set.put_versioned(
            Space::Meta,
            CATALOG_KEY.to_vec(),
            encode_catalog(&catalog_data),
        );
    }
    if let Some(source) = rules {
        let mut value = vec![0u8; 8];
        value.extend_from_slice(source.as_bytes());
        write_set.put_versioned(Space::Meta, RULES_KEY.to_vec(), value);
    }
    if policies_changed {
        write_set.check(
            Space::Meta,
            ROLES_KEY.to_vec(),
            policies_version.map_or(Expect::Absent, Expect::Version),
        );
        let value = encode_policies(&policies).map_err(|err| DocsError::Task(err.to_string()))?;
        write_set.put_versioned(Space::Meta, ROLES_KEY.to_vec(), value);
    }
    let mut staged_schemas = None;
    if schemas_changed {
        write_set.check(
            Space::Meta,
            schema::SCHEMAS_KEY.to_vec(),
            schemas_version.map_or(Expect::Absent, Expect::Version),
        );
        write_set.put_versioned(
            Space::Meta,
            schema::SCHEMAS_KEY.to_vec(),
            schema::encode_sources(&schemas),
        );
        let set = SchemaSet::from_sources(schemas).map_err(DocsError::InvalidArgument)?;
        staged_schemas = Some(Arc::new(set));
    }
    Ok(Staged {
        write_set,
        schemas: staged_schemas,
    })
}

fn wire_fields(fields: &[(FieldPath, Direction)]) -> Vec<(String, Direction)> {
    fields.iter().map(|(f, d)| (f.to_string(), *d)).collect()
}

/// The step of a group a commit error comes from, when it can be told: the seed holding the
/// first document that broke a schema.
fn blamed_step(group: &[Step], err: &MigrationError) -> Option<usize> {
    let MigrationError::Docs(DocsError::SchemaViolation(violations)) = err else {
        return None;
    };
    let document = &violations.first()?.document;
    group.iter().position(|step| match step {
        Step::Seed { documents } => documents.iter().any(|(path, _)| path.as_str() == document),
        _ => false,
    })
}

/// Violations reported by an `"existing": "check"` at most.
const MAX_EXISTING_VIOLATIONS: usize = 100;

/// Stored documents of `pattern`'s collections that break `set`, scanned in bounded chunks.
fn existing_violations(
    store: &SharedStore,
    pattern: &crate::docs::schema::CollectionPattern,
    set: &SchemaSet,
) -> Result<Vec<schema::Violation>, MigrationError> {
    let view = store.read()?;
    let range = KeyRange::prefix(&group_prefix(pattern.collection_id()));
    let mut next = range.clone();
    let mut found = Vec::new();
    loop {
        let entries = view.scan(Space::Documents, &next, 1_000, false)?;
        for (key, bytes) in &entries {
            let Some(path) = document_path_from_key(key) else {
                continue;
            };
            if !pattern.matches(&path.collection()) {
                continue;
            }
            let document = Document::decode_from_store(path, bytes).map_err(DocsError::from)?;
            found.extend(set.violations(&document));
            if found.len() >= MAX_EXISTING_VIOLATIONS {
                found.truncate(MAX_EXISTING_VIOLATIONS);
                return Ok(found);
            }
        }
        match entries.last() {
            Some((key, _)) if entries.len() == 1_000 => next = range.after(key),
            _ => return Ok(found),
        }
    }
}

struct Batch {
    writes: Vec<Write>,
    /// Document keys read (matching or not).
    scanned: usize,
    last_key: Option<Vec<u8>>,
}

/// Reads up to `limit` documents after the cursor and computes the step's writes for those it
/// changes, each conditional on the version read.
fn read_batch(
    store: &SharedStore,
    range: &KeyRange,
    limit: usize,
    target: &Target,
    step: &Step,
) -> Result<Batch, MigrationError> {
    let view = store.read()?;
    let entries = view.scan(Space::Documents, range, limit, false)?;
    let mut writes = Vec::new();
    for (key, bytes) in &entries {
        let Some(path) = document_path_from_key(key) else {
            continue;
        };
        if !target.pattern.matches(&path.collection()) {
            continue;
        }
        let document = Document::decode_from_store(path, bytes).map_err(DocsError::from)?;
        if let Some(kind) = data_step_write(step, &document)? {
            writes.push(Write {
                path: document.path.clone(),
                kind,
                precondition: Precondition::Version(document.version),
            });
        }
    }
    Ok(Batch {
        writes,
        scanned: entries.len(),
        last_key: entries.last().map(|(k, _)| k.clone()),
    })
}

/// What a data step does to one document, if anything.
fn data_step_write(step: &Step, document: &Document) -> Result<Option<WriteKind>, DocsError> {
    let mut fields = JsonMap::new();
    let delete = || serde_json::json!({"$delete": true});
    match step {
        Step::RenameField { from, to, .. } => {
            if let Some(value) = document.field(from.segments()) {
                fields.insert(to.to_string(), value.to_json());
                fields.insert(from.to_string(), delete());
            }
        }
        Step::SetDefault { field, value, .. } => {
            if document.field(field.segments()).is_none() {
                fields.insert(field.to_string(), value.clone());
            }
        }
        Step::DeleteField { field, .. } => {
            if document.field(field.segments()).is_some() {
                fields.insert(field.to_string(), delete());
            }
        }
        Step::Transform {
            filter,
            set,
            rename,
            delete_document,
            ..
        } => {
            if !filter
                .as_ref()
                .is_none_or(|f: &Filter| filter_matches(f, document))
            {
                return Ok(None);
            }
            if *delete_document {
                return Ok(Some(WriteKind::Delete));
            }
            for (field, value) in set {
                fields.insert(field.clone(), value.clone());
            }
            for (from, to) in rename {
                if let Some(value) = document.field(from.segments()) {
                    fields.insert(to.to_string(), value.to_json());
                    fields.insert(from.to_string(), delete());
                }
            }
        }
        _ => return Ok(None),
    }
    if fields.is_empty() {
        return Ok(None);
    }
    Ok(Some(WriteKind::Update(Write::fields_from_json(
        &Json::Object(fields),
    )?)))
}

fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str) -> Result<Vec<u8>, MigrationError> {
    let corrupt = || MigrationError::Corrupt(format!("bad cursor '{text}'"));
    if !text.len().is_multiple_of(2) {
        return Err(corrupt());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(corrupt)
        })
        .collect()
}
