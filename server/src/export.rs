//! Export and import: a consistent snapshot of the database as JSON Lines, and loading one into
//! an empty data dir.
//!
//! A snapshot is read through one `ReadView`, so it is a single commit's state even while the
//! server writes. Lines, each one JSON object with a `type`:
//! - `header`: `{"type":"header","format":"hearth-export","formatVersion":1,"exportedAt","storeVersion"}`
//! - `meta`: project data (rules, index catalog, roles, schemas, migration records, ...):
//!   `{"type":"meta","key","text"}` (or `"base64"` when the value is not UTF-8)
//! - `auth`: user records with password hashes, the email index and revocations:
//!   `{"type":"auth","key":"u/<uid>","value":{...}}`. Sessions and one-time tokens are left out:
//!   after an import users sign in again.
//! - `hook`: hook definitions (secrets included): `{"type":"hook","key":"d/<name>","value":{...}}`.
//!   Pending `after` deliveries and the delivery log are left out.
//! - `document`: `{"type":"document","path","createTime","updateTime","data"}`
//! - `end`: counts, so a truncated export is detected.
//!
//! Derived data is not exported: index entries are rebuilt by the import, and the change log
//! starts afresh (realtime clients resume with a new snapshot). Documents keep their versions
//! (so ETags stay valid); the store continues above the highest.

use std::io::{BufRead as _, BufWriter, Write as _};
use std::path::Path;

use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::docs::index::{entries_for, CatalogSnapshot};
use crate::docs::read_catalog;
use crate::hooks::outbox::DEFINITION_PREFIX;
use crate::model::document::StoredHeader;
use crate::model::keys::{document_key, document_path_from_key};
use crate::model::{DocPath, Document, Timestamp, Value};
use crate::store::{CommitError, Expect, KeyRange, ReadView, Space, Store, StoreError, WriteSet};

/// Version of the line format; an import refuses other versions.
pub const FORMAT_VERSION: u64 = 1;
/// Entries read per scan while exporting.
const SCAN_CHUNK: usize = 1_000;
/// Documents per import commit.
const IMPORT_BATCH: usize = 2_000;
/// Auth key prefixes exported: users, the email index, revocations (not sessions or tokens).
const AUTH_PREFIXES: [&[u8]; 3] = [b"u/", b"e/", b"r/"];
/// Meta keys that belong to the store itself, not to the project.
const STORE_META_PREFIX: &[u8] = b"__store.";
/// Present while an import is under way: committed with the first batch, deleted with the
/// last. A data dir holding it is refused by `serve` (the import did not finish).
const IMPORT_MARKER: &[u8] = b"__import.incomplete";

/// The files of an export folder, by line type.
pub const META_FILE: &str = "meta.jsonl";
pub const USERS_FILE: &str = "users.jsonl";
pub const HOOKS_FILE: &str = "hooks.jsonl";
pub const DOCUMENTS_FILE: &str = "documents.jsonl";
/// Written last: the header and end lines. Its presence marks a complete export.
pub const MANIFEST_FILE: &str = "manifest.json";

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
    /// The export folder or stream is not a valid, complete export.
    #[error("{0}")]
    Invalid(String),
    /// Import only fills an empty data dir.
    #[error("{0}")]
    NotEmpty(String),
    /// The receiver went away (a client closed the stream).
    #[error("the export was cancelled")]
    Cancelled,
}

fn io(err: impl std::fmt::Display) -> ExportError {
    ExportError::Io(err.to_string())
}

/// Counts of an export or import.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub meta: u64,
    pub auth: u64,
    pub hooks: u64,
    pub documents: u64,
}

/// Which kind of line a sink receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Header,
    Meta,
    Auth,
    Hook,
    Document,
    End,
}

/// Receives each line of a snapshot with its kind.
pub type LineSink<'a> = dyn FnMut(LineKind, &[u8]) -> Result<(), ExportError> + 'a;
/// Receives each (key, value) of a scan.
type EntryVisitor<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), ExportError> + 'a;

