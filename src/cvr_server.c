/*  cvr_server.c: the coordinator actor: ROUTER requests, PUB events.

    One zloop serves the pipe, the request socket and two timers (lease
    deadlines, sys/heartbeat). Requests are decoded, checked in the order
    of protocol section 2 and dispatched through a table; writes become
    commands applied to cvr_state, whose events are numbered by
    cvr_history and published before the reply is sent.
*/
#include "conveyor/cvr_server.h"
#include "cvr_proto.h"
#include "cvr_state.h"
#include "cvr_history.h"
#include "cvr_leases.h"
#include "cvr_log.h"
#include "cvr_dedup.h"
#include "cvr_held.h"
#include "cvr_heap.h"
#include "cvr_assignor.h"

#define CVR_NAME_MAX        200
#define CVR_ENDPOINT_MAX    1024
#define CVR_LABELS_MAX      64
#define CVR_LABEL_KEY_MAX   128
#define CVR_LABEL_VALUE_MAX 1024
#define CVR_PREFIX_MAX      1024
#define CVR_TICK_MS         50      //  lease deadlines are checked this often
#define CVR_DRAIN_MAX       1000    //  requests handled per wakeup at most
#define S_BATCH             CVR_DRAIN_MAX   //  envelopes received, then handled
#define S_HELD_MAX          (1u << 20)  //  bytes of replies held in memory mode
#define S_PINNED_MAX        (64u << 20) //  bytes of sent reply buffers unwritten
#define S_AHEAD             32      //  map slots prefetched this many requests
                                    //  ahead, records half as many
#define CVR_EXPIRE_SLICE    2000    //  lease and session transitions per slice
#define CVR_LOG_BURST       10      //  transitions per slice logged one by one
//  A handler's answer that its reply waits for the group's rebalance.
#define S_DEFERRED          ((cvr_err_t) 100)

typedef enum { S_ERROR, S_WARN, S_INFO, S_DEBUG } s_level_t;

//  Options of protocol section 9, by their names without dashes.
typedef struct {
    int64_t lease_ms;
    int64_t min_lease_ms;
    int64_t max_lease_ms;
    int64_t session_timeout_ms;
    int64_t default_partitions;
    int64_t history;
    int64_t max_message_bytes;
    int64_t max_services;
    int64_t max_groups;
    int64_t max_members;
    int64_t snapshot_threshold;     //  --data-dir: entries between snapshots
    int64_t snapshot_trailing;      //  entries kept after a snapshot
    int64_t election_timeout_ms;    //  the raft engine's
} s_config_t;

typedef struct {
    const char *name;
    size_t offset;
    int64_t min, max;
} s_option_t;

static const s_option_t s_options [] = {
    { "lease-ms", offsetof (s_config_t, lease_ms), 1, INT32_MAX },
    { "min-lease-ms", offsetof (s_config_t, min_lease_ms), 1, INT32_MAX },
    { "max-lease-ms", offsetof (s_config_t, max_lease_ms), 1, INT32_MAX },
    { "session-timeout-ms", offsetof (s_config_t, session_timeout_ms), 1, INT32_MAX },
    { "default-partitions", offsetof (s_config_t, default_partitions), 0, 100000 },
    { "history", offsetof (s_config_t, history), 1, 100000000 },
    { "max-message-bytes", offsetof (s_config_t, max_message_bytes), 64, 256 << 20 },
    { "max-services", offsetof (s_config_t, max_services), 1, INT32_MAX },
    { "max-groups", offsetof (s_config_t, max_groups), 1, INT32_MAX },
    { "max-members", offsetof (s_config_t, max_members), 1, INT32_MAX },
    { "snapshot-threshold", offsetof (s_config_t, snapshot_threshold), 16, INT32_MAX },
    { "snapshot-trailing", offsetof (s_config_t, snapshot_trailing), 0, INT32_MAX },
    { "election-timeout-ms", offsetof (s_config_t, election_timeout_ms), 100, 60000 },
};
#define S_OPTIONS (sizeof (s_options) / sizeof (s_options [0]))

typedef struct _cvr_server_t cvr_server_t;

//  With --data-dir: what a batch sends (replies and events), held until
//  the log entry of its commands is committed.
typedef struct {
    uint64_t tag;               //  the entry's tag; 0: no command of its own
    bool committed;             //  the entry is committed
    cvr_held_t *replies;        //  its replies, in order
} s_segment_t;

//  A join reply that waits for the rebalance of its group.
typedef struct {
    zframe_t *identity;         //  the client's ROUTER identity
    zframe_t *delimiter;        //  the empty frame of a REQ client, or NULL
    uint8_t *rid;               //  the request's rid, encoded, or NULL
    size_t rid_size;
    char *group_id;             //  a join's, or NULL
    char *member_id;
    uint64_t tag;               //  a cluster change's (CHANGED), or 0
    char *dedup_key;            //  a join with a client_id: its dedup key
} s_pending_t;
typedef cvr_err_t (s_handler_fn) (cvr_server_t *self, const msgpack_object *req,
                                  cvr_wr_t *reply);

typedef struct {
    const char *op;
    s_handler_fn *handler;
    bool settle;            //  reads a group: rebalance what is pending first
    bool anywhere;          //  a cluster follower serves it too
    bool dedup;             //  a write whose reply a retry gets again
} s_op_t;

static const s_op_t s_ops [];
static const size_t s_ops_count;

//  One request envelope received, waiting in the batch (see s_on_router).
typedef struct {
    zmq_msg_t parts [3];
    int count;                  //  frames kept
    bool bad;                   //  not [identity, body] or [identity, "", body]
    size_t frames;              //  frames received in all
    const char *hint;           //  the service_id the body names, or NULL
    size_t hint_len;
} s_envelope_t;

struct _cvr_server_t {
    zsock_t *pipe;              //  actor pipe, borrowed
    zloop_t *loop;              //  reactor, owned
    zsock_t *router;            //  request socket, owned once started
    zsock_t *pub;               //  event socket, owned once started
    char *node_id;              //  this node's name
    char *listen;               //  request endpoint to bind
    char *publish;              //  event endpoint to bind
    char *events_endpoint;      //  event endpoint as bound
    char *curve_secret;         //  server certificate file, or NULL: plain
    char *curve_clients;        //  directory of allowed client certificates
    zactor_t *auth;             //  zauth, checking clients' keys, when secure
    s_config_t config;          //  options
    s_level_t log_level;        //  how much to log
    cvr_state_t *state;         //  services (and later groups), owned
    cvr_history_t *history;     //  event numbering and ring, owned
    cvr_leases_t *leases;       //  lease deadlines of the services
    cvr_effects_t *effects;     //  events of the command being applied
    cvr_wr_t *reply;            //  reply being built, reused
    cvr_reader_t *reader;       //  decodes the requests, reused
    s_envelope_t *batch;        //  S_BATCH envelopes received, not yet handled
    cvr_log_event_t event;      //  a committed event being published
    zlistx_t *scratch;          //  strings copied out of the current request
    char pool [8192];           //  small ones: bump-allocated, no malloc
    size_t pool_used;           //  (both reset after each request)
    char message [512];         //  error message of the current request
    int64_t started_at;         //  Unix ms at START
    uint64_t *requests;         //  per op index, then one for "?"
    uint64_t errors [CVR_ERR_COUNT];    //  replies by error code
    uint64_t dropped;           //  envelopes of a bad shape
    zlistx_t *pending;          //  join replies waiting for a rebalance
    const char *defer_group;    //  set by a handler that defers its reply
    const char *defer_member;   //  (borrowed from the request's scratch)
    uint64_t defer_tag;         //  or a cluster change's tag
    s_pending_t *deferred;      //  the reply s_handle_body just deferred
    zlistx_t *changes;          //  cluster change replies waiting (CHANGED)
    char *peers;                //  --peers: "ID=HOST:PORT,...", or NULL
    bool leading;               //  with a log: this node serves (leader)
    uint64_t raft_id;           //  with --peers: --node-id as a number
    cvr_state_limits_t limits;  //  of the state (a new one on step-down)
    uint64_t change_tag;        //  the last cluster change's tag
    cvr_dedup_t *dedup;         //  with a log: replies of recent writes
    char *raft_address;         //  this node's raft address, as used
    zsock_t *announcer;         //  a follower's DEALER to the leader
    char *announced_to;         //  the leader endpoint it is connected to
    char *dedup_key;            //  the current request's, or NULL
    char *data_dir;             //  --data-dir, or NULL: in memory only
    char *raft_bind;            //  the raft engine's address
    cvr_log_t *log;             //  the durable log, with --data-dir
    s_segment_t *open;          //  what the current batch sends (durable)
    zlistx_t *segments;         //  earlier batches' sends, waiting in order
    cvr_held_budget_t *budget;  //  of sent reply buffers still referenced
    uintptr_t heap_mark;        //  the heap advised up to (cvr_heap.h)
    uint64_t entries;           //  log entries committed
    bool bulk;                  //  lease transitions beyond CVR_LOG_BURST
    bool slice_pending;         //  a timer continues the transitions due
};

//  --------------------------------------------------------------------------
//  Logging

static void
s_log (cvr_server_t *self, s_level_t level, const char *format, ...)
{
    if (level > self->log_level)
        return;
    va_list args;
    va_start (args, format);
    char *text = zsys_vprintf (format, args);
    va_end (args);
    if (!text)
        return;
    if (level == S_ERROR)
        zsys_error ("%s", text);
    else
    if (level == S_WARN)
        zsys_warning ("%s", text);
    else
    if (level == S_INFO)
        zsys_info ("%s", text);
    else
        zsys_debug ("%s", text);
    free (text);
}

//  --------------------------------------------------------------------------
//  Request fields: each getter checks presence, type and limits, and on
//  failure sets the message and returns -1, so a handler reads all its
//  fields and answers BAD_REQUEST with the first problem.

static int
s_bad (cvr_server_t *self, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    vsnprintf (self->message, sizeof (self->message), format, args);
    va_end (args);
    return -1;
}

//  A client's bytes made fit to quote in a message: printable ASCII only
//  (a reply must stay valid UTF-8 whatever was sent), cut to the buffer.
static const char *
s_printable (char *buffer, size_t size, const char *bytes, size_t len)
{
    if (len > size - 1)
        len = size - 1;
    for (size_t i = 0; i < len; i++)
        buffer [i] = isprint ((unsigned char) bytes [i]) ? bytes [i] : '?';
    buffer [len] = 0;
    return buffer;
}

static char *
s_keep (cvr_server_t *self, char *string)
{
    zlistx_add_end (self->scratch, string);
    return string;
}

//  Zeroed memory that lives until the reply: from the request's bump pool
//  (8-byte aligned) when it fits, else from the heap, kept for freeing.
static void *
s_scratch (cvr_server_t *self, size_t size)
{
    size_t start = (self->pool_used + 7) & ~(size_t) 7;
    if (start + size <= sizeof (self->pool)) {
        self->pool_used = start + size;
        return memset (self->pool + start, 0, size);
    }
    return s_keep (self, (char *) zmalloc (size));
}

//  A msgpack string as a C string in scratch memory; NULL if it holds NUL.
static char *
s_scratch_str (cvr_server_t *self, const msgpack_object *o)
{
    size_t size = o->via.str.size;
    if (memchr (o->via.str.ptr, 0, size))
        return NULL;
    char *copy = (char *) s_scratch (self, size + 1);
    memcpy (copy, o->via.str.ptr, size);
    return copy;
}

//  A string of min..max bytes without NUL; *out is NULL when absent.
static int
s_get_str (cvr_server_t *self, const msgpack_object *req, const char *key,
           bool required, size_t min, size_t max, char **out)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    *out = NULL;
    if (!o)
        return required ? s_bad (self, "%s is required", key) : 0;
    if (o->type != MSGPACK_OBJECT_STR)
        return s_bad (self, "%s must be a string", key);
    if (o->via.str.size < min || o->via.str.size > max)
        return s_bad (self, "%s must be %zu to %zu bytes", key, min, max);
    *out = s_scratch_str (self, o);
    if (!*out)
        return s_bad (self, "%s must not contain NUL bytes", key);
    return 0;
}

static bool
s_valid_name (const char *name)
{
    for (const char *p = name; *p; p++)
        if (!isalnum ((unsigned char) *p) && !strchr ("._:@-", *p))
            return false;
    return true;
}

