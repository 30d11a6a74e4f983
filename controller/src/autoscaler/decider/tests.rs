use super::*;

const SEC: Duration = Duration::from_secs(1);
/// Knative's unit tests presume 75% utilisation: total = target / 0.75.
const TEST_UTILIZATION: f64 = 0.75;

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// The `DeciderSpec` of Knative's `newTestAutoscaler(target, tbc)`.
fn spec(target: f64, tbc: f64) -> RevisionScaling {
    RevisionScaling {
        metric: Metric::Concurrency,
        aggregation: Aggregation::Linear,
        container_concurrency: 0,
        target_value: target,
        total_value: target / TEST_UTILIZATION,
        target_burst_capacity: tbc,
        activator_capacity: 150.0,
        panic_threshold: 2.0,
        max_scale_up_rate: 10.0,
        max_scale_down_rate: 10.0,
        stable_window: Duration::from_secs(60),
        panic_window: Duration::from_secs(6),
        scale_down_delay: Duration::ZERO,
        min_scale: 0,
        max_scale: 0,
        initial_scale: 1,
        activation_scale: 0,
        scale_to_zero_pod_retention_period: Duration::ZERO,
        activation_timeout: Duration::from_secs(630),
    }
}

/// Knative's `expectedEBC(target, tbc, panic, pods)`.
fn expected_ebc(target: f64, tbc: f64, panic: f64, pods: f64) -> f64 {
    (target / TEST_UTILIZATION * pods - tbc - panic).floor()
}

/// An autoscaler under test: Knative's `autoscaler` with a fake pod counter and metric client.
struct Scaler {
    spec: RevisionScaling,
    state: DeciderState,
    ready: u32,
    reachable: bool,
}

impl Scaler {
    /// Knative's `newTestAutoscaler`: created while one pod is ready.
    fn new(spec: RevisionScaling) -> Scaler {
        let state = DeciderState::new(&spec, 1, Duration::ZERO);
        Scaler {
            spec,
            state,
            ready: 1,
            reachable: true,
        }
    }

    fn scale(&mut self, stable: f64, panic: f64, now: Duration) -> Decision {
        decide_observed(
            &self.spec,
            &mut self.state,
            stable,
            panic,
            self.ready,
            self.reachable,
            now,
        )
    }

    /// Knative's `expectScale` (EBC compared with ±1 tolerance, as there).
    #[track_caller]
    fn expect(&mut self, stable: f64, panic: f64, now: Duration, desired: i32, ebc: f64) {
        let d = self.scale(stable, panic, now);
        assert_eq!(d.desired, desired, "desired at {now:?}");
        assert!(
            (d.excess_burst_capacity - ebc).abs() <= 1.0,
            "ebc {} want {ebc}",
            d.excess_burst_capacity
        );
    }
}

/// The spec of Knative's scale-down-delay tests.
fn delay_spec() -> RevisionScaling {
    RevisionScaling {
        max_scale_down_rate: 10.0,
        max_scale_up_rate: 10.0,
        panic_threshold: 100.0,
        scale_down_delay: Duration::from_secs(300),
        ..spec(10.0, 0.0)
    }
}

/// Knative `TestAutoscalerScaleDownDelay` ("simple" and "gradual").
#[test]
fn scale_down_delay_holds_the_maximum_of_the_delay_window() {
    let spec = delay_spec();
    let mut s = Scaler {
        state: DeciderState::new(&spec, 0, Duration::ZERO),
        spec,
        ready: 0,
        reachable: true,
    };
    // Simple: up to 4, held for five minutes, then straight to 0.
    s.expect(40.0, 40.0, at(2), 4, 0.0);
    s.expect(0.0, 0.0, at(300), 4, 0.0);
    s.expect(0.0, 0.0, at(302), 0, 0.0);
    // Gradual: each value scrolls out of the window in turn.
    s.expect(40.0, 40.0, at(540), 4, 0.0);
    s.expect(30.0, 30.0, at(600), 4, 0.0);
    s.expect(0.0, 0.0, at(660), 4, 0.0);
    s.expect(0.0, 0.0, at(840), 3, 0.0);
    s.expect(0.0, 0.0, at(900), 0, 0.0);
}

