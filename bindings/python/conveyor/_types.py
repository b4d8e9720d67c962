"""Records returned by the client: plain, frozen dataclasses.

Every record keeps the server's map it was made from in ``raw`` (fields added
by later protocol versions are there). Partitions are ``(topic, partition)``
tuples; assignments are tuples of them, sorted by topic then partition.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = [
    "TopicPartition", "Assignment", "Service", "ServiceList", "Hello", "Lease",
    "Topic", "Member", "Group", "GroupSummary", "GroupList", "JoinResult",
    "GroupHeartbeat", "Event", "EventsPage", "ClusterServer", "ClusterStatus", "root_of",
]

#: One partition: ``(topic, partition)``.
TopicPartition = Tuple[str, int]
#: An assignment: a sorted tuple of partitions.
Assignment = Tuple[TopicPartition, ...]


def _assignment(value: Any) -> Assignment:
    """``[[topic, partition], ...]`` -> sorted tuple of ``(topic, partition)``."""
    if not value:
        return ()
    return tuple(sorted((str(tp[0]), int(tp[1])) for tp in value))


def _int(value: Any, default: int = 0) -> int:
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else default


@dataclass(frozen=True)
class Service:
    """A registered service, as the server returns and publishes it.

    ``health`` is one of ``"healthy"``, ``"degraded"``, ``"unhealthy"``,
    ``"unknown"``; ``*_at`` are Unix milliseconds of the server's clock;
    ``revision`` grows whenever a field other than ``last_heartbeat_at``
    changes. ``seq`` is only set by :meth:`Client.get_service`: the event
    number the reply reflects.
    """

    service_id: str
    service_name: str
    service_type: str
    endpoint: str
    labels: Dict[str, str] = field(default_factory=dict)
    weight: int = 100
    group_id: Optional[str] = None
    health: str = "unknown"
    registered_at: int = 0
    last_heartbeat_at: int = 0
    lease_ms: int = 0
    revision: int = 0
    seq: Optional[int] = field(default=None, compare=False)
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], seq: Optional[int] = None) -> "Service":
        return cls(
            service_id=str(d.get("service_id", "")),
            service_name=str(d.get("service_name", "")),
            service_type=str(d.get("service_type", "")),
            endpoint=str(d.get("endpoint", "")),
            labels=dict(d.get("labels") or {}),
            weight=_int(d.get("weight"), 100),
            group_id=d.get("group_id"),
            health=str(d.get("health", "unknown")),
            registered_at=_int(d.get("registered_at")),
            last_heartbeat_at=_int(d.get("last_heartbeat_at")),
            lease_ms=_int(d.get("lease_ms")),
            revision=_int(d.get("revision")),
            seq=seq,
            raw=dict(d),
        )


class ServiceList(List[Service]):
    """A list of :class:`Service` (sorted by ``service_id``) with the ``seq`` it reflects."""

    seq: int

    def __init__(self, services: Iterable[Service] = (), seq: int = 0) -> None:
        super().__init__(services)
        self.seq = seq

    def __repr__(self) -> str:
        return f"ServiceList({list.__repr__(self)}, seq={self.seq})"


@dataclass(frozen=True)
class Hello:
    """The ``hello`` reply. ``events_endpoint`` is already resolved: a
    wildcard host (``*``, ``0.0.0.0``, ``::``) is replaced with the host of
    the request endpoint the client uses (``raw`` has the server's text)."""

    server: str
    version: str
    protocol: int
    node_id: str
    events_endpoint: str
    seq: int
    leader: Optional[str]
    lease_ms: int
    session_timeout_ms: int
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class Lease:
    """The ``heartbeat`` reply: the granted ``lease_ms`` and the service's ``health``."""

    lease_ms: int
    health: str


@dataclass(frozen=True)
class Topic:
    """A topic and its partition count."""

    topic: str
    partitions: int


@dataclass(frozen=True)
class Member:
    """One member of a group, as :meth:`Client.get_group` returns it."""

    member_id: str
    service_name: Optional[str] = None
    service_id: Optional[str] = None
    instance_id: Optional[str] = None
    topics: Tuple[str, ...] = ()
    assignment: Assignment = ()
    joined_at: int = 0
    last_heartbeat_at: int = 0
    session_timeout_ms: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Member":
        return cls(
            member_id=str(d.get("member_id", "")),
            service_name=d.get("service_name"),
            service_id=d.get("service_id"),
            instance_id=d.get("instance_id"),
            topics=tuple(d.get("topics") or ()),
            assignment=_assignment(d.get("assignment")),
            joined_at=_int(d.get("joined_at")),
            last_heartbeat_at=_int(d.get("last_heartbeat_at")),
            session_timeout_ms=_int(d.get("session_timeout_ms")),
            raw=dict(d),
        )


@dataclass(frozen=True)
class Group:
    """A consumer group, as :meth:`Client.get_group` returns it.

    ``topics`` maps each subscribed topic to its partition count; ``members``
    is a list of :class:`Member`; ``seq`` is the event number the reply
    reflects.
    """

    group_id: str
    generation: int
    assignor: str
    topics: Dict[str, int] = field(default_factory=dict)
    members: List[Member] = field(default_factory=list)
    seq: int = 0
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], seq: int = 0) -> "Group":
        return cls(
            group_id=str(d.get("group_id", "")),
            generation=_int(d.get("generation")),
            assignor=str(d.get("assignor", "")),
            topics=dict(d.get("topics") or {}),
            members=[Member.from_dict(m) for m in d.get("members") or ()],
            seq=seq,
            raw=dict(d),
        )

    def member(self, member_id: str) -> Optional[Member]:
        """The member with that id, or ``None``."""
        for m in self.members:
            if m.member_id == member_id:
                return m
        return None

    @property
    def assignments(self) -> Dict[str, Assignment]:
        """``{member_id: assignment}``."""
        return {m.member_id: m.assignment for m in self.members}


