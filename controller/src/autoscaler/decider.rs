//! One autoscaling decision: a port of Knative's `autoscaler.Scale()` and the decider state
//! the multiscaler keeps between ticks.
//!
//! The gateway records one sample per second into [`Windows`] (the stable and panic windows of
//! the revision's metric) and calls [`decide`] every [`TICK_INTERVAL`]:
//!
//! 1. `rp = max(1, ready)`; the scale-up limit is `ceil(max-scale-up-rate × rp)` (so even a rate
//!    of 1.1 allows 2 → 3), the scale-down limit `floor(rp / max-scale-down-rate)` while
//!    reachable, 0 otherwise.
//! 2. Stable and panic pod counts are `ceil(average / target)`, clamped to those limits, and
//!    raised to `activation-scale` when non-zero.
//! 3. Panic starts (or is extended) when `panic pods / rp >= panic threshold`, and ends only
//!    once it has not been renewed for a whole stable window (strictly longer). While
//!    panicking the larger of the stable and panic counts is used and the count never drops
//!    (`max_panic_pods`).
//! 4. While reachable, a `scale-down-delay` holds the maximum desired count of the delay window.
//! 5. The excess burst capacity is `floor(ready × total − TBC − panic average)` (0 when TBC is
//!    0, −1 when TBC is −1).
//!
//! sluice is Knative's TBC = −1 case: nothing is scraped, every sample is the gateway's own
//! count, and Knative then never reports "no data". So a decision always has
//! `desired >= 0`; −1 appears only as [`DeciderState::desired`] before the first decision.

use super::bucketing::{MaxWindow, TimedBuckets, WeightedBuckets};
use super::config::{Aggregation, Metric, RevisionScaling};
use super::{BUCKET_SIZE, TICK_INTERVAL};
use std::time::Duration;

/// One window average, linear or weighted.
#[derive(Clone, Debug, PartialEq)]
enum Averager {
    Linear(TimedBuckets),
    Weighted(WeightedBuckets),
}

impl Averager {
    fn new(aggregation: Aggregation, window: Duration) -> Averager {
        match aggregation {
            Aggregation::Linear => Averager::Linear(TimedBuckets::new(window, BUCKET_SIZE)),
            Aggregation::WeightedExponential => {
                Averager::Weighted(WeightedBuckets::new(window, BUCKET_SIZE))
            }
        }
    }

    fn record(&mut self, now: Duration, value: f64) {
        match self {
            Averager::Linear(b) => b.record(now, value),
            Averager::Weighted(b) => b.record(now, value),
        }
    }

    fn average(&self, now: Duration) -> f64 {
        match self {
            Averager::Linear(b) => b.window_average(now),
            Averager::Weighted(b) => b.window_average(now),
        }
    }
}

/// The stable and panic windows of a revision's scaling metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Windows {
    metric: Metric,
    stable: Averager,
    panic: Averager,
}

impl Windows {
    /// Windows sized and aggregated as `spec` says, for its metric.
    pub fn new(spec: &RevisionScaling) -> Windows {
        Windows {
            metric: spec.metric,
            stable: Averager::new(spec.aggregation, spec.stable_window),
            panic: Averager::new(spec.aggregation, spec.panic_window),
        }
    }

    /// Records one sample: `concurrency` is the time-weighted average number of in-flight
    /// requests (buffered ones included) over the second ending at `now`, `requests` the
    /// number of requests that arrived in it. Only the revision's metric is kept. Samples
    /// for the same second add up, so several gateway replicas' reports sum.
    pub fn record(&mut self, now: Duration, concurrency: f64, requests: f64) {
        let value = match self.metric {
            Metric::Concurrency => concurrency,
            Metric::Rps => requests,
        };
        self.stable.record(now, value);
        self.panic.record(now, value);
    }

    /// The (stable, panic) window averages at `now`.
    pub fn averages(&self, now: Duration) -> (f64, f64) {
        (self.stable.average(now), self.panic.average(now))
    }
}

/// What the multiscaler keeps per revision between decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct DeciderState {
    /// When panic mode last started or was extended; `None` when not panicking.
    pub panic_time: Option<Duration>,
    /// The highest count decided while panicking (never scaled below while panicking).
    pub max_panic_pods: i32,
    /// The `scale-down-delay` sliding maximum: made by the first decision that applies a delay
    /// (and made anew when the delay changes), `None` before.
    pub delay_window: Option<MaxWindow>,
    /// The last decided scale; −1 until the first decision.
    pub desired: i32,
    /// The last excess burst capacity.
    pub excess_burst_capacity: f64,
}

