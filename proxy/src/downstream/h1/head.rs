//! Pure request-head parsing and response-head encoding for the downstream HTTP/1.1 server. No
//! I/O, so the fuzz target and table tests drive exactly what the server runs.
//!
//! The parser is `httparse` (hyper's), with hyper's strictness and then some, because a client
//! is untrusted: obs-fold, a space before a colon, a bad request line (400); a head over the
//! limit or more headers than allowed (431); differing or malformed Content-Lengths (400); a
//! Transfer-Encoding on HTTP/1.0 or one whose last coding is not `chunked` (400). Content-Length
//! beside Transfer-Encoding is dropped and the connection closed after the response (RFC 9112
//! §6.3). What hyper left to the request path stays there (`downstream::check_request_head`:
//! other codings 501, `chunked` twice 400, Host rules, the target length).

use crate::h1::framing::{connection_tokens, parse_content_length, Framing, HeaderLines};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri, Version};
use std::mem::MaybeUninit;

/// What a refused head is answered with; the connection is closed after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("bad request: {0}")]
    Malformed(&'static str),
    /// Over the head size limit, or more headers than allowed: 431.
    #[error("request header fields too large")]
    TooLarge,
    /// Not HTTP/1.0 or HTTP/1.1: 505, as hyper answers.
    #[error("http version not supported")]
    Version,
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::Malformed(_) => StatusCode::BAD_REQUEST,
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// A parsed request head: the request (body to be attached) and how to treat the connection.
#[derive(Debug)]
pub struct RequestHead {
    pub request: Request<()>,
    /// [`Framing::Empty`], [`Framing::Length`] or [`Framing::Chunked`]; never `UntilClose`.
    pub framing: Framing,
    /// The version and `Connection` allow another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1: the client waits for a 100 before its body.
    pub expect_continue: bool,
    /// An `Upgrade` header is present (noted while parsing, not looked up again).
    pub upgrade: bool,
}

/// The parse of the bytes so far.
// Returned once per request and unpacked at once: boxing the head would add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Parsed {
    /// No complete head yet: read more (the bytes stay where they are).
    Partial,
    /// The head took the first `usize` bytes; what follows is its body or the next request.
    Complete(usize, RequestHead),
}

/// Most headers kept on the stack while parsing; a larger `--max-request-headers` parses into
/// a heap array.
const STACK_HEADERS: usize = 100;

/// Parses a request head from the front of `buf`. Only the first `max_head` bytes are looked
/// at: a head not complete within them is [`HeadError::TooLarge`], however it arrived.
pub fn parse(buf: &[u8], max_head: usize, max_headers: usize) -> Result<Parsed, HeadError> {
    if max_headers <= STACK_HEADERS {
        // Left uninitialised: zeroing 100 headers costs more than parsing a short head.
        let mut headers = [const { MaybeUninit::uninit() }; STACK_HEADERS];
        parse_into(buf, max_head, &mut headers[..max_headers])
    } else {
        let mut headers = Vec::with_capacity(max_headers);
        headers.resize_with(max_headers, MaybeUninit::uninit);
        parse_into(buf, max_head, &mut headers)
    }
}

fn parse_into<'b>(
    buf: &'b [u8],
    max_head: usize,
    headers: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Parsed, HeadError> {
    let window = &buf[..buf.len().min(max_head)];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_request_with_uninit_headers(&mut req, window, headers)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= max_head => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(HeadError::Version),
        Err(httparse::Error::Token) => return Err(HeadError::Malformed("invalid method")),
        Err(httparse::Error::Status | httparse::Error::NewLine) => {
            return Err(HeadError::Malformed("invalid request line"))
        }
        Err(_) => return Err(HeadError::Malformed("invalid header line")),
    };
    // One copy of the head, which every value and the target then share (no allocation per
    // header). The connection's read buffer is not kept: see `downstream::h1`.
    let head = Bytes::copy_from_slice(&buf[..len]);
    let base = buf.as_ptr() as usize;
    let share = |part: &[u8]| {
        let at = part.as_ptr() as usize - base;
        head.slice(at..at + part.len())
    };
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes())
        .map_err(|_| HeadError::Malformed("invalid method"))?;
    let target = req.path.unwrap_or_default();
    let uri = Uri::from_maybe_shared(share(target.as_bytes()))
        .map_err(|_| HeadError::Malformed("invalid request target"))?;
    let http11 = req.version == Some(1);
    // Three spare: lookups in a full map probe further (sized exactly, about 200 more
    // instructions per request; one spare, about 110), and a request the path adds to (a
    // client's `X-Forwarded-*` extended, a SET, a Host) does not grow it.
    let mut map = HeaderMap::with_capacity(req.headers.len() + 3);
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut expect_continue = false;
    let mut transfer_encoding = false;
    let mut upgrade = false;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(share(h.value))
            .map_err(|_| HeadError::Malformed("invalid header value"))?;
        if name == header::CONTENT_LENGTH {
            let n = parse_content_length(value.as_bytes())
                .ok_or(HeadError::Malformed("invalid content-length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(HeadError::Malformed("differing content-length values"));
            }
            content_length = Some(n);
        } else if name == header::TRANSFER_ENCODING {
            if !http11 {
                return Err(HeadError::Malformed("transfer-encoding on HTTP/1.0"));
            }
            // Only the last coding of the last line decides; the request path refuses the
            // rest (other codings 501, `chunked` twice 400).
            chunked = last_coding_is_chunked(value.as_bytes());
            transfer_encoding = true;
        } else if name == header::CONNECTION {
            let (says_close, says_keep_alive) = connection_tokens(value.as_bytes());
            close |= says_close;
            keep_alive_token |= says_keep_alive;
        } else if name == header::EXPECT {
            expect_continue = http11 && value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        } else if name == header::UPGRADE {
            upgrade = true;
        }
        map.append(name, value);
    }
    if transfer_encoding && !chunked {
        return Err(HeadError::Malformed(
            "transfer-encoding not ending in chunked",
        ));
    }
    let mut keep_alive = !close && (http11 || keep_alive_token);
    let framing = if chunked {
        if content_length.is_some() {
            // RFC 9112 §6.3: the coding wins; the length is not passed on, and the connection
            // ends after this exchange so no byte is read two ways.
            map.remove(header::CONTENT_LENGTH);
            keep_alive = false;
        }
        Framing::Chunked
    } else {
        match content_length {
            None | Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
        }
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = if http11 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    *request.headers_mut() = map;
    Ok(Parsed::Complete(
        len,
        RequestHead {
            request,
            framing,
            keep_alive,
            expect_continue,
            upgrade,
        },
    ))
}

