use super::*;

/// Translation's status changes for a full list of statuses.
fn set(statuses: Vec<ObjectStatus>) -> Vec<StatusChange> {
    statuses.into_iter().map(StatusChange::Set).collect()
}

fn remove(kind: &str, namespace: &str, name: &str) -> StatusChange {
    StatusChange::Remove {
        kind: kind.to_string(),
        namespace: namespace.to_string(),
        name: name.to_string(),
    }
}

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
    assert!(board.update(1, set(vec![translated("a", 1, STATUS_TRUE)]), "t1"));
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
        !board.applied(0, "t2"),
        "an earlier sequence makes nothing ready"
    );
    assert!(board.applied(1, "t2"));
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
    assert!(!board.applied(1, "t2b"), "applying again changes nothing");

    // Another object changes: `a` is unchanged and stays ready with its times.
    assert!(board.update(
        2,
        set(vec![
            translated("a", 1, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE)
        ]),
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
        3,
        set(vec![
            translated("a", 2, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE),
        ]),
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
        board.applied(2, "t5"),
        "sequence 2 makes b ready but not the new a"
    );
    assert_eq!(conditions(&board, "a")[2], c("Ready", "Unknown", "t4"));
    assert_eq!(conditions(&board, "b")[2], c("Ready", "True", "t5"));
    assert!(board.applied(3, "t6"));
    assert_eq!(conditions(&board, "a")[2], c("Ready", "True", "t6"));
}

#[test]
fn a_later_version_contains_earlier_pending_translations() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![translated("a", 1, STATUS_TRUE)]), "t1");
    board.update(
        2,
        set(vec![
            translated("a", 1, STATUS_TRUE),
            translated("b", 1, STATUS_TRUE),
        ]),
        "t2",
    );
    assert!(board.applied(2, "t3"));
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
    board.update(
        1,
        set(vec![translated("f", 3, STATUS_FALSE), conflict]),
        "t1",
    );
    assert!(!board.applied(1, "t2"));
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
        1,
        set(vec![
            translated("b", 1, STATUS_TRUE),
            file.clone(),
            translated("a", 1, STATUS_TRUE),
        ]),
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

    // `b` and the file are gone: translation reports them removed.
    assert!(board.update(
        2,
        vec![
            StatusChange::Set(translated("a", 1, STATUS_TRUE)),
            remove("Ingress", "ns", "b"),
            remove(MANIFEST_FILE_KIND, "", "bad.yaml"),
        ],
        "t2"
    ));
    let listed: Vec<_> = board.list().iter().map(|s| s.name.clone()).collect();
    assert_eq!(listed, ["a"]);
    assert!(
        !board.update(2, set(vec![translated("a", 1, STATUS_TRUE)]), "t3"),
        "nothing changed"
    );
}

#[test]
fn statuses_serialise_in_knative_shape() {
    let mut board = StatusBoard::default();
    board.update(
        1,
        set(vec![translated("a", 1, STATUS_TRUE)]),
        "2024-01-01T00:00:00Z",
    );
    board.applied(1, "2024-01-01T00:00:01Z");
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
    board.update(1, set(vec![revision_status("r")]), "t0");
    assert_eq!(
        scale(&board, "r"),
        (None, None),
        "no scale before the autoscaler reports"
    );

    assert!(board.set_scale("ns", "r", Some(3), 1));
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));
    assert!(!board.set_scale("ns", "r", Some(3), 1), "unchanged");

    // A new translation (same or changed) keeps the last reported scale.
    assert!(!board.update(1, set(vec![revision_status("r")]), "t1"));
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));
    let mut changed = revision_status("r");
    changed.generation = 2;
    changed.status.observed_generation = 2;
    board.update(2, set(vec![changed]), "t2");
    assert_eq!(scale(&board, "r"), (Some(3), Some(1)));

    assert!(board.set_scale("ns", "r", None, 0));
    assert_eq!(scale(&board, "r"), (None, Some(0)));
}

