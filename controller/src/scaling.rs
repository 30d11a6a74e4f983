//! The autoscaler loop: Knative's KPA (the pure port in [`crate::autoscaler`]) fed by the
//! proxies' summed load reports, driving the scalers.
//!
//! Every second the load summed over every connected proxy ([`crate::load`]) is recorded into
//! each Revision's windows; every 2 s the decider and the PodAutoscaler scale logic run, and
//! the replica count goes to the Revision's scaler. A poke (a request for a Revision with no
//! instance) makes the loop decide at once for that Revision, if nothing is starting yet. This
//! is Knative's `target-burst-capacity = -1` mode: the gateway is always in the path.
//!
//! Scale writes go through [`Scaler`]s: `spec.process` Revisions run as local processes
//! ([`LocalProcesses`]); `spec.service` Revisions with a `scaleTargetRef` are scaled by the
//! cluster scaler in Kubernetes mode ([`crate::kubernetes::scale`]) and only observed without
//! a cluster; their ready count is their endpoint count. Responders need none. A failed
//! write shows on the Revision as `ResourcesAvailable=False`.

use crate::autoscaler::{
    decide, reconcile, DeciderState, Decision, PaState, RevisionScaling, Windows,
};
use crate::history::{Decided, History};
use crate::hub::Hub;
use crate::load::Sample;
use crate::local::LocalProcesses;
use crate::revision::{ScalingBackend, ScalingTarget};
use crate::scaler::{ObservedService, Scaler};
use prometheus::{GaugeVec, IntGaugeVec, Opts, Registry};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// A Revision decides at every second sample after its state was created (Knative's 2 s
/// tick, a ticker per Revision), as `simulate` does from its second 0.
const DECIDE_EVERY: u64 = 2;

/// Per-Revision autoscaler gauges.
#[derive(Clone)]
pub struct RevisionMetrics {
    observed: GaugeVec,
    reporting: prometheus::IntGauge,
    desired: IntGaugeVec,
    actual: IntGaugeVec,
    panic_mode: IntGaugeVec,
    stable: GaugeVec,
    panic: GaugeVec,
}

