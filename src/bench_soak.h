/*  bench_soak.h: conveyor-bench's soak scenario (issue 7).

    1,000 simulated services register, heartbeat, crash without
    deregistering (their leases run out) and register again, while 50 group
    members churn across 10 groups (join, heartbeat, leave, crash). Runs
    for `seconds` against the coordinator at `endpoint`, then checks:
    no protocol error but the expected ones (NOT_FOUND for a crashed
    service's or a gone member's group call, UNKNOWN_MEMBER,
    ILLEGAL_GENERATION), every invariant of protocol section 5 in every
    assignment event (each partition exactly one owner among the group's
    members, counts within one of each other), and, when rss_pid > 0, that
    process's resident memory after warm-up grew by less than 5%.
    Prints one JSON line. Returns 0 when every check held.
*/
#ifndef BENCH_SOAK_H_INCLUDED
#define BENCH_SOAK_H_INCLUDED

int
    bench_soak (const char *endpoint, int seconds, int rss_pid);

#endif
