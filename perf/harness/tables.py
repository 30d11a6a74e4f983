"""Markdown tables for scenario results."""

from .core import med, spread, total, values


def fmt(v, nd=1):
    return "–" if v is None else f"{v:,.{nd}f}"


def with_spread(runs, key, nd=1):
    m = med(runs, key)
    if m is None:
        return "–"
    lo, hi = spread(runs, key)
    if len(values(runs, key)) < 2:
        return fmt(m, nd)
    return f"{fmt(m, nd)} ({fmt(lo, nd)}–{fmt(hi, nd)})"


def ratio(a, b, nd=2):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.{nd}f}×"


def peer(results, kind):
    """The runs of the first target of `kind` (nginx, haproxy, direct) in a result set."""
    for name, runs in results.items():
        if name.split()[0].lower() == kind:
            return runs
    return None


def errors(runs):
    failed = sum(1 for m in runs if "failed" in m)
    n = total(runs, "errors")
    return f"{n}" + (f" + {failed} failed run(s)" if failed else "")


def reuse(runs):
    conns, reqs = total(runs, "backend_conns"), total(runs, "backend_reqs")
    if not reqs:
        return None
    return 100.0 * (1 - conns / reqs)


def closed_table(results):
    """rps, CPU per request (user+sys), CPU %, RSS, reuse, errors, ratios to nginx and HAProxy."""
    nginx, haproxy = peer(results, "nginx"), peer(results, "haproxy")
    lines = ["| target | rps | CPU-µs/req | user / sys µs | proxy CPU % | RSS MiB | upstream reuse | errors "
             "| rps ÷ nginx | rps ÷ HAProxy | CPU ÷ nginx | CPU ÷ HAProxy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        is_proxy = med(runs, "cpu_us") is not None
        r = reuse(runs) if is_proxy else None
        row = [name, with_spread(runs, "rps", 0), with_spread(runs, "cpu_us", 2),
               f"{fmt(med(runs, 'user_us'), 2)} / {fmt(med(runs, 'sys_us'), 2)}" if is_proxy else "–",
               fmt(med(runs, "cpu_pct"), 0), fmt(med(runs, "rss_mib"), 1),
               "–" if r is None else f"{r:.2f}%", errors(runs)]
        for p in (nginx, haproxy):
            row.append(ratio(med(runs, "rps"), med(p, "rps")) if p else "–")
        for p in (nginx, haproxy):
            row.append(ratio(med(runs, "cpu_us"), med(p, "cpu_us")) if p and is_proxy else "–")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "rps and CPU-µs/req: median of the rounds (min–max). Ratios are of medians: for rps higher "
              "is better, for CPU lower is better. Upstream reuse = 1 − (backend connections accepted ÷ backend "
              "requests) over all rounds."]
    return lines


def open_table(results, rate):
    d = peer(results, "direct")
    lines = [f"Offered load: **{rate:,.0f} req/s** (open loop; latency from the intended send time).", "",
             "| target | achieved rps | p50 µs | p99 µs | p99.9 µs | max µs | added p50 | added p99 | added p99.9 "
             "| CPU-µs/req | waited for CPU ms/s | errors | queued | unsent | gen. lateness p99 µs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        row = [name, fmt(med(runs, "rps"), 0), with_spread(runs, "p50", 0), with_spread(runs, "p99", 0),
               with_spread(runs, "p999", 0), fmt(med(runs, "max"), 0)]
        for k in ("p50", "p99", "p999"):
            if d is None or name.split()[0] == "direct" or med(runs, k) is None or med(d, k) is None:
                row.append("–")
            else:
                row.append(f"{med(runs, k) - med(d, k):+,.0f}")
        counted = total(runs, "counted")
        queued = f"{100 * total(runs, 'queued') / counted:.2f}%" if counted else "–"
        row += [with_spread(runs, "cpu_us", 2), with_spread(runs, "cpu_wait_ms_per_s", 1), errors(runs), queued, fmt(total(runs, "unsent"), 0),
                fmt(med(runs, "lateness_p99"), 0)]
        lines.append("| " + " | ".join(row) + " |")
    late = [name for name, runs in results.items() if (med(runs, "lateness_p99") or 0) > 200]
    behind = [name for name, runs in results.items()
              if total(runs, "unsent") > 0.005 * max(1, total(runs, "counted"))]
    if late:
        lines += ["", f"**⚠ Generator late for {'; '.join(f'`{n}`' for n in late)}:** with a connection free, it still "
                  "sent requests over 200 µs after their intended time (p99), so CPU 0 was busy with other work; "
                  "these latencies are not trustworthy."]
    if behind:
        lines += ["", f"**⚠ Rate not sustained by {'; '.join(f'`{n}`' for n in behind)}:** over 0.5% of the requests were "
                  "still unsent when the run ended (every connection busy)."]
    lines += ["", "Percentiles: median of the rounds (min–max). *added* = target − direct (medians). *unsent*: "
              "requests whose intended time passed before the run ended without being sent (the target fell "
              "behind). *queued*: requests that found all 32 connections busy and started over 100 µs late (the target's "
              "backpressure; that wait is part of their latency). *gen. lateness*: how late the generator sent requests "
              "while a connection was free (its own precision). *waited for CPU*: per second of the run, how long the "
              "proxy's threads were ready to run while its CPU ran something else (`/proc/PID/task/*/schedstat`): "
              "kernel threads such as `kdamond` or `ksoftirqd`, other processes, the proxy's own other threads. A "
              "wait of a few ms stalls every connection at once, so it sets the tail for every proxy alike; a vCPU "
              "the hypervisor takes away does not show here."]
    return lines
