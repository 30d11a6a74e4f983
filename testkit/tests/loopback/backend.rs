use sluice_testkit::{H1Client, H2cClient};

use crate::spawn_listening;

#[tokio::test]
async fn backend_binary_serves_its_body_over_http1_and_h2c() -> anyhow::Result<()> {
    let (_backend, addr) = spawn_listening(
        env!("CARGO_BIN_EXE_sluice-testkit-backend"),
        &["--listen", "127.0.0.1:0", "--body-bytes", "5"],
    )
    .await?;

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
