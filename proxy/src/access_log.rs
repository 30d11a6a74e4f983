//! The access log: one line per request, off by default.
//!
//! The request path only captures cheap handles (reference-counted header values, the matched
//! route, the endpoint) into a boxed [`Record`] and hands it to a bounded queue with a
//! non-blocking `try_send`; a full queue drops the line and counts it. Formatting and writing
//! happen on one writer thread, so a slow disk or a stalled pipe never slows a request.
//!
//! A line is written when the response body ends (bytes and duration are known then), when
//! the client goes away mid-body, or, with status 499 (nginx's "client closed request"), when
//! the client goes away before any response.

use crate::balance::Endpoint;
use crate::router::Route;
use http::{HeaderValue, Method, Uri, Version};
use prometheus::IntCounter;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// Common Log Format, then `key="value"` pairs.
    Text,
}

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Stdout,
    Stderr,
    /// Appended to; created if missing.
    File(PathBuf),
}

impl Target {
    /// `-` is stdout, `stderr` is stderr, anything else a file path.
    pub fn parse(value: &str) -> Target {
        match value {
            "-" => Target::Stdout,
            "stderr" => Target::Stderr,
            path => Target::File(path.into()),
        }
    }
}

/// The gateway's handle: the queue's sending end and the drop counter.
pub struct AccessLog {
    queue: SyncSender<Box<Record>>,
    dropped: IntCounter,
    /// Set by [`AccessLog::close`]: the writer drains what is queued, flushes and ends.
    closing: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

/// What one line says. Built on the request path from cheap clones; formatted on the writer.
pub struct Record {
    time: SystemTime,
    started: Instant,
    method: Method,
    uri: Uri,
    version: Version,
    host: Option<HeaderValue>,
    traceparent: Option<HeaderValue>,
    /// The request's declared `Content-Length`.
    request_length: Option<HeaderValue>,
    client: Option<SocketAddr>,
    served: Served,
    status: u16,
    bytes_sent: u64,
    duration: Duration,
    /// False when the client went away before the response body ended.
    completed: bool,
}

/// What served a request, as `forward::handle` learns it: the route and split it matched and
/// the endpoint the request went to. Holding the route keeps its ids without copying them.
#[derive(Default)]
pub struct Served {
    pub route: Option<Arc<Route>>,
    pub split: usize,
    pub upstream: Option<Arc<Endpoint>>,
    /// Set only when the request waited in the activator.
    pub held: Option<crate::server_timing::Held>,
}

impl AccessLog {
    /// Opens `target` and starts the writer thread. `queue` lines may wait for it; more are
    /// dropped and counted in `dropped`; written lines are counted in `lines`.
    pub fn open(
        target: &Target,
        format: Format,
        queue: usize,
        lines: IntCounter,
        dropped: IntCounter,
    ) -> std::io::Result<AccessLog> {
        let out: Box<dyn Write + Send> = match target {
            Target::Stdout => Box::new(std::io::stdout()),
            Target::Stderr => Box::new(std::io::stderr()),
            Target::File(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
        };
        let (sender, receiver) = mpsc::sync_channel(queue.max(1));
        let writer_dropped = dropped.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let writer_closing = closing.clone();
        let writer = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                write_lines(
                    receiver,
                    out,
                    format,
                    lines,
                    writer_dropped,
                    &writer_closing,
                )
            })?;
        Ok(AccessLog {
            queue: sender,
            dropped,
            closing,
            writer: Mutex::new(Some(writer)),
        })
    }

    /// Writes and flushes every queued line, then stops the writer. Called once the listeners
    /// have drained, so the last requests' lines are not lost when the process exits.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(writer) = writer {
            writer.thread().unpark();
            let _ = writer.join();
        }
    }

    /// Starts a request's record; the time and the request's fields are taken now.
    pub fn begin<B>(
        self: &Arc<Self>,
        req: &http::Request<B>,
        host: Option<&HeaderValue>,
        client: Option<SocketAddr>,
        started: Instant,
    ) -> Entry {
        let record = Record {
            time: SystemTime::now(),
            started,
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            host: host.cloned(),
            traceparent: req.headers().get("traceparent").cloned(),
            request_length: req.headers().get(http::header::CONTENT_LENGTH).cloned(),
            client,
            served: Served::default(),
            status: 499,
            bytes_sent: 0,
            duration: Duration::ZERO,
            completed: false,
        };
        Entry {
            pending: Some((self.clone(), Box::new(record))),
        }
    }

    fn send(&self, record: Box<Record>) {
        match self.queue.try_send(record) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => self.dropped.inc(),
        }
    }
}

