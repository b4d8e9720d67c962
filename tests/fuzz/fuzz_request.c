/*  fuzz_request.c: libFuzzer target for the coordinator's request path.

    Each input is one request body (or, in burst mode, several) sent over a
    DEALER to an in-process cvr_server actor, so the bytes go through the
    whole path: envelope, size check, decode, dispatch, state apply, event
    publication, coalesced rebalances and deferred join replies. The actor
    is started once and keeps its state across inputs, as a long-running
    daemon does; its timers (lease and session expiry) run concurrently.

    Oracles, each an abort() on failure:
      - every body gets exactly one reply within S_REPLY_MS (no hang, no
        lost or extra reply);
      - every reply is one msgpack map with a boolean "ok"; a failure has a
        known "error" code (never INTERNAL) and a string "message";
      - the checks of protocol section 2 that need no state: over the size
        limit is LIMIT_EXCEEDED; not a map, a non-string key, no string op
        or a bad v is BAD_REQUEST; v > 1 is UNSUPPORTED_VERSION; an
        unknown op is UNKNOWN_OP; rid is echoed exactly when the body
        decoded to a map that has one;
      - every S_STATS_EVERY bodies, a "stats" request: its per-op counts
        add up to the bodies sent, its error counts to the failed replies
        seen, nothing was dropped, and the limits hold.

    Burst mode: an input starting with 0xFF is a sequence of bodies, each
    a 2-byte big-endian length then that many bytes (a last length longer
    than what is left takes the rest). All are sent before any reply is
    read, so joins in one burst coalesce into one rebalance and their
    replies are deferred until it is done. The length 0xFFFF is a barrier,
    not a body: the replies to everything sent so far are collected before
    going on, so a burst can also be a sequence of steps (join, then
    commit with the generation the join made, ...).

    Inputs that crash are only sometimes reproducible alone: the server's
    state carries over from earlier inputs. A burst file is self-contained
    against a fresh server, so minimise to bursts when reporting.
*/
#include <signal.h>
#include <pthread.h>
#include <czmq.h>
#include "conveyor/cvr_server.h"
#include "cvr_proto.h"

#define S_MAX_MESSAGE   65536
#define S_MAX_SERVICES  1000
#define S_MAX_GROUPS    100
#define S_MAX_MEMBERS   100
#define S_REPLY_MS      5000        //  no reply by then is a hang bug
#define S_STATS_EVERY   1000        //  bodies between two stats checks
#define S_BURST_MAX     64          //  bodies and barriers in one burst at most
#define S_BARRIER       0xFFFF      //  a burst length that is a barrier

static zactor_t *s_server;
static zsock_t *s_dealer;
static uint64_t s_sent;             //  bodies sent, stats requests included
static uint64_t s_failed;           //  replies with ok = false
static uint64_t s_next_stats = S_STATS_EVERY;

static const char *s_ops [] = {
    "hello", "register", "heartbeat", "deregister", "get_service",
    "list_services", "events_since", "stats", "create_topic", "list_topics",
    "join_group", "leave_group", "group_heartbeat", "get_group", "list_groups",
    "commit_offsets", "fetch_offsets", "delete_group", "cluster_status", "cluster_add",
    "cluster_remove", "cluster_announce", NULL
};

static const char *s_codes [] = {
    "BAD_REQUEST", "UNKNOWN_OP", "UNSUPPORTED_VERSION", "NOT_FOUND", "CONFLICT",
    "UNKNOWN_MEMBER", "ILLEGAL_GENERATION", "NOT_OWNER", "COMPACTED",
    "LIMIT_EXCEEDED", "NOT_LEADER", NULL
};

#define S_CHECK(cond, ...) do { if (!(cond)) { \
    fprintf (stderr, "fuzz_request: check failed: %s: ", #cond); \
    fprintf (stderr, __VA_ARGS__); fprintf (stderr, "\n"); abort (); } } while (0)

static void
s_set (const char *option, const char *value)
{
    zstr_sendx (s_server, "SET", option, value, NULL);
    char *status = zstr_recv (s_server);
    S_CHECK (status && streq (status, "0"), "SET %s %s: %s", option, value,
             status ? status : "(no reply)");
    zstr_free (&status);
}

static void
s_command (const char *command, const char *arg)
{
    zstr_sendx (s_server, command, arg, NULL);
    char *status = zstr_recv (s_server);
    S_CHECK (status && streq (status, "0"), "%s %s: %s", command, arg ? arg : "",
             status ? status : "(no reply)");
    zstr_free (&status);
}

static void
    s_check_size_limit (void);

