"""Durable state (issue 6, single node): conveyord --data-dir DIR --raft-bind.

Every acknowledged change (a reply received, or an event seen) must be back
after a kill -9 and a restart on the same DIR: registrations, topics, groups
(generation, members, assignment) and committed offsets. Restored services
are `unknown` with a fresh full lease (protocol.md section 3), sessions get
a fresh term, and `seq` continues. Without --data-dir nothing is written and
a restart starts empty.

Real daemons on loopback; every wait is bounded and polls for a condition.

Run with: /usr/bin/python3 -m pytest tests/python/test_durability.py
"""

import glob
import hashlib
import os
import re
import signal
import socket
import subprocess
import threading
import time

import pytest
import zmq

from conftest import (START_TIMEOUT, STOP_TIMEOUT, Client, Daemon, Subscriber,
                      _pick_port, build_argv, now_ms, pack, unpack)

# "data dir DIR: N services and M groups restored, seq S" (single node; a
# clustered build words it "leading (data dir DIR): ...").
RESTORED_RE = re.compile(
    r"data dir (.+?)\)?: (\d+) services and (\d+) groups restored, seq (\d+)")

# A daemon that cannot start must say so and exit 2 within this.
BAD_START_TIMEOUT = 10.0
# Section 3: a lease transition happens within 250 ms of its deadline; 250 ms
# more for a loaded test machine.
LEASE_SLACK = 0.250 + 0.250
LONG_LEASE = 60000      # services that must not change during a test
SHORT_LEASE = 1000      # the lease test (the daemon runs with min-lease 200)
ALIVE_LEASE = 2000      # the one that heartbeats: room for the first heartbeat

# Fields of a service record that a restart keeps (health, revision and
# last_heartbeat_at are checked separately).
KEPT_SERVICE_FIELDS = ("service_id", "service_name", "service_type", "endpoint",
                       "labels", "weight", "group_id", "registered_at", "lease_ms")
KEPT_MEMBER_FIELDS = ("member_id", "service_name", "service_id", "instance_id",
                      "topics", "assignment", "joined_at", "session_timeout_ms")


# --------------------------------------------------------------------------
# A durable node: one data dir and three ports, kept across restarts


def _distinct_ports(n):
    ports = set()
    while len(ports) < n:
        ports.add(_pick_port())
    return list(ports)


class Node:
    """A conveyord with --data-dir, restartable on the same DIR and ports."""

    def __init__(self, base, **opts):
        self.base = str(base)
        self.opts = opts
        self.attempt = 0
        self._pick()
        self.current = None
        self.restored = None    # (services, groups, seq) from the last start
        self.alive = []         # daemons to stop (SIGTERM, exit 0) at teardown

    def _pick(self):
        self.dir = os.path.join(self.base, "data%d" % self.attempt)
        self.listen, self.publish, self.raft = _distinct_ports(3)

    def argv(self):
        return build_argv((), True, listen="tcp://127.0.0.1:%d" % self.listen,
                          publish="tcp://127.0.0.1:%d" % self.publish,
                          data_dir=self.dir, raft_bind="127.0.0.1:%d" % self.raft,
                          **self.opts)

    def start(self):
        """Start on the node's DIR and ports; returns the Daemon once it serves.

        Only the very first start may move to other ports (and a new DIR) if
        a port picked free was taken meanwhile (the daemon then exits 2)."""
        first = self.current is None
        for attempt in range(5 if first else 1):
            d = Daemon(self.argv())
            last = not first or attempt == 4
            if d.wait_ready(fail=last):
                break
            self.attempt += 1
            self._pick()
        self.current = d
        self.alive.append(d)
        # The restore is logged once the log is writable: wait for it.
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            m = None
            for line in list(d.lines):
                m = RESTORED_RE.search(line) or m
            if m or time.monotonic() > deadline or not d.alive():
                break
            time.sleep(0.02)
        assert m, "no 'data dir ... restored' line at start; stderr:\n" + d.stderr()
        assert m.group(1) == self.dir, f"restored line names {m.group(1)!r}, not {self.dir!r}"
        self.restored = tuple(int(m.group(i)) for i in (2, 3, 4))
        return d

    def kill9(self):
        d = self.current
        d.ctx.destroy(linger=0)
        d.proc.kill()
        d.proc.wait(STOP_TIMEOUT)
        d._reader.join(5)
        d.rc = -signal.SIGKILL
        self.alive.remove(d)

    def stop(self):
        d = self.current
        rc = d.stop()
        self.alive.remove(d)
        assert rc == 0, f"SIGTERM: exit {rc!r}; stderr:\n" + d.stderr()

    def teardown(self):
        bad = []
        for d in self.alive:
            rc = d.stop()
            if rc != 0:
                bad.append(f"{d.argv!r} exited {rc!r} on SIGTERM; stderr tail:\n"
                           + "\n".join(d.lines[-20:]))
        self.alive = []
        assert not bad, "\n".join(bad)


@pytest.fixture
def node_factory(tmp_path):
    nodes = []

    def make(**opts):
        n = Node(tmp_path / ("node%d" % len(nodes)), **opts)
        nodes.append(n)
        return n

    yield make
    for n in nodes:
        n.teardown()


