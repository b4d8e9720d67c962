/*  transform.c: a pipeline transform worker on cvr_member.

    Joins consumer group --group on --topic (its member id is its --id) and
    registers as a "transform" service. For each partition it is assigned
    it resumes from the group's committed offset, fetches records from a
    source found through the registry (service_type "source", label
    topic=<topic>), transforms them (pipeline.h), sends them to a sink
    picked by a weighted cvr_balancer that a cvr_watch keeps live, and
    commits offset+count only after the sink acknowledged: at-least-once.

    Callbacks only mark partitions (they run on the member's thread); the
    main loop does the work, one batch at a time. A revoked partition's
    in-flight batch is finished (sent, acknowledged, commit attempted)
    before the partition stops. Generation-fenced commits are expected
    around rebalances: ILLEGAL_GENERATION is retried while the partition is
    still ours (cvr_member_commit has already caught up with the group),
    NOT_OWNER / UNKNOWN_MEMBER drop the batch (its records are sent again
    by whoever owns the partition: duplicates, never losses).

    --journal FILE gets one JSON line per step (assigned, revoked, sent,
    committed, commit_failed, abandoned, ...), each with "at" (Unix ms),
    flushed at once so it survives a SIGKILL; the demo reads it.

    With --server-key and --cert (as examples/service.c) it talks to a
    coordinator that requires CurveZMQ: its client, registration, watch and
    member all use them. The source and the sinks are reached in plaintext.

    transform --id transform-c-1 --session-timeout-ms 3000 --journal t1.jsonl
*/
#include "pipeline.h"
#include <getopt.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>

typedef struct {
    bool owned;
    bool need_init;         //  read the committed offset before fetching
    bool done;              //  the source said end and all is committed
    uint64_t epoch;         //  bumped by every assignment or revocation
    int64_t next;           //  next offset to fetch (= our last commit)
    int64_t poll_at;        //  zclock_mono
} part_t;

typedef struct {
    char *endpoint;
    zsock_t *sock;
} sink_conn_t;

#define MAX_SINKS 32

typedef struct {
    const char *id;
    const char *group;
    const char *topic;
    const char *coordinator;
    int batch, poll_ms, sink_timeout_ms;
    pthread_mutex_t lock;
    part_t *parts;
    size_t size;
    FILE *journal;
    pthread_mutex_t journal_lock;
    atomic_bool closing;    //  set before cvr_member_destroy
    cvr_member_t *member;
    cvr_client_t *client;
    cvr_balancer_t *balancer;
    zsock_t *source;        //  DEALER to the source, NULL until found
    char *source_id;
    sink_conn_t sinks [MAX_SINKS];
    uint64_t rid;
    uint64_t batches, records, commits, commit_failures, abandoned;
} worker_t;

//  --------------------------------------------------------------------------
//  The journal

static void
s_journal (worker_t *self, const char *event, const char *fmt, ...)
{
    if (!self->journal)
        return;
    pthread_mutex_lock (&self->journal_lock);
    fprintf (self->journal, "{\"at\": %" PRId64 ", \"id\": ", zclock_time ());
    pipeline_json_str (self->journal, self->id);
    fprintf (self->journal, ", \"ev\": \"%s\"", event);
    if (fmt && *fmt) {
        fputs (", ", self->journal);
        va_list args;
        va_start (args, fmt);
        vfprintf (self->journal, fmt, args);
        va_end (args);
    }
    fputs ("}\n", self->journal);
    fflush (self->journal);
    pthread_mutex_unlock (&self->journal_lock);
}

//  "[1, 4, 7]" of the worker's topic's partitions in an assignment.
static char *
s_partition_list (worker_t *self, const cvr_assignment_t *partitions)
{
    size_t cap = 16 + partitions->count * 12;
    char *text = (char *) malloc (cap);
    size_t len = 0;
    text [len++] = '[';
    for (size_t i = 0; i < partitions->count; i++) {
        if (strcmp (partitions->items [i].topic, self->topic))
            continue;
        len += (size_t) snprintf (text + len, cap - len, "%s%d", len > 1 ? ", " : "",
                                  partitions->items [i].partition);
    }
    text [len++] = ']';
    text [len] = 0;
    return text;
}

