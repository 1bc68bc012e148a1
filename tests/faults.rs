//! Write faults injected for real under the running binary (issue: nothing
//! acknowledged is lost or duplicated): a full file system (a small tmpfs),
//! I/O errors (an ext4 image shut down under the process), no file
//! descriptors left (prlimit) while the journal rolls over, and a slow disk
//! (strace delaying every fdatasync) widening the duplicate-release race.
//!
//! For each: the requests the fault touches fail with an error naming the
//! cause, the live state keeps nothing of them, gipam works again once the
//! cause is gone without a restart, and after a restart every acknowledged
//! change is there and no failed one is. These tests need root (mount,
//! prlimit, ptrace), as CI and the developers' machines have.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Client, Daemon, Mount};
use serde_json::{Value, json};

const V4: &str = "10.77.0.0/16";

fn request_pool(c: &mut Client, subnet: &str) -> (u16, Value) {
    let body = json!({"AddressSpace": "LocalDefault", "Pool": subnet, "SubPool": "", "Options": {}, "V6": false});
    c.call("IpamDriver.RequestPool", &body)
        .expect("RequestPool")
}

/// The lease gipam keeps for the gateway it names in a RequestPool reply.
fn gateway_lease(reply: &Value) -> String {
    let id = reply["PoolID"].as_str().unwrap_or("");
    let gw = &reply["Data"]["com.docker.network.gateway"];
    format!("{id} {}", bare(gw))
}

fn request_address(c: &mut Client, pool: &str, addr: &str) -> (u16, Value) {
    let body = json!({"PoolID": pool, "Address": addr, "Options": {}});
    c.call("IpamDriver.RequestAddress", &body)
        .expect("RequestAddress")
}

fn release_address(c: &mut Client, pool: &str, addr: &str) -> (u16, Value) {
    let body = json!({"PoolID": pool, "Address": addr});
    c.call("IpamDriver.ReleaseAddress", &body)
        .expect("ReleaseAddress")
}