static void
s_shutdown (void)
{
    zsock_destroy (&s_dealer);
    zactor_destroy (&s_server);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
    //  czmq's SIGINT/SIGTERM handlers would take Ctrl-C from libFuzzer.
    zsys_handler_set (NULL);
    //  libFuzzer's SIGALRM (its -timeout watchdog) must only reach this
    //  thread: a signal that interrupts zmq_poll in the actor's thread
    //  makes zloop return, which would stop the server. Threads started
    //  from here on (zmq's I/O threads, the actor) inherit the mask.
    sigset_t block, old;
    sigemptyset (&block);
    sigaddset (&block, SIGALRM);
    sigaddset (&block, SIGINT);
    sigaddset (&block, SIGTERM);
    sigaddset (&block, SIGUSR1);
    sigaddset (&block, SIGUSR2);
    pthread_sigmask (SIG_BLOCK, &block, &old);
    zsys_init ();

    s_server = zactor_new (cvr_server, "fuzz-node");
    S_CHECK (s_server, "cannot start the server actor");
    char value [32];
    s_set ("log-level", getenv ("FUZZ_LOG_LEVEL") ? getenv ("FUZZ_LOG_LEVEL") : "error");
    snprintf (value, sizeof (value), "%d", S_MAX_MESSAGE);
    s_set ("max-message-bytes", value);
    snprintf (value, sizeof (value), "%d", S_MAX_SERVICES);
    s_set ("max-services", value);
    snprintf (value, sizeof (value), "%d", S_MAX_GROUPS);
    s_set ("max-groups", value);
    snprintf (value, sizeof (value), "%d", S_MAX_MEMBERS);
    s_set ("max-members", value);
    s_set ("history", "1000");
    s_set ("default-partitions", "4");
    s_set ("min-lease-ms", "1");
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://fuzz-req-%d", (int) getpid ());
    s_command ("BIND", endpoint);
    snprintf (endpoint, sizeof (endpoint), "inproc://fuzz-pub-%d", (int) getpid ());
    s_command ("PUBLISH", endpoint);
    s_command ("START", NULL);

    snprintf (endpoint, sizeof (endpoint), "inproc://fuzz-req-%d", (int) getpid ());
    s_dealer = zsock_new_dealer (endpoint);
    S_CHECK (s_dealer, "cannot connect the dealer");
    //  A burst of replies must never be cut by a high-water mark.
    zsock_set_rcvhwm (s_dealer, 0);
    zsock_set_sndhwm (s_dealer, 0);
    pthread_sigmask (SIG_SETMASK, &old, NULL);
    atexit (s_shutdown);
    s_check_size_limit ();
    return 0;
}

//  One reply frame, waiting at most S_REPLY_MS; retries a poll that a
//  signal interrupted. Aborts on timeout.
static zframe_t *
s_recv_reply (void)
{
    void *handle = zsock_resolve (s_dealer);
    int64_t deadline = zclock_mono () + S_REPLY_MS;
    while (true) {
        zframe_t *frame = NULL;
        zmq_msg_t msg;
        zmq_msg_init (&msg);
        if (zmq_msg_recv (&msg, handle, ZMQ_DONTWAIT) >= 0) {
            S_CHECK (!zmq_msg_more (&msg), "a reply of more than one frame");
            frame = zframe_new (zmq_msg_data (&msg), zmq_msg_size (&msg));
            zmq_msg_close (&msg);
            return frame;
        }
        zmq_msg_close (&msg);
        int64_t left = deadline - zclock_mono ();
        S_CHECK (left > 0, "no reply within %d ms (hang): %" PRIu64 " bodies sent",
                 S_REPLY_MS, s_sent);
        zmq_pollitem_t item = { handle, 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, (long) left);
    }
}

static void
s_send (const uint8_t *data, size_t size)
{
    zmq_msg_t msg;
    zmq_msg_init_size (&msg, size);
    if (size)
        memcpy (zmq_msg_data (&msg), data, size);
    int rc;
    while ((rc = zmq_msg_send (&msg, zsock_resolve (s_dealer), 0)) < 0 && zmq_errno () == EINTR)
        ;
    S_CHECK (rc >= 0, "send failed: %s", zmq_strerror (zmq_errno ()));
    s_sent++;
}

static bool
s_in (const char *const *words, const msgpack_object *o)
{
    for (int i = 0; words [i]; i++)
        if (cvr_obj_streq (o, words [i]))
            return true;
    return false;
}

