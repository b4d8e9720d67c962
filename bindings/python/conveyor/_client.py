"""The blocking client: one DEALER socket (to the node in use), guarded by a lock."""

from __future__ import annotations

import itertools
import random
import threading
import time
import uuid
from typing import (Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple,
                    Union)

import zmq

from ._endpoints import (DISCONNECT_EVENTS, Endpoints, EndpointsArg, Outcome,
                         Plan, call_plan, wildcard_endpoint)
from ._errors import Error
from ._security import Security, apply_security, check_security
from ._types import (ClusterStatus, EventsPage, Group, GroupHeartbeat,
                     GroupList, Hello, JoinResult, Lease, Service, ServiceList,
                     Topic, TopicPartition)
from ._wire import (DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, Offsets, build_request,
                    log, offsets_list, pack, parse_events, parse_group,
                    parse_group_heartbeat, parse_groups, parse_hello,
                    parse_join, parse_lease, parse_offsets, parse_service,
                    parse_services, parse_stats, parse_topic, parse_topics,
                    tp_list, unpack)

__all__ = ["Client"]


def default_try_timeout(timeout: float) -> float:
    """The per-try slice of a client of several nodes: a third of its
    timeout, within [0.5 s, 2 s] (a live node answers in milliseconds)."""
    return max(0.5, min(2.0, timeout / 3.0))


def member_id_for(service_name: Optional[str]) -> str:
    """A member id as the server makes them (``<service_name or member>-<uuid>``),
    chosen by the client so that a retried join cannot add a second member."""
    return f"{service_name or 'member'}-{uuid.uuid4()}"


def _read_reply(frames: Sequence[bytes], rid: int, endpoint: str) -> Optional[Dict[str, Any]]:
    """The reply map in ``frames`` if it answers request ``rid``, else ``None``
    (anything else is dropped: wrong shape, undecodable, stale)."""
    if len(frames) != 1:
        log.debug("dropping a %d-frame message", len(frames))
        return None
    try:
        reply = unpack(frames[0])
    except Exception:  # noqa: BLE001 - anything undecodable is dropped
        log.warning("dropping an undecodable reply from %s", endpoint)
        return None
    if not isinstance(reply, dict) or reply.get("rid") != rid:
        log.debug("discarding a stale reply: %r", reply)
        return None
    return reply


# Writes the server deduplicates by client_id and rid (docs/protocol.md).
_WRITES = frozenset(("register", "deregister", "create_topic", "join_group", "leave_group",
                     "commit_offsets", "delete_group"))

