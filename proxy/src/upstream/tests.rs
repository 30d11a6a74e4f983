use super::*;
use crate::balance::Address;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

async fn pooled_connection(listener: &TcpListener, endpoint: &Arc<Endpoint>) -> (Conn, TcpStream) {
    let Ok(Sender::Http1 { conn, .. }) =
        connect(endpoint, Protocol::Http1, Duration::from_secs(5)).await
    else {
        panic!("an HTTP/1.1 connection")
    };
    let (server_side, _) = listener.accept().await.expect("accepted");
    (conn, server_side)
}

/// Whether the peer closed `s` (EOF), waiting at most a few seconds.
async fn closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await,
        Ok(Ok(0))
    )
}

#[tokio::test]
async fn idle_connections_of_an_endpoint_that_left_are_closed() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bound");
    let addr = listener.local_addr().expect("address");
    let gone = Endpoint::new(Address::Socket(addr));
    let stays = Endpoint::new(Address::Socket(addr));
    let (first, mut first_server) = pooled_connection(&listener, &gone).await;
    let (second, _second_server) = pooled_connection(&listener, &stays).await;
    checkin(&gone, first);
    // The endpoint leaves the config; the next use of this thread's pool sweeps it out.
    drop(gone);
    checkin(&stays, second);
    assert!(
        closed(&mut first_server).await,
        "the departed endpoint's connection is closed"
    );
    assert!(
        checkout(&stays, Protocol::Http1).is_some(),
        "the live endpoint's connection stays pooled"
    );
}
