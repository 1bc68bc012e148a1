//! Files gipam does not own are never destroyed (a SOCKET that is not a
//! socket, a SPEC_FILE gipam did not write), its own stale ones are
//! replaced, the socket is 0600 under umask 000, and TCP off loopback needs
//! ALLOW_REMOTE and says so loudly.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{Daemon, refusal, run_gipam};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn the_socket_is_private_under_umask_000() {
    let mut d = Daemon::new(&[]);
    d.umask = Some(0);
    d.spawn().expect("gipam starts under umask 000");
    assert_eq!(mode(&d.socket), 0o600, "socket mode");
    // Nothing of the private bind directory is left next to it.
    let names: Vec<String> = std::fs::read_dir(d.dir.path())
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.starts_with('.')), "{names:?}");
    assert!(d.stop());
    assert!(!d.socket.exists(), "socket removed");
}

#[test]
fn the_spec_file_and_its_directory_are_not_writable_by_others_under_umask_000() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("plugins/gipam.spec");
    let mut g = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_gipam"))
        .args(["--address", "127.0.0.1:0", "--spec-file"])
        .arg(&spec)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .spawn()
        .expect("start gipam");
    wait_for_spec(&spec, "", &mut g);
    assert_eq!(mode(&spec), 0o644, "spec file");
    assert_eq!(mode(&dir.path().join("plugins")), 0o755, "its directory");
    assert!(term(&mut g).status.success());
}

#[test]
fn a_socket_path_that_is_not_a_socket_is_left_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("precious.txt");
    std::fs::write(&file, "keep me\n").expect("write");
    let sub = dir.path().join("a-directory");
    std::fs::create_dir(&sub).expect("mkdir");
    std::fs::write(sub.join("inside"), "x").expect("write");
    let link = dir.path().join("link.sock");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    for (path, kind) in [
        (&file, "a regular file"),
        (&sub, "a directory"),
        (&link, "a symbolic link"),
    ] {
        let state = dir.path().join("state");
        let out = run_gipam(&[
            OsStr::new("--socket"),
            path.as_os_str(),
            OsStr::new("--state-dir"),
            state.as_os_str(),
        ]);
        let line = refusal(&out);
        assert!(
            line.contains(&format!("exists and is {kind}, not a socket")),
            "{line}"
        );
        assert!(line.contains("set SOCKET"), "{line}");
        assert!(!state.exists(), "a refused start touched the state");
    }
    assert_eq!(std::fs::read_to_string(&file).expect("file"), "keep me\n");
    assert_eq!(
        std::fs::read_to_string(sub.join("inside")).expect("file"),
        "x"
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .expect("link")
            .file_type()
            .is_symlink()
    );
}

/// gipam on TCP with `spec` as its spec file (started, not waited for).
fn tcp_gipam(dir: &Path, spec: &Path, address: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_gipam"))
        .args(["--address", address, "--spec-file"])
        .arg(spec)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(extra)
        .env("LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start gipam")
}

/// Waits (bounded) until the spec file holds something other than `old`.
fn wait_for_spec(spec: &Path, old: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("gipam exited: {status}");
        }
        if let Ok(s) = std::fs::read_to_string(spec)
            && s != old
        {
            return s;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("gipam did not write {} within 30 s", spec.display());
}

fn term(child: &mut Child) -> std::process::Output {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut out = std::process::Output {
        status: child.wait().expect("wait"),
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    use std::io::Read;
    if let Some(mut o) = child.stdout.take() {
        let _ = o.read_to_end(&mut out.stdout);
    }
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_end(&mut out.stderr);
    }
    out
}

