/*  conveyor-bench: measures the coordinator over its real sockets.

    Usage: conveyor-bench [SCENARIO] [options]   (--help lists everything)

    Without a scenario: the classic run. A coordinator starts in-process on
    ephemeral loopback ports (or --endpoint is used) and phases run, each
    for a number of requests, through one DEALER with a window in flight:
    register, heartbeat, get_service, list_services (name + label), a
    lock-step heartbeat phase, and a group rebalance phase (request to
    assignment event). One line per phase; --json for JSON lines.

    With a scenario (limit, heartbeat, register, list, join, expire,
    commit): --connections client threads, each with its own DEALER (on a
    ZeroMQ context of their own, so the server's I/O thread is the
    server's alone) and --inflight requests in flight, run for --duration
    seconds after --warmup; latencies go to a per-thread array, merged and
    sorted for percentiles. One JSON line per result. When the server is
    in this process, its CPU per operation is read from the scheduler's
    per-thread counters (/proc/self/task/TID/schedstat) of the threads the
    server started (found by listing the process's tasks before and after
    starting it: the actor and the server context's ZMQbg threads).
    `limit` is a bare ROUTER msgpack echo server in this binary: the
    transport's ceiling, to which --compare relates a scenario.
*/
#define _GNU_SOURCE
#include "conveyor/conveyor.h"
#include "cvr_proto.h"
#include "bench_soak.h"
#include <getopt.h>
#include <pthread.h>
#include <dirent.h>
#include <stdatomic.h>
#include <time.h>

//  ==========================================================================
//  The classic run (no scenario): one DEALER, counted phases.

typedef struct {
    zsock_t *dealer;
    cvr_wr_t *w;
    int services;
    int window;
    uint32_t rng;
    int64_t *latencies;     //  per request, µs, lock-step phase only
} bench_t;

typedef void (s_build_fn) (bench_t *self, int i);

static uint32_t
s_rand (bench_t *self)
{
    self->rng = self->rng * 1664525u + 1013904223u;
    return self->rng >> 8;
}

static void
s_build_register (bench_t *self, int i)
{
    char id [32], name [32], zone [16];
    snprintf (id, sizeof (id), "svc-%d", i);
    snprintf (name, sizeof (name), "name-%d", i % 100);
    snprintf (zone, sizeof (zone), "z%d", i % 10);
    cvr_wr_kstr (self->w, "op", "register");
    cvr_wr_kstr (self->w, "service_id", id);
    cvr_wr_kstr (self->w, "service_name", name);
    cvr_wr_kstr (self->w, "service_type", "transform");
    cvr_wr_kstr (self->w, "endpoint", "tcp://127.0.0.1:9000");
    cvr_wr_kint (self->w, "lease_ms", 600000);
    cvr_wr_str (self->w, "labels");
    cvr_wr_map (self->w);
    cvr_wr_kstr (self->w, "zone", zone);
    cvr_wr_kstr (self->w, "tier", i % 2 ? "gold" : "silver");
    cvr_wr_close (self->w);
}

static void
s_build_heartbeat (bench_t *self, int i)
{
    char id [32];
    snprintf (id, sizeof (id), "svc-%u", s_rand (self) % (uint32_t) self->services);
    cvr_wr_kstr (self->w, "op", "heartbeat");
    cvr_wr_kstr (self->w, "service_id", id);
}

static void
s_build_get (bench_t *self, int i)
{
    char id [32];
    snprintf (id, sizeof (id), "svc-%u", s_rand (self) % (uint32_t) self->services);
    cvr_wr_kstr (self->w, "op", "get_service");
    cvr_wr_kstr (self->w, "service_id", id);
}

static void
s_build_list (bench_t *self, int i)
{
    char name [32], zone [16];
    uint32_t r = s_rand (self);
    snprintf (name, sizeof (name), "name-%u", r % 100);
    snprintf (zone, sizeof (zone), "z%u", r % 10);
    cvr_wr_kstr (self->w, "op", "list_services");
    cvr_wr_kstr (self->w, "service_name", name);
    cvr_wr_str (self->w, "labels");
    cvr_wr_map (self->w);
    cvr_wr_kstr (self->w, "zone", zone);
    cvr_wr_close (self->w);
}

static void
s_send (bench_t *self, s_build_fn *build, int i)
{
    cvr_wr_reset (self->w);
    cvr_wr_map (self->w);
    cvr_wr_kint (self->w, "rid", i);
    build (self, i);
    cvr_wr_close (self->w);
    zmq_send (zsock_resolve (self->dealer), cvr_wr_data (self->w), cvr_wr_size (self->w), 0);
}

//  Receives one reply; returns its rid, -1 on timeout, -2 on an error reply.
static int64_t
s_recv (bench_t *self)
{
    zframe_t *frame = zframe_recv (self->dealer);
    if (!frame)
        return -1;
    cvr_msg_t *msg = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    if (!msg)
        return -2;
    const msgpack_object *ok = cvr_obj_get (cvr_msg_root (msg), "ok");
    int64_t rid = ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean
                ? cvr_obj_get_int (cvr_msg_root (msg), "rid", -2) : -2;
    cvr_msg_destroy (&msg);
    return rid;
}

static int
s_cmp_int64 (const void *a, const void *b)
{
    int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
    return x < y ? -1 : x > y;
}

//  Runs count requests with `window` in flight; returns requests per second,
//  or -1 when a reply failed or never came.
static double
s_phase (bench_t *self, const char *name, s_build_fn *build, int count, int window,
         bool json)
{
    int64_t start = zclock_usecs ();
    int sent = 0, received = 0;
    int64_t *sent_at = self->latencies;
    while (received < count) {
        while (sent < count && sent - received < window) {
            sent_at [sent] = zclock_usecs ();
            s_send (self, build, sent++);
        }
        int64_t rid = s_recv (self);
        if (rid < 0) {
            fprintf (stderr, "conveyor-bench: %s: %s at request %d\n", name,
                     rid == -1 ? "no reply within 10 s" : "error reply", received);
            return -1;
        }
        sent_at [rid] = zclock_usecs () - sent_at [rid];
        received++;
    }
    double seconds = (double) (zclock_usecs () - start) / 1e6;
    double rate = count / seconds;
    qsort (sent_at, (size_t) count, sizeof (int64_t), s_cmp_int64);
    int64_t p50 = sent_at [count / 2], p99 = sent_at [(int) (count * 0.99)],
            max = sent_at [count - 1];
    if (json)
        printf ("{\"phase\":\"%s\",\"requests\":%d,\"window\":%d,\"seconds\":%.3f,"
                "\"per_second\":%.0f,\"p50_us\":%" PRId64 ",\"p99_us\":%" PRId64
                ",\"max_us\":%" PRId64 "}\n", name, count, window, seconds, rate,
                p50, p99, max);
    else
        printf ("%-22s %8d req  window %-4d %9.0f req/s   p50 %6" PRId64 " us"
                "   p99 %6" PRId64 " us   max %7" PRId64 " us\n",
                name, count, window, rate, p50, p99, max);
    fflush (stdout);
    return rate;
}

//  One request, lock-step; returns the decoded reply (caller destroys) or
//  NULL when it failed.
static cvr_msg_t *
s_request (bench_t *self, cvr_wr_t *w)
{
    zmq_send (zsock_resolve (self->dealer), cvr_wr_data (w), cvr_wr_size (w), 0);
    zframe_t *frame = zframe_recv (self->dealer);
    if (!frame)
        return NULL;
    cvr_msg_t *msg = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    const msgpack_object *ok = msg ? cvr_obj_get (cvr_msg_root (msg), "ok") : NULL;
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean)
        cvr_msg_destroy (&msg);
    return msg;
}

static void
s_build_join (bench_t *self, int i)
{
    char member [32];
    snprintf (member, sizeof (member), "bm-%05d", i);
    cvr_wr_kstr (self->w, "op", "join_group");
    cvr_wr_kstr (self->w, "group_id", "bench");
    cvr_wr_kstr (self->w, "member_id", member);
    cvr_wr_kint (self->w, "session_timeout_ms", 600000);
    cvr_wr_str (self->w, "topics");
    cvr_wr_array (self->w);
    cvr_wr_str (self->w, "bench-topic");
    cvr_wr_close (self->w);
}

//  Rebalance latency: a group of `members` over `partitions`; each round
//  one member leaves or comes back, and the time is taken from sending
//  that request to receiving the new generation's assignment event on a
//  SUB socket: compute, encoding, history, publish and transport.
static int
s_rebalance_phase (bench_t *self, int members, int partitions, int rounds, bool json)
{
    cvr_wr_t *w = self->w;
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "hello");
    cvr_wr_close (w);
    cvr_msg_t *hello = s_request (self, w);
    char *events = hello ? cvr_obj_get_strdup (cvr_msg_root (hello), "events_endpoint") : NULL;
    cvr_msg_destroy (&hello);
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "create_topic");
    cvr_wr_kstr (w, "topic", "bench-topic");
    cvr_wr_kint (w, "partitions", partitions);
    cvr_wr_close (w);
    cvr_msg_t *created = s_request (self, w);
    if (!events || !created) {
        fprintf (stderr, "conveyor-bench: rebalance: hello or create_topic failed "
                 "(does the target allow %d partitions?)\n", partitions);
        cvr_msg_destroy (&created);
        free (events);
        return -1;
    }
    cvr_msg_destroy (&created);
    zsock_t *sub = zsock_new_sub (events, "group/bench/assignment");
    zsock_set_subscribe (sub, "sys/heartbeat");
    zsock_set_rcvhwm (sub, 0);
    zsock_set_rcvtimeo (sub, 5000);
    free (events);
    //  The subscription is live once a heartbeat (1/s) comes through.
    while (true) {
        char *topic = zstr_recv (sub);
        bool heartbeat = topic && streq (topic, "sys/heartbeat");
        zstr_free (&topic);
        zsock_flush (sub);
        if (heartbeat)
            break;
    }
    if (s_phase (self, "join (group members)", s_build_join, members, self->window, json) < 0) {
        zsock_destroy (&sub);
        return -1;
    }
    int64_t *took = (int64_t *) malloc ((size_t) rounds * sizeof (int64_t));
    int64_t generation = 0;
    size_t event_bytes = 0;
    for (int round = 0; round < rounds; round++) {
        cvr_wr_reset (w);
        cvr_wr_map (w);
        if (round % 2 == 0) {
            cvr_wr_kstr (w, "op", "leave_group");
            cvr_wr_kstr (w, "group_id", "bench");
            cvr_wr_kstr (w, "member_id", "bm-00000");
        }
        else
            s_build_join (self, 0);
        cvr_wr_close (w);
        int64_t start = zclock_usecs ();
        cvr_msg_t *reply = s_request (self, w);
        if (!reply) {
            fprintf (stderr, "conveyor-bench: rebalance: request failed\n");
            free (took);
            zsock_destroy (&sub);
            return -1;
        }
        cvr_msg_destroy (&reply);
        //  Wait for an assignment event newer than the last one seen.
        while (true) {
            char *topic = NULL;
            zframe_t *body = NULL;
            if (zsock_recv (sub, "sf", &topic, &body) || !body) {
                fprintf (stderr, "conveyor-bench: rebalance: no assignment event in 5 s\n");
                zstr_free (&topic);
                free (took);
                zsock_destroy (&sub);
                return -1;
            }
            cvr_msg_t *event = streq (topic, "group/bench/assignment")
                ? cvr_msg_decode (zframe_data (body), zframe_size (body)) : NULL;
            int64_t seen = event ? cvr_obj_get_int (cvr_msg_root (event), "generation", 0) : 0;
            event_bytes = zframe_size (body);
            cvr_msg_destroy (&event);
            zstr_free (&topic);
            zframe_destroy (&body);
            if (seen > generation) {
                generation = seen;
                break;
            }
        }
        took [round] = zclock_usecs () - start;
    }
    zsock_destroy (&sub);
    qsort (took, (size_t) rounds, sizeof (int64_t), s_cmp_int64);
    if (json)
        printf ("{\"phase\":\"rebalance\",\"members\":%d,\"partitions\":%d,\"rounds\":%d,"
                "\"event_bytes\":%zu,\"p50_us\":%" PRId64 ",\"max_us\":%" PRId64 "}\n",
                members, partitions, rounds, event_bytes, took [rounds / 2], took [rounds - 1]);
    else
        printf ("%-24s %d members x %d partitions, %d rounds, event %zu bytes:"
                "   p50 %6" PRId64 " us   max %7" PRId64 " us\n", "rebalance (leave/join)",
                members, partitions, rounds, event_bytes, took [rounds / 2], took [rounds - 1]);
    free (took);
    return 0;
}

