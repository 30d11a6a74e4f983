use super::*;

/// A self-signed pair for `hosts`, parsed.
fn generated(hosts: &[&str]) -> Arc<CertifiedKey> {
    let key =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    Arc::new(
        sluice_xds::tls::certified_key(&key.cert.pem(), &key.signing_key.serialize_pem())
            .expect("valid"),
    )
}

fn leaf(key: Option<&Arc<CertifiedKey>>) -> Option<Vec<u8>> {
    key.map(|k| k.cert[0].as_ref().to_vec())
}

fn hosts(names: &[&str]) -> Vec<String> {
    names.iter().map(|h| h.to_string()).collect()
}

fn external<'a>(names: &'a [String], key: &'a Arc<CertifiedKey>) -> ServedCertificate<'a> {
    ServedCertificate {
        external_hosts: names,
        internal_hosts: &[],
        key,
    }
}

#[test]
fn sni_lookup_prefers_exact_then_wildcard_then_default() {
    let (exact_names, wild_names) = (hosts(&["a.example.com"]), hosts(&["*.example.com"]));
    let exact = generated(&["a.example.com"]);
    let wildcard = generated(&["*.example.com"]);
    let default = generated(&["default.invalid"]);
    let certificates = Certificates::new(Some(default.clone()));
    certificates.apply(&[
        external(&exact_names, &exact),
        external(&wild_names, &wildcard),
    ]);
    let table = certificates.external.table();
    let cases = [
        (Some("a.example.com"), &exact),
        (Some("A.Example.COM."), &exact),
        (Some("b.example.com"), &wildcard),
        // A wildcard covers exactly one label.
        (Some("x.b.example.com"), &default),
        (Some("example.com"), &default),
        (None, &default),
    ];
    for (sni, want) in cases {
        assert_eq!(leaf(table.lookup(sni)), leaf(Some(want)), "{sni:?}");
    }
}

#[test]
fn without_a_default_unknown_names_get_nothing() {
    let names = hosts(&["a.example.com"]);
    let key = generated(&["a.example.com"]);
    let certificates = Certificates::new(None);
    certificates.apply(&[external(&names, &key)]);
    let table = certificates.external.table();
    assert!(table.lookup(Some("a.example.com")).is_some());
    assert!(table.lookup(Some("b.example.com")).is_none());
    assert!(table.lookup(None).is_none());
}

#[test]
fn each_listener_set_serves_its_own_names_and_the_first_certificate_wins() {
    let (shared, both, local) = (
        hosts(&["shared.example.com"]),
        hosts(&["shared.example.com", "newer.example.com"]),
        hosts(&["local.ns.svc.cluster.local"]),
    );
    let (older, newer, internal) = (
        generated(&["shared.example.com"]),
        generated(&["shared.example.com", "newer.example.com"]),
        generated(&["local.ns.svc.cluster.local"]),
    );
    let certificates = Certificates::new(None);
    certificates.apply(&[
        external(&shared, &older),
        external(&both, &newer),
        ServedCertificate {
            external_hosts: &[],
            internal_hosts: &local,
            key: &internal,
        },
    ]);
    let ext = certificates.external.table();
    let int = certificates.internal.table();
    assert_eq!(
        leaf(ext.lookup(Some("shared.example.com"))),
        leaf(Some(&older))
    );
    assert_eq!(
        leaf(ext.lookup(Some("newer.example.com"))),
        leaf(Some(&newer))
    );
    assert!(ext.lookup(Some("local.ns.svc.cluster.local")).is_none());
    assert_eq!(
        leaf(int.lookup(Some("local.ns.svc.cluster.local"))),
        leaf(Some(&internal))
    );
    assert!(int.lookup(Some("shared.example.com")).is_none());
}
