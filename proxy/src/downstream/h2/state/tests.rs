//! The server's state driven by hand-made client frames; what it writes is parsed back.

use super::*;
use http::header::HeaderValue;

/// Envoy's defaults, as the gateway's flags set them.
const PREMATURE_FLOOR: usize = 500;
const PREMATURE_LIFETIME: Duration = Duration::from_secs(1);

fn config() -> Config {
    Config {
        max_header_list: 8 * 1024,
        max_concurrent_streams: 4,
        write_high_water: 64 * 1024,
        stream_window: 64 * 1024,
        connection_window: 1024 * 1024,
        max_local_error_resets: 8,
        premature_floor: PREMATURE_FLOOR,
        premature_lifetime: PREMATURE_LIFETIME,
    }
}

/// A connection that has sent its preface and taken the client's (empty SETTINGS).
fn connected() -> State {
    let mut state = State::new(config());
    state.start();
    let mut input = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut input, &[]);
    let now = state.now;
    state.receive(&mut input, now).expect("a good preface");
    state.take_written();
    state
}

impl State {
    fn take_written(&mut self) -> Vec<(Head, Bytes)> {
        let mut out = self.write.split().freeze();
        let mut frames = Vec::new();
        while !out.is_empty() {
            let mut raw = [0; frame::HEAD_LEN];
            raw.copy_from_slice(&out[..frame::HEAD_LEN]);
            let head = Head::parse(&raw);
            out.advance(frame::HEAD_LEN);
            frames.push((head, out.split_to(head.len as usize)));
        }
        frames
    }

    fn take_accepted(&mut self) -> Vec<NewRequest> {
        let mut taken = Vec::new();
        self.swap_accepted(&mut taken);
        taken
    }

    /// Applies `input` as read at the same time as the last read.
    fn feed(&mut self, input: BytesMut) -> Result<(), ConnectionOver> {
        let now = self.now;
        self.feed_at(input, now)
    }

    fn feed_at(&mut self, input: BytesMut, now: Instant) -> Result<(), ConnectionOver> {
        let mut input = input;
        self.receive(&mut input, now)
    }
}

fn block(fields: &[(&str, &str)]) -> BytesMut {
    let mut block = BytesMut::new();
    for (name, value) in fields {
        hpack::encode(name.as_bytes(), value.as_bytes(), false, &mut block);
    }
    block
}

fn headers_frame(id: u32, fields: &[(&str, &str)], end_stream: bool) -> BytesMut {
    let block = block(fields);
    let mut out = BytesMut::new();
    let flags = frame::END_HEADERS | if end_stream { frame::END_STREAM } else { 0 };
    frame::put_head(&mut out, block.len(), frame::HEADERS, flags, id);
    out.extend_from_slice(&block);
    out
}

const GET: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "example.com"),
    (":path", "/a?b"),
];

fn post(len: &str) -> Vec<(&str, &str)> {
    vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "example.com"),
        (":path", "/"),
        ("content-length", len),
    ]
}

fn resets(frames: &[(Head, Bytes)]) -> Vec<(u32, Reason)> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::RST_STREAM)
        .map(|(h, p)| {
            (
                h.stream,
                Reason::from(u32::from_be_bytes([p[0], p[1], p[2], p[3]])),
            )
        })
        .collect()
}

fn goaway(frames: &[(Head, Bytes)]) -> Option<Reason> {
    frames
        .iter()
        .find(|(h, _)| h.kind == frame::GOAWAY)
        .map(|(_, p)| Reason::from(u32::from_be_bytes([p[4], p[5], p[6], p[7]])))
}

/// Decodes the response heads in `frames` (each HEADERS frame is a whole block here).
fn statuses(frames: &[(Head, Bytes)]) -> Vec<(u32, String)> {
    let mut decoder = hpack::Decoder::new(4096);
    let mut out = Vec::new();
    for (head, payload) in frames.iter().filter(|(h, _)| h.kind == frame::HEADERS) {
        let mut status = String::new();
        decoder
            .decode(payload, 1 << 20, |name, value| {
                if &name[..] == b":status" {
                    status = String::from_utf8_lossy(&value).into_owned();
                }
            })
            .expect("a valid block");
        out.push((head.stream, status));
    }
    out
}

