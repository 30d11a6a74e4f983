//! [`ApiError`]: every failure the fake answers with, rendered as the API server's `Status` body.

use serde_json::{json, Value};

use super::ResourceType;

/// A failed API request: HTTP code, the `Status` reason and a message shaped like the real server's.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ApiError {
    pub(crate) code: u16,
    pub(crate) reason: &'static str,
    pub(crate) message: String,
    details: Option<Value>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: String) -> Self {
        ApiError {
            code,
            reason,
            message,
            details: None,
        }
    }

    fn with_details(mut self, ty: &ResourceType, name: &str) -> Self {
        let mut details = json!({"group": ty.group, "kind": ty.plural});
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        self.details = Some(details);
        self
    }

    pub(crate) fn not_found(ty: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", ty.group_resource());
        ApiError::new(404, "NotFound", message).with_details(ty, name)
    }

    /// A path that names no resource this server serves.
    pub(crate) fn no_such_path() -> Self {
        let message = "the server could not find the requested resource".to_owned();
        let mut error = ApiError::new(404, "NotFound", message);
        error.details = Some(json!({}));
        error
    }

    pub(crate) fn already_exists(ty: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", ty.group_resource());
        ApiError::new(409, "AlreadyExists", message).with_details(ty, name)
    }

    /// A stale `resourceVersion` (or other precondition) on a write.
    pub(crate) fn conflict(ty: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            ty.group_resource()
        );
        ApiError::new(409, "Conflict", message).with_details(ty, name)
    }

    pub(crate) fn stale(ty: &ResourceType, name: &str) -> Self {
        ApiError::conflict(
            ty,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 422 for an object that fails validation; `field` and `detail` become the one cause.
    pub(crate) fn invalid(ty: &ResourceType, name: &str, field: &str, detail: &str) -> Self {
        ApiError::invalid_as(ty, ty.kind, name, field, detail)
    }

    /// 422 naming the object by the kind its body claims, as the real server does for a body
    /// whose `kind` does not match the URL.
    fn invalid_as(ty: &ResourceType, kind: &str, name: &str, field: &str, detail: &str) -> Self {
        let group_kind = if ty.group.is_empty() {
            kind.to_owned()
        } else {
            format!("{kind}.{}", ty.group)
        };
        let message = format!("{group_kind} \"{name}\" is invalid: {field}: {detail}");
        let mut error = ApiError::new(422, "Invalid", message);
        error.details = Some(json!({
            "name": name,
            "group": ty.group,
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        }));
        error
    }

    pub(crate) fn wrong_kind(ty: &ResourceType, name: &str, kind: &str) -> Self {
        let detail = format!("Invalid value: \"{kind}\": must be {}", ty.kind);
        ApiError::invalid_as(ty, kind, name, "kind", &detail)
    }

    /// 422 for bad request options (`PatchOptions`, `CreateOptions`), as apimachinery's
    /// option validation reports them.
    pub(crate) fn invalid_options(kind: &str, field: &str, detail: &str) -> Self {
        let message = format!("{kind}.meta.k8s.io \"\" is invalid: {field}: {detail}");
        let mut error = ApiError::new(422, "Invalid", message);
        error.details = Some(json!({
            "group": "meta.k8s.io",
            "kind": kind,
            "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": field}],
        }));
        error
    }

    /// 422 without a named object, like the server's answer to a JSON patch that cannot apply.
    pub(crate) fn unprocessable(message: String) -> Self {
        ApiError::new(422, "Invalid", message)
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message.into())
    }

    /// 403 naming the verb and resource the way the real authorizer's denial does.
    pub(crate) fn forbidden(
        ty: &ResourceType,
        verb: &str,
        subresource: Option<&str>,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        let object = if name.is_empty() {
            ty.group_resource()
        } else {
            format!("{} \"{name}\"", ty.group_resource())
        };
        let resource = match subresource {
            Some(sub) => format!("{}/{sub}", ty.plural),
            None => ty.plural.to_owned(),
        };
        let scope = match namespace {
            Some(ns) if !ns.is_empty() => format!("in the namespace \"{ns}\""),
            _ => "at the cluster scope".to_owned(),
        };
        let message = format!(
            "{object} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
            ty.group
        );
        ApiError::new(403, "Forbidden", message).with_details(ty, name)
    }

    pub(crate) fn method_not_allowed() -> Self {
        let message = "the server does not allow this method on the requested resource";
        ApiError::new(405, "MethodNotAllowed", message.to_owned())
    }

    pub(crate) fn unsupported_media_type(accepted: &[&str]) -> Self {
        let message = format!(
            "the body of the request was in an unknown format - accepted media types include: {}",
            accepted.join(", ")
        );
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    /// The watch start point is older than the event log: the in-stream 410 of the real server.
    pub(crate) fn expired(requested: u64, oldest: u64) -> Self {
        let message = format!("too old resource version: {requested} ({oldest})");
        ApiError::new(410, "Expired", message)
    }

    /// The `Status` object for a response body or a watch `ERROR` event.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}
