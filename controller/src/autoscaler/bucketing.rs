//! Window averages over time buckets, and the sliding maximum behind `scale-down-delay`.
//!
//! - [`TimedBuckets`] is Knative's linear `TimedFloat64Buckets`: a ring of
//!   `ceil(window / granularity)` buckets indexed by `seconds / granularity`. Values recorded in
//!   the same bucket add up. The average is over a *partial* window while the data is younger
//!   than the window (one sample of 10 averages to 10, not 10/60); trailing buckets with no record
//!   since the last write are excluded from the average, while gaps *between* records count as
//!   zeros; a full window without records resets it. Averages are rounded to 6 decimals.
//! - [`WeightedBuckets`] is `WeightedFloat64Buckets`: the newest bucket weighs `α`, each older
//!   one `(1-α)` times less, `α = max(1 - 0.0001^(1/buckets), 0.2)`, not normalised.
//! - [`MaxWindow`] is the "ascending minima" sliding maximum (`max.TimeWindow`).
//!
//! Time is a [`Duration`] since an arbitrary origin; bucket granularity is whole seconds
//! (anything shorter is treated as one second), as Knative's index arithmetic assumes.

use std::cmp::Ordering;
use std::collections::VecDeque;
use std::time::Duration;

/// The smallest decay multiplier of the weighted average.
const MIN_SMOOTHING: f64 = 0.2;
/// The weights of the weighted average should sum to at least this much.
const WEIGHT_PRECISION: f64 = 0.9999;
/// Averages are rounded to this many decimals.
const PRECISION: i32 = 6;

/// Rounds half away from zero to `digits` decimals, as Knative's `roundToNDigits`.
pub fn round_to_digits(digits: i32, value: f64) -> f64 {
    let p = 10f64.powi(digits);
    (value * p).round() / p
}

/// The weighted average's decay multiplier for `buckets` buckets (`computeSmoothingCoeff`).
pub fn smoothing_coefficient(buckets: f64) -> f64 {
    (1.0 - (1.0 - WEIGHT_PRECISION).powf(1.0 / buckets)).max(MIN_SMOOTHING)
}

/// Granularity in whole seconds, at least one.
fn granularity_secs(granularity: Duration) -> u64 {
    granularity.as_secs().max(1)
}

