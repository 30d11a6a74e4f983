use super::*;

/// Annotation or ConfigMap pairs.
type Pairs = &'static [(&'static str, &'static str)];
/// Mutates a config before a case runs.
type Mutator = Box<dyn Fn(&mut AutoscalerConfig)>;

fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn with(f: impl FnOnce(&mut AutoscalerConfig)) -> AutoscalerConfig {
    let mut c = AutoscalerConfig::default();
    f(&mut c);
    c
}

/// The `_example` block of Knative's `config/core/configmaps/autoscaler.yaml`.
const EXAMPLE: &[(&str, &str)] = &[
    ("container-concurrency-target-percentage", "70"),
    ("container-concurrency-target-default", "100"),
    ("requests-per-second-target-default", "200"),
    ("target-burst-capacity", "211"),
    ("stable-window", "60s"),
    ("panic-window-percentage", "10.0"),
    ("panic-threshold-percentage", "200.0"),
    ("max-scale-up-rate", "1000.0"),
    ("max-scale-down-rate", "2.0"),
    ("enable-scale-to-zero", "true"),
    ("scale-to-zero-grace-period", "30s"),
    ("scale-to-zero-pod-retention-period", "0s"),
    ("pod-autoscaler-class", "kpa.autoscaling.knative.dev"),
    ("activator-capacity", "100.0"),
    ("initial-scale", "1"),
    ("allow-zero-initial-scale", "false"),
    ("min-scale", "0"),
    ("max-scale", "0"),
    ("scale-down-delay", "0s"),
    ("max-scale-limit", "0"),
];

#[test]
fn defaults_are_knatives() {
    let c = AutoscalerConfig::default();
    assert_eq!(c.container_concurrency_target_fraction, 0.7);
    assert_eq!(c.container_concurrency_target_default, 100.0);
    assert_eq!(c.requests_per_second_target_default, 200.0);
    assert_eq!(c.target_burst_capacity, 211.0);
    assert_eq!(c.stable_window, Duration::from_secs(60));
    assert_eq!(c.panic_window_percentage, 10.0);
    assert_eq!(c.panic_threshold_percentage, 200.0);
    assert_eq!(c.max_scale_up_rate, 1000.0);
    assert_eq!(c.max_scale_down_rate, 2.0);
    assert!(c.enable_scale_to_zero);
    assert_eq!(c.scale_to_zero_grace_period, Duration::from_secs(30));
    assert_eq!(c.scale_to_zero_pod_retention_period, Duration::ZERO);
    assert_eq!(c.activator_capacity, 100.0);
    assert_eq!(c.initial_scale, 1);
    assert!(!c.allow_zero_initial_scale);
    assert_eq!((c.min_scale, c.max_scale, c.max_scale_limit), (0, 0, 0));
    assert_eq!(c.scale_down_delay, Duration::ZERO);
    assert_eq!(c.pod_autoscaler_class, KPA_CLASS);
}

/// Knative `TestNewConfig` (config_test.go): the accepted inputs.
#[test]
fn config_map_data_parses_like_knative() {
    let cases: Vec<(&str, BTreeMap<String, String>, AutoscalerConfig)> = vec![
        ("default", data(&[]), AutoscalerConfig::default()),
        (
            "actual (only the _example key)",
            data(&[("_example", "a: b\n")]),
            AutoscalerConfig::default(),
        ),
        ("example", data(EXAMPLE), AutoscalerConfig::default()),
        (
            "overridden",
            data(&[
                ("enable-scale-to-zero", "true"),
                ("max-scale-down-rate", "3.0"),
                ("max-scale-up-rate", "1.01"),
                ("container-concurrency-target-percentage", "0.71"),
                ("container-concurrency-target-default", "10.5"),
                ("requests-per-second-target-default", "10.11"),
                ("target-burst-capacity", "12345"),
                ("scale-down-delay", "15m"),
                ("stable-window", "5m"),
                ("tick-interval", "2s"),
                ("panic-window-percentage", "10"),
                ("panic-threshold-percentage", "200"),
                ("pod-autoscaler-class", "some.class"),
                ("activator-capacity", "905"),
                ("scale-to-zero-pod-retention-period", "2m3s"),
            ]),
            with(|c| {
                c.target_burst_capacity = 12345.0;
                c.container_concurrency_target_default = 10.5;
                c.container_concurrency_target_fraction = 0.71;
                c.requests_per_second_target_default = 10.11;
                c.max_scale_down_rate = 3.0;
                c.max_scale_up_rate = 1.01;
                c.scale_down_delay = Duration::from_secs(15 * 60);
                c.stable_window = Duration::from_secs(5 * 60);
                c.activator_capacity = 905.0;
                c.pod_autoscaler_class = "some.class".to_string();
                c.scale_to_zero_pod_retention_period = Duration::from_secs(123);
            }),
        ),
        (
            "minimum",
            data(&[
                ("max-scale-up-rate", "1.001"),
                ("container-concurrency-target-percentage", "0.5"),
                ("container-concurrency-target-default", "10.0"),
                ("target-burst-capacity", "0"),
                ("stable-window", "5m"),
                ("tick-interval", "2s"),
                ("panic-window-percentage", "10"),
                ("panic-threshold-percentage", "200"),
                ("activator-capacity", "1"),
            ]),
            with(|c| {
                c.container_concurrency_target_fraction = 0.5;
                c.container_concurrency_target_default = 10.0;
                c.max_scale_up_rate = 1.001;
                c.target_burst_capacity = 0.0;
                c.stable_window = Duration::from_secs(300);
                c.activator_capacity = 1.0;
            }),
        ),
        (
            "concurrency target percentage as percent",
            data(&[("container-concurrency-target-percentage", "55")]),
            with(|c| c.container_concurrency_target_fraction = 0.55),
        ),
        (
            "with -1 tbc",
            data(&[("target-burst-capacity", "-1")]),
            with(|c| c.target_burst_capacity = -1.0),
        ),
        (
            "with toggles on strange casing",
            data(&[("enable-scale-to-zero", "TRUE")]),
            AutoscalerConfig::default(),
        ),
        (
            "with toggles explicitly flipped",
            data(&[
                ("enable-scale-to-zero", "false"),
                ("min-scale", "1"),
                ("max-scale", "2"),
            ]),
            with(|c| {
                c.enable_scale_to_zero = false;
                c.min_scale = 1;
                c.max_scale = 2;
            }),
        ),
        (
            "with explicit grace period",
            data(&[
                ("enable-scale-to-zero", "false"),
                ("scale-to-zero-grace-period", "33s"),
                ("min-scale", "1"),
                ("max-scale", "2"),
            ]),
            with(|c| {
                c.enable_scale_to_zero = false;
                c.scale_to_zero_grace_period = Duration::from_secs(33);
                c.min_scale = 1;
                c.max_scale = 2;
            }),
        ),
        (
            "with valid default initial scale",
            data(&[("allow-zero-initial-scale", "true"), ("initial-scale", "0")]),
            with(|c| {
                c.allow_zero_initial_scale = true;
                c.initial_scale = 0;
            }),
        ),
        (
            "with valid default max scale",
            data(&[("max-scale", "10")]),
            with(|c| c.max_scale = 10),
        ),
        (
            "with min scale set but max-scale not set",
            data(&[("min-scale", "4")]),
            with(|c| c.min_scale = 4),
        ),
        (
            "with valid default max scale and max scale limit",
            data(&[("max-scale", "10"), ("max-scale-limit", "11")]),
            with(|c| {
                c.max_scale = 10;
                c.max_scale_limit = 11;
            }),
        ),
    ];
    for (name, input, want) in cases {
        assert_eq!(AutoscalerConfig::from_data(&input), Ok(want), "{name}");
    }
}