//  A name of section 2: 1 to 200 bytes of [A-Za-z0-9._:@-].
static int
s_get_name (cvr_server_t *self, const msgpack_object *req, const char *key,
            bool required, char **out)
{
    if (s_get_str (self, req, key, required, 1, CVR_NAME_MAX, out))
        return -1;
    if (*out && !s_valid_name (*out))
        return s_bad (self, "%s must be 1 to %d bytes of [A-Za-z0-9._:@-]",
                      key, CVR_NAME_MAX);
    return 0;
}

//  One of a fixed set of words; *out is the index, untouched when absent.
static int
s_get_enum (cvr_server_t *self, const msgpack_object *req, const char *key,
            bool required, const char *const *words, int *out)
{
    char *value;
    if (s_get_str (self, req, key, required, 1, 64, &value))
        return -1;
    if (!value)
        return 0;
    for (int i = 0; words [i]; i++)
        if (streq (value, words [i])) {
            *out = i;
            return 0;
        }
    char quoted [65], allowed [128] = "";
    for (int i = 0; words [i]; i++)
        snprintf (allowed + strlen (allowed), sizeof (allowed) - strlen (allowed),
                  "%s%s", i ? ", " : "", words [i]);
    return s_bad (self, "%s: '%s' is not one of %s", key,
                  s_printable (quoted, sizeof (quoted), value, strlen (value)), allowed);
}

//  An integer in [min, max]; *out is untouched when absent.
static int
s_get_int (cvr_server_t *self, const msgpack_object *req, const char *key,
           bool required, int64_t min, int64_t max, int64_t *out)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    if (!o)
        return required ? s_bad (self, "%s is required", key) : 0;
    int64_t value;
    if (cvr_obj_int (o, &value))
        return s_bad (self, "%s must be an integer", key);
    if (value < min || value > max)
        return s_bad (self, "%s must be between %" PRId64 " and %" PRId64,
                      key, min, max);
    *out = value;
    return 0;
}

static int
s_get_bool (cvr_server_t *self, const msgpack_object *req, const char *key, bool *out)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_BOOLEAN)
        return s_bad (self, "%s must be a boolean", key);
    *out = o->via.boolean;
    return 0;
}

//  A labels map: at most 64 string pairs, keys 1..128 bytes and unique,
//  values 0..1024 bytes. The array and strings live until the reply.
static int
s_get_labels (cvr_server_t *self, const msgpack_object *req, const char *key,
              cvr_label_t **labels, size_t *count)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    *labels = NULL;
    *count = 0;
    if (!o)
        return 0;
    if (o->type != MSGPACK_OBJECT_MAP)
        return s_bad (self, "%s must be a map of strings", key);
    if (o->via.map.size > CVR_LABELS_MAX)
        return s_bad (self, "%s: at most %d labels", key, CVR_LABELS_MAX);
    if (o->via.map.size == 0)
        return 0;
    *labels = (cvr_label_t *) s_scratch (self, o->via.map.size * sizeof (cvr_label_t));
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr [i].key;
        const msgpack_object *v = &o->via.map.ptr [i].val;
        if (k->type != MSGPACK_OBJECT_STR || v->type != MSGPACK_OBJECT_STR)
            return s_bad (self, "%s must map strings to strings", key);
        if (k->via.str.size < 1 || k->via.str.size > CVR_LABEL_KEY_MAX)
            return s_bad (self, "%s: keys must be 1 to %d bytes", key, CVR_LABEL_KEY_MAX);
        if (v->via.str.size > CVR_LABEL_VALUE_MAX)
            return s_bad (self, "%s: values must be 0 to %d bytes", key, CVR_LABEL_VALUE_MAX);
        char *label_key = s_scratch_str (self, k);
        char *label_value = s_scratch_str (self, v);
        if (!label_key || !label_value)
            return s_bad (self, "%s must not contain NUL bytes", key);
        for (size_t j = 0; j < *count; j++)
            if (streq ((*labels) [j].key, label_key))
            {
                char quoted [65];
                return s_bad (self, "%s: duplicate key '%s'", key,
                              s_printable (quoted, sizeof (quoted), label_key,
                                           strlen (label_key)));
            }
        (*labels) [(*count)++] = (cvr_label_t) { label_key, label_value };
    }
    return 0;
}

static const char *s_service_types [] = { "source", "transform", "sink", NULL };
//  Healths a client may report: "unknown" is the server's to give.
static const char *s_reported_healths [] = { "healthy", "degraded", "unhealthy", NULL };

//  --------------------------------------------------------------------------
//  Commands and events

//  --------------------------------------------------------------------------
//  Sending. In memory, events go out at once and replies at the end of
//  their batch of requests (after its events). With --data-dir both are
//  held with their batch until the batch's log entry is committed, and
//  batches go out in order: nothing is acknowledged or published before
//  it is durable, and nothing read from the state ahead of the log (a read
//  in the same batch as a write) goes out before the log has it.

static s_segment_t *
s_segment_new (cvr_held_budget_t *budget, size_t first)
{
    s_segment_t *self = (s_segment_t *) zmalloc (sizeof (s_segment_t));
    self->replies = cvr_held_new (budget, first);
    return self;
}

static void
s_segment_destroy (s_segment_t **self_p)
{
    if (!*self_p)
        return;
    cvr_held_destroy (&(*self_p)->replies);
    free (*self_p);
    *self_p = NULL;
}

//  Sends the replies held in a segment, in the order they were held.
static void
s_send_held (cvr_server_t *self, s_segment_t *segment)
{
    cvr_held_send (segment->replies, zsock_resolve (self->router));
}

//  Holds a copy of a reply with the current batch (appended to one buffer,
//  see cvr_held.h) until s_cut. In memory, what is held goes out early
//  once it passes S_HELD_MAX, so a batch of big replies never holds more
//  than that plus one reply.
static void
s_out (cvr_server_t *self, const void *identity, size_t identity_size, bool delimiter,
       const void *body, size_t body_size)
{
    if (!self->log && cvr_held_size (self->open->replies) >= S_HELD_MAX)
        s_send_held (self, self->open);
    cvr_held_add (self->open->replies, identity, identity_size, delimiter, body, body_size);
}

//  Sends what the batches at the front may send: those whose entry is
//  committed, and those with no command that only waited for them.
static void
s_release (cvr_server_t *self)
{
    s_segment_t *first;
    while ((first = (s_segment_t *) zlistx_first (self->segments))
    &&     (!first->tag || first->committed)) {
        zlistx_detach (self->segments, NULL);
        s_send_held (self, first);
        s_segment_destroy (&first);
    }
}

static void
s_fatal (cvr_server_t *self, const char *reason)
{
    s_log (self, S_ERROR, "%s: the state is no longer durable; stopping. Nothing more "
           "is acknowledged; a restart recovers what the log holds", reason);
    zloop_reader_end (self->loop, self->router);
    zstr_sendx (self->pipe, "FATAL", reason, NULL);
}

//  Ends the current batch. In memory, its replies go out now, together:
//  the I/O thread is woken once and writes them with few system calls,
//  where replies sent one by one, each after its request's work, would
//  wake it (and the client) once per reply. With a log, the batch's
//  commands become one log entry, and what it sends waits for that entry
//  (or, without commands, for the batches before it).
static void
s_cut (cvr_server_t *self)
{
    cvr_heap_advise (&self->heap_mark);
    if (!self->log) {
        s_send_held (self, self->open);
        return;
    }
    int64_t tag = cvr_log_commit (self->log);
    if (tag < 0) {
        s_fatal (self, "the raft engine refused a log entry");
        return;
    }
    if (!tag && cvr_held_size (self->open->replies) == 0)
        return;
    self->open->tag = (uint64_t) tag;
    zlistx_add_end (self->segments, self->open);
    //  The next batch's replies are likely about as many.
    self->open = s_segment_new (self->budget, cvr_held_size (self->open->replies));
    s_release (self);
}

//  Leadership: a node that becomes leader takes over the committed state
//  (its own runs ahead of it from then on); one that stops leading drops
//  its state and whatever waited for the log (never acknowledged: clients
//  retry with the new leader).
static void s_drain_events (cvr_server_t *self, size_t most);
static void s_take_over (cvr_server_t *self);
static void s_step_down (cvr_server_t *self);
static void s_changed (cvr_server_t *self, const cvr_raft_event_t *event);
static void s_announce_self (cvr_server_t *self);

static int
s_on_log (zloop_t *loop, zsock_t *sock, void *arg)
{
    cvr_server_t *self = (cvr_server_t *) arg;
    cvr_raft_event_t event;
    if (cvr_log_recv (self->log, &event))
        return 0;
    //  The events of an entry go out before its replies.
    s_drain_events (self, SIZE_MAX);
    if (event.type == CVR_RAFT_APPLIED && self->leading) {
        if (event.status != CVR_RAFT_OK) {
            char reason [128];
            snprintf (reason, sizeof (reason), "log entry %" PRIu64 " failed (raft status "
                      "%d, error %d)", event.tag, event.status, event.error);
            if (!self->peers) {
                s_fatal (self, reason);
                return 0;
            }
            s_log (self, S_WARN, "%s: stepping down", reason);
            s_step_down (self);
            if (cvr_raft_is_leader (cvr_log_raft (self->log)))
                s_take_over (self);
            return 0;
        }
        if (event.result)
            s_log (self, S_ERROR, "log entry %" PRIu64 " did not apply to the committed "
                   "state as it did here", event.tag);
        self->entries++;
        for (s_segment_t *segment = (s_segment_t *) zlistx_first (self->segments); segment;
             segment = (s_segment_t *) zlistx_next (self->segments))
            if (segment->tag == event.tag) {
                segment->committed = true;
                break;
            }
        s_release (self);
    }
    else
    if (event.type == CVR_RAFT_LEADER && !self->leading)
        s_take_over (self);
    else
    if (event.type == CVR_RAFT_FOLLOWER) {
        if (self->leading && !self->peers)
            s_fatal (self, "this single-node log lost its leadership");
        else
        if (self->leading)
            s_step_down (self);
        else
            s_log (self, S_INFO, "following node %" PRIu64 " (term %" PRIu64 ")",
                   event.leader_id, event.term);
    }
    else
    if (event.type == CVR_RAFT_CHANGED)
        s_changed (self, &event);
    return 0;
}

