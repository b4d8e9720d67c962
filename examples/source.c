/*  source.c: the pipeline's source. Owns a topic and serves its records.

    Registers as service_type "source" (labels topic=<topic> and
    partitions=<P>), creates the topic with P partitions on the
    coordinator, and serves fetches on its own ROUTER endpoint (the one it
    registers): {op: "fetch", partition, offset, max} returns the next
    records of that partition (see pipeline.h for the wire and the record
    stream). Each partition is a bounded, deterministic stream of
    --records-per-partition records that become available at --rate
    records per second (0: all at once), so "produced" is known exactly:
    offsets 0 .. high-1 of every partition. On SIGINT/SIGTERM it
    deregisters, writes --report (JSON) and exits 0.

    With --server-key and --cert (as examples/service.c) it talks to a
    coordinator that requires CurveZMQ; its own fetch endpoint stays
    plaintext.

    source --listen tcp://127.0.0.1:7402 --partitions 12 \
           --records-per-partition 4000 --rate 100
*/
#include "pipeline.h"
#include <getopt.h>
#include <errno.h>

typedef struct {
    const char *topic;
    int64_t partitions;
    int64_t records;        //  per partition; 0: unbounded
    int64_t rate;           //  per partition per second; 0: all at once
    int64_t max_batch;
    int64_t started;        //  zclock_mono at start
    uint64_t fetches;
    uint64_t served;
} source_t;

static int64_t
s_high (source_t *self)
{
    if (self->rate == 0)
        return self->records;
    int64_t high = (zclock_mono () - self->started) * self->rate / 1000;
    return self->records && high > self->records ? self->records : high;
}

static void
s_error (msgpack_packer *pk, const msgpack_object *rid, const char *code, const char *message)
{
    msgpack_pack_map (pk, rid ? 4 : 3);
    pipeline_pack_str (pk, "ok");
    msgpack_pack_false (pk);
    if (rid) {
        pipeline_pack_str (pk, "rid");
        msgpack_pack_object (pk, *rid);
    }
    pipeline_pack_str (pk, "error");
    pipeline_pack_str (pk, code);
    pipeline_pack_str (pk, "message");
    pipeline_pack_str (pk, message);
}

