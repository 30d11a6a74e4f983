"""perf/run: install tools, build, run every scenario, write perf/RESULTS.md and perf/plots/*.svg."""

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

from . import svg
from .core import Env, med, spread
from .procs import CommandLog
from .core import total
from .memory import GOAL_BYTES
from .scenarios import SCENARIOS, extra_cpu_noise, extra_cpu_per_change, reload_pairs
from .tables import fmt, peer

TOOLS = {"wrk": "wrk", "nginx": "nginx", "haproxy": "haproxy", "h2load": "nghttp2-client", "taskset": "util-linux",
         "pgrep": "procps", "openssl": "openssl"}


def have(tool):
    return shutil.which(tool) is not None or os.path.exists(f"/usr/sbin/{tool}")


def install_tools(skip):
    missing = sorted({pkg for tool, pkg in TOOLS.items() if not have(tool)})
    if not missing:
        return
    if skip:
        sys.exit(f"missing packages: {missing} (run without --no-install)")
    print(f"installing {' '.join(missing)}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", *missing], check=True, env=env, stdout=subprocess.DEVNULL)
    # perf(1) is optional (the profile section); failure to install it is not fatal.
    if not have("perf"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "linux-perf"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def build(root, log, skip):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    argv = ["cargo", "build", "--release", "-p", "sluice", "-p", "sluice-testkit", "--bins"]
    log.add("build", argv)
    if not skip:
        subprocess.run(argv, cwd=root, check=True)
    bin_dir = os.path.join(target, "release")
    for b in ("sluice", "sluice-testkit-backend", "sluice-testkit-load", "sluice-testkit-relay"):
        if not os.path.exists(os.path.join(bin_dir, b)):
            sys.exit(f"{b} not found in {bin_dir} (build it, or drop --no-build)")
    return bin_dir


def raise_fd_limit():
    """Soft RLIMIT_NOFILE up to the hard limit (everything started inherits it): the c=1024
    scenario needs over 2,048 descriptors per proxy. Returns (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def busy_state():
    """The 1-min load, compilers running, and two CPU clocks in seconds: the machine's busy time
    (user, nice and system in /proc/stat) and this harness's own with that of everything it
    started and waited for. Over a run, the first minus the second is other processes' work:
    the load average at the end cannot tell, as it counts the run's own last minute."""
    load1 = float(open("/proc/loadavg").read().split()[0])
    compilers = subprocess.run(["pgrep", "-c", "-x", "cargo|rustc|cc1|cc1plus|ld"], capture_output=True,
                               text=True).stdout.strip() or "0"
    ticks = open("/proc/stat").readline().split()[1:4]
    machine = sum(int(t) for t in ticks) / os.sysconf("SC_CLK_TCK")
    ours = sum(getattr(resource.getrusage(who), field)
               for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN) for field in ("ru_utime", "ru_stime"))
    return load1, int(compilers), machine, ours


# Other processes' CPU over a run, as a share of one CPU, above which the report flags it.
OTHER_WORK_LIMIT = 0.05


def other_work(busy_start, busy_end, elapsed):
    """CPU-seconds other processes used during the run, and that as a share of one CPU."""
    other = max(0.0, (busy_end[2] - busy_start[2]) - (busy_end[3] - busy_start[3]))
    return other, other / max(elapsed, 1e-9)


def tool_version(argv, stream="stdout"):
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        out = (r.stdout if stream == "stdout" else r.stderr) or r.stdout or r.stderr
        return out.strip().splitlines()[0]
    except Exception:
        return f"{argv[0]}: not available"


def machine_lines(root):
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(open("/proc/meminfo").readline().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError):
        pass
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    # The run's own outputs (this report, its plots, the detail reports) do not count.
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                            ":(exclude)perf/*.md", ":(exclude)perf/plots"], cwd=root,
                           capture_output=True, text=True).stdout.strip()
    return [
        f"- {cpu}, {os.cpu_count()} CPUs{mem}; {platform.platform()}",
        f"- sluice at commit `{commit}`{' (work tree has uncommitted changes)' if dirty else ''}",
        f"- {tool_version(['rustc', '--version'])}; Python {platform.python_version()}",
        f"- {tool_version(['nginx', '-v'], 'stderr')}",
        f"- {tool_version(['haproxy', '-v'])}",
        f"- {tool_version(['wrk', '--version'])}",
        f"- {tool_version(['h2load', '--version'])}",
        "- `RLIMIT_NOFILE` (soft/hard) for the harness and everything it starts: "
        + "/".join(str(x) for x in resource.getrlimit(resource.RLIMIT_NOFILE)),
    ]


