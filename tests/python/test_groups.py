"""Black-box conformance tests for conveyord's topics and consumer groups:
protocol.md section 4 (topics), section 5 (consumer groups), the group and
topic events of section 6, the group counters of section 8 and the fine
points of section 10.

Written from the wire spec only. Every wait is bounded and polls for a
condition.

Run with: /usr/bin/python3 -m pytest tests/python/test_groups.py
"""

import random
import time

import pytest
import zmq

from conftest import now_ms, unpack

GROUP_KEYS = {"group_id", "generation", "assignor", "topics", "members"}
MEMBER_KEYS = {"member_id", "service_name", "service_id", "instance_id", "topics",
               "assignment", "joined_at", "last_heartbeat_at", "session_timeout_ms"}
JOIN_KEYS = {"group_id", "member_id", "generation", "assignment", "members"}
NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-"
ASSIGNORS = ("sticky", "range", "roundrobin")

# Section 5: a member whose session is over "is removed within 250 ms". We
# measure on the client clock from the reply that last renewed it, so on
# top of the spec's 250 ms we allow a 150 ms scheduling/transport margin.
REMOVAL_SLACK = 0.250 + 0.150
# A removal must not come before its deadline; the deadline is at least the
# timeout after we *sent* the renewing request. 20 ms covers the rounding of
# the server's millisecond clock.
EARLY_TOLERANCE = 0.020
# Section 5: a join reply comes "within 50 ms of the request on an idle
# server"; 150 ms of margin for a loaded test machine.
IDLE_JOIN_BOUND = 0.050 + 0.150
# 100 pipelined joins: the server is not idle, but every reply must still
# come within this of its request.
BUSY_JOIN_BOUND = 1.5


def is_int(x):
    return type(x) is int


# --------------------------------------------------------------------------
# helpers


def check_assignment(a):
    """An assignment: [[topic, partition], ...] sorted by topic then partition."""
    assert isinstance(a, list), f"assignment is not an array: {a!r}"
    for x in a:
        assert isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) \
            and is_int(x[1]) and x[1] >= 0, f"bad [topic, partition] pair {x!r} in {a!r}"
    assert a == sorted(a), f"assignment not sorted by topic then partition: {a!r}"
    assert len({tuple(x) for x in a}) == len(a), f"duplicate pair in {a!r}"


def check_join_reply(r, gid, asked=None):
    assert JOIN_KEYS <= set(r), f"join reply lacks keys: {r!r}"
    assert r["group_id"] == gid
    assert isinstance(r["member_id"], str) and r["member_id"], r
    if asked:
        assert r["member_id"] == asked, f"asked for member id {asked!r}: {r!r}"
    assert is_int(r["generation"]), r
    check_assignment(r["assignment"])
    ms = r["members"]
    assert isinstance(ms, list) and all(isinstance(m, str) for m in ms), r
    assert ms == sorted(ms) and len(set(ms)) == len(ms), f"members not sorted/unique: {ms!r}"
    assert r["member_id"] in ms, r


def join(c, gid, topics, member_id=None, **kw):
    fields = {"group_id": gid, "topics": list(topics)}
    if member_id is not None:
        fields["member_id"] = member_id
    fields.update(kw)
    r = c.ok("join_group", **fields)
    check_join_reply(r, gid, member_id)
    return r


def get_group_reply(c, gid):
    r = c.ok("get_group", group_id=gid)
    assert is_int(r.get("seq")), r
    check_group_shape(r.get("group"), gid)
    return r


def get_group(c, gid):
    return get_group_reply(c, gid)["group"]


def check_group_shape(g, gid):
    assert isinstance(g, dict) and set(g) == GROUP_KEYS, f"group keys: {g!r}"
    assert g["group_id"] == gid
    assert is_int(g["generation"])
    assert g["assignor"] in ASSIGNORS, g
    assert isinstance(g["topics"], dict) and all(
        isinstance(k, str) and is_int(v) and v >= 1 for k, v in g["topics"].items()), g
    assert isinstance(g["members"], list), g
    for m in g["members"]:
        assert isinstance(m, dict) and set(m) == MEMBER_KEYS, f"member keys: {m!r}"
        assert isinstance(m["member_id"], str) and m["member_id"]
        for k in ("service_name", "service_id", "instance_id"):
            assert m[k] is None or (isinstance(m[k], str) and m[k]), m
        assert isinstance(m["topics"], list) and m["topics"] and \
            all(isinstance(t, str) for t in m["topics"]), m
        check_assignment(m["assignment"])
        for k in ("joined_at", "last_heartbeat_at", "session_timeout_ms"):
            assert is_int(m[k]), f"{k}: {m!r}"
    ids = [m["member_id"] for m in g["members"]]
    assert len(set(ids)) == len(ids), f"duplicate member ids: {ids!r}"


def members_of(g):
    return {m["member_id"]: m for m in g["members"]}


def assignments_of(g):
    return {m["member_id"]: m["assignment"] for m in g["members"]}


def latest_seq(c):
    return c.ok("hello")["seq"]


def reg(c, sid, name=None, **kw):
    return c.ok("register", service_id=sid, service_name=name or ("n-" + sid),
                service_type="source", endpoint="tcp://10.0.0.1:5000", **kw)


def history(c, prefix=""):
    """Every event the server still keeps (from events_since 0), as (topic, body)."""
    out, since = [], 0
    while True:
        r = c.ok("events_since", since=since, prefix=prefix, limit=1000)
        out += [(t, b) for t, b in r["events"]]
        if not r["more"]:
            return out
        since = out[-1][1]["seq"]


def root_of(topic):
    return "/".join(topic.split("/")[:2])


def check_chain(events):
    """Full history from seq 1: seq grows by one, prev chains per root."""
    last = {}
    for i, (topic, body) in enumerate(events):
        assert body["seq"] == i + 1, f"event {i}: seq {body['seq']}: {events!r}"
        assert is_int(body.get("at")), body
        root = root_of(topic)
        assert body.get("prev") == last.get(root, 0), \
            f"{topic} seq {body['seq']}: prev {body.get('prev')}, expected {last.get(root, 0)}"
        last[root] = body["seq"]


def check_rebalance_structure(events, gid):
    """Events of group/<gid>/ (in seq order): every membership event is
    followed, before any other assignment event, by the assignment event of
    its generation; assignment generations never go back and grow by at
    most one."""
    pending = []
    last_gen = None
    for topic, body in events:
        if topic == f"group/{gid}/membership":
            assert body["type"] in ("joined", "left", "expired", "fenced"), body
            assert isinstance(body["member_id"], str) and is_int(body["generation"]), body
            pending.append(body)
        elif topic == f"group/{gid}/assignment":
            assert body["type"] == "assignment", body
            gen = body["generation"]
            for m in pending:
                assert m["generation"] == gen, \
                    f"membership {m!r} not followed by the assignment of its generation ({body!r})"
            if last_gen is not None:
                assert gen in (last_gen, last_gen + 1), \
                    f"assignment generation went {last_gen} -> {gen}"
                if gen == last_gen:
                    assert any(m["type"] == "fenced" for m in pending), \
                        f"assignment event repeats generation {gen} without a static replacement"
            last_gen = gen
            pending = []
        else:
            raise AssertionError(f"unexpected topic {topic!r}")
    assert not pending, f"membership events without an assignment event: {pending!r}"


def check_assignment_event(body, gid=None):
    assert body["type"] == "assignment"
    assert is_int(body["generation"]) and body["assignor"] in ASSIGNORS, body
    assert isinstance(body["reason"], str), body
    a = body["assignments"]
    assert isinstance(a, dict), body
    for mid, asg in a.items():
        assert isinstance(mid, str)
        check_assignment(asg)
    assert is_int(body["seq"]) and is_int(body["prev"]) and is_int(body["at"]), body


def is_assignment(gid, gen=None):
    def pred(e):
        return e.topic == f"group/{gid}/assignment" and (
            gen is None or e.body.get("generation") == gen)
    return pred


def is_membership(gid, typ=None, member=None):
    def pred(e):
        return e.topic == f"group/{gid}/membership" and (
            typ is None or e.body.get("type") == typ) and (
            member is None or e.body.get("member_id") == member)
    return pred


def settle(c, gid, gen, timeout=1.0):
    """Wait (bounded) until group gid has reached generation gen; returns it.

    Only join replies wait for the rebalance they cause (section 5); the
    server rebalances "after handling the requests that are ready", so a
    read right after a leave_group or a growing create_topic may still be
    handled before that rebalance. Tests that read state after such a change
    wait for the rebalance first (and so also keep the next join from being
    coalesced with it)."""
    box = []

    def reached():
        g = get_group(c, gid)
        box[:] = [g]
        assert g["generation"] <= gen, f"generation {g['generation']} overshot {gen}"
        return g["generation"] == gen

    try:
        poll_until(reached, timeout, f"group {gid} to reach generation {gen}", step=0.005)
    except AssertionError as e:
        raise AssertionError(f"{e}; last seen {box!r}") from None
    return box[0]


def newer(seq, pred):
    """pred, restricted to events published after seq."""
    return lambda e: e.body.get("seq", 0) > seq and pred(e)


def after(sub, seq):
    """The events received so far that were published after seq."""
    return [e for e in sub.events if e.body.get("seq", 0) > seq]