//  Answers one request body into pk.
static void
s_handle (source_t *self, const char *body, size_t size, msgpack_packer *pk)
{
    msgpack_unpacked msg;
    msgpack_unpacked_init (&msg);
    if (msgpack_unpack_next (&msg, body, size, NULL) != MSGPACK_UNPACK_SUCCESS
    ||  msg.data.type != MSGPACK_OBJECT_MAP) {
        s_error (pk, NULL, "BAD_REQUEST", "the body is not a msgpack map");
        msgpack_unpacked_destroy (&msg);
        return;
    }
    const msgpack_object *req = &msg.data;
    const msgpack_object *rid = pipeline_get (req, "rid");
    const msgpack_object *op = pipeline_get (req, "op");
    int64_t high = s_high (self);
    if (pipeline_str_is (op, "fetch")) {
        int64_t partition, offset, max = self->max_batch;
        if (pipeline_int (pipeline_get (req, "partition"), &partition)
        ||  pipeline_int (pipeline_get (req, "offset"), &offset)
        ||  (pipeline_get (req, "max") && pipeline_int (pipeline_get (req, "max"), &max))
        ||  partition < 0 || partition >= self->partitions || offset < 0 || max < 1)
            s_error (pk, rid, "BAD_REQUEST",
                     "fetch needs partition (0..partitions-1), offset >= 0, max >= 1");
        else {
            if (max > self->max_batch)
                max = self->max_batch;
            int64_t count = offset < high ? high - offset : 0;
            if (count > max)
                count = max;
            self->fetches++;
            self->served += (uint64_t) count;
            msgpack_pack_map (pk, rid ? 5 : 4);
            pipeline_pack_str (pk, "ok");
            msgpack_pack_true (pk);
            if (rid) {
                pipeline_pack_str (pk, "rid");
                msgpack_pack_object (pk, *rid);
            }
            pipeline_pack_str (pk, "records");
            msgpack_pack_array (pk, (size_t) count);
            for (int64_t o = offset; o < offset + count; o++) {
                msgpack_pack_array (pk, 3);
                msgpack_pack_int64 (pk, partition);
                msgpack_pack_int64 (pk, o);
                msgpack_pack_uint32 (pk, pipeline_payload (partition, o));
            }
            pipeline_pack_str (pk, "end");
            if (self->records && offset + count >= self->records)
                msgpack_pack_true (pk);
            else
                msgpack_pack_false (pk);
            pipeline_pack_str (pk, "high");
            msgpack_pack_int64 (pk, high);
        }
    }
    else
    if (pipeline_str_is (op, "info")) {
        msgpack_pack_map (pk, rid ? 11 : 10);
        pipeline_pack_str (pk, "ok");
        msgpack_pack_true (pk);
        if (rid) {
            pipeline_pack_str (pk, "rid");
            msgpack_pack_object (pk, *rid);
        }
        pipeline_pack_str (pk, "topic");
        pipeline_pack_str (pk, self->topic);
        pipeline_pack_str (pk, "partitions");
        msgpack_pack_int64 (pk, self->partitions);
        pipeline_pack_str (pk, "records_per_partition");
        msgpack_pack_int64 (pk, self->records);
        pipeline_pack_str (pk, "rate");
        msgpack_pack_int64 (pk, self->rate);
        pipeline_pack_str (pk, "produced");
        msgpack_pack_int64 (pk, high * self->partitions);
        pipeline_pack_str (pk, "high");
        msgpack_pack_array (pk, (size_t) self->partitions);
        for (int64_t p = 0; p < self->partitions; p++)
            msgpack_pack_int64 (pk, high);
        pipeline_pack_str (pk, "complete");
        if (self->records && high >= self->records)
            msgpack_pack_true (pk);
        else
            msgpack_pack_false (pk);
        pipeline_pack_str (pk, "fetches");
        msgpack_pack_uint64 (pk, self->fetches);
        pipeline_pack_str (pk, "served");
        msgpack_pack_uint64 (pk, self->served);
    }
    else
        s_error (pk, rid, "UNKNOWN_OP", "ops: fetch, info");
    msgpack_unpacked_destroy (&msg);
}

static int
s_write_report (source_t *self, const char *id, const char *path)
{
    char tmp [4096];
    snprintf (tmp, sizeof tmp, "%s.tmp", path);
    FILE *file = fopen (tmp, "w");
    if (!file)
        return -1;
    int64_t high = s_high (self);
    fprintf (file, "{\"service_id\": ");
    pipeline_json_str (file, id);
    fprintf (file, ", \"topic\": ");
    pipeline_json_str (file, self->topic);
    fprintf (file, ", \"partitions\": %" PRId64 ", \"records_per_partition\": %" PRId64
             ", \"rate\": %" PRId64 ", \"produced\": %" PRId64 ", \"complete\": %s"
             ", \"fetches\": %" PRIu64 ", \"served\": %" PRIu64 ", \"high\": [",
             self->partitions, self->records, self->rate, high * self->partitions,
             self->records && high >= self->records ? "true" : "false",
             self->fetches, self->served);
    for (int64_t p = 0; p < self->partitions; p++)
        fprintf (file, "%s%" PRId64, p ? ", " : "", high);
    fprintf (file, "]}\n");
    if (fclose (file) != 0)
        return -1;
    return rename (tmp, path);
}


