"""Black-box conformance tests for conveyord, from protocol.md sections
1, 2, 3, 6, 7, 8, 9 and 10 (topics and consumer groups are out of scope).

Run with: /usr/bin/python3 -m pytest tests/python
"""

import os
import random
import signal
import subprocess
import time

import msgpack
import pytest

from conftest import (CONVEYORD, READY_RE, build_argv, now_ms, pack, unpack)

SERVICE_KEYS = {
    "service_id", "service_name", "service_type", "endpoint", "labels",
    "weight", "group_id", "health", "registered_at", "last_heartbeat_at",
    "lease_ms", "revision",
}

# Section 3: "Each transition happens within 250 ms of its deadline."  We
# measure on the client clock from the register (or heartbeat) reply, so on
# top of the spec's 250 ms we allow 100 ms for scheduling and transport.
TRANSITION_SLACK = 0.250 + 0.100
# The transition must not happen before its deadline; the deadline is at
# least `lease` after we *sent* the request. 20 ms covers millisecond
# rounding of the server's clock.
EARLY_TOLERANCE = 0.020

NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@-"


def reg(c, sid, name=None, stype="source", endpoint="tcp://10.0.0.1:5000", **kw):
    return c.ok("register", service_id=sid, service_name=name or ("n-" + sid),
                service_type=stype, endpoint=endpoint, **kw)


def reg_fields(sid, name=None, **kw):
    f = dict(service_id=sid, service_name=name or ("n-" + sid),
             service_type="source", endpoint="tcp://10.0.0.1:5000")
    f.update(kw)
    return f


def latest_seq(c):
    return c.ok("hello")["seq"]


def is_int(x):
    return type(x) is int


# ==========================================================================
# hello


def test_hello_fields_and_types(daemon, client):
    r = client.ok("hello")
    for key in ("server", "version", "node_id", "events_endpoint"):
        assert isinstance(r.get(key), str) and r[key], f"{key}: {r!r}"
    assert is_int(r.get("protocol")) and r["protocol"] == 1
    assert is_int(r.get("seq")) and r["seq"] == 0, "fresh daemon has published nothing"
    assert "leader" in r and r["leader"] is None, "not clustered: leader is nil"
    assert is_int(r.get("lease_ms")) and r["lease_ms"] == 1000   # --lease-ms 1000
    assert is_int(r.get("session_timeout_ms")) and r["session_timeout_ms"] == 30000
    # the events endpoint reported is the one the daemon actually bound
    assert r["events_endpoint"] == daemon.events
    # node_id is stable
    assert client.ok("hello")["node_id"] == r["node_id"]


def test_wildcard_endpoints_resolved(conveyord):
    d = conveyord(wildcard=True)      # --listen/--publish tcp://127.0.0.1:*
    assert "*" not in d.requests and "*" not in d.events
    assert d.requests != d.events
    assert d.client().ok("hello")["events_endpoint"] == d.events


def test_hello_over_req_socket(daemon):
    req = daemon.req()
    r = req.request({"op": "hello", "rid": "r1"})
    assert r["ok"] is True and r["rid"] == "r1" and r["protocol"] == 1
    # lock-step: a second request works too
    r = req.request({"op": "hello"})
    assert r["ok"] is True and "rid" not in r


# ==========================================================================
# registry round trip


def test_register_get_list_deregister_round_trip(daemon, client):
    t0 = now_ms()
    r = client.ok("register", service_id="svc-1", service_name="orders",
                  service_type="transform", endpoint="tcp://10.1.2.3:6000",
                  labels={"zone": "a", "tier": "gold"}, group_id="grp-1",
                  lease_ms=5000, weight=7)
    t1 = now_ms()
    assert r["lease_ms"] == 5000
    s = r["service"]
    assert set(s) == SERVICE_KEYS, f"record keys: {sorted(s)}"
    assert s["service_id"] == "svc-1"
    assert s["service_name"] == "orders"
    assert s["service_type"] == "transform"
    assert s["endpoint"] == "tcp://10.1.2.3:6000"
    assert s["labels"] == {"zone": "a", "tier": "gold"}
    assert s["weight"] == 7
    assert s["group_id"] == "grp-1"
    assert s["health"] == "healthy"
    assert s["lease_ms"] == 5000
    assert s["revision"] == 1
    for k in ("registered_at", "last_heartbeat_at"):
        assert is_int(s[k]) and t0 - 2000 <= s[k] <= t1 + 2000, f"{k}={s[k]} not near now"

    g = client.ok("get_service", service_id="svc-1")
    assert g["service"] == s
    assert is_int(g["seq"]) and g["seq"] == 1

    lst = client.ok("list_services")
    assert lst["services"] == [s]
    assert lst["seq"] == 1

    client.ok("deregister", service_id="svc-1")
    client.err("get_service", "NOT_FOUND", service_id="svc-1")
    assert client.ok("list_services")["services"] == []
    client.err("deregister", "NOT_FOUND", service_id="svc-1")
    client.err("heartbeat", "NOT_FOUND", service_id="svc-1")


def test_register_defaults(client):
    r = reg(client, "d1")
    s = r["service"]
    assert r["lease_ms"] == 1000 and s["lease_ms"] == 1000   # --lease-ms 1000
    assert s["labels"] == {}
    assert s["weight"] == 100
    assert "group_id" in s and s["group_id"] is None
    assert s["health"] == "healthy"
    assert s["revision"] == 1


def test_nil_valued_optional_fields_count_as_absent(client):
    r = client.ok("register", **reg_fields("nil1", labels=None, group_id=None,
                                           lease_ms=None, weight=None))
    s = r["service"]
    assert (s["labels"], s["group_id"], s["lease_ms"], s["weight"]) == ({}, None, 1000, 100)
    assert client.ok("heartbeat", service_id="nil1", health=None)["health"] == "healthy"
    # a nil required field is missing
    client.err("register", "BAD_REQUEST", **reg_fields("nil2", endpoint=None))


def test_unknown_keys_ignored(client):
    r = client.ok("register", future_field={"x": [1, 2]}, another=None,
                  **reg_fields("fk1"))
    assert "future_field" not in r["service"]
    assert client.ok("hello", zzz=1, extra="x")["protocol"] == 1


