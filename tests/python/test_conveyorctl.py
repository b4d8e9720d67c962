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
                        "deregister", "topics", "topic create NAME N", "groups",
                        "group ID", "offsets GROUP", "watch", "stats"):
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
    ["topics", "extra"],
    ["topic"],
    ["topic", "create", "t"],
    ["topic", "create", "t", "4", "5"],
    ["topic", "make", "t", "4"],
    ["topic", "create", "t", "many"],
    ["groups", "extra"],
    ["group"],
    ["group", "g", "h"],
    ["group", "delete", "g", "h"],
    ["offsets"],
    ["offsets", "g", "h"],
    ["offsets", "g", "--topic"],
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


# --------------------------------------------------------------------------
# Topics, groups and offsets
#
# conveyorctl has no join command: members join through a small DEALER
# client speaking the protocol directly (sections 2 and 5).

SESSION_MS = 60000      # members outlive the module


class Wire:
    """A pipelined DEALER client; call() waits (bounded) for its reply."""

    def __init__(self, endpoint):
        self.zmq = pytest.importorskip("zmq")
        self.msgpack = pytest.importorskip("msgpack")
        self.ctx = self.zmq.Context()
        self.sock = self.ctx.socket(self.zmq.DEALER)
        self.sock.setsockopt(self.zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.rid = 0

    def call(self, op, **fields):
        self.rid += 1
        request = dict(fields, op=op, rid=self.rid)
        self.sock.send(self.msgpack.packb(request, use_bin_type=True))
        deadline = time.monotonic() + LINE_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "no reply to %r" % (request,)
            if not self.sock.poll(int(remaining * 1000) + 1):
                continue
            reply = self.msgpack.unpackb(self.sock.recv(), raw=False)
            if reply.get("rid") == self.rid:
                return reply

    def ok(self, op, **fields):
        reply = self.call(op, **fields)
        assert reply["ok"], reply
        return reply

    def join(self, group, member, topics, **extra):
        extra.setdefault("session_timeout_ms", SESSION_MS)
        return self.ok("join_group", group_id=group, member_id=member,
                       topics=topics, **extra)

    def close(self):
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture(scope="module")
def wire(endpoint):
    w = Wire(endpoint)
    yield w
    w.close()


def compact(pairs):
    """What conveyorctl shows for an assignment: "a:0-3,7 b:1"."""
    by_topic = {}
    for topic, partition in sorted(pairs):
        by_topic.setdefault(topic, []).append(partition)
    words = []
    for topic, partitions in sorted(by_topic.items()):
        runs = []
        for p in partitions:
            if runs and runs[-1][1] == p - 1:
                runs[-1][1] = p
            else:
                runs.append([p, p])
        words.append(topic + ":" + ",".join(
            "%d-%d" % (a, b) if b > a else "%d" % a for a, b in runs))
    return " ".join(words) or "-"


def table(text):
    """Rows of a table whose last column may hold spaces: header first."""
    lines = text.strip("\n").splitlines()
    columns = len(lines[0].split())
    return [line.split(None, columns - 1) for line in lines]


def test_topic_create_and_topics(endpoint):
    r = ctl("topic", "create", "ctl-topic-a", "6", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "topic ctl-topic-a: 6 partitions"
    r = ctl("--json", "topic", "create", "ctl-topic-b", "2", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"topic": "ctl-topic-b", "partitions": 2}
    # Same count: a no-op. More: the topic grows.
    r = ctl("topic", "create", "ctl-topic-a", "6", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    r = ctl("topic", "create", "ctl-topic-b", "5", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "topic ctl-topic-b: 5 partitions"

    r = ctl("topics", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows[0] == ["NAME", "PARTITIONS"]
    assert ["ctl-topic-a", "6"] in rows and ["ctl-topic-b", "5"] in rows
    names = [row[0] for row in rows[1:]]
    assert names == sorted(names)
    r = ctl("--json", "topics", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    topics = json.loads(r.stdout)["topics"]
    assert topics["ctl-topic-a"] == 6 and topics["ctl-topic-b"] == 5


def test_topic_shrink_is_conflict(endpoint):
    r = ctl("topic", "create", "ctl-topic-shrink", "4", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    r = ctl("topic", "create", "ctl-topic-shrink", "3", endpoint=endpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("conveyorctl: CONFLICT: "), r.stderr
    assert len(r.stderr.strip()) > len("conveyorctl: CONFLICT:"), r.stderr
    assert r.stdout == ""
    r = ctl("--json", "topics", endpoint=endpoint)
    assert json.loads(r.stdout)["topics"]["ctl-topic-shrink"] == 4
    # The range is the server's to judge: BAD_REQUEST, not a usage error.
    r = ctl("topic", "create", "ctl-topic-zero", "0", endpoint=endpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("conveyorctl: BAD_REQUEST: "), r.stderr


def test_groups_and_group_view(endpoint, wire):
    group = "ctl-grp-1"
    wire.ok("create_topic", topic="ctl-grp-ta", partitions=5)
    wire.ok("create_topic", topic="ctl-grp-tb", partitions=3)
    wire.join(group, "m-a", ["ctl-grp-ta", "ctl-grp-tb"], instance_id="inst-a",
              service_name="billing")
    wire.join(group, "m-b", ["ctl-grp-ta"])
    wire.join(group, "m-c", ["ctl-grp-ta", "ctl-grp-tb"])
    state = wire.ok("get_group", group_id=group)["group"]
    assert state["generation"] == 3
    owners = {}
    for member in state["members"]:
        for topic, partition in member["assignment"]:
            owners[(topic, partition)] = member["member_id"]
    # A commit by the owner of two partitions, one in each topic.
    committer = next(m for m in state["members"] if m["member_id"] == "m-a")
    committed = {}
    for topic in ("ctl-grp-ta", "ctl-grp-tb"):
        partition = next(p for t, p in committer["assignment"] if t == topic)
        committed[(topic, partition)] = 40 + partition
    wire.ok("commit_offsets", group_id=group, member_id="m-a",
            generation=state["generation"],
            offsets=[[t, p, o] for (t, p), o in committed.items()])

    r = ctl("groups", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows[0] == ["GROUP", "GENERATION", "MEMBERS"]
    assert [group, "3", "3"] in rows
    r = ctl("--json", "groups", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert {"group_id": group, "generation": 3, "members": 3} in listed["groups"]
    assert isinstance(listed["seq"], int)

    r = ctl("group", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    header, members, partitions = r.stdout.strip("\n").split("\n\n")
    fields = dict(re.split(r":\s+", line, maxsplit=1) for line in header.splitlines())
    assert fields["group"] == group
    assert fields["generation"] == "3"
    assert fields["assignor"] == "sticky"
    assert fields["topics"] == "ctl-grp-ta (5), ctl-grp-tb (3)"

    rows = table(members)
    assert rows[0] == ["MEMBER", "INSTANCE", "SERVICE", "TOPICS", "PARTITIONS",
                       "ASSIGNMENT"]
    by_id = {row[0]: row for row in rows[1:]}
    assert sorted(by_id) == ["m-a", "m-b", "m-c"]
    assert by_id["m-a"][1:4] == ["inst-a", "billing", "ctl-grp-ta,ctl-grp-tb"]
    assert by_id["m-b"][1:4] == ["-", "-", "ctl-grp-ta"]
    for member in state["members"]:
        row = by_id[member["member_id"]]
        assert row[4] == str(len(member["assignment"])), row
        assert row[5] == compact(member["assignment"]), row

    rows = table(partitions)
    assert rows[0] == ["TOPIC", "PARTITION", "OWNER", "COMMITTED"]
    shown = {(row[0], int(row[1])): (row[2], row[3]) for row in rows[1:]}
    assert len(shown) == len(rows) - 1 == 8
    assert set(shown) == set(owners)
    for key, (owner, offset) in shown.items():
        assert owner == owners[key], key
        assert offset == (str(committed[key]) if key in committed else "-"), key
    # Ordered by topic, then partition as a number.
    assert [(row[0], int(row[1])) for row in rows[1:]] == sorted(shown)

    r = ctl("--json", "group", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    assert set(view) == {"group", "offsets"}
    assert view["group"]["group_id"] == group
    assert view["group"]["generation"] == 3
    assert {m["member_id"] for m in view["group"]["members"]} == {"m-a", "m-b", "m-c"}
    assert sorted(map(tuple, view["offsets"])) == \
        sorted((t, p, o) for (t, p), o in committed.items())

    # offsets GROUP, all of them then one topic.
    r = ctl("offsets", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert rows[0] == ["TOPIC", "PARTITION", "OFFSET"]
    assert sorted((t, int(p), int(o)) for t, p, o in rows[1:]) == \
        sorted((t, p, o) for (t, p), o in committed.items())
    r = ctl("offsets", group, "--topic", "ctl-grp-tb", endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    rows = table(r.stdout)
    assert [(t, int(p), int(o)) for t, p, o in rows[1:]] == \
        [(t, p, o) for (t, p), o in committed.items() if t == "ctl-grp-tb"]
    r = ctl("--json", "offsets", "--topic", "ctl-grp-ta", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["offsets"] == \
        [[t, p, o] for (t, p), o in committed.items() if t == "ctl-grp-ta"]


def test_group_view_of_empty_group_keeps_offsets(endpoint, wire):
    # Offsets belong to the group: once every member left, the partitions
    # show no owner but their committed offsets stay.
    group = "ctl-grp-empty"
    wire.ok("create_topic", topic="ctl-grp-tc", partitions=2)
    joined = wire.join(group, "m-x", ["ctl-grp-tc"])
    wire.ok("commit_offsets", group_id=group, member_id="m-x",
            generation=joined["generation"], offsets=[["ctl-grp-tc", 1, 9]])
    wire.ok("leave_group", group_id=group, member_id="m-x")
    r = ctl("group", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    header, members, partitions = r.stdout.strip("\n").split("\n\n")
    assert re.search(r"^members:\s+0$", header, re.M), header
    assert table(members)[1:] == []
    rows = table(partitions)[1:]
    assert ["ctl-grp-tc", "1", "-", "9"] in rows, partitions


def test_group_unknown_exits_1(endpoint):
    for args in (["group", "ctl-no-such-group"], ["offsets", "ctl-no-such-group"],
                 ["--json", "group", "ctl-no-such-group"]):
        r = ctl(*args, endpoint=endpoint)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert r.stderr.startswith("conveyorctl: NOT_FOUND: "), r.stderr
        assert r.stdout == ""


def test_group_delete(endpoint, wire):
    group = "ctl-grp-del"
    wire.join(group, "m-d", ["ctl-grp-td"])      # auto-created topic
    r = ctl("group", "delete", group, endpoint=endpoint)
    assert r.returncode == 1
    assert r.stderr.startswith("conveyorctl: CONFLICT: "), r.stderr
    wire.ok("leave_group", group_id=group, member_id="m-d")
    r = ctl("group", "delete", group, endpoint=endpoint)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "deleted group " + group
    r = ctl("group", group, endpoint=endpoint)
    assert r.returncode == 1
    assert "NOT_FOUND" in r.stderr
    # One operand is a group id, even "delete".
    r = ctl("group", "delete", endpoint=endpoint)
    assert r.returncode == 1
    assert "NOT_FOUND" in r.stderr


def test_watch_group_events(endpoint, wire):
    group = "ctl-grp-watch"
    wire.ok("create_topic", topic="ctl-grp-tw", partitions=3)
    proc, out = start_watch(endpoint, "watch", "group/%s/" % group)
    try:
        assert out.wait_for(lambda l: "snapshot" in l, LINE_TIMEOUT), out.seen
        wire.join(group, "m-w1", ["ctl-grp-tw"])
        line = out.wait_for(lambda l: "/membership" in l, LINE_TIMEOUT)
        assert line, out.seen
        assert re.match(r"^seq=\d+ group/%s/membership joined m-w1 gen=1$" % group,
                        line.strip()), line
        line = out.wait_for(lambda l: "/assignment" in l, LINE_TIMEOUT)
        assert line, out.seen
        assert re.match(r"^seq=\d+ group/%s/assignment gen=1 assignor=sticky"
                        r" 1 member \(m-w1=3\) reason=\S.*$" % group,
                        line.strip()), line
        wire.join(group, "m-w2", ["ctl-grp-tw"])
        line = out.wait_for(lambda l: "/assignment" in l, LINE_TIMEOUT)
        assert line, out.seen
        assert re.match(r"^seq=\d+ group/%s/assignment gen=2 assignor=sticky"
                        r" 2 members \(m-w1=[12] m-w2=[12]\) reason=\S.*$" % group,
                        line.strip()), line
        wire.ok("leave_group", group_id=group, member_id="m-w2")
        line = out.wait_for(lambda l: "/membership" in l, LINE_TIMEOUT)
        assert line and line.strip().endswith(" left m-w2 gen=3"), out.seen
    finally:
        rc, err = stop_watch(proc)
    assert rc == 0, err


def test_watch_topic_events(endpoint):
    proc, out = start_watch(endpoint, "watch", "topic/ctl-watch-topic/")
    try:
        assert out.wait_for(lambda l: "snapshot" in l, LINE_TIMEOUT), out.seen
        r = ctl("topic", "create", "ctl-watch-topic", "2", endpoint=endpoint)
        assert r.returncode == 0, r.stderr
        line = out.wait_for(lambda l: "/changed" in l, LINE_TIMEOUT)
        assert line, out.seen
        assert re.match(r"^seq=\d+ topic/ctl-watch-topic/changed partitions=2$",
                        line.strip()), line
        r = ctl("topic", "create", "ctl-watch-topic", "7", endpoint=endpoint)
        assert r.returncode == 0, r.stderr
        line = out.wait_for(lambda l: "/changed" in l, LINE_TIMEOUT)
        assert line and line.strip().endswith(" partitions=7"), out.seen
    finally:
        rc, err = stop_watch(proc)
    assert rc == 0, err
