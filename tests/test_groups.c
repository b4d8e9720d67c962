/*  test_groups.c: the group state machine on a fake clock: cvr_state with
    group commands, as the server drives it (joins mark groups dirty, one
    rebalance command per dirty group follows), without sockets. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_state.h"
#include "cvr_assignor.h"

typedef struct {
    cvr_state_t *state;
    cvr_effects_t *effects;
    char events [8192];     //  "topic type member gen" of every event, in order
} fx_t;

static fx_t *
s_new (size_t max_groups, size_t max_members, uint32_t default_partitions)
{
    fx_t *self = (fx_t *) zmalloc (sizeof (fx_t));
    cvr_state_limits_t limits = { .max_services = 100,
        .groups = { max_groups, max_members, default_partitions } };
    self->state = cvr_state_new (&limits);
    self->effects = cvr_effects_new ();
    return self;
}

static void
s_destroy (fx_t **self_p)
{
    cvr_state_destroy (&(*self_p)->state);
    cvr_effects_destroy (&(*self_p)->effects);
    free (*self_p);
    *self_p = NULL;
}

static cvr_groups_t *
s_groups (fx_t *self)
{
    return cvr_state_groups (self->state);
}

//  Records the effects as short lines and clears them.
static void
s_collect (fx_t *self)
{
    for (size_t i = 0; i < cvr_effects_size (self->effects); i++) {
        cvr_wr_t *body = cvr_effects_body (self->effects, i);
        cvr_wr_close (body);
        cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (body), cvr_wr_size (body));
        assert_non_null (msg);
        const msgpack_object *root = cvr_msg_root (msg);
        char *type = cvr_obj_get_strdup (root, "type");
        char *member = cvr_obj_get_strdup (root, "member_id");
        size_t len = strlen (self->events);
        snprintf (self->events + len, sizeof (self->events) - len, "%s%s %s%s%s gen=%" PRId64,
                  len ? "; " : "", cvr_effects_topic (self->effects, i), type,
                  member ? " " : "", member ? member : "",
                  cvr_obj_get_int (root, "generation", -1));
        free (type);
        free (member);
        cvr_msg_destroy (&msg);
    }
    cvr_effects_clear (self->effects);
}

static cvr_err_t
s_apply (fx_t *self, cvr_cmd_t cmd)
{
    cvr_err_t rc = cvr_state_apply (self->state, &cmd, self->effects);
    s_collect (self);
    return rc;
}

//  What the server does after a batch: one rebalance per dirty group.
static int
s_flush (fx_t *self, int64_t now)
{
    int rebalances = 0;
    const char *dirty;
    while ((dirty = cvr_groups_next_dirty (s_groups (self)))) {
        char group_id [256];
        snprintf (group_id, sizeof (group_id), "%s", dirty);
        assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_REBALANCE,
                                   .now = now, .group_id = group_id }), CVR_OK);
        rebalances++;
    }
    return rebalances;
}

static cvr_err_t
s_join (fx_t *self, const char *group, const char *member, const char *instance,
        const char *topics_csv, const char *assignor, int64_t now)
{
    char buffer [256];
    snprintf (buffer, sizeof (buffer), "%s", topics_csv);
    const char *topics [16];
    size_t count = 0;
    for (char *t = strtok (buffer, ","); t && count < 16; t = strtok (NULL, ","))
        topics [count++] = t;
    cvr_join_t join = { .group_id = group, .member_id = member, .instance_id = instance,
                        .topics = topics, .topics_count = count,
                        .session_timeout_ms = 1000, .assignor = assignor };
    return s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_JOIN, .now = now, .join = &join });
}

//  The group as get_group writes it, decoded. Caller destroys.
static cvr_msg_t *
s_group (fx_t *self, const char *group_id)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    assert_int_equal (cvr_groups_write_group (s_groups (self), group_id, w), CVR_OK);
    cvr_wr_close (w);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    cvr_wr_destroy (&w);
    return msg;
}

static int64_t
s_generation (fx_t *self, const char *group_id)
{
    cvr_msg_t *msg = s_group (self, group_id);
    int64_t generation = cvr_obj_get_int (cvr_obj_get (cvr_msg_root (msg), "group"),
                                          "generation", -1);
    cvr_msg_destroy (&msg);
    return generation;
}

//  A member's assignment as "t:p t:p" (sorted as stored).
static void
s_assignment (fx_t *self, const char *group_id, const char *member_id, char *out, size_t size)
{
    cvr_msg_t *msg = s_group (self, group_id);
    const msgpack_object *members = cvr_obj_get (cvr_obj_get (cvr_msg_root (msg), "group"),
                                                 "members");
    out [0] = 0;
    for (uint32_t i = 0; i < members->via.array.size; i++) {
        const msgpack_object *m = &members->via.array.ptr [i];
        if (!cvr_obj_streq (cvr_obj_get (m, "member_id"), member_id))
            continue;
        const msgpack_object *a = cvr_obj_get (m, "assignment");
        for (uint32_t j = 0; j < a->via.array.size; j++) {
            const msgpack_object *tp = a->via.array.ptr [j].via.array.ptr;
            size_t len = strlen (out);
            snprintf (out + len, size - len, "%s%.*s:%" PRIu64, len ? " " : "",
                      (int) tp [0].via.str.size, tp [0].via.str.ptr, tp [1].via.u64);
        }
    }
    cvr_msg_destroy (&msg);
}

static void
test_joins_coalesce_into_one_generation (void **state)
{
    fx_t *self = s_new (10, 100, 6);
    for (int i = 0; i < 5; i++) {
        char member [16];
        snprintf (member, sizeof (member), "m%d", i);
        assert_int_equal (s_join (self, "g", member, NULL, "orders", "range", 100), CVR_OK);
        assert_true (cvr_groups_is_dirty (s_groups (self), "g"));
    }
    assert_int_equal (s_flush (self, 100), 1);
    assert_int_equal (s_generation (self, "g"), 1);
    //  The topic was auto-created, each join announced with the generation
    //  it produced, then one assignment.
    assert_non_null (strstr (self->events, "topic/orders/changed changed gen=-1; "
                             "group/g/membership joined m0 gen=1"));
    assert_non_null (strstr (self->events, "group/g/membership joined m4 gen=1; "
                             "group/g/assignment assignment gen=1"));
    char got [256];
    s_assignment (self, "g", "m0", got, sizeof (got));
    assert_string_equal (got, "orders:0 orders:1");
    s_assignment (self, "g", "m4", got, sizeof (got));
    assert_string_equal (got, "orders:5");
    //  A join that changes nothing: no dirt, no generation.
    self->events [0] = 0;
    assert_int_equal (s_join (self, "g", "m2", NULL, "orders", NULL, 200), CVR_OK);
    assert_false (cvr_groups_is_dirty (s_groups (self), "g"));
    assert_int_equal (s_flush (self, 200), 0);
    assert_string_equal (self->events, "");
    //  A changed topic set does.
    assert_int_equal (s_join (self, "g", "m2", NULL, "orders,payments", NULL, 300), CVR_OK);
    assert_int_equal (s_flush (self, 300), 1);
    assert_int_equal (s_generation (self, "g"), 2);
    s_destroy (&self);
}

static void
test_join_state_errors_in_order (void **state)
{
    fx_t *self = s_new (1, 2, 0);
    //  Auto-creation off: unknown topic is NOT_FOUND, nothing created.
    assert_int_equal (s_join (self, "g", "m0", NULL, "t", NULL, 0), CVR_NOT_FOUND);
    assert_int_equal (cvr_groups_count (s_groups (self)), 0);
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_CREATE_TOPIC, .now = 0,
                               .topic = "t", .partitions = 4 }), CVR_OK);
    //  Unknown service: NOT_FOUND before anything else.
    cvr_join_t join = { .group_id = "g", .member_id = "m0", .service_id = "nope",
                        .topics = (const char *[]) { "t" }, .topics_count = 1,
                        .session_timeout_ms = 1000 };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_JOIN, .join = &join }),
                      CVR_NOT_FOUND);
    assert_int_equal (s_join (self, "g", "m0", NULL, "t", "roundrobin", 0), CVR_OK);
    //  Another assignor while members exist: CONFLICT, even with room.
    assert_int_equal (s_join (self, "g", "m1", NULL, "t", "range", 0), CVR_CONFLICT);
    assert_int_equal (s_join (self, "g", "m1", NULL, "t", NULL, 0), CVR_OK);
    //  Members limit (2), then groups limit (1).
    assert_int_equal (s_join (self, "g", "m2", NULL, "t", NULL, 0), CVR_LIMIT_EXCEEDED);
    assert_int_equal (s_join (self, "h", "m0", NULL, "t", NULL, 0), CVR_LIMIT_EXCEEDED);
    assert_int_equal (cvr_groups_members (s_groups (self)), 2);
    s_destroy (&self);
}

static void
test_static_replacement_keeps_generation_and_fences (void **state)
{
    fx_t *self = s_new (10, 2, 4);
    assert_int_equal (s_join (self, "g", "a", "i1", "t", NULL, 0), CVR_OK);
    assert_int_equal (s_join (self, "g", "b", NULL, "t", NULL, 0), CVR_OK);
    s_flush (self, 0);
    char before [128], after [128];
    s_assignment (self, "g", "a", before, sizeof (before));
    self->events [0] = 0;
    //  At the members limit: a replacement does not count against it.
    assert_int_equal (s_join (self, "g", "a2", "i1", "t", NULL, 10), CVR_OK);
    assert_false (cvr_groups_is_dirty (s_groups (self), "g"));
    assert_int_equal (s_generation (self, "g"), 1);
    s_assignment (self, "g", "a2", after, sizeof (after));
    assert_string_equal (before, after);
    assert_string_equal (self->events, "group/g/membership fenced a gen=1; "
                         "group/g/membership joined a2 gen=1; "
                         "group/g/assignment assignment gen=1");
    //  The fenced id is UNKNOWN_MEMBER everywhere, a join included.
    assert_int_equal (cvr_groups_heartbeat (s_groups (self), "g", "a", 20), CVR_UNKNOWN_MEMBER);
    assert_int_equal (s_join (self, "g", "a", NULL, "t", NULL, 20), CVR_UNKNOWN_MEMBER);
    cvr_offset_t offsets [] = { { "t", 0, 1 } };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_COMMIT, .group_id = "g",
        .member_id = "a", .generation = 1, .offsets = offsets, .offsets_count = 1 }),
        CVR_UNKNOWN_MEMBER);
    //  A replacement with other topics rebalances.
    assert_int_equal (s_join (self, "g", "a3", "i1", "t,u", NULL, 30), CVR_OK);
    assert_true (cvr_groups_is_dirty (s_groups (self), "g"));
    assert_int_equal (s_flush (self, 30), 1);
    assert_int_equal (s_generation (self, "g"), 2);
    s_destroy (&self);
}

static void
test_sessions_expire_on_the_fake_clock (void **state)
{
    fx_t *self = s_new (10, 10, 4);
    assert_int_equal (s_join (self, "g", "a", NULL, "t", NULL, 0), CVR_OK);
    assert_int_equal (s_join (self, "g", "b", NULL, "t", NULL, 0), CVR_OK);
    s_flush (self, 0);
    const char *group_id, *member_id;
    assert_false (cvr_groups_next_expired (s_groups (self), 999, &group_id, &member_id));
    assert_int_equal (cvr_groups_heartbeat (s_groups (self), "g", "b", 900), CVR_OK);
    assert_true (cvr_groups_next_expired (s_groups (self), 1000, &group_id, &member_id));
    assert_string_equal (member_id, "a");
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_SESSION_EXPIRE,
        .now = 1000, .group_id = group_id, .member_id = member_id }), CVR_OK);
    assert_false (cvr_groups_next_expired (s_groups (self), 1899, &group_id, &member_id));
    assert_int_equal (s_flush (self, 1000), 1);
    assert_non_null (strstr (self->events, "group/g/membership expired a gen=2"));
    assert_int_equal (cvr_groups_members_expired (s_groups (self)), 1);
    char got [128];
    s_assignment (self, "g", "b", got, sizeof (got));
    assert_string_equal (got, "t:0 t:1 t:2 t:3");
    assert_true (cvr_groups_next_expired (s_groups (self), 1900, &group_id, &member_id));
    assert_string_equal (member_id, "b");
    s_destroy (&self);
}

static void
test_members_leave_with_their_service (void **state)
{
    fx_t *self = s_new (10, 10, 4);
    cvr_service_t spec = { .service_id = "svc", .service_name = "w", .service_type = "sink",
                           .endpoint = "x", .weight = 1, .lease_ms = 1000 };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_REGISTER, .now = 0,
                               .service = &spec }), CVR_OK);
    const char *topics [] = { "t" };
    cvr_join_t join = { .group_id = "g", .member_id = "linked", .service_id = "svc",
                        .topics = topics, .topics_count = 1, .session_timeout_ms = 100 };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_JOIN, .now = 0,
                               .join = &join }), CVR_OK);
    assert_int_equal (s_join (self, "g", "free", NULL, "t", NULL, 0), CVR_OK);
    s_flush (self, 0);
    //  The service's heartbeats keep the linked member; the other one's
    //  session (1000 ms) runs out on its own.
    const char *group_id, *member_id;
    for (int64_t t = 90; t <= 1980; t += 90) {
        cvr_groups_touch_service (s_groups (self), "svc", t);
        if (cvr_groups_next_expired (s_groups (self), t, &group_id, &member_id)) {
            assert_int_equal (t, 1080);
            assert_string_equal (member_id, "free");
            assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_SESSION_EXPIRE,
                .now = t, .group_id = group_id, .member_id = member_id }), CVR_OK);
        }
    }
    assert_int_equal (cvr_groups_members (s_groups (self)), 1);
    //  The service expires: the member leaves with it, as expired.
    self->events [0] = 0;
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_EXPIRE, .now = 2000,
                               .service_id = "svc" }), CVR_OK);
    assert_non_null (strstr (self->events, "service/w/expired expired gen=-1; "
                             "group/g/membership expired linked"));
    assert_int_equal (cvr_groups_members (s_groups (self)), 0);
    assert_int_equal (cvr_groups_members_expired (s_groups (self)), 2);
    assert_false (cvr_groups_next_expired (s_groups (self), 50000, &group_id, &member_id));
    s_destroy (&self);
}

//  A service that stops heartbeating no longer keeps its members: their
//  own session runs out (long before the service's two leases).
static void
test_linked_member_expires_when_its_service_goes_quiet (void **state)
{
    fx_t *self = s_new (10, 10, 4);
    cvr_service_t spec = { .service_id = "svc", .service_name = "w", .service_type = "sink",
                           .endpoint = "x", .weight = 1, .lease_ms = 1000 };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_REGISTER, .now = 0,
                               .service = &spec }), CVR_OK);
    const char *topics [] = { "t" };
    cvr_join_t join = { .group_id = "g", .member_id = "linked", .service_id = "svc",
                        .topics = topics, .topics_count = 1, .session_timeout_ms = 300 };
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_JOIN, .now = 0,
                               .join = &join }), CVR_OK);
    cvr_groups_touch_service (s_groups (self), "svc", 200);
    const char *group_id, *member_id;
    assert_false (cvr_groups_next_expired (s_groups (self), 499, &group_id, &member_id));
    assert_true (cvr_groups_next_expired (s_groups (self), 500, &group_id, &member_id));
    assert_string_equal (member_id, "linked");
    s_destroy (&self);
}

static void
test_offsets_error_order_and_all_or_nothing (void **state)
{
    fx_t *self = s_new (10, 10, 4);
    assert_int_equal (s_join (self, "g", "a", NULL, "t", "range", 0), CVR_OK);
    assert_int_equal (s_join (self, "g", "b", NULL, "t", NULL, 0), CVR_OK);
    s_flush (self, 0);                          //  a: t0 t1, b: t2 t3
    cvr_offset_t mine [] = { { "t", 0, 10 }, { "t", 1, 11 } };
    cvr_offset_t mixed [] = { { "t", 0, 99 }, { "t", 2, 99 } };
    cvr_cmd_t commit = { .type = CVR_CMD_COMMIT, .group_id = "nope", .member_id = "zz",
                         .generation = 7, .offsets = mixed, .offsets_count = 2 };
    assert_int_equal (s_apply (self, commit), CVR_NOT_FOUND);
    commit.group_id = "g";
    assert_int_equal (s_apply (self, commit), CVR_UNKNOWN_MEMBER);
    commit.member_id = "a";
    assert_int_equal (s_apply (self, commit), CVR_ILLEGAL_GENERATION);
    commit.generation = 1;
    assert_int_equal (s_apply (self, commit), CVR_NOT_OWNER);
    commit.offsets = mine;
    assert_int_equal (s_apply (self, commit), CVR_OK);
    //  Nothing of the refused commit landed: t:0 is 10, not 99.
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_offset_t ask [] = { { "t", 0, 0 }, { "t", 2, 0 } };
    assert_int_equal (cvr_groups_write_offsets (s_groups (self), "g", ask, 2, false, w), CVR_OK);
    cvr_wr_close (w);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    const msgpack_object *offsets = cvr_obj_get (cvr_msg_root (msg), "offsets");
    assert_int_equal (offsets->via.array.ptr [0].via.array.ptr [2].via.i64, 10);
    assert_int_equal (offsets->via.array.ptr [1].via.array.ptr [2].via.i64, -1);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
    //  Offsets outlive the members: empty group keeps them; delete only
    //  when empty.
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_DELETE_GROUP,
                               .group_id = "g" }), CVR_CONFLICT);
    s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_LEAVE, .group_id = "g", .member_id = "a" });
    s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_LEAVE, .group_id = "g", .member_id = "b" });
    s_flush (self, 10);
    assert_int_equal (s_generation (self, "g"), 2);
    w = cvr_wr_new ();
    cvr_wr_map (w);
    assert_int_equal (cvr_groups_write_offsets (s_groups (self), "g", NULL, 0, true, w), CVR_OK);
    cvr_wr_close (w);
    msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_int_equal (cvr_obj_get (cvr_msg_root (msg), "offsets")->via.array.size, 2);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_DELETE_GROUP,
                               .group_id = "g" }), CVR_OK);
    assert_int_equal (cvr_groups_count (s_groups (self)), 0);
    s_destroy (&self);
}

static void
test_topic_growth_rebalances_only_subscribers (void **state)
{
    fx_t *self = s_new (10, 10, 2);
    assert_int_equal (s_join (self, "g1", "a", NULL, "t", NULL, 0), CVR_OK);
    assert_int_equal (s_join (self, "g2", "a", NULL, "u", NULL, 0), CVR_OK);
    assert_int_equal (s_flush (self, 0), 2);
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_CREATE_TOPIC,
                               .topic = "t", .partitions = 2 }), CVR_OK);
    assert_int_equal (s_flush (self, 0), 0);    //  same count: no-op
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_CREATE_TOPIC,
                               .topic = "t", .partitions = 1 }), CVR_CONFLICT);
    assert_int_equal (s_apply (self, (cvr_cmd_t) { .type = CVR_CMD_CREATE_TOPIC,
                               .topic = "t", .partitions = 5 }), CVR_OK);
    assert_true (cvr_groups_is_dirty (s_groups (self), "g1"));
    assert_false (cvr_groups_is_dirty (s_groups (self), "g2"));
    assert_int_equal (s_flush (self, 0), 1);
    char got [128];
    s_assignment (self, "g1", "a", got, sizeof (got));
    assert_string_equal (got, "t:0 t:1 t:2 t:3 t:4");
    s_destroy (&self);
}

//  The same commands give the same events, byte for byte.
static void
test_deterministic (void **state)
{
    char first [8192];
    for (int run = 0; run < 2; run++) {
        fx_t *self = s_new (10, 100, 7);
        for (int i = 0; i < 20; i++) {
            char member [16], instance [16];
            snprintf (member, sizeof (member), "m%d", (i * 7) % 13);
            snprintf (instance, sizeof (instance), "i%d", i % 3);
            s_join (self, i % 2 ? "g" : "h", member, i % 5 ? NULL : instance,
                    i % 3 ? "a,b" : "b", NULL, i);
            if (i % 4 == 0)
                s_flush (self, i);
        }
        s_flush (self, 100);
        if (run == 0)
            snprintf (first, sizeof (first), "%s", self->events);
        else
            assert_string_equal (first, self->events);
        s_destroy (&self);
    }
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_joins_coalesce_into_one_generation),
        cmocka_unit_test (test_join_state_errors_in_order),
        cmocka_unit_test (test_static_replacement_keeps_generation_and_fences),
        cmocka_unit_test (test_sessions_expire_on_the_fake_clock),
        cmocka_unit_test (test_members_leave_with_their_service),
        cmocka_unit_test (test_linked_member_expires_when_its_service_goes_quiet),
        cmocka_unit_test (test_offsets_error_order_and_all_or_nothing),
        cmocka_unit_test (test_topic_growth_rebalances_only_subscribers),
        cmocka_unit_test (test_deterministic),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
