//! Where a proxy's memory goes with the issue-8 fleet (10,000 KIngresses): the live heap of a
//! [`Catalog`] after the full push (and the router it serves), the decoded push itself (freed
//! once applied), the per-owner and per-backend Prometheus children (created on first traffic,
//! so measured apart), and the growth over repeated one-route deltas.
//!
//! The resources are the real translation of `controller/benches/support/fleet.rs`, dumped by
//! the controller's `xds_sizes` example (`--dump`) and decoded through `sluice_xds::wire` as a
//! proxy does (`benches/support/push.rs`; the proxy crate never depends on the controller).
//! Heap figures come from an instrumented system allocator (bytes allocated and not freed);
//! the `sluice` binary uses mimalloc, whose RSS adds its own overhead on top. Prints one JSON
//! object; `perf/fleet` runs it and folds the numbers into `perf/FLEET.md`.
//!
//! `cargo run --release -p sluice-proxy --example catalog_memory -- [--n 10000] [--changes 50] [--push FILE]`
//! (without `--push` it makes the dump first, with `cargo run ... --example xds_sizes`).

#[path = "../benches/support/push.rs"]
mod push;

use prometheus::Registry;
use sluice_proxy::catalog::Catalog;
use sluice_proxy::metrics::{BackendMetrics, Metrics, RouteMetrics};
use sluice_xds::protocol::DeltaResponse;
use sluice_xds::ResourceType;
use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use std::alloc::System;
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live(region: &Region<'_, System>) -> f64 {
    let c = region.change();
    // `realloc` is already in both totals (`bytes_reallocated` is their net, not extra).
    (c.bytes_allocated as f64) - (c.bytes_deallocated as f64)
}

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn main() {
    let mut n = push::fleet_size();
    let mut changes = 50usize;
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
            "--push" => dump = Some(args.next().expect("--push FILE").into()),
            other => panic!(
                "unknown argument {other:?} (usage: catalog_memory [--n N] [--changes N] [--push FILE])"
            ),
        }
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();

    // What the controller pushes, decoded (before the regions below: not counted in them).
    let push::Pushes { full, deltas } = push::load(&dump.unwrap_or_else(|| push::dump_path(n)));
    let names = |type_: ResourceType| -> Vec<String> {
        full.iter()
            .filter(|r| r.type_ == type_)
            .flat_map(|r| r.resources.iter().map(|named| named.name.clone()))
            .collect()
    };
    let backends = names(ResourceType::Backend);
    let owners = names(ResourceType::RouteConfig);
    n = owners.len();

    // The decoded push: the catalog keeps versions and compiled pieces, not these, so they are
    // transient; a copy measures them.
    let resources_heap = {
        let region = Region::new(GLOBAL);
        let copy: Vec<DeltaResponse> = full
            .iter()
            .map(|r| DeltaResponse {
                resources: r
                    .resources
                    .iter()
                    .map(|named| {
                        sluice_xds::protocol::NamedResource::new(
                            named.name.clone(),
                            (*named.resource).clone(),
                        )
                    })
                    .collect(),
                ..r.clone()
            })
            .collect();
        let bytes = live(&region);
        drop(copy);
        bytes
    };

    // The catalog with the full push applied, and the router it serves (beyond the resources).
    let region = Region::new(GLOBAL);
    let mut catalog = Catalog::new(
        Arc::new(Metrics::new(Registry::new()).expect("fresh registry")),
        10_000,
        sluice_proxy::activator::HeldTotal::new(usize::MAX),
    );
    let started = Instant::now();
    let outcome = catalog.apply(&full);
    let apply_ms = started.elapsed().as_secs_f64() * 1e3;
    let mut router = outcome.router;
    drop(outcome.results);
    drop(outcome.rebuilt);
    drop(outcome.removed);
    let catalog_heap = live(&region);

    // The Prometheus children alone: one RouteMetrics per owner, one BackendMetrics per backend.
    let metrics_heap = {
        let region = Region::new(GLOBAL);
        let metrics = Metrics::new(Registry::new()).expect("fresh registry");
        let routes: Vec<RouteMetrics> = owners
            .iter()
            .map(|o| RouteMetrics::new(&metrics, o))
            .collect();
        let backend: Vec<BackendMetrics> = backends
            .iter()
            .map(|b| BackendMetrics::new(&metrics, b))
            .collect();
        let bytes = live(&region);
        drop((routes, backend, metrics));
        bytes
    };

    // One-route deltas: the proxy keeps only the newest router.
    let before = live(&region);
    let mut delta_ms = Vec::new();
    for k in 0..changes {
        let started = Instant::now();
        let outcome = catalog.apply(&deltas[k % 2]);
        delta_ms.push(started.elapsed().as_secs_f64() * 1e3);
        if let Some(new) = outcome.router {
            router = Some(new);
        }
    }
    let growth = live(&region) - before;
    delta_ms.sort_by(f64::total_cmp);
    let out = serde_json::json!({
        "ingresses": n,
        "backends": backends.len(),
        "owners": owners.len(),
        "heap_mib": {
            "compiled_and_router": mib(catalog_heap),
            "decoded_push": mib(resources_heap),
            "total": mib(catalog_heap + metrics_heap),
            "metric_children": mib(metrics_heap),
            "growth_over_changes": mib(growth),
        },
        "per_ingress_kib": (catalog_heap + metrics_heap) / n as f64 / 1024.0,
        "changes": changes,
        "full_apply_ms": apply_ms,
        "delta_apply_ms_median": delta_ms.get(delta_ms.len() / 2).copied(),
        "delta_apply_ms_max": delta_ms.last().copied(),
    });
    drop(router);
    println!("{out}");
}
