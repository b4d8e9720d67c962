"""Fixtures and helpers for the black-box conformance tests of conveyord.

Written from the wire spec (protocol.md, sections 1-3 and 6-10) only.

Every wait here is bounded and polls for a condition; nothing sleeps and hopes.
"""

import itertools
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time

import msgpack
import pytest
import zmq

CONVEYORD = os.environ.get("CONVEYORD", "/work/main/build/bin/conveyord")

READY_RE = re.compile(
    r"serving requests on (tcp://[0-9A-Za-z.\-]+:\d+), events on (tcp://[0-9A-Za-z.\-]+:\d+)")

START_TIMEOUT = 10.0   # daemon must print its "serving ..." line within this
STOP_TIMEOUT = 10.0    # daemon must exit within this after SIGTERM/SIGINT
REPLY_TIMEOUT = 5.0    # any single reply must arrive within this
EVENT_TIMEOUT = 3.0    # default bound when waiting for an event

# Options every daemon gets unless a test overrides them (None removes one).
# "listen"/"publish" given as "tcp://127.0.0.1:*" are replaced by the
# factory with explicit free ports below the kernel's ephemeral range (see
# _pick_port); pass wildcard=True to keep the literal "*".
WILDCARD = "tcp://127.0.0.1:*"
DEFAULT_OPTS = {
    "listen": WILDCARD,
    "publish": WILDCARD,
    "lease-ms": "1000",
    "min-lease-ms": "200",
}

# Why not let the daemon pick with "*": other suites running at the same
# time (e.g. the C client tests, which on purpose keep a client reconnecting
# to a server they stopped) leave ZeroMQ clients retrying ports in the
# ephemeral range. A daemon that binds "*" can be handed such a port and
# then receives their requests (seen: a foreign "lost" service registering
# mid-test). Ports below the ephemeral range are never handed out by "*",
# so no such stale client targets them.
PORT_RANGE = (20000, 32000)


def _pick_port():
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port in %r" % (PORT_RANGE,))


def pack(obj, **kw):
    return msgpack.packb(obj, use_bin_type=True, **kw)


def unpack(data):
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def unpack_lenient(data):
    """Like unpack, but tolerates str values that are not valid UTF-8."""
    return msgpack.unpackb(data, raw=False, strict_map_key=False,
                           unicode_errors="surrogateescape")


def now_ms():
    return int(time.time() * 1000)


# --------------------------------------------------------------------------
# Clients


class Client:
    """A DEALER client: one frame per message, replies matched by rid."""

    _rid_base = itertools.count(1000)

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.stray = []   # replies that did not match the rid awaited

    # raw access
    def send_frames(self, frames):
        self.sock.send_multipart(frames)

    def send_body(self, body):
        self.sock.send(body)

    def send_map(self, m, **packkw):
        self.send_body(pack(m, **packkw))

    def recv_frames(self, timeout=REPLY_TIMEOUT):
        """Next message as a frame list, or None if none arrives in time."""
        if self.sock.poll(int(timeout * 1000), zmq.POLLIN):
            return self.sock.recv_multipart()
        return None

    def recv_raw(self, timeout=REPLY_TIMEOUT):
        frames = self.recv_frames(timeout)
        assert frames is not None, f"no reply within {timeout} s"
        assert len(frames) == 1, f"DEALER reply must be one frame, got {frames!r}"
        return frames[0]

    def recv(self, timeout=REPLY_TIMEOUT, lenient=False):
        raw = self.recv_raw(timeout)
        reply = (unpack_lenient if lenient else unpack)(raw)
        assert isinstance(reply, dict), f"reply is not a map: {reply!r}"
        return reply

    def request(self, msg, timeout=REPLY_TIMEOUT, **packkw):
        """Send a map (or raw bytes) and return the next reply, whatever its rid."""
        if isinstance(msg, (bytes, bytearray)):
            self.send_body(bytes(msg))
        else:
            self.send_map(msg, **packkw)
        return self.recv(timeout)

    # matched calls
    def call(self, op, _timeout=REPLY_TIMEOUT, **fields):
        msg = {"op": op}
        if "rid" not in fields:
            msg["rid"] = next(self._rid_base)
        msg.update(fields)
        rid = msg["rid"]
        self.send_map(msg)
        deadline = time.monotonic() + _timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to {op} (rid {rid!r}) within {_timeout} s"
            frames = self.recv_frames(left)
            assert frames is not None, f"no reply to {op} (rid {rid!r}) within {_timeout} s"
            assert len(frames) == 1, f"DEALER reply must be one frame, got {frames!r}"
            reply = unpack(frames[0])
            assert isinstance(reply, dict), f"reply is not a map: {reply!r}"
            if "rid" in reply and reply["rid"] == rid:
                return reply
            self.stray.append(reply)

    def ok(self, op, **fields):
        reply = self.call(op, **fields)
        assert reply.get("ok") is True, f"{op} {fields!r} failed: {reply!r}"
        return reply

    def err(self, op, code, **fields):
        reply = self.call(op, **fields)
        assert reply.get("ok") is False, f"{op} {fields!r} should fail with {code}: {reply!r}"
        assert reply.get("error") == code, f"{op} {fields!r}: expected {code}, got {reply!r}"
        assert isinstance(reply.get("message"), str), f"error reply lacks a message: {reply!r}"
        return reply

    def close(self):
        self.sock.close(0)


