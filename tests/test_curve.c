/*  test_curve.c: CurveZMQ on both sockets. An allowed client works on the
    request and the event socket; a client with an unknown key, a plaintext
    client and a client with the wrong server key get nothing (no reply,
    no event) and change nothing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "conveyor/conveyor.h"

#define WAIT_MS 3000
#define DENIED_MS 700           //  how long a refused client waits in vain

typedef struct {
    char dir [256];             //  temporary directory of the certificates
    char clients [300];         //  allowed public certificates
    char server_secret [300], server_public [300];
    char alice [300], mallory [300], other_server [300];
    zactor_t *server;
    char *requests, *events;
} fixture_t;

static void
s_keypair (const char *dir, const char *name, char *secret_out, char *public_out)
{
    zcert_t *cert = zcert_new ();
    char path [200];
    snprintf (path, sizeof (path), "%.150s/%.40s.cert", dir, name);
    assert_int_equal (zcert_save (cert, path), 0);
    if (public_out)
        snprintf (public_out, 300, "%s", path);
    snprintf (secret_out, 300, "%s_secret", path);
    zcert_destroy (&cert);
}

static int
s_setup (void **state)
{
    fixture_t *self = (fixture_t *) zmalloc (sizeof (fixture_t));
    snprintf (self->dir, sizeof (self->dir), "/tmp/cvr-curve-%d", getpid ());
    snprintf (self->clients, sizeof (self->clients), "%s/clients", self->dir);
    zsys_dir_create ("%s", self->clients);
    s_keypair (self->dir, "server", self->server_secret, self->server_public);
    s_keypair (self->dir, "alice", self->alice, NULL);
    s_keypair (self->dir, "mallory", self->mallory, NULL);
    s_keypair (self->dir, "other-server", self->other_server, NULL);
    //  Only alice's public certificate is allowed in.
    zcert_t *alice = zcert_load (self->alice);
    char allowed [400];
    snprintf (allowed, sizeof (allowed), "%s/alice.cert", self->clients);
    zcert_save_public (alice, allowed);
    zcert_destroy (&alice);

    self->server = zactor_new (cvr_server, "curve-test");
    const char *commands [][3] = {
        { "SET", "log-level", "warn" }, { "SET", "curve-secret", self->server_secret },
        { "SET", "curve-clients", self->clients }, { "BIND", "tcp://127.0.0.1:*", NULL },
        { "PUBLISH", "tcp://127.0.0.1:*", NULL }, { "START", NULL, NULL }
    };
    for (size_t i = 0; i < sizeof (commands) / sizeof (commands [0]); i++) {
        zstr_sendx (self->server, commands [i][0], commands [i][1], commands [i][2], NULL);
        char *status = zstr_recv (self->server);
        assert_string_equal (status, "0");
        zstr_free (&status);
    }
    zstr_sendx (self->server, "ENDPOINTS", NULL);
    zstr_recvx (self->server, &self->requests, &self->events, NULL);
    *state = self;
    return 0;
}

static int
s_teardown (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    zactor_destroy (&self->server);
    zstr_free (&self->requests);
    zstr_free (&self->events);
    zdir_t *dir = zdir_new (self->dir, NULL);
    if (dir)
        zdir_remove (dir, true);
    zdir_destroy (&dir);
    free (self);
    return 0;
}

static cvr_service_spec_t s_spec = {
    .service_id = "svc-1", .service_name = "orders", .service_type = "source",
    .endpoint = "tcp://127.0.0.1:1", .weight = -1, .lease_ms = 60000
};

//  Nothing arrives on sub within DENIED_MS.
static void
s_assert_silent (zsock_t *sub)
{
    zsock_set_rcvtimeo (sub, DENIED_MS);
    char *topic = zstr_recv (sub);
    if (topic)
        fail_msg ("a refused subscriber received '%s'", topic);
}

static void
test_allowed_client_uses_both_sockets (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    cvr_security_t *security = cvr_security_new (self->server_public, self->alice);
    assert_non_null (security);
    cvr_watch_t *watch = cvr_watch_new_secure (self->requests, "service/", WAIT_MS, security);
    assert_non_null (watch);
    cvr_event_t *event = cvr_watch_next (watch, WAIT_MS);
    assert_non_null (event);
    assert_string_equal (event->type, "snapshot");
    cvr_event_destroy (&event);
    cvr_client_t *client = cvr_client_new_secure (self->requests, WAIT_MS, security);
    assert_int_equal (cvr_client_register (client, &s_spec, NULL, NULL), CVR_OK);
    //  The event comes over the encrypted PUB socket.
    event = cvr_watch_next (watch, WAIT_MS);
    assert_non_null (event);
    assert_string_equal (event->topic, "service/orders/registered");
    cvr_event_destroy (&event);
    assert_int_equal (cvr_client_deregister (client, "svc-1"), CVR_OK);
    cvr_client_destroy (&client);
    cvr_watch_destroy (&watch);
    cvr_security_destroy (&security);
}

static void
test_strangers_get_nothing_and_change_nothing (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    cvr_security_t *alice = cvr_security_new (self->server_public, self->alice);
    cvr_security_t *mallory = cvr_security_new (self->server_public, self->mallory);
    //  alice's own key, but another server's key: the handshake fails.
    cvr_security_t *wrong_server = cvr_security_new (self->other_server, self->alice);
    assert_non_null (alice);
    assert_non_null (mallory);
    assert_non_null (wrong_server);
    cvr_client_t *ok = cvr_client_new_secure (self->requests, WAIT_MS, alice);
    uint64_t seq_before;
    cvr_hello_t hello = { 0 };
    assert_int_equal (cvr_client_hello (ok, &hello), CVR_OK);
    seq_before = hello.seq;
    cvr_hello_clear (&hello);

    const cvr_security_t *strangers [] = { mallory, NULL, wrong_server };
    const char *names [] = { "unknown key", "plaintext", "wrong server key" };
    for (int i = 0; i < 3; i++) {
        //  Its subscriber hears nothing of what alice does...
        zsock_t *sub = zsock_new (ZMQ_SUB);
        cvr_security_apply (strangers [i], sub);
        zsock_set_subscribe (sub, "");
        assert_int_equal (zsock_connect (sub, "%s", self->events), 0);
        //  ...and its requests are never answered, nor acted on.
        cvr_client_t *client = cvr_client_new_secure (self->requests, DENIED_MS, strangers [i]);
        cvr_err_t rc = cvr_client_register (client, &s_spec, NULL, NULL);
        if (rc != CVR_TIMEOUT)
            fail_msg ("%s: register answered %s", names [i], cvr_err_name (rc));
        cvr_client_destroy (&client);
        assert_int_equal (cvr_client_register (ok, &s_spec, NULL, NULL), CVR_OK);
        assert_int_equal (cvr_client_deregister (ok, "svc-1"), CVR_OK);
        s_assert_silent (sub);
        zsock_destroy (&sub);
    }
    //  The only changes are alice's: two events per round.
    assert_int_equal (cvr_client_hello (ok, &hello), CVR_OK);
    assert_int_equal (hello.seq, seq_before + 6);
    cvr_hello_clear (&hello);
    cvr_service_t *service = NULL;
    assert_int_equal (cvr_client_get_service (ok, "svc-1", &service, NULL), CVR_NOT_FOUND);
    cvr_client_destroy (&ok);
    cvr_security_destroy (&alice);
    cvr_security_destroy (&mallory);
    cvr_security_destroy (&wrong_server);
}

static void
test_bad_credentials_are_refused_at_once (void **state)
{
    fixture_t *self = (fixture_t *) *state;
    //  A public certificate cannot authenticate: the secret half is needed.
    char public_only [400];
    snprintf (public_only, sizeof (public_only), "%s/clients/alice.cert", self->dir);
    assert_null (cvr_security_new (self->server_public, public_only));
    assert_null (cvr_security_new (self->server_public, "/nonexistent/cert"));
    assert_null (cvr_security_new ("/nonexistent/server.cert", self->alice));
    //  Forty characters that are not Z85: refused, not an assertion in czmq.
    assert_null (cvr_security_new ("~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~", self->alice));
    //  A Z85 key works as well as a certificate file.
    zcert_t *server = zcert_load (self->server_public);
    cvr_security_t *by_key = cvr_security_new (zcert_public_txt (server), self->alice);
    assert_non_null (by_key);
    assert_string_equal (cvr_security_server_key (by_key), zcert_public_txt (server));
    zcert_destroy (&server);
    cvr_security_destroy (&by_key);
    //  The server refuses half a configuration.
    zactor_t *half = zactor_new (cvr_server, NULL);
    zstr_sendx (half, "SET", "curve-secret", self->server_secret, NULL);
    char *status = zstr_recv (half);
    assert_string_equal (status, "0");
    zstr_free (&status);
    zstr_sendx (half, "BIND", "tcp://127.0.0.1:*", NULL);
    status = zstr_recv (half);
    zstr_free (&status);
    zstr_sendx (half, "START", NULL);
    status = zstr_recv (half);
    assert_non_null (strstr (status, "go together"));
    zstr_free (&status);
    zactor_destroy (&half);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_allowed_client_uses_both_sockets, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_strangers_get_nothing_and_change_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_bad_credentials_are_refused_at_once, s_setup, s_teardown),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
