//! `Server-Timing` for responses that waited in the activator (W3C Server Timing): how long
//! the request was held and, when it arrived at a revision with no instance, how much of that
//! was the cold start. A browser's devtools show both beside the request.
//!
//! Only held requests reach this module: the direct path reads no clock and builds nothing.
//! The entries are appended to an upstream's own `Server-Timing`, never replace it.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use std::fmt::Write as _;
use std::time::Duration;

pub static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// Metric name of the time a request was held in the activator.
pub const ACTIVATOR: &str = "activator";
/// Metric name of the part of that time spent waiting for a first instance.
pub const COLD_START: &str = "cold-start";

/// What a held request waited for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    /// From the first place in line to a slot (or to giving up).
    pub waited: Duration,
    /// The revision had no instance when the request arrived: from its place in line until
    /// the first instance was ready (the whole wait if none came).
    pub cold_start: Option<Duration>,
}

impl Held {
    /// `activator;dur=812.3` and, for a cold start, `, cold-start;dur=805.1` (milliseconds).
    pub fn header_value(&self) -> HeaderValue {
        let mut out = String::with_capacity(48);
        entry(&mut out, ACTIVATOR, self.waited);
        if let Some(cold) = self.cold_start {
            out.push_str(", ");
            entry(&mut out, COLD_START, cold);
        }
        HeaderValue::from_str(&out).expect("metric names and numbers are valid header text")
    }

    /// Adds the entries to `headers`, after any `Server-Timing` already there (an upstream's).
    pub fn append_to(&self, headers: &mut HeaderMap) {
        crate::forward::append_list(headers, &SERVER_TIMING, &self.header_value());
    }
}

/// `name;dur=<ms>` with at most one decimal (`812.3`, `12`), as the spec's `dur` is a number
/// of milliseconds.
fn entry(out: &mut String, name: &str, duration: Duration) {
    let tenths = (duration.as_micros() + 50) / 100;
    let (whole, tenth) = (tenths / 10, tenths % 10);
    let _ = if tenth == 0 {
        write!(out, "{name};dur={whole}")
    } else {
        write!(out, "{name};dur={whole}.{tenth}")
    };
}

#[cfg(test)]
mod tests;