/// `ceil(window / granularity)`, at least one bucket.
fn bucket_count(window: Duration, granularity_secs: u64) -> usize {
    let g = u128::from(granularity_secs) * 1_000_000_000;
    let n = window.as_nanos().div_ceil(g).max(1);
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Linear window average over time buckets (Knative's `TimedFloat64Buckets`).
#[derive(Clone, Debug, PartialEq)]
pub struct TimedBuckets {
    buckets: Vec<f64>,
    granularity: u64,
    window: Duration,
    /// Truncated time of the first write since the last reset.
    first_write: Option<u64>,
    /// Truncated time of the newest write.
    last_write: Option<u64>,
    /// The sum of all buckets.
    window_total: f64,
}

impl TimedBuckets {
    /// `window` split into buckets of `granularity` (rounded up).
    pub fn new(window: Duration, granularity: Duration) -> TimedBuckets {
        let granularity = granularity_secs(granularity);
        TimedBuckets {
            buckets: vec![0.0; bucket_count(window, granularity)],
            granularity,
            window,
            first_write: None,
            last_write: None,
            window_total: 0.0,
        }
    }

    /// `secs` compared with the window length, exactly (the window may have a fraction).
    fn cmp_window(&self, secs: u64) -> Ordering {
        (u128::from(secs) * 1_000_000_000).cmp(&self.window.as_nanos())
    }

    /// `now` truncated to the granularity, in seconds.
    fn truncate(&self, now: Duration) -> u64 {
        let s = now.as_secs();
        s - s % self.granularity
    }

    fn index(&self, secs: u64) -> usize {
        let idx = secs / self.granularity;
        (idx % self.buckets.len() as u64) as usize
    }

    /// True if nothing was recorded for more than a window before `now`.
    pub fn is_empty(&self, now: Duration) -> bool {
        let now = self.truncate(now);
        match self.last_write {
            None => true,
            Some(last) => now
                .checked_sub(last)
                .is_some_and(|silence| self.cmp_window(silence).is_gt()),
        }
    }

    /// Adds `value` to the bucket of `now`. A value older than the window (relative to the
    /// newest write) is dropped; a write after a gap zeroes the skipped buckets; a write a
    /// whole window after the previous one starts afresh.
    pub fn record(&mut self, now: Duration, value: f64) {
        let bucket_time = self.truncate(now);
        match self.last_write.map(|last| (last, bucket_time.cmp(&last))) {
            // The newest bucket again.
            Some((_, Ordering::Equal)) => {}
            // An older bucket: kept while still inside the window, and it may move the start.
            Some((last, Ordering::Less)) => {
                if self.cmp_window(last - bucket_time).is_ge() {
                    return;
                }
                self.first_write =
                    Some(self.first_write.map_or(bucket_time, |f| f.min(bucket_time)));
            }
            // A newer bucket after a gap shorter than the window: the skipped buckets held
            // values from a window ago, so they are zeroed.
            Some((last, Ordering::Greater)) if self.cmp_window(bucket_time - last).is_lt() => {
                let from = last / self.granularity + 1;
                let to = bucket_time / self.granularity;
                for i in from..=to {
                    let idx = (i % self.buckets.len() as u64) as usize;
                    self.window_total -= self.buckets[idx];
                    self.buckets[idx] = 0.0;
                }
                self.last_write = Some(bucket_time);
            }
            // The first write, or one a whole window after the last: start afresh.
            None | Some((_, Ordering::Greater)) => {
                self.first_write = Some(bucket_time);
                self.buckets.iter_mut().for_each(|b| *b = 0.0);
                self.window_total = 0.0;
                self.last_write = Some(bucket_time);
            }
        }
        let idx = self.index(now.as_secs());
        self.buckets[idx] += value;
        self.window_total += value;
    }

    /// The average bucket value over the window at `now`, rounded to 6 decimals.
    pub fn window_average(&self, now: Duration) -> f64 {
        let (Some(last), Some(first)) = (self.last_write, self.first_write) else {
            return 0.0;
        };
        let now = self.truncate(now);
        let len = self.buckets.len() as u64;
        let written = (last - first) / self.granularity + 1;
        if now <= last {
            let n = written.min(len);
            return round_to_digits(PRECISION, self.window_total / n as f64);
        }
        if self.cmp_window(now - last).is_ge() {
            return 0.0;
        }
        let start = last / self.granularity;
        let end = now / self.granularity;
        let mut total = self.window_total;
        for i in start + 1..=end {
            total -= self.buckets[(i % len) as usize];
        }
        let n = written.min(len.saturating_sub(end - start)).max(1);
        round_to_digits(PRECISION, total / n as f64)
    }
}

/// Weighted-exponential window average (Knative's `WeightedFloat64Buckets`).
#[derive(Clone, Debug, PartialEq)]
pub struct WeightedBuckets {
    inner: TimedBuckets,
    smoothing: f64,
}

impl WeightedBuckets {
    /// `window` split into buckets of `granularity`; the decay follows from the bucket count.
    pub fn new(window: Duration, granularity: Duration) -> WeightedBuckets {
        let inner = TimedBuckets::new(window, granularity);
        let smoothing = smoothing_coefficient(inner.buckets.len() as f64);
        WeightedBuckets { inner, smoothing }
    }

    /// The decay multiplier `α`.
    pub fn smoothing(&self) -> f64 {
        self.smoothing
    }

    pub fn is_empty(&self, now: Duration) -> bool {
        self.inner.is_empty(now)
    }

    /// Same bucketing as [`TimedBuckets::record`].
    pub fn record(&mut self, now: Duration, value: f64) {
        self.inner.record(now, value);
    }

    /// `Σ bucket[newest - i] · α(1-α)^(i + empty)`, where `empty` counts the buckets between the
    /// last write and `now`; 0 once a window has passed without records. Not rounded.
    pub fn window_average(&self, now: Duration) -> f64 {
        let t = &self.inner;
        if t.is_empty(now) {
            return 0.0;
        }
        let Some(last) = t.last_write else {
            return 0.0;
        };
        let now = t.truncate(now);
        let total = t.buckets.len();
        // The buckets between the last write and `now` hold nothing: they only decay the rest,
        // and push as many of the oldest out of the window.
        let empty = now.saturating_sub(last) / t.granularity;
        let mut multiplier = self.smoothing * (1.0 - self.smoothing).powf(empty as f64);
        let count = total.saturating_sub(usize::try_from(empty).unwrap_or(usize::MAX));
        let newest = t.index(last);
        let mut sum = 0.0;
        // Newest first; `i < count <= total`, so the walk back wraps the ring at most once.
        for i in 0..count {
            let idx = (newest + total - i) % total;
            sum += t.buckets[idx] * multiplier;
            multiplier *= 1.0 - self.smoothing;
        }
        sum
    }
}

/// The sliding maximum of integer values over a time window (Knative's `max.TimeWindow`), used
/// to hold scale-downs for `scale-down-delay`: `current()` is the largest value recorded within
/// the last `ceil(duration / granularity)` buckets.
#[derive(Clone, Debug, PartialEq)]
pub struct MaxWindow {
    duration: Duration,
    granularity: u64,
    size: u64,
    /// (bucket index, value), indices ascending, values descending.
    maxima: VecDeque<(u64, i32)>,
}

impl MaxWindow {
    pub fn new(duration: Duration, granularity: Duration) -> MaxWindow {
        let granularity = granularity_secs(granularity);
        let size = bucket_count(duration, granularity) as u64;
        MaxWindow {
            duration,
            granularity,
            size,
            maxima: VecDeque::new(),
        }
    }

    /// The window length it was built for.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// Records `value` in the bucket of `now` (times must not go backwards).
    pub fn record(&mut self, now: Duration, value: i32) {
        self.record_at(now.as_secs() / self.granularity, value);
    }

    fn record_at(&mut self, index: u64, value: i32) {
        let mut value = value;
        // Older values no larger than this one can never be the maximum again.
        while self.maxima.back().is_some_and(|&(_, v)| v <= value) {
            self.maxima.pop_back();
        }
        // Values that slid out of the window.
        while self
            .maxima
            .front()
            .is_some_and(|&(i, _)| index.saturating_sub(i) >= self.size)
        {
            self.maxima.pop_front();
        }
        // Two values for one bucket: keep the larger.
        if let Some(&(i, v)) = self.maxima.back() {
            if i == index {
                value = value.max(v);
                self.maxima.pop_back();
            }
        }
        self.maxima.push_back((index, value));
    }

    /// The maximum over the window (0 before anything was recorded).
    pub fn current(&self) -> i32 {
        self.maxima.front().map_or(0, |&(_, v)| v)
    }
}

#[cfg(test)]
mod tests;
