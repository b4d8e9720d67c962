"""conveyor.aio: AsyncClient and AsyncWatch."""

from __future__ import annotations

import asyncio
import time

import pytest

import conveyor
from conveyor.aio import AsyncClient, AsyncWatch

from conveyor_testlib import free_port


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_async_client_operations(daemon, uid):
    async def main():
        async with AsyncClient(daemon.requests) as c:
            h = await c.hello()
            assert h.events_endpoint == daemon.events
            assert await c.events_endpoint() == daemon.events
            s = await c.register(uid, uid, "source", "tcp://x:1", labels={"a": "b"}, lease_ms=60000)
            assert s.labels == {"a": "b"}
            assert (await c.heartbeat(uid, health="degraded")).health == "degraded"
            assert (await c.get_service(uid)).health == "degraded"
            assert [x.service_id for x in await c.list_services(service_name=uid)] == [uid]
            page = await c.events_since(h.seq, prefix=f"service/{uid}/")
            assert [e.type for e in page.events] == ["registered", "health"]
            assert "requests" in await c.stats()
            assert (await c.create_topic(uid, 2)).partitions == 2
            assert (await c.list_topics())[uid] == 2
            j = await c.join_group(uid, [uid], session_timeout_ms=5000)
            assert j.generation == 1 and len(j.assignment) == 2
            assert (await c.group_heartbeat(uid, j.member_id, 1)).assignment is None
            assert (await c.get_group(uid)).members[0].member_id == j.member_id
            assert uid in [g.group_id for g in await c.list_groups()]
            await c.commit_offsets(uid, j.member_id, 1, {(uid, 0): 3})
            assert await c.fetch_offsets(uid) == {(uid, 0): 3}
            with pytest.raises(conveyor.NotOwner):
                await c.commit_offsets(uid, j.member_id, 1, [(uid, 7, 3)])
            await c.leave_group(uid, j.member_id)
            await c.delete_group(uid)
            await c.deregister(uid)
            with pytest.raises(conveyor.NotFound):
                await c.get_service(uid)
            with pytest.raises(conveyor.UnknownOp):
                await c.call("nope")
            # concurrent calls from several tasks
            res = await asyncio.gather(*(c.register(f"{uid}-{i}", uid, "sink", "tcp://y:1")
                                         for i in range(20)))
            assert sorted(r.service_id for r in res) == sorted(f"{uid}-{i}" for i in range(20))
            await asyncio.gather(*(c.deregister(f"{uid}-{i}") for i in range(20)))
    run(main())


def test_async_timeout():
    async def main():
        async with AsyncClient(f"tcp://127.0.0.1:{free_port()}", timeout=0.3) as c:
            t0 = time.monotonic()
            with pytest.raises(conveyor.Timeout):
                await c.hello()
            assert time.monotonic() - t0 < 2
    run(main())


def test_async_watch_with_gap_recovery(daemon, uid):
    async def main():
        async with AsyncClient(daemon.requests) as c:
            await c.register(f"{uid}-1", uid, "source", "tcp://x:1", lease_ms=60000)
            async with AsyncWatch(f"service/{uid}/", server=c) as w:
                snap = await w.get(2)
                assert snap.is_snapshot and [s.service_id for s in snap.services] == [f"{uid}-1"]
                # an event received proves the subscription is live
                await c.heartbeat(f"{uid}-1", health="degraded")
                first = await w.get(3)
                assert first is not None and first.type == "health"
                # lose the next event (and the heartbeats): the event after
                # it reveals the gap through its prev
                orig = w._core.message
                target = first.seq + 1

                def message(topic, body):
                    if body.get("seq") == target or topic == "sys/heartbeat":
                        return iter(())
                    return orig(topic, body)
                w._core.message = message
                await c.register(f"{uid}-2", uid, "source", "tcp://x:1", lease_ms=60000)
                await c.deregister(f"{uid}-1")
                got = []
                async for ev in w.iter(3.0):
                    got.append((ev.type, ev.service.service_id))
                    if len(got) == 2:
                        break
                assert got == [("registered", f"{uid}-2"), ("deregistered", f"{uid}-1")]
                assert w._core.gaps == 1
                assert [e async for e in w.iter(0.3)] == []
            assert w.closed
            await c.deregister(f"{uid}-2")
    run(main())
