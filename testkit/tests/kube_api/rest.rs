//! Wire details checked with raw HTTP: watch lines, paging, error bodies, generation.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sluice_testkit::kube_api::FakeApiServer;

use super::{name_of, raw, WatchLines};

const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const KINGRESSES: &str =
    "/apis/networking.internal.knative.dev/v1alpha1/namespaces/default/ingresses";

fn deployment(name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
    })
}

fn configmap(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": labels}, "data": {"k": "v"}})
}

fn rv(object: &Value) -> u64 {
    object["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn discovery_reports_1_33_every_subresource_and_the_system_namespaces() -> anyhow::Result<()>
{
    let server = FakeApiServer::start().await?;
    let (code, version) = raw(&server, "GET", "/version", None, None).await?;
    assert_eq!(
        (code, &version["major"], &version["minor"]),
        (200, &json!("1"), &json!("33"))
    );
    let (_, apps) = raw(&server, "GET", "/apis/apps/v1", None, None).await?;
    let names: Vec<&str> = apps["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["deployments", "deployments/status", "deployments/scale"]
    );
    assert_eq!(apps["resources"][2]["group"], "autoscaling");
    assert_eq!(apps["resources"][2]["kind"], "Scale");
    let (_, groups) = raw(&server, "GET", "/apis", None, None).await?;
    let groups: Vec<&str> = groups["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g["name"].as_str())
        .collect();
    assert_eq!(
        groups,
        [
            "discovery.k8s.io",
            "apps",
            "coordination.k8s.io",
            "networking.internal.knative.dev",
            "sluice.dev"
        ]
    );
    let (_, core) = raw(&server, "GET", "/api/v1", None, None).await?;
    assert_eq!(core["resources"][0]["name"], "namespaces");
    assert_eq!(core["resources"][0]["namespaced"], false);
    let (code, default) = raw(&server, "GET", "/api/v1/namespaces/default", None, None).await?;
    assert_eq!((code, &default["status"]["phase"]), (200, &json!("Active")));
    assert_eq!(default["metadata"].get("namespace"), None);
    for path in [
        "/openapi/v2",
        "/openapi/v3/apis/nope.dev/v1",
        "/apis/nope.dev/v1",
    ] {
        assert_eq!(
            raw(&server, "GET", path, None, None).await?.0,
            404,
            "{path}"
        );
    }
    Ok(())
}

/// `/openapi/v3` tells kubectl and Helm that the server validates fields itself: each group
/// version's document has a PATCH per kind, with its kind and a `fieldValidation` parameter.
#[tokio::test]
async fn openapi_v3_names_every_group_version_and_offers_field_validation() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let (code, index) = raw(&server, "GET", "/openapi/v3", None, None).await?;
    assert_eq!(code, 200);
    let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .expect("apps/v1 listed");
    assert!(url.starts_with("/openapi/v3/apis/apps/v1?hash="), "{url}");
    assert!(index["paths"]["api/v1"].is_object());
    let (code, apps) = raw(&server, "GET", url, None, None).await?;
    assert_eq!(code, 200);
    let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"],
        json!({"group": "apps", "version": "v1", "kind": "Deployment"})
    );
    assert_eq!(patch["parameters"][0]["name"], "fieldValidation");
    let (_, core) = raw(&server, "GET", "/openapi/v3/api/v1", None, None).await?;
    assert!(core["paths"]["/api/v1/namespaces/{name}"]["patch"].is_object());
    Ok(())
}

/// method, path, content type, body, then the code, reason and a part of the message.
type ErrorCase<'a> = (
    &'a str,
    String,
    Option<&'a str>,
    &'a str,
    u16,
    &'a str,
    &'a str,
);

