use super::*;

fn route_config() -> RouteConfig {
    RouteConfig {
        owner: "default/hello".into(),
        external: vec![VirtualHost {
            domains: vec!["hello.example.com".into()],
            routes: vec![Route {
                id: "default/hello#0/0".into(),
                path_prefix: "/".into(),
                headers: vec![HeaderMatch {
                    name: "knative-serving-tag".into(),
                    exact: "v1".into(),
                }],
                action: RouteAction::Forward(Forward {
                    rewrite_host: None,
                    set_headers: vec![],
                    splits: vec![Split {
                        backend: "default/hello:80".into(),
                        weight: 100,
                        set_headers: vec![],
                    }],
                }),
                https_redirect: true,
                probe_hash: None,
            }],
        }],
        internal: vec![],
    }
}

#[test]
fn version_is_a_content_hash() {
    let a = Resource::RouteConfig(route_config());
    let b = Resource::RouteConfig(route_config());
    assert_eq!(a.version(), b.version());
    assert_eq!(a.version().len(), 64);
    let mut changed = route_config();
    changed.owner = "default/other".into();
    assert_ne!(a.version(), Resource::RouteConfig(changed).version());
    // The same JSON under another type is another version.
    let empty_endpoints = Resource::Endpoints(Endpoints::default());
    let empty_routes = Resource::RouteConfig(RouteConfig::default());
    assert_ne!(empty_endpoints.version(), empty_routes.version());
}

#[test]
fn resources_round_trip_through_json() {
    let resources = [
        Resource::RouteConfig(route_config()),
        Resource::Backend(Backend {
            protocol: Protocol::H2c,
            target: Target::Dns {
                host: "example.com".into(),
                port: 443,
            },
            revision: Some("ns/rev".into()),
        }),
        Resource::Endpoints(Endpoints {
            addresses: vec!["127.0.0.1:8080".parse().expect("valid address")],
        }),
        Resource::RevisionPolicy(RevisionPolicy {
            container_concurrency: 1,
            max_buffered: 10,
            timeout_seconds: 300,
            response_start_timeout_seconds: Some(5),
            idle_timeout_seconds: None,
        }),
    ];
    for resource in resources {
        let json = serde_json::to_string(&resource).expect("serialises");
        let back: Resource = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, resource);
        assert_eq!(back.version(), resource.version());
    }
}

#[test]
fn type_urls_round_trip_and_follow_push_order() {
    for type_ in ResourceType::ALL {
        assert_eq!(ResourceType::from_type_url(type_.type_url()), Some(type_));
        assert_eq!(ResourceType::ALL[type_.index()], type_);
    }
    assert!(ResourceType::Backend < ResourceType::RouteConfig);
    assert_eq!(
        ResourceType::from_type_url("type.googleapis.com/other"),
        None
    );
}

#[test]
fn certificate_debug_never_shows_the_key() {
    let certificate = Certificate {
        secret: "ns/tls".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----".into(),
        key_pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        external_hosts: vec!["a.example.com".into()],
        internal_hosts: vec![],
    };
    let shown = format!("{certificate:?}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains("<redacted>"));
}
