//! Command-line interface. Every flag has a `SLUICE_*` environment variable.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "sluice",
    version,
    about = "An L7 gateway for Knative and Kubernetes"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,
    /// Log filter, in tracing's EnvFilter syntax. Release builds stop at `debug`: `trace` is
    /// compiled out of them (see the workspace's Cargo.toml).
    #[arg(long, global = true, env = "SLUICE_LOG", default_value = "info")]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the gateway from a directory of Kubernetes-shaped manifests (or the Kubernetes API
    /// with --kubernetes): control plane and proxy in one process, connected in-process.
    Run(Box<RunArgs>),
    /// Run the control plane alone, serving a fleet of `sluice proxy` over xDS.
    Controller(Box<ControllerArgs>),
    /// Run a proxy fed by a `sluice controller` over xDS.
    Proxy(Box<ProxyArgs>),
    /// Run the gateway on a bundled example with local demo backends, and print what to try.
    Demo(DemoArgs),
    /// A synthetic HTTP server (HTTP/1.1 + h2c): a Revision process or a load-test target.
    Responder(ResponderArgs),
    /// Autoscaler tools.
    #[command(subcommand)]
    Autoscaler(AutoscalerCommand),
    /// Print the CustomResourceDefinitions of sluice's own kinds, Route and Revision, as a
    /// multi-document YAML stream.
    Crds(CrdsArgs),
    /// Print the controller's ClusterRole and its Role (the leader election Lease) as a
    /// multi-document YAML stream. Proxies need no permissions: they talk only to the controller.
    Rbac(RbacArgs),
}

#[derive(Args, Debug)]
pub struct CrdsArgs {
    /// Instead of printing, write one file per CRD (`<plural>.sluice.dev.yaml`) into this
    /// directory, as committed in `charts/sluice/crds`.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RbacArgs {
    /// The namespace the controller runs in, where its Role is.
    #[arg(long, default_value = "sluice-system")]
    pub namespace: String,
    /// Instead of printing the roles, write the chart's rules file (`rbac-rules.yaml`) into
    /// this directory, as committed in `charts/sluice/files`.
    #[arg(long, value_name = "DIR")]
    pub write: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ResponderArgs {
    /// Address to listen on. Default: 127.0.0.1:$PORT.
    #[arg(long, env = "SLUICE_RESPONDER_LISTEN")]
    pub listen: Option<String>,
    /// Response status.
    #[arg(long, env = "SLUICE_RESPONDER_STATUS", default_value_t = 200)]
    pub status: u16,
    /// Body size in bytes; 0 means the message plus a newline.
    #[arg(long, env = "SLUICE_RESPONDER_BODY_BYTES", default_value_t = 0)]
    pub body_bytes: usize,
    /// Delay before each response (`?sleep_ms=N` adds to it per request).
    #[arg(long, env = "SLUICE_RESPONDER_LATENCY", default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: Duration,
    /// Body text when --body-bytes is 0.
    #[arg(
        long,
        env = "SLUICE_RESPONDER_MESSAGE",
        default_value = "hello from sluice responder"
    )]
    pub message: String,
    /// Answer 500 to any request beyond this many in flight (a self-check for tests).
    #[arg(long, env = "SLUICE_RESPONDER_MAX_CONCURRENCY")]
    pub max_concurrency: Option<usize>,
}

