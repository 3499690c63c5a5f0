#!/usr/bin/env python3
"""Rolling upgrade: agents built before user events and agents built after
them in one cluster, on loopback.

Builds the agent at the last commit before user events (the parent of the
commit that added `core/src/wire/user.rs`; the script refuses it unless its
wire version is the current one, since two wire versions cannot share a
cluster) in a git worktree and a target dir of its own under /tmp (kept
between runs, so a second run builds nothing), and the current tree as usual
(`cargo build --release`). Starts a mixed cluster (default 6 old + 6 new,
interleaved, each joining through the first), waits until every process sees
every member online, then for `--duration` seconds (default 60) sends user
events from the new agents in turn (`POST /v1/event`, `--rate` per second).

It checks, and prints with its figures:
  - false offline: 0 `node_update` offline lines and 0 rows gone offline on
    any process, from formation to the end (every process is healthy);
  - delivery: every new agent delivered every event it did not send exactly
    once (`user_event` lines; waiting up to `--settle` s after the sending
    stops), with the time from send to delivery, and no old agent printed one;
  - the old agents counted and ignored the new messages: their `/metrics`
    count `dropped_packets{reason="unknown_message"}` (and
    `unknown_piggyback`) above zero, and they stayed up.
A broken run (a process that exits, a cluster that does not form, an old
build with another wire version) prints no figure and exits non-zero; so
does a failed check.

    python3 scripts/rolling_upgrade.py
    python3 scripts/rolling_upgrade.py --old 6 --new 6 --duration 60 --rate 2
    python3 scripts/rolling_upgrade.py --old-commit 442393d
"""

import argparse
import os
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))
from cluster import (  # noqa: E402
    ROOT, BrokenRun, Process, agent_command, build, delivery_faults, parse_ts, post_json, require, scrape,
    wait_formed, wait_until)

TOKEN = "rolling-upgrade-token-0123456789"
FIRST_USER_EVENTS_FILE = "core/src/wire/user.rs"


def git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def wire_version(commit):
    """`wire::VERSION` at `commit`."""
    text = git("show", f"{commit}:core/src/wire/mod.rs")
    found = re.search(r"pub const VERSION: u8 = (\d+);", text)
    require(found is not None, f"no wire VERSION in core/src/wire/mod.rs at {commit}")
    return int(found.group(1))


def commit_before_user_events():
    """The parent of the commit that added the user events' wire file."""
    added = git("log", "--diff-filter=A", "--format=%H", "--", FIRST_USER_EVENTS_FILE).split()
    require(added, f"no commit adds {FIRST_USER_EVENTS_FILE}: give --old-commit")
    return git("rev-parse", f"{added[-1]}^")


def build_at(commit):
    """`beethoven` built (release) at `commit`, in a worktree and a target dir
    of its own under /tmp: the path of the binary."""
    short = commit[:10]
    tree = f"/tmp/beethoven-rolling-{short}"
    target = f"/tmp/beethoven-rolling-{short}-target"
    if not os.path.isdir(tree):
        git("worktree", "add", "--detach", tree, commit)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tree, check=True, capture_output=True,
                          text=True).stdout.strip()
    require(head == git("rev-parse", commit), f"{tree} is not at {commit}: remove it (git worktree remove)")
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "beethoven-agent", "--bin", "beethoven"],
                   cwd=tree, check=True, env={**os.environ, "CARGO_TARGET_DIR": target})
    return os.path.join(target, "release", "beethoven")


def start(binary, name, port, http_port, seed_port, cluster, kind):
    seed = None if seed_port is None else f"127.0.0.1:{seed_port}"
    args = agent_command(binary, name, f"127.0.0.1:{port}", cluster, seed=seed, http=f"127.0.0.1:{http_port}")
    proc = Process(args, env={**os.environ, "BEETHOVEN_HTTP_TOKEN": TOKEN})
    proc.name = name
    proc.kind = kind
    proc.http = f"127.0.0.1:{http_port}"
    return proc


def went_offline(procs, since):
    """(observer, node) of every offline `node_update` or row since `since`."""
    seen = set()
    for proc in procs:
        for event in proc.events_since(since):
            if event.get("event") == "node_update" and event["status"] == "offline":
                seen.add((proc.name, event["node"]))
            if event.get("event") == "tracker" and event["new_row"]["status"] == "offline":
                seen.add((proc.name, event["new_row"]["node"]))
    return sorted(seen)


def dropped(proc, reason):
    return sum(value for name, labels, value in scrape(proc.http)
               if name == "beethoven_dropped_packets_total" and labels.get("reason") == reason)