//  The classic run, as it always was: the in-process server (unless an
//  endpoint is given), counted phases over one DEALER, then the rebalance.
static int
s_classic_run (const char *endpoint, int services, int requests, int window,
               int group_members, int partitions, int rounds, bool json)
{
    if (services < 1 || requests < 100 || window < 1 || group_members < 0
    ||  partitions < 1 || partitions > 100000 || rounds < 1) {
        fprintf (stderr, "conveyor-bench: --services >= 1, --requests >= 100, --window >= 1,\n"
                 "  --group-members >= 0, --partitions 1..100000, --rounds >= 1\n");
        return 2;
    }
    zactor_t *server = NULL;
    char *owned_endpoint = NULL;
    if (!endpoint) {
        server = zactor_new (cvr_server, "bench");
        const char *sets [][2] = { { "log-level", "warn" }, { "max-lease-ms", "600000" } };
        for (size_t i = 0; i < 2; i++) {
            zstr_sendx (server, "SET", sets [i][0], sets [i][1], NULL);
            char *status = zstr_recv (server);
            zstr_free (&status);
        }
        zstr_sendx (server, "BIND", "tcp://127.0.0.1:*", NULL);
        char *status = zstr_recv (server);
        zstr_free (&status);
        zstr_sendx (server, "PUBLISH", "tcp://127.0.0.1:*", NULL);
        status = zstr_recv (server);
        zstr_free (&status);
        zstr_sendx (server, "START", NULL);
        status = zstr_recv (server);
        zstr_free (&status);
        char *events;
        zstr_sendx (server, "ENDPOINTS", NULL);
        zstr_recvx (server, &owned_endpoint, &events, NULL);
        zstr_free (&events);
        endpoint = owned_endpoint;
    }
    int most = services > requests ? services : requests;
    most = most > group_members ? most : group_members;
    bench_t bench = { .services = services, .window = window, .rng = 42 };
    bench.dealer = zsock_new_dealer (endpoint);
    zsock_set_rcvtimeo (bench.dealer, 10000);
    zsock_set_sndhwm (bench.dealer, 0);
    zsock_set_rcvhwm (bench.dealer, 0);
    bench.w = cvr_wr_new ();
    bench.latencies = (int64_t *) malloc ((size_t) most * sizeof (int64_t));
    if (!json)
        printf ("conveyor-bench: %s, %d services, %d requests per phase\n",
                endpoint, services, requests);
    int rc = 0;
    if (s_phase (&bench, "register", s_build_register, services, window, json) < 0
    ||  s_phase (&bench, "heartbeat", s_build_heartbeat, requests, window, json) < 0
    ||  s_phase (&bench, "get_service", s_build_get, requests, window, json) < 0
    ||  s_phase (&bench, "list_services name+label", s_build_list, requests / 10, window, json) < 0
    ||  s_phase (&bench, "heartbeat lock-step", s_build_heartbeat, requests / 10, 1, json) < 0)
        rc = 1;
    if (rc == 0 && group_members > 0
    &&  s_rebalance_phase (&bench, group_members, partitions, rounds, json))
        rc = 1;
    free (bench.latencies);
    cvr_wr_destroy (&bench.w);
    zsock_destroy (&bench.dealer);
    zactor_destroy (&server);
    zstr_free (&owned_endpoint);
    return rc;
}

//  ==========================================================================
//  Scenarios: N client threads x K in flight for S seconds.

#define S_MAX_SIZES     8           //  --members values
#define S_MAX_TIDS      256         //  server threads we account for
#define S_DRAIN_NS      (10 * 1000000000LL)     //  wait for late replies
#define S_EVENT_WAIT_MS 5000        //  an assignment event must come by then

typedef struct {
    const char *scenario;       //  NULL: the classic run
    const char *endpoint;       //  a running server's, or NULL: in-process
    int connections;
    int inflight;
    double duration;            //  seconds measured (per size for join/commit)
    double warmup;              //  seconds run before measuring
    int services;
    bool services_set;
    bool compare;
    int members [S_MAX_SIZES];  //  group sizes for join and commit
    size_t sizes;
    int partitions;             //  per topic; 0: 10 per member
    int64_t expire_in_ms;       //  expire: the common deadline; 0: automatic
    const char *history;        //  the in-process server's --history; NULL: default
} s_opts_t;

//  A result: one JSON line.
typedef struct {
    char scenario [32];
    int connections;
    int inflight;
    double seconds;             //  measured window
    uint64_t ops;               //  replies (or rounds, events) counted
    double ops_per_s;
    uint64_t samples;           //  latencies behind the percentiles
    int64_t p50, p90, p99, p999, max;       //  ns
    uint64_t errors;            //  error replies
    uint64_t lost;              //  requests never answered
    bool have_cpu;              //  the server is in this process
    double server_us, server_app_us, server_io_us, client_us;   //  per op
    double cores;               //  process CPU / wall over the window
    double others;              //  other processes' CPU / wall, likewise
    char extra [1024];          //  scenario's own fields, each ,"key":value
} s_result_t;