/// Knative `TestAutoscalerScaleDownDelayNotReachable`.
#[test]
fn scale_down_delay_is_skipped_when_unreachable() {
    let spec = delay_spec();
    let mut s = Scaler {
        state: DeciderState::new(&spec, 0, Duration::ZERO),
        spec,
        ready: 0,
        reachable: true,
    };
    s.expect(40.0, 40.0, at(2), 4, 0.0);
    s.expect(0.0, 0.0, at(60), 4, 0.0);
    s.reachable = false;
    s.expect(0.0, 0.0, at(2), 0, 0.0);
}

/// A changed `scale-down-delay` starts a window of the new length: the old maximum is not
/// held for the old delay.
#[test]
fn a_changed_scale_down_delay_starts_a_new_window() {
    let spec = delay_spec();
    let mut s = Scaler {
        state: DeciderState::new(&spec, 0, Duration::ZERO),
        spec,
        ready: 0,
        reachable: true,
    };
    s.expect(40.0, 40.0, at(2), 4, 0.0);
    s.expect(0.0, 0.0, at(20), 4, 0.0);
    s.spec.scale_down_delay = Duration::from_secs(10);
    s.expect(0.0, 0.0, at(22), 0, 0.0);
    s.expect(20.0, 20.0, at(24), 2, 0.0);
    s.expect(0.0, 0.0, at(26), 2, 0.0);
    s.expect(0.0, 0.0, at(36), 0, 0.0);
}

/// Knative `TestAutoscalerScaleDownDelayZero`.
#[test]
fn zero_scale_down_delay_scales_down_at_once() {
    let spec = RevisionScaling {
        scale_down_delay: Duration::ZERO,
        ..delay_spec()
    };
    let mut s = Scaler {
        state: DeciderState::new(&spec, 0, Duration::ZERO),
        spec,
        ready: 0,
        reachable: true,
    };
    s.expect(40.0, 40.0, at(0), 4, 0.0);
    s.expect(20.0, 20.0, Duration::from_millis(500), 2, 0.0);
}

/// Knative `TestAutoscalerMetrics` (the scale result; sluice has no metrics here).
#[test]
fn stable_load_scales_to_average_over_target() {
    let mut s = Scaler::new(spec(10.0, 100.0));
    s.expect(50.0, 50.0, at(100), 5, expected_ebc(10.0, 100.0, 50.0, 1.0));
}

/// Knative `TestAutoscalerMetricsWithRPS`.
#[test]
fn rps_averages_scale_the_same_way() {
    let mut s = Scaler::new(RevisionScaling {
        metric: Metric::Rps,
        ..spec(10.0, 100.0)
    });
    s.expect(
        100.0,
        99.0,
        at(161),
        10,
        expected_ebc(10.0, 100.0, 99.0, 1.0),
    );
}

/// Knative `TestAutoscalerStableModeIncreaseWithConcurrencyDefault`.
#[test]
fn stable_mode_increase() {
    let mut s = Scaler::new(spec(10.0, 101.0));
    s.expect(50.0, 10.0, at(100), 5, expected_ebc(10.0, 101.0, 10.0, 1.0));
    s.expect(
        100.0,
        10.0,
        at(100),
        10,
        expected_ebc(10.0, 101.0, 10.0, 1.0),
    );
}

/// Knative `TestAutoscalerStableModeIncreaseWithRPS`.
#[test]
fn stable_mode_increase_with_rps() {
    let mut s = Scaler::new(RevisionScaling {
        metric: Metric::Rps,
        ..spec(10.0, 101.0)
    });
    s.expect(50.0, 50.0, at(100), 5, expected_ebc(10.0, 101.0, 50.0, 1.0));
    s.expect(
        100.0,
        99.0,
        at(100),
        10,
        expected_ebc(10.0, 101.0, 99.0, 1.0),
    );
}

/// Knative `TestAutoscalerUnpanicAfterSlowIncrease`.
#[test]
fn panic_ends_a_stable_window_after_the_last_renewal() {
    let mut s = Scaler::new(spec(1.0, 98.0));
    s.ready = 10;
    let start = at(100);
    s.expect(11.0, 25.0, start, 25, expected_ebc(1.0, 98.0, 25.0, 10.0));
    assert_eq!(s.state.panic_time, Some(start));

    // Half a stable window later, +15 pods, below the threshold: panic time stays put.
    s.ready = 40;
    let tm = start + at(30);
    s.expect(30.0, 41.0, tm, 41, expected_ebc(1.0, 98.0, 41.0, 40.0));
    assert_eq!(s.state.panic_time, Some(start));

    // Past the stable window: panic ends, the stable count rules.
    s.ready = 55;
    let tm = tm + at(30) + TICK_INTERVAL;
    s.expect(50.0, 56.0, tm, 50, expected_ebc(1.0, 98.0, 56.0, 55.0));
    assert_eq!(s.state.panic_time, None);
}

