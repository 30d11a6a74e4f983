//! HTTP/2 frames (RFC 9113 §4, §6) as our client and server read and write them: the 9-byte
//! frame head, the fixed-layout frames they send, and the checks of what they receive that
//! do not depend on the role ([`Receiver`]: the first SETTINGS, frame sizes and fields,
//! padding, priority, header blocks with their CONTINUATIONs; then SETTINGS values and
//! window arithmetic). What depends on the streams each side has is left to the side.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use h2::Reason;

/// What the client sends first (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const HEAD_LEN: usize = 9;
/// The largest frame either side may send until told otherwise, and all we accept (§4.2).
pub const DEFAULT_MAX_FRAME: u32 = 16_384;
/// The largest window or window increment (§6.9.1).
pub const MAX_WINDOW: i64 = (1 << 31) - 1;
/// Window sizes before SETTINGS say otherwise (§6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

pub const SETTINGS_HEADER_TABLE_SIZE: u16 = 0x1;
pub const SETTINGS_ENABLE_PUSH: u16 = 0x2;
pub const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const SETTINGS_MAX_FRAME_SIZE: u16 = 0x5;
pub const SETTINGS_MAX_HEADER_LIST_SIZE: u16 = 0x6;

/// A frame's head: payload length, type, flags and stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Head {
        Head {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

pub fn put_head(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = len as u32;
    dst.put_slice(&len.to_be_bytes()[1..]);
    dst.put_u8(kind);
    dst.put_u8(flags);
    dst.put_u32(stream);
}

/// Rewrites the length of a frame head written earlier at `at`.
pub fn set_len(dst: &mut BytesMut, at: usize, len: usize) {
    let len = (len as u32).to_be_bytes();
    dst[at..at + 3].copy_from_slice(&len[1..]);
}

/// The payload with its padding removed (§6.1, §6.2), or `None` when the pad length does not
/// fit the frame (a connection error).
#[inline]
pub fn unpad(head: &Head, payload: &mut bytes::Bytes) -> Option<()> {
    if !head.has(PADDED) {
        return Some(());
    }
    let pad = usize::from(*payload.first()?);
    if pad >= payload.len() {
        return None;
    }
    let end = payload.len() - pad;
    *payload = payload.slice(1..end);
    Some(())
}

pub fn put_settings(dst: &mut BytesMut, settings: &[(u16, u32)]) {
    put_head(dst, settings.len() * 6, SETTINGS, 0, 0);
    for (id, value) in settings {
        dst.put_u16(*id);
        dst.put_u32(*value);
    }
}

pub fn put_settings_ack(dst: &mut BytesMut) {
    put_head(dst, 0, SETTINGS, ACK, 0);
}

pub fn put_window_update(dst: &mut BytesMut, stream: u32, increment: u32) {
    put_head(dst, 4, WINDOW_UPDATE, 0, stream);
    dst.put_u32(increment);
}

pub fn put_rst_stream(dst: &mut BytesMut, stream: u32, reason: Reason) {
    put_head(dst, 4, RST_STREAM, 0, stream);
    dst.put_u32(reason.into());
}

pub fn put_ping_ack(dst: &mut BytesMut, payload: &[u8]) {
    put_head(dst, payload.len(), PING, ACK, 0);
    dst.put_slice(payload);
}

pub fn put_goaway(dst: &mut BytesMut, last_stream: u32, reason: Reason) {
    put_head(dst, 8, GOAWAY, 0, 0);
    dst.put_u32(last_stream);
    dst.put_u32(reason.into());
}

pub fn put_data(dst: &mut BytesMut, stream: u32, data: &[u8], end: bool) {
    put_head(
        dst,
        data.len(),
        DATA,
        if end { END_STREAM } else { 0 },
        stream,
    );
    dst.put_slice(data);
}

/// Finishes the HEADERS frame written at `start` whose header block begins at `block` and runs
/// to the end of `dst`: sets its length and END_HEADERS, or splits the block into
/// CONTINUATION frames when it is larger than the peer's `max_frame`.
pub fn finish_header_block(dst: &mut BytesMut, start: usize, block: usize, max_frame: usize) {
    let len = dst.len() - block;
    if len <= max_frame {
        set_len(dst, start, len);
        dst[start + 4] |= END_HEADERS;
        return;
    }
    let whole = dst.split_off(block).freeze();
    let id = u32::from_be_bytes([
        dst[start + 5],
        dst[start + 6],
        dst[start + 7],
        dst[start + 8],
    ]);
    let mut chunks = whole.chunks(max_frame).peekable();
    let mut first = true;
    while let Some(chunk) = chunks.next() {
        let at = if first {
            start
        } else {
            let at = dst.len();
            put_head(dst, 0, CONTINUATION, 0, id);
            at
        };
        first = false;
        set_len(dst, at, chunk.len());
        if chunks.peek().is_none() {
            dst[at + 4] |= END_HEADERS;
        }
        dst.put_slice(chunk);
    }
}

/// CONTINUATION frames a header block may take: empty ones add no bytes, so the byte bound
/// alone would let a peer hold a block open forever. h2 allows a similar handful.
pub const MAX_CONTINUATIONS: usize = 64;

/// A header block whose HEADERS frame did not end it: CONTINUATION frames must follow, and
/// nothing else until END_HEADERS (§6.10). Bounded in bytes and in frames.
pub struct PartialBlock {
    stream: u32,
    end_stream: bool,
    block: BytesMut,
    continuations: usize,
    max_len: usize,
}

/// A header block's frames that end the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadBlock {
    /// Another frame, or another stream's, before END_HEADERS.
    Interrupted,
    TooLarge,
    TooManyFrames,
}

