use super::*;

fn held(waited_us: u64, cold_us: Option<u64>) -> Held {
    Held {
        waited: Duration::from_micros(waited_us),
        cold_start: cold_us.map(Duration::from_micros),
    }
}

#[test]
fn durations_are_milliseconds_with_at_most_one_decimal() {
    let cases = [
        (0, "activator;dur=0"),
        (40, "activator;dur=0"),
        (50, "activator;dur=0.1"),
        (1_000, "activator;dur=1"),
        (12_345, "activator;dur=12.3"),
        (12_350, "activator;dur=12.4"),
        (812_300, "activator;dur=812.3"),
        (999_960, "activator;dur=1000"),
        (90_000_000, "activator;dur=90000"),
    ];
    for (micros, want) in cases {
        assert_eq!(held(micros, None).header_value(), want, "{micros} µs");
    }
}

#[test]
fn a_cold_start_adds_its_own_entry() {
    assert_eq!(
        held(812_300, Some(805_060)).header_value(),
        "activator;dur=812.3, cold-start;dur=805.1"
    );
    assert_eq!(
        held(3_000, Some(0)).header_value(),
        "activator;dur=3, cold-start;dur=0"
    );
}

/// W3C Server-Timing: `#server-timing-metric`, each `metric-name *( OWS ";" OWS param )` with
/// the name a token and `dur` a number.
#[test]
fn the_value_follows_the_server_timing_grammar() {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    let value = held(1_234_567, Some(1_000_001)).header_value();
    let text = value.to_str().expect("ascii");
    for metric in text.split(", ") {
        let mut parts = metric.split(';');
        let name = parts.next().expect("a name");
        assert!(!name.is_empty() && name.chars().all(is_tchar), "{name}");
        let params: Vec<&str> = parts.collect();
        assert_eq!(params.len(), 1, "{metric}");
        let dur = params[0].strip_prefix("dur=").expect("dur param");
        assert!(dur.parse::<f64>().is_ok_and(f64::is_finite), "{dur}");
    }
}

#[test]
fn entries_go_after_an_upstreams_own() {
    let mut headers = HeaderMap::new();
    held(5_000, None).append_to(&mut headers);
    assert_eq!(headers.get_all(&SERVER_TIMING).iter().count(), 1);
    assert_eq!(headers[&SERVER_TIMING], "activator;dur=5");

    let mut headers = HeaderMap::new();
    headers.append(&SERVER_TIMING, HeaderValue::from_static("db;dur=53"));
    headers.append(
        &SERVER_TIMING,
        HeaderValue::from_static("cache;desc=\"hit\""),
    );
    held(5_000, Some(4_000)).append_to(&mut headers);
    let all: Vec<_> = headers.get_all(&SERVER_TIMING).iter().collect();
    assert_eq!(
        all,
        ["db;dur=53, cache;desc=\"hit\", activator;dur=5, cold-start;dur=4"]
    );
}
