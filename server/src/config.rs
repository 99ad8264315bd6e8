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
    /// Origins browsers may call the API from (CORS), e.g. `["https://app.example.com"]`;
    /// `["*"]` (the default) allows any. Credentials travel in the Authorization header, never
    /// in cookies, so allowing any origin exposes nothing a page could not already send.
    pub cors_origins: Vec<String>,
    pub limits: Limits,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub realtime: RealtimeSettings,
    pub hooks: HookSettings,
}

/// The largest write-ahead log allowed between checkpoints (`store.checkpoint_log_bytes`).
pub const MAX_CHECKPOINT_LOG_BYTES: u64 = 1 << 30;

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
    /// A checkpoint (the store file synced, the write-ahead log emptied) at least this often
    /// while there are writes, in milliseconds: it bounds the replay after a crash. Each one
    /// holds up writes while it runs (~0.1 s at 15,000 creates/s).
    pub checkpoint_interval_ms: u64,
    /// A checkpoint as soon as the write-ahead log holds this many bytes.
    pub checkpoint_log_bytes: u64,
}

/// Built-in user auth: tokens, password hashing, mail and rate limits (`[auth]`,
/// `HEARTH_AUTH__<KEY>`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// `iss` of access tokens and the OpenID issuer; default `http://<listen address>`.
    pub issuer: Option<String>,
    /// `aud` of access tokens.
    pub audience: String,
    /// Lifetime of access tokens, in seconds.
    pub access_token_ttl_secs: u64,
    /// Lifetime of a refresh token, in seconds (each rotation starts a new one).
    pub refresh_token_ttl_secs: u64,
    /// A rotated refresh token used again within this many milliseconds still works (racing
    /// tabs); later, the reuse revokes the whole session family.
    pub refresh_reuse_grace_ms: u64,
    /// Clock skew allowed when checking `exp` and `nbf`, in seconds.
    pub token_leeway_secs: u64,
    /// argon2id memory per hash in KiB (at least 19,456: OWASP's minimum).
    pub argon2_memory_kib: u32,
    /// argon2id passes (at least 2 at the minimum memory).
    pub argon2_iterations: u32,
    /// argon2id lanes.
    pub argon2_parallelism: u32,
    /// Password hashes computed at once at most; 0 means one per core.
    pub hash_concurrency: usize,
    /// Rate limits on signup, login, anonymous, refresh, reset and verification mails.
    pub rate_limits: bool,
    /// Requests per minute per client IP and action (bursts up to the same number).
    pub rate_limit_per_ip_per_minute: u32,
    /// Requests per minute per account, client IP and action.
    pub rate_limit_per_account_per_minute: u32,
    /// Comma-separated addresses of reverse proxies whose `X-Forwarded-For` is believed: the
    /// client IP (for rate limits) is then the rightmost address not in this list. Empty: the
    /// socket's peer address is the client.
    pub trusted_proxies: String,
    /// SMTP server for verification and reset mails; without one they go to
    /// `mail_outbox.txt` in the data dir.
    pub smtp_host: Option<String>,
    pub smtp_port: u16,
    /// How the SMTP connection is secured: `none` (a local relay or test sink), `starttls`
    /// (upgrade on port 587, the usual for providers) or `tls` (implicit TLS, port 465).
    pub smtp_security: SmtpSecurity,
    pub smtp_username: Option<String>,
    pub smtp_password: Option<String>,
    /// Sender of auth mails.
    pub mail_from: String,
    /// Base URL of the app pages that take mailed tokens (`{action_url}/verify-email?token=`).
    pub action_url: Option<String>,
    /// Lifetime of an email verification token, in seconds.
    pub verify_email_ttl_secs: u64,
    /// Lifetime of a password reset token, in seconds.
    pub password_reset_ttl_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            issuer: None,
            audience: "hearth".into(),
            access_token_ttl_secs: 15 * 60,
            refresh_token_ttl_secs: 30 * 24 * 3600,
            refresh_reuse_grace_ms: 5_000,
            token_leeway_secs: 5,
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            hash_concurrency: 0,
            rate_limits: true,
            rate_limit_per_ip_per_minute: 30,
            rate_limit_per_account_per_minute: 10,
            trusted_proxies: String::new(),
            smtp_host: None,
            smtp_port: 25,
            smtp_security: SmtpSecurity::None,
            smtp_username: None,
            smtp_password: None,
            mail_from: "Hearth <noreply@localhost>".into(),
            action_url: None,
            verify_email_ttl_secs: 24 * 3600,
            password_reset_ttl_secs: 3600,
        }
    }
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
            cors_origins: vec!["*".to_string()],
            limits: Limits::default(),
            store: StoreSettings::default(),
            auth: AuthSettings::default(),
            realtime: RealtimeSettings::default(),
            hooks: HookSettings::default(),
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
            checkpoint_interval_ms: 1_000,
            checkpoint_log_bytes: 64 << 20,
        }
    }
}