def test_upsert_rules_and_revision(daemon, client):
    sub = daemon.subscriber("service/")
    sub.sync()
    base = reg_fields("u1", name="up", labels={"a": "1"}, weight=5, group_id="g",
                      lease_ms=4000)
    s1 = client.ok("register", **base)["service"]
    assert s1["revision"] == 1
    ev = sub.wait_for(lambda e: e.topic == "service/up/registered")
    assert ev.body["service"] == s1

    # heartbeat alone changes last_heartbeat_at only: same revision, no event
    hb = client.ok("heartbeat", service_id="u1")
    assert hb["health"] == "healthy" and hb["lease_ms"] == 4000
    assert client.ok("get_service", service_id="u1")["service"]["revision"] == 1

    # re-register with identical fields: no change, nothing published
    s = client.ok("register", **base)["service"]
    assert s["revision"] == 1
    assert latest_seq(client) == 1

    # change one field: updated, revision + 1
    s2 = client.ok("register", **dict(base, endpoint="tcp://10.9.9.9:1"))["service"]
    assert s2["revision"] == 2 and s2["endpoint"] == "tcp://10.9.9.9:1"
    ev = sub.wait_for(lambda e: e.topic == "service/up/updated")
    assert ev.body["type"] == "updated" and ev.body["service"] == s2
    assert ev.body["seq"] == 2 and ev.body["prev"] == 1, \
        "the unchanged re-register must not have published anything"

    # omitted optional fields take their defaults again (not the old values)
    s3 = client.ok("register", **reg_fields("u1", name="up",
                                            endpoint="tcp://10.9.9.9:1"))["service"]
    assert s3["labels"] == {} and s3["weight"] == 100 and s3["group_id"] is None
    assert s3["lease_ms"] == 1000
    assert s3["revision"] == 3
    ev = sub.wait_for(lambda e: e.body.get("seq") == 3)
    assert ev.topic == "service/up/updated" and ev.body["service"] == s3

    # a health change counts: degraded by heartbeat, then a re-register with
    # the same fields restores healthy and publishes updated
    assert client.ok("heartbeat", service_id="u1", health="degraded")["health"] == "degraded"
    ev = sub.wait_for(lambda e: e.body.get("seq") == 4)
    assert ev.topic == "service/up/health"
    assert ev.body["service"]["health"] == "degraded" and ev.body["service"]["revision"] == 4
    s5 = client.ok("register", **reg_fields("u1", name="up",
                                            endpoint="tcp://10.9.9.9:1"))["service"]
    assert s5["health"] == "healthy" and s5["revision"] == 5
    ev = sub.wait_for(lambda e: e.body.get("seq") == 5)
    assert ev.topic == "service/up/updated" and ev.body["service"] == s5
    assert latest_seq(client) == 5


def test_unchanged_reregister_publishes_nothing(daemon, client):
    sub = daemon.subscriber("service/")
    sub.sync()
    f = reg_fields("same", name="same", labels={"k": "v"})
    client.ok("register", **f)
    client.ok("register", **f)
    client.ok("register", **f)
    reg(client, "other", name="other")
    sub.wait_for(lambda e: e.topic == "service/other/registered")
    assert [e.topic for e in sub.events] == ["service/same/registered",
                                              "service/other/registered"]
    assert [e.body["seq"] for e in sub.events] == [1, 2]
    assert client.ok("stats")["events_published"] == 2


def test_rename_publishes_deregistered_then_registered(daemon, client):
    sub = daemon.subscriber("service/")
    sub.sync()
    old = reg(client, "rn1", name="before")["service"]
    old = client.ok("get_service", service_id="rn1")["service"]
    new = client.ok("register", **reg_fields("rn1", name="after"))["service"]
    assert new["service_name"] == "after"
    assert new["revision"] == old["revision"] + 1
    evs = sub.wait_count(3)
    assert [e.topic for e in evs] == ["service/before/registered",
                                      "service/before/deregistered",
                                      "service/after/registered"]
    dereg, regd = evs[1].body, evs[2].body
    assert dereg["type"] == "deregistered" and regd["type"] == "registered"
    assert dereg["service"] == old, "rename's deregistered carries the old record unchanged"
    assert regd["service"] == new
    assert (dereg["seq"], dereg["prev"]) == (2, 1)
    assert (regd["seq"], regd["prev"]) == (3, 0), "first event of root service/after"
    assert client.ok("list_services", service_name="before")["services"] == []
    assert client.ok("list_services", service_name="after")["services"] == [new]
    assert client.ok("get_service", service_id="rn1")["service"] == new
    # no `updated` for a rename
    assert all(not e.topic.endswith("/updated") for e in sub.events)


# ==========================================================================
# field validation


def test_lease_clamping(conveyord):
    d = conveyord(min_lease_ms=200, max_lease_ms=5000, lease_ms=1000)
    c = d.client()
    for asked, granted in ((1, 200), (199, 200), (200, 200), (300, 300),
                           (5000, 5000), (5001, 5000), (10 ** 9, 5000)):
        r = c.ok("register", **reg_fields("lc", lease_ms=asked))
        assert r["lease_ms"] == granted, f"asked {asked}"
        assert r["service"]["lease_ms"] == granted
        assert c.ok("heartbeat", service_id="lc")["lease_ms"] == granted
    assert c.ok("register", **reg_fields("lc2"))["lease_ms"] == 1000
    for bad in (0, -1, -1000, "300", 1.5, True, [300]):
        c.err("register", "BAD_REQUEST", **reg_fields("lc3", lease_ms=bad))
    c.err("get_service", "NOT_FOUND", service_id="lc3")


def test_weight_range(shared_client):
    c = shared_client
    for w in (0, 1, 100, 1000000):
        assert c.ok("register", **reg_fields("w-ok", weight=w))["service"]["weight"] == w
    for w in (-1, 1000001, 2 ** 40, "5", 5.0, True, [1]):
        c.err("register", "BAD_REQUEST", **reg_fields("w-bad", weight=w))
    c.err("get_service", "NOT_FOUND", service_id="w-bad")


def test_labels_limits(shared_client):
    c = shared_client
    ok_cases = [
        {},
        {f"k{i}": "v" for i in range(64)},
        {"k" * 128: "v"},
        {"é" * 64: "x"},            # 128 bytes of UTF-8
        {"k": ""},
        {"k": "v" * 1024},
        {"k": "é" * 512},           # 1024 bytes
    ]
    for labels in ok_cases:
        s = c.ok("register", **reg_fields("lab-ok", labels=labels))["service"]
        assert s["labels"] == labels
    bad_cases = [
        {f"k{i}": "v" for i in range(65)},
        {"k" * 129: "v"},
        {"é" * 65: "x"},            # 130 bytes
        {"": "v"},
        {"k": "v" * 1025},
        {"k": "é" * 513},           # 1026 bytes
        {"k": 1},
        {"k": None},
        {"k": ["v"]},
        ["k", "v"],
        "k=v",
    ]
    for labels in bad_cases:
        c.err("register", "BAD_REQUEST", **reg_fields("lab-bad", labels=labels))
    # non-string label key
    r = c.request({"op": "register", "rid": 9, **reg_fields("lab-bad", labels={1: "v"})})
    assert r["ok"] is False and r["error"] == "BAD_REQUEST" and r["rid"] == 9
    c.err("get_service", "NOT_FOUND", service_id="lab-bad")


@pytest.mark.parametrize("field", ["service_id", "service_name", "group_id"])
def test_name_charset_and_length(shared_client, field):
    c = shared_client

    def fields(value):
        f = reg_fields("nm-" + field)
        f[field] = value
        return f

    for good in (NAME_CHARS, "a", "x" * 200, "a.b_c:d@e-f", "0", "@", "-"):
        r = c.ok("register", **fields(good))
        assert r["service"][field] == good
        if field == "service_id":
            c.ok("deregister", service_id=good)
    for bad in ("", "x" * 201, "a b", "a/b", "a*", "é", "a#b", "a\x00b", "a\n", "tab\t",
                "q?", "a+b", "a,b", 5, ["a"], {"a": "b"}, True):
        r = c.call("register", **fields(bad))
        assert r["ok"] is False and r["error"] == "BAD_REQUEST", f"{field}={bad!r}: {r!r}"


