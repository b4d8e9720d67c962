/*  cvr_log.c: durable command log on libraft; see cvr_log.h. */
#include "cvr_log.h"
#include "cvr_codec.h"
#include <pthread.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>

#define S_NUMBERING_RING 1      //  the committed side numbers, keeps nothing
#define S_PARCEL_KEPT   (1u << 20)  //  bytes of parcel writer kept between parcels

//  Events travel from the raft thread to the owner in parcels, one message
//  each: per event a header {body size, seq} (host order), then topic and
//  root with their NULs, then the body. One message per entry instead of
//  four frames per event: the raft thread sends and signals once, and the
//  owner frees once. Packed in a writer the raft thread keeps.
typedef struct {
    uint32_t body_size;
    uint32_t topic_size;            //  with its NUL
    uint64_t seq;
} s_event_header_t;

struct _cvr_log_t {
    cvr_raft_t *raft;               //  the engine, owned
    int lock_fd;                    //  DIR/conveyord.lock, held (flock)
    cvr_state_limits_t limits;      //  of a copy for the server
    cvr_state_limits_t committed_limits;    //  the same, unindexed
    //  The committed side, touched by the raft thread (apply, snapshot,
    //  restore) and by cvr_log_copy, under the mutex.
    pthread_mutex_t mutex;
    cvr_state_t *committed;         //  every committed command applied, owned
    cvr_history_t *numbering;       //  event numbering of the committed state
    cvr_effects_t *effects;         //  scratch for the committed side
    cvr_reader_t *reader;           //  decodes entries, reused (raft thread)
    cvr_codec_cmd_t *decoder;       //  decodes their commands, reused (idem)
    zhashx_t *nodes;                //  "id" -> "req\nev" announced endpoints
    cvr_dedup_t *dedup;             //  committed replies of recent writes
    zsock_t *events_out;            //  raft thread's end: numbered events
    zsock_t *events_in;             //  owner's end
    cvr_wr_t *parcel;               //  events being packed (raft thread)
    size_t parcel_events;           //  how many
    zmq_msg_t in;                   //  the parcel being read (owner)
    size_t in_read;                 //  bytes of it read so far
    uint64_t applied;               //  entries applied + snapshots restored
    //  The open batch, the owner's thread only.
    cvr_wr_t *batch;                //  {"c": [commands...  (left open)
    size_t pending;                 //  commands in it
    cvr_wr_t *replies;              //  [[key, reply]...  (left open)
    size_t pending_replies;         //  replies in it
    uint64_t next_tag;
};

//  --------------------------------------------------------------------------
//  The state machine, on the raft thread

//  Sends the parcel, if it holds anything, and empties it. A writer grown
//  past S_PARCEL_KEPT by big events is given back, not kept for good.
static void
s_parcel_send (cvr_log_t *self)
{
    if (!self->parcel_events)
        return;
    //  Never blocks (no high-water mark): the owner reads them all.
    int rc = zmq_send (zsock_resolve (self->events_out), cvr_wr_data (self->parcel),
                       cvr_wr_size (self->parcel), 0);
    assert (rc >= 0);
    (void) rc;
    if (cvr_wr_size (self->parcel) > S_PARCEL_KEPT) {
        cvr_wr_destroy (&self->parcel);
        self->parcel = cvr_wr_new ();
    }
    else
        cvr_wr_reset (self->parcel);
    self->parcel_events = 0;
}

static void
s_parcel_add (cvr_log_t *self, const char *topic, const char *root, uint64_t seq,
              cvr_wr_t *body)
{
    s_event_header_t header = {
        .body_size = (uint32_t) cvr_wr_size (body),
        .topic_size = (uint32_t) strlen (topic) + 1,
        .seq = seq
    };
    cvr_wr_raw (self->parcel, &header, sizeof (header));
    cvr_wr_raw (self->parcel, topic, header.topic_size);
    cvr_wr_raw (self->parcel, root, strlen (root) + 1);
    cvr_wr_raw (self->parcel, cvr_wr_data (body), header.body_size);
    if (++self->parcel_events == CVR_LOG_PARCEL_EVENTS)
        s_parcel_send (self);
}

