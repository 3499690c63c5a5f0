#!/usr/bin/env python3
"""Idle cost of real processes: N `beethoven agent` processes on loopback, formed
and quiet, measured over a window from /proc.

    python3 scripts/idle_cost.py --nodes 30                  # one 60 s window
    python3 scripts/idle_cost.py --nodes 10 --repeat 2
    python3 scripts/idle_cost.py --binary target/baseline/beethoven --nodes 30
    python3 scripts/idle_cost.py --bare --nodes 30   # the floor: examples' custom_loop
    python3 scripts/idle_cost.py --nodes 30 --probe-interval-ms 300   # slower probing
    python3 scripts/idle_cost.py --binary new/beethoven --against old/beethoven  # A/B, one cluster

For each node, over the window (after every node holds N online rows, plus a
settling pause):
  - CPU ms per second: utime+stime of the whole process (/proc/PID/stat, all its
    threads, clock ticks), and the same from the threads' schedstat in ns as a
    cross-check (threads that exit during the window are missed there);
  - RSS at the end of the window, with PSS and the private part (RSS counts
    the binary's and libc's pages shared with the other processes in full);
  - voluntary and involuntary context switches per second, summed over the
    process's threads (/proc/PID/task/*/status);
  - datagrams per second, sent + received, from the agent's own counters
    (`GET /metrics`, read just before and just after the window), and CPU per
    datagram.
`--against` runs every other node from a second binary, in the same cluster and
window, and reports each half: the machine's drift over minutes (10% here) then
tilts neither side. `--bare` runs the `custom_loop` example instead: the core
alone on a blocking std socket (no driver, no runtime, one thread), the floor of
what the protocol's own wakeups cost on this machine; it reports no datagram counts.
CPU time counts only the processes' own work, so other jobs on the machine
disturb it little (cache and frequency effects remain): repeat and compare.

A broken run reports nothing and exits non-zero: a node that exits, a cluster
not fully formed before or after the window (every node must hold N online
rows). Without `--binary` the agent (or `custom_loop`) is rebuilt first.
"""

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import (CLK_TCK, BrokenRun, Process, agent_command, build, metric, read_proc,  # noqa: E402
                     require, wait_formed)

DATAGRAMS = ("beethoven_datagrams_sent_total", "beethoven_datagrams_received_total")


class BareNode(Process):
    """The `custom_loop` example: `NAME BIND [SEED]`, text lines `... NAME is Online`,
    no datagram counts. Its own row counts as online from the start."""

    def __init__(self, binary, name, bind, seed):
        self.name = name
        self.http = None
        super().__init__([binary, f"{name}@127.0.0.1", bind] + ([] if seed is None else [seed]))
        with self.lock:
            self.rows[name] = {"node": name, "status": "online"}

    def _read(self):
        for line in self.proc.stdout:
            words = line.split()
            if len(words) >= 4 and words[-2] == "is":
                with self.lock:
                    self.rows[words[-3]] = {"node": words[-3], "status": words[-1].lower()}


def group_of(args, i):
    """With `--against`, every other node runs the other binary, in the same cluster
    at the same time: what the machine does to one it does to both."""
    return "against" if args.against and i % 2 == 1 else "binary"


def start_node(args, i, cluster, seed):
    binary = args.against if group_of(args, i) == "against" else args.binary
    name = f"n{i}"
    bind = seed if i == 0 else "127.0.0.1:0"
    if args.bare:
        node = BareNode(binary, name, bind, None if i == 0 else seed)
    else:
        extra = []
        if args.probe_interval_ms is not None:
            # As the LAN defaults: the probe timeout is half the interval.
            extra = ["--probe-interval", f"{args.probe_interval_ms}ms",
                     "--probe-timeout", f"{args.probe_interval_ms // 2}ms"]
        http = f"127.0.0.1:{args.base_port + 1000 + i}"
        node = Process(agent_command(binary, name, bind, cluster, seed=None if i == 0 else seed, http=http,
                                     extra=extra))
        node.name, node.http = name, http
    node.group = group_of(args, i)
    return node


def datagrams(node):
    """(time read, datagrams sent + received) of an agent, None for `--bare`."""
    return None if node.http is None else (time.monotonic(), metric(node.http, DATAGRAMS))


