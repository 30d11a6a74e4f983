//! KIngress defaulting and validation, as Knative's webhook does them.
//!
//! Messages and field paths follow `knative.dev/pkg/apis.FieldError`: `missing field(s)`,
//! `invalid value: V`, errors with the same message merged with their paths sorted, and the
//! groups sorted by message. Knative joins groups with a newline; sluice joins them with `; `
//! so that a status message stays on one line.

use crate::object::{IngressBackendSplit, IngressSpec, IntOrString, VISIBILITY_EXTERNAL_IP};
use std::collections::BTreeMap;
use std::fmt;

/// Applies Knative's `SetDefaults`: an empty `visibility` becomes `ExternalIP`, and a path with
/// exactly one split of percent 0 gets percent 100. Nothing else is defaulted.
pub fn set_defaults(spec: &mut IngressSpec) {
    for rule in &mut spec.rules {
        if rule.visibility.is_empty() {
            rule.visibility = VISIBILITY_EXTERNAL_IP.to_string();
        }
        let Some(http) = &mut rule.http else { continue };
        for path in http.paths.iter_mut().flatten() {
            if let Some([only]) = path.splits.as_deref_mut() {
                if only.percent == 0 {
                    only.percent = 100;
                }
            }
        }
    }
}

/// One violated rule at one field path, e.g. `missing field(s)` at `spec.rules[0].http`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub message: String,
    pub path: String,
}

impl FieldError {
    fn missing(path: impl Into<String>) -> Self {
        FieldError {
            message: "missing field(s)".to_string(),
            path: path.into(),
        }
    }

    fn invalid(value: impl fmt::Display, path: impl Into<String>) -> Self {
        FieldError {
            message: format!("invalid value: {value}"),
            path: path.into(),
        }
    }
}

/// A KIngress that fails validation.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("ingress {ingress}: {}", format_field_errors(.errors))]
pub struct InvalidIngress {
    /// `ns/name`.
    pub ingress: String,
    pub errors: Vec<FieldError>,
}

