use super::*;
use std::collections::BTreeMap;

const SEC: Duration = Duration::from_secs(1);

/// (name, granularity seconds, records, wanted non-empty buckets).
type BucketCase<'a> = (&'a str, u64, &'a [(Duration, f64)], &'a [(i64, f64)]);
/// (name, records, wanted maximum).
type MaxCase<'a> = (&'a str, &'a [(Duration, i32)], i32);

fn at(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// Knative's test-only `forEachBucket`: (bucket time, value) from the newest bucket back over
/// the part of the ring that is still inside the window at `now`.
fn buckets_at(b: &TimedBuckets, now: Duration) -> Vec<(i64, f64)> {
    let Some(last) = b.last_write else {
        return Vec::new();
    };
    let now = b.truncate(now) as i64;
    let g = b.granularity as i64;
    let len = b.buckets.len() as i64;
    let count = len - (now - last as i64) / g;
    let mut out = Vec::new();
    let mut time = last as i64;
    let mut index = last as i64 / g;
    for _ in 0..count.max(0) {
        out.push((time, b.buckets[index.rem_euclid(len) as usize]));
        index -= 1;
        time -= g;
    }
    out
}

fn sum_at(b: &TimedBuckets, now: Duration) -> f64 {
    buckets_at(b, now).iter().map(|(_, v)| v).sum()
}

/// Knative `TestComputeDecayMultiplier`.
#[test]
fn decay_multiplier_depends_on_bucket_count() {
    for (buckets, want) in [(100.0, 0.2), (60.0, 0.2), (40.0, 0.20567), (6.0, 0.784557)] {
        let got = smoothing_coefficient(buckets);
        assert!((got - want).abs() < 1e-5, "{buckets} buckets: {got}");
    }
}

/// Knative `TestTimedFloat64BucketsSimple`.
#[test]
fn values_in_one_bucket_add_up() {
    let t = 1000;
    let cases: &[BucketCase<'_>] = &[
        (
            "granularity = 1s",
            1,
            &[
                (at(t), 1.0),
                (at(t) + Duration::from_millis(100), 10.0),
                (at(t + 1), 1.0),
                (at(t + 3), 1.0),
            ],
            &[(1000, 11.0), (1001, 1.0), (1003, 1.0)],
        ),
        (
            "granularity = 5s",
            5,
            &[(at(t), 1.0), (at(t + 3), 11.0), (at(t + 6), 1.0)],
            &[(1000, 12.0), (1005, 1.0)],
        ),
        ("empty", 1, &[], &[]),
    ];
    for &(name, granularity, stats, want) in cases {
        let mut b = TimedBuckets::new(Duration::from_secs(120), at(granularity));
        assert!(b.is_empty(at(t)), "{name}");
        for &(time, value) in stats {
            b.record(time, value);
        }
        let got: BTreeMap<i64, f64> = buckets_at(&b, at(t + 60))
            .into_iter()
            .filter(|&(_, v)| v > 0.0)
            .collect();
        let want: BTreeMap<i64, f64> = want.iter().copied().collect();
        assert_eq!(got, want, "{name}");
    }
}

/// Knative `TestTimedFloat64BucketsManyReps`.
#[test]
fn many_records_per_bucket_sum() {
    let mut b = TimedBuckets::new(Duration::from_secs(60), SEC);
    let mut now = at(500);
    for p in 0..5 {
        now += SEC;
        for t in 0..5 {
            b.record(now, f64::from(p + t));
        }
    }
    assert_eq!(sum_at(&b, now), 100.0);
    assert_eq!(sum_at(&b, now), 100.0);
}

/// Knative `TestTimedFloat64BucketsManyRepsWithNonMonotonicalOrder`.
#[test]
fn out_of_order_records_within_the_window_count() {
    let start = at(500);
    let mut end = start;
    let mut b = TimedBuckets::new(Duration::from_secs(60), SEC);
    for (p, d) in [0u64, 3, 2, 1, 4].into_iter().enumerate() {
        end = start + at(d);
        for t in 0..5 {
            b.record(end, (p + t) as f64);
        }
    }
    assert_eq!(sum_at(&b, end), 100.0);
    assert_eq!(sum_at(&b, end), 100.0);
}

/// Knative `TestTimedFloat64BucketsWeightedAverage`.
#[test]
fn weighted_average_decays_exponentially() {
    let now = at(700);
    let mut b = WeightedBuckets::new(Duration::from_secs(5), SEC);
    b.record(now, 2.0);
    let m = b.smoothing();
    let mut want = 2.0 * m;
    assert_eq!(b.window_average(now), want);

    // A second later with no write: one more decay step.
    want *= 1.0 - m;
    assert_eq!(b.window_average(now + SEC), want);

    b.record(now + SEC, 2.0);
    want += 2.0 * m;
    assert_eq!(b.window_average(now + SEC), want);

    // Fill the window with [2, 3, 4, 5, 6].
    for i in 0..5u32 {
        b.record(now + SEC * (2 + i), f64::from(i + 2));
    }
    let want = 6.0 * m
        + 5.0 * m * (1.0 - m)
        + 4.0 * m * (1.0 - m) * (1.0 - m)
        + 3.0 * m * (1.0 - m) * (1.0 - m) * (1.0 - m)
        + 2.0 * m * (1.0 - m) * (1.0 - m) * (1.0 - m) * (1.0 - m);
    assert!((b.window_average(now + SEC * 6) - want).abs() < 1e-12);

    // An empty window.
    assert_eq!(b.window_average(now + SEC * 16), 0.0);
}

/// Knative `TestWeightedFloat64BucketsResizeWindow`, before the resize.
#[test]
fn weighted_average_over_a_full_ring() {
    let start = at(50);
    let mut b = WeightedBuckets::new(Duration::from_secs(5), SEC);
    for i in 0..6u32 {
        b.record(start + SEC * i, f64::from(i + 1));
    }
    let now = start + SEC * 5;
    assert_eq!(sum_at(&b.inner, now), 2.0 + 3.0 + 4.0 + 5.0 + 6.0);
    assert_eq!(round_to_digits(3, b.window_average(now)), 5.812);
}

/// Knative `TestTimedFloat64BucketsResizeWindow`, before the resize.
#[test]
fn linear_average_over_a_full_ring() {
    let start = at(50);
    let mut b = TimedBuckets::new(Duration::from_secs(5), SEC);
    for i in 0..6u32 {
        b.record(start + SEC * i, f64::from(i + 1));
    }
    let now = start + SEC * 5;
    assert_eq!(sum_at(&b, now), 20.0);
    assert_eq!(b.window_average(now), 4.0);
}

/// Knative `TestTimedFloat64BucketsWindowAverage`: partial windows, lagging reads, trailing
/// gaps, holes, resets, late records and too-old records.
#[test]
fn linear_average_handles_partial_windows_and_gaps() {
    let mut now = at(1000);
    let mut b = TimedBuckets::new(Duration::from_secs(5), SEC);

    // A single sample averages to itself, not to a fifth of it.
    b.record(now, 1.0);
    assert_eq!(b.window_average(now), 1.0);
    for i in 1..5u32 {
        b.record(now + SEC * i, f64::from(i + 1));
    }
    assert_eq!(b.window_average(now + SEC * 4), 15.0 / 5.0);
    // Reading behind the last write.
    assert_eq!(
        b.window_average(now + Duration::from_millis(3600)),
        15.0 / 5.0
    );
    // A short trailing gap drops the expired buckets and shrinks the divisor.
    assert_eq!(
        b.window_average(now + SEC * 6),
        (15.0 - 1.0 - 2.0) / (5.0 - 2.0)
    );
    // A gap of a whole window.
    assert_eq!(b.window_average(now + SEC * 10), 0.0);
    // A write after a hole: the hole counts as zeros.
    b.record(now + SEC * 6, 91.0);
    assert_eq!(
        b.window_average(now + SEC * 6),
        (15.0 - 1.0 - 2.0 + 91.0) / 5.0
    );

    // Much later: the window starts afresh.
    now += Duration::from_secs(60);
    b.record(now, 1984.0);
    assert_eq!(b.window_average(now), 1984.0);
    // An earlier record inside the window extends the partial window.
    b.record(now - SEC * 3, 4.0);
    assert_eq!(b.window_average(now), (4.0 + 1984.0) / 4.0);
    now += SEC;
    b.record(now, 5.0);
    assert_eq!(b.window_average(now), (4.0 + 1984.0 + 5.0) / 5.0);
    b.record(now - SEC * 3, 10.0);
    assert_eq!(b.window_average(now), (4.0 + 10.0 + 1984.0 + 5.0) / 5.0);
    // Too early: dropped.
    b.record(now - SEC * 6, 10.0);
    assert_eq!(b.window_average(now), (4.0 + 10.0 + 1984.0 + 5.0) / 5.0);
    // Exactly a window early: dropped too.
    b.record(now - SEC * 5, 10.0);
    assert_eq!(b.window_average(now), (4.0 + 10.0 + 1984.0 + 5.0) / 5.0);
    // Exactly a window of silence resets.
    b.record(now + SEC * 5, 10.0);
    assert_eq!(b.window_average(now + SEC * 5), 10.0);
}

/// Knative `TestDescendingRecord`.
#[test]
fn descending_records_fill_the_window() {
    let now = at(300);
    let mut b = TimedBuckets::new(Duration::from_secs(5), SEC);
    for i in (0..=8u32).rev() {
        b.record(now + SEC * i, 5.0);
    }
    assert_eq!(b.window_average(now + SEC * 5), 5.0);
}

/// Knative `TestTimedFloat64BucketsHoles`.
#[test]
fn a_write_after_a_hole_zeroes_the_skipped_buckets() {
    let now = at(300);
    let mut b = TimedBuckets::new(Duration::from_secs(5), SEC);
    for i in 0..5u32 {
        b.record(now + SEC * i, f64::from(i + 1));
    }
    assert_eq!(sum_at(&b, now + SEC * 4), 15.0);
    assert_eq!(b.window_average(now + SEC * 4), 15.0 / 5.0);
    b.record(now + SEC * 8, 2.0);
    assert_eq!(sum_at(&b, now + SEC * 8), 7.0);
}

/// Knative `TestTimedFloat64BucketsWindowUpdate3sGranularity`, before the resize.
#[test]
fn coarse_granularity_buckets_round_the_window_up() {
    let t = 999; // a multiple of 3
    let mut b = TimedBuckets::new(Duration::from_secs(5), at(3));
    assert_eq!(b.buckets.len(), 2);
    for (offset, value) in [
        (0, 10.0),
        (1, 2.0),
        (2, 3.0),
        (3, 4.0),
        (4, 5.0),
        (5, 6.0),
        (6, 7.0),
    ] {
        b.record(at(t + offset), value);
    }
    assert_eq!(sum_at(&b, at(t + 6)), 4.0 + 5.0 + 6.0 + 7.0);
}

/// Knative `TestRoundToNDigits`.
#[test]
fn rounding_to_digits() {
    assert_eq!(round_to_digits(6, 3.6e-17), 0.0);
    assert_eq!(round_to_digits(3, -3.6e-17), 0.0);
    assert_eq!(round_to_digits(3, 0.0004), 0.0);
    assert_eq!(round_to_digits(3, 1.2345), 1.235);
    assert_eq!(round_to_digits(4, 1.2345), 1.2345);
    assert_eq!(round_to_digits(6, 12345.0), 12345.0);
}

#[test]
fn average_holds_until_a_window_of_silence_then_drops_to_zero() {
    // Reference scenario: a reporter that goes silent keeps the last average (trailing gaps
    // are excluded), until a whole window has passed.
    let mut b = TimedBuckets::new(Duration::from_secs(60), SEC);
    for s in 1..=10 {
        b.record(at(s), 10.0);
    }
    assert_eq!(b.window_average(at(10)), 10.0);
    assert_eq!(b.window_average(at(40)), 10.0);
    assert_eq!(b.window_average(at(69)), 10.0);
    assert_eq!(b.window_average(at(70)), 0.0);
    // With explicit zeros the average decays linearly instead.
    let mut z = TimedBuckets::new(Duration::from_secs(60), SEC);
    for s in 1..=60 {
        z.record(at(s), 10.0);
    }
    for s in 61..=90 {
        z.record(at(s), 0.0);
    }
    assert_eq!(z.window_average(at(90)), 5.0);
}

/// Knative `TestWindowMax` (max/window_test.go), on a 5-bucket window.
#[test]
fn sliding_max_over_indices() {
    let same = |_: u64| 1;
    let gaps = |i: u64| if i >= 3 { i + 3 } else { i };
    let id = |i: u64| i;
    type Case = (&'static str, &'static [i32], fn(u64) -> u64, &'static [i32]);
    let cases: &[Case] = &[
        ("single value", &[1], id, &[1]),
        ("ascending values", &[1, 2], id, &[1, 2]),
        ("descending values", &[2, 1], id, &[2, 2]),
        ("up, down, up", &[1, 2, 1], id, &[1, 2, 2]),
        (
            "windowing out",
            &[5, 6, 5, 5, 5, 5, 5],
            id,
            &[5, 6, 6, 6, 6, 6, 5],
        ),
        (
            "windowing out with gaps",
            &[6, 5, 2, 1],
            gaps,
            &[6, 6, 6, 2],
        ),
        (
            "windowing out 2",
            &[5, 6, 5, 7, 5, 5, 1],
            id,
            &[5, 6, 6, 7, 7, 7, 7],
        ),
        (
            "windowing out 3",
            &[5, 8, 5, 7, 5, 5],
            id,
            &[5, 8, 8, 8, 8, 8],
        ),
        (
            "windowing out 4",
            &[5, 8, 5, 7, 5, 5, 1],
            id,
            &[5, 8, 8, 8, 8, 8, 7],
        ),
        (
            "windowing out 5",
            &[5, 8, 5, 7, 5, 5, 1, 4, 4, 4],
            id,
            &[5, 8, 8, 8, 8, 8, 7, 7, 5, 5],
        ),
        (
            "windowing out 6",
            &[5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4],
            id,
            &[5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4],
        ),
        (
            "windowing out 7",
            &[5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4, 9],
            id,
            &[5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4, 9],
        ),
        (
            "windowing out 8",
            &[5, 8, 5, 7, 5, 5, 1, 4, 4, 4, 4, 9, 3, 4, 2, 1, 0],
            id,
            &[5, 8, 8, 8, 8, 8, 7, 7, 5, 5, 4, 9, 9, 9, 9, 9, 4],
        ),
        (
            "multiple with same index, ascending",
            &[1, 2, 3, 4, 5, 6, 7],
            same,
            &[1, 2, 3, 4, 5, 6, 7],
        ),
        (
            "multiple with same index, descending",
            &[7, 6, 5, 4, 3, 2, 1],
            same,
            &[7, 7, 7, 7, 7, 7, 7],
        ),
    ];
    for &(name, values, index, expect) in cases {
        let mut w = MaxWindow::new(Duration::from_secs(5), SEC);
        let got: Vec<i32> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| {
                w.record_at(index(i as u64), v);
                w.current()
            })
            .collect();
        assert_eq!(got, expect, "{name}");
    }
}

/// Knative `TestTimedWindowMax` (max/timewindow_test.go).
#[test]
fn sliding_max_over_time() {
    let now = at(100);
    let cases: &[MaxCase<'_>] = &[
        ("single value", &[(now, 5)], 5),
        (
            "two values in same second",
            &[(now, 6), (now + Duration::from_millis(500), 5)],
            6,
        ),
        ("two values", &[(now, 5), (now + SEC, 8)], 8),
        ("time gap", &[(now, 5), (now + SEC * 6, 4)], 4),
    ];
    for &(name, values, expect) in cases {
        let mut w = MaxWindow::new(Duration::from_secs(5), SEC);
        for &(t, v) in values {
            w.record(t, v);
        }
        assert_eq!(w.current(), expect, "{name}");
    }
    assert_eq!(MaxWindow::new(Duration::from_secs(5), SEC).current(), 0);
}

/// `is_empty` turns true only once more than a whole window has passed since the last write,
/// and never for a read behind it.
#[test]
fn empty_only_after_more_than_a_window_of_silence() {
    let mut b = TimedBuckets::new(at(60), SEC);
    assert!(b.is_empty(at(0)), "nothing recorded yet");
    b.record(at(100), 1.0);
    for (now, empty) in [
        (90, false), // behind the last write
        (100, false),
        (159, false),
        (160, false), // exactly a window
        (161, true),
        (500, true),
    ] {
        assert_eq!(b.is_empty(at(now)), empty, "at {now}");
        assert!(WeightedBuckets::new(at(60), SEC).is_empty(at(now)));
    }
    let mut w = WeightedBuckets::new(at(60), SEC);
    w.record(at(100), 1.0);
    assert!(!w.is_empty(at(160)) && w.is_empty(at(161)));
}

/// With 2 s buckets, averages count buckets, not seconds: the divisor is the number of
/// buckets written, and a trailing gap drops buckets by index.
#[test]
fn averages_count_buckets_of_the_granularity() {
    let mut b = TimedBuckets::new(at(10), at(2));
    assert_eq!(b.buckets.len(), 5);
    b.record(at(100), 2.0);
    b.record(at(103), 4.0); // the bucket of 102
    b.record(at(104), 6.0);
    // Three buckets written: 12 / 3.
    assert_eq!(b.window_average(at(104)), 4.0);
    assert_eq!(b.window_average(at(105)), 4.0);
    // Trailing empty buckets are left out of the divisor while the written ones still fit.
    assert_eq!(b.window_average(at(106)), 4.0);
    assert_eq!(b.window_average(at(108)), 4.0);
    // At 110 the ring has wrapped onto the bucket of 100: (4 + 6) over the two still inside.
    assert_eq!(b.window_average(at(110)), 5.0);
    assert_eq!(b.window_average(at(112)), 6.0);
    assert_eq!(b.window_average(at(114)), 0.0);
    // A record behind the newest moves the start of the window back: four buckets now.
    b.record(at(98), 8.0);
    assert_eq!(b.window_average(at(104)), 5.0);
    // One a whole window behind the newest is dropped.
    b.record(at(94), 100.0);
    assert_eq!(b.window_average(at(104)), 5.0);
}

/// A write after a gap shorter than the window zeroes only the skipped buckets; after a gap of
/// a whole window the average starts afresh from the new write.
#[test]
fn gaps_zero_the_skipped_buckets_and_a_window_of_silence_restarts() {
    let mut b = TimedBuckets::new(at(10), at(2));
    for (t, v) in [(100, 1.0), (102, 2.0), (104, 3.0), (106, 4.0), (108, 5.0)] {
        b.record(at(t), v);
    }
    assert_eq!(b.window_average(at(108)), 3.0);
    // 110 and 112 reuse the buckets of 100 and 102, which held values from a window ago.
    b.record(at(112), 10.0);
    assert_eq!(
        b.window_average(at(112)),
        (3.0 + 4.0 + 5.0 + 0.0 + 10.0) / 5.0
    );
    // Exactly a window later: a fresh start with one bucket.
    b.record(at(122), 7.0);
    assert_eq!(b.window_average(at(122)), 7.0);
}

/// With 2 s buckets, the weighted average decays once per empty *bucket* after the last
/// write, and the empty buckets push the oldest written ones out of the window.
#[test]
fn weighted_average_decays_per_empty_bucket_of_the_granularity() {
    let mut b = WeightedBuckets::new(at(10), at(2));
    let a = b.smoothing();
    assert_eq!(a, smoothing_coefficient(5.0));
    let d = 1.0 - a;
    b.record(at(100), 1.0);
    b.record(at(102), 2.0);
    b.record(at(104), 3.0);
    let close = |got: f64, want: f64, what: &str| {
        assert!((got - want).abs() < 1e-12, "{what}: {got} vs {want}");
    };
    close(
        b.window_average(at(104)),
        a * (3.0 + 2.0 * d + d * d),
        "at the last write",
    );
    close(
        b.window_average(at(105)),
        a * (3.0 + 2.0 * d + d * d),
        "same bucket",
    );
    // Two empty buckets (106, 108): two decay steps, and the window still holds all three.
    close(
        b.window_average(at(108)),
        a * d * d * (3.0 + 2.0 * d + d * d),
        "two empty buckets",
    );
    // Three empty buckets: the bucket of 100 has left the window.
    close(
        b.window_average(at(110)),
        a * d * d * d * (3.0 + 2.0 * d),
        "three empty buckets",
    );
    assert_eq!(b.window_average(at(114)), 0.0);
    assert_eq!(b.window_average(at(116)), 0.0);
}
