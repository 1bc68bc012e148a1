//! Finding the running gipam's socket, in this order:
//!
//! 1. `--socket` or `SOCKET`, when given;
//! 2. the legacy plugin socket `/run/docker/plugins/gipam.sock` (gipam run
//!    as a daemon or container), when it exists;
//! 3. the socket of the one enabled managed gipam plugin: Docker gives each
//!    managed plugin `/run/docker/plugins/<id>/` and gipam's config.json
//!    names its socket `gipam.sock`. Only sockets that accept a connection
//!    count (a disabled plugin's directory may keep a stale one). Several:
//!    they are listed and the user chooses with `--socket`; none: the error
//!    says what to do.
//!
//! The root directory is a parameter so tests can build fake trees.

use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// The socket file name gipam's config.json declares.
pub const SOCKET_NAME: &str = "gipam.sock";

fn is_socket(p: &Path) -> bool {
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// The socket to talk to (see the module doc).
pub fn find(given: Option<PathBuf>, root: &Path) -> Result<PathBuf, String> {
    if let Some(p) = given {
        return Ok(p);
    }
    let legacy = root.join(SOCKET_NAME);
    if is_socket(&legacy) {
        return Ok(legacy);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.path().join(SOCKET_NAME))
                .filter(|p| is_socket(p))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let (live, stale): (Vec<PathBuf>, Vec<PathBuf>) = found
        .into_iter()
        .partition(|p| UnixStream::connect(p).is_ok());
    let list = |v: &[PathBuf]| {
        v.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match live.as_slice() {
        [one] => Ok(one.clone()),
        [] if !stale.is_empty() => Err(format!(
            "no gipam plugin answers: the sockets {} accept no connection; enable the plugin (docker plugin enable org/gipam:latest) or give --socket PATH",
            list(&stale)
        )),
        [] => Err(format!(
            "no gipam socket found: neither {} nor an enabled managed gipam plugin under {}/<id>/{SOCKET_NAME}; enable the plugin (docker plugin enable org/gipam:latest), start gipam, or give --socket PATH (or SOCKET=PATH)",
            legacy.display(),
            root.display()
        )),
        several => Err(format!(
            "several gipam plugins are enabled: {}; choose one with --socket PATH (or SOCKET=PATH)",
            list(several)
        )),
    }
}
