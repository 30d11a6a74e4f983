//! Encoded sizes on the gRPC wire of the fleet's full resource set and of one-object deltas
//! (issue 8). Builds the 10,000-KIngress fleet of `benches/support/fleet.rs` through
//! [`Controller`], publishes it in a [`ResourceCache`], and lets a [`ServerSession`] (a proxy
//! that subscribed to every type by wildcard) produce exactly the responses the controller
//! would send: the full push, then after the ACKs the push of one change. Each response is
//! encoded as the `sluice.v1.ControllerMessage` the gRPC stream carries (`sluice_xds::wire`),
//! plus gRPC's 5-byte message prefix (no compression is configured). Also counts the live heap
//! at each stage (store, translation, xDS cache, one proxy session) with an instrumented system
//! allocator. Prints one JSON object.
//!
//! `cargo run --release -p sluice-controller --example xds_sizes -- [--n 10000] [--changes 20] [--dump FILE]`
//!
//! `--dump FILE` also writes the full push and two one-route pushes (the split moved there and
//! back) for `sluice-proxy`'s `catalog` bench and `catalog_memory` example, which read them
//! back through `sluice_xds::wire` as a proxy does (the proxy crate never depends on the
//! controller).
//! (`perf/fleet` runs it and folds the numbers into `perf/FLEET.md`.)

#[path = "../benches/support/fleet.rs"]
mod fleet;

use prost::Message;
use sluice_controller::Controller;
use sluice_xds::cache::ResourceCache;
use sluice_xds::protocol::{ControllerMessage, DeltaRequest, DeltaResponse, Node};
use sluice_xds::session::ServerSession;
use sluice_xds::wire::{encode_resource, proto::sluice::v1 as pb};
use sluice_xds::ResourceType;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::collections::BTreeMap;
use std::time::Instant;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes allocated and not freed since `region` started.
fn live(region: &Region<'_, System>) -> f64 {
    let c = region.change();
    // `realloc` is already in both totals (`bytes_reallocated` is their net, not extra).
    (c.bytes_allocated as f64) - (c.bytes_deallocated as f64)
}

/// gRPC's length-prefixed message framing: 1 flag byte + 4 length bytes.
const GRPC_PREFIX: usize = 5;

fn ack_all(session: &mut ServerSession, responses: &[DeltaResponse]) {
    for response in responses {
        session.on_request(DeltaRequest {
            type_: Some(response.type_),
            response_nonce: Some(response.nonce.clone()),
            ..DeltaRequest::default()
        });
    }
}

/// Sizes of one push: messages, resources, removals, bytes on the wire, by type.
fn measure(responses: &[DeltaResponse]) -> serde_json::Value {
    let mut by_type: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let (mut bytes, mut resources, mut removed, mut payload, mut largest) = (0, 0, 0, 0, 0);
    for response in responses {
        let message = pb::ControllerMessage::from(ControllerMessage::Response(response.clone()));
        let len = message.encoded_len() + GRPC_PREFIX;
        bytes += len;
        largest = largest.max(len);
        resources += response.resources.len();
        removed += response.removed.len();
        payload += response
            .resources
            .iter()
            .map(|r| encode_resource(&r.resource).value.len())
            .sum::<usize>();
        let entry = by_type.entry(response.type_.as_str()).or_default();
        entry.0 += len;
        entry.1 += response.resources.len();
        entry.2 += response.removed.len();
    }
    serde_json::json!({
        "messages": responses.len(),
        "resources": resources,
        "removed": removed,
        "bytes": bytes,
        "largest_message_bytes": largest,
        "resource_payload_bytes": payload,
        "by_type": by_type.iter().map(|(t, (b, n, r))| {
            (t.to_string(), serde_json::json!({"bytes": b, "resources": n, "removed": r}))
        }).collect::<serde_json::Map<_, _>>(),
    })
}

/// Writes pushes for `sluice-proxy`'s bench and `catalog_memory` example (which must not depend
/// on the controller): per response, a tag byte (which push), a 4-byte big-endian length and the
/// encoded `sluice.v1.ControllerMessage`.
fn write_dump(path: &std::path::Path, pushes: &[(u8, &Vec<DeltaResponse>)]) {
    let mut out = Vec::new();
    for (tag, responses) in pushes {
        for response in responses.iter() {
            let bytes = pb::ControllerMessage::from(ControllerMessage::Response(response.clone()))
                .encode_to_vec();
            out.push(*tag);
            out.extend_from_slice(
                &u32::try_from(bytes.len())
                    .expect("message below 4 GiB")
                    .to_be_bytes(),
            );
            out.extend_from_slice(&bytes);
        }
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, out).expect("write the dump");
    std::fs::rename(&tmp, path).expect("rename the dump");
}

