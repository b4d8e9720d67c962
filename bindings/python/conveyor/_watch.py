"""Following events: snapshot, subscription, gap detection and recovery.

The logic lives in :class:`_WatchCore`, which does no I/O: its procedures
are generators that yield request maps and receive reply maps (or have the
:class:`Error` thrown in), so the blocking :class:`Watch` and the asyncio
``AsyncWatch`` share it.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import (Any, Callable, Deque, Dict, Generator, Iterator, List,
                    Optional, Tuple)

import zmq

from ._client import Client, ServerArg, _Link, client_for
from ._endpoints import EndpointsArg
from ._errors import Compacted, Error, NotFound
from ._security import Security
from ._types import Event, Group, Service
from ._wire import log, parse_events, parse_group, parse_groups, parse_services, parse_topics, unpack

__all__ = ["Watch"]

Request = Dict[str, Any]
Reply = Dict[str, Any]
Proc = Generator[Request, Reply, None]

HEARTBEAT_TOPIC = "sys/heartbeat"
_PAGE = 1000
#: In a cluster, a subscription silent this long (heartbeats come every
#: second) makes the watch ask whether its node is still there.
SILENCE_S = 3.0
#: At most one such probe this often.
PROBE_EVERY_S = 0.5


def _overlaps(prefix: str, area: str) -> bool:
    return area.startswith(prefix) or prefix.startswith(area)


def _root_matches(prefix: str, root: str) -> bool:
    """Does an entity of this root (``service/<name>``) fall under the prefix?"""
    r = root + "/"
    return r.startswith(prefix) or prefix.startswith(r)


def _named(prefix: str, area: str) -> Optional[str]:
    """``service/<name>/...`` with area ``service/`` -> ``<name>`` (only when
    the name is complete, i.e. followed by a slash)."""
    if not prefix.startswith(area):
        return None
    rest = prefix[len(area):]
    if "/" not in rest:
        return None
    name = rest.split("/", 1)[0]
    return name or None


class _WatchCore:
    """State of a watch (no I/O). Accepted events go to :attr:`ready`."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        parts = prefix.split("/")
        # Gap detection by `prev` needs every event of a root: only when the
        # prefix does not select event types inside a root.
        self.per_root = not (len(parts) >= 3 and parts[2] != "")
        self.last: Dict[str, int] = {}    # root -> seq of its last event accepted
        self.baseline = 0                 # seq the last snapshot (or start) reflects
        self.cursor = 0                   # every matching event <= cursor was checked
        self.max_seen = 0                 # highest seq seen (events or heartbeats)
        self.ready: Deque[Event] = collections.deque()
        self.snapshots = 0
        self.recoveries = 0
        self.gaps = 0
        self.restarts = 0
        #: In a cluster, nodes may lag one another a little: a ``seq`` going
        #: back is not a restart there.
        self.clustered = False

    # -- bookkeeping ---------------------------------------------------------

    def _reset(self, seq: int) -> None:
        self.last.clear()
        self.baseline = seq
        self.cursor = seq
        self.max_seen = seq

    def _is_new(self, ev: Event) -> bool:
        last = self.last.get(ev.root)
        return ev.seq > (last if last is not None else self.baseline)

    def _accept(self, ev: Event) -> None:
        self.last[ev.root] = ev.seq
        if ev.seq > self.max_seen:
            self.max_seen = ev.seq
        self.ready.append(ev)

    # -- procedures ----------------------------------------------------------

    def snapshot(self) -> Proc:
        """Read the state under the prefix; queue a ``snapshot`` event."""
        p = self.prefix
        seqs: List[int] = []
        services: Optional[List[Service]] = None
        groups: Optional[List[Group]] = None
        topics: Optional[Dict[str, int]] = None
        want_topics = _overlaps(p, "topic/")
        want_services = _overlaps(p, "service/")
        want_groups = _overlaps(p, "group/")
        if want_topics or not (want_services or want_groups):
            # list_topics carries no seq: take one first.
            hello = yield {"op": "hello"}
            seqs.append(int(hello.get("seq", 0)))
        if want_services:
            req: Request = {"op": "list_services"}
            name = _named(p, "service/")
            if name:
                req["service_name"] = name
            svcs = parse_services((yield req))
            seqs.append(svcs.seq)
            services = [s for s in svcs if _root_matches(p, "service/" + s.service_name)]
        if want_groups:
            groups = []
            gid = _named(p, "group/")
            if gid is not None:
                ids = [gid]
            else:
                gl = parse_groups((yield {"op": "list_groups"}))
                seqs.append(gl.seq)
                ids = [g.group_id for g in gl if _root_matches(p, "group/" + g.group_id)]
            for i in ids:
                try:
                    g = parse_group((yield {"op": "get_group", "group_id": i}))
                except NotFound:
                    if gid is not None:
                        gl = parse_groups((yield {"op": "list_groups"}))
                        seqs.append(gl.seq)
                    continue
                seqs.append(g.seq)
                groups.append(g)
        if want_topics:
            all_topics = parse_topics((yield {"op": "list_topics"}))
            topics = {t: n for t, n in all_topics.items() if _root_matches(p, "topic/" + t)}
        seq = min(seqs)
        self._reset(seq)
        self.snapshots += 1
        self.ready.append(Event(topic="", type="snapshot", seq=seq, services=services,
                                groups=groups, topics=topics))

    def start(self, snapshot: bool, since: Optional[int]) -> Proc:
        """The first procedure: a snapshot, events since ``since``, or now."""
        if since is not None:
            self._reset(since)
            yield from self.recover(since, self.prefix, advance_cursor=True)
        elif snapshot:
            yield from self.snapshot()
        else:
            hello = yield {"op": "hello"}
            self._reset(int(hello.get("seq", 0)))

    def recover(self, since: int, prefix: str, advance_cursor: bool = False) -> Proc:
        """Fetch events after ``since`` under ``prefix`` and queue the new
        ones; on ``COMPACTED`` take a snapshot instead."""
        self.recoveries += 1
        while True:
            try:
                reply = yield {"op": "events_since", "since": since, "prefix": prefix,
                               "limit": _PAGE}
            except Compacted as exc:
                log.warning("watch %r: events after %d are gone (oldest %s): new snapshot",
                            self.prefix, since, exc.oldest)
                yield from self.snapshot()
                return
            page = parse_events(reply)
            for ev in page.events:
                if ev.topic.startswith(self.prefix) and self._is_new(ev):
                    self._accept(ev)
            if page.seq > self.max_seen:
                self.max_seen = page.seq
            if page.more and page.events:
                since = page.events[-1].seq
                continue
            if advance_cursor:
                self.cursor = max(self.cursor, page.seq)
            return

    def catch_up(self) -> Proc:
        """After moving to another node: every event under the prefix after
        the last checked one (the same ``seq`` on every node; those already
        delivered are dropped); a snapshot only if they are gone."""
        yield from self.recover(self.cursor, self.prefix, advance_cursor=True)

    def message(self, topic: str, body: Any) -> Proc:
        """Handle one message of the subscription."""
        if not isinstance(body, dict):
            return
        if topic == HEARTBEAT_TOPIC:
            yield from self._heartbeat(body)
            return
        if not topic.startswith(self.prefix):
            return
        ev = Event.from_wire(topic, body)
        if not self._is_new(ev):
            return    # already delivered, or reflected in the snapshot
        if self.per_root and isinstance(ev.prev, int):
            last = self.last.get(ev.root)
            expected_max = last if last is not None else self.baseline
            if (last is not None and ev.prev != last) or (last is None and ev.prev > self.baseline):
                self.gaps += 1
                log.info("watch %r: gap before seq %d in %s (prev %d, had %d): recovering",
                         self.prefix, ev.seq, ev.root, ev.prev, expected_max)
                # Every event under the prefix up to `cursor` was already
                # checked: no need to ask for older ones (they may be gone).
                yield from self.recover(max(expected_max, self.cursor), ev.root + "/")
                if not self._is_new(ev):
                    return
        self._accept(ev)

    def _heartbeat(self, body: Dict[str, Any]) -> Proc:
        seq = body.get("seq")
        if not isinstance(seq, int):
            return
        if seq < self.max_seen:
            if self.clustered:
                return   # a node lagging a little (seq is the same on every node)
            # Sequence numbers went back: a restarted server? Ask it.
            hello = yield {"op": "hello"}
            if hello.get("leader"):
                self.clustered = True
                return
            if int(hello.get("seq", 0)) < self.max_seen:
                log.warning("watch %r: server restarted (seq %d < %d): new snapshot",
                            self.prefix, seq, self.max_seen)
                self.restarts += 1
                yield from self.snapshot()
            return
        self.max_seen = max(self.max_seen, seq)
        if seq > self.cursor:
            # Events were published since the last check: fetch the ones
            # under the prefix that the subscription may have lost.
            yield from self.recover(self.cursor, self.prefix, advance_cursor=True)


