use super::*;
use crate::cache::Change;
use crate::client::tests::{backend, route, FakePlane};
use crate::client::{run, ClientOptions, DataPlane};
use crate::model::{Certificate, Resource, ResourceType};
use crate::protocol::{DeltaRequest, DeltaResponse};
use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;

/// Every wait in these tests is bounded by this.
const BOUND: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq)]
enum Event {
    Connected { node: String, peer: Peer },
    Applied(u64),
    Rejections(Vec<Rejected>),
    Load(LoadReport),
    Poke(Poke),
    Disconnected,
}

/// `SessionEvents` that records every call, with its session and time.
struct Recorder {
    tx: mpsc::UnboundedSender<(u64, Instant, Event)>,
}

type Events = mpsc::UnboundedReceiver<(u64, Instant, Event)>;

impl Recorder {
    fn new() -> (Arc<Recorder>, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Arc::new(Recorder { tx }), rx)
    }

    fn record(&self, session: u64, event: Event) {
        // The receiver is gone only once the test is over.
        let _ = self.tx.send((session, Instant::now(), event));
    }
}

impl SessionEvents for Recorder {
    fn connected(&self, session: u64, node: &Node, peer: &Peer) {
        let event = Event::Connected {
            node: node.id.clone(),
            peer: peer.clone(),
        };
        self.record(session, event);
    }
    fn applied(&self, session: u64, applied: u64) {
        self.record(session, Event::Applied(applied));
    }
    fn rejections(&self, session: u64, rejected: Vec<Rejected>) {
        self.record(session, Event::Rejections(rejected));
    }
    fn load(&self, session: u64, report: LoadReport) {
        self.record(session, Event::Load(report));
    }
    fn poke(&self, session: u64, poke: Poke) {
        self.record(session, Event::Poke(poke));
    }
    fn disconnected(&self, session: u64) {
        self.record(session, Event::Disconnected);
    }
}

/// Waits (bounded) for the first event `want` accepts, skipping the others.
async fn wait_for(
    events: &mut Events,
    what: &str,
    want: impl Fn(u64, &Event) -> bool,
) -> (u64, Instant, Event) {
    let deadline = Instant::now() + BOUND;
    let mut skipped = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some((session, at, event))) => {
                if want(session, &event) {
                    return (session, at, event);
                }
                skipped.push((session, event));
            }
            Ok(None) => panic!("events closed while waiting for {what}; saw {skipped:#?}"),
            Err(_) => panic!("no {what} within {BOUND:?}; saw {skipped:#?}"),
        }
    }
}

async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {BOUND:?}"))
}

fn node(id: &str) -> Node {
    Node {
        id: id.into(),
        metadata: Default::default(),
    }
}

fn opening(type_: ResourceType, node_id: Option<&str>) -> ProxyMessage {
    ProxyMessage::Request(DeltaRequest {
        type_: Some(type_),
        node: node_id.map(node),
        subscribe: vec!["*".into()],
        ..DeltaRequest::default()
    })
}

fn ack(response: &DeltaResponse) -> ProxyMessage {
    ProxyMessage::Request(DeltaRequest {
        type_: Some(response.type_),
        response_nonce: Some(response.nonce.clone()),
        ..DeltaRequest::default()
    })
}

/// A stream for `serve_session`, and the proxy's ends of it.
fn raw_stream() -> (
    mpsc::Sender<ProxyMessage>,
    mpsc::Receiver<ControllerMessage>,
    ServerStream,
) {
    let (proxy_tx, server_rx) = mpsc::channel(STREAM_BUFFER);
    let (server_tx, proxy_rx) = mpsc::channel(STREAM_BUFFER);
    let stream = ServerStream {
        rx: server_rx,
        tx: server_tx,
    };
    (proxy_tx, proxy_rx, stream)
}

async fn next_response(rx: &mut mpsc::Receiver<ControllerMessage>) -> DeltaResponse {
    match bounded("a response", rx.recv()).await {
        Some(ControllerMessage::Response(response)) => response,
        None => panic!("stream closed"),
    }
}

