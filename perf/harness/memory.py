"""Memory per connection: the extra RSS of a proxy per idle keep-alive connection, per HTTP/1.1
connection holding a buffered request and per buffered h2c stream (issue 12, goal 2).

One implementation for `perf/activator --only memory` (ACTIVATOR.md) and `perf/run`'s `memory`
scenario (RESULTS.md, the goal table), which also runs the idle measurement against nginx and
HAProxy. `Gateway` (a fresh `sluice run --threads 1` on CPU 1 from a manifest string) is shared
with perf/activator's other parts. Standard library only.
"""

import asyncio
import datetime
import json
import os
import resource
import socket
import subprocess
import tempfile
import time

from .procs import free_port, rss_kib

CLASS = "sluice.ingress.networking.knative.dev"


def wait_http(port, path="/ready", timeout=30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"port {port}{path} not ready in {timeout}s")


class Gateway:
    """A fresh `sluice run --threads 1` on CPU 1 serving MANIFESTS from a new directory (under
    WORKDIR if given); `on_argv` sees its command (perf/run's command log)."""

    def __init__(self, bin_dir, manifests, extra_env=None, on_argv=None, workdir=None):
        self.dir = tempfile.mkdtemp(prefix="sluice-activator-", dir=workdir)
        with open(os.path.join(self.dir, "bench.yaml"), "w") as f:
            f.write(manifests)
        self.http, self.internal, self.admin = free_port(), free_port(), free_port()
        self.log_path = os.path.join(self.dir, "sluice.log")
        self.log = open(self.log_path, "w")
        env = {**os.environ, "SLUICE_LOG": "info,pingora_core=warn", "SLUICE_LOG_FORMAT": "json"}
        env.update(extra_env or {})
        argv = ["taskset", "-c", "1", os.path.join(bin_dir, "sluice"), "run", "--config", self.dir,
                "--http", f"127.0.0.1:{self.http}", "--internal-http", f"127.0.0.1:{self.internal}",
                "--admin", f"127.0.0.1:{self.admin}", "--probe-addr", "127.0.0.1:0", "--threads", "1",
                "--shutdown-grace", "2s"]
        if on_argv:
            on_argv(argv)
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=self.log, env=env)
        wait_http(self.admin)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()

    def listen_times(self):
        """Wall-clock time of each instance's "responder listening" line, by PORT."""
        out = {}
        with open(self.log_path) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                fields = rec.get("fields", {})
                if fields.get("message") == "responder listening":
                    ts = datetime.datetime.fromisoformat(rec["timestamp"].replace("Z", "+00:00")).timestamp()
                    out[fields.get("listen")] = ts
        return out


def config_autoscaler():
    return ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config-autoscaler, namespace: knative-serving}\n"
            "data: {allow-zero-initial-scale: \"true\", stable-window: 6s, scale-to-zero-grace-period: 1s}\n---\n")


def revision(name, command, annotations="", cc=0, timeout=300):
    cmd = ", ".join(json.dumps(c) for c in command)
    return (f"apiVersion: sluice.dev/v1alpha1\nkind: Revision\nmetadata:\n  name: {name}\n  namespace: perf\n"
            f"  annotations: {{autoscaling.knative.dev/initial-scale: \"0\"{annotations}}}\n"
            f"spec:\n  containerConcurrency: {cc}\n  timeoutSeconds: {timeout}\n  process: {{command: [{cmd}]}}\n---\n"
            f"apiVersion: sluice.dev/v1alpha1\nkind: Route\nmetadata: {{name: {name}, namespace: perf}}\n"
            f"spec:\n  hosts: [{name}.example.com]\n  traffic: [{{revision: {name}, percent: 100}}]\n---\n")


# --- memory per connection ----------------------------------------------------------------

def plain_manifests(backend_port, name="plain"):
    """A KIngress routing NAME.example.com to one backend on BACKEND_PORT."""
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: be, namespace: perf}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\n"
        f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: be-1, namespace: perf, labels: {{kubernetes.io/service-name: be}}}}\n"
        f"addressType: IPv4\nports: [{{name: http, port: {backend_port}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"]}}]\n---\n"
        f"apiVersion: networking.internal.knative.dev/v1alpha1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: perf\n"
        f"  annotations: {{networking.knative.dev/ingress.class: {CLASS}}}\nspec:\n  rules:\n  - hosts: [{name}.example.com]\n"
        f"    http: {{paths: [{{splits: [{{serviceNamespace: perf, serviceName: be, servicePort: 80}}]}}]}}\n---\n")


