//! The testkit's servers exercised by its own clients over real loopback sockets.

mod backend;
mod echo;
mod grpc;
mod ports;
mod relay;
mod websocket;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sluice_testkit::DEFAULT_TIMEOUT;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Polls `check` until it holds, failing after a bound.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Starts a binary that prints `listening on ADDR` first, and returns it with that address.
pub(crate) async fn spawn_listening(
    bin: &str,
    args: &[&str],
) -> anyhow::Result<(Child, SocketAddr)> {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {bin}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let mut line = String::new();
    tokio::time::timeout(DEFAULT_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
        .await
        .with_context(|| format!("{bin} did not report its address"))??;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()?;
    Ok((child, addr))
}
