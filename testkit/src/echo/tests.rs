use super::*;

#[test]
fn header_names_are_canonicalised_like_go() {
    let cases = [
        ("foo-bar-baz", "Foo-Bar-Baz"),
        ("host", "Host"),
        ("x-forwarded-for", "X-Forwarded-For"),
        ("k-network-hash", "K-Network-Hash"),
        ("te", "Te"),
        ("x--double", "X--Double"),
        ("under_score", "Under_score"),
        ("ALREADY-UPPER", "Already-Upper"),
    ];
    for (name, want) in cases {
        assert_eq!(canonical_header_name(name), want, "{name}");
    }
}

#[test]
fn query_parameters_parse() {
    let ms = Duration::from_millis;
    let cases: &[(&str, Query)] = &[
        ("", Query::default()),
        ("time=123&x", Query::default()),
        (
            "status=503",
            Query {
                status: Some(StatusCode::SERVICE_UNAVAILABLE),
                ..Query::default()
            },
        ),
        (
            "initialTimeout=10&timeout=20",
            Query {
                initial_timeout: Some(ms(10)),
                timeout: Some(ms(20)),
                ..Query::default()
            },
        ),
        (
            "drip=3&drip_ms=5&sleep_ms=7&bytes=9",
            Query {
                drip: Some(3),
                drip_interval: ms(5),
                sleep: Some(ms(7)),
                bytes: Some(9),
                ..Query::default()
            },
        ),
    ];
    for (query, want) in cases {
        assert_eq!(Query::parse(query).as_ref(), Ok(want), "{query}");
    }
}

#[test]
fn bad_query_parameters_are_rejected() {
    for query in [
        "status=abc",
        "status=99",
        "status=600",
        "sleep_ms=-1",
        "bytes=999999999999",
    ] {
        assert!(Query::parse(query).is_err(), "{query}");
    }
}

#[test]
fn reply_header_lookup_ignores_case() -> anyhow::Result<()> {
    let reply = EchoReply::parse(
        br#"{"name":"a","request":{"uri":"/","host":"h","method":"GET",
            "headers":{"Foo-Bar":["1","2"]},"protoMajor":1,"protoMinor":1}}"#,
    )?;
    assert_eq!(reply.header("foo-bar"), Some("1"));
    assert_eq!(reply.header_values("FOO-BAR"), vec!["1", "2"]);
    assert_eq!(reply.header("missing"), None);
    Ok(())
}