//  --------------------------------------------------------------------------
//  Member callbacks (the member's thread): mark, never block.

static part_t *
s_part (worker_t *self, int32_t partition)
{
    if ((size_t) partition >= self->size) {
        size_t size = (size_t) partition + 1;
        self->parts = (part_t *) realloc (self->parts, size * sizeof (part_t));
        memset (self->parts + self->size, 0, (size - self->size) * sizeof (part_t));
        self->size = size;
    }
    return &self->parts [partition];
}

static void
s_on_assigned (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    worker_t *self = (worker_t *) arg;
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < partitions->count; i++) {
        if (strcmp (partitions->items [i].topic, self->topic) || partitions->items [i].partition < 0)
            continue;
        part_t *part = s_part (self, partitions->items [i].partition);
        part->owned = true;
        part->need_init = true;
        part->done = false;
        part->epoch++;
        part->poll_at = 0;
    }
    pthread_mutex_unlock (&self->lock);
    char *list = s_partition_list (self, partitions);
    s_journal (self, "assigned", "\"gen\": %" PRId64 ", \"partitions\": %s", generation, list);
    printf ("%s: generation %" PRId64 ": assigned %s\n", self->id, generation, list);
    fflush (stdout);
    free (list);
}

static void
s_on_revoked (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    worker_t *self = (worker_t *) arg;
    pthread_mutex_lock (&self->lock);
    for (size_t i = 0; i < partitions->count; i++) {
        if (strcmp (partitions->items [i].topic, self->topic) || partitions->items [i].partition < 0)
            continue;
        part_t *part = s_part (self, partitions->items [i].partition);
        part->owned = false;
        part->epoch++;
    }
    pthread_mutex_unlock (&self->lock);
    char *list = s_partition_list (self, partitions);
    //  At shutdown the member revokes everything before leaving: that is
    //  not a rebalance, so it is journaled as "released".
    s_journal (self, atomic_load (&self->closing) ? "released" : "revoked", "\"gen\": %" PRId64
               ", \"partitions\": %s", generation, list);
    printf ("%s: generation %" PRId64 ": %s %s\n", self->id, generation,
            atomic_load (&self->closing) ? "released" : "revoked", list);
    fflush (stdout);
    free (list);
}

//  True while the partition is ours in the same epoch.
static bool
s_still_ours (worker_t *self, int32_t partition, uint64_t epoch)
{
    pthread_mutex_lock (&self->lock);
    bool ours = (size_t) partition < self->size && self->parts [partition].owned
             && self->parts [partition].epoch == epoch;
    pthread_mutex_unlock (&self->lock);
    return ours;
}

//  --------------------------------------------------------------------------
//  Request/reply with a bounded wait (a signal does not cut it short, so an
//  in-flight batch is finished on SIGTERM).

static int
s_send_map (zsock_t *sock, msgpack_sbuffer *buffer)
{
    zframe_t *frame = zframe_new (buffer->data, buffer->size);
    return zframe_send (&frame, sock, ZFRAME_DONTWAIT);
}