//  Numbers and publishes the events of the command just applied. With a
//  log, the events published are the committed state's (s_drain_events),
//  the same on every node: the leader's state writes none. They stay
//  until the next command (its handler may copy a record from them).
static void
s_publish_effects (cvr_server_t *self)
{
    void *pub = zsock_resolve (self->pub);
    for (size_t i = 0; i < cvr_effects_size (self->effects); i++) {
        const char *topic = cvr_effects_topic (self->effects, i);
        cvr_wr_t *body = cvr_effects_body (self->effects, i);
        uint64_t seq = cvr_history_append (self->history, topic,
                                           cvr_effects_root (self->effects, i), body);
        //  PUB never blocks: a subscriber over its high-water mark loses
        //  the event and recovers it with events_since.
        zmq_send (pub, topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
        zmq_send (pub, cvr_wr_data (body), cvr_wr_size (body), ZMQ_DONTWAIT);
        s_log (self, S_DEBUG, "event %" PRIu64 " %s", seq, topic);
    }
}

//  With a log: publishes the committed state's events as they come, into
//  the history too (so events_since and seq agree on every node); at most
//  `most` of them, and then the rest of the parcel being read.
static void
s_drain_events (cvr_server_t *self, size_t most)
{
    void *pub = zsock_resolve (self->pub);
    cvr_log_event_t *event = &self->event;
    for (size_t n = 0; (n < most || cvr_log_events_open (self->log))
                       && cvr_log_recv_event (self->log, event) == 0; n++) {
        uint64_t latest = cvr_history_seq (self->history), seq = event->seq;
        const char *topic = event->topic;
        if (cvr_history_put (self->history, topic, event->root, seq,
                             event->body, event->body_size))
            s_log (self, S_ERROR, "committed event %" PRIu64 " does not follow %" PRIu64
                   "; not published", seq, latest);
        else
        if (seq > latest) {
            zmq_send (pub, topic, strlen (topic), ZMQ_SNDMORE | ZMQ_DONTWAIT);
            zmq_send (pub, event->body, event->body_size, ZMQ_DONTWAIT);
            s_log (self, S_DEBUG, "event %" PRIu64 " %s", seq, topic);
        }
    }
}

static int
s_on_events (zloop_t *loop, zsock_t *sock, void *arg)
{
    //  Bounded, so that requests are served while a follower or a restart
    //  replays a long log (the rest waits for the next turn of the loop).
    s_drain_events ((cvr_server_t *) arg, CVR_DRAIN_MAX);
    return 0;
}

//  Applies a command and publishes what it caused. The one path by which
//  state changes.
static cvr_err_t
s_submit (cvr_server_t *self, const cvr_cmd_t *cmd)
{
    //  With a log, the events published are the committed state's (they
    //  come from the log thread): this state's own are not even written.
    cvr_effects_clear (self->effects);
    cvr_err_t rc = cvr_state_apply (self->state, cmd, self->log ? NULL : self->effects);
    if (rc == CVR_OK && self->log)
        cvr_log_append (self->log, cmd);
    //  Offset commits are the steady traffic of a healthy pipeline: only
    //  membership and lifecycle changes are worth an info line, and lease
    //  transitions in bulk get one summary line (s_expire_leases).
    bool bulk = self->bulk && (cmd->type == CVR_CMD_LAPSE || cmd->type == CVR_CMD_EXPIRE);
    s_level_t level = rc != CVR_OK || cmd->type == CVR_CMD_COMMIT || bulk ? S_DEBUG : S_INFO;
    if ((cmd->type != CVR_CMD_HEARTBEAT || rc != CVR_OK) && level <= self->log_level) {
        const char *group = cmd->join ? cmd->join->group_id : cmd->group_id;
        const char *member = cmd->join ? cmd->join->member_id : cmd->member_id;
        char subject [512];
        if (cmd->type == CVR_CMD_RESTORE)
            snprintf (subject, sizeof (subject), "of every service and session");
        else
        if (cmd->service || cmd->service_id)
            snprintf (subject, sizeof (subject), "service %s",
                      cmd->service ? cmd->service->service_id : cmd->service_id);
        else
        if (group)
            snprintf (subject, sizeof (subject), "group %s%s%s", group,
                      member ? " member " : "", member ? member : "");
        else
            snprintf (subject, sizeof (subject), "topic %s (%" PRId64 " partitions)",
                      cmd->topic, cmd->partitions);
        s_log (self, level, "%s %s: %s", cvr_cmd_name (cmd->type), subject,
               rc == CVR_OK ? "done" : cvr_err_name (rc));
    }
    s_publish_effects (self);
    return rc;
}

static int64_t
s_clamp_lease (cvr_server_t *self, int64_t lease_ms)
{
    if (lease_ms < self->config.min_lease_ms)
        return self->config.min_lease_ms;
    if (lease_ms > self->config.max_lease_ms)
        return self->config.max_lease_ms;
    return lease_ms;
}

//  Runs the lease and session transitions that are due, at most
//  CVR_EXPIRE_SLICE of them (costs what expires, and a mass expiry does not
//  hold requests up: the loop serves them between slices). Returns true
//  when more are due. Past CVR_LOG_BURST, lapses and expiries are logged
//  at debug and summed up in one info line.
static bool
s_expire_leases (cvr_server_t *self, int64_t now)
{
    size_t done = 0, lapsed = 0, expired = 0;
    cvr_cmd_t cmd;
    while (done < CVR_EXPIRE_SLICE
       &&  cvr_leases_next (self->leases, cvr_state_registry (self->state), now, &cmd)) {
        self->bulk = done++ >= CVR_LOG_BURST;
        if (s_submit (self, &cmd) == CVR_OK) {
            lapsed += cmd.type == CVR_CMD_LAPSE;
            expired += cmd.type == CVR_CMD_EXPIRE;
        }
    }
    self->bulk = false;
    if (done > CVR_LOG_BURST)
        s_log (self, S_INFO, "leases: %zu services unhealthy, %zu expired in this slice "
               "(one line each at debug)", lapsed, expired);
    cvr_groups_t *groups = cvr_state_groups (self->state);
    const char *group_id, *member_id;
    while (done < CVR_EXPIRE_SLICE
       &&  cvr_groups_next_expired (groups, now, &group_id, &member_id)) {
        cvr_cmd_t expire = { .type = CVR_CMD_SESSION_EXPIRE, .now = now,
                             .group_id = group_id, .member_id = member_id };
        s_submit (self, &expire);
        done++;
    }
    return done == CVR_EXPIRE_SLICE;
}

//  --------------------------------------------------------------------------
//  Operations: each reads its fields, then acts; 0 or an error code.

//  In a cluster, the leader's request endpoint as announced through the
//  log, or NULL (while electing, or not clustered). Caller owns.
static char *
s_leader_endpoint (cvr_server_t *self)
{
    if (!self->log || !self->peers)
        return NULL;
    uint64_t leader = cvr_raft_leader_id (cvr_log_raft (self->log));
    return leader ? cvr_log_endpoint (self->log, leader, false) : NULL;
}

static cvr_err_t
s_op_hello (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_wr_kstr (reply, "server", "conveyord");
    cvr_wr_kstr (reply, "version", CVR_VERSION_STRING);
    cvr_wr_kint (reply, "protocol", 1);
    cvr_wr_kstr (reply, "node_id", self->node_id);
    cvr_wr_kstr (reply, "events_endpoint", self->events_endpoint);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    char *leader = s_leader_endpoint (self);
    cvr_wr_kstr (reply, "leader", leader);
    zstr_free (&leader);
    cvr_wr_kint (reply, "lease_ms", self->config.lease_ms);
    cvr_wr_kint (reply, "session_timeout_ms", self->config.session_timeout_ms);
    return CVR_OK;
}

static cvr_err_t
s_op_register (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_service_t spec = { .weight = 100, .lease_ms = self->config.lease_ms };
    int type = 0;
    if (s_get_name (self, req, "service_id", true, &spec.service_id)
    ||  s_get_name (self, req, "service_name", true, &spec.service_name)
    ||  s_get_enum (self, req, "service_type", true, s_service_types, &type)
    ||  s_get_str (self, req, "endpoint", true, 1, CVR_ENDPOINT_MAX, &spec.endpoint)
    ||  s_get_labels (self, req, "labels", &spec.labels, &spec.labels_count)
    ||  s_get_name (self, req, "group_id", false, &spec.group_id)
    ||  s_get_int (self, req, "lease_ms", false, 1, INT64_MAX, &spec.lease_ms)
    ||  s_get_int (self, req, "weight", false, 0, 1000000, &spec.weight))
        return CVR_BAD_REQUEST;
    spec.service_type = (char *) s_service_types [type];
    spec.lease_ms = s_clamp_lease (self, spec.lease_ms);
    cvr_cmd_t cmd = { .type = CVR_CMD_REGISTER, .now = zclock_time (), .service = &spec };
    cvr_err_t rc = s_submit (self, &cmd);
    if (rc == CVR_LIMIT_EXCEEDED)
        snprintf (self->message, sizeof (self->message),
                  "the server holds its maximum of %" PRId64 " services",
                  self->config.max_services);
    if (rc)
        return rc;
    const cvr_service_t *service = cvr_registry_lookup (
        cvr_state_registry (self->state), spec.service_id);
    cvr_leases_renew (self->leases, service);
    cvr_groups_touch_service (cvr_state_groups (self->state), service->service_id,
                              service->last_heartbeat_at);
    cvr_wr_kint (reply, "lease_ms", service->lease_ms);
    cvr_wr_str (reply, "service");
    //  The record as its registered or updated event carries it (in memory;
    //  the same bytes), else encoded here (with a log, or when nothing
    //  changed and no event went out).
    size_t size;
    const uint8_t *record = cvr_effects_service (self->effects, &size);
    if (record)
        cvr_wr_raw (reply, record, size);
    else
        cvr_proto_write_service (reply, service);
    return CVR_OK;
}

//  Looks up the service named by the request's service_id; NOT_FOUND with
//  a message when absent.
static cvr_err_t
s_find_service (cvr_server_t *self, const char *service_id,
                const cvr_service_t **service)
{
    *service = cvr_registry_lookup (cvr_state_registry (self->state), service_id);
    if (*service)
        return CVR_OK;
    snprintf (self->message, sizeof (self->message),
              "no service '%s' is registered", service_id);
    return CVR_NOT_FOUND;
}

//  The request's service_id and its service: BAD_REQUEST or NOT_FOUND.
static cvr_err_t
s_service_arg (cvr_server_t *self, const msgpack_object *req, char **service_id,
               const cvr_service_t **service)
{
    if (s_get_name (self, req, "service_id", true, service_id))
        return CVR_BAD_REQUEST;
    return s_find_service (self, *service_id, service);
}

static cvr_err_t
s_op_heartbeat (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *service_id;
    int health = CVR_HEALTH_HEALTHY;
    if (s_get_name (self, req, "service_id", true, &service_id)
    ||  s_get_enum (self, req, "health", false, s_reported_healths, &health))
        return CVR_BAD_REQUEST;
    //  One lookup, which stamps the heartbeat: soft state, and its lease
    //  deadline stays (cvr_leases_next re-reads last_heartbeat_at).
    int64_t now = zclock_time ();
    const cvr_service_t *service = cvr_registry_touch (cvr_state_registry (self->state),
                                                       service_id, now);
    if (!service)
        return s_find_service (self, service_id, &service);    //  NOT_FOUND
    if (service->health != (cvr_health_t) health) {
        //  A change of health is state; a plain keepalive is not.
        cvr_cmd_t cmd = { .type = CVR_CMD_HEARTBEAT, .now = now,
                          .service_id = service_id, .health = (cvr_health_t) health };
        cvr_err_t rc = s_submit (self, &cmd);
        if (rc)
            return rc;
        cvr_leases_renew (self->leases, service);
    }
    cvr_groups_touch_service (cvr_state_groups (self->state), service_id, now);
    cvr_wr_kint (reply, "lease_ms", service->lease_ms);
    cvr_wr_kstr (reply, "health", cvr_health_name (service->health));
    return CVR_OK;
}

static cvr_err_t
s_op_deregister (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *service_id;
    const cvr_service_t *service;
    cvr_err_t rc = s_service_arg (self, req, &service_id, &service);
    if (rc)
        return rc;
    cvr_cmd_t cmd = { .type = CVR_CMD_DEREGISTER, .now = zclock_time (),
                      .service_id = service_id };
    if ((rc = s_submit (self, &cmd)))
        return rc;
    cvr_leases_forget (self->leases, service_id);
    return CVR_OK;
}

static cvr_err_t
s_op_get_service (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *service_id;
    const cvr_service_t *service;
    cvr_err_t rc = s_service_arg (self, req, &service_id, &service);
    if (rc)
        return rc;
    cvr_wr_str (reply, "service");
    cvr_proto_write_service (reply, service);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    return CVR_OK;
}

static cvr_err_t
s_op_list_services (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_service_filter_t filter = { 0 };
    cvr_label_t *labels;
    int type = -1;
    if (s_get_name (self, req, "service_name", false, (char **) &filter.service_name)
    ||  s_get_enum (self, req, "service_type", false, s_service_types, &type)
    ||  s_get_name (self, req, "group_id", false, (char **) &filter.group_id)
    ||  s_get_labels (self, req, "labels", &labels, &filter.labels_count)
    ||  s_get_bool (self, req, "healthy_only", &filter.healthy_only))
        return CVR_BAD_REQUEST;
    filter.labels = labels;
    filter.service_type = type >= 0 ? s_service_types [type] : NULL;
    size_t count;
    const cvr_service_t **found = cvr_registry_query (
        cvr_state_registry (self->state), &filter, &count);
    cvr_wr_str (reply, "services");
    cvr_wr_array (reply);
    for (size_t i = 0; i < count; i++)
        cvr_proto_write_service (reply, found [i]);
    cvr_wr_close (reply);
    free (found);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    return CVR_OK;
}

static cvr_err_t
s_op_events_since (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    int64_t since = 0, limit = 1000;
    char *prefix;
    if (s_get_int (self, req, "since", true, 0, INT64_MAX, &since)
    ||  s_get_str (self, req, "prefix", false, 0, CVR_PREFIX_MAX, &prefix)
    ||  s_get_int (self, req, "limit", false, 1, 10000, &limit))
        return CVR_BAD_REQUEST;
    cvr_err_t rc = cvr_history_since (self->history, (uint64_t) since, prefix,
                                      (size_t) limit, reply);
    if (rc == CVR_COMPACTED)
        snprintf (self->message, sizeof (self->message),
                  "events after %" PRId64 " are no longer kept; the oldest is %" PRIu64
                  ": re-read the state", since, cvr_history_oldest (self->history));
    return rc;
}

static void
s_write_counts (cvr_wr_t *reply, const char *key, const char *const *names,
                const uint64_t *counts, size_t size)
{
    cvr_wr_str (reply, key);
    cvr_wr_map (reply);
    for (size_t i = 0; i < size; i++)
        if (counts [i])
            cvr_wr_kuint (reply, names [i], counts [i]);
    cvr_wr_close (reply);
}

static cvr_err_t
s_op_stats (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    //  A follower describes the cluster's committed state (its own is empty).
    bool follower = self->log && !self->leading;
    cvr_state_t *state = follower ? cvr_log_lock (self->log) : self->state;
    cvr_registry_t *registry = cvr_state_registry (state);
    cvr_wr_kint (reply, "uptime_ms", zclock_time () - self->started_at);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    cvr_wr_kuint (reply, "services", cvr_registry_size (registry));
    cvr_groups_t *groups = cvr_state_groups (state);
    cvr_wr_kuint (reply, "groups", cvr_groups_count (groups));
    cvr_wr_kuint (reply, "members", cvr_groups_members (groups));
    cvr_wr_kuint (reply, "topics", cvr_groups_topics (groups));
    const char *op_names [s_ops_count + 1];
    for (size_t i = 0; i < s_ops_count; i++)
        op_names [i] = s_ops [i].op;
    op_names [s_ops_count] = "?";
    s_write_counts (reply, "requests", op_names, self->requests, s_ops_count + 1);
    const char *code_names [CVR_ERR_COUNT];
    for (int code = 0; code < CVR_ERR_COUNT; code++)
        code_names [code] = cvr_err_name ((cvr_err_t) code);
    s_write_counts (reply, "errors", code_names + 1, self->errors + 1, CVR_TIMEOUT - 1);
    cvr_wr_kuint (reply, "dropped", self->dropped);
    cvr_wr_kuint (reply, "rebalances", cvr_groups_rebalances (groups));
    cvr_wr_kuint (reply, "expired", cvr_registry_expired (registry));
    cvr_wr_kuint (reply, "members_expired", cvr_groups_members_expired (groups));
    if (follower)
        cvr_log_unlock (self->log);
    cvr_wr_kuint (reply, "events_published", cvr_history_seq (self->history));
    if (self->log)
        cvr_wr_kuint (reply, "log_entries", self->entries);
    return CVR_OK;
}

//  --------------------------------------------------------------------------
//  The cluster (with --data-dir; membership changes with --peers)

static cvr_err_t
s_need_log (cvr_server_t *self)
{
    if (self->log)
        return CVR_OK;
    snprintf (self->message, sizeof (self->message),
              "this daemon keeps its state in memory: no raft log without --data-dir");
    return CVR_NOT_FOUND;
}

static cvr_err_t
s_op_cluster_status (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_err_t rc = s_need_log (self);
    if (rc)
        return rc;
    const char *states [] = { "unavailable", "follower", "candidate", "leader" };
    const char *roles [] = { "standby", "voter", "spare" };
    cvr_raft_status_t status;
    cvr_raft_status (cvr_log_raft (self->log), &status);
    cvr_wr_kuint (reply, "node_id", cvr_raft_id (cvr_log_raft (self->log)));
    cvr_wr_kstr (reply, "state", states [status.state & 3]);
    cvr_wr_kbool (reply, "leading", self->leading);
    cvr_wr_kuint (reply, "leader_id", status.leader_id);
    char *leader = s_leader_endpoint (self);
    cvr_wr_kstr (reply, "leader", leader);
    zstr_free (&leader);
    cvr_wr_kuint (reply, "term", status.term);
    cvr_wr_kuint (reply, "commit_index", status.commit_index);
    cvr_wr_kuint (reply, "last_applied", status.last_applied);
    cvr_wr_str (reply, "servers");
    cvr_wr_array (reply);
    for (size_t i = 0; i < status.server_count; i++) {
        cvr_raft_server_t *server = &status.servers [i];
        char *request = cvr_log_endpoint (self->log, server->id, false);
        char *events = cvr_log_endpoint (self->log, server->id, true);
        cvr_wr_map (reply);
        cvr_wr_kuint (reply, "id", server->id);
        cvr_wr_kstr (reply, "address", server->address);
        cvr_wr_kstr (reply, "role", roles [server->role % 3]);
        cvr_wr_kstr (reply, "request_endpoint", request);
        cvr_wr_kstr (reply, "events_endpoint", events);
        cvr_wr_close (reply);
        zstr_free (&request);
        zstr_free (&events);
    }
    cvr_wr_close (reply);
    cvr_raft_status_reset (&status);
    return CVR_OK;
}

//  An add of a node already in the configuration is answered at once when
//  it contradicts it: the id at another address, or the address under
//  another id (a node moves by a remove, then an add). The same id at the
//  same address is a no-op the engine confirms.
static cvr_err_t
s_check_add (cvr_server_t *self, uint64_t id, const char *address)
{
    cvr_raft_status_t status;
    cvr_raft_status (cvr_log_raft (self->log), &status);
    cvr_err_t rc = CVR_OK;
    //  Not leading: the engine answers NOT_LEADER, as for any change.
    for (size_t i = 0; i < status.server_count && !rc && status.is_leader; i++) {
        const cvr_raft_server_t *server = &status.servers [i];
        if ((server->id == id) != streq (server->address, address)) {
            snprintf (self->message, sizeof (self->message),
                      "node %" PRIu64 " is in the cluster at %s: remove it first to "
                      "add node %" PRIu64 " at %s", server->id, server->address, id, address);
            rc = CVR_CONFLICT;
        }
    }
    cvr_raft_status_reset (&status);
    return rc;
}

//  cluster_add and cluster_remove: the reply waits for the change (CHANGED).
static cvr_err_t
s_op_cluster_change (cvr_server_t *self, const msgpack_object *req, bool add)
{
    cvr_err_t rc = s_need_log (self);
    if (rc)
        return rc;
    int64_t id;
    char *address = NULL;
    if (s_get_int (self, req, "node_id", true, 1, INT64_MAX, &id)
    ||  (add && s_get_str (self, req, "address", true, 3, 255, &address)))
        return CVR_BAD_REQUEST;
    if (add && (rc = s_check_add (self, (uint64_t) id, address)))
        return rc;
    uint64_t tag = ++self->change_tag;
    cvr_raft_t *raft = cvr_log_raft (self->log);
    if (add ? cvr_raft_add (raft, (uint64_t) id, address, tag)
            : cvr_raft_remove (raft, (uint64_t) id, tag)) {
        snprintf (self->message, sizeof (self->message), "the raft engine is stopping");
        return CVR_INTERNAL;
    }
    s_log (self, S_INFO, "cluster: %s node %" PRId64 "%s%s", add ? "adding" : "removing", id,
           add ? " at " : "", add ? address : "");
    self->defer_tag = tag;
    return S_DEFERRED;
}

//  A follower's endpoints, sent by it to the leader, into the log: every
//  node then knows every node's endpoints (cluster_status).
static cvr_err_t
s_op_cluster_announce (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_err_t rc = s_need_log (self);
    if (rc)
        return rc;
    int64_t id;
    char *request, *events;
    if (s_get_int (self, req, "node_id", true, 1, INT64_MAX, &id)
    ||  s_get_str (self, req, "request_endpoint", true, 6, CVR_ENDPOINT_MAX, &request)
    ||  s_get_str (self, req, "events_endpoint", true, 6, CVR_ENDPOINT_MAX, &events))
        return CVR_BAD_REQUEST;
    char *known = cvr_log_endpoint (self->log, (uint64_t) id, false);
    if (!known || !streq (known, request))
        cvr_log_announce (self->log, (uint64_t) id, request, events);
    zstr_free (&known);
    return CVR_OK;
}

static cvr_err_t
s_op_cluster_add (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    return s_op_cluster_change (self, req, true);
}

static cvr_err_t
s_op_cluster_remove (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    return s_op_cluster_change (self, req, false);
}


//  --------------------------------------------------------------------------
//  Topics and groups

//  An array of names, at least one; the array lives until the reply.
static int
s_get_names (cvr_server_t *self, const msgpack_object *req, const char *key,
             const char ***names, size_t *count)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    if (!o)
        return s_bad (self, "%s is required", key);
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size == 0)
        return s_bad (self, "%s must be an array of at least one name", key);
    *count = o->via.array.size;
    *names = (const char **) s_scratch (self, *count * sizeof (char *));
    for (size_t i = 0; i < *count; i++) {
        const msgpack_object *item = &o->via.array.ptr [i];
        char *name = item->type == MSGPACK_OBJECT_STR && item->via.str.size >= 1
                     && item->via.str.size <= CVR_NAME_MAX ? s_scratch_str (self, item) : NULL;
        if (!name || !s_valid_name (name))
            return s_bad (self, "%s: every entry must be 1 to %d bytes of [A-Za-z0-9._:@-]",
                          key, CVR_NAME_MAX);
        (*names) [i] = name;
    }
    return 0;
}

