"""The demo pipeline (examples/, scripts/demo.sh) end to end: a shortened
run of the demo and its summary's criteria, the source's fetch protocol,
and the at-least-once path of a batch in flight when its partition is
revoked. Every wait is bounded; every process started is stopped."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import msgpack
import pytest
import zmq

from conftest import CONVEYORD

BIN = os.path.dirname(CONVEYORD)
ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EXAMPLES = os.path.join(ROOT, "examples")
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SOURCE = os.path.join(BIN, "conveyor-example-source")
TRANSFORM_C = os.path.join(BIN, "conveyor-example-transform")

sys.path.insert(0, os.path.join(ROOT, "bindings", "python"))
sys.path.insert(0, EXAMPLES)
import conveyor  # noqa: E402
from pipeline_common import payload, read_jsonl  # noqa: E402

ENV = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python"))


def _free_ports(count):
    """The first of count consecutive free loopback ports."""
    for port in range(23100, 31000, 11):
        socks = []
        try:
            for i in range(count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port + i))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    pytest.fail("no free port block")


def _stray(pattern):
    """pids of processes whose command line contains pattern (not ours),
    like pgrep -f, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if pattern in cmdline:
            found.append(int(entry))
    return found


class Procs:
    """Processes started by a test, stopped (bounded) at the end."""

    def __init__(self):
        self.procs = []

    def start(self, argv, log):
        f = open(log, "w")
        p = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=ENV)
        f.close()
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


def _wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out ({timeout} s) waiting for {what}")


# ---------------------------------------------------------------------------
# The demo, shortened


def test_demo_short_run_meets_the_bar(tmp_path):
    port = _free_ports(5)
    summary_path = tmp_path / "summary.json"
    env = dict(ENV, DEMO_PORT=str(port), BUILD_DIR=os.path.dirname(BIN),
               DEMO_SUMMARY_JSON=str(summary_path))
    proc = subprocess.run([os.path.join(ROOT, "scripts", "demo.sh"), "--no-build", "--quiet",
                           "--duration", "20"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    s = json.loads(summary_path.read_text())

    # Zero lost, nothing corrupted, every record produced was delivered.
    assert s["produced"] == 12 * 20 * 100
    assert s["source_complete"]
    assert s["lost"] == 0
    assert s["bad"] == 0 and s["beyond_produced"] == 0
    assert s["delivered_unique"] == s["produced"]
    # Every partition processed: committed to its end, and delivered.
    assert len(s["per_partition"]) == 12
    for p in s["per_partition"]:
        assert p["committed"] == p["produced"] == p["delivered"] == 2000, p

    # The killed worker's partitions were taken over by the others, who
    # committed on them after the expiry.
    k = s["kill"]
    assert k["member"] == "transform-c-1" and k["partitions"]
    assert 0 < k["expired_after_ms"] <= 3000 + 500        # session 3 s, +250 ms
    takers = {p for m, ps in k["taken_over_by"].items() if m != "transform-c-1" for p in ps}
    assert takers == set(k["partitions"])
    assert set(map(int, k["committed_after_by"])) == set(k["partitions"])
    assert all("transform-c-1" not in ws for ws in k["committed_after_by"].values())
    assert k["latency_ms"] is not None and k["latency_ms"] < 2000

    # Duplicates: at-least-once, bounded by what was in flight at the kill
    # (and at revocations, and unacknowledged batches), all journaled.
    b = s["duplicates_bound"]
    assert s["duplicates"] <= b["total"]
    assert b["total"] == b["in_flight_at_kill"] + b["abandoned_at_revocations"] + \
        b["unacknowledged_batches"]

    # The new transform joined and got a share at once.
    assert s["join"]["member"] == "transform-py-2" and s["join"]["partitions"]
    # Rebalances: 3 joins, the expiry, the 4th join.
    causes = [(c["type"], c["member"]) for r in s["rebalances"] for c in r["causes"]]
    assert ("expired", "transform-c-1") in causes and ("joined", "transform-py-2") in causes

    # Sink shares within 10% of the weights' while both were healthy; then
    # the stopped sink got nothing.
    shares = s["sink_shares"]["sinks"]
    assert set(shares) == {"sink-1", "sink-2"}
    for sid, v in shares.items():
        assert abs(v["share"] - v["expected"]) <= 0.10 * v["expected"], (sid, v)
    shift = s["sink_shift"]
    assert shift["unhealthy_at"] is not None
    assert shift["records_after_unhealthy"]["sink-2"] == 0
    assert shift["records_after_unhealthy"]["sink-1"] > 0

    assert s["ok"] and all(s["checks"].values()), s["checks"]
    # The output shows the rebalance and the summary.
    assert "kill -9 transform-c-1" in out
    assert "transform-c-1's session expired" in out
    assert "expired transform-c-1" in out and "its partitions went to" in out
    assert "new assignment received" in out
    assert "joined transform-py-2" in out
    assert "sink-2 is unhealthy" in out
    assert "== Summary" in out and "lost                  0" in out
    # Everything it started is gone: no process, and no listener on its
    # ports. SO_REUSEADDR, as a server binds: connections the demo's
    # daemon closed first linger in TIME_WAIT on its ports for a minute and
    # would refuse a plain bind (a CI run failed so), yet hold no port.
    assert _stray(f"127.0.0.1:{port}") == []
    for i in range(5):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port + i))