/// Knative `TestNewConfig` (config_test.go): the rejected inputs, each naming its key.
#[test]
fn invalid_config_map_data_names_the_key() {
    let cases: &[(&str, Pairs, &str)] = &[
        (
            "malformed float",
            &[("max-scale-up-rate", "not a float")],
            "max-scale-up-rate",
        ),
        (
            "invalid scale-down-delay",
            &[("scale-down-delay", "-1m23s")],
            "scale-down-delay",
        ),
        (
            "invalid pod retention period",
            &[("scale-to-zero-pod-retention-period", "-4m11s")],
            "scale-to-zero-pod-retention-period",
        ),
        (
            "malformed duration",
            &[("stable-window", "not a duration")],
            "stable-window",
        ),
        (
            "invalid target burst capacity",
            &[("target-burst-capacity", "-11")],
            "target-burst-capacity",
        ),
        (
            "invalid target %, too small",
            &[("container-concurrency-target-percentage", "-42")],
            "container-concurrency-target-percentage",
        ),
        (
            "invalid target %, too big",
            &[("container-concurrency-target-percentage", "142.4")],
            "container-concurrency-target-percentage",
        ),
        (
            "invalid RPS target, too small",
            &[("requests-per-second-target-default", "-5.25")],
            "requests-per-second-target-default",
        ),
        (
            "max scale up rate 1.0",
            &[("max-scale-up-rate", "1")],
            "max-scale-up-rate",
        ),
        (
            "max down down rate negative",
            &[("max-scale-down-rate", "-55")],
            "max-scale-down-rate",
        ),
        (
            "max down down rate 1.0",
            &[("max-scale-down-rate", "1")],
            "max-scale-down-rate",
        ),
        (
            "stable window too big",
            &[("stable-window", "1h1s")],
            "stable-window",
        ),
        (
            "stable window too small",
            &[("stable-window", "1s")],
            "stable-window",
        ),
        (
            "stable not seconds",
            &[("stable-window", "61984ms")],
            "stable-window",
        ),
        (
            "scale-down-delay not seconds",
            &[("scale-down-delay", "61984ms")],
            "scale-down-delay",
        ),
        (
            "activator-capacity invalid",
            &[("activator-capacity", "0.95")],
            "activator-capacity",
        ),
        (
            "panic window percentage too small",
            &[("panic-window-percentage", "0.1")],
            "panic-window-percentage",
        ),
        (
            "panic window percentage too big",
            &[
                ("stable-window", "12s"),
                ("panic-window", "3s"),
                ("panic-window-percentage", "110"),
            ],
            "panic-window-percentage",
        ),
        (
            "TU*CC < 0.01",
            &[
                ("container-concurrency-target-percentage", "1"),
                ("container-concurrency-target-default", "0.001"),
            ],
            "container-concurrency-target-percentage",
        ),
        (
            "grace window too small",
            &[
                ("stable-window", "12s"),
                ("scale-to-zero-grace-period", "0s"),
            ],
            "scale-to-zero-grace-period",
        ),
        (
            "with prohibited default initial scale",
            &[
                ("allow-zero-initial-scale", "false"),
                ("initial-scale", "0"),
            ],
            "initial-scale",
        ),
        (
            "with negative default initial scale",
            &[
                ("allow-zero-initial-scale", "false"),
                ("initial-scale", "-1"),
            ],
            "initial-scale",
        ),
        (
            "with non-parseable default initial scale",
            &[
                ("allow-zero-initial-scale", "false"),
                ("initial-scale", "invalid"),
            ],
            "initial-scale",
        ),
        (
            "with non-parseable allow-zero-initial-scale",
            &[("allow-zero-initial-scale", "invalid")],
            "allow-zero-initial-scale",
        ),
        (
            "with negative default max scale",
            &[("max-scale", "-1")],
            "max-scale",
        ),
        (
            "max scale exceeding max scale limit",
            &[("max-scale", "10"), ("max-scale-limit", "9")],
            "max-scale",
        ),
        (
            "with negative max scale limit",
            &[("max-scale-limit", "-9")],
            "max-scale-limit",
        ),
        (
            "with max scale limit and zero default max scale",
            &[("max-scale", "0"), ("max-scale-limit", "11")],
            "max-scale",
        ),
        (
            "with max scale less than min-scale",
            &[("min-scale", "4"), ("max-scale", "3")],
            "min-scale",
        ),
        // sluice only: Go's range checks let NaN through.
        (
            "not a number",
            &[("max-scale-up-rate", "NaN")],
            "max-scale-up-rate",
        ),
    ];
    for &(name, input, key) in cases {
        let err = AutoscalerConfig::from_data(&data(input)).expect_err(name);
        assert_eq!(err.key(), key, "{name}: {err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("config-autoscaler: {key}: ")),
            "{name}: {message}"
        );
    }
}

#[test]
fn config_errors_read_well() {
    let err = AutoscalerConfig::from_data(&data(&[("stable-window", "2s")])).expect_err("2s");
    assert_eq!(
        err.to_string(),
        "config-autoscaler: stable-window: must be between 6s and 1h0m0s, was 2s"
    );
    let err = AutoscalerConfig::from_data(&data(&[("max-scale-up-rate", "fast")])).expect_err("x");
    assert_eq!(
        err.to_string(),
        "config-autoscaler: max-scale-up-rate: \"fast\" is not a valid number"
    );
}

fn ann(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    data(pairs)
}

