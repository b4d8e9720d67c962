#!/usr/bin/python3
"""pipeline_sink.py: a sink of the demo pipeline (Python, conveyor.Registration).

Registers as service_type "sink" with a weight (transforms pick sinks with
a weighted load balancer), serves deliveries on its own ROUTER endpoint,
checks every record ([p, o, value] must have value == transform(payload(p,
o)), see pipeline_common.py), records it, then acknowledges the batch. It
counts unique and duplicate (partition, offset) pairs and bad records, and
writes them to --stats (JSON, every --stats-interval seconds and at exit),
with the offsets received as ranges per partition and the records received
per time bucket.

Signals: SIGTERM/SIGINT write the stats, deregister and exit 0. SIGUSR1
stops heartbeating (the registration is closed without deregistering, as
a crash would) while the sink keeps serving: the coordinator marks it
unhealthy after one lease and removes it after two, and transforms shift
their traffic to the other sinks. SIGUSR2 registers it again.

With --server-key and --cert it registers with a coordinator that requires
CurveZMQ; its own ROUTER stays plaintext.

    pipeline_sink.py --id sink-1 --listen tcp://127.0.0.1:7403 --weight 300 --stats sink-1.json
"""

import argparse
import os
import signal
import sys
import time

from pipeline_common import (DEFAULT_ENDPOINT, add_security_options, conveyor, curve_hint,
                             now_ms, pack, payload, security_from_args, transform, unpack,
                             write_json)
import zmq

MAX_OFFSET = 1 << 31


