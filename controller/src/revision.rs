//! sluice Revision (`sluice.dev/v1alpha1`): defaulting and validation, its activator policy and
//! backend, and the autoscaler's view of every Revision ([`scaling_targets`]).
//!
//! Defaults and bounds (Knative's where it has them):
//! - `containerConcurrency` ≥ 0, default 0 (unlimited);
//! - `timeoutSeconds` 1..=3600, default 300;
//! - `responseStartTimeoutSeconds` and `idleTimeoutSeconds` 0..=`timeoutSeconds`, 0 meaning
//!   none (as in Knative's queue-proxy), so the policy carries `None` for both 0 and absent;
//! - exactly one backend: `service {name, port}` (+ optional `scaleTargetRef`), `process
//!   {command, env}` (non-empty command) or `responder {status (100..=599, default 200),
//!   bodyBytes, latencyMs, message}`;
//! - annotations: `sluice.dev/max-buffered-requests` ≥ 1 (default 10000), and Knative's
//!   `autoscaling.knative.dev/*` keys as [`RevisionScaling::resolve`] validates them.
//!
//! Backends ([`ValidRevision::backend`]): a `service` resolves like a KIngress split's Service
//! (port by number or name, h2c by appProtocol or port name, ready EndpointSlice addresses); a
//! `process` lists the ready addresses of the namespace's EndpointSlices labelled
//! `sluice.dev/revision: <name>` (the local process scaler publishes one per instance, since
//! each listens on its own port), over HTTP/1.1; a `responder` is served in-process.

use crate::autoscaler::config::{AutoscalerConfig, RevisionScaling, CONFIG_NAME};
use crate::object::{
    IntOrString, ObjectRef, Revision, RevisionSpec, MAX_BUFFERED_ANNOTATION, REVISION_LABEL,
};
use crate::store::Store;
use sluice_xds::{ResponderSpec, RevisionPolicy};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

pub const DEFAULT_TIMEOUT_SECONDS: u64 = 300;
pub const MAX_TIMEOUT_SECONDS: u64 = 3600;
pub const DEFAULT_MAX_BUFFERED: u32 = 10_000;
pub const DEFAULT_RESPONDER_STATUS: u16 = 200;

/// Status reasons of a Revision that cannot serve.
pub const REASON_INVALID_REVISION: &str = "InvalidRevision";
pub const REASON_INVALID_ANNOTATION: &str = "InvalidAnnotation";

/// A Revision that fails validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRevision {
    /// The spec; every problem is listed.
    #[error("revision {revision}: {}", .problems.join("; "))]
    Spec {
        /// `ns/name`.
        revision: String,
        problems: Vec<String>,
    },
    /// An annotation (the first problem found).
    #[error("revision {revision}: {message}")]
    Annotation { revision: String, message: String },
}

impl InvalidRevision {
    /// The status condition reason.
    pub fn reason(&self) -> &'static str {
        match self {
            InvalidRevision::Spec { .. } => REASON_INVALID_REVISION,
            InvalidRevision::Annotation { .. } => REASON_INVALID_ANNOTATION,
        }
    }
}

/// A validated Revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRevision {
    /// What the activator enforces.
    pub policy: RevisionPolicy,
    pub backend: RevisionBackend,
}

/// The one backend of a valid Revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RevisionBackend {
    Service {
        name: String,
        port: IntOrString,
        scale_target: Option<ObjectRef>,
    },
    Process {
        command: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Responder(ResponderSpec),
}

