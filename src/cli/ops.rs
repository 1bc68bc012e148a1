//! The operator's subcommands: `status`, `leases`, `fleet` and `reconcile` talk to
//! the running gipam over its socket (found by [`super::socket::find`]:
//! `--socket`, else SOCKET, else the legacy path, else the one enabled
//! managed plugin's); `import` writes a new state directory offline.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use super::{fleet, import, leases, reconcile, socket, status};

/// The subcommands this module runs.
pub const COMMANDS: [&str; 5] = ["status", "leases", "fleet", "reconcile", "import"];

const USAGE: &str = "usage:
  gipam status [--json] [--socket PATH]
  gipam leases [POOL] [--json] [--socket PATH]     POOL: a PoolID, subnet or network name
  gipam fleet [--json] [--socket PATH]             fleet mode: the hosts, what they hold, etcd
  gipam fleet forget HOST [--json] [--socket PATH]  release what a host gone for good held
  gipam reconcile [--apply] [--json] [--settle SECONDS] [--socket PATH]
  gipam import FILE [--state-dir DIR]              the original gipam's lease file, gipam stopped
";

/// Flags shared by the subcommands.
#[derive(Debug, Default)]
struct Args {
    socket: Option<PathBuf>,
    state_dir: Option<PathBuf>,
    json: bool,
    apply: bool,
    settle: Option<Duration>,
    positional: Vec<String>,
}

fn parse(rest: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut it = rest.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag {
            "--json" => a.json = true,
            "--apply" => a.apply = true,
            "--socket" => a.socket = Some(value("--socket")?.into()),
            "--state-dir" => a.state_dir = Some(value("--state-dir")?.into()),
            "--settle" => {
                let v = value("--settle")?;
                let s = v
                    .parse::<f64>()
                    .ok()
                    .filter(|s| (0.0..=300.0).contains(s))
                    .ok_or_else(|| {
                        format!("--settle {v} is not a number of seconds from 0 to 300")
                    })?;
                a.settle = Some(Duration::from_secs_f64(s));
            }
            f if f.starts_with('-') => return Err(format!("unknown flag {f}")),
            _ => a.positional.push(arg.clone()),
        }
    }
    Ok(a)
}

/// Runs the subcommand `args[1]` names; `None` when it names none (the
/// daemon runs). `root` is where managed plugins' sockets are looked for.
pub fn main(args: &[String], root: &Path) -> Option<ExitCode> {
    let cmd = args.get(1)?;
    if !COMMANDS.contains(&cmd.as_str()) {
        return None;
    }
    let rest = &args[2..];
    if rest.iter().any(|a| a == "-h" || a == "--help") {
        print!("{USAGE}");
        return Some(ExitCode::SUCCESS);
    }
    let result = parse(rest).and_then(|a| {
        let given = a
            .socket
            .clone()
            .or_else(|| std::env::var_os("SOCKET").map(PathBuf::from))
            .filter(|s| !s.as_os_str().is_empty());
        let socket = || socket::find(given.clone(), root);
        let extra = |max: usize| {
            if a.positional.len() > max {
                Err(format!(
                    "{cmd}: unexpected {:?}\n{USAGE}",
                    a.positional[max]
                ))
            } else {
                Ok(())
            }
        };
        match cmd.as_str() {
            "status" => extra(0).and_then(|_| status::run(&socket()?, a.json)),
            "leases" => extra(1).and_then(|_| {
                leases::run(&socket()?, a.positional.first().map(String::as_str), a.json)
            }),
            "fleet" => match a.positional.first().map(String::as_str) {
                None => fleet::run(&socket()?, a.json),
                Some("forget") => {
                    extra(2)?;
                    let host = a.positional.get(1).ok_or_else(|| {
                        format!("forget needs the HOST to release (gipam fleet lists them)\n{USAGE}")
                    })?;
                    fleet::forget(&socket()?, host, a.json)
                }
                Some(other) => Err(format!(
                    "unknown fleet command {other:?}; gipam fleet lists the hosts, gipam fleet forget HOST releases one\n{USAGE}"
                )),
            },
            "reconcile" => extra(0).and_then(|_| {
                reconcile::run(
                    &socket()?,
                    a.apply,
                    a.json,
                    a.settle.unwrap_or(Duration::from_secs(2)),
                )
            }),
            _ => {
                extra(1)?;
                let file = a
                    .positional
                    .first()
                    .ok_or_else(|| format!("import needs the lease FILE\n{USAGE}"))?;
                let dir = a
                    .state_dir
                    .clone()
                    .or_else(|| std::env::var_os("STATE_DIR").map(PathBuf::from))
                    .unwrap_or_else(|| PathBuf::from("/var/lib/gipam"));
                import::run(std::path::Path::new(file), &dir)
            }
        }
    });
    Some(match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gipam {cmd}: {e}");
            ExitCode::FAILURE
        }
    })
}