#[test]
fn set_scale_before_the_revision_appears_is_kept_until_it_is_gone() {
    let mut board = StatusBoard::default();
    assert!(!board.set_scale("ns", "r", Some(1), 0), "nothing shown yet");
    board.update(1, set(vec![revision_status("r")]), "t0");
    assert_eq!(scale(&board, "r"), (Some(1), Some(0)));

    // Gone from the translation: the scale goes with it, and a re-created revision starts clean.
    board.update(2, vec![remove("Revision", "ns", "r")], "t1");
    board.update(3, set(vec![revision_status("r")]), "t2");
    assert_eq!(scale(&board, "r"), (None, None));
}

#[test]
fn scale_fields_serialise_only_when_set() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![revision_status("r")]), "t0");
    let json = serde_json::to_value(board.list()).expect("serialises");
    assert!(json[0]["status"].get("desiredScale").is_none());
    board.set_scale("ns", "r", Some(2), 2);
    let json = serde_json::to_value(board.list()).expect("serialises");
    assert_eq!(json[0]["status"]["desiredScale"], 2);
    assert_eq!(json[0]["status"]["actualScale"], 2);
}

// ---------------------------------------------------------------------------------------------
// Readiness by sequence, refusals, scale errors, proxies.

fn route_status(name: &str) -> ObjectStatus {
    let mut status = Status {
        observed_generation: 1,
        ..Status::default()
    };
    status.set_condition(Condition::new(CONDITION_ALL_TRAFFIC_ASSIGNED, STATUS_TRUE));
    status.set_condition(
        Condition::new(CONDITION_INGRESS_READY, STATUS_UNKNOWN)
            .with_reason(REASON_UNINITIALIZED, MESSAGE_UNINITIALIZED),
    );
    status.derive_ready_from(ROUTE_READY_DEPENDENTS);
    ObjectStatus {
        api_version: "sluice.dev/v1alpha1".to_string(),
        kind: "Route".to_string(),
        namespace: "ns".to_string(),
        name: name.to_string(),
        generation: 1,
        status,
    }
}

/// (status, reason, message, lastTransitionTime) of one condition of a shown status.
fn shown(
    board: &StatusBoard,
    kind: &str,
    name: &str,
    type_: &str,
) -> (String, String, String, String) {
    let status = board.get(kind, "ns", name).expect("status present");
    let c = status
        .status
        .condition(type_)
        .unwrap_or_else(|| panic!("{kind} {name} has no {type_}"));
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
        c.last_transition_time.clone().unwrap_or_default(),
    )
}

fn ready(board: &StatusBoard, kind: &str, name: &str) -> String {
    shown(board, kind, name, CONDITION_READY).0
}

#[test]
fn readiness_follows_the_applied_sequence() {
    let mut board = StatusBoard::default();
    board.update(5, set(vec![translated("a", 1, STATUS_TRUE)]), "t1");
    // (applied sequence, a ready?)
    for (applied, want) in [(0, STATUS_UNKNOWN), (4, STATUS_UNKNOWN), (5, STATUS_TRUE)] {
        board.applied(applied, "t2");
        assert_eq!(ready(&board, "Ingress", "a"), want, "applied {applied}");
    }

    // Recorded later, at sequence 7: waits for 7, not for what was applied before.
    board.update(7, set(vec![translated("b", 1, STATUS_TRUE)]), "t3");
    assert_eq!(ready(&board, "Ingress", "b"), STATUS_UNKNOWN);
    assert!(!board.applied(6, "t4"), "6 does not carry b");
    assert_eq!(ready(&board, "Ingress", "b"), STATUS_UNKNOWN);
    assert!(board.applied(9, "t5"), "a later sequence carries it too");
    assert_eq!(shown(&board, "Ingress", "b", CONDITION_READY).3, "t5");

    // A status recorded at a sequence already applied (a status-only change) is ready at once.
    assert!(board.update(9, set(vec![route_status("r")]), "t6"));
    assert_eq!(ready(&board, "Route", "r"), STATUS_TRUE);
    assert_eq!(
        shown(&board, "Route", "r", CONDITION_INGRESS_READY).0,
        STATUS_TRUE
    );

    // Going back changes nothing.
    assert!(!board.applied(3, "t7"));
    assert_eq!(ready(&board, "Ingress", "a"), STATUS_TRUE);
    assert_eq!(ready(&board, "Ingress", "b"), STATUS_TRUE);
}

