"""Replicated cluster (issue 6): three conveyord nodes with --peers.

    conveyord --data-dir DIR_i --node-id i --peers 1=127.0.0.1:R1,2=...,3=...
              --listen tcp://127.0.0.1:L_i --publish tcp://127.0.0.1:E_i
              --election-timeout-ms 300

The raft leader serves every op; a follower answers hello, stats,
events_since and cluster_status itself and everything else NOT_LEADER with
`leader` = the leader's request endpoint (nil while electing). Every node
applies the same log and publishes the same events with the same seq. A new
leader takes over the committed state, marks every service `unknown` with a
fresh full lease and renews every group session, so nothing expires
because of a failover.

Covered here, with real processes on loopback:
  1. election and redirects (cluster_status, NOT_LEADER, hello.leader);
  2. the same events, same seq, on every node's PUB;
  3. kill -9 of the leader under load from client threads: failover time,
     nothing acknowledged lost, nothing expired, only retried errors;
  4. the killed node restarted on its data dir catches up;
  -  the takeover's fresh leases and sessions count from the takeover
     (the lapse and expiries after a failover come one lease later);
  5. kill -9 of all three and a restart: the whole state is back;
  6. membership: a fourth node joins (cluster_add), catches up, leaves
     (cluster_remove), and the removed node does not disturb the three.
A follower's stats describe the cluster's committed state.

The server deduplicates retried writes only when they carry a client_id
(tests/python/test_dedup.py); these clients send none, so the only requests
retried here are idempotent ones: register, heartbeat, group_heartbeat,
commit_offsets with the same offsets, a join_group naming its member_id.

Every wait is bounded and polls for a condition; the few short pauses are
back-offs inside bounded retry loops.

Run with: /usr/bin/python3 -m pytest -s tests/python/test_cluster.py
(-s shows the measured failover time).
"""

import itertools
import os
import shutil
import signal
import threading
import time

import pytest
import zmq

from conftest import (REPLY_TIMEOUT, STOP_TIMEOUT, Client, Daemon,
                      Subscriber, _pick_port, build_argv, pack, unpack)

ELECTION_MS = 300
# A new leader serves within this after a kill -9. One election takes one
# to two election timeouts (libraft randomises it), but a Raft election can
# split: both survivors stand at once, and each split costs up to two more.
# CI's sanitizer stage, two suites at a time on two cores, once needed three
# elections (2.16 s); the bound allows for splits, not for a stuck failover.
FAILOVER_BOUND = 10 * ELECTION_MS / 1000
# The failover probe's wait on one node. A probe sent to a node that is
# deposed before it commits is never answered: waiting ATTEMPT_TIMEOUT would
# count the probe's own wait as failover time.
PROBE_TIMEOUT = 0.5
CONVERGE_TIMEOUT = 15.0     # bound on a cluster settling (leader known, nodes caught up)
ATTEMPT_TIMEOUT = 1.0       # the cluster client's bound on one attempt
CALL_DEADLINE = 15.0        # ... and on one call, retries included
SUSPECT_S = 0.5             # a node that timed out is not redirected to for this long

LOAD_LEASE_MS = 1500        # load services: heartbeated every round (~0.1 s)
LOAD_SESSION_MS = 1500      # load members: group_heartbeat every round
LONG_LEASE_MS = 60000       # services that must not change during a test

# Fields of a service record that a restart or a failover keeps.
KEPT_SERVICE_FIELDS = ("service_id", "service_name", "service_type", "endpoint",
                       "labels", "weight", "group_id", "registered_at", "lease_ms")
KEPT_MEMBER_FIELDS = ("member_id", "service_name", "service_id", "instance_id",
                      "topics", "assignment", "joined_at", "session_timeout_ms")