def test_invalid_names_create_nothing(shared_daemon):
    c = shared_daemon.client()
    before = c.ok("list_services")["services"]
    for bad in ("", "x" * 201, "a b", "a/b", "é"):
        c.err("register", "BAD_REQUEST", **reg_fields(bad))
        c.err("get_service", "BAD_REQUEST", service_id=bad)
        c.err("heartbeat", "BAD_REQUEST", service_id=bad)
        c.err("deregister", "BAD_REQUEST", service_id=bad)
    assert c.ok("list_services")["services"] == before


def test_endpoint_and_type_and_required_fields(shared_client):
    c = shared_client
    for ep in ("x", "e" * 1024, "tcp://h:1", "é" * 512):
        assert c.ok("register", **reg_fields("ep-ok", endpoint=ep))["service"]["endpoint"] == ep
    for ep in ("", "e" * 1025, "é" * 513, 5, None, ["x"]):
        c.err("register", "BAD_REQUEST", **reg_fields("ep-bad", endpoint=ep))
    for st in ("source", "transform", "sink"):
        assert c.ok("register", **reg_fields("st-ok", service_type=st))["service"]["service_type"] == st
    for st in ("Source", "filter", "", 1, None):
        c.err("register", "BAD_REQUEST", **reg_fields("st-bad", service_type=st))
    for missing in ("service_id", "service_name", "service_type", "endpoint"):
        f = reg_fields("miss")
        del f[missing]
        c.err("register", "BAD_REQUEST", **f)
    for op in ("get_service", "heartbeat", "deregister"):
        c.err(op, "BAD_REQUEST")
    c.err("heartbeat", "BAD_REQUEST", service_id="ep-ok", health="bogus")
    c.err("heartbeat", "BAD_REQUEST", service_id="ep-ok", health="unknown")
    c.err("heartbeat", "BAD_REQUEST", service_id="ep-ok", health=1)
    # field checks come before state checks
    c.err("heartbeat", "BAD_REQUEST", service_id="never-there", health="bogus")
    for sid in ("ep-bad", "st-bad", "miss"):
        c.err("get_service", "NOT_FOUND", service_id=sid)


# ==========================================================================
# list_services


def test_list_services_filters(daemon, client):
    specs = [
        ("s5", "alpha", "source", {"zone": "a", "tier": "1"}, "g1"),
        ("s1", "alpha", "sink", {"zone": "a"}, None),
        ("s3", "beta", "source", {"zone": "b", "tier": "1"}, "g1"),
        ("s2", "beta", "transform", {}, "g2"),
        ("s4", "gamma", "source", {"zone": "a", "tier": "2"}, None),
    ]
    for sid, name, stype, labels, gid in specs:
        client.ok("register", service_id=sid, service_name=name, service_type=stype,
                  endpoint="tcp://e:1", labels=labels, group_id=gid)
    client.ok("heartbeat", service_id="s4", health="degraded")
    client.ok("heartbeat", service_id="s3", health="unhealthy")

    def ids(**flt):
        r = client.ok("list_services", **flt)
        assert is_int(r["seq"]) and r["seq"] == latest_seq(client)
        got = [s["service_id"] for s in r["services"]]
        assert got == sorted(got), "services must be sorted by service_id"
        return got

    assert ids() == ["s1", "s2", "s3", "s4", "s5"]
    assert ids(service_name="alpha") == ["s1", "s5"]
    assert ids(service_name="nope") == []
    assert ids(service_type="source") == ["s3", "s4", "s5"]
    assert ids(group_id="g1") == ["s3", "s5"]
    assert ids(labels={"zone": "a"}) == ["s1", "s4", "s5"]
    assert ids(labels={"zone": "a", "tier": "1"}) == ["s5"]
    assert ids(labels={"tier": "1"}) == ["s3", "s5"]
    assert ids(labels={"zone": "z"}) == []
    assert ids(labels={}) == ["s1", "s2", "s3", "s4", "s5"]
    assert ids(healthy_only=True) == ["s1", "s2", "s5"]
    assert ids(healthy_only=False) == ["s1", "s2", "s3", "s4", "s5"]
    assert ids(service_type="source", labels={"zone": "a"}) == ["s4", "s5"]
    assert ids(service_type="source", labels={"zone": "a"}, healthy_only=True) == ["s5"]
    assert ids(service_name="beta", group_id="g2", service_type="transform") == ["s2"]
    assert ids(service_name="beta", group_id="g1", service_type="transform") == []
    # records in the list are the full records
    full = client.ok("list_services", service_name="gamma")["services"]
    assert full == [client.ok("get_service", service_id="s4")["service"]]
    assert full[0]["health"] == "degraded"


@pytest.mark.parametrize("flt", [
    {"service_type": "bogus"},
    {"service_type": 1},
    {"service_name": "bad name"},
    {"service_name": ""},
    {"service_name": "x" * 201},
    {"group_id": "a/b"},
    {"group_id": 3},
    {"labels": ["a"]},
    {"labels": {"k": 1}},
    {"labels": {"": "v"}},
    {"labels": {"k" * 129: "v"}},
    {"healthy_only": "yes"},
    {"healthy_only": 1},
])
def test_list_services_invalid_filter(shared_client, flt):
    shared_client.err("list_services", "BAD_REQUEST", **flt)


# ==========================================================================
# lifecycle (short leases: --min-lease-ms 200, lease 300 ms)


def _check_transition(ev, t_send, t_reply, deadline_s, kind):
    early = ev.t - (t_send + deadline_s)
    late = ev.t - (t_reply + deadline_s)
    assert early >= -EARLY_TOLERANCE, f"{kind} {-early * 1000:.0f} ms before its deadline"
    assert late <= TRANSITION_SLACK, f"{kind} {late * 1000:.0f} ms after its deadline"


def test_lifecycle_unhealthy_then_expired(daemon, client):
    sub = daemon.subscriber("service/life/")
    sub.sync()
    t_send = time.monotonic()
    r = client.ok("register", **reg_fields("lf1", name="life", lease_ms=300))
    t_reply = time.monotonic()
    assert r["lease_ms"] == 300
    rec = r["service"]

    ev = sub.wait_for(lambda e: e.topic == "service/life/health", timeout=2.0)
    _check_transition(ev, t_send, t_reply, 0.300, "unhealthy")
    b = ev.body
    assert b["type"] == "health" and b["service"]["health"] == "unhealthy"
    assert b["service"]["revision"] == 2
    # server clock: the transition is within 250 ms (+ margin) after the deadline
    assert 300 <= b["at"] - rec["last_heartbeat_at"] <= 300 + 350, b
    g = client.ok("get_service", service_id="lf1")["service"]
    assert g["health"] == "unhealthy" and g["revision"] == 2
    assert client.ok("list_services", healthy_only=True)["services"] == []

    ev2 = sub.wait_for(lambda e: e.topic == "service/life/expired", timeout=2.0)
    _check_transition(ev2, t_send, t_reply, 0.600, "expired")
    b2 = ev2.body
    assert b2["type"] == "expired"
    assert b2["service"]["service_id"] == "lf1"
    assert b2["service"]["health"] == "unhealthy", "the last record"
    assert 600 <= b2["at"] - rec["last_heartbeat_at"] <= 600 + 350, b2
    assert b2["prev"] == b["seq"] and b2["seq"] == b["seq"] + 1
    assert [e.topic for e in sub.events] == ["service/life/registered",
                                             "service/life/health",
                                             "service/life/expired"]

    client.err("get_service", "NOT_FOUND", service_id="lf1")
    client.err("heartbeat", "NOT_FOUND", service_id="lf1")
    st = client.ok("stats")
    assert st["expired"] == 1 and st["services"] == 0


