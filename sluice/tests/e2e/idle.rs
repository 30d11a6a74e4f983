//! Stream and tunnel idle timeouts: a client or upstream that stops moving bytes holds nothing
//! (request bodies get 408, stalled response bodies and blocked writes are cut, idle websocket
//! tunnels close), and a slow reader frees its revision's containerConcurrency slot.

use crate::support::*;
use anyhow::Context;
use futures_util::{SinkExt, StreamExt};
use sluice_testkit::{EchoServer, H1Client, WebsocketEchoServer};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

/// Reads until the peer closes (or `bound` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, bound: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let read = async {
        let mut buf = [0u8; 65536];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(bound, read).await.ok()?;
    Some(out)
}

async fn echo_gateway(args: &[&str]) -> anyhow::Result<(EchoServer, Gateway)> {
    let backend = EchoServer::start("idle").await?;
    let manifests = service("ns", "idle", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "idle", "idle.example.com", "idle", "80");
    let gw = Gateway::start_with(&manifests, args).await?;
    gw.wait_ingress_ready("ns", "idle").await?;
    Ok((backend, gw))
}

/// A request body that stops arriving gets 408 after `--stream-idle-timeout` (Envoy's answer
/// when its stream idle timeout fires on a request), and the upstream exchange is abandoned.
#[tokio::test]
async fn idle_request_body_gets_408() -> anyhow::Result<()> {
    let (_backend, gw) = echo_gateway(&["--stream-idle-timeout", "1s"]).await?;
    let mut client = TcpStream::connect(gw.http).await?;
    client
        .write_all(
            b"POST / HTTP/1.1\r\nhost: idle.example.com\r\ncontent-length: 100\r\n\r\nonly ten b",
        )
        .await?;
    let response = read_to_close(&mut client, Duration::from_secs(15))
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer within 15s"))?;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    // A body that keeps coming, however slowly, is not cut.
    let mut client = H1Client::connect(gw.http).await?;
    let r = client
        .send(
            "POST",
            "idle.example.com",
            "/",
            &[],
            Some(bytes::Bytes::from_static(b"complete body")),
        )
        .await?;
    assert_eq!(r.status, 200);
    Ok(())
}

/// An upstream that stops sending mid-body is cut after the idle timeout; one that keeps
/// sending (each chunk within the timeout) is not, however long the whole body takes.
#[tokio::test]
async fn stalled_response_body_is_cut_but_a_dripping_one_is_not() -> anyhow::Result<()> {
    let (_backend, gw) = echo_gateway(&["--stream-idle-timeout", "1s"]).await?;
    // 8 chunks 300 ms apart: 2.4 s in all, never 1 s idle.
    let mut client = H1Client::connect(gw.http)
        .await?
        .with_timeout(Duration::from_secs(20));
    let r = client
        .send("GET", "idle.example.com", "/?drip=8&drip_ms=300", &[], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "aaaaaaaa");
    // The second chunk comes after 5 s: the stream is cut before it.
    let mut client = TcpStream::connect(gw.http).await?;
    client
        .write_all(b"GET /?drip=2&drip_ms=5000 HTTP/1.1\r\nhost: idle.example.com\r\n\r\n")
        .await?;
    let response = read_to_close(&mut client, Duration::from_secs(15))
        .await
        .ok_or_else(|| anyhow::anyhow!("not cut within 15s"))?;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        !text.ends_with("0\r\n\r\n"),
        "the body ended normally: {text}"
    );
    Ok(())
}

async fn websocket(
    addr: SocketAddr,
) -> anyhow::Result<tokio_tungstenite::WebSocketStream<TcpStream>> {
    let request = "ws://ws.example.com/".into_client_request()?;
    let stream = TcpStream::connect(addr).await?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    Ok(ws)
}

