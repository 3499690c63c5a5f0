#!/usr/bin/env python3
"""How long `beethoven agent` takes to exit after SIGTERM: alone, as one of 3
agents on loopback (it leaves, then exits once the leave has spread), and the
same with its event stream in use (`--events json` on stdout and a `beethoven
monitor` following its `/v1/events`: they get their last lines first).

    cargo build --release -p beethoven-agent
    python3 scripts/agent_exit_time.py            # 5 runs of each, release build
    python3 scripts/agent_exit_time.py --runs 10 --binary target/debug/beethoven

Prints the time from SIGTERM to the process's exit for every run, and the
median and max of each case.
"""

import argparse
import os
import signal
import statistics
import subprocess
import time
import urllib.request
import json

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start(binary, name, port, http=None, seed=None, events=False):
    args = [binary, "agent", "--name", name, "--bind", f"127.0.0.1:{port}", "--cluster", f"exit-{os.getpid()}"]
    if events:
        args += ["--events", "json"]
    if http:
        args += ["--http", f"127.0.0.1:{http}"]
    if seed:
        args += ["--seed", f"127.0.0.1:{seed}"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def online(http):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/v1/members?status=online", timeout=1) as answer:
            return len(json.load(answer))
    except OSError:
        return 0


def term_and_time(proc):
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    return time.monotonic() - started, proc.returncode


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--binary", default=os.path.join(ROOT, "target/release/beethoven"))
    parser.add_argument("--port", type=int, default=27946)
    args = parser.parse_args()
    results = {"standalone": [], "3 agents": [], "3 agents, streaming": []}
    for run in range(args.runs):
        base = args.port + 10 * run
        alone = start(args.binary, "alone", base)
        time.sleep(0.5)
        took, code = term_and_time(alone)
        results["standalone"].append(took)
        print(f"run {run} standalone: exit {code} after {took * 1000:.0f} ms")

        for case in ["3 agents", "3 agents, streaming"]:
            streaming = case.endswith("streaming")
            base += 100 if streaming else 0
            nodes = [start(args.binary, "a", base + 1, http=base + 4)]
            time.sleep(0.2)
            nodes += [start(args.binary, "b", base + 2, seed=base + 1)]
            nodes += [start(args.binary, "c", base + 3, seed=base + 1, http=base + 5 if streaming else None,
                            events=streaming)]
            deadline = time.monotonic() + 20
            while online(base + 4) < 3:
                if time.monotonic() > deadline:
                    raise SystemExit("the cluster did not form")
                time.sleep(0.05)
            monitor = None
            if streaming:
                monitor = subprocess.Popen([args.binary, "monitor", "--http", f"127.0.0.1:{base + 5}"],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
            took, code = term_and_time(nodes[2])
            results[case].append(took)
            print(f"run {run} {case}: exit {code} after {took * 1000:.0f} ms")
            if monitor is not None:
                monitor.wait(timeout=10)
            for node in nodes[:2]:
                node.kill()
                node.wait()
    for case, times in results.items():
        ms = sorted(t * 1000 for t in times)
        print(f"{case}: median {statistics.median(ms):.0f} ms, max {ms[-1]:.0f} ms over {len(ms)} runs")


if __name__ == "__main__":
    main()
