//! A real etcd cluster for integration tests: `n` members of Debian's
//! `/usr/bin/etcd` (3.4) on 127.0.0.1, on free ports found by binding port 0
//! (never 2379/2380, where a system etcd may run), each with its own data
//! dir and log file in one temporary directory. Members are killed and the
//! directory removed on Drop, also when the test panics.
//!
//! Everything but [`Cluster::client`] is synchronous and talks to etcd
//! through `etcdctl` subprocesses, so the fixture works the same from a
//! plain `#[test]` and from a `#[tokio::test]` (no runtime is nested). The
//! blocking calls block the calling thread; a current-thread test runtime
//! simply does not run its tasks meanwhile.
//!
//! `Cluster::start_tls(n)` makes a CA, a server certificate (IP 127.0.0.1,
//! DNS localhost) and a client certificate (CN=gipam) with `openssl`; the
//! members serve https with `--client-cert-auth` (peers stay plain http on
//! loopback). [`Cluster::enable_auth`] adds root and a user and turns auth on.
#![allow(dead_code)]

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

pub const ETCD: &str = "/usr/bin/etcd";
pub const ETCDCTL: &str = "/usr/bin/etcdctl";
/// How long `start`, `restart` and `start_all` wait for the cluster.
pub const READY_DEADLINE: Duration = Duration::from_secs(30);

static SEQ: AtomicU32 = AtomicU32::new(0);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// Paths of the certificates a TLS cluster was made with.
#[derive(Clone, Debug)]
pub struct Certs {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

/// The credentials [`Cluster::enable_auth`] created.
#[derive(Clone, Debug)]
pub struct Auth {
    pub root_password: String,
    pub user: String,
    pub password: String,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    token: String,
    members: Vec<Member>,
    certs: Option<Certs>,
    auth: Option<Auth>,
}

impl Cluster {
    /// Starts `n` members on plain http and waits until all of them answer.
    pub fn start(n: usize) -> Cluster {
        Cluster::launch(n, false)
    }

    /// Starts `n` members serving https with client certificate auth.
    pub fn start_tls(n: usize) -> Cluster {
        Cluster::launch(n, true)
    }

    fn launch(n: usize, tls: bool) -> Cluster {
        assert!(n > 0, "a cluster needs at least one member");
        assert!(
            Path::new(ETCD).exists() && Path::new(ETCDCTL).exists(),
            "{ETCD} and {ETCDCTL} are needed (apt-get install etcd-server etcd-client)"
        );
        // A port found free may be taken by someone else before etcd binds
        // it: start again on new ports when a member cannot bind.
        let mut last = String::new();
        for _ in 0..3 {
            let mut c = Cluster::configure(n, tls);
            for i in 0..n {
                c.spawn(i, "new");
            }
            match c.wait_ready(&(0..n).collect::<Vec<_>>()) {
                Ok(()) => return c,
                Err(e) => {
                    let report = format!("{e}\n{}", c.logs());
                    if !report.contains("address already in use") {
                        panic!("etcd cluster did not become ready: {report}");
                    }
                    last = report;
                }
            }
        }
        panic!("etcd cluster did not become ready (ports kept being taken): {last}");
    }

