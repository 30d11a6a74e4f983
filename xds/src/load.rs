//! What the data plane tells the control plane about traffic: per-second load per Revision,
//! and pokes for Revisions at zero.

/// One Revision's traffic at one proxy over one interval.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RevisionLoad {
    /// The Revision, `ns/name`.
    pub revision: String,
    /// Time-weighted average concurrency over the interval, buffered requests included.
    pub concurrency: f64,
    /// Arrivals in the interval.
    pub requests: f64,
    /// Requests waiting in the activator's queue when the report was taken (counted in
    /// `concurrency` too); shown on `/ui`, not used for scaling.
    pub held: u32,
}

/// One proxy's report for one interval (about a second). Revisions without traffic in the
/// interval are left out: a report lists every Revision with load, so a missing one had none.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// The interval the report covers, in milliseconds.
    pub interval_ms: u64,
    pub revisions: Vec<RevisionLoad>,
}

/// Requests arrived for Revisions with no instance at all: decide now, not at the next tick.
/// Each entry's `concurrency` is the Revision's current concurrency at that proxy (buffered
/// requests included) and `requests` the arrivals since the last report.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Poke {
    pub revisions: Vec<RevisionLoad>,
}