def test_heartbeat_restores_unhealthy_and_renews_lease(daemon, client):
    sub = daemon.subscriber("service/rest/")
    sub.sync()
    client.ok("register", **reg_fields("rs1", name="rest", lease_ms=300))
    sub.wait_for(lambda e: e.topic == "service/rest/health", timeout=2.0)
    n = len(sub.events)
    t_send = time.monotonic()
    hb = client.ok("heartbeat", service_id="rs1")
    t_reply = time.monotonic()
    assert hb["health"] == "healthy" and hb["lease_ms"] == 300
    ev = sub.wait_for(lambda e: True, start=n)
    assert ev.topic == "service/rest/health"
    assert ev.body["service"]["health"] == "healthy" and ev.body["service"]["revision"] == 3
    assert client.ok("get_service", service_id="rs1")["service"]["health"] == "healthy"
    # The lease restarted at the heartbeat: the next event is `health`
    # (unhealthy) one lease after it, not `expired` at the old deadline.
    ev = sub.wait_for(lambda e: True, start=n + 1, timeout=2.0)
    assert ev.topic == "service/rest/health", f"expected unhealthy again, got {ev!r}"
    assert ev.body["service"]["health"] == "unhealthy"
    _check_transition(ev, t_send, t_reply, 0.300, "unhealthy after heartbeat")


def test_regular_heartbeats_keep_service_alive(daemon, client):
    client.ok("register", **reg_fields("alive", name="alive", lease_ms=300))
    end = time.monotonic() + 1.0     # > 3 leases
    while time.monotonic() < end:
        assert client.ok("heartbeat", service_id="alive")["health"] == "healthy"
        time.sleep(0.08)             # heartbeat pacing, well inside the lease
    s = client.ok("get_service", service_id="alive")["service"]
    assert s["health"] == "healthy" and s["revision"] == 1
    evs = client.ok("events_since", since=0, prefix="service/alive/")["events"]
    assert [t for t, _ in evs] == ["service/alive/registered"]


def test_heartbeat_health_changes_publish(daemon, client):
    sub = daemon.subscriber("service/hh/")
    sub.sync()
    client.ok("register", **reg_fields("hh1", name="hh", lease_ms=10000))
    r = client.ok("heartbeat", service_id="hh1", health="degraded")
    assert r["health"] == "degraded" and r["lease_ms"] == 10000
    ev = sub.wait_for(lambda e: e.topic == "service/hh/health")
    assert ev.body["type"] == "health" and ev.body["service"]["health"] == "degraded"
    assert ev.body["service"]["revision"] == 2
    # same health again: no change, no event
    client.ok("heartbeat", service_id="hh1", health="degraded")
    assert client.ok("list_services", healthy_only=True)["services"] == []
    r = client.ok("heartbeat", service_id="hh1", health="unhealthy")
    assert r["health"] == "unhealthy"
    r = client.ok("heartbeat", service_id="hh1")       # default healthy
    assert r["health"] == "healthy"
    sub.wait_count(4)
    healths = [e.body["service"]["health"] for e in sub.events[1:4]]
    assert healths == ["degraded", "unhealthy", "healthy"]
    assert [e.body["seq"] for e in sub.events] == [1, 2, 3, 4]
    assert client.ok("get_service", service_id="hh1")["service"]["revision"] == 4
    client.err("heartbeat", "NOT_FOUND", service_id="nobody")


# ==========================================================================
# events


def test_event_format_seq_and_prev(daemon, client):
    sub = daemon.subscriber("service/")
    sub.sync()
    t0 = now_ms()
    a1 = reg(client, "ea", name="a")["service"]                      # 1 a
    b1 = reg(client, "eb", name="b")["service"]                      # 2 b
    a2 = client.ok("register", **reg_fields("ea", name="a", weight=3))["service"]  # 3 a
    client.ok("deregister", service_id="eb")                          # 4 b
    client.ok("heartbeat", service_id="ea", health="degraded")        # 5 a
    client.ok("deregister", service_id="ea")                          # 6 a
    evs = sub.wait_count(6)
    t1 = now_ms()
    assert [e.topic for e in evs] == [
        "service/a/registered", "service/b/registered", "service/a/updated",
        "service/b/deregistered", "service/a/health", "service/a/deregistered"]
    assert [e.body["seq"] for e in evs] == [1, 2, 3, 4, 5, 6]
    assert [e.body["prev"] for e in evs] == [0, 0, 1, 2, 3, 5]
    for e in evs:
        b = e.body
        assert b["type"] == e.topic.rsplit("/", 1)[1]
        assert is_int(b["at"]) and t0 - 2000 <= b["at"] <= t1 + 2000
        assert set(b) >= {"type", "at", "seq", "prev", "service"}
    assert evs[0].body["service"] == a1 and evs[1].body["service"] == b1
    assert evs[2].body["service"] == a2
    assert evs[3].body["service"] == b1, "removal carries the last record"
    assert evs[5].body["service"]["health"] == "degraded"
    assert evs[5].body["service"]["revision"] == 3
    assert latest_seq(client) == 6
    st = client.ok("stats")
    assert st["seq"] == 6 and st["events_published"] == 6


def test_event_topics_use_prefix_matching(daemon, client):
    sub = daemon.subscriber("service/x/")
    sub.sync()
    reg(client, "p1", name="xy")       # service/xy/... must not match service/x/
    reg(client, "p2", name="x")
    ev = sub.wait_for(lambda e: True)
    assert ev.topic == "service/x/registered"
    client.ok("deregister", service_id="p2")
    sub.wait_count(2)
    assert [e.topic for e in sub.events] == ["service/x/registered",
                                              "service/x/deregistered"]


def test_sys_heartbeat(daemon, client):
    hello = client.ok("hello")
    sub = daemon.subscriber("sys/")
    sub.wait(lambda: len(sub.heartbeats) >= 2, 3.5, "two heartbeats")
    h = sub.heartbeats[-1].body
    assert h["type"] == "heartbeat"
    assert h["node_id"] == hello["node_id"]
    assert h["seq"] == 0
    assert "prev" not in h
    assert is_int(h["at"])
    interval = sub.heartbeats[-1].t - sub.heartbeats[-2].t
    assert 0.6 <= interval <= 1.5, f"heartbeat interval {interval:.3f} s"
    reg(client, "hb1", lease_ms=60000)
    reg(client, "hb2", lease_ms=60000)
    t_reg = time.monotonic()
    # a heartbeat received 50 ms after the second register reply was surely
    # sent after it (loopback latency is far below that)
    sub.wait(lambda: sub.heartbeats[-1].t >= t_reg + 0.05, 2.5,
             "a heartbeat after two events")
    assert sub.heartbeats[-1].body["seq"] == 2, "heartbeat seq is the latest event"
    # heartbeats are not numbered events
    st = client.ok("stats")
    assert st["seq"] == 2 and st["events_published"] == 2
    assert client.ok("events_since", since=0)["events"] == \
        client.ok("events_since", since=0, prefix="service/")["events"]
    assert [t for t, _ in client.ok("events_since", since=0)["events"]] == \
        ["service/n-hb1/registered", "service/n-hb2/registered"]