# --------------------------------------------------------------------------
# helpers


def reg(client, sid, name="svc", stype="source", lease=LONG_LEASE, **extra):
    fields = dict(service_id=sid, service_name=name, service_type=stype,
                  endpoint="tcp://10.0.0.1:%d" % (5000 + len(sid)), lease_ms=lease)
    fields.update(extra)
    return client.ok("register", **fields)["service"]


def services_by_id(client):
    return {s["service_id"]: s for s in client.ok("list_services")["services"]}


def check_restored_service(before, after, restart_ms, now):
    """A restored record: kept fields equal, health unknown, fresh lease."""
    for k in KEPT_SERVICE_FIELDS:
        assert after[k] == before[k], \
            f"{before['service_id']}: {k} was {before[k]!r}, restored {after[k]!r}"
    assert after["health"] == "unknown", f"restored service not unknown: {after!r}"
    # A health transition counts as a revision (section 3).
    want = before["revision"] + (before["health"] != "unknown")
    assert after["revision"] == want, f"revision {before['revision']} -> {after!r}"
    # Fresh lease: renewed by the restart itself, not carried over.
    assert restart_ms - 50 <= after["last_heartbeat_at"] <= now + 50, \
        (f"{before['service_id']}: last_heartbeat_at {after['last_heartbeat_at']} is not "
         f"within the restart [{restart_ms}, {now}]")


def group_view(group):
    """get_group's record without the soft state (session clocks)."""
    return {
        "group_id": group["group_id"], "generation": group["generation"],
        "assignor": group["assignor"], "topics": group["topics"],
        "members": [{k: m[k] for k in KEPT_MEMBER_FIELDS} for m in group["members"]],
    }


def offsets_map(client, group_id):
    return {(t, p): o for t, p, o in client.ok("fetch_offsets", group_id=group_id)["offsets"]}


def dir_fingerprint(path):
    out = {}
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        with open(full, "rb") as f:
            out[name] = (os.path.getsize(full), hashlib.sha256(f.read()).hexdigest())
    return out


def pipeline(client, requests, window=64, timeout=10.0):
    """Send request maps over one DEALER with up to `window` in flight;
    returns the replies in request order (each must be ok)."""
    replies = [None] * len(requests)
    base = 10 ** 9
    sent = done = 0
    deadline = time.monotonic() + timeout
    while done < len(requests):
        while sent < len(requests) and sent - done < window:
            client.send_map(dict(requests[sent], rid=base + sent))
            sent += 1
        left = deadline - time.monotonic()
        assert left > 0, f"pipeline: {done} of {len(requests)} replies within {timeout} s"
        frames = client.recv_frames(left)
        assert frames is not None, f"pipeline: {done} of {len(requests)} replies in {timeout} s"
        r = unpack(frames[0])
        i = r.get("rid", -1) - base
        assert 0 <= i < len(requests) and replies[i] is None, f"unexpected reply {r!r}"
        assert r.get("ok") is True, f"{requests[i]!r} failed: {r!r}"
        replies[i] = r
        done += 1
    return replies


# --------------------------------------------------------------------------
# 1. A restart keeps everything acknowledged