static int
s_apply (void *arg, const void *data, size_t size, uint64_t index)
{
    cvr_log_t *self = (cvr_log_t *) arg;
    //  One reader for every entry: its buffer and zone are kept, so a
    //  batch of a thousand commands is decoded without allocating.
    const msgpack_object *entry = cvr_reader_decode (self->reader, data, size);
    const msgpack_object *node = entry ? cvr_obj_get (entry, "n") : NULL;
    if (node) {
        uint64_t id;
        char *request = cvr_obj_get_strdup (node, "req");
        char *events = cvr_obj_get_strdup (node, "ev");
        if (!cvr_obj_uint (cvr_obj_get (node, "id"), &id) && request && events) {
            char key [32];
            snprintf (key, sizeof (key), "%" PRIu64, id);
            char *value = zsys_sprintf ("%s\n%s", request, events);
            pthread_mutex_lock (&self->mutex);
            zhashx_update (self->nodes, key, value);
            self->applied++;
            pthread_mutex_unlock (&self->mutex);
            zstr_free (&value);
        }
        free (request);
        free (events);
        return 0;
    }
    const msgpack_object *commands = entry ? cvr_obj_get (entry, "c") : NULL;
    if (!commands || commands->type != MSGPACK_OBJECT_ARRAY) {
        //  Written by us, so never: a damaged entry is skipped, loudly.
        zsys_error ("conveyord: raft entry %" PRIu64 " is not a command batch; skipped",
                    index);
        return -1;
    }
    int failed = 0;
    pthread_mutex_lock (&self->mutex);
    for (uint32_t i = 0; i < commands->via.array.size; i++) {
        const cvr_cmd_t *cmd = cvr_codec_cmd_read (self->decoder, &commands->via.array.ptr [i]);
        //  The server applied each with CVR_OK before logging it; the same
        //  commands in the same order give the same results here.
        if (!cmd || cvr_state_apply (self->committed, cmd, self->effects))
            failed++;
        for (size_t e = 0; e < cvr_effects_size (self->effects); e++) {
            const char *topic = cvr_effects_topic (self->effects, e);
            const char *root = cvr_effects_root (self->effects, e);
            cvr_wr_t *body = cvr_effects_body (self->effects, e);
            uint64_t seq = cvr_history_append (self->numbering, topic, root, body);
            s_parcel_add (self, topic, root, seq, body);
        }
        cvr_effects_clear (self->effects);
    }
    s_parcel_send (self);
    const msgpack_object *replies = cvr_obj_get (entry, "d");
    if (replies)
        cvr_dedup_merge (self->dedup, replies);
    self->applied++;
    pthread_mutex_unlock (&self->mutex);
    if (failed)
        zsys_error ("conveyord: raft entry %" PRIu64 ": %d command(s) did not apply as "
                    "they did when proposed", index, failed);
    return failed ? -1 : 0;
}

//  What a snapshot holds besides the state: {"numbering", "nodes"}.
static void
s_write_aux (cvr_log_t *self, cvr_wr_t *w)
{
    cvr_wr_map (w);
    cvr_wr_str (w, "numbering");
    cvr_history_write_numbering (self->numbering, w);
    cvr_wr_str (w, "nodes");
    cvr_wr_map (w);
    zlistx_t *keys = zhashx_keys (self->nodes);
    zlistx_set_comparator (keys, (zlistx_comparator_fn *) strcmp);
    zlistx_sort (keys);
    for (const char *key = (const char *) zlistx_first (keys); key;
         key = (const char *) zlistx_next (keys)) {
        const char *value = (const char *) zhashx_lookup (self->nodes, key);
        const char *newline = strchr (value, '\n');
        cvr_wr_str (w, key);
        cvr_wr_array (w);
        cvr_wr_strn (w, value, (size_t) (newline - value));
        cvr_wr_str (w, newline + 1);
        cvr_wr_close (w);
    }
    zlistx_destroy (&keys);
    cvr_wr_close (w);
    cvr_wr_str (w, "dedup");
    cvr_dedup_write (self->dedup, w);
    cvr_wr_close (w);
}

