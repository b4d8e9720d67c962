/*  conveyor-bench: measures the coordinator over its real sockets.

    Starts a coordinator in-process on ephemeral loopback ports (or uses
    --endpoint), then runs phases, each for a number of requests, through
    one DEALER with a window of requests in flight:
      register    N services (names spread over 100, two labels each)
      heartbeat   random services, health unchanged (soft state)
      get         get_service of random services
      list        list_services by name and label (indexed query)
    and a lock-step phase (window 1) for round-trip latency percentiles.
    Prints one line per phase; --json for a machine-readable summary.
*/
#include "conveyor/conveyor.h"
#include "cvr_proto.h"
#include <getopt.h>

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

int
main (int argc, char *argv [])
{
    const char *endpoint = NULL;
    int services = 10000, requests = 100000, window = 64;
    int group_members = 1000, partitions = 10000, rounds = 20;
    bool json = false;
    static struct option longopts [] = {
        { "endpoint", required_argument, 0, 'e' }, { "services", required_argument, 0, 's' },
        { "requests", required_argument, 0, 'n' }, { "window", required_argument, 0, 'w' },
        { "json", no_argument, 0, 'j' }, { "help", no_argument, 0, 'h' },
        { "group-members", required_argument, 0, 'g' },
        { "partitions", required_argument, 0, 'p' },
        { "rounds", required_argument, 0, 'r' }, { 0, 0, 0, 0 }
    };
    int c;
    while ((c = getopt_long (argc, argv, "e:s:n:w:jhg:p:r:", longopts, NULL)) != -1) {
        switch (c) {
            case 'e': endpoint = optarg; break;
            case 's': services = atoi (optarg); break;
            case 'n': requests = atoi (optarg); break;
            case 'w': window = atoi (optarg); break;
            case 'j': json = true; break;
            case 'g': group_members = atoi (optarg); break;
            case 'p': partitions = atoi (optarg); break;
            case 'r': rounds = atoi (optarg); break;
            case 'h':
                printf ("Usage: conveyor-bench [--endpoint EP] [--services N] [--requests N]\n"
                        "                      [--window N] [--json]\n"
                        "Without --endpoint, starts a coordinator in this process on\n"
                        "ephemeral loopback ports. Registers N services [10000], then runs\n"
                        "heartbeat, get_service and list_services (name + label) phases of\n"
                        "--requests each [100000] with --window requests in flight [64],\n"
                        "and a lock-step heartbeat phase for latency. The target must accept\n"
                        "N services with 600 s leases (its --max-lease-ms clamps them).\n"
                        "Then a group of --group-members [1000] over one topic of\n"
                        "--partitions [10000] rebalances --rounds times [20] (one member\n"
                        "leaves or rejoins), timed from the request to the assignment\n"
                        "event on a SUB socket. --group-members 0 skips it.\n");
                return 0;
            default:
                fprintf (stderr, "conveyor-bench: bad option (see --help)\n");
                return 2;
        }
    }
    if (services < 1 || requests < 100 || window < 1 || group_members < 0
    ||  partitions < 1 || partitions > 100000 || rounds < 1) {
        fprintf (stderr, "conveyor-bench: --services >= 1, --requests >= 100, --window >= 1,\n"
                 "  --group-members >= 0, --partitions 1..100000, --rounds >= 1\n");
        return 2;
    }
    zsys_init ();
    zsys_set_logstream (stderr);
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
