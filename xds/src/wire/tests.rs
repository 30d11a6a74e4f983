use super::*;
use crate::model::{
    Backend, Certificate, Endpoints, Forward, HeaderMatch, HeaderValue, Protocol, ResponderSpec,
    RevisionPolicy, Route, RouteAction, RouteConfig, Split, Target, VirtualHost,
};
use std::collections::BTreeMap;

fn route_config() -> RouteConfig {
    let route = |id: &str, prefix: &str| Route {
        id: id.into(),
        path_prefix: prefix.into(),
        headers: vec![HeaderMatch {
            name: "knative-serving-tag".into(),
            exact: "v1".into(),
        }],
        action: RouteAction::Forward(Forward {
            rewrite_host: Some("hello.default.svc.cluster.local".into()),
            set_headers: vec![HeaderValue {
                name: "knative-serving-namespace".into(),
                value: "default".into(),
            }],
            splits: vec![
                Split {
                    backend: "default/hello-00001".into(),
                    weight: 90,
                    set_headers: vec![HeaderValue {
                        name: "knative-serving-revision".into(),
                        value: "hello-00001".into(),
                    }],
                },
                Split {
                    backend: "default/hello-00002".into(),
                    weight: 10,
                    set_headers: vec![],
                },
            ],
        }),
        https_redirect: false,
        probe_hash: Some("abc".into()),
    };
    let mut redirected = route("default/hello#0/1", "/api");
    redirected.https_redirect = true;
    redirected.headers.clear();
    let RouteAction::Forward(forward) = &mut redirected.action;
    forward.rewrite_host = None;
    RouteConfig {
        owner: "default/hello".into(),
        external: vec![VirtualHost {
            domains: vec!["hello.example.com".into(), "*".into()],
            routes: vec![redirected, route("default/hello#0/0", "/")],
        }],
        internal: vec![
            VirtualHost {
                domains: vec!["hello.default.svc.cluster.local".into()],
                routes: vec![route("default/hello#1/0", "/")],
            },
            VirtualHost {
                domains: vec!["hello.default.svc".into()],
                routes: vec![],
            },
        ],
    }
}

fn every_resource() -> Vec<Resource> {
    vec![
        Resource::RevisionPolicy(RevisionPolicy {
            container_concurrency: 1,
            max_buffered: 10,
            timeout_seconds: 300,
            response_start_timeout_seconds: Some(5),
            idle_timeout_seconds: None,
        }),
        Resource::RevisionPolicy(RevisionPolicy {
            container_concurrency: 0,
            max_buffered: 0,
            timeout_seconds: 0,
            response_start_timeout_seconds: None,
            idle_timeout_seconds: Some(0),
        }),
        Resource::Backend(Backend {
            protocol: Protocol::Http1,
            target: Target::Endpoints,
            revision: Some("default/hello-00001".into()),
        }),
        Resource::Backend(Backend {
            protocol: Protocol::H2c,
            target: Target::Dns {
                host: "example.com".into(),
                port: 443,
            },
            revision: None,
        }),
        Resource::Backend(Backend {
            protocol: Protocol::Http1,
            target: Target::Responder(ResponderSpec {
                status: 503,
                body_bytes: 1024,
                latency_ms: 20,
                message: "busy".into(),
            }),
            revision: None,
        }),
        Resource::Backend(Backend {
            protocol: Protocol::Http1,
            target: Target::Responder(ResponderSpec::default()),
            revision: None,
        }),
        Resource::Endpoints(Endpoints {
            addresses: vec![
                "10.0.0.1:8080".parse().expect("valid address"),
                "[fd00::1]:8012".parse().expect("valid address"),
            ],
        }),
        Resource::Endpoints(Endpoints::default()),
        Resource::Certificate(Certificate {
            secret: "default/hello-tls".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n".into(),
            external_hosts: vec!["*.example.com".into(), "hello.example.com".into()],
            internal_hosts: vec!["hello.default.svc".into()],
        }),
        Resource::RouteConfig(route_config()),
        Resource::RouteConfig(RouteConfig::default()),
    ]
}

