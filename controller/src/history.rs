//! What the autoscaler loop saw and did, per Revision, for a bounded window: one [`Point`] per
//! second (summed load, ready instances, the replicas asked for, panic mode) and a short log of
//! decisions ("scaled 0 → 1: cold request", "panic: 3 → 7").
//!
//! Everything here is written by the autoscaler loop ([`crate::scaling`]) from what it already
//! reads once a second; nothing is added to the request path. Readers are the admin paths
//! (`/ui/data`, `/revisions/{ns}/{name}/trace.csv`): each takes the one lock briefly and copies
//! out.
//!
//! **Bounds.** A Revision keeps at most `window` seconds of points (`--history-window`,
//! default [`DEFAULT_WINDOW`]: 600 points × 40 bytes = 24,000 bytes, allocated when the Revision
//! is first seen) and the last [`DECISIONS_KEPT`] decisions (32 bytes each, 2,048 bytes): about
//! 26 KiB per Revision, 26 MiB at 1,000 Revisions. A window of 0 keeps nothing. A Revision's
//! history goes when it stops being a scaling target.
//!
//! **Replay.** Seconds count from the moment the loop created the Revision's autoscaler state
//! (second 0), the origin `sluice autoscaler simulate` gives its own decider, and the loop
//! decides at that state's even seconds as the simulator does; so [`History::trace_csv`] fed to
//! `simulate` with the same settings makes the same decisions at the same seconds, as long as
//! the trace starts at second 0 (the window has not wrapped) and no poke decided between two
//! ticks (a poke's load is in the trace; its early decision is not, so a replayed cold start
//! happens at the next even second).

use crate::autoscaler::config::Metric;
use crate::load::Sample;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Default `--history-window`.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(600);

/// Decisions kept per Revision.
pub const DECISIONS_KEPT: usize = 64;

/// One second of one Revision, as the autoscaler loop saw it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Point {
    /// Seconds since the Revision's autoscaler state was created.
    pub second: u64,
    /// Time-weighted average in-flight requests over the second, summed over proxies
    /// (buffered requests included), pokes' load added.
    pub concurrency: f64,
    /// Arrivals per second.
    pub requests: f64,
    /// Requests waiting in the activators when the proxies last reported (inside
    /// `concurrency`).
    pub held: u32,
    /// Ready instances.
    pub ready: u32,
    /// The replicas the autoscaler asks for (what the scaler converges on).
    pub desired: u32,
    pub panicking: bool,
}

/// Why the replicas changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// A request arrived with no instance (a poke).
    ColdRequest,
    /// Decided in panic mode.
    Panic,
    /// Idle: scaled to zero.
    Idle,
    /// The stable window's load.
    Load,
}

/// One entry of the decision log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The autoscaler state was created (first seen, changed settings, a new Lease).
    Started {
        replicas: u32,
    },
    Scaled {
        from: u32,
        to: u32,
        cause: Cause,
    },
    PanicStarted,
    PanicEnded,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Event::Started { replicas } => write!(f, "autoscaling starts at {replicas}"),
            Event::Scaled { from, to, cause } => match cause {
                Cause::ColdRequest => write!(f, "scaled {from} → {to}: cold request"),
                Cause::Panic => write!(f, "panic: {from} → {to}"),
                Cause::Idle => write!(f, "scaled {from} → {to}: idle"),
                Cause::Load => write!(f, "scaled {from} → {to}: load"),
            },
            Event::PanicStarted => f.write_str("panic mode on"),
            Event::PanicEnded => f.write_str("panic mode off"),
        }
    }
}

/// A decision with when it happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// On the Revision's clock (see [`Point::second`]).
    pub second: u64,
    /// Wall clock, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub event: Event,
}

