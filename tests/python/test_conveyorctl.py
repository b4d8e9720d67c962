"""Black-box tests of conveyorctl against a real conveyord.

The daemon fixture is local to this file (not conftest's), so these tests
only depend on the daemon's command line and its "serving ..." log line.
Every wait is bounded; nothing sleeps and hopes.
"""

import json
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time

import pytest

CONVEYORD = os.environ.get("CONVEYORD", "/work/main/build/bin/conveyord")
CONVEYORCTL = os.environ.get("CONVEYORCTL", "/work/main/build/bin/conveyorctl")

READY_RE = re.compile(
    r"serving requests on (tcp://127\.0\.0\.1:\d+), events on (tcp://127\.0\.0\.1:\d+)")

START_TIMEOUT = 10.0    # daemon prints its "serving ..." line within this
STOP_TIMEOUT = 10.0     # and exits within this after SIGTERM
RUN_TIMEOUT = 15.0      # any one conveyorctl run (its own timeout is 3 s)
LINE_TIMEOUT = 5.0      # a watch line shows up within this


class LineReader:
    """Reads a text stream in a thread into a queue, so waits are bounded."""

    def __init__(self, stream):
        self.lines = queue.Queue()
        self.seen = []
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream):
        for line in stream:
            self.seen.append(line)
            self.lines.put(line)
        self.lines.put(None)    # end of stream

    def wait_for(self, predicate, timeout):
        """The first line matching predicate within timeout, else None."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                return None
            if line is None:
                return None
            if predicate(line):
                return line


@pytest.fixture(scope="module")
def endpoint():
    """Starts conveyord on ephemeral ports; yields its request endpoint."""
    proc = subprocess.Popen(
        [CONVEYORD, "--listen", "tcp://127.0.0.1:*", "--publish", "tcp://127.0.0.1:*",
         "--lease-ms", "1000", "--min-lease-ms", "200"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    log = LineReader(proc.stderr)
    line = log.wait_for(READY_RE.search, START_TIMEOUT)
    if line is None:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
        pytest.fail("conveyord did not report its endpoints:\n" + "".join(log.seen))
    yield READY_RE.search(line).group(1)
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
        pytest.fail("conveyord ignored SIGTERM")
    log.thread.join(timeout=STOP_TIMEOUT)
    assert rc == 0, "".join(log.seen)


def ctl(*args, endpoint=None, env=None, timeout=RUN_TIMEOUT):
    """Runs conveyorctl (with -e endpoint when given); returns the result."""
    argv = [CONVEYORCTL] + (["-e", endpoint] if endpoint else []) + list(args)
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout, env=env)


def register(endpoint, sid, name="orders", *extra):
    # A long lease: the daemon's default here is 1 s, and records must not
    # turn unhealthy or expire while a test looks at them.
    r = ctl("register", "--id", sid, "--name", name, "--type", "source",
            "--endpoint", "tcp://10.0.0.5:9000", "--lease-ms", "60000", *extra,
            endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    return r


def free_port():
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------
# Usage


def test_help_exits_0():
    for flag in ("--help", "-h"):
        r = ctl(flag)
        assert r.returncode == 0
        assert "usage: conveyorctl" in r.stdout
        for command in ("status", "services", "service", "register", "heartbeat",
                        "deregister", "watch", "stats"):
            assert command in r.stdout


def test_command_help_exits_0():
    r = ctl("register", "--help")
    assert r.returncode == 0
    assert "--endpoint EP" in r.stdout


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["--bogus", "status"],
    ["-t", "soon", "status"],
    ["services", "--bogus"],
    ["services", "--name"],
    ["services", "--healthy=yes"],
    ["services", "--label", "novalue"],
    ["service"],
    ["service", "a", "b"],
    ["register", "--id", "x"],
    ["register", "--id", "x", "--name", "n", "--type", "source", "--endpoint", "e",
     "--weight", "heavy"],
    ["heartbeat", "x", "--health", "unknown"],
    ["heartbeat"],
])
def test_usage_errors_exit_2(args):
    # Usage errors are found before any request: no daemon is involved.
    r = ctl(*args, endpoint="tcp://127.0.0.1:%d" % free_port())
    assert r.returncode == 2, (args, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith("conveyorctl: "), r.stderr
    assert "--help" in lines[-1]
    assert r.stdout == ""


# --------------------------------------------------------------------------
# Requests


def test_status(endpoint):
    r = ctl("status", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in r.stdout.splitlines())
    for key in ("server", "version", "node", "events", "seq", "services", "uptime"):
        assert fields.get(key, "-") != "-", r.stdout
    assert fields["server"] == "conveyord"
    assert fields["events"].startswith("tcp://")
    r = ctl("--json", "status", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["protocol"] == 1
    assert status["server"] == "conveyord"
    assert status["uptime_ms"] >= 0
    assert "ok" not in status and "rid" not in status
    assert isinstance(status["services"], int)


def test_register_then_services(endpoint):
    r = register(endpoint, "ctl-list-1", "listing", "--label", "zone=a",
                 "--label", "tier=gold", "--weight", "7")
    assert "ctl-list-1" in r.stdout
    r = ctl("services", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    header = lines[0].split()
    assert header == ["ID", "NAME", "TYPE", "HEALTH", "ENDPOINT", "WEIGHT", "LEASE", "LABELS"]
    row = next(line for line in lines if line.startswith("ctl-list-1 "))
    cells = row.split()
    assert cells[:4] == ["ctl-list-1", "listing", "source", "healthy"]
    assert cells[5] == "7"
    assert "tier=gold" in cells[7] and "zone=a" in cells[7]
    # Columns are aligned: every row starts its NAME cell where the header does.
    name_col = lines[0].index("NAME")
    assert all(line[name_col - 2:name_col] == "  " for line in lines)

    r = ctl("--json", "services", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert "ok" not in reply and "rid" not in reply
    record = next(s for s in reply["services"] if s["service_id"] == "ctl-list-1")
    assert record["service_name"] == "listing"
    assert record["labels"] == {"zone": "a", "tier": "gold"}
    assert record["weight"] == 7
    assert record["lease_ms"] == 60000


def test_services_filters(endpoint):
    register(endpoint, "ctl-filter-1", "filtered", "--label", "zone=b")
    register(endpoint, "ctl-filter-2", "filtered", "--label", "zone=c")
    r = ctl("--json", "services", "--name", "filtered", "--label", "zone=c",
            "--healthy", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    ids = [s["service_id"] for s in json.loads(r.stdout)["services"]]
    assert ids == ["ctl-filter-2"]


def test_service_shows_one_record(endpoint):
    register(endpoint, "ctl-one-1", "single", "--group", "g-1")
    r = ctl("service", "ctl-one-1", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in r.stdout.splitlines())
    assert fields["id"] == "ctl-one-1"
    assert fields["name"] == "single"
    assert fields["type"] == "source"
    assert fields["group"] == "g-1"
    assert fields["health"] == "healthy"
    assert fields["lease"] == "60000 ms"
    r = ctl("--json", "service", "ctl-one-1", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    reply = json.loads(r.stdout)
    assert reply["service"]["service_id"] == "ctl-one-1"
    assert isinstance(reply["seq"], int)


def test_heartbeat_health_shows_in_service(endpoint):
    register(endpoint, "ctl-hb-1", "beating")
    # The option after the operand: subcommand options are permuted.
    r = ctl("heartbeat", "ctl-hb-1", "--health", "degraded", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ctl-hb-1: degraded"), r.stdout
    r = ctl("service", "ctl-hb-1", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^health:\s+degraded$", r.stdout, re.M), r.stdout
    r = ctl("--json", "heartbeat", "--health", "healthy", "ctl-hb-1", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["health"] == "healthy"


def test_deregister_then_service_is_not_found(endpoint):
    register(endpoint, "ctl-gone-1", "leaving")
    r = ctl("deregister", "ctl-gone-1", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deregistered ctl-gone-1"
    r = ctl("service", "ctl-gone-1", endpoint=endpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("conveyorctl: NOT_FOUND: "), r.stderr
    assert r.stdout == ""
    r = ctl("deregister", "ctl-gone-1", endpoint=endpoint)
    assert r.returncode == 1
    assert "NOT_FOUND" in r.stderr


def test_server_rejection_exits_1(endpoint):
    r = ctl("register", "--id", "ctl-bad-1", "--name", "bad", "--type", "pump",
            "--endpoint", "tcp://x:1", endpoint=endpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("conveyorctl: BAD_REQUEST: "), r.stderr


def test_endpoint_from_environment(endpoint):
    env = dict(os.environ, CONVEYOR_ENDPOINT=endpoint)
    r = ctl("status", env=env)
    assert r.returncode == 0, r.stderr


def test_unreachable_exits_3():
    ep = "tcp://127.0.0.1:%d" % free_port()
    started = time.monotonic()
    r = ctl("-t", "300", "status", endpoint=ep)
    elapsed = time.monotonic() - started
    assert r.returncode == 3, r.stderr
    assert r.stderr.strip() == \
        "conveyorctl: no reply from %s within 300 ms (is conveyord running?)" % ep
    assert elapsed < 5.0


def test_stats_shows_counters(endpoint):
    ctl("service", "ctl-no-such", endpoint=endpoint)     # an error to count
    r = ctl("stats", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert re.search(r"^uptime_ms:\s+\d+$", r.stdout, re.M), r.stdout
    assert re.search(r"^services:\s+\d+$", r.stdout, re.M), r.stdout
    assert re.search(r"^requests:$", r.stdout, re.M)
    assert re.search(r"^  get_service\s+\d+$", r.stdout, re.M), r.stdout
    assert re.search(r"^  NOT_FOUND\s+\d+$", r.stdout, re.M), r.stdout
    r = ctl("--json", "stats", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    stats = json.loads(r.stdout)
    assert stats["requests"]["get_service"] >= 1
    assert stats["errors"]["NOT_FOUND"] >= 1


# --------------------------------------------------------------------------
# watch


def start_watch(endpoint, *args):
    proc = subprocess.Popen([CONVEYORCTL, "-e", endpoint] + list(args),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    return proc, LineReader(proc.stdout)


def stop_watch(proc, sig=signal.SIGINT):
    proc.send_signal(sig)
    try:
        rc = proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=STOP_TIMEOUT)
        pytest.fail("conveyorctl watch ignored the signal")
    return rc, proc.stderr.read()


def test_watch_prints_registration(endpoint):
    proc, out = start_watch(endpoint, "watch", "service/watched/")
    try:
        # The snapshot line says the watch is subscribed: what follows is live.
        assert out.wait_for(lambda l: " snapshot " in l, LINE_TIMEOUT), out.seen
        register(endpoint, "ctl-watch-1", "watched")
        line = out.wait_for(lambda l: "service/watched/registered" in l, LINE_TIMEOUT)
        assert line, out.seen
        assert re.match(r"^seq=\d+ service/watched/registered ctl-watch-1 healthy$",
                        line.strip()), line
        ctl("heartbeat", "ctl-watch-1", "--health", "unhealthy", endpoint=endpoint)
        line = out.wait_for(lambda l: "service/watched/health" in l, LINE_TIMEOUT)
        assert line and line.strip().endswith("ctl-watch-1 unhealthy"), out.seen
    finally:
        rc, err = stop_watch(proc)
    assert rc == 0, err


def test_watch_json_and_sigterm(endpoint):
    proc, out = start_watch(endpoint, "--json", "watch", "service/jwatched/")
    try:
        first = out.wait_for(lambda l: True, LINE_TIMEOUT)
        assert first, out.seen
        snapshot = json.loads(first)
        # Made by the client, not received: topic is the prefix (or null).
        assert snapshot["topic"] in (None, "service/jwatched/")
        assert snapshot["body"]["type"] == "snapshot"
        assert isinstance(snapshot["body"]["services"], list)
        register(endpoint, "ctl-jwatch-1", "jwatched")
        line = out.wait_for(lambda l: "jwatched/registered" in l, LINE_TIMEOUT)
        assert line, out.seen
        event = json.loads(line)
        assert event["topic"] == "service/jwatched/registered"
        assert event["body"]["type"] == "registered"
        assert event["body"]["service"]["service_id"] == "ctl-jwatch-1"
        assert isinstance(event["body"]["seq"], int)
    finally:
        rc, err = stop_watch(proc, signal.SIGTERM)
    assert rc == 0, err


def test_watch_unreachable_exits_3():
    ep = "tcp://127.0.0.1:%d" % free_port()
    started = time.monotonic()
    r = ctl("-t", "300", "watch", endpoint=ep)
    assert r.returncode == 3, r.stderr
    assert "no reply from" in r.stderr
    assert time.monotonic() - started < 5.0