#[derive(Subcommand, Debug)]
pub enum AutoscalerCommand {
    /// Replay a per-second concurrency trace through the autoscaler's decider.
    Simulate(SimulateArgs),
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    /// CSV lines `second,concurrency[,ready]`.
    #[arg(long)]
    pub trace: PathBuf,
    /// A Revision manifest: its autoscaling annotations and containerConcurrency apply.
    #[arg(long)]
    pub revision: Option<PathBuf>,
    /// A `config-autoscaler` ConfigMap manifest.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// A second configuration to replay the same trace with: a manifest file holding a
    /// `config-autoscaler` ConfigMap, a Revision, or both (one YAML stream). What it holds
    /// replaces `--config` / `--revision` for the second run; the table, the CSV and the plot
    /// then show both runs.
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
    #[arg(long, default_value = "table")]
    pub format: SimulateFormat,
    /// Write an SVG plot of the trace, the averages and the decisions (with `--compare`: both
    /// runs' decisions on one plot).
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum SimulateFormat {
    Table,
    Csv,
}

/// The data plane's listeners and request-path limits.
#[derive(Args, Debug, Clone)]
pub struct GatewayArgs {
    /// External (public) plaintext HTTP listener: HTTP/1.1 and h2c. Repeatable.
    #[arg(
        long,
        env = "SLUICE_HTTP",
        value_delimiter = ',',
        default_value = "0.0.0.0:8080"
    )]
    pub http: Vec<String>,
    /// Cluster-local plaintext HTTP listener: HTTP/1.1 and h2c. Repeatable.
    #[arg(
        long,
        env = "SLUICE_INTERNAL_HTTP",
        value_delimiter = ',',
        default_value = "0.0.0.0:8081"
    )]
    pub internal_http: Vec<String>,
    /// External HTTPS listener(s): TLS 1.2/1.3, ALPN h2 and http/1.1, certificates by SNI from
    /// the KIngress `spec.tls` Secrets (ExternalIP selection). None by default.
    #[arg(long, env = "SLUICE_HTTPS", value_delimiter = ',')]
    pub https: Vec<String>,
    /// Cluster-local HTTPS listener(s): every rule, certificates of the ClusterLocal selection.
    #[arg(long, env = "SLUICE_INTERNAL_HTTPS", value_delimiter = ',')]
    pub internal_https: Vec<String>,
    /// PEM certificate chain served when a client's SNI matches no certificate (or it sends
    /// none). Without it such handshakes fail.
    #[arg(long, env = "SLUICE_DEFAULT_CERTIFICATE", requires = "default_key")]
    pub default_certificate: Option<PathBuf>,
    /// PEM private key of `--default-certificate`.
    #[arg(long, env = "SLUICE_DEFAULT_KEY", requires = "default_certificate")]
    pub default_key: Option<PathBuf>,
    /// Admin listener: /ready, /healthz, /metrics, /config (and /status where a control
    /// plane runs). Unauthenticated and `/config` shows cluster-local hosts and pod
    /// addresses, so it binds loopback by default, like Envoy's admin examples
    /// (`127.0.0.1:9901`); kubelet and Prometheus use `--probe-addr`.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: String,
    /// Probe listener for the kubelet and Prometheus: only /ready, /healthz and /metrics.
    /// Default 0.0.0.0:9090, the port Knative's queue-proxy gives metrics; port 0 picks a
    /// free one.
    #[arg(long, env = "SLUICE_PROBE_ADDR", default_value = "0.0.0.0:9090")]
    pub probe_addr: String,
    /// Proxies in front of this one whose X-Forwarded-* headers are believed: Envoy's
    /// `xff_num_trusted_hops`, default 0 as in Envoy. X-Forwarded-For always gets the peer
    /// address appended. With 0 a client's own X-Forwarded-Host and X-Forwarded-Proto are
    /// replaced by what this hop saw (as Traefik does for untrusted peers); above 0 they are
    /// kept.
    #[arg(long, env = "SLUICE_XFF_TRUSTED_HOPS", default_value_t = 0)]
    pub xff_trusted_hops: u32,
    /// Worker threads (one current-thread runtime each). Default: the number of CPUs.
    #[arg(long, env = "SLUICE_THREADS")]
    pub threads: Option<usize>,
    /// After SIGTERM: stop accepting, then wait at most this long for in-flight requests.
    #[arg(long, env = "SLUICE_SHUTDOWN_GRACE", default_value = "25s", value_parser = humantime::parse_duration)]
    pub shutdown_grace: Duration,
    /// How long a request may wait for a backend that has no ready endpoint.
    #[arg(long, env = "SLUICE_HOLD_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    pub hold_timeout: Duration,
    /// Most requests waiting per backend; more are answered 503 at once. Also caps a
    /// Revision's own bound from its annotation. Default: the Knative activator's breaker
    /// queue depth.
    #[arg(long, env = "SLUICE_MAX_HELD_REQUESTS", default_value_t = 10_000)]
    pub max_held_requests: usize,
    /// Most requests waiting across all backends; more are answered 503 at once. No peer has
    /// a process-wide bound (the Knative activator bounds per revision only); two full
    /// backends' worth.
    #[arg(long, env = "SLUICE_MAX_HELD_REQUESTS_TOTAL", default_value_t = 20_000)]
    pub max_held_requests_total: usize,
    /// Responses that waited in the activator carry `Server-Timing: activator;dur=<ms>`, plus
    /// `cold-start;dur=<ms>` when the revision had no instance when the request came,
    /// appended to the upstream's own. `--server-timing=false` for those who must not show
    /// queue times to clients.
    #[arg(long, env = "SLUICE_SERVER_TIMING", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new(), value_name = "BOOL")]
    pub server_timing: bool,
    /// Passive health: consecutive connect failures that eject an endpoint (0: never).
    /// Default: Envoy's outlier detection (`consecutive_5xx`, which counts connect failures).
    #[arg(
        long,
        env = "SLUICE_OUTLIER_CONSECUTIVE_CONNECT_FAILURES",
        default_value_t = 5
    )]
    pub outlier_consecutive_connect_failures: u32,
    /// How long an ejected endpoint gets no new requests; each repeat ejection without a
    /// successful connect between lasts one more such time (at most 300s). Default: Envoy's
    /// `base_ejection_time`.
    #[arg(long, env = "SLUICE_OUTLIER_EJECTION_TIME", default_value = "30s", value_parser = humantime::parse_duration)]
    pub outlier_ejection_time: Duration,
    /// Most of a backend's endpoints ejected at once, in percent (one always may be).
    /// Default: Envoy's `max_ejection_percent`.
    #[arg(long, env = "SLUICE_OUTLIER_MAX_EJECTION_PERCENT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub outlier_max_ejection_percent: u32,
    /// Upstream TCP connect timeout.
    #[arg(long, env = "SLUICE_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    pub connect_timeout: Duration,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub downstream: DownstreamArgs,
    #[command(flatten)]
    pub access_log: AccessLogArgs,
}