impl RevisionMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<RevisionMetrics> {
        let int = |name: &str, help: &str| -> prometheus::Result<IntGaugeVec> {
            let vec = IntGaugeVec::new(Opts::new(name, help), &["revision"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let float = |name: &str, help: &str| -> prometheus::Result<GaugeVec> {
            let vec = GaugeVec::new(Opts::new(name, help), &["revision"])?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        };
        let reporting = prometheus::IntGauge::new(
            "sluice_autoscaler_reporting_proxies",
            "Proxies whose load the last sample summed (late ones included, gone ones not)",
        )?;
        registry.register(Box::new(reporting.clone()))?;
        Ok(RevisionMetrics {
            observed: float(
                "sluice_revision_observed_concurrency",
                "The last one-second concurrency sample, summed over every reporting proxy",
            )?,
            reporting,
            desired: int(
                "sluice_revision_desired_scale",
                "Instances the autoscaler wants",
            )?,
            actual: int("sluice_revision_actual_scale", "Ready instances")?,
            panic_mode: int(
                "sluice_revision_panic_mode",
                "1 while the autoscaler panics",
            )?,
            stable: float(
                "sluice_revision_stable_concurrency",
                "Stable-window average concurrency (buffered requests included), all proxies",
            )?,
            panic: float(
                "sluice_revision_panic_concurrency",
                "Panic-window average concurrency (buffered requests included), all proxies",
            )?,
        })
    }

    fn record(&self, revision: &str, desired: i32, actual: u32, decision: &Decision) {
        self.desired
            .with_label_values(&[revision])
            .set(i64::from(desired));
        self.actual
            .with_label_values(&[revision])
            .set(i64::from(actual));
        self.panic_mode
            .with_label_values(&[revision])
            .set(i64::from(decision.panicking));
        self.stable
            .with_label_values(&[revision])
            .set(decision.stable);
        self.panic
            .with_label_values(&[revision])
            .set(decision.panic);
    }
}

#[derive(Clone, Copy)]
enum Step {
    /// The once-a-second sample.
    Tick,
    /// Requests arrived for Revisions with no instance.
    Poke,
}

struct RevisionState {
    spec: RevisionScaling,
    decider: DeciderState,
    windows: Windows,
    pa: PaState,
    /// The whole second it was created at: its decisions come at even seconds after it.
    born: u64,
}

impl RevisionState {
    fn new(spec: &RevisionScaling, ready: u32, second: u64) -> Self {
        let now = Duration::from_secs(second);
        RevisionState {
            spec: spec.clone(),
            decider: DeciderState::new(spec, ready, now),
            windows: Windows::new(spec),
            pa: PaState::new(spec, now),
            born: second,
        }
    }
}

pub struct Autoscaler {
    hub: Arc<Hub>,
    processes: Arc<LocalProcesses>,
    services: ObservedService,
    /// Scales `spec.service` Revisions with a `scaleTargetRef` (Kubernetes mode).
    cluster: Option<Arc<dyn Scaler>>,
    /// The Lease (Kubernetes mode): its holder's decisions are the ones written.
    leader: Option<watch::Receiver<bool>>,
    metrics: RevisionMetrics,
    /// What the loop saw and decided, for `/ui` and `trace.csv`.
    history: Arc<History>,
}

impl Autoscaler {
    pub fn new(hub: Arc<Hub>, processes: Arc<LocalProcesses>, metrics: RevisionMetrics) -> Self {
        Autoscaler {
            hub,
            processes,
            services: ObservedService::default(),
            cluster: None,
            leader: None,
            metrics,
            history: Arc::new(History::new(crate::history::DEFAULT_WINDOW)),
        }
    }

    /// Records into `history` (bounded by its window) instead of a default one.
    pub fn with_history(mut self, history: Arc<History>) -> Self {
        self.history = history;
        self
    }

    pub fn history(&self) -> &Arc<History> {
        &self.history
    }

    /// Starts afresh whenever this replica takes the Lease. A standby controller hears no
    /// proxy (only the leader serves them), so its windows hold zeros; a fresh decider holds
    /// the ready instances for a stable window instead, as after a restart, while the proxies
    /// reconnect and their load refills the windows.
    pub fn with_leader(mut self, leader: watch::Receiver<bool>) -> Self {
        self.leader = Some(leader);
        self
    }

    /// Scales Revisions with a `scaleTargetRef` through `scaler` instead of only logging.
    pub fn with_cluster_scaler(mut self, scaler: Arc<dyn Scaler>) -> Self {
        self.cluster = Some(scaler);
        self
    }

    /// The scaler of a Service Revision's `scaleTargetRef`, if there is one.
    fn cluster_scaler(&self, target: &ScalingTarget) -> Option<&Arc<dyn Scaler>> {
        match &target.backend {
            ScalingBackend::Service {
                scale_target: Some(_),
                ..
            } => self.cluster.as_ref(),
            _ => None,
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        let origin = Instant::now();
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut states = HashMap::new();
        let mut leader = self.leader.clone();
        loop {
            let step = tokio::select! {
                _ = tick.tick() => Step::Tick,
                _ = self.hub.poke_notify().notified() => Step::Poke,
                _ = shutdown.changed() => return,
            };
            // After the wait, not before it: a reset after a poke's step would forget the poke.
            if let Some(leader) = &mut leader {
                if leader.has_changed().unwrap_or(false) && *leader.borrow_and_update() {
                    debug!("took the lease: autoscaler state starts afresh");
                    states.clear();
                    self.history.clear();
                }
            }
            // Ticks run on whole seconds (a tick fires a few µs after its second starts;
            // successive ticks are at least a second apart, so they never share one), which
            // is the clock `simulate` replays on; a poke keeps its fraction, so it falls in
            // the bucket of the tick before it and never precedes it.
            let elapsed = origin.elapsed();
            let now = match step {
                Step::Tick => Duration::from_secs(elapsed.as_secs()),
                Step::Poke => elapsed,
            };
            self.step(&mut states, now, step).await;
        }
    }

    /// Instances ready and running (starting or ready) for `target`; `None` for responders.
    fn counts(&self, target: &ScalingTarget, endpoints: usize) -> Option<(u32, u32)> {
        match target.backend {
            ScalingBackend::Process { .. } => Some((
                self.processes.ready_count(&target.id),
                self.processes.running_count(&target.id),
            )),
            ScalingBackend::Service { .. } => {
                let n = u32::try_from(endpoints).unwrap_or(u32::MAX);
                // With a scale target, what runs is its `spec.replicas`.
                let running = self.cluster_scaler(target).map_or(n, |s| s.running(target));
                Some((n, running))
            }
            ScalingBackend::Responder => None,
        }
    }

    /// One pass: a tick records every Revision's summed load (and decides every second
    /// tick); a poke records and decides only for poked Revisions with nothing running.
    async fn step(&self, states: &mut HashMap<String, RevisionState>, now: Duration, step: Step) {
        let config = match self.hub.autoscaler_config() {
            Ok(config) => config,
            Err(error) => {
                warn!(%error, "config-autoscaler is invalid; not scaling");
                return;
            }
        };
        let targets = self.hub.scaling_targets();
        states.retain(|id, _| targets.iter().any(|(t, _)| &t.id == id));
        self.history
            .retain(|id| targets.iter().any(|(t, _)| t.id == id));
        let second = now.as_secs();
        let wall = SystemTime::now();
        let samples: BTreeMap<String, Sample> = match step {
            Step::Tick => {
                let (samples, proxies) = self.hub.collect_load(Instant::now());
                self.metrics
                    .reporting
                    .set(i64::try_from(proxies).unwrap_or(i64::MAX));
                for (target, _) in &targets {
                    let observed = samples.get(&target.id).map_or(0.0, |s| s.concurrency);
                    self.metrics
                        .observed
                        .with_label_values(&[&target.id])
                        .set(observed);
                }
                samples
            }
            Step::Poke => self.hub.take_pokes(),
        };
        for (target, endpoints) in &targets {
            let Ok(spec) = &target.scaling else {
                continue;
            };
            let Some((ready, running)) = self.counts(target, *endpoints) else {
                continue;
            };
            if states.get(&target.id).is_none_or(|s| &s.spec != spec) {
                let state = RevisionState::new(spec, ready, second);
                self.history.start(
                    &target.id,
                    spec.metric,
                    second,
                    wall,
                    state.pa.replicas.unwrap_or(1),
                );
                states.insert(target.id.clone(), state);
            }
            let Some(state) = states.get_mut(&target.id) else {
                continue;
            };
            let deciding = match step {
                Step::Tick => {
                    let age = second - state.born.min(second);
                    age > 0 && age.is_multiple_of(DECIDE_EVERY)
                }
                Step::Poke => {
                    if !samples.contains_key(&target.id) || running != 0 {
                        continue;
                    }
                    true
                }
            };
            let sample = samples.get(&target.id).copied().unwrap_or_default();
            state
                .windows
                .record(now, sample.concurrency, sample.requests);
            self.history.record(&target.id, second, sample, ready);
            if !deciding {
                continue;
            }
            let decision = decide(spec, &mut state.decider, &state.windows, ready, true, now);
            let action = reconcile(spec, &config, &mut state.pa, decision.desired, ready, now);
            // The PA's replica count is the goal; local instances converge on it (this also
            // starts the initial scale and replaces instances that died).
            if let Some(replicas) = action.replicas.or(state.pa.replicas) {
                let scaled = match (self.cluster_scaler(target), &target.backend) {
                    // It writes only on change, and knows better than `running` when its
                    // count went stale.
                    (Some(scaler), _) => scaler.scale(target, replicas).await,
                    (None, ScalingBackend::Process { .. }) if running != replicas => {
                        self.processes.scale(target, replicas).await
                    }
                    (None, ScalingBackend::Service { .. }) => {
                        self.services.requested(target, replicas);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                self.hub.set_scale_error(
                    &target.namespace,
                    &target.name,
                    scaled.err().map(|e| e.to_string()),
                );
            }
            self.history.decided(
                &target.id,
                second,
                wall,
                Decided {
                    desired: state.pa.replicas.unwrap_or(1),
                    panicking: decision.panicking,
                    poked: matches!(step, Step::Poke),
                },
            );
            let desired = state.pa.desired_scale.unwrap_or(decision.desired);
            self.metrics.record(&target.id, desired, ready, &decision);
            self.hub
                .set_scale(&target.namespace, &target.name, Some(desired), ready);
            debug!(
                revision = %target.id,
                stable = decision.stable,
                panic = decision.panic,
                desired,
                ready,
                replicas = ?action.replicas,
                "autoscaler decision"
            );
        }
    }
}

#[cfg(test)]
mod tests;
