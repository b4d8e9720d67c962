#!/usr/bin/python3
"""pipeline_transform.py: a transform worker of the demo pipeline (Python,
conveyor.GroupMember), the twin of examples/transform.c.

Joins consumer group --group on --topic (member id = --id) and registers
as a "transform" service. For each assigned partition: resume from the
group's committed offset, fetch records from a source found through the
registry, transform them, send them to a sink picked by a weighted
conveyor.LoadBalancer (kept live by a Watch), and commit offset+count only
once the sink acknowledged (at-least-once).

Callbacks run on the member's thread and only mark partitions; the main
loop does the work one batch at a time, so a revoked partition's in-flight
batch is finished (acknowledged, commit attempted) before it stops.
Fenced commits are handled: IllegalGeneration is retried once the member
has the new generation, if the partition is still ours; NotOwner and
UnknownMember drop the batch (the new owner sends it again).

--journal FILE: one JSON line per step (same format as transform.c).

With --server-key and --cert its Client, Registration, Watch (of the load
balancer) and GroupMember use CurveZMQ; the source and the sinks are
reached in plaintext.

    pipeline_transform.py --id transform-py-1 --session-timeout-ms 3000 --journal t.jsonl
"""

import argparse
import os
import signal
import sys
import threading
import time

from pipeline_common import (DEFAULT_ENDPOINT, Journal, add_security_options, conveyor, dealer,
                             find_source, request, security_from_args, transform)


class Part:
    __slots__ = ("owned", "need_init", "done", "epoch", "next", "poll_at")

    def __init__(self):
        self.owned = self.need_init = self.done = False
        self.epoch = 0
        self.next = 0
        self.poll_at = 0.0


