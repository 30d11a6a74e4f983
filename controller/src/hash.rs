//! Knative's ingress hash, byte-for-byte.
//!
//! `ComputeHash` is `sha256(json.Marshal(spec) ++ namespace ++ name)`, hex in lower case. The
//! prober compares it with what the gateway writes into `K-Network-Hash`, so it must match Go's
//! `encoding/json` exactly: struct fields in declaration order with `omitempty` applied, `paths`
//! and `splits` without `omitempty` (`null` when nil), map keys sorted bytewise, no whitespace
//! and Go's HTML-safe string escaping. This module is a small encoder for exactly the KIngress
//! spec types, not a general Go JSON emulation.

use crate::object::{
    HeaderMatch, HttpIngressPath, HttpIngressRuleValue, IngressBackendSplit, IngressRule,
    IngressSpec, IngressTls, IntOrString,
};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The Knative hash of an ingress: call it on the *defaulted* spec.
pub fn ingress_hash(namespace: &str, name: &str, spec: &IngressSpec) -> String {
    let mut hasher = Sha256::new();
    hasher.update(spec_go_json(spec).as_bytes());
    hasher.update(namespace.as_bytes());
    hasher.update(name.as_bytes());
    hex::encode(hasher.finalize())
}

/// `json.Marshal(spec)` as Go writes it.
pub fn spec_go_json(spec: &IngressSpec) -> String {
    let mut out = String::with_capacity(256);
    write_spec(&mut out, spec);
    out
}

/// Writes a JSON object field by field, handling the commas.
struct Fields<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> Fields<'a> {
    fn open(out: &'a mut String) -> Self {
        out.push('{');
        Fields { out, first: true }
    }

    /// Starts a field and returns the buffer for its value.
    fn field(&mut self, name: &str) -> &mut String {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        write_str(self.out, name);
        self.out.push(':');
        self.out
    }

    fn close(self) {
        self.out.push('}');
    }
}

fn write_spec(out: &mut String, spec: &IngressSpec) {
    let mut o = Fields::open(out);
    if !spec.tls.is_empty() {
        write_list(o.field("tls"), &spec.tls, write_tls);
    }
    if !spec.rules.is_empty() {
        write_list(o.field("rules"), &spec.rules, write_rule);
    }
    if !spec.http_option.is_empty() {
        write_str(o.field("httpOption"), &spec.http_option);
    }
    o.close();
}

fn write_tls(out: &mut String, tls: &IngressTls) {
    let mut o = Fields::open(out);
    if !tls.hosts.is_empty() {
        write_list(o.field("hosts"), &tls.hosts, |out, h| write_str(out, h));
    }
    if !tls.secret_name.is_empty() {
        write_str(o.field("secretName"), &tls.secret_name);
    }
    if !tls.secret_namespace.is_empty() {
        write_str(o.field("secretNamespace"), &tls.secret_namespace);
    }
    o.close();
}

fn write_rule(out: &mut String, rule: &IngressRule) {
    let mut o = Fields::open(out);
    if !rule.hosts.is_empty() {
        write_list(o.field("hosts"), &rule.hosts, |out, h| write_str(out, h));
    }
    if !rule.visibility.is_empty() {
        write_str(o.field("visibility"), &rule.visibility);
    }
    if let Some(http) = &rule.http {
        write_http(o.field("http"), http);
    }
    o.close();
}

fn write_http(out: &mut String, http: &HttpIngressRuleValue) {
    let mut o = Fields::open(out);
    write_nullable_list(o.field("paths"), http.paths.as_deref(), write_path);
    o.close();
}

fn write_path(out: &mut String, path: &HttpIngressPath) {
    let mut o = Fields::open(out);
    if !path.path.is_empty() {
        write_str(o.field("path"), &path.path);
    }
    if !path.rewrite_host.is_empty() {
        write_str(o.field("rewriteHost"), &path.rewrite_host);
    }
    if !path.headers.is_empty() {
        write_map(o.field("headers"), &path.headers, write_header_match);
    }
    write_nullable_list(o.field("splits"), path.splits.as_deref(), write_split);
    if !path.append_headers.is_empty() {
        write_map(o.field("appendHeaders"), &path.append_headers, |out, v| {
            write_str(out, v)
        });
    }
    o.close();
}

fn write_header_match(out: &mut String, header: &HeaderMatch) {
    let mut o = Fields::open(out);
    write_str(o.field("exact"), &header.exact);
    o.close();
}

fn write_split(out: &mut String, split: &IngressBackendSplit) {
    let mut o = Fields::open(out);
    write_str(o.field("serviceNamespace"), &split.service_namespace);
    write_str(o.field("serviceName"), &split.service_name);
    match &split.service_port {
        IntOrString::Int(n) => o.field("servicePort").push_str(&n.to_string()),
        IntOrString::String(s) => write_str(o.field("servicePort"), s),
    }
    if split.percent != 0 {
        o.field("percent").push_str(&split.percent.to_string());
    }
    if !split.append_headers.is_empty() {
        write_map(o.field("appendHeaders"), &split.append_headers, |out, v| {
            write_str(out, v)
        });
    }
    o.close();
}

fn write_list<T>(out: &mut String, items: &[T], write: impl Fn(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write(out, item);
    }
    out.push(']');
}

/// A slice without `omitempty`: nil is `null`, empty is `[]`.
fn write_nullable_list<T>(out: &mut String, items: Option<&[T]>, write: impl Fn(&mut String, &T)) {
    match items {
        None => out.push_str("null"),
        Some(items) => write_list(out, items, write),
    }
}

/// Go sorts map keys bytewise, which is `String`'s order too.
fn write_map<T>(out: &mut String, map: &BTreeMap<String, T>, write: impl Fn(&mut String, &T)) {
    let mut o = Fields::open(out);
    for (key, value) in map {
        write(o.field(key), value);
    }
    o.close();
}

/// A JSON string as Go's `encoding/json` writes it with HTML escaping on (the `json.Marshal`
/// default, Go ≥ 1.22). Rust strings are valid UTF-8, so Go's `\ufffd` replacement of invalid
/// bytes cannot arise.
pub(crate) fn write_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                let b = c as u8;
                out.push_str("\\u00");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0xf)]));
            }
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
