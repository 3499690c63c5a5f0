#!/usr/bin/env python3
"""Idle cost of real processes: N `beethoven-node` processes on loopback, formed and
quiet, measured over a window from /proc.

    python3 scripts/idle_cost.py --nodes 30 --runtime tokio     # one 60 s window
    python3 scripts/idle_cost.py --nodes 10 --runtime smol --repeat 2
    python3 scripts/idle_cost.py --binary target/baseline/beethoven-node --nodes 30
    python3 scripts/idle_cost.py --runtime bare --nodes 30   # the floor: examples' custom_loop
    python3 scripts/idle_cost.py --nodes 30 --probe-interval-ms 300   # slower probing
    python3 scripts/idle_cost.py --binary new/beethoven-node --against old/beethoven-node  # A/B, one cluster

For each node, over the window (after every node holds N online rows, plus a
settling pause):
  - CPU ms per second: utime+stime of the whole process (/proc/PID/stat, all its
    threads, clock ticks), and the same from the threads' schedstat in ns as a
    cross-check (threads that exit during the window are missed there);
  - RSS at the end of the window, with PSS and the private part (RSS counts
    the binary's and libc's pages shared with the other processes in full);
  - voluntary and involuntary context switches per second, summed over the
    process's threads (/proc/PID/task/*/status);
  - datagrams per second, sent + received, from the node's own counters (the
    CLI's `stats` lines, `--stats-every`), and CPU per datagram.
`--against` runs every other node from a second binary, in the same cluster and
window, and reports each half: the machine's drift over minutes (10% here) then
tilts neither side. `--runtime bare` runs the `custom_loop` example instead: the core alone on a
blocking std socket (no driver, no runtime, one thread), the floor of what the
protocol's own wakeups cost on this machine; it reports no datagram counts.
CPU time counts only the processes' own work, so other jobs on the machine
disturb it little (cache and frequency effects remain): repeat and compare.
"""

import argparse
import glob
import json
import os
import queue
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
STATS_EVERY = 5.0


