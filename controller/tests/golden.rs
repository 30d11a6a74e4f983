//! Golden tests: `tests/golden/<case>/input.yaml` → `(snapshot, statuses)` as YAML, stored in
//! `tests/golden/<case>/output.snap`. Review changes with `cargo insta review`, or accept them
//! with `INSTA_UPDATE=always` after reading every one.

use serde::Serialize;
use sluice_controller::status::ObjectStatus;
use sluice_controller::{manifest, Controller, TranslateConfig};
use sluice_xds::Snapshot;
use std::path::Path;

#[derive(Serialize)]
struct Output<'a> {
    snapshot: &'a Snapshot,
    statuses: &'a [ObjectStatus],
}

fn golden(case: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(case);
    let set = manifest::load_dir(&dir).expect("case directory is readable");
    let files: Vec<_> = set.files.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        files,
        ["input.yaml"],
        "each case has exactly one manifest file"
    );

    let mut controller = Controller::new(TranslateConfig::default());
    controller.apply_manifests(set.clone());
    let translation = controller.translate();
    let again = controller.translate();
    assert_eq!(translation, again, "translation is deterministic");

    let output = Output {
        snapshot: &translation.snapshot,
        statuses: &translation.statuses,
    };
    insta::with_settings!({
        snapshot_path => dir,
        prepend_module_to_snapshot => false,
        omit_expression => true,
        description => format!("golden case {case}"),
    }, {
        insta::assert_yaml_snapshot!("output", output);
    });
}

macro_rules! golden_cases {
    ($($test:ident => $dir:literal,)*) => {$(
        #[test]
        fn $test() {
            golden($dir);
        }
    )*};
}

golden_cases! {
    basic => "basic",
    splits_and_headers => "splits-and-headers",
    cluster_local_visibility => "cluster-local",
    h2c_port => "h2c-port",
    rewrite_host_with_external_name => "rewrite-host-external-name",
    class_mismatch => "class-mismatch",
    invalid_ingress => "invalid-ingress",
    domain_conflict => "domain-conflict",
    missing_service => "missing-service",
    unsupported_documents => "unsupported-documents",
    route_split_and_tags => "route-split-and-tags",
    route_missing_revision => "route-missing-revision",
    revision_kinds => "revision-kinds",
    tls_certificates_per_visibility => "tls",
    https_redirect_external_only => "https-redirect",
    bad_secrets_fail_only_their_ingress => "bad-secret",
}
