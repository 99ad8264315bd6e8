//! Migrations: a project's shape (indexes, rules, hooks, roles, schemas, seed data and data
//! changes) kept as numbered JSON files and applied the same way on every machine.
//!
//! `file` reads and validates files, `plan` compares them with what the database recorded,
//! `apply` runs what is pending. Two tracks are kept apart: `system` (the server's own
//! migrations in the repository's `migrations/` folder, compiled in) and `app` (`--migrations`).

pub mod apply;
pub mod file;
pub mod plan;

use serde::{Deserialize, Serialize};

use crate::docs::DocsError;
use crate::roles::RolesError;
use crate::store::StoreError;

pub use apply::{apply, Services};
pub use file::{load, HookValidator, MigrationFile, Source, Step};
pub use plan::{make_plan, Plan};

/// The server's own migrations (`migrations/` at the repository root), compiled in.
pub const SYSTEM_MIGRATIONS: &[(&str, &str)] = &[(
    "0001_system.json",
    include_str!("../../../migrations/0001_system.json"),
)];

/// A set of migrations with its own numbering and records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    System,
    App,
}

impl Track {
    pub fn as_str(self) -> &'static str {
        match self {
            Track::System => "system",
            Track::App => "app",
        }
    }

    /// Meta key of the record of applied migration `number`.
    pub fn applied_key(self, number: u32) -> Vec<u8> {
        format!("migrations.{}.applied.{number:08}", self.as_str()).into_bytes()
    }

    pub fn applied_prefix(self) -> Vec<u8> {
        format!("migrations.{}.applied.", self.as_str()).into_bytes()
    }

    /// Meta key of the progress of the migration being applied (at most one per track).
    pub fn progress_key(self) -> Vec<u8> {
        format!("migrations.{}.progress", self.as_str()).into_bytes()
    }
}

/// What the database keeps of an applied migration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppliedRecord {
    pub number: u32,
    pub name: String,
    pub checksum: String,
    /// RFC 3339.
    pub applied_at: String,
}

/// How far an interrupted migration got: steps before `step` are done; within `step` (a data
/// step) every document key up to `cursor` (hex) is done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub number: u32,
    pub name: String,
    pub checksum: String,
    pub step: usize,
    pub cursor: Option<String>,
    /// Documents changed so far by the current data step.
    pub changed: u64,
}

/// One reason a migration file or run is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    /// 1-based step number and its kind.
    pub step: Option<(usize, String)>,
    pub reason: String,
}

