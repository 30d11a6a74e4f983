use super::*;
use crate::autoscaler::simulate::parse_trace;

fn sample(concurrency: f64) -> Sample {
    Sample {
        concurrency,
        requests: concurrency * 10.0,
        held: 0,
    }
}

fn decided(desired: u32, panicking: bool, poked: bool) -> Decided {
    Decided {
        desired,
        panicking,
        poked,
    }
}

fn texts(history: &History, id: &str) -> Vec<String> {
    let view = history.view(u64::MAX);
    view.iter()
        .find(|r| r.id == id)
        .map(|r| r.decisions.iter().map(|d| d.text.clone()).collect())
        .unwrap_or_default()
}

#[test]
fn points_and_decisions_fit_their_documented_sizes() {
    assert_eq!(std::mem::size_of::<Point>(), 40);
    assert_eq!(std::mem::size_of::<Decision>(), 32);
}

#[test]
fn the_ring_keeps_the_newest_window_of_seconds() {
    // (window, seconds recorded) -> (points kept, first second kept)
    let cases = [
        (5, 3, 3, 0),
        (5, 5, 5, 0),
        (5, 6, 5, 1),
        (5, 17, 5, 12),
        (1, 4, 1, 3),
    ];
    for (window, recorded, kept, first) in cases {
        let history = History::new(Duration::from_secs(window));
        history.start("ns/a", Metric::Concurrency, 100, UNIX_EPOCH, 1);
        for s in 0..recorded {
            history.record("ns/a", 100 + s, sample(s as f64), 1);
        }
        let view = history.view(u64::MAX);
        let points = &view[0].points;
        assert_eq!(points.len(), kept, "window {window}, {recorded} recorded");
        assert_eq!(
            points[0].second, first,
            "window {window}, {recorded} recorded"
        );
        assert_eq!(
            points.last().map(|p| p.second),
            Some(recorded - 1),
            "the newest is kept"
        );
        // Seconds count from the state's start, not the loop's clock.
        assert_eq!(points[0].concurrency, first as f64);
    }
}

#[test]
fn a_zero_window_keeps_nothing() {
    let history = History::new(Duration::ZERO);
    history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, 1);
    history.record("ns/a", 0, sample(1.0), 1);
    assert!(history.view(300).is_empty());
    assert_eq!(history.trace_csv("ns/a"), None);
}

#[test]
fn the_view_shows_only_the_last_seconds_asked_for() {
    let history = History::new(Duration::from_secs(600));
    history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, 1);
    for s in 0..400 {
        history.record("ns/a", s, sample(1.0), 1);
    }
    let view = history.view(300);
    assert_eq!(view[0].points.len(), 300);
    assert_eq!(view[0].points[0].second, 100);
}

#[test]
fn a_poke_in_a_recorded_second_adds_to_its_point() {
    let history = History::new(Duration::from_secs(60));
    history.start("ns/a", Metric::Concurrency, 10, UNIX_EPOCH, 0);
    history.record("ns/a", 10, sample(0.0), 0);
    history.record("ns/a", 11, sample(0.5), 0);
    history.record("ns/a", 11, sample(1.0), 0);
    let view = history.view(60);
    let points: Vec<(u64, f64, f64)> = view[0]
        .points
        .iter()
        .map(|p| (p.second, p.concurrency, p.requests))
        .collect();
    assert_eq!(points, vec![(0, 0.0, 0.0), (1, 1.5, 15.0)]);
}

#[test]
fn decisions_log_changes_with_their_cause() {
    // (desired before, decision) -> the line logged, if any
    let cases: [(u32, Decided, &[&str]); 7] = [
        (0, decided(1, false, true), &["scaled 0 → 1: cold request"]),
        (
            3,
            decided(7, true, false),
            &["panic mode on", "panic: 3 → 7"],
        ),
        (1, decided(0, false, false), &["scaled 1 → 0: idle"]),
        (2, decided(3, false, false), &["scaled 2 → 3: load"]),
        (3, decided(2, false, false), &["scaled 3 → 2: load"]),
        // A poke with instances already asked for is not a cold start.
        (1, decided(2, false, true), &["scaled 1 → 2: load"]),
        (2, decided(2, false, false), &[]),
    ];
    for (before, decision, want) in cases {
        let history = History::new(Duration::from_secs(60));
        history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, before);
        history.record("ns/a", 2, sample(1.0), before);
        history.decided("ns/a", 2, UNIX_EPOCH, decision);
        let mut logged = texts(&history, "ns/a");
        assert_eq!(logged.remove(0), format!("autoscaling starts at {before}"));
        let got: Vec<&str> = logged.iter().map(String::as_str).collect();
        assert_eq!(got, want, "{before} then {decision:?}");
        // The second's point shows the decision.
        let view = history.view(60);
        assert_eq!(view[0].points[0].desired, decision.desired);
    }
}