/// A request's record until its line is sent. Dropped without [`Entry::finish`] (the client
/// went away before a response), it is sent with status 499.
pub struct Entry {
    pending: Option<(Arc<AccessLog>, Box<Record>)>,
}

impl Entry {
    /// The response head is known.
    pub fn respond(&mut self, status: u16, served: Served) {
        if let Some((_, record)) = &mut self.pending {
            record.status = status;
            record.served = served;
        }
    }

    /// A HEAD request: its response has no body to send, so a dropped body is not a client
    /// gone away.
    pub fn is_head(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|(_, record)| record.method == Method::HEAD)
    }

    /// The response body ended (`completed`) or was dropped: `bytes` were sent. Sends the line.
    pub fn finish(&mut self, bytes: u64, completed: bool) {
        if let Some((log, mut record)) = self.pending.take() {
            record.bytes_sent = bytes;
            record.completed = completed;
            record.duration = record.started.elapsed();
            log.send(record);
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        self.finish(0, false);
    }
}

/// How often the writer wakes to drain the queue. It polls rather than blocks in `recv` so that
/// a request's `try_send` never has to wake it (a futex call per line at low load); Envoy flushes
/// its access logs on a timer too (`file_flush_interval`, 1 s). At 50 ms a 16,384-line queue
/// absorbs 320,000 lines a second, about ten times what one worker serves.
const DRAIN_INTERVAL: Duration = Duration::from_millis(50);

/// The writer thread: every [`DRAIN_INTERVAL`], format and write every queued line, then flush.
/// Ends at [`AccessLog::close`], or when the gateway (the only sender) is gone.
fn write_lines(
    queue: Receiver<Box<Record>>,
    out: Box<dyn Write + Send>,
    format: Format,
    lines: IntCounter,
    dropped: IntCounter,
    closing: &AtomicBool,
) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = Vec::with_capacity(512);
    let mut warned = false;
    loop {
        // Read before draining: lines queued before `close` are written.
        let closing = closing.load(Ordering::Acquire);
        let mut wrote = false;
        loop {
            let record = match queue.try_recv() {
                Ok(record) => record,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    let _ = out.flush();
                    return;
                }
            };
            line.clear();
            match format {
                Format::Json => record.write_json(&mut line),
                Format::Text => record.write_text(&mut line),
            }
            match out.write_all(&line) {
                Ok(()) => lines.inc(),
                Err(error) => {
                    dropped.inc();
                    if !warned {
                        warned = true;
                        tracing::warn!(%error, "access log: write failed; dropping lines");
                    }
                }
            }
            wrote = true;
        }
        if wrote || closing {
            let _ = out.flush();
        }
        if closing {
            return;
        }
        std::thread::park_timeout(DRAIN_INTERVAL);
    }
}

impl Record {
    fn write_json(&self, out: &mut Vec<u8>) {
        let route = self.served.route.as_deref();
        let backend = route.and_then(|r| r.splits.get(self.served.split));
        out.extend_from_slice(b"{\"time\":\"");
        write_rfc3339(out, self.time);
        out.extend_from_slice(b"\",\"client\":");
        json_display(out, self.client.as_ref());
        out.extend_from_slice(b",\"host\":");
        json_bytes(out, self.host.as_ref().map(|h| h.as_bytes()));
        out.extend_from_slice(b",\"method\":");
        json_bytes(out, Some(self.method.as_str().as_bytes()));
        out.extend_from_slice(b",\"path\":");
        json_bytes(out, Some(path_and_query(&self.uri).as_bytes()));
        out.extend_from_slice(b",\"protocol\":");
        json_bytes(out, Some(protocol(self.version).as_bytes()));
        out.extend_from_slice(b",\"status\":");
        write_u64(out, u64::from(self.status));
        out.extend_from_slice(b",\"bytes_sent\":");
        write_u64(out, self.bytes_sent);
        out.extend_from_slice(b",\"request_length\":");
        match self.request_length.as_ref().and_then(content_length) {
            Some(n) => write_u64(out, n),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"duration_ms\":");
        write_millis(out, self.duration);
        out.extend_from_slice(b",\"ingress\":");
        json_bytes(out, route.map(|r| r.metrics.owner().as_bytes()));
        out.extend_from_slice(b",\"route\":");
        json_bytes(out, route.map(|r| r.id.as_bytes()));
        out.extend_from_slice(b",\"backend\":");
        json_bytes(out, backend.map(|s| s.backend.id.as_bytes()));
        out.extend_from_slice(b",\"revision\":");
        json_bytes(
            out,
            backend
                .and_then(|s| s.backend.revision.as_ref())
                .map(|r| r.id.as_bytes()),
        );
        out.extend_from_slice(b",\"upstream\":");
        json_display(out, self.served.upstream.as_ref().map(|e| &e.address));
        out.extend_from_slice(b",\"trace_id\":");
        json_bytes(out, self.trace_id().map(str::as_bytes));
        out.extend_from_slice(if self.completed {
            b",\"completed\":true}\n"
        } else {
            b",\"completed\":false}\n"
        });
    }