# Issue 12, goal 2: (key in a scenario's "memory" dict, goal, limit in bytes per item). A memory
# scenario reports `result["memory"] = {key: {"sluice": bytes per item, "nginx": ..., "count": N}}`
# (extra RSS ÷ count); the goal table picks the figures up from whichever scenario has them (the
# `memory` scenario; its limits and perf/activator's are the same, `memory.GOAL_BYTES`).
MEMORY_GOALS = [
    ("h1-buffered", "≤ 8 KB per HTTP/1.1 connection holding a buffered request", GOAL_BYTES["h1-buffered"]),
    ("h2-stream", "≤ 2 KB per buffered h2 stream", GOAL_BYTES["h2-stream"]),
    ("idle", "≤ 4 KB per idle keep-alive client connection", GOAL_BYTES["idle"]),
]

# Issue 12, goal 1: CPU per request ≤ the best peer, per protocol (scenario key, label, stretch).
CPU_GOALS = [("h1-0b", "HTTP/1.1 0 B", 0.8), ("h1-1k", "HTTP/1.1 1 KB", 0.8), ("h2c", "h2c", None),
             ("grpc", "gRPC unary", None)]


def _kib(b):
    return f"{b / 1024:.2f} KB" if b >= 1024 else f"{b:.0f} B"


def goal_rows(env):
    """(goal, measured, met: True/False/None) for issue 12's goals 1–5."""
    d = env.data
    rows = []
    for key, label, stretch in CPU_GOALS:
        goal = f"1. CPU per request ≤ best peer: {label}" + (f" (stretch {stretch}×)" if stretch else "")
        r = d.get(key, {}).get("results") or {}
        cs = med(r.get("sluice", []), "cpu_us")
        peers = {p: med(r.get(p, []), "cpu_us") for p in ("nginx", "haproxy")}
        peers = {p: v for p, v in peers.items() if v}
        if not cs or not peers:
            rows.append((goal, "not measured in this run", None))
            continue
        best = min(peers, key=peers.get)
        x = cs / peers[best]
        extra = f"; stretch {'met' if x <= stretch else 'not met'}" if stretch else ""
        won, compared = rounds_won(r, list(peers))
        rounds = f"; sluice lowest in {won} of {compared} rounds" if compared else ""
        rows.append((goal, f"sluice {cs:.2f} vs {best} {peers[best]:.2f} CPU-µs/req: **{x:.2f}×** ("
                     + ", ".join(f"{p} {v:.2f}" for p, v in peers.items()) + f"){extra}{rounds}", x <= 1.0))
    for mkey, goal, limit in MEMORY_GOALS:
        found = next((m["memory"][mkey] for m in d.values() if isinstance(m.get("memory"), dict)
                      and mkey in m["memory"] and m["memory"][mkey].get("sluice") is not None), None)
        if not found:
            rows.append((f"2. Memory: {goal}", "not measured in this run", None))
            continue
        peers = ", ".join(f"{p} {_kib(found[p])}" for p in ("nginx", "haproxy") if found.get(p) is not None)
        count = f" over {found['count']:,}" if found.get("count") else ""
        rows.append((f"2. Memory: {goal}", f"sluice **{_kib(found['sluice'])}** per item{count}"
                     + (f" ({peers})" if peers else ""), found["sluice"] <= limit))
    for key, conns in (("h1-c256", 256), ("h1-c1024", 1024)):
        goal = f"3. Concurrency: CPU per request at c={conns:,} within 5% of c=32 (HTTP/1.1 0 B)"
        c = d.get(key)
        g = (c or {}).get("growth") or {}
        if g.get("sluice") is None:
            rows.append((goal, "not measured in this run", None))
            continue
        peers = ", ".join(f"{p} {g[p]:+.1f}%" for p in ("nginx", "haproxy") if g.get(p) is not None)
        floor = ""
        if g.get("sluice-capped") is not None:
            floor += f"; sluice with {c['capped_upstream']} upstream connections {g['sluice-capped']:+.1f}%"
        relay_sys = (c.get("sys") or {}).get("relay") or (None, None)
        if None not in relay_sys:
            # The kernel's growth under a relay that does only the four system calls, as a share
            # of sluice's own c=32 figure: what no proxy's code can win back.
            added = relay_sys[1] - relay_sys[0]
            floor += (f"; the kernel alone, under a bare relay with an upstream connection per client, adds {added:+.2f} µs/req = "
                     f"{added / c['base_cpu']['sluice'] * 100:+.1f}% of sluice's c=32 figure")
        rows.append((goal, f"sluice {c['base_cpu']['sluice']:.2f} → {c['cpu']['sluice']:.2f} CPU-µs/req: "
                     f"**{g['sluice']:+.1f}%** ({peers}{floor})", g["sluice"] <= 5.0))
    o = d.get("open-50")
    for k in ("p50", "p99"):
        goal = f"4. Added {k} at 50% of nginx's max (open loop) ≤ nginx's added {k}"
        r = (o or {}).get("results") or {}
        dv = med(peer(r, "direct") or [], k)
        sv, nv = med(r.get("sluice", []), k), med(r.get("nginx", []), k)
        if None in (dv, sv, nv):
            rows.append((goal, "not measured in this run", None))
            continue
        hv = med(r.get("haproxy", []), k)
        hap = f", HAProxy {hv - dv:+.0f}" if hv is not None else ""
        won, compared = rounds_won(r, ["nginx"], key=k)
        rounds = f"; sluice at most nginx's in {won} of {compared} rounds" if compared else ""
        rows.append((goal, f"sluice **{sv - dv:+.0f} µs** vs nginx {nv - dv:+.0f} µs (direct {dv:.0f} µs{hap}){rounds}",
                     sv - dv <= nv - dv))
    rows.append(reload_goal(d.get("reload")))
    return rows


