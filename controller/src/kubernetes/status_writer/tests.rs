use super::*;
use crate::status::{Condition, STATUS_FALSE, STATUS_TRUE};
use serde_json::json;

fn board_status() -> Status {
    let mut status = Status {
        observed_generation: 2,
        ..Status::default()
    };
    for (type_, state) in [("LoadBalancerReady", STATUS_TRUE), ("Ready", STATUS_TRUE)] {
        let mut condition = Condition::new(type_, state);
        condition.last_transition_time = Some("2026-12-03T10:00:00Z".to_string());
        status.set_condition(condition);
    }
    status
}

#[test]
fn unchanged_conditions_keep_the_observed_transition_time() {
    let observed = json!({
        "observedGeneration": 2,
        "conditions": [
            {"type": "LoadBalancerReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}
        ]
    });
    let desired = desired_status(Kind::Ingress, &board_status(), Some(&observed));
    assert_eq!(
        desired["conditions"][0]["lastTransitionTime"], "2026-01-01T00:00:00Z",
        "status unchanged: time kept"
    );
    assert_eq!(
        desired["conditions"][1]["lastTransitionTime"], "2026-12-03T10:00:00Z",
        "status changed: the board's time"
    );
}

#[test]
fn an_equal_status_is_not_written() {
    let observed = serde_json::to_value(board_status()).expect("json");
    let desired = desired_status(Kind::Ingress, &board_status(), Some(&observed));
    assert_eq!(status_patch(&desired, Some(&observed)), None);
}

#[test]
fn a_status_written_by_a_previous_leader_is_not_rewritten_for_its_times_alone() {
    let mut old = board_status();
    for condition in &mut old.conditions {
        condition.last_transition_time = Some("2025-05-05T05:05:05Z".to_string());
    }
    let observed = serde_json::to_value(old).expect("json");
    let desired = desired_status(Kind::Ingress, &board_status(), Some(&observed));
    assert_eq!(status_patch(&desired, Some(&observed)), None);
}

#[test]
fn the_patch_sets_the_board_status_and_clears_fields_the_board_does_not_show() {
    let observed = json!({
        "observedGeneration": 1,
        "conditions": [],
        "publicLoadBalancer": {"ingress": [{"domainInternal": "old"}]},
        "somethingElse": true
    });
    let mut board = board_status();
    board.set_condition(Condition::new("NetworkConfigured", STATUS_FALSE).with_reason("X", "y"));
    let desired = desired_status(Kind::Ingress, &board, Some(&observed));
    let patch = status_patch(&desired, Some(&observed)).expect("differs");
    assert_eq!(patch["status"]["observedGeneration"], 2);
    assert_eq!(patch["status"]["publicLoadBalancer"], Value::Null);
    assert_eq!(patch["status"]["somethingElse"], Value::Null);
    assert_eq!(
        patch["status"]["conditions"].as_array().map(Vec::len),
        Some(3)
    );
}

#[test]
fn a_first_status_is_written_whole() {
    let desired = desired_status(Kind::Ingress, &board_status(), None);
    let patch = status_patch(&desired, None).expect("written");
    assert_eq!(patch["status"], desired);
}

#[test]
fn only_kingress_route_and_revision_statuses_are_written() {
    let status = |api: &str, kind: &str| ObjectStatus {
        api_version: api.to_string(),
        kind: kind.to_string(),
        namespace: "ns".to_string(),
        name: "x".to_string(),
        generation: 1,
        status: Status::default(),
    };
    assert_eq!(
        kind_of(&status(
            "networking.internal.knative.dev/v1alpha1",
            "Ingress"
        )),
        Some(Kind::Ingress)
    );
    assert_eq!(
        kind_of(&status("sluice.dev/v1alpha1", "Route")),
        Some(Kind::Route)
    );
    assert_eq!(
        kind_of(&status("sluice.dev/v1alpha1", "Revision")),
        Some(Kind::Revision)
    );
    assert_eq!(
        kind_of(&status("sluice.dev/v1alpha1", "ManifestFile")),
        None
    );
    assert_eq!(kind_of(&status("sluice.dev/v1alpha1", "Proxy")), None);
    assert_eq!(kind_of(&status("networking.k8s.io/v1", "Ingress")), None);
}

#[test]
fn routes_and_revisions_are_written_in_their_own_status_shape() {
    let mut status = board_status();
    status.url = Some("http://hello.example.com".to_string());
    status.desired_scale = Some(2);
    status.public_load_balancer = Some(Default::default());
    let route = desired_status(Kind::Route, &status, None);
    assert_eq!(route["url"], "http://hello.example.com");
    assert!(route.get("desiredScale").is_none() && route.get("publicLoadBalancer").is_none());
    let revision = desired_status(Kind::Revision, &status, None);
    assert_eq!(revision["desiredScale"], 2);
    assert!(revision.get("url").is_none() && revision.get("publicLoadBalancer").is_none());
    let ingress = desired_status(Kind::Ingress, &status, None);
    assert!(ingress.get("publicLoadBalancer").is_some());
}

/// A board status translated at generation 2, its load balancer `state`.
fn waiting_for_proxies(type_: &str, state: &str) -> Status {
    let mut status = Status {
        observed_generation: 2,
        ..Status::default()
    };
    status.set_condition(Condition::new(type_, state));
    status
}

#[test]
fn a_new_leader_holds_back_only_a_readiness_its_proxies_have_yet_to_confirm() {
    let observed = |type_: &str, state: &str, generation: i64| {
        json!({
            "observedGeneration": generation,
            "conditions": [{"type": type_, "status": state}]
        })
    };
    let lb = "LoadBalancerReady";
    let ingress = "IngressReady";
    let unknown = "Unknown";
    // (what, kind, the board's condition and state, the API server's status, held)
    let cases = [
        (
            "served at this generation: wait for the proxies",
            Kind::Ingress,
            (lb, unknown),
            Some(observed(lb, STATUS_TRUE, 2)),
            true,
        ),
        (
            "a Route, the same",
            Kind::Route,
            (ingress, unknown),
            Some(observed(ingress, STATUS_TRUE, 2)),
            true,
        ),
        (
            "a new generation is news",
            Kind::Ingress,
            (lb, unknown),
            Some(observed(lb, STATUS_TRUE, 1)),
            false,
        ),
        (
            "never served",
            Kind::Ingress,
            (lb, unknown),
            Some(observed(lb, unknown, 2)),
            false,
        ),
        ("never written", Kind::Ingress, (lb, unknown), None, false),
        (
            "a proxy refuses it: say so",
            Kind::Ingress,
            (lb, STATUS_FALSE),
            Some(observed(lb, STATUS_TRUE, 2)),
            false,
        ),
        (
            "ready on the board too",
            Kind::Ingress,
            (lb, STATUS_TRUE),
            Some(observed(lb, STATUS_TRUE, 2)),
            false,
        ),
        (
            "Revisions have no load balancer",
            Kind::Revision,
            (lb, unknown),
            Some(observed(lb, STATUS_TRUE, 2)),
            false,
        ),
    ];
    for (what, kind, (type_, state), observed, held) in cases {
        let board = waiting_for_proxies(type_, state);
        assert_eq!(
            awaits_confirmation(kind, &board, observed.as_ref()),
            held,
            "{what}"
        );
    }
}
