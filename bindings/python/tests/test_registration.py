"""Registration: background heartbeats, health, re-registration, close and crash."""

from __future__ import annotations

import time

import pytest

import conveyor

from conveyor_testlib import wait_for


def test_heartbeats_keep_the_lease_through_several_periods(daemon, client, uid):
    lease_ms = 300
    with conveyor.Registration(uid, uid, "source", "tcp://10.0.0.1:1", lease_ms=lease_ms,
                               server=daemon.requests) as reg:
        assert reg.lease_ms == lease_ms and reg.service.health == "healthy"
        # Five lease periods: without heartbeats it would be unhealthy after
        # one and gone after two.
        deadline = time.monotonic() + 5 * lease_ms / 1000
        while time.monotonic() < deadline:
            svc = client.get_service(uid)
            assert svc.health == "healthy", svc
            time.sleep(0.05)
        assert reg.heartbeats >= 10        # about one per lease/3
        assert reg.registrations == 1
    # close() deregistered it
    with pytest.raises(conveyor.NotFound):
        client.get_service(uid)


def test_close_without_deregister_expires_like_a_crash(daemon, client, uid):
    start = client.hello().seq
    reg = conveyor.Registration(uid, uid, "sink", "tcp://10.0.0.1:1", lease_ms=200,
                                server=daemon.requests)
    reg.close(deregister=False)

    def gone():
        try:
            client.get_service(uid)
            return False
        except conveyor.NotFound:
            return True

    # Polling for the 200 ms unhealthy window is at the mercy of the
    # scheduler on a loaded machine; the events tell it on the server's
    # clock instead.
    wait_for(gone, 3, "expiry")
    events = client.events_since(start, prefix=f"service/{uid}/").events
    assert [e.type for e in events] == ["registered", "health", "expired"]
    _, health, expired = (e.body for e in events)
    assert health["service"]["health"] == "unhealthy"
    last = health["service"]["last_heartbeat_at"]
    # unhealthy one lease after the last heartbeat, removed after two, each
    # within 250 ms of its deadline
    assert 200 <= health["at"] - last <= 200 + 250
    assert 400 <= expired["at"] - last <= 400 + 250


def test_set_health(daemon, client, uid):
    with conveyor.Registration(uid, uid, "source", "tcp://x:1", lease_ms=300,
                               server=daemon.requests) as reg:
        reg.set_health("degraded")
        assert client.get_service(uid).health == "degraded"
        # the background heartbeats keep reporting it: wait for one that
        # started after set_health (counted once its reply came), not a sleep
        beats = reg.heartbeats
        wait_for(lambda: reg.heartbeats > beats, 3, "a background heartbeat")
        assert client.get_service(uid).health == "degraded"
        assert reg.health == "degraded"
        reg.set_health("healthy")
        assert client.get_service(uid).health == "healthy"
        with pytest.raises(ValueError):
            reg.set_health("unknown")


def test_initial_health_and_labels(daemon, client, uid):
    with conveyor.Registration(uid, uid, "transform", "tcp://x:1", labels={"k": "v"},
                               weight=3, health="degraded", server=daemon.requests):
        svc = client.get_service(uid)
        assert svc.health == "degraded" and svc.labels == {"k": "v"} and svc.weight == 3


def test_reregisters_on_not_found(daemon, client, uid):
    with conveyor.Registration(uid, uid, "source", "tcp://x:1", lease_ms=300,
                               server=daemon.requests) as reg:
        client.deregister(uid)    # behind its back (as a server restart would)
        wait_for(lambda: reg.registrations >= 2, 3, "re-registration")
        assert client.get_service(uid).service_name == uid


def test_update(daemon, client, uid):
    with conveyor.Registration(uid, uid, "source", "tcp://x:1", lease_ms=300,
                               server=daemon.requests) as reg:
        svc = reg.update(weight=50, labels={"v": "2"})
        assert svc.weight == 50 and svc.labels == {"v": "2"}
        assert client.get_service(uid).weight == 50
        with pytest.raises(TypeError):
            reg.update(colour="red")


def test_register_errors_raise_from_the_constructor(daemon, uid):
    with pytest.raises(conveyor.BadRequest):
        conveyor.Registration(uid, uid, "not-a-type", "tcp://x:1", server=daemon.requests)


def test_server_may_be_a_client(daemon, client, uid):
    with conveyor.Registration(uid, uid, "source", "tcp://x:1", server=client) as reg:
        assert client.get_service(uid).service_id == reg.service_id
    with pytest.raises(conveyor.NotFound):
        client.get_service(uid)
    assert not client.closed    # the registration used its own socket


def test_survives_an_unreachable_server(conveyord, uid):
    """The heartbeat thread logs failures and goes on; once a server is back
    on the same endpoint it registers again."""
    d = conveyord()
    reg = conveyor.Registration(uid, uid, "source", "tcp://x:1", lease_ms=300,
                                server=d.requests, timeout=0.5)
    try:
        assert d.stop() == 0
        wait_for(lambda: reg.last_error is not None, 5, "a failed heartbeat")
        listen, publish = d.requests, d.events
        d2 = conveyord(listen=listen, publish=publish)
        with conveyor.Client(d2.requests) as c:
            def registered():
                try:
                    return c.get_service(uid)
                except conveyor.NotFound:
                    return None
            wait_for(registered, 5, "re-registration on the new server")
            # The server holds the record before its reply reaches the
            # heartbeat thread, so the count is waited on too, not read once.
            wait_for(lambda: reg.registrations >= 2, 5,
                     "the re-registration's reply at the heartbeat thread")
    finally:
        reg.close()