/// Through bytes too, so the test covers what really crosses a socket.
fn over_the_wire<M: Message + Default>(message: M) -> M {
    M::decode(message.encode_to_vec().as_slice()).expect("a message we encoded decodes")
}

#[test]
fn every_resource_type_round_trips_through_any() {
    let resources = every_resource();
    let types: std::collections::BTreeSet<_> = resources.iter().map(Resource::type_).collect();
    assert_eq!(
        types.len(),
        ResourceType::ALL.len(),
        "the table covers every type"
    );
    for resource in resources {
        let any = over_the_wire(encode_resource(&resource));
        assert_eq!(any.type_url, resource.type_().type_url());
        let back = decode_resource(resource.type_(), &any).expect("decodes");
        assert_eq!(back, resource);
        assert_eq!(back.version(), resource.version());
    }
}

#[test]
fn any_of_another_type_is_refused() {
    let any = encode_resource(&Resource::Endpoints(Endpoints::default()));
    let error = decode_resource(ResourceType::Backend, &any).expect_err("type mismatch");
    assert_eq!(
        error.to_string(),
        "resource: type url \"type.googleapis.com/sluice.v1.Endpoints\" where \
         \"type.googleapis.com/sluice.v1.Backend\" was expected"
    );
}

fn any_of<M: Message>(type_: ResourceType, message: &M) -> Any {
    Any {
        type_url: type_.type_url().to_string(),
        value: message.encode_to_vec(),
    }
}

#[test]
fn invalid_resources_are_refused_with_a_message_naming_the_field() {
    let bad_endpoints = pb::Endpoints {
        addresses: vec!["10.0.0.1:80".into(), "x".into()],
    };
    let backend = |target, protocol: pb::Protocol| pb::Backend {
        protocol: protocol.into(),
        target,
        revision: None,
    };
    let cases: Vec<(ResourceType, Any, &str)> = vec![
        (
            ResourceType::Endpoints,
            any_of(ResourceType::Endpoints, &bad_endpoints),
            "endpoints: address \"x\" is not ip:port",
        ),
        (
            ResourceType::Backend,
            any_of(
                ResourceType::Backend,
                &backend(
                    Some(pb::backend::Target::Endpoints(pb::EndpointsTarget {})),
                    pb::Protocol::Unspecified,
                ),
            ),
            "backend: protocol 0 is neither http1 nor h2c",
        ),
        (
            ResourceType::Backend,
            any_of(ResourceType::Backend, &backend(None, pb::Protocol::Http1)),
            "backend: missing target",
        ),
        (
            ResourceType::Backend,
            any_of(
                ResourceType::Backend,
                &backend(
                    Some(pb::backend::Target::Dns(pb::Dns {
                        host: "example.com".into(),
                        port: 0,
                    })),
                    pb::Protocol::Http1,
                ),
            ),
            "backend: dns port 0 is not in 1..=65535",
        ),
        (
            ResourceType::Backend,
            any_of(
                ResourceType::Backend,
                &backend(
                    Some(pb::backend::Target::Dns(pb::Dns {
                        host: "example.com".into(),
                        port: 70000,
                    })),
                    pb::Protocol::H2c,
                ),
            ),
            "backend: dns port 70000 is not in 1..=65535",
        ),
        (
            ResourceType::Backend,
            any_of(
                ResourceType::Backend,
                &backend(
                    Some(pb::backend::Target::Responder(pb::ResponderSpec {
                        status: 70000,
                        ..Default::default()
                    })),
                    pb::Protocol::Http1,
                ),
            ),
            "backend: responder status 70000 is above 65535",
        ),
        (
            ResourceType::RouteConfig,
            any_of(
                ResourceType::RouteConfig,
                &pb::RouteConfig {
                    owner: "default/hello".into(),
                    external: vec![],
                    internal: vec![pb::VirtualHost {
                        domains: vec!["hello".into()],
                        routes: vec![pb::Route {
                            id: "default/hello#0/0".into(),
                            path_prefix: "/".into(),
                            ..Default::default()
                        }],
                    }],
                },
            ),
            "route default/hello#0/0: missing action",
        ),
    ];
    for (type_, any, want) in cases {
        let error = decode_resource(type_, &any).expect_err(want);
        assert_eq!(error.to_string(), want);
    }
    let garbage = Any {
        type_url: ResourceType::RouteConfig.type_url().to_string(),
        value: vec![0xff, 0xff, 0xff],
    };
    let error = decode_resource(ResourceType::RouteConfig, &garbage).expect_err("garbage");
    assert!(
        error.to_string().starts_with("routeConfig: "),
        "names the type: {error}"
    );
}