/// `apis.FieldError.Error()` with `; ` between groups.
fn format_field_errors(errors: &[FieldError]) -> String {
    let mut by_message: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in errors {
        by_message.entry(&e.message).or_default().push(&e.path);
    }
    by_message
        .into_iter()
        .map(|(message, mut paths)| {
            paths.sort_unstable();
            paths.dedup();
            format!("{message}: {}", paths.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Validates a defaulted spec of an ingress in `namespace`.
pub fn validate(namespace: &str, name: &str, spec: &IngressSpec) -> Result<(), InvalidIngress> {
    let mut errors = spec_errors(namespace, spec);
    errors.extend(header_errors(spec));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(InvalidIngress {
            ingress: format!("{namespace}/{name}"),
            errors,
        })
    }
}

fn spec_errors(namespace: &str, spec: &IngressSpec) -> Vec<FieldError> {
    if spec.tls.is_empty() && spec.rules.is_empty() && spec.http_option.is_empty() {
        return vec![FieldError::missing("spec")];
    }
    let mut errors = Vec::new();
    if spec.rules.is_empty() {
        errors.push(FieldError::missing("spec.rules"));
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let at = format!("spec.rules[{i}]");
        if rule.hosts.is_empty() && rule.visibility.is_empty() && rule.http.is_none() {
            errors.push(FieldError::missing(at));
            continue;
        }
        let Some(http) = &rule.http else {
            errors.push(FieldError::missing(format!("{at}.http")));
            continue;
        };
        let paths = http.paths.as_deref().unwrap_or_default();
        if paths.is_empty() {
            errors.push(FieldError::missing(format!("{at}.http.paths")));
            continue;
        }
        for (j, path) in paths.iter().enumerate() {
            let at = format!("{at}.http.paths[{j}]");
            let splits = path.splits.as_deref().unwrap_or_default();
            if path.path.is_empty()
                && path.rewrite_host.is_empty()
                && path.headers.is_empty()
                && splits.is_empty()
                && path.append_headers.is_empty()
            {
                errors.push(FieldError::missing(at));
                continue;
            }
            if splits.is_empty() {
                errors.push(FieldError::missing(format!("{at}.splits")));
                continue;
            }
            errors.extend(splits_errors(namespace, &format!("{at}.splits"), splits));
        }
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        let at = format!("spec.tls[{i}]");
        if tls.hosts.is_empty() && tls.secret_name.is_empty() && tls.secret_namespace.is_empty() {
            errors.push(FieldError::missing(at));
            continue;
        }
        if tls.secret_name.is_empty() {
            errors.push(FieldError::missing(format!("{at}.secretName")));
        }
        if tls.secret_namespace.is_empty() {
            errors.push(FieldError::missing(format!("{at}.secretNamespace")));
        }
    }
    if !matches!(spec.http_option.as_str(), "" | "Enabled" | "Redirected") {
        errors.push(FieldError::invalid(&spec.http_option, "spec.httpOption"));
    }
    errors
}

/// sluice's own check, beyond Knative's webhook: every header name a path matches or appends
/// must be a token and every value (and `rewriteHost`) a valid field value, parsed exactly as
/// the proxies parse them (`http`). Otherwise the ingress would reach the snapshot and every
/// proxy would NACK its RouteConfig; refused here, it gets a status that says why and the
/// rest of the config keeps serving.
fn header_errors(spec: &IngressSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let check = |errors: &mut Vec<FieldError>, name: &str, value: &str, at: String| {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(FieldError {
                message: format!("invalid header name: {name:?}"),
                path: at,
            });
        } else if http::HeaderValue::from_str(value).is_err() {
            errors.push(FieldError {
                message: format!("invalid header value: {value:?}"),
                path: format!("{at}[{name}]"),
            });
        }
    };
    for (i, rule) in spec.rules.iter().enumerate() {
        let Some(http) = &rule.http else { continue };
        for (j, path) in http.paths.iter().flatten().enumerate() {
            let at = format!("spec.rules[{i}].http.paths[{j}]");
            for (name, m) in &path.headers {
                check(&mut errors, name, &m.exact, format!("{at}.headers"));
            }
            for (name, value) in &path.append_headers {
                check(&mut errors, name, value, format!("{at}.appendHeaders"));
            }
            for (k, split) in path.splits.iter().flatten().enumerate() {
                for (name, value) in &split.append_headers {
                    check(
                        &mut errors,
                        name,
                        value,
                        format!("{at}.splits[{k}].appendHeaders"),
                    );
                }
            }
            if http::HeaderValue::from_str(&path.rewrite_host).is_err() {
                errors.push(FieldError::invalid(
                    format!("{:?}", path.rewrite_host),
                    format!("{at}.rewriteHost"),
                ));
            }
        }
    }
    errors
}

/// Like Knative, the first invalid split hides the rest and the percentage total.
fn splits_errors(namespace: &str, at: &str, splits: &[IngressBackendSplit]) -> Vec<FieldError> {
    let mut total = 0;
    for (k, split) in splits.iter().enumerate() {
        let errors = split_errors(namespace, &format!("{at}[{k}]"), split);
        if !errors.is_empty() {
            return errors;
        }
        total += split.percent;
    }
    if (splits.len() != 1 || total != 0) && total != 100 {
        return vec![FieldError {
            message: format!("traffic split percentage must total to 100, but was {total}"),
            path: at.to_string(),
        }];
    }
    Vec::new()
}

fn split_errors(namespace: &str, at: &str, split: &IngressBackendSplit) -> Vec<FieldError> {
    let backend_empty = split.service_namespace.is_empty()
        && split.service_name.is_empty()
        && split.service_port == IntOrString::Int(0);
    if backend_empty && split.percent == 0 && split.append_headers.is_empty() {
        return vec![FieldError::missing(at)];
    }
    let mut errors = Vec::new();
    if !(0..=100).contains(&split.percent) {
        errors.push(FieldError::invalid(split.percent, format!("{at}.percent")));
    }
    if backend_empty {
        errors.push(FieldError::missing(at));
        return errors;
    }
    if split.service_namespace.is_empty() {
        errors.push(FieldError::missing(format!("{at}.serviceNamespace")));
    } else if split.service_namespace != namespace {
        errors.push(FieldError {
            message: "service namespace must match ingress namespace".to_string(),
            path: format!("{at}.serviceNamespace"),
        });
    }
    if split.service_name.is_empty() {
        errors.push(FieldError::missing(format!("{at}.serviceName")));
    }
    if split.service_port == IntOrString::Int(0) {
        errors.push(FieldError::missing(format!("{at}.servicePort")));
    }
    errors
}

#[cfg(test)]
mod tests;
