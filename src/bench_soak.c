/*  bench_soak.c: a long mixed load with its checks; see bench_soak.h. */
#include "bench_soak.h"
#include "conveyor/conveyor.h"
#include "cvr_proto.h"

#define SOAK_SERVICES   1000
#define SOAK_MEMBERS    50
#define SOAK_GROUPS     10
#define SOAK_PARTITIONS 12
#define SOAK_LEASE_MS   1000    //  services crash for 2.5 leases: they expire
#define SOAK_SESSION_MS 1000
#define SOAK_TICK_MS    100

typedef enum { SVC_DOWN, SVC_UP, SVC_CRASHED } svc_state_t;

typedef struct {
    svc_state_t state;
    int64_t until;              //  crashed until (then registers again)
    int64_t beat_at;            //  next heartbeat (lease / 3 after the last)
} svc_t;

typedef struct {
    bool joined;
    int group;
    char member_id [64];
    int64_t generation;
    int64_t until;              //  crashed until
    int64_t beat_at;            //  next group heartbeat (session / 3)
} member_t;

typedef struct {
    zsock_t *dealer;            //  all requests, pipelined, replies by rid
    zsock_t *sub;               //  group/ assignment events
    cvr_wr_t *w;
    uint32_t rng;
    int64_t rid;
    svc_t services [SOAK_SERVICES];
    member_t members [SOAK_MEMBERS];
    zhashx_t *inflight;         //  rid -> what it was (static string)
    uint64_t requests, expected_errors, unexpected_errors;
    uint64_t assignments, violations;
    char first_violation [256];
    char first_error [256];
} soak_t;

static uint32_t
s_rand (soak_t *self)
{
    self->rng = self->rng * 1664525u + 1013904223u;
    return self->rng >> 8;
}

//  Sends the request in self->w (an open map) with a rid; `what` says
//  which errors are expected for it.
static void
s_drain (soak_t *self, int wait_ms);

//  Requests in flight at most: the server's ROUTER drops replies past its
//  high-water mark (1,000) for a peer that does not read them, as it must.
#define SOAK_WINDOW     500

static void
s_send (soak_t *self, const char *what)
{
    //  A client with a window, as cvr_client and the bindings have: read
    //  replies before sending more (bounded: 5 s).
    for (int guard = 0; zhashx_size (self->inflight) >= SOAK_WINDOW && guard < 1000; guard++)
        s_drain (self, 5);
    char key [32];
    snprintf (key, sizeof key, "%" PRId64, ++self->rid);
    cvr_wr_kint (self->w, "rid", self->rid);
    cvr_wr_close (self->w);
    zmq_send (zsock_resolve (self->dealer), cvr_wr_data (self->w), cvr_wr_size (self->w), 0);
    zhashx_insert (self->inflight, key, (void *) what);
    self->requests++;
}

static void
s_begin (soak_t *self, const char *op)
{
    cvr_wr_reset (self->w);
    cvr_wr_map (self->w);
    cvr_wr_kstr (self->w, "op", op);
}

static void
s_service_request (soak_t *self, int i, const char *op)
{
    char id [32];
    snprintf (id, sizeof id, "soak-svc-%04d", i);
    s_begin (self, op);
    cvr_wr_kstr (self->w, "service_id", id);
    if (streq (op, "register")) {
        cvr_wr_kstr (self->w, "service_name", i % 2 ? "soak-a" : "soak-b");
        cvr_wr_kstr (self->w, "service_type", "transform");
        cvr_wr_kstr (self->w, "endpoint", "tcp://127.0.0.1:1");
        cvr_wr_kint (self->w, "lease_ms", SOAK_LEASE_MS);
    }
    //  A crashed service's lease may already be gone: NOT_FOUND expected.
    s_send (self, streq (op, "heartbeat") ? "heartbeat" : op);
}