#[tokio::test]
async fn errors_are_status_bodies_with_the_real_codes() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.apply(deployment("web"))?;
    let web = format!("{DEPLOYMENTS}/web");
    let merge = Some("application/merge-patch+json");
    let duplicate = deployment("web").to_string();
    let cases: Vec<ErrorCase<'_>> = vec![
        (
            "GET",
            format!("{DEPLOYMENTS}/nope"),
            None,
            "",
            404,
            "NotFound",
            "deployments.apps \"nope\" not found",
        ),
        (
            "POST",
            DEPLOYMENTS.into(),
            None,
            &duplicate,
            409,
            "AlreadyExists",
            "deployments.apps \"web\" already exists",
        ),
        (
            "POST",
            DEPLOYMENTS.into(),
            None,
            r#"{"apiVersion":"apps/v1","kind":"Deployment","metadata":{}}"#,
            422,
            "Invalid",
            "metadata.name: Required value",
        ),
        (
            "POST",
            DEPLOYMENTS.into(),
            None,
            r#"{"apiVersion":"v1","kind":"Deployment","metadata":{"name":"x"}}"#,
            400,
            "BadRequest",
            "does not match the expected API version",
        ),
        (
            "POST",
            DEPLOYMENTS.into(),
            None,
            r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"x"}}"#,
            422,
            "Invalid",
            "StatefulSet.apps \"x\" is invalid: kind: Invalid value: \"StatefulSet\": must be Deployment",
        ),
        (
            "POST",
            DEPLOYMENTS.into(),
            None,
            "{not json",
            400,
            "BadRequest",
            "json parse error",
        ),
        (
            "POST",
            CONFIGMAPS.into(),
            Some("application/vnd.kubernetes.protobuf"),
            "k8s\0",
            415,
            "UnsupportedMediaType",
            "accepted media types include: application/json, application/yaml",
        ),
        (
            "PUT",
            format!("{DEPLOYMENTS}/nope"),
            None,
            r#"{"metadata":{"name":"nope"}}"#,
            404,
            "NotFound",
            "not found",
        ),
        (
            "PUT",
            web.clone(),
            None,
            r#"{"metadata":{"name":"web","resourceVersion":"1"}}"#,
            409,
            "Conflict",
            "the object has been modified",
        ),
        (
            "PATCH",
            web.clone(),
            Some("application/xml"),
            "{}",
            415,
            "UnsupportedMediaType",
            "application/merge-patch+json",
        ),
        (
            "PATCH",
            web.clone(),
            Some("application/apply-patch+yaml"),
            "{}",
            422,
            "Invalid",
            "fieldManager: Required value: is required for apply patch",
        ),
        (
            "PATCH",
            format!("{web}?force=true"),
            merge,
            "{}",
            422,
            "Invalid",
            "force: Forbidden: may not be specified for non-apply patch",
        ),
        (
            "PATCH",
            web.clone(),
            merge,
            r#"{"metadata":{"resourceVersion":"1"}}"#,
            409,
            "Conflict",
            "the object has been modified",
        ),
        (
            "PATCH",
            web.clone(),
            Some("application/json-patch+json"),
            r#"[{"op":"test","path":"/spec/replicas","value":7}]"#,
            422,
            "Invalid",
            "test failed",
        ),
        (
            "PATCH",
            web.clone(),
            Some("application/json-patch+json"),
            r#"{"op":"add"}"#,
            400,
            "BadRequest",
            "array",
        ),
        (
            "PATCH",
            format!("{KINGRESSES}/x"),
            Some("application/strategic-merge-patch+json"),
            "{}",
            415,
            "UnsupportedMediaType",
            "application/merge-patch+json",
        ),
        (
            "POST",
            web.clone(),
            None,
            "{}",
            405,
            "MethodNotAllowed",
            "does not allow",
        ),
        (
            "GET",
            format!("{web}/exec"),
            None,
            "",
            404,
            "NotFound",
            "could not find the requested resource",
        ),
        (
            "GET",
            format!("{DEPLOYMENTS}?labelSelector=app%20in%20x"),
            None,
            "",
            400,
            "BadRequest",
            "unable to parse requirement",
        ),
        (
            "GET",
            format!("{DEPLOYMENTS}?fieldSelector=spec.paused%3Dtrue"),
            None,
            "",
            400,
            "BadRequest",
            "field label not supported: spec.paused",
        ),
    ];
    for (method, path, content_type, body, code, reason, message) in cases {
        let body = (!body.is_empty()).then_some(body);
        let (got, status) = raw(&server, method, &path, content_type, body).await?;
        let what = format!("{method} {path} {body:?}: {status}");
        assert_eq!(got, code, "{what}");
        assert_eq!(status["kind"], "Status", "{what}");
        assert_eq!(status["status"], "Failure", "{what}");
        assert_eq!(status["code"], code, "{what}");
        assert_eq!(status["reason"], reason, "{what}");
        let text = status["message"].as_str().unwrap_or("");
        assert!(text.contains(message), "{what}: want {message:?}");
    }
    // YAML bodies are fine, as on the real server.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: from-yaml\n";
    let (code, created) = raw(
        &server,
        "POST",
        CONFIGMAPS,
        Some("application/yaml"),
        Some(yaml),
    )
    .await?;
    assert_eq!((code, name_of(&created)), (201, "from-yaml"));
    // None of the failed writes changed anything.
    let stored = server
        .get("apps/v1", "deployments", "default", "web")
        .expect("web exists");
    assert_eq!(stored["metadata"]["generation"], 1);
    Ok(())
}

