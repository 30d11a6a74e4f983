//! sluice Route (`sluice.dev/v1alpha1`) defaulting and validation, and tag host naming.
//!
//! A valid Route has at least one host (lower-cased, `:port` stripped and deduplicated like
//! KIngress hosts, each a DNS-1123 subdomain), a visibility of `ExternalIP` (the default) or
//! `ClusterLocal`, and traffic entries that each name a Revision, have a percent in 0..=100 and
//! an optional tag that is a DNS-1035 label unique within the Route. The percents sum to 100.
//!
//! What it serves, per Knative's traffic configuration (`SV:pkg/reconciler/route/traffic`):
//! - the default target: the entries with percent > 0, merged by Revision (percents summed),
//!   sorted by Revision name;
//! - per tag, its Revision at 100%, reached by the header `Knative-Serving-Tag: <tag>` on the
//!   Route's hosts and on the tag hosts [`tag_host`] derives from each of them.
//!
//! Every problem found is reported, in spec order, joined by `; `.

use crate::object::{Route, VISIBILITY_CLUSTER_LOCAL, VISIBILITY_EXTERNAL_IP};
use sluice_xds::host::normalized as normalize_host;
use std::collections::{BTreeMap, BTreeSet};

/// Matched on a Route's hosts to pick a tag's Revision; set on requests arriving by tag host.
pub const TAG_HEADER: &str = "knative-serving-tag";
/// Set on every request forwarded to a Revision: its name.
pub const REVISION_HEADER: &str = "knative-serving-revision";
/// Set on every request forwarded to a Revision: its namespace.
pub const NAMESPACE_HEADER: &str = "knative-serving-namespace";

/// The longest DNS label.
const MAX_LABEL: usize = 63;
/// The longest DNS name.
const MAX_NAME: usize = 253;

/// A Route that fails validation; every problem is listed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("route {route}: {}", .problems.join("; "))]
pub struct InvalidRoute {
    /// `ns/name`.
    pub route: String,
    pub problems: Vec<String>,
}

/// A validated Route, normalised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValidRoute {
    /// `ExternalIP`: served on both listeners; `ClusterLocal`: internal only.
    pub external: bool,
    /// Normalised and deduplicated, in spec order.
    pub hosts: Vec<String>,
    /// The default target: Revision name → summed percent (> 0), sorted by name.
    pub splits: Vec<(String, u32)>,
    /// Tag → Revision name, sorted by tag.
    pub tags: BTreeMap<String, String>,
    /// Every Revision named by the traffic, 0% entries included.
    pub revisions: BTreeSet<String>,
}

impl ValidRoute {
    /// Each tag's hosts: `(tag, [tag host per Route host, in host order])`, sorted by tag.
    pub fn tag_hosts(&self) -> impl Iterator<Item = (&str, Vec<String>)> + '_ {
        self.tags.keys().map(|tag| {
            let hosts = self.hosts.iter().map(|host| tag_host(tag, host)).collect();
            (tag.as_str(), hosts)
        })
    }
}

/// Knative's default tag host: `<tag>-<first label>.<rest>`, e.g. `canary` on
/// `hello.example.com` gives `canary-hello.example.com`, and on `hello` gives `canary-hello`.
pub fn tag_host(tag: &str, host: &str) -> String {
    match host.split_once('.') {
        Some((first, rest)) => format!("{tag}-{first}.{rest}"),
        None => format!("{tag}-{host}"),
    }
}

