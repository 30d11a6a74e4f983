use super::*;
use crate::object::{IngressRule, IngressTls, Secret};

const RSA_CRT: &str = include_str!("../../../tests/fixtures/rsa.crt");
const RSA_KEY: &str = include_str!("../../../tests/fixtures/rsa.key");
const RSA_PKCS1_KEY: &str = include_str!("../../../tests/fixtures/rsa-pkcs1.key");
const RSA_OTHER_KEY: &str = include_str!("../../../tests/fixtures/rsa-other.key");
const ECDSA_CRT: &str = include_str!("../../../tests/fixtures/ecdsa.crt");
const ECDSA_KEY: &str = include_str!("../../../tests/fixtures/ecdsa.key");
const ECDSA_SEC1_KEY: &str = include_str!("../../../tests/fixtures/ecdsa-sec1.key");

fn generated(host: &str) -> (String, String) {
    let key = rcgen::generate_simple_self_signed(vec![host.to_string()]).expect("rcgen");
    (key.cert.pem(), key.signing_key.serialize_pem())
}

#[test]
fn rsa_and_ecdsa_key_pairs_in_every_pem_key_format_are_accepted() {
    let (gen_crt, gen_key) = generated("gen.example.com");
    for (name, crt, key) in [
        ("rsa pkcs8", RSA_CRT, RSA_KEY),
        ("rsa pkcs1", RSA_CRT, RSA_PKCS1_KEY),
        ("ecdsa pkcs8", ECDSA_CRT, ECDSA_KEY),
        ("ecdsa sec1", ECDSA_CRT, ECDSA_SEC1_KEY),
        ("rcgen p-256", &gen_crt, &gen_key),
    ] {
        let certified = certified_key(crt, key).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(certified.cert.len(), 1, "{name}");
    }
}

#[test]
fn a_chain_keeps_every_certificate_leaf_first() {
    let chain = format!("{ECDSA_CRT}{RSA_CRT}");
    let certified = certified_key(&chain, ECDSA_KEY).expect("leaf matches the key");
    assert_eq!(certified.cert.len(), 2);
    // The key must match the first certificate, not any of them.
    assert_eq!(
        certified_key(&chain, RSA_KEY).err(),
        Some(InvalidKeyPair::KeyMismatch)
    );
}

#[test]
fn bad_key_pairs_are_named_precisely() {
    let (gen_crt, _) = generated("gen.example.com");
    let garbage_pem =
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
    let cases: [(&str, &str, &str, InvalidKeyPair); 6] = [
        ("no pem", "hello", ECDSA_KEY, InvalidKeyPair::NoCertificate),
        ("no key", ECDSA_CRT, "hello", InvalidKeyPair::NoPrivateKey),
        (
            "key is a certificate",
            ECDSA_CRT,
            ECDSA_CRT,
            InvalidKeyPair::NoPrivateKey,
        ),
        (
            "rsa mismatch",
            RSA_CRT,
            RSA_OTHER_KEY,
            InvalidKeyPair::KeyMismatch,
        ),
        (
            "cross-type mismatch",
            RSA_CRT,
            ECDSA_KEY,
            InvalidKeyPair::KeyMismatch,
        ),
        (
            "rcgen cert with the fixture key",
            &gen_crt,
            ECDSA_KEY,
            InvalidKeyPair::KeyMismatch,
        ),
    ];
    for (name, crt, key, want) in cases {
        assert_eq!(certified_key(crt, key).err(), Some(want), "{name}");
    }
    assert!(
        matches!(
            certified_key(garbage_pem, ECDSA_KEY),
            Err(InvalidKeyPair::Certificate(_))
        ),
        "garbage DER in a certificate block"
    );
}

fn secret(data: &[(&str, &str)], string_data: &[(&str, &str)]) -> Object {
    Object::Secret(Secret {
        data: data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        string_data: string_data
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Secret::default()
    })
}

