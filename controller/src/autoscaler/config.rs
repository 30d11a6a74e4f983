//! The `config-autoscaler` ConfigMap and the per-revision scaling settings.
//!
//! - [`AutoscalerConfig::from_data`] parses the ConfigMap's `data` the way Knative does: Go
//!   durations (`60s`, `2m3s`), Go booleans (`true`, `TRUE`, `1`, `f`, ...), floats, int32s; the
//!   target percentage may be a fraction in (0, 1] or a percentage above 1. Unknown keys (such as
//!   `_example`) are ignored. Every parse and range problem is an [`InvalidAutoscalerConfig`] that
//!   names the key.
//! - [`validate_annotations`] is Knative's webhook validation of `autoscaling.knative.dev/*`
//!   annotations; [`RevisionScaling::resolve`] runs it and then resolves what the decider and the
//!   scaler use: `MakeDecider`, `ResolveMetricTarget` (target and total value), `MakeMetric`
//!   (stable and panic windows), `ScaleBounds`, `GetInitialScale` and the activation timeout.
//!
//! Deliberate differences from Knative: non-finite floats (`NaN`, `Inf`), which Go's range checks
//! let through, are rejected as malformed; the first problem found is reported, not all of them.

use super::goduration::{self, NANOS_PER_SEC};
use std::collections::BTreeMap;
use std::time::Duration;

/// The KPA class, the only one sluice autoscales.
pub const KPA_CLASS: &str = "kpa.autoscaling.knative.dev";
/// The HPA class (validated like Knative does, but not autoscaled by sluice).
pub const HPA_CLASS: &str = "hpa.autoscaling.knative.dev";

/// The annotation prefix of every per-revision autoscaling knob.
pub const ANNOTATION_PREFIX: &str = "autoscaling.knative.dev/";
pub const CLASS_ANNOTATION: &str = "autoscaling.knative.dev/class";
pub const METRIC_ANNOTATION: &str = "autoscaling.knative.dev/metric";
pub const TARGET_ANNOTATION: &str = "autoscaling.knative.dev/target";
pub const TARGET_UTILIZATION_ANNOTATION: &str =
    "autoscaling.knative.dev/target-utilization-percentage";
pub const TARGET_BURST_CAPACITY_ANNOTATION: &str = "autoscaling.knative.dev/target-burst-capacity";
pub const WINDOW_ANNOTATION: &str = "autoscaling.knative.dev/window";
pub const PANIC_WINDOW_PERCENTAGE_ANNOTATION: &str =
    "autoscaling.knative.dev/panic-window-percentage";
pub const PANIC_THRESHOLD_PERCENTAGE_ANNOTATION: &str =
    "autoscaling.knative.dev/panic-threshold-percentage";
pub const MIN_SCALE_ANNOTATION: &str = "autoscaling.knative.dev/min-scale";
pub const MAX_SCALE_ANNOTATION: &str = "autoscaling.knative.dev/max-scale";
pub const INITIAL_SCALE_ANNOTATION: &str = "autoscaling.knative.dev/initial-scale";
pub const ACTIVATION_SCALE_ANNOTATION: &str = "autoscaling.knative.dev/activation-scale";
pub const SCALE_DOWN_DELAY_ANNOTATION: &str = "autoscaling.knative.dev/scale-down-delay";
pub const SCALE_TO_ZERO_POD_RETENTION_ANNOTATION: &str =
    "autoscaling.knative.dev/scale-to-zero-pod-retention-period";
pub const METRIC_AGGREGATION_ANNOTATION: &str =
    "autoscaling.knative.dev/metric-aggregation-algorithm";
/// Not an autoscaling annotation, but it sets the activation timeout.
pub const PROGRESS_DEADLINE_ANNOTATION: &str = "serving.knative.dev/progress-deadline";

/// Each knob's keys in priority order: the kebab-case key first, then the legacy camelCase one.
const CLASS_KEYS: &[&str] = &[CLASS_ANNOTATION];
const METRIC_KEYS: &[&str] = &[METRIC_ANNOTATION];
const TARGET_KEYS: &[&str] = &[TARGET_ANNOTATION];
const TARGET_UTILIZATION_KEYS: &[&str] = &[
    TARGET_UTILIZATION_ANNOTATION,
    "autoscaling.knative.dev/targetUtilizationPercentage",
];
const TARGET_BURST_CAPACITY_KEYS: &[&str] = &[
    TARGET_BURST_CAPACITY_ANNOTATION,
    "autoscaling.knative.dev/targetBurstCapacity",
];
const WINDOW_KEYS: &[&str] = &[WINDOW_ANNOTATION];
const PANIC_WINDOW_PERCENTAGE_KEYS: &[&str] = &[
    PANIC_WINDOW_PERCENTAGE_ANNOTATION,
    "autoscaling.knative.dev/panicWindowPercentage",
];
const PANIC_THRESHOLD_PERCENTAGE_KEYS: &[&str] = &[
    PANIC_THRESHOLD_PERCENTAGE_ANNOTATION,
    "autoscaling.knative.dev/panicThresholdPercentage",
];
const MIN_SCALE_KEYS: &[&str] = &[MIN_SCALE_ANNOTATION, "autoscaling.knative.dev/minScale"];
const MAX_SCALE_KEYS: &[&str] = &[MAX_SCALE_ANNOTATION, "autoscaling.knative.dev/maxScale"];
const INITIAL_SCALE_KEYS: &[&str] = &[
    INITIAL_SCALE_ANNOTATION,
    "autoscaling.knative.dev/initialScale",
];
const ACTIVATION_SCALE_KEYS: &[&str] = &[ACTIVATION_SCALE_ANNOTATION];
const SCALE_DOWN_DELAY_KEYS: &[&str] = &[
    SCALE_DOWN_DELAY_ANNOTATION,
    "autoscaling.knative.dev/scaleDownDelay",
];
const SCALE_TO_ZERO_POD_RETENTION_KEYS: &[&str] = &[
    SCALE_TO_ZERO_POD_RETENTION_ANNOTATION,
    "autoscaling.knative.dev/scaleToZeroPodRetentionPeriod",
];
const METRIC_AGGREGATION_KEYS: &[&str] = &[
    METRIC_AGGREGATION_ANNOTATION,
    "autoscaling.knative.dev/metricAggregationAlgorithm",
];
const PROGRESS_DEADLINE_KEYS: &[&str] = &[PROGRESS_DEADLINE_ANNOTATION];