def rounds_won(results, peers, key="cpu_us"):
    """(rounds where sluice's `key` was at most every peer's, rounds where all had a figure).
    A round runs its targets back to back, so this comparison sees less of the machine's drift
    than one between medians of rounds taken minutes apart."""
    runs = results.get("sluice", [])
    won = compared = 0
    for i, mine in enumerate(runs):
        theirs = [results[p][i].get(key) for p in peers if i < len(results.get(p, []))
                  and "failed" not in results[p][i]]
        if "failed" in mine or mine.get(key) is None or len(theirs) != len(peers) or None in theirs:
            continue
        compared += 1
        won += mine[key] <= min(theirs)
    return won, compared


def reload_goal(rel):
    """Goal 5. sluice: no errors, every change taken before the next, its p99 while reloading no
    worse than the best peer's, and its CPU per change no more than the best peer's. CPU per change
    is read from the no-traffic measure (`idle_change_cpu`) when the run has it: under load, the
    derived figure's noise (the steady rounds' spread) is several ms per change, more than a change
    costs. The derived figure is still reported."""
    goal = "5. Reloads: a route change every 200 ms under load (errors, latency, CPU) vs nginx and HAProxy"
    if not rel or not rel.get("results"):
        return goal, "not measured in this run", None
    pairs = reload_pairs(rel["results"])
    if "sluice" not in pairs:
        return goal, "not measured in this run", None
    parts, figs = [], {}
    for kind, (st, rl) in pairs.items():
        if not rl:
            continue
        changes, seen = total(rl, "changes"), total(rl, "seen")
        e, p99, cpu = total(rl, "errors"), med(rl, "p99"), extra_cpu_per_change(st, rl)
        quiet = (rel.get("idle") or {}).get(kind)
        # The CPU compared is the no-traffic one when measured. A last change not taken there
        # leaves no figure: for sluice, no verdict; a peer's is not compared.
        compared = (quiet["ms_per_change"] if quiet["took_effect"] else None) if quiet else cpu
        figs[kind] = (e, p99, compared, changes, seen)
        if quiet:
            cpu_text = (f"{quiet['ms_per_change']:.2f} CPU-ms/change without traffic"
                        + ("" if quiet["took_effect"] else " (**last change not taken**)")
                        + f" ({fmt(cpu, 2)} under load, noise ±{fmt(extra_cpu_noise(st, rl), 2)})")
        else:
            cpu_text = f"{fmt(cpu, 2)} CPU-ms/change"
        parts.append(f"{kind}: {e:.0f} errors, p99 {fmt(med(st, 'p99'), 0)} → {fmt(p99, 0)} µs, "
                     f"{cpu_text}, {seen:.0f}/{changes:.0f} took effect")
    s = figs.get("sluice")
    peers = [v for k, v in figs.items() if k != "sluice"]
    met = None
    if s and all(x is not None for x in s[:3]):
        met = s[0] == 0 and s[4] == s[3] and all(
            p[1] is None or s[1] <= p[1] for p in peers) and all(p[2] is None or s[2] <= p[2] for p in peers)
    return goal, "; ".join(parts), met