/// Knative `TestAutoscalerExtendPanicWindow`.
#[test]
fn surging_again_extends_panic() {
    let mut s = Scaler::new(spec(1.0, 98.0));
    s.ready = 10;
    let start = at(100);
    s.expect(11.0, 25.0, start, 25, expected_ebc(1.0, 98.0, 25.0, 10.0));
    assert_eq!(s.state.panic_time, Some(start));
    s.ready = 40;
    let tm = start + at(30);
    s.expect(30.0, 80.0, tm, 80, expected_ebc(1.0, 98.0, 80.0, 40.0));
    assert_eq!(s.state.panic_time, Some(tm));
}

/// Knative `TestAutoscalerStableModeDecrease`.
#[test]
fn stable_mode_decrease() {
    let mut s = Scaler::new(spec(10.0, 98.0));
    s.ready = 8;
    s.expect(
        100.0,
        100.0,
        at(100),
        10,
        expected_ebc(10.0, 98.0, 100.0, 8.0),
    );
    s.expect(50.0, 50.0, at(100), 5, expected_ebc(10.0, 98.0, 50.0, 8.0));
}

/// Knative `TestAutoscalerStableModeNoTrafficScaleToZero`.
#[test]
fn no_traffic_scales_to_zero() {
    let mut s = Scaler::new(spec(10.0, 75.0));
    s.expect(1.0, 0.0, at(100), 1, expected_ebc(10.0, 75.0, 0.0, 1.0));
    s.expect(0.0, 0.0, at(100), 0, expected_ebc(10.0, 75.0, 0.0, 1.0));
}

/// Knative `TestAutoscalerActivationScale`.
#[test]
fn activation_scale_is_the_minimum_non_zero_scale() {
    let mut s = Scaler::new(RevisionScaling {
        activation_scale: 2,
        ..spec(10.0, 75.0)
    });
    s.expect(0.0, 0.0, at(100), 0, expected_ebc(10.0, 75.0, 0.0, 1.0));
    s.expect(1.0, 0.0, at(100), 2, expected_ebc(10.0, 75.0, 0.0, 1.0));
}

/// Knative `TestAutoscalerPanicModeExponentialTrackAndStabilize`.
#[test]
fn panic_tracks_exponential_growth_and_stabilizes() {
    let mut s = Scaler::new(spec(1.0, 101.0));
    s.expect(6.0, 6.0, at(100), 6, expected_ebc(1.0, 101.0, 6.0, 1.0));

    let mut tm = at(100);
    s.ready = 6;
    s.expect(36.0, 36.0, tm, 36, expected_ebc(1.0, 101.0, 36.0, 6.0));
    assert_eq!(s.state.panic_time, Some(tm));

    s.ready = 36;
    tm += SEC;
    s.expect(216.0, 216.0, tm, 216, expected_ebc(1.0, 101.0, 216.0, 36.0));
    assert_eq!(s.state.panic_time, Some(tm));

    s.ready = 216;
    s.expect(
        1296.0,
        1296.0,
        tm,
        1296,
        expected_ebc(1.0, 101.0, 1296.0, 216.0),
    );
    assert_eq!(s.state.panic_time, Some(tm));

    s.ready = 1296;
    tm += SEC;
    s.expect(
        1296.0,
        1296.0,
        tm,
        1296,
        expected_ebc(1.0, 101.0, 1296.0, 1296.0),
    );
}

