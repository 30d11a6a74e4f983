use super::*;

fn spec(yaml: &str) -> IngressSpec {
    serde_yaml::from_str(yaml).expect("test spec parses")
}

#[test]
fn defaulting() {
    let cases = [
        (
            "empty visibility becomes ExternalIP",
            "rules: [{hosts: [a], http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80}]}]}}]",
            "rules: [{hosts: [a], visibility: ExternalIP, http: {paths: [{splits: [{serviceNamespace: ns, serviceName: s, servicePort: 80, percent: 100}]}]}}]",
        ),
        (
            "ClusterLocal is kept",
            "rules: [{visibility: ClusterLocal, http: {paths: [{splits: [{serviceName: s, percent: 100}]}]}}]",
            "rules: [{visibility: ClusterLocal, http: {paths: [{splits: [{serviceName: s, percent: 100}]}]}}]",
        ),
        (
            "a single zero split becomes 100",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: s, percent: 0}]}]}}]",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: s, percent: 100}]}]}}]",
        ),
        (
            "a single non-zero split is kept",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: s, percent: 40}]}]}}]",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: s, percent: 40}]}]}}]",
        ),
        (
            "two splits are never defaulted",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: a}, {serviceName: b, percent: 0}]}]}}]",
            "rules: [{visibility: ExternalIP, http: {paths: [{splits: [{serviceName: a}, {serviceName: b}]}]}}]",
        ),
        (
            "httpOption is not defaulted and a rule without http is left alone",
            "rules: [{hosts: [a]}]",
            "rules: [{hosts: [a], visibility: ExternalIP}]",
        ),
    ];
    for (name, input, want) in cases {
        let mut got = spec(input);
        set_defaults(&mut got);
        assert_eq!(got, spec(want), "{name}");
    }
}

const OK_SPLIT: &str = "{serviceNamespace: ns, serviceName: s, servicePort: 80}";

fn with_splits(splits: &str) -> String {
    format!("rules: [{{hosts: [a], http: {{paths: [{{splits: {splits}}}]}}}}]")
}

#[test]
fn validation_messages() {
    let ok = with_splits(&format!("[{OK_SPLIT}]"));
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("a minimal ingress is valid", ok.clone(), None),
        ("an empty spec", "{}".to_string(), Some("missing field(s): spec")),
        ("no rules", "httpOption: Enabled".to_string(), Some("missing field(s): spec.rules")),
        (
            "a rule without http",
            "rules: [{hosts: [a]}]".to_string(),
            Some("missing field(s): spec.rules[0].http"),
        ),
        (
            "a rule without paths",
            "rules: [{hosts: [a], http: {}}]".to_string(),
            Some("missing field(s): spec.rules[0].http.paths"),
        ),
        (
            "a rule with an empty path list",
            "rules: [{hosts: [a], http: {paths: []}}]".to_string(),
            Some("missing field(s): spec.rules[0].http.paths"),
        ),
        (
            "an empty path",
            "rules: [{hosts: [a], http: {paths: [{}]}}]".to_string(),
            Some("missing field(s): spec.rules[0].http.paths[0]"),
        ),
        (
            "a path without splits",
            "rules: [{hosts: [a], http: {paths: [{path: /x, splits: []}]}}]".to_string(),
            Some("missing field(s): spec.rules[0].http.paths[0].splits"),
        ),
        (
            "percents not totalling 100",
            with_splits(
                "[{serviceNamespace: ns, serviceName: a, servicePort: 80, percent: 50}, {serviceNamespace: ns, serviceName: b, servicePort: 80, percent: 40}]",
            ),
            Some("traffic split percentage must total to 100, but was 90: spec.rules[0].http.paths[0].splits"),
        ),
        (
            "two zero splits",
            with_splits(&format!("[{OK_SPLIT}, {OK_SPLIT}]")),
            Some("traffic split percentage must total to 100, but was 0: spec.rules[0].http.paths[0].splits"),
        ),
        (
            "a percent above 100",
            with_splits("[{serviceNamespace: ns, serviceName: a, servicePort: 80, percent: 101}]"),
            Some("invalid value: 101: spec.rules[0].http.paths[0].splits[0].percent"),
        ),
        (
            "a negative percent",
            with_splits("[{serviceNamespace: ns, serviceName: a, servicePort: 80, percent: -1}, {serviceNamespace: ns, serviceName: b, servicePort: 80, percent: 101}]"),
            Some("invalid value: -1: spec.rules[0].http.paths[0].splits[0].percent"),
        ),
        (
            "an empty split",
            with_splits("[{}]"),
            Some("missing field(s): spec.rules[0].http.paths[0].splits[0]"),
        ),
        (
            "a split with only a percent",
            with_splits("[{percent: 100}]"),
            Some("missing field(s): spec.rules[0].http.paths[0].splits[0]"),
        ),
        (
            "a missing service namespace, name and port",
            with_splits("[{appendHeaders: {A: b}, serviceNamespace: '', serviceName: '', servicePort: 0, percent: 100}]"),
            Some("missing field(s): spec.rules[0].http.paths[0].splits[0]"),
        ),
        (
            "missing service name and port",
            with_splits("[{serviceNamespace: ns}]"),
            Some("missing field(s): spec.rules[0].http.paths[0].splits[0].serviceName, spec.rules[0].http.paths[0].splits[0].servicePort"),
        ),
        (
            "a missing service namespace",
            with_splits("[{serviceName: s, servicePort: http}]"),
            Some("missing field(s): spec.rules[0].http.paths[0].splits[0].serviceNamespace"),
        ),
        (
            "a foreign service namespace",
            with_splits("[{serviceNamespace: other, serviceName: s, servicePort: 80}]"),
            Some("service namespace must match ingress namespace: spec.rules[0].http.paths[0].splits[0].serviceNamespace"),
        ),
        (
            "an empty string port is not the zero value",
            with_splits("[{serviceNamespace: ns, serviceName: s, servicePort: ''}]"),
            None,
        ),
        (
            "an empty tls entry",
            format!("tls: [{{}}]\n{ok}"),
            Some("missing field(s): spec.tls[0]"),
        ),
        (
            "a tls entry without secret",
            format!("tls: [{{hosts: [a]}}]\n{ok}"),
            Some("missing field(s): spec.tls[0].secretName, spec.tls[0].secretNamespace"),
        ),
        (
            "a complete tls entry",
            format!("tls: [{{hosts: [a], secretName: s, secretNamespace: ns}}]\n{ok}"),
            None,
        ),
        (
            "an unknown httpOption",
            format!("httpOption: Disabled\n{ok}"),
            Some("invalid value: Disabled: spec.httpOption"),
        ),
        ("httpOption Redirected", format!("httpOption: Redirected\n{ok}"), None),
        (
            "errors of several rules are merged and sorted by message",
            "rules: [{hosts: [a]}, {hosts: [b], http: {paths: [{splits: [{serviceNamespace: x, serviceName: s, servicePort: 80}]}]}}, {hosts: [c]}]".to_string(),
            Some("missing field(s): spec.rules[0].http, spec.rules[2].http; service namespace must match ingress namespace: spec.rules[1].http.paths[0].splits[0].serviceNamespace"),
        ),
    ];
    for (name, input, want) in cases {
        let mut s = spec(&input);
        set_defaults(&mut s);
        let got = validate("ns", "ing", &s);
        match want {
            None => assert_eq!(got, Ok(()), "{name}"),
            Some(want) => {
                let err = got.expect_err(name);
                assert_eq!(err.to_string(), format!("ingress ns/ing: {want}"), "{name}");
            }
        }
    }
}
