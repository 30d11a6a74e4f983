use super::*;
use http::Request;

/// Counts its wakes.
struct Counter(AtomicUsize);

impl std::task::Wake for Counter {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// Out of stream ids, a connection says so at once: its task is woken to mark it closed, so
/// the pool drops it and dials anew instead of handing it out to be refused.
#[test]
fn a_connection_out_of_stream_ids_is_closed_for_the_pool() {
    let mut state = State::new();
    state.next_id = frame::MAX_WINDOW as u32 + 2;
    let task = Arc::new(Counter(AtomicUsize::new(0)));
    state.task = Some(Waker::from(task.clone()));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(matches!(
        state.open(&mut cx, &mut None, &get_parts(), &Forwarding::NONE, true),
        Poll::Ready(Err(StreamError::Closed))
    ));
    assert!(state.refusing.is_some());
    assert_eq!(task.0.load(Ordering::SeqCst), 1, "the task was woken");
    assert!(
        state.finished(1),
        "no stream open and refusing: the task closes the connection"
    );
}

/// A body-less GET's head.
fn get_parts() -> request::Parts {
    let (parts, ()) = Request::get("http://upstream.example/")
        .body(())
        .expect("a request")
        .into_parts();
    parts
}

/// The server's preface received, then a GET's stream opened on `state`.
fn open_stream(state: &mut State) -> u32 {
    let mut preface = BytesMut::new();
    frame::put_settings(&mut preface, &[]);
    state.receive(&mut preface).expect("a good preface");
    let mut cx = Context::from_waker(Waker::noop());
    let Poll::Ready(Ok(id)) = state.open(&mut cx, &mut None, &get_parts(), &Forwarding::NONE, true)
    else {
        panic!("stream opened");
    };
    id
}

/// Stream 1 opened on `state`, with its response head (200, no length) received.
fn stream_with_a_head(state: &mut State) -> u32 {
    let id = open_stream(state);
    let mut cx = Context::from_waker(Waker::noop());
    let mut block = BytesMut::new();
    hpack::encode(b":status", b"200", false, &mut block);
    let mut read = BytesMut::new();
    frame::put_head(
        &mut read,
        block.len(),
        frame::HEADERS,
        frame::END_HEADERS,
        id,
    );
    read.extend_from_slice(&block);
    state.receive(&mut read).expect("a good head");
    assert!(matches!(state.poll_head(&mut cx, id), Poll::Ready(Ok(_))));
    id
}

fn data_frame(id: u32, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    frame::put_head(&mut out, payload.len(), frame::DATA, 0, id);
    out.extend_from_slice(payload);
    out
}

/// A small DATA payload queued behind unread data is a copy of its own, not a slice that keeps
/// the whole read buffer alive; the first one, which a prompt reader takes at once, is a slice.
#[test]
fn small_data_behind_unread_data_is_copied_out_of_the_read_buffer() {
    let mut state = State::new();
    let id = stream_with_a_head(&mut state);
    let mut read = BytesMut::with_capacity(64 * 1024);
    read.extend_from_slice(&data_frame(id, b"first"));
    read.extend_from_slice(&data_frame(id, b"second"));
    let buffer = read.as_ptr() as usize..read.as_ptr() as usize + read.capacity();
    state.receive(&mut read).expect("good frames");
    let queued = &state.streams[&id].inbound.data;
    assert_eq!(queued.len(), 2);
    assert!(
        buffer.contains(&(queued[0].as_ptr() as usize)),
        "the first is a slice"
    );
    assert!(
        !buffer.contains(&(queued[1].as_ptr() as usize)),
        "the second is a copy"
    );
    assert_eq!(&queued[1][..], b"second");
}

/// The response side let go while the request side is still held: its unread data's window
/// goes back to the connection at once, not when the (perhaps slow) request body ends.
#[test]
fn letting_go_of_a_response_gives_its_unread_window_back_at_once() {
    let mut state = State::new();
    let id = stream_with_a_head(&mut state);
    state.streams.get_mut(&id).expect("the stream").send_held = true;
    let chunk = vec![7u8; frame::DEFAULT_MAX_FRAME as usize];
    let frames = STREAM_WINDOW as usize / chunk.len();
    for _ in 0..frames {
        state
            .receive(&mut data_frame(id, &chunk))
            .expect("within the window");
    }
    let before = state.recv_window.unacked();
    state.release(id, Side::Recv);
    assert_eq!(
        state.recv_window.unacked() - before,
        (frames * chunk.len()) as i64,
        "every unread byte counted as consumed"
    );
    assert!(state.streams[&id].inbound.data.is_empty());
    assert!(
        state.streams.contains_key(&id),
        "the request side still holds it"
    );
}

/// DATA that is all padding still gives its stream window back (no read of the body ever pops
/// it): 3 MiB of it, past the 2 MiB stream window, keeps the stream alive.
#[test]
fn padding_alone_gives_the_stream_window_back() {
    let mut state = State::new();
    let id = stream_with_a_head(&mut state);
    let mut padded = BytesMut::new();
    frame::put_head(&mut padded, 256, frame::DATA, frame::PADDED, id);
    padded.extend_from_slice(&[255; 256]);
    let frames = 3 * 1024 * 1024 / 256;
    for _ in 0..frames {
        let mut read = padded.clone();
        state.receive(&mut read).expect("within the windows");
    }
    let stream = &state.streams[&id];
    assert!(stream.error.is_none(), "{:?}", stream.error);
    assert!(stream.inbound.data.is_empty(), "padding is not data");
    let mut written = state.take_written();
    let mut updates = 0;
    while written.len() >= frame::HEAD_LEN {
        let mut raw = [0; frame::HEAD_LEN];
        raw.copy_from_slice(&written[..frame::HEAD_LEN]);
        let head = frame::Head::parse(&raw);
        updates += usize::from(head.kind == frame::WINDOW_UPDATE && head.stream == id);
        written.advance(frame::HEAD_LEN + head.len as usize);
    }
    assert!(updates >= 2, "{updates} stream WINDOW_UPDATEs");
}

/// The server's first frame must be SETTINGS (RFC 9113 §3.4); anything else ends the
/// connection. RST_STREAM and WINDOW_UPDATE on even (server) stream ids, which it may never
/// open, end it too.
#[test]
fn a_server_preface_other_than_settings_and_frames_on_even_streams_end_the_connection() {
    let mut ping = BytesMut::new();
    frame::put_head(&mut ping, 8, frame::PING, 0, 0);
    ping.extend_from_slice(&[0; 8]);
    let mut state = State::new();
    assert!(matches!(
        state.receive(&mut ping.clone()),
        Err(StreamError::Protocol {
            reason: Reason::PROTOCOL_ERROR,
            ..
        })
    ));
    let mut ack_first = BytesMut::new();
    frame::put_settings_ack(&mut ack_first);
    assert!(State::new().receive(&mut ack_first).is_err());

    for kind in [frame::RST_STREAM, frame::WINDOW_UPDATE] {
        let mut state = State::new();
        let _ = stream_with_a_head(&mut state);
        state.next_id = 9;
        let mut bad = BytesMut::new();
        frame::put_head(&mut bad, 4, kind, 0, 2);
        bad.extend_from_slice(&1u32.to_be_bytes());
        assert!(
            matches!(
                state.receive(&mut bad),
                Err(StreamError::Protocol {
                    reason: Reason::PROTOCOL_ERROR,
                    ..
                })
            ),
            "frame type {kind}"
        );
    }
}

/// A request waiting for a stream slot, with a task that counts its wake-ups.
struct Waiting {
    task: Arc<Counter>,
    waker: Waker,
    place: Option<u64>,
}

impl Waiting {
    fn new() -> Waiting {
        let task = Arc::new(Counter(AtomicUsize::new(0)));
        let waker = Waker::from(task.clone());
        Waiting {
            task,
            waker,
            place: None,
        }
    }

