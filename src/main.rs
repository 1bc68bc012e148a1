//! The gipam daemon: read settings, start logging, open the store, serve
//! until SIGTERM, SIGINT, SIGHUP or SIGQUIT.

use std::process::ExitCode;

use gipam::config::{Config, ConfigError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(code) = gipam::cli::main(&args) {
        return code;
    }
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
        .parse_filters(&config.log)
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
