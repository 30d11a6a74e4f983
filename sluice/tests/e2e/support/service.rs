//! A stand-in for a Kubernetes Service in front of several controller replicas: every new
//! TCP connection goes to the next target in turn (kube-proxy picks at random; turns keep a
//! test deterministic), and bytes are copied both ways until either side closes.

use anyhow::Context;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Connections carried at once; more are closed as they arrive.
const MAX_CONNECTIONS: usize = 64;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

pub struct ServiceForwarder {
    pub addr: SocketAddr,
    /// Connections sent to each target so far, in `targets` order.
    sent: Arc<Mutex<Vec<usize>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceForwarder {
    /// Listens on 127.0.0.1; the first connection goes to `targets[0]`.
    pub async fn start(targets: Vec<SocketAddr>) -> anyhow::Result<ServiceForwarder> {
        anyhow::ensure!(!targets.is_empty(), "a Service needs a target");
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the forwarder")?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(Mutex::new(vec![0; targets.len()]));
        let counts = sent.clone();
        let task = tokio::spawn(async move {
            // Dropped with this task: aborting it ends every connection.
            let mut connections = JoinSet::new();
            let mut next = 0;
            while let Ok((mut inbound, _)) = listener.accept().await {
                while connections.try_join_next().is_some() {}
                if connections.len() >= MAX_CONNECTIONS {
                    continue;
                }
                let target = targets[next % targets.len()];
                counts.lock().unwrap_or_else(|p| p.into_inner())[next % targets.len()] += 1;
                next += 1;
                connections.spawn(async move {
                    // A target that is down: the client sees its connection close.
                    let connect = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target));
                    if let Ok(Ok(mut outbound)) = connect.await {
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Ok(ServiceForwarder { addr, sent, task })
    }

    /// Connections sent to each target so far.
    pub fn sent(&self) -> Vec<usize> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ServiceForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
