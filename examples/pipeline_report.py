#!/usr/bin/python3
"""pipeline_report.py: measurements of a demo pipeline run (scripts/demo.sh).

Reads a run directory (what the demo's programs wrote) and the coordinator's
event history (events_since), and:

  wait-rebalance  waits for the rebalance a membership change caused (a
                  member expired after a kill, or joined) and prints it:
                  when the change happened, the new generation and who got
                  what, and when each worker received its new assignment;
  wait-service    waits until a service reaches a health (or expired);
  traffic         prints the records per second each sink got lately;
  drain           waits until every produced record is committed;
  summary         prints the run's summary (and --json FILE): produced,
                  delivered, lost, duplicates (and their bound), rebalances
                  and their latencies, the kill's takeover, sink shares
                  against weights; exits 1 if a check failed.

The run directory: source-report.json (the source's --report), sinks/*.json
(the sinks' --stats), journals/*.jsonl (the transforms' --journal),
marks.jsonl (the demo's actions: {"mark", "target", "at"}).

    pipeline_report.py --run-dir RUN summary --json summary.json
"""

import argparse
import glob
import json
import os
import sys
import time

from pipeline_common import (DEFAULT_ENDPOINT, add_security_options, conveyor, dealer,
                             find_source, now_ms, read_json, read_jsonl, request,
                             security_from_args)

SHARE_TOLERANCE = 0.10      # relative: a sink's share within 10% of its weight's


# ---------------------------------------------------------------------------
# Inputs


class Run:
    def __init__(self, args):
        self.args = args
        self.dir = args.run_dir
        self.client = conveyor.Client(args.endpoint, timeout=3.0, security=args.security)

    def close(self):
        self.client.close()

    def journals(self):
        out = {}
        for path in sorted(glob.glob(os.path.join(self.dir, "journals", "*.jsonl"))):
            entries = read_jsonl(path)
            if entries:
                out[entries[0].get("id") or os.path.basename(path)[:-6]] = entries
        return out

    def sinks(self):
        out = {}
        for path in sorted(glob.glob(os.path.join(self.dir, "sinks", "*.json"))):
            stats = read_json(path)
            if stats:
                out[stats["service_id"]] = stats
        return out

    def marks(self):
        return read_jsonl(os.path.join(self.dir, "marks.jsonl"))

    def mark(self, name, target=None):
        for m in self.marks():
            if m.get("mark") == name and (target is None or m.get("target") == target):
                return m
        return None

    def t0(self):
        m = self.mark("start")
        return m["at"] if m else None

    def source_info(self):
        """The source's own account: live (info) if it still runs, else its report."""
        try:
            svc = find_source(self.client, self.args.topic)
        except conveyor.Error:
            svc = None
        if svc is not None:
            sock = dealer(svc.endpoint)
            try:
                reply = request(sock, {"op": "info", "rid": 1}, "rid", 1, 2.0)
            finally:
                sock.close(0)
            if reply and reply.get("ok"):
                return reply
        return read_json(os.path.join(self.dir, "source-report.json"))

    def events(self, prefix, since=0):
        out = []
        while True:
            page = self.client.events_since(since, prefix=prefix, limit=1000)
            out.extend(page.events)
            if not page.more or not page.events:
                return out
            since = page.events[-1].seq

    def committed(self):
        offsets = self.client.fetch_offsets(self.args.group)
        return {p: o for (t, p), o in offsets.items() if t == self.args.topic}


def rel(ms, t0):
    return f"+{(ms - t0) / 1000.0:.1f} s" if ms is not None and t0 else "?"


def fmt_parts(parts):
    return ",".join(str(p) for p in sorted(parts)) or "-"


def receipts(journals, generation):
    """{worker: Unix ms} when each worker learnt generation (first
    assigned/revoked entry journaled with it)."""
    out = {}
    for wid, entries in journals.items():
        for j in entries:
            if j.get("ev") in ("assigned", "revoked") and j.get("gen") == generation:
                out[wid] = min(out.get(wid, j["at"]), j["at"])
    return out


def assignment_of(event, topic):
    """{member: [partitions]} of an assignment event, for one topic."""
    out = {}
    for member, pairs in (event.body.get("assignments") or {}).items():
        out[member] = sorted(p for t, p in pairs if t == topic)
    return out