/// Realtime subscriptions over WebSocket (`[realtime]`, `HEARTH_REALTIME__<KEY>`): the limits of
/// DESIGN.md §5 and the change log's retention (what `resumeFrom` can cover).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RealtimeSettings {
    /// Subscriptions one connection may hold at once.
    pub max_subscriptions_per_connection: usize,
    /// Largest frame a client may send, in bytes (the socket closes with 1009 beyond).
    pub max_frame_bytes: usize,
    /// Seconds between server pings; a connection silent for two intervals is closed.
    pub ping_interval_secs: u64,
    /// Seconds a socket may stay open before its `auth` message.
    pub auth_timeout_secs: u64,
    /// Commits queued for one connection at most; a consumer that falls further behind is
    /// closed with 4008 (and resumes with `resumeFrom`).
    pub send_queue_capacity: usize,
    /// `Origin` values allowed to open a socket; empty allows every origin (access is decided by
    /// the token in the `auth` message, never by cookies). Requests without `Origin` are allowed.
    pub allowed_origins: Vec<String>,
    /// The change log keeps commits for this many seconds at least (unless over the size cap).
    pub change_log_max_age_secs: u64,
    /// The change log's size cap in bytes; the oldest commits are trimmed beyond it.
    pub change_log_max_bytes: u64,
    /// Seconds between change log trimming passes.
    pub change_log_trim_interval_secs: u64,
}

impl Default for RealtimeSettings {
    fn default() -> Self {
        RealtimeSettings {
            max_subscriptions_per_connection: 100,
            max_frame_bytes: 1 << 20,
            ping_interval_secs: 30,
            auth_timeout_secs: 10,
            send_queue_capacity: 1_024,
            allowed_origins: Vec::new(),
            change_log_max_age_secs: 24 * 3600,
            change_log_max_bytes: 1 << 30,
            change_log_trim_interval_secs: 60,
        }
    }
}

/// Hooks (`[hooks]`, `HEARTH_HOOKS__<KEY>`): limits of outgoing calls and of `after` delivery.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HookSettings {
    /// Hosts hook URLs may name (exact, case-insensitive); empty allows any host.
    /// As an environment variable: a comma-separated list.
    pub allowed_hosts: Vec<String>,
    /// Concurrent calls to one hook at most; further calls wait within their timeout.
    pub max_concurrency_per_hook: usize,
    /// Time to establish a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Largest `timeoutMs` a hook may set.
    pub max_timeout_ms: u64,
    /// Largest answer read from a function; a longer one is a failed call.
    pub max_response_bytes: usize,
    /// Consecutive failures that open a hook's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker fails calls fast before it lets one trial call through.
    pub breaker_cooldown_ms: u64,
    /// First retry delay of an `after` delivery; it doubles per attempt (plus jitter).
    pub retry_base_ms: u64,
    /// Longest retry delay.
    pub retry_max_ms: u64,
    /// A delivery failing for this long is marked failed (kept for redelivery).
    pub retry_window_secs: u64,
    /// Outbox entries one delivery round looks at.
    pub delivery_batch: usize,
    /// Delivered entries stay in the delivery log this long.
    pub delivery_log_retention_secs: u64,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings {
            allowed_hosts: Vec::new(),
            max_concurrency_per_hook: 16,
            connect_timeout_ms: 2_000,
            max_timeout_ms: 30_000,
            max_response_bytes: 2 << 20,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            retry_base_ms: 1_000,
            retry_max_ms: 3_600_000,
            retry_window_secs: 24 * 3600,
            delivery_batch: 256,
            delivery_log_retention_secs: 7 * 24 * 3600,
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

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    None,
    Starttls,
    Tls,
}

