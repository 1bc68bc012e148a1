//! The ceiling for `make bench-oha`: a warp server on a unix socket that
//! reads each POST body and answers `{}`, nothing else. An independent load
//! generator (oha) drives it and gipam in the same run, so the ratio of the
//! two is what gipam's own work costs (performance.md).
//!
//! `cargo run --release --example noop -- SOCKET`

use warp::Filter;

/// The same allocator as gipam's binary (src/main.rs), so that the ratio
/// measures gipam's work and not the allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: noop SOCKET");
        std::process::exit(2);
    };
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("noop: cannot listen on {path}: {e}");
            std::process::exit(1);
        }
    };
    let routes = warp::post()
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| warp::reply::json(&serde_json::json!({})));
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    warp::serve(routes)
        .incoming(listener)
        .graceful(stop)
        .run()
        .await;
    let _ = std::fs::remove_file(&path);
}
