"""Scenarios: one function each, registered in SCENARIOS (in run order).

A scenario function takes the Env and returns a dict:
  title, what (one paragraph: what it measures), md (list of Markdown lines: tables, notes),
  results ({target name: [run, ...]}), plus anything later scenarios or the goals need.
To add a scenario (TLS, activator, ...): write `def my_scenario(env)`, start what it needs with
`Stack(env, Setup(...))`, measure with `alternate(...)`, render with `closed_table`/`open_table`,
and append `Scenario("key", my_scenario)` to SCENARIOS. `perf/run --only key` runs just it.
"""

import asyncio
import json
import os
import re
import resource
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from . import memory as mem
from . import svg
from .core import Stack, alternate, measure, med, median_cdf, total, values, variant
from .loads import h2load, h2load_burst, h2load_tls, loadgen, wrk
from .procs import (CLK_TCK, children_fast, cpu_ticks, free_port, http_get, peak_rss_kib, stop, tree_rss_kib,
                    wait_port)
from .tables import closed_table, fmt, open_table, ratio, reuse, with_spread
from .targets import (BENCH_HOST, CLIENT_CPU, PROXY_CPU, Backend, Setup, haproxy_conf, make_certificate, nginx_conf,
                      sluice_ingress, sluice_revision_route, sluice_service, start_haproxy, start_nginx, start_sluice,
                      write_atomic)

CONNS = 32  # requests in flight in every scenario: 32 HTTP/1.1 connections, or 4 h2 connections × 8 streams


def _closed(env, key, title, what, setup, load, note=None):
    with Stack(env, setup) as st:
        for t in st.targets:
            t.check()
        results = alternate(env, key, st.targets, st.backend, load,
                            warmup=lambda t: load_with(t, load, env.warmup))
    md = closed_table(results)
    if note:
        md += ["", note]
    return {"title": title, "what": what, "md": md, "results": results, "kind": "closed"}


def load_with(target, load, duration):
    """`load` with a shorter duration, for warm-ups (loads take the duration as keyword)."""
    return load(target, duration=duration)


def h1(env, key, body):
    def load(t, duration=None):
        return wrk(env, t, duration or env.duration, CONNS)

    return _closed(
        env, key, f"HTTP/1.1 keep-alive, {body:,} B responses, closed loop",
        f"Maximum throughput: `wrk -t1 -c{CONNS}` (closed loop, keep-alive) through each proxy to a backend "
        f"answering {body:,}-byte bodies. rps is capped by CPU 0 (client + backend), so CPU-µs per request "
        "of the proxy is the fair comparison.",
        Setup(body_bytes=body), load)


def h1_0b(env):
    r = h1(env, "h1-0b", 0)
    env.nginx_max_rps = med(r["results"]["nginx"], "rps")
    return r


def h1_1k(env):
    return h1(env, "h1-1k", 1024)


def h1_64k(env):
    r = h1(env, "h1-64k", 64 * 1024)
    r["md"] += ["", "nginx buffers each response in memory (`proxy_buffers 8 16k`, `proxy_max_temp_file_size 0`: "
                "no temp files); HAProxy and sluice stream."]
    return r


def nginx_max(env):
    """nginx's closed-loop maximum (from h1-0b, or measured now) that the open-loop rates scale."""
    if env.nginx_max_rps is None:
        with Stack(env, Setup(), kinds=("nginx",), with_direct=False) as st:
            t = st.targets[0]
            wrk(env, t, env.warmup, CONNS)
            env.nginx_max_rps = wrk(env, t, env.duration, CONNS)["rps"]
    return env.nginx_max_rps


def open_loop(env, key, fraction):
    rate = fraction * nginx_max(env)

    def load(t, duration=None):
        return loadgen(env, t, duration or env.duration, CONNS, rate=rate)

    with Stack(env, Setup()) as st:
        for t in st.targets:
            t.check()
        results = alternate(env, key, st.targets, st.backend, load, warmup=lambda t: load(t, env.warmup))
    curves = {name: median_cdf(runs) for name, runs in results.items()}
    plot = f"latency-open-{int(fraction * 100)}.svg"
    svg.cdf_chart(os.path.join(env.plots, plot),
                  f"HTTP/1.1, open loop at {rate:,.0f} req/s ({fraction:.0%} of nginx's max), 0 B",
                  curves, note=f"median over {env.rounds} round(s) of each quantile; {CONNS} connections; "
                                "sluice-testkit-load")
    md = open_table(results, rate) + ["", f"![latency CDF](plots/{plot})"]
    return {"title": f"Open loop at {fraction:.0%} of nginx's maximum: latency",
            "what": f"A fixed rate of {fraction:.0%} of nginx's measured closed-loop maximum ({nginx_max(env):,.0f} "
                    f"rps), the same for every target, from `sluice-testkit-load --rate` over {CONNS} "
                    "connections. Coordinated omission is handled: each request's latency runs from the time it "
                    "was scheduled to start, so a stall is charged to every request it delayed. This is where "
                    "*added latency over direct* is measured.",
            "md": md, "results": results, "kind": "open", "rate": rate, "plots": [plot]}


def open_50(env):
    return open_loop(env, "open-50", 0.5)


def open_80(env):
    return open_loop(env, "open-80", 0.8)


def h2c(env):
    def load(t, duration=None):
        return h2load(env, t, duration or env.duration, 4, 8)

    r = _closed(
        env, "h2c", "h2c (HTTP/2 prior knowledge) downstream, HTTP/1.1 upstream",
        "`h2load -t1 -c4 -m8` (4 connections × 8 concurrent streams, closed loop) to each proxy's h2c listener; "
        "the proxies forward over HTTP/1.1 keep-alive. Direct = h2load to the backend over h2c.",
        Setup(), load,
        note="nginx: `listen … http2` on a plaintext port (prior knowledge); HAProxy: `bind … proto h2`; "
             "sluice: the same port sniffs HTTP/1.1 vs h2c.")
    return r


def grpc(env):
    def load(t, duration=None):
        return loadgen(env, t, duration or env.duration, 4, proto="grpc", streams=8, host=BENCH_HOST)

    return _closed(
        env, "grpc", "gRPC unary over h2c, both sides",
        "`sluice-testkit-load --proto grpc` (4 h2c connections × 8 concurrent unary calls of a 16-byte "
        "message, closed loop; each reply is checked for HTTP 200, the echoed size and `grpc-status: 0`). "
        "Upstream is h2c too: nginx `grpc_pass` with keepalive, HAProxy `proto h2`, sluice a Service port "
        "named `http2` (appProtocol `kubernetes.io/h2c`).",
        Setup(upstream="h2c"), load)


def hosts_10k(env):
    n = 10_000
    one, big = Setup(), Setup(hosts=n)
    with Stack(env, one, kinds=(), with_direct=False) as st:
        b = st.backend
        made = []
        for setup, label in ((one, "1 host"), (big, "10k hosts")):
            made.append(st.add(start_sluice(env, b, setup, name=f"sluice {label}")))
            made.append(st.add(start_nginx(env, b, setup, name=f"nginx {label}")))
            made.append(st.add(start_haproxy(env, b, setup, name=f"haproxy {label}")))
        for t in st.targets:
            t.check()
        order = sorted(st.targets, key=lambda t: (t.kind != "sluice", t.kind, t.name))

        def load(t, duration=None):
            return wrk(env, t, duration or env.duration, CONNS)

        results = alternate(env, "hosts-10k", order, b, load, warmup=lambda t: load(t, env.warmup))
        startup = {t.name: t.startup_s for t in order}
    md = closed_table(results)
    md += ["", "| proxy | CPU-µs/req, 1 host | CPU-µs/req, 10k hosts | growth | startup with 10k hosts (s) "
               "| RSS 1 host → 10k (MiB) |", "|---|---|---|---|---|---|"]
    growth = {}
    for kind in ("sluice", "nginx", "haproxy"):
        a, z = results[f"{kind} 1 host"], results[f"{kind} 10k hosts"]
        ca, cz = med(a, "cpu_us"), med(z, "cpu_us")
        growth[kind] = None if not ca or not cz else (cz - ca) / ca * 100
        md.append(f"| {kind} | {fmt(ca, 2)} | {fmt(cz, 2)} | "
                  f"{'–' if growth[kind] is None else f'{growth[kind]:+.1f}%'} | "
                  f"{fmt(startup.get(f'{kind} 10k hosts'), 1)} | "
                  f"{fmt(med(a, 'rss_mib'), 1)} → {fmt(med(z, 'rss_mib'), 1)} |")
    md += ["", "Startup = from exec to the listener accepting (sluice: manifests read, translated and applied). "
               "Within the run-to-run spread the growth should be ~0: every proxy looks hosts up in a hash "
               "(sluice, nginx `server_name`) or a tree (HAProxy `map`)."]
    return {"title": f"Routing table: {n:,} hosts vs 1 host",
            "what": f"The same closed-loop HTTP/1.1 load (0 B, c={CONNS}) against each proxy configured with 1 host "
                    f"and with {n:,}: sluice with {n:,} KIngress objects (one host each) in its manifest directory, "
                    f"nginx with {n:,} `server` blocks, HAProxy with a {n:,}-line `map` file. Requests go to a host in "
                    "the middle of the table. Lookup cost must not grow.",
            "md": md, "results": results, "kind": "hosts", "growth": growth}


