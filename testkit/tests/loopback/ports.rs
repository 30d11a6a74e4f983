use std::io::ErrorKind;

use sluice_testkit::{closed_port, free_port, http1_request};

#[tokio::test]
async fn closed_port_refuses_connections() -> anyhow::Result<()> {
    let addr = closed_port();
    assert!(addr.ip().is_loopback());
    let error = match tokio::net::TcpStream::connect(addr).await {
        Ok(_) => anyhow::bail!("{addr} accepted a connection"),
        Err(error) => error,
    };
    assert_eq!(error.kind(), ErrorKind::ConnectionRefused);
    let request = http1_request(addr, "GET", "example.com", "/", &[], None).await;
    assert!(request.is_err());
    Ok(())
}

#[tokio::test]
async fn free_port_can_be_bound() -> anyhow::Result<()> {
    let port = free_port();
    assert_ne!(port, 0);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    assert_eq!(listener.local_addr()?.port(), port);
    Ok(())
}