//  An array of [topic, partition] or [topic, partition, offset] entries
//  (width 2 or 3), partitions and offsets integers >= 0.
static int
s_get_partitions (cvr_server_t *self, const msgpack_object *req, const char *key,
                  bool required, size_t width, cvr_offset_t **entries, size_t *count)
{
    const msgpack_object *o = cvr_obj_get (req, key);
    *entries = NULL;
    *count = 0;
    if (!o)
        return required ? s_bad (self, "%s is required", key) : 0;
    const char *shape = width == 3 ? "[topic, partition, offset]" : "[topic, partition]";
    if (o->type != MSGPACK_OBJECT_ARRAY)
        return s_bad (self, "%s must be an array of %s", key, shape);
    *entries = (cvr_offset_t *) s_scratch (self, (o->via.array.size + 1) * sizeof (cvr_offset_t));
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *item = &o->via.array.ptr [i];
        cvr_offset_t *entry = &(*entries) [i];
        char *topic = NULL;
        if (item->type == MSGPACK_OBJECT_ARRAY && item->via.array.size == width
        &&  item->via.array.ptr [0].type == MSGPACK_OBJECT_STR
        &&  item->via.array.ptr [0].via.str.size >= 1
        &&  item->via.array.ptr [0].via.str.size <= CVR_NAME_MAX)
            topic = s_scratch_str (self, &item->via.array.ptr [0]);
        if (!topic || !s_valid_name (topic)
        ||  cvr_obj_int (&item->via.array.ptr [1], &entry->partition) || entry->partition < 0
        ||  (width == 3 && (cvr_obj_int (&item->via.array.ptr [2], &entry->offset)
                            || entry->offset < 0)))
            return s_bad (self, "%s: entry %u must be %s with a valid topic name and "
                          "integers >= 0", key, i, shape);
        entry->topic = topic;
    }
    *count = o->via.array.size;
    return 0;
}

//  The message of a group operation's state error.
static cvr_err_t
s_group_error (cvr_server_t *self, cvr_err_t rc, const char *group_id, const char *member_id)
{
    if (rc == CVR_NOT_FOUND)
        s_bad (self, "no group '%s'", group_id);
    else
    if (rc == CVR_UNKNOWN_MEMBER)
        s_bad (self, "'%s' is not a member of group '%s' (expired, left or fenced): rejoin",
               member_id, group_id);
    else
    if (rc == CVR_ILLEGAL_GENERATION)
        s_bad (self, "generation is not group '%s''s current one: take the new "
               "assignment (group_heartbeat) and retry", group_id);
    else
    if (rc == CVR_NOT_OWNER)
        s_bad (self, "a partition is not assigned to member '%s' in this generation", member_id);
    else
    if (rc == CVR_CONFLICT)
        s_bad (self, "group '%s' still has members", group_id);
    return rc;
}

static cvr_err_t
s_op_create_topic (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *topic;
    int64_t partitions = 0;
    if (s_get_name (self, req, "topic", true, &topic)
    ||  s_get_int (self, req, "partitions", true, 1, 100000, &partitions))
        return CVR_BAD_REQUEST;
    cvr_cmd_t cmd = { .type = CVR_CMD_CREATE_TOPIC, .now = zclock_time (),
                      .topic = topic, .partitions = partitions };
    cvr_err_t rc = s_submit (self, &cmd);
    uint32_t current = cvr_groups_topic_partitions (cvr_state_groups (self->state), topic);
    if (rc == CVR_CONFLICT)
        return s_bad (self, "topic '%s' has %u partitions; partitions never shrink",
                      topic, current), rc;
    if (rc)
        return rc;
    cvr_wr_kstr (reply, "topic", topic);
    cvr_wr_kuint (reply, "partitions", current);
    return CVR_OK;
}

