"""Encoding, endpoints, request builders and reply parsers shared by the
blocking and the asyncio clients (no I/O here)."""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, Iterable, List, Mapping, Tuple, Union

import msgpack

from ._errors import ProtocolError
from ._types import (Event, EventsPage, Group, GroupHeartbeat, GroupList,
                     GroupSummary, Hello, JoinResult, Lease, Service,
                     ServiceList, Topic, TopicPartition, _assignment)

log = logging.getLogger("conveyor")

#: The daemon's default request endpoint.
DEFAULT_ENDPOINT = "tcp://127.0.0.1:7400"
#: Default time to wait for any reply, in seconds.
DEFAULT_TIMEOUT = 5.0

Offsets = Union[Mapping[TopicPartition, int], Iterable[Tuple[str, int, int]]]


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpack(data: bytes) -> Any:
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


def build_request(op: str, rid: Any, fields: Mapping[str, Any]) -> Dict[str, Any]:
    """The request map: ``op``, ``rid`` and every field that is not ``None``."""
    msg: Dict[str, Any] = {"op": op, "rid": rid}
    for k, v in fields.items():
        if v is not None:
            msg[k] = v
    return msg


_EP_RE = re.compile(r"^(?P<scheme>[a-z0-9+]+)://(?P<host>\[[^\]]*\]|[^:/]*)(?P<rest>:.*)?$")
_WILDCARDS = {"*", "0.0.0.0", "::", "[::]", "[*]", ""}


def resolve_events_endpoint(events_endpoint: str, request_endpoint: str) -> str:
    """Replace a wildcard host in the server's ``events_endpoint`` with the
    host of the request endpoint (``tcp://*:7401`` -> ``tcp://10.0.0.2:7401``)."""
    m = _EP_RE.match(events_endpoint or "")
    if not m or m.group("scheme") != "tcp" or m.group("host") not in _WILDCARDS:
        return events_endpoint
    r = _EP_RE.match(request_endpoint or "")
    host = r.group("host") if r and r.group("scheme") == "tcp" else "127.0.0.1"
    if host in _WILDCARDS:
        host = "127.0.0.1"
    return f"tcp://{host}{m.group('rest') or ''}"


def tp_list(partitions: Iterable[Any]) -> List[List[Any]]:
    """``[(topic, partition), ...]`` -> ``[[topic, partition], ...]``."""
    return [[str(tp[0]), int(tp[1])] for tp in partitions]


def offsets_list(offsets: Offsets) -> List[List[Any]]:
    """``{(topic, partition): offset}`` or ``[(topic, partition, offset), ...]``
    -> ``[[topic, partition, offset], ...]``."""
    if isinstance(offsets, Mapping):
        return [[str(tp[0]), int(tp[1]), int(off)] for tp, off in offsets.items()]
    out = []
    for item in offsets:
        t, p, o = item
        out.append([str(t), int(p), int(o)])
    return out


# ---------------------------------------------------------------------------
# Reply parsers


def _get(reply: Mapping[str, Any], key: str) -> Any:
    try:
        return reply[key]
    except KeyError:
        raise ProtocolError("PROTOCOL", f"reply lacks {key!r}: {reply!r}", reply) from None


def parse_hello(reply: Mapping[str, Any], request_endpoint: str) -> Hello:
    ev = _get(reply, "events_endpoint")
    return Hello(
        server=str(reply.get("server", "")),
        version=str(reply.get("version", "")),
        protocol=int(reply.get("protocol", 1)),
        node_id=str(reply.get("node_id", "")),
        events_endpoint=resolve_events_endpoint(ev, request_endpoint),
        seq=int(reply.get("seq", 0)),
        leader=reply.get("leader"),
        lease_ms=int(reply.get("lease_ms", 0)),
        session_timeout_ms=int(reply.get("session_timeout_ms", 0)),
        raw=dict(reply),
    )


def parse_service(reply: Mapping[str, Any]) -> Service:
    return Service.from_dict(_get(reply, "service"), reply.get("seq"))


def parse_lease(reply: Mapping[str, Any]) -> Lease:
    return Lease(lease_ms=int(_get(reply, "lease_ms")), health=str(reply.get("health", "healthy")))


def parse_services(reply: Mapping[str, Any]) -> ServiceList:
    return ServiceList((Service.from_dict(s) for s in _get(reply, "services")),
                       int(reply.get("seq", 0)))


def parse_events(reply: Mapping[str, Any]) -> EventsPage:
    events = [Event.from_wire(t, b) for t, b in _get(reply, "events")]
    return EventsPage(events=events, more=bool(reply.get("more", False)),
                      seq=int(reply.get("seq", 0)))


def parse_topic(reply: Mapping[str, Any]) -> Topic:
    return Topic(topic=str(_get(reply, "topic")), partitions=int(_get(reply, "partitions")))


def parse_topics(reply: Mapping[str, Any]) -> Dict[str, int]:
    return {str(k): int(v) for k, v in (_get(reply, "topics") or {}).items()}


def parse_join(reply: Mapping[str, Any]) -> JoinResult:
    return JoinResult(
        group_id=str(_get(reply, "group_id")),
        member_id=str(_get(reply, "member_id")),
        generation=int(_get(reply, "generation")),
        assignment=_assignment(reply.get("assignment")),
        members=tuple(reply.get("members") or ()),
        raw=dict(reply),
    )


def parse_group_heartbeat(reply: Mapping[str, Any]) -> GroupHeartbeat:
    a = reply.get("assignment")
    return GroupHeartbeat(generation=int(_get(reply, "generation")),
                          assignment=_assignment(a) if a is not None else None)


def parse_group(reply: Mapping[str, Any]) -> Group:
    return Group.from_dict(_get(reply, "group"), int(reply.get("seq", 0)))


def parse_groups(reply: Mapping[str, Any]) -> GroupList:
    return GroupList(
        (GroupSummary(group_id=str(g.get("group_id", "")),
                      generation=int(g.get("generation", 0)),
                      members=int(g.get("members", 0)))
         for g in _get(reply, "groups")),
        int(reply.get("seq", 0)))


def parse_offsets(reply: Mapping[str, Any]) -> Dict[TopicPartition, int]:
    return {(str(t), int(p)): int(o) for t, p, o in _get(reply, "offsets")}


def parse_stats(reply: Mapping[str, Any]) -> Dict[str, Any]:
    return {k: v for k, v in reply.items() if k not in ("ok", "rid")}
