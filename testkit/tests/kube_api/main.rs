//! `FakeApiServer` driven the way sluice's end-to-end tests drive it: by the real `kube` client
//! and kube-runtime watchers, by a real `kubectl`, and by raw HTTP for the wire details.

mod client;
mod kubectl;
mod rest;
mod watcher;

use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::Value;
use sluice_testkit::kube_api::FakeApiServer;
use sluice_testkit::{http1_request, H1Client, StreamingResponse};
use tempfile::TempDir;

/// Bound for anything that should happen "now".
const SOON: Duration = Duration::from_secs(5);

/// Polls `check` until it holds, failing after [`SOON`].
async fn eventually(what: &str, mut check: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = Instant::now() + SOON;
    while !check() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// A `kube::Client` configured the way a user's would be: from a kubeconfig file.
async fn kube_client(server: &FakeApiServer) -> anyhow::Result<kube::Client> {
    let dir = TempDir::new()?;
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path)?;
    let kubeconfig = Kubeconfig::read_from(&path).context("read kubeconfig")?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("config from kubeconfig")?;
    Ok(kube::Client::try_from(config)?)
}

/// One raw request; returns the status and the body parsed as JSON (`Null` if it is not JSON).
async fn raw(
    server: &FakeApiServer,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Option<&str>,
) -> anyhow::Result<(u16, Value)> {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| vec![("content-type", ct)])
        .unwrap_or_default();
    let response = http1_request(
        server.addr(),
        method,
        "127.0.0.1",
        path,
        &headers,
        body.map(|b| Bytes::from(b.to_owned())),
    )
    .await?;
    let value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
    Ok((response.status, value))
}

/// A watch response read line by line.
struct WatchLines {
    response: StreamingResponse,
    buffer: Vec<u8>,
    // Keeps the connection open for as long as the watch is read.
    _client: H1Client,
}

impl WatchLines {
    async fn open(server: &FakeApiServer, path: &str) -> anyhow::Result<WatchLines> {
        let mut client = H1Client::connect(server.addr()).await?;
        let response = client
            .send_streaming("GET", "127.0.0.1", path, &[], None)
            .await?;
        anyhow::ensure!(response.status == 200, "watch {path}: {}", response.status);
        Ok(WatchLines {
            response,
            buffer: Vec::new(),
            _client: client,
        })
    }

    /// The next event, or `None` when the server ended the stream.
    async fn next(&mut self) -> anyhow::Result<Option<Value>> {
        loop {
            if let Some(end) = self.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Ok(Some(serde_json::from_slice(&line)?));
            }
            match self.response.chunk().await? {
                Some(chunk) => self.buffer.extend_from_slice(&chunk),
                None => {
                    anyhow::ensure!(self.buffer.is_empty(), "stream ended inside a line");
                    return Ok(None);
                }
            }
        }
    }

    /// The next event that is not a bookmark.
    async fn next_change(&mut self) -> anyhow::Result<Value> {
        loop {
            let event = self.next().await?.context("watch ended")?;
            if event["type"] != "BOOKMARK" {
                return Ok(event);
            }
        }
    }
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or("")
}