#[tokio::test(start_paused = true)]
async fn opening_requests_that_arrive_together_are_answered_in_one_push() {
    let cache = Arc::new(SharedCache::new());
    cache.apply([Change::put("ns/a:80", backend(1))]);
    let (events, mut seen) = Recorder::new();
    let (tx, mut rx, stream) = raw_stream();
    for (i, type_) in ResourceType::ALL.into_iter().rev().enumerate() {
        tx.send(opening(type_, (i == 0).then_some("proxy-0")))
            .await
            .expect("buffered");
    }
    tokio::spawn(serve_session(1, cache, events, Peer::default(), stream));
    let mut push = Vec::new();
    for _ in ResourceType::ALL {
        push.push(next_response(&mut rx).await);
    }
    let types: Vec<_> = push.iter().map(|r| r.type_).collect();
    assert_eq!(types, ResourceType::ALL.to_vec());
    for response in &push {
        tx.send(ack(response)).await.expect("open");
    }
    wait_for(&mut seen, "applied", |_, e| *e == Event::Applied(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_stream_opened_before_the_first_load_is_answered_only_after_it() {
    // The cache is empty until the "load" publishes; answering earlier would make the proxy
    // ready with nothing to serve.
    let cache = Arc::new(SharedCache::new());
    let (events, _seen) = Recorder::new();
    let (loaded, open) = watch::channel(false);
    let handler = OpenWhen::new(open, Sessions::new(cache.clone(), events));
    let (tx, mut rx, stream) = raw_stream();
    tokio::spawn(handler.open(Peer::default(), stream));
    for (i, type_) in ResourceType::ALL.into_iter().enumerate() {
        tx.send(opening(type_, (i == 0).then_some("proxy-0")))
            .await
            .expect("queued while the controller loads");
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing is answered before the load"
    );
    cache.apply([Change::put("ns/a:80", backend(1))]);
    loaded.send_replace(true);
    let first = next_response(&mut rx).await;
    assert_eq!(first.type_, ResourceType::ALL[0]);
    let mut names = Vec::new();
    let mut response = first;
    loop {
        names.extend(response.resources.iter().map(|r| r.name.clone()));
        if response.type_ == ResourceType::ALL[ResourceType::ALL.len() - 1] {
            break;
        }
        response = next_response(&mut rx).await;
    }
    assert_eq!(names, ["ns/a:80"], "the first push is the loaded config");

    // A control plane that stops before loading drops the streams waiting for it.
    let (loaded, open) = watch::channel(false);
    let (events, _seen) = Recorder::new();
    let handler = OpenWhen::new(open, Sessions::new(cache, events));
    let (_tx, mut rx, stream) = raw_stream();
    let waiting = tokio::spawn(handler.open(Peer::default(), stream));
    drop(loaded);
    let ended = bounded("the waiting stream ends", waiting)
        .await
        .expect("no panic");
    assert_eq!(ended, Ok(()), "dropped quietly");
    assert!(rx.recv().await.is_none(), "the stream is closed");
}

#[tokio::test(start_paused = true)]
async fn a_push_bigger_than_the_stream_buffers_does_not_stop_the_controller_reading() {
    let cache = Arc::new(SharedCache::new());
    let count = (STREAM_BUFFER + 8) * crate::session::MAX_PER_RESPONSE;
    cache.apply((0..count).map(|i| Change::put(format!("b{i:06}"), backend(1))));
    let (events, mut seen) = Recorder::new();
    let (tx, mut rx, stream) = raw_stream();
    tokio::spawn(serve_session(1, cache, events, Peer::default(), stream));
    tx.send(opening(ResourceType::Backend, Some("proxy-0")))
        .await
        .expect("open");
    // The proxy is busy and reads nothing for a while, but keeps reporting load: the
    // controller must keep reading it, whatever it still has to send.
    let reports = 2 * STREAM_BUFFER;
    for n in 1..=reports {
        let report = FakePlane::load_report(u32::try_from(n).expect("small"));
        bounded("sending a load report", tx.send(ProxyMessage::Load(report)))
            .await
            .expect("open");
    }
    wait_for(
        &mut seen,
        "the last load report",
        |_, e| matches!(e, Event::Load(r) if r.revisions[0].concurrency as usize == reports),
    )
    .await;
    // Then it catches up and answers everything.
    let mut sent = 0;
    while sent < count {
        let response = next_response(&mut rx).await;
        sent += response.resources.len();
        tx.send(ack(&response)).await.expect("open");
    }
    assert_eq!(sent, count);
    wait_for(&mut seen, "applied", |_, e| *e == Event::Applied(1)).await;
}

#[tokio::test(start_paused = true)]
async fn only_a_stream_that_named_its_proxy_is_reported_connected_and_disconnected() {
    let cache = Arc::new(SharedCache::new());
    let (events, mut seen) = Recorder::new();
    let peer = Peer {
        address: "10.0.0.1:4000".into(),
        identity: "token".into(),
    };

    // Anonymous: its load is still recorded, but it never connected.
    let (tx, _rx, stream) = raw_stream();
    let anonymous = tokio::spawn(serve_session(
        1,
        cache.clone(),
        events.clone(),
        peer.clone(),
        stream,
    ));
    tx.send(ProxyMessage::Load(FakePlane::load_report(1)))
        .await
        .expect("open");
    drop(tx);
    bounded("the anonymous stream to end", anonymous)
        .await
        .expect("no panic");

    let (tx, _rx, stream) = raw_stream();
    let named = tokio::spawn(serve_session(2, cache, events, peer.clone(), stream));
    tx.send(opening(ResourceType::Backend, Some("proxy-7")))
        .await
        .expect("open");
    drop(tx);
    bounded("the named stream to end", named)
        .await
        .expect("no panic");

    let mut all = Vec::new();
    while let Ok((session, _, event)) = seen.try_recv() {
        if !matches!(event, Event::Applied(_)) {
            all.push((session, event));
        }
    }
    assert_eq!(
        all,
        vec![
            (1, Event::Load(FakePlane::load_report(1))),
            (
                2,
                Event::Connected {
                    node: "proxy-7".into(),
                    peer
                }
            ),
            (2, Event::Disconnected),
        ]
    );
}

/// Everything a running client needs, on the in-process transport.
struct Proxy {
    plane: Arc<FakePlane>,
    applied: mpsc::UnboundedReceiver<Vec<DeltaResponse>>,
    ready: oneshot::Receiver<()>,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn start_proxy(connector: Arc<dyn Connector>, options: ClientOptions) -> Proxy {
    let (plane, applied) = FakePlane::new();
    let (ready_tx, ready) = oneshot::channel();
    let (shutdown, shutdown_rx) = watch::channel(false);
    let on_ready = Box::new(move || {
        // The test may have stopped waiting.
        let _ = ready_tx.send(());
    });
    let task = tokio::spawn(run(
        connector,
        plane.clone(),
        options,
        on_ready,
        shutdown_rx,
    ));
    Proxy {
        plane,
        applied,
        ready,
        shutdown,
        task,
    }
}

/// Waits (bounded) for a batch the data plane applied that holds `name`.
async fn applied_with(proxy: &mut Proxy, name: &str) -> Vec<DeltaResponse> {
    let deadline = Instant::now() + BOUND;
    loop {
        match tokio::time::timeout_at(deadline, proxy.applied.recv()).await {
            Ok(Some(batch)) => {
                if batch
                    .iter()
                    .any(|r| r.resources.iter().any(|n| n.name == name))
                {
                    return batch;
                }
            }
            Ok(None) => panic!("data plane gone"),
            Err(_) => panic!("{name} never applied within {BOUND:?}"),
        }
    }
}

fn proxy_types() -> Vec<ResourceType> {
    // No certificates: a proxy without HTTPS listeners.
    vec![
        ResourceType::Backend,
        ResourceType::Endpoints,
        ResourceType::RouteConfig,
    ]
}

#[tokio::test(start_paused = true)]
async fn proxy_syncs_over_the_in_process_transport_and_the_controller_hears_back() {
    let cache = Arc::new(SharedCache::new());
    cache.apply([
        Change::put("ns/a:80", backend(1)),
        Change::put("ingress/ns/a", route("ns/a")),
    ]);
    let (events, mut seen) = Recorder::new();
    let sessions = Sessions::new(cache.clone(), events);
    let connector = Arc::new(LocalConnector::new(
        sessions,
        tokio::runtime::Handle::current(),
    ));
    let mut options = ClientOptions::new(node("proxy-0"), proxy_types());
    // Reports never tick here, so a poke that arrives is not riding on one.
    options.report_interval = Duration::from_secs(3600);
    let mut proxy = start_proxy(connector, options);

    // Ready once every type had its first response, the empty endpoints one included.
    bounded("readiness", &mut proxy.ready)
        .await
        .expect("ready fires");
    let (session, _, connected) = wait_for(&mut seen, "connected", |_, e| {
        matches!(e, Event::Connected { .. })
    })
    .await;
    assert_eq!(
        connected,
        Event::Connected {
            node: "proxy-0".into(),
            peer: Peer {
                address: "in-process".into(),
                identity: "in-process".into()
            }
        }
    );
    wait_for(&mut seen, "applied 1", |s, e| {
        s == session && *e == Event::Applied(1)
    })
    .await;
    let first: Vec<(ResourceType, Vec<String>)> = proxy
        .plane
        .batches()
        .concat()
        .iter()
        .map(|r| {
            (
                r.type_,
                r.resources.iter().map(|n| n.name.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        first,
        vec![
            (ResourceType::Backend, vec!["ns/a:80".to_string()]),
            (ResourceType::Endpoints, vec![]),
            (ResourceType::RouteConfig, vec!["ingress/ns/a".to_string()]),
        ]
    );

    // A later change arrives, alone.
    assert_eq!(cache.apply([Change::put("ns/b:80", backend(2))]), 2);
    let batch = applied_with(&mut proxy, "ns/b:80").await;
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].resources.len(), 1);
    wait_for(&mut seen, "applied 2", |_, e| *e == Event::Applied(2)).await;

    // A change of a type this proxy did not open is applied without sending anything.
    let certificate = Resource::Certificate(Certificate {
        secret: "ns/tls".into(),
        cert_pem: String::new(),
        key_pem: String::new(),
        external_hosts: vec!["a.example.com".into()],
        internal_hosts: vec![],
    });
    assert_eq!(cache.apply([Change::put("ns/tls#1", certificate)]), 3);
    wait_for(&mut seen, "applied 3", |_, e| *e == Event::Applied(3)).await;

    // A resource the proxy refuses is reported to the controller.
    proxy.plane.refuse("ns/c:80", "port 0 is not a port");
    assert_eq!(cache.apply([Change::put("ns/c:80", backend(0))]), 4);
    let (_, _, rejections) = wait_for(&mut seen, "rejections", |_, e| {
        matches!(e, Event::Rejections(_))
    })
    .await;
    assert_eq!(
        rejections,
        Event::Rejections(vec![Rejected {
            type_: ResourceType::Backend,
            name: "ns/c:80".into(),
            version: backend(0).version(),
            reason: "port 0 is not a port".into(),
        }])
    );
    wait_for(&mut seen, "applied 4", |_, e| *e == Event::Applied(4)).await;

    // A poke goes out at once, not at the next report.
    proxy.plane.poke("ns/rev");
    let (_, _, poke) = wait_for(&mut seen, "poke", |_, e| matches!(e, Event::Poke(_))).await;
    let Event::Poke(poke) = poke else {
        unreachable!()
    };
    assert_eq!(poke.revisions.len(), 1);
    assert_eq!(poke.revisions[0].revision, "ns/rev");

    // Shutting the client down closes the stream.
    proxy.shutdown.send(true).expect("client running");
    bounded("the client to stop", proxy.task)
        .await
        .expect("no panic");
    wait_for(&mut seen, "disconnected", |s, e| {
        s == session && *e == Event::Disconnected
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn load_reports_arrive_every_report_interval() {
    let cache = Arc::new(SharedCache::new());
    let (events, mut seen) = Recorder::new();
    let sessions = Sessions::new(cache, events);
    let connector = Arc::new(LocalConnector::new(
        sessions,
        tokio::runtime::Handle::current(),
    ));
    let interval = Duration::from_millis(50);
    let mut options = ClientOptions::new(node("proxy-0"), proxy_types());
    options.report_interval = interval;
    let start = Instant::now();
    let proxy = start_proxy(connector, options);
    for n in 1..=3u32 {
        let (_, at, report) = wait_for(&mut seen, "a load report", |_, e| {
            matches!(e, Event::Load(_))
        })
        .await;
        assert_eq!(report, Event::Load(FakePlane::load_report(n)));
        // Never earlier than n intervals after the stream opened.
        assert!(
            at.duration_since(start) >= interval * n,
            "report {n} after {:?}",
            at.duration_since(start)
        );
    }
    proxy.shutdown.send(true).expect("client running");
    bounded("the client to stop", proxy.task)
        .await
        .expect("no panic");
}

/// Fails the connects whose numbers (from 0) are in `fail`, and notes when each came.
struct FlakyConnector {
    inner: LocalConnector,
    fail: BTreeSet<usize>,
    attempts: Mutex<Vec<Instant>>,
}

#[async_trait]
impl Connector for FlakyConnector {
    async fn connect(&self) -> Result<ClientStream, String> {
        let attempt = {
            let mut attempts = self.attempts.lock().expect("attempts lock");
            attempts.push(Instant::now());
            attempts.len() - 1
        };
        if self.fail.contains(&attempt) {
            return Err(format!("attempt {attempt} refused"));
        }
        self.inner.connect().await
    }

    fn describe(&self) -> String {
        "flaky".into()
    }
}

/// Serves streams with [`Sessions`] until told to break them.
struct Breakable {
    inner: Arc<Sessions>,
    broken: watch::Receiver<u32>,
}

impl StreamHandler for Breakable {
    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture {
        let session = self.inner.open(peer, stream);
        let mut broken = self.broken.clone();
        broken.mark_unchanged();
        Box::pin(async move {
            tokio::select! {
                _ = session => {}
                _ = broken.changed() => {}
            }
            Ok(())
        })
    }
}

#[tokio::test(start_paused = true)]
async fn client_retries_with_growing_delays_then_becomes_ready() {
    let cache = Arc::new(SharedCache::new());
    cache.apply([Change::put("ns/a:80", backend(1))]);
    let (events, mut seen) = Recorder::new();
    let (break_streams, broken) = watch::channel(0);
    let handler = Arc::new(Breakable {
        inner: Sessions::new(cache.clone(), events),
        broken,
    });
    let min = Duration::from_millis(50);
    let connector = Arc::new(FlakyConnector {
        inner: LocalConnector::new(handler, tokio::runtime::Handle::current()),
        // The first four connects fail; after a stream that delivered, two more.
        fail: BTreeSet::from([0, 1, 2, 3, 5, 6]),
        attempts: Mutex::new(Vec::new()),
    });
    let mut options = ClientOptions::new(node("proxy-0"), proxy_types());
    options.backoff_min = min;
    options.report_interval = Duration::from_secs(3600);
    let mut proxy = start_proxy(connector.clone(), options);

    bounded("readiness", &mut proxy.ready)
        .await
        .expect("ready fires");
    let gaps = |from: usize, to: usize| -> Vec<Duration> {
        let attempts = connector.attempts.lock().expect("attempts lock");
        assert!(attempts.len() > to, "only {} attempts", attempts.len());
        attempts[from..=to]
            .windows(2)
            .map(|w| w[1].duration_since(w[0]))
            .collect()
    };
    // After failure n the delay is drawn from [min·2ⁿ⁻¹, min·2ⁿ]: it doubles.
    let slack = Duration::from_millis(500);
    for (n, gap) in (1u32..).zip(gaps(0, 4)) {
        let ceiling = min * 2u32.pow(n);
        assert!(
            gap >= ceiling / 2 && gap <= ceiling + slack,
            "delay after failure {n}: {gap:?}, want within [{:?}, {ceiling:?}]",
            ceiling / 2
        );
    }
    let (first, _, _) = wait_for(&mut seen, "applied", |_, e| *e == Event::Applied(1)).await;

    // The controller drops the stream after it delivered: the next attempt comes after the
    // smallest delay, not after the fifth doubling, and the failures after it grow again.
    let broke_at = Instant::now();
    break_streams.send(1).expect("handler alive");
    let (second, _, _) = wait_for(&mut seen, "applied on a new stream", |s, e| {
        s != first && *e == Event::Applied(1)
    })
    .await;
    assert_ne!(first, second);
    let attempts = connector.attempts.lock().expect("attempts lock").clone();
    assert_eq!(attempts.len(), 8);
    let after_break = attempts[5].duration_since(broke_at);
    assert!(
        after_break >= min / 2 && after_break < min * 16,
        "first reconnect after {after_break:?}"
    );
    for (n, gap) in (1u32..).zip(gaps(5, 7)) {
        let ceiling = min * 2u32.pow(n);
        assert!(
            gap >= ceiling / 2 && gap <= ceiling + slack,
            "delay after failure {n} of the second outage: {gap:?}"
        );
    }
    // Ready fired once, on the first sync; the data plane kept its config meanwhile.
    assert!(proxy.plane.batches().len() >= 2);

    proxy.shutdown.send(true).expect("client running");
    bounded("the client to stop", proxy.task)
        .await
        .expect("no panic");
}

const NOT_LEADER: &str = "not the leader: controller-b is not holding lease ns/sluice; retry";

async fn refused_connect(connector: &LocalConnector) -> String {
    match bounded("a connect", connector.connect()).await {
        Ok(_) => panic!("the stream should have been refused"),
        Err(error) => error,
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_that_does_not_serve_refuses_streams_at_once_even_while_loading() {
    let cache = Arc::new(SharedCache::new());
    let (events, mut seen) = Recorder::new();
    let (_loaded, open) = watch::channel(false);
    let (serving_tx, serving) = watch::channel(false);
    let handler = ServeWhile::new(
        serving,
        NOT_LEADER.to_string(),
        OpenWhen::new(open, Sessions::new(cache, events)),
    );
    assert_eq!(
        handler.admit(&Peer::default()),
        Err(StreamError::Unavailable(NOT_LEADER.to_string()))
    );
    let connector = LocalConnector::new(handler.clone(), tokio::runtime::Handle::current());
    assert_eq!(
        refused_connect(&connector).await,
        format!("controller refused the stream: {NOT_LEADER}")
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(seen.try_recv().is_err(), "a refused stream reaches nothing");

    // Serving: admitted, and held until the first load as before.
    serving_tx.send_replace(true);
    assert_eq!(handler.admit(&Peer::default()), Ok(()));
    let mut stream = bounded("a connect", connector.connect())
        .await
        .expect("admitted");
    stream
        .tx
        .send(opening(ResourceType::Backend, Some("proxy-0")))
        .await
        .expect("queued while the controller loads");
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(stream.rx.try_recv().is_err(), "nothing before the load");
}

#[tokio::test(start_paused = true)]
async fn a_proxy_cut_off_when_its_controller_stops_serving_keeps_its_config_and_comes_back() {
    let cache = Arc::new(SharedCache::new());
    cache.apply([Change::put("ns/a:80", backend(1))]);
    let (events, mut seen) = Recorder::new();
    let (_loaded, open) = watch::channel(true);
    let (serving_tx, serving) = watch::channel(true);
    let handler = ServeWhile::new(
        serving,
        NOT_LEADER.to_string(),
        OpenWhen::new(open, Sessions::new(cache.clone(), events)),
    );
    let connector = Arc::new(FlakyConnector {
        inner: LocalConnector::new(handler, tokio::runtime::Handle::current()),
        fail: BTreeSet::new(),
        attempts: Mutex::new(Vec::new()),
    });
    let mut options = ClientOptions::new(node("proxy-0"), proxy_types());
    options.report_interval = Duration::from_secs(3600);
    let mut proxy = start_proxy(connector.clone(), options);
    bounded("readiness", &mut proxy.ready)
        .await
        .expect("ready fires");
    let (first, _, _) = wait_for(&mut seen, "applied", |_, e| *e == Event::Applied(1)).await;

    // It stops serving (lost the Lease): the stream ends and the controller hears the proxy go.
    serving_tx.send_replace(false);
    wait_for(&mut seen, "the proxy disconnected", |s, e| {
        s == first && *e == Event::Disconnected
    })
    .await;
    let cut_at = connector.attempts.lock().expect("attempts lock").len();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retries = connector.attempts.lock().expect("attempts lock").len() - cut_at;
    assert!(retries >= 3, "{retries} refused attempts in 1 s");
    assert!(
        DataPlane::held(proxy.plane.as_ref(), ResourceType::Backend).contains_key("ns/a:80"),
        "the proxy keeps serving what it applied"
    );
    assert!(seen.try_recv().is_err(), "refused attempts reach nothing");

    // Serving again (a new leader): the next attempt is served, on a new session.
    cache.apply([Change::put("ns/b:80", backend(2))]);
    serving_tx.send_replace(true);
    applied_with(&mut proxy, "ns/b:80").await;
    let (second, _, _) = wait_for(&mut seen, "applied on a new stream", |s, e| {
        s != first && *e == Event::Applied(2)
    })
    .await;
    assert_ne!(first, second);

    proxy.shutdown.send(true).expect("client running");
    bounded("the client to stop", proxy.task)
        .await
        .expect("no panic");
}
