//! The `hearth` binary: parses the command line and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use hearth::cli::{Cli, Command, KeysCommand, KeysRotateArgs, RulesCommand, ServeArgs};
use hearth::config::Settings;
use hearth::startup::Server;

/// glibc malloc showed up as a third of the CPU profile of queries; mimalloc is far cheaper for
/// the many small, short-lived allocations of request handling. Built with `no_thp`: asking for
/// transparent huge pages made every touched 2 MiB region resident, 10,000 idle WebSockets
/// cost 24 KiB each instead of 17.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Keys(keys) => match keys.command {
            KeysCommand::Rotate(args) => rotate_keys(args),
        },
        Command::Rules(rules) => match rules.command {
            RulesCommand::Check { file } => check_rules(&file),
            RulesCommand::Test { file, cases } => test_rules(&file, &cases),
        },
        Command::Migrate(migrate) => hearth::tools::migrate(migrate.command),
        Command::Export(args) => hearth::tools::export(args),
        Command::Import(args) => hearth::tools::import(args),
    }
}

fn parse_rules_file(file: &std::path::Path) -> Result<hearth_rules::Ruleset, ExitCode> {
    let source = std::fs::read_to_string(file).map_err(|err| {
        eprintln!("error: cannot read {}: {err}", file.display());
        ExitCode::from(2)
    })?;
    hearth_rules::Ruleset::parse(&source).map_err(|errors| {
        eprintln!("{}: {} error(s)", file.display(), errors.len());
        eprintln!("{}", hearth_rules::format_errors(&errors));
        ExitCode::FAILURE
    })
}

/// `hearth rules check FILE`: exit 0 when the ruleset is valid, 1 with every error otherwise.
fn check_rules(file: &std::path::Path) -> ExitCode {
    match parse_rules_file(file) {
        Ok(_) => {
            println!("{}: ok", file.display());
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// `hearth rules test FILE CASES`: prints each failing case and `N passed, M failed`.
fn test_rules(file: &std::path::Path, cases: &std::path::Path) -> ExitCode {
    let ruleset = match parse_rules_file(file) {
        Ok(ruleset) => ruleset,
        Err(code) => return code,
    };
    let cases_json = match std::fs::read_to_string(cases) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", cases.display());
            return ExitCode::from(2);
        }
    };
    match hearth_rules::run_cases(&ruleset, &cases_json) {
        Ok(report) => {
            println!("{report}");
            if report.all_passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(err) => {
            eprintln!("error: {}: {err}", cases.display());
            ExitCode::from(2)
        }
    }
}

fn rotate_keys(args: KeysRotateArgs) -> ExitCode {
    let settings = match Settings::load(&args.overrides(), std::env::vars()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    match hearth::auth::tokens::rotate_keys(&settings.data_dir, &settings.auth) {
        Ok(kid) => {
            println!("new signing key {kid}; a running server signs with it within seconds");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let settings = match Settings::load(&args.overrides(), std::env::vars()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&settings.log))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();

    let result: anyhow::Result<()> = actix_web::rt::System::new().block_on(async move {
        let server = Server::build(settings.clone()).await?;
        let address = std::net::SocketAddr::new(settings.listen.ip(), server.port());
        tracing::info!(%address, data_dir = %settings.data_dir.display(), "hearth is ready");
        // The one line tools and tests wait for.
        println!("listening on http://{address}");
        let _ = std::io::stdout().flush();
        server.run_until_stopped().await?;
        Ok(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
