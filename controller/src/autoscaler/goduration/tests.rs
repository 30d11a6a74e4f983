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

/// The edge cases of Go's own `time.ParseDuration` tests: the int64 limits reached through every
/// unit and sign, fractions longer than 19 digits, and overflow in each part of a duration.
#[test]
fn agrees_with_go_at_the_int64_limits() {
    const MAX: i128 = (1 << 63) - 1;
    const MIN: i128 = -(1 << 63);
    let cases: &[(&str, i128)] = &[
        ("52763797000ns", 52_763_797_000),
        ("9007199254740993ns", (1 << 53) + 1),
        ("9223372036854775807ns", MAX),
        ("9223372036854775.807us", MAX),
        ("9223372036s854ms775us807ns", MAX),
        ("-9223372036854775808ns", MIN),
        ("-9223372036854775.808us", MIN),
        ("-9223372036s854ms775us808ns", MIN),
        ("-2562047h47m16.854775808s", MIN),
        ("0.3333333333333333333h", 20 * 60 * S),
        ("0.100000000000000000000h", 6 * 60 * S),
        ("0.830103483285477580700h", (49 * 60 + 48) * S + 372_539_827),
        ("1.000000001s", S + 1),
        // Digits past 2^63 are read and dropped, however many (no overflow anywhere): 41
        // nines would not fit even a u128. As in Go, the float product rounds up to 1 s.
        ("0.99999999999999999999999999999999999999999s", S),
        ("0.000000000000000000000000000000000000000000001s", 0),
        ("1.00000000000000000000000000000000000000000009h", 3600 * S),
        ("1.0000000001s", S),
        ("1.5m", 90 * S),
        ("2.25h", 8100 * S),
        ("1.5ms", 1_500_000),
        ("1.5us", 1_500),
        ("3ms", 3_000_000),
        ("1h30m", 5400 * S),
        ("10s5s", 15 * S),
    ];
    for &(input, want) in cases {
        assert_eq!(parse(input), Some(want), "{input}");
    }
    for input in [
        "3",
        ".",
        "-.",
        "+.s",
        "+",
        "1.5",
        "1s.",
        "1s5",
        "1x",
        "9223372036854775810ns",
        "9223372036854775808ns",
        "-9223372036854775809ns",
        "9223372036854776us",
        "3000000h",
        "9223372036854775.808us",
        "9223372036854ms775us808ns",
        "99999999999999999999ns",
        "2562048h",
        "4611686018427387904ns4611686018427387904ns",
    ] {
        assert_eq!(parse(input), None, "{input:?}");
    }
}

#[test]
fn rounds_every_remainder_to_the_nearer_second() {
    assert_eq!(round_to_second(0), 0);
    assert_eq!(round_to_second(1), 0);
    assert_eq!(round_to_second(S - 1), S);
    assert_eq!(round_to_second(S + 1), S);
    assert_eq!(round_to_second(3 * S + S / 2), 4 * S);
    assert_eq!(round_to_second(3 * S + S / 2 - 1), 3 * S);
}

#[test]
fn converts_to_a_std_duration_clamping_negatives_to_zero() {
    use std::time::Duration;
    assert_eq!(to_duration(1_500_000_000), Duration::from_millis(1500));
    assert_eq!(to_duration(7), Duration::from_nanos(7));
    assert_eq!(to_duration(-5), Duration::ZERO);
    assert_eq!(to_duration(i128::MAX), Duration::from_nanos(u64::MAX));
}
