//! The testkit's servers exercised by its own clients over real loopback sockets.

mod backend;
mod echo;
mod grpc;
mod ports;
mod relay;
mod websocket;

use std::time::{Duration, Instant};

/// Polls `check` until it holds, failing after a bound.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}