/// The smallest target value (`autoscaling.TargetMin`).
pub const TARGET_MIN: f64 = 0.01;
/// The stable window's bounds (`autoscaling.WindowMin`, `WindowMax`).
pub const WINDOW_MIN: Duration = Duration::from_secs(6);
pub const WINDOW_MAX: Duration = Duration::from_secs(3600);
/// Panic window percentage bounds.
pub const PANIC_WINDOW_PERCENTAGE_MIN: f64 = 1.0;
pub const PANIC_WINDOW_PERCENTAGE_MAX: f64 = 100.0;
/// Panic threshold percentage bounds (checked on the annotation only, as in Knative).
pub const PANIC_THRESHOLD_PERCENTAGE_MIN: f64 = 110.0;
pub const PANIC_THRESHOLD_PERCENTAGE_MAX: f64 = 1000.0;
/// `config-deployment`'s default `progress-deadline`.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// Added to the progress deadline before a stuck activation is given up (`activationTimeoutBuffer`).
pub const ACTIVATION_TIMEOUT_BUFFER: Duration = Duration::from_secs(30);

/// The name of the ConfigMap, used in error messages.
pub const CONFIG_NAME: &str = "config-autoscaler";

/// Every `config-autoscaler` key, with Knative's defaults ([`Default`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AutoscalerConfig {
    /// `container-concurrency-target-percentage`, stored as a fraction in (0, 1] (default 0.7).
    pub container_concurrency_target_fraction: f64,
    /// `container-concurrency-target-default` (100): the per-pod total when cc = 0.
    pub container_concurrency_target_default: f64,
    /// The utilisation used for the RPS metric (0.7). Deliberately not a ConfigMap key.
    pub target_utilization: f64,
    /// `requests-per-second-target-default` (200).
    pub requests_per_second_target_default: f64,
    /// `target-burst-capacity` (211): ≥ 0 or exactly -1. sluice always behaves as -1 (the
    /// gateway is always in the path); the value only feeds the reported excess burst capacity.
    pub target_burst_capacity: f64,
    /// `stable-window` (60 s): [6 s, 1 h], whole seconds.
    pub stable_window: Duration,
    /// `panic-window-percentage` (10): [1, 100].
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage` (200).
    pub panic_threshold_percentage: f64,
    /// `max-scale-up-rate` (1000): > 1.
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate` (2): > 1.
    pub max_scale_down_rate: f64,
    /// `enable-scale-to-zero` (true).
    pub enable_scale_to_zero: bool,
    /// `scale-to-zero-grace-period` (30 s): > 0.
    pub scale_to_zero_grace_period: Duration,
    /// `scale-to-zero-pod-retention-period` (0 s).
    pub scale_to_zero_pod_retention_period: Duration,
    /// `scale-down-delay` (0 s): whole seconds.
    pub scale_down_delay: Duration,
    /// `pod-autoscaler-class` (`kpa.autoscaling.knative.dev`).
    pub pod_autoscaler_class: String,
    /// `activator-capacity` (100): ≥ 1.
    pub activator_capacity: f64,
    /// `initial-scale` (1): 0 only with `allow-zero-initial-scale`.
    pub initial_scale: u32,
    /// `allow-zero-initial-scale` (false).
    pub allow_zero_initial_scale: bool,
    /// `min-scale` (0).
    pub min_scale: u32,
    /// `max-scale` (0 = unlimited).
    pub max_scale: u32,
    /// `max-scale-limit` (0 = none).
    pub max_scale_limit: u32,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        AutoscalerConfig {
            container_concurrency_target_fraction: 0.7,
            container_concurrency_target_default: 100.0,
            target_utilization: 0.7,
            requests_per_second_target_default: 200.0,
            target_burst_capacity: 211.0,
            stable_window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            enable_scale_to_zero: true,
            scale_to_zero_grace_period: Duration::from_secs(30),
            scale_to_zero_pod_retention_period: Duration::ZERO,
            scale_down_delay: Duration::ZERO,
            pod_autoscaler_class: KPA_CLASS.to_string(),
            activator_capacity: 100.0,
            initial_scale: 1,
            allow_zero_initial_scale: false,
            min_scale: 0,
            max_scale: 0,
            max_scale_limit: 0,
        }
    }
}

