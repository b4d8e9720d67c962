"""GroupMember: callbacks on joins, leaves, crashes and rejoins; commits;
static membership; the heartbeat backstop."""

from __future__ import annotations

import os
import time

import pytest

import conveyor

from conveyor_testlib import Recorder, wait_for


def held(rec: Recorder) -> set:
    """The partitions a member holds according to its callbacks alone."""
    s: set = set()
    for kind, parts in rec.snapshot():
        assert all(isinstance(tp, tuple) and len(tp) == 2 for tp in parts)
        if kind == "assigned":
            assert not (s & set(parts)), f"assigned twice: {parts}"
            s |= set(parts)
        else:
            assert set(parts) <= s, f"revoked what it did not hold: {parts}"
            s -= set(parts)
    return s


def start(daemon, uid, topics, rec=None, **kw) -> conveyor.GroupMember:
    rec = rec if rec is not None else Recorder()
    m = conveyor.GroupMember(uid, topics, on_assigned=rec.cb("assigned"),
                             on_revoked=rec.cb("revoked"), server=daemon.requests, **kw)
    m.rec = rec
    return m


def deafen(m) -> None:
    """Make a member miss every event (and sys/heartbeat)."""
    m._on_event = lambda topic, body: None
    m._on_sys_heartbeat = lambda: None


def settled(client, uid, members, partitions):
    """Everyone agrees with the server: same generation, same assignment as
    get_group, callbacks replayed give the assignment, and together the
    members own every partition exactly once."""
    g = client.get_group(uid)
    if sorted(m.member_id for m in members) != sorted(x.member_id for x in g.members):
        return False
    union = []
    for m in members:
        if m.generation != g.generation or m.assignment != g.assignments[m.member_id]:
            return False
        if held(m.rec) != set(m.assignment):
            return False
        union += m.assignment
    return sorted(union) == sorted(partitions)


def test_callbacks_follow_joins_and_leaves(daemon, client, uid):
    client.create_topic(uid, 6)
    parts = [(uid, p) for p in range(6)]
    m1 = start(daemon, uid, [uid])
    try:
        assert m1.generation == 1 and m1.assignment == tuple(parts)
        wait_for(lambda: m1.rec.snapshot() == [("assigned", parts)], 3, "initial on_assigned")

        m2 = start(daemon, uid, [uid])
        wait_for(lambda: settled(client, uid, [m1, m2], parts), 5, "two members settled")
        # m1 lost 3 partitions: one on_revoked, no on_assigned
        assert [k for k, _ in m1.rec.snapshot()] == ["assigned", "revoked"]
        assert len(m1.rec.of("revoked")[0]) == 3
        assert m2.rec.snapshot() == [("assigned", list(m2.assignment))]

        m3 = start(daemon, uid, [uid])
        wait_for(lambda: settled(client, uid, [m1, m2, m3], parts), 5, "three settled")
        assert all(len(m.assignment) == 2 for m in (m1, m2, m3))
        # The member lists come with the assignment event, which may follow
        # the heartbeat reply that brought the generation.
        everyone = tuple(sorted(m.member_id for m in (m1, m2, m3)))
        wait_for(lambda: m1.members == m2.members == m3.members == everyone, 5,
                 "every member's list of members")

        # a graceful leave: m3 revokes everything, the others get its share
        m3.close()
        assert m3.rec.snapshot()[-1] == ("revoked", sorted(m3.rec.of("assigned")[0]))
        assert m3.assignment == ()
        wait_for(lambda: settled(client, uid, [m1, m2], parts), 5, "two again")
        assert len(m1.assignment) == len(m2.assignment) == 3
        m2.close()
        wait_for(lambda: settled(client, uid, [m1], parts), 5, "one again")
    finally:
        m1.close()
    assert client.get_group(uid).members == []


def test_members_from_an_assignment_event_after_the_heartbeat(daemon, client, uid):
    """A heartbeat reply brings a new generation (without its members); the
    generation's assignment event, arriving after it, still brings them."""
    client.create_topic(uid, 4)
    m1 = start(daemon, uid, [uid])
    held_events = []
    on_event = m1._on_event
    m1._on_event = lambda topic, body: held_events.append((topic, body))
    try:
        m2 = start(daemon, uid, [uid])
        try:
            gen = client.get_group(uid).generation
            m1._beat_now.set()
            wait_for(lambda: m1.generation == gen, 5, "the heartbeat bringing the generation")
            assert m1.members == (m1.member_id,)    # not in a heartbeat reply

            def assignment_held():
                return any(b.get("type") == "assignment" and b.get("generation") == gen
                           for _, b in held_events)
            wait_for(assignment_held, 5, "the generation's assignment event")
            for topic, body in list(held_events):
                on_event(topic, body)
            assert m1.members == tuple(sorted((m1.member_id, m2.member_id)))
            assert m1.generation == gen
        finally:
            m2.close()
    finally:
        m1.close()