def wait_until(cond, timeout, what, step=0.02, pump=()):
    """Poll cond() until it returns something true; fail after timeout.
    Subscribers in pump are drained while waiting."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        pump_all(pump, step)


def pump_all(subs, timeout=0.0):
    """Drain every subscriber; waits up to timeout when none has anything."""
    if not subs:
        if timeout:
            time.sleep(timeout)     # a back-off step inside a bounded loop
        return
    poller = zmq.Poller()
    for s in subs:
        poller.register(s.sock, zmq.POLLIN)
    poller.poll(int(timeout * 1000))
    for s in subs:
        s.drain()


# --------------------------------------------------------------------------
# The cluster client: follows NOT_LEADER, retries the next node on timeout


class ClusterClient:
    """Sends each request to the node it believes leads. NOT_LEADER with a
    `leader` moves it there; NOT_LEADER without one (electing) backs off and
    tries the next node; a timeout drops that node's socket (so nothing
    queued on it is delivered later, e.g. to a restarted node) and tries the
    next node. Give it idempotent requests only: the server does not
    deduplicate retries yet."""

    _rids = itertools.count(1)

    def __init__(self, ctx, endpoints, attempt_timeout=ATTEMPT_TIMEOUT,
                 deadline=CALL_DEADLINE):
        self.ctx = ctx
        self.endpoints = list(endpoints)
        self.target = self.endpoints[0]
        self.attempt_timeout = attempt_timeout
        self.deadline = deadline
        self.socks = {}
        self.suspect = {}       # endpoint -> monotonic time it is avoided until
        self.redirects = 0      # NOT_LEADER naming a leader
        self.electing = 0       # NOT_LEADER while electing (no leader named)
        self.timeouts = 0       # attempts without a reply
        self.retries = []       # (monotonic time, op, endpoint, what)

    def _sock(self, ep):
        sock = self.socks.get(ep)
        if sock is None:
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(ep)
            self.socks[ep] = sock
        return sock

    def _drop(self, ep):
        sock = self.socks.pop(ep, None)
        if sock is not None:
            sock.close(0)

    def _next(self, after):
        n = len(self.endpoints)
        i = self.endpoints.index(after) if after in self.endpoints else -1
        now = time.monotonic()
        for k in range(1, n + 1):
            ep = self.endpoints[(i + k) % n]
            if self.suspect.get(ep, 0) <= now:
                return ep
        return self.endpoints[(i + 1) % n]

    def _attempt(self, ep, msg, timeout):
        return send_await(self._sock(ep), msg, timeout)

    def call(self, op, **fields):
        """The first reply that is not NOT_LEADER, or None past the deadline."""
        end = time.monotonic() + self.deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            ep = self.target
            msg = {"op": op, "rid": next(self._rids)}
            msg.update(fields)
            reply = self._attempt(ep, msg, min(self.attempt_timeout, max(left, 0.05)))
            if reply is None:
                self.timeouts += 1
                self.retries.append((time.monotonic(), op, ep, "timeout"))
                self._drop(ep)
                self.suspect[ep] = time.monotonic() + SUSPECT_S
                self.target = self._next(ep)
                continue
            if reply.get("ok") is False and reply.get("error") == "NOT_LEADER":
                leader = reply.get("leader")
                if (leader and leader != ep
                        and self.suspect.get(leader, 0) <= time.monotonic()):
                    self.redirects += 1
                    self.retries.append((time.monotonic(), op, ep, "NOT_LEADER -> " + leader))
                    if leader not in self.endpoints:
                        self.endpoints.append(leader)
                    self.target = leader
                else:
                    self.electing += 1
                    self.retries.append((time.monotonic(), op, ep, "NOT_LEADER %r" % leader))
                    time.sleep(0.05)    # back-off while electing; bounded by end
                    self.target = self._next(ep)
                continue
            return reply

    def ok(self, op, **fields):
        reply = self.call(op, **fields)
        assert reply is not None, f"{op} {fields!r}: no reply within {self.deadline} s"
        assert reply.get("ok") is True, f"{op} {fields!r} failed: {reply!r}"
        return reply

    def close(self):
        for ep in list(self.socks):
            self._drop(ep)


class Sub(Subscriber):
    """A Subscriber to everything with no receive high-water mark, so
    nothing is dropped while the test thread is busy."""

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.RCVHWM, 0)
        self.sock.connect(endpoint)
        self.prefixes = ("",)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.events = []
        self.heartbeats = []

    def numbered(self):
        return [(e.body["seq"], e.topic, e.body) for e in self.events]


def sync_all(subs, timeout=5.0):
    """Wait for a sys/heartbeat on every subscriber (the subscription is live)."""
    marks = [len(s.heartbeats) for s in subs]
    wait_until(lambda: all(len(s.heartbeats) > m for s, m in zip(subs, marks)),
               timeout, "a sys/heartbeat on every node's PUB", pump=subs)


def check_contiguous(numbered, what, first=None):
    seqs = [n[0] for n in numbered]
    if first is not None and seqs:
        assert seqs[0] == first, f"{what}: first seq {seqs[0]}, expected {first}"
    for a, b in zip(seqs, seqs[1:]):
        assert b == a + 1, f"{what}: seq {a} followed by {b} (gap or disorder)"


# --------------------------------------------------------------------------
# Nodes and the cluster


class Node:
    """One conveyord cluster node: its id, data dir and ports are kept across
    restarts (kill -9 then start again on the same DIR)."""

    def __init__(self, base, node_id):
        self.id = node_id
        self.dir = os.path.join(str(base), "node%d" % node_id)
        self.pick_ports()
        self.daemon = None
        self.daemons = []
        self.client = None

    def pick_ports(self):
        ports = set()
        while len(ports) < 3:
            ports.add(_pick_port())
        self.raft, self.listen, self.publish = sorted(ports)

    @property
    def endpoint(self):
        return "tcp://127.0.0.1:%d" % self.listen

    @property
    def events_endpoint(self):
        return "tcp://127.0.0.1:%d" % self.publish

    @property
    def address(self):
        return "127.0.0.1:%d" % self.raft

    def spawn(self, peers, joining=False):
        opts = dict(listen=self.endpoint, publish=self.events_endpoint, data_dir=self.dir,
                    node_id=self.id, peers=peers, election_timeout_ms=ELECTION_MS)
        if joining:
            opts["raft_bind"] = self.address
        self.daemon = Daemon(build_argv((), True, **opts))
        self.daemons.append(self.daemon)
        return self.daemon

    def alive(self):
        return self.daemon is not None and self.daemon.rc is None and self.daemon.alive()

    def kill9(self):
        d = self.daemon
        d.proc.kill()
        d.proc.wait(STOP_TIMEOUT)
        d._reader.join(5)
        d.ctx.destroy(linger=0)
        d.rc = -signal.SIGKILL
        self._close_client()

    def stop(self):
        self._close_client()
        return self.daemon.stop() if self.daemon else 0

    def _close_client(self):
        if self.client is not None:
            self.client.close()
            self.client = None

    def call(self, ctx, op, **fields):
        """Ask this node directly (it must answer within REPLY_TIMEOUT)."""
        if self.client is None:
            self.client = Client(ctx, self.endpoint)
        return self.client.call(op, **fields)

    def stderr_tail(self, n=25):
        return "\n".join(self.daemon.lines[-n:]) if self.daemon else ""


class Cluster:
    def __init__(self, base, size=3):
        self.base = str(base)
        self.ctx = zmq.Context()
        self.nodes = [Node(base, i) for i in range(1, size + 1)]
        self.extra = []         # joiners
        self.clients = []
        self.subs = []

    @property
    def peers(self):
        return ",".join("%d=%s" % (n.id, n.address) for n in self.nodes)

    def endpoints(self):
        return [n.endpoint for n in self.nodes]

    def all_nodes(self):
        return self.nodes + self.extra

    def start(self):
        """Start every node; a port taken meanwhile (exit 2) re-picks all."""
        for attempt in range(3):
            for n in self.nodes:
                n.spawn(self.peers)
            ok = all([n.daemon.wait_ready(fail=(attempt == 2)) for n in self.nodes])
            if ok:
                return self
            for n in self.nodes:
                n.stop()
                n.daemons.remove(n.daemon)
                n.daemon = None
                shutil.rmtree(n.dir, ignore_errors=True)
                n.pick_ports()
        raise AssertionError("unreachable")

    def restart(self, node):
        node.spawn(self.peers)
        node.daemon.wait_ready()
        return node

    def client(self, first=0, attempt_timeout=REPLY_TIMEOUT):
        """A cluster client trying the nodes from node index first on. The
        default attempt timeout is the generous one of conftest (no node
        dies); the load threads of test 3 use ATTEMPT_TIMEOUT."""
        eps = self.endpoints()
        c = ClusterClient(self.ctx, eps[first:] + eps[:first], attempt_timeout)
        self.clients.append(c)
        return c

    def sub(self, node):
        s = Sub(self.ctx, node.events_endpoint)
        self.subs.append(s)
        return s

    def status(self, node):
        st = node.call(self.ctx, "cluster_status")
        assert st.get("ok") is True, f"cluster_status on node {node.id}: {st!r}"
        return st

    def wait_leader(self, among=None, timeout=CONVERGE_TIMEOUT, pump=()):
        """Wait until exactly one of the running nodes leads and every other
        running node names it (leader_id and its request endpoint); returns
        (leader node, {node id: cluster_status})."""
        among = [n for n in (among or self.all_nodes()) if n.alive()]
        found = {}

        def settled():
            sts = {n.id: self.status(n) for n in among}
            leading = [n for n in among if sts[n.id]["leading"]]
            if len(leading) != 1:
                return False
            lead = leading[0]
            for n in among:
                st = sts[n.id]
                if st["leader_id"] != lead.id or st["leader"] != lead.endpoint:
                    return False
                if n is not lead and (st["leading"] or st["state"] != "follower"):
                    return False
            found["r"] = (lead, sts)
            return True

        wait_until(settled, timeout, "one leader named by every running node", pump=pump)
        return found["r"]

    def teardown(self):
        for c in self.clients:
            c.close()
        for s in self.subs:
            s.close()
        bad = []
        for n in self.all_nodes():
            if n.alive():
                rc = n.stop()
                if rc != 0:
                    bad.append(f"node {n.id} exited {rc!r} on SIGTERM; stderr tail:\n"
                               + n.stderr_tail())
            else:
                n._close_client()
        self.ctx.destroy(linger=0)
        assert not bad, "\n".join(bad)


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(tmp_path).start()
    yield c
    c.teardown()


# --------------------------------------------------------------------------
# Helpers on state


def all_events(node, ctx, since=0):
    """events_since from since, every page; the error reply if it fails."""
    out = []
    while True:
        r = node.call(ctx, "events_since", since=since, limit=10000)
        if not r.get("ok"):
            return r
        out += [(body["seq"], topic, body) for topic, body in r["events"]]
        if not r["more"]:
            return out
        since = out[-1][0]


def theirs_has(node, ctx, ev):
    """node's history holds event ev with the same seq, topic and body."""
    r = node.call(ctx, "events_since", since=ev.body["seq"] - 1, limit=1)
    return r.get("ok") and r["events"] and r["events"][0] == [ev.topic, ev.body]


