//! kube-runtime's watcher against the fake: initial sync, live changes, relist after
//! compaction, recovery across an API server restart.

use std::collections::BTreeSet;
use std::pin::Pin;

use anyhow::Context as _;
use futures_util::{Stream, StreamExt as _};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt as _;
use kube::{Api, ResourceExt as _};
use serde_json::{json, Value};
use sluice_testkit::kube_api::FakeApiServer;

use super::{kube_client, SOON};

type Events = Pin<Box<dyn Stream<Item = Result<Event<EndpointSlice>, watcher::Error>> + Send>>;

fn slice(name: &str, address: &str) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": name, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "hello"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

async fn watch_slices(server: &FakeApiServer) -> anyhow::Result<Events> {
    let api: Api<EndpointSlice> = Api::namespaced(kube_client(server).await?, "default");
    // Backoff as a controller would have it: without it a refused connection is retried hot.
    Ok(watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed())
}

/// The next event, errors included; fails when none comes soon.
async fn next(events: &mut Events) -> anyhow::Result<Result<Event<EndpointSlice>, watcher::Error>> {
    tokio::time::timeout(SOON * 2, events.next())
        .await
        .context("no watcher event in time")?
        .context("watcher stream ended")
}

/// The next event that is not an error (errors are what a watcher reports while it recovers).
async fn next_ok(events: &mut Events) -> anyhow::Result<Event<EndpointSlice>> {
    loop {
        if let Ok(event) = next(events).await? {
            return Ok(event);
        }
    }
}

/// Reads `Init`, the `InitApply`s and `InitDone` of one (re)list; returns the names listed.
async fn initial_sync(events: &mut Events) -> anyhow::Result<BTreeSet<String>> {
    match next_ok(events).await? {
        Event::Init => {}
        other => anyhow::bail!("want Init, got {}", describe(&other)),
    }
    let mut names = BTreeSet::new();
    loop {
        match next_ok(events).await? {
            Event::InitApply(slice) => {
                names.insert(slice.name_any());
            }
            Event::InitDone => return Ok(names),
            other => anyhow::bail!("want InitApply or InitDone, got {}", describe(&other)),
        }
    }
}

fn describe(event: &Event<EndpointSlice>) -> String {
    match event {
        Event::Init => "Init".to_owned(),
        Event::InitApply(o) => format!("InitApply({})", o.name_any()),
        Event::InitDone => "InitDone".to_owned(),
        Event::Apply(o) => format!("Apply({})", o.name_any()),
        Event::Delete(o) => format!("Delete({})", o.name_any()),
    }
}

fn names(list: &[&str]) -> BTreeSet<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

#[tokio::test]
async fn watcher_syncs_then_follows_changes() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.apply(slice("a", "10.0.0.1"))?;
    let mut events = watch_slices(&server).await?;
    assert_eq!(initial_sync(&mut events).await?, names(&["a"]));

    server.apply(slice("b", "10.0.0.2"))?;
    assert_eq!(describe(&next_ok(&mut events).await?), "Apply(b)");
    server.apply(slice("a", "10.0.0.3"))?;
    match next_ok(&mut events).await? {
        Event::Apply(changed) => {
            assert_eq!(changed.endpoints[0].addresses, ["10.0.0.3"]);
        }
        other => anyhow::bail!("want Apply(a), got {}", describe(&other)),
    }
    assert!(server.delete("discovery.k8s.io/v1", "endpointslices", "default", "b"));
    assert_eq!(describe(&next_ok(&mut events).await?), "Delete(b)");

    let watches: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.query.contains("watch=true"))
        .map(|r| r.query)
        .collect();
    assert!(
        watches[0].contains("allowWatchBookmarks=true"),
        "{watches:?}"
    );
    Ok(())
}

#[tokio::test]
async fn watcher_relists_after_compaction_and_loses_nothing() -> anyhow::Result<()> {
    let server = FakeApiServer::start().await?;
    server.apply(slice("a", "10.0.0.1"))?;
    server.apply(slice("b", "10.0.0.2"))?;
    let mut events = watch_slices(&server).await?;
    assert_eq!(initial_sync(&mut events).await?, names(&["a", "b"]));
    server.apply(slice("c", "10.0.0.3"))?;
    assert_eq!(describe(&next_ok(&mut events).await?), "Apply(c)");
    let lists_before = server
        .requests()
        .iter()
        .filter(|r| !r.query.contains("watch"))
        .count();

    server.compact();
    server.disconnect_watches();
    // The watcher resumes from its last version, gets the in-stream 410 and relists.
    match next(&mut events).await? {
        Err(watcher::Error::WatchError(status)) => assert_eq!(status.code, 410),
        Err(other) => anyhow::bail!("want the 410, got {other}"),
        Ok(event) => anyhow::bail!("want the 410, got {}", describe(&event)),
    }
    assert_eq!(initial_sync(&mut events).await?, names(&["a", "b", "c"]));
    let lists_after = server
        .requests()
        .iter()
        .filter(|r| !r.query.contains("watch"))
        .count();
    assert_eq!(lists_after, lists_before + 1);

    server.apply(slice("d", "10.0.0.4"))?;
    assert_eq!(describe(&next_ok(&mut events).await?), "Apply(d)");
    Ok(())
}

#[tokio::test]
async fn watcher_recovers_across_an_api_server_restart() -> anyhow::Result<()> {
    let mut server = FakeApiServer::start().await?;
    server.apply(slice("a", "10.0.0.1"))?;
    let mut events = watch_slices(&server).await?;
    assert_eq!(initial_sync(&mut events).await?, names(&["a"]));
    let url = server.url();

    server.stop().await;
    // Changed while the server is down: the watcher must see it after the restart.
    server.apply(slice("b", "10.0.0.2"))?;
    assert!(server.delete("discovery.k8s.io/v1", "endpointslices", "default", "a"));
    server.restart().await?;
    assert_eq!(server.url(), url, "same port");

    let mut seen = Vec::new();
    while seen.len() < 2 {
        seen.push(describe(&next_ok(&mut events).await?));
    }
    assert_eq!(seen, ["Apply(b)", "Delete(a)"]);
    Ok(())
}