/// A `config-autoscaler` key that could not be parsed or is out of range.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidAutoscalerConfig {
    #[error("config-autoscaler: {key}: {value:?} is not a valid {expected}")]
    Malformed {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("config-autoscaler: {key}: must be {expected}, was {value}")]
    OutOfRange {
        key: &'static str,
        value: String,
        expected: String,
    },
}

impl InvalidAutoscalerConfig {
    /// The offending key.
    pub fn key(&self) -> &'static str {
        match self {
            InvalidAutoscalerConfig::Malformed { key, .. }
            | InvalidAutoscalerConfig::OutOfRange { key, .. } => key,
        }
    }
}

/// Reads the ConfigMap's values, remembering the raw text for error messages.
struct ConfigData<'a> {
    data: &'a BTreeMap<String, String>,
}

impl ConfigData<'_> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.data.get(key).map(String::as_str)
    }

    /// The raw text of `key`, or `fallback` rendered, for an out-of-range message.
    fn shown(&self, key: &str, fallback: impl std::fmt::Display) -> String {
        self.raw(key)
            .map_or_else(|| fallback.to_string(), str::to_string)
    }

    fn float(&self, key: &'static str, into: &mut f64) -> Result<(), InvalidAutoscalerConfig> {
        if let Some(raw) = self.raw(key) {
            *into = parse_float(raw).ok_or_else(|| InvalidAutoscalerConfig::Malformed {
                key,
                value: raw.to_string(),
                expected: "number",
            })?;
        }
        Ok(())
    }

    fn int32(&self, key: &'static str, into: &mut i64) -> Result<(), InvalidAutoscalerConfig> {
        if let Some(raw) = self.raw(key) {
            *into =
                i64::from(
                    raw.parse::<i32>()
                        .map_err(|_| InvalidAutoscalerConfig::Malformed {
                            key,
                            value: raw.to_string(),
                            expected: "32-bit integer",
                        })?,
                );
        }
        Ok(())
    }

    fn boolean(&self, key: &'static str, into: &mut bool) -> Result<(), InvalidAutoscalerConfig> {
        if let Some(raw) = self.raw(key) {
            *into = parse_go_bool(raw).ok_or_else(|| InvalidAutoscalerConfig::Malformed {
                key,
                value: raw.to_string(),
                expected: "boolean",
            })?;
        }
        Ok(())
    }

    fn duration(&self, key: &'static str, into: &mut i128) -> Result<(), InvalidAutoscalerConfig> {
        if let Some(raw) = self.raw(key) {
            *into = goduration::parse(raw).ok_or_else(|| InvalidAutoscalerConfig::Malformed {
                key,
                value: raw.to_string(),
                expected: "duration",
            })?;
        }
        Ok(())
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// A finite float (Go's `ParseFloat`, minus `NaN` and infinities).
fn parse_float(raw: &str) -> Option<f64> {
    raw.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn secs(d: i128) -> Duration {
    goduration::to_duration(d)
}

fn nanos(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).unwrap_or(i128::MAX)
}

impl AutoscalerConfig {
    /// Parses and validates the ConfigMap's `data` (Knative's `NewConfigFromMap`).
    pub fn from_data(
        data: &BTreeMap<String, String>,
    ) -> Result<AutoscalerConfig, InvalidAutoscalerConfig> {
        let d = ConfigData { data };
        let defaults = AutoscalerConfig::default();

        let mut class = defaults.pod_autoscaler_class.clone();
        if let Some(raw) = d.raw("pod-autoscaler-class") {
            class = raw.to_string();
        }
        let mut enable_scale_to_zero = defaults.enable_scale_to_zero;
        let mut allow_zero_initial_scale = defaults.allow_zero_initial_scale;
        d.boolean("enable-scale-to-zero", &mut enable_scale_to_zero)?;
        d.boolean("allow-zero-initial-scale", &mut allow_zero_initial_scale)?;

        let mut max_scale_up_rate = defaults.max_scale_up_rate;
        let mut max_scale_down_rate = defaults.max_scale_down_rate;
        let mut cc_fraction = defaults.container_concurrency_target_fraction;
        let mut cc_default = defaults.container_concurrency_target_default;
        let mut rps_default = defaults.requests_per_second_target_default;
        let mut tbc = defaults.target_burst_capacity;
        let mut panic_window_percentage = defaults.panic_window_percentage;
        let mut activator_capacity = defaults.activator_capacity;
        let mut panic_threshold_percentage = defaults.panic_threshold_percentage;
        d.float("max-scale-up-rate", &mut max_scale_up_rate)?;
        d.float("max-scale-down-rate", &mut max_scale_down_rate)?;
        d.float("container-concurrency-target-percentage", &mut cc_fraction)?;
        d.float("container-concurrency-target-default", &mut cc_default)?;
        d.float("requests-per-second-target-default", &mut rps_default)?;
        d.float("target-burst-capacity", &mut tbc)?;
        d.float("panic-window-percentage", &mut panic_window_percentage)?;
        d.float("activator-capacity", &mut activator_capacity)?;
        d.float(
            "panic-threshold-percentage",
            &mut panic_threshold_percentage,
        )?;

        let mut initial_scale = i64::from(defaults.initial_scale);
        let mut min_scale = i64::from(defaults.min_scale);
        let mut max_scale = i64::from(defaults.max_scale);
        let mut max_scale_limit = i64::from(defaults.max_scale_limit);
        d.int32("initial-scale", &mut initial_scale)?;
        d.int32("min-scale", &mut min_scale)?;
        d.int32("max-scale", &mut max_scale)?;
        d.int32("max-scale-limit", &mut max_scale_limit)?;

        let mut stable_window = nanos(defaults.stable_window);
        let mut scale_down_delay = nanos(defaults.scale_down_delay);
        let mut grace = nanos(defaults.scale_to_zero_grace_period);
        let mut retention = nanos(defaults.scale_to_zero_pod_retention_period);
        d.duration("stable-window", &mut stable_window)?;
        d.duration("scale-down-delay", &mut scale_down_delay)?;
        d.duration("scale-to-zero-grace-period", &mut grace)?;
        d.duration("scale-to-zero-pod-retention-period", &mut retention)?;

        // Values in (0, 1] are fractions (legacy); anything above 1 is a percentage.
        if cc_fraction > 1.0 {
            cc_fraction /= 100.0;
        }

        let out_of_range = |key: &'static str, fallback: String, expected: &str| {
            InvalidAutoscalerConfig::OutOfRange {
                key,
                value: d.shown(key, fallback),
                expected: expected.to_string(),
            }
        };

        if grace <= 0 {
            return Err(out_of_range(
                "scale-to-zero-grace-period",
                String::new(),
                "positive",
            ));
        }
        if scale_down_delay < 0 {
            return Err(out_of_range(
                "scale-down-delay",
                String::new(),
                "at least 0s",
            ));
        }
        if scale_down_delay % NANOS_PER_SEC != 0 {
            return Err(out_of_range(
                "scale-down-delay",
                String::new(),
                "a whole number of seconds",
            ));
        }
        if retention < 0 {
            return Err(out_of_range(
                "scale-to-zero-pod-retention-period",
                String::new(),
                "at least 0s",
            ));
        }
        if tbc < 0.0 && tbc != -1.0 {
            return Err(out_of_range(
                "target-burst-capacity",
                tbc.to_string(),
                "at least 0, or -1 for unlimited",
            ));
        }
        if cc_fraction <= 0.0 || cc_fraction > 1.0 {
            return Err(out_of_range(
                "container-concurrency-target-percentage",
                cc_fraction.to_string(),
                "in (0, 100]",
            ));
        }
        let target = cc_fraction * cc_default;
        if target < TARGET_MIN {
            return Err(InvalidAutoscalerConfig::OutOfRange {
                key: "container-concurrency-target-percentage",
                value: format!(
                    "{cc_fraction} × container-concurrency-target-default {cc_default} = {target}"
                ),
                expected: format!("such that the target concurrency is at least {TARGET_MIN}"),
            });
        }
        if rps_default < TARGET_MIN {
            return Err(out_of_range(
                "requests-per-second-target-default",
                rps_default.to_string(),
                "at least 0.01",
            ));
        }
        if activator_capacity < 1.0 {
            return Err(out_of_range(
                "activator-capacity",
                activator_capacity.to_string(),
                "at least 1",
            ));
        }
        if max_scale_up_rate <= 1.0 {
            return Err(out_of_range(
                "max-scale-up-rate",
                max_scale_up_rate.to_string(),
                "greater than 1",
            ));
        }
        if max_scale_down_rate <= 1.0 {
            return Err(out_of_range(
                "max-scale-down-rate",
                max_scale_down_rate.to_string(),
                "greater than 1",
            ));
        }
        if stable_window < nanos(WINDOW_MIN) || stable_window > nanos(WINDOW_MAX) {
            return Err(out_of_range(
                "stable-window",
                String::new(),
                "between 6s and 1h0m0s",
            ));
        }
        if stable_window % NANOS_PER_SEC != 0 {
            return Err(out_of_range(
                "stable-window",
                String::new(),
                "a whole number of seconds",
            ));
        }
        if !(PANIC_WINDOW_PERCENTAGE_MIN..=PANIC_WINDOW_PERCENTAGE_MAX)
            .contains(&panic_window_percentage)
        {
            return Err(out_of_range(
                "panic-window-percentage",
                panic_window_percentage.to_string(),
                "between 1 and 100",
            ));
        }
        if initial_scale < 0 || (initial_scale == 0 && !allow_zero_initial_scale) {
            return Err(out_of_range(
                "initial-scale",
                initial_scale.to_string(),
                "at least 1 (0 only with allow-zero-initial-scale: true)",
            ));
        }
        if min_scale < 0 {
            return Err(out_of_range(
                "min-scale",
                min_scale.to_string(),
                "at least 0",
            ));
        }
        let min_max_scale = i64::from(max_scale_limit > 0);
        if max_scale < min_max_scale || (max_scale_limit > 0 && max_scale > max_scale_limit) {
            return Err(out_of_range(
                "max-scale",
                max_scale.to_string(),
                &format!("between {min_max_scale} and max-scale-limit ({max_scale_limit})"),
            ));
        }
        if max_scale_limit < 0 {
            return Err(out_of_range(
                "max-scale-limit",
                max_scale_limit.to_string(),
                "at least 0",
            ));
        }
        if min_scale > max_scale && max_scale > 0 {
            return Err(out_of_range(
                "min-scale",
                min_scale.to_string(),
                &format!("at most max-scale ({max_scale})"),
            ));
        }

        let count = |v: i64| u32::try_from(v).unwrap_or(0);
        Ok(AutoscalerConfig {
            container_concurrency_target_fraction: cc_fraction,
            container_concurrency_target_default: cc_default,
            target_utilization: defaults.target_utilization,
            requests_per_second_target_default: rps_default,
            target_burst_capacity: tbc,
            stable_window: secs(stable_window),
            panic_window_percentage,
            panic_threshold_percentage,
            max_scale_up_rate,
            max_scale_down_rate,
            enable_scale_to_zero,
            scale_to_zero_grace_period: secs(grace),
            scale_to_zero_pod_retention_period: secs(retention),
            scale_down_delay: secs(scale_down_delay),
            pod_autoscaler_class: class,
            activator_capacity,
            initial_scale: count(initial_scale),
            allow_zero_initial_scale,
            min_scale: count(min_scale),
            max_scale: count(max_scale),
            max_scale_limit: count(max_scale_limit),
        })
    }
}