fn refusal(kind: &str, name: &str, message: &str) -> ((String, String, String), String) {
    (
        (kind.to_string(), "ns".to_string(), name.to_string()),
        message.to_string(),
    )
}

#[test]
fn a_refused_resource_keeps_its_owner_from_being_ready() {
    let mut board = StatusBoard::default();
    board.update(
        1,
        set(vec![
            translated("a", 1, STATUS_TRUE),
            translated("failed", 1, STATUS_FALSE),
            route_status("r"),
        ]),
        "t1",
    );
    board.applied(1, "t2");
    assert_eq!(ready(&board, "Ingress", "a"), STATUS_TRUE);

    let message = "proxy p1 refused routeConfig ingress/ns/a: bad route";
    let refused = BTreeMap::from([
        refusal("Ingress", "a", message),
        refusal("Route", "r", message),
        refusal("Ingress", "failed", message),
    ]);
    assert!(board.set_rejections(refused.clone(), "t3"));
    let want = |at: &str| {
        (
            STATUS_FALSE.to_string(),
            REASON_PROXY_REJECTED.to_string(),
            message.to_string(),
            at.to_string(),
        )
    };
    assert_eq!(
        shown(&board, "Ingress", "a", CONDITION_LOAD_BALANCER_READY),
        want("t3")
    );
    assert_eq!(shown(&board, "Ingress", "a", CONDITION_READY), want("t3"));
    assert_eq!(
        shown(&board, "Route", "r", CONDITION_INGRESS_READY),
        want("t3")
    );
    assert_eq!(shown(&board, "Route", "r", CONDITION_READY), want("t3"));
    let failed = shown(&board, "Ingress", "failed", CONDITION_READY);
    assert_eq!(
        (failed.0.as_str(), failed.1.as_str()),
        (STATUS_FALSE, "InvalidIngress"),
        "an object that failed translation shows its own failure"
    );
    assert!(!board.set_rejections(refused.clone(), "t4"), "unchanged");

    // Never ready while refused, whatever is applied.
    assert!(!board.applied(5, "t5"));
    assert_eq!(ready(&board, "Ingress", "a"), STATUS_FALSE);

    // Cleared: ready again, since what it needs is applied.
    assert!(board.set_rejections(BTreeMap::new(), "t6"));
    assert_eq!(
        shown(&board, "Ingress", "a", CONDITION_READY),
        (
            STATUS_TRUE.to_string(),
            String::new(),
            String::new(),
            "t6".to_string()
        )
    );
    assert_eq!(ready(&board, "Route", "r"), STATUS_TRUE);

    // Refused while still waiting, cleared before it is applied: it waits for the sequence.
    board.update(7, set(vec![translated("b", 1, STATUS_TRUE)]), "t7");
    board.set_rejections(BTreeMap::from([refusal("Ingress", "b", message)]), "t8");
    assert!(!board.applied(7, "t9"));
    assert_eq!(ready(&board, "Ingress", "b"), STATUS_FALSE);
    board.update(8, set(vec![translated("b", 2, STATUS_TRUE)]), "t10");
    assert_eq!(
        ready(&board, "Ingress", "b"),
        STATUS_FALSE,
        "a new generation, still refused"
    );
    board.set_rejections(BTreeMap::new(), "t11");
    assert_eq!(
        ready(&board, "Ingress", "b"),
        STATUS_UNKNOWN,
        "8 is not applied yet"
    );
    assert!(board.applied(8, "t12"));
    assert_eq!(ready(&board, "Ingress", "b"), STATUS_TRUE);
}

