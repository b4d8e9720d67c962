"""The blocking client: one DEALER socket, guarded by a lock."""

from __future__ import annotations

import itertools
import random
import threading
import time
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Union

import zmq

from ._errors import Error, Timeout, error_from_reply
from ._security import Security, apply_security, check_security
from ._types import (EventsPage, Group, GroupHeartbeat, GroupList, Hello,
                     JoinResult, Lease, Service, ServiceList, Topic,
                     TopicPartition)
from ._wire import (DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, Offsets, build_request,
                    log, offsets_list, pack, parse_events, parse_group,
                    parse_group_heartbeat, parse_groups, parse_hello,
                    parse_join, parse_lease, parse_offsets, parse_service,
                    parse_services, parse_stats, parse_topic, parse_topics,
                    tp_list, unpack)

__all__ = ["Client"]


class Client:
    """A blocking client of ``conveyord``: one method per protocol operation.

    Args:
        endpoint: the daemon's request endpoint.
        timeout: seconds to wait for each reply; past it the call raises
            :class:`conveyor.Timeout` (it never hangs).
        context: a ``zmq.Context`` to use (default: the process-wide one).
        security: CurveZMQ credentials (:class:`conveyor.Security`) for a
            daemon started with ``--curve-secret``/``--curve-clients``; the
            request socket and every event socket opened from this client
            (watches, members) use them. A server that refuses them sends
            nothing back: calls raise :class:`conveyor.Timeout`.

    Thread safety: a ``Client`` may be shared by threads; its single DEALER
    socket is guarded by a lock, so calls run one at a time. Replies are
    matched to requests by ``rid``; a late reply to a call that timed out is
    discarded (after a timeout the socket is also replaced, so a request
    queued for an unreachable server is never sent later).

    Errors: an error reply raises the :class:`conveyor.Error` subclass for
    its code (``NotFound``, ``Conflict``, ...), carrying the server's
    ``message``. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT,
                 *, context: Optional[zmq.Context] = None,
                 security: Optional[Security] = None) -> None:
        self.endpoint = endpoint
        self.timeout = float(timeout)
        #: The CurveZMQ credentials of this client's sockets, or ``None``.
        self.security: Optional[Security] = check_security(security)
        self._ctx = context if context is not None else zmq.Context.instance()
        self._lock = threading.RLock()
        self._rid = itertools.count(random.randrange(1, 1 << 30))
        self._hello: Optional[Hello] = None
        self._closed = False
        self._sock: Optional[zmq.Socket] = None
        self._open_socket()

    # -- plumbing ------------------------------------------------------------

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
        sock = self._socket(zmq.DEALER)
        sock.connect(self.endpoint)
        self._sock = sock

    def _reset_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if not self._closed:
            self._open_socket()

    def clone(self) -> "Client":
        """A new client on the same endpoint, timeout and credentials (its own socket)."""
        return Client(self.endpoint, self.timeout, context=self._ctx, security=self.security)

    def call(self, op: str, timeout: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        """Send any operation and return its reply map (``ok`` is true).

        Fields whose value is ``None`` are not sent. Raises the
        :class:`conveyor.Error` subclass of an error reply, or
        :class:`conveyor.Timeout`.
        """
        wait = self.timeout if timeout is None else float(timeout)
        with self._lock:
            if self._closed or self._sock is None:
                raise Error("CLOSED", "the client is closed")
            rid = next(self._rid)
            data = pack(build_request(op, rid, fields))
            deadline = time.monotonic() + wait
            try:
                self._sock.send(data, zmq.NOBLOCK)
            except zmq.Again:
                self._reset_socket()
                raise Timeout("TIMEOUT", f"{op}: cannot queue the request to {self.endpoint}") from None
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not self._sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                    # Drop the socket: whatever it still queues (this request
                    # included) must not reach the server later.
                    self._reset_socket()
                    raise Timeout("TIMEOUT", f"no reply to {op} from {self.endpoint} "
                                             f"within {wait:g} s{_curve_hint(self.security)}")
                frames = self._sock.recv_multipart()
                if len(frames) != 1:
                    log.debug("dropping a %d-frame message", len(frames))
                    continue
                try:
                    reply = unpack(frames[0])
                except Exception:  # noqa: BLE001 - anything undecodable is dropped
                    log.warning("dropping an undecodable reply from %s", self.endpoint)
                    continue
                if not isinstance(reply, dict) or reply.get("rid") != rid:
                    log.debug("discarding a stale reply: %r", reply)
                    continue
                if reply.get("ok") is True:
                    return reply
                raise error_from_reply(reply)

    def close(self) -> None:
        """Close the socket. Further calls raise :class:`conveyor.Error` (``CLOSED``)."""
        with self._lock:
            self._closed = True
            if self._sock is not None:
                self._sock.close(0)
                self._sock = None

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        curve = ", security=..." if self.security is not None else ""
        return f"Client({self.endpoint!r}, timeout={self.timeout:g}{curve})"

    # -- registry ------------------------------------------------------------

    def hello(self) -> Hello:
        """Server identity and defaults; caches the events endpoint (see
        :attr:`events_endpoint`)."""
        h = parse_hello(self.call("hello"), self.endpoint)
        self._hello = h
        return h

    @property
    def events_endpoint(self) -> str:
        """The server's event (PUB) endpoint, wildcard host resolved; asks
        ``hello`` the first time."""
        if self._hello is None:
            self.hello()
        assert self._hello is not None
        return self._hello.events_endpoint

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
        """Remove a service (:class:`NotFound` if unknown)."""
        self.call("deregister", service_id=service_id)

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
        heartbeats and follows rebalances use :class:`conveyor.GroupMember`."""
        return parse_join(self.call(
            "join_group", group_id=group_id, topics=list(topics), member_id=member_id,
            service_name=service_name, service_id=service_id, instance_id=instance_id,
            session_timeout_ms=session_timeout_ms, assignor=assignor))

    def leave_group(self, group_id: str, member_id: str) -> None:
        """Leave a group (a rebalance follows)."""
        self.call("leave_group", group_id=group_id, member_id=member_id)

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
        """Delete an empty group (:class:`Conflict` while it has members)."""
        self.call("delete_group", group_id=group_id)


ServerArg = Union[str, Client, None]


def _curve_hint(security: Optional[Security]) -> str:
    if security is None:
        return ""
    return (" (CurveZMQ: a server that does not list this client's public key, or "
            "whose key is not the one given, answers nothing)")


def client_for(server: ServerArg, timeout: Optional[float] = None,
               security: Optional[Security] = None) -> Client:
    """A new :class:`Client` (own socket) for an endpoint or another client.
    ``security`` (if given) wins over the other client's credentials."""
    check_security(security)
    if isinstance(server, Client):
        return Client(server.endpoint, server.timeout if timeout is None else timeout,
                      context=server._ctx,
                      security=security if security is not None else server.security)
    return Client(server or DEFAULT_ENDPOINT, DEFAULT_TIMEOUT if timeout is None else timeout,
                  security=security)