ROUTE_STATES = [(100, 0), (50, 50), (0, 100), (50, 50)]


def _route(i):
    a, b = ROUTE_STATES[i % len(ROUTE_STATES)]
    return sluice_ingress("bench", [BENCH_HOST], [("bench", a), ("bench-b", b)], headers={"x-perf-rev": str(i)})


class Churn:
    """Rewrites the route file every `period` seconds while active."""

    def __init__(self, path, period=0.2):
        self.path, self.period = path, period
        self.i = 0
        self.writes = 0
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        next_at = time.time()
        while not self._stop.is_set():
            self.i += 1
            write_atomic(self.path, _route(self.i))
            self.writes += 1
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.time()))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def route_churn(env):
    rate = 0.5 * nginx_max(env)
    with Stack(env, Setup(), kinds=(), with_direct=False) as st:
        s = st.add(start_sluice(env, st.backend, Setup(), extra_services=("bench-b",),
                                files={"route.yaml": _route(0)}))
        s.check()
        path = os.path.join(s.conf_dir, "route.yaml")
        static, churn = variant(s, "sluice, static routes"), variant(s, "sluice, route change every 200 ms")
        churn.churn = True

        def run_load(t, fn):
            if getattr(t, "churn", False):
                with Churn(path) as c:
                    res = fn(t)
                res["route_writes"] = c.writes
                return res
            return fn(t)

        closed = alternate(env, "churn-closed", [static, churn], st.backend,
                           lambda t: run_load(t, lambda t: wrk(env, t, env.duration, CONNS)),
                           warmup=lambda t: wrk(env, t, env.warmup, CONNS))
        opened = alternate(env, "churn-open", [static, churn], st.backend,
                           lambda t: run_load(t, lambda t: loadgen(env, t, env.duration, CONNS, rate=rate)),
                           warmup=lambda t: loadgen(env, t, env.warmup, CONNS, rate=rate))
    md = ["**Closed loop (wrk, c=32): throughput**", ""] + closed_table(closed)
    md += ["", "**Open loop at 50% of nginx's maximum: latency**", ""] + open_table(opened, rate)
    cs, cc = closed["sluice, static routes"], closed["sluice, route change every 200 ms"]
    os_, oc = opened["sluice, static routes"], opened["sluice, route change every 200 ms"]
    errors = total(cc, "errors") + total(oc, "errors")
    applies = total(cc, "snapshot_applies") + total(oc, "snapshot_applies")
    writes = total(cc, "route_writes") + total(oc, "route_writes")
    md += ["", f"- Route files written during the churn runs: {writes:.0f}; snapshots applied by sluice: {applies:.0f}.",
           f"- **Errors during route changes: {errors:.0f}** (must be 0).",
           f"- Throughput with churn: {ratio(med(cc, 'rps'), med(cs, 'rps'))} of static; "
           f"CPU-µs/req {fmt(med(cs, 'cpu_us'), 2)} → {fmt(med(cc, 'cpu_us'), 2)}.",
           f"- Open-loop p50 {fmt(med(os_, 'p50'), 0)} → {fmt(med(oc, 'p50'), 0)} µs, "
           f"p99 {fmt(med(os_, 'p99'), 0)} → {fmt(med(oc, 'p99'), 0)} µs, "
           f"p99.9 {fmt(med(os_, 'p999'), 0)} → {fmt(med(oc, 'p999'), 0)} µs."]
    return {"title": "Route change under load",
            "what": "sluice alone (route changes are its job, not nginx's or HAProxy's reload), alternating runs "
                    "with static routes and with the KIngress file rewritten every 200 ms (a split moving between "
                    "two Services on the same backend, 100/0 → 50/50 → 0/100 → 50/50, and an `appendHeaders` "
                    "revision). Each write is a new snapshot, compiled and swapped under load.",
            "md": md, "results": {**closed, **{k + " (open)": v for k, v in opened.items()}}, "kind": "churn",
            "errors": errors}


# --- concurrency: c=256 and c=1024 against c=32 -----------------------------------------------

