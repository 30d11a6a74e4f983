use super::*;
use crate::autoscaler::config::{
    INITIAL_SCALE_ANNOTATION, MAX_SCALE_ANNOTATION, MIN_SCALE_ANNOTATION,
    PROGRESS_DEADLINE_ANNOTATION, SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, WINDOW_ANNOTATION,
};
use std::collections::BTreeMap;

const NOW: Duration = Duration::from_secs(10_000);
const GRACE: Duration = Duration::from_secs(60);
const STABLE_WINDOW: Duration = Duration::from_secs(300);
const PA_STABLE_WINDOW: Duration = Duration::from_secs(45);
const PROGRESS_DEADLINE: Duration = Duration::from_secs(121);
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(121 + 30);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The config of Knative's kpa tests (`defaultConfigMapData`).
fn knative_test_config() -> AutoscalerConfig {
    AutoscalerConfig {
        max_scale_up_rate: 12.0,
        stable_window: STABLE_WINDOW,
        scale_to_zero_grace_period: GRACE,
        target_burst_capacity: 200.0,
        ..AutoscalerConfig::default()
    }
}

/// One case of Knative's `TestScaler`.
struct Case {
    label: &'static str,
    start_replicas: u32,
    scale_to: i32,
    min_scale: u32,
    max_scale: u32,
    annotations: &'static [(&'static str, &'static str)],
    activation: Option<ActivationState>,
    initialized: bool,
    reachability: Reachability,
    proxy_for: Option<Duration>,
    config: fn(&mut AutoscalerConfig),
    want_replicas: i32,
    want_scaling: bool,
    want_requeue: bool,
}

const BASE: Case = Case {
    label: "",
    start_replicas: 1,
    scale_to: 0,
    min_scale: 0,
    max_scale: 0,
    annotations: &[],
    activation: None,
    initialized: false,
    reachability: Reachability::Unknown,
    proxy_for: None,
    config: |_| {},
    want_replicas: 0,
    want_scaling: false,
    want_requeue: false,
};

fn active(ago: Duration) -> Option<ActivationState> {
    Some(ActivationState::Active { since: NOW - ago })
}

fn inactive(ago: Duration) -> Option<ActivationState> {
    Some(ActivationState::Inactive {
        since: NOW - ago,
        reason: InactiveReason::NoTraffic,
    })
}

fn activating(ago: Duration) -> Option<ActivationState> {
    Some(ActivationState::Activating { since: NOW - ago })
}

fn run(case: &Case) -> (PaState, ScaleAction) {
    let mut config = knative_test_config();
    (case.config)(&mut config);
    let mut annotations: BTreeMap<String, String> = case
        .annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if case.min_scale > 0 {
        annotations.insert(MIN_SCALE_ANNOTATION.into(), case.min_scale.to_string());
    }
    if case.max_scale > 0 {
        annotations.insert(MAX_SCALE_ANNOTATION.into(), case.max_scale.to_string());
    }
    let mut spec = RevisionScaling::resolve(&annotations, 0, &config).expect(case.label);
    if !annotations.contains_key(PROGRESS_DEADLINE_ANNOTATION) {
        // config-deployment's progress-deadline in Knative's tests.
        spec.activation_timeout = PROGRESS_DEADLINE + secs(30);
    }
    let mut pa = PaState::new(&spec, NOW - secs(1000));
    pa.replicas = Some(case.start_replicas);
    pa.activation = case
        .activation
        .unwrap_or(ActivationState::Activating { since: NOW });
    pa.scale_target_initialized = case.initialized;
    pa.reachability = case.reachability;
    pa.proxy_since = case.proxy_for.map(|d| NOW - d);
    let ready = case.start_replicas;
    let action = reconcile(&spec, &config, &mut pa, case.scale_to, ready, NOW);
    (pa, action)
}