/// Validates the spec alone; `max_buffered` is left at its default.
pub fn validate_spec(
    namespace: &str,
    name: &str,
    spec: &RevisionSpec,
) -> Result<ValidRevision, InvalidRevision> {
    let mut problems = Vec::new();

    let container_concurrency = match spec.container_concurrency {
        None => 0,
        Some(cc) => u32::try_from(cc).unwrap_or_else(|_| {
            problems.push(format!(
                "spec.containerConcurrency is {cc}, want 0 (unlimited) or more"
            ));
            0
        }),
    };
    let timeout_seconds = match spec.timeout_seconds {
        None => DEFAULT_TIMEOUT_SECONDS,
        Some(t) => match u64::try_from(t) {
            Ok(t) if (1..=MAX_TIMEOUT_SECONDS).contains(&t) => t,
            _ => {
                problems.push(format!(
                    "spec.timeoutSeconds is {t}, want 1..={MAX_TIMEOUT_SECONDS}"
                ));
                DEFAULT_TIMEOUT_SECONDS
            }
        },
    };
    let mut bounded = |field: &str, value: Option<i64>| match value {
        None => None,
        Some(v) => match u64::try_from(v) {
            Ok(0) => None,
            Ok(v) if v <= timeout_seconds => Some(v),
            _ => {
                problems.push(format!(
                    "spec.{field} is {v}, want 0..={timeout_seconds} (at most timeoutSeconds)"
                ));
                None
            }
        },
    };
    let response_start_timeout_seconds = bounded(
        "responseStartTimeoutSeconds",
        spec.response_start_timeout_seconds,
    );
    let idle_timeout_seconds = bounded("idleTimeoutSeconds", spec.idle_timeout_seconds);

    let mut backends = Vec::new();
    if let Some(service) = &spec.service {
        if service.name.is_empty() {
            problems.push("spec.service.name is missing".to_string());
        }
        if matches!(&service.port, IntOrString::Int(0)) || service.port.to_string().is_empty() {
            problems.push("spec.service.port is missing".to_string());
        } else if matches!(service.port, IntOrString::Int(n) if !(1..=65535).contains(&n)) {
            problems.push(format!(
                "spec.service.port is {}, want 1..=65535 or a port name",
                service.port
            ));
        }
        backends.push((
            "service",
            RevisionBackend::Service {
                name: service.name.clone(),
                port: service.port.clone(),
                scale_target: spec.scale_target_ref.clone(),
            },
        ));
    } else if spec.scale_target_ref.is_some() {
        problems.push("spec.scaleTargetRef is set without spec.service".to_string());
    }
    if let Some(process) = &spec.process {
        if process.command.first().is_none_or(String::is_empty) {
            problems.push("spec.process.command is empty, want a program to run".to_string());
        }
        backends.push((
            "process",
            RevisionBackend::Process {
                command: process.command.clone(),
                env: process.env.clone(),
            },
        ));
    }
    if let Some(responder) = &spec.responder {
        let status = match responder.status {
            None => DEFAULT_RESPONDER_STATUS,
            Some(s) => match u16::try_from(s) {
                Ok(s) if (100..=599).contains(&s) => s,
                _ => {
                    problems.push(format!("spec.responder.status is {s}, want 100..=599"));
                    DEFAULT_RESPONDER_STATUS
                }
            },
        };
        let body_bytes = match responder.body_bytes {
            None => 0,
            Some(b) => u32::try_from(b).unwrap_or_else(|_| {
                problems.push(format!(
                    "spec.responder.bodyBytes is {b}, want 0..={}",
                    u32::MAX
                ));
                0
            }),
        };
        let latency_ms = match responder.latency_ms {
            None => 0,
            Some(l) => u64::try_from(l).unwrap_or_else(|_| {
                problems.push(format!("spec.responder.latencyMs is {l}, want 0 or more"));
                0
            }),
        };
        backends.push((
            "responder",
            RevisionBackend::Responder(ResponderSpec {
                status,
                body_bytes,
                latency_ms,
                message: responder.message.clone(),
            }),
        ));
    }
    let backend = match backends.len() {
        1 => backends.pop().map(|(_, b)| b),
        0 => {
            problems.push(
                "no backend: set exactly one of spec.service, spec.process, spec.responder"
                    .to_string(),
            );
            None
        }
        _ => {
            let names: Vec<&str> = backends.iter().map(|(n, _)| *n).collect();
            problems.push(format!(
                "spec.{} are all set, want exactly one backend",
                names.join(", spec.")
            ));
            None
        }
    };

    let revision = format!("{namespace}/{name}");
    match backend {
        Some(backend) if problems.is_empty() => Ok(ValidRevision {
            policy: RevisionPolicy {
                container_concurrency,
                max_buffered: DEFAULT_MAX_BUFFERED,
                timeout_seconds,
                response_start_timeout_seconds,
                idle_timeout_seconds,
            },
            backend,
        }),
        _ => Err(InvalidRevision::Spec { revision, problems }),
    }
}

/// `sluice.dev/max-buffered-requests`: an integer ≥ 1, default 10000.
pub fn max_buffered(
    namespace: &str,
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> Result<u32, InvalidRevision> {
    let Some(raw) = annotations.get(MAX_BUFFERED_ANNOTATION) else {
        return Ok(DEFAULT_MAX_BUFFERED);
    };
    match raw.trim().parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(InvalidRevision::Annotation {
            revision: format!("{namespace}/{name}"),
            message: format!(
                "annotation {MAX_BUFFERED_ANNOTATION}: {raw:?} is not an integer in 1..={}",
                u32::MAX
            ),
        }),
    }
}

/// Validates a whole Revision: the spec, `sluice.dev/max-buffered-requests`, and the
/// autoscaling annotations against `autoscaler` (the resolved `config-autoscaler`).
pub fn validate(
    revision: &Revision,
    autoscaler: &AutoscalerConfig,
) -> Result<(ValidRevision, RevisionScaling), InvalidRevision> {
    let meta = &revision.metadata;
    let mut valid = validate_spec(&meta.namespace, &meta.name, &revision.spec)?;
    valid.policy.max_buffered = max_buffered(&meta.namespace, &meta.name, &meta.annotations)?;
    let scaling = scaling(revision, valid.policy.container_concurrency, autoscaler)?;
    Ok((valid, scaling))
}