#[test]
fn secret_data_is_base64_and_string_data_wins() {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let (crt, key) = (b64(ECDSA_CRT), b64(ECDSA_KEY));
    let pair = secret_key_pair(&secret(&[("tls.crt", &crt), ("tls.key", &key)], &[]));
    assert_eq!(pair, Ok((ECDSA_CRT.to_string(), ECDSA_KEY.to_string())));
    // Line-wrapped base64 (as `base64` prints it) decodes too.
    let wrapped: String = crt
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect();
    let pair = secret_key_pair(&secret(&[("tls.crt", &wrapped), ("tls.key", &key)], &[]));
    assert_eq!(pair, Ok((ECDSA_CRT.to_string(), ECDSA_KEY.to_string())));
    let pair = secret_key_pair(&secret(
        &[("tls.crt", "!!!"), ("tls.key", &key)],
        &[("tls.crt", RSA_CRT)],
    ));
    assert_eq!(pair, Ok((RSA_CRT.to_string(), ECDSA_KEY.to_string())));

    for (name, object, want) in [
        (
            "no tls.key",
            secret(&[("tls.crt", &crt)], &[]),
            InvalidKeyPair::MissingKey("tls.key"),
        ),
        (
            "no tls.crt",
            secret(&[], &[("tls.key", ECDSA_KEY)]),
            InvalidKeyPair::MissingKey("tls.crt"),
        ),
        (
            "bad base64",
            secret(&[("tls.crt", "%%%"), ("tls.key", &key)], &[]),
            InvalidKeyPair::Base64("tls.crt"),
        ),
        (
            "binary",
            secret(&[("tls.crt", "/w=="), ("tls.key", &key)], &[]),
            InvalidKeyPair::Utf8("tls.crt"),
        ),
    ] {
        assert_eq!(secret_key_pair(&object), Err(want), "{name}");
    }
}

fn rule(visibility: &str, hosts: &[&str]) -> IngressRule {
    IngressRule {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        visibility: visibility.to_string(),
        http: None,
    }
}

fn tls(hosts: &[&str]) -> IngressTls {
    IngressTls {
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        secret_name: "s".into(),
        secret_namespace: "ns".into(),
    }
}

/// Knative's `TestGetIngressTLSForVisibility` cases, plus order and repeats.
#[test]
fn tls_entries_are_selected_per_visibility_like_knative() {
    let ext = "ExternalIP";
    let local = "ClusterLocal";
    // (name, rules, tls entries, external selection, internal selection)
    type Case = (
        &'static str,
        Vec<IngressRule>,
        Vec<IngressTls>,
        Vec<usize>,
        Vec<usize>,
    );
    let cases: Vec<Case> = vec![
        ("no tls", vec![rule(ext, &["a"])], vec![], vec![], vec![]),
        (
            "entry covers the external rule",
            vec![rule(ext, &["a", "b"]), rule(local, &["c"])],
            vec![tls(&["a", "b", "x"])],
            vec![0],
            vec![],
        ),
        (
            "entry misses one host",
            vec![rule(ext, &["a", "b"])],
            vec![tls(&["a"])],
            vec![],
            vec![],
        ),
        (
            "per visibility",
            vec![rule(ext, &["a"]), rule(local, &["c"])],
            vec![tls(&["c"]), tls(&["a"])],
            vec![1],
            vec![0],
        ),
        (
            "one entry for both",
            vec![rule(ext, &["a"]), rule(local, &["c"])],
            vec![tls(&["a", "c"])],
            vec![0],
            vec![0],
        ),
        (
            "a rule without hosts ends the search, keeping earlier picks",
            vec![rule(ext, &["a"]), rule(ext, &[]), rule(ext, &["b"])],
            vec![tls(&["a"]), tls(&["b"])],
            vec![0],
            vec![],
        ),
        (
            "no repeats, rule order",
            vec![rule(ext, &["b"]), rule(ext, &["a"])],
            vec![tls(&["a", "b"]), tls(&["a"])],
            vec![0, 1],
            vec![],
        ),
        (
            "comparison is exact, like Go",
            vec![rule(ext, &["A.example.com"])],
            vec![tls(&["a.example.com"])],
            vec![],
            vec![],
        ),
    ];
    for (name, rules, tls, external, internal) in cases {
        let spec = IngressSpec {
            tls,
            rules,
            http_option: String::new(),
        };
        assert_eq!(tls_for_visibility(&spec, ext), external, "{name}: external");
        assert_eq!(
            tls_for_visibility(&spec, local),
            internal,
            "{name}: internal"
        );
    }
}

#[test]
fn validation_results_are_cached_by_content_and_bounded() {
    let mut checks = KeyPairChecks::default();
    assert_eq!(checks.check(ECDSA_CRT, ECDSA_KEY), Ok(()));
    assert_eq!(
        checks.check(RSA_CRT, ECDSA_KEY),
        Err(InvalidKeyPair::KeyMismatch)
    );
    assert_eq!(checks.checked.len(), 2);
    assert_eq!(checks.check(ECDSA_CRT, ECDSA_KEY), Ok(()));
    assert_eq!(checks.checked.len(), 2, "a known pair is not checked again");

    // Full: a new pair starts afresh, so the cache never grows past its bound.
    for i in 0..KeyPairChecks::BOUND - checks.checked.len() {
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        id[31] = 0xff;
        checks.checked.insert(id, Ok(()));
    }
    assert_eq!(checks.checked.len(), KeyPairChecks::BOUND);
    assert_eq!(checks.check(ECDSA_CRT, ECDSA_KEY), Ok(()), "a known pair");
    assert_eq!(checks.checked.len(), KeyPairChecks::BOUND);
    assert_eq!(checks.check(RSA_CRT, RSA_KEY), Ok(()), "a new pair");
    assert_eq!(checks.checked.len(), 1);
}

