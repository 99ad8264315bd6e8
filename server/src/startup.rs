//! Starting and stopping the server: open the store, bind the listener, serve, and on
//! SIGINT/SIGTERM drain requests and finish queued commits before exit.

use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use rand::Rng as _;

use crate::api::{self, AppState, HttpLimits, ServiceKey};
use crate::auth::{Auth, AuthError};
use crate::config::Settings;
use crate::docs::{Docs, DocsError, DocsLimits};
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::store::redb_store::GroupCommitLimits;
use crate::store::{RedbStore, SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot open the store in {dir}: {source}")]
    Store { dir: String, source: StoreError },
    #[error("cannot load documents metadata: {0}")]
    Docs(#[from] DocsError),
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Rules(String),
    #[error("service key: {0}")]
    ServiceKey(String),
    #[error("auth: {0}")]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Migrations(#[from] crate::migrate::MigrationError),
    #[error("hooks: {0}")]
    Hooks(String),
}

pub struct Server {
    server: actix_web::dev::Server,
    port: u16,
    state: web::Data<AppState>,
    store: SharedStore,
}

/// The store's group-commit and checkpoint limits from `[store]`.
pub(crate) fn commit_limits(settings: &Settings) -> GroupCommitLimits {
    GroupCommitLimits {
        max_write_sets: settings.store.group_commit_max_writes,
        queue_capacity: settings.store.commit_queue_capacity,
        checkpoint_interval: std::time::Duration::from_millis(
            settings.store.checkpoint_interval_ms,
        ),
        checkpoint_bytes: settings.store.checkpoint_log_bytes,
        ..GroupCommitLimits::default()
    }
}

impl Server {
    /// Opens the store and binds the listener (port 0 picks a free port); does not serve yet.
    pub async fn build(settings: Settings) -> Result<Server, StartupError> {
        let metrics = Arc::new(Metrics::default());
        let limits = commit_limits(&settings);
        let store: SharedStore = Arc::new(
            RedbStore::open(&settings.data_dir, limits, metrics.clone()).map_err(|source| {
                StartupError::Store {
                    dir: settings.data_dir.display().to_string(),
                    source,
                }
            })?,
        );
        crate::export::check_no_unfinished_import(store.as_ref()).map_err(|err| {
            StartupError::Store {
                dir: settings.data_dir.display().to_string(),
                source: StoreError::Engine(err.to_string()),
            }
        })?;
        let docs_limits = DocsLimits {
            default_page_size: settings.limits.default_page_size,
            max_page_size: settings.limits.max_page_size,
        };
        let hooks_store = store.clone();
        let hook_settings = settings.hooks.clone();
        let hooks = tokio::task::spawn_blocking(move || Hooks::open(hooks_store, hook_settings))
            .await
            .map_err(|e| StartupError::Hooks(e.to_string()))?
            .map_err(|e| StartupError::Hooks(e.to_string()))?;
        let docs = Docs::open(store.clone(), docs_limits, metrics.clone(), hooks.clone()).await?;
        let service_key = load_service_key(&settings.data_dir)?;
        if let Some(file) = &settings.rules {
            crate::rules_file::load(&docs, file)
                .await
                .map_err(StartupError::Rules)?;
            tracing::info!(file = %file.display(), "security rules loaded; watching the file for changes");
            actix_web::rt::spawn(crate::rules_file::watch(docs.clone(), file.clone()));
        }
        if docs.rules().is_none() {
            tracing::warn!("no security rules are loaded: every client request without the service key is denied");
        }

        let listener = TcpListener::bind(settings.listen).map_err(|source| StartupError::Bind {
            addr: settings.listen.to_string(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartupError::Bind {
                addr: settings.listen.to_string(),
                source,
            })?
            .port();
        let issuer = settings.auth.issuer.clone().unwrap_or_else(|| {
            format!(
                "http://{}",
                std::net::SocketAddr::new(settings.listen.ip(), port)
            )
        });
        let auth_store = store.clone();
        let auth_hooks = hooks.clone();
        let auth_settings = settings.auth.clone();
        let data_dir = settings.data_dir.clone();
        // Opening hashes the dummy password once: keep it off the executor.
        let auth = tokio::task::spawn_blocking(move || {
            Auth::open(auth_store, &auth_settings, &data_dir, issuer, auth_hooks)
        })
        .await
        .map_err(|e| StartupError::Auth(AuthError::internal(e)))??;

        let roles = crate::roles::Roles::open(store.clone())
            .await
            .map_err(|err| StartupError::Rules(err.to_string()))?;
        // The server's own migrations, then the app's; a refused or failed run stops the start.
        let (hook_validator, hook_put) = crate::migrate::hooks_bridge(&hooks);
        let migration_services = crate::migrate::Services {
            store: store.clone(),
            docs: docs.clone(),
            roles: roles.clone(),
            hooks: Some(hook_put),
        };
        for name in crate::migrate::migrate_all(
            &migration_services,
            settings.migrations.as_deref(),
            Some(hook_validator),
        )
        .await?
        {
            tracing::info!(migration = %name, "applied");
        }
        let realtime = crate::realtime::Hub::start(
            store.clone(),
            docs.clone(),
            roles.clone(),
            metrics.clone(),
            settings.realtime.clone(),
        );
        hooks.start_delivery();
        let state = web::Data::new(AppState {
            realtime,
            hooks,
            docs,
            auth: Arc::new(auth),
            roles,
            store: store.clone(),
            metrics: metrics.clone(),
            service_key,
            limits: HttpLimits {
                max_body_bytes: settings.limits.max_body_bytes,
                max_batch_writes: settings.limits.max_batch_writes,
            },
            ready: AtomicBool::new(true),
            migrations_dir: settings.migrations.clone(),
        });
        let app_state = state.clone();
        let cors_origins = settings.cors_origins.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .wrap(cors(&cors_origins))
                .wrap_fn(api::record_metrics(app_state.metrics.clone()))
                .configure(api::configure)
                .default_service(web::to(api::no_route))
        })
        .disable_signals()
        .shutdown_timeout(settings.limits.shutdown_timeout_secs);
        if settings.workers > 0 {
            server = server.workers(settings.workers);
        }
        let server = server
            .listen(listener)
            .map_err(|source| StartupError::Bind {
                addr: settings.listen.to_string(),
                source,
            })?
            .run();
        Ok(Server {
            server,
            port,
            state,
            store,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT or SIGTERM, then drains: readiness goes false, in-flight requests
    /// finish, queued commits become durable, and the store closes cleanly.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let state = self.state.clone();
        actix_web::rt::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down: draining requests");
            state.ready.store(false, Ordering::Relaxed);
            // WebSocket sessions are long-lived: close them (1001) so the drain can finish.
            state.realtime.shutdown();
            handle.stop(true).await;
            // Pending deliveries stay in the outbox and resume at the next start.
            state.hooks.stop_delivery();
        });
        let result = self.server.await;
        let store = self.store.clone();
        // Closing joins the writer thread, which finishes what is queued.
        let _ = tokio::task::spawn_blocking(move || store.close()).await;
        tracing::info!("stopped");
        result
    }
}

/// CORS for browser apps: the configured origins (any with `*`), every method and header, and
/// the response headers clients read (ETag for versions, Location for created documents).
fn cors(origins: &[String]) -> actix_cors::Cors {
    let mut cors = actix_cors::Cors::default()
        .allow_any_method()
        .allow_any_header()
        .expose_headers([
            actix_web::http::header::ETAG,
            actix_web::http::header::LOCATION,
            actix_web::http::header::RETRY_AFTER,
            actix_web::http::header::WWW_AUTHENTICATE,
        ])
        .max_age(3_600);
    if origins.iter().any(|o| o == "*") {
        cors = cors.allow_any_origin();
    } else {
        for origin in origins {
            cors = cors.allowed_origin(origin);
        }
    }
    cors
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {},
                    _ = terminate.recv() => {},
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `HEARTH_SERVICE_KEY` (or `HEARTH_SERVICE_KEY_FILE`) wins; otherwise the key stored in the
/// data dir; otherwise a new key is generated, stored (mode 0600) and printed once.
fn load_service_key(data_dir: &Path) -> Result<ServiceKey, StartupError> {
    if let Ok(key) = std::env::var("HEARTH_SERVICE_KEY") {
        return validated_key(key.trim().to_string());
    }
    if let Ok(file) = std::env::var("HEARTH_SERVICE_KEY_FILE") {
        let key = std::fs::read_to_string(&file)
            .map_err(|e| StartupError::ServiceKey(format!("cannot read {file}: {e}")))?;
        return validated_key(key.trim().to_string());
    }
    let path = data_dir.join("service_key");
    if let Ok(key) = std::fs::read_to_string(&path) {
        return validated_key(key.trim().to_string());
    }
    let bytes: [u8; 32] = rand::rng().random();
    let key = format!(
        "hsk_{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    );
    write_private(&path, &key)
        .map_err(|e| StartupError::ServiceKey(format!("cannot store {}: {e}", path.display())))?;
    eprintln!(
        "generated a service key (stored in {}; shown only now): {key}",
        path.display()
    );
    Ok(ServiceKey::new(key))
}

fn validated_key(key: String) -> Result<ServiceKey, StartupError> {
    if key.len() < 16 {
        return Err(StartupError::ServiceKey(
            "the service key must be at least 16 characters".into(),
        ));
    }
    Ok(ServiceKey::new(key))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}
