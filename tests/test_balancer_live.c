/*  test_balancer_live.c: a cvr_balancer fed by a cvr_watch tracks the
    registry of a real server: weights, health changes and removals. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "conveyor/conveyor.h"

#define WAIT_MS 5000

static zactor_t *
s_server (char **endpoint)
{
    zactor_t *server = zactor_new (cvr_server, "balancer-test");
    const char *commands [][3] = {
        { "SET", "log-level", "warn" }, { "BIND", "tcp://127.0.0.1:*", NULL },
        { "PUBLISH", "tcp://127.0.0.1:*", NULL }, { "START", NULL, NULL }
    };
    for (size_t i = 0; i < 4; i++) {
        zstr_sendx (server, commands [i][0], commands [i][1], commands [i][2], NULL);
        char *status = zstr_recv (server);
        assert_string_equal (status, "0");
        zstr_free (&status);
    }
    char *events;
    zstr_sendx (server, "ENDPOINTS", NULL);
    zstr_recvx (server, endpoint, &events, NULL);
    zstr_free (&events);
    return server;
}

//  Feeds the balancer from the watch until cond holds (bounded).
typedef bool (s_cond_fn) (cvr_balancer_t *balancer, void *arg);

static void
s_pump_until (cvr_watch_t *watch, cvr_balancer_t *balancer, s_cond_fn *cond,
              void *arg)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (!cond (balancer, arg)) {
        int64_t left = deadline - zclock_mono ();
        if (left <= 0)
            fail_msg ("the balancer did not reach the expected state in time");
        cvr_event_t *event = cvr_watch_next (watch, (int) left);
        if (event) {
            cvr_balancer_apply (balancer, event);
            cvr_event_destroy (&event);
        }
    }
}

static bool
s_has_size (cvr_balancer_t *balancer, void *arg)
{
    return cvr_balancer_size (balancer) == (size_t) (uintptr_t) arg;
}

//  True once every pick goes to the service named by arg.
static bool
s_only_picks (cvr_balancer_t *balancer, void *arg)
{
    for (int i = 0; i < 8; i++) {
        const cvr_service_t *picked = cvr_balancer_pick (balancer);
        if (!picked || !streq (picked->service_id, (const char *) arg))
            return false;
    }
    return true;
}

static void
s_register (cvr_client_t *client, const char *id, const char *name, int64_t weight)
{
    cvr_service_spec_t spec = { .service_id = id, .service_name = name,
                                .service_type = "transform", .endpoint = "tcp://127.0.0.1:1",
                                .weight = weight, .lease_ms = 60000 };
    assert_int_equal (cvr_client_register (client, &spec, NULL, NULL), CVR_OK);
}

static void
test_balancer_tracks_registry (void **state)
{
    char *endpoint;
    zactor_t *server = s_server (&endpoint);
    cvr_client_t *client = cvr_client_new (endpoint, WAIT_MS);
    //  One service exists before the watch: it arrives with the snapshot.
    s_register (client, "enrich-a", "enrich", 100);
    s_register (client, "other-1", "other", 100);
    cvr_watch_t *watch = cvr_watch_new (endpoint, "service/enrich/", WAIT_MS);
    assert_non_null (watch);
    cvr_balancer_t *balancer = cvr_balancer_new (CVR_BALANCE_WEIGHTED, "enrich");
    s_pump_until (watch, balancer, s_has_size, (void *) (uintptr_t) 1);
    s_register (client, "enrich-b", "enrich", 300);
    s_pump_until (watch, balancer, s_has_size, (void *) (uintptr_t) 2);

    //  Shares follow the weights: 1 to 3 over 4,000 picks, exactly, as
    //  smooth weighted round-robin repeats every total-weight picks.
    int a = 0, b = 0;
    for (int i = 0; i < 4000; i++) {
        const cvr_service_t *picked = cvr_balancer_pick (balancer);
        assert_non_null (picked);
        if (streq (picked->service_id, "enrich-a"))
            a++;
        else
            b++;
    }
    assert_int_equal (a, 1000);
    assert_int_equal (b, 3000);

    //  enrich-b reports degraded: only enrich-a is picked once that arrives.
    assert_int_equal (cvr_client_heartbeat (client, "enrich-b", CVR_HEALTH_DEGRADED,
                                            NULL, NULL), CVR_OK);
    s_pump_until (watch, balancer, s_only_picks, (void *) "enrich-a");
    //  enrich-a leaves: the degraded one is the fallback.
    assert_int_equal (cvr_client_deregister (client, "enrich-a"), CVR_OK);
    s_pump_until (watch, balancer, s_only_picks, (void *) "enrich-b");
    //  enrich-b turns unhealthy: nothing can be picked.
    assert_int_equal (cvr_client_heartbeat (client, "enrich-b", CVR_HEALTH_UNHEALTHY,
                                            NULL, NULL), CVR_OK);
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (cvr_balancer_pick (balancer)) {
        assert_true (zclock_mono () < deadline);
        cvr_event_t *event = cvr_watch_next (watch, 100);
        if (event) {
            cvr_balancer_apply (balancer, event);
            cvr_event_destroy (&event);
        }
    }
    //  other-1 never entered the balancer (name filter).
    assert_int_equal (cvr_balancer_size (balancer), 1);

    cvr_balancer_destroy (&balancer);
    cvr_watch_destroy (&watch);
    cvr_client_destroy (&client);
    zactor_destroy (&server);
    zstr_free (&endpoint);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_balancer_tracks_registry),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