@dataclass(frozen=True)
class GroupSummary:
    """One entry of :meth:`Client.list_groups`: ``members`` is a count."""

    group_id: str
    generation: int
    members: int


class GroupList(List[GroupSummary]):
    """A list of :class:`GroupSummary` with the ``seq`` it reflects."""

    seq: int

    def __init__(self, groups: Iterable[GroupSummary] = (), seq: int = 0) -> None:
        super().__init__(groups)
        self.seq = seq

    def __repr__(self) -> str:
        return f"GroupList({list.__repr__(self)}, seq={self.seq})"


@dataclass(frozen=True)
class JoinResult:
    """The ``join_group`` reply: this member's id, the generation and its
    assignment, and the sorted ids of all members."""

    group_id: str
    member_id: str
    generation: int
    assignment: Assignment
    members: Tuple[str, ...]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class GroupHeartbeat:
    """The ``group_heartbeat`` reply: the group's current ``generation``, and
    the member's ``assignment`` when the generation sent was stale (else ``None``)."""

    generation: int
    assignment: Optional[Assignment] = None

    @property
    def stale(self) -> bool:
        """True when the server sent a new assignment (the generation moved)."""
        return self.assignment is not None


def root_of(topic: str) -> str:
    """The root of an event topic: ``service/<name>``, ``group/<id>``, ``topic/<name>``."""
    parts = topic.split("/", 2)
    return "/".join(parts[:2])