fn scaling(
    revision: &Revision,
    container_concurrency: u32,
    autoscaler: &AutoscalerConfig,
) -> Result<RevisionScaling, InvalidRevision> {
    let meta = &revision.metadata;
    RevisionScaling::resolve(&meta.annotations, container_concurrency, autoscaler).map_err(|e| {
        InvalidRevision::Annotation {
            revision: format!("{}/{}", meta.namespace, meta.name),
            message: e.to_string(),
        }
    })
}

/// The backend (and revision policy) name of a Revision: `ns/name`. It has no `:port`, so it never collides
/// with a Service backend (`ns/svc:port`).
pub fn backend_id(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// The ready addresses of the EndpointSlices labelled `sluice.dev/revision: <name>`, each on
/// its slice's first numbered port, sorted and deduplicated.
pub fn process_endpoints(store: &Store, namespace: &str, name: &str) -> Vec<SocketAddr> {
    let mut addresses = BTreeSet::new();
    for slice in store.labelled_endpoint_slices(namespace, REVISION_LABEL, name) {
        let port = slice.ports.iter().find_map(|p| {
            p.port
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| *n > 0)
        });
        let Some(port) = port else { continue };
        let ready = slice
            .endpoints
            .iter()
            .filter(|e| e.conditions.ready != Some(false));
        for address in ready.flat_map(|e| &e.addresses) {
            if let Ok(ip) = address.parse::<IpAddr>() {
                addresses.insert(SocketAddr::new(ip, port));
            }
        }
    }
    addresses.into_iter().collect()
}

// ---------------------------------------------------------------------------------------------
// The autoscaler's view.

/// One Revision the autoscaler loop should run a decider and a scaler for.
#[derive(Clone, Debug, PartialEq)]
pub struct ScalingTarget {
    /// `ns/name`, also the Revision's backend id and `RevisionPolicy::id`.
    pub id: String,
    pub namespace: String,
    pub name: String,
    /// The resolved settings, or why there are none: an invalid `config-autoscaler` (every
    /// target gets that error) or an invalid autoscaling annotation.
    pub scaling: Result<RevisionScaling, String>,
    pub container_concurrency: u32,
    pub timeout_seconds: u64,
    pub backend: ScalingBackend,
}

/// What the scaler scales.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScalingBackend {
    /// Local instances of `command`, each started with `env` plus `PORT`.
    Process {
        command: Vec<String>,
        env: BTreeMap<String, String>,
    },
    /// A Kubernetes Service; `scale_target` is what to scale (None: nothing to scale).
    Service {
        name: String,
        scale_target: Option<ObjectRef>,
    },
    /// In-process: nothing to start, always "ready".
    Responder,
}

/// `config-autoscaler` from `system_namespace`: Knative's defaults when the ConfigMap is
/// absent, the error message (naming the ConfigMap and key) when it is invalid.
pub fn autoscaler_config(
    store: &Store,
    system_namespace: &str,
) -> Result<AutoscalerConfig, String> {
    match store.config_map(system_namespace, CONFIG_NAME) {
        None => Ok(AutoscalerConfig::default()),
        Some(config_map) => AutoscalerConfig::from_data(&config_map.data)
            .map_err(|e| format!("configmap {system_namespace}/{e}")),
    }
}

/// The autoscaler's view of a Revision whose spec is valid (`None` otherwise: nothing to
/// scale). An invalid annotation or `config-autoscaler` is reported in
/// [`ScalingTarget::scaling`] instead.
pub fn scaling_target(
    revision: &Revision,
    config: &Result<AutoscalerConfig, String>,
) -> Option<ScalingTarget> {
    let meta = &revision.metadata;
    let valid = validate_spec(&meta.namespace, &meta.name, &revision.spec).ok()?;
    let cc = valid.policy.container_concurrency;
    let scaling = match config {
        Ok(config) => scaling(revision, cc, config).map_err(|e| e.to_string()),
        Err(message) => Err(message.clone()),
    };
    let backend = match valid.backend {
        RevisionBackend::Service {
            name, scale_target, ..
        } => ScalingBackend::Service { name, scale_target },
        RevisionBackend::Process { command, env } => ScalingBackend::Process { command, env },
        RevisionBackend::Responder(_) => ScalingBackend::Responder,
    };
    Some(ScalingTarget {
        id: backend_id(&meta.namespace, &meta.name),
        namespace: meta.namespace.clone(),
        name: meta.name.clone(),
        scaling,
        container_concurrency: cc,
        timeout_seconds: valid.policy.timeout_seconds,
        backend,
    })
}

#[cfg(test)]
mod tests;