/// Writes every line of a snapshot of `view` to `sink` (one JSON object and a newline each).
pub fn write_snapshot(
    view: &dyn ReadView,
    store_version: u64,
    sink: &mut LineSink<'_>,
) -> Result<Counts, ExportError> {
    let mut counts = Counts::default();
    let header = json!({"type": "header", "format": "hearth-export", "formatVersion": FORMAT_VERSION,
        "exportedAt": Timestamp::now().to_rfc3339(), "storeVersion": store_version});
    sink(LineKind::Header, &line(&header))?;

    for_each(
        view,
        Space::Meta,
        &KeyRange::prefix(b""),
        &mut |key, value| {
            if key.starts_with(STORE_META_PREFIX) {
                return Ok(());
            }
            let body = value.get(8..).unwrap_or_default();
            let mut record = json!({"type": "meta", "key": String::from_utf8_lossy(key)});
            match std::str::from_utf8(body) {
                Ok(text) => record["text"] = Json::String(text.to_string()),
                Err(_) => {
                    record["base64"] =
                        Json::String(base64::engine::general_purpose::STANDARD.encode(body))
                }
            }
            counts.meta += 1;
            sink(LineKind::Meta, &line(&record))
        },
    )?;

    for prefix in AUTH_PREFIXES {
        for_each(
            view,
            Space::Auth,
            &KeyRange::prefix(prefix),
            &mut |key, value| {
                let body = value.get(8..).unwrap_or_default();
                let value: Json = serde_json::from_slice(body).map_err(|err| {
                    ExportError::Invalid(format!(
                        "auth record {} is not JSON: {err}",
                        String::from_utf8_lossy(key)
                    ))
                })?;
                counts.auth += 1;
                sink(
                    LineKind::Auth,
                    &line(
                        &json!({"type": "auth", "key": String::from_utf8_lossy(key), "value": value}),
                    ),
                )
            },
        )?;
    }

    for_each(
        view,
        Space::Hooks,
        &KeyRange::prefix(DEFINITION_PREFIX),
        &mut |key, value| {
            let value: Json = serde_json::from_slice(value).map_err(|err| {
                ExportError::Invalid(format!(
                    "hook record {} is not JSON: {err}",
                    String::from_utf8_lossy(key)
                ))
            })?;
            counts.hooks += 1;
            sink(
                LineKind::Hook,
                &line(
                    &json!({"type": "hook", "key": String::from_utf8_lossy(key), "value": value}),
                ),
            )
        },
    )?;

    for_each(
        view,
        Space::Documents,
        &KeyRange::prefix(b""),
        &mut |key, value| {
            let Some(path) = document_path_from_key(key) else {
                return Err(ExportError::Invalid(
                    "a stored document key does not decode".into(),
                ));
            };
            let header = StoredHeader::read(value).ok_or_else(|| {
                ExportError::Invalid(format!("stored document {path} is corrupt"))
            })?;
            // The stored data is already wire JSON: splice it in without decoding.
            let mut out = Vec::with_capacity(value.len() + 120);
            out.extend_from_slice(b"{\"type\":\"document\",\"path\":");
            out.extend_from_slice(
                Json::String(path.as_str().to_string())
                    .to_string()
                    .as_bytes(),
            );
            out.extend_from_slice(
                format!(
                    ",\"version\":{},\"createTime\":\"{}\",\"updateTime\":\"{}\",\"data\":",
                    header.version, header.create_time, header.update_time
                )
                .as_bytes(),
            );
            out.extend_from_slice(StoredHeader::data_bytes(value));
            out.extend_from_slice(b"}\n");
            counts.documents += 1;
            sink(LineKind::Document, &out)
        },
    )?;

    let end = json!({"type": "end", "meta": counts.meta, "auth": counts.auth, "hooks": counts.hooks, "documents": counts.documents});
    sink(LineKind::End, &line(&end))?;
    Ok(counts)
}

fn line(value: &Json) -> Vec<u8> {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    out
}

/// Calls `each` for every entry of `range`, scanning in bounded chunks.
fn for_each(
    view: &dyn ReadView,
    space: Space,
    range: &KeyRange,
    each: &mut EntryVisitor<'_>,
) -> Result<(), ExportError> {
    let mut next = range.clone();
    loop {
        let entries = view.scan(space, &next, SCAN_CHUNK, false)?;
        for (key, value) in &entries {
            each(key, value)?;
        }
        match entries.last() {
            Some((key, _)) if entries.len() == SCAN_CHUNK => next = range.after(key),
            _ => return Ok(()),
        }
    }
}

