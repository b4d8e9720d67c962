"""A service registration kept alive by a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, Mapping, Optional

from ._client import Client, ServerArg, client_for
from ._endpoints import NodeTracker
from ._errors import Error, NotFound
from ._security import Security
from ._types import Service
from ._wire import log

__all__ = ["Registration"]

_HEALTHS = ("healthy", "degraded", "unhealthy")


class Registration:
    """Registers a service and keeps its lease alive until :meth:`close`.

    The constructor registers synchronously (errors such as
    :class:`conveyor.BadRequest` or :class:`conveyor.Timeout` are raised
    there), then a daemon thread sends a ``heartbeat`` every third of the
    granted lease, with the health set by :meth:`set_health`. If the server
    answers :class:`conveyor.NotFound` (the lease ran out, or the server
    restarted) the thread registers the service again. Failures are logged
    on the ``"conveyor"`` logger and retried; they never stop the thread.
    With a cluster, a failover costs a heartbeat or two and logs one line
    (the new leader renews every lease as it takes over).

    :meth:`close` (or leaving the ``with`` block) stops the heartbeats and
    deregisters; ``close(deregister=False)`` only stops them, as a crash
    would: the service turns ``unhealthy`` after one lease and expires after
    two.

    Args:
        service_id, service_name, service_type, endpoint, labels, group_id,
        lease_ms, weight: as for :meth:`Client.register` (``service_type`` is
            ``"source"``, ``"transform"`` or ``"sink"``; ``endpoint`` is the
            service's own address, published to others).
        health: the health reported by heartbeats (``"healthy"``,
            ``"degraded"`` or ``"unhealthy"``).
        server: the daemon's request endpoint (a cluster's: a list, or a
            comma-separated string), or a :class:`Client` whose endpoints,
            timeout and security are reused (the registration always opens
            its own socket).
        timeout: reply timeout in seconds (default: the client's, or 5).
        security: CurveZMQ credentials (:class:`conveyor.Security`) for a
            secured daemon (default: those of the ``server`` client, if any).
    """

    def __init__(self, service_id: str, service_name: str, service_type: str, endpoint: str,
                 labels: Optional[Mapping[str, str]] = None, group_id: Optional[str] = None,
                 lease_ms: Optional[int] = None, weight: Optional[int] = None, *,
                 health: str = "healthy", server: ServerArg = None,
                 timeout: Optional[float] = None,
                 security: Optional[Security] = None) -> None:
        if health not in _HEALTHS:
            raise ValueError(f"health must be one of {_HEALTHS}, not {health!r}")
        self._fields: Dict[str, Any] = dict(
            service_id=service_id, service_name=service_name, service_type=service_type,
            endpoint=endpoint, labels=dict(labels) if labels is not None else None,
            group_id=group_id, lease_ms=lease_ms, weight=weight)
        self._health = health
        self._client: Client = client_for(server, timeout, security)
        self._lock = threading.RLock()        # serializes register/heartbeat
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._service: Optional[Service] = None
        self._lease_ms = 0
        self._closed = False
        #: How many times the service was registered (1 + re-registrations).
        self.registrations = 0
        #: Heartbeats that succeeded.
        self.heartbeats = 0
        #: The last error met by the background thread, or ``None``.
        self.last_error: Optional[BaseException] = None
        try:
            self._register()
            if health != "healthy":
                self._beat()
        except BaseException:
            self._client.close()
            raise
        self._node = NodeTracker(f"service {service_id}", self._client)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"conveyor-registration-{service_id}")
        self._thread.start()

    # -- properties ----------------------------------------------------------

    @property
    def service_id(self) -> str:
        return str(self._fields["service_id"])

    @property
    def service(self) -> Optional[Service]:
        """The record returned by the last (re-)registration."""
        return self._service

    @property
    def lease_ms(self) -> int:
        """The lease granted by the server, in milliseconds."""
        return self._lease_ms

    @property
    def health(self) -> str:
        """The health reported by the heartbeats."""
        return self._health

    @property
    def closed(self) -> bool:
        return self._closed

    # -- actions -------------------------------------------------------------

    def _register(self) -> None:
        with self._lock:
            svc = self._client.register(**self._fields)
            self._service = svc
            self._lease_ms = svc.lease_ms
            self.registrations += 1

    def _beat(self) -> None:
        with self._lock:
            wait = min(self._client.timeout, max(self._lease_ms / 2000.0, 0.1))
            try:
                reply = self._client.call("heartbeat", timeout=wait,
                                          service_id=self.service_id, health=self._health)
            except NotFound:
                log.warning("service %s: lease lost (NOT_FOUND), registering again",
                            self.service_id)
                self._register()
                if self._health != "healthy":
                    self._client.heartbeat(self.service_id, health=self._health)
                return
            self._lease_ms = int(reply.get("lease_ms", self._lease_ms))
            self.heartbeats += 1

    def set_health(self, health: str) -> None:
        """Report a new health now (one heartbeat from the calling thread) and
        with every later heartbeat. The new value is kept even if this
        heartbeat fails (the error is raised)."""
        if health not in _HEALTHS:
            raise ValueError(f"health must be one of {_HEALTHS}, not {health!r}")
        self._health = health
        self._beat()

    def update(self, **fields: Any) -> Service:
        """Register again with some fields changed (``service_name``,
        ``service_type``, ``endpoint``, ``labels``, ``group_id``,
        ``lease_ms``, ``weight``); returns the new record."""
        allowed = set(self._fields) - {"service_id"}
        bad = set(fields) - allowed
        if bad:
            raise TypeError(f"update() got unexpected fields {sorted(bad)}")
        with self._lock:
            new = dict(self._fields)
            new.update(fields)
            old, self._fields = self._fields, new
            try:
                self._register()
                if self._health != "healthy":
                    self._client.heartbeat(self.service_id, health=self._health)
            except BaseException:
                self._fields = old
                raise
            self._wake.set()   # the lease may have changed: reschedule
            assert self._service is not None
            return self._service

    def _run(self) -> None:
        next_at = time.monotonic() + self._lease_ms / 3000.0
        while not self._stop.is_set():
            self._wake.wait(max(0.0, next_at - time.monotonic()))
            if self._stop.is_set():
                break
            if self._wake.is_set():
                self._wake.clear()
                if time.monotonic() < next_at:
                    next_at = min(next_at, time.monotonic() + self._lease_ms / 3000.0)
                    continue
            interval = max(self._lease_ms / 3000.0, 0.01)
            try:
                self._beat()
                self.last_error = None
                self._node.succeeded()
            except Error as exc:
                self.last_error = exc
                # A failover shows as a few failed heartbeats: one line
                # (on success elsewhere) unless it lasts a lease.
                self._node.failed(exc, "heartbeat", self._lease_ms / 1000.0)
                # retry sooner (a cluster's client already tried every node)
                interval = min(interval, 0.1 if self._client._eps.multi else 0.5)
            except Exception as exc:  # noqa: BLE001 - never let the thread die
                self.last_error = exc
                log.exception("service %s: heartbeat failed", self.service_id)
                interval = min(interval, 0.5)
            next_at = time.monotonic() + interval

    def close(self, deregister: bool = True, timeout: Optional[float] = None) -> None:
        """Stop the heartbeats and (by default) deregister the service.

        ``deregister=False`` leaves the lease to run out, as after a crash.
        Bounded: waits at most ``timeout`` (default: the client's timeout)
        for the thread, and the deregister is bounded by the client's
        timeout; errors of the deregister are logged, not raised.
        Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(self._client.timeout if timeout is None else timeout)
        try:
            if deregister:
                try:
                    self._client.deregister(self.service_id)
                except NotFound:
                    pass
                except Error as exc:
                    log.warning("service %s: deregister failed: %s", self.service_id, exc)
        finally:
            self._client.close()

    def __enter__(self) -> "Registration":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Registration({self.service_id!r}, lease_ms={self._lease_ms}, "
                f"health={self._health!r}, closed={self._closed})")