/// Validates `route` and returns what it serves.
pub fn validate(route: &Route) -> Result<ValidRoute, InvalidRoute> {
    let spec = &route.spec;
    let mut problems = Vec::new();

    let mut seen = BTreeSet::new();
    let mut hosts = Vec::with_capacity(spec.hosts.len());
    for (i, raw) in spec.hosts.iter().enumerate() {
        let host = normalize_host(raw);
        if !is_dns1123_subdomain(&host) {
            problems.push(format!("spec.hosts[{i}]: {raw:?} is not a valid host name"));
        } else if seen.insert(host.clone()) {
            hosts.push(host);
        }
    }
    if spec.hosts.is_empty() {
        problems.push("spec.hosts is empty, want at least one host".to_string());
    }

    let external = match spec.visibility.as_str() {
        "" | VISIBILITY_EXTERNAL_IP => true,
        VISIBILITY_CLUSTER_LOCAL => false,
        other => {
            problems.push(format!(
                "spec.visibility: {other:?} is not {VISIBILITY_EXTERNAL_IP} or {VISIBILITY_CLUSTER_LOCAL}"
            ));
            true
        }
    };

    let mut total = 0i64;
    let mut percents_valid = true;
    let mut merged: BTreeMap<String, u32> = BTreeMap::new();
    let mut tags: BTreeMap<String, String> = BTreeMap::new();
    let mut tag_index: BTreeMap<&str, usize> = BTreeMap::new();
    let mut revisions = BTreeSet::new();
    for (i, target) in spec.traffic.iter().enumerate() {
        let at = format!("spec.traffic[{i}]");
        if target.revision.is_empty() {
            problems.push(format!("{at}.revision is missing"));
        } else {
            revisions.insert(target.revision.clone());
        }
        match u32::try_from(target.percent) {
            Ok(percent) if percent <= 100 => {
                total += target.percent;
                if percent > 0 && !target.revision.is_empty() {
                    *merged.entry(target.revision.clone()).or_default() += percent;
                }
            }
            _ => {
                percents_valid = false;
                problems.push(format!("{at}.percent is {}, want 0..=100", target.percent));
            }
        }
        if target.tag.is_empty() {
            continue;
        }
        if !is_dns1035_label(&target.tag) {
            problems.push(format!(
                "{at}.tag {:?} is not a DNS-1035 label (lower-case letters, digits and '-', starting with a letter, at most 63 characters)",
                target.tag
            ));
            continue;
        }
        if let Some(first) = tag_index.get(target.tag.as_str()) {
            problems.push(format!(
                "{at}.tag {:?} is already used by spec.traffic[{first}]",
                target.tag
            ));
            continue;
        }
        tag_index.insert(&target.tag, i);
        tags.insert(target.tag.clone(), target.revision.clone());
    }
    if spec.traffic.is_empty() {
        problems.push("spec.traffic is empty, want at least one target".to_string());
    } else if percents_valid && total != 100 {
        problems.push(format!("traffic percentages sum to {total}, want 100"));
    }

    for tag in tags.keys() {
        for host in &hosts {
            let tagged = tag_host(tag, host);
            if !is_dns1123_subdomain(&tagged) {
                problems.push(format!(
                    "tag {tag:?}: tag host {tagged:?} of host {host:?} is not a valid host name"
                ));
            } else if !seen.insert(tagged.clone()) {
                problems.push(format!(
                    "tag {tag:?}: tag host {tagged:?} is also a host or another tag host of the route"
                ));
            }
        }
    }

    if !problems.is_empty() {
        let meta = &route.metadata;
        return Err(InvalidRoute {
            route: format!("{}/{}", meta.namespace, meta.name),
            problems,
        });
    }
    Ok(ValidRoute {
        external,
        hosts,
        splits: merged.into_iter().collect(),
        tags,
        revisions,
    })
}

/// Kubernetes' `IsDNS1035Label`: a lower-case letter, then lower-case letters, digits and
/// `-`, not ending in `-`, at most 63 characters.
pub fn is_dns1035_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            bytes.len() <= MAX_LABEL
                && first.is_ascii_lowercase()
                && *last != b'-'
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        }
        _ => false,
    }
}

/// Kubernetes' `IsDNS1123Subdomain`: dot-separated labels of lower-case letters, digits and
/// `-` (not at either end of a label), at most 253 characters. Each label is also held to 63
/// characters, as DNS requires.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.split('.').all(|label| {
            let bytes = label.as_bytes();
            match (bytes.first(), bytes.last()) {
                (Some(first), Some(last)) => {
                    bytes.len() <= MAX_LABEL
                        && first.is_ascii_alphanumeric()
                        && last.is_ascii_alphanumeric()
                        && bytes
                            .iter()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                }
                _ => false,
            }
        })
}

#[cfg(test)]
mod tests;