/// What one downstream client may push: each limit a hostile client can reach.
#[derive(Args, Debug, Clone)]
pub struct DownstreamArgs {
    /// Request line plus headers, in KiB; above it 431. Envoy's `max_request_headers_kb`
    /// default (60). HTTP/1 and HTTP/2 (`SETTINGS_MAX_HEADER_LIST_SIZE`).
    #[arg(long, env = "SLUICE_MAX_REQUEST_HEADERS_KB", default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_request_headers_kb: u32,
    /// Header lines per request; above it 431. Envoy's `max_request_headers_count` default.
    #[arg(long, env = "SLUICE_MAX_REQUEST_HEADERS", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_request_headers: u32,
    /// Request target length in bytes; above it 414. nginx's
    /// `large_client_header_buffers` (8k).
    #[arg(long, env = "SLUICE_MAX_URI_BYTES", default_value_t = 8192, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_uri_bytes: u32,
    /// Open connections per listener; more are accepted and closed at once (counted in
    /// `sluice_downstream_connections_rejected_total`). No peer has this default: nginx
    /// allows 512 per worker, HAProxy derives maxconn from the file limit.
    #[arg(long, env = "SLUICE_MAX_CONNECTIONS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// From accept to the first complete request head, protocol sniff and h2c preface
    /// included; the connection is closed after it. nginx's `client_header_timeout` (60s).
    #[arg(long, env = "SLUICE_HEADER_READ_TIMEOUT", default_value = "60s", value_parser = positive_duration)]
    pub header_read_timeout: Duration,
    /// Keep-alive: on HTTP/1 from the end of a response to the next complete request head,
    /// on h2 with no open stream; then the connection is closed (h2: GOAWAY). nginx's
    /// `keepalive_timeout` (75s).
    #[arg(long, env = "SLUICE_IDLE_TIMEOUT", default_value = "75s", value_parser = positive_duration)]
    pub idle_timeout: Duration,
}

/// A humantime duration above zero: a zero timeout would close every connection at once.
fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be above zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl DownstreamArgs {
    /// The limits these flags set.
    pub fn limits(&self) -> sluice_proxy::downstream::DownstreamLimits {
        sluice_proxy::downstream::DownstreamLimits {
            max_head_bytes: self.max_request_headers_kb as usize * 1024,
            max_headers: self.max_request_headers as usize,
            max_uri_bytes: self.max_uri_bytes as usize,
            max_connections: self.max_connections as usize,
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
        }
    }
}

