//! The PodAutoscaler reconciler's scale logic (Knative's `kpa/scaler.go` `scale()` and
//! `handleScaleToZero`, plus `computeActiveCondition` from `kpa.go`), as a pure function of the
//! PA state, the decider's desired scale, the ready pods and `now`.
//!
//! [`reconcile`] turns a desired scale into replicas:
//! 1. No decision yet (−1) does nothing, unless the PA is activating.
//! 2. Bounds: `min-scale` (ignored while the revision is unreachable) and `max-scale`; until the
//!    scale target has been initialised, `initial-scale` (when above 1) raises the minimum.
//! 3. A desired scale of 0 is held back: with `enable-scale-to-zero: false` it is 1. An
//!    **Active** PA keeps one pod until it has been active for a stable window, then only
//!    turns **Inactive** (replicas unchanged). An **Inactive** PA scales to 0 once it has been
//!    inactive for `max(grace period, pod retention)`. An **Activating** PA that never became
//!    ready is scaled to 0 after the activation timeout (progress deadline + 30 s).
//! 4. The activation state then follows the ready pods (Active once `min(ready)` is met,
//!    Activating while below it, Inactive when the scale is 0).
//!
//! sluice is Knative's TBC = −1 case: the gateway is always in the path, so the activator is
//! never probed before scaling to zero. Knative's SKS "proxy for" fast path (scale to zero as
//! soon as the activator has been in the path for the grace period) applies only when
//! [`PaState::proxy_since`] is set; by default the grace period is always waited out after the
//! PA turns inactive.

use super::config::{AutoscalerConfig, RevisionScaling};
use super::decider::DeciderState;
use std::time::Duration;

/// Re-enqueue delay after marking a PA inactive while the activator is in the path.
pub const INACTIVE_REQUEUE: Duration = Duration::from_secs(3);

/// Why a PA is inactive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InactiveReason {
    /// The revision is not receiving traffic (Knative `NoTraffic`).
    NoTraffic,
    /// The revision never became ready within the activation timeout (`TimedOut`).
    TimedOut,
}

/// The PA's `Active` condition, with the time it last changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationState {
    /// Active = Unknown: pods are being brought up (`Queued`).
    Activating { since: Duration },
    /// Active = True: serving.
    Active { since: Duration },
    /// Active = False: scaled (or scaling) to zero.
    Inactive {
        since: Duration,
        reason: InactiveReason,
    },
}

impl ActivationState {
    pub fn since(&self) -> Duration {
        match *self {
            ActivationState::Activating { since }
            | ActivationState::Active { since }
            | ActivationState::Inactive { since, .. } => since,
        }
    }

    pub fn is_activating(&self) -> bool {
        matches!(self, ActivationState::Activating { .. })
    }

    pub fn is_active(&self) -> bool {
        matches!(self, ActivationState::Active { .. })
    }

    pub fn is_inactive(&self) -> bool {
        matches!(self, ActivationState::Inactive { .. })
    }

    /// How long it has been in this state at `now`.
    pub fn for_duration(&self, now: Duration) -> Duration {
        now.saturating_sub(self.since())
    }
}

/// The revision's routing state (`spec.reachability` of the PA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not known (`""`): treated as reachable.
    Unknown,
    /// Routed to (`routingState: active`).
    Reachable,
    /// Not routed to (`routingState: reserve`): min-scale and pod retention are ignored.
    Unreachable,
}

/// What the reconciler keeps per revision (the PA status and the scale target's replicas).
#[derive(Clone, Debug, PartialEq)]
pub struct PaState {
    pub activation: ActivationState,
    /// Set once `ready >= max(min-scale, initial-scale)` was reached (`ScaleTargetInitialized`).
    pub scale_target_initialized: bool,
    pub reachability: Reachability,
    /// The scale target's `spec.replicas`; `None` (unset) counts as 1, as in Knative.
    pub replicas: Option<u32>,
    /// `status.desiredScale`: the last scale the reconciler wanted (−1 = unknown).
    pub desired_scale: Option<i32>,
    /// `status.actualScale`: the ready pods at the last reconcile.
    pub actual_scale: Option<u32>,
    /// Since when the activator is known to be in the path (Knative's SKS `ProxyFor`). `None`
    /// disables the fast path, so an inactive PA always waits out the grace period.
    pub proxy_since: Option<Duration>,
}

