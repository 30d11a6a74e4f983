"""The backend and the four targets (direct, sluice, nginx, HAProxy), with their generated configs.

Layout: every proxy runs under `taskset -c 1`; the backend and the load generators under
`taskset -c 0` (the harness pins itself to CPU 0 too). Each target is started for one `Setup` and
stopped at the end of the scenario that started it.
"""

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from .procs import child_pids, cpu_ticks, free_port, http_get, http_json, rss_kib, stop, tree_cpu_ticks, wait_port

PROXY_CPU = "1"
CLIENT_CPU = "0"
BENCH_HOST = "bench.example.com"
INGRESS_CLASS = "sluice.ingress.networking.knative.dev"


def _log(env, name):
    """A log file in the work directory for a target's stdout and stderr (kept with --keep-workdir)."""
    return open(os.path.join(env.workdir, name), "w")


def _logpath(env, name):
    return os.path.join(env.workdir, name)


# What every proxy adds to a request from the harness (over plain HTTP, from 127.0.0.1), checked
# through the backend's echo of the headers it received.
HEADERS_PATH = "/__backend/headers"


def forwarded_headers(host, proto="http"):
    return {"x-forwarded-for": ["127.0.0.1"], "x-forwarded-proto": [proto], "x-forwarded-host": [host]}


def table_host(i):
    return f"h{i:05d}.bench.example.com"


@dataclass(frozen=True)
class Setup:
    """What a scenario needs from the backend and the proxies."""

    body_bytes: int = 0
    # Upstream protocol for the h2c listener's traffic: "h1" (HTTP/1.1 keep-alive) or "h2c" (gRPC).
    upstream: str = "h1"
    # Size of the host routing table; requests go to a host in the middle of it.
    hosts: int = 1
    # Also serve BENCH_HOST over TLS (env.tls holds the certificate files).
    tls: bool = False
    # Client connections nginx and HAProxy must hold at once, when more than their usual limits
    # allow (the memory scenario's 10,000 idle connections); 0 keeps the usual limits.
    conns: int = 0

    @property
    def request_host(self):
        return BENCH_HOST if self.hosts == 1 else table_host(self.hosts // 2)


class Backend:
    """`sluice-testkit-backend` on CPU 0, with its connection/request counters."""

    def __init__(self, env, body_bytes):
        self.port = free_port()
        argv = ["taskset", "-c", CLIENT_CPU, os.path.join(env.bin_dir, "sluice-testkit-backend"),
                "--listen", f"127.0.0.1:{self.port}", "--body-bytes", str(body_bytes)]
        env.log.add("backend", argv)
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
        wait_port(self.port, proc=self.proc)

    @property
    def pids(self):
        return [self.proc.pid]

    def stats(self):
        """(connections accepted, requests served) so far. The count includes this call's own
        connection, so the difference of two calls is one more than the connections in between."""
        s = http_json(self.port, "/__backend/stats")
        return s["connections"], s["requests"]

    def stop(self):
        stop(self.proc)


class Target:
    """One thing a load generator can be pointed at."""

    def __init__(self, name, kind, port, h2c_port, host, pid_fn=lambda: [], procs=(), admin_port=None,
                 startup_s=None, tls_port=None):
        self.name, self.kind, self.port, self.h2c_port, self.host = name, kind, port, h2c_port, host
        self.tls_port = tls_port
        self._pid_fn = pid_fn
        self.procs = list(procs)
        self.admin_port = admin_port
        self.startup_s = startup_s
        self.conf_dir = None
        # The proxy's top process (nginx's master, HAProxy's): CPU is then counted over it and
        # every child it started, the retired ones too (procs.tree_cpu_ticks), not only the
        # workers alive at the time of reading.
        self.cpu_root = None
        self.conf_path = None

    def pids(self):
        return self._pid_fn()

    def cpu(self):
        if self.cpu_root is not None:
            return tree_cpu_ticks(self.cpu_root)
        return cpu_ticks(self.pids())

    def rss_kib(self):
        pids = self.pids()
        return rss_kib(pids) if pids else None

    def metrics(self):
        """sluice's admin /metrics as {name: summed value}; None for other targets."""
        if self.admin_port is None:
            return None
        status, body = http_get(self.admin_port, "/metrics")
        if status != 200:
            return None
        out = {}
        for line in body.decode().splitlines():
            if not line or line.startswith("#"):
                continue
            name_labels, _, value = line.rpartition(" ")
            name = name_labels.split("{", 1)[0]
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                pass
        return out

    def check(self, host=None, path="/"):
        """One request through the target; raises unless it answers 200. A proxy must also
        forward the same X-Forwarded-* headers as the others (forwarded_headers), so that a comparison
        of their CPU compares the same work."""
        host = host or self.host
        status, body = http_get(self.port, path, host)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET {path} Host {host} answered {status}: {body[:200]!r}")
        if self.kind in ("direct", "relay"):
            return
        status, body = http_get(self.port, HEADERS_PATH, host)
        if status != 200:
            raise RuntimeError(f"{self.name}: GET {HEADERS_PATH} Host {host} answered {status}: {body[:200]!r}")
        got = json.loads(body)
        want = forwarded_headers(host)
        wrong = {name: got.get(name) for name, values in want.items() if got.get(name) != values}
        if wrong:
            raise RuntimeError(f"{self.name} forwarded {wrong}, not {want}: the proxies must do the same work")

    def stop(self):
        for p in self.procs:
            stop(p)


def direct(backend, setup):
    return Target("direct", "direct", backend.port, backend.port, setup.request_host)


def start_relay(env, backend, setup, name="relay"):
    """`sluice-testkit-relay` on the proxies' CPU: a floor, not a peer. It copies bytes between each
    client connection and one upstream connection of its own, four system calls per request and no
    HTTP, so its growth with the connection count is the kernel's share of any proxy's."""
    port = free_port()
    argv = ["taskset", "-c", PROXY_CPU, os.path.join(env.bin_dir, "sluice-testkit-relay"),
            "--listen", f"127.0.0.1:{port}", "--upstream", f"127.0.0.1:{backend.port}"]
    env.log.add("relay", argv)
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=_log(env, f"relay-{port}.log"))
    wait_port(port, proc=proc, log=_logpath(env, f"relay-{port}.log"))
    return Target(name, "relay", port, port, setup.request_host, lambda: [proc.pid], [proc])


