//! Translation cost at fleet scale (issue 8): 10,000 KIngresses, one file each with two
//! revision Services and their EndpointSlices (`support/fleet.rs`).
//!
//! - `full_10k`: the first `translate()` of the whole fleet (the objects already stored).
//! - `one_ingress_file`: one ingress file re-read (its split moved) through
//!   `apply_manifest_files`, then `translate()`: what the manifest source does per change.
//! - `one_ingress_upsert`: the same change as one object `upsert` (a Kubernetes watch).
//! - `one_endpointslice_upsert`: one EndpointSlice's address changed, `upsert` + `translate()`.
//!
//! Measured, never asserted. `SLUICE_BENCH_N` changes the fleet size. At 10,000 the first
//! translation takes tens of seconds per sample today (it grows quadratically, see
//! `perf/FLEET.md`), so `full_10000` alone runs for minutes: filter it (`-- one_`) or use a
//! smaller `SLUICE_BENCH_N` while iterating.
//! `cargo bench -p sluice-controller --bench translate`

#[path = "support/fleet.rs"]
mod fleet;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use sluice_controller::object::{Kind, Object};
use std::hint::black_box;
use std::time::Duration;

fn object(file: &sluice_controller::manifest::ManifestFile, kind: Kind, name: &str) -> Object {
    file.objects
        .iter()
        .find(|o| {
            let key = o.key();
            key.kind == kind && key.name == name
        })
        .cloned()
        .unwrap_or_else(|| panic!("no {kind:?} {name} in {}", file.name))
}

fn translate(c: &mut Criterion) {
    let n = fleet::fleet_size();
    let set = fleet::manifest_set(n);
    let mut group = c.benchmark_group("translate");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(8));
    group.warm_up_time(Duration::from_secs(1));

    group.bench_function(format!("full_{n}"), |b| {
        b.iter_batched(
            || fleet::loaded_controller(set.clone()),
            |mut controller| {
                let delta = controller.translate();
                assert!(!delta.resources.is_empty());
                // Dropped outside the timing.
                (controller, delta)
            },
            BatchSize::PerIteration,
        )
    });

    let mut controller = fleet::loaded_controller(set.clone());
    black_box(controller.translate());
    let target = n / 2;
    let moved = [
        fleet::ingress_file(target, 100, "127.0.0.1"),
        fleet::ingress_file(target, 0, "127.0.0.1"),
    ];
    let mut flip = 0usize;
    group.sample_size(50);
    group.measurement_time(Duration::from_secs(4));
    group.bench_function(format!("one_ingress_file_{n}"), |b| {
        b.iter(|| {
            flip += 1;
            controller.apply_manifest_files(vec![moved[flip % 2].clone()], &[]);
            let delta = controller.translate();
            assert_eq!(delta.resources.len(), 1, "one RouteConfig");
            delta
        })
    });

    let ingress = format!("svc{target}");
    let ingresses = [
        object(&moved[0], Kind::Ingress, &ingress),
        object(&moved[1], Kind::Ingress, &ingress),
    ];
    group.bench_function(format!("one_ingress_upsert_{n}"), |b| {
        b.iter(|| {
            flip += 1;
            controller.upsert(ingresses[flip % 2].clone());
            let delta = controller.translate();
            assert_eq!(delta.resources.len(), 1, "one RouteConfig");
            delta
        })
    });

    let slice = format!("svc{target}-00001-abcde");
    let slices = [
        object(
            &fleet::ingress_file(target, 50, "127.0.0.2"),
            Kind::EndpointSlice,
            &slice,
        ),
        object(
            &fleet::ingress_file(target, 50, "127.0.0.1"),
            Kind::EndpointSlice,
            &slice,
        ),
    ];
    // The stored slice has revision 1's first address: start with the other one.
    let mut slice_flip = 1usize;
    group.bench_function(format!("one_endpointslice_upsert_{n}"), |b| {
        b.iter(|| {
            slice_flip += 1;
            controller.upsert(slices[slice_flip % 2].clone());
            let delta = controller.translate();
            assert_eq!(delta.resources.len(), 1, "one Endpoints");
            delta
        })
    });
    group.finish();
}

criterion_group!(benches, translate);
criterion_main!(benches);