def upgrade_run(args, old_binary, new_binary):
    cluster = f"rolling-{os.getpid()}"
    procs = []
    try:
        # Interleaved, an old agent first: every new agent joins through an old one.
        kinds = [kind for i in range(max(args.old, args.new))
                 for kind, count in (("old", args.old), ("new", args.new)) if i < count]
        numbered = {"old": 0, "new": 0}
        for i, kind in enumerate(kinds):
            binary = old_binary if kind == "old" else new_binary
            seed = None if i == 0 else args.base_port
            procs.append(start(binary, f"{kind}{numbered[kind]}", args.base_port + i,
                               args.base_port + 100 + i, seed, cluster, kind))
            numbered[kind] += 1
            time.sleep(0.05)
        total = len(procs)
        took = wait_formed(procs, total, 60)
        print(f"{args.old} old ({old_binary}) + {args.new} new agents formed in {took:.1f} s", flush=True)
        formed_at = time.time()
        old = [p for p in procs if p.kind == "old"]
        new = [p for p in procs if p.kind == "new"]
        sent = set()
        refused = []
        interval = 1.0 / args.rate
        start_at = time.time()
        k = 0
        while time.time() - start_at < args.duration:
            require(all(p.alive() for p in procs),
                    f"a process exited: {[p.name for p in procs if not p.alive()]}")
            sender = new[k % len(new)]
            name = f"upgrade-{k}"
            status, answer = post_json(sender.http, "/v1/event", {"name": name, "payload": f"event {k}"}, TOKEN)
            if status == 200:
                sent.add((sender.name, name))
            else:
                refused.append((sender.name, status, answer))
            k += 1
            time.sleep(max(0.0, start_at + k * interval - time.time()))
        # Time for the last events to arrive (a push that met an old agent is
        # repaired by a pull), then for a copy delivered twice to show.
        sent_done = time.time()
        wait_until(lambda: not delivery_faults(new, sent), args.settle)
        time.sleep(1.0)
        require(all(p.alive() for p in procs), f"a process exited: {[p.name for p in procs if not p.alive()]}")
        false_offline = went_offline(procs, formed_at)
        faults = delivery_faults(new, sent)
        latencies = sorted(e["_t"] - parse_ts(e["sent_at"]) for p in new for e in p.events_since(formed_at, "user_event"))
        old_lines = sum(len(p.events_since(formed_at, "user_event")) for p in old)
        unknown = {p.name: (dropped(p, "unknown_message"), dropped(p, "unknown_piggyback")) for p in old}
        new_unknown = sum(dropped(p, "unknown_message") for p in new)
        return {
            "sent": len(sent), "refused": refused, "false_offline": false_offline, "faults": faults,
            "old_lines": old_lines, "unknown": unknown, "new_unknown": new_unknown,
            "deliveries": len(sent) * (len(new) - 1), "latencies": latencies,
            "last_after": max((e["_t"] for p in new for e in p.events_since(formed_at, "user_event")),
                              default=sent_done) - sent_done,
        }
    finally:
        for proc in procs:
            proc.stop()


def spread(values):
    """p50, p99 and max of `values` (seconds) in ms."""
    if not values:
        return "none"
    at = lambda q: values[min(len(values) - 1, int(q * len(values)))]  # noqa: E731
    return f"p50 {at(0.5) * 1000:.0f} ms, p99 {at(0.99) * 1000:.0f} ms, max {values[-1] * 1000:.0f} ms"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", type=int, default=6, help="agents of the old build")
    parser.add_argument("--new", type=int, default=6, help="agents of the current tree")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of events from the new agents")
    parser.add_argument("--rate", type=float, default=2.0, help="events per second, the new agents in turn")
    parser.add_argument("--settle", type=float, default=20.0,
                        help="longest wait, s, for the last events to arrive after the sending stops")
    parser.add_argument("--old-commit", help="the old build's commit (default: the last before user events)")
    parser.add_argument("--binary", help="run this agent binary as the new build, as it is")
    parser.add_argument("--base-port", type=int, default=18700)
    args = parser.parse_args()
    if args.old < 1 or args.new < 2:
        parser.error("--old must be at least 1 and --new at least 2 (a new agent delivers the others' events)")
    try:
        commit = git("rev-parse", args.old_commit) if args.old_commit else commit_before_user_events()
        old_version, new_version = wire_version(commit), wire_version("HEAD")
        require(old_version == new_version,
                f"the old build {commit[:10]} speaks wire v{old_version}, this tree v{new_version}: "
                "two wire versions cannot share a cluster")
        print(f"old build: {commit[:10]} ({git('log', '-1', '--format=%s', commit)[:80]}), wire v{old_version}",
              flush=True)
        old_binary = build_at(commit)
        new_binary = build(args.binary)
        result = upgrade_run(args, old_binary, new_binary)
    except BrokenRun as broken:
        print(f"rolling_upgrade.py: broken run, no figure: {broken}", file=sys.stderr)
        return 1
    unknown = result["unknown"]
    checks = [
        (not result["false_offline"],
         f"false offline: {len(result['false_offline'])}" + (f" {result['false_offline'][:10]}"
                                                            if result["false_offline"] else "")),
        (result["sent"] > 0 and not result["faults"],
         f"delivery: {result['sent']} events sent by the new agents ({len(result['refused'])} refused), "
         f"{result['deliveries'] - sum(1 for f in result['faults'] if 'missing' in f)}/{result['deliveries']} "
         f"delivered to the other new agents, each once; from send to delivery {spread(result['latencies'])} "
         f"({sum(1 for t in result['latencies'] if t > 1.0)} later than 1 s), "
         f"the last {result['last_after']:.2f} s after the sending stopped"
         + (f"; {result['faults'][:10]}" if result["faults"] else "")),
        (result["old_lines"] == 0, f"old agents printed {result['old_lines']} user_event lines"),
        (all(message > 0 for message, _item in unknown.values()),
         "old agents counted and ignored the new kinds (unknown_message / unknown_piggyback): "
         + ", ".join(f"{name} {int(message)}/{int(item)}" for name, (message, item) in sorted(unknown.items()))),
        (result["new_unknown"] == 0, f"new agents' unknown_message drops: {int(result['new_unknown'])}"),
    ]
    for ok, text in checks:
        print(f"{'PASS' if ok else 'FAIL'} {text}", flush=True)
    failed = [text for ok, text in checks if not ok]
    print(f"{'FAIL' if failed else 'PASS'}: {args.old} old + {args.new} new agents, {args.duration:.0f} s of "
          f"events at {args.rate:g}/s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
