//! The issue-8 fleet's xDS pushes, as a proxy receives them, for the `catalog` bench and the
//! `catalog_memory` example. The proxy crate never depends on the controller, so the
//! controller's `xds_sizes` example translates the fleet (`controller/benches/support/fleet.rs`)
//! and dumps its pushes (`--dump`); this reads them back through `sluice_xds::wire`, decoding
//! each message as the gRPC client does.
//!
//! The dump is `SLUICE_FLEET_PUSH` if set; otherwise `<target>/fleet-push-<N>.bin`, made by
//! running `cargo run --release -p sluice-controller --example xds_sizes -- --n N --dump ...`.

#![allow(dead_code)]

use prost::Message;
use sluice_xds::protocol::{ControllerMessage, DeltaResponse};
use sluice_xds::wire::proto::sluice::v1 as pb;
use std::path::{Path, PathBuf};

pub struct Pushes {
    /// Every resource of the fleet (responses of at most 1,000 resources).
    pub full: Vec<DeltaResponse>,
    /// One ingress's split moved to revision 1, then back to revision 2 (one RouteConfig each).
    pub deltas: [Vec<DeltaResponse>; 2],
}

/// The fleet size: `SLUICE_BENCH_N`, default 10,000.
pub fn fleet_size() -> usize {
    std::env::var("SLUICE_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000)
}

/// The dump for `n` ingresses, made first unless `SLUICE_FLEET_PUSH` names one.
pub fn dump_path(n: usize) -> PathBuf {
    if let Ok(path) = std::env::var("SLUICE_FLEET_PUSH") {
        return PathBuf::from(path);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace.join("target"));
    let path = target.join(format!("fleet-push-{n}.bin"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    eprintln!(
        "translating the {n}-ingress fleet with the controller's xds_sizes example into {}",
        path.display()
    );
    let status = std::process::Command::new(cargo)
        .current_dir(&workspace)
        .args([
            "run",
            "--release",
            "-q",
            "-p",
            "sluice-controller",
            "--example",
            "xds_sizes",
            "--",
            "--changes",
            "0",
        ])
        .arg("--n")
        .arg(n.to_string())
        .arg("--dump")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run cargo");
    assert!(status.success(), "xds_sizes --dump failed");
    path
}

/// Reads a dump written by `xds_sizes --dump`.
pub fn load(path: &Path) -> Pushes {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut pushes: [Vec<DeltaResponse>; 3] = Default::default();
    let mut rest = bytes.as_slice();
    while !rest.is_empty() {
        let tag = usize::from(rest[0]);
        let len = u32::from_be_bytes(rest[1..5].try_into().expect("4 bytes")) as usize;
        let message =
            pb::ControllerMessage::decode(&rest[5..5 + len]).expect("a ControllerMessage");
        let ControllerMessage::Response(response) =
            ControllerMessage::try_from(message).expect("a valid message");
        assert!(response.invalid.is_empty(), "{:?}", response.invalid);
        pushes[tag].push(response);
        rest = &rest[5 + len..];
    }
    let [full, to_one, to_two] = pushes;
    Pushes {
        full,
        deltas: [to_one, to_two],
    }
}
