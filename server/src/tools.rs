//! The commands that work on a data dir without serving it: `hearth migrate status|up|new`,
//! `hearth export` and `hearth import`. They open the store themselves, so the data dir must
//! not be in use by a running server (redb locks its file); a running server is exported
//! through its admin API (`hearth export DIR --url URL`).

use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{DataDirArgs, ExportArgs, ImportArgs, MigrateCommand};
use crate::config::Settings;
use crate::docs::{Docs, DocsLimits};
use crate::export::{export_to_dir, import_from_dir, ExportFiles};
use crate::hooks::Hooks;
use crate::metrics::Metrics;
use crate::migrate::{self, MigrationError, Services};
use crate::roles::Roles;
use crate::store::{RedbStore, SharedStore};

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))
}

/// Opens the data dir's store, saying plainly when a server holds it.
fn open_store(settings: &Settings) -> Result<SharedStore, String> {
    let limits = crate::startup::commit_limits(settings);
    RedbStore::open(&settings.data_dir, limits, Arc::new(Metrics::default()))
        .map(|store| Arc::new(store) as SharedStore)
        .map_err(|err| {
            format!(
                "cannot open the data dir {}: {err} (is a server running on it? stop it, or use its admin API)",
                settings.data_dir.display()
            )
        })
}

fn settings(overrides: &crate::config::Overrides) -> Result<Settings, String> {
    Settings::load(overrides, std::env::vars()).map_err(|err| err.to_string())
}

/// The settings and the store of `--data-dir`/`--config`, for the offline export and import.
fn open_data_dir(
    data_dir: Option<std::path::PathBuf>,
    config: Option<std::path::PathBuf>,
) -> Result<(Settings, SharedStore), String> {
    let overrides = crate::config::Overrides {
        data_dir,
        config,
        ..Default::default()
    };
    let settings = settings(&overrides)?;
    let store = open_store(&settings)?;
    Ok((settings, store))
}

pub fn migrate(command: MigrateCommand) -> ExitCode {
    match command {
        MigrateCommand::New { name, migrations } => match migrate::new_file(&migrations, &name) {
            Ok(path) => {
                println!("created {}", path.display());
                ExitCode::SUCCESS
            }
            Err(err) => fail(err),
        },
        MigrateCommand::Status(args) => {
            with_services(&args, |services, settings, hooks| async move {
                let plans =
                    migrate::plan_all(&services.store, settings.migrations.as_deref(), Some(hooks))
                        .await?;
                for plan in &plans {
                    print_status(&plan.status());
                }
                Ok(())
            })
        }
        MigrateCommand::Up(args) => with_services(&args, |services, settings, hooks| async move {
            let applied =
                migrate::migrate_all(&services, settings.migrations.as_deref(), Some(hooks))
                    .await?;
            if applied.is_empty() {
                println!("nothing to apply: every migration is applied");
            }
            for name in applied {
                println!("applied {name}");
            }
            Ok(())
        }),
    }
}

fn print_status(status: &serde_json::Value) {
    let track = status["track"].as_str().unwrap_or_default();
    for migration in status["migrations"].as_array().into_iter().flatten() {
        let name = format!(
            "{:04}_{}",
            migration["number"].as_u64().unwrap_or_default(),
            migration["name"].as_str().unwrap_or_default()
        );
        let state = match migration["state"].as_str() {
            Some("applied") => format!(
                "applied {}",
                migration["appliedAt"].as_str().unwrap_or_default()
            ),
            Some("interrupted") => format!(
                "interrupted at step {} ({} documents changed); `migrate up` resumes it",
                migration["step"], migration["changed"]
            ),
            _ => "pending".to_string(),
        };
        println!("{track:<7} {name:<40} {state}");
    }
}

