use super::*;

fn route(spec: &str) -> Route {
    let yaml = format!("metadata: {{name: hello, namespace: default}}\nspec: {spec}\n");
    serde_yaml::from_str(&yaml).expect("test route decodes")
}

fn error_of(spec: &str) -> String {
    match validate(&route(spec)) {
        Ok(valid) => panic!("{spec}: unexpectedly valid: {valid:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn tag_host_prefixes_the_first_label() {
    let cases = [
        ("canary", "hello.example.com", "canary-hello.example.com"),
        ("canary", "hello", "canary-hello"),
        (
            "v1",
            "hello.default.svc.cluster.local",
            "v1-hello.default.svc.cluster.local",
        ),
        ("a", "x.y", "a-x.y"),
    ];
    for (tag, host, want) in cases {
        assert_eq!(tag_host(tag, host), want, "{tag} on {host}");
    }
}

#[test]
fn dns1035_labels() {
    let cases = [
        ("canary", true),
        ("v1", true),
        ("a-b-c", true),
        ("a", true),
        ("", false),
        ("1abc", false),
        ("Canary", false),
        ("canary-", false),
        ("can_ary", false),
        ("can.ary", false),
        (&*"a".repeat(63), true),
        (&*"a".repeat(64), false),
    ];
    for (label, want) in cases {
        assert_eq!(is_dns1035_label(label), want, "{label:?}");
    }
}

#[test]
fn validation_messages_name_the_route_and_every_problem() {
    let cases = [
        (
            "{hosts: [hello.example.com], traffic: [{revision: a, percent: 90}]}",
            "route default/hello: traffic percentages sum to 90, want 100",
        ),
        (
            "{traffic: [{revision: a, percent: 100}]}",
            "route default/hello: spec.hosts is empty, want at least one host",
        ),
        (
            "{hosts: [hello.example.com]}",
            "route default/hello: spec.traffic is empty, want at least one target",
        ),
        (
            "{hosts: [hello.example.com], visibility: Public, traffic: [{revision: a, percent: 100}]}",
            "route default/hello: spec.visibility: \"Public\" is not ExternalIP or ClusterLocal",
        ),
        (
            "{hosts: [hello_world.example.com, '*.example.com'], traffic: [{revision: a, percent: 100}]}",
            "route default/hello: spec.hosts[0]: \"hello_world.example.com\" is not a valid host name; \
             spec.hosts[1]: \"*.example.com\" is not a valid host name",
        ),
        (
            "{hosts: [h], traffic: [{percent: 100}]}",
            "route default/hello: spec.traffic[0].revision is missing",
        ),
        (
            "{hosts: [h], traffic: [{revision: a, percent: 120}, {revision: b, percent: -20}]}",
            "route default/hello: spec.traffic[0].percent is 120, want 0..=100; \
             spec.traffic[1].percent is -20, want 0..=100",
        ),
        (
            "{hosts: [h], traffic: [{revision: a, percent: 100, tag: Canary}]}",
            "route default/hello: spec.traffic[0].tag \"Canary\" is not a DNS-1035 label \
             (lower-case letters, digits and '-', starting with a letter, at most 63 characters)",
        ),
        (
            "{hosts: [h], traffic: [{revision: a, percent: 100, tag: x}, {revision: b, tag: x}]}",
            "route default/hello: spec.traffic[1].tag \"x\" is already used by spec.traffic[0]",
        ),
        (
            "{hosts: [hello.example.com, canary-hello.example.com], traffic: [{revision: a, percent: 100, tag: canary}]}",
            "route default/hello: tag \"canary\": tag host \"canary-hello.example.com\" is also \
             a host or another tag host of the route",
        ),
        (
            "{hosts: [b-c.x, c.x], traffic: [{revision: a, percent: 100, tag: a}, {revision: b, tag: a-b}]}",
            "route default/hello: tag \"a-b\": tag host \"a-b-c.x\" is also a host or another \
             tag host of the route",
        ),
    ];
    for (spec, want) in cases {
        assert_eq!(error_of(spec), want, "{spec}");
    }
}

#[test]
fn tag_host_with_an_overlong_first_label_is_rejected() {
    let host = format!("{}.example.com", "h".repeat(60));
    let message = error_of(&format!(
        "{{hosts: [{host}], traffic: [{{revision: a, percent: 100, tag: canary}}]}}"
    ));
    assert!(
        message.contains("is not a valid host name") && message.contains("tag \"canary\""),
        "{message}"
    );
}

#[test]
fn zero_percent_entries_are_allowed_and_get_no_split() {
    let valid = validate(&route(
        "{hosts: [h], traffic: [{revision: a, percent: 100}, {revision: b, percent: 0}, {revision: c}]}",
    ))
    .expect("valid");
    assert_eq!(valid.splits, vec![("a".to_string(), 100)]);
    assert_eq!(
        valid.revisions.iter().collect::<Vec<_>>(),
        ["a", "b", "c"],
        "every named revision is still required"
    );
}

#[test]
fn splits_merge_by_revision_and_sort_by_name() {
    let valid = validate(&route(
        "{hosts: [h], traffic: [{revision: zeta, percent: 30}, {revision: alpha, percent: 50}, \
         {revision: zeta, percent: 20, tag: z}, {revision: beta, percent: 0, tag: b}]}",
    ))
    .expect("valid");
    assert_eq!(
        valid.splits,
        vec![("alpha".to_string(), 50), ("zeta".to_string(), 50)]
    );
    let tags: Vec<(&str, &str)> = valid
        .tags
        .iter()
        .map(|(t, r)| (t.as_str(), r.as_str()))
        .collect();
    assert_eq!(tags, [("b", "beta"), ("z", "zeta")]);
}

#[test]
fn hosts_are_normalised_and_deduplicated_in_spec_order() {
    let valid = validate(&route(
        "{hosts: [Hello.Example.com:8080, b.example.com, hello.example.com], traffic: [{revision: a, percent: 100, tag: t}]}",
    ))
    .expect("valid");
    assert_eq!(valid.hosts, ["hello.example.com", "b.example.com"]);
    let tag_hosts: Vec<_> = valid.tag_hosts().collect();
    assert_eq!(
        tag_hosts,
        [(
            "t",
            vec![
                "t-hello.example.com".to_string(),
                "t-b.example.com".to_string()
            ]
        )]
    );
}

#[test]
fn visibility_defaults_to_external_ip() {
    let cases = [
        ("", true),
        ("visibility: ExternalIP,", true),
        ("visibility: ClusterLocal,", false),
    ];
    for (visibility, external) in cases {
        let valid = validate(&route(&format!(
            "{{{visibility} hosts: [h], traffic: [{{revision: a, percent: 100}}]}}"
        )))
        .expect("valid");
        assert_eq!(valid.external, external, "{visibility:?}");
    }
}

#[test]
fn knative_revision_name_field_is_accepted() {
    let valid = validate(&route(
        "{hosts: [h], traffic: [{revisionName: a, percent: 100}]}",
    ))
    .expect("valid");
    assert_eq!(valid.splits, vec![("a".to_string(), 100)]);
}