/// The metric a KPA revision scales on (`autoscaling.knative.dev/metric`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// In-flight requests per pod (the default).
    Concurrency,
    /// Requests per second per pod.
    Rps,
}

/// How window averages are computed (`autoscaling.knative.dev/metric-aggregation-algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregation {
    /// Plain average over the window (the default).
    Linear,
    /// Exponentially decaying weights, newest heaviest (`weighted-exponential`).
    WeightedExponential,
}

/// An `autoscaling.knative.dev/*` (or `serving.knative.dev/progress-deadline`) annotation that
/// Knative's webhook would reject, or a class sluice does not autoscale.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum InvalidAnnotation {
    #[error("annotation {key}: {value:?} is not a valid {expected}")]
    Malformed {
        key: String,
        value: String,
        expected: &'static str,
    },
    #[error("annotation {key}: must be {expected}, was {value}")]
    OutOfRange {
        key: String,
        value: String,
        expected: String,
    },
    #[error("annotation {key}: {message}")]
    Conflict { key: String, message: String },
    #[error("annotation autoscaling.knative.dev/class: sluice autoscales only kpa.autoscaling.knative.dev, not {class}")]
    UnsupportedClass { class: String },
}

impl InvalidAnnotation {
    /// The offending annotation key.
    pub fn key(&self) -> &str {
        match self {
            InvalidAnnotation::Malformed { key, .. }
            | InvalidAnnotation::OutOfRange { key, .. }
            | InvalidAnnotation::Conflict { key, .. } => key,
            InvalidAnnotation::UnsupportedClass { .. } => CLASS_ANNOTATION,
        }
    }
}