/// The access log: off unless `--access-log` is given.
#[derive(Args, Debug, Clone)]
pub struct AccessLogArgs {
    /// Write one line per request to this file (appended to), `-` for stdout or `stderr`.
    /// Off when absent. Lines go through a bounded queue to a writer thread; a request never
    /// waits for the log.
    #[arg(long, env = "SLUICE_ACCESS_LOG", value_name = "PATH|-|stderr")]
    pub access_log: Option<String>,
    /// `json` (one object per line) or `text` (Common Log Format, then key="value" pairs).
    #[arg(long, env = "SLUICE_ACCESS_LOG_FORMAT", default_value = "json")]
    pub access_log_format: AccessLogFormat,
    /// Most lines waiting for the writer; beyond it lines are dropped and counted in
    /// `sluice_access_log_dropped_total`.
    #[arg(long, env = "SLUICE_ACCESS_LOG_QUEUE", default_value_t = 16_384)]
    pub access_log_queue: usize,
}

impl AccessLogArgs {
    /// The log off, as when no flag is given.
    pub fn off() -> Self {
        AccessLogArgs {
            access_log: None,
            access_log_format: AccessLogFormat::Json,
            access_log_queue: 16_384,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AccessLogFormat {
    Json,
    Text,
}

impl Default for DownstreamArgs {
    /// The flags' defaults (for callers that build `GatewayArgs` in code, like the demo).
    fn default() -> Self {
        DownstreamArgs {
            max_request_headers_kb: 60,
            max_request_headers: 100,
            max_uri_bytes: 8192,
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
        }
    }
}

/// Bounds on HTTP/2 connections and on streams a client (or upstream) stops moving.
#[derive(Args, Debug, Clone, PartialEq)]
pub struct StreamArgs {
    /// Most concurrent streams a client may open on one HTTP/2 connection; more are refused
    /// (RST_STREAM). HAProxy's tune.h2.max-concurrent-streams (100); nginx 128, Envoy unbounded.
    #[arg(long, env = "SLUICE_H2_MAX_CONCURRENT_STREAMS", default_value_t = 100)]
    pub h2_max_concurrent_streams: u32,
    /// KiB of response buffered per HTTP/2 stream while the client's window is closed. Envoy's
    /// edge best practice (64 KiB initial stream window).
    #[arg(long, env = "SLUICE_H2_MAX_SEND_BUFFER_KB", default_value_t = 64)]
    pub h2_max_send_buffer_kb: usize,
    /// PING every HTTP/2 client connection this often, busy or not, to find dead or stuck peers
    /// (0s: never). No peer PINGs by default (Envoy's connection_keepalive is opt-in, with the
    /// same fixed period); 60s is ours.
    #[arg(long, env = "SLUICE_H2_KEEPALIVE_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub h2_keepalive_interval: Duration,
    /// No PING ACK within this closes the connection (gRPC's keepalive timeout and hyper's, 20s).
    #[arg(long, env = "SLUICE_H2_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = humantime::parse_duration)]
    pub h2_keepalive_timeout: Duration,
    /// Rapid reset (CVE-2023-44487): once this many streams have closed on an HTTP/2
    /// connection, and half of them were reset by the client before their answer and within
    /// --h2-premature-reset-lifetime of opening, the connection ends (GOAWAY; 0: never).
    /// Envoy's premature_reset_total_stream_count (500).
    #[arg(long, env = "SLUICE_H2_PREMATURE_RESET_STREAMS", default_value_t = 500)]
    pub h2_premature_reset_streams: usize,
    /// A stream reset by the client sooner than this after opening (and before its answer)
    /// counts as premature. Envoy's premature_reset_min_stream_lifetime_seconds (1s).
    #[arg(long, env = "SLUICE_H2_PREMATURE_RESET_LIFETIME", default_value = "1s", value_parser = humantime::parse_duration)]
    pub h2_premature_reset_lifetime: Duration,
    /// No byte on a request body (408), a response body, or a blocked write to the client for
    /// this long ends the stream (0s: never). Envoy's stream_idle_timeout (5m).
    #[arg(long, env = "SLUICE_STREAM_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub stream_idle_timeout: Duration,
    /// No byte either way on a websocket (HTTP/1.1 upgrade) tunnel for this long closes it (0s:
    /// never). Envoy applies its stream_idle_timeout (5m) to upgrades.
    #[arg(long, env = "SLUICE_WEBSOCKET_IDLE_TIMEOUT", default_value = "5m", value_parser = humantime::parse_duration)]
    pub websocket_idle_timeout: Duration,
}

impl Default for StreamArgs {
    /// The flags' defaults (a test checks they agree).
    fn default() -> Self {
        StreamArgs {
            h2_max_concurrent_streams: 100,
            h2_max_send_buffer_kb: 64,
            h2_keepalive_interval: Duration::from_secs(60),
            h2_keepalive_timeout: Duration::from_secs(20),
            h2_premature_reset_streams: 500,
            h2_premature_reset_lifetime: Duration::from_secs(1),
            stream_idle_timeout: Duration::from_secs(300),
            websocket_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// What the control plane needs to know about the installation.
#[derive(Args, Debug, Clone)]
pub struct ControlArgs {
    /// KIngress class this gateway reconciles.
    #[arg(
        long,
        env = "SLUICE_INGRESS_CLASS",
        default_value = "sluice.ingress.networking.knative.dev"
    )]
    pub ingress_class: String,
    /// Where `config-autoscaler` (and other system ConfigMaps) are read from.
    #[arg(
        long,
        env = "SLUICE_SYSTEM_NAMESPACE",
        default_value = "knative-serving"
    )]
    pub system_namespace: String,
    /// Host written to status.publicLoadBalancer.
    #[arg(
        long,
        env = "SLUICE_PUBLIC_LB_DOMAIN",
        default_value = "sluice.sluice-system.svc.cluster.local"
    )]
    pub public_lb_domain: String,
    /// Host written to status.privateLoadBalancer.
    #[arg(
        long,
        env = "SLUICE_PRIVATE_LB_DOMAIN",
        default_value = "sluice-internal.sluice-system.svc.cluster.local"
    )]
    pub private_lb_domain: String,
    /// How much of each Revision's autoscaler history to keep (one point per second, 40
    /// bytes each, plus the last 64 decisions): served as `/ui` and
    /// `/revisions/{ns}/{name}/trace.csv` on the admin port. 0 keeps none.
    #[arg(long, env = "SLUICE_HISTORY_WINDOW", default_value = "10m", value_parser = humantime::parse_duration)]
    pub history_window: Duration,
}

