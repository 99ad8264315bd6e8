//! What to apply: the files of a track compared with the records the database keeps. An
//! applied file that changed, an applied file that disappeared, or an interrupted migration
//! whose file changed since are refused here, before anything runs.

use std::collections::BTreeMap;

use serde_json::{json, Value as Json};

use super::file::MigrationFile;
use super::{AppliedRecord, MigrationError, Problem, Progress, Track};
use crate::store::{KeyRange, ReadView, Space};

/// The files of one track and what the database says about them.
#[derive(Debug, Clone)]
pub struct Plan {
    pub track: Track,
    pub files: Vec<MigrationFile>,
    pub applied: BTreeMap<u32, AppliedRecord>,
    /// The interrupted migration and the version of its progress value.
    pub progress: Option<(Progress, u64)>,
}

impl Plan {
    pub fn pending(&self) -> impl Iterator<Item = &MigrationFile> {
        self.files
            .iter()
            .filter(|f| !self.applied.contains_key(&f.number))
    }

    /// `{track, migrations: [{number, name, state, appliedAt?, step?, changed?}]}` for the
    /// CLI and the admin API; state is `applied`, `pending` or `interrupted`.
    pub fn status(&self) -> Json {
        let migrations: Vec<Json> = self
            .files
            .iter()
            .map(|file| {
                if let Some(record) = self.applied.get(&file.number) {
                    return json!({"number": file.number, "name": file.name, "state": "applied", "appliedAt": record.applied_at, "checksum": record.checksum});
                }
                match &self.progress {
                    Some((progress, _)) if progress.number == file.number => json!({
                        "number": file.number, "name": file.name, "state": "interrupted",
                        "step": progress.step + 1, "changed": progress.changed, "checksum": file.checksum,
                    }),
                    _ => json!({"number": file.number, "name": file.name, "state": "pending", "checksum": file.checksum}),
                }
            })
            .collect();
        json!({"track": self.track.as_str(), "migrations": migrations})
    }
}

/// Reads the records of `track` and checks them against `files`.
pub fn make_plan(
    track: Track,
    files: Vec<MigrationFile>,
    view: &dyn ReadView,
) -> Result<Plan, MigrationError> {
    let (applied, progress) = read_records(track, view)?;
    let mut problems = Vec::new();
    for record in applied.values() {
        let recorded_name = format!("{:04}_{}.json", record.number, record.name);
        match files.iter().find(|f| f.number == record.number) {
            None => problems.push(Problem::file(
                &recorded_name,
                "was applied but is missing from the migrations folder; applied migrations must stay",
            )),
            Some(file) if file.name != record.name => problems.push(Problem::file(
                &file.file_name,
                format!("number {:04} was applied as {recorded_name}; applied migrations cannot be renamed or renumbered", record.number),
            )),
            Some(file) if file.checksum != record.checksum => problems.push(Problem::file(
                &file.file_name,
                format!(
                    "changed after it was applied (checksum {} now, {} when applied on {}); add a new migration instead of editing an applied one",
                    short(&file.checksum),
                    short(&record.checksum),
                    record.applied_at
                ),
            )),
            Some(_) => {}
        }
    }
    // A migration numbered below the last applied one but never applied would run out of order.
    if let Some(last) = applied.keys().next_back() {
        for file in files
            .iter()
            .filter(|f| f.number < *last && !applied.contains_key(&f.number))
        {
            problems.push(Problem::file(
                &file.file_name,
                format!("out of order: it is not applied, but {last:04} already is"),
            ));
        }
    }
    if let Some((progress, _)) = &progress {
        let first_pending = files.iter().find(|f| !applied.contains_key(&f.number));
        match first_pending {
            Some(file) if file.number == progress.number && file.checksum == progress.checksum => {}
            Some(file) if file.number == progress.number => problems.push(Problem::file(
                &file.file_name,
                format!(
                    "changed while it was being applied (interrupted at step {}); restore the file as it was (checksum {}) so the run can resume",
                    progress.step + 1,
                    short(&progress.checksum)
                ),
            )),
            _ => problems.push(Problem::file(
                &format!("{:04}_{}.json", progress.number, progress.name),
                format!("was interrupted at step {} but is not the next pending migration", progress.step + 1),
            )),
        }
    }
    if !problems.is_empty() {
        return Err(MigrationError::Refused(problems));
    }
    Ok(Plan {
        track,
        files,
        applied,
        progress,
    })
}

fn short(checksum: &str) -> &str {
    checksum.get(..12).unwrap_or(checksum)
}

type Records = (BTreeMap<u32, AppliedRecord>, Option<(Progress, u64)>);

fn read_records(track: Track, view: &dyn ReadView) -> Result<Records, MigrationError> {
    let mut applied = BTreeMap::new();
    let range = KeyRange::prefix(&track.applied_prefix());
    // Applied records are few (one per file); page through them anyway.
    let mut next = range.clone();
    loop {
        let entries = view.scan(Space::Meta, &next, 1_000, false)?;
        for (_, value) in &entries {
            let record: AppliedRecord = serde_json::from_slice(value.get(8..).unwrap_or_default())
                .map_err(|err| MigrationError::Corrupt(err.to_string()))?;
            applied.insert(record.number, record);
        }
        match entries.last() {
            Some((key, _)) if entries.len() == 1_000 => next = range.after(key),
            _ => break,
        }
    }
    let progress = view
        .get_many(Space::Meta, &[track.progress_key()])?
        .pop()
        .flatten()
        .map(|bytes| -> Result<(Progress, u64), MigrationError> {
            let version = bytes
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .unwrap_or(0);
            let progress = serde_json::from_slice(bytes.get(8..).unwrap_or_default())
                .map_err(|err| MigrationError::Corrupt(err.to_string()))?;
            Ok((progress, version))
        })
        .transpose()?;
    Ok((applied, progress))
}
