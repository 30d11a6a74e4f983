//! The [`Hub`]: the control plane's one writer and what its proxies tell it.
//!
//! Every source (the manifest directory, the local process scaler, later Kubernetes watches)
//! changes the store through [`Hub::edit`], which translates what changed, puts the changed
//! resources in the xDS cache (one new sequence number) and records the statuses, under one
//! lock, so changes are published in order.
//!
//! As the proxies' [`SessionEvents`] it learns, per connected proxy, the sequence it has
//! applied and the resources it refuses. An object is LoadBalancerReady only once every
//! connected proxy has applied a sequence that contains its current translation, and never
//! while a proxy refuses a resource it needs (the refusal shows in its status and in
//! `sluice_xds_rejected_resources`). Load reports go to the [`LoadAggregator`]; pokes wake the
//! autoscaler.

use crate::controller::Controller;
use crate::load::{LoadAggregator, Sample};
use crate::object::{Kind, ObjectKey};
use crate::revision::ScalingTarget;
use crate::status::{ObjectStatus, ProxyInfo, StatusBoard};
use crate::translate::Delta;
use crate::TranslateConfig;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry};
use sluice_xds::cache::SharedCache;
use sluice_xds::load::{LoadReport, Poke, RevisionLoad};
use sluice_xds::protocol::Node;
use sluice_xds::server::{Peer, SessionEvents};
use sluice_xds::session::Rejected;
use sluice_xds::ResourceType;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::sync::{watch, Notify};
use tracing::{debug, info, warn};

/// One connected proxy stream.
#[derive(Debug)]
struct Proxy {
    node: Node,
    peer: Peer,
    applied: u64,
    rejected: Vec<Rejected>,
}

struct Inner {
    controller: Controller,
    board: StatusBoard,
    proxies: BTreeMap<u64, Proxy>,
}

pub struct HubMetrics {
    connected: IntGauge,
    rejected: IntGaugeVec,
    nacks: IntCounter,
    sequence: IntGauge,
    resources: IntGaugeVec,
    translate_seconds: Histogram,
}

impl HubMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<HubMetrics> {
        let connected = IntGauge::new(
            "sluice_xds_connected_proxies",
            "Proxies with an open xDS stream",
        )?;
        let rejected = IntGaugeVec::new(
            Opts::new(
                "sluice_xds_rejected_resources",
                "Resources refused (NACKed) by a connected proxy, summed over proxies",
            ),
            &["type"],
        )?;
        let nacks = IntCounter::new(
            "sluice_xds_nacks_total",
            "Resource versions newly refused by a proxy",
        )?;
        let sequence = IntGauge::new(
            "sluice_controller_config_sequence",
            "The config sequence the controller publishes",
        )?;
        let resources = IntGaugeVec::new(
            Opts::new(
                "sluice_controller_resources",
                "Resources the controller publishes, by type",
            ),
            &["type"],
        )?;
        let translate_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "sluice_controller_translate_seconds",
                "Time to translate a change and publish it",
            )
            .buckets(prometheus::exponential_buckets(0.00005, 4.0, 10)?),
        )?;
        registry.register(Box::new(connected.clone()))?;
        registry.register(Box::new(rejected.clone()))?;
        registry.register(Box::new(nacks.clone()))?;
        registry.register(Box::new(sequence.clone()))?;
        registry.register(Box::new(resources.clone()))?;
        registry.register(Box::new(translate_seconds.clone()))?;
        Ok(HubMetrics {
            connected,
            rejected,
            nacks,
            sequence,
            resources,
            translate_seconds,
        })
    }
}

pub struct Hub {
    cache: Arc<SharedCache>,
    inner: Mutex<Inner>,
    load: Mutex<LoadAggregator>,
    pokes: Mutex<Vec<RevisionLoad>>,
    poke_notify: Notify,
    /// Woken when a shown status changes (see [`Hub::take_changed_statuses`]).
    status_notify: Notify,
    /// The sequence every connected proxy has applied, and how many are connected.
    fleet_applied: watch::Sender<(u64, usize)>,
    metrics: HubMetrics,
}

/// RFC 3339, for `lastTransitionTime`.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

