"""Load generators: wrk (closed loop), h2load (h2c), sluice-testkit-load (open loop, gRPC).

Each returns a dict with at least: requests (completed, for CPU accounting), rps, errors; latency
figures in µs when the tool gives them. All run pinned to CPU 0 and bounded by a subprocess
timeout on top of their own duration.
"""

import json
import os
import re
import subprocess

from .targets import BENCH_HOST, CLIENT_CPU

UNITS_US = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def _run(env, what, argv, timeout):
    env.log.add(what, argv)
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{what} failed ({r.returncode}): {r.stderr.strip()[-500:] or r.stdout[-500:]}")
    return r.stdout


def parse_wrk(out):
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    res = {"requests": reqs, "counted": reqs, "rps": rps, "errors": 0}
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if m:
            res[f"p{pct}"] = float(m.group(1)) * UNITS_US[m.group(2)]
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if m:
        res["errors"] += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] += sum(int(x) for x in m.groups())
    return res


def wrk(env, target, duration, connections, host=None, path="/"):
    secs = max(1, round(duration))  # wrk takes whole seconds
    argv = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{connections}", f"-d{secs}s", "--latency",
            "-H", f"Host: {host or target.host}", f"http://127.0.0.1:{target.port}{path}"]
    return parse_wrk(_run(env, "wrk", argv, secs + 30))


def parse_h2load(out):
    m = re.search(r"finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out)
    if not m:
        raise RuntimeError(f"unexpected h2load output: {out[-500:]}")
    rps = float(m.group(3))
    m2 = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                   r"(\d+) errored, (\d+) timeout", out)
    done, ok, failed, errored, timeout = (int(m2.group(i)) for i in (3, 4, 5, 6, 7))
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    bad = int(codes.group(3)) + int(codes.group(4)) if codes else 0
    res = {"requests": done, "counted": ok, "rps": rps, "errors": failed + errored + timeout + bad}
    m3 = re.search(r"time for request:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)", out)
    if m3:
        res["min"] = float(m3.group(1)) * UNITS_US[m3.group(2)]
        res["max"] = float(m3.group(3)) * UNITS_US[m3.group(4)]
        res["mean"] = float(m3.group(5)) * UNITS_US[m3.group(6)]
    res["elapsed_s"] = float(m.group(1)) * UNITS_US[m.group(2)] / 1e6
    return res


def h2load_burst(env, port, host, requests, clients, streams, timeout=120):
    """h2load -n: `requests` sent at once over h2c (`clients` × `streams` in flight)."""
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-n{requests}",
            "-H", f":authority: {host}", f"http://127.0.0.1:{port}/"]
    return parse_h2load(_run(env, "h2load", argv, timeout))


def h2load(env, target, duration, clients, streams, host=None):
    authority = host or target.host
    secs = max(1, round(duration))
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}", f"-D{secs}",
            "-H", f":authority: {authority}", f"http://127.0.0.1:{target.h2c_port}/"]
    return parse_h2load(_run(env, "h2load", argv, secs + 30))


def h2load_tls(env, target, duration, clients, streams, h1=False, close=False, requests=None):
    """h2load over TLS to the target's HTTPS listener: SNI and :authority are BENCH_HOST
    (`--connect-to` dials 127.0.0.1). `h1` forces HTTP/1.1 (ALPN http/1.1); `close` sends
    `Connection: close`, so every request is a new connection and a full handshake. h2load only
    reconnects in count mode, so `requests` (-n) replaces the duration there; the caller sizes it."""
    secs = max(1, round(duration))
    amount = f"-n{requests}" if requests else f"-D{secs}"
    argv = ["taskset", "-c", CLIENT_CPU, "h2load", "-t1", f"-c{clients}", f"-m{streams}", amount,
            f"--connect-to=127.0.0.1:{target.tls_port}"]
    if h1:
        argv.append("--h1")
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"https://{BENCH_HOST}:{target.tls_port}/")
    return parse_h2load(_run(env, "h2load", argv, 4 * secs + 60))


def loadgen(env, target, duration, connections, rate=None, proto="h1", streams=1, warmup=0.5,
            host=None, payload=16, port=None):
    """sluice-testkit-load; open loop when `rate` is set. `duration` excludes the warm-up."""
    argv = ["taskset", "-c", CLIENT_CPU, os.path.join(env.bin_dir, "sluice-testkit-load"),
            "--connect", f"127.0.0.1:{port or (target.h2c_port if proto == 'grpc' else target.port)}",
            "--host", host or target.host, "--proto", proto, "--connections", str(connections),
            "--streams", str(streams), "--duration", f"{duration + warmup:g}", "--warmup", f"{warmup:g}",
            "--payload", str(payload), "--timeout", "5"]
    if rate:
        argv += ["--rate", f"{rate:.0f}"]
    r = json.loads(_run(env, "sluice-testkit-load", argv, duration + warmup + 40))
    lat = r["latency_us"]
    return {"requests": r["completed_all"], "counted": r["requests"], "rps": r["rps"], "errors": r["errors"],
            "unsent": r["unsent"], "first_error": r["first_error"], "target_rate": r["target_rate"],
            "bad_status": r.get("bad_status", 0), "timeouts": r.get("timeouts", 0),
            "p50": lat["p50"], "p90": lat["p90"], "p99": lat["p99"], "p999": lat["p999"], "max": lat["max"],
            "mean": lat["mean"], "lateness_p99": r["lateness_us"]["p99"], "queued": r.get("queued", 0),
            "cdf": r["cdf"]}
