use super::*;

/// §2.2 of the networking contract: (namespace, name, exact spec JSON, sha256).
const VECTORS: &[(&str, &str, &str, &str, &str)] = &[
    (
        "A",
        "",
        "",
        r#"{"rules":[{"hosts":["example.com"],"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"blah","servicePort":0}]}]}}]}"#,
        "a25000a350642c8abef53078b329bd043e18758f6063c1172d53b04e14fcf5c1",
    ),
    (
        "B",
        "",
        "",
        r#"{"rules":[{"hosts":["example.com"],"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"blah","servicePort":0,"appendHeaders":{"Foo":"bar"}}]}]}}]}"#,
        "6b652c7abed871354affd4a9cb699d33816f24541fac942149b91ad872fe63ca",
    ),
    (
        "V1",
        "default",
        "hello",
        r#"{"rules":[{"hosts":["hello.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceNamespace":"default","serviceName":"hello","servicePort":80,"percent":100}]}]}}],"httpOption":"Enabled"}"#,
        "0340cd6c6c4c2a4807b077166f4720a6c34b7e3f520023ab01cf1c9ec70db52d",
    ),
    (
        "V3",
        "ns",
        "x",
        r#"{"rules":[{"hosts":["x.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceNamespace":"ns","serviceName":"a","servicePort":81,"percent":50},{"serviceNamespace":"ns","serviceName":"b","servicePort":81,"percent":50}]}]}}]}"#,
        "a14bc8f8ededba58b4ad9289a98ae590e24d61c848ba13f4047f8f346e2ee36e",
    ),
    (
        "escaping",
        "default",
        "hello",
        r#"{"tls":[{"hosts":["hello.default.example.com"],"secretName":"route-abc","secretNamespace":"default"}],"rules":[{"hosts":["hello.default","hello.default.svc","hello.default.svc.cluster.local"],"visibility":"ClusterLocal","http":{"paths":[{"splits":[{"serviceNamespace":"default","serviceName":"hello-00001","servicePort":80,"percent":100,"appendHeaders":{"Knative-Serving-Namespace":"default","Knative-Serving-Revision":"hello-00001"}}]}]}},{"hosts":["hello.default.example.com"],"visibility":"ExternalIP","http":{"paths":[{"headers":{"Knative-Serving-Tag":{"exact":"v1"}},"splits":[{"serviceNamespace":"default","serviceName":"hello-00001","servicePort":80,"percent":100}]},{"path":"/a\u0026b\u003cc\u003e","splits":[{"serviceNamespace":"default","serviceName":"hello-00002","servicePort":"http","percent":60},{"serviceNamespace":"default","serviceName":"hello-00001","servicePort":80,"percent":40}],"appendHeaders":{"Knative-Serving-Default-Route":"true"}}]}}],"httpOption":"Redirected"}"#,
        "767128d818360634db1ff58568802705aee7491ec7e68bab21fcf59853c134a2",
    ),
];

#[test]
fn contract_vectors_round_trip_byte_for_byte_and_hash() {
    for (vector, namespace, name, json, want) in VECTORS {
        let spec: IngressSpec = serde_json::from_str(json).expect("vector parses");
        assert_eq!(&spec_go_json(&spec), json, "vector {vector}: Go JSON");
        assert_eq!(
            &ingress_hash(namespace, name, &spec),
            want,
            "vector {vector}: hash"
        );
    }
}

#[test]
fn hash_ignores_map_order_but_not_slice_order() {
    let a = r#"{"rules":[{"hosts":["a","b"],"http":{"paths":[{"splits":[{"serviceNamespace":"n","serviceName":"s","servicePort":80,"appendHeaders":{"X":"1","Y":"2"}}]}]}}]}"#;
    let map_reordered = r#"{"rules":[{"hosts":["a","b"],"http":{"paths":[{"splits":[{"serviceNamespace":"n","serviceName":"s","servicePort":80,"appendHeaders":{"Y":"2","X":"1"}}]}]}}]}"#;
    let slice_reordered = r#"{"rules":[{"hosts":["b","a"],"http":{"paths":[{"splits":[{"serviceNamespace":"n","serviceName":"s","servicePort":80,"appendHeaders":{"X":"1","Y":"2"}}]}]}}]}"#;
    let hash = |json: &str| {
        let spec: IngressSpec = serde_json::from_str(json).expect("parses");
        ingress_hash("n", "i", &spec)
    };
    assert_eq!(hash(a), hash(map_reordered));
    assert_ne!(hash(a), hash(slice_reordered));
}

#[test]
fn nil_and_empty_lists_marshal_differently() {
    let cases = [
        (
            r#"{"rules":[{"http":{}}]}"#,
            r#"{"rules":[{"http":{"paths":null}}]}"#,
        ),
        (
            r#"{"rules":[{"http":{"paths":null}}]}"#,
            r#"{"rules":[{"http":{"paths":null}}]}"#,
        ),
        (
            r#"{"rules":[{"http":{"paths":[]}}]}"#,
            r#"{"rules":[{"http":{"paths":[]}}]}"#,
        ),
        (
            r#"{"rules":[{"http":{"paths":[{}]}}]}"#,
            r#"{"rules":[{"http":{"paths":[{"splits":null}]}}]}"#,
        ),
        (
            r#"{"rules":[{"http":{"paths":[{"splits":[]}]}}]}"#,
            r#"{"rules":[{"http":{"paths":[{"splits":[]}]}}]}"#,
        ),
        // omitempty fields vanish whether absent, null or empty.
        (
            r#"{"tls":[],"rules":[{"hosts":[],"http":null}],"httpOption":""}"#,
            r#"{"rules":[{}]}"#,
        ),
        (r#"{"tls":[{}]}"#, r#"{"tls":[{}]}"#),
        (r#"{}"#, r#"{}"#),
        // The inline backend fields are always written, a zero percent never.
        (
            r#"{"rules":[{"http":{"paths":[{"headers":{"A":{}},"splits":[{"percent":0}]}]}}]}"#,
            r#"{"rules":[{"http":{"paths":[{"headers":{"A":{"exact":""}},"splits":[{"serviceNamespace":"","serviceName":"","servicePort":0}]}]}}]}"#,
        ),
        (
            r#"{"rules":[{"http":{"paths":[{"splits":[{"servicePort":"80"}]}]}}]}"#,
            r#"{"rules":[{"http":{"paths":[{"splits":[{"serviceNamespace":"","serviceName":"","servicePort":"80"}]}]}}]}"#,
        ),
    ];
    for (input, want) in cases {
        let spec: IngressSpec = serde_json::from_str(input).expect("parses");
        assert_eq!(spec_go_json(&spec), want, "input {input}");
    }
}

#[test]
fn strings_escape_like_go() {
    let cases = [
        ("plain", r#""plain""#),
        ("quote\"back\\slash", r#""quote\"back\\slash""#),
        ("nl\ncr\rtab\t", r#""nl\ncr\rtab\t""#),
        ("\u{8}\u{c}", r#""\b\f""#),
        ("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#),
        (
            "<a href='x'>&</a>",
            r#""\u003ca href='x'\u003e\u0026\u003c/a\u003e""#,
        ),
        ("\u{2028}\u{2029}", r#""\u2028\u2029""#),
        ("\u{7f}", "\"\u{7f}\""),
        ("héllo ☃ 😀", "\"héllo ☃ 😀\""),
        ("/path?q=1", r#""/path?q=1""#),
    ];
    for (input, want) in cases {
        let mut out = String::new();
        write_str(&mut out, input);
        assert_eq!(out, want, "input {input:?}");
    }
}