def test_crash_then_rejoin(daemon, client, uid):
    client.create_topic(uid, 6)
    parts = [(uid, p) for p in range(6)]
    ms = [start(daemon, uid, [uid]) for _ in range(3)]
    try:
        wait_for(lambda: settled(client, uid, ms, parts), 5, "three settled")
        crashed = ms.pop()
        lost = set(crashed.assignment)
        seq = client.hello().seq
        crashed.close(leave=False)          # no leave: like a crash
        g = client.get_group(uid)
        assert len(g.members) == 3
        gone = g.member(crashed.member_id)  # its thread is stopped: its last heartbeat
        wait_for(lambda: settled(client, uid, ms, parts), 5, "survivors own everything")
        # The session runs from the last heartbeat (up to a third of it before
        # close()), so it is timed on the server's clock, from that heartbeat.
        expired = [e for e in client.events_since(seq, prefix=f"group/{uid}/").events
                   if e.type == "expired" and e.member_id == crashed.member_id]
        assert len(expired) == 1, expired
        took = expired[0].body["at"] - gone.last_heartbeat_at
        assert took >= gone.session_timeout_ms, \
            f"expired {took} ms after its last heartbeat, before its session ran out"
        gained = set()
        for m in ms:
            gained |= set(sum(m.rec.of("assigned")[1:], []))
        assert lost <= gained

        back = start(daemon, uid, [uid])   # the crashed one comes back
        ms.append(back)
        wait_for(lambda: settled(client, uid, ms, parts), 5, "three settled again")
        assert all(m.rec.of("revoked") for m in ms[:2])
    finally:
        for m in ms:
            m.close()


def test_rejoin_on_unknown_member(daemon, client, uid):
    client.create_topic(uid, 2)
    m = start(daemon, uid, [uid])
    try:
        wait_for(lambda: m.rec.of("assigned"), 3, "initial assignment")
        old = m.member_id
        client.leave_group(uid, old)        # removed behind its back
        wait_for(lambda: m.joins == 2, 5, "rejoin")
        assert m.member_id != old
        wait_for(lambda: settled(client, uid, [m], [(uid, 0), (uid, 1)]), 5, "settled")
        assert [k for k, _ in m.rec.snapshot()] == ["assigned", "revoked", "assigned"]
    finally:
        m.close()


def test_rejoin_after_own_session_expired_event(daemon, client, uid):
    """A member that stalls past its session (no heartbeats) is expired by the
    server; the `expired` event naming it makes it revoke and rejoin."""
    client.create_topic(uid, 2)
    m = start(daemon, uid, [uid])
    try:
        wait_for(lambda: m.rec.of("assigned"), 3, "initial")
        orig = m._heartbeat
        m._heartbeat = lambda: None         # stall
        wait_for(lambda: m.joins >= 2, 5, "rejoin after the expired event")
        m._heartbeat = orig
        wait_for(lambda: settled(client, uid, [m], [(uid, 0), (uid, 1)]), 5, "settled")
        assert [k for k, _ in m.rec.snapshot()][:3] == ["assigned", "revoked", "assigned"]
    finally:
        m.close()


def test_rejoin_after_unknown_member_heartbeat(daemon, client, uid):
    """Same, for a member that also missed the events: its next heartbeat
    gets UNKNOWN_MEMBER."""
    client.create_topic(uid, 2)
    m = start(daemon, uid, [uid])
    try:
        wait_for(lambda: m.rec.of("assigned"), 3, "initial")
        deafen(m)
        orig = m._heartbeat
        m._heartbeat = lambda: None
        wait_for(lambda: client.get_group(uid).members == [], 5, "session expiry")
        assert m.joins == 1
        m._heartbeat = orig
        wait_for(lambda: m.joins == 2, 5, "rejoin after UNKNOWN_MEMBER")
        wait_for(lambda: settled(client, uid, [m], [(uid, 0), (uid, 1)]), 5, "settled")
        assert [k for k, _ in m.rec.snapshot()] == ["assigned", "revoked", "assigned"]
    finally:
        m.close()


def test_heartbeat_reply_is_a_backstop(daemon, client, uid):
    """A member that misses every event still learns new generations from
    its heartbeat replies."""
    client.create_topic(uid, 4)
    parts = [(uid, p) for p in range(4)]
    deaf = start(daemon, uid, [uid])
    deafen(deaf)
    try:
        other = start(daemon, uid, [uid])
        try:
            wait_for(lambda: settled(client, uid, [deaf, other], parts), 3, "caught up")
            assert len(deaf.rec.of("revoked")) == 1
        finally:
            other.close()
        wait_for(lambda: settled(client, uid, [deaf], parts), 3, "caught up again")
    finally:
        deaf.close()


