//! `sluice-testkit-relay`: the least work a proxy can do per request, as a floor for `perf/`.
//!
//! ```text
//! sluice-testkit-relay --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT
//! ```
//!
//! A single-threaded epoll loop that pairs every accepted connection with one upstream
//! connection and copies bytes across: one `read` and one `write` per message each way, four
//! system calls per request and no parsing at all. Any HTTP/1.1 proxy makes at least those calls
//! and keeps at least one socket per client and one per request in flight upstream, so how this
//! relay's CPU per request grows with the connection count is what the kernel alone adds
//! (issue 12, goal 3). It is not a proxy: no HTTP, no limits, and a write the socket cannot take
//! at once is finished blocking, which small benchmark messages never need.

use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd as _, OwnedFd};

use anyhow::{bail, Context as _};
use rustix::buffer::spare_capacity;
use rustix::event::epoll;

/// Token of the listening socket; a connection pair `i` has tokens `2i` (client) and `2i + 1`.
const LISTENER: u64 = u64::MAX;

struct Pair {
    sides: [TcpStream; 2],
    /// Which sides have sent their FIN: it is passed on as a half-close, and the pair ends when
    /// both have, so a response still on its way outlives the request side's close.
    ended: [bool; 2],
}

enum Copied {
    More,
    /// The side sent FIN; it is out of the poll set and the other side is half-closed.
    Ended,
    Failed,
}

fn main() -> anyhow::Result<()> {
    let (listen, upstream) = parse_args()?;
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    listener.set_nonblocking(true)?;
    println!("listening on {}", listener.local_addr()?);
    let poll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
    epoll::add(
        &poll,
        listener.as_fd(),
        epoll::EventData::new_u64(LISTENER),
        epoll::EventFlags::IN,
    )?;
    let mut pairs: Vec<Option<Pair>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut events = Vec::with_capacity(256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        events.clear();
        match epoll::wait(&poll, spare_capacity(&mut events), None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        for event in &events {
            let token = event.data.u64();
            if token == LISTENER {
                accept_all(&listener, upstream, &poll, &mut pairs, &mut free);
                continue;
            }
            let (index, from) = ((token / 2) as usize, (token % 2) as usize);
            let Some(pair) = pairs.get_mut(index).and_then(Option::as_mut) else {
                continue;
            };
            let done = match copy_once(pair, from, &mut buf) {
                Copied::More => false,
                Copied::Ended => {
                    let _ = epoll::delete(&poll, pair.sides[from].as_fd());
                    pair.ended[from] = true;
                    pair.ended == [true, true]
                }
                Copied::Failed => true,
            };
            if done {
                // Dropping the sockets closes them, which takes them out of the poll set.
                pairs[index] = None;
                free.push(index);
            }
        }
    }
}

/// Reads what one side has and writes it to the other.
fn copy_once(pair: &Pair, from: usize, buf: &mut [u8]) -> Copied {
    let to = &pair.sides[1 - from];
    let n = match (&pair.sides[from]).read(buf) {
        Ok(0) => {
            return match to.shutdown(Shutdown::Write) {
                Ok(()) => Copied::Ended,
                Err(_) => Copied::Failed,
            }
        }
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
            return Copied::More
        }
        Err(_) => return Copied::Failed,
    };
    let written = match (&*to).write(&buf[..n]) {
        Ok(w) if w == n => return Copied::More,
        Ok(w) => w,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(_) => return Copied::Failed,
    };
    let rest = &buf[written..n];
    if to.set_nonblocking(false).is_ok()
        && (&*to).write_all(rest).is_ok()
        && to.set_nonblocking(true).is_ok()
    {
        Copied::More
    } else {
        Copied::Failed
    }
}

fn accept_all(
    listener: &TcpListener,
    upstream: SocketAddr,
    poll: &OwnedFd,
    pairs: &mut Vec<Option<Pair>>,
    free: &mut Vec<usize>,
) {
    loop {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // Out of descriptors or the like: drop this one, keep serving the rest.
            Err(e) => {
                eprintln!("accept: {e}");
                return;
            }
        };
        let server = match TcpStream::connect(upstream) {
            Ok(server) => server,
            Err(e) => {
                eprintln!("connect {upstream}: {e}");
                continue;
            }
        };
        let index = free.pop().unwrap_or_else(|| {
            pairs.push(None);
            pairs.len() - 1
        });
        // A pair that cannot be set up is dropped (closing both sockets), not the relay.
        if let Err(e) = register(poll, index, &client, &server) {
            eprintln!("setting up a connection pair: {e}");
            free.push(index);
            continue;
        }
        pairs[index] = Some(Pair {
            sides: [client, server],
            ended: [false, false],
        });
    }
}

fn register(
    poll: &OwnedFd,
    index: usize,
    client: &TcpStream,
    server: &TcpStream,
) -> std::io::Result<()> {
    for (offset, side) in [client, server].into_iter().enumerate() {
        side.set_nodelay(true)?;
        side.set_nonblocking(true)?;
        let token = epoll::EventData::new_u64(index as u64 * 2 + offset as u64);
        epoll::add(
            poll,
            side.as_fd(),
            token,
            epoll::EventFlags::IN | epoll::EventFlags::RDHUP,
        )?;
    }
    Ok(())
}

fn parse_args() -> anyhow::Result<(SocketAddr, SocketAddr)> {
    let (mut listen, mut upstream) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{arg} needs a value"))?;
        let addr: SocketAddr = value
            .parse()
            .with_context(|| format!("{arg}: {value:?} is not HOST:PORT"))?;
        match arg.as_str() {
            "--listen" => listen = Some(addr),
            "--upstream" => upstream = Some(addr),
            other => bail!("unknown argument {other:?}; usage: --listen ADDR --upstream ADDR"),
        }
    }
    match (listen, upstream) {
        (Some(l), Some(u)) => Ok((l, u)),
        _ => bail!("usage: sluice-testkit-relay --listen ADDR --upstream ADDR"),
    }
}
