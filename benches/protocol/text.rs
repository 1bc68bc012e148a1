//! What the text of a durable RequestAddress costs to write: its journal
//! line (written on the journal thread, the one serial stage of every
//! durable change) and the address in its reply. Each is timed the way
//! gipam writes it (by hand, `gipam::ipam::text`) and the way serde and
//! `Display` would, on the same values, in the same run. The bench checks
//! the two write the same bytes before it times anything.

use std::io::Write;
use std::time::{Duration, Instant};

use gipam::ipam::{Change, PoolId};
use gipam::store::encode_journal_line;
use ipnet::IpNet;

use crate::Plan;

/// The line the way it was written before: serde and `write!`.
fn serde_line(buf: &mut Vec<u8>, seq: u64, change: &Change) {
    let start = buf.len();
    buf.extend_from_slice(b"00000000 ");
    let body = buf.len();
    let _ = write!(buf, "{seq} ");
    let _ = serde_json::to_writer(&mut *buf, change);
    let crc = crc32fast::hash(&buf[body..]);
    let _ = write!(&mut buf[start..start + 8], "{crc:08x}");
    buf.push(b'\n');
}

/// The fastest of three timings of `n` calls, per call.
fn per_call(n: u64, mut f: impl FnMut(u64)) -> Duration {
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for i in 0..n {
                f(i);
            }
            t.elapsed() / n as u32
        })
        .min()
        .unwrap_or_default()
}

pub fn text(plan: &Plan) {
    println!("\n## Text of one durable RequestAddress (hand-written vs serde/Display)\n");
    let pool: PoolId = "LocalDefault/fd00:6a:7e::/64".parse().expect("pool id");
    let address = "fd00:6a:7e::1:2f3a".parse().expect("address");
    let change = Change::AddAddress {
        pool: pool.clone(),
        address,
        gateway: false,
        dynamic: true,
        mac: None,
        name: Some("web-1".into()),
    };
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    encode_journal_line(&mut fast, 7, &change);
    serde_line(&mut slow, 7, &change);
    assert_eq!(fast, slow, "the journal line differs from serde's");
    let net = IpNet::new(address, 64).expect("net");
    assert_eq!(gipam::ipam::text::net_string(&net), net.to_string());

    let n = if plan.quick { 100_000 } else { 1_000_000 };
    let mut buf = Vec::with_capacity(256);
    let line_fast = per_call(n, |i| {
        buf.clear();
        encode_journal_line(&mut buf, i, &change);
    });
    let line_serde = per_call(n, |i| {
        buf.clear();
        serde_line(&mut buf, i, &change);
    });
    let mut len = 0;
    let reply_fast = per_call(n, |_| len += gipam::ipam::text::net_string(&net).len());
    let reply_display = per_call(n, |_| len += net.to_string().len());
    std::hint::black_box(len);
    println!("| what | hand-written | serde / Display | ratio |");
    println!("|---|---:|---:|---:|");
    for (what, a, b) in [
        ("journal line of an AddAddress", line_fast, line_serde),
        ("address/len of the reply", reply_fast, reply_display),
    ] {
        println!(
            "| {what} | {} ns | {} ns | {:.1}x |",
            a.as_nanos(),
            b.as_nanos(),
            b.as_secs_f64() / a.as_secs_f64().max(1e-12)
        );
    }
}