impl PaState {
    /// A new revision's PA: activating since `now`, its scale target created with
    /// `initial-scale` replicas, reachable.
    pub fn new(spec: &RevisionScaling, now: Duration) -> PaState {
        PaState {
            activation: ActivationState::Activating { since: now },
            scale_target_initialized: false,
            reachability: Reachability::Reachable,
            replicas: Some(spec.initial_scale),
            desired_scale: None,
            actual_scale: None,
            proxy_since: None,
        }
    }

    fn unreachable(&self) -> bool {
        self.reachability == Reachability::Unreachable
    }

    /// Moves the `Active` condition; the since-time changes only with the state.
    fn transition(&mut self, to: ActivationState) {
        let same = match (self.activation, to) {
            (ActivationState::Activating { .. }, ActivationState::Activating { .. })
            | (ActivationState::Active { .. }, ActivationState::Active { .. }) => true,
            (
                ActivationState::Inactive { reason: a, .. },
                ActivationState::Inactive { reason: b, .. },
            ) => a == b,
            _ => false,
        };
        if !same {
            self.activation = to;
        }
    }
}

/// What to do after one reconcile.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScaleAction {
    /// Set the scale target's replicas to this (only when it differs from the current value).
    pub replicas: Option<u32>,
    /// Reconcile again after this long.
    pub requeue_after: Option<Duration>,
}

/// Knative's `applyBounds`: below `min` → `min`; above a non-zero `max` → `max`. (The
/// comparisons include equality, where both answers agree, so each has one meaning to test.)
fn apply_bounds(min: i32, max: i32, x: i32) -> i32 {
    if x <= min {
        min
    } else if max != 0 && x >= max {
        max
    } else {
        x
    }
}

fn as_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// `(min, max)` scale bounds; min is ignored while unreachable (Knative's `ScaleBounds`).
fn scale_bounds(spec: &RevisionScaling, pa: &PaState) -> (i32, i32) {
    let min = if pa.unreachable() {
        0
    } else {
        as_i32(spec.min_scale)
    };
    (min, as_i32(spec.max_scale))
}

/// Decides what to do with a desired scale of 0 (`handleScaleToZero`): the scale to use and
/// whether to apply it.
fn handle_scale_to_zero(
    spec: &RevisionScaling,
    config: &AutoscalerConfig,
    pa: &PaState,
    desired: i32,
    now: Duration,
    requeue: &mut Option<Duration>,
) -> (i32, bool) {
    if desired != 0 {
        return (desired, true);
    }
    if !config.enable_scale_to_zero {
        return (1, true);
    }
    match pa.activation {
        ActivationState::Activating { .. } => {
            // Stuck activating past the deadline: give up and scale to zero.
            if pa.activation.for_duration(now) > spec.activation_timeout {
                return (desired, true);
            }
            *requeue = Some(spec.activation_timeout);
            (-1, false)
        }
        ActivationState::Active { .. } => {
            let active_for = pa.activation.for_duration(now);
            if active_for >= spec.stable_window {
                // Mark inactive; the gateway is always in the path, so come back shortly.
                *requeue = Some(INACTIVE_REQUEUE);
                return (desired, false);
            }
            *requeue = Some(spec.stable_window - active_for);
            (1, true)
        }
        ActivationState::Inactive { .. } => {
            let inactive_for = pa.activation.for_duration(now);
            let retention = if pa.unreachable() {
                Duration::ZERO
            } else {
                spec.scale_to_zero_pod_retention_period
            };
            let grace = config.scale_to_zero_grace_period;
            let longest = grace.max(retention);
            if inactive_for >= longest {
                return (desired, true);
            }
            if !retention.is_zero() && inactive_for < retention {
                *requeue = Some(retention - inactive_for);
                return (desired, false);
            }
            match pa.proxy_since {
                Some(since) => {
                    let proxy_for = now.saturating_sub(since);
                    if proxy_for >= grace {
                        return (desired, true);
                    }
                    *requeue = Some(grace - proxy_for);
                }
                None => *requeue = Some(longest - inactive_for),
            }
            (desired, false)
        }
    }
}

