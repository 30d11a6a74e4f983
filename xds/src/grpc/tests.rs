use super::*;
use crate::cache::{Change, SharedCache};
use crate::client::{ClientOptions, DataPlane};
use crate::load::{LoadReport, Poke, RevisionLoad};
use crate::model::{Backend, Certificate as CertificateResource, Protocol, Resource, Target};
use crate::protocol::{
    DeltaRequest, DeltaResponse, NamedResource, Node, RejectedResource, Rejection,
};
use crate::server::{BoxFuture, ServeWhile, SessionEvents, Sessions};
use crate::session::Rejected;
use crate::ResourceType;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(10);

/// Every wait in these tests is bounded.
async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Hands every stream to the test, which plays the controller's side by hand.
struct Handover {
    streams: mpsc::UnboundedSender<(Peer, ServerStream)>,
}

impl StreamHandler for Handover {
    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture {
        let _ = self.streams.send((peer, stream));
        Box::pin(async { Ok(()) })
    }
}

struct Controller {
    address: String,
    streams: mpsc::UnboundedReceiver<(Peer, ServerStream)>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), GrpcError>>,
}

impl Controller {
    async fn start(auth: ServerAuth) -> Controller {
        let listener = bind("127.0.0.1:0").await.expect("bind a free port");
        let address = listener.local_addr().expect("bound").to_string();
        let (streams_tx, streams) = mpsc::unbounded_channel();
        let (shutdown, shutdown_rx) = watch::channel(false);
        let handler = Arc::new(Handover {
            streams: streams_tx,
        });
        let task = tokio::spawn(serve(listener, handler, auth, shutdown_rx));
        Controller {
            address,
            streams,
            shutdown,
            task,
        }
    }

    async fn next_stream(&mut self) -> (Peer, ServerStream) {
        within("a stream at the handler", self.streams.recv())
            .await
            .expect("the server is running")
    }

    fn assert_no_stream(&mut self) {
        assert!(
            self.streams.try_recv().is_err(),
            "a refused stream must never reach the handler"
        );
    }

    fn connector(&self, token_file: Option<PathBuf>, tls: Option<TlsFiles>) -> GrpcConnector {
        GrpcConnector::new(GrpcClientConfig {
            endpoint: self.address.clone(),
            token_file,
            tls,
            server_name: Some(SERVER_NAME.to_string()),
        })
        .expect("a valid endpoint")
    }
}

fn write(dir: &tempfile::TempDir, name: &str, content: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write a test file");
    path
}

fn token_auth(path: &Path) -> ServerAuth {
    ServerAuth::new(Some(path.to_path_buf()), None).expect("token auth is enough")
}

async fn connect(connector: &GrpcConnector) -> ClientStream {
    within("connect", connector.connect())
        .await
        .unwrap_or_else(|e| panic!("connect failed: {e}"))
}

async fn refused(connector: &GrpcConnector) -> String {
    match within("connect", connector.connect()).await {
        Ok(_) => panic!("the stream should have been refused"),
        Err(error) => error,
    }
}

fn backend_response(nonce: &str) -> DeltaResponse {
    DeltaResponse {
        type_: ResourceType::Backend,
        nonce: nonce.into(),
        system_version: "1".into(),
        resources: vec![NamedResource::new(
            "default/hello:80",
            Resource::Backend(Backend {
                protocol: Protocol::H2c,
                target: Target::Endpoints,
                revision: None,
            }),
        )],
        removed: vec!["default/gone:80".into()],
        invalid: vec![],
        push_continues: false,
    }
}

#[test]
fn a_port_without_token_or_tls_is_refused() {
    let error = ServerAuth::new(None, None).expect_err("no authentication");
    assert_eq!(
        error.to_string(),
        "the xDS port needs --xds-token-file or --xds-ca/--xds-cert/--xds-key"
    );
}

