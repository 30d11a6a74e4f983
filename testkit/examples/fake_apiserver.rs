//! Runs a FakeApiServer until killed, writing a kubeconfig to the path given: for poking at it
//! with kubectl (or Helm) by hand. It serves sluice's kinds and what its chart installs.

use sluice_testkit::kube_api::{FakeApiServer, ResourceType};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "kubeconfig".to_owned());
    let server = FakeApiServer::start_with(ResourceType::with_chart_kinds()).await?;
    server.write_kubeconfig(std::path::Path::new(&path))?;
    println!("{} (kubeconfig {path})", server.url());
    let mut seen = 0;
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let requests = server.requests();
        for r in &requests[seen..] {
            let body: String = r.body.chars().take(300).collect();
            println!(
                "{} {}?{} -> {} [{:?}] {body}",
                r.method, r.path, r.query, r.status, r.content_type
            );
        }
        seen = requests.len();
    }
}