static void
s_usage (FILE *file)
{
    fprintf (file,
        "Usage: source [options]\n"
        "  -e, --endpoint EP              coordinator (default tcp://127.0.0.1:7400)\n"
        "  --id ID                        service id (default source-1)\n"
        "  --name NAME                    service name (default events-source)\n"
        "  --listen EP                    where fetches are served (default tcp://127.0.0.1:7402)\n"
        "  --advertise EP                 endpoint registered (default: --listen)\n"
        "  --topic T                      topic served (default events)\n"
        "  --partitions P                 partitions, created on the coordinator (default 12)\n"
        "  --records-per-partition N      records in each partition; 0: unbounded (default 0)\n"
        "  --rate R                       records per second per partition; 0: all at once\n"
        "                                 (default 100)\n"
        "  --max-batch N                  most records per fetch (default 500)\n"
        "  --lease-ms N                   registration lease (default: the coordinator's)\n"
        "  --report FILE                  write what was produced (JSON) at exit\n"
        "  --server-key KEY|FILE          CurveZMQ: the coordinator's public key (40 Z85\n"
        "                                 characters) or its NAME.cert file\n"
        "  --cert FILE                    CurveZMQ: this program's NAME.cert_secret; both\n"
        "                                 are needed for a coordinator started with\n"
        "                                 --curve-secret. Only the coordinator connection\n"
        "                                 uses CURVE: fetches on --listen stay plaintext\n"
        "  -h, --help\n");
}