/// Knative `TestValidateAnnotations` (annotation_validation_test.go). `Ok` cases are `None`;
/// error cases give the key Knative's error names (the first one, for multi-error cases).
#[test]
fn annotations_validate_like_knatives_webhook() {
    let limit = |n: u32| move |c: &mut AutoscalerConfig| c.max_scale_limit = n;
    let none: fn() -> Mutator = || Box::new(|_| {});
    type Case = (
        &'static str,
        BTreeMap<String, String>,
        Mutator,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        ("empty annotations", ann(&[]), none(), None),
        (
            "invalid class",
            ann(&[(CLASS_ANNOTATION, "unsupported.knative.dev")]),
            none(),
            Some(CLASS_ANNOTATION),
        ),
        (
            "non-knative.dev domain class",
            ann(&[(CLASS_ANNOTATION, "some.other.domain")]),
            none(),
            None,
        ),
        (
            "minScale is 0",
            ann(&[(MIN_SCALE_ANNOTATION, "0")]),
            none(),
            None,
        ),
        (
            "maxScale is 0",
            ann(&[(MAX_SCALE_ANNOTATION, "0")]),
            none(),
            None,
        ),
        (
            "minScale is -1",
            ann(&[(MIN_SCALE_ANNOTATION, "-1")]),
            none(),
            Some(MIN_SCALE_ANNOTATION),
        ),
        (
            "maxScale is huuuuuuuge",
            ann(&[(MAX_SCALE_ANNOTATION, "2147483648")]),
            none(),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "maxScale is -1",
            ann(&[(MAX_SCALE_ANNOTATION, "-1")]),
            none(),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "minScale is foo",
            ann(&[(MIN_SCALE_ANNOTATION, "foo")]),
            none(),
            Some(MIN_SCALE_ANNOTATION),
        ),
        (
            "maxScale is bar",
            ann(&[(MAX_SCALE_ANNOTATION, "bar")]),
            none(),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "max/minScale is bar",
            ann(&[(MAX_SCALE_ANNOTATION, "bar"), (MIN_SCALE_ANNOTATION, "bar")]),
            none(),
            Some(MIN_SCALE_ANNOTATION),
        ),
        (
            "minScale is 5",
            ann(&[(MIN_SCALE_ANNOTATION, "5")]),
            none(),
            None,
        ),
        (
            "maxScale is 2",
            ann(&[(MAX_SCALE_ANNOTATION, "2")]),
            none(),
            None,
        ),
        (
            "minScale is 2, maxScale is 5",
            ann(&[(MIN_SCALE_ANNOTATION, "2"), (MAX_SCALE_ANNOTATION, "5")]),
            none(),
            None,
        ),
        (
            "minScale is 5, maxScale is 2",
            ann(&[(MIN_SCALE_ANNOTATION, "5"), (MAX_SCALE_ANNOTATION, "2")]),
            none(),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "legacy camelCase minScale is checked too",
            ann(&[("autoscaling.knative.dev/minScale", "-3")]),
            none(),
            Some("autoscaling.knative.dev/minScale"),
        ),
        (
            "maxScale is greater than MaxScaleLimit when in create",
            ann(&[(MAX_SCALE_ANNOTATION, "11")]),
            Box::new(limit(10)),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "maxScale is greater than MaxScaleLimit when in create and default MaxScale is set",
            ann(&[(MAX_SCALE_ANNOTATION, "20")]),
            Box::new(|c: &mut AutoscalerConfig| {
                c.max_scale_limit = 10;
                c.max_scale = 11;
            }),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "maxScale is explicitly set to 0 when MaxScaleLimit and default MaxScale are set",
            ann(&[(MAX_SCALE_ANNOTATION, "0")]),
            Box::new(|c: &mut AutoscalerConfig| {
                c.max_scale_limit = 10;
                c.max_scale = 1;
            }),
            Some(MAX_SCALE_ANNOTATION),
        ),
        (
            "maxScale is not set when both MaxScaleLimit and default MaxScale are set",
            ann(&[]),
            Box::new(|c: &mut AutoscalerConfig| {
                c.max_scale_limit = 10;
                c.max_scale = 11;
            }),
            None,
        ),
        (
            "maxScale is less than MaxScaleLimit",
            ann(&[(MAX_SCALE_ANNOTATION, "9")]),
            Box::new(limit(10)),
            None,
        ),
        (
            "min-scale, activation-scale, max-scale all set appropriately",
            ann(&[
                (MIN_SCALE_ANNOTATION, "1"),
                (ACTIVATION_SCALE_ANNOTATION, "2"),
                (MAX_SCALE_ANNOTATION, "3"),
            ]),
            none(),
            None,
        ),
        (
            "min-scale is greater than activation-scale",
            ann(&[
                (MIN_SCALE_ANNOTATION, "3"),
                (ACTIVATION_SCALE_ANNOTATION, "2"),
            ]),
            none(),
            Some(ACTIVATION_SCALE_ANNOTATION),
        ),
        (
            "max-scale is less than activation-scale",
            ann(&[
                (MAX_SCALE_ANNOTATION, "1"),
                (ACTIVATION_SCALE_ANNOTATION, "2"),
            ]),
            none(),
            Some(ACTIVATION_SCALE_ANNOTATION),
        ),
        (
            "activation-scale of 1",
            ann(&[(ACTIVATION_SCALE_ANNOTATION, "1")]),
            none(),
            Some(ACTIVATION_SCALE_ANNOTATION),
        ),
        (
            "valid algorithm on KPA",
            ann(&[
                (METRIC_AGGREGATION_ANNOTATION, "linear"),
                (CLASS_ANNOTATION, KPA_CLASS),
            ]),
            none(),
            None,
        ),
        (
            "empty algorithm",
            ann(&[
                (METRIC_AGGREGATION_ANNOTATION, ""),
                (CLASS_ANNOTATION, KPA_CLASS),
            ]),
            none(),
            None,
        ),
        (
            "random algorithm on KPA",
            ann(&[
                (METRIC_AGGREGATION_ANNOTATION, "random-selection"),
                (CLASS_ANNOTATION, KPA_CLASS),
            ]),
            none(),
            Some(METRIC_AGGREGATION_ANNOTATION),
        ),
        (
            "random algorithm on non KPA",
            ann(&[
                (METRIC_AGGREGATION_ANNOTATION, "random-selection"),
                (CLASS_ANNOTATION, "of-keys"),
            ]),
            none(),
            None,
        ),
        (
            "panic window percentage bad",
            ann(&[(PANIC_WINDOW_PERCENTAGE_ANNOTATION, "-1")]),
            none(),
            Some(PANIC_WINDOW_PERCENTAGE_ANNOTATION),
        ),
        (
            "panic window percentage bad2",
            ann(&[(PANIC_WINDOW_PERCENTAGE_ANNOTATION, "202")]),
            none(),
            Some(PANIC_WINDOW_PERCENTAGE_ANNOTATION),
        ),
        (
            "panic window percentage bad3",
            ann(&[(PANIC_WINDOW_PERCENTAGE_ANNOTATION, "fifty")]),
            none(),
            Some(PANIC_WINDOW_PERCENTAGE_ANNOTATION),
        ),
        (
            "panic window percentage good",
            ann(&[(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "210")]),
            none(),
            None,
        ),
        (
            "panic threshold percentage bad2",
            ann(&[(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "109")]),
            none(),
            Some(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION),
        ),
        (
            "panic threshold percentage bad2.5",
            ann(&[(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "10009")]),
            none(),
            Some(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION),
        ),
        (
            "panic threshold percentage bad3",
            ann(&[(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "fifty")]),
            none(),
            Some(PANIC_THRESHOLD_PERCENTAGE_ANNOTATION),
        ),
        (
            "target negative",
            ann(&[(TARGET_ANNOTATION, "-11")]),
            none(),
            Some(TARGET_ANNOTATION),
        ),
        (
            "target 0",
            ann(&[(TARGET_ANNOTATION, "0")]),
            none(),
            Some(TARGET_ANNOTATION),
        ),
        (
            "invalid target",
            ann(&[(TARGET_ANNOTATION, "100}")]),
            none(),
            Some(TARGET_ANNOTATION),
        ),
        (
            "target okay",
            ann(&[(TARGET_ANNOTATION, "11")]),
            none(),
            None,
        ),
        (
            "TBC negative",
            ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "-11")]),
            none(),
            Some(TARGET_BURST_CAPACITY_ANNOTATION),
        ),
        (
            "TBC 0",
            ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "0")]),
            none(),
            None,
        ),
        (
            "TBC 19880709",
            ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "19870709")]),
            none(),
            None,
        ),
        (
            "TBC -1",
            ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "-1")]),
            none(),
            None,
        ),
        (
            "TBC invalid",
            ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "qarashen")]),
            none(),
            Some(TARGET_BURST_CAPACITY_ANNOTATION),
        ),
        (
            "TU too small",
            ann(&[(TARGET_UTILIZATION_ANNOTATION, "0")]),
            none(),
            Some(TARGET_UTILIZATION_ANNOTATION),
        ),
        (
            "TU too big",
            ann(&[(TARGET_UTILIZATION_ANNOTATION, "101")]),
            none(),
            Some(TARGET_UTILIZATION_ANNOTATION),
        ),
        (
            "TU invalid",
            ann(&[(TARGET_UTILIZATION_ANNOTATION, "dghyak")]),
            none(),
            Some(TARGET_UTILIZATION_ANNOTATION),
        ),
        (
            "window invalid",
            ann(&[(WINDOW_ANNOTATION, "jerry-was-a-racecar-driver")]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "window too short",
            ann(&[(WINDOW_ANNOTATION, "1s")]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "window too long",
            ann(&[(WINDOW_ANNOTATION, "365h")]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "window too precise",
            ann(&[(WINDOW_ANNOTATION, "1m9s82ms")]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "annotation /window is valid for class KPA",
            ann(&[(WINDOW_ANNOTATION, "7s"), (CLASS_ANNOTATION, KPA_CLASS)]),
            none(),
            None,
        ),
        (
            "annotation /window is valid for other than HPA and KPA class",
            ann(&[(WINDOW_ANNOTATION, "7s"), (CLASS_ANNOTATION, "test")]),
            none(),
            None,
        ),
        (
            "value too long and valid class for /window annotation",
            ann(&[(WINDOW_ANNOTATION, "365h"), (CLASS_ANNOTATION, KPA_CLASS)]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "invalid format and valid class for /window annotation",
            ann(&[
                (WINDOW_ANNOTATION, "jerry-was-a-racecar-driver"),
                (CLASS_ANNOTATION, KPA_CLASS),
            ]),
            none(),
            Some(WINDOW_ANNOTATION),
        ),
        (
            "valid 0 last pod scaledown timeout",
            ann(&[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "0")]),
            none(),
            None,
        ),
        (
            "valid positive last pod scaledown timeout",
            ann(&[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "21m31s")]),
            none(),
            None,
        ),
        (
            "invalid positive last pod scaledown timeout",
            ann(&[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "311m")]),
            none(),
            Some(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION),
        ),
        (
            "invalid negative last pod scaledown timeout",
            ann(&[(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "-42s")]),
            none(),
            Some(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION),
        ),
        (
            "invalid last pod scaledown timeout",
            ann(&[(
                SCALE_TO_ZERO_POD_RETENTION_ANNOTATION,
                "twenty-two-minutes-and-five-seconds",
            )]),
            none(),
            Some(SCALE_TO_ZERO_POD_RETENTION_ANNOTATION),
        ),
        (
            "valid 0 scale down delay",
            ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "0")]),
            none(),
            None,
        ),
        (
            "valid positive scale down delay",
            ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "21m31s")]),
            none(),
            None,
        ),
        (
            "invalid positive scale down delay",
            ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "311m")]),
            none(),
            Some(SCALE_DOWN_DELAY_ANNOTATION),
        ),
        (
            "invalid positive scale down delay - too precise",
            ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "42.5s")]),
            none(),
            Some(SCALE_DOWN_DELAY_ANNOTATION),
        ),
        (
            "invalid negative scale down delay",
            ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "-42s")]),
            none(),
            Some(SCALE_DOWN_DELAY_ANNOTATION),
        ),
        (
            "invalid scale down delay",
            ann(&[(
                SCALE_DOWN_DELAY_ANNOTATION,
                "twenty-two-minutes-and-five-seconds",
            )]),
            none(),
            Some(SCALE_DOWN_DELAY_ANNOTATION),
        ),
        (
            "all together now fail",
            ann(&[
                (PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "fifty"),
                (PANIC_WINDOW_PERCENTAGE_ANNOTATION, "-11"),
                (MIN_SCALE_ANNOTATION, "-4"),
                (MAX_SCALE_ANNOTATION, "never"),
            ]),
            none(),
            Some(MIN_SCALE_ANNOTATION),
        ),
        (
            "all together now, succeed",
            ann(&[
                (PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "125"),
                (PANIC_WINDOW_PERCENTAGE_ANNOTATION, "75"),
                (MIN_SCALE_ANNOTATION, "5"),
                (MAX_SCALE_ANNOTATION, "8"),
                (WINDOW_ANNOTATION, "1984s"),
            ]),
            none(),
            None,
        ),
        (
            "invalid metric for default class(KPA)",
            ann(&[(METRIC_ANNOTATION, "cpu")]),
            none(),
            Some(METRIC_ANNOTATION),
        ),
        (
            "invalid metric for HPA class",
            ann(&[(METRIC_ANNOTATION, ""), (CLASS_ANNOTATION, HPA_CLASS)]),
            none(),
            Some(METRIC_ANNOTATION),
        ),
        (
            "valid class KPA with metric RPS",
            ann(&[(METRIC_ANNOTATION, "rps")]),
            none(),
            None,
        ),
        (
            "valid class KPA with metric Concurrency",
            ann(&[(METRIC_ANNOTATION, "concurrency")]),
            none(),
            None,
        ),
        (
            "valid class HPA with metric CPU",
            ann(&[(CLASS_ANNOTATION, HPA_CLASS), (METRIC_ANNOTATION, "cpu")]),
            none(),
            None,
        ),
        (
            "other than HPA and KPA class",
            ann(&[(CLASS_ANNOTATION, "other"), (METRIC_ANNOTATION, "rps")]),
            none(),
            None,
        ),
        (
            "initial scale is zero but cluster doesn't allow",
            ann(&[(INITIAL_SCALE_ANNOTATION, "0")]),
            none(),
            Some(INITIAL_SCALE_ANNOTATION),
        ),
        (
            "valid global class HPA with metric CPU",
            ann(&[(METRIC_ANNOTATION, "cpu")]),
            Box::new(|c: &mut AutoscalerConfig| c.pod_autoscaler_class = HPA_CLASS.to_string()),
            None,
        ),
        (
            "initial scale is zero and cluster allows",
            ann(&[(INITIAL_SCALE_ANNOTATION, "0")]),
            Box::new(|c: &mut AutoscalerConfig| c.allow_zero_initial_scale = true),
            None,
        ),
        (
            "initial scale is greater than 0",
            ann(&[(INITIAL_SCALE_ANNOTATION, "2")]),
            none(),
            None,
        ),
        (
            "initial scale is less than 0",
            ann(&[(INITIAL_SCALE_ANNOTATION, "-1")]),
            none(),
            Some(INITIAL_SCALE_ANNOTATION),
        ),
        (
            "initial scale non-parseable",
            ann(&[(INITIAL_SCALE_ANNOTATION, "invalid")]),
            none(),
            Some(INITIAL_SCALE_ANNOTATION),
        ),
        (
            "progress deadline not whole seconds",
            ann(&[(PROGRESS_DEADLINE_ANNOTATION, "1.5s")]),
            none(),
            Some(PROGRESS_DEADLINE_ANNOTATION),
        ),
        (
            "progress deadline negative",
            ann(&[(PROGRESS_DEADLINE_ANNOTATION, "-5s")]),
            none(),
            Some(PROGRESS_DEADLINE_ANNOTATION),
        ),
    ];
    for (name, annotations, mutate, want) in cases {
        let mut config = AutoscalerConfig::default();
        mutate(&mut config);
        let got = validate_annotations(&annotations, &config);
        match want {
            None => assert_eq!(got, Ok(()), "{name}"),
            Some(key) => {
                let err = got.expect_err(name);
                assert_eq!(err.key(), key, "{name}: {err}");
                assert!(
                    err.to_string().starts_with(&format!("annotation {key}: ")),
                    "{name}: {err}"
                );
            }
        }
    }
}