impl Hub {
    pub fn new(config: TranslateConfig, metrics: HubMetrics) -> Arc<Hub> {
        let board = StatusBoard::new(&config);
        Arc::new(Hub {
            cache: Arc::new(SharedCache::new()),
            inner: Mutex::new(Inner {
                controller: Controller::new(config),
                board,
                proxies: BTreeMap::new(),
            }),
            load: Mutex::new(LoadAggregator::default()),
            pokes: Mutex::new(Vec::new()),
            poke_notify: Notify::new(),
            status_notify: Notify::new(),
            fleet_applied: watch::Sender::new((0, 0)),
            metrics,
        })
    }

    pub fn cache(&self) -> &Arc<SharedCache> {
        &self.cache
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the board, and wakes the status writer if a shown status changed.
    fn with_board<R>(&self, f: impl FnOnce(&mut StatusBoard) -> R) -> R {
        let mut inner = self.lock();
        let result = f(&mut inner.board);
        self.notify_statuses(&inner);
        result
    }

    fn notify_statuses(&self, inner: &Inner) {
        if inner.board.has_changes() {
            self.status_notify.notify_one();
        }
    }

    pub fn config(&self) -> TranslateConfig {
        self.lock().controller.config().clone()
    }

    /// Objects in the store.
    pub fn object_count(&self) -> usize {
        self.lock().controller.store().len()
    }

    /// Statuses shown differently since the last call, for the one status writer.
    pub fn take_changed_statuses(&self) -> Vec<ObjectStatus> {
        self.lock().board.take_changed()
    }

    /// Notified when [`Hub::take_changed_statuses`] has something.
    pub fn status_changed(&self) -> &Notify {
        &self.status_notify
    }

    /// Shows (`Some`) or clears a watch's failure on `/status`.
    pub fn set_watch_error(&self, watch: &str, error: Option<String>) {
        self.with_board(|board| board.set_problem("Watch", watch, error));
    }

    /// Replaces the status writer's failures (`Kind ns/name` → error) on `/status`.
    pub fn set_write_errors(&self, errors: BTreeMap<String, String>) {
        self.with_board(|board| board.set_problems("StatusWrite", errors));
    }

    /// Changes the store through `edit`, then translates and publishes what changed. Returns
    /// `edit`'s result and the config sequence that carries the change.
    pub fn edit<R>(&self, edit: impl FnOnce(&mut Controller) -> R) -> (R, u64) {
        let mut inner = self.lock();
        let result = edit(&mut inner.controller);
        let seq = self.publish_locked(&mut inner);
        (result, seq)
    }

    fn publish_locked(&self, inner: &mut Inner) -> u64 {
        let started = std::time::Instant::now();
        let Delta {
            resources,
            statuses,
        } = inner.controller.translate();
        let changed = resources.len();
        let seq = self.cache.apply(resources);
        let now = now_rfc3339();
        for status in &statuses {
            if let crate::translate::StatusChange::Set(status) = status {
                log_not_ready(status);
            }
        }
        inner.board.update(seq, statuses, &now);
        // Statuses that changed without a resource change may be applied already.
        let (applied, _) = *self.fleet_applied.borrow();
        if applied > 0 {
            inner.board.applied(applied, &now);
        }
        self.notify_statuses(inner);
        self.metrics
            .sequence
            .set(i64::try_from(seq).unwrap_or(i64::MAX));
        let elapsed = started.elapsed();
        self.metrics
            .translate_seconds
            .observe(elapsed.as_secs_f64());
        if changed > 0 {
            let cache = self.cache.read();
            for type_ in ResourceType::ALL {
                self.metrics
                    .resources
                    .with_label_values(&[type_.as_str()])
                    .set(i64::try_from(cache.count(type_)).unwrap_or(i64::MAX));
            }
            info!(seq, resources = changed, ?elapsed, "published config");
        }
        seq
    }

    /// Every status, with file and proxy entries, sorted by kind, namespace and name.
    pub fn statuses(&self) -> Vec<ObjectStatus> {
        self.lock().board.list()
    }

    /// `/ui/data`: Routes, KIngresses and Revisions with `history` ([`crate::overview`]).
    pub fn overview(
        &self,
        history: Vec<crate::history::RevisionHistory>,
        now_unix_ms: u64,
    ) -> crate::overview::Overview {
        let inner = self.lock();
        crate::overview::overview(
            inner.controller.store(),
            &inner.board.list(),
            history,
            now_unix_ms,
        )
    }

    /// The Revisions to autoscale, each with its ready endpoints as translation sees them.
    pub fn scaling_targets(&self) -> Vec<(ScalingTarget, usize)> {
        let inner = self.lock();
        let translator = inner.controller.translator();
        translator
            .scaling_targets()
            .map(|target| {
                let key = ObjectKey::new(Kind::Revision, &target.namespace, &target.name);
                (target.clone(), translator.revision_endpoints(&key))
            })
            .collect()
    }

    /// `config-autoscaler` as the store has it now.
    pub fn autoscaler_config(&self) -> Result<crate::autoscaler::AutoscalerConfig, String> {
        let inner = self.lock();
        let namespace = inner.controller.config().system_namespace.clone();
        crate::revision::autoscaler_config(inner.controller.store(), &namespace)
    }

    /// Shows why a Revision's last scale write failed (`None`: it succeeded).
    pub fn set_scale_error(&self, namespace: &str, name: &str, error: Option<String>) {
        self.with_board(|board| board.set_scale_error(namespace, name, error, &now_rfc3339()));
    }

    /// Shows a Revision's scale in its status.
    pub fn set_scale(&self, namespace: &str, name: &str, desired: Option<i32>, actual: u32) {
        self.with_board(|board| board.set_scale(namespace, name, desired, actual));
    }

    /// The sequence every connected proxy has applied, and how many are connected.
    pub fn fleet_applied(&self) -> watch::Receiver<(u64, usize)> {
        self.fleet_applied.subscribe()
    }

    /// Waits (at most `bound`) until every connected proxy has applied `seq` (at once when
    /// none is connected). Returns false on timeout.
    pub async fn wait_applied(&self, seq: u64, bound: Duration) -> bool {
        let mut applied = self.fleet_applied.subscribe();
        tokio::time::timeout(
            bound,
            applied.wait_for(|(applied, proxies)| *proxies == 0 || *applied >= seq),
        )
        .await
        .is_ok_and(|r| r.is_ok())
    }

    /// The load since the last call, summed over proxies, and how many proxies counted.
    pub fn collect_load(&self, now: tokio::time::Instant) -> (BTreeMap<String, Sample>, usize) {
        let mut load = self.load.lock().unwrap_or_else(|p| p.into_inner());
        let samples = load.collect(now);
        (samples, load.proxies())
    }

    /// Revisions poked since the last call (summed over proxies).
    pub fn take_pokes(&self) -> BTreeMap<String, Sample> {
        let pending = std::mem::take(&mut *self.pokes.lock().unwrap_or_else(|p| p.into_inner()));
        let mut pokes: BTreeMap<String, Sample> = BTreeMap::new();
        for load in pending {
            let sample = pokes.entry(load.revision).or_default();
            sample.concurrency += load.concurrency;
            sample.requests += load.requests;
        }
        pokes
    }

    pub fn poke_notify(&self) -> &Notify {
        &self.poke_notify
    }

    /// Recomputes fleet readiness and per-proxy entries after a proxy event.
    fn fleet_changed(&self, inner: &mut Inner) {
        let applied = inner.proxies.values().map(|p| p.applied).min().unwrap_or(0);
        let now = now_rfc3339();
        if applied > 0 {
            inner.board.applied(applied, &now);
        }
        let fleet = (applied, inner.proxies.len());
        self.fleet_applied.send_if_modified(|current| {
            let changed = *current != fleet;
            *current = fleet;
            changed
        });
        let (current, digest) = {
            let cache = self.cache.read();
            (cache.seq(), cache.digest().to_hex())
        };
        let mut entries = BTreeMap::new();
        for (session, proxy) in &inner.proxies {
            let mut name = proxy.node.id.clone();
            if entries.contains_key(&name) {
                name = format!("{name}#{session}");
            }
            let up_to_date = proxy.applied >= current && proxy.rejected.is_empty();
            entries.insert(
                name,
                ProxyInfo {
                    address: proxy.peer.address.clone(),
                    identity: proxy.peer.identity.clone(),
                    applied_sequence: proxy.applied,
                    current_sequence: current,
                    version: up_to_date.then(|| digest.clone()),
                    rejected: proxy
                        .rejected
                        .iter()
                        .map(|r| format!("{} {}: {}", r.type_, r.name, r.reason))
                        .collect(),
                },
            );
        }
        inner.board.set_proxies(entries);
        self.notify_statuses(inner);
        self.metrics
            .connected
            .set(i64::try_from(inner.proxies.len()).unwrap_or(i64::MAX));
    }

    /// Turns every proxy's refusals into the statuses of the objects that need them.
    fn rejections_changed(&self, inner: &mut Inner) {
        let mut by_object: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        let mut per_type: BTreeMap<ResourceType, i64> = BTreeMap::new();
        for proxy in inner.proxies.values() {
            for rejected in &proxy.rejected {
                *per_type.entry(rejected.type_).or_default() += 1;
                let owners = inner
                    .controller
                    .translator()
                    .owners_of(rejected.type_, &rejected.name);
                for owner in owners {
                    by_object
                        .entry((
                            owner.kind.as_str().to_string(),
                            owner.namespace.clone(),
                            owner.name.clone(),
                        ))
                        .or_default()
                        .push(format!(
                            "proxy {} refused {} {}: {}",
                            proxy.node.id, rejected.type_, rejected.name, rejected.reason
                        ));
                }
            }
        }
        for type_ in ResourceType::ALL {
            self.metrics
                .rejected
                .with_label_values(&[type_.as_str()])
                .set(per_type.get(&type_).copied().unwrap_or(0));
        }
        let messages = by_object
            .into_iter()
            .map(|(key, messages)| (key, messages.join("; ")))
            .collect();
        inner.board.set_rejections(messages, &now_rfc3339());
        self.notify_statuses(inner);
    }
}

fn log_not_ready(status: &ObjectStatus) {
    for condition in &status.status.conditions {
        if condition.type_ == "Ready" && condition.status == "False" {
            warn!(
                kind = %status.kind,
                object = %format_args!("{}/{}", status.namespace, status.name),
                reason = condition.reason.as_deref().unwrap_or(""),
                message = condition.message.as_deref().unwrap_or(""),
                "object not ready"
            );
        }
    }
}

impl SessionEvents for Hub {
    fn connected(&self, session: u64, node: &Node, peer: &Peer) {
        info!(proxy = %node.id, address = %peer.address, identity = %peer.identity, "proxy connected");
        let mut inner = self.lock();
        inner.proxies.insert(
            session,
            Proxy {
                node: node.clone(),
                peer: peer.clone(),
                applied: 0,
                rejected: Vec::new(),
            },
        );
        self.fleet_changed(&mut inner);
    }