def test_restart_keeps_everything_acknowledged(node_factory):
    node = node_factory()
    d = node.start()
    assert node.restored == (0, 0, 0), f"a fresh DIR restored something: {node.restored}"
    c = d.client()
    sub = d.subscriber("")
    sub.sync()

    # Registrations: labels, weights, group_id, an upsert, a removal.
    reg(c, "svc-a", name="ingest", labels={"zone": "eu-1", "tier": "gold"}, weight=7,
        group_id="g1")
    reg(c, "svc-b", name="ingest", stype="transform", labels={"zone": "us-2"}, weight=0)
    reg(c, "svc-c", name="store", stype="sink", group_id="g2", weight=1000000)
    reg(c, "svc-c", name="store", stype="sink", group_id="g2", weight=3,
        labels={"v": "2"})                                          # upsert: revision 2
    reg(c, "svc-gone", name="tmp")
    c.ok("deregister", service_id="svc-gone")
    c.ok("heartbeat", service_id="svc-b", health="degraded")

    # Topics: one grown after creation, one auto-created by a join.
    c.ok("create_topic", topic="orders", partitions=4)
    c.ok("create_topic", topic="orders", partitions=6)
    c.ok("create_topic", topic="audit", partitions=3)

    # A group of 3: one member linked to a service, one static, one plain.
    c.ok("join_group", group_id="g1", member_id="m-linked", topics=["orders", "audit"],
         service_id="svc-a", service_name="ingest")
    c.ok("join_group", group_id="g1", member_id="m-static", topics=["orders", "audit"],
         instance_id="inst-1")
    c.ok("join_group", group_id="g1", member_id="m-plain", topics=["orders", "auto-t"])
    g1 = c.ok("get_group", group_id="g1")["group"]
    gen = g1["generation"]
    assert len(g1["members"]) == 3
    for m in g1["members"]:
        c.ok("group_heartbeat", group_id="g1", member_id=m["member_id"], generation=gen)
        offs = [[t, p, 1000 * (i + 1) + p] for i, (t, p) in enumerate(m["assignment"])]
        c.ok("commit_offsets", group_id="g1", member_id=m["member_id"], generation=gen,
             offsets=offs)
        # A second commit moves them on: the last one must win.
        offs = [[t, p, o + 1] for t, p, o in offs]
        c.ok("commit_offsets", group_id="g1", member_id=m["member_id"], generation=gen,
             offsets=offs)
    # An empty group keeps its generation and offsets (section 5).
    j = c.ok("join_group", group_id="g-empty", member_id="e1", topics=["audit"],
             assignor="range")
    c.ok("commit_offsets", group_id="g-empty", member_id="e1", generation=j["generation"],
         offsets=[["audit", 0, 5], ["audit", 2, 0]])
    c.ok("leave_group", group_id="g-empty", member_id="e1")

    # Short leases last, so they are still healthy at the kill.
    reg(c, "short-silent", name="short", lease=SHORT_LEASE)
    reg(c, "short-alive", name="short", lease=ALIVE_LEASE)

    before_services = services_by_id(c)
    before_topics = c.ok("list_topics")["topics"]
    before_groups = {g: group_view(c.ok("get_group", group_id=g)["group"])
                     for g in ("g1", "g-empty")}
    before_offsets = {g: offsets_map(c, g) for g in ("g1", "g-empty")}
    assert len(before_offsets["g1"]) == 6 + 3 + 12
    seq_before = c.ok("stats")["seq"]
    sub.wait(lambda: sub.events and sub.events[-1].body["seq"] == seq_before,
             what=f"the event of seq {seq_before}")
    seen_events = list(sub.events)
    seen = [e.body["seq"] for e in seen_events]
    assert seen == list(range(1, seq_before + 1)), f"event seqs before the crash: {seen}"

    # kill -9, restart on the same DIR and ports.
    node.kill9()
    restart_ms = now_ms()
    d = node.start()
    c = d.client()
    assert not [x for x in d.lines if x.startswith("E:")], d.stderr()
    # Read the restored state and the restart's events at once (short-alive
    # must get its heartbeat well within its 1 s lease).
    after_services = services_by_id(c)
    restart_events = c.ok("events_since", since=seq_before)
    now = now_ms()
    sub = d.subscriber("")
    stop_hb = threading.Event()
    hb = Heartbeater(d.ctx, d.requests, "short-alive", stop_hb)
    hb.start()
    try:
        _check_after_restart(c, sub, node, before_services, before_topics, before_groups,
                             before_offsets, after_services, restart_events, seen_events,
                             seq_before, gen, restart_ms, now)
    finally:
        stop_hb.set()
        hb.join(5)
    assert hb.error is None, hb.error
    assert hb.replies and all(r == "healthy" for r in hb.replies), hb.replies


class Heartbeater(threading.Thread):
    """Heartbeats one service every 200 ms on its own DEALER until stopped."""

    def __init__(self, ctx, endpoint, service_id, stop):
        super().__init__(daemon=True)
        self.ctx, self.endpoint, self.sid, self.stop = ctx, endpoint, service_id, stop
        self.replies = []
        self.error = None

    def run(self):
        c = Client(self.ctx, self.endpoint)
        try:
            while True:
                self.replies.append(c.ok("heartbeat", service_id=self.sid)["health"])
                if self.stop.wait(0.2):
                    break
        except BaseException as e:      # reported by the test
            self.error = e
        finally:
            c.close()


def _root(topic):
    return "/".join(topic.split("/")[:2])


