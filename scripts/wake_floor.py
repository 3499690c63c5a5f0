#!/usr/bin/env python3
"""The floor under a quiet node's CPU on this machine: what the OS (and, on a VM,
the hypervisor) charges a process for a timer wakeup, for sending one datagram on
loopback, and for being woken by one, measured on processes that do nothing else
(`scripts/wake_floor.rs`, std only, built with plain rustc).

    python3 scripts/wake_floor.py                  # 30 processes per figure, 20 s windows
    python3 scripts/wake_floor.py --json

It then prices a quiet beethoven node's own syscall pattern with those figures:
the probe deadlines that wake it, the datagrams that wake it, the datagrams it
sends (defaults: the simulator's quiet node at N = 30, from `wakes/node/s` and
`msgs/node/s` of `beethoven-sim --nodes 30 --scenario steady --duration 60`; for
another probe interval, add `--probe-interval-ms` there and pass its figures).
No protocol code runs below that price; compare it with `scripts/idle_cost.py`.
A helper process that exits, or one measured with no wakeup at all, breaks the
run: no figure, a non-zero status.
"""

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import ROOT, BrokenRun, read_proc, require  # noqa: E402
SOURCE = os.path.join(ROOT, "scripts", "wake_floor.rs")
BINARY = os.path.join(ROOT, "target", "wake_floor")


def build():
    if not os.path.exists(BINARY) or os.path.getmtime(BINARY) < os.path.getmtime(SOURCE):
        os.makedirs(os.path.dirname(BINARY), exist_ok=True)
        subprocess.run(["rustc", "-O", "--edition", "2024", "-o", BINARY, SOURCE], check=True)


def measure(procs, window):
    """CPU µs per voluntary switch (one wakeup each), and wakeups per process per second."""
    time.sleep(2)  # past start-up
    require(all(p.poll() is None for p in procs), "a helper process exited at start-up")
    before = [read_proc(p.pid) for p in procs]
    t0 = time.monotonic()
    time.sleep(window)
    after = [read_proc(p.pid) for p in procs]
    span = time.monotonic() - t0
    require(all(p.poll() is None for p in procs), "a helper process exited during the window")
    idle = [p.pid for p, a, b in zip(procs, after, before) if a[3] == b[3]]
    require(not idle, f"helper processes {idle} never woke during the window")
    ns = sum(a[1] - b[1] for a, b in zip(after, before))
    wakes = sum(a[3] - b[3] for a, b in zip(after, before))
    return {"us_per_wake": ns / 1e3 / wakes, "wakes_per_s": wakes / len(procs) / span}


def figure(commands_of, n, window, measured):
    """Starts the processes (`commands_of` gives each one's command lines), measures
    the ones at the indices `measured` picks, stops them all."""
    procs = []
    try:
        for i in range(n):
            for args in commands_of(i):
                procs.append(subprocess.Popen([BINARY, *map(str, args)], stderr=subprocess.DEVNULL))
            time.sleep(0.005)
        return measure([p for k, p in enumerate(procs) if measured(k)], window)
    finally:
        for p in procs:
            p.kill()
            p.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, default=30, help="processes per figure")
    parser.add_argument("--period-ms", type=int, default=55, help="sleep between wakeups (18 a second)")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per figure")
    parser.add_argument("--base-port", type=int, default=19100)
    # The simulator's quiet node at N = 30 (17.27 wakes and 13.53 datagrams sent per
    # second): it receives as many datagrams as it sends, one wakeup each, and its
    # other wakeups are its own deadlines.
    parser.add_argument("--deadline-wakes", type=float, default=3.7,
                        help="a quiet node's wakeups per second by its own deadline, not a datagram")
    parser.add_argument("--datagram-wakes", type=float, default=13.5,
                        help="a quiet node's wakeups per second by a datagram")
    parser.add_argument("--sends", type=float, default=13.5, help="a quiet node's datagrams sent per second")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    build()
    try:
        result = measure_all(args)
    except BrokenRun as broken:
        print(f"wake_floor.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result))
    else:
        print(f"timer wakeup {result['timer_wake_us']:.1f} us; send one datagram {result['send_us']:.1f} us "
              f"({result['send_that_wakes_the_receiver_us']:.1f} us when it wakes the receiver); "
              f"woken by a datagram {result['datagram_wake_us']:.1f} us")
        print(f"a quiet node's {args.deadline_wakes} deadline wakeups + {args.datagram_wakes} datagram "
              f"wakeups + {args.sends} sends a second cost at least {result['node_floor_ms_per_s']:.3f} ms/s here")
    return 0


def measure_all(args):
    """The four figures and the floor they price."""
    n, ms, port = args.procs, args.period_ms, args.base_port
    pairs = n // 2
    sleep = figure(lambda i: [["sleep", ms]], n, args.window, lambda k: True)
    # Pairs: a listener first, then the sender to it; even indices are listeners.
    deaf = figure(lambda i: [["deaf", port + i], ["send", ms, port + i]], pairs, args.window,
                  lambda k: k % 2 == 1)
    senders_and_sinks = lambda i: [["sink", port + i], ["send", ms, port + i]]  # noqa: E731
    send = figure(senders_and_sinks, pairs, args.window, lambda k: k % 2 == 1)
    sink = figure(senders_and_sinks, pairs, args.window, lambda k: k % 2 == 0)
    timer_wake = sleep["us_per_wake"]
    send_alone = deaf["us_per_wake"] - timer_wake
    send_waking = send["us_per_wake"] - timer_wake
    datagram_wake = sink["us_per_wake"]
    floor_us = (args.deadline_wakes * timer_wake + args.datagram_wakes * datagram_wake
                + args.sends * send_waking)
    result = {
        "timer_wake_us": timer_wake,
        "send_us": send_alone,
        "send_that_wakes_the_receiver_us": send_waking,
        "datagram_wake_us": datagram_wake,
        "node_floor_ms_per_s": floor_us / 1000,
        "priced": {"deadline_wakes": args.deadline_wakes, "datagram_wakes": args.datagram_wakes,
                   "sends": args.sends},
        "wakes_per_s": {"sleep": sleep["wakes_per_s"], "send": send["wakes_per_s"], "sink": sink["wakes_per_s"]},
    }
    return result


if __name__ == "__main__":
    sys.exit(main())