/// Knative `TestScaler` (kpa/scaler_test.go). sluice is always in the path, so an Active PA
/// past its stable window always re-enqueues (Knative does only with the SKS in proxy mode).
/// The two prober-failure cases do not apply: with TBC = −1 nothing is probed.
#[test]
fn scaler_table() {
    let cases = [
        Case {
            label: "waits to scale to zero (just before idle period)",
            activation: active(STABLE_WINDOW - secs(1)),
            want_replicas: 1,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero (just before idle period), custom PA window",
            annotations: &[(WINDOW_ANNOTATION, "45s")],
            activation: active(PA_STABLE_WINDOW - secs(1)),
            want_replicas: 1,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "custom PA window, check for standard window, no probe",
            annotations: &[(WINDOW_ANNOTATION, "45s")],
            activation: active(STABLE_WINDOW),
            want_replicas: 0,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "scale to 1 waiting for idle expires",
            start_replicas: 10,
            activation: active(STABLE_WINDOW - secs(1)),
            want_replicas: 1,
            want_scaling: true,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero after idle period",
            activation: active(STABLE_WINDOW),
            want_replicas: 0,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero after idle period (custom PA window)",
            annotations: &[(WINDOW_ANNOTATION, "45s")],
            activation: active(PA_STABLE_WINDOW),
            want_replicas: 0,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "can scale to zero after grace period, but 0 PA retention",
            annotations: &[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "0")],
            activation: inactive(GRACE),
            config: |c| c.scale_to_zero_pod_retention_period = GRACE * 2,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "can't scale to zero after grace period, but before last pod retention",
            activation: inactive(GRACE),
            config: |c| c.scale_to_zero_pod_retention_period = GRACE * 2,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "can't scale to zero after grace period, but before last pod retention, pa defined",
            annotations: &[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "2m0s")],
            activation: inactive(GRACE),
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "scale to zero after grace period, and after last pod retention",
            activation: inactive(GRACE),
            config: |c| c.scale_to_zero_pod_retention_period = GRACE,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale to zero after grace period",
            activation: inactive(GRACE),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero (just before grace period)",
            activation: inactive(GRACE - secs(1)),
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero (just before grace period, sks short)",
            activation: inactive(GRACE - secs(1)),
            proxy_for: Some(GRACE - secs(1)),
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero (just before grace period, sks in proxy long) and last pod timeout positive",
            activation: inactive(GRACE - secs(1)),
            config: |c| c.scale_to_zero_pod_retention_period = secs(42),
            proxy_for: Some(GRACE),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero (just before grace period, sks in proxy long)",
            activation: inactive(GRACE - secs(1)),
            proxy_for: Some(GRACE),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale to zero with TBC=-1",
            annotations: &[("autoscaling.knative.dev/target-burst-capacity", "-1")],
            activation: inactive(GRACE),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "waits to scale to zero while activating until after deadline exceeded",
            activation: activating(ACTIVATION_TIMEOUT / 2),
            want_replicas: -1,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "scale to zero while activating after deadline exceeded",
            activation: activating(ACTIVATION_TIMEOUT + secs(1)),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale to zero while activating after revision deadline exceeded",
            annotations: &[(PROGRESS_DEADLINE_ANNOTATION, "5s")],
            activation: activating(secs(5) + secs(30) + secs(1)),
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale down to minScale before grace period",
            start_replicas: 10,
            min_scale: 2,
            activation: inactive(GRACE - secs(1)),
            reachability: Reachability::Reachable,
            want_replicas: 2,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale down to minScale after grace period",
            start_replicas: 10,
            min_scale: 2,
            activation: inactive(GRACE),
            reachability: Reachability::Reachable,
            want_replicas: 2,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale to zero ignore last pod retention if  revision is unreachable",
            activation: inactive(GRACE),
            reachability: Reachability::Unreachable,
            config: |c| c.scale_to_zero_pod_retention_period = GRACE * 10,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "can't scale to zero if revision is unreachable, but before deadline",
            activation: inactive(GRACE - secs(1)),
            reachability: Reachability::Unreachable,
            config: |c| c.scale_to_zero_pod_retention_period = GRACE * 10,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "ignore minScale if unreachable",
            start_replicas: 10,
            min_scale: 2,
            activation: inactive(GRACE),
            reachability: Reachability::Unreachable,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "observe minScale if reachability unknown",
            start_replicas: 10,
            min_scale: 2,
            activation: inactive(GRACE),
            want_replicas: 2,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scales up",
            scale_to: 10,
            want_replicas: 10,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scales up to maxScale",
            scale_to: 10,
            max_scale: 8,
            want_replicas: 8,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scale up inactive revision",
            scale_to: 10,
            activation: inactive(GRACE / 2),
            want_replicas: 10,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "does not scale up from zero with no metrics",
            start_replicas: 0,
            scale_to: -1,
            activation: inactive(Duration::ZERO),
            want_replicas: -1,
            ..BASE
        },
        Case {
            label: "scales up from zero to desired one",
            start_replicas: 0,
            scale_to: 1,
            want_replicas: 1,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "scales up from zero to desired high scale",
            start_replicas: 0,
            scale_to: 10,
            want_replicas: 10,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "negative scale does not scale",
            start_replicas: 12,
            scale_to: -1,
            activation: active(Duration::ZERO),
            want_replicas: -1,
            ..BASE
        },
        Case {
            label: "initial scale attained, but now time to scale down",
            start_replicas: 2,
            annotations: &[(INITIAL_SCALE_ANNOTATION, "2")],
            activation: active(secs(120)),
            initialized: true,
            want_replicas: 1,
            want_scaling: true,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "haven't scaled to initial scale, override desired scale with initial scale",
            start_replicas: 0,
            scale_to: 1,
            annotations: &[(INITIAL_SCALE_ANNOTATION, "2")],
            activation: activating(Duration::ZERO),
            want_replicas: 2,
            want_scaling: true,
            ..BASE
        },
        Case {
            label: "initial scale reached for the first time",
            start_replicas: 5,
            scale_to: 1,
            annotations: &[(INITIAL_SCALE_ANNOTATION, "5")],
            activation: activating(Duration::ZERO),
            want_replicas: 5,
            ..BASE
        },
        Case {
            label: "reaching initial scale zero",
            start_replicas: 0,
            annotations: &[(INITIAL_SCALE_ANNOTATION, "0")],
            activation: inactive(Duration::ZERO),
            config: |c| c.allow_zero_initial_scale = true,
            want_requeue: true,
            ..BASE
        },
        Case {
            label: "unreachable revision with initialScale > 1 can scale to 0",
            start_replicas: 2,
            annotations: &[(INITIAL_SCALE_ANNOTATION, "2")],
            activation: active(secs(120)),
            reachability: Reachability::Unreachable,
            want_replicas: 1,
            want_scaling: true,
            want_requeue: true,
            ..BASE
        },
    ];
    for case in &cases {
        let (pa, action) = run(case);
        assert_eq!(
            pa.desired_scale,
            Some(case.want_replicas),
            "{}: desired",
            case.label
        );
        let want_patch = case
            .want_scaling
            .then(|| u32::try_from(case.want_replicas).expect("scaling to a count"));
        assert_eq!(action.replicas, want_patch, "{}: patch", case.label);
        assert_eq!(
            action.requeue_after.is_some(),
            case.want_requeue,
            "{}: requeue {:?}",
            case.label,
            action.requeue_after
        );
    }
}