def _check_after_restart(c, sub, node, before_services, before_topics, before_groups,
                         before_offsets, after_services, restart_events, seen_events,
                         seq_before, gen, restart_ms, now):
    # Services: every one back, field for field; unknown with a fresh lease.
    assert set(after_services) == set(before_services), \
        f"services {sorted(before_services)} came back as {sorted(after_services)}"
    for sid, before in before_services.items():
        check_restored_service(before, after_services[sid], restart_ms, now)
    for sid in before_services:
        if not sid.startswith("short-"):
            assert c.ok("get_service", service_id=sid)["service"] == after_services[sid]
    c.err("get_service", "NOT_FOUND", service_id="svc-gone")

    # seq continues: the restart published one `health` event per restored
    # service (all were healthy or degraded), numbered right after the last
    # one before the crash, and nothing else (no rebalance).
    n = len(before_services)
    evs = restart_events["events"]
    assert [b["seq"] for _, b in evs[:n]] == list(range(seq_before + 1, seq_before + n + 1)), \
        f"events after {seq_before}: {evs!r}"
    assert {b["service"]["service_id"] for _, b in evs[:n]} == set(before_services)
    for topic, body in evs[:n]:
        assert body["type"] == "health" and body["service"]["health"] == "unknown", body
        assert topic == "service/%s/health" % body["service"]["service_name"]
    assert restart_events["seq"] >= seq_before + n
    # The logged seq: the last one before the crash, or after the restart's
    # own events.
    assert seq_before <= node.restored[2] <= seq_before + n, (node.restored, seq_before)
    assert c.ok("hello")["seq"] >= seq_before + n

    # Topics, groups, offsets.
    assert c.ok("list_topics")["topics"] == before_topics
    assert before_topics == {"orders": 6, "audit": 3, "auto-t": 12}
    for g, view in before_groups.items():
        got = c.ok("get_group", group_id=g)["group"]
        assert group_view(got) == view, f"group {g} before {view!r}, restored {got!r}"
        for m in got["members"]:        # a fresh session term
            assert restart_ms - 50 <= m["last_heartbeat_at"] <= now + 50, m
    listed = {x["group_id"]: x for x in c.ok("list_groups")["groups"]}
    assert listed == {"g1": {"group_id": "g1", "generation": gen, "members": 3},
                      "g-empty": {"group_id": "g-empty",
                                  "generation": before_groups["g-empty"]["generation"],
                                  "members": 0}}
    for g, offs in before_offsets.items():
        assert offsets_map(c, g) == offs, f"offsets of {g}"
    asked = [["orders", 0], ["audit", 1], ["nope", 0]]
    got = c.ok("fetch_offsets", group_id="g-empty", partitions=asked)["offsets"]
    assert got == [["orders", 0, -1], ["audit", 1, -1], ["nope", 0, -1]]

    # The restore line and stats agree.
    stats = c.ok("stats")
    assert node.restored[:2] == (n, 2), node.restored
    assert (stats["groups"], stats["members"], stats["topics"]) == (2, 3, 3), stats

    # The old generation still works: the restart made no rebalance.
    for m in before_groups["g1"]["members"]:
        hb = c.ok("group_heartbeat", group_id="g1", member_id=m["member_id"], generation=gen)
        assert hb["generation"] == gen and "assignment" not in hb, hb
    m0 = before_groups["g1"]["members"][0]
    t, p = m0["assignment"][0]
    c.ok("commit_offsets", group_id="g1", member_id=m0["member_id"], generation=gen,
         offsets=[[t, p, 99999]])
    assert offsets_map(c, "g1")[(t, p)] == 99999

    # New events after the restart.
    sub.sync()
    reg(c, "svc-new", name="fresh")
    sub.wait_for(lambda e: e.topic == "service/fresh/registered")
    reg(c, "svc-a2", name="ingest")
    sub.wait_for(lambda e: e.topic == "service/ingest/registered")

    # Leases: restored with a fresh full one. short-silent goes unhealthy
    # after one lease and expires after two; short-alive (heartbeating in
    # the background) stays healthy.
    t0 = after_services["short-silent"]["last_heartbeat_at"] / 1000.0
    got = {}

    def silent_done():
        for e in sub.events:
            b = e.body
            if b.get("service", {}).get("service_id") == "short-silent" \
                    and b["type"] in ("health", "expired"):
                got.setdefault(b["type"] if b["type"] == "expired"
                               else b["service"]["health"], b)
        return "expired" in got

    sub.wait(silent_done, 2 * SHORT_LEASE / 1000.0 + 2.0, "short-silent to expire")
    assert "unhealthy" in got, f"short-silent expired without going unhealthy: {got!r}"
    lease = SHORT_LEASE / 1000.0
    unhealthy_in = got["unhealthy"]["at"] / 1000.0 - t0
    expired_in = got["expired"]["at"] / 1000.0 - t0
    assert lease - 0.02 <= unhealthy_in <= lease + LEASE_SLACK, unhealthy_in
    assert 2 * lease - 0.02 <= expired_in <= 2 * lease + LEASE_SLACK, expired_in
    alive = c.ok("get_service", service_id="short-alive")["service"]
    assert alive["health"] == "healthy", alive
    # The long-lease services are still there, still unknown.
    assert c.ok("get_service", service_id="svc-c")["service"]["health"] == "unknown"

    # Every event since the crash, in order: seq grows by exactly one from
    # the last one before it (none reused), each root's prev chains on from
    # its last event before the crash, and the subscriber saw the same.
    all_after = []
    since = seq_before
    while True:
        r = c.ok("events_since", since=since)
        all_after += r["events"]
        if not r["more"]:
            break
        since = r["events"][-1][1]["seq"]
    seqs = [b["seq"] for _, b in all_after]
    assert seqs == list(range(seq_before + 1, seq_before + 1 + len(seqs))), seqs
    last = {}
    for e in seen_events:
        last[_root(e.topic)] = e.body["seq"]
    for topic, body in all_after:
        assert body["prev"] == last.get(_root(topic), 0), (topic, body, last)
        last[_root(topic)] = body["seq"]
    by_seq = {b["seq"]: (t, b) for t, b in all_after}
    for e in sub.events:
        assert by_seq.get(e.body["seq"]) == (e.topic, e.body), e
    # History from before the crash: what the log replayed is exactly what
    # was published then; what it no longer has is COMPACTED, not renumbered.
    r = c.call("events_since", since=0, limit=seq_before)
    if r.get("ok"):
        before = [(t, b) for t, b in r["events"]]
        assert before == [(e.topic, e.body) for e in seen_events], before
    else:
        assert r.get("error") == "COMPACTED" and r["oldest"] >= 1, r
    kinds = [(t, b["type"], b["service"]["service_id"]) for t, b in all_after[n:]]
    for k in kinds:     # nothing but what this test did, and the leases
        assert k[2] in ("short-silent", "short-alive", "svc-new", "svc-a2"), kinds
    alive_events = [b["service"]["health"] for t, b in all_after
                    if b["service"]["service_id"] == "short-alive"]
    assert alive_events == ["unknown", "healthy"], alive_events