/// A websocket tunnel with no byte either way for `--websocket-idle-timeout` is closed; one
/// with traffic more often than that stays open.
#[tokio::test]
async fn idle_websocket_tunnel_is_closed() -> anyhow::Result<()> {
    let backend = WebsocketEchoServer::start("- ws").await?;
    let manifests = service("ns", "ws", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "ws", "ws.example.com", "ws", "80");
    let gw = Gateway::start_with(&manifests, &["--websocket-idle-timeout", "1s"]).await?;
    gw.wait_ingress_ready("ns", "ws").await?;
    // Busy: a message every 300 ms for 3 s.
    let mut ws = websocket(gw.http).await?;
    for i in 0..10 {
        ws.send(Message::text(format!("m{i}"))).await?;
        let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await?
            .ok_or_else(|| anyhow::anyhow!("closed at message {i}"))??;
        assert_eq!(reply.into_text()?.as_str(), format!("m{i} - ws"));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // Idle: the proxy closes it.
    let mut ws = websocket(gw.http).await?;
    ws.send(Message::text("hello")).await?;
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await?
        .ok_or_else(|| anyhow::anyhow!("closed before the reply"))??;
    assert_eq!(reply.into_text()?.as_str(), "hello - ws");
    let end = tokio::time::timeout(Duration::from_secs(15), ws.next())
        .await
        .map_err(|_| anyhow::anyhow!("idle tunnel still open after 15s"))?;
    assert!(
        matches!(end, None | Some(Err(_)) | Some(Ok(Message::Close(_)))),
        "{end:?}"
    );
    Ok(())
}

/// A revision with containerConcurrency 1 and one instance, answering 32 MiB bodies, behind a
/// gateway with a 2 s stream idle timeout.
async fn one_slot_revision() -> anyhow::Result<Gateway> {
    let manifests = autoscaler_config("")
        + &revision(
            "slow",
            "slow.example.com",
            1,
            &[
                ("autoscaling.knative.dev/min-scale", "1"),
                ("autoscaling.knative.dev/max-scale", "1"),
            ],
            // 32 MiB: far more than the socket buffers between the responder and the client.
            &["--body-bytes", "33554432"],
            "",
        );
    let gw = Gateway::start_with(&manifests, &["--stream-idle-timeout", "2s"]).await?;
    gw.wait_status("Route", "ns", "slow", is_ready).await?;
    wait_metric(
        &gw,
        "sluice_revision_actual_scale{revision=\"ns/slow\"}",
        |v| v == 1.0,
        Duration::from_secs(20),
    )
    .await?;
    Ok(gw)
}

/// A client that stops reading a streamed response holds its revision's only slot
/// (containerConcurrency 1) no longer than the stream idle timeout: the next request is then
/// served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_reader_frees_its_slot_after_the_stream_idle_timeout() -> anyhow::Result<()> {
    let gw = one_slot_revision().await?;
    // The slow reader: a small receive buffer, reads the first bytes, then never again.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_recv_buffer_size(4096)?;
    let mut reader = socket.connect(gw.http).await?;
    reader
        .write_all(b"GET / HTTP/1.1\r\nhost: slow.example.com\r\n\r\n")
        .await?;
    let mut head = [0u8; 12];
    reader.read_exact(&mut head).await?;
    assert_eq!(&head, b"HTTP/1.1 200");
    wait_metric(
        &gw,
        "sluice_backend_in_flight_requests{backend=\"ns/slow\"}",
        |v| v == 1.0,
        WAIT,
    )
    .await?;
    // The next request waits for the slot, and gets it once the reader's stream is cut.
    let mut next = H1Client::connect(gw.http)
        .await?
        .with_timeout(Duration::from_secs(30));
    let r = next.send("GET", "slow.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 32 << 20);
    drop(reader);
    Ok(())
}

/// HTTP/2: a live client (reading, answering PINGs) that never opens one stream's window
/// holds that stream's slot no longer than the stream idle timeout, and keeps its connection:
/// only the stalled stream is given up (reset once the client opens its window again).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_stream_stalled_by_flow_control_frees_its_slot_not_its_connection() -> anyhow::Result<()>
{
    let gw = one_slot_revision().await?;
    let addr = gw.http;
    // Holds its stalled stream for 20 s, then opens the window and reads for 5 s.
    let stalled = tokio::spawn(async move {
        crate::h2_hostile::attack(addr, "stall_stream", "slow.example.com", "20").await
    });
    wait_metric(
        &gw,
        "sluice_backend_in_flight_requests{backend=\"ns/slow\"}",
        |v| v == 1.0,
        WAIT,
    )
    .await?;
    let mut next = H1Client::connect(gw.http)
        .await?
        .with_timeout(Duration::from_secs(15));
    let r = next.send("GET", "slow.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 200);
    assert!(
        !stalled.is_finished(),
        "served only after the stalled client left"
    );
    let report = stalled.await??;
    assert_eq!(report["closed"], false, "the connection was kept: {report}");
    assert_eq!(report["statuses"]["200"], 1, "{report}");
    // INTERNAL_ERROR: the given-up body ends in an error, which hyper turns into a reset.
    assert_eq!(report["rst"]["2"], 1, "{report}");
    Ok(())
}

/// The same over an h2c upstream (the request body is sent on its own h2 stream).
#[tokio::test]
async fn idle_request_body_to_an_h2c_upstream_gets_408() -> anyhow::Result<()> {
    let backend = EchoServer::start_with(sluice_testkit::EchoOptions {
        h2c_only: true,
        ..sluice_testkit::EchoOptions::named("h2c")
    })
    .await?;
    let manifests = service("ns", "h2c", "http2", 81, &[backend.addr()])
        + &simple_ingress("ns", "h2c", "h2c.example.com", "h2c", "81");
    let gw = Gateway::start_with(&manifests, &["--stream-idle-timeout", "1s"]).await?;
    gw.wait_ingress_ready("ns", "h2c").await?;
    let mut client = TcpStream::connect(gw.http).await?;
    client
        .write_all(
            b"POST / HTTP/1.1\r\nhost: h2c.example.com\r\ncontent-length: 100\r\n\r\nonly ten b",
        )
        .await?;
    let response = read_to_close(&mut client, Duration::from_secs(15))
        .await
        .ok_or_else(|| anyhow::anyhow!("no answer within 15s"))?;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    Ok(())
}

/// Wake-ups of every live thread of process `pid` so far (voluntary and involuntary context
/// switches, from /proc). A thread that exits while this reads is skipped.
fn wakeups(pid: u32) -> anyhow::Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let Ok(status) = std::fs::read_to_string(task?.path().join("status")) else {
            continue;
        };
        for line in status.lines() {
            if let Some(count) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                total += count.trim().parse::<u64>()?;
            }
        }
    }
    Ok(total)
}

/// An idle proxy sleeps. Pingora bounds each accepted connection's handshake with its "fast"
/// timeout, whose first use starts a thread that wakes every 10 ms for good: 100 wake-ups a
/// second from then on. Its timeouts now go to tokio's timer, which sleeps until a deadline.
#[tokio::test]
async fn an_idle_proxy_wakes_rarely_after_serving() -> anyhow::Result<()> {
    let (_backend, gw) = echo_gateway(&[]).await?;
    let mut client = H1Client::connect(gw.http).await?;
    let r = client
        .send("GET", "idle.example.com", "/", &[], None)
        .await?;
    assert_eq!(r.status, 200);
    drop(client);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = gw.pid().context("gateway not running")?;
    let before = wakeups(pid)?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Saturating: a thread that exited in between takes its count with it.
    let per_second = wakeups(pid)?.saturating_sub(before) / 2;
    // About 5 here (the manifest directory's rescan, the autoscaler's tick); the ticking
    // thread alone made 100.
    assert!(per_second < 30, "{per_second} wake-ups a second while idle");
    Ok(())
}
