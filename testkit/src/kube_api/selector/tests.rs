use serde_json::json;

use super::*;

fn labels(pairs: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), json!(v)))
        .collect();
    json!({"metadata": {"labels": map}})
}

#[test]
fn label_selectors_select_like_apimachinery() {
    let web_prod = labels(&[("app", "web"), ("env", "prod")]);
    let web_canary = labels(&[("app", "web"), ("env", "canary"), ("canary", "")]);
    let unlabelled = json!({"metadata": {}});
    let cases: &[(&str, [bool; 3])] = &[
        ("", [true, true, true]),
        ("app=web", [true, true, false]),
        ("app==web", [true, true, false]),
        ("app = web", [true, true, false]),
        ("app!=web", [false, false, true]),
        ("env in (prod, dev)", [true, false, false]),
        ("env in (prod,canary)", [true, true, false]),
        ("env notin (prod)", [false, true, true]),
        ("canary", [false, true, false]),
        ("!canary", [true, false, true]),
        ("app=web,env=prod", [true, false, false]),
        ("app=web,!canary", [true, false, false]),
        ("app=web,env in (canary,x),canary", [false, true, false]),
        ("example.com/tier=", [false, false, false]),
        ("app=web,", [true, true, false]),
    ];
    for (text, want) in cases {
        let selector = LabelSelector::parse(text).expect(text);
        let got = [&web_prod, &web_canary, &unlabelled].map(|o| selector.selects(o));
        assert_eq!(&got, want, "selector {text:?}");
    }
}

#[test]
fn malformed_label_selectors_are_rejected() {
    for text in [
        "=web",
        "app in web",
        "app in (a,b",
        "app)",
        "app=we b",
        "app>1",
        "a/b/c=x",
        "!",
    ] {
        assert!(LabelSelector::parse(text).is_err(), "{text:?} parsed");
    }
}

#[test]
fn field_selectors_cover_name_and_namespace() {
    let object = json!({"metadata": {"name": "web", "namespace": "prod"}});
    let cluster_scoped = json!({"metadata": {"name": "prod"}});
    let cases: &[(&str, [bool; 2])] = &[
        ("", [true, true]),
        ("metadata.name=web", [true, false]),
        ("metadata.name==web", [true, false]),
        ("metadata.name!=web", [false, true]),
        ("metadata.namespace=prod", [true, false]),
        ("metadata.namespace=", [false, true]),
        ("metadata.name=web,metadata.namespace!=dev", [true, false]),
    ];
    for (text, want) in cases {
        let selector = FieldSelector::parse(text).expect(text);
        let got = [&object, &cluster_scoped].map(|o| selector.selects(o));
        assert_eq!(&got, want, "selector {text:?}");
    }
}

#[test]
fn unsupported_fields_are_named_in_the_error() {
    assert_eq!(
        FieldSelector::parse("spec.nodeName=a"),
        Err(InvalidSelector::UnsupportedField(
            "spec.nodeName".to_owned()
        ))
    );
    assert!(FieldSelector::parse("metadata.name").is_err());
}