#[test]
fn a_scale_failure_shows_on_the_revision_until_a_scale_succeeds() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![revision_status("r")]), "t0");
    let error = "revision ns/r: cannot start an instance: spawning srv: not found";
    assert!(board.set_scale_error("ns", "r", Some(error.to_string()), "t1"));
    let failed = (
        STATUS_FALSE.to_string(),
        REASON_SCALE_FAILED.to_string(),
        error.to_string(),
        "t1".to_string(),
    );
    assert_eq!(
        shown(&board, "Revision", "r", CONDITION_RESOURCES_AVAILABLE),
        failed
    );
    assert_eq!(shown(&board, "Revision", "r", CONDITION_READY), failed);
    assert!(
        !board.set_scale_error("ns", "r", Some(error.to_string()), "t2"),
        "the same error again"
    );
    // Kept across translations of the same Revision, with the scale.
    board.set_scale("ns", "r", Some(1), 0);
    board.update(2, set(vec![revision_status("r")]), "t3");
    assert_eq!(ready(&board, "Revision", "r"), STATUS_FALSE);
    assert_eq!(scale(&board, "r"), (Some(1), Some(0)));

    assert!(board.set_scale_error("ns", "r", None, "t4"));
    let status = board.get("Revision", "ns", "r").expect("present");
    assert!(status
        .status
        .condition(CONDITION_RESOURCES_AVAILABLE)
        .is_none());
    assert_eq!(
        shown(&board, "Revision", "r", CONDITION_READY),
        (
            STATUS_TRUE.to_string(),
            String::new(),
            String::new(),
            "t4".to_string()
        )
    );
    assert_eq!(scale(&board, "r"), (Some(1), Some(0)), "the scale stays");

    // An error reported before the Revision appears shows once it does, and leaves with it.
    assert!(!board.set_scale_error("ns", "q", Some(error.to_string()), "t5"));
    board.update(3, set(vec![revision_status("q")]), "t6");
    assert_eq!(
        shown(&board, "Revision", "q", CONDITION_READY).1,
        REASON_SCALE_FAILED
    );
    board.update(4, vec![remove("Revision", "ns", "q")], "t7");
    board.update(5, set(vec![revision_status("q")]), "t8");
    assert_eq!(
        ready(&board, "Revision", "q"),
        STATUS_TRUE,
        "a re-created revision starts clean"
    );
}

fn proxy(applied: u64, current: u64, rejected: &[&str]) -> ProxyInfo {
    ProxyInfo {
        address: "127.0.0.1:50000".to_string(),
        identity: "spiffe://sluice/proxy".to_string(),
        applied_sequence: applied,
        current_sequence: current,
        version: (applied >= current && rejected.is_empty()).then(|| "digest".to_string()),
        rejected: rejected.iter().map(|r| r.to_string()).collect(),
    }
}

