#!/usr/bin/env python3
"""Real-process correlated failure: N `beethoven agent` processes on loopback,
SIGSTOP a tenth of them at once (a rack losing power, as the others see it),
and measure how long until the survivors report each one offline, and whether
any healthy process is reported offline meanwhile.

    python3 scripts/correlated_stop.py                      # 100 agents, 10 % stopped
    python3 scripts/correlated_stop.py --nodes 250 --fraction 0.1 --runs 3
    python3 scripts/correlated_stop.py --binary /tmp/beethoven-main   # a "before" build

The stop time and the survivors' event timestamps come from the same wall
clock (one host): latency
= the `ts` of a survivor's `node_update` (status offline) event - stop time.
The events are the agent's event stream (`--events json`: one JSON object per
line on stdout). For each stopped process it prints nothing; per run it prints
the detection on the first survivor and on every survivor (p50 and max over
the stopped processes), and the false offline count: `node_update` offline
events about processes that were never stopped, over the whole measurement.
The stopped processes are resumed (SIGCONT) and every process killed at the end.
A broken run (a process that exits by itself, a cluster that does not form)
prints no figure and exits non-zero.
"""

import argparse
import os
import random
import signal
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import (  # noqa: E402
    BrokenRun, Process, agent_command, build, require, wait_formed, wait_until)


def start(binary, name, port, seed_ports, cluster):
    """One agent joining through the agents at `seed_ports` (all on loopback)."""
    seeds = [arg for seed in seed_ports for arg in ("--seed", f"127.0.0.1:{seed}")]
    proc = Process(agent_command(binary, name, f"127.0.0.1:{port}", cluster, extra=seeds))
    proc.name = name
    return proc


def resume_and_kill(proc):
    if proc.alive():
        proc.proc.send_signal(signal.SIGCONT)
    proc.stop()


def one_run(binary, nodes, fraction, base_port, run, settle, window):
    cluster = f"rack-{os.getpid()}-{run}"
    procs = []
    try:
        for i in range(nodes):
            # Each joins through up to three earlier agents.
            seeds = [base_port + j for j in sorted(random.sample(range(i), min(i, 3)))]
            procs.append(start(binary, f"n{i}", base_port + i, seeds, cluster))
            time.sleep(0.02)
        wait_formed(procs, nodes, 60 + nodes / 5)
        time.sleep(settle)
        count = max(1, round(nodes * fraction))
        stopped = random.sample(procs[1:], count)
        stopped_names = {proc.name for proc in stopped}
        stop_at = time.time()
        for proc in stopped:
            proc.proc.send_signal(signal.SIGSTOP)
        survivors = [proc for proc in procs if proc.name not in stopped_names]

        def offline_updates():
            """(stopped -> observer -> latency, false offline (observer, node) pairs)."""
            require(all(proc.alive() for proc in survivors), "a survivor exited")
            seen = {name: {} for name in stopped_names}
            false_offline = set()
            for proc in survivors:
                for event in proc.events_since(stop_at, "node_update"):
                    if event["status"] != "offline":
                        continue
                    if event["node"] in stopped_names:
                        seen[event["node"]].setdefault(proc.name, event["_t"] - stop_at)
                    else:
                        false_offline.add((proc.name, event["node"]))
            return seen, false_offline

        wait_until(lambda: all(len(observers) == len(survivors) for observers in offline_updates()[0].values()),
                   window, step=0.1)
        # Keep watching for false offline until the window ends.
        time.sleep(max(0.0, stop_at + window - time.time()))
        seen, false_offline = offline_updates()
        first = [min(obs.values()) for obs in seen.values() if obs]
        everywhere = [max(obs.values()) for obs in seen.values() if len(obs) == len(survivors)]
        missing = count - len(everywhere)
        return first, everywhere, missing, len(false_offline)
    finally:
        for proc in procs:
            resume_and_kill(proc)


def summary(values):
    if not values:
        return "none"
    return f"p50 {statistics.median(values) * 1000:.0f} ms, max {max(values) * 1000:.0f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--nodes", type=int, default=100)
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds of steady state before the stop")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured after the stop")
    parser.add_argument("--base-port", type=int, default=18300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--binary", help="run this agent binary as it is (default: build target/release/beethoven)")
    args = parser.parse_args()
    random.seed(args.seed)
    binary = build(args.binary)
    all_first, all_everywhere, total_false = [], [], 0
    try:
        for run in range(args.runs):
            first, everywhere, missing, false_offline = one_run(
                binary, args.nodes, args.fraction, args.base_port + (args.nodes + 10) * run, run,
                args.settle, args.window)
            all_first += first
            all_everywhere += everywhere
            total_false += false_offline
            print(f"run {run + 1}: first survivor {summary(first)}; every survivor {summary(everywhere)}"
                  f" ({missing} not offline everywhere within {args.window:.0f} s); false offline {false_offline}",
                  flush=True)
    except BrokenRun as broken:
        print(f"correlated_stop.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
    print(f"{args.nodes} agents, {args.fraction:.0%} stopped at once, {args.runs} runs: "
          f"first survivor {summary(all_first)}; every survivor {summary(all_everywhere)}; "
          f"false offline {total_false}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
