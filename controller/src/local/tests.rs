//! [`LocalProcesses`] with real child processes (a small Python listener, or `sh`) and a fake
//! [`EndpointPublisher`] that records what is published and whose `applied` resolves at once.
//! Every wait is bounded.

use super::*;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::Instant as StdInstant;

/// A listener on `$PORT` (127.0.0.1). On SIGTERM it writes `$MARKER/<port>.term` and exits,
/// unless `$IGNORE_TERM` is set.
const SERVER: &str = r#"
import os, signal, socket
port = int(os.environ["PORT"])
marker = os.environ.get("MARKER")
def term(*_):
    if marker:
        open(os.path.join(marker, "%d.term" % port), "w").close()
    os._exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if os.environ.get("IGNORE_TERM") else term)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(64)
while True:
    c, _ = s.accept()
    c.close()
"#;

/// The Python interpreter itself (not a version manager's shim), found once.
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let output = std::process::Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("python3 runs");
        String::from_utf8(output.stdout)
            .expect("a path")
            .trim()
            .to_string()
    })
}

#[derive(Default)]
struct FakePublisher {
    seq: AtomicU64,
    /// (revision, ports, sequence) per publish.
    publishes: Mutex<Vec<(String, Vec<u16>, u64)>>,
    /// (sequence, `.term` markers present then) per `applied` call.
    applied: Mutex<Vec<(u64, Vec<String>)>>,
    markers: Option<PathBuf>,
}

impl FakePublisher {
    fn last_ports(&self, revision: &str) -> Option<(Vec<u16>, u64)> {
        lock(&self.publishes)
            .iter()
            .rev()
            .find(|(r, _, _)| r == revision)
            .map(|(_, ports, seq)| (ports.clone(), *seq))
    }
}

impl EndpointPublisher for FakePublisher {
    fn publish(&self, target: &ScalingTarget, ports: &[u16]) -> u64 {
        let seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        let mut ports = ports.to_vec();
        ports.sort_unstable();
        lock(&self.publishes).push((target.id.clone(), ports, seq));
        seq
    }

    fn applied(
        &self,
        seq: u64,
        _bound: Duration,
    ) -> Pin<Box<dyn Future<Output = bool> + Send + '_>> {
        let markers = self
            .markers
            .as_deref()
            .map(term_markers)
            .unwrap_or_default();
        lock(&self.applied).push((seq, markers));
        Box::pin(async { true })
    }
}