/// The first of `keys` present in `annotations`, with its value (Knative's `KeyPriority.Get`).
fn lookup<'a>(
    annotations: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Option<(&'static str, &'a str)> {
    keys.iter()
        .find_map(|&k| annotations.get(k).map(|v| (k, v.as_str())))
}

fn malformed(key: &str, value: &str, expected: &'static str) -> InvalidAnnotation {
    InvalidAnnotation::Malformed {
        key: key.to_string(),
        value: value.to_string(),
        expected,
    }
}

fn out_of_range(key: &str, value: &str, expected: impl Into<String>) -> InvalidAnnotation {
    InvalidAnnotation::OutOfRange {
        key: key.to_string(),
        value: value.to_string(),
        expected: expected.into(),
    }
}

fn conflict(key: &str, message: String) -> InvalidAnnotation {
    InvalidAnnotation::Conflict {
        key: key.to_string(),
        message,
    }
}

/// A non-negative int32 annotation (`getIntGE0`); 0 when absent.
fn int_ge0(
    annotations: &BTreeMap<String, String>,
    keys: &[&'static str],
) -> Result<u32, InvalidAnnotation> {
    let Some((key, value)) = lookup(annotations, keys) else {
        return Ok(0);
    };
    match value.parse::<i32>() {
        Ok(v) => u32::try_from(v).map_err(|_| out_of_range(key, value, "between 0 and 2147483647")),
        Err(e) => match e.kind() {
            std::num::IntErrorKind::PosOverflow | std::num::IntErrorKind::NegOverflow => {
                Err(out_of_range(key, value, "between 0 and 2147483647"))
            }
            _ => Err(malformed(key, value, "whole number")),
        },
    }
}

/// A float annotation, if present.
fn float_annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Result<Option<(&'static str, &'a str, f64)>, InvalidAnnotation> {
    let Some((key, value)) = lookup(annotations, keys) else {
        return Ok(None);
    };
    let v = parse_float(value).ok_or_else(|| malformed(key, value, "number"))?;
    Ok(Some((key, value, v)))
}

/// A duration annotation, if present, as signed nanoseconds.
fn duration_annotation<'a>(
    annotations: &'a BTreeMap<String, String>,
    keys: &[&'static str],
) -> Result<Option<(&'static str, &'a str, i128)>, InvalidAnnotation> {
    let Some((key, value)) = lookup(annotations, keys) else {
        return Ok(None);
    };
    let d = goduration::parse(value).ok_or_else(|| malformed(key, value, "duration"))?;
    Ok(Some((key, value, d)))
}

/// The effective class: the annotation, else the ConfigMap's `pod-autoscaler-class`.
fn effective_class<'a>(
    annotations: &'a BTreeMap<String, String>,
    config: &'a AutoscalerConfig,
) -> &'a str {
    lookup(annotations, CLASS_KEYS).map_or(config.pod_autoscaler_class.as_str(), |(_, v)| v)
}