# --- sluice -----------------------------------------------------------------------------------

def sluice_service(name, backend_port, upstream):
    port_name = "http2" if upstream == "h2c" else "http"
    app = "\n    appProtocol: kubernetes.io/h2c" if upstream == "h2c" else ""
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: perf}}
spec:
  ports:
  - name: {port_name}
    port: 80
    targetPort: {backend_port}{app}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: perf, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: {port_name}, port: {backend_port}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
"""


def sluice_ingress(name, hosts, splits, headers=None, tls_secret=None):
    """A KIngress `perf/name` for `hosts`, splitting over [(service, percent)]; with `tls_secret`,
    the hosts are also served over HTTPS with that Secret's certificate."""
    split_lines = "".join(
        f"        - {{serviceNamespace: perf, serviceName: {svc}, servicePort: 80, percent: {pct}}}\n"
        for svc, pct in splits)
    tls = ""
    if tls_secret:
        tls = f"\n  tls:\n  - hosts: [{', '.join(hosts)}]\n    secretName: {tls_secret}\n    secretNamespace: perf"
    append = ""
    if headers:
        append = "        appendHeaders: {" + ", ".join(f"{k}: {v!r}" for k, v in headers.items()) + "}\n"
    return f"""apiVersion: networking.internal.knative.dev/v1alpha1
kind: Ingress
metadata:
  name: {name}
  namespace: perf
  annotations: {{networking.knative.dev/ingress.class: {INGRESS_CLASS}}}
spec:{tls}
  rules:
  - hosts: [{", ".join(hosts)}]
    visibility: ExternalIP
    http:
      paths:
      - splits:
{split_lines}{append}---
"""


def sluice_revision_route(name, host, service, container_concurrency):
    """A sluice Revision over an existing Service, at most `container_concurrency` requests in flight
    to its endpoint (the rest wait in sluice's queue), and a Route sending `host` to it."""
    return f"""apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata: {{name: {name}, namespace: perf}}
spec:
  containerConcurrency: {container_concurrency}
  service: {{name: {service}, port: 80}}
---
apiVersion: sluice.dev/v1alpha1
kind: Route
metadata: {{name: {name}, namespace: perf}}
spec:
  hosts: [{host}]
  traffic: [{{revision: {name}, percent: 100}}]
---
"""


