//! The hostile-client suite (issue 6, points 5–7), against the real binary
//! on a temporary socket: slow, stalled and endless clients, the connection
//! bound, the stop signals (`clients`); files gipam does not own, file
//! modes under umask 000, remote TCP (`files`); strict parsing and short
//! quotes (`parsing`). Waits are bounded and generous; what is asserted is
//! behaviour, never how long something took. Only loopback is used.

mod common;

#[path = "hostile/clients.rs"]
mod clients;
#[path = "hostile/files.rs"]
mod files;
#[path = "hostile/parsing.rs"]
mod parsing;

use std::process::{Command, Output};

use common::{Client, Daemon};
use serde_json::Value;

const V4: &str = "10.40.0.0/16";
const V6: &str = "2001:db8:7700::/48";

fn daemon() -> Daemon {
    Daemon::start(&["--v4", V4, "--v6", V6])
}

fn call(c: &mut Client, method: &str, body: Value) -> (u16, Value) {
    c.call(method, &body).expect("call")
}

/// Runs gipam to completion with `args` (and an empty ADDRESS, whatever
/// the environment says).
fn run_gipam(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(args)
        .env("ADDRESS", "")
        .env("LOG", "warn")
        .output()
        .expect("run gipam")
}

/// The one line a refused start prints.
fn refusal(out: &Output) -> String {
    assert!(!out.status.success(), "gipam started: {out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}