/// Knative `TestDisableScaleToZero`.
#[test]
fn disabled_scale_to_zero_keeps_one_pod() {
    let cases: &[(&str, u32, i32, i32, bool)] = &[
        (
            "EnableScaleToZero == false and minScale == 0",
            0,
            0,
            1,
            true,
        ),
        (
            "EnableScaleToZero == false and minScale == 2",
            2,
            0,
            2,
            true,
        ),
        (
            "EnableScaleToZero == false and desire pod is -1(initial value)",
            0,
            -1,
            -1,
            false,
        ),
    ];
    for &(label, min_scale, scale_to, want, want_scaling) in cases {
        let case = Case {
            label,
            start_replicas: 10,
            scale_to,
            min_scale,
            activation: active(Duration::ZERO),
            reachability: Reachability::Reachable,
            config: |c| c.enable_scale_to_zero = false,
            ..BASE
        };
        let (pa, action) = run(&case);
        assert_eq!(pa.desired_scale, Some(want), "{label}");
        assert_eq!(action.replicas.is_some(), want_scaling, "{label}");
    }
}

fn spec_with(initial: u32, min: u32) -> RevisionScaling {
    let mut annotations = BTreeMap::new();
    annotations.insert(INITIAL_SCALE_ANNOTATION.to_string(), initial.to_string());
    annotations.insert(MIN_SCALE_ANNOTATION.to_string(), min.to_string());
    let config = AutoscalerConfig {
        allow_zero_initial_scale: true,
        ..AutoscalerConfig::default()
    };
    RevisionScaling::resolve(&annotations, 0, &config).expect("spec")
}

fn state(activation: ActivationState) -> PaState {
    let mut pa = PaState::new(&spec_with(1, 0), Duration::ZERO);
    pa.activation = activation;
    pa
}