def logs(nodes, n=15):
    return "\n".join(f"--- node {x.id}:\n{x.stderr_tail(n)}" for x in nodes)


def seq_of(node, ctx):
    r = node.call(ctx, "stats")
    assert r.get("ok") is True, f"stats on node {node.id}: {r!r}"
    return r["seq"]


def services_by_id(cc):
    return {s["service_id"]: s for s in cc.ok("list_services")["services"]}


def group_view(group):
    return {
        "generation": group["generation"],
        "assignor": group["assignor"],
        "topics": group["topics"],
        "members": sorted(({k: m.get(k) for k in KEPT_MEMBER_FIELDS}
                           for m in group["members"]), key=lambda m: m["member_id"]),
    }


def offsets_map(cc, group_id):
    return {(t, p): o for t, p, o in cc.ok("fetch_offsets", group_id=group_id)["offsets"]}


def wait_caught_up(cluster, nodes, timeout=CONVERGE_TIMEOUT, pump=()):
    """Wait until every node in nodes has applied what the leader applied
    and its seq equals the leader's; returns (leader, seq, last_applied)."""
    res = {}

    def caught_up():
        lead, sts = cluster.wait_leader(pump=pump)
        lead_seq = seq_of(lead, cluster.ctx)
        lead_applied = cluster.status(lead)["last_applied"]
        for n in nodes:
            if n is lead:
                continue
            if cluster.status(n)["last_applied"] != lead_applied:
                return False
            if seq_of(n, cluster.ctx) != lead_seq:
                return False
        # Nothing moved meanwhile.
        if seq_of(lead, cluster.ctx) != lead_seq:
            return False
        res["r"] = (lead, lead_seq, lead_applied)
        return True

    wait_until(caught_up, timeout, "every node caught up with the leader", step=0.05,
               pump=pump)
    return res["r"]


# --------------------------------------------------------------------------
# 1. Election and redirects


def test_election_and_redirects(cluster):
    t0 = time.monotonic()
    lead, sts = cluster.wait_leader()
    print(f"\nelection: leader node {lead.id} known to every node "
          f"{time.monotonic() - t0:.2f} s after start")
    leading = [i for i, st in sts.items() if st["leading"]]
    assert leading == [lead.id], f"not exactly one node leads: {sts!r}"
    terms = {st["term"] for st in sts.values()}
    assert len(terms) == 1, f"nodes disagree on the term: {sts!r}"

    for n in cluster.nodes:
        st = sts[n.id]
        assert st["node_id"] == n.id
        assert st["state"] == ("leader" if n is lead else "follower"), st
        ids = sorted(s["id"] for s in st["servers"])
        assert ids == [1, 2, 3], f"node {n.id} servers: {st['servers']!r}"
        for s in st["servers"]:
            node = cluster.nodes[s["id"] - 1]
            assert s["address"] == node.address, s
            assert s["role"] == "voter", s
        me = [s for s in st["servers"] if s["id"] == lead.id][0]
        assert me["request_endpoint"] == lead.endpoint, st
        assert me["events_endpoint"] == lead.events_endpoint, st

    # hello.leader agrees on every node (the followers learn it from the
    # leader's announcement in the log: wait for it, bounded).
    def hellos_agree():
        hs = [n.call(cluster.ctx, "hello") for n in cluster.nodes]
        return hs if all(h.get("ok") and h.get("leader") == lead.endpoint for h in hs) else None

    hellos = wait_until(hellos_agree, CONVERGE_TIMEOUT, "hello.leader on every node")
    for n, h in zip(cluster.nodes, hellos):
        assert h["node_id"] == str(n.id), h
        assert h["events_endpoint"] == n.events_endpoint, h

    # Every node knows every node's endpoints through the log: the leader
    # announced its own, the followers had theirs announced through it
    # (cluster_announce, once a second until it is in). Bounded wait.
    def endpoints_known():
        for n in cluster.nodes:
            st = n.call(cluster.ctx, "cluster_status")
            got = {s["id"]: (s["request_endpoint"], s["events_endpoint"]) for s in st["servers"]}
            if got != {m.id: (m.endpoint, m.events_endpoint) for m in cluster.nodes}:
                return None
        return True

    wait_until(endpoints_known, CONVERGE_TIMEOUT + 3, "every node's endpoints on every node")

    # Followers: what they answer themselves, and NOT_LEADER for the rest.
    followers = [n for n in cluster.nodes if n is not lead]
    reg = dict(service_id="r1", service_name="redir", service_type="source",
               endpoint="tcp://10.0.0.1:1", lease_ms=LONG_LEASE_MS)
    for n in followers:
        for op, fields in (("register", reg), ("heartbeat", {"service_id": "r1"}),
                           ("list_services", {}), ("get_service", {"service_id": "r1"}),
                           ("create_topic", {"topic": "t", "partitions": 2}),
                           ("list_topics", {}), ("list_groups", {}),
                           ("get_group", {"group_id": "g"}),
                           ("join_group", {"group_id": "g", "topics": ["t"], "member_id": "m"}),
                           ("group_heartbeat", {"group_id": "g", "member_id": "m",
                                                "generation": 1}),
                           ("fetch_offsets", {"group_id": "g"}),
                           ("cluster_add", {"node_id": 9, "address": "127.0.0.1:1"}),
                           ("cluster_remove", {"node_id": 9})):
            r = n.call(cluster.ctx, op, **fields)
            assert r.get("ok") is False and r.get("error") == "NOT_LEADER", \
                f"{op} on follower {n.id}: {r!r}"
            assert r.get("leader") == lead.endpoint, f"{op} on follower {n.id}: {r!r}"
            assert isinstance(r.get("message"), str), r
        for op, fields in (("hello", {}), ("stats", {}), ("cluster_status", {}),
                           ("events_since", {"since": 0})):
            r = n.call(cluster.ctx, op, **fields)
            assert r.get("ok") is True, f"follower {n.id} must answer {op} itself: {r!r}"

    # Nothing was applied by the refused writes; the leader serves them.
    cc = cluster.client(first=followers[0].id - 1)
    r = cc.ok("register", **reg)
    assert r["service"]["service_id"] == "r1"
    assert cc.redirects == 1 and cc.timeouts == 0, cc.retries
    assert list(services_by_id(cc)) == ["r1"]
    assert cc.ok("list_topics")["topics"] == {} and cc.ok("list_groups")["groups"] == []
    assert cluster.status(lead)["leading"]


