//! The `hearth` binary: parses the command line and hands over to the library.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use hearth::cli::{Cli, Command, ServeArgs};
use hearth::config::Settings;
use hearth::startup::Server;

/// glibc malloc showed up as a third of the CPU profile of queries; mimalloc is far cheaper for
/// the many small, short-lived allocations of request handling.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args),
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
