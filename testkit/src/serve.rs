//! Accept loop and task ownership shared by the test servers.
//!
//! Every task a server starts (accept loop, connections, hyper's per-stream tasks, websocket
//! sessions) races a `watch` channel whose only sender lives in [`Running`]. Dropping the server
//! handle drops the sender, which ends all of them.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Spawns tasks that end when the owning server is dropped. Also hyper's executor.
#[derive(Clone, Debug)]
pub(crate) struct Spawner {
    stop: watch::Receiver<()>,
}

impl Spawner {
    pub(crate) fn spawn<F>(&self, fut: F) -> JoinHandle<()>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let mut stop = self.stop.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = fut => {}
                // Nothing is ever sent: this resolves (with an error) when the sender is dropped.
                _ = stop.changed() => {}
            }
        })
    }
}

impl<F> hyper::rt::Executor<F> for Spawner
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.spawn(fut);
    }
}

/// A listening server; dropping it stops every task it started.
#[derive(Debug)]
pub(crate) struct Running {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    _stop: watch::Sender<()>,
}

impl Running {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Closes the listener right away; the other tasks see the sender go on their next poll.
        self.accept.abort();
    }
}

/// Binds `127.0.0.1:0` and hands every accepted connection (with `TCP_NODELAY` set) to `serve`.
pub(crate) async fn listen<S, Fut>(connections: Arc<AtomicU64>, serve: S) -> anyhow::Result<Running>
where
    S: Fn(TcpStream, Spawner) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    listen_at(
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        connections,
        serve,
    )
    .await
}

/// Like [`listen`], on `addr` (a backend restarted on the address it had).
pub(crate) async fn listen_at<S, Fut>(
    addr: SocketAddr,
    connections: Arc<AtomicU64>,
    serve: S,
) -> anyhow::Result<Running>
where
    S: Fn(TcpStream, Spawner) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind {addr}"))?;
    let addr = listener.local_addr().context("local address of listener")?;
    let (stop, stopped) = watch::channel(());
    let spawner = Spawner { stop: stopped };
    let accept = spawner.spawn({
        let spawner = spawner.clone();
        async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _peer)) => {
                        connections.fetch_add(1, Ordering::Relaxed);
                        // Best effort: a socket that refuses NODELAY still works, only slower.
                        let _ = stream.set_nodelay(true);
                        spawner.spawn(serve(stream, spawner.clone()));
                    }
                    // Out of file descriptors and the like: back off instead of spinning.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            }
        }
    });
    Ok(Running {
        addr,
        accept,
        _stop: stop,
    })
}
