//! The podgate binary: parse the command line and the environment, set up
//! logging, run. Exit codes: 0 done, 1 runtime failure, 64 invalid
//! configuration (EX_USAGE).

use std::process::ExitCode;

use clap::Parser;
use podgate::cli::{self, Cli, Command};
use podgate::config::Config;

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: podgate::alloc::Mimalloc = podgate::alloc::Mimalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    if let Command::Version = command {
        println!("podgate {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if let Command::MigrateNginx { file, table } = &command {
        return podgate::migrate::run(file.as_deref(), *table);
    }
    let loaded = match Config::from_env() {
        Ok(l) => l,
        Err(e) => {
            eprint!("podgate: {e}");
            return ExitCode::from(64);
        }
    };
    // available_parallelism honours the cgroup CPU quota, so a sidecar with a
    // 1-CPU limit runs one worker instead of one per node core.
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("podgate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        match command {
            Command::Serve => {
                let _guard = match podgate::telemetry::init(
                    loaded.config.log_format,
                    &loaded.config.log_filter,
                ) {
                    Ok(guard) => guard,
                    Err(e) => {
                        eprintln!("podgate: cannot start the log writer thread: {e}");
                        return ExitCode::from(1);
                    }
                };
                for w in &loaded.warnings {
                    tracing::warn!("{w}");
                }
                match podgate::serve_until_signal(loaded).await {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(e) => {
                        tracing::error!("{e:#}");
                        eprintln!("podgate: {e:#}");
                        ExitCode::from(1)
                    }
                }
            }
            Command::Status { json } => cli::status(&loaded, json).await,
            Command::Check => cli::check(&loaded).await,
            Command::Config => cli::config(&loaded),
            Command::Version | Command::MigrateNginx { .. } => ExitCode::SUCCESS,
        }
    })
}