fn term_markers(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".term"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn target(name: &str, command: Vec<String>, env: &[(&str, &str)]) -> ScalingTarget {
    ScalingTarget {
        id: format!("ns/{name}"),
        namespace: "ns".to_string(),
        name: name.to_string(),
        scaling: Err("not used by the scaler".to_string()),
        container_concurrency: 0,
        timeout_seconds: 5,
        backend: ScalingBackend::Process {
            command,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        },
    }
}

fn server(name: &str, env: &[(&str, &str)]) -> ScalingTarget {
    target(
        name,
        vec![python().to_string(), "-c".to_string(), SERVER.to_string()],
        env,
    )
}

fn sh(name: &str, script: &str, env: &[(&str, &str)]) -> ScalingTarget {
    target(
        name,
        vec!["sh".to_string(), "-c".to_string(), script.to_string()],
        env,
    )
}

/// Polls `condition` every 10 ms until it holds; false after `bound`.
async fn eventually(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = StdInstant::now() + bound;
    loop {
        if condition() {
            return true;
        }
        if StdInstant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn accepts(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        Duration::from_secs(1),
    )
    .is_ok()
}

fn lines(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |text| text.lines().count())
}

/// The pids of a Revision's instances, as the supervisor knows them.
fn pids(processes: &LocalProcesses, revision: &str) -> Vec<u32> {
    lock(&processes.instances)
        .get(revision)
        .map(|list| list.iter().filter_map(|i| i.pid).collect())
        .unwrap_or_default()
}

/// Gone, or a zombie nobody has reaped yet.
fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

const READY_BOUND: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_become_ready_and_are_published() {
    let publisher = Arc::new(FakePublisher::default());
    let processes = LocalProcesses::new(publisher.clone());
    let target = server("web", &[]);
    processes.scale(&target, 2).await.expect("starts");
    assert_eq!(processes.running(&target), 2, "starting counts as running");

    assert!(
        eventually(READY_BOUND, || processes.ready(&target) == 2).await,
        "both instances ready"
    );
    let (ports, _) = publisher.last_ports("ns/web").expect("published");
    assert_eq!(ports.len(), 2, "{ports:?}");
    assert_ne!(ports[0], ports[1]);
    let pids = pids(&processes, "ns/web");
    for port in &ports {
        assert!(accepts(*port), "port {port} accepts connections");
        assert!(
            pids.iter().any(|pid| listens_on(*pid, *port)),
            "port {port} is held by an instance"
        );
    }
    processes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_publishes_without_the_instance_then_terminates_it() {
    let markers = tempfile::tempdir().expect("temp dir");
    let marker_dir = markers.path().to_string_lossy().into_owned();
    let publisher = Arc::new(FakePublisher {
        markers: Some(markers.path().to_path_buf()),
        ..FakePublisher::default()
    });
    let processes = LocalProcesses::new(publisher.clone());
    let target = server("web", &[("MARKER", &marker_dir)]);
    processes.scale(&target, 2).await.expect("starts");
    assert!(eventually(READY_BOUND, || processes.ready(&target) == 2).await);
    let (before, _) = publisher.last_ports("ns/web").expect("published");

    processes.scale(&target, 1).await.expect("scales down");
    // Published at once, without the instance, which is still running.
    let (after, seq) = publisher.last_ports("ns/web").expect("published");
    assert_eq!(after.len(), 1);
    let gone = *before
        .iter()
        .find(|p| !after.contains(p))
        .expect("one port left the endpoints");
    assert_eq!(processes.running(&target), 1);
    assert_eq!(processes.ready(&target), 1);

    // It is terminated only once the removal is applied, and then it is.
    let marker = format!("{gone}.term");
    assert!(
        eventually(Duration::from_secs(10), || term_markers(markers.path())
            .contains(&marker))
        .await,
        "the drained instance got SIGTERM"
    );
    let waited = lock(&publisher.applied).clone();
    let (applied_seq, terminated_then) = waited.first().cloned().expect("drain waited");
    assert_eq!(
        applied_seq, seq,
        "the drain waited for the publish without it"
    );
    assert!(
        !terminated_then.contains(&marker),
        "not terminated before the removal was applied"
    );
    assert!(eventually(Duration::from_secs(5), || !accepts(gone)).await);
    assert!(accepts(after[0]), "the other instance keeps serving");
    assert_eq!(term_markers(markers.path()), [marker]);
    processes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_on_tells_a_child_listener_from_the_test_process_own() {
    // A child listening on a port of its choosing, which it prints.
    let script = "import socket, sys\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen(8)\nprint(s.getsockname()[1], flush=True)\nsys.stdin.read()\n";
    let (child, child_port) =
        spawn_printing_port(std::process::Command::new(python()).args(["-c", script]));
    let child_pid = child.0.id();

    let own = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("binds");
    let own_port = own.local_addr().expect("bound").port();
    let unused = free_port().expect("a free port");

    assert!(listens_on(child_pid, child_port), "the child's own port");
    assert!(
        !listens_on(child_pid, own_port),
        "a port the test process holds is not the child's"
    );
    assert!(listens_on(std::process::id(), own_port), "but the test's");
    assert!(!listens_on(child_pid, unused), "a port nobody listens on");

    // A parent counts as listening on its children's ports.
    let (shell, grandchild_port) = spawn_printing_port(std::process::Command::new("sh").args([
        "-c",
        &format!("{} -c \"$0\"; :", python()),
        script,
    ]));
    assert!(listens_on(shell.0.id(), grandchild_port));
}

/// Spawns `command` (stdin kept open so it waits) and reads the port it prints on its first line.
fn spawn_printing_port(command: &mut std::process::Command) -> (KillOnDrop, u16) {
    let child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let mut child = KillOnDrop(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the process prints its port");
    (child, line.trim().parse().expect("a port"))
}

/// Kills (and reaps) a child when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // The shell's own child goes with its stdin.
        drop(self.0.stdin.take());
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_that_exits_at_once_is_restarted_a_bounded_number_of_times() {
    let dir = tempfile::tempdir().expect("temp dir");
    let starts = dir.path().join("starts");
    let starts_env = starts.to_string_lossy().into_owned();
    let publisher = Arc::new(FakePublisher::default());
    let processes = LocalProcesses::new(publisher.clone());
    let target = sh(
        "crash",
        "echo start >> \"$STARTS\"; exit 3",
        &[("STARTS", &starts_env)],
    );
    processes.scale(&target, 1).await.expect("starts");

    let attempts = PORT_ATTEMPTS as usize;
    assert!(
        eventually(Duration::from_secs(20), || lines(&starts) == attempts
            && processes.running(&target) == 0)
        .await,
        "{} starts, {} running",
        lines(&starts),
        processes.running(&target)
    );
    // And no more: it is reported not running, and nothing was ever published as ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&starts), attempts);
    assert_eq!(processes.running(&target), 0);
    assert_eq!(processes.ready(&target), 0);
    assert!(lock(&publisher.publishes)
        .iter()
        .all(|(_, ports, _)| ports.is_empty()));
    processes.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_before_it_is_ready_is_not_started_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let starts = dir.path().join("starts");
    let starts_env = starts.to_string_lossy().into_owned();
    // Never listens; dies on SIGTERM.
    let script = "echo start >> \"$STARTS\"; exec sleep 30";

    // Scaled down while starting.
    let processes = LocalProcesses::new(Arc::new(FakePublisher::default()));
    let target = sh("slow", script, &[("STARTS", &starts_env)]);
    processes.scale(&target, 1).await.expect("starts");
    assert!(eventually(Duration::from_secs(10), || lines(&starts) == 1).await);
    let pid = pids(&processes, "ns/slow")[0];
    processes.scale(&target, 0).await.expect("scales down");
    assert!(eventually(Duration::from_secs(10), || exited(pid)).await);
    assert!(eventually(Duration::from_secs(5), || processes.running(&target) == 0).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&starts), 1, "not started again");
    assert_eq!(processes.running(&target), 0);
    processes.shutdown().await;

    // Shut down while starting.
    let processes = LocalProcesses::new(Arc::new(FakePublisher::default()));
    let other = dir.path().join("other");
    let other_env = other.to_string_lossy().into_owned();
    let target = sh("slow", script, &[("STARTS", &other_env)]);
    processes.scale(&target, 1).await.expect("starts");
    assert!(eventually(Duration::from_secs(10), || lines(&other) == 1).await);
    processes.shutdown().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(lines(&other), 1, "not started again");
    assert_eq!(processes.running(&target), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_every_instance_within_the_grace_period() {
    let publisher = Arc::new(FakePublisher::default());
    let processes = LocalProcesses::new(publisher.clone());
    let polite = server("polite", &[]);
    let stubborn = server("stubborn", &[("IGNORE_TERM", "1")]);
    processes.scale(&polite, 1).await.expect("starts");
    processes.scale(&stubborn, 2).await.expect("starts");
    assert!(
        eventually(READY_BOUND, || processes.ready(&polite) == 1
            && processes.ready(&stubborn) == 2)
        .await
    );
    let mut all = pids(&processes, "ns/polite");
    all.extend(pids(&processes, "ns/stubborn"));
    assert_eq!(all.len(), 3);
    let ports: Vec<u16> = ["ns/polite", "ns/stubborn"]
        .iter()
        .flat_map(|r| publisher.last_ports(r).expect("published").0)
        .collect();

    let started = StdInstant::now();
    processes.shutdown().await;
    let took = started.elapsed();
    assert!(
        took <= STOP_GRACE + Duration::from_millis(1500),
        "shutdown took {took:?}"
    );
    assert!(
        took >= STOP_GRACE - Duration::from_millis(100),
        "the stubborn ones had the grace period: {took:?}"
    );
    assert!(
        eventually(Duration::from_secs(2), || all
            .iter()
            .all(|pid| exited(*pid)))
        .await,
        "every instance exited"
    );
    for port in ports {
        assert!(!accepts(port), "port {port} closed");
    }
    assert_eq!(processes.running(&polite), 0);
    assert_eq!(processes.running(&stubborn), 0);
    // Once stopped, nothing starts again.
    let refused = processes.scale(&polite, 1).await;
    assert!(
        matches!(&refused, Err(ScaleError::Start { reason, .. }) if reason.contains("shutting down")),
        "{refused:?}"
    );
    assert_eq!(processes.running(&polite), 0);
}

#[tokio::test]
async fn only_process_revisions_are_scaled() {
    let processes = LocalProcesses::new(Arc::new(FakePublisher::default()));
    let mut responder = server("r", &[]);
    responder.backend = ScalingBackend::Responder;
    let error = processes
        .scale(&responder, 1)
        .await
        .expect_err("not a process revision");
    assert!(
        matches!(error, ScaleError::Unsupported { ref revision, .. } if revision == "ns/r"),
        "{error}"
    );
    let empty = target("empty", Vec::new(), &[]);
    let error = processes
        .scale(&empty, 1)
        .await
        .expect_err("nothing to run");
    assert_eq!(
        error.to_string(),
        "revision ns/empty: cannot start an instance: empty command"
    );
    assert_eq!(processes.running(&empty), 0);
}