def sluice_tls_secret(name, cert_pem, key_pem):
    indent = lambda pem: "".join(f"    {line}\n" for line in pem.strip().splitlines())
    return (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: perf}}\ntype: kubernetes.io/tls\n"
            f"stringData:\n  tls.crt: |\n{indent(cert_pem)}  tls.key: |\n{indent(key_pem)}---\n")


def make_certificate(workdir):
    """A self-signed ECDSA P-256 certificate for BENCH_HOST: {crt, key, pem (both)} file paths."""
    crt, key, pem = (os.path.join(workdir, f"bench.{ext}") for ext in ("crt", "key", "pem"))
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", key, "-out", crt, "-days", "2", "-subj", f"/CN={BENCH_HOST}",
                    "-addext", f"subjectAltName=DNS:{BENCH_HOST}"], check=True, capture_output=True)
    with open(pem, "w") as f:
        f.write(open(crt).read() + open(key).read())
    return {"crt": crt, "key": key, "pem": pem}


def write_atomic(path, text):
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def start_sluice(env, backend, setup, name="sluice", extra_services=(), files=None, extra_args=(), wrapper=(),
                 start_timeout=300):
    """sluice --threads 1 on CPU 1, from a fresh manifest directory.

    `files` ({filename: text}) replaces the default ingress file (the route-change scenario owns
    its ingress file); extra_services adds Services that point at the same backend. `extra_args`
    are added to sluice's flags; `wrapper` (e.g. valgrind's argv) runs sluice under it.
    """
    conf = os.path.join(env.workdir, f"{name.replace(' ', '-')}-{free_port()}")
    os.makedirs(conf)
    services = sluice_service("bench", backend.port, setup.upstream)
    for svc in extra_services:
        services += sluice_service(svc, backend.port, setup.upstream)
    write_atomic(os.path.join(conf, "services.yaml"), services)
    if files is None:
        if setup.tls:
            files = {"tls.yaml": sluice_tls_secret("bench-tls", open(env.tls["crt"]).read(), open(env.tls["key"]).read())
                     + sluice_ingress("bench", [BENCH_HOST], [("bench", 100)], tls_secret="bench-tls")}
        elif setup.hosts == 1:
            files = {"ingress.yaml": sluice_ingress("bench", [BENCH_HOST], [("bench", 100)])}
        else:
            files = {"ingress.yaml": "".join(
                sluice_ingress(f"bench-{i:05d}", [table_host(i)], [("bench", 100)])
                for i in range(setup.hosts))}
    for fname, text in files.items():
        write_atomic(os.path.join(conf, fname), text)
    port, internal, admin = free_port(), free_port(), free_port()
    argv = ["taskset", "-c", PROXY_CPU, *wrapper, os.path.join(env.bin_dir, "sluice"), "run", "--config", conf,
            "--http", f"127.0.0.1:{port}", "--internal-http", f"127.0.0.1:{internal}",
            "--admin", f"127.0.0.1:{admin}", "--probe-addr", "127.0.0.1:0", "--threads", "1", "--shutdown-grace", "1s",
            *extra_args]
    tls_port = None
    if setup.tls:
        tls_port = free_port()
        argv += ["--https", f"127.0.0.1:{tls_port}"]
    env.log.add("sluice", argv)
    t0 = time.time()
    proc = subprocess.Popen(argv, env={**os.environ, "SLUICE_LOG": "warn"},
                            stdout=_log(env, f"sluice-{port}.log"), stderr=subprocess.STDOUT)
    wait_port(port, timeout=start_timeout, proc=proc, log=_logpath(env, f"sluice-{port}.log"))
    if tls_port:
        wait_port(tls_port, timeout=60, proc=proc)
    t = Target(name, "sluice", port, port, setup.request_host, lambda: [proc.pid], [proc],
               admin_port=admin, startup_s=time.time() - t0, tls_port=tls_port)
    t.conf_dir = conf
    return t


def _config_name(proxy, setup):
    """Which generated configs the report shows: one per upstream protocol, and the TLS one."""
    if setup.hosts != 1:
        return None
    if setup.conns:
        return f"{proxy} (memory scenario: limits raised for {setup.conns:,} connections)"
    return f"{proxy} (TLS)" if setup.tls else f"{proxy} ({setup.upstream} upstream)"


# --- nginx ------------------------------------------------------------------------------------

