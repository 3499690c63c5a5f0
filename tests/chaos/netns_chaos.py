#!/usr/bin/env python3
"""Chaos tests with real processes, each in its own network namespace.

Starts N (default 5) `beethoven agent --events json` processes (the agent's event
stream on stdout, the lines of `GET /v1/events`; logs on stderr), each in its own network
namespace, joined by a bridge that lives in a namespace of its own (nothing is
added to the root namespace; private addresses 10.77.0.0/24 exist only inside
the namespaces this script creates). Then, reading the processes' JSON event
streams:

  kill       SIGKILL one node: offline on every survivor (latency); it restarts
             under the same name and is online everywhere again with a higher
             incarnation. Three rounds (--kills), a different node each time.
  stop       SIGSTOP one node for 10 s, then SIGCONT: offline everywhere while
             stopped, then online again with a higher incarnation everywhere;
             the resumed node declares nobody offline.
  partition  nftables drops traffic between groups of 2 and 3 for 30 s, then
             heals: all trackers identical again (status, health, incarnation,
             addr of every row) and everyone online, within 2 s (--heal-bound).
             User events (`beethoven event`, through each sender's HTTP API)
             are sent from both sides during the partition and from both ends
             after the heal: every process delivers every other process's
             event exactly once (its `user_event` lines), the partition's on
             the far side after the heal. A query (`beethoven query`, every
             node answering with its name from a `query` handler) during the
             split is answered by the sender's side alone, and after the heal
             by every node.
  loss       10% random loss on every node (nftables `numgen random mod 100 < 10
             drop` on each namespace's input) for 60 s: no node declared offline,
             counted until the longest suspicion after the loss has run out + 1 s.
  conflict   a second process under a live node's name, at another address
             (another namespace, port +1): the conflict is reported
             (`name_conflict`), the second process (it started last) exits
             with status 3 and a message naming the first one's address, and
             the first stays online under the name everywhere, at its address.

Each check prints PASS/FAIL with its numbers; the exit status is non-zero if any
failed (77, "skipped", when the prerequisites are missing: root, `ip netns`, `nft`;
1 instead when `BEETHOVEN_REQUIRE_ALL_TESTS` is set).
The last lines say how late the script read the event streams. On failure the
log directory stays: per process, its stderr and its event lines, each prefixed
with the time the script read it.
Namespaces, processes and nftables rules are removed on exit, even on failure
or Ctrl-C/SIGTERM.

    sudo python3 tests/chaos/netns_chaos.py                 # builds target/release/beethoven first
    sudo python3 tests/chaos/netns_chaos.py --binary path/to/beethoven --only kill,stop
"""

import argparse
import ctypes
import datetime as dt
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
from cluster import Process, agent_command, build, delivery_faults, user_events, wait_until  # noqa: E402

SUBNET = "10.77.0"
PORT = 7946
# Each node's HTTP API, on its own namespace's loopback: `beethoven event` runs there.
HTTP = f"127.0.0.1:{PORT + 1000}"
TOKEN = "chaos-http-token-0123456789"
CHECKS = ["kill", "stop", "partition", "loss", "conflict"]
EXIT_NAME_TAKEN = 3
NS_RE = re.compile(r"^bchaos-(\d+)-")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(*args, check=True, quiet=False, stdin=None):
    res = subprocess.run(list(args), input=stdin, text=True, capture_output=True)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({res.returncode}): {res.stderr.strip()}")
    if not quiet and res.returncode != 0:
        log(f"warning: {' '.join(args)}: {res.stderr.strip()}")
    return res


def utc(seconds):
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%H:%M:%S.%f")


