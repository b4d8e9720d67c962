"""Watch: snapshot then events in order; gap recovery (per root, by
heartbeat, by dropping the subscription); compaction; server restart."""

from __future__ import annotations

import threading
import time

import zmq

import conveyor

from conveyor_testlib import wait_for


def collect(watch, n, timeout=5.0):
    """The next n events (fails if they do not come in time)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        left = deadline - time.monotonic()
        assert left > 0, f"got only {out!r}"
        ev = watch.get(left)
        if ev is not None:
            out.append(ev)
    return out


def quiet(watch, secs=0.3):
    ev = watch.get(secs)
    assert ev is None, f"unexpected event {ev!r}"


def live(watch, timeout=3.0):
    """Wait for a sys/heartbeat: the subscription is live from then on."""
    deadline = time.monotonic() + timeout
    while watch.last_heartbeat is None:
        assert time.monotonic() < deadline, "no sys/heartbeat: subscription not live"
        ev = watch.get(0.05)
        assert ev is None, f"unexpected event {ev!r}"


def lossy(watch, drop_seqs, heartbeats=False):
    """Make the watch lose the subscription messages with these seqs (and
    every sys/heartbeat if heartbeats is true)."""
    orig = watch._core.message
    dropped = []

    def message(topic, body):
        if topic == "sys/heartbeat" and heartbeats:
            return iter(())
        if topic != "sys/heartbeat" and body.get("seq") in drop_seqs:
            dropped.append(body.get("seq"))
            return iter(())
        return orig(topic, body)

    watch._core.message = message
    return dropped


def reg(client, uid, sid, **kw):
    return client.register(sid, uid, "source", f"tcp://10.0.0.1:{len(sid)}", lease_ms=60000, **kw)


def test_snapshot_then_events_in_order(daemon, client, uid):
    reg(client, uid, f"{uid}-1")
    reg(client, uid, f"{uid}-2")
    with conveyor.Watch(f"service/{uid}/", server=daemon.requests) as w:
        snap = w.get(2)
        assert snap.type == "snapshot" and snap.is_snapshot
        assert [s.service_id for s in snap.services] == [f"{uid}-1", f"{uid}-2"]
        assert snap.groups is None and snap.topics is None
        quiet(w)                      # nothing from before the snapshot
        reg(client, uid, f"{uid}-3")
        client.heartbeat(f"{uid}-1", health="degraded")
        client.deregister(f"{uid}-2")
        evs = collect(w, 3)
        assert [(e.type, e.service.service_id) for e in evs] == [
            ("registered", f"{uid}-3"), ("health", f"{uid}-1"), ("deregistered", f"{uid}-2")]
        assert all(e.seq > snap.seq for e in evs)
        assert [e.seq for e in evs] == sorted(e.seq for e in evs)
        assert evs[1].prev == evs[0].seq and evs[0].topic == f"service/{uid}/registered"
        assert evs[1].service.health == "degraded"
        quiet(w)


def test_gap_detected_by_prev_is_recovered(daemon, client, uid):
    with conveyor.Watch(f"service/{uid}/", server=daemon.requests) as w:
        snap = w.get(2)
        base = snap.seq
        before = w.gaps
        reg(client, uid, f"{uid}-a")
        (first,) = collect(w, 1)
        # lose the next two events of this root (and the heartbeats, so the
        # repair must come from the next event's prev)
        dropped = lossy(w, {first.seq + 1, first.seq + 2}, heartbeats=True)
        s1 = reg(client, uid, f"{uid}-b")
        client.heartbeat(f"{uid}-a", health="degraded")
        client.heartbeat(f"{uid}-a", health="healthy")
        evs = collect(w, 3)
        assert dropped, "the test did not drop anything"
        assert [(e.type, e.service.service_id, e.service.health) for e in evs] == [
            ("registered", f"{uid}-b", "healthy"),
            ("health", f"{uid}-a", "degraded"),
            ("health", f"{uid}-a", "healthy")]
        assert [e.seq for e in evs] == sorted(e.seq for e in evs)
        assert evs[0].service.revision == s1.revision
        assert w.gaps == before + 1 and first.seq > base
        quiet(w)


def test_lost_last_event_recovered_by_heartbeat(daemon, client, uid):
    with conveyor.Watch(f"service/{uid}/", server=daemon.requests) as w:
        snap = w.get(2)
        live(w)
        dropped = lossy(w, set(range(snap.seq + 1, snap.seq + 50)))
        reg(client, uid, f"{uid}-only")   # its event is lost, and nothing follows
        (ev,) = collect(w, 1, timeout=4.0)  # the next sys/heartbeat reveals it
        assert dropped
        assert ev.type == "registered" and ev.service.service_id == f"{uid}-only"


def test_gap_from_a_dropped_subscription(daemon, client, uid):
    prefix = f"service/{uid}/"
    with conveyor.Watch(prefix, server=daemon.requests) as w:
        assert w.get(2).is_snapshot
        with w._lock:
            w._sub.setsockopt(zmq.UNSUBSCRIBE, prefix.encode())
        time.sleep(0.2)    # let the unsubscription reach the publisher
        for i in range(5):
            reg(client, uid, f"{uid}-{i}")
        with w._lock:
            w._sub.setsockopt(zmq.SUBSCRIBE, prefix.encode())
        time.sleep(0.2)
        client.heartbeat(f"{uid}-0", health="degraded")
        evs = collect(w, 6)
        assert [e.service.service_id for e in evs] == [f"{uid}-{i}" for i in range(5)] + [f"{uid}-0"]
        assert evs[-1].type == "health"
        assert [e.seq for e in evs] == sorted(e.seq for e in evs)
        quiet(w)


def test_compacted_history_gives_a_new_snapshot(conveyord, uid):
    d = conveyord(history=4)
    with conveyor.Client(d.requests) as c, conveyor.Watch("service/", server=d.requests) as w:
        first = w.get(2)
        assert first.is_snapshot and first.services == []
        reg(c, uid, f"{uid}-a")
        collect(w, 1)
        seq = w.seq
        lossy(w, set(range(seq + 1, seq + 8)), heartbeats=True)
        for i in range(7):    # more than the history keeps, all lost
            c.heartbeat(f"{uid}-a", health="degraded" if i % 2 == 0 else "healthy")
        reg(c, uid, f"{uid}-b")
        evs = collect(w, 1)
        snap = evs[0]
        assert snap.is_snapshot, evs
        assert [s.service_id for s in snap.services] == [f"{uid}-a", f"{uid}-b"]
        assert w.snapshots == 2
        c.deregister(f"{uid}-a")
        (ev,) = collect(w, 1)
        assert ev.type == "deregistered" and ev.seq > snap.seq


def test_server_restart_gives_a_new_snapshot(conveyord, uid):
    d = conveyord()
    listen, publish = d.requests, d.events
    with conveyor.Watch("service/", server=listen, timeout=1.0) as w:
        assert w.get(2).is_snapshot
        with conveyor.Client(listen) as c:
            for i in range(5):
                reg(c, uid, f"{uid}-old{i}")
        collect(w, 5)
        assert d.stop() == 0
        d2 = conveyord(listen=listen, publish=publish)
        with conveyor.Client(d2.requests) as c:
            reg(c, uid, f"{uid}-new")
        # the restarted server's seq is below what the watch saw: resync
        deadline = time.monotonic() + 6
        snap = None
        while time.monotonic() < deadline and snap is None:
            ev = w.get(0.2)
            if ev is not None and ev.is_snapshot:
                snap = ev
        assert snap is not None, "no snapshot after the restart"
        assert [s.service_id for s in snap.services] == [f"{uid}-new"]
        assert w._core.restarts == 1


def test_callback_form(daemon, client, uid):
    got = []
    lock = threading.Lock()

    def on_event(ev):
        with lock:
            got.append(ev)

    w = conveyor.Watch(f"service/{uid}/", callback=on_event, server=daemon.requests)
    try:
        wait_for(lambda: len(got) == 1, 3, "snapshot")
        reg(client, uid, f"{uid}-x")
        client.deregister(f"{uid}-x")
        wait_for(lambda: len(got) == 3, 3, "two events")
        assert [e.type for e in got] == ["snapshot", "registered", "deregistered"]
    finally:
        w.close()
    n = len(got)
    reg(client, uid, f"{uid}-y")
    time.sleep(0.3)
    assert len(got) == n       # closed: no more callbacks
    assert w.closed and list(w) == []


def test_group_watch(daemon, client, uid):
    client.create_topic(uid, 2)
    j = client.join_group(uid, [uid], session_timeout_ms=30000)
    with conveyor.Watch(f"group/{uid}/", server=daemon.requests) as w:
        snap = w.get(2)
        assert snap.is_snapshot and snap.services is None
        assert [g.group_id for g in snap.groups] == [uid]
        assert snap.groups[0].generation == 1
        j2 = client.join_group(uid, [uid], session_timeout_ms=30000)
        evs = collect(w, 2)
        assert [(e.topic, e.type) for e in evs] == [
            (f"group/{uid}/membership", "joined"), (f"group/{uid}/assignment", "assignment")]
        assert evs[0].member_id == j2.member_id and evs[0].generation == 2
        assert evs[1].assignments == {j.member_id: ((uid, 0),), j2.member_id: ((uid, 1),)} or \
            evs[1].assignments == {j.member_id: ((uid, 1),), j2.member_id: ((uid, 0),)}
        assert evs[1].group_id == uid
        client.leave_group(uid, j.member_id)
        client.leave_group(uid, j2.member_id)
        # Two leaves are one rebalance or two, depending on whether the
        # second arrived before the server finished the batch of the first
        # (coalescing, section 5); either way both are announced, in order,
        # and the last assignment is the empty group's.
        evs = [w.get(5) for _ in range(3)]
        assert all(e is not None for e in evs), evs
        if evs[1].type == "assignment":
            evs.append(w.get(5))
            assert [e.type for e in evs] == ["left", "assignment", "left", "assignment"]
        else:
            assert [e.type for e in evs] == ["left", "left", "assignment"]
        assert [e.member_id for e in evs if e.type == "left"] == [j.member_id, j2.member_id]
        assert evs[-1].assignments == {}


def test_everything_and_topics(daemon, client, uid):
    with conveyor.Watch("", server=daemon.requests) as w:
        snap = w.get(3)
        assert snap.services is not None and snap.groups is not None and snap.topics is not None
        client.create_topic(uid, 3)
        ev = None
        while ev is None or ev.topic != f"topic/{uid}/changed":
            ev = w.get(3)
            assert ev is not None
        assert ev.partitions == 3 and ev.type == "changed"
    with conveyor.Watch("topic/", server=daemon.requests) as w:
        assert w.get(2).topics[uid] == 3


def test_since_replays_history(daemon, client, uid):
    start = client.hello().seq
    reg(client, uid, f"{uid}-1")
    client.deregister(f"{uid}-1")
    with conveyor.Watch(f"service/{uid}/", since=start, server=daemon.requests) as w:
        evs = collect(w, 2)
        assert [e.type for e in evs] == ["registered", "deregistered"]
        quiet(w)


def test_no_snapshot_and_iter_timeout(daemon, client, uid):
    with conveyor.Watch(f"service/{uid}/", snapshot=False, server=daemon.requests) as w:
        t0 = time.monotonic()
        assert list(w.iter(timeout=0.3)) == []
        assert 0.25 < time.monotonic() - t0 < 2
        reg(client, uid, f"{uid}-1")
        assert [e.type for e in w.iter(timeout=1.0)] == ["registered"]


def test_narrow_prefix_has_no_false_gaps(daemon, client, uid):
    reg(client, uid, f"{uid}-1")
    with conveyor.Watch(f"service/{uid}/health", server=daemon.requests) as w:
        snap = w.get(2)
        assert [s.service_id for s in snap.services] == [f"{uid}-1"]
        reg(client, uid, f"{uid}-1", weight=5)      # 'updated': not watched
        client.heartbeat(f"{uid}-1", health="degraded")
        (ev,) = collect(w, 1)
        assert ev.type == "health"
        assert w.gaps == 0    # no gap was suspected
        quiet(w)