//  Waits for the reply whose key ("rid" or "id") is id; returns its
//  unpacked body (caller destroys) or false.
static bool
s_await (zsock_t *sock, const char *key, uint64_t id, int timeout_ms, msgpack_unpacked *out,
         zframe_t **frame_out)
{
    int64_t deadline = zclock_mono () + timeout_ms;
    while (true) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            return false;
        zmq_pollitem_t item = { zsock_resolve (sock), 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) left) <= 0)
            continue;   //  timeout (checked above) or EINTR
        zframe_t *frame = zframe_recv_nowait (sock);
        if (!frame)
            continue;
        msgpack_unpacked_init (out);
        int64_t got;
        if (msgpack_unpack_next (out, (const char *) zframe_data (frame), zframe_size (frame),
                                 NULL) == MSGPACK_UNPACK_SUCCESS
        &&  pipeline_int (pipeline_get (&out->data, key), &got) == 0 && (uint64_t) got == id) {
            *frame_out = frame;     //  out points into it
            return true;
        }
        msgpack_unpacked_destroy (out);
        zframe_destroy (&frame);    //  a late reply to an earlier request
    }
}

//  --------------------------------------------------------------------------
//  The source, found through the registry

static bool
s_find_source (worker_t *self)
{
    if (self->source)
        return true;
    cvr_label_t label = { "topic", (char *) self->topic };
    cvr_service_filter_t filter = { .service_type = "source", .labels = &label, .labels_count = 1 };
    cvr_service_list_t *list = NULL;
    if (cvr_client_list_services (self->client, &filter, &list) || !list || !list->count) {
        cvr_service_list_destroy (&list);
        return false;
    }
    //  A healthy one if there is one.
    cvr_service_t *chosen = list->items [0];
    for (size_t i = 0; i < list->count; i++)
        if (list->items [i]->health == CVR_HEALTH_HEALTHY) {
            chosen = list->items [i];
            break;
        }
    self->source = zsock_new (ZMQ_DEALER);
    zsock_set_linger (self->source, 0);
    if (zsock_connect (self->source, "%s", chosen->endpoint)) {
        zsock_destroy (&self->source);
        cvr_service_list_destroy (&list);
        return false;
    }
    free (self->source_id);
    self->source_id = strdup (chosen->service_id);
    printf ("%s: fetching from %s at %s\n", self->id, chosen->service_id, chosen->endpoint);
    fflush (stdout);
    cvr_service_list_destroy (&list);
    return true;
}

//  --------------------------------------------------------------------------
//  Sinks

static zsock_t *
s_sink_socket (worker_t *self, const char *endpoint)
{
    sink_conn_t *free_slot = NULL;
    for (int i = 0; i < MAX_SINKS; i++) {
        if (self->sinks [i].endpoint && streq (self->sinks [i].endpoint, endpoint))
            return self->sinks [i].sock;
        if (!self->sinks [i].endpoint && !free_slot)
            free_slot = &self->sinks [i];
    }
    if (!free_slot) {
        free_slot = &self->sinks [0];
        zsock_destroy (&free_slot->sock);
        free (free_slot->endpoint);
    }
    free_slot->sock = zsock_new (ZMQ_DEALER);
    zsock_set_linger (free_slot->sock, 0);
    zsock_connect (free_slot->sock, "%s", endpoint);
    free_slot->endpoint = strdup (endpoint);
    return free_slot->sock;
}

static void
s_sink_drop (worker_t *self, const char *endpoint)
{
    for (int i = 0; i < MAX_SINKS; i++)
        if (self->sinks [i].endpoint && streq (self->sinks [i].endpoint, endpoint)) {
            zsock_destroy (&self->sinks [i].sock);
            free (self->sinks [i].endpoint);
            self->sinks [i].endpoint = NULL;
        }
}

static void
s_drain_watch (worker_t *self, cvr_watch_t *watch)
{
    cvr_event_t *event;
    while ((event = cvr_watch_next (watch, 0))) {
        cvr_balancer_apply (self->balancer, event);
        if (event->service && !streq (event->type, "registered"))
            printf ("%s: sink %s %s (%s)\n", self->id, event->service->service_id, event->type,
                    cvr_health_name (event->service->health));
        fflush (stdout);
        cvr_event_destroy (&event);
    }
}