    fn open(&mut self, state: &mut State) -> Poll<Result<u32, StreamError>> {
        let mut cx = Context::from_waker(&self.waker);
        state.open(
            &mut cx,
            &mut self.place,
            &get_parts(),
            &Forwarding::NONE,
            true,
        )
    }

    fn wakes(&self) -> usize {
        self.task.0.load(Ordering::SeqCst)
    }
}

/// At the server's stream limit, requests wait in line: a freed slot wakes the first of them
/// only (not every one, which made each slot cost a wake-up per waiting request), and keeps
/// the slot for it against requests that come later; one that gives up after its wake-up
/// passes the slot on; a request polled again while it waits is queued once.
#[test]
fn waiting_requests_get_freed_stream_slots_one_at_a_time_in_order() {
    let mut state = State::new();
    let first = stream_with_a_head(&mut state);
    state.max_open = 1;
    let mut waiting: Vec<Waiting> = (0..3).map(|_| Waiting::new()).collect();
    for w in &mut waiting {
        assert!(w.open(&mut state).is_pending());
        assert!(w.open(&mut state).is_pending(), "polled again");
    }
    assert_eq!(state.waiting.len(), 3, "each queued once");
    // The open stream ends (cancelled): one slot, for the first in line.
    state.release(first, Side::Recv);
    let wakes: Vec<usize> = waiting.iter().map(Waiting::wakes).collect();
    assert_eq!(wakes, [1, 0, 0]);
    // A request that did not wait does not take the slot kept for the first.
    let mut later = Waiting::new();
    assert!(later.open(&mut state).is_pending());
    // The first gives up before it opens: the second is called in its place.
    let ticket = waiting[0].place.take().expect("queued");
    state.leave_queue(ticket);
    let wakes: Vec<usize> = waiting.iter().map(Waiting::wakes).collect();
    assert_eq!(wakes, [1, 1, 0]);
    let Poll::Ready(Ok(second)) = waiting[1].open(&mut state) else {
        panic!("the called request opens");
    };
    assert_eq!(waiting[1].place, None, "out of the queue");
    assert!(waiting[2].open(&mut state).is_pending(), "no slot left");
    // The second's stream ends: the third is next, then the request that came later.
    state.release(second, Side::Recv);
    assert_eq!(waiting[2].wakes(), 1);
    assert_eq!(later.wakes(), 0);
    assert!(matches!(waiting[2].open(&mut state), Poll::Ready(Ok(_))));
    assert_eq!(state.waiting.len(), 1);
    assert_eq!(state.called, 0);
}

/// A larger limit from the server calls as many waiting requests as it frees slots; a
/// connection that fails tells every waiting request, and each leaves the line.
#[test]
fn a_new_limit_calls_waiting_requests_and_a_failure_tells_them_all() {
    let mut state = State::new();
    let _ = stream_with_a_head(&mut state);
    state.max_open = 1;
    let mut waiting: Vec<Waiting> = (0..4).map(|_| Waiting::new()).collect();
    for w in &mut waiting {
        assert!(w.open(&mut state).is_pending());
    }
    let mut read = BytesMut::new();
    frame::put_settings(&mut read, &[(frame::SETTINGS_MAX_CONCURRENT_STREAMS, 3)]);
    state.receive(&mut read).expect("fine");
    let wakes: Vec<usize> = waiting.iter().map(Waiting::wakes).collect();
    assert_eq!(wakes, [1, 1, 0, 0], "two slots freed, two called");
    state.fail_all(StreamError::Closed);
    let wakes: Vec<usize> = waiting.iter().map(Waiting::wakes).collect();
    assert_eq!(wakes, [1, 1, 1, 1]);
    for w in &mut waiting {
        assert!(matches!(w.open(&mut state), Poll::Ready(Err(_))));
        assert_eq!(w.place, None);
    }
    assert_eq!(state.called, 0);
    assert!(state.waiting.is_empty());
}

/// Empty CONTINUATION frames add no bytes, but a block may take only so many of them; a head
/// split over that many is still read.
#[test]
fn a_header_block_takes_a_bounded_number_of_continuation_frames() {
    for (continuations, allowed) in [
        (frame::MAX_CONTINUATIONS, true),
        (frame::MAX_CONTINUATIONS + 1, false),
    ] {
        let mut state = State::new();
        let id = open_stream(&mut state);
        let mut cx = Context::from_waker(Waker::noop());
        let mut block = BytesMut::new();
        hpack::encode(b":status", b"200", false, &mut block);
        let mut read = BytesMut::new();
        frame::put_head(&mut read, block.len(), frame::HEADERS, 0, id);
        read.extend_from_slice(&block);
        for i in 1..=continuations {
            let flags = if i == continuations {
                frame::END_HEADERS
            } else {
                0
            };
            frame::put_head(&mut read, 0, frame::CONTINUATION, flags, id);
        }
        let result = state.receive(&mut read);
        if allowed {
            result.expect("a head in that many frames");
            assert!(matches!(state.poll_head(&mut cx, id), Poll::Ready(Ok(_))));
        } else {
            assert!(
                matches!(
                    result,
                    Err(StreamError::Protocol {
                        reason: Reason::ENHANCE_YOUR_CALM,
                        ..
                    })
                ),
                "{result:?}"
            );
        }
    }
}