def test_commit_with_current_generation(daemon, client, uid):
    client.create_topic(uid, 4)
    # A long session: heartbeats every 10 s, so catching up after a failed
    # commit must come from the commit itself.
    m = start(daemon, uid, [uid], session_timeout_ms=30000)
    deafen(m)                                  # and no events either
    other = None
    try:
        mine = m.assignment
        m.commit({mine[0]: 5})
        m.commit([(mine[1][0], mine[1][1], 6)])
        assert client.fetch_offsets(uid, [mine[0], mine[1]]) == {mine[0]: 5, mine[1]: 6}

        other = start(daemon, uid, [uid], session_timeout_ms=30000)
        assert m.generation == 1
        with pytest.raises(conveyor.IllegalGeneration):
            m.commit({mine[0]: 7})
        wait_for(lambda: m.generation == 2, 3, "catch-up after ILLEGAL_GENERATION")
        theirs = other.assignment[0]
        with pytest.raises(conveyor.NotOwner):
            m.commit({theirs: 1})
        m.commit({m.assignment[0]: 8})
        assert client.fetch_offsets(uid, [m.assignment[0]])[m.assignment[0]] == 8
    finally:
        m.close()
        if other is not None:
            other.close()


def test_static_member_replaced_after_crash(daemon, client, uid):
    client.create_topic(uid, 4)
    parts = [(uid, p) for p in range(4)]
    a = start(daemon, uid, [uid], instance_id=f"{uid}-a", session_timeout_ms=10000)
    b = start(daemon, uid, [uid], instance_id=f"{uid}-b", session_timeout_ms=10000)
    a2 = None
    try:
        wait_for(lambda: settled(client, uid, [a, b], parts), 5, "settled")
        gen, a_parts, b_calls = a.generation, a.assignment, len(b.rec.snapshot())
        a.close(leave=False)                 # crash
        a2 = start(daemon, uid, [uid], instance_id=f"{uid}-a", session_timeout_ms=10000)
        # same partitions, same generation, nothing for the other member
        assert a2.generation == gen and a2.assignment == a_parts
        wait_for(lambda: settled(client, uid, [a2, b], parts), 5, "settled again")
        assert len(b.rec.snapshot()) == b_calls
        assert a2.rec.snapshot() == [("assigned", list(a_parts))]
    finally:
        for m in (a, b, a2):
            if m is not None:
                m.close()


def test_fenced_member_stays_out(daemon, client, uid):
    client.create_topic(uid, 2)
    a = start(daemon, uid, [uid], instance_id=f"{uid}-x")
    a2 = None
    try:
        wait_for(lambda: a.rec.of("assigned"), 3, "initial")
        a2 = start(daemon, uid, [uid], instance_id=f"{uid}-x")   # takes over
        wait_for(lambda: a.fenced, 3, "fenced")
        assert a.rec.snapshot()[-1] == ("revoked", [(uid, 0), (uid, 1)])
        assert a.assignment == ()
        cpu0 = sum(os.times()[:2])
        time.sleep(0.5)    # it must not come back (that would fence a2)
        # ... nor spin while it stays out
        assert sum(os.times()[:2]) - cpu0 < 0.25
        g = client.get_group(uid)
        assert [m.member_id for m in g.members] == [a2.member_id]
        assert a.joins == 1
    finally:
        a.close()
        if a2 is not None:
            a2.close()


def test_callback_exceptions_are_logged_not_fatal(daemon, client, uid, caplog):
    client.create_topic(uid, 2)
    calls = []

    def boom(parts):
        calls.append(parts)
        raise RuntimeError("callback bug")

    m = conveyor.GroupMember(uid, [uid], on_assigned=boom, server=daemon.requests)
    try:
        wait_for(lambda: calls, 3, "callback")
        other = conveyor.GroupMember(uid, [uid], server=daemon.requests)
        other.close()
        wait_for(lambda: len(calls) >= 2, 5, "callback after the thread survived")
        assert "callback bug" in caplog.text
    finally:
        m.close()


def test_constructor_errors(daemon, client, uid):
    with pytest.raises(conveyor.BadRequest):
        conveyor.GroupMember("bad group!", [uid], server=daemon.requests)
    m = conveyor.GroupMember(uid, [uid], assignor="range", server=daemon.requests)
    try:
        with pytest.raises(conveyor.Conflict):
            conveyor.GroupMember(uid, [uid], assignor="roundrobin", server=daemon.requests)
        with pytest.raises(conveyor.NotFound):
            conveyor.GroupMember(uid, [uid], service_id=f"{uid}-none", server=daemon.requests)
    finally:
        m.close()


def test_member_linked_to_a_registration(daemon, client, uid):
    with conveyor.Registration(uid, uid, "sink", "tcp://x:1", lease_ms=300,
                               server=daemon.requests) as reg:
        with conveyor.GroupMember(uid, [uid], service_id=reg.service_id,
                                  service_name=uid, server=daemon.requests) as m:
            g = client.get_group(uid)
            assert g.members[0].service_id == uid and g.members[0].member_id == m.member_id
    assert client.get_group(uid).members == []