//  Sends records (an array of [p, o, payload]) transformed to a sink and
//  waits for its acknowledgement; tries up to three picks.
static bool
s_deliver (worker_t *self, int32_t partition, int64_t from, const msgpack_object *records)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    bool acked = false;
    uint32_t count = records->via.array.size;
    for (int attempt = 0; attempt < 3 && !acked; attempt++) {
        const cvr_service_t *sink = cvr_balancer_pick (self->balancer);
        if (!sink)
            break;
        char *sink_id = strdup (sink->service_id);
        char *sink_endpoint = strdup (sink->endpoint);
        uint64_t id = ++self->rid;
        msgpack_sbuffer_clear (&buffer);
        msgpack_packer pk;
        msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
        msgpack_pack_map (&pk, 4);
        pipeline_pack_str (&pk, "op");
        pipeline_pack_str (&pk, "deliver");
        pipeline_pack_str (&pk, "id");
        msgpack_pack_uint64 (&pk, id);
        pipeline_pack_str (&pk, "from");
        pipeline_pack_str (&pk, self->id);
        pipeline_pack_str (&pk, "records");
        msgpack_pack_array (&pk, count);
        for (uint32_t i = 0; i < count; i++) {
            const msgpack_object *record = &records->via.array.ptr [i];
            int64_t p = 0, o = 0, value = 0;
            if (record->type == MSGPACK_OBJECT_ARRAY && record->via.array.size == 3) {
                pipeline_int (&record->via.array.ptr [0], &p);
                pipeline_int (&record->via.array.ptr [1], &o);
                pipeline_int (&record->via.array.ptr [2], &value);
            }
            msgpack_pack_array (&pk, 3);
            msgpack_pack_int64 (&pk, p);
            msgpack_pack_int64 (&pk, o);
            msgpack_pack_uint32 (&pk, pipeline_transform ((uint32_t) value));
        }
        s_journal (self, "sent", "\"p\": %d, \"from\": %" PRId64 ", \"to\": %" PRId64
                   ", \"sink\": \"%s\"", partition, from, from + count, sink_id);
        zsock_t *sock = s_sink_socket (self, sink_endpoint);
        msgpack_unpacked reply;
        zframe_t *frame = NULL;
        if (s_send_map (sock, &buffer) == 0
        &&  s_await (sock, "id", id, self->sink_timeout_ms, &reply, &frame)) {
            const msgpack_object *ok = pipeline_get (&reply.data, "ok");
            acked = ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean;
            msgpack_unpacked_destroy (&reply);
            zframe_destroy (&frame);
        }
        if (!acked) {
            s_journal (self, "sink_timeout", "\"p\": %d, \"from\": %" PRId64 ", \"to\": %" PRId64
                       ", \"sink\": \"%s\"", partition, from, from + count, sink_id);
            s_sink_drop (self, sink_endpoint);
        }
        free (sink_id);
        free (sink_endpoint);
    }
    msgpack_sbuffer_destroy (&buffer);
    return acked;
}

//  --------------------------------------------------------------------------
//  One step of one partition

static void
s_later (worker_t *self, int32_t partition, uint64_t epoch, int delay_ms)
{
    pthread_mutex_lock (&self->lock);
    if ((size_t) partition < self->size && self->parts [partition].epoch == epoch)
        self->parts [partition].poll_at = zclock_mono () + delay_ms;
    pthread_mutex_unlock (&self->lock);
}

static void
s_resume (worker_t *self, int32_t partition, uint64_t epoch)
{
    cvr_partition_t asked = { (char *) self->topic, partition };
    cvr_committed_list_t *offsets = NULL;
    if (cvr_client_fetch_offsets (self->client, self->group, &asked, 1, &offsets)
    ||  !offsets || offsets->count != 1) {
        cvr_committed_list_destroy (&offsets);
        s_later (self, partition, epoch, 200);
        return;
    }
    int64_t committed = offsets->items [0].offset;
    cvr_committed_list_destroy (&offsets);
    int64_t next = committed < 0 ? 0 : committed;
    pthread_mutex_lock (&self->lock);
    bool same = self->parts [partition].epoch == epoch;
    if (same) {
        self->parts [partition].next = next;
        self->parts [partition].need_init = false;
    }
    pthread_mutex_unlock (&self->lock);
    if (same)
        s_journal (self, "resumed", "\"p\": %d, \"offset\": %" PRId64, partition, next);
}