static int
s_read_aux (cvr_log_t *self, const msgpack_object *o)
{
    const msgpack_object *nodes = cvr_obj_get (o, "nodes");
    if (!nodes || !cvr_obj_is_str_map (nodes)
    ||  cvr_history_read_numbering (self->numbering, cvr_obj_get (o, "numbering"))
    ||  cvr_dedup_read (self->dedup, cvr_obj_get (o, "dedup")))
        return -1;
    zhashx_purge (self->nodes);
    for (uint32_t i = 0; i < nodes->via.map.size; i++) {
        const msgpack_object *pair = &nodes->via.map.ptr [i].val;
        if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2)
            continue;
        char *key = cvr_obj_strdup (&nodes->via.map.ptr [i].key);
        char *request = cvr_obj_strdup (&pair->via.array.ptr [0]);
        char *events = cvr_obj_strdup (&pair->via.array.ptr [1]);
        if (key && request && events) {
            char *value = zsys_sprintf ("%s\n%s", request, events);
            zhashx_update (self->nodes, key, value);
            zstr_free (&value);
        }
        free (key);
        free (request);
        free (events);
    }
    return 0;
}

static int
s_snapshot (void *arg, void **data, size_t *size)
{
    cvr_log_t *self = (cvr_log_t *) arg;
    cvr_wr_t *numbering = cvr_wr_new ();
    cvr_wr_t *state = cvr_wr_new ();
    pthread_mutex_lock (&self->mutex);
    s_write_aux (self, numbering);
    cvr_codec_write_state (state, self->committed);
    pthread_mutex_unlock (&self->mutex);
    size_t first = cvr_wr_size (numbering);
    *size = 8 + first + cvr_wr_size (state);
    uint8_t *bytes = (uint8_t *) malloc (*size);
    assert (bytes);
    for (int i = 0; i < 8; i++)
        bytes [i] = (uint8_t) ((uint64_t) first >> (56 - 8 * i));
    memcpy (bytes + 8, cvr_wr_data (numbering), first);
    memcpy (bytes + 8 + first, cvr_wr_data (state), cvr_wr_size (state));
    *data = bytes;
    cvr_wr_destroy (&numbering);
    cvr_wr_destroy (&state);
    return 0;
}

static int
s_restore (void *arg, const void *data, size_t size)
{
    cvr_log_t *self = (cvr_log_t *) arg;
    const uint8_t *bytes = (const uint8_t *) data;
    uint64_t first = 0;
    for (int i = 0; i < 8 && size >= 8; i++)
        first = (first << 8) | bytes [i];
    if (size < 8 || first > size - 8) {
        zsys_error ("conveyord: a snapshot of %zu bytes is damaged", size);
        return -1;
    }
    cvr_msg_t *numbering = cvr_msg_decode (bytes + 8, (size_t) first);
    cvr_state_t *state = cvr_codec_read_state (bytes + 8 + first, size - 8 - (size_t) first,
                                               &self->committed_limits);
    int rc = numbering && state ? 0 : -1;
    pthread_mutex_lock (&self->mutex);
    if (rc == 0)
        rc = s_read_aux (self, cvr_msg_root (numbering));
    if (rc == 0) {
        cvr_state_destroy (&self->committed);
        self->committed = state;
        state = NULL;
        self->applied++;
    }
    pthread_mutex_unlock (&self->mutex);
    if (rc)
        zsys_error ("conveyord: a snapshot of %zu bytes cannot be read", size);
    cvr_state_destroy (&state);
    cvr_msg_destroy (&numbering);
    return rc;
}

//  --------------------------------------------------------------------------