static int64_t
s_mono_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t
s_wall_ns (void)
{
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
s_sleep_until (int64_t mono_ns)
{
    struct timespec ts = { (time_t) (mono_ns / 1000000000LL), (long) (mono_ns % 1000000000LL) };
    while (clock_nanosleep (CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void
s_extra (s_result_t *r, const char *format, ...)
{
    size_t used = strlen (r->extra);
    va_list args;
    va_start (args, format);
    vsnprintf (r->extra + used, sizeof (r->extra) - used, format, args);
    va_end (args);
}

//  --------------------------------------------------------------------------
//  Server threads and CPU accounting

static pid_t s_server_tids [S_MAX_TIDS];
static size_t s_server_tid_count;
static pid_t s_server_pid;          //  --server-pid: a daemon on this machine

static size_t
s_tasks_of (pid_t pid, pid_t *tids, size_t max)
{
    char path [64];
    if (pid)
        snprintf (path, sizeof (path), "/proc/%d/task", (int) pid);
    else
        snprintf (path, sizeof (path), "/proc/self/task");
    DIR *dir = opendir (path);
    size_t count = 0;
    struct dirent *entry;
    while (dir && (entry = readdir (dir)) && count < max)
        if (entry->d_name [0] != '.')
            tids [count++] = (pid_t) atoi (entry->d_name);
    if (dir)
        closedir (dir);
    return count;
}

static size_t
s_tasks (pid_t *tids, size_t max)
{
    return s_tasks_of (0, tids, max);
}

//  Adds the tasks that exist now and did not in `before` to the server's.
static void
s_server_tids_since (const pid_t *before, size_t before_count)
{
    pid_t now [S_MAX_TIDS];
    size_t count = s_tasks (now, S_MAX_TIDS);
    for (size_t i = 0; i < count; i++) {
        bool known = false;
        for (size_t j = 0; j < before_count && !known; j++)
            known = now [i] == before [j];
        for (size_t j = 0; j < s_server_tid_count && !known; j++)
            known = now [i] == s_server_tids [j];
        if (!known && s_server_tid_count < S_MAX_TIDS)
            s_server_tids [s_server_tid_count++] = now [i];
    }
}

//  CPU time of a thread of this process in ns (the scheduler's own
//  account, ns resolution), or -1 when the thread is gone.
static int64_t
s_tid_cpu_ns (pid_t pid, pid_t tid)
{
    char path [64], task [32];
    if (pid)
        snprintf (task, sizeof (task), "%d", (int) pid);
    else
        snprintf (task, sizeof (task), "self");
    snprintf (path, sizeof (path), "/proc/%s/task/%d/schedstat", task, (int) tid);
    FILE *file = fopen (path, "r");
    long long ns = -1;
    if (file) {
        if (fscanf (file, "%lld", &ns) != 1)
            ns = -1;
        fclose (file);
        return ns;
    }
    //  No schedstat: utime + stime from stat, in clock ticks.
    snprintf (path, sizeof (path), "/proc/%s/task/%d/stat", task, (int) tid);
    file = fopen (path, "r");
    if (!file)
        return -1;
    char line [1024];
    char *text = fgets (line, sizeof (line), file);
    fclose (file);
    char *paren = text ? strrchr (text, ')') : NULL;
    unsigned long long utime, stime;
    if (!paren || sscanf (paren + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
                          &utime, &stime) != 2)
        return -1;
    return (int64_t) ((utime + stime) * (1000000000ULL / (unsigned long long) sysconf (_SC_CLK_TCK)));
}

//  libzmq names its background threads ZMQbg/IO/n and ZMQbg/Reaper.
static bool
s_tid_is_zmq (pid_t pid, pid_t tid)
{
    char path [64], name [32] = "";
    if (pid)
        snprintf (path, sizeof (path), "/proc/%d/task/%d/comm", (int) pid, (int) tid);
    else
        snprintf (path, sizeof (path), "/proc/self/task/%d/comm", (int) tid);
    FILE *file = fopen (path, "r");
    if (file) {
        if (!fgets (name, sizeof (name), file))
            name [0] = 0;
        fclose (file);
    }
    return strncmp (name, "ZMQbg", 5) == 0;
}

typedef struct {
    int64_t mono;           //  when
    int64_t machine;        //  all CPUs' busy time (ns), from /proc/stat
    int64_t process;        //  whole process CPU
    int64_t server_app;     //  server threads but libzmq's
    int64_t server_io;      //  the server context's libzmq threads
} s_cpu_t;

//  Busy time of all CPUs (everything but idle and iowait), in ns.
static int64_t
s_machine_busy_ns (void)
{
    FILE *file = fopen ("/proc/stat", "r");
    unsigned long long v [8] = { 0 };
    int got = file ? fscanf (file, "cpu %llu %llu %llu %llu %llu %llu %llu %llu",
                             &v [0], &v [1], &v [2], &v [3], &v [4], &v [5], &v [6], &v [7]) : 0;
    if (file)
        fclose (file);
    if (got < 8)
        return -1;
    unsigned long long busy = v [0] + v [1] + v [2] + v [5] + v [6] + v [7];
    return (int64_t) (busy * (1000000000ULL / (unsigned long long) sysconf (_SC_CLK_TCK)));
}

static void
s_cpu_sample (s_cpu_t *cpu)
{
    cpu->machine = s_machine_busy_ns ();
    struct timespec ts;
    clock_gettime (CLOCK_PROCESS_CPUTIME_ID, &ts);
    cpu->process = (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
    cpu->server_app = cpu->server_io = 0;
    pid_t others [S_MAX_TIDS];
    size_t count = s_server_pid ? s_tasks_of (s_server_pid, others, S_MAX_TIDS)
                                : s_server_tid_count;
    const pid_t *tids = s_server_pid ? others : s_server_tids;
    for (size_t i = 0; i < count; i++) {
        int64_t ns = s_tid_cpu_ns (s_server_pid, tids [i]);
        if (ns < 0)
            continue;
        if (s_tid_is_zmq (s_server_pid, tids [i]))
            cpu->server_io += ns;
        else
            cpu->server_app += ns;
    }
    cpu->mono = s_mono_ns ();
}

//  Fills the CPU fields of r from two samples and r->ops.
static void
s_cpu_result (s_result_t *r, const s_cpu_t *a, const s_cpu_t *b, bool local)
{
    double wall = (double) (b->mono - a->mono);
    r->cores = wall > 0 ? (double) (b->process - a->process) / wall : 0;
    if (wall > 0 && a->machine >= 0 && b->machine >= 0) {
        double daemon = s_server_pid ? (double) (b->server_app - a->server_app
                                                 + b->server_io - a->server_io) : 0;
        r->others = ((double) (b->machine - a->machine) - (double) (b->process - a->process)
                     - daemon) / wall;
        r->others = r->others < 0 ? 0 : r->others;
    }
    if (!local || r->ops == 0)
        return;
    double ops = (double) r->ops;
    double app = (double) (b->server_app - a->server_app);
    double io = (double) (b->server_io - a->server_io);
    r->have_cpu = true;
    r->server_app_us = app / ops / 1e3;
    r->server_io_us = io / ops / 1e3;
    r->server_us = (app + io) / ops / 1e3;
    r->client_us = ((double) (b->process - a->process) - (s_server_pid ? 0 : app + io))
                 / ops / 1e3;
}

static long
s_rss_kb (void)
{
    FILE *file = fopen ("/proc/self/status", "r");
    char line [256];
    long kb = -1;
    while (file && fgets (line, sizeof (line), file))
        if (strncmp (line, "VmRSS:", 6) == 0)
            kb = atol (line + 6);
    if (file)
        fclose (file);
    return kb;
}

//  --------------------------------------------------------------------------
//  The servers: the coordinator actor, or the bare echo server (`limit`)

typedef struct {
    zactor_t *actor;
    char *endpoint;         //  requests
    bool local;             //  in this process: CPU is accounted
} s_target_t;

static int
s_server_command (zactor_t *server, const char *command, const char *a, const char *b)
{
    zstr_sendx (server, command, a, b, NULL);
    char *status = zstr_recv (server);
    int rc = status && streq (status, "0") ? 0 : -1;
    if (rc)
        fprintf (stderr, "conveyor-bench: server %s %s: %s\n", command, a ? a : "",
                 status ? status : "no answer");
    zstr_free (&status);
    return rc;
}

static int
s_target_start_server (s_target_t *target, const s_opts_t *opts)
{
    *target = (s_target_t) { 0 };
    if (opts->endpoint) {
        target->endpoint = strdup (opts->endpoint);
        target->local = s_server_pid > 0;
        return 0;
    }
    pid_t before [S_MAX_TIDS];
    size_t before_count = s_tasks (before, S_MAX_TIDS);
    target->actor = zactor_new (cvr_server, "bench");
    //  Short leases for `expire`, room for big registries and sessions
    //  that outlive any run.
    const char *sets [][2] = {
        { "log-level", "warn" }, { "max-lease-ms", "600000" }, { "min-lease-ms", "100" },
        { "lease-ms", "1000" }, { "max-services", "10000000" }
    };
    for (size_t i = 0; i < sizeof (sets) / sizeof (sets [0]); i++)
        if (s_server_command (target->actor, "SET", sets [i][0], sets [i][1]))
            return -1;
    if (opts->history && s_server_command (target->actor, "SET", "history", opts->history))
        return -1;
    if (s_server_command (target->actor, "BIND", "tcp://127.0.0.1:*", NULL)
    ||  s_server_command (target->actor, "PUBLISH", "tcp://127.0.0.1:*", NULL)
    ||  s_server_command (target->actor, "START", NULL, NULL))
        return -1;
    char *events = NULL;
    zstr_sendx (target->actor, "ENDPOINTS", NULL);
    zstr_recvx (target->actor, &target->endpoint, &events, NULL);
    zstr_free (&events);
    s_server_tids_since (before, before_count);
    target->local = true;
    return 0;
}

//  The echo server: a ROUTER on czmq's context (as the daemon's), one
//  thread; each body is decoded with msgpack_unpack_next and answered
//  with a small packed map holding its rid, the shape of a heartbeat
//  reply: {ok, rid, lease_ms, health}. No state, no zmsg, no zloop.
static void
s_echo_actor (zsock_t *pipe, void *args)
{
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_set_linger (router, 0);
    bool bound = zsock_bind (router, "tcp://127.0.0.1:*") != -1;
    zsock_signal (pipe, 0);
    char *endpoint = bound ? zsock_last_endpoint (router) : NULL;
    zstr_send (pipe, endpoint ? endpoint : "");
    zstr_free (&endpoint);
    if (!bound) {
        zsock_destroy (&router);
        return;
    }
    void *sock = zsock_resolve (router);
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    zmq_pollitem_t items [] = { { zsock_resolve (pipe), 0, ZMQ_POLLIN, 0 },
                                { sock, 0, ZMQ_POLLIN, 0 } };
    zmq_msg_t frames [3];
    for (int i = 0; i < 3; i++)
        zmq_msg_init (&frames [i]);
    while (zmq_poll (items, 2, -1) >= 0) {
        if (items [0].revents & ZMQ_POLLIN)
            break;                      //  $TERM
        for (int n = 0; n < 1000; n++) {
            //  [identity, body] or [identity, "", body]
            int count = 0, more = 1;
            while (more && count < 3) {
                if (zmq_msg_recv (&frames [count], sock, count ? 0 : ZMQ_DONTWAIT) < 0)
                    break;
                more = zmq_msg_more (&frames [count++]);
            }
            if (count == 0)
                break;
            if (more || count < 2) {
                while (more) {          //  a bad shape: drop it all
                    zmq_msg_recv (&frames [0], sock, 0);
                    more = zmq_msg_more (&frames [0]);
                }
                continue;
            }
            zmq_msg_t *body = &frames [count - 1];
            size_t offset = 0;
            const msgpack_object *rid = NULL;
            if (msgpack_unpack_next (&unpacked, (const char *) zmq_msg_data (body),
                                     zmq_msg_size (body), &offset) == MSGPACK_UNPACK_SUCCESS
            &&  unpacked.data.type == MSGPACK_OBJECT_MAP) {
                const msgpack_object_map *map = &unpacked.data.via.map;
                for (uint32_t i = 0; i < map->size; i++)
                    if (map->ptr [i].key.type == MSGPACK_OBJECT_STR
                    &&  map->ptr [i].key.via.str.size == 3
                    &&  memcmp (map->ptr [i].key.via.str.ptr, "rid", 3) == 0)
                        rid = &map->ptr [i].val;
            }
            msgpack_sbuffer_clear (&sbuf);
            msgpack_pack_map (&pk, rid ? 4 : 3);
            msgpack_pack_str_with_body (&pk, "ok", 2);
            msgpack_pack_true (&pk);
            if (rid) {
                msgpack_pack_str_with_body (&pk, "rid", 3);
                msgpack_pack_object (&pk, *rid);
            }
            msgpack_pack_str_with_body (&pk, "lease_ms", 8);
            msgpack_pack_int64 (&pk, 1000);
            msgpack_pack_str_with_body (&pk, "health", 6);
            msgpack_pack_str_with_body (&pk, "healthy", 7);
            for (int i = 0; i < count - 1; i++)
                zmq_msg_send (&frames [i], sock, ZMQ_SNDMORE);
            zmq_send (sock, sbuf.data, sbuf.size, 0);
        }
    }
    for (int i = 0; i < 3; i++)
        zmq_msg_close (&frames [i]);
    msgpack_unpacked_destroy (&unpacked);
    msgpack_sbuffer_destroy (&sbuf);
    zsock_destroy (&router);
}

static int
s_target_start_echo (s_target_t *target)
{
    *target = (s_target_t) { 0 };
    pid_t before [S_MAX_TIDS];
    size_t before_count = s_tasks (before, S_MAX_TIDS);
    target->actor = zactor_new (s_echo_actor, NULL);
    target->endpoint = zstr_recv (target->actor);
    if (!target->endpoint || !*target->endpoint)
        return -1;
    s_server_tids_since (before, before_count);
    target->local = true;
    return 0;
}

static void
s_target_stop (s_target_t *target)
{
    zactor_destroy (&target->actor);
    zstr_free (&target->endpoint);
}

//  --------------------------------------------------------------------------
//  Replies, read with a reused zone (no allocation per reply)

typedef struct {
    bool ok;
    int64_t rid;
    const char *error;      //  borrowed from the message
    int error_len;
    const char *message;
    int message_len;
} s_reply_t;

static bool
s_key_is (const msgpack_object *k, const char *key, size_t len)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
        && memcmp (k->via.str.ptr, key, len) == 0;
}

static int
s_parse_reply (msgpack_zone *zone, const void *data, size_t size, s_reply_t *reply)
{
    msgpack_object obj;
    size_t offset = 0;
    msgpack_zone_clear (zone);
    *reply = (s_reply_t) { .rid = -1 };
    if (msgpack_unpack ((const char *) data, size, &offset, zone, &obj) != MSGPACK_UNPACK_SUCCESS
    ||  obj.type != MSGPACK_OBJECT_MAP)
        return -1;
    for (uint32_t i = 0; i < obj.via.map.size; i++) {
        const msgpack_object *k = &obj.via.map.ptr [i].key;
        const msgpack_object *v = &obj.via.map.ptr [i].val;
        if (s_key_is (k, "ok", 2) && v->type == MSGPACK_OBJECT_BOOLEAN)
            reply->ok = v->via.boolean;
        else
        if (s_key_is (k, "rid", 3) && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            reply->rid = (int64_t) v->via.u64;
        else
        if (s_key_is (k, "error", 5) && v->type == MSGPACK_OBJECT_STR) {
            reply->error = v->via.str.ptr;
            reply->error_len = (int) v->via.str.size;
        }
        else
        if (s_key_is (k, "message", 7) && v->type == MSGPACK_OBJECT_STR) {
            reply->message = v->via.str.ptr;
            reply->message_len = (int) v->via.str.size;
        }
    }
    return 0;
}

//  --------------------------------------------------------------------------
//  Client threads

typedef struct _s_run_t s_run_t;
typedef struct _s_worker_t s_worker_t;
//  Writes a request's fields into self->wr (the map is open, rid written);
//  n is the item number (count mode) or the thread's request number.
typedef void (s_req_fn) (s_worker_t *self, uint64_t n);

struct _s_run_t {
    const char *endpoint;
    void *ctx;                  //  the clients' ZeroMQ context
    int connections;
    int inflight;
    s_req_fn *build;
    uint64_t count;             //  > 0: items 0..count-1 once, else a window
    int64_t t_start, t_end;     //  the measured window (monotonic ns)
    int services;               //  registered, for random picks
    void *arg;                  //  the scenario's data
    atomic_int failures;        //  any thread's fatal failure stops all
};

struct _s_worker_t {
    s_run_t *run;
    int index;
    pthread_t thread;
    cvr_wr_t *wr;
    uint32_t rng;
    uint64_t seq;               //  requests this thread built
    int64_t *lat;               //  latencies (ns) of requests sent in window
    size_t lat_count, lat_cap;
    uint64_t in_window;         //  replies received in the window
    uint64_t replies, errors, lost;
    char error [256];           //  the first error
};

static uint32_t
s_worker_rand (s_worker_t *self)
{
    self->rng = self->rng * 1664525u + 1013904223u;
    return self->rng >> 8;
}

static void
s_lat_push (s_worker_t *self, int64_t ns)
{
    if (self->lat_count == self->lat_cap) {
        self->lat_cap = self->lat_cap ? 2 * self->lat_cap : 65536;
        self->lat = (int64_t *) realloc (self->lat, self->lat_cap * sizeof (int64_t));
        assert (self->lat);
    }
    self->lat [self->lat_count++] = ns;
}

static void
s_worker_fail (s_worker_t *self, const char *format, ...)
{
    if (!self->error [0]) {
        va_list args;
        va_start (args, format);
        vsnprintf (self->error, sizeof (self->error), format, args);
        va_end (args);
    }
    atomic_fetch_add (&self->run->failures, 1);
}

static void *
s_worker_main (void *arg)
{
    s_worker_t *self = (s_worker_t *) arg;
    s_run_t *run = self->run;
    pthread_setname_np (pthread_self (), "bench-client");
    void *dealer = zmq_socket (run->ctx, ZMQ_DEALER);
    int zero = 0, timeout = 100;
    zmq_setsockopt (dealer, ZMQ_SNDHWM, &zero, sizeof (zero));
    zmq_setsockopt (dealer, ZMQ_RCVHWM, &zero, sizeof (zero));
    zmq_setsockopt (dealer, ZMQ_LINGER, &zero, sizeof (zero));
    zmq_setsockopt (dealer, ZMQ_RCVTIMEO, &timeout, sizeof (timeout));
    if (zmq_connect (dealer, run->endpoint)) {
        s_worker_fail (self, "cannot connect to %s: %s", run->endpoint, zmq_strerror (zmq_errno ()));
        zmq_close (dealer);
        return NULL;
    }
    int window = run->inflight;
    int64_t *sent_at = (int64_t *) calloc ((size_t) window, sizeof (int64_t));
    int *free_slots = (int *) malloc ((size_t) window * sizeof (int));
    int free_count = window;
    for (int i = 0; i < window; i++)
        free_slots [i] = window - 1 - i;
    uint64_t next = (uint64_t) self->index;
    int64_t drain_until = 0;
    zmq_msg_t msg;
    zmq_msg_init (&msg);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 8192);
    while (true) {
        int64_t now = s_mono_ns ();
        bool sending = run->count ? next < run->count : now < run->t_end;
        if (atomic_load (&run->failures) || zsys_interrupted)
            sending = false;
        while (sending && free_count > 0) {
            int slot = free_slots [--free_count];
            cvr_wr_reset (self->wr);
            cvr_wr_map (self->wr);
            cvr_wr_kint (self->wr, "rid", slot);
            run->build (self, run->count ? next : self->seq);
            cvr_wr_close (self->wr);
            self->seq++;
            sent_at [slot] = s_mono_ns ();
            zmq_send (dealer, cvr_wr_data (self->wr), cvr_wr_size (self->wr), 0);
            if (run->count) {
                next += (uint64_t) run->connections;
                sending = next < run->count;
            }
        }
        int inflight = window - free_count;
        if (!sending) {
            if (inflight == 0)
                break;
            if (!drain_until)
                drain_until = now + S_DRAIN_NS;
            else
            if (now > drain_until || zsys_interrupted) {
                self->lost += (uint64_t) inflight;
                if (run->count)
                    s_worker_fail (self, "%d replies never came", inflight);
                break;
            }
        }
        if (zmq_msg_recv (&msg, dealer, 0) < 0) {
            if (zmq_errno () == EAGAIN || zmq_errno () == EINTR)
                continue;
            s_worker_fail (self, "receive: %s", zmq_strerror (zmq_errno ()));
            break;
        }
        int64_t received = s_mono_ns ();
        s_reply_t reply;
        if (s_parse_reply (&zone, zmq_msg_data (&msg), zmq_msg_size (&msg), &reply)
        ||  reply.rid < 0 || reply.rid >= window || sent_at [reply.rid] == 0) {
            s_worker_fail (self, "a reply without a known rid");
            break;
        }
        int slot = (int) reply.rid;
        int64_t sent = sent_at [slot];
        sent_at [slot] = 0;
        free_slots [free_count++] = slot;
        self->replies++;
        if (!reply.ok) {
            self->errors++;
            if (!self->error [0])
                snprintf (self->error, sizeof (self->error), "%.*s: %.*s",
                          reply.error_len, reply.error ? reply.error : "",
                          reply.message_len, reply.message ? reply.message : "");
            if (run->count)         //  set-up requests must all succeed
                atomic_fetch_add (&run->failures, 1);
        }
        if (run->count)
            s_lat_push (self, received - sent);
        else {
            if (received >= run->t_start && received < run->t_end)
                self->in_window++;
            if (sent >= run->t_start && sent < run->t_end)
                s_lat_push (self, received - sent);
        }
    }
    zmq_msg_close (&msg);
    msgpack_zone_destroy (&zone);
    free (sent_at);
    free (free_slots);
    zmq_close (dealer);
    return NULL;
}

static int64_t
s_percentile (const int64_t *sorted, size_t count, double q)
{
    if (count == 0)
        return 0;
    size_t rank = (size_t) (q * (double) count + 0.999999);
    return sorted [rank ? (rank > count ? count : rank) - 1 : 0];
}

static void
s_set_percentiles (s_result_t *r, int64_t *lat, size_t count)
{
    qsort (lat, count, sizeof (int64_t), s_cmp_int64);
    r->samples = count;
    r->p50 = s_percentile (lat, count, 0.50);
    r->p90 = s_percentile (lat, count, 0.90);
    r->p99 = s_percentile (lat, count, 0.99);
    r->p999 = s_percentile (lat, count, 0.999);
    r->max = count ? lat [count - 1] : 0;
}

//  Runs the threads: count mode, or warm-up then the window with CPU
//  samples at both ends. Fills r (if given); 0, or -1 on a failure.
static int
s_run (s_run_t *run, s_result_t *r, bool local)
{
    int n = run->connections;
    s_worker_t *workers = (s_worker_t *) calloc ((size_t) n, sizeof (s_worker_t));
    atomic_init (&run->failures, 0);
    int64_t started = s_mono_ns ();
    for (int i = 0; i < n; i++) {
        workers [i] = (s_worker_t) { .run = run, .index = i, .wr = cvr_wr_new (),
                                     .rng = 42u + 7919u * (uint32_t) i };
        pthread_create (&workers [i].thread, NULL, s_worker_main, &workers [i]);
    }
    s_cpu_t a = { 0 }, b = { 0 };
    if (!run->count) {
        s_sleep_until (run->t_start);
        s_cpu_sample (&a);
        s_sleep_until (run->t_end);
        s_cpu_sample (&b);
    }
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        pthread_join (workers [i].thread, NULL);
        total += workers [i].lat_count;
    }
    int64_t ended = s_mono_ns ();
    int64_t *lat = (int64_t *) malloc ((total + 1) * sizeof (int64_t));
    size_t at = 0;
    uint64_t in_window = 0, errors = 0, lost = 0;
    const char *error = NULL;
    for (int i = 0; i < n; i++) {
        memcpy (lat + at, workers [i].lat, workers [i].lat_count * sizeof (int64_t));
        at += workers [i].lat_count;
        in_window += workers [i].in_window;
        errors += workers [i].errors;
        lost += workers [i].lost;
        if (!error && workers [i].error [0])
            error = workers [i].error;
    }
    int failures = atomic_load (&run->failures);
    if (error)
        fprintf (stderr, "conveyor-bench: %s%s\n", failures ? "" : "(counted, not fatal) ", error);
    if (r) {
        r->connections = run->connections;
        r->inflight = run->inflight;
        if (run->count) {
            r->seconds = (double) (ended - started) / 1e9;
            r->ops = run->count;
        }
        else {
            r->seconds = (double) (run->t_end - run->t_start) / 1e9;
            r->ops = in_window;
            s_cpu_result (r, &a, &b, local);
        }
        r->ops_per_s = r->seconds > 0 ? (double) r->ops / r->seconds : 0;
        r->errors = errors;
        r->lost = lost;
        s_set_percentiles (r, lat, total);
    }
    free (lat);
    for (int i = 0; i < n; i++) {
        free (workers [i].lat);
        cvr_wr_destroy (&workers [i].wr);
    }
    free (workers);
    return failures ? -1 : 0;
}

//  A run over the window: warm-up, then --duration.
static int
s_run_window (s_run_t *run, const s_opts_t *opts, s_result_t *r, bool local)
{
    run->count = 0;
    run->t_start = s_mono_ns () + (int64_t) (opts->warmup * 1e9);
    run->t_end = run->t_start + (int64_t) (opts->duration * 1e9);
    return s_run (run, r, local);
}

static void
s_print_result (const s_result_t *r)
{
    printf ("{\"scenario\":\"%s\",\"connections\":%d,\"inflight\":%d,\"seconds\":%.2f,"
            "\"ops\":%" PRIu64 ",\"ops_per_s\":%.0f,\"p50_us\":%.1f,\"p90_us\":%.1f,"
            "\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f,\"samples\":%" PRIu64
            ",\"errors\":%" PRIu64 ",\"lost\":%" PRIu64,
            r->scenario, r->connections, r->inflight, r->seconds, r->ops, r->ops_per_s,
            r->p50 / 1e3, r->p90 / 1e3, r->p99 / 1e3, r->p999 / 1e3, r->max / 1e3,
            r->samples, r->errors, r->lost);
    if (r->have_cpu)
        printf (",\"server_cpu_us_per_op\":%.2f,\"server_thread_us_per_op\":%.2f,"
                "\"server_zmq_io_us_per_op\":%.2f,\"client_cpu_us_per_op\":%.2f",
                r->server_us, r->server_app_us, r->server_io_us, r->client_us);
    else
        printf (",\"server_cpu_us_per_op\":null");
    if (r->cores > 0)
        printf (",\"cpu_cores_busy\":%.2f,\"other_processes_cores\":%.2f", r->cores, r->others);
    printf ("%s}\n", r->extra);
    fflush (stdout);
}

//  --------------------------------------------------------------------------
//  Requests

//  Data a scenario's requests need (borrowed by the threads).
typedef struct {
    char group [64];
    char topic [64];
    int64_t generation;
    int members;
    char (*member_ids) [32];
    int64_t **owned;            //  per member: partitions owned
    size_t *owned_count;
    int64_t expire_at;          //  expire: common deadline, Unix ms
    int64_t lease_floor_ms;     //  expire: a lease shorter than this fails
} s_scn_t;

//  A registration of service id, named and labelled after n.
static void
s_write_register (s_worker_t *self, const char *id, uint64_t n)
{
    char name [32], zone [16];
    snprintf (name, sizeof (name), "name-%" PRIu64, n % 100);
    snprintf (zone, sizeof (zone), "z%" PRIu64, (n / 100) % 10);
    cvr_wr_kstr (self->wr, "op", "register");
    cvr_wr_kstr (self->wr, "service_id", id);
    cvr_wr_kstr (self->wr, "service_name", name);
    cvr_wr_kstr (self->wr, "service_type", "transform");
    cvr_wr_kstr (self->wr, "endpoint", "tcp://127.0.0.1:9000");
    cvr_wr_kint (self->wr, "lease_ms", 600000);
    cvr_wr_str (self->wr, "labels");
    cvr_wr_map (self->wr);
    cvr_wr_kstr (self->wr, "zone", zone);
    cvr_wr_kstr (self->wr, "tier", n % 2 ? "gold" : "silver");
    cvr_wr_close (self->wr);
}

//  Set-up registrations: svc-N, over 100 names and, independently of the
//  name, 10 zones, so a name + zone query matches services / 1000.
static void
s_req_register_item (s_worker_t *self, uint64_t n)
{
    char id [32];
    snprintf (id, sizeof (id), "svc-%" PRIu64, n);
    s_write_register (self, id, n);
}

//  `register`: a new service every time (ids per thread), the same shape.
static void
s_req_register_new (s_worker_t *self, uint64_t n)
{
    char id [48];
    snprintf (id, sizeof (id), "reg-%d-%" PRIu64, self->index, n);
    s_write_register (self, id, n);
}

//  `heartbeat` and `limit`: the same bytes to either server.
static void
s_req_heartbeat (s_worker_t *self, uint64_t n)
{
    char id [32];
    snprintf (id, sizeof (id), "svc-%u", s_worker_rand (self) % (uint32_t) self->run->services);
    cvr_wr_kstr (self->wr, "op", "heartbeat");
    cvr_wr_kstr (self->wr, "service_id", id);
}

static void
s_req_list (s_worker_t *self, uint64_t n)
{
    char name [32], zone [16];
    uint32_t r = s_worker_rand (self);
    snprintf (name, sizeof (name), "name-%u", r % 100);
    snprintf (zone, sizeof (zone), "z%u", (r / 100) % 10);
    cvr_wr_kstr (self->wr, "op", "list_services");
    cvr_wr_kstr (self->wr, "service_name", name);
    cvr_wr_str (self->wr, "labels");
    cvr_wr_map (self->wr);
    cvr_wr_kstr (self->wr, "zone", zone);
    cvr_wr_close (self->wr);
}

static void
s_write_join (cvr_wr_t *w, const char *group, const char *topic, const char *member)
{
    cvr_wr_kstr (w, "op", "join_group");
    cvr_wr_kstr (w, "group_id", group);
    cvr_wr_kstr (w, "member_id", member);
    cvr_wr_kint (w, "session_timeout_ms", 600000);
    cvr_wr_str (w, "topics");
    cvr_wr_array (w);
    cvr_wr_str (w, topic);
    cvr_wr_close (w);
}

static void
s_req_join (s_worker_t *self, uint64_t n)
{
    s_scn_t *scn = (s_scn_t *) self->run->arg;
    char member [32];
    snprintf (member, sizeof (member), "m-%" PRIu64, n);
    s_write_join (self->wr, scn->group, scn->topic, member);
}

//  `commit`: a member's whole assignment, offsets growing.
static void
s_req_commit (s_worker_t *self, uint64_t n)
{
    s_scn_t *scn = (s_scn_t *) self->run->arg;
    int m = (int) (((uint64_t) self->index + n * (uint64_t) self->run->connections)
                   % (uint64_t) scn->members);
    cvr_wr_kstr (self->wr, "op", "commit_offsets");
    cvr_wr_kstr (self->wr, "group_id", scn->group);
    cvr_wr_kstr (self->wr, "member_id", scn->member_ids [m]);
    cvr_wr_kint (self->wr, "generation", scn->generation);
    cvr_wr_str (self->wr, "offsets");
    cvr_wr_array (self->wr);
    for (size_t i = 0; i < scn->owned_count [m]; i++) {
        cvr_wr_array (self->wr);
        cvr_wr_str (self->wr, scn->topic);
        cvr_wr_int (self->wr, scn->owned [m][i]);
        cvr_wr_int (self->wr, (int64_t) n);
        cvr_wr_close (self->wr);
    }
    cvr_wr_close (self->wr);
}

//  `expire`: each lease is chosen so that 2 x lease after the server sees
//  the registration (expiry: no heartbeat for 2 x lease_ms) falls on the
//  common instant expire_at. Unix ms on both sides: one clock when local.
static void
s_req_register_expiring (s_worker_t *self, uint64_t n)
{
    s_scn_t *scn = (s_scn_t *) self->run->arg;
    char id [32], name [32];
    snprintf (id, sizeof (id), "exp-%" PRIu64, n);
    snprintf (name, sizeof (name), "exp-%" PRIu64, n % 100);
    //  The server sees the request about one round trip (mostly queueing)
    //  after now: the last reply's latency is the estimate.
    int64_t delay_ms = self->lat_count ? self->lat [self->lat_count - 1] / 1000000 : 0;
    int64_t lease = (scn->expire_at - zclock_time () - delay_ms) / 2;
    if (lease < scn->lease_floor_ms) {
        s_worker_fail (self, "registering is slower than --expire-in allows (lease %" PRId64
                       " ms left at service %" PRIu64 "): raise --expire-in", lease, n);
        lease = scn->lease_floor_ms;
    }
    cvr_wr_kstr (self->wr, "op", "register");
    cvr_wr_kstr (self->wr, "service_id", id);
    cvr_wr_kstr (self->wr, "service_name", name);
    cvr_wr_kstr (self->wr, "service_type", "transform");
    cvr_wr_kstr (self->wr, "endpoint", "tcp://127.0.0.1:9000");
    cvr_wr_kint (self->wr, "lease_ms", lease);
}

//  --------------------------------------------------------------------------
//  The main thread's own requests: lock-step, one control DEALER

static void *
s_dealer (void *ctx, const char *endpoint, int timeout_ms)
{
    void *sock = zmq_socket (ctx, ZMQ_DEALER);
    int zero = 0;
    zmq_setsockopt (sock, ZMQ_LINGER, &zero, sizeof (zero));
    zmq_setsockopt (sock, ZMQ_RCVTIMEO, &timeout_ms, sizeof (timeout_ms));
    zmq_setsockopt (sock, ZMQ_SNDHWM, &zero, sizeof (zero));
    zmq_setsockopt (sock, ZMQ_RCVHWM, &zero, sizeof (zero));
    zmq_connect (sock, endpoint);
    return sock;
}

//  Sends w (a complete request) and returns the decoded ok reply, or NULL
//  (with a message on stderr). Caller destroys.
static cvr_msg_t *
s_call (void *sock, cvr_wr_t *w, const char *what)
{
    zmq_send (sock, cvr_wr_data (w), cvr_wr_size (w), 0);
    zmq_msg_t frame;
    zmq_msg_init (&frame);
    if (zmq_msg_recv (&frame, sock, 0) < 0) {
        fprintf (stderr, "conveyor-bench: %s: no reply in time\n", what);
        zmq_msg_close (&frame);
        return NULL;
    }
    cvr_msg_t *msg = cvr_msg_decode (zmq_msg_data (&frame), zmq_msg_size (&frame));
    zmq_msg_close (&frame);
    const msgpack_object *ok = msg ? cvr_obj_get (cvr_msg_root (msg), "ok") : NULL;
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN || !ok->via.boolean) {
        char *error = msg ? cvr_obj_get_strdup (cvr_msg_root (msg), "error") : NULL;
        char *text = msg ? cvr_obj_get_strdup (cvr_msg_root (msg), "message") : NULL;
        fprintf (stderr, "conveyor-bench: %s: %s %s\n", what, error ? error : "bad reply",
                 text ? text : "");
        free (error);
        free (text);
        cvr_msg_destroy (&msg);
    }
    return msg;
}

static char *
s_events_endpoint (void *control)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "hello");
    cvr_wr_close (w);
    cvr_msg_t *hello = s_call (control, w, "hello");
    char *events = hello ? cvr_obj_get_strdup (cvr_msg_root (hello), "events_endpoint") : NULL;
    cvr_msg_destroy (&hello);
    cvr_wr_destroy (&w);
    return events;
}