def nginx_conf(workdir, port, h2c_port, backend_port, setup, tls_port=None, tls=None, proxy_extra=""):
    """`proxy_extra`: more directives for every proxied `location` (the reload scenario's
    changing header)."""
    if setup.hosts == 1:
        names = [BENCH_HOST]
    else:
        names = [table_host(i) for i in range(setup.hosts)]
    # The forwarding headers sluice adds to every request (forwarded_headers, checked by Target.check), so
    # that the three proxies do the same work: an ingress sets them (ingress-nginx does too).
    proxy = """      proxy_pass http://be;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Host $http_host;""" + proxy_extra
    servers = "".join(f"""
  server {{
    listen 127.0.0.1:{port};
    server_name {n};
    location / {{
{proxy}
    }}
  }}""" for n in names)
    h2c = ""
    if setup.hosts == 1:
        grpc = """      grpc_pass grpc://be_h2;
      grpc_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      grpc_set_header X-Forwarded-Proto $scheme;
      grpc_set_header X-Forwarded-Host $http_host;"""
        inner = grpc if setup.upstream == "h2c" else proxy
        h2c = f"""
  server {{
    listen 127.0.0.1:{h2c_port} http2 backlog=4096;
    location / {{
{inner}
    }}
  }}"""
    if tls_port:
        h2c += f"""
  server {{
    listen 127.0.0.1:{tls_port} ssl http2;
    server_name {BENCH_HOST};
    ssl_certificate {tls['crt']};
    ssl_certificate_key {tls['key']};
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {{
{proxy}
    }}
  }}"""
    # worker_connections counts upstream connections and listeners too.
    worker_conns = max(8192, setup.conns + 1024)
    return f"""worker_processes 1;
worker_rlimit_nofile {max(16384, worker_conns + 1024)};
daemon off;
pid {workdir}/nginx-{port}.pid;
error_log {workdir}/nginx-error.log warn;
events {{ worker_connections {worker_conns}; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server_names_hash_max_size 65536;
  server_names_hash_bucket_size 128;
  proxy_buffer_size 16k;
  proxy_buffers 8 16k;
  proxy_busy_buffers_size 32k;
  proxy_max_temp_file_size 0;
  client_body_temp_path {workdir}/nginx-body;
  proxy_temp_path {workdir}/nginx-proxy;
  fastcgi_temp_path {workdir}/nginx-fastcgi;
  uwsgi_temp_path {workdir}/nginx-uwsgi;
  scgi_temp_path {workdir}/nginx-scgi;
  upstream be {{ server 127.0.0.1:{backend_port}; keepalive 1024; keepalive_requests 1000000; }}
  upstream be_h2 {{ server 127.0.0.1:{backend_port}; keepalive 1024; keepalive_requests 1000000; }}
  server {{
    listen 127.0.0.1:{port} default_server backlog=4096;
    return 404;
  }}{servers}{h2c}
}}
"""


def start_nginx(env, backend, setup, name="nginx", proxy_extra=""):
    port, h2c_port = free_port(), free_port()
    tls_port = free_port() if setup.tls else None
    conf = os.path.join(env.workdir, f"nginx-{port}.conf")
    text = nginx_conf(env.workdir, port, h2c_port, backend.port, setup, tls_port, getattr(env, "tls", None),
                      proxy_extra)
    with open(conf, "w") as f:
        f.write(text)
    env.configs.setdefault(_config_name("nginx", setup) if not proxy_extra else "nginx (reload scenario)", text)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    argv = ["taskset", "-c", PROXY_CPU, nginx, "-c", conf, "-e", f"{env.workdir}/nginx-error.log"]
    env.log.add("nginx", argv)
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=_log(env, f"nginx-{port}.log"), stderr=subprocess.STDOUT)
    wait_port(port, timeout=120, proc=proc, log=_logpath(env, f"nginx-{port}.log"))
    t = Target(name, "nginx", port, h2c_port, setup.request_host, lambda: child_pids(proc.pid), [proc],
               startup_s=time.time() - t0, tls_port=tls_port)
    # taskset execs nginx, so proc is the master (daemon off): it parses the config and reaps workers.
    t.cpu_root, t.conf_path = proc.pid, conf
    t.nginx_args = (port, h2c_port, tls_port)
    return t


# --- HAProxy ----------------------------------------------------------------------------------