def _die_with_parent():
    """In the child, before exec: get SIGKILL if this script dies (even by SIGKILL)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Net:
    """A bridge namespace and one namespace per node, with veth pairs between."""

    def __init__(self, count):
        self.tag = f"bchaos-{os.getpid()}"
        self.bridge = f"{self.tag}-br"
        self.nodes = [f"{self.tag}-n{i}" for i in range(count)]
        self.ips = [f"{SUBNET}.{10 + i}" for i in range(count)]
        self.created = []

    def ns_exec(self, ns, *args, **kw):
        return run("ip", "netns", "exec", ns, *args, **kw)

    def up(self):
        for ns in [self.bridge] + self.nodes:
            run("ip", "netns", "add", ns)
            self.created.append(ns)
            self.ns_exec(ns, "ip", "link", "set", "lo", "up")
        self.ns_exec(self.bridge, "ip", "link", "add", "br0", "type", "bridge")
        self.ns_exec(self.bridge, "ip", "link", "set", "br0", "up")
        for i, ns in enumerate(self.nodes):
            # Created inside the bridge namespace, its peer straight into the node's:
            # no interface ever appears in the root namespace.
            port = f"p{i}"
            self.ns_exec(self.bridge, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.ns_exec(self.bridge, "ip", "link", "set", port, "master", "br0")
            self.ns_exec(self.bridge, "ip", "link", "set", port, "up")
            self.ns_exec(ns, "ip", "addr", "add", f"{self.ips[i]}/24", "dev", "eth0")
            self.ns_exec(ns, "ip", "link", "set", "eth0", "up")

    def nft(self, i, script):
        self.ns_exec(self.nodes[i], "nft", "-f", "-", stdin=script)

    def nft_delete(self, i, table):
        self.ns_exec(self.nodes[i], "nft", "delete", "table", "inet", table, check=False, quiet=True)

    def nft_dropped(self, i, table):
        """Packets counted by the `counter` statements of a table."""
        out = self.ns_exec(self.nodes[i], "nft", "list", "table", "inet", table, check=False, quiet=True).stdout
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", out))

    def down(self):
        for ns in reversed(self.created):
            kill_netns_pids(ns)
            run("ip", "netns", "del", ns, check=False)
        self.created = []


def kill_netns_pids(ns):
    res = run("ip", "netns", "pids", ns, check=False, quiet=True)
    for pid in res.stdout.split():
        try:
            os.kill(int(pid), signal.SIGCONT)
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def remove_stale_namespaces():
    """Namespaces of earlier runs of this script whose process is gone."""
    res = run("ip", "netns", "list", check=False, quiet=True)
    for line in res.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        m = NS_RE.match(name)
        if m and not os.path.exists(f"/proc/{m.group(1)}"):
            log(f"removing stale namespace {name}")
            kill_netns_pids(name)
            run("ip", "netns", "del", name, check=False)


class Proc(Process):
    """One `beethoven agent` process and what its event stream said."""

    def __init__(self, binary, net, i, cluster, logdir):
        self.name = f"n{i}"
        self.index = i
        self.addr = f"{net.ips[i]}:{PORT}"
        seed = net.ips[1] if i == 0 else net.ips[0]
        self.net = net
        self.binary = binary
        answer = os.path.join(logdir, "answer.sh")
        if not os.path.exists(answer):
            with open(answer, "w") as f:
                f.write('#!/bin/sh\necho "$BEETHOVEN_SELF_NAME"\n')
            os.chmod(answer, 0o755)
        args = ["ip", "netns", "exec", net.nodes[i],
                *agent_command(binary, self.name, self.addr, cluster, seed=f"{seed}:{PORT}", http=HTTP,
                               extra=["--event-handler", f"query={answer}"])]
        stem = os.path.join(logdir, f"{self.name}-{time.time():.0f}")
        self.stderr = open(f"{stem}.stderr", "w")
        # Every event line as read, with the time it was read: what a failed check saw.
        # `ip netns exec` execs the binary: signals reach the node itself.
        super().__init__(args, stderr=self.stderr, log=open(f"{stem}.events", "w"),
                         start_new_session=True, preexec_fn=_die_with_parent,
                         env={**os.environ, "BEETHOVEN_HTTP_TOKEN": TOKEN})

    def send_event(self, name, payload):
        """`beethoven event NAME PAYLOAD` through this node's API: None, or why it failed."""
        res = subprocess.run(["ip", "netns", "exec", self.net.nodes[self.index], self.binary, "event",
                              "--http", HTTP, name, payload], text=True, capture_output=True,
                             env={**os.environ, "BEETHOVEN_HTTP_TOKEN": TOKEN})
        return None if res.returncode == 0 else f"{self.name}: {res.stderr.strip()}"

    def query(self, name, timeout):
        """`beethoven query NAME --timeout T --json` through this node's API:
        (sorted names that answered, the `done` line or None, an error or None)."""
        res = subprocess.run(["ip", "netns", "exec", self.net.nodes[self.index], self.binary, "query",
                              "--http", HTTP, "--timeout", timeout, "--json", name], text=True,
                             capture_output=True, env={**os.environ, "BEETHOVEN_HTTP_TOKEN": TOKEN})
        lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
        answered = sorted(line["from"] for line in lines if line.get("event") == "response"
                          and line.get("payload", "").strip() == line["from"])
        done = next((line for line in lines if line.get("event") == "done"), None)
        return answered, done, None if res.returncode == 0 else f"{self.name}: {res.stderr.strip()}"

    def view(self):
        """node -> (status, health, incarnation, addr) of the latest rows."""
        with self.lock:
            return {n: (r["status"], r["health"], r["incarnation"], r["addr"]) for n, r in self.rows.items()}

    def last_changes(self):
        with self.lock:
            return {n: r.get("last_change") for n, r in self.rows.items()}

    def story(self, node, last=6):
        """What this process's stream said of `node` lately (for a failed check)."""
        with self.lock:
            row = self.rows.get(node)
            said = [e for e in self.events
                    if e.get("node") == node or (e.get("new_row") or {}).get("node") == node][-last:]
        lines = [f"row {row and (row['status'], row['health'], row['incarnation'])}; "
                 f"{len(self.events)} events read, last read at {utc(self.events[-1]['_read']) if self.events else '-'}"]
        for e in said:
            row_then = e.get("new_row") or {}
            what = e.get("status") or f"{row_then.get('status')}/{row_then.get('health')}"
            lines.append(f"{e.get('event')} {what} ts {utc(e['_t'])} read {utc(e['_read'])}")
        return "; ".join(lines)

    def signal(self, sig):
        if self.alive():
            self.proc.send_signal(sig)

    def stop(self):
        if self.alive():
            try:
                self.proc.send_signal(signal.SIGCONT)
                self.proc.kill()
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self.stderr.close()