# --------------------------------------------------------------------------
# 2. The same events, same seq, on every node


def test_same_events_everywhere(cluster):
    lead, _ = cluster.wait_leader()
    subs = [cluster.sub(n) for n in cluster.nodes]
    sync_all(subs)
    assert [e for s in subs for e in s.events] == [], "events before any write"

    cc = cluster.client()
    for i, stype in enumerate(("source", "transform", "sink")):
        cc.ok("register", service_id="s%d" % i, service_name="svc-%s" % stype,
              service_type=stype, endpoint="tcp://10.0.0.%d:5000" % i,
              labels={"zone": "z%d" % i}, lease_ms=LONG_LEASE_MS)
    cc.ok("heartbeat", service_id="s0", health="degraded")
    cc.ok("register", service_id="s1", service_name="svc-transform", service_type="transform",
          endpoint="tcp://10.0.0.1:5001", weight=7, lease_ms=LONG_LEASE_MS)
    cc.ok("create_topic", topic="orders", partitions=6)
    j1 = cc.ok("join_group", group_id="g1", topics=["orders"], member_id="m1",
               service_id="s1", session_timeout_ms=LONG_LEASE_MS)
    j2 = cc.ok("join_group", group_id="g1", topics=["orders"], member_id="m2",
               session_timeout_ms=LONG_LEASE_MS)
    assert j2["generation"] > j1["generation"]
    group = cc.ok("get_group", group_id="g1")["group"]
    gen = group["generation"]
    for m in group["members"]:
        offs = [[t, p, 100 + p] for t, p in m["assignment"]]
        cc.ok("commit_offsets", group_id="g1", member_id=m["member_id"], generation=gen,
              offsets=offs)
    cc.ok("create_topic", topic="orders", partitions=8)     # grows: a rebalance
    cc.ok("leave_group", group_id="g1", member_id="m2")
    cc.ok("deregister", service_id="s2")
    cc.ok("register", service_id="s0", service_name="svc-renamed", service_type="source",
          endpoint="tcp://10.0.0.0:5000", lease_ms=LONG_LEASE_MS)
    assert cc.timeouts == 0, cc.retries

    final = seq_of(lead, cluster.ctx)
    assert final >= 12, f"expected a dozen events or more, seq is {final}"
    wait_until(lambda: all(s.events and s.events[-1].body["seq"] >= final for s in subs),
               CONVERGE_TIMEOUT, f"seq {final} on every node's PUB", pump=subs)

    streams = [s.numbered() for s in subs]
    for n, stream in zip(cluster.nodes, streams):
        check_contiguous(stream, f"node {n.id}'s PUB", first=1)
        assert stream[-1][0] == final, f"node {n.id} published past {final}: {stream[-1]!r}"
    leader_stream = streams[lead.id - 1]
    for n, stream in zip(cluster.nodes, streams):
        assert stream == leader_stream, \
            f"node {n.id} published other events than the leader (node {lead.id})"
    kinds = [(t.split("/")[0], b["type"]) for _, t, b in leader_stream]
    for want in (("service", "registered"), ("service", "health"), ("service", "updated"),
                 ("topic", "changed"),
                 ("group", "joined"), ("group", "assignment"), ("group", "left"),
                 ("service", "deregistered")):
        assert want in kinds, f"no {want} event in {kinds!r}"

    # Every node's history (events_since) holds the same events, and every
    # node's stats seq is the same.
    for n in cluster.nodes:
        assert all_events(n, cluster.ctx) == leader_stream, f"events_since on node {n.id}"
        assert seq_of(n, cluster.ctx) == final


def test_a_burst_of_events_in_order_everywhere(cluster):
    """One burst of pipelined registrations: the leader commits them in a few
    big entries, each causing far more events than one parcel from the log
    thread holds (256). Every node publishes them all, numbered without a
    gap, identical, in the order the requests were sent."""
    lead, _ = cluster.wait_leader()
    subs = [cluster.sub(n) for n in cluster.nodes]
    sync_all(subs)
    first = seq_of(lead, cluster.ctx) + 1
    burst = 1500
    c = Client(cluster.ctx, lead.endpoint)
    try:
        for i in range(burst):
            c.send_map({"op": "register", "rid": i, "service_id": "b%04d" % i,
                        "service_name": "burst", "service_type": "transform",
                        "endpoint": "tcp://10.9.%d.%d:1" % (i // 250, i % 250),
                        "lease_ms": LONG_LEASE_MS})
        replies = [c.recv(timeout=CONVERGE_TIMEOUT) for _ in range(burst)]
    finally:
        c.close()
    assert [r.get("rid") for r in replies] == list(range(burst))
    assert all(r.get("ok") is True for r in replies), \
        [r for r in replies if r.get("ok") is not True][:3]

    final = first + burst - 1
    assert seq_of(lead, cluster.ctx) == final
    wait_until(lambda: all(s.events and s.events[-1].body["seq"] >= final for s in subs),
               CONVERGE_TIMEOUT, f"seq {final} on every node's PUB", pump=subs)
    streams = [[e for e in s.numbered() if e[0] >= first] for s in subs]
    for n, stream in zip(cluster.nodes, streams):
        check_contiguous(stream, f"node {n.id}'s PUB", first=first)
        assert stream[-1][0] == final, f"node {n.id} published past {final}"
        assert [b["service"]["service_id"] for _, t, b in stream] == \
            ["b%04d" % i for i in range(burst)], f"node {n.id}: not the burst, in order"
        assert all(t == "service/burst/registered" and b["type"] == "registered"
                   for _, t, b in stream)
    assert streams[1:] == streams[:-1], "the nodes published different events"
    for n in cluster.nodes:
        assert all_events(n, cluster.ctx, since=first - 1) == streams[0], \
            f"events_since on node {n.id}"


def test_follower_stats_describe_the_cluster(cluster):
    cluster.wait_leader()
    cc = cluster.client()
    cc.ok("register", service_id="st1", service_name="st", service_type="source",
          endpoint="tcp://10.4.0.1:1", lease_ms=LONG_LEASE_MS)
    cc.ok("join_group", group_id="gs", topics=["ts"], member_id="ms",
          session_timeout_ms=LONG_LEASE_MS)
    lead, seq, _ = wait_caught_up(cluster, cluster.nodes)
    keys = ("seq", "services", "groups", "members", "topics")
    want = {k: v for k, v in lead.call(cluster.ctx, "stats").items() if k in keys}
    assert want == {"seq": seq, "services": 1, "groups": 1, "members": 1, "topics": 1}, want
    for n in cluster.nodes:
        got = {k: v for k, v in n.call(cluster.ctx, "stats").items() if k in keys}
        assert got == want, f"stats on node {n.id} {got!r}, on the leader {want!r}"


# --------------------------------------------------------------------------
# 3. kill -9 of the leader under load (and 4, the killed node comes back)


class Worker(threading.Thread):
    """A client thread: registers services (one more per round, up to
    MAX_SERVICES), heartbeats all of them, heartbeats its group member and
    commits a higher offset on each of its partitions every round. Every
    acknowledged reply is recorded; anything but ok is an error (the
    cluster client already retried NOT_LEADER and timeouts)."""

    MAX_SERVICES = 10

    def __init__(self, k, client, group_id, member_id, generation, partitions, stop):
        super().__init__(name="worker-%d" % k, daemon=True)
        self.k = k
        self.cc = client
        self.group_id, self.member_id = group_id, member_id
        self.generation, self.partitions = generation, partitions
        self.stop_flag = stop
        self.services = []
        self.acked_regs = {}        # service_id -> monotonic time acknowledged
        self.acked_offsets = {}     # (topic, partition) -> highest acknowledged
        self.acks = []              # (monotonic time, op)
        self.errors = []

    def run(self):
        try:
            self._run()
        except Exception as e:      # reported by the test
            self.errors.append(("exception", repr(e)))

    def _call(self, op, **fields):
        r = self.cc.call(op, **fields)
        if r is None:
            self.errors.append((op, fields, "no reply within %s s" % self.cc.deadline))
            return None
        if r.get("ok") is not True:
            self.errors.append((op, fields, r))
            return None
        self.acks.append((time.monotonic(), op))
        return r

    def _run(self):
        offset = 0
        while not self.stop_flag.is_set() and not self.errors:
            if len(self.services) < self.MAX_SERVICES:
                sid = "load-%d-%d" % (self.k, len(self.services))
                r = self._call("register", service_id=sid, service_name="load%d" % self.k,
                               service_type="transform", lease_ms=LOAD_LEASE_MS,
                               endpoint="tcp://10.1.%d.%d:6000" % (self.k, len(self.services)))
                if r:
                    self.services.append(sid)
                    self.acked_regs[sid] = time.monotonic()
            for sid in self.services:
                self._call("heartbeat", service_id=sid)
            r = self._call("group_heartbeat", group_id=self.group_id,
                           member_id=self.member_id, generation=self.generation)
            if r and r["generation"] != self.generation:
                self.errors.append(("group_heartbeat", "generation moved", r))
            offset += 1
            offs = [[t, p, offset] for t, p in self.partitions]
            if self._call("commit_offsets", group_id=self.group_id, member_id=self.member_id,
                          generation=self.generation, offsets=offs):
                for t, p, o in offs:
                    self.acked_offsets[(t, p)] = o
            self.stop_flag.wait(0.01)

    def acked_after(self, t, op=None):
        return sum(1 for at, o in self.acks if at > t and (op is None or o == op))


def send_await(sock, msg, timeout):
    """Sends msg on sock; the reply with its rid, or None after timeout
    (late replies to earlier requests on the socket are skipped)."""
    sock.send(pack(msg))
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000) + 1, zmq.POLLIN):
            return None
        reply = unpack(sock.recv())
        if isinstance(reply, dict) and reply.get("rid") == msg.get("rid"):
            return reply