static cvr_err_t
s_op_list_topics (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_groups_write_topics (cvr_state_groups (self->state), reply);
    return CVR_OK;
}

static cvr_err_t
s_op_join_group (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_join_t join = { .session_timeout_ms = self->config.session_timeout_ms };
    char *group_id, *member_id, *instance_id, *service_id, *service_name, *assignor;
    const char **topics = NULL;
    if (s_get_name (self, req, "group_id", true, &group_id)
    ||  s_get_names (self, req, "topics", &topics, &join.topics_count)
    ||  s_get_str (self, req, "member_id", false, 0, CVR_NAME_MAX, &member_id)
    ||  s_get_name (self, req, "service_name", false, &service_name)
    ||  s_get_name (self, req, "service_id", false, &service_id)
    ||  s_get_name (self, req, "instance_id", false, &instance_id)
    ||  s_get_int (self, req, "session_timeout_ms", false, 1, INT64_MAX,
                   &join.session_timeout_ms)
    ||  s_get_name (self, req, "assignor", false, &assignor))
        return CVR_BAD_REQUEST;
    if (member_id && *member_id && !s_valid_name (member_id))
        return s_bad (self, "member_id must be empty or 1 to %d bytes of "
                      "[A-Za-z0-9._:@-]", CVR_NAME_MAX), CVR_BAD_REQUEST;
    if (assignor && !cvr_assignor_find (assignor))
        return s_bad (self, "assignor '%s' is unknown: range, roundrobin or sticky",
                      assignor), CVR_BAD_REQUEST;
    if (!member_id || !*member_id) {
        //  Unique without coordination: a UUID, after the service's name.
        zuuid_t *uuid = zuuid_new ();
        member_id = s_keep (self, zsys_sprintf ("%.150s-%s", service_name ? service_name
                                                : "member", zuuid_str_canonical (uuid)));
        zuuid_destroy (&uuid);
    }
    join = (cvr_join_t) {
        .group_id = group_id, .member_id = member_id, .instance_id = instance_id,
        .service_id = service_id, .service_name = service_name, .topics = topics,
        .topics_count = join.topics_count, .assignor = assignor,
        .session_timeout_ms = s_clamp_lease (self, join.session_timeout_ms)
    };
    cvr_cmd_t cmd = { .type = CVR_CMD_JOIN, .now = zclock_time (), .join = &join };
    cvr_err_t rc = s_submit (self, &cmd);
    cvr_groups_t *groups = cvr_state_groups (self->state);
    if (rc == CVR_NOT_FOUND && service_id
    &&  !cvr_registry_lookup (cvr_state_registry (self->state), service_id))
        return s_bad (self, "no service '%s' is registered", service_id), rc;
    if (rc == CVR_NOT_FOUND)
        return s_bad (self, "a topic does not exist and auto-creation is off "
                      "(--default-partitions 0): create_topic first"), rc;
    if (rc == CVR_CONFLICT)
        return s_bad (self, "group '%s' has members using another assignor", group_id), rc;
    if (rc == CVR_LIMIT_EXCEEDED)
        return s_bad (self, "the server's group or member limit is reached "
                      "(--max-groups %" PRId64 ", --max-members %" PRId64 ")",
                      self->config.max_groups, self->config.max_members), rc;
    if (rc)
        return s_group_error (self, rc, group_id, member_id);
    if (cvr_groups_is_dirty (groups, group_id)) {
        self->defer_group = group_id;
        self->defer_member = member_id;
        return S_DEFERRED;
    }
    cvr_groups_write_join (groups, group_id, member_id, reply);
    return CVR_OK;
}

//  Reads group_id and member_id, the two keys of most group operations.
static int
s_get_member (cvr_server_t *self, const msgpack_object *req, char **group_id,
              char **member_id)
{
    return s_get_name (self, req, "group_id", true, group_id)
        || s_get_name (self, req, "member_id", true, member_id);
}

static cvr_err_t
s_op_leave_group (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id, *member_id;
    if (s_get_member (self, req, &group_id, &member_id))
        return CVR_BAD_REQUEST;
    cvr_cmd_t cmd = { .type = CVR_CMD_LEAVE, .now = zclock_time (),
                      .group_id = group_id, .member_id = member_id };
    return s_group_error (self, s_submit (self, &cmd), group_id, member_id);
}

static cvr_err_t
s_op_group_heartbeat (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id, *member_id;
    int64_t generation = 0;
    if (s_get_member (self, req, &group_id, &member_id)
    ||  s_get_int (self, req, "generation", true, INT64_MIN, INT64_MAX, &generation))
        return CVR_BAD_REQUEST;
    cvr_groups_t *groups = cvr_state_groups (self->state);
    cvr_err_t rc = cvr_groups_heartbeat (groups, group_id, member_id, zclock_time ());
    if (rc)
        return s_group_error (self, rc, group_id, member_id);
    cvr_groups_write_heartbeat (groups, group_id, member_id, generation, reply);
    return CVR_OK;
}

static cvr_err_t
s_op_get_group (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id;
    if (s_get_name (self, req, "group_id", true, &group_id))
        return CVR_BAD_REQUEST;
    cvr_err_t rc = cvr_groups_write_group (cvr_state_groups (self->state), group_id, reply);
    if (rc)
        return s_group_error (self, rc, group_id, NULL);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    return CVR_OK;
}

static cvr_err_t
s_op_list_groups (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    cvr_groups_write_list (cvr_state_groups (self->state), reply);
    cvr_wr_kuint (reply, "seq", cvr_history_seq (self->history));
    return CVR_OK;
}

static cvr_err_t
s_op_commit_offsets (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id, *member_id;
    int64_t generation = 0;
    cvr_offset_t *offsets;
    size_t count;
    if (s_get_member (self, req, &group_id, &member_id)
    ||  s_get_int (self, req, "generation", true, INT64_MIN, INT64_MAX, &generation)
    ||  s_get_partitions (self, req, "offsets", true, 3, &offsets, &count))
        return CVR_BAD_REQUEST;
    cvr_cmd_t cmd = { .type = CVR_CMD_COMMIT, .now = zclock_time (), .group_id = group_id,
                      .member_id = member_id, .generation = generation,
                      .offsets = offsets, .offsets_count = count };
    return s_group_error (self, s_submit (self, &cmd), group_id, member_id);
}

static cvr_err_t
s_op_fetch_offsets (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id;
    cvr_offset_t *partitions;
    size_t count;
    if (s_get_name (self, req, "group_id", true, &group_id)
    ||  s_get_partitions (self, req, "partitions", false, 2, &partitions, &count))
        return CVR_BAD_REQUEST;
    cvr_err_t rc = cvr_groups_write_offsets (cvr_state_groups (self->state), group_id,
                                             partitions, count, partitions == NULL, reply);
    return s_group_error (self, rc, group_id, NULL);
}

static cvr_err_t
s_op_delete_group (cvr_server_t *self, const msgpack_object *req, cvr_wr_t *reply)
{
    char *group_id;
    if (s_get_name (self, req, "group_id", true, &group_id))
        return CVR_BAD_REQUEST;
    cvr_cmd_t cmd = { .type = CVR_CMD_DELETE_GROUP, .now = zclock_time (),
                      .group_id = group_id };
    return s_group_error (self, s_submit (self, &cmd), group_id, NULL);
}

static const s_op_t s_ops [] = {
    { "hello", s_op_hello, false, true, false },
    { "register", s_op_register, false, false, true },
    { "heartbeat", s_op_heartbeat, false, false, false },
    { "deregister", s_op_deregister, false, false, true },
    { "get_service", s_op_get_service, false, false, false },
    { "list_services", s_op_list_services, false, false, false },
    { "events_since", s_op_events_since, false, true, false },
    { "stats", s_op_stats, false, true, false },
    { "create_topic", s_op_create_topic, false, false, true },
    { "list_topics", s_op_list_topics, false, false, false },
    { "join_group", s_op_join_group, false, false, true },
    { "leave_group", s_op_leave_group, false, false, true },
    { "group_heartbeat", s_op_group_heartbeat, true, false, false },
    { "get_group", s_op_get_group, true, false, false },
    { "list_groups", s_op_list_groups, true, false, false },
    { "commit_offsets", s_op_commit_offsets, false, false, true },
    { "fetch_offsets", s_op_fetch_offsets, false, false, false },
    { "delete_group", s_op_delete_group, false, false, true },
    { "cluster_status", s_op_cluster_status, false, true, false },
    { "cluster_add", s_op_cluster_add, false, false, false },
    { "cluster_remove", s_op_cluster_remove, false, false, false },
    { "cluster_announce", s_op_cluster_announce, false, false, false },
};
static const size_t s_ops_count = sizeof (s_ops) / sizeof (s_ops [0]);

//  --------------------------------------------------------------------------
//  Requests

static void
    s_flush (cvr_server_t *self);

//  Checks a body in the order of protocol section 2 and runs its handler.
//  Writes the whole reply into self->reply, or returns true when the reply
//  was deferred (then the last pending entry waits for its envelope).
//  A write that carried a client_id: its reply (in self->reply) is kept
//  for retries, here at once and in the log with the batch.
static void
s_remember (cvr_server_t *self, char **key_p)
{
    if (*key_p) {
        cvr_dedup_put (self->dedup, *key_p, cvr_wr_data (self->reply),
                       cvr_wr_size (self->reply));
        cvr_log_append_reply (self->log, *key_p, cvr_wr_data (self->reply),
                              cvr_wr_size (self->reply));
    }
    zstr_free (key_p);
}

