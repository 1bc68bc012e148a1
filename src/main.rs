//! The gipam daemon: read settings, start logging, open the store, serve
//! until SIGTERM, SIGINT, SIGHUP or SIGQUIT. Exits at once only for
//! `--help`/`--version` (0), a command line it cannot parse or a place it
//! cannot listen on (2, or 1 when binding fails); settings or a state it
//! refuses are answered on the socket instead (`daemon::run`).
//! `gipam pools …` and the other subcommands are the client instead
//! (`gipam::cli`).

use std::process::ExitCode;

use gipam::config::{Config, ConfigError};

/// mimalloc rather than the C library's allocator: a request allocates a
/// few dozen small objects on one worker and the journal thread frees some
/// of them, which glibc's arenas (and musl's, in the plugin) handle
/// slowly. BENCHMARKS.md has the figures.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = match gipam::cli::dispatch(std::env::args().collect(), std::env::vars()) {
        gipam::cli::Dispatch::Serve(args) => args,
        gipam::cli::Dispatch::Exit(code) => return code,
    };
    let config = match Config::from_sources(args, std::env::vars()) {
        Ok(c) => c,
        Err(ConfigError::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(ConfigError::Invalid(line)) => {
            eprintln!("gipam: {line}");
            return ExitCode::from(2);
        }
    };
    env_logger::Builder::new()
        .parse_filters(&config.serve.log)
        .format_timestamp_millis()
        // A managed plugin's stdout lands in the dockerd log at level info;
        // stderr would be tagged as an error there.
        .target(env_logger::Target::Stdout)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gipam: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Signal handlers go in before anything slow (opening the store).
    let shutdown = {
        let _in_runtime = runtime.enter();
        gipam::daemon::signals()
    };
    match runtime.block_on(gipam::daemon::run(config, shutdown)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gipam: {e}");
            ExitCode::FAILURE
        }
    }
}