#[tokio::test]
async fn generation_counts_spec_changes_and_status_is_its_own_subresource() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let created = raw(
        &server,
        "POST",
        DEPLOYMENTS,
        None,
        Some(
            &json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web"}, "spec": {"selector": {"matchLabels": {"app": "web"}}},
                "status": {"replicas": 9},
            })
            .to_string(),
        ),
    )
    .await?;
    assert_eq!(created.0, 201);
    let created = created.1;
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(created["metadata"]["namespace"], "default");
    assert!(
        created["metadata"]["uid"].is_string()
            && created["metadata"]["creationTimestamp"].is_string()
    );
    assert_eq!(created.get("status"), None, "create drops status");
    assert_eq!(created["spec"]["replicas"], 1, "replicas defaulted");
    let web = format!("{DEPLOYMENTS}/web");
    let merge = Some("application/merge-patch+json");

    let (_, labelled) = raw(
        &server,
        "PATCH",
        &web,
        merge,
        Some(r#"{"metadata":{"labels":{"a":"b"}},"status":{"replicas":3}}"#),
    )
    .await?;
    assert_eq!(labelled["metadata"]["generation"], 1, "metadata only");
    assert_eq!(labelled.get("status"), None, "main resource ignores status");
    assert!(rv(&labelled) > rv(&created));

    let (_, status) = raw(
        &server,
        "PATCH",
        &format!("{web}/status"),
        merge,
        Some(r#"{"spec":{"replicas":5},"status":{"replicas":3}}"#),
    )
    .await?;
    assert_eq!(status["status"]["replicas"], 3);
    assert_eq!(status["spec"]["replicas"], 1, "/status ignores spec");
    assert_eq!(status["metadata"]["generation"], 1);

    let (_, scaled) = raw(
        &server,
        "PATCH",
        &web,
        merge,
        Some(r#"{"spec":{"replicas":2}}"#),
    )
    .await?;
    assert_eq!(scaled["metadata"]["generation"], 2);
    assert_eq!(scaled["status"]["replicas"], 3, "status kept");

    let (_, same) = raw(
        &server,
        "PATCH",
        &web,
        merge,
        Some(r#"{"spec":{"replicas":2}}"#),
    )
    .await?;
    assert_eq!(rv(&same), rv(&scaled), "a no-op write is not a write");

    let mut put = same.clone();
    put["spec"]["paused"] = json!(true);
    put["status"] = json!({"replicas": 100});
    let (code, replaced) = raw(&server, "PUT", &web, None, Some(&put.to_string())).await?;
    assert_eq!(code, 200);
    assert_eq!(replaced["metadata"]["generation"], 3);
    assert_eq!(replaced["status"]["replicas"], 3);

    let mut status_put = replaced.clone();
    status_put["status"] = json!({"replicas": 4, "readyReplicas": 4});
    status_put["spec"]["replicas"] = json!(50);
    let (_, status_replaced) = raw(
        &server,
        "PUT",
        &format!("{web}/status"),
        None,
        Some(&status_put.to_string()),
    )
    .await?;
    assert_eq!(
        status_replaced["status"],
        json!({"replicas": 4, "readyReplicas": 4})
    );
    assert_eq!(status_replaced["spec"]["replicas"], 2);
    assert_eq!(status_replaced["metadata"]["generation"], 3);

    // A ConfigMap has no generation, like in a real cluster.
    let (_, cm) = raw(
        &server,
        "POST",
        CONFIGMAPS,
        None,
        Some(&configmap("c", json!({})).to_string()),
    )
    .await?;
    assert_eq!(cm["metadata"].get("generation"), None);
    Ok(())
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_the_parent() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.apply(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"tier": "front", "app": "web"}}},
        "status": {"replicas": 2},
    }))?;
    let scale_path = format!("{DEPLOYMENTS}/web/scale");
    let (code, scale) = raw(&server, "GET", &scale_path, None, None).await?;
    assert_eq!(code, 200);
    let parent = server
        .get("apps/v1", "deployments", "default", "web")
        .expect("seeded");
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["apiVersion"], "autoscaling/v1");
    assert_eq!(
        scale["metadata"]["resourceVersion"],
        parent["metadata"]["resourceVersion"]
    );
    assert_eq!(scale["spec"], json!({"replicas": 2}));
    assert_eq!(
        scale["status"],
        json!({"replicas": 2, "selector": "app=web,tier=front"})
    );

    let mut watch = WatchLines::open(
        &server,
        &format!("{DEPLOYMENTS}?watch=true&resourceVersion={}", rv(&parent)),
    )
    .await?;
    let patches = [
        (
            "application/merge-patch+json",
            r#"{"spec":{"replicas":3}}"#,
            3,
        ),
        (
            "application/json-patch+json",
            r#"[{"op":"replace","path":"/spec/replicas","value":4}]"#,
            4,
        ),
        (
            "application/strategic-merge-patch+json",
            r#"{"spec":{"replicas":5}}"#,
            5,
        ),
    ];
    for (content_type, patch, want) in patches {
        let (code, scale) = raw(
            &server,
            "PATCH",
            &scale_path,
            Some(content_type),
            Some(patch),
        )
        .await?;
        assert_eq!(
            (code, &scale["spec"]["replicas"]),
            (200, &json!(want)),
            "{content_type}"
        );
        let event = watch.next_change().await?;
        assert_eq!(event["type"], "MODIFIED");
        assert_eq!(event["object"]["spec"]["replicas"], want);
    }
    let (code, _) = raw(&server, "PATCH", &format!("{scale_path}?fieldManager=hpa"), Some("application/apply-patch+yaml"),
        Some("apiVersion: autoscaling/v1\nkind: Scale\nmetadata:\n  name: web\nspec:\n  replicas: 6\n")).await?;
    assert_eq!(code, 200);
    let mut put = raw(&server, "GET", &scale_path, None, None).await?.1;
    put["spec"]["replicas"] = json!(7);
    assert_eq!(
        raw(&server, "PUT", &scale_path, None, Some(&put.to_string()))
            .await?
            .0,
        200
    );
    assert_eq!(
        raw(&server, "PUT", &scale_path, None, Some(&put.to_string()))
            .await?
            .0,
        409,
        "stale version"
    );
    let parent = server
        .get("apps/v1", "deployments", "default", "web")
        .expect("still there");
    assert_eq!(parent["spec"]["replicas"], 7);
    assert_eq!(parent["metadata"]["generation"], 6, "five replica changes");
    assert_eq!(parent["status"]["replicas"], 2);
    Ok(())
}

