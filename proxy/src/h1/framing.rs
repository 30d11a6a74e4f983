//! Pure HTTP/1.1 response framing: the head (on `httparse`) and the body decoder. No I/O, so
//! the fuzz target (`fuzz/fuzz_targets/h1.rs`) and table tests drive exactly what the client
//! runs.
//!
//! Strict by design (RFC 9112 §6.3, and what Envoy and nginx refuse): Content-Length beside
//! Transfer-Encoding, differing or malformed Content-Lengths, any transfer coding but a lone
//! `chunked`, obs-fold, a head over [`MAX_HEAD`], more than [`MAX_HEADERS`] headers, and any
//! chunk-size line that is not hex digits (at most 16) with an optional extension ended by
//! CRLF are all errors: the response is answered 502 and its connection closed. A bare LF
//! ends a head line (httparse, hyper and nginx accept it), never a chunk line.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use std::mem::MaybeUninit;

/// Largest response head (status line and headers), like Envoy's 60 KiB.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers in a response head (hyper's client default).
pub const MAX_HEADERS: usize = 100;
/// Largest trailer section of a chunked body.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// Largest chunk extension (`;name=value`), which is read and ignored.
const MAX_CHUNK_EXTENSION: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("response head: {0}")]
    Head(&'static str),
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("response content-length: {0}")]
    ContentLength(&'static str),
    #[error("response transfer-encoding: {0}")]
    TransferEncoding(&'static str),
    #[error("response chunk: {0}")]
    Chunk(&'static str),
    #[error("response trailers: {0}")]
    Trailers(&'static str),
    #[error("response body: connection closed before its end")]
    Incomplete,
}

/// How the body after a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304, or `Content-Length: 0`.
    Empty,
    Length(u64),
    Chunked,
    /// No length and not chunked: the body ends when the upstream closes (never reusable).
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct Head {
    pub status: StatusCode,
    pub version: Version,
    /// Empty when the fields are kept as `lines`.
    pub headers: HeaderMap,
    /// With [`HeadOptions::keep_lines`], a head the proxy has nothing to change in: its fields
    /// as they came, in place of `headers`.
    pub lines: Option<HeaderLines>,
    pub framing: Framing,
    /// Both the version and `Connection` allow another exchange on this connection.
    pub keep_alive: bool,
}

/// How to read a response head.
#[derive(Debug, Clone, Copy, Default)]
pub struct HeadOptions {
    /// The request was HEAD, so no body follows whatever the headers say.
    pub head_request: bool,
    /// Keep a plain head's fields as [`HeaderLines`] rather than building a header map: the
    /// HTTP/1.1 server writes them out as they are. A map costs about 480 instructions per
    /// field (name lookup, value check, hashing, insertion, its drop): 7% of a short proxied
    /// request with three.
    pub keep_lines: bool,
}

/// The fields of a response head that needs no edit on its way to an HTTP/1.1 client: no
/// hop-by-hop field (`Connection`, `Keep-Alive`, `Proxy-Connection`, `Upgrade`, `Trailer`,
/// `TE`), no `Transfer-Encoding`, and a status that may carry `Content-Length` (not 1xx or
/// 204). Each field is checked as the header map would check it (httparse accepts the same
/// name and value bytes as `http`, see the test `httparse_and_http_accept_the_same_bytes`);
/// lines are written out name, `: `, value, CRLF, so a bare-LF line ending goes out as CRLF.
///
/// Boxed, so that the head, the body and the response that carry it stay small: moving them
/// is then a few registers, not a `memcpy`.
#[derive(Debug)]
pub struct HeaderLines(Box<Lines>);

#[derive(Debug)]
struct Lines {
    head: Bytes,
    spans: Box<[Span]>,
    /// Where every field is `name: value` CRLF and each line follows the last (as most servers
    /// write them): the range of all the lines, copied out in one piece.
    block: Option<(u16, u16)>,
    date: bool,
    content_length: Option<u64>,
}

/// A field's name start, name end, value start and value end in its head. A head is at most
/// [`MAX_HEAD`] (64 KiB) long and ends with an empty line, so every offset fits in 16 bits.
type Span = [u16; 4];

impl HeaderLines {
    /// A `Date` field is among them.
    pub fn date(&self) -> bool {
        self.0.date
    }

    /// Their `Content-Length` (every line the same), if any.
    pub fn content_length(&self) -> Option<u64> {
        self.0.content_length
    }

    /// Each field's name (as sent: case kept) and value.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        let head = &self.0.head;
        self.0
            .spans
            .iter()
            .map(|&[ns, ne, vs, ve]| (&head[ns.into()..ne.into()], &head[vs.into()..ve.into()]))
    }

    /// How many bytes [`Self::write_to`] writes.
    pub fn encoded_len(&self) -> usize {
        if let Some((start, end)) = self.0.block {
            return usize::from(end - start);
        }
        self.0
            .spans
            .iter()
            .map(|&[ns, ne, vs, ve]| usize::from(ne - ns) + usize::from(ve - vs) + 4)
            .sum()
    }

    /// Writes the fields as `name: value` CRLF lines.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        if let Some((start, end)) = self.0.block {
            out.extend_from_slice(&self.0.head[start.into()..end.into()]);
            return;
        }
        for (name, value) in self.iter() {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Appends the fields to `headers`, for a client that needs them as a map (HTTP/2).
    pub fn append_to(&self, headers: &mut HeaderMap) {
        headers.reserve(self.0.spans.len());
        for &span in self.0.spans.iter() {
            // Checked when parsed (see the type's doc): never fails.
            if let Ok((name, value)) = field(&self.0.head, span) {
                headers.append(name, value);
            }
        }
    }
}

/// What a head's field is to the parser (names compared without case).
#[derive(Clone, Copy)]
enum FieldKind {
    ContentLength,
    TransferEncoding,
    Connection,
    Date,
    /// Another hop-by-hop field: a head with one is not kept as lines.
    HopByHop,
    Other,
}

fn field_kind(name: &[u8]) -> FieldKind {
    // A branch on the length first; most names are none of these.
    let is = |known: &[u8]| is_name(name, known);
    match name.len() {
        14 if is(b"content-length") => FieldKind::ContentLength,
        17 if is(b"transfer-encoding") => FieldKind::TransferEncoding,
        10 if is(b"connection") => FieldKind::Connection,
        4 if is(b"date") => FieldKind::Date,
        2 if is(b"te") => FieldKind::HopByHop,
        7 if is(b"upgrade") || is(b"trailer") => FieldKind::HopByHop,
        10 if is(b"keep-alive") => FieldKind::HopByHop,
        16 if is(b"proxy-connection") => FieldKind::HopByHop,
        _ => FieldKind::Other,
    }
}

/// The range of `spans`' lines in `head` if each is exactly `name: value` CRLF and follows the
/// one before (see `Lines::block`).
fn block_of(head: &[u8], spans: &[Span]) -> Option<(u16, u16)> {
    let start = spans.first()?[0];
    let mut at = start;
    for &[ns, ne, vs, ve] in spans {
        // `ve + 2` stays within the head, which ends with an empty line after it (see `Span`).
        let canonical = ns == at
            && vs == ne + 2
            && head.get(ne.into()..vs.into()) == Some(b": ")
            && head.get(ve.into()..usize::from(ve) + 2) == Some(b"\r\n");
        if !canonical {
            return None;
        }
        at = ve + 2;
    }
    Some((start, at))
}

/// A field as the header map holds it, checked as it checks it. Inlined: returned from a call,
/// the name and value were built in memory and copied (about 90 instructions a field).
#[inline(always)]
fn field(head: &Bytes, [ns, ne, vs, ve]: Span) -> Result<(HeaderName, HeaderValue), FrameError> {
    let name = HeaderName::from_bytes(&head[ns.into()..ne.into()])
        .map_err(|_| FrameError::Head("invalid name"))?;
    let value = HeaderValue::from_maybe_shared(head.slice(usize::from(vs)..usize::from(ve)))
        .map_err(|_| FrameError::Head("invalid value"))?;
    Ok((name, value))
}

/// [`field_kind`] for a head built into a map, which is never kept as lines: only what
/// frames the body (comparing standard names is one integer compare each).
fn framing_kind(name: &HeaderName) -> FieldKind {
    if name == header::CONTENT_LENGTH {
        FieldKind::ContentLength
    } else if name == header::TRANSFER_ENCODING {
        FieldKind::TransferEncoding
    } else if name == header::CONNECTION {
        FieldKind::Connection
    } else {
        FieldKind::Other
    }
}

/// Whether `name` (a token, as httparse checked) is `lower` (lowercase letters and `-`) in
/// any case. Each byte is ORed with 0x20, which lowercases a letter and leaves `-` as it is;
/// no other token byte becomes a lowercase letter or `-` that way. Without an early exit, so
/// that it compiles to a few word compares (`eq_ignore_ascii_case` went byte by byte, about
/// 170 instructions for `content-length`).
#[inline(always)]
fn is_name(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name
            .iter()
            .zip(lower)
            .fold(0, |differ, (&byte, &want)| differ | ((byte | 0x20) ^ want))
            == 0
}

/// Parses one response head from the front of `buf`. `Ok(None)`: incomplete (read more).
/// On success the head's bytes are taken off `buf`; the body (or the next head) follows.
pub fn parse_head(buf: &mut BytesMut, options: HeadOptions) -> Result<Option<Head>, FrameError> {
    // Offsets into `buf` (below MAX_HEAD, so u32), so the values can share one frozen copy of
    // the head (no per-value allocation), as hyper does.
    let mut spans: [Span; MAX_HEADERS] = [[0; 4]; MAX_HEADERS];
    let (len, status, minor, count) = {
        // Left uninitialised: zeroing 100 headers (3.2 KB) for every response cost more than
        // parsing a short head.
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut response = httparse::Response::new(&mut []);
        // Only the first MAX_HEAD bytes are ever parsed: a head not complete within them is
        // refused the same way however the bytes arrived.
        let window = &buf[..buf.len().min(MAX_HEAD)];
        let parsed = httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut response,
            window,
            &mut headers,
        );
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if buf.len() >= MAX_HEAD {
                    return Err(FrameError::HeadTooLarge);
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => {
                return Err(FrameError::Head("too many headers"))
            }
            Err(httparse::Error::Status) => return Err(FrameError::Head("invalid status")),
            Err(httparse::Error::Version) => return Err(FrameError::Head("invalid version")),
            Err(_) => return Err(FrameError::Head("invalid header line")),
        };
        let base = buf.as_ptr() as usize;
        let count = response.headers.len();
        // Offsets within the first MAX_HEAD (64 KiB) bytes: they fit in u32.
        // Within the window's 64 KiB, before its last two bytes (see `Span`).
        let offset = |p: *const u8| (p as usize - base) as u16;
        for (span, h) in spans.iter_mut().zip(response.headers.iter()) {
            let (name, value) = (offset(h.name.as_ptr()), offset(h.value.as_ptr()));
            *span = [
                name,
                name + h.name.len() as u16,
                value,
                value + h.value.len() as u16,
            ];
        }
        (
            len,
            response.code.unwrap_or(0),
            response.version.unwrap_or(0),
            count,
        )
    };
    let status = StatusCode::from_u16(status).map_err(|_| FrameError::Head("invalid status"))?;
    let head = buf.split_to(len).freeze();
    let spans = &spans[..count];
    let keep_lines = options.keep_lines;
    // Without `keep_lines` the map is built in the same pass. One spare: hyper's h2 server
    // looked `Date` up with `entry`, which makes room for one more before it looks, and a full
    // map grew then (about 600 instructions per h2c request).
    let mut headers = if keep_lines {
        HeaderMap::new()
    } else {
        HeaderMap::with_capacity(count + 1)
    };
    let mut content_length: Option<u64> = None;
    let mut chunked = false;
    let mut close = false;
    let mut keep_alive_token = false;
    let mut hop_by_hop = false;
    let mut date = false;
    for &span in spans {
        let [_, _, vs, ve] = span;
        let value = &head[vs.into()..ve.into()];
        let kind = if keep_lines {
            let [ns, ne, _, _] = span;
            field_kind(&head[ns.into()..ne.into()])
        } else {
            let (name, value) = field(&head, span)?;
            let kind = framing_kind(&name);
            headers.append(name, value);
            kind
        };
        match kind {
            FieldKind::ContentLength => {
                let n = parse_content_length(value)
                    .ok_or(FrameError::ContentLength("not a decimal number"))?;
                if content_length.is_some_and(|old| old != n) {
                    return Err(FrameError::ContentLength("two differing values"));
                }
                content_length = Some(n);
            }
            FieldKind::TransferEncoding => {
                // One line, one coding: `chunked`. Anything else (`gzip, chunked`, a second
                // line, an unknown coding) is a framing this proxy does not speak, and one a
                // peer might read differently.
                if chunked || !value.eq_ignore_ascii_case(b"chunked") {
                    return Err(FrameError::TransferEncoding(
                        "only a single chunked is accepted",
                    ));
                }
                chunked = true;
            }
            FieldKind::Connection => {
                let (says_close, says_keep_alive) = connection_tokens(value);
                close |= says_close;
                keep_alive_token |= says_keep_alive;
                hop_by_hop = true;
            }
            FieldKind::Date => date = true,
            FieldKind::HopByHop => hop_by_hop = true,
            FieldKind::Other => {}
        }
    }
    let plain =
        !hop_by_hop && !chunked && !status.is_informational() && status != StatusCode::NO_CONTENT;
    let mut lines = None;
    if keep_lines && plain {
        lines = Some(HeaderLines(Box::new(Lines {
            spans: spans.into(),
            block: block_of(&head, spans),
            head,
            date,
            content_length,
        })));
    } else if keep_lines {
        headers.reserve(count + 1);
        for &span in spans {
            let (name, value) = field(&head, span)?;
            headers.append(name, value);
        }
    }
    if chunked && content_length.is_some() {
        return Err(FrameError::TransferEncoding("beside content-length"));
    }
    let version = if minor == 1 {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let keep_alive = !close && (minor == 1 || keep_alive_token);
    let no_body = options.head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let framing = if no_body {
        Framing::Empty
    } else if chunked {
        // HTTP/1.0 has no chunked coding; a 1.0 response that claims it is misframed.
        if minor == 0 {
            return Err(FrameError::TransferEncoding("in an HTTP/1.0 response"));
        }
        Framing::Chunked
    } else {
        match content_length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    Ok(Some(Head {
        status,
        version,
        headers,
        lines,
        framing,
        keep_alive: keep_alive && framing != Framing::UntilClose,
    }))
}

/// A Content-Length value: 1*DIGIT, no sign, no list, at most 19 digits (fits `u64`). Shared
/// by the upstream client and the downstream server.
pub(crate) fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Whether a `Connection` value lists `close` and `keep-alive` (tokens, any case).
pub(crate) fn connection_tokens(value: &[u8]) -> (bool, bool) {
    let (mut close, mut keep_alive) = (false, false);
    for token in value.split(|&b| b == b',') {
        let token = token.trim_ascii();
        close |= token.eq_ignore_ascii_case(b"close");
        keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
    }
    (close, keep_alive)
}

/// What [`Decoder::decode`] found in the buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The body has ended; whatever is left in the buffer is not part of it.
    End,
    /// Read more from the connection (and call again).
    NeedMore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Hex digits of the size; the `u8` counts them.
    Size(u64, u8),
    /// Spaces or tabs after the size, before `;` or CR.
    SizeSpace(u64),
    /// Inside `;extension`, counting its bytes.
    Extension(u64, u16),
    /// After the CR that ends a size line.
    SizeLf(u64),
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk's line: the trailer section up to an empty line.
    Trailers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// The body decoder of one response.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

impl Decoder {
    pub fn new(framing: Framing) -> Decoder {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size(0, 0)),
            Framing::UntilClose => State::UntilClose,
        };
        Decoder { state }
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The exact remaining length, if known.
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// Takes the next piece of the body off the front of `buf`. Never takes a byte past the
    /// body's end.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, FrameError> {
        loop {
            match self.state {
                State::Done => return Ok(Decoded::End),
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    return Ok(Decoded::Data(buf.split().freeze()));
                }
                State::Length(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length(left)
                    };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::Chunked(Chunk::Data(left)) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = State::Chunked(if left == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left)
                    });
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                State::Chunked(Chunk::Trailers) => return self.trailers(buf),
                State::Chunked(chunk) => {
                    let Some(&byte) = buf.first() else {
                        return Ok(Decoded::NeedMore);
                    };
                    buf.advance(1);
                    self.state = State::Chunked(next_chunk_state(chunk, byte)?);
                }
            }
        }
    }

    /// The connection reached EOF: the end of a read-to-close body, an error for any other.
    pub fn eof(&mut self) -> Result<(), FrameError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(FrameError::Incomplete),
        }
    }

    /// The trailer section: header lines up to an empty line, parsed whole once complete.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, FrameError> {
        // The common case: no trailers, just the final CRLF.
        if buf.len() < 2 {
            return Ok(Decoded::NeedMore);
        }
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        let Some(end) = find_empty_line(buf) else {
            if buf.len() > MAX_TRAILERS {
                return Err(FrameError::Trailers("section too large"));
            }
            if contains_bare_cr_or_lf(buf) {
                return Err(FrameError::Trailers("a line not ended by CRLF"));
            }
            return Ok(Decoded::NeedMore);
        };
        if end > MAX_TRAILERS {
            return Err(FrameError::Trailers("section too large"));
        }
        let section = buf.split_to(end).freeze();
        if contains_bare_cr_or_lf(&section) {
            return Err(FrameError::Trailers("a line not ended by CRLF"));
        }
        let mut parsed = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let lines = match httparse::parse_headers(&section, &mut parsed) {
            Ok(httparse::Status::Complete((_, lines))) => lines,
            _ => return Err(FrameError::Trailers("invalid header line")),
        };
        let mut trailers = HeaderMap::with_capacity(lines.len());
        for h in lines {
            let name = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| FrameError::Trailers("invalid name"))?;
            // Framing fields are not allowed as trailers (RFC 9110 §6.5.1).
            if name == header::CONTENT_LENGTH
                || name == header::TRANSFER_ENCODING
                || name == header::HOST
            {
                return Err(FrameError::Trailers("a framing field"));
            }
            let value = HeaderValue::from_maybe_shared(section.slice_ref(h.value))
                .map_err(|_| FrameError::Trailers("invalid value"))?;
            trailers.append(name, value);
        }
        self.state = State::Done;
        Ok(Decoded::Trailers(trailers))
    }
}