/// The scale at which the PA counts as active (`activeThreshold`).
fn active_threshold(spec: &RevisionScaling, pa: &PaState) -> i32 {
    let (min, _) = scale_bounds(spec, pa);
    if pa.scale_target_initialized {
        min.max(1)
    } else {
        min.max(as_i32(spec.initial_scale))
    }
}

/// Knative's `computeActiveCondition`.
fn compute_active_condition(
    spec: &RevisionScaling,
    pa: &mut PaState,
    want: i32,
    ready: u32,
    now: Duration,
) {
    let min_ready = active_threshold(spec, pa);
    let ready = as_i32(ready);
    if ready >= min_ready {
        pa.scale_target_initialized = true;
    }
    if want == 0 || min_ready == 0 {
        let reason = if pa.activation.is_activating() && min_ready > 0 {
            InactiveReason::TimedOut
        } else {
            InactiveReason::NoTraffic
        };
        pa.transition(ActivationState::Inactive { since: now, reason });
    } else if ready < min_ready {
        // `want` is not 0 here: `>= 0` means "decided" (not −1), as Knative's `want > 0`.
        if want >= 0 || !pa.activation.is_inactive() {
            pa.transition(ActivationState::Activating { since: now });
        } else {
            pa.transition(ActivationState::Inactive {
                since: now,
                reason: InactiveReason::NoTraffic,
            });
        }
    } else if want >= 0 || !pa.activation.is_inactive() {
        pa.transition(ActivationState::Active { since: now });
    }
}

/// One reconcile of a KPA-class PA: applies bounds, initial scale and the scale-to-zero rules to
/// the decider's `desired` scale, updates `pa` (status and replicas) and says what to do.
pub fn reconcile(
    spec: &RevisionScaling,
    config: &AutoscalerConfig,
    pa: &mut PaState,
    desired: i32,
    ready: u32,
    now: Duration,
) -> ScaleAction {
    let mut action = ScaleAction::default();
    let want = if desired < 0 && !pa.activation.is_activating() {
        desired
    } else {
        let (mut min, max) = scale_bounds(spec, pa);
        let initial = as_i32(spec.initial_scale);
        if initial > 1 && !pa.scale_target_initialized && !pa.unreachable() {
            min = min.max(initial);
        }
        let bounded = apply_bounds(min, max, desired);
        let (scale, apply) =
            handle_scale_to_zero(spec, config, pa, bounded, now, &mut action.requeue_after);
        if apply {
            let replicas = u32::try_from(scale).unwrap_or(0);
            if pa.replicas.unwrap_or(1) != replicas {
                pa.replicas = Some(replicas);
                action.replicas = Some(replicas);
            }
        }
        scale
    };

    pa.actual_scale = Some(ready);
    // A restarted decider reports −1 for a moment; keep the last known desired scale.
    if !(want == -1 && pa.desired_scale.is_some_and(|d| d >= 0)) {
        pa.desired_scale = Some(want);
    }
    compute_active_condition(spec, pa, want, ready, now);
    action
}

/// The poke rule: when a request arrives for a revision whose last decided scale is 0, decide
/// now instead of waiting for the next tick (Knative's `MultiScaler.Poke`). Not while the
/// decider has not decided yet (−1).
pub fn should_poke(state: &DeciderState) -> bool {
    state.desired == 0
}

#[cfg(test)]
mod tests;
