//! The smallest client of the plugin socket the subcommands need: one
//! `POST /<Method>` per connection over HTTP/1.1 (`Connection: close`), a
//! JSON body, a JSON reply. Blocking and synchronous: a subcommand makes a
//! handful of calls. Errors say which socket and what to do.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

/// How long one call may take: gipam answers reads in microseconds and
/// changes after one fsync.
const TIMEOUT: Duration = Duration::from_secs(30);

/// Calls `method` (e.g. `Gipam.Status`) with `body` (`Value::Null` sends an
/// empty body); returns the decoded reply of a 200, else gipam's `Err`.
pub fn call(socket: &Path, method: &str, body: &Value) -> Result<Value, String> {
    let unreachable = |e: std::io::Error| {
        format!(
            "cannot reach gipam on {}: {e}; is it running? Give its socket with --socket or SOCKET (a managed plugin's is /run/docker/plugins/<plugin id>/gipam.sock)",
            socket.display()
        )
    };
    let mut s = UnixStream::connect(socket).map_err(unreachable)?;
    s.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    s.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
    let payload = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).map_err(|e| e.to_string())?
    };
    let head = format!(
        "POST /{method} HTTP/1.1\r\nHost: gipam\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(&payload))
        .map_err(unreachable)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(unreachable)?;
    let bad = |why: &str| {
        format!(
            "gipam on {} sent a reply to {method} that is not HTTP ({why}); is that socket gipam's?",
            socket.display()
        )
    };
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status"))?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked")
        })
    });
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("broken chunked body"))?;
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| bad(&e.to_string()))?;
    if status == 200 {
        return Ok(value);
    }
    let err = value
        .get("Err")
        .and_then(Value::as_str)
        .unwrap_or("no reason given");
    Err(format!("gipam refused {method}: {err}"))
}

/// Decodes an HTTP/1.1 chunked body.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunked_bodies_decode() {
        assert_eq!(
            super::dechunk(b"3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n").as_deref(),
            Some(&b"{\"a\":1}"[..])
        );
        assert_eq!(super::dechunk(b"5\r\nab"), None);
    }
}