static void
s_member_request (soak_t *self, int i, const char *op)
{
    member_t *m = &self->members [i];
    char group [32];
    snprintf (group, sizeof group, "soak-g%d", m->group);
    s_begin (self, op);
    cvr_wr_kstr (self->w, "group_id", group);
    cvr_wr_kstr (self->w, "member_id", m->member_id);
    if (streq (op, "join_group")) {
        cvr_wr_str (self->w, "topics");
        cvr_wr_array (self->w);
        cvr_wr_str (self->w, "soak-topic");
        cvr_wr_close (self->w);
        cvr_wr_kint (self->w, "session_timeout_ms", SOAK_SESSION_MS);
    }
    else
    if (streq (op, "group_heartbeat"))
        cvr_wr_kint (self->w, "generation", m->generation);
    s_send (self, "member");
}

//  One reply: counts it, learns member generations from join/heartbeat
//  replies.
static void
s_on_reply (soak_t *self, zframe_t *frame)
{
    cvr_msg_t *msg = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    const msgpack_object *root = msg ? cvr_msg_root (msg) : NULL;
    char key [32];
    snprintf (key, sizeof key, "%" PRId64, cvr_obj_get_int (root, "rid", -1));
    const char *what = (const char *) zhashx_lookup (self->inflight, key);
    zhashx_delete (self->inflight, key);
    const msgpack_object *ok = cvr_obj_get (root, "ok");
    if (!root || !what || !ok || ok->type != MSGPACK_OBJECT_BOOLEAN) {
        self->unexpected_errors++;
        snprintf (self->first_error, sizeof self->first_error, "%s",
                  "undecodable reply or unknown rid");
    }
    else
    if (!ok->via.boolean) {
        char *code = cvr_obj_get_strdup (root, "error");
        bool expected = code
            && ((streq (what, "heartbeat") && streq (code, "NOT_FOUND"))
            ||  (streq (what, "member") && (streq (code, "UNKNOWN_MEMBER")
                                            || streq (code, "ILLEGAL_GENERATION"))));
        if (expected)
            self->expected_errors++;
        else {
            if (!self->unexpected_errors) {
                char *message = cvr_obj_get_strdup (root, "message");
                snprintf (self->first_error, sizeof self->first_error, "%s: %s: %s",
                          what, code ? code : "?", message ? message : "");
                free (message);
            }
            self->unexpected_errors++;
        }
        free (code);
    }
    else {
        //  A join or heartbeat reply tells the member's generation.
        const msgpack_object *member_id = cvr_obj_get (root, "member_id");
        int64_t generation = cvr_obj_get_int (root, "generation", -1);
        for (int i = 0; i < SOAK_MEMBERS && generation >= 0 && member_id; i++)
            if (cvr_obj_streq (member_id, self->members [i].member_id))
                self->members [i].generation = generation;
    }
    cvr_msg_destroy (&msg);
}

//  Section 5's invariants on one assignment event: every partition of the
//  topic exactly once, counts within one of each other.
static void
s_check_assignment (soak_t *self, const msgpack_object *body, const char *topic)
{
    const msgpack_object *assignments = cvr_obj_get (body, "assignments");
    int owners [SOAK_PARTITIONS] = { 0 };
    int64_t least = INT64_MAX, most = 0;
    uint32_t members = assignments && assignments->type == MSGPACK_OBJECT_MAP
                     ? assignments->via.map.size : 0;
    bool bad = !assignments || assignments->type != MSGPACK_OBJECT_MAP;
    for (uint32_t i = 0; i < members; i++) {
        const msgpack_object *list = &assignments->via.map.ptr [i].val;
        int64_t count = list->type == MSGPACK_OBJECT_ARRAY ? (int64_t) list->via.array.size : 0;
        for (int64_t j = 0; j < count; j++) {
            const msgpack_object *pair = &list->via.array.ptr [j];
            uint64_t p = SOAK_PARTITIONS;
            if (pair->type == MSGPACK_OBJECT_ARRAY && pair->via.array.size == 2)
                cvr_obj_uint (&pair->via.array.ptr [1], &p);
            if (p < SOAK_PARTITIONS)
                owners [p]++;
            else
                bad = true;
        }
        least = count < least ? count : least;
        most = count > most ? count : most;
    }
    for (int p = 0; p < SOAK_PARTITIONS; p++)
        if (members > 0 && owners [p] != 1)
            bad = true;
    if (members > 0 && most - least > 1)
        bad = true;
    self->assignments++;
    if (bad && self->violations++ == 0)
        snprintf (self->first_violation, sizeof self->first_violation,
                  "%s: generation %" PRId64 ", %u members", topic,
                  cvr_obj_get_int (body, "generation", -1), members);
}

