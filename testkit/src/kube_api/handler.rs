//! HTTP: routing, the REST verbs, and the one place an [`ApiError`] becomes a response.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Limited};
use hyper::body::Incoming;
use serde_json::{json, Value};

use super::error::ApiError;
use super::patch::{self, InvalidPatch, PatchKind};
use super::selector::{FieldSelector, InvalidSelector, LabelSelector};
use super::store::{Part, Preconditions, Store};
use super::watch::{self, WatchSpec};
use super::{discovery, lock, scale, RecordedRequest, Shared};
use crate::body::{self, BoxBody};

/// Bodies above this are refused; nothing a test sends comes close.
const MAX_BODY: usize = 16 << 20;

const JSON: HeaderValue = HeaderValue::from_static("application/json");

impl From<InvalidSelector> for ApiError {
    fn from(error: InvalidSelector) -> Self {
        ApiError::bad_request(error.to_string())
    }
}

impl From<InvalidPatch> for ApiError {
    fn from(error: InvalidPatch) -> Self {
        match error {
            InvalidPatch::Malformed(message) => ApiError::bad_request(message),
            InvalidPatch::Inapplicable(message) => ApiError::unprocessable(message),
        }
    }
}

/// Decoded query parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Query {
    pub(crate) fn parse(query: &str) -> Self {
        let pairs = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                (percent_decode(key), percent_decode(value))
            })
            .collect();
        Query { pairs }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    fn dry_run(&self, options_kind: &str) -> Result<bool, ApiError> {
        match self.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::invalid_options(
                options_kind,
                "dryRun",
                &format!("Unsupported value: [\"{other}\"]: supported values: \"All\""),
            )),
        }
    }

    fn field_manager(&self, options_kind: &str) -> Result<Option<&str>, ApiError> {
        match self.get("fieldManager") {
            Some(manager) if manager.len() > 128 => Err(ApiError::invalid_options(
                options_kind,
                "fieldManager",
                "Too long: may not be more than 128 bytes",
            )),
            Some("") | None => Ok(None),
            Some(manager) => Ok(Some(manager)),
        }
    }
}

/// What an API request addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    Collection {
        ty: usize,
        namespace: Option<String>,
    },
    Object {
        ty: usize,
        namespace: String,
        name: String,
        sub: Option<Sub>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    Status,
    Scale,
}

impl Sub {
    fn name(self) -> &'static str {
        match self {
            Sub::Status => "status",
            Sub::Scale => "scale",
        }
    }
}

enum Route {
    Version,
    Health,
    NotFound,
    Discovery(Option<Value>),
    Api(Target),
}

fn route(store: &Store, path: &str) -> Route {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let types = store.types();
    match segments.as_slice() {
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::Discovery(Some(discovery::core_versions())),
        ["api", "v1"] => Route::Discovery(discovery::resource_list(types, "v1")),
        ["api", "v1", rest @ ..] => resource_route(store, "v1", rest),
        ["apis"] => Route::Discovery(Some(discovery::group_list(types))),
        ["apis", group] => Route::Discovery(discovery::group(types, group)),
        ["apis", group, version] => Route::Discovery(discovery::resource_list(
            types,
            &format!("{group}/{version}"),
        )),
        ["apis", group, version, rest @ ..] => {
            resource_route(store, &format!("{group}/{version}"), rest)
        }
        ["openapi", "v3"] => Route::Discovery(Some(discovery::openapi_index(types))),
        ["openapi", "v3", "api", version] => {
            Route::Discovery(discovery::openapi_document(types, version))
        }
        ["openapi", "v3", "apis", group, version] => Route::Discovery(discovery::openapi_document(
            types,
            &format!("{group}/{version}"),
        )),
        _ => Route::NotFound,
    }
}

fn resource_route(store: &Store, group_version: &str, rest: &[&str]) -> Route {
    let namespaced_type = |plural: &str| {
        store
            .type_index(group_version, plural)
            .filter(|&ty| store.ty(ty).namespaced)
    };
    let (ty, namespace, tail) = match rest {
        ["namespaces", namespace, plural, tail @ ..] if namespaced_type(plural).is_some() => {
            let Some(ty) = namespaced_type(plural) else {
                return Route::Discovery(None);
            };
            (ty, Some((*namespace).to_owned()), tail)
        }
        [plural, tail @ ..] => match store.type_index(group_version, plural) {
            Some(ty) => (ty, None, tail),
            None => return Route::Discovery(None),
        },
        [] => return Route::Discovery(None),
    };
    let t = store.ty(ty);
    if t.namespaced && namespace.is_none() {
        // A namespaced type without a namespace: only the all-namespaces collection exists.
        return match tail {
            [] => Route::Api(Target::Collection {
                ty,
                namespace: None,
            }),
            _ => Route::Discovery(None),
        };
    }
    let sub = match tail {
        [] => return Route::Api(Target::Collection { ty, namespace }),
        [_] => None,
        [_, "status"] if t.status => Some(Sub::Status),
        [_, "scale"] if t.scale.is_some() => Some(Sub::Scale),
        _ => return Route::Discovery(None),
    };
    Route::Api(Target::Object {
        ty,
        namespace: namespace.unwrap_or_default(),
        name: tail[0].to_owned(),
        sub,
    })
}

