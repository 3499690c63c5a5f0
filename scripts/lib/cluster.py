"""What the scripts share: building the agent, starting `beethoven agent`
processes and reading their JSON event lines, waiting, reading /proc, and
refusing a broken run.

Imported by `scripts/*.py` (`sys.path` gets `scripts/lib`) and by
`tests/chaos/netns_chaos.py` (by path). Standard library only.
"""

import datetime as dt
import glob
import json
import os
import queue
import subprocess
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AGENT = os.path.join(ROOT, "target", "release", "beethoven")
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BrokenRun(Exception):
    """The run cannot be trusted (a process died, a cluster did not form, an exit
    status was wrong): the script reports no figure from it."""


def require(condition, what):
    """Raises `BrokenRun(what)` unless `condition` holds."""
    if not condition:
        raise BrokenRun(what)


def build(binary=None, package="beethoven-agent", program="beethoven"):
    """The binary to run. Given one (`--binary`), that one, as it is: the caller
    asked for it. Otherwise `cargo build --release` of `program` first, so a stale
    binary is never measured (a no-op when nothing changed)."""
    if binary is not None:
        require(os.path.exists(binary), f"{binary} does not exist")
        return os.path.abspath(binary)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", package, "--bin", program], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", program)


def parse_ts(value):
    """Seconds since the epoch of an RFC 3339 timestamp (`...Z`)."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def agent_command(binary, name, bind, cluster, seed=None, events=True, http=None, extra=()):
    """`beethoven agent` with its events as JSON lines on stdout (logs on stderr)."""
    args = [binary, "agent", "--name", name, "--bind", bind, "--cluster", cluster]
    if events:
        args += ["--events", "json"]
    if http is not None:
        args += ["--http", http]
    if seed is not None:
        args += ["--seed", seed]
    return args + list(extra)


class Process:
    """A child process whose stdout is JSON lines, read on a thread of its own.

    Every decoded line gets `_read` (when this script read it) and `_t` (its
    `ts`, or `_read`); it goes to `on_event` (under `lock`) and into `events`.
    `log`, if given, receives every raw line prefixed with the time read."""

    def __init__(self, args, stderr=subprocess.DEVNULL, log=None, **popen):
        self.lock = threading.Lock()
        self.events = []
        self.rows = {}
        self.log = log
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, **popen)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            now = time.time()
            if self.log is not None:
                self.log.write(f"{now:.6f} {line}")
                self.log.flush()
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if not isinstance(event, dict):
                continue
            event["_read"] = now
            event["_t"] = parse_ts(event["ts"]) if "ts" in event else now
            with self.lock:
                self.events.append(event)
                self.on_event(event)
        if self.log is not None:
            self.log.close()

    def on_event(self, event):
        """Keeps the latest tracker row of every node (deleted rows go)."""
        if event.get("event") == "tracker":
            row = event["new_row"]
            if event.get("op") == "delete":
                self.rows.pop(row["node"], None)
            else:
                self.rows[row["node"]] = row

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def row(self, node):
        with self.lock:
            return self.rows.get(node)

    def online_rows(self):
        with self.lock:
            return sum(1 for row in self.rows.values() if row["status"] == "online")

    def events_since(self, t0, kind=None):
        with self.lock:
            return [e for e in self.events if e["_t"] >= t0 and (kind is None or e.get("event") == kind)]

    def stop(self):
        """SIGKILL (if still running) and reap."""
        if self.alive():
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
        self.proc.wait()


def wait_until(predicate, timeout, step=0.02):
    """Seconds until `predicate()` held, or None after `timeout` seconds."""
    start = time.time()
    while True:
        if predicate():
            return time.time() - start
        if time.time() - start > timeout:
            return None
        time.sleep(step)


def wait_formed(procs, count, timeout):
    """Waits until every process holds `count` online rows; `BrokenRun` if one
    dies or the cluster is not formed within `timeout` seconds."""
    def formed():
        dead = [p for p in procs if not p.alive()]
        require(not dead, f"{len(dead)} process(es) exited before the cluster formed "
                          f"(status {[p.proc.returncode for p in dead]})")
        return all(p.online_rows() == count for p in procs)

    took = wait_until(formed, timeout, step=0.05)
    require(took is not None, f"not formed within {timeout:.0f} s (online rows seen: "
                              f"{sorted(p.online_rows() for p in procs)}, wanted {count} on each)")
    return took


def read_proc(pid):
    """CPU ticks (utime+stime), CPU ns (threads' schedstat), RSS kB, voluntary and
    involuntary switches (all threads), thread count, PSS kB and private kB (the
    pages no other process shares: what one more process costs)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    rss_kb = pss_kb = private_kb = 0
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key == "Rss":
                rss_kb = int(value.split()[0])
            elif key == "Pss":
                pss_kb = int(value.split()[0])
            elif key in ("Private_Clean", "Private_Dirty"):
                private_kb += int(value.split()[0])
    ns = voluntary = involuntary = threads = 0
    for task in glob.glob(f"/proc/{pid}/task/*"):
        try:
            with open(f"{task}/schedstat") as f:
                ns += int(f.read().split()[0])
            with open(f"{task}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        voluntary += int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        involuntary += int(line.split()[1])
            threads += 1
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return ticks, ns, rss_kb, voluntary, involuntary, threads, pss_kb, private_kb


def metric(http, names):
    """The sum of the Prometheus counters `names` of the agent serving `http`
    (`GET /metrics`)."""
    import urllib.request

    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.split("{")[0] in names:
            total += float(value)
    return total


def scrape(http):
    """Every sample of the agent serving `http` (`GET /metrics`), as
    (name, {label: value}, value) triples."""
    import urllib.request

    with urllib.request.urlopen(f"http://{http}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    samples = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        series, _, value = line.rpartition(" ")
        name, _, labels = series.partition("{")
        pairs = {}
        for pair in labels.rstrip("}").split(","):
            if "=" in pair:
                key, _, text_value = pair.partition("=")
                pairs[key] = text_value.strip('"')
        samples.append((name, pairs, float(value)))
    return samples


def post_json(http, path, body, token):
    """`POST path` with a JSON `body` and the HTTP `token` to the agent serving
    `http`: (status, decoded answer)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"http://{http}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read().decode() or "null")
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read().decode() or "null")


def user_events(proc, since=0.0):
    """How many times `proc`'s event stream delivered each user event since
    `since`: {(origin, name): count}. A script gives every event its own name."""
    counts = {}
    for event in proc.events_since(since, "user_event"):
        key = (event["origin"], event["name"])
        counts[key] = counts.get(key, 0) + 1
    return counts


def delivery_faults(receivers, sent):
    """What went wrong with the user events `sent` ({(origin, name)}) at each of
    `receivers` (a process does not deliver its own): a list of
    "receiver: event missing|delivered N times|never sent" texts, empty when
    every receiver delivered every other origin's event exactly once."""
    faults = []
    for proc in receivers:
        counts = user_events(proc)
        for key in sorted(sent):
            if key[0] == proc.name:
                continue
            got = counts.get(key, 0)
            if got != 1:
                faults.append(f"{proc.name}: {key[1]} from {key[0]} " + ("missing" if got == 0 else f"delivered {got} times"))
        faults += [f"{proc.name}: {key[1]} from {key[0]} never sent" for key in counts if key not in sent]
    return faults