/// How the xDS port authenticates (the controller needs at least one of a token or mTLS; a
/// proxy uses what its controller asks for).
#[derive(Args, Debug, Clone)]
pub struct XdsAuthArgs {
    /// A file holding the shared bearer token. The controller re-reads it for every new
    /// stream, so it can be rotated without a restart; proxies re-read it on every connect.
    #[arg(long, env = "SLUICE_XDS_TOKEN_FILE")]
    pub xds_token_file: Option<PathBuf>,
    /// PEM CA for mTLS: the controller accepts proxies whose certificates it signed; proxies
    /// check the controller's certificate against it.
    #[arg(long, env = "SLUICE_XDS_CA", requires_all = ["xds_cert", "xds_key"])]
    pub xds_ca: Option<PathBuf>,
    /// PEM certificate chain of this end of the xDS stream (mTLS).
    #[arg(long, env = "SLUICE_XDS_CERT", requires_all = ["xds_ca", "xds_key"])]
    pub xds_cert: Option<PathBuf>,
    /// PEM private key of `--xds-cert`.
    #[arg(long, env = "SLUICE_XDS_KEY", requires_all = ["xds_ca", "xds_cert"])]
    pub xds_key: Option<PathBuf>,
}

/// Kubernetes mode: objects from the API server, statuses and scale written back.
#[derive(Args, Debug, Clone)]
pub struct KubernetesArgs {
    /// Watch the Kubernetes API (KIngress, sluice Route/Revision, Services, EndpointSlices,
    /// Secrets, system ConfigMaps) instead of reading --config; write statuses and scale.
    #[arg(long, env = "SLUICE_KUBERNETES", conflicts_with = "config")]
    pub kubernetes: bool,
    /// kubeconfig file. Default: the in-cluster service account, else `KUBECONFIG`, else
    /// ~/.kube/config.
    #[arg(long, env = "SLUICE_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// Watch only this namespace (default: all). System ConfigMaps are read from
    /// --system-namespace either way.
    #[arg(long, env = "SLUICE_NAMESPACE")]
    pub namespace: Option<String>,
    /// This replica's name in the leader-election Lease (default: $POD_NAME, else the host
    /// name and process id).
    #[arg(long, env = "SLUICE_IDENTITY")]
    pub identity: Option<String>,
    /// The leader-election Lease's name.
    #[arg(long, env = "SLUICE_LEASE_NAME", default_value = "sluice-controller")]
    pub lease_name: String,
    /// The Lease's namespace: the controller's own (default: $POD_NAMESPACE, else
    /// --system-namespace). Its RBAC is a Role there.
    #[arg(long, env = "SLUICE_LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// How long a Lease holds without renewal (a crashed leader is replaced after about this
    /// plus --lease-retry-period).
    #[arg(long, env = "SLUICE_LEASE_DURATION", default_value = "10s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,
    /// A leader that cannot renew for this long stops writing.
    #[arg(long, env = "SLUICE_LEASE_RENEW_DEADLINE", default_value = "7s", value_parser = humantime::parse_duration)]
    pub lease_renew_deadline: Duration,
    /// How often candidates try, and the leader renews.
    #[arg(long, env = "SLUICE_LEASE_RETRY_PERIOD", default_value = "2s", value_parser = humantime::parse_duration)]
    pub lease_retry_period: Duration,
}