class Worker:
    def __init__(self, args):
        self.args = args
        self.id = args.id
        self.topic = args.topic
        self.journal = Journal(args.journal, args.id)
        self.lock = threading.Lock()
        self.parts = {}
        self.stop = False
        self.closing = False
        self.member = None
        self.member_ready = threading.Event()
        self.security = args.security
        self.client = conveyor.Client(args.endpoint, timeout=3.0, security=self.security)
        self.source = None
        self.source_id = None
        self.sinks = {}       # endpoint -> DEALER
        self.rid = 0
        self.batches = self.records = self.commits = self.commit_failures = self.abandoned = 0
        self.lb = self.reg = None

    # -- member callbacks (member thread): mark only -------------------------

    def _generation(self):
        self.member_ready.wait(5.0)
        return self.member.generation if self.member is not None else 0

    def on_assigned(self, partitions):
        mine = sorted(p for t, p in partitions if t == self.topic)
        with self.lock:
            for p in mine:
                part = self.parts.setdefault(p, Part())
                part.owned = part.need_init = True
                part.done = False
                part.epoch += 1
                part.poll_at = 0.0
        gen = self._generation()
        self.journal("assigned", gen=gen, partitions=mine)
        print(f"{self.id}: generation {gen}: assigned {mine}", flush=True)

    def on_revoked(self, partitions):
        mine = sorted(p for t, p in partitions if t == self.topic)
        with self.lock:
            for p in mine:
                part = self.parts.setdefault(p, Part())
                part.owned = False
                part.epoch += 1
        gen = self._generation()
        # At close the member revokes everything before leaving: not a
        # rebalance, so it is journaled as "released".
        what = "released" if self.closing else "revoked"
        self.journal(what, gen=gen, partitions=mine)
        print(f"{self.id}: generation {gen}: {what} {mine}", flush=True)

    # -- helpers -------------------------------------------------------------

    def still_ours(self, p, epoch):
        with self.lock:
            part = self.parts.get(p)
            return part is not None and part.owned and part.epoch == epoch

    def later(self, p, epoch, delay):
        with self.lock:
            part = self.parts.get(p)
            if part is not None and part.epoch == epoch:
                part.poll_at = time.monotonic() + delay

    def next_rid(self):
        self.rid += 1
        return self.rid

    def find_source(self):
        if self.source is not None:
            return True
        try:
            svc = find_source(self.client, self.topic)
        except conveyor.Error:
            return False
        if svc is None:
            return False
        self.source = dealer(svc.endpoint)
        self.source_id = svc.service_id
        print(f"{self.id}: fetching from {svc.service_id} at {svc.endpoint}", flush=True)
        return True

    def deliver(self, p, start, records):
        out = [[rp, ro, transform(v)] for rp, ro, v in records]
        for _ in range(3):
            sink = self.lb.pick()
            if sink is None:
                return False
            ident = self.next_rid()
            self.journal("sent", p=p, **{"from": start, "to": start + len(out)},
                         sink=sink.service_id)
            sock = self.sinks.get(sink.endpoint)
            if sock is None:
                sock = self.sinks[sink.endpoint] = dealer(sink.endpoint)
            reply = request(sock, {"op": "deliver", "id": ident, "from": self.id, "records": out},
                            "id", ident, self.args.sink_timeout_ms / 1000.0)
            if reply is not None and reply.get("ok") is True:
                return True
            self.journal("sink_timeout", p=p, **{"from": start, "to": start + len(out)},
                         sink=sink.service_id)
            self.sinks.pop(sink.endpoint).close(0)
        return False

    # -- one step of one partition -------------------------------------------

    def resume(self, p, epoch):
        try:
            offsets = self.client.fetch_offsets(self.args.group, [(self.topic, p)])
        except conveyor.Error:
            self.later(p, epoch, 0.2)
            return
        committed = offsets.get((self.topic, p), -1)
        nxt = max(committed, 0)
        with self.lock:
            part = self.parts[p]
            same = part.epoch == epoch
            if same:
                part.next = nxt
                part.need_init = False
        if same:
            self.journal("resumed", p=p, offset=nxt)

    def commit(self, p, epoch, start, upto):
        for attempt in range(6):
            gen_before = self.member.generation
            try:
                self.member.commit({(self.topic, p): upto})
            except (conveyor.IllegalGeneration, conveyor.NotOwner, conveyor.UnknownMember,
                    conveyor.NotFound, conveyor.Timeout) as exc:
                self.commit_failures += 1
                ours = self.still_ours(p, epoch)
                self.journal("commit_failed", p=p, upto=upto, error=exc.code, gen=gen_before,
                             still_owned=ours)
                if isinstance(exc, conveyor.IllegalGeneration) and ours:
                    # The member is catching up (heartbeat now); the new
                    # assignment comes through the callbacks. Retry in the
                    # new generation if the partition is still ours.
                    deadline = time.monotonic() + 2.0
                    while self.member.generation == gen_before and time.monotonic() < deadline:
                        time.sleep(0.005)
                    if self.still_ours(p, epoch):
                        continue
                elif isinstance(exc, conveyor.Timeout) and ours:
                    time.sleep(0.1)
                    continue
                self.abandoned += upto - start
                self.journal("abandoned", p=p, reason=exc.code, **{"from": start, "to": upto})
                with self.lock:
                    part = self.parts[p]
                    if part.epoch == epoch:   # not revoked (yet): re-read the offset later
                        part.need_init = True
                        part.poll_at = time.monotonic() + 0.2
                return
            self.commits += 1
            with self.lock:
                part = self.parts[p]
                if part.epoch == epoch:
                    part.next = upto
            self.journal("committed", p=p, upto=upto, gen=self.member.generation)
            return
        self.abandoned += upto - start
        self.journal("abandoned", p=p, reason="RETRIES", **{"from": start, "to": upto})
        self.later(p, epoch, 0.2)

    def step(self, p, epoch, nxt):
        if not self.find_source():
            self.later(p, epoch, 0.5)
            return
        rid = self.next_rid()
        reply = request(self.source, {"op": "fetch", "rid": rid, "partition": p, "offset": nxt,
                                      "max": self.args.batch}, "rid", rid, 2.0)
        if reply is None:
            print(f"{self.id}: source {self.source_id} did not answer; looking it up again",
                  flush=True)
            self.source.close(0)
            self.source = None
            self.later(p, epoch, 0.2)
            return
        records = reply.get("records")
        at_end = reply.get("end") is True
        if not isinstance(records, list):
            self.later(p, epoch, 0.5)
            return
        if not records:
            with self.lock:
                part = self.parts[p]
                if part.epoch == epoch:
                    if at_end:
                        part.done = True
                    else:
                        part.poll_at = time.monotonic() + self.args.poll_ms / 1000.0
            if at_end:
                self.journal("done", p=p, offset=nxt)
            return
        if not self.still_ours(p, epoch):
            return          # revoked while fetching: nothing sent
        if not self.deliver(p, nxt, records):
            self.later(p, epoch, 0.2)
            return
        self.batches += 1
        self.records += len(records)
        # Acknowledged: commit, even if revoked meanwhile (then it fails).
        self.commit(p, epoch, nxt, nxt + len(records))
        if len(records) < self.args.batch and not at_end:
            self.later(p, epoch, self.args.poll_ms / 1000.0)

    # -- main ----------------------------------------------------------------

    def run(self):
        a = self.args
        self.journal("start", pid=os.getpid(), lang="python")
        self.reg = conveyor.Registration(
            self.id, a.name, "transform", f"pid://{os.getpid()}", group_id=a.group,
            labels={"lang": "python", "topic": self.topic}, lease_ms=a.lease_ms,
            server=a.endpoint, security=self.security)
        self.lb = conveyor.LoadBalancer("weighted", service_name=a.sink_name)
        self.lb.watch(server=a.endpoint, security=self.security)
        self.member = conveyor.GroupMember(
            a.group, [self.topic], on_assigned=self.on_assigned, on_revoked=self.on_revoked,
            server=a.endpoint, member_id=self.id, service_name=a.name,
            session_timeout_ms=a.session_timeout_ms, security=self.security)
        self.member_ready.set()
        self.journal("joined", gen=self.member.generation, member=self.member.member_id)
        print(f"{self.id}: joined {a.group} (generation {self.member.generation})", flush=True)
        rr = 0
        while not self.stop:
            now = time.monotonic()
            chosen = None
            wake = now + 0.05
            with self.lock:
                keys = sorted(self.parts)
                for i in range(len(keys)):
                    p = keys[(rr + i) % len(keys)]
                    part = self.parts[p]
                    if not part.owned or part.done:
                        continue
                    if part.poll_at <= now:
                        chosen = (p, part.epoch, part.need_init, part.next)
                        rr = (rr + i + 1) % len(keys)
                        break
                    wake = min(wake, part.poll_at)
            if chosen is None:
                time.sleep(max(wake - now, 0.001))
                continue
            p, epoch, need_init, nxt = chosen
            if need_init:
                self.resume(p, epoch)
            else:
                self.step(p, epoch, nxt)

    def close(self):
        self.closing = True
        if self.member is not None:
            self.member.close()       # on_revoked(everything), then leave
        for name in ("lb", "reg"):
            if getattr(self, name, None) is not None:
                getattr(self, name).close()
        if self.source is not None:
            self.source.close(0)
        for sock in self.sinks.values():
            sock.close(0)
        self.client.close()
        self.journal("stopped", batches=self.batches, records=self.records, commits=self.commits,
                     commit_failures=self.commit_failures, abandoned=self.abandoned)
        self.journal.close()
        print(f"{self.id}: stopped: {self.records} records in {self.batches} batches, "
              f"{self.commits} commits, {self.commit_failures} failed commits, "
              f"{self.abandoned} records abandoned", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="pipeline_transform.py",
        description="A transform worker of the demo pipeline on conveyor.GroupMember.")
    ap.add_argument("-e", "--endpoint", default=DEFAULT_ENDPOINT, help="coordinator")
    ap.add_argument("--id", default=f"transform-py-{os.getpid()}", help="member and service id")
    ap.add_argument("--name", default="events-transform", help="service name")
    ap.add_argument("--group", default="transformers")
    ap.add_argument("--topic", default="events")
    ap.add_argument("--sink-name", default="events-sink")
    ap.add_argument("--session-timeout-ms", type=int, help="group session (default: the coordinator's)")
    ap.add_argument("--lease-ms", type=int, help="registration lease (default: the coordinator's)")
    ap.add_argument("--batch", type=int, default=200, help="most records per fetch (default 200)")
    ap.add_argument("--poll-ms", type=int, default=100, help="wait when caught up (default 100)")
    ap.add_argument("--sink-timeout-ms", type=int, default=2000, help="wait for a sink's ack")
    ap.add_argument("--journal", help="append one JSON line per step")
    add_security_options(ap)
    args = ap.parse_args(argv)
    for name in ("session_timeout_ms", "lease_ms"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    for name in ("batch", "poll_ms", "sink_timeout_ms"):
        if getattr(args, name) <= 0:
            ap.error(f"--{name.replace('_', '-')} must be positive")
    args.security = security_from_args("pipeline_transform", args)

    worker = Worker(args)

    def on_signal(signum, frame):
        worker.stop = True       # the in-flight batch is finished first

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        worker.run()
    except conveyor.Error as exc:
        print(f"pipeline_transform: {args.id} at {args.endpoint}: {exc.code} {exc.message}",
              file=sys.stderr)
        return 1
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