/// Knative's `ValidateAnnotations` (plus the revision's `progress-deadline` check), reporting the
/// first problem in Knative's order: class, min/max/activation scale, floats, window, pod
/// retention, scale-down delay, metric, aggregation algorithm, initial scale.
pub fn validate_annotations(
    annotations: &BTreeMap<String, String>,
    config: &AutoscalerConfig,
) -> Result<(), InvalidAnnotation> {
    // Class: a *.knative.dev class must be one of the two Knative ships.
    if let Some((key, class)) = lookup(annotations, CLASS_KEYS) {
        if class.ends_with(".knative.dev") && class != KPA_CLASS && class != HPA_CLASS {
            return Err(malformed(key, class, "autoscaler class"));
        }
    }

    // Min, max and activation scale.
    let min = int_ge0(annotations, MIN_SCALE_KEYS)?;
    let max = int_ge0(annotations, MAX_SCALE_KEYS)?;
    if max != 0 && max < min {
        return Err(conflict(
            MAX_SCALE_ANNOTATION,
            format!("max-scale={max} is less than min-scale={min}"),
        ));
    }
    if let Some((key, value)) = lookup(annotations, MAX_SCALE_KEYS) {
        let limit = config.max_scale_limit;
        if limit > 0 && max > limit {
            return Err(out_of_range(key, value, format!("between 1 and {limit}")));
        }
        if limit > 0 && max == 0 {
            return Err(conflict(
                key,
                format!("max-scale=0 (unlimited), must be less than {limit}"),
            ));
        }
    }
    if let Some((key, value)) = lookup(annotations, ACTIVATION_SCALE_KEYS) {
        let activation = value
            .parse::<i32>()
            .map_err(|_| malformed(key, value, "whole number"))?;
        if i64::from(min) > i64::from(activation) {
            return Err(conflict(
                key,
                format!("min-scale={min} is greater than activation-scale={activation}"),
            ));
        }
        if max != 0 && i64::from(max) < i64::from(activation) {
            return Err(conflict(
                key,
                format!("max-scale={max} is less than activation-scale={activation}"),
            ));
        }
        if activation < 2 {
            return Err(out_of_range(key, value, "at least 2"));
        }
    }

    // Floats.
    if let Some((key, value, v)) = float_annotation(annotations, PANIC_WINDOW_PERCENTAGE_KEYS)? {
        if !(PANIC_WINDOW_PERCENTAGE_MIN..=PANIC_WINDOW_PERCENTAGE_MAX).contains(&v) {
            return Err(out_of_range(key, value, "between 1 and 100"));
        }
    }
    if let Some((key, value, v)) = float_annotation(annotations, PANIC_THRESHOLD_PERCENTAGE_KEYS)? {
        if !(PANIC_THRESHOLD_PERCENTAGE_MIN..=PANIC_THRESHOLD_PERCENTAGE_MAX).contains(&v) {
            return Err(out_of_range(key, value, "between 110 and 1000"));
        }
    }
    if let Some((key, value, v)) = float_annotation(annotations, TARGET_KEYS)? {
        if v < TARGET_MIN {
            return Err(out_of_range(key, value, "at least 0.01"));
        }
    }
    if let Some((key, value, v)) = float_annotation(annotations, TARGET_UTILIZATION_KEYS)? {
        if !(1.0..=100.0).contains(&v) {
            return Err(out_of_range(key, value, "between 1 and 100"));
        }
    }
    if let Some((key, value, v)) = float_annotation(annotations, TARGET_BURST_CAPACITY_KEYS)? {
        if v < 0.0 && v != -1.0 {
            return Err(out_of_range(key, value, "at least 0, or -1 for unlimited"));
        }
    }

    // Durations.
    if let Some((key, value, d)) = duration_annotation(annotations, WINDOW_KEYS)? {
        if d < nanos(WINDOW_MIN) || d > nanos(WINDOW_MAX) {
            return Err(out_of_range(key, value, "between 6s and 1h0m0s"));
        }
        if d % NANOS_PER_SEC != 0 {
            return Err(out_of_range(key, value, "a whole number of seconds"));
        }
    }
    if let Some((key, value, d)) =
        duration_annotation(annotations, SCALE_TO_ZERO_POD_RETENTION_KEYS)?
    {
        if d < 0 || d > nanos(WINDOW_MAX) {
            return Err(out_of_range(key, value, "between 0s and 1h0m0s"));
        }
    }
    if let Some((key, value, d)) = duration_annotation(annotations, SCALE_DOWN_DELAY_KEYS)? {
        if d < 0 || d > nanos(WINDOW_MAX) {
            return Err(out_of_range(key, value, "between 0s and 1h0m0s"));
        }
        if goduration::round_to_second(d) != d {
            return Err(out_of_range(key, value, "a whole number of seconds"));
        }
    }

    // Metric, by class.
    if let Some((key, metric)) = lookup(annotations, METRIC_KEYS) {
        let ok = match effective_class(annotations, config) {
            KPA_CLASS => metric == "concurrency" || metric == "rps",
            HPA_CLASS => !metric.is_empty(),
            _ => true,
        };
        if !ok {
            return Err(malformed(key, metric, "metric for this class"));
        }
    }

    // Aggregation algorithm: validated only when the class annotation says KPA.
    if lookup(annotations, CLASS_KEYS).map(|(_, v)| v) == Some(KPA_CLASS) {
        if let Some((key, value)) = lookup(annotations, METRIC_AGGREGATION_KEYS) {
            if !value.is_empty()
                && !matches!(
                    value,
                    "linear" | "weighted-exponential" | "weightedExponential"
                )
            {
                return Err(malformed(key, value, "aggregation algorithm"));
            }
        }
    }

    // Initial scale.
    if let Some((key, value)) = lookup(annotations, INITIAL_SCALE_KEYS) {
        let v = value
            .parse::<i64>()
            .map_err(|_| malformed(key, value, "whole number"))?;
        if v < 0 {
            return Err(out_of_range(key, value, "at least 0"));
        }
        if v == 0 && !config.allow_zero_initial_scale {
            return Err(out_of_range(
                key,
                value,
                "at least 1 (0 is not allowed by config-autoscaler allow-zero-initial-scale)",
            ));
        }
        if v > i64::from(i32::MAX) {
            return Err(out_of_range(key, value, "at most 2147483647"));
        }
    }

    // Progress deadline (validated with the revision in Knative).
    if let Some((key, value)) = lookup(annotations, PROGRESS_DEADLINE_KEYS) {
        if !value.is_empty() {
            let d = goduration::parse(value).ok_or_else(|| malformed(key, value, "duration"))?;
            if goduration::round_to_second(d.abs()) != d.abs() {
                return Err(out_of_range(key, value, "a whole number of seconds"));
            }
            if d < 0 {
                return Err(out_of_range(key, value, "positive"));
            }
        }
    }
    Ok(())
}