#[test]
fn a_request_head_becomes_a_request_and_its_response_is_encoded() {
    let mut state = connected();
    state
        .feed(headers_frame(1, &[GET, &[("x-a", "1")]].concat(), true))
        .expect("fine");
    let new = state.take_accepted();
    assert_eq!(new.len(), 1);
    let req = &new[0].request;
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.uri(), "http://example.com/a?b");
    assert_eq!(req.version(), Version::HTTP_2);
    assert_eq!(req.headers()["x-a"], "1");
    assert!(new[0].end_stream);
    let mut headers = HeaderMap::new();
    headers.insert("x-b", HeaderValue::from_static("2"));
    assert!(state.send_head(1, StatusCode::OK, &headers, false));
    let mut cx = Context::from_waker(Waker::noop());
    let mut body = Bytes::from_static(b"hello");
    assert_eq!(
        state.poll_send_data(&mut cx, 1, &mut body, true),
        Poll::Ready(true)
    );
    let frames = state.take_written();
    assert_eq!(statuses(&frames), vec![(1, "200".to_string())]);
    let data: Vec<_> = frames
        .iter()
        .filter(|(h, _)| h.kind == frame::DATA)
        .collect();
    assert_eq!(data.len(), 1);
    assert_eq!(&data[0].1[..], b"hello");
    assert!(data[0].0.has(frame::END_STREAM));
    state.release(1, Side::Response);
    assert!(state.is_idle(), "both sides ended and let go: nothing left");
}

#[test]
fn a_connection_must_open_with_the_preface_then_settings() {
    let mut state = State::new(config());
    assert!(state
        .feed(BytesMut::from(&b"GET / HTTP/1.1\r\n\r\n"[..]))
        .is_err());
    assert!(state.take_written().is_empty(), "not HTTP/2: no answer");

    let mut state = State::new(config());
    let mut input = BytesMut::from(frame::PREFACE);
    frame::put_window_update(&mut input, 0, 1);
    assert!(state.feed(input).is_err());
    assert_eq!(goaway(&state.take_written()), Some(Reason::PROTOCOL_ERROR));
}

#[test]
fn malformed_request_heads_are_reset_and_never_started() {
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("uppercase name", [GET, &[("X-A", "1")]].concat()),
        (
            "connection header",
            [GET, &[("connection", "close")]].concat(),
        ),
        ("te other than trailers", [GET, &[("te", "gzip")]].concat()),
        ("no :path", GET[..3].to_vec()),
        ("no :method", GET[1..].to_vec()),
        (
            "late pseudo-header",
            vec![GET[0], GET[1], ("x-a", "1"), GET[2], GET[3]],
        ),
        ("repeated pseudo-header", [GET, &[(":path", "/b")]].concat()),
        (
            "unknown pseudo-header",
            [GET, &[(":protocol", "websocket")]].concat(),
        ),
        (
            "response pseudo-header",
            [GET, &[(":status", "200")]].concat(),
        ),
        (
            "differing lengths",
            [&post("1")[..], &[("content-length", "2")]].concat(),
        ),
        ("length with no body", post("3")),
        (
            "path not in origin form",
            vec![GET[0], GET[1], GET[2], (":path", "a")],
        ),
        (
            "asterisk path on GET",
            vec![GET[0], GET[1], GET[2], (":path", "*")],
        ),
        (
            "userinfo in :authority",
            vec![GET[0], GET[1], (":authority", "u@example.com"), GET[3]],
        ),
    ];
    for (what, fields) in cases {
        let mut state = connected();
        state.feed(headers_frame(1, &fields, true)).expect(what);
        assert_eq!(state.take_accepted().len(), 0, "{what}");
        assert_eq!(
            resets(&state.take_written()),
            vec![(1, Reason::PROTOCOL_ERROR)],
            "{what}"
        );
        assert!(state.is_idle(), "{what}");
    }
}

