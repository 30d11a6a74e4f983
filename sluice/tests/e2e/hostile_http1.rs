//! Hostile HTTP/1 and downstream limits (issue 11, items 1 and 2): exact bytes on raw sockets,
//! checking both what the client gets and what the backend saw (nothing, for a refusal).

use crate::support::*;
use sluice_testkit::{EchoServer, H1Client, H2cClient};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HOST: &str = "h.example.com";

fn manifest(backend: SocketAddr) -> String {
    service("ns", "echo", "http", 80, &[backend]) + &simple_ingress("ns", "h", HOST, "echo", "80")
}

async fn start(backend: &EchoServer, args: &[&str]) -> anyhow::Result<Gateway> {
    let gw = Gateway::start_with(&manifest(backend.addr()), args).await?;
    gw.wait_ingress_ready("ns", "h").await?;
    Ok(gw)
}

/// Everything the server wrote on a connection after `request`, until it closed it (bounded
/// by [`WAIT`]: a connection left open fails the test).
async fn until_closed(addr: SocketAddr, request: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request).await?;
    read_until_closed(&mut stream).await
}

async fn read_until_closed(stream: &mut TcpStream) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok::<_, anyhow::Error>(()),
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                // A reset after the response is a close too.
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
    };
    tokio::time::timeout(WAIT, read)
        .await
        .map_err(|_| anyhow::anyhow!("connection still open after {WAIT:?}"))??;
    Ok(bytes)
}

/// The status codes of every response in `bytes`, in order.
fn statuses(bytes: &[u8]) -> Vec<u16> {
    let text = String::from_utf8_lossy(bytes);
    text.match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| text[at + 9..].get(..3)?.parse().ok())
        .collect()
}

#[tokio::test]
async fn smuggling_vectors_are_refused_and_never_forwarded() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let h = HOST;
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "differing duplicate content-length",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"),
            400,
        ),
        (
            "obs-fold",
            format!("GET / HTTP/1.1\r\nHost: {h}\r\nX-Folded: a\r\n b\r\n\r\n"),
            400,
        ),
        (
            "invalid chunk size",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunk size overflowing 64 bits",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n1ffffffffffffffff\r\nabc\r\n0\r\n\r\n"),
            400,
        ),
        (
            "a coding other than chunked",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"),
            501,
        ),
        (
            "a coding list not ending in chunked",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "chunked twice",
            format!("POST / HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "transfer-encoding on HTTP/1.0",
            format!("POST / HTTP/1.0\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            400,
        ),
        (
            "two host lines",
            format!("GET / HTTP/1.1\r\nHost: {h}\r\nHost: other.example.com\r\n\r\n"),
            400,
        ),
        (
            "two equal host lines",
            format!("GET / HTTP/1.1\r\nHost: {h}\r\nHost: {h}\r\n\r\n"),
            400,
        ),
        ("no host on HTTP/1.1", "GET / HTTP/1.1\r\n\r\n".to_string(), 400),
        (
            "no host on HTTP/1.1, absolute form",
            format!("GET http://{h}/ HTTP/1.1\r\n\r\n"),
            400,
        ),
    ];
    for (name, request, want) in &cases {
        // No `Connection: close` in the requests: the server must close on its own.
        let bytes = until_closed(gw.http, request.as_bytes()).await?;
        assert_eq!(
            statuses(&bytes),
            vec![*want],
            "{name}: {}",
            String::from_utf8_lossy(&bytes)
        );
    }
    assert_eq!(
        backend.requests(),
        0,
        "a refused request reached the backend"
    );

    // The same connection still serves a well-formed request: the checks refuse, not break.
    let ok = format!("GET / HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n");
    assert_eq!(
        statuses(&until_closed(gw.http, ok.as_bytes()).await?),
        vec![200]
    );
    assert_eq!(backend.requests(), 1);
    Ok(())
}