def test_events_since(daemon, client):
    sub = daemon.subscriber("service/")
    sub.sync()
    for i in range(3):
        reg(client, f"a{i}", name="aa")
        reg(client, f"b{i}", name="bb")
    sub.wait_count(6)
    r = client.ok("events_since", since=0)
    assert r["seq"] == 6 and r["more"] is False, [(t, b["seq"], b["at"], b["service"]) for t, b in r["events"]]
    evs = r["events"]
    assert len(evs) == 6
    for (topic, body), live in zip(evs, sub.events):
        assert topic == live.topic and body == live.body
    assert [b["seq"] for _, b in evs] == [1, 2, 3, 4, 5, 6]

    r = client.ok("events_since", since=2)
    assert [b["seq"] for _, b in r["events"]] == [3, 4, 5, 6] and r["more"] is False

    r = client.ok("events_since", since=0, prefix="service/bb/")
    assert [b["seq"] for _, b in r["events"]] == [2, 4, 6]
    assert all(t.startswith("service/bb/") for t, _ in r["events"])

    r = client.ok("events_since", since=0, limit=2)
    assert [b["seq"] for _, b in r["events"]] == [1, 2] and r["more"] is True
    r = client.ok("events_since", since=2, limit=2, prefix="service/aa/")
    assert [b["seq"] for _, b in r["events"]] == [3, 5] and r["more"] is False
    r = client.ok("events_since", since=0, limit=2, prefix="service/aa/")
    assert [b["seq"] for _, b in r["events"]] == [1, 3] and r["more"] is True
    r = client.ok("events_since", since=0, limit=6)
    assert len(r["events"]) == 6 and r["more"] is False
    r = client.ok("events_since", since=0, limit=10000)
    assert len(r["events"]) == 6 and r["more"] is False

    for since in (6, 7, 1000):
        r = client.ok("events_since", since=since)
        assert r["events"] == [] and r["more"] is False and r["seq"] == 6
    assert client.ok("events_since", since=0, prefix="nothing/")["events"] == []

    for bad in ({"since": -1}, {"since": "0"}, {"since": 1.0}, {},
                {"since": 0, "limit": 0}, {"since": 0, "limit": 10001},
                {"since": 0, "limit": -1}, {"since": 0, "limit": "5"},
                {"since": 0, "prefix": 5}):
        client.err("events_since", "BAD_REQUEST", **bad)


def test_events_since_on_fresh_daemon(client):
    r = client.ok("events_since", since=0)
    assert r["events"] == [] and r["more"] is False and r["seq"] == 0
    r = client.ok("events_since", since=5)
    assert r["events"] == [] and r["seq"] == 0


def test_events_since_compacted(conveyord):
    d = conveyord(history=5)
    c = d.client()
    for i in range(8):
        reg(c, f"c{i}", name="comp")
    # seqs 1..8 published, the last 5 (4..8) kept: oldest = 4
    r = c.ok("events_since", since=3)
    assert [b["seq"] for _, b in r["events"]] == [4, 5, 6, 7, 8] and r["seq"] == 8
    for since in (0, 1, 2):
        e = c.err("events_since", "COMPACTED", since=since, rid="cmp")
        assert e["oldest"] == 4 and e["rid"] == "cmp"
    e = c.err("events_since", "COMPACTED", since=2, prefix="service/none/")
    assert e["oldest"] == 4
    assert c.ok("events_since", since=8)["events"] == []
    assert c.ok("events_since", since=50)["events"] == []
    r = c.ok("events_since", since=5, limit=2)
    assert [b["seq"] for _, b in r["events"]] == [6, 7] and r["more"] is True


# ==========================================================================
# envelopes (sections 1 and 7)


def test_req_shape_from_dealer_is_answered_with_delimiter(client):
    client.send_frames([b"", pack({"op": "hello", "rid": 1})])
    frames = client.recv_frames()
    assert frames is not None, "REQ-shaped request not answered"
    assert len(frames) == 2 and frames[0] == b"", f"reply shape {frames!r}"
    r = unpack(frames[1])
    assert r["ok"] is True and r["rid"] == 1


def test_req_client_empty_body_is_bad_request(daemon):
    r = daemon.req().request(b"")
    assert r["ok"] is False and r["error"] == "BAD_REQUEST" and "rid" not in r


def test_bad_envelopes_dropped_and_counted(daemon, client):
    body = pack({"op": "hello", "rid": "dropped"})
    before = client.ok("stats")
    shapes = [
        [body, body],                       # two body frames
        [b"x", body],                       # non-empty frame before the body
        [b"", b"", body],                   # three frames
        [b"", body, b""],
        [b"x", b"", body],
        [b"", body, body, body],
    ]
    for frames in shapes:
        client.send_frames(frames)
    # Replies on one connection come back in order, so if any of the above
    # were answered, that answer would arrive before this one.
    r = client.request({"op": "hello", "rid": "after"})
    assert r.get("rid") == "after", f"a malformed envelope was answered: {r!r}"
    after = client.ok("stats")
    assert after["dropped"] - before["dropped"] == len(shapes)
    assert sum(after["requests"].values()) - sum(before["requests"].values()) == 2, \
        "dropped envelopes are not requests (only hello + stats counted)"
    assert client.stray == []
    assert daemon.alive()


def test_single_empty_frame_is_bad_request(client):
    before = client.ok("stats")
    r = client.request(b"")
    assert r["ok"] is False and r["error"] == "BAD_REQUEST" and "rid" not in r
    assert isinstance(r["message"], str)
    after = client.ok("stats")
    assert after["dropped"] == before["dropped"]
    assert after["requests"].get("?", 0) == before["requests"].get("?", 0) + 1


# ==========================================================================
# check order (section 2)

ANY = object()       # rid may or may not be echoed
NONE = object()      # rid must be absent

