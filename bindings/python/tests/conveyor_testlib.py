"""Helpers of the binding's tests: a real conveyord, on free ports below the
ephemeral range, with short leases and sessions.

Every wait is bounded and polls for a condition (see ``wait_for``).
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, Dict, List, Optional

import pytest

CONVEYORD = os.environ.get("CONVEYORD", "/work/main/build/bin/conveyord")
READY_RE = re.compile(r"serving requests on (tcp://\S+), events on (tcp://\S+)")
PORT_RANGE = (20000, 32000)

#: Options every test daemon gets (overridable per daemon).
DEFAULT_OPTS: Dict[str, str] = {
    "lease-ms": "1000",
    "min-lease-ms": "100",
    "session-timeout-ms": "1000",
}


def wait_for(cond: Callable[[], object], timeout: float = 5.0, what: str = "condition",
             interval: float = 0.02):
    """Poll ``cond`` until it returns a truthy value (returned) or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    for _ in range(200):
        port = random.randrange(*PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port")


class Daemon:
    """A conveyord process; ``requests``/``events`` are its endpoints."""

    def __init__(self, opts: Dict[str, str], listen: str, publish: str) -> None:
        self.opts = opts
        self.argv = [CONVEYORD, "--listen", listen, "--publish", publish]
        for k, v in opts.items():
            self.argv += ["--" + k, str(v)]
        self.lines: List[str] = []
        self.requests: Optional[str] = None
        self.events: Optional[str] = None
        self.rc: Optional[int] = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:   # read to EOF so the pipe never fills
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self.lines.append(line)
            m = READY_RE.search(line)
            if m and self.requests is None:
                self.requests, self.events = m.group(1), m.group(2)
                self._ready.set()
        self._ready.set()

    def wait_ready(self, timeout: float = 10.0) -> bool:
        self._ready.wait(timeout)
        return self.requests is not None

    def stop(self, sig: int = signal.SIGTERM) -> Optional[int]:
        if self.rc is None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                self.rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                self.rc = -999
            self._reader.join(5)
        return self.rc

    def stderr(self) -> str:
        return "\n".join(self.lines)


class Factory:
    def __init__(self) -> None:
        self.started: List[Daemon] = []

    def __call__(self, listen: Optional[str] = None, publish: Optional[str] = None,
                 **opts: object) -> Daemon:
        """Start a daemon: ``history=5`` -> ``--history 5``; ``None`` drops a default."""
        if not (os.path.isfile(CONVEYORD) and os.access(CONVEYORD, os.X_OK)):
            pytest.fail(f"daemon binary {CONVEYORD} not found (set CONVEYORD)")
        o = dict(DEFAULT_OPTS)
        for k, v in opts.items():
            key = k.replace("_", "-")
            if v is None:
                o.pop(key, None)
            else:
                o[key] = str(v)
        for attempt in range(5):
            lst = listen or f"tcp://127.0.0.1:{free_port()}"
            pub = publish or f"tcp://127.0.0.1:{free_port()}"
            d = Daemon(o, lst, pub)
            if d.wait_ready():
                self.started.append(d)
                return d
            rc = d.stop()
            if listen or publish or attempt == 4:   # fixed ports: no retry
                pytest.fail(f"{d.argv} did not start (exit {rc}):\n{d.stderr()}")
        raise AssertionError("unreachable")

    def teardown(self) -> None:
        bad = []
        for d in self.started:
            rc = d.stop()
            if rc != 0:
                bad.append(f"{d.argv} exited {rc} on SIGTERM:\n" + "\n".join(d.lines[-20:]))
        assert not bad, "\n".join(bad)


class Recorder:
    """Collects callback calls, thread-safely."""

    def __init__(self) -> None:
        self.calls: List[tuple] = []
        self.lock = threading.Lock()

    def cb(self, kind: str):
        def f(arg):
            with self.lock:
                self.calls.append((kind, arg))
        return f

    def of(self, kind: str) -> list:
        with self.lock:
            return [a for k, a in self.calls if k == kind]

    def snapshot(self) -> list:
        with self.lock:
            return list(self.calls)


class Cluster:
    """``n`` conveyord nodes of one raft cluster (``--peers``), each with
    its own data directory; ``requests``/``events`` list their endpoints.
    Node ``i`` (0-based) has raft id ``i + 1``."""

    def __init__(self, base_dir: str, n: int = 3, election_timeout_ms: int = 300,
                 **opts: object) -> None:
        if not (os.path.isfile(CONVEYORD) and os.access(CONVEYORD, os.X_OK)):
            pytest.fail(f"daemon binary {CONVEYORD} not found (set CONVEYORD)")
        self.nodes: List[Daemon] = []
        self.killed: List[int] = []
        o = dict(DEFAULT_OPTS)
        for k, v in opts.items():
            o[k.replace("_", "-")] = str(v)
        o["election-timeout-ms"] = str(election_timeout_ms)
        for attempt in range(4):
            raft = [free_port() for _ in range(n)]
            peers = ",".join(f"{i + 1}=127.0.0.1:{raft[i]}" for i in range(n))
            nodes = []
            for i in range(n):
                node_opts = dict(o)
                node_opts.update({"data-dir": os.path.join(base_dir, f"try{attempt}-node{i + 1}"),
                                  "node-id": str(i + 1), "peers": peers})
                nodes.append(Daemon(node_opts, f"tcp://127.0.0.1:{free_port()}",
                                    f"tcp://127.0.0.1:{free_port()}"))
            if all(d.wait_ready() for d in nodes):
                self.nodes = nodes
                self.raft = [f"127.0.0.1:{p}" for p in raft]
                return
            errors = []
            for d in nodes:
                rc = d.stop()
                errors.append(f"{d.argv} exit {rc}:\n{d.stderr()}")
            if attempt == 3:
                pytest.fail("the cluster did not start:\n" + "\n".join(errors))

    @property
    def requests(self) -> List[str]:
        return [d.requests for d in self.nodes]

    @property
    def events(self) -> List[str]:
        return [d.events for d in self.nodes]

    def leader(self, timeout: float = 10.0) -> int:
        """The index of the node that leads (as every live node sees it)."""
        import conveyor   # the binding under test

        def find():
            seen = set()
            lead = None
            for i, d in enumerate(self.nodes):
                if i in self.killed:
                    continue
                with conveyor.Client(d.requests, timeout=0.5) as c:
                    try:
                        st = c.cluster_status()
                    except conveyor.Error:
                        return None
                seen.add(st.leader)
                if st.leading:
                    lead = i
            if lead is not None and seen == {self.requests[lead]}:
                return lead + 1   # truthy
            return None
        return wait_for(find, timeout, "a leader every live node agrees on", 0.05) - 1

    def kill(self, i: int) -> None:
        """SIGKILL node ``i``."""
        self.killed.append(i)
        self.nodes[i].stop(signal.SIGKILL)

    def teardown(self) -> None:
        bad = []
        for i, d in enumerate(self.nodes):
            rc = d.stop()
            if i not in self.killed and rc != 0:
                bad.append(f"{d.argv} exited {rc} on SIGTERM:\n" + "\n".join(d.lines[-20:]))
        assert not bad, "\n".join(bad)
