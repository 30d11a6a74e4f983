//! The autoscaler loop (standalone): Knative's KPA, fed by the gateway's own counters.
//!
//! Every second each Revision's [`RevisionStats`](crate::activator::RevisionStats) is read
//! (time-weighted concurrency with buffered requests included, and arrivals) into its windows;
//! every 2 s the pure decider (`sluice_controller::autoscaler::decide`) and the PodAutoscaler
//! scale logic (`reconcile`) run, and the replica count goes to the scaler. A request for a
//! revision at zero pokes the loop, which decides at once instead of at the next tick. This is
//! Knative's `target-burst-capacity = -1` mode: the gateway is always in the path.
//!
//! Scale writes go through the [`Scaler`] trait: `spec.process` revisions run as local
//! processes ([`LocalProcesses`]); `spec.service` revisions are only observed in standalone
//! mode (their ready count is their endpoint count) until the Kubernetes scaler writes
//! Deployment scale; responders need none.

use crate::metrics::RevisionMetrics;
use crate::scaler::{LocalProcesses, Scaler};
use crate::source::Pipeline;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use sluice_controller::autoscaler::{
    decide, reconcile, AutoscalerConfig, DeciderState, PaState, RevisionScaling, Windows,
};
use sluice_controller::{ScalingBackend, ScalingTarget};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::{debug, warn};

const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Decisions happen every second sample (Knative's 2 s tick).
const DECIDE_EVERY: u64 = 2;

#[derive(Clone, Copy)]
enum Step {
    Tick {
        decide: bool,
    },
    /// A request arrived for a revision at zero.
    Poke,
}

struct RevisionState {
    spec: RevisionScaling,
    decider: DeciderState,
    windows: Windows,
    pa: PaState,
}

pub struct Autoscaler {
    pipeline: Arc<Pipeline>,
    /// For `spec.process` revisions.
    processes: Box<dyn Scaler>,
    /// For `spec.service` revisions.
    services: Box<dyn Scaler>,
    metrics: RevisionMetrics,
}

impl Autoscaler {
    pub fn new(
        pipeline: Arc<Pipeline>,
        processes: Box<dyn Scaler>,
        services: Box<dyn Scaler>,
    ) -> Self {
        let metrics = pipeline.gateway().metrics.revisions.clone();
        Autoscaler {
            pipeline,
            processes,
            services,
            metrics,
        }
    }

    fn scaler(&self, target: &ScalingTarget) -> Option<&dyn Scaler> {
        match target.backend {
            ScalingBackend::Process { .. } => Some(self.processes.as_ref()),
            ScalingBackend::Service { .. } => Some(self.services.as_ref()),
            ScalingBackend::Responder => None,
        }
    }

    fn targets(&self) -> (Vec<ScalingTarget>, Result<AutoscalerConfig, String>) {
        let controller = self.pipeline.controller();
        let namespace = &controller.config().system_namespace;
        (
            sluice_controller::scaling_targets(controller.store(), namespace),
            sluice_controller::autoscaler_config(controller.store(), namespace),
        )
    }

    /// One pass over the revisions: a tick samples every revision (and decides on every
    /// second tick); a poke samples and decides only for revisions at zero with requests
    /// waiting. Each sample covers the time since that revision's previous one.
    fn step(&self, states: &mut HashMap<String, RevisionState>, now: Duration, step: Step) {
        let (targets, config) = self.targets();
        let config = match config {
            Ok(config) => config,
            Err(error) => {
                warn!(%error, "config-autoscaler is invalid; not scaling");
                return;
            }
        };
        states.retain(|id, _| targets.iter().any(|t| &t.id == id));
        for target in &targets {
            let Ok(spec) = &target.scaling else {
                continue;
            };
            let Some(scaler) = self.scaler(target) else {
                continue;
            };
            let ready = scaler.ready(target);
            let state = states
                .entry(target.id.clone())
                .or_insert_with(|| RevisionState::new(spec, ready, now));
            if &state.spec != spec {
                *state = RevisionState::new(spec, ready, now);
            }
            let stats = self
                .pipeline
                .gateway()
                .router()
                .backend(&target.id)
                .and_then(|b| b.revision.as_ref().map(|r| r.stats.clone()));
            let deciding = match step {
                Step::Tick { decide } => decide,
                Step::Poke => {
                    let waiting = stats.as_ref().is_some_and(|s| s.current() > 0);
                    if !waiting || scaler.running(target) != 0 {
                        continue;
                    }
                    true
                }
            };
            let sample = stats.as_ref().map(|s| s.take()).unwrap_or_default();
            state
                .windows
                .record(now, sample.concurrency, sample.requests);
            if !deciding {
                continue;
            }
            let decision = decide(spec, &mut state.decider, &state.windows, ready, true, now);
            let action = reconcile(spec, &config, &mut state.pa, decision.desired, ready, now);
            // The PA's replica count is the goal; local instances converge on it (this also
            // starts the initial scale and replaces instances that died).
            if let Some(replicas) = action.replicas.or(state.pa.replicas) {
                if scaler.running(target) != replicas {
                    scaler.scale(target, replicas);
                }
            }
            let running = scaler.running(target);
            if let Some(stats) = &stats {
                stats.scaled_to_zero.store(running == 0, Ordering::Relaxed);
            }
            let desired = state.pa.desired_scale.unwrap_or(decision.desired);
            self.metrics.record(&target.id, desired, ready, &decision);
            self.pipeline.statuses().set_scale(
                &target.namespace,
                &target.name,
                Some(desired),
                ready,
            );
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

impl RevisionState {
    fn new(spec: &RevisionScaling, ready: u32, now: Duration) -> Self {
        RevisionState {
            spec: spec.clone(),
            decider: DeciderState::new(spec, ready, now),
            windows: Windows::new(spec),
            pa: PaState::new(spec, now),
        }
    }
}

#[async_trait]
impl BackgroundService for Autoscaler {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let origin = Instant::now();
        let mut tick = tokio::time::interval(SAMPLE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut states = HashMap::new();
        let gateway = self.pipeline.gateway().clone();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    ticks += 1;
                    let decide = ticks.is_multiple_of(DECIDE_EVERY);
                    self.step(&mut states, origin.elapsed(), Step::Tick { decide });
                }
                _ = gateway.poke.notified() => {
                    self.step(&mut states, origin.elapsed(), Step::Poke);
                }
                _ = shutdown.changed() => {
                    LocalProcesses::stop_all();
                    return;
                }
            }
        }
    }
}
