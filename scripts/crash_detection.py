#!/usr/bin/env python3
"""Real-process crash detection: 5 `beethoven agent` processes on loopback, SIGKILL
one, and measure how long until every survivor reports it offline.

    python3 scripts/crash_detection.py            # 10 runs, release build
    python3 scripts/crash_detection.py --runs 3 --nodes 5

The kill time and the survivors' event timestamps come from the same wall clock
(one host), so latency = the `ts` of a survivor's `node_update` (status offline)
event - kill time. The events are the agent's event stream (`--events json`: one
JSON object per line on stdout, the lines of `GET /v1/events`).
Prints one line per run and the p50/max over runs.
"""

import argparse
import datetime as dt
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_ts(value):
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Node:
    def __init__(self, binary, name, port, seed_port, cluster):
        args = [binary, "agent", "--name", name, "--bind", f"127.0.0.1:{port}", "--events", "json",
                "--cluster", cluster]
        if seed_port is not None:
            args += ["--seed", f"127.0.0.1:{seed_port}"]
        self.name = name
        # Events on stdout; the logs (stderr) are not needed.
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.online = set()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "node_update":
                self.events.put(event)

    def drain(self, timeout=0.0):
        """Yields events until none arrives within `timeout`."""
        while True:
            try:
                yield self.events.get(timeout=timeout)
            except queue.Empty:
                return

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def wait_for(predicate, limit, what):
    deadline = time.time() + limit
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise TimeoutError(what)


def one_run(binary, nodes, base_port, run):
    cluster = f"crash-{os.getpid()}-{run}"
    procs = []
    try:
        for i in range(nodes):
            seed = base_port if i > 0 else None
            procs.append(Node(binary, f"n{i}", base_port + i, seed, cluster))
            time.sleep(0.05)

        def all_joined():
            for node in procs:
                for event in node.drain():
                    if event.get("event") == "node_update" and event["status"] == "online":
                        node.online.add(event["node"])
                    elif event.get("event") == "node_update":
                        node.online.discard(event["node"])
            return all(len(node.online) == nodes - 1 for node in procs)

        wait_for(all_joined, 20, "cluster formed")
        time.sleep(1.0)  # steady state
        for node in procs:
            list(node.drain())
        victim = procs[run % (nodes - 1) + 1]
        kill_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        seen = {}
        survivors = [n for n in procs if n is not victim]

        def all_saw():
            for node in survivors:
                for event in node.drain():
                    if (event.get("event") == "node_update" and event["node"] == victim.name
                            and event["status"] == "offline" and node.name not in seen):
                        seen[node.name] = parse_ts(event["ts"]) - kill_at
            return len(seen) == len(survivors)

        wait_for(all_saw, 30, "crash seen by all survivors")
        return max(seen.values()), min(seen.values())
    finally:
        for node in procs:
            node.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--base-port", type=int, default=17900)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "beethoven"))
    args = parser.parse_args()
    if not os.path.exists(args.binary) or os.environ.get("REBUILD"):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "beethoven-agent"], cwd=ROOT, check=True)
    lasts = []
    for run in range(args.runs):
        last, first = one_run(args.binary, args.nodes, args.base_port + 10 * run, run)
        lasts.append(last)
        print(f"run {run + 1:>2}: offline on every survivor after {last * 1000:6.0f} ms (first after {first * 1000:.0f} ms)")
    print(f"p50 {statistics.median(lasts) * 1000:.0f} ms, max {max(lasts) * 1000:.0f} ms over {len(lasts)} runs "
          f"of {args.nodes} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