def test_demo_rejects_bad_arguments():
    demo = os.path.join(ROOT, "scripts", "demo.sh")
    for args in (["--bogus"], ["--duration", "5"], ["--duration", "x"], ["--rate", "0"],
                 ["--duration"]):
        proc = subprocess.run([demo, "--no-build", *args], capture_output=True, text=True,
                              timeout=20)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "demo:" in proc.stderr
    proc = subprocess.run([demo, "--help"], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0 and "--duration" in proc.stdout and "--quiet" in proc.stdout


# ---------------------------------------------------------------------------
# The source's protocol


def test_source_serves_deterministic_records(conveyord, procs, tmp_path):
    daemon = conveyord()
    port = _free_ports(1)
    ep = f"tcp://127.0.0.1:{port}"
    report = tmp_path / "report.json"
    src = procs.start([SOURCE, "-e", daemon.requests, "--id", "src-t", "--listen", ep,
                       "--partitions", "3", "--records-per-partition", "25", "--rate", "0",
                       "--max-batch", "10", "--report", str(report)], tmp_path / "src.log")
    with conveyor.Client(daemon.requests, timeout=3.0) as client:
        svc = _wait(lambda: next(iter(client.list_services(service_type="source")), None),
                    10, "the source to register")
        assert svc.service_id == "src-t" and svc.endpoint == ep
        assert svc.labels == {"topic": "events", "partitions": "3"}
        assert client.list_topics()["events"] == 3
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(ep)

        def call(msg):
            dealer.send(msgpack.packb(msg))
            assert dealer.poll(3000), "the source did not answer"
            return msgpack.unpackb(dealer.recv(), raw=False)

        r = call({"op": "fetch", "rid": 7, "partition": 2, "offset": 20, "max": 100})
        assert r["ok"] and r["rid"] == 7 and r["end"] is True and r["high"] == 25
        assert r["records"] == [[2, o, payload(2, o)] for o in range(20, 25)]
        r = call({"op": "fetch", "rid": 8, "partition": 0, "offset": 0, "max": 100})
        assert len(r["records"]) == 10 and r["end"] is False      # --max-batch
        assert r["records"][3] == [0, 3, payload(0, 3)]
        r = call({"op": "fetch", "rid": 9, "partition": 1, "offset": 25})
        assert r["records"] == [] and r["end"] is True
        for bad in ({"op": "fetch", "rid": 1, "partition": 3, "offset": 0},
                    {"op": "fetch", "rid": 1, "partition": 0, "offset": -1},
                    {"op": "fetch", "rid": 1, "partition": "0", "offset": 0},
                    {"op": "fetch", "rid": 1, "partition": 0, "offset": 0, "max": 0}):
            r = call(bad)
            assert r == {"ok": False, "rid": 1, "error": "BAD_REQUEST", "message": r["message"]}
        assert call({"op": "nope", "rid": 2})["error"] == "UNKNOWN_OP"
        dealer.send(b"\xc1")
        assert dealer.poll(3000)
        assert msgpack.unpackb(dealer.recv(), raw=False)["error"] == "BAD_REQUEST"
        r = call({"op": "info", "rid": 3})
        assert r["produced"] == 75 and r["high"] == [25, 25, 25] and r["complete"] is True
        # A REQ socket works too (the empty delimiter is echoed).
        req = ctx.socket(zmq.REQ)
        req.setsockopt(zmq.LINGER, 0)
        req.connect(ep)
        req.send(msgpack.packb({"op": "fetch", "partition": 1, "offset": 0, "max": 2}))
        assert req.poll(3000)
        r = msgpack.unpackb(req.recv(), raw=False)
        assert r["records"] == [[1, 0, payload(1, 0)], [1, 1, payload(1, 1)]] and "rid" not in r
    finally:
        ctx.destroy(linger=0)
    assert procs.stop(src) == 0
    rep = json.loads(report.read_text())
    assert rep["produced"] == 75 and rep["complete"] is True and rep["served"] == 5 + 10 + 2
    with conveyor.Client(daemon.requests, timeout=3.0) as client:
        assert list(client.list_services()) == []       # deregistered


def test_source_rate_limits_production(conveyord, procs, tmp_path):
    daemon = conveyord()
    ep = f"tcp://127.0.0.1:{_free_ports(1)}"
    procs.start([SOURCE, "-e", daemon.requests, "--listen", ep, "--partitions", "2",
                 "--records-per-partition", "1000", "--rate", "50"], tmp_path / "src.log")
    ctx = zmq.Context()
    try:
        dealer = ctx.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(ep)

        rids = [0]

        def info():
            """(reply, sent at, received at), or None after 500 ms; a late
            reply to an earlier try is skipped by its rid."""
            rids[0] += 1
            sent = time.monotonic()
            dealer.send(msgpack.packb({"op": "info", "rid": rids[0]}))
            while True:
                left = sent + 0.5 - time.monotonic()
                if left <= 0 or not dealer.poll(int(left * 1000) + 1):
                    return None
                r = msgpack.unpackb(dealer.recv(), raw=False)
                if r.get("rid") == rids[0]:
                    return r, sent, time.monotonic()

        first, sent1, got1 = _wait(info, 10, "the source")
        time.sleep(1.0)
        second, sent2, got2 = _wait(info, 10, "the source's info")
        grown = second["high"][0] - first["high"][0]
        # About 50 per second over the time between the two readings: at
        # least sent2 - got1, at most got2 - sent1 (about 1 s; more if this
        # process was slow to wake up or a reply slow to come).
        assert 30 * (sent2 - got1) <= grown <= 80 * (got2 - sent1), \
            (first, second, sent2 - got1, got2 - sent1)
        assert second["complete"] is False
    finally:
        ctx.destroy(linger=0)


# ---------------------------------------------------------------------------
# A batch in flight when its partition is revoked: the commit is fenced
# (ILLEGAL_GENERATION or NOT_OWNER), handled, journaled as abandoned; the
# partition's next owner sends it again. Duplicates, never losses.


@pytest.mark.parametrize("lang", ["c", "python"])
def test_revoked_in_flight_batch_is_redelivered_not_lost(conveyord, procs, tmp_path, lang):
    daemon = conveyord(session_timeout_ms=10000)
    ep = daemon.requests
    ports = _free_ports(2)
    run = tmp_path / "run"
    for d in ("journals", "sinks"):
        (run / d).mkdir(parents=True)
    procs.start([SOURCE, "-e", ep, "--listen", f"tcp://127.0.0.1:{ports}", "--partitions", "2",
                 "--records-per-partition", "60", "--rate", "0",
                 "--report", str(run / "source-report.json")], tmp_path / "source.log")
    # A slow sink: every batch stays in flight for 300 ms.
    sink = procs.start([PY, os.path.join(EXAMPLES, "pipeline_sink.py"), "-e", ep, "--id", "sink-s",
                        "--listen", f"tcp://127.0.0.1:{ports + 1}", "--ack-delay-ms", "300",
                        "--stats", str(run / "sinks" / "sink-s.json")], tmp_path / "sink.log")
    with conveyor.Client(ep, timeout=3.0) as client:
        _wait(lambda: len(client.list_services()) == 2, 15, "source and sink")
    journal = run / "journals" / "worker.jsonl"
    argv = ["-e", ep, "--id", "worker", "--batch", "4", "--journal", str(journal)]
    if lang == "c":
        worker = procs.start([TRANSFORM_C, *argv], tmp_path / "worker.log")
    else:
        worker = procs.start([PY, os.path.join(EXAMPLES, "pipeline_transform.py"), *argv],
                             tmp_path / "worker.log")
    _wait(lambda: any(j["ev"] == "sent" for j in read_jsonl(str(journal))), 15, "a first batch")

    # A second member joins right after the worker sent a batch of the
    # partition the sticky assignor will move (learnt on the first try),
    # and leaves once that batch was acknowledged: until the worker's
    # commit of an in-flight batch gets fenced.
    target = None
    seen = 0
    with conveyor.Client(ep, timeout=3.0) as client:
        for attempt in range(12):
            def fresh_sent():
                entries = read_jsonl(str(journal))
                news = [j for j in entries[seen:] if j["ev"] == "sent"
                        and (target is None or j["p"] == target)]
                return (len(entries), news[-1]) if news else None
            seen, sent = _wait(fresh_sent, 15, "a batch in flight")
            joined = client.join_group("transformers", ["events"], member_id="intruder",
                                       session_timeout_ms=10000)
            moved = [p for t, p in joined.assignment]
            assert len(moved) == 1
            if target is None:
                target = moved[0]

            def batch_done():
                # The ack (300 ms) came and the commit was made (or fenced):
                # waited on in the journal, not slept for.
                entries = read_jsonl(str(journal))
                later = entries[entries.index(sent) + 1:]
                return [j for j in later if j.get("p") == sent["p"]
                        and j["ev"] in ("committed", "abandoned", "sink_timeout")]
            _wait(batch_done, 15, "the batch in flight to be committed or abandoned")
            client.leave_group("transformers", "intruder")
            entries = read_jsonl(str(journal))
            if any(j["ev"] == "abandoned" for j in entries):
                break
        else:
            pytest.fail("no commit was ever fenced")

    def drained():
        with conveyor.Client(ep, timeout=3.0) as client:
            offs = client.fetch_offsets("transformers", [("events", 0), ("events", 1)])
        return all(o == 60 for o in offs.values())
    _wait(drained, 60, "every record committed")
    assert worker.poll() is None, "the worker died"
    assert procs.stop(worker) == 0
    assert procs.stop(sink) == 0
    procs.stop_all()   # the source: writes its report

    entries = read_jsonl(str(journal))
    failed = [j for j in entries if j["ev"] == "commit_failed"]
    abandoned = [j for j in entries if j["ev"] == "abandoned"]
    assert failed and abandoned
    assert {j["error"] for j in failed} <= {"ILLEGAL_GENERATION", "NOT_OWNER"}
    assert all(j["reason"] in ("ILLEGAL_GENERATION", "NOT_OWNER") for j in abandoned)
    # The worker resumed the partition from the committed offset when it
    # came back, and sent the abandoned records again.
    assert any(j["ev"] == "resumed" and j["p"] == abandoned[0]["p"]
               and j["offset"] <= abandoned[0]["from"] and j["at"] > abandoned[0]["at"]
               for j in entries)

    out = subprocess.run([PY, os.path.join(EXAMPLES, "pipeline_report.py"), "-e", ep,
                          "--run-dir", str(run), "summary", "--json", str(run / "s.json")],
                         capture_output=True, text=True, timeout=30, env=ENV)
    s = json.loads((run / "s.json").read_text())
    assert s["lost"] == 0 and s["bad"] == 0 and s["produced"] == 120, out.stdout
    assert s["checks"]["every_partition_processed"]
    n = sum(j["to"] - j["from"] for j in abandoned)
    assert s["duplicates_bound"]["abandoned_at_revocations"] == n
    assert 1 <= s["duplicates"] <= s["duplicates_bound"]["total"], out.stdout
    assert out.returncode == 0, out.stdout + out.stderr