#[tokio::test]
async fn lists_select_and_page_under_one_version() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    for (name, labels) in [
        ("a", json!({"app": "web", "env": "prod"})),
        ("b", json!({"app": "web", "env": "dev"})),
        ("c", json!({"app": "db"})),
        ("d", json!({})),
        ("e", json!({"app": "web"})),
    ] {
        server.apply(configmap(name, labels))?;
    }
    server.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "z", "namespace": "other"}}))?;
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| name_of(o).to_owned())
            .collect()
    };
    let selections = [
        ("labelSelector=app%3Dweb", vec!["a", "b", "e"]),
        ("labelSelector=app%3Dweb,env!%3Dprod", vec!["b", "e"]),
        ("labelSelector=env+in+(prod,dev)", vec!["a", "b"]),
        ("labelSelector=!app", vec!["d"]),
        ("fieldSelector=metadata.name%3Dc", vec!["c"]),
        (
            "fieldSelector=metadata.name!%3Dc&labelSelector=app",
            vec!["a", "b", "e"],
        ),
    ];
    for (query, want) in selections {
        let (code, list) =
            raw(&server, "GET", &format!("{CONFIGMAPS}?{query}"), None, None).await?;
        assert_eq!(code, 200);
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(names(&list), want, "{query}");
    }
    let (_, everywhere) = raw(&server, "GET", "/api/v1/configmaps", None, None).await?;
    assert_eq!(names(&everywhere), ["a", "b", "c", "d", "e", "z"]);

    let mut seen = Vec::new();
    let mut query = "limit=2".to_owned();
    let mut versions = Vec::new();
    loop {
        let (_, page) = raw(&server, "GET", &format!("{CONFIGMAPS}?{query}"), None, None).await?;
        seen.extend(names(&page));
        versions.push(page["metadata"]["resourceVersion"].clone());
        if seen.len() == 2 {
            // A write between pages does not change the version later pages report.
            server.apply(configmap("f", json!({})))?;
        }
        match page["metadata"]["continue"].as_str() {
            Some(token) => query = format!("limit=2&continue={token}"),
            None => break,
        }
    }
    assert_eq!(seen, ["a", "b", "c", "d", "e", "f"]);
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
    Ok(())
}

