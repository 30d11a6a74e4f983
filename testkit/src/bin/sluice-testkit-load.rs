//! `sluice-testkit-load`: a small HTTP/1.1 and gRPC (h2c) load generator for `perf/`.
//!
//! ```text
//! sluice-testkit-load --connect 127.0.0.1:PORT [--host HOST] [--path /] [--proto h1|grpc]
//!     [--connections 32] [--streams 1] [--rate RPS] [--duration 10] [--warmup 1]
//!     [--payload 16] [--timeout 5]
//! ```
//!
//! - `--rate R` (open loop): request `k` is *intended* to start at `start + k/R`, whatever happened
//!   to earlier requests. Its latency is measured from that intended time, not from when it was
//!   actually written, so a stall that delays later sends is charged to those requests too: this is
//!   how coordinated omission is avoided (as in wrk2 and HdrHistogram's corrected mode). A free
//!   worker (an HTTP/1.1 connection, or one gRPC stream slot) takes the oldest due request; if none
//!   is free the request waits and its wait counts.
//! - Without `--rate` (closed loop) every worker sends its next request as soon as the previous one
//!   is answered, and latency is measured from the actual send.
//!
//! Pacing: tokio's timer has a 1 ms resolution, far too coarse for tens of thousands of requests
//! per second. A worker that finishes a request takes the next one itself if it is due; only
//! when the event loop is about to sleep with a worker idle (tokio's `on_thread_park` hook) is a
//! `timerfd` armed, for [`SPIN_WINDOW`] before the next intended start: waking a sleeping vCPU
//! takes tens of microseconds, so the pacer then spins (calling `sched_yield`, so the backend on
//! the same CPU runs whenever it has work) until the start is due. A busy generator pays nothing
//! for pacing and never spins. In the report, `lateness` (actual minus intended send, for
//! requests a connection was idle for) shows how well the generator kept time, and `queued`
//! counts requests that found every connection busy and started over 100 µs late: that wait is
//! the target's backpressure, and it is part of their latency.
//!
//! `--proto grpc` sends unary calls (`POST --path`, default `/ping.PingService/Ping`) of a
//! `--payload`-byte message over h2c prior knowledge, `--streams` concurrent calls per connection,
//! and checks for HTTP 200, an echoed message of the same size and `grpc-status: 0`.
//!
//! Requests that started during `--warmup` seconds are sent but not counted. After `--duration`
//! seconds no new request starts; those in flight get `--timeout` seconds to finish.
//!
//! Prints one JSON object: counts, achieved rate, latency percentiles (µs) and a CDF.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const USAGE: &str = "usage: sluice-testkit-load --connect ADDR [--host HOST] [--path PATH] \
[--proto h1|grpc] [--connections N] [--streams N] [--rate RPS] [--duration S] [--warmup S] \
[--payload BYTES] [--timeout S]";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Proto {
    H1,
    Grpc,
}

#[derive(Debug)]
struct Args {
    connect: SocketAddr,
    host: String,
    path: Option<String>,
    proto: Proto,
    connections: usize,
    streams: usize,
    rate: Option<f64>,
    duration: f64,
    warmup: f64,
    payload: usize,
    timeout: f64,
}

impl Args {
    fn parse(args: impl IntoIterator<Item = String>) -> anyhow::Result<Args> {
        let mut a = Args {
            connect: "127.0.0.1:80".parse()?,
            host: String::new(),
            path: None,
            proto: Proto::H1,
            connections: 32,
            streams: 1,
            rate: None,
            duration: 10.0,
            warmup: 1.0,
            payload: 16,
            timeout: 5.0,
        };
        let mut connect = None;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let value = match inline {
                Some(value) => value,
                None => args
                    .next()
                    .with_context(|| format!("{flag} needs a value\n{USAGE}"))?,
            };
            let invalid = || format!("invalid value for {flag}: {value:?}");
            match flag.as_str() {
                "--connect" => connect = Some(value.parse().with_context(invalid)?),
                "--host" => a.host = value,
                "--path" => a.path = Some(value),
                "--proto" => {
                    a.proto = match value.as_str() {
                        "h1" => Proto::H1,
                        "grpc" => Proto::Grpc,
                        _ => bail!("{}", invalid()),
                    }
                }
                "--connections" => a.connections = value.parse().with_context(invalid)?,
                "--streams" => a.streams = value.parse().with_context(invalid)?,
                "--rate" => {
                    let rate: f64 = value.parse().with_context(invalid)?;
                    a.rate = (rate > 0.0).then_some(rate);
                }
                "--duration" => a.duration = value.parse().with_context(invalid)?,
                "--warmup" => a.warmup = value.parse().with_context(invalid)?,
                "--payload" => a.payload = value.parse().with_context(invalid)?,
                "--timeout" => a.timeout = value.parse().with_context(invalid)?,
                _ => bail!("unknown argument {flag:?}\n{USAGE}"),
            }
        }
        a.connect = connect.with_context(|| format!("--connect is required\n{USAGE}"))?;
        if a.host.is_empty() {
            a.host = a.connect.to_string();
        }
        a.connections = a.connections.max(1);
        a.streams = a.streams.max(1);
        anyhow::ensure!(
            a.duration > a.warmup && a.warmup >= 0.0,
            "--duration must exceed --warmup"
        );
        anyhow::ensure!(a.timeout > 0.0, "--timeout must be positive");
        Ok(a)
    }
}

