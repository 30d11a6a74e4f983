//! Knative's KPA autoscaler, ported as pure code: time is injected, nothing here reads a clock,
//! does I/O or spawns a task.
//!
//! ```text
//! gateway counters ──1 sample/s──> decider::Windows ──decide() every 2 s──> Decision.desired
//!                                                                              │
//!   PaState (Active / Inactive / Activating) <──scaler::reconcile()────────────┘
//!                                      └──> ScaleAction { replicas, requeue_after }
//! ```
//!
//! - [`config`]: the `config-autoscaler` ConfigMap ([`config::AutoscalerConfig`]) and the
//!   per-revision settings resolved from `autoscaling.knative.dev/*` annotations
//!   ([`config::RevisionScaling`]), with Knative's defaults and validation.
//! - [`bucketing`]: the window averages (linear and weighted-exponential) and the sliding maximum
//!   behind `scale-down-delay`.
//! - [`decider`]: one decision, a port of `autoscaler.Scale()` with its panic-mode state.
//! - [`scaler`]: the PodAutoscaler reconciler's scale logic: bounds, initial scale and the
//!   scale-to-zero timing.
//! - [`simulate`](mod@simulate): replays a concurrency trace through decider and scaler, and renders the result
//!   as a table, CSV or SVG chart.
//!
//! **sluice is Knative's `target-burst-capacity: -1` case.** The gateway (with its built-in
//! activator) is always in the request path, so nothing is scraped: every sample comes from the
//! gateway's own per-revision counters (time-weighted average in-flight requests, buffered ones
//! included, and arrivals, once a second), the window averages never report "no data", and the
//! activator never has to be probed into the path before scaling to zero.
//!
//! Invariants: every function is deterministic in its inputs; time is a [`std::time::Duration`]
//! since an arbitrary origin, and bucketing works in whole seconds like Knative's; user input
//! (ConfigMap data, annotations, traces) never panics, it is rejected with an `Invalid*` error
//! naming the offending key or line.

pub mod bucketing;
pub mod config;
pub mod decider;
mod goduration;
pub mod scaler;
pub mod simulate;

pub use config::{AutoscalerConfig, InvalidAnnotation, InvalidAutoscalerConfig, RevisionScaling};
pub use decider::{decide, DeciderState, Decision, Windows};
pub use scaler::{reconcile, should_poke, ActivationState, PaState, ScaleAction};
pub use simulate::{parse_trace, simulate, InvalidTrace, Run, SimRow, TracePoint};

/// Knative's decision tick: the autoscaler decides once every two seconds per revision.
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);

/// Knative's bucket size: samples are aggregated per second.
pub const BUCKET_SIZE: std::time::Duration = std::time::Duration::from_secs(1);
