//! The `gipam` binary as a client of the running plugin (F11):
//! `gipam pools show|apply`, `status`, `leases`, `fleet`, `reconcile` and
//! `import`.
//! With no subcommand (only flags) or `serve`, the binary is the daemon, as
//! it always was.
//!
//! - [`socket`]: finding the plugin's socket without the user looking up
//!   the plugin id.
//! - `http`: one request over that socket (the pools commands);
//!   `client`: the same for the operator's commands, with chunked replies.
//! - `pools`: the `pools` subcommands and their tables.
//! - `ops`: `status`, `leases`, `fleet`, `reconcile`, `import`; [`docker`] reads
//!   Docker's networks for them (never from inside the daemon).

mod client;
pub mod docker;
pub mod fleet;
mod http;
pub mod import;
pub mod leases;
mod ops;
mod pools;
pub mod reconcile;
pub mod remembered;
pub mod socket;
pub mod status;
mod table;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Arg, ArgAction, ArgMatches, Command};

/// What `main` does with the command line.
pub enum Dispatch {
    /// Run the daemon with these args (program name first, no `serve`).
    Serve(Vec<String>),
    /// A client command ran; exit with this code.
    Exit(ExitCode),
}

/// Hidden: where managed plugins' sockets are looked for (tests point it
/// at a temporary tree).
pub const PLUGINS_DIR_ENV: &str = "GIPAM_PLUGINS_DIR";
/// Docker's plugin socket directory.
pub const PLUGINS_DIR: &str = "/run/docker/plugins";

/// Decides between the daemon and a client subcommand, and runs the latter.
pub fn dispatch<E>(args: Vec<String>, env: E) -> Dispatch
where
    E: IntoIterator<Item = (String, String)>,
{
    match args.get(1).map(String::as_str) {
        Some("serve") => {
            let mut rest = args;
            rest.remove(1);
            Dispatch::Serve(rest)
        }
        Some("pools") => Dispatch::Exit(run(args, env)),
        Some(c) if ops::COMMANDS.contains(&c) => {
            let root = env
                .into_iter()
                .find(|(k, _)| k == PLUGINS_DIR_ENV)
                .map_or_else(|| PathBuf::from(PLUGINS_DIR), |(_, v)| PathBuf::from(v));
            match ops::main(&args, &root) {
                Some(code) => Dispatch::Exit(code),
                None => Dispatch::Serve(args),
            }
        }
        _ => Dispatch::Serve(args),
    }
}

fn client_args(cmd: Command) -> Command {
    cmd.arg(
        Arg::new("socket")
            .long("socket")
            .value_name("SOCKET")
            .global(true)
            .help("the plugin's socket [env: SOCKET] [default: found by itself: /run/docker/plugins/gipam.sock, else the one enabled gipam plugin's /run/docker/plugins/<id>/gipam.sock]"),
    )
    .arg(
        Arg::new("plugins-dir")
            .long("plugins-dir")
            .value_name("DIR")
            .global(true)
            .hide(true),
    )
    .arg(
        Arg::new("json")
            .long("json")
            .action(ArgAction::SetTrue)
            .global(true)
            .help("print the plugin's JSON reply instead of a table"),
    )
}

fn command() -> Command {
    let pools = Command::new("pools")
        .about("show or replace the pool tree (F7) of the running gipam")
        .subcommand_required(true)
        .subcommand(Command::new("show").about("print the pool tree, its reservations and networks"))
        .subcommand(
            Command::new("apply")
                .about("replace the pool tree with FILE (gipam's format or python-docker-ipam's schema.json), validated whole")
                .arg(Arg::new("file").value_name("FILE").required(true)),
        );
    client_args(
        Command::new("gipam")
            .version(env!("CARGO_PKG_VERSION"))
            .about("gipam client: talks to the running plugin over its socket (`gipam --help` without a subcommand lists the daemon's settings)")
            .subcommand_required(true)
            .subcommand(pools),
    )
}

/// What every client command needs: where the plugin is, how to print.
pub struct Client {
    pub socket: PathBuf,
    pub json: bool,
}

fn run<E>(args: Vec<String>, env: E) -> ExitCode
where
    E: IntoIterator<Item = (String, String)>,
{
    let env: std::collections::HashMap<String, String> = env.into_iter().collect();
    let matches = match command().try_get_matches_from(args.iter().map(OsString::from)) {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    match run_matches(&matches, &env) {
        Ok(()) => ExitCode::SUCCESS,
        Err(line) => {
            eprintln!("gipam: {line}");
            ExitCode::FAILURE
        }
    }
}

fn run_matches(
    m: &ArgMatches,
    env: &std::collections::HashMap<String, String>,
) -> Result<(), String> {
    let given = m
        .get_one::<String>("socket")
        .cloned()
        .or_else(|| env.get("SOCKET").cloned())
        .filter(|s| !s.is_empty());
    let root = m
        .get_one::<String>("plugins-dir")
        .cloned()
        .or_else(|| env.get(PLUGINS_DIR_ENV).cloned())
        .unwrap_or_else(|| PLUGINS_DIR.to_string());
    let json = m.get_flag("json");
    let Some(("pools", sub)) = m.subcommand() else {
        return Err("unknown command; see gipam pools --help".into());
    };
    let client = Client {
        socket: socket::find(given.map(PathBuf::from), std::path::Path::new(&root))?,
        json,
    };
    match sub.subcommand() {
        Some(("show", _)) => pools::show(&client),
        Some(("apply", a)) => {
            let file = a
                .get_one::<String>("file")
                .ok_or("gipam pools apply needs a FILE")?;
            pools::apply(&client, std::path::Path::new(file))
        }
        _ => Err("unknown pools command; use show or apply".into()),
    }
}