#[test]
fn ack_round_trips() {
    let ack = DeltaRequest {
        type_: Some(ResourceType::Backend),
        response_nonce: Some("abc-1".into()),
        ..DeltaRequest::default()
    };
    let wire = over_the_wire(envoy::DeltaDiscoveryRequest::from(ack.clone()));
    assert_eq!(wire.type_url, "type.googleapis.com/sluice.v1.Backend");
    assert_eq!(wire.response_nonce, "abc-1");
    assert!(wire.error_detail.is_none(), "an ACK has no error_detail");
    assert_eq!(DeltaRequest::try_from(wire), Ok(ack));
}

#[test]
fn nack_round_trips_with_its_rejected_resources() {
    let nack = DeltaRequest {
        type_: Some(ResourceType::Endpoints),
        response_nonce: Some("abc-2".into()),
        error: Some(Rejection::new(vec![
            RejectedResource {
                name: "default/a:80".into(),
                reason: "endpoints: address \"x\" is not ip:port".into(),
            },
            RejectedResource {
                name: "default/b:80".into(),
                reason: "unknown".into(),
            },
        ])),
        ..DeltaRequest::default()
    };
    let wire = over_the_wire(envoy::DeltaDiscoveryRequest::from(nack.clone()));
    let status = wire
        .error_detail
        .clone()
        .expect("a NACK carries error_detail");
    assert_eq!(status.code, NACK_CODE);
    assert_eq!(
        status.message,
        "default/a:80: endpoints: address \"x\" is not ip:port; default/b:80: unknown"
    );
    assert_eq!(status.details.len(), 1);
    assert_eq!(status.details[0].type_url, REJECTED_RESOURCES_TYPE_URL);
    assert_eq!(DeltaRequest::try_from(wire), Ok(nack));
}

#[test]
fn error_detail_without_details_is_still_a_nack() {
    let wire = envoy::DeltaDiscoveryRequest {
        type_url: ResourceType::RouteConfig.type_url().into(),
        response_nonce: "n-1".into(),
        error_detail: Some(rpc::Status {
            code: NACK_CODE,
            message: "resource x appears twice in one response".into(),
            details: vec![],
        }),
        ..Default::default()
    };
    let request = DeltaRequest::try_from(over_the_wire(wire)).expect("decodes");
    assert_eq!(
        request.error,
        Some(Rejection {
            message: "resource x appears twice in one response".into(),
            resources: vec![],
        })
    );
    // A whole-response rejection encodes the same way it decodes.
    let again = envoy::DeltaDiscoveryRequest::from(request);
    assert!(again.error_detail.expect("still a NACK").details.is_empty());
}

