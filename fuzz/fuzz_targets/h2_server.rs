//! The HTTP/2 server's connection state (`sluice_proxy::downstream::h2::state`): a client's
//! preface, then arbitrary bytes, fed in arbitrary pieces. Requests it hands out are answered
//! (some with bodies, some reading the request body, some let go early); some inputs start a
//! graceful shutdown partway, and some finish it without the client's ACK. Nothing panics; what
//! the server writes is well-framed HTTP/2; and once every handle lets go and the connection
//! is over, no stream is left behind.
#![no_main]

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, StatusCode};
use libfuzzer_sys::fuzz_target;
use sluice_proxy::downstream::h2::state::{Config, Shared, Side};
use std::task::{Context, Poll, Waker};

#[path = "../common/frames.rs"]
mod frames;
use frames::well_framed;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct Exchange {
    id: u32,
    /// The request has a body, still held.
    reads: bool,
    /// The response body still to send.
    body: Option<Bytes>,
    responding: bool,
}

fuzz_target!(|data: &[u8]| {
    let [shape, step, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step % 64) + 1;
    let shared = Shared::new(Config {
        max_header_list: 1024,
        max_concurrent_streams: 8,
        write_high_water: 32 * 1024,
        stream_window: 16 * 1024,
        connection_window: 64 * 1024,
        max_local_error_resets: 16,
        premature_floor: 50,
        premature_lifetime: std::time::Duration::from_secs(1),
    });
    let mut state = shared.lock();
    state.start();
    let mut cx = Context::from_waker(Waker::noop());
    let mut exchanges: Vec<Exchange> = Vec::new();
    let mut accepted = Vec::new();
    let mut read = BytesMut::from(PREFACE);
    let mut out = BytesMut::new();
    let mut failed = false;
    // The piece before which a graceful shutdown starts (if `shape`'s top bit says so), and
    // whether the final GOAWAY then goes out two pieces later without waiting for the ACK.
    let shutdown_at = (shape & 0x80 != 0).then_some(usize::from(shape >> 4 & 0x7));
    let finish_unacked = shape & 0x08 != 0;
    for (n, piece) in rest.chunks(step).enumerate() {
        if shutdown_at == Some(n) {
            state.graceful_shutdown();
        }
        if finish_unacked && shutdown_at.is_some_and(|at| n == at + 2) {
            state.finish_shutdown();
        }
        read.extend_from_slice(piece);
        if state.receive(&mut read, std::time::Instant::now()).is_err() {
            failed = true;
        }
        state.swap_accepted(&mut accepted);
        for new in accepted.drain(..) {
            let pick = shape.rotate_left(n as u32 % 8);
            exchanges.push(Exchange {
                id: new.id,
                reads: !new.end_stream,
                body: (pick & 1 == 1).then(|| Bytes::from(vec![b'r'; 40_000])),
                responding: pick & 2 == 2,
            });
        }
        for ex in &mut exchanges {
            while ex.reads {
                let mut ended = false;
                match state.poll_body(&mut cx, ex.id, &mut ended) {
                    Poll::Ready(Some(Ok(_))) if !ended => {}
                    Poll::Ready(_) => {
                        ex.reads = false;
                        state.release(ex.id, Side::RequestBody);
                    }
                    Poll::Pending => break,
                }
            }
            if ex.responding {
                ex.responding = false;
                let end = ex.body.is_none();
                state.send_head(ex.id, StatusCode::OK, &HeaderMap::new(), end);
            }
            if let Some(body) = &mut ex.body {
                if let Poll::Ready(_) = state.poll_send_data(&mut cx, ex.id, body, true) {
                    ex.body = None;
                }
            }
        }
        out.clear();
        state.swap_written(&mut out);
        // The client may raise the frame size; we never send above 16 MiB.
        well_framed(&out, 16_777_215);
        if failed {
            break;
        }
    }
    for ex in &exchanges {
        if ex.reads {
            state.release(ex.id, Side::RequestBody);
        }
        state.release(ex.id, Side::Response);
    }
    state.client_gone();
    assert!(state.is_idle(), "a stream outlived its handles");
    assert!(state.finished());
});