def rpc_once(ctx, endpoint, msg, timeout):
    """One request on a fresh DEALER; its reply, or None after timeout."""
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        return send_await(sock, msg, timeout)
    finally:
        sock.close(0)


def measure_failover(cluster, survivors, t_kill, pump):
    """From the kill to the first write a new leader acknowledges: polls
    the survivors' cluster_status; once one leads, registers a probe
    service on it directly. Returns (seconds, leader node)."""
    deadline = t_kill + CONVERGE_TIMEOUT
    rid = itertools.count(1)
    while time.monotonic() < deadline:
        for n in survivors:
            if not cluster.status(n)["leading"]:
                continue
            r = rpc_once(cluster.ctx, n.endpoint,
                         {"op": "register", "rid": next(rid), "service_id": "probe",
                          "service_name": "probe", "service_type": "sink",
                          "endpoint": "tcp://10.9.9.9:1", "lease_ms": LONG_LEASE_MS},
                         PROBE_TIMEOUT)
            if r is not None and r.get("ok"):
                return time.monotonic() - t_kill, n
        pump_all(pump, 0.01)
    raise AssertionError(f"no new leader acknowledged a write within {CONVERGE_TIMEOUT} s "
                         "of the kill")


@pytest.fixture(scope="module")
def failover(tmp_path_factory):
    """Runs the kill -9 under load once: tests 3 and 4 check what it did."""
    c = Cluster(tmp_path_factory.mktemp("failover")).start()
    try:
        yield _run_failover(c)
    finally:
        c.teardown()


def _run_failover(c):
    lead, _ = c.wait_leader()
    subs = {n.id: c.sub(n) for n in c.nodes}
    sync_all(list(subs.values()))
    cc = c.client()

    # The load's group: three members of one group, 2 partitions each.
    cc.ok("create_topic", topic="load", partitions=6)
    for k in range(3):
        cc.ok("join_group", group_id="gl", topics=["load"], member_id="w%d" % k,
              session_timeout_ms=LOAD_SESSION_MS)
    group = cc.ok("get_group", group_id="gl")["group"]
    gen = group["generation"]
    assign = {m["member_id"]: [tuple(a) for a in m["assignment"]] for m in group["members"]}
    assert sorted(p for a in assign.values() for p in a) == [("load", p) for p in range(6)]

    stop = threading.Event()
    workers = [Worker(k, c.client(first=k, attempt_timeout=ATTEMPT_TIMEOUT), "gl",
                      "w%d" % k, gen, assign["w%d" % k], stop)
               for k in range(3)]
    pump = list(subs.values())
    for w in workers:
        w.start()
    try:
        # Mid-load: every worker has registered and committed a few times.
        wait_until(lambda: all(len(w.acked_regs) >= 5 and w.acked_offsets for w in workers)
                   or any(w.errors for w in workers),
                   10.0, "load under way", pump=pump)
        assert not any(w.errors for w in workers), [w.errors for w in workers]
        killed = lead
        survivors = [n for n in c.nodes if n is not killed]
        seq_before = seq_of(killed, c.ctx)
        acked_before = {sid for w in workers for sid, t in w.acked_regs.items()}
        t_kill = time.monotonic()
        killed.kill9()
        failover_s, new_lead = measure_failover(c, survivors, t_kill, pump)
        print(f"\nfailover: node {killed.id} (leader) killed -9 under load; node "
              f"{new_lead.id} acknowledged a write {failover_s * 1000:.0f} ms later")
        failover_logs = logs(survivors)

        # Keep the load on past twice the lease and session after the kill
        # (anything the failover let lapse would have expired by then), and
        # until every worker was served again.
        t_end = t_kill + 2 * max(LOAD_LEASE_MS, LOAD_SESSION_MS) / 1000 + 1.0
        wait_until(lambda: (time.monotonic() > t_end
                            and all(w.acked_after(t_kill, "commit_offsets") >= 3
                                    for w in workers))
                   or any(w.errors for w in workers),
                   CONVERGE_TIMEOUT + t_end - time.monotonic(),
                   "the load to go on after the failover", pump=pump)
    finally:
        stop.set()
        for w in workers:
            w.join(CALL_DEADLINE + 5)
    assert not any(w.is_alive() for w in workers), "a worker did not stop"

    # What the cluster holds after the load, read from the (new) leader.
    new_lead2, _ = c.wait_leader(pump=pump)
    cc = c.client(first=c.nodes.index(new_lead2))
    final_seq = seq_of(new_lead2, c.ctx)
    wait_until(lambda: all(subs[n.id].events and subs[n.id].events[-1].body["seq"] >= final_seq
                           for n in survivors),
               CONVERGE_TIMEOUT, f"seq {final_seq} on the survivors' PUBs", pump=pump)
    result = dict(
        cluster=c, killed=killed, survivors=survivors, first_leader=lead,
        new_leader=new_lead, leader_after=new_lead2, failover_s=failover_s,
        t_kill=t_kill, seq_before=seq_before, acked_before=acked_before,
        failover_logs=failover_logs,
        workers=workers, subs=subs, final_seq=final_seq,
        services=services_by_id(cc), offsets=offsets_map(cc, "gl"),
        group=cc.ok("get_group", group_id="gl")["group"], generation=gen,
    )

    # Quiesce for test 4: nothing left to lapse or expire. (On a slow
    # machine a load service may have expired since the load stopped.)
    def gone(op, ok_error, **fields):
        r = cc.call(op, **fields)
        assert r is not None and (r.get("ok") or r.get("error") == ok_error), (op, fields, r)
    for w in workers:
        for sid in w.services:
            gone("deregister", "NOT_FOUND", service_id=sid)
        gone("leave_group", "UNKNOWN_MEMBER", group_id="gl", member_id=w.member_id)
    cc.ok("deregister", service_id="probe")
    return result


