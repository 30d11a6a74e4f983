use super::*;

fn translated(name: &str, generation: i64, network: &str) -> ObjectStatus {
    let network = match network {
        STATUS_TRUE => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_TRUE),
        _ => Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_FALSE)
            .with_reason("InvalidIngress", "ingress ns/x: broken"),
    };
    ObjectStatus::ingress(
        "ns",
        name,
        generation,
        vec![
            network,
            Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_UNKNOWN)
                .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
        ],
    )
}

/// (type, status, lastTransitionTime) of every condition.
fn conditions(board: &StatusBoard, name: &str) -> Vec<(String, String, String)> {
    board
        .get("Ingress", "ns", name)
        .expect("status present")
        .status
        .conditions
        .iter()
        .map(|c| {
            (
                c.type_.clone(),
                c.status.clone(),
                c.last_transition_time.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn c(type_: &str, status: &str, time: &str) -> (String, String, String) {
    (type_.to_string(), status.to_string(), time.to_string())
}

#[test]
fn ready_derivation() {
    let cases = [
        (STATUS_TRUE, STATUS_TRUE, STATUS_TRUE, None),
        (STATUS_TRUE, STATUS_UNKNOWN, STATUS_UNKNOWN, Some("lb")),
        (STATUS_FALSE, STATUS_UNKNOWN, STATUS_FALSE, Some("net")),
        (STATUS_UNKNOWN, STATUS_FALSE, STATUS_FALSE, Some("lb")),
        (STATUS_FALSE, STATUS_FALSE, STATUS_FALSE, Some("net")),
        (STATUS_UNKNOWN, STATUS_TRUE, STATUS_UNKNOWN, Some("net")),
    ];
    for (network, lb, want, reason) in cases {
        let mut status = Status::default();
        status.set_condition(
            Condition::new(CONDITION_NETWORK_CONFIGURED, network).with_reason("net", "n"),
        );
        status.set_condition(
            Condition::new(CONDITION_LOAD_BALANCER_READY, lb).with_reason("lb", "l"),
        );
        status.derive_ready();
        let ready = status.condition(CONDITION_READY).expect("ready set");
        assert_eq!(ready.status, want, "{network}/{lb}");
        assert_eq!(ready.reason.as_deref(), reason, "{network}/{lb}");
        let types: Vec<_> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["LoadBalancerReady", "NetworkConfigured", "Ready"],
            "sorted by type"
        );
    }
}

#[test]
fn ready_only_after_the_version_is_applied_and_transition_times_are_stable() {
    let mut board = StatusBoard::default();
    assert!(board.update("v1", vec![translated("a", 1, STATUS_TRUE)], "t1"));
    assert_eq!(
        conditions(&board, "a"),
        [
            c("LoadBalancerReady", "Unknown", "t1"),
            c("NetworkConfigured", "True", "t1"),
            c("Ready", "Unknown", "t1")
        ]
    );
    let shown = board.get("Ingress", "ns", "a").expect("present");
    assert_eq!(shown.status.public_load_balancer, None);

    assert!(
        !board.applied("unknown-version", "t2"),
        "unknown versions are ignored"
    );
    assert!(board.applied("v1", "t2"));
    assert_eq!(
        conditions(&board, "a"),
        [
            c("LoadBalancerReady", "True", "t2"),
            c("NetworkConfigured", "True", "t1"),
            c("Ready", "True", "t2")
        ]
    );
    let shown = board.get("Ingress", "ns", "a").expect("present");
    let domain = |lb: &Option<LoadBalancerStatus>| {
        lb.as_ref()
            .and_then(|l| l.ingress.first())
            .and_then(|i| i.domain_internal.clone())
    };
    assert_eq!(
        domain(&shown.status.public_load_balancer).as_deref(),
        Some("sluice.sluice-system.svc.cluster.local")
    );
    assert_eq!(
        domain(&shown.status.private_load_balancer).as_deref(),
        Some("sluice-internal.sluice-system.svc.cluster.local")
    );
    let ready = shown.status.condition(CONDITION_READY).expect("ready");
    assert_eq!(
        (ready.reason.as_deref(), ready.message.as_deref()),
        (None, None)
    );
    assert!(
        !board.applied("v1", "t2b"),
        "applying again changes nothing"
    );

    // Another object changes: `a` is unchanged and stays ready with its times.
    assert!(board.update(
        "v2",
        vec![
            translated("a", 1, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE)
        ],
        "t3"
    ));
    assert_eq!(
        conditions(&board, "a"),
        [
            c("LoadBalancerReady", "True", "t2"),
            c("NetworkConfigured", "True", "t1"),
            c("Ready", "True", "t2")
        ]
    );

    // A new generation of `a` waits again until a version containing it is applied.
    board.update(
        "v3",
        vec![
            translated("a", 2, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE),
        ],
        "t4",
    );
    assert_eq!(
        conditions(&board, "a"),
        [
            c("LoadBalancerReady", "Unknown", "t4"),
            c("NetworkConfigured", "True", "t1"),
            c("Ready", "Unknown", "t4")
        ]
    );
    let shown = board.get("Ingress", "ns", "a").expect("present");
    assert_eq!((shown.generation, shown.status.observed_generation), (2, 2));
    assert_eq!(shown.status.public_load_balancer, None);
    assert!(
        board.applied("v2", "t5"),
        "v2 makes b ready but not the new a"
    );
    assert_eq!(conditions(&board, "a")[2], c("Ready", "Unknown", "t4"));
    assert_eq!(conditions(&board, "b")[2], c("Ready", "True", "t5"));
    assert!(board.applied("v3", "t6"));
    assert_eq!(conditions(&board, "a")[2], c("Ready", "True", "t6"));
}

#[test]
fn a_later_version_contains_earlier_pending_translations() {
    let mut board = StatusBoard::default();
    board.update("v1", vec![translated("a", 1, STATUS_TRUE)], "t1");
    board.update(
        "v2",
        vec![
            translated("a", 1, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE),
        ],
        "t2",
    );
    assert!(board.applied("v2", "t3"));
    assert_eq!(conditions(&board, "a")[2], c("Ready", "True", "t3"));
    assert_eq!(conditions(&board, "b")[2], c("Ready", "True", "t3"));
}

#[test]
fn failed_and_conflicting_ingresses_never_become_ready() {
    let mut board = StatusBoard::default();
    let conflict = ObjectStatus::ingress(
        "ns",
        "c",
        1,
        vec![
            Condition::new(CONDITION_NETWORK_CONFIGURED, STATUS_UNKNOWN),
            Condition::new(CONDITION_LOAD_BALANCER_READY, STATUS_FALSE)
                .with_reason(REASON_DOMAIN_CONFLICT, MESSAGE_DOMAIN_CONFLICT),
        ],
    );
    board.update("v1", vec![translated("f", 3, STATUS_FALSE), conflict], "t1");
    assert!(!board.applied("v1", "t2"));
    assert_eq!(conditions(&board, "f")[2], c("Ready", "False", "t1"));
    assert_eq!(conditions(&board, "c")[2], c("Ready", "False", "t1"));
    let ready = board
        .get("Ingress", "ns", "c")
        .and_then(|s| s.status.condition(CONDITION_READY).cloned());
    assert_eq!(
        ready.and_then(|r| r.reason).as_deref(),
        Some(REASON_DOMAIN_CONFLICT)
    );
}

#[test]
fn removed_objects_leave_the_board_and_listing_is_sorted() {
    let mut board = StatusBoard::default();
    let file =
        ObjectStatus::manifest_file("bad.yaml", "InvalidManifest", "invalid YAML".to_string());
    board.update(
        "v1",
        vec![
            translated("b", 1, STATUS_TRUE),
            file.clone(),
            translated("a", 1, STATUS_TRUE),
        ],
        "t1",
    );
    let listed: Vec<_> = board
        .list()
        .iter()
        .map(|s| format!("{}/{}", s.kind, s.name))
        .collect();
    assert_eq!(listed, ["Ingress/a", "Ingress/b", "ManifestFile/bad.yaml"]);
    let shown_file = board
        .get(MANIFEST_FILE_KIND, "", "bad.yaml")
        .expect("file status");
    assert_eq!(
        shown_file.status.conditions[0]
            .last_transition_time
            .as_deref(),
        Some("t1")
    );
    assert_eq!(shown_file.api_version, MANIFEST_FILE_API_VERSION);

    assert!(board.update("v2", vec![translated("a", 1, STATUS_TRUE)], "t2"));
    let listed: Vec<_> = board.list().iter().map(|s| s.name.clone()).collect();
    assert_eq!(listed, ["a"]);
    assert!(
        !board.update("v2", vec![translated("a", 1, STATUS_TRUE)], "t3"),
        "nothing changed"
    );
}

#[test]
fn statuses_serialise_in_knative_shape() {
    let mut board = StatusBoard::default();
    board.update(
        "v1",
        vec![translated("a", 1, STATUS_TRUE)],
        "2024-01-01T00:00:00Z",
    );
    board.applied("v1", "2024-01-01T00:00:01Z");
    let json = serde_json::to_value(board.list()).expect("serialises");
    assert_eq!(
        json,
        serde_json::json!([{
            "apiVersion": "networking.internal.knative.dev/v1alpha1",
            "kind": "Ingress",
            "namespace": "ns",
            "name": "a",
            "generation": 1,
            "status": {
                "observedGeneration": 1,
                "conditions": [
                    {"type": "LoadBalancerReady", "status": "True", "lastTransitionTime": "2024-01-01T00:00:01Z"},
                    {"type": "NetworkConfigured", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"},
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:01Z"},
                ],
                "publicLoadBalancer": {"ingress": [{"domainInternal": "sluice.sluice-system.svc.cluster.local"}]},
                "privateLoadBalancer": {"ingress": [{"domainInternal": "sluice-internal.sluice-system.svc.cluster.local"}]},
            },
        }])
    );
}

fn revision_status(name: &str) -> ObjectStatus {
    let mut status = Status {
        observed_generation: 1,
        ..Status::default()
    };
    status.set_condition(Condition::new(CONDITION_READY, STATUS_TRUE));
    ObjectStatus {
        api_version: "sluice.dev/v1alpha1".to_string(),
        kind: "Revision".to_string(),
        namespace: "ns".to_string(),
        name: name.to_string(),
        generation: 1,
        status,
    }
}

fn scale(board: &StatusBoard, name: &str) -> (Option<i32>, Option<i32>) {
    let status = &board.get("Revision", "ns", name).expect("revision").status;
    (status.desired_scale, status.actual_scale)
}

#[test]
fn set_scale_shows_on_the_revision_and_survives_updates() {
    let mut board = StatusBoard::default();
    board.update("v1", vec![revision_status("r")], "t0");
    assert_eq!(
        scale(&board, "r"),
        (None, None),
        "no scale before the autoscaler reports"
    );

    assert!(board.set_scale("ns", "r", Some(3), 1));
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));
    assert!(!board.set_scale("ns", "r", Some(3), 1), "unchanged");

    // A new translation (same or changed) keeps the last reported scale.
    assert!(!board.update("v1", vec![revision_status("r")], "t1"));
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));
    let mut changed = revision_status("r");
    changed.generation = 2;
    changed.status.observed_generation = 2;
    board.update("v2", vec![changed], "t2");
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));

    assert!(board.set_scale("ns", "r", None, 0));
    assert_eq!(scale(&board, "r"), (None, Some(0)));
}

#[test]
fn set_scale_before_the_revision_appears_is_kept_until_it_is_gone() {
    let mut board = StatusBoard::default();
    assert!(!board.set_scale("ns", "r", Some(1), 0), "nothing shown yet");
    board.update("v1", vec![revision_status("r")], "t0");
    assert_eq!(scale(&board, "r"), (Some(1), Some(0)));

    // Gone from the translation: the scale goes with it, and a re-created revision starts clean.
    board.update("v2", vec![], "t1");
    board.update("v3", vec![revision_status("r")], "t2");
    assert_eq!(scale(&board, "r"), (None, None));
}

#[test]
fn scale_fields_serialise_only_when_set() {
    let mut board = StatusBoard::default();
    board.update("v1", vec![revision_status("r")], "t0");
    let json = serde_json::to_value(board.list()).expect("serialises");
    assert!(json[0]["status"].get("desiredScale").is_none());
    board.set_scale("ns", "r", Some(2), 2);
    let json = serde_json::to_value(board.list()).expect("serialises");
    assert_eq!(json[0]["status"]["desiredScale"], 2);
    assert_eq!(json[0]["status"]["actualScale"], 2);
}
