#!/usr/bin/python3
"""pipeline_view.py: a live view of the demo pipeline, from the coordinator.

Every --interval seconds it reads the registry (services and their
health), the group (generation, who owns which partition), the committed
offsets, the source's production (its "info" op, found through the
registry) and, if --run-dir is given, the sinks' counts; and it follows the
coordinator's events (a conveyor.Watch on everything) to show membership
changes, rebalances and health changes as they happen.

On a terminal it redraws one screen in place, with a timeline at the
bottom (the coordinator's events, and the lines the demo script appends
to RUN/timeline.txt). Otherwise (--plain, or output not a terminal) it
prints the events as lines, and a compact table every --plain-every
seconds. Stops on SIGINT/SIGTERM.

With --server-key and --cert its Client and Watch use CurveZMQ (the
source's "info" op stays plaintext).

    pipeline_view.py -e tcp://127.0.0.1:7400
"""

import argparse
import glob
import os
import shutil
import signal
import sys
import textwrap
import threading
import time

from pipeline_common import (DEFAULT_ENDPOINT, add_security_options, conveyor, curve_hint,
                             dealer, find_source, now_ms, read_json, request,
                             security_from_args)


class View:
    def __init__(self, args):
        self.args = args
        self.client = conveyor.Client(args.endpoint, timeout=2.0, security=args.security)
        self.t0 = args.t0 or now_ms()
        self.lock = threading.Lock()
        self.timeline = []          # (Unix ms, text)
        self.timeline_pos = 0       # bytes of timeline.txt already read
        self.source = None
        self.source_ep = None
        self.prev = None            # (monotonic, committed total, produced, {sink: received})
        self.rates = {}
        self.stop = False
        self.tty = not args.plain and sys.stdout.isatty()
        self.watch = conveyor.Watch("", callback=self.on_event, server=args.endpoint,
                                    snapshot=False, security=args.security)

    # -- events ----------------------------------------------------------------

    def rel(self, at):
        return f"+{(at - self.t0) / 1000.0:5.1f}s"

    def add(self, at, text):
        with self.lock:
            self.timeline.append((at, text))
            del self.timeline[:-200]
        if not self.tty:
            print(f"  {self.rel(at)}  {text}", flush=True)

    def on_event(self, e):
        at = e.at or now_ms()
        group = f"group/{self.args.group}/"
        if e.topic.startswith(group):
            if e.type in ("joined", "left", "expired", "fenced"):
                self.add(at, f"[coordinator] member {e.member_id} {e.type} -> generation "
                             f"{e.body.get('generation')}")
            elif e.type == "assignment":
                parts = []
                for m, pairs in sorted((e.body.get("assignments") or {}).items()):
                    ps = sorted(p for t, p in pairs if t == self.args.topic)
                    parts.append(f"{m}[{','.join(map(str, ps))}]")
                self.add(at, f"[coordinator] generation {e.body.get('generation')} assigned: "
                             + " ".join(parts))
        elif e.topic.startswith("service/") and e.service is not None:
            svc = e.service
            if e.type == "health":
                self.add(at, f"[coordinator] {svc.service_id} is {svc.health}")
            elif e.type in ("registered", "deregistered", "expired"):
                self.add(at, f"[coordinator] {svc.service_id} ({svc.service_type}) {e.type}")

    def read_timeline_file(self):
        if not self.args.run_dir:
            return
        path = os.path.join(self.args.run_dir, "timeline.txt")
        try:
            with open(path) as f:
                f.seek(self.timeline_pos)
                data = f.read()
        except OSError:
            return
        done = data.rfind("\n") + 1
        self.timeline_pos += len(data[:done].encode())
        for line in data[:done].splitlines():
            at, _, text = line.partition(" ")
            try:
                at = int(at)
            except ValueError:
                continue
            with self.lock:
                self.timeline.append((at, ">> " + text))

    # -- state -------------------------------------------------------------------

    def source_info(self):
        try:
            svc = find_source(self.client, self.args.topic)
        except conveyor.Error:
            return None
        if svc is None:
            return None
        if svc.endpoint != self.source_ep:
            if self.source is not None:
                self.source.close(0)
            self.source, self.source_ep = dealer(svc.endpoint), svc.endpoint
        reply = request(self.source, {"op": "info", "rid": 1}, "rid", 1, 0.5)
        if reply is None:
            self.source.close(0)
            self.source = self.source_ep = None
        return reply

    def gather(self):
        st = {"services": [], "group": None, "committed": {}, "source": None, "sinks": {}}
        try:
            st["services"] = list(self.client.list_services())
        except conveyor.Error:
            pass
        try:
            st["group"] = self.client.get_group(self.args.group)
            st["committed"] = {p: o for (t, p), o in
                               self.client.fetch_offsets(self.args.group).items()
                               if t == self.args.topic}
        except conveyor.Error:
            pass
        st["source"] = self.source_info()
        if self.args.run_dir:
            for path in glob.glob(os.path.join(self.args.run_dir, "sinks", "*.json")):
                x = read_json(path)
                if x:
                    st["sinks"][x["service_id"]] = x
        # Rates since the previous look.
        now = time.monotonic()
        total = sum(max(o, 0) for o in st["committed"].values())
        produced = (st["source"] or {}).get("produced", 0)
        received = {k: v.get("received", 0) for k, v in st["sinks"].items()}
        if self.prev is not None and now > self.prev[0]:
            dt = now - self.prev[0]
            self.rates = {"committed": (total - self.prev[1]) / dt,
                          "produced": (produced - self.prev[2]) / dt,
                          "sinks": {k: (n - self.prev[3].get(k, 0)) / dt
                                    for k, n in received.items()}}
        self.prev = (now, total, produced, received)
        return st

    # -- rendering ---------------------------------------------------------------

    def owners(self, group):
        out = {}
        if group is not None:
            for m in group.members:
                for t, p in m.assignment:
                    if t == self.args.topic:
                        out[p] = m.member_id
        return out

    def render(self, st, full):
        lines = []
        now = now_ms()
        src = st["source"] or {}
        lines.append(f"Conveyor pipeline  {self.rel(now)}  coordinator {self.args.endpoint}")
        lines.append("")
        lines.append(f"  {'SERVICE':<16}{'TYPE':<11}{'HEALTH':<11}{'WEIGHT':>6}  {'HEARTBEAT':>9}  NOTES")
        for s in sorted(st["services"], key=lambda s: (s.service_type, s.service_id)):
            age = (now - s.last_heartbeat_at) / 1000.0 if s.last_heartbeat_at else 0.0
            note = ""
            if s.service_type == "sink" and s.service_id in st["sinks"]:
                x = st["sinks"][s.service_id]
                rate = self.rates.get("sinks", {}).get(s.service_id, 0.0)
                note = f"received {x['received']} ({rate:.0f}/s), dup {x['duplicates']}, bad {x['bad']}"
            elif s.service_type == "source" and src:
                note = f"produced {src.get('produced', 0)}" + (" (complete)" if src.get("complete") else "")
            lines.append(f"  {s.service_id:<16}{s.service_type:<11}{s.health:<11}{s.weight:>6}  "
                         f"{age:>7.1f}s  {note}")
        for sid, x in sorted(st["sinks"].items()):
            if not any(s.service_id == sid for s in st["services"]):
                lines.append(f"  {sid:<16}{'sink':<11}{'(gone)':<11}{x['weight']:>6}  {'':>9}  "
                             f"received {x['received']}, still serving, not registered")
        g = st["group"]
        lines.append("")
        if g is None:
            lines.append(f"  group {self.args.group}: not there yet")
        else:
            lines.append(f"  GROUP {g.group_id}  generation {g.generation}  ({g.assignor}, "
                         f"{len(g.members)} members)")
            for m in g.members:
                ps = sorted(p for t, p in m.assignment if t == self.args.topic)
                lines.append(f"    {m.member_id:<18} {','.join(map(str, ps)) or '-'}")
        r = self.rates
        lines.append("")
        lines.append(f"  records/s  produced {r.get('produced', 0):.0f}  committed "
                     f"{r.get('committed', 0):.0f}  to sinks "
                     + " ".join(f"{k} {v:.0f}" for k, v in sorted(r.get("sinks", {}).items())))
        if full:
            owners = self.owners(g)
            high = src.get("high") or []
            cells = []
            n = max(len(high), (max(owners) + 1) if owners else 0)
            for p in range(n):
                c = st["committed"].get(p, -1)
                h = high[p] if p < len(high) else 0
                cells.append(f"{p:>4}  {owners.get(p, '-'):<16}{c:>10}{h:>10}{h - max(c, 0):>6}")
            head = f"{'PART':>4}  {'OWNER':<16}{'COMMITTED':>10}{'PRODUCED':>10}{'LAG':>6}"
            width = shutil.get_terminal_size((100, 50)).columns
            cols = 2 if width >= 2 * (len(head) + 4) and n > 6 else 1
            rows = (n + cols - 1) // cols
            lines.append("")
            lines.append("  " + "    ".join([head] * cols))
            for r in range(rows):
                lines.append("  " + "    ".join(cells[r + k * rows] for k in range(cols)
                                                if r + k * rows < n))
        return lines

    def draw(self, st):
        self.read_timeline_file()
        lines = self.render(st, full=True)
        size = shutil.get_terminal_size((100, 50))
        width = size.columns
        room = max(size.lines - len(lines) - 3, 4)
        with self.lock:
            events = sorted(self.timeline, key=lambda e: e[0])    # stable: arrival order
        wrapped = []
        for at, text in events:
            wrapped.extend(textwrap.wrap(text, max(width - 1, 40), initial_indent=f"  {self.rel(at)}  ",
                                         subsequent_indent=" " * 13, break_on_hyphens=False))
        lines.append("")
        lines.append("  TIMELINE")
        lines.extend(wrapped[-room:])
        out = "\x1b[H" + "".join(l[:width - 1] + "\x1b[K\n" for l in lines) + "\x1b[J"
        sys.stdout.write(out)
        sys.stdout.flush()

    def run(self):
        next_plain = time.monotonic() + self.args.plain_every
        if self.tty:
            sys.stdout.write("\x1b[?25l\x1b[2J")
        try:
            while not self.stop:
                st = self.gather()
                if self.tty:
                    self.draw(st)
                elif time.monotonic() >= next_plain:
                    next_plain = time.monotonic() + self.args.plain_every
                    print("\n".join(self.render(st, full=False)) + "\n", flush=True)
                deadline = time.monotonic() + self.args.interval
                while not self.stop and time.monotonic() < deadline:
                    time.sleep(0.05)
        finally:
            if self.tty:
                sys.stdout.write("\x1b[?25h\n")
                sys.stdout.flush()
            self.watch.close()
            if self.source is not None:
                self.source.close(0)
            self.client.close()


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pipeline_view.py",
                                 description="Live view of the demo pipeline.")
    ap.add_argument("-e", "--endpoint", default=DEFAULT_ENDPOINT, help="coordinator")
    ap.add_argument("--group", default="transformers")
    ap.add_argument("--topic", default="events")
    ap.add_argument("--run-dir", help="the demo's run directory (sink counts, timeline.txt)")
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    ap.add_argument("--plain", action="store_true", help="lines, not a redrawn screen")
    ap.add_argument("--plain-every", type=float, default=5.0,
                    help="seconds between tables in plain mode")
    ap.add_argument("--t0", type=int, help="Unix ms shown as +0.0s (default: now)")
    add_security_options(ap)
    args = ap.parse_args(argv)
    if args.interval <= 0 or args.plain_every <= 0:
        ap.error("--interval and --plain-every must be positive")
    args.security = security_from_args("pipeline_view", args)
    try:
        view = View(args)
    except conveyor.Error as exc:
        print(f"pipeline_view: cannot reach {args.endpoint}: {exc.code}"
              f"{curve_hint(args.security, exc)}", file=sys.stderr)
        return 1

    def on_signal(signum, frame):
        view.stop = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    view.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
