use super::*;

fn generated(hosts: &[&str], secret: &str) -> Certificate {
    let key =
        rcgen::generate_simple_self_signed(hosts.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .expect("rcgen");
    Certificate {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        external: true,
        internal: false,
        secret: secret.to_string(),
        cert_pem: key.cert.pem(),
        key_pem: key.signing_key.serialize_pem(),
    }
}

fn leaf(key: Option<&Arc<CertifiedKey>>) -> Option<Vec<u8>> {
    key.map(|k| k.cert[0].as_ref().to_vec())
}

fn leaf_of(certificate: &Certificate) -> Vec<u8> {
    sluice_controller::translate::tls::certified_key(&certificate.cert_pem, &certificate.key_pem)
        .expect("valid")
        .cert[0]
        .as_ref()
        .to_vec()
}

#[test]
fn sni_lookup_prefers_exact_then_wildcard_then_default() {
    let exact = generated(&["a.example.com"], "ns/a");
    let wildcard = generated(&["*.example.com"], "ns/wild");
    let default_pair = generated(&["default.invalid"], "");
    let default = Arc::new(
        sluice_controller::translate::tls::certified_key(
            &default_pair.cert_pem,
            &default_pair.key_pem,
        )
        .expect("valid"),
    );
    let certificates = Certificates::new(Some(default));
    certificates.apply(&[exact.clone(), wildcard.clone()]);
    let table = certificates.external.table();
    let cases = [
        (Some("a.example.com"), Some(leaf_of(&exact))),
        (Some("A.Example.COM."), Some(leaf_of(&exact))),
        (Some("b.example.com"), Some(leaf_of(&wildcard))),
        // A wildcard covers exactly one label.
        (Some("x.b.example.com"), Some(leaf_of(&default_pair))),
        (Some("example.com"), Some(leaf_of(&default_pair))),
        (None, Some(leaf_of(&default_pair))),
    ];
    for (sni, want) in cases {
        assert_eq!(leaf(table.lookup(sni)), want, "{sni:?}");
    }
}

#[test]
fn without_a_default_unknown_names_get_nothing() {
    let certificates = Certificates::new(None);
    certificates.apply(&[generated(&["a.example.com"], "ns/a")]);
    let table = certificates.external.table();
    assert!(table.lookup(Some("a.example.com")).is_some());
    assert!(table.lookup(Some("b.example.com")).is_none());
    assert!(table.lookup(None).is_none());
}

#[test]
fn visibility_decides_the_listener_set_and_the_first_certificate_wins() {
    let older = generated(&["shared.example.com"], "ns/older");
    let newer = generated(&["shared.example.com", "newer.example.com"], "ns/newer");
    let internal = Certificate {
        external: false,
        internal: true,
        ..generated(&["local.ns.svc.cluster.local"], "ns/local")
    };
    let certificates = Certificates::new(None);
    certificates.apply(&[older.clone(), newer.clone(), internal.clone()]);
    let external = certificates.external.table();
    let local = certificates.internal.table();
    assert_eq!(
        leaf(external.lookup(Some("shared.example.com"))),
        Some(leaf_of(&older))
    );
    assert_eq!(
        leaf(external.lookup(Some("newer.example.com"))),
        Some(leaf_of(&newer))
    );
    assert!(external
        .lookup(Some("local.ns.svc.cluster.local"))
        .is_none());
    assert_eq!(
        leaf(local.lookup(Some("local.ns.svc.cluster.local"))),
        Some(leaf_of(&internal))
    );
    assert!(local.lookup(Some("shared.example.com")).is_none());
}

#[test]
fn unchanged_certificates_are_not_parsed_again_and_bad_ones_are_skipped() {
    let good = generated(&["a.example.com"], "ns/a");
    let bad = Certificate {
        key_pem: "not a key".into(),
        ..generated(&["b.example.com"], "ns/b")
    };
    let certificates = Certificates::new(None);
    certificates.apply(&[good.clone(), bad]);
    let first = certificates
        .external
        .table()
        .lookup(Some("a.example.com"))
        .cloned()
        .expect("good certificate served");
    assert!(certificates
        .external
        .table()
        .lookup(Some("b.example.com"))
        .is_none());
    certificates.apply(std::slice::from_ref(&good));
    let second = certificates
        .external
        .table()
        .lookup(Some("a.example.com"))
        .cloned()
        .expect("still served");
    assert!(Arc::ptr_eq(&first, &second), "parsed once, reused");
    // Rotation: new content under the same Secret is parsed and replaces the old.
    let rotated = generated(&["a.example.com"], "ns/a");
    certificates.apply(std::slice::from_ref(&rotated));
    assert_eq!(
        leaf(certificates.external.table().lookup(Some("a.example.com"))),
        Some(leaf_of(&rotated))
    );
}
