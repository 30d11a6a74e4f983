use sluice_testkit::{http1_request, ws_roundtrips, WebsocketEchoServer};

#[tokio::test]
async fn websocket_replies_append_the_suffix() -> anyhow::Result<()> {
    let server = WebsocketEchoServer::start("- pong").await?;
    let msgs: Vec<String> = (0..5).map(|i| format!("ping {i}")).collect();
    let replies = ws_roundtrips(server.addr(), "ws.example.com", "/", &msgs).await?;
    let want: Vec<String> = msgs.iter().map(|m| format!("{m} - pong")).collect();
    assert_eq!(replies, want);
    assert_eq!(server.connections(), 1);
    assert_eq!(server.upgrades(), 1);
    assert_eq!(server.messages(), 5);
    Ok(())
}

#[tokio::test]
async fn websocket_server_answers_probes_and_refuses_plain_requests() -> anyhow::Result<()> {
    let server = WebsocketEchoServer::start("- pong").await?;
    let probe = [("K-Network-Probe", "probe"), ("K-Network-Hash", "h1")];
    let probed = http1_request(server.addr(), "GET", "example.com", "/", &probe, None).await?;
    assert_eq!(probed.status, 200);
    assert_eq!(probed.header("k-network-hash"), Some("h1"));
    let plain = http1_request(server.addr(), "GET", "example.com", "/", &[], None).await?;
    assert_eq!(plain.status, 400);
    assert_eq!(server.upgrades(), 0);
    Ok(())
}
