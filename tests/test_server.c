/*  test_server.c: the server actor through real sockets on ephemeral ports.
    Raw DEALER, REQ and SUB sockets speak the wire protocol directly, so
    these tests check the envelope rules and the bytes, not a client's idea
    of them. Every wait is a receive with a bound. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "conveyor/cvr_server.h"
#include "cvr_proto.h"

#define WAIT_MS 3000

typedef struct {
    zactor_t *server;
    char *requests;     //  request endpoint as bound
    char *events;       //  event endpoint as bound
    zsock_t *dealer;
    zsock_t *sub;       //  subscribed to everything
    int64_t rid;
} fixture_t;

static void
s_ok (zactor_t *server, const char *command, const char *a, const char *b)
{
    zstr_sendx (server, command, a, b, NULL);
    char *status = zstr_recv (server);
    assert_non_null (status);
    assert_string_equal (status, "0");
    zstr_free (&status);
}

static fixture_t *
s_fixture (const char *lease, const char *history)
{
    fixture_t *self = (fixture_t *) zmalloc (sizeof (fixture_t));
    self->server = zactor_new (cvr_server, "test-node");
    s_ok (self->server, "SET", "log-level", "warn");
    s_ok (self->server, "SET", "min-lease-ms", "100");
    s_ok (self->server, "SET", "lease-ms", lease);
    s_ok (self->server, "SET", "history", history);
    s_ok (self->server, "SET", "max-services", "5");
    s_ok (self->server, "SET", "max-message-bytes", "4096");
    s_ok (self->server, "BIND", "tcp://127.0.0.1:*", NULL);
    s_ok (self->server, "PUBLISH", "tcp://127.0.0.1:*", NULL);
    zstr_sendx (self->server, "START", NULL);
    char *status = zstr_recv (self->server);
    assert_string_equal (status, "0");
    zstr_free (&status);
    zstr_sendx (self->server, "ENDPOINTS", NULL);
    assert_int_equal (zstr_recvx (self->server, &self->requests, &self->events, NULL), 2);
    self->dealer = zsock_new_dealer (self->requests);
    zsock_set_rcvtimeo (self->dealer, WAIT_MS);
    self->sub = zsock_new_sub (self->events, "service/");
    zsock_set_rcvtimeo (self->sub, WAIT_MS);
    return self;
}

static void
s_fixture_destroy (fixture_t **self_p)
{
    fixture_t *self = *self_p;
    zsock_destroy (&self->dealer);
    zsock_destroy (&self->sub);
    zactor_destroy (&self->server);
    zstr_free (&self->requests);
    zstr_free (&self->events);
    free (self);
    *self_p = NULL;
}

//  Sends one body frame, returns the decoded reply (NULL on timeout).
static cvr_msg_t *
s_raw_call (zsock_t *sock, const void *data, size_t size)
{
    zframe_t *frame = zframe_new (data, size);
    zframe_send (&frame, sock, 0);
    frame = zframe_recv (sock);
    if (!frame)
        return NULL;
    cvr_msg_t *reply = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    return reply;
}

//  Builds a request from "key", type-letter, value triples: s string,
//  i integer. Adds a fresh rid and checks it comes back.
static cvr_msg_t *
s_call (fixture_t *self, const char *op, const char *format, ...)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", op);
    cvr_wr_kint (w, "rid", ++self->rid);
    va_list args;
    va_start (args, format);
    for (const char *f = format; f && *f; f++) {
        cvr_wr_str (w, va_arg (args, const char *));
        if (*f == 's')
            cvr_wr_str (w, va_arg (args, const char *));
        else
            cvr_wr_int (w, va_arg (args, int64_t));
    }
    va_end (args);
    cvr_wr_close (w);
    cvr_msg_t *reply = s_raw_call (self->dealer, cvr_wr_data (w), cvr_wr_size (w));
    cvr_wr_destroy (&w);
    assert_non_null (reply);
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "rid", -1), self->rid);
    return reply;
}

static const char *
s_error (cvr_msg_t *reply)
{
    static char code [64];
    char *error = cvr_obj_get_strdup (cvr_msg_root (reply), "error");
    snprintf (code, sizeof (code), "%s", error ? error : "OK");
    free (error);
    return code;
}

static void
s_register (fixture_t *self, const char *id, const char *name, int64_t lease)
{
    cvr_msg_t *reply = s_call (self, "register", "ssssi",
        "service_id", id, "service_name", name, "service_type", "source",
        "endpoint", "tcp://10.0.0.1:9000", "lease_ms", lease);
    assert_string_equal (s_error (reply), "OK");
    cvr_msg_destroy (&reply);
}

typedef struct {
    char topic [256];
    cvr_msg_t *body;
} event_t;

static bool
s_next_event (fixture_t *self, event_t *event)
{
    char *topic = NULL;
    zframe_t *body = NULL;
    if (zsock_recv (self->sub, "sf", &topic, &body) || !topic || !body) {
        zstr_free (&topic);
        zframe_destroy (&body);
        return false;
    }
    snprintf (event->topic, sizeof (event->topic), "%s", topic);
    event->body = cvr_msg_decode (zframe_data (body), zframe_size (body));
    zstr_free (&topic);
    zframe_destroy (&body);
    return event->body != NULL;
}

//  A SUB only receives once its subscription has reached the PUB; wait
//  for the first sys/heartbeat-free proof: register a probe service and
//  wait for its event.
static void
s_wait_subscribed (fixture_t *self)
{
    zsock_set_rcvtimeo (self->sub, 100);
    bool seen = false;
    for (int i = 0; i < 50 && !seen; i++) {
        char id [32];
        snprintf (id, sizeof (id), "probe-%d", i);
        s_register (self, id, "probe", 60000);
        event_t event;
        while (!seen && s_next_event (self, &event)) {
            seen = true;
            cvr_msg_destroy (&event.body);
        }
        cvr_msg_t *reply = s_call (self, "deregister", "s", "service_id", id);
        cvr_msg_destroy (&reply);
    }
    assert_true (seen);
    //  Drain what the probes published.
    event_t event;
    while (s_next_event (self, &event))
        cvr_msg_destroy (&event.body);
    zsock_set_rcvtimeo (self->sub, WAIT_MS);
}

static void
test_req_and_dealer_envelopes (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    //  REQ: lock-step, with the empty delimiter echoed by the server.
    zsock_t *req = zsock_new_req (self->requests);
    zsock_set_rcvtimeo (req, WAIT_MS);
    uint8_t hello [] = { 0x81, 0xa2, 'o', 'p', 0xa5, 'h', 'e', 'l', 'l', 'o' };
    cvr_msg_t *reply = s_raw_call (req, hello, sizeof (hello));
    assert_non_null (reply);
    assert_true (cvr_obj_get (cvr_msg_root (reply), "ok")->via.boolean);
    assert_null (cvr_obj_get (cvr_msg_root (reply), "rid"));
    char *node = cvr_obj_get_strdup (cvr_msg_root (reply), "node_id");
    assert_string_equal (node, "test-node");
    free (node);
    char *events = cvr_obj_get_strdup (cvr_msg_root (reply), "events_endpoint");
    assert_string_equal (events, self->events);
    free (events);
    cvr_msg_destroy (&reply);
    zsock_destroy (&req);

    //  Bad shapes: two body frames, or a non-empty frame before the body.
    zstr_sendx (self->dealer, "a", "b", "c", NULL);
    zsock_send (self->dealer, "sb", "x", hello, sizeof (hello));
    //  One empty frame is an empty body: BAD_REQUEST.
    zstr_send (self->dealer, "");
    zframe_t *frame = zframe_recv (self->dealer);
    assert_non_null (frame);
    reply = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    zframe_destroy (&frame);
    assert_string_equal (s_error (reply), "BAD_REQUEST");
    cvr_msg_destroy (&reply);
    //  The dropped ones got no answer: the next reply is for stats.
    reply = s_call (self, "stats", NULL);
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "dropped", -1), 2);
    const msgpack_object *requests = cvr_obj_get (cvr_msg_root (reply), "requests");
    assert_int_equal (cvr_obj_get_int (requests, "hello", 0), 1);
    assert_int_equal (cvr_obj_get_int (requests, "?", 0), 1);
    cvr_msg_destroy (&reply);
    s_fixture_destroy (&self);
}

static void
test_check_order (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    struct { const char *hex; const char *error; } cases [] = {
        { "c1", "BAD_REQUEST" },                    //  not msgpack
        { "93010203", "BAD_REQUEST" },              //  an array
        { "81a26f70a568656c6c6f00", "BAD_REQUEST" },//  bytes after the map
        { "8201a178a26f70a568656c6c6f", "BAD_REQUEST" }, //  integer key
        { "81a1760a", "BAD_REQUEST" },              //  no op
        { "81a26f7001", "BAD_REQUEST" },            //  op not a string
        { "82a26f70a568656c6c6fa17600", "BAD_REQUEST" },    //  v = 0
        { "82a26f70a568656c6c6fa17602", "UNSUPPORTED_VERSION" },
        { "82a26f70a3626f67a17602", "UNSUPPORTED_VERSION" },    //  v before op
        { "81a26f70a3626f67", "UNKNOWN_OP" },
        { "81a26f70a8726567697374657222", "BAD_REQUEST" },  //  register, no fields
    };
    for (size_t i = 0; i < sizeof (cases) / sizeof (cases [0]); i++) {
        size_t size = strlen (cases [i].hex) / 2;
        uint8_t bytes [64];
        for (size_t j = 0; j < size; j++)
            sscanf (cases [i].hex + 2 * j, "%2hhx", &bytes [j]);
        //  The last case's fixstr claims 8 bytes for "register" + "\"": fix
        //  the length so it is the op "register" followed by nothing else.
        if (i == 10)
            size = 11, bytes [0] = 0x81;
        cvr_msg_t *reply = s_raw_call (self->dealer, bytes, size);
        assert_non_null (reply);
        if (strcmp (s_error (reply), cases [i].error))
            fail_msg ("case %zu (%s): got %s, want %s", i, cases [i].hex,
                      s_error (reply), cases [i].error);
        cvr_msg_destroy (&reply);
    }
    //  Over the size limit: LIMIT_EXCEEDED before decoding, whatever it is.
    size_t big = 5000;
    uint8_t *junk = (uint8_t *) malloc (big);
    memset (junk, 0xc1, big);
    cvr_msg_t *reply = s_raw_call (self->dealer, junk, big);
    free (junk);
    assert_string_equal (s_error (reply), "LIMIT_EXCEEDED");
    cvr_msg_destroy (&reply);
    s_fixture_destroy (&self);
}

static void
test_lease_lifecycle (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    s_wait_subscribed (self);
    int64_t lease = 300;
    int64_t start = zclock_time ();
    s_register (self, "svc-1", "orders", lease);
    //  registered, then unhealthy after one lease, expired after two:
    //  each within 250 ms of its deadline (+50 ms for this test's own
    //  scheduling on a loaded machine).
    const char *want [] = { "service/orders/registered", "service/orders/health",
                            "service/orders/expired" };
    int64_t deadline [] = { 0, lease, 2 * lease };
    uint64_t last_seq = 0;
    for (int i = 0; i < 3; i++) {
        event_t event;
        assert_true (s_next_event (self, &event));
        int64_t elapsed = zclock_time () - start;
        assert_string_equal (event.topic, want [i]);
        if (i > 0) {
            assert_true (elapsed >= deadline [i]);
            if (elapsed > deadline [i] + 300)
                fail_msg ("%s after %" PRId64 " ms, deadline %" PRId64, want [i],
                          elapsed, deadline [i]);
        }
        uint64_t seq = (uint64_t) cvr_obj_get_int (cvr_msg_root (event.body), "seq", 0);
        if (last_seq)
            assert_int_equal (seq, last_seq + 1);
        last_seq = seq;
        const msgpack_object *service = cvr_obj_get (cvr_msg_root (event.body), "service");
        char *health = cvr_obj_get_strdup (service, "health");
        assert_string_equal (health, i == 0 ? "healthy" : "unhealthy");
        free (health);
        cvr_msg_destroy (&event.body);
    }
    cvr_msg_t *reply = s_call (self, "get_service", "s", "service_id", "svc-1");
    assert_string_equal (s_error (reply), "NOT_FOUND");
    cvr_msg_destroy (&reply);
    reply = s_call (self, "stats", NULL);
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "expired", -1), 1);
    cvr_msg_destroy (&reply);
    s_fixture_destroy (&self);
}

//  The bytes of o as msgpack (caller destroys).
static cvr_wr_t *
s_encode (const msgpack_object *o)
{
    assert_non_null (o);
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_obj (w, o);
    return w;
}

static void
s_assert_same_object (const msgpack_object *a, const msgpack_object *b)
{
    cvr_wr_t *wa = s_encode (a), *wb = s_encode (b);
    assert_int_equal (cvr_wr_size (wa), cvr_wr_size (wb));
    assert_memory_equal (cvr_wr_data (wa), cvr_wr_data (wb), cvr_wr_size (wa));
    cvr_wr_destroy (&wa);
    cvr_wr_destroy (&wb);
}

//  A register reply's record (copied from its event when there is one,
//  encoded afresh when nothing changed) is the record as stored: the one
//  get_service returns and the event carries, for a new service, an
//  update, a registration that changes nothing, and a rename (whose last
//  event carries the new record).
static void
test_register_reply_carries_the_record (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    s_wait_subscribed (self);
    struct {
        const char *name, *endpoint;
        int64_t revision;
        const char *topic;          //  the event that carries the record, or NULL
    } steps [] = {
        { "orders", "tcp://10.0.0.1:1", 1, "service/orders/registered" },
        { "orders", "tcp://10.0.0.1:1", 1, NULL },
        { "orders", "tcp://10.0.0.1:2", 2, "service/orders/updated" },
        { "billing", "tcp://10.0.0.1:2", 3, "service/billing/registered" },
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps [0]; i++) {
        //  A new millisecond for each: a record left from the step before
        //  would then differ in last_heartbeat_at.
        zclock_sleep (2);
        cvr_msg_t *reply = s_call (self, "register", "sssss", "service_id", "svc-r",
                                   "service_name", steps [i].name, "service_type", "sink",
                                   "endpoint", steps [i].endpoint, "group_id", "g1");
        assert_string_equal (s_error (reply), "OK");
        const msgpack_object *record = cvr_obj_get (cvr_msg_root (reply), "service");
        assert_int_equal (cvr_obj_get_int (record, "revision", -1), steps [i].revision);
        char *name = cvr_obj_get_strdup (record, "service_name");
        assert_string_equal (name, steps [i].name);
        free (name);
        cvr_msg_t *stored = s_call (self, "get_service", "s", "service_id", "svc-r");
        s_assert_same_object (record, cvr_obj_get (cvr_msg_root (stored), "service"));
        cvr_msg_destroy (&stored);
        if (steps [i].topic) {
            //  A rename publishes the old name's deregistered first.
            event_t event;
            do {
                assert_true (s_next_event (self, &event));
                if (strneq (event.topic, steps [i].topic))
                    cvr_msg_destroy (&event.body);
            } while (!event.body);
            s_assert_same_object (record, cvr_obj_get (cvr_msg_root (event.body), "service"));
            cvr_msg_destroy (&event.body);
        }
        cvr_msg_destroy (&reply);
    }
    s_fixture_destroy (&self);
}

static void
test_heartbeat_keeps_and_restores (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    s_wait_subscribed (self);
    s_register (self, "svc-2", "orders", 200);
    event_t event;
    assert_true (s_next_event (self, &event));      //  registered
    cvr_msg_destroy (&event.body);
    //  Heartbeats every 50 ms for 3 leases: no event may appear.
    zsock_set_rcvtimeo (self->sub, 50);
    for (int i = 0; i < 12; i++) {
        cvr_msg_t *reply = s_call (self, "heartbeat", "s", "service_id", "svc-2");
        assert_string_equal (s_error (reply), "OK");
        assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "lease_ms", 0), 200);
        cvr_msg_destroy (&reply);
        if (s_next_event (self, &event))
            fail_msg ("unexpected event %s while heartbeating", event.topic);
    }
    //  Stop: it lapses; a heartbeat then restores it (two health events).
    zsock_set_rcvtimeo (self->sub, WAIT_MS);
    assert_true (s_next_event (self, &event));
    assert_string_equal (event.topic, "service/orders/health");
    cvr_msg_destroy (&event.body);
    cvr_msg_t *reply = s_call (self, "heartbeat", "s", "service_id", "svc-2");
    char *health = cvr_obj_get_strdup (cvr_msg_root (reply), "health");
    assert_string_equal (health, "healthy");
    free (health);
    cvr_msg_destroy (&reply);
    assert_true (s_next_event (self, &event));
    assert_string_equal (event.topic, "service/orders/health");
    cvr_msg_destroy (&event.body);
    reply = s_call (self, "heartbeat", "s", "service_id", "nope");
    assert_string_equal (s_error (reply), "NOT_FOUND");
    cvr_msg_destroy (&reply);
    s_fixture_destroy (&self);
}

static void
test_bad_input_changes_nothing (void **state)
{
    fixture_t *self = s_fixture ("30000", "100");
    s_register (self, "keep-1", "orders", 60000);
    cvr_msg_t *before = s_call (self, "list_services", NULL);
    uint64_t seq = (uint64_t) cvr_obj_get_int (cvr_msg_root (before), "seq", -1);
    //  Every field wrong in turn, each on an otherwise valid register.
    struct { const char *key; const char *value; } bad [] = {
        { "service_id", "has space" }, { "service_id", "" },
        { "service_name", "x/y" }, { "service_type", "pump" }, { "endpoint", "" },
    };
    for (size_t i = 0; i < sizeof (bad) / sizeof (bad [0]); i++) {
        const char *fields [8] = { "service_id", "keep-1", "service_name", "renamed",
                                   "service_type", "sink", "endpoint", "tcp://x:1" };
        for (int j = 0; j < 8; j += 2)
            if (streq (fields [j], bad [i].key))
                fields [j + 1] = bad [i].value;
        cvr_msg_t *reply = s_call (self, "register", "ssss", fields [0], fields [1],
                                   fields [2], fields [3], fields [4], fields [5],
                                   fields [6], fields [7]);
        assert_string_equal (s_error (reply), "BAD_REQUEST");
        cvr_msg_destroy (&reply);
    }
    cvr_msg_t *reply = s_call (self, "register", "ssssi", "service_id", "keep-1",
                               "service_name", "renamed", "service_type", "sink",
                               "endpoint", "tcp://x:1", "weight", (int64_t) 1000001);
    assert_string_equal (s_error (reply), "BAD_REQUEST");
    cvr_msg_destroy (&reply);
    reply = s_call (self, "register", "ssssi", "service_id", "keep-1",
                    "service_name", "renamed", "service_type", "sink",
                    "endpoint", "tcp://x:1", "lease_ms", (int64_t) 0);
    assert_string_equal (s_error (reply), "BAD_REQUEST");
    cvr_msg_destroy (&reply);
    //  Random garbage of every size up to the limit.
    uint32_t rng = 12345;
    for (int i = 0; i < 300; i++) {
        uint8_t junk [512];
        size_t size = 1 + (size_t) (i * 7) % sizeof (junk);
        for (size_t j = 0; j < size; j++)
            junk [j] = (uint8_t) ((rng = rng * 1103515245 + 12345) >> 16);
        cvr_msg_t *r = s_raw_call (self->dealer, junk, size);
        assert_non_null (r);
        cvr_msg_destroy (&r);
    }
    //  Over max-services: LIMIT_EXCEEDED, nothing added.
    for (int i = 0; i < 4; i++) {
        char id [16];
        snprintf (id, sizeof (id), "fill-%d", i);
        s_register (self, id, "fill", 60000);
    }
    reply = s_call (self, "register", "ssss", "service_id", "one-too-many",
                    "service_name", "fill", "service_type", "sink", "endpoint", "x");
    assert_string_equal (s_error (reply), "LIMIT_EXCEEDED");
    cvr_msg_destroy (&reply);
    for (int i = 0; i < 4; i++) {
        char id [16];
        snprintf (id, sizeof (id), "fill-%d", i);
        reply = s_call (self, "deregister", "s", "service_id", id);
        cvr_msg_destroy (&reply);
    }
    //  keep-1 is exactly as it was; the only events are the fills'.
    cvr_msg_t *after = s_call (self, "get_service", "s", "service_id", "keep-1");
    const msgpack_object *was = &cvr_obj_get (cvr_msg_root (before), "services")->via.array.ptr [0];
    cvr_wr_t *a = cvr_wr_new (), *b = cvr_wr_new ();
    cvr_wr_obj (a, was);
    cvr_wr_obj (b, cvr_obj_get (cvr_msg_root (after), "service"));
    assert_int_equal (cvr_wr_size (a), cvr_wr_size (b));
    assert_memory_equal (cvr_wr_data (a), cvr_wr_data (b), cvr_wr_size (a));
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (after), "seq", -1), seq + 8);
    cvr_wr_destroy (&a);
    cvr_wr_destroy (&b);
    cvr_msg_destroy (&before);
    cvr_msg_destroy (&after);
    s_fixture_destroy (&self);
}

static void
test_events_since_and_compaction (void **state)
{
    fixture_t *self = s_fixture ("30000", "4");
    for (int i = 0; i < 3; i++) {
        char id [16];
        snprintf (id, sizeof (id), "e-%d", i);
        s_register (self, id, i == 1 ? "beta" : "alpha", 60000);
    }
    cvr_msg_t *reply = s_call (self, "events_since", "isi", "since", (int64_t) 0,
                               "prefix", "service/alpha/", "limit", (int64_t) 1);
    const msgpack_object *root = cvr_msg_root (reply);
    assert_int_equal (cvr_obj_get (root, "events")->via.array.size, 1);
    assert_true (cvr_obj_get (root, "more")->via.boolean);
    assert_int_equal (cvr_obj_get_int (root, "seq", -1), 3);
    cvr_msg_destroy (&reply);
    //  Two more events push seq 1 out of a ring of 4.
    s_register (self, "e-3", "alpha", 60000);
    s_register (self, "e-4", "alpha", 60000);
    reply = s_call (self, "events_since", "i", "since", (int64_t) 0);
    assert_string_equal (s_error (reply), "COMPACTED");
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "oldest", -1), 2);
    cvr_msg_destroy (&reply);
    reply = s_call (self, "events_since", "i", "since", (int64_t) 1);
    assert_string_equal (s_error (reply), "OK");
    assert_int_equal (cvr_obj_get (cvr_msg_root (reply), "events")->via.array.size, 4);
    cvr_msg_destroy (&reply);
    s_fixture_destroy (&self);
}

static void
test_start_failures (void **state)
{
    zactor_t *server = zactor_new (cvr_server, NULL);
    zstr_sendx (server, "SET", "lease-ms", "abc", NULL);
    char *status = zstr_recv (server);
    assert_true (strncmp (status, "-1 ", 3) == 0);
    zstr_free (&status);
    zstr_sendx (server, "SET", "no-such-option", "1", NULL);
    status = zstr_recv (server);
    assert_true (strncmp (status, "-1 ", 3) == 0);
    zstr_free (&status);
    s_ok (server, "BIND", "tcp://256.1.1.1:1", NULL);
    zstr_sendx (server, "START", NULL);
    status = zstr_recv (server);
    assert_non_null (strstr (status, "cannot bind the request socket"));
    zstr_free (&status);
    zactor_destroy (&server);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_req_and_dealer_envelopes),
        cmocka_unit_test (test_check_order),
        cmocka_unit_test (test_lease_lifecycle),
        cmocka_unit_test (test_register_reply_carries_the_record),
        cmocka_unit_test (test_heartbeat_keeps_and_restores),
        cmocka_unit_test (test_bad_input_changes_nothing),
        cmocka_unit_test (test_events_since_and_compaction),
        cmocka_unit_test (test_start_failures),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