    fn configure(n: usize, tls: bool) -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("gipam-etcd-")
            .tempdir()
            .expect("temp dir for etcd");
        let ports = free_ports(2 * n);
        let token = format!(
            "gipam-test-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: ports[2 * i],
                peer_port: ports[2 * i + 1],
                data_dir: dir.path().join(format!("m{i}.data")),
                log: dir.path().join(format!("m{i}.log")),
                child: None,
            })
            .collect();
        let certs = tls.then(|| make_certs(dir.path()));
        Cluster {
            dir,
            token,
            members,
            certs,
            auth: None,
        }
    }

    fn scheme(&self) -> &'static str {
        if self.certs.is_some() {
            "https"
        } else {
            "http"
        }
    }

    fn endpoint(&self, i: usize) -> String {
        format!(
            "{}://127.0.0.1:{}",
            self.scheme(),
            self.members[i].client_port
        )
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial_cluster = self
            .members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let client_url = self.endpoint(i);
        let m = &self.members[i];
        let peer_url = format!("http://127.0.0.1:{}", m.peer_port);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let mut cmd = Command::new(ETCD);
        clean_env(&mut cmd);
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(&client_url)
            .arg("--advertise-client-urls")
            .arg(&client_url)
            .arg("--listen-peer-urls")
            .arg(&peer_url)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer_url)
            .arg("--initial-cluster")
            .arg(&initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--logger")
            .arg("zap")
            .arg("--log-outputs")
            .arg("stderr");
        if let Some(c) = &self.certs {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&c.ca)
                .arg("--cert-file")
                .arg(&c.server_cert)
                .arg("--key-file")
                .arg(&c.server_key);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("etcd log file"))
            .stderr(log)
            .spawn()
            .expect("spawn /usr/bin/etcd");
        self.members[i].child = Some(child);
    }

    /// Waits until `etcdctl endpoint health` succeeds on the members `which`
    /// (a linearizable read through each of them, so there is a leader).
    fn wait_ready(&mut self, which: &[usize]) -> Result<(), String> {
        let endpoints = which
            .iter()
            .map(|&i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",");
        let deadline = Instant::now() + READY_DEADLINE;
        let mut last = String::new();
        while Instant::now() < deadline {
            for &i in which {
                if let Some(c) = self.members[i].child.as_mut()
                    && let Ok(Some(status)) = c.try_wait()
                {
                    self.members[i].child = None;
                    return Err(format!("member m{i} exited: {status}"));
                }
            }
            match self.etcdctl_at(&endpoints, &["endpoint", "health"]) {
                Ok(_) => return Ok(()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!(
            "not healthy within {READY_DEADLINE:?} ({endpoints}): {last}"
        ))
    }

    fn ready_or_panic(&mut self, which: &[usize]) {
        if let Err(e) = self.wait_ready(which) {
            panic!("etcd cluster not ready: {e}\n{}", self.logs());
        }
    }

    /// The last lines of every member's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for m in &self.members {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(30)..];
            out.push_str(&format!(
                "--- {} ({}) last {} lines:\n{}\n",
                m.name,
                m.log.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Client URLs, `http://127.0.0.1:P` (`https://` on a TLS cluster).
    pub fn endpoints(&self) -> Vec<String> {
        (0..self.members.len()).map(|i| self.endpoint(i)).collect()
    }

    pub fn endpoints_csv(&self) -> String {
        self.endpoints().join(",")
    }

    /// Member `i`'s client URL.
    pub fn endpoint_of(&self, i: usize) -> String {
        self.endpoint(i)
    }

    /// The process id of member `i` (None when it is not running).
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.members[i].child.as_ref().map(Child::id)
    }

    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// SIGKILL of member `i` (its own pid), and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM of member `i` and waits for it to exit (SIGKILL after 10 s).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(c.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts member `i` again (same data dir and flags,
    /// `--initial-cluster-state existing`). Waits until it is healthy when
    /// the running members make a quorum; otherwise (the others are down
    /// too) only until its client port accepts connections.
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i, "existing");
        let running = (0..self.members.len())
            .filter(|&j| self.is_running(j))
            .count();
        if running > self.members.len() / 2 {
            self.ready_or_panic(&[i]);
        } else {
            let port = self.members[i].client_port;
            let deadline = Instant::now() + READY_DEADLINE;
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                if Instant::now() > deadline {
                    panic!(
                        "m{i} does not listen on {port} after restart\n{}",
                        self.logs()
                    );
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// SIGTERM of every member.
    pub fn stop_all(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }

    /// Starts every member that is not running and waits until all answer.
    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if !self.is_running(i) {
                self.spawn(i, "existing");
            }
        }
        self.ready_or_panic(&(0..self.members.len()).collect::<Vec<_>>());
    }

    /// The index of the member that is leader now, as the running members
    /// see it (None when they do not agree on one or none answers).
    pub fn leader(&self) -> Option<usize> {
        let running: Vec<usize> = (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .collect();
        let endpoints = running
            .iter()
            .map(|&i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",");
        let out = self
            .etcdctl_at(&endpoints, &["endpoint", "status", "-w", "json"])
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
        let statuses = v.as_array()?;
        let leader = statuses.first()?["Status"]["leader"].as_u64()?;
        // The entry whose own member id is the leader's.
        statuses.iter().zip(&running).find_map(|(s, &i)| {
            (s["Status"]["header"]["member_id"].as_u64() == Some(leader)).then_some(i)
        })
    }

    /// The cluster's current revision.
    pub fn revision(&self) -> i64 {
        let out = self
            .etcdctl(&["endpoint", "status", "-w", "json"])
            .unwrap_or_else(|e| panic!("endpoint status: {e}\n{}", self.logs()));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
        v.as_array()
            .and_then(|a| {
                a.iter()
                    .filter_map(|s| s["Status"]["header"]["revision"].as_i64())
                    .max()
            })
            .expect("a revision in etcdctl endpoint status")
    }

    /// Compacts the history at the current revision (physically: it has
    /// happened when this returns) and returns that revision.
    pub fn compact(&self) -> i64 {
        let rev = self.revision();
        if let Err(e) = self.etcdctl(&["compaction", "--physical", &rev.to_string()]) {
            panic!("compaction {rev}: {e}\n{}", self.logs());
        }
        rev
    }

    /// CA, server and client certificate paths of a TLS cluster.
    pub fn certs(&self) -> Option<&Certs> {
        self.certs.as_ref()
    }

    pub fn ca(&self) -> PathBuf {
        self.tls_certs().ca.clone()
    }

    pub fn client_cert(&self) -> PathBuf {
        self.tls_certs().client_cert.clone()
    }

    pub fn client_key(&self) -> PathBuf {
        self.tls_certs().client_key.clone()
    }

    fn tls_certs(&self) -> &Certs {
        self.certs
            .as_ref()
            .expect("certificates exist on a cluster made with Cluster::start_tls")
    }

    /// The TLS options a client of a TLS cluster needs (the CA and the
    /// CN=gipam client identity); None on a plain cluster.
    pub fn tls_options(&self) -> Option<TlsOptions> {
        let c = self.certs.as_ref()?;
        let read = |p: &Path| std::fs::read(p).expect("read certificate");
        Some(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(read(&c.ca)))
                .identity(Identity::from_pem(
                    read(&c.client_cert),
                    read(&c.client_key),
                )),
        )
    }

    /// Options for a client of this cluster: TLS when it is a TLS cluster,
    /// the user of [`Cluster::enable_auth`] when auth is on.
    pub fn connect_options(&self) -> ConnectOptions {
        let mut o = ConnectOptions::new();
        if let Some(tls) = self.tls_options() {
            o = o.with_tls(tls);
        }
        if let Some(a) = &self.auth {
            o = o.with_user(a.user.clone(), a.password.clone());
        }
        o
    }

    /// A client of all members with [`Cluster::connect_options`].
    pub async fn client(&self) -> Client {
        self.client_with(self.connect_options()).await
    }

    /// A client of all members with the given options.
    pub async fn client_with(&self, options: ConnectOptions) -> Client {
        Client::connect(self.endpoints(), Some(options))
            .await
            .unwrap_or_else(|e| panic!("connect to etcd {}: {e}", self.endpoints_csv()))
    }

    /// Adds root and `user` (role `user`-rw with readwrite on the whole
    /// keyspace) and turns auth on. Returns the options a client of `user`
    /// needs (TLS included on a TLS cluster).
    pub fn enable_auth(&mut self, user: &str, password: &str) -> ConnectOptions {
        self.enable_auth_on(user, password, "")
    }

    /// Like [`Cluster::enable_auth`], with readwrite on keys starting with
    /// `prefix` only (`""`: the whole keyspace). Can be called again to add
    /// more users once auth is on.
    pub fn enable_auth_on(&mut self, user: &str, password: &str, prefix: &str) -> ConnectOptions {
        let role = format!("{user}-rw");
        let run = |c: &Cluster, args: &[&str]| {
            if let Err(e) = c.etcdctl(args) {
                panic!("etcdctl {args:?}: {e}");
            }
        };
        if self.auth.is_none() {
            let root_password = format!("root-{}", self.token);
            run(self, &["user", "add", &format!("root:{root_password}")]);
            run(self, &["user", "grant-role", "root", "root"]);
            run(self, &["user", "add", &format!("{user}:{password}")]);
            self.grant(&role, user, prefix);
            run(self, &["auth", "enable"]);
            self.auth = Some(Auth {
                root_password,
                user: user.to_string(),
                password: password.to_string(),
            });
        } else {
            run(self, &["user", "add", &format!("{user}:{password}")]);
            self.grant(&role, user, prefix);
            if let Some(a) = self.auth.as_mut() {
                a.user = user.to_string();
                a.password = password.to_string();
            }
        }
        self.connect_options()
    }

    fn grant(&self, role: &str, user: &str, prefix: &str) {
        let mut steps: Vec<Vec<&str>> = vec![vec!["role", "add", role]];
        if prefix.is_empty() {
            // key "" --from-key: every key.
            steps.push(vec![
                "role",
                "grant-permission",
                role,
                "readwrite",
                "--from-key",
                "",
            ]);
        } else {
            steps.push(vec![
                "role",
                "grant-permission",
                role,
                "readwrite",
                "--prefix",
                prefix,
            ]);
        }
        steps.push(vec!["user", "grant-role", user, role]);
        for args in steps {
            if let Err(e) = self.etcdctl(&args) {
                panic!("etcdctl {args:?}: {e}");
            }
        }
    }

    /// The credentials of [`Cluster::enable_auth`], when auth is on.
    pub fn auth(&self) -> Option<&Auth> {
        self.auth.as_ref()
    }

    /// Runs `etcdctl ARGS` against the running members (with the
    /// certificates and the root user as needed); Err has its stderr.
    pub fn etcdctl(&self, args: &[&str]) -> Result<Output, String> {
        let endpoints = (0..self.members.len())
            .filter(|&i| self.is_running(i))
            .map(|i| self.endpoint(i))
            .collect::<Vec<_>>()
            .join(",");
        self.etcdctl_at(&endpoints, args)
    }

    fn etcdctl_at(&self, endpoints: &str, args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new(ETCDCTL);
        clean_env(&mut cmd);
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={endpoints}"))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=3s");
        if let Some(c) = &self.certs {
            cmd.arg(format!("--cacert={}", c.ca.display()))
                .arg(format!("--cert={}", c.client_cert.display()))
                .arg(format!("--key={}", c.client_key.display()));
        }
        if let Some(a) = &self.auth {
            cmd.arg(format!("--user=root:{}", a.root_password));
        }
        cmd.args(args);
        run(cmd, Duration::from_secs(15))
    }

    /// The temporary directory holding data dirs, logs and certificates.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// `count` distinct free loopback ports (bound together, then released).
fn free_ports(count: usize) -> Vec<u16> {
    // Never the same port twice in one test process: a cluster that is
    // stopped and started again (stop_all, restart) gets its ports back
    // only if no other test's cluster took them meanwhile.
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|p| p.into_inner());
    let mut held = Vec::new();
    while held.len() < count {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let port = l.local_addr().expect("local addr").port();
        if port != 2379 && port != 2380 && !given.contains(&port) {
            given.push(port);
            held.push((port, l));
        }
    }
    held.into_iter().map(|(p, _)| p).collect()
}