    /// `client - - [time] "METHOD path PROTO" status bytes`, as the Common Log Format, then
    /// the rest as `key="value"` (`-` when absent).
    fn write_text(&self, out: &mut Vec<u8>) {
        let route = self.served.route.as_deref();
        let backend = route.and_then(|r| r.splits.get(self.served.split));
        match &self.client {
            Some(client) => {
                let _ = write!(out, "{}", client.ip());
            }
            None => out.push(b'-'),
        }
        out.extend_from_slice(b" - - [");
        write_clf_time(out, self.time);
        out.extend_from_slice(b"] \"");
        text_escape(out, self.method.as_str().as_bytes());
        out.push(b' ');
        text_escape(out, path_and_query(&self.uri).as_bytes());
        out.push(b' ');
        out.extend_from_slice(protocol(self.version).as_bytes());
        out.extend_from_slice(b"\" ");
        write_u64(out, u64::from(self.status));
        out.push(b' ');
        write_u64(out, self.bytes_sent);
        text_field(out, "host", self.host.as_ref().map(|h| h.as_bytes()));
        let client = self.client.map(|c| c.to_string());
        text_field(out, "client", client.as_deref().map(str::as_bytes));
        text_field(out, "ingress", route.map(|r| r.metrics.owner().as_bytes()));
        text_field(out, "route", route.map(|r| r.id.as_bytes()));
        text_field(out, "backend", backend.map(|s| s.backend.id.as_bytes()));
        text_field(
            out,
            "revision",
            backend
                .and_then(|s| s.backend.revision.as_ref())
                .map(|r| r.id.as_bytes()),
        );
        let upstream = self.served.upstream.as_ref().map(|e| e.address.to_string());
        text_field(out, "upstream", upstream.as_deref().map(str::as_bytes));
        let length = self.request_length.as_ref().and_then(content_length);
        let length = length.map(|n| n.to_string());
        text_field(out, "request_length", length.as_deref().map(str::as_bytes));
        out.extend_from_slice(b" duration_ms=\"");
        write_millis(out, self.duration);
        out.push(b'"');
        text_field(out, "trace_id", self.trace_id().map(str::as_bytes));
        out.extend_from_slice(if self.completed {
            b" completed=\"true\"\n"
        } else {
            b" completed=\"false\"\n"
        });
    }

    /// The W3C trace id of a well-formed `traceparent` (version-format 00: `00-<32 hex>-<16
    /// hex>-<2 hex>`, lower case, ids not all zero).
    fn trace_id(&self) -> Option<&str> {
        trace_id(self.traceparent.as_ref()?.to_str().ok()?)
    }
}

fn trace_id(traceparent: &str) -> Option<&str> {
    let b = traceparent.as_bytes();
    let hex = |s: &[u8]| {
        s.iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
    };
    let nonzero = |s: &[u8]| s.iter().any(|c| *c != b'0');
    // Version 00 is exactly 55 bytes; later versions may append fields after a dash.
    let shaped = b.len() >= 55
        && (b.len() == 55 || b[55] == b'-')
        && b[2] == b'-'
        && b[35] == b'-'
        && b[52] == b'-'
        && hex(&b[..2])
        && &b[..2] != b"ff"
        && (&b[..2] != b"00" || b.len() == 55)
        && hex(&b[3..35])
        && hex(&b[36..52])
        && hex(&b[53..55]);
    (shaped && nonzero(&b[3..35]) && nonzero(&b[36..52])).then(|| &traceparent[3..35])
}