def fd_headroom(conns):
    """None if this process (and so every target it starts) may open enough descriptors for
    `conns` client connections plus as many upstream ones, else why not."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * conns + 256
    if soft != resource.RLIM_INFINITY and soft < need:
        return f"RLIMIT_NOFILE is {soft}, below the {need} descriptors c={conns} needs (raise `ulimit -n`)"
    return None


# h1_conc's extra sluice: upstream connections capped by a Revision's containerConcurrency.
CAPPED, CAPPED_UPSTREAM = "sluice-capped", 16
CONC_ROWS = ("sluice", CAPPED, "nginx", "haproxy", "relay")


def h1_conc(env, key, conns):
    """HTTP/1.1 0 B closed loop at `conns` connections, against c=32 measured here side by side:
    each round runs both on the same processes, one after the other. Taking h1-0b's figure
    instead compared runs many minutes apart, and this VM drifts by more than the 5% the goal
    allows."""
    title = f"HTTP/1.1 keep-alive, 0 B, closed loop at c={conns:,}"
    short = fd_headroom(conns)
    if short:
        return {"title": title, "kind": "pending", "results": {}, "what": "", "md": [f"Not measured: {short}."]}
    loads = {" c=32": CONNS, f" c={conns}": conns}

    def load(t, duration=None):
        return wrk(env, t, duration or env.duration, getattr(t, "conns", conns))

    with Stack(env, Setup(), kinds=("sluice", "nginx", "haproxy", "relay")) as st:
        st.add(start_sluice(env, st.backend, Setup(), name=CAPPED, files={
            "revision.yaml": sluice_revision_route("capped", BENCH_HOST, "bench", CAPPED_UPSTREAM)}))
        for t in st.targets:
            t.check()
        targets = [variant(t, t.name + suffix, conns=c) for t in st.targets for suffix, c in loads.items()]
        results = alternate(env, key, targets, st.backend, load, warmup=lambda t: load_with(t, load, env.warmup))
    base = {n[:-len(" c=32")]: r for n, r in results.items() if n.endswith(" c=32")}
    here = {n[:-len(f" c={conns}")]: r for n, r in results.items() if n.endswith(f" c={conns}")}
    md = ["**c=32**", ""] + closed_table({n: r for n, r in results.items() if n.endswith(" c=32")})
    md += ["", f"**c={conns:,}**", ""] + closed_table(
        {n: r for n, r in results.items() if n.endswith(f" c={conns}")})
    growth = {}
    md += ["", f"| proxy | CPU-µs/req at c=32 | CPU-µs/req at c={conns:,} | change | user µs: c=32 → c={conns:,} "
               f"| sys µs: c=32 → c={conns:,} | upstream reuse at c={conns:,} |",
           "|---|---|---|---|---|---|---|"]
    for kind in CONC_ROWS:
        c32, cn = med(base.get(kind, []), "cpu_us"), med(here.get(kind, []), "cpu_us")
        growth[kind] = None if not c32 or not cn else (cn / c32 - 1) * 100
        split = []
        for part in ("user_us", "sys_us"):
            a, b = med(base.get(kind, []), part), med(here.get(kind, []), part)
            split.append("–" if a is None or b is None else f"{a:.2f} → {b:.2f} ({b - a:+.2f})")
        r = reuse(here.get(kind, []))
        md.append(f"| {kind} | {fmt(c32, 2)} | {fmt(cn, 2)} | "
                  f"{'–' if growth[kind] is None else f'{growth[kind]:+.1f}%'} | {split[0]} | {split[1]} | "
                  f"{'–' if r is None else f'{r:.2f}%'} |")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    md += ["", "The c=32 figures were measured here, alternating with the high-concurrency runs on the same "
                "processes. "
           + f"The goal (issue 12, goal 3): sluice's CPU per request at c={conns:,} within 5% of its c=32 figure. "
           f"Limits: `RLIMIT_NOFILE` {soft}/{hard} (soft/hard) for the harness and everything it starts; nginx "
           "`worker_connections 8192`, `worker_rlimit_nofile 16384`, `listen … backlog=4096`, upstream `keepalive "
           "1024`; HAProxy global `maxconn 8192`, frontend `maxconn 4096`; sluice `--max-connections` 10,000 "
           "(default); the backend accepts without limit; `net.core.somaxconn` "
           f"{_sysctl('net/core/somaxconn')}. Each measured run opens its {conns:,} connections anew; the accepts "
           "are part of its CPU.",
           "",
           "*relay* is not a peer but a floor: `sluice-testkit-relay`, one epoll thread that pairs each client "
           "connection with an upstream connection of its own and copies bytes across, one `read` and one "
           "`write` each way, no HTTP. Every HTTP/1.1 proxy makes at least those four system calls per request, "
           "and sluice, nginx and HAProxy as configured here hold those sockets too (an upstream connection per "
           "request in flight), so the relay's sys growth is what the kernel adds to them as connections grow, "
           "beyond any proxy code's reach. Only holding fewer upstream sockets avoids part of it (*sluice-capped*).",
           "",
           f"*{CAPPED}* is sluice with the route through a Revision of containerConcurrency "
           f"{CAPPED_UPSTREAM} over the same backend: at most {CAPPED_UPSTREAM} requests in flight upstream, so "
           f"at most {CAPPED_UPSTREAM} upstream connections, the rest waiting in sluice's queue. It measures how "
           "much of the growth holding fewer sockets wins back (the throttled path's own work included)."]
    return {"title": title, "kind": "closed",
            "what": f"`wrk -t1 -c{conns}` (closed loop, keep-alive, 0 B) through each proxy: {conns:,} connections, "
                    f"{conns:,} requests in flight. Does a proxy's CPU per request stay flat as connections grow "
                    "(the pool lookup and idle lists O(1))?",
            "md": md, "results": results, "growth": growth, "conns": conns,
            "capped_upstream": CAPPED_UPSTREAM,
            "base_cpu": {k: med(base.get(k, []), "cpu_us") for k in CONC_ROWS},
            "cpu": {k: med(here.get(k, []), "cpu_us") for k in CONC_ROWS},
            "sys": {k: (med(base.get(k, []), "sys_us"), med(here.get(k, []), "sys_us")) for k in CONC_ROWS}}


def _sysctl(path):
    try:
        return open(f"/proc/sys/{path}").read().strip()
    except OSError:
        return "unknown"


def h1_c256(env):
    return h1_conc(env, "h1-c256", 256)


def h1_c1024(env):
    return h1_conc(env, "h1-c1024", 1024)


# --- reloads: a route change every 200 ms under load, sluice vs nginx vs HAProxy ---------------

RELOAD_PERIOD = 0.2
RELOAD_FRACTION = 0.5  # of nginx's closed-loop maximum: the open-loop rate of both runs
# Changes in the no-traffic measure: at 10 ms per clock tick, 50 changes resolve 0.2 ms each.
IDLE_CHANGES = 50
IDLE_SETTLE = 1.0  # s after the last change: a retiring worker exits and is reaped


class Reloader:
    """While active: every RELOAD_PERIOD s, `apply(i)` rewrites the target's config to change i
    (odd i routes to backend B, even i to A, with a header carrying i) and triggers its reload;
    then fresh connections poll the target until its answer comes from the new backend (or the
    next change is due). Records how many changes were seen and after how long, and the most
    processes the proxy had at once (nginx and HAProxy start a new worker per reload and retire
    the old one when its connections are done)."""

    def __init__(self, target, apply, bodies, start_i):
        self.target, self.apply, self.bodies = target, apply, bodies
        self.i = start_i
        self.changes = self.seen = self.samples = self.sample_errors = 0
        self.delays = []
        self.peak_procs = 0
        self.first_sample_error = None
        self._stop = threading.Event()
        self._thread = None

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _procs(self):
        root = self.target.cpu_root
        return 1 + len(children_fast(root)) if root else 1

    def _run(self):
        next_at = time.time()
        while not self._stop.is_set():
            self.i += 1
            want = self.bodies[self.i % 2]
            t0 = time.time()
            self.apply(self.i)
            self.changes += 1
            next_at += RELOAD_PERIOD
            while not self._stop.is_set() and time.time() < next_at - 0.005:
                try:
                    status, body = http_get(self.target.port, "/", self.target.host, timeout=1.0)
                    self.samples += 1
                    if status == 200 and body == want:
                        self.seen += 1
                        self.delays.append((time.time() - t0) * 1000)
                        break
                except OSError as e:
                    self.sample_errors += 1
                    self.first_sample_error = self.first_sample_error or str(e)
                self.peak_procs = max(self.peak_procs, self._procs())
                self._stop.wait(0.005)
            self.peak_procs = max(self.peak_procs, self._procs())
            self._stop.wait(max(0.0, next_at - time.time()))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def summary(self):
        d = sorted(self.delays)
        return {"changes": self.changes, "seen": self.seen, "samples": self.samples,
                "sample_errors": self.sample_errors, "first_sample_error": self.first_sample_error,
                "effect_ms_p50": d[len(d) // 2] if d else None, "effect_ms_max": d[-1] if d else None,
                "peak_procs": self.peak_procs}


def idle_change_cpu(t, apply, bodies, start_i, changes):
    """CPU-ms one change costs the proxy with no traffic: the CPU of its whole process tree over
    `changes` changes RELOAD_PERIOD apart, minus its CPU over an equally long quiet window just
    before. Under load, a change's few ms are lost in the drift between rounds of serving
    hundreds of thousands of requests (see `extra_cpu_per_change`); here nothing else runs.
    The last change must have taken effect, or a proxy that ignored its changes would look free.
    Returns (figures, the last change number)."""
    window = changes * RELOAD_PERIOD + IDLE_SETTLE
    q0 = sum(t.cpu())
    time.sleep(window)
    q1 = sum(t.cpu())
    i = start_i
    for _ in range(changes):
        i += 1
        apply(i)
        time.sleep(RELOAD_PERIOD)
    time.sleep(IDLE_SETTLE)
    c = sum(t.cpu())
    try:
        status, body = http_get(t.port, "/", t.host, timeout=2.0)
        took_effect = status == 200 and body == bodies[i % 2]
    except OSError:
        took_effect = False
    quiet, changing = (q1 - q0) / CLK_TCK * 1000, (c - q1) / CLK_TCK * 1000
    return {"changes": changes, "quiet_ms": quiet, "changing_ms": changing,
            "ms_per_change": (changing - quiet) / changes, "took_effect": took_effect}, i


def _reload_route(i):
    """sluice's KIngress for change i: 100% to backend B (odd i) or A (even), a header naming i."""
    b = 100 if i % 2 else 0
    return sluice_ingress("bench", [BENCH_HOST], [("bench", 100 - b), ("bench-b", b)],
                          headers={"x-perf-rev": str(i)})