class Sink:
    def __init__(self, args):
        self.args = args
        self.seen = {}          # partition -> bytearray (1: received)
        self.unique = self.duplicates = self.bad = self.received = self.batches = 0
        self.buckets = {}       # bucket start (Unix ms) -> records received
        self.by_sender = {}     # transform id -> records received
        self.stopped_heartbeat_at = None

    def deliver(self, msg):
        records = msg.get("records")
        if not isinstance(records, list):
            return {"ok": False, "id": msg.get("id"), "error": "BAD_REQUEST",
                    "message": "deliver needs records: [[p, o, value], ...]"}
        unique = dup = bad = 0
        for rec in records:
            if (not isinstance(rec, (list, tuple)) or len(rec) != 3
                    or not all(isinstance(x, int) for x in rec)):
                bad += 1
                continue
            p, o, value = rec
            if p < 0 or not 0 <= o < MAX_OFFSET or value != transform(payload(p, o)):
                bad += 1
                continue
            seen = self.seen.get(p)
            if seen is None:
                seen = self.seen[p] = bytearray()
            if o >= len(seen):
                seen.extend(bytes(max(o + 1 - len(seen), len(seen))))
            if seen[o]:
                dup += 1
            else:
                seen[o] = 1
                unique += 1
        n = len(records)
        self.unique += unique
        self.duplicates += dup
        self.bad += bad
        self.received += n
        self.batches += 1
        bucket = now_ms() // self.args.bucket_ms * self.args.bucket_ms
        self.buckets[bucket] = self.buckets.get(bucket, 0) + n
        sender = str(msg.get("from"))
        self.by_sender[sender] = self.by_sender.get(sender, 0) + n
        return {"ok": True, "id": msg.get("id"), "unique": unique, "duplicates": dup, "bad": bad}

    def ranges(self):
        out = {}
        for p, seen in self.seen.items():
            runs, i, n = [], 0, len(seen)
            while i < n:
                start = seen.find(1, i)
                if start < 0:
                    break
                end = seen.find(0, start)
                if end < 0:
                    end = n
                runs.append([start, end])
                i = end
            out[str(p)] = runs
        return out

    def stats(self, heartbeating):
        a = self.args
        return {"service_id": a.id, "weight": a.weight, "endpoint": a.advertise or a.listen,
                "unique": self.unique, "duplicates": self.duplicates, "bad": self.bad,
                "received": self.received, "batches": self.batches,
                "bucket_ms": a.bucket_ms,
                "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
                "by_sender": self.by_sender, "ranges": self.ranges(),
                "heartbeating": heartbeating,
                "stopped_heartbeat_at": self.stopped_heartbeat_at,
                "pid": os.getpid(), "updated_at": now_ms()}


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="pipeline_sink.py",
        description="A sink of the demo pipeline: registers with a weight, receives "
                    "transformed records, checks and counts them, acknowledges.")
    ap.add_argument("-e", "--endpoint", default=DEFAULT_ENDPOINT, help="coordinator")
    ap.add_argument("--id", default=f"sink-{os.getpid()}", help="service id")
    ap.add_argument("--name", default="events-sink", help="service name (default events-sink)")
    ap.add_argument("--listen", default="tcp://127.0.0.1:7403", help="where batches arrive")
    ap.add_argument("--advertise", help="endpoint registered (default: --listen)")
    ap.add_argument("--weight", type=int, default=100, help="load-balancing weight (default 100)")
    ap.add_argument("--lease-ms", type=int, help="registration lease (default: the coordinator's)")
    ap.add_argument("--stats", help="write counts here (JSON)")
    ap.add_argument("--stats-interval", type=float, default=0.5)
    ap.add_argument("--bucket-ms", type=int, default=250, help="time bucket of the counts")
    ap.add_argument("--ack-delay-ms", type=int, default=0,
                    help="acknowledge this late (a slow sink: batches stay in flight longer)")
    add_security_options(ap)
    args = ap.parse_args(argv)
    if not 0 <= args.weight <= 1000000:
        ap.error("--weight must be 0..1000000")
    if args.lease_ms is not None and args.lease_ms <= 0:
        ap.error("--lease-ms must be positive")
    if args.stats_interval <= 0 or args.bucket_ms <= 0:
        ap.error("--stats-interval and --bucket-ms must be positive")
    if args.ack_delay_ms < 0:
        ap.error("--ack-delay-ms must be >= 0")
    security = security_from_args("pipeline_sink", args)

    flags = {"stop": False, "pause": False, "resume": False}

    def on_signal(signum, frame):
        if signum == signal.SIGUSR1:
            flags["pause"] = True
        elif signum == signal.SIGUSR2:
            flags["resume"] = True
        else:
            flags["stop"] = True

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(s, on_signal)

    sock = zmq.Context.instance().socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.bind(args.listen)
    except zmq.ZMQError as exc:
        print(f"pipeline_sink: cannot bind {args.listen}: {exc}", file=sys.stderr)
        return 1

    def register():
        return conveyor.Registration(args.id, args.name, "sink", args.advertise or args.listen,
                                     weight=args.weight, lease_ms=args.lease_ms,
                                     server=args.endpoint, security=security)
    try:
        reg = register()
    except conveyor.Error as exc:
        print(f"pipeline_sink: cannot register {args.id} at {args.endpoint}: {exc.code}"
              f"{curve_hint(security, exc)}", file=sys.stderr)
        return 1
    print(f"{args.id}: registered as {args.name} (weight {args.weight}, lease {reg.lease_ms} ms), "
          f"serving {args.advertise or args.listen}", flush=True)

    sink = Sink(args)
    next_stats = 0.0
    pending = []        # (due, frames) of acknowledgements held back by --ack-delay-ms
    try:
        while not flags["stop"]:
            if flags["pause"]:
                flags["pause"] = False
                if reg is not None:
                    reg.close(deregister=False)
                    reg = None
                    sink.stopped_heartbeat_at = now_ms()
                    print(f"{args.id}: stopped heartbeating (still serving)", flush=True)
            if flags["resume"]:
                flags["resume"] = False
                if reg is None:
                    try:
                        reg = register()
                        print(f"{args.id}: registered again", flush=True)
                    except conveyor.Error as exc:
                        print(f"{args.id}: cannot register again: {exc.code}", flush=True)
            while pending and pending[0][0] <= time.monotonic():
                sock.send_multipart(pending.pop(0)[1])
            wait = 100
            if pending:
                wait = min(wait, max(int((pending[0][0] - time.monotonic()) * 1000) + 1, 0))
            try:
                ready = sock.poll(wait)
            except zmq.ZMQError:
                ready = 0   # interrupted by a signal
            for _ in range(100 if ready else 0):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                # [identity, body] (DEALER) or [identity, "", body] (REQ)
                if len(frames) == 2 or (len(frames) == 3 and frames[1] == b""):
                    try:
                        msg = unpack(frames[-1])
                    except Exception:  # noqa: BLE001 - any garbage
                        msg = None
                    delay = False
                    if isinstance(msg, dict) and msg.get("op") == "deliver":
                        reply = sink.deliver(msg)
                        delay = args.ack_delay_ms > 0 and reply.get("ok") is True
                    elif isinstance(msg, dict) and msg.get("op") == "stats":
                        reply = dict(ok=True, id=msg.get("id"), **sink.stats(reg is not None))
                    else:
                        reply = {"ok": False, "error": "BAD_REQUEST",
                                 "message": "ops: deliver, stats"}
                        if isinstance(msg, dict) and "id" in msg:
                            reply["id"] = msg["id"]
                    out = frames[:-1] + [pack(reply)]
                    if delay:
                        # Recorded now, acknowledged later.
                        pending.append((time.monotonic() + args.ack_delay_ms / 1000.0, out))
                    else:
                        sock.send_multipart(out)
            if args.stats and time.monotonic() >= next_stats:
                write_json(args.stats, sink.stats(reg is not None))
                next_stats = time.monotonic() + args.stats_interval
    finally:
        for _, out in pending:      # acknowledge what was held back
            sock.send_multipart(out)
        if args.stats:
            write_json(args.stats, sink.stats(reg is not None))
        if reg is not None:
            reg.close()
        sock.close(0)
    print(f"{args.id}: stopped: {sink.received} records received, {sink.unique} unique, "
          f"{sink.duplicates} duplicates, {sink.bad} bad", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
