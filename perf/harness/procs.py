"""Processes, ports, /proc accounting and tiny HTTP helpers (standard library only)."""

import http.client
import json
import os
import re
import shlex
import socket
import subprocess
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=60.0, proc=None, log=None):
    """Waits until 127.0.0.1:port accepts; fails early (with the tail of `log`) if `proc` exits."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            tail = ""
            if log:
                try:
                    tail = ": " + open(log).read()[-800:]
                except OSError:
                    pass
            raise RuntimeError(f"process exited with {proc.returncode} before port {port} opened{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open within {timeout}s")


def cpu_ticks(pids):
    """(user, sys) clock ticks of all threads of `pids`, from /proc/PID/stat."""
    user = system = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        # After "pid (comm)": fields[11] = utime, fields[12] = stime.
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def run_queue_wait_ns(pids):
    """Nanoseconds the threads of `pids` spent ready to run while their CPU ran something else
    (the second field of /proc/PID/task/TID/schedstat), summed. Threads that exited are not counted."""
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                continue
    return total


def tree_cpu_ticks(pid):
    """(user, sys) clock ticks of process `pid` and all its children, the ones that exited too.

    A child that has exited and been reaped moves its ticks into the parent's cutime/cstime
    (fields 13 and 14 of /proc/PID/stat), so the sum over the parent's own ticks, its reaped
    children's and its live children's counts every worker a reload started and retired. The
    difference of two calls is the whole proxy's CPU in between (nginx's master reaps its old
    workers; HAProxy's master-worker mode likewise).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0, 0
    user = int(fields[11]) + int(fields[13])
    system = int(fields[12]) + int(fields[14])
    u, s = cpu_ticks(child_pids(pid))
    return user + u, system + s


def rss_kib(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def tree_rss_kib(pid):
    """RSS of process `pid` and its live children (nginx's master and workers), in KiB."""
    return rss_kib([pid, *children_fast(pid)])


def peak_rss_kib(pid):
    """VmHWM (peak RSS) of `pid`, 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def child_pids(pid):
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def children_fast(pid):
    """Children of `pid`'s main thread from /proc (no subprocess, for sampling every 200 ms while
    the load runs on the same CPU); falls back to pgrep."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []
    except OSError:
        return child_pids(pid)


def http_get(port, path="/", host=None, timeout=5.0):
    """(status, body bytes) of one HTTP/1.1 GET on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host or f"127.0.0.1:{port}"})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def http_json(port, path):
    status, body = http_get(port, path)
    if status != 200:
        raise RuntimeError(f"GET {path} on :{port} answered {status}")
    return json.loads(body)


class CommandLog:
    """Every distinct command the harness ran, for the report, grouped by scenario.

    Ports and work-directory names are normalised (127.0.0.1:PORT, $WORK/nginx-N.conf) so that a
    command shape appears once however many rounds and targets used it.
    """

    def __init__(self):
        self.scenario = "setup"
        self.entries = []  # (scenario, what, line)
        self.workdir = None
        self._seen = set()

    def add(self, what, argv):
        line = " ".join(shlex.quote(str(a)) for a in argv)
        if self.workdir:
            line = line.replace(self.workdir, "$WORK")
        line = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line)
        line = re.sub(r"(\$WORK/\S*?)-\d+(?=\.conf|\.cfg|\.map|\s|$)", r"\1-N", line)
        line = re.sub(r"(-p) \d+", r"\1 PID", line)
        key = (self.scenario, what, line)
        if key not in self._seen:
            self._seen.add(key)
            self.entries.append(key)


def stop(proc, timeout=10):
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