//  What protocol section 2 says the reply to these bytes must be, as far
//  as it can be told without the state: an error code, or NULL for "any".
//  *rid is the rid the reply must echo (NULL: it must have none), borrowed
//  from *msg, the decoded body (caller destroys).
static const char *
s_expect (const uint8_t *data, size_t size, cvr_msg_t **msg, const msgpack_object **rid)
{
    *msg = NULL;
    *rid = NULL;
    if (size > S_MAX_MESSAGE)
        return "LIMIT_EXCEEDED";
    *msg = cvr_msg_decode (data, size);
    if (!*msg || cvr_msg_root (*msg)->type != MSGPACK_OBJECT_MAP)
        return "BAD_REQUEST";
    const msgpack_object *req = cvr_msg_root (*msg);
    *rid = cvr_obj_get (req, "rid");
    const msgpack_object *op = cvr_obj_get (req, "op");
    if (!cvr_obj_is_str_map (req) || !op || op->type != MSGPACK_OBJECT_STR)
        return "BAD_REQUEST";
    const msgpack_object *v = cvr_obj_get (req, "v");
    int64_t version;
    if (v && (cvr_obj_int (v, &version) || version < 1))
        return "BAD_REQUEST";
    if (v && version > 1)
        return "UNSUPPORTED_VERSION";
    if (!s_in (s_ops, op))
        return "UNKNOWN_OP";
    return NULL;
}

static bool
s_same_object (const msgpack_object *a, const msgpack_object *b)
{
    cvr_wr_t *wa = cvr_wr_new (), *wb = cvr_wr_new ();
    cvr_wr_obj (wa, a);
    cvr_wr_obj (wb, b);
    bool same = cvr_wr_size (wa) == cvr_wr_size (wb)
             && memcmp (cvr_wr_data (wa), cvr_wr_data (wb), cvr_wr_size (wa)) == 0;
    cvr_wr_destroy (&wa);
    cvr_wr_destroy (&wb);
    return same;
}

//  Checks one reply's shape; returns it decoded (caller destroys).
static cvr_msg_t *
s_check_reply (zframe_t *frame)
{
    cvr_msg_t *reply = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    S_CHECK (reply, "a reply of %zu bytes that does not decode", zframe_size (frame));
    const msgpack_object *root = cvr_msg_root (reply);
    S_CHECK (cvr_obj_is_str_map (root), "a reply that is not a map of string keys");
    const msgpack_object *ok = cvr_obj_get (root, "ok");
    S_CHECK (ok && ok->type == MSGPACK_OBJECT_BOOLEAN, "a reply without a boolean ok");
    const msgpack_object *error = cvr_obj_get (root, "error");
    if (ok->via.boolean)
        S_CHECK (!error, "ok: true with an error");
    else {
        s_failed++;
        S_CHECK (error && s_in (s_codes, error), "ok: false without a known error code");
        const msgpack_object *message = cvr_obj_get (root, "message");
        S_CHECK (message && message->type == MSGPACK_OBJECT_STR,
                 "an error without a message");
    }
    return reply;
}

static char *
s_error_of (cvr_msg_t *reply)
{
    char *error = cvr_obj_get_strdup (cvr_msg_root (reply), "error");
    return error ? error : strdup ("OK");
}

//  A single body: the reply must match what s_expect can tell.
static void
s_check_single (const uint8_t *data, size_t size, zframe_t *frame)
{
    cvr_msg_t *req;
    const msgpack_object *rid;
    const char *want = s_expect (data, size, &req, &rid);
    cvr_msg_t *reply = s_check_reply (frame);
    char *got = s_error_of (reply);
    if (want)
        S_CHECK (streq (got, want), "reply %s, want %s (body of %zu bytes)", got, want, size);
    const msgpack_object *echoed = cvr_obj_get (cvr_msg_root (reply), "rid");
    if (rid)
        S_CHECK (echoed && s_same_object (rid, echoed), "rid not echoed verbatim (%s)", got);
    else
        S_CHECK (!echoed, "a rid in the reply to a body without one (%s)", got);
    free (got);
    cvr_msg_destroy (&reply);
    cvr_msg_destroy (&req);
}

static uint64_t
s_sum (const msgpack_object *map)
{
    uint64_t sum = 0, value;
    for (uint32_t i = 0; map && map->type == MSGPACK_OBJECT_MAP && i < map->via.map.size; i++)
        if (cvr_obj_uint (&map->via.map.ptr [i].val, &value) == 0)
            sum += value;
    return sum;
}

