#!/usr/bin/env python3
"""How long `beethoven agent` takes to exit after SIGTERM: alone, as one of 3
agents on loopback (it leaves, then exits once the leave has spread), and the
same with its event stream in use (`--events json` on stdout and a `beethoven
monitor` following its `/v1/events`: they get their last lines first).

    python3 scripts/agent_exit_time.py            # 5 runs of each, release build (rebuilt first)
    python3 scripts/agent_exit_time.py --runs 10 --binary target/debug/beethoven

Prints the time from SIGTERM to the process's exit for every run, and the
median and max of each case. A run counts only if the agent exited with status
0 and, in a cluster, the others saw it leave (its row `left` on the first
agent); else the script stops with no figure and a non-zero status.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import BrokenRun, agent_command, build, require, wait_until  # noqa: E402


def start(binary, name, port, http=None, seed=None, events=False):
    args = agent_command(binary, name, f"127.0.0.1:{port}", f"exit-{os.getpid()}",
                         seed=None if seed is None else f"127.0.0.1:{seed}", events=events,
                         http=None if http is None else f"127.0.0.1:{http}")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def members(http):
    """`GET /v1/members` of the agent at `http`: name -> row; empty if it does not answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/members", timeout=1) as answer:
            return {row.get("name") or row.get("node"): row for row in json.load(answer)}
    except OSError:
        return {}


def term_and_time(proc, what):
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise BrokenRun(f"{what}: still running 30 s after SIGTERM")
    took = time.monotonic() - started
    require(proc.returncode == 0, f"{what}: exit status {proc.returncode}, not 0")
    return took


def cluster_case(binary, base, streaming):
    nodes = [start(binary, "a", base + 1, http=base + 4)]
    monitor = None
    try:
        time.sleep(0.2)
        nodes += [start(binary, "b", base + 2, seed=base + 1)]
        nodes += [start(binary, "c", base + 3, seed=base + 1, http=base + 5 if streaming else None,
                        events=streaming)]

        def formed():
            require(all(node.poll() is None for node in nodes), "an agent exited before the cluster formed")
            rows = members(base + 4)
            return len(rows) == 3 and all(row["status"] == "online" for row in rows.values())

        require(wait_until(formed, 20, step=0.05) is not None, "the cluster did not form within 20 s")
        if streaming:
            monitor = subprocess.Popen([binary, "monitor", "--http", f"127.0.0.1:{base + 5}"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        took = term_and_time(nodes[2], "c (leaving a cluster of 3)")
        row = members(base + 4).get("c")
        require(row is not None and row["health"] == "left",
                f"the first agent did not see c leave (its row: {row})")
        if monitor is not None:
            monitor.wait(timeout=10)
            require(monitor.returncode == 0, f"`beethoven monitor` exited with status {monitor.returncode}")
        return took
    finally:
        for proc in nodes + ([monitor] if monitor else []):
            if proc.poll() is None:
                proc.kill()
            proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--binary", help="run this agent binary as it is (default: build target/release/beethoven)")
    parser.add_argument("--port", type=int, default=27946)
    args = parser.parse_args()
    binary = build(args.binary)
    results = {"standalone": [], "3 agents": [], "3 agents, streaming": []}
    try:
        for run in range(args.runs):
            base = args.port + 10 * run
            alone = start(binary, "alone", base)
            time.sleep(0.5)
            took = term_and_time(alone, "a standalone agent")
            results["standalone"].append(took)
            print(f"run {run} standalone: exit 0 after {took * 1000:.0f} ms", flush=True)
            for case in ["3 agents", "3 agents, streaming"]:
                streaming = case.endswith("streaming")
                took = cluster_case(binary, base + (100 if streaming else 0), streaming)
                results[case].append(took)
                print(f"run {run} {case}: exit 0 after {took * 1000:.0f} ms, the others saw it leave", flush=True)
    except BrokenRun as broken:
        print(f"agent_exit_time.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
    for case, times in results.items():
        ms = sorted(t * 1000 for t in times)
        print(f"{case}: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms over {len(ms)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