#[tokio::test]
async fn watches_replay_select_and_translate_transitions() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let first = server.apply(configmap("a", json!({"app": "web"})))?;
    server.apply(configmap("b", json!({"app": "db"})))?;

    // From "0": the current (selected) state as ADDED.
    let mut from_zero = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=1&resourceVersion=0&labelSelector=app%3Dweb"),
    )
    .await?;
    let added = from_zero.next_change().await?;
    assert_eq!(
        (added["type"].as_str(), name_of(&added["object"])),
        (Some("ADDED"), "a")
    );

    // From a version: exactly the changes after it.
    let mut replay = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={}", rv(&first)),
    )
    .await?;
    let b = replay.next_change().await?;
    assert_eq!(
        (b["type"].as_str(), name_of(&b["object"])),
        (Some("ADDED"), "b")
    );

    server.apply(configmap("a", json!({"app": "web", "v": "2"})))?;
    server.apply(configmap("a", json!({"app": "other"})))?;
    server.apply(configmap("a", json!({"app": "web"})))?;
    server.delete("v1", "configmaps", "default", "a");
    let mut got = Vec::new();
    for _ in 0..4 {
        let event = from_zero.next_change().await?;
        got.push((
            event["type"].as_str().unwrap_or("").to_owned(),
            event["object"]["metadata"]["labels"]["app"].clone(),
            rv(&event["object"]),
        ));
    }
    let types: Vec<&str> = got.iter().map(|(t, _, _)| t.as_str()).collect();
    assert_eq!(types, ["MODIFIED", "DELETED", "ADDED", "DELETED"]);
    // Leaving the selection shows the last selected state, under the new version.
    assert_eq!(got[1].1, "web");
    assert!(
        got.windows(2).all(|w| w[0].2 < w[1].2),
        "versions rise: {got:?}"
    );
    let unselected: Vec<String> = {
        let mut all = Vec::new();
        for _ in 0..4 {
            let event = replay.next_change().await?;
            all.push(event["type"].as_str().unwrap_or("").to_owned());
        }
        all
    };
    assert_eq!(unselected, ["MODIFIED", "MODIFIED", "MODIFIED", "DELETED"]);
    Ok(())
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_an_in_stream_410() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let first = server.apply(configmap("a", json!({})))?;
    let current = server.apply(configmap("b", json!({})))?;
    server.compact();
    for from in [rv(&first), rv(&current)] {
        let mut watch = WatchLines::open(
            &server,
            &format!("{CONFIGMAPS}?watch=true&resourceVersion={from}"),
        )
        .await?;
        let error = watch.next().await?.expect("an error event");
        assert_eq!(error["type"], "ERROR");
        let status = &error["object"];
        assert_eq!(
            (status["kind"].as_str(), status["apiVersion"].as_str()),
            (Some("Status"), Some("v1"))
        );
        assert_eq!(
            (status["code"].as_u64(), status["reason"].as_str()),
            (Some(410), Some("Expired"))
        );
        assert!(status["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!("too old resource version: {from} (")));
        assert_eq!(watch.next().await?, None, "the stream ends after the error");
    }
    // A relist gives a version to resume from.
    let (_, list) = raw(&server, "GET", CONFIGMAPS, None, None).await?;
    let mut watch = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={}", rv(&list)),
    )
    .await?;
    server.apply(configmap("c", json!({})))?;
    assert_eq!(watch.next_change().await?["type"], "ADDED");
    Ok(())
}

#[tokio::test]
async fn watches_from_before_the_bounded_log_expire() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let first = server.apply(configmap("a", json!({})))?;
    let mut written = Vec::new();
    // The log keeps 10,000 events: after 10,001 more, the one right after `first` is gone.
    for i in 0..10_001 {
        written.push(server.apply(configmap("a", json!({"n": i.to_string()})))?);
    }
    let mut expired = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={}", rv(&first)),
    )
    .await?;
    assert_eq!(expired.next().await?.expect("error")["object"]["code"], 410);
    let recent = &written[written.len() - 3];
    let mut replay = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={}", rv(recent)),
    )
    .await?;
    for want in &written[written.len() - 2..] {
        let event = replay.next_change().await?;
        assert_eq!(rv(&event["object"]), rv(want));
    }
    Ok(())
}

