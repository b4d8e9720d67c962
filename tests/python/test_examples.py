"""Smoke tests of the example programs and of scripts/demo.sh, against a
real daemon. Every wait is bounded."""

import os
import select
import signal
import socket
import subprocess
import time

import pytest

from conftest import CONVEYORD

BIN = os.path.dirname(CONVEYORD)
SERVICE = os.path.join(BIN, "conveyor-example-service")
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def start_service(daemon, sid, lease_ms=300, *extra):
    return subprocess.Popen(
        [SERVICE, "-e", daemon.requests, "--id", sid, "--name", "orders",
         "--type", "source", "--listen", "tcp://127.0.0.1:9999",
         "--lease-ms", str(lease_ms), "--weight", "250", "--label", "zone=eu", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _read_line(proc, timeout):
    """One line of the program's stdout, waiting at most timeout."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return proc.stdout.readline()


def test_service_example_stays_alive_then_expires_after_kill(conveyord):
    daemon = conveyord(min_lease_ms=100)
    sub = daemon.subscriber("service/orders/")
    sub.sync()
    client = daemon.client()
    proc = start_service(daemon, "ex-1")
    try:
        reg = sub.wait_for(lambda e: e.body["type"] == "registered", 5.0)
        record = reg.body["service"]
        assert record["service_id"] == "ex-1"
        assert record["weight"] == 250 and record["labels"] == {"zone": "eu"}
        assert record["lease_ms"] == 300
        # Heartbeats from the background actor keep it healthy for several
        # leases: the record's last_heartbeat_at keeps moving and no health
        # event appears.
        first = record["last_heartbeat_at"]
        deadline = time.monotonic() + 5.0
        while True:
            svc = client.ok("get_service", service_id="ex-1")["service"]
            if svc["last_heartbeat_at"] >= first + 3 * 300:
                break
            assert time.monotonic() < deadline, "heartbeats did not keep the lease"
            sub._pump(0.1)
        assert svc["health"] == "healthy"
        assert not [e for e in sub.events if e.body["type"] != "registered"]
        # SIGKILL: no deregistration; the coordinator's clock removes it.
        proc.kill()
        proc.wait(5)
        start = len(sub.events)
        sub.wait_for(lambda e: e.body["type"] == "health"
                     and e.body["service"]["health"] == "unhealthy", 3.0, start)
        sub.wait_for(lambda e: e.body["type"] == "expired", 3.0, start)
        client.err("get_service", "NOT_FOUND", service_id="ex-1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_service_example_deregisters_on_sigterm(conveyord):
    daemon = conveyord(min_lease_ms=100)
    sub = daemon.subscriber("service/orders/")
    sub.sync()
    proc = start_service(daemon, "ex-2", 1000)
    sub.wait_for(lambda e: e.body["type"] == "registered", 5.0)
    # The program says it is registered once its register call returned; a
    # signal before that interrupts the call itself.
    first = _read_line(proc, 5.0)
    assert "ex-2: registered as orders" in first
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0, first + out
    assert "ex-2: deregistered" in out
    sub.wait_for(lambda e: e.body["type"] == "deregistered", 3.0)


def test_service_example_reports_unreachable_coordinator():
    # Nothing listens on a port we hold bound but never listen on.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        proc = subprocess.run(
            [SERVICE, "-e", f"tcp://127.0.0.1:{port}", "--id", "x", "--name", "y"],
            capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert "cannot register x" in proc.stderr and "TIMEOUT" in proc.stderr


def _free_port_pair():
    for port in range(23000, 31000, 7):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
                return port
        except OSError:
            continue
    pytest.fail("no free port pair")


def test_demo_script_runs_and_cleans_up():
    port = _free_port_pair()
    env = dict(os.environ, DEMO_PORT=str(port), BUILD_DIR=os.path.dirname(BIN))
    proc = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh"), "--no-build"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "[watch] seq=1 service/" in out
    assert "service/enrich/expired enrich-1" in out
    assert "enrich-1 removed" in out
    assert "service/orders/deregistered orders-src-1" in out
    # Everything it started is gone: the port is free again.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