CHECK_ORDER_CASES = [
    # (id, raw body, expected error or None for ok, expected rid)
    ("array", pack([1, 2]), "BAD_REQUEST", NONE),
    ("string", pack("hello"), "BAD_REQUEST", NONE),
    ("nil", pack(None), "BAD_REQUEST", NONE),
    ("int", pack(42), "BAD_REQUEST", NONE),
    ("never-used-byte", b"\xc1", "BAD_REQUEST", NONE),
    ("truncated-map", b"\x82\xa2op", "BAD_REQUEST", NONE),
    ("text-garbage", b"not msgpack at all", "BAD_REQUEST", NONE),
    ("huge-map32-header", b"\xdf\xff\xff\xff\xff", "BAD_REQUEST", NONE),
    ("huge-str32-header", b"\x81\xa2op\xdb\xff\xff\xff\xff", "BAD_REQUEST", NONE),
    ("trailing-nil", pack({"op": "hello", "rid": 7}) + b"\xc0", "BAD_REQUEST", ANY),
    ("trailing-map", pack({"op": "hello", "rid": 7}) + pack({"op": "hello"}),
     "BAD_REQUEST", ANY),
    ("int-key", pack({"op": "hello", "rid": 7, 1: "x"}), "BAD_REQUEST", ANY),
    ("bin-key", pack({"op": "hello", "rid": 7, b"k": "x"}), "BAD_REQUEST", ANY),
    ("empty-map", pack({}), "BAD_REQUEST", NONE),
    ("missing-op", pack({"rid": 5}), "BAD_REQUEST", 5),
    ("op-int", pack({"op": 5, "rid": 5}), "BAD_REQUEST", 5),
    ("op-nil", pack({"op": None, "rid": 5}), "BAD_REQUEST", 5),
    ("op-bin", pack({"op": b"hello", "rid": 5}), "BAD_REQUEST", 5),
    ("op-array", pack({"op": ["hello"], "rid": 5}), "BAD_REQUEST", 5),
    ("missing-op-v2", pack({"v": 2, "rid": 5}), "BAD_REQUEST", 5),
    ("v0", pack({"op": "hello", "v": 0, "rid": 5}), "BAD_REQUEST", 5),
    ("v-neg", pack({"op": "hello", "v": -1, "rid": 5}), "BAD_REQUEST", 5),
    ("v-str", pack({"op": "hello", "v": "x", "rid": 5}), "BAD_REQUEST", 5),
    ("v-str-1", pack({"op": "hello", "v": "1", "rid": 5}), "BAD_REQUEST", 5),
    ("v-float", pack({"op": "hello", "v": 1.0, "rid": 5}), "BAD_REQUEST", 5),
    ("v-bool", pack({"op": "hello", "v": True, "rid": 5}), "BAD_REQUEST", 5),
    ("v-str-unknown-op", pack({"op": "nope", "v": "x", "rid": 5}), "BAD_REQUEST", 5),
    ("v2", pack({"op": "hello", "v": 2, "rid": 5}), "UNSUPPORTED_VERSION", 5),
    ("v-big", pack({"op": "hello", "v": 2 ** 40, "rid": 5}), "UNSUPPORTED_VERSION", 5),
    ("v2-unknown-op", pack({"op": "nope", "v": 2, "rid": 5}), "UNSUPPORTED_VERSION", 5),
    ("v2-register-missing-fields", pack({"op": "register", "v": 2, "rid": 5}),
     "UNSUPPORTED_VERSION", 5),
    ("unknown-op", pack({"op": "nope", "rid": 5}), "UNKNOWN_OP", 5),
    ("empty-op", pack({"op": "", "rid": 5}), "UNKNOWN_OP", 5),
    ("op-case", pack({"op": "HELLO", "rid": 5}), "UNKNOWN_OP", 5),
    ("unknown-op-no-rid", pack({"op": "nope"}), "UNKNOWN_OP", NONE),
    ("register-missing-fields", pack({"op": "register", "rid": 5}), "BAD_REQUEST", 5),
    ("v1", pack({"op": "hello", "v": 1, "rid": 5}), None, 5),
    ("v-nil", pack({"op": "hello", "v": None, "rid": 5}), None, 5),
    ("no-rid", pack({"op": "hello"}), None, NONE),
    ("rid-nil", pack({"op": "hello", "rid": None}), None, NONE),
    ("rid-nil-error", pack({"op": "nope", "rid": None}), "UNKNOWN_OP", NONE),
]


@pytest.mark.parametrize("body,code,rid", [c[1:] for c in CHECK_ORDER_CASES],
                         ids=[c[0] for c in CHECK_ORDER_CASES])
def test_check_order(shared_client, body, code, rid):
    r = shared_client.request(body)
    if code is None:
        assert r["ok"] is True, r
    else:
        assert r["ok"] is False and r["error"] == code, r
        assert isinstance(r["message"], str)
    if rid is NONE:
        assert "rid" not in r, r
    elif rid is not ANY:
        assert "rid" in r and r["rid"] == rid, r


def rawstr(b):
    """A msgpack str (fixstr) holding arbitrary bytes, valid UTF-8 or not."""
    assert len(b) < 32
    return bytes([0xa0 | len(b)]) + b


@pytest.mark.parametrize("body", [
    b"\x82\xa2op" + rawstr(b"list_se\xe7vices") + b"\xa3rid\x01",
    b"\x82\xa2op" + rawstr(b"\xff\xfe") + b"\xa3rid\x01",
    b"\x83\xa2op\xabget_service\xaaservice_id" + rawstr(b"a\xffb") + b"\xa3rid\x01",
    b"\x83\xa2op\xa5hello" + rawstr(b"\xc3(") + b"\xa1x\xa3rid\x01",      # invalid key
    b"\x83\xa2op\xaeevents_since\xa5since\x00\xa6prefix" + rawstr(b"\xe2\x82"),
], ids=["op", "op-only-garbage", "service_id", "key", "prefix"])
def test_error_replies_are_valid_utf8(shared_client, body):
    """Section 2: every reply is one MessagePack map with string keys; a
    MessagePack str is UTF-8, so a standard decoder must be able to read the
    reply even when the request carried invalid UTF-8 (a rid is echoed
    verbatim, so these requests carry an integer rid)."""
    shared_client.send_body(body)
    raw = shared_client.recv_raw()
    try:
        r = unpack(raw)
    except UnicodeDecodeError as e:
        pytest.fail(f"reply is not valid MessagePack/UTF-8 ({e}): {raw!r}")
    assert isinstance(r, dict) and isinstance(r.get("ok"), bool), r


def test_op_with_embedded_nul_is_unknown(shared_client):
    for op in ("hello\x00", "hello\x00x", "stats\x00"):
        r = shared_client.request({"op": op, "rid": 1}, timeout=5)
        assert r["ok"] is False and r["error"] == "UNKNOWN_OP", (op, r)
    r = shared_client.request({"op": "get_service", "rid": 2, "service_id": "a\x00"})
    assert r["ok"] is False and r["error"] == "BAD_REQUEST", r


RIDS = [0, 1, -1, 2 ** 63 - 1, 2 ** 64 - 1, -2 ** 63, "abc", "", "é✓", b"\x00\xff",
        1.5, True, False, [], {}, [1, "two", [3.0, None]],
        {"a": [1, {"b": None}], "n": -5, "s": "x"}, msgpack.ExtType(7, b"ext")]


@pytest.mark.parametrize("rid", RIDS, ids=[repr(r)[:30] for r in RIDS])
def test_rid_echoed_verbatim(shared_client, rid):
    for msg in ({"op": "hello", "rid": rid},                      # success
                {"op": "nope", "rid": rid},                       # UNKNOWN_OP
                {"op": "get_service", "rid": rid, "service_id": "none-such"},  # NOT_FOUND
                {"op": "register", "rid": rid}):                  # BAD_REQUEST
        raw = pack(msg)
        shared_client.send_body(raw)
        reply_raw = shared_client.recv_raw()
        r = unpack(reply_raw)
        assert "rid" in r and r["rid"] == rid and type(r["rid"]) is type(rid), (msg, r)
        assert pack(rid) in reply_raw, "rid must be echoed byte for byte"


