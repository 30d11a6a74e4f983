use std::time::Duration;

use sluice_testkit::{GrpcClient, GrpcPingServer, GrpcStatusError, H2cClient, PING_STREAM_METHOD};

#[tokio::test]
async fn bidi_stream_replies_to_each_message_before_the_next_is_sent() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("- pong").await?;
    let client = GrpcClient::connect(server.addr(), "grpc.example.com").await?;
    let msgs: Vec<Vec<u8>> = (0..20).map(|i| format!("hello {i}").into_bytes()).collect();
    let replies = client.ping_stream(&msgs).await?;
    let want: Vec<Vec<u8>> = msgs
        .iter()
        .map(|m| [m.as_slice(), b"- pong"].concat())
        .collect();
    assert_eq!(replies, want);
    assert_eq!(server.requests(), 1, "one stream");
    assert_eq!(server.messages(), 20);
    Ok(())
}

#[tokio::test]
async fn bidi_reply_arrives_while_the_request_stream_stays_open() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("!").await?;
    // A short bound: a server that buffered until the end of the request would never answer.
    let client = GrpcClient::connect(server.addr(), "grpc.example.com")
        .await?
        .with_timeout(Duration::from_secs(2));
    let mut stream = client.open(PING_STREAM_METHOD).await?;
    stream.send(b"first")?;
    assert_eq!(stream.recv().await?, Some(b"first!".to_vec()));
    assert_eq!(stream.roundtrip(b"second").await?, b"second!");
    stream.finish().await?;
    Ok(())
}

#[tokio::test]
async fn unary_ping_appends_the_suffix() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("- pong").await?;
    let client = GrpcClient::connect(server.addr(), "grpc.example.com").await?;
    assert_eq!(client.ping(b"hi").await?, b"hi- pong");
    assert_eq!(client.ping(b"").await?, b"- pong");
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 2);
    Ok(())
}

#[tokio::test]
async fn concurrent_streams_share_one_connection() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("+").await?;
    let client = GrpcClient::connect(server.addr(), "grpc.example.com").await?;
    let calls = (0..10).map(|i| {
        let client = client.clone();
        async move {
            client
                .ping_stream(&[format!("{i}a"), format!("{i}b")])
                .await
        }
    });
    for (i, replies) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            replies?,
            [format!("{i}a+").into_bytes(), format!("{i}b+").into_bytes()]
        );
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests(), 10);
    Ok(())
}

#[tokio::test]
async fn unknown_method_fails_with_unimplemented() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("- pong").await?;
    let client = GrpcClient::connect(server.addr(), "grpc.example.com").await?;
    let mut stream = client.open("/ping.PingService/Nope").await?;
    stream.send_last(b"x")?;
    let error = match stream.recv().await {
        Ok(reply) => anyhow::bail!("expected grpc-status 12, got {reply:?}"),
        Err(error) => error,
    };
    let status = error
        .downcast_ref::<GrpcStatusError>()
        .ok_or_else(|| anyhow::anyhow!("not a grpc status: {error:#}"))?;
    assert_eq!(status.code, 12);
    assert!(
        status.message.contains("/ping.PingService/Nope"),
        "{status}"
    );
    Ok(())
}

#[tokio::test]
async fn grpc_server_answers_probes() -> anyhow::Result<()> {
    let server = GrpcPingServer::start("- pong").await?;
    let probe = [("K-Network-Probe", "probe"), ("K-Network-Hash", "x")];
    let h1 = sluice_testkit::http1_request(server.addr(), "GET", "example.com", "/", &probe, None)
        .await?;
    let h2 = H2cClient::connect(server.addr())
        .await?
        .send("GET", "example.com", "/", &probe, None)
        .await?;
    for response in [h1, h2] {
        assert_eq!(response.status, 200);
        assert_eq!(response.header("k-network-hash"), Some("x"));
    }
    Ok(())
}
