//! Slow, stalled, idle and endless clients, the connection bound and its
//! log line, and the four stop signals.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::{Daemon, V4, V6, call};

/// A daemon with a short client timeout, so the tests run fast.
fn impatient(extra: &[&str]) -> Daemon {
    let mut args = vec!["--v4", V4, "--v6", V6, "--client-timeout", "0.5"];
    args.extend_from_slice(extra);
    Daemon::start(&args)
}

fn connect(socket: &Path) -> UnixStream {
    let s = UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    s.set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s
}

/// Reads until the server closes; `Err` if it was still open after the
/// (generous) read timeout.
fn read_until_closed(s: &mut UnixStream) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(got),
            Err(e) => return Err(format!("still open after {} bytes: {e}", got.len())),
        }
    }
}

const HEAD: &str = "POST /IpamDriver.GetCapabilities HTTP/1.1\r\nHost: plugin.moby.localhost\r\n";

#[test]
fn slowloris_heads_and_bodies_are_closed() {
    let d = impatient(&[]);
    // Half a head, then silence.
    let mut s = connect(&d.socket);
    s.write_all(HEAD.as_bytes()).expect("send");
    read_until_closed(&mut s).expect("a partial head is closed");
    // A head dribbled a byte at a time, never finished: closed although
    // bytes keep coming (bounded: 600 bytes at 50 ms).
    let mut s = connect(&d.socket);
    let mut closed = false;
    for b in HEAD.bytes().cycle().take(600) {
        if s.write_all(&[b]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(closed, "a dribbled head was never closed");
    // A whole head, part of the body: 408 with an Err, then closed.
    let mut s = connect(&d.socket);
    let req =
        "POST /IpamDriver.RequestPool HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"Pool\":";
    s.write_all(req.as_bytes()).expect("send");
    let got = read_until_closed(&mut s).expect("a partial body is closed");
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("did not arrive within"), "{text}");
    // The daemon still serves.
    let mut c = d.client();
    assert_eq!(
        call(&mut c, "IpamDriver.GetCapabilities", Value::Null).0,
        200
    );
}

#[test]
fn idle_keep_alive_connections_are_reaped() {
    let d = impatient(&[]);
    let mut s = connect(&d.socket);
    let req = format!("{HEAD}Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let got = read_until_closed(&mut s).expect("an idle connection is closed");
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 200"));
}

#[test]
fn a_client_that_never_reads_its_replies_is_dropped() {
    let d = impatient(&[]);
    let mut s = connect(&d.socket);
    let req = b"POST /Gipam.Leases HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
    // Pipeline requests until the daemon stops reading them (its replies
    // fill the socket buffer nobody drains), at most 100,000.
    let mut sent = 0usize;
    let mut written = 0usize;
    while sent < 100_000 {
        match s.write(&req[written % req.len()..]) {
            Ok(n) => {
                written += n;
                sent = written / req.len();
            }
            Err(_) => break,
        }
    }
    // Leave the replies unread for several client timeouts.
    std::thread::sleep(Duration::from_secs(3));
    let got = read_until_closed(&mut s).expect("closed");
    let replies = String::from_utf8_lossy(&got)
        .matches("HTTP/1.1 200")
        .count();
    assert!(replies > 0, "some replies came");
    assert!(
        replies < sent,
        "all {sent} requests were answered: the stalled writer was not dropped"
    );
}

/// The read-buffer cap (16 KiB) bounds what a client sends, not what gipam
/// answers: a listing far larger than it arrives whole.
#[test]
fn a_reply_larger_than_the_read_buffer_arrives_whole() {
    let d = impatient(&[]);
    let mut c = d.client();
    let (s, v) = call(
        &mut c,
        "IpamDriver.RequestPool",
        json!({"AddressSpace":"LocalDefault","Pool":"10.77.0.0/22","SubPool":"","Options":{},"V6":false}),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["PoolID"].as_str().expect("PoolID").to_string();
    for _ in 0..600 {
        let body = json!({"PoolID":id,"Address":"","Options":{"com.docker.network.endpoint.name":"a-container-name-of-some-length"}});
        assert_eq!(call(&mut c, "IpamDriver.RequestAddress", body).0, 200);
    }
    let (s, raw) = c.raw("POST", "/Gipam.Leases", b"").expect("leases");
    assert_eq!(s, 200);
    assert!(
        raw.len() > 4 * gipam::api::server::MAX_BUF,
        "{} bytes",
        raw.len()
    );
    let v: Value = serde_json::from_slice(&raw).expect("whole JSON");
    // The 600 leases and the gateway named in RequestPool's Data.
    assert_eq!(v["Leases"].as_array().map(Vec::len), Some(601));
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// How many more descriptors this test process may open.
fn fd_budget() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: usize = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    soft.saturating_sub(fds(std::process::id() as u32) + 200)
}

#[test]
fn thousands_of_idle_connections_leave_fds_and_memory_bounded() {
    const LIMIT: usize = 64;
    // A client timeout long enough that the bound, not reaping, is what
    // holds the attack back while it connects.
    let d = Daemon::start(&["--max-connections", "64", "--client-timeout", "2"]);
    let pid = d.pid();
    let (fds0, rss0) = (fds(pid), rss_kib(pid));
    let n = fd_budget().min(3000);
    assert!(n >= 500, "this machine allows too few open files ({n})");
    let mut held = Vec::with_capacity(n);
    let mut most = 0;
    for i in 0..n {
        match UnixStream::connect(&d.socket) {
            Ok(mut s) => {
                let _ = s.write_all(HEAD.as_bytes());
                held.push(s);
            }
            // The backlog is full: the attack is working as hard as it can.
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
        if i % 100 == 0 {
            most = most.max(fds(pid));
        }
    }
    most = most.max(fds(pid));
    let rss = rss_kib(pid);
    eprintln!(
        "{n} idle connections: gipam fds {fds0} at rest, {most} at most; RSS {rss0} -> {rss} KiB"
    );
    assert!(
        most <= fds0 + LIMIT + 8,
        "gipam held {most} fds (at rest {fds0}, limit {LIMIT})"
    );
    assert!(
        rss <= rss0 + 32 * 1024,
        "gipam grew from {rss0} KiB to {rss} KiB"
    );
    // A normal client is served while the attackers still hold their
    // sockets: the idle ones are reaped and the excess refused.
    let deadline = Instant::now() + Duration::from_secs(30);
    let served = loop {
        let ok = common_call(&d.socket).is_some_and(|s| s == 200);
        if ok || Instant::now() > deadline {
            break ok;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(served, "a normal client was not served within 30 s");
    drop(held);
}

fn common_call(socket: &Path) -> Option<u16> {
    let mut c = super::common::Client::connect(socket).ok()?;
    c.call("IpamDriver.GetCapabilities", &Value::Null)
        .ok()
        .map(|(s, _)| s)
}

fn refusal_lines(log: &Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("closing new ones at once"))
        .count()
}

/// Opens `n` connections that each completed a request (so each is known
/// to hold a slot) and now sit idle.
fn hold(d: &Daemon, n: usize) -> Vec<super::common::Client> {
    let mut held = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while held.len() < n && Instant::now() < deadline {
        if let Ok(mut c) = super::common::Client::connect(&d.socket)
            && c.call("IpamDriver.GetCapabilities", &Value::Null).is_ok()
        {
            held.push(c);
        } else {
            // A slot freed by a closed client is released asynchronously.
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    assert_eq!(held.len(), n, "could not hold {n} connections");
    held
}

#[test]
fn the_connection_bound_refuses_the_excess_and_logs_once_per_burst() {
    let d = Daemon::start(&[
        "--v4",
        V4,
        "--max-connections",
        "8",
        "--client-timeout",
        "60",
    ]);
    for _ in 0..2 {
        let held = hold(&d, 8);
        // (Holding may itself have met the limit, while a closed client's
        // slot was still being released: count from here.)
        let before = refusal_lines(&d.log);
        for _ in 0..50 {
            let mut s = connect(&d.socket);
            let _ = s.write_all(format!("{HEAD}Content-Length: 0\r\n\r\n").as_bytes());
            let got = read_until_closed(&mut s).expect("the excess is closed at once");
            assert!(got.is_empty(), "an excess connection was served");
        }
        assert_eq!(refusal_lines(&d.log), before + 1, "one line per burst");
        drop(held);
        // Once the held ones are gone a normal client is served again.
        let deadline = Instant::now() + Duration::from_secs(30);
        while common_call(&d.socket) != Some(200) {
            assert!(Instant::now() < deadline, "not served after the burst");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn every_stop_signal_stops_cleanly_and_keeps_the_last_change() {
    let mut d = Daemon::start(&["--v4", V4, "--v6", V6]);
    for (i, signal) in ["HUP", "QUIT", "INT", "TERM"].into_iter().enumerate() {
        let mut c = d.client();
        let subnet = format!("10.9{i}.0.0/24");
        let (s, v) = call(
            &mut c,
            "IpamDriver.RequestPool",
            json!({"AddressSpace":"LocalDefault","Pool":subnet,"SubPool":"","Options":{},"V6":false}),
        );
        assert_eq!(s, 200, "{v}");
        assert!(d.stop_with(signal), "SIG{signal}: clean exit (status 0)");
        assert!(!d.socket.exists(), "SIG{signal}: socket removed");
        d.spawn().expect("restart");
        let mut c = d.client();
        let (_, status) = call(&mut c, "Gipam.Status", Value::Null);
        let pools: Vec<&str> = status["Pools"]
            .as_array()
            .expect("Pools")
            .iter()
            .filter_map(|p| p["Pool"].as_str())
            .collect();
        assert!(
            pools.contains(&subnet.as_str()),
            "SIG{signal}: {subnet} lost: {pools:?}"
        );
    }
}