def test_rid_single_float_verbatim(shared_client):
    raw = pack({"op": "hello", "rid": 0.5}, use_single_float=True)
    assert b"\xca" in raw
    shared_client.send_body(raw)
    reply = shared_client.recv_raw()
    assert pack(0.5, use_single_float=True) in reply, "float32 rid re-encoded"


def test_message_size_limit(conveyord):
    d = conveyord(max_message_bytes=1024)
    c = d.client()

    def hello_of_size(n):
        for k in range(n, 0, -1):
            raw = pack({"op": "hello", "rid": 1, "pad": "x" * k})
            if len(raw) == n:
                return raw
        raise AssertionError(n)

    r = c.request(hello_of_size(1024))
    assert r["ok"] is True, "a body of exactly the limit is accepted"
    r = c.request(hello_of_size(1025))
    assert r["ok"] is False and r["error"] == "LIMIT_EXCEEDED", r
    # checked before decoding: garbage or a non-map over the limit too
    for body in (b"\xc1" * 2000, b"\x00" * 1025, pack(list(range(600)))):
        r = c.request(body)
        assert r["ok"] is False and r["error"] == "LIMIT_EXCEEDED", r
    # a too-large register changes nothing
    big = pack({"op": "register", "rid": 3, **reg_fields("big", labels={"k": "v" * 1000},
                                                          endpoint="e" * 100)})
    assert len(big) > 1024
    r = c.request(big)
    assert r["ok"] is False and r["error"] == "LIMIT_EXCEEDED"
    c.err("get_service", "NOT_FOUND", service_id="big")
    assert latest_seq(c) == 0
    st = c.ok("stats")
    assert st["errors"].get("LIMIT_EXCEEDED") == 5
    assert d.alive()


def test_max_services(conveyord):
    d = conveyord(max_services=3)
    c = d.client()
    for i in range(3):
        reg(c, f"m{i}")
    before = c.ok("list_services")
    e = c.err("register", "LIMIT_EXCEEDED", **reg_fields("m3"))
    assert "rid" in e
    after = c.ok("list_services")
    assert after["services"] == before["services"] and after["seq"] == before["seq"] == 3
    c.err("get_service", "NOT_FOUND", service_id="m3")
    assert c.ok("stats")["services"] == 3
    # an upsert of a known service is not a new one
    assert c.ok("register", **reg_fields("m1", weight=9))["service"]["revision"] == 2
    c.ok("deregister", service_id="m0")
    reg(c, "m3")
    assert [s["service_id"] for s in c.ok("list_services")["services"]] == ["m1", "m2", "m3"]


# ==========================================================================
# stats (section 8)


def test_stats_fields_and_counts(conveyord):
    d = conveyord(max_message_bytes=65536)
    c = d.client()
    s0 = c.ok("stats")
    for key in ("uptime_ms", "seq", "services", "groups", "members", "topics", "dropped",
                "rebalances", "expired", "members_expired", "events_published"):
        assert is_int(s0.get(key)), f"stats.{key}: {s0!r}"
    for key in ("seq", "services", "groups", "members", "topics", "dropped", "rebalances",
                "expired", "members_expired", "events_published"):
        assert s0[key] == 0, f"fresh daemon stats.{key} = {s0[key]}"
    assert s0["uptime_ms"] >= 0
    assert isinstance(s0["requests"], dict) and isinstance(s0["errors"], dict)
    assert all(isinstance(k, str) and is_int(v) for k, v in s0["requests"].items())
    assert all(isinstance(k, str) and is_int(v) for k, v in s0["errors"].items())

    def req(s, op):
        return s["requests"].get(op, 0)

    def err(s, code):
        return s["errors"].get(code, 0)

    for _ in range(3):
        c.ok("hello")
    reg(c, "st1")
    reg(c, "st2")
    c.ok("deregister", service_id="st2")
    c.err("get_service", "NOT_FOUND", service_id="nope")
    c.err("frobnicate", "UNKNOWN_OP")
    c.err("register", "BAD_REQUEST")
    c.err("hello", "UNSUPPORTED_VERSION", v=2)
    assert c.request(b"\xc1")["error"] == "BAD_REQUEST"              # undecodable
    assert c.request(pack({"rid": 1}))["error"] == "BAD_REQUEST"     # no op
    assert c.request(b"\x00" * 70000)["error"] == "LIMIT_EXCEEDED"   # not decoded
    c.send_frames([b"x", pack({"op": "hello"})])                     # dropped
    s1 = c.ok("stats")

    assert req(s1, "hello") - req(s0, "hello") == 4     # 3 + the v=2 one
    assert req(s1, "register") - req(s0, "register") == 3
    assert req(s1, "deregister") - req(s0, "deregister") == 1
    assert req(s1, "get_service") - req(s0, "get_service") == 1
    assert req(s1, "stats") - req(s0, "stats") == 1
    assert req(s1, "?") - req(s0, "?") == 4, \
        "unknown op, undecodable, op-less and oversized bodies count under '?'"
    assert "frobnicate" not in s1["requests"]
    assert err(s1, "NOT_FOUND") - err(s0, "NOT_FOUND") == 1
    assert err(s1, "UNKNOWN_OP") - err(s0, "UNKNOWN_OP") == 1
    assert err(s1, "BAD_REQUEST") - err(s0, "BAD_REQUEST") == 3
    assert err(s1, "UNSUPPORTED_VERSION") - err(s0, "UNSUPPORTED_VERSION") == 1
    assert err(s1, "LIMIT_EXCEEDED") - err(s0, "LIMIT_EXCEEDED") == 1
    assert s1["dropped"] == 1
    assert s1["services"] == 1
    assert s1["seq"] == 3 and s1["events_published"] == 3
    assert s1["expired"] == 0
    assert s1["uptime_ms"] >= s0["uptime_ms"]
    s2 = c.ok("stats")
    assert req(s2, "stats") == req(s1, "stats") + 1


# ==========================================================================
# robustness (section 7)