def told_offline(survivors, victim, since):
    """survivor name -> seconds from `since` to its `node_update` saying `victim` went offline.

    Waiting on this, not on the tracker row: the `node_update` line is the one
    after the row's, and a check that stops waiting when the row is read can
    look before its reader thread has read the next line."""
    latency = {}
    for p in survivors:
        for e in p.events_since(since, "node_update"):
            if e["node"] == victim.name and e["status"] == "offline":
                latency[p.name] = e["_t"] - since
                break
    return latency


def fmt_ms(seconds):
    return f"{seconds * 1000:.0f} ms"


def longest_suspicion(nodes, loss):
    """An upper bound on one suspicion at these defaults (`suspicion_min` 500 ms,
    `suspicion_max_factor` 4, scaled by log10 of the members, stretched under loss
    by at most (1 / (1 - loss))^2), plus one last-chance round of a probe interval."""
    base = 0.5 * max(1.0, math.log10(nodes))
    return base * 4 / (1 - loss) ** 2 + 0.15


class Chaos:
    def __init__(self, args):
        self.args = args
        self.net = Net(args.nodes)
        self.cluster = f"chaos-{os.getpid()}"
        self.procs = []
        self.every_proc = []  # restarted ones too: their streams count in the delay figure
        self.logdir = tempfile.mkdtemp(prefix="bchaos-")
        self.results = []  # (name, ok, detail)

    # ----- bookkeeping -----

    def record(self, name, ok, detail):
        self.results.append((name, ok, detail))
        print(f"{'PASS' if ok else 'FAIL'} {name}: {detail}", flush=True)
        return ok

    def stream_delay(self):
        """How late this script read the nodes' event lines (a check sees only what it read)."""
        delays = []
        for p in self.every_proc:
            with p.lock:
                delays.extend(e["_read"] - e["_t"] for e in p.events)
        if not delays:
            return "event streams: no line read"
        delays.sort()
        return (f"event streams: {len(delays)} lines read, {fmt_ms(delays[len(delays) // 2])} after their "
                f"timestamp at p50, {fmt_ms(delays[-1])} at most")

    def names(self):
        return [p.name for p in self.procs]

    def sees_online(self, observers, nodes):
        for p in observers:
            for n in nodes:
                row = p.row(n)
                if row is None or row["status"] != "online":
                    return False
        return True

    def converged(self):
        """Every process holds every node online, and all views are identical."""
        if not self.sees_online(self.procs, self.names()):
            return False
        views = [p.view() for p in self.procs]
        return all(v == views[0] for v in views[1:])

    def view_diff(self):
        lines = []
        for p in self.procs:
            v = p.view()
            lines.append(f"    {p.name}: " + ", ".join(f"{n}={s}/{h}/i{i}" for n, (s, h, i, _a) in sorted(v.items())))
        return "\n".join(lines)

    def gate(self, what, timeout=30):
        took = wait_until(self.converged, timeout)
        if took is None:
            self.record(f"{what} (precondition: converged cluster)", False,
                        f"not converged within {timeout} s\n{self.view_diff()}")
            return False
        return True

    def start_node(self, i):
        proc = Proc(self.args.binary, self.net, i, self.cluster, self.logdir)
        self.every_proc.append(proc)
        if i < len(self.procs):
            self.procs[i] = proc
        else:
            self.procs.append(proc)
        return proc

    # ----- the run -----

    def setup(self):
        remove_stale_namespaces()
        self.net.up()
        log(f"{self.args.nodes} namespaces up ({SUBNET}.0/24 behind a bridge namespace), starting nodes")
        t0 = time.time()
        for i in range(self.args.nodes):
            self.start_node(i)
            time.sleep(0.05)
        took = wait_until(self.converged, 30)
        if took is None:
            self.record("formation", False, f"no converged cluster within 30 s\n{self.view_diff()}")
            return False
        log(f"cluster of {self.args.nodes} formed in {fmt_ms(time.time() - t0)}")
        time.sleep(1.0)
        return True

    def check_kill(self):
        """SIGKILL a node (a different one each round), then restart it; `--kills` rounds."""
        n = len(self.procs)
        rounds = []  # (victim, {survivor: latency}, all offline in time)
        restarts = []  # (victim, seconds or None, incarnation before, incarnations after)
        for k in range(self.args.kills):
            if k > 0:
                if wait_until(self.converged, 30) is None:
                    break
                time.sleep(1.0)
            victim = self.procs[n - 1 - k % (n - 1)]
            survivors = [p for p in self.procs if p is not victim]
            before = max(p.row(victim.name)["incarnation"] for p in survivors)
            kill_at = time.time()
            victim.signal(signal.SIGKILL)
            took = wait_until(lambda: len(told_offline(survivors, victim, kill_at)) == len(survivors), 30)
            lat = told_offline(survivors, victim, kill_at)
            rounds.append((victim.name, lat, took is not None and len(lat) == len(survivors)))
            victim.stop()
            new = self.start_node(victim.index)
            took = wait_until(self.converged, 30)
            incs = sorted({p.row(new.name)["incarnation"] for p in self.procs if p.row(new.name)})
            restarts.append((new.name, took, before, incs))
        everywhere = [max(lat.values()) for _, lat, ok in rounds if ok]
        ok = len(rounds) == self.args.kills and all(r[2] for r in rounds)
        per_round = "; ".join(
            f"{v}: {fmt_ms(max(lat.values())) if ok_ else 'NOT everywhere within 30 s (' + ', '.join(sorted(lat)) + ')'}"
            for v, lat, ok_ in rounds)
        summary = (f"p50 {fmt_ms(statistics.median(everywhere))}, max {fmt_ms(max(everywhere))}"
                   if everywhere else "no round completed")
        self.record("kill: crashed node offline on every survivor", ok,
                    f"{len(rounds)} SIGKILLs, offline on all {n - 1} survivors after {summary} ({per_round})"
                    + ("" if ok else "\n" + self.view_diff()))
        self.kill_latencies = everywhere
        ok2 = len(restarts) == self.args.kills and all(
            t is not None and all(i > before for i in incs) for _, t, before, incs in restarts)
        self.record("kill: restarted node online everywhere, higher incarnation", ok2,
                    "restart under the same name and address: " + "; ".join(
                        f"{v} converged after {fmt_ms(t) if t is not None else '> 30 s'}, "
                        f"incarnation {before} -> {incs}" for v, t, before, incs in restarts)
                    + ("" if ok2 else "\n" + self.view_diff()))
        return ok and ok2

    def check_stop(self):
        victim = self.procs[-2]
        survivors = [p for p in self.procs if p is not victim]
        before = max(p.row(victim.name)["incarnation"] for p in survivors)
        stop_at = time.time()
        victim.signal(signal.SIGSTOP)
        pause = self.args.pause
        took = wait_until(lambda: len(told_offline(survivors, victim, stop_at)) == len(survivors), pause - 0.5)
        offline_lat = told_offline(survivors, victim, stop_at)
        # Told only if the check fails: what each silent survivor's stream said by now.
        stories = {p.name: p.story(victim.name) for p in survivors if p.name not in offline_lat}
        time.sleep(max(0.0, stop_at + pause - time.time()))
        cont_at = time.time()
        victim.signal(signal.SIGCONT)

        def back():
            for p in self.procs:
                row = p.row(victim.name)
                if row is None or row["status"] != "online" or row["incarnation"] <= before:
                    return False
            return self.converged()

        back_took = wait_until(back, 30)
        incs = sorted({p.row(victim.name)["incarnation"] for p in self.procs if p.row(victim.name)})
        ok1 = took is not None and len(offline_lat) == len(survivors)
        self.record("stop: stopped node offline on every survivor", ok1,
                    f"{victim.name} SIGSTOPped for {pause:.0f} s: offline everywhere after "
                    f"{fmt_ms(max(offline_lat.values())) if ok1 else 'never (within the pause)'}"
                    + ("" if ok1 else f"; saw: {sorted(offline_lat)}; SIGSTOP at {utc(stop_at)} UTC"
                       + "".join(f"\n    {name}: {story}" for name, story in stories.items())))
        # What the resumed node made of the others meanwhile (a starved node should not accuse healthy ones).
        accused = [e["node"] for e in victim.events_since(cont_at, "node_update") if e["status"] == "offline"]
        ok2 = back_took is not None and not accused
        self.record("stop: back online with a higher incarnation everywhere, accusing nobody", ok2,
                    f"after SIGCONT: online everywhere after {fmt_ms(back_took) if back_took is not None else '> 30 s'}, "
                    f"incarnation {before} -> {incs}; the resumed node declared {len(accused)} others offline"
                    + (f" {sorted(accused)}" if accused else "")
                    + ("" if ok2 else "\n" + self.view_diff()))
        self.stop_latency = max(offline_lat.values()) if ok1 else None
        self.stop_recovery = back_took
        return ok1 and ok2

    def check_partition(self):
        n = len(self.procs)
        left = list(range(0, 2))
        right = list(range(2, n))
        ips = self.net.ips
        for side, other in [(left, right), (right, left)]:
            peers = ", ".join(ips[j] for j in other)
            for i in side:
                self.net.nft(i, f"""table inet bchaos_part {{
  chain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {peers} }} counter drop; }}
  chain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {peers} }} counter drop; }}
}}
""")
        part_at = time.time()
        names = self.names()

        def split():
            for i in range(n):
                others = right if i in left else left
                for j in others:
                    row = self.procs[i].row(names[j])
                    if row is None or row["status"] != "offline":
                        return False
            return True

        split_took = wait_until(split, self.args.partition)
        # Events from both sides while split: each side delivers its own at once,
        # the other side's only after the heal.
        sent = {}  # (origin, name) -> the side it was sent from
        refused = []
        for i in left[:1] + right[:2]:
            name = f"part-{names[i]}"
            refused += filter(None, [self.procs[i].send_event(name, f"sent by {names[i]} while split")])
            sent[(names[i], name)] = left if i in left else right
        # A query from one side while split: its own side answers, all of it.
        split_query = self.procs[right[0]].query("chaos-split", "5s")
        time.sleep(max(0.0, part_at + self.args.partition - time.time()))
        dropped = sum(self.net.nft_dropped(i, "bchaos_part") for i in range(n))
        for i in range(n):
            self.net.nft_delete(i, "bchaos_part")
        heal_at = time.time()
        log(f"partition {len(left)}|{len(right)} healed after {self.args.partition:.0f} s "
            f"({dropped} datagrams dropped)")
        heal_took = wait_until(self.converged, self.args.heal_timeout)

        def far_side_delivered():
            """Every event sent while split delivered on the far side."""
            for (origin, name), side in sent.items():
                for j in range(n):
                    if j not in side and user_events(self.procs[j]).get((origin, name), 0) == 0:
                        return False
            return True

        far_took = wait_until(far_side_delivered, 10)
        # When the last far-side delivery happened, by its line's timestamp.
        far_after_heal = max((e["_t"] - heal_at for (origin, name), side in sent.items() for j in range(n)
                              if j not in side for e in self.procs[j].events_since(heal_at - 1, "user_event")
                              if (e["origin"], e["name"]) == (origin, name)), default=0.0)
        for i in (left[0], right[-1]):
            name = f"healed-{names[i]}"
            refused += filter(None, [self.procs[i].send_event(name, f"sent by {names[i]} after the heal")])
            sent[(names[i], name)] = None
        everywhere = wait_until(lambda: not delivery_faults(self.procs, set(sent)), 10)
        healed_query = self.procs[left[0]].query("chaos-healed", "5s")
        # Time for a copy delivered twice to show.
        time.sleep(1.0)
        faults = delivery_faults(self.procs, set(sent))
        events_ok = not faults and not refused and far_took is not None
        events_detail = (
            f"{len(sent)} events ({len(sent) - 2} while split, 2 after the heal) by "
            f"{sorted({origin for origin, _ in sent})}: the split's on the far side "
            + (f"{fmt_ms(far_after_heal)} after the heal" if far_took is not None else "NOT within 10 s of the heal")
            + "; every event on every other process once: "
            + ("yes" if not faults else f"NO ({len(faults)} faults: {faults[:8]})")
            + (f" (after {fmt_ms(everywhere)})" if everywhere is not None else "")
            + (f"; refused: {refused}" if refused else ""))
        self.record("partition: split seen by both sides", split_took is not None and dropped > 0,
                    f"{len(left)}|{len(right)}: each side saw the other offline after "
                    f"{fmt_ms(split_took) if split_took is not None else 'never'}; nft dropped {dropped} datagrams")
        ok = heal_took is not None and heal_took <= self.args.heal_bound
        same_changes = True
        if ok:
            full = [p.last_changes() for p in self.procs]
            same_changes = all(f == full[0] for f in full[1:])
        self.record("partition: healed, trackers identical, everyone online", ok,
                    (f"converged {fmt_ms(heal_took)} after healing (rows compared: status, health, "
                     f"incarnation, addr; last_change also identical: {'yes' if same_changes else 'no'})")
                    if heal_took is not None and ok
                    else (f"converged {fmt_ms(heal_took)} after healing, over the {self.args.heal_bound:.1f} s bound"
                          if heal_took is not None
                          else f"not converged {self.args.heal_timeout:.0f} s after healing\n{self.view_diff()}"))
        self.record("partition: user events from both sides and after the heal delivered once everywhere",
                    events_ok, events_detail)
        queries_ok = True
        details = []
        for what, (answered, done, failed), origin, everyone in [
                ("while split", split_query, names[right[0]], [names[j] for j in right]),
                ("after the heal", healed_query, names[left[0]], names)]:
            ok_ = failed is None and answered == sorted(everyone) and done is not None and not done["timed_out"]
            queries_ok &= ok_
            details.append(f"{what} from {origin}: answered by {answered}"
                           + (f", done {done['responded']}/{done['expected']}"
                              f"{' (timed out)' if done['timed_out'] else ''}" if done else ", no end")
                           + (f"; {failed}" if failed else ""))
        self.record("partition: a query while split is answered by its side, after the heal by everyone",
                    queries_ok, "; ".join(details))
        self.heal_time = heal_took
        self.split_time = split_took
        return ok and split_took is not None and events_ok and queries_ok

    def check_loss(self):
        n = len(self.procs)
        for i in range(n):
            # On input only: each datagram crosses one receiving namespace, so it is
            # lost with probability 10%, once.
            self.net.nft(i, f"""table inet bchaos_loss {{
  chain input {{ type filter hook input priority 0; policy accept;
    udp dport {PORT} numgen random mod 100 < {self.args.loss_pct} counter drop; }}
}}
""")
        start = time.time()
        time.sleep(self.args.loss_time)
        dropped = sum(self.net.nft_dropped(i, "bchaos_loss") for i in range(n))
        for i in range(n):
            self.net.nft_delete(i, "bchaos_loss")
        end = time.time()
        # A suspicion raised just before the loss ended can still end in a death:
        # count until the longest suspicion has run out, plus 1 s for the lines.
        cutoff = end + longest_suspicion(n, self.args.loss_pct / 100) + 1.0
        time.sleep(max(0.0, cutoff - time.time()))
        offline_updates = []
        offline_rows = []
        suspects = 0
        for p in self.procs:
            for e in p.events_since(start):
                if e["_t"] > cutoff:
                    continue
                if e.get("event") == "node_update" and e["status"] == "offline":
                    offline_updates.append(f"{p.name}: {e['node']}")
                if e.get("event") == "tracker":
                    row = e["new_row"]
                    if row["status"] == "offline":
                        offline_rows.append(f"{p.name}: {row['node']} {row['health']}")
                    if row["health"] == "suspect":
                        suspects += 1
        ok = not offline_updates and not offline_rows and dropped > 0 and all(p.alive() for p in self.procs)
        self.record(f"loss: {self.args.loss_pct}% loss for {self.args.loss_time:.0f} s, nobody offline", ok,
                    f"nft dropped {dropped} datagrams; until {cutoff - end:.1f} s after the loss: "
                    f"{len(offline_updates)} offline notifications, "
                    f"{len(offline_rows)} rows gone offline, {suspects} suspicions raised"
                    + (f"; {offline_updates[:5]} {offline_rows[:5]}" if not ok else ""))
        self.loss_suspects = suspects
        return ok

    def check_conflict(self):
        """A second process under a live node's name, at another address: one of the two stays."""
        target = self.procs[2]
        host = 3  # the twin's namespace: another IP, and port + 1
        twin_addr = f"{self.net.ips[host]}:{PORT + 1}"
        stamp = f"{time.time():.0f}"
        out_path = os.path.join(self.logdir, f"{target.name}-twin-{stamp}.stdout")
        err_path = os.path.join(self.logdir, f"{target.name}-twin-{stamp}.stderr")
        before = max(p.row(target.name)["incarnation"] for p in self.procs)
        args = ["ip", "netns", "exec", self.net.nodes[host],
                *agent_command(self.args.binary, target.name, twin_addr, self.cluster),
                "--seed", f"{self.net.ips[0]}:{PORT}"]
        started = time.time()
        with open(out_path, "w") as out, open(err_path, "w") as err:
            twin = subprocess.Popen(args, stdout=out, stderr=err, text=True, start_new_session=True,
                                    preexec_fn=_die_with_parent)
            try:
                code = twin.wait(timeout=15)
            except subprocess.TimeoutExpired:
                twin.kill()
                twin.wait()
                code = None
        exited = time.time() - started
        with open(err_path) as f:
            message = f.read().strip()
        twin_events = []
        with open(out_path) as f:
            for line in f:
                try:
                    twin_events.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
        pair = {target.addr, twin_addr}
        twin_reported = any(e.get("event") == "name_conflict" and set(e.get("addrs", [])) == pair
                            for e in twin_events)
        lost = [e for e in twin_events if e.get("event") == "name_lost"]

        # After the twin is gone: the first process keeps the name everywhere, at its address.
        def kept():
            for p in self.procs:
                row = p.row(target.name)
                if row is None or row["status"] != "online" or row["addr"] != target.addr:
                    return False
            return self.converged()

        settled = wait_until(kept, 10)
        time.sleep(2.0)
        incs = sorted({p.row(target.name)["incarnation"] for p in self.procs if p.row(target.name)})
        # Reports by the cluster's processes: the first process's own, observers'.
        reports = {}
        for p in self.procs:
            for e in p.events_since(started - 1.0, "name_conflict"):
                if e["node"] == target.name and set(e["addrs"]) == pair:
                    reports.setdefault(p.name, e["_t"] - started)
        first_report = min(reports.values()) if reports else None
        still = settled is not None and kept() and target.alive()
        ok_exit = code == EXIT_NAME_TAKEN and target.addr in message and "taken" in message
        ok_lost = len(lost) == 1 and lost[0].get("winner") == target.addr
        ok_report = bool(reports) and first_report is not None and first_report <= 5.0
        ok = ok_exit and ok_lost and ok_report and twin_reported and still
        self.record(f"conflict: second process under {target.name} reported, it exits, the first keeps the name", ok,
                    f"twin at {twin_addr} exited with status {code} after {fmt_ms(exited)} "
                    f"(stderr: {message!r}); name_lost {[e.get('winner') for e in lost]}; "
                    f"reported by {sorted(reports)} (first {fmt_ms(first_report) if first_report is not None else 'never'}"
                    f" after the second start; the twin itself: {'yes' if twin_reported else 'no'}); "
                    f"{target.name} online at {target.addr} everywhere: {'yes' if still else 'NO'}; "
                    f"incarnation {before} -> {incs}"
                    + ("" if ok else "\n" + self.view_diff()))
        return ok

    def teardown(self):
        for p in self.procs:
            p.stop()
        self.net.down()

    def main(self):
        checks = self.args.only.split(",") if self.args.only else CHECKS
        started = time.time()
        try:
            if not self.setup():
                return 1
            for name in checks:
                if not self.gate(name):
                    continue
                log(f"== {name}")
                try:
                    getattr(self, f"check_{name}")()
                except Exception as err:  # a broken step fails its check; the others still run
                    self.record(f"{name}: the check itself", False, f"{type(err).__name__}: {err}")
        except (KeyboardInterrupt, SystemExit):
            print("INTERRUPTED: cleaning up namespaces, processes and nftables rules", flush=True)
            raise
        finally:
            self.teardown()
        failed = [r for r in self.results if not r[1]]
        print(self.stream_delay(), flush=True)
        print(f"{'FAIL' if failed else 'PASS'}: {len(self.results) - len(failed)}/{len(self.results)} checks passed "
              f"in {time.time() - started:.0f} s" + (f" (node logs: {self.logdir})" if failed else ""), flush=True)
        if not failed:
            shutil.rmtree(self.logdir, ignore_errors=True)
        return 1 if failed else 0