static void
s_open_batch (cvr_log_t *self)
{
    cvr_wr_reset (self->batch);
    cvr_wr_map (self->batch);
    cvr_wr_str (self->batch, "c");
    cvr_wr_array (self->batch);
    self->pending = 0;
    cvr_wr_reset (self->replies);
    cvr_wr_array (self->replies);
    self->pending_replies = 0;
}

cvr_log_t *
cvr_log_new (const cvr_log_config_t *config)
{
    cvr_log_t *self = (cvr_log_t *) zmalloc (sizeof (cvr_log_t));
    self->limits = config->limits;
    //  The committed state only applies and is snapshotted (and counted
    //  for a follower's stats): no query indexes. A copy gets them back.
    self->committed_limits = config->limits;
    self->committed_limits.unindexed = true;
    //  One daemon per directory: a second one would interleave its writes
    //  with the first's and corrupt the log. The lock goes with the process.
    self->lock_fd = -1;
    zsys_dir_create ("%s", config->data_dir);
    char *path = zsys_sprintf ("%s/conveyord.lock", config->data_dir);
    self->lock_fd = open (path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (self->lock_fd < 0 || flock (self->lock_fd, LOCK_EX | LOCK_NB)) {
        const char *why = self->lock_fd < 0 ? strerror (errno)
                        : "the data directory is in use by another conveyord";
        if (config->error && config->error_size)
            snprintf (config->error, config->error_size, "%s: %s", path, why);
        else
            zsys_error ("conveyord: %s: %s", path, why);
        zstr_free (&path);
        if (self->lock_fd >= 0)
            close (self->lock_fd);
        free (self);
        return NULL;
    }
    zstr_free (&path);
    pthread_mutex_init (&self->mutex, NULL);
    self->committed = cvr_state_new (&self->committed_limits);
    self->numbering = cvr_history_new (S_NUMBERING_RING);
    self->effects = cvr_effects_new ();
    self->reader = cvr_reader_new ();
    self->decoder = cvr_codec_cmd_new ();
    self->nodes = zhashx_new ();
    zhashx_set_duplicator (self->nodes, (zhashx_duplicator_fn *) strdup);
    zhashx_set_destructor (self->nodes, (zhashx_destructor_fn *) zstr_free);
    self->dedup = cvr_dedup_new (CVR_DEDUP_CAPACITY);
    self->batch = cvr_wr_new ();
    self->replies = cvr_wr_new ();
    s_open_batch (self);
    //  An inproc pair with no high-water mark: the raft thread never blocks.
    static int s_pairs = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://cvr-log-%d-%p", ++s_pairs, (void *) self);
    self->parcel = cvr_wr_new ();
    zmq_msg_init (&self->in);
    self->events_in = zsock_new (ZMQ_PAIR);
    self->events_out = zsock_new (ZMQ_PAIR);
    zsock_set_rcvhwm (self->events_in, 0);
    zsock_set_sndhwm (self->events_out, 0);
    zsock_bind (self->events_in, "%s", endpoint);
    zsock_connect (self->events_out, "%s", endpoint);
    cvr_raft_peer_t me = { config->node_id, config->raft_address };
    cvr_raft_config_t raft = {
        .id = config->node_id, .address = config->raft_address,
        .data_dir = config->data_dir,
        .peers = config->joining ? NULL : config->peer_count ? config->peers : &me,
        .peer_count = config->joining ? 0 : config->peer_count ? config->peer_count : 1,
        .heartbeat_ms = config->heartbeat_ms,
        .election_timeout_ms = config->election_timeout_ms,
        .snapshot_threshold = config->snapshot_threshold,
        .snapshot_trailing = config->snapshot_trailing,
        .error = config->error, .error_size = config->error_size
    };
    cvr_raft_fsm_t fsm = { s_apply, s_snapshot, s_restore };
    self->raft = cvr_raft_new (&raft, &fsm, self);
    if (!self->raft)
        cvr_log_destroy (&self);
    return self;
}

void
cvr_log_destroy (cvr_log_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_log_t *self = *self_p;
    cvr_raft_destroy (&self->raft);     //  joins the raft thread first
    cvr_state_destroy (&self->committed);
    cvr_history_destroy (&self->numbering);
    cvr_effects_destroy (&self->effects);
    cvr_reader_destroy (&self->reader);
    cvr_codec_cmd_destroy (&self->decoder);
    zhashx_destroy (&self->nodes);
    zsock_destroy (&self->events_out);
    zsock_destroy (&self->events_in);
    zmq_msg_close (&self->in);
    cvr_wr_destroy (&self->parcel);
    cvr_wr_destroy (&self->batch);
    cvr_wr_destroy (&self->replies);
    cvr_dedup_destroy (&self->dedup);
    pthread_mutex_destroy (&self->mutex);
    if (self->lock_fd >= 0)
        close (self->lock_fd);          //  releases the lock
    free (self);
    *self_p = NULL;
}

int
cvr_log_wait_leader (cvr_log_t *self, int timeout_ms)
{
    int64_t until = zclock_mono () + timeout_ms;
    zpoller_t *poller = zpoller_new (cvr_raft_socket (self->raft), NULL);
    int rc = -1;
    while (rc && zclock_mono () < until && !zsys_interrupted) {
        if (cvr_raft_is_leader (self->raft)) {
            rc = 0;
            break;
        }
        //  Events before leadership (FOLLOWER while electing) are drained.
        if (zpoller_wait (poller, 20)) {
            cvr_raft_event_t event;
            cvr_raft_recv (self->raft, &event);
        }
    }
    zpoller_destroy (&poller);
    return rc;
}

cvr_state_t *
cvr_log_copy (cvr_log_t *self, cvr_history_t *history)
{
    cvr_wr_t *state = cvr_wr_new ();
    cvr_wr_t *numbering = cvr_wr_new ();
    pthread_mutex_lock (&self->mutex);
    cvr_codec_write_state (state, self->committed);
    cvr_history_write_numbering (self->numbering, numbering);
    pthread_mutex_unlock (&self->mutex);
    cvr_state_t *copy = cvr_codec_read_state (cvr_wr_data (state), cvr_wr_size (state),
                                              &self->limits);
    //  A history that kept up with the committed events (a follower that
    //  becomes leader) keeps its ring; one behind (at start) takes over the
    //  numbering.
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (numbering), cvr_wr_size (numbering));
    uint64_t seq = 0;
    int rc = msg ? cvr_obj_uint (cvr_obj_get (cvr_msg_root (msg), "seq"), &seq) : -1;
    if (rc == 0 && cvr_history_seq (history) < seq)
        rc = cvr_history_read_numbering (history, cvr_msg_root (msg));
    assert (copy && rc == 0);           //  our own canonical bytes
    (void) rc;
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&state);
    cvr_wr_destroy (&numbering);
    return copy;
}