/// One Revision's record.
#[derive(Debug)]
struct Track {
    /// The loop's absolute second that is this Revision's second 0.
    origin: u64,
    /// Wall clock at second 0, milliseconds since the Unix epoch.
    origin_unix_ms: u64,
    metric: Metric,
    points: VecDeque<Point>,
    decisions: VecDeque<Decision>,
    /// The replicas last asked for, and panic mode, to log only changes.
    desired: u32,
    panicking: bool,
}

/// What the loop knows at a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decided {
    pub desired: u32,
    pub panicking: bool,
    /// The decision answered a poke.
    pub poked: bool,
}

/// Every Revision's history, behind one lock (taken once per Revision per second by the loop,
/// and by admin readers).
#[derive(Debug)]
pub struct History {
    window: usize,
    tracks: Mutex<BTreeMap<String, Track>>,
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl History {
    /// Keeps `window` (whole seconds) of points per Revision; zero keeps nothing.
    pub fn new(window: Duration) -> History {
        History {
            window: usize::try_from(window.as_secs()).unwrap_or(usize::MAX),
            tracks: Mutex::new(BTreeMap::new()),
        }
    }

    /// The points kept per Revision.
    pub fn window(&self) -> usize {
        self.window
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Track>> {
        self.tracks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The Revision's autoscaler state was (re)created at the loop's second `second`: its
    /// clock starts again at 0 and earlier points go (they belong to another decider).
    pub fn start(&self, id: &str, metric: Metric, second: u64, wall: SystemTime, replicas: u32) {
        if self.window == 0 {
            return;
        }
        let mut tracks = self.lock();
        let decisions = tracks
            .remove(id)
            .map(|t| t.decisions)
            .unwrap_or_else(|| VecDeque::with_capacity(DECISIONS_KEPT));
        let mut track = Track {
            origin: second,
            origin_unix_ms: unix_ms(wall),
            metric,
            points: VecDeque::with_capacity(self.window),
            decisions,
            desired: replicas,
            panicking: false,
        };
        track.log(0, unix_ms(wall), Event::Started { replicas });
        tracks.insert(id.to_string(), track);
    }

    /// One tick's sample, at the loop's second `second` (after [`History::start`]).
    pub fn record(&self, id: &str, second: u64, sample: Sample, ready: u32) {
        let window = self.window;
        let mut tracks = self.lock();
        let Some(track) = tracks.get_mut(id) else {
            return;
        };
        let point = Point {
            second: second.saturating_sub(track.origin),
            concurrency: sample.concurrency,
            requests: sample.requests,
            held: sample.held,
            ready,
            desired: track.desired,
            panicking: track.panicking,
        };
        match track.points.back_mut() {
            // A poke recorded into this second already: the windows sum both.
            Some(last) if last.second == point.second => {
                last.concurrency += point.concurrency;
                last.requests += point.requests;
                last.held = last.held.max(point.held);
                last.ready = ready;
            }
            _ => {
                if track.points.len() == window {
                    track.points.pop_front();
                }
                track.points.push_back(point);
            }
        }
    }

    /// A decision at the loop's second `second` (after that second's [`History::record`]).
    pub fn decided(&self, id: &str, second: u64, wall: SystemTime, decided: Decided) {
        let mut tracks = self.lock();
        let Some(track) = tracks.get_mut(id) else {
            return;
        };
        let at = second.saturating_sub(track.origin);
        let ms = unix_ms(wall);
        if decided.panicking != track.panicking {
            let event = if decided.panicking {
                Event::PanicStarted
            } else {
                Event::PanicEnded
            };
            track.log(at, ms, event);
        }
        if decided.desired != track.desired {
            let cause = if decided.poked && track.desired == 0 {
                Cause::ColdRequest
            } else if decided.panicking {
                Cause::Panic
            } else if decided.desired == 0 {
                Cause::Idle
            } else {
                Cause::Load
            };
            let event = Event::Scaled {
                from: track.desired,
                to: decided.desired,
                cause,
            };
            track.log(at, ms, event);
        }
        track.desired = decided.desired;
        track.panicking = decided.panicking;
        if let Some(last) = track.points.back_mut().filter(|p| p.second == at) {
            last.desired = decided.desired;
            last.panicking = decided.panicking;
        }
    }

    /// Forgets every Revision `keep` says no to.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.lock().retain(|id, _| keep(id));
    }

    /// Forgets everything (a new Lease: every state starts afresh).
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The Revision's points as `sluice autoscaler simulate --trace` reads them:
    /// `second,concurrency,ready` (see the module docs); `None` for a Revision not tracked.
    pub fn trace_csv(&self, id: &str) -> Option<String> {
        let tracks = self.lock();
        let track = tracks.get(id)?;
        let mut out = String::with_capacity(64 + track.points.len() * 16);
        let _ = writeln!(
            out,
            "# sluice trace of Revision {id}: one line per second of its autoscaler, second 0 = {} ms since the Unix epoch",
            track.origin_unix_ms
        );
        match track.metric {
            Metric::Concurrency => {
                out.push_str("# metric concurrency: the concurrency column is the summed in-flight average\n");
            }
            // simulate records its concurrency column as the request count too.
            Metric::Rps => {
                out.push_str("# metric rps: the concurrency column holds requests per second, which simulate replays for an rps Revision\n");
            }
        }
        if let Some(first) = track.points.front().filter(|p| p.second > 0) {
            let _ = writeln!(
                out,
                "# the window starts at second {}: a replay starts with empty windows there",
                first.second
            );
        }
        out.push_str("second,concurrency,ready\n");
        for p in &track.points {
            let value = match track.metric {
                Metric::Concurrency => p.concurrency,
                Metric::Rps => p.requests,
            };
            // `{}` of an f64 is its shortest exact form: the replay reads the same value.
            let _ = writeln!(out, "{},{},{}", p.second, value, p.ready);
        }
        Some(out)
    }

    /// Every Revision's last `seconds` of points and its decisions, newest last.
    pub fn view(&self, seconds: u64) -> Vec<RevisionHistory> {
        let tracks = self.lock();
        tracks
            .iter()
            .map(|(id, track)| {
                let newest = track.points.back().map_or(0, |p| p.second);
                let from = newest.saturating_sub(seconds.saturating_sub(1));
                let points: Vec<Point> = track
                    .points
                    .iter()
                    .filter(|p| p.second >= from)
                    .copied()
                    .collect();
                RevisionHistory {
                    id: id.clone(),
                    metric: match track.metric {
                        Metric::Concurrency => "concurrency",
                        Metric::Rps => "rps",
                    },
                    origin_unix_ms: track.origin_unix_ms,
                    desired: track.desired,
                    panicking: track.panicking,
                    points,
                    decisions: track
                        .decisions
                        .iter()
                        .map(|d| DecisionView {
                            second: d.second,
                            unix_ms: d.unix_ms,
                            text: d.event.to_string(),
                            event: d.event,
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

impl Track {
    fn log(&mut self, second: u64, unix_ms: u64, event: Event) {
        if self.decisions.len() == DECISIONS_KEPT {
            self.decisions.pop_front();
        }
        self.decisions.push_back(Decision {
            second,
            unix_ms,
            event,
        });
    }
}

/// A Revision's history as the admin JSON shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RevisionHistory {
    /// `ns/name`.
    pub id: String,
    pub metric: &'static str,
    /// Wall clock at second 0, milliseconds since the Unix epoch.
    pub origin_unix_ms: u64,
    pub desired: u32,
    pub panicking: bool,
    pub points: Vec<Point>,
    pub decisions: Vec<DecisionView>,
}

/// A decision as the admin JSON shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DecisionView {
    pub second: u64,
    pub unix_ms: u64,
    /// For people: "scaled 0 → 1: cold request".
    pub text: String,
    pub event: Event,
}

#[cfg(test)]
mod tests;