#[test]
fn nack_details_of_other_types_are_skipped_but_broken_ones_are_refused() {
    let mut status = rpc::Status::from(Rejection::new(vec![RejectedResource {
        name: "a".into(),
        reason: "bad".into(),
    }]));
    status.details.push(Any {
        type_url: "type.googleapis.com/google.rpc.DebugInfo".into(),
        value: vec![1, 2, 3],
    });
    let rejection = Rejection::try_from(status.clone()).expect("foreign details are skipped");
    assert_eq!(rejection.resources.len(), 1);
    status.details[0].value = vec![0xff];
    let error = Rejection::try_from(status).expect_err("broken list");
    assert!(
        error.to_string().starts_with("nack: rejected resources: "),
        "{error}"
    );
}

#[test]
fn opening_request_round_trips_with_node_and_initial_versions() {
    let opening = DeltaRequest {
        type_: Some(ResourceType::RevisionPolicy),
        node: Some(Node {
            id: "proxy-0".into(),
            metadata: BTreeMap::from([
                ("version".to_string(), "0.1.0".to_string()),
                ("listeners".to_string(), "http,https".to_string()),
            ]),
        }),
        subscribe: vec!["*".into()],
        unsubscribe: vec!["default/old".into()],
        initial_versions: BTreeMap::from([
            ("default/a".to_string(), "v1".to_string()),
            ("default/b".to_string(), "v2".to_string()),
        ]),
        response_nonce: None,
        error: None,
    };
    let wire = over_the_wire(envoy::DeltaDiscoveryRequest::from(opening.clone()));
    assert_eq!(
        wire.response_nonce, "",
        "a spontaneous request has no nonce"
    );
    assert_eq!(wire.node.as_ref().map(|n| n.id.as_str()), Some("proxy-0"));
    assert_eq!(DeltaRequest::try_from(wire), Ok(opening));
}

#[test]
fn request_for_an_unknown_type_decodes_with_no_type() {
    let wire = envoy::DeltaDiscoveryRequest {
        type_url: "type.googleapis.com/envoy.config.cluster.v3.Cluster".into(),
        resource_names_subscribe: vec!["*".into()],
        ..Default::default()
    };
    let request = DeltaRequest::try_from(wire).expect("decodes");
    assert_eq!(request.type_, None);
    assert_eq!(request.subscribe, vec!["*".to_string()]);
}

fn response() -> DeltaResponse {
    DeltaResponse {
        type_: ResourceType::Backend,
        nonce: "abc-7".into(),
        system_version: "42".into(),
        resources: every_resource()
            .into_iter()
            .filter(|r| r.type_() == ResourceType::Backend)
            .enumerate()
            .map(|(i, r)| NamedResource::new(format!("default/svc-{i}:80"), r))
            .collect(),
        removed: vec!["default/gone:80".into()],
        invalid: vec![],
        push_continues: false,
    }
}

#[test]
fn response_round_trips() {
    let response = response();
    assert!(response.resources.len() >= 3);
    let wire = over_the_wire(envoy::DeltaDiscoveryResponse::from(response.clone()));
    assert_eq!(wire.type_url, ResourceType::Backend.type_url());
    for resource in &wire.resources {
        let any = resource.resource.as_ref().expect("content");
        assert_eq!(
            any.type_url, wire.type_url,
            "Any type URLs match the response's"
        );
    }
    assert_eq!(DeltaResponse::try_from(wire), Ok(response));
}