static void
s_drain (soak_t *self, int wait_ms)
{
    zpoller_t *poller = zpoller_new (self->dealer, self->sub, NULL);
    int64_t until = zclock_mono () + wait_ms;
    while (true) {
        int64_t left = until - zclock_mono ();
        void *which = zpoller_wait (poller, left > 0 ? (int) left : 0);
        if (which == self->dealer) {
            zframe_t *frame = zframe_recv (self->dealer);
            if (frame)
                s_on_reply (self, frame);
            zframe_destroy (&frame);
        }
        else
        if (which == self->sub) {
            char *topic = NULL;
            zframe_t *body = NULL;
            if (zsock_recv (self->sub, "sf", &topic, &body) == 0 && topic && body) {
                size_t len = strlen (topic), suffix = strlen ("/assignment");
                cvr_msg_t *msg = len > suffix && streq (topic + len - suffix, "/assignment")
                               ? cvr_msg_decode (zframe_data (body), zframe_size (body)) : NULL;
                if (msg)
                    s_check_assignment (self, cvr_msg_root (msg), topic);
                cvr_msg_destroy (&msg);
            }
            zstr_free (&topic);
            zframe_destroy (&body);
        }
        else
        if (left <= 0)
            break;
    }
    zpoller_destroy (&poller);
}

