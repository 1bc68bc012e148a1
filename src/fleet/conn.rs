//! The connection to etcd: built once, lazily (so gipam starts while etcd
//! is down), with TLS and auth from the settings; every call bounded by
//! ETCD_TIMEOUT, its outcome counted, and its failure turned into an error
//! that names the endpoints and the cause.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};

use crate::config::FleetConfig;
use crate::metrics::Histogram;

/// Why a fleet operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetError {
    /// etcd could not be reached or did not answer in time.
    Unavailable(String),
    /// Another host won every retry.
    Contended(String),
    /// The fleet refuses this (a conflict found at start, a setting).
    Refused(String),
}

impl std::fmt::Display for FleetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FleetError::Unavailable(why)
            | FleetError::Contended(why)
            | FleetError::Refused(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for FleetError {}

/// What etcd calls did, for metrics and `gipam status`.
#[derive(Default)]
pub struct EtcdStats {
    pub round_trip: Histogram,
    pub conflicts: AtomicU64,
    pub retries: AtomicU64,
    pub errors: AtomicU64,
}

/// The last outcome of a call.
#[derive(Debug, Clone, Default)]
pub struct Health {
    pub ok: bool,
    pub last_error: Option<String>,
    pub since: Option<SystemTime>,
}

pub(super) struct Conn {
    endpoints: Vec<String>,
    timeout: Duration,
    ca: Option<std::path::PathBuf>,
    identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
    user: Option<(String, std::path::PathBuf)>,
    client: tokio::sync::Mutex<Option<Client>>,
    /// The last failed connect and its cause: callers within a second get
    /// it at once rather than queueing for another try.
    refused: Mutex<Option<(Instant, String)>>,
    health: Mutex<Health>,
}

impl Conn {
    pub(super) fn new(cfg: &FleetConfig) -> Conn {
        Conn {
            endpoints: cfg.endpoints.clone(),
            timeout: cfg.timeout,
            ca: cfg.ca.clone(),
            identity: cfg.identity.clone(),
            user: cfg.user.clone(),
            client: tokio::sync::Mutex::new(None),
            refused: Mutex::new(None),
            health: Mutex::new(Health::default()),
        }
    }

    fn endpoints(&self) -> String {
        self.endpoints.join(",")
    }

    /// The error of a call that failed for `cause`.
    pub(super) fn unavailable(&self, cause: &str) -> FleetError {
        FleetError::Unavailable(format!(
            "etcd at {} failed: {cause}; gipam needs etcd for new blocks and shared networks (addresses in this host's own networks still work); check that etcd runs and has quorum, and ETCD_ENDPOINTS and its TLS/auth settings",
            self.endpoints()
        ))
    }

    /// Before the start-up sync has run.
    pub(super) fn not_yet(&self) -> FleetError {
        let last = self.health().last_error;
        FleetError::Unavailable(format!(
            "gipam has not synced with the fleet's etcd at {} yet{}; it retries every few seconds (addresses in this host's own networks still work)",
            self.endpoints(),
            last.map(|e| format!(" ({e})")).unwrap_or_default()
        ))
    }

    pub(super) fn health(&self) -> Health {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn record(&self, outcome: Result<(), &str>) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        let ok = outcome.is_ok();
        if h.ok != ok || h.since.is_none() {
            h.since = Some(SystemTime::now());
        }
        h.ok = ok;
        if let Err(e) = outcome {
            h.last_error = Some(e.to_string());
        }
    }

    async fn options(&self) -> Result<ConnectOptions, String> {
        // No per-request timeout on the channel: it would cut the watch
        // stream; every unary call is bounded in `call` instead.
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(5), self.timeout)
            // Without quorum a request fails at once rather than waiting.
            .with_require_leader(true);
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| format!("cannot read {}: {e}", p.display()))
        };
        if self.ca.is_some() || self.identity.is_some() {
            let mut tls = TlsOptions::new();
            if let Some(ca) = &self.ca {
                tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
            }
            if let Some((cert, key)) = &self.identity {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            opts = opts.with_tls(tls);
        }
        if let Some((user, file)) = &self.user {
            let text = String::from_utf8(read(file)?)
                .map_err(|_| format!("{} is not text", file.display()))?;
            let password = text.lines().next().unwrap_or("").to_string();
            opts = opts.with_user(user.clone(), password);
        }
        Ok(opts)
    }

    /// The client, connecting first if need be (bounded).
    pub(super) async fn client(&self) -> Result<Client, FleetError> {
        let mut slot = self.client.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let recent = self
            .refused
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|(at, _)| at.elapsed() < Duration::from_secs(1));
        if let Some((_, why)) = recent {
            return Err(self.unavailable(&why));
        }
        let opts = self.options().await.map_err(|e| {
            self.record(Err(&e));
            self.unavailable(&e)
        })?;
        let connect = Client::connect(self.endpoints.clone(), Some(opts));
        let client = match tokio::time::timeout(self.timeout, connect).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                let e = e.to_string();
                self.record(Err(&e));
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), e.clone()));
                return Err(self.unavailable(&e));
            }
            Err(_) => {
                let e = format!("no answer within {} s", self.timeout.as_secs_f64());
                self.record(Err(&e));
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((Instant::now(), e.clone()));
                return Err(self.unavailable(&e));
            }
        };
        *slot = Some(client.clone());
        Ok(client)
    }

    /// Runs one call with the client, bounded by ETCD_TIMEOUT, counting it.
    pub(super) async fn call<T, F, Fut>(&self, stats: &EtcdStats, f: F) -> Result<T, FleetError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        self.attempt(stats, deadline, f).await
    }

    /// Like [`Conn::call`], but tried again (within the same bound) when it
    /// fails: the client keeps sending some requests to a member that is
    /// down even while the others have quorum, and those fail at once.
    /// Only for calls that may be repeated: reads, and transactions whose
    /// compares make a repeat harmless (a repeat of one that was applied
    /// finds its own write and loses; the tidy pass frees that claim).
    pub(super) async fn call_again<T, F, Fut>(
        &self,
        stats: &EtcdStats,
        f: F,
    ) -> Result<T, FleetError>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut last = None;
        while Instant::now() < deadline {
            match self.attempt(stats, deadline, &f).await {
                Ok(v) => return Ok(v),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(last.unwrap_or_else(|| self.unavailable("no answer in time")))
    }

    async fn attempt<T, F, Fut>(
        &self,
        stats: &EtcdStats,
        deadline: Instant,
        f: F,
    ) -> Result<T, FleetError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        // Waiting for the connection (another caller may be making it)
        // counts against the same bound.
        let client = match tokio::time::timeout_at(deadline.into(), self.client()).await {
            Ok(c) => c?,
            Err(_) => {
                // The cause is whatever the connect that holds us up meets.
                let last = self.health().last_error;
                let e = last.unwrap_or_else(|| {
                    format!("no connection within {} s", self.timeout.as_secs_f64())
                });
                return Err(self.unavailable(&e));
            }
        };
        let started = Instant::now();
        let left = deadline.saturating_duration_since(started);
        let out = tokio::time::timeout(left, f(client)).await;
        stats.round_trip.observe(started.elapsed());
        match out {
            Ok(Ok(v)) => {
                self.record(Ok(()));
                Ok(v)
            }
            Ok(Err(e)) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let e = e.to_string();
                self.record(Err(&e));
                Err(self.unavailable(&e))
            }
            Err(_) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                let e = format!("no answer within {} s", self.timeout.as_secs_f64());
                self.record(Err(&e));
                Err(self.unavailable(&e))
            }
        }
    }
}