impl KubernetesArgs {
    /// Flags that mean nothing without --kubernetes are refused rather than ignored. (clap's
    /// `requires` cannot tell a flag that defaults to false from one given.)
    pub fn check(&self) -> Result<(), String> {
        if self.kubernetes {
            return Ok(());
        }
        let given: Vec<&str> = [
            ("--kubeconfig", self.kubeconfig.is_some()),
            ("--namespace", self.namespace.is_some()),
        ]
        .into_iter()
        .filter_map(|(flag, set)| set.then_some(flag))
        .collect();
        if given.is_empty() {
            Ok(())
        } else {
            Err(format!("{} need --kubernetes", given.join(" and ")))
        }
    }

    /// Kubernetes mode off (the demo), with the flags' defaults.
    pub fn off() -> KubernetesArgs {
        let lease = sluice_controller::kubernetes::lease::LeaseSettings::default();
        KubernetesArgs {
            kubernetes: false,
            kubeconfig: None,
            namespace: None,
            identity: None,
            lease_name: "sluice-controller".to_string(),
            lease_namespace: None,
            lease_duration: lease.lease_duration,
            lease_renew_deadline: lease.renew_deadline,
            lease_retry_period: lease.retry_period,
        }
    }
}

#[derive(Args, Debug)]
pub struct ControllerArgs {
    /// Directory of *.yaml, *.yml and *.json manifests; changes apply live.
    #[arg(long, env = "SLUICE_CONFIG", required_unless_present = "kubernetes")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    /// Where proxies connect (gRPC, delta xDS). Speaks only xDS, and only to authenticated
    /// proxies.
    #[arg(long, env = "SLUICE_XDS_LISTEN", default_value = "0.0.0.0:18000")]
    pub xds_listen: String,
    /// Connections open at once on the xDS port (a proxy holds one); past it a new
    /// connection is closed at once. No peer has a default (Envoy leaves it unset).
    #[arg(long, env = "SLUICE_XDS_MAX_CONNECTIONS", default_value_t = sluice_xds::grpc::DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub xds_max_connections: u32,
    #[command(flatten)]
    pub auth: XdsAuthArgs,
    /// Admin listener: /ready, /healthz, /metrics, /status (and /leader). Loopback by
    /// default: `/status` names every object and proxy.
    #[arg(long, env = "SLUICE_ADMIN", default_value = "127.0.0.1:9902")]
    pub admin: String,
    /// Probe listener for the kubelet and Prometheus: only /ready, /healthz and /metrics.
    /// Default 0.0.0.0:9091, next to the proxies' 9090 so both can share a host.
    #[arg(long, env = "SLUICE_PROBE_ADDR", default_value = "0.0.0.0:9091")]
    pub probe_addr: String,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args, Debug)]
