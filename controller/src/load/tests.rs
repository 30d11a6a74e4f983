use super::*;
use sluice_xds::load::RevisionLoad;

#[test]
fn held_requests_are_the_newest_report_s_summed_over_proxies() {
    let now = Instant::now();
    let mut aggregator = LoadAggregator::default();
    let held = |interval_ms: u64, revision: &str, held: u32| LoadReport {
        interval_ms,
        revisions: vec![RevisionLoad {
            revision: revision.to_string(),
            concurrency: 1.0,
            requests: 1.0,
            held,
        }],
    };
    // Proxy 1 reported twice since the last collect: its newest count holds.
    aggregator.report(1, held(500, "ns/a", 7), now);
    aggregator.report(1, held(500, "ns/a", 2), now);
    aggregator.report(2, held(1000, "ns/a", 3), now);
    assert_eq!(aggregator.collect(now)["ns/a"].held, 5);
    // A Revision the newest report leaves out had nothing waiting.
    aggregator.report(1, held(500, "ns/a", 4), now);
    aggregator.report(1, held(500, "ns/b", 1), now);
    let sums = aggregator.collect(now);
    assert_eq!(
        sums["ns/a"].held, 3,
        "proxy 1 none, proxy 2 late: its last 3"
    );
    assert_eq!(sums["ns/b"].held, 1);
}

fn report(interval_ms: u64, loads: &[(&str, f64, f64)]) -> LoadReport {
    LoadReport {
        interval_ms,
        revisions: loads
            .iter()
            .map(|(revision, concurrency, requests)| RevisionLoad {
                revision: revision.to_string(),
                concurrency: *concurrency,
                requests: *requests,
                held: 0,
            })
            .collect(),
    }
}

fn second() -> Duration {
    Duration::from_secs(1)
}

/// What happens in one second: reports `(proxy, report)`, disconnects, then the collect.
struct Step {
    reports: Vec<(u64, LoadReport)>,
    disconnects: Vec<u64>,
    /// Revision "ns/a": (concurrency, requests per second) after the collect.
    want: Option<(f64, f64)>,
    what: &'static str,
}

fn step(reports: Vec<(u64, LoadReport)>, want: Option<(f64, f64)>, what: &'static str) -> Step {
    Step {
        reports,
        disconnects: vec![],
        want,
        what,
    }
}

#[tokio::test(start_paused = true)]
async fn reports_sum_across_proxies_with_late_ones_substituted_and_gone_ones_dropped() {
    let one = |c| report(1000, &[("ns/a", c, c)]);
    let steps = vec![
        step(
            vec![(1, one(2.0)), (2, one(3.0)), (3, one(5.0))],
            Some((10.0, 10.0)),
            "three proxies sum",
        ),
        step(
            vec![(1, one(2.0)), (2, one(3.0))],
            Some((10.0, 10.0)),
            "proxy 3 late: its last figure stands in",
        ),
        step(
            vec![(1, one(2.0)), (2, one(3.0))],
            Some((10.0, 10.0)),
            "still within the gone bound",
        ),
        step(
            vec![(1, one(2.0)), (2, one(3.0))],
            Some((10.0, 10.0)),
            "3 s silent is still counted",
        ),
        step(
            vec![(1, one(2.0)), (2, one(3.0))],
            Some((5.0, 5.0)),
            "over 3 s silent: gone",
        ),
        step(
            vec![(1, one(2.0)), (2, one(3.0)), (3, one(1.0))],
            Some((6.0, 6.0)),
            "proxy 3 returns",
        ),
        Step {
            reports: vec![(1, one(2.0)), (2, one(3.0))],
            disconnects: vec![3],
            want: Some((5.0, 5.0)),
            what: "a disconnected proxy counts no more, at once",
        },
        step(vec![(1, one(0.0)), (2, one(0.0))], Some((0.0, 0.0)), "idle"),
        step(
            vec![(1, report(1000, &[])), (2, report(1000, &[]))],
            None,
            "a report without the revision means no load",
        ),
    ];
    let mut aggregator = LoadAggregator::new(Duration::from_secs(3));
    for s in steps {
        tokio::time::advance(second()).await;
        let now = Instant::now();
        for (proxy, r) in s.reports {
            aggregator.report(proxy, r, now);
        }
        for proxy in s.disconnects {
            aggregator.disconnected(proxy);
        }
        let sums = aggregator.collect(now);
        let got = sums.get("ns/a").map(|s| (s.concurrency, s.requests));
        assert_eq!(got, s.want, "{}", s.what);
    }
}

#[tokio::test(start_paused = true)]
async fn two_reports_in_one_second_merge_by_interval() {
    let mut aggregator = LoadAggregator::default();
    let now = Instant::now();
    aggregator.report(1, report(500, &[("ns/a", 4.0, 10.0)]), now);
    aggregator.report(1, report(1500, &[("ns/a", 0.0, 10.0)]), now);
    let sums = aggregator.collect(now);
    let sample = sums["ns/a"];
    // Concurrency weighted by interval: 4 × 0.25 + 0 × 0.75; 20 arrivals over 2 s.
    assert!((sample.concurrency - 1.0).abs() < 1e-9, "{sample:?}");
    assert!((sample.requests - 10.0).abs() < 1e-9, "{sample:?}");
}

#[tokio::test(start_paused = true)]
async fn revisions_are_summed_separately() {
    let mut aggregator = LoadAggregator::default();
    let now = Instant::now();
    aggregator.report(
        1,
        report(1000, &[("ns/a", 1.0, 1.0), ("ns/b", 2.0, 2.0)]),
        now,
    );
    aggregator.report(2, report(1000, &[("ns/b", 3.0, 3.0)]), now);
    let sums = aggregator.collect(now);
    assert_eq!(sums.len(), 2);
    assert_eq!(
        sums["ns/a"],
        Sample {
            concurrency: 1.0,
            requests: 1.0,
            held: 0
        }
    );
    assert_eq!(
        sums["ns/b"],
        Sample {
            concurrency: 5.0,
            requests: 5.0,
            held: 0
        }
    );
    assert_eq!(aggregator.proxies(), 2);
}