/// etcd and etcdctl read ETCD_* / ETCDCTL_* variables as flags: none of the
/// caller's may leak in.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("ETCD_") || k.starts_with("ETCDCTL_") {
            cmd.env_remove(k.as_ref());
        }
    }
}

/// Runs `cmd`, killing it (by its own pid) after `limit`; Err unless it
/// exits 0.
fn run(mut cmd: Command, limit: Duration) -> Result<Output, String> {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {cmd:?}: {e}"))?;
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) if out.status.success() => Ok(out),
        Ok(Ok(out)) => Err(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            Err(format!("{cmd:?} did not finish within {limit:?}"))
        }
    }
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for IP 127.0.0.1 / DNS localhost and a client
/// certificate with CN=gipam, all P-256, valid for two days.
fn make_certs(dir: &Path) -> Certs {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca_args = vec!["req", "-x509"];
    ca_args.extend_from_slice(&ec);
    ca_args.extend_from_slice(&[
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=gipam test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca_args);
    let leaf = |name: &str, cn: &str, ext: &str, serial: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("write ext file");
        let mut req = vec!["req", "-new"];
        req.extend_from_slice(&ec);
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        let subj = format!("/CN={cn}");
        req.extend_from_slice(&["-keyout", &key, "-out", &csr, "-subj", &subj]);
        openssl(dir, &req);
        let extfile = format!("{name}.ext");
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                serial,
                "-days",
                "2",
                "-out",
                &crt,
                "-extfile",
                &extfile,
            ],
        );
    };
    leaf(
        "server",
        "localhost",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        "2",
    );
    leaf(
        "client",
        "gipam",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        "3",
    );
    Certs {
        ca: dir.join("ca.crt"),
        server_cert: dir.join("server.crt"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
    }
}