/// Knative `TestAutoscalerScale`: one decision from a fresh autoscaler per case.
#[test]
fn scale_table() {
    struct Case {
        label: &'static str,
        spec: RevisionScaling,
        stable: f64,
        panic: f64,
        ready: u32,
        reachable: bool,
        /// (panic time offset back from now, max panic pods), as `prepFunc` sets it.
        panic_state: Option<(u64, i32)>,
        want: i32,
        want_ebc: f64,
    }
    let case = |label, spec: RevisionScaling, stable, panic, ready, want, want_ebc| Case {
        label,
        spec,
        stable,
        panic,
        ready,
        reachable: true,
        panic_state: None,
        want,
        want_ebc,
    };
    let cases = [
        case(
            "AutoscalerNoDataAtZeroNoAutoscale",
            spec(10.0, 100.0),
            0.0,
            0.0,
            1,
            0,
            expected_ebc(10.0, 100.0, 0.0, 1.0),
        ),
        case(
            "AutoscalerStableModeUnlimitedTBC",
            spec(181.0, -1.0),
            21.0,
            26.0,
            1,
            1,
            -1.0,
        ),
        case("Autoscaler0TBC", spec(10.0, 0.0), 50.0, 49.0, 1, 5, 0.0),
        case(
            "AutoscalerStableModeNoChange",
            spec(10.0, 100.0),
            50.0,
            50.0,
            1,
            5,
            expected_ebc(10.0, 100.0, 50.0, 1.0),
        ),
        Case {
            panic_state: Some((5, 5)),
            ..case(
                "AutoscalerPanicStableLargerThanPanic",
                spec(1.0, 100.0),
                50.0,
                30.0,
                5,
                50,
                expected_ebc(1.0, 100.0, 30.0, 5.0),
            )
        },
        Case {
            panic_state: Some((5, 5)),
            ..case(
                "AutoscalerPanicStableLessThanPanic",
                spec(1.0, 100.0),
                20.0,
                30.0,
                5,
                30,
                expected_ebc(1.0, 100.0, 30.0, 5.0),
            )
        },
        case(
            "AutoscalerStableModeNoChangeAlreadyScaled",
            spec(10.0, 100.0),
            50.0,
            50.0,
            5,
            5,
            expected_ebc(10.0, 100.0, 50.0, 5.0),
        ),
        case(
            "AutoscalerStableModeIncreaseWithSmallScaleUpRate",
            RevisionScaling {
                max_scale_up_rate: 1.1,
                ..spec(1.0, 1982.0)
            },
            3.0,
            3.1,
            2,
            3,
            expected_ebc(1.0, 1982.0, 3.1, 2.0),
        ),
        case(
            "AutoscalerStableModeDecreaseWithSmallScaleDownRate",
            RevisionScaling {
                max_scale_down_rate: 1.1,
                ..spec(10.0, 1982.0)
            },
            1.0,
            1.0,
            100,
            90,
            expected_ebc(10.0, 1982.0, 1.0, 100.0),
        ),
        Case {
            reachable: false,
            ..case(
                "AutoscalerStableModeDecreaseNonReachable",
                RevisionScaling {
                    max_scale_down_rate: 1.1,
                    ..spec(10.0, 1982.0)
                },
                1.0,
                1.0,
                100,
                1,
                expected_ebc(10.0, 1982.0, 1.0, 100.0),
            )
        },
        case(
            "AutoscalerPanicModeDoublePodCount",
            spec(10.0, 84.0),
            50.0,
            100.0,
            1,
            10,
            expected_ebc(10.0, 84.0, 100.0, 1.0),
        ),
    ];
    let now = at(1000);
    for c in cases {
        let mut s = Scaler::new(c.spec);
        s.ready = c.ready;
        s.reachable = c.reachable;
        if let Some((ago, pods)) = c.panic_state {
            s.state.panic_time = Some(now - at(ago));
            s.state.max_panic_pods = pods;
        }
        let d = s.scale(c.stable, c.panic, now);
        assert_eq!(d.desired, c.want, "{}", c.label);
        assert!(
            (d.excess_burst_capacity - c.want_ebc).abs() <= 1.0,
            "{}: ebc {} want {}",
            c.label,
            d.excess_burst_capacity,
            c.want_ebc
        );
    }
}

/// Knative `TestAutoscalerPanicThenUnPanicScaleDown`.
#[test]
fn panic_holds_scale_until_a_stable_window_passes() {
    let mut s = Scaler::new(spec(10.0, 93.0));
    s.expect(
        100.0,
        100.0,
        at(100),
        10,
        expected_ebc(10.0, 93.0, 100.0, 1.0),
    );
    s.ready = 10;
    let panic_time = at(100);
    s.expect(
        100.0,
        1000.0,
        panic_time,
        100,
        expected_ebc(10.0, 93.0, 1000.0, 10.0),
    );
    // Traffic dropped off; still panicking, so the scale stays.
    s.expect(
        1.0,
        1.0,
        panic_time + at(30),
        100,
        expected_ebc(10.0, 93.0, 1.0, 10.0),
    );
    // After the stable window: scale down.
    s.expect(
        1.0,
        1.0,
        panic_time + at(61),
        1,
        expected_ebc(10.0, 93.0, 1.0, 10.0),
    );
}