def rebalances(run, journals, group_events, topic):
    causes = {}
    for e in group_events:
        if e.type in ("joined", "left", "expired", "fenced"):
            causes.setdefault(e.body.get("generation"), []).append(e)
    rows = []
    for e in group_events:
        if e.type != "assignment":
            continue
        g = e.body.get("generation")
        why = causes.get(g, [])
        t_cause = min((c.at for c in why), default=e.at)
        got = receipts(journals, g)
        rows.append({
            "generation": g, "at": e.at, "reason": e.body.get("reason"),
            "causes": [{"type": c.type, "member": c.member_id, "at": c.at} for c in why],
            "coordinator_ms": e.at - t_cause,
            "received_ms": {w: at - t_cause for w, at in sorted(got.items())},
            "latency_ms": max((at - t_cause for at in got.values()), default=None),
            "assignment": assignment_of(e, topic),
        })
    return rows


def find_rebalance(rows, cause, member, since):
    for r in rows:
        for c in r["causes"]:
            if c["type"] == cause and c["member"] == member and c["at"] >= since:
                return r, c
    return None, None


def describe_rebalance(row, cause, t0, victim_parts=None):
    lines = []
    moved = ""
    if victim_parts is not None:
        takers = {m: sorted(set(ps) & victim_parts) for m, ps in row["assignment"].items()}
        moved = "; its partitions went to " + ", ".join(
            f"{m} [{fmt_parts(ps)}]" for m, ps in sorted(takers.items()) if ps)
    lines.append(f"generation {row['generation']}: {cause['type']} {cause['member']} at "
                 f"{rel(cause['at'], t0)}, assignment published {row['coordinator_ms']} ms "
                 f"later{moved}")
    lines.append("now: " + "  ".join(f"{m} [{fmt_parts(ps)}]"
                                      for m, ps in sorted(row["assignment"].items())))
    if row["received_ms"]:
        lines.append("new assignment received " + ", ".join(
            f"by {w} {ms} ms" for w, ms in row["received_ms"].items())
            + f" after the {cause['type']} event")
    return lines


# ---------------------------------------------------------------------------
# Commands


def cmd_wait_rebalance(run, args):
    """Wait (bounded) for the rebalance caused by <cause> of <member>, and
    for the workers to journal their receipt of it; print it."""
    deadline = time.monotonic() + args.timeout
    t0 = run.t0()
    prefix = f"group/{args.group}/"
    row = cause = None
    while time.monotonic() < deadline:
        rows = rebalances(run, run.journals(), run.events(prefix), args.topic)
        row, cause = find_rebalance(rows, args.cause, args.member, args.since)
        if row is not None:
            # The workers whose partitions changed journal the receipt; give
            # them a moment.
            changed = row["received_ms"]
            if changed or time.monotonic() > deadline - args.timeout / 2:
                break
        time.sleep(0.1)
    if row is None:
        print(f"no {args.cause} of {args.member} within {args.timeout} s")
        return 1
    time.sleep(0.3)     # late journal lines
    rows = rebalances(run, run.journals(), run.events(prefix), args.topic)
    row, cause = find_rebalance(rows, args.cause, args.member, args.since)
    victim = None
    if args.cause == "expired":
        victim = set(owned_at_end(run.journals().get(args.member, [])))
        print(f"{args.member}'s session expired {(cause['at'] - args.since) / 1000.0:.2f} s "
              f"after the kill (it held partitions {fmt_parts(victim)})")
    for line in describe_rebalance(row, cause, t0, victim):
        print(line)
    return 0


def cmd_wait_service(run, args):
    deadline = time.monotonic() + args.timeout
    svc_prefix = "service/"
    while time.monotonic() < deadline:
        for e in run.events(svc_prefix):
            if e.at is None or e.at < args.since or e.service is None:
                continue
            if e.service.service_id != args.service:
                continue
            if (args.state == "expired" and e.type == "expired") or \
               (e.type == "health" and e.service.health == args.state):
                print(f"{args.service} is {args.state} "
                      f"{(e.at - args.since) / 1000.0:.2f} s after it stopped heartbeating")
                return 0
        time.sleep(0.1)
    print(f"{args.service} not {args.state} within {args.timeout} s")
    return 1