def reload_appliers(env, a, b, targets):
    """{target name: apply(i)}: how each proxy takes change i (a config rewrite and its reload)."""
    appliers = {}
    for t in targets:
        if t.kind == "sluice":
            path = os.path.join(t.conf_dir, "route.yaml")
            # The manifest directory is watched (inotify); an atomic rename is one new snapshot.
            appliers[t.name] = lambda i, path=path: write_atomic(path, _reload_route(i))
        elif t.kind == "nginx":
            port, h2c_port, tls_port = t.nginx_args

            def apply(i, t=t, port=port, h2c_port=h2c_port):
                be = b if i % 2 else a
                write_atomic(t.conf_path, nginx_conf(env.workdir, port, h2c_port, be.port, Setup(),
                                                     proxy_extra=_nginx_header(i)))
                # What `nginx -s reload` does after reading the pid file: SIGHUP to the master,
                # which re-reads the config, starts new workers and gracefully retires the old ones.
                # Sent directly so no extra nginx process parses the config on the load's CPU.
                os.kill(t.cpu_root, signal.SIGHUP)
            appliers[t.name] = apply
        elif t.kind == "haproxy":
            port, h2c_port, map_file, tls_port, sock = t.haproxy_args

            def apply(i, t=t, port=port, h2c_port=h2c_port, map_file=map_file, sock=sock):
                be = b if i % 2 else a
                write_atomic(t.conf_path, haproxy_conf(env.workdir, port, h2c_port, be.port, Setup(), map_file,
                                                       stats_socket=sock, frontend_extra=_haproxy_header(i)))
                # Master-worker reload: the master re-executes itself, parses the config, starts a
                # new worker (listeners handed over through the stats socket) and soft-stops the old.
                os.kill(t.cpu_root, signal.SIGUSR2)
            appliers[t.name] = apply
    return appliers


def _nginx_header(i):
    return f'\n      proxy_set_header x-perf-rev "{i}";'


def _haproxy_header(i):
    return f"\n  http-request set-header x-perf-rev {i}"


def reloads(env):
    rate = RELOAD_FRACTION * nginx_max(env)
    title = "Reloads: a route change every 200 ms under load"
    with Stack(env, Setup(), kinds=(), with_direct=False) as st:
        a = st.backend
        b = Backend(env, 1)
        try:
            bodies = (b"", b"a")  # backend A answers 0 bytes, B one byte: the body says which answered
            s = st.add(start_sluice(env, a, Setup(), files={
                "route.yaml": _reload_route(0),
                "services-b.yaml": sluice_service("bench-b", b.port, "h1")}))
            n = st.add(start_nginx(env, a, Setup(), proxy_extra=_nginx_header(0)))
            h = st.add(start_haproxy(env, a, Setup(), master_worker=True, frontend_extra=_haproxy_header(0)))
            for t in (s, n, h):
                t.check()
            # The last change number per proxy: the next reloading run goes on from there, so
            # every change differs from the config in force (variants are copies of the target).
            last = {t.kind: 0 for t in (s, n, h)}
            appliers = reload_appliers(env, a, b, (s, n, h))
            targets = []
            for t in (s, n, h):
                targets += [variant(t, f"{t.kind}, steady"),
                            variant(t, f"{t.kind}, reload every 200 ms", reload_apply=appliers[t.name])]

            def load(t, duration=None):
                a0, b0 = a.stats(), b.stats()
                apply = getattr(t, "reload_apply", None)
                if apply and duration is None:
                    with Reloader(t, apply, bodies, last[t.kind]) as r:
                        res = loadgen(env, t, env.duration, CONNS, rate=rate)
                    res.update(r.summary())
                    last[t.kind] = r.i
                else:
                    res = loadgen(env, t, duration or env.duration, CONNS, rate=rate)
                a1, b1 = a.stats(), b.stats()
                # Each stats call is one backend connection of its own: two per backend here.
                res["backend_conns"] = (a1[0] - a0[0] - 1) + (b1[0] - b0[0] - 1)
                res["backend_reqs"] = (a1[1] - a0[1]) + (b1[1] - b0[1])
                res["b_share"] = (b1[1] - b0[1]) / res["backend_reqs"] if res["backend_reqs"] else None
                return res

            # backend=None: `load` counts both backends itself.
            results = alternate(env, "reload", targets, None, load, warmup=lambda t: load(t, env.warmup))
            changes = 10 if env.args.quick else IDLE_CHANGES
            idle = {}
            for t in (s, n, h):
                idle[t.kind], last[t.kind] = idle_change_cpu(t, appliers[t.name], bodies, last[t.kind], changes)
        finally:
            b.stop()
    md = reload_table(results, rate) + idle_reload_table(idle)
    return {"title": title, "kind": "reload", "results": results, "rate": rate, "idle": idle,
            "what": f"An open loop at a fixed {RELOAD_FRACTION:.0%} of nginx's maximum ({rate:,.0f} req/s, "
                    f"`sluice-testkit-load --rate`, {CONNS} keep-alive connections) for {env.duration:g} s, once "
                    "steady and once with the route changed every 200 ms, for each proxy in alternating rounds. "
                    "Each change flips the route between two backends (A answers 0 bytes, B 1 byte) and sets a "
                    "request header to the change's number: sluice gets its KIngress file rewritten (atomic rename "
                    "in its watched manifest directory: a split 100/0 ↔ 0/100 between two Services and an "
                    "`appendHeaders` value), nginx a rewritten config and SIGHUP to its master (what `nginx -s "
                    "reload` sends), HAProxy (`-W` master-worker, listeners passed over its stats socket) a "
                    "rewritten config and SIGUSR2. After each change the harness polls on fresh connections until "
                    "the answer comes from the new backend: a change *took effect* when that happened before the "
                    "next one.",
            "md": md}


