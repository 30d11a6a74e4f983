//! The HTTP/1.1 upstream client's response framing (`sluice_proxy::h1::framing`): arbitrary
//! bytes, fed in arbitrary pieces, as one response. The parser never panics; the decoder never
//! takes a byte past the body's frame (a Content-Length body yields exactly that many bytes;
//! whatever follows the end stays in the buffer); the verdict does not depend on how the
//! bytes were split; and a connection is judged reusable only for a cleanly framed response
//! (keep-alive, a length or chunked frame that ended, nothing after it). A head kept as lines
//! holds the same fields, and gets the same verdict, as its header map.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_proxy::h1::framing::{parse_head, Decoded, Decoder, FrameError, Framing, HeadOptions};

#[derive(Debug, PartialEq)]
struct Verdict {
    status: u16,
    body: Vec<u8>,
    trailers: usize,
    reusable: bool,
}

/// Reads one response from `input` in pieces of `step` bytes, as the client does.
fn read(input: &[u8], head_request: bool, step: usize) -> Result<Verdict, FrameError> {
    let mut buf = BytesMut::new();
    let mut rest = input;
    let mut feed = |buf: &mut BytesMut| -> bool {
        if rest.is_empty() {
            return false;
        }
        let n = step.min(rest.len());
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        true
    };
    let mut interim = 0;
    let head = loop {
        let options = HeadOptions {
            head_request,
            keep_lines: false,
        };
        if let Some(head) = parse_head(&mut buf, options)? {
            if head.status.is_informational() {
                interim += 1;
                assert_eq!(head.framing, Framing::Empty, "a 1xx has no body");
                if interim > 8 {
                    return Err(FrameError::Head("interim loop"));
                }
                continue;
            }
            break head;
        }
        assert!(
            buf.len() < sluice_proxy::h1::framing::MAX_HEAD,
            "a partial head past the cap"
        );
        if !feed(&mut buf) {
            return Err(FrameError::Incomplete);
        }
    };
    let declared = match head.framing {
        Framing::Length(n) => Some(n),
        Framing::Empty => Some(0),
        _ => None,
    };
    let mut decoder = Decoder::new(head.framing);
    let mut body = Vec::new();
    let mut trailers = 0;
    let mut eof = false;
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf)? {
            Decoded::Data(d) => {
                assert!(!d.is_empty(), "an empty data frame");
                assert!(d.len() <= before, "took more than the buffer held");
                body.extend_from_slice(&d);
                if let Some(n) = declared {
                    assert!(body.len() as u64 <= n, "read past the declared length");
                }
            }
            Decoded::Trailers(t) => trailers += t.len(),
            Decoded::End => break,
            Decoded::NeedMore => {
                if !feed(&mut buf) {
                    decoder.eof()?;
                    eof = true;
                }
            }
        }
    }
    if let (Some(n), false) = (declared, eof) {
        assert_eq!(body.len() as u64, n, "a length body ended short");
    }
    let leftover = !buf.is_empty() || !rest.is_empty();
    let reusable = head.keep_alive && !eof && !leftover;
    if reusable {
        assert!(
            matches!(
                head.framing,
                Framing::Empty | Framing::Length(_) | Framing::Chunked
            ),
            "reusable after a read-to-close body"
        );
        assert!(decoder.is_done());
    }
    Ok(Verdict {
        status: head.status.as_u16(),
        body,
        trailers,
        reusable,
    })
}

/// A head kept as lines (the HTTP/1.1 server's fast path) holds exactly the fields, and gets
/// exactly the verdict, that building its header map does: the lines skip the map's own checks
/// of names and values, so httparse's must be the same.
fn check_lines(input: &[u8], head_request: bool) {
    let parse = |keep_lines| {
        let options = HeadOptions {
            head_request,
            keep_lines,
        };
        parse_head(&mut BytesMut::from(input), options)
    };
    match (parse(false), parse(true)) {
        (Ok(Some(mapped)), Ok(Some(kept))) => {
            assert!(mapped.lines.is_none());
            let mut fields = kept.headers;
            if let Some(lines) = &kept.lines {
                assert!(fields.is_empty(), "fields both as lines and in the map");
                lines.append_to(&mut fields);
            }
            assert_eq!(mapped.headers, fields, "lines and map differ");
            assert_eq!(mapped.framing, kept.framing);
            assert_eq!(mapped.keep_alive, kept.keep_alive);
        }
        (Ok(None), Ok(None)) => {}
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!("verdicts differ: map {a:?}, lines {b:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else {
        return;
    };
    let head_request = flags & 1 == 1;
    let step = usize::from(flags >> 1).max(1);
    check_lines(input, head_request);
    let whole = read(input, head_request, input.len().max(1));
    let pieces = read(input, head_request, step);
    assert_eq!(
        whole, pieces,
        "the verdict depends on how the bytes were split"
    );
});