def held_requests(admin_port):
    """The sum of sluice_backend_held_requests on the admin /metrics."""
    with socket.create_connection(("127.0.0.1", admin_port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    total = 0
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("sluice_backend_held_requests"):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def pid_rss(pid):
    """A reader of one process's RSS in KiB, for `settled_rss`."""
    return lambda: rss_kib([pid])


def settled_rss(read, timeout=8.0, gap=0.2):
    """RSS in KiB (`read()`) once it has stopped moving (5 samples 0.2 s apart within 64 KiB; at
    most TIMEOUT s): the allocator returns freed pages to the OS some time after the frees."""
    samples = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        time.sleep(gap)
        samples = (samples + [read()])[-5:]
        if len(samples) == 5 and max(samples) - min(samples) <= 64:
            break
    return samples[-1]


def raise_nofile(n):
    """Soft RLIMIT_NOFILE up to N + 2048 (never lowered: perf/run raised it for every scenario)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 2048  # the client's sockets; sluice (a child) inherits the same soft limit
    if soft == resource.RLIM_INFINITY or soft >= want:
        return
    if hard != resource.RLIM_INFINITY and hard < want:
        raise RuntimeError(f"needs {want} open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


async def read_response(reader):
    """Reads one HTTP/1.1 response with a Content-Length body; returns its status."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def idle_keepalive(port, host, n, in_flight=8, timeout=60):
    """Opens N connections, then sends one keep-alive request on each (IN_FLIGHT at a time, so
    the upstream pool stays small) and keeps every connection open. Returns (conns, statuses)."""
    connect = asyncio.Semaphore(512)
    send = asyncio.Semaphore(in_flight)

    async def open_one():
        async with connect:
            return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)

    conns = await asyncio.gather(*(open_one() for _ in range(n)))

    async def one(reader, writer):
        async with send:
            writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            return await asyncio.wait_for(read_response(reader), timeout)

    statuses = await asyncio.gather(*(one(r, w) for r, w in conns), return_exceptions=True)
    return conns, [s if isinstance(s, int) else -1 for s in statuses]


async def held_h1(port, host, n, timeout=60):
    """N connections, each sending one request that the gateway holds; returns the connections."""
    connect = asyncio.Semaphore(512)

    async def one():
        async with connect:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        writer.write(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        return reader, writer

    return await asyncio.gather(*(one() for _ in range(n)))


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_get_block(host):
    """HPACK for GET http://HOST/: static-table :method GET, :scheme http, :path /, and
    :authority as a literal without indexing (name from the static table)."""
    value = host.encode()
    assert len(value) < 127
    return b"\x82\x86\x84\x01" + bytes([len(value)]) + value


class H2Conn:
    """A bare h2c prior-knowledge client: SETTINGS and PING are answered; GETs are sent as
    HEADERS with END_STREAM; responses are not read (the gateway holds them)."""

    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer
        self.settings = asyncio.Event()
        self.task = asyncio.ensure_future(self.pump())

    @classmethod
    async def open(cls, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0))
        conn = cls(reader, writer)
        await asyncio.wait_for(conn.settings.wait(), 30)
        return conn

    async def pump(self):
        try:
            while True:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                payload = await self.reader.readexactly(length) if length else b""
                if kind == 4 and not flags & 1:  # SETTINGS: acknowledge
                    self.writer.write(h2_frame(4, 1, 0))
                    self.settings.set()
                elif kind == 6 and not flags & 1:  # PING: answer
                    self.writer.write(h2_frame(6, 1, 0, payload))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass

    async def get(self, host, streams):
        block = h2_get_block(host)
        self.writer.write(b"".join(h2_frame(1, 0x5, 1 + 2 * i, block) for i in range(streams)))
        await self.writer.drain()

    def close(self):
        self.task.cancel()
        self.writer.close()


def wait_held(gw, n, timeout=60):
    deadline = time.time() + timeout
    held = 0
    while time.time() < deadline:
        held = held_requests(gw.admin)
        if held >= n:
            return held
        time.sleep(0.2)
    raise RuntimeError(f"only {held} of {n} requests held after {timeout}s")


# Issue 12, goal 2: bytes per item (KB = 1,024 B), by the goal table's keys (perf/run's MEMORY_GOALS).
GOAL_BYTES = {"h1-buffered": 8 * 1024, "h2-stream": 2 * 1024, "idle": 4 * 1024}

MEMORY_ENV = {"SLUICE_MAX_CONNECTIONS": "100000", "SLUICE_MAX_HELD_REQUESTS": "100000",
              "SLUICE_MAX_HELD_REQUESTS_TOTAL": "100000"}


def idle_rss(loop, port, host, n, read):
    """Extra RSS per idle keep-alive HTTP/1.1 connection of the proxy on PORT (`read()` gives its
    RSS in KiB): N connections, each served one proxied request (8 at a time) and then left idle,
    opened in two halves with the settled RSS read before, after the first and after the second.

    Returns {base, half, full (KiB), failed (requests not answered 200), closed (connections the
    proxy had closed by the end, which would understate the figure)}."""
    half = n // 2
    conns = []
    try:
        out = {"base": settled_rss(read), "failed": 0}
        for label, count in (("half", half), ("full", n - half)):
            opened, statuses = loop.run_until_complete(idle_keepalive(port, host, count))
            conns += opened
            out["failed"] += sum(s != 200 for s in statuses)
            out[label] = settled_rss(read)
        # Let the loop take in any FIN the proxy sent while we were reading RSS.
        loop.run_until_complete(asyncio.sleep(0.2))
        out["closed"] = sum(r.at_eof() for r, _ in conns)
        return out
    finally:
        for _, w in conns:
            w.close()
        loop.run_until_complete(asyncio.sleep(0))


def per_item(n, res):
    """Bytes per item from `memory(bin_dir, N)`'s raw figures: idle (per idle keep-alive connection),
    h1 (per HTTP/1.1 connection holding a request), stream (per buffered h2c stream), h2conn (per
    idle h2c connection), each the RSS added by the second half ÷ its count; and the counts."""
    half = n // 2
    idle, held = res["idle"], res["h1"]
    _, conns_half, conns_all, streams_all, conns2, streams2 = res["h2"]
    return {"idle": (idle["full"] - idle["half"]) * 1024 / (n - half),
            "h1": (held[2] - held[1]) * 1024 / (n - half),
            "stream": (streams_all - conns_all) * 1024 / streams2,
            "h2conn": (conns_all - conns_half) * 1024 / (conns2 - conns2 // 2),
            "conns": n, "streams": streams2, "h2conns": conns2}


def memory(bin_dir, n, streams_per_conn=100, on_argv=None, workdir=None):
    """Extra RSS per idle keep-alive connection, per HTTP/1.1 connection holding a buffered
    request, per buffered h2c stream and per idle h2c connection, each in a fresh gateway.

    Each is measured at half the count and at the full count: the figure is the difference ÷
    the second half, which cancels what the process frees of its start-up in the meantime
    (the allocator returns freed pages to the OS only as it keeps allocating). `per_item`
    turns the raw figures into bytes per item; `on_argv` sees each command started; the gateways'
    directories go under WORKDIR if given."""
    raise_nofile(n)
    out = {}
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    # Idle keep-alive connections, each having been served one proxied request.
    backend_port = free_port()
    argv = ["taskset", "-c", "0", os.path.join(bin_dir, "sluice-testkit-backend"),
            "--listen", f"127.0.0.1:{backend_port}", "--body-bytes", "0"]
    if on_argv:
        on_argv(argv)
    backend = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    gw = None
    try:
        gw = Gateway(bin_dir, plain_manifests(backend_port), MEMORY_ENV, on_argv, workdir)
        time.sleep(1)
        idle = out["idle"] = idle_rss(loop, gw.http, "plain.example.com", n, pid_rss(gw.proc.pid))
        print(f"idle keep-alive: {idle['base'] / 1024:.1f} -> {idle['half'] / 1024:.1f} -> "
              f"{idle['full'] / 1024:.1f} MiB, {(idle['full'] - idle['half']) * 1024 / (n - n // 2):.0f} B per "
              f"connection ({idle['failed']} failed, {idle['closed']} closed by sluice)", flush=True)
    finally:
        if gw:
            gw.stop()
        backend.terminate()
        backend.wait()

    half = n // 2
    # Requests held for a Revision whose instance never gets ready while we measure.
    manifests = config_autoscaler() + revision(
        "held", ["sh", "-c", "sleep 600"], f", sluice.dev/max-buffered-requests: \"{n * 2}\"", cc=0, timeout=300)

    gw = Gateway(bin_dir, manifests, MEMORY_ENV, on_argv, workdir)
    conns = []
    try:
        time.sleep(1)
        read = pid_rss(gw.proc.pid)
        base = settled_rss(read)
        rss = []
        for count in (half, n - half):
            conns += loop.run_until_complete(held_h1(gw.http, "held.example.com", count))
            wait_held(gw, len(conns))
            rss.append(settled_rss(read))
        out["h1"] = (base, rss[0], rss[1])
        print(f"h1 held: {base / 1024:.1f} -> {rss[0] / 1024:.1f} -> {rss[1] / 1024:.1f} MiB, "
              f"{(rss[1] - rss[0]) * 1024 / (n - half):.0f} B per connection", flush=True)
    finally:
        for _, w in conns:
            w.close()
        gw.stop()

    gw = Gateway(bin_dir, manifests, MEMORY_ENV, on_argv, workdir)
    conns = []
    try:
        time.sleep(1)
        read = pid_rss(gw.proc.pid)
        count = max(2, n // streams_per_conn)
        base = settled_rss(read)
        rss = []
        for k in (count // 2, count - count // 2):
            conns += loop.run_until_complete(asyncio.gather(*(H2Conn.open(gw.http) for _ in range(k))))
            rss.append(settled_rss(read))
        for group in (conns[:count // 2], conns[count // 2:]):
            loop.run_until_complete(asyncio.gather(*(c.get("held.example.com", streams_per_conn) for c in group)))
        wait_held(gw, count * streams_per_conn)
        # Streams: the first half's, then the second's (all connections open throughout).
        out["h2"] = (base, rss[0], rss[1], settled_rss(read), count, count * streams_per_conn)
        print(f"h2: {count} connections {base / 1024:.1f} -> {rss[0] / 1024:.1f} -> {rss[1] / 1024:.1f} MiB; "
              f"{count * streams_per_conn} streams -> {out['h2'][3] / 1024:.1f} MiB", flush=True)
    finally:
        for c in conns:
            c.close()
        loop.run_until_complete(asyncio.gather(*(c.task for c in conns), return_exceptions=True))
        gw.stop()
    loop.close()
    return out


def memory_section(n, res):
    """perf/activator's ACTIVATOR.md section for `memory(bin_dir, N)`'s figures."""
    goal = lambda ok: "**met**" if ok else "**not met**"
    f = per_item(n, res)
    half = n // 2
    idle = res["idle"]
    base1, half1, full1 = res["h1"]
    _, conns_half, conns_all, streams_all, conns2, streams2 = res["h2"]
    return [
        "## Memory per connection and per buffered request", "",
        f"Measured by `perf/activator --only memory` on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC "
        f"(1-min load average {os.getloadavg()[0]:.2f}; RSS does not depend on load). Each case runs in a fresh gateway "
        f"(`--threads 1`) and reads the sluice process's RSS once it stopped moving (5 samples 0.2 s apart within 64 KiB) "
        f"at half the count and at the full count (held requests counted from `/metrics`); a figure is the RSS added by "
        f"the second half ÷ its count, which cancels start-up memory the allocator returns meanwhile. "
        f"KB = 1,024 B. `perf/run --only memory` runs the same code and adds nginx and HAProxy to the idle row.", "",
        "| figure | result | goal | |", "|---|---|---|---|",
        f"| {n:,} idle keep-alive HTTP/1.1 client connections, each served one proxied 0-byte request "
        f"(8 at a time, so the upstream pool stays small; {idle['failed']} failed, {idle['closed']} closed by sluice "
        f"before the end) | {f['idle']:,.0f} B per connection ({half:,}: {idle['half'] / 1024:.1f} MiB → {n:,}: "
        f"{idle['full'] / 1024:.1f} MiB; {idle['base'] / 1024:.1f} MiB before) | ≤ 4 KB | "
        f"{goal(f['idle'] <= GOAL_BYTES['idle'] and idle['failed'] == 0 and idle['closed'] == 0)} |",
        f"| {n:,} HTTP/1.1 connections, each holding one buffered request (activator) | {f['h1']:,.0f} B per connection "
        f"({half:,}: {half1 / 1024:.1f} MiB → {n:,}: {full1 / 1024:.1f} MiB; {base1 / 1024:.1f} MiB before) | ≤ 8 KB | "
        f"{goal(f['h1'] <= GOAL_BYTES['h1-buffered'])} |",
        f"| {streams2:,} buffered h2c streams ({conns2} connections × {streams2 // conns2}; the connections were open "
        f"before) | {f['stream']:,.0f} B per stream ({conns_all / 1024:.1f} → {streams_all / 1024:.1f} MiB) | ≤ 2 KB | "
        f"{goal(f['stream'] <= GOAL_BYTES['h2-stream'])} |",
        f"| ... an idle h2c connection (preface and SETTINGS exchanged, no stream) | {f['h2conn']:,.0f} B per connection "
        f"({conns2 // 2}: {conns_half / 1024:.1f} MiB → {conns2}: {conns_all / 1024:.1f} MiB) | – | |",
    ]
