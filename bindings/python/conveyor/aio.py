"""The asyncio flavour, on ``zmq.asyncio``: :class:`AsyncClient` and :class:`AsyncWatch`.

Same operations, arguments, results and errors as :class:`conveyor.Client`
and :class:`conveyor.Watch`, as coroutines::

    import asyncio
    from conveyor.aio import AsyncClient, AsyncWatch

    async def main():
        async with AsyncClient("tcp://127.0.0.1:7400") as client:
            print(await client.hello())
            async with AsyncWatch("service/", server=client) as watch:
                async for event in watch:
                    print(event.type, event.service)

    asyncio.run(main())
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import random
import uuid
import time
from typing import (Any, AsyncIterator, Deque, Dict, Iterable, Mapping,
                    Optional, Sequence, Tuple, Union)

import zmq
import zmq.asyncio

from ._client import (_curve_hint, _Link, _link_for_try, _no_reply_why, _read_reply,
                      default_try_timeout, member_id_for)
from ._endpoints import (Endpoints, EndpointsArg, Outcome, Plan, call_plan,
                         wildcard_endpoint)
from ._errors import Error
from ._security import Security, apply_security, check_security
from ._types import (ClusterStatus, Event, EventsPage, Group, GroupHeartbeat,
                     GroupList, Hello, JoinResult, Lease, Service, ServiceList,
                     Topic, TopicPartition)
from ._watch import HEARTBEAT_TOPIC, PROBE_EVERY_S, SILENCE_S, Proc, _sub_link, _WatchCore
from ._wire import (DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, Offsets, build_request,
                    log, offsets_list, pack, parse_events, parse_group,
                    parse_group_heartbeat, parse_groups, parse_hello,
                    parse_join, parse_lease, parse_offsets, parse_service,
                    parse_services, parse_stats, parse_topic, parse_topics,
                    tp_list, unpack)

__all__ = ["AsyncClient", "AsyncWatch"]


# Writes the server deduplicates by client_id and rid (docs/protocol.md).
_WRITES = frozenset(("register", "deregister", "create_topic", "join_group", "leave_group",
                     "commit_offsets", "delete_group"))

class AsyncClient:
    """The asyncio client: one DEALER socket; calls from concurrent tasks
    are serialized by an ``asyncio.Lock`` and matched by ``rid``. A call
    with no reply within ``timeout`` raises :class:`conveyor.Timeout` (and
    the socket is replaced). Use ``async with`` or :meth:`close`. Use it
    from one event loop.

    ``endpoint`` is one request endpoint, or a cluster's: a list or a
    comma-separated string; calls then follow ``NOT_LEADER`` redirects and
    move on to the next node when a try gets no reply within
    ``try_timeout``, as :class:`conveyor.Client` does.

    ``security``: CurveZMQ credentials (:class:`conveyor.Security`) for a
    daemon started with ``--curve-secret``/``--curve-clients``, used by its
    socket and by the sockets of the :class:`AsyncWatch` made from it.
    """

    def __init__(self, endpoint: EndpointsArg = DEFAULT_ENDPOINT,
                 timeout: float = DEFAULT_TIMEOUT, *,
                 context: Optional[zmq.asyncio.Context] = None,
                 security: Optional[Security] = None,
                 try_timeout: Optional[float] = None) -> None:
        self._eps = Endpoints(endpoint)
        self.timeout = float(timeout)
        #: With several nodes, how long one try waits before the next node.
        self.try_timeout = (float(try_timeout) if try_timeout is not None
                            else default_try_timeout(self.timeout))
        #: The CurveZMQ credentials of this client's sockets, or ``None``.
        self.security: Optional[Security] = check_security(security)
        self._ctx = context if context is not None else zmq.asyncio.Context.instance()
        self._lock: Optional[asyncio.Lock] = None   # made in the loop that uses it
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

    @property
    def endpoint(self) -> str:
        """The request endpoint of the node calls go to now."""
        return self._eps.current

    @property
    def endpoints(self) -> Tuple[str, ...]:
        """Every node known: those given, then leaders learnt from redirects."""
        return tuple(self._eps.endpoints)

    @property
    def switches(self) -> int:
        """How many times calls moved to another node."""
        return self._eps.switches

    def _socket(self, kind: int) -> zmq.asyncio.Socket:
        """A new socket with no linger and the client's credentials (not connected)."""
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
        if self._link is not None:
            self._link.close()
            self._link = None
        if not self._closed and not self._eps.multi:
            self._open_socket()

    @property
    def _sock(self) -> Optional[zmq.asyncio.Socket]:
        return self._link.sock if self._link is not None else None

    async def call(self, op: str, timeout: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        """Send any operation; return its reply map (see :meth:`Client.call`)."""
        return await self._call(op, fields, timeout)

    async def _call(self, op: str, fields: Mapping[str, Any], timeout: Optional[float] = None,
                    gone: Tuple[str, ...] = ()) -> Dict[str, Any]:
        return (await self._call_node(op, fields, timeout, gone))[0]

    async def _call_node(self, op: str, fields: Mapping[str, Any],
                         timeout: Optional[float] = None,
                         gone: Tuple[str, ...] = ()) -> Tuple[Dict[str, Any], str]:
        """The reply, and the endpoint of the node that gave it."""
        wait = self.timeout if timeout is None else float(timeout)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
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
                        outcome: Optional[Outcome] = await self._try(
                            op, fields, action[1], action[2], wait)
                    else:
                        await asyncio.sleep(action[1])
                        outcome = None
                    action = plan.send(outcome)   # type: ignore[arg-type]
            except StopIteration as stop:
                return stop.value, self._eps.current
            except Error as exc:
                if exc.code in gone and exc.retried:
                    log.info("%s: %s after a try that got no reply: taken as done", op, exc.code)
                    return {"ok": True, "retried": True}, self._eps.current
                raise

    async def _try(self, op: str, fields: Mapping[str, Any], endpoint: str, until: float,
                   wait: float) -> Outcome:
        link = _link_for_try(self, endpoint)
        sock = link.sock
        rid = self._call_rid       # the call's: every try of it is the same request
        started = time.monotonic()
        try:
            await sock.send(pack(build_request(op, rid, fields)), zmq.NOBLOCK)
        except zmq.Again:
            self._reset_socket()
            return ("noreply", (False, f"{op}: cannot queue the request to {endpoint}"))
        poller = zmq.asyncio.Poller()
        poller.register(sock, zmq.POLLIN)
        if link.mon is not None:
            poller.register(link.mon, zmq.POLLIN)
        try:
            while True:
                left = until - time.monotonic()
                ready = (dict(await poller.poll(max(1, int(left * 1000))))
                         if left > 0 else {})
                if not ready:
                    if time.monotonic() < until:
                        continue
                    self._reset_socket()
                    return ("noreply", (True, _no_reply_why(self, op, endpoint,
                                                            until - started, wait)))
                if sock in ready:
                    reply = _read_reply(await sock.recv_multipart(), rid, endpoint)
                    if reply is not None:
                        return ("reply", reply)
                if link.mon is not None and link.mon in ready and link.drain():
                    while await sock.poll(0, zmq.POLLIN):
                        reply = _read_reply(await sock.recv_multipart(), rid, endpoint)
                        if reply is not None:
                            return ("reply", reply)
                    self._reset_socket()
                    return ("noreply", (True, f"lost the connection to {endpoint}"))
        except asyncio.CancelledError:
            # The reply may come later: a fresh socket keeps it away.
            self._reset_socket()
            raise

    def clone(self) -> "AsyncClient":
        """A new client on the same endpoints (starting at the node in use),
        timeout and credentials."""
        return AsyncClient._derived(self, None, None)

    @staticmethod
    def _derived(parent: "AsyncClient", timeout: Optional[float],
                 security: Optional[Security]) -> "AsyncClient":
        c = AsyncClient(list(parent._eps.endpoints),
                        parent.timeout if timeout is None else timeout, context=parent._ctx,
                        security=security if security is not None else parent.security,
                        try_timeout=parent.try_timeout if timeout is None else None)
        if parent._eps.current != c._eps.current:
            c._eps.prefer(parent._eps.current)
            c._eps.switches = 0
            c._reset_socket()
            if c._link is None:
                c._open_socket()
        return c

    def close(self) -> None:
        """Close the socket."""
        self._closed = True
        if self._link is not None:
            self._link.close()
            self._link = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        curve = ", security=..." if self.security is not None else ""
        eps = self._eps.endpoints
        where = repr(eps[0]) if len(eps) == 1 else repr(list(eps))
        return f"AsyncClient({where}, timeout={self.timeout:g}{curve})"

    # -- operations (see conveyor.Client for their documentation) -------------

    async def hello(self) -> Hello:
        reply, node = await self._call_node("hello", {})
        h = parse_hello(reply, node)
        self._hello = h
        self._hellos[node] = h
        return h

    async def _hello_leader(self) -> Hello:
        """``hello``; in a cluster, then move to the leader it names."""
        h = await self.hello()
        leader = h.leader
        if (isinstance(leader, str) and leader and leader != self._eps.current
                and not wildcard_endpoint(leader) and self._eps.trusted(leader)):
            self._eps.prefer(leader)
            h = await self.hello()
        return h

    async def events_endpoint(self) -> str:
        """The event endpoint of the node in use (wildcard host resolved)."""
        h = self._hellos.get(self._eps.current)
        if h is None:
            h = await self.hello()
        return h.events_endpoint

    async def register(self, service_id: str, service_name: str, service_type: str,
                       endpoint: str, labels: Optional[Mapping[str, str]] = None,
                       group_id: Optional[str] = None, lease_ms: Optional[int] = None,
                       weight: Optional[int] = None) -> Service:
        return parse_service(await self.call(
            "register", service_id=service_id, service_name=service_name,
            service_type=service_type, endpoint=endpoint,
            labels=dict(labels) if labels is not None else None,
            group_id=group_id, lease_ms=lease_ms, weight=weight))

    async def heartbeat(self, service_id: str, health: Optional[str] = None) -> Lease:
        return parse_lease(await self.call("heartbeat", service_id=service_id, health=health))

    async def deregister(self, service_id: str) -> None:
        await self._call("deregister", {"service_id": service_id}, gone=("NOT_FOUND",))

    async def get_service(self, service_id: str) -> Service:
        return parse_service(await self.call("get_service", service_id=service_id))

    async def list_services(self, service_name: Optional[str] = None,
                            service_type: Optional[str] = None, group_id: Optional[str] = None,
                            labels: Optional[Mapping[str, str]] = None,
                            healthy_only: Optional[bool] = None) -> ServiceList:
        return parse_services(await self.call(
            "list_services", service_name=service_name, service_type=service_type,
            group_id=group_id, labels=dict(labels) if labels is not None else None,
            healthy_only=healthy_only))

    async def events_since(self, since: int, prefix: Optional[str] = None,
                           limit: Optional[int] = None) -> EventsPage:
        return parse_events(await self.call("events_since", since=since, prefix=prefix,
                                            limit=limit))

    async def stats(self) -> Dict[str, Any]:
        return parse_stats(await self.call("stats"))

    async def create_topic(self, topic: str, partitions: int) -> Topic:
        return parse_topic(await self.call("create_topic", topic=topic, partitions=partitions))

    async def list_topics(self) -> Dict[str, int]:
        return parse_topics(await self.call("list_topics"))

    async def join_group(self, group_id: str, topics: Sequence[str],
                         member_id: Optional[str] = None, service_name: Optional[str] = None,
                         service_id: Optional[str] = None, instance_id: Optional[str] = None,
                         session_timeout_ms: Optional[int] = None,
                         assignor: Optional[str] = None) -> JoinResult:
        if not member_id and self._eps.multi:
            member_id = member_id_for(service_name)
        return parse_join(await self.call(
            "join_group", group_id=group_id, topics=list(topics), member_id=member_id,
            service_name=service_name, service_id=service_id, instance_id=instance_id,
            session_timeout_ms=session_timeout_ms, assignor=assignor))

    async def leave_group(self, group_id: str, member_id: str) -> None:
        await self._call("leave_group", {"group_id": group_id, "member_id": member_id},
                         gone=("UNKNOWN_MEMBER", "NOT_FOUND"))

    async def group_heartbeat(self, group_id: str, member_id: str,
                              generation: int) -> GroupHeartbeat:
        return parse_group_heartbeat(await self.call(
            "group_heartbeat", group_id=group_id, member_id=member_id, generation=generation))

    async def get_group(self, group_id: str) -> Group:
        return parse_group(await self.call("get_group", group_id=group_id))

    async def list_groups(self) -> GroupList:
        return parse_groups(await self.call("list_groups"))

    async def commit_offsets(self, group_id: str, member_id: str, generation: int,
                             offsets: Offsets) -> None:
        await self.call("commit_offsets", group_id=group_id, member_id=member_id,
                        generation=generation, offsets=offsets_list(offsets))

    async def fetch_offsets(self, group_id: str,
                            partitions: Optional[Iterable[TopicPartition]] = None
                            ) -> Dict[TopicPartition, int]:
        return parse_offsets(await self.call(
            "fetch_offsets", group_id=group_id,
            partitions=tp_list(partitions) if partitions is not None else None))

    async def delete_group(self, group_id: str) -> None:
        await self._call("delete_group", {"group_id": group_id}, gone=("NOT_FOUND",))

    async def cluster_status(self) -> ClusterStatus:
        return ClusterStatus.from_dict(await self.call("cluster_status"))

    async def cluster_add(self, node_id: int, address: str) -> None:
        await self.call("cluster_add", node_id=int(node_id), address=address)

    async def cluster_remove(self, node_id: int) -> None:
        await self.call("cluster_remove", node_id=int(node_id))


async def run_proc_async(client: AsyncClient, proc: Proc) -> None:
    """Drive a watch procedure with the asyncio client."""
    try:
        req = next(proc)
    except StopIteration:
        return
    while True:
        try:
            fields = dict(req)
            op = fields.pop("op")
            reply = await client.call(op, **fields)
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


class AsyncWatch:
    """The asyncio :class:`conveyor.Watch`: same snapshot, ordering, gap
    recovery and resync, as an async iterator.

    ``async with AsyncWatch(prefix, server=...) as w: async for ev in w: ...``
    or ``w = AsyncWatch(...); await w.start(); ev = await w.get(timeout)``;
    :meth:`close` ends the iteration. ``server`` is an endpoint (a
    cluster's: a list, or a comma-separated string) or an
    :class:`AsyncClient` (its endpoints, timeout and credentials are reused;
    the watch opens its own sockets). In a cluster it follows its client's
    node as :class:`conveyor.Watch` does. ``security``: CurveZMQ credentials
    (:class:`conveyor.Security`) for a secured daemon, used on the request
    and the event socket (default: those of the ``server`` client, if any).
    """

    def __init__(self, prefix: str = "", *,
                 server: Union[str, Sequence[str], AsyncClient, None] = None,
                 endpoint: Optional[EndpointsArg] = None, snapshot: bool = True,
                 since: Optional[int] = None, timeout: Optional[float] = None,
                 security: Optional[Security] = None) -> None:
        if server is not None and endpoint is not None:
            raise TypeError("give server= or endpoint=, not both")
        check_security(security)
        server = server if server is not None else endpoint
        if isinstance(server, AsyncClient):
            self._client = AsyncClient._derived(server, timeout, security)
        else:
            self._client = AsyncClient(server or DEFAULT_ENDPOINT,
                                       DEFAULT_TIMEOUT if timeout is None else timeout,
                                       security=security)
        self.prefix = prefix
        self._snapshot = snapshot
        self._since = since
        self._core = _WatchCore(prefix)
        self._sub_link: Optional[_Link] = None
        self._node: Optional[str] = None
        self._resync = False
        self._last_msg = time.monotonic()
        self._probe_at = 0.0
        self._started = False
        self._closed = False
        self._retry: Deque[Tuple[str, Any]] = collections.deque()
        self._retry_at = 0.0
        self.last_heartbeat: Optional[float] = None
        #: How many times the watch moved to another node's events.
        self.switches = 0

    async def start(self) -> "AsyncWatch":
        """Subscribe and take the first snapshot (errors are raised here)."""
        if self._started:
            return self
        try:
            hello = await self._client._hello_leader()
            self._core.clustered = self._client._eps.multi or bool(hello.leader)
            self._subscribe(hello.events_endpoint)
            await run_proc_async(self._client, self._core.start(self._snapshot, self._since))
            self._resync = self._client._eps.multi
            await self._follow_node()
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    @property
    def _sub(self) -> Optional[zmq.asyncio.Socket]:
        return self._sub_link.sock if self._sub_link is not None else None

    @property
    def node(self) -> Optional[str]:
        """The request endpoint of the node whose events the watch follows."""
        return self._node

    def _subscribe(self, events_endpoint: str) -> None:
        link = _sub_link(self._client, self.prefix, events_endpoint)
        if self._sub_link is not None:
            self._sub_link.close()
        self._sub_link = link
        self._node = self._client.endpoint
        self._last_msg = time.monotonic()
        self._resync = True

    async def _follow_node(self) -> None:
        """As :meth:`conveyor.Watch._follow_node`."""
        for _ in range(3):
            if self._client.endpoint == self._node:
                return
            old = self._node
            events = await self._client.events_endpoint()
            if self._client.endpoint != self._node:
                self._subscribe(events)
                self.switches += 1
                log.info("watch %r: following the events of %s (was %s), from seq %d",
                         self.prefix, self._node, old, self._core.cursor)
                await run_proc_async(self._client, self._core.catch_up())

    async def _check_node(self) -> None:
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
        await self._client.hello()
        await self._follow_node()

    async def _handle(self, topic: str, body: Any) -> bool:
        if topic == HEARTBEAT_TOPIC:
            self.last_heartbeat = time.monotonic()
        try:
            if self._resync:
                await run_proc_async(self._client, self._core.catch_up())
                self._resync = False
            await run_proc_async(self._client, self._core.message(topic, body))
            await self._follow_node()
            return True
        except Error as exc:
            log.warning("watch %r: %s; will retry", self.prefix, exc)
            return False

    async def _pump(self, wait: float) -> None:
        if self._retry:
            now = time.monotonic()
            if now < self._retry_at:
                await asyncio.sleep(min(wait, self._retry_at - now))
                return
            while self._retry:
                topic, body = self._retry[0]
                if not await self._handle(topic, body):
                    self._retry_at = time.monotonic() + 0.5
                    return
                self._retry.popleft()
            return
        try:
            await self._check_node()
        except Error as exc:
            log.debug("watch %r: no node answers: %s", self.prefix, exc)
        if self._sub is None or not await self._sub.poll(max(0, int(wait * 1000)), zmq.POLLIN):
            return
        self._last_msg = time.monotonic()
        while not self._core.ready and self._sub is not None:
            try:
                frames = await self._sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(frames) != 2:
                continue
            topic = frames[0].decode("utf-8", "replace")
            try:
                body = unpack(frames[1])
            except Exception:  # noqa: BLE001
                continue
            if not await self._handle(topic, body):
                self._retry.append((topic, body))
                self._retry_at = time.monotonic() + 0.5
                return

    async def get(self, timeout: Optional[float] = None) -> Optional[Event]:
        """The next event within ``timeout`` seconds (``None``: until one
        comes or the watch is closed), else ``None``."""
        if not self._started and not self._closed:
            await self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._core.ready:
                return self._core.ready.popleft()
            if self._closed or self._sub is None:
                return None
            left = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if left <= 0:
                return None
            await self._pump(left)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        ev = await self.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def iter(self, timeout: float) -> AsyncIterator[Event]:
        """Yield events until none comes for ``timeout`` seconds."""
        while True:
            ev = await self.get(timeout)
            if ev is None:
                return
            yield ev

    @property
    def seq(self) -> int:
        return self._core.max_seen

    @property
    def snapshots(self) -> int:
        return self._core.snapshots

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop the watch; iteration ends."""
        self._closed = True
        if self._sub_link is not None:
            self._sub_link.close()
            self._sub_link = None
        self._client.close()

    async def __aenter__(self) -> "AsyncWatch":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncWatch({self.prefix!r}, seq={self._core.max_seen}, closed={self._closed})"
