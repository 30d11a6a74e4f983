use super::*;
use crate::hub::HubMetrics;
use crate::local::EndpointPublisher;
use crate::manifest::parse_file;
use crate::scaler::ScaleError;
use crate::TranslateConfig;
use async_trait::async_trait;
use prometheus::Registry;
use std::sync::Mutex;

/// Revision `ns/web-1` scaling Deployment `web`, whose Service has two ready endpoints.
const TWO_READY: &str = "---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-0, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.0.0.1], conditions: {ready: true}}, {addresses: [10.0.0.2], conditions: {ready: true}}]
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata: {name: web-1, namespace: ns}
spec:
  service: {name: web, port: 80}
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
";

/// Records every scale request, and when it came.
#[derive(Default)]
struct Recorded {
    requests: Mutex<Vec<(Instant, u32)>>,
}

impl Recorded {
    fn since(&self, at: Instant) -> Vec<u32> {
        let requests = self.requests.lock().expect("not poisoned");
        requests
            .iter()
            .filter(|(when, _)| *when >= at)
            .map(|(_, replicas)| *replicas)
            .collect()
    }
}

#[async_trait]
impl Scaler for Recorded {
    async fn scale(&self, _target: &ScalingTarget, replicas: u32) -> Result<(), ScaleError> {
        let mut requests = self.requests.lock().expect("not poisoned");
        requests.push((Instant::now(), replicas));
        Ok(())
    }
    fn ready(&self, _target: &ScalingTarget) -> u32 {
        0
    }
    fn running(&self, _target: &ScalingTarget) -> u32 {
        2
    }
}

#[tokio::test(start_paused = true)]
async fn a_replica_taking_the_lease_holds_the_ready_instances_rather_than_its_idle_history() {
    let hub = Hub::new(
        TranslateConfig::default(),
        HubMetrics::new(&Registry::new()).expect("fresh registry"),
    );
    let file = parse_file("web.yaml".to_string(), TWO_READY);
    assert!(file.problems.is_empty(), "{:?}", file.problems);
    hub.edit(|c| c.apply_manifest_files(vec![file], &[]));
    let publisher: Arc<dyn EndpointPublisher> = hub.clone();
    let scaler = Arc::new(Recorded::default());
    let (leader_tx, leader) = watch::channel(false);
    let autoscaler = Autoscaler::new(
        hub,
        LocalProcesses::new(publisher),
        RevisionMetrics::new(&Registry::new()).expect("fresh registry"),
    )
    .with_cluster_scaler(scaler.clone())
    .with_leader(leader);
    let (stop, shutdown) = watch::channel(false);
    let task = tokio::spawn(async move { autoscaler.run(shutdown).await });

    // A standby hears no proxy: its history is idle, and it would scale down (the cluster
    // scaler drops a standby's requests).
    tokio::time::sleep(Duration::from_secs(120)).await;
    let standby = scaler.since(Instant::now() - Duration::from_secs(10));
    assert!(
        standby.iter().any(|r| *r < 2),
        "the idle history wants fewer: {standby:?}"
    );

    // Leading, it starts afresh: the ready instances are held while proxies reconnect.
    leader_tx.send_replace(true);
    let took_over = Instant::now();
    tokio::time::sleep(Duration::from_secs(30)).await;
    let leading = scaler.since(took_over);
    assert!(
        !leading.is_empty() && leading.iter().all(|r| *r == 2),
        "requests after taking over: {leading:?}"
    );
    stop.send_replace(true);
    task.await.expect("no panic");
}
