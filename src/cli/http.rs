//! One HTTP/1.1 POST over a unix socket and its reply, the way dockerd
//! talks to the plugin. Blocking and minimal: the CLI makes one call.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// POSTs `body` to `path`; returns the status and the reply body.
pub fn post(socket: &Path, path: &str, body: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let at = socket.display();
    let mut s = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to gipam at {at}: {e}; is the plugin enabled, and is this its socket?"
        )
    })?;
    let timeout = Some(Duration::from_secs(60));
    s.set_read_timeout(timeout)
        .and_then(|()| s.set_write_timeout(timeout))
        .map_err(|e| format!("{at}: {e}"))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: gipam\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .map_err(|e| format!("sending to gipam at {at}: {e}"))?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)
        .map_err(|e| format!("reading gipam's reply from {at}: {e}"))?;
    let bad = || format!("gipam at {at} sent a reply that is not HTTP");
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&reply[..split]).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    if head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    }) {
        return Err(format!(
            "gipam at {at} sent a chunked reply, which this client does not read"
        ));
    }
    Ok((status, reply[split + 4..].to_vec()))
}
