#!/usr/bin/python3
"""Writes the seed corpus of fuzz_request into tests/fuzz/corpus/.

One valid request per operation of the wire protocol (docs/protocol.md),
with the optional fields used, plus burst-mode files: 0xFF, then bodies
each prefixed with its 2-byte big-endian length, 0xFFFF standing for a
barrier (see fuzz_request.c).
Files are raw msgpack bytes, named after what they hold; the output is
deterministic, so re-running this script changes nothing.

Usage: /usr/bin/python3 tests/fuzz/make_corpus.py [output directory]
"""
import os
import struct
import sys

import msgpack

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "corpus")


def pack(body):
    return msgpack.packb(body, use_bin_type=True)


BARRIER = None     # in a burst: collect the replies so far before going on


def burst(*bodies):
    out = b"\xff"
    for body in bodies:
        if body is BARRIER:
            out += b"\xff\xff"
            continue
        data = pack(body)
        assert len(data) < 0xFFFF
        out += struct.pack(">H", len(data)) + data
    return out


SERVICE = {
    "op": "register", "rid": 1, "service_id": "svc-1", "service_name": "orders",
    "service_type": "source", "endpoint": "tcp://10.0.0.1:9000",
    "labels": {"zone": "eu-1", "tier": "gold"}, "group_id": "g1",
    "lease_ms": 5000, "weight": 100,
}
JOIN = {
    "op": "join_group", "rid": 20, "group_id": "g1", "topics": ["orders", "audit"],
    "member_id": "m-1", "service_name": "orders", "session_timeout_ms": 10000,
    "assignor": "sticky",
}

SINGLES = {
    "hello": {"op": "hello", "rid": 0, "v": 1},
    "hello_norid": {"op": "hello"},
    "register": SERVICE,
    "register_minimal": {"op": "register", "service_id": "svc-2",
                         "service_name": "billing", "service_type": "sink",
                         "endpoint": "ipc:///tmp/billing"},
    "heartbeat": {"op": "heartbeat", "rid": 2, "service_id": "svc-1",
                  "health": "degraded"},
    "deregister": {"op": "deregister", "rid": 3, "service_id": "svc-1"},
    "get_service": {"op": "get_service", "rid": 4, "service_id": "svc-1"},
    "list_services": {"op": "list_services", "rid": 5},
    "list_services_filters": {"op": "list_services", "rid": 6,
                              "service_name": "orders", "service_type": "source",
                              "group_id": "g1", "labels": {"zone": "eu-1"},
                              "healthy_only": True},
    "events_since": {"op": "events_since", "rid": 7, "since": 0,
                     "prefix": "service/", "limit": 10},
    "stats": {"op": "stats", "rid": "s"},
    "create_topic": {"op": "create_topic", "rid": 8, "topic": "orders",
                     "partitions": 6},
    "list_topics": {"op": "list_topics", "rid": 9},
    "join_group": JOIN,
    "join_group_new_member": {"op": "join_group", "rid": 21, "group_id": "g1",
                              "topics": ["orders"], "member_id": ""},
    "join_group_static": dict(JOIN, member_id="m-static", instance_id="host-a",
                              assignor="range"),
    "join_group_linked": {"op": "join_group", "rid": 22, "group_id": "g2",
                          "topics": ["orders"], "service_id": "svc-1",
                          "service_name": "orders", "assignor": "roundrobin"},
    "leave_group": {"op": "leave_group", "rid": 23, "group_id": "g1",
                    "member_id": "m-1"},
    "group_heartbeat": {"op": "group_heartbeat", "rid": 24, "group_id": "g1",
                        "member_id": "m-1", "generation": 1},
    "get_group": {"op": "get_group", "rid": 25, "group_id": "g1"},
    "list_groups": {"op": "list_groups", "rid": 26},
    "commit_offsets": {"op": "commit_offsets", "rid": 27, "group_id": "g1",
                       "member_id": "m-1", "generation": 1,
                       "offsets": [["orders", 0, 42], ["audit", 1, 7]]},
    "fetch_offsets": {"op": "fetch_offsets", "rid": 28, "group_id": "g1",
                      "partitions": [["orders", 0], ["audit", 3]]},
    "fetch_offsets_all": {"op": "fetch_offsets", "rid": 29, "group_id": "g1"},
    "delete_group": {"op": "delete_group", "rid": 30, "group_id": "g1"},
    "cluster_status": {"op": "cluster_status", "rid": 31},
    "cluster_add": {"op": "cluster_add", "rid": 32, "node_id": 4, "address": "127.0.0.1:7442"},
    "cluster_remove": {"op": "cluster_remove", "rid": 33, "node_id": 4},
    "register_client_id": {"op": "register", "rid": 34, "client_id": "app-1",
                           "service_id": "s-9", "service_name": "orders",
                           "service_type": "source", "endpoint": "tcp://10.0.0.9:1"},
}

