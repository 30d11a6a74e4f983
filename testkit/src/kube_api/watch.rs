//! Watch responses: one JSON event per line over a chunked 200, fed from the store's event log.
//!
//! A watch keeps a position in the global log (the newest version it has looked at, whatever
//! the type), so its bookmarks report exactly how far it has read and never skip an event.
//! It ends on `timeoutSeconds`, on [`super::FakeApiServer::disconnect_watches`], when the client
//! goes away, and after sending a 410 Expired error when it has fallen behind the log.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::StreamBody;
use hyper::body::Frame;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::{Instant, Interval, MissedTickBehavior};

use super::error::ApiError;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{Event, EventKind, Store};
use super::{lock, Shared};
use crate::body::{self, BoxBody};

/// How often an idle watch that asked for bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// What a watch request asked for.
#[derive(Debug)]
pub(crate) struct WatchSpec {
    pub(crate) ty: usize,
    pub(crate) namespace: Option<String>,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    /// `None` or `Some(0)`: start with the current state as ADDED events.
    pub(crate) resource_version: Option<u64>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) bookmarks: bool,
    /// `sendInitialEvents=true`: current state as ADDED, then a bookmark marking its end.
    pub(crate) initial_events: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    object: &'a Value,
}

fn line(kind: &str, object: &Value) -> Bytes {
    let mut bytes =
        serde_json::to_vec(&Line { kind, object }).expect("a JSON value always serializes");
    bytes.push(b'\n');
    Bytes::from(bytes)
}

struct Cursor {
    shared: Arc<Shared>,
    spec: WatchSpec,
    kind: &'static str,
    api_version: String,
    position: u64,
    pending: VecDeque<Bytes>,
    /// Set once the last line is queued.
    finished: bool,
    changed: watch::Receiver<u64>,
    disconnect: watch::Receiver<u64>,
    deadline: Option<Instant>,
    ticker: Interval,
    /// Whether anything was sent since the last bookmark tick.
    active: bool,
}

/// Starts a watch: everything up to "now" is decided under the store lock, so no event can fall
/// between the initial state and the live events.
pub(crate) fn start(shared: Arc<Shared>, spec: WatchSpec) -> BoxBody {
    let store = lock(&shared.store);
    let t = store.ty(spec.ty);
    let kind = t.kind;
    let api_version = t.group_version();
    let mut changed = store.subscribe();
    changed.borrow_and_update();
    let disconnect = shared.disconnect.subscribe();
    let mut ticker =
        tokio::time::interval_at(Instant::now() + BOOKMARK_INTERVAL, BOOKMARK_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut cursor = Cursor {
        shared: shared.clone(),
        kind,
        api_version,
        position: store.resource_version(),
        pending: VecDeque::new(),
        finished: false,
        changed,
        disconnect,
        deadline: spec.timeout.map(|t| Instant::now() + t),
        ticker,
        active: false,
        spec,
    };
    match cursor.spec.resource_version {
        Some(rv) if rv != 0 && !cursor.spec.initial_events => {
            if rv < store.floor() {
                cursor.expire(rv, store.floor());
            } else {
                cursor.position = rv;
            }
        }
        _ => {
            for object in store.list(cursor.spec.ty, cursor.spec.namespace.as_deref()) {
                if cursor.selects(object) {
                    cursor.pending.push_back(line("ADDED", object));
                }
            }
            if cursor.spec.initial_events {
                let bookmark = cursor.bookmark(true);
                cursor.pending.push_back(bookmark);
            }
        }
    }
    drop(store);
    let stream = futures_util::stream::unfold(cursor, |mut cursor| async move {
        let next = cursor.next_line().await?;
        Some((next, cursor))
    });
    body::boxed(StreamBody::new(
        stream.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))),
    ))
}

impl Cursor {
    fn selects(&self, object: &Value) -> bool {
        self.spec.labels.selects(object) && self.spec.fields.selects(object)
    }

    fn expire(&mut self, requested: u64, oldest: u64) {
        let status = ApiError::expired(requested, oldest).to_status();
        self.pending.push_back(line("ERROR", &status));
        self.finished = true;
    }

    fn bookmark(&self, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": self.position.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.kind, "apiVersion": self.api_version, "metadata": metadata});
        line("BOOKMARK", &object)
    }

    /// The line this watch sends for one logged event, if any.
    fn translate(&self, event: &Event) -> Option<Bytes> {
        if event.ty != self.spec.ty {
            return None;
        }
        if let Some(namespace) = &self.spec.namespace {
            let in_namespace = event
                .object
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                == Some(namespace.as_str());
            if !in_namespace {
                return None;
            }
        }
        let now = self.selects(&event.object);
        match event.kind {
            EventKind::Added => now.then(|| line("ADDED", &event.object)),
            EventKind::Deleted => now.then(|| line("DELETED", &event.object)),
            EventKind::Modified => {
                let before = event.previous.as_deref().is_some_and(|p| self.selects(p));
                match (before, now) {
                    (true, true) => Some(line("MODIFIED", &event.object)),
                    (false, true) => Some(line("ADDED", &event.object)),
                    // Left the selection: the real server sends the previous state, stamped with
                    // this event's version.
                    (true, false) => {
                        let mut gone = event.previous.as_deref().cloned().unwrap_or(Value::Null);
                        if let Some(meta) = gone.get_mut("metadata").and_then(Value::as_object_mut)
                        {
                            meta.insert("resourceVersion".to_owned(), json!(event.rv.to_string()));
                        }
                        Some(line("DELETED", &gone))
                    }
                    (false, false) => None,
                }
            }
        }
    }

    /// Queues the lines for every event after the position.
    fn catch_up(&mut self, store: &Store) {
        if store.dropped_up_to() > self.position {
            self.expire(self.position, store.floor());
            return;
        }
        let mut lines = Vec::new();
        let mut position = self.position;
        for event in store.events_after(self.position) {
            position = event.rv;
            lines.extend(self.translate(event));
        }
        self.position = position;
        if !lines.is_empty() {
            self.active = true;
        }
        self.pending.extend(lines);
    }

    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(line) = self.pending.pop_front() {
                return Some(line);
            }
            if self.finished {
                return None;
            }
            self.changed.borrow_and_update();
            {
                let shared = self.shared.clone();
                let store = lock(&shared.store);
                self.catch_up(&store);
            }
            if !self.pending.is_empty() {
                continue;
            }
            let deadline = self.deadline;
            let expired = async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = self.changed.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = self.disconnect.changed() => return None,
                () = expired => return None,
                _ = self.ticker.tick(), if self.spec.bookmarks => {
                    if !self.active {
                        let bookmark = self.bookmark(false);
                        self.pending.push_back(bookmark);
                    }
                    self.active = false;
                }
            }
        }
    }
}
