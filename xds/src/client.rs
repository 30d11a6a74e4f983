//! The proxy's side of the stream: subscribe, apply what arrives, ACK or NACK each response,
//! report load, and reconnect when the stream breaks, keeping the last config serving.
//!
//! [`ClientState`] is the pure part (what the proxy holds, the requests to send); [`run`] drives
//! it over any [`Connector`]: in-process channels in `sluice run`, gRPC in `sluice proxy`.
//!
//! - Opening a stream sends one request per type: subscribe `*`, with `initial_versions` set
//!   to what the data plane holds ([`DataPlane::held`]), so only differences come back. The
//!   data plane is the one record of applied versions: a copy here cost a 10k-ingress proxy
//!   7.5 MB.
//! - Responses that arrive together are applied together ([`DataPlane::apply`] gets them as one
//!   batch, so the router is swapped once); each still gets its own ACK or NACK.
//! - A response naming a resource twice is refused whole, as the protocol asks.
//! - Readiness: once every subscribed type has had its first response applied and the push
//!   that brought it has ended (its last response applied: a large first push arrives in
//!   several responses, and half of it must not serve).
//! - Reconnects back off from 10 ms, doubling to 15 s, with jitter (each delay is drawn from
//!   its upper half), and start again from 10 ms after a stream that delivered a response.

use crate::load::{LoadReport, Poke};
use crate::model::ResourceType;
use crate::protocol::{
    ControllerMessage, DeltaRequest, DeltaResponse, Node, ProxyMessage, RejectedResource, Rejection,
};
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};
use tracing::{debug, info, warn};

/// What the proxy does with updates and where its load comes from.
pub trait DataPlane: Send + Sync + 'static {
    /// Applies responses in order, as one change; one result per response. A rejected
    /// resource keeps its previous version (or stays absent); the rest of its response applies.
    fn apply(&self, responses: &[DeltaResponse]) -> Vec<Result<(), Rejection>>;
    /// What is applied of a type, name → version: a refused resource's previous version, or
    /// nothing if it never applied. Asked when a stream opens.
    fn held(&self, type_: ResourceType) -> BTreeMap<String, String>;
    /// Per-Revision load since the previous call.
    fn take_load(&self) -> LoadReport;
    /// Revisions poked since the previous call.
    fn take_pokes(&self) -> Poke;
    /// Notified when a poke is waiting.
    fn poke_notify(&self) -> &Notify;
}

/// Both ends of one open stream, seen from the proxy.
pub struct ClientStream {
    pub tx: mpsc::Sender<ProxyMessage>,
    pub rx: mpsc::Receiver<ControllerMessage>,
}

/// Opens streams to the controller.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    async fn connect(&self) -> Result<ClientStream, String>;
    /// Where it connects, for logs.
    fn describe(&self) -> String;
}

/// The stream's bookkeeping on the proxy's side: what is subscribed, and whether a first
/// config has been applied.
#[derive(Debug)]
pub struct ClientState {
    node: Node,
    types: Vec<ResourceType>,
    /// Types whose first response of the current stream was applied.
    opened: BTreeSet<ResourceType>,
    /// The last response handled said more of its push follows.
    mid_push: bool,
    ever_ready: bool,
}

impl ClientState {
    pub fn new(node: Node, types: Vec<ResourceType>) -> Self {
        ClientState {
            node,
            types,
            opened: BTreeSet::new(),
            mid_push: false,
            ever_ready: false,
        }
    }

    /// The requests that open a stream.
    pub fn opening_requests(&mut self, plane: &dyn DataPlane) -> Vec<DeltaRequest> {
        self.opened.clear();
        self.mid_push = false;
        self.types
            .iter()
            .enumerate()
            .map(|(i, type_)| DeltaRequest {
                type_: Some(*type_),
                node: (i == 0).then(|| self.node.clone()),
                subscribe: vec!["*".to_string()],
                initial_versions: plane.held(*type_),
                ..DeltaRequest::default()
            })
            .collect()
    }

    /// True once every type has had a first response and its push ended (on any stream so
    /// far).
    pub fn ready(&self) -> bool {
        self.ever_ready
    }

    /// Applies a batch through `plane` and returns the ACK or NACK of each response.
    pub fn handle(
        &mut self,
        batch: Vec<DeltaResponse>,
        plane: &dyn DataPlane,
    ) -> Vec<DeltaRequest> {
        // What each answer needs, taken before the responses go to the data plane: they are
        // moved there, not copied (a first push is tens of MiB decoded; a second copy would be
        // the proxy's peak memory). A response naming a resource twice is refused whole,
        // without applying any of it.
        let mut answers = Vec::with_capacity(batch.len());
        let mut valid = Vec::with_capacity(batch.len());
        for response in batch {
            let refused = duplicate(&response).map(|name| Rejection {
                message: format!("resource {name} appears twice in one response"),
                resources: Vec::new(),
            });
            let applies = refused.is_none();
            answers.push(Answer {
                type_: response.type_,
                nonce: response.nonce.clone(),
                push_continues: response.push_continues,
                invalid: response.invalid.clone(),
                refused,
            });
            if applies {
                valid.push(response);
            }
        }
        let mut results = plane.apply(&valid).into_iter();
        drop(valid);
        let mut acks = Vec::with_capacity(answers.len());
        for answer in answers {
            let mut result = match answer.refused {
                Some(refused) => Err(refused),
                None => results.next().unwrap_or(Ok(())),
            };
            if !answer.invalid.is_empty() {
                // Undecodable resources are refused along with what the data plane refused.
                result = match result {
                    Err(whole) if whole.resources.is_empty() => Err(whole),
                    Err(partial) => {
                        let mut resources = partial.resources;
                        resources.extend(answer.invalid);
                        Err(Rejection::new(resources))
                    }
                    Ok(()) => Err(Rejection::new(answer.invalid)),
                };
            }
            self.opened.insert(answer.type_);
            self.mid_push = answer.push_continues;
            acks.push(DeltaRequest {
                type_: Some(answer.type_),
                response_nonce: Some(answer.nonce),
                error: result.err(),
                ..DeltaRequest::default()
            });
        }
        if !self.mid_push && self.types.iter().all(|t| self.opened.contains(t)) {
            self.ever_ready = true;
        }
        acks
    }
}

