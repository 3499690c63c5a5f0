#!/usr/bin/env python3
"""Real-process crash detection: 5 `beethoven agent` processes on loopback, SIGKILL
one, and measure how long until every survivor reports it offline.

    python3 scripts/crash_detection.py            # 10 runs, release build (rebuilt first)
    python3 scripts/crash_detection.py --runs 3 --nodes 5

The kill time and the survivors' event timestamps come from the same wall clock
(one host), so latency = the `ts` of a survivor's `node_update` (status offline)
event - kill time. The events are the agent's event stream (`--events json`: one
JSON object per line on stdout, the lines of `GET /v1/events`).
Prints one line per run and the p50/max over runs. A broken run (a process that
exits by itself, a cluster that does not form, a crash not seen by every
survivor within 30 s) prints no figure and exits non-zero.
"""

import argparse
import os
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import BrokenRun, Process, agent_command, build, require, wait_formed, wait_until  # noqa: E402


def one_run(binary, nodes, base_port, run):
    cluster = f"crash-{os.getpid()}-{run}"
    procs = []
    try:
        for i in range(nodes):
            seed = f"127.0.0.1:{base_port}" if i > 0 else None
            node = Process(agent_command(binary, f"n{i}", f"127.0.0.1:{base_port + i}", cluster, seed=seed))
            node.name = f"n{i}"
            procs.append(node)
            time.sleep(0.05)
        wait_formed(procs, nodes, 20)
        time.sleep(1.0)  # steady state
        victim = procs[run % (nodes - 1) + 1]
        survivors = [n for n in procs if n is not victim]
        kill_at = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        seen = {}

        def all_saw():
            require(all(node.alive() for node in survivors), "a survivor exited")
            for node in survivors:
                for event in node.events_since(kill_at, "node_update"):
                    if event["node"] == victim.name and event["status"] == "offline":
                        seen.setdefault(node.name, event["_t"] - kill_at)
            return len(seen) == len(survivors)

        require(wait_until(all_saw, 30) is not None,
                f"crash of {victim.name} seen by {sorted(seen)} only, within 30 s")
        return max(seen.values()), min(seen.values())
    finally:
        for node in procs:
            node.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--base-port", type=int, default=17900)
    parser.add_argument("--binary", help="run this agent binary as it is (default: build target/release/beethoven)")
    args = parser.parse_args()
    binary = build(args.binary)
    lasts = []
    try:
        for run in range(args.runs):
            last, first = one_run(binary, args.nodes, args.base_port + 10 * run, run)
            lasts.append(last)
            print(f"run {run + 1:>2}: offline on every survivor after {last * 1000:6.0f} ms "
                  f"(first after {first * 1000:.0f} ms)", flush=True)
    except BrokenRun as broken:
        print(f"crash_detection.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
    print(f"p50 {statistics.median(lasts) * 1000:.0f} ms, max {max(lasts) * 1000:.0f} ms over {len(lasts)} runs "
          f"of {args.nodes} processes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