/// A revision's effective autoscaling settings: Knative's `DeciderSpec`, plus the PA-level
/// knobs the scaler needs (bounds, initial scale, retention, activation timeout).
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionScaling {
    pub metric: Metric,
    pub aggregation: Aggregation,
    /// `spec.containerConcurrency`: the hard per-pod limit (0 = unlimited).
    pub container_concurrency: u32,
    /// Per-pod value the autoscaler aims for (`TargetValue`, at least 0.01).
    pub target_value: f64,
    /// Per-pod maximum (`TotalValue`), used for the excess burst capacity.
    pub total_value: f64,
    /// `target-burst-capacity` (-1, 0 or positive). Only feeds the reported excess burst
    /// capacity: sluice is always in the path, i.e. always behaves as -1.
    pub target_burst_capacity: f64,
    pub activator_capacity: f64,
    /// Panic when the panic-window pod count over ready pods reaches this (a fraction, 2.0).
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub stable_window: Duration,
    /// `round(stable_window × panic-window-percentage / 100)` to the second, at least 1 s.
    pub panic_window: Duration,
    pub scale_down_delay: Duration,
    /// Lower bound (0 = none); ignored while the revision is unreachable.
    pub min_scale: u32,
    /// Upper bound (0 = none).
    pub max_scale: u32,
    /// Replicas at creation and until the scale target is initialised.
    pub initial_scale: u32,
    /// Minimum non-zero scale (0 = unset; only values > 1 matter).
    pub activation_scale: u32,
    /// The last pod lingers at least this long after the scale-to-zero decision.
    pub scale_to_zero_pod_retention_period: Duration,
    /// How long a PA may stay Activating before it is scaled to zero: progress deadline + 30 s.
    pub activation_timeout: Duration,
}