def haproxy_conf(workdir, port, h2c_port, backend_port, setup, map_file, tls_port=None, tls=None, stats_socket=None,
                 frontend_extra=""):
    """`stats_socket`: a path for the master-worker mode's socket with `expose-fd listeners`, so a
    reload hands the listening sockets to the new worker (HAProxy's seamless reload);
    `frontend_extra`: more directives for the HTTP frontends (the reload scenario's header)."""
    h2 = " proto h2" if setup.upstream == "h2c" else ""

    def forwarded(proto):
        # The forwarding headers sluice adds (forwarded_headers): the client's own -Proto and -Host
        # replaced, as sluice does for a client it does not trust; `option forwardfor` adds the
        # client's address.
        return f"""
  option forwardfor
  http-request set-header X-Forwarded-Proto {proto}
  http-request set-header X-Forwarded-Host %[req.hdr(host)]"""
    stats = f"\n  stats socket {stats_socket} mode 600 level admin expose-fd listeners" if stats_socket else ""
    h2c = ""
    if setup.hosts == 1:
        h2c = f"""
frontend fe_h2c
  bind 127.0.0.1:{h2c_port} proto h2{forwarded("http")}{frontend_extra}
  default_backend be_up
"""
    if tls_port:
        h2c += f"""
frontend fe_tls
  bind 127.0.0.1:{tls_port} ssl crt {tls['pem']} alpn h2,http/1.1{forwarded("https")}
  default_backend be
"""
    return f"""global
  nbthread 1
  maxconn {max(8192, setup.conns + 256)}{stats}

defaults
  mode http
  maxconn {max(4096, setup.conns + 256)}
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
  http-reuse always

frontend fe
  bind 127.0.0.1:{port}{forwarded("http")}{frontend_extra}
  use_backend %[req.hdr(host),lower,map({map_file},be_404)]
{h2c}
backend be
  server s1 127.0.0.1:{backend_port}

backend be_up
  server s1 127.0.0.1:{backend_port}{h2}

backend be_404
  http-request return status 404
"""


def start_haproxy(env, backend, setup, name="haproxy", master_worker=False, frontend_extra=""):
    """HAProxy on CPU 1; `master_worker` runs it as `haproxy -W` (a master that re-executes itself
    on SIGUSR2 and starts a new worker: HAProxy's reload), with a stats socket exposing the
    listeners so that the new worker takes them over."""
    port, h2c_port = free_port(), free_port()
    tls_port = free_port() if setup.tls else None
    map_file = os.path.join(env.workdir, f"haproxy-{port}.map")
    with open(map_file, "w") as f:
        if setup.hosts == 1:
            f.write(f"{BENCH_HOST} be\n")
        else:
            f.writelines(f"{table_host(i)} be\n" for i in range(setup.hosts))
    conf = os.path.join(env.workdir, f"haproxy-{port}.cfg")
    stats_socket = os.path.join(env.workdir, f"haproxy-{port}.sock") if master_worker else None
    text = haproxy_conf(env.workdir, port, h2c_port, backend.port, setup, map_file, tls_port,
                        getattr(env, "tls", None), stats_socket, frontend_extra)
    with open(conf, "w") as f:
        f.write(text)
    env.configs.setdefault(_config_name("HAProxy", setup) if not master_worker
                           else "HAProxy (reload scenario: master-worker, `-W`)", text)
    haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
    argv = ["taskset", "-c", PROXY_CPU, haproxy, *(["-W"] if master_worker else []), "-f", conf, "-db"]
    env.log.add("haproxy", argv)
    t0 = time.time()
    proc = subprocess.Popen(argv, stdout=_log(env, f"haproxy-{port}.log"), stderr=subprocess.STDOUT)
    wait_port(port, timeout=120, proc=proc, log=_logpath(env, f"haproxy-{port}.log"))
    pid_fn = (lambda: child_pids(proc.pid)) if master_worker else (lambda: [proc.pid])
    t = Target(name, "haproxy", port, h2c_port, setup.request_host, pid_fn, [proc],
               startup_s=time.time() - t0, tls_port=tls_port)
    t.cpu_root, t.conf_path = proc.pid, conf
    t.haproxy_args = (port, h2c_port, map_file, tls_port, stats_socket)
    return t


STARTERS = {"sluice": start_sluice, "nginx": start_nginx, "haproxy": start_haproxy, "relay": start_relay}