static int
s_create_topic (void *control, const char *topic, int partitions)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "create_topic");
    cvr_wr_kstr (w, "topic", topic);
    cvr_wr_kint (w, "partitions", partitions);
    cvr_wr_close (w);
    cvr_msg_t *reply = s_call (control, w, "create_topic");
    cvr_wr_destroy (&w);
    int rc = reply ? 0 : -1;
    cvr_msg_destroy (&reply);
    return rc;
}

//  A SUB on the clients' context, live once a sys/heartbeat (1/s) came.
static void *
s_subscriber (void *ctx, const char *events, const char **prefixes, size_t count)
{
    void *sub = zmq_socket (ctx, ZMQ_SUB);
    int zero = 0, timeout = 3000;
    zmq_setsockopt (sub, ZMQ_LINGER, &zero, sizeof (zero));
    zmq_setsockopt (sub, ZMQ_RCVHWM, &zero, sizeof (zero));
    zmq_setsockopt (sub, ZMQ_RCVTIMEO, &timeout, sizeof (timeout));
    zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "sys/heartbeat", 13);
    for (size_t i = 0; i < count; i++)
        zmq_setsockopt (sub, ZMQ_SUBSCRIBE, prefixes [i], strlen (prefixes [i]));
    zmq_connect (sub, events);
    char topic [64];
    while (true) {
        int size = zmq_recv (sub, topic, sizeof (topic) - 1, 0);
        if (size < 0) {
            fprintf (stderr, "conveyor-bench: no sys/heartbeat on %s\n", events);
            zmq_close (sub);
            return NULL;
        }
        topic [size < (int) sizeof (topic) - 1 ? size : (int) sizeof (topic) - 1] = 0;
        int more = 1;
        zmq_msg_t rest;
        zmq_msg_init (&rest);
        size_t more_size = sizeof (more);
        while (zmq_getsockopt (sub, ZMQ_RCVMORE, &more, &more_size) == 0 && more)
            zmq_msg_recv (&rest, sub, 0);
        zmq_msg_close (&rest);
        if (streq (topic, "sys/heartbeat"))
            return sub;
    }
}