class _Link:
    """One DEALER connected to one node; with several nodes, a monitor tells
    at once when the connection drops or is refused (the try then moves on
    without waiting out its slice)."""

    def __init__(self, sock: zmq.Socket, endpoint: str, monitor: bool) -> None:
        self.endpoint = endpoint
        self.sock = sock
        self.mon: Optional[zmq.Socket] = None
        self.used = False
        try:
            if monitor and DISCONNECT_EVENTS:
                try:
                    self.mon = sock.get_monitor_socket(DISCONNECT_EVENTS)
                    self.mon.setsockopt(zmq.LINGER, 0)
                except zmq.ZMQError as exc:   # no monitor: slices only
                    log.debug("no socket monitor: %s", exc)
                    self.mon = None
            sock.connect(endpoint)
        except BaseException:
            self.close()
            raise

    def drain(self) -> bool:
        """Read the monitor's pending events; true if there was any."""
        seen = False
        if self.mon is None:
            return False
        while True:
            try:
                got = self.mon.recv_multipart(zmq.NOBLOCK)
                if hasattr(got, "result"):   # zmq.asyncio: a future, already done
                    got.result()
            except zmq.ZMQError:   # zmq.Again included
                return seen
            seen = True

    def close(self) -> None:
        if self.mon is not None:
            try:
                self.sock.disable_monitor()
            except zmq.ZMQError:
                pass
            self.mon.close(0)
            self.mon = None
        self.sock.close(0)

    def __del__(self) -> None:
        # A client dropped without close(): stop the monitor before the
        # sockets go (left to the garbage collector, a monitored socket can
        # break sockets made later).
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class Client:
    """A blocking client of ``conveyord``: one method per protocol operation.

    Args:
        endpoint: the daemon's request endpoint; for a cluster, the request
            endpoints of its nodes: a list, or one comma-separated string
            (``"tcp://10.0.0.1:7400,tcp://10.0.0.2:7400"``).
        timeout: seconds each call may take; past it the call raises
            :class:`conveyor.Timeout` (it never hangs).
        context: a ``zmq.Context`` to use (default: the process-wide one).
        security: CurveZMQ credentials (:class:`conveyor.Security`) for a
            daemon started with ``--curve-secret``/``--curve-clients``; the
            request socket and every event socket opened from this client
            (watches, members) use them. A server that refuses them sends
            nothing back: calls raise :class:`conveyor.Timeout`.
        try_timeout: with several nodes, how long one try waits for a
            reply before the call moves to the next node (default: a third
            of ``timeout``, within 0.5 to 2 s).

    Several nodes: calls go to one node at a time (:attr:`endpoint`). A
    ``NOT_LEADER`` answer sends the call to the leader it names (learnt if
    it was not in the list); one naming no leader (an election is under
    way), or a try left unanswered for ``try_timeout`` (or whose connection
    dropped), sends it to the next node after a short backoff, until the
    call's ``timeout``: then :class:`conveyor.Timeout`, or
    :class:`conveyor.NotLeader` if redirects were still failing. A try left
    unanswered may still have been applied: see the README for which
    operations are safe to repeat. With a single endpoint a silent server
    raises :class:`conveyor.Timeout` after ``timeout``, as always.

    Thread safety: a ``Client`` may be shared by threads; its DEALER socket
    is guarded by a lock, so calls run one at a time. Replies are matched to
    requests by ``rid``; a late reply to a call that timed out is discarded
    (after a silent try the socket is also replaced, and every switch to
    another node uses a fresh socket, so a request queued for an unreachable
    server is never sent later).

    Errors: an error reply raises the :class:`conveyor.Error` subclass for
    its code (``NotFound``, ``Conflict``, ...), carrying the server's
    ``message``. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, endpoint: EndpointsArg = DEFAULT_ENDPOINT,
                 timeout: float = DEFAULT_TIMEOUT, *, context: Optional[zmq.Context] = None,
                 security: Optional[Security] = None,
                 try_timeout: Optional[float] = None) -> None:
        self._eps = Endpoints(endpoint)
        self.timeout = float(timeout)
        #: With several nodes, how long one try waits before the next node.
        self.try_timeout = (float(try_timeout) if try_timeout is not None
                            else default_try_timeout(self.timeout))
        #: The CurveZMQ credentials of this client's sockets, or ``None``.
        self.security: Optional[Security] = check_security(security)
        self._ctx = context if context is not None else zmq.Context.instance()
        self._lock = threading.RLock()
        self._rid = itertools.count(random.randrange(1, 1 << 30))
        # Sent with every write: a retry of a write (same rid) whose reply was
        # lost is answered once by a server with a data dir (no double apply).
        self._client_id = "py-" + uuid.uuid4().hex
        self._call_rid = 0
        self._hello: Optional[Hello] = None
        self._hellos: Dict[str, Hello] = {}
        self._closed = False
        self._link: Optional[_Link] = None
        self._open_socket()

    # -- plumbing ------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The request endpoint of the node calls go to now (the one that
        answered the last call)."""
        return self._eps.current

    @property
    def endpoints(self) -> Tuple[str, ...]:
        """Every node known: those given, then leaders learnt from redirects."""
        return tuple(self._eps.endpoints)

    @property
    def switches(self) -> int:
        """How many times calls moved to another node (redirects, failovers)."""
        return self._eps.switches

    def _socket(self, kind: int) -> zmq.Socket:
        """A new socket of this client's context, with no linger and the
        client's CurveZMQ credentials applied (not connected yet)."""
        sock = self._ctx.socket(kind)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            apply_security(sock, self.security)
        except BaseException:
            sock.close(0)
            raise
        return sock

    def _open_socket(self) -> None:
        self._link = _Link(self._socket(zmq.DEALER), self._eps.current, self._eps.multi)

    def _reset_socket(self) -> None:
        """Drop the socket (whatever it still queues must not reach a server
        later); a fresh one is opened now (one node) or by the next try."""
        if self._link is not None:
            self._link.close()
            self._link = None
        if not self._closed and not self._eps.multi:
            self._open_socket()

    @property
    def _sock(self) -> Optional[zmq.Socket]:
        return self._link.sock if self._link is not None else None

    def clone(self) -> "Client":
        """A new client on the same endpoints (starting at the node in use),
        timeout and credentials (its own socket)."""
        return Client._derived(self, None, None)

    @staticmethod
    def _derived(parent: "Client", timeout: Optional[float],
                 security: Optional[Security]) -> "Client":
        with parent._lock:
            eps, current = list(parent._eps.endpoints), parent._eps.current
        c = Client(eps, parent.timeout if timeout is None else timeout, context=parent._ctx,
                   security=security if security is not None else parent.security,
                   try_timeout=parent.try_timeout if timeout is None else None)
        if current != c._eps.current:
            c._eps.prefer(current)
            c._eps.switches = 0
            c._reset_socket()
            if c._link is None:
                c._open_socket()
        return c

    def call(self, op: str, timeout: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        """Send any operation and return its reply map (``ok`` is true).

        Fields whose value is ``None`` are not sent. Raises the
        :class:`conveyor.Error` subclass of an error reply, or
        :class:`conveyor.Timeout` (see the class for several nodes).
        """
        return self._call(op, fields, timeout)

    def _call(self, op: str, fields: Mapping[str, Any], timeout: Optional[float] = None,
              gone: Tuple[str, ...] = ()) -> Dict[str, Any]:
        """:meth:`call`; an error whose code is in ``gone`` after a try that
        went unanswered counts as success (that try did it)."""
        wait = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._closed:
                raise Error("CLOSED", "the client is closed")
            self._call_rid = next(self._rid)
            if op in _WRITES and "client_id" not in fields:
                fields = dict(fields, client_id=self._client_id)
            plan: Plan = call_plan(self._eps, op, wait, self.try_timeout,
                                   _curve_hint(self.security))
            try:
                action = next(plan)
                while True:
                    if action[0] == "try":
                        outcome: Optional[Outcome] = self._try(op, fields, action[1],
                                                               action[2], wait)
                    else:
                        time.sleep(action[1])
                        outcome = None
                    action = plan.send(outcome)   # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value
            except Error as exc:
                if exc.code in gone and exc.retried:
                    log.info("%s: %s after a try that got no reply: taken as done", op, exc.code)
                    return {"ok": True, "retried": True}
                raise

    def _try(self, op: str, fields: Mapping[str, Any], endpoint: str, until: float,
             wait: float) -> Outcome:
        """One try on ``endpoint``, waiting until ``until``."""
        link = _link_for_try(self, endpoint)
        rid = self._call_rid       # the call's: every try of it is the same request
        started = time.monotonic()
        try:
            link.sock.send(pack(build_request(op, rid, fields)), zmq.NOBLOCK)
        except zmq.Again:
            self._reset_socket()
            return ("noreply", (False, f"{op}: cannot queue the request to {endpoint}"))
        poller = zmq.Poller()
        poller.register(link.sock, zmq.POLLIN)
        if link.mon is not None:
            poller.register(link.mon, zmq.POLLIN)
        while True:
            left = until - time.monotonic()
            ready = dict(poller.poll(max(1, int(left * 1000)))) if left > 0 else {}
            if not ready:
                if time.monotonic() < until:
                    continue
                # Drop the socket: whatever it still queues (this request
                # included) must not reach the server later.
                self._reset_socket()
                return ("noreply", (True, _no_reply_why(self, op, endpoint,
                                                        until - started, wait)))
            if link.sock in ready:
                reply = _read_reply(link.sock.recv_multipart(), rid, endpoint)
                if reply is not None:
                    return ("reply", reply)
            if link.mon is not None and link.mon in ready and link.drain():
                # The connection dropped (or was refused): no reply can come
                # through it, but one may have arrived just before.
                while link.sock.poll(0, zmq.POLLIN):
                    reply = _read_reply(link.sock.recv_multipart(), rid, endpoint)
                    if reply is not None:
                        return ("reply", reply)
                self._reset_socket()
                return ("noreply", (True, f"lost the connection to {endpoint}"))

    def close(self) -> None:
        """Close the socket. Further calls raise :class:`conveyor.Error` (``CLOSED``)."""
        with self._lock:
            self._closed = True
            if self._link is not None:
                self._link.close()
                self._link = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        curve = ", security=..." if self.security is not None else ""
        eps = self._eps.endpoints
        where = repr(eps[0]) if len(eps) == 1 else repr(list(eps))
        return f"Client({where}, timeout={self.timeout:g}{curve})"

    # -- registry ------------------------------------------------------------

    def hello(self) -> Hello:
        """Identity and defaults of the node that answers (the one in use:
        :attr:`endpoint`); caches its events endpoint (see
        :attr:`events_endpoint`). In a cluster, ``leader`` is the leader's
        request endpoint (``None`` while electing, or when not clustered)."""
        with self._lock:
            reply = self.call("hello")
            h = parse_hello(reply, self._eps.current)
            self._hello = h
            self._hellos[self._eps.current] = h
            return h

    def _hello_leader(self) -> Hello:
        """``hello``; in a cluster, then move to the leader it names and
        return the leader's (components subscribe to the events of the
        node their calls go to, which is the leader for most calls)."""
        with self._lock:
            h = self.hello()
            leader = h.leader
            if (isinstance(leader, str) and leader and leader != self._eps.current
                    and not wildcard_endpoint(leader) and self._eps.trusted(leader)):
                self._eps.prefer(leader)
                h = self.hello()
            return h

    @property
    def events_endpoint(self) -> str:
        """The event (PUB) endpoint of the node in use, wildcard host
        resolved; asks ``hello`` the first time for each node."""
        with self._lock:
            h = self._hellos.get(self._eps.current)
            if h is None:
                h = self.hello()
            return h.events_endpoint

    def register(self, service_id: str, service_name: str, service_type: str, endpoint: str,
                 labels: Optional[Mapping[str, str]] = None, group_id: Optional[str] = None,
                 lease_ms: Optional[int] = None, weight: Optional[int] = None) -> Service:
        """Register (or replace: upsert) a service; returns its record, whose
        ``lease_ms`` is the granted lease. ``service_type`` is ``"source"``,
        ``"transform"`` or ``"sink"``. The lease must then be kept with
        :meth:`heartbeat` (or use :class:`conveyor.Registration`)."""
        reply = self.call("register", service_id=service_id, service_name=service_name,
                          service_type=service_type, endpoint=endpoint,
                          labels=dict(labels) if labels is not None else None,
                          group_id=group_id, lease_ms=lease_ms, weight=weight)
        return parse_service(reply)

    def heartbeat(self, service_id: str, health: Optional[str] = None) -> Lease:
        """Renew a lease, reporting ``health`` (``"healthy"`` default,
        ``"degraded"``, ``"unhealthy"``). Unknown id: :class:`NotFound`
        (register again)."""
        return parse_lease(self.call("heartbeat", service_id=service_id, health=health))

    def deregister(self, service_id: str) -> None:
        """Remove a service (:class:`NotFound` if unknown; a ``NotFound``
        after a try that got no reply counts as done)."""
        self._call("deregister", {"service_id": service_id}, gone=("NOT_FOUND",))

    def get_service(self, service_id: str) -> Service:
        """One service (its ``seq`` is set); :class:`NotFound` if unknown."""
        return parse_service(self.call("get_service", service_id=service_id))

    def list_services(self, service_name: Optional[str] = None, service_type: Optional[str] = None,
                      group_id: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
                      healthy_only: Optional[bool] = None) -> ServiceList:
        """Services matching every filter given, sorted by ``service_id``;
        the list's ``seq`` is the event number it reflects."""
        return parse_services(self.call(
            "list_services", service_name=service_name, service_type=service_type,
            group_id=group_id, labels=dict(labels) if labels is not None else None,
            healthy_only=healthy_only))

    def events_since(self, since: int, prefix: Optional[str] = None,
                     limit: Optional[int] = None) -> EventsPage:
        """Events with ``seq > since`` (and topic starting with ``prefix``),
        oldest first. :class:`Compacted` (with ``.oldest``) if some are gone."""
        return parse_events(self.call("events_since", since=since, prefix=prefix, limit=limit))

    def stats(self) -> Dict[str, Any]:
        """The server's counters, as a dict (see protocol section 8)."""
        return parse_stats(self.call("stats"))

    # -- topics --------------------------------------------------------------

    def create_topic(self, topic: str, partitions: int) -> Topic:
        """Create a topic, or grow it (fewer partitions: :class:`Conflict`)."""
        return parse_topic(self.call("create_topic", topic=topic, partitions=partitions))

    def list_topics(self) -> Dict[str, int]:
        """``{topic: partitions}``."""
        return parse_topics(self.call("list_topics"))

    # -- groups --------------------------------------------------------------

    def join_group(self, group_id: str, topics: Sequence[str], member_id: Optional[str] = None,
                   service_name: Optional[str] = None, service_id: Optional[str] = None,
                   instance_id: Optional[str] = None, session_timeout_ms: Optional[int] = None,
                   assignor: Optional[str] = None) -> JoinResult:
        """Join (or re-join) a group; the reply comes once the rebalance that
        includes the member is done. ``assignor``: ``"sticky"`` (default),
        ``"range"`` or ``"roundrobin"``. The low-level call: for a member that
        heartbeats and follows rebalances use :class:`conveyor.GroupMember`.

        With several nodes and no ``member_id``, the client makes one (as the
        server would: ``<service_name or "member">-<uuid>``), so that a join
        tried again on another node cannot add a second member."""
        if not member_id and self._eps.multi:
            member_id = member_id_for(service_name)
        return parse_join(self.call(
            "join_group", group_id=group_id, topics=list(topics), member_id=member_id,
            service_name=service_name, service_id=service_id, instance_id=instance_id,
            session_timeout_ms=session_timeout_ms, assignor=assignor))

    def leave_group(self, group_id: str, member_id: str) -> None:
        """Leave a group (a rebalance follows). ``UnknownMember`` or ``NotFound``
        after a try that got no reply counts as done."""
        self._call("leave_group", {"group_id": group_id, "member_id": member_id},
                   gone=("UNKNOWN_MEMBER", "NOT_FOUND"))

    def group_heartbeat(self, group_id: str, member_id: str, generation: int) -> GroupHeartbeat:
        """Keep a member's session; a stale ``generation`` gets the current one
        and the member's assignment back (not an error)."""
        return parse_group_heartbeat(self.call("group_heartbeat", group_id=group_id,
                                               member_id=member_id, generation=generation))

    def get_group(self, group_id: str) -> Group:
        """A group with its members and their assignments."""
        return parse_group(self.call("get_group", group_id=group_id))

    def list_groups(self) -> GroupList:
        """Every group: ``group_id``, ``generation`` and member count."""
        return parse_groups(self.call("list_groups"))

    def commit_offsets(self, group_id: str, member_id: str, generation: int,
                       offsets: Offsets) -> None:
        """Commit offsets, all or nothing. ``offsets``: ``{(topic, partition):
        offset}`` or ``[(topic, partition, offset), ...]``."""
        self.call("commit_offsets", group_id=group_id, member_id=member_id,
                  generation=generation, offsets=offsets_list(offsets))

    def fetch_offsets(self, group_id: str,
                      partitions: Optional[Iterable[TopicPartition]] = None
                      ) -> Dict[TopicPartition, int]:
        """``{(topic, partition): offset}``: for the partitions asked (-1 where
        none is committed), or every committed one."""
        return parse_offsets(self.call(
            "fetch_offsets", group_id=group_id,
            partitions=tp_list(partitions) if partitions is not None else None))

    def delete_group(self, group_id: str) -> None:
        """Delete an empty group (:class:`Conflict` while it has members;
        ``NotFound`` after a try that got no reply counts as done)."""
        self._call("delete_group", {"group_id": group_id}, gone=("NOT_FOUND",))

    # -- cluster -------------------------------------------------------------

    def cluster_status(self) -> ClusterStatus:
        """The raft view of the node in use (a follower answers for itself):
        its state, the leader it knows, the term, and the servers.
        ``NotFound`` on a daemon without ``--data-dir``."""
        return ClusterStatus.from_dict(self.call("cluster_status"))

    def cluster_add(self, node_id: int, address: str) -> None:
        """Add node ``node_id`` whose raft address is ``address``
        (``HOST:PORT``) to the cluster (as a voter); returns once the change
        is committed. Start that node first, with ``--node-id`` and
        ``--peers`` not listing it."""
        self.call("cluster_add", node_id=int(node_id), address=address)

    def cluster_remove(self, node_id: int) -> None:
        """Remove node ``node_id`` from the cluster; returns once the change
        is committed."""
        self.call("cluster_remove", node_id=int(node_id))


ServerArg = Union[str, Sequence[str], Client, None]


def _link_for_try(client: Any, endpoint: str) -> _Link:
    """The link a try on ``endpoint`` uses (Client and AsyncClient alike):
    the open one if it is to that node, else a fresh socket, so nothing of
    the old one's (late replies, queued requests) can be mistaken."""
    if client._closed:
        raise Error("CLOSED", "the client is closed")
    link = client._link
    if link is None or link.endpoint != endpoint:
        if link is not None:
            link.close()
            client._link = None
        client._open_socket()
        link = client._link
        assert link is not None
    if link.used:
        link.drain()   # events of earlier, finished tries
    link.used = True
    return link


def _no_reply_why(client: Any, op: str, endpoint: str, waited: float, wait: float) -> str:
    """Why a try got no reply: with one node, with a hint at CURVE keys."""
    if client._eps.multi:
        return f"no reply to {op} from {endpoint} within {waited:.3g} s"
    return (f"no reply to {op} from {endpoint} within {wait:g} s"
            f"{_curve_hint(client.security)}")


def _curve_hint(security: Optional[Security]) -> str:
    if security is None:
        return ""
    return (" (CurveZMQ: a server that does not list this client's public key, or "
            "whose key is not the one given, answers nothing)")


def client_for(server: ServerArg, timeout: Optional[float] = None,
               security: Optional[Security] = None) -> Client:
    """A new :class:`Client` (own socket) for endpoints or another client
    (same nodes, starting at the one it uses). ``security`` (if given) wins
    over the other client's credentials."""
    check_security(security)
    if isinstance(server, Client):
        return Client._derived(server, timeout, security)
    return Client(server or DEFAULT_ENDPOINT, DEFAULT_TIMEOUT if timeout is None else timeout,
                  security=security)
