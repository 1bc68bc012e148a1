//! The fleet settings (F9): where etcd is, how to reach it, and who this
//! host is. With ETCD_ENDPOINTS empty there is no fleet and nothing else
//! here is read.

use std::path::PathBuf;
use std::time::Duration;

use super::values::{Given, seconds};
use super::{Sources, keep};

/// How this host takes part in a fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// etcd client URLs, as given.
    pub endpoints: Vec<String>,
    /// Every key of this fleet starts with it (no trailing `/`).
    pub prefix: String,
    pub ca: Option<PathBuf>,
    /// Client certificate and key, for etcd's `--client-cert-auth`.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// User name and the file holding its password.
    pub user: Option<(String, PathBuf)>,
    /// How long a request that needs etcd waits for it.
    pub timeout: Duration,
    pub host_id: String,
}

/// A host id: it is part of etcd keys and of error messages.
pub fn valid_host_id(id: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    !id.is_empty() && id.len() <= 64 && id.chars().all(ok)
}

/// This machine's name when HOST_ID is not set.
fn default_host_id() -> Option<String> {
    ["/etc/machine-id", "/proc/sys/kernel/hostname"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .find(|s| valid_host_id(s))
}

fn file(src: &Sources, env: &'static str, refused: &mut Vec<(Given, String)>) -> Option<PathBuf> {
    let g = src.get(env);
    if g.text.is_empty() {
        return None;
    }
    let path = PathBuf::from(&g.text);
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() => Some(path),
        Ok(_) => {
            let why = format!("{g} is not a file; give the path of a PEM file");
            refused.push((g, why));
            None
        }
        Err(e) => {
            let why = format!("{g} cannot be read: {e}; fix the path");
            refused.push((g, why));
            None
        }
    }
}

/// The fleet settings: `Some(None)` without ETCD_ENDPOINTS, `None` when
/// one of them is refused (recorded in `refused`).
pub(super) fn fleet(
    src: &Sources,
    refused: &mut Vec<(Given, String)>,
) -> Option<Option<FleetConfig>> {
    let eg = src.get("ETCD_ENDPOINTS");
    let endpoints: Vec<String> = eg
        .text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if endpoints.is_empty() {
        return Some(None);
    }
    let before = refused.len();
    if let Some(bad) = endpoints
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")) || e.len() > 256)
    {
        let why = format!(
            "{eg}: {bad:?} is not an etcd client URL; write http://HOST:PORT or https://HOST:PORT, comma-separated"
        );
        refused.push((eg.clone(), why));
    }
    let pg = src.get("ETCD_PREFIX");
    let prefix = pg.text.trim_end_matches('/').to_string();
    if !pg.text.starts_with('/') || prefix.is_empty() || prefix.chars().any(char::is_control) {
        let why = format!("{pg} is not a key prefix; write one such as /gipam");
        refused.push((pg.clone(), why));
    }
    let ca = file(src, "ETCD_CA", refused);
    let cert = file(src, "ETCD_CERT", refused);
    let key = file(src, "ETCD_KEY", refused);
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (c, _) => {
            let (g, other) = match c {
                Some(_) => (src.get("ETCD_CERT"), "ETCD_KEY"),
                None => (src.get("ETCD_KEY"), "ETCD_CERT"),
            };
            if g.text.is_empty() {
                // The one given was refused above already.
                None
            } else {
                let why = format!("{g} needs {other} too (a client certificate and its key)");
                refused.push((g, why));
                None
            }
        }
    };
    let ug = src.get("ETCD_USER");
    let user = match (ug.text.is_empty(), file(src, "ETCD_PASSWORD_FILE", refused)) {
        (true, None) => None,
        (false, Some(p)) => Some((ug.text.clone(), p)),
        (false, None) => {
            let why = format!("{ug} needs ETCD_PASSWORD_FILE, a file holding its password");
            refused.push((ug.clone(), why));
            None
        }
        (true, Some(_)) => {
            let pw = src.get("ETCD_PASSWORD_FILE");
            let why = format!("{pw} needs ETCD_USER, the user it is the password of");
            refused.push((pw, why));
            None
        }
    };
    let tg = src.get("ETCD_TIMEOUT");
    let timeout = keep(refused, &tg, seconds(&tg));
    let hg = src.get("HOST_ID");
    let host_id = if hg.text.is_empty() {
        default_host_id()
    } else {
        Some(hg.text.clone())
    };
    let host_id = match host_id {
        Some(h) if valid_host_id(&h) => Some(h),
        Some(h) => {
            let why = format!(
                "HOST_ID {h:?} is not a host name; use 1 to 64 letters, digits, '.', '_' or '-'"
            );
            refused.push((hg, why));
            None
        }
        None => {
            let why = format!(
                "{hg}: this machine has no /etc/machine-id or hostname to name it in the fleet; set HOST_ID"
            );
            refused.push((hg, why));
            None
        }
    };
    if refused.len() > before {
        return None;
    }
    Some(Some(FleetConfig {
        endpoints,
        prefix,
        ca,
        identity,
        user,
        timeout: timeout?,
        host_id: host_id?,
    }))
}