static bool
s_handle_body (cvr_server_t *self, const void *body, size_t body_size)
{
    cvr_wr_t *reply = self->reply;
    const msgpack_object *req = NULL, *rid = NULL, *op = NULL;
    const s_op_t *entry = NULL;
    cvr_err_t rc = CVR_OK;
    self->message [0] = 0;

    if (body_size > (size_t) self->config.max_message_bytes) {
        rc = CVR_LIMIT_EXCEEDED;
        snprintf (self->message, sizeof (self->message),
                  "body of %zu bytes is over the limit of %" PRId64,
                  body_size, self->config.max_message_bytes);
    }
    else
    if (!(req = cvr_reader_decode (self->reader, body, body_size))
    ||  req->type != MSGPACK_OBJECT_MAP) {
        req = NULL;
        rc = CVR_BAD_REQUEST;
        snprintf (self->message, sizeof (self->message),
                  "the body must be one MessagePack map");
    }
    else {
        rid = cvr_obj_get (req, "rid");
        op = cvr_obj_get (req, "op");
        int64_t version = 1;
        if (!cvr_obj_is_str_map (req))
            rc = CVR_BAD_REQUEST, s_bad (self, "every key of the body must be a string");
        else
        if (!op || op->type != MSGPACK_OBJECT_STR)
            rc = CVR_BAD_REQUEST, s_bad (self, "op is required and must be a string");
        else
        if (s_get_int (self, req, "v", false, 1, INT64_MAX, &version))
            rc = CVR_BAD_REQUEST, s_bad (self, "v must be an integer >= 1");
        else
        if (version > 1)
            rc = CVR_UNSUPPORTED_VERSION,
            s_bad (self, "protocol version %" PRId64 " is not supported; this server speaks 1",
                   version);
        for (size_t i = 0; op && op->type == MSGPACK_OBJECT_STR && i < s_ops_count; i++)
            if (cvr_obj_streq (op, s_ops [i].op)) {
                entry = &s_ops [i];
                break;
            }
        if (rc == CVR_OK && !entry) {
            char name [65];
            rc = CVR_UNKNOWN_OP;
            s_bad (self, "unknown op '%s'", s_printable (name, sizeof (name),
                   op->via.str.ptr, op->via.str.size));
        }
    }
    self->requests [entry ? (size_t) (entry - s_ops) : s_ops_count]++;

    //  A read of groups never sees a change without its rebalance (a member
    //  gone while its partitions still name it). The flush sends deferred
    //  join replies through the same writer, so it runs before this reply
    //  is started.
    if (rc == CVR_OK && self->log && !self->leading && !entry->anywhere) {
        rc = CVR_NOT_LEADER;
        s_bad (self, "this node is not the leader; ask the one in `leader`");
    }
    //  A retried write (same client_id and rid) gets its first reply again.
    zstr_free (&self->dedup_key);
    if (rc == CVR_OK && self->log && entry->dedup && rid) {
        char *client_id = NULL;
        if (s_get_name (self, req, "client_id", false, &client_id))
            rc = CVR_BAD_REQUEST;
        else
        if (client_id) {
            self->dedup_key = cvr_dedup_key (client_id, rid);
            size_t size;
            const uint8_t *cached = cvr_dedup_get (self->dedup, self->dedup_key, &size);
            if (cached) {
                s_log (self, S_DEBUG, "request %s: a retry, answered as before", entry->op);
                cvr_wr_reset (reply);
                cvr_wr_raw (reply, cached, size);
                zstr_free (&self->dedup_key);
                zlistx_purge (self->scratch);
                self->pool_used = 0;
                return false;
            }
        }
    }
    if (rc == CVR_OK && entry->settle)
        s_flush (self);

    cvr_wr_reset (reply);
    cvr_wr_map (reply);
    cvr_wr_kbool (reply, "ok", true);
    if (rid) {
        cvr_wr_str (reply, "rid");
        cvr_wr_obj (reply, rid);
    }
    if (rc == CVR_OK) {
        rc = entry->handler (self, req, reply);
        if (rc == CVR_BAD_REQUEST && !self->message [0])
            s_bad (self, "bad request");
    }
    if (rc == S_DEFERRED) {
        //  The reply waits for the rebalance (or the cluster change): keep
        //  what it needs.
        s_pending_t *pending = (s_pending_t *) zmalloc (sizeof (s_pending_t));
        pending->tag = self->defer_tag;
        if (!pending->tag) {
            pending->group_id = strdup (self->defer_group);
            pending->member_id = strdup (self->defer_member);
        }
        self->defer_tag = 0;
        pending->dedup_key = self->dedup_key;
        self->dedup_key = NULL;
        if (rid) {
            cvr_wr_reset (reply);
            cvr_wr_obj (reply, rid);
            pending->rid_size = cvr_wr_size (reply);
            pending->rid = (uint8_t *) malloc (pending->rid_size);
            assert (pending->rid);
            memcpy (pending->rid, cvr_wr_data (reply), pending->rid_size);
        }
        zlistx_add_end (pending->tag ? self->changes : self->pending, pending);
        self->deferred = pending;
        cvr_wr_reset (reply);
        zlistx_purge (self->scratch);
        self->pool_used = 0;
        return true;
    }
    if (rc != CVR_OK) {
        self->errors [rc]++;
        s_log (self, S_DEBUG, "request %s failed: %s: %s",
               entry ? entry->op : "?", cvr_err_name (rc), self->message);
        cvr_wr_reset (reply);
        cvr_wr_map (reply);
        cvr_wr_kbool (reply, "ok", false);
        if (rid) {
            cvr_wr_str (reply, "rid");
            cvr_wr_obj (reply, rid);
        }
        cvr_wr_kstr (reply, "error", cvr_err_name (rc));
        cvr_wr_kstr (reply, "message", self->message);
        if (rc == CVR_COMPACTED)
            cvr_wr_kuint (reply, "oldest", cvr_history_oldest (self->history));
        if (rc == CVR_NOT_LEADER) {
            char *leader = s_leader_endpoint (self);
            cvr_wr_kstr (reply, "leader", leader);
            zstr_free (&leader);
        }
    }
    cvr_wr_close (reply);
    s_remember (self, &self->dedup_key);
    zlistx_purge (self->scratch);
    self->pool_used = 0;
    return false;
}

//  Sends self->reply in the envelope the request came in.
static void
s_send_reply (cvr_server_t *self, zframe_t **identity, zframe_t **delimiter)
{
    s_out (self, zframe_data (*identity), zframe_size (*identity), *delimiter != NULL,
           cvr_wr_data (self->reply), cvr_wr_size (self->reply));
    zframe_destroy (identity);
    zframe_destroy (delimiter);
}

static void
s_pending_destroy (s_pending_t **self_p)
{
    s_pending_t *self = *self_p;
    zframe_destroy (&self->identity);
    zframe_destroy (&self->delimiter);
    free (self->rid);
    free (self->group_id);
    free (self->member_id);
    free (self->dedup_key);
    free (self);
    *self_p = NULL;
}

//  After a batch: one rebalance per changed group (so a burst of joins
//  makes one generation), its events published, and only then the join
//  replies that waited for it.
static void
s_flush (cvr_server_t *self)
{
    if (self->log && !self->leading) {
        s_cut (self);               //  a follower's replies go out at once
        return;
    }
    cvr_groups_t *groups = cvr_state_groups (self->state);
    const char *dirty;
    while ((dirty = cvr_groups_next_dirty (groups))) {
        char group_id [CVR_NAME_MAX + 1];
        snprintf (group_id, sizeof (group_id), "%s", dirty);
        cvr_cmd_t cmd = { .type = CVR_CMD_REBALANCE, .now = zclock_time (),
                          .group_id = group_id };
        if (s_submit (self, &cmd) != CVR_OK) {
            s_log (self, S_ERROR, "rebalance of group %s failed; retrying after the "
                   "next batch", group_id);
            break;
        }
    }
    s_pending_t *pending;
    while ((pending = (s_pending_t *) zlistx_detach (self->pending, NULL))) {
        cvr_wr_t *reply = self->reply;
        cvr_wr_reset (reply);
        cvr_wr_map (reply);
        cvr_err_t rc = cvr_groups_check (groups, pending->group_id, pending->member_id);
        cvr_wr_kbool (reply, "ok", rc == CVR_OK);
        if (pending->rid) {
            cvr_wr_str (reply, "rid");
            cvr_wr_raw (reply, pending->rid, pending->rid_size);
        }
        if (rc == CVR_OK)
            cvr_groups_write_join (groups, pending->group_id, pending->member_id, reply);
        else {
            //  Gone before its rebalance (left or fenced in the same batch).
            s_group_error (self, rc, pending->group_id, pending->member_id);
            self->errors [rc]++;
            cvr_wr_kstr (reply, "error", cvr_err_name (rc));
            cvr_wr_kstr (reply, "message", self->message);
        }
        cvr_wr_close (reply);
        s_remember (self, &pending->dedup_key);
        s_send_reply (self, &pending->identity, &pending->delimiter);
        s_pending_destroy (&pending);
    }
    s_cut (self);
}

//  Receives one envelope off the ROUTER into the batch array (zmq_msg_t
//  frames: no allocation per request); false when nothing was waiting.
//  [identity, body] comes from a DEALER, [identity, "", body] from a REQ;
//  any other shape is marked bad, to be dropped.
static bool
s_recv_envelope (void *router, s_envelope_t *env)
{
    int more = 1;
    env->count = 0;
    while (more && env->count < 3) {
        zmq_msg_t *part = &env->parts [env->count];
        zmq_msg_init (part);
        if (zmq_msg_recv (part, router, env->count ? 0 : ZMQ_DONTWAIT) < 0) {
            zmq_msg_close (part);
            break;
        }
        more = zmq_msg_more (part);
        env->count++;
    }
    if (env->count == 0)
        return false;
    env->bad = more || env->count < 2
            || (env->count == 3 && zmq_msg_size (&env->parts [1]) != 0);
    env->frames = (size_t) env->count;
    while (more) {                      //  the rest of an oversized envelope
        zmq_msg_t rest;
        zmq_msg_init (&rest);
        more = zmq_msg_recv (&rest, router, 0) >= 0 && zmq_msg_more (&rest);
        zmq_msg_close (&rest);
        env->frames++;
    }
    zmq_msg_t *body = &env->parts [env->count - 1];
    env->hint = env->bad ? NULL : cvr_proto_service_id_hint (zmq_msg_data (body),
                                                             zmq_msg_size (body),
                                                             &env->hint_len);
    return true;
}

//  Brings the record a request will look up into cache ahead of it:
//  step 0 its map slot, step 1 (a few requests later, when the slot is
//  likely in) the record. At a million services both are cache and TLB
//  misses; in flight together, they overlap instead of stalling in turn.
//  A service surely not registered is likely being registered: then its
//  lease's slot too (a heartbeat that keeps its health never touches the
//  lease heap).
static void
s_prefetch (cvr_server_t *self, s_envelope_t *env, int step)
{
    if (env->hint
    &&  !cvr_registry_prefetch (cvr_state_registry (self->state), env->hint, env->hint_len,
                                step))
        cvr_leases_prefetch (self->leases, env->hint, env->hint_len);
}

//  Answers one envelope (or defers its reply) and frees its frames.
static void
s_handle_envelope (cvr_server_t *self, s_envelope_t *env)
{
    zmq_msg_t *parts = env->parts;
    int count = env->count;
    if (env->bad) {
        self->dropped++;
        s_log (self, S_DEBUG, "dropped an envelope of %zu frames", env->frames);
    }
    else {
        zmq_msg_t *body = &parts [count - 1];
        if (s_handle_body (self, zmq_msg_data (body), zmq_msg_size (body))) {
            s_pending_t *pending = self->deferred;
            pending->identity = zframe_new (zmq_msg_data (&parts [0]), zmq_msg_size (&parts [0]));
            pending->delimiter = count == 3 ? zframe_new_empty () : NULL;
        }
        else
            s_out (self, zmq_msg_data (&parts [0]), zmq_msg_size (&parts [0]), count == 3,
                   cvr_wr_data (self->reply), cvr_wr_size (self->reply));
    }
    for (int i = 0; i < count; i++)
        zmq_msg_close (&parts [i]);
}

static int
s_on_router (zloop_t *loop, zsock_t *router, void *arg)
{
    cvr_server_t *self = (cvr_server_t *) arg;
    //  Drain what is ready, at most S_BATCH requests (so the timers still
    //  run under load): all received first, then all answered. Replies
    //  leave in a burst that the I/O thread sends with few system calls,
    //  and each request's record is prefetched a few requests ahead.
    void *handle = zsock_resolve (router);
    s_envelope_t *batch = self->batch;
    size_t count = 0;
    while (count < S_BATCH && s_recv_envelope (handle, &batch [count]))
        count++;
    for (size_t i = 0; i < count + S_AHEAD; i++) {
        if (i < count)
            s_prefetch (self, &batch [i], 0);
        if (i >= S_AHEAD / 2 && i - S_AHEAD / 2 < count)
            s_prefetch (self, &batch [i - S_AHEAD / 2], 1);
        if (i >= S_AHEAD)
            s_handle_envelope (self, &batch [i - S_AHEAD]);
    }
    s_flush (self);
    return 0;
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg);

//  The next slice of a mass expiry, after the requests waiting meanwhile.
static int
s_on_slice (zloop_t *loop, int timer_id, void *arg)
{
    ((cvr_server_t *) arg)->slice_pending = false;
    return s_on_tick (loop, timer_id, arg);
}

static int
s_on_tick (zloop_t *loop, int timer_id, void *arg)
{
    cvr_server_t *self = (cvr_server_t *) arg;
    if (self->log && !self->leading)
        return 0;                   //  the leader's clock decides
    if (s_expire_leases (self, zclock_time ()) && !self->slice_pending) {
        zloop_timer (loop, 1, 1, s_on_slice, self);
        self->slice_pending = true;
    }
    s_flush (self);
    return 0;
}