def reload_table(results, rate):
    lines = [f"Offered load: **{rate:,.0f} req/s** (open loop, latency from the intended send time).", "",
             "| target | achieved rps | p50 µs | p99 µs | max µs | errors: non-2xx / socket / timeout "
             "| CPU-µs/req | proxy CPU % | changes | took effect | time to effect p50 / max ms "
             "| peak processes | share to B | upstream reuse |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        ok = [m for m in runs if "failed" not in m]
        bad, tmo = total(ok, "bad_status"), total(ok, "timeouts")
        sock = total(ok, "errors") - bad - tmo
        failed = len(runs) - len(ok)
        changes, seen = total(ok, "changes"), total(ok, "seen")
        r = reuse(ok)
        share = med(ok, "b_share")
        lines.append(
            f"| {name} | {fmt(med(ok, 'rps'), 0)} | {with_spread(ok, 'p50', 0)} | {with_spread(ok, 'p99', 0)} "
            f"| {with_spread(ok, 'max', 0)} | {bad:.0f} / {sock:.0f} / {tmo:.0f}"
            f"{f' + {failed} failed run(s)' if failed else ''} | {with_spread(ok, 'cpu_us', 2)} "
            f"| {fmt(med(ok, 'cpu_pct'), 0)} | {changes:.0f} | "
            + (f"{seen:.0f} of {changes:.0f}" if changes else "–")
            + f" | {fmt(med(ok, 'effect_ms_p50'), 1)} / {fmt(max(values(ok, 'effect_ms_max') or [0]) if changes else None, 1)} "
            f"| {fmt(max(values(ok, 'peak_procs') or [0]) if changes else None, 0)} "
            f"| {'–' if share is None else f'{share:.0%}'} | {'–' if r is None else f'{r:.2f}%'} |")
    lines += ["", "| proxy | p99 steady → reloading µs | max steady → reloading µs | errors while reloading "
                  "| extra CPU per change (ms) | its noise: steady rounds' spread (ms) |", "|---|---|---|---|---|---|"]
    for kind, (st, rl) in reload_pairs(results).items():
        lines.append(f"| {kind} | {fmt(med(st, 'p99'), 0)} → {fmt(med(rl, 'p99'), 0)} "
                     f"| {fmt(med(st, 'max'), 0)} → {fmt(med(rl, 'max'), 0)} | {total(rl, 'errors'):.0f} "
                     f"| {fmt(extra_cpu_per_change(st, rl), 2)} | {fmt(extra_cpu_noise(st, rl), 2)} |")
    lines += ["", "Percentiles and max: median of the rounds (min–max). *errors*: requests of the load that got "
              "a non-2xx answer, failed on the socket (e.g. a keep-alive connection closed under a request by a "
              "retiring worker; the generator does not retry) or timed out (5 s). *CPU*: every process of the "
              "proxy, the retired workers too (utime + stime of the master, of its live children and of the "
              "children it reaped). *Extra CPU per change* = (CPU-µs/req reloading − steady) × requests of the "
              "reloading run ÷ its changes: what one change cost beyond serving the requests. *Its noise*: the same "
              "conversion of the spread (max − min) of the steady rounds' CPU-µs/req; an extra CPU figure below it "
              "is drift between rounds, not the change, which is why the goal reads CPU per change from the "
              "no-traffic measure below. *Took effect*: changes whose new backend "
              "answered a fresh connection before the next change (those polls, a few per change, are not in the "
              "load's counts). *Peak processes*: the most processes of the proxy alive at once. *Share to B*: "
              "requests the load got from backend B (≈ 50% when every change applies at once to every "
              "connection; the steady runs stay where the last change left them)."]
    return lines


def idle_reload_table(idle):
    lines = ["", f"**CPU per change without traffic** (`idle_change_cpu`): each proxy's process tree over "
             f"{next(iter(idle.values()))['changes']} changes 200 ms apart, minus the same tree over an equally long "
             "quiet window just before; the last change must have taken effect.", "",
             "| proxy | quiet window CPU-ms | changing window CPU-ms | CPU-ms per change | last change took effect |",
             "|---|---|---|---|---|"]
    for kind, d in idle.items():
        lines.append(f"| {kind} | {d['quiet_ms']:.0f} | {d['changing_ms']:.0f} | {d['ms_per_change']:.2f} "
                     f"| {'yes' if d['took_effect'] else '**no**'} |")
    return lines


def extra_cpu_noise(steady, reloading):
    """The resolution of `extra_cpu_per_change`: the spread of the steady rounds' CPU-µs/req,
    converted the same way. A difference smaller than this is drift between rounds."""
    cpu = values(steady, "cpu_us")
    n, changes = med(reloading, "requests"), med(reloading, "changes")
    if len(cpu) < 2 or not n or not changes:
        return None
    return (max(cpu) - min(cpu)) * n / changes / 1000


def reload_pairs(results):
    """{kind: (steady runs, reloading runs)}."""
    out = {}
    for name, runs in results.items():
        kind = name.split(",")[0]
        st, rl = out.get(kind, ([], []))
        out[kind] = (runs, rl) if "steady" in name else (st, runs)
    return out


def extra_cpu_per_change(steady, reloading):
    """CPU-ms per change: the reloading run's CPU beyond what its requests cost in the steady run,
    ÷ its changes (medians; robust to the two runs serving somewhat different request counts)."""
    cs, cr = med(steady, "cpu_us"), med(reloading, "cpu_us")
    n, changes = med(reloading, "requests"), med(reloading, "changes")
    if None in (cs, cr, n) or not changes:
        return None
    return (cr - cs) * n / changes / 1000


def upstream_reuse(env):
    rows = ["| scenario | proxy | backend connections | backend requests | reuse | sluice_upstream_connections_total Δ |",
            "|---|---|---|---|---|---|"]
    agg = {}
    for key, d in env.data.items():
        if d.get("kind") not in ("closed", "closed-multi", "open", "hosts", "churn", "reload"):
            continue
        for name, runs in d["results"].items():
            kind = name.split()[0].rstrip(",")
            if kind == "direct" or not total(runs, "backend_reqs"):
                continue
            r = reuse(runs)
            up = total(runs, "sluice_upstream_conns") if kind == "sluice" else None
            rows.append(f"| {key} | {name} | {total(runs, 'backend_conns'):,.0f} | {total(runs, 'backend_reqs'):,.0f} "
                        f"| {r:.3f}% | {'–' if up is None else f'{up:,.0f}'} |")
            if key in ("h1-0b", "h1-1k", "h1-64k", "open-50", "open-80") and kind in ("sluice", "nginx", "haproxy"):
                a = agg.setdefault(kind, [0, 0])
                a[0] += total(runs, "backend_conns")
                a[1] += total(runs, "backend_reqs")
    summary = {k: 100 * (1 - c / r) for k, (c, r) in agg.items() if r}
    md = ["Over the HTTP/1.1 scenarios (0 B, 1 KB, 64 KB closed loop; 50% and 80% open loop), all rounds:", "",
          "| proxy | upstream reuse |", "|---|---|"]
    md += [f"| {k} | {v:.3f}% |" for k, v in summary.items()]
    md += ["", "<details><summary>Per scenario</summary>", "", *rows, "", "</details>"]
    return {"title": "Upstream connection reuse",
            "what": "Backend-side counts around every run: TCP connections the backend accepted vs requests it "
                    "served (`GET /__backend/stats` on sluice-testkit-backend), so reuse = 1 − connections ÷ "
                    "requests, the same for every proxy. For sluice, `sluice_upstream_connections_total` from its "
                    "admin `/metrics` is shown alongside.",
            "md": md, "results": {}, "kind": "reuse", "summary": summary}


def profile(env):
    """A flat CPU profile of sluice under the h1-0b load (perf record, cpu-clock)."""
    perf = subprocess.run(["perf", "--version"], capture_output=True, text=True)
    if perf.returncode != 0:
        return {"title": "Where sluice's CPU goes", "what": "", "kind": "pending", "results": {},
                "md": ["`perf` is not usable here (`apt-get install linux-perf`); no profile taken."]}
    data = os.path.join(env.workdir, "perf.data")
    with Stack(env, Setup(), kinds=("sluice",), with_direct=False) as st:
        s = st.targets[0]
        wrk(env, s, env.warmup, CONNS)
        argv = ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-p", str(s.pids()[0]), "-o", data, "--",
                "sleep", str(env.duration)]
        env.log.add("perf record", argv)
        rec = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        res = measure(env, s, st.backend, lambda t: wrk(env, t, env.duration, CONNS))
        rec.wait(timeout=env.duration + 30)
    def report(*extra):
        r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", *extra],
                           capture_output=True, text=True, timeout=300)
        rows = []
        for ln in r.stdout.splitlines():
            m = re.match(r"^\s*([\d.]+)%\s+(\S+)(?:\s+\[(.)\]\s+(.*?))?(?:\s+-\s+-)?\s*$", ln)
            if m:
                rows.append((float(m.group(1)), m.group(2), m.group(3), (m.group(4) or "").strip()))
        return rows

    by_dso = report("--sort", "dso")
    symbols = report("--sort", "dso,symbol", "--percent-limit", "0.7")
    user = sum(p for p, dso, _, _ in by_dso if not dso.startswith("[kernel"))
    per_req = res["cpu_us"] if res.get("cpu_us") else None
    table = ["| self % | object | symbol |", "|---|---|---|"]
    for pct, dso, kind, sym in symbols[:35]:
        sym = sym if len(sym) <= 110 else sym[:107] + "…"
        table.append(f"| {pct:.2f} | {dso} | `{sym.replace('|', '/')}` |")
    md = [f"`perf record -e cpu-clock -F 1999` on sluice during `wrk -t1 -c{CONNS}` (0 B, {res['rps']:,.0f} rps"
          + (f", {per_req:.2f} CPU-µs/req" if per_req else "") + "). Self time by symbol, ≥ 0.7% of samples; "
          "no call graphs (the release build has no frame pointers).", "",
          f"User space {user:.1f}% of samples, kernel {100 - user:.1f}%. By object: "
          + ", ".join(f"{dso} {p:.1f}%" for p, dso, _, _ in by_dso[:6]), "", *table]
    return {"title": "Where sluice's CPU goes (profile)", "what": "", "md": md, "results": {}, "kind": "profile"}


def sluice_has_tls(env):
    out = subprocess.run([os.path.join(env.bin_dir, "sluice"), "run", "--help"], capture_output=True, text=True)
    return "--default-certificate" in out.stdout