def prerequisites():
    if os.geteuid() != 0:
        return "needs root (network namespaces and nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found (apt-get install -y iproute2 nftables)"
    probe = f"bchaos-{os.getpid()}-probe"
    res = run("ip", "netns", "add", probe, check=False, quiet=True)
    if res.returncode != 0:
        return f"`ip netns add` does not work here: {res.stderr.strip()}"
    try:
        res = run("ip", "netns", "exec", probe, "nft", "list", "ruleset", check=False, quiet=True)
        if res.returncode != 0:
            return f"nftables does not work in a namespace: {res.stderr.strip()}"
    finally:
        run("ip", "netns", "del", probe, check=False, quiet=True)
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", help="run this agent binary as it is (default: build target/release/beethoven)")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(CHECKS)}")
    parser.add_argument("--kills", type=int, default=3, help="SIGKILL rounds (each on another node)")
    parser.add_argument("--pause", type=float, default=10.0, help="SIGSTOP duration, s")
    parser.add_argument("--partition", type=float, default=30.0, help="partition duration, s")
    parser.add_argument("--heal-timeout", type=float, default=60.0, help="how long to wait for convergence after healing, s")
    parser.add_argument("--heal-bound", type=float, default=2.0,
                        help="the partition check passes only if converged within this many s of the heal")
    parser.add_argument("--loss-time", type=float, default=60.0, help="loss duration, s")
    parser.add_argument("--loss-pct", type=int, default=10)
    args = parser.parse_args()
    if args.nodes < 5:
        parser.error("--nodes must be at least 5")
    if not 0 < args.loss_pct < 100:
        parser.error("--loss-pct must be between 1 and 99")
    if args.only and not set(args.only.split(",")) <= set(CHECKS):
        parser.error(f"--only takes {','.join(CHECKS)}")

    reason = prerequisites()
    if reason:
        if os.environ.get("BEETHOVEN_REQUIRE_ALL_TESTS"):
            print(f"FAIL chaos tests: {reason} (BEETHOVEN_REQUIRE_ALL_TESTS is set: a skip is a failure)",
                  flush=True)
            return 1
        print(f"SKIP chaos tests: {reason}", flush=True)
        return 77
    args.binary = build(args.binary)

    # SIGTERM/SIGHUP unwind like Ctrl-C, so the cleanup in `finally` runs.
    def unwind(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, unwind)
    signal.signal(signal.SIGHUP, unwind)
    return Chaos(args).main()


if __name__ == "__main__":
    sys.exit(main())
