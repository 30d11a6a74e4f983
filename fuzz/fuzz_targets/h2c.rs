//! The h2c client's connection state (`sluice_proxy::h2c::connection`): arbitrary bytes from
//! the server, fed in arbitrary pieces, against a few open streams (some still sending a
//! body), and two requests that keep asking for a stream of their own (they wait in line
//! once the server's SETTINGS lower the stream limit). Nothing panics; every stream ends up
//! with an answer or an error, never both lost; what the client writes back is well-framed
//! HTTP/2; and once every handle lets go, no stream is left behind (the map and the open
//! count are both empty).
#![no_main]

use bytes::{Bytes, BytesMut};
use http::{Method, Request};
use libfuzzer_sys::fuzz_target;
use sluice_proxy::h2c::connection::{Side, State};
use sluice_proxy::upstream::Forwarding;
use std::task::{Context, Poll, Waker};

#[path = "../common/frames.rs"]
mod frames;
use frames::well_framed;

struct Exchange {
    id: u32,
    /// The body still to send, when the request has one.
    body: Option<Bytes>,
    /// A request body's pipe holds the stream's sending side.
    sends: bool,
    head_done: bool,
    body_done: bool,
}

fuzz_target!(|data: &[u8]| {
    let [shape, step, rest @ ..] = data else {
        return;
    };
    let step = usize::from(*step % 64) + 1;
    let mut state = State::new();
    let waker = Waker::noop();
    let mut cx = Context::from_waker(waker);
    let mut exchanges = Vec::new();
    for i in 0..(shape % 4 + 1) {
        let with_body = shape >> (i + 2) & 1 == 1;
        let req = Request::builder()
            .method(if with_body { Method::POST } else { Method::GET })
            .uri("http://upstream.example/fuzz")
            .header("x-fuzz", "1")
            .body(())
            .expect("a valid request");
        let (parts, ()) = req.into_parts();
        match state.open(
            &mut cx,
            &mut None,
            &parts,
            &Forwarding::NONE,
            !with_body,
        ) {
            Poll::Ready(Ok(id)) => exchanges.push(Exchange {
                id,
                body: with_body.then(|| Bytes::from(vec![b'b'; 70_000])),
                sends: with_body,
                head_done: false,
                body_done: false,
            }),
            other => panic!(
                "a fresh connection opens a stream: {:?}",
                other.map(|r| r.err())
            ),
        }
    }
    well_framed(&state.take_written(), 16_384);
    let (late, ()) = Request::get("http://upstream.example/late")
        .body(())
        .expect("a valid request")
        .into_parts();
    // Each late request's place in line; `None` once it opened or was refused.
    let mut waiting = [Some(None), Some(None)];
    let mut read = BytesMut::new();
    let mut failed = false;
    for piece in rest.chunks(step) {
        read.extend_from_slice(piece);
        if state.receive(&mut read).is_err() {
            failed = true;
        }
        for slot in &mut waiting {
            let Some(place) = slot else { continue };
            match state.open(&mut cx, place, &late, &Forwarding::NONE, true) {
                Poll::Ready(Ok(id)) => {
                    *slot = None;
                    exchanges.push(Exchange {
                        id,
                        body: None,
                        sends: false,
                        head_done: false,
                        body_done: false,
                    });
                }
                Poll::Ready(Err(_)) => *slot = None,
                Poll::Pending => {}
            }
        }
        for ex in &mut exchanges {
            if let Some(body) = &mut ex.body {
                match state.poll_send_data(&mut cx, ex.id, body, true) {
                    Poll::Ready(_) => ex.body = None,
                    Poll::Pending => {}
                }
            }
            if !ex.head_done {
                match state.poll_head(&mut cx, ex.id) {
                    Poll::Ready(Ok((_, ended))) => {
                        ex.head_done = true;
                        ex.body_done = ended;
                    }
                    Poll::Ready(Err(_)) => {
                        ex.head_done = true;
                        ex.body_done = true;
                    }
                    Poll::Pending => {}
                }
            }
            while ex.head_done && !ex.body_done {
                let mut ended = false;
                match state.poll_body(&mut cx, ex.id, &mut ended) {
                    Poll::Ready(Some(Ok(_))) => ex.body_done = ended,
                    Poll::Ready(None | Some(Err(_))) => ex.body_done = true,
                    Poll::Pending => break,
                }
            }
        }
        // The server may have raised the frame size; the client never sends above 16 MiB.
        well_framed(&state.take_written(), 16_777_215);
        if failed {
            break;
        }
    }
    if failed {
        // A failed connection answers every stream still waiting with an error.
        for ex in &exchanges {
            if !ex.head_done {
                assert!(
                    matches!(state.poll_head(&mut cx, ex.id), Poll::Ready(Err(_))),
                    "a stream left waiting on a failed connection"
                );
            }
        }
    }
    for ticket in waiting.into_iter().flatten().flatten() {
        state.leave_queue(ticket);
    }
    for ex in &exchanges {
        if ex.sends {
            state.release(ex.id, Side::Send);
        }
        state.release(ex.id, Side::Recv);
    }
    assert!(state.is_idle(), "a stream outlived its handles");
});