BURSTS = {
    # Three joins at once: one rebalance, deferred replies, then reads.
    "burst_coalesced_joins": burst(
        {"op": "create_topic", "rid": 1, "topic": "t1", "partitions": 8},
        {"op": "join_group", "rid": 2, "group_id": "gb", "topics": ["t1"],
         "member_id": "a"},
        {"op": "join_group", "rid": 3, "group_id": "gb", "topics": ["t1"],
         "member_id": "b"},
        {"op": "join_group", "rid": 4, "group_id": "gb", "topics": ["t1", "t2"],
         "member_id": "c"},
        {"op": "get_group", "rid": 5, "group_id": "gb"},
        {"op": "group_heartbeat", "rid": 6, "group_id": "gb", "member_id": "a",
         "generation": 0}),
    # A static member replaced in the same burst; the old id is fenced.
    "burst_static_replace": burst(
        {"op": "join_group", "rid": 1, "group_id": "gs", "topics": ["t1"],
         "member_id": "old", "instance_id": "host-1"},
        {"op": "join_group", "rid": 2, "group_id": "gs", "topics": ["t1"],
         "member_id": "new", "instance_id": "host-1"},
        {"op": "group_heartbeat", "rid": 3, "group_id": "gs", "member_id": "old",
         "generation": 1},
        {"op": "commit_offsets", "rid": 4, "group_id": "gs", "member_id": "new",
         "generation": 1, "offsets": [["t1", 0, 1]]}),
    # A member linked to a service leaves when the service does.
    "burst_linked_member": burst(
        SERVICE,
        {"op": "join_group", "rid": 2, "group_id": "gl", "topics": ["t3"],
         "service_id": "svc-1", "member_id": "linked"},
        {"op": "heartbeat", "rid": 3, "service_id": "svc-1"},
        {"op": "deregister", "rid": 4, "service_id": "svc-1"},
        {"op": "get_group", "rid": 5, "group_id": "gl"},
        {"op": "events_since", "rid": 6, "since": 0}),
    # A whole group lifecycle with offsets and a topic growth.
    "burst_group_lifecycle": burst(
        {"op": "join_group", "rid": 1, "group_id": "gx", "topics": ["tx"],
         "member_id": "m"},
        {"op": "commit_offsets", "rid": 2, "group_id": "gx", "member_id": "m",
         "generation": 1, "offsets": [["tx", 0, 5]]},
        {"op": "create_topic", "rid": 3, "topic": "tx", "partitions": 9},
        {"op": "fetch_offsets", "rid": 4, "group_id": "gx"},
        {"op": "leave_group", "rid": 5, "group_id": "gx", "member_id": "m"},
        {"op": "delete_group", "rid": 6, "group_id": "gx"},
        {"op": "list_groups", "rid": 7}),
    # Steps with barriers: the range assignor on a fresh group, commits of
    # several partitions with the generation the joins made, fetches.
    "burst_range_offsets": burst(
        {"op": "create_topic", "rid": 1, "topic": "tr", "partitions": 5},
        {"op": "join_group", "rid": 2, "group_id": "gr", "topics": ["tr", "tr2"],
         "member_id": "r1", "assignor": "range"},
        {"op": "join_group", "rid": 3, "group_id": "gr", "topics": ["tr"],
         "member_id": "r2", "instance_id": "i-2"},
        BARRIER,
        {"op": "group_heartbeat", "rid": 4, "group_id": "gr", "member_id": "r1",
         "generation": 0},
        {"op": "commit_offsets", "rid": 5, "group_id": "gr", "member_id": "r1",
         "generation": 1,
         "offsets": [["tr", 4, 9], ["tr2", 3, 4], ["tr", 3, 1], ["tr2", 0, 3]]},
        BARRIER,
        {"op": "fetch_offsets", "rid": 6, "group_id": "gr"},
        {"op": "fetch_offsets", "rid": 7, "group_id": "gr",
         "partitions": [["tr", 0], ["tr", 4], ["nope", 0]]},
        {"op": "leave_group", "rid": 8, "group_id": "gr", "member_id": "r2"},
        BARRIER,
        {"op": "get_group", "rid": 9, "group_id": "gr"}),
    # Leases and sessions of 1 ms: the server's clock expires them.
    "burst_short_leases": burst(
        dict(SERVICE, service_id="brief", lease_ms=1),
        {"op": "join_group", "rid": 2, "group_id": "gt", "topics": ["tt"],
         "member_id": "short", "service_id": "brief", "session_timeout_ms": 1},
        BARRIER,
        {"op": "heartbeat", "rid": 3, "service_id": "brief", "health": "unhealthy"},
        {"op": "list_services", "rid": 4, "healthy_only": True},
        {"op": "events_since", "rid": 5, "since": 0, "prefix": "group/", "limit": 1},
        {"op": "stats", "rid": 6}),
    # Bad bodies mixed with good ones.
    "burst_mixed_errors": burst(
        {"op": "hello", "v": 2},
        {"op": "nope", "rid": [1, {"x": None}]},
        {"rid": 1},
        {"op": "register", "service_id": "bad id"},
        {"op": "stats"}),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, body in SINGLES.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(pack(body))
    for name, data in BURSTS.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
    print(f"wrote {len(SINGLES) + len(BURSTS)} files to {OUT}")


if __name__ == "__main__":
    main()