def test_kill_leader_under_load(failover):
    f = failover
    workers = f["workers"]
    print(f"\nfailover time: {f['failover_s'] * 1000:.0f} ms "
          f"(bound {FAILOVER_BOUND * 1000:.0f} ms)")
    retries = {w.name: (w.cc.redirects, w.cc.electing, w.cc.timeouts) for w in workers}
    acks = {w.name: len(w.acks) for w in workers}
    print(f"acknowledged replies per worker: {acks}; "
          f"(redirects, electing, timeouts) per worker: {retries}")

    # Clients saw nothing but retried NOT_LEADER/timeouts.
    errors = [e for w in workers for e in w.errors]
    assert not errors, f"clients saw errors other than retried NOT_LEADER/timeouts: {errors!r}"
    assert sum(w.cc.timeouts + w.cc.redirects + w.cc.electing for w in workers) > 0, \
        "no client had to retry: the kill did not happen mid-load"
    for w in workers:
        assert w.acked_after(f["t_kill"]) > 0, f"{w.name} was never served after the kill"

    # A new leader served within the bound.
    assert f["new_leader"] is not f["killed"]
    assert f["failover_s"] < FAILOVER_BOUND, \
        f"a new leader served {f['failover_s']:.2f} s after the kill (bound " \
        f"{FAILOVER_BOUND} s); survivors' logs:\n" + f["failover_logs"]

    # Every acknowledged registration is there, with its fields.
    services = f["services"]
    for w in workers:
        for sid in w.acked_regs:
            assert sid in services, f"acknowledged registration {sid} is gone"
            s = services[sid]
            assert s["service_name"] == "load%d" % w.k and s["lease_ms"] == LOAD_LEASE_MS, s
            assert s["health"] in ("healthy", "unknown"), s
    assert "probe" in services

    # Every partition's committed offset >= the highest acknowledged one.
    offsets = f["offsets"]
    for w in workers:
        for tp, off in w.acked_offsets.items():
            assert offsets.get(tp, -1) >= off, \
                f"{tp}: committed {offsets.get(tp)}, acknowledged {off}"

    # The group did not rebalance: nobody expired, same generation.
    group = f["group"]
    assert group["generation"] == f["generation"], group
    assert sorted(m["member_id"] for m in group["members"]) == ["w0", "w1", "w2"], group

    # The events of a surviving node: no gap, the other survivor identical,
    # the killed node's a prefix; no expiry; each service acknowledged
    # before the kill went `unknown` once at the takeover.
    subs = f["subs"]
    # (Up to the seq read when the load stopped: the load services lapse
    # after it, as they should.)
    a, b = ([e for e in subs[n.id].numbered() if e[0] <= f["final_seq"]]
            for n in f["survivors"])
    assert a[-1][0] == f["final_seq"] and b[-1][0] == f["final_seq"]
    check_contiguous(a, f"survivor node {f['survivors'][0].id}", first=1)
    assert a == b, "the two survivors published different events"
    dead = subs[f["killed"].id].numbered()
    check_contiguous(dead, f"killed node {f['killed'].id}", first=1)
    assert a[:len(dead)] == dead, "the killed node published other events than the survivors"
    expired = [(t, body) for _, t, body in a
               if t.endswith("/expired") or (t.endswith("/membership")
                                             and body.get("type") == "expired")]
    assert not expired, f"expired because of the failover: {expired!r}"
    after = [(t, body) for s, t, body in a if s > f["seq_before"]]
    unknown = {body["service"]["service_id"] for t, body in after
               if t.endswith("/health") and body["service"]["health"] == "unknown"}
    missing = f["acked_before"] - unknown
    assert not missing, f"no health/unknown event after the takeover for {sorted(missing)}"
    lapsed = [body["service"]["service_id"] for t, body in after
              if t.endswith("/health") and body["service"]["health"] == "unhealthy"]
    print(f"events: {len(a)} on the survivors, seq {f['seq_before']} at the kill, "
          f"{len(unknown)} services marked unknown at the takeover, "
          f"{len(lapsed)} lapsed to unhealthy after it")


def test_killed_node_restarts_and_catches_up(failover):
    f = failover
    c, killed = f["cluster"], f["killed"]
    t0 = time.monotonic()
    c.restart(killed)
    sub = c.sub(killed)
    lead, seq, applied = wait_caught_up(c, c.nodes)
    print(f"\ncatch-up: restarted node {killed.id} at last_applied {applied}, seq {seq} "
          f"{time.monotonic() - t0:.2f} s after its restart")
    assert seq > f["final_seq"], "the cleanup after the load published nothing?"
    st = c.status(killed)
    assert st["last_applied"] == applied and st["state"] == "follower", st
    hello = killed.call(c.ctx, "hello")
    assert hello["leader"] == lead.endpoint and hello["seq"] == seq, hello

    # Its history holds the same events as the leader's (over the range both
    # keep; a snapshot may have cut the older ones), including everything it
    # missed while down.
    mine, theirs = all_events(killed, c.ctx), all_events(lead, c.ctx)
    since = 0
    for got in (mine, theirs):
        if isinstance(got, dict):
            assert got.get("error") == "COMPACTED", got
            since = max(since, got["oldest"] - 1)
    if since:
        mine, theirs = all_events(killed, c.ctx, since), all_events(lead, c.ctx, since)
    assert since <= f["seq_before"], \
        f"history after the restart starts at {since + 1}, after the kill's seq {f['seq_before']}"
    assert mine == theirs, "events_since differs between the restarted node and the leader"
    assert mine and mine[-1][0] == seq
    check_contiguous(mine, "restarted node's history", first=since + 1)

    # And it publishes the next events like the others.
    sync_all([sub])
    cc = c.client()
    cc.ok("register", service_id="after-restart", service_name="late", service_type="sink",
          endpoint="tcp://10.0.0.9:1", lease_ms=LONG_LEASE_MS)
    ev = sub.wait_for(lambda e: e.topic == "service/late/registered", timeout=5.0)
    assert ev.body["seq"] == seq + 1, ev
    assert theirs_has(lead, c.ctx, ev)