def cmd_traffic(run, args):
    """Records per second each sink received over the last --seconds, in
    the buckets every sink had completed when it last wrote its counts."""
    sinks = run.sinks()
    bms = max((x.get("bucket_ms", 250) for x in sinks.values()), default=250)
    end = min((x.get("updated_at", 0) for x in sinks.values()), default=0) // bms * bms
    start = end - int(args.seconds * 1000)
    rates = {}
    for sid, x in sorted(sinks.items()):
        n = sum(v for b, v in x.get("buckets", {}).items() if start <= int(b) < end)
        rates[sid] = n / args.seconds
    total = sum(rates.values()) or 1.0
    print(f"last {args.seconds:g} s: " + ", ".join(
        f"{sid} {r:.0f} records/s ({r / total * 100:.0f}%)" for sid, r in rates.items()))
    return 0


def cmd_drain(run, args):
    deadline = time.monotonic() + args.timeout
    last_print = 0.0
    while True:
        info = run.source_info() or {}
        try:
            committed = run.committed()
        except conveyor.Error:
            committed = {}
        high = info.get("high") or []
        behind = sum(max(h - max(committed.get(p, 0), 0), 0) for p, h in enumerate(high))
        if info.get("complete") and high and behind == 0:
            print(f"drained: all {sum(high)} records committed")
            return 0
        if time.monotonic() >= deadline:
            print(f"not drained after {args.timeout} s: {behind} records not committed")
            return 1
        if not args.quiet and time.monotonic() - last_print > 2.0:
            last_print = time.monotonic()
            state = "complete" if info.get("complete") else "producing"
            print(f"source {state}; {behind} records not committed yet", flush=True)
        time.sleep(0.2)


def owned_at_end(entries, until=None):
    owned = set()
    for j in entries:
        if until is not None and j["at"] > until:
            break
        if j.get("ev") == "assigned":
            owned |= set(j["partitions"])
        elif j.get("ev") in ("revoked", "released"):
            owned -= set(j["partitions"])
    return owned


def in_flight(entries, partitions):
    """Records a worker had sent but neither committed nor given up, per
    partition: what it had in flight when it was killed."""
    sent, settled = {}, {}
    for j in entries:
        p = j.get("p")
        if j.get("ev") == "sent":
            sent[p] = max(sent.get(p, 0), j["to"])
        elif j.get("ev") == "committed":
            settled[p] = max(settled.get(p, 0), j["upto"])
        elif j.get("ev") == "abandoned":
            settled[p] = max(settled.get(p, 0), j["to"])
    return {p: max(sent.get(p, 0) - settled.get(p, 0), 0) for p in partitions}


def union_ranges(sinks):
    per = {}
    for stats in sinks.values():
        for p, runs in stats.get("ranges", {}).items():
            per.setdefault(int(p), []).extend(tuple(r) for r in runs)
    out = {}
    for p, runs in per.items():
        merged = []
        for a, b in sorted(runs):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        out[p] = merged
    return out


def covered(runs, lo, hi):
    """How many offsets of [lo, hi) the sorted disjoint runs cover."""
    return sum(max(min(b, hi) - max(a, lo), 0) for a, b in runs)