//  Receives one event: topic into `topic`, body into `body` (caller's
//  zmq_msg). 0, or -1 on timeout.
static int
s_recv_event (void *sub, char *topic, size_t topic_size, zmq_msg_t *body)
{
    zmq_msg_t first;
    zmq_msg_init (&first);
    if (zmq_msg_recv (&first, sub, 0) < 0) {
        zmq_msg_close (&first);
        return -1;
    }
    size_t size = zmq_msg_size (&first) < topic_size - 1 ? zmq_msg_size (&first) : topic_size - 1;
    memcpy (topic, zmq_msg_data (&first), size);
    topic [size] = 0;
    bool more = zmq_msg_more (&first);
    zmq_msg_close (&first);
    if (!more)
        return -1;
    return zmq_msg_recv (body, sub, 0) < 0 ? -1 : 0;
}

//  Registers opts->services services svc-0.. through the threads.
static int
s_setup_services (s_run_t *base, int services, s_result_t *r)
{
    s_run_t run = *base;
    run.build = s_req_register_item;
    run.count = (uint64_t) services;
    s_result_t setup = { 0 };
    fprintf (stderr, "conveyor-bench: registering %d services...\n", services);
    if (s_run (&run, &setup, false))
        return -1;
    fprintf (stderr, "conveyor-bench: registered %d services in %.1f s (%.0f/s)\n",
             services, setup.seconds, setup.ops_per_s);
    s_extra (r, ",\"services\":%d,\"setup_register_per_s\":%.0f", services, setup.ops_per_s);
    return 0;
}

//  --------------------------------------------------------------------------
//  Scenarios. Each prints its result lines and appends them to `out`.

typedef struct {
    s_result_t items [S_MAX_SIZES];
    size_t count;
} s_results_t;

static void
s_emit (s_results_t *out, s_result_t *r)
{
    s_print_result (r);
    if (out->count < S_MAX_SIZES)
        out->items [out->count++] = *r;
}

static int
s_scenario_limit (const s_opts_t *opts, void *ctx, s_results_t *out)
{
    s_target_t target;
    if (s_target_start_echo (&target)) {
        fprintf (stderr, "conveyor-bench: the echo server did not start\n");
        return -1;
    }
    s_run_t run = { .endpoint = target.endpoint, .ctx = ctx, .connections = opts->connections,
                    .inflight = opts->inflight, .build = s_req_heartbeat,
                    .services = opts->services };
    s_result_t r = { .scenario = "limit" };
    pid_t server_pid = s_server_pid;
    s_server_pid = 0;               //  the echo server is always ours
    int rc = s_run_window (&run, opts, &r, true);
    s_server_pid = server_pid;
    s_extra (&r, ",\"server\":\"msgpack echo (ROUTER, one thread)\"");
    if (rc == 0)
        s_emit (out, &r);
    s_target_stop (&target);
    return rc;
}

//  heartbeat, register, list: a registry, then pipelined requests.
static int
s_scenario_requests (const s_opts_t *opts, void *ctx, s_target_t *target, s_results_t *out)
{
    s_result_t r = { 0 };
    snprintf (r.scenario, sizeof (r.scenario), "%s", opts->scenario);
    s_run_t run = { .endpoint = target->endpoint, .ctx = ctx, .connections = opts->connections,
                    .inflight = opts->inflight, .services = opts->services };
    long rss_before = s_rss_kb ();
    bool is_register = streq (opts->scenario, "register");
    if (!is_register && s_setup_services (&run, opts->services, &r))
        return -1;
    run.build = is_register ? s_req_register_new
              : streq (opts->scenario, "list") ? s_req_list : s_req_heartbeat;
    if (s_run_window (&run, opts, &r, target->local))
        return -1;
    if (is_register) {
        void *control = s_dealer (ctx, target->endpoint, 10000);
        cvr_wr_t *w = cvr_wr_new ();
        cvr_wr_map (w);
        cvr_wr_kstr (w, "op", "stats");
        cvr_wr_close (w);
        cvr_msg_t *stats = s_call (control, w, "stats");
        s_extra (&r, ",\"services_after\":%" PRId64, stats
                 ? cvr_obj_get_int (cvr_msg_root (stats), "services", -1) : -1);
        cvr_msg_destroy (&stats);
        cvr_wr_destroy (&w);
        zmq_close (control);
    }
    if (streq (opts->scenario, "list"))
        s_extra (&r, ",\"query\":\"service_name + labels.zone\",\"matches_per_query\":%.1f",
                 opts->services / 1000.0);
    if (target->local)
        s_extra (&r, ",\"rss_mb\":%.0f,\"rss_growth_mb\":%.0f", s_rss_kb () / 1024.0,
                 (s_rss_kb () - rss_before) / 1024.0);
    s_emit (out, &r);
    return 0;
}

static int
s_partitions_for (const s_opts_t *opts, int members)
{
    int p = opts->partitions ? opts->partitions : 10 * members;
    return p > 100000 ? 100000 : p;
}

//  Joins members m-0..m-(count-1) to scn's group through the threads.
static int
s_prejoin (s_run_t *base, s_scn_t *scn, int count, double *per_s)
{
    *per_s = 0;
    if (count <= 0)
        return 0;
    s_run_t run = *base;
    run.build = s_req_join;
    run.arg = scn;
    run.count = (uint64_t) count;
    s_result_t r = { 0 };
    if (s_run (&run, &r, false))
        return -1;
    *per_s = r.ops_per_s;
    return 0;
}

//  Big-endian unsigned of n bytes at p [*pos], advancing; -1 if short.
static int
s_mp_be (const uint8_t *p, size_t size, size_t *pos, size_t n, uint64_t *value)
{
    if (size - *pos < n)
        return -1;
    *value = 0;
    for (size_t i = 0; i < n; i++)
        *value = (*value << 8) | p [(*pos)++];
    return 0;
}

//  Skips one msgpack value at p [*pos] without building anything: a
//  1.8 MB assignment event costs microseconds, not a decoded tree.
static int
s_mp_skip (const uint8_t *p, size_t size, size_t *pos)
{
    uint64_t pending = 1;
    while (pending) {
        if (*pos >= size)
            return -1;
        uint8_t b = p [(*pos)++];
        pending--;
        uint64_t len = 0, count = 0, v;
        int rc = 0;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            continue;
        if ((b & 0xf0) == 0x80)
            count = 2 * (uint64_t) (b & 0x0f);
        else
        if ((b & 0xf0) == 0x90)
            count = b & 0x0f;
        else
        if ((b & 0xe0) == 0xa0)
            len = b & 0x1f;
        else
        switch (b) {
            case 0xc4: case 0xd9: rc = s_mp_be (p, size, pos, 1, &len); break;
            case 0xc5: case 0xda: rc = s_mp_be (p, size, pos, 2, &len); break;
            case 0xc6: case 0xdb: rc = s_mp_be (p, size, pos, 4, &len); break;
            case 0xc7: rc = s_mp_be (p, size, pos, 1, &v); len = v + 1; break;
            case 0xc8: rc = s_mp_be (p, size, pos, 2, &v); len = v + 1; break;
            case 0xc9: rc = s_mp_be (p, size, pos, 4, &v); len = v + 1; break;
            case 0xcc: case 0xd0: len = 1; break;
            case 0xcd: case 0xd1: len = 2; break;
            case 0xca: case 0xce: case 0xd2: len = 4; break;
            case 0xcb: case 0xcf: case 0xd3: len = 8; break;
            case 0xd4: len = 2; break;
            case 0xd5: len = 3; break;
            case 0xd6: len = 5; break;
            case 0xd7: len = 9; break;
            case 0xd8: len = 17; break;
            case 0xdc: rc = s_mp_be (p, size, pos, 2, &count); break;
            case 0xdd: rc = s_mp_be (p, size, pos, 4, &count); break;
            case 0xde: rc = s_mp_be (p, size, pos, 2, &v); count = 2 * v; break;
            case 0xdf: rc = s_mp_be (p, size, pos, 4, &v); count = 2 * v; break;
            default: return -1;
        }
        if (rc || len > size - *pos)
            return -1;
        *pos += len;
        pending += count;
    }
    return 0;
}