/// The request as the handlers see it, body read.
struct ApiRequest<'a> {
    method: &'a Method,
    query: Query,
    content_type: Option<&'a str>,
    body: &'a Bytes,
}

enum Reply {
    Json(StatusCode, Value),
    Stream(BoxBody),
    Text(StatusCode, &'static str),
}

fn json_response(code: StatusCode, value: &Value) -> Response<BoxBody> {
    let bytes = serde_json::to_vec(value).expect("a JSON value always serializes");
    let mut response = Response::new(body::full(bytes));
    *response.status_mut() = code;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

/// The one place an error becomes a response.
fn error_response(error: &ApiError) -> Response<BoxBody> {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

/// Serves one request and records it.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<BoxBody>, Infallible> {
    let at = Instant::now();
    let (parts, incoming) = request.into_parts();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header(CONTENT_TYPE);
    let user_agent = header(USER_AGENT);
    let body = Limited::new(incoming, MAX_BODY)
        .collect()
        .await
        .map(|collected| collected.to_bytes());
    let index = {
        let mut requests = lock(&shared.requests);
        requests.push(RecordedRequest {
            at,
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().unwrap_or("").to_owned(),
            content_type: content_type.clone(),
            body: body
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default(),
            status: 0,
            user_agent,
        });
        requests.len() - 1
    };
    let response = match body {
        Ok(body) => {
            let request = ApiRequest {
                method: &parts.method,
                query: Query::parse(parts.uri.query().unwrap_or("")),
                content_type: content_type.as_deref(),
                body: &body,
            };
            respond(&shared, parts.uri.path(), &request)
        }
        Err(_) => error_response(&ApiError::bad_request("request body could not be read")),
    };
    if let Some(recorded) = lock(&shared.requests).get_mut(index) {
        recorded.status = response.status().as_u16();
    }
    Ok(response)
}

fn respond(shared: &Arc<Shared>, path: &str, request: &ApiRequest<'_>) -> Response<BoxBody> {
    let routed = route(&lock(&shared.store), path);
    let reply = match routed {
        Route::Version => Ok(Reply::Json(StatusCode::OK, discovery::version())),
        Route::Health => Ok(Reply::Text(StatusCode::OK, "ok")),
        Route::NotFound => Ok(Reply::Text(StatusCode::NOT_FOUND, "404 page not found\n")),
        Route::Discovery(Some(document)) if request.method == Method::GET => {
            Ok(Reply::Json(StatusCode::OK, document))
        }
        Route::Discovery(Some(_)) => Err(ApiError::method_not_allowed()),
        Route::Discovery(None) => Err(ApiError::no_such_path()),
        Route::Api(target) => serve_api(shared, &target, request),
    };
    match reply {
        Ok(Reply::Json(code, value)) => json_response(code, &value),
        Ok(Reply::Text(code, text)) => {
            let mut response = Response::new(body::full(text));
            *response.status_mut() = code;
            response
        }
        Ok(Reply::Stream(stream)) => {
            let mut response = Response::new(stream);
            response.headers_mut().insert(CONTENT_TYPE, JSON);
            response
        }
        Err(error) => error_response(&error),
    }
}

/// The authorizer's verb for a request.
fn verb(method: &Method, target: &Target, query: &Query) -> Option<&'static str> {
    let collection = matches!(target, Target::Collection { .. });
    Some(match *method {
        Method::GET if collection && query.flag("watch") => "watch",
        Method::GET if collection => "list",
        Method::GET => "get",
        Method::POST if collection => "create",
        Method::DELETE if collection => "deletecollection",
        Method::PUT if !collection => "update",
        Method::PATCH if !collection => "patch",
        Method::DELETE if !collection => "delete",
        _ => return None,
    })
}

fn serve_api(
    shared: &Arc<Shared>,
    target: &Target,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let verb =
        verb(request.method, target, &request.query).ok_or_else(ApiError::method_not_allowed)?;
    check_allowed(shared, target, verb)?;
    match target {
        Target::Collection { ty, namespace } => match verb {
            "watch" => watch(shared, *ty, namespace.clone(), &request.query),
            "list" => list(
                &lock(&shared.store),
                *ty,
                namespace.as_deref(),
                &request.query,
            ),
            "create" => {
                let namespace = match namespace {
                    Some(namespace) => namespace.as_str(),
                    None if !lock(&shared.store).ty(*ty).namespaced => "",
                    None => return Err(ApiError::method_not_allowed()),
                };
                create(&mut lock(&shared.store), *ty, namespace, request)
            }
            "deletecollection" => {
                delete_collection(&mut lock(&shared.store), *ty, namespace.as_deref(), request)
            }
            _ => Err(ApiError::method_not_allowed()),
        },
        Target::Object {
            ty,
            namespace,
            name,
            sub,
        } => {
            let mut store = lock(&shared.store);
            let object = ObjectRef {
                ty: *ty,
                namespace,
                name,
                sub: *sub,
            };
            match verb {
                "get" => get(&store, &object),
                "update" => update(&mut store, &object, request),
                "patch" => patch(&mut store, &object, request),
                "delete" if sub.is_none() => delete(&mut store, &object, request),
                _ => Err(ApiError::method_not_allowed()),
            }
        }
    }
}

fn check_allowed(shared: &Arc<Shared>, target: &Target, verb: &str) -> Result<(), ApiError> {
    let (ty, namespace, name, sub) = match target {
        Target::Collection { ty, namespace } => (*ty, namespace.as_deref(), "", None),
        Target::Object {
            ty,
            namespace,
            name,
            sub,
        } => (
            *ty,
            Some(namespace.as_str()),
            name.as_str(),
            sub.map(Sub::name),
        ),
    };
    let t = lock(&shared.store).ty(ty).clone();
    let denied = lock(&shared.forbidden).iter().any(|rule| {
        rule.verb == verb && rule.plural == t.plural && rule.subresource.as_deref() == sub
    });
    if denied {
        return Err(ApiError::forbidden(&t, verb, sub, namespace, name));
    }
    Ok(())
}

struct ObjectRef<'a> {
    ty: usize,
    namespace: &'a str,
    name: &'a str,
    sub: Option<Sub>,
}