#[tokio::test]
async fn idle_watches_get_bookmarks_and_end_at_their_timeout() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let seeded = server.apply(configmap("a", json!({})))?;
    let started = Instant::now();
    let mut watch = WatchLines::open(
        &server,
        &format!(
            "{CONFIGMAPS}?watch=true&allowWatchBookmarks=true&timeoutSeconds=2&resourceVersion={}",
            rv(&seeded)
        ),
    )
    .await?;
    let bookmark = watch.next().await?.expect("a bookmark");
    assert_eq!(
        bookmark,
        json!({"type": "BOOKMARK", "object": {"kind": "ConfigMap", "apiVersion": "v1",
               "metadata": {"resourceVersion": rv(&seeded).to_string()}}})
    );
    while watch.next().await?.is_some() {}
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(4),
        "{took:?}"
    );

    // `sendInitialEvents`: the state, then a bookmark that marks its end.
    let mut streaming = WatchLines::open(&server, &format!("{CONFIGMAPS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true")).await?;
    assert_eq!(streaming.next().await?.expect("added")["type"], "ADDED");
    let end = streaming.next().await?.expect("bookmark");
    assert_eq!(
        end["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    Ok(())
}

#[tokio::test]
async fn finalizers_hold_a_deletion_until_removed() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let created = server.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "held", "finalizers": ["sluice.dev/cleanup"]}}))?;
    let path = format!("{CONFIGMAPS}/held");
    let mut watch = WatchLines::open(
        &server,
        &format!("{CONFIGMAPS}?watch=true&resourceVersion={}", rv(&created)),
    )
    .await?;
    let (code, marked) = raw(
        &server,
        "DELETE",
        &path,
        Some("application/json"),
        Some(r#"{"propagationPolicy":"Background"}"#),
    )
    .await?;
    assert_eq!(code, 200);
    assert!(marked["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(raw(&server, "GET", &path, None, None).await?.0, 200);
    assert_eq!(watch.next_change().await?["type"], "MODIFIED");
    let (code, _) = raw(
        &server,
        "PATCH",
        &path,
        Some("application/merge-patch+json"),
        Some(r#"{"metadata":{"finalizers":null}}"#),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(raw(&server, "GET", &path, None, None).await?.0, 404);
    assert_eq!(watch.next_change().await?["type"], "DELETED");

    // Preconditions are checked.
    let plain = server.apply(configmap("plain", json!({})))?;
    let wrong = json!({"preconditions": {"resourceVersion": "1"}}).to_string();
    assert_eq!(
        raw(
            &server,
            "DELETE",
            &format!("{CONFIGMAPS}/plain"),
            None,
            Some(&wrong)
        )
        .await?
        .0,
        409
    );
    let right = json!({"preconditions": {"resourceVersion": plain["metadata"]["resourceVersion"]}})
        .to_string();
    let (code, deleted) = raw(
        &server,
        "DELETE",
        &format!("{CONFIGMAPS}/plain"),
        None,
        Some(&right),
    )
    .await?;
    assert_eq!((code, name_of(&deleted)), (200, "plain"));
    Ok(())
}

#[tokio::test]
async fn server_side_apply_creates_then_merges_the_applied_fields() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let path = format!("{KINGRESSES}/hello?fieldManager=test&force=true");
    let yaml = "apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: hello\n  labels: {a: b}\nspec:\n  rules:\n  - hosts: [one.example.com]\n";
    let (code, created) = raw(
        &server,
        "PATCH",
        &path,
        Some("application/apply-patch+yaml"),
        Some(yaml),
    )
    .await?;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    let second = "{\"apiVersion\":\"networking.internal.knative.dev/v1alpha1\",\"kind\":\"Ingress\",\"metadata\":{\"name\":\"hello\",\"labels\":{\"c\":\"d\"}},\"spec\":{\"rules\":[{\"hosts\":[\"two.example.com\"]}]}}";
    let (code, applied) = raw(
        &server,
        "PATCH",
        &path,
        Some("application/apply-patch+yaml"),
        Some(second),
    )
    .await?;
    assert_eq!(code, 200);
    assert_eq!(applied["metadata"]["labels"], json!({"a": "b", "c": "d"}));
    assert_eq!(
        applied["spec"]["rules"][0]["hosts"],
        json!(["two.example.com"])
    );
    assert_eq!(applied["metadata"]["generation"], 2);
    let no_kind = "metadata:\n  name: hello\n";
    assert_eq!(
        raw(
            &server,
            "PATCH",
            &path,
            Some("application/apply-patch+yaml"),
            Some(no_kind)
        )
        .await?
        .0,
        400
    );
    Ok(())
}
