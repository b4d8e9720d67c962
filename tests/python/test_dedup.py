"""Retried writes with --data-dir: a write that carries a client_id and a rid
is answered once; a retry of the same (client_id, rid) gets the same reply
again instead of applying twice, on the same run and after a kill -9 and
restart (the replies are in the raft log and its snapshots).

Every wait is bounded: the daemon fixtures wait for the ready line, calls
wait for their reply with a deadline.
"""
import os
import signal

from conftest import _pick_port


def _durable(conveyord, data_dir, raft_port, listen, publish):
    return conveyord(data_dir=str(data_dir), raft_bind="127.0.0.1:%d" % raft_port,
                     listen=listen, publish=publish, lease_ms=60000,
                     snapshot_threshold=16, snapshot_trailing=4)


def test_retried_writes_answered_once_across_restart(conveyord, tmp_path):
    raft_port = _pick_port()
    listen = "tcp://127.0.0.1:%d" % _pick_port()
    publish = "tcp://127.0.0.1:%d" % _pick_port()
    d = _durable(conveyord, tmp_path / "data", raft_port, listen, publish)
    c = d.client()

    c.ok("register", service_id="svc-1", service_name="orders", service_type="source",
         endpoint="tcp://x:1")
    # A join without member_id makes a new member each time it applies: its
    # retry must not.
    first = c.ok("join_group", group_id="g", topics=["t"], client_id="app-1", rid=7)
    again = c.ok("join_group", group_id="g", topics=["t"], client_id="app-1", rid=7)
    assert again == first
    group = c.ok("get_group", group_id="g")["group"]
    assert group["generation"] == first["generation"]
    assert len(group["members"]) == 1
    # Another rid of the same client is a new request.
    other = c.ok("join_group", group_id="g", topics=["t"], client_id="app-1", rid=8)
    assert other["member_id"] != first["member_id"]

    # deregister: applied once, the retry answered OK as the first time.
    c.ok("deregister", service_id="svc-1", client_id="app-1", rid=9)
    assert c.ok("deregister", service_id="svc-1", client_id="app-1", rid=9)["rid"] == 9
    # Without client_id there is nothing to recognise: NOT_FOUND.
    c.err("deregister", "NOT_FOUND", service_id="svc-1", rid=10)
    # An error is remembered as well: the retry gets the same error.
    e1 = c.err("create_topic", "BAD_REQUEST", topic="t2", partitions=0, client_id="app-1",
               rid=11)
    assert c.call("create_topic", topic="t2", partitions=0, client_id="app-1", rid=11) == e1
    # A bad client_id is BAD_REQUEST.
    c.err("deregister", "BAD_REQUEST", service_id="x", client_id="no spaces", rid=12)
    # Enough entries for snapshots (threshold 16).
    for i in range(40):
        c.ok("register", service_id="bulk-%d" % i, service_name="bulk", service_type="sink",
             endpoint="tcp://x:2", client_id="app-2", rid=100 + i)

    # kill -9 and restart on the same data dir: the committed replies are back.
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait(10)
    conveyord.started.remove(d)
    d2 = _durable(conveyord, tmp_path / "data", raft_port, listen, publish)
    c2 = d2.client()
    assert c2.call("join_group", group_id="g", topics=["t"], client_id="app-1",
                   rid=7) == first
    assert c2.ok("deregister", service_id="svc-1", client_id="app-1", rid=9)["ok"] is True
    last = c2.call("register", service_id="bulk-39", service_name="bulk",
                   service_type="sink", endpoint="tcp://x:2", client_id="app-2", rid=139)
    assert last["ok"] is True and last["rid"] == 139
    # The group did not grow from the retries: the two members of before.
    assert len(c2.ok("get_group", group_id="g")["group"]["members"]) == 2
    assert os.listdir(tmp_path / "data")
