//! A fleet across network namespaces, the way proxies on separate hosts see a controller: each
//! proxy in its own namespace, joined by a veth to a bridge in the test's namespace, where the
//! controller and the backends listen on the bridge's address. Needs root (iproute2's `ip`,
//! CAP_SYS_ADMIN and CAP_NET_ADMIN); without them the test fails and says why.

use crate::support::*;
use anyhow::Context;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;

/// Runs `ip args...`; fails with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (iproute2; scripts/setup installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// A bridge with `10.213.<net>.1/24` and network namespaces attached to it by veth pairs, each
/// with `10.213.<net>.<10 + i>/24`. Names are unique per run (they carry the test's pid); every
/// namespace and the bridge are deleted on drop, also when the test fails half-way.
struct Lab {
    tag: u32,
    net: u8,
    bridge: Option<String>,
    namespaces: Vec<String>,
}

impl Lab {
    fn create(n: usize) -> anyhow::Result<Lab> {
        let tag = std::process::id();
        let mut lab = Lab {
            tag,
            net: free_subnet(tag)?,
            bridge: None,
            namespaces: Vec::new(),
        };
        for i in 0..n {
            let ns = format!("sluice-fleet-{tag}-{i}");
            ip(&["netns", "add", &ns]).with_context(|| {
                format!(
                    "cannot create network namespace {ns}: this test needs root (CAP_SYS_ADMIN, \
                     CAP_NET_ADMIN) and network namespace support"
                )
            })?;
            lab.namespaces.push(ns);
        }
        let bridge = format!("slb{tag}");
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        lab.bridge = Some(bridge.clone());
        ip(&[
            "addr",
            "add",
            &format!("{}/24", lab.bridge_ip()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for (i, ns) in lab.namespaces.iter().enumerate() {
            let (host_end, ns_end) = (format!("slv{tag}h{i}"), format!("slv{tag}n{i}"));
            ip(&[
                "link", "add", &host_end, "type", "veth", "peer", "name", &ns_end, "netns", ns,
            ])?;
            ip(&["link", "set", &host_end, "master", &bridge, "up"])?;
            let ns_ip = format!("{}/24", lab.ns_ip(i));
            ip(&["-n", ns, "addr", "add", &ns_ip, "dev", &ns_end])?;
            ip(&["-n", ns, "link", "set", &ns_end, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(lab)
    }

    fn bridge_ip(&self) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 213, self.net, 1))
    }

    fn ns_ip(&self, i: usize) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 213, self.net, 10 + i as u8))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting a namespace deletes its veth end, and with it the peer on the bridge.
        for ns in &self.namespaces {
            if let Err(error) = ip(&["netns", "del", ns]) {
                eprintln!("lab {}: {error:#}", self.tag);
            }
        }
        if let Some(bridge) = &self.bridge {
            if let Err(error) = ip(&["link", "del", bridge]) {
                eprintln!("lab {}: {error:#}", self.tag);
            }
        }
    }
}

/// A `10.213.<net>.0/24` no address or route of this host uses yet, starting from the pid.
fn free_subnet(tag: u32) -> anyhow::Result<u8> {
    let out = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .context("running `ip` (iproute2; scripts/setup installs it)")?;
    let routes = String::from_utf8_lossy(&out.stdout);
    (0..250u32)
        .map(|i| ((tag + i) % 250) as u8)
        .find(|net| !routes.contains(&format!("10.213.{net}.")))
        .context("no free 10.213.x.0/24")
}

/// `sluice responder` answering `message` on `addr`.
async fn responder(addr: SocketAddr, message: &str) -> anyhow::Result<Process> {
    let mut command = Command::new(SLUICE);
    command
        .args([
            "responder",
            "--listen",
            &addr.to_string(),
            "--message",
            message,
        ])
        .env("SLUICE_LOG", log_filter());
    let mut process = Process::spawn(&format!("responder-{message}"), command)?;
    eventually(
        &format!("responder {message} listening"),
        WAIT,
        async || {
            process.check_running()?;
            Ok(tokio::net::TcpStream::connect(addr).await.ok().map(drop))
        },
    )
    .await?;
    Ok(process)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_in_network_namespaces() -> anyhow::Result<()> {
    let lab = Lab::create(3)?;
    let bridge = lab.bridge_ip();
    let (one_addr, two_addr) = (free_addr(bridge)?, free_addr(bridge)?);
    let _one = responder(one_addr, "one").await?;
    let _two = responder(two_addr, "two").await?;
    let host = "hello.example.com";
    let services = service("ns", "one", "http", 80, &[one_addr])
        + &service("ns", "two", "http", 80, &[two_addr]);
    let controller = Controller::start_with(&services, bridge, None).await?;
    controller.write(
        "10-hello.yaml",
        &simple_ingress("ns", "hello", host, "one", "80"),
    )?;
    let mut proxies = Vec::new();
    for i in 0..3 {
        let spec = ProxySpec {
            ip: lab.ns_ip(i),
            netns: Some(lab.namespaces[i].clone()),
            ..controller.proxy(&format!("ns-proxy-{i}"))?
        };
        proxies.push(Proxy::spawn(&spec)?);
    }
    for proxy in &mut proxies {
        proxy.wait_ready().await?;
    }
    controller.wait_ingress_ready("ns", "hello").await?;
    for (i, proxy) in proxies.iter().enumerate() {
        assert_eq!(proxy.http.ip(), lab.ns_ip(i));
        proxy
            .wait_serves(host, "one", |r| r.status == 200 && r.text() == "one\n")
            .await?;
        // The controller saw it connect from its namespace.
        let entries = controller.proxy_entries().await?;
        let entry = entries
            .iter()
            .find(|e| e["name"] == proxy.node_id.as_str())
            .context("listed")?;
        let address = entry["status"]["proxy"]["address"]
            .as_str()
            .unwrap_or_default();
        assert!(
            address.starts_with(&format!("{}:", lab.ns_ip(i))),
            "{} connected from {address}",
            proxy.node_id
        );
    }
    let before = wait_converged(&controller, &proxies).await?;

    controller.write(
        "10-hello.yaml",
        &simple_ingress("ns", "hello", host, "two", "80"),
    )?;
    controller
        .wait_status("Ingress", "ns", "hello", |s| {
            s["generation"] == 2 && is_ready(s)
        })
        .await?;
    for proxy in &proxies {
        let r = proxy.get(host, "/").await?;
        assert_eq!(
            (r.status, r.text().as_ref()),
            (200, "two\n"),
            "{} after Ready",
            proxy.node_id
        );
    }
    let after = wait_converged(&controller, &proxies).await?;
    assert_ne!(before, after);
    // Dropped in reverse order: the processes, then the lab they ran in.
    Ok(())
}