/// The table in Knative's `computeActiveCondition` doc comment.
#[test]
fn active_condition_follows_want_and_ready() {
    let t0 = secs(5);
    let activating_ = ActivationState::Activating { since: t0 };
    let active_ = ActivationState::Active { since: t0 };
    let inactive_ = ActivationState::Inactive {
        since: t0,
        reason: InactiveReason::NoTraffic,
    };
    #[derive(Debug, PartialEq)]
    enum Kind {
        Activating,
        Active,
        Inactive,
    }
    let kind = |a: &ActivationState| match a {
        ActivationState::Activating { .. } => Kind::Activating,
        ActivationState::Active { .. } => Kind::Active,
        ActivationState::Inactive { .. } => Kind::Inactive,
    };
    // (want, ready, min-scale, from, to); the scale target is initialised, so the
    // threshold is max(min, 1).
    let cases = [
        (0, 3, 1, active_, Kind::Inactive),
        (0, 0, 1, activating_, Kind::Inactive),
        (2, 0, 1, inactive_, Kind::Activating),
        (2, 1, 1, inactive_, Kind::Active),
        (-1, 0, 1, inactive_, Kind::Inactive),
        (-1, 0, 1, activating_, Kind::Activating),
        (-1, 0, 1, active_, Kind::Activating),
        (-1, 1, 1, inactive_, Kind::Inactive),
        (-1, 1, 1, activating_, Kind::Active),
        (-1, 1, 1, active_, Kind::Active),
    ];
    for (want, ready, min, from, to) in cases {
        let spec = spec_with(1, min);
        let mut pa = state(from);
        pa.scale_target_initialized = true;
        compute_active_condition(&spec, &mut pa, want, ready, secs(9));
        assert_eq!(
            kind(&pa.activation),
            to,
            "want {want} ready {ready} from {from:?}"
        );
    }
    // min-scale 0 and initial-scale 0 before initialisation: always inactive, and for lack
    // of traffic, not a timeout (nothing was ever asked to start).
    let spec = spec_with(0, 0);
    for want in [-1, 0, 2] {
        let mut pa = state(activating_);
        compute_active_condition(&spec, &mut pa, want, 0, secs(9));
        assert_eq!(
            pa.activation,
            ActivationState::Inactive {
                since: secs(9),
                reason: InactiveReason::NoTraffic
            },
            "want {want}"
        );
    }
}

#[test]
fn timing_out_while_activating_is_reported() {
    let spec = spec_with(1, 0);
    let mut pa = state(ActivationState::Activating { since: secs(0) });
    let action = reconcile(
        &spec,
        &AutoscalerConfig::default(),
        &mut pa,
        0,
        0,
        secs(631),
    );
    assert_eq!(action.replicas, Some(0));
    assert_eq!(
        pa.activation,
        ActivationState::Inactive {
            since: secs(631),
            reason: InactiveReason::TimedOut
        }
    );
}

#[test]
fn since_time_changes_only_with_the_state() {
    let spec = spec_with(1, 0);
    let config = AutoscalerConfig::default();
    let mut pa = state(ActivationState::Active { since: secs(2) });
    pa.scale_target_initialized = true;
    reconcile(&spec, &config, &mut pa, 3, 3, secs(10));
    assert_eq!(pa.activation, ActivationState::Active { since: secs(2) });
    reconcile(&spec, &config, &mut pa, 0, 3, secs(70));
    assert_eq!(
        pa.activation,
        ActivationState::Inactive {
            since: secs(70),
            reason: InactiveReason::NoTraffic
        }
    );
    reconcile(&spec, &config, &mut pa, 0, 3, secs(80));
    assert_eq!(pa.activation.since(), secs(70));
}

#[test]
fn restarted_decider_does_not_clear_the_desired_scale() {
    let spec = spec_with(1, 0);
    let config = AutoscalerConfig::default();
    let mut pa = state(ActivationState::Active { since: secs(2) });
    reconcile(&spec, &config, &mut pa, 3, 3, secs(10));
    assert_eq!(pa.desired_scale, Some(3));
    let action = reconcile(&spec, &config, &mut pa, -1, 3, secs(12));
    assert_eq!(action, ScaleAction::default());
    assert_eq!(pa.desired_scale, Some(3));
    assert_eq!(pa.actual_scale, Some(3));
    // A last decision of 0 is a decision too.
    pa.desired_scale = Some(0);
    reconcile(&spec, &config, &mut pa, -1, 0, secs(14));
    assert_eq!(pa.desired_scale, Some(0));
    // Only an unknown one is replaced by −1.
    pa.desired_scale = None;
    reconcile(&spec, &config, &mut pa, -1, 0, secs(16));
    assert_eq!(pa.desired_scale, Some(-1));
}

