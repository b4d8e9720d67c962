"""Client-side load balancing over registered services."""

from __future__ import annotations

import threading
from typing import Any, Dict, Iterable, List, Mapping, Optional

from ._client import ServerArg
from ._security import Security
from ._types import Event, Service

__all__ = ["LoadBalancer"]

_POLICIES = ("round_robin", "weighted")


class LoadBalancer:
    """Picks a service among those it knows, by round robin or smooth
    weighted round robin (nginx's algorithm: with weights 5, 1, 1 the picks
    go a a b a c a a).

    Which services are candidates: those with ``health == "healthy"``; only
    when none is healthy, the ``"degraded"`` and ``"unknown"`` ones;
    ``"unhealthy"`` services and services of weight 0 never. Round robin
    goes through the candidates in ``service_id`` order.

    Feed it once with :meth:`update` (e.g. ``lb.update(client.list_services(
    service_name="ingest"))``), event by event with :meth:`apply`, or keep it
    live with :meth:`watch` (a :class:`Watch` applying every event). Only
    services matching the filters given here (``service_name``,
    ``service_type``, ``labels``) are kept. Thread-safe.

    Args:
        policy: ``"round_robin"`` or ``"weighted"``.
        service_name, service_type, labels: filters.
        services: an initial set (same as calling :meth:`update`).
    """

    def __init__(self, policy: str = "round_robin", service_name: Optional[str] = None, *,
                 service_type: Optional[str] = None, labels: Optional[Mapping[str, str]] = None,
                 services: Optional[Iterable[Service]] = None) -> None:
        if policy not in _POLICIES:
            raise ValueError(f"policy must be one of {_POLICIES}, not {policy!r}")
        self.policy = policy
        self.service_name = service_name
        self.service_type = service_type
        self.labels = dict(labels or {})
        self._lock = threading.Lock()
        self._services: Dict[str, Service] = {}
        self._current: Dict[str, int] = {}   # smooth WRR state per service_id
        self._last: Optional[str] = None      # round robin position
        self._watch: Any = None
        if services is not None:
            self.update(services)

    def _wanted(self, s: Service) -> bool:
        if self.service_name is not None and s.service_name != self.service_name:
            return False
        if self.service_type is not None and s.service_type != self.service_type:
            return False
        return all(s.labels.get(k) == v for k, v in self.labels.items())

    # -- feeding -------------------------------------------------------------

    def update(self, services: Iterable[Service]) -> None:
        """Replace the whole set of services (the ones not matching the filters are ignored)."""
        with self._lock:
            self._services = {s.service_id: s for s in services if self._wanted(s)}
            self._current = {k: v for k, v in self._current.items() if k in self._services}

    def add(self, service: Service) -> None:
        """Add or replace one service."""
        with self._lock:
            if self._wanted(service):
                self._services[service.service_id] = service
            else:
                self._drop(service.service_id)

    def remove(self, service_id: str) -> None:
        """Forget one service."""
        with self._lock:
            self._drop(service_id)

    def _drop(self, service_id: str) -> None:
        self._services.pop(service_id, None)
        self._current.pop(service_id, None)

    def apply(self, event: Event) -> None:
        """Apply an :class:`Event`: a ``snapshot`` replaces the services (when
        it has them); ``registered``/``updated``/``health`` add or replace
        one; ``deregistered``/``expired`` remove it. Others are ignored."""
        if event.type == "snapshot":
            if event.services is not None:
                self.update(event.services)
            return
        svc = event.service
        if svc is None:
            return
        if event.type in ("registered", "updated", "health"):
            self.add(svc)
        elif event.type in ("deregistered", "expired"):
            with self._lock:
                cur = self._services.get(svc.service_id)
                # A rename publishes deregistered (old name) then registered:
                # only drop the record it names.
                if cur is not None and cur.service_name == svc.service_name:
                    self._drop(svc.service_id)

    def watch(self, server: ServerArg = None, *, security: Optional[Security] = None,
              **kw: Any) -> Any:
        """Keep the balancer live: start a :class:`Watch` on
        ``service/<service_name>/`` (or ``service/``) whose callback is
        :meth:`apply`. Returns the watch; :meth:`close` stops it.
        ``security``: CurveZMQ credentials (:class:`conveyor.Security`) for
        a secured daemon (default: those of a ``server`` client). Extra
        keyword arguments go to :class:`Watch`."""
        from ._watch import Watch
        prefix = f"service/{self.service_name}/" if self.service_name else "service/"
        w = Watch(prefix, callback=self.apply, server=server, security=security, **kw)
        if self._watch is not None:
            self._watch.close()
        self._watch = w
        return w

    def close(self) -> None:
        """Stop the watch started by :meth:`watch`, if any."""
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def __enter__(self) -> "LoadBalancer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- picking -------------------------------------------------------------

    @property
    def services(self) -> List[Service]:
        """Every service known, sorted by ``service_id``."""
        with self._lock:
            return [self._services[k] for k in sorted(self._services)]

    def candidates(self) -> List[Service]:
        """The services :meth:`pick` chooses from now, sorted by ``service_id``."""
        with self._lock:
            return self._candidates()

    def _candidates(self) -> List[Service]:
        usable = [s for s in self._services.values() if s.weight > 0]
        healthy = [s for s in usable if s.health == "healthy"]
        chosen = healthy or [s for s in usable if s.health in ("degraded", "unknown")]
        return sorted(chosen, key=lambda s: s.service_id)

    def pick(self) -> Optional[Service]:
        """The next service, or ``None`` when there is no candidate."""
        with self._lock:
            cands = self._candidates()
            if not cands:
                return None
            if self.policy == "round_robin":
                chosen = cands[0]
                if self._last is not None:
                    for s in cands:
                        if s.service_id > self._last:
                            chosen = s
                            break
                self._last = chosen.service_id
                return chosen
            # Smooth weighted round robin.
            total = 0
            best: Optional[Service] = None
            for s in cands:
                cw = self._current.get(s.service_id, 0) + s.weight
                self._current[s.service_id] = cw
                total += s.weight
                if best is None or cw > self._current[best.service_id]:
                    best = s
            assert best is not None
            self._current[best.service_id] -= total
            return best

    def __len__(self) -> int:
        return len(self._services)

    def __repr__(self) -> str:
        return f"LoadBalancer({self.policy!r}, service_name={self.service_name!r}, services={len(self)})"
