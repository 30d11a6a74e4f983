//! Manifest parsing and translation: any text parses without panicking; what it yields
//! translates the same way twice; every RouteConfig translation emits is one a proxy can
//! compile (header names and values, rewrite hosts and probe hashes as the proxy parses them,
//! with `http`), and its hosts are normalised.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sluice_controller::manifest::parse_file;
use sluice_controller::store::Store;
use sluice_controller::translate::Translator;
use sluice_controller::TranslateConfig;
use sluice_xds::cache::Change;
use sluice_xds::host::normalized;
use sluice_xds::{Resource, RouteAction};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = parse_file("fuzz.yaml".to_string(), text);
    let mut store = Store::new();
    for object in file.objects {
        store.upsert(object);
    }
    let changes = store.all_as_changes();
    let first = Translator::new(TranslateConfig::default()).update(&store, &changes);
    let second = Translator::new(TranslateConfig::default()).update(&store, &changes);
    assert_eq!(
        format!("{:?}", first.resources),
        format!("{:?}", second.resources),
        "translation is deterministic"
    );
    for change in &first.resources {
        let Change::Put(named) = change else { continue };
        assert_eq!(named.version, named.resource.version());
        let Resource::RouteConfig(config) = &*named.resource else {
            continue;
        };
        for vhost in config.external.iter().chain(&config.internal) {
            for domain in &vhost.domains {
                assert_eq!(&normalized(domain), domain, "{}: host", named.name);
            }
            for route in &vhost.routes {
                let RouteAction::Forward(forward) = &route.action;
                let pairs = route
                    .headers
                    .iter()
                    .map(|m| (&m.name, &m.exact))
                    .chain(forward.set_headers.iter().map(|h| (&h.name, &h.value)))
                    .chain(
                        forward
                            .splits
                            .iter()
                            .flat_map(|s| s.set_headers.iter().map(|h| (&h.name, &h.value))),
                    );
                for (name, value) in pairs {
                    assert!(
                        http::HeaderName::from_bytes(name.as_bytes()).is_ok(),
                        "{}: header name {name:?} would be NACKed",
                        route.id
                    );
                    assert!(
                        http::HeaderValue::from_str(value).is_ok(),
                        "{}: header value {value:?} would be NACKed",
                        route.id
                    );
                }
                for value in forward.rewrite_host.iter().chain(&route.probe_hash) {
                    assert!(
                        http::HeaderValue::from_str(value).is_ok(),
                        "{}: {value:?} would be NACKed",
                        route.id
                    );
                }
            }
        }
    }
});