fn main() -> anyhow::Result<()> {
    if std::env::args().any(|arg| arg == "--help" || arg == "-h") {
        println!("{USAGE}");
        return Ok(());
    }
    let args = Args::parse(std::env::args().skip(1))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(|| {
            PACER.with(|pacer| {
                if let Some(pacer) = pacer.borrow().as_ref() {
                    pacer.before_park();
                }
            });
        })
        .build()
        .context("build tokio runtime")?;
    let local = tokio::task::LocalSet::new();
    let report = local.block_on(&runtime, run(args))?;
    println!("{report}");
    Ok(())
}

/// A request to send: its intended start, and whether the worker was idle waiting for it (so any
/// delay in sending it is the generator's own) rather than busy when it fell due (so it queued
/// behind a slow response: the target's doing, and part of its latency).
struct Slot {
    at: Instant,
    paced: bool,
}

/// A request that started more than this after its intended time, on a worker that was busy when
/// it fell due, counts as queued.
const QUEUED_AFTER: Duration = Duration::from_micros(100);

enum Claim {
    Slot(Instant),
    Wait,
    Done,
}

/// Hands out intended start times to workers.
struct Pacer {
    start: Instant,
    end: Instant,
    /// Open loop: nanoseconds between intended starts, and how many requests in all.
    interval_ns: Option<f64>,
    total: u64,
    claimed: Cell<u64>,
    idle: RefCell<VecDeque<Rc<Notify>>>,
    finished: Cell<bool>,
    /// Open loop: wakes the event loop at the next intended start.
    timer: Option<Timer>,
}

thread_local! {
    /// The open loop's pacer, for the runtime's park hook (which runs on this thread).
    static PACER: RefCell<Option<Rc<Pacer>>> = const { RefCell::new(None) };
}

/// A one-shot `timerfd` in the event loop's epoll set.
struct Timer {
    fd: AsyncFd<OwnedFd>,
    armed_for: Cell<Option<Instant>>,
}

impl Timer {
    fn new() -> anyhow::Result<Timer> {
        use rustix::time::{timerfd_create, TimerfdClockId, TimerfdFlags};
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )
        .context("timerfd_create")?;
        // `AsyncFd::new` is deprecated because an arbitrary `AsRawFd` could change or close its
        // fd behind tokio's back; an `OwnedFd` it owns cannot, and `register` would need `unsafe`.
        #[allow(deprecated)]
        let fd = AsyncFd::new(fd).context("register timerfd")?;
        Ok(Timer {
            fd,
            armed_for: Cell::new(None),
        })
    }

    /// Fires at `at` (at once if it has passed); re-arming for the same instant is free.
    fn arm(&self, at: Instant) {
        use rustix::time::{timerfd_settime, Itimerspec, TimerfdTimerFlags, Timespec};
        if self.armed_for.get() == Some(at) {
            return;
        }
        // A zero value would disarm the timer.
        let left = at
            .saturating_duration_since(Instant::now())
            .max(Duration::from_nanos(1));
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec {
                tv_sec: i64::try_from(left.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(left.subsec_nanos()),
            },
        };
        if timerfd_settime(self.fd.get_ref(), TimerfdTimerFlags::empty(), &spec).is_ok() {
            self.armed_for.set(Some(at));
        }
    }
}

