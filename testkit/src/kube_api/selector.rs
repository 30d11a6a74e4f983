//! Label and field selectors as list and watch requests carry them (`labelSelector=app in (a,b),!canary`).

use std::collections::BTreeSet;

use serde_json::Value;

/// A selector string the server cannot parse; answered with 400.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum InvalidSelector {
    #[error("unable to parse requirement: {0:?}: found no key")]
    NoKey(String),
    #[error("unable to parse requirement: {0:?}: found unexpected {1:?}")]
    Unexpected(String, String),
    #[error("unable to parse requirement: {0:?}: unclosed set")]
    UnclosedSet(String),
    #[error("invalid label key {0:?}")]
    BadKey(String),
    #[error("invalid label value {0:?}")]
    BadValue(String),
    #[error("invalid field selector {0:?}: expected key=value, key==value or key!=value")]
    BadField(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Op {
    Equals(String),
    NotEquals(String),
    In(BTreeSet<String>),
    NotIn(BTreeSet<String>),
    Exists,
    NotExists,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed `labelSelector`; the empty selector selects everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidSelector> {
        let mut requirements = Vec::new();
        for term in split_top_level(text)? {
            let term = term.trim();
            if term.is_empty() {
                // `a=b,` and the empty selector both occur in the wild; the server accepts them.
                continue;
            }
            requirements.push(parse_requirement(term)?);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object with these `metadata.labels` (absent means none) is selected.
    pub(crate) fn matches(&self, labels: Option<&Value>) -> bool {
        let label = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements.iter().all(|req| match &req.op {
            Op::Equals(value) => label(&req.key) == Some(value.as_str()),
            // As in apimachinery: `!=` and `notin` also select objects without the label.
            Op::NotEquals(value) => label(&req.key) != Some(value.as_str()),
            Op::In(values) => label(&req.key).is_some_and(|v| values.contains(v)),
            Op::NotIn(values) => label(&req.key).is_none_or(|v| !values.contains(v)),
            Op::Exists => label(&req.key).is_some(),
            Op::NotExists => label(&req.key).is_none(),
        })
    }

    /// Selects an object by its whole JSON.
    pub(crate) fn selects(&self, object: &Value) -> bool {
        self.matches(object.pointer("/metadata/labels"))
    }
}

/// Splits on commas that are not inside `( … )`.
fn split_top_level(text: &str) -> Result<Vec<&str>, InvalidSelector> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| InvalidSelector::Unexpected(text.to_owned(), ")".to_owned()))?;
            }
            ',' if depth == 0 => {
                terms.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(InvalidSelector::UnclosedSet(text.to_owned()));
    }
    terms.push(&text[start..]);
    Ok(terms)
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')
}

fn is_value_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

fn check_key(key: &str) -> Result<(), InvalidSelector> {
    let valid = !key.is_empty()
        && key.chars().all(is_key_char)
        && key.matches('/').count() <= 1
        && key.split('/').all(|part| !part.is_empty());
    if valid {
        Ok(())
    } else {
        Err(InvalidSelector::BadKey(key.to_owned()))
    }
}

fn check_value(value: &str) -> Result<String, InvalidSelector> {
    if value.chars().all(is_value_char) && value.len() <= 63 {
        Ok(value.to_owned())
    } else {
        Err(InvalidSelector::BadValue(value.to_owned()))
    }
}

fn parse_requirement(term: &str) -> Result<Requirement, InvalidSelector> {
    if let Some(key) = term.strip_prefix('!') {
        let key = key.trim();
        check_key(key)?;
        return Ok(Requirement {
            key: key.to_owned(),
            op: Op::NotExists,
        });
    }
    let key_end = term.find(|c: char| !is_key_char(c)).unwrap_or(term.len());
    let key = &term[..key_end];
    if key.is_empty() {
        return Err(InvalidSelector::NoKey(term.to_owned()));
    }
    check_key(key)?;
    let rest = term[key_end..].trim_start();
    let op = if rest.is_empty() {
        Op::Exists
    } else if let Some(value) = rest.strip_prefix("!=") {
        Op::NotEquals(check_value(value.trim())?)
    } else if let Some(value) = rest.strip_prefix("==") {
        Op::Equals(check_value(value.trim())?)
    } else if let Some(value) = rest.strip_prefix('=') {
        Op::Equals(check_value(value.trim())?)
    } else if let Some(set) = rest.strip_prefix("notin") {
        Op::NotIn(parse_set(term, set)?)
    } else if let Some(set) = rest.strip_prefix("in") {
        Op::In(parse_set(term, set)?)
    } else {
        return Err(InvalidSelector::Unexpected(
            term.to_owned(),
            rest.to_owned(),
        ));
    };
    Ok(Requirement {
        key: key.to_owned(),
        op,
    })
}

/// Parses ` (a, b)` after `in`/`notin`.
fn parse_set(term: &str, set: &str) -> Result<BTreeSet<String>, InvalidSelector> {
    let inner = set
        .trim()
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| InvalidSelector::Unexpected(term.to_owned(), set.trim().to_owned()))?;
    inner
        .split(',')
        .map(|v| check_value(v.trim()))
        .collect::<Result<BTreeSet<_>, _>>()
}

/// A parsed `fieldSelector`: only `metadata.name` and `metadata.namespace`, with `=`, `==`
/// and `!=`, which is what every resource type of the real server supports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector {
    /// (JSON pointer, expected value, must equal)
    terms: Vec<(&'static str, String, bool)>,
}

impl FieldSelector {
    pub(crate) fn parse(text: &str) -> Result<Self, InvalidSelector> {
        let mut terms = Vec::new();
        for term in text.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, value, equal) = if let Some((f, v)) = term.split_once("!=") {
                (f, v, false)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, v, true)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, v, true)
            } else {
                return Err(InvalidSelector::BadField(term.to_owned()));
            };
            let pointer = match field.trim() {
                "metadata.name" => "/metadata/name",
                "metadata.namespace" => "/metadata/namespace",
                other => return Err(InvalidSelector::UnsupportedField(other.to_owned())),
            };
            terms.push((pointer, value.trim().to_owned(), equal));
        }
        Ok(FieldSelector { terms })
    }

    pub(crate) fn selects(&self, object: &Value) -> bool {
        self.terms.iter().all(|(pointer, value, equal)| {
            // A cluster-scoped object has no namespace: it matches `metadata.namespace=` only.
            let actual = object
                .pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or("");
            (actual == value) == *equal
        })
    }
}

#[cfg(test)]
mod tests;
