"""A consumer-group member that follows rebalances from a background thread."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, List, Optional, Sequence, Tuple

import zmq

from ._client import Client, ServerArg, _Link, client_for
from ._endpoints import EndpointsArg, NodeTracker
from ._errors import (Error, IllegalGeneration, NotFound, UnknownMember)
from ._security import Security
from ._types import Assignment, JoinResult, TopicPartition, _assignment
from ._wire import Offsets, log, unpack

__all__ = ["GroupMember"]

Callback = Callable[[List[TopicPartition]], Any]


class GroupMember:
    """Joins a consumer group and keeps up with its rebalances.

    The constructor subscribes to the group's events (``group/<id>/``), then
    joins synchronously (errors are raised there) and starts a daemon thread
    that:

    * calls ``on_assigned(partitions)`` once after the join with the whole
      assignment (even when it is empty);
    * at each new generation calls ``on_revoked(lost)`` then
      ``on_assigned(gained)`` with the *differences* between the previous and
      the new assignment (each only when non-empty, revoked first); new
      generations are learnt from ``assignment`` events, and from the
      group heartbeat reply as a backstop;
    * heartbeats every third of the session timeout;
    * when the member is lost (``UnknownMember``, its session expired, or an
      ``expired``/``left`` event naming it) calls ``on_revoked`` with the
      whole assignment and joins again (a static member rejoins with the same
      ``instance_id``; one that was *fenced* by another process using its
      ``instance_id`` does not: :attr:`fenced` turns true);
    * on :meth:`close` calls ``on_revoked`` with the whole assignment (so
      final offsets can still be committed), then leaves the group;
    * in a cluster, follows the leader: after a failover its heartbeats go
      to the new leader (which renews every session as it takes over), it
      takes that node's events and catches up with a heartbeat; a failover
      logs one line.

    Callbacks receive a sorted list of ``(topic, partition)`` tuples and run
    on the member's thread, one at a time; when they run, :attr:`generation`
    and :attr:`assignment` already show the new generation. An exception in
    a callback is logged on the ``"conveyor"`` logger and otherwise ignored.

    Args:
        group_id: the group to join.
        topics: the topics to consume (auto-created by the server if unknown).
        on_assigned, on_revoked: the callbacks (optional).
        server: the daemon's request endpoint (``endpoint`` is accepted as an
            alias; a cluster's: a list, or a comma-separated string), or a
            :class:`Client` whose endpoints, timeout and security are reused.
        member_id: ask for this member id (default: the server makes one).
        instance_id: static membership: a join with an ``instance_id`` held
            by a current member replaces it, keeping its partitions.
        service_name, service_id: tie the member to a registered service
            (with ``service_id`` it lives as long as the service's lease).
        session_timeout_ms: the session (default: the server's).
        assignor: ``"sticky"`` (default), ``"range"`` or ``"roundrobin"``.
        timeout: reply timeout in seconds.
        security: CurveZMQ credentials (:class:`conveyor.Security`) for a
            secured daemon, used on the request and the event socket
            (default: those of the ``server`` client, if any).
    """

    def __init__(self, group_id: str, topics: Sequence[str],
                 on_assigned: Optional[Callback] = None, on_revoked: Optional[Callback] = None,
                 *, server: ServerArg = None, endpoint: Optional[EndpointsArg] = None,
                 member_id: Optional[str] = None, instance_id: Optional[str] = None,
                 service_name: Optional[str] = None, service_id: Optional[str] = None,
                 session_timeout_ms: Optional[int] = None, assignor: Optional[str] = None,
                 timeout: Optional[float] = None,
                 security: Optional[Security] = None) -> None:
        if isinstance(topics, str):
            topics = [topics]
        if server is not None and endpoint is not None:
            raise TypeError("give server= or endpoint=, not both")
        self.group_id = group_id
        self.topics: Tuple[str, ...] = tuple(topics)
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self._wanted_member_id = member_id
        self.instance_id = instance_id
        self._join_args = dict(service_name=service_name, service_id=service_id,
                               instance_id=instance_id, session_timeout_ms=session_timeout_ms,
                               assignor=assignor)
        self._client: Client = client_for(server if server is not None else endpoint, timeout,
                                          security)
        self._state = threading.RLock()
        self._member_id: Optional[str] = None
        self._generation = 0
        self._assignment: Assignment = ()
        self._members: Tuple[str, ...] = ()
        self._members_generation = 0     # the generation _members is of
        self._session_ms = session_timeout_ms or 0
        self._stop = threading.Event()
        self._beat_now = threading.Event()
        self._leave_on_close = True
        self._closed = False
        self._fenced = False
        self._lost = False
        self._last_group_seq: Optional[int] = None
        self._last_sys_heartbeat: Optional[float] = None
        self._pending_initial: Optional[List[TopicPartition]] = None
        #: Number of successful joins (1 + rejoins).
        self.joins = 0
        self._sub_link: Optional[_Link] = None
        self._sub_node: Optional[str] = None
        try:
            # In a cluster: the leader's events (joins and heartbeats go there).
            hello = self._client._hello_leader()
            if not self._session_ms:
                self._session_ms = hello.session_timeout_ms or 30000
            self._subscribe(hello.events_endpoint)
            self._join()
        except BaseException:
            self._close_sub()
            self._client.close()
            raise
        self._node = NodeTracker(f"group {group_id}", self._client)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name=f"conveyor-member-{group_id}")
        self._thread.start()

    @property
    def _sub(self) -> Optional[zmq.Socket]:
        return self._sub_link.sock if self._sub_link is not None else None

    def _subscribe(self, events_endpoint: str) -> None:
        """Subscribe to the group's events on the node the client uses (a
        fresh socket; the old one is closed)."""
        link = _Link(self._client._socket(zmq.SUB), events_endpoint, False)
        link.sock.setsockopt(zmq.SUBSCRIBE, f"group/{self.group_id}/".encode())
        # sys/heartbeat tells when the subscription is live (first one)
        # or live again after a silence: then catch up at once.
        link.sock.setsockopt(zmq.SUBSCRIBE, b"sys/heartbeat")
        self._close_sub()
        self._sub_link = link
        self._sub_node = self._client.endpoint
        self._last_sys_heartbeat = None

    def _close_sub(self) -> None:
        if self._sub_link is not None:
            self._sub_link.close()
            self._sub_link = None

    def _follow_node(self) -> None:
        """The client moved to another node (failover): take that node's
        events, and ask for the group's state at once (events published
        while no subscription was live are not replayed)."""
        if self._client.endpoint == self._sub_node:
            return
        try:
            events = self._client.events_endpoint
        except Error as exc:
            log.debug("group %s: hello failed: %s", self.group_id, exc)
            return
        log.debug("group %s: following the events of %s", self.group_id, self._client.endpoint)
        self._subscribe(events)
        self._beat_now.set()

    # -- properties ----------------------------------------------------------

    @property
    def member_id(self) -> Optional[str]:
        """This member's id (changes when it has to join again)."""
        return self._member_id

    @property
    def generation(self) -> int:
        """The group generation this member's assignment belongs to."""
        return self._generation

    @property
    def assignment(self) -> Assignment:
        """This member's partitions: a sorted tuple of ``(topic, partition)``."""
        return self._assignment

    @property
    def members(self) -> Tuple[str, ...]:
        """The group's member ids, as of the last join or assignment event."""
        return self._members

    @property
    def session_timeout_ms(self) -> int:
        return self._session_ms

    @property
    def fenced(self) -> bool:
        """True once another member took over this one's ``instance_id``; the
        member then stays out of the group."""
        return self._fenced

    @property
    def closed(self) -> bool:
        return self._closed

    # -- joining -------------------------------------------------------------

    def _join(self) -> None:
        """Join (constructor and rejoins); queues the initial on_assigned."""
        mid = self._wanted_member_id
        res: JoinResult = self._client.join_group(self.group_id, self.topics,
                                                  member_id=mid, **self._join_args)
        with self._state:
            self._member_id = res.member_id
            self._generation = res.generation
            self._assignment = res.assignment
            self._members = res.members
            self._members_generation = res.generation
            self._lost = False
            self._pending_initial = list(res.assignment)
            self.joins += 1
        # The exact (clamped) session timeout, for the heartbeat period.
        try:
            g = self._client.get_group(self.group_id)
            m = g.member(res.member_id)
            if m is not None and m.session_timeout_ms > 0:
                self._session_ms = m.session_timeout_ms
        except Error as exc:
            log.debug("get_group after join failed: %s", exc)

    def _apply(self, generation: int, assignment: Assignment,
               members: Optional[Sequence[str]] = None) -> None:
        with self._state:
            # A heartbeat reply may bring a generation before its assignment
            # event: the event then still brings that generation's members.
            if members is not None and generation > self._members_generation:
                self._members = tuple(sorted(members))
                self._members_generation = generation
            if generation <= self._generation:
                return
            old = set(self._assignment)
            self._generation = generation
            self._assignment = assignment
        new = set(assignment)
        revoked = sorted(old - new)
        gained = sorted(new - old)
        log.debug("member %s: generation %d, revoked %s, assigned %s",
                  self._member_id, generation, revoked, gained)
        if revoked:
            self._call(self.on_revoked, revoked)
        if gained:
            self._call(self.on_assigned, gained)

    def _call(self, fn: Optional[Callback], partitions: List[TopicPartition]) -> None:
        if fn is None:
            return
        try:
            fn(partitions)
        except Exception:  # noqa: BLE001 - a callback must not kill the thread
            log.exception("group %s: callback %r raised", self.group_id, fn)

    def _lose(self, why: str, fenced: bool = False) -> None:
        """The member is gone from the group: revoke everything, then rejoin
        (or stay out if fenced)."""
        if self._lost:
            return
        with self._state:
            revoked = list(self._assignment)
            self._assignment = ()
            self._lost = True
        log.warning("group %s: member %s lost (%s)", self.group_id, self._member_id, why)
        if revoked:
            self._call(self.on_revoked, revoked)
        if not fenced and self.instance_id is not None:
            # UNKNOWN_MEMBER of a static member: expired, or replaced by
            # another process with the same instance_id?
            try:
                g = self._client.get_group(self.group_id)
                fenced = any(m.instance_id == self.instance_id and m.member_id != self._member_id
                             for m in g.members)
            except Error:
                pass
        if fenced:
            self._fenced = True
            log.error("group %s: member %s fenced: instance_id %r is used by another member; "
                      "not rejoining", self.group_id, self._member_id, self.instance_id)

    # -- the thread ----------------------------------------------------------

    def _heartbeat(self) -> None:
        mid, gen = self._member_id, self._generation
        if mid is None:
            return
        wait = min(self._client.timeout, max(self._session_ms / 2000.0, 0.1))
        try:
            reply = self._client.call("group_heartbeat", timeout=wait, group_id=self.group_id,
                                      member_id=mid, generation=gen)
        except (UnknownMember, NotFound) as exc:
            self._lose(f"heartbeat: {exc}")
            return
        a = reply.get("assignment")
        g = int(reply.get("generation", gen))
        if a is not None and g != gen:
            self._apply(g, _assignment(a))

    def _on_sys_heartbeat(self) -> None:
        now = time.monotonic()
        last = self._last_sys_heartbeat
        if last is None or now - last > 2.5:
            # Events published before the subscription was live (or while
            # it was cut) may be lost: ask the server now.
            self._beat_now.set()
        self._last_sys_heartbeat = now

    def _on_event(self, topic: str, body: Any) -> None:
        if not isinstance(body, dict):
            return
        seq, prev = body.get("seq"), body.get("prev")
        if (isinstance(seq, int) and self._last_group_seq is not None
                and seq <= self._last_group_seq and self._client._eps.multi):
            return   # seen already (the same event, from another node)
        if (self._last_group_seq is not None and isinstance(prev, int)
                and prev != self._last_group_seq and not self._lost):
            log.info("group %s: missed events (prev %s, last seen %s): asking the server",
                     self.group_id, prev, self._last_group_seq)
            self._beat_now.set()
        if isinstance(seq, int):
            self._last_group_seq = seq
        kind = body.get("type")
        if self._lost:
            return
        if kind == "assignment":
            gen = body.get("generation")
            if not isinstance(gen, int) or gen < self._generation:
                return
            assignments = body.get("assignments") or {}
            if self._member_id in assignments:
                self._apply(gen, _assignment(assignments[self._member_id]), list(assignments))
            else:
                self._lose(f"not in the assignment of generation {gen}")
        elif kind in ("fenced", "expired", "left") and body.get("member_id") == self._member_id:
            self._lose(f"{kind} event", fenced=(kind == "fenced"))

    def _run(self) -> None:
        backoff = 0.1
        next_beat = time.monotonic() + self._session_ms / 3000.0
        next_join = 0.0
        try:
            while True:
                pending, self._pending_initial = self._pending_initial, None
                if pending is not None:
                    self._call(self.on_assigned, pending)
                if self._stop.is_set():
                    break
                now = time.monotonic()
                if self._lost and not self._fenced:
                    if now >= next_join:
                        try:
                            self._join()
                            backoff = 0.1
                            next_beat = time.monotonic() + self._session_ms / 3000.0
                            self._node.succeeded()
                            self._follow_node()
                            continue
                        except UnknownMember as exc:
                            if self._wanted_member_id is not None:
                                # A fenced member id cannot come back: let
                                # the server make a new one.
                                self._wanted_member_id = None
                                next_join = now
                            else:
                                self._node.failed(exc, "rejoin", self._session_ms / 1000.0)
                                next_join = now + backoff
                                backoff = min(backoff * 2, 2.0)
                        except Error as exc:
                            self._node.failed(exc, "rejoin", self._session_ms / 1000.0)
                            next_join = now + backoff
                            backoff = min(backoff * 2, 2.0)
                        except Exception:  # noqa: BLE001
                            log.exception("group %s: rejoin failed", self.group_id)
                            next_join = now + backoff
                            backoff = min(backoff * 2, 2.0)
                elif not self._lost and (now >= next_beat or self._beat_now.is_set()):
                    self._beat_now.clear()
                    interval = max(self._session_ms / 3000.0, 0.01)
                    try:
                        self._heartbeat()
                        self._node.succeeded()
                        self._follow_node()
                    except Error as exc:
                        # A failover shows as a few failed heartbeats: one
                        # line (on success elsewhere) unless it lasts a session.
                        self._node.failed(exc, "heartbeat", self._session_ms / 1000.0)
                        interval = min(interval, 0.1)
                    except Exception:  # noqa: BLE001
                        log.exception("group %s: heartbeat failed", self.group_id)
                    next_beat = time.monotonic() + interval
                    continue
                now = time.monotonic()
                if not self._lost:
                    wait = next_beat - now
                elif not self._fenced:
                    wait = next_join - now
                else:
                    wait = 0.05
                wait = min(max(wait, 0.0), 0.05)
                sub = self._sub
                assert sub is not None
                if sub.poll(int(wait * 1000)):
                    for _ in range(1000):   # then look at the clock again
                        try:
                            frames = sub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if len(frames) != 2:
                            continue
                        if frames[0] == b"sys/heartbeat":
                            self._on_sys_heartbeat()
                            continue
                        try:
                            self._on_event(frames[0].decode("utf-8", "replace"), unpack(frames[1]))
                        except Exception:  # noqa: BLE001
                            log.exception("group %s: bad event", self.group_id)
        finally:
            self._finish()

    def _finish(self) -> None:
        """On the member thread, at close: revoke, leave, release sockets."""
        try:
            if self._leave_on_close and not self._lost and self._member_id is not None:
                with self._state:
                    revoked = list(self._assignment)
                if revoked:
                    self._call(self.on_revoked, revoked)
                with self._state:
                    self._assignment = ()
                try:
                    self._client.leave_group(self.group_id, self._member_id)
                except (UnknownMember, NotFound):
                    pass
                except Error as exc:
                    log.warning("group %s: leave failed: %s", self.group_id, exc)
        except Exception:  # noqa: BLE001
            log.exception("group %s: close failed", self.group_id)
        finally:
            self._close_sub()
            self._client.close()

    # -- public actions ------------------------------------------------------

    def commit(self, offsets: Offsets) -> None:
        """Commit offsets with this member's current generation.

        ``offsets``: ``{(topic, partition): offset}`` or
        ``[(topic, partition, offset), ...]``. Raises
        :class:`IllegalGeneration` (a rebalance is under way: the new
        assignment comes through the callbacks; commit again after),
        :class:`NotOwner` (a partition is not this member's) or
        :class:`UnknownMember` (the member is being re-joined)."""
        with self._state:
            mid, gen = self._member_id, self._generation
        if mid is None or self._lost:
            raise UnknownMember("UNKNOWN_MEMBER", "the member is not in the group (rejoining)")
        try:
            self._client.commit_offsets(self.group_id, mid, gen, offsets)
        except (IllegalGeneration, UnknownMember):
            self._beat_now.set()   # catch up with the group now
            raise

    def close(self, leave: bool = True, timeout: Optional[float] = None) -> None:
        """Stop the member. With ``leave=True`` (default) it calls
        ``on_revoked`` with its whole assignment, then leaves the group (a
        rebalance follows at once). ``leave=False`` just stops, as a crash
        would: the others get its partitions once its session times out.
        Waits at most ``timeout`` seconds (default: the client's timeout plus
        one). Idempotent; may be called from a callback."""
        if self._closed:
            return
        self._closed = True
        self._leave_on_close = leave
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(self._client.timeout + 1.0 if timeout is None else timeout)
            if self._thread.is_alive():
                log.warning("group %s: member thread still busy after close()", self.group_id)

    def __enter__(self) -> "GroupMember":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"GroupMember({self.group_id!r}, member_id={self._member_id!r}, "
                f"generation={self._generation}, assignment={list(self._assignment)!r})")
