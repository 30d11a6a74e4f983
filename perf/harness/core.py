"""The run environment, one measured run, and alternating rounds."""

import copy
import statistics
import time

from .procs import CLK_TCK, run_queue_wait_ns
from .targets import Backend, Setup, STARTERS, direct


class Env:
    def __init__(self, args, bin_dir, workdir, log, root):
        self.args = args
        self.bin_dir = bin_dir
        self.workdir = workdir
        self.log = log
        self.root = root
        self.configs = {}
        # Scenario key -> its result dict (see scenarios.py); later scenarios read earlier ones.
        self.data = {}
        self.nginx_max_rps = None

    @property
    def duration(self):
        return self.args.duration

    @property
    def rounds(self):
        return self.args.rounds

    @property
    def warmup(self):
        return self.args.warmup


class Stack:
    """A backend plus the targets of one scenario; everything stops on exit."""

    def __init__(self, env, setup=Setup(), kinds=("sluice", "nginx", "haproxy"), with_direct=True):
        self.env, self.setup, self.kinds, self.with_direct = env, setup, kinds, with_direct
        self.backend = None
        self.targets = []

    def __enter__(self):
        try:
            self.backend = Backend(self.env, self.setup.body_bytes)
            if self.with_direct:
                self.targets.append(direct(self.backend, self.setup))
            for kind in self.kinds:
                self.targets.append(STARTERS[kind](self.env, self.backend, self.setup))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def add(self, target):
        self.targets.append(target)
        return target

    def __exit__(self, *exc):
        for t in self.targets:
            t.stop()
        if self.backend:
            self.backend.stop()


def variant(target, name, **attrs):
    """The same running target under another name (e.g. with route churn switched on)."""
    t = copy.copy(target)
    t.name = name
    for k, v in attrs.items():
        setattr(t, k, v)
    return t


def measure(env, target, backend, load):
    """Runs `load(target)` once; adds the target's CPU, RSS, backend and sluice counters."""
    pids = target.pids()
    b0 = backend.stats() if backend else None
    m0 = target.metrics()
    u0, s0 = target.cpu()
    w0 = run_queue_wait_ns(pids)
    t0 = time.time()
    res = load(target)
    wall = time.time() - t0
    u1, s1 = target.cpu()
    w1 = run_queue_wait_ns(pids)
    b1 = backend.stats() if backend else None
    m1 = target.metrics()
    n = res.get("requests") or 0
    res["wall_s"] = wall
    if pids and n:
        res["user_us"] = (u1 - u0) / CLK_TCK * 1e6 / n
        res["sys_us"] = (s1 - s0) / CLK_TCK * 1e6 / n
        res["cpu_us"] = res["user_us"] + res["sys_us"]
        res["cpu_pct"] = (u1 - u0 + s1 - s0) / CLK_TCK / wall * 100
        res["rss_mib"] = target.rss_kib() / 1024
        # Time the proxy was ready to run while its CPU ran something else (kdamond, ksoftirqd, other
        # processes, its own other threads): such stalls set the open-loop tail (perf/README.md).
        res["cpu_wait_ms_per_s"] = max(0, w1 - w0) / 1e6 / wall
    if b0 and b1:
        res["backend_conns"] = b1[0] - b0[0] - 1  # minus the second stats call's own connection
        res["backend_reqs"] = b1[1] - b0[1]
    if m0 is not None and m1 is not None:
        res["sluice_upstream_conns"] = m1.get("sluice_upstream_connections_total", 0) - m0.get(
            "sluice_upstream_connections_total", 0)
        res["snapshot_applies"] = m1.get("sluice_snapshot_apply_duration_seconds_count", 0) - m0.get(
            "sluice_snapshot_apply_duration_seconds_count", 0)
    return res


def alternate(env, label, targets, backend, load, warmup=None):
    """Warm every target up, then `rounds` rounds in alternating order (A B C, C B A, ...)."""
    warm = warmup or load
    for t in targets:
        try:
            warm(t)
        except Exception as e:  # a failed warm-up shows up again, with details, in the rounds
            print(f"[{label}] warm-up of {t.name} failed: {e}", flush=True)
    results = {t.name: [] for t in targets}
    for r in range(env.rounds):
        order = targets if r % 2 == 0 else list(reversed(targets))
        for t in order:
            try:
                m = measure(env, t, backend, load)
            except Exception as e:
                print(f"[{label} round {r + 1}] {t.name}: FAILED: {e}", flush=True)
                m = {"failed": str(e)}
            results[t.name].append(m)
            if "failed" not in m:
                print(f"[{label} round {r + 1}] {t.name}: {m['rps']:,.0f} rps"
                      + (f", cpu {m['cpu_us']:.2f} µs/req" if m.get("cpu_us") else "")
                      + (f", p50 {m['p50']:.0f} p99 {m['p99']:.0f} µs" if m.get("p50") else "")
                      + f", errors {m['errors']}", flush=True)
    return results


def values(runs, key):
    return [m[key] for m in runs if m.get(key) is not None and "failed" not in m]


def med(runs, key):
    v = values(runs, key)
    return statistics.median(v) if v else None


def spread(runs, key):
    v = values(runs, key)
    return (min(v), max(v)) if v else (None, None)


def total(runs, key):
    return sum(values(runs, key))


def median_cdf(runs):
    """Per-quantile median over rounds of the open-loop CDF points."""
    cdfs = [m["cdf"] for m in runs if m.get("cdf")]
    if not cdfs:
        return []
    return [(cdfs[0][i][0], statistics.median(c[i][1] for c in cdfs)) for i in range(len(cdfs[0]))]