def earlier_rows(env):
    """Goals of earlier issues still tracked: rps on one core, upstream reuse."""
    d = env.data
    rows = []
    h = d.get("h1-0b")
    if h and h["results"].get("sluice") and h["results"].get("nginx"):
        rs, rn = med(h["results"]["sluice"], "rps"), med(h["results"]["nginx"], "rps")
        rows.append(("≥ 1.0× nginx rps on one core (HTTP/1.1, 0 B, c=32)",
                     f"sluice {fmt(rs, 0)} vs nginx {fmt(rn, 0)} rps: **{rs / rn:.2f}×**" if rs and rn else "–",
                     (rs / rn >= 1.0) if rs and rn else None))
    else:
        rows.append(("≥ 1.0× nginx rps on one core", "not measured in this run", None))
    ru = d.get("reuse")
    if ru and "sluice" in ru["summary"]:
        v = ru["summary"]["sluice"]
        peers = ", ".join(f"{p} {ru['summary'][p]:.2f}%" for p in ("nginx", "haproxy") if p in ru["summary"])
        rows.append(("≥ 99.5% upstream connection reuse", f"sluice **{v:.3f}%** ({peers})", v >= 99.5))
    else:
        rows.append(("≥ 99.5% upstream connection reuse", "not measured in this run", None))
    return rows


def shortfalls(env, rows):
    """Plain sentences for every goal not met, with what the numbers say about why."""
    out = []
    h = env.data.get("h1-0b")
    if h and not (h["results"].get("sluice") and h["results"].get("nginx")):
        h = None
    for goal, measured, met in rows:
        if met is not False:
            continue
        if goal.startswith("1.") and "HTTP/1.1 0 B" in goal and h:
            s, n = h["results"]["sluice"], h["results"]["nginx"]
            du = med(s, "user_us") - med(n, "user_us")
            ds = med(s, "sys_us") - med(n, "sys_us")
            out.append(f"- **sluice uses more CPU per request than nginx (HTTP/1.1 0 B).** Per request it spends "
                       f"{med(s, 'user_us'):.2f} µs in user space and {med(s, 'sys_us'):.2f} µs in the kernel, "
                       f"nginx {med(n, 'user_us'):.2f} + {med(n, 'sys_us'):.2f}: the gap is {du:+.2f} µs user, "
                       f"{ds:+.2f} µs kernel. The profile section shows where sluice's samples land.")
        elif "rps" in goal and h:
            s, n = h["results"]["sluice"], h["results"]["nginx"]
            out.append(f"- **sluice serves fewer requests per second than nginx on one core** "
                       f"({med(s, 'rps'):,.0f} vs {med(n, 'rps'):,.0f}); with CPU 1 at "
                       f"{fmt(med(s, 'cpu_pct'), 0)}% for sluice vs {fmt(med(n, 'cpu_pct'), 0)}% for nginx, "
                       "this follows from its CPU per request when the proxy core is the limit.")
        elif "reuse" in goal:
            out.append(f"- **Upstream reuse below 99.5%**: {measured}. See the reuse section for the scenario "
                       "that churns connections.")
        else:
            out.append(f"- **Not met: {goal}**: {measured}.")
    return out


def summary_plots(env):
    groups, series = [], ["direct", "sluice", "nginx", "haproxy"]
    rps, cpu = {}, {}
    labels = {"h1-0b": "HTTP/1.1 0 B", "h1-1k": "HTTP/1.1 1 KB", "h1-64k": "HTTP/1.1 64 KB", "h2c": "h2c",
              "grpc": "gRPC unary"}
    for key, label in labels.items():
        d = env.data.get(key)
        if not d:
            continue
        groups.append(label)
        for s in series:
            runs = d["results"].get(s)
            if not runs:
                continue
            m = med(runs, "rps")
            if m is not None:
                rps[(label, s)] = (m, *spread(runs, "rps"))
            c = med(runs, "cpu_us")
            if c is not None:
                cpu[(label, s)] = (c, *spread(runs, "cpu_us"))
    if not groups:
        return []
    note = f"median of {env.rounds} round(s), whiskers min–max; proxy on CPU 1, client + backend on CPU 0"
    svg.bar_chart(os.path.join(env.plots, "throughput.svg"), "Closed-loop throughput (32 in flight)", groups,
                  series, rps, "requests / s", note)
    svg.bar_chart(os.path.join(env.plots, "cpu-per-request.svg"), "Proxy CPU per request (lower is better)",
                  groups, series[1:], cpu, "CPU-µs / request", note)
    lines = ["![throughput](plots/throughput.svg)", "", "![CPU per request](plots/cpu-per-request.svg)", "",
             "| scenario | " + " | ".join(f"{s} rps" for s in series) + " | " + " | ".join(
                 f"{s} CPU-µs/req" for s in series[1:]) + " |",
             "|---|" + "---|" * (2 * len(series) - 1)]
    for g in groups:
        lines.append(f"| {g} | " + " | ".join(fmt(rps.get((g, s), (None,))[0], 0) for s in series) + " | "
                     + " | ".join(fmt(cpu.get((g, s), (None,))[0], 2) for s in series[1:]) + " |")
    return lines