int
main (int argc, char *argv [])
{
    const char *endpoint = "tcp://127.0.0.1:7400";
    const char *id = "source-1", *name = "events-source";
    const char *listen = "tcp://127.0.0.1:7402", *advertise = NULL, *report = NULL;
    const char *server_key = NULL, *cert = NULL;
    int64_t lease_ms = 0;
    source_t self = { .topic = "events", .partitions = 12, .records = 0, .rate = 100,
                      .max_batch = 500 };
    static struct option longopts [] = {
        { "endpoint", required_argument, 0, 'e' }, { "id", required_argument, 0, 'i' },
        { "name", required_argument, 0, 'n' }, { "listen", required_argument, 0, 'l' },
        { "advertise", required_argument, 0, 'a' }, { "topic", required_argument, 0, 't' },
        { "partitions", required_argument, 0, 'p' },
        { "records-per-partition", required_argument, 0, 'N' },
        { "rate", required_argument, 0, 'r' }, { "max-batch", required_argument, 0, 'b' },
        { "lease-ms", required_argument, 0, 'L' }, { "report", required_argument, 0, 'R' },
        { "server-key", required_argument, 0, 'k' }, { "cert", required_argument, 0, 'c' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 }
    };
    int c, opt_index = 0;
    while ((c = getopt_long (argc, argv, "e:h", longopts, &opt_index)) != -1) {
        int bad = 0;
        switch (c) {
            case 'e': endpoint = optarg; break;
            case 'i': id = optarg; break;
            case 'n': name = optarg; break;
            case 'l': listen = optarg; break;
            case 'a': advertise = optarg; break;
            case 't': self.topic = optarg; break;
            case 'p': bad = pipeline_number (optarg, 1, 100000, &self.partitions); break;
            case 'N': bad = pipeline_number (optarg, 0, INT64_MAX / 2, &self.records); break;
            case 'r': bad = pipeline_number (optarg, 0, 10000000, &self.rate); break;
            case 'b': bad = pipeline_number (optarg, 1, 100000, &self.max_batch); break;
            case 'L': bad = pipeline_number (optarg, 1, INT64_MAX / 2, &lease_ms); break;
            case 'R': report = optarg; break;
            case 'k': server_key = optarg; break;
            case 'c': cert = optarg; break;
            case 'h': s_usage (stdout); return 0;
            default: s_usage (stderr); return 2;
        }
        if (bad) {
            fprintf (stderr, "source: bad value '%s' for --%s (see --help)\n", optarg,
                     longopts [opt_index].name);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf (stderr, "source: unexpected argument '%s' (see --help)\n", argv [optind]);
        return 2;
    }
    if (self.records == 0 && self.rate == 0) {
        fprintf (stderr, "source: an unbounded stream needs --rate > 0\n");
        return 2;
    }
    if (!advertise)
        advertise = listen;

    zsys_init ();
    zsys_set_linger (0);
    cvr_security_t *security = NULL;
    if (pipeline_security ("source", server_key, cert, &security))
        return 2;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    if (!router || zsock_bind (router, "%s", listen) < 0) {
        fprintf (stderr, "source: cannot bind %s: %s\n", listen, zmq_strerror (zmq_errno ()));
        zsock_destroy (&router);
        cvr_security_destroy (&security);
        return 1;
    }
    //  Only the coordinator connection is CURVE; the router stays plain.
    cvr_client_t *client = cvr_client_new_secure (endpoint, 3000, security);
    int64_t granted = 0;
    cvr_err_t err = client ? cvr_client_create_topic (client, self.topic, self.partitions, &granted)
                           : CVR_BAD_REQUEST;
    if (err) {
        fprintf (stderr, "source: cannot create topic %s (%" PRId64 " partitions) at %s: %s %s%s\n",
                 self.topic, self.partitions, endpoint, cvr_err_name (err),
                 client ? cvr_client_message (client) : "", pipeline_curve_hint (security, err));
        cvr_client_destroy (&client);
        zsock_destroy (&router);
        cvr_security_destroy (&security);
        return 1;
    }
    char partitions_text [32];
    snprintf (partitions_text, sizeof partitions_text, "%" PRId64, self.partitions);
    cvr_label_t labels [] = { { "partitions", partitions_text }, { "topic", (char *) self.topic } };
    cvr_service_spec_t spec = { .service_id = id, .service_name = name, .service_type = "source",
        .endpoint = advertise, .labels = labels, .labels_count = 2, .lease_ms = lease_ms,
        .weight = -1 };
    cvr_registration_t *registration = cvr_registration_new_secure (
        endpoint, &spec, 3000, NULL, NULL, &err, security);
    if (!registration) {
        fprintf (stderr, "source: cannot register %s at %s: %s%s\n", id, endpoint,
                 cvr_err_name (err), pipeline_curve_hint (security, err));
        cvr_client_destroy (&client);
        zsock_destroy (&router);
        cvr_security_destroy (&security);
        return 1;
    }
    cvr_security_destroy (&security);     //  the client and registration hold copies
    self.started = zclock_mono ();
    printf ("%s: serving topic %s (%" PRId64 " partitions, %s%" PRId64 " records each, %" PRId64
            "/s) on %s\n", id, self.topic, self.partitions, self.records ? "" : "unbounded, ",
            self.records, self.rate, advertise);
    fflush (stdout);

    zpoller_t *poller = zpoller_new (router, NULL);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    while (!zsys_interrupted) {
        if (!zpoller_wait (poller, 200))
            continue;
        zmsg_t *msg = zmsg_recv (router);
        if (!msg)
            continue;
        //  [identity, body] from a DEALER, [identity, "", body] from a REQ.
        size_t frames = zmsg_size (msg);
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *delimiter = frames == 3 ? zmsg_pop (msg) : NULL;
        zframe_t *body = zmsg_pop (msg);
        if ((frames == 2 || (frames == 3 && zframe_size (delimiter) == 0)) && body) {
            msgpack_sbuffer_clear (&buffer);
            msgpack_packer pk;
            msgpack_packer_init (&pk, &buffer, msgpack_sbuffer_write);
            s_handle (&self, (const char *) zframe_data (body), zframe_size (body), &pk);
            zmsg_t *reply = zmsg_new ();
            zmsg_append (reply, &identity);
            if (delimiter)
                zmsg_append (reply, &delimiter);
            zmsg_addmem (reply, buffer.data, buffer.size);
            zmsg_send (&reply, router);
        }
        zframe_destroy (&identity);
        zframe_destroy (&delimiter);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    msgpack_sbuffer_destroy (&buffer);
    zpoller_destroy (&poller);
    cvr_registration_destroy (&registration);
    cvr_client_destroy (&client);
    zsock_destroy (&router);
    int64_t high = s_high (&self);
    if (report && s_write_report (&self, id, report))
        fprintf (stderr, "source: cannot write %s: %s\n", report, strerror (errno));
    printf ("%s: produced %" PRId64 " records (%" PRId64 " per partition), served %" PRIu64
            " in %" PRIu64 " fetches\n", id, high * self.partitions, high, self.served,
            self.fetches);
    return 0;
}