def test_bad_input_leaves_state_unchanged(conveyord):
    d = conveyord(max_message_bytes=65536)
    c = d.client()
    reg(c, "keep", name="keep", labels={"a": "b"}, lease_ms=60000)
    reg(c, "keep2", name="keep2", lease_ms=60000)
    before_list = c.ok("list_services")
    before = c.ok("stats")
    keep = c.ok("get_service", service_id="keep")["service"]

    bodies = []
    # invalid updates of an existing service: none may change it, even partly
    for bad in ({"service_name": "bad name"}, {"labels": {f"k{i}": "v" for i in range(65)}},
                {"weight": -1}, {"lease_ms": 0}, {"service_type": "bogus"},
                {"endpoint": ""}, {"group_id": "x/y"}, {"labels": {"k": 1}},
                {"weight": 2000000, "endpoint": "tcp://changed:1"}):
        f = reg_fields("keep", name="keep", labels={"z": "z"}, endpoint="tcp://other:2")
        f.update(bad)
        bodies.append(pack({"op": "register", **f}))
    bodies.append(pack({"op": "heartbeat", "service_id": "keep", "health": "bogus"}))
    bodies.append(pack({"op": "deregister", "service_id": "keep", "v": 2}))
    bodies.append(pack({"op": "deregister", "service_id": "keep", "v": "x"}))
    bodies.append(pack({"op": "deregister", "service_id": "keep"}) + b"\x00")
    bodies.append(pack({"op": "deregister", "service_id": "keep", 5: 5}))
    bodies.append(pack({"op": "deregister", "service_id": ["keep"]}))
    bodies.append(b"\x00" * 70000)
    bodies.append(b"\x91" * 60000 + b"\xc0")                 # deeply nested arrays
    bodies.append(b"\x81\xa1x" + b"\x91" * 60000 + b"\xc0")  # deep value in a map
    bodies.append(b"\xdd\xff\xff\xff\xff")                   # array32 claiming 4G items
    bodies.append(b"\xc6\xff\xff\xff\xff\x00")               # bin32 claiming 4 GB
    bodies.append(b"")
    rng = random.Random(20240601)
    for _ in range(200):
        bodies.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 48))))
    hello = bytearray(pack({"op": "list_services", "rid": 1, "labels": {"a": "b"}}))
    for _ in range(200):
        m = bytearray(hello)
        for _ in range(rng.randint(1, 3)):
            m[rng.randrange(len(m))] = rng.getrandbits(8)
        bodies.append(bytes(m))
    for b in bodies:
        c.send_body(b)
    envelopes = [[b"a", b"b"], [b"", b"", b""], [b"x", pack({"op": "deregister",
                                                               "service_id": "keep"})],
                 [pack({"op": "deregister", "service_id": "keep"})] * 2]
    for frames in envelopes:
        c.send_frames(frames)
    # every valid-shape message gets exactly one reply, in order (decoded
    # leniently here: test_error_replies_are_valid_utf8 checks the encoding)
    for i in range(len(bodies)):
        r = c.recv(timeout=5.0, lenient=True)
        assert isinstance(r.get("ok"), bool), r
    assert c.request({"op": "hello", "rid": "end"})["rid"] == "end", \
        "a reply too many: a dropped envelope was answered"
    assert d.alive()

    after_list = c.ok("list_services")
    assert after_list["services"] == before_list["services"]
    assert after_list["seq"] == before_list["seq"]
    assert c.ok("get_service", service_id="keep")["service"] == keep
    after = c.ok("stats")
    assert after["seq"] == before["seq"] and after["services"] == before["services"]
    assert after["events_published"] == before["events_published"]
    assert after["dropped"] - before["dropped"] == len(envelopes)
    # and it still works normally
    reg(c, "new-after")
    assert latest_seq(c) == before["seq"] + 1


# ==========================================================================
# command line (section 9)


def run_cli(args, timeout=10.0):
    try:
        return subprocess.run([CONVEYORD] + args, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"conveyord {args!r} did not exit within {timeout} s")


def _need_binary():
    if not os.access(CONVEYORD, os.X_OK):
        pytest.fail(f"daemon binary {CONVEYORD} not found")


def test_cli_help():
    _need_binary()
    p = run_cli(["--help"])
    assert p.returncode == 0, p
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    for opt in ("--listen", "--publish", "--config", "--lease-ms"):
        assert opt in out, f"--help does not mention {opt}"


def test_cli_unknown_option():
    _need_binary()
    p = run_cli(["--no-such-option"])
    assert p.returncode == 2, p
    lines = [ln for ln in p.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {lines!r}"


@pytest.mark.parametrize("args", [
    ["--lease-ms", "abc"],
    ["--lease-ms"],
    ["--history", "-5"],
    ["--log-level", "loud"],
], ids=["non-numeric", "missing-value", "negative", "bad-log-level"])
def test_cli_bad_option_values(args):
    _need_binary()
    p = run_cli(build_argv(args)[1:])
    assert p.returncode == 2, p
    assert p.stderr.strip(), "a one-line message is expected"


def test_cli_unbindable_endpoints(conveyord):
    a = conveyord()
    for args in (build_argv(listen=a.requests)[1:],
                 build_argv(publish=a.events)[1:],
                 build_argv(listen="tcp://256.1.1.1:1")[1:],
                 build_argv(publish="tcp://256.1.1.1:1")[1:]):
        p = run_cli(args)
        assert p.returncode == 2, (args, p)
        assert p.stderr.strip()
    # the first daemon is unaffected
    assert a.client().ok("hello")["protocol"] == 1


def test_cli_endpoints_released_on_exit(conveyord):
    a = conveyord()
    assert a.stop() == 0
    b = conveyord(listen=a.requests, publish=a.events)
    assert b.requests == a.requests and b.events == a.events
    assert b.client().ok("hello")["events_endpoint"] == a.events


def test_cli_missing_config_file(tmp_path):
    _need_binary()
    p = run_cli(build_argv(["--config", str(tmp_path / "nope.cfg")])[1:])
    assert p.returncode == 2, p
    assert p.stderr.strip()


def test_cli_config_file_honoured(conveyord, tmp_path):
    cfg = tmp_path / "conveyord.cfg"
    cfg.write_text("# conveyord test config\n"
                   "lease-ms = 2000\n"
                   "session-timeout-ms = \"4000\"\n"
                   "min-lease-ms = 500\n")
    d = conveyord("--config", str(cfg), lease_ms=None, min_lease_ms=None)
    c = d.client()
    h = c.ok("hello")
    assert h["lease_ms"] == 2000 and h["session_timeout_ms"] == 4000
    assert c.ok("register", **reg_fields("cfg", lease_ms=100))["lease_ms"] == 500


def test_cli_command_line_wins_over_config(conveyord, tmp_path):
    cfg = tmp_path / "conveyord.cfg"
    cfg.write_text("lease-ms = 2000\nsession-timeout-ms = 4000\n")
    # both orders: the command line wins wherever --config appears
    d1 = conveyord("--config", str(cfg), "--listen", "tcp://127.0.0.1:*",
                   "--publish", "tcp://127.0.0.1:*", "--lease-ms", "1500", defaults=False)
    d2 = conveyord(config=str(cfg))
    assert d2.argv.index("--config") > d2.argv.index("--lease-ms")
    h1, h2 = d1.client().ok("hello"), d2.client().ok("hello")
    assert h1["lease_ms"] == 1500 and h1["session_timeout_ms"] == 4000
    assert h2["lease_ms"] == 1000 and h2["session_timeout_ms"] == 4000


def test_cli_config_endpoints(conveyord, tmp_path):
    cfg = tmp_path / "conveyord.cfg"
    cfg.write_text('listen = "tcp://127.0.0.1:*"\npublish = "tcp://127.0.0.1:*"\n'
                   "lease-ms = 2500\n")
    d = conveyord("--config", str(cfg), listen=None, publish=None, lease_ms=None)
    assert READY_RE.search(d.stderr())
    assert d.client().ok("hello")["lease_ms"] == 2500


def test_cli_unknown_config_key(tmp_path):
    _need_binary()
    cfg = tmp_path / "conveyord.cfg"
    cfg.write_text("lease-ms = 2000\nno-such-key = 1\n")
    p = run_cli(build_argv(["--config", str(cfg)])[1:])
    assert p.returncode == 2, p
    assert p.stderr.strip()


def test_sigint_exits_zero(conveyord):
    d = conveyord()
    assert d.client().ok("hello")["ok"] is True
    assert d.stop(signal.SIGINT) == 0