def tls(env):
    """TLS termination: HTTP/1.1 and h2 (ALPN) keep-alive, and a new handshake per request."""
    if not sluice_has_tls(env):
        return {"title": "TLS termination", "kind": "pending", "results": {}, "what": "",
                "md": ["Not measured: this sluice build has no TLS listener (`--https`)."]}
    if not getattr(env, "tls", None):
        env.tls = make_certificate(env.workdir)
    md, all_results = [], {}
    rate = {}

    def handshakes(t, d):
        # h2load reconnects only in count mode: size the count from this target's last rate.
        n = int(max(200, rate.get(t.name, 100) * d))
        r = h2load_tls(env, t, d, CONNS, 1, h1=True, close=True, requests=n)
        rate[t.name] = r["rps"]
        return r

    variants = [
        ("tls-h1", "HTTP/1.1 over TLS, keep-alive (`h2load --h1 -c32 -m1`)",
         lambda t, d: h2load_tls(env, t, d, CONNS, 1, h1=True)),
        ("tls-h2", "HTTP/2 over TLS (ALPN h2), 4 connections × 8 streams (`h2load -c4 -m8`)",
         lambda t, d: h2load_tls(env, t, d, 4, 8)),
        ("tls-handshake", "A new TLS connection per request: HTTP/1.1 with `Connection: close` "
                          "(`h2load --h1 -c32 -n N -H 'Connection: close'`, N sized from the warm-up's rate to "
                          "last about the run duration); the cost is the full handshake",
         handshakes),
    ]
    with Stack(env, Setup(tls=True), with_direct=False) as st:
        for t in st.targets:
            t.check()
        for key, label, fn in variants:
            results = alternate(env, key, st.targets, st.backend, lambda t, fn=fn: fn(t, env.duration),
                                warmup=lambda t, fn=fn: fn(t, env.warmup))
            all_results.update({f"{name} ({key})": runs for name, runs in results.items()})
            md += [f"**{label}**", ""] + closed_table(results) + [""]
    md += ["Certificate: self-signed ECDSA P-256 for the benchmark host, served by SNI (sluice: a "
           "`kubernetes.io/tls` Secret referenced from the KIngress `spec.tls`; nginx `ssl_certificate`; HAProxy "
           "`bind … ssl crt`). TLS 1.3 is negotiated; h2load sends SNI `bench.example.com` and dials 127.0.0.1 "
           "(`--connect-to`). Upstream is plain HTTP/1.1 keep-alive. For the handshake variant the reuse column "
           "is about the upstream side only: downstream every request is a new connection."]
    return {"title": "TLS termination", "kind": "closed-multi", "results": all_results,
            "what": "The proxy terminates TLS for the client and forwards over HTTP/1.1 keep-alive; three loads, "
                    "each in alternating rounds.", "md": md}


def sluice_has_revisions(env):
    out = subprocess.run([os.path.join(env.bin_dir, "sluice"), "run", "--help"], capture_output=True, text=True)
    return "--system-namespace" in out.stdout


COLD_HOST = "cold.example.com"
STARTUP_SETTLE_S = 2.0


def cold_manifests(env, buffered):
    backend = os.path.join(env.bin_dir, "sluice-testkit-backend")
    # The instance runs on CPU 0 like every backend; sluice sets PORT.
    command = f"exec taskset -c {CLIENT_CPU} {backend} --listen 127.0.0.1:$PORT >/dev/null"
    return f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: config-autoscaler, namespace: knative-serving}}
data:
  allow-zero-initial-scale: "true"
---
apiVersion: sluice.dev/v1alpha1
kind: Revision
metadata:
  name: cold
  namespace: perf
  annotations:
    autoscaling.knative.dev/initial-scale: "0"
    autoscaling.knative.dev/max-scale: "1"
    sluice.dev/max-buffered-requests: "{buffered}"
spec:
  process: {{command: [sh, -c, {json.dumps(command)}]}}
---
apiVersion: sluice.dev/v1alpha1
kind: Route
metadata: {{name: cold, namespace: perf}}
spec:
  hosts: [{COLD_HOST}]
  traffic: [{{revision: cold, percent: 100}}]
