//! The route matcher, through the proxy's own catalog: a RouteConfig built from the input is
//! applied, then requests are routed. The catalog accepts exactly the configs whose header
//! names and values parse; a request's route is the one a plain reference model picks (exact
//! host, else `*`, then the first route whose prefix and exact header matches hold); routing is
//! stable, and a normalised host routes like its normalised self.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use sluice_proxy::activator::HeldTotal;
use sluice_proxy::catalog::Catalog;
use sluice_proxy::metrics::Metrics;
use sluice_proxy::router::Listener;
use sluice_xds::host::{normalize, MAX_HOST};
use sluice_xds::protocol::{DeltaResponse, NamedResource};
use sluice_xds::{
    Forward, HeaderMatch, Resource, ResourceType, Route, RouteAction, RouteConfig, Split,
    VirtualHost,
};
use std::sync::Arc;

const HOSTS: &[&str] = &["a.example", "b.example", "*", "A.example.", "a.example:80"];
const NAMES: &[&str] = &["x-a", "x-b", "k-network-hash", "X-A"];
const VALUES: &[&str] = &["1", "2", "override", ""];
const PATHS: &[&str] = &["/", "/a", "/a/b", "/b", "", "/a/"];

/// Mostly a known string (so matches happen), sometimes anything.
fn pick(u: &mut Unstructured<'_>, known: &[&str]) -> Result<String> {
    if u.ratio(1, 8)? {
        u.arbitrary()
    } else {
        Ok(u.choose(known)?.to_string())
    }
}

fn table(u: &mut Unstructured<'_>, next_id: &mut usize) -> Result<Vec<VirtualHost>> {
    let mut used = Vec::new();
    let mut vhosts = Vec::new();
    for _ in 0..u.int_in_range(0..=3)? {
        let mut domains = Vec::new();
        for _ in 0..u.int_in_range(1..=2)? {
            // Translation gives each host to one virtual host per table.
            let domain = sluice_xds::host::normalized(&pick(u, HOSTS)?);
            if !used.contains(&domain) {
                used.push(domain.clone());
                domains.push(domain);
            }
        }
        let mut routes = Vec::new();
        for _ in 0..u.int_in_range(0..=4)? {
            *next_id += 1;
            let mut headers = Vec::new();
            for _ in 0..u.int_in_range(0..=2)? {
                headers.push(HeaderMatch {
                    name: pick(u, NAMES)?.to_ascii_lowercase(),
                    exact: pick(u, VALUES)?,
                });
            }
            routes.push(Route {
                id: format!("ns/fuzz#{next_id}"),
                path_prefix: pick(u, PATHS)?,
                headers,
                action: RouteAction::Forward(Forward {
                    rewrite_host: None,
                    set_headers: Vec::new(),
                    splits: vec![Split {
                        backend: "ns/svc:80".to_string(),
                        weight: 100,
                        set_headers: Vec::new(),
                    }],
                }),
                https_redirect: false,
                probe_hash: None,
            });
        }
        if !domains.is_empty() {
            vhosts.push(VirtualHost { domains, routes });
        }
    }
    Ok(vhosts)
}

/// What the route should be, by the plain rules.
fn reference<'a>(
    vhosts: &'a [VirtualHost],
    host: &str,
    path: &str,
    headers: &http::HeaderMap,
) -> Option<&'a str> {
    let named = |name: &str| vhosts.iter().find(|v| v.domains.iter().any(|d| d == name));
    let vhost = named(host).or_else(|| named("*"))?;
    vhost
        .routes
        .iter()
        .find(|r| {
            path.starts_with(r.path_prefix.as_str())
                && r.headers.iter().all(|m| {
                    headers
                        .get(m.name.as_str())
                        .is_some_and(|v| v.as_bytes() == m.exact.as_bytes())
                })
        })
        .map(|r| r.id.as_str())
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let mut next_id = 0;
    let config = RouteConfig {
        owner: "ns/fuzz".to_string(),
        external: table(u, &mut next_id)?,
        internal: table(u, &mut next_id)?,
    };
    let compiles = config
        .external
        .iter()
        .chain(&config.internal)
        .flat_map(|v| &v.routes)
        .flat_map(|r| &r.headers)
        .all(|m| {
            http::HeaderName::from_bytes(m.name.as_bytes()).is_ok()
                && http::HeaderValue::from_str(&m.exact).is_ok()
        });
    let metrics = Arc::new(Metrics::new(Default::default()).expect("fresh registry"));
    let mut catalog = Catalog::new(metrics, 10, HeldTotal::new(20));
    let outcome = catalog.apply(&[DeltaResponse {
        type_: ResourceType::RouteConfig,
        nonce: "1".to_string(),
        system_version: String::new(),
        resources: vec![NamedResource::new(
            "ns/fuzz",
            Resource::RouteConfig(config.clone()),
        )],
        removed: Vec::new(),
        invalid: Vec::new(),
        push_continues: false,
    }]);
    assert_eq!(
        outcome.results[0].is_ok(),
        compiles,
        "accepted exactly when every header parses: {:?}",
        outcome.results[0]
    );
    if !compiles {
        return Ok(());
    }
    let router = catalog.router();

    for _ in 0..u.int_in_range(1..=4)? {
        let external = u.arbitrary::<bool>()?;
        let raw_host = pick(u, HOSTS)?;
        let path = pick(u, PATHS)?;
        let mut headers = http::HeaderMap::new();
        for _ in 0..u.int_in_range(0..=3)? {
            let (name, value) = (pick(u, NAMES)?, pick(u, VALUES)?);
            if let (Ok(name), Ok(value)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(&value),
            ) {
                headers.append(name, value);
            }
        }
        let mut buf = [0u8; MAX_HOST];
        let Some(host) = normalize(&raw_host, &mut buf) else {
            continue;
        };
        let host = host.to_string();
        let (listener, vhosts) = if external {
            (Listener::External, &config.external)
        } else {
            (Listener::Internal, &config.internal)
        };
        let got = router
            .route(listener, &host, &path, &headers)
            .map(|r| r.id.to_string());
        assert_eq!(
            got.as_deref(),
            reference(vhosts, &host, &path, &headers),
            "{listener:?} {host:?} {path:?} {headers:?}"
        );
        let again = router
            .route(listener, &host, &path, &headers)
            .map(|r| r.id.to_string());
        assert_eq!(got, again, "stable");
        let mut buf2 = [0u8; MAX_HOST];
        let twice = normalize(&host, &mut buf2).expect("a normalised host fits");
        let renormalised = router
            .route(listener, twice, &path, &headers)
            .map(|r| r.id.to_string());
        assert_eq!(got, renormalised, "normalised twice");
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
