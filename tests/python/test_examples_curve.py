"""The demo pipeline's programs against a coordinator that requires CurveZMQ
(issue 7): with the server's key and a listed client certificate the C
source, a C transform, a Python sink and a Python transform register, join
the group and move records; with a wrong server key or an unknown client
certificate the source never registers and stops with TIMEOUT; half the
options, an unreadable certificate or a bad key are a usage error (one
line, exit status 2). Every wait is bounded; every process started is
stopped."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import CONVEYORD, _pick_port

BIN = os.path.dirname(CONVEYORD)
CTL = os.environ.get("CONVEYORCTL", os.path.join(BIN, "conveyorctl"))
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SOURCE = os.path.join(BIN, "conveyor-example-source")
TRANSFORM_C = os.path.join(BIN, "conveyor-example-transform")
ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))

sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
import conveyor  # noqa: E402

PROGRAMS = {
    "source": [SOURCE],
    "transform": [TRANSFORM_C],
    "pipeline_sink": [PY, os.path.join(EXAMPLES, "pipeline_sink.py")],
    "pipeline_transform": [PY, os.path.join(EXAMPLES, "pipeline_transform.py")],
    "pipeline_view": [PY, os.path.join(EXAMPLES, "pipeline_view.py")],
}
# The hint the C programs and the Python ones add to a TIMEOUT under CURVE.
CURVE_HINT = "CurveZMQ: a coordinator whose key is not --server-key"


class Procs:
    """Processes started by a test, stopped (bounded) at the end, newest
    first (workers leave while the coordinator still runs)."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log):
        with open(log, "w") as f:
            p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=ENV)
        self.procs.append(p)
        return p

    def stop(self, p, timeout=10):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def stop_all(self):
        for p in reversed(self.procs):
            self.stop(p)


@pytest.fixture
def procs():
    ps = Procs()
    yield ps
    ps.stop_all()


