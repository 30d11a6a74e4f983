//! The proxy's side of issue 8's fleet: applying 10,000 KIngresses' resources to a
//! [`Catalog`], then a one-route delta.
//!
//! The resources are the real translation of `controller/benches/support/fleet.rs`, as the
//! controller pushes them (responses of at most 1,000 resources, make-before-break order),
//! dumped by the controller's `xds_sizes` example and decoded here through `sluice_xds::wire`
//! (`support/push.rs`; the proxy crate never depends on the controller).
//!
//! - `full_10k`: a fresh catalog applies the whole push (compiles 20k backends and 10k owners,
//!   builds both host indexes and the router).
//! - `one_route_delta`: one RouteConfig response (the owner's split moved) applied to the full
//!   catalog, router included.
//!
//! Measured, never asserted. `SLUICE_BENCH_N` changes the fleet size; `SLUICE_FLEET_PUSH`
//! names an existing dump instead of making one.
//! `cargo bench -p sluice-proxy --bench catalog`

mod support {
    pub mod push;
}
use support::push;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use prometheus::Registry;
use sluice_proxy::catalog::Catalog;
use sluice_proxy::metrics::Metrics;
use std::sync::Arc;
use std::time::Duration;

fn catalog() -> Catalog {
    Catalog::new(
        Arc::new(Metrics::new(Registry::new()).expect("fresh registry")),
        10_000,
        sluice_proxy::activator::HeldTotal::new(usize::MAX),
    )
}

fn apply(c: &mut Criterion) {
    let n = push::fleet_size();
    let push::Pushes { full, deltas } = push::load(&push::dump_path(n));
    // Backends hold tokio primitives; give them a runtime context as the proxy does.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();

    let mut group = c.benchmark_group("catalog");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function(format!("full_{n}"), |b| {
        b.iter_batched(
            catalog,
            |mut catalog| {
                let outcome = catalog.apply(&full);
                assert!(outcome.router.is_some());
                // Dropped outside the timing.
                (catalog, outcome)
            },
            BatchSize::PerIteration,
        )
    });

    let mut applied = catalog();
    applied.apply(&full);
    let mut flip = 0usize;
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(format!("one_route_delta_{n}"), |b| {
        b.iter(|| {
            flip += 1;
            let outcome = applied.apply(&deltas[flip % 2]);
            assert!(outcome.router.is_some());
            outcome
        })
    });
    group.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
