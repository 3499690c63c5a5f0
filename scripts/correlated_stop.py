#!/usr/bin/env python3
"""Real-process correlated failure: N `beethoven agent` processes on loopback,
SIGSTOP a tenth of them at once (a rack losing power, as the others see it),
and measure how long until the survivors report each one offline, and whether
any healthy process is reported offline meanwhile.

    python3 scripts/correlated_stop.py                      # 100 agents, 10 % stopped
    python3 scripts/correlated_stop.py --nodes 250 --fraction 0.1 --runs 3
    python3 scripts/correlated_stop.py --binary /tmp/beethoven-main   # a "before" build

Self-contained on purpose (no shared helper module). The stop time and the
survivors' event timestamps come from the same wall clock (one host): latency
= the `ts` of a survivor's `node_update` (status offline) event - stop time.
The events are the agent's event stream (`--events json`: one JSON object per
line on stdout). For each stopped process it prints nothing; per run it prints
the detection on the first survivor and on every survivor (p50 and max over
the stopped processes), and the false offline count: `node_update` offline
events about processes that were never stopped, over the whole measurement.
The stopped processes are resumed (SIGCONT) and every process killed at the end.
"""

import argparse
import datetime as dt
import json
import os
import queue
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_ts(value):
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Agent:
    def __init__(self, binary, name, port, seed_ports, cluster):
        args = [binary, "agent", "--name", name, "--bind", f"127.0.0.1:{port}", "--events", "json",
                "--cluster", cluster]
        for seed in seed_ports:
            args += ["--seed", f"127.0.0.1:{seed}"]
        self.name = name
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.events = queue.Queue()
        self.online = set()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "node_update":
                self.events.put(event)

    def drain(self):
        while True:
            try:
                yield self.events.get_nowait()
            except queue.Empty:
                return

    def signal(self, sig):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()


def wait_for(predicate, limit, what):
    deadline = time.time() + limit
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(what)


def one_run(binary, nodes, fraction, base_port, run, settle, window):
    cluster = f"rack-{os.getpid()}-{run}"
    agents = []
    try:
        for i in range(nodes):
            # Each joins through up to three earlier agents.
            seeds = [base_port + j for j in sorted(random.sample(range(i), min(i, 3)))]
            agents.append(Agent(binary, f"n{i}", base_port + i, seeds, cluster))
            time.sleep(0.02)

        def formed():
            for agent in agents:
                for event in agent.drain():
                    if event["status"] == "online":
                        agent.online.add(event["node"])
                    else:
                        agent.online.discard(event["node"])
            return all(len(agent.online) == nodes - 1 for agent in agents)

        wait_for(formed, 60 + nodes / 5, "cluster formed")
        time.sleep(settle)
        for agent in agents:
            list(agent.drain())
        count = max(1, round(nodes * fraction))
        stopped = random.sample(agents[1:], count)
        stopped_names = {agent.name for agent in stopped}
        stop_at = time.time()
        for agent in stopped:
            agent.signal(signal.SIGSTOP)
        survivors = [agent for agent in agents if agent.name not in stopped_names]
        seen = {name: {} for name in stopped_names}  # stopped -> observer -> latency
        false_offline = set()

        def collect():
            for agent in survivors:
                for event in agent.drain():
                    if event["status"] != "offline":
                        continue
                    if event["node"] in stopped_names:
                        seen[event["node"]].setdefault(agent.name, parse_ts(event["ts"]) - stop_at)
                    else:
                        false_offline.add((agent.name, event["node"]))
            return all(len(observers) == len(survivors) for observers in seen.values())

        try:
            wait_for(collect, window, "every stopped process offline on every survivor")
        except TimeoutError:
            pass
        # Keep watching for false offline until the window ends.
        while time.time() < stop_at + window:
            collect()
            time.sleep(0.1)
        first = [min(obs.values()) for obs in seen.values() if obs]
        everywhere = [max(obs.values()) for obs in seen.values() if len(obs) == len(survivors)]
        missing = count - len(everywhere)
        return first, everywhere, missing, len(false_offline)
    finally:
        for agent in agents:
            agent.stop()


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
    parser.add_argument("--binary", default=os.path.join(ROOT, "target", "release", "beethoven"))
    args = parser.parse_args()
    random.seed(args.seed)
    if not os.path.exists(args.binary):
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "beethoven-agent"], cwd=ROOT, check=True)
    all_first, all_everywhere, total_false = [], [], 0
    for run in range(args.runs):
        first, everywhere, missing, false_offline = one_run(
            args.binary, args.nodes, args.fraction, args.base_port + (args.nodes + 10) * run, run,
            args.settle, args.window)
        all_first += first
        all_everywhere += everywhere
        total_false += false_offline
        print(f"run {run + 1}: first survivor {summary(first)}; every survivor {summary(everywhere)}"
              f" ({missing} not offline everywhere within {args.window:.0f} s); false offline {false_offline}")
    print(f"{args.nodes} agents, {args.fraction:.0%} stopped at once, {args.runs} runs: "
          f"first survivor {summary(all_first)}; every survivor {summary(all_everywhere)}; "
          f"false offline {total_false}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
