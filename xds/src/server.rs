//! The controller's side of a stream, for any transport: [`serve_session`] drives a
//! [`ServerSession`] between the proxy's messages and cache changes, and tells the controller
//! what happened through [`SessionEvents`].
//!
//! [`LocalConnector`] is the in-process transport of `sluice run`: a pair of channels per
//! stream, resources passed by `Arc`, no serialisation; the session runs on the controller's
//! runtime.
//!
//! Handlers compose: [`OpenWhen`] holds streams until the first load, [`ServeWhile`] refuses
//! and ends them while the controller is not the one to serve (a standby replica).

use crate::cache::SharedCache;
use crate::client::{ClientStream, Connector};
use crate::load::{LoadReport, Poke};
use crate::protocol::{ControllerMessage, DeltaResponse, Node, ProxyMessage};
use crate::session::{Rejected, ServerSession};
use async_trait::async_trait;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tracing::debug;

/// A stream's task. It ends with an error when the controller, not the proxy, ended the
/// stream and the proxy should hear why (gRPC sends it as the stream's status).
pub type BoxFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StreamError>> + Send + 'static>>;

/// Why the controller refused or ended a stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// This controller does not serve streams now; another may (gRPC `UNAVAILABLE`).
    #[error("{0}")]
    Unavailable(String),
}

/// Messages buffered per direction of a stream.
pub const STREAM_BUFFER: usize = 64;

/// The transport's view of a proxy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Remote address, or `in-process`.
    pub address: String,
    /// How it authenticated: `token`, `mtls:<subject>`, or `in-process`.
    pub identity: String,
}

/// Both ends of one open stream, seen from the controller.
pub struct ServerStream {
    pub rx: mpsc::Receiver<ProxyMessage>,
    pub tx: mpsc::Sender<ControllerMessage>,
}

/// What the controller learns from its proxies' streams. `session` identifies a stream.
pub trait SessionEvents: Send + Sync + 'static {
    /// The first request arrived, naming the proxy.
    fn connected(&self, session: u64, node: &Node, peer: &Peer);
    /// The proxy applied everything up to cache sequence `applied`.
    fn applied(&self, session: u64, applied: u64);
    /// The resources the proxy currently refuses (all of them, not a delta); reported before
    /// the `applied` of the same answer.
    fn rejections(&self, session: u64, rejected: Vec<Rejected>);
    fn load(&self, session: u64, report: LoadReport);
    fn poke(&self, session: u64, poke: Poke);
    /// The stream ended.
    fn disconnected(&self, session: u64);
}

/// Accepts streams: the gRPC server and [`LocalConnector`] hand every new stream to it.
pub trait StreamHandler: Send + Sync + 'static {
    /// Asked before a stream is opened: an error refuses it at once, before any message (the
    /// gRPC transport answers with its status, so the proxy's connect fails and it retries).
    fn admit(&self, _peer: &Peer) -> Result<(), StreamError> {
        Ok(())
    }
    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture;
}

/// Streams opened before `open` turns true wait (their requests queue) and are handed to
/// `inner` then: a controller can take connections while it loads, and no proxy gets, and
/// serves, the empty config of a control plane that has not read its sources yet.
pub struct OpenWhen {
    open: watch::Receiver<bool>,
    inner: Arc<dyn StreamHandler>,
}

impl OpenWhen {
    pub fn new(open: watch::Receiver<bool>, inner: Arc<dyn StreamHandler>) -> Arc<OpenWhen> {
        Arc::new(OpenWhen { open, inner })
    }
}

impl StreamHandler for OpenWhen {
    fn admit(&self, peer: &Peer) -> Result<(), StreamError> {
        self.inner.admit(peer)
    }

    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture {
        let mut open = self.open.clone();
        let inner = self.inner.clone();
        Box::pin(async move {
            // An error: the sender is gone, the control plane stopped; drop the stream.
            if open.wait_for(|open| *open).await.is_ok() {
                inner.open(peer, stream).await
            } else {
                Ok(())
            }
        })
    }
}

/// Streams are served only while `serving` is true (a dropped sender counts as false). Other
/// streams are refused at once with `reason`, rather than held: a held stream would keep its
/// proxy here, while a refused one retries, and behind a Service its next connection may
/// reach the replica that serves. When `serving` turns false the open streams end with
/// `reason`, so their proxies go and look too (they keep serving their last config meanwhile).
pub struct ServeWhile {
    serving: watch::Receiver<bool>,
    reason: String,
    inner: Arc<dyn StreamHandler>,
}

impl ServeWhile {
    pub fn new(
        serving: watch::Receiver<bool>,
        reason: String,
        inner: Arc<dyn StreamHandler>,
    ) -> Arc<ServeWhile> {
        Arc::new(ServeWhile {
            serving,
            reason,
            inner,
        })
    }

    fn refusal(&self) -> StreamError {
        StreamError::Unavailable(self.reason.clone())
    }
}

impl StreamHandler for ServeWhile {
    fn admit(&self, peer: &Peer) -> Result<(), StreamError> {
        let dropped = self.serving.has_changed().is_err();
        if dropped || !*self.serving.borrow() {
            return Err(self.refusal());
        }
        self.inner.admit(peer)
    }

    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture {
        let mut serving = self.serving.clone();
        let refusal = self.refusal();
        let address = peer.address.clone();
        let inner = self.inner.open(peer, stream);
        let stopped = async move {
            // At once if it turned false since `admit`: nothing is served then.
            let _ = serving.wait_for(|serving| !*serving).await;
        };
        Box::pin(async move {
            tokio::select! {
                ended = inner => ended,
                () = stopped => {
                    debug!(peer = %address, reason = %refusal, "xds stream ended");
                    Err(refusal)
                }
            }
        })
    }
}