fn last_coding_is_chunked(value: &[u8]) -> bool {
    let last = value.rsplit(|&b| b == b',').next().unwrap_or_default();
    let name = last.split(|&b| b == b';').next().unwrap_or_default();
    name.trim_ascii().eq_ignore_ascii_case(b"chunked")
}

/// How a response body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes are sent (HEAD, 1xx, 204, 304).
    None,
    Length(u64),
    Chunked,
    /// HTTP/1.0 client and a body of unknown length: it ends when the connection closes.
    UntilClose,
}

/// What the response writer acts on in a response's headers, found in one pass: each map
/// lookup hashes its name, and one pass comparing a response's handful of names costs less than
/// the four lookups it replaces (about 2% of an HTTP/1.1 request's instructions).
#[derive(Debug, Default, Clone, Copy)]
pub struct ResponseFacts {
    /// A `Connection` line says `close`.
    pub close: bool,
    pub transfer_encoding: bool,
    /// The first `Content-Length` line's value, `Some(None)` when it is not a valid length.
    pub content_length: Option<Option<u64>>,
    pub date: bool,
}

impl ResponseFacts {
    pub fn of(headers: &HeaderMap) -> Self {
        let mut facts = Self::default();
        // A map iterates each name's values together and in order, so the first
        // `Content-Length` seen is the one `get` returns.
        for (name, value) in headers {
            if name == header::CONNECTION {
                facts.close |= connection_tokens(value.as_bytes()).0;
            } else if name == header::TRANSFER_ENCODING {
                facts.transfer_encoding = true;
            } else if name == header::CONTENT_LENGTH {
                if facts.content_length.is_none() {
                    facts.content_length = Some(parse_content_length(value.as_bytes()));
                }
            } else if name == header::DATE {
                facts.date = true;
            }
        }
        facts
    }

    /// Adds what `lines` (the fields not in the map) say. Such lines hold no `Connection` or
    /// `Transfer-Encoding` (see `HeaderLines`).
    pub fn include(&mut self, lines: &HeaderLines) {
        self.date |= lines.date();
        if self.content_length.is_none() {
            self.content_length = lines.content_length().map(Some);
        }
    }
}

/// Decides a response's framing from its headers (`facts`, read from `headers`) and body
/// length, and fixes the headers to say so: a `Transfer-Encoding` from upstream is replaced by
/// ours, a known length is added, and a 1xx or 204 carries neither (RFC 9110 §8.6, RFC 9112
/// §6.1).
pub fn response_framing(
    headers: &mut HeaderMap,
    facts: &ResponseFacts,
    status: StatusCode,
    head_request: bool,
    http11: bool,
    exact_len: Option<u64>,
) -> BodyFraming {
    if facts.transfer_encoding {
        headers.remove(header::TRANSFER_ENCODING);
    }
    if status.is_informational() || status == StatusCode::NO_CONTENT {
        headers.remove(header::CONTENT_LENGTH);
        return BodyFraming::None;
    }
    // The length an answer to HEAD or a 304 states is that of the body it stands for: kept.
    // A HEAD answered here (not by an upstream, whose HEAD body is always empty) states the
    // length of the body it would send.
    if head_request || status == StatusCode::NOT_MODIFIED {
        if let Some(n) = exact_len.filter(|&n| n > 0 && head_request) {
            if facts.content_length.is_none() {
                headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            }
        }
        return BodyFraming::None;
    }
    match facts.content_length {
        Some(Some(n)) => return BodyFraming::Length(n),
        Some(None) => {
            headers.remove(header::CONTENT_LENGTH);
        }
        None => {}
    }
    match exact_len {
        Some(n) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
            BodyFraming::Length(n)
        }
        None if http11 => {
            headers.insert(
                header::TRANSFER_ENCODING,
                HeaderValue::from_static("chunked"),
            );
            BodyFraming::Chunked
        }
        None => BodyFraming::UntilClose,
    }
}

/// Writes the status line, the headers (the map's names lowercase, `lines`' as they came) and
/// the blank line.
pub fn encode_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    headers: &HeaderMap,
    lines: Option<&HeaderLines>,
) {
    let reason = status.canonical_reason().unwrap_or("");
    let len: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + lines.map_or(0, HeaderLines::encoded_len);
    out.reserve(len + reason.len() + 16);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(lines) = lines {
        lines.write_to(out);
    }
    out.extend_from_slice(b"\r\n");
}

/// A chunk's size line: hex digits and CRLF (at most 16 + 2 bytes).
pub fn chunk_size_line(len: usize, out: &mut Vec<u8>) {
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for shift in (0..digits).rev() {
        out.push(b"0123456789abcdef"[(len >> (shift * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}
