//! Leader election on a `coordination.k8s.io/v1` Lease, with client-go's semantics.
//!
//! - A candidate takes a Lease that is missing (create; `AlreadyExists` means it lost), free
//!   (no holder), its own, or expired; it writes with the `resourceVersion` it just read, so
//!   of two candidates racing only one write succeeds (409 for the other).
//! - Expiry uses the candidate's own clock: the Lease is expired once the record it saw has not
//!   changed for `lease_duration`. `renewTime` is never compared across clocks.
//! - The leader renews every `retry_period`; one that cannot renew within `renew_deadline`
//!   stops acting as leader (there is no fencing), as does one that finds another holder.
//! - On shutdown the leader releases the Lease (no holder, `leaseDurationSeconds: 1`), so a
//!   standby takes over within one `retry_period` instead of a whole `lease_duration`.
//!
//! Defaults: 10 s lease, 7 s renew deadline, 2 s retry. client-go's are 15/10/2, which after a
//! crash fail over in up to lease + 1.2 × retry = 17.4 s; 10 s keeps that at 12.4 s, within
//! the 15 s goal with room for a slow API server, while holding client-go's ratios (lease >
//! renew deadline > 1.2 × retry).

use async_trait::async_trait;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Timing of the election.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseSettings {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl Default for LeaseSettings {
    fn default() -> Self {
        LeaseSettings {
            lease_duration: Duration::from_secs(10),
            renew_deadline: Duration::from_secs(7),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Settings client-go would refuse.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("lease timing: want lease duration ({lease:?}) > renew deadline ({renew:?}) > 1.2 × retry period ({retry:?})")]
pub struct InvalidLeaseSettings {
    lease: Duration,
    renew: Duration,
    retry: Duration,
}

impl LeaseSettings {
    pub fn validate(self) -> Result<LeaseSettings, InvalidLeaseSettings> {
        let ok = self.lease_duration > self.renew_deadline
            && self.renew_deadline.as_secs_f64() > 1.2 * self.retry_period.as_secs_f64()
            && !self.retry_period.is_zero();
        if ok {
            Ok(self)
        } else {
            Err(InvalidLeaseSettings {
                lease: self.lease_duration,
                renew: self.renew_deadline,
                retry: self.retry_period,
            })
        }
    }
}

/// The outcome of a conditional write.
#[derive(Debug, PartialEq, Eq)]
pub enum Write {
    Done,
    /// 409: someone else wrote first (or created it first).
    Conflict,
}

/// The one Lease object, as the elector reads and writes it.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    async fn get(&self) -> Result<Option<Lease>, String>;
    async fn create(&self, lease: &Lease) -> Result<Write, String>;
    /// A PUT carrying `lease.metadata.resourceVersion` as its precondition.
    async fn replace(&self, lease: &Lease) -> Result<Write, String>;
}

/// The Lease through the Kubernetes API.
pub struct ApiLease {
    api: kube::Api<Lease>,
    name: String,
}

impl ApiLease {
    pub fn new(client: kube::Client, namespace: &str, name: &str) -> Self {
        ApiLease {
            api: kube::Api::namespaced(client, namespace),
            name: name.to_string(),
        }
    }
}

fn write_outcome(result: Result<Lease, kube::Error>) -> Result<Write, String> {
    match result {
        Ok(_) => Ok(Write::Done),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Write::Conflict),
        Err(error) => Err(error.to_string()),
    }
}

#[async_trait]
impl LeaseStore for ApiLease {
    async fn get(&self) -> Result<Option<Lease>, String> {
        self.api
            .get_opt(&self.name)
            .await
            .map_err(|e| e.to_string())
    }

    async fn create(&self, lease: &Lease) -> Result<Write, String> {
        write_outcome(self.api.create(&Default::default(), lease).await)
    }

    async fn replace(&self, lease: &Lease) -> Result<Write, String> {
        write_outcome(
            self.api
                .replace(&self.name, &Default::default(), lease)
                .await,
        )
    }
}

/// What the candidate last saw of the Lease, and when (on its own clock).
#[derive(Clone, Debug, PartialEq)]
struct Observed {
    record: LeaseSpec,
    at: Instant,
}

/// One candidate.
pub struct Elector {
    store: Box<dyn LeaseStore>,
    name: String,
    identity: String,
    settings: LeaseSettings,
    observed: Option<Observed>,
}

impl Elector {
    pub fn new(
        store: Box<dyn LeaseStore>,
        name: &str,
        identity: &str,
        settings: LeaseSettings,
    ) -> Self {
        Elector {
            store,
            name: name.to_string(),
            identity: identity.to_string(),
            settings,
            observed: None,
        }
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.settings.lease_duration.as_secs().max(1)).unwrap_or(i32::MAX)
    }

    /// One attempt to take or keep the Lease: true if this candidate holds it afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, String> {
        let now = Instant::now();
        let stamp = Some(MicroTime(Timestamp::now()));
        let Some(current) = self.store.get().await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds()),
                    acquire_time: stamp.clone(),
                    renew_time: stamp,
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return Ok(self.store.create(&lease).await? == Write::Done);
        };
        let record = current.spec.clone().unwrap_or_default();
        if self.observed.as_ref().map(|o| &o.record) != Some(&record) {
            self.observed = Some(Observed {
                record: record.clone(),
                at: now,
            });
        }
        let holder = record.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.identity;
        let held_for = record
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.settings.lease_duration, Duration::from_secs);
        let seen_at = self.observed.as_ref().map_or(now, |o| o.at);
        if !holder.is_empty() && !mine && now < seen_at + held_for {
            return Ok(false);
        }
        let transitions = record.lease_transitions.unwrap_or(0);
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(self.duration_seconds()),
                acquire_time: if mine {
                    record.acquire_time.clone()
                } else {
                    stamp.clone()
                },
                renew_time: stamp,
                lease_transitions: Some(if mine {
                    transitions
                } else {
                    transitions.saturating_add(1)
                }),
                ..record
            }),
        };
        Ok(self.store.replace(&lease).await? == Write::Done)
    }

    /// Gives the Lease up if this candidate holds it.
    pub async fn release(&mut self) -> Result<(), String> {
        let Some(current) = self.store.get().await? else {
            return Ok(());
        };
        let record = current.spec.clone().unwrap_or_default();
        if record.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        let lease = Lease {
            metadata: current.metadata.clone(),
            spec: Some(LeaseSpec {
                holder_identity: None,
                lease_duration_seconds: Some(1),
                renew_time: Some(MicroTime(Timestamp::now())),
                ..record
            }),
        };
        self.store.replace(&lease).await.map(|_| ())
    }

    /// Campaigns until `shutdown`, publishing leadership on `leader`; releases the Lease on
    /// the way out.
    pub async fn run(mut self, leader: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            let attempt = self.try_acquire_or_renew().await;
            let now = Instant::now();
            let leading = match attempt {
                Ok(true) => {
                    last_renewed = Some(now);
                    true
                }
                // Someone else holds it.
                Ok(false) => false,
                Err(error) => {
                    warn!(lease = %self.name, %error, "lease: cannot read or write");
                    // Keep acting only while the renew deadline allows.
                    last_renewed.is_some_and(|at| now < at + self.settings.renew_deadline)
                }
            };
            if !leading {
                last_renewed = None;
            }
            leader.send_if_modified(|current| {
                let changed = *current != leading;
                if changed {
                    info!(lease = %self.name, identity = %self.identity, leading, "leadership changed");
                }
                *current = leading;
                changed
            });
            // Spread retries over [retry, 1.2 × retry), as client-go's jitter does.
            let jitter = self.settings.retry_period.mul_f64(0.2 * fastrand::f64());
            tokio::select! {
                _ = tokio::time::sleep(self.settings.retry_period + jitter) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if *leader.borrow() {
            leader.send_replace(false);
            if let Err(error) = self.release().await {
                warn!(lease = %self.name, %error, "lease: cannot release");
            }
        }
    }
}

#[cfg(test)]
mod tests;