//  The integer `key` of a top-level msgpack map, or -1.
static int64_t
s_mp_map_int (const uint8_t *p, size_t size, const char *key)
{
    size_t pos = 0, keylen = strlen (key);
    uint64_t pairs = 0;
    if (size == 0)
        return -1;
    uint8_t b = p [pos++];
    if ((b & 0xf0) == 0x80)
        pairs = b & 0x0f;
    else
    if (b == 0xde ? s_mp_be (p, size, &pos, 2, &pairs)
      : b == 0xdf ? s_mp_be (p, size, &pos, 4, &pairs) : -1)
        return -1;
    for (uint64_t i = 0; i < pairs; i++) {
        size_t key_at = pos;
        if (s_mp_skip (p, size, &pos))
            return -1;
        //  A str key: fixstr or str8..32 header, then its bytes.
        size_t header = (p [key_at] & 0xe0) == 0xa0 ? 1 : p [key_at] == 0xd9 ? 2
                      : p [key_at] == 0xda ? 3 : p [key_at] == 0xdb ? 5 : 0;
        bool match = header && pos - key_at - header == keylen
                  && memcmp (p + key_at + header, key, keylen) == 0;
        if (match && pos < size) {
            b = p [pos++];
            uint64_t u;
            if (b <= 0x7f)
                return b;
            if (b >= 0xcc && b <= 0xcf && !s_mp_be (p, size, &pos, (size_t) 1 << (b - 0xcc), &u))
                return (int64_t) u;
            if (b >= 0xd0 && b <= 0xd3 && !s_mp_be (p, size, &pos, (size_t) 1 << (b - 0xd0), &u)) {
                size_t bits = 8 * ((size_t) 1 << (b - 0xd0));
                return bits == 64 ? (int64_t) u
                     : (int64_t) (u ^ (1ULL << (bits - 1))) - (int64_t) (1ULL << (bits - 1));
            }
            return -1;
        }
        if (s_mp_skip (p, size, &pos))
            return -1;
    }
    return -1;
}

//  Waits for group's assignment event with a generation above `above`;
//  returns that generation, or -1 after S_EVENT_WAIT_MS.
static int64_t
s_wait_assignment (void *sub, const char *group, int64_t above, size_t *bytes)
{
    char expected [128], topic [256];
    snprintf (expected, sizeof (expected), "group/%s/assignment", group);
    int64_t deadline = s_mono_ns () + S_EVENT_WAIT_MS * 1000000LL;
    zmq_msg_t body;
    zmq_msg_init (&body);
    int64_t generation = -1;
    while (s_mono_ns () < deadline) {
        if (s_recv_event (sub, topic, sizeof (topic), &body))
            continue;
        if (!streq (topic, expected))
            continue;
        int64_t seen = s_mp_map_int ((const uint8_t *) zmq_msg_data (&body),
                                     zmq_msg_size (&body), "generation");
        if (seen > above) {
            generation = seen;
            *bytes = zmq_msg_size (&body);
            break;
        }
    }
    zmq_msg_close (&body);
    return generation;
}

//  The group's current generation (get_group settles pending rebalances).
static int64_t
s_group_generation (void *control, const char *group)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "get_group");
    cvr_wr_kstr (w, "group_id", group);
    cvr_wr_close (w);
    cvr_msg_t *reply = s_call (control, w, "get_group");
    cvr_wr_destroy (&w);
    int64_t generation = reply ? cvr_obj_get_int (
        cvr_obj_get (cvr_msg_root (reply), "group"), "generation", -1) : -1;
    cvr_msg_destroy (&reply);
    return generation;
}

//  join: per group size N, N-1 members join (pipelined), then rounds: the
//  Nth member joins, timed from sending its join to receiving the new
//  generation's assignment event; then it leaves (timed the same way).
static int
s_scenario_join (const s_opts_t *opts, void *ctx, s_target_t *target, s_results_t *out)
{
    void *control = s_dealer (ctx, target->endpoint, 10000);
    char *events = s_events_endpoint (control);
    const char *prefixes [S_MAX_SIZES];
    char topics [S_MAX_SIZES][64];
    for (size_t i = 0; i < opts->sizes; i++) {
        snprintf (topics [i], sizeof (topics [i]), "group/join-%d/assignment", opts->members [i]);
        prefixes [i] = topics [i];
    }
    void *sub = events ? s_subscriber (ctx, events, prefixes, opts->sizes) : NULL;
    free (events);
    int rc = sub ? 0 : -1;
    cvr_wr_t *w = cvr_wr_new ();
    for (size_t i = 0; rc == 0 && i < opts->sizes; i++) {
        int members = opts->members [i];
        int partitions = s_partitions_for (opts, members);
        s_scn_t scn = { 0 };
        snprintf (scn.group, sizeof (scn.group), "join-%d", members);
        snprintf (scn.topic, sizeof (scn.topic), "join-%d", members);
        s_run_t run = { .endpoint = target->endpoint, .ctx = ctx,
                        .connections = opts->connections, .inflight = opts->inflight };
        double prejoin_per_s;
        if (s_create_topic (control, scn.topic, partitions)
        ||  s_prejoin (&run, &scn, members - 1, &prejoin_per_s)) {
            rc = -1;
            break;
        }
        int64_t generation = s_group_generation (control, scn.group);
        char member [32];
        snprintf (member, sizeof (member), "m-%d", members - 1);
        size_t cap = 1024, joins = 0, leaves = 0, event_bytes = 0;
        int64_t *join_ns = (int64_t *) malloc (cap * sizeof (int64_t));
        int64_t *leave_ns = (int64_t *) malloc (cap * sizeof (int64_t));
        s_cpu_t a, b;
        s_cpu_sample (&a);
        int64_t until = s_mono_ns () + (int64_t) (opts->duration * 1e9);
        while (rc == 0 && s_mono_ns () < until && !zsys_interrupted) {
            for (int leave = 0; leave < 2 && rc == 0; leave++) {
                cvr_wr_reset (w);
                cvr_wr_map (w);
                if (leave) {
                    cvr_wr_kstr (w, "op", "leave_group");
                    cvr_wr_kstr (w, "group_id", scn.group);
                    cvr_wr_kstr (w, "member_id", member);
                }
                else
                    s_write_join (w, scn.group, scn.topic, member);
                cvr_wr_close (w);
                int64_t start = s_mono_ns ();
                zmq_send (control, cvr_wr_data (w), cvr_wr_size (w), 0);
                int64_t seen = s_wait_assignment (sub, scn.group, generation, &event_bytes);
                int64_t took = s_mono_ns () - start;
                zmq_msg_t reply;
                zmq_msg_init (&reply);
                int got = zmq_msg_recv (&reply, control, 0);
                cvr_msg_t *msg = got >= 0 ? cvr_msg_decode (zmq_msg_data (&reply),
                                                           zmq_msg_size (&reply)) : NULL;
                const msgpack_object *ok = msg ? cvr_obj_get (cvr_msg_root (msg), "ok") : NULL;
                bool fine = ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean;
                cvr_msg_destroy (&msg);
                zmq_msg_close (&reply);
                if (seen < 0 || !fine) {
                    fprintf (stderr, "conveyor-bench: join: %s of %s in group of %d: %s\n",
                             leave ? "leave" : "join", member, members,
                             seen < 0 ? "no assignment event within 5 s" : "error reply");
                    rc = -1;
                    break;
                }
                generation = seen;
                if (joins == cap || leaves == cap) {
                    cap *= 2;
                    join_ns = (int64_t *) realloc (join_ns, cap * sizeof (int64_t));
                    leave_ns = (int64_t *) realloc (leave_ns, cap * sizeof (int64_t));
                }
                if (leave)
                    leave_ns [leaves++] = took;
                else
                    join_ns [joins++] = took;
            }
        }
        s_cpu_sample (&b);
        if (rc == 0) {
            s_result_t r = { .scenario = "join" };
            r.connections = 1;
            r.inflight = 1;
            r.seconds = (double) (b.mono - a.mono) / 1e9;
            r.ops = joins + leaves;
            r.ops_per_s = r.seconds > 0 ? (double) r.ops / r.seconds : 0;
            s_set_percentiles (&r, join_ns, joins);
            s_cpu_result (&r, &a, &b, target->local);
            qsort (leave_ns, leaves, sizeof (int64_t), s_cmp_int64);
            s_extra (&r, ",\"members\":%d,\"partitions\":%d,\"rounds\":%zu,"
                     "\"event_bytes\":%zu,\"leave_p50_us\":%.1f,\"leave_max_us\":%.1f,"
                     "\"prejoin_connections\":%d,\"prejoin_inflight\":%d,"
                     "\"prejoin_joins_per_s\":%.0f,\"latency\":\"join sent -> assignment event\"",
                     members, partitions, joins, event_bytes,
                     s_percentile (leave_ns, leaves, 0.5) / 1e3,
                     leaves ? leave_ns [leaves - 1] / 1e3 : 0.0,
                     opts->connections, opts->inflight, prejoin_per_s);
            s_emit (out, &r);
        }
        free (join_ns);
        free (leave_ns);
    }
    cvr_wr_destroy (&w);
    if (sub)
        zmq_close (sub);
    zmq_close (control);
    return rc;
}

static void
s_scn_free_members (s_scn_t *scn)
{
    for (int m = 0; m < scn->members; m++)
        free (scn->owned [m]);
    free (scn->owned);
    free (scn->owned_count);
    free (scn->member_ids);
}

//  Reads the group's generation and every member's partitions.
static int
s_read_group (void *control, s_scn_t *scn)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "get_group");
    cvr_wr_kstr (w, "group_id", scn->group);
    cvr_wr_close (w);
    cvr_msg_t *reply = s_call (control, w, "get_group");
    cvr_wr_destroy (&w);
    if (!reply)
        return -1;
    const msgpack_object *group = cvr_obj_get (cvr_msg_root (reply), "group");
    const msgpack_object *members = cvr_obj_get (group, "members");
    scn->generation = cvr_obj_get_int (group, "generation", -1);
    if (!members || members->type != MSGPACK_OBJECT_ARRAY || members->via.array.size == 0) {
        cvr_msg_destroy (&reply);
        return -1;
    }
    scn->members = (int) members->via.array.size;
    scn->member_ids = (char (*) [32]) calloc ((size_t) scn->members, 32);
    scn->owned = (int64_t **) calloc ((size_t) scn->members, sizeof (int64_t *));
    scn->owned_count = (size_t *) calloc ((size_t) scn->members, sizeof (size_t));
    for (int m = 0; m < scn->members; m++) {
        const msgpack_object *member = &members->via.array.ptr [m];
        char *id = cvr_obj_get_strdup (member, "member_id");
        snprintf (scn->member_ids [m], 32, "%s", id ? id : "?");
        free (id);
        const msgpack_object *assignment = cvr_obj_get (member, "assignment");
        size_t count = assignment && assignment->type == MSGPACK_OBJECT_ARRAY
                     ? assignment->via.array.size : 0;
        scn->owned [m] = (int64_t *) calloc (count + 1, sizeof (int64_t));
        for (size_t i = 0; i < count; i++) {
            const msgpack_object *pair = &assignment->via.array.ptr [i];
            int64_t partition = 0;
            if (pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size == 2)
                cvr_obj_int (&pair->via.array.ptr [1], &partition);
            scn->owned [m][scn->owned_count [m]++] = partition;
        }
    }
    cvr_msg_destroy (&reply);
    return 0;
}