#[test]
fn annotation_errors_read_well() {
    let config = AutoscalerConfig::default();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(MIN_SCALE_ANNOTATION, "-1")],
            "annotation autoscaling.knative.dev/min-scale: must be between 0 and 2147483647, was -1",
        ),
        (
            &[(MIN_SCALE_ANNOTATION, "5"), (MAX_SCALE_ANNOTATION, "2")],
            "annotation autoscaling.knative.dev/max-scale: max-scale=2 is less than min-scale=5",
        ),
        (
            &[(WINDOW_ANNOTATION, "365h")],
            "annotation autoscaling.knative.dev/window: must be between 6s and 1h0m0s, was 365h",
        ),
        (
            &[(TARGET_ANNOTATION, "100}")],
            "annotation autoscaling.knative.dev/target: \"100}\" is not a valid number",
        ),
    ];
    for &(pairs, want) in cases {
        let err = validate_annotations(&ann(pairs), &config).expect_err(want);
        assert_eq!(err.to_string(), want);
    }
}

/// Knative `TestResolveMetricTarget` (target_test.go); its base config has a target fraction
/// of 1.0 unless the case overrides it.
#[test]
fn metric_target_resolves_like_knative() {
    struct Case {
        name: &'static str,
        annotations: &'static [(&'static str, &'static str)],
        cc: u32,
        fraction: f64,
        cc_default: f64,
        want_target: f64,
        want_total: f64,
    }
    let case = |name, annotations, cc, fraction, want_target, want_total| Case {
        name,
        annotations,
        cc,
        fraction,
        cc_default: 100.0,
        want_target,
        want_total,
    };
    let cases = [
        case("defaults", &[], 0, 1.0, 100.0, 100.0),
        case("default CC + 80% TU", &[], 0, 0.8, 80.0, 100.0),
        Case {
            cc_default: 2.0,
            ..case("non-default CC and TU", &[], 0, 0.3, 0.6, 2.0)
        },
        case(
            "with container concurrency 12 and TU=80%, but TU annotation 75%",
            &[(TARGET_UTILIZATION_ANNOTATION, "75")],
            12,
            0.8,
            9.0,
            12.0,
        ),
        case("with container concurrency 10 and TU=80%", &[], 10, 0.8, 8.0, 10.0),
        case("with container concurrency 1 and TU=80%", &[], 1, 0.8, 0.8, 1.0),
        case("with container concurrency 1", &[], 1, 1.0, 1.0, 1.0),
        case("with container concurrency 10", &[], 10, 1.0, 10.0, 10.0),
        case(
            "with target annotation 1",
            &[(TARGET_ANNOTATION, "1")],
            0,
            1.0,
            1.0,
            1.0,
        ),
        case(
            "with target annotation 1 and TU=0.1%",
            &[(TARGET_ANNOTATION, "1")],
            0,
            0.001,
            TARGET_MIN,
            1.0,
        ),
        case(
            "with target annotation 1 and TU=75%",
            &[(TARGET_ANNOTATION, "1")],
            0,
            0.75,
            0.75,
            1.0,
        ),
        case(
            "with target annotation 10 and TU=75%",
            &[(TARGET_ANNOTATION, "10")],
            0,
            0.75,
            7.5,
            10.0,
        ),
        case(
            "with container concurrency greater than target annotation (ok)",
            &[(TARGET_ANNOTATION, "1")],
            10,
            1.0,
            1.0,
            1.0,
        ),
        case(
            "with target annotation greater than default (ok)",
            &[(TARGET_ANNOTATION, "500")],
            0,
            1.0,
            500.0,
            500.0,
        ),
        case(
            "with target annotation greater than container concurrency (ignore annotation for safety)",
            &[(TARGET_ANNOTATION, "10")],
            1,
            1.0,
            1.0,
            1.0,
        ),
        case("RPS: defaults", &[(METRIC_ANNOTATION, "rps")], 1, 1.0, 140.0, 200.0),
        case(
            "RPS: with target annotation 1",
            &[(METRIC_ANNOTATION, "rps"), (TARGET_ANNOTATION, "1")],
            0,
            1.0,
            0.7,
            1.0,
        ),
        case(
            "RPS: with TU annotation 75%",
            &[(METRIC_ANNOTATION, "rps"), (TARGET_UTILIZATION_ANNOTATION, "75")],
            0,
            1.0,
            150.0,
            200.0,
        ),
        case(
            "RPS: with target annotation greater than default",
            &[(METRIC_ANNOTATION, "rps"), (TARGET_ANNOTATION, "300")],
            0,
            1.0,
            210.0,
            300.0,
        ),
    ];
    for c in cases {
        let config = with(|cfg| {
            cfg.container_concurrency_target_fraction = c.fraction;
            cfg.container_concurrency_target_default = c.cc_default;
        });
        let spec = RevisionScaling::resolve(&ann(c.annotations), c.cc, &config).expect(c.name);
        assert!(
            (spec.target_value - c.want_target).abs() < 1e-9,
            "{}: target {}",
            c.name,
            spec.target_value
        );
        assert_eq!(spec.total_value, c.want_total, "{}", c.name);
    }
}

