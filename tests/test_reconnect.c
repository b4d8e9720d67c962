/*  test_reconnect.c: the daemon restarts (without durable state) under a
    running registration, watch and member; each finds its way back by
    itself: the registration registers again, the watch takes a new
    snapshot, the member joins again. Fixed ipc:// endpoints (unique per
    process) so the new server is where the old one was. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "conveyor/conveyor.h"

#define WAIT_MS 8000

static zactor_t *
s_server (const char *requests, const char *events)
{
    zactor_t *server = zactor_new (cvr_server, "reconnect-test");
    const char *commands [][3] = {
        { "SET", "log-level", "warn" }, { "SET", "min-lease-ms", "100" },
        { "BIND", requests, NULL }, { "PUBLISH", events, NULL }, { "START", NULL, NULL }
    };
    for (size_t i = 0; i < 5; i++) {
        zstr_sendx (server, commands [i][0], commands [i][1], commands [i][2], NULL);
        char *status = zstr_recv (server);
        assert_string_equal (status, "0");
        zstr_free (&status);
    }
    return server;
}

typedef struct {
    int reregistered;
    int assigned;
    int revoked;
} counts_t;

static void
s_on_registration (cvr_registration_event_t event, cvr_health_t health, void *arg)
{
    if (event == CVR_REGISTRATION_REREGISTERED)
        __atomic_add_fetch (&((counts_t *) arg)->reregistered, 1, __ATOMIC_SEQ_CST);
}

static void
s_on_assigned (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    __atomic_add_fetch (&((counts_t *) arg)->assigned, 1, __ATOMIC_SEQ_CST);
}

static void
s_on_revoked (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    __atomic_add_fetch (&((counts_t *) arg)->revoked, 1, __ATOMIC_SEQ_CST);
}

static int
s_load (int *value)
{
    return __atomic_load_n (value, __ATOMIC_SEQ_CST);
}

//  Waits (bounded) for the watch to deliver an event of that type.
static cvr_event_t *
s_wait_event (cvr_watch_t *watch, const char *type)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (zclock_mono () < deadline) {
        cvr_event_t *event = cvr_watch_next (watch, 200);
        if (event && streq (event->type, type))
            return event;
        cvr_event_destroy (&event);
    }
    fail_msg ("no '%s' event within %d ms", type, WAIT_MS);
    return NULL;
}

static void
test_clients_survive_a_restart (void **state)
{
    char requests [128], events [128];
    snprintf (requests, sizeof (requests), "ipc:///tmp/cvr-reconnect-req-%d", getpid ());
    snprintf (events, sizeof (events), "ipc:///tmp/cvr-reconnect-pub-%d", getpid ());
    zactor_t *server = s_server (requests, events);
    counts_t counts = { 0 };

    cvr_service_spec_t spec = { .service_id = "svc", .service_name = "orders",
                                .service_type = "source", .endpoint = "tcp://x:1",
                                .weight = -1, .lease_ms = 600 };
    cvr_registration_t *registration = cvr_registration_new (
        requests, &spec, 500, s_on_registration, &counts, NULL);
    assert_non_null (registration);
    cvr_watch_t *watch = cvr_watch_new (requests, "service/", 500);
    assert_non_null (watch);
    cvr_event_t *event = s_wait_event (watch, "snapshot");
    cvr_event_destroy (&event);
    const char *topics [] = { "events" };
    cvr_member_config_t config = {
        .group_id = "g", .topics = topics, .topics_count = 1, .session_timeout_ms = 600,
        .timeout_ms = 500, .on_assigned = s_on_assigned, .on_revoked = s_on_revoked,
        .arg = &counts
    };
    cvr_member_t *member = cvr_member_new (requests, &config, NULL);
    assert_non_null (member);
    assert_int_equal (s_load (&counts.assigned), 1);
    //  Push the old server's seq well above what the new one will reach
    //  soon, so the watch sees the numbering go back.
    cvr_client_t *client = cvr_client_new (requests, 1000);
    for (int i = 0; i < 20; i++) {
        char id [16];
        snprintf (id, sizeof (id), "churn-%d", i);
        cvr_service_spec_t churn = spec;
        churn.service_id = id;
        assert_int_equal (cvr_client_register (client, &churn, NULL, NULL), CVR_OK);
        assert_int_equal (cvr_client_deregister (client, id), CVR_OK);
    }
    cvr_client_destroy (&client);

    //  Restart: a fresh server (no state) at the same endpoints.
    zactor_destroy (&server);
    server = s_server (requests, events);

    //  The registration notices (NOT_FOUND) and registers again.
    client = cvr_client_new (requests, 1000);
    int64_t deadline = zclock_mono () + WAIT_MS;
    cvr_service_t *service = NULL;
    while (cvr_client_get_service (client, "svc", &service, NULL) != CVR_OK) {
        assert_true (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    cvr_service_destroy (&service);
    assert_true (s_load (&counts.reregistered) >= 1);
    //  The watch takes a new snapshot from the new server.
    event = s_wait_event (watch, "snapshot");
    assert_true (event->seq < 40);
    cvr_event_destroy (&event);
    //  The member revokes what it had and joins again.
    deadline = zclock_mono () + WAIT_MS;
    while (s_load (&counts.assigned) < 2 || s_load (&counts.revoked) < 1) {
        assert_true (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    cvr_group_t *group = NULL;
    assert_int_equal (cvr_client_get_group (client, "g", &group, NULL), CVR_OK);
    assert_int_equal (group->members_count, 1);
    cvr_group_destroy (&group);

    cvr_client_destroy (&client);
    cvr_member_destroy (&member);
    cvr_watch_destroy (&watch);
    cvr_registration_destroy (&registration);
    zactor_destroy (&server);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_clients_survive_a_restart),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
