use super::*;

fn endpoints(n: usize) -> Vec<Arc<Endpoint>> {
    (0..n)
        .map(|i| {
            Endpoint::new(Address::Socket(
                format!("127.0.0.1:{}", 2000 + i).parse().expect("addr"),
            ))
        })
        .collect()
}

fn policy(consecutive: u32, ejection_time: Duration, percent: u32) -> Outlier {
    Outlier {
        consecutive_connect_failures: consecutive,
        ejection_time,
        max_ejection_percent: percent,
    }
}

/// Fails `n` connects on `e`; true if one of them ejected it.
fn fail(e: &Endpoint, siblings: &[Arc<Endpoint>], policy: &Outlier, n: u32) -> bool {
    (0..n).fold(false, |ejected, _| {
        e.connect_failed(siblings, policy) || ejected
    })
}

#[test]
fn envoys_defaults() {
    assert_eq!(Outlier::default(), policy(5, Duration::from_secs(30), 10));
}

#[test]
fn the_fifth_consecutive_connect_failure_ejects() {
    let eps = endpoints(2);
    let p = Outlier::default();
    assert!(!fail(&eps[0], &eps, &p, 4), "four are not enough");
    assert!(!eps[0].is_ejected());
    assert!(eps[0].connect_failed(&eps, &p), "the fifth ejects");
    assert!(eps[0].is_ejected());
    // No new request picks it while a live endpoint exists.
    for _ in 0..100 {
        let picked = reserve(&eps, 0, &[]).expect("a live endpoint");
        assert!(Arc::ptr_eq(&picked, &eps[1]));
        release(&picked);
    }
    let picked = reserve(&eps, 1, &[]).expect("a live endpoint under a limit too");
    assert!(Arc::ptr_eq(&picked, &eps[1]));
}

#[test]
fn a_success_between_failures_restarts_the_count() {
    let eps = endpoints(2);
    let p = Outlier::default();
    assert!(!fail(&eps[0], &eps, &p, 4));
    eps[0].connect_succeeded();
    assert!(!fail(&eps[0], &eps, &p, 4), "the streak started over");
    assert!(!eps[0].is_ejected());
}

#[test]
fn zero_consecutive_failures_turns_ejection_off() {
    let eps = endpoints(2);
    assert!(!fail(
        &eps[0],
        &eps,
        &policy(0, Duration::from_secs(30), 100),
        100
    ));
    assert!(!eps[0].is_ejected());
}

#[test]
fn at_most_the_percentage_is_ejected_but_always_one() {
    let p = policy(1, Duration::from_secs(30), 10);
    // 10 % of 5 rounds down to none; one is still allowed.
    let five = endpoints(5);
    assert!(fail(&five[0], &five, &p, 1));
    assert!(!fail(&five[1], &five, &p, 3), "a second would exceed 10 %");
    assert_eq!(five.iter().filter(|e| e.is_ejected()).count(), 1);
    // 10 % of 20 is two.
    let twenty = endpoints(20);
    assert!(fail(&twenty[0], &twenty, &p, 1));
    assert!(fail(&twenty[1], &twenty, &p, 1));
    assert!(!fail(&twenty[2], &twenty, &p, 1));
    assert_eq!(twenty.iter().filter(|e| e.is_ejected()).count(), 2);
}

#[test]
fn with_every_candidate_ejected_they_are_used_again() {
    let eps = endpoints(1);
    assert!(fail(
        &eps[0],
        &eps,
        &policy(1, Duration::from_secs(30), 10),
        1
    ));
    let picked = reserve(&eps, 0, &[]).expect("panic mode: the ejected one rather than none");
    assert!(Arc::ptr_eq(&picked, &eps[0]));
    release(&picked);
    // But a full live endpoint does not send requests to an ejected one.
    let two = endpoints(2);
    assert!(fail(
        &two[0],
        &two,
        &policy(1, Duration::from_secs(30), 50),
        1
    ));
    let held = reserve(&two, 1, &[]).expect("the live one");
    assert!(Arc::ptr_eq(&held, &two[1]));
    assert!(reserve(&two, 1, &[]).is_none(), "wait for the live one");
}

#[test]
fn an_ejection_ends_after_its_time_and_repeats_last_longer() {
    let eps = endpoints(2);
    let p = policy(1, Duration::from_millis(20), 50);
    assert!(fail(&eps[0], &eps, &p, 1));
    let first = eps[0].ejected_until.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(30));
    assert!(!eps[0].is_ejected(), "back after the ejection time");
    let before = now_micros();
    assert!(fail(&eps[0], &eps, &p, 1), "ejected again");
    let second = eps[0].ejected_until.load(Ordering::Relaxed);
    assert!(second - before >= 40_000, "twice the base the second time");
    // A success resets the backoff.
    assert_eq!(eps[0].ejections.load(Ordering::Relaxed), 2);
    eps[0].connect_succeeded();
    assert_eq!(eps[0].ejections.load(Ordering::Relaxed), 0);
    assert!(first > 0);
}