/// Knative `TestMakeMetric` and `TestStableWindow` (metric_test.go).
#[test]
fn panic_window_is_a_rounded_percentage_of_the_stable_window() {
    let config = AutoscalerConfig::default();
    let cases: &[(&str, Pairs, u64, u64)] = &[
        ("defaults", &[], 60, 6),
        (
            "with too short panic window",
            &[
                (WINDOW_ANNOTATION, "10s"),
                (PANIC_WINDOW_PERCENTAGE_ANNOTATION, "10"),
            ],
            10,
            1,
        ),
        (
            "with longer stable window, no panic window percentage, defaults to 10%",
            &[(WINDOW_ANNOTATION, "10m")],
            600,
            60,
        ),
        (
            "with longer panic window percentage",
            &[(PANIC_WINDOW_PERCENTAGE_ANNOTATION, "50")],
            60,
            30,
        ),
        (
            "with panic window percentage+rounding",
            &[(PANIC_WINDOW_PERCENTAGE_ANNOTATION, "51")],
            60,
            31,
        ),
        (
            "stable window annotation",
            &[(WINDOW_ANNOTATION, "251s")],
            251,
            25,
        ),
        (
            "7 s window rounds 0.7 s up",
            &[(WINDOW_ANNOTATION, "7s")],
            7,
            1,
        ),
    ];
    for &(name, pairs, stable, panic) in cases {
        let spec = RevisionScaling::resolve(&ann(pairs), 0, &config).expect(name);
        assert_eq!(spec.stable_window, Duration::from_secs(stable), "{name}");
        assert_eq!(spec.panic_window, Duration::from_secs(panic), "{name}");
    }
}

