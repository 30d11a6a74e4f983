use std::net::SocketAddr;

use anyhow::Context as _;
use sluice_testkit::{H1Client, DEFAULT_TIMEOUT};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Child;

use crate::spawn_listening;

async fn relay_to(upstream: SocketAddr) -> anyhow::Result<(Child, SocketAddr)> {
    let upstream = upstream.to_string();
    spawn_listening(
        env!("CARGO_BIN_EXE_sluice-testkit-relay"),
        &["--listen", "127.0.0.1:0", "--upstream", &upstream],
    )
    .await
}

#[tokio::test]
async fn relay_carries_keep_alive_http_to_the_backend() -> anyhow::Result<()> {
    let (_backend, backend) = spawn_listening(
        env!("CARGO_BIN_EXE_sluice-testkit-backend"),
        &["--listen", "127.0.0.1:0", "--body-bytes", "3"],
    )
    .await?;
    let (_relay, relay) = relay_to(backend).await?;
    let (mut first, mut second) = (
        H1Client::connect(relay).await?,
        H1Client::connect(relay).await?,
    );
    for _ in 0..3 {
        for client in [&mut first, &mut second] {
            let response = client.send("GET", "example.com", "/", &[], None).await?;
            assert_eq!((response.status, &response.body[..]), (200, &b"aaa"[..]));
        }
    }
    assert!(
        !first.is_closed() && !second.is_closed(),
        "both connections stay open between requests"
    );
    Ok(())
}

#[tokio::test]
async fn relay_copies_more_than_a_socket_buffer_passes_half_close_on_and_closes_the_pair(
) -> anyhow::Result<()> {
    // An upstream that reads until its client's FIN, then sends everything back and closes:
    // the relay must pass the half-close on, keep the pair for the answer, and then close it.
    // (Reading first keeps the relay's blocking finish of a large write from meeting an upstream
    // that is itself blocked writing.)
    let echo = TcpListener::bind("127.0.0.1:0").await?;
    let upstream = echo.local_addr()?;
    let echoed = tokio::spawn(async move {
        let (mut socket, _) = echo.accept().await?;
        let mut received = Vec::new();
        socket.read_to_end(&mut received).await?;
        socket.write_all(&received).await?;
        anyhow::Ok(received.len())
    });
    let (_relay, relay) = relay_to(upstream).await?;
    let sent: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let client = TcpStream::connect(relay).await?;
    let (mut read, mut write) = client.into_split();
    let writer = {
        let sent = sent.clone();
        tokio::spawn(async move {
            write.write_all(&sent).await?;
            write.shutdown().await
        })
    };
    let mut got = Vec::with_capacity(sent.len());
    tokio::time::timeout(DEFAULT_TIMEOUT * 4, read.read_to_end(&mut got))
        .await
        .context("the relay did not close the client side after the upstream's EOF")??;
    writer.await??;
    assert!(
        got == sent,
        "got {} bytes back, not the {} sent, in order",
        got.len(),
        sent.len()
    );
    let count = tokio::time::timeout(DEFAULT_TIMEOUT, echoed)
        .await
        .context("upstream never saw EOF")???;
    assert_eq!(count, sent.len());
    Ok(())
}
