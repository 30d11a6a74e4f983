use super::*;
use crate::manifest::parse_file;
use crate::object::Kind;
use crate::status::{CONDITION_READY, MANIFEST_FILE_KIND};
use crate::translate::StatusChange;
use sluice_xds::{Resource, VirtualHost};

fn set(files: &[(&str, &str)]) -> ManifestSet {
    ManifestSet {
        files: files
            .iter()
            .map(|(name, text)| parse_file(name.to_string(), text))
            .collect(),
    }
}

fn svc(name: &str, port: u16) -> String {
    format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}}}\nspec: {{ports: [{{port: {port}}}]}}\n")
}

fn stored_port(controller: &Controller, name: &str) -> Option<i32> {
    match &*controller
        .store()
        .get(&ObjectKey::new(Kind::Service, "default", name))?
        .object
    {
        Object::Service(s) => s.spec.ports.first().map(|p| p.port),
        _ => None,
    }
}

/// (file, reason, message) of the ManifestFile statuses, after translating.
fn file_statuses(controller: &mut Controller) -> Vec<(String, String, String)> {
    controller.translate();
    controller
        .statuses()
        .into_iter()
        .filter(|s| s.kind == MANIFEST_FILE_KIND)
        .map(|s| {
            let ready = s
                .status
                .condition(CONDITION_READY)
                .cloned()
                .expect("ready condition");
            assert_eq!(ready.status, "False");
            (
                s.name,
                ready.reason.unwrap_or_default(),
                ready.message.unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn apply_reports_changes_only() {
    let mut controller = Controller::new(TranslateConfig::default());
    let files = [("a.yaml", svc("s", 80))];
    let files: Vec<_> = files.iter().map(|(n, t)| (*n, t.as_str())).collect();
    assert!(controller.apply_manifests(set(&files)));
    assert!(!controller.apply_manifests(set(&files)), "same content");
    assert!(controller.apply_manifests(set(&[])), "file removed");
    assert!(controller.store().is_empty());
    assert!(!controller.apply_manifests(set(&[])));
}

#[test]
fn unparseable_file_keeps_its_last_good_objects() {
    let mut controller = Controller::new(TranslateConfig::default());
    let good = format!("{}{}", svc("s", 80), svc("t", 80));
    controller.apply_manifests(set(&[("a.yaml", &good), ("b.yaml", &svc("u", 80))]));
    assert!(controller.apply_manifests(set(&[
        ("a.yaml", "kind: [unclosed\n"),
        ("b.yaml", &svc("u", 81))
    ])));
    assert_eq!(stored_port(&controller, "s"), Some(80), "kept");
    assert_eq!(stored_port(&controller, "t"), Some(80), "kept");
    assert_eq!(
        stored_port(&controller, "u"),
        Some(81),
        "other files still load"
    );
    let statuses = file_statuses(&mut controller);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].0, "a.yaml");
    assert_eq!(statuses[0].1, REASON_INVALID_MANIFEST);
    assert!(
        statuses[0]
            .2
            .ends_with("; keeping the 2 object(s) loaded from it before"),
        "{}",
        statuses[0].2
    );

    // Fixed: the file's new content replaces the kept objects and the status goes away.
    assert!(
        controller.apply_manifests(set(&[("a.yaml", &svc("s", 82)), ("b.yaml", &svc("u", 81))]))
    );
    assert_eq!(stored_port(&controller, "s"), Some(82));
    assert_eq!(stored_port(&controller, "t"), None);
    assert!(file_statuses(&mut controller).is_empty());
}

#[test]
fn undecodable_object_keeps_its_previous_version() {
    let mut controller = Controller::new(TranslateConfig::default());
    controller.apply_manifests(set(&[(
        "a.yaml",
        &format!("{}{}", svc("s", 80), svc("t", 80)),
    )]));
    let broken = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\nspec: {{ports: 80}}\n{}",
        svc("t", 81)
    );
    controller.apply_manifests(set(&[("a.yaml", &broken)]));
    assert_eq!(stored_port(&controller, "s"), Some(80));
    assert_eq!(stored_port(&controller, "t"), Some(81));
    let statuses = file_statuses(&mut controller);
    assert_eq!(statuses[0].1, REASON_INVALID_OBJECT);
    assert!(
        statuses[0]
            .2
            .ends_with("; keeping the version loaded before"),
        "{}",
        statuses[0].2
    );
}

#[test]
fn first_file_wins_for_duplicate_objects() {
    let mut controller = Controller::new(TranslateConfig::default());
    let unsupported = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
    controller.apply_manifests(set(&[
        ("a.yaml", &svc("s", 80)),
        ("b.yaml", &format!("{}---\n{unsupported}", svc("s", 90))),
    ]));
    assert_eq!(stored_port(&controller, "s"), Some(80));
    assert_eq!(
        file_statuses(&mut controller),
        [(
            "b.yaml".to_string(),
            REASON_UNSUPPORTED_OBJECT.to_string(),
            "document 2: unsupported object kind \"Deployment\" apiVersion \"apps/v1\"; Service default/s is already defined in a.yaml; ignored".to_string(),
        )]
    );
}

#[test]
fn statuses_are_sorted_by_kind_namespace_and_name() {
    let mut controller = Controller::new(TranslateConfig::default());
    let ingress = |name: &str| {
        format!(
            "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata: {{name: {name}, annotations: {{networking.knative.dev/ingress.class: sluice.ingress.networking.knative.dev}}}}\nspec: {{}}\n"
        )
    };
    controller.apply_manifests(set(&[
        ("z.yaml", &format!("{}{}", ingress("b"), ingress("a"))),
        ("a.yaml", "kind: [\n"),
    ]));
    controller.translate();
    let listed: Vec<_> = controller
        .statuses()
        .iter()
        .map(|s| format!("{}:{}/{}", s.kind, s.namespace, s.name))
        .collect();
    assert_eq!(
        listed,
        [
            "Ingress:default/a",
            "Ingress:default/b",
            "ManifestFile:/a.yaml"
        ]
    );
}

#[test]
fn per_object_updates_feed_the_same_translation() {
    let mut controller = Controller::new(TranslateConfig::default());
    let ingress = "apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata: {name: i, annotations: {networking.knative.dev/ingress.class: sluice.ingress.networking.knative.dev}}\nspec: {rules: [{hosts: [a.example.com], http: {paths: [{splits: [{serviceNamespace: default, serviceName: s, servicePort: 80}]}]}}]}\n";
    for object in parse_file("w.yaml".to_string(), &format!("{ingress}{}", svc("s", 80))).objects {
        assert!(controller.upsert(object));
    }
    controller.translate();
    let external = |controller: &Controller| -> Vec<VirtualHost> {
        controller
            .translator()
            .resources()
            .filter_map(|(_, named)| match &*named.resource {
                Resource::RouteConfig(config) => Some(config.external.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    };
    assert_eq!(external(&controller).len(), 1);
    assert!(controller.delete(&ObjectKey::new(Kind::Ingress, "default", "i")));
    let delta = controller.translate();
    assert!(!delta.is_empty());
    assert!(external(&controller).is_empty());
    assert!(controller.statuses().is_empty());
}

/// The ManifestFile status changes of a delta: (file, set?).
fn file_changes(delta: &crate::translate::Delta) -> Vec<(String, bool)> {
    delta
        .statuses
        .iter()
        .filter_map(|c| match c {
            StatusChange::Set(s) if s.kind == MANIFEST_FILE_KIND => Some((s.name.clone(), true)),
            StatusChange::Remove { kind, name, .. } if kind == MANIFEST_FILE_KIND => {
                Some((name.clone(), false))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn files_apply_one_by_one_and_their_statuses_arrive_in_the_delta() {
    let file = |name: &str, text: &str| parse_file(name.to_string(), text);
    let mut controller = Controller::new(TranslateConfig::default());
    assert!(controller.apply_manifest_files(
        vec![
            file("a.yaml", &svc("s", 80)),
            file("b.yaml", &format!("{}{}", svc("s", 90), svc("t", 80))),
            file("c.yaml", "kind: [\n"),
        ],
        &[],
    ));
    let delta = controller.translate();
    assert_eq!(
        file_changes(&delta),
        [("b.yaml".to_string(), true), ("c.yaml".to_string(), true)]
    );
    assert!(controller.translate().is_empty(), "reported once");
    assert_eq!(
        stored_port(&controller, "s"),
        Some(80),
        "the first file wins"
    );

    // Only c changes: a and b are not touched.
    assert!(controller.apply_manifest_files(vec![file("c.yaml", &svc("u", 80))], &[]));
    assert_eq!(
        file_changes(&controller.translate()),
        [("c.yaml".to_string(), false)]
    );
    assert_eq!(stored_port(&controller, "u"), Some(80));
    assert!(
        !controller.apply_manifest_files(vec![file("c.yaml", &svc("u", 80))], &[]),
        "the same content again"
    );

    // a goes: b's definition takes over, and b's duplicate problem is gone.
    assert!(controller.apply_manifest_files(Vec::new(), &["a.yaml".to_string()]));
    assert_eq!(stored_port(&controller, "s"), Some(90));
    assert_eq!(
        file_changes(&controller.translate()),
        [("b.yaml".to_string(), false)]
    );
    assert!(controller.statuses().is_empty());
    let files: Vec<&String> = controller.manifest_files().collect();
    assert_eq!(files, ["b.yaml", "c.yaml"]);
    assert!(
        !controller.apply_manifest_files(Vec::new(), &["a.yaml".to_string()]),
        "already gone"
    );
}
