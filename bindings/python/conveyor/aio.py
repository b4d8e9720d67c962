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
import time
from typing import (Any, AsyncIterator, Deque, Dict, Iterable, Mapping,
                    Optional, Sequence, Tuple, Union)

import zmq
import zmq.asyncio

from ._client import _curve_hint
from ._errors import Error, Timeout, error_from_reply
from ._security import Security, apply_security, check_security
from ._types import (Event, EventsPage, Group, GroupHeartbeat, GroupList, Hello,
                     JoinResult, Lease, Service, ServiceList, Topic,
                     TopicPartition)
from ._watch import HEARTBEAT_TOPIC, Proc, _WatchCore
from ._wire import (DEFAULT_ENDPOINT, DEFAULT_TIMEOUT, Offsets, build_request,
                    log, offsets_list, pack, parse_events, parse_group,
                    parse_group_heartbeat, parse_groups, parse_hello,
                    parse_join, parse_lease, parse_offsets, parse_service,
                    parse_services, parse_stats, parse_topic, parse_topics,
                    tp_list, unpack)

__all__ = ["AsyncClient", "AsyncWatch"]


class AsyncClient:
    """The asyncio client: one DEALER socket; calls from concurrent tasks
    are serialized by an ``asyncio.Lock`` and matched by ``rid``. A call
    with no reply within ``timeout`` raises :class:`conveyor.Timeout` (and
    the socket is replaced). Use ``async with`` or :meth:`close`. Use it
    from one event loop.

    ``security``: CurveZMQ credentials (:class:`conveyor.Security`) for a
    daemon started with ``--curve-secret``/``--curve-clients``, used by its
    socket and by the sockets of the :class:`AsyncWatch` made from it.
    """

    def __init__(self, endpoint: str = DEFAULT_ENDPOINT, timeout: float = DEFAULT_TIMEOUT,
                 *, context: Optional[zmq.asyncio.Context] = None,
                 security: Optional[Security] = None) -> None:
        self.endpoint = endpoint
        self.timeout = float(timeout)
        #: The CurveZMQ credentials of this client's sockets, or ``None``.
        self.security: Optional[Security] = check_security(security)
        self._ctx = context if context is not None else zmq.asyncio.Context.instance()
        self._lock: Optional[asyncio.Lock] = None   # made in the loop that uses it
        self._rid = itertools.count(random.randrange(1, 1 << 30))
        self._hello: Optional[Hello] = None
        self._closed = False
        self._sock: Optional[zmq.asyncio.Socket] = None
        self._open_socket()

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
        sock = self._socket(zmq.DEALER)
        sock.connect(self.endpoint)
        self._sock = sock

    def _reset_socket(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
        if not self._closed:
            self._open_socket()

    async def call(self, op: str, timeout: Optional[float] = None, **fields: Any) -> Dict[str, Any]:
        """Send any operation; return its reply map (see :meth:`Client.call`)."""
        wait = self.timeout if timeout is None else float(timeout)
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._closed or self._sock is None:
                raise Error("CLOSED", "the client is closed")
            sock = self._sock
            rid = next(self._rid)
            deadline = time.monotonic() + wait
            try:
                await sock.send(pack(build_request(op, rid, fields)), zmq.NOBLOCK)
            except zmq.Again:
                self._reset_socket()
                raise Timeout("TIMEOUT", f"{op}: cannot queue the request to {self.endpoint}") from None
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0 or not await sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                        self._reset_socket()
                        raise Timeout("TIMEOUT", f"no reply to {op} from {self.endpoint} "
                                                 f"within {wait:g} s"
                                                 f"{_curve_hint(self.security)}")
                    frames = await sock.recv_multipart()
                    if len(frames) != 1:
                        continue
                    try:
                        reply = unpack(frames[0])
                    except Exception:  # noqa: BLE001
                        log.warning("dropping an undecodable reply from %s", self.endpoint)
                        continue
                    if not isinstance(reply, dict) or reply.get("rid") != rid:
                        continue
                    if reply.get("ok") is True:
                        return reply
                    raise error_from_reply(reply)
            except asyncio.CancelledError:
                # The reply may come later: a fresh socket keeps it away.
                self._reset_socket()
                raise

    def clone(self) -> "AsyncClient":
        """A new client on the same endpoint, timeout and credentials."""
        return AsyncClient(self.endpoint, self.timeout, context=self._ctx,
                           security=self.security)

    def close(self) -> None:
        """Close the socket."""
        self._closed = True
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        curve = ", security=..." if self.security is not None else ""
        return f"AsyncClient({self.endpoint!r}, timeout={self.timeout:g}{curve})"

    # -- operations (see conveyor.Client for their documentation) -------------

    async def hello(self) -> Hello:
        h = parse_hello(await self.call("hello"), self.endpoint)
        self._hello = h
        return h

    async def events_endpoint(self) -> str:
        """The server's event endpoint (wildcard host resolved)."""
        if self._hello is None:
            await self.hello()
        assert self._hello is not None
        return self._hello.events_endpoint

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
        await self.call("deregister", service_id=service_id)

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
        return parse_join(await self.call(
            "join_group", group_id=group_id, topics=list(topics), member_id=member_id,
            service_name=service_name, service_id=service_id, instance_id=instance_id,
            session_timeout_ms=session_timeout_ms, assignor=assignor))

    async def leave_group(self, group_id: str, member_id: str) -> None:
        await self.call("leave_group", group_id=group_id, member_id=member_id)

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
        await self.call("delete_group", group_id=group_id)


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
    :meth:`close` ends the iteration. ``server`` is an endpoint or an
    :class:`AsyncClient` (its endpoint, timeout and credentials are reused;
    the watch opens its own sockets). ``security``: CurveZMQ credentials
    (:class:`conveyor.Security`) for a secured daemon, used on the request
    and the event socket (default: those of the ``server`` client, if any).
    """

    def __init__(self, prefix: str = "", *, server: Union[str, AsyncClient, None] = None,
                 endpoint: Optional[str] = None, snapshot: bool = True,
                 since: Optional[int] = None, timeout: Optional[float] = None,
                 security: Optional[Security] = None) -> None:
        if server is not None and endpoint is not None:
            raise TypeError("give server= or endpoint=, not both")
        check_security(security)
        server = server if server is not None else endpoint
        if isinstance(server, AsyncClient):
            self._client = AsyncClient(server.endpoint,
                                       server.timeout if timeout is None else timeout,
                                       context=server._ctx,
                                       security=security if security is not None
                                       else server.security)
        else:
            self._client = AsyncClient(server or DEFAULT_ENDPOINT,
                                       DEFAULT_TIMEOUT if timeout is None else timeout,
                                       security=security)
        self.prefix = prefix
        self._snapshot = snapshot
        self._since = since
        self._core = _WatchCore(prefix)
        self._sub: Optional[zmq.asyncio.Socket] = None
        self._started = False
        self._closed = False
        self._retry: Deque[Tuple[str, Any]] = collections.deque()
        self._retry_at = 0.0
        self.last_heartbeat: Optional[float] = None

    async def start(self) -> "AsyncWatch":
        """Subscribe and take the first snapshot (errors are raised here)."""
        if self._started:
            return self
        try:
            hello = await self._client.hello()
            sub = self._client._socket(zmq.SUB)
            sub.connect(hello.events_endpoint)
            sub.setsockopt(zmq.SUBSCRIBE, self.prefix.encode())
            if not HEARTBEAT_TOPIC.startswith(self.prefix):
                sub.setsockopt(zmq.SUBSCRIBE, HEARTBEAT_TOPIC.encode())
            self._sub = sub
            await run_proc_async(self._client, self._core.start(self._snapshot, self._since))
        except BaseException:
            self.close()
            raise
        self._started = True
        return self

    async def _handle(self, topic: str, body: Any) -> bool:
        if topic == HEARTBEAT_TOPIC:
            self.last_heartbeat = time.monotonic()
        try:
            await run_proc_async(self._client, self._core.message(topic, body))
            return True
        except Error as exc:
            log.warning("watch %r: %s; will retry", self.prefix, exc)
            return False

    async def _pump(self, wait: float) -> None:
        assert self._sub is not None
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
        if not await self._sub.poll(max(0, int(wait * 1000)), zmq.POLLIN):
            return
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
        if self._sub is not None:
            self._sub.close(0)
            self._sub = None
        self._client.close()

    async def __aenter__(self) -> "AsyncWatch":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AsyncWatch({self.prefix!r}, seq={self._core.max_seen}, closed={self._closed})"
