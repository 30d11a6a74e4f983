use super::*;
use serde::Deserialize;
use std::path::Path;

fn all_rule_lists() -> [(&'static str, Vec<PolicyRule>); 3] {
    [
        ("controller cluster", controller_cluster_rules()),
        ("controller namespace", controller_namespace_rules()),
        ("proxy", proxy_rules()),
    ]
}

fn allows(rules: &[PolicyRule], group: &str, resource: &str, verb: &str) -> bool {
    let has = |list: &Option<Vec<String>>, item: &str| {
        list.as_ref().is_some_and(|l| l.iter().any(|x| x == item))
    };
    rules.iter().any(|rule| {
        has(&rule.api_groups, group)
            && has(&rule.resources, resource)
            && rule.verbs.iter().any(|v| v == verb)
    })
}

fn strictly_sorted<T: Ord>(items: &[T]) -> bool {
    items.windows(2).all(|pair| pair[0] < pair[1])
}

#[test]
fn rules_are_sorted_and_deduplicated() {
    for (list, rules) in all_rule_lists() {
        let keys: Vec<_> = rules
            .iter()
            .map(|r| (r.api_groups.clone(), r.resources.clone()))
            .collect();
        assert!(
            strictly_sorted(&keys),
            "{list}: rules out of order: {keys:?}"
        );
        let mut seen = BTreeSet::new();
        for rule in &rules {
            let groups = rule.api_groups.clone().unwrap_or_default();
            let resources = rule.resources.clone().unwrap_or_default();
            assert_eq!(groups.len(), 1, "{list}: one API group per rule: {rule:?}");
            assert!(
                !resources.is_empty(),
                "{list}: a rule names resources: {rule:?}"
            );
            assert!(strictly_sorted(&resources), "{list}: {rule:?}");
            assert!(strictly_sorted(&rule.verbs), "{list}: {rule:?}");
            for resource in &resources {
                assert!(
                    seen.insert((groups[0].clone(), resource.clone())),
                    "{list}: {}/{resource} is in two rules",
                    groups[0]
                );
            }
            assert!(
                rule.resource_names.is_none() && rule.non_resource_urls.is_none(),
                "{list}: {rule:?}"
            );
        }
    }
}

#[test]
fn every_verb_is_a_kubernetes_verb() {
    for (list, rules) in all_rule_lists() {
        for rule in &rules {
            for verb in &rule.verbs {
                assert!(
                    KUBERNETES_VERBS.contains(&verb.as_str()),
                    "{list}: {verb:?} in {rule:?}"
                );
            }
        }
    }
}

#[test]
fn the_controller_may_do_what_the_kubernetes_mode_does() {
    let cluster = controller_cluster_rules();
    let read = ["get", "list", "watch"];
    let write_status = ["update", "patch"];
    let mut wanted: Vec<(&str, &str, &str)> = Vec::new();
    for (group, resource) in [
        ("networking.internal.knative.dev", "ingresses"),
        ("sluice.dev", "routes"),
        ("sluice.dev", "revisions"),
        ("", "services"),
        ("", "secrets"),
        ("", "configmaps"),
        ("discovery.k8s.io", "endpointslices"),
    ] {
        wanted.extend(read.iter().map(|verb| (group, resource, *verb)));
    }
    for (group, resource) in [
        ("networking.internal.knative.dev", "ingresses/status"),
        ("sluice.dev", "routes/status"),
        ("sluice.dev", "revisions/status"),
    ] {
        wanted.extend(write_status.iter().map(|verb| (group, resource, *verb)));
    }
    for verb in ["get", "update", "patch"] {
        wanted.push(("apps", "deployments/scale", verb));
    }
    for verb in ["create", "patch"] {
        wanted.push(("", "events", verb));
        wanted.push(("events.k8s.io", "events", verb));
    }
    for (group, resource, verb) in wanted {
        assert!(
            allows(&cluster, group, resource, verb),
            "the ClusterRole does not allow {verb} on {group}/{resource}"
        );
    }

    let namespaced = controller_namespace_rules();
    for verb in ["get", "create", "update"] {
        assert!(
            allows(&namespaced, "coordination.k8s.io", "leases", verb),
            "the Role does not allow {verb} on leases"
        );
    }
}

#[test]
fn leases_are_granted_only_in_the_controller_s_namespace() {
    let mentions_leases = |rules: &[PolicyRule]| {
        rules.iter().any(|rule| {
            rule.resources
                .iter()
                .flatten()
                .any(|r| r.starts_with("leases"))
        })
    };
    assert!(!mentions_leases(&controller_cluster_rules()));
    assert!(mentions_leases(&controller_namespace_rules()));
}

#[test]
fn the_controller_writes_only_statuses_scale_events_and_its_lease() {
    let writes = ["create", "update", "patch", "delete", "deletecollection"];
    for (list, rules) in all_rule_lists() {
        for rule in &rules {
            for resource in rule.resources.iter().flatten() {
                let writable = resource.ends_with("/status")
                    || resource.ends_with("/scale")
                    || resource == "events"
                    || resource == "leases";
                for verb in &rule.verbs {
                    assert!(
                        writable || !writes.contains(&verb.as_str()),
                        "{list}: {verb} on {resource}"
                    );
                    assert!(!verb.starts_with("delete"), "{list}: {verb} on {resource}");
                }
            }
        }
    }
}

#[test]
fn proxies_need_no_permissions() {
    assert_eq!(proxy_rules(), Vec::<PolicyRule>::new());
}

#[test]
fn sluice_rbac_prints_a_cluster_role_and_a_role_in_the_namespace() {
    let stream = yaml("sluice-system");
    assert!(stream.starts_with(HEADER));
    let documents: Vec<Value> = serde_yaml::Deserializer::from_str(&stream)
        .map(|document| Value::deserialize(document).expect("each document is YAML"))
        .collect();
    let [cluster_role, role] = documents.as_slice() else {
        panic!("want two documents, got {documents:#?}");
    };
    assert_eq!(
        (&cluster_role["apiVersion"], &cluster_role["kind"]),
        (
            &json!("rbac.authorization.k8s.io/v1"),
            &json!("ClusterRole")
        )
    );
    assert_eq!(
        (&role["kind"], &role["metadata"]["namespace"]),
        (&json!("Role"), &json!("sluice-system"))
    );
    let cluster_role: ClusterRole =
        serde_json::from_value(cluster_role.clone()).expect("a ClusterRole");
    let role: Role = serde_json::from_value(role.clone()).expect("a Role");
    assert_eq!(cluster_role.rules, Some(controller_cluster_rules()));
    assert_eq!(role.rules, Some(controller_namespace_rules()));
}

#[test]
fn the_rules_file_reads_back_as_the_rules() {
    let file = rules_file();
    assert!(file.contents.starts_with(HEADER));
    let value: Value = serde_yaml::from_str(&file.contents).expect("the rules file is YAML");
    let read = |key: &str| -> Vec<PolicyRule> {
        serde_json::from_value(value[key].clone()).expect("a list of PolicyRules")
    };
    assert_eq!(read("clusterRules"), controller_cluster_rules());
    assert_eq!(read("namespaceRules"), controller_namespace_rules());
}

#[test]
fn committed_rules_file_matches_the_list() {
    let file = rules_file();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(COMMITTED_DIR)
        .join(&file.name);
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == file.contents,
        "{COMMITTED_DIR}/{} is missing or out of date with sluice_controller::rbac: run \
         `{WRITE_COMMAND}` and commit the result",
        file.name
    );
}
