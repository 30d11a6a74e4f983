//! Summing the proxies' load reports into one sample per Revision per second, for the KPA.
//!
//! Every proxy reports once a second ([`sluice_xds::load::LoadReport`]): per Revision, its
//! time-weighted average concurrency (buffered requests included) and its arrivals. Each
//! second [`LoadAggregator::collect`] sums, per Revision, one figure per proxy:
//! - a proxy that reported since the last collect contributes those reports (several are
//!   merged: concurrency weighted by interval, arrivals as a per-second rate);
//! - a proxy that is **late** (no report since the last collect, but one within
//!   [`LoadAggregator::gone_after`]) contributes its last figures again, so one slow report
//!   does not look like a drop in load;
//! - a proxy that is **gone** (disconnected, or silent for longer) contributes nothing;
//!   a proxy that comes back counts again from its next report.
//!
//! Time is passed in, so the rules are table-tested on paused tokio time.

use sluice_xds::load::LoadReport;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// One Revision's summed load over a second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sample {
    pub concurrency: f64,
    /// Arrivals per second.
    pub requests: f64,
    /// Requests waiting in the activators when the proxies last reported (inside
    /// `concurrency`); for `/ui` only.
    pub held: u32,
}

#[derive(Debug)]
struct ProxyLoad {
    /// Reports since the last collect.
    fresh: Vec<LoadReport>,
    /// What it contributed at the last collect with fresh reports.
    last: BTreeMap<String, Sample>,
    last_report: Instant,
}

#[derive(Debug)]
pub struct LoadAggregator {
    proxies: BTreeMap<u64, ProxyLoad>,
    gone_after: Duration,
}

impl Default for LoadAggregator {
    fn default() -> Self {
        LoadAggregator::new(Duration::from_secs(3))
    }
}

impl LoadAggregator {
    /// A proxy silent for longer than `gone_after` no longer counts.
    pub fn new(gone_after: Duration) -> Self {
        LoadAggregator {
            proxies: BTreeMap::new(),
            gone_after,
        }
    }

    pub fn gone_after(&self) -> Duration {
        self.gone_after
    }

    /// A report from the proxy on stream `session`.
    pub fn report(&mut self, session: u64, report: LoadReport, now: Instant) {
        let proxy = self.proxies.entry(session).or_insert_with(|| ProxyLoad {
            fresh: Vec::new(),
            last: BTreeMap::new(),
            last_report: now,
        });
        proxy.last_report = now;
        proxy.fresh.push(report);
    }

    /// The proxy's stream ended: it no longer counts.
    pub fn disconnected(&mut self, session: u64) {
        self.proxies.remove(&session);
    }

    /// The proxies that count right now.
    pub fn proxies(&self) -> usize {
        self.proxies.len()
    }

    /// The summed load per Revision since the last call.
    pub fn collect(&mut self, now: Instant) -> BTreeMap<String, Sample> {
        let gone_after = self.gone_after;
        self.proxies
            .retain(|_, proxy| now.saturating_duration_since(proxy.last_report) <= gone_after);
        let mut total: BTreeMap<String, Sample> = BTreeMap::new();
        for proxy in self.proxies.values_mut() {
            if !proxy.fresh.is_empty() {
                proxy.last = merge(&std::mem::take(&mut proxy.fresh));
            }
            for (revision, sample) in &proxy.last {
                let sum = total.entry(revision.clone()).or_default();
                sum.concurrency += sample.concurrency;
                sum.requests += sample.requests;
                sum.held = sum.held.saturating_add(sample.held);
            }
        }
        total
    }
}

/// One proxy's reports since the last collect, as one figure per Revision.
fn merge(reports: &[LoadReport]) -> BTreeMap<String, Sample> {
    let interval_ms: u64 = reports.iter().map(|r| r.interval_ms.max(1)).sum();
    let seconds = interval_ms as f64 / 1000.0;
    let mut merged: BTreeMap<String, Sample> = BTreeMap::new();
    for report in reports {
        let weight = report.interval_ms.max(1) as f64 / interval_ms as f64;
        for load in &report.revisions {
            let sample = merged.entry(load.revision.clone()).or_default();
            sample.concurrency += load.concurrency * weight;
            sample.requests += load.requests;
        }
    }
    for sample in merged.values_mut() {
        sample.requests /= seconds.max(f64::EPSILON);
    }
    // Held is a count at report time: the newest report's (a Revision it leaves out had none).
    if let Some(newest) = reports.last() {
        for load in &newest.revisions {
            if let Some(sample) = merged.get_mut(&load.revision) {
                sample.held = load.held;
            }
        }
    }
    merged
}

#[cfg(test)]
mod tests;