#[test]
fn connected_proxies_are_listed_after_the_objects() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![translated("a", 1, STATUS_TRUE)]), "t1");
    board.set_proxies(BTreeMap::from([
        ("p1".to_string(), proxy(3, 3, &[])),
        ("p2".to_string(), proxy(2, 3, &[])),
        (
            "p3".to_string(),
            proxy(3, 3, &["routeConfig ingress/ns/a: bad route"]),
        ),
    ]));
    let listed = board.list();
    let summary: Vec<(String, String, String, String)> = listed
        .iter()
        .map(|s| {
            let ready = s.status.condition(CONDITION_READY).expect("ready");
            (
                s.kind.clone(),
                s.name.clone(),
                ready.status.clone(),
                ready.reason.clone().unwrap_or_default(),
            )
        })
        .collect();
    let row = |kind: &str, name: &str, status: &str, reason: &str| {
        (
            kind.to_string(),
            name.to_string(),
            status.to_string(),
            reason.to_string(),
        )
    };
    assert_eq!(
        summary,
        [
            row("Ingress", "a", STATUS_UNKNOWN, REASON_UNINITIALIZED),
            row(PROXY_KIND, "p1", STATUS_TRUE, ""),
            row(PROXY_KIND, "p2", STATUS_UNKNOWN, "Syncing"),
            row(PROXY_KIND, "p3", STATUS_FALSE, REASON_PROXY_REJECTED),
        ]
    );
    let p3 = &listed[3];
    assert_eq!(p3.api_version, MANIFEST_FILE_API_VERSION);
    assert_eq!(
        p3.status
            .condition(CONDITION_READY)
            .and_then(|c| c.message.as_deref()),
        Some("routeConfig ingress/ns/a: bad route")
    );
    assert_eq!(
        p3.status.proxy,
        Some(proxy(3, 3, &["routeConfig ingress/ns/a: bad route"]))
    );
    let json = serde_json::to_value(&listed[1]).expect("serialises");
    assert_eq!(
        json["status"]["proxy"],
        serde_json::json!({
            "address": "127.0.0.1:50000",
            "identity": "spiffe://sluice/proxy",
            "appliedSequence": 3,
            "currentSequence": 3,
            "version": "digest",
        })
    );
    assert!(
        board.get(PROXY_KIND, "", "p1").is_none(),
        "proxies are not objects"
    );

    board.set_proxies(BTreeMap::new());
    assert_eq!(board.list().len(), 1, "disconnected proxies leave the list");
}

#[test]
fn changed_statuses_are_handed_out_once_for_the_writer() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![translated("x", 1, "True")]), "t");
    assert!(!board.has_changes(), "nothing tracked before a writer asks");
    assert!(
        board.take_changed().is_empty(),
        "the first call starts tracking"
    );
    board.update(
        1,
        set(vec![translated("a", 1, "True"), revision_status("r")]),
        "t0",
    );
    let mut names: Vec<String> = board.take_changed().into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, ["a", "r"]);
    assert!(!board.has_changes());
    assert!(board.take_changed().is_empty(), "handed out once");

    // The same translation again changes nothing shown.
    board.update(1, set(vec![translated("a", 1, "True")]), "t1");
    assert!(!board.has_changes());

    // Readiness, scale and a new generation each count as a change.
    board.applied(1, "t2");
    assert_eq!(
        names_of(board.take_changed()),
        ["a", "x"],
        "both became ready"
    );
    board.set_scale("ns", "r", Some(2), 0);
    assert_eq!(names_of(board.take_changed()), ["r"]);
    assert!(!board.set_scale("ns", "r", Some(2), 0));
    assert!(!board.has_changes());
    board.update(2, set(vec![translated("a", 2, "True")]), "t3");
    assert_eq!(names_of(board.take_changed()), ["a"]);

    // A removal is not handed out (there is nothing to write), but it is noticed.
    board.update(3, vec![remove("Ingress", "ns", "a")], "t4");
    assert!(board.has_changes());
    assert!(board.take_changed().is_empty());
}

fn names_of(statuses: Vec<ObjectStatus>) -> Vec<String> {
    statuses.into_iter().map(|s| s.name).collect()
}

#[test]
fn problems_of_sluice_itself_are_listed_last_with_a_reason() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![translated("a", 1, "True")]), "t0");
    assert!(board.set_problem(
        "Watch",
        "v1/secrets",
        Some("secrets is forbidden: 403".into())
    ));
    assert!(!board.set_problem(
        "Watch",
        "v1/secrets",
        Some("secrets is forbidden: 403".into())
    ));
    let listed = board.list();
    let last = listed.last().expect("entries");
    assert_eq!(
        (last.kind.as_str(), last.name.as_str()),
        ("Watch", "v1/secrets")
    );
    let ready = last.status.condition(CONDITION_READY).expect("ready");
    assert_eq!(ready.status, STATUS_FALSE);
    assert_eq!(ready.reason.as_deref(), Some(REASON_FORBIDDEN));
    assert!(board.set_problem("Watch", "v1/secrets", None));
    assert_eq!(board.list().len(), 1);

    let errors: BTreeMap<String, String> = [("ns/a".to_string(), "timed out".to_string())].into();
    assert!(board.set_problems("StatusWrite", errors.clone()));
    assert!(!board.set_problems("StatusWrite", errors));
    let last = board.list().pop().expect("entry");
    assert_eq!(
        last.status
            .condition(CONDITION_READY)
            .and_then(|c| c.reason.as_deref()),
        Some(REASON_API_ERROR)
    );
    assert!(board.set_problems("StatusWrite", BTreeMap::new()));
    assert_eq!(board.list().len(), 1);
}

