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