/// Knative `TestMakeDecider` (kpa/resources/decider_test.go), the fields sluice keeps.
#[test]
fn decider_spec_resolves_like_make_decider() {
    let config = with(|c| {
        c.container_concurrency_target_fraction = 0.8;
        c.max_scale_up_rate = 10.0;
        c.max_scale_down_rate = 2.0;
    });
    let spec = RevisionScaling::resolve(&ann(&[]), 0, &config).expect("defaults");
    assert_eq!(spec.target_value, 80.0);
    assert_eq!(spec.total_value, 100.0);
    assert_eq!(spec.panic_threshold, 2.0);
    assert_eq!(spec.max_scale_up_rate, 10.0);
    assert_eq!(spec.max_scale_down_rate, 2.0);
    assert_eq!(spec.metric, Metric::Concurrency);
    assert_eq!(spec.aggregation, Aggregation::Linear);
    assert_eq!(spec.target_burst_capacity, 211.0);
    assert_eq!(spec.activation_timeout, Duration::from_secs(630));

    let spec = RevisionScaling::resolve(&ann(&[]), 120, &config).expect("cc 120");
    assert_eq!((spec.target_value, spec.total_value), (96.0, 120.0));

    let spec = RevisionScaling::resolve(
        &ann(&[(TARGET_BURST_CAPACITY_ANNOTATION, "-1")]),
        120,
        &config,
    )
    .expect("tbc annotation");
    assert_eq!(spec.target_burst_capacity, -1.0);

    let spec = RevisionScaling::resolve(
        &ann(&[
            (TARGET_ANNOTATION, "10"),
            (PANIC_THRESHOLD_PERCENTAGE_ANNOTATION, "400"),
        ]),
        0,
        &config,
    )
    .expect("higher panic target");
    assert_eq!((spec.target_value, spec.panic_threshold), (8.0, 4.0));

    let spec =
        RevisionScaling::resolve(&ann(&[(METRIC_ANNOTATION, "rps")]), 0, &config).expect("rps");
    assert_eq!(spec.metric, Metric::Rps);

    let delayed = with(|c| c.scale_down_delay = Duration::from_secs(300));
    let spec = RevisionScaling::resolve(&ann(&[]), 0, &delayed).expect("delay from config");
    assert_eq!(spec.scale_down_delay, Duration::from_secs(300));
    let spec = RevisionScaling::resolve(&ann(&[(SCALE_DOWN_DELAY_ANNOTATION, "10m")]), 0, &delayed)
        .expect("delay from annotation");
    assert_eq!(spec.scale_down_delay, Duration::from_secs(600));

    let spec = RevisionScaling::resolve(
        &ann(&[
            (MIN_SCALE_ANNOTATION, "1"),
            (ACTIVATION_SCALE_ANNOTATION, "3"),
        ]),
        0,
        &config,
    )
    .expect("activation scale");
    assert_eq!((spec.min_scale, spec.activation_scale), (1, 3));

    let spec = RevisionScaling::resolve(
        &ann(&[
            (METRIC_AGGREGATION_ANNOTATION, "weightedExponential"),
            (PROGRESS_DEADLINE_ANNOTATION, "5s"),
            (SCALE_TO_ZERO_POD_RETENTION_ANNOTATION, "2m"),
        ]),
        0,
        &config,
    )
    .expect("algorithm, deadline, retention");
    assert_eq!(spec.aggregation, Aggregation::WeightedExponential);
    assert_eq!(spec.activation_timeout, Duration::from_secs(35));
    assert_eq!(
        spec.scale_to_zero_pod_retention_period,
        Duration::from_secs(120)
    );
}

/// Knative `TestGetInitialScale` (kpa/resources/decider_test.go).
#[test]
fn initial_scale_comes_from_annotation_or_cluster() {
    let config = AutoscalerConfig::default();
    let spec = RevisionScaling::resolve(&ann(&[]), 0, &config).expect("unset");
    assert_eq!(spec.initial_scale, 1);
    let spec = RevisionScaling::resolve(&ann(&[(INITIAL_SCALE_ANNOTATION, "2")]), 0, &config)
        .expect("override");
    assert_eq!(spec.initial_scale, 2);
    let allowing = with(|c| c.allow_zero_initial_scale = true);
    let spec = RevisionScaling::resolve(&ann(&[(INITIAL_SCALE_ANNOTATION, "0")]), 0, &allowing)
        .expect("zero allowed");
    assert_eq!(spec.initial_scale, 0);
    // Where Knative's GetInitialScale falls back to the cluster value, its webhook has
    // already rejected the annotation; resolve validates first.
    let err = RevisionScaling::resolve(&ann(&[(INITIAL_SCALE_ANNOTATION, "0")]), 0, &config)
        .expect_err("zero not allowed");
    assert_eq!(err.key(), INITIAL_SCALE_ANNOTATION);
}

#[test]
fn bounds_come_from_annotations_or_cluster_defaults() {
    let config = with(|c| {
        c.min_scale = 1;
        c.max_scale = 9;
    });
    let spec = RevisionScaling::resolve(&ann(&[]), 0, &config).expect("cluster");
    assert_eq!((spec.min_scale, spec.max_scale), (1, 9));
    let spec = RevisionScaling::resolve(
        &ann(&[
            ("autoscaling.knative.dev/minScale", "2"),
            (MAX_SCALE_ANNOTATION, "5"),
        ]),
        0,
        &config,
    )
    .expect("annotations");
    assert_eq!((spec.min_scale, spec.max_scale), (2, 5));
}

#[test]
fn only_kpa_class_revisions_are_autoscaled() {
    let config = AutoscalerConfig::default();
    let err = RevisionScaling::resolve(&ann(&[(CLASS_ANNOTATION, HPA_CLASS)]), 0, &config)
        .expect_err("hpa");
    assert_eq!(
        err,
        InvalidAnnotation::UnsupportedClass {
            class: HPA_CLASS.to_string()
        }
    );
    let hpa_default = with(|c| c.pod_autoscaler_class = HPA_CLASS.to_string());
    assert!(RevisionScaling::resolve(&ann(&[]), 0, &hpa_default).is_err());
    assert!(
        RevisionScaling::resolve(&ann(&[(CLASS_ANNOTATION, KPA_CLASS)]), 0, &hpa_default).is_ok()
    );
}