/// Media types a create, update or delete body may have (no protobuf, no CBOR).
const BODY_TYPES: [&str; 2] = ["application/json", "application/yaml"];

/// A create, update or delete body: JSON, or YAML as the real server also takes. Anything else
/// (kubectl's protobuf, say) is 415, as the real server answers a format it does not take.
fn parse_body(request: &ApiRequest<'_>) -> Result<Value, ApiError> {
    let media = request
        .content_type
        .and_then(|ct| ct.split(';').next())
        .map(|m| m.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match media.as_str() {
        "" | "application/json" | "*/*" => parse_json(request.body),
        "application/yaml" => serde_yaml::from_slice(request.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        _ => Err(ApiError::unsupported_media_type(&BODY_TYPES)),
    }
}

fn parse_json(body: &Bytes) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
    })
}

fn list(
    store: &Store,
    ty: usize,
    namespace: Option<&str>,
    query: &Query,
) -> Result<Reply, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))?;
    let limit = match query.get("limit") {
        None | Some("") => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| ApiError::bad_request(format!("invalid limit {text:?}")))?,
    };
    // The continue token is "<list resourceVersion>:<offset>": later pages report the first
    // page's version (they show the current state, which a watch from that version replays).
    let (list_rv, offset) = match query.get("continue") {
        None | Some("") => (store.resource_version(), 0),
        Some(token) => token
            .split_once(':')
            .and_then(|(rv, offset)| Some((rv.parse().ok()?, offset.parse().ok()?)))
            .ok_or_else(|| ApiError::bad_request(format!("invalid continue token {token:?}")))?,
    };
    let t = store.ty(ty);
    let selected: Vec<&Arc<Value>> = store
        .list(ty, namespace)
        .filter(|o| labels.selects(o) && fields.selects(o))
        .collect();
    let end = if limit == 0 {
        selected.len()
    } else {
        (offset + limit).min(selected.len())
    };
    let page: Vec<Value> = selected
        .get(offset..end)
        .unwrap_or_default()
        .iter()
        .map(|o| (***o).clone())
        .collect();
    let mut metadata = json!({"resourceVersion": list_rv.to_string()});
    if end < selected.len() {
        metadata["continue"] = json!(format!("{list_rv}:{end}"));
        metadata["remainingItemCount"] = json!(selected.len() - end);
    }
    Ok(Reply::Json(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", t.kind),
            "apiVersion": t.group_version(),
            "metadata": metadata,
            "items": page,
        }),
    ))
}