impl Pacer {
    fn intended(&self, k: u64) -> Instant {
        let ns = self.interval_ns.unwrap_or(0.0) * k as f64;
        self.start + Duration::from_nanos(ns as u64)
    }

    fn try_claim(&self) -> Claim {
        let now = Instant::now();
        let Some(interval) = self.interval_ns else {
            return if now >= self.end {
                Claim::Done
            } else {
                Claim::Slot(now)
            };
        };
        let k = self.claimed.get();
        // Requests still due at the end are not sent late: they are reported as `unsent`.
        if k >= self.total || now >= self.end {
            return Claim::Done;
        }
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as f64;
        // Request k is due at start + k * interval.
        if (k as f64) * interval <= elapsed {
            self.claimed.set(k + 1);
            Claim::Slot(self.intended(k))
        } else {
            Claim::Wait
        }
    }

    /// The next request for a worker, or `None` once the run is over.
    async fn next(&self, me: &Rc<Notify>) -> Option<Slot> {
        let mut paced = false;
        loop {
            match self.try_claim() {
                Claim::Slot(at) => return Some(Slot { at, paced }),
                Claim::Done => return None,
                Claim::Wait => paced = true,
            }
            if self.finished.get() {
                return None;
            }
            self.idle.borrow_mut().push_back(Rc::clone(me));
            me.notified().await;
        }
    }

    /// The event loop is about to sleep: if a worker is idle, make sure it wakes up for the next
    /// intended start (or for the end of the run).
    fn before_park(&self) {
        let Some(timer) = &self.timer else {
            return;
        };
        if self.finished.get() || self.idle.borrow().is_empty() {
            return;
        }
        let k = self.claimed.get();
        let at = if k >= self.total {
            self.end + Duration::from_millis(2)
        } else {
            self.intended(k).min(self.end + Duration::from_millis(2))
        };
        timer.arm(at.checked_sub(SPIN_WINDOW).unwrap_or(at));
    }

    /// Wakes one idle worker per due, unclaimed request (all of them once the run is over).
    fn dispatch(&self) {
        let now = Instant::now();
        let interval = self.interval_ns.unwrap_or(1.0);
        let elapsed = now.saturating_duration_since(self.start).as_nanos() as f64;
        let due = ((elapsed / interval) as u64 + 1).min(self.total);
        if self.claimed.get() >= self.total || now >= self.end + Duration::from_millis(1) {
            self.finished.set(true);
        }
        let mut wake = if self.finished.get() {
            usize::MAX
        } else {
            due.saturating_sub(self.claimed.get()) as usize
        };
        let mut idle = self.idle.borrow_mut();
        while wake > 0 {
            let Some(worker) = idle.pop_front() else {
                break;
            };
            worker.notify_one();
            wake -= 1;
        }
    }
}

/// How long before an intended start the timer fires and the pacer starts spinning.
const SPIN_WINDOW: Duration = Duration::from_micros(60);

/// The open loop's pacer: each time the timer fires, spins to the next intended start and hands
/// due requests to idle workers.
async fn pace(pacer: Rc<Pacer>) {
    let Some(timer) = &pacer.timer else {
        return;
    };
    let mut expirations = [0u8; 8];
    loop {
        let Ok(mut ready) = timer.fd.readable().await else {
            return;
        };
        match rustix::io::read(timer.fd.get_ref(), &mut expirations) {
            Ok(_) => {}
            Err(rustix::io::Errno::AGAIN) => {
                ready.clear_ready();
                continue;
            }
            Err(_) => return,
        }
        timer.armed_for.set(None);
        loop {
            pacer.dispatch();
            if pacer.finished.get() {
                return;
            }
            let next = pacer.intended(pacer.claimed.get());
            if pacer.idle.borrow().is_empty()
                || next.saturating_duration_since(Instant::now()) > SPIN_WINDOW
            {
                // Back to sleep; the park hook arms the timer again if needed.
                break;
            }
            std::thread::yield_now();
            tokio::task::yield_now().await;
        }
    }
}

#[derive(Default)]
struct Stats {
    /// Latency of counted successful requests, in ns (saturating at u32::MAX, 4.3 s).
    latency: Vec<u32>,
    /// Actual send minus intended send of counted requests a worker was idle for, in ns.
    lateness: Vec<u32>,
    /// Counted requests that waited for a free worker for more than `QUEUED_AFTER`.
    queued: u64,
    ok: u64,
    /// Every completed request, warm-up included (what the target's CPU time was spent on).
    completed_all: u64,
    errors: u64,
    timeouts: u64,
    bad_status: u64,
    first_error: Option<String>,
}

