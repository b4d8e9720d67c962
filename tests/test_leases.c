/*  test_leases.c: the lease lifecycle of protocol section 3 on a fake
    clock: cvr_state + cvr_leases, with `now` chosen by the test. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_leases.h"

typedef struct {
    cvr_state_t *state;
    cvr_leases_t *leases;
    cvr_effects_t *effects;
    char log [4096];            //  "type:id" of every command, in order
} lifecycle_t;

static lifecycle_t *
s_new (void)
{
    lifecycle_t *self = (lifecycle_t *) zmalloc (sizeof (lifecycle_t));
    cvr_state_limits_t limits = { .max_services = 1000 };
    self->state = cvr_state_new (&limits);
    self->leases = cvr_leases_new ();
    self->effects = cvr_effects_new ();
    return self;
}

static void
s_destroy (lifecycle_t **self_p)
{
    lifecycle_t *self = *self_p;
    cvr_state_destroy (&self->state);
    cvr_leases_destroy (&self->leases);
    cvr_effects_destroy (&self->effects);
    free (self);
    *self_p = NULL;
}

static cvr_registry_t *
s_registry (lifecycle_t *self)
{
    return cvr_state_registry (self->state);
}

static void
s_register (lifecycle_t *self, const char *id, int64_t lease, int64_t now)
{
    cvr_service_t spec = { .service_id = (char *) id, .service_name = (char *) "orders",
                           .service_type = (char *) "source", .endpoint = (char *) "tcp://x:1",
                           .weight = 100, .lease_ms = lease };
    cvr_cmd_t cmd = { .type = CVR_CMD_REGISTER, .now = now, .service = &spec };
    assert_int_equal (cvr_state_apply (self->state, &cmd, self->effects), CVR_OK);
    cvr_effects_clear (self->effects);
    cvr_leases_renew (self->leases, cvr_registry_lookup (s_registry (self), id));
}

//  A heartbeat as the server handles it: a command only when the health
//  changes, else a touch of soft state; the lease is renewed either way.
static void
s_heartbeat (lifecycle_t *self, const char *id, cvr_health_t health, int64_t now)
{
    const cvr_service_t *service = cvr_registry_lookup (s_registry (self), id);
    assert_non_null (service);
    if (service->health != health) {
        cvr_cmd_t cmd = { .type = CVR_CMD_HEARTBEAT, .now = now, .service_id = id,
                          .health = health };
        assert_int_equal (cvr_state_apply (self->state, &cmd, self->effects), CVR_OK);
        cvr_effects_clear (self->effects);
    }
    else
        cvr_registry_touch (s_registry (self), id, now);
    cvr_leases_renew (self->leases, service);
}

//  One tick at now: applies what is due; returns how many commands ran.
static int
s_tick (lifecycle_t *self, int64_t now)
{
    cvr_cmd_t cmd;
    int count = 0;
    while (cvr_leases_next (self->leases, s_registry (self), now, &cmd)) {
        assert_int_equal (cmd.now, now);
        size_t len = strlen (self->log);
        snprintf (self->log + len, sizeof (self->log) - len, "%s%s:%s",
                  len ? " " : "", cvr_cmd_name (cmd.type), cmd.service_id);
        assert_int_equal (cvr_state_apply (self->state, &cmd, self->effects), CVR_OK);
        cvr_effects_clear (self->effects);
        count++;
    }
    return count;
}

static cvr_health_t
s_health (lifecycle_t *self, const char *id)
{
    const cvr_service_t *service = cvr_registry_lookup (s_registry (self), id);
    return service ? service->health : (cvr_health_t) -1;
}

static void
test_unhealthy_after_one_lease_removed_after_two (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 10000);
    assert_int_equal (s_tick (self, 10999), 0);
    assert_int_equal (s_health (self, "a"), CVR_HEALTH_HEALTHY);
    assert_int_equal (s_tick (self, 11000), 1);
    assert_int_equal (s_health (self, "a"), CVR_HEALTH_UNHEALTHY);
    assert_int_equal (s_tick (self, 11999), 0);
    assert_int_equal (s_tick (self, 12000), 1);
    assert_null (cvr_registry_lookup (s_registry (self), "a"));
    assert_string_equal (self->log, "lapse:a expire:a");
    assert_int_equal (cvr_registry_expired (s_registry (self)), 1);
    assert_int_equal (cvr_leases_size (self->leases), 0);
    s_destroy (&self);
}

static void
test_heartbeats_keep_the_lease (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 0);
    for (int64_t t = 900; t <= 9900; t += 900) {
        assert_int_equal (s_tick (self, t), 0);
        s_heartbeat (self, "a", CVR_HEALTH_HEALTHY, t);
    }
    assert_int_equal (s_tick (self, 10899), 0);
    assert_int_equal (s_health (self, "a"), CVR_HEALTH_HEALTHY);
    assert_int_equal (s_tick (self, 10900), 1);
    assert_string_equal (self->log, "lapse:a");
    s_destroy (&self);
}

static void
test_heartbeat_restores_an_unhealthy_service (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 0);
    assert_int_equal (s_tick (self, 1500), 1);
    assert_int_equal (s_health (self, "a"), CVR_HEALTH_UNHEALTHY);
    s_heartbeat (self, "a", CVR_HEALTH_HEALTHY, 1600);
    assert_int_equal (s_health (self, "a"), CVR_HEALTH_HEALTHY);
    //  The old expiry (t=2000) no longer applies: the lease restarts at 1600.
    assert_int_equal (s_tick (self, 2000), 0);
    assert_int_equal (s_tick (self, 2599), 0);
    assert_int_equal (s_tick (self, 2600), 1);
    assert_int_equal (s_tick (self, 3600), 1);
    assert_string_equal (self->log, "lapse:a lapse:a expire:a");
    s_destroy (&self);
}

static void
test_reported_unhealthy_lapses_silently_then_expires (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 0);
    s_heartbeat (self, "a", CVR_HEALTH_UNHEALTHY, 100);
    //  Already unhealthy at its lease: no command, only the expiry.
    assert_int_equal (s_tick (self, 1100), 0);
    assert_int_equal (s_tick (self, 2100), 1);
    assert_string_equal (self->log, "expire:a");
    s_destroy (&self);
}

static void
test_late_tick_expires_at_once (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 0);
    //  A tick long after both deadlines: straight to expired.
    assert_int_equal (s_tick (self, 5000), 1);
    assert_string_equal (self->log, "expire:a");
    s_destroy (&self);
}

static void
test_deregistered_service_leaves_no_transition (void **state)
{
    lifecycle_t *self = s_new ();
    s_register (self, "a", 1000, 0);
    s_register (self, "b", 1000, 0);
    cvr_cmd_t cmd = { .type = CVR_CMD_DEREGISTER, .now = 10, .service_id = "a" };
    assert_int_equal (cvr_state_apply (self->state, &cmd, self->effects), CVR_OK);
    cvr_effects_clear (self->effects);
    cvr_leases_forget (self->leases, "a");
    assert_int_equal (s_tick (self, 1000), 1);
    assert_string_equal (self->log, "lapse:b");
    s_destroy (&self);
}

//  With 10,000 services on long leases and 10 on short ones, ticks find
//  and move exactly the 10 (the heap's order is what makes that cheap:
//  cvr_leases_next stops at the first deadline that is not due).
static void
test_tick_costs_what_expires (void **state)
{
    lifecycle_t *self = s_new ();
    cvr_state_destroy (&self->state);
    cvr_state_limits_t limits = { .max_services = 20000 };
    self->state = cvr_state_new (&limits);
    char id [32];
    for (int i = 0; i < 10000; i++) {
        snprintf (id, sizeof (id), "long-%d", i);
        s_register (self, id, 600000, 0);
    }
    for (int i = 0; i < 10; i++) {
        snprintf (id, sizeof (id), "short-%d", i);
        s_register (self, id, 1000 + i, 0);
    }
    assert_int_equal (s_tick (self, 1009), 10);
    assert_int_equal (s_tick (self, 1500), 0);
    assert_int_equal (cvr_leases_size (self->leases), 10010);
    assert_int_equal (s_tick (self, 2018), 10);
    assert_int_equal (cvr_leases_size (self->leases), 10000);
    assert_int_equal (cvr_registry_size (s_registry (self)), 10000);
    s_destroy (&self);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_unhealthy_after_one_lease_removed_after_two),
        cmocka_unit_test (test_heartbeats_keep_the_lease),
        cmocka_unit_test (test_heartbeat_restores_an_unhealthy_service),
        cmocka_unit_test (test_reported_unhealthy_lapses_silently_then_expires),
        cmocka_unit_test (test_late_tick_expires_at_once),
        cmocka_unit_test (test_deregistered_service_leaves_no_transition),
        cmocka_unit_test (test_tick_costs_what_expires),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
