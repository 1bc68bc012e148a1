//! A real Prometheus (Debian's package; scripts/install-prometheus.sh)
//! scrapes gipam's METRICS_ADDRESS on loopback; the values read back
//! through its HTTP API (`/api/v1/query`) match the state after a known
//! sequence of requests. Prometheus runs with a temporary config and data
//! directory and is killed on Drop.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Daemon;
use serde_json::{Value, json};

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `GET path` on 127.0.0.1:port; the body of a 200.
fn get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.1 200").then(|| body.to_string())
}

/// Percent-encodes a PromQL query for a URL.
fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A Prometheus scraping `target` every second, killed on Drop.
struct Prometheus {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: gipam\n    static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .expect("write config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
            .spawn()
            .expect("prometheus runs (scripts/install-prometheus.sh installs it)");
        Prometheus {
            child,
            port,
            _dir: dir,
        }
    }

    /// The instant vector a query returns (empty while nothing is scraped).
    fn query(&self, q: &str) -> Vec<Value> {
        get(self.port, &format!("/api/v1/query?query={}", encode(q)))
            .and_then(|b| serde_json::from_str::<Value>(&b).ok())
            .and_then(|v| v["data"]["result"].as_array().cloned())
            .unwrap_or_default()
    }

    /// The one value `q` returns, once Prometheus has it.
    fn value(&self, q: &str) -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.query(q);
            if let [one] = r.as_slice()
                && let Some(v) = one["value"][1].as_str().and_then(|s| s.parse().ok())
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus has no single value for {q}: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn prometheus_reads_the_state_after_a_known_sequence() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let d = Daemon::start(&["--v4", "10.40.0.0/16", "--metrics-address", &metrics]);
    let mut c = d.client();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, v) = c
            .call(
                "IpamDriver.RequestPool",
                &json!({"AddressSpace":"LocalDefault","Pool":"","SubPool":"","Options":{},"V6":false}),
            )
            .expect("RequestPool");
        assert_eq!(status, 200, "{v}");
        ids.push(v["PoolID"].as_str().expect("id").to_string());
    }
    for _ in 0..2 {
        let (status, v) = c
            .call(
                "IpamDriver.RequestAddress",
                &json!({"PoolID":ids[0],"Address":"","Options":{}}),
            )
            .expect("RequestAddress");
        assert_eq!(status, 200, "{v}");
    }
    let (status, _) = c
        .call(
            "IpamDriver.ReleaseAddress",
            &json!({"PoolID":ids[0],"Address":"10.40.0.2"}),
        )
        .expect("ReleaseAddress");
    assert_eq!(status, 200);
    // Refused by the allocator: a pool nobody holds.
    let (status, _) = c
        .call(
            "IpamDriver.RequestAddress",
            &json!({"PoolID":"LocalDefault/10.41.0.0/24","Address":"","Options":{}}),
        )
        .expect("RequestAddress");
    assert_eq!(status, 500);

    let p = Prometheus::start(&metrics);
    assert_eq!(p.value(r#"up{job="gipam"}"#), 1.0);
    let pool = |m: &str, id: &str| p.value(&format!(r#"{m}{{pool="{id}"}}"#));
    // The gateway named in RequestPool's Data is leased with the pool.
    assert_eq!(pool("gipam_pool_used_addresses", &ids[0]), 2.0);
    assert_eq!(pool("gipam_pool_used_addresses", &ids[1]), 1.0);
    assert_eq!(pool("gipam_pool_addresses", &ids[0]), 254.0);
    assert_eq!(
        p.value(r#"gipam_main_pool_blocks{main_pool="10.40.0.0/16"}"#),
        2.0
    );
    let requests = |endpoint: &str, outcome: &str| {
        p.value(&format!(
            r#"gipam_requests_total{{endpoint="{endpoint}",outcome="{outcome}"}}"#
        ))
    };
    assert_eq!(requests("IpamDriver.RequestPool", "ok"), 2.0);
    assert_eq!(requests("IpamDriver.RequestAddress", "ok"), 2.0);
    assert_eq!(requests("IpamDriver.RequestAddress", "refused"), 1.0);
    assert_eq!(requests("IpamDriver.ReleaseAddress", "ok"), 1.0);
    assert_eq!(
        p.value(r#"gipam_request_duration_seconds_count{endpoint="IpamDriver.RequestAddress"}"#),
        3.0
    );
    // Five durable changes, plus the main pools and the ULA at start.
    assert!(p.value("gipam_store_fsync_duration_seconds_count") >= 5.0);
    assert!(p.value("gipam_store_journal_bytes") > 0.0);
    assert_eq!(p.value("gipam_store_errors_total"), 0.0);
}