#[test]
fn panic_does_not_end_at_exactly_a_stable_window() {
    let mut s = Scaler::new(spec(10.0, 93.0));
    s.ready = 10;
    s.expect(
        100.0,
        1000.0,
        at(100),
        100,
        expected_ebc(10.0, 93.0, 1000.0, 10.0),
    );
    let d = s.scale(1.0, 1.0, at(160));
    assert!(d.panicking);
    assert_eq!(d.desired, 100);
    let d = s.scale(1.0, 1.0, at(161));
    assert!(!d.panicking);
    assert_eq!(d.desired, 1);
}

/// Knative `TestAutoscalerRateLimitScaleUp`.
#[test]
fn scale_up_is_rate_limited() {
    let mut s = Scaler::new(spec(10.0, 61.0));
    s.expect(
        1000.0,
        1001.0,
        at(100),
        10,
        expected_ebc(10.0, 61.0, 1001.0, 1.0),
    );
    s.ready = 10;
    s.expect(
        1000.0,
        1001.0,
        at(100),
        100,
        expected_ebc(10.0, 61.0, 1001.0, 10.0),
    );
}

/// Knative `TestAutoscalerRateLimitScaleDown`.
#[test]
fn scale_down_is_rate_limited() {
    let mut s = Scaler::new(spec(10.0, 61.0));
    s.ready = 100;
    s.expect(1.0, 1.0, at(100), 10, expected_ebc(10.0, 61.0, 1.0, 100.0));
    s.ready = 10;
    s.expect(1.0, 1.0, at(100), 1, expected_ebc(10.0, 61.0, 1.0, 10.0));
}

/// Knative `TestAutoscalerUseOnePodAsMinimumIfEndpointsNotFound`.
#[test]
fn zero_ready_pods_count_as_one_for_rate_limits() {
    let mut s = Scaler::new(spec(10.0, 81.0));
    s.ready = 0;
    s.expect(
        1000.0,
        888.0,
        at(100),
        10,
        expected_ebc(10.0, 81.0, 888.0, 0.0),
    );
}

/// Knative `TestAutoscalerUpdateTarget`.
#[test]
fn a_new_spec_applies_to_the_next_decision() {
    let mut s = Scaler::new(spec(10.0, 77.0));
    s.expect(
        100.0,
        101.0,
        at(100),
        10,
        expected_ebc(10.0, 77.0, 101.0, 1.0),
    );
    s.ready = 10;
    s.spec = RevisionScaling {
        activator_capacity: 21.0,
        ..spec(1.0, 71.0)
    };
    s.expect(
        100.0,
        101.0,
        at(100),
        100,
        expected_ebc(1.0, 71.0, 101.0, 10.0),
    );
}

/// Knative `TestStartInPanicMode` and `TestNewFail`.
#[test]
fn starts_in_panic_when_more_than_one_pod_is_ready() {
    let spec = RevisionScaling {
        target_value: 100.0,
        total_value: 120.0,
        target_burst_capacity: 11.0,
        panic_threshold: 220.0,
        ..spec(100.0, 11.0)
    };
    for ready in 0..2 {
        let state = DeciderState::new(&spec, ready, at(5));
        assert_eq!(state.panic_time, None, "ready {ready}");
        assert_eq!(state.max_panic_pods, ready as i32);
    }
    let state = DeciderState::new(&spec, 2, at(5));
    assert_eq!(state.panic_time, Some(at(5)));
    assert_eq!(state.max_panic_pods, 2);
    assert_eq!(state.desired, -1);
}

/// A restarted decider keeps the ready pods while its history rebuilds.
#[test]
fn starting_in_panic_holds_the_current_scale() {
    let mut s = Scaler::new(spec(10.0, -1.0));
    s.state = DeciderState::new(&s.spec, 5, at(0));
    s.ready = 5;
    let d = s.scale(0.0, 0.0, at(2));
    assert!(d.panicking);
    assert_eq!(d.desired, 5);
    let d = s.scale(0.0, 0.0, at(62));
    assert_eq!((d.panicking, d.desired), (false, 0));
}