/// RFC 9113 §5.3.1: a stream error, whether the dependency comes in HEADERS or in PRIORITY;
/// the connection goes on.
#[test]
fn a_stream_that_depends_on_itself_is_reset() {
    let mut state = connected();
    let fields = block(GET);
    let mut input = BytesMut::new();
    let flags = frame::END_HEADERS | frame::END_STREAM | frame::PRIORITY_FLAG;
    frame::put_head(&mut input, 5 + fields.len(), frame::HEADERS, flags, 1);
    input.put_u32(1);
    input.put_u8(16);
    input.extend_from_slice(&fields);
    frame::put_head(&mut input, 5, frame::PRIORITY, 0, 3);
    input.put_u32(3);
    input.put_u8(16);
    // Depending on another stream is fine.
    frame::put_head(&mut input, 5, frame::PRIORITY, 0, 5);
    input.put_u32(1);
    input.put_u8(16);
    input.extend_from_slice(&headers_frame(7, GET, true));
    state.feed(input).expect("stream errors only");
    let written = state.take_written();
    assert_eq!(
        resets(&written),
        vec![(1, Reason::PROTOCOL_ERROR), (3, Reason::PROTOCOL_ERROR)]
    );
    assert_eq!(goaway(&written), None);
    let accepted = state.take_accepted();
    assert_eq!(accepted.len(), 1, "only stream 7 is a request");
}

/// RFC 9113 §6.9, §6.9.1: on a stream, an increment of 0 or one past 2^31 - 1 resets that
/// stream only; on a stream already reset it is ignored; on an idle stream it ends the
/// connection.
#[test]
fn window_update_errors_on_a_stream_reset_it_and_on_an_idle_one_end_the_connection() {
    let mut state = connected();
    let mut input = headers_frame(1, GET, true);
    input.extend_from_slice(&headers_frame(3, GET, true));
    frame::put_window_update(&mut input, 1, 0);
    frame::put_window_update(&mut input, 3, 0x7fff_ffff);
    frame::put_window_update(&mut input, 1, 1);
    state.feed(input).expect("stream errors only");
    assert_eq!(state.take_accepted().len(), 2);
    let written = state.take_written();
    assert_eq!(
        resets(&written),
        vec![(1, Reason::PROTOCOL_ERROR), (3, Reason::FLOW_CONTROL_ERROR)]
    );
    assert_eq!(goaway(&written), None);
    let mut idle = BytesMut::new();
    frame::put_window_update(&mut idle, 5, 1);
    assert!(state.feed(idle).is_err());
    assert_eq!(goaway(&state.take_written()), Some(Reason::PROTOCOL_ERROR));
}

#[test]
fn streams_past_the_limit_are_refused() {
    let mut state = connected();
    for id in [1, 3, 5, 7, 9] {
        state.feed(headers_frame(id, GET, true)).expect("fine");
    }
    assert_eq!(state.take_accepted().len(), 4);
    assert_eq!(
        resets(&state.take_written()),
        vec![(9, Reason::REFUSED_STREAM)]
    );
    // One ends: its place is free again.
    assert!(state.send_head(1, StatusCode::OK, &HeaderMap::new(), true));
    state.release(1, Side::Response);
    state.feed(headers_frame(11, GET, true)).expect("fine");
    assert_eq!(state.take_accepted().len(), 1);
}

#[test]
fn request_bodies_are_checked_against_content_length_and_the_windows() {
    let mut cx = Context::from_waker(Waker::noop());
    // More than Content-Length says.
    let mut state = connected();
    let mut input = headers_frame(1, &post("3"), false);
    frame::put_data(&mut input, 1, b"abcd", true);
    state.feed(input).expect("a stream error only");
    assert_eq!(
        resets(&state.take_written()),
        vec![(1, Reason::PROTOCOL_ERROR)]
    );
    let mut ended = false;
    assert!(matches!(
        state.poll_body(&mut cx, 1, &mut ended),
        Poll::Ready(Some(Err(ClientStreamError::Protocol(_))))
    ));

    // Past the stream window (64 KiB): a stream error; the connection goes on.
    let mut state = connected();
    let mut input = headers_frame(1, &post("100000"), false);
    for _ in 0..5 {
        frame::put_data(&mut input, 1, &[b'x'; 16_000], false);
    }
    state.feed(input).expect("a stream error only");
    assert_eq!(
        resets(&state.take_written()),
        vec![(1, Reason::FLOW_CONTROL_ERROR)]
    );

    // Past the connection window (1 MiB) across streams: the connection ends.
    let mut state = Shared::new(Config {
        max_concurrent_streams: 100,
        ..config()
    })
    .state
    .into_inner()
    .expect("not poisoned");
    let mut input = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut input, &[]);
    for i in 0..20u32 {
        let id = 2 * i + 1;
        input.extend_from_slice(&headers_frame(id, &post("60000"), false));
        for _ in 0..4 {
            frame::put_data(&mut input, id, &[b'x'; 15_000], false);
        }
    }
    assert!(state.feed(input).is_err());
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::FLOW_CONTROL_ERROR)
    );
}