static int64_t
s_rss_kb (int pid)
{
    char path [64];
    snprintf (path, sizeof path, "/proc/%d/statm", pid);
    FILE *file = fopen (path, "r");
    long pages = 0, resident = 0;
    if (file) {
        if (fscanf (file, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose (file);
    }
    return resident * (sysconf (_SC_PAGESIZE) / 1024);
}

//  One tick of churn.
static void
s_tick (soak_t *self, int64_t now)
{
    for (int i = 0; i < SOAK_SERVICES; i++) {
        svc_t *svc = &self->services [i];
        if (svc->state == SVC_DOWN || (svc->state == SVC_CRASHED && now >= svc->until)) {
            s_service_request (self, i, "register");
            svc->state = SVC_UP;
            svc->beat_at = now + SOAK_LEASE_MS / 3;
        }
        else
        if (svc->state == SVC_UP) {
            uint32_t r = s_rand (self) % 1000;
            if (r < 3) {                    //  crash: no deregister
                svc->state = SVC_CRASHED;
                svc->until = now + SOAK_LEASE_MS * 5 / 2;
            }
            else
            if (r < 6) {                    //  clean stop
                s_service_request (self, i, "deregister");
                svc->state = SVC_DOWN;
            }
            else
            if (now >= svc->beat_at) {      //  as cvr_registration: lease / 3
                s_service_request (self, i, "heartbeat");
                svc->beat_at = now + SOAK_LEASE_MS / 3;
            }
        }
    }
    for (int i = 0; i < SOAK_MEMBERS; i++) {
        member_t *m = &self->members [i];
        if (!m->joined && now >= m->until) {
            m->group = (int) (s_rand (self) % SOAK_GROUPS);
            snprintf (m->member_id, sizeof m->member_id, "soak-m%02d-%u", i, s_rand (self) % 100000);
            s_member_request (self, i, "join_group");
            m->joined = true;
            m->beat_at = now + SOAK_SESSION_MS / 3;
        }
        else
        if (m->joined) {
            uint32_t r = s_rand (self) % 1000;
            if (r < 10) {                   //  leave
                s_member_request (self, i, "leave_group");
                m->joined = false;
                m->until = now;
            }
            else
            if (r < 20) {                   //  crash: its session runs out
                m->joined = false;
                m->until = now + SOAK_SESSION_MS * 2;
            }
            else
            if (now >= m->beat_at) {
                s_member_request (self, i, "group_heartbeat");
                m->beat_at = now + SOAK_SESSION_MS / 3;
            }
        }
    }
}

int
bench_soak (const char *endpoint, int seconds, int rss_pid)
{
    soak_t *self = (soak_t *) zmalloc (sizeof (soak_t));
    self->rng = 7;
    self->w = cvr_wr_new ();
    self->inflight = zhashx_new ();
    self->dealer = zsock_new_dealer (endpoint);
    zsock_set_sndhwm (self->dealer, 0);
    zsock_set_rcvhwm (self->dealer, 0);
    cvr_client_t *client = cvr_client_new (endpoint, 5000);
    const char *events = cvr_client_events_endpoint (client);
    int rc = -1;
    if (events) {
        self->sub = zsock_new_sub (events, "group/");
        zsock_set_rcvhwm (self->sub, 0);
        int64_t granted;
        rc = cvr_client_create_topic (client, "soak-topic", SOAK_PARTITIONS, &granted);
    }
    cvr_client_destroy (&client);
    if (rc != CVR_OK) {
        fprintf (stderr, "conveyor-bench: soak: cannot reach %s or create its topic\n", endpoint);
        goto done;
    }
    int64_t start = zclock_mono (), warm = start + seconds * 1000 / 3;
    int64_t end = start + seconds * 1000;
    int64_t rss_warm = 0;
    while (zclock_mono () < end && !zsys_interrupted) {
        int64_t now = zclock_mono ();
        if (!rss_warm && now >= warm && rss_pid > 0)
            rss_warm = s_rss_kb (rss_pid);
        s_tick (self, now);
        s_drain (self, SOAK_TICK_MS);
    }
    s_drain (self, 2000);               //  the last replies and events
    int64_t rss_end = rss_pid > 0 ? s_rss_kb (rss_pid) : 0;
    double growth = rss_warm ? 100.0 * (double) (rss_end - rss_warm) / (double) rss_warm : 0;
    bool lost = zhashx_size (self->inflight) > 0;
    rc = self->unexpected_errors || self->violations || lost || growth >= 5.0
      || self->assignments == 0 ? 1 : 0;
    printf ("{\"scenario\":\"soak\",\"seconds\":%d,\"requests\":%" PRIu64
            ",\"expected_errors\":%" PRIu64 ",\"unexpected_errors\":%" PRIu64
            ",\"unanswered\":%zu,\"assignment_events\":%" PRIu64 ",\"violations\":%" PRIu64
            ",\"rss_warm_kb\":%" PRId64 ",\"rss_end_kb\":%" PRId64 ",\"rss_growth_pct\":%.2f"
            ",\"ok\":%s}\n", seconds, self->requests, self->expected_errors,
            self->unexpected_errors, zhashx_size (self->inflight), self->assignments,
            self->violations, rss_warm, rss_end, growth, rc ? "false" : "true");
    if (self->unexpected_errors)
        fprintf (stderr, "conveyor-bench: soak: first unexpected error: %s\n", self->first_error);
    if (self->violations)
        fprintf (stderr, "conveyor-bench: soak: first invariant violation: %s\n",
                 self->first_violation);
    if (growth >= 5.0)
        fprintf (stderr, "conveyor-bench: soak: RSS grew %.1f%% after warm-up\n", growth);
done:
    zsock_destroy (&self->dealer);
    zsock_destroy (&self->sub);
    zhashx_destroy (&self->inflight);
    cvr_wr_destroy (&self->w);
    free (self);
    return rc;
}