def run_proc(client: Client, proc: Proc) -> None:
    """Drive a procedure with a blocking client."""
    try:
        req = next(proc)
    except StopIteration:
        return
    while True:
        try:
            fields = dict(req)
            op = fields.pop("op")
            reply = client.call(op, **fields)
        except Error as exc:
            try:
                req = proc.throw(exc)
            except StopIteration:
                return
            continue
        try:
            req = proc.send(reply)
        except StopIteration:
            return


def _sub_link(client: Any, prefix: str, events_endpoint: str) -> _Link:
    """A SUB socket of client's (Client or AsyncClient) on events_endpoint,
    subscribed to prefix and to the server heartbeat; with several nodes,
    monitored, so that a dropped connection shows."""
    link = _Link(client._socket(zmq.SUB), events_endpoint, client._eps.multi)
    link.sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    if not HEARTBEAT_TOPIC.startswith(prefix):
        link.sock.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
    return link


class Watch:
    """Follows the events under a topic prefix, in order, without losing any.

    Follows the snapshot-then-subscribe recipe: it subscribes (prefix and
    ``sys/heartbeat``), reads the current state under the prefix, and yields
    it first as a ``snapshot`` :class:`Event` (``services``, ``groups``,
    ``topics``), then every later event (``seq`` above the snapshot's).

    Losses are found and repaired: an event whose ``prev`` is not the last
    ``seq`` seen for its root (``service/<name>``, ``group/<id>``,
    ``topic/<name>``) makes the watch fetch the missing ones with
    ``events_since``; every ``sys/heartbeat`` showing new events makes it check
    the history under the prefix (catching lost last events). When the
    history no longer has them (:class:`Compacted`) or the server restarted
    (its ``seq`` went back), a fresh ``snapshot`` event is yielded: treat it
    as the new state. Events of one root always come in ``seq`` order.

    In a cluster the watch follows the node its client uses (the leader at
    first): when the client moves to another node (failover), or the
    subscription drops or falls silent and ``hello`` finds another node, it
    subscribes to that node's events and fetches what it may have missed
    with ``events_since`` from the last ``seq`` it checked (``seq`` is the
    same on every node; events already delivered are dropped), so no event
    is lost or repeated. Only when that history is gone (``Compacted``) does
    a new snapshot come.

    Prefixes: ``"service/"`` (all services), ``"service/<name>/"``,
    ``"group/<id>/"``, ``"topic/"``, ``""`` (everything), ... (keep the
    trailing slash).

    Two forms:

    * iterator: ``for ev in watch: ...`` (blocks; ends when closed), or
      ``watch.get(timeout)`` (an :class:`Event` or ``None``), or
      ``for ev in watch.iter(timeout=2.0)`` (stops after 2 s without events).
      Consume a watch from one thread at a time.
    * callback: ``Watch(prefix, callback=fn)`` calls ``fn(event)`` on a
      daemon thread (exceptions are logged on the ``"conveyor"`` logger).

    Args:
        prefix: the topic prefix.
        callback: run the callback form.
        server: the daemon's request endpoint (``endpoint`` is an alias; a
            cluster's: a list, or a comma-separated string), or a
            :class:`Client` whose endpoints, timeout and security are reused.
        snapshot: ``False`` to skip the initial snapshot (events from now on).
        since: start after this ``seq`` instead (resume), replaying history.
        timeout: reply timeout in seconds.
        security: CurveZMQ credentials (:class:`conveyor.Security`) for a
            secured daemon, used on the request and the event socket
            (default: those of the ``server`` client, if any).

    The constructor does the first snapshot (errors are raised there).
    """

    def __init__(self, prefix: str = "", callback: Optional[Callable[[Event], Any]] = None, *,
                 server: ServerArg = None, endpoint: Optional[EndpointsArg] = None,
                 snapshot: bool = True, since: Optional[int] = None,
                 timeout: Optional[float] = None,
                 security: Optional[Security] = None) -> None:
        if server is not None and endpoint is not None:
            raise TypeError("give server= or endpoint=, not both")
        self.prefix = prefix
        self._client = client_for(server if server is not None else endpoint, timeout, security)
        self._core = _WatchCore(prefix)
        self._lock = threading.RLock()
        self._closed = False
        self._stop = threading.Event()
        self._retry: Deque[Tuple[str, Any]] = collections.deque()
        self._retry_at = 0.0
        self._sub_link: Optional[_Link] = None
        self._node: Optional[str] = None
        self._resync = False
        self._last_msg = time.monotonic()
        self._probe_at = 0.0
        self._thread: Optional[threading.Thread] = None
        self.last_heartbeat: Optional[float] = None
        #: How many times the watch moved to another node's events.
        self.switches = 0
        try:
            # In a cluster: the leader's events (snapshots are read there).
            hello = self._client._hello_leader()
            self._core.clustered = self._client._eps.multi or bool(hello.leader)
            self._subscribe(hello.events_endpoint)
            run_proc(self._client, self._core.start(snapshot, since))
            # A single daemon: events lost before the subscription was live
            # are found by the heartbeats; a cluster's watch also catches up
            # at its first message, to keep events in seq order.
            self._resync = self._client._eps.multi
            self._follow_node()
        except BaseException:
            self._release()
            raise
        self.callback = callback
        if callback is not None:
            self._thread = threading.Thread(target=self._run_callback, daemon=True,
                                            name=f"conveyor-watch-{prefix}")
            self._thread.start()

    # -- following a node ----------------------------------------------------

    @property
    def _sub(self) -> Optional[zmq.Socket]:
        return self._sub_link.sock if self._sub_link is not None else None

    @property
    def node(self) -> Optional[str]:
        """The request endpoint of the node whose events the watch follows."""
        return self._node

    def _subscribe(self, events_endpoint: str) -> None:
        """Subscribe on the node the client uses (a fresh socket, closing
        the old one). With several nodes, a monitor tells when it drops."""
        link = _sub_link(self._client, self.prefix, events_endpoint)
        if self._sub_link is not None:
            self._sub_link.close()
        self._sub_link = link
        self._node = self._client.endpoint
        self._last_msg = time.monotonic()
        # Until the new subscription delivers something (then it is live),
        # what is published may be missed: catch up again then.
        self._resync = True

    def _follow_node(self) -> None:
        """If the client moved to another node (failover, redirect), take
        that node's events and catch up from the last checked ``seq``."""
        for _ in range(3):
            if self._client.endpoint == self._node:
                return
            old = self._node
            events = self._client.events_endpoint   # may move on again
            if self._client.endpoint != self._node:
                self._subscribe(events)
                self.switches += 1
                log.info("watch %r: following the events of %s (was %s), from seq %d",
                         self.prefix, self._node, old, self._core.cursor)
                run_proc(self._client, self._core.catch_up())

    def _check_node(self) -> None:
        """Is the node still there? Asked when its subscription dropped or
        fell silent (clients of several nodes only); a failed ``hello``
        moves the client on, and the watch follows it."""
        link = self._sub_link
        if link is None or not self._client._eps.multi:
            return
        now = time.monotonic()
        dropped = link.drain()
        if not dropped and now - self._last_msg < SILENCE_S:
            return
        if now < self._probe_at:
            return
        self._probe_at = now + PROBE_EVERY_S
        log.debug("watch %r: events of %s %s: asking", self.prefix, self._node,
                  "dropped" if dropped else "silent")
        self._client.hello()
        self._follow_node()

    # -- receiving -----------------------------------------------------------

    def _handle(self, topic: str, body: Any) -> bool:
        if topic == HEARTBEAT_TOPIC:
            self.last_heartbeat = time.monotonic()
        try:
            if self._resync:
                # The first message of a new subscription: it is live, so
                # every later event comes through it; fetch what came before.
                run_proc(self._client, self._core.catch_up())
                self._resync = False
            run_proc(self._client, self._core.message(topic, body))
            self._follow_node()
            return True
        except Error as exc:
            log.warning("watch %r: %s; will retry", self.prefix, exc)
            return False

    def _pump(self, wait: float) -> None:
        """Move what arrives within ``wait`` seconds into the ready queue."""
        if self._retry:
            # A message whose recovery failed: retry it before any later one.
            now = time.monotonic()
            if now < self._retry_at:
                time.sleep(min(wait, self._retry_at - now))
                return
            while self._retry:
                topic, body = self._retry[0]
                if not self._handle(topic, body):
                    self._retry_at = time.monotonic() + 0.5
                    return
                self._retry.popleft()
            return
        try:
            self._check_node()
        except Error as exc:
            log.debug("watch %r: no node answers: %s", self.prefix, exc)
        sub = self._sub
        assert sub is not None
        if not sub.poll(max(0, int(wait * 1000))):
            return
        self._last_msg = time.monotonic()
        while not self._core.ready:
            sub = self._sub
            assert sub is not None
            try:
                frames = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            topic = frames[0].decode("utf-8", "replace")
            try:
                body = unpack(frames[1])
            except Exception:  # noqa: BLE001
                log.warning("watch %r: undecodable event on %s", self.prefix, topic)
                continue
            if not self._handle(topic, body):
                self._retry.append((topic, body))
                self._retry_at = time.monotonic() + 0.5
                return

    def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event, waiting at most ``timeout`` seconds (``None``:
        until one arrives or the watch is closed); ``None`` if there is none."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                if self._core.ready:
                    return self._core.ready.popleft()
                if self._closed or self._stop.is_set():
                    return None
                left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if left <= 0:
                    return None
                self._pump(left)

    def __iter__(self) -> Iterator[Event]:
        return self

    def __next__(self) -> Event:
        ev = self.get()
        if ev is None:
            raise StopIteration
        return ev

    def iter(self, timeout: float) -> Iterator[Event]:
        """Yield events until none comes for ``timeout`` seconds (or closed)."""
        while True:
            ev = self.get(timeout)
            if ev is None:
                return
            yield ev

    def _run_callback(self) -> None:
        while not self._stop.is_set():
            try:
                ev = self.get(0.1)
            except Exception:  # noqa: BLE001
                log.exception("watch %r: receive failed", self.prefix)
                continue
            if ev is None or self.callback is None:
                continue
            try:
                self.callback(ev)
            except Exception:  # noqa: BLE001
                log.exception("watch %r: callback raised", self.prefix)

    # -- state ---------------------------------------------------------------

    @property
    def seq(self) -> int:
        """The highest event ``seq`` seen (events or heartbeats)."""
        return self._core.max_seen

    @property
    def snapshots(self) -> int:
        """How many snapshots were taken (1 + resyncs after compaction/restart)."""
        return self._core.snapshots

    @property
    def recoveries(self) -> int:
        """How many ``events_since`` recoveries ran (gap repairs and checks)."""
        return self._core.recoveries

    @property
    def gaps(self) -> int:
        """How many losses were found from an event's ``prev``."""
        return self._core.gaps

    @property
    def closed(self) -> bool:
        return self._closed

    def _release(self) -> None:
        if self._sub_link is not None:
            self._sub_link.close()
            self._sub_link = None
        self._client.close()

    def close(self, timeout: float = 2.0) -> None:
        """Stop the watch (and its callback thread, waiting at most
        ``timeout`` s). Iteration ends. Idempotent."""
        if self._closed:
            return
        self._stop.set()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with self._lock:
            self._closed = True
            self._release()

    def __enter__(self) -> "Watch":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Watch({self.prefix!r}, seq={self._core.max_seen}, closed={self._closed})"
