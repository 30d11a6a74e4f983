//! Scalers: what turns the autoscaler's replica count into running instances.
//!
//! [`Scaler`] is async and fallible, so a scale write that fails (a process that cannot start,
//! later a Kubernetes scale subresource that refuses) becomes the Revision's condition instead
//! of a log line. [`crate::local::LocalProcesses`] runs `spec.process` Revisions on this
//! machine; [`ObservedService`] stands in for `spec.service` Revisions until the Kubernetes
//! scaler exists.

use crate::revision::ScalingTarget;
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use tracing::info;

/// A scale write that failed.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error("revision {revision}: cannot start an instance: {reason}")]
    Start { revision: String, reason: String },
    #[error("revision {revision}: {reason}")]
    Unsupported { revision: String, reason: String },
    #[error("revision {revision}: cannot scale {target}: {reason}")]
    Write {
        revision: String,
        /// `apiVersion kind ns/name` of the scale target.
        target: String,
        reason: String,
    },
}

/// Turns a replica count into running instances of a Revision.
#[async_trait]
pub trait Scaler: Send + Sync {
    /// Starts or stops instances so that `replicas` are starting or ready.
    async fn scale(&self, target: &ScalingTarget, replicas: u32) -> Result<(), ScaleError>;
    /// Instances that are ready to serve.
    fn ready(&self, target: &ScalingTarget) -> u32;
    /// Instances starting or ready (what a scale request is compared against).
    fn running(&self, target: &ScalingTarget) -> u32;
}

/// `spec.service` Revisions without a cluster: their instances are the Service's endpoints,
/// which something else runs. Scale requests are logged, once per change, and not acted on.
/// `ready` is the endpoint count the autoscaler passes in.
#[derive(Default)]
pub struct ObservedService {
    last_request: Mutex<HashMap<String, u32>>,
}

impl ObservedService {
    /// Records a scale request; true if it differs from the last one for this Revision.
    pub fn requested(&self, target: &ScalingTarget, replicas: u32) -> bool {
        let mut last = self.last_request.lock().unwrap_or_else(|p| p.into_inner());
        let changed = last.insert(target.id.clone(), replicas) != Some(replicas);
        if changed {
            info!(revision = %target.id, replicas, "service revision: no scaler without a cluster; not scaling");
        }
        changed
    }
}
