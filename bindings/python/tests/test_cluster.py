"""Clients of a replicated cluster (issue 6): several endpoints, NOT_LEADER
redirects, failover of the leader under a Registration, a GroupMember, a
Watch, an AsyncWatch and a loop of calls.

The first tests use fake nodes (ROUTER sockets in a thread) for exact
protocol situations; the others run three real ``conveyord`` nodes
(``--peers``), one cluster per test. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Callable, Dict, List, Optional

import msgpack
import pytest
import zmq

import conveyor
from conveyor.aio import AsyncClient, AsyncWatch

from conveyor_testlib import Cluster, wait_for


# ---------------------------------------------------------------------------
# Fake nodes


class FakeNodes:
    """ROUTER sockets answering with ``behave(node_index, request)``: a
    reply map, ``None`` (never answer), or ``(delay_s, reply)``."""

    def __init__(self, n: int, behave: Callable[[int, dict], object]) -> None:
        self.ctx = zmq.Context.instance()
        self.endpoints: List[str] = []
        self.socks = []
        for _ in range(n):
            s = self.ctx.socket(zmq.ROUTER)
            s.setsockopt(zmq.LINGER, 0)
            port = s.bind_to_random_port("tcp://127.0.0.1", 20000, 32000)
            self.socks.append(s)
            self.endpoints.append(f"tcp://127.0.0.1:{port}")
        self.behave = behave
        self.seen: List[tuple] = []     # (node, request)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        poller = zmq.Poller()
        for s in self.socks:
            poller.register(s, zmq.POLLIN)
        later: List[tuple] = []
        while not self.stop.is_set():
            for item in [x for x in later if x[0] <= time.monotonic()]:
                later.remove(item)
                _, sock, ident, reply = item
                sock.send_multipart([ident, msgpack.packb(reply)])
            for sock, _ in poller.poll(20):
                ident, body = sock.recv_multipart()
                req = msgpack.unpackb(body)
                node = self.socks.index(sock)
                self.seen.append((node, req))
                out = self.behave(node, req)
                if out is None:
                    continue
                if isinstance(out, tuple):
                    delay, reply = out
                    later.append((time.monotonic() + delay, sock, ident,
                                  dict(reply, rid=req.get("rid"))))
                    continue
                sock.send_multipart([ident, msgpack.packb(dict(out, rid=req.get("rid")))])

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for s in self.socks:
            s.close(0)


@pytest.fixture
def fakes():
    made: List[FakeNodes] = []

    def make(n, behave):
        f = FakeNodes(n, behave)
        made.append(f)
        return f
    yield make
    for f in made:
        f.close()


def not_leader(leader: Optional[str]) -> Dict[str, object]:
    return {"ok": False, "error": "NOT_LEADER", "message": "follower", "leader": leader}


def test_endpoint_lists():
    with conveyor.Client(" tcp://127.0.0.1:1 ,tcp://127.0.0.1:2,,tcp://127.0.0.1:1") as c:
        assert c.endpoints == ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")
        assert c.endpoint == "tcp://127.0.0.1:1"
        assert "tcp://127.0.0.1:2" in repr(c)
        with c.clone() as d:
            assert d.endpoints == c.endpoints
    with conveyor.Client(["tcp://127.0.0.1:1", "tcp://127.0.0.1:2,tcp://127.0.0.1:3"]) as c:
        assert len(c.endpoints) == 3
    with conveyor.Client("tcp://127.0.0.1:1") as c:   # one endpoint: as before
        assert c.endpoints == ("tcp://127.0.0.1:1",) and repr(c).startswith(
            "Client('tcp://127.0.0.1:1'")
    with pytest.raises(ValueError):
        conveyor.Client(" , ")
    with pytest.raises(TypeError):
        conveyor.Client(["tcp://127.0.0.1:1", 5])


def test_single_silent_endpoint_times_out_as_before(fakes):
    f = fakes(1, lambda i, req: None)
    with conveyor.Client(f.endpoints[0], timeout=0.3) as c:
        t0 = time.monotonic()
        with pytest.raises(conveyor.Timeout) as ei:
            c.hello()
        assert 0.25 <= time.monotonic() - t0 < 1.5
        assert str(ei.value) == f"TIMEOUT: no reply to hello from {f.endpoints[0]} within 0.3 s"
        assert not ei.value.retried
    time.sleep(0.2)
    assert len(f.seen) <= 1   # one try, never sent again


def test_redirect_is_followed_and_learnt(fakes):
    def behave(i, req):
        if i == 0:
            return not_leader(f.endpoints[1])
        return {"ok": True, "node": i}
    f = fakes(2, behave)
    with conveyor.Client(f.endpoints[0], timeout=2) as c:
        assert c.call("get_service", service_id="x")["node"] == 1
        assert c.endpoints == tuple(f.endpoints) and c.endpoint == f.endpoints[1]
        assert c.call("list_services")["node"] == 1    # stays with the leader
    assert [n for n, _ in f.seen] == [0, 1, 1]


def test_wildcard_leader_is_not_followed(fakes):
    # a leader listening on tcp://*:PORT announces tcp://0.0.0.0:PORT
    def behave(i, req):
        return not_leader("tcp://0.0.0.0:7400") if i == 0 else {"ok": True, "node": i}
    f = fakes(2, behave)
    with conveyor.Client(f.endpoints, timeout=2) as c:
        assert c.call("get_service", service_id="x")["node"] == 1
        assert c.endpoints == tuple(f.endpoints)


def test_redirects_that_keep_failing_raise_not_leader(fakes):
    f = fakes(2, lambda i, req: not_leader(f.endpoints[1 - i]))
    with conveyor.Client(f.endpoints[0], timeout=0.5) as c:
        t0 = time.monotonic()
        with pytest.raises(conveyor.NotLeader) as ei:
            c.call("register")
        assert 0.45 <= time.monotonic() - t0 < 2.0
        assert ei.value.leader in f.endpoints
    assert len(f.seen) >= 3


def test_electing_then_timeout_with_backoff(fakes):
    f = fakes(2, lambda i, req: not_leader(None))
    with conveyor.Client(f.endpoints, timeout=0.6) as c:
        with pytest.raises(conveyor.Timeout) as ei:
            c.call("register")
        assert "election" in ei.value.message and not ei.value.retried
    # a short backoff between tries: neither a storm nor a single try
    assert 4 <= len(f.seen) <= 30
    assert {n for n, _ in f.seen} == {0, 1}


def test_silent_node_is_left_and_late_replies_never_mistaken(fakes):
    def behave(i, req):
        if i == 0:   # answers too late, after the client moved on
            return (0.5, {"ok": True, "node": 0})
        if req["op"] == "deregister":
            return {"ok": False, "error": "NOT_FOUND", "message": "no such service"}
        if req["op"] == "join_group":
            return {"ok": True, "group_id": "g", "member_id": req.get("member_id", "server-made"),
                    "generation": 1, "assignment": [], "members": []}
        return {"ok": True, "node": i}
    f = fakes(2, behave)
    with conveyor.Client(f.endpoints, timeout=3, try_timeout=0.2) as c:
        t0 = time.monotonic()
        assert c.call("get_service", service_id="x")["node"] == 1
        assert time.monotonic() - t0 < 1.0
        assert c.endpoint == f.endpoints[1]
        time.sleep(0.6)   # node 0's late reply went to a closed socket
        assert c.call("list_services")["node"] == 1
        # deregister: NOT_FOUND after an unanswered try is success ...
        c._eps.prefer(f.endpoints[0])
        c.deregister("x")
        # ... but a NOT_FOUND on a first try is not
        with pytest.raises(conveyor.NotFound) as ei:
            c.deregister("x")
        assert not ei.value.retried
        c._eps.prefer(f.endpoints[0])
        with pytest.raises(conveyor.NotFound) as ei:
            c.call("deregister", service_id="x")
        assert ei.value.retried
        # a join retried elsewhere must not add a second member: the
        # client chooses the member id
        j = c.join_group("g", ["t"], service_name="svc")
        assert j.member_id.startswith("svc-") and len(j.member_id) == len("svc-") + 36
    joins = [r for _, r in f.seen if r["op"] == "join_group"]
    assert joins and joins[0]["member_id"] == j.member_id


def test_retried_write_is_the_same_request(fakes):
    """Every try of a write carries the same rid and the client's client_id,
    so a server with a data dir answers the retry with the first reply
    instead of applying it twice; reads carry no client_id."""
    def behave(i, req):
        if i == 0:
            return None                      # swallowed: the client moves on
        return {"ok": True, "node": i}
    f = fakes(2, behave)
    with conveyor.Client(f.endpoints, timeout=3, try_timeout=0.2) as c:
        c._eps.prefer(f.endpoints[0])
        c.call("commit_offsets", group_id="g", member_id="m", generation=1,
               offsets=[["t", 0, 5]])
        c._eps.prefer(f.endpoints[1])
        c.call("get_service", service_id="x")
    commits = [(n, r) for n, r in f.seen if r["op"] == "commit_offsets"]
    assert [n for n, _ in commits] == [0, 1]
    assert commits[0][1]["rid"] == commits[1][1]["rid"]
    assert commits[0][1]["client_id"] == commits[1][1]["client_id"]
    assert commits[0][1]["client_id"].startswith("py-")
    reads = [r for _, r in f.seen if r["op"] == "get_service"]
    assert reads and "client_id" not in reads[0]


def test_async_client_endpoints(fakes):
    mode = {"loop": False}

    def behave(i, req):
        if mode["loop"]:   # 1 and 2 name each other
            return not_leader(f.endpoints[3 - i]) if i else None
        if i == 0:
            return None
        if i == 1:
            return not_leader(f.endpoints[2])
        return {"ok": True, "node": i}
    f = fakes(3, behave)

    async def main():
        async with AsyncClient(",".join(f.endpoints[:2]), timeout=3, try_timeout=0.2) as c:
            r = await c.call("get_service", service_id="x")
            assert r["node"] == 2 and c.endpoint == f.endpoints[2]
            assert c.endpoints == tuple(f.endpoints)
        async with AsyncClient(f.endpoints[0], timeout=0.3) as c:
            with pytest.raises(conveyor.Timeout) as ei:
                await c.hello()
            assert str(ei.value) == (f"TIMEOUT: no reply to hello from {f.endpoints[0]} "
                                     f"within 0.3 s")
        mode["loop"] = True
        async with AsyncClient(f.endpoints[1], timeout=0.4) as c:
            with pytest.raises(conveyor.NotLeader):
                await c.call("register")
    asyncio.run(asyncio.wait_for(main(), 20))


# ---------------------------------------------------------------------------
# A real cluster


LEASE_MS = 2000


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path), 3, lease_ms=LEASE_MS, session_timeout_ms=LEASE_MS)
    yield c
    c.teardown()


def test_any_node_leading(cluster, uid):
    lead = cluster.leader()
    eps = cluster.requests
    leader_ep = eps[lead]
    others = [e for e in eps if e != leader_ep]
    orders = [[leader_ep] + others, others + [leader_ep], ",".join(reversed(eps))]
    for k, order in enumerate(orders):
        with conveyor.Client(order, timeout=5) as c:
            h = c.hello()
            assert h.leader == leader_ep
            sid = f"{uid}-{k}"
            svc = c.register(sid, uid, "source", "tcp://x:1", lease_ms=60000)
            assert svc.service_id == sid and c.endpoint == leader_ep
            assert c.get_service(sid).service_id == sid
            assert sid in [s.service_id for s in c.list_services(service_name=uid)]
            c.deregister(sid)
            with pytest.raises(conveyor.NotFound):
                c.get_service(sid)
    # one follower's endpoint: redirected to the leader, which is learnt
    with conveyor.Client(others[0], timeout=5) as c:
        c.create_topic(uid, 3)
        assert c.endpoints == (others[0], leader_ep) and c.endpoint == leader_ep
        j = c.join_group(uid, [uid])
        assert len(j.assignment) == 3
        c.leave_group(uid, j.member_id)
        c.delete_group(uid)
    # followers answer hello, stats, events_since and cluster_status themselves
    with conveyor.Client(others[1], timeout=5) as c:
        st = c.cluster_status()
        assert st.state == "follower" and not st.leading
        assert st.leader == leader_ep and [s.id for s in st.servers] == [1, 2, 3]
        assert c.events_since(0).seq >= 1 and "requests" in c.stats()
        assert c.endpoint == others[1]
    with conveyor.Client(eps, timeout=5) as c:
        # membership: remove a follower, then add it back
        follower = eps.index(others[1])
        c.cluster_remove(follower + 1)
        assert c.endpoint == leader_ep
        st = c.cluster_status()
        assert st.leading and [s.id for s in st.servers] == sorted(
            {1, 2, 3} - {follower + 1})
        c.cluster_remove(follower + 1)          # again: already done, no error
        c.cluster_add(follower + 1, cluster.raft[follower])
        assert st.server(lead + 1).request_endpoint == leader_ep
        assert [s.id for s in c.cluster_status().servers] == [1, 2, 3]
        with conveyor.Client(others[1], timeout=2) as f:
            wait_for(lambda: f.cluster_status().leader == leader_ep, 10,
                     "the node added back follows the leader")
            c.register(f"{uid}-back", uid, "sink", "tcp://x:2", lease_ms=60000)
            seq = c.hello().seq
            wait_for(lambda: f.events_since(0).seq == seq, 5, "the node added back catching up")

    async def aio():
        async with AsyncClient(",".join(reversed(eps)), timeout=5) as ac:
            await ac.register(f"{uid}-aio", uid, "sink", "tcp://x:3", lease_ms=60000)
            assert ac.endpoint == leader_ep
            assert (await ac.cluster_status()).leading
            await ac.deregister(f"{uid}-aio")
    asyncio.run(asyncio.wait_for(aio(), 20))


def _history(client: conveyor.Client) -> List[conveyor.Event]:
    out: List[conveyor.Event] = []
    since = 0
    while True:
        page = client.events_since(since)
        out.extend(page.events)
        if not page.more or not page.events:
            return out
        since = page.events[-1].seq


def test_leader_killed_under_load(cluster, uid, caplog):
    caplog.set_level(logging.INFO, logger="conveyor")
    lead = cluster.leader()
    eps = cluster.requests
    dead = eps[lead]
    client = conveyor.Client(eps, timeout=5)
    client.create_topic(uid, 4)
    reg = conveyor.Registration(f"{uid}-svc", uid, "source", "tcp://x:1", server=client)
    member = conveyor.GroupMember(uid, [uid], server=client)
    watch = conveyor.Watch("", server=client)
    assert reg._client.endpoint == dead and member._client.endpoint == dead
    assert watch.node == dead                     # all of them on the leader
    snapshot = watch.get(2)
    assert snapshot is not None and snapshot.type == "snapshot"
    member_id = member.member_id

    stop = threading.Event()
    seen: List[conveyor.Event] = []
    errors: List[BaseException] = []
    latencies: List[float] = []

    def consume():
        while not stop.is_set():
            try:
                ev = watch.get(0.1)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            if ev is not None:
                seen.append(ev)

    def calls():
        k = 0
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                sid = f"{uid}-loop-{k % 5}"
                client.register(sid, f"{uid}-loop", "sink", "tcp://y:1", lease_ms=60000)
                client.get_service(sid)
                client.list_services(service_name=f"{uid}-loop")
                client.fetch_offsets(uid)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return
            latencies.append(time.monotonic() - t0)
            k += 1
            time.sleep(0.02)

    aio_seen: List[conveyor.Event] = []
    aio_calls = [0]

    def aio_part():
        async def main():
            async with AsyncClient(",".join(eps), timeout=5) as ac:
                async with AsyncWatch(f"service/{uid}-aio/", server=ac) as aw:
                    assert aw.node == dead
                    k = 0
                    while not stop.is_set():
                        await ac.register(f"{uid}-aio-{k % 3}", f"{uid}-aio", "sink",
                                          "tcp://z:1", lease_ms=60000)
                        aio_calls[0] += 1
                        k += 1
                        ev = await aw.get(0.05)
                        while ev is not None:
                            aio_seen.append(ev)
                            ev = await aw.get(0.01)
        try:
            asyncio.run(asyncio.wait_for(main(), 60))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=f, daemon=True) for f in (consume, calls, aio_part)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: len(latencies) >= 5 and aio_calls[0] >= 5 or errors, 10,
                 "calls running before the failover")
        assert not errors, errors
        beats_before, calls_before = reg.heartbeats, len(latencies)

        cluster.kill(lead)
        killed_at = time.monotonic()
        new = cluster.leader(timeout=10)
        assert new != lead
        leader_ep = eps[new]
        took_over = time.monotonic()

        # Every component goes on with the new leader.
        wait_for(lambda: reg.heartbeats >= beats_before + 3 or errors, 10,
                 "heartbeats to the new leader")
        wait_for(lambda: len(latencies) >= calls_before + 10 or errors, 10,
                 "the loop of calls going on")
        wait_for(lambda: watch.node not in (None, dead) or errors, 10, "the watch moving")
        # The member's thread moves on its own heartbeats, not the registration's.
        wait_for(lambda: member._client.endpoint == leader_ep or errors, 10, "the member moving")
        assert reg._client.endpoint == leader_ep and member._client.endpoint == leader_ep
        # Past two leases and sessions after the takeover: nothing expired.
        time.sleep(max(0.0, took_over + 2 * LEASE_MS / 1000 + 0.5 - time.monotonic()))
        assert not errors, errors
        last = client.hello().seq
        wait_for(lambda: (seen and seen[-1].seq >= last) or errors, 10,
                 "the watch catching up")
        wait_for(lambda: (aio_seen and aio_seen[-1].seq >= max(
            e.seq for e in _history(client) if e.topic.startswith(f"service/{uid}-aio/")))
            or errors, 10, "the async watch catching up")
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert not errors, errors
    assert max(latencies) < 5.0
    assert time.monotonic() - killed_at < 30

    history = _history(client)
    svc_events = [e for e in history if e.topic.startswith(f"service/{uid}/")]
    assert not [e for e in svc_events if e.type in ("expired", "deregistered")], svc_events
    assert not [e for e in svc_events if e.service.health == "unhealthy"], svc_events
    # restored as unknown by the new leader, healthy again at the next heartbeat
    assert [e.service.health for e in svc_events if e.type == "health"][-2:] == \
        ["unknown", "healthy"]
    assert reg.registrations == 1 and reg.last_error is None

    membership = [e for e in history if e.topic == f"group/{uid}/membership"]
    assert [e.type for e in membership] == ["joined"], membership
    assert member.member_id == member_id and member.joins == 1
    assert member.assignment and len(member.assignment) == 4
    assert [m.member_id for m in client.get_group(uid).members] == [member_id]

    # The watch: every event after its snapshot, once, in seq order, no gap.
    want = [e.seq for e in history if e.seq > snapshot.seq]
    got = [e.seq for e in seen if e.seq <= want[-1]]
    assert got == want
    assert watch.snapshots == 1 and watch.switches >= 1
    aio_want = [e.seq for e in history if e.topic.startswith(f"service/{uid}-aio/")]
    aio_got = [e.seq for e in aio_seen if e.type != "snapshot"]
    assert aio_got == [s for s in aio_want if s > aio_seen[0].seq]

    # One line each for the registration and the member, no warnings (when
    # the election took less than a lease: on a starved machine it may not,
    # and a warning then tells that no leader answered for a lease).
    records = [r for r in caplog.records if r.name == "conveyor"]
    lines = [r.getMessage() for r in records]
    svc_lines = [m for m in lines if m.startswith(f"service {uid}-svc:")]
    group_lines = [m for m in lines if m.startswith(f"group {uid}:")]
    assert 1 <= len(svc_lines) <= 2 and 1 <= len(group_lines) <= 2, lines
    if took_over - killed_at < LEASE_MS / 1000 / 2:
        assert not [r for r in records if r.levelno >= logging.WARNING], lines
        assert len(svc_lines) == 1 and len(group_lines) == 1, lines

    watch.close()
    member.close()
    reg.close()
    assert client.get_group(uid).members == []
    with pytest.raises(conveyor.NotFound):
        client.get_service(f"{uid}-svc")
    client.close()