def test_failover_renews_leases_and_sessions(cluster):
    """The new leader's takeover gives every service a fresh full lease and
    every member a fresh session, counted from the takeover (the `at` of the
    `health`/unknown events), not from the last heartbeat the old leader
    acknowledged: the lapse and the expiries that follow come one lease or
    session after the takeover."""
    lead, _ = cluster.wait_leader()
    subs = {n.id: cluster.sub(n) for n in cluster.nodes}
    sync_all(list(subs.values()))
    cc = cluster.client(first=lead.id - 1, attempt_timeout=ATTEMPT_TIMEOUT)
    lease = session = 1000
    cc.ok("register", service_id="lz", service_name="lapse", service_type="sink",
          endpoint="tcp://10.5.0.1:1", lease_ms=lease)
    cc.ok("join_group", group_id="gz", topics=["tz"], member_id="mz",
          session_timeout_ms=session)
    cc.ok("heartbeat", service_id="lz")
    cc.ok("group_heartbeat", group_id="gz", member_id="mz",
          generation=cc.ok("get_group", group_id="gz")["group"]["generation"])
    last_beat = time.time() * 1000     # the last heartbeats were at or before this
    lead.kill9()

    survivors = [n for n in cluster.nodes if n is not lead]
    sub = subs[survivors[0].id]
    pump = [subs[n.id] for n in survivors]
    start = len(sub.events)

    def first(pred, what):
        return wait_until(lambda: next((e for e in sub.events[start:] if pred(e)), None),
                          CONVERGE_TIMEOUT, what, pump=pump)

    svc = lambda kind: (lambda e: e.topic == "service/lapse/" + kind.split(":")[0] and (
        ":" not in kind or e.body["service"]["health"] == kind.split(":")[1]))
    unknown = first(svc("health:unknown"), "the takeover's health/unknown event")
    lapsed = first(svc("health:unhealthy"), "lz lapsing to unhealthy")
    member = first(lambda e: e.topic == "group/gz/membership" and e.body["type"] == "expired",
                   "mz's session expiring")
    expired = first(svc("expired"), "lz expiring")
    takeover = unknown.body["at"]
    print(f"\ntakeover {takeover - last_beat:.0f} ms after the last heartbeat; lapse "
          f"+{lapsed.body['at'] - takeover} ms, member expiry "
          f"+{member.body['at'] - takeover} ms, service expiry "
          f"+{expired.body['at'] - takeover} ms after the takeover")
    assert takeover - last_beat >= 250, "the failover was too quick to tell the two apart"
    # Section 3 and 5: each transition within 250 ms of its deadline, and
    # the deadlines count from the takeover.
    for ev, due in ((lapsed, takeover + lease), (member, takeover + session),
                    (expired, takeover + 2 * lease)):
        assert due <= ev.body["at"] <= due + 250, \
            f"{ev.topic} {ev.body['type']} at {ev.body['at']}, due at {due} " \
            f"(takeover {takeover}, last heartbeat <= {last_beat:.0f}); survivors' logs:\n" \
            + logs(survivors)
    # Every survivor published the same.
    other = subs[survivors[1].id]
    wait_until(lambda: len(other.events) >= len(sub.events), CONVERGE_TIMEOUT,
               "the other survivor's events", pump=pump)
    assert other.numbered()[:len(sub.events)] == sub.numbered()


# --------------------------------------------------------------------------
# 5. kill -9 of all three, restart of all three


def test_kill_all_and_restart(cluster):
    lead, _ = cluster.wait_leader()
    cc = cluster.client()
    for i in range(5):
        cc.ok("register", service_id="d%d" % i, service_name="dur%d" % (i % 2),
              service_type=("source", "transform", "sink")[i % 3],
              endpoint="tcp://10.2.0.%d:7000" % i, labels={"i": str(i)},
              weight=10 * i, lease_ms=LONG_LEASE_MS)
    cc.ok("create_topic", topic="ta", partitions=3)
    cc.ok("create_topic", topic="tb", partitions=5)
    for m in ("m1", "m2", "m3"):
        cc.ok("join_group", group_id="g5", topics=["ta", "tb"], member_id=m,
              instance_id="inst-" + m, session_timeout_ms=LONG_LEASE_MS)
    cc.ok("join_group", group_id="g6", topics=["tb"], member_id="solo", assignor="range",
          service_id="d1", session_timeout_ms=LONG_LEASE_MS)
    groups = {g: cc.ok("get_group", group_id=g)["group"] for g in ("g5", "g6")}
    for g, group in groups.items():
        for m in group["members"]:
            cc.ok("commit_offsets", group_id=g, member_id=m["member_id"],
                  generation=group["generation"],
                  offsets=[[t, p, 1000 * p + len(g)] for t, p in m["assignment"]])
    before_services = services_by_id(cc)
    before_topics = cc.ok("list_topics")["topics"]
    before_groups = {g: group_view(cc.ok("get_group", group_id=g)["group"]) for g in groups}
    before_offsets = {g: offsets_map(cc, g) for g in groups}
    seq_before = seq_of(lead, cluster.ctx)
    # Killed at once: a follower may not have applied the last entries yet.

    for n in cluster.nodes:
        n.kill9()
    t0 = time.monotonic()
    for n in cluster.nodes:
        n.spawn(cluster.peers)
    for n in cluster.nodes:
        n.daemon.wait_ready()
    lead, _ = cluster.wait_leader()
    cc2 = cluster.client()
    cc2.ok("hello")
    print(f"\nfull restart: node {lead.id} leads {time.monotonic() - t0:.2f} s after "
          f"the three were started again")

    after_services = services_by_id(cc2)
    assert sorted(after_services) == sorted(before_services)
    for sid, before in before_services.items():
        after = after_services[sid]
        for k in KEPT_SERVICE_FIELDS:
            assert after[k] == before[k], f"{sid}.{k}: {before[k]!r} -> {after[k]!r}"
        assert after["health"] == "unknown", after
        assert after["last_heartbeat_at"] >= before["last_heartbeat_at"], after
        assert after["revision"] >= before["revision"], after
    assert cc2.ok("list_topics")["topics"] == before_topics
    for g in groups:
        assert group_view(cc2.ok("get_group", group_id=g)["group"]) == before_groups[g], g
        assert offsets_map(cc2, g) == before_offsets[g], g

    # seq continues: the takeover's `health` events (every service went
    # unknown) follow the last seq before the kill, without a gap, the same
    # on every node.
    lead, seq_after, _ = wait_caught_up(cluster, cluster.nodes)
    assert seq_after >= seq_before + len(before_services), (seq_before, seq_after)
    evs = all_events(lead, cluster.ctx, since=seq_before)
    assert isinstance(evs, list), evs
    check_contiguous(evs, "events after the restart", first=seq_before + 1)
    assert evs[-1][0] == seq_after
    unknown = {b["service"]["service_id"] for _, t, b in evs
               if t.endswith("/health") and b["service"]["health"] == "unknown"}
    assert unknown == set(before_services), unknown
    for n in cluster.nodes:
        assert all_events(n, cluster.ctx, since=seq_before) == evs, f"node {n.id}"

    # The groups go on in their generation.
    for g, group in groups.items():
        m = group["members"][0]
        r = cc2.ok("group_heartbeat", group_id=g, member_id=m["member_id"],
                   generation=group["generation"])
        assert r["generation"] == group["generation"], r
        cc2.ok("commit_offsets", group_id=g, member_id=m["member_id"],
               generation=group["generation"],
               offsets=[[t, p, 5000 + p] for t, p in m["assignment"]])
    assert cc2.timeouts == 0, cc2.retries