//  stats: alive, and its counters agree with what this side saw.
static void
s_check_stats (void)
{
    static const uint8_t body [] = {    //  {"op": "stats", "rid": "fuzz-stats"}
        0x82, 0xa2, 'o', 'p', 0xa5, 's', 't', 'a', 't', 's',
        0xa3, 'r', 'i', 'd', 0xaa, 'f', 'u', 'z', 'z', '-', 's', 't', 'a', 't', 's' };
    s_send (body, sizeof (body));
    zframe_t *frame = s_recv_reply ();
    cvr_msg_t *reply = s_check_reply (frame);
    zframe_destroy (&frame);
    const msgpack_object *root = cvr_msg_root (reply);
    S_CHECK (cvr_obj_get (root, "ok")->via.boolean, "stats failed");
    S_CHECK (cvr_obj_streq (cvr_obj_get (root, "rid"), "fuzz-stats"), "stats rid");
    uint64_t requests = s_sum (cvr_obj_get (root, "requests"));
    uint64_t errors = s_sum (cvr_obj_get (root, "errors"));
    S_CHECK (requests == s_sent, "stats.requests adds up to %" PRIu64 ", sent %" PRIu64,
             requests, s_sent);
    S_CHECK (errors == s_failed, "stats.errors adds up to %" PRIu64 ", failed replies %"
             PRIu64, errors, s_failed);
    S_CHECK (cvr_obj_get_int (root, "dropped", -1) == 0, "stats.dropped is not 0");
    S_CHECK (cvr_obj_get_int (root, "seq", -1) == cvr_obj_get_int (root, "events_published", -2),
             "seq differs from events_published");
    S_CHECK (cvr_obj_get_int (root, "services", -1) >= 0
          && cvr_obj_get_int (root, "services", -1) <= S_MAX_SERVICES, "services over the limit");
    S_CHECK (cvr_obj_get_int (root, "groups", -1) >= 0
          && cvr_obj_get_int (root, "groups", -1) <= S_MAX_GROUPS, "groups over the limit");
    S_CHECK (cvr_obj_get_int (root, "members", -1) >= 0
          && cvr_obj_get_int (root, "members", -1) <= S_MAX_GROUPS * S_MAX_MEMBERS,
             "members over the limit");
    cvr_msg_destroy (&reply);
}

static void
    s_check_single (const uint8_t *data, size_t size, zframe_t *frame);

//  Collects and checks count replies, in any order (deferred join replies
//  come after the batch's others).
static void
s_collect (size_t count)
{
    for (size_t i = 0; i < count; i++) {
        zframe_t *frame = s_recv_reply ();
        cvr_msg_t *reply = s_check_reply (frame);
        cvr_msg_destroy (&reply);
        zframe_destroy (&frame);
    }
}

//  The size limit at its edge, once: inputs that large are rare in fuzzing.
static void
s_check_size_limit (void)
{
    uint8_t *big = (uint8_t *) malloc (S_MAX_MESSAGE + 1);
    S_CHECK (big, "out of memory");
    for (size_t size = S_MAX_MESSAGE; size <= S_MAX_MESSAGE + 1; size++) {
        //  A str32 of exactly the right length: well-formed msgpack, not a
        //  map, so BAD_REQUEST at the limit and LIMIT_EXCEEDED past it.
        big [0] = 0xdb;
        uint32_t len = (uint32_t) (size - 5);
        big [1] = (uint8_t) (len >> 24), big [2] = (uint8_t) (len >> 16);
        big [3] = (uint8_t) (len >> 8), big [4] = (uint8_t) len;
        memset (big + 5, 'x', len);
        s_send (big, size);
        zframe_t *frame = s_recv_reply ();
        s_check_single (big, size, frame);
        zframe_destroy (&frame);
    }
    free (big);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    //  A reply left over from the previous input is one too many.
    zmq_pollitem_t item = { zsock_resolve (s_dealer), 0, ZMQ_POLLIN, 0 };
    S_CHECK (zmq_poll (&item, 1, 0) <= 0 || !(item.revents & ZMQ_POLLIN),
             "an extra reply arrived after all replies were collected");

    if (size > 0 && data [0] == 0xFF) {
        //  Burst: send every body, then collect as many replies, in any
        //  order (deferred join replies come after the batch's others).
        const uint8_t *bodies [S_BURST_MAX];
        size_t sizes [S_BURST_MAX];
        size_t count = 0, pos = 1;
        while (count < S_BURST_MAX && pos + 2 <= size) {
            size_t len = ((size_t) data [pos] << 8) | data [pos + 1];
            pos += 2;
            if (len == S_BARRIER) {
                bodies [count] = NULL;
                sizes [count++] = 0;
                continue;
            }
            if (len > size - pos)
                len = size - pos;
            bodies [count] = data + pos;
            sizes [count++] = len;
            pos += len;
        }
        size_t unanswered = 0;
        for (size_t i = 0; i < count; i++) {
            if (!bodies [i]) {      //  a barrier
                s_collect (unanswered);
                unanswered = 0;
                continue;
            }
            s_send (bodies [i], sizes [i]);
            unanswered++;
        }
        s_collect (unanswered);
    }
    else {
        s_send (data, size);
        zframe_t *frame = s_recv_reply ();
        s_check_single (data, size, frame);
        zframe_destroy (&frame);
    }
    if (s_sent >= s_next_stats) {
        s_check_stats ();
        s_next_stats = s_sent + S_STATS_EVERY;
    }
    return 0;
}