def one_run(args, run):
    cluster = f"idle-{os.getpid()}-{run}"
    seed = f"127.0.0.1:{args.base_port}"
    nodes = []
    started = time.monotonic()
    try:
        for i in range(args.nodes):
            nodes.append(start_node(args, i, cluster, seed))
            time.sleep(0.02)
        wait_formed(nodes, args.nodes, 60)
        formed = time.monotonic()
        time.sleep(args.settle)
        counted_before = {node.name: datagrams(node) for node in nodes}
        before = {node.name: read_proc(node.pid) for node in nodes}
        t0 = time.monotonic()
        time.sleep(args.window)
        after = {node.name: read_proc(node.pid) for node in nodes}
        t1 = time.monotonic()
        counted_after = {node.name: datagrams(node) for node in nodes}
        exited = [node.name for node in nodes if not node.alive()]
        require(not exited, f"{exited} exited during the window")
        still = [node.online_rows() for node in nodes]
        require(min(still) == args.nodes,
                f"the cluster came apart during the window (online rows after it: {sorted(still)}, wanted "
                f"{args.nodes} on each)")
        span = t1 - t0
        per_node = []
        for node in nodes:
            b, a = before[node.name], after[node.name]
            rate = None
            if counted_before[node.name] is not None:
                (s0, c0), (s1, c1) = counted_before[node.name], counted_after[node.name]
                rate = (c1 - c0) / (s1 - s0)
            per_node.append({
                "cpu_ms_per_s": (a[0] - b[0]) * 1000 / CLK_TCK / span,
                "cpu_ns_ms_per_s": (a[1] - b[1]) / 1e6 / span,
                "rss_mb": a[2] / 1024,
                "pss_mb": a[6] / 1024,
                "private_mb": a[7] / 1024,
                "voluntary_per_s": (a[3] - b[3]) / span,
                "involuntary_per_s": (a[4] - b[4]) / span,
                "threads": a[5],
                "datagrams_per_s": rate,
                "group": node.group,
            })
        return {"formed_after_s": formed - started, "window_s": span, "online_rows_after": min(still),
                "nodes": per_node}
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
    datagrams_per_s = mean("datagrams_per_s")
    return {
        "runtime": "bare" if args.bare else "agent",
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
        "datagrams_per_node_s": round(datagrams_per_s, 1),
        "cpu_us_per_datagram": round(cpu * 1000 / datagrams_per_s, 1) if datagrams_per_s == datagrams_per_s
        else None,
        "online_rows_after": result["online_rows_after"],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=30)
    parser.add_argument("--bare", action="store_true",
                        help="run the custom_loop example (the core alone), the floor")
    parser.add_argument("--window", type=float, default=60.0, help="seconds measured")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds waited after formation")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--base-port", type=int, default=18100,
                        help="the first node's UDP port; the agents' HTTP ports start 1000 above")
    parser.add_argument("--binary", help="run this binary as it is (default: build and run "
                                         "target/release/beethoven, or custom_loop with --bare)")
    parser.add_argument("--json", action="store_true", help="one JSON object per run")
    parser.add_argument("--against", metavar="BINARY",
                        help="run every other node from this agent binary, in the same cluster and window, and "
                             "report both halves (an A/B that the machine's drift cannot tilt)")
    parser.add_argument("--probe-interval-ms", type=int,
                        help="the agent's --probe-interval, with --probe-timeout half of it "
                             "(default: the LAN defaults, 150 ms)")
    args = parser.parse_args()
    if args.bare and args.probe_interval_ms is not None:
        parser.error("--probe-interval-ms needs the agent (not --bare)")
    if args.against and args.bare:
        parser.error("--against needs the agent (not --bare)")
    if args.bare:
        args.binary = build(args.binary, package="beethoven-examples", program="custom_loop")
    else:
        args.binary = build(args.binary)
    if args.against:
        args.against = build(args.against)
    try:
        for run in range(args.repeat):
            result = one_run(args, run)
            for group in ["binary"] + (["against"] if args.against else []):
                half = [node for node in result["nodes"] if node["group"] == group]
                line = summary({**result, "nodes": half}, args)
                line["binary"] = getattr(args, group)
                line["nodes"] = len(half)
                print_line(line, args)
    except BrokenRun as broken:
        print(f"idle_cost.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
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