#[tokio::test]
async fn serve_refuses_to_start_without_authentication_or_with_an_empty_token() {
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let (_shutdown, rx) = watch::channel(false);
    let (streams, _) = mpsc::unbounded_channel();
    let handler: Arc<dyn StreamHandler> = Arc::new(Handover { streams });
    let error = within(
        "serve",
        serve(listener, handler.clone(), ServerAuth::default(), rx.clone()),
    )
    .await
    .expect_err("no authentication");
    assert!(matches!(error, GrpcError::NoAuth));

    let dir = tempfile::tempdir().expect("tempdir");
    let blank = write(&dir, "token", " \n");
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let error = within("serve", serve(listener, handler, token_auth(&blank), rx))
        .await
        .expect_err("an empty token file");
    assert_eq!(
        error.to_string(),
        format!("token file {}: empty", blank.display())
    );
}

#[tokio::test]
async fn token_client_and_server_exchange_messages_both_ways() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "s3cret\n");
    let mut controller = Controller::start(token_auth(&token)).await;
    let connector = controller.connector(Some(token.clone()), None);
    assert_eq!(connector.describe(), controller.address);

    let mut client = connect(&connector).await;
    let (peer, mut server) = controller.next_stream().await;
    assert_eq!(peer.identity, "token");
    assert!(
        peer.address.starts_with("127.0.0.1:"),
        "the remote address: {}",
        peer.address
    );

    let sent = [
        ProxyMessage::Request(DeltaRequest {
            type_: Some(ResourceType::Backend),
            node: Some(Node {
                id: "proxy-0".into(),
                metadata: Default::default(),
            }),
            subscribe: vec!["*".into()],
            ..DeltaRequest::default()
        }),
        ProxyMessage::Request(DeltaRequest {
            type_: Some(ResourceType::Backend),
            response_nonce: Some("n-1".into()),
            error: Some(Rejection::new(vec![RejectedResource {
                name: "default/bad:80".into(),
                reason: "backend: missing target".into(),
            }])),
            ..DeltaRequest::default()
        }),
        ProxyMessage::Load(LoadReport {
            interval_ms: 1000,
            revisions: vec![RevisionLoad {
                revision: "default/hello-00001".into(),
                concurrency: 2.5,
                requests: 7.0,
                held: 0,
            }],
        }),
        ProxyMessage::Poke(Poke {
            revisions: vec![RevisionLoad {
                revision: "default/cold".into(),
                concurrency: 1.0,
                requests: 1.0,
                held: 0,
            }],
        }),
    ];
    for message in sent.clone() {
        client.tx.send(message).await.expect("stream open");
    }
    for want in sent {
        let got = within("a proxy message", server.rx.recv()).await;
        assert_eq!(got, Some(want));
    }

    for nonce in ["n-1", "n-2"] {
        let response = ControllerMessage::Response(backend_response(nonce));
        server.tx.send(response.clone()).await.expect("stream open");
        let got = within("a controller message", client.rx.recv()).await;
        assert_eq!(got, Some(response));
    }
}

#[tokio::test]
async fn missing_and_wrong_tokens_are_refused_before_the_handler() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "right");
    let wrong = write(&dir, "wrong", "wrong");
    let prefix = write(&dir, "prefix", "righ");
    let mut controller = Controller::start(token_auth(&token)).await;

    let error = refused(&controller.connector(None, None)).await;
    assert!(
        error.starts_with("controller refused the stream: unauthenticated: "),
        "{error}"
    );
    assert!(error.contains("missing authorization"), "{error}");
    controller.assert_no_stream();

    for bad in [&wrong, &prefix] {
        let error = refused(&controller.connector(Some(bad.clone()), None)).await;
        assert_eq!(
            error,
            "controller refused the stream: unauthenticated: xds stream: wrong token"
        );
        controller.assert_no_stream();
    }

    // The right token still works afterwards.
    let _client = connect(&controller.connector(Some(token), None)).await;
    controller.next_stream().await;
}