impl BadBlock {
    pub fn reason(self) -> Reason {
        match self {
            BadBlock::Interrupted => Reason::PROTOCOL_ERROR,
            BadBlock::TooLarge | BadBlock::TooManyFrames => Reason::ENHANCE_YOUR_CALM,
        }
    }

    pub fn what(self) -> &'static str {
        match self {
            BadBlock::Interrupted => "header block interrupted",
            BadBlock::TooLarge => "header block too large",
            BadBlock::TooManyFrames => "too many CONTINUATION frames",
        }
    }
}

impl PartialBlock {
    /// The block a HEADERS frame on `stream` began with `fragment`, at most `max_len` bytes.
    pub fn start(
        stream: u32,
        end_stream: bool,
        fragment: &[u8],
        max_len: usize,
    ) -> Result<PartialBlock, BadBlock> {
        if fragment.len() > max_len {
            return Err(BadBlock::TooLarge);
        }
        Ok(PartialBlock {
            stream,
            end_stream,
            block: BytesMut::from(fragment),
            continuations: 0,
            max_len,
        })
    }

    /// Applies the frame that came while the block is open, which must be its CONTINUATION.
    /// `Ok(true)`: END_HEADERS, the block is whole.
    pub fn add(&mut self, head: &Head, fragment: &[u8]) -> Result<bool, BadBlock> {
        if head.kind != CONTINUATION || head.stream != self.stream {
            return Err(BadBlock::Interrupted);
        }
        if self.block.len() + fragment.len() > self.max_len {
            return Err(BadBlock::TooLarge);
        }
        self.continuations += 1;
        if self.continuations > MAX_CONTINUATIONS {
            return Err(BadBlock::TooManyFrames);
        }
        self.block.extend_from_slice(fragment);
        Ok(head.has(END_HEADERS))
    }

    /// The whole block: its stream, its bytes, and whether its HEADERS ended the stream.
    pub fn finish(self) -> (u32, Bytes, bool) {
        (self.stream, self.block.freeze(), self.end_stream)
    }
}

