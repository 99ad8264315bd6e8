//! Migration files: finding `NNNN_name.json` files in a folder (or the server's embedded
//! ones), and parsing and validating each step, so that a bad file is refused before anything
//! is applied. Every problem names its file, its step and the reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map as JsonMap, Value as Json};
use sha2::{Digest as _, Sha256};

use super::{MigrationError, Problem};
use crate::docs::index::Direction;
use crate::docs::query::{Filter, Query};
use crate::docs::schema::{compile, CollectionPattern};
use crate::docs::write::Write;
use crate::docs::{parse_covering, parse_index_fields};
use crate::model::{DocPath, FieldPath};
use crate::roles::{validate_grant, Grant, DEFAULT_DOMAIN};

/// Documents one `seed` step may hold (like a batch).
pub const MAX_SEED_DOCUMENTS: usize = 500;
/// Documents a data step reads and rewrites per commit, unless the step says otherwise.
pub const DEFAULT_BATCH_SIZE: usize = 500;
/// The largest `batchSize` a data step may ask for.
pub const MAX_BATCH_SIZE: usize = 5_000;
/// The largest migration file (and rules file it names).
pub const MAX_FILE_BYTES: u64 = 16 << 20;

/// A parsed migration file.
#[derive(Debug, Clone)]
pub struct MigrationFile {
    pub number: u32,
    pub name: String,
    pub file_name: String,
    /// SHA-256 of the file's bytes, hex. Files a step names (rules) are not part of it.
    pub checksum: String,
    pub steps: Vec<Step>,
}

/// Which documents a data step touches: those directly in every collection matching `pattern`.
#[derive(Debug, Clone)]
pub struct Target {
    pub pattern: CollectionPattern,
}

#[derive(Debug, Clone)]
pub enum Step {
    CreateIndex {
        collection: String,
        fields: Vec<(FieldPath, Direction)>,
        /// Entries hold the documents (`docs::index`); `"covering": false` keeps them key-only.
        covering: bool,
    },
    DropIndex {
        collection: String,
        fields: Vec<(FieldPath, Direction)>,
    },
    SetRules {
        source: String,
    },
    SetHooks {
        hooks: Vec<Json>,
    },
    GrantRole(Grant),
    RevokeRole(Grant),
    Seed {
        documents: Vec<(DocPath, Json)>,
    },
    ValidateSchema {
        collection: CollectionPattern,
        /// `None` removes the collection's schema.
        schema: Option<Json>,
        /// `"existing": "check"`: refuse the step while a stored document breaks the schema.
        check_existing: bool,
    },
    RenameField {
        target: Target,
        from: FieldPath,
        to: FieldPath,
        batch_size: usize,
    },
    SetDefault {
        target: Target,
        field: FieldPath,
        value: Json,
        batch_size: usize,
    },
    DeleteField {
        target: Target,
        field: FieldPath,
        batch_size: usize,
    },
    Transform {
        target: Target,
        filter: Option<Filter>,
        /// Field path → value or sentinel, PATCH semantics (`$increment`, `$delete`, ...).
        set: JsonMap<String, Json>,
        rename: Vec<(FieldPath, FieldPath)>,
        delete_document: bool,
        batch_size: usize,
    },
}

impl Step {
    /// Data steps rewrite documents collection-wide in resumable batches; the others change
    /// project data or a bounded set of documents in one transaction.
    pub fn is_data_step(&self) -> bool {
        matches!(
            self,
            Step::RenameField { .. }
                | Step::SetDefault { .. }
                | Step::DeleteField { .. }
                | Step::Transform { .. }
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Step::CreateIndex { .. } => "createIndex",
            Step::DropIndex { .. } => "dropIndex",
            Step::SetRules { .. } => "setRules",
            Step::SetHooks { .. } => "setHooks",
            Step::GrantRole(_) => "grantRole",
            Step::RevokeRole(_) => "revokeRole",
            Step::Seed { .. } => "seed",
            Step::ValidateSchema { .. } => "validateSchema",
            Step::RenameField { .. } => "renameField",
            Step::SetDefault { .. } => "setDefault",
            Step::DeleteField { .. } => "deleteField",
            Step::Transform { .. } => "transform",
        }
    }
}

/// Where migration files come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// An app's folder (`--migrations DIR`); `file` paths in steps are relative to it.
    Dir(PathBuf),
    /// The server's own migrations, compiled into the binary: (file name, contents).
    Embedded(&'static [(&'static str, &'static str)]),
}