struct Ctx {
    args: Args,
    pacer: Rc<Pacer>,
    count_from: Instant,
    stats: RefCell<Stats>,
}

impl Ctx {
    fn counted(&self, intended: Instant) -> bool {
        intended >= self.count_from
    }

    fn record(&self, slot: &Slot, sent: Instant, outcome: Outcome) {
        let intended = slot.at;
        let mut stats = self.stats.borrow_mut();
        if matches!(outcome, Outcome::Ok | Outcome::BadStatus(_)) {
            stats.completed_all += 1;
        }
        if !self.counted(intended) {
            return;
        }
        match outcome {
            Outcome::Ok => {
                let done = Instant::now();
                let ns = |d: Duration| u32::try_from(d.as_nanos()).unwrap_or(u32::MAX);
                stats
                    .latency
                    .push(ns(done.saturating_duration_since(intended)));
                let late = sent.saturating_duration_since(intended);
                if slot.paced {
                    stats.lateness.push(ns(late));
                } else if late > QUEUED_AFTER {
                    stats.queued += 1;
                }
                stats.ok += 1;
            }
            Outcome::BadStatus(status) => {
                stats.bad_status += 1;
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| format!("status {status}"));
            }
            Outcome::Error(e) => {
                stats.errors += 1;
                stats.first_error.get_or_insert(e);
            }
            Outcome::Timeout => {
                stats.timeouts += 1;
                stats.errors += 1;
                stats
                    .first_error
                    .get_or_insert_with(|| "timeout".to_owned());
            }
        }
    }
}

enum Outcome {
    Ok,
    BadStatus(u16),
    Error(String),
    Timeout,
}

async fn run(args: Args) -> anyhow::Result<serde_json::Value> {
    // Fail fast if nothing listens.
    drop(
        TcpStream::connect(args.connect)
            .await
            .with_context(|| format!("connect to {}", args.connect))?,
    );
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + Duration::from_secs_f64(args.duration);
    let interval_ns = args.rate.map(|r| 1e9 / r);
    let total = interval_ns.map_or(u64::MAX, |i| (args.duration * 1e9 / i) as u64);
    let pacer = Rc::new(Pacer {
        start,
        end,
        interval_ns,
        total,
        claimed: Cell::new(0),
        idle: RefCell::new(VecDeque::new()),
        finished: Cell::new(false),
        timer: match interval_ns {
            Some(_) => Some(Timer::new()?),
            None => None,
        },
    });
    let workers_n = args.connections
        * if args.proto == Proto::Grpc {
            args.streams
        } else {
            1
        };
    let ctx = Rc::new(Ctx {
        count_from: start + Duration::from_secs_f64(args.warmup),
        pacer: Rc::clone(&pacer),
        stats: RefCell::new(Stats {
            latency: Vec::with_capacity(1 << 20),
            lateness: Vec::with_capacity(1 << 20),
            ..Stats::default()
        }),
        args,
    });

    if interval_ns.is_some() {
        PACER.with(|p| *p.borrow_mut() = Some(Rc::clone(&pacer)));
        tokio::task::spawn_local(pace(Rc::clone(&pacer)));
    }

    let mut tasks = Vec::with_capacity(workers_n);
    match ctx.args.proto {
        Proto::H1 => {
            for _ in 0..ctx.args.connections {
                tasks.push(tokio::task::spawn_local(h1_worker(Rc::clone(&ctx))));
            }
        }
        Proto::Grpc => {
            for _ in 0..ctx.args.connections {
                let sender = grpc_connect(ctx.args.connect).await?;
                for _ in 0..ctx.args.streams {
                    tasks.push(tokio::task::spawn_local(grpc_worker(
                        Rc::clone(&ctx),
                        sender.clone(),
                    )));
                }
            }
        }
    }
    let bound = end + Duration::from_secs_f64(ctx.args.timeout) + Duration::from_secs(1);
    for task in tasks {
        let left = bound.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, task).await {
            Ok(_) => {}
            Err(_) => {
                ctx.stats.borrow_mut().timeouts += 1;
            }
        }
    }
    pacer.finished.set(true);
    PACER.with(|p| p.borrow_mut().take());
    Ok(report(&ctx))
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[idx]) / 1000.0
}