//  commit: per group size N, N members join, then pipelined commit_offsets
//  of each member's whole assignment at the current generation.
static int
s_scenario_commit (const s_opts_t *opts, void *ctx, s_target_t *target, s_results_t *out)
{
    void *control = s_dealer (ctx, target->endpoint, 10000);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < opts->sizes; i++) {
        int members = opts->members [i];
        int partitions = s_partitions_for (opts, members);
        s_scn_t scn = { 0 };
        snprintf (scn.group, sizeof (scn.group), "commit-%d", members);
        snprintf (scn.topic, sizeof (scn.topic), "commit-%d", members);
        s_run_t run = { .endpoint = target->endpoint, .ctx = ctx,
                        .connections = opts->connections, .inflight = opts->inflight };
        double prejoin_per_s;
        if (s_create_topic (control, scn.topic, partitions)
        ||  s_prejoin (&run, &scn, members, &prejoin_per_s)
        ||  s_read_group (control, &scn)) {
            rc = -1;
            break;
        }
        run.build = s_req_commit;
        run.arg = &scn;
        s_result_t r = { .scenario = "commit" };
        rc = s_run_window (&run, opts, &r, target->local);
        if (rc == 0) {
            double per_commit = (double) partitions / scn.members;
            s_extra (&r, ",\"members\":%d,\"partitions\":%d,\"offsets_per_commit\":%.1f,"
                     "\"offsets_per_s\":%.0f", scn.members, partitions, per_commit,
                     r.ops_per_s * per_commit);
            s_emit (out, &r);
        }
        s_scn_free_members (&scn);
    }
    zmq_close (control);
    return rc;
}

//  The lock-step probe of `expire`: heartbeats of one long-lived service,
//  each one's send time (Unix ns) and latency kept.
typedef struct {
    void *ctx;
    const char *endpoint;
    atomic_bool stop;
    int64_t *sent, *lat;
    size_t count, cap;
    bool failed;
} s_probe_t;

static void *
s_probe_main (void *arg)
{
    s_probe_t *self = (s_probe_t *) arg;
    pthread_setname_np (pthread_self (), "bench-probe");
    void *sock = s_dealer (self->ctx, self->endpoint, 30000);
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "heartbeat");
    cvr_wr_kstr (w, "service_id", "probe-0");
    cvr_wr_close (w);
    zmq_msg_t reply;
    zmq_msg_init (&reply);
    while (!atomic_load (&self->stop) && !zsys_interrupted) {
        int64_t wall = s_wall_ns (), start = s_mono_ns ();
        zmq_send (sock, cvr_wr_data (w), cvr_wr_size (w), 0);
        if (zmq_msg_recv (&reply, sock, 0) < 0) {
            self->failed = true;
            break;
        }
        int64_t took = s_mono_ns () - start;
        if (self->count == self->cap) {
            self->cap = self->cap ? 2 * self->cap : 65536;
            self->sent = (int64_t *) realloc (self->sent, self->cap * sizeof (int64_t));
            self->lat = (int64_t *) realloc (self->lat, self->cap * sizeof (int64_t));
        }
        self->sent [self->count] = wall;
        self->lat [self->count++] = took;
        //  A request every ~200 us: a client that keeps asking, not a load.
        struct timespec pause = { 0, 200000 };
        nanosleep (&pause, NULL);
    }
    zmq_msg_close (&reply);
    cvr_wr_destroy (&w);
    zmq_close (sock);
    return NULL;
}

//  Latencies of probe requests sent in [from, to) (Unix ns), sorted into r.
static size_t
s_probe_window (s_probe_t *probe, int64_t from, int64_t to, s_result_t *r)
{
    int64_t *lat = (int64_t *) malloc ((probe->count + 1) * sizeof (int64_t));
    size_t n = 0;
    for (size_t i = 0; i < probe->count; i++)
        if (probe->sent [i] >= from && probe->sent [i] < to)
            lat [n++] = probe->lat [i];
    s_set_percentiles (r, lat, n);
    free (lat);
    return n;
}

//  expire: --services services whose leases all run out at one instant;
//  then no heartbeats. Timed from the first deadline (read back from the
//  events' records: last_heartbeat_at + 2 x lease_ms) to the last
//  `expired` event received; meanwhile a lock-step client's latency.
static int
s_scenario_expire (const s_opts_t *opts, void *ctx, s_target_t *target, s_results_t *out)
{
    int services = opts->services;
    void *control = s_dealer (ctx, target->endpoint, 10000);
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "register");
    cvr_wr_kstr (w, "service_id", "probe-0");
    cvr_wr_kstr (w, "service_name", "probe");
    cvr_wr_kstr (w, "service_type", "sink");
    cvr_wr_kstr (w, "endpoint", "tcp://127.0.0.1:9");
    cvr_wr_kint (w, "lease_ms", 600000);
    cvr_wr_close (w);
    cvr_msg_t *reply = s_call (control, w, "register probe-0");
    cvr_wr_destroy (&w);
    char *events = reply ? s_events_endpoint (control) : NULL;
    cvr_msg_destroy (&reply);
    //  Expired events only: one subscription per name.
    char names [100][48];
    const char *prefixes [100];
    for (int i = 0; i < 100; i++) {
        snprintf (names [i], sizeof (names [i]), "service/exp-%d/expired", i);
        prefixes [i] = names [i];
    }
    void *sub = events ? s_subscriber (ctx, events, prefixes, 100) : NULL;
    free (events);
    if (!sub) {
        zmq_close (control);
        return -1;
    }
    s_scn_t scn = { .lease_floor_ms = 100 };
    int64_t expire_in = opts->expire_in_ms ? opts->expire_in_ms : 2000 + services / 10;
    scn.expire_at = zclock_time () + expire_in;
    s_run_t run = { .endpoint = target->endpoint, .ctx = ctx, .connections = opts->connections,
                    .inflight = opts->inflight, .build = s_req_register_expiring,
                    .count = (uint64_t) services, .arg = &scn };
    s_result_t setup = { 0 };
    fprintf (stderr, "conveyor-bench: registering %d services expiring in %" PRId64 " ms...\n",
             services, expire_in);
    int rc = s_run (&run, &setup, false);
    fprintf (stderr, "conveyor-bench: registered in %.1f s (%.0f/s)\n", setup.seconds,
             setup.ops_per_s);
    s_probe_t probe = { .ctx = ctx, .endpoint = target->endpoint };
    atomic_init (&probe.stop, false);
    pthread_t probe_thread;
    if (rc == 0)
        pthread_create (&probe_thread, NULL, s_probe_main, &probe);
    //  Receive until every service expired or 20 s past the deadline.
    s_cpu_t a = { 0 }, b = { 0 };
    int64_t first_deadline = INT64_MAX, last_deadline = 0, first_at = 0, last_at = 0;
    uint64_t received = 0, gaps = 0, last_seq = 0;
    zmq_msg_t body;
    zmq_msg_init (&body);
    msgpack_zone zone;
    msgpack_zone_init (&zone, 8192);
    char topic [256];
    bool sampled = false;
    while (rc == 0 && received < (uint64_t) services && !zsys_interrupted) {
        int64_t now_ms = zclock_time ();
        if (!sampled && now_ms >= scn.expire_at - 200) {
            s_cpu_sample (&a);      //  just before the deadline
            sampled = true;
        }
        if (now_ms > scn.expire_at + 20000)
            break;
        zmq_pollitem_t item = { sub, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, 50) <= 0)
            continue;
        if (s_recv_event (sub, topic, sizeof (topic), &body) || !strstr (topic, "/expired"))
            continue;
        int64_t at = s_wall_ns ();
        msgpack_object obj;
        size_t offset = 0;
        msgpack_zone_clear (&zone);
        if (msgpack_unpack ((const char *) zmq_msg_data (&body), zmq_msg_size (&body), &offset,
                            &zone, &obj) != MSGPACK_UNPACK_SUCCESS)
            continue;
        const msgpack_object *service = cvr_obj_get (&obj, "service");
        int64_t deadline = (cvr_obj_get_int (service, "last_heartbeat_at", 0)
                            + 2 * cvr_obj_get_int (service, "lease_ms", 0)) * 1000000LL;
        uint64_t seq = (uint64_t) cvr_obj_get_int (&obj, "seq", 0);
        if (received && seq != last_seq + 1)
            gaps++;             //  other events between (health lapses) are fine
        last_seq = seq;
        first_deadline = deadline < first_deadline ? deadline : first_deadline;
        last_deadline = deadline > last_deadline ? deadline : last_deadline;
        if (!received)
            first_at = at;
        last_at = at;
        received++;
    }
    s_cpu_sample (&b);
    if (!sampled)
        a = b;
    msgpack_zone_destroy (&zone);
    zmq_msg_close (&body);
    if (rc == 0) {
        usleep (200000);        //  probes after the burst, for the record
        atomic_store (&probe.stop, true);
        pthread_join (probe_thread, NULL);
    }
    if (rc == 0 && received) {
        s_result_t r = { .scenario = "expire", .connections = 1, .inflight = 1 };
        r.ops = received;
        r.seconds = (double) (last_at - first_deadline) / 1e9;
        r.ops_per_s = last_at > first_at ? (double) received / ((double) (last_at - first_at) / 1e9) : 0;
        s_result_t baseline = { 0 };
        size_t before = s_probe_window (&probe, first_deadline - 1000000000LL, first_deadline,
                                        &baseline);
        size_t during = s_probe_window (&probe, first_deadline, last_at, &r);
        s_cpu_result (&r, &a, &b, target->local);
        s_extra (&r, ",\"services\":%d,\"expired\":%" PRIu64 ",\"missing\":%" PRIu64
                 ",\"deadline_spread_ms\":%.1f,\"first_expired_after_ms\":%.1f"
                 ",\"all_expired_after_ms\":%.1f,\"after_last_deadline_ms\":%.1f"
                 ",\"register_per_s\":%.0f"
                 ",\"probe_requests_during\":%zu,\"probe_before_p50_us\":%.1f"
                 ",\"probe_before_max_us\":%.1f,\"probe_requests_before\":%zu"
                 ",\"latency\":\"lock-step heartbeat sent between the first deadline and the "
                 "last expired event\",\"cpu_window\":\"deadline-200ms to last event\"",
                 services, received, (uint64_t) services - received,
                 (last_deadline - first_deadline) / 1e6, (first_at - first_deadline) / 1e6,
                 (last_at - first_deadline) / 1e6, (last_at - last_deadline) / 1e6,
                 setup.ops_per_s, during,
                 baseline.p50 / 1e3, baseline.max / 1e3, before);
        if (gaps && received < (uint64_t) services)
            s_extra (&r, ",\"seq_gaps\":%" PRIu64, gaps);
        s_emit (out, &r);
        if (received < (uint64_t) services)
            fprintf (stderr, "conveyor-bench: expire: %" PRIu64 " expired events never came\n",
                     (uint64_t) services - received);
    }
    else
    if (rc == 0) {
        fprintf (stderr, "conveyor-bench: expire: no expired event within 20 s\n");
        rc = -1;
    }
    free (probe.sent);
    free (probe.lat);
    zmq_close (sub);
    zmq_close (control);
    return rc;
}

//  --------------------------------------------------------------------------
//  --compare: the scenario's figures over the echo server's

static bool
s_is_throughput (const char *scenario)
{
    return streq (scenario, "heartbeat") || streq (scenario, "register")
        || streq (scenario, "list") || streq (scenario, "commit");
}

static void
s_print_compare (const s_result_t *limit, const s_result_t *r)
{
    printf ("{\"compare\":\"%s\",\"baseline\":\"limit\",\"connections\":%d,\"inflight\":%d",
            r->scenario, limit->connections, limit->inflight);
    if (s_is_throughput (r->scenario))
        printf (",\"ops_per_s\":%.0f,\"limit_ops_per_s\":%.0f,\"ops_ratio\":%.3f",
                r->ops_per_s, limit->ops_per_s,
                limit->ops_per_s > 0 ? r->ops_per_s / limit->ops_per_s : 0);
    printf (",\"p50_ratio\":%.2f,\"p99_ratio\":%.2f,\"max_ratio\":%.2f",
            limit->p50 ? (double) r->p50 / (double) limit->p50 : 0,
            limit->p99 ? (double) r->p99 / (double) limit->p99 : 0,
            limit->max ? (double) r->max / (double) limit->max : 0);
    if (s_is_throughput (r->scenario) && r->have_cpu && limit->have_cpu && limit->server_us > 0)
        printf (",\"server_cpu_ratio\":%.2f", r->server_us / limit->server_us);
    const char *extra = strstr (r->extra, "\"members\":");
    if (extra)
        printf (",%.*s", (int) strcspn (extra, ","), extra);
    printf ("}\n");
    fflush (stdout);
}