/// Validates setHooks definitions; the hooks module supplies it when it is built in.
pub type HookValidator = dyn Fn(&Json) -> Result<(), Vec<String>> + Send + Sync;

/// Reads and validates every migration of `source`, or returns every problem found.
pub fn load(
    source: &Source,
    hooks: Option<&HookValidator>,
) -> Result<Vec<MigrationFile>, MigrationError> {
    let mut problems = Vec::new();
    let mut raw: Vec<(String, Vec<u8>)> = Vec::new();
    match source {
        Source::Embedded(files) => {
            for (name, text) in files.iter() {
                raw.push((name.to_string(), text.as_bytes().to_vec()));
            }
        }
        Source::Dir(dir) => {
            let entries = std::fs::read_dir(dir).map_err(|err| {
                MigrationError::Io(format!(
                    "cannot read the migrations folder {}: {err}",
                    dir.display()
                ))
            })?;
            for entry in entries {
                let entry = entry.map_err(|err| MigrationError::Io(err.to_string()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Only names starting with a digit are migrations; rules files and notes may
                // live beside them.
                if !name.starts_with(|c: char| c.is_ascii_digit()) {
                    continue;
                }
                match read_limited(&entry.path()) {
                    Ok(bytes) => raw.push((name, bytes)),
                    Err(reason) => problems.push(Problem::file(&name, reason)),
                }
            }
        }
    }
    raw.sort_by(|a, b| a.0.cmp(&b.0));

    let mut files = Vec::new();
    for (file_name, bytes) in raw {
        let Some((number, name)) = parse_file_name(&file_name) else {
            problems.push(Problem::file(
                &file_name,
                "not named NNNN_name.json (four or more digits, then letters, digits, '_' or '-')",
            ));
            continue;
        };
        let base = match source {
            Source::Dir(dir) => Some(dir.as_path()),
            Source::Embedded(_) => None,
        };
        match parse_file(&file_name, &bytes, base, hooks) {
            Ok(steps) => files.push(MigrationFile {
                number,
                name,
                file_name,
                checksum: checksum(&bytes),
                steps,
            }),
            Err(mut found) => problems.append(&mut found),
        }
    }
    files.sort_by_key(|f| f.number);
    let mut expected = 1;
    let mut seen: BTreeMap<u32, String> = BTreeMap::new();
    for file in &files {
        if let Some(other) = seen.insert(file.number, file.file_name.clone()) {
            problems.push(Problem::file(
                &file.file_name,
                format!("number {:04} is also used by {other}", file.number),
            ));
            continue;
        }
        if file.number != expected {
            problems.push(Problem::file(
                &file.file_name,
                format!(
                    "out of order: expected number {expected:04} here (numbers start at 0001 and have no gaps)"
                ),
            ));
        }
        expected = file.number + 1;
    }
    if problems.is_empty() {
        Ok(files)
    } else {
        Err(MigrationError::Refused(problems))
    }
}

pub fn checksum(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    let size = std::fs::metadata(path)
        .map_err(|err| format!("cannot read: {err}"))?
        .len();
    if size > MAX_FILE_BYTES {
        return Err(format!(
            "{size} bytes; at most {MAX_FILE_BYTES} are allowed"
        ));
    }
    std::fs::read(path).map_err(|err| format!("cannot read: {err}"))
}

/// `0001_create_posts.json` → (1, "create_posts").
pub fn parse_file_name(file_name: &str) -> Option<(u32, String)> {
    let stem = file_name.strip_suffix(".json")?;
    let (digits, name) = stem.split_once('_')?;
    if digits.len() < 4 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    if !valid_name(name) {
        return None;
    }
    Some((digits.parse().ok()?, name.to_string()))
}

/// Migration names: 1–100 of `[A-Za-z0-9_-]`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn parse_file(
    file_name: &str,
    bytes: &[u8],
    base: Option<&Path>,
    hooks: Option<&HookValidator>,
) -> Result<Vec<Step>, Vec<Problem>> {
    let json: Json = serde_json::from_slice(bytes)
        .map_err(|err| vec![Problem::file(file_name, format!("not valid JSON: {err}"))])?;
    let Some(object) = json.as_object() else {
        return Err(vec![Problem::file(
            file_name,
            "must be a JSON object {\"steps\": [...]}",
        )]);
    };
    if let Some(key) = object.keys().find(|k| k.as_str() != "steps") {
        return Err(vec![Problem::file(
            file_name,
            format!("unknown key \"{key}\" (only \"steps\" is allowed)"),
        )]);
    }
    let Some(steps) = object.get("steps").and_then(Json::as_array) else {
        return Err(vec![Problem::file(file_name, "\"steps\" must be an array")]);
    };
    let mut problems = Vec::new();
    let mut parsed = Vec::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        let kind = step.get("step").and_then(Json::as_str).unwrap_or("?");
        match parse_step(step, base, hooks) {
            Ok(step) => parsed.push(step),
            Err(reason) => problems.push(Problem::step(file_name, index + 1, kind, reason)),
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// The fields a step object may have, by kind (besides `step`).
fn allowed_keys(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "createIndex" => &["collection", "fields", "covering"],
        "dropIndex" => &["collection", "fields"],
        "setRules" => &["file"],
        "setHooks" => &["hooks"],
        "grantRole" | "revokeRole" => &["uid", "role", "domain"],
        "seed" => &["documents"],
        "validateSchema" => &["collection", "schema", "existing"],
        "renameField" => &["collection", "from", "to", "batchSize"],
        "setDefault" => &["collection", "field", "value", "batchSize"],
        "deleteField" => &["collection", "field", "batchSize"],
        "transform" => &[
            "collection",
            "where",
            "set",
            "rename",
            "delete",
            "batchSize",
        ],
        _ => return None,
    })
}

fn parse_step(
    step: &Json,
    base: Option<&Path>,
    hooks: Option<&HookValidator>,
) -> Result<Step, String> {
    let object = step
        .as_object()
        .ok_or("a step must be a JSON object with a \"step\" kind")?;
    let kind = match object.get("step") {
        Some(Json::String(kind)) => kind.as_str(),
        _ => return Err("\"step\" (the kind of step) is required and must be a string".into()),
    };
    let allowed = allowed_keys(kind).ok_or_else(|| {
        format!(
            "unknown step \"{kind}\"; known: createIndex, dropIndex, setRules, setHooks, grantRole, revokeRole, seed, validateSchema, renameField, setDefault, deleteField, transform"
        )
    })?;
    if let Some(key) = object
        .keys()
        .find(|k| k.as_str() != "step" && !allowed.contains(&k.as_str()))
    {
        return Err(format!("unknown field \"{key}\""));
    }
    let text = |field: &str| -> Result<String, String> {
        match object.get(field) {
            Some(Json::String(text)) => Ok(text.clone()),
            Some(_) => Err(format!("\"{field}\" must be a string")),
            None => Err(format!("\"{field}\" is required")),
        }
    };
    let field_path = |field: &str| -> Result<FieldPath, String> {
        let path =
            FieldPath::parse(&text(field)?).map_err(|e| format!("\"{field}\": {}", e.message))?;
        if path.is_document_id() {
            return Err(format!("\"{field}\": the document ID cannot be changed"));
        }
        Ok(path)
    };
    let batch_size = || -> Result<usize, String> {
        match object.get("batchSize") {
            None => Ok(DEFAULT_BATCH_SIZE),
            Some(value) => match value.as_u64() {
                Some(n) if (1..=MAX_BATCH_SIZE as u64).contains(&n) => Ok(n as usize),
                _ => Err(format!(
                    "\"batchSize\" must be an integer from 1 to {MAX_BATCH_SIZE}"
                )),
            },
        }
    };
    let target = || -> Result<Target, String> {
        Ok(Target {
            pattern: CollectionPattern::parse(&text("collection")?)?,
        })
    };
    let index_fields = || -> Result<(String, Vec<(FieldPath, Direction)>), String> {
        let collection = text("collection")?;
        crate::model::DocId::parse(&collection)
            .map_err(|e| format!("\"collection\" is a collection ID: {}", e.message))?;
        let fields = parse_index_fields(object.get("fields").unwrap_or(&Json::Null))
            .map_err(|e| e.to_string())?;
        if fields.len() < 2 {
            return Err("a composite index needs at least two fields (single fields are indexed automatically)".into());
        }
        Ok((collection, fields))
    };
    let grant = || -> Result<Grant, String> {
        let domain = match object.get("domain") {
            None | Some(Json::Null) => DEFAULT_DOMAIN.to_string(),
            Some(Json::String(d)) => d.clone(),
            Some(_) => return Err("\"domain\" must be a string".into()),
        };
        let grant = Grant {
            uid: text("uid")?,
            role: text("role")?,
            domain,
        };
        validate_grant(&grant).map_err(|e| e.to_string())?;
        Ok(grant)
    };
    match kind {
        "createIndex" => {
            let (collection, fields) = index_fields()?;
            let covering = parse_covering(object.get("covering")).map_err(|e| e.to_string())?;
            Ok(Step::CreateIndex {
                collection,
                fields,
                covering,
            })
        }
        "dropIndex" => {
            let (collection, fields) = index_fields()?;
            Ok(Step::DropIndex { collection, fields })
        }
        "setRules" => {
            let file = text("file")?;
            let Some(base) = base else {
                return Err("the server's own migrations cannot name files".into());
            };
            let path = base.join(&file);
            let bytes =
                read_limited(&path).map_err(|e| format!("rules file {}: {e}", path.display()))?;
            let source = String::from_utf8(bytes)
                .map_err(|_| format!("rules file {} is not UTF-8 text", path.display()))?;
            if let Err(errors) = hearth_rules::Ruleset::parse(&source) {
                let listed: Vec<String> = errors
                    .iter()
                    .map(|e| format!("{file}:{}:{}: {}", e.line, e.column, e.message))
                    .collect();
                return Err(format!(
                    "the rules file does not parse:\n  {}",
                    listed.join("\n  ")
                ));
            }
            Ok(Step::SetRules { source })
        }
        "setHooks" => {
            let hooks_json = object
                .get("hooks")
                .and_then(Json::as_array)
                .ok_or("\"hooks\" must be an array of hook definitions")?;
            let Some(validate) = hooks else {
                return Err("setHooks is not available: this server has no hooks module".into());
            };
            let mut problems = Vec::new();
            for (i, hook) in hooks_json.iter().enumerate() {
                if let Err(errors) = validate(hook) {
                    problems.push(format!("hook {}: {}", i + 1, errors.join("; ")));
                }
            }
            if !problems.is_empty() {
                return Err(problems.join("\n  "));
            }
            Ok(Step::SetHooks {
                hooks: hooks_json.clone(),
            })
        }
        "grantRole" => Ok(Step::GrantRole(grant()?)),
        "revokeRole" => Ok(Step::RevokeRole(grant()?)),
        "seed" => {
            let documents = object
                .get("documents")
                .and_then(Json::as_array)
                .ok_or("\"documents\" must be an array of {\"path\", \"data\"}")?;
            if documents.len() > MAX_SEED_DOCUMENTS {
                return Err(format!(
                    "{} documents; one seed step holds at most {MAX_SEED_DOCUMENTS}",
                    documents.len()
                ));
            }
            let mut parsed: Vec<(DocPath, Json)> = Vec::with_capacity(documents.len());
            for (i, document) in documents.iter().enumerate() {
                let path = document
                    .get("path")
                    .and_then(Json::as_str)
                    .ok_or_else(|| format!("document {}: \"path\" must be a string", i + 1))?;
                let path = DocPath::parse(path)
                    .map_err(|e| format!("document {}: {}", i + 1, e.message))?;
                let data = document
                    .get("data")
                    .ok_or_else(|| format!("document {}: \"data\" is required", i + 1))?;
                Write::data_from_json(data)
                    .map_err(|e| format!("document {} ({path}): {e}", i + 1))?;
                if parsed.iter().any(|(p, _)| *p == path) {
                    return Err(format!("document {}: {path} is seeded twice", i + 1));
                }
                parsed.push((path, data.clone()));
            }
            Ok(Step::Seed { documents: parsed })
        }
        "validateSchema" => {
            let collection = CollectionPattern::parse(&text("collection")?)?;
            let schema = match object.get("schema") {
                None => {
                    return Err(
                        "\"schema\" is required (null removes the collection's schema)".into(),
                    )
                }
                Some(Json::Null) => None,
                Some(schema) => {
                    compile(schema)?;
                    Some(schema.clone())
                }
            };
            let check_existing = match object.get("existing") {
                None => false,
                Some(Json::String(mode)) if mode == "ignore" => false,
                Some(Json::String(mode)) if mode == "check" => true,
                Some(_) => {
                    return Err("\"existing\" is \"ignore\" (the default) or \"check\"".into())
                }
            };
            if check_existing && schema.is_none() {
                return Err("\"existing\": \"check\" needs a schema".into());
            }
            Ok(Step::ValidateSchema {
                collection,
                schema,
                check_existing,
            })
        }
        "renameField" => {
            let from = field_path("from")?;
            let to = field_path("to")?;
            if from.is_prefix_of(&to) || to.is_prefix_of(&from) {
                return Err(format!("\"from\" ({from}) and \"to\" ({to}) overlap"));
            }
            Ok(Step::RenameField {
                target: target()?,
                from,
                to,
                batch_size: batch_size()?,
            })
        }
        "setDefault" => {
            let value = object.get("value").ok_or("\"value\" is required")?;
            let field = field_path("field")?;
            check_update(&field, value)?;
            Ok(Step::SetDefault {
                target: target()?,
                field,
                value: value.clone(),
                batch_size: batch_size()?,
            })
        }
        "deleteField" => Ok(Step::DeleteField {
            target: target()?,
            field: field_path("field")?,
            batch_size: batch_size()?,
        }),
        "transform" => parse_transform(object, target()?, batch_size()?),
        _ => Err(format!("unknown step \"{kind}\"")),
    }
}

/// Checks that `field: value` is a valid update (values and sentinels as in PATCH).
fn check_update(field: &FieldPath, value: &Json) -> Result<(), String> {
    let mut body = JsonMap::new();
    body.insert(field.to_string(), value.clone());
    Write::fields_from_json(&Json::Object(body))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn parse_transform(
    object: &JsonMap<String, Json>,
    target: Target,
    batch_size: usize,
) -> Result<Step, String> {
    let filter = match object.get("where") {
        None | Some(Json::Null) => None,
        Some(condition) => {
            // The query parser is the one definition of a condition; reuse it.
            let query = serde_json::json!({"from": target.pattern.collection_id(), "allDescendants": true, "where": condition});
            Query::from_json(&query, 1)
                .map_err(|e| format!("\"where\": {e}"))?
                .filter
        }
    };
    let set = match object.get("set") {
        None => JsonMap::new(),
        Some(Json::Object(set)) => {
            Write::fields_from_json(&Json::Object(set.clone()))
                .map_err(|e| format!("\"set\": {e}"))?;
            set.clone()
        }
        Some(_) => return Err("\"set\" must be an object of field path → value".into()),
    };
    let mut rename = Vec::new();
    match object.get("rename") {
        None => {}
        Some(Json::Object(pairs)) => {
            for (from, to) in pairs {
                let from =
                    FieldPath::parse(from).map_err(|e| format!("\"rename\": {}", e.message))?;
                let to = to
                    .as_str()
                    .ok_or("\"rename\" maps field paths to field paths (strings)")?;
                let to = FieldPath::parse(to).map_err(|e| format!("\"rename\": {}", e.message))?;
                rename.push((from, to));
            }
        }
        Some(_) => return Err("\"rename\" must be an object {\"from\": \"to\"}".into()),
    }
    let delete_document = match object.get("delete") {
        None => false,
        Some(Json::Bool(flag)) => *flag,
        Some(_) => return Err("\"delete\" must be true or false".into()),
    };
    if delete_document && (!set.is_empty() || !rename.is_empty()) {
        return Err("\"delete\": true deletes the matching documents; it cannot be combined with \"set\" or \"rename\"".into());
    }
    if !delete_document && set.is_empty() && rename.is_empty() {
        return Err("a transform needs \"set\", \"rename\" or \"delete\": true".into());
    }
    // Every field the transform writes, once: overlapping paths would make the result depend
    // on the order of application.
    let mut written: Vec<FieldPath> = Vec::new();
    for key in set.keys() {
        written.push(FieldPath::parse(key).map_err(|e| e.message)?);
    }
    for (from, to) in &rename {
        written.push(from.clone());
        written.push(to.clone());
    }
    for (i, a) in written.iter().enumerate() {
        if a.is_document_id() {
            return Err("the document ID cannot be changed".into());
        }
        for b in &written[i + 1..] {
            if a.is_prefix_of(b) || b.is_prefix_of(a) {
                return Err(format!("fields '{a}' and '{b}' overlap in one transform"));
            }
        }
    }
    Ok(Step::Transform {
        target,
        filter,
        set,
        rename,
        delete_document,
        batch_size,
    })
}
