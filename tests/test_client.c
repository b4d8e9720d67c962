/*  test_client.c: the client library (cvr_client, cvr_registration,
    cvr_watch) against a real server actor over TCP on ephemeral ports.

    Every wait is a bounded poll on a condition; a sleep is only ever the
    step of such a poll.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <cmocka.h>
#include <czmq.h>
#include "conveyor/conveyor.h"
#include "cvr_client_internal.h"
#include "cvr_proto.h"

#define TIMEOUT 3000            //  per request; generous for slow CI
#define LONG_LEASE 60000        //  services that must not expire mid-test

//  Polls cond every 10 ms until it holds or ms have passed.
#define WAIT_UNTIL(cond, ms) do {                                   \
    int64_t wait_deadline_ = zclock_mono () + (ms);                 \
    while (!(cond) && zclock_mono () < wait_deadline_)              \
        zclock_sleep (10);                                          \
} while (0)

//  --------------------------------------------------------------------------
//  A server actor on ephemeral ports

typedef struct {
    zactor_t *actor;
    char *requests;             //  request endpoint as bound
    char *events;               //  event endpoint as bound
} s_server_t;

static void
s_expect_ok (zactor_t *actor, const char *what)
{
    char *status = zstr_recv (actor);
    assert_non_null (status);
    if (!streq (status, "0"))
        fail_msg ("%s: %s", what, status);
    zstr_free (&status);
}

//  Starts a server; options are name/value pairs, NULL-terminated.
static void
s_server_start (s_server_t *server, const char *publish, ...)
{
    server->actor = zactor_new (cvr_server, "test");
    assert_non_null (server->actor);
    zstr_sendx (server->actor, "SET", "lease-ms", "1000", NULL);
    s_expect_ok (server->actor, "lease-ms");
    zstr_sendx (server->actor, "SET", "min-lease-ms", "200", NULL);
    s_expect_ok (server->actor, "min-lease-ms");
    va_list args;
    va_start (args, publish);
    const char *name;
    while ((name = va_arg (args, const char *))) {
        const char *value = va_arg (args, const char *);
        zstr_sendx (server->actor, "SET", name, value, NULL);
        s_expect_ok (server->actor, name);
    }
    va_end (args);
    zstr_sendx (server->actor, "BIND", "tcp://127.0.0.1:*", NULL);
    s_expect_ok (server->actor, "BIND");
    zstr_sendx (server->actor, "PUBLISH", publish ? publish : "tcp://127.0.0.1:*", NULL);
    s_expect_ok (server->actor, "PUBLISH");
    zstr_sendx (server->actor, "START", NULL);
    s_expect_ok (server->actor, "START");
    zstr_sendx (server->actor, "ENDPOINTS", NULL);
    assert_int_equal (zstr_recvx (server->actor, &server->requests, &server->events, NULL), 2);
}

static void
s_server_stop (s_server_t *server)
{
    zactor_destroy (&server->actor);
    zstr_free (&server->requests);
    zstr_free (&server->events);
}

//  --------------------------------------------------------------------------
//  Helpers

static cvr_err_t
s_register (cvr_client_t *client, const char *id, const char *name, int64_t lease_ms)
{
    cvr_service_spec_t spec = {
        .service_id = id, .service_name = name, .service_type = "source",
        .endpoint = "tcp://10.0.0.1:9000", .lease_ms = lease_ms, .weight = -1
    };
    return cvr_client_register (client, &spec, NULL, NULL);
}

//  The health the server holds for a service; -1 when it has none.
static int
s_server_health (cvr_client_t *client, const char *id)
{
    cvr_service_t *service = NULL;
    if (cvr_client_get_service (client, id, &service, NULL) != CVR_OK)
        return -1;
    int health = (int) service->health;
    cvr_service_destroy (&service);
    return health;
}

static uint64_t
s_server_seq (cvr_client_t *client)
{
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_OK);
    uint64_t seq = hello.seq;
    cvr_hello_clear (&hello);
    return seq;
}

//  An endpoint where nothing listens: a TCP socket bound but never
//  listening holds the port (so no other test, in this process or another,
//  can take it) and every connection attempt to it is refused. *fd is the
//  socket, to close when done.
static char *
s_dead_endpoint (int *fd)
{
    *fd = socket (AF_INET, SOCK_STREAM, 0);
    assert_true (*fd >= 0);
    struct sockaddr_in address = { .sin_family = AF_INET };
    address.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    assert_int_equal (bind (*fd, (struct sockaddr *) &address, sizeof (address)), 0);
    socklen_t size = sizeof (address);
    assert_int_equal (getsockname (*fd, (struct sockaddr *) &address, &size), 0);
    return zsys_sprintf ("tcp://127.0.0.1:%d", ntohs (address.sin_port));
}

//  --------------------------------------------------------------------------
//  Requests

static void
test_hello (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_non_null (client);
    assert_string_equal (cvr_client_endpoint (client), server.requests);

    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_OK);
    assert_int_equal (cvr_client_error (client), CVR_OK);
    assert_string_equal (cvr_client_message (client), "");
    assert_int_equal (hello.protocol, 1);
    assert_non_null (hello.server);
    assert_non_null (hello.version);
    assert_non_null (hello.node_id);
    assert_string_equal (hello.events_endpoint, server.events);
    assert_null (hello.leader);
    assert_int_equal (hello.lease_ms, 1000);
    assert_true (hello.session_timeout_ms > 0);
    cvr_hello_clear (&hello);
    assert_null (hello.server);
    assert_string_equal (cvr_client_events_endpoint (client), server.events);

    cvr_client_destroy (&client);
    assert_null (client);
    cvr_client_destroy (&client);           //  NULL-safe
    s_server_stop (&server);

    //  Only a malformed endpoint fails at once.
    assert_null (cvr_client_new ("nonsense", TIMEOUT));
    assert_null (cvr_client_new (NULL, TIMEOUT));
}

static void
test_call (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    cvr_wr_t *w = cvr_wr_new ();

    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "hello");
    cvr_msg_t *reply = cvr_client_call (client, w);
    assert_non_null (reply);
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "protocol", 0), 1);
    cvr_msg_destroy (&reply);

    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "no_such_op");
    assert_null (cvr_client_call (client, w));
    assert_int_equal (cvr_client_error (client), CVR_UNKNOWN_OP);
    assert_true (strlen (cvr_client_message (client)) > 0);

    //  A writer that is not one open map is refused before sending.
    cvr_wr_reset (w);
    assert_null (cvr_client_call (client, w));
    assert_int_equal (cvr_client_error (client), CVR_BAD_REQUEST);

    //  Success resets the error.
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "hello");
    reply = cvr_client_call (client, w);
    assert_non_null (reply);
    cvr_msg_destroy (&reply);
    assert_int_equal (cvr_client_error (client), CVR_OK);
    assert_string_equal (cvr_client_message (client), "");

    cvr_wr_destroy (&w);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_registry (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);

    //  Labels given out of order come back sorted.
    cvr_label_t labels [] = { { "zone", "eu" }, { "tier", "gold" } };
    cvr_service_spec_t spec = {
        .service_id = "src-1", .service_name = "orders", .service_type = "source",
        .endpoint = "tcp://10.0.0.5:9000", .group_id = "g1",
        .labels = labels, .labels_count = 2, .lease_ms = 5000, .weight = 7
    };
    int64_t lease_ms = 0;
    cvr_service_t *service = NULL;
    assert_int_equal (cvr_client_register (client, &spec, &lease_ms, &service), CVR_OK);
    assert_int_equal (lease_ms, 5000);
    assert_non_null (service);
    assert_string_equal (service->service_id, "src-1");
    assert_string_equal (service->service_name, "orders");
    assert_string_equal (service->service_type, "source");
    assert_string_equal (service->endpoint, "tcp://10.0.0.5:9000");
    assert_string_equal (service->group_id, "g1");
    assert_int_equal (service->weight, 7);
    assert_int_equal (service->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (service->labels_count, 2);
    assert_string_equal (service->labels [0].key, "tier");
    assert_string_equal (service->labels [1].key, "zone");
    assert_string_equal (cvr_service_label (service, "zone"), "eu");
    assert_int_equal (service->revision, 1);
    cvr_service_destroy (&service);

    //  Omitted optional fields take the defaults.
    cvr_service_spec_t plain = {
        .service_id = "snk-1", .service_name = "orders", .service_type = "sink",
        .endpoint = "tcp://10.0.0.6:9000", .weight = -1
    };
    assert_int_equal (cvr_client_register (client, &plain, &lease_ms, &service), CVR_OK);
    assert_int_equal (lease_ms, 1000);
    assert_int_equal (service->weight, 100);
    assert_null (service->group_id);
    assert_int_equal (service->labels_count, 0);
    cvr_service_destroy (&service);
    assert_int_equal (s_register (client, "pay-1", "payments", LONG_LEASE), CVR_OK);

    uint64_t seq = 0;
    assert_int_equal (cvr_client_get_service (client, "src-1", &service, &seq), CVR_OK);
    assert_string_equal (service->service_name, "orders");
    assert_int_equal (seq, s_server_seq (client));
    cvr_service_destroy (&service);

    cvr_service_list_t *list = NULL;
    assert_int_equal (cvr_client_list_services (client, NULL, &list), CVR_OK);
    assert_int_equal (list->count, 3);
    assert_string_equal (list->items [0]->service_id, "pay-1");    //  sorted
    assert_string_equal (list->items [1]->service_id, "snk-1");
    assert_string_equal (list->items [2]->service_id, "src-1");
    assert_int_equal (list->seq, seq);
    cvr_service_list_destroy (&list);
    assert_null (list);

    cvr_service_filter_t by_name = { .service_name = "orders" };
    assert_int_equal (cvr_client_list_services (client, &by_name, &list), CVR_OK);
    assert_int_equal (list->count, 2);
    cvr_service_list_destroy (&list);

    cvr_service_filter_t by_type = { .service_name = "orders", .service_type = "sink" };
    assert_int_equal (cvr_client_list_services (client, &by_type, &list), CVR_OK);
    assert_int_equal (list->count, 1);
    assert_string_equal (list->items [0]->service_id, "snk-1");
    cvr_service_list_destroy (&list);

    cvr_service_filter_t by_group = { .group_id = "g1" };
    assert_int_equal (cvr_client_list_services (client, &by_group, &list), CVR_OK);
    assert_int_equal (list->count, 1);
    assert_string_equal (list->items [0]->service_id, "src-1");
    cvr_service_list_destroy (&list);

    cvr_label_t want [] = { { "tier", "gold" } };
    cvr_service_filter_t by_label = { .labels = want, .labels_count = 1 };
    assert_int_equal (cvr_client_list_services (client, &by_label, &list), CVR_OK);
    assert_int_equal (list->count, 1);
    assert_string_equal (list->items [0]->service_id, "src-1");
    cvr_service_list_destroy (&list);
    cvr_label_t wrong [] = { { "tier", "gold" }, { "zone", "us" } };
    cvr_service_filter_t by_labels = { .labels = wrong, .labels_count = 2 };
    assert_int_equal (cvr_client_list_services (client, &by_labels, &list), CVR_OK);
    assert_int_equal (list->count, 0);
    cvr_service_list_destroy (&list);

    //  healthy_only leaves out a degraded service.
    int64_t granted = 0;
    cvr_health_t acked = CVR_HEALTH_UNKNOWN;
    assert_int_equal (cvr_client_heartbeat (client, "snk-1", CVR_HEALTH_DEGRADED,
                                            &granted, &acked), CVR_OK);
    assert_int_equal (granted, 1000);
    assert_int_equal (acked, CVR_HEALTH_DEGRADED);
    cvr_service_filter_t healthy = { .service_name = "orders", .healthy_only = true };
    assert_int_equal (cvr_client_list_services (client, &healthy, &list), CVR_OK);
    assert_int_equal (list->count, 1);
    assert_string_equal (list->items [0]->service_id, "src-1");
    cvr_service_list_destroy (&list);

    assert_int_equal (cvr_client_deregister (client, "src-1"), CVR_OK);
    assert_int_equal (cvr_client_get_service (client, "src-1", &service, NULL),
                      CVR_NOT_FOUND);
    assert_null (service);
    assert_int_equal (cvr_client_list_services (client, &by_name, &list), CVR_OK);
    assert_int_equal (list->count, 1);
    cvr_service_list_destroy (&list);

    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_errors (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);

    assert_int_equal (cvr_client_deregister (client, "ghost"), CVR_NOT_FOUND);
    assert_int_equal (cvr_client_error (client), CVR_NOT_FOUND);
    assert_true (strlen (cvr_client_message (client)) > 0);

    assert_int_equal (cvr_client_heartbeat (client, "ghost", CVR_HEALTH_HEALTHY,
                                            NULL, NULL), CVR_NOT_FOUND);

    //  A name outside [A-Za-z0-9._:@-] is the server's BAD_REQUEST, with
    //  its message.
    assert_int_equal (s_register (client, "bad name!", "orders", 0), CVR_BAD_REQUEST);
    assert_int_equal (cvr_client_error (client), CVR_BAD_REQUEST);
    assert_true (strlen (cvr_client_message (client)) > 0);

    //  A missing required field too (the client sends it as nil).
    cvr_service_spec_t partial = { .service_id = "x-1", .weight = -1 };
    assert_int_equal (cvr_client_register (client, &partial, NULL, NULL), CVR_BAD_REQUEST);

    //  An invalid filter is refused like the field it matches.
    cvr_service_list_t *list = NULL;
    cvr_service_filter_t bad = { .service_name = "no/slash" };
    assert_int_equal (cvr_client_list_services (client, &bad, &list), CVR_BAD_REQUEST);
    assert_null (list);

    //  A success clears the last error.
    assert_int_equal (s_register (client, "ok-1", "orders", 0), CVR_OK);
    assert_int_equal (cvr_client_error (client), CVR_OK);
    assert_string_equal (cvr_client_message (client), "");

    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_timeout (void **state)
{
    int fd;
    char *dead = s_dead_endpoint (&fd);
    cvr_client_t *client = cvr_client_new (dead, 300);
    assert_non_null (client);
    int64_t started = zclock_mono ();
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_TIMEOUT);
    int64_t elapsed = zclock_mono () - started;
    assert_true (elapsed >= 250);
    assert_true (elapsed < 1500);
    char *expected = zsys_sprintf ("no reply from %s within 300 ms", dead);
    assert_non_null (strstr (cvr_client_message (client), expected));
    zstr_free (&expected);
    assert_null (cvr_client_events_endpoint (client));

    //  A shorter timeout applies to later calls.
    cvr_client_set_timeout (client, 100);
    started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "x"), CVR_TIMEOUT);
    assert_true (zclock_mono () - started < 1000);

    //  Destroy returns at once although requests are unanswered.
    started = zclock_mono ();
    cvr_client_destroy (&client);
    assert_true (zclock_mono () - started < 500);

    //  The helpers built on the client fail the same bounded way.
    cvr_service_spec_t spec = {
        .service_id = "a-1", .service_name = "a", .service_type = "sink",
        .endpoint = "tcp://10.0.0.1:1", .weight = -1
    };
    cvr_err_t err = CVR_OK;
    assert_null (cvr_registration_new (dead, &spec, 200, NULL, NULL, &err));
    assert_int_equal (err, CVR_TIMEOUT);
    assert_null (cvr_watch_new (dead, "service/", 200));
    zstr_free (&dead);
    close (fd);
}

//  A stand-in server that answers request n only when request n+1 comes,
//  and answers that one too: the client sees a late reply to a call that
//  timed out before the reply to its current one. In "garbage" mode it
//  answers with bytes that are not msgpack. In "mute" mode it accepts the
//  first request as a register and then never answers: a server that
//  hangs while still holding its port (a stopped one would free the port
//  for any other process's test server to take).
static void
s_fake_server (zsock_t *pipe, void *args)
{
    bool garbage = streq ((const char *) args, "garbage");
    bool mute = streq ((const char *) args, "mute");
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    zsock_bind (router, "tcp://127.0.0.1:*");
    char *endpoint = zsock_last_endpoint (router);
    zsock_signal (pipe, 0);
    zstr_send (pipe, endpoint);
    zstr_free (&endpoint);
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    zframe_t *pending_id = NULL;
    uint64_t pending_rid = 0, count = 0;
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which != router)
            break;                  //  $TERM or interrupted
        zmsg_t *msg = zmsg_recv (router);
        zframe_t *id = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        count++;
        if (mute) {
            if (count == 1) {
                cvr_msg_t *request = cvr_msg_decode (zframe_data (body), zframe_size (body));
                cvr_wr_t *w = cvr_wr_new ();
                cvr_wr_map (w);
                cvr_wr_kbool (w, "ok", true);
                cvr_wr_str (w, "rid");
                cvr_wr_obj (w, cvr_obj_get (cvr_msg_root (request), "rid"));
                cvr_wr_kint (w, "lease_ms", 300);
                cvr_service_t service = {
                    .service_id = "lost-1", .service_name = "lost",
                    .service_type = "sink", .endpoint = "tcp://10.0.0.9:1",
                    .lease_ms = 300, .revision = 1
                };
                cvr_wr_str (w, "service");
                cvr_proto_write_service (w, &service);
                cvr_wr_close (w);
                zframe_t *reply = cvr_wr_frame (w);
                zframe_send (&id, router, ZFRAME_MORE);
                zframe_send (&reply, router, 0);
                cvr_wr_destroy (&w);
                cvr_msg_destroy (&request);
            }
        }
        else
        if (garbage) {
            zframe_send (&id, router, ZFRAME_MORE);
            zstr_send (router, "this is not msgpack \xc1");
        }
        else {
            cvr_msg_t *request = cvr_msg_decode (zframe_data (body), zframe_size (body));
            uint64_t rid = 0;
            cvr_obj_uint (cvr_obj_get (cvr_msg_root (request), "rid"), &rid);
            cvr_msg_destroy (&request);
            if (pending_id) {
                cvr_wr_t *w = cvr_wr_new ();
                cvr_wr_map (w);
                cvr_wr_kbool (w, "ok", true);
                cvr_wr_kuint (w, "rid", pending_rid);
                cvr_wr_kuint (w, "n", count - 1);
                cvr_wr_close (w);
                zframe_send (&pending_id, router, ZFRAME_MORE);
                zframe_t *reply = cvr_wr_frame (w);
                zframe_send (&reply, router, 0);
                cvr_wr_reset (w);
                cvr_wr_map (w);
                cvr_wr_kbool (w, "ok", true);
                cvr_wr_kuint (w, "rid", rid);
                cvr_wr_kuint (w, "n", count);
                cvr_wr_close (w);
                zframe_send (&id, router, ZFRAME_MORE);
                reply = cvr_wr_frame (w);
                zframe_send (&reply, router, 0);
                cvr_wr_destroy (&w);
            }
            else {
                pending_id = id;
                id = NULL;
                pending_rid = rid;
            }
        }
        zframe_destroy (&id);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    zframe_destroy (&pending_id);
    zpoller_destroy (&poller);
    zsock_destroy (&router);
}

static void
test_stale_replies (void **state)
{
    zactor_t *fake = zactor_new (s_fake_server, "late");
    char *endpoint = zstr_recv (fake);
    cvr_client_t *client = cvr_client_new (endpoint, 300);
    cvr_wr_t *w = cvr_wr_new ();

    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "first");
    assert_null (cvr_client_call (client, w));
    assert_int_equal (cvr_client_error (client), CVR_TIMEOUT);

    //  The late reply to "first" arrives before ours and is skipped.
    cvr_client_set_timeout (client, TIMEOUT);
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "second");
    cvr_msg_t *reply = cvr_client_call (client, w);
    assert_non_null (reply);
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (reply), "n", 0), 2);
    cvr_msg_destroy (&reply);

    cvr_client_destroy (&client);
    zactor_destroy (&fake);
    zstr_free (&endpoint);

    fake = zactor_new (s_fake_server, "garbage");
    endpoint = zstr_recv (fake);
    client = cvr_client_new (endpoint, TIMEOUT);
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_PROTOCOL);
    assert_int_equal (cvr_client_error (client), CVR_PROTOCOL);
    cvr_client_destroy (&client);
    zactor_destroy (&fake);
    zstr_free (&endpoint);
    cvr_wr_destroy (&w);
}

static void
test_wildcard_events_endpoint (void **state)
{
    //  A server publishing on every interface reports the wildcard it
    //  bound; the client connects through the host it already uses.
    s_server_t server;
    s_server_start (&server, "tcp://*:*", NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    const char *events = cvr_client_events_endpoint (client);
    assert_non_null (events);
    const char *port = strrchr (server.events, ':');
    char *expected = zsys_sprintf ("tcp://127.0.0.1%s", port);
    assert_string_equal (events, expected);
    zstr_free (&expected);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_events_since (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    uint64_t start = s_server_seq (client);
    char id [32];
    for (int i = 0; i < 5; i++) {
        snprintf (id, sizeof (id), "es-%d", i);
        assert_int_equal (s_register (client, id, "es", LONG_LEASE), CVR_OK);
        assert_int_equal (s_register (client, "other-1", i % 2 ? "x" : "y", LONG_LEASE),
                          CVR_OK);
    }
    uint64_t latest = s_server_seq (client);

    //  Pages of two, following `more`, give the five in order.
    uint64_t since = start;
    int seen = 0, pages = 0;
    uint64_t previous = start;
    while (true) {
        cvr_event_list_t *list = NULL;
        assert_int_equal (cvr_client_events_since (client, since, "service/es/", 2,
                                                   &list, NULL), CVR_OK);
        pages++;
        assert_true (list->count <= 2);
        assert_int_equal (list->seq, latest);
        for (size_t i = 0; i < list->count; i++) {
            cvr_event_t *event = list->items [i];
            assert_string_equal (event->topic, "service/es/registered");
            assert_string_equal (event->type, "registered");
            assert_true (event->seq > previous);
            assert_non_null (event->service);
            snprintf (id, sizeof (id), "es-%d", seen);
            assert_string_equal (event->service->service_id, id);
            assert_true (event->at > 0);
            //  The body is kept as bytes that decode to the same event.
            cvr_event_t *copy = cvr_event_decode (event->topic, event->body,
                                                  event->body_size);
            assert_non_null (copy);
            assert_int_equal (copy->seq, event->seq);
            assert_int_equal (copy->prev, event->prev);
            cvr_event_destroy (&copy);
            previous = event->seq;
            seen++;
        }
        bool more = list->more;
        if (list->count)
            since = list->items [list->count - 1]->seq;
        cvr_event_list_destroy (&list);
        if (!more)
            break;
        assert_true (pages < 10);
    }
    assert_int_equal (seen, 5);
    assert_true (pages >= 3);

    //  Without a prefix every event comes; at the latest seq none.
    cvr_event_list_t *list = NULL;
    assert_int_equal (cvr_client_events_since (client, start, NULL, 0, &list, NULL), CVR_OK);
    assert_int_equal (list->count, latest - start);
    assert_false (list->more);
    cvr_event_list_destroy (&list);
    assert_int_equal (cvr_client_events_since (client, latest, "", 0, &list, NULL), CVR_OK);
    assert_int_equal (list->count, 0);
    assert_false (list->more);
    cvr_event_list_destroy (&list);
    cvr_client_destroy (&client);
    s_server_stop (&server);

    //  A server that keeps five events answers an older since COMPACTED.
    s_server_start (&server, NULL, "history", "5", NULL);
    client = cvr_client_new (server.requests, TIMEOUT);
    for (int i = 0; i < 8; i++) {
        snprintf (id, sizeof (id), "c-%d", i);
        assert_int_equal (s_register (client, id, "c", LONG_LEASE), CVR_OK);
    }
    uint64_t oldest = 0;
    assert_int_equal (cvr_client_events_since (client, 0, "service/", 0, &list, &oldest),
                      CVR_COMPACTED);
    assert_null (list);
    assert_int_equal (cvr_client_error (client), CVR_COMPACTED);
    assert_int_equal (oldest, 4);
    assert_int_equal (cvr_client_events_since (client, 3, NULL, 0, &list, &oldest), CVR_OK);
    assert_int_equal (list->count, 5);
    cvr_event_list_destroy (&list);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static uint64_t
s_count (const cvr_count_t *counts, size_t size, const char *name)
{
    for (size_t i = 0; i < size; i++)
        if (streq (counts [i].name, name))
            return counts [i].count;
    return 0;
}

static void
test_stats (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_int_equal (s_register (client, "s-1", "s", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "s-2", "s", LONG_LEASE), CVR_OK);
    assert_int_equal (cvr_client_deregister (client, "ghost"), CVR_NOT_FOUND);
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_OK);
    cvr_hello_clear (&hello);

    cvr_stats_t *stats = NULL;
    assert_int_equal (cvr_client_stats (client, &stats), CVR_OK);
    assert_true (stats->uptime_ms >= 0);
    assert_int_equal (stats->seq, 2);
    assert_int_equal (stats->services, 2);
    assert_int_equal (stats->events_published, 2);
    assert_int_equal (stats->groups, 0);
    assert_int_equal (stats->dropped, 0);
    assert_int_equal (s_count (stats->requests, stats->requests_count, "register"), 2);
    assert_int_equal (s_count (stats->requests, stats->requests_count, "deregister"), 1);
    assert_int_equal (s_count (stats->requests, stats->requests_count, "hello"), 1);
    assert_int_equal (s_count (stats->errors, stats->errors_count, "NOT_FOUND"), 1);
    for (size_t i = 1; i < stats->requests_count; i++)
        assert_true (strcmp (stats->requests [i - 1].name, stats->requests [i].name) < 0);
    cvr_stats_destroy (&stats);
    assert_null (stats);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_event_decode (void **state)
{
    assert_null (cvr_event_decode ("service/a/registered", "\xc1", 1));
    assert_null (cvr_event_decode ("x", NULL, 0));
    cvr_wr_t *w = cvr_wr_new ();
    //  No seq: not an event.
    cvr_wr_map (w);
    cvr_wr_kstr (w, "type", "changed");
    cvr_wr_close (w);
    assert_null (cvr_event_decode ("topic/t/changed", cvr_wr_data (w), cvr_wr_size (w)));
    //  A service event without its record is broken.
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "type", "registered");
    cvr_wr_kuint (w, "seq", 3);
    cvr_wr_close (w);
    assert_null (cvr_event_decode ("service/a/registered", cvr_wr_data (w), cvr_wr_size (w)));
    //  Other events need type and seq; prev and at are read when there.
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "type", "changed");
    cvr_wr_kuint (w, "seq", 9);
    cvr_wr_kuint (w, "prev", 4);
    cvr_wr_kint (w, "at", 1234);
    cvr_wr_kint (w, "partitions", 3);
    cvr_wr_close (w);
    cvr_event_t *event = cvr_event_decode ("topic/t/changed", cvr_wr_data (w), cvr_wr_size (w));
    assert_non_null (event);
    assert_string_equal (event->topic, "topic/t/changed");
    assert_string_equal (event->type, "changed");
    assert_int_equal (event->seq, 9);
    assert_int_equal (event->prev, 4);
    assert_int_equal (event->at, 1234);
    assert_null (event->service);
    assert_null (event->services);
    assert_int_equal (event->body_size, cvr_wr_size (w));
    assert_memory_equal (event->body, cvr_wr_data (w), cvr_wr_size (w));
    cvr_event_destroy (&event);
    assert_null (event);
    cvr_wr_destroy (&w);
}

//  --------------------------------------------------------------------------
//  Registration

typedef struct {
    atomic_int health_changes;
    atomic_int reregistered;
    atomic_int unreachable;
    atomic_int last_health;
} s_callbacks_t;

static void
s_on_registration (cvr_registration_event_t event, cvr_health_t health, void *arg)
{
    s_callbacks_t *seen = (s_callbacks_t *) arg;
    if (event == CVR_REGISTRATION_HEALTH)
        atomic_fetch_add (&seen->health_changes, 1);
    else
    if (event == CVR_REGISTRATION_REREGISTERED)
        atomic_fetch_add (&seen->reregistered, 1);
    else
        atomic_fetch_add (&seen->unreachable, 1);
    atomic_store (&seen->last_health, (int) health);
}

static void
test_registration (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    s_callbacks_t seen = { 0, 0, 0, -1 };

    //  The spec's strings are the caller's: the registration copies them.
    char *id = strdup ("reg-1");
    cvr_label_t labels [] = { { "k", "v" } };
    cvr_service_spec_t spec = {
        .service_id = id, .service_name = "reg", .service_type = "transform",
        .endpoint = "tcp://10.0.0.9:1", .labels = labels, .labels_count = 1,
        .lease_ms = 300, .weight = -1
    };
    cvr_err_t err = CVR_INTERNAL;
    cvr_registration_t *reg = cvr_registration_new (server.requests, &spec, TIMEOUT,
                                                    s_on_registration, &seen, &err);
    assert_non_null (reg);
    assert_int_equal (err, CVR_OK);
    free (id);
    assert_int_equal (cvr_registration_lease_ms (reg), 300);
    assert_int_equal (cvr_registration_registrations (reg), 1);
    assert_int_equal (cvr_registration_health (reg), CVR_HEALTH_HEALTHY);

    //  Several lease periods: heartbeats at lease/3 keep it healthy. The
    //  server turns a service unhealthy 300 ms after its last heartbeat,
    //  so checking it all along catches a late one.
    int64_t until = zclock_mono () + 1500;
    while (zclock_mono () < until) {
        assert_int_equal (s_server_health (client, "reg-1"), CVR_HEALTH_HEALTHY);
        zclock_sleep (50);
    }
    assert_true (cvr_registration_heartbeats (reg) >= 8);
    assert_int_equal (cvr_registration_registrations (reg), 1);
    assert_int_equal (atomic_load (&seen.unreachable), 0);
    cvr_service_t *service = NULL;
    assert_int_equal (cvr_client_get_service (client, "reg-1", &service, NULL), CVR_OK);
    assert_string_equal (cvr_service_label (service, "k"), "v");
    assert_string_equal (service->service_type, "transform");
    cvr_service_destroy (&service);

    //  A reported health reaches the server at once, not a lease later.
    cvr_registration_set_health (reg, CVR_HEALTH_DEGRADED);
    WAIT_UNTIL (s_server_health (client, "reg-1") == CVR_HEALTH_DEGRADED, 2000);
    assert_int_equal (s_server_health (client, "reg-1"), CVR_HEALTH_DEGRADED);
    WAIT_UNTIL (cvr_registration_health (reg) == CVR_HEALTH_DEGRADED, 2000);
    assert_int_equal (cvr_registration_health (reg), CVR_HEALTH_DEGRADED);
    WAIT_UNTIL (atomic_load (&seen.health_changes) == 1, 2000);
    assert_int_equal (atomic_load (&seen.health_changes), 1);
    assert_int_equal (atomic_load (&seen.last_health), CVR_HEALTH_DEGRADED);

    //  Removed behind its back: the next heartbeat gets NOT_FOUND and the
    //  service is registered again, then reports its health again.
    assert_int_equal (cvr_client_deregister (client, "reg-1"), CVR_OK);
    WAIT_UNTIL (cvr_registration_registrations (reg) == 2, 2000);
    assert_int_equal (cvr_registration_registrations (reg), 2);
    assert_int_equal (atomic_load (&seen.reregistered), 1);
    WAIT_UNTIL (s_server_health (client, "reg-1") == CVR_HEALTH_DEGRADED, 2000);
    assert_int_equal (s_server_health (client, "reg-1"), CVR_HEALTH_DEGRADED);
    WAIT_UNTIL (cvr_registration_health (reg) == CVR_HEALTH_DEGRADED, 2000);
    assert_int_equal (cvr_registration_health (reg), CVR_HEALTH_DEGRADED);

    //  Destroy deregisters before it returns.
    cvr_registration_destroy (&reg);
    assert_null (reg);
    assert_int_equal (s_server_health (client, "reg-1"), -1);
    assert_int_equal (cvr_client_error (client), CVR_NOT_FOUND);
    cvr_registration_destroy (&reg);        //  NULL-safe

    //  A bad spec fails in new, with the server's code.
    spec.service_id = "bad id";
    assert_null (cvr_registration_new (server.requests, &spec, TIMEOUT, NULL, NULL, &err));
    assert_int_equal (err, CVR_BAD_REQUEST);

    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_registration_unreachable (void **state)
{
    zactor_t *fake = zactor_new (s_fake_server, "mute");
    char *endpoint = zstr_recv (fake);
    s_callbacks_t seen = { 0, 0, 0, -1 };
    cvr_service_spec_t spec = {
        .service_id = "lost-1", .service_name = "lost", .service_type = "sink",
        .endpoint = "tcp://10.0.0.9:1", .lease_ms = 300, .weight = -1
    };
    cvr_registration_t *reg = cvr_registration_new (endpoint, &spec, 200,
                                                    s_on_registration, &seen, NULL);
    assert_non_null (reg);
    assert_int_equal (cvr_registration_lease_ms (reg), 300);
    //  The server stops answering: heartbeats time out and are reported.
    WAIT_UNTIL (atomic_load (&seen.unreachable) >= 1, 3000);
    assert_true (atomic_load (&seen.unreachable) >= 1);
    //  Destroy is bounded: at most a heartbeat and a deregister timeout.
    int64_t started = zclock_mono ();
    cvr_registration_destroy (&reg);
    assert_true (zclock_mono () - started < 1500);
    assert_int_equal (atomic_load (&seen.reregistered), 0);
    assert_int_equal (atomic_load (&seen.health_changes), 0);
    zactor_destroy (&fake);
    zstr_free (&endpoint);
}

//  --------------------------------------------------------------------------
//  Watch

static void
test_watch_order (void **state)
{
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_int_equal (s_register (client, "ord-0", "ord", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "oth-0", "other", LONG_LEASE), CVR_OK);

    cvr_watch_t *watch = cvr_watch_new (server.requests, "service/ord/", TIMEOUT);
    assert_non_null (watch);
    assert_non_null (cvr_watch_socket (watch));
    cvr_event_t *event = cvr_watch_next (watch, TIMEOUT);
    assert_non_null (event);
    assert_string_equal (event->type, "snapshot");
    assert_int_equal (event->seq, 2);
    assert_non_null (event->services);
    assert_int_equal (event->services->count, 1);
    assert_string_equal (event->services->items [0]->service_id, "ord-0");
    uint64_t previous = event->seq;
    cvr_event_destroy (&event);

    //  Published while nobody reads: the SUB socket and the internal
    //  queue hold them (and a loss while the subscription propagates is
    //  repaired), so all come, in order.
    assert_int_equal (s_register (client, "ord-1", "ord", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "ord-2", "ord", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "oth-1", "other", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "ord-3", "ord", LONG_LEASE), CVR_OK);
    assert_int_equal (cvr_client_heartbeat (client, "ord-1", CVR_HEALTH_DEGRADED,
                                            NULL, NULL), CVR_OK);
    assert_int_equal (cvr_client_deregister (client, "ord-2"), CVR_OK);
    const char *types [] = { "registered", "registered", "registered", "health",
                             "deregistered" };
    const char *ids [] = { "ord-1", "ord-2", "ord-3", "ord-1", "ord-2" };
    for (int i = 0; i < 5; i++) {
        event = cvr_watch_next (watch, 5000);
        assert_non_null (event);
        assert_string_equal (event->type, types [i]);
        assert_non_null (event->service);
        assert_string_equal (event->service->service_id, ids [i]);
        char *topic = zsys_sprintf ("service/ord/%s", types [i]);
        assert_string_equal (event->topic, topic);
        zstr_free (&topic);
        assert_true (event->seq > previous);
        assert_non_null (event->body);
        previous = event->seq;
        cvr_event_destroy (&event);
    }
    assert_null (cvr_watch_next (watch, 0));
    assert_null (cvr_watch_next (watch, 200));
    assert_int_equal (cvr_watch_resyncs (watch), 0);
    cvr_watch_destroy (&watch);
    assert_null (watch);

    //  A prefix beyond services: the snapshot only carries the seq.
    watch = cvr_watch_new (server.requests, "group/", TIMEOUT);
    event = cvr_watch_next (watch, 0);
    assert_non_null (event);
    assert_string_equal (event->type, "snapshot");
    assert_null (event->services);
    assert_int_equal (event->seq, s_server_seq (client));
    cvr_event_destroy (&event);
    cvr_watch_destroy (&watch);

    //  "service/or" covers every name that starts so, and nothing else:
    //  ord-0, ord-1, ord-3 and orx-0, not oth-0 and oth-1.
    assert_int_equal (s_register (client, "orx-0", "orx", LONG_LEASE), CVR_OK);
    watch = cvr_watch_new (server.requests, "service/or", TIMEOUT);
    event = cvr_watch_next (watch, 0);
    assert_non_null (event);
    assert_int_equal (event->services->count, 4);
    assert_string_equal (event->services->items [3]->service_id, "orx-0");
    cvr_event_destroy (&event);
    cvr_watch_destroy (&watch);
    watch = cvr_watch_new (server.requests, "", TIMEOUT);
    event = cvr_watch_next (watch, 0);
    assert_non_null (event);
    assert_int_equal (event->services->count, 6);
    cvr_event_destroy (&event);
    cvr_watch_destroy (&watch);

    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  Moves a watch's SUB socket from the server's PUB to one the test
//  drives, so the test decides which events the watch sees. The XPUB
//  reports the watch's subscription once it is in place, so nothing sent
//  after that is lost: the losses are exactly the events not forwarded.
static zsock_t *
s_hijack (cvr_watch_t *watch, const char *server_events, const char *prefix)
{
    zsock_t *xpub = zsock_new (ZMQ_XPUB);
    assert_true (zsock_bind (xpub, "tcp://127.0.0.1:*") > 0);
    char *endpoint = zsock_last_endpoint (xpub);
    zsock_t *sub = cvr_watch_socket (watch);
    assert_int_equal (zsock_connect (sub, "%s", endpoint), 0);
    assert_int_equal (zsock_disconnect (sub, "%s", server_events), 0);
    zstr_free (&endpoint);
    bool subscribed = false;
    zpoller_t *poller = zpoller_new (xpub, NULL);
    int64_t deadline = zclock_mono () + 5000;
    while (!subscribed && zclock_mono () < deadline) {
        if (zpoller_wait (poller, 100) != xpub)
            continue;
        zframe_t *frame = zframe_recv (xpub);
        subscribed = zframe_size (frame) == 1 + strlen (prefix)
                  && zframe_data (frame) [0] == 1
                  && memcmp (zframe_data (frame) + 1, prefix, strlen (prefix)) == 0;
        zframe_destroy (&frame);
    }
    zpoller_destroy (&poller);
    assert_true (subscribed);
    return xpub;
}

static void
s_forward (zsock_t *xpub, const cvr_event_t *event)
{
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, event->topic);
    zmsg_addmem (msg, event->body, event->body_size);
    assert_int_equal (zmsg_send (&msg, xpub), 0);
}

static void
s_forward_heartbeat (zsock_t *xpub, uint64_t seq)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "type", "heartbeat");
    cvr_wr_kint (w, "at", zclock_time ());
    cvr_wr_kuint (w, "seq", seq);
    cvr_wr_kstr (w, "node_id", "test");
    cvr_wr_close (w);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "sys/heartbeat");
    zmsg_addmem (msg, cvr_wr_data (w), cvr_wr_size (w));
    assert_int_equal (zmsg_send (&msg, xpub), 0);
    cvr_wr_destroy (&w);
}

//  The events under prefix after since, as the server numbered them.
static cvr_event_list_t *
s_history (cvr_client_t *client, uint64_t since, const char *prefix)
{
    cvr_event_list_t *list = NULL;
    assert_int_equal (cvr_client_events_since (client, since, prefix, 0, &list, NULL),
                      CVR_OK);
    return list;
}

static void
test_watch_gap (void **state)
{
    //  Deterministic losses: the watch is moved to a test-driven XPUB (see
    //  s_hijack), the real events are read back with events_since and only
    //  some are forwarded. The repair itself talks to the real server.
    s_server_t server;
    s_server_start (&server, NULL, "history", "1000", NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    cvr_watch_t *watch = cvr_watch_new (server.requests, "service/gap/", TIMEOUT);
    assert_non_null (watch);
    cvr_event_t *event = cvr_watch_next (watch, 0);
    assert_string_equal (event->type, "snapshot");
    uint64_t start = event->seq;
    cvr_event_destroy (&event);
    zsock_t *xpub = s_hijack (watch, server.events, "service/gap/");

    //  Lost by prev: gap-2 is withheld; gap-3's prev names it.
    assert_int_equal (s_register (client, "gap-1", "gap", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "noise", "other", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "gap-2", "gap", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "gap-3", "gap", LONG_LEASE), CVR_OK);
    cvr_event_list_t *sent = s_history (client, start, "service/gap/");
    assert_int_equal (sent->count, 3);
    assert_int_equal (sent->items [1]->prev, sent->items [0]->seq);
    assert_int_equal (sent->items [2]->prev, sent->items [1]->seq);
    s_forward (xpub, sent->items [0]);
    s_forward (xpub, sent->items [2]);
    for (size_t i = 0; i < 3; i++) {
        event = cvr_watch_next (watch, 5000);
        assert_non_null (event);
        assert_int_equal (event->seq, sent->items [i]->seq);
        assert_string_equal (event->service->service_id, sent->items [i]->service->service_id);
        cvr_event_destroy (&event);
    }
    assert_int_equal (cvr_watch_gaps (watch), 1);
    //  The withheld event, sent late, is a duplicate now.
    s_forward (xpub, sent->items [1]);
    assert_null (cvr_watch_next (watch, 200));
    uint64_t last = sent->items [2]->seq;
    cvr_event_list_destroy (&sent);

    //  Lost with nothing after it under the prefix: the heartbeat's seq
    //  shows it.
    assert_int_equal (cvr_client_heartbeat (client, "gap-1", CVR_HEALTH_UNHEALTHY,
                                            NULL, NULL), CVR_OK);
    sent = s_history (client, last, "service/gap/");
    assert_int_equal (sent->count, 1);
    s_forward_heartbeat (xpub, s_server_seq (client));
    event = cvr_watch_next (watch, 5000);
    assert_non_null (event);
    assert_string_equal (event->type, "health");
    assert_int_equal (event->seq, sent->items [0]->seq);
    assert_int_equal (event->service->health, CVR_HEALTH_UNHEALTHY);
    cvr_event_destroy (&event);
    cvr_event_list_destroy (&sent);
    assert_int_equal (cvr_watch_gaps (watch), 2);

    //  A heartbeat with nothing new under the prefix repairs nothing.
    assert_int_equal (s_register (client, "noise-2", "other", LONG_LEASE), CVR_OK);
    s_forward_heartbeat (xpub, s_server_seq (client));
    assert_null (cvr_watch_next (watch, 300));
    assert_int_equal (cvr_watch_gaps (watch), 2);
    assert_int_equal (cvr_watch_resyncs (watch), 0);

    zsock_destroy (&xpub);
    cvr_watch_destroy (&watch);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_watch_everything_gap (void **state)
{
    //  Watching everything, every seq is ours: a skipped seq is a gap at
    //  once, whatever its root.
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    cvr_watch_t *watch = cvr_watch_new (server.requests, NULL, TIMEOUT);
    assert_non_null (watch);
    cvr_event_t *event = cvr_watch_next (watch, 0);
    assert_string_equal (event->type, "snapshot");
    uint64_t start = event->seq;
    cvr_event_destroy (&event);
    zsock_t *xpub = s_hijack (watch, server.events, "");
    assert_int_equal (s_register (client, "a-1", "a", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "b-1", "b", LONG_LEASE), CVR_OK);
    assert_int_equal (s_register (client, "c-1", "c", LONG_LEASE), CVR_OK);
    cvr_event_list_t *sent = s_history (client, start, NULL);
    assert_int_equal (sent->count, 3);
    s_forward (xpub, sent->items [0]);
    s_forward (xpub, sent->items [2]);      //  b-1 lost; c's prev is 0
    for (size_t i = 0; i < 3; i++) {
        event = cvr_watch_next (watch, 5000);
        assert_non_null (event);
        assert_int_equal (event->seq, sent->items [i]->seq);
        cvr_event_destroy (&event);
    }
    assert_int_equal (cvr_watch_gaps (watch), 1);
    cvr_event_list_destroy (&sent);
    zsock_destroy (&xpub);
    cvr_watch_destroy (&watch);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_watch_compacted (void **state)
{
    //  The server keeps 5 events. The watch is cut off from the live
    //  stream (s_hijack) while 8 are published, then told by a heartbeat
    //  that it is behind: events_since from its snapshot is COMPACTED, so
    //  it must deliver a fresh snapshot and carry on from there.
    s_server_t server;
    s_server_start (&server, NULL, "history", "5", NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    cvr_watch_t *watch = cvr_watch_new (server.requests, "service/cmp/", TIMEOUT);
    assert_non_null (watch);
    cvr_event_t *event = cvr_watch_next (watch, 0);
    assert_string_equal (event->type, "snapshot");
    assert_int_equal (event->services->count, 0);
    cvr_event_destroy (&event);
    zsock_t *xpub = s_hijack (watch, server.events, "service/cmp/");

    char id [32];
    for (int i = 0; i < 8; i++) {
        snprintf (id, sizeof (id), "cmp-%d", i);
        assert_int_equal (s_register (client, id, "cmp", LONG_LEASE), CVR_OK);
    }
    uint64_t latest = s_server_seq (client);
    assert_int_equal (latest, 8);
    cvr_event_list_t *sent = s_history (client, latest - 1, "service/cmp/");
    s_forward_heartbeat (xpub, latest);
    event = cvr_watch_next (watch, 5000);
    assert_non_null (event);
    assert_string_equal (event->type, "snapshot");
    assert_int_equal (event->seq, latest);
    assert_int_equal (event->services->count, 8);
    cvr_event_destroy (&event);
    assert_int_equal (cvr_watch_resyncs (watch), 1);
    assert_int_equal (cvr_watch_gaps (watch), 0);

    //  The last event, arriving late, is covered by the snapshot; the next
    //  one follows it without a gap.
    s_forward (xpub, sent->items [0]);
    assert_null (cvr_watch_next (watch, 200));
    cvr_event_list_destroy (&sent);
    assert_int_equal (cvr_client_deregister (client, "cmp-3"), CVR_OK);
    sent = s_history (client, latest, "service/cmp/");
    assert_int_equal (sent->count, 1);
    s_forward (xpub, sent->items [0]);
    event = cvr_watch_next (watch, 5000);
    assert_non_null (event);
    assert_string_equal (event->type, "deregistered");
    assert_int_equal (event->seq, latest + 1);
    cvr_event_destroy (&event);
    assert_int_equal (cvr_watch_gaps (watch), 0);
    assert_int_equal (cvr_watch_resyncs (watch), 1);
    cvr_event_list_destroy (&sent);

    zsock_destroy (&xpub);
    cvr_watch_destroy (&watch);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_watch_live (void **state)
{
    //  Without any help: the real PUB, a real heartbeat. Whatever the
    //  subscription race does, every event arrives once, in order.
    s_server_t server;
    s_server_start (&server, NULL, NULL);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    cvr_watch_t *watch = cvr_watch_new (server.requests, "service/", TIMEOUT);
    assert_non_null (watch);
    cvr_event_t *event = cvr_watch_next (watch, 0);
    assert_string_equal (event->type, "snapshot");
    uint64_t previous = event->seq;
    cvr_event_destroy (&event);
    char id [32];
    for (int i = 0; i < 50; i++) {
        snprintf (id, sizeof (id), "live-%d", i);
        assert_int_equal (s_register (client, id, i % 2 ? "odd" : "even", LONG_LEASE),
                          CVR_OK);
    }
    for (int i = 0; i < 50; i++) {
        event = cvr_watch_next (watch, 5000);
        assert_non_null (event);
        assert_true (event->seq > previous);
        snprintf (id, sizeof (id), "live-%d", i);
        assert_string_equal (event->service->service_id, id);
        previous = event->seq;
        cvr_event_destroy (&event);
    }
    cvr_watch_destroy (&watch);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (NULL);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_event_decode),
        cmocka_unit_test (test_hello),
        cmocka_unit_test (test_call),
        cmocka_unit_test (test_registry),
        cmocka_unit_test (test_errors),
        cmocka_unit_test (test_timeout),
        cmocka_unit_test (test_stale_replies),
        cmocka_unit_test (test_wildcard_events_endpoint),
        cmocka_unit_test (test_events_since),
        cmocka_unit_test (test_stats),
        cmocka_unit_test (test_registration),
        cmocka_unit_test (test_registration_unreachable),
        cmocka_unit_test (test_watch_order),
        cmocka_unit_test (test_watch_gap),
        cmocka_unit_test (test_watch_everything_gap),
        cmocka_unit_test (test_watch_compacted),
        cmocka_unit_test (test_watch_live),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