/// A resubmitted translation keeps its readiness; a new generation waits for its own sequence.
#[test]
fn a_new_generation_waits_for_its_sequence_but_the_same_one_stays_ready() {
    // (label, generation resubmitted at sequence 2 after 1 was applied, want Ready)
    for (label, generation, want) in [
        ("same translation stays ready", 1, STATUS_TRUE),
        ("new generation is not ready yet", 2, STATUS_UNKNOWN),
    ] {
        let mut board = StatusBoard::default();
        board.update(1, set(vec![translated("a", 1, STATUS_TRUE)]), "t0");
        board.applied(1, "t1");
        assert_eq!(ready(&board, "Ingress", "a"), STATUS_TRUE, "{label}");
        let changed = board.update(2, set(vec![translated("a", generation, STATUS_TRUE)]), "t2");
        assert_eq!(ready(&board, "Ingress", "a"), want, "{label}");
        assert_eq!(changed, generation != 1, "{label}: reported as a change");
        board.applied(2, "t3");
        assert_eq!(
            ready(&board, "Ingress", "a"),
            STATUS_TRUE,
            "{label}: ready once applied"
        );
    }
}

/// `set_scale` reports (and hands to the writer) a change of either field alone, and nothing
/// when the shown values stay the same.
#[test]
fn set_scale_detects_a_change_of_either_field() {
    // (label, previous (desired, actual), next, want changed)
    let cases = [
        ("desired only", (Some(3), 1), (Some(4), 1), true),
        ("actual only", (Some(3), 1), (Some(3), 2), true),
        ("desired to unknown", (Some(3), 1), (None, 1), true),
        ("both", (Some(3), 1), (None, 0), true),
        ("same", (Some(3), 1), (Some(3), 1), false),
        (
            "actual saturates to the same shown value",
            (Some(3), u32::MAX),
            (Some(3), u32::MAX - 1),
            false,
        ),
    ];
    for (label, (d0, a0), (d1, a1), want) in cases {
        let mut board = StatusBoard::default();
        board.update(1, set(vec![revision_status("r")]), "t0");
        board.take_changed();
        assert!(board.set_scale("ns", "r", d0, a0), "{label}: first report");
        board.take_changed();
        assert_eq!(board.set_scale("ns", "r", d1, a1), want, "{label}");
        assert_eq!(board.has_changes(), want, "{label}: handed to the writer");
        let shown_actual = Some(i32::try_from(a1).unwrap_or(i32::MAX));
        assert_eq!(scale(&board, "r"), (d1, shown_actual), "{label}");
    }
}

/// The wait list (what [`StatusBoard::applied`] walks) holds only translations still waiting
/// for the data plane: not failed ones, not Revisions, not ones already ready.
#[test]
fn only_translations_awaiting_the_data_plane_wait() {
    let mut board = StatusBoard::default();
    board.update(1, set(vec![translated("ready", 1, STATUS_TRUE)]), "t1");
    board.applied(1, "t2");
    assert!(board.waiting.is_empty(), "applied: nothing waits");
    let changes = || {
        set(vec![
            translated("ready", 1, STATUS_TRUE),
            translated("failed", 1, STATUS_FALSE),
            revision_status("rev"),
            translated("new", 1, STATUS_TRUE),
        ])
    };
    board.update(2, changes(), "t3");
    let waiting: Vec<&str> = board.waiting.iter().map(|(_, k)| k.2.as_str()).collect();
    assert_eq!(waiting, ["new"]);
    board.applied(2, "t4");
    assert!(board.waiting.is_empty());
    // Resubmitted after 2 was applied, everything counts as served; a refusal then puts back
    // only a translation that awaits the data plane.
    board.update(3, changes(), "t5");
    assert!(board.waiting.is_empty());
    let refused = BTreeMap::from([
        refusal("Ingress", "ready", "no"),
        refusal("Revision", "rev", "no"),
    ]);
    board.set_rejections(refused, "t5");
    let waiting: Vec<&str> = board.waiting.iter().map(|(_, k)| k.2.as_str()).collect();
    assert_eq!(waiting, ["ready"]);
    board.set_rejections(BTreeMap::new(), "t6");
    assert!(board.waiting.is_empty(), "lifted: ready again at once");
}