fn watch(
    shared: &Arc<Shared>,
    ty: usize,
    namespace: Option<String>,
    query: &Query,
) -> Result<Reply, ApiError> {
    let resource_version = match query.get("resourceVersion") {
        None | Some("") => None,
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version {text:?}")))?,
        ),
    };
    let timeout = match query.get("timeoutSeconds") {
        None | Some("") => None,
        Some(text) => Some(Duration::from_secs(text.parse().map_err(|_| {
            ApiError::bad_request(format!("invalid timeoutSeconds {text:?}"))
        })?)),
    };
    let spec = WatchSpec {
        ty,
        namespace,
        labels: LabelSelector::parse(query.get("labelSelector").unwrap_or(""))?,
        fields: FieldSelector::parse(query.get("fieldSelector").unwrap_or(""))?,
        resource_version,
        timeout,
        bookmarks: query.flag("allowWatchBookmarks"),
        initial_events: query.flag("sendInitialEvents"),
    };
    Ok(Reply::Stream(watch::start(shared.clone(), spec)))
}

fn get(store: &Store, object: &ObjectRef<'_>) -> Result<Reply, ApiError> {
    let t = store.ty(object.ty);
    let found = store
        .get(object.ty, object.namespace, object.name)
        .ok_or_else(|| ApiError::not_found(t, object.name))?;
    let value = match object.sub {
        Some(Sub::Scale) => scale::scale_of(t, &found),
        _ => (*found).clone(),
    };
    Ok(Reply::Json(StatusCode::OK, value))
}

fn create(
    store: &mut Store,
    ty: usize,
    namespace: &str,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let dry_run = request.query.dry_run("CreateOptions")?;
    request.query.field_manager("CreateOptions")?;
    let body = parse_body(request)?;
    let created = store.create(ty, namespace, body, false, dry_run)?;
    Ok(Reply::Json(StatusCode::CREATED, (*created).clone()))
}

fn update(
    store: &mut Store,
    object: &ObjectRef<'_>,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let dry_run = request.query.dry_run("UpdateOptions")?;
    request.query.field_manager("UpdateOptions")?;
    let body = parse_body(request)?;
    let value = match object.sub {
        Some(Sub::Scale) => {
            store.write_scale(object.ty, object.namespace, object.name, &body, dry_run)?
        }
        sub => {
            let part = if sub == Some(Sub::Status) {
                Part::Status
            } else {
                Part::Main
            };
            let updated = store.update(
                object.ty,
                object.namespace,
                object.name,
                body,
                part,
                dry_run,
            )?;
            (*updated).clone()
        }
    };
    Ok(Reply::Json(StatusCode::OK, value))
}

fn patch(
    store: &mut Store,
    object: &ObjectRef<'_>,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let t = store.ty(object.ty).clone();
    let content_type = request.content_type.unwrap_or("");
    let accepted: Vec<&str> = PatchKind::CONTENT_TYPES
        .into_iter()
        .filter(|ct| t.is_builtin() || !ct.starts_with("application/strategic"))
        .collect();
    let kind = PatchKind::from_content_type(content_type)
        // Custom resources have no Go struct tags to merge by: the real server refuses.
        .filter(|kind| *kind != PatchKind::Strategic || t.is_builtin())
        .ok_or_else(|| ApiError::unsupported_media_type(&accepted))?;
    // Options are validated before the object is looked up, as apimachinery does.
    if kind == PatchKind::Apply {
        if request.query.field_manager("PatchOptions")?.is_none() {
            return Err(ApiError::invalid_options(
                "PatchOptions",
                "fieldManager",
                "Required value: is required for apply patch",
            ));
        }
    } else if request.query.get("force").is_some() {
        return Err(ApiError::invalid_options(
            "PatchOptions",
            "force",
            "Forbidden: may not be specified for non-apply patch",
        ));
    }
    request.query.field_manager("PatchOptions")?;
    let dry_run = request.query.dry_run("PatchOptions")?;
    let body = if kind == PatchKind::Apply {
        serde_yaml::from_slice::<Value>(request.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?
    } else {
        parse_json(request.body)?
    };
    if kind == PatchKind::Apply {
        check_applied_config(&body, object.sub, &t)?;
    }
    let current = store.get(object.ty, object.namespace, object.name);
    let Some(current) = current else {
        if kind == PatchKind::Apply && object.sub.is_none() {
            // Server-side apply creates what is not there.
            let created = patch::strategic_merge(&json!({}), &body)?;
            let name = created.pointer("/metadata/name").and_then(Value::as_str);
            if name != Some(object.name) {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({}) does not match the name on the URL ({})",
                    name.unwrap_or(""),
                    object.name
                )));
            }
            let created = store.create(object.ty, object.namespace, created, false, dry_run)?;
            return Ok(Reply::Json(StatusCode::CREATED, (*created).clone()));
        }
        return Err(ApiError::not_found(&t, object.name));
    };
    let apply = |target: &Value| -> Result<Value, ApiError> {
        Ok(match kind {
            PatchKind::Merge => {
                let mut patched = target.clone();
                patch::merge_patch(&mut patched, &body);
                patched
            }
            PatchKind::Json => patch::json_patch(target, &body)?,
            // Server-side apply: one manager, no field ownership (see `FakeApiServer`).
            PatchKind::Strategic | PatchKind::Apply => patch::strategic_merge(target, &body)?,
        })
    };
    let value = match object.sub {
        Some(Sub::Scale) => {
            let patched = apply(&scale::scale_of(&t, &current))?;
            store.write_scale(object.ty, object.namespace, object.name, &patched, dry_run)?
        }
        sub => {
            let part = if sub == Some(Sub::Status) {
                Part::Status
            } else {
                Part::Main
            };
            let patched = apply(&current)?;
            let updated = store.update(
                object.ty,
                object.namespace,
                object.name,
                patched,
                part,
                dry_run,
            )?;
            (*updated).clone()
        }
    };
    Ok(Reply::Json(StatusCode::OK, value))
}

