"""Smoke tests of the example programs, against a real daemon: the service
example's lifecycle, and every program's --help, bad arguments and
unreachable coordinator. scripts/demo.sh and the pipeline run in
test_pipeline.py. Every wait is bounded."""

import os
import select
import signal
import socket
import subprocess
import sys
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


# ---------------------------------------------------------------------------
# Every example program: --help, bad arguments, an unreachable coordinator.
# (The demo pipeline itself runs in test_pipeline.py.)

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
EXAMPLES = os.path.join(ROOT, "examples")
PROGRAMS = {
    "service": [SERVICE],
    "source": [os.path.join(BIN, "conveyor-example-source")],
    "transform": [os.path.join(BIN, "conveyor-example-transform")],
    "pipeline_sink": [PY, os.path.join(EXAMPLES, "pipeline_sink.py")],
    "pipeline_transform": [PY, os.path.join(EXAMPLES, "pipeline_transform.py")],
    "pipeline_view": [PY, os.path.join(EXAMPLES, "pipeline_view.py")],
    "pipeline_report": [PY, os.path.join(EXAMPLES, "pipeline_report.py")],
}
# Arguments each program must refuse with exit status 2 (usage).
BAD_ARGS = {
    "service": [["--bogus"], ["--id", "x"], ["--label", "novalue", "--id", "x", "--name", "y"]],
    "source": [["--bogus"], ["--partitions", "0"], ["--partitions", "x"], ["--rate", "-1"],
               ["--records-per-partition", "0", "--rate", "0"], ["stray"], ["--listen"]],
    "transform": [["--bogus"], ["--batch", "0"], ["--poll-ms", "abc"],
                  ["--session-timeout-ms", "-5"], ["stray"], ["--journal"]],
    "pipeline_sink": [["--bogus"], ["--weight", "-1"], ["--weight", "x"], ["--lease-ms", "0"],
                      ["--ack-delay-ms", "-1"], ["stray"]],
    "pipeline_transform": [["--bogus"], ["--batch", "0"], ["--session-timeout-ms", "0"],
                           ["--poll-ms", "x"], ["stray"]],
    "pipeline_view": [["--bogus"], ["--interval", "0"], ["--interval", "x"]],
    "pipeline_report": [[], ["--run-dir", "/nonexistent", "summary"], ["--run-dir", "/tmp"],
                        ["--run-dir", "/tmp", "bogus"],
                        ["--run-dir", "/tmp", "wait-rebalance", "--cause", "x",
                         "--member", "m", "--since", "0"]],
}
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_example_help(name):
    proc = subprocess.run(PROGRAMS[name] + ["--help"], capture_output=True, text=True,
                          timeout=20, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "usage" in proc.stdout.lower() and "--" in proc.stdout


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_example_bad_arguments(name):
    for args in BAD_ARGS[name]:
        proc = subprocess.run(PROGRAMS[name] + args, capture_output=True, text=True,
                              timeout=20, env=ENV)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert proc.stderr.strip(), args      # says why


@pytest.mark.parametrize("name", ["source", "transform", "pipeline_sink", "pipeline_transform"])
def test_pipeline_example_reports_unreachable_coordinator(name, tmp_path):
    with socket.socket() as s, socket.socket() as s2:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s2.bind(("127.0.0.1", 0))
        listen = s2.getsockname()[1]
        s2.close()    # the program's own endpoint: free, not the default
        extra = ["--journal", str(tmp_path / "j.jsonl")] if "transform" in name else \
            ["--listen", f"tcp://127.0.0.1:{listen}"]
        proc = subprocess.run(PROGRAMS[name] + ["-e", f"tcp://127.0.0.1:{port}", *extra],
                              capture_output=True, text=True, timeout=40, env=ENV)
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "TIMEOUT" in proc.stderr, proc.stderr