/// A whole lifecycle with the default config: idle → zero after the stable window plus the
/// grace period; a poke brings it back.
#[test]
fn idle_revision_scales_to_zero_after_stable_window_and_grace() {
    let spec = spec_with(1, 0);
    let config = AutoscalerConfig::default();
    let mut pa = PaState::new(&spec, secs(0));
    let mut decider = DeciderState::new(&spec, 1, secs(0));
    assert!(!should_poke(&decider), "no poke before the first decision");

    // First tick: no traffic. Desired 0 while activating waits for the activation timeout;
    // the initial pod is ready, so the PA turns active.
    decider.desired = 0;
    let a = reconcile(&spec, &config, &mut pa, 0, 1, secs(2));
    assert_eq!(a.replicas, None);
    assert_eq!(a.requeue_after, Some(secs(630)));
    assert_eq!(pa.activation, ActivationState::Active { since: secs(2) });
    assert!(pa.scale_target_initialized);
    // Active for less than a stable window: one pod is kept.
    let a = reconcile(&spec, &config, &mut pa, 0, 1, secs(4));
    assert_eq!(a.replicas, None);
    assert_eq!(a.requeue_after, Some(secs(58)));
    assert_eq!(pa.replicas, Some(1));

    // Active for a stable window: inactive, replicas unchanged.
    let a = reconcile(&spec, &config, &mut pa, 0, 1, secs(62));
    assert_eq!(a.replicas, None);
    assert_eq!(a.requeue_after, Some(INACTIVE_REQUEUE));
    assert!(pa.activation.is_inactive());

    // Grace period not yet over.
    let a = reconcile(&spec, &config, &mut pa, 0, 1, secs(65));
    assert_eq!(a.replicas, None);
    assert_eq!(a.requeue_after, Some(secs(27)));
    // Over: scale to zero.
    let a = reconcile(&spec, &config, &mut pa, 0, 1, secs(92));
    assert_eq!(a.replicas, Some(0));
    assert_eq!(pa.replicas, Some(0));

    // A request arrives while the decided scale is 0: poke, decide 1, scale up.
    assert!(should_poke(&decider));
    decider.desired = 1;
    assert!(!should_poke(&decider));
    let a = reconcile(&spec, &config, &mut pa, 1, 0, secs(100));
    assert_eq!(a.replicas, Some(1));
    assert_eq!(
        pa.activation,
        ActivationState::Activating { since: secs(100) }
    );
    reconcile(&spec, &config, &mut pa, 1, 1, secs(102));
    assert_eq!(pa.activation, ActivationState::Active { since: secs(102) });
}

/// One case of `handle_scale_to_zero` with the exact requeue time asserted.
struct ZeroCase {
    label: &'static str,
    activation: ActivationState,
    unreachable: bool,
    retention: Duration,
    proxy_for: Option<Duration>,
    want: (i32, bool),
    want_requeue: Option<Duration>,
}