/// An applied configuration must say what it is, like the real server's YAML decoder demands.
fn check_applied_config(
    body: &Value,
    sub: Option<Sub>,
    t: &super::ResourceType,
) -> Result<(), ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request("error decoding YAML: not an object"));
    }
    for field in ["apiVersion", "kind"] {
        if body
            .get(field)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let what = if field == "kind" {
                "Kind"
            } else {
                "apiVersion"
            };
            return Err(ApiError::bad_request(format!(
                "Object '{what}' is missing in '{body}'"
            )));
        }
    }
    if sub != Some(Sub::Scale) {
        let api_version = body.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
        if api_version != t.group_version() || kind != t.kind {
            return Err(ApiError::bad_request(format!(
                "the API version/kind in the data ({api_version}, {kind}) does not match the expected ({}, {})",
                t.group_version(),
                t.kind
            )));
        }
    }
    Ok(())
}

/// DELETE on a collection: every selected object, as one DELETE each; answers the list of what
/// was deleted (or marked, for objects with finalizers).
fn delete_collection(
    store: &mut Store,
    ty: usize,
    namespace: Option<&str>,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let dry_run = request.query.dry_run("DeleteOptions")?;
    let labels = LabelSelector::parse(request.query.get("labelSelector").unwrap_or(""))?;
    let fields = FieldSelector::parse(request.query.get("fieldSelector").unwrap_or(""))?;
    let doomed: Vec<(String, String)> = store
        .list(ty, namespace)
        .filter(|o| labels.selects(o) && fields.selects(o))
        .map(|o| {
            let namespace = o.pointer("/metadata/namespace").and_then(Value::as_str);
            (namespace.unwrap_or("").to_owned(), name_of(o).to_owned())
        })
        .collect();
    let mut items = Vec::new();
    for (namespace, name) in doomed {
        let deleted = store.delete(ty, &namespace, &name, &Preconditions::default(), dry_run)?;
        items.push((*deleted).clone());
    }
    let t = store.ty(ty);
    Ok(Reply::Json(
        StatusCode::OK,
        json!({
            "kind": format!("{}List", t.kind),
            "apiVersion": t.group_version(),
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": items,
        }),
    ))
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn delete(
    store: &mut Store,
    object: &ObjectRef<'_>,
    request: &ApiRequest<'_>,
) -> Result<Reply, ApiError> {
    let mut dry_run = request.query.dry_run("DeleteOptions")?;
    let mut preconditions = Preconditions::default();
    if !request.body.is_empty() {
        let options = parse_body(request)?;
        let field = |pointer: &str| {
            options
                .pointer(pointer)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        preconditions.uid = field("/preconditions/uid");
        preconditions.resource_version = field("/preconditions/resourceVersion");
        if let Some(Value::Array(modes)) = options.get("dryRun") {
            dry_run |= modes.iter().any(|m| m == "All");
        }
    }
    let deleted = store.delete(
        object.ty,
        object.namespace,
        object.name,
        &preconditions,
        dry_run,
    )?;
    Ok(Reply::Json(StatusCode::OK, (*deleted).clone()))
}
