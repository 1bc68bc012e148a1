//! The etcd fixture (tests/common/etcd.rs) against Debian's real etcd 3.4,
//! and the etcd-client behaviours the fleet code relies on: quorum loss and
//! recovery, range compares on mod_revision, TLS with client certificates
//! and passwords, and a watch from a compacted revision. Each test prints
//! what the client returned (run with --nocapture to read it); the asserts
//! are on behaviour, never on speed (only a generous "no hang" bound).

mod common;

use std::time::{Duration, Instant};

use common::etcd::Cluster;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, TlsOptions, Txn,
    TxnOp, WatchOptions,
};

/// A key prefix no other test (or run) uses.
fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("/gipam-test/{name}/{}-{nanos}/", std::process::id())
}

/// The end of the range of keys starting with `prefix` (its last byte + 1).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

/// Gets `key`, retrying for up to 20 s: the client's balancer keeps
/// endpoints that were down, and a request sent to one fails (once, with
/// its stale connect error) even when the others answer.
async fn get_value(client: &mut Client, key: &str) -> Option<Vec<u8>> {
    let start = Instant::now();
    loop {
        match client.get(key, None).await {
            Ok(resp) => return resp.kvs().first().map(|kv| kv.value().to_vec()),
            Err(e) => {
                assert!(start.elapsed() < Duration::from_secs(20), "get {key}: {e}");
                println!("get {key} failed, retrying: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Retries `put` until it succeeds or `limit` passes; returns the time it
/// took and the errors seen on the way.
async fn put_until_ok(
    client: &mut Client,
    key: &str,
    value: &str,
    limit: Duration,
) -> (Duration, Vec<String>) {
    let start = Instant::now();
    let mut errors = Vec::new();
    loop {
        match client.put(key, value, None).await {
            Ok(_) => return (start.elapsed(), errors),
            Err(e) => {
                errors.push(format!("{:?}: {e}", start.elapsed()));
                assert!(
                    start.elapsed() < limit,
                    "put {key} still failing after {limit:?}: {errors:#?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test]
async fn three_members_survive_one_loss_fail_on_two_and_recover() {
    let mut cluster = Cluster::start(3);
    assert_eq!(cluster.endpoints().len(), 3);
    for e in cluster.endpoints() {
        assert!(e.starts_with("http://127.0.0.1:"), "{e}");
        assert!(!e.ends_with(":2379") && !e.ends_with(":2380"), "{e}");
    }
    let p = unique("quorum");
    let options = ConnectOptions::new()
        .with_timeout(Duration::from_secs(2))
        .with_connect_timeout(Duration::from_secs(2))
        .with_require_leader(true);
    let mut client = cluster.client_with(options).await;
    client
        .put(format!("{p}a"), "1", None)
        .await
        .expect("put on a healthy cluster");
    assert_eq!(
        get_value(&mut client, &format!("{p}a")).await.as_deref(),
        Some(&b"1"[..])
    );

    // Kill the leader (the worst single loss): writes go on once the other
    // two elected a new one.
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    let (took, errors) =
        put_until_ok(&mut client, &format!("{p}b"), "2", Duration::from_secs(20)).await;
    println!(
        "after killing the leader m{leader}: first put ok after {took:?}; errors before: {errors:#?}"
    );
    assert_eq!(
        get_value(&mut client, &format!("{p}b")).await.as_deref(),
        Some(&b"2"[..])
    );
    // With quorum but one endpoint dead, does the balancer still send
    // requests to it? Count the failures of 30 puts (observed, not asserted).
    let mut failures = Vec::new();
    for n in 0..30 {
        if let Err(e) = client.put(format!("{p}n{n}"), "x", None).await {
            failures.push(e.to_string());
        }
    }
    println!(
        "30 puts with m{leader} dead: {} failed: {failures:#?}",
        failures.len()
    );

    // Kill a second member: no quorum, writes fail (and do not hang). The
    // balancer picks any of the three endpoints, so the errors differ: the
    // dead ones fail at once with transport errors, the survivor after the
    // request timeout or with "no leader". Several attempts show both.
    let second = (0..3).find(|&i| cluster.is_running(i)).expect("a member");
    cluster.kill(second);
    for attempt in 0..6 {
        let start = Instant::now();
        let result = tokio::time::timeout(
            Duration::from_secs(20),
            client.put(format!("{p}c{attempt}"), "3", None),
        )
        .await;
        let elapsed = start.elapsed();
        match &result {
            Ok(Ok(_)) => panic!("a put succeeded with two of three members dead"),
            Ok(Err(e)) => println!("put {attempt} without quorum failed after {elapsed:?}: {e}"),
            Err(_) => panic!("put without quorum hung for 20 s"),
        }
    }
    for attempt in 0..3 {
        let start = Instant::now();
        let read =
            tokio::time::timeout(Duration::from_secs(20), client.get(format!("{p}a"), None)).await;
        match &read {
            Ok(Ok(_)) => panic!("a linearizable get succeeded without quorum"),
            Ok(Err(e)) => println!(
                "get {attempt} without quorum failed after {:?}: {e}",
                start.elapsed()
            ),
            Err(_) => panic!("get without quorum hung for 20 s"),
        }
    }

    // Both back: the same client object writes again.
    cluster.restart(leader);
    cluster.restart(second);
    let (took, errors) =
        put_until_ok(&mut client, &format!("{p}d"), "4", Duration::from_secs(30)).await;
    println!(
        "after restarting m{leader} and m{second}: the same client's put ok after {took:?}; errors before: {errors:#?}"
    );
    for k in ["a", "b", "d"] {
        assert!(
            get_value(&mut client, &format!("{p}{k}")).await.is_some(),
            "{p}{k} kept"
        );
    }
    // The puts that failed without quorum are ambiguous: one that timed
    // out on the client may still have been appended by the survivor and
    // committed once the others came back. Observed, not asserted.
    let r = client
        .get(format!("{p}c"), Some(GetOptions::new().with_prefix()))
        .await;
    let applied: Vec<String> = r
        .map(|r| {
            r.kvs()
                .iter()
                .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
                .collect()
        })
        .unwrap_or_default();
    println!("puts that failed without quorum but were applied after recovery: {applied:?}");
}

#[tokio::test]
async fn stop_all_and_start_all_keep_the_data_and_the_client_recovers() {
    let mut cluster = Cluster::start(3);
    let p = unique("stopall");
    let mut client = cluster.client().await;
    client.put(format!("{p}k"), "v", None).await.expect("put");
    cluster.stop_all();
    assert!((0..3).all(|i| !cluster.is_running(i)));
    cluster.start_all();
    let (took, errors) = put_until_ok(
        &mut client,
        &format!("{p}k2"),
        "v2",
        Duration::from_secs(30),
    )
    .await;
    println!(
        "after stop_all + start_all: the old client's put ok after {took:?}; errors before: {errors:#?}"
    );
    assert_eq!(
        get_value(&mut client, &format!("{p}k")).await.as_deref(),
        Some(&b"v"[..])
    );
    // One member stopped and restarted alone (the others keep quorum).
    cluster.stop(1);
    cluster.restart(1);
    let mut fresh = cluster.client().await;
    assert_eq!(
        get_value(&mut fresh, &format!("{p}k2")).await.as_deref(),
        Some(&b"v2"[..])
    );
}

/// `Compare::mod_revision(start, Less, rev + 1).with_range(end)` holds when
/// every key now in [start, end) was last modified at or before `rev`.
async fn range_unchanged_since(client: &mut Client, prefix: &str, rev: i64) -> bool {
    let txn = Txn::new()
        .when([
            Compare::mod_revision(prefix, CompareOp::Less, rev + 1).with_range(prefix_end(prefix))
        ])
        .and_then([TxnOp::get(prefix, Some(GetOptions::new().with_prefix()))]);
    client.txn(txn).await.expect("txn").succeeded()
}

#[tokio::test]
async fn range_compare_on_mod_revision() {
    let cluster = Cluster::start(1);
    let mut client = cluster.client().await;
    let p = unique("range");
    client.put(format!("{p}a"), "1", None).await.expect("put");
    let r = client.put(format!("{p}b"), "1", None).await.expect("put");
    let rev = r.header().expect("header").revision();
    assert!(
        range_unchanged_since(&mut client, &p, rev).await,
        "nothing changed since rev"
    );
    assert!(
        !range_unchanged_since(&mut client, &p, rev - 1).await,
        "b was put at rev"
    );

    // A key created in the range after rev: the compare fails.
    let r = client.put(format!("{p}c"), "1", None).await.expect("put");
    let rev_c = r.header().expect("header").revision();
    assert!(
        !range_unchanged_since(&mut client, &p, rev).await,
        "c created after rev"
    );
    assert!(range_unchanged_since(&mut client, &p, rev_c).await);

    // A key changed in the range after rev: fails too.
    let r = client.put(format!("{p}a"), "2", None).await.expect("put");
    let rev_a = r.header().expect("header").revision();
    assert!(
        !range_unchanged_since(&mut client, &p, rev_c).await,
        "a modified after rev_c"
    );

    // A key deleted after rev: the compare does NOT see it (only the keys
    // that exist now are compared) and succeeds.
    let d = client.delete(format!("{p}b"), None).await.expect("delete");
    assert_eq!(d.deleted(), 1);
    let rev_del = d.header().expect("header").revision();
    assert!(rev_del > rev_a);
    let after_delete = range_unchanged_since(&mut client, &p, rev_a).await;
    println!(
        "compare over the range at rev_a after a delete at {rev_del}: succeeded={after_delete}"
    );
    assert!(
        after_delete,
        "a delete is invisible to a mod_revision range compare"
    );

    // A key outside the range (the prefix's end key itself) does not count.
    let outside = String::from_utf8(prefix_end(&p)).expect("utf8");
    client.put(outside.as_str(), "x", None).await.expect("put");
    assert!(
        range_unchanged_since(&mut client, &p, rev_a).await,
        "end is exclusive"
    );

    // An empty range: succeeds at any revision, even 0 (etcd compares a
    // missing key as a zero KeyValue: mod_revision 0 < rev + 1).
    let empty = unique("empty");
    assert!(range_unchanged_since(&mut client, &empty, 0).await);
    assert!(range_unchanged_since(&mut client, &empty, rev).await);
    // with_prefix() is the same range.
    let txn = Txn::new()
        .when([Compare::mod_revision(p.as_str(), CompareOp::Less, rev_a + 1).with_prefix()]);
    assert!(client.txn(txn).await.expect("txn").succeeded());
    let txn = Txn::new()
        .when([Compare::mod_revision(p.as_str(), CompareOp::Less, rev_c + 1).with_prefix()]);
    assert!(!client.txn(txn).await.expect("txn").succeeded());
}

#[tokio::test]
async fn create_if_absent_succeeds_once() {
    let cluster = Cluster::start(1);
    let mut client = cluster.client().await;
    let k = format!("{}k", unique("cia"));
    let txn = || {
        Txn::new()
            .when([Compare::version(k.as_str(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(k.as_str(), "v", None)])
    };
    assert!(client.txn(txn()).await.expect("txn").succeeded());
    assert!(!client.txn(txn()).await.expect("txn").succeeded());
}

#[tokio::test]
async fn tls_client_certificates_and_password_auth() {
    let mut cluster = Cluster::start_tls(3);
    for e in cluster.endpoints() {
        assert!(e.starts_with("https://127.0.0.1:"), "{e}");
    }
    for p in [cluster.ca(), cluster.client_cert(), cluster.client_key()] {
        assert!(p.exists(), "{}", p.display());
    }
    let p = unique("tls");

    // Before auth: the client certificate is enough.
    let mut c = cluster.client().await;
    c.put(format!("{p}before"), "1", None)
        .await
        .expect("put over TLS");

    let _ = cluster.enable_auth("gipam", "s3cret");
    let read = |path: std::path::PathBuf| std::fs::read(path).expect("read pem");
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(cluster.ca())))
        .identity(Identity::from_pem(
            read(cluster.client_cert()),
            read(cluster.client_key()),
        ));
    let options = ConnectOptions::new()
        .with_tls(tls.clone())
        .with_user("gipam", "s3cret");
    let mut client = Client::connect(cluster.endpoints(), Some(options))
        .await
        .expect("connect with TLS and user/password");
    client
        .put(format!("{p}k"), "v", None)
        .await
        .expect("put as gipam");
    assert_eq!(
        get_value(&mut client, &format!("{p}k")).await.as_deref(),
        Some(&b"v"[..])
    );

    // A wrong password: connect itself authenticates, and fails.
    let wrong = ConnectOptions::new()
        .with_tls(tls.clone())
        .with_user("gipam", "wrong");
    match Client::connect(cluster.endpoints(), Some(wrong)).await {
        Ok(mut c) => {
            let r = c.put(format!("{p}wrong"), "v", None).await;
            panic!("connect with a wrong password succeeded; put: {r:?}");
        }
        Err(e) => {
            println!("wrong password: connect failed: {e} ({e:?})");
            assert!(e.to_string().contains("authentication failed"), "{e}");
        }
    }

    // No password, only the certificate: etcd 3.4 takes the certificate's
    // CN (gipam, a user now) as the user.
    let cert_only = ConnectOptions::new().with_tls(tls.clone());
    let mut c = Client::connect(cluster.endpoints(), Some(cert_only))
        .await
        .expect("connect with the certificate only");
    let r = c.put(format!("{p}cn"), "v", None).await;
    println!("certificate only (CN=gipam), auth on, no password: put -> {r:?}");

    // Without a client certificate the TLS handshake is refused.
    let no_identity = ConnectOptions::new()
        .with_tls(TlsOptions::new().ca_certificate(Certificate::from_pem(read(cluster.ca()))))
        .with_user("gipam", "s3cret")
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(2));
    match Client::connect(cluster.endpoints(), Some(no_identity)).await {
        Ok(mut c) => {
            let r = c.put(format!("{p}noid"), "v", None).await;
            println!("no client certificate: connect ok, put -> {r:?}");
            assert!(r.is_err(), "a put without a client certificate");
        }
        Err(e) => println!("no client certificate: connect failed: {e} ({e:?})"),
    }

    // Plain http to an https member: refused.
    let plain = cluster.endpoints()[0].replacen("https://", "http://", 1);
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        let mut c = Client::connect(
            [plain.as_str()],
            Some(ConnectOptions::new().with_timeout(Duration::from_secs(2))),
        )
        .await?;
        c.put(format!("{p}plain"), "v", None).await
    })
    .await
    .expect("no hang");
    println!("plain http to the TLS member: {r:?}");
    assert!(r.is_err());
}

#[tokio::test]
async fn auth_on_a_plain_cluster() {
    let mut cluster = Cluster::start(1);
    let p = unique("auth");
    let options = cluster.enable_auth_on("fleet", "pw", &p);
    let auth = cluster.auth().expect("auth on").clone();
    assert_eq!(
        (auth.user.as_str(), auth.password.as_str()),
        ("fleet", "pw")
    );
    let mut client = Client::connect(cluster.endpoints(), Some(options))
        .await
        .expect("connect as fleet");
    client
        .put(format!("{p}k"), "v", None)
        .await
        .expect("put inside the prefix");
    let outside = client.put("/elsewhere", "v", None).await;
    println!("put outside the granted prefix: {outside:?}");
    assert!(outside.is_err());

    let mut anonymous = Client::connect(cluster.endpoints(), None)
        .await
        .expect("connect without a user");
    let r = anonymous.put(format!("{p}anon"), "v", None).await;
    println!("put without a user, auth on: {r:?}");
    assert!(r.is_err());
    // The fixture's etcdctl still works (as root) once auth is on.
    assert!(cluster.revision() > 0);
}

#[tokio::test]
async fn watch_from_a_compacted_revision() {
    let cluster = Cluster::start(1);
    let mut client = cluster.client().await;
    let k = format!("{}k", unique("watch"));
    let first = client.put(k.as_str(), "1", None).await.expect("put");
    let old = first.header().expect("header").revision();
    for v in ["2", "3", "4"] {
        client.put(k.as_str(), v, None).await.expect("put");
    }
    let compacted = cluster.compact();
    assert!(compacted > old);

    // Watching from a revision still there works.
    let mut fine = client
        .watch(
            k.as_str(),
            Some(WatchOptions::new().with_start_revision(compacted)),
        )
        .await
        .expect("watch from the compaction revision");
    let created = fine.message().await.expect("message").expect("a response");
    assert!(created.created());

    let start = Instant::now();
    let stream = client
        .watch(
            k.as_str(),
            Some(WatchOptions::new().with_start_revision(old)),
        )
        .await;
    let mut stream = match stream {
        Ok(s) => s,
        Err(e) => panic!("watch() itself returned Err: {e} ({e:?})"),
    };
    let mut compact_seen = None;
    for n in 0..5 {
        let m = tokio::time::timeout(Duration::from_secs(20), stream.message())
            .await
            .expect("watch response within 20 s");
        match m {
            Ok(Some(resp)) => {
                println!(
                    "watch from compacted rev {old} (compacted at {compacted}), message {n} after {:?}: watch_id={} created={} canceled={} compact_revision={} cancel_reason={:?} events={}",
                    start.elapsed(),
                    resp.watch_id(),
                    resp.created(),
                    resp.canceled(),
                    resp.compact_revision(),
                    resp.cancel_reason(),
                    resp.events().len()
                );
                if resp.compact_revision() > 0 {
                    compact_seen = Some((resp.canceled(), resp.compact_revision()));
                    break;
                }
            }
            Ok(None) => {
                println!("message {n}: the stream ended");
                break;
            }
            Err(e) => {
                println!("message {n}: Err on the stream: {e} ({e:?})");
                break;
            }
        }
    }
    let (canceled, rev) = compact_seen.expect("a response with compact_revision > 0");
    assert!(canceled, "the compacted watch is canceled");
    assert_eq!(rev, compacted);
    // The same stream can take another watch afterwards.
    stream
        .watch(
            k.as_str(),
            Some(WatchOptions::new().with_start_revision(compacted + 1)),
        )
        .await
        .expect("another watch on the same stream");
    client.put(k.as_str(), "5", None).await.expect("put");
    let next = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.message().await {
                Ok(Some(r)) if !r.events().is_empty() => return Some(r),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("an event within 20 s");
    let next = next.expect("an event on the re-created watch");
    println!(
        "re-created watch on the same stream: watch_id={} events={}",
        next.watch_id(),
        next.events().len()
    );
}

#[test]
fn fixture_works_from_a_sync_test_and_cleans_up() {
    let dir;
    let pids;
    {
        let mut cluster = Cluster::start(3);
        dir = cluster.dir().to_path_buf();
        assert_eq!(cluster.endpoints_csv().split(',').count(), 3);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let p = unique("sync");
        rt.block_on(async {
            let mut c = cluster.client().await;
            c.put(format!("{p}k"), "v", None).await.expect("put");
        });
        let rev = cluster.compact();
        assert!(rev > 1);
        cluster.kill(2);
        assert!(!cluster.is_running(2));
        cluster.restart(2);
        assert!(cluster.is_running(2));
        assert!(dir.exists());
        pids = (0..3).filter_map(|i| cluster.pid(i)).collect::<Vec<_>>();
        assert_eq!(pids.len(), 3);
    }
    assert!(!dir.exists(), "Drop removes {}", dir.display());
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| !c.contains("etcd"))
                    .unwrap_or(true),
            "etcd pid {pid} still runs"
        );
    }
}