    fn applied(&self, session: u64, applied: u64) {
        let mut inner = self.lock();
        if let Some(proxy) = inner.proxies.get_mut(&session) {
            debug!(proxy = %proxy.node.id, applied, "proxy applied config");
            proxy.applied = applied;
        }
        self.fleet_changed(&mut inner);
    }

    fn rejections(&self, session: u64, rejected: Vec<Rejected>) {
        let mut inner = self.lock();
        let Some(proxy) = inner.proxies.get_mut(&session) else {
            return;
        };
        let before: BTreeSet<(ResourceType, String, String)> = proxy
            .rejected
            .iter()
            .map(|r| (r.type_, r.name.clone(), r.version.clone()))
            .collect();
        let new = rejected
            .iter()
            .filter(|r| !before.contains(&(r.type_, r.name.clone(), r.version.clone())))
            .count();
        for r in rejected
            .iter()
            .filter(|r| !before.contains(&(r.type_, r.name.clone(), r.version.clone())))
        {
            warn!(proxy = %proxy.node.id, type_ = %r.type_, resource = %r.name, reason = %r.reason, "proxy refused a resource");
        }
        self.metrics.nacks.inc_by(new as u64);
        proxy.rejected = rejected;
        self.rejections_changed(&mut inner);
        self.fleet_changed(&mut inner);
    }

    fn load(&self, session: u64, report: LoadReport) {
        self.load.lock().unwrap_or_else(|p| p.into_inner()).report(
            session,
            report,
            tokio::time::Instant::now(),
        );
    }

    fn poke(&self, _session: u64, poke: Poke) {
        self.pokes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(poke.revisions);
        self.poke_notify.notify_one();
    }

    fn disconnected(&self, session: u64) {
        self.load
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .disconnected(session);
        let mut inner = self.lock();
        if let Some(proxy) = inner.proxies.remove(&session) {
            info!(proxy = %proxy.node.id, "proxy disconnected");
            if !proxy.rejected.is_empty() {
                self.rejections_changed(&mut inner);
            }
        }
        self.fleet_changed(&mut inner);
    }
}

#[cfg(test)]
mod tests;