fn push_after(
    controller: &mut Controller,
    cache: &mut ResourceCache,
    session: &mut ServerSession,
    edit: impl FnOnce(&mut Controller),
) -> Vec<DeltaResponse> {
    edit(controller);
    let delta = controller.translate();
    cache.apply(delta.resources);
    let (responses, _) = session.next_push(cache);
    ack_all(session, &responses);
    responses
}

fn main() {
    let mut n = fleet::fleet_size();
    let mut changes = 20usize;
    let mut dump: Option<std::path::PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--n" => n = args.next().and_then(|v| v.parse().ok()).expect("--n N"),
            "--changes" => {
                changes = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--changes N")
            }
            "--dump" => dump = Some(args.next().expect("--dump FILE").into()),
            other => panic!(
                "unknown argument {other:?} (usage: xds_sizes [--n N] [--changes N] [--dump FILE])"
            ),
        }
    }
    let heap = Region::new(GLOBAL);
    let started = Instant::now();
    let mut controller = fleet::loaded_controller(fleet::manifest_set(n));
    let loaded = started.elapsed();
    let heap_loaded = live(&heap);
    let started = Instant::now();
    let delta = controller.translate();
    let translated = started.elapsed();
    let statuses = delta.statuses.len();
    drop(delta.statuses);
    let heap_translated = live(&heap);
    let mut cache = ResourceCache::new();
    cache.apply(delta.resources);
    let heap_cached = live(&heap);

    let mut session = ServerSession::new("sizes");
    for (i, type_) in ResourceType::ALL.into_iter().enumerate() {
        session.on_request(DeltaRequest {
            type_: Some(type_),
            node: (i == 0).then(|| Node {
                id: "sizes".to_string(),
                ..Node::default()
            }),
            ..DeltaRequest::default()
        });
    }
    let (full, _) = session.next_push(&cache);
    ack_all(&mut session, &full);
    let heap_session = live(&heap);

    let target = n / 2;
    let route = push_after(&mut controller, &mut cache, &mut session, |c| {
        c.apply_manifest_files(vec![fleet::ingress_file(target, 100, "127.0.0.1")], &[]);
    });
    // The route moved back: the second of the two deltas the proxy's bench alternates.
    let route_back = push_after(&mut controller, &mut cache, &mut session, |c| {
        c.apply_manifest_files(vec![fleet::ingress_file(target, 0, "127.0.0.1")], &[]);
    });
    if let Some(path) = &dump {
        write_dump(path, &[(0, &full), (1, &route), (2, &route_back)]);
    }
    let endpoints = push_after(&mut controller, &mut cache, &mut session, |c| {
        c.apply_manifest_files(vec![fleet::ingress_file(target, 0, "127.0.0.2")], &[]);
    });
    // More one-route changes: does the controller's heap stay flat?
    let heap_before_changes = live(&heap);
    for k in 0..changes {
        push_after(&mut controller, &mut cache, &mut session, |c| {
            c.apply_manifest_files(
                vec![fleet::ingress_file(
                    target,
                    if k % 2 == 0 { 100 } else { 0 },
                    "127.0.0.2",
                )],
                &[],
            );
        });
    }
    let heap_after_changes = live(&heap);
    let mib = |b: f64| b / (1024.0 * 1024.0);
    let out = serde_json::json!({
        "ingresses": n,
        "statuses": statuses,
        "heap_mib": {
            "store_and_files": mib(heap_loaded),
            "translator": mib(heap_translated - heap_loaded),
            "cache": mib(heap_cached - heap_translated),
            "session": mib(heap_session - heap_cached),
            "total": mib(heap_session),
            "growth_over_changes": mib(heap_after_changes - heap_before_changes),
        },
        "changes": changes,
        "load_ms": loaded.as_secs_f64() * 1e3,
        "translate_ms": translated.as_secs_f64() * 1e3,
        "full": measure(&full),
        "one_route": measure(&route),
        "one_endpointslice": measure(&endpoints),
    });
    println!("{out}");
}