void
cvr_log_append (cvr_log_t *self, const cvr_cmd_t *cmd)
{
    cvr_codec_write_cmd (self->batch, cmd);
    self->pending++;
}

void
cvr_log_discard (cvr_log_t *self)
{
    s_open_batch (self);
}

size_t
cvr_log_pending (cvr_log_t *self)
{
    return self->pending;
}

void
cvr_log_append_reply (cvr_log_t *self, const char *key, const void *reply, size_t size)
{
    cvr_dedup_write_entry (self->replies, key, reply, size);
    self->pending_replies++;
}

void
cvr_log_copy_dedup (cvr_log_t *self, cvr_dedup_t *dedup)
{
    cvr_wr_t *w = cvr_wr_new ();
    pthread_mutex_lock (&self->mutex);
    cvr_dedup_write (self->dedup, w);
    pthread_mutex_unlock (&self->mutex);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    int rc = msg ? cvr_dedup_read (dedup, cvr_msg_root (msg)) : -1;
    assert (rc == 0);
    (void) rc;
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

int64_t
cvr_log_commit (cvr_log_t *self)
{
    if (!self->pending && !self->pending_replies)
        return 0;
    cvr_wr_close (self->batch);         //  the array
    cvr_wr_close (self->replies);
    cvr_wr_str (self->batch, "d");
    cvr_wr_raw (self->batch, cvr_wr_data (self->replies), cvr_wr_size (self->replies));
    cvr_wr_close (self->batch);         //  the map
    uint64_t tag = ++self->next_tag;
    int rc = cvr_raft_submit (self->raft, cvr_wr_data (self->batch),
                              cvr_wr_size (self->batch), tag);
    s_open_batch (self);
    return rc ? -1 : (int64_t) tag;
}

zsock_t *
cvr_log_socket (cvr_log_t *self)
{
    return cvr_raft_socket (self->raft);
}

int
cvr_log_recv (cvr_log_t *self, cvr_raft_event_t *event)
{
    return cvr_raft_recv (self->raft, event);
}

uint64_t
cvr_log_applied (cvr_log_t *self)
{
    pthread_mutex_lock (&self->mutex);
    uint64_t applied = self->applied;
    pthread_mutex_unlock (&self->mutex);
    return applied;
}

zsock_t *
cvr_log_events (cvr_log_t *self)
{
    return self->events_in;
}

int
cvr_log_recv_event (cvr_log_t *self, cvr_log_event_t *event)
{
    if (self->in_read == zmq_msg_size (&self->in)) {
        //  A failed receive empties the message too.
        self->in_read = 0;
        if (zmq_msg_recv (&self->in, zsock_resolve (self->events_in), ZMQ_DONTWAIT) < 0)
            return -1;
    }
    const uint8_t *at = (const uint8_t *) zmq_msg_data (&self->in) + self->in_read;
    s_event_header_t header;
    memcpy (&header, at, sizeof (header));
    event->seq = header.seq;
    event->topic = (const char *) at + sizeof (header);
    event->root = event->topic + header.topic_size;
    event->body = event->root + strlen (event->root) + 1;
    event->body_size = header.body_size;
    self->in_read = (size_t) ((const uint8_t *) event->body + header.body_size
                              - (const uint8_t *) zmq_msg_data (&self->in));
    assert (self->in_read <= zmq_msg_size (&self->in));
    return 0;
}

bool
cvr_log_events_open (cvr_log_t *self)
{
    return self->in_read < zmq_msg_size (&self->in);
}

int
cvr_log_announce (cvr_log_t *self, uint64_t id, const char *request, const char *events)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_str (w, "n");
    cvr_wr_map (w);
    cvr_wr_kuint (w, "id", id);
    cvr_wr_kstr (w, "req", request);
    cvr_wr_kstr (w, "ev", events);
    cvr_wr_close (w);
    cvr_wr_close (w);
    int rc = cvr_raft_submit (self->raft, cvr_wr_data (w), cvr_wr_size (w), ++self->next_tag);
    cvr_wr_destroy (&w);
    return rc;
}

char *
cvr_log_endpoint (cvr_log_t *self, uint64_t id, bool events)
{
    char key [32];
    snprintf (key, sizeof (key), "%" PRIu64, id);
    pthread_mutex_lock (&self->mutex);
    const char *value = (const char *) zhashx_lookup (self->nodes, key);
    char *endpoint = NULL;
    if (value) {
        const char *newline = strchr (value, '\n');
        endpoint = events ? strdup (newline + 1) : strndup (value, (size_t) (newline - value));
    }
    pthread_mutex_unlock (&self->mutex);
    return endpoint;
}

cvr_raft_t *
cvr_log_raft (cvr_log_t *self)
{
    return self->raft;
}

cvr_state_t *
cvr_log_lock (cvr_log_t *self)
{
    pthread_mutex_lock (&self->mutex);
    return self->committed;
}

void
cvr_log_unlock (cvr_log_t *self)
{
    pthread_mutex_unlock (&self->mutex);
}