/// Exports a snapshot of `store` into `dir` (created; must not hold an export already).
pub fn export_to_dir(store: &dyn Store, dir: &Path) -> Result<Counts, ExportError> {
    let view = store.read()?;
    let store_version = *store.committed().borrow();
    let mut files = ExportFiles::create(dir)?;
    let counts = write_snapshot(view.as_ref(), store_version, &mut |kind, bytes| {
        files.write(kind, bytes)
    })?;
    files.finish()?;
    Ok(counts)
}

/// Splits a stream of export lines into the files of an export folder.
pub struct ExportFiles {
    dir: std::path::PathBuf,
    meta: BufWriter<std::fs::File>,
    users: BufWriter<std::fs::File>,
    hooks: BufWriter<std::fs::File>,
    documents: BufWriter<std::fs::File>,
    manifest: Vec<u8>,
    ended: bool,
}

impl ExportFiles {
    pub fn create(dir: &Path) -> Result<ExportFiles, ExportError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        if dir.join(MANIFEST_FILE).exists() {
            return Err(ExportError::NotEmpty(format!(
                "{} already holds an export",
                dir.display()
            )));
        }
        let open = |name: &str| -> Result<BufWriter<std::fs::File>, ExportError> {
            Ok(BufWriter::with_capacity(
                1 << 20,
                std::fs::File::create(dir.join(name)).map_err(io)?,
            ))
        };
        Ok(ExportFiles {
            dir: dir.to_path_buf(),
            meta: open(META_FILE)?,
            users: open(USERS_FILE)?,
            hooks: open(HOOKS_FILE)?,
            documents: open(DOCUMENTS_FILE)?,
            manifest: Vec::new(),
            ended: false,
        })
    }

    pub fn write(&mut self, kind: LineKind, bytes: &[u8]) -> Result<(), ExportError> {
        match kind {
            LineKind::Header => self.manifest.extend_from_slice(bytes),
            LineKind::End => {
                self.manifest.extend_from_slice(bytes);
                self.ended = true;
            }
            LineKind::Meta => self.meta.write_all(bytes).map_err(io)?,
            LineKind::Auth => self.users.write_all(bytes).map_err(io)?,
            LineKind::Hook => self.hooks.write_all(bytes).map_err(io)?,
            LineKind::Document => self.documents.write_all(bytes).map_err(io)?,
        }
        Ok(())
    }

    /// Flushes and syncs the data files, then writes the manifest (header and end lines).
    pub fn finish(mut self) -> Result<(), ExportError> {
        if !self.ended {
            return Err(ExportError::Invalid(
                "the export stream ended early (no end line)".into(),
            ));
        }
        for file in [
            &mut self.meta,
            &mut self.users,
            &mut self.hooks,
            &mut self.documents,
        ] {
            file.flush().map_err(io)?;
            file.get_ref().sync_all().map_err(io)?;
        }
        std::fs::write(self.dir.join(MANIFEST_FILE), &self.manifest).map_err(io)?;
        Ok(())
    }

    /// Routes one line of a stream (from the admin API) by its `type`.
    pub fn write_line(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        let kind = line_kind(bytes)?;
        let mut owned = bytes.to_vec();
        if owned.last() != Some(&b'\n') {
            owned.push(b'\n');
        }
        self.write(kind, &owned)
    }
}

/// The kind of an export line, read from its `type`. Document lines (nearly all of them) start
/// with their type, so only the few others are parsed.
fn line_kind(bytes: &[u8]) -> Result<LineKind, ExportError> {
    if bytes.starts_with(b"{\"type\":\"document\"") {
        return Ok(LineKind::Document);
    }
    let record: Json = serde_json::from_slice(bytes).map_err(|err| {
        ExportError::Invalid(format!("a line of the export stream is not JSON: {err}"))
    })?;
    Ok(match record["type"].as_str() {
        Some("document") => LineKind::Document,
        Some("auth") => LineKind::Auth,
        Some("hook") => LineKind::Hook,
        Some("meta") => LineKind::Meta,
        Some("header") => LineKind::Header,
        Some("end") => LineKind::End,
        other => {
            return Err(ExportError::Invalid(format!(
                "unexpected line type {other:?} in the export stream"
            )))
        }
    })
}