mod last_good {
    use crate::object::Kind;
    use crate::status::CONDITION_NETWORK_CONFIGURED;
    use crate::translate::test_support::{Harness, Output};
    use sluice_xds::Certificate;

    const ECDSA_CRT: &str = include_str!("../../../tests/fixtures/ecdsa.crt");
    const ECDSA_KEY: &str = include_str!("../../../tests/fixtures/ecdsa.key");
    const RSA_CRT: &str = include_str!("../../../tests/fixtures/rsa.crt");
    const RSA_KEY: &str = include_str!("../../../tests/fixtures/rsa.key");
    const RSA_OTHER_KEY: &str = include_str!("../../../tests/fixtures/rsa-other.key");

    fn indent(pem: &str) -> String {
        pem.lines().map(|l| format!("    {l}\n")).collect()
    }

    fn secret(crt: &str, key: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: ns}}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(crt),
            indent(key)
        )
    }

    fn base(path: &str) -> String {
        format!(
            "---\napiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: web\n  namespace: ns\n  annotations: {{networking.knative.dev/ingress.class: sluice.ingress.networking.knative.dev}}\nspec:\n  tls: [{{hosts: [web.example.com], secretName: tls, secretNamespace: ns}}]\n  rules:\n  - hosts: [web.example.com]\n    http: {{paths: [{{path: {path}, splits: [{{serviceNamespace: ns, serviceName: app, servicePort: 80}}]}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: ns}}\nspec: {{ports: [{{port: 80}}]}}\n"
        )
    }

    fn network_configured(t: &Output) -> (String, Option<String>, Option<String>) {
        let condition = t.statuses[0]
            .status
            .condition(CONDITION_NETWORK_CONFIGURED)
            .expect("condition");
        (
            condition.status.clone(),
            condition.reason.clone(),
            condition.message.clone(),
        )
    }

    fn certificates(t: &Output) -> Vec<(String, Certificate)> {
        t.certificates()
            .into_iter()
            .map(|(name, c)| (name.to_string(), c.clone()))
            .collect()
    }

    #[test]
    fn a_secret_turned_bad_keeps_the_previous_certificate_serving() {
        let mut h = Harness::of(&(base("/") + &secret(ECDSA_CRT, ECDSA_KEY)));
        let good = h.run();
        let good_certificates = certificates(&good);
        assert_eq!(good_certificates.len(), 1);
        assert_eq!(good_certificates[0].1.cert_pem, ECDSA_CRT);
        assert_eq!(good_certificates[0].1.external_hosts, ["web.example.com"]);
        assert_eq!(network_configured(&good).0, "True");

        // Rotated to a key that does not match, and the spec changed too: the last good
        // translation (old certificate, old routes) keeps serving.
        h.apply(&(base("/new") + &secret(RSA_CRT, RSA_OTHER_KEY)));
        let bad = h.run();
        assert_eq!(certificates(&bad), good_certificates);
        assert_eq!(bad.external(), good.external());
        assert_eq!(
            network_configured(&bad),
            (
                "False".to_string(),
                Some("InvalidSecret".to_string()),
                Some(
                    "ingress ns/web: secret ns/tls: tls.key does not match the certificate in tls.crt"
                        .to_string()
                )
            )
        );

        // Deleted: still the old certificate, now SecretNotFound.
        assert!(h.delete(Kind::Secret, "ns", "tls"));
        let gone = h.run();
        assert_eq!(certificates(&gone), good_certificates);
        assert_eq!(
            network_configured(&gone).1.as_deref(),
            Some("SecretNotFound")
        );

        // Fixed with a new certificate: it replaces the old one at once.
        h.apply(&secret(RSA_CRT, RSA_KEY));
        let fixed = h.run();
        let fixed_certificates = certificates(&fixed);
        assert_eq!(fixed_certificates.len(), 1, "the old one is gone");
        assert_eq!(fixed_certificates[0].1.cert_pem, RSA_CRT);
        assert_ne!(fixed_certificates[0].0, good_certificates[0].0);
        assert_eq!(network_configured(&fixed).0, "True");
        assert_ne!(fixed.external(), good.external());
    }
}