/// The usual [`StreamHandler`]: every stream is a [`serve_session`] on `cache`.
pub struct Sessions {
    cache: Arc<SharedCache>,
    events: Arc<dyn SessionEvents>,
    next: AtomicU64,
}

impl Sessions {
    pub fn new(cache: Arc<SharedCache>, events: Arc<dyn SessionEvents>) -> Arc<Sessions> {
        Arc::new(Sessions {
            cache,
            events,
            next: AtomicU64::new(1),
        })
    }
}

impl StreamHandler for Sessions {
    fn open(&self, peer: Peer, stream: ServerStream) -> BoxFuture {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let session = serve_session(id, self.cache.clone(), self.events.clone(), peer, stream);
        Box::pin(async move {
            session.await;
            Ok(())
        })
    }
}

/// Serves one proxy stream until it closes.
pub async fn serve_session(
    id: u64,
    cache: Arc<SharedCache>,
    events: Arc<dyn SessionEvents>,
    peer: Peer,
    stream: ServerStream,
) {
    let ServerStream { mut rx, tx } = stream;
    let mut state = StreamState {
        id,
        session: ServerSession::new(format!("{:x}-{id}", fastrand::u64(..))),
        events,
        peer,
        named: false,
    };
    let mut changes = cache.subscribe();
    // Responses not yet taken by the transport. The proxy is read while they wait: a push
    // bigger than both streams' buffers would otherwise deadlock against the proxy's ACKs.
    let mut outbox: VecDeque<DeltaResponse> = VecDeque::new();
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(message) = message else { break };
                state.on_message(message);
                // Take what else has arrived (a proxy opens all its types at once), so it is
                // answered in one push, in make-before-break order.
                while let Ok(message) = rx.try_recv() {
                    state.on_message(message);
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            permit = tx.reserve(), if !outbox.is_empty() => {
                let Ok(permit) = permit else { break };
                if let Some(response) = outbox.pop_front() {
                    permit.send(ControllerMessage::Response(response));
                }
                continue;
            }
        }
        let (responses, progress) = {
            let cache = cache.read();
            state.session.next_push(&cache)
        };
        if let Some(applied) = progress.applied {
            state.events.applied(id, applied);
        }
        outbox.extend(responses);
    }
}

/// One stream's session and what the controller has been told about it.
struct StreamState {
    id: u64,
    session: ServerSession,
    events: Arc<dyn SessionEvents>,
    peer: Peer,
    named: bool,
}

/// On drop, not at the end of [`serve_session`]: a session cut off by its handler
/// ([`ServeWhile`]) must not stay listed as connected.
impl Drop for StreamState {
    fn drop(&mut self) {
        debug!(session = self.id, peer = %self.peer.address, "xds stream closed");
        if self.named {
            self.events.disconnected(self.id);
        }
    }
}

impl StreamState {
    fn on_message(&mut self, message: ProxyMessage) {
        let id = self.id;
        match message {
            ProxyMessage::Request(request) => {
                let progress = self.session.on_request(request);
                if !self.named {
                    if let Some(node) = self.session.node() {
                        self.named = true;
                        self.events.connected(id, node, &self.peer);
                    }
                }
                // Rejections first: whoever waits for `applied` sees them when it arrives.
                if progress.rejections_changed {
                    self.events.rejections(id, self.session.rejections());
                }
                if let Some(applied) = progress.applied {
                    self.events.applied(id, applied);
                }
            }
            ProxyMessage::Load(report) => self.events.load(id, report),
            ProxyMessage::Poke(poke) => self.events.poke(id, poke),
        }
    }
}

/// The in-process transport: streams are channel pairs, served on the controller's runtime.
pub struct LocalConnector {
    handler: Arc<dyn StreamHandler>,
    runtime: tokio::runtime::Handle,
}

impl LocalConnector {
    pub fn new(handler: Arc<dyn StreamHandler>, runtime: tokio::runtime::Handle) -> Self {
        LocalConnector { handler, runtime }
    }
}

#[async_trait]
impl Connector for LocalConnector {
    async fn connect(&self) -> Result<ClientStream, String> {
        let (proxy_tx, server_rx) = mpsc::channel(STREAM_BUFFER);
        let (server_tx, proxy_rx) = mpsc::channel(STREAM_BUFFER);
        let peer = Peer {
            address: "in-process".to_string(),
            identity: "in-process".to_string(),
        };
        self.handler
            .admit(&peer)
            .map_err(|e| format!("controller refused the stream: {e}"))?;
        let task = self.handler.open(
            peer,
            ServerStream {
                rx: server_rx,
                tx: server_tx,
            },
        );
        // The proxy sees its channel close; there is no status to carry the reason.
        self.runtime.spawn(async move {
            if let Err(error) = task.await {
                debug!(%error, "in-process xds stream ended by the controller");
            }
        });
        Ok(ClientStream {
            tx: proxy_tx,
            rx: proxy_rx,
        })
    }

    fn describe(&self) -> String {
        "in-process".to_string()
    }
}

#[cfg(test)]
mod tests;