fn path_and_query(uri: &Uri) -> &str {
    uri.path_and_query().map_or("/", |pq| pq.as_str())
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/?",
    }
}

fn content_length(value: &HeaderValue) -> Option<u64> {
    value.to_str().ok()?.trim().parse().ok()
}

/// A JSON string, or `null`. Bytes that are not UTF-8 become U+FFFD; quotes, backslashes and
/// control characters are escaped, so a hostile header cannot end the string or the line.
fn json_bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    let Some(value) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    out.push(b'"');
    // Hosts, paths and ids almost never need escaping: copy them whole.
    if value
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(value);
        out.push(b'"');
        return;
    }
    for c in String::from_utf8_lossy(value).chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

fn json_display(out: &mut Vec<u8>, value: Option<&impl std::fmt::Display>) {
    match value {
        // Socket addresses and host:port need no escaping.
        Some(value) => {
            let _ = write!(out, "\"{value}\"");
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// ` key="value"`, or ` key=-` when absent.
fn text_field(out: &mut Vec<u8>, key: &str, value: Option<&[u8]>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    match value {
        Some(value) => {
            out.extend_from_slice(b"=\"");
            text_escape(out, value);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"=-"),
    }
}

/// nginx's access-log escaping: `"` and `\` get a backslash, bytes outside printable ASCII
/// become `\xHH`.
fn text_escape(out: &mut Vec<u8>, value: &[u8]) {
    if value
        .iter()
        .all(|&b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.extend_from_slice(value);
        return;
    }
    for &b in value {
        match b {
            b'"' | b'\\' => {
                out.push(b'\\');
                out.push(b);
            }
            0x20..=0x7e => out.push(b),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

struct Utc {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    millis: u32,
}

fn utc(time: SystemTime) -> Utc {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil((secs / 86_400) as i64);
    let of_day = secs % 86_400;
    Utc {
        year,
        month,
        day,
        hour: of_day / 3600,
        minute: of_day % 3600 / 60,
        second: of_day % 60,
        millis: since.subsec_millis(),
    }
}

/// `2026-12-04T12:34:53.123Z`
fn write_rfc3339(out: &mut Vec<u8>, time: SystemTime) {
    let t = utc(time);
    write_padded(out, t.year.max(0) as u64, 4);
    out.push(b'-');
    write_padded(out, u64::from(t.month), 2);
    out.push(b'-');
    write_padded(out, u64::from(t.day), 2);
    out.push(b'T');
    write_padded(out, t.hour, 2);
    out.push(b':');
    write_padded(out, t.minute, 2);
    out.push(b':');
    write_padded(out, t.second, 2);
    out.push(b'.');
    write_padded(out, u64::from(t.millis), 3);
    out.push(b'Z');
}

/// `04/Dec/2026:12:34:53 +0000`, the Common Log Format's time.
fn write_clf_time(out: &mut Vec<u8>, time: SystemTime) {
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let t = utc(time);
    write_padded(out, u64::from(t.day), 2);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(t.month as usize).saturating_sub(1) % 12]);
    out.push(b'/');
    write_padded(out, t.year.max(0) as u64, 4);
    out.push(b':');
    write_padded(out, t.hour, 2);
    out.push(b':');
    write_padded(out, t.minute, 2);
    out.push(b':');
    write_padded(out, t.second, 2);
    out.extend_from_slice(b" +0000");
}

/// Decimal digits without `core::fmt`, whose machinery was a large part of the writer's
/// instructions per line (callgrind).
fn write_u64(out: &mut Vec<u8>, n: u64) {
    write_padded(out, n, 1);
}

/// `n` in decimal, zero-padded to at least `width` digits.
fn write_padded(out: &mut Vec<u8>, mut n: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    let start = i.min(buf.len().saturating_sub(width));
    out.extend_from_slice(&buf[start..]);
}

/// Milliseconds with three decimals (microsecond resolution): `1.500`.
fn write_millis(out: &mut Vec<u8>, duration: Duration) {
    let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
    write_u64(out, micros / 1000);
    out.push(b'.');
    write_padded(out, micros % 1000, 3);
}

#[cfg(test)]
mod tests;
