//! The real `kube::Client` against the fake: typed and dynamic APIs, subresources, errors.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{
    ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
    PostParams,
};
use kube::{Api, ResourceExt as _};
use serde_json::json;
use sluice_testkit::kube_api::FakeApiServer;

use super::kube_client;

fn deployment(name: &str) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "app", "image": "app:1"}]}}},
    }))?)
}

fn api_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

#[tokio::test]
async fn typed_deployments_round_trip_with_conflicts_status_and_scale() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let api: Api<Deployment> = Api::namespaced(kube_client(&server).await?, "default");

    let created = api
        .create(&PostParams::default(), &deployment("web")?)
        .await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let duplicate = api
        .create(&PostParams::default(), &deployment("web")?)
        .await;
    assert_eq!(duplicate.as_ref().err().and_then(api_code), Some(409));

    let mut fetched = api.get("web").await?;
    assert_eq!(
        fetched.metadata.resource_version,
        created.metadata.resource_version
    );
    let stale = fetched.clone();
    if let Some(spec) = fetched.spec.as_mut() {
        spec.min_ready_seconds = Some(5);
    }
    let replaced = api.replace("web", &PostParams::default(), &fetched).await?;
    assert_eq!(replaced.metadata.generation, Some(2));
    assert_ne!(
        replaced.metadata.resource_version,
        stale.metadata.resource_version
    );
    let conflict = api
        .replace("web", &PostParams::default(), &stale)
        .await
        .expect_err("a stale resourceVersion conflicts");
    match &conflict {
        kube::Error::Api(status) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
            assert!(
                status.message.contains("the object has been modified"),
                "{status:?}"
            );
        }
        other => panic!("want an API error, got {other:?}"),
    }

    let status = Patch::Merge(json!({"status": {"replicas": 2, "readyReplicas": 1}}));
    let with_status = api
        .patch_status("web", &PatchParams::default(), &status)
        .await?;
    assert_eq!(
        with_status.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1)
    );
    assert_eq!(
        with_status.metadata.generation,
        Some(2),
        "status is not spec"
    );

    let scale = api.get_scale("web").await?;
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let scale_status = scale.status.as_ref().expect("scale status");
    assert_eq!(
        (scale_status.replicas, scale_status.selector.as_deref()),
        (2, Some("app=web"))
    );
    assert_eq!(
        scale.metadata.resource_version,
        with_status.metadata.resource_version
    );

    let patched = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await?;
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(4));
    let parent = api.get("web").await?;
    assert_eq!(parent.spec.as_ref().and_then(|s| s.replicas), Some(4));
    assert_eq!(parent.metadata.generation, Some(3));

    let applied = api
        .patch(
            "web",
            &PatchParams::apply("sluice-test").force(),
            &Patch::Apply(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"applied": "yes"}},
            })),
        )
        .await?;
    assert_eq!(
        applied.labels().get("applied").map(String::as_str),
        Some("yes")
    );
    assert_eq!(applied.labels().get("app").map(String::as_str), Some("web"));
    let unmanaged = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment"})),
        )
        .await;
    assert_eq!(unmanaged.as_ref().err().and_then(api_code), Some(422));

    let strategic = Patch::Strategic(
        json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}),
    );
    let patched = api
        .patch("web", &PatchParams::default(), &strategic)
        .await?;
    let containers = patched
        .spec
        .and_then(|s| s.template.spec)
        .map(|s| s.containers)
        .unwrap_or_default();
    assert_eq!(containers.len(), 1);
    assert_eq!(containers[0].image.as_deref(), Some("app:2"));

    let deleted = api.delete("web", &DeleteParams::default()).await?;
    assert!(deleted.is_left(), "the deleted object comes back");
    assert_eq!(api.get_opt("web").await?, None);
    Ok(())
}

#[tokio::test]
async fn dynamic_objects_serve_a_kingress() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let gvk = GroupVersionKind::gvk("networking.internal.knative.dev", "v1alpha1", "Ingress");
    let resource = ApiResource::from_gvk_with_plural(&gvk, "ingresses");
    let api: Api<DynamicObject> =
        Api::namespaced_with(kube_client(&server).await?, "default", &resource);
    let ingress = DynamicObject::new("hello", &resource)
        .within("default")
        .data(json!({
            "spec": {"rules": [{"hosts": ["hello.example.com"], "visibility": "ExternalIP"}]},
            "status": {"observedGeneration": 7},
        }));
    let created = api.create(&PostParams::default(), &ingress).await?;
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(created.data.get("status"), None, "create drops status");

    let status = Patch::Merge(json!({"status": {"observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "True"}]}}));
    let with_status = api
        .patch_status("hello", &PatchParams::default(), &status)
        .await?;
    assert_eq!(with_status.data["status"]["conditions"][0]["type"], "Ready");
    assert_eq!(with_status.metadata.generation, Some(1));

    let spec = Patch::Merge(json!({"spec": {"rules": [{"hosts": ["other.example.com"]}]}}));
    let changed = api.patch("hello", &PatchParams::default(), &spec).await?;
    assert_eq!(changed.metadata.generation, Some(2));
    assert_eq!(
        changed.data["status"]["observedGeneration"], 1,
        "status kept"
    );

    // A custom resource takes no strategic merge patch, as in a real cluster.
    let strategic = api
        .patch(
            "hello",
            &PatchParams::default(),
            &Patch::Strategic(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await;
    assert_eq!(strategic.as_ref().err().and_then(api_code), Some(415));

    server.apply(
        json!({"apiVersion": "networking.internal.knative.dev/v1alpha1", "kind": "Ingress",
        "metadata": {"name": "other", "labels": {"team": "a"}}}),
    )?;
    let listed = api.list(&ListParams::default().labels("team=a")).await?;
    let names: Vec<String> = listed.items.iter().map(|o| o.name_any()).collect();
    assert_eq!(names, ["other"]);
    assert!(listed.metadata.resource_version.is_some());

    let deleted = api
        .delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("team=a"),
        )
        .await?;
    let deleted: Vec<String> = deleted
        .left()
        .map(|list| list.items.iter().map(|o| o.name_any()).collect())
        .unwrap_or_default();
    assert_eq!(deleted, ["other"]);
    let left: Vec<String> = api
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    assert_eq!(left, ["hello"]);
    Ok(())
}

#[tokio::test]
async fn forbidden_requests_surface_as_api_errors_with_403() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    let api: Api<Deployment> = Api::namespaced(kube_client(&server).await?, "default");
    api.create(&PostParams::default(), &deployment("web")?)
        .await?;

    server.forbid("get", "deployments", None);
    server.forbid("patch", "deployments", Some("scale"));
    match api.get("web").await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"));
            assert_eq!(
                status.message,
                "deployments.apps \"web\" is forbidden: User \"system:anonymous\" cannot get resource \"deployments\" in API group \"apps\" in the namespace \"default\""
            );
        }
        other => panic!("want 403, got {other:?}"),
    }
    let scale = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect_err("scale is forbidden");
    assert!(
        scale
            .to_string()
            .contains("cannot patch resource \"deployments/scale\""),
        "{scale}"
    );
    // Other verbs and the main resource's patch are still allowed.
    assert_eq!(api.list(&ListParams::default()).await?.items.len(), 1);
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await?;

    server.allow_all();
    assert_eq!(
        api.get("web").await?.labels().get("x").map(String::as_str),
        Some("y")
    );
    let statuses: Vec<u16> = server.requests().iter().map(|r| r.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 403).count(),
        2,
        "{statuses:?}"
    );
    Ok(())
}