#[test]
fn panic_mode_is_logged_when_it_starts_and_ends() {
    let history = History::new(Duration::from_secs(60));
    history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, 1);
    history.decided("ns/a", 2, UNIX_EPOCH, decided(4, true, false));
    history.decided("ns/a", 4, UNIX_EPOCH, decided(4, true, false));
    history.decided("ns/a", 6, UNIX_EPOCH, decided(4, false, false));
    assert_eq!(
        texts(&history, "ns/a"),
        vec![
            "autoscaling starts at 1",
            "panic mode on",
            "panic: 1 → 4",
            "panic mode off"
        ]
    );
}

#[test]
fn the_decision_log_keeps_the_newest_and_survives_a_restart() {
    let history = History::new(Duration::from_secs(60));
    history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, 0);
    for i in 1..=(DECISIONS_KEPT as u32 + 10) {
        history.decided(
            "ns/a",
            u64::from(i) * 2,
            UNIX_EPOCH,
            decided(i, false, false),
        );
    }
    let logged = texts(&history, "ns/a");
    assert_eq!(logged.len(), DECISIONS_KEPT);
    assert_eq!(
        logged.last().map(String::as_str),
        Some("scaled 73 → 74: load")
    );
    assert_eq!(logged[0], "scaled 10 → 11: load", "the oldest went first");
    // Changed settings restart the clock and the points, not the log.
    history.record("ns/a", 200, sample(1.0), 1);
    history.start("ns/a", Metric::Concurrency, 300, UNIX_EPOCH, 1);
    let view = history.view(600);
    assert!(view[0].points.is_empty());
    assert_eq!(view[0].decisions.len(), DECISIONS_KEPT);
    assert_eq!(
        view[0].decisions.last().map(|d| d.text.as_str()),
        Some("autoscaling starts at 1")
    );
}

#[test]
fn retain_forgets_revisions_that_are_gone() {
    let history = History::new(Duration::from_secs(60));
    history.start("ns/a", Metric::Concurrency, 0, UNIX_EPOCH, 0);
    history.start("ns/b", Metric::Concurrency, 0, UNIX_EPOCH, 0);
    history.retain(|id| id == "ns/b");
    let ids: Vec<String> = history.view(60).into_iter().map(|r| r.id).collect();
    assert_eq!(ids, vec!["ns/b"]);
    assert_eq!(history.trace_csv("ns/a"), None);
}

#[test]
fn the_trace_parses_back_to_the_exact_samples() {
    let history = History::new(Duration::from_secs(60));
    history.start("ns/a", Metric::Concurrency, 7, UNIX_EPOCH, 0);
    let values = [0.0, 0.1 + 0.2, 1.0 / 3.0, 12.5, 1e-7];
    for (i, v) in values.iter().enumerate() {
        history.record("ns/a", 7 + i as u64, sample(*v), i as u32);
    }
    let csv = history.trace_csv("ns/a").expect("tracked");
    let trace = parse_trace(&csv).expect("simulate reads it");
    let got: Vec<(u64, f64, Option<u32>)> = trace
        .iter()
        .map(|p| (p.second, p.concurrency, p.ready))
        .collect();
    let want: Vec<(u64, f64, Option<u32>)> = values
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u64, *v, Some(i as u32)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn an_rps_trace_carries_requests_and_a_wrapped_one_says_so() {
    let history = History::new(Duration::from_secs(2));
    history.start("ns/a", Metric::Rps, 0, UNIX_EPOCH, 0);
    for s in 0..3 {
        history.record("ns/a", s, sample(s as f64), 0);
    }
    let csv = history.trace_csv("ns/a").expect("tracked");
    assert!(csv.contains("# metric rps"), "{csv}");
    assert!(csv.contains("# the window starts at second 1"), "{csv}");
    let trace = parse_trace(&csv).expect("simulate reads it");
    let got: Vec<(u64, f64)> = trace.iter().map(|p| (p.second, p.concurrency)).collect();
    assert_eq!(got, vec![(1, 10.0), (2, 20.0)]);
}