/// Knative `TestScaler`'s scale-to-zero cases, with the requeue delay each one schedules:
/// the remaining activation timeout, stable window, pod retention or grace period.
#[test]
fn scale_to_zero_requeues_exactly_when_the_next_step_is_due() {
    let config = AutoscalerConfig {
        scale_to_zero_grace_period: GRACE,
        ..knative_test_config()
    };
    let base = RevisionScaling::resolve(&BTreeMap::new(), 0, &config).expect("spec");
    let inactive_for = |ago: Duration| ActivationState::Inactive {
        since: NOW - ago,
        reason: InactiveReason::NoTraffic,
    };
    let cases = [
        ZeroCase {
            label: "activating within the timeout waits the whole timeout",
            activation: ActivationState::Activating {
                since: NOW - secs(10),
            },
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (-1, false),
            want_requeue: Some(ACTIVATION_TIMEOUT),
        },
        ZeroCase {
            label: "activating for exactly the timeout still waits",
            activation: ActivationState::Activating {
                since: NOW - ACTIVATION_TIMEOUT,
            },
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (-1, false),
            want_requeue: Some(ACTIVATION_TIMEOUT),
        },
        ZeroCase {
            label: "activating past the timeout gives up and scales to zero",
            activation: ActivationState::Activating {
                since: NOW - ACTIVATION_TIMEOUT - secs(1),
            },
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (0, true),
            want_requeue: None,
        },
        ZeroCase {
            label: "active for part of the stable window keeps one pod until it ends",
            activation: ActivationState::Active {
                since: NOW - secs(100),
            },
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (1, true),
            want_requeue: Some(STABLE_WINDOW - secs(100)),
        },
        ZeroCase {
            label: "active for the whole stable window goes inactive and comes back shortly",
            activation: ActivationState::Active {
                since: NOW - STABLE_WINDOW,
            },
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (0, false),
            want_requeue: Some(INACTIVE_REQUEUE),
        },
        ZeroCase {
            label: "inactive within the pod retention waits for the rest of it",
            activation: inactive_for(secs(70)),
            unreachable: false,
            retention: secs(120),
            proxy_for: None,
            want: (0, false),
            want_requeue: Some(secs(50)),
        },
        ZeroCase {
            label: "proxied for the grace period but within the pod retention waits for it",
            activation: inactive_for(secs(70)),
            unreachable: false,
            retention: secs(120),
            proxy_for: Some(GRACE),
            want: (0, false),
            want_requeue: Some(secs(50)),
        },
        ZeroCase {
            label: "proxied briefly within the pod retention waits for the retention",
            activation: inactive_for(secs(70)),
            unreachable: false,
            retention: secs(120),
            proxy_for: Some(secs(30)),
            want: (0, false),
            want_requeue: Some(secs(50)),
        },
        ZeroCase {
            label: "a retention shorter than the grace period, once over, waits for the grace",
            activation: inactive_for(secs(30)),
            unreachable: false,
            retention: secs(30),
            proxy_for: None,
            want: (0, false),
            want_requeue: Some(GRACE - secs(30)),
        },
        ZeroCase {
            label: "unreachable ignores the pod retention",
            activation: inactive_for(GRACE),
            unreachable: true,
            retention: secs(120),
            proxy_for: None,
            want: (0, true),
            want_requeue: None,
        },
        ZeroCase {
            label: "inactive within the grace period without the proxy waits for the rest of it",
            activation: inactive_for(secs(20)),
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: None,
            want: (0, false),
            want_requeue: Some(GRACE - secs(20)),
        },
        ZeroCase {
            label: "proxied for part of the grace period waits for the rest of it",
            activation: inactive_for(secs(20)),
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: Some(secs(45)),
            want: (0, false),
            want_requeue: Some(GRACE - secs(45)),
        },
        ZeroCase {
            label: "proxied for the whole grace period scales to zero",
            activation: inactive_for(secs(20)),
            unreachable: false,
            retention: Duration::ZERO,
            proxy_for: Some(GRACE),
            want: (0, true),
            want_requeue: None,
        },
    ];
    for case in cases {
        let spec = RevisionScaling {
            scale_to_zero_pod_retention_period: case.retention,
            activation_timeout: ACTIVATION_TIMEOUT,
            ..base.clone()
        };
        let mut pa = PaState::new(&spec, NOW);
        pa.activation = case.activation;
        if case.unreachable {
            pa.reachability = Reachability::Unreachable;
        }
        pa.proxy_since = case.proxy_for.map(|d| NOW - d);
        let mut requeue = None;
        let got = handle_scale_to_zero(&spec, &config, &pa, 0, NOW, &mut requeue);
        assert_eq!(got, case.want, "{}", case.label);
        assert_eq!(requeue, case.want_requeue, "{}", case.label);
    }
}

/// Each predicate of `ActivationState` holds for its own state only.
#[test]
fn activation_state_predicates_match_only_their_state() {
    let states = [
        (
            ActivationState::Activating { since: NOW },
            (true, false, false),
        ),
        (ActivationState::Active { since: NOW }, (false, true, false)),
        (
            ActivationState::Inactive {
                since: NOW,
                reason: InactiveReason::TimedOut,
            },
            (false, false, true),
        ),
    ];
    for (state, want) in states {
        let got = (
            state.is_activating(),
            state.is_active(),
            state.is_inactive(),
        );
        assert_eq!(got, want, "{state:?}");
        assert_eq!(state.since(), NOW, "{state:?}");
        assert_eq!(state.for_duration(NOW + secs(7)), secs(7), "{state:?}");
    }
}
