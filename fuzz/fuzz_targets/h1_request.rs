//! The downstream HTTP/1.1 server's request framing (`sluice_proxy::downstream::h1::head` and
//! the body decoder it shares with the upstream client): arbitrary bytes from a client, fed in
//! arbitrary pieces, read as a sequence of requests the way the server reads them. The parser
//! never panics; a head is never taken past the head limit; a Content-Length body yields
//! exactly that many bytes and a chunked one never a byte past its end; and what is read (each
//! request's method, target, headers and body, and where reading stopped) does not depend on
//! how the bytes were split.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sluice_proxy::downstream::h1::head::{parse, HeadError, Parsed};
use sluice_proxy::h1::framing::{Decoded, Decoder, Framing};

const MAX_HEAD: usize = 4096;
const MAX_HEADERS: usize = 16;

#[derive(Debug, PartialEq)]
enum Stop {
    /// The bytes ended between requests.
    Clean,
    /// The bytes ended inside a head or a body.
    Truncated,
    Refused(HeadError),
    BadBody,
    /// The server stops reading after a request that does not keep the connection.
    Closed,
}

#[derive(Debug, PartialEq)]
struct Request {
    method: String,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn read(input: &[u8], step: usize) -> (Vec<Request>, Stop) {
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
    let mut requests = Vec::new();
    for _ in 0..16 {
        let head = loop {
            match parse(&buf, MAX_HEAD, MAX_HEADERS) {
                Ok(Parsed::Complete(len, head)) => {
                    assert!(len <= MAX_HEAD, "a head past the limit");
                    let _ = buf.split_to(len);
                    break head;
                }
                Ok(Parsed::Partial) => {
                    assert!(buf.len() < MAX_HEAD, "a partial head at the limit");
                    if !feed(&mut buf) {
                        let stop = if buf.is_empty() {
                            Stop::Clean
                        } else {
                            Stop::Truncated
                        };
                        return (requests, stop);
                    }
                }
                Err(e) => return (requests, Stop::Refused(e)),
            }
        };
        assert_ne!(
            head.framing,
            Framing::UntilClose,
            "a request body read to close"
        );
        let declared = match head.framing {
            Framing::Length(n) => Some(n),
            Framing::Empty => Some(0),
            _ => None,
        };
        let mut decoder = Decoder::new(head.framing);
        let mut body = Vec::new();
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(d)) => {
                    assert!(!d.is_empty() && d.len() <= before);
                    body.extend_from_slice(&d);
                    if let Some(n) = declared {
                        assert!(body.len() as u64 <= n, "read past the declared length");
                    }
                }
                Ok(Decoded::Trailers(_)) => {}
                Ok(Decoded::End) => break,
                Ok(Decoded::NeedMore) => {
                    if !feed(&mut buf) {
                        assert!(decoder.eof().is_err(), "a request body ended by EOF");
                        return (requests, Stop::Truncated);
                    }
                }
                Err(_) => return (requests, Stop::BadBody),
            }
        }
        if let Some(n) = declared {
            assert_eq!(body.len() as u64, n);
        }
        let (parts, ()) = head.request.into_parts();
        requests.push(Request {
            method: parts.method.to_string(),
            target: parts.uri.to_string(),
            headers: parts
                .headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect(),
            body,
        });
        if !head.keep_alive {
            return (requests, Stop::Closed);
        }
    }
    (requests, Stop::Closed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, input)) = data.split_first() else {
        return;
    };
    let whole = read(input, input.len().max(1));
    let pieces = read(input, usize::from(step).max(1));
    assert_eq!(
        whole, pieces,
        "what is read depends on how the bytes were split"
    );
});
