//! Binding where dockerd finds gipam — the unix socket, or TCP plus a spec
//! file — without ever destroying a file gipam does not own:
//!
//! - SOCKET: an existing socket nobody answers on is stale and replaced; a
//!   live one, or anything that is not a socket (a regular file, a
//!   directory, a symlink), stops the start and is left untouched.
//! - The socket is 0600 whatever the umask: it is bound inside a fresh
//!   0700 directory next to SOCKET, chmodded, and only then renamed into
//!   place, so no client can ever connect to it with looser permissions
//!   (a chmod after bind would leave a window: the kernel queues
//!   connections from the moment of `listen`).
//! - SPEC_FILE: gipam recognises its own spec file by its content, which is
//!   exactly one line `tcp://IP:PORT` as gipam writes it. Such a file whose
//!   address refuses connections is a stale one (gipam was killed) and is
//!   replaced; one whose address answers belongs to a running server and
//!   stops the start; any other content stops the start, untouched. It is
//!   written 0644 through a temporary file and a rename, so dockerd never
//!   reads half of it.
//! - At exit the socket (same inode) or spec file (same content) is removed
//!   only if it is still the one gipam made.

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::api::server::Listener;
use crate::config::Listen;

/// A bound listener and what gipam must remove at exit.
pub struct Bound {
    pub listener: Listener,
    pub owned: Owned,
    /// Where it serves, for the start-up line.
    pub serving: String,
}

/// The file gipam made for dockerd to find it.
pub enum Owned {
    Socket { path: PathBuf, dev: u64, ino: u64 },
    Spec { path: PathBuf, content: String },
}

impl Owned {
    /// Removes the file if it is still gipam's.
    pub fn remove(&self) {
        match self {
            Owned::Socket { path, dev, ino } => {
                let ours = std::fs::symlink_metadata(path)
                    .is_ok_and(|m| m.dev() == *dev && m.ino() == *ino);
                if ours {
                    let _ = std::fs::remove_file(path);
                }
            }
            Owned::Spec { path, content } => {
                if std::fs::read_to_string(path).is_ok_and(|c| c == *content) {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    }
}

/// Binds what `listen` says, applying the ownership rules of the module doc.
pub async fn bind(listen: &Listen) -> Result<Bound, String> {
    match listen {
        Listen::Unix(path) => {
            let (listener, owned) = bind_unix(path)?;
            Ok(Bound {
                listener: Listener::Unix(listener),
                owned,
                serving: path.display().to_string(),
            })
        }
        Listen::Tcp { addr, spec_file } => {
            check_spec_file(spec_file)?;
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}; set ADDRESS"))?;
            let local = l.local_addr().map_err(|e| e.to_string())?;
            let content = spec_content(local);
            write_spec_file(spec_file, &content)?;
            Ok(Bound {
                listener: Listener::Tcp(l),
                owned: Owned::Spec {
                    path: spec_file.clone(),
                    content,
                },
                serving: format!("tcp://{local} (spec file {})", spec_file.display()),
            })
        }
    }
}

/// What gipam writes into its spec file (and nothing else is its own).
fn spec_content(addr: SocketAddr) -> String {
    format!("tcp://{addr}\n")
}

fn kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Creates the missing directories above `path` (0755 whatever the umask
/// allows: never world-writable).
fn make_parent(path: &Path, setting: &str) -> Result<PathBuf, String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&dir)
        .map_err(|e| {
            format!(
                "cannot create directory {}: {e}; set {setting}",
                dir.display()
            )
        })?;
    Ok(dir)
}

/// Checks, without changing anything, that `listen` can be bound under the
/// ownership rules; the daemon calls it before it opens the state, so a
/// refused start touches nothing. [`bind`] checks again.
pub fn preflight(listen: &Listen) -> Result<(), String> {
    match listen {
        Listen::Unix(path) => check_socket_path(path),
        Listen::Tcp { spec_file, .. } => check_spec_file(spec_file),
    }
}

/// Refuses a SOCKET path that is live or is not a socket.
fn check_socket_path(path: &Path) -> Result<(), String> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect SOCKET {}: {e}", path.display())),
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(format!(
                    "socket {} is in use by another process; stop it or set SOCKET",
                    path.display()
                ));
            }
            // Stale: bind_unix's rename replaces it in one step.
        }
        Ok(m) => {
            return Err(format!(
                "SOCKET {} exists and is {}, not a socket; gipam leaves it alone: move it away or set SOCKET to another path",
                path.display(),
                kind(&m)
            ));
        }
    }
    Ok(())
}

