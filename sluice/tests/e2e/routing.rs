//! Knative routing semantics end to end: hosts, visibility, paths, headers, splits, header
//! SET, rewriteHost, probes, forwarding headers.

use crate::support::*;
use sluice_testkit::{http1_request, EchoServer, H1Client, PROBE_HEADER};
use std::collections::BTreeMap;

#[tokio::test]
async fn host_matching_ignores_case_and_port_and_unknown_hosts_get_404() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let manifests = service("ns", "main", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "hello", "hello.example.com", "main", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "hello").await?;
    for host in [
        "hello.example.com",
        "HELLO.Example.com",
        "hello.example.com:80",
        "hello.example.com:8080",
    ] {
        let r = http1_request(gw.http, "GET", host, "/", &[], None).await?;
        assert_eq!(r.status, 200, "host {host}");
        assert_eq!(r.echo()?.name, "main");
    }
    let r = http1_request(gw.http, "GET", "other.example.com", "/", &[], None).await?;
    assert_eq!(r.status, 404);
    Ok(())
}

#[tokio::test]
async fn multiple_hosts_in_one_rule_all_route() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let hosts = [
        "x.foo.com",
        "x.www.foo.com",
        "x.a-b-1.something-really-really-long.knative.dev",
        "x.add.your.interesting.domain.here.io",
    ];
    let spec = format!(
        "  rules:\n  - hosts: [{}]\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: main, servicePort: 80}}]",
        hosts.join(", ")
    );
    let gw = Gateway::start(
        &(service("ns", "main", "http", 80, &[backend.addr()]) + &ingress("ns", "multi", &spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "multi").await?;
    for host in hosts {
        assert_eq!(
            http1_request(gw.http, "GET", host, "/", &[], None)
                .await?
                .status,
            200,
            "{host}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn cluster_local_hosts_are_served_only_on_the_internal_listener() -> anyhow::Result<()> {
    let backend = EchoServer::start("main").await?;
    let spec = "  rules:\n  - hosts: [priv.ns, priv.ns.svc, priv.ns.svc.cluster.local]\n    visibility: ClusterLocal\n    http:\n      paths:\n      - splits: [{serviceNamespace: ns, serviceName: main, servicePort: 80}]\n  - hosts: [pub.example.com]\n    visibility: ExternalIP\n    http:\n      paths:\n      - splits: [{serviceNamespace: ns, serviceName: main, servicePort: 80}]";
    let gw = Gateway::start(
        &(service("ns", "main", "http", 80, &[backend.addr()]) + &ingress("ns", "vis", spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "vis").await?;
    for host in ["priv.ns", "priv.ns.svc", "priv.ns.svc.cluster.local"] {
        assert_eq!(
            http1_request(gw.http, "GET", host, "/", &[], None)
                .await?
                .status,
            404,
            "external {host}"
        );
        assert_eq!(
            http1_request(gw.internal, "GET", host, "/", &[], None)
                .await?
                .status,
            200,
            "internal {host}"
        );
    }
    // ExternalIP rules are served on both listeners.
    assert_eq!(
        http1_request(gw.http, "GET", "pub.example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    assert_eq!(
        http1_request(gw.internal, "GET", "pub.example.com", "/", &[], None)
            .await?
            .status,
        200
    );
    Ok(())
}

/// Knative's `dispatch/path`: literal prefixes, catch-all last; unmatched gets 404.
#[tokio::test]
async fn paths_dispatch_by_prefix() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let split = |which: &str| {
        format!("[{{serviceNamespace: ns, serviceName: echo, servicePort: 80, appendHeaders: {{Which-Backend: {which}}}}}]")
    };
    let spec = format!(
        "  rules:\n  - hosts: [path.example.com]\n    http:\n      paths:\n      - path: /foo\n        splits: {}\n      - path: /bar\n        splits: {}\n      - path: /baz\n        splits: {}\n      - splits: {}\n  - hosts: [nocatchall.example.com]\n    http:\n      paths:\n      - path: /only\n        splits: {}",
        split("foo"), split("bar"), split("baz"), split("main"), split("only")
    );
    let gw = Gateway::start(
        &(service("ns", "echo", "http", 80, &[backend.addr()]) + &ingress("ns", "paths", &spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "paths").await?;
    for (path, want) in [
        ("/", "main"),
        ("/foo", "foo"),
        ("/foo/x?q=1", "foo"),
        ("/foobar", "foo"),
        ("/bar", "bar"),
        ("/baz", "baz"),
        ("/asdf", "main"),
    ] {
        let r = http1_request(gw.http, "GET", "path.example.com", path, &[], None).await?;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.echo()?.header("Which-Backend"), Some(want), "{path}");
    }
    let r = http1_request(
        gw.http,
        "GET",
        "nocatchall.example.com",
        "/other",
        &[],
        None,
    )
    .await?;
    assert_eq!(r.status, 404);
    Ok(())
}

/// Knative's `headers/tags`: exact header match; missing, empty or other values fall through.
#[tokio::test]
async fn tag_header_routes_to_tagged_path() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let spec = "  rules:\n  - hosts: [tags.example.com]\n    http:\n      paths:\n      - headers: {Knative-Serving-Tag: {exact: the-tag}}\n        splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80, appendHeaders: {Which-Backend: tag}}]\n      - appendHeaders: {Knative-Serving-Default-Route: \"true\"}\n        splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80, appendHeaders: {Which-Backend: no-tag}}]";
    let gw = Gateway::start(
        &(service("ns", "echo", "http", 80, &[backend.addr()]) + &ingress("ns", "tags", spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "tags").await?;
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("Knative-Serving-Tag", "the-tag")], "tag"),
        (&[], "no-tag"),
        (&[("Knative-Serving-Tag", "")], "no-tag"),
        (&[("Knative-Serving-Tag", "not-the-tag")], "no-tag"),
    ];
    for (headers, want) in cases {
        let r = http1_request(gw.http, "GET", "tags.example.com", "/", headers, None).await?;
        let echo = r.echo()?;
        assert_eq!(echo.header("Which-Backend"), Some(want), "{headers:?}");
        if want == "no-tag" {
            assert_eq!(echo.header("Knative-Serving-Default-Route"), Some("true"));
        }
    }
    Ok(())
}

/// Knative's `dispatch/percentage`: 1000 requests over weights 1,2,4,8,16,32,37,0,0,0; each share
/// within 10 points of its weight and 0% backends get nothing.
#[tokio::test]
async fn weighted_splits_follow_percentages_and_zero_gets_nothing() -> anyhow::Result<()> {
    let weights = [1u32, 2, 4, 8, 16, 32, 37, 0, 0, 0];
    let mut backends = Vec::new();
    let mut manifests = String::new();
    let mut splits = String::new();
    for (i, w) in weights.iter().enumerate() {
        let b = EchoServer::start(&format!("b{i}")).await?;
        manifests += &service("ns", &format!("b{i}"), "http", 80, &[b.addr()]);
        splits += &format!("\n        - {{serviceNamespace: ns, serviceName: b{i}, servicePort: 80, percent: {w}, appendHeaders: {{Foo-Bar-Baz: b{i}}}}}");
        backends.push(b);
    }
    let spec = format!("  rules:\n  - hosts: [split.example.com]\n    http:\n      paths:\n      - splits:{splits}");
    let gw = Gateway::start(&(manifests + &ingress("ns", "split", &spec))).await?;
    gw.wait_ingress_ready("ns", "split").await?;
    let total = 1000;
    let mut tasks = Vec::new();
    for worker in 0..8 {
        let addr = gw.http;
        tasks.push(tokio::spawn(async move {
            let mut client = H1Client::connect(addr).await?;
            let mut seen = BTreeMap::<String, u32>::new();
            for _ in (worker..total).step_by(8) {
                let r = client
                    .send(
                        "GET",
                        "split.example.com",
                        "/",
                        &[("Foo-Bar-Baz", "bogus")],
                        None,
                    )
                    .await?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
                let which = r
                    .echo()?
                    .header("Foo-Bar-Baz")
                    .unwrap_or("none")
                    .to_string();
                *seen.entry(which).or_default() += 1;
            }
            anyhow::Ok(seen)
        }));
    }
    let mut seen = BTreeMap::<String, u32>::new();
    for t in tasks {
        for (k, v) in t.await?? {
            *seen.entry(k).or_default() += v;
        }
    }
    assert_eq!(seen.values().sum::<u32>(), total as u32);
    assert!(
        !seen.contains_key("bogus"),
        "the split header must overwrite the client's: {seen:?}"
    );
    for (i, w) in weights.iter().enumerate() {
        let got = seen.get(&format!("b{i}")).copied().unwrap_or(0);
        if *w == 0 {
            assert_eq!(got, 0, "b{i} has 0%");
            assert_eq!(backends[i].requests(), 0, "b{i} has 0%");
        } else {
            let share = f64::from(got) * 100.0 / total as f64;
            assert!(
                (share - f64::from(*w)).abs() <= 10.0,
                "b{i}: {share}% vs {w}%"
            );
        }
    }
    Ok(())
}

/// Knative's `headers/pre-split` and `post-split`: SET semantics; split-level wins over path-level.
#[tokio::test]
async fn append_headers_overwrite_client_values() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let spec = "  rules:\n  - hosts: [hdr.example.com]\n    http:\n      paths:\n      - appendHeaders: {Foo-Bar-Baz: pre, Path-Only: path}\n        splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80, appendHeaders: {Foo-Bar-Baz: post}}]";
    let gw = Gateway::start(
        &(service("ns", "echo", "http", 80, &[backend.addr()]) + &ingress("ns", "hdr", spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "hdr").await?;
    for headers in [
        &[][..],
        &[("Foo-Bar-Baz", "bogus"), ("Path-Only", "bogus")][..],
    ] {
        let echo = http1_request(gw.http, "GET", "hdr.example.com", "/", headers, None)
            .await?
            .echo()?;
        assert_eq!(echo.header_values("Foo-Bar-Baz"), vec!["post"]);
        assert_eq!(echo.header_values("Path-Only"), vec!["path"]);
    }
    Ok(())
}

/// A header SET naming a forwarding header replaces the proxy's own value (which is then set
/// in the request's map, not written by the upstream client: one value, the SET's), at the
/// path and at the split level; the forwarding headers it does not name are still added.
#[tokio::test]
async fn append_headers_naming_forwarding_headers_win() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let spec = "  rules:\n  - hosts: [xf.example.com]\n    http:\n      paths:\n      - appendHeaders: {X-Forwarded-Proto: https}\n        splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80}]\n  - hosts: [xf-split.example.com]\n    http:\n      paths:\n      - splits: [{serviceNamespace: ns, serviceName: echo, servicePort: 80, appendHeaders: {X-Forwarded-Host: canonical.example}}]";
    let gw = Gateway::start(
        &(service("ns", "echo", "http", 80, &[backend.addr()]) + &ingress("ns", "xf", spec)),
    )
    .await?;
    gw.wait_ingress_ready("ns", "xf").await?;
    let path = http1_request(gw.http, "GET", "xf.example.com", "/", &[], None)
        .await?
        .echo()?;
    assert_eq!(path.header_values("X-Forwarded-Proto"), vec!["https"]);
    assert_eq!(
        path.header_values("X-Forwarded-Host"),
        vec!["xf.example.com"]
    );
    assert_eq!(path.header_values("X-Forwarded-For"), vec!["127.0.0.1"]);
    let split = http1_request(gw.http, "GET", "xf-split.example.com", "/", &[], None)
        .await?
        .echo()?;
    assert_eq!(
        split.header_values("X-Forwarded-Host"),
        vec!["canonical.example"]
    );
    assert_eq!(split.header_values("X-Forwarded-Proto"), vec!["http"]);
    assert_eq!(split.header_values("X-Forwarded-For"), vec!["127.0.0.1"]);
    Ok(())
}

/// Knative's `headers/probe`: `K-Network-Hash: override` is replaced by the ingress hash; any
/// other value reaches the backend untouched.
#[tokio::test]
async fn probe_requests_carry_the_ingress_hash() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "probed", "probe.example.com", "echo", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "probed").await?;
    // The hash the controller computes for this exact object (Go JSON of the defaulted spec).
    let spec = r#"{"rules":[{"hosts":["probe.example.com"],"visibility":"ExternalIP","http":{"paths":[{"splits":[{"serviceNamespace":"ns","serviceName":"echo","servicePort":80,"percent":100}]}]}}]}"#;
    let want = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(format!(
        "{spec}nsprobed"
    )));
    let r = http1_request(
        gw.http,
        "GET",
        "probe.example.com",
        "/",
        &[(PROBE_HEADER, "probe"), ("K-Network-Hash", "override")],
        None,
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("K-Network-Hash"), Some(want.as_str()));
    let random = "2701a1b241db6af811992c57a5e11171847148ac3d2e1a8cc992a62f9e4fa111";
    let r = http1_request(
        gw.http,
        "GET",
        "probe.example.com",
        "/",
        &[(PROBE_HEADER, "probe"), ("K-Network-Hash", random)],
        None,
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("K-Network-Hash"), Some(random));
    Ok(())
}

/// Forwarding headers like an Envoy edge proxy; trace context passes through untouched.
#[tokio::test]
async fn forwarding_headers_are_set_and_trace_headers_pass() -> anyhow::Result<()> {
    let backend = EchoServer::start("echo").await?;
    let manifests = service("ns", "echo", "http", 80, &[backend.addr()])
        + &simple_ingress("ns", "fwd", "fwd.example.com", "echo", "80");
    let gw = Gateway::start(&manifests).await?;
    gw.wait_ingress_ready("ns", "fwd").await?;
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let echo = http1_request(
        gw.http,
        "GET",
        "fwd.example.com",
        "/",
        &[
            ("traceparent", trace),
            ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("X-Forwarded-For", "203.0.113.7"),
        ],
        None,
    )
    .await?
    .echo()?;
    assert_eq!(
        echo.header("X-Forwarded-For"),
        Some("203.0.113.7, 127.0.0.1")
    );
    assert_eq!(echo.header("X-Forwarded-Proto"), Some("http"));
    assert_eq!(echo.header("X-Forwarded-Host"), Some("fwd.example.com"));
    assert_eq!(echo.header("Traceparent"), Some(trace));
    assert_eq!(
        echo.header("X-B3-Traceid"),
        Some("80f198ee56343ba864fe8b2a57d3eff7")
    );
    assert_eq!(echo.request.host, "fwd.example.com");
    Ok(())
}

/// Knative's `host-rewrite`: a vanity host rewritten to a cluster-local host, through an
/// ExternalName Service that points back at the gateway's internal listener. (In a cluster the
/// ExternalName port is 80 and the internal Service maps it; here the port is the listener's.)
#[tokio::test]
async fn rewrite_host_reaches_cluster_local_route_through_external_name() -> anyhow::Result<()> {
    let backend = EchoServer::start("runtime").await?;
    let internal_port = sluice_testkit::free_port();
    let private = "target.ns.svc.cluster.local";
    let spec_private = format!(
        "  rules:\n  - hosts: [{private}]\n    visibility: ClusterLocal\n    http:\n      paths:\n      - splits: [{{serviceNamespace: ns, serviceName: runtime, servicePort: 80}}]"
    );
    let spec_vanity = format!(
        "  rules:\n  - hosts: [x.vanity.ismy.name, x.vanity.isalsomy.number]\n    visibility: ExternalIP\n    http:\n      paths:\n      - rewriteHost: {private}\n        splits: [{{serviceNamespace: ns, serviceName: to-internal, servicePort: {internal_port}}}]"
    );
    let external_name = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: to-internal, namespace: ns}}\nspec:\n  type: ExternalName\n  externalName: localhost\n  ports: [{{name: http2, port: {internal_port}, appProtocol: kubernetes.io/h2c}}]\n---\n"
    );
    let manifests = service("ns", "runtime", "http", 80, &[backend.addr()])
        + &external_name
        + &ingress("ns", "private", &spec_private)
        + &ingress("ns", "vanity", &spec_vanity);
    let gw = Gateway::start_with(
        &manifests,
        &["--internal-http", &format!("127.0.0.1:{internal_port}")],
    )
    .await?;
    gw.wait_ingress_ready("ns", "vanity").await?;
    for host in ["x.vanity.ismy.name", "x.vanity.isalsomy.number"] {
        let r = http1_request(gw.http, "GET", host, "/", &[], None).await?;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
        let echo = r.echo()?;
        assert_eq!(echo.name, "runtime");
        assert_eq!(echo.request.host, private);
    }
    Ok(())
}