/// Knative multiscaler `createScaler`: the initial excess burst capacity.
#[test]
fn initial_excess_burst_capacity() {
    let cases = [
        (-1.0, -1.0),
        (0.0, 0.0),
        (50.0, 100.0 / TEST_UTILIZATION - 50.0),
    ];
    for (tbc, want) in cases {
        let state = DeciderState::new(&spec(100.0, tbc), 0, at(0));
        assert_eq!(state.excess_burst_capacity, want, "tbc {tbc}");
    }
}

/// Knative multiscaler `updateLatestScale`: inform on a scale change or an EBC sign flip.
#[test]
fn a_decision_reports_changes() {
    let mut s = Scaler::new(spec(10.0, 10.0));
    s.state.excess_burst_capacity = 0.0;
    let d = s.scale(0.0, 0.0, at(2));
    assert!(d.changed, "first decision replaces -1");
    let d = s.scale(0.0, 0.0, at(4));
    assert!(!d.changed);
    let d = s.scale(5.0, 0.0, at(6));
    assert_eq!((d.desired, d.excess_burst_capacity), (1, 3.0));
    assert!(d.changed, "scale 0 -> 1");
    // floor(1 × 13.33 − 10 − 5) = −2: the sign flips while the scale stays 1.
    let d = s.scale(5.0, 5.0, at(8));
    assert_eq!((d.desired, d.excess_burst_capacity), (1, -2.0));
    assert!(d.changed);
    let d = s.scale(5.0, 5.0, at(10));
    assert!(!d.changed);
    // TBC 0: the capacity is always 0, which is not negative, so only the scale informs.
    let mut s = Scaler::new(spec(10.0, 0.0));
    assert!(s.scale(5.0, 0.0, at(2)).changed, "first decision");
    let d = s.scale(5.0, 0.0, at(4));
    assert_eq!(
        (d.desired, d.excess_burst_capacity, d.changed),
        (1, 0.0, false)
    );
}

#[test]
fn windows_average_the_chosen_metric() {
    let concurrency = Windows::new(&spec(10.0, -1.0));
    let rps = Windows::new(&RevisionScaling {
        metric: Metric::Rps,
        ..spec(10.0, -1.0)
    });
    for mut w in [concurrency, rps] {
        for s in 1..=6 {
            w.record(at(s), 12.0, 30.0);
        }
        let want = if w.metric == Metric::Rps { 30.0 } else { 12.0 };
        assert_eq!(w.averages(at(6)), (want, want));
    }
}

#[test]
fn decide_reads_the_windows() {
    let spec = spec(10.0, -1.0);
    let mut windows = Windows::new(&spec);
    let mut state = DeciderState::new(&spec, 1, at(0));
    for s in 1..=10 {
        windows.record(at(s), if s <= 4 { 10.0 } else { 40.0 }, 0.0);
    }
    let d = decide(&spec, &mut state, &windows, 1, true, at(10));
    // Stable: (4×10 + 6×40) / 10 = 28 → 3 pods; panic (6 s): 40 → 4 pods, 4/1 ≥ 2 → panic.
    assert_eq!((d.stable, d.panic), (28.0, 40.0));
    assert!(d.panicking);
    assert_eq!(d.desired, 4);
    assert_eq!(d.excess_burst_capacity, -1.0);
}

#[test]
fn weighted_windows_favour_recent_samples() {
    let spec = RevisionScaling {
        aggregation: Aggregation::WeightedExponential,
        ..spec(10.0, -1.0)
    };
    let mut windows = Windows::new(&spec);
    for s in 1..=60 {
        windows.record(at(s), if s <= 50 { 0.0 } else { 100.0 }, 0.0);
    }
    let (stable, _) = windows.averages(at(60));
    // Linear would give 100 × 10/60 ≈ 16.7; α = 0.2 weighs the last ten seconds as 1 − 0.8^10.
    assert!(
        (stable - 100.0 * (1.0 - 0.8f64.powi(10))).abs() < 1e-9,
        "{stable}"
    );
}

/// `panicking()` reports exactly whether a panic time is set.
#[test]
fn panicking_follows_the_panic_time() {
    let spec = spec(10.0, -1.0);
    for (ready, want) in [(0, false), (1, false), (2, true), (5, true)] {
        let state = DeciderState::new(&spec, ready, at(5));
        assert_eq!(state.panicking(), want, "ready {ready}");
    }
    let mut s = Scaler::new(spec);
    assert!(!s.state.panicking());
    s.scale(10.0, 20.0, at(10));
    assert!(s.state.panicking(), "a surge starts panic");
    s.scale(0.0, 0.0, at(71));
    assert!(!s.state.panicking(), "a calm stable window ends it");
}