/// Only a translated Ingress or Route still waiting for its load balancer awaits one.
#[test]
fn only_translated_ingresses_and_routes_await_the_load_balancer() {
    let object = |kind: &str, conditions: &[(&str, &str)]| {
        let mut status = Status::default();
        for (type_, value) in conditions {
            status.set_condition(Condition::new(type_, value));
        }
        ObjectStatus {
            api_version: String::new(),
            kind: kind.to_string(),
            namespace: "ns".to_string(),
            name: "x".to_string(),
            generation: 1,
            status,
        }
    };
    let (nc, lb) = (CONDITION_NETWORK_CONFIGURED, CONDITION_LOAD_BALANCER_READY);
    let (ata, ir) = (CONDITION_ALL_TRAFFIC_ASSIGNED, CONDITION_INGRESS_READY);
    let (t, f, u) = (STATUS_TRUE, STATUS_FALSE, STATUS_UNKNOWN);
    // (kind, (condition, status) pairs, want)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
    let cases: [Case; 9] = [
        ("Ingress", &[(nc, t), (lb, u)], true),
        ("Ingress", &[(nc, f), (lb, u)], false),
        ("Ingress", &[(nc, t), (lb, f)], false),
        ("Ingress", &[(nc, t)], false),
        ("Route", &[(ata, t), (ir, u)], true),
        ("Route", &[(ata, f), (ir, u)], false),
        ("Route", &[(ata, t), (ir, t)], false),
        ("Route", &[(nc, t), (lb, u)], false),
        ("Revision", &[(nc, t), (lb, u), (ata, t), (ir, u)], false),
    ];
    for (kind, conditions, want) in cases {
        assert_eq!(
            object(kind, conditions).awaits_load_balancer(),
            want,
            "{kind} {conditions:?}"
        );
    }
}

/// A problem's reason tells an RBAC refusal (403 or "forbidden" in the message) from any other
/// API error, and replacing one kind's problems leaves the other kinds' alone.
#[test]
fn problem_reasons_and_kinds_are_kept_apart() {
    for (message, want) in [
        ("secrets is forbidden: 403", REASON_FORBIDDEN),
        ("secrets is forbidden", REASON_FORBIDDEN),
        ("Forbidden", REASON_FORBIDDEN),
        ("HTTP 403", REASON_FORBIDDEN),
        ("timed out", REASON_API_ERROR),
    ] {
        let mut board = StatusBoard::default();
        board.set_problem("Watch", "v1/secrets", Some(message.to_string()));
        let listed = board.list();
        let reason = listed[0]
            .status
            .condition(CONDITION_READY)
            .and_then(|c| c.reason.clone());
        assert_eq!(reason.as_deref(), Some(want), "{message}");
    }
    let mut board = StatusBoard::default();
    board.set_problem("Watch", "v1/secrets", Some("timed out".into()));
    let errors: BTreeMap<String, String> = [("ns/a".to_string(), "conflict".to_string())].into();
    assert!(board.set_problems("StatusWrite", errors));
    assert!(board.set_problems("StatusWrite", BTreeMap::new()));
    assert_eq!(
        names_of(board.list()),
        ["v1/secrets"],
        "the watch problem stays"
    );
}