fn bind_unix(path: &Path) -> Result<(tokio::net::UnixListener, Owned), String> {
    let dir = make_parent(path, "SOCKET")?;
    check_socket_path(path)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "gipam".into());
    let private = private_dir(&dir, &name)?;
    let temp = private.join("s");
    let bound = (|| -> Result<tokio::net::UnixListener, String> {
        let l = tokio::net::UnixListener::bind(&temp)
            .map_err(|e| format!("cannot listen on {}: {e}; set SOCKET", path.display()))?;
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make socket {} private: {e}", path.display()))?;
        std::fs::rename(&temp, path)
            .map_err(|e| format!("cannot put socket {} in place: {e}", path.display()))?;
        Ok(l)
    })();
    let _ = std::fs::remove_file(&temp);
    let _ = std::fs::remove_dir(&private);
    let listener = bound?;
    let m = std::fs::symlink_metadata(path)
        .map_err(|e| format!("socket {} vanished after bind: {e}", path.display()))?;
    Ok((
        listener,
        Owned::Socket {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
        },
    ))
}

/// A new 0700 directory in `dir` for binding or writing before a rename.
fn private_dir(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let mut last = None;
    for n in 0..100 {
        let p = dir.join(format!(".{name}.{}.{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => {
                return Err(format!(
                    "cannot create a directory in {}: {e}",
                    dir.display()
                ));
            }
        }
    }
    Err(format!(
        "cannot create a private directory in {}: {}",
        dir.display(),
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

/// Refuses to start over a spec file that is not a stale one of gipam's.
fn check_spec_file(path: &Path) -> Result<(), String> {
    let shown = path.display();
    let m = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("cannot inspect SPEC_FILE {shown}: {e}")),
        Ok(m) => m,
    };
    if !m.file_type().is_file() {
        return Err(format!(
            "SPEC_FILE {shown} exists and is {}; gipam leaves it alone: move it away or set SPEC_FILE to another path",
            kind(&m)
        ));
    }
    let mut text = String::new();
    let read = std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_string(&mut text))
        .is_ok();
    let addr = read
        .then(|| {
            text.strip_prefix("tcp://")?
                .strip_suffix('\n')?
                .parse()
                .ok()
        })
        .flatten()
        .filter(|a: &SocketAddr| spec_content(*a) == text);
    let Some(addr) = addr else {
        return Err(format!(
            "SPEC_FILE {shown} exists and was not written by gipam (its spec file is one line tcp://IP:PORT); gipam leaves it alone: remove it or set SPEC_FILE to another path"
        ));
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Ok(()),
        Ok(_) => Err(format!(
            "SPEC_FILE {shown} points at tcp://{addr}, where a server is running (another gipam?); stop it or set SPEC_FILE"
        )),
        Err(e) => Err(format!(
            "SPEC_FILE {shown} points at tcp://{addr}, which cannot be checked ({e}), so it may be live; remove the file if it is stale, or set SPEC_FILE"
        )),
    }
}

/// Writes the spec file 0644 through a temporary file and a rename.
fn write_spec_file(path: &Path, content: &str) -> Result<(), String> {
    let fail = |e: std::io::Error| format!("cannot write {}: {e}; set SPEC_FILE", path.display());
    let dir = make_parent(path, "SPEC_FILE")?;
    let private = private_dir(&dir, "gipam-spec")?;
    let temp = private.join("spec");
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&temp)
        .and_then(|mut f| std::io::Write::write_all(&mut f, content.as_bytes()))
        .and_then(|()| std::fs::rename(&temp, path))
        .map_err(fail);
    let _ = std::fs::remove_file(&temp);
    let _ = std::fs::remove_dir(&private);
    written
}