static int
s_on_heartbeat (zloop_t *loop, int timer_id, void *arg)
{
    cvr_server_t *self = (cvr_server_t *) arg;
    if (self->log && self->peers && !self->leading)
        s_announce_self (self);
    cvr_wr_t *body = self->reply;
    cvr_wr_reset (body);
    cvr_wr_map (body);
    cvr_wr_kstr (body, "type", "heartbeat");
    cvr_wr_kint (body, "at", zclock_time ());
    cvr_wr_kuint (body, "seq", cvr_history_seq (self->history));
    cvr_wr_kstr (body, "node_id", self->node_id);
    cvr_wr_close (body);
    void *pub = zsock_resolve (self->pub);
    zmq_send (pub, "sys/heartbeat", 13, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    zmq_send (pub, cvr_wr_data (body), cvr_wr_size (body), ZMQ_DONTWAIT);
    return 0;
}

//  --------------------------------------------------------------------------
//  The pipe

static int
s_set_option (cvr_server_t *self, const char *name, const char *value)
{
    if (streq (name, "log-level")) {
        const char *levels [] = { "error", "warn", "info", "debug" };
        for (int i = 0; i < 4; i++)
            if (streq (value, levels [i])) {
                self->log_level = (s_level_t) i;
                return 0;
            }
        return s_bad (self, "--log-level must be error, warn, info or debug, not '%s'", value);
    }
    if (streq (name, "listen") || streq (name, "publish")
    ||  streq (name, "curve-secret") || streq (name, "curve-clients")) {
        char **target = streq (name, "listen") ? &self->listen
                      : streq (name, "publish") ? &self->publish
                      : streq (name, "curve-secret") ? &self->curve_secret
                      : &self->curve_clients;
        zstr_free (target);
        *target = strdup (value);
        return 0;
    }
    if (streq (name, "data-dir") || streq (name, "raft-bind") || streq (name, "peers")) {
        char **target = streq (name, "data-dir") ? &self->data_dir
                      : streq (name, "peers") ? &self->peers : &self->raft_bind;
        zstr_free (target);
        *target = strdup (value);
        return 0;
    }
    for (size_t i = 0; i < S_OPTIONS; i++) {
        if (!streq (name, s_options [i].name))
            continue;
        char *end;
        errno = 0;
        long long number = strtoll (value, &end, 10);
        if (errno || end == value || *end || number < s_options [i].min
        ||  number > s_options [i].max)
            return s_bad (self, "--%s must be an integer from %" PRId64 " to %" PRId64
                          ", not '%s'", name, s_options [i].min, s_options [i].max, value);
        *(int64_t *) ((char *) &self->config + s_options [i].offset) = number;
        return 0;
    }
    return s_bad (self, "unknown option '%s'", name);
}

static int
s_bind (cvr_server_t *self, zsock_t *sock, const char *endpoint, const char *what)
{
    if (zsock_bind (sock, "%s", endpoint) == -1)
        return s_bad (self, "cannot bind the %s socket to %s: %s", what, endpoint,
                      zmq_strerror (zmq_errno ()));
    return 0;
}

//  The client directory as zauth will read it: every file a public
//  certificate, no key twice (czmq's certificate store aborts on a
//  duplicate, and a secret key has no business in a directory of allowed
//  clients). Returns 0, or -1 with the message set.
static int
s_check_clients (cvr_server_t *self)
{
    zdir_t *dir = zdir_new (self->curve_clients, "-");
    if (!dir)
        return s_bad (self, "--curve-clients: '%s' is not a directory", self->curve_clients);
    zlist_t *files = zdir_list (dir);
    zhashx_t *keys = zhashx_new ();
    int rc = 0;
    for (zfile_t *file = (zfile_t *) zlist_first (files); file && rc == 0;
         file = (zfile_t *) zlist_next (files)) {
        const char *path = zfile_filename (file, NULL);
        zconfig_t *config = zconfig_load (path);
        const char *key = config ? zconfig_get (config, "/curve/public-key", NULL) : NULL;
        if (!key)
            rc = s_bad (self, "--curve-clients: '%s' is not a certificate", path);
        else
        if (zconfig_get (config, "/curve/secret-key", NULL))
            rc = s_bad (self, "--curve-clients: '%s' holds a secret key; the directory "
                        "takes public NAME.cert files only", path);
        else
        if (zhashx_lookup (keys, key))
            rc = s_bad (self, "--curve-clients: '%s' and '%s' hold the same key", path,
                        (const char *) zhashx_lookup (keys, key));
        else
            zhashx_insert (keys, key, (void *) path);
        zconfig_destroy (&config);
    }
    zhashx_destroy (&keys);
    zlist_destroy (&files);
    zdir_destroy (&dir);
    return rc;
}

//  With --curve-secret and --curve-clients, both sockets are CURVE
//  servers and zauth lets in only the clients whose public certificate is
//  in the directory: anyone else gets no reply and no event.
static int
s_secure (cvr_server_t *self)
{
    if (!self->curve_secret && !self->curve_clients)
        return 0;
    if (!self->curve_secret || !self->curve_clients)
        return s_bad (self, "--curve-secret and --curve-clients go together: "
                      "encryption without client authentication is not offered");
    if (!zsys_file_exists (self->curve_secret))
        return s_bad (self, "--curve-secret: cannot read '%s'", self->curve_secret);
    zcert_t *cert = cvr_security_load_cert (self->curve_secret);
    if (!cert || streq (zcert_secret_txt (cert), "0000000000000000000000000000000000000000")) {
        zcert_destroy (&cert);
        return s_bad (self, "--curve-secret: '%s' is not a certificate with a secret key "
                      "(conveyorctl keygen writes NAME.cert_secret)", self->curve_secret);
    }
    if (s_check_clients (self)) {
        zcert_destroy (&cert);
        return -1;
    }
    self->auth = zactor_new (zauth, NULL);
    if (self->log_level >= S_DEBUG) {
        zstr_send (self->auth, "VERBOSE");
        zsock_wait (self->auth);
    }
    zstr_sendx (self->auth, "CURVE", self->curve_clients, NULL);
    zsock_wait (self->auth);
    zsock_t *sockets [] = { self->router, self->pub };
    for (int i = 0; i < 2; i++) {
        zcert_apply (cert, sockets [i]);
        zsock_set_curve_server (sockets [i], 1);
        zsock_set_zap_domain (sockets [i], "conveyor");
    }
    s_log (self, S_INFO, "CurveZMQ on: server key %s, clients from %s",
           zcert_public_txt (cert), self->curve_clients);
    zcert_destroy (&cert);
    return 0;
}

//  An endpoint bound on every interface (tcp://0.0.0.0:N) as others can
//  reach it: on the host of this node's raft address. Takes the string.
static char *
s_reachable (cvr_server_t *self, char *endpoint)
{
    const char *any = "tcp://0.0.0.0:";
    if (!endpoint || strncmp (endpoint, any, strlen (any)) || !self->raft_address)
        return endpoint;
    const char *colon = strrchr (self->raft_address, ':');
    char *reachable = zsys_sprintf ("tcp://%.*s:%s", (int) (colon - self->raft_address),
                                    self->raft_address, endpoint + strlen (any));
    zstr_free (&endpoint);
    return reachable;
}

//  A follower whose endpoints the log does not hold (yet) sends them to
//  the leader (cluster_announce), once a second until they are in.
static void
s_announce_self (cvr_server_t *self)
{
    char *requests = s_reachable (self, zsock_last_endpoint (self->router));
    char *known = cvr_log_endpoint (self->log, self->raft_id, false);
    char *leader = s_leader_endpoint (self);
    if (self->announcer)            //  earlier replies, unread
        while (zsock_events (self->announcer) & ZMQ_POLLIN) {
            zframe_t *frame = zframe_recv (self->announcer);
            zframe_destroy (&frame);
        }
    if (leader && (!known || !streq (known, requests))) {
        if (!self->announced_to || !streq (self->announced_to, leader)) {
            zsock_destroy (&self->announcer);
            self->announcer = zsock_new_dealer (leader);
            zsock_set_linger (self->announcer, 0);
            zstr_free (&self->announced_to);
            self->announced_to = strdup (leader);
        }
        char *events = s_reachable (self, strdup (self->events_endpoint));
        cvr_wr_t *w = cvr_wr_new ();
        cvr_wr_map (w);
        cvr_wr_kstr (w, "op", "cluster_announce");
        cvr_wr_kuint (w, "node_id", self->raft_id);
        cvr_wr_kstr (w, "request_endpoint", requests);
        cvr_wr_kstr (w, "events_endpoint", events);
        cvr_wr_close (w);
        zmq_send (zsock_resolve (self->announcer), cvr_wr_data (w), cvr_wr_size (w),
                  ZMQ_DONTWAIT);
        cvr_wr_destroy (&w);
        zstr_free (&events);
    }
    zstr_free (&requests);
    zstr_free (&known);
    zstr_free (&leader);
}

static void
s_take_over (cvr_server_t *self)
{
    int64_t started = zclock_mono ();
    s_drain_events (self, SIZE_MAX);
    cvr_state_destroy (&self->state);
    self->state = cvr_log_copy (self->log, self->history);
    cvr_log_copy_dedup (self->log, self->dedup);
    cvr_leases_destroy (&self->leases);
    self->leases = cvr_leases_new ();
    self->leading = true;
    //  Followers learn where to send clients.
    char *requests = s_reachable (self, zsock_last_endpoint (self->router));
    char *events = s_reachable (self, strdup (self->events_endpoint));
    cvr_log_announce (self->log, cvr_raft_id (cvr_log_raft (self->log)), requests, events);
    zstr_free (&requests);
    zstr_free (&events);
    //  Restored services are unknown with a fresh lease, sessions get a
    //  fresh term: nothing expires because of the restart or failover.
    cvr_cmd_t restore = { .type = CVR_CMD_RESTORE, .now = zclock_time () };
    s_submit (self, &restore);
    size_t count;
    const cvr_service_t **services = cvr_registry_query (cvr_state_registry (self->state),
                                                         NULL, &count);
    for (size_t i = 0; i < count; i++)
        cvr_leases_renew (self->leases, services [i]);
    free (services);
    size_t groups;
    free (cvr_groups_ids (cvr_state_groups (self->state), &groups));
    s_cut (self);
    s_log (self, S_INFO, "leading (data dir %s): %zu services and %zu groups restored, "
           "seq %" PRIu64 ", in %" PRId64 " ms", self->data_dir, count, groups,
           cvr_history_seq (self->history), zclock_mono () - started);
}

static void
s_drop_pending (zlistx_t *list)
{
    s_pending_t *pending;
    while (list && (pending = (s_pending_t *) zlistx_detach (list, NULL)))
        s_pending_destroy (&pending);
}

static void
s_step_down (cvr_server_t *self)
{
    self->leading = false;
    cvr_log_discard (self->log);
    s_segment_t *segment;
    while ((segment = (s_segment_t *) zlistx_detach (self->segments, NULL)))
        s_segment_destroy (&segment);
    cvr_held_drop (self->open->replies);
    s_drop_pending (self->pending);
    s_drop_pending (self->changes);
    cvr_state_destroy (&self->state);
    self->state = cvr_state_new (&self->limits);
    cvr_leases_destroy (&self->leases);
    self->leases = cvr_leases_new ();
    s_log (self, S_WARN, "no longer leading: requests waiting for the log were dropped "
           "(never acknowledged); clients are sent to the new leader");
}

//  A cluster change finished: its reply goes out.
static void
s_changed (cvr_server_t *self, const cvr_raft_event_t *event)
{
    s_pending_t *pending = NULL;
    for (s_pending_t *p = (s_pending_t *) zlistx_first (self->changes); p;
         p = (s_pending_t *) zlistx_next (self->changes))
        if (p->tag == event->tag) {
            pending = p;
            zlistx_detach_cur (self->changes);
            break;
        }
    if (!pending)
        return;
    cvr_err_t rc = event->status == CVR_RAFT_OK ? CVR_OK
                 : event->status == CVR_RAFT_NOT_LEADER ? CVR_NOT_LEADER : CVR_INTERNAL;
    cvr_wr_t *reply = self->reply;
    cvr_wr_reset (reply);
    cvr_wr_map (reply);
    cvr_wr_kbool (reply, "ok", rc == CVR_OK);
    if (pending->rid) {
        cvr_wr_str (reply, "rid");
        cvr_wr_raw (reply, pending->rid, pending->rid_size);
    }
    if (rc) {
        char message [128];
        snprintf (message, sizeof (message), "the cluster change failed (raft error %d)",
                  event->error);
        cvr_wr_kstr (reply, "error", cvr_err_name (rc));
        cvr_wr_kstr (reply, "message", message);
        if (rc == CVR_NOT_LEADER) {
            char *leader = s_leader_endpoint (self);
            cvr_wr_kstr (reply, "leader", leader);
            zstr_free (&leader);
        }
        self->errors [rc]++;
    }
    cvr_wr_close (reply);
    s_log (self, rc ? S_WARN : S_INFO, "cluster change %" PRIu64 ": %s", event->tag,
           rc ? cvr_err_name (rc) : "done");
    s_send_reply (self, &pending->identity, &pending->delimiter);
    s_pending_destroy (&pending);
    s_cut (self);
}

//  --peers "ID=HOST:PORT,...": fills peers (addresses owned, free them),
//  returns their count, or -1 with the message set.
static int
s_parse_peers (cvr_server_t *self, cvr_raft_peer_t *peers, size_t max)
{
    char *copy = strdup (self->peers), *save = NULL;
    int count = 0;
    for (char *item = strtok_r (copy, ",", &save); item; item = strtok_r (NULL, ",", &save)) {
        char *equals = strchr (item, '=');
        char *end = NULL;
        unsigned long long id = equals ? strtoull (item, &end, 10) : 0;
        if (!equals || end != equals || id == 0 || !strchr (equals + 1, ':')
        ||  (size_t) count == max) {
            s_bad (self, "--peers: '%s' is not ID=HOST:PORT (at most %zu nodes)", item, max);
            count = -1;
            break;
        }
        peers [count++] = (cvr_raft_peer_t) { id, strdup (equals + 1) };
    }
    free (copy);
    if (count == 0)
        count = s_bad (self, "--peers: no node given");
    return count;
}

//  --data-dir: starts the log. A single node waits to lead and takes over
//  the state the log holds (a snapshot and the entries after it); a cluster
//  node starts as a follower, and takes over when it is elected.
static int
s_open_log (cvr_server_t *self, const cvr_state_limits_t *limits)
{
    s_config_t *config = &self->config;
    cvr_raft_peer_t peers [16];
    int count = 0;
    const char *address = self->raft_bind;
    bool joining = false;
    if (self->peers) {
        char *end = NULL;
        self->raft_id = strtoull (self->node_id, &end, 10);
        if (!self->raft_id || *end)
            return s_bad (self, "--node-id must be this node's number in --peers, not '%s'",
                          self->node_id);
        if ((count = s_parse_peers (self, peers, 16)) < 0)
            return -1;
        joining = true;
        for (int i = 0; i < count; i++)
            if (peers [i].id == self->raft_id) {
                address = peers [i].address;
                joining = false;
            }
    }
    self->raft_address = strdup (address);
    char error [400] = "";
    cvr_log_config_t log_config = {
        .data_dir = self->data_dir, .node_id = self->peers ? self->raft_id : 1,
        .raft_address = address, .peers = peers, .peer_count = (size_t) count,
        .joining = joining,
        .snapshot_threshold = (unsigned) config->snapshot_threshold,
        .snapshot_trailing = (unsigned) config->snapshot_trailing,
        .election_timeout_ms = (unsigned) config->election_timeout_ms,
        .heartbeat_ms = (unsigned) config->election_timeout_ms / 10,
        .limits = *limits, .error = error, .error_size = sizeof (error)
    };
    self->limits = *limits;
    self->log = cvr_log_new (&log_config);
    for (int i = 0; i < count; i++)
        free ((char *) peers [i].address);
    if (!self->log)
        return s_bad (self, "--data-dir: cannot start the log in '%s': %s", self->data_dir,
                      error [0] ? error : "see the error above");
    self->segments = zlistx_new ();
    self->heap_mark = cvr_heap_mark ();
    self->dedup = cvr_dedup_new (CVR_DEDUP_CAPACITY);
    zloop_reader (self->loop, cvr_log_socket (self->log), s_on_log, self);
    zloop_reader (self->loop, cvr_log_events (self->log), s_on_events, self);
    if (self->peers) {
        s_log (self, S_INFO, "cluster node %" PRIu64 "%s: following until elected",
               self->raft_id, joining ? " (joining: add it with cluster add)" : "");
        return 0;
    }
    if (cvr_log_wait_leader (self->log, 10000 + 2 * (int) config->election_timeout_ms)) {
        cvr_log_destroy (&self->log);
        return s_bad (self, "--data-dir: the log in '%s' did not become writable",
                      self->data_dir);
    }
    s_take_over (self);
    return 0;
}

static int
s_start (cvr_server_t *self)
{
    if (self->router)
        return s_bad (self, "already started");
    s_config_t *config = &self->config;
    if (config->min_lease_ms > config->max_lease_ms)
        return s_bad (self, "--min-lease-ms (%" PRId64 ") is above --max-lease-ms (%" PRId64 ")",
                      config->min_lease_ms, config->max_lease_ms);
    self->router = zsock_new (ZMQ_ROUTER);
    self->pub = zsock_new (ZMQ_PUB);
    if (s_secure (self)) {
        zsock_destroy (&self->router);
        zsock_destroy (&self->pub);
        return -1;
    }
    //  The transport cuts off a peer far over the limit; between the two
    //  the server answers LIMIT_EXCEEDED without decoding.
    zsock_set_maxmsgsize (self->router, (int) (config->max_message_bytes * 16 > INT32_MAX
                                               ? INT32_MAX : config->max_message_bytes * 16));
    zsock_set_linger (self->router, 0);
    //  Replies queued per client before ROUTER drops them: well above any
    //  window a client keeps in flight (libzmq's default of 1,000 dropped
    //  replies to a client with 1,024 in flight that read promptly, when a
    //  drain of the socket or a committed log entry sent them in a burst).
    zsock_set_sndhwm (self->router, 20000);
    zsock_set_linger (self->pub, 0);
    zsock_set_sndhwm (self->pub, 100000);
    if (s_bind (self, self->router, self->listen, "request")
    ||  s_bind (self, self->pub, self->publish, "event")) {
        zsock_destroy (&self->router);
        zsock_destroy (&self->pub);
        return -1;
    }
    self->events_endpoint = zsock_last_endpoint (self->pub);
    cvr_state_limits_t limits = {
        .max_services = (size_t) config->max_services,
        .groups = { .max_groups = (size_t) config->max_groups,
                    .max_members = (size_t) config->max_members,
                    .default_partitions = (uint32_t) config->default_partitions }
    };
    self->state = cvr_state_new (&limits);
    self->history = cvr_history_new ((size_t) config->history);
    if (self->peers && !self->data_dir) {
        zsock_destroy (&self->router);
        zsock_destroy (&self->pub);
        return s_bad (self, "--peers needs --data-dir (the raft log lives there)");
    }
    if (self->data_dir && s_open_log (self, &limits)) {
        zsock_destroy (&self->router);
        zsock_destroy (&self->pub);
        return -1;
    }
    self->started_at = zclock_time ();
    zloop_reader (self->loop, self->router, s_on_router, self);
    zloop_timer (self->loop, CVR_TICK_MS, 0, s_on_tick, self);
    zloop_timer (self->loop, 1000, 0, s_on_heartbeat, self);
    char *requests = zsock_last_endpoint (self->router);
    s_log (self, S_INFO, "%s: serving requests on %s, events on %s", self->node_id,
           requests, self->events_endpoint);
    zstr_free (&requests);
    return 0;
}

static int
s_port (zsock_t *sock)
{
    char *endpoint = sock ? zsock_last_endpoint (sock) : NULL;
    char *colon = endpoint ? strrchr (endpoint, ':') : NULL;
    int port = colon ? atoi (colon + 1) : -1;
    zstr_free (&endpoint);
    return port;
}

static int
s_on_pipe (zloop_t *loop, zsock_t *pipe, void *arg)
{
    cvr_server_t *self = (cvr_server_t *) arg;
    zmsg_t *msg = zmsg_recv (pipe);
    if (!msg)
        return -1;
    char *command = zmsg_popstr (msg);
    char *first = zmsg_popstr (msg);
    char *second = zmsg_popstr (msg);
    int rc = 0, status = 0;
    self->message [0] = 0;
    if (!command || streq (command, "$TERM"))
        rc = -1;
    else
    if (streq (command, "BIND") && first)
        status = s_set_option (self, "listen", first);
    else
    if (streq (command, "PUBLISH") && first)
        status = s_set_option (self, "publish", first);
    else
    if (streq (command, "SET") && first && second)
        status = s_set_option (self, first, second);
    else
    if (streq (command, "START"))
        status = s_start (self);
    else
    if (streq (command, "PORT"))
        zsock_send (pipe, "sii", "PORT", s_port (self->router), s_port (self->pub));
    else
    if (streq (command, "ENDPOINTS")) {
        char *requests = self->router ? zsock_last_endpoint (self->router) : NULL;
        zstr_sendx (pipe, requests ? requests : "", self->events_endpoint
                    ? self->events_endpoint : "", NULL);
        zstr_free (&requests);
    }
    else
        status = s_bad (self, "unknown or incomplete command '%s'", command);
    if (rc == 0 && command && (streq (command, "BIND") || streq (command, "PUBLISH")
    ||  streq (command, "SET") || streq (command, "START") || status))
        zstr_sendf (pipe, status ? "-1 %s" : "0", self->message);
    zstr_free (&command);
    zstr_free (&first);
    zstr_free (&second);
    zmsg_destroy (&msg);
    return rc;
}

//  --------------------------------------------------------------------------
//  The actor

static cvr_server_t *
s_server_new (zsock_t *pipe, const char *node_id)
{
    cvr_server_t *self = (cvr_server_t *) zmalloc (sizeof (cvr_server_t));
    self->pipe = pipe;
    self->node_id = strdup (node_id ? node_id : "conveyord");
    self->listen = strdup ("tcp://127.0.0.1:7400");
    self->publish = strdup ("tcp://127.0.0.1:7401");
    self->config = (s_config_t) {
        .lease_ms = 30000, .min_lease_ms = 1000, .max_lease_ms = 600000,
        .session_timeout_ms = 30000, .default_partitions = 12, .history = 65536,
        .max_message_bytes = 1048576, .max_services = 1000000,
        .max_groups = 100000, .max_members = 100000,
        .snapshot_threshold = 8192, .snapshot_trailing = 1024, .election_timeout_ms = 1000
    };
    self->raft_bind = strdup ("127.0.0.1:7402");
    self->log_level = S_INFO;
    self->leases = cvr_leases_new ();
    self->effects = cvr_effects_new ();
    self->reply = cvr_wr_new ();
    self->reader = cvr_reader_new ();
    self->batch = (s_envelope_t *) zmalloc (S_BATCH * sizeof (s_envelope_t));
    self->budget = cvr_held_budget_new (S_PINNED_MAX);
    self->open = s_segment_new (self->budget, 0);
    self->pending = zlistx_new ();
    self->changes = zlistx_new ();
    self->scratch = zlistx_new ();
    zlistx_set_destructor (self->scratch, (zlistx_destructor_fn *) zstr_free);
    self->requests = (uint64_t *) zmalloc ((s_ops_count + 1) * sizeof (uint64_t));
    self->loop = zloop_new ();
    //  Only $TERM stops the server; the daemon decides what a signal means.
    zloop_set_nonstop (self->loop, true);
    zloop_reader (self->loop, pipe, s_on_pipe, self);
    return self;
}

static void
s_server_destroy (cvr_server_t **self_p)
{
    cvr_server_t *self = *self_p;
    zloop_destroy (&self->loop);
    cvr_log_destroy (&self->log);       //  nothing held is sent: never acknowledged
    cvr_dedup_destroy (&self->dedup);
    zstr_free (&self->dedup_key);
    s_segment_destroy (&self->open);
    s_segment_t *segment;
    while (self->segments && (segment = (s_segment_t *) zlistx_detach (self->segments, NULL)))
        s_segment_destroy (&segment);
    zlistx_destroy (&self->segments);
    cvr_held_budget_destroy (&self->budget);
    free (self->data_dir);
    free (self->raft_bind);
    free (self->raft_address);
    zsock_destroy (&self->announcer);
    free (self->announced_to);
    zsock_destroy (&self->router);
    zsock_destroy (&self->pub);
    zactor_destroy (&self->auth);
    cvr_state_destroy (&self->state);
    cvr_history_destroy (&self->history);
    cvr_leases_destroy (&self->leases);
    cvr_effects_destroy (&self->effects);
    cvr_wr_destroy (&self->reply);
    cvr_reader_destroy (&self->reader);
    free (self->batch);
    s_drop_pending (self->pending);
    zlistx_destroy (&self->pending);
    s_drop_pending (self->changes);
    zlistx_destroy (&self->changes);
    free (self->peers);
    zlistx_destroy (&self->scratch);
    free (self->requests);
    free (self->node_id);
    free (self->listen);
    free (self->publish);
    free (self->events_endpoint);
    free (self->curve_secret);
    free (self->curve_clients);
    free (self);
    *self_p = NULL;
}

void
cvr_server (zsock_t *pipe, void *args)
{
    cvr_server_t *self = s_server_new (pipe, (const char *) args);
    zsock_signal (pipe, 0);
    zloop_start (self->loop);
    s_server_destroy (&self);
}