//  Commits upto after the sink's ack; see the header for the cases.
static void
s_commit (worker_t *self, int32_t partition, uint64_t epoch, int64_t from, int64_t upto)
{
    for (int attempt = 0; ; attempt++) {
        cvr_committed_t offset = { (char *) self->topic, partition, upto };
        cvr_err_t rc = cvr_member_commit (self->member, &offset, 1);
        if (rc == CVR_OK) {
            self->commits++;
            pthread_mutex_lock (&self->lock);
            if (self->parts [partition].epoch == epoch)
                self->parts [partition].next = upto;
            pthread_mutex_unlock (&self->lock);
            s_journal (self, "committed", "\"p\": %d, \"upto\": %" PRId64 ", \"gen\": %" PRId64,
                       partition, upto, cvr_member_generation (self->member));
            return;
        }
        self->commit_failures++;
        bool ours = s_still_ours (self, partition, epoch);
        s_journal (self, "commit_failed", "\"p\": %d, \"upto\": %" PRId64 ", \"error\": \"%s\""
                   ", \"gen\": %" PRId64 ", \"still_owned\": %s", partition, upto,
                   cvr_err_name (rc), cvr_member_generation (self->member), ours ? "true" : "false");
        //  ILLEGAL_GENERATION: the member has caught up before returning;
        //  if the partition is still ours, the commit is valid in the new
        //  generation. A timeout: try again a little later.
        if (ours && attempt < 5 && (rc == CVR_ILLEGAL_GENERATION || rc == CVR_TIMEOUT)) {
            if (rc == CVR_TIMEOUT)
                zclock_sleep (100);
            continue;
        }
        //  Fenced (the partition moved, or we are being rejoined): this
        //  batch was delivered but not committed; the owner sends it again.
        self->abandoned += (uint64_t) (upto - from);
        s_journal (self, "abandoned", "\"p\": %d, \"from\": %" PRId64 ", \"to\": %" PRId64
                   ", \"reason\": \"%s\"", partition, from, upto, cvr_err_name (rc));
        pthread_mutex_lock (&self->lock);
        if (self->parts [partition].epoch == epoch) {
            //  Not revoked (yet): read the committed offset again later.
            self->parts [partition].need_init = true;
            self->parts [partition].poll_at = zclock_mono () + 200;
        }
        pthread_mutex_unlock (&self->lock);
        return;
    }
}