def poll_until(cond, timeout, what, step=0.02):
    """Poll cond() until it is true or timeout passes (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def check_ownership(g, parts):
    """Section 5 invariant 1: every partition of every subscribed topic has
    exactly one owner among the members subscribed to that topic (and no
    member owns a partition of a topic it does not subscribe to)."""
    subs = {m["member_id"]: set(m["topics"]) for m in g["members"]}
    subscribed = set().union(*subs.values()) if subs else set()
    owner = {}
    for m in g["members"]:
        for t, p in m["assignment"]:
            assert t in subs[m["member_id"]], \
                f"{m['member_id']} owns {t}-{p} without subscribing to {t}: {g!r}"
            assert p < parts[t], f"{t}-{p} beyond the topic's {parts[t]} partitions"
            assert (t, p) not in owner, f"{t}-{p} owned twice: {g!r}"
            owner[(t, p)] = m["member_id"]
    for t in subscribed:
        for p in range(parts[t]):
            assert (t, p) in owner, f"{t}-{p} has no owner: {g!r}"
    if g["members"]:
        assert g["topics"] == {t: parts[t] for t in subscribed}, \
            f"group topics {g['topics']!r}, subscribed {sorted(subscribed)}"
    return owner


def check_topic_balance(g):
    """Section 5 invariant 2: within each topic the partition counts of the
    members subscribed to it differ by at most one."""
    per = {}
    for m in g["members"]:
        for t in m["topics"]:
            per.setdefault(t, {})[m["member_id"]] = 0
        for t, _ in m["assignment"]:
            per[t][m["member_id"]] += 1
    for t, counts in per.items():
        assert max(counts.values()) - min(counts.values()) <= 1, \
            f"topic {t} unbalanced: {counts!r}"


# Kafka reference assignors (AbstractPartitionAssignor.MemberInfo ordering:
# members with a group.instance.id first, by it, then the others by member id).

def kafka_order(members):
    """members: {member_id: (instance_id or None, set(topics))}"""
    static = sorted((m for m, (inst, _) in members.items() if inst),
                    key=lambda m: members[m][0])
    dynamic = sorted(m for m, (inst, _) in members.items() if not inst)
    return static + dynamic


def ref_range(members, parts):
    order = kafka_order(members)
    out = {m: [] for m in members}
    for t in sorted({t for _, ts in members.values() for t in ts}):
        cons = [m for m in order if t in members[m][1]]
        q, r = divmod(parts[t], len(cons))
        for i, m in enumerate(cons):
            start = q * i + min(i, r)
            out[m] += [[t, p] for p in range(start, start + q + (1 if i < r else 0))]
    return {m: sorted(a) for m, a in out.items()}


def ref_roundrobin(members, parts):
    order = kafka_order(members)
    out = {m: [] for m in members}
    i = 0
    for t in sorted({t for _, ts in members.values() for t in ts}):
        for p in range(parts[t]):
            while t not in members[order[i % len(order)]][1]:
                i += 1
            out[order[i % len(order)]].append([t, p])
            i += 1
    return {m: sorted(a) for m, a in out.items()}


REFERENCE = {"range": ref_range, "roundrobin": ref_roundrobin}


def sticky_max_kept(prev_owner, g, parts):
    """Per topic, the largest number of partitions that can stay with their
    previous owner under the per-topic balance rule."""
    best = {}
    for t in {t for m in g["members"] for t in m["topics"]}:
        subs = [m["member_id"] for m in g["members"] if t in m["topics"]]
        q, r = divmod(parts[t], len(subs))
        prev = {s: 0 for s in subs}
        for (pt, p), o in prev_owner.items():
            if pt == t and o in prev and p < parts[t]:
                prev[o] += 1
        best[t] = sum(min(v, q) for v in prev.values()) + min(r, sum(1 for v in prev.values() if v > q))
    return best


def kept_per_topic(prev_owner, owner):
    kept = {}
    for (t, p), o in owner.items():
        kept.setdefault(t, 0)
        if prev_owner.get((t, p)) == o:
            kept[t] += 1
    return kept


# ==========================================================================
# Topics (section 4)


def test_create_and_list_topics(daemon, client):
    c = client
    assert c.ok("list_topics")["topics"] == {}
    r = c.ok("create_topic", topic="orders", partitions=3)
    assert r["topic"] == "orders" and r["partitions"] == 3
    r = c.ok("create_topic", topic="a.b:c@d-e_1", partitions=1)
    assert r["partitions"] == 1
    assert c.ok("list_topics")["topics"] == {"orders": 3, "a.b:c@d-e_1": 1}

    # same count: a no-op, answered with the topic as it is, nothing published
    seq = latest_seq(c)
    r = c.ok("create_topic", topic="orders", partitions=3)
    assert r["topic"] == "orders" and r["partitions"] == 3
    assert latest_seq(c) == seq, "a same-count create_topic must publish nothing"

    # fewer: CONFLICT, nothing changes
    c.err("create_topic", "CONFLICT", topic="orders", partitions=2)
    c.err("create_topic", "CONFLICT", topic="orders", partitions=1)
    assert c.ok("list_topics")["topics"]["orders"] == 3
    assert latest_seq(c) == seq

    # more: grows
    r = c.ok("create_topic", topic="orders", partitions=7)
    assert r["topic"] == "orders" and r["partitions"] == 7
    assert c.ok("list_topics")["topics"] == {"orders": 7, "a.b:c@d-e_1": 1}
    assert latest_seq(c) == seq + 1
    assert c.ok("stats")["topics"] == 2


def test_create_topic_partition_bounds(client):
    c = client
    assert c.ok("create_topic", topic="p-max", partitions=100000)["partitions"] == 100000
    assert c.ok("create_topic", topic="p-min", partitions=1)["partitions"] == 1
    seq = latest_seq(c)
    for bad in (0, -1, 100001, 2**40, "3", 1.5, True, [3], None):
        c.err("create_topic", "BAD_REQUEST", topic="p-bad", partitions=bad)
    # growth beyond the limit is also a bad request, not a growth
    c.err("create_topic", "BAD_REQUEST", topic="p-min", partitions=100001)
    c.err("create_topic", "BAD_REQUEST", topic="p-bad")
    assert c.ok("list_topics")["topics"] == {"p-max": 100000, "p-min": 1}
    assert latest_seq(c) == seq


def test_create_topic_name_rules(client):
    c = client
    ok_names = ["a" * 200, NAME_CHARS, "x", "0", "-", "@"]
    for n in ok_names:
        assert c.ok("create_topic", topic=n, partitions=2)["topic"] == n
    bad_names = ["", "a" * 201, "a b", "a/b", "caf\u00e9", "t\x00", "a*", "a,b", 5, None,
                 b"bytes", ["t"]]
    for n in bad_names:
        c.err("create_topic", "BAD_REQUEST", topic=n, partitions=2)
    assert c.ok("list_topics")["topics"] == {n: 2 for n in ok_names}


def test_topic_changed_events(daemon, client):
    c = client
    sub = daemon.subscriber("topic/")
    sub.sync()
    c.ok("create_topic", topic="ea", partitions=2)           # seq 1
    c.ok("create_topic", topic="ea", partitions=2)           # no-op: nothing
    c.err("create_topic", "CONFLICT", topic="ea", partitions=1)
    c.ok("create_topic", topic="eb", partitions=1)           # seq 2
    c.ok("create_topic", topic="ea", partitions=5)           # seq 3: growth
    join(c, "ge", ["ec"])                                    # automatic creation
    sub.wait_for(lambda e: e.topic == "topic/ec/changed", what="topic/ec/changed")
    got = [(e.topic, e.body["partitions"]) for e in sub.events]
    assert got == [("topic/ea/changed", 2), ("topic/eb/changed", 1),
                   ("topic/ea/changed", 5), ("topic/ec/changed", 12)], got
    b = [e.body for e in sub.events]
    for body in b:
        assert body["type"] == "changed" and is_int(body["at"]), body
    assert [x["seq"] for x in b[:3]] == [1, 2, 3]
    assert [x["prev"] for x in b[:3]] == [0, 0, 1]
    assert b[3]["prev"] == 0
    hist = history(c)
    check_chain(hist)
    assert [(t, x) for t, x in hist if t.startswith("topic/")] == \
        [(e.topic, e.body) for e in sub.events]


def test_auto_creation_with_default_partitions(conveyord):
    d = conveyord(default_partitions=5)
    c = d.client()
    sub = d.subscriber("topic/")
    sub.sync()
    c.ok("create_topic", topic="known", partitions=2)
    r = join(c, "ga", ["known", "fresh"], member_id="m1")
    assert c.ok("list_topics")["topics"] == {"known": 2, "fresh": 5}
    assert sorted(map(tuple, r["assignment"])) == \
        [("fresh", p) for p in range(5)] + [("known", 0), ("known", 1)]
    ev = sub.wait_for(lambda e: e.topic == "topic/fresh/changed")
    assert ev.body["partitions"] == 5 and ev.body["prev"] == 0
    assert get_group(c, "ga")["topics"] == {"known": 2, "fresh": 5}
    # an existing topic is not re-created or re-published by later joins
    seq = latest_seq(c)
    join(c, "gb", ["fresh"], member_id="m1")
    assert c.ok("list_topics")["topics"]["fresh"] == 5
    assert latest_seq(c) > seq          # the join published its group events...
    assert not any(e.topic == "topic/fresh/changed" and e.body["seq"] > seq
                   for e in sub.events), "...but no second topic/fresh/changed"
    assert [t for t, _ in history(c, "topic/")] == ["topic/known/changed", "topic/fresh/changed"]
    assert c.ok("stats")["topics"] == 2


def test_default_partitions_default_is_12(client):
    join(client, "g12", ["auto12"])
    assert client.ok("list_topics")["topics"] == {"auto12": 12}


def test_auto_creation_off(conveyord):
    d = conveyord(default_partitions=0)
    c = d.client()
    c.err("join_group", "NOT_FOUND", group_id="g0", topics=["nope"])
    c.ok("create_topic", topic="yes", partitions=2)
    # one unknown topic among known ones: the whole join fails
    c.err("join_group", "NOT_FOUND", group_id="g0", topics=["yes", "nope"], member_id="m1")
    c.err("get_group", "NOT_FOUND", group_id="g0")
    assert c.ok("list_topics")["topics"] == {"yes": 2}
    assert c.ok("list_groups")["groups"] == []
    st = c.ok("stats")
    assert st["groups"] == 0 and st["members"] == 0 and st["topics"] == 1
    r = join(c, "g0", ["yes"], member_id="m1")
    assert r["assignment"] == [["yes", 0], ["yes", 1]]
    # an existing member changing to an unknown topic: NOT_FOUND, no change
    gen = r["generation"]
    c.err("join_group", "NOT_FOUND", group_id="g0", topics=["nope"], member_id="m1")
    g = get_group(c, "g0")
    assert g["generation"] == gen and members_of(g)["m1"]["topics"] == ["yes"]


def test_topic_growth_rebalances_subscribed_groups(daemon, client):
    c = client
    c.ok("create_topic", topic="tg", partitions=2)
    c.ok("create_topic", topic="other", partitions=2)
    sub = daemon.subscriber("group/", "topic/")
    sub.sync()
    join(c, "g1", ["tg"], member_id="a")
    r = join(c, "g1", ["tg"], member_id="b")
    join(c, "g2", ["other"], member_id="a")
    gen1 = r["generation"]
    gen2 = get_group(c, "g2")["generation"]
    s0 = c.ok("stats")
    n = latest_seq(c)                   # events after this one are new
    assert c.ok("create_topic", topic="tg", partitions=5)["partitions"] == 5
    ev = sub.wait_for(newer(n, is_assignment("g1", gen1 + 1)), what="g1 rebalance on growth")
    check_assignment_event(ev.body)
    sub.wait_for(newer(n, lambda e: e.topic == "topic/tg/changed" and e.body["partitions"] == 5))
    g = get_group(c, "g1")
    assert g["generation"] == gen1 + 1
    assert g["topics"] == {"tg": 5}
    owner = check_ownership(g, {"tg": 5})
    assert sorted(owner) == [("tg", p) for p in range(5)]
    check_topic_balance(g)
    assert ev.body["assignments"] == assignments_of(g)
    # a group not subscribed to the topic is left alone
    assert get_group(c, "g2")["generation"] == gen2
    assert not any(e.topic.startswith("group/g2/") for e in after(sub, n))
    # growth publishes no membership event
    assert not any(e.topic == "group/g1/membership" for e in after(sub, n))
    assert c.ok("stats")["rebalances"] == s0["rebalances"] + 1
    # members catching up by heartbeat see the new generation
    hb = c.ok("group_heartbeat", group_id="g1", member_id="a", generation=gen1)
    assert hb["generation"] == gen1 + 1
    assert hb["assignment"] == members_of(g)["a"]["assignment"]


# ==========================================================================
# join_group basics


def test_join_server_made_member_ids(client):
    c = client
    ids = set()
    r = join(c, "gj", ["tj"])                        # absent
    ids.add(r["member_id"])
    r = join(c, "gj", ["tj"], member_id="")          # empty asks for one too
    ids.add(r["member_id"])
    r = c.ok("join_group", group_id="gj", topics=["tj"], member_id=None)   # nil = absent
    check_join_reply(r, "gj")
    ids.add(r["member_id"])
    assert len(ids) == 3, f"server-made member ids must be unique: {ids!r}"
    for mid in ids:
        assert 1 <= len(mid.encode()) <= 200 and all(ch in NAME_CHARS for ch in mid), \
            f"server-made id {mid!r} is not a valid name"
    g = get_group(c, "gj")
    assert set(members_of(g)) == ids
    assert r["members"] == sorted(ids)
    # a server-made id can be used like any other
    c.ok("group_heartbeat", group_id="gj", member_id=r["member_id"], generation=g["generation"])


def test_join_reply_and_generations(daemon, client):
    c = client
    c.ok("create_topic", topic="tr", partitions=4)
    c.ok("create_topic", topic="tr2", partitions=2)
    r1 = join(c, "gr", ["tr"], member_id="m1")
    g1 = r1["generation"]
    assert r1["members"] == ["m1"]
    assert r1["assignment"] == [["tr", p] for p in range(4)]
    r2 = join(c, "gr", ["tr"], member_id="m2")
    assert r2["generation"] == g1 + 1
    assert r2["members"] == ["m1", "m2"]
    assert len(r2["assignment"]) == 2
    g = get_group(c, "gr")
    assert g["generation"] == g1 + 1
    assert members_of(g)["m2"]["assignment"] == r2["assignment"]

    # a join that changes nothing: same generation, same assignment, no event
    seq = latest_seq(c)
    r = join(c, "gr", ["tr"], member_id="m2")
    assert r["generation"] == g1 + 1 and r["assignment"] == r2["assignment"]
    assert r["members"] == ["m1", "m2"]
    assert latest_seq(c) == seq
    assert get_group(c, "gr")["generation"] == g1 + 1

    # a changed topic set rebalances
    r = join(c, "gr", ["tr", "tr2"], member_id="m2")
    assert r["generation"] == g1 + 2
    g = get_group(c, "gr")
    assert sorted(members_of(g)["m2"]["topics"]) == ["tr", "tr2"]
    assert [p for p in r["assignment"] if p[0] == "tr2"] == [["tr2", 0], ["tr2", 1]]
    check_ownership(g, {"tr": 4, "tr2": 2})

    # the same set in another order is the same set: no rebalance
    seq = latest_seq(c)
    r = join(c, "gr", ["tr2", "tr"], member_id="m2")
    assert r["generation"] == g1 + 2
    assert latest_seq(c) == seq

    # back to the old set: rebalance again
    assert join(c, "gr", ["tr"], member_id="m2")["generation"] == g1 + 3
    assert get_group(c, "gr")["topics"] == {"tr": 4}


def test_join_reply_latency_idle(daemon, client):
    c = client
    c.ok("create_topic", topic="tl", partitions=16)
    join(c, "gl", ["tl"], member_id="warm")
    for i in range(8):
        t0 = time.monotonic()
        r = join(c, "gl", ["tl"], member_id=f"m{i}")
        dt = time.monotonic() - t0
        assert dt <= IDLE_JOIN_BOUND, f"join {i} took {dt * 1000:.0f} ms on an idle server"
        assert f"m{i}" in r["members"]


@pytest.mark.parametrize("fields", [
    {"group_id": None},
    {"group_id": ""},
    {"group_id": "a b"},
    {"group_id": "g" * 201},
    {"group_id": 7},
    {"topics": None},
    {"topics": []},
    {"topics": "tv"},
    {"topics": [1]},
    {"topics": ["ok", "bad/name"]},
    {"topics": [""]},
    {"topics": ["t" * 201]},
    {"topics": {"tv": 1}},
    {"member_id": "bad id"},
    {"member_id": 5},
    {"member_id": "m" * 201},
    {"instance_id": ""},
    {"instance_id": "bad/inst"},
    {"instance_id": 3},
    {"service_name": ""},
    {"service_name": "bad name"},
    {"service_id": ""},
    {"service_id": "bad\u00e9"},
    {"session_timeout_ms": 0},
    {"session_timeout_ms": -5},
    {"session_timeout_ms": "300"},
    {"session_timeout_ms": 1.5},
    {"assignor": "nope"},
    {"assignor": ""},
    {"assignor": 1},
    {"assignor": "Range"},
])
def test_join_bad_request(client, fields):
    c = client
    c.ok("create_topic", topic="tv", partitions=2)
    msg = {"group_id": "gv", "topics": ["tv"], "member_id": "mv"}
    msg.update(fields)
    if "group_id" in fields and fields["group_id"] is None:
        msg.pop("group_id")
    if "topics" in fields and fields["topics"] is None:
        msg.pop("topics")
    seq = latest_seq(c)
    c.err("join_group", "BAD_REQUEST", **msg)
    c.err("get_group", "NOT_FOUND", group_id="gv")
    assert c.ok("list_topics")["topics"] == {"tv": 2}
    assert latest_seq(c) == seq


def test_assignor_choice(client):
    c = client
    c.ok("create_topic", topic="ta", partitions=3)
    join(c, "g-default", ["ta"])
    assert get_group(c, "g-default")["assignor"] == "sticky"
    for name in ASSIGNORS:
        join(c, "g-" + name, ["ta"], member_id="first", assignor=name)
        assert get_group(c, "g-" + name)["assignor"] == name
    # later members: no assignor, or the same one, are fine
    join(c, "g-range", ["ta"], member_id="second")
    join(c, "g-range", ["ta"], member_id="third", assignor="range")
    # another one while the group has members: CONFLICT, nothing changes
    gen = get_group(c, "g-range")["generation"]
    seq = latest_seq(c)
    c.err("join_group", "CONFLICT", group_id="g-range", topics=["ta"], member_id="fourth",
          assignor="roundrobin")
    c.err("join_group", "CONFLICT", group_id="g-range", topics=["ta"], member_id="fourth",
          assignor="sticky")
    # even an existing member may not switch it
    c.err("join_group", "CONFLICT", group_id="g-range", topics=["ta"], member_id="second",
          assignor="sticky")
    g = get_group(c, "g-range")
    assert g["assignor"] == "range" and g["generation"] == gen
    assert sorted(members_of(g)) == ["first", "second", "third"]
    assert latest_seq(c) == seq
    # an unknown assignor: BAD_REQUEST, on a new group and on an existing one
    c.err("join_group", "BAD_REQUEST", group_id="g-new", topics=["ta"], assignor="cooperative")
    c.err("join_group", "BAD_REQUEST", group_id="g-range", topics=["ta"], member_id="x",
          assignor="cooperative")
    c.err("get_group", "NOT_FOUND", group_id="g-new")


def test_assignment_event_names_assignor(daemon, client):
    c = client
    sub = daemon.subscriber("group/gq/")
    sub.sync()
    r = join(c, "gq", ["tq"], member_id="m", assignor="roundrobin")
    ev = sub.wait_for(is_assignment("gq", r["generation"]))
    check_assignment_event(ev.body)
    assert ev.body["assignor"] == "roundrobin"
    assert ev.body["assignments"] == {"m": r["assignment"]}


def test_empty_group_keeps_generation_assignor_offsets_and_switches_assignor(daemon, client):
    c = client
    c.ok("create_topic", topic="te", partitions=2)
    r = join(c, "gE", ["te"], member_id="m1", assignor="range")
    gen = r["generation"]
    c.ok("commit_offsets", group_id="gE", member_id="m1", generation=gen,
         offsets=[["te", 0, 42], ["te", 1, 7]])
    c.ok("leave_group", group_id="gE", member_id="m1")
    g = settle(c, "gE", gen + 1)
    assert g["members"] == []
    assert g["generation"] == gen + 1, "the leave is a rebalance"
    assert g["assignor"] == "range"
    lst = c.ok("list_groups")["groups"]
    assert {"group_id": "gE", "generation": gen + 1, "members": 0} in lst
    assert sorted(c.ok("fetch_offsets", group_id="gE")["offsets"]) == [["te", 0, 42], ["te", 1, 7]]
    assert c.ok("stats")["groups"] == 1, "an empty group still exists"

    # a join without an assignor keeps the group's
    r = join(c, "gE", ["te"], member_id="m2")
    assert r["generation"] == gen + 2
    assert get_group(c, "gE")["assignor"] == "range"
    c.ok("leave_group", group_id="gE", member_id="m2")
    settle(c, "gE", gen + 3)

    # a join naming another assignor on the empty group switches it
    r = join(c, "gE", ["te"], member_id="m3", assignor="roundrobin")
    assert r["generation"] == gen + 4
    g = get_group(c, "gE")
    assert g["assignor"] == "roundrobin"
    assert sorted(c.ok("fetch_offsets", group_id="gE")["offsets"]) == [["te", 0, 42], ["te", 1, 7]]


# ==========================================================================
# join_group state errors, limits (sections 5, 7, 10)


def test_join_unknown_service_is_not_found(client):
    c = client
    c.ok("create_topic", topic="ts", partitions=2)
    c.err("join_group", "NOT_FOUND", group_id="gs", topics=["ts", "auto-ts"], service_id="nosvc")
    c.err("get_group", "NOT_FOUND", group_id="gs")
    assert c.ok("list_topics")["topics"] == {"ts": 2}, "a failed join creates no topic"
    reg(c, "svc")
    join(c, "gs", ["ts"], member_id="m", service_id="svc")
    assert members_of(get_group(c, "gs"))["m"]["service_id"] == "svc"


def test_join_error_order(conveyord):
    d = conveyord(default_partitions=0, max_members=1, max_groups=1)
    c = d.client()
    c.ok("create_topic", topic="t", partitions=2)
    r = join(c, "g", ["t"], member_id="a", assignor="range")
    before = c.ok("stats")
    seq = before["seq"]

    base = dict(group_id="g", topics=["t"], member_id="b")
    # field checks first: an unknown assignor is BAD_REQUEST whatever else is wrong
    c.err("join_group", "BAD_REQUEST", **dict(base, assignor="nope", service_id="nosvc",
                                              topics=["t", "unknown"]))
    # NOT_FOUND (service) before CONFLICT (assignor) and LIMIT_EXCEEDED (members)
    c.err("join_group", "NOT_FOUND", **dict(base, service_id="nosvc", assignor="sticky"))
    # NOT_FOUND (topic, auto-creation off) before CONFLICT and LIMIT_EXCEEDED
    c.err("join_group", "NOT_FOUND", **dict(base, topics=["t", "unknown"], assignor="sticky"))
    # CONFLICT before LIMIT_EXCEEDED
    c.err("join_group", "CONFLICT", **dict(base, assignor="sticky"))
    c.err("join_group", "LIMIT_EXCEEDED", **base)
    # a new group over --max-groups: NOT_FOUND still comes first
    c.err("join_group", "NOT_FOUND", group_id="g2", topics=["t"], service_id="nosvc")
    c.err("join_group", "NOT_FOUND", group_id="g2", topics=["unknown"])
    c.err("join_group", "LIMIT_EXCEEDED", group_id="g2", topics=["t"])

    g = get_group(c, "g")
    assert g["generation"] == r["generation"] and list(members_of(g)) == ["a"]
    assert g["assignor"] == "range"
    assert c.ok("list_topics")["topics"] == {"t": 2}
    after = c.ok("stats")
    for k in ("groups", "members", "topics", "rebalances"):
        assert after[k] == before[k], k
    assert after["seq"] == seq


def test_max_members(conveyord):
    d = conveyord(max_members=2)
    c = d.client()
    c.ok("create_topic", topic="tm", partitions=4)
    join(c, "gm", ["tm"], member_id="a", instance_id="ia")
    r = join(c, "gm", ["tm"], member_id="b")
    gen = r["generation"]
    c.err("join_group", "LIMIT_EXCEEDED", group_id="gm", topics=["tm-new"], member_id="c")
    c.err("join_group", "LIMIT_EXCEEDED", group_id="gm", topics=["tm"])
    assert "tm-new" not in c.ok("list_topics")["topics"], "a join over a limit changes nothing"
    g = get_group(c, "gm")
    assert sorted(members_of(g)) == ["a", "b"] and g["generation"] == gen
    assert c.ok("stats")["members"] == 2
    # an existing member may still re-join (and change topics)
    assert join(c, "gm", ["tm", "tm2"], member_id="b")["generation"] == gen + 1
    # a static replacement never counts against --max-members
    r = join(c, "gm", ["tm"], member_id="a2", instance_id="ia")
    assert r["members"] == ["a2", "b"]
    # another group has its own count
    join(c, "gm-other", ["tm"], member_id="a")
    join(c, "gm-other", ["tm"], member_id="b")
    # after a leave there is room again
    c.ok("leave_group", group_id="gm", member_id="b")
    assert join(c, "gm", ["tm"], member_id="c")["members"] == ["a2", "c"]


def test_max_groups(conveyord):
    d = conveyord(max_groups=2)
    c = d.client()
    c.ok("create_topic", topic="tg", partitions=2)
    join(c, "g1", ["tg"], member_id="m")
    join(c, "g2", ["tg"], member_id="m")
    c.err("join_group", "LIMIT_EXCEEDED", group_id="g3", topics=["tg-new"], member_id="m")
    assert "tg-new" not in c.ok("list_topics")["topics"]
    c.err("get_group", "NOT_FOUND", group_id="g3")
    assert sorted(x["group_id"] for x in c.ok("list_groups")["groups"]) == ["g1", "g2"]
    assert c.ok("stats")["groups"] == 2
    # existing groups take new members
    join(c, "g1", ["tg"], member_id="m2")
    # an empty group still exists and still counts
    c.ok("leave_group", group_id="g2", member_id="m")
    c.err("join_group", "LIMIT_EXCEEDED", group_id="g3", topics=["tg"], member_id="m")
    # deleting it makes room
    c.ok("delete_group", group_id="g2")
    join(c, "g3", ["tg"], member_id="m")
    assert c.ok("stats")["groups"] == 2


# ==========================================================================
# coalescing (section 5)


@pytest.mark.parametrize("nsocks", [1, 4])
def test_pipelined_joins_are_coalesced(daemon, client, nsocks):
    c = client
    c.ok("create_topic", topic="co", partitions=200)
    sub = daemon.subscriber("group/gc/")
    sub.sync()
    s0 = c.ok("stats")
    socks = [daemon.client() for _ in range(nsocks)]
    for s in socks:
        s.ok("hello")                      # connected before the burst
    poller = zmq.Poller()
    for s in socks:
        poller.register(s.sock, zmq.POLLIN)

    sent = {}
    for i in range(100):
        s = socks[i % len(socks)]
        rid = f"j{i}"
        s.send_map({"op": "join_group", "rid": rid, "group_id": "gc", "topics": ["co"],
                    "member_id": f"m{i:03d}"})
        sent[rid] = (f"m{i:03d}", time.monotonic())

    replies = {}
    deadline = time.monotonic() + 10
    while len(replies) < len(sent):
        left = deadline - time.monotonic()
        assert left > 0, f"only {len(replies)} of 100 join replies within 10 s"
        for sock, _ in poller.poll(int(left * 1000)):
            while True:
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time.monotonic()
                assert len(frames) == 1
                rep = unpack(frames[0])
                assert rep.get("ok") is True, rep
                assert rep["rid"] in sent and rep["rid"] not in replies, rep
                replies[rep["rid"]] = (rep, t)

    for rid, (rep, t) in replies.items():
        mid, t_sent = sent[rid]
        check_join_reply(rep, "gc", mid)
        assert t - t_sent <= BUSY_JOIN_BOUND, \
            f"join {rid} answered after {(t - t_sent) * 1000:.0f} ms"

    gens = sorted({rep["generation"] for rep, _ in replies.values()})
    worst = max(t - sent[rid][1] for rid, (_, t) in replies.items())
    print(f"{nsocks} socket(s): {len(gens)} generation(s), slowest reply {worst * 1000:.0f} ms")
    assert len(gens) <= 10, f"100 pipelined joins made {len(gens)} generations: {gens}"
    last = gens[-1]
    sub.wait_for(is_assignment("gc", last), what=f"assignment event of generation {last}")
    evs = [e for e in sub.events]
    assigns = [e for e in evs if e.topic == "group/gc/assignment"]
    a_gens = [e.body["generation"] for e in assigns]
    assert a_gens == list(range(a_gens[0], a_gens[0] + len(a_gens))), \
        f"generation must grow by one per rebalance: {a_gens}"
    assert a_gens[-1] == last
    by_gen = {e.body["generation"]: e for e in assigns}
    for e in assigns:
        check_assignment_event(e.body)
        assert e.body["assignor"] == "sticky"
    for rid, (rep, _) in replies.items():
        ev = by_gen.get(rep["generation"])
        assert ev is not None, f"no assignment event for generation {rep['generation']}"
        a = ev.body["assignments"]
        assert a.get(rep["member_id"]) == rep["assignment"], \
            f"{rep['member_id']}: reply assignment is not its share of generation {rep['generation']}"
        assert rep["members"] == sorted(a)
    # one joined event per member, with the generation its reply reports,
    # published after the previous assignment event and before its own
    joined = [e for e in evs if e.topic == "group/gc/membership"]
    assert sorted(e.body["member_id"] for e in joined) == sorted(m for m, _ in sent.values())
    gen_of = {rep["member_id"]: rep["generation"] for rep, _ in replies.values()}
    for e in joined:
        assert e.body["type"] == "joined"
        assert e.body["generation"] == gen_of[e.body["member_id"]], e
    check_rebalance_structure([(e.topic, e.body) for e in evs], "gc")
    assert set(a_gens) == set(gens), "every rebalance here is made by (and answers) joins"

    g = get_group(c, "gc")
    assert len(g["members"]) == 100 and g["generation"] == last
    check_ownership(g, {"co": 200})
    check_topic_balance(g)
    s1 = c.ok("stats")
    assert s1["rebalances"] - s0["rebalances"] == len(a_gens)
    assert s1["members"] - s0["members"] == 100


# ==========================================================================
# events (section 6)


def test_group_events_order_and_chain(daemon, client):
    c = client
    sub = daemon.subscriber("group/", "topic/")
    sub.sync()
    c.ok("create_topic", topic="ev1", partitions=4)
    r1 = join(c, "gx", ["ev1"], member_id="a")
    r2 = join(c, "gx", ["ev1"], member_id="b")
    ry = join(c, "gy", ["ev1", "ev2"], member_id="a")     # ev2 created automatically
    c.ok("leave_group", group_id="gx", member_id="a")
    settle(c, "gx", r2["generation"] + 1)
    r3 = join(c, "gx", ["ev1"], member_id="c")
    c.ok("create_topic", topic="ev1", partitions=6)        # rebalances gx and gy
    gx = settle(c, "gx", r3["generation"] + 1)
    gy = settle(c, "gy", ry["generation"] + 1)
    final_seq = latest_seq(c)
    sub.wait(lambda: sub.events and sub.events[-1].body["seq"] == final_seq, what="all events")

    hist = history(c)
    check_chain(hist)
    assert [(e.topic, e.body) for e in sub.events] == hist, "live events differ from the history"

    gx_events = [(t, b) for t, b in hist if t.startswith("group/gx/")]
    check_rebalance_structure(gx_events, "gx")
    kinds = [(t.split("/")[2], b.get("type"), b.get("member_id"), b["generation"])
             for t, b in gx_events]
    g0 = r1["generation"]
    assert kinds == [
        ("membership", "joined", "a", g0), ("assignment", "assignment", None, g0),
        ("membership", "joined", "b", g0 + 1), ("assignment", "assignment", None, g0 + 1),
        ("membership", "left", "a", g0 + 2), ("assignment", "assignment", None, g0 + 2),
        ("membership", "joined", "c", g0 + 3), ("assignment", "assignment", None, g0 + 3),
        ("assignment", "assignment", None, g0 + 4),
    ], kinds
    assert r2["generation"] == g0 + 1 and r3["generation"] == g0 + 3
    assert gx["generation"] == g0 + 4
    last_assign = gx_events[-1][1]
    check_assignment_event(last_assign)
    assert last_assign["assignments"] == assignments_of(gx)
    assert gx_events[1][1]["assignments"] == {"a": r1["assignment"]}
    assert gx_events[5][1]["assignments"] == {"b": [["ev1", p] for p in range(4)]}

    gy_events = [(t, b) for t, b in hist if t.startswith("group/gy/")]
    check_rebalance_structure(gy_events, "gy")
    assert gy_events[-1][1]["assignments"] == assignments_of(gy)
    topics = [(t, b["partitions"]) for t, b in hist if t.startswith("topic/")]
    assert topics == [("topic/ev1/changed", 4), ("topic/ev2/changed", 12),
                      ("topic/ev1/changed", 6)]
    # get_group / list_groups carry the seq they reflect
    assert get_group_reply(c, "gx")["seq"] == final_seq
    assert c.ok("list_groups")["seq"] == final_seq
    # events_since prefix filtering works on group topics
    assert history(c, "group/gx/") == gx_events
    assert c.ok("stats")["events_published"] == final_seq


# ==========================================================================
# leave_group, group_heartbeat


def test_leave_group(daemon, client):
    c = client
    c.ok("create_topic", topic="tlv", partitions=4)
    sub = daemon.subscriber("group/glv/")
    sub.sync()
    join(c, "glv", ["tlv"], member_id="a")
    r = join(c, "glv", ["tlv"], member_id="b")
    gen = r["generation"]
    n = latest_seq(c)                   # events after this one are new
    c.ok("leave_group", group_id="glv", member_id="a")
    ev = sub.wait_for(newer(n, is_membership("glv", "left", "a")))
    assert ev.body["generation"] == gen + 1
    asg = sub.wait_for(newer(n, is_assignment("glv", gen + 1)))
    assert asg.body["seq"] > ev.body["seq"]
    assert asg.body["assignments"] == {"b": [["tlv", p] for p in range(4)]}
    g = get_group(c, "glv")
    assert g["generation"] == gen + 1 and list(members_of(g)) == ["b"]
    # the member is gone
    c.err("leave_group", "UNKNOWN_MEMBER", group_id="glv", member_id="a")
    c.err("group_heartbeat", "UNKNOWN_MEMBER", group_id="glv", member_id="a", generation=gen + 1)
    c.err("commit_offsets", "UNKNOWN_MEMBER", group_id="glv", member_id="a",
          generation=gen + 1, offsets=[["tlv", 0, 1]])
    c.err("leave_group", "NOT_FOUND", group_id="nogroup", member_id="b")
    c.err("leave_group", "BAD_REQUEST", group_id="glv")
    c.err("leave_group", "BAD_REQUEST", group_id="glv", member_id="bad id")
    # a left member id may come back: it is a new member again
    r = join(c, "glv", ["tlv"], member_id="a")
    assert r["generation"] == gen + 2 and r["members"] == ["a", "b"]


def test_group_heartbeat(daemon, client):
    c = client
    c.ok("create_topic", topic="th", partitions=4)
    r1 = join(c, "gh", ["th"], member_id="a")
    g1 = r1["generation"]
    hb = c.ok("group_heartbeat", group_id="gh", member_id="a", generation=g1)
    assert hb["generation"] == g1
    assert "assignment" not in hb or hb["assignment"] is None, \
        f"a heartbeat at the current generation answers just the generation: {hb!r}"
    join(c, "gh", ["th"], member_id="b")
    mine = members_of(get_group(c, "gh"))["a"]["assignment"]
    # stale (older) generation: catch up, not an error
    hb = c.ok("group_heartbeat", group_id="gh", member_id="a", generation=g1)
    assert hb["generation"] == g1 + 1 and hb["assignment"] == mine
    check_assignment(hb["assignment"])
    # any generation other than the current one is stale, a newer one too
    hb = c.ok("group_heartbeat", group_id="gh", member_id="a", generation=g1 + 7)
    assert hb["generation"] == g1 + 1 and hb["assignment"] == mine
    hb = c.ok("group_heartbeat", group_id="gh", member_id="a", generation=g1 + 1)
    assert hb["generation"] == g1 + 1 and hb.get("assignment") is None
    # a heartbeat changes nothing
    assert get_group(c, "gh")["generation"] == g1 + 1
    c.err("group_heartbeat", "UNKNOWN_MEMBER", group_id="gh", member_id="ghost", generation=g1)
    c.err("group_heartbeat", "NOT_FOUND", group_id="nogroup", member_id="a", generation=g1)
    for bad in ({"generation": "1"}, {"generation": 1.0}, {"generation": None},
                {"member_id": None}, {"member_id": "bad/id"}):
        f = dict(group_id="gh", member_id="a", generation=g1)
        f.update(bad)
        f = {k: v for k, v in f.items() if v is not None}
        c.err("group_heartbeat", "BAD_REQUEST", **f)


def test_heartbeat_updates_last_heartbeat_at(client):
    c = client
    r = join(c, "ghb", ["thb"], member_id="a")
    m0 = members_of(get_group(c, "ghb"))["a"]
    poll_until(lambda: now_ms() > m0["last_heartbeat_at"] + 5, 1, "the clock to move")
    c.ok("group_heartbeat", group_id="ghb", member_id="a", generation=r["generation"])
    m1 = members_of(get_group(c, "ghb"))["a"]
    assert m1["last_heartbeat_at"] > m0["last_heartbeat_at"]
    assert m1["joined_at"] == m0["joined_at"]


# ==========================================================================
# sessions (section 5)


def test_session_timeout_clamped_and_default(conveyord):
    d = conveyord(min_lease_ms=100, max_lease_ms=5000, session_timeout_ms=4000)
    c = d.client()
    assert c.ok("hello")["session_timeout_ms"] == 4000
    join(c, "gst", ["tst"], member_id="low", session_timeout_ms=10)
    join(c, "gst", ["tst"], member_id="high", session_timeout_ms=10**9)
    join(c, "gst", ["tst"], member_id="mid", session_timeout_ms=777)
    join(c, "gst", ["tst"], member_id="dflt")
    ms = members_of(get_group(c, "gst"))
    assert ms["low"]["session_timeout_ms"] == 100
    assert ms["high"]["session_timeout_ms"] == 5000
    assert ms["mid"]["session_timeout_ms"] == 777
    assert ms["dflt"]["session_timeout_ms"] == 4000


def test_session_expiry(conveyord):
    d = conveyord(min_lease_ms=100)
    c = d.client()
    c.ok("create_topic", topic="tx", partitions=4)
    sub = d.subscriber("group/gxp/")
    sub.sync()
    join(c, "gxp", ["tx"], member_id="keep", session_timeout_ms=60000)
    s0 = c.ok("stats")
    t_sent = time.monotonic()
    r = join(c, "gxp", ["tx"], member_id="short", session_timeout_ms=300)
    t_reply = time.monotonic()
    gen = r["generation"]
    assert members_of(get_group(c, "gxp"))["short"]["session_timeout_ms"] == 300
    ev = sub.wait_for(is_membership("gxp", "expired"), timeout=0.3 + REMOVAL_SLACK + 1.0,
                      what="membership expired")
    assert ev.body["member_id"] == "short"
    assert ev.t >= t_sent + 0.3 - EARLY_TOLERANCE, \
        f"expired {(ev.t - t_sent) * 1000:.0f} ms after the join, before its 300 ms session"
    assert ev.t <= t_reply + 0.3 + REMOVAL_SLACK, \
        f"expired {(ev.t - t_reply) * 1000:.0f} ms after the join (session 300 ms + 250 ms)"
    assert ev.body["generation"] == gen + 1
    asg = sub.wait_for(is_assignment("gxp", gen + 1))
    assert asg.body["seq"] > ev.body["seq"]
    assert asg.body["assignments"] == {"keep": [["tx", p] for p in range(4)]}
    g = get_group(c, "gxp")
    assert list(members_of(g)) == ["keep"] and g["generation"] == gen + 1
    s1 = c.ok("stats")
    assert s1["members_expired"] == s0["members_expired"] + 1
    assert s1["members"] == s0["members"]        # +1 joined, -1 expired
    assert s1["rebalances"] == s0["rebalances"] + 2
    c.err("group_heartbeat", "UNKNOWN_MEMBER", group_id="gxp", member_id="short", generation=gen)
    # an expired member id may join again
    assert join(c, "gxp", ["tx"], member_id="short", session_timeout_ms=300)["members"] == \
        ["keep", "short"]


def test_group_heartbeats_keep_session_alive(conveyord):
    d = conveyord(min_lease_ms=100)
    c = d.client()
    sub = d.subscriber("group/gka/")
    sub.sync()
    r = join(c, "gka", ["tka"], member_id="m", session_timeout_ms=300)
    gen = r["generation"]
    end = time.monotonic() + 1.2                 # four session timeouts
    while time.monotonic() < end:
        t_sent = time.monotonic()
        c.ok("group_heartbeat", group_id="gka", member_id="m", generation=gen)
        t_reply = time.monotonic()
        # pace the heartbeats by polling for the (unwanted) expiry
        sub._pump(0.1)
        assert not any(is_membership("gka", "expired")(e) for e in sub.events), \
            "a member heartbeating every 100 ms expired with a 300 ms session"
    assert list(members_of(get_group(c, "gka"))) == ["m"]
    ev = sub.wait_for(is_membership("gka", "expired", "m"), timeout=0.3 + REMOVAL_SLACK + 1.0)
    assert t_sent + 0.3 - EARLY_TOLERANCE <= ev.t <= t_reply + 0.3 + REMOVAL_SLACK, \
        f"expired {(ev.t - t_reply) * 1000:.0f} ms after the last heartbeat (session 300 ms)"


# ==========================================================================
# members linked to a service (section 5)


def _linked_member_kept_alive(conveyord, gid):
    """A member with a 300 ms session linked to a service (lease 5000 ms),
    kept alive for 1.2 s by the service's heartbeats alone. Returns the
    daemon, client, subscriber and the send/reply times of the last service
    heartbeat."""
    d = conveyord(min_lease_ms=100)
    c = d.client()
    sub = d.subscriber(f"group/{gid}/")
    sub.sync()
    reg(c, "svc-k", lease_ms=5000)
    join(c, gid, ["tsv"], member_id="other", session_timeout_ms=60000)
    join(c, gid, ["tsv"], member_id="linked", session_timeout_ms=300, service_id="svc-k")
    m = members_of(get_group(c, gid))["linked"]
    assert m["service_id"] == "svc-k" and m["session_timeout_ms"] == 300
    end = time.monotonic() + 1.2                 # four session timeouts, no group heartbeat
    while time.monotonic() < end:
        t_sent = time.monotonic()
        c.ok("heartbeat", service_id="svc-k")
        t_reply = time.monotonic()
        sub._pump(0.1)                           # paces the heartbeats, watching for expiry
        assert not any(is_membership(gid, "expired")(e) for e in sub.events), \
            "a member whose service heartbeats every 100 ms expired"
    assert sorted(members_of(get_group(c, gid))) == ["linked", "other"]
    return d, c, sub, t_sent, t_reply


def test_service_heartbeats_keep_member_alive(conveyord):
    _linked_member_kept_alive(conveyord, "gsv")


def test_linked_member_session_runs_out_without_service_heartbeats(conveyord):
    # Section 5: "a member whose last join_group or group_heartbeat is older
    # than its session_timeout_ms ... is removed within 250 ms"; a linked
    # member is *also* kept alive by its service's heartbeats. Once those
    # stop too (the service stays registered: lease 5000 ms), nothing keeps
    # the 300 ms session alive any more.
    d, c, sub, t_sent, t_reply = _linked_member_kept_alive(conveyord, "gsw")
    ev = sub.wait_for(is_membership("gsw", "expired", "linked"),
                      timeout=0.3 + REMOVAL_SLACK + 1.0,
                      what="the linked member's session to run out")
    assert t_sent + 0.3 - EARLY_TOLERANCE <= ev.t <= t_reply + 0.3 + REMOVAL_SLACK, \
        f"expired {(ev.t - t_reply) * 1000:.0f} ms after the service's last heartbeat"
    c.ok("get_service", service_id="svc-k")


def test_member_leaves_with_deregistered_service(daemon, client):
    c = client
    sub = daemon.subscriber("group/gdr/")
    sub.sync()
    reg(c, "svc-d", lease_ms=5000)
    join(c, "gdr", ["tdr"], member_id="other")
    r = join(c, "gdr", ["tdr"], member_id="linked", service_id="svc-d")
    gen = r["generation"]
    s0 = c.ok("stats")
    n = latest_seq(c)                   # events after this one are new
    c.ok("deregister", service_id="svc-d")
    ev = sub.wait_for(newer(n, is_membership("gdr", member="linked")))
    assert ev.body["type"] == "left" and ev.body["generation"] == gen + 1
    asg = sub.wait_for(newer(n, is_assignment("gdr", gen + 1)))
    assert set(asg.body["assignments"]) == {"other"}
    assert list(members_of(get_group(c, "gdr"))) == ["other"]
    s1 = c.ok("stats")
    assert s1["members_expired"] == s0["members_expired"]
    assert s1["members"] == s0["members"] - 1


def test_member_expires_with_service(conveyord):
    d = conveyord(min_lease_ms=100)
    c = d.client()
    sub = d.subscriber("group/gse/")
    sub.sync()
    join(c, "gse", ["tse"], member_id="other", session_timeout_ms=60000)
    s0 = c.ok("stats")
    t_sent = time.monotonic()
    assert reg(c, "svc-e", lease_ms=200)["lease_ms"] == 200
    t_reply = time.monotonic()
    r = join(c, "gse", ["tse"], member_id="linked", service_id="svc-e", session_timeout_ms=60000)
    gen = r["generation"]
    # the service expires 2 x 200 ms after its registration; its member with it
    ev = sub.wait_for(lambda e: is_membership("gse", member="linked")(e)
                      and e.body["type"] != "joined", timeout=0.4 + REMOVAL_SLACK + 1.0,
                      what="the linked member's removal")
    assert ev.body["type"] == "expired", ev
    assert ev.body["generation"] == gen + 1
    assert t_sent + 0.4 - EARLY_TOLERANCE <= ev.t <= t_reply + 0.4 + REMOVAL_SLACK, \
        f"member removed {(ev.t - t_reply) * 1000:.0f} ms after its service registered (lease 200)"
    sub.wait_for(is_assignment("gse", gen + 1))
    poll_until(lambda: c.call("get_service", service_id="svc-e").get("error") == "NOT_FOUND",
               1.0, "the service to be gone")
    s1 = c.ok("stats")
    assert s1["members_expired"] == s0["members_expired"] + 1
    assert s1["expired"] == s0["expired"] + 1
    assert list(members_of(get_group(c, "gse"))) == ["other"]


# ==========================================================================
# static membership (sections 5, 10)


def test_static_replacement(daemon, client):
    c = client
    c.ok("create_topic", topic="tst", partitions=6)
    sub = daemon.subscriber("group/gsm/")
    sub.sync()
    join(c, "gsm", ["tst"], member_id="a1", instance_id="ia")
    r = join(c, "gsm", ["tst"], member_id="b1", instance_id="ib")
    gen = r["generation"]
    before = assignments_of(get_group(c, "gsm"))
    sub.wait_for(is_assignment("gsm", gen))
    n = latest_seq(c)                   # events after this one are new
    s0 = c.ok("stats")

    r = join(c, "gsm", ["tst"], member_id="a2", instance_id="ia")
    assert r["member_id"] == "a2", "a replacing join keeps the member_id it names"
    assert r["generation"] == gen, "no new generation when the topics are unchanged"
    assert r["assignment"] == before["a1"]
    assert r["members"] == ["a2", "b1"]
    asg = sub.wait_for(newer(n, is_assignment("gsm")), what="assignment after replacement")
    evs = [e for e in after(sub, n) if e.body["seq"] <= asg.body["seq"]]
    got = [(e.topic.split("/")[2], e.body["type"], e.body.get("member_id"),
            e.body["generation"]) for e in evs]
    assert got == [("membership", "fenced", "a1", gen), ("membership", "joined", "a2", gen),
                   ("assignment", "assignment", None, gen)], got
    assert asg.body["assignments"] == {"a2": before["a1"], "b1": before["b1"]}
    g = get_group(c, "gsm")
    assert g["generation"] == gen
    ms = members_of(g)
    assert sorted(ms) == ["a2", "b1"] and ms["a2"]["instance_id"] == "ia"
    assert ms["a2"]["assignment"] == before["a1"]
    assert c.ok("stats")["members"] == s0["members"]

    # the fenced id: every call is UNKNOWN_MEMBER, a join included
    c.err("group_heartbeat", "UNKNOWN_MEMBER", group_id="gsm", member_id="a1", generation=gen)
    c.err("commit_offsets", "UNKNOWN_MEMBER", group_id="gsm", member_id="a1", generation=gen,
          offsets=[["tst", before["a1"][0][1], 5]])
    c.err("leave_group", "UNKNOWN_MEMBER", group_id="gsm", member_id="a1")
    c.err("join_group", "UNKNOWN_MEMBER", group_id="gsm", topics=["tst"], member_id="a1")
    c.err("join_group", "UNKNOWN_MEMBER", group_id="gsm", topics=["tst"], member_id="a1",
          instance_id="ic")
    g2 = get_group(c, "gsm")
    assert g2 == g, "calls with a fenced id change nothing"

    # a replacing join without a member_id gets a server-made one
    r = join(c, "gsm", ["tst"], instance_id="ib")
    new_b = r["member_id"]
    assert new_b not in ("b1", "a1", "a2")
    assert r["generation"] == gen and r["assignment"] == before["b1"]
    c.err("group_heartbeat", "UNKNOWN_MEMBER", group_id="gsm", member_id="b1", generation=gen)

    # a replacement that changes the topics makes a new generation
    n = latest_seq(c)                   # events after this one are new
    r = join(c, "gsm", ["tst", "tst2"], member_id="a3", instance_id="ia")
    assert r["generation"] == gen + 1
    asg = sub.wait_for(newer(n, is_assignment("gsm", gen + 1)))
    evs = [e for e in after(sub, n) if e.body["seq"] <= asg.body["seq"]]
    got = [(e.body["type"], e.body.get("member_id")) for e in evs]
    assert got == [("fenced", "a2"), ("joined", "a3"), ("assignment", None)], got
    assert evs[1].body["generation"] == gen + 1
    g = get_group(c, "gsm")
    assert sorted(members_of(g)) == sorted(["a3", new_b])
    check_ownership(g, {"tst": 6, "tst2": 12})
    check_rebalance_structure([(e.topic, e.body) for e in sub.events], "gsm")

    # fenced ids stay fenced while the group lives, even once the group is empty
    c.ok("leave_group", group_id="gsm", member_id="a3")
    c.ok("leave_group", group_id="gsm", member_id=new_b)
    for old in ("a1", "a2", "b1"):
        c.err("join_group", "UNKNOWN_MEMBER", group_id="gsm", topics=["tst"], member_id=old)
    # ... and no longer: a new group of the same id knows nothing of them
    c.ok("delete_group", group_id="gsm")
    r = join(c, "gsm", ["tst"], member_id="a1")
    assert r["members"] == ["a1"]


def test_static_members_ordered_first_by_instance_id(client):
    c = client
    c.ok("create_topic", topic="to", partitions=3)
    # dynamic "a" sorts first by member id, but static members go first, by instance id
    join(c, "gso", ["to"], member_id="a", assignor="range")
    join(c, "gso", ["to"], member_id="z", instance_id="i-2")
    join(c, "gso", ["to"], member_id="y", instance_id="i-1")
    a = assignments_of(get_group(c, "gso"))
    assert a == {"y": [["to", 0]], "z": [["to", 1]], "a": [["to", 2]]}, a


# ==========================================================================
# get_group, list_groups, delete_group


def test_get_group_structure(daemon, client):
    c = client
    reg(c, "svc-a", name="orders")
    c.ok("create_topic", topic="x1", partitions=4)
    t0 = now_ms()
    join(c, "gg", ["x1", "x2"], member_id="m1", service_name="orders", service_id="svc-a",
         instance_id="inst-1", session_timeout_ms=5000, assignor="range")
    join(c, "gg", ["x1"], member_id="m2")
    t1 = now_ms()
    r = get_group_reply(c, "gg")
    assert r["seq"] == latest_seq(c)
    g = r["group"]
    assert g["group_id"] == "gg" and g["assignor"] == "range"
    assert g["topics"] == {"x1": 4, "x2": 12}
    ms = members_of(g)
    assert sorted(ms) == ["m1", "m2"]
    m1, m2 = ms["m1"], ms["m2"]
    assert m1["service_name"] == "orders" and m1["service_id"] == "svc-a"
    assert m1["instance_id"] == "inst-1" and m1["session_timeout_ms"] == 5000
    assert sorted(m1["topics"]) == ["x1", "x2"]
    assert m2["service_name"] is None and m2["service_id"] is None
    assert m2["instance_id"] is None and m2["session_timeout_ms"] == 30000
    assert m2["topics"] == ["x1"]
    for m in (m1, m2):
        for k in ("joined_at", "last_heartbeat_at"):
            assert t0 - 2000 <= m[k] <= t1 + 2000, f"{k}={m[k]} not near now"
    # range: static m1 first -> x1 0-1 to m1, 2-3 to m2; x2 all to m1
    assert m1["assignment"] == [["x1", 0], ["x1", 1]] + [["x2", p] for p in range(12)]
    assert m2["assignment"] == [["x1", 2], ["x1", 3]]
    c.err("get_group", "BAD_REQUEST")
    c.err("get_group", "BAD_REQUEST", group_id="bad id")


def test_list_groups(client):
    c = client
    assert c.ok("list_groups")["groups"] == []
    join(c, "gA", ["tlg"], member_id="a")
    join(c, "gA", ["tlg"], member_id="b")
    rb = join(c, "gB", ["tlg"], member_id="a")
    rc = join(c, "gC", ["tlg"], member_id="a")
    c.ok("leave_group", group_id="gC", member_id="a")
    settle(c, "gC", rc["generation"] + 1)
    r = c.ok("list_groups")
    assert r["seq"] == latest_seq(c)
    groups = r["groups"]
    for x in groups:
        assert set(x) == {"group_id", "generation", "members"}, x
    by = {x["group_id"]: x for x in groups}
    assert len(by) == len(groups) == 3
    assert by["gA"] == {"group_id": "gA", "generation": get_group(c, "gA")["generation"],
                        "members": 2}
    assert by["gB"] == {"group_id": "gB", "generation": rb["generation"], "members": 1}
    assert by["gC"] == {"group_id": "gC", "generation": get_group(c, "gC")["generation"],
                        "members": 0}


def test_delete_group(daemon, client):
    c = client
    sub = daemon.subscriber("group/gd/")
    sub.sync()
    r = join(c, "gd", ["tdg"], member_id="a")
    c.ok("commit_offsets", group_id="gd", member_id="a", generation=r["generation"],
         offsets=[["tdg", 0, 9]])
    c.err("delete_group", "CONFLICT", group_id="gd")
    assert get_group(c, "gd")["members"]
    c.err("delete_group", "NOT_FOUND", group_id="nogroup")
    c.err("delete_group", "BAD_REQUEST")
    c.ok("leave_group", group_id="gd", member_id="a")
    settle(c, "gd", r["generation"] + 1)
    s0 = c.ok("stats")
    c.ok("delete_group", group_id="gd")
    s1 = c.ok("stats")
    assert s1["seq"] == s0["seq"], "delete_group publishes no event"
    assert s1["groups"] == s0["groups"] - 1
    c.err("get_group", "NOT_FOUND", group_id="gd")
    c.err("fetch_offsets", "NOT_FOUND", group_id="gd")
    c.err("delete_group", "NOT_FOUND", group_id="gd")
    assert c.ok("list_groups")["groups"] == []
    # the topic stays
    assert "tdg" in c.ok("list_topics")["topics"]
    # the id can start a new group, without the old offsets
    join(c, "gd", ["tdg"], member_id="a")
    assert c.ok("fetch_offsets", group_id="gd")["offsets"] == []


def test_delete_group_pipelined_after_last_leave(client):
    # leave, delete and get sent back to back on one DEALER: handled in
    # order, so the delete finds the group without members (perhaps before
    # the leave's rebalance, in the same batch) and succeeds.
    c = client
    r = join(c, "gp", ["tp"], member_id="a")
    c.ok("commit_offsets", group_id="gp", member_id="a", generation=r["generation"],
         offsets=[["tp", 0, 1]])
    c.send_map({"op": "leave_group", "rid": "L", "group_id": "gp", "member_id": "a"})
    c.send_map({"op": "delete_group", "rid": "D", "group_id": "gp"})
    c.send_map({"op": "get_group", "rid": "G", "group_id": "gp"})
    replies = {}
    for _ in range(3):
        rep = c.recv()
        replies[rep.get("rid")] = rep
    assert replies["L"].get("ok") is True, replies
    assert replies["D"].get("ok") is True, replies
    assert replies["G"].get("error") == "NOT_FOUND", replies
    poll_until(lambda: c.ok("stats")["groups"] == 0, 1.0, "the group count to drop")
    c.err("get_group", "NOT_FOUND", group_id="gp")
    assert c.ok("list_groups")["groups"] == []
    r = join(c, "gp", ["tp"], member_id="b")
    assert r["members"] == ["b"]
    assert c.ok("fetch_offsets", group_id="gp")["offsets"] == []


@pytest.mark.parametrize("op,fields", [
    ("leave_group", {"member_id": "m"}),
    ("group_heartbeat", {"member_id": "m", "generation": 1}),
    ("get_group", {}),
    ("commit_offsets", {"member_id": "m", "generation": 1, "offsets": [["t", 0, 1]]}),
    ("fetch_offsets", {}),
    ("fetch_offsets", {"partitions": [["t", 0]]}),
    ("delete_group", {}),
])
def test_unknown_group_not_found(client, op, fields):
    c = client
    join(c, "exists", ["t"], member_id="m")
    c.err(op, "NOT_FOUND", group_id="unknown-group", **fields)


# ==========================================================================
# offsets (section 5)


def test_commit_and_fetch_offsets(client):
    c = client
    c.ok("create_topic", topic="oa", partitions=4)
    c.ok("create_topic", topic="ob", partitions=2)
    join(c, "go", ["oa", "ob"], member_id="m1", assignor="range")
    r2 = join(c, "go", ["oa"], member_id="m2")
    gen = r2["generation"]
    a = assignments_of(get_group(c, "go"))
    assert a == {"m1": [["oa", 0], ["oa", 1], ["ob", 0], ["ob", 1]],
                 "m2": [["oa", 2], ["oa", 3]]}
    assert c.ok("fetch_offsets", group_id="go")["offsets"] == []

    c.ok("commit_offsets", group_id="go", member_id="m1", generation=gen,
         offsets=[["oa", 0, 10], ["oa", 1, 0], ["ob", 1, 7]])
    r = c.ok("fetch_offsets", group_id="go",
             partitions=[["oa", 0], ["oa", 1], ["oa", 2], ["ob", 0], ["ob", 1], ["zz", 0]])
    assert sorted(r["offsets"]) == sorted([["oa", 0, 10], ["oa", 1, 0], ["oa", 2, -1],
                                           ["ob", 0, -1], ["ob", 1, 7], ["zz", 0, -1]])
    assert sorted(c.ok("fetch_offsets", group_id="go")["offsets"]) == \
        [["oa", 0, 10], ["oa", 1, 0], ["ob", 1, 7]]

    def committed():
        return sorted(c.ok("fetch_offsets", group_id="go")["offsets"])

    snapshot = committed()
    # all-or-nothing: one partition not owned spoils the whole commit
    c.err("commit_offsets", "NOT_OWNER", group_id="go", member_id="m1", generation=gen,
          offsets=[["oa", 0, 11], ["oa", 2, 5]])
    c.err("commit_offsets", "NOT_OWNER", group_id="go", member_id="m1", generation=gen,
          offsets=[["oa", 0, 11], ["zz", 0, 5]])                  # a topic it has not
    c.err("commit_offsets", "NOT_OWNER", group_id="go", member_id="m2", generation=gen,
          offsets=[["oa", 9, 5]])                                 # beyond the topic
    c.err("commit_offsets", "NOT_OWNER", group_id="go", member_id="m2", generation=gen,
          offsets=[["ob", 0, 5]])                                 # a topic it does not subscribe
    assert committed() == snapshot

    # ILLEGAL_GENERATION: older or newer than the current one
    for bad_gen in (gen - 1, gen + 1):
        c.err("commit_offsets", "ILLEGAL_GENERATION", group_id="go", member_id="m1",
              generation=bad_gen, offsets=[["oa", 0, 12]])
    c.err("commit_offsets", "UNKNOWN_MEMBER", group_id="go", member_id="ghost",
          generation=gen, offsets=[["oa", 0, 12]])
    # error order: NOT_FOUND, UNKNOWN_MEMBER, ILLEGAL_GENERATION, NOT_OWNER
    c.err("commit_offsets", "NOT_FOUND", group_id="nogroup", member_id="ghost",
          generation=gen + 5, offsets=[["oa", 2, 1]])
    c.err("commit_offsets", "UNKNOWN_MEMBER", group_id="go", member_id="ghost",
          generation=gen + 5, offsets=[["oa", 2, 1]])
    c.err("commit_offsets", "ILLEGAL_GENERATION", group_id="go", member_id="m1",
          generation=gen + 5, offsets=[["oa", 2, 1]])
    assert committed() == snapshot

    # a later commit replaces (a lower offset too); big offsets round-trip
    c.ok("commit_offsets", group_id="go", member_id="m1", generation=gen,
         offsets=[["oa", 0, 3], ["ob", 0, 2**53 + 1], ["ob", 1, 2**63 - 1]])
    c.ok("commit_offsets", group_id="go", member_id="m2", generation=gen,
         offsets=[["oa", 2, 5]])
    want = [["oa", 0, 3], ["oa", 1, 0], ["oa", 2, 5], ["ob", 0, 2**53 + 1], ["ob", 1, 2**63 - 1]]
    assert committed() == want

    # offsets survive rebalances...
    r = join(c, "go", ["oa", "ob"], member_id="m3")
    assert r["generation"] == gen + 1
    assert committed() == want
    # ...and the old generation can no longer commit
    c.err("commit_offsets", "ILLEGAL_GENERATION", group_id="go", member_id="m1",
          generation=gen, offsets=[["oa", 0, 4]])
    # ...and the group becoming empty
    for m in ("m1", "m2", "m3"):
        c.ok("leave_group", group_id="go", member_id=m)
    assert committed() == want
    r = c.ok("fetch_offsets", group_id="go", partitions=[["oa", 2], ["oa", 3]])
    assert sorted(r["offsets"]) == [["oa", 2, 5], ["oa", 3, -1]]


@pytest.mark.parametrize("fields", [
    {"offsets": [["oa", 0, -1]]},
    {"offsets": [["oa", 0, 1.5]]},
    {"offsets": [["oa", 0, "1"]]},
    {"offsets": [["oa", 0, None]]},
    {"offsets": [["oa", 0]]},
    {"offsets": [["oa", 0, 1, 2]]},
    {"offsets": [["oa", "0", 1]]},
    {"offsets": [["bad name", 0, 1]]},
    {"offsets": [[1, 0, 1]]},
    {"offsets": "oa"},
    {"offsets": [{"topic": "oa"}]},
    {"offsets": None},
    {"generation": "1"},
    {"generation": None},
    {"member_id": None},
    {"member_id": ""},
    {"group_id": "bad group"},
])
def test_commit_offsets_bad_request(client, fields):
    c = client
    c.ok("create_topic", topic="oa", partitions=1)
    r = join(c, "gob", ["oa"], member_id="m")
    msg = dict(group_id="gob", member_id="m", generation=r["generation"], offsets=[["oa", 0, 1]])
    msg.update(fields)
    msg = {k: v for k, v in msg.items() if v is not None}
    c.err("commit_offsets", "BAD_REQUEST", **msg)
    # field checks come before state checks: same on an unknown group
    msg["group_id"] = "unknown-group" if fields.get("group_id") is None else msg["group_id"]
    c.err("commit_offsets", "BAD_REQUEST", **msg)
    assert c.ok("fetch_offsets", group_id="gob")["offsets"] == []


@pytest.mark.parametrize("partitions", [
    "oa", [["oa"]], [["oa", "0"]], [["oa", 0, 1]], [[0, 0]], [["bad name", 0]], [["oa", 1.5]],
])
def test_fetch_offsets_bad_request(client, partitions):
    c = client
    join(c, "gfb", ["oa"], member_id="m")
    c.err("fetch_offsets", "BAD_REQUEST", group_id="gfb", partitions=partitions)


# ==========================================================================
# Kafka's range and roundrobin results, end to end


KAFKA_CASES = [
    # (assignor, topics {name: partitions},
    #  members [(member_id, instance_id, topics)], expected {member_id: [(t, p)]})
    # RangeAssignorTest.testOneConsumerOneTopic
    ("range", {"t1": 3}, [("c0", None, ["t1"])],
     {"c0": [("t1", 0), ("t1", 1), ("t1", 2)]}),
    # RangeAssignorTest.testOneConsumerMultipleTopics
    ("range", {"t1": 1, "t2": 2}, [("c0", None, ["t1", "t2"])],
     {"c0": [("t1", 0), ("t2", 0), ("t2", 1)]}),
    # RangeAssignorTest.testTwoConsumersOneTopicOnePartition
    ("range", {"t1": 1}, [("c0", None, ["t1"]), ("c1", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": []}),
    # RangeAssignorTest.testTwoConsumersOneTopicTwoPartitions
    ("range", {"t1": 2}, [("c0", None, ["t1"]), ("c1", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": [("t1", 1)]}),
    # RangeAssignorTest.testMultipleConsumersMixedTopics
    ("range", {"t1": 3, "t2": 2},
     [("c0", None, ["t1"]), ("c1", None, ["t1", "t2"]), ("c2", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": [("t1", 1), ("t2", 0), ("t2", 1)], "c2": [("t1", 2)]}),
    # RangeAssignorTest.testTwoConsumersTwoTopicsSixPartitions
    ("range", {"t1": 3, "t2": 3}, [("c0", None, ["t1", "t2"]), ("c1", None, ["t1", "t2"])],
     {"c0": [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)], "c1": [("t1", 2), ("t2", 2)]}),
    # static members: by instance id (here the reverse of member id order)
    ("range", {"t1": 3, "t2": 3}, [("c0", "i-b", ["t1", "t2"]), ("c1", "i-a", ["t1", "t2"])],
     {"c1": [("t1", 0), ("t1", 1), ("t2", 0), ("t2", 1)], "c0": [("t1", 2), ("t2", 2)]}),
    # RoundRobinAssignorTest.testOneConsumerMultipleTopics
    ("roundrobin", {"t1": 1, "t2": 2}, [("c0", None, ["t1", "t2"])],
     {"c0": [("t1", 0), ("t2", 0), ("t2", 1)]}),
    # RoundRobinAssignorTest.testTwoConsumersOneTopicOnePartition
    ("roundrobin", {"t1": 1}, [("c0", None, ["t1"]), ("c1", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": []}),
    # RoundRobinAssignorTest.testTwoConsumersOneTopicTwoPartitions
    ("roundrobin", {"t1": 2}, [("c0", None, ["t1"]), ("c1", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": [("t1", 1)]}),
    # RoundRobinAssignorTest.testMultipleConsumersMixedTopics
    ("roundrobin", {"t1": 3, "t2": 2},
     [("c0", None, ["t1"]), ("c1", None, ["t1", "t2"]), ("c2", None, ["t1"])],
     {"c0": [("t1", 0)], "c1": [("t1", 1), ("t2", 0), ("t2", 1)], "c2": [("t1", 2)]}),
    # RoundRobinAssignorTest.testTwoConsumersTwoTopicsSixPartitions
    ("roundrobin", {"t1": 3, "t2": 3},
     [("c0", None, ["t1", "t2"]), ("c1", None, ["t1", "t2"])],
     {"c0": [("t1", 0), ("t1", 2), ("t2", 1)], "c1": [("t1", 1), ("t2", 0), ("t2", 2)]}),
    # RoundRobinAssignorTest.testTwoStaticConsumersTwoTopicsSixPartitions, with
    # instance ids ordered against the member ids
    ("roundrobin", {"t1": 3, "t2": 3},
     [("c0", "i-b", ["t1", "t2"]), ("c1", "i-a", ["t1", "t2"])],
     {"c1": [("t1", 0), ("t1", 2), ("t2", 1)], "c0": [("t1", 1), ("t2", 0), ("t2", 2)]}),
    # RoundRobinAssignorTest.testOneStaticConsumerAndOneDynamicConsumerTwoTopicsSixPartitions:
    # the static one first though its member id sorts last
    ("roundrobin", {"t1": 3, "t2": 3},
     [("c0", None, ["t1", "t2"]), ("c1", "i-x", ["t1", "t2"])],
     {"c1": [("t1", 0), ("t1", 2), ("t2", 1)], "c0": [("t1", 1), ("t2", 0), ("t2", 2)]}),
    # three consumers, uneven counts: the iterator carries on across topics
    ("roundrobin", {"t1": 5, "t2": 1},
     [("c0", None, ["t1"]), ("c1", None, ["t1", "t2"]), ("c2", None, ["t1", "t2"])],
     {"c0": [("t1", 0), ("t1", 3)], "c1": [("t1", 1), ("t1", 4)],
      "c2": [("t1", 2), ("t2", 0)]}),
    # ... and skips members not subscribed
    ("roundrobin", {"t1": 5, "t2": 1},
     [("c0", None, ["t1", "t2"]), ("c1", None, ["t1", "t2"]), ("c2", None, ["t1"])],
     {"c0": [("t1", 0), ("t1", 3), ("t2", 0)], "c1": [("t1", 1), ("t1", 4)],
      "c2": [("t1", 2)]}),
]


@pytest.mark.parametrize("case", range(len(KAFKA_CASES)))
def test_kafka_assignments(client, case):
    c = client
    assignor, topics, members, expected = KAFKA_CASES[case]
    # the reference implementation agrees with Kafka's results (test oracle)
    model = {m: (inst, set(ts)) for m, inst, ts in members}
    ref = REFERENCE[assignor](model, topics)
    assert ref == {m: [list(x) for x in v] for m, v in expected.items()}
    for t, n in topics.items():
        c.ok("create_topic", topic=t, partitions=n)
    gid = f"k{case}"
    # join in reverse order: the result depends on the ordering rule only
    for i, (mid, inst, ts) in enumerate(reversed(members)):
        kw = {"instance_id": inst} if inst else {}
        if i == 0:
            kw["assignor"] = assignor
        r = join(c, gid, ts, member_id=mid, **kw)
    g = get_group(c, gid)
    assert g["assignor"] == assignor
    got = assignments_of(g)
    assert got == {m: [list(x) for x in v] for m, v in expected.items()}, got
    assert r["assignment"] == got[r["member_id"]]


# ==========================================================================
# sticky


def test_sticky_moves_as_few_as_possible(client):
    c = client
    c.ok("create_topic", topic="sk", partitions=6)
    join(c, "gsk", ["sk"], member_id="m1")
    join(c, "gsk", ["sk"], member_id="m2")
    a2 = assignments_of(get_group(c, "gsk"))
    assert sorted(len(v) for v in a2.values()) == [3, 3]
    join(c, "gsk", ["sk"], member_id="m3")
    a3 = assignments_of(get_group(c, "gsk"))
    assert sorted(len(v) for v in a3.values()) == [2, 2, 2]
    for m in ("m1", "m2"):
        kept = [p for p in a3[m] if p in a2[m]]
        assert len(kept) == 2 and a3[m] == kept, f"{m} lost more than it had to: {a2} -> {a3}"
    gen = get_group(c, "gsk")["generation"]
    c.ok("leave_group", group_id="gsk", member_id="m2")
    a4 = assignments_of(settle(c, "gsk", gen + 1))
    for m in ("m1", "m3"):
        assert all(p in a4[m] for p in a3[m]), f"{m} lost partitions on m2's leave: {a3} -> {a4}"
        assert len(a4[m]) == 3


def test_sticky_prefers_member_with_fewest_partitions(client):
    # z-tie grows from 2 to 3 partitions: its new partition may go to A or B
    # (each holds one of z-tie, both are equally sticky); A holds all of
    # a-big too, so B, with fewer in total, gets it. (a-big sorts first, so
    # A's partitions of it are placed whichever way topics are walked in
    # name order.)
    c = client
    c.ok("create_topic", topic="a-big", partitions=4)
    c.ok("create_topic", topic="z-tie", partitions=2)
    join(c, "gtie", ["a-big", "z-tie"], member_id="A")
    join(c, "gtie", ["z-tie"], member_id="B")
    a = assignments_of(get_group(c, "gtie"))
    assert len([p for p in a["A"] if p[0] == "z-tie"]) == 1 and len(a["B"]) == 1
    gen = get_group(c, "gtie")["generation"]
    c.ok("create_topic", topic="z-tie", partitions=3)
    a2 = assignments_of(settle(c, "gtie", gen + 1))
    assert ["z-tie", 2] in a2["B"], f"the new partition should go to B: {a2!r}"
    assert all(p in a2["A"] for p in a["A"]) and all(p in a2["B"] for p in a["B"])


# ==========================================================================
# invariants over random membership changes


@pytest.mark.parametrize("assignor", ASSIGNORS)
def test_random_membership_invariants(client, assignor):
    c = client
    rng = random.Random(20240601 + ASSIGNORS.index(assignor))
    gid = "rnd-" + assignor
    parts = {}
    for i in range(4):
        t = f"{assignor[:2]}-t{i}"
        parts[t] = rng.randint(1, 6)
        c.ok("create_topic", topic=t, partitions=parts[t])
    topic_names = sorted(parts)
    model = {}            # member_id -> (instance_id or None, set(topics))
    used_ids, used_inst = set(), set()
    gen = None
    prev_owner = {}

    def fresh(prefix, used):
        while True:
            x = f"{prefix}{rng.randrange(10000):04d}"
            if x not in used:
                used.add(x)
                return x

    def some_topics():
        return set(rng.sample(topic_names, rng.randint(1, len(topic_names))))

    steps = 70
    for step in range(steps):
        actions = []
        if len(model) < 8 or not model:
            actions += ["join"] * 3
        if len(model) > 1:
            actions += ["leave"] * 2
        dyn = sorted(m for m, (inst, _) in model.items() if not inst)
        if model:
            actions.append("grow")
        if dyn:
            actions += ["resub", "resub", "noop"]
        if len(dyn) < len(model):
            actions.append("replace")
        action = rng.choice(actions)
        expect_bump = True
        replaced = None
        reply = None
        if action == "join":
            mid = fresh("m", used_ids)
            inst = fresh("i", used_inst) if rng.random() < 0.3 else None
            ts = some_topics()
            kw = {"instance_id": inst} if inst else {}
            if gen is None:
                kw["assignor"] = assignor
            reply = join(c, gid, sorted(ts), member_id=mid, **kw)
            model[mid] = (inst, ts)
        elif action == "leave":
            mid = rng.choice(sorted(model))
            c.ok("leave_group", group_id=gid, member_id=mid)
            del model[mid]
        elif action == "grow":
            t = rng.choice(topic_names)
            parts[t] += rng.randint(1, 3)
            c.ok("create_topic", topic=t, partitions=parts[t])
            expect_bump = any(t in ts for _, ts in model.values())
        elif action == "resub":
            mid = rng.choice(dyn)
            ts = some_topics()
            expect_bump = ts != model[mid][1]
            reply = join(c, gid, sorted(ts), member_id=mid)
            model[mid] = (None, ts)
        elif action == "noop":
            mid = rng.choice(dyn)
            reply = join(c, gid, sorted(model[mid][1], reverse=True), member_id=mid)
            expect_bump = False
        elif action == "replace":
            old = rng.choice(sorted(m for m, (inst, _) in model.items() if inst))
            inst, ts = model[old]
            mid = fresh("m", used_ids)
            reply = join(c, gid, sorted(ts), member_id=mid, instance_id=inst)
            del model[old]
            model[mid] = (inst, ts)
            replaced = (old, mid)
            expect_bump = False

        if gen is not None and expect_bump and action in ("leave", "grow"):
            settle(c, gid, gen + 1)
        g = get_group(c, gid)
        where = f"step {step} ({action}), assignor {assignor}"
        if gen is None:
            gen = g["generation"]
        else:
            want = gen + (1 if expect_bump else 0)
            assert g["generation"] == want, f"{where}: generation {g['generation']}, expected {want}"
            gen = want
        assert g["assignor"] == assignor
        ms = members_of(g)
        assert set(ms) == set(model), f"{where}: members {sorted(ms)} vs {sorted(model)}"
        for mid, (inst, ts) in model.items():
            assert set(ms[mid]["topics"]) == ts, f"{where}: {mid} topics"
            assert ms[mid]["instance_id"] == inst, f"{where}: {mid} instance_id"
        owner = check_ownership(g, parts)
        if reply is not None:
            assert reply["generation"] == gen and reply["members"] == sorted(model)
            assert reply["assignment"] == ms[reply["member_id"]]["assignment"], where
        if replaced:
            old, new = replaced
            assert sorted(p for p, o in owner.items() if o == new) == \
                sorted(p for p, o in prev_owner.items() if o == old), \
                f"{where}: replacement must inherit the assignment"
        elif not expect_bump and prev_owner:
            assert owner == prev_owner, f"{where}: assignment moved without a rebalance"
        if assignor == "sticky":
            check_topic_balance(g)
            if expect_bump:
                best = sticky_max_kept(prev_owner, g, parts)
                kept = kept_per_topic(prev_owner, owner)
                for t, b in best.items():
                    assert kept.get(t, 0) == b, \
                        f"{where}: topic {t} kept {kept.get(t, 0)} partitions, could keep {b}"
        else:
            ref = REFERENCE[assignor](model, parts)
            assert assignments_of(g) == ref, \
                f"{where}: {assignor} differs from Kafka's:\n got {assignments_of(g)}\nwant {ref}"
            subsets = {frozenset(ts) for _, ts in model.values()}
            if assignor == "range" or len(subsets) == 1:
                check_topic_balance(g)
        prev_owner = owner


# ==========================================================================
# stats (section 8)


def test_group_stats(conveyord):
    d = conveyord(min_lease_ms=100)
    c = d.client()
    s = c.ok("stats")
    for k in ("groups", "members", "topics", "rebalances", "members_expired"):
        assert is_int(s[k]) and s[k] == 0, f"fresh daemon stats.{k} = {s[k]}"

    def delta(before, **want):
        # the counters of a leave's or a growth's rebalance may trail the
        # reply a little (see settle): poll, bounded
        box = []

        def match():
            now = c.ok("stats")
            box[:] = [now, {k: now[k] - before[k] for k in want}]
            return box[1] == want

        try:
            poll_until(match, 1.0, "stats deltas", step=0.005)
        except AssertionError:
            raise AssertionError(f"stats deltas {box[1]}, expected {want}") from None
        return box[0]

    c.ok("create_topic", topic="s1", partitions=3)
    s = delta(s, topics=1, groups=0)
    join(c, "sg1", ["s1", "s2"], member_id="a")                   # auto-creates s2
    s = delta(s, topics=1, groups=1, members=1, rebalances=1)
    join(c, "sg1", ["s1"], member_id="b")
    join(c, "sg2", ["s1"], member_id="a")
    s = delta(s, topics=0, groups=1, members=2, rebalances=2)
    join(c, "sg1", ["s1"], member_id="b")                        # no-op
    s = delta(s, groups=0, members=0, rebalances=0)
    c.ok("create_topic", topic="s1", partitions=5)                # both groups rebalance
    s = delta(s, topics=0, rebalances=2)
    c.ok("create_topic", topic="s2", partitions=20)               # sg1 only
    s = delta(s, topics=0, rebalances=1)
    c.ok("leave_group", group_id="sg1", member_id="b")
    s = delta(s, members=-1, rebalances=1, groups=0)
    join(c, "sg2", ["s1"], member_id="x", session_timeout_ms=150)
    s = delta(s, members=1, rebalances=1)
    poll_until(lambda: c.ok("stats")["members_expired"] == s["members_expired"] + 1,
               0.15 + REMOVAL_SLACK + 1.0, "members_expired to count the expiry")
    s = delta(s, members=-1, rebalances=1, members_expired=1, groups=0)
    c.ok("leave_group", group_id="sg2", member_id="a")
    s = delta(s, members=-1, groups=0, rebalances=1)
    c.ok("delete_group", group_id="sg2")
    s = delta(s, groups=-1, members=0, rebalances=0, topics=0)
    # failed requests change no counter
    c.err("create_topic", "CONFLICT", topic="s1", partitions=1)
    c.err("join_group", "BAD_REQUEST", group_id="sg1", topics=[])
    c.err("leave_group", "UNKNOWN_MEMBER", group_id="sg1", member_id="b")
    s = delta(s, groups=0, members=0, topics=0, rebalances=0, members_expired=0)
    assert s["requests"].get("join_group", 0) >= 6
    assert s["requests"].get("create_topic", 0) >= 4