#[tokio::test]
async fn rewriting_the_token_file_changes_the_token_for_new_streams() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server_token = write(&dir, "server", "first\n");
    let client_token = write(&dir, "client", "first");
    let mut controller = Controller::start(token_auth(&server_token)).await;
    let connector = controller.connector(Some(client_token.clone()), None);

    let _open = connect(&connector).await;
    controller.next_stream().await;

    std::fs::write(&server_token, "second\n").expect("rotate the server's token");
    let error = refused(&connector).await;
    assert!(error.contains("unauthenticated"), "{error}");
    controller.assert_no_stream();

    // The proxy re-reads its own file on every connect, too.
    std::fs::write(&client_token, "  second  \n").expect("rotate the proxy's token");
    let _again = connect(&connector).await;
    controller.next_stream().await;
}

#[test]
fn bearer_tokens_are_read_with_any_scheme_case() {
    assert_eq!(bearer_token("Bearer abc"), Some("abc"));
    assert_eq!(bearer_token("bearer abc"), Some("abc"));
    assert_eq!(bearer_token("Basic abc"), None);
    assert_eq!(bearer_token("Bearer"), None);
    assert!(tokens_match("abc", "abc"));
    assert!(!tokens_match("abc", "abd"));
    assert!(!tokens_match("ab", "abc"));
}

#[tokio::test]
async fn connect_failure_names_the_endpoint() {
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("bound").to_string();
    drop(listener);
    let connector = GrpcConnector::new(GrpcClientConfig {
        endpoint: address.clone(),
        token_file: None,
        tls: None,
        server_name: None,
    })
    .expect("a valid endpoint");
    let error = refused(&connector).await;
    assert!(
        error.starts_with(&format!("connect to {address}: ")),
        "{error}"
    );
}

#[test]
fn endpoints_must_be_host_and_port() {
    for endpoint in ["http://127.0.0.1:1", "127.0.0.1", "no spaces:1 2"] {
        let result = GrpcConnector::new(GrpcClientConfig {
            endpoint: endpoint.into(),
            token_file: None,
            tls: None,
            server_name: None,
        });
        assert!(result.is_err(), "{endpoint} should be refused");
    }
}

#[tokio::test]
async fn dropping_the_client_stream_closes_the_handlers_side() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let mut controller = Controller::start(token_auth(&token)).await;
    let client = connect(&controller.connector(Some(token), None)).await;
    let (_, mut server) = controller.next_stream().await;
    drop(client);
    assert_eq!(
        within("the proxy side to close", server.rx.recv()).await,
        None
    );
}

#[tokio::test]
async fn server_shutdown_closes_the_clients_receiving_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let mut controller = Controller::start(token_auth(&token)).await;
    let mut client = connect(&controller.connector(Some(token.clone()), None)).await;
    let (_, mut server) = controller.next_stream().await;

    controller.shutdown.send_replace(true);
    assert_eq!(
        within("the client's channel to close", client.rx.recv()).await,
        None
    );
    assert_eq!(
        within("the handler's channel to close", server.rx.recv()).await,
        None
    );
    within("serve to return", &mut controller.task)
        .await
        .expect("serve task")
        .expect("serve ends cleanly");
    // The port is closed: new streams fail.
    let error = refused(&controller.connector(Some(token), None)).await;
    assert!(error.starts_with("connect to "), "{error}");
}

#[tokio::test]
async fn a_response_larger_than_four_mib_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let mut controller = Controller::start(token_auth(&token)).await;
    let mut client = connect(&controller.connector(Some(token), None)).await;
    let (_, server) = controller.next_stream().await;

    let certificate = |i: usize| {
        NamedResource::new(
            format!("default/tls-{i}"),
            Resource::Certificate(CertificateResource {
                secret: format!("default/tls-{i}"),
                cert_pem: "A".repeat(1024 * 1024),
                key_pem: "B".repeat(512),
                external_hosts: vec![format!("host-{i}.example.com")],
                internal_hosts: vec![],
            }),
        )
    };
    let response = ControllerMessage::Response(DeltaResponse {
        type_: ResourceType::Certificate,
        nonce: "big".into(),
        system_version: "1".into(),
        resources: (0..6).map(certificate).collect(),
        removed: vec![],
        invalid: vec![],
        push_continues: false,
    });
    server.tx.send(response.clone()).await.expect("stream open");
    let got = within("a 6 MiB response", client.rx.recv()).await;
    assert_eq!(got, Some(response));
}