static void
s_step (worker_t *self, int32_t partition, uint64_t epoch, int64_t next)
{
    if (!s_find_source (self)) {
        s_later (self, partition, epoch, 500);
        return;
    }
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
    uint64_t rid = ++self->rid;
    msgpack_pack_map (&pk, 5);
    pipeline_pack_str (&pk, "op");
    pipeline_pack_str (&pk, "fetch");
    pipeline_pack_str (&pk, "rid");
    msgpack_pack_uint64 (&pk, rid);
    pipeline_pack_str (&pk, "partition");
    msgpack_pack_int32 (&pk, partition);
    pipeline_pack_str (&pk, "offset");
    msgpack_pack_int64 (&pk, next);
    pipeline_pack_str (&pk, "max");
    msgpack_pack_int32 (&pk, self->batch);
    msgpack_unpacked reply;
    zframe_t *frame = NULL;
    bool answered = s_send_map (self->source, &buffer) == 0
                 && s_await (self->source, "rid", rid, 2000, &reply, &frame);
    msgpack_sbuffer_destroy (&buffer);
    if (!answered) {
        printf ("%s: source %s did not answer; looking it up again\n", self->id, self->source_id);
        fflush (stdout);
        zsock_destroy (&self->source);
        s_later (self, partition, epoch, 200);
        return;
    }
    const msgpack_object *records = pipeline_get (&reply.data, "records");
    const msgpack_object *end = pipeline_get (&reply.data, "end");
    bool at_end = end && end->type == MSGPACK_OBJECT_BOOLEAN && end->via.boolean;
    if (!records || records->type != MSGPACK_OBJECT_ARRAY) {
        s_later (self, partition, epoch, 500);
    }
    else
    if (records->via.array.size == 0) {
        pthread_mutex_lock (&self->lock);
        if (self->parts [partition].epoch == epoch) {
            if (at_end)
                self->parts [partition].done = true;
            else
                self->parts [partition].poll_at = zclock_mono () + self->poll_ms;
        }
        pthread_mutex_unlock (&self->lock);
        if (at_end)
            s_journal (self, "done", "\"p\": %d, \"offset\": %" PRId64, partition, next);
    }
    else
    if (!s_still_ours (self, partition, epoch)) {
        //  Revoked while fetching: nothing was sent, nothing to finish.
    }
    else
    if (!s_deliver (self, partition, next, records))
        s_later (self, partition, epoch, 200);      //  no sink: fetch again later
    else {
        uint32_t count = records->via.array.size;
        self->batches++;
        self->records += count;
        //  Acknowledged: commit, even if the partition was revoked
        //  meanwhile (the commit then fails and is handled).
        s_commit (self, partition, epoch, next, next + count);
        if (count < (uint32_t) self->batch && !at_end)
            s_later (self, partition, epoch, self->poll_ms);
    }
    msgpack_unpacked_destroy (&reply);
    zframe_destroy (&frame);
}

//  --------------------------------------------------------------------------


static void
s_usage (FILE *file)
{
    fprintf (file,
        "Usage: transform [options]\n"
        "  -e, --endpoint EP            coordinator (default tcp://127.0.0.1:7400)\n"
        "  --id ID                      member id and service id (default transform-c-<pid>)\n"
        "  --name NAME                  service name (default events-transform)\n"
        "  --group G                    consumer group (default transformers)\n"
        "  --topic T                    topic consumed (default events)\n"
        "  --sink-name NAME             service name of the sinks (default events-sink)\n"
        "  --session-timeout-ms N       group session (default: the coordinator's)\n"
        "  --lease-ms N                 registration lease (default: the coordinator's)\n"
        "  --batch N                    most records per fetch (default 200)\n"
        "  --poll-ms N                  wait when a partition is caught up (default 100)\n"
        "  --sink-timeout-ms N          wait for a sink's ack (default 2000)\n"
        "  --journal FILE               append one JSON line per step\n"
        "  --server-key KEY|FILE        CurveZMQ: the coordinator's public key (40 Z85\n"
        "                               characters) or its NAME.cert file\n"
        "  --cert FILE                  CurveZMQ: this program's NAME.cert_secret; both\n"
        "                               are needed for a coordinator started with\n"
        "                               --curve-secret. Only the coordinator connection\n"
        "                               uses CURVE: the source and the sinks are plaintext\n"
        "  -h, --help\n");
}