/// One byte of a chunk-size line or of the CRLF after a chunk's data.
fn next_chunk_state(chunk: Chunk, byte: u8) -> Result<Chunk, FrameError> {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let after_size = |size: u64| -> Chunk {
        if size == 0 {
            Chunk::Trailers
        } else {
            Chunk::Data(size)
        }
    };
    Ok(match (chunk, byte) {
        (Chunk::Size(size, digits), b) if hex(b).is_some() => {
            if digits >= 16 {
                return Err(FrameError::Chunk("size over 16 hex digits"));
            }
            Chunk::Size(size << 4 | u64::from(hex(b).unwrap_or(0)), digits + 1)
        }
        (Chunk::Size(_, 0), _) => return Err(FrameError::Chunk("size is not hex")),
        (Chunk::Size(size, _), b' ' | b'\t') | (Chunk::SizeSpace(size), b' ' | b'\t') => {
            Chunk::SizeSpace(size)
        }
        (Chunk::Size(size, _) | Chunk::SizeSpace(size), b';') => Chunk::Extension(size, 0),
        (Chunk::Size(size, _) | Chunk::SizeSpace(size) | Chunk::Extension(size, _), b'\r') => {
            Chunk::SizeLf(size)
        }
        (Chunk::Size(..) | Chunk::SizeSpace(_), _) => {
            return Err(FrameError::Chunk("invalid size line"))
        }
        (Chunk::Extension(_, _), b'\n') => {
            return Err(FrameError::Chunk("extension ended by a bare LF"))
        }
        (Chunk::Extension(_, len), _) if usize::from(len) >= MAX_CHUNK_EXTENSION => {
            return Err(FrameError::Chunk("extension too long"))
        }
        (Chunk::Extension(size, len), b)
            if b == b'\t' || (b' '..=b'~').contains(&b) || b >= 0x80 =>
        {
            Chunk::Extension(size, len + 1)
        }
        (Chunk::Extension(..), _) => return Err(FrameError::Chunk("control byte in extension")),
        (Chunk::SizeLf(size), b'\n') => after_size(size),
        (Chunk::SizeLf(_), _) => return Err(FrameError::Chunk("size line: CR without LF")),
        (Chunk::DataCr, b'\r') => Chunk::DataLf,
        (Chunk::DataCr, _) => return Err(FrameError::Chunk("data not followed by CRLF")),
        (Chunk::DataLf, b'\n') => Chunk::Size(0, 0),
        (Chunk::DataLf, _) => return Err(FrameError::Chunk("data: CR without LF")),
        (Chunk::Data(_) | Chunk::Trailers, _) => {
            return Err(FrameError::Chunk("internal: not a line state"))
        }
    })
}

/// The length up to and including the CRLFCRLF that ends a trailer section.
fn find_empty_line(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// A CR not followed by LF, or an LF not preceded by CR (an unfinished trailing CR is fine).
fn contains_bare_cr_or_lf(buf: &[u8]) -> bool {
    buf.iter().enumerate().any(|(i, &b)| match b {
        b'\r' => buf.get(i + 1).is_some_and(|&n| n != b'\n'),
        b'\n' => i == 0 || buf[i - 1] != b'\r',
        _ => false,
    })
}