/// RFC 9112 §6.3: with both, Transfer-Encoding wins, the Content-Length is not forwarded and
/// the connection closes after the response, so bytes that one reading would take for a
/// second request are never served as one.
#[tokio::test]
async fn content_length_beside_chunked_is_dropped_and_the_connection_closed() -> anyhow::Result<()>
{
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let smuggled = format!("GET /smuggled HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let body = format!("0\r\n\r\n{smuggled}");
    for order in [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
            body.len()
        ),
        format!(
            "Transfer-Encoding: chunked\r\nContent-Length: {}\r\n",
            body.len()
        ),
    ] {
        let before = backend.requests();
        let request = format!("POST /first HTTP/1.1\r\nHost: {HOST}\r\n{order}\r\n{body}");
        let bytes = until_closed(gw.http, request.as_bytes()).await?;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(
            statuses(&bytes),
            vec![200],
            "{order}: one response, then close: {text}"
        );
        assert!(text.contains("\"uri\":\"/first\""), "{text}");
        assert!(!text.contains("/smuggled"), "{text}");
        assert!(
            !text.to_ascii_lowercase().contains("\"content-length\""),
            "{text}"
        );
        assert_eq!(backend.requests(), before + 1, "{order}");
    }
    Ok(())
}

#[tokio::test]
async fn every_connection_line_names_hop_by_hop_headers() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: keep-alive\r\nConnection: x-second\r\nConnection: X-Third, close\r\nX-Second: 2\r\nX-Third: 3\r\nX-Kept: k\r\n\r\n"
    );
    let bytes = until_closed(gw.http, request.as_bytes()).await?;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(statuses(&bytes), vec![200], "{text}");
    assert!(text.contains("X-Kept"), "{text}");
    assert!(!text.contains("X-Second"), "{text}");
    assert!(!text.contains("X-Third"), "{text}");
    Ok(())
}

/// `Connection` may name `Host`, which is then stripped as hop-by-hop; an HTTP/1.1 upstream
/// still needs one, so the client's host goes up.
#[tokio::test]
async fn a_connection_line_naming_host_still_sends_the_host_upstream() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: host, close\r\n\r\n");
    let bytes = until_closed(gw.http, request.as_bytes()).await?;
    let text = String::from_utf8_lossy(&bytes);
    assert_eq!(statuses(&bytes), vec![200], "{text}");
    assert!(text.contains(&format!("\"host\":\"{HOST}\"")), "{text}");
    Ok(())
}