/// Every ConfigMap limit, exactly at its edge (accepted, with the value it becomes) and just
/// past it (refused, naming the key). Knative's checks are strict or inclusive key by key.
#[test]
fn config_map_limits_hold_exactly_at_their_edges() {
    type Check = fn(&AutoscalerConfig) -> bool;
    let accepted: Vec<(&str, Pairs, Check)> = vec![
        (
            "a percentage of exactly 1 is the legacy fraction 1, not 1%",
            &[("container-concurrency-target-percentage", "1")],
            |c| c.container_concurrency_target_fraction == 1.0,
        ),
        (
            "100% is the largest fraction",
            &[("container-concurrency-target-percentage", "100")],
            |c| c.container_concurrency_target_fraction == 1.0,
        ),
        (
            "a target concurrency of exactly 0.01",
            &[
                ("container-concurrency-target-percentage", "100"),
                ("container-concurrency-target-default", "0.01"),
            ],
            |c| c.container_concurrency_target_default == 0.01,
        ),
        (
            "an RPS target of exactly 0.01",
            &[("requests-per-second-target-default", "0.01")],
            |c| c.requests_per_second_target_default == 0.01,
        ),
        (
            "an activator capacity of exactly 1",
            &[("activator-capacity", "1")],
            |c| c.activator_capacity == 1.0,
        ),
        (
            "scale rates just above 1",
            &[
                ("max-scale-up-rate", "1.001"),
                ("max-scale-down-rate", "1.001"),
            ],
            |c| c.max_scale_up_rate == 1.001 && c.max_scale_down_rate == 1.001,
        ),
        (
            "the shortest stable window",
            &[("stable-window", "6s")],
            |c| c.stable_window == Duration::from_secs(6),
        ),
        (
            "the longest stable window",
            &[("stable-window", "1h")],
            |c| c.stable_window == Duration::from_secs(3600),
        ),
        (
            "a panic window of 1%",
            &[("panic-window-percentage", "1")],
            |c| c.panic_window_percentage == 1.0,
        ),
        (
            "a panic window of 100%",
            &[("panic-window-percentage", "100")],
            |c| c.panic_window_percentage == 100.0,
        ),
        (
            "unlimited burst capacity",
            &[("target-burst-capacity", "-1")],
            |c| c.target_burst_capacity == -1.0,
        ),
        (
            "no burst capacity",
            &[("target-burst-capacity", "0")],
            |c| c.target_burst_capacity == 0.0,
        ),
        (
            "the shortest grace period",
            &[("scale-to-zero-grace-period", "1ns")],
            |c| c.scale_to_zero_grace_period == Duration::from_nanos(1),
        ),
        (
            "zero delay and retention",
            &[
                ("scale-down-delay", "0s"),
                ("scale-to-zero-pod-retention-period", "0s"),
            ],
            |c| c.scale_down_delay.is_zero() && c.scale_to_zero_pod_retention_period.is_zero(),
        ),
        (
            "initial scale 0 where allowed",
            &[("initial-scale", "0"), ("allow-zero-initial-scale", "true")],
            |c| c.initial_scale == 0 && c.allow_zero_initial_scale,
        ),
        (
            "max-scale at the limit, min-scale at max-scale",
            &[
                ("max-scale-limit", "10"),
                ("max-scale", "10"),
                ("min-scale", "10"),
            ],
            |c| (c.min_scale, c.max_scale, c.max_scale_limit) == (10, 10, 10),
        ),
        (
            "any min-scale under an unlimited max-scale",
            &[("min-scale", "50"), ("max-scale", "0")],
            |c| (c.min_scale, c.max_scale) == (50, 0),
        ),
    ];
    for (name, pairs, check) in accepted {
        let config = AutoscalerConfig::from_data(&data(pairs))
            .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
        assert!(check(&config), "{name}: {config:?}");
    }
    let refused: Vec<(&str, Pairs, &str)> = vec![
        (
            "a target concurrency just under 0.01",
            &[
                ("container-concurrency-target-percentage", "100"),
                ("container-concurrency-target-default", "0.0099"),
            ],
            "container-concurrency-target-percentage",
        ),
        (
            "an RPS target just under 0.01",
            &[("requests-per-second-target-default", "0.0099")],
            "requests-per-second-target-default",
        ),
        (
            "an activator capacity under 1",
            &[("activator-capacity", "0.999")],
            "activator-capacity",
        ),
        (
            "a scale-down rate of 1",
            &[("max-scale-down-rate", "1")],
            "max-scale-down-rate",
        ),
        (
            "a stable window under 6s",
            &[("stable-window", "5s")],
            "stable-window",
        ),
        (
            "a stable window over 1h",
            &[("stable-window", "3601s")],
            "stable-window",
        ),
        (
            "a panic window under 1%",
            &[("panic-window-percentage", "0.99")],
            "panic-window-percentage",
        ),
        (
            "a panic window over 100%",
            &[("panic-window-percentage", "100.01")],
            "panic-window-percentage",
        ),
        (
            "a burst capacity between -1 and 0",
            &[("target-burst-capacity", "-0.5")],
            "target-burst-capacity",
        ),
        (
            "a negative percentage",
            &[("container-concurrency-target-percentage", "-1")],
            "container-concurrency-target-percentage",
        ),
        (
            "a zero percentage",
            &[("container-concurrency-target-percentage", "0")],
            "container-concurrency-target-percentage",
        ),
        (
            "a negative retention",
            &[("scale-to-zero-pod-retention-period", "-1ns")],
            "scale-to-zero-pod-retention-period",
        ),
        (
            "a negative scale-down delay",
            &[("scale-down-delay", "-1s")],
            "scale-down-delay",
        ),
        ("a negative min-scale", &[("min-scale", "-1")], "min-scale"),
        (
            "max-scale 0 (unlimited) under a limit",
            &[("max-scale-limit", "10"), ("max-scale", "0")],
            "max-scale",
        ),
        (
            "max-scale over the limit",
            &[("max-scale-limit", "10"), ("max-scale", "11")],
            "max-scale",
        ),
        (
            "min-scale over max-scale",
            &[("max-scale", "10"), ("min-scale", "11")],
            "min-scale",
        ),
    ];
    for (name, pairs, key) in refused {
        let err = AutoscalerConfig::from_data(&data(pairs))
            .expect_err(name)
            .key();
        assert_eq!(err, key, "{name}");
    }
}