class ReqClient:
    """A REQ client (lock-step, empty delimiter added by ZeroMQ)."""

    def __init__(self, ctx, endpoint):
        self.sock = ctx.socket(zmq.REQ)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)

    def request(self, msg, timeout=REPLY_TIMEOUT):
        self.sock.send(msg if isinstance(msg, bytes) else pack(msg))
        assert self.sock.poll(int(timeout * 1000), zmq.POLLIN), \
            f"REQ client got no reply within {timeout} s"
        reply = unpack(self.sock.recv())
        assert isinstance(reply, dict), f"reply is not a map: {reply!r}"
        return reply

    def close(self):
        self.sock.close(0)


class Event:
    __slots__ = ("topic", "body", "t")

    def __init__(self, topic, body, t):
        self.topic, self.body, self.t = topic, body, t

    def __repr__(self):
        return f"Event({self.topic!r}, {self.body!r})"


class Subscriber:
    """SUB socket collecting events; always also subscribed to sys/heartbeat,
    which is how sync() knows the subscription has reached the publisher."""

    def __init__(self, ctx, endpoint, *prefixes):
        self.sock = ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(endpoint)
        self.prefixes = prefixes or ("",)
        for p in self.prefixes:
            self.sock.setsockopt(zmq.SUBSCRIBE, p.encode())
        self.sock.setsockopt(zmq.SUBSCRIBE, b"sys/heartbeat")
        self.events = []       # everything but sys/heartbeat
        self.heartbeats = []   # sys/heartbeat events

    def _pump(self, timeout):
        """Receive whatever arrives within timeout (at least one poll)."""
        got = False
        if self.sock.poll(max(0, int(timeout * 1000)), zmq.POLLIN):
            while True:
                try:
                    frames = self.sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                t = time.monotonic()
                assert len(frames) == 2, f"an event must be two frames, got {frames!r}"
                topic = frames[0].decode("utf-8")
                body = unpack(frames[1])
                assert isinstance(body, dict), f"event body is not a map: {body!r}"
                ev = Event(topic, body, t)
                if topic == "sys/heartbeat":
                    self.heartbeats.append(ev)
                else:
                    self.events.append(ev)
                got = True
        return got

    def drain(self):
        while self._pump(0):
            pass

    def sync(self, timeout=3.0):
        """Wait for a heartbeat, proving the subscription is live."""
        n = len(self.heartbeats)
        self.wait(lambda: len(self.heartbeats) > n, timeout,
                  "no sys/heartbeat: subscription never became live")

    def wait(self, cond, timeout=EVENT_TIMEOUT, what="condition"):
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"timed out after {timeout} s waiting for {what}; events so far: {self.events!r}")
            self._pump(min(left, 0.05))

    def wait_for(self, pred, timeout=EVENT_TIMEOUT, start=0, what="event"):
        """First event at index >= start satisfying pred."""
        found = []

        def cond():
            for ev in self.events[start:]:
                if pred(ev):
                    found.append(ev)
                    return True
            return False

        self.wait(cond, timeout, what)
        return found[0]

    def wait_count(self, n, timeout=EVENT_TIMEOUT):
        self.wait(lambda: len(self.events) >= n, timeout, f"{n} events")
        return self.events[:n]

    def close(self):
        self.sock.close(0)


