//! A stand-in for a Kubernetes Service in front of several controller replicas: every new
//! TCP connection goes to the next target in turn (kube-proxy picks at random; turns keep a
//! test deterministic), and bytes are copied both ways until either side closes. A target
//! that refuses connections is passed over for the next one, as a Service drops the endpoint
//! of a pod whose container died.

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
    /// Connections carried to each target so far, in `targets` order.
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
                let first = next % targets.len();
                next += 1;
                let (targets, counts) = (targets.clone(), counts.clone());
                connections.spawn(async move {
                    for i in 0..targets.len() {
                        let target = (first + i) % targets.len();
                        let connect = TcpStream::connect(targets[target]);
                        let Ok(Ok(mut outbound)) =
                            tokio::time::timeout(CONNECT_TIMEOUT, connect).await
                        else {
                            continue;
                        };
                        counts.lock().unwrap_or_else(|p| p.into_inner())[target] += 1;
                        let _ = outbound.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        return;
                    }
                    // Every target is down: the client sees its connection close.
                });
            }
        });
        Ok(ServiceForwarder { addr, sent, task })
    }

    /// Connections carried to each target so far.
    pub fn sent(&self) -> Vec<usize> {
        self.sent.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for ServiceForwarder {
    fn drop(&mut self) {
        self.task.abort();
    }
}