impl DeciderState {
    /// A fresh decider. It starts in panic mode, holding `ready_pods`, when more than one pod is
    /// ready, so a restarted autoscaler does not scale down before it has rebuilt its history.
    pub fn new(spec: &RevisionScaling, ready_pods: u32, now: Duration) -> DeciderState {
        let tbc = spec.target_burst_capacity;
        let excess_burst_capacity = if tbc == -1.0 || tbc == 0.0 {
            tbc
        } else {
            f64::from(spec.initial_scale) * spec.total_value - tbc
        };
        DeciderState {
            panic_time: (ready_pods > 1).then_some(now),
            max_panic_pods: count(f64::from(ready_pods)),
            delay_window: None,
            desired: -1,
            excess_burst_capacity,
        }
    }

    /// True while in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_time.is_some()
    }
}

/// The outcome of one decision.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Pods the autoscaler wants (−1 = no data; never produced here, see the module docs).
    pub desired: i32,
    /// The stable window average.
    pub stable: f64,
    /// The panic window average.
    pub panic: f64,
    /// Whether the decider is in panic mode after this decision.
    pub panicking: bool,
    /// Excess burst capacity (−1 with TBC −1, 0 with TBC 0).
    pub excess_burst_capacity: f64,
    /// The desired scale changed, or the excess burst capacity changed sign: Knative informs
    /// the PodAutoscaler reconciler exactly then.
    pub changed: bool,
}

/// A pod count from a float, saturating like Knative's `int32(...)` conversions.
fn count(v: f64) -> i32 {
    v as i32
}

/// One decision from the window averages at `now` (Knative's `Scale()`); updates `state`.
pub fn decide(
    spec: &RevisionScaling,
    state: &mut DeciderState,
    windows: &Windows,
    ready_pods: u32,
    reachable: bool,
    now: Duration,
) -> Decision {
    let (stable, panic) = windows.averages(now);
    decide_observed(spec, state, stable, panic, ready_pods, reachable, now)
}

/// One decision from already-averaged `stable` and `panic` values (what Knative's metric
/// client returns); updates `state`.
pub fn decide_observed(
    spec: &RevisionScaling,
    state: &mut DeciderState,
    stable: f64,
    panic: f64,
    ready_pods: u32,
    reachable: bool,
    now: Duration,
) -> Decision {
    let ready = f64::from(ready_pods);
    let rp = ready.max(1.0);

    let max_scale_up = (spec.max_scale_up_rate * rp).ceil();
    let max_scale_down = if reachable {
        (rp / spec.max_scale_down_rate).floor()
    } else {
        0.0
    };

    let stable_pods = (stable / spec.target_value).ceil();
    let panic_pods = (panic / spec.target_value).ceil();

    let mut desired_stable = count(stable_pods.max(max_scale_down).min(max_scale_up));
    let mut desired_panic = count(panic_pods.max(max_scale_down).min(max_scale_up));

    // Knative raises only when activation-scale > 1; no guard is needed for that: a non-zero
    // count is at least 1 already (max-scale-up-rate > 1 keeps the up limit >= 2), so 0 and 1
    // never raise. `<=` for the same reason: raising to an equal count changes nothing.
    let activation = count(f64::from(spec.activation_scale));
    if stable_pods > 0.0 && desired_stable <= activation {
        desired_stable = activation;
    }
    if panic_pods > 0.0 && desired_panic <= activation {
        desired_panic = activation;
    }

    let over_threshold = panic_pods / rp >= spec.panic_threshold;
    match state.panic_time {
        _ if over_threshold => state.panic_time = Some(now),
        Some(since) if since + spec.stable_window < now => {
            state.panic_time = None;
            state.max_panic_pods = 0;
        }
        _ => {}
    }

    let mut desired = desired_stable;
    if state.panic_time.is_some() {
        desired = desired.max(desired_panic);
        state.max_panic_pods = state.max_panic_pods.max(desired);
        desired = state.max_panic_pods;
    }

    if reachable && !spec.scale_down_delay.is_zero() {
        let window = match state.delay_window.take() {
            Some(w) if w.duration() == spec.scale_down_delay => w,
            _ => MaxWindow::new(spec.scale_down_delay, TICK_INTERVAL),
        };
        let window = state.delay_window.insert(window);
        window.record(now, desired);
        desired = window.current();
    }

    let excess_burst_capacity = if spec.target_burst_capacity > 0.0 {
        (ready * spec.total_value - spec.target_burst_capacity - panic).floor()
    } else if spec.target_burst_capacity == 0.0 {
        0.0
    } else {
        -1.0
    };

    let changed = state.desired != desired
        || (state.excess_burst_capacity < 0.0) != (excess_burst_capacity < 0.0);
    state.desired = desired;
    state.excess_burst_capacity = excess_burst_capacity;

    Decision {
        desired,
        stable,
        panic,
        panicking: state.panic_time.is_some(),
        excess_burst_capacity,
        changed,
    }
}

#[cfg(test)]
mod tests;
