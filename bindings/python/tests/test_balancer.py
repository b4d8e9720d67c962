"""LoadBalancer: round robin, smooth weighted round robin, health, live updates."""

from __future__ import annotations

import collections

import pytest

import conveyor

from conveyor_testlib import wait_for


def svc(sid, weight=100, health="healthy", name="api"):
    return conveyor.Service(service_id=sid, service_name=name, service_type="sink",
                            endpoint=f"tcp://{sid}:1", weight=weight, health=health)


def test_round_robin_equal_shares():
    lb = conveyor.LoadBalancer(services=[svc("c"), svc("a"), svc("b")])
    picks = [lb.pick().service_id for _ in range(9)]
    assert picks == ["a", "b", "c"] * 3


def test_smooth_weighted_sequence_and_shares():
    lb = conveyor.LoadBalancer("weighted", services=[svc("a", 5), svc("b", 1), svc("c", 1)])
    assert [lb.pick().service_id for _ in range(7)] == list("aabacaa")
    lb = conveyor.LoadBalancer("weighted", services=[svc("a", 50), svc("b", 30), svc("c", 20)])
    counts = collections.Counter(lb.pick().service_id for _ in range(1000))
    assert counts == {"a": 500, "b": 300, "c": 200}


def test_health_and_weight_zero():
    lb = conveyor.LoadBalancer(services=[svc("a", health="degraded"), svc("b"),
                                         svc("c", weight=0), svc("d", health="unhealthy")])
    assert {lb.pick().service_id for _ in range(10)} == {"b"}
    lb.update([svc("a", health="degraded"), svc("b", health="unhealthy"), svc("e", health="unknown"),
               svc("c", weight=0)])
    assert {lb.pick().service_id for _ in range(10)} == {"a", "e"}
    lb.update([svc("c", weight=0), svc("d", health="unhealthy")])
    assert lb.pick() is None
    lb = conveyor.LoadBalancer("weighted", services=[svc("c", weight=0)])
    assert lb.pick() is None
    with pytest.raises(ValueError):
        conveyor.LoadBalancer("random")


def test_filters_and_events():
    lb = conveyor.LoadBalancer(service_name="api")
    lb.update([svc("a"), svc("x", name="other")])
    assert [s.service_id for s in lb.services] == ["a"]
    body = {"type": "registered", "seq": 1, "prev": 0,
            "service": {"service_id": "b", "service_name": "api", "service_type": "sink",
                        "endpoint": "tcp://b:1", "weight": 100, "health": "healthy"}}
    lb.apply(conveyor.Event.from_wire("service/api/registered", body))
    assert [s.service_id for s in lb.services] == ["a", "b"]
    body = dict(body, type="expired")
    lb.apply(conveyor.Event.from_wire("service/api/expired", body))
    assert [s.service_id for s in lb.services] == ["a"]


def test_live_balancer_follows_registrations(daemon, client, uid):
    regs = {}
    with conveyor.LoadBalancer("weighted", service_name=uid) as lb:
        regs["a"] = conveyor.Registration(f"{uid}-a", uid, "sink", "tcp://a:1", weight=3,
                                          lease_ms=300, server=daemon.requests)
        lb.watch(server=daemon.requests)
        wait_for(lambda: len(lb.services) == 1, 3, "snapshot")
        regs["b"] = conveyor.Registration(f"{uid}-b", uid, "sink", "tcp://b:1", weight=1,
                                          lease_ms=300, server=daemon.requests)
        wait_for(lambda: len(lb.services) == 2, 3, "registered event")
        counts = collections.Counter(lb.pick().service_id for _ in range(400))
        assert counts == {f"{uid}-a": 300, f"{uid}-b": 100}

        regs["a"].set_health("unhealthy")
        wait_for(lambda: [s.service_id for s in lb.candidates()] == [f"{uid}-b"], 3, "health")
        assert {lb.pick().service_id for _ in range(10)} == {f"{uid}-b"}
        regs["a"].set_health("healthy")
        wait_for(lambda: len(lb.candidates()) == 2, 3, "healthy again")

        regs["b"].close(deregister=False)            # crash: expires
        wait_for(lambda: [s.service_id for s in lb.services] == [f"{uid}-a"], 4, "expiry")
        regs["a"].close()
        wait_for(lambda: lb.services == [], 3, "deregistered")
        assert lb.pick() is None