/// Panic entry and exit at the boundaries (threshold 2.0, stable window 60 s, target 10).
#[test]
fn panic_boundaries() {
    // (label, ready, panic average, want panicking right after)
    let entry = [
        (
            "panic pods exactly at the threshold enter panic",
            1,
            20.0,
            true,
        ),
        ("panic pods just below the threshold do not", 1, 10.0, false),
        (
            "the ratio uses ready pods: 4 of 2 is at the threshold",
            2,
            40.0,
            true,
        ),
        ("3 of 2 is below the threshold", 2, 30.0, false),
        ("zero ready pods count as one", 0, 20.0, true),
    ];
    for (label, ready, panic, want) in entry {
        let mut s = Scaler::new(spec(10.0, -1.0));
        s.ready = ready;
        let d = s.scale(0.0, panic, at(100));
        assert_eq!(d.panicking, want, "{label}");
        assert_eq!(s.state.panicking(), want, "{label}");
    }
    // Exit: panic renewed at 100 s lasts through 160 s and ends at the first tick after.
    for (label, now, want) in [
        ("half a stable window later", 130, true),
        ("exactly a stable window later", 160, true),
        ("just past a stable window", 161, false),
    ] {
        let mut s = Scaler::new(spec(10.0, -1.0));
        s.scale(0.0, 20.0, at(100));
        let d = s.scale(0.0, 0.0, at(now));
        assert_eq!(d.panicking, want, "{label}");
        if !want {
            assert_eq!(
                s.state.max_panic_pods, 0,
                "{label}: exit forgets the panic maximum"
            );
            assert_eq!(d.desired, 0, "{label}: the stable count rules again");
        } else {
            assert_eq!(d.desired, 2, "{label}: panic holds its maximum");
        }
    }
}

/// `activation-scale` raises non-zero stable and panic counts, never zero ones.
#[test]
fn activation_scale_raises_only_non_zero_counts() {
    // (label, activation scale, stable avg, panic avg, ready, want desired)
    let cases = [
        ("stable 1 pod raised to 3", 3, 10.0, 0.0, 1, 3),
        ("stable 0 stays 0", 3, 0.0, 0.0, 1, 0),
        (
            "stable above the activation scale is kept",
            3,
            50.0,
            0.0,
            1,
            5,
        ),
        ("activation scale 1 changes nothing", 1, 10.0, 0.0, 1, 1),
        (
            "panic 1 pod raised to 3 while panicking",
            3,
            0.0,
            10.0,
            2,
            3,
        ),
        (
            "panic 0 while panicking holds the ready pods",
            3,
            0.0,
            0.0,
            2,
            2,
        ),
        (
            "panic above the activation scale is kept",
            3,
            0.0,
            50.0,
            2,
            5,
        ),
    ];
    for (label, activation, stable, panic, ready, want) in cases {
        let spec = RevisionScaling {
            activation_scale: activation,
            max_scale_down_rate: 1000.0,
            ..spec(10.0, -1.0)
        };
        let state = DeciderState::new(&spec, ready, at(0));
        let mut s = Scaler {
            spec,
            state,
            ready,
            reachable: true,
        };
        let d = s.scale(stable, panic, at(10));
        assert_eq!(d.desired, want, "{label}");
    }
}

/// The scale-down delay holds a decision only while it is configured and reachable.
#[test]
fn scale_down_delay_window_applies_only_when_configured_and_reachable() {
    // (label, delay secs, reachable, want desired after the drop)
    for (label, delay, reachable, want) in [
        ("delay and reachable holds the maximum", 300, true, 4),
        ("no delay drops at once", 0, true, 0),
        ("unreachable drops at once", 300, false, 0),
    ] {
        let spec = RevisionScaling {
            scale_down_delay: Duration::from_secs(delay),
            ..delay_spec()
        };
        let mut s = Scaler {
            state: DeciderState::new(&spec, 0, Duration::ZERO),
            spec,
            ready: 0,
            reachable,
        };
        assert_eq!(s.scale(40.0, 40.0, at(2)).desired, 4, "{label}");
        assert_eq!(s.scale(0.0, 0.0, at(10)).desired, want, "{label}");
    }
}
