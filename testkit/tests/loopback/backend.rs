use std::process::Stdio;

use anyhow::Context as _;
use sluice_testkit::{H1Client, H2cClient, DEFAULT_TIMEOUT};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn backend_binary_serves_its_body_over_http1_and_h2c() -> anyhow::Result<()> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-testkit-backend"))
        .args(["--listen", "127.0.0.1:0", "--body-bytes", "5"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("spawn backend")?;
    let stdout = child.stdout.take().context("backend stdout")?;
    let mut line = String::new();
    tokio::time::timeout(DEFAULT_TIMEOUT, BufReader::new(stdout).read_line(&mut line))
        .await
        .context("backend did not report its address")??;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {line:?}"))?
        .parse()?;

    let mut h1 = H1Client::connect(addr).await?;
    for _ in 0..2 {
        let response = h1.send("GET", "example.com", "/", &[], None).await?;
        assert_eq!(response.status, 200);
        assert_eq!(&response.body[..], b"aaaaa");
    }
    let posted = h1
        .send("POST", "example.com", "/", &[], Some("body".into()))
        .await?;
    assert_eq!(posted.status, 200);
    assert!(!h1.is_closed(), "keep-alive survives a request body");

    let response = H2cClient::connect(addr)
        .await?
        .send("GET", "example.com", "/", &[], None)
        .await?;
    assert_eq!(response.version, http::Version::HTTP_2);
    assert_eq!(&response.body[..], b"aaaaa");
    Ok(())
}