#[tokio::test]
async fn a_plain_http1_request_gets_no_xds_response() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let mut controller = Controller::start(token_auth(&token)).await;
    let mut socket = within(
        "tcp connect",
        tokio::net::TcpStream::connect(&controller.address),
    )
    .await
    .expect("connect");
    socket
        .write_all(
            b"POST /sluice.v1.Discovery/Stream HTTP/1.1\r\nHost: controller\r\n\
              content-type: application/grpc\r\nte: trailers\r\n\
              authorization: Bearer t\r\ncontent-length: 0\r\n\r\n",
        )
        .await
        .expect("write");
    let mut answer = Vec::new();
    // The server closes the connection (after at most an HTTP/2 GOAWAY frame).
    let _ = within("the server to close", socket.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/"),
        "an HTTP/1 answer: {:?}",
        String::from_utf8_lossy(&answer)
    );
    controller.assert_no_stream();
}

// ---- refused and ended streams ----

const NOT_LEADER: &str = "not the leader: controller-b is not holding lease ns/sluice; retry";

/// A TCP relay in front of the controller's port, as a Service is: it counts the connections
/// it carries and those both ends have closed.
struct Relay {
    address: String,
    opened: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Relay {
    async fn start(target: String) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("bound").to_string();
        let (opened, closed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (counted, done) = (opened.clone(), closed.clone());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let (target, done) = (target.clone(), done.clone());
                connections.spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Relay {
            address,
            opened,
            closed,
            task,
        }
    }

    /// (opened, closed) once every connection it carried has closed.
    async fn all_closed(&self) -> (usize, usize) {
        within("the relayed connections to close", async {
            loop {
                let (opened, closed) = (
                    self.opened.load(Ordering::SeqCst),
                    self.closed.load(Ordering::SeqCst),
                );
                if opened == closed {
                    return (opened, closed);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Keeps each stream until the proxy closes it, as a session does.
struct Holder;

impl StreamHandler for Holder {
    fn open(&self, _peer: Peer, mut stream: ServerStream) -> BoxFuture {
        Box::pin(async move {
            while stream.rx.recv().await.is_some() {}
            Ok(())
        })
    }
}

/// A token-authenticated port served by `ServeWhile` over `inner`.
async fn serve_while(
    token: &Path,
    inner: Arc<dyn StreamHandler>,
) -> (String, watch::Sender<bool>, watch::Sender<bool>) {
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("bound").to_string();
    let (serving, serving_rx) = watch::channel(false);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let handler = ServeWhile::new(serving_rx, NOT_LEADER.to_string(), inner);
    tokio::spawn(serve(listener, handler, token_auth(token), shutdown_rx));
    (address, serving, shutdown)
}

#[tokio::test]
async fn a_stream_not_admitted_is_refused_unavailable_and_its_connection_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let (streams_tx, mut streams) = mpsc::unbounded_channel();
    let (address, serving, _shutdown) = serve_while(
        &token,
        Arc::new(Handover {
            streams: streams_tx,
        }),
    )
    .await;
    let relay = Relay::start(address).await;
    let connector = token_connector(relay.address.clone(), token);

    // Each attempt is its own connection, closed once refused: a retry behind a Service is
    // balanced afresh.
    for attempt in 1..=2 {
        assert_eq!(
            refused(&connector).await,
            format!("controller refused the stream: unavailable: {NOT_LEADER}")
        );
        assert_eq!(relay.all_closed().await, (attempt, attempt));
    }
    assert!(streams.try_recv().is_err(), "never reached the handler");

    serving.send_replace(true);
    let _client = connect(&connector).await;
    within("the admitted stream", streams.recv())
        .await
        .expect("the server is running");
    assert_eq!(relay.opened.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn streams_are_ended_unavailable_with_the_reason_when_serving_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let (address, serving, _shutdown) = serve_while(&token, Arc::new(Holder)).await;
    serving.send_replace(true);
    let relay = Relay::start(address).await;

    // The status as tonic's own client sees it.
    let channel = within(
        "connect",
        Endpoint::from_shared(format!("http://{}", relay.address))
            .expect("uri")
            .connect(),
    )
    .await
    .expect("connected");
    let (_keep_open, outgoing) = mpsc::channel::<pb::ProxyMessage>(1);
    let mut request = Request::new(ReceiverStream::new(outgoing));
    request.metadata_mut().insert(
        "authorization",
        MetadataValue::try_from("Bearer t").expect("ascii"),
    );
    let mut incoming = within("the stream", DiscoveryClient::new(channel).stream(request))
        .await
        .expect("admitted")
        .into_inner();

    // Through the proxy's connector: its channel closes, and its connection with it.
    let connector = token_connector(relay.address.clone(), token);
    let mut client = connect(&connector).await;

    serving.send_replace(false);
    let status = within("the stream to end", incoming.message())
        .await
        .expect_err("ended with a status");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), NOT_LEADER);
    assert_eq!(within("the proxy's channel", client.rx.recv()).await, None);
    drop(client);
    drop(incoming);
    assert_eq!(relay.all_closed().await, (2, 2));
}

// ---- mTLS ----

const SERVER_NAME: &str = "controller.sluice.test";

struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
    ca_file: PathBuf,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key"))
            .expect("ca certificate");
        let dir = tempfile::tempdir().expect("tempdir");
        let ca_file = write(&dir, "ca.pem", &ca.pem());
        Pki { dir, ca, ca_file }
    }

    /// A leaf signed by this CA, written as `<cn>.pem` and `<cn>.key`.
    fn leaf(&self, cn: &str, usage: ExtendedKeyUsagePurpose, ca_file: &Path) -> TlsFiles {
        let mut params =
            CertificateParams::new(vec![SERVER_NAME.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf certificate");
        TlsFiles {
            ca: ca_file.to_path_buf(),
            cert: write(&self.dir, &format!("{cn}.pem"), &cert.pem()),
            key: write(&self.dir, &format!("{cn}.key"), &key.serialize_pem()),
        }
    }

    fn server(&self) -> TlsFiles {
        self.leaf(
            "controller",
            ExtendedKeyUsagePurpose::ServerAuth,
            &self.ca_file,
        )
    }

    /// A proxy's identity; it verifies the controller with `controller_ca`.
    fn client(&self, cn: &str, controller_ca: &Path) -> TlsFiles {
        self.leaf(cn, ExtendedKeyUsagePurpose::ClientAuth, controller_ca)
    }
}

#[tokio::test]
async fn mtls_client_with_a_certificate_from_the_ca_is_accepted_and_named() {
    let pki = Pki::new("sluice test ca");
    let mut controller =
        Controller::start(ServerAuth::new(None, Some(pki.server())).expect("tls auth is enough"))
            .await;
    let connector = controller.connector(None, Some(pki.client("proxy-7", &pki.ca_file)));
    let mut client = connect(&connector).await;
    let (peer, server) = controller.next_stream().await;
    assert_eq!(peer.identity, "mtls:proxy-7");

    let response = ControllerMessage::Response(backend_response("n-1"));
    server.tx.send(response.clone()).await.expect("stream open");
    assert_eq!(within("a response", client.rx.recv()).await, Some(response));
}

#[tokio::test]
async fn mtls_refuses_clients_without_a_certificate_or_from_another_ca() {
    let pki = Pki::new("sluice test ca");
    let other = Pki::new("another ca");
    let mut controller =
        Controller::start(ServerAuth::new(None, Some(pki.server())).expect("tls auth is enough"))
            .await;

    // A client cert from another CA (it trusts the right controller CA itself).
    let foreign = other.client("intruder", &pki.ca_file);
    let error = refused(&controller.connector(None, Some(foreign))).await;
    assert!(
        error.starts_with(&format!("open stream to {}: ", controller.address)),
        "{error}"
    );
    controller.assert_no_stream();

    // No client certificate at all: plain TLS against the right CA.
    let ca = std::fs::read(&pki.ca_file).expect("ca");
    let channel = Endpoint::from_shared(format!("https://{}", controller.address))
        .expect("uri")
        .connect_timeout(WAIT)
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name(SERVER_NAME),
        )
        .expect("tls config");
    let result = within("a connect without a certificate", async {
        let channel = channel.connect().await.map_err(|e| error_chain(&e))?;
        let (_tx, rx) = mpsc::channel::<ProxyMessage>(1);
        DiscoveryClient::new(channel)
            .stream(ReceiverStream::new(rx).map(pb::ProxyMessage::from))
            .await
            .map(|_| ())
            .map_err(|status| status.to_string())
    })
    .await;
    let error = result.expect_err("a client without a certificate got a stream");
    assert!(error.contains("CertificateRequired"), "{error}");
    controller.assert_no_stream();

    // And the right client still gets in.
    let _ok = connect(&controller.connector(None, Some(pki.client("proxy-1", &pki.ca_file)))).await;
    controller.next_stream().await;
}

#[tokio::test]
async fn mtls_and_token_together_both_must_pass() {
    let pki = Pki::new("sluice test ca");
    let token = write(&pki.dir, "token", "both");
    let wrong = write(&pki.dir, "wrong", "nope");
    let mut controller =
        Controller::start(ServerAuth::new(Some(token.clone()), Some(pki.server())).expect("both"))
            .await;
    let identity = pki.client("proxy-2", &pki.ca_file);

    let error = refused(&controller.connector(None, Some(identity.clone()))).await;
    assert!(error.contains("unauthenticated"), "{error}");
    let error = refused(&controller.connector(Some(wrong), Some(identity.clone()))).await;
    assert!(error.contains("wrong token"), "{error}");
    controller.assert_no_stream();

    let _ok = connect(&controller.connector(Some(token), Some(identity))).await;
    let (peer, _) = controller.next_stream().await;
    assert_eq!(peer.identity, "mtls:proxy-2");
}

// ---- the real session and client over gRPC ----

#[derive(Default)]
struct Plane {
    applied: Mutex<Vec<(ResourceType, String)>>,
    held: Mutex<BTreeMap<ResourceType, BTreeMap<String, String>>>,
    poke: Notify,
}

impl DataPlane for Plane {
    fn apply(&self, responses: &[DeltaResponse]) -> Vec<Result<(), Rejection>> {
        let mut applied = self.applied.lock().expect("not poisoned");
        let mut held = self.held.lock().expect("not poisoned");
        for response in responses {
            let held = held.entry(response.type_).or_default();
            for resource in &response.resources {
                applied.push((response.type_, resource.name.clone()));
                held.insert(resource.name.clone(), resource.version.clone());
            }
            for name in &response.removed {
                held.remove(name);
            }
        }
        responses.iter().map(|_| Ok(())).collect()
    }
    fn held(&self, type_: ResourceType) -> BTreeMap<String, String> {
        self.held
            .lock()
            .expect("not poisoned")
            .get(&type_)
            .cloned()
            .unwrap_or_default()
    }
    fn take_load(&self) -> LoadReport {
        LoadReport::default()
    }
    fn take_pokes(&self) -> Poke {
        Poke::default()
    }
    fn poke_notify(&self) -> &Notify {
        &self.poke
    }
}

#[derive(Default)]
struct Events {
    connected: Mutex<Vec<(String, Peer)>>,
}

impl SessionEvents for Events {
    fn connected(&self, _session: u64, node: &Node, peer: &Peer) {
        self.connected
            .lock()
            .expect("not poisoned")
            .push((node.id.clone(), peer.clone()));
    }
    fn applied(&self, _session: u64, _applied: u64) {}
    fn rejections(&self, _session: u64, _rejected: Vec<Rejected>) {}
    fn load(&self, _session: u64, _report: LoadReport) {}
    fn poke(&self, _session: u64, _poke: Poke) {}
    fn disconnected(&self, _session: u64) {}
}

#[tokio::test]
async fn sessions_and_the_client_loop_sync_over_grpc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token = write(&dir, "token", "t");
    let cache = Arc::new(SharedCache::new());
    cache.apply([Change::put(
        "default/hello:80",
        Resource::Backend(Backend {
            protocol: Protocol::Http1,
            target: Target::Endpoints,
            revision: None,
        }),
    )]);
    let events = Arc::new(Events::default());
    let listener = bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("bound").to_string();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let server = tokio::spawn(serve(
        listener,
        Sessions::new(cache, events.clone()),
        token_auth(&token),
        shutdown_rx.clone(),
    ));

    let connector = Arc::new(token_connector(address, token));
    let plane = Arc::new(Plane::default());
    let node = Node {
        id: "proxy-9".into(),
        metadata: Default::default(),
    };
    let ready = Arc::new(Notify::new());
    let on_ready = {
        let ready = ready.clone();
        Box::new(move || ready.notify_one())
    };
    let client = tokio::spawn(crate::client::run(
        connector,
        plane.clone(),
        ClientOptions::new(node, ResourceType::ALL.to_vec()),
        on_ready,
        shutdown_rx,
    ));

    within("the proxy to become ready", ready.notified()).await;
    assert!(plane
        .applied
        .lock()
        .expect("not poisoned")
        .contains(&(ResourceType::Backend, "default/hello:80".to_string())));
    let connected = events.connected.lock().expect("not poisoned").clone();
    assert_eq!(connected.len(), 1);
    assert_eq!(connected[0].0, "proxy-9");
    assert_eq!(connected[0].1.identity, "token");

    shutdown.send_replace(true);
    within("the client loop to stop", client)
        .await
        .expect("client task");
    within("serve to return", server)
        .await
        .expect("serve task")
        .expect("clean shutdown");
}

/// A plaintext connector that sends the token in `token`.
fn token_connector(endpoint: String, token: PathBuf) -> GrpcConnector {
    GrpcConnector::new(GrpcClientConfig {
        endpoint,
        token_file: Some(token),
        tls: None,
        server_name: None,
    })
    .expect("endpoint")
}

/// A connection's reads fail at [`PREFACE_TIMEOUT`] until it has sent [`PREFACE_BYTES`];
/// after that it may be silent for as long as it likes (the HTTP/2 keepalive watches it), and
/// its connection slot is held until it is dropped.
#[tokio::test(start_paused = true)]
async fn a_connection_must_send_the_preface_in_time_and_holds_a_slot() {
    let slots = Arc::new(Semaphore::new(1));
    let (mut client, server) = tokio::io::duplex(1024);
    let mut silent = Accepted::new(
        server,
        slots.clone().try_acquire_owned().expect("a free slot"),
    );
    assert!(
        slots.clone().try_acquire_owned().is_err(),
        "the slot is held"
    );
    let mut buf = [0u8; 64];
    let error = silent
        .read(&mut buf)
        .await
        .expect_err("a read past the deadline fails");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    drop(silent);
    let permit = slots
        .clone()
        .try_acquire_owned()
        .expect("freed when dropped");

    let (mut client2, server) = tokio::io::duplex(1024);
    let mut talker = Accepted::new(server, permit);
    client2
        .write_all(&[0u8; PREFACE_BYTES])
        .await
        .expect("write");
    let mut got = 0;
    while got < PREFACE_BYTES {
        got += talker.read(&mut buf).await.expect("read");
    }
    // Past the deadline, a read just waits.
    tokio::time::advance(PREFACE_TIMEOUT * 2).await;
    let read = tokio::time::timeout(Duration::from_secs(1), talker.read(&mut buf)).await;
    assert!(read.is_err(), "still waiting: {read:?}");
    client2.write_all(b"x").await.expect("write");
    assert_eq!(talker.read(&mut buf).await.expect("read"), 1);
    client.shutdown().await.expect("shutdown");
}
