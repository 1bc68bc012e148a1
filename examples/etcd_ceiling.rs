//! The ceiling etcd puts under gipam's fleet mode: create-if-absent
//! transactions on fresh keys (`version(k) == 0` then `put k`), the
//! operation every fleet allocation makes, from 1, 16 and 64 concurrent
//! tasks. Prints one line per client count:
//!
//! ```text
//! etcd create-if-absent  clients=16  ops/s=3210  p50=4.5ms  p99=12.0ms
//! ```
//!
//! ```sh
//! ETCD_ENDPOINTS=http://127.0.0.1:P1,http://127.0.0.1:P2,http://127.0.0.1:P3 \
//!     CLIENTS=1,16,64 SECONDS=3 cargo run --release --example etcd_ceiling
//! ```
//!
//! `CONNECTIONS=shared` (the default) has every task use one
//! `etcd_client::Client` (cloned: one balanced HTTP/2 channel);
//! `CONNECTIONS=per-task` gives each task its own Client. Measured on 3
//! members on loopback (Debian's etcd 3.4.23, 2 cores shared with other
//! builds, load 1 to 6), neither won consistently: the first run on a fresh
//! cluster was the fastest whichever mode it used (shared 3,448/s at 64,
//! per-task 1,447/s at 64 on another fresh cluster) and later runs fell to
//! 400-800/s either way. Shared is the default: no slower within that noise,
//! one connection per member like the fleet code will hold. A later bench
//! can copy `measure` as it is. The keys written go under a fresh prefix and
//! are deleted at the end.

use std::error::Error;
use std::time::{Duration, Instant};

use etcd_client::{Client, Compare, CompareOp, DeleteOptions, Txn, TxnOp};

type Result<T> = std::result::Result<T, Box<dyn Error + Send + Sync>>;

/// Throughput and latency of one run.
pub struct Figures {
    pub clients: usize,
    pub ops: usize,
    pub failed: usize,
    pub ops_per_sec: f64,
    pub p50: Duration,
    pub p99: Duration,
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Runs `clients` tasks for `duration`, each making create-if-absent
/// transactions on fresh keys under `prefix` back to back, through
/// `shared` (cloned per task) or, when None, a Client of its own connected
/// to `endpoints`.
pub async fn measure(
    endpoints: &[String],
    shared: Option<&Client>,
    clients: usize,
    duration: Duration,
    prefix: &str,
) -> Result<Figures> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        let mut c = match shared {
            Some(c) => c.clone(),
            None => Client::connect(endpoints, None).await?,
        };
        // Connected (and the channel warm) before the clock starts.
        c.get("ceiling-warmup", None).await?;
        conns.push(c);
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::with_capacity(clients);
    for (t, mut c) in conns.into_iter().enumerate() {
        let prefix = format!("{prefix}c{clients}/t{t}/");
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut failed = 0usize;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let k = format!("{prefix}{n}");
                n += 1;
                let txn = Txn::new()
                    .when([Compare::version(k.as_str(), CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(k.as_str(), "x", None)]);
                let t0 = Instant::now();
                match c.txn(txn).await {
                    Ok(r) if r.succeeded() => lat.push(t0.elapsed()),
                    _ => failed += 1,
                }
            }
            (lat, failed)
        }));
    }
    let mut all = Vec::new();
    let mut failed = 0;
    for t in tasks {
        let (lat, f) = t.await?;
        all.extend(lat);
        failed += f;
    }
    let elapsed = start.elapsed();
    all.sort();
    Ok(Figures {
        clients,
        ops: all.len(),
        failed,
        ops_per_sec: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.50),
        p99: percentile(&all, 0.99),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let endpoints: Vec<String> = std::env::var("ETCD_ENDPOINTS")
        .map_err(|_| "set ETCD_ENDPOINTS (comma-separated etcd client URLs)")?
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let counts: Vec<usize> = std::env::var("CLIENTS")
        .unwrap_or_else(|_| "1,16,64".into())
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| format!("CLIENTS: {e}"))?;
    let seconds: f64 = std::env::var("SECONDS")
        .unwrap_or_else(|_| "3".into())
        .parse()
        .map_err(|e| format!("SECONDS: {e}"))?;
    let per_task = match std::env::var("CONNECTIONS").as_deref() {
        Ok("per-task") => true,
        Ok("shared") | Err(_) => false,
        Ok(other) => return Err(format!("CONNECTIONS={other}: shared or per-task").into()),
    };
    let mut client = Client::connect(&endpoints, None).await?;
    let prefix = format!(
        "/gipam-ceiling/{}-{}/",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos()
    );
    for &n in &counts {
        let shared = (!per_task).then_some(&client);
        let f = measure(
            &endpoints,
            shared,
            n.max(1),
            Duration::from_secs_f64(seconds),
            &prefix,
        )
        .await?;
        println!(
            "etcd create-if-absent  clients={}  ops/s={:.0}  p50={:.1}ms  p99={:.1}ms{}",
            f.clients,
            f.ops_per_sec,
            ms(f.p50),
            ms(f.p99),
            if f.failed > 0 {
                format!("  failed={}", f.failed)
            } else {
                String::new()
            }
        );
    }
    client
        .delete(prefix.as_str(), Some(DeleteOptions::new().with_prefix()))
        .await?;
    Ok(())
}