/// Every annotation limit, exactly at its edge (valid) and just past it (invalid, naming the
/// annotation). `max-scale-limit` is 10 in the cases that name it.
#[test]
fn annotation_limits_hold_exactly_at_their_edges() {
    const UTILIZATION: &str = "autoscaling.knative.dev/target-utilization-percentage";
    const PANIC_WINDOW: &str = PANIC_WINDOW_PERCENTAGE_ANNOTATION;
    const PANIC_THRESHOLD: &str = PANIC_THRESHOLD_PERCENTAGE_ANNOTATION;
    const RETENTION: &str = SCALE_TO_ZERO_POD_RETENTION_ANNOTATION;
    let limited = with(|c| c.max_scale_limit = 10);
    let zero_allowed = with(|c| c.allow_zero_initial_scale = true);
    let defaults = AutoscalerConfig::default();
    let valid: Vec<(Pairs, &AutoscalerConfig)> = vec![
        (
            &[(MIN_SCALE_ANNOTATION, "3"), (MAX_SCALE_ANNOTATION, "3")],
            &defaults,
        ),
        (
            &[(MIN_SCALE_ANNOTATION, "5"), (MAX_SCALE_ANNOTATION, "0")],
            &defaults,
        ),
        (&[(MAX_SCALE_ANNOTATION, "10")], &limited),
        (
            &[
                (MIN_SCALE_ANNOTATION, "3"),
                (ACTIVATION_SCALE_ANNOTATION, "3"),
            ],
            &defaults,
        ),
        (
            &[
                (MAX_SCALE_ANNOTATION, "3"),
                (ACTIVATION_SCALE_ANNOTATION, "3"),
            ],
            &defaults,
        ),
        (&[(ACTIVATION_SCALE_ANNOTATION, "2")], &defaults),
        (&[(PANIC_WINDOW, "1")], &defaults),
        (&[(PANIC_WINDOW, "100")], &defaults),
        (&[(PANIC_THRESHOLD, "110")], &defaults),
        (&[(PANIC_THRESHOLD, "1000")], &defaults),
        (&[(TARGET_ANNOTATION, "0.01")], &defaults),
        (&[(UTILIZATION, "1")], &defaults),
        (&[(UTILIZATION, "100")], &defaults),
        (&[(TARGET_BURST_CAPACITY_ANNOTATION, "-1")], &defaults),
        (&[(TARGET_BURST_CAPACITY_ANNOTATION, "0")], &defaults),
        (&[(WINDOW_ANNOTATION, "6s")], &defaults),
        (&[(WINDOW_ANNOTATION, "1h")], &defaults),
        (&[(RETENTION, "0s")], &defaults),
        (&[(RETENTION, "1h")], &defaults),
        (&[(SCALE_DOWN_DELAY_ANNOTATION, "0s")], &defaults),
        (&[(SCALE_DOWN_DELAY_ANNOTATION, "1h")], &defaults),
        (&[(INITIAL_SCALE_ANNOTATION, "2147483647")], &defaults),
        (&[(INITIAL_SCALE_ANNOTATION, "0")], &zero_allowed),
        (&[(PROGRESS_DEADLINE_ANNOTATION, "0s")], &defaults),
        (&[(PROGRESS_DEADLINE_ANNOTATION, "10m")], &defaults),
    ];
    for (pairs, config) in valid {
        if let Err(e) = validate_annotations(&ann(pairs), config) {
            panic!("{pairs:?}: {e}");
        }
    }
    let invalid: Vec<(Pairs, &AutoscalerConfig, &str)> = vec![
        (
            &[(MIN_SCALE_ANNOTATION, "3"), (MAX_SCALE_ANNOTATION, "2")],
            &defaults,
            MAX_SCALE_ANNOTATION,
        ),
        (
            &[(MAX_SCALE_ANNOTATION, "11")],
            &limited,
            MAX_SCALE_ANNOTATION,
        ),
        (
            &[(MAX_SCALE_ANNOTATION, "0")],
            &limited,
            MAX_SCALE_ANNOTATION,
        ),
        (
            &[(ACTIVATION_SCALE_ANNOTATION, "1")],
            &defaults,
            ACTIVATION_SCALE_ANNOTATION,
        ),
        (
            &[
                (MIN_SCALE_ANNOTATION, "3"),
                (ACTIVATION_SCALE_ANNOTATION, "2"),
            ],
            &defaults,
            ACTIVATION_SCALE_ANNOTATION,
        ),
        (
            &[
                (MAX_SCALE_ANNOTATION, "3"),
                (ACTIVATION_SCALE_ANNOTATION, "4"),
            ],
            &defaults,
            ACTIVATION_SCALE_ANNOTATION,
        ),
        (&[(PANIC_WINDOW, "0.99")], &defaults, PANIC_WINDOW),
        (&[(PANIC_WINDOW, "100.01")], &defaults, PANIC_WINDOW),
        (&[(PANIC_THRESHOLD, "109.9")], &defaults, PANIC_THRESHOLD),
        (&[(PANIC_THRESHOLD, "1000.1")], &defaults, PANIC_THRESHOLD),
        (
            &[(TARGET_ANNOTATION, "0.0099")],
            &defaults,
            TARGET_ANNOTATION,
        ),
        (&[(UTILIZATION, "0.99")], &defaults, UTILIZATION),
        (&[(UTILIZATION, "100.01")], &defaults, UTILIZATION),
        (
            &[(TARGET_BURST_CAPACITY_ANNOTATION, "-0.5")],
            &defaults,
            TARGET_BURST_CAPACITY_ANNOTATION,
        ),
        (&[(WINDOW_ANNOTATION, "5s")], &defaults, WINDOW_ANNOTATION),
        (
            &[(WINDOW_ANNOTATION, "3601s")],
            &defaults,
            WINDOW_ANNOTATION,
        ),
        (
            &[(WINDOW_ANNOTATION, "6500ms")],
            &defaults,
            WINDOW_ANNOTATION,
        ),
        (&[(RETENTION, "-1s")], &defaults, RETENTION),
        (&[(RETENTION, "3601s")], &defaults, RETENTION),
        (
            &[(SCALE_DOWN_DELAY_ANNOTATION, "-1s")],
            &defaults,
            SCALE_DOWN_DELAY_ANNOTATION,
        ),
        (
            &[(SCALE_DOWN_DELAY_ANNOTATION, "3601s")],
            &defaults,
            SCALE_DOWN_DELAY_ANNOTATION,
        ),
        (
            &[(SCALE_DOWN_DELAY_ANNOTATION, "1500ms")],
            &defaults,
            SCALE_DOWN_DELAY_ANNOTATION,
        ),
        (
            &[(INITIAL_SCALE_ANNOTATION, "-1")],
            &zero_allowed,
            INITIAL_SCALE_ANNOTATION,
        ),
        (
            &[(INITIAL_SCALE_ANNOTATION, "0")],
            &defaults,
            INITIAL_SCALE_ANNOTATION,
        ),
        (
            &[(INITIAL_SCALE_ANNOTATION, "2147483648")],
            &defaults,
            INITIAL_SCALE_ANNOTATION,
        ),
        (
            &[(PROGRESS_DEADLINE_ANNOTATION, "-5s")],
            &defaults,
            PROGRESS_DEADLINE_ANNOTATION,
        ),
        (
            &[(PROGRESS_DEADLINE_ANNOTATION, "1500ms")],
            &defaults,
            PROGRESS_DEADLINE_ANNOTATION,
        ),
    ];
    for (pairs, config, key) in invalid {
        let err = validate_annotations(&ann(pairs), config).expect_err(pairs[0].1);
        assert_eq!(err.key(), key, "{pairs:?}: {err}");
    }
}

/// A whole-number annotation beyond int32 is out of range, not malformed (Knative's
/// `getIntGE0` reports the overflow as a range error); a fraction is malformed.
#[test]
fn scale_annotations_beyond_int32_are_out_of_range() {
    let config = AutoscalerConfig::default();
    for value in ["2147483648", "-2147483649", "99999999999"] {
        let err =
            validate_annotations(&ann(&[(MIN_SCALE_ANNOTATION, value)]), &config).expect_err(value);
        assert!(
            matches!(err, InvalidAnnotation::OutOfRange { .. }),
            "{value}: {err:?}"
        );
    }
    let err = validate_annotations(&ann(&[(MAX_SCALE_ANNOTATION, "1.5")]), &config)
        .expect_err("a fraction");
    assert!(
        matches!(err, InvalidAnnotation::Malformed { .. }),
        "{err:?}"
    );
}