impl Problem {
    pub fn file(file: &str, reason: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            step: None,
            reason: reason.into(),
        }
    }

    pub fn step(file: &str, step: usize, kind: &str, reason: impl Into<String>) -> Problem {
        Problem {
            file: file.to_string(),
            step: Some((step, kind.to_string())),
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.step {
            Some((step, kind)) => write!(f, "{}: step {step} ({kind}): {}", self.file, self.reason),
            None => write!(f, "{}: {}", self.file, self.reason),
        }
    }
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    /// Found before anything was applied: every problem with file, step and reason.
    #[error("migrations refused; nothing was applied:\n{}", list(.0))]
    Refused(Vec<Problem>),
    #[error("{0}")]
    Io(String),
    /// A step failed while applying. Earlier commits (previous groups, migrations and data
    /// batches) stay applied and recorded; the failing group or batch is not, so the next run
    /// resumes exactly there.
    #[error("{file}: step {step} ({kind}) failed: {reason}\n(what earlier commits of the run applied stays applied and recorded; fix the cause and run again to resume here, with the file unchanged)")]
    StepFailed {
        file: String,
        step: usize,
        kind: String,
        reason: String,
    },
    #[error(transparent)]
    Docs(#[from] DocsError),
    #[error(transparent)]
    Roles(#[from] RolesError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored migration records are corrupt: {0}")]
    Corrupt(String),
}

/// Reads and checks the migrations of every track: the server's own, then the app's folder
/// when given. Nothing is applied; any problem in any file refuses the whole run.
pub async fn plan_all(
    store: &crate::store::SharedStore,
    app: Option<&std::path::Path>,
    hooks: Option<std::sync::Arc<HookValidator>>,
) -> Result<Vec<Plan>, MigrationError> {
    let store = store.clone();
    let app = app.map(std::path::Path::to_path_buf);
    tokio::task::spawn_blocking(move || {
        let mut tracks = vec![(Track::System, Source::Embedded(SYSTEM_MIGRATIONS))];
        if let Some(dir) = app {
            tracks.push((Track::App, Source::Dir(dir)));
        }
        let mut plans = Vec::new();
        let mut problems = Vec::new();
        for (track, source) in tracks {
            match load(&source, hooks.as_deref()) {
                Ok(files) => {
                    let view = store.read()?;
                    match make_plan(track, files, view.as_ref()) {
                        Ok(plan) => plans.push(plan),
                        Err(MigrationError::Refused(mut found)) => problems.append(&mut found),
                        Err(err) => return Err(err),
                    }
                }
                Err(MigrationError::Refused(mut found)) => problems.append(&mut found),
                Err(err) => return Err(err),
            }
        }
        if problems.is_empty() {
            Ok(plans)
        } else {
            Err(MigrationError::Refused(problems))
        }
    })
    .await
    .map_err(|err| MigrationError::Io(format!("planning migrations failed: {err}")))?
}

/// The hooks module as migrations use it: checking definitions at plan time and upserting them
/// when a `setHooks` step runs. A definition names itself (`"name"`).
pub fn hooks_bridge(
    hooks: &std::sync::Arc<crate::hooks::Hooks>,
) -> (
    std::sync::Arc<HookValidator>,
    std::sync::Arc<apply::HookPut>,
) {
    let checker = hooks.clone();
    let validate: std::sync::Arc<HookValidator> = std::sync::Arc::new(move |definition| {
        let Some(name) = definition.get("name").and_then(serde_json::Value::as_str) else {
            return Err(vec!["name: required, a string".to_string()]);
        };
        checker.validate(name, definition).map(|_| ())
    });
    let writer = hooks.clone();
    let put: std::sync::Arc<apply::HookPut> = std::sync::Arc::new(move |definition| {
        let hooks = writer.clone();
        Box::pin(async move {
            let name = definition
                .get("name")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_string();
            hooks
                .put(&name, &definition)
                .await
                .map(|_| ())
                .map_err(|err| format!("hook '{name}': {err}"))
        })
    });
    (validate, put)
}

/// Plans every track, then applies what is pending: the server's own migrations first.
pub async fn migrate_all(
    services: &Services,
    app: Option<&std::path::Path>,
    hooks: Option<std::sync::Arc<HookValidator>>,
) -> Result<Vec<String>, MigrationError> {
    let plans = plan_all(&services.store, app, hooks).await?;
    let mut applied = Vec::new();
    for plan in &plans {
        for name in apply(services, plan).await? {
            applied.push(format!("{}/{name}", plan.track.as_str()));
        }
    }
    Ok(applied)
}

/// Creates `NNNN_name.json` (the next number in `dir`) with an empty steps list.
pub fn new_file(dir: &std::path::Path, name: &str) -> Result<std::path::PathBuf, MigrationError> {
    if !file::valid_name(name) {
        return Err(MigrationError::Io(format!(
            "'{name}' is not a migration name: use 1 to 100 of A-Z, a-z, 0-9, '_' and '-'"
        )));
    }
    std::fs::create_dir_all(dir)
        .map_err(|err| MigrationError::Io(format!("cannot create {}: {err}", dir.display())))?;
    let mut last = 0;
    let entries = std::fs::read_dir(dir)
        .map_err(|err| MigrationError::Io(format!("cannot read {}: {err}", dir.display())))?;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if let Some((number, _)) = file::parse_file_name(&file_name) {
            last = last.max(number);
        }
    }
    let path = dir.join(format!("{:04}_{name}.json", last + 1));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut out = options
        .open(&path)
        .map_err(|err| MigrationError::Io(format!("cannot create {}: {err}", path.display())))?;
    std::io::Write::write_all(&mut out, b"{\n  \"steps\": []\n}\n")
        .map_err(|err| MigrationError::Io(err.to_string()))?;
    Ok(path)
}