# --------------------------------------------------------------------------
# 6. Membership: a fourth node joins, catches up, leaves


def test_membership_add_and_remove(cluster, tmp_path):
    lead, _ = cluster.wait_leader()
    cc = cluster.client()
    for i in range(3):
        cc.ok("register", service_id="pre%d" % i, service_name="pre", service_type="source",
              endpoint="tcp://10.3.0.%d:1" % i, lease_ms=LONG_LEASE_MS)
    cc.ok("create_topic", topic="tm", partitions=4)
    cc.ok("join_group", group_id="gm", topics=["tm"], member_id="mm",
          session_timeout_ms=LONG_LEASE_MS)

    # Node 4: not in --peers, so it joins; it must not lead or serve.
    n4 = Node(tmp_path, 4)
    cluster.extra.append(n4)
    for attempt in range(3):
        n4.spawn(cluster.peers, joining=True)
        if n4.daemon.wait_ready(fail=(attempt == 2)):
            break
        n4.daemons.remove(n4.daemon)
        n4.daemon = None
        shutil.rmtree(n4.dir, ignore_errors=True)
        n4.pick_ports()
    st4 = cluster.status(n4)
    assert not st4["leading"], st4
    r = n4.call(cluster.ctx, "register", service_id="x", service_name="x",
                service_type="sink", endpoint="tcp://1.1.1.1:1")
    assert r.get("error") == "NOT_LEADER", r

    t0 = time.monotonic()
    r = cc.ok("cluster_add", node_id=4, address=n4.address)
    print(f"\ncluster_add of node 4 answered in {time.monotonic() - t0:.2f} s")

    def voter():
        lead, sts = cluster.wait_leader(among=cluster.nodes)
        servers = {s["id"]: s for s in sts[lead.id]["servers"]}
        return 4 in servers and servers[4]["role"] == "voter" and servers[4]
    s4 = wait_until(voter, CONVERGE_TIMEOUT, "node 4 a voter in the leader's cluster_status")
    assert s4["address"] == n4.address, s4

    # Adding it again is a no-op; an add that contradicts the configuration
    # (its id elsewhere, its address under another id) is CONFLICT and
    # changes nothing.
    cc.ok("cluster_add", node_id=4, address=n4.address)
    for node_id, address in ((4, "127.0.0.1:1"), (5, n4.address)):
        r = cc.call("cluster_add", node_id=node_id, address=address)
        assert r is not None and r.get("error") == "CONFLICT", r
        assert n4.address in r["message"] and "remove it first" in r["message"], r
    lead, sts = cluster.wait_leader(among=cluster.nodes)
    assert sorted((x["id"], x["address"]) for x in sts[lead.id]["servers"]) == \
        sorted([(m.id, m.address) for m in cluster.nodes] + [(4, n4.address)]), sts[lead.id]

    lead, seq, applied = wait_caught_up(cluster, cluster.all_nodes())
    print(f"node 4 caught up: last_applied {applied}, seq {seq}, "
          f"{time.monotonic() - t0:.2f} s after cluster_add")
    assert seq_of(n4, cluster.ctx) == seq and seq > 0
    st4 = cluster.status(n4)
    assert sorted(s["id"] for s in st4["servers"]) == [1, 2, 3, 4], st4
    assert st4["leader"] == lead.endpoint and st4["state"] == "follower", st4
    assert n4.call(cluster.ctx, "hello")["leader"] == lead.endpoint
    r = n4.call(cluster.ctx, "list_services")
    assert r.get("error") == "NOT_LEADER" and r.get("leader") == lead.endpoint, r
    evs = all_events(lead, cluster.ctx)
    assert all_events(n4, cluster.ctx) == evs

    # It follows what comes next, on its PUB too.
    sub = cluster.sub(n4)
    sync_all([sub])
    cc.ok("register", service_id="post", service_name="post", service_type="sink",
          endpoint="tcp://10.3.1.1:1", lease_ms=LONG_LEASE_MS)
    ev = sub.wait_for(lambda e: e.topic == "service/post/registered", timeout=5.0)
    assert ev.body["seq"] == seq + 1
    assert theirs_has(lead, cluster.ctx, ev)

    # Removed: gone from the leader's configuration.
    t0 = time.monotonic()
    cc.ok("cluster_remove", node_id=4)
    print(f"cluster_remove of node 4 answered in {time.monotonic() - t0:.2f} s")

    def removed():
        lead, sts = cluster.wait_leader(among=cluster.nodes)
        return all(sorted(s["id"] for s in st["servers"]) == [1, 2, 3] for st in sts.values())
    wait_until(removed, CONVERGE_TIMEOUT, "node 4 gone from every node's cluster_status")

    # Node 4, still running but removed, does not disturb the three (with
    # pre-vote it cannot raise the term): same leader, same term for five
    # election timeouts.
    lead, sts = cluster.wait_leader(among=cluster.nodes)
    term = sts[lead.id]["term"]
    window_end = time.monotonic() + 5 * ELECTION_MS / 1000
    while time.monotonic() < window_end:
        for n in cluster.nodes:
            st = cluster.status(n)
            assert st["term"] == term and st["leader_id"] == lead.id, \
                f"the removed node 4 disturbed node {n.id}: {st!r}"
        time.sleep(0.05)    # sampling a fixed window, not waiting for something
    # The three go on without it.
    cc.ok("register", service_id="post2", service_name="post", service_type="sink",
          endpoint="tcp://10.3.1.2:1", lease_ms=LONG_LEASE_MS)
    assert "post2" in services_by_id(cc)
