use super::*;

fn map(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in pairs {
        h.append(
            HeaderName::from_bytes(n.as_bytes()).expect("name"),
            HeaderValue::from_str(v).expect("value"),
        );
    }
    h
}

#[test]
fn append_list_adds_or_extends() {
    let ip = HeaderValue::from_static("10.0.0.1");
    let mut h = HeaderMap::new();
    append_list(&mut h, &X_FORWARDED_FOR, &ip);
    assert_eq!(h.get(&X_FORWARDED_FOR).expect("set"), "10.0.0.1");
    let mut h = map(&[
        ("x-forwarded-for", "1.1.1.1"),
        ("x-forwarded-for", "2.2.2.2"),
    ]);
    append_list(&mut h, &X_FORWARDED_FOR, &ip);
    let all: Vec<_> = h.get_all(&X_FORWARDED_FOR).iter().collect();
    assert_eq!(all, vec!["1.1.1.1, 2.2.2.2, 10.0.0.1"]);
}

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let mut h = map(&[
        ("connection", "keep-alive, x-private"),
        ("x-private", "secret"),
        ("keep-alive", "timeout=5"),
        ("upgrade", "h2c"),
        ("transfer-encoding", "chunked"),
        ("te", "gzip"),
        ("traceparent", "00-abc-def-01"),
        ("k-network-hash", "override"),
    ]);
    strip_request_hop_by_hop(&mut h, false);
    let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
    left.sort();
    assert_eq!(left, vec!["k-network-hash", "traceparent"]);
}

#[test]
fn every_connection_line_names_hop_by_hop_headers() {
    let mut h = map(&[
        ("connection", "keep-alive"),
        ("connection", "x-second"),
        ("connection", "X-Third, x-fourth"),
        ("x-second", "2"),
        ("x-third", "3"),
        ("x-fourth", "4"),
        ("x-kept", "k"),
    ]);
    strip_request_hop_by_hop(&mut h, false);
    let left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
    assert_eq!(left, vec!["x-kept"]);
    let mut h = map(&[
        ("connection", "close"),
        ("connection", "x-backend-secret"),
        ("x-backend-secret", "s"),
        ("content-type", "text/plain"),
    ]);
    strip_response_hop_by_hop(&mut h);
    let left: Vec<_> = h.keys().map(|k| k.as_str().to_string()).collect();
    assert_eq!(left, vec!["content-type"]);
}

#[test]
fn te_trailers_and_websocket_handshake_survive() {
    let mut h = map(&[
        ("te", "trailers"),
        ("connection", "Upgrade"),
        ("upgrade", "websocket"),
    ]);
    strip_request_hop_by_hop(&mut h, true);
    assert_eq!(h.get("te").expect("te"), "trailers");
    assert_eq!(h.get("upgrade").expect("upgrade"), "websocket");
    assert_eq!(h.get("connection").expect("connection"), "Upgrade");
}

/// Each hop-by-hop name is seen alone, and a name of the same length that is none of them is not.
#[test]
fn every_hop_by_hop_name_is_seen_and_lookalikes_are_not() {
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "trailer",
    ] {
        assert!(has_hop_by_hop(&map(&[("x-a", "1"), (name, "v")])), "{name}");
        let lookalike = "x".repeat(name.len());
        assert!(!has_hop_by_hop(&map(&[(&lookalike, "v")])), "{lookalike}");
    }
    assert!(!has_hop_by_hop(&map(&[("xx", "gzip")])));
}

/// A gRPC call's `te: trailers` alone takes the fast path (nothing to strip); any other TE, or
/// a hop-by-hop header beside it, does not.
#[test]
fn only_te_trailers_needs_no_stripping() {
    assert!(!has_hop_by_hop(&map(&[("te", "trailers"), ("x-a", "1")])));
    assert!(!has_hop_by_hop(&map(&[("te", "Trailers")])));
    assert!(has_hop_by_hop(&map(&[("te", "gzip")])));
    assert!(has_hop_by_hop(&map(&[("te", "trailers"), ("te", "gzip")])));
    assert!(has_hop_by_hop(&map(&[
        ("te", "trailers"),
        ("keep-alive", "5")
    ])));
    let mut h = map(&[("te", "trailers"), ("te", "gzip")]);
    strip_request_hop_by_hop(&mut h, false);
    assert!(!h.contains_key("te"), "a TE other than trailers goes");
}

#[test]
fn response_connection_headers_are_removed() {
    let mut h = map(&[
        ("connection", "close"),
        ("keep-alive", "timeout=5"),
        ("content-type", "text/plain"),
    ]);
    strip_response_hop_by_hop(&mut h);
    assert_eq!(h.len(), 1);
    assert!(h.contains_key("content-type"));
}

#[test]
fn the_target_authority_wins_over_host() {
    let request = |uri: &str, host: Option<&str>| {
        let mut builder = Request::builder().uri(uri);
        if let Some(host) = host {
            builder = builder.header(header::HOST, host);
        }
        builder.body(()).expect("request")
    };
    let cases = [
        // Origin-form: Host.
        ("/", Some("pub.example.com"), Some("pub.example.com")),
        // Absolute-form (h1) or :authority (h2): the target's authority, Host ignored.
        (
            "http://private.local/",
            Some("pub.example.com"),
            Some("private.local"),
        ),
        (
            "http://Private.Local.:80/x",
            None,
            Some("Private.Local.:80"),
        ),
        ("/", None, None),
    ];
    for (uri, host, want) in cases {
        let got = request_host(&request(uri, host));
        assert_eq!(
            got.as_ref().and_then(|v| v.to_str().ok()),
            want,
            "{uri} {host:?}"
        );
    }
}

#[test]
fn external_error_text_names_nothing_internal() {
    let errors = [
        ProxyError::Overflow {
            backend: "ns/secret:80".into(),
        },
        ProxyError::HoldTimeout {
            backend: "ns/secret:80".into(),
            seconds: 3,
        },
        ProxyError::NoSplit {
            route: "ns/secret#0/0".into(),
        },
    ];
    for error in errors {
        let detailed = error.to_string();
        assert!(detailed.contains("secret"), "{detailed}");
        assert!(!error.public_text().contains("secret"));
        assert!(!error.public_text().is_empty());
    }
}

#[test]
fn head_refusals_map_to_their_status_and_close_http1() {
    let cases = [
        (ProxyError::BadRequest("two hosts"), 400, true),
        (ProxyError::UriTooLong, 414, true),
        (ProxyError::HeadersTooLarge, 431, true),
        (ProxyError::NotImplemented("gzip"), 501, true),
        (ProxyError::NoRoute, 404, false),
        (ProxyError::ResponseTimeout, 504, false),
    ];
    for (error, status, closes) in cases {
        let name = error.to_string();
        assert_eq!(error.status().as_u16(), status, "{name}");
        assert_eq!(error.closes_connection(), closes, "{name}");
        assert!(!error.public_text().is_empty(), "{name}");
    }
}