#[test]
fn a_read_body_gives_its_window_back() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut state = connected();
    let mut input = headers_frame(1, &post("40000"), false);
    frame::put_data(&mut input, 1, &[b'x'; 16_384], false);
    frame::put_data(&mut input, 1, &[b'x'; 16_384], false);
    state.feed(input).expect("fine");
    state.take_accepted().len();
    let mut ended = false;
    for _ in 0..2 {
        assert!(matches!(
            state.poll_body(&mut cx, 1, &mut ended),
            Poll::Ready(Some(Ok(_)))
        ));
    }
    assert!(!ended);
    let updates: Vec<u32> = state
        .take_written()
        .iter()
        .filter(|(h, _)| h.kind == frame::WINDOW_UPDATE)
        .map(|(h, _)| h.stream)
        .collect();
    assert_eq!(updates, vec![1], "half the stream window used: one update");
    let mut input = BytesMut::new();
    frame::put_data(&mut input, 1, &[b'x'; 40_000 - 2 * 16_384], true);
    state.feed(input).expect("fine");
    assert!(matches!(
        state.poll_body(&mut cx, 1, &mut ended),
        Poll::Ready(Some(Ok(_)))
    ));
    assert!(ended, "the last frame ended the body");
}

#[test]
fn a_response_waits_for_window_and_is_cut_to_the_frame_size() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut state = connected();
    state.feed(headers_frame(1, GET, true)).expect("fine");
    state.take_accepted().len();
    assert!(state.send_head(1, StatusCode::OK, &HeaderMap::new(), false));
    let mut body = Bytes::from(vec![b'y'; 100_000]);
    assert_eq!(
        state.poll_send_data(&mut cx, 1, &mut body, true),
        Poll::Pending
    );
    let sent: usize = state
        .take_written()
        .iter()
        .filter(|(h, _)| h.kind == frame::DATA)
        .map(|(h, _)| {
            assert!(h.len <= frame::DEFAULT_MAX_FRAME);
            h.len as usize
        })
        .sum();
    assert_eq!(sent, 65_535, "the client's initial window");
    let mut input = BytesMut::new();
    frame::put_window_update(&mut input, 0, 50_000);
    frame::put_window_update(&mut input, 1, 50_000);
    state.feed(input).expect("fine");
    assert_eq!(
        state.poll_send_data(&mut cx, 1, &mut body, true),
        Poll::Ready(true)
    );
}

#[test]
fn a_response_done_before_its_request_body_asks_the_client_to_stop() {
    let mut state = connected();
    state
        .feed(headers_frame(1, &post("1000"), false))
        .expect("fine");
    state.take_accepted().len();
    assert!(state.send_head(1, StatusCode::OK, &HeaderMap::new(), true));
    state.release(1, Side::Response);
    assert!(
        resets(&state.take_written()).is_empty(),
        "the body is still read"
    );
    state.release(1, Side::RequestBody);
    assert_eq!(resets(&state.take_written()), vec![(1, Reason::NO_ERROR)]);
    assert!(state.is_idle());
}