# --------------------------------------------------------------------------
# The daemon


class Daemon:
    def __init__(self, argv):
        self.argv = argv
        self.lines = []
        self.requests = None
        self.events = None
        self.rc = None
        self._ready = threading.Event()
        self.ctx = zmq.Context()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()

    def _read_stderr(self):
        # Keep reading until EOF so the pipe never fills up.
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            if self.requests is None:
                m = READY_RE.search(line)
                if m:
                    self.requests, self.events = m.group(1), m.group(2)
                    self._ready.set()
        self._ready.set()

    def wait_ready(self, fail=True):
        self._ready.wait(START_TIMEOUT)
        if self.requests is None:
            # stderr closed (or the wait ran out): the exit follows at once
            # if it is exiting.
            try:
                rc = self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                rc = "still running"
            self.rc = rc
            self.ctx.destroy(linger=0)
            if not fail:
                return False
            pytest.fail(f"{self.argv!r} did not report its endpoints within "
                        f"{START_TIMEOUT} s (exit {rc}); stderr:\n" + self.stderr())
        return True

    def stderr(self):
        return "\n".join(self.lines)

    # helpers
    def client(self):
        return Client(self.ctx, self.requests)

    def req(self):
        return ReqClient(self.ctx, self.requests)

    def subscriber(self, *prefixes):
        return Subscriber(self.ctx, self.events, *prefixes)

    def alive(self):
        return self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM):
        """Signal the daemon, wait (bounded) and return its exit code."""
        if self.rc is not None:
            return self.rc
        self.ctx.destroy(linger=0)
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.rc = self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            self.rc = "did not exit within %s s of %s" % (STOP_TIMEOUT, signal.Signals(sig).name)
        self._reader.join(5)
        return self.rc


def build_argv(args=(), defaults=True, **opts):
    options = dict(DEFAULT_OPTS) if defaults else {}
    for k, v in opts.items():
        key = k.replace("_", "-")
        if v is None:
            options.pop(key, None)
        else:
            options[key] = str(v)
    argv = [CONVEYORD]
    for k, v in options.items():
        argv += ["--" + k, v]
    argv += list(args)
    return argv


def _check_binary():
    if not (os.path.isfile(CONVEYORD) and os.access(CONVEYORD, os.X_OK)):
        pytest.fail(f"daemon binary {CONVEYORD} not found (set CONVEYORD)")


class _Factory:
    def __init__(self):
        self.started = []

    def __call__(self, *args, defaults=True, wildcard=False, **opts):
        """Start a daemon with the default options, overridden/extended by
        opts (lease_ms=300 -> --lease-ms 300; None removes a default) and
        raw extra args."""
        _check_binary()
        for attempt in range(5):
            o = dict(opts)
            if defaults and not wildcard:
                for key in ("listen", "publish"):
                    if o.get(key, WILDCARD) == WILDCARD:
                        o[key] = "tcp://127.0.0.1:%d" % _pick_port()
            d = Daemon(build_argv(args, defaults, **o))
            self.started.append(d)
            # A port picked free can be taken before the daemon binds it
            # (it then exits 2): retry with other ports.
            if d.wait_ready(fail=(attempt == 4 or wildcard or not defaults)):
                return d
            self.started.remove(d)

    def teardown(self):
        bad = []
        for d in self.started:
            rc = d.stop()
            if rc != 0:
                bad.append(f"{d.argv!r} exited {rc!r} on SIGTERM; stderr tail:\n"
                           + "\n".join(d.lines[-20:]))
        assert not bad, "\n".join(bad)


@pytest.fixture
def conveyord():
    """Factory: conveyord(history=5, max_services=3) starts a daemon."""
    f = _Factory()
    yield f
    f.teardown()


@pytest.fixture
def daemon(conveyord):
    """A fresh daemon with the default test options."""
    return conveyord()


@pytest.fixture
def client(daemon):
    return daemon.client()


@pytest.fixture(scope="module")
def shared_daemon():
    """One daemon for a module's stateless validation tests."""
    f = _Factory()
    d = f(max_message_bytes=65536)
    yield d
    f.teardown()


@pytest.fixture
def shared_client(shared_daemon):
    c = shared_daemon.client()
    yield c
    c.close()