pub struct ProxyArgs {
    /// The controller's xDS address, `host:port`.
    #[arg(long, env = "SLUICE_XDS")]
    pub xds: String,
    /// The TLS name to expect on the controller's certificate (default: the host of `--xds`).
    #[arg(long, env = "SLUICE_XDS_SERVER_NAME")]
    pub xds_server_name: Option<String>,
    /// This proxy's name on the controller's `/status` (default: the host name).
    #[arg(long, env = "SLUICE_NODE_ID")]
    pub node_id: Option<String>,
    #[command(flatten)]
    pub auth: XdsAuthArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Directory of *.yaml, *.yml and *.json manifests; changes apply live.
    #[arg(long, env = "SLUICE_CONFIG", required_unless_present = "kubernetes")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub kubernetes: KubernetesArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub control: ControlArgs,
}

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Where to write the example manifests (default: a fresh temporary directory).
    #[arg(long, env = "SLUICE_DEMO_DIR")]
    pub dir: Option<PathBuf>,
    /// Public listener for the demo.
    #[arg(long, env = "SLUICE_DEMO_HTTP", default_value = "127.0.0.1:8080")]
    pub http: String,
    /// Admin listener for the demo.
    #[arg(long, env = "SLUICE_DEMO_ADMIN", default_value = "127.0.0.1:9901")]
    pub admin: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_flag_defaults_are_the_lease_defaults() {
        let cli = Cli::try_parse_from(["sluice", "run", "--kubernetes"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        let off = KubernetesArgs::off();
        assert!(run.kubernetes.kubernetes);
        assert_eq!(run.kubernetes.lease_duration, off.lease_duration);
        assert_eq!(
            run.kubernetes.lease_renew_deadline,
            off.lease_renew_deadline
        );
        assert_eq!(run.kubernetes.lease_retry_period, off.lease_retry_period);
        assert_eq!(run.kubernetes.lease_name, off.lease_name);
        assert_eq!(run.config, None);
    }

    #[test]
    fn stream_flag_defaults_match_stream_args_default() {
        let cli = Cli::try_parse_from(["sluice", "run", "--config", "d"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(run.gateway.streams, StreamArgs::default());
        let cli = Cli::try_parse_from([
            "sluice",
            "run",
            "--config",
            "d",
            "--stream-idle-timeout",
            "1500ms",
            "--h2-max-concurrent-streams",
            "7",
            "--h2-premature-reset-streams",
            "0",
            "--h2-premature-reset-lifetime",
            "250ms",
        ])
        .expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(
            run.gateway.streams.stream_idle_timeout,
            Duration::from_millis(1500)
        );
        assert_eq!(run.gateway.streams.h2_max_concurrent_streams, 7);
        assert_eq!(run.gateway.streams.h2_premature_reset_streams, 0);
        assert_eq!(
            run.gateway.streams.h2_premature_reset_lifetime,
            Duration::from_millis(250)
        );
    }

    #[test]
    fn server_timing_is_on_by_default_and_turns_off() {
        let parse = |extra: &[&str]| {
            let cli = Cli::try_parse_from(
                ["sluice", "proxy", "--xds", "c:18000"]
                    .iter()
                    .chain(extra)
                    .copied(),
            )
            .expect("parses");
            let Command::Proxy(proxy) = cli.command else {
                panic!("not proxy");
            };
            proxy.gateway.server_timing
        };
        assert!(parse(&[]));
        assert!(!parse(&["--server-timing=false"]));
        assert!(!parse(&["--server-timing", "off"]));
        assert!(parse(&["--server-timing=true"]));
        assert!(
            Cli::try_parse_from(["sluice", "proxy", "--xds", "c", "--server-timing=maybe"])
                .is_err()
        );
    }

    #[test]
    fn admin_defaults_to_loopback_and_probes_get_their_own_port() {
        let cli = Cli::try_parse_from(["sluice", "run", "--config", "d"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        assert_eq!(run.gateway.admin, "127.0.0.1:9901");
        assert_eq!(run.gateway.probe_addr, "0.0.0.0:9090");
        assert_eq!(run.gateway.xff_trusted_hops, 0);
        let cli = Cli::try_parse_from(["sluice", "proxy", "--xds", "c:18000"]).expect("parses");
        let Command::Proxy(proxy) = cli.command else {
            panic!("not proxy");
        };
        assert_eq!(proxy.gateway.admin, "127.0.0.1:9901");
        assert_eq!(proxy.gateway.probe_addr, "0.0.0.0:9090");
        let cli = Cli::try_parse_from(["sluice", "controller", "--config", "d"]).expect("parses");
        let Command::Controller(controller) = cli.command else {
            panic!("not controller");
        };
        assert_eq!(controller.admin, "127.0.0.1:9902");
        assert_eq!(controller.probe_addr, "0.0.0.0:9091");
    }

    #[test]
    fn downstream_limits_default_to_their_peers_and_parse() {
        let cli = Cli::try_parse_from(["sluice", "run", "--config", "d"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        let limits = run.gateway.downstream.limits();
        assert_eq!(limits.max_head_bytes, 60 * 1024);
        assert_eq!(limits.max_headers, 100);
        assert_eq!(limits.max_uri_bytes, 8192);
        assert_eq!(limits.max_connections, 10_000);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(60));
        assert_eq!(limits.idle_timeout, Duration::from_secs(75));
        // The struct default (used by the demo) and the flags agree.
        let defaults = DownstreamArgs::default().limits();
        assert_eq!(format!("{defaults:?}"), format!("{limits:?}"));
        assert_eq!(
            format!(
                "{:?}",
                sluice_proxy::downstream::DownstreamLimits::default()
            ),
            format!("{limits:?}")
        );
        let cli = Cli::try_parse_from([
            "sluice",
            "proxy",
            "--xds",
            "c:18000",
            "--max-request-headers-kb",
            "8",
            "--max-request-headers",
            "20",
            "--max-uri-bytes",
            "100",
            "--max-connections",
            "3",
            "--header-read-timeout",
            "1s",
            "--idle-timeout",
            "500ms",
        ])
        .expect("parses");
        let Command::Proxy(proxy) = cli.command else {
            panic!("not proxy");
        };
        let limits = proxy.gateway.downstream.limits();
        assert_eq!(limits.max_head_bytes, 8 * 1024);
        assert_eq!(limits.max_headers, 20);
        assert_eq!(limits.max_uri_bytes, 100);
        assert_eq!(limits.max_connections, 3);
        assert_eq!(limits.header_read_timeout, Duration::from_secs(1));
        assert_eq!(limits.idle_timeout, Duration::from_millis(500));
        let zero = Cli::try_parse_from([
            "sluice",
            "run",
            "--config",
            "d",
            "--max-request-headers-kb",
            "0",
        ]);
        assert!(zero.is_err());
        for flag in [
            "--max-request-headers",
            "--max-uri-bytes",
            "--max-connections",
            "--header-read-timeout",
            "--idle-timeout",
        ] {
            let value = if flag.ends_with("timeout") { "0s" } else { "0" };
            let zero = Cli::try_parse_from(["sluice", "run", "--config", "d", flag, value]);
            assert!(zero.is_err(), "{flag} 0 accepted");
        }
    }

    #[test]
    fn access_log_is_off_by_default_and_takes_a_target_format_and_queue() {
        let cli = Cli::try_parse_from(["sluice", "run", "--config", "d"]).expect("parses");
        let Command::Run(run) = cli.command else {
            panic!("not run");
        };
        let log = run.gateway.access_log;
        assert_eq!(log.access_log, None);
        assert_eq!(log.access_log_format, AccessLogFormat::Json);
        assert_eq!(log.access_log_queue, 16_384);
        let off = AccessLogArgs::off();
        assert_eq!(
            (off.access_log, off.access_log_format, off.access_log_queue),
            (None, AccessLogFormat::Json, 16_384)
        );
        let cli = Cli::try_parse_from([
            "sluice",
            "proxy",
            "--xds",
            "c:18000",
            "--access-log",
            "-",
            "--access-log-format",
            "text",
            "--access-log-queue",
            "10",
        ])
        .expect("parses");
        let Command::Proxy(proxy) = cli.command else {
            panic!("not proxy");
        };
        let log = proxy.gateway.access_log;
        assert_eq!(log.access_log.as_deref(), Some("-"));
        assert_eq!(log.access_log_format, AccessLogFormat::Text);
        assert_eq!(log.access_log_queue, 10);
    }

    #[test]
    fn config_and_kubernetes_exclude_each_other_and_one_is_needed() {
        let both = Cli::try_parse_from(["sluice", "controller", "--kubernetes", "--config", "d"]);
        assert!(both.is_err());
        let neither = Cli::try_parse_from(["sluice", "controller"]);
        assert!(neither.is_err());
        let namespace_alone =
            Cli::try_parse_from(["sluice", "run", "--config", "d", "--namespace", "x"]);
        let Ok(Cli {
            command: Command::Run(run),
            ..
        }) = namespace_alone
        else {
            panic!("parses");
        };
        assert_eq!(
            run.kubernetes.check(),
            Err("--namespace need --kubernetes".to_string())
        );
        assert_eq!(KubernetesArgs::off().check(), Ok(()));
    }
}