#[test]
fn a_spec_file_gipam_did_not_write_is_left_alone() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("gipam.spec");
    let live = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let live_url = format!("tcp://{}\n", live.local_addr().expect("addr"));
    let cases = [
        (
            "unix:///run/docker/plugins/other.sock\n",
            "was not written by gipam",
        ),
        ("tcp://127.0.0.1:1\n# mine\n", "was not written by gipam"),
        ("tcp://127.0.0.1:1", "was not written by gipam"),
        (
            "{\"Name\":\"gipam\",\"Addr\":\"tcp://127.0.0.1:1\"}",
            "was not written by gipam",
        ),
        ("", "was not written by gipam"),
        (live_url.as_str(), "where a server is running"),
    ];
    for (content, why) in cases {
        std::fs::write(&spec, content).expect("write");
        let out = run_gipam(&[
            OsStr::new("--address"),
            OsStr::new("127.0.0.1:0"),
            OsStr::new("--spec-file"),
            spec.as_os_str(),
            OsStr::new("--state-dir"),
            dir.path().join("state").as_os_str(),
        ]);
        let line = refusal(&out);
        assert!(line.contains(why), "{content:?}: {line}");
        assert!(line.contains("SPEC_FILE"), "{line}");
        assert_eq!(std::fs::read_to_string(&spec).expect("spec"), content);
        assert!(
            !dir.path().join("state").exists(),
            "a refused start touched the state"
        );
    }
    drop(live);
}

#[test]
fn a_stale_spec_file_of_a_killed_gipam_is_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("plugins/gipam.spec");
    let mut first = tcp_gipam(dir.path(), &spec, "127.0.0.1:0", &[]);
    let old = wait_for_spec(&spec, "", &mut first);
    let _ = first.kill();
    let _ = first.wait();
    assert_eq!(
        std::fs::read_to_string(&spec).expect("left by kill -9"),
        old
    );
    let mut second = tcp_gipam(dir.path(), &spec, "127.0.0.1:0", &[]);
    let new = wait_for_spec(&spec, &old, &mut second);
    assert!(new.starts_with("tcp://127.0.0.1:"), "{new}");
    assert_eq!(mode(&spec), 0o644);
    assert!(term(&mut second).status.success());
    assert!(!spec.exists(), "its own spec file is removed at exit");
}

#[test]
fn a_spec_file_replaced_while_running_is_not_removed_at_exit() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("gipam.spec");
    let mut g = tcp_gipam(dir.path(), &spec, "127.0.0.1:0", &[]);
    wait_for_spec(&spec, "", &mut g);
    std::fs::write(&spec, "tcp://127.0.0.1:9\n").expect("someone else's");
    assert!(term(&mut g).status.success());
    assert_eq!(
        std::fs::read_to_string(&spec).expect("kept"),
        "tcp://127.0.0.1:9\n"
    );
}

#[test]
fn tcp_off_loopback_needs_allow_remote_and_warns() {
    let dir = tempfile::tempdir().expect("tmp");
    let spec = dir.path().join("gipam.spec");
    let out = run_gipam(&[
        OsStr::new("--address"),
        OsStr::new("0.0.0.0:0"),
        OsStr::new("--spec-file"),
        spec.as_os_str(),
        OsStr::new("--state-dir"),
        dir.path().join("state").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let line = refusal(&out);
    assert!(
        line.contains("--address 0.0.0.0:0 is not a loopback address"),
        "{line}"
    );
    assert!(line.contains("set --allow-remote true"), "{line}");
    assert!(!spec.exists());
    // An IPv4-mapped loopback address is not loopback by the strict rule,
    // yet reachable only from this host: the warning is tested on it.
    let mut g = tcp_gipam(
        dir.path(),
        &spec,
        "[::ffff:127.0.0.1]:0",
        &["--allow-remote", "true"],
    );
    wait_for_spec(&spec, "", &mut g);
    let out = term(&mut g);
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stdout);
    let warning = log
        .lines()
        .find(|l| l.contains("ALLOW_REMOTE is set"))
        .unwrap_or_else(|| panic!("no warning in {log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(warning.contains("tcp://[::ffff:127.0.0.1]:"), "{warning}");
    assert!(warning.contains("no authentication"), "{warning}");
}