def write_report(env, started, elapsed, busy_start, busy_end):
    a = env.args
    cmd = "perf/run" + (" --quick" if a.quick else "") + (f" --only {a.only}" if a.only else "")
    lines = ["# sluice performance results", "",
             f"Generated by `{cmd}` on {started:%Y-%m-%d %H:%M} UTC in {elapsed / 60:.1f} min: "
             f"{a.rounds} round(s) of {a.duration:g} s per target and scenario.", ""]
    if a.quick:
        lines += ["> **Smoke run (`--quick`): one short round per target. These figures show that every scenario "
                  "works; they are not measurements.**", ""]
    load1, comp = busy_start[:2]
    other, share = other_work(busy_start, busy_end, elapsed)
    if load1 >= 0.5 or comp or share >= OTHER_WORK_LIMIT:
        lines += [f"> **Busy machine:** 1-min load {load1:.2f} at start ({comp} compiler processes); other "
                  f"processes used {other:.1f} CPU-s during the run ({share:.1%} of one CPU). Other work "
                  "shared the CPUs; treat the figures with caution.", ""]
    rows, earlier = goal_rows(env), earlier_rows(env)
    lines += ["## Goals (issue 12)", "", "| goal | measured | status |", "|---|---|---|"]
    for goal, measured, met in rows:
        status = "not measured" if met is None else ("met" if met else "**NOT met**")
        lines.append(f"| {goal} | {measured} | {status} |")
    lines += ["", "Earlier goals, still tracked:", "", "| goal | measured | status |", "|---|---|---|"]
    for goal, measured, met in earlier:
        status = "not measured" if met is None else ("met" if met else "**NOT met**")
        lines.append(f"| {goal} | {measured} | {status} |")
    lines.append("")
    lines += shortfalls(env, rows + earlier) or ["Every measured goal is met."]
    lines += ["", "## Summary", ""] + summary_plots(env)
    lines += ["", "Open-loop latency CDFs: " + ", ".join(
        f"[{p}](plots/{p})" for d in env.data.values() for p in d.get("plots", [])), ""]
    for key, d in env.data.items():
        lines += [f"## {d['title']}", "", f"`{key}`" + (f" — {d['what']}" if d.get("what") else ""), ""]
        lines += d["md"] + [""]
    lines += ["## Method", "",
              "- **Layout.** The proxy under test is pinned to CPU 1 (`taskset -c 1`): sluice `--threads 1`, nginx "
              "`worker_processes 1`, HAProxy `nbthread 1`. The load generator, the backend "
              "(`sluice-testkit-backend`, hyper, one current-thread runtime) and this harness are pinned to CPU 0. "
              "All targets of a scenario run side by side; idle ones cost nothing measurable.",
              f"- **Rounds.** Per scenario every target gets a {a.warmup:g} s warm-up, then {a.rounds} round(s) of "
              f"{a.duration:g} s in alternating order (A B C D, D C B A, …). Figures are medians of the rounds with "
              "(min–max). Every run is bounded (tool duration plus a subprocess timeout).",
              "- **CPU-µs per request** = Δ(utime + stime) of the proxy's processes (all threads; nginx and HAProxy: "
              "the master, its live workers and, through the master's cutime/cstime, the workers it reaped) "
              "from `/proc/PID/stat` over the run, ÷ requests completed in the run (warm-up phases of the open-loop "
              "generator included on both sides). rps is capped by CPU 0 (client + backend), so this is the fair "
              "figure; *proxy CPU %* shows how busy CPU 1 was.",
              "- **RSS**: `VmRSS` of the proxy at the end of the run.",
              "- **Latency** (open loop) from `sluice-testkit-load --rate`: a request's latency runs from its "
              "scheduled start, so coordinated omission is accounted for. Its pacer wakes on a timerfd just "
              "before each intended start when idle and spins the last 60 µs; `gen. lateness` shows its precision. Closed-loop latency is not reported as added latency: at "
              "saturation it measures queueing, not the proxy.",
              "- **Proxy configs.** nginx: `keepalive 1024` upstream pool, `proxy_http_version 1.1`, "
              "`keepalive_requests 1000000` both sides, access log off, in-memory response buffers; "
              "HAProxy: `option http-keep-alive`, `http-reuse always`, host routing by `map`; sluice: its "
              "defaults. Generated configs are listed at the end.", ""]
    lines += ["## Machine and versions", ""] + machine_lines(env.root) + [
        f"- 1-min load average at start {busy_start[0]:.2f} ({busy_start[1]} compiler processes running), "
        f"at the end {busy_end[0]:.2f} (the run's own last minute). Other processes used "
        f"{other:.1f} CPU-s during the run ({share:.1%} of one CPU): the machine's busy time "
        "(user, nice, system in /proc/stat) minus the CPU of the harness and everything it started; the report "
        f"flags the machine as busy from {OTHER_WORK_LIMIT:.0%}, or from a 1-min load of 0.5 at start.", ""]
    lines += ["## Exact commands", "", f"`{cmd}` ran these (each distinct command once; ports are picked free "
              "per run and shown as PORT, `$WORK` is the `/tmp/sluice-perf-*` work directory):", "", "```"]
    last = None
    for scenario, what, line in env.log.entries:
        if scenario != last:
            lines.append(f"# {scenario}")
            last = scenario
        lines.append(f"{line}")
    lines += ["```", ""]
    if env.configs:
        lines += ["## Generated configs", ""]
        for name, text in env.configs.items():
            if name:
                lines += [f"<details><summary>{name}</summary>", "", "```", text.rstrip(), "```", "", "</details>", ""]
    with open(a.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {a.out}", flush=True)


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(prog="perf/run", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s, no profile; not figures")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=6, help="seconds per measured run")
    ap.add_argument("--warmup", type=float, default=1, help="seconds of warm-up per target and scenario")
    ap.add_argument("--only", default="", help="comma-separated scenario keys: " + ",".join(s.key for s in SCENARIOS))
    ap.add_argument("--skip", default="", help="comma-separated scenario keys to leave out")
    ap.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    ap.add_argument("--no-build", action="store_true", help="use the binaries already built")
    ap.add_argument("--out", default=os.path.join(root, "perf", "RESULTS.md"))
    ap.add_argument("--keep-workdir", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2, 0.5
    if (os.cpu_count() or 1) < 2:
        sys.exit("needs 2 CPUs for the pinned layout")
    only = {k for k in args.only.split(",") if k}
    skip = {k for k in args.skip.split(",") if k}
    unknown = (only | skip) - {s.key for s in SCENARIOS}
    if unknown:
        sys.exit(f"unknown scenario(s): {sorted(unknown)}")

    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    busy_start = busy_state()
    log = CommandLog()
    raise_fd_limit()
    install_tools(args.no_install)
    bin_dir = build(root, log, args.no_build)
    # From here on the harness (and everything it starts without taskset) stays on CPU 0.
    os.sched_setaffinity(0, {0})
    workdir = tempfile.mkdtemp(prefix="sluice-perf-")
    log.workdir = workdir
    env = Env(args, bin_dir, workdir, log, root)
    env.plots = os.path.join(root, "perf", "plots")
    os.makedirs(env.plots, exist_ok=True)
    failures = []
    try:
        for sc in SCENARIOS:
            if (only and sc.key not in only) or sc.key in skip or (args.quick and not sc.in_quick and sc.key not in only):
                continue
            t = time.time()
            log.scenario = sc.key
            print(f"== {sc.key}", flush=True)
            try:
                env.data[sc.key] = sc.fn(env)
            except Exception as e:
                traceback.print_exc()
                failures.append(sc.key)
                env.data[sc.key] = {"title": f"{sc.key}: FAILED", "what": "", "kind": "failed", "results": {},
                                    "md": [f"The scenario failed: `{e}`"]}
            print(f"== {sc.key} done in {time.time() - t:.0f} s", flush=True)
    finally:
        if not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    write_report(env, started, time.time() - t0, busy_start, busy_state())
    if failures:
        sys.exit(f"failed scenarios: {', '.join(failures)}")
