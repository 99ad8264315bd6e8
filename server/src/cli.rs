//! The `hearth` command line: `serve` and the tools around it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::Overrides;

#[derive(Debug, Parser)]
#[command(
    name = "hearth",
    version,
    about = "A self-hosted, Firebase-style backend server"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage the signing keys of access tokens.
    Keys(KeysArgs),
    /// Check security rules and run rules unit tests, without a server.
    Rules(RulesArgs),
    /// Show, apply or create migrations (the data dir must not be in use by a server).
    Migrate(MigrateArgs),
    /// Write a consistent snapshot (documents, users, project data) as JSON Lines into DIR.
    Export(ExportArgs),
    /// Load an export into a new, empty data dir.
    Import(ImportArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(subcommand)]
    pub command: MigrateCommand,
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// List the server's and the app's migrations: applied, pending or interrupted.
    Status(DataDirArgs),
    /// Apply every pending migration (the server's own first), as `serve` does at start.
    Up(DataDirArgs),
    /// Create the next-numbered `NNNN_NAME.json` with an empty steps list.
    New {
        /// The migration's name (A-Z, a-z, 0-9, '_' and '-').
        name: String,
        /// Migrations folder.
        #[arg(long, env = "HEARTH_MIGRATIONS")]
        migrations: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DataDirArgs {
    /// Data directory (default ./hearth_data).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The app's migrations folder.
    #[arg(long, env = "HEARTH_MIGRATIONS")]
    pub migrations: Option<PathBuf>,
    /// Config file (default ./hearth.toml when present).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
}

impl DataDirArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            migrations: self.migrations.clone(),
            config: self.config.clone(),
            ..Overrides::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The folder to write (created; it must not hold an export already).
    pub dir: PathBuf,
    /// Data directory to read while no server runs (default ./hearth_data).
    #[arg(long, env = "HEARTH_DATA_DIR", conflicts_with = "url")]
    pub data_dir: Option<PathBuf>,
    /// A running server to export from (with the service key), e.g. http://127.0.0.1:8080.
    #[arg(long)]
    pub url: Option<String>,
    /// The service key, for --url.
    #[arg(long, env = "HEARTH_SERVICE_KEY", hide_env_values = true)]
    pub service_key: Option<String>,
    /// Config file (default ./hearth.toml when present).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The export folder to read.
    pub dir: PathBuf,
    /// Data directory to fill: new or empty (default ./hearth_data).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (default ./hearth.toml when present).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct RulesArgs {
    #[command(subcommand)]
    pub command: RulesCommand,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Parse and validate a rules file; print every error with line:column and a caret.
    Check {
        /// The `firestore.rules` file.
        file: PathBuf,
    },
    /// Run allow/deny cases (JSON, see rules/README.md) against a rules file.
    Test {
        /// The `firestore.rules` file.
        file: PathBuf,
        /// The cases file.
        cases: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Add a new signing key: a running server signs with it within seconds (it watches the key
    /// file), while the previous keys keep verifying until every token they signed has expired.
    Rotate(KeysRotateArgs),
}

#[derive(Debug, Args)]
pub struct KeysRotateArgs {
    /// Data directory (default ./hearth_data).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Config file (default ./hearth.toml when present), for the access-token lifetime.
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
}

impl KeysRotateArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            config: self.config.clone(),
            ..Overrides::default()
        }
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, env = "HEARTH_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (default ./hearth_data).
    #[arg(long, env = "HEARTH_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Security rules file, loaded at start and on change.
    #[arg(long, env = "HEARTH_RULES")]
    pub rules: Option<PathBuf>,
    /// Migrations folder, applied at start.
    #[arg(long, env = "HEARTH_MIGRATIONS")]
    pub migrations: Option<PathBuf>,
    /// Config file (default ./hearth.toml when present).
    #[arg(long, env = "HEARTH_CONFIG")]
    pub config: Option<PathBuf>,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir.clone(),
            rules: self.rules.clone(),
            migrations: self.migrations.clone(),
            config: self.config.clone(),
        }
    }
}