# --------------------------------------------------------------------------
# 2. Under load: kill -9 mid-load loses nothing acknowledged


LOAD_PARTITIONS = 8


class Loader(threading.Thread):
    """One DEALER pipelining requests; records what was acknowledged."""

    def __init__(self, ctx, endpoint, make, window):
        super().__init__(daemon=True)
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.make = make            # i -> request map (without rid)
        self.window = window
        self.sent = {}              # rid -> request
        self.acked = []             # requests answered ok
        self.failed = []            # replies not ok
        self.stop = threading.Event()
        self.error = None

    def run(self):
        try:
            self._run()
        except Exception as e:      # reported by the test
            self.error = e
        finally:
            self.sock.close(0)

    def _run(self):
        i = 0
        quiet_since = None
        while True:
            stopping = self.stop.is_set()
            while not stopping and len(self.sent) < self.window:
                req = self.make(i)
                try:
                    self.sock.send(pack(dict(req, rid=i)), zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.sent[i] = req
                i += 1
            if self.sock.poll(50, zmq.POLLIN):
                quiet_since = None
                while True:
                    try:
                        r = unpack(self.sock.recv(zmq.NOBLOCK))
                    except zmq.Again:
                        break
                    req = self.sent.pop(r.get("rid"))
                    (self.acked if r.get("ok") is True else self.failed).append((req, r))
            elif stopping:
                # After the kill: collect what had already arrived, then end.
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since > 0.3:
                    return


def test_kill_mid_load_loses_nothing_acknowledged(node_factory):
    node = node_factory()
    d = node.start()
    c = d.client()
    c.ok("create_topic", topic="load", partitions=LOAD_PARTITIONS)
    j = c.ok("join_group", group_id="lg", member_id="lm", topics=["load"])
    gen = j["generation"]
    assert len(j["assignment"]) == LOAD_PARTITIONS

    def registrar(t):
        return lambda i: {"op": "register", "service_id": "load-%d-%d" % (t, i),
                          "service_name": "load%d" % (i % 5), "service_type": "sink",
                          "endpoint": "tcp://10.1.%d.%d:1" % (t, i % 250),
                          "labels": {"i": str(i)}, "lease_ms": LONG_LEASE}

    def committer(i):
        # Offset i on partition i % P: monotonically increasing per partition.
        return {"op": "commit_offsets", "group_id": "lg", "member_id": "lm",
                "generation": gen, "offsets": [["load", i % LOAD_PARTITIONS, i]]}

    # Everything the test talks to the doomed daemon with lives in its own
    # context, so the kill does not close it under the threads.
    ctx = zmq.Context()
    sub = Subscriber(ctx, d.events, "service/")
    sub.sync()
    loaders = [Loader(ctx, d.requests, registrar(0), 128),
               Loader(ctx, d.requests, registrar(1), 64),
               Loader(ctx, d.requests, committer, 64)]
    try:
        started = time.monotonic()
        for ld in loaders:
            ld.start()
        # Let it run ~1.5 s with every thread acknowledged many times, then
        # kill -9 while requests are still in flight.
        deadline = started + 15.0
        while not (time.monotonic() - started >= 1.5
                   and all(len(ld.acked) >= 200 for ld in loaders)):
            assert time.monotonic() < deadline, \
                f"load too slow: acks {[len(ld.acked) for ld in loaders]}"
            assert all(ld.is_alive() for ld in loaders), [ld.error for ld in loaders]
            sub._pump(0.05)
        # (a thread may be between its replies and its next sends)
        assert any(ld.sent for ld in loaders), "nothing in flight at the kill"
        node.kill9()
        sub.drain()
        for ld in loaders:
            ld.stop.set()
        for ld in loaders:
            ld.join(10)
            assert not ld.is_alive(), "a load thread did not stop"
            assert ld.error is None, ld.error
            assert not ld.failed, ld.failed[:3]
    finally:
        for ld in loaders:
            ld.stop.set()
        for ld in loaders:
            ld.join(10)
        ctx.destroy(linger=0)

    regs_acked = {r["service_id"]: r for ld in loaders[:2] for r, _ in ld.acked}
    regs_sent = {r["service_id"]: r for ld in loaders[:2]
                 for r in list(ld.sent.values()) + [r for r, _ in ld.acked]}
    events_seen = {e.body["service"]["service_id"] for e in sub.events
                   if e.body["type"] == "registered"}
    best = {}
    for r, _ in loaders[2].acked:
        _, p, o = r["offsets"][0]
        best[p] = max(best.get(p, -1), o)
    sent_offsets = {}
    for r in list(loaders[2].sent.values()) + [r for r, _ in loaders[2].acked]:
        _, p, o = r["offsets"][0]
        sent_offsets.setdefault(p, set()).add(o)
    seq_seen = max((e.body["seq"] for e in sub.events), default=0)

    d = node.start()
    c = d.client()
    after = services_by_id(c)
    missing = sorted(set(regs_acked) - set(after))
    assert not missing, f"{len(missing)} acknowledged registrations lost, e.g. {missing[:5]}"
    missing = sorted(events_seen - set(after))
    assert not missing, f"{len(missing)} published registrations lost, e.g. {missing[:5]}"
    invented = sorted(set(after) - set(regs_sent))
    assert not invented, f"services never sent: {invented[:5]}"
    for sid, s in after.items():
        want = regs_sent[sid]
        assert (s["service_name"], s["endpoint"], s["labels"], s["lease_ms"]) == \
            (want["service_name"], want["endpoint"], want["labels"], LONG_LEASE), s
    assert node.restored[0] == len(after)

    offs = offsets_map(c, "lg")
    for p, o in best.items():
        assert offs.get(("load", p), -1) >= o, \
            f"partition {p}: acknowledged offset {o}, restored {offs.get(('load', p))}"
        assert offs[("load", p)] in sent_offsets[p], f"partition {p}: offset never sent"
    assert len(best) == LOAD_PARTITIONS

    # The group is as it was; its member carries on at the same generation.
    g = c.ok("get_group", group_id="lg")["group"]
    assert g["generation"] == gen and [m["member_id"] for m in g["members"]] == ["lm"]
    top = max(sent_offsets[0]) + LOAD_PARTITIONS
    c.ok("commit_offsets", group_id="lg", member_id="lm", generation=gen,
         offsets=[["load", 0, top]])
    assert offsets_map(c, "lg")[("load", 0)] == top
    hello = c.ok("hello")
    assert hello["seq"] >= seq_seen + len(after), (hello["seq"], seq_seen, len(after))
    print(f"acknowledged: {len(regs_acked)} registrations, "
          f"{len(loaders[2].acked)} commits; restored {len(after)} services")


# --------------------------------------------------------------------------
# 3. Snapshots bound the log; restarts from them (twice in a row)


def snapshot_files(path):
    return sorted(os.path.basename(f) for f in glob.glob(os.path.join(path, "snapshot-*")))


def wait_snapshot(path, timeout=5.0):
    """Waits (bounded) until libraft has written a snapshot in path."""
    deadline = time.monotonic() + timeout
    while not snapshot_files(path):
        assert time.monotonic() < deadline, f"no snapshot in {os.listdir(path)}"
        time.sleep(0.05)


def full_state(c):
    services = {}
    for sid, s in services_by_id(c).items():
        services[sid] = {k: s[k] for k in KEPT_SERVICE_FIELDS}
    groups = {g["group_id"]: group_view(c.ok("get_group", group_id=g["group_id"])["group"])
              for g in c.ok("list_groups")["groups"]}
    offsets = {g: offsets_map(c, g) for g in groups}
    return {"services": services, "topics": c.ok("list_topics")["topics"],
            "groups": groups, "offsets": offsets}


def test_snapshots_and_repeated_restarts(node_factory):
    node = node_factory(snapshot_threshold=32, snapshot_trailing=8)
    d = node.start()
    c = d.client()
    c.ok("create_topic", topic="snap", partitions=16)
    members = ["sm%d" % i for i in range(4)]
    for m in members:
        c.ok("join_group", group_id="sg", member_id=m, topics=["snap"])
    g = c.ok("get_group", group_id="sg")["group"]
    gen = g["generation"]
    owner = {p: m["member_id"] for m in g["members"] for _, p in m["assignment"]}

    # A few thousand commands, pipelined (so batched: several per entry)
    # with a small window, so that there are far more than 32 entries.
    reqs = []
    for i in range(2400):
        reqs.append({"op": "register", "service_id": "snap-%d" % (i % 1500),
                     "service_name": "snap%d" % (i % 7), "service_type": "source",
                     "endpoint": "tcp://10.2.0.1:%d" % i, "weight": i % 1000,
                     "lease_ms": LONG_LEASE})
        if i % 3 == 0:
            p = i % 16
            reqs.append({"op": "commit_offsets", "group_id": "sg", "member_id": owner[p],
                         "generation": gen, "offsets": [["snap", p, i]]})
        if i % 10 == 0:
            reqs.append({"op": "deregister", "service_id": "snap-%d" % (i // 2)})
    pipeline(c, reqs, window=16, timeout=30.0)
    want = full_state(c)
    assert len(want["services"]) > 1000
    seq = c.ok("hello")["seq"]

    # libraft writes its snapshots as snapshot-<term>-<index>-<time>[.meta].
    wait_snapshot(node.dir)

    # kill -9, restart: state intact.
    node.kill9()
    d = node.start()
    c = d.client()
    assert full_state(c) == want
    n = len(want["services"])
    assert node.restored[:2] == (n, 1) and seq <= node.restored[2] <= seq + n, \
        (node.restored, n, seq)
    assert c.ok("hello")["seq"] == seq + n
    for s in c.ok("list_services")["services"]:
        assert s["health"] == "unknown"

    # More changes after the snapshot, then kill -9 again and restart.
    c.ok("heartbeat", service_id="snap-1")                  # unknown -> healthy
    c.ok("deregister", service_id="snap-2")
    reg(c, "after-snap", name="later", labels={"x": "y"})
    c.ok("commit_offsets", group_id="sg", member_id=owner[5], generation=gen,
         offsets=[["snap", 5, 10 ** 9]])
    want = full_state(c)
    seq = c.ok("hello")["seq"]
    node.kill9()
    d = node.start()
    c = d.client()
    assert full_state(c) == want
    n = len(want["services"])
    # Only the services not already unknown make a health event:
    # snap-1 (heartbeated) and after-snap (new).
    assert node.restored[:2] == (n, 1) and seq <= node.restored[2] <= seq + 2, \
        (node.restored, n, seq)
    assert c.ok("hello")["seq"] == seq + 2

    # And once more at once, this time a clean stop: nothing changes.
    node.stop()
    d = node.start()
    c = d.client()
    assert full_state(c) == want
    assert node.restored == (n, 1, seq + 2), node.restored
    assert c.ok("hello")["seq"] == seq + 2
    # The member still commits at its generation: no rebalance from any restart.
    c.ok("commit_offsets", group_id="sg", member_id=owner[0], generation=gen,
         offsets=[["snap", 0, 10 ** 9 + 1]])
    assert snapshot_files(node.dir)


def test_restart_from_snapshot_logs_no_error(node_factory):
    """Entries replayed after a snapshot are not errors (once one line per
    replayed event: 'committed event N does not follow 0; not published')."""
    node = node_factory(snapshot_threshold=32, snapshot_trailing=8)
    d = node.start()
    c = d.client()
    for i in range(50):         # lock-step: about one entry each
        reg(c, "e-%d" % i, name="e")
    wait_snapshot(node.dir)
    node.kill9()
    d = node.start()
    assert len(services_by_id(d.client())) == 50
    errors = [x for x in d.lines if x.startswith("E:")]
    assert not errors, f"{len(errors)} error lines on a restart, e.g. {errors[:2]}"


# --------------------------------------------------------------------------
# 4. A data dir or raft address that cannot be used: exit 2, nothing changes


def run_bad(argv):
    """Run a daemon expected to refuse to start; returns (rc, stderr lines)."""
    t = time.monotonic()
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=BAD_START_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{argv!r} still running after {BAD_START_TIMEOUT} s")
    lines = [x for x in p.stderr.decode("utf-8", "replace").splitlines() if x.strip()]
    return p.returncode, lines, time.monotonic() - t


def bad_argv(data_dir, raft_port):
    return build_argv((), True, listen="tcp://127.0.0.1:%d" % _pick_port(),
                      publish="tcp://127.0.0.1:%d" % _pick_port(),
                      data_dir=data_dir, raft_bind="127.0.0.1:%d" % raft_port)


def _listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


def _bad_case(kind, tmp_path, node_factory):
    """Set up one bad start; returns (argv, check_unchanged, what the
    message must name)."""
    if kind == "regular file":
        path = tmp_path / "a-file"
        path.write_bytes(b"not a directory\n")
        return bad_argv(str(path), _pick_port()), \
            lambda: path.read_bytes() == b"not a directory\n" and \
            os.listdir(tmp_path) == ["a-file"], str(path)
    if kind == "path under a file":
        path = tmp_path / "a-file"
        path.write_bytes(b"x")
        return bad_argv(str(path / "data"), _pick_port()), \
            lambda: path.read_bytes() == b"x" and os.listdir(tmp_path) == ["a-file"], \
            str(path / "data")
    if kind == "unwritable path":
        # /proc takes no new directories, not even from root.
        path = "/proc/conveyor-test-%d/data" % os.getpid()
        return bad_argv(path, _pick_port()), lambda: not os.path.exists(path), path
    if kind == "raft port in use, existing dir":
        node = node_factory()
        d = node.start()
        reg(d.client(), "kept", name="kept")
        node.stop()
        before = dir_fingerprint(node.dir)
        holder = _listener()
        port = holder.getsockname()[1]

        def unchanged():
            try:
                return dir_fingerprint(node.dir) == before
            finally:
                holder.close()
        return bad_argv(node.dir, port), unchanged, str(port)
    raise AssertionError(kind)


BAD_CASES = ["regular file", "path under a file", "unwritable path",
             "raft port in use, existing dir"]


@pytest.mark.parametrize("kind", BAD_CASES)
def test_bad_data_dir_or_raft_port_exits_2_and_changes_nothing(kind, tmp_path, node_factory):
    argv, unchanged, names = _bad_case(kind, tmp_path, node_factory)
    rc, lines, took = run_bad(argv)
    assert rc == 2, f"exit {rc}, stderr: {lines!r}"
    assert lines, "no message on stderr"
    assert any(names in x for x in lines), f"no line names {names!r}: {lines!r}"
    assert not any("serving requests" in x for x in lines), lines
    assert unchanged(), "the failed start changed something"


def test_raft_port_in_use_on_fresh_dir_exits_2_then_starts_elsewhere(tmp_path, node_factory):
    holder = _listener()
    port = holder.getsockname()[1]
    try:
        path = str(tmp_path / "fresh")
        rc, lines, _ = run_bad(bad_argv(path, port))
        assert rc == 2, f"exit {rc}, stderr: {lines!r}"
        assert any(str(port) in x for x in lines), lines
    finally:
        holder.close()
    # Whatever the failed start left there, a start on a free port works and
    # holds nothing.
    node = node_factory()
    node.dir = path
    d = node.start()
    assert node.restored == (0, 0, 0), node.restored
    assert d.client().ok("list_services")["services"] == []


@pytest.mark.parametrize("kind", BAD_CASES)
def test_bad_start_names_the_cause(kind, tmp_path, node_factory):
    argv, unchanged, names = _bad_case(kind, tmp_path, node_factory)
    rc, lines, _ = run_bad(argv)
    unchanged()
    assert rc == 2
    cause = {"regular file": "not a directory", "path under a file": "not a directory",
             "unwritable path": "no such file",
             "raft port in use, existing dir": "in use"}[kind]
    text = "\n".join(lines).lower()
    assert cause in text, f"the message does not say {cause!r}: {lines!r}"


@pytest.mark.parametrize("kind", BAD_CASES)
def test_bad_start_message_is_one_line(kind, tmp_path, node_factory):
    """Section 9: exit 2 with a one-line message."""
    argv, unchanged, names = _bad_case(kind, tmp_path, node_factory)
    rc, lines, _ = run_bad(argv)
    unchanged()
    assert rc == 2
    assert len(lines) == 1, f"{len(lines)} lines instead of one: {lines!r}"


def test_second_daemon_on_a_dir_in_use_is_refused(node_factory):
    node = node_factory()
    d = node.start()
    c = d.client()
    reg(c, "first", name="lock")
    listen, publish, raft = _distinct_ports(3)
    argv = build_argv((), True, listen="tcp://127.0.0.1:%d" % listen,
                      publish="tcp://127.0.0.1:%d" % publish, data_dir=node.dir,
                      raft_bind="127.0.0.1:%d" % raft)
    other = Daemon(argv)
    node.alive.append(other)            # stopped at teardown if it runs
    served = other.wait_ready(fail=False)
    if served:
        other.stop()
    node.alive.remove(other)
    assert not served, "a second daemon serves on a DIR in use:\n" + other.stderr()
    assert other.rc == 2, f"exit {other.rc!r}: " + other.stderr()
    # The first one is unaffected, and so is its DIR.
    reg(c, "second", name="lock")
    node.kill9()
    d = node.start()
    assert set(services_by_id(d.client())) == {"first", "second"}


# --------------------------------------------------------------------------
# 5. Without --data-dir: memory only, nothing written


def _listening_ports(pid):
    """TCP ports a process listens on (its socket inodes in /proc/net/tcp*)."""
    inodes = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.read().splitlines()[1:]:
                cols = row.split()
                if cols[3] == "0A" and cols[9] in inodes:     # LISTEN
                    ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def _open_files(pid):
    out = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("/") and not target.startswith(("/dev/", "/proc/")):
            out.append(target)
    return out


def test_without_data_dir_nothing_is_written_and_restart_is_empty(tmp_path):
    listen, publish = _distinct_ports(2)
    argv = build_argv((), True, listen="tcp://127.0.0.1:%d" % listen,
                      publish="tcp://127.0.0.1:%d" % publish)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    started = []

    def start():
        here = os.getcwd()
        os.chdir(cwd)               # the daemon's working directory
        try:
            d = Daemon(argv)
        finally:
            os.chdir(here)
        started.append(d)
        d.wait_ready()
        return d

    try:
        d = start()
        assert not [x for x in d.lines if "data dir" in x], d.lines
        c = d.client()
        reg(c, "mem-1", name="mem", labels={"a": "b"})
        c.ok("create_topic", topic="mt", partitions=2)
        j = c.ok("join_group", group_id="mg", member_id="mm", topics=["mt"])
        c.ok("commit_offsets", group_id="mg", member_id="mm", generation=j["generation"],
             offsets=[["mt", 0, 7]])
        assert c.ok("stats")["seq"] > 0
        # No raft engine: it listens on its two endpoints only, and holds no
        # file open but its binary's libraries.
        assert _listening_ports(d.proc.pid) == {listen, publish}
        opened = _open_files(d.proc.pid)
        assert not opened, f"an in-memory daemon holds files open: {opened}"

        d.ctx.destroy(linger=0)
        d.proc.kill()
        d.proc.wait(STOP_TIMEOUT)
        d.rc = 0

        d = start()
        c = d.client()
        assert c.ok("list_services")["services"] == []
        assert c.ok("list_topics")["topics"] == {}
        assert c.ok("list_groups")["groups"] == []
        c.err("get_group", "NOT_FOUND", group_id="mg")
        stats = c.ok("stats")
        assert (stats["seq"], stats["services"], stats["groups"]) == (0, 0, 0), stats
        assert os.listdir(cwd) == [], f"files written: {os.listdir(cwd)}"
    finally:
        for d in started:
            rc = d.stop()
            assert rc == 0, f"exit {rc!r}"