def cmd_summary(run, args):
    t0 = run.t0()
    journals = run.journals()
    sinks = run.sinks()
    info = run.source_info() or {}
    group_events = run.events(f"group/{args.group}/")
    service_events = run.events("service/")
    try:
        committed = run.committed()
    except conveyor.Error:
        committed = {}
    checks = {}
    s = {"run_dir": run.dir, "group": args.group, "topic": args.topic}

    # Produced, delivered, lost, duplicates.
    high = info.get("high") or []
    partitions = len(high)
    produced = sum(high)
    union = union_ranges(sinks)
    unique = sum(covered(union.get(p, []), 0, h) for p, h in enumerate(high))
    extra = sum(covered(runs, 0, 1 << 62) for runs in union.values()) - unique
    received = sum(x.get("received", 0) for x in sinks.values())
    bad = sum(x.get("bad", 0) for x in sinks.values())
    duplicates = received - bad - unique - extra
    lost = produced - unique
    s.update(produced=produced, partitions=partitions,
             records_per_partition=info.get("records_per_partition"),
             source_complete=bool(info.get("complete")), delivered=received,
             delivered_unique=unique, lost=lost, duplicates=duplicates, bad=bad,
             beyond_produced=extra)
    checks["lost_zero"] = lost == 0 and produced > 0
    checks["content_ok"] = bad == 0 and extra == 0

    # Every partition processed: committed to its end and fully delivered.
    per_partition = []
    for p, h in enumerate(high):
        per_partition.append({"partition": p, "produced": h, "committed": committed.get(p, -1),
                              "delivered": covered(union.get(p, []), 0, h)})
    s["per_partition"] = per_partition
    checks["every_partition_processed"] = bool(per_partition) and all(
        x["committed"] == x["produced"] and x["delivered"] == x["produced"]
        for x in per_partition)

    # Rebalances.
    rows = rebalances(run, journals, group_events, args.topic)
    drained = run.mark("drained")
    until = drained["at"] if drained else None
    s["rebalances"] = [r for r in rows if until is None or r["at"] <= until]
    s["rebalances_at_shutdown"] = len(rows) - len(s["rebalances"])

    # The kill: expiry, takeover, in-flight records.
    kill = run.mark("kill")
    dup_bound = 0
    if kill:
        victim = kill["target"]
        ventries = journals.get(victim, [])
        vparts = owned_at_end(ventries, kill["at"])
        flying = in_flight(ventries, vparts)
        k = {"member": victim, "at": kill["at"], "partitions": sorted(vparts),
             "in_flight": sum(flying.values()),
             "in_flight_by_partition": {str(p): n for p, n in sorted(flying.items())}}
        row, cause = find_rebalance(rows, "expired", victim, kill["at"])
        if row is not None:
            k.update(expired_at=cause["at"], expired_after_ms=cause["at"] - kill["at"],
                     generation=row["generation"], coordinator_ms=row["coordinator_ms"],
                     received_ms=row["received_ms"], latency_ms=row["latency_ms"])
            takers = {m: sorted(set(ps) & vparts) for m, ps in row["assignment"].items()}
            k["taken_over_by"] = {m: ps for m, ps in takers.items() if ps}
            # Taken over: every partition it held is owned by another member
            # in that generation, and was committed past the kill by one.
            after = {}
            for wid, entries in journals.items():
                if wid == victim:
                    continue
                for j in entries:
                    if j.get("ev") == "committed" and j["at"] > cause["at"] and j["p"] in vparts:
                        after.setdefault(j["p"], set()).add(wid)
            k["committed_after_by"] = {str(p): sorted(w) for p, w in sorted(after.items())}
            owned_by_others = set()
            for m, ps in takers.items():
                if m != victim:
                    owned_by_others |= set(ps)
            # (A partition the victim had already committed to its end
            # needs no more commits.)
            finished = {p for p in vparts if p < len(high) and max(
                (j["upto"] for j in ventries if j.get("ev") == "committed" and j["p"] == p),
                default=-1) >= high[p]}
            checks["killed_partitions_taken_over"] = bool(vparts) and \
                owned_by_others == vparts and set(after) | finished == vparts
        else:
            checks["killed_partitions_taken_over"] = False
        s["kill"] = k
        dup_bound += k["in_flight"]

    # Duplicates and their bound: what was in flight at the kill, plus what
    # the others had in flight when a rebalance took a partition from them
    # (abandoned after a fenced commit), plus batches a sink did not
    # acknowledge in time (sent again; the first copy may have arrived).
    abandoned = sum(j["to"] - j["from"] for e in journals.values() for j in e
                    if j.get("ev") == "abandoned")
    unacked = sum(j["to"] - j["from"] for e in journals.values() for j in e
                  if j.get("ev") == "sink_timeout")
    dup_bound += abandoned + unacked
    s["duplicates_bound"] = {"total": dup_bound,
                             "in_flight_at_kill": s.get("kill", {}).get("in_flight", 0),
                             "abandoned_at_revocations": abandoned,
                             "unacknowledged_batches": unacked}
    checks["duplicates_bounded"] = duplicates <= dup_bound

    # Join of a new transform.
    join = run.mark("join")
    if join:
        row, cause = find_rebalance(rows, "joined", join["target"], join["at"])
        s["join"] = {"member": join["target"], "at": join["at"]}
        if row is not None:
            s["join"].update(generation=row["generation"], joined_at=cause["at"],
                             coordinator_ms=row["coordinator_ms"],
                             received_ms=row["received_ms"], latency_ms=row["latency_ms"],
                             partitions=row["assignment"].get(join["target"], []))

    # Sinks: shares while all were healthy, against weights; the shift.
    stop = run.mark("sink_stop")
    window_end = stop["at"] if stop else None
    weights = {sid: x.get("weight", 0) for sid, x in sinks.items()}
    wsum = sum(weights.values()) or 1
    in_window = {}
    for sid, x in sinks.items():
        bms = x.get("bucket_ms", 250)
        in_window[sid] = sum(n for b, n in x.get("buckets", {}).items()
                             if window_end is None or int(b) + bms <= window_end)
    wtotal = sum(in_window.values()) or 1
    shares = {}
    for sid, x in sinks.items():
        expected = weights[sid] / wsum
        got = in_window[sid] / wtotal
        shares[sid] = {"weight": weights[sid], "expected": round(expected, 4),
                       "share": round(got, 4), "records": in_window[sid],
                       "records_total": x.get("received", 0),
                       "share_total": round(x.get("received", 0) / (received or 1), 4),
                       "within_tolerance": abs(got - expected) <= SHARE_TOLERANCE * expected}
    s["sink_shares"] = {"window_end": window_end, "tolerance": SHARE_TOLERANCE,
                        "sinks": shares}
    checks["sink_shares_match_weights"] = bool(shares) and all(
        v["within_tolerance"] for v in shares.values())
    if stop:
        victim = stop["target"]
        unhealthy = next((e.at for e in service_events if e.service is not None
                          and e.service.service_id == victim and e.at >= stop["at"]
                          and e.type == "health" and e.service.health == "unhealthy"), None)
        expired = next((e.at for e in service_events if e.service is not None
                        and e.service.service_id == victim and e.at >= stop["at"]
                        and e.type == "expired"), None)
        shift = {"sink": victim, "stopped_at": stop["at"], "unhealthy_at": unhealthy,
                 "expired_at": expired}
        if unhealthy is not None:
            # Records per sink once the coordinator said unhealthy (after a
            # grace of one second for batches already on their way).
            after = {}
            for sid, x in sinks.items():
                bms = x.get("bucket_ms", 250)
                after[sid] = sum(n for b, n in x.get("buckets", {}).items()
                                 if int(b) >= unhealthy + 1000 - bms + 1)
            shift["records_after_unhealthy"] = after
            shift["unhealthy_after_ms"] = unhealthy - stop["at"]
            others = sum(n for sid, n in after.items() if sid != victim)
            checks["traffic_shifted"] = after.get(victim, 0) == 0 and others > 0
        else:
            checks["traffic_shifted"] = False
        s["sink_shift"] = shift

    s["checks"] = checks
    s["ok"] = all(checks.values())
    s["started_at"] = t0
    s["finished_at"] = now_ms()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1, sort_keys=True)
    print_summary(s, t0)
    return 0 if s["ok"] else 1