static int
s_run_scenarios (const s_opts_t *opts)
{
    void *ctx = zmq_ctx_new ();     //  the clients': their own I/O thread
    int rc = 0;
    s_results_t limits = { 0 }, results = { 0 };
    if (opts->compare && !streq (opts->scenario, "limit")) {
        //  Latency scenarios compare with the lock-step round trip.
        s_opts_t limit_opts = *opts;
        if (!s_is_throughput (opts->scenario))
            limit_opts.connections = limit_opts.inflight = 1;
        limit_opts.services = opts->services < 1000000 ? opts->services : 1000000;
        rc = s_scenario_limit (&limit_opts, ctx, &limits);
    }
    if (rc == 0 && streq (opts->scenario, "limit"))
        rc = s_scenario_limit (opts, ctx, &results);
    else
    if (rc == 0) {
        s_target_t target;
        if (s_target_start_server (&target, opts))
            rc = -1;
        else
        if (streq (opts->scenario, "join"))
            rc = s_scenario_join (opts, ctx, &target, &results);
        else
        if (streq (opts->scenario, "commit"))
            rc = s_scenario_commit (opts, ctx, &target, &results);
        else
        if (streq (opts->scenario, "expire"))
            rc = s_scenario_expire (opts, ctx, &target, &results);
        else
            rc = s_scenario_requests (opts, ctx, &target, &results);
        s_target_stop (&target);
    }
    for (size_t i = 0; limits.count && i < results.count; i++)
        s_print_compare (&limits.items [0], &results.items [i]);
    zmq_ctx_term (ctx);
    return rc ? 1 : 0;
}

//  --soak: bench_soak against the in-process server (whose RSS is this
//  process's) or --endpoint (RSS of --server-pid, when given).
static int
s_run_soak (const s_opts_t *opts, int seconds)
{
    if (seconds < 3 || opts->scenario) {
        fprintf (stderr, "conveyor-bench: --soak takes SECONDS >= 3 and no scenario\n");
        return 2;
    }
    //  A history ring small enough to be full by the end of the warm-up:
    //  the RSS growth after it is then what nothing bounds.
    s_opts_t soak_opts = *opts;
    soak_opts.history = "2048";
    s_target_t target;
    int rc = 1;
    if (s_target_start_server (&target, &soak_opts) == 0)
        rc = bench_soak (target.endpoint, seconds,
                         opts->endpoint ? (int) s_server_pid : (int) getpid ());
    s_target_stop (&target);
    return rc ? 1 : 0;
}

//  ==========================================================================

static const char *s_usage =
"Usage: conveyor-bench [SCENARIO] [options]\n"
"\n"
"Without a SCENARIO: the classic run. Registers --services N services\n"
"[10000], then heartbeat, get_service and list_services (name + label)\n"
"phases of --requests each [100000] through one DEALER with --window\n"
"requests in flight [64], and a lock-step heartbeat phase for latency;\n"
"then a group of --group-members [1000] over one topic of --partitions\n"
"[10000] rebalances --rounds times [20] (one member leaves or rejoins),\n"
"timed from the request to the assignment event on a SUB socket\n"
"(--group-members 0 skips it). One line per phase, --json for JSON lines.\n"
"\n"
"SCENARIOs print one JSON line per result: ops/s, p50/p90/p99/p999/max\n"
"latency (us) and, when the server is in this process, its CPU per\n"
"operation (server_cpu_us_per_op = the server's thread plus the libzmq\n"
"threads of its context, read from /proc/self/task/TID/schedstat).\n"
"  limit      a bare ROUTER msgpack echo server in this process (decodes each\n"
"             body, replies {ok, rid, lease_ms, health}): the transport's\n"
"             limit on this machine, fed the heartbeat requests\n"
"  heartbeat  --services registered, then heartbeats of random ones\n"
"  register   registrations of new services (ids never repeat)\n"
"  list       list_services by service_name and a label (--services\n"
"             registered over 100 names and 10 zones: services/1000 matches)\n"
"  join       per group size in --members: size-1 members join (pipelined),\n"
"             then rounds where the last member joins and leaves, timed from\n"
"             sending the request to receiving the new generation's\n"
"             assignment event; --duration per size\n"
"  expire     --services [100000] services whose leases all end at one\n"
"             instant (each asks lease = (deadline - now) / 2), no more\n"
"             heartbeats; time from the first deadline to the last expired\n"
"             event, and a lock-step client's latency meanwhile (max)\n"
"  commit     per group size in --members: the members join, then pipelined\n"
"             commit_offsets of each member's partitions at the current\n"
"             generation; --duration per size\n"
"\n"
"Options:\n"
"  -c, --connections N  client threads, one DEALER each [16]\n"
"  -k, --inflight K     requests in flight per connection [64]\n"
"  -d, --duration S     seconds measured, after the warm-up [5]\n"
"      --warmup S       seconds run before measuring [1]\n"
"  -s, --services M     services registered first [10000; expire: 100000]\n"
"      --members LIST   group sizes for join and commit [10,100,1000]\n"
"  -p, --partitions P   partitions of each group's topic [10 per member;\n"
"                       the classic run: 10000]\n"
"      --expire-in MS   expire: the common deadline, from the start of\n"
"                       registration [2000 + services / 10]\n"
"      --compare        run `limit` first (same connections x in flight; 1 x 1\n"
"                       for join and expire, whose figures are latencies),\n"
"                       then the scenario, and print their ratios\n"
"  -e, --endpoint EP    use a running coordinator instead of one in this\n"
"                       process (no server CPU then, but see --server-pid;\n"
"                       `limit` is always in this process).\n"
"                       It must accept 600 s leases (and leases down to 100 ms\n"
"                       for expire) and the services asked for\n"
"      --server-pid PID with --endpoint: the daemon's process on this machine,\n"
"                       whose threads' CPU is then read (/proc/PID/task)\n"
"      --soak SECONDS   instead of a scenario: 1,000 simulated services\n"
"                       (register, heartbeat, crash without deregistering,\n"
"                       register again) and 50 members churning over 10 groups\n"
"                       for SECONDS; exits 1 unless no unexpected protocol\n"
"                       error, every assignment event kept the invariants of\n"
"                       protocol section 5, every request was answered and\n"
"                       the server's RSS grew < 5% after warm-up (the first\n"
"                       third). In-process server (--history 2048, so its\n"
"                       ring is full by then): this process's RSS; with\n"
"                       --endpoint, --server-pid's (not checked without it)\n"
"The in-process server binds tcp://127.0.0.1:* with log-level warn,\n"
"min-lease-ms 100, max-lease-ms 600000, max-services 10000000.\n"
"Fields: ops and ops_per_s count replies received in the window (join:\n"
"joins + leaves; expire: expired events, per s between the first and the\n"
"last); p50..max_us are latencies of requests sent in the window (join: of\n"
"the joins; expire: of the lock-step client's requests); samples, errors\n"
"(error replies) and lost (never answered). With the server's CPU:\n"
"server_cpu_us_per_op = server_thread_us_per_op (the actor) +\n"
"server_zmq_io_us_per_op (libzmq's I/O and reaper threads of its context);\n"
"client_cpu_us_per_op is the rest of this process (client threads, their\n"
"own context's I/O thread). cpu_cores_busy is this process's CPU over wall\n"
"time and other_processes_cores the rest of the machine's (from /proc/stat):\n"
"a figure taken while other_processes_cores is high is not comparable.\n"
"Scenarios add their own fields (services, members, partitions, ...).\n"
"Classic run only: -n, --requests N; -w, --window N; -j, --json;\n"
"  -g, --group-members N; -r, --rounds N.\n"
"Examples:\n"
"  conveyor-bench heartbeat --compare -c 16 -k 64\n"
"  conveyor-bench join --members 10,100,1000 -d 3\n"
"  conveyor-bench expire --services 100000\n"
"  conveyor-bench --soak 30\n";

int
main (int argc, char *argv [])
{
    s_opts_t opts = { .connections = 16, .inflight = 64, .duration = 5, .warmup = 1,
                      .services = 10000, .members = { 10, 100, 1000 }, .sizes = 3 };
    int requests = 100000, window = 64, group_members = 1000, rounds = 20;
    int soak_seconds = 0;
    bool json = false, partitions_set = false;
    static struct option longopts [] = {
        { "endpoint", required_argument, 0, 'e' }, { "services", required_argument, 0, 's' },
        { "requests", required_argument, 0, 'n' }, { "window", required_argument, 0, 'w' },
        { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' },
        { "group-members", required_argument, 0, 'g' },
        { "partitions", required_argument, 0, 'p' },
        { "rounds", required_argument, 0, 'r' },
        { "connections", required_argument, 0, 'c' },
        { "inflight", required_argument, 0, 'k' },
        { "duration", required_argument, 0, 'd' },
        { "warmup", required_argument, 0, 'W' },
        { "members", required_argument, 0, 'm' },
        { "expire-in", required_argument, 0, 'x' },
        { "compare", no_argument, 0, 'C' },
        { "server-pid", required_argument, 0, 'P' },
        { "soak", required_argument, 0, 'S' }, { 0, 0, 0, 0 }
    };
    int c;
    while ((c = getopt_long (argc, argv, "e:s:n:w:jhg:p:r:c:k:d:", longopts, NULL)) != -1) {
        switch (c) {
            case 'e': opts.endpoint = optarg; break;
            case 's': opts.services = atoi (optarg); opts.services_set = true; break;
            case 'n': requests = atoi (optarg); break;
            case 'w': window = atoi (optarg); break;
            case 'j': json = true; break;
            case 'g': group_members = atoi (optarg); break;
            case 'p': opts.partitions = atoi (optarg); partitions_set = true; break;
            case 'r': rounds = atoi (optarg); break;
            case 'c': opts.connections = atoi (optarg); break;
            case 'k': opts.inflight = atoi (optarg); break;
            case 'd': opts.duration = atof (optarg); break;
            case 'W': opts.warmup = atof (optarg); break;
            case 'x': opts.expire_in_ms = atoll (optarg); break;
            case 'C': opts.compare = true; break;
            case 'P': s_server_pid = (pid_t) atoi (optarg); break;
            case 'S': soak_seconds = atoi (optarg); break;
            case 'm': {
                opts.sizes = 0;
                char *copy = strdup (optarg), *save = NULL;
                for (char *item = strtok_r (copy, ",", &save); item;
                     item = strtok_r (NULL, ",", &save))
                    if (opts.sizes < S_MAX_SIZES)
                        opts.members [opts.sizes++] = atoi (item);
                free (copy);
                break;
            }
            case 'h':
                fputs (s_usage, stdout);
                return 0;
            default:
                fprintf (stderr, "conveyor-bench: bad option (see --help)\n");
                return 2;
        }
    }
    if (optind < argc)
        opts.scenario = argv [optind++];
    if (optind < argc) {
        fprintf (stderr, "conveyor-bench: one scenario at most (see --help)\n");
        return 2;
    }
    zsys_init ();
    zsys_set_logstream (stderr);
    if (soak_seconds)
        return s_run_soak (&opts, soak_seconds);
    if (!opts.scenario)
        return s_classic_run (opts.endpoint, opts.services, requests, window, group_members,
                              partitions_set ? opts.partitions : 10000, rounds, json);
    const char *known [] = { "limit", "heartbeat", "register", "list", "join", "expire",
                             "commit", NULL };
    bool found = false;
    for (int i = 0; known [i]; i++)
        found = found || streq (opts.scenario, known [i]);
    if (!found) {
        fprintf (stderr, "conveyor-bench: unknown scenario '%s' (see --help)\n", opts.scenario);
        return 2;
    }
    if (streq (opts.scenario, "expire") && !opts.services_set)
        opts.services = 100000;
    bool sizes_ok = opts.sizes > 0;
    for (size_t i = 0; i < opts.sizes; i++)
        sizes_ok = sizes_ok && opts.members [i] >= 1 && opts.members [i] <= 100000;
    if (s_server_pid && (!opts.endpoint || kill (s_server_pid, 0))) {
        fprintf (stderr, "conveyor-bench: --server-pid needs --endpoint and a live process\n");
        return 2;
    }
    if (opts.connections < 1 || opts.connections > 1024 || opts.inflight < 1
    ||  opts.inflight > 65536 || opts.duration <= 0 || opts.warmup < 0 || opts.services < 1
    ||  opts.partitions < 0 || opts.partitions > 100000 || !sizes_ok
    ||  opts.expire_in_ms < 0) {
        fprintf (stderr, "conveyor-bench: --connections 1..1024, --inflight 1..65536,\n"
                 "  --duration > 0, --warmup >= 0, --services >= 1, --partitions 0..100000,\n"
                 "  --members sizes 1..100000 (at most %d), --expire-in >= 0\n", S_MAX_SIZES);
        return 2;
    }
    return s_run_scenarios (&opts);
}
