use super::*;

const S: i128 = NANOS_PER_SEC;

#[test]
fn parses_what_go_parses() {
    let cases: &[(&str, i128)] = &[
        ("0", 0),
        ("-0", 0),
        ("60s", 60 * S),
        ("1m", 60 * S),
        ("2m3s", 123 * S),
        ("1h1s", 3601 * S),
        ("1.5s", 1_500_000_000),
        (".5m", 30 * S),
        ("5.s", 5 * S),
        ("61984ms", 61_984_000_000),
        ("1m9s82ms", 69_082_000_000),
        ("100us", 100_000),
        ("100\u{b5}s", 100_000),
        ("100\u{3bc}s", 100_000),
        ("7ns", 7),
        ("+3s", 3 * S),
        ("-1m23s", -83 * S),
        ("-4m11s", -251 * S),
        ("365h", 365 * 3600 * S),
        ("0s", 0),
    ];
    for &(input, want) in cases {
        assert_eq!(parse(input), Some(want), "{input}");
    }
}

#[test]
fn rejects_what_go_rejects() {
    for input in [
        "",
        "-",
        "s",
        "5",
        "60",
        "1d",
        "not a duration",
        "1.2.3s",
        ".s",
        "1h 2m",
        "9223372037s",
        "twenty-two-minutes-and-five-seconds",
    ] {
        assert_eq!(parse(input), None, "{input:?}");
    }
}

#[test]
fn rounds_halves_up_to_whole_seconds() {
    assert_eq!(round_to_second(6 * S), 6 * S);
    assert_eq!(round_to_second(S / 2), S);
    assert_eq!(round_to_second(S / 2 - 1), 0);
    assert_eq!(round_to_second(700_000_000), S);
    assert_eq!(round_to_second(61_984_000_000), 62 * S);
}