/// Imports the export in `dir` into `store`, which must be empty. Returns the counts.
/// Blocking: run it off the async executor.
pub fn import_from_dir(store: &dyn Store, dir: &Path) -> Result<Counts, ExportError> {
    let manifest = std::fs::read_to_string(dir.join(MANIFEST_FILE)).map_err(|err| {
        ExportError::Invalid(format!(
            "{} is not a complete export (no readable {MANIFEST_FILE}: {err})",
            dir.display()
        ))
    })?;
    let mut lines = manifest.lines();
    let header: Json = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| ExportError::Invalid(format!("{MANIFEST_FILE} has no header line")))?;
    if header["format"] != "hearth-export" || header["formatVersion"] != FORMAT_VERSION {
        return Err(ExportError::Invalid(format!(
            "{MANIFEST_FILE}: not a hearth export of format version {FORMAT_VERSION}"
        )));
    }
    let end: Json = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or_else(|| ExportError::Invalid(format!("{MANIFEST_FILE} has no end line")))?;
    ensure_empty(store)?;

    let mut counts = Counts::default();
    let mut batch = WriteSet::default();
    batch.put(
        Space::Meta,
        IMPORT_MARKER.to_vec(),
        dir.display().to_string().into_bytes(),
    );
    for_each_line(&dir.join(META_FILE), &mut |number, record| {
        let key = text_field(&record, "key", META_FILE, number)?;
        let body = match (&record["text"], &record["base64"]) {
            (Json::String(text), _) => text.as_bytes().to_vec(),
            (_, Json::String(encoded)) => base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| bad_line(META_FILE, number, &e))?,
            _ => return Err(bad_line(META_FILE, number, &"no text or base64")),
        };
        let mut value = vec![0u8; 8];
        value.extend_from_slice(&body);
        batch.put_versioned(Space::Meta, key.into_bytes(), value);
        counts.meta += 1;
        Ok(())
    })?;
    for_each_line(&dir.join(USERS_FILE), &mut |number, record| {
        let key = text_field(&record, "key", USERS_FILE, number)?;
        if !AUTH_PREFIXES.iter().any(|p| key.as_bytes().starts_with(p)) {
            return Err(bad_line(USERS_FILE, number, &"unknown auth key"));
        }
        let mut value = vec![0u8; 8];
        value.extend_from_slice(&serde_json::to_vec(&record["value"]).map_err(io)?);
        batch.put_versioned(Space::Auth, key.into_bytes(), value);
        counts.auth += 1;
        Ok(())
    })?;
    for_each_line(&dir.join(HOOKS_FILE), &mut |number, record| {
        let key = text_field(&record, "key", HOOKS_FILE, number)?;
        if !key.as_bytes().starts_with(DEFINITION_PREFIX) {
            return Err(bad_line(HOOKS_FILE, number, &"unknown hook key"));
        }
        batch.put(
            Space::Hooks,
            key.into_bytes(),
            serde_json::to_vec(&record["value"]).map_err(io)?,
        );
        counts.hooks += 1;
        Ok(())
    })?;
    // Project data and users first, in one commit, so documents are indexed with the imported
    // index catalog.
    let mut in_flight = InFlight::default();
    in_flight.submit(store, std::mem::take(&mut batch))?;
    in_flight.drain()?;
    let catalog: CatalogSnapshot = read_catalog(store.read()?.as_ref())
        .map_err(|err| ExportError::Invalid(err.to_string()))?;

    let mut in_batch = 0usize;
    let mut highest_version = header["storeVersion"].as_u64().unwrap_or(0);
    let mut duplicates = DuplicatePaths::default();
    for_each_line(&dir.join(DOCUMENTS_FILE), &mut |number, record| {
        let document = document_from_line(&record)
            .map_err(|reason| bad_line(DOCUMENTS_FILE, number, &reason))?;
        let key = document_key(&document.path);
        if !duplicates.admit(&key, &mut batch) {
            return Err(bad_line(
                DOCUMENTS_FILE,
                number,
                &format!("{} appears more than once", document.path),
            ));
        }
        let stored = document.encode_for_store();
        // The document keeps its version (its ETag stays valid); exports without one get
        // the commit's, and so do the index entries that hold a copy of it.
        let keeps_version = document.version > 0;
        for (entry, kind) in entries_for(&document, &catalog) {
            let value = kind.value(&key, &stored);
            batch.put_stamped(
                Space::Index,
                entry,
                value.bytes,
                value.holds_document && !keeps_version,
            );
        }
        if keeps_version {
            highest_version = highest_version.max(document.version);
        }
        batch.put_stamped(Space::Documents, key, stored, !keeps_version);
        counts.documents += 1;
        in_batch += 1;
        if in_batch == IMPORT_BATCH {
            in_flight.submit(store, std::mem::take(&mut batch))?;
            duplicates.batch_submitted();
            in_batch = 0;
        }
        Ok(())
    })?;
    in_flight.submit(store, batch)?;
    in_flight.drain()?;
    if end["documents"] != counts.documents
        || end["auth"] != counts.auth
        || end["meta"] != counts.meta
        || end["hooks"] != counts.hooks
    {
        return Err(ExportError::Invalid(format!(
            "the export is incomplete: the manifest counts {} documents, {} auth, {} hook and {} meta records; the files hold {}, {}, {} and {}",
            end["documents"], end["auth"], end["hooks"], end["meta"], counts.documents, counts.auth, counts.hooks, counts.meta
        )));
    }
    let mut done = WriteSet::default();
    done.delete(Space::Meta, IMPORT_MARKER.to_vec());
    // Every later commit gets a version above every restored document's.
    done.min_version = Some(highest_version + 1);
    in_flight.submit(store, done)?;
    in_flight.drain()?;
    Ok(counts)
}