impl RevisionScaling {
    /// Validates `annotations` like Knative's webhook, then resolves the revision's settings
    /// against `config` (Knative's `MakeDecider`, `ResolveMetricTarget`, `MakeMetric`,
    /// `ScaleBounds`, `GetInitialScale`). A class other than KPA is rejected: sluice autoscales
    /// only KPA-class revisions.
    pub fn resolve(
        annotations: &BTreeMap<String, String>,
        container_concurrency: u32,
        config: &AutoscalerConfig,
    ) -> Result<RevisionScaling, InvalidAnnotation> {
        validate_annotations(annotations, config)?;
        let class = effective_class(annotations, config);
        if class != KPA_CLASS {
            return Err(InvalidAnnotation::UnsupportedClass {
                class: class.to_string(),
            });
        }
        let float = |keys| float_annotation(annotations, keys).map(|v| v.map(|(_, _, f)| f));
        let duration =
            |keys| duration_annotation(annotations, keys).map(|v| v.map(|(_, _, d)| secs(d)));

        let metric = match lookup(annotations, METRIC_KEYS).map(|(_, v)| v) {
            Some("rps") => Metric::Rps,
            _ => Metric::Concurrency,
        };
        let aggregation = match lookup(annotations, METRIC_AGGREGATION_KEYS).map(|(_, v)| v) {
            Some("weighted-exponential" | "weightedExponential") => {
                Aggregation::WeightedExponential
            }
            _ => Aggregation::Linear,
        };

        // ResolveMetricTarget.
        let cc = f64::from(container_concurrency);
        let (mut total, mut utilization) = match metric {
            Metric::Rps => (
                config.requests_per_second_target_default,
                config.target_utilization,
            ),
            Metric::Concurrency => (
                if container_concurrency == 0 {
                    config.container_concurrency_target_default
                } else {
                    cc
                },
                config.container_concurrency_target_fraction,
            ),
        };
        if let Some(target) = float(TARGET_KEYS)? {
            total = target;
            if metric == Metric::Concurrency && container_concurrency != 0 {
                total = target.min(cc);
            }
        }
        if let Some(tu) = float(TARGET_UTILIZATION_KEYS)? {
            utilization = tu / 100.0;
        }
        let target_value = TARGET_MIN.max(total * utilization);

        // MakeMetric: stable and panic windows.
        let stable_window = duration(WINDOW_KEYS)?.unwrap_or(config.stable_window);
        let panic_percentage =
            float(PANIC_WINDOW_PERCENTAGE_KEYS)?.unwrap_or(config.panic_window_percentage);
        let panic_window = panic_window(stable_window, panic_percentage);

        let panic_threshold = float(PANIC_THRESHOLD_PERCENTAGE_KEYS)?
            .unwrap_or(config.panic_threshold_percentage)
            / 100.0;
        let target_burst_capacity =
            float(TARGET_BURST_CAPACITY_KEYS)?.unwrap_or(config.target_burst_capacity);
        let scale_down_delay = duration(SCALE_DOWN_DELAY_KEYS)?.unwrap_or(config.scale_down_delay);
        let retention = duration(SCALE_TO_ZERO_POD_RETENTION_KEYS)?
            .unwrap_or(config.scale_to_zero_pod_retention_period);

        let int = |keys| -> Result<Option<u32>, InvalidAnnotation> {
            match lookup(annotations, keys) {
                Some(_) => int_ge0(annotations, keys).map(Some),
                None => Ok(None),
            }
        };
        let min_scale = int(MIN_SCALE_KEYS)?.unwrap_or(config.min_scale);
        let max_scale = int(MAX_SCALE_KEYS)?.unwrap_or(config.max_scale);
        let activation_scale = int(ACTIVATION_SCALE_KEYS)?.unwrap_or(0);
        // GetInitialScale. An annotation of 0 without `allow-zero-initial-scale` (which Knative
        // would ignore here) was already refused by the validation above.
        let initial_scale = int(INITIAL_SCALE_KEYS)?.unwrap_or(config.initial_scale);
        // Validated above too: what does not parse is the empty value, which means the default.
        let progress_deadline = lookup(annotations, PROGRESS_DEADLINE_KEYS)
            .and_then(|(_, v)| goduration::parse(v))
            .map_or(DEFAULT_PROGRESS_DEADLINE, secs);

        Ok(RevisionScaling {
            metric,
            aggregation,
            container_concurrency,
            target_value,
            total_value: total,
            target_burst_capacity,
            activator_capacity: config.activator_capacity,
            panic_threshold,
            max_scale_up_rate: config.max_scale_up_rate,
            max_scale_down_rate: config.max_scale_down_rate,
            stable_window,
            panic_window,
            scale_down_delay,
            min_scale,
            max_scale,
            initial_scale,
            activation_scale,
            scale_to_zero_pod_retention_period: retention,
            activation_timeout: progress_deadline + ACTIVATION_TIMEOUT_BUFFER,
        })
    }
}

/// Knative's `MakeMetric` panic window: `stable × percentage / 100` in (truncated) nanoseconds,
/// rounded to the second (halves up), at least one second.
pub fn panic_window(stable_window: Duration, panic_window_percentage: f64) -> Duration {
    let raw = (nanos(stable_window) as f64 * panic_window_percentage / 100.0) as i128;
    let rounded = goduration::round_to_second(raw);
    secs(rounded.max(NANOS_PER_SEC))
}

#[cfg(test)]
mod tests;
