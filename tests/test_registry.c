/*  test_registry.c: the services part of the state, driven through
    cvr_state_apply with explicit `now` values: registration and upsert,
    renames, health, removal, limits, queries over the indexes, and the
    determinism the log relies on. Every test runs twice: on an indexed
    registry (the server's) and on an unindexed one (the raft thread's
    committed state), whose queries scan and must give the same answers.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include "cvr_state.h"

//  --------------------------------------------------------------------------
//  Helpers

//  A service spec owned by the test; free with cvr_service_destroy.
//  labels: "k=v" strings, NULL-terminated.
static cvr_service_t *
s_spec (const char *id, const char *name, const char *type, const char *group_id,
        const char **labels)
{
    cvr_service_t *s = (cvr_service_t *) zmalloc (sizeof (cvr_service_t));
    s->service_id = strdup (id);
    s->service_name = strdup (name);
    s->service_type = strdup (type);
    char endpoint [128];
    snprintf (endpoint, sizeof endpoint, "tcp://10.0.0.1:%zu", strlen (id) + 9000);
    s->endpoint = strdup (endpoint);
    s->group_id = group_id ? strdup (group_id) : NULL;
    size_t n = 0;
    while (labels && labels [n])
        n++;
    if (n) {
        s->labels = (cvr_label_t *) zmalloc (n * sizeof (cvr_label_t));
        for (size_t i = 0; i < n; i++) {
            const char *eq = strchr (labels [i], '=');
            assert_non_null (eq);
            s->labels [i].key = strndup (labels [i], (size_t) (eq - labels [i]));
            s->labels [i].value = strdup (eq + 1);
        }
        s->labels_count = n;
    }
    s->weight = 100;
    s->lease_ms = 10000;
    //  These must be ignored by register.
    s->health = CVR_HEALTH_UNHEALTHY;
    s->revision = 99;
    s->registered_at = -1;
    s->last_heartbeat_at = -1;
    return s;
}

static void
s_set_str (char **field, const char *value)
{
    free (*field);
    *field = value ? strdup (value) : NULL;
}

static cvr_err_t
s_register (cvr_state_t *state, const cvr_service_t *spec, int64_t now,
            cvr_effects_t *effects)
{
    cvr_cmd_t cmd = { .type = CVR_CMD_REGISTER, .now = now, .service = spec };
    return cvr_state_apply (state, &cmd, effects);
}

static cvr_err_t
s_command (cvr_state_t *state, cvr_cmd_type_t type, const char *id,
           cvr_health_t health, int64_t now, cvr_effects_t *effects)
{
    cvr_cmd_t cmd = { .type = type, .now = now, .service_id = id, .health = health };
    return cvr_state_apply (state, &cmd, effects);
}

//  One event, decoded. The body writer is closed here (the history would
//  close it) and decoded; the bytes are kept for determinism checks.
typedef struct {
    char *topic;
    char *root;
    uint8_t *bytes;
    size_t size;
    cvr_msg_t *msg;
    const msgpack_object *body;
    cvr_service_t *service;         //  the record in the body
} s_event_t;

typedef struct {
    s_event_t items [16];
    size_t count;
} s_events_t;

//  Takes every event out of effects (then clears it).
static void
s_take (cvr_effects_t *effects, s_events_t *events)
{
    memset (events, 0, sizeof *events);
    events->count = cvr_effects_size (effects);
    assert_true (events->count <= 16);
    for (size_t i = 0; i < events->count; i++) {
        s_event_t *event = &events->items [i];
        cvr_wr_t *w = cvr_effects_body (effects, i);
        assert_non_null (w);
        assert_int_equal (cvr_wr_depth (w), 1);     //  left open for history
        cvr_wr_close (w);
        event->topic = strdup (cvr_effects_topic (effects, i));
        event->root = strdup (cvr_effects_root (effects, i));
        event->size = cvr_wr_size (w);
        event->bytes = (uint8_t *) malloc (event->size);
        memcpy (event->bytes, cvr_wr_data (w), event->size);
        event->msg = cvr_msg_decode (event->bytes, event->size);
        assert_non_null (event->msg);
        event->body = cvr_msg_root (event->msg);
        assert_true (cvr_obj_is_str_map (event->body));
        event->service = cvr_proto_read_service (cvr_obj_get (event->body, "service"));
        assert_non_null (event->service);
    }
    assert_null (cvr_effects_topic (effects, events->count));
    cvr_effects_clear (effects);
    assert_int_equal (cvr_effects_size (effects), 0);
}

static void
s_events_free (s_events_t *events)
{
    for (size_t i = 0; i < events->count; i++) {
        s_event_t *event = &events->items [i];
        free (event->topic);
        free (event->root);
        free (event->bytes);
        cvr_msg_destroy (&event->msg);
        cvr_service_destroy (&event->service);
    }
    events->count = 0;
}

//  Checks one event's topic, root, type and at.
static void
s_assert_event (const s_event_t *event, const char *name, const char *type, int64_t at)
{
    char expect [256];
    snprintf (expect, sizeof expect, "service/%s", name);
    assert_string_equal (event->root, expect);
    snprintf (expect, sizeof expect, "service/%s/%s", name, type);
    assert_string_equal (event->topic, expect);
    assert_true (cvr_obj_streq (cvr_obj_get (event->body, "type"), type));
    assert_int_equal (cvr_obj_get_int (event->body, "at", -1), at);
    assert_string_equal (event->service->service_name, name);
}

//  Checks that effects holds nothing.
static void
s_assert_no_events (cvr_effects_t *effects)
{
    assert_int_equal (cvr_effects_size (effects), 0);
}

//  Queries and returns the ids joined with ",", e.g. "a,b,c" (caller frees).
static char *
s_query (cvr_state_t *state, const cvr_service_filter_t *filter)
{
    size_t count = 99;
    const cvr_service_t **found = cvr_registry_query (cvr_state_registry (state),
                                                      filter, &count);
    assert_non_null (found);
    char *ids = strdup ("");
    for (size_t i = 0; i < count; i++) {
        if (i)
            assert_true (strcmp (found [i - 1]->service_id, found [i]->service_id) < 0);
        char *more = zsys_sprintf ("%s%s%s", ids, i ? "," : "", found [i]->service_id);
        free (ids);
        ids = more;
    }
    free (found);
    return ids;
}

#define ASSERT_QUERY(state, filter, expect) do { \
    char *ids_ = s_query ((state), (filter)); \
    if (!streq (ids_, (expect))) \
        fail_msg ("line %d: query gave \"%s\", expected \"%s\"", __LINE__, ids_, (expect)); \
    free (ids_); \
} while (0)

//  Registers services that match none of the tests' filters, so that an
//  index set is smaller than the whole registry and queries go through it
//  (a stale index entry then shows).
static void
s_bystanders (cvr_state_t *state, cvr_effects_t *effects)
{
    const char *ids [] = { "x1", "x2", "x3" };
    for (int i = 0; i < 3; i++) {
        cvr_service_t *spec = s_spec (ids [i], "other", "sink", "gx",
                                      (const char *[]) { "zone=xx", NULL });
        assert_int_equal (s_register (state, spec, 1, effects), CVR_OK);
        cvr_service_destroy (&spec);
    }
    cvr_effects_clear (effects);
}

//  Which registries the group of tests running builds (set by its setup).
static bool s_unindexed = false;

static int
s_indexed_group (void **unused)
{
    s_unindexed = false;
    return 0;
}

static int
s_unindexed_group (void **unused)
{
    s_unindexed = true;
    return 0;
}

static cvr_state_t *
s_state (size_t max_services)
{
    cvr_state_limits_t limits = { .max_services = max_services, .unindexed = s_unindexed };
    cvr_state_t *state = cvr_state_new (&limits);
    assert_non_null (state);
    return state;
}

//  --------------------------------------------------------------------------
//  Registration

static void
test_register_new (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    const char *labels [] = { "zone=eu", "tier=gold", "arch=arm", NULL };
    cvr_service_t *spec = s_spec ("orders-1", "orders", "source", "g1", labels);
    assert_int_equal (s_register (state, spec, 1000, effects), CVR_OK);

    s_events_t ev;
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "registered", 1000);
    const cvr_service_t *pub = ev.items [0].service;
    assert_string_equal (pub->service_id, "orders-1");
    assert_int_equal (pub->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (pub->revision, 1);
    assert_int_equal (pub->registered_at, 1000);
    assert_int_equal (pub->last_heartbeat_at, 1000);
    assert_int_equal (pub->lease_ms, 10000);
    assert_int_equal (pub->weight, 100);
    assert_string_equal (pub->group_id, "g1");
    assert_int_equal (pub->labels_count, 3);
    s_events_free (&ev);

    cvr_registry_t *registry = cvr_state_registry (state);
    assert_int_equal (cvr_registry_size (registry), 1);
    const cvr_service_t *rec = cvr_registry_lookup (registry, "orders-1");
    assert_non_null (rec);
    assert_ptr_not_equal (rec, spec);           //  a copy
    assert_int_equal (rec->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (rec->revision, 1);
    assert_int_equal (rec->registered_at, 1000);
    assert_int_equal (rec->last_heartbeat_at, 1000);
    assert_string_equal (rec->endpoint, spec->endpoint);
    assert_string_equal (rec->service_type, "source");
    //  Labels are kept sorted by key.
    assert_string_equal (rec->labels [0].key, "arch");
    assert_string_equal (rec->labels [1].key, "tier");
    assert_string_equal (rec->labels [2].key, "zone");
    assert_string_equal (rec->labels [2].value, "eu");
    //  The spec is copied, not kept.
    cvr_service_destroy (&spec);
    assert_string_equal (cvr_registry_lookup (registry, "orders-1")->service_name, "orders");
    assert_null (cvr_registry_lookup (registry, "orders-2"));
    assert_int_equal (cvr_registry_expired (registry), 0);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
    assert_null (state);
}

static void
test_reregister_identical (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    const char *labels [] = { "zone=eu", "tier=a", NULL };
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", NULL, labels);
    assert_int_equal (s_register (state, spec, 1000, effects), CVR_OK);
    cvr_effects_clear (effects);
    //  Even with the record's ignored fields changed in the spec.
    spec->revision = 5;
    spec->health = CVR_HEALTH_DEGRADED;
    spec->registered_at = 7;
    assert_int_equal (s_register (state, spec, 2500, effects), CVR_OK);
    s_assert_no_events (effects);
    const cvr_service_t *rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
    assert_int_equal (rec->revision, 1);
    assert_int_equal (rec->registered_at, 1000);
    assert_int_equal (rec->last_heartbeat_at, 2500);
    assert_int_equal (rec->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (cvr_registry_size (cvr_state_registry (state)), 1);
    //  Labels in another order are the same labels.
    cvr_service_t *spec2 = s_spec ("s1", "orders", "sink", NULL,
                                   (const char *[]) { "tier=a", "zone=eu", NULL });
    assert_int_equal (s_register (state, spec2, 2600, effects), CVR_OK);
    s_assert_no_events (effects);
    cvr_service_destroy (&spec2);
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  Each kind of change makes one `updated` with revision + 1.
static void
test_reregister_changed (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    const char *labels [] = { "b=2", "a=1", NULL };
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", "g1", labels);
    s_bystanders (state, effects);
    assert_int_equal (s_register (state, spec, 1000, effects), CVR_OK);
    cvr_effects_clear (effects);
    int64_t now = 1000;
    int64_t revision = 1;
    for (int change = 0; change < 9; change++) {
        switch (change) {
            case 0: s_set_str (&spec->endpoint, "tcp://10.9.9.9:1"); break;
            case 1: s_set_str (&spec->labels [0].value, "3"); break;     //  b=3
            case 2: spec->weight = 5; break;
            case 3: spec->lease_ms = 20000; break;
            case 4: s_set_str (&spec->service_type, "source"); break;
            case 5: s_set_str (&spec->group_id, NULL); break;
            case 6: s_set_str (&spec->group_id, "g2"); break;
            case 7: s_set_str (&spec->labels [1].key, "c"); break;       //  a=1 -> c=1
            case 8:                                                      //  drop a label
                free (spec->labels [1].key);
                free (spec->labels [1].value);
                spec->labels_count = 1;
                break;
        }
        now += 100;
        assert_int_equal (s_register (state, spec, now, effects), CVR_OK);
        s_events_t ev;
        s_take (effects, &ev);
        if (ev.count != 1)
            fail_msg ("change %d: %zu events", change, ev.count);
        s_assert_event (&ev.items [0], "orders", "updated", now);
        revision++;
        const cvr_service_t *pub = ev.items [0].service;
        assert_int_equal (pub->revision, revision);
        assert_int_equal (pub->registered_at, 1000);     //  kept
        assert_int_equal (pub->last_heartbeat_at, now);
        assert_string_equal (pub->endpoint, "tcp://10.9.9.9:1");
        s_events_free (&ev);
        const cvr_service_t *rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
        assert_int_equal (rec->revision, revision);
        assert_int_equal (rec->registered_at, 1000);
        //  Re-registering the same again changes nothing.
        assert_int_equal (s_register (state, spec, now + 1, effects), CVR_OK);
        s_assert_no_events (effects);
        assert_int_equal (cvr_registry_lookup (cvr_state_registry (state), "s1")->revision,
                          revision);
    }
    //  The indexes followed every change.
    cvr_service_filter_t by_group = { .group_id = "g2" };
    ASSERT_QUERY (state, &by_group, "s1");
    by_group.group_id = "g1";
    ASSERT_QUERY (state, &by_group, "");
    cvr_label_t old_label = { "b", "2" }, new_label = { "b", "3" }, gone = { "c", "1" };
    cvr_service_filter_t by_label = { .labels = &old_label, .labels_count = 1 };
    ASSERT_QUERY (state, &by_label, "");
    by_label.labels = &new_label;
    ASSERT_QUERY (state, &by_label, "s1");
    by_label.labels = &gone;
    ASSERT_QUERY (state, &by_label, "");
    cvr_service_destroy (&spec);            //  labels_count is 1 now
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  Re-registering an unhealthy service makes it healthy: a change.
static void
test_reregister_restores_health (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", NULL, NULL);
    s_register (state, spec, 1000, effects);
    assert_int_equal (s_command (state, CVR_CMD_LAPSE, "s1", 0, 11000, effects), CVR_OK);
    cvr_effects_clear (effects);
    assert_int_equal (s_register (state, spec, 12000, effects), CVR_OK);
    s_events_t ev;
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "updated", 12000);
    assert_int_equal (ev.items [0].service->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (ev.items [0].service->revision, 3);
    s_events_free (&ev);
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

static void
test_rename (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    const char *labels [] = { "zone=eu", NULL };
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", "g1", labels);
    s_bystanders (state, effects);
    s_register (state, spec, 1000, effects);
    assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, "s1", CVR_HEALTH_DEGRADED,
                                 1500, effects), CVR_OK);
    cvr_effects_clear (effects);

    s_set_str (&spec->service_name, "billing");
    assert_int_equal (s_register (state, spec, 2000, effects), CVR_OK);
    s_events_t ev;
    s_take (effects, &ev);
    assert_int_equal (ev.count, 2);
    //  The old record, unchanged, under the old name.
    s_assert_event (&ev.items [0], "orders", "deregistered", 2000);
    const cvr_service_t *old = ev.items [0].service;
    assert_string_equal (old->service_id, "s1");
    assert_int_equal (old->revision, 2);
    assert_int_equal (old->health, CVR_HEALTH_DEGRADED);
    assert_int_equal (old->last_heartbeat_at, 1500);
    assert_int_equal (old->registered_at, 1000);
    //  Then the new one under the new name.
    s_assert_event (&ev.items [1], "billing", "registered", 2000);
    const cvr_service_t *new = ev.items [1].service;
    assert_string_equal (new->service_id, "s1");
    assert_int_equal (new->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (new->last_heartbeat_at, 2000);
    assert_true (new->revision > old->revision);
    s_events_free (&ev);

    assert_int_equal (cvr_registry_size (cvr_state_registry (state)), 4);
    cvr_service_filter_t f = { .service_name = "orders" };
    ASSERT_QUERY (state, &f, "");
    f.service_name = "billing";
    ASSERT_QUERY (state, &f, "s1");
    //  Other indexes still point at the live record.
    cvr_service_filter_t g = { .group_id = "g1", .labels = &(cvr_label_t) { "zone", "eu" },
                               .labels_count = 1 };
    ASSERT_QUERY (state, &g, "s1");
    //  Events after the rename go under the new name.
    assert_int_equal (s_command (state, CVR_CMD_DEREGISTER, "s1", 0, 3000, effects), CVR_OK);
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "billing", "deregistered", 3000);
    s_events_free (&ev);
    ASSERT_QUERY (state, &f, "");
    ASSERT_QUERY (state, &g, "");
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  --------------------------------------------------------------------------
//  Health, removal

static void
test_heartbeat_health (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", NULL, NULL);
    s_register (state, spec, 1000, effects);
    cvr_effects_clear (effects);
    const cvr_service_t *rec;

    //  Same health: no event, no revision, but the heartbeat is stamped.
    assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, "s1", CVR_HEALTH_HEALTHY,
                                 1200, effects), CVR_OK);
    s_assert_no_events (effects);
    rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
    assert_int_equal (rec->revision, 1);
    assert_int_equal (rec->last_heartbeat_at, 1200);

    //  healthy -> degraded -> unhealthy -> healthy: three events.
    cvr_health_t walk [] = { CVR_HEALTH_DEGRADED, CVR_HEALTH_UNHEALTHY, CVR_HEALTH_HEALTHY };
    for (int i = 0; i < 3; i++) {
        int64_t now = 2000 + 100 * i;
        assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, "s1", walk [i], now, effects),
                          CVR_OK);
        s_events_t ev;
        s_take (effects, &ev);
        assert_int_equal (ev.count, 1);
        s_assert_event (&ev.items [0], "orders", "health", now);
        assert_int_equal (ev.items [0].service->health, walk [i]);
        assert_int_equal (ev.items [0].service->revision, 2 + i);
        assert_int_equal (ev.items [0].service->last_heartbeat_at, now);
        s_events_free (&ev);
        rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
        assert_int_equal (rec->health, walk [i]);
        assert_int_equal (rec->revision, 2 + i);
    }
    //  Soft touch: stamps only, and gives the service (or NULL).
    const cvr_service_t *touched = cvr_registry_touch (cvr_state_registry (state), "s1", 9999);
    assert_null (cvr_registry_touch (cvr_state_registry (state), "nope", 9999));
    rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
    assert_ptr_equal (touched, rec);
    assert_int_equal (rec->last_heartbeat_at, 9999);
    assert_int_equal (rec->revision, 4);
    s_assert_no_events (effects);
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

static void
test_lapse (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", NULL, NULL);
    s_register (state, spec, 1000, effects);
    cvr_effects_clear (effects);

    assert_int_equal (s_command (state, CVR_CMD_LAPSE, "s1", 0, 11000, effects), CVR_OK);
    s_events_t ev;
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "health", 11000);
    assert_int_equal (ev.items [0].service->health, CVR_HEALTH_UNHEALTHY);
    assert_int_equal (ev.items [0].service->revision, 2);
    //  A lapse is no heartbeat.
    assert_int_equal (ev.items [0].service->last_heartbeat_at, 1000);
    s_events_free (&ev);
    const cvr_service_t *rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
    assert_int_equal (rec->last_heartbeat_at, 1000);

    //  Again: already unhealthy, nothing happens.
    assert_int_equal (s_command (state, CVR_CMD_LAPSE, "s1", 0, 12000, effects), CVR_OK);
    s_assert_no_events (effects);
    rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
    assert_int_equal (rec->revision, 2);
    assert_int_equal (rec->last_heartbeat_at, 1000);

    //  A heartbeat restores it.
    assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, "s1", CVR_HEALTH_HEALTHY,
                                 12500, effects), CVR_OK);
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "health", 12500);
    assert_int_equal (ev.items [0].service->health, CVR_HEALTH_HEALTHY);
    assert_int_equal (ev.items [0].service->revision, 3);
    s_events_free (&ev);
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

static void
test_deregister_expire (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    const char *labels [] = { "zone=eu", NULL };
    cvr_service_t *a = s_spec ("a", "orders", "sink", "g1", labels);
    cvr_service_t *b = s_spec ("b", "orders", "sink", "g1", labels);
    s_bystanders (state, effects);
    s_register (state, a, 1000, effects);
    s_register (state, b, 1000, effects);
    s_command (state, CVR_CMD_LAPSE, "b", 0, 11000, effects);
    cvr_effects_clear (effects);
    cvr_registry_t *registry = cvr_state_registry (state);

    assert_int_equal (s_command (state, CVR_CMD_DEREGISTER, "a", 0, 5000, effects), CVR_OK);
    s_events_t ev;
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "deregistered", 5000);
    assert_string_equal (ev.items [0].service->service_id, "a");
    assert_int_equal (ev.items [0].service->revision, 1);       //  the last record
    s_events_free (&ev);
    assert_null (cvr_registry_lookup (registry, "a"));
    assert_int_equal (cvr_registry_size (registry), 4);
    assert_int_equal (cvr_registry_expired (registry), 0);

    assert_int_equal (s_command (state, CVR_CMD_EXPIRE, "b", 0, 21000, effects), CVR_OK);
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "expired", 21000);
    assert_string_equal (ev.items [0].service->service_id, "b");
    assert_int_equal (ev.items [0].service->health, CVR_HEALTH_UNHEALTHY);
    s_events_free (&ev);
    assert_int_equal (cvr_registry_size (registry), 3);
    assert_int_equal (cvr_registry_expired (registry), 1);

    //  Every index forgot them.
    cvr_service_filter_t f = { .service_name = "orders" };
    ASSERT_QUERY (state, &f, "");
    cvr_service_filter_t g = { .group_id = "g1" };
    ASSERT_QUERY (state, &g, "");
    cvr_service_filter_t l = { .labels = &(cvr_label_t) { "zone", "eu" }, .labels_count = 1 };
    ASSERT_QUERY (state, &l, "");
    ASSERT_QUERY (state, NULL, "x1,x2,x3");
    //  And a removed id can come back as new.
    assert_int_equal (s_register (state, a, 30000, effects), CVR_OK);
    s_take (effects, &ev);
    assert_int_equal (ev.count, 1);
    s_assert_event (&ev.items [0], "orders", "registered", 30000);
    assert_int_equal (ev.items [0].service->revision, 1);
    assert_int_equal (ev.items [0].service->registered_at, 30000);
    s_events_free (&ev);
    ASSERT_QUERY (state, &g, "a");
    cvr_service_destroy (&a);
    cvr_service_destroy (&b);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

static void
test_not_found (void **state_)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *spec = s_spec ("s1", "orders", "sink", NULL, NULL);
    s_register (state, spec, 1000, effects);
    cvr_effects_clear (effects);
    cvr_cmd_type_t types [] = { CVR_CMD_HEARTBEAT, CVR_CMD_LAPSE, CVR_CMD_DEREGISTER,
                                CVR_CMD_EXPIRE };
    for (int i = 0; i < 4; i++) {
        assert_int_equal (s_command (state, types [i], "nope", CVR_HEALTH_DEGRADED,
                                     2000, effects), CVR_NOT_FOUND);
        s_assert_no_events (effects);
        assert_int_equal (cvr_registry_size (cvr_state_registry (state)), 1);
        const cvr_service_t *rec = cvr_registry_lookup (cvr_state_registry (state), "s1");
        assert_int_equal (rec->revision, 1);
        assert_int_equal (rec->last_heartbeat_at, 1000);
        assert_int_equal (rec->health, CVR_HEALTH_HEALTHY);
    }
    assert_int_equal (cvr_registry_expired (cvr_state_registry (state)), 0);
    //  Removed ids are unknown too.
    s_command (state, CVR_CMD_DEREGISTER, "s1", 0, 3000, effects);
    cvr_effects_clear (effects);
    assert_int_equal (s_command (state, CVR_CMD_DEREGISTER, "s1", 0, 3001, effects),
                      CVR_NOT_FOUND);
    assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, "s1", 0, 3001, effects),
                      CVR_NOT_FOUND);
    s_assert_no_events (effects);
    assert_string_equal (cvr_cmd_name (CVR_CMD_EXPIRE), "expire");
    assert_string_equal (cvr_cmd_name ((cvr_cmd_type_t) 0), "?");
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

static void
test_limit (void **state_)
{
    cvr_state_t *state = s_state (3);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *specs [4];
    const char *ids [] = { "a", "b", "c", "d" };
    for (int i = 0; i < 4; i++)
        specs [i] = s_spec (ids [i], "orders", "sink", NULL, NULL);
    for (int i = 0; i < 3; i++)
        assert_int_equal (s_register (state, specs [i], 1000, effects), CVR_OK);
    cvr_effects_clear (effects);
    cvr_registry_t *registry = cvr_state_registry (state);

    assert_int_equal (s_register (state, specs [3], 2000, effects), CVR_LIMIT_EXCEEDED);
    s_assert_no_events (effects);
    assert_int_equal (cvr_registry_size (registry), 3);
    assert_null (cvr_registry_lookup (registry, "d"));
    cvr_service_filter_t f = { .service_name = "orders" };
    ASSERT_QUERY (state, &f, "a,b,c");

    //  Upserting an existing id at the limit still works, change or not.
    assert_int_equal (s_register (state, specs [1], 2100, effects), CVR_OK);
    s_assert_no_events (effects);
    assert_int_equal (cvr_registry_lookup (registry, "b")->last_heartbeat_at, 2100);
    specs [1]->weight = 7;
    assert_int_equal (s_register (state, specs [1], 2200, effects), CVR_OK);
    assert_int_equal (cvr_effects_size (effects), 1);
    cvr_effects_clear (effects);
    assert_int_equal (cvr_registry_lookup (registry, "b")->weight, 7);
    assert_int_equal (cvr_registry_size (registry), 3);

    //  Room again after a removal.
    s_command (state, CVR_CMD_DEREGISTER, "a", 0, 3000, effects);
    cvr_effects_clear (effects);
    assert_int_equal (s_register (state, specs [3], 3100, effects), CVR_OK);
    assert_int_equal (cvr_effects_size (effects), 1);
    cvr_effects_clear (effects);
    ASSERT_QUERY (state, &f, "b,c,d");
    for (int i = 0; i < 4; i++)
        cvr_service_destroy (&specs [i]);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);

    //  A limit of zero refuses everything.
    state = s_state (0);
    effects = cvr_effects_new ();
    cvr_service_t *spec = s_spec ("x", "orders", "sink", NULL, NULL);
    assert_int_equal (s_register (state, spec, 1, effects), CVR_LIMIT_EXCEEDED);
    s_assert_no_events (effects);
    cvr_service_destroy (&spec);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  --------------------------------------------------------------------------
//  Queries

//  A small fleet (registered in scrambled id order):
//    id   name     type       group  labels              health
//    a1   orders   source     g1     zone=eu tier=gold    healthy
//    a2   orders   source     g1     zone=us tier=gold    degraded
//    a3   orders   sink       -      zone=eu              healthy
//    b1   billing  transform  g1     zone=eu tier=silver  unhealthy
//    b2   billing  sink       g2     -                    healthy
//    c1   cart     sink       g2     a=bc                 healthy
//    c2   cart     sink       -      ab=c                 healthy
static cvr_state_t *
s_fleet (void)
{
    cvr_state_t *state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    struct {
        const char *id, *name, *type, *group;
        const char *labels [3];
        cvr_health_t health;
    } fleet [] = {
        { "b2", "billing", "sink", "g2", { NULL }, CVR_HEALTH_HEALTHY },
        { "a3", "orders", "sink", NULL, { "zone=eu", NULL }, CVR_HEALTH_HEALTHY },
        { "c1", "cart", "sink", "g2", { "a=bc", NULL }, CVR_HEALTH_HEALTHY },
        { "a1", "orders", "source", "g1", { "zone=eu", "tier=gold", NULL }, CVR_HEALTH_HEALTHY },
        { "b1", "billing", "transform", "g1", { "tier=silver", "zone=eu", NULL },
          CVR_HEALTH_UNHEALTHY },
        { "c2", "cart", "sink", NULL, { "ab=c", NULL }, CVR_HEALTH_HEALTHY },
        { "a2", "orders", "source", "g1", { "zone=us", "tier=gold", NULL },
          CVR_HEALTH_DEGRADED },
    };
    for (size_t i = 0; i < sizeof fleet / sizeof fleet [0]; i++) {
        cvr_service_t *spec = s_spec (fleet [i].id, fleet [i].name, fleet [i].type,
                                      fleet [i].group, fleet [i].labels);
        assert_int_equal (s_register (state, spec, 1000, effects), CVR_OK);
        if (fleet [i].health != CVR_HEALTH_HEALTHY)
            assert_int_equal (s_command (state, CVR_CMD_HEARTBEAT, fleet [i].id,
                                         fleet [i].health, 1100, effects), CVR_OK);
        cvr_service_destroy (&spec);
    }
    cvr_effects_destroy (&effects);
    return state;
}

static void
test_query (void **state_)
{
    cvr_state_t *state = s_fleet ();
    ASSERT_QUERY (state, NULL, "a1,a2,a3,b1,b2,c1,c2");
    cvr_service_filter_t all = { 0 };
    ASSERT_QUERY (state, &all, "a1,a2,a3,b1,b2,c1,c2");

    cvr_service_filter_t f = { .service_name = "orders" };
    ASSERT_QUERY (state, &f, "a1,a2,a3");
    f = (cvr_service_filter_t) { .service_name = "nope" };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .service_name = "order" };     //  no prefix match
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .service_type = "sink" };
    ASSERT_QUERY (state, &f, "a3,b2,c1,c2");
    f = (cvr_service_filter_t) { .service_type = "transform" };
    ASSERT_QUERY (state, &f, "b1");
    f = (cvr_service_filter_t) { .group_id = "g1" };
    ASSERT_QUERY (state, &f, "a1,a2,b1");
    f = (cvr_service_filter_t) { .group_id = "g2" };
    ASSERT_QUERY (state, &f, "b2,c1");
    f = (cvr_service_filter_t) { .group_id = "g3" };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .healthy_only = true };
    ASSERT_QUERY (state, &f, "a1,a3,b2,c1,c2");

    cvr_label_t eu = { "zone", "eu" }, gold = { "tier", "gold" }, us = { "zone", "us" };
    f = (cvr_service_filter_t) { .labels = &eu, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "a1,a3,b1");
    f = (cvr_service_filter_t) { .labels = &gold, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "a1,a2");
    cvr_label_t eu_gold [] = { { "zone", "eu" }, { "tier", "gold" } };
    f = (cvr_service_filter_t) { .labels = eu_gold, .labels_count = 2 };
    ASSERT_QUERY (state, &f, "a1");
    cvr_label_t eu_us [] = { { "zone", "eu" }, { "zone", "us" } };
    f = (cvr_service_filter_t) { .labels = eu_us, .labels_count = 2 };
    ASSERT_QUERY (state, &f, "");
    cvr_label_t nokey = { "color", "red" }, novalue = { "zone", "mars" },
                empty = { "zone", "" };
    f = (cvr_service_filter_t) { .labels = &nokey, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .labels = &novalue, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .labels = &empty, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "");

    //  Combinations.
    f = (cvr_service_filter_t) { .service_name = "orders", .healthy_only = true };
    ASSERT_QUERY (state, &f, "a1,a3");
    f = (cvr_service_filter_t) { .service_name = "orders", .service_type = "source" };
    ASSERT_QUERY (state, &f, "a1,a2");
    f = (cvr_service_filter_t) { .group_id = "g1", .labels = &eu, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "a1,b1");
    f = (cvr_service_filter_t) { .group_id = "g1", .labels = &eu, .labels_count = 1,
                                 .healthy_only = true };
    ASSERT_QUERY (state, &f, "a1");
    f = (cvr_service_filter_t) { .service_name = "billing", .labels = &us, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .service_name = "billing", .group_id = "g2",
                                 .service_type = "sink" };
    ASSERT_QUERY (state, &f, "b2");
    f = (cvr_service_filter_t) { .service_name = "cart", .group_id = "g1" };
    ASSERT_QUERY (state, &f, "");
    f = (cvr_service_filter_t) { .service_name = "orders", .service_type = "transform" };
    ASSERT_QUERY (state, &f, "");
    cvr_state_destroy (&state);
}

//  key "a" value "bc" and key "ab" value "c" are different pairs.
static void
test_query_label_collision (void **state_)
{
    cvr_state_t *state = s_fleet ();
    cvr_label_t a_bc = { "a", "bc" }, ab_c = { "ab", "c" }, abc = { "abc", "" },
                a_b = { "a", "b" };
    cvr_service_filter_t f = { .labels = &a_bc, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "c1");
    f.labels = &ab_c;
    ASSERT_QUERY (state, &f, "c2");
    f.labels = &abc;
    ASSERT_QUERY (state, &f, "");
    f.labels = &a_b;
    ASSERT_QUERY (state, &f, "");
    //  Also through a combined filter (another index chosen first).
    f = (cvr_service_filter_t) { .service_name = "cart", .labels = &ab_c, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "c2");
    cvr_state_destroy (&state);

    //  Separators people use: "k=v", "k:v", "k\0v" style keys and values.
    state = s_state (100);
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_t *s1 = s_spec ("s1", "x", "sink", NULL, (const char *[]) { "1:a=b", NULL });
    cvr_service_t *s2 = s_spec ("s2", "x", "sink", NULL, (const char *[]) { "1=:a:b", NULL });
    s_register (state, s1, 1, effects);
    s_register (state, s2, 1, effects);
    cvr_label_t q1 = { "1:a", "b" }, q2 = { "1", ":a:b" }, q3 = { "1", "a:b" };
    f = (cvr_service_filter_t) { .labels = &q1, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "s1");
    f.labels = &q2;
    ASSERT_QUERY (state, &f, "s2");
    f.labels = &q3;
    ASSERT_QUERY (state, &f, "");
    //  A key of two digits' length, against the same bytes split elsewhere.
    cvr_service_t *s4 = s_spec ("s4", "x", "sink", NULL, (const char *[]) { "abcdefghijkl=x", NULL });
    s_register (state, s4, 1, effects);
    cvr_label_t q5 = { "abcdefghijkl", "x" }, q6 = { "abcdefghijk", "lx" };
    f.labels = &q5;
    ASSERT_QUERY (state, &f, "s4");
    f.labels = &q6;
    ASSERT_QUERY (state, &f, "");
    cvr_service_destroy (&s4);
    //  A record restored from a snapshot with a key twice is refused: it
    //  would sit twice in one label's index set.
    cvr_service_t *s5 = s_spec ("s5", "x", "sink", NULL, (const char *[]) { "d=1", "d=2", NULL });
    assert_int_equal (cvr_registry_restore (cvr_state_registry (state), s5), CVR_BAD_REQUEST);
    assert_null (cvr_registry_lookup (cvr_state_registry (state), "s5"));
    cvr_service_destroy (&s5);
    cvr_service_destroy (&s1);
    cvr_service_destroy (&s2);

    //  A label pair longer than the index key's stack buffer (the library
    //  does not hold callers to the wire's limits): indexed, found, and
    //  unindexed on deregistration.
    char *big = (char *) malloc (3001);
    memset (big, 'v', 3000);
    big [3000] = 0;
    char *pair = zsys_sprintf ("k=%s", big);
    cvr_service_t *s3 = s_spec ("s3", "x", "sink", NULL, (const char *[]) { pair, NULL });
    s_register (state, s3, 1, effects);
    cvr_label_t q4 = { "k", big };
    f = (cvr_service_filter_t) { .labels = &q4, .labels_count = 1 };
    ASSERT_QUERY (state, &f, "s3");
    big [2999] = 'w';
    ASSERT_QUERY (state, &f, "");
    big [2999] = 'v';
    cvr_cmd_t cmd = { .type = CVR_CMD_DEREGISTER, .now = 2, .service_id = "s3" };
    assert_int_equal (cvr_state_apply (state, &cmd, effects), CVR_OK);
    ASSERT_QUERY (state, &f, "");
    cvr_service_destroy (&s3);
    free (pair);
    free (big);
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  Health changes move services in and out of healthy_only at once.
static void
test_query_follows_health (void **state_)
{
    cvr_state_t *state = s_fleet ();
    cvr_effects_t *effects = cvr_effects_new ();
    cvr_service_filter_t f = { .service_name = "orders", .healthy_only = true };
    ASSERT_QUERY (state, &f, "a1,a3");
    s_command (state, CVR_CMD_LAPSE, "a1", 0, 20000, effects);
    ASSERT_QUERY (state, &f, "a3");
    s_command (state, CVR_CMD_HEARTBEAT, "a2", CVR_HEALTH_HEALTHY, 20000, effects);
    ASSERT_QUERY (state, &f, "a2,a3");
    cvr_effects_destroy (&effects);
    cvr_state_destroy (&state);
}

//  --------------------------------------------------------------------------
//  Determinism

//  Appends a copy of line to log (autofree) and frees line.
static void
s_log (zlist_t *log, char *line)
{
    zlist_append (log, line);
    free (line);
}

static void
s_run_script (cvr_state_t *state, cvr_effects_t *effects, zlist_t *log)
{
    const char *l1 [] = { "zone=eu", "tier=gold", NULL };
    const char *l2 [] = { "zone=us", NULL };
    cvr_service_t *a = s_spec ("a", "orders", "source", "g1", l1);
    cvr_service_t *b = s_spec ("b", "orders", "sink", NULL, l2);
    cvr_service_t *c = s_spec ("c", "billing", "sink", "g2", NULL);
    struct { int kind; const char *id; cvr_health_t health; } script [] = {
        { 0, "a", 0 }, { 0, "b", 0 }, { 0, "c", 0 },
        { 1, "a", CVR_HEALTH_DEGRADED }, { 2, "b", 0 }, { 2, "b", 0 },
        { 1, "b", CVR_HEALTH_HEALTHY }, { 5, "a", 0 },    //  rename a
        { 3, "c", 0 }, { 4, "b", 0 }, { 0, "c", 0 }, { 1, "zz", 0 },
        { 6, "c", 0 },                                     //  change c
    };
    for (size_t i = 0; i < sizeof script / sizeof script [0]; i++) {
        int64_t now = 1000 + 137 * (int64_t) i;
        cvr_service_t *spec = streq (script [i].id, "a") ? a
                            : streq (script [i].id, "b") ? b : c;
        cvr_err_t rc;
        switch (script [i].kind) {
            case 0: rc = s_register (state, spec, now, effects); break;
            case 1: rc = s_command (state, CVR_CMD_HEARTBEAT, script [i].id,
                                    script [i].health, now, effects); break;
            case 2: rc = s_command (state, CVR_CMD_LAPSE, script [i].id, 0, now, effects); break;
            case 3: rc = s_command (state, CVR_CMD_DEREGISTER, script [i].id, 0, now, effects); break;
            case 4: rc = s_command (state, CVR_CMD_EXPIRE, script [i].id, 0, now, effects); break;
            case 5:
                s_set_str (&a->service_name, "renamed");
                rc = s_register (state, a, now, effects);
                break;
            default:
                s_set_str (&c->endpoint, "tcp://changed:1");
                rc = s_register (state, c, now, effects);
                break;
        }
        s_log (log, zsys_sprintf ("rc %d", (int) rc));
        for (size_t e = 0; e < cvr_effects_size (effects); e++) {
            cvr_wr_t *w = cvr_effects_body (effects, e);
            cvr_wr_close (w);
            s_log (log, zsys_sprintf ("%s|%s", cvr_effects_topic (effects, e),
                                      cvr_effects_root (effects, e)));
            char *hex = (char *) malloc (2 * cvr_wr_size (w) + 1);
            for (size_t k = 0; k < cvr_wr_size (w); k++)
                snprintf (hex + 2 * k, 3, "%02x", cvr_wr_data (w) [k]);
            hex [2 * cvr_wr_size (w)] = 0;
            s_log (log, hex);
        }
        cvr_effects_clear (effects);
    }
    cvr_service_destroy (&a);
    cvr_service_destroy (&b);
    cvr_service_destroy (&c);
}

static void
test_determinism (void **state_)
{
    zlist_t *logs [2];
    for (int run = 0; run < 2; run++) {
        cvr_state_t *state = s_state (100);
        cvr_effects_t *effects = cvr_effects_new ();
        logs [run] = zlist_new ();
        zlist_autofree (logs [run]);
        //  The second run reuses an effects that has already held events,
        //  as the server does.
        if (run == 1) {
            cvr_service_t *junk = s_spec ("junk", "junk", "sink", NULL, NULL);
            cvr_state_t *other = s_state (10);
            for (int i = 0; i < 20; i++)
                s_register (other, junk, i, effects);
            cvr_effects_clear (effects);
            cvr_state_destroy (&other);
            cvr_service_destroy (&junk);
        }
        s_run_script (state, effects, logs [run]);
        cvr_effects_destroy (&effects);
        cvr_state_destroy (&state);
    }
    assert_int_equal (zlist_size (logs [0]), zlist_size (logs [1]));
    //  The script yields the events it should (so the comparison means
    //  something): 3 registered, 3 health, 2 rename, 1 deregistered,
    //  1 expired, 1 registered, 1 updated = 12 events; 13 rcs.
    assert_int_equal (zlist_size (logs [0]), 13 + 2 * 12);
    char *x = (char *) zlist_first (logs [0]);
    char *y = (char *) zlist_first (logs [1]);
    while (x && y) {
        assert_string_equal (x, y);
        x = (char *) zlist_next (logs [0]);
        y = (char *) zlist_next (logs [1]);
    }
    //  Spot checks: the unknown heartbeat was NOT_FOUND; rename topics.
    bool saw_not_found = false, saw_rename = false;
    for (x = (char *) zlist_first (logs [0]); x; x = (char *) zlist_next (logs [0])) {
        if (streq (x, "rc 4"))
            saw_not_found = true;
        if (streq (x, "service/renamed/registered|service/renamed"))
            saw_rename = true;
    }
    assert_true (saw_not_found && saw_rename);
    zlist_destroy (&logs [0]);
    zlist_destroy (&logs [1]);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_register_new),
        cmocka_unit_test (test_reregister_identical),
        cmocka_unit_test (test_reregister_changed),
        cmocka_unit_test (test_reregister_restores_health),
        cmocka_unit_test (test_rename),
        cmocka_unit_test (test_heartbeat_health),
        cmocka_unit_test (test_lapse),
        cmocka_unit_test (test_deregister_expire),
        cmocka_unit_test (test_not_found),
        cmocka_unit_test (test_limit),
        cmocka_unit_test (test_query),
        cmocka_unit_test (test_query_label_collision),
        cmocka_unit_test (test_query_follows_health),
        cmocka_unit_test (test_determinism),
    };
    int failed = cmocka_run_group_tests_name ("indexed", tests, s_indexed_group, NULL);
    return failed + cmocka_run_group_tests_name ("unindexed", tests, s_unindexed_group, NULL);
}