class Node:
    """A `beethoven-node` process: JSON lines, with `stats` lines for the datagram counts."""

    def __init__(self, binary, name, bind, seed, cluster, runtime, extra=()):
        self.name = name
        self.proc = subprocess.Popen(self.command(binary, name, bind, seed, cluster, runtime) + list(extra),
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = queue.Queue()
        self.rows = {}
        self.stats = []  # (monotonic time read, packets sent + received)
        threading.Thread(target=self._read, daemon=True).start()

    @staticmethod
    def command(binary, name, bind, seed, cluster, runtime):
        args = [binary, "--name", name, "--bind", bind, "--json", "--cluster", cluster,
                "--runtime", runtime, "--stats-every", str(STATS_EVERY)]
        return args + ([] if seed is None else ["--seed", seed])

    def _read(self):
        for line in self.proc.stdout:
            self.take(line)

    def take(self, line):
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            return
        if event.get("event") == "stats":
            self.stats.append((time.monotonic(), event["packets_sent"] + event["packets_received"]))
        else:
            self.events.put(event)

    def online_rows(self):
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            if event.get("event") == "tracker":
                row = event["new_row"]
                self.rows[row["node"]] = row["status"]
        return sum(1 for status in self.rows.values() if status == "online")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class BareNode(Node):
    """The `custom_loop` example: `NAME BIND [SEED]`, text lines `... NAME is Online`,
    no datagram counts. Its own row counts as online from the start."""

    def __init__(self, *args):
        super().__init__(*args)
        self.events.put({"event": "tracker", "new_row": {"node": self.name, "status": "online"}})

    @staticmethod
    def command(binary, name, bind, seed, cluster, runtime):
        return [binary, f"{name}@127.0.0.1", bind] + ([] if seed is None else [seed])

    def take(self, line):
        words = line.split()
        if len(words) >= 4 and words[-2] == "is":
            self.events.put({"event": "tracker", "new_row": {"node": words[-3], "status": words[-1].lower()}})


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


def rate(samples, start, end):
    """Counter increase per second between the first and last sample in [start, end]."""
    inside = [(t, v) for t, v in samples if start <= t <= end]
    if len(inside) < 2 or inside[-1][0] == inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


def group_of(args, i):
    """With `--against`, every other node runs the other binary, in the same cluster
    at the same time: what the machine does to one it does to both."""
    return "against" if args.against and i % 2 == 1 else "binary"


def binary_of(args, i):
    return args.against if group_of(args, i) == "against" else args.binary


def one_run(args, run):
    cluster = f"idle-{os.getpid()}-{run}"
    node_args = [] if args.probe_interval_ms is None else ["--probe-interval-ms", str(args.probe_interval_ms)]
    seed = f"127.0.0.1:{args.base_port}"
    nodes = []
    started = time.monotonic()
    try:
        for i in range(args.nodes):
            bind = seed if i == 0 else "127.0.0.1:0"
            kind = BareNode if args.runtime == "bare" else Node
            node = kind(binary_of(args, i), f"n{i}", bind, None if i == 0 else seed, cluster, args.runtime,
                        node_args)
            node.group = group_of(args, i)
            nodes.append(node)
            time.sleep(0.02)
        deadline = time.monotonic() + 60
        while not all(node.online_rows() == args.nodes for node in nodes):
            if time.monotonic() > deadline:
                seen = sorted(node.online_rows() for node in nodes)
                raise TimeoutError(f"not formed within 60 s (online rows seen: {seen})")
            time.sleep(0.05)
        formed = time.monotonic()
        time.sleep(args.settle)
        before = {node.name: read_proc(node.proc.pid) for node in nodes}
        t0 = time.monotonic()
        time.sleep(args.window)
        after = {node.name: read_proc(node.proc.pid) for node in nodes}
        t1 = time.monotonic()
        # One more stats line after the window, so the window is covered.
        if args.runtime != "bare":
            time.sleep(STATS_EVERY + 0.5)
        if any(node.proc.poll() is not None for node in nodes):
            raise RuntimeError("a node exited during the window")
        still = [node.online_rows() for node in nodes]
        span = t1 - t0
        per_node = []
        for node in nodes:
            b, a = before[node.name], after[node.name]
            datagrams = rate(node.stats, t0 - STATS_EVERY, t1 + STATS_EVERY)
            per_node.append({
                "cpu_ms_per_s": (a[0] - b[0]) * 1000 / CLK_TCK / span,
                "cpu_ns_ms_per_s": (a[1] - b[1]) / 1e6 / span,
                "rss_mb": a[2] / 1024,
                "pss_mb": a[6] / 1024,
                "private_mb": a[7] / 1024,
                "voluntary_per_s": (a[3] - b[3]) / span,
                "involuntary_per_s": (a[4] - b[4]) / span,
                "threads": a[5],
                "datagrams_per_s": datagrams,
                "group": node.group,
            })
        return {"formed_after_s": formed - started, "window_s": span, "online_rows_after": min(still), "nodes": per_node}
    finally:
        for node in nodes:
            node.stop()


def summary(result, args):
    nodes = result["nodes"]

    def mean(key):
        values = [n[key] for n in nodes if n[key] is not None]
        return statistics.mean(values) if values else float("nan")

    def top(key):
        return max(n[key] for n in nodes)

    cpu = mean("cpu_ms_per_s")
    datagrams = mean("datagrams_per_s")
    return {
        "runtime": args.runtime,
        "nodes": args.nodes,
        "probe_interval_ms": args.probe_interval_ms or 150,
        "window_s": round(result["window_s"], 1),
        "cpu_ms_per_node_s": round(cpu, 3),
        "cpu_ms_max": round(top("cpu_ms_per_s"), 3),
        "cpu_schedstat_ms_per_node_s": round(mean("cpu_ns_ms_per_s"), 3),
        "rss_mb": round(mean("rss_mb"), 2),
        "rss_mb_max": round(top("rss_mb"), 2),
        "pss_mb": round(mean("pss_mb"), 2),
        "private_mb": round(mean("private_mb"), 2),
        "threads": top("threads"),
        "voluntary_cs_per_node_s": round(mean("voluntary_per_s"), 1),
        "involuntary_cs_per_node_s": round(mean("involuntary_per_s"), 1),
        "datagrams_per_node_s": round(datagrams, 1),
        "cpu_us_per_datagram": round(cpu * 1000 / datagrams, 1) if datagrams else None,
        "online_rows_after": result["online_rows_after"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--runtime", choices=["tokio", "smol", "bare"], default="tokio",
                        help="bare: the custom_loop example (the core alone), the floor")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds waited after formation")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=18100)
    parser.add_argument("--binary", help="default: target/release/beethoven-node (custom_loop for bare)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--against", metavar="BINARY",
                        help="run every other node from this binary, in the same cluster and window, and "
                             "report both halves (an A/B that the machine's drift cannot tilt)")
    parser.add_argument("--probe-interval-ms", type=int,
                        help="beethoven-node's --probe-interval-ms (default: the LAN defaults, 150 ms)")
    args = parser.parse_args()
    if args.runtime == "bare" and args.probe_interval_ms is not None:
        parser.error("--probe-interval-ms needs beethoven-node (not --runtime bare)")
    if args.against and args.runtime == "bare":
        parser.error("--against needs beethoven-node (not --runtime bare)")
    program = "custom_loop" if args.runtime == "bare" else "beethoven-node"
    if args.binary is None:
        args.binary = os.path.join(ROOT, "target", "release", program)
    if not os.path.exists(args.binary) or os.environ.get("REBUILD"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "beethoven-examples", "--bin", program],
                       cwd=ROOT, check=True)
    for run in range(args.repeat):
        result = one_run(args, run)
        for group in ["binary"] + (["against"] if args.against else []):
            half = [node for node in result["nodes"] if node["group"] == group]
            line = summary({**result, "nodes": half}, args)
            line["binary"] = getattr(args, group)
            line["nodes"] = len(half)
            print_line(line, args)
    return 0


def print_line(line, args):
    if args.json:
        print(json.dumps(line), flush=True)
    else:
        label = f" {line['binary']}:" if args.against else ""
        print(f"{line['runtime']:>5}{label} N={line['nodes']:<3} probe {line['probe_interval_ms']} ms, window {line['window_s']:.0f} s: "
              f"CPU {line['cpu_ms_per_node_s']:.3f} ms/node/s (max {line['cpu_ms_max']:.3f}; "
              f"schedstat {line['cpu_schedstat_ms_per_node_s']:.3f}), "
              f"RSS {line['rss_mb']:.2f} MB (max {line['rss_mb_max']:.2f}; PSS {line['pss_mb']:.2f}, "
              f"private {line['private_mb']:.2f}), {line['threads']} threads, "
              f"switches {line['voluntary_cs_per_node_s']:.1f} vol + {line['involuntary_cs_per_node_s']:.1f} "
              f"invol /node/s, {line['datagrams_per_node_s']:.1f} datagrams/node/s, "
              f"{line['cpu_us_per_datagram']} us CPU/datagram", flush=True)


if __name__ == "__main__":
    sys.exit(main())