/// Sections whose keys may be set as `HEARTH_<SECTION>__<KEY>`.
const SECTIONS: [&str; 5] = ["limits", "store", "auth", "realtime", "hooks"];
/// Top-level keys clap does not already read from the environment.
const TOP_LEVEL_ENV: [&str; 3] = ["log", "workers", "cors_origins"];

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
                    let parsed = if (section, field) == ("hooks", "allowed_hosts") {
                        comma_list(&value)
                    } else {
                        env_value(&value)
                    };
                    inner.insert(field.to_string(), parsed);
                }
            } else if key == "cors_origins" {
                // A comma-separated list: HEARTH_CORS_ORIGINS=https://a.example,https://b.example
                table.insert(key, comma_list(&value));
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
        if self.store.group_commit_max_writes == 0
            || self.store.commit_queue_capacity == 0
            || self.store.checkpoint_interval_ms == 0
            || self.store.checkpoint_log_bytes == 0
        {
            return Err(ConfigError::Invalid(
                "store: group_commit_max_writes, commit_queue_capacity, checkpoint_interval_ms and checkpoint_log_bytes must be positive".into(),
            ));
        }
        // Start-up reads the whole log into memory to replay it.
        if self.store.checkpoint_log_bytes > MAX_CHECKPOINT_LOG_BYTES {
            return Err(ConfigError::Invalid(format!(
                "store: checkpoint_log_bytes is at most {MAX_CHECKPOINT_LOG_BYTES} (1 GiB)"
            )));
        }
        let auth = &self.auth;
        // OWASP's argon2id minimums: 19 MiB with t=2, or more memory with fewer passes.
        if auth.argon2_memory_kib < 19_456
            || auth.argon2_iterations == 0
            || u64::from(auth.argon2_memory_kib) * u64::from(auth.argon2_iterations) < 38_912
            || auth.argon2_parallelism == 0
        {
            return Err(ConfigError::Invalid(
                "auth: argon2 needs at least 19,456 KiB of memory, 2 passes at that memory, 1 lane"
                    .into(),
            ));
        }
        if let Some(bad) = auth
            .trusted_proxies
            .split(',')
            .map(str::trim)
            .find(|a| !a.is_empty() && a.parse::<std::net::IpAddr>().is_err())
        {
            return Err(ConfigError::Invalid(format!(
                "auth.trusted_proxies: '{bad}' is not an IP address"
            )));
        }
        if auth.access_token_ttl_secs == 0 || auth.refresh_token_ttl_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth: token lifetimes must be positive".into(),
            ));
        }
        let hooks = &self.hooks;
        if hooks.max_concurrency_per_hook == 0
            || hooks.delivery_batch == 0
            || hooks.breaker_failures == 0
            || hooks.retry_base_ms == 0
        {
            return Err(ConfigError::Invalid(
                "hooks: max_concurrency_per_hook, delivery_batch, breaker_failures and retry_base_ms must be positive".into(),
            ));
        }
        if hooks.max_timeout_ms < crate::hooks::definition::MIN_TIMEOUT_MS {
            return Err(ConfigError::Invalid(format!(
                "hooks.max_timeout_ms must be at least {} ms",
                crate::hooks::definition::MIN_TIMEOUT_MS
            )));
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

/// `a, b,c` → `["a", "b", "c"]` (empty items dropped).
fn comma_list(text: &str) -> toml::Value {
    toml::Value::Array(
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| toml::Value::String(item.to_string()))
            .collect(),
    )
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
    fn smtp_security_takes_none_starttls_or_tls() {
        let env = |v: &str| vec![("HEARTH_AUTH__SMTP_SECURITY".to_string(), v.to_string())];
        let settings = Settings::load(&Overrides::default(), env("starttls")).unwrap();
        assert_eq!(settings.auth.smtp_security, SmtpSecurity::Starttls);
        assert_eq!(
            Settings::load(&Overrides::default(), vec![])
                .unwrap()
                .auth
                .smtp_security,
            SmtpSecurity::None
        );
        assert!(Settings::load(&Overrides::default(), env("ssl3")).is_err());
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
        let env = vec![("HEARTH_AUTH__NOPE".to_string(), "1".to_string())];
        assert!(Settings::load(&Overrides::default(), env).is_err());
    }

    #[test]
    fn auth_settings_come_from_the_environment_and_weak_hashing_is_refused() {
        let env = vec![
            (
                "HEARTH_AUTH__RATE_LIMIT_PER_IP_PER_MINUTE".to_string(),
                "1000".to_string(),
            ),
            (
                "HEARTH_AUTH__SMTP_HOST".to_string(),
                "127.0.0.1".to_string(),
            ),
        ];
        let settings = Settings::load(&Overrides::default(), env).unwrap();
        assert_eq!(settings.auth.rate_limit_per_ip_per_minute, 1_000);
        assert_eq!(settings.auth.smtp_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(settings.auth.argon2_memory_kib, 19_456);
        let env = vec![(
            "HEARTH_AUTH__ARGON2_MEMORY_KIB".to_string(),
            "4096".to_string(),
        )];
        assert!(Settings::load(&Overrides::default(), env).is_err());
    }

    #[test]
    fn the_readme_lists_every_key_with_its_default() {
        let readme = include_str!("../../README.md");
        let block = readme
            .split("```toml\n# hearth.toml — every key with its default\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .unwrap();
        // Commented-out keys have no default; the others must parse (no unknown key) and
        // equal what the server uses without a file.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hearth.toml");
        std::fs::write(&file, block).unwrap();
        let overrides = Overrides {
            config: Some(file),
            ..Overrides::default()
        };
        let from_readme = Settings::load(&overrides, vec![]).unwrap();
        let defaults = Settings::load(&Overrides::default(), vec![]).unwrap();
        assert_eq!(format!("{from_readme:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn checkpoint_settings_come_from_the_environment_and_zero_is_refused() {
        let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let settings = Settings::load(
            &Overrides::default(),
            env("HEARTH_STORE__CHECKPOINT_INTERVAL_MS", "250"),
        )
        .unwrap();
        assert_eq!(settings.store.checkpoint_interval_ms, 250);
        assert!(Settings::load(
            &Overrides::default(),
            env("HEARTH_STORE__CHECKPOINT_INTERVAL_MS", "0")
        )
        .is_err());
        assert!(Settings::load(
            &Overrides::default(),
            env("HEARTH_STORE__CHECKPOINT_LOG_BYTES", "0")
        )
        .is_err());
        assert!(Settings::load(
            &Overrides::default(),
            env("HEARTH_STORE__CHECKPOINT_LOG_BYTES", "1073741825")
        )
        .is_err());
    }
}
