//! Settings, layered: defaults → `hearth.toml` (or `--config FILE`) → `HEARTH_*` environment →
//! command-line flags. Unknown keys are errors, not silently ignored.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Node settings of `hearth serve`. Project data (rules, hooks, indexes) lives in the database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Directory of the store and the generated service key.
    pub data_dir: PathBuf,
    /// Security rules file, loaded at start and on change.
    pub rules: Option<PathBuf>,
    /// Folder of the app's migrations, applied at start.
    pub migrations: Option<PathBuf>,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `info` or `hearth=debug`.
    pub log: String,
    /// HTTP worker threads; 0 means one per available core.
    pub workers: usize,
    pub limits: Limits,
    pub store: StoreSettings,
}

/// Every limit the server enforces, in one place (documented in README.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body, in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Writes per batch.
    pub max_batch_writes: usize,
    /// Documents per query page when the query gives no limit.
    pub default_page_size: usize,
    /// Largest `limit` a query may ask for.
    pub max_page_size: usize,
    /// Seconds a graceful shutdown waits for in-flight requests.
    pub shutdown_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// Write sets grouped into one durable commit at most.
    pub group_commit_max_writes: usize,
    /// Write sets waiting for the writer at most.
    pub commit_queue_capacity: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./hearth_data"),
            rules: None,
            migrations: None,
            log: "info".into(),
            workers: 0,
            limits: Limits::default(),
            store: StoreSettings::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 10 << 20,
            max_batch_writes: 500,
            default_page_size: 1_000,
            max_page_size: 10_000,
            shutdown_timeout_secs: 30,
        }
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            group_commit_max_writes: 1_024,
            commit_queue_capacity: 8_192,
        }
    }
}

/// Values given on the command line (or their `HEARTH_*` variables, which clap reads).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub rules: Option<PathBuf>,
    pub migrations: Option<PathBuf>,
    pub config: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid settings: {0}")]
    Invalid(String),
}

/// Sections whose keys may be set as `HEARTH_<SECTION>__<KEY>`.
const SECTIONS: [&str; 2] = ["limits", "store"];
/// Top-level keys clap does not already read from the environment.
const TOP_LEVEL_ENV: [&str; 2] = ["log", "workers"];

impl Settings {
    /// Builds settings from the layers; `env` is the process environment (injectable for tests).
    pub fn load(
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let (mut table, source) = match &overrides.config {
            Some(path) => (read_toml(path)?, path.clone()),
            None if Path::new("hearth.toml").exists() => {
                (read_toml(Path::new("hearth.toml"))?, "hearth.toml".into())
            }
            None => (toml::Table::new(), PathBuf::from("(defaults)")),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix("HEARTH_") else {
                continue;
            };
            let key = rest.to_ascii_lowercase();
            if let Some((section, field)) = key.split_once("__") {
                if !SECTIONS.contains(&section) {
                    return Err(ConfigError::Invalid(format!(
                        "{name}: unknown settings section '{section}'"
                    )));
                }
                let entry = table
                    .entry(section.to_string())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(inner) = entry {
                    inner.insert(field.to_string(), env_value(&value));
                }
            } else if TOP_LEVEL_ENV.contains(&key.as_str()) {
                table.insert(key, env_value(&value));
            }
        }
        let mut settings: Settings =
            Settings::deserialize(toml::Value::Table(table)).map_err(|err| ConfigError::Parse {
                path: source,
                message: err.to_string(),
            })?;
        if let Some(listen) = overrides.listen {
            settings.listen = listen;
        }
        if let Some(dir) = &overrides.data_dir {
            settings.data_dir = dir.clone();
        }
        if overrides.rules.is_some() {
            settings.rules = overrides.rules.clone();
        }
        if overrides.migrations.is_some() {
            settings.migrations = overrides.migrations.clone();
        }
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        if limits.max_body_bytes < 1 << 20 {
            return Err(ConfigError::Invalid(
                "limits.max_body_bytes must be at least 1 MiB (one document)".into(),
            ));
        }
        if limits.max_batch_writes == 0
            || limits.default_page_size == 0
            || limits.max_page_size < limits.default_page_size
        {
            return Err(ConfigError::Invalid(
                "limits: max_batch_writes and default_page_size must be positive, max_page_size ≥ default_page_size".into(),
            ));
        }
        if self.store.group_commit_max_writes == 0 || self.store.commit_queue_capacity == 0 {
            return Err(ConfigError::Invalid(
                "store: group_commit_max_writes and commit_queue_capacity must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn read_toml(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|err| ConfigError::Parse {
            path: path.into(),
            message: err.to_string(),
        })
}

fn env_value(text: &str) -> toml::Value {
    if let Ok(i) = text.parse::<i64>() {
        return toml::Value::Integer(i);
    }
    match text {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(text.to_string()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_file_and_flags_override_both() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hearth.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:9000\"\n[limits]\nmax_batch_writes = 10\n",
        )
        .unwrap();
        let overrides = Overrides {
            config: Some(file.clone()),
            ..Overrides::default()
        };
        let env = vec![(
            "HEARTH_LIMITS__MAX_BATCH_WRITES".to_string(),
            "20".to_string(),
        )];
        let settings = Settings::load(&overrides, env).unwrap();
        assert_eq!(settings.listen.port(), 9000);
        assert_eq!(settings.limits.max_batch_writes, 20);

        let overrides = Overrides {
            config: Some(file),
            listen: Some("127.0.0.1:1".parse().unwrap()),
            ..Overrides::default()
        };
        assert_eq!(Settings::load(&overrides, vec![]).unwrap().listen.port(), 1);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hearth.toml");
        std::fs::write(&file, "[limits]\nmax_bodyy = 1\n").unwrap();
        let overrides = Overrides {
            config: Some(file),
            ..Overrides::default()
        };
        assert!(Settings::load(&overrides, vec![]).is_err());
        let env = vec![("HEARTH_LIMITS__NOPE".to_string(), "1".to_string())];
        assert!(Settings::load(&Overrides::default(), env).is_err());
    }
}
