//! Shared fixtures for the integration tests: a temporary directory, the
//! real gipam binary started on a socket inside it (killed on Drop), and a
//! minimal HTTP/1.1 client that sends exactly the bytes dockerd sends
//! (POST, no Content-Type, compact JSON plus a newline).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod etcd;
pub mod fleet;

/// A keep-alive HTTP/1.1 connection to a unix socket.
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    pub fn connect(socket: &Path) -> std::io::Result<Client> {
        let s = UnixStream::connect(socket)?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Client {
            reader: BufReader::new(s.try_clone()?),
            writer: s,
        })
    }

    /// Sends raw bytes as the body of `method path`; returns (status, body).
    pub fn raw(
        &mut self,
        method: &str,
        path: &str,
        body: &[u8],
    ) -> std::io::Result<(u16, Vec<u8>)> {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let mut req = head.into_bytes();
        req.extend_from_slice(body);
        self.writer.write_all(&req)?;
        self.read_response()
    }

    /// Sends `method` with a JSON body the way dockerd does, without
    /// waiting for the reply (read it with [`Client::receive`]).
    pub fn send(&mut self, method: &str, body: &Value) -> std::io::Result<()> {
        let mut bytes = serde_json::to_vec(body).map_err(std::io::Error::other)?;
        bytes.push(b'\n');
        let head = format!(
            "POST /{method} HTTP/1.1\r\nHost: plugin.moby.localhost\r\nContent-Length: {}\r\n\r\n",
            bytes.len()
        );
        self.writer.write_all(head.as_bytes())?;
        self.writer.write_all(&bytes)
    }

    /// Reads the reply to a [`Client::send`]: (status, body).
    pub fn receive(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        self.read_response()
    }

    fn read_response(&mut self) -> std::io::Result<(u16, Vec<u8>)> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("bad status line"))?;
        let mut len = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().map_err(|_| bad("bad content-length"))?;
            }
        }
        let mut body = vec![0u8; len];
        self.reader.read_exact(&mut body)?;
        Ok((status, body))
    }

    /// POSTs a JSON value the way dockerd encodes it; returns (status, JSON).
    pub fn call(&mut self, method: &str, body: &Value) -> std::io::Result<(u16, Value)> {
        let mut bytes = if body.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(body).map_err(std::io::Error::other)?
        };
        if !bytes.is_empty() {
            bytes.push(b'\n');
        }
        let (status, body) = self.raw("POST", &format!("/{method}"), &bytes)?;
        let v = serde_json::from_slice(&body).map_err(std::io::Error::other)?;
        Ok((status, v))
    }
}

/// The gipam binary running on a socket in a temporary directory.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
    pub state: PathBuf,
    /// Where the daemon's log (its stdout) goes, appended across restarts.
    pub log: PathBuf,
    /// Where its stderr goes (a refused start's one line), appended too.
    pub errors: PathBuf,
    pub args: Vec<String>,
    /// Start the process under this umask (through `sh -c 'umask …; exec …'`).
    pub umask: Option<u32>,
    child: Option<Child>,
}

impl Daemon {
    /// Starts gipam with extra args (e.g. `--v4 10.40.0.0/16`).
    pub fn start(args: &[&str]) -> Daemon {
        let mut d = Daemon::new(args);
        d.spawn().expect("gipam starts");
        d
    }

    /// A daemon not started yet: set `umask` or `args`, then [`Daemon::spawn`].
    pub fn new(args: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        Daemon {
            socket: dir.path().join("gipam.sock"),
            state: dir.path().join("state"),
            log: dir.path().join("gipam.log"),
            errors: dir.path().join("gipam.err"),
            args: args.iter().map(|s| s.to_string()).collect(),
            umask: None,
            dir,
            child: None,
        }
    }

    /// Starts the process (again) and waits until the socket answers.
    pub fn spawn(&mut self) -> Result<(), String> {
        let append = |path: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| e.to_string())
        };
        let (log, errors) = (append(&self.log)?, append(&self.errors)?);
        let bin = env!("CARGO_BIN_EXE_gipam");
        let mut cmd = match self.umask {
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask:03o}; exec \"$0\" \"$@\""))
                    .arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .arg("--socket")
            .arg(&self.socket)
            .arg("--state-dir")
            .arg(&self.state)
            .args(&self.args)
            .env("LOG", "warn")
            .stdout(log)
            .stderr(errors)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(status)) = c.try_wait()
            {
                let errors = std::fs::read_to_string(&self.errors).unwrap_or_default();
                return Err(format!("gipam exited at start: {status}: {errors}"));
            }
            if let Ok(mut c) = Client::connect(&self.socket)
                && c.call("IpamDriver.GetCapabilities", &Value::Null).is_ok()
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err("gipam did not answer on its socket within 30 s".into())
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).expect("connect to gipam")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// SIGKILL, like a crash or power loss of the process.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn stop(&mut self) -> bool {
        self.stop_with("TERM")
    }

    /// Sends `signal` (a name `kill` knows: TERM, INT, HUP, QUIT) and waits
    /// for the exit; returns whether it exited 0.
    pub fn stop_with(&mut self, signal: &str) -> bool {
        match self.child.take() {
            Some(mut c) => {
                let _ = Command::new("kill")
                    .arg(format!("-{signal}"))
                    .arg(c.id().to_string())
                    .status();
                c.wait().map(|s| s.success()).unwrap_or(false)
            }
            None => true,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// xorshift64*: enough randomness for tests, reproducible from a printed seed.
pub struct Rng(pub u64);

impl Rng {
    /// Seeded from the clock; print `.0` to reproduce a run.
    pub fn from_clock() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(7);
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

impl Daemon {
    /// Starts gipam with its state in `state` (a directory the test made
    /// elsewhere: a small tmpfs, a loop-mounted image) and extra args.
    pub fn start_with_state(state: PathBuf, args: &[&str]) -> Daemon {
        let mut d = Daemon::new(args);
        d.state = state;
        d.spawn().expect("gipam starts");
        d
    }
}

/// A file system mounted for one test, unmounted (and its loop device let
/// go) on Drop, also when the test fails.
pub struct Mount {
    pub dir: tempfile::TempDir,
}

impl Mount {
    /// `mount ARGS… DIR` on a new temporary directory; the tests run as
    /// root (CI and the developers' machines do), and say so when not.
    pub fn new(args: &[&str]) -> Mount {
        let dir = tempfile::tempdir().expect("mount point");
        let out = Command::new("mount")
            .args(args)
            .arg(dir.path())
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount {args:?} failed (these fault tests need root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Mount { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // Lazy: a process that still has files open there does not keep
        // the mount (and its loop device) alive.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` until a write fails; returns the
/// filler's path.
pub fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let block = vec![0x55u8; 4096];
    while f.write_all(&block).and_then(|_| f.sync_data()).is_ok() {}
    for _ in 0..64 {
        let _ = f.write_all(&block[..64]);
    }
    let _ = f.sync_data();
    path
}