fn report(ctx: &Ctx) -> serde_json::Value {
    let mut stats = ctx.stats.borrow_mut();
    stats.latency.sort_unstable();
    stats.lateness.sort_unstable();
    let window = ctx.args.duration - ctx.args.warmup;
    let lat = &stats.latency;
    let mean = if lat.is_empty() {
        0.0
    } else {
        lat.iter().map(|&v| f64::from(v)).sum::<f64>() / lat.len() as f64 / 1000.0
    };
    // Quantiles for a CDF plot: every 5% to 90%, then in tenths of a "nine" to 99.999%.
    let mut qs: Vec<f64> = (0..=18).map(|i| f64::from(i) * 0.05).collect();
    qs[0] = 0.001;
    let mut nines = 1.0;
    while nines <= 5.0 + 1e-9 {
        qs.push(1.0 - 10f64.powf(-nines));
        nines += 0.1;
    }
    qs.push(1.0);
    let cdf: Vec<[f64; 2]> = qs.iter().map(|&q| [q, percentile(lat, q)]).collect();
    let unsent = match ctx.pacer.interval_ns {
        Some(_) => ctx.pacer.total.saturating_sub(ctx.pacer.claimed.get()),
        None => 0,
    };
    serde_json::json!({
        "proto": match ctx.args.proto { Proto::H1 => "h1", Proto::Grpc => "grpc" },
        "mode": if ctx.args.rate.is_some() { "open" } else { "closed" },
        "target_rate": ctx.args.rate,
        "connections": ctx.args.connections,
        "streams": ctx.args.streams,
        "window_s": window,
        "requests": stats.ok,
        "completed_all": stats.completed_all,
        "errors": stats.errors,
        "timeouts": stats.timeouts,
        "bad_status": stats.bad_status,
        "unsent": unsent,
        "first_error": stats.first_error,
        "rps": stats.ok as f64 / window,
        "latency_us": {
            "mean": mean,
            "p50": percentile(lat, 0.5),
            "p90": percentile(lat, 0.9),
            "p99": percentile(lat, 0.99),
            "p999": percentile(lat, 0.999),
            "max": percentile(lat, 1.0),
        },
        "queued": stats.queued,
        "lateness_us": {
            "p50": percentile(&stats.lateness, 0.5),
            "p99": percentile(&stats.lateness, 0.99),
            "max": percentile(&stats.lateness, 1.0),
        },
        "cdf": cdf,
    })
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1: one request at a time per connection, a hand-rolled client (a request is one write of
// prebuilt bytes; the response parser handles content-length, chunked and connection: close).

struct H1Conn {
    stream: TcpStream,
    buf: Box<[u8]>,
    /// Bytes of `buf` holding unparsed input.
    filled: usize,
}

enum Framing {
    Length(usize),
    Chunked,
    UntilClose,
}

impl H1Conn {
    async fn connect(addr: SocketAddr) -> std::io::Result<H1Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(H1Conn {
            stream,
            buf: vec![0u8; 64 * 1024].into_boxed_slice(),
            filled: 0,
        })
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.filled == self.buf.len() {
            bail!("response head larger than {} bytes", self.buf.len());
        }
        let n = self.stream.read(&mut self.buf[self.filled..]).await?;
        if n == 0 {
            bail!("connection closed by peer");
        }
        self.filled += n;
        Ok(())
    }

    /// Sends `request` and reads one whole response. Returns the status and whether the
    /// connection can be reused.
    async fn request(&mut self, request: &[u8]) -> anyhow::Result<(u16, bool)> {
        self.stream.write_all(request).await?;
        self.filled = 0;
        let head_len = loop {
            if let Some(pos) = find(&self.buf[..self.filled], b"\r\n\r\n") {
                break pos + 4;
            }
            self.fill().await?;
        };
        let head = &self.buf[..head_len];
        let status = parse_status(head)?;
        let mut framing = if status == 204 || status == 304 || (100..200).contains(&status) {
            Framing::Length(0)
        } else {
            Framing::UntilClose
        };
        let mut keep_alive = head.starts_with(b"HTTP/1.1");
        for line in head.split(|&b| b == b'\n').skip(1) {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (name, value) = (&line[..colon], trim(&line[colon + 1..]));
            if name.eq_ignore_ascii_case(b"content-length") {
                let len = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .context("bad content-length")?;
                framing = Framing::Length(len);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding")
                && value.eq_ignore_ascii_case(b"chunked")
            {
                framing = Framing::Chunked;
            } else if name.eq_ignore_ascii_case(b"connection") {
                if value.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if value.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        }
        match framing {
            Framing::Length(len) => {
                let mut have = self.filled - head_len;
                // Discard the body as it arrives instead of buffering it.
                self.filled = 0;
                while have < len {
                    let n = self.stream.read(&mut self.buf[..]).await?;
                    if n == 0 {
                        bail!("connection closed inside a body");
                    }
                    have += n;
                }
                if have > len {
                    bail!("{} unexpected bytes after the response", have - len);
                }
            }
            Framing::Chunked => {
                self.buf.copy_within(head_len..self.filled, 0);
                self.filled -= head_len;
                loop {
                    match chunked_end(&self.buf[..self.filled])? {
                        Some(_) => break,
                        None => self.fill().await?,
                    }
                }
            }
            Framing::UntilClose => {
                self.filled = 0;
                while self.stream.read(&mut self.buf[..]).await? > 0 {}
                keep_alive = false;
            }
        }
        self.filled = 0;
        Ok((status, keep_alive))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &v[start..end]
}

fn parse_status(head: &[u8]) -> anyhow::Result<u16> {
    if !head.starts_with(b"HTTP/1.") || head.len() < 12 {
        bail!("not an HTTP/1.x response");
    }
    std::str::from_utf8(&head[9..12])
        .ok()
        .and_then(|s| s.parse().ok())
        .context("bad status line")
}

/// If `body` holds a complete chunked body (with trailers), its length.
fn chunked_end(body: &[u8]) -> anyhow::Result<Option<usize>> {
    let mut pos = 0;
    loop {
        let Some(line_end) = find(&body[pos..], b"\r\n") else {
            return Ok(None);
        };
        let line = &body[pos..pos + line_end];
        let size_hex = line.split(|&b| b == b';').next().unwrap_or(line);
        let size = usize::from_str_radix(std::str::from_utf8(trim(size_hex))?, 16)
            .context("bad chunk size")?;
        pos += line_end + 2;
        if size == 0 {
            // Trailers, then an empty line.
            loop {
                let Some(end) = find(&body[pos..], b"\r\n") else {
                    return Ok(None);
                };
                pos += end + 2;
                if end == 0 {
                    return Ok(Some(pos));
                }
            }
        }
        if body.len() < pos + size + 2 {
            return Ok(None);
        }
        pos += size + 2;
    }
}

async fn h1_worker(ctx: Rc<Ctx>) {
    let me = Rc::new(Notify::new());
    let path = ctx.args.path.as_deref().unwrap_or("/");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice-testkit-load\r\n\r\n",
        ctx.args.host
    )
    .into_bytes();
    let timeout = Duration::from_secs_f64(ctx.args.timeout);
    let mut conn: Option<H1Conn> = None;
    while let Some(slot) = ctx.pacer.next(&me).await {
        let sent = Instant::now();
        let attempt = async {
            if conn.is_none() {
                conn = Some(H1Conn::connect(ctx.args.connect).await?);
            }
            let c = conn.as_mut().context("no connection")?;
            c.request(&request).await
        };
        let outcome = match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok((status, keep_alive))) => {
                if !keep_alive {
                    conn = None;
                }
                if status < 400 {
                    Outcome::Ok
                } else {
                    Outcome::BadStatus(status)
                }
            }
            Ok(Err(e)) => {
                conn = None;
                Outcome::Error(format!("{e:#}"))
            }
            Err(_) => {
                conn = None;
                Outcome::Timeout
            }
        };
        ctx.record(&slot, sent, outcome);
    }
}

// ---------------------------------------------------------------------------------------------
// gRPC unary over h2c.

async fn grpc_connect(addr: SocketAddr) -> anyhow::Result<h2::client::SendRequest<Bytes>> {
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(16 << 20)
        .handshake(stream)
        .await
        .context("h2c handshake")?;
    tokio::task::spawn_local(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

async fn grpc_call(
    sender: &h2::client::SendRequest<Bytes>,
    uri: &Uri,
    message: &Bytes,
) -> anyhow::Result<Outcome> {
    let request = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        )
        .header(http::header::TE, HeaderValue::from_static("trailers"))
        .body(())?;
    let mut sender = sender.clone().ready().await.context("h2 connection")?;
    let (response, mut send) = sender.send_request(request, false)?;
    send.send_data(message.clone(), true)?;
    let response = response.await.context("response head")?;
    if response.status() != StatusCode::OK {
        return Ok(Outcome::BadStatus(response.status().as_u16()));
    }
    let trailers_only = response.headers().get("grpc-status").cloned();
    let mut body = response.into_body();
    let mut received = 0;
    while let Some(data) = body.data().await {
        let data = data.context("response body")?;
        received += data.len();
        let _ = body.flow_control().release_capacity(data.len());
    }
    let status = match trailers_only {
        Some(status) => Some(status),
        None => body
            .trailers()
            .await
            .context("trailers")?
            .and_then(|t| t.get("grpc-status").cloned()),
    };
    if status.as_ref().map(HeaderValue::as_bytes) != Some(b"0") {
        return Ok(Outcome::Error(format!("grpc-status {status:?}")));
    }
    if received != message.len() {
        return Ok(Outcome::Error(format!(
            "reply of {received} bytes, sent {}",
            message.len()
        )));
    }
    Ok(Outcome::Ok)
}

async fn grpc_worker(ctx: Rc<Ctx>, sender: h2::client::SendRequest<Bytes>) {
    let me = Rc::new(Notify::new());
    let path = ctx
        .args
        .path
        .clone()
        .unwrap_or_else(|| "/ping.PingService/Ping".to_owned());
    let Ok(uri) = format!("http://{}{path}", ctx.args.host).parse::<Uri>() else {
        ctx.stats.borrow_mut().first_error = Some(format!("bad uri for host {}", ctx.args.host));
        return;
    };
    let mut message = BytesMut::with_capacity(5 + ctx.args.payload);
    message.put_u8(0);
    message.put_u32(u32::try_from(ctx.args.payload).unwrap_or(u32::MAX));
    message.put_bytes(b'p', ctx.args.payload);
    let message = message.freeze();
    let timeout = Duration::from_secs_f64(ctx.args.timeout);
    while let Some(slot) = ctx.pacer.next(&me).await {
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(timeout, grpc_call(&sender, &uri, &message)).await
        {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => Outcome::Error(format!("{e:#}")),
            Err(_) => Outcome::Timeout,
        };
        let broken = matches!(outcome, Outcome::Error(_) | Outcome::Timeout);
        ctx.record(&slot, sent, outcome);
        if broken && sender.clone().ready().await.is_err() {
            // The connection is gone; this worker's share of the load is lost (and counted).
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_framed() -> anyhow::Result<()> {
        assert_eq!(chunked_end(b"5\r\nhello\r\n0\r\n\r\n")?, Some(15));
        assert_eq!(chunked_end(b"5\r\nhello\r\n0\r\nx-t: 1\r\n\r\n")?, Some(23));
        assert_eq!(chunked_end(b"5\r\nhel")?, None);
        assert_eq!(chunked_end(b"5\r\nhello\r\n0\r\n")?, None);
        assert!(chunked_end(b"zz\r\n").is_err());
        Ok(())
    }

    #[test]
    fn percentiles_pick_the_ceiling_rank() {
        let v: Vec<u32> = (1..=100).map(|i| i * 1000).collect();
        assert_eq!(percentile(&v, 0.5), 50.0);
        assert_eq!(percentile(&v, 0.99), 99.0);
        assert_eq!(percentile(&v, 1.0), 100.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }

    #[test]
    fn arguments_parse() -> anyhow::Result<()> {
        let a = Args::parse(
            [
                "--connect",
                "127.0.0.1:9",
                "--rate=1000",
                "--proto",
                "grpc",
                "--duration",
                "3",
            ]
            .map(String::from),
        )?;
        assert_eq!(a.proto, Proto::Grpc);
        assert_eq!(a.rate, Some(1000.0));
        assert_eq!(a.host, "127.0.0.1:9");
        assert!(Args::parse(["--rate", "5"].map(String::from)).is_err());
        assert!(
            Args::parse(["--connect", "127.0.0.1:9", "--warmup", "20"].map(String::from)).is_err()
        );
        Ok(())
    }
}