/// Refuses a data dir whose import did not finish: its data is partial.
pub fn check_no_unfinished_import(store: &dyn Store) -> Result<(), ExportError> {
    let view = store.read()?;
    if let Some(source) = view
        .get_many(Space::Meta, &[IMPORT_MARKER.to_vec()])?
        .pop()
        .flatten()
    {
        return Err(ExportError::NotEmpty(format!(
            "an import (from {}) into this data dir did not finish, so its data is partial: delete the data dir and import again",
            String::from_utf8_lossy(&source)
        )));
    }
    Ok(())
}

/// Import commits waiting to become durable. A couple in flight keeps the writer busy while
/// the next batch is parsed, without holding the whole import in memory.
#[derive(Default)]
struct InFlight {
    receivers: std::collections::VecDeque<crate::store::CommitReceiver>,
}

impl InFlight {
    const MAX: usize = 2;

    fn submit(&mut self, store: &dyn Store, write_set: WriteSet) -> Result<(), ExportError> {
        if write_set.ops.is_empty() {
            return Ok(());
        }
        self.receivers.push_back(store.submit(write_set));
        while self.receivers.len() > Self::MAX {
            self.wait_one()?;
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), ExportError> {
        while !self.receivers.is_empty() {
            self.wait_one()?;
        }
        Ok(())
    }

    fn wait_one(&mut self) -> Result<(), ExportError> {
        let Some(receiver) = self.receivers.pop_front() else {
            return Ok(());
        };
        match receiver.blocking_recv() {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(CommitError::Store(err))) => Err(ExportError::Store(err)),
            // Nothing else writes during an offline import: the only checks are those of
            // `DuplicatePaths`.
            Ok(Err(CommitError::Conflict)) => Err(ExportError::Invalid(format!(
                "{DOCUMENTS_FILE} holds a document path more than once"
            ))),
            Err(_) => Err(ExportError::Store(StoreError::Closed)),
        }
    }
}

