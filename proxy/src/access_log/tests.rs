use super::*;

fn json(value: &[u8]) -> String {
    let mut out = Vec::new();
    json_bytes(&mut out, Some(value));
    String::from_utf8(out).expect("utf-8")
}

fn text(value: &[u8]) -> String {
    let mut out = Vec::new();
    text_escape(&mut out, value);
    String::from_utf8(out).expect("utf-8")
}

#[test]
fn json_strings_escape_quotes_backslashes_and_control_characters() {
    for (input, want) in [
        (&b"plain /path?a=1"[..], r#""plain /path?a=1""#),
        (b"a\"b", r#""a\"b""#),
        (b"a\\b", r#""a\\b""#),
        (b"line\nbreak\r\t", r#""line\nbreak\r\t""#),
        (b"\x00\x1b\x7f", r#""\u0000\u001b\u007f""#),
        // Not UTF-8: replaced, so the line stays valid JSON.
        (b"caf\xe9", "\"caf\u{fffd}\""),
        ("café".as_bytes(), "\"café\""),
    ] {
        let got = json(input);
        assert_eq!(got, want, "{input:?}");
        let parsed: serde_json::Value = serde_json::from_str(&got).expect("valid JSON");
        assert!(parsed.is_string());
    }
    let mut out = Vec::new();
    json_bytes(&mut out, None);
    assert_eq!(out, b"null");
}

#[test]
fn text_fields_escape_quotes_backslashes_and_non_printable_bytes() {
    for (input, want) in [
        (&b"plain"[..], "plain"),
        (b"a\"b", r#"a\"b"#),
        (b"a\\b", r#"a\\b"#),
        (b"new\nline", r"new\x0Aline"),
        (b"\x00\x7f\xe9", r"\x00\x7F\xE9"),
    ] {
        assert_eq!(text(input), want, "{input:?}");
    }
    let mut out = Vec::new();
    text_field(&mut out, "host", Some(b"evil\" x=\"1"));
    text_field(&mut out, "trace_id", None);
    assert_eq!(
        String::from_utf8(out).expect("utf-8"),
        r#" host="evil\" x=\"1" trace_id=-"#
    );
}

#[test]
fn trace_id_comes_from_well_formed_traceparents_only() {
    let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for (input, want) in [
        (good, Some("4bf92f3577b34da6a3ce929d0e0e4736")),
        // A later version may append fields.
        (
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            None,
        ),
        (
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            None,
        ),
        (
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            None,
        ),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        (
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        ),
        ("", None),
    ] {
        assert_eq!(trace_id(input), want, "{input}");
    }
}

#[test]
fn times_render_in_utc() {
    // 2026-12-04T12:34:53.123Z
    let time = UNIX_EPOCH + Duration::from_millis(1_796_387_693_123);
    let mut out = Vec::new();
    write_rfc3339(&mut out, time);
    assert_eq!(out, b"2026-12-04T12:34:53.123Z");
    out.clear();
    write_clf_time(&mut out, time);
    assert_eq!(out, b"04/Dec/2026:12:34:53 +0000");
    // A leap day and the epoch.
    out.clear();
    write_rfc3339(&mut out, UNIX_EPOCH + Duration::from_secs(951_782_400));
    assert_eq!(out, b"2000-02-29T00:00:00.000Z");
    out.clear();
    write_rfc3339(&mut out, UNIX_EPOCH);
    assert_eq!(out, b"1970-01-01T00:00:00.000Z");
}

fn record(traceparent: Option<&'static str>) -> Record {
    Record {
        time: UNIX_EPOCH + Duration::from_millis(1_796_387_693_123),
        started: Instant::now(),
        method: Method::POST,
        uri: Uri::from_static("/a%22b?q=1"),
        version: Version::HTTP_2,
        host: Some(HeaderValue::from_static("p\"q.example.com")),
        traceparent: traceparent.map(HeaderValue::from_static),
        request_length: Some(HeaderValue::from_static("5")),
        client: Some(SocketAddr::from(([127, 0, 0, 1], 40_000))),
        served: Served::default(),
        status: 404,
        bytes_sent: 9,
        duration: Duration::from_micros(1_500),
        completed: true,
    }
}

#[test]
fn json_lines_carry_every_field() {
    let mut out = Vec::new();
    record(Some(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ))
    .write_json(&mut out);
    assert_eq!(out.last(), Some(&b'\n'));
    let line: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
    assert_eq!(line["time"], "2026-12-04T12:34:53.123Z");
    assert_eq!(line["client"], "127.0.0.1:40000");
    assert_eq!(line["host"], "p\"q.example.com");
    assert_eq!(line["method"], "POST");
    assert_eq!(line["path"], "/a%22b?q=1");
    assert_eq!(line["protocol"], "HTTP/2");
    assert_eq!(line["status"], 404);
    assert_eq!(line["bytes_sent"], 9);
    assert_eq!(line["request_length"], 5);
    assert_eq!(line["duration_ms"], 1.5);
    assert_eq!(line["route"], serde_json::Value::Null);
    assert_eq!(line["upstream"], serde_json::Value::Null);
    assert_eq!(line["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(line["completed"], true);
}

#[test]
fn text_lines_start_as_common_log_format() {
    let mut out = Vec::new();
    record(None).write_text(&mut out);
    let line = String::from_utf8(out).expect("utf-8");
    assert_eq!(
        line,
        "127.0.0.1 - - [04/Dec/2026:12:34:53 +0000] \"POST /a%22b?q=1 HTTP/2\" 404 9 \
         host=\"p\\\"q.example.com\" client=\"127.0.0.1:40000\" ingress=- route=- backend=- \
         revision=- upstream=- request_length=\"5\" duration_ms=\"1.500\" trace_id=- \
         completed=\"true\"\n"
    );
}

#[test]
fn targets_parse_dash_as_stdout_and_stderr_by_name() {
    assert_eq!(Target::parse("-"), Target::Stdout);
    assert_eq!(Target::parse("stderr"), Target::Stderr);
    assert_eq!(
        Target::parse("/var/log/sluice/access.log"),
        Target::File("/var/log/sluice/access.log".into())
    );
}

#[test]
fn numbers_render_without_core_fmt() {
    for (n, width, want) in [
        (0, 1, "0"),
        (7, 2, "07"),
        (123, 2, "123"),
        (5, 3, "005"),
        (2026, 4, "2026"),
        (u64::MAX, 1, "18446744073709551615"),
    ] {
        let mut out = Vec::new();
        write_padded(&mut out, n, width);
        assert_eq!(String::from_utf8(out).expect("ascii"), want);
    }
    for (micros, want) in [
        (0, "0.000"),
        (1_500, "1.500"),
        (12_345_678, "12345.678"),
        (7, "0.007"),
    ] {
        let mut out = Vec::new();
        write_millis(&mut out, Duration::from_micros(micros));
        assert_eq!(String::from_utf8(out).expect("ascii"), want);
    }
}
