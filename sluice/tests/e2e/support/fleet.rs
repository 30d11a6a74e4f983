//! The split planes as separate processes: one `sluice controller` serving a fleet of
//! `sluice proxy` over xDS, each process on free ports, killed and reaped when its handle drops.
//!
//! Every wait is bounded and polls through [`eventually`]; every process's stderr is kept (for
//! assertions on what it logged) and echoed to the test's stderr with its name, so a failing
//! test shows the logs of the whole fleet.

use super::{is_ready, write_manifest, Admin, SLUICE, WAIT};
use anyhow::{bail, Context};
use serde_json::Value;
use sluice_testkit::Response;
use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// How often bounded waits poll.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until it yields `Some`, or fails after `bound`. `Ok(None)` and `Err` both mean
/// "not yet"; the last error (use it to say what was seen) is in the failure message.
pub async fn eventually<T>(
    what: &str,
    bound: Duration,
    mut probe: impl AsyncFnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + bound;
    loop {
        let last = match probe().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => None,
            Err(error) => Some(error),
        };
        if Instant::now() > deadline {
            match last {
                Some(error) => bail!("{what}: not reached within {bound:?}; last: {error:#}"),
                None => bail!("{what}: not reached within {bound:?}"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` for `window` and fails at the first poll that does not hold.
pub async fn holds_for(
    what: &str,
    window: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < window {
        check()
            .await
            .with_context(|| format!("{what}: broken after {:?}", started.elapsed()))?;
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// A port on `ip` that was free a moment ago, for processes that need the number up front
/// (from [`sluice_testkit::free_port`]'s range when it is free on `ip` too). Another process may
/// still take it first: [`Process::listening`] tells.
pub fn free_addr(ip: IpAddr) -> anyhow::Result<SocketAddr> {
    let preferred = SocketAddr::new(ip, sluice_testkit::free_port());
    let listener = std::net::TcpListener::bind(preferred)
        .or_else(|_| std::net::TcpListener::bind((ip, 0)))
        .with_context(|| format!("binding a free port on {ip}"))?;
    Ok(listener.local_addr()?)
}

/// A child process: SIGKILLed and reaped when dropped. Its stderr is kept and echoed to the
/// test's stderr as `[name] line`.
pub struct Process {
    name: String,
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Process {
    pub fn spawn(name: &str, mut command: Command) -> anyhow::Result<Process> {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning {name}: {command:?}"))?;
        let log = Arc::new(Mutex::new(String::new()));
        if let Some(stderr) = child.stderr.take() {
            let (log, name) = (log.clone(), name.to_string());
            // Ends when the pipe closes, i.e. when the process (and whatever inherited its
            // stderr) is gone.
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{name}] {line}");
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        Ok(Process {
            name: name.to_string(),
            child,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Sends `signal` (`STOP`, `CONT`, `TERM`, ...) with kill(1).
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -{signal} {} failed", self.name);
        Ok(())
    }

    /// Fails if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited: {status}; its log:\n{}", self.name, self.log());
        }
        Ok(())
    }

    /// Waits for it to exit, bounded.
    pub async fn wait_exit(&mut self, bound: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "{} did not exit within {bound:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Whether it listens on each of `addrs`, or another process does (ports are picked free,
    /// then released, so another test may take one before this process binds it).
    pub fn listening(&self, addrs: &[SocketAddr]) -> anyhow::Result<Listening> {
        let pid = self.pid();
        let mut ours = std::collections::HashSet::new();
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))? {
            let Ok(target) = std::fs::read_link(fd?.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
            {
                ours.insert(inode.to_string());
            }
        }
        // Its own network namespace's table: `ip netns exec` keeps the pid.
        let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp"))?;
        let mut found = vec![false; addrs.len()];
        for line in table.lines().skip(1) {
            let columns: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A"), Some(inode)) =
                (columns.get(1), columns.get(3), columns.get(9))
            else {
                continue;
            };
            let Some(local) = parse_proc_addr(local) else {
                continue;
            };
            for (i, addr) in addrs.iter().enumerate() {
                if local.port() != addr.port()
                    || !(local.ip() == addr.ip() || local.ip().is_unspecified())
                {
                    continue;
                }
                if !ours.contains(*inode) {
                    return Ok(Listening::Taken(*addr));
                }
                found[i] = true;
            }
        }
        Ok(if found.iter().all(|f| *f) {
            Listening::All
        } else {
            Listening::Missing
        })
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> anyhow::Result<ExitStatus> {
        let _ = self.child.kill();
        Ok(self.child.wait()?)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// See [`Process::listening`].
#[derive(Debug, PartialEq, Eq)]
pub enum Listening {
    All,
    Missing,
    Taken(SocketAddr),
}

/// `0100007F:1F90` (an IPv4 address as the kernel's u32, and a port, in hex) as an address.
fn parse_proc_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let ip = u32::from_str_radix(ip, 16).ok()?;
    let port = u16::from_str_radix(port, 16).ok()?;
    Some(SocketAddr::from((Ipv4Addr::from(ip.to_ne_bytes()), port)))
}

/// How a process came up.
enum Startup {
    Up,
    /// Another process holds one of its ports: start again elsewhere.
    PortTaken(SocketAddr),
}

/// How often a process is started again on new ports because another took one of its own.
const PORT_RETRIES: u32 = 3;

/// How an end of the xDS stream authenticates.
#[derive(Clone, Debug)]
pub enum XdsAuth {
    /// A bearer token in a file (the same file on both ends).
    Token(PathBuf),
    /// Mutual TLS: the CA that signed the other end, this end's certificate and key.
    Mtls {
        ca: PathBuf,
        cert: PathBuf,
        key: PathBuf,
    },
}

impl XdsAuth {
    /// Writes `token` to `dir/file` and returns token auth with it.
    pub fn token_in(dir: &Path, file: &str, token: &str) -> anyhow::Result<XdsAuth> {
        let path = dir.join(file);
        std::fs::write(&path, format!("{token}\n"))?;
        Ok(XdsAuth::Token(path))
    }

    fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        match self {
            XdsAuth::Token(file) => vec!["--xds-token-file".into(), path(file)],
            XdsAuth::Mtls { ca, cert, key } => vec![
                "--xds-ca".into(),
                path(ca),
                "--xds-cert".into(),
                path(cert),
                "--xds-key".into(),
                path(key),
            ],
        }
    }
}

/// The log filter of every fleet process (`SLUICE_TEST_LOG` overrides it).
pub fn log_filter() -> String {
    std::env::var("SLUICE_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

/// `sluice controller` on a manifest directory, with its xDS and admin ports.
pub struct Controller {
    process: Option<Process>,
    pub xds: SocketAddr,
    pub admin: SocketAddr,
    auth: XdsAuth,
    /// Where its objects come from: `--config <manifests>`, or `--kubernetes …`.
    source: Vec<String>,
    /// `manifests/` (the `--config` directory) and the generated token.
    pub dir: tempfile::TempDir,
}

impl Controller {
    /// On 127.0.0.1 with a fresh token, `manifests` as `00-initial.yaml`; waits until it serves.
    pub async fn start(manifests: &str) -> anyhow::Result<Controller> {
        Controller::start_with(manifests, LOCALHOST, None).await
    }

    /// On `ip` with `auth` (a fresh token when `None`).
    pub async fn start_with(
        manifests: &str,
        ip: IpAddr,
        auth: Option<XdsAuth>,
    ) -> anyhow::Result<Controller> {
        Controller::start_with_args(manifests, ip, auth, &[]).await
    }

    /// [`Controller::start_with`], with `extra_args` on its command line.
    pub async fn start_with_args(
        manifests: &str,
        ip: IpAddr,
        auth: Option<XdsAuth>,
        extra_args: &[&str],
    ) -> anyhow::Result<Controller> {
        let dir = tempfile::tempdir()?;
        std::fs::create_dir(dir.path().join("manifests"))?;
        let auth = match auth {
            Some(auth) => auth,
            None => XdsAuth::token_in(dir.path(), "xds-token", "the-fleet-token")?,
        };
        let mut source = vec![
            "--config".to_string(),
            dir.path().join("manifests").display().to_string(),
        ];
        source.extend(extra_args.iter().map(|a| a.to_string()));
        let mut controller = Controller {
            process: None,
            xds: free_addr(ip)?,
            admin: free_addr(ip)?,
            auth,
            source,
            dir,
        };
        controller.write("00-initial.yaml", manifests)?;
        controller.come_up(ip).await?;
        Ok(controller)
    }

    /// `sluice controller --kubernetes` on `kubeconfig`, with `extra_args`, on 127.0.0.1.
    pub async fn start_kubernetes(
        kubeconfig: &Path,
        extra_args: &[&str],
    ) -> anyhow::Result<Controller> {
        let dir = tempfile::tempdir()?;
        let auth = XdsAuth::token_in(dir.path(), "xds-token", "the-fleet-token")?;
        let mut source = vec![
            "--kubernetes".to_string(),
            "--kubeconfig".to_string(),
            kubeconfig.display().to_string(),
        ];
        source.extend(extra_args.iter().map(|a| a.to_string()));
        let mut controller = Controller {
            process: None,
            xds: free_addr(LOCALHOST)?,
            admin: free_addr(LOCALHOST)?,
            auth,
            source,
            dir,
        };
        controller.come_up(LOCALHOST).await?;
        Ok(controller)
    }

    /// Launches it, on other ports if its ports were taken meanwhile.
    async fn come_up(&mut self, ip: IpAddr) -> anyhow::Result<()> {
        let controller = self;
        for _ in 0..PORT_RETRIES {
            match controller.launch().await? {
                Startup::Up => return Ok(()),
                Startup::PortTaken(_) => {
                    controller.xds = free_addr(ip)?;
                    controller.admin = free_addr(ip)?;
                }
            }
        }
        bail!("controller: its ports were taken {PORT_RETRIES} times")
    }

    pub fn manifests(&self) -> PathBuf {
        self.dir.path().join("manifests")
    }

    /// Writes a manifest atomically.
    pub fn write(&self, file: &str, contents: &str) -> anyhow::Result<()> {
        write_manifest(&self.manifests(), file, contents)
    }

    /// The auth its proxies use: the same token file (mTLS proxies bring their own files).
    pub fn proxy_auth(&self) -> anyhow::Result<XdsAuth> {
        match &self.auth {
            XdsAuth::Token(file) => Ok(XdsAuth::Token(file.clone())),
            XdsAuth::Mtls { .. } => {
                bail!("an mTLS controller's proxies need their own certificates")
            }
        }
    }

    /// A proxy spec for this controller, listening on 127.0.0.1.
    pub fn proxy(&self, node_id: &str) -> anyhow::Result<ProxySpec> {
        Ok(ProxySpec {
            node_id: node_id.to_string(),
            xds: self.xds,
            auth: self.proxy_auth()?,
            ip: LOCALHOST,
            netns: None,
        })
    }

    /// SIGKILL (no shutdown of any kind), then reap.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut process) = self.process.take() {
            process.kill()?;
        }
        Ok(())
    }

    /// Starts it again on the same directory and ports, and waits until both ports serve.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        match self.launch().await? {
            Startup::Up => Ok(()),
            Startup::PortTaken(addr) => bail!("controller: {addr} was taken while it was down"),
        }
    }

    /// (Re)starts the process and waits until it listens on both ports and is ready.
    async fn launch(&mut self) -> anyhow::Result<Startup> {
        self.kill()?;
        let mut command = Command::new(SLUICE);
        command
            .arg("controller")
            .args(&self.source)
            .args(["--xds-listen", &self.xds.to_string()])
            .args(["--admin", &self.admin.to_string()])
            .args(["--probe-addr", "127.0.0.1:0"])
            .args(self.auth.args())
            .env("SLUICE_LOG", log_filter());
        let process = self.process.insert(Process::spawn("controller", command)?);
        let (xds, admin) = (self.xds, self.admin);
        eventually("controller ready", WAIT, async || {
            if let Err(exited) = process.check_running() {
                // It binds the xDS port itself and exits if it cannot.
                if process.log().contains("binding the xDS port") {
                    return Ok(Some(Startup::PortTaken(xds)));
                }
                return Err(exited);
            }
            match process.listening(&[xds, admin])? {
                Listening::Taken(addr) => return Ok(Some(Startup::PortTaken(addr))),
                Listening::Missing => return Ok(None),
                Listening::All => {}
            }
            let ready = sluice_testkit::http1_request(admin, "GET", "admin", "/ready", &[], None)
                .await?
                .status
                == 200;
            Ok(ready.then_some(Startup::Up))
        })
        .await
    }

    pub fn log(&self) -> String {
        self.process.as_ref().map(Process::log).unwrap_or_default()
    }

    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().map(Process::pid)
    }

    /// The `/status` entries of connected proxies.
    pub async fn proxy_entries(&self) -> anyhow::Result<Vec<Value>> {
        Ok(self
            .statuses()
            .await?
            .into_iter()
            .filter(|s| s["kind"] == "Proxy")
            .collect())
    }
}

impl Admin for Controller {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

/// What a proxy is started with.
#[derive(Clone, Debug)]
pub struct ProxySpec {
    pub node_id: String,
    pub xds: SocketAddr,
    pub auth: XdsAuth,
    /// Where its listeners bind.
    pub ip: IpAddr,
    /// Run it as `ip netns exec <netns> sluice proxy ...`.
    pub netns: Option<String>,
}

/// `sluice proxy` with plaintext listeners and an admin port.
pub struct Proxy {
    spec: ProxySpec,
    process: Process,
    retries: u32,
    pub node_id: String,
    pub http: SocketAddr,
    pub internal: SocketAddr,
    pub admin: SocketAddr,
}

impl Proxy {
    /// Starts it; does not wait for anything.
    pub fn spawn(spec: &ProxySpec) -> anyhow::Result<Proxy> {
        let addrs = Proxy::ports(spec)?;
        let [http, internal, admin] = addrs;
        Ok(Proxy {
            spec: spec.clone(),
            process: Proxy::launch(spec, addrs)?,
            retries: 0,
            node_id: spec.node_id.clone(),
            http,
            internal,
            admin,
        })
    }

    /// Free ports for `--http`, `--internal-http` and `--admin`.
    fn ports(spec: &ProxySpec) -> anyhow::Result<[SocketAddr; 3]> {
        // Its namespace's address does not exist here to try a bind on; nothing else runs there.
        let port = || -> anyhow::Result<SocketAddr> {
            match spec.netns {
                Some(_) => Ok(SocketAddr::new(spec.ip, sluice_testkit::free_port())),
                None => free_addr(spec.ip),
            }
        };
        Ok([port()?, port()?, port()?])
    }

    /// Another process took one of its ports: start it again on new ones.
    fn relaunch(&mut self, taken: SocketAddr) -> anyhow::Result<()> {
        self.retries += 1;
        anyhow::ensure!(
            self.retries <= PORT_RETRIES,
            "proxy {}: its ports were taken {PORT_RETRIES} times, last {taken}",
            self.node_id
        );
        let addrs = Proxy::ports(&self.spec)?;
        self.process.kill()?;
        self.process = Proxy::launch(&self.spec, addrs)?;
        [self.http, self.internal, self.admin] = addrs;
        Ok(())
    }

    fn launch(
        spec: &ProxySpec,
        [http, internal, admin]: [SocketAddr; 3],
    ) -> anyhow::Result<Process> {
        let mut command = match &spec.netns {
            Some(netns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", netns, SLUICE]);
                c
            }
            None => Command::new(SLUICE),
        };
        command
            .arg("proxy")
            .args(["--xds", &spec.xds.to_string()])
            .args(["--node-id", &spec.node_id])
            .args(spec.auth.args())
            .args(["--http", &http.to_string()])
            .args(["--internal-http", &internal.to_string()])
            .args(["--admin", &admin.to_string()])
            .args(["--probe-addr", "127.0.0.1:0"])
            .args(["--threads", "1", "--shutdown-grace", "1s"])
            .env("SLUICE_LOG", log_filter());
        Process::spawn(&spec.node_id, command)
    }

    /// Starts it and waits until it is ready.
    pub async fn start(spec: &ProxySpec) -> anyhow::Result<Proxy> {
        let mut proxy = Proxy::spawn(spec)?;
        proxy.wait_ready().await?;
        Ok(proxy)
    }

    /// Waits until its admin port is its own (it is up before any config arrives).
    pub async fn wait_admin(&mut self) -> anyhow::Result<()> {
        loop {
            let admin = self.admin;
            let process = &mut self.process;
            let started = eventually(&format!("proxy {} admin", self.node_id), WAIT, async || {
                process.check_running()?;
                Ok(match process.listening(&[admin])? {
                    Listening::All => Some(Startup::Up),
                    Listening::Taken(addr) => Some(Startup::PortTaken(addr)),
                    Listening::Missing => None,
                })
            })
            .await?;
            match started {
                Startup::Up => return Ok(()),
                Startup::PortTaken(addr) => self.relaunch(addr)?,
            }
        }
    }

    /// Waits for `/ready` (its first full config is applied) and for its listeners.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        loop {
            self.wait_admin().await?;
            let (http, internal, admin) = (self.http, self.internal, self.admin);
            let process = &mut self.process;
            let started = eventually(&format!("proxy {} ready", self.node_id), WAIT, async || {
                process.check_running()?;
                let ready =
                    sluice_testkit::http1_request(admin, "GET", "admin", "/ready", &[], None)
                        .await?
                        .status
                        == 200;
                if !ready {
                    return Ok(None);
                }
                // Listeners start right after readiness.
                Ok(match process.listening(&[http, internal])? {
                    Listening::All => Some(Startup::Up),
                    Listening::Taken(addr) => Some(Startup::PortTaken(addr)),
                    Listening::Missing => None,
                })
            })
            .await?;
            match started {
                Startup::Up => return Ok(()),
                Startup::PortTaken(addr) => self.relaunch(addr)?,
            }
        }
    }

    pub fn process(&mut self) -> &mut Process {
        &mut self.process
    }

    pub fn log(&self) -> String {
        self.process.log()
    }

    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        self.process.signal(signal)
    }

    /// One request on a fresh connection to its external listener.
    pub async fn get(&self, host: &str, path: &str) -> anyhow::Result<Response> {
        sluice_testkit::http1_request(self.http, "GET", host, path, &[], None).await
    }

    /// Polls `host/` through this proxy until `check` accepts the response (bounded by [`WAIT`]).
    pub async fn wait_serves(
        &self,
        host: &str,
        what: &str,
        check: impl Fn(&Response) -> bool,
    ) -> anyhow::Result<Response> {
        eventually(
            &format!("proxy {} serving {host}: {what}", self.node_id),
            WAIT,
            async || {
                let r = self.get(host, "/").await?;
                if check(&r) {
                    return Ok(Some(r));
                }
                bail!("got {} {:?}", r.status, r.text())
            },
        )
        .await
    }
}

impl Admin for Proxy {
    fn admin_addr(&self) -> SocketAddr {
        self.admin
    }
}

/// Starts `n` proxies of `controller` on 127.0.0.1 (`proxy-0`, ...) and waits until all are
/// ready.
pub async fn start_proxies(controller: &Controller, n: usize) -> anyhow::Result<Vec<Proxy>> {
    let mut proxies = (0..n)
        .map(|i| Proxy::spawn(&controller.proxy(&format!("proxy-{i}"))?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for proxy in &mut proxies {
        proxy.wait_ready().await?;
    }
    Ok(proxies)
}

/// Waits until the controller lists exactly `proxies`, each up to date with a `version` equal
/// to that proxy's own `/config` version, all the same; returns that version.
pub async fn wait_converged(controller: &Controller, proxies: &[Proxy]) -> anyhow::Result<String> {
    eventually("fleet converged on one version", WAIT, async || {
        let entries = controller.proxy_entries().await?;
        let mut names: Vec<&str> = entries.iter().filter_map(|e| e["name"].as_str()).collect();
        names.sort_unstable();
        let mut want: Vec<&str> = proxies.iter().map(|p| p.node_id.as_str()).collect();
        want.sort_unstable();
        anyhow::ensure!(
            names == want,
            "controller lists proxies {names:?}, want {want:?}"
        );
        let mut common: Option<String> = None;
        for proxy in proxies {
            let entry = entries
                .iter()
                .find(|e| e["name"] == proxy.node_id.as_str())
                .context("listed above")?;
            let listed = entry["status"]["proxy"]["version"]
                .as_str()
                .with_context(|| format!("{} not up to date: {entry:#}", proxy.node_id))?;
            let applied = proxy.version().await?;
            anyhow::ensure!(
                applied == listed,
                "{} applied {applied}, controller lists {listed}",
                proxy.node_id
            );
            match &common {
                Some(v) => anyhow::ensure!(v == listed, "versions differ: {v} vs {listed}"),
                None => common = Some(listed.to_string()),
            }
        }
        Ok(common)
    })
    .await
}

/// The status of Ingress `ns/name` once it is Ready at generation `generation`.
pub async fn wait_ingress_ready_at(
    controller: &Controller,
    ns: &str,
    name: &str,
    generation: u64,
) -> anyhow::Result<Value> {
    controller
        .wait_status("Ingress", ns, name, |s| {
            s["generation"] == generation && is_ready(s)
        })
        .await
}