/// A frame that breaks the protocol: the connection error it is, and what was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadFrame {
    pub reason: Reason,
    pub what: &'static str,
}

const fn bad(reason: Reason, what: &'static str) -> BadFrame {
    BadFrame { reason, what }
}

/// The entries of a SETTINGS frame, checked as RFC 9113 §6.5 says; `None` for an ACK.
pub fn settings(head: &Head, payload: Bytes) -> Result<Option<Settings>, BadFrame> {
    if head.stream != 0 {
        return Err(bad(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
    }
    if head.has(ACK) {
        if !payload.is_empty() {
            return Err(bad(Reason::FRAME_SIZE_ERROR, "SETTINGS ACK with a payload"));
        }
        return Ok(None);
    }
    if !payload.len().is_multiple_of(6) {
        return Err(bad(Reason::FRAME_SIZE_ERROR, "bad SETTINGS length"));
    }
    for (id, value) in (Settings {
        rest: payload.clone(),
    }) {
        match id {
            SETTINGS_ENABLE_PUSH if value > 1 => {
                return Err(bad(Reason::PROTOCOL_ERROR, "bad ENABLE_PUSH"));
            }
            SETTINGS_INITIAL_WINDOW_SIZE if i64::from(value) > MAX_WINDOW => {
                return Err(bad(Reason::FLOW_CONTROL_ERROR, "bad INITIAL_WINDOW_SIZE"));
            }
            SETTINGS_MAX_FRAME_SIZE if !(DEFAULT_MAX_FRAME..=0xff_ffff).contains(&value) => {
                return Err(bad(Reason::PROTOCOL_ERROR, "bad MAX_FRAME_SIZE"));
            }
            _ => {}
        }
    }
    Ok(Some(Settings { rest: payload }))
}

/// A SETTINGS frame's entries, in order: (identifier, value).
#[derive(Debug)]
pub struct Settings {
    rest: Bytes,
}

impl Iterator for Settings {
    type Item = (u16, u32);

    fn next(&mut self) -> Option<(u16, u32)> {
        if self.rest.len() < 6 {
            return None;
        }
        Some((self.rest.get_u16(), self.rest.get_u32()))
    }
}

/// Takes the next whole frame out of `read`: its head and payload. `Ok(None)`: not all of it
/// has come yet. Frames past the default 16 KiB are an error: neither side raises
/// SETTINGS_MAX_FRAME_SIZE.
pub fn next(read: &mut BytesMut) -> Result<Option<(Head, Bytes)>, BadFrame> {
    let Some(raw) = read.first_chunk::<HEAD_LEN>() else {
        return Ok(None);
    };
    let head = Head::parse(raw);
    if head.len > DEFAULT_MAX_FRAME {
        return Err(bad(Reason::FRAME_SIZE_ERROR, "frame too large"));
    }
    let total = HEAD_LEN + head.len as usize;
    if read.len() < total {
        return Ok(None);
    }
    let mut payload = read.split_to(total).freeze();
    payload.advance(HEAD_LEN);
    Ok(Some((head, payload)))
}

/// A WINDOW_UPDATE's increment (§6.9).
pub fn window_increment(payload: &[u8]) -> Result<i64, BadFrame> {
    let Ok(raw) = <[u8; 4]>::try_from(payload) else {
        return Err(bad(Reason::FRAME_SIZE_ERROR, "bad WINDOW_UPDATE"));
    };
    Ok(i64::from(u32::from_be_bytes(raw) & 0x7fff_ffff))
}

/// Grows a send window by a WINDOW_UPDATE's increment; an increment of 0, or one that takes
/// the window past 2^31 - 1, is an error (§6.9, §6.9.1): of the connection for its window, of
/// the stream for a stream's.
pub fn grow_window(window: &mut i64, increment: i64) -> Result<(), BadFrame> {
    if increment == 0 {
        return Err(bad(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"));
    }
    if *window + increment > MAX_WINDOW {
        return Err(bad(Reason::FLOW_CONTROL_ERROR, "window overflow"));
    }
    *window += increment;
    Ok(())
}

/// A frame as received, checked as far as RFC 9113 allows without knowing the connection's
/// streams. Stream ids are never 0 where a stream is meant, and always odd: both sides' streams
/// are the client's (neither side pushes).
#[derive(Debug)]
pub enum Received {
    /// `len`: the whole payload, padding included, which flow control counts (§6.9.1).
    Data {
        stream: u32,
        len: i64,
        data: Bytes,
        end_stream: bool,
    },
    /// A whole header block. `in_read_buffer`: it came in one frame, so it is a slice of the
    /// read buffer, and holding it holds all of that buffer.
    Headers {
        stream: u32,
        block: Bytes,
        end_stream: bool,
        in_read_buffer: bool,
    },
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings(Settings),
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last: u32,
        reason: Reason,
    },
    /// `stream` 0: the connection's window.
    WindowUpdate {
        stream: u32,
        increment: i64,
    },
    /// Nothing for the connection to do: a SETTINGS ACK, a PRIORITY (advisory, and deprecated
    /// by RFC 9113 §5.3.2), a frame of an unknown type (§4.1), a CONTINUATION of a block not
    /// yet ended.
    Nothing,
}

/// A received frame that breaks the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A connection error: GOAWAY, and the end.
    Connection(BadFrame),
    /// A stream error (§5.4.2): RST_STREAM for this stream, and the connection goes on.
    Stream(u32, BadFrame),
}

fn broken(reason: Reason, what: &'static str) -> Broken {
    Broken::Connection(bad(reason, what))
}

/// What both sides check of the frames they receive, in order: SETTINGS first (§3.4), and
/// nothing but a header block's CONTINUATIONs until it ends (§6.10).
pub struct Receiver {
    got_settings: bool,
    continuation: Option<PartialBlock>,
    max_block: usize,
}

impl Receiver {
    /// Header blocks larger than `max_block` bytes end the connection.
    pub fn new(max_block: usize) -> Receiver {
        Receiver {
            got_settings: false,
            continuation: None,
            max_block,
        }
    }

    /// Checks the next frame. Inlined: each side matches on the result at once, so the
    /// `Received` is never built in memory (about 50 instructions a frame otherwise).
    #[inline(always)]
    pub fn take(&mut self, head: Head, mut payload: Bytes) -> Result<Received, Broken> {
        if !self.got_settings {
            if head.kind != SETTINGS || head.has(ACK) {
                return Err(broken(
                    Reason::PROTOCOL_ERROR,
                    "first frame is not SETTINGS",
                ));
            }
            self.got_settings = true;
        }
        if let Some(partial) = &mut self.continuation {
            let bad_block = |bad: BadBlock| broken(bad.reason(), bad.what());
            if !partial.add(&head, &payload).map_err(bad_block)? {
                return Ok(Received::Nothing);
            }
            let Some(partial) = self.continuation.take() else {
                return Ok(Received::Nothing);
            };
            let (stream, block, end_stream) = partial.finish();
            return Ok(Received::Headers {
                stream,
                block,
                end_stream,
                in_read_buffer: false,
            });
        }
        let stream = head.stream;
        match head.kind {
            DATA => {
                if stream == 0 || stream.is_multiple_of(2) {
                    return Err(broken(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
                }
                let len = i64::from(head.len);
                if unpad(&head, &mut payload).is_none() {
                    return Err(broken(Reason::PROTOCOL_ERROR, "bad padding"));
                }
                Ok(Received::Data {
                    stream,
                    len,
                    data: payload,
                    end_stream: head.has(END_STREAM),
                })
            }
            HEADERS => {
                if stream == 0 || stream.is_multiple_of(2) {
                    return Err(broken(Reason::PROTOCOL_ERROR, "HEADERS on an even stream"));
                }
                if unpad(&head, &mut payload).is_none() {
                    return Err(broken(Reason::PROTOCOL_ERROR, "bad padding"));
                }
                if head.has(PRIORITY_FLAG) {
                    if payload.len() < 5 {
                        return Err(broken(Reason::FRAME_SIZE_ERROR, "short HEADERS"));
                    }
                    let dependency = payload.get_u32() & 0x7fff_ffff;
                    payload.advance(1);
                    if dependency == stream {
                        return Err(self_dependency(stream));
                    }
                }
                let end_stream = head.has(END_STREAM);
                if head.has(END_HEADERS) {
                    return Ok(Received::Headers {
                        stream,
                        block: payload,
                        end_stream,
                        in_read_buffer: true,
                    });
                }
                let partial = PartialBlock::start(stream, end_stream, &payload, self.max_block)
                    .map_err(|bad| broken(bad.reason(), bad.what()))?;
                self.continuation = Some(partial);
                Ok(Received::Nothing)
            }
            PRIORITY => {
                if stream == 0 {
                    return Err(broken(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    return Err(Broken::Stream(
                        stream,
                        bad(Reason::FRAME_SIZE_ERROR, "bad PRIORITY"),
                    ));
                }
                if payload.get_u32() & 0x7fff_ffff == stream {
                    return Err(self_dependency(stream));
                }
                Ok(Received::Nothing)
            }
            RST_STREAM => {
                if stream == 0 {
                    return Err(broken(Reason::PROTOCOL_ERROR, "RST_STREAM on stream 0"));
                }
                if payload.len() != 4 {
                    return Err(broken(Reason::FRAME_SIZE_ERROR, "bad RST_STREAM"));
                }
                if stream.is_multiple_of(2) {
                    return Err(broken(
                        Reason::PROTOCOL_ERROR,
                        "RST_STREAM on an idle stream",
                    ));
                }
                let reason = Reason::from(payload.get_u32());
                Ok(Received::RstStream { stream, reason })
            }
            SETTINGS => match settings(&head, payload) {
                Ok(Some(settings)) => Ok(Received::Settings(settings)),
                Ok(None) => Ok(Received::Nothing),
                Err(bad) => Err(Broken::Connection(bad)),
            },
            // Our SETTINGS turn push off, and a client may not push at all (§8.4).
            PUSH_PROMISE => Err(broken(Reason::PROTOCOL_ERROR, "PUSH_PROMISE")),
            PING => {
                if stream != 0 {
                    return Err(broken(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                let Ok(ping) = <[u8; 8]>::try_from(&payload[..]) else {
                    return Err(broken(Reason::FRAME_SIZE_ERROR, "bad PING"));
                };
                Ok(Received::Ping {
                    ack: head.has(ACK),
                    payload: ping,
                })
            }
            GOAWAY => {
                if stream != 0 {
                    return Err(broken(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                if payload.len() < 8 {
                    return Err(broken(Reason::FRAME_SIZE_ERROR, "bad GOAWAY"));
                }
                let last = payload.get_u32() & 0x7fff_ffff;
                let reason = Reason::from(payload.get_u32());
                Ok(Received::GoAway { last, reason })
            }
            WINDOW_UPDATE => {
                let increment = window_increment(&payload).map_err(Broken::Connection)?;
                if stream != 0 && stream.is_multiple_of(2) {
                    return Err(broken(
                        Reason::PROTOCOL_ERROR,
                        "WINDOW_UPDATE on an idle stream",
                    ));
                }
                Ok(Received::WindowUpdate { stream, increment })
            }
            CONTINUATION => Err(broken(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without HEADERS",
            )),
            _ => Ok(Received::Nothing),
        }
    }
}

/// A stream may not depend on itself (§5.3.1).
fn self_dependency(stream: u32) -> Broken {
    Broken::Stream(
        stream,
        bad(Reason::PROTOCOL_ERROR, "stream depends on itself"),
    )
}