"""


def activator(env):
    """Cold start from zero: one request, and 10,000 requests at once, against a Revision whose
    instance (a local process) sluice starts on the first request."""
    if not sluice_has_revisions(env):
        return {"title": "Activator: cold start and buffered requests", "kind": "pending", "results": {},
                "what": "", "md": ["Not measured: this sluice build has no Revision/activator support."]}
    n = 10_000
    variants = [("1 request", 1, 1, 1), (f"{n // 1000}k requests at once", n, 100, 100)]
    results = {label: [] for label, *_ in variants}
    for r in range(env.rounds):
        for label, count, clients, streams in variants:
            conf = os.path.join(env.workdir, f"cold-{free_port()}")
            os.makedirs(conf)
            write_atomic(os.path.join(conf, "cold.yaml"), cold_manifests(env, n))
            port, internal, admin = free_port(), free_port(), free_port()
            argv = ["taskset", "-c", PROXY_CPU, os.path.join(env.bin_dir, "sluice"), "run", "--config", conf,
                    "--http", f"127.0.0.1:{port}", "--internal-http", f"127.0.0.1:{internal}",
                    "--admin", f"127.0.0.1:{admin}", "--probe-addr", "127.0.0.1:0", "--threads", "1", "--shutdown-grace", "1s"]
            env.log.add("sluice", argv)
            started = time.time()
            proc = subprocess.Popen(argv, env={**os.environ, "SLUICE_LOG": "warn"},
                                    stdout=open(os.path.join(conf, "sluice.log"), "w"), stderr=subprocess.STDOUT)
            try:
                wait_port(port, timeout=60, proc=proc)
                # A request in sluice's first second waits for its first autoscaler tick (~1 s after
                # start); measure the steady state instead.
                time.sleep(max(0.0, STARTUP_SETTLE_S - (time.time() - started)))
                u0, s0 = cpu_ticks([proc.pid])
                try:
                    res = h2load_burst(env, port, COLD_HOST, count, clients, streams)
                except Exception as e:
                    res = {"failed": str(e)}
                u1, s1 = cpu_ticks([proc.pid])
                res["cpu_ms"] = (u1 - u0 + s1 - s0) / CLK_TCK * 1000
                res["rss_peak_mib"] = peak_rss_kib(proc.pid) / 1024
            finally:
                stop(proc)
            results[label].append(res)
            if "failed" in res:
                print(f"[activator round {r + 1}] {label}: FAILED: {res['failed']}", flush=True)
            else:
                print(f"[activator round {r + 1}] {label}: first response {res.get('min', 0) / 1000:.1f} ms, "
                      f"all in {res['elapsed_s'] * 1000:.0f} ms, errors {res['errors']}", flush=True)
    md = ["| load | first response ms | last response ms | all done ms | succeeded | errors | sluice CPU ms "
          "| sluice peak RSS MiB |", "|---|---|---|---|---|---|---|---|"]
    for label, runs in results.items():
        ok = [m for m in runs if "failed" not in m]
        md.append(f"| {label} | {with_spread([dict(x, v=x.get('min', 0) / 1000) for x in ok], 'v', 1)} "
                  f"| {with_spread([dict(x, v=x.get('max', 0) / 1000) for x in ok], 'v', 1)} "
                  f"| {with_spread([dict(x, v=x['elapsed_s'] * 1000) for x in ok], 'v', 0)} "
                  f"| {fmt(med(ok, 'counted'), 0)} | {total(ok, 'errors'):.0f}"
                  f"{f' + {len(runs) - len(ok)} failed run(s)' if len(ok) < len(runs) else ''} "
                  f"| {with_spread(ok, 'cpu_ms', 0)} | {with_spread(ok, 'rss_peak_mib', 1)} |")
    md += ["", "Each round starts a fresh sluice whose Revision is at zero (`initial-scale: 0`, "
               "`allow-zero-initial-scale`), so the first request triggers the scale-from-zero: sluice spawns the "
               "instance (`sluice-testkit-backend` with `PORT`), probes it until it accepts connections, publishes "
               "it as an endpoint and releases the queue in arrival order. `max-scale: 1` keeps it to one instance "
               "(without it the KPA's panic mode starts dozens for a 10k burst, each a process on CPU 0). h2load (h2c) sends the requests at once "
               f"({variants[1][2]} connections × {variants[1][3]} streams for the burst); *first response* and "
               "*last response* are its fastest and slowest request times, *all done* its wall time. Errors must "
               f"be 0: the buffer bound is `sluice.dev/max-buffered-requests: {n}`. nginx and HAProxy have no "
               "equivalent, so this is sluice alone.",
           "", f"The load starts {STARTUP_SETTLE_S:g} s after sluice was launched."]
    return {"title": "Activator: cold start and buffered requests", "kind": "activator", "results": {},
            "what": "Requests to a Revision scaled to zero are held by sluice's activator until the instance it "
                    "starts is ready.", "md": md, "cold": results}


def haproxy_max_conns(n):
    """The most idle client connections (≤ N, in hundreds) HAProxy can be configured for: it refuses
    to start unless RLIMIT_NOFILE covers 2 descriptors per `maxconn` (client and server side) plus
    its own, and this process's hard limit is all it can get."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        return n
    # targets.haproxy_conf sets maxconn to conns + 256; leave HAProxy ~600 more descriptors.
    return min(n, ((hard - 600) // 2 - 256) // 100 * 100)


def memory(env):
    """Issue 12's goal 2: extra RSS per idle keep-alive connection (sluice, nginx, HAProxy), per
    HTTP/1.1 connection holding a buffered request and per buffered h2c stream (sluice: the
    activator holds them; the peers have none). perf/activator's measurement, one implementation."""
    title = "Memory per connection and per buffered request"
    if not sluice_has_revisions(env):
        return {"title": title, "kind": "pending", "results": {}, "what": "",
                "md": ["Not measured: this sluice build has no Revision/activator support."]}
    n = 2_000 if env.args.quick else 10_000
    # Each gateway's manifest directory has a random name; the log shows the command once.
    log = lambda argv: env.log.add("sluice (memory)", [re.sub(r"sluice-activator-\w+", "sluice-activator-N", a)
                                                        for a in argv])
    raw = mem.memory(env.bin_dir, n, on_argv=log, workdir=env.workdir)
    f = mem.per_item(n, raw)
    idle = {"sluice": (raw["idle"], n)}
    peer_failed = {}
    loop = asyncio.new_event_loop()
    try:
        for kind, count in (("nginx", n), ("haproxy", haproxy_max_conns(n))):
            try:
                with Stack(env, Setup(conns=count), kinds=(kind,), with_direct=False) as st:
                    t = st.targets[0]
                    t.check()
                    # Every process of the proxy: nginx's master and worker; HAProxy's one.
                    idle[kind] = (mem.idle_rss(loop, t.port, t.host, count, lambda: tree_rss_kib(t.cpu_root)), count)
            except Exception as e:  # sluice's figures stand without the peer's
                peer_failed[kind] = str(e)[:300]
                print(f"[memory] {kind}: FAILED: {e}", flush=True)
                continue
            r, _ = idle[kind]
            print(f"[memory] {kind} idle keep-alive: {r['base'] / 1024:.1f} -> {r['half'] / 1024:.1f} -> "
                  f"{r['full'] / 1024:.1f} MiB, {per_conn(r, count):.0f} B per connection ({r['failed']} failed, "
                  f"{r['closed']} closed by the proxy)", flush=True)
    finally:
        loop.close()
    # A row whose requests failed or whose connections the proxy closed early is not a figure.
    valid = lambda r: r["failed"] == 0 and r["closed"] == 0
    figures = {"idle": {"nginx": None, "haproxy": None,
                        **{k: (per_conn(r, c) if valid(r) else None) for k, (r, c) in idle.items()}},
               "h1-buffered": {"sluice": f["h1"]}, "h2-stream": {"sluice": f["stream"]}}
    figures["idle"]["count"] = n
    figures["h1-buffered"]["count"] = n
    figures["h2-stream"]["count"] = f["streams"]
    b = lambda v: "–" if v is None else f"{v:,.0f} B"
    goal = lambda key, v: "–" if v is None else ("met" if v <= mem.GOAL_BYTES[key] else "**NOT met**")
    md = ["| per item (extra RSS ÷ count) | sluice | nginx | HAProxy | goal (sluice) | |", "|---|---|---|---|---|---|",
          f"| idle keep-alive HTTP/1.1 client connection, served one proxied 0 B request | {b(figures['idle']['sluice'])} "
          f"| {b(figures['idle']['nginx'])} | {b(figures['idle']['haproxy'])} | ≤ 4 KB | "
          f"{goal('idle', figures['idle']['sluice'])} |",
          f"| HTTP/1.1 connection holding one buffered request | {b(f['h1'])} | no activator | no activator | ≤ 8 KB | "
          f"{goal('h1-buffered', f['h1'])} |",
          f"| buffered h2c stream ({f['h2conns']} connections × {f['streams'] // f['h2conns']}) | {b(f['stream'])} "
          f"| no activator | no activator | ≤ 2 KB | {goal('h2-stream', f['stream'])} |",
          f"| idle h2c connection (preface and SETTINGS, no stream) | {b(f['h2conn'])} | – | – | – | |",
          "", "| idle keep-alive | connections | RSS before | at half | at full (MiB) | failed | closed early |",
          "|---|---|---|---|---|---|---|"]
    for kind, (r, c) in idle.items():
        md.append(f"| {kind} | {c:,} | {r['base'] / 1024:.1f} | {r['half'] / 1024:.1f} | {r['full'] / 1024:.1f} "
                  f"| {r['failed']} | {r['closed']} |")
    base1, half1, full1 = raw["h1"]
    _, _, conns_all, streams_all, _, _ = raw["h2"]
    md += ["", f"Buffered requests (sluice): {n:,} held HTTP/1.1 requests {base1 / 1024:.1f} → {half1 / 1024:.1f} → "
               f"{full1 / 1024:.1f} MiB; {f['streams']:,} held h2c streams {conns_all / 1024:.1f} → "
               f"{streams_all / 1024:.1f} MiB.",
           "", "**Method.** Each figure is the proxy's RSS (`VmRSS`; nginx: master + worker, HAProxy: its one process) "
               "once it stopped moving (5 samples 0.2 s apart within 64 KiB), read at half the count and at the full "
               "count; the figure is the growth over the second half ÷ its count, which cancels start-up memory the "
               "allocator returns meanwhile (h2c streams: all connections first, then every stream). Idle: each "
               "connection is served one proxied request (8 in flight at a time, so the upstream pool stays small) "
               "and then left open; a row with a failed request or a connection the proxy closed before the last "
               "reading shows no figure. sluice runs fresh for each case (`sluice run --threads 1`, the code of "
               "`perf/activator --only memory`); nginx and HAProxy run as in the other scenarios with their "
               "connection limits raised for the count (configs below). The buffered rows are sluice only: nginx and "
               "HAProxy have no activator to hold requests for a Revision at zero."]
    for kind, why in peer_failed.items():
        md += ["", f"{kind}: the measurement failed: `{why}`"]
    if "haproxy" in idle and idle["haproxy"][1] < n:
        md += ["", f"HAProxy holds {idle['haproxy'][1]:,} connections, not {n:,}: it refuses to start unless "
                   "`RLIMIT_NOFILE` covers two descriptors per `maxconn`, and the hard limit here is "
                   f"{resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,}. The figure is per connection either way."]
    return {"title": title, "kind": "memory", "results": {}, "memory": figures, "md": md,
            "what": f"Extra RSS per idle keep-alive HTTP/1.1 client connection ({n:,} of them) for sluice, nginx and "
                    f"HAProxy; per HTTP/1.1 connection holding a buffered request ({n:,}) and per buffered h2c stream "
                    f"({f['streams']:,}) for sluice, whose activator holds requests for a Revision with no instance "
                    "ready. Issue 12's goal 2."}


def per_conn(r, count):
    """Bytes per connection from `memory.idle_rss`'s readings: the second half's growth ÷ its count."""
    return (r["full"] - r["half"]) * 1024 / (count - count // 2)


def activator_detail(env):
    """Folds in `perf/activator` (the activator's own figures) when that script exists."""
    script = os.path.join(env.root, "perf", "activator")
    if not os.access(script, os.X_OK):
        return {"title": "Activator detail", "kind": "pending", "results": {}, "what": "",
                "md": ["`perf/activator` is not present in this tree; nothing to fold in."]}
    out = os.path.join(env.workdir, "ACTIVATOR.md")
    argv = [script, "--no-build", "--out", out, "--rounds", str(env.rounds), "--duration", str(max(2, round(env.duration)))]
    if env.data.get("memory", {}).get("memory"):
        argv += ["--only", "activator"]  # the memory scenario measured its part in this run
    if env.args.quick:
        argv += ["--revisions", "3", "--buffered", "2000"]
    env.log.add("perf/activator", argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=900,
                       env={**os.environ, "CARGO_TARGET_DIR": os.path.dirname(env.bin_dir)})
    if r.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"perf/activator failed ({r.returncode}): {(r.stderr or r.stdout)[-600:]}")
    body = open(out).read().splitlines()
    # Its headings go one level down, under this section; its own title line is dropped.
    md = [("#" + ln) if ln.startswith("#") else ln for ln in body if not ln.startswith("# ")]
    return {"title": "Activator detail (perf/activator)", "kind": "folded", "results": {},
            "what": "The activator's own harness, run by this one; its report follows unchanged.", "md": md}


def fleet_detail(env):
    """Folds in `perf/fleet` (issue 8's fleet figures: 10k KIngresses, controller + proxies) when
    that script exists; optional, like `activator-detail`."""
    script = os.path.join(env.root, "perf", "fleet")
    if not os.access(script, os.X_OK):
        return {"title": "Fleet detail", "kind": "pending", "results": {}, "what": "",
                "md": ["`perf/fleet` is not present in this tree; nothing to fold in."]}
    out = os.path.join(env.workdir, "FLEET.md")
    # perf/run built the binaries; perf/fleet also needs its two examples (it builds them unless
    # perf/run was told not to build).
    argv = [script, "--out", out] + (["--no-build"] if env.args.no_build else [])
    if env.args.quick:
        argv += ["--quick"]
    env.log.add("perf/fleet", argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=3600,
                       env={**os.environ, "CARGO_TARGET_DIR": os.path.dirname(env.bin_dir)})
    if r.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"perf/fleet failed ({r.returncode}): {(r.stderr or r.stdout)[-600:]}")
    body = open(out).read().splitlines()
    # Its headings go one level down, under this section; its own title line is dropped.
    md = [("#" + ln) if ln.startswith("#") else ln for ln in body if not ln.startswith("# ")]
    return {"title": "Fleet detail (perf/fleet)", "kind": "folded", "results": {},
            "what": "Issue 8's fleet harness (10,000 KIngresses; `sluice run`, and a controller with three "
                    "proxies), run by this one; its report follows unchanged.", "md": md}


def _truncating(fn):
    """Runs `fn`, then empties the access log at `path` (sluice appends: O_APPEND writes go on at
    the new end), so long runs do not fill the disk."""
    def run(t, duration=None):
        try:
            return fn(t, duration)
        finally:
            if getattr(t, "log_path", None):
                os.truncate(t.log_path, 0)
    return run


def callgrind_ir(env, backend, name, extra_args, requests):
    """Instructions (callgrind Ir, every thread) of one sluice process from its first served
    request, through `requests` HTTP/1.1 requests (h2load --h1, 4 connections), to its stop on
    SIGTERM. Counting starts only once it serves: start-up polls the kernel's socket table until
    the listener is up, and how long that takes varied by up to 9,000 instructions per request
    over a 2,000-request run."""
    out = os.path.join(env.workdir, f"callgrind.{name}.{requests}.out")
    wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    t = start_sluice(env, backend, Setup(), name=f"callgrind-{name}", extra_args=extra_args, wrapper=wrapper,
                     start_timeout=600)
    try:
        t.check()
        # taskset execs valgrind, which runs sluice in the same process.
        subprocess.run(["callgrind_control", "--instr=on", str(t.procs[0].pid)], check=True, capture_output=True,
                       timeout=60)
        argv = ["taskset", "-c", CLIENT_CPU, "h2load", "--h1", "-t1", "-c4", f"-n{requests}",
                "-H", f":authority: {t.host}", f"http://127.0.0.1:{t.port}/"]
        env.log.add("h2load (callgrind)", argv)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        res = parse_h2load_done(r.stdout)
        if res != requests:
            raise RuntimeError(f"callgrind {name}: {res} of {requests} requests succeeded: {r.stdout[-300:]}")
    finally:
        for p in t.procs:
            p.terminate()
            p.wait(timeout=300)
    for line in open(out):
        if line.startswith("summary:") or line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"no totals in {out}")