/// The leases gipam holds, as "pool address".
fn leases(c: &mut Client) -> BTreeSet<String> {
    let (status, v) = c.call("Gipam.Leases", &Value::Null).expect("leases");
    assert_eq!(status, 200);
    v["Leases"]
        .as_array()
        .expect("lease list")
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["PoolID"].as_str().unwrap_or(""),
                l["Address"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn bare(cidr: &Value) -> String {
    cidr.as_str()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_full_disk_fails_the_change_keeps_nothing_and_recovers_without_restart() {
    // 1 MiB of tmpfs, most of it taken before gipam starts: gipam must
    // start and work with a few KiB free (no 4 MiB of zeros ahead).
    let m = Mount::new(&["-t", "tmpfs", "-o", "size=1m", "tmpfs"]);
    let state = m.path().join("state");
    let filler = m.path().join("filler0");
    std::fs::write(&filler, vec![0u8; 1024 * 1024 - 48 * 1024]).expect("pre-fill");
    let mut d = Daemon::start_with_state(state.clone(), &["--v4", V4]);
    let mut c = d.client();
    let (s, v) = request_pool(&mut c, "10.77.9.0/24");
    assert_eq!(s, 200, "{v}");
    let pool = v["PoolID"].as_str().expect("pool id").to_string();
    let mut acked = BTreeSet::from([gateway_lease(&v)]);
    for _ in 0..5 {
        let (s, v) = request_address(&mut c, &pool, "");
        assert_eq!(s, 200, "{v}");
        acked.insert(format!("{pool} {}", bare(&v["Address"])));
    }

    let filler = common::fill(m.path());
    // The journal's last page may still have room for a few lines; the
    // first change that needs a new page fails, naming the cause, and
    // nothing of it stays.
    let before = leases(&mut c);
    let mut failed = None;
    for host in 100..250 {
        let addr = format!("10.77.9.{host}");
        let (s, v) = request_address(&mut c, &pool, &addr);
        if s == 200 {
            acked.insert(format!("{pool} {addr}"));
            continue;
        }
        assert_eq!(s, 500, "{v}");
        let err = v["Err"].as_str().unwrap_or("").to_string();
        assert!(err.contains("No space left on device"), "{err}");
        assert!(err.contains("journal"), "names the file: {err}");
        failed = Some(addr);
        break;
    }
    let failed = failed.expect("a full disk fails a change");
    // The status (and gipam_store_errors_total) counts the failed write.
    let (_, status) = c.call("Gipam.Status", &Value::Null).expect("status");
    assert!(
        status["Store"]["Errors"].as_u64().is_some_and(|n| n >= 1),
        "{status}"
    );
    let before: BTreeSet<String> = before.union(&acked).cloned().collect();
    assert_eq!(
        leases(&mut c),
        before,
        "the failed lease is not held in memory"
    );
    // A retry of the same explicit request fails the same way: the address
    // was not left "in use".
    let (s, v) = request_address(&mut c, &pool, &failed);
    assert_eq!(s, 500, "{v}");
    assert!(v["Err"].as_str().unwrap_or("").contains("No space"), "{v}");
    // A release fails too, and so does its retry (it is not "already done").
    let addr = acked
        .iter()
        .next()
        .expect("lease")
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_string();
    let (s, v) = release_address(&mut c, &pool, &addr);
    assert_eq!(s, 500, "{v}");
    let (s, v) = release_address(&mut c, &pool, &addr);
    assert_eq!(
        s, 500,
        "the retry must not claim a release that was not written: {v}"
    );
    assert_eq!(leases(&mut c), before);

    // Room again: the same requests now work, without a restart.
    std::fs::remove_file(&filler).expect("free space");
    let (s, v) = request_address(&mut c, &pool, &failed);
    assert_eq!(s, 200, "{v}");
    acked.insert(format!("{pool} {failed}"));
    let (s, v) = release_address(&mut c, &pool, &addr);
    assert_eq!(s, 200, "{v}");
    acked.remove(&format!("{pool} {addr}"));
    let live = leases(&mut c);
    assert_eq!(live, acked);

    // A clean stop leaves no zero tail; a restart has exactly what was
    // acknowledged.
    assert!(d.stop(), "clean stop");
    let journal = std::fs::read(state.join("journal.0.log")).expect("journal");
    assert_eq!(journal.last(), Some(&b'\n'), "no zeros after the last line");
    d.spawn().expect("restart");
    assert_eq!(leases(&mut d.client()), acked);
}

/// An ext4 image on a loop device, shut down under gipam (EXT4_IOC_SHUTDOWN).
fn shutdown(fs: &Path) {
    let out = Command::new("python3")
        .arg("-c")
        .arg(
            "import fcntl,os,struct,sys\n\
             fd=os.open(sys.argv[1],os.O_RDONLY)\n\
             fcntl.ioctl(fd,0x8004587d,struct.pack('I',2))",
        )
        .arg(fs)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "shutdown: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_io_error_fails_the_change_and_recovers_once_the_disk_is_back() {
    let img = tempfile::NamedTempFile::new().expect("image");
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(img.path())
        .arg("8M")
        .status()
        .expect("mkfs.ext4");
    assert!(ok.success());
    let image = img.path().to_string_lossy().into_owned();
    let m = Mount::new(&["-o", "loop", &image]);
    let state = m.path().join("state");
    let mut d = Daemon::start_with_state(state.clone(), &["--v4", V4]);
    let mut c = d.client();
    let (s, v) = request_pool(&mut c, "10.77.10.0/24");
    assert_eq!(s, 200, "{v}");
    let pool = v["PoolID"].as_str().expect("pool id").to_string();
    let mut acked = BTreeSet::from([gateway_lease(&v)]);
    for _ in 0..3 {
        let (s, v) = request_address(&mut c, &pool, "");
        assert_eq!(s, 200, "{v}");
        acked.insert(format!("{pool} {}", bare(&v["Address"])));
    }

    shutdown(m.path());
    let before = leases(&mut c);
    for _ in 0..3 {
        let (s, v) = request_address(&mut c, &pool, "");
        assert_eq!(s, 500, "{v}");
        let err = v["Err"].as_str().unwrap_or("");
        assert!(err.contains("Input/output error"), "{err}");
    }
    assert_eq!(
        leases(&mut c),
        before,
        "nothing of the failed changes is held"
    );

    // The disk comes back: what it held at the fault, as a new device
    // mounted at the same place (the kernel keeps the dead one while gipam
    // has files open on it). The next request reopens the journal by path.
    let copy = tempfile::NamedTempFile::new().expect("copy");
    std::fs::copy(img.path(), copy.path()).expect("copy image");
    let dir = m.path().to_string_lossy().into_owned();
    let copy_path = copy.path().to_string_lossy().into_owned();
    assert!(
        Command::new("umount")
            .args(["-l", &dir])
            .status()
            .expect("umount")
            .success()
    );
    assert!(
        Command::new("mount")
            .args(["-o", "loop", &copy_path, &dir])
            .status()
            .expect("mount")
            .success()
    );
    let (s, v) = request_address(&mut c, &pool, "");
    assert_eq!(s, 200, "{v}");
    acked.insert(format!("{pool} {}", bare(&v["Address"])));
    assert_eq!(leases(&mut c), acked);
    d.kill9();
    d.spawn().expect("restart");
    assert_eq!(leases(&mut d.client()), acked, "after restart");
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn prlimit_nofile(pid: u32, n: usize) {
    let ok = Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        // The soft limit only: raising it again needs no privilege.
        .arg(format!("--nofile={n}:"))
        .status()
        .expect("prlimit");
    assert!(ok.success());
}

#[test]
fn no_descriptors_during_a_roll_over_fail_no_written_change() {
    // A 4 KiB journal rolls over every few dozen changes.
    let mut d = Daemon::start(&["--v4", V4, "--compact-bytes", "4096"]);
    let mut c = d.client();
    let (s, v) = request_pool(&mut c, "10.77.0.0/20");
    assert_eq!(s, 200, "{v}");
    let pool = v["PoolID"].as_str().expect("pool id").to_string();
    let gateway = gateway_lease(&v);
    let pid = d.pid();
    // No descriptor left to open a new journal, snapshot or socket.
    prlimit_nofile(pid, open_fds(pid));
    let mut acked = BTreeSet::from([gateway]);
    let mut failed = BTreeSet::new();
    for i in 0..400 {
        let addr = format!("10.77.{}.{}", 1 + i / 200, 1 + i % 200);
        let (s, v) = request_address(&mut c, &pool, &addr);
        if s == 200 {
            acked.insert(format!("{pool} {addr}"));
        } else {
            failed.insert(format!("{pool} {addr}: {v}"));
        }
    }
    assert!(
        failed.is_empty(),
        "a roll-over that cannot open files must not fail changes: {failed:?}"
    );
    assert_eq!(leases(&mut c), acked);
    // Descriptors again: roll-overs and snapshots resume.
    prlimit_nofile(pid, 1024);
    for i in 400..600 {
        let addr = format!("10.77.{}.{}", 1 + i / 200, 1 + i % 200);
        let (s, v) = request_address(&mut c, &pool, &addr);
        assert_eq!(s, 200, "{v}");
        acked.insert(format!("{pool} {addr}"));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while !d.state.join("snapshot.json").exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        d.state.join("snapshot.json").exists(),
        "a snapshot was taken once files could be opened"
    );
    d.kill9();
    d.spawn().expect("restart");
    assert_eq!(leases(&mut d.client()), acked);
}

/// Attaches strace to every thread of `pid`, delaying each write and
/// fdatasync by 200 ms (a slow disk); the tracer ends with the traced
/// process.
fn slow_disk(pid: u32) -> std::process::Child {
    let child = Command::new("strace")
        .args([
            "-f",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=fdatasync",
            "-e",
            "inject=fdatasync:delay_enter=50000",
        ])
        .arg("-p")
        .arg(pid.to_string())
        .spawn()
        .expect("strace");
    // Attached once a change takes the delay.
    std::thread::sleep(Duration::from_millis(500));
    child
}

#[test]
fn a_duplicate_release_on_a_slow_disk_answers_only_once_the_release_is_durable() {
    for round in 0..5 {
        for what in ["address", "pool"] {
            let mut d = Daemon::start(&["--v4", V4]);
            let mut c = d.client();
            let (s, v) = request_pool(&mut c, "10.77.20.0/24");
            assert_eq!(s, 200, "{v}");
            let pool = v["PoolID"].as_str().expect("pool id").to_string();
            let (s, v) = request_address(&mut c, &pool, "10.77.20.9");
            assert_eq!(s, 200, "{v}");
            let mut tracer = slow_disk(d.pid());
            let (method, body) = match what {
                "address" => (
                    "IpamDriver.ReleaseAddress",
                    json!({"PoolID": pool, "Address": "10.77.20.9"}),
                ),
                _ => ("IpamDriver.ReleasePool", json!({"PoolID": pool})),
            };
            // The disk is busy with an unrelated change, the first release
            // queued behind it …
            let mut busy = d.client();
            busy.send(
                "IpamDriver.RequestAddress",
                &json!({"PoolID": pool, "Address": "", "Options": {}}),
            )
            .expect("unrelated change");
            std::thread::sleep(Duration::from_millis(15));
            let mut first = d.client();
            first.send(method, &body).expect("first release");
            std::thread::sleep(Duration::from_millis(15));
            // … when Docker sends it again: the second reply may only come
            // once the first is durable, so a crash now keeps it.
            let (s, v) = c.call(method, &body).expect("second release");
            assert_eq!(s, 200, "{v}");
            d.kill9();
            drop((first, busy));
            let _ = tracer.wait();
            d.spawn().expect("restart");
            let left = leases(&mut d.client());
            match what {
                "address" => assert!(
                    !left.contains(&format!("{pool} 10.77.20.9")),
                    "round {round}: the release answered {{}} but the address is still leased"
                ),
                _ => {
                    let (s, v) = d
                        .client()
                        .call("Gipam.Status", &Value::Null)
                        .expect("status");
                    assert_eq!(s, 200);
                    let pools = v["Pools"].as_array().cloned().unwrap_or_default();
                    assert!(
                        pools.iter().all(|p| p["PoolID"] != pool.as_str()),
                        "round {round}: the pool release answered {{}} but the pool is still held: {v}"
                    );
                }
            }
        }
    }
}