def _wait(cond, timeout, what, procs=()):
    """Polls cond until it is truthy; fails at the deadline, or at once if
    one of procs has exited (with its log)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        for p, log in procs:
            if p.poll() is not None:
                pytest.fail(f"{what}: {p.args!r} exited {p.returncode}:\n{log.read_text()}")
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out ({timeout} s) waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def keys(tmp_path):
    """server, pipeline (listed in clients/) and mallory (not listed)."""
    d = tmp_path / "keys"
    clients = d / "clients"
    clients.mkdir(parents=True)
    for name in ("server", "pipeline", "mallory"):
        out = subprocess.run([CTL, "keygen", name, "--dir", str(d)], capture_output=True,
                             text=True, timeout=20)
        assert out.returncode == 0, out.stderr
    (clients / "pipeline.cert").write_bytes((d / "pipeline.cert").read_bytes())
    return d


@pytest.fixture
def curve_daemon(conveyord, keys):
    return conveyord("--curve-secret", str(keys / "server.cert_secret"),
                     "--curve-clients", str(keys / "clients"), min_lease_ms=100)


def _security(keys):
    return conveyor.Security(str(keys / "server.cert"), str(keys / "pipeline.cert_secret"))


def test_pipeline_runs_over_curve(curve_daemon, keys, procs, tmp_path):
    ep = curve_daemon.requests
    good = ["--server-key", str(keys / "server.cert"), "--cert", str(keys / "pipeline.cert_secret")]
    source_ep = f"tcp://127.0.0.1:{_pick_port()}"
    sink_ep = f"tcp://127.0.0.1:{_pick_port()}"
    stats = tmp_path / "sink.json"
    logs = {name: tmp_path / f"{name}.log" for name in ("source", "sink", "tc", "tpy")}
    started = {}
    started["source"] = procs.start(
        [SOURCE, "-e", ep, *good, "--id", "src-curve", "--listen", source_ep,
         "--partitions", "4", "--records-per-partition", "50", "--rate", "0"], logs["source"])
    started["sink"] = procs.start(
        [PY, os.path.join(EXAMPLES, "pipeline_sink.py"), "-e", ep, *good, "--id", "sink-curve",
         "--listen", sink_ep, "--stats", str(stats), "--stats-interval", "0.1"], logs["sink"])

    with conveyor.Client(ep, timeout=3.0, security=_security(keys)) as client:
        want = {"src-curve": "source", "sink-curve": "sink"}

        def registered():
            got = {s.service_id: s.service_type for s in client.list_services()}
            return got == want

        # The transforms start once the source has created its topic: a
        # member joining first would create it with the server's default
        # 12 partitions, and the source (4) would then rightly refuse to
        # start (partitions never shrink; a CI run failed so).
        running = [(started[n], logs[n]) for n in started]
        _wait(registered, 10, "the source and the sink to register", running)
        started["tc"] = procs.start(
            [TRANSFORM_C, "-e", ep, *good, "--id", "tc-curve", "--session-timeout-ms", "3000",
             "--journal", str(tmp_path / "tc.jsonl")], logs["tc"])
        started["tpy"] = procs.start(
            [PY, os.path.join(EXAMPLES, "pipeline_transform.py"), "-e", ep, *good,
             "--id", "tpy-curve", "--session-timeout-ms", "3000",
             "--journal", str(tmp_path / "tpy.jsonl")], logs["tpy"])
        running = [(started[n], logs[n]) for n in started]
        want.update({"tc-curve": "transform", "tpy-curve": "transform"})
        _wait(registered, 10, "the four programs to register", running)
        svc = client.get_service("src-curve")
        assert svc.endpoint == source_ep and svc.labels == {"topic": "events", "partitions": "4"}
        assert client.list_topics()["events"] == 4

        def both_members():
            try:
                group = client.get_group("transformers")
            except conveyor.NotFound:
                return False
            return {m.member_id for m in group.members} == {"tc-curve", "tpy-curve"}

        _wait(both_members, 10, "both transforms in group transformers", running)

        # Records flow: everything the source has went through the
        # transforms (coordinator over CURVE, source and sink plaintext).
        def delivered():
            try:
                return json.loads(stats.read_text())["unique"] == 4 * 50
            except (OSError, ValueError, KeyError):
                return False

        _wait(delivered, 10, "200 records at the sink", running)
        assert json.loads(stats.read_text())["bad"] == 0

    # conveyorctl with the same keys sees the same group.
    out = subprocess.run([CTL, "-e", ep, "-t", "3000", *good, "--json", "group", "transformers"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    members = {m["member_id"] for m in json.loads(out.stdout)["group"]["members"]}
    assert members == {"tc-curve", "tpy-curve"}

    # All of them stop cleanly (leave, deregister).
    for name in ("tpy", "tc", "sink", "source"):
        assert procs.stop(started[name]) == 0, logs[name].read_text()
    with conveyor.Client(ep, timeout=3.0, security=_security(keys)) as client:
        assert list(client.list_services()) == []


def test_source_with_wrong_server_key_or_unknown_cert_does_not_register(
        curve_daemon, keys, procs, tmp_path):
    ep = curve_daemon.requests
    wrong_key = open(keys / "mallory.cert").read().split('public-key = "')[1][:40]
    cases = {
        # A valid Z85 key, but not the server's: the handshake fails.
        "wrong-key": ["--server-key", wrong_key, "--cert", str(keys / "pipeline.cert_secret")],
        # The right server, a certificate it does not list.
        "stranger": ["--server-key", str(keys / "server.cert"),
                     "--cert", str(keys / "mallory.cert_secret")],
    }
    runs = {}
    for name, creds in cases.items():
        log = tmp_path / f"{name}.log"
        runs[name] = (procs.start([SOURCE, "-e", ep, *creds, "--id", f"src-{name}",
                                   "--listen", f"tcp://127.0.0.1:{_pick_port()}",
                                   "--records-per-partition", "10"], log), log)
    # The source's calls time out after 3 s: it must give up by itself.
    deadline = time.monotonic() + 12
    for name, (p, log) in runs.items():
        try:
            p.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name}: the source did not give up within 12 s:\n{log.read_text()}")
        text = log.read_text()
        assert p.returncode == 1, (name, text)
        assert "cannot create topic events" in text and "TIMEOUT" in text, (name, text)
        assert CURVE_HINT in text, (name, text)
    with conveyor.Client(ep, timeout=3.0, security=_security(keys)) as client:
        assert list(client.list_services()) == []
        assert "events" not in client.list_topics()
    # The daemon turned them away; it still serves the listed client.
    assert curve_daemon.alive()


def test_bad_curve_options_are_one_line_usage_errors(keys, tmp_path):
    (tmp_path / "garbage.cert").write_text("not a certificate\n")
    key = str(keys / "server.cert")
    cert = str(keys / "pipeline.cert_secret")
    cases = [
        (["--server-key", key], "go together"),
        (["--cert", cert], "go together"),
        (["--server-key", "~" * 40, "--cert", cert], "Z85"),
        (["--server-key", str(tmp_path / "nope.cert"), "--cert", cert], "nope.cert"),
        (["--server-key", key, "--cert", str(tmp_path / "nope.cert_secret")], "nope.cert_secret"),
        (["--server-key", key, "--cert", str(tmp_path / "garbage.cert")], "garbage.cert"),
    ]
    # Nothing listens there: a program that got past its options would time out.
    ep = f"tcp://127.0.0.1:{_pick_port()}"
    runs = []
    for name, argv in sorted(PROGRAMS.items()):
        for args, why in cases:
            p = subprocess.Popen(argv + ["-e", ep, *args], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, env=ENV)
            runs.append((name, args, why, p))
    try:
        for name, args, why, p in runs:
            out, err = p.communicate(timeout=20)
            assert p.returncode == 2, (name, args, out, err)
            lines = err.strip().splitlines()
            assert len(lines) == 1 and why in lines[0], (name, args, err)
            assert lines[0].startswith(name + ":"), (name, args, err)
    finally:
        for *_, p in runs:
            if p.poll() is None:
                p.kill()
                p.wait(5)


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_help_shows_curve_options(name):
    proc = subprocess.run(PROGRAMS[name] + ["--help"], capture_output=True, text=True,
                          timeout=20, env=ENV)
    assert proc.returncode == 0, proc.stderr
    assert "--server-key" in proc.stdout and "--cert" in proc.stdout
    if name == "source":
        assert "Only the coordinator connection" in proc.stdout