/// Catches a document path that appears twice in `documents.jsonl`: the second copy would
/// replace the document but leave the index entries of the first behind, and a covering entry
/// would then answer queries with the stale copy.
///
/// An export lists documents in key order, so as long as each key is above the one before, no
/// key can repeat and nothing is checked. From the first key out of order on (a hand-made
/// file), each document is put only if absent (a check the writer runs against the batches
/// before). The keys of the current batch are remembered either way: its own puts are not
/// applied yet when its checks run.
#[derive(Default)]
struct DuplicatePaths {
    previous: Option<Vec<u8>>,
    out_of_order: bool,
    in_batch: std::collections::HashSet<Vec<u8>>,
}

impl DuplicatePaths {
    /// False when `key` repeats a key of the current batch; otherwise adds what the batch must
    /// check.
    fn admit(&mut self, key: &[u8], batch: &mut WriteSet) -> bool {
        if !self.out_of_order && self.previous.as_deref().is_some_and(|p| key <= p) {
            self.out_of_order = true;
        }
        self.previous = Some(key.to_vec());
        // Every key of the batch, in order or not: the first key out of order may repeat one
        // the batch took while the file was still in order.
        if !self.in_batch.insert(key.to_vec()) {
            return false;
        }
        if self.out_of_order {
            batch.check(Space::Documents, key.to_vec(), Expect::Absent);
        }
        true
    }

    fn batch_submitted(&mut self) {
        self.in_batch.clear();
    }
}

/// Refuses a store that holds anything but the store's own bookkeeping.
fn ensure_empty(store: &dyn Store) -> Result<(), ExportError> {
    let view = store.read()?;
    let all = KeyRange::prefix(b"");
    let documents = !view.scan(Space::Documents, &all, 1, false)?.is_empty();
    let auth = !view.scan(Space::Auth, &all, 1, false)?.is_empty();
    let hooks = !view.scan(Space::Hooks, &all, 1, false)?.is_empty();
    let meta = view
        .scan(Space::Meta, &all, 100, false)?
        .iter()
        .any(|(key, _)| !key.starts_with(STORE_META_PREFIX));
    check_no_unfinished_import(store)?;
    if documents || auth || hooks || meta {
        return Err(ExportError::NotEmpty(
            "the data dir is not empty: import only fills a new, empty data dir".into(),
        ));
    }
    Ok(())
}

fn bad_line(file: &str, number: usize, reason: &dyn std::fmt::Display) -> ExportError {
    ExportError::Invalid(format!("{file}:{number}: {reason}"))
}

fn text_field(
    record: &Json,
    field: &str,
    file: &str,
    number: usize,
) -> Result<String, ExportError> {
    record[field]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad_line(file, number, &format!("\"{field}\" must be a string")))
}

fn document_from_line(record: &Json) -> Result<Document, String> {
    let path = record["path"].as_str().ok_or("\"path\" must be a string")?;
    let path = DocPath::parse(path).map_err(|e| e.message)?;
    let time = |field: &str| -> Result<Timestamp, String> {
        let text = record[field]
            .as_str()
            .ok_or_else(|| format!("\"{field}\" must be a string"))?;
        Timestamp::parse_rfc3339(text).map_err(|e| e.message)
    };
    let data = match Value::from_json(&record["data"]).map_err(|e| e.message)? {
        Value::Map(map) => map,
        _ => return Err("\"data\" must be an object".into()),
    };
    let version = match &record["version"] {
        Json::Null => 0,
        value => value
            .as_u64()
            .ok_or("\"version\" must be a non-negative integer")?,
    };
    Ok(Document {
        path,
        data,
        create_time: time("createTime")?,
        update_time: time("updateTime")?,
        version,
    })
}

/// Reads a JSON Lines file, calling `each` with the 1-based line number and the parsed line.
fn for_each_line(
    file: &Path,
    each: &mut dyn FnMut(usize, Json) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let reader = std::io::BufReader::with_capacity(
        1 << 20,
        std::fs::File::open(file).map_err(|e| ExportError::Invalid(format!("{name}: {e}")))?,
    );
    for (index, text) in reader.lines().enumerate() {
        let text = text.map_err(io)?;
        if text.trim().is_empty() {
            continue;
        }
        let record: Json =
            serde_json::from_str(&text).map_err(|e| bad_line(&name, index + 1, &e))?;
        each(index + 1, record)?;
    }
    Ok(())
}