int
main (int argc, char *argv [])
{
    worker_t self = { .group = "transformers", .topic = "events", .coordinator = "tcp://127.0.0.1:7400",
                      .batch = 200, .poll_ms = 100, .sink_timeout_ms = 2000 };
    const char *name = "events-transform", *sink_name = "events-sink", *journal = NULL;
    const char *server_key = NULL, *cert = NULL;
    int64_t session_ms = 0, lease_ms = 0, number;
    static struct option longopts [] = {
        { "endpoint", required_argument, 0, 'e' }, { "id", required_argument, 0, 'i' },
        { "name", required_argument, 0, 'n' }, { "group", required_argument, 0, 'g' },
        { "topic", required_argument, 0, 't' }, { "sink-name", required_argument, 0, 's' },
        { "session-timeout-ms", required_argument, 0, 'S' },
        { "lease-ms", required_argument, 0, 'L' }, { "batch", required_argument, 0, 'b' },
        { "poll-ms", required_argument, 0, 'P' }, { "sink-timeout-ms", required_argument, 0, 'T' },
        { "journal", required_argument, 0, 'j' },
        { "server-key", required_argument, 0, 'k' }, { "cert", required_argument, 0, 'c' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int c, opt_index = 0;
    while ((c = getopt_long (argc, argv, "e:h", longopts, &opt_index)) != -1) {
        int bad = 0;
        switch (c) {
            case 'e': self.coordinator = optarg; break;
            case 'i': self.id = optarg; break;
            case 'n': name = optarg; break;
            case 'g': self.group = optarg; break;
            case 't': self.topic = optarg; break;
            case 's': sink_name = optarg; break;
            case 'S': bad = pipeline_number (optarg, 1, INT64_MAX / 2, &session_ms); break;
            case 'L': bad = pipeline_number (optarg, 1, INT64_MAX / 2, &lease_ms); break;
            case 'b': bad = pipeline_number (optarg, 1, 100000, &number); self.batch = (int) number; break;
            case 'P': bad = pipeline_number (optarg, 1, 60000, &number); self.poll_ms = (int) number; break;
            case 'T': bad = pipeline_number (optarg, 1, 600000, &number); self.sink_timeout_ms = (int) number; break;
            case 'j': journal = optarg; break;
            case 'k': server_key = optarg; break;
            case 'c': cert = optarg; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
        if (bad) {
            fprintf (stderr, "transform: bad value '%s' for --%s (see --help)\n", optarg,
                     longopts [opt_index].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "transform: unexpected argument '%s' (see --help)\n", argv [optind]);
        return 2;
    }
    cvr_security_t *security = NULL;
    if (pipeline_security ("transform", server_key, cert, &security))
        return 2;
    char default_id [64];
    if (!self.id) {
        snprintf (default_id, sizeof default_id, "transform-c-%d", (int) getpid ());
        self.id = default_id;
    }
    if (journal && !(self.journal = fopen (journal, "a"))) {
        fprintf (stderr, "transform: cannot open %s: %s\n", journal, strerror (errno));
        cvr_security_destroy (&security);
        return 1;
    }
    zsys_init ();
    zsys_set_linger (0);
    pthread_mutex_init (&self.lock, NULL);
    pthread_mutex_init (&self.journal_lock, NULL);
    s_journal (&self, "start", "\"pid\": %d, \"lang\": \"c\"", (int) getpid ());

    int rc = 1;
    cvr_err_t err = CVR_OK;
    cvr_registration_t *registration = NULL;
    cvr_watch_t *watch = NULL;
    self.client = cvr_client_new_secure (self.coordinator, 3000, security);
    self.balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, sink_name);
    char watch_prefix [256], service_endpoint [64];
    snprintf (watch_prefix, sizeof watch_prefix, "service/%s/", sink_name);
    snprintf (service_endpoint, sizeof service_endpoint, "pid://%d", (int) getpid ());
    cvr_label_t labels [] = { { "lang", "c" }, { "topic", (char *) self.topic } };
    cvr_service_spec_t spec = { .service_id = self.id, .service_name = name,
        .service_type = "transform", .endpoint = service_endpoint, .group_id = self.group,
        .labels = labels, .labels_count = 2, .lease_ms = lease_ms, .weight = -1 };
    if (!self.client
    ||  !(registration = cvr_registration_new_secure (self.coordinator, &spec, 3000, NULL, NULL,
                                                      &err, security))) {
        fprintf (stderr, "transform: cannot register %s at %s: %s%s\n", self.id,
                 self.coordinator, cvr_err_name (err), pipeline_curve_hint (security, err));
        goto done;
    }
    if (!(watch = cvr_watch_new_secure (self.coordinator, watch_prefix, 3000, security))) {
        fprintf (stderr, "transform: cannot watch %s at %s%s\n", watch_prefix, self.coordinator,
                 pipeline_curve_hint (security, CVR_TIMEOUT));
        goto done;
    }
    const char *topics [] = { self.topic };
    cvr_member_config_t config = { .group_id = self.group, .topics = topics, .topics_count = 1,
        .member_id = self.id, .service_name = name, .session_timeout_ms = session_ms,
        .security = security, .on_assigned = s_on_assigned, .on_revoked = s_on_revoked,
        .arg = &self };
    self.member = cvr_member_new (self.coordinator, &config, &err);
    if (!self.member) {
        fprintf (stderr, "transform: cannot join %s at %s: %s%s\n", self.group, self.coordinator,
                 cvr_err_name (err), pipeline_curve_hint (security, err));
        goto done;
    }
    s_journal (&self, "joined", "\"gen\": %" PRId64 ", \"member\": \"%s\"",
               cvr_member_generation (self.member), self.id);
    printf ("%s: joined %s (generation %" PRId64 ")\n", self.id, self.group,
            cvr_member_generation (self.member));
    fflush (stdout);

    size_t rr = 0;
    while (!zsys_interrupted) {
        s_drain_watch (&self, watch);
        int64_t now = zclock_mono (), wake = now + 50;
        int32_t chosen = -1;
        uint64_t epoch = 0;
        bool need_init = false;
        int64_t next = 0;
        pthread_mutex_lock (&self.lock);
        for (size_t i = 0; i < self.size; i++) {
            size_t p = (rr + i) % self.size;
            part_t *part = &self.parts [p];
            if (!part->owned || part->done)
                continue;
            if (part->poll_at <= now) {
                chosen = (int32_t) p;
                epoch = part->epoch;
                need_init = part->need_init;
                next = part->next;
                rr = p + 1;
                break;
            }
            if (part->poll_at < wake)
                wake = part->poll_at;
        }
        pthread_mutex_unlock (&self.lock);
        if (chosen < 0) {
            zmq_pollitem_t item = { zsock_resolve (cvr_watch_socket (watch)), 0, ZMQ_POLLIN, 0 };
            zmq_poll (&item, 1, (long) (wake - now));
            continue;
        }
        if (need_init)
            s_resume (&self, chosen, epoch);
        else
            s_step (&self, chosen, epoch, next);
    }
    rc = 0;
done:
    //  Leaving revokes everything (journaled) while still a member.
    atomic_store (&self.closing, true);
    cvr_member_destroy (&self.member);
    cvr_watch_destroy (&watch);
    cvr_registration_destroy (&registration);
    cvr_balancer_destroy (&self.balancer);
    zsock_destroy (&self.source);
    for (int i = 0; i < MAX_SINKS; i++) {
        zsock_destroy (&self.sinks [i].sock);
        free (self.sinks [i].endpoint);
    }
    cvr_client_destroy (&self.client);
    cvr_security_destroy (&security);
    s_journal (&self, "stopped", "\"batches\": %" PRIu64 ", \"records\": %" PRIu64
               ", \"commits\": %" PRIu64 ", \"commit_failures\": %" PRIu64
               ", \"abandoned\": %" PRIu64, self.batches, self.records, self.commits,
               self.commit_failures, self.abandoned);
    if (rc == 0)
        printf ("%s: stopped: %" PRIu64 " records in %" PRIu64 " batches, %" PRIu64
                " commits, %" PRIu64 " failed commits, %" PRIu64 " records abandoned\n",
                self.id, self.records, self.batches, self.commits, self.commit_failures,
                self.abandoned);
    if (self.journal)
        fclose (self.journal);
    free (self.parts);
    free (self.source_id);
    return rc;
}
