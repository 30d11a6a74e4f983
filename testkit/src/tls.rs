//! TLS for the test clients: [`TlsClient`] connects with rustls (ring), trusting only the
//! certificates a test gives it, and reports what the handshake chose ([`TlsInfo`]).
//!
//! The HTTP clients take a connected TLS stream through their `connect_tls` constructors
//! ([`crate::H1Client::connect_tls`], [`crate::H2cClient::connect_tls`],
//! [`crate::GrpcClient::connect_tls`]); everything else about them is unchanged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

use crate::{bounded, DEFAULT_TIMEOUT};

/// ALPN id of HTTP/2.
pub const ALPN_H2: &[u8] = b"h2";
/// ALPN id of HTTP/1.1.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// A rustls client configuration: trusted roots, ALPN offer, SNI on or off; no session
/// resumption, so every connection is a full handshake.
#[derive(Clone, Debug)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    roots: Arc<RootCertStore>,
    timeout: Duration,
}

/// What one handshake negotiated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// DER of the leaf certificate the server presented.
    pub peer_certificate: Vec<u8>,
    /// The ALPN protocol the server selected, if any.
    pub alpn: Option<Vec<u8>>,
    /// `TLSv1_2` or `TLSv1_3`.
    pub version: String,
}

impl TlsClient {
    /// Trusts exactly the certificates in `pems` (each PEM text may hold several); offers
    /// ALPN `alpn` (empty: no ALPN); TLS 1.2 and 1.3; sends SNI.
    pub fn new(pems: &[&str], alpn: &[&[u8]]) -> anyhow::Result<TlsClient> {
        let mut roots = RootCertStore::empty();
        for pem in pems {
            for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
                roots
                    .add(cert.context("parse trusted certificate")?)
                    .context("add trusted certificate")?;
            }
        }
        let roots = Arc::new(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .context("tls versions")?
            .with_root_certificates(roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        // Every connection is a full handshake: a resumed session would report the certificate
        // of the session it resumes, not the one the server would choose now.
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            roots,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same configuration without the SNI extension.
    pub fn without_sni(&self) -> TlsClient {
        let mut config = (*self.config).clone();
        config.enable_sni = false;
        TlsClient {
            config: Arc::new(config),
            roots: self.roots.clone(),
            timeout: self.timeout,
        }
    }

    /// Only TLS 1.2 (to check the server still offers it).
    pub fn tls12_only(&self) -> anyhow::Result<TlsClient> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS12])
            .context("tls versions")?
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.alpn_protocols = self.config.alpn_protocols.clone();
        config.resumption = rustls::client::Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            roots: self.roots.clone(),
            timeout: self.timeout,
        })
    }

    /// Connects to `addr` and completes a handshake for `server_name` (SNI and the name the
    /// certificate must carry), bounded by [`DEFAULT_TIMEOUT`].
    pub async fn connect(
        &self,
        addr: SocketAddr,
        server_name: &str,
    ) -> anyhow::Result<(TlsStream<TcpStream>, TlsInfo)> {
        let name = ServerName::try_from(server_name.to_owned())
            .with_context(|| format!("invalid server name {server_name:?}"))?;
        let connector = TlsConnector::from(self.config.clone());
        bounded(
            self.timeout,
            format!("tls handshake with {addr} for {server_name}"),
            async move {
                let tcp = TcpStream::connect(addr)
                    .await
                    .with_context(|| format!("connect to {addr}"))?;
                tcp.set_nodelay(true).context("set TCP_NODELAY")?;
                let stream = connector
                    .connect(name, tcp)
                    .await
                    .with_context(|| format!("tls handshake with {addr} for {server_name}"))?;
                let (_, session) = stream.get_ref();
                let info = TlsInfo {
                    peer_certificate: session
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|leaf| leaf.as_ref().to_vec())
                        .unwrap_or_default(),
                    alpn: session.alpn_protocol().map(<[u8]>::to_vec),
                    version: session
                        .protocol_version()
                        .map(|v| format!("{v:?}"))
                        .unwrap_or_default(),
                };
                Ok((stream, info))
            },
        )
        .await
    }
}

/// The DER of the first certificate in `pem`, to compare with [`TlsInfo::peer_certificate`].
pub fn leaf_der(pem: &str) -> anyhow::Result<Vec<u8>> {
    let cert = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .context("no certificate in pem")?
        .context("parse certificate")?;
    Ok(cert.as_ref().to_vec())
}
