//! `hearth serve --rules FILE`: loads the rules file at start (a bad file stops the start with
//! every error) and reloads it when it changes (a bad edit is logged; the old rules stay live).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::docs::{Docs, DocsError};

/// How often the file is checked for changes.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies a version of the file without reading it.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

/// Loads the file now; the error lists every problem of the ruleset.
pub async fn load(docs: &Arc<Docs>, path: &Path) -> Result<(), String> {
    let owned = path.to_path_buf();
    let source = tokio::task::spawn_blocking(move || std::fs::read_to_string(owned))
        .await
        .map_err(|err| format!("cannot read rules file {}: {err}", path.display()))?
        .map_err(|err| format!("cannot read rules file {}: {err}", path.display()))?;
    docs.set_rules(source).await.map_err(|err| match err {
        DocsError::InvalidRules(errors) => format!(
            "rules file {} is invalid:\n{}",
            path.display(),
            errors.join("\n")
        ),
        other => format!("cannot store the rules of {}: {other}", path.display()),
    })
}

/// Polls the file and reloads it on every change, for as long as the server runs.
pub async fn watch(docs: Arc<Docs>, path: PathBuf) {
    let mut seen = fingerprint(&path);
    loop {
        tokio::time::sleep(POLL_INTERVAL).await;
        let now = fingerprint(&path);
        if now.is_none() || now == seen {
            continue;
        }
        seen = now;
        match load(&docs, &path).await {
            Ok(()) => tracing::info!(file = %path.display(), "security rules reloaded"),
            Err(message) => tracing::error!("{message}\nthe previous rules stay live"),
        }
    }
}