@dataclass(frozen=True)
class Event:
    """An event, from the subscription, from ``events_since``, or a snapshot.

    For every published event: ``topic`` (e.g. ``service/ingest/registered``),
    ``type`` (``registered``, ``joined``, ``assignment``, ...), ``seq``,
    ``prev``, ``at`` and the whole ``body``; ``service`` is the
    :class:`Service` record for ``service/...`` events.

    A :class:`Watch` also yields snapshot items: ``type == "snapshot"``,
    ``topic == ""``, ``seq`` the event number the snapshot reflects, and
    ``services`` / ``groups`` / ``topics`` holding the state under the watched
    prefix (``None`` for the parts the prefix does not cover).
    """

    topic: str
    type: str
    seq: int
    prev: Optional[int] = None
    at: Optional[int] = None
    body: Dict[str, Any] = field(default_factory=dict, repr=False)
    service: Optional[Service] = None
    services: Optional[List[Service]] = None
    groups: Optional[List[Group]] = None
    topics: Optional[Dict[str, int]] = None

    @classmethod
    def from_wire(cls, topic: str, body: Mapping[str, Any]) -> "Event":
        svc = body.get("service")
        return cls(
            topic=topic,
            type=str(body.get("type", "")),
            seq=_int(body.get("seq")),
            prev=body.get("prev"),
            at=body.get("at"),
            body=dict(body),
            service=Service.from_dict(svc) if isinstance(svc, Mapping) else None,
        )

    @property
    def is_snapshot(self) -> bool:
        return self.type == "snapshot"

    @property
    def root(self) -> str:
        """``service/<name>``, ``group/<id>`` or ``topic/<name>`` (``""`` for a snapshot)."""
        return root_of(self.topic) if self.topic else ""

    @property
    def group_id(self) -> Optional[str]:
        """The group of a ``group/...`` event."""
        if self.topic.startswith("group/"):
            return self.topic.split("/", 2)[1]
        return None

    @property
    def member_id(self) -> Optional[str]:
        """The member of a ``membership`` event."""
        return self.body.get("member_id")

    @property
    def generation(self) -> Optional[int]:
        """The generation of a ``membership`` or ``assignment`` event."""
        return self.body.get("generation")

    @property
    def assignments(self) -> Dict[str, Assignment]:
        """``{member_id: assignment}`` of an ``assignment`` event (else empty)."""
        a = self.body.get("assignments") or {}
        return {m: _assignment(v) for m, v in a.items()}

    @property
    def partitions(self) -> Optional[int]:
        """The partition count of a ``topic/<name>/changed`` event."""
        return self.body.get("partitions")


@dataclass(frozen=True)
class EventsPage:
    """The ``events_since`` reply: ``events`` oldest first, ``more`` when the
    limit cut the list, ``seq`` the latest event number."""

    events: List[Event]
    more: bool
    seq: int


@dataclass(frozen=True)
class ClusterServer:
    """One node of the cluster, as ``cluster_status`` lists it: its number
    ``id``, raft ``address`` (``HOST:PORT``), ``role`` (``"voter"``,
    ``"standby"``, ``"spare"``), and the ``request_endpoint`` and
    ``events_endpoint`` it announced (``None`` for a node that never led)."""

    id: int
    address: str
    role: str
    request_endpoint: Optional[str]
    events_endpoint: Optional[str]


@dataclass(frozen=True)
class ClusterStatus:
    """The ``cluster_status`` reply: the view of the node that answered.

    ``node_id`` is that node's number, ``state`` its raft state
    (``"leader"``, ``"follower"``, ``"candidate"``, ``"unavailable"``),
    ``leading`` whether it serves as leader, ``leader_id`` (0: none known)
    and ``leader`` (request endpoint or ``None``) the leader it knows,
    ``term``, ``commit_index``, ``last_applied`` raft's counters, and
    ``servers`` the configuration (:class:`ClusterServer`, by ``id``)."""

    node_id: int
    state: str
    leading: bool
    leader_id: int
    leader: Optional[str]
    term: int
    commit_index: int
    last_applied: int
    servers: Tuple[ClusterServer, ...]
    raw: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def server(self, node_id: int) -> Optional[ClusterServer]:
        """The server numbered ``node_id``, or ``None``."""
        for s in self.servers:
            if s.id == node_id:
                return s
        return None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ClusterStatus":
        servers = tuple(sorted(
            (ClusterServer(id=_int(s.get("id")), address=str(s.get("address") or ""),
                           role=str(s.get("role") or ""),
                           request_endpoint=s.get("request_endpoint"),
                           events_endpoint=s.get("events_endpoint"))
             for s in (d.get("servers") or ()) if isinstance(s, Mapping)),
            key=lambda s: s.id))
        return cls(node_id=_int(d.get("node_id")), state=str(d.get("state") or ""),
                   leading=bool(d.get("leading", False)), leader_id=_int(d.get("leader_id")),
                   leader=d.get("leader"), term=_int(d.get("term")),
                   commit_index=_int(d.get("commit_index")),
                   last_applied=_int(d.get("last_applied")), servers=servers,
                   raw={k: v for k, v in d.items() if k not in ("ok", "rid")})