#[test]
fn invalid_resources_in_a_response_land_in_invalid_while_the_rest_decode() {
    let mut wire = envoy::DeltaDiscoveryResponse::from(response());
    let valid = wire.resources.len();
    wire.resources.push(envoy::Resource {
        version: "v-bad".into(),
        resource: Some(Any {
            type_url: ResourceType::Backend.type_url().into(),
            value: vec![0xff, 0xff],
        }),
        name: "default/garbage:80".into(),
    });
    wire.resources.push(envoy::Resource {
        version: "v-other".into(),
        resource: Some(encode_resource(&Resource::Endpoints(Endpoints::default()))),
        name: "default/wrong-type:80".into(),
    });
    wire.resources.push(envoy::Resource {
        version: "v-none".into(),
        resource: None,
        name: "default/empty:80".into(),
    });
    wire.resources.push(envoy::Resource {
        version: "v-port".into(),
        resource: Some(any_of(
            ResourceType::Backend,
            &pb::Backend {
                protocol: pb::Protocol::Http1.into(),
                target: Some(pb::backend::Target::Dns(pb::Dns {
                    host: "example.com".into(),
                    port: 0,
                })),
                revision: None,
            },
        )),
        name: "default/port-zero:80".into(),
    });
    let decoded = DeltaResponse::try_from(over_the_wire(wire)).expect("the response decodes");
    assert_eq!(decoded.resources, response().resources, "valid ones decode");
    assert_eq!(decoded.resources.len(), valid);
    let names: Vec<&str> = decoded.invalid.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "default/garbage:80",
            "default/wrong-type:80",
            "default/empty:80",
            "default/port-zero:80"
        ]
    );
    assert_eq!(decoded.invalid[2].reason, "resource: missing content");
    assert_eq!(
        decoded.invalid[3].reason,
        "backend: dns port 0 is not in 1..=65535"
    );
    assert_eq!(decoded.removed, vec!["default/gone:80".to_string()]);
}

#[test]
fn response_without_a_version_gets_the_content_version() {
    let mut wire = envoy::DeltaDiscoveryResponse::from(response());
    for resource in &mut wire.resources {
        resource.version.clear();
    }
    let decoded = DeltaResponse::try_from(wire).expect("decodes");
    assert_eq!(decoded.resources, response().resources);
}

#[test]
fn response_of_an_unknown_type_is_refused_whole() {
    let mut wire = envoy::DeltaDiscoveryResponse::from(response());
    wire.type_url = "type.googleapis.com/sluice.v1.Nope".into();
    assert_eq!(
        DeltaResponse::try_from(wire),
        Err(InvalidWire::UnknownType(
            "type.googleapis.com/sluice.v1.Nope".into()
        ))
    );
}

#[test]
fn load_reports_and_pokes_round_trip_inside_proxy_messages() {
    let load = |revision: &str, concurrency: f64, requests: f64| RevisionLoad {
        revision: revision.into(),
        concurrency,
        requests,
        held: 3,
    };
    let messages = [
        ProxyMessage::Load(LoadReport {
            interval_ms: 1000,
            revisions: vec![load("default/a", 1.5, 12.0), load("default/b", 0.25, 1.0)],
        }),
        ProxyMessage::Load(LoadReport::default()),
        ProxyMessage::Poke(Poke {
            revisions: vec![load("default/cold", 3.0, 3.0)],
        }),
        ProxyMessage::Request(DeltaRequest {
            type_: Some(ResourceType::Certificate),
            subscribe: vec!["*".into()],
            ..DeltaRequest::default()
        }),
    ];
    for message in messages {
        let wire = over_the_wire(pb::ProxyMessage::from(message.clone()));
        assert_eq!(ProxyMessage::try_from(wire), Ok(message));
    }
}

#[test]
fn controller_messages_round_trip() {
    for push_continues in [false, true] {
        let message = ControllerMessage::Response(DeltaResponse {
            push_continues,
            ..response()
        });
        let wire = over_the_wire(pb::ControllerMessage::from(message.clone()));
        assert_eq!(ControllerMessage::try_from(wire), Ok(message));
    }
}

#[test]
fn stream_messages_with_nothing_set_are_invalid() {
    assert_eq!(
        ProxyMessage::try_from(pb::ProxyMessage { message: None }),
        Err(InvalidWire::Empty("proxy message"))
    );
    assert_eq!(
        ControllerMessage::try_from(pb::ControllerMessage {
            message: None,
            push_continues: false,
        })
        .map_err(|e| e.to_string()),
        Err("controller message: no message set".to_string())
    );
}