#[test]
fn a_header_list_over_the_limit_gets_431_and_a_bomb_ends_the_connection() {
    let big = "v".repeat(9 * 1024);
    let mut state = connected();
    state
        .feed(headers_frame(
            1,
            &[GET, &[("x-big", big.as_str())]].concat(),
            true,
        ))
        .expect("a stream answer only");
    assert_eq!(state.take_accepted().len(), 0);
    assert_eq!(
        statuses(&state.take_written()),
        vec![(1, "431".to_string())]
    );
    assert!(state.is_idle());

    // One 4 KB entry put in the table, then referenced ten times: 40 KB from a few bytes.
    let mut state = connected();
    let mut fields = block(GET);
    fields.extend_from_slice(&[0x40, 0x01, b'x', 0x7f, 0xa1, 0x1e]);
    fields.extend_from_slice(&[b'z'; 4000]);
    fields.extend_from_slice(&[0xbe; 10]);
    let mut input = BytesMut::new();
    frame::put_head(
        &mut input,
        fields.len(),
        frame::HEADERS,
        frame::END_HEADERS | frame::END_STREAM,
        1,
    );
    input.extend_from_slice(&fields);
    assert!(state.feed(input).is_err());
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn endless_continuation_frames_end_the_connection() {
    let mut state = connected();
    let fields = block(GET);
    let mut input = BytesMut::new();
    frame::put_head(&mut input, fields.len(), frame::HEADERS, 0, 1);
    input.extend_from_slice(&fields);
    for _ in 0..=frame::MAX_CONTINUATIONS {
        frame::put_head(&mut input, 0, frame::CONTINUATION, 0, 1);
    }
    assert!(state.feed(input).is_err());
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

fn reset_frame(id: u32) -> BytesMut {
    let mut input = BytesMut::new();
    frame::put_rst_stream(&mut input, id, Reason::CANCEL);
    input
}

fn many_streams() -> State {
    many_streams_with(config())
}

/// A connection past its preface, under `config` with 100 concurrent streams.
fn many_streams_with(config: Config) -> State {
    let mut state = Shared::new(Config {
        max_concurrent_streams: 100,
        ..config
    })
    .state
    .into_inner()
    .expect("not poisoned");
    let mut input = BytesMut::from(frame::PREFACE);
    frame::put_settings(&mut input, &[]);
    state.feed(input).expect("fine");
    state
}

#[test]
fn resets_after_a_second_or_after_the_answer_are_no_attack() {
    let mut state = many_streams();
    let start = state.now;
    let later = start + PREMATURE_LIFETIME;
    let mut id = 1;
    for _ in 0..PREMATURE_FLOOR {
        // Cancelled after a second: a client giving up on a slow answer.
        state
            .feed_at(headers_frame(id, GET, true), start)
            .expect("fine");
        assert_eq!(state.take_accepted().len(), 1);
        state
            .feed_at(reset_frame(id), later)
            .expect("a late cancel");
        state.release(id, Side::Response);
        // Cancelled at once, but after its response head: the work was done.
        let next = id + 2;
        state
            .feed_at(headers_frame(next, GET, true), later)
            .expect("fine");
        assert_eq!(state.take_accepted().len(), 1);
        assert!(state.send_head(next, StatusCode::OK, &HeaderMap::new(), false));
        state
            .feed_at(reset_frame(next), later)
            .expect("a cancel after the head");
        state.release(next, Side::Response);
        id += 4;
    }
    assert!(state.is_idle());
    assert_eq!(goaway(&state.take_written()), None);
}

#[test]
fn premature_resets_end_the_connection_by_envoys_rule() {
    // Fewer than the floor, all premature: a connection that cancels at times is kept.
    let mut state = many_streams();
    let now = state.now;
    let mut id = 1;
    for _ in 1..PREMATURE_FLOOR {
        state
            .feed_at(headers_frame(id, GET, true), now)
            .expect("fine");
        state.take_accepted();
        state
            .feed_at(reset_frame(id), now)
            .expect("under the floor");
        state.release(id, Side::Response);
        id += 2;
    }
    // The floor reached with every stream premature: the end.
    let mut input = headers_frame(id, GET, true);
    input.extend_from_slice(&reset_frame(id));
    assert!(
        state.feed_at(input, now).is_err(),
        "the floor, all premature"
    );
    assert_eq!(
        state.take_accepted().len(),
        0,
        "reset in the same read: never started"
    );
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );

    // Past the floor, half the closed streams premature, whether reset in the read that
    // opened them (never started) or 10 ms later (started, then cancelled: spaced resets).
    let mut state = many_streams();
    let mut now = state.now;
    let mut id = 1;
    for _ in 0..PREMATURE_FLOOR {
        state
            .feed_at(headers_frame(id, GET, true), now)
            .expect("fine");
        state.take_accepted();
        now += PREMATURE_LIFETIME;
        state.feed_at(reset_frame(id), now).expect("not premature");
        state.release(id, Side::Response);
        id += 2;
    }
    let mut premature = 0;
    loop {
        let mut input = headers_frame(id, GET, true);
        if premature % 2 == 0 {
            input.extend_from_slice(&reset_frame(id));
            premature += 1;
            if state.feed_at(input, now).is_err() {
                break;
            }
            assert_eq!(state.take_accepted().len(), 0);
        } else {
            state.feed_at(input, now).expect("fine");
            assert_eq!(state.take_accepted().len(), 1, "started");
            now += Duration::from_millis(10);
            premature += 1;
            let over = state.feed_at(reset_frame(id), now).is_err();
            state.release(id, Side::Response);
            if over {
                break;
            }
        }
        id += 2;
        assert!(premature <= 2 * PREMATURE_FLOOR, "never cut off");
    }
    assert_eq!(
        premature, PREMATURE_FLOOR,
        "half of the streams were premature"
    );
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

/// The rule follows its settings (the gateway's `--h2-premature-reset-*` flags): a shorter
/// lifetime lets a reset after it pass, and a floor of 0 turns the rule off.
#[test]
fn the_premature_reset_rule_follows_its_settings() {
    let with = |premature_floor, premature_lifetime| {
        many_streams_with(Config {
            premature_floor,
            premature_lifetime,
            ..config()
        })
    };
    // Reset 20 ms after opening: premature under a 1 s lifetime, not under a 10 ms one.
    for (lifetime, cut_off) in [
        (Duration::from_secs(1), true),
        (Duration::from_millis(10), false),
    ] {
        let mut state = with(10, lifetime);
        let mut now = state.now;
        let mut ended = false;
        for id in (1..=41).step_by(2) {
            state
                .feed_at(headers_frame(id, GET, true), now)
                .expect("fine");
            state.take_accepted();
            now += Duration::from_millis(20);
            ended |= state.feed_at(reset_frame(id), now).is_err();
            state.release(id, Side::Response);
            if ended {
                break;
            }
        }
        assert_eq!(ended, cut_off, "lifetime {lifetime:?}");
    }
    // A floor of 0: 1,000 streams reset in the read that opened them, and the connection stays.
    let mut state = with(0, Duration::from_secs(1));
    for id in (1..2000).step_by(2) {
        let mut input = headers_frame(id, GET, true);
        input.extend_from_slice(&reset_frame(id));
        state.feed(input).expect("the rule is off");
    }
    assert_eq!(goaway(&state.take_written()), None);
}

#[test]
fn consecutive_empty_data_frames_end_the_connection() {
    let mut state = connected();
    state
        .feed(headers_frame(1, &post("3"), false))
        .expect("fine");
    assert_eq!(state.take_accepted().len(), 1);
    let data = |payload: &[u8], end: bool| {
        let mut out = BytesMut::new();
        frame::put_data(&mut out, 1, payload, end);
        out
    };
    // One empty frame at a time, between frames that carry data, is allowed.
    state.feed(data(b"", false)).expect("one empty frame");
    state.feed(data(b"a", false)).expect("fine");
    state.feed(data(b"", false)).expect("one empty frame");
    state.feed(data(b"b", false)).expect("fine");
    // Two in a row carry nothing twice: CVE-2019-9518.
    state.feed(data(b"", false)).expect("one empty frame");
    assert!(state.feed(data(b"", false)).is_err());
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
    // An empty frame that ends its stream is no flood.
    let mut state = connected();
    state
        .feed(headers_frame(1, &post("0"), false))
        .expect("fine");
    state.feed(data(b"", false)).expect("one empty frame");
    state.feed(data(b"", true)).expect("the end of the body");
}

fn goaway_last_ids(frames: &[(Head, Bytes)]) -> Vec<u32> {
    frames
        .iter()
        .filter(|(h, _)| h.kind == frame::GOAWAY)
        .map(|(_, p)| u32::from_be_bytes([p[0], p[1], p[2], p[3]]))
        .collect()
}

fn ping(payload: &[u8; 8], ack: bool) -> BytesMut {
    let mut out = BytesMut::new();
    frame::put_head(
        &mut out,
        8,
        frame::PING,
        if ack { frame::ACK } else { 0 },
        0,
    );
    out.extend_from_slice(payload);
    out
}

#[test]
fn graceful_shutdown_takes_streams_sent_before_the_client_saw_it_then_no_more() {
    let mut state = connected();
    state.feed(headers_frame(1, GET, true)).expect("fine");
    assert_eq!(state.take_accepted().len(), 1);
    state.graceful_shutdown();
    let frames = state.take_written();
    assert_eq!(
        goaway_last_ids(&frames),
        vec![MAX_STREAM_ID],
        "first: refuse nothing"
    );
    let (_, payload) = frames
        .iter()
        .find(|(h, _)| h.kind == frame::PING && !h.has(frame::ACK))
        .expect("a PING after it");
    assert_eq!(payload[..], DRAIN_PING);
    // Stream 3 crossed the GOAWAY on the wire: it is served.
    state.feed(headers_frame(3, GET, true)).expect("fine");
    assert_eq!(state.take_accepted().len(), 1);
    state.feed(ping(&DRAIN_PING, true)).expect("the ACK");
    assert_eq!(
        goaway_last_ids(&state.take_written()),
        vec![3],
        "then: the last stream taken"
    );
    state.feed(headers_frame(5, GET, true)).expect("ignored");
    assert_eq!(state.take_accepted().len(), 0);
    for id in [1, 3] {
        assert!(!state.finished(), "stream {id} is still open");
        assert!(state.send_head(id, StatusCode::OK, &HeaderMap::new(), true));
        state.release(id, Side::Response);
    }
    assert!(state.finished());
}

#[test]
fn a_graceful_shutdown_without_the_ack_ends_when_the_connection_stops_waiting() {
    let mut state = connected();
    // The drain payload echoed before any shutdown changes nothing.
    state.feed(ping(&DRAIN_PING, true)).expect("fine");
    assert!(goaway_last_ids(&state.take_written()).is_empty());
    state.feed(headers_frame(1, GET, true)).expect("fine");
    state.take_accepted();
    state.graceful_shutdown();
    state.graceful_shutdown();
    assert_eq!(
        goaway_last_ids(&state.take_written()),
        vec![MAX_STREAM_ID],
        "one notice"
    );
    state.finish_shutdown();
    state.finish_shutdown();
    assert_eq!(
        goaway_last_ids(&state.take_written()),
        vec![1],
        "one final GOAWAY"
    );
    assert!(!state.finished(), "stream 1 is still open");
    assert!(state.send_head(1, StatusCode::OK, &HeaderMap::new(), true));
    state.release(1, Side::Response);
    assert!(state.finished());
}

#[test]
fn client_protocol_errors_end_the_connection() {
    let cases: Vec<(&str, BytesMut, Reason)> = vec![
        (
            "HEADERS on an even stream",
            headers_frame(2, GET, true),
            Reason::PROTOCOL_ERROR,
        ),
        (
            "DATA on an idle stream",
            {
                let mut b = BytesMut::new();
                frame::put_data(&mut b, 5, b"x", false);
                b
            },
            Reason::PROTOCOL_ERROR,
        ),
        (
            "PUSH_PROMISE",
            {
                let mut b = BytesMut::new();
                frame::put_head(&mut b, 4, frame::PUSH_PROMISE, frame::END_HEADERS, 1);
                b.put_u32(2);
                b
            },
            Reason::PROTOCOL_ERROR,
        ),
        (
            "a frame over 16 KiB",
            {
                let mut b = BytesMut::new();
                frame::put_head(&mut b, 20_000, frame::DATA, 0, 1);
                b
            },
            Reason::FRAME_SIZE_ERROR,
        ),
        (
            "connection window overflow",
            {
                let mut b = BytesMut::new();
                frame::put_window_update(&mut b, 0, 0x7fff_ffff);
                b
            },
            Reason::FLOW_CONTROL_ERROR,
        ),
        (
            "a bad HPACK block",
            {
                let mut b = BytesMut::new();
                frame::put_head(&mut b, 1, frame::HEADERS, frame::END_HEADERS, 1);
                b.put_u8(0x80);
                b
            },
            Reason::COMPRESSION_ERROR,
        ),
    ];
    for (what, input, reason) in cases {
        let mut state = connected();
        assert!(state.feed(input).is_err(), "{what}");
        assert_eq!(goaway(&state.take_written()), Some(reason), "{what}");
    }
}

/// A read that opens a stream and then breaks the connection starts nothing: the request
/// would be served for a client that is already gone.
#[test]
fn a_request_in_the_read_that_fails_the_connection_is_never_started() {
    let mut state = connected();
    let mut input = headers_frame(1, GET, true);
    frame::put_head(&mut input, 4, frame::PUSH_PROMISE, frame::END_HEADERS, 1);
    input.put_u32(2);
    assert!(state.feed(input).is_err());
    assert_eq!(state.take_accepted().len(), 0);
    assert!(state.is_idle(), "nothing holds the stream");
    assert!(state.finished());
}

/// How many more PINGs (17 bytes each) a connection takes, having received `received` bytes of
/// frames of which `content` were content, before nginx's rule ends it.
fn pings_allowed(received: u64, content: u64) -> u64 {
    let ping = (frame::HEAD_LEN + 8) as u64;
    let limit = (content + FLOOD_ALLOWANCE) * FLOOD_RATIO + FLOOD_RATIO; // the first total over it
    (limit - received).div_ceil(ping) - 1
}

/// Feeds `n` PINGs, 10,000 to a read, dropping the ACKs as a reading client would take them.
fn feed_pings(state: &mut State, n: u64) -> Result<(), ConnectionOver> {
    let batch = ping(b"flooding", false).repeat(10_000);
    let mut left = n;
    while left > 0 {
        let count = left.min(10_000);
        let len = count as usize * (frame::HEAD_LEN + 8);
        state.feed(BytesMut::from(&batch[..len]))?;
        state.write.clear();
        left -= count;
    }
    Ok(())
}

#[test]
fn a_control_frame_flood_from_a_client_that_reads_ends_the_connection_by_nginxs_rule() {
    let mut state = connected();
    // The preface's SETTINGS (9 bytes) is all it received; none of it content.
    let allowed = pings_allowed(frame::HEAD_LEN as u64, 0);
    assert!(allowed > 490_000, "{allowed}: about 8 MiB of PINGs");
    feed_pings(&mut state, allowed).expect("within the allowance");
    assert!(
        state.feed(ping(b"flooding", false)).is_err(),
        "one PING more is a flood"
    );
    assert_eq!(
        goaway(&state.take_written()),
        Some(Reason::ENHANCE_YOUR_CALM)
    );
}

#[test]
fn request_and_response_content_raise_the_control_frame_allowance() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut state = connected();
    let head = headers_frame(1, &post("60000"), false);
    let block = (head.len() - frame::HEAD_LEN) as u64;
    let mut received = (frame::HEAD_LEN + head.len()) as u64;
    state.feed(head).expect("fine");
    assert_eq!(state.take_accepted().len(), 1);
    let body = vec![b'x'; 60_000];
    let mut data = BytesMut::new();
    for (i, chunk) in body.chunks(frame::DEFAULT_MAX_FRAME as usize).enumerate() {
        frame::put_data(&mut data, 1, chunk, (i + 1) * 16_384 >= body.len());
        received += (frame::HEAD_LEN + chunk.len()) as u64;
    }
    state.feed(data).expect("the request body");
    assert!(state.send_head(1, StatusCode::OK, &HeaderMap::new(), false));
    let mut response = Bytes::from(vec![b'y'; 50_000]);
    assert_eq!(
        state.poll_send_data(&mut cx, 1, &mut response, false),
        Poll::Ready(true)
    );
    state.write.clear();
    let allowed = pings_allowed(received, block + 60_000 + 50_000);
    // 110 KB of content allow 8 × 110 KB more bytes of frames, less the 60 KB they came in:
    // about 48,000 PINGs more than a connection with no content.
    assert!(allowed > pings_allowed(frame::HEAD_LEN as u64, 0) + 45_000);
    feed_pings(&mut state, allowed).expect("within the allowance");
    assert!(state.feed(ping(b"flooding", false)).is_err());
}