#[tokio::test]
async fn request_head_limits_answer_431_and_414() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(
        &backend,
        &[
            "--max-request-headers-kb",
            "8",
            "--max-request-headers",
            "20",
            "--max-uri-bytes",
            "100",
        ],
    )
    .await?;
    let big = "a".repeat(8 * 1024);
    let many: String = (0..25).map(|i| format!("X-H{i}: v\r\n")).collect();
    let at_limit_path = format!("/{}", "p".repeat(99));
    let over_path = format!("/{}", "p".repeat(100));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "head over 8 KiB",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n"),
            431,
        ),
        (
            "25 headers",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{many}\r\n"),
            431,
        ),
        (
            "101-byte target",
            format!("GET {over_path} HTTP/1.1\r\nHost: {HOST}\r\n\r\n"),
            414,
        ),
    ];
    for (name, request, want) in &cases {
        let bytes = until_closed(gw.http, request.as_bytes()).await?;
        assert_eq!(statuses(&bytes), vec![*want], "{name}");
    }
    assert_eq!(
        backend.requests(),
        0,
        "a refused request reached the backend"
    );
    let ok = format!("GET {at_limit_path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    assert_eq!(
        statuses(&until_closed(gw.http, ok.as_bytes()).await?),
        vec![200]
    );
    // Exactly 20 header lines (Host, Connection and 18 more) pass.
    let twenty: String = (0..18).map(|i| format!("X-H{i}: v\r\n")).collect();
    let ok = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n{twenty}\r\n");
    assert_eq!(
        statuses(&until_closed(gw.http, ok.as_bytes()).await?),
        vec![200]
    );
    assert_eq!(backend.requests(), 2);

    // HTTP/2 (h2c): the head size is SETTINGS_MAX_HEADER_LIST_SIZE, the count and target ours.
    let h2 = H2cClient::connect(gw.http).await?;
    let r = h2.send("GET", HOST, "/", &[("x-big", &big)], None).await?;
    assert_eq!(r.status, 431, "h2 head over 8 KiB");
    let names: Vec<String> = (0..25).map(|i| format!("x-h{i}")).collect();
    let headers: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    let h2 = H2cClient::connect(gw.http).await?;
    let r = h2.send("GET", HOST, "/", &headers, None).await?;
    assert_eq!(r.status, 431, "h2 25 headers");
    let r = h2.send("GET", HOST, &over_path, &[], None).await?;
    assert_eq!(r.status, 414, "h2 101-byte target");
    assert_eq!(
        backend.requests(),
        2,
        "a refused h2 request reached the backend"
    );
    let r = h2.send("GET", HOST, &at_limit_path, &[], None).await?;
    assert_eq!(r.status, 200);
    Ok(())
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_a_freed_slot_is_reused() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &["--max-connections", "2"]).await?;
    // The harness's readiness check connected too, and holds a slot until the proxy has seen
    // it close; the listener may accept it together with the two below. So two are open
    // once both are served.
    let started = Instant::now();
    let (mut first, second) = loop {
        let mut first = H1Client::connect(gw.http).await?;
        let mut second = H1Client::connect(gw.http).await?;
        let a = first.send("GET", HOST, "/", &[], None).await;
        let b = second.send("GET", HOST, "/", &[], None).await;
        if let (Ok(a), Ok(b)) = (&a, &b) {
            assert_eq!((a.status, b.status), (200, 200));
            break (first, second);
        }
        anyhow::ensure!(
            started.elapsed() < WAIT,
            "two connections never served: {a:?} {b:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let rejected = r#"sluice_downstream_connections_rejected_total{listener="http-external"}"#;
    let before = metric(&gw, rejected).await?.unwrap_or(0.0);

    // The third is accepted by the kernel, then closed without an answer, and counted.
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    let bytes = until_closed(gw.http, request.as_bytes()).await?;
    assert!(bytes.is_empty(), "answered over the cap: {bytes:?}");
    assert_eq!(metric(&gw, rejected).await?, Some(before + 1.0));
    // The cap is per listener: the internal one still answers.
    let internal = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let bytes = until_closed(gw.internal, internal.as_bytes()).await?;
    assert_eq!(statuses(&bytes).len(), 1, "internal listener: {bytes:?}");
    // The open ones keep working.
    assert_eq!(first.send("GET", HOST, "/", &[], None).await?.status, 200);

    // Closing one frees its slot (once the proxy has seen the close).
    drop(second);
    let started = Instant::now();
    loop {
        let mut third = H1Client::connect(gw.http).await?;
        if let Ok(r) = third.send("GET", HOST, "/", &[], None).await {
            assert_eq!(r.status, 200);
            break;
        }
        anyhow::ensure!(started.elapsed() < WAIT, "the freed slot was never reused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_head_not_complete_within_the_header_read_timeout_is_closed() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(
        &backend,
        &["--header-read-timeout", "1s", "--idle-timeout", "30s"],
    )
    .await?;
    let partial_head = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n");
    let cases: [(&str, &[u8]); 4] = [
        ("nothing sent", b""),
        ("fewer bytes than the protocol sniff needs", b"GE"),
        ("half an h2c preface", b"PRI * HTTP/2.0\r\n"),
        ("a head without its end", partial_head.as_bytes()),
    ];
    for (name, sent) in cases {
        let started = Instant::now();
        let bytes = until_closed(gw.http, sent).await?;
        // No HTTP/1 answer (an h2 server sends its SETTINGS first, so not always no bytes).
        assert!(statuses(&bytes).is_empty(), "{name}: answered {bytes:?}");
        // Not closed before the timeout (a timer cannot fire early); until_closed bounds the
        // other side.
        assert!(started.elapsed() >= Duration::from_millis(900), "{name}");
    }

    // The bound runs from accept, not from the last byte: a client trickling a header byte
    // every 200 ms (never idle for long) is closed all the same.
    let started = Instant::now();
    let mut stream = TcpStream::connect(gw.http).await?;
    stream.write_all(partial_head.as_bytes()).await?;
    let mut closed = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if stream.write_all(b"X").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(1), stream.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a trickled head was never cut off");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // A whole h2c preface without a request is cut off the same way.
    let mut stream = TcpStream::connect(gw.http).await?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await?;
    read_until_closed(&mut stream).await?;

    assert_eq!(backend.requests(), 0);
    // A prompt client is served.
    let ok = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    assert_eq!(
        statuses(&until_closed(gw.http, ok.as_bytes()).await?),
        vec![200]
    );
    Ok(())
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(
        &backend,
        &["--idle-timeout", "1s", "--header-read-timeout", "30s"],
    )
    .await?;
    // Requests closer together than the timeout keep one connection for longer than it.
    let mut client = H1Client::connect(gw.http).await?;
    for _ in 0..5 {
        assert_eq!(client.send("GET", HOST, "/", &[], None).await?.status, 200);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(!client.is_closed(), "closed while in use");
    }
    // Left idle, it is closed.
    let started = Instant::now();
    while !client.is_closed() {
        anyhow::ensure!(started.elapsed() < WAIT, "idle connection still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
    Ok(())
}

/// An invalid chunk after a valid one: the head and first chunk are already on their way
/// upstream (bodies stream), so the backend sees a request whose body never ends; the client
/// gets 400 and both connections are closed.
#[tokio::test]
async fn an_invalid_chunk_mid_body_cuts_the_upstream_request_and_answers_400() -> anyhow::Result<()>
{
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let mut stream = TcpStream::connect(gw.http).await?;
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
    );
    stream.write_all(head.as_bytes()).await?;
    let started = Instant::now();
    while backend.requests() == 0 {
        anyhow::ensure!(
            started.elapsed() < WAIT,
            "the head never reached the backend"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream.write_all(b"zz\r\nabc\r\n0\r\n\r\n").await?;
    let bytes = read_until_closed(&mut stream).await?;
    assert_eq!(
        statuses(&bytes),
        vec![400],
        "{}",
        String::from_utf8_lossy(&bytes)
    );
    assert_eq!(backend.requests(), 1);
    Ok(())
}

/// The defaults themselves: 60 KiB of head, 100 headers, an 8192-byte target.
#[tokio::test]
async fn default_limits_refuse_just_past_their_peers_values() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(&backend, &[]).await?;
    let big = "a".repeat(60 * 1024);
    // Host is one of them. (Exactly 100 cannot pass through the echo backend: with the three
    // X-Forwarded-* added it is over hyper's 100 there. The boundary is shown with a lower flag
    // in `request_head_limits_answer_431_and_414`.)
    let headers = |n: usize| -> String { (0..n).map(|i| format!("X-H{i}: v\r\n")).collect() };
    let path = |n: usize| format!("/{}", "p".repeat(n - 1));
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "a head over 60 KiB",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {big}\r\n\r\n"),
            431,
        ),
        (
            "101 headers",
            format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n{}\r\n", headers(100)),
            431,
        ),
        (
            "an 8193-byte target",
            format!("GET {} HTTP/1.1\r\nHost: {HOST}\r\n\r\n", path(8193)),
            414,
        ),
        (
            "an 8192-byte target",
            format!(
                "GET {} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n",
                path(8192)
            ),
            200,
        ),
    ];
    for (name, request, want) in &cases {
        let bytes = until_closed(gw.http, request.as_bytes()).await?;
        let text = String::from_utf8_lossy(&bytes);
        assert_eq!(statuses(&bytes), vec![*want], "{name}: {text}");
    }
    assert_eq!(backend.requests(), 1);
    Ok(())
}

/// h2 has no idle bound of its own in hyper: a connection with no open stream for
/// `--idle-timeout` gets GOAWAY and is closed; one whose stream is still sending is not idle.
#[tokio::test]
async fn an_idle_h2c_connection_is_closed_but_a_long_stream_is_not_idle() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let gw = start(
        &backend,
        &["--idle-timeout", "1s", "--header-read-timeout", "30s"],
    )
    .await?;
    let client = H2cClient::connect(gw.http).await?;
    // Six one-byte chunks 300 ms apart: a stream open for longer than the idle timeout.
    let r = client
        .send("GET", HOST, "/?drip=6&drip_ms=300", &[], None)
        .await?;
    assert_eq!(r.status, 200);
    assert_eq!(&r.body[..], b"aaaaaa");
    assert!(!client.is_closed(), "closed while a stream was open");
    let started = Instant::now();
    while !client.is_closed() {
        anyhow::ensure!(started.elapsed() < WAIT, "idle h2c connection still open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(started.elapsed() >= Duration::from_millis(500));
    Ok(())
}

/// A raw upstream that answers `GET /bad` with `bad` and anything else with a clean 200, on
/// keep-alive connections; it records, per accepted connection, the paths it was asked for.
struct RawBackend {
    addr: SocketAddr,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Vec<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawBackend {
    async fn start(bad: &'static [u8]) -> anyhow::Result<RawBackend> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<String>>::new()));
        let log = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let index = {
                    let mut log = log.lock().expect("log");
                    log.push(Vec::new());
                    log.len() - 1
                };
                let log = log.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                            continue;
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        log.lock().expect("log")[index].push(path.clone());
                        let reply: &[u8] = if path == "/bad" {
                            bad
                        } else {
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                        };
                        if s.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Ok(RawBackend { addr, seen, task })
    }

    fn seen(&self) -> Vec<Vec<String>> {
        self.seen.lock().expect("log").clone()
    }
}

impl Drop for RawBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The upstream side of the smuggling vectors (issue 12: the HTTP/1.1 client's framing): a
/// misframed response head is 502 and a misframed body is cut, the bytes a lenient reader
/// would take for a second response never reach the client, and the connection that carried
/// it is never used again.
#[tokio::test]
async fn misframed_upstream_responses_are_refused_and_their_connection_dropped(
) -> anyhow::Result<()> {
    let cases: [(&str, &'static [u8], Option<u16>); 6] = [
        (
            "content-length beside chunked, hiding a second response",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nSMUGGLED",
            Some(502),
        ),
        (
            "two differing content-lengths",
            b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 8\r\n\r\nxSMUGGLED",
            Some(502),
        ),
        (
            "obs-fold",
            b"HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 0\r\n\r\n",
            Some(502),
        ),
        (
            "a coding other than chunked",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            Some(502),
        ),
        (
            "a negative chunk size",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n-1\r\nSMUGGLED\r\n0\r\n\r\n",
            None,
        ),
        (
            "a chunk size line ended by a bare LF",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n8\nSMUGGLED\r\n0\r\n\r\n",
            None,
        ),
    ];
    for (name, bad, want) in cases {
        let backend = RawBackend::start(bad).await?;
        let gw = Gateway::start_with(&manifest(backend.addr), &[]).await?;
        gw.wait_ingress_ready("ns", "h").await?;
        let request = format!("GET /bad HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        let bytes = until_closed(gw.http, request.as_bytes()).await?;
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("SMUGGLED"), "{name}: {text}");
        match want {
            Some(status) => assert_eq!(statuses(&bytes), vec![status], "{name}: {text}"),
            // The head was already accepted when the bad chunk came: the client's response is
            // cut (hyper may not even have flushed its head), never completed.
            None => {
                let got = statuses(&bytes);
                assert!(got.is_empty() || got == vec![200], "{name}: {text}");
                assert!(!text.ends_with("0\r\n\r\n"), "{name}: completed: {text}");
            }
        }
        // Later requests go out on other connections; the bad one carried its only request.
        for _ in 0..3 {
            let ok = format!("GET /ok HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
            assert_eq!(
                statuses(&until_closed(gw.http, ok.as_bytes()).await?),
                vec![200]
            );
        }
        let seen = backend.seen();
        let bad_connection = seen
            .iter()
            .find(|paths| paths.first().is_some_and(|p| p == "/bad"))
            .expect("the bad request reached the backend");
        assert_eq!(
            bad_connection,
            &vec!["/bad".to_string()],
            "{name}: {seen:?}"
        );
    }
    Ok(())
}

/// A gateway in front of a [`RawBackend`] that answers `GET /bad` with `response`, and what an
/// HTTP/1.1 client got for it. Both are returned for more requests.
async fn answered_by(response: &'static [u8]) -> anyhow::Result<(RawBackend, Gateway, String)> {
    let backend = RawBackend::start(response).await?;
    let gw = Gateway::start_with(&manifest(backend.addr), &[]).await?;
    gw.wait_ingress_ready("ns", "h").await?;
    let request = format!("GET /bad HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let bytes = until_closed(gw.http, request.as_bytes()).await?;
    Ok((backend, gw, String::from_utf8_lossy(&bytes).to_string()))
}

/// An upstream response head the proxy needs not change reaches an HTTP/1.1 client field by
/// field as it came (names in their case, repeated fields in order, every line ended by CRLF
/// even where the upstream used a bare LF), and an HTTP/2 client gets the same fields. One with
/// hop-by-hop fields still loses them, and what `Connection` names.
#[tokio::test]
async fn upstream_response_fields_pass_through_and_hop_by_hop_ones_do_not() -> anyhow::Result<()> {
    let plain: &'static [u8] =
        b"HTTP/1.1 200 OK\nX-Mixed-Case: One\nset-cookie: a=1\nset-cookie: b=2\nContent-Length: 2\n\nhi";
    let hop_by_hop: [&'static [u8]; 2] = [
        b"HTTP/1.1 200 OK\r\nConnection: x-drop\r\nX-Drop: 1\r\nX-Kept: 2\r\ncontent-length: 2\r\n\r\nhi",
        b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nX-Kept: 2\r\nProxy-Connection: x\r\ncontent-length: 2\r\n\r\nhi",
    ];
    let (_backend, gw, text) = answered_by(plain).await?;
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    assert_eq!(body, "hi", "{text}");
    let fields =
        "\r\nX-Mixed-Case: One\r\nset-cookie: a=1\r\nset-cookie: b=2\r\nContent-Length: 2\r\n";
    assert!(text.contains(fields), "{text}");
    assert!(
        !head.replace("\r\n", "").contains('\n'),
        "a bare LF went out: {text:?}"
    );
    let lower = head.to_ascii_lowercase();
    assert_eq!(lower.matches("\r\ncontent-length:").count(), 1, "{text}");
    assert_eq!(lower.matches("\r\ndate:").count(), 1, "{text}");
    let h2 = H2cClient::connect(gw.http).await?;
    let r = h2.send("GET", HOST, "/bad", &[], None).await?;
    assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));
    assert_eq!(r.header("x-mixed-case"), Some("One"));
    let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
    assert_eq!(r.header("content-length"), Some("2"));
    drop(gw);

    for response in hop_by_hop {
        let text = answered_by(response).await?.2.to_ascii_lowercase();
        let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
        assert_eq!(body, "hi", "{text}");
        assert!(text.contains("\r\nx-kept: 2\r\n"), "{text}");
        for gone in [
            "x-drop",
            "keep-alive",
            "proxy-connection",
            "connection: x-drop",
        ] {
            assert!(!head.contains(gone), "{gone} forwarded: {text}");
        }
    }
    Ok(())
}