/// Opens the data dir with the documents, roles and hooks services, runs `work`, closes cleanly.
fn with_services<F, Fut>(args: &DataDirArgs, work: F) -> ExitCode
where
    F: FnOnce(Services, Settings, Arc<migrate::HookValidator>) -> Fut,
    Fut: std::future::Future<Output = Result<(), MigrationError>>,
{
    init_logging();
    let settings = match settings(&args.overrides()) {
        Ok(settings) => settings,
        Err(err) => return fail(err),
    };
    let runtime = match runtime() {
        Ok(runtime) => runtime,
        Err(err) => return fail(err),
    };
    let store = match open_store(&settings) {
        Ok(store) => store,
        Err(err) => return fail(err),
    };
    let result = runtime.block_on(async {
        let hooks = Hooks::open(store.clone(), settings.hooks.clone())
            .map_err(|err| MigrationError::Io(format!("cannot open the hooks: {err}")))?;
        let (hook_validator, hook_put) = migrate::hooks_bridge(&hooks);
        let docs = Docs::open(
            store.clone(),
            DocsLimits {
                default_page_size: settings.limits.default_page_size,
                max_page_size: settings.limits.max_page_size,
            },
            Arc::new(Metrics::default()),
            hooks,
        )
        .await?;
        let roles = Roles::open(store.clone()).await?;
        let services = Services {
            store: store.clone(),
            docs,
            roles,
            hooks: Some(hook_put),
        };
        work(services, settings.clone(), hook_validator).await
    });
    // Index builds a migration started continue when the server next opens the data dir.
    drop(runtime);
    store.close();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(err),
    }
}

pub fn export(args: ExportArgs) -> ExitCode {
    if let Some(url) = &args.url {
        let Some(key) = args.service_key.as_deref() else {
            return fail("--url needs the service key (--service-key or HEARTH_SERVICE_KEY)");
        };
        return match export_from_server(url, key, &args.dir) {
            Ok(()) => {
                println!("exported {} into {}", url, args.dir.display());
                ExitCode::SUCCESS
            }
            Err(err) => fail(err),
        };
    }
    let (_, store) = match open_data_dir(args.data_dir.clone(), args.config.clone()) {
        Ok(opened) => opened,
        Err(err) => return fail(err),
    };
    let started = std::time::Instant::now();
    let result = export_to_dir(store.as_ref(), &args.dir);
    store.close();
    match result {
        Ok(counts) => {
            println!(
                "exported {} documents, {} auth records, {} hooks, {} project records into {} in {:.1} s",
                counts.documents,
                counts.auth,
                counts.hooks,
                counts.meta,
                args.dir.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(err),
    }
}

/// Streams `GET /v1/admin/export` into the files of an export folder.
fn export_from_server(url: &str, key: &str, dir: &std::path::Path) -> Result<(), String> {
    let runtime = runtime()?;
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let mut response = client
            .get(format!("{}/v1/admin/export", url.trim_end_matches('/')))
            .bearer_auth(key)
            .send()
            .await
            .map_err(|err| format!("cannot reach {url}: {err}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(format!("the server answered {status}: {body}"));
        }
        let mut files = ExportFiles::create(dir).map_err(|e| e.to_string())?;
        let mut pending: Vec<u8> = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| format!("the export stream broke off: {err}"))?
        {
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                files
                    .write_line(&pending[start..start + end + 1])
                    .map_err(|e| e.to_string())?;
                start += end + 1;
            }
            pending.drain(..start);
        }
        files.finish().map_err(|e| e.to_string())
    })
}

pub fn import(args: ImportArgs) -> ExitCode {
    let (settings, store) = match open_data_dir(args.data_dir.clone(), args.config.clone()) {
        Ok(opened) => opened,
        Err(err) => return fail(err),
    };
    let started = std::time::Instant::now();
    let result = import_from_dir(store.as_ref(), &args.dir);
    store.close();
    match result {
        Ok(counts) => {
            println!(
                "imported {} documents, {} auth records, {} hooks, {} project records into {} in {:.1} s",
                counts.documents,
                counts.auth,
                counts.hooks,
                counts.meta,
                settings.data_dir.display(),
                started.elapsed().as_secs_f64()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(err),
    }
}
