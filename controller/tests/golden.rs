//! Golden tests: `tests/golden/<case>/input.yaml` → `(resources, statuses)` as YAML, stored in
//! `tests/golden/<case>/output.snap`. Resources are grouped by type (in push order) and named;
//! statuses are every status the controller lists. Review changes with `cargo insta review`,
//! or accept them with `INSTA_UPDATE=always` after reading every one.

use serde::Serialize;
use sluice_controller::status::ObjectStatus;
use sluice_controller::translate::{Delta, StatusChange};
use sluice_controller::{manifest, Controller, TranslateConfig};
use sluice_xds::cache::Change;
use sluice_xds::{
    Backend, Certificate, Endpoints, Resource, ResourceType, RevisionPolicy, RouteConfig,
};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, PartialEq, Serialize)]
struct Output {
    /// Type → name → the resource.
    resources: BTreeMap<ResourceType, BTreeMap<String, Content>>,
    statuses: Vec<ObjectStatus>,
}

/// A resource without its type tag (the map key says it).
#[derive(Debug, PartialEq, Serialize)]
#[serde(untagged)]
enum Content {
    RevisionPolicy(RevisionPolicy),
    Backend(Backend),
    Endpoints(Endpoints),
    Certificate(Certificate),
    RouteConfig(RouteConfig),
}

fn content(resource: &Resource) -> Content {
    match resource.clone() {
        Resource::RevisionPolicy(r) => Content::RevisionPolicy(r),
        Resource::Backend(r) => Content::Backend(r),
        Resource::Endpoints(r) => Content::Endpoints(r),
        Resource::Certificate(r) => Content::Certificate(r),
        Resource::RouteConfig(r) => Content::RouteConfig(r),
    }
}

fn output_of(controller: &Controller) -> Output {
    let mut resources: BTreeMap<ResourceType, BTreeMap<String, Content>> = BTreeMap::new();
    for (type_, named) in controller.translator().resources() {
        resources
            .entry(type_)
            .or_default()
            .insert(named.name.clone(), content(&named.resource));
    }
    Output {
        resources,
        statuses: controller.statuses(),
    }
}

/// What a first delta says, as an [`Output`].
fn output_of_delta(delta: Delta) -> Output {
    let mut resources: BTreeMap<ResourceType, BTreeMap<String, Content>> = BTreeMap::new();
    for change in delta.resources {
        match change {
            Change::Put(named) => {
                let old = resources
                    .entry(named.resource.type_())
                    .or_default()
                    .insert(named.name.clone(), content(&named.resource));
                assert_eq!(old, None, "{} is put once", named.name);
            }
            Change::Remove(type_, name) => panic!("a first delta removes {type_} {name}"),
        }
    }
    let mut statuses: Vec<ObjectStatus> = delta
        .statuses
        .into_iter()
        .map(|change| match change {
            StatusChange::Set(status) => status,
            StatusChange::Remove { kind, name, .. } => {
                panic!("a first delta removes the status of {kind} {name}")
            }
        })
        .collect();
    statuses
        .sort_by(|a, b| (&a.kind, &a.namespace, &a.name).cmp(&(&b.kind, &b.namespace, &b.name)));
    Output {
        resources,
        statuses,
    }
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
    let delta = controller.translate();
    let output = output_of(&controller);
    assert_eq!(
        output_of_delta(delta),
        output,
        "the first delta is everything"
    );
    assert!(
        controller.translate().is_empty(),
        "nothing changed, nothing to translate"
    );

    let mut again = Controller::new(TranslateConfig::default());
    again.apply_manifests(set);
    again.translate();
    assert_eq!(output_of(&again), output, "translation is deterministic");

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