def parse_h2load_done(out):
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    return int(m.group(1)) if m else 0


def access_log(env):
    """sluice with the access log off, JSON to a file and text to a file: CPU per request
    (wall-clock CPU of every thread, the writer's included), and callgrind instructions."""
    with Stack(env, Setup(), kinds=(), with_direct=False) as st:
        variants = []
        for name, args in (("sluice, access log off", []),
                           ("sluice, JSON access log", ["--access-log-format", "json"]),
                           ("sluice, text access log", ["--access-log-format", "text"])):
            path = None
            if args:
                path = os.path.join(env.workdir, f"access-{free_port()}.log")
                args = ["--access-log", path, *args]
            t = st.add(start_sluice(env, st.backend, Setup(), name=name, extra_args=args))
            t.log_path = path
            t.check()
            variants.append(t)
        load = _truncating(lambda t, duration=None: wrk(env, t, duration or env.duration, CONNS))
        results = alternate(env, "access-log", variants, st.backend, load,
                            warmup=lambda t: load(t, env.warmup))
        counters = {}
        for t in variants:
            m = t.metrics() or {}
            counters[t.name] = (m.get("sluice_access_log_lines_total", 0), m.get("sluice_access_log_dropped_total", 0))
    md = closed_table(results)
    off = med(results["sluice, access log off"], "cpu_us")
    md += [""]
    for name in ("sluice, JSON access log", "sluice, text access log"):
        on = med(results[name], "cpu_us")
        lines, dropped = counters.get(name, (0, 0))
        if off and on:
            md.append(f"- {name}: **{on - off:+.2f} CPU-µs per request** over the log off ({off:.2f} → {on:.2f}, "
                      f"{(on / off - 1) * 100:+.0f}%); {lines:,.0f} lines written, {dropped:,.0f} dropped "
                      "(queue full) over all runs.")
    have_valgrind = subprocess.run(["sh", "-c", "command -v valgrind"], capture_output=True).returncode == 0
    if have_valgrind and not env.args.quick:
        n1, n2 = 2_000, 12_000
        md += ["", f"**Instructions per request (callgrind).** Each variant: one sluice under "
               f"`valgrind --tool=callgrind`, counted from its first served request (start-up is not: its wait for "
               f"the listener varies), then {n1:,} and (a fresh process) {n2:,} requests (`h2load --h1 -c4`), "
               f"SIGTERM; Ir per request = (Ir({n2:,}) − Ir({n1:,})) ÷ {n2 - n1:,}, which cancels the first "
               "request and shutdown. Every thread counts, the writer's too. Repeatable to a fraction of a percent, unlike "
               "CPU time on a shared machine.", "",
               "| variant | Ir per request | vs log off |", "|---|---|---|"]
        with Stack(env, Setup(), kinds=(), with_direct=False) as st:
            base = None
            for name, args in (("log off", []), ("JSON log", ["json"]), ("text log", ["text"])):
                try:
                    per = []
                    for n in (n1, n2):
                        extra = []
                        if args:
                            path = os.path.join(env.workdir, f"callgrind-access-{free_port()}.log")
                            extra = ["--access-log", path, "--access-log-format", args[0]]
                        per.append(callgrind_ir(env, st.backend, name.replace(" ", "-"), extra, n))
                    ir = (per[1] - per[0]) / (n2 - n1)
                except Exception as e:
                    md.append(f"| {name} | failed: {str(e)[:120]} | |")
                    continue
                base = base if base is not None else ir
                md.append(f"| {name} | {ir:,.0f} | {ir - base:+,.0f} ({(ir / base - 1) * 100:+.1f}%) |")
                print(f"[access-log callgrind] {name}: {ir:,.0f} Ir/request", flush=True)
    return {"title": "Access log cost",
            "what": "sluice alone, three processes on the same backend measured in alternating rounds: access log "
                    "off (the default), JSON lines to a file, text lines to a file (`--access-log PATH`, queue "
                    "16,384). The file is truncated after every run. CPU-µs per request counts every thread of the "
                    "process, so the writer thread's formatting and `write(2)` are included.",
            "md": md, "results": results, "kind": "closed"}


@dataclass
class Scenario:
    key: str
    fn: object
    in_quick: bool = True


SCENARIOS = [
    Scenario("h1-0b", h1_0b),
    Scenario("h1-1k", h1_1k),
    Scenario("h1-64k", h1_64k),
    Scenario("open-50", open_50),
    Scenario("open-80", open_80),
    Scenario("h2c", h2c),
    Scenario("grpc", grpc),
    Scenario("hosts-10k", hosts_10k),
    Scenario("h1-c256", h1_c256),
    Scenario("h1-c1024", h1_c1024),
    Scenario("reload", reloads),
    Scenario("route-change", route_churn),
    Scenario("tls", tls),
    Scenario("activator", activator),
    Scenario("memory", memory),
    Scenario("activator-detail", activator_detail),
    Scenario("fleet-detail", fleet_detail),
    Scenario("access-log", access_log),
    Scenario("reuse", upstream_reuse),
    Scenario("profile", profile, in_quick=False),
]