/// What the ACK or NACK of one response is made of.
struct Answer {
    type_: ResourceType,
    nonce: String,
    push_continues: bool,
    /// Resources the transport could not decode.
    invalid: Vec<RejectedResource>,
    /// Refused before the data plane saw it.
    refused: Option<Rejection>,
}

fn duplicate(response: &DeltaResponse) -> Option<&str> {
    let mut seen = BTreeSet::new();
    response
        .resources
        .iter()
        .map(|r| r.name.as_str())
        .find(|name| !seen.insert(*name))
}

/// Settings of [`run`].
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub node: Node,
    /// The types to subscribe to (a proxy without HTTPS listeners leaves out certificates, so
    /// private keys never reach it).
    pub types: Vec<ResourceType>,
    pub report_interval: Duration,
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl ClientOptions {
    pub fn new(node: Node, types: Vec<ResourceType>) -> Self {
        ClientOptions {
            node,
            types,
            report_interval: Duration::from_secs(1),
            backoff_min: Duration::from_millis(10),
            backoff_max: Duration::from_secs(15),
        }
    }
}

/// Runs the proxy's stream until `shutdown` turns true. `on_ready` is called once, after the
/// first full config is applied.
pub async fn run(
    connector: Arc<dyn Connector>,
    plane: Arc<dyn DataPlane>,
    options: ClientOptions,
    on_ready: Box<dyn FnOnce() + Send>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = ClientState::new(options.node.clone(), options.types.clone());
    let mut on_ready = Some(on_ready);
    let mut failures: u32 = 0;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let delivered = match connector.connect().await {
            Ok(stream) => {
                info!(controller = %connector.describe(), "xds stream open");
                serve_stream(
                    stream,
                    &mut state,
                    plane.as_ref(),
                    &options,
                    &mut on_ready,
                    &mut shutdown,
                )
                .await
            }
            Err(error) => {
                if state.ready() {
                    warn!(controller = %connector.describe(), %error, "xds connect failed; serving the last config");
                } else {
                    warn!(controller = %connector.describe(), %error, "xds connect failed; nothing to serve yet");
                }
                false
            }
        };
        if *shutdown.borrow() {
            return;
        }
        failures = if delivered {
            0
        } else {
            failures.saturating_add(1)
        };
        let delay = backoff(&options, failures);
        debug!(?delay, "xds reconnect backoff");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// The delay before reconnect attempt number `failures` (0 after a stream that delivered).
pub fn backoff(options: &ClientOptions, failures: u32) -> Duration {
    let ceiling = options
        .backoff_min
        .saturating_mul(2u32.saturating_pow(failures.min(20)))
        .min(options.backoff_max);
    // Jitter: anywhere in the upper half, so a fleet that lost the controller together does
    // not come back in step.
    ceiling / 2 + ceiling.mul_f64(fastrand::f64() / 2.0)
}

/// Serves one stream until it ends. Returns true if any response arrived on it.
async fn serve_stream(
    stream: ClientStream,
    state: &mut ClientState,
    plane: &dyn DataPlane,
    options: &ClientOptions,
    on_ready: &mut Option<Box<dyn FnOnce() + Send>>,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let ClientStream { tx, mut rx } = stream;
    for request in state.opening_requests(plane) {
        if tx.send(ProxyMessage::Request(request)).await.is_err() {
            return false;
        }
    }
    let mut delivered = false;
    let mut report = tokio::time::interval(options.report_interval);
    report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    report.reset();
    loop {
        tokio::select! {
            message = rx.recv() => {
                let Some(ControllerMessage::Response(first)) = message else {
                    warn!("xds stream closed; serving the last config");
                    return delivered;
                };
                delivered = true;
                let mut batch = vec![first];
                while let Ok(ControllerMessage::Response(next)) = rx.try_recv() {
                    batch.push(next);
                }
                for ack in state.handle(batch, plane) {
                    if let Some(error) = &ack.error {
                        warn!(type_ = ?ack.type_, rejected = %error.message, "xds update partly rejected");
                    }
                    if tx.send(ProxyMessage::Request(ack)).await.is_err() {
                        return delivered;
                    }
                }
                if state.ready() {
                    if let Some(ready) = on_ready.take() {
                        ready();
                    }
                }
            }
            _ = report.tick() => {
                if tx.send(ProxyMessage::Load(plane.take_load())).await.is_err() {
                    return delivered;
                }
            }
            _ = plane.poke_notify().notified() => {
                let poke = plane.take_pokes();
                if !poke.revisions.is_empty()
                    && tx.send(ProxyMessage::Poke(poke)).await.is_err()
                {
                    return delivered;
                }
            }
            _ = shutdown.changed() => return delivered,
        }
    }
}

/// Builds a NACK's per-resource list.
pub fn rejected(name: impl Into<String>, reason: impl Into<String>) -> RejectedResource {
    RejectedResource {
        name: name.into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
pub(crate) mod tests;