def print_summary(s, t0):
    def line(label, value):
        print(f"  {label:<22}{value}")
    rpp = s.get("records_per_partition")
    line("records produced", f"{s['produced']} ({s['partitions']} partitions x {rpp})")
    line("records delivered", f"{s['delivered']} ({s['delivered_unique']} unique)")
    line("lost", f"{s['lost']}" + ("" if s["lost"] == 0 else "   <-- NOT ZERO"))
    b = s["duplicates_bound"]
    line("duplicates", f"{s['duplicates']} (at-least-once; bound {b['total']}: "
         f"{b['in_flight_at_kill']} in flight at the kill, {b['abandoned_at_revocations']} "
         f"in flight at revocations, {b['unacknowledged_batches']} unacknowledged)")
    line("bad records", f"{s['bad']} (+{s['beyond_produced']} beyond what was produced)")
    done = sum(1 for x in s["per_partition"] if x["committed"] == x["produced"])
    line("partitions processed", f"{done}/{s['partitions']} committed to their end")
    k = s.get("kill")
    if k:
        line("kill", f"{k['member']} (SIGKILL at {rel(k['at'], t0)}, held "
             f"{fmt_parts(k['partitions'])}, {k['in_flight']} records in flight)")
        if "expired_at" in k:
            line("", f"session expired {k['expired_after_ms'] / 1000.0:.2f} s later; generation "
                 f"{k['generation']} gave its partitions to "
                 + ", ".join(f"{m} [{fmt_parts(ps)}]" for m, ps in sorted(k['taken_over_by'].items())))
            line("", f"new assignment received {k['latency_ms']} ms after the expiry "
                 f"(coordinator {k['coordinator_ms']} ms)")
    j = s.get("join")
    if j and "generation" in j:
        line("new transform", f"{j['member']} joined at {rel(j['joined_at'], t0)}: generation "
             f"{j['generation']}, got [{fmt_parts(j['partitions'])}], received by all "
             f"{j['latency_ms']} ms after the join")
    print(f"  rebalances            {len(s['rebalances'])} during the run "
          f"(+{s['rebalances_at_shutdown']} as the workers left at the end)")
    print(f"      {'gen':>3}  {'when':>8}  {'cause':<34} {'coord':>6}  received by workers after")
    for r in s["rebalances"]:
        cause = ", ".join(f"{c['type']} {c['member']}" for c in r["causes"]) or r["reason"] or "?"
        recv = " ".join(f"{w}:{ms}ms" for w, ms in r["received_ms"].items()) or "-"
        print(f"      {r['generation']:>3}  {rel(r['at'], t0):>8}  {cause[:34]:<34} "
              f"{r['coordinator_ms']:>4}ms  {recv}")
    sh = s["sink_shares"]
    print("  sink shares           while every sink was healthy (weights vs records received):")
    for sid, v in sorted(sh["sinks"].items()):
        mark = "ok" if v["within_tolerance"] else "OUT OF TOLERANCE"
        print(f"      {sid:<10} weight {v['weight']:>4} ({v['expected'] * 100:5.1f}%)  "
              f"received {v['share'] * 100:5.1f}% of {sum(x['records'] for x in sh['sinks'].values())}"
              f"  [{mark}]   whole run: {v['records_total']} ({v['share_total'] * 100:.1f}%)")
    shift = s.get("sink_shift")
    if shift:
        if shift.get("unhealthy_at"):
            after = shift["records_after_unhealthy"]
            print(f"  traffic shift         {shift['sink']} stopped heartbeating at "
                  f"{rel(shift['stopped_at'], t0)}, unhealthy {shift['unhealthy_after_ms'] / 1000.0:.1f} s "
                  f"later; afterwards: " + ", ".join(f"{k2} {n}" for k2, n in sorted(after.items())))
        else:
            print(f"  traffic shift         {shift['sink']} never turned unhealthy")
    failed = [k2 for k2, v in s["checks"].items() if not v]
    print(f"  checks                {'all passed' if not failed else 'FAILED: ' + ', '.join(failed)}"
          f" ({', '.join(s['checks'])})")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="pipeline_report.py",
                                 description="Measurements of a demo pipeline run.")
    ap.add_argument("-e", "--endpoint", default=DEFAULT_ENDPOINT, help="coordinator")
    ap.add_argument("--group", default="transformers")
    ap.add_argument("--topic", default="events")
    ap.add_argument("--run-dir", required=True, help="what the demo's programs wrote")
    add_security_options(ap)
    sub = ap.add_subparsers(dest="command", required=True)
    w = sub.add_parser("wait-rebalance", help="wait for and print a rebalance")
    w.add_argument("--cause", choices=("expired", "joined", "left"), required=True)
    w.add_argument("--member", required=True)
    w.add_argument("--since", type=int, required=True, help="Unix ms")
    w.add_argument("--timeout", type=float, default=15.0)
    v = sub.add_parser("wait-service", help="wait for a service's health")
    v.add_argument("--service", required=True)
    v.add_argument("--state", choices=("unhealthy", "expired", "healthy"), required=True)
    v.add_argument("--since", type=int, required=True, help="Unix ms")
    v.add_argument("--timeout", type=float, default=15.0)
    t = sub.add_parser("traffic", help="records per second per sink, lately")
    t.add_argument("--seconds", type=float, default=2.0)
    d = sub.add_parser("drain", help="wait until every produced record is committed")
    d.add_argument("--timeout", type=float, default=30.0)
    d.add_argument("--quiet", action="store_true")
    m = sub.add_parser("summary", help="print the summary; exit 1 if a check failed")
    m.add_argument("--json", help="also write it here")
    args = ap.parse_args(argv)
    if not os.path.isdir(args.run_dir):
        ap.error(f"--run-dir {args.run_dir}: not a directory")
    args.security = security_from_args("pipeline_report", args)
    run = Run(args)
    try:
        return {"wait-rebalance": cmd_wait_rebalance, "wait-service": cmd_wait_service,
                "traffic": cmd_traffic, "drain": cmd_drain,
                "summary": cmd_summary}[args.command](run, args)
    except conveyor.Timeout:
        print(f"pipeline_report: the coordinator at {args.endpoint} does not answer",
              file=sys.stderr)
        return 3
    finally:
        run.close()


if __name__ == "__main__":
    sys.exit(main())
