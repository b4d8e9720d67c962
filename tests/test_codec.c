/*  test_codec.c: commands and snapshots through msgpack and back.

    Lock-step: every command goes to one state as it is and to a second
    state encoded and decoded; after each step both gave the same result
    and the same events, and their snapshots are the same bytes. A
    snapshot read back and written again is the same bytes, and the
    restored state goes on exactly as the original. Malformed input of
    every kind gives NULL (and, under ASan, leaks nothing). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_codec.h"

static const cvr_state_limits_t s_limits = {
    .max_services = 5, .groups = { .max_groups = 3, .max_members = 4,
                                   .default_partitions = 4 }
};

typedef struct {
    cvr_state_t *a;             //  applies each command as it is
    cvr_state_t *b;             //  applies it encoded and decoded
    cvr_state_t *silent;        //  applies it with no effects (a log's
                                //  leader), when the pair starts empty
    cvr_effects_t *ea;
    cvr_effects_t *eb;
    int64_t now;                //  each step's clock, 10 ms apart
    unsigned covered;           //  bit per command type that applied OK
    char events [4096];         //  "topic type" of the last step's events
} pair_t;

static pair_t *
s_pair_new (cvr_state_t *a, cvr_state_t *b, int64_t now)
{
    pair_t *self = (pair_t *) zmalloc (sizeof (pair_t));
    self->a = a ? a : cvr_state_new (&s_limits);
    self->b = b ? b : cvr_state_new (&s_limits);
    self->silent = a ? NULL : cvr_state_new (&s_limits);
    self->ea = cvr_effects_new ();
    self->eb = cvr_effects_new ();
    self->now = now;
    return self;
}

static void
s_pair_destroy (pair_t **self_p)
{
    pair_t *self = *self_p;
    cvr_state_destroy (&self->a);
    cvr_state_destroy (&self->b);
    cvr_state_destroy (&self->silent);
    cvr_effects_destroy (&self->ea);
    cvr_effects_destroy (&self->eb);
    free (self);
    *self_p = NULL;
}

static cvr_wr_t *
s_snapshot (cvr_state_t *state)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_codec_write_state (w, state);
    assert_int_equal (cvr_wr_depth (w), 0);
    return w;
}

static void
s_assert_same_bytes (cvr_wr_t *x, cvr_wr_t *y)
{
    assert_int_equal (cvr_wr_size (x), cvr_wr_size (y));
    assert_memory_equal (cvr_wr_data (x), cvr_wr_data (y), cvr_wr_size (x));
}

static void
s_assert_same_state (cvr_state_t *a, cvr_state_t *b)
{
    cvr_wr_t *x = s_snapshot (a);
    cvr_wr_t *y = s_snapshot (b);
    s_assert_same_bytes (x, y);
    cvr_wr_destroy (&x);
    cvr_wr_destroy (&y);
    assert_int_equal (cvr_groups_members (cvr_state_groups (a)),
                      cvr_groups_members (cvr_state_groups (b)));
}

//  write -> read -> write gives the same bytes. Returns the restored state.
static cvr_state_t *
s_round_trip (cvr_state_t *state)
{
    cvr_wr_t *first = s_snapshot (state);
    cvr_state_t *copy = cvr_codec_read_state (cvr_wr_data (first), cvr_wr_size (first),
                                              &s_limits);
    assert_non_null (copy);
    cvr_wr_t *second = s_snapshot (copy);
    s_assert_same_bytes (first, second);
    cvr_wr_destroy (&first);
    cvr_wr_destroy (&second);
    return copy;
}

//  Closes the event bodies (their counts are written on close) and
//  compares them.
static void
s_assert_same_effects (cvr_effects_t *x, cvr_effects_t *y)
{
    assert_int_equal (cvr_effects_size (x), cvr_effects_size (y));
    for (size_t i = 0; i < cvr_effects_size (x); i++) {
        cvr_wr_close (cvr_effects_body (x, i));
        cvr_wr_close (cvr_effects_body (y, i));
        assert_string_equal (cvr_effects_topic (x, i), cvr_effects_topic (y, i));
        assert_string_equal (cvr_effects_root (x, i), cvr_effects_root (y, i));
        s_assert_same_bytes (cvr_effects_body (x, i), cvr_effects_body (y, i));
    }
}

//  The events as "topic type; ..." (bodies closed).
static void
s_record (pair_t *self)
{
    self->events [0] = 0;
    for (size_t i = 0; i < cvr_effects_size (self->ea); i++) {
        cvr_wr_t *body = cvr_effects_body (self->ea, i);
        cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (body), cvr_wr_size (body));
        assert_non_null (msg);
        char *type = cvr_obj_get_strdup (cvr_msg_root (msg), "type");
        size_t len = strlen (self->events);
        snprintf (self->events + len, sizeof (self->events) - len, "%s %s; ",
                  cvr_effects_topic (self->ea, i), type);
        free (type);
        cvr_msg_destroy (&msg);
    }
}

static bool
s_saw (pair_t *self, const char *event)
{
    return strstr (self->events, event) != NULL;
}

//  Encodes and decodes one command, applies the original to a and the
//  decoded one to b, and checks they agree in every way.
static cvr_err_t
s_step (pair_t *self, cvr_cmd_t cmd)
{
    cmd.now = self->now;
    self->now += 10;
    cvr_wr_t *w = cvr_wr_new ();
    cvr_codec_write_cmd (w, &cmd);
    assert_int_equal (cvr_wr_depth (w), 0);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_non_null (msg);
    cvr_codec_cmd_t *decoded = cvr_codec_read_cmd (cvr_msg_root (msg));
    //  The decoded command owns its storage: the message may go first.
    cvr_msg_destroy (&msg);
    assert_non_null (decoded);
    cvr_wr_t *again = cvr_wr_new ();
    cvr_codec_write_cmd (again, cvr_codec_cmd (decoded));
    s_assert_same_bytes (w, again);

    cvr_err_t rc = cvr_state_apply (self->a, &cmd, self->ea);
    assert_int_equal (cvr_state_apply (self->b, cvr_codec_cmd (decoded), self->eb), rc);
    s_assert_same_effects (self->ea, self->eb);
    s_record (self);
    cvr_effects_clear (self->ea);
    cvr_effects_clear (self->eb);
    s_assert_same_state (self->a, self->b);
    if (self->silent) {
        //  Writing no events changes nothing else.
        assert_int_equal (cvr_state_apply (self->silent, &cmd, NULL), rc);
        s_assert_same_state (self->a, self->silent);
    }
    cvr_state_t *copy = s_round_trip (self->a);
    cvr_state_destroy (&copy);
    if (rc == CVR_OK)
        self->covered |= 1u << cmd.type;

    cvr_codec_cmd_destroy (&decoded);
    cvr_wr_destroy (&again);
    cvr_wr_destroy (&w);
    return rc;
}

//  --------------------------------------------------------------------------
//  Command shorthands

static cvr_err_t
s_register (pair_t *self, const char *id, const char *name, const char *type,
            const char *group_id, cvr_label_t *labels, size_t labels_count,
            int64_t weight)
{
    cvr_service_t service = {
        .service_id = (char *) id, .service_name = (char *) name,
        .service_type = (char *) type, .endpoint = "tcp://10.0.0.1:5000",
        .group_id = (char *) group_id, .labels = labels, .labels_count = labels_count,
        .weight = weight, .lease_ms = 3000,
        //  Ignored by a register, carried all the same.
        .health = CVR_HEALTH_DEGRADED, .registered_at = 7, .revision = 9
    };
    return s_step (self, (cvr_cmd_t) { .type = CVR_CMD_REGISTER, .service = &service });
}

static cvr_err_t
s_service_cmd (pair_t *self, cvr_cmd_type_t type, const char *service_id,
               cvr_health_t health)
{
    return s_step (self, (cvr_cmd_t) { .type = type, .service_id = service_id,
                                       .health = health });
}

static cvr_err_t
s_topic (pair_t *self, const char *topic, int64_t partitions)
{
    return s_step (self, (cvr_cmd_t) { .type = CVR_CMD_CREATE_TOPIC, .topic = topic,
                                       .partitions = partitions });
}

//  topics_csv: comma-separated, duplicates kept.
static cvr_err_t
s_join (pair_t *self, const char *group_id, const char *member_id,
        const char *instance_id, const char *service_id, const char *topics_csv,
        const char *assignor)
{
    char buffer [256];
    snprintf (buffer, sizeof (buffer), "%s", topics_csv);
    const char *topics [16];
    size_t count = 0;
    for (char *t = strtok (buffer, ","); t && count < 16; t = strtok (NULL, ","))
        topics [count++] = t;
    cvr_join_t join = {
        .group_id = group_id, .member_id = member_id, .instance_id = instance_id,
        .service_id = service_id, .service_name = service_id ? "linked" : NULL,
        .topics = topics, .topics_count = count,
        .session_timeout_ms = 5000 + 1000 * (int64_t) strlen (member_id),
        .assignor = assignor
    };
    return s_step (self, (cvr_cmd_t) { .type = CVR_CMD_JOIN, .join = &join });
}

static cvr_err_t
s_member_cmd (pair_t *self, cvr_cmd_type_t type, const char *group_id,
              const char *member_id)
{
    return s_step (self, (cvr_cmd_t) { .type = type, .group_id = group_id,
                                       .member_id = member_id });
}

//  One rebalance per dirty group, in the order both states give them.
static int
s_flush (pair_t *self)
{
    int rebalances = 0;
    const char *dirty;
    while ((dirty = cvr_groups_next_dirty (cvr_state_groups (self->a)))) {
        const char *other = cvr_groups_next_dirty (cvr_state_groups (self->b));
        assert_non_null (other);
        assert_string_equal (dirty, other);
        char group_id [256];
        snprintf (group_id, sizeof (group_id), "%s", dirty);
        assert_int_equal (s_member_cmd (self, CVR_CMD_REBALANCE, group_id, NULL), CVR_OK);
        rebalances++;
    }
    assert_null (cvr_groups_next_dirty (cvr_state_groups (self->b)));
    return rebalances;
}

static int64_t
s_generation (pair_t *self, const char *group_id)
{
    int64_t generation;
    const char *assignor, *reason;
    assert_int_equal (cvr_groups_info (cvr_state_groups (self->a), group_id,
                                       &generation, &assignor, &reason), CVR_OK);
    return generation;
}

//  Commits offset to every partition the member owns (and, when bad is
//  set, one more it does not own), at the group's generation + skew.
static cvr_err_t
s_commit (pair_t *self, const char *group_id, const char *member_id, int64_t offset,
          int64_t skew, bool bad)
{
    size_t count;
    cvr_member_record_t *records = cvr_groups_member_records (
        cvr_state_groups (self->a), group_id, &count);
    assert_non_null (records);
    cvr_offset_t offsets [64];
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        if (streq (records [i].member_id, member_id))
            for (size_t p = 0; p < records [i].assignment_count && n < 63; p++)
                offsets [n++] = (cvr_offset_t) { records [i].assignment [p].topic,
                                                 records [i].assignment [p].partition,
                                                 offset + (int64_t) p };
    if (bad)
        offsets [n++] = (cvr_offset_t) { "events", 1000, offset };
    cvr_err_t rc = s_step (self, (cvr_cmd_t) {
        .type = CVR_CMD_COMMIT, .group_id = group_id, .member_id = member_id,
        .generation = s_generation (self, group_id) + skew,
        .offsets = offsets, .offsets_count = n });
    free (records);
    return rc;
}

//  --------------------------------------------------------------------------
//  The scenario: a rich state, left with groups waiting for a rebalance.

static void
s_build (pair_t *self)
{
    cvr_label_t a_labels [] = { { "zone", "eu" }, { "tier", "gold" }, { "disk", "ssd" } };
    cvr_label_t b_labels [] = { { "zone", "us" } };
    cvr_label_t c_labels [] = { { "zone", "eu" }, { "tier", "bronze" } };

    //  Services: labels out of order, weights, a service group or none.
    assert_int_equal (s_register (self, "svc-a", "orders", "sink", "sinks",
                                  a_labels, 3, 50), CVR_OK);
    assert_true (s_saw (self, "service/orders/registered registered"));
    assert_int_equal (s_register (self, "svc-b", "orders", "sink", NULL,
                                  b_labels, 1, 200), CVR_OK);
    assert_int_equal (s_register (self, "svc-c", "audit", "transform", "audits",
                                  c_labels, 2, 100), CVR_OK);
    assert_int_equal (s_register (self, "svc-d", "ingest", NULL, NULL, NULL, 0, 0), CVR_OK);
    //  Upserts: a change, a rename, and the same spec again.
    assert_int_equal (s_register (self, "svc-a", "orders", "sink", "sinks",
                                  a_labels, 3, 75), CVR_OK);
    assert_true (s_saw (self, "service/orders/updated updated"));
    assert_int_equal (s_register (self, "svc-a", "orders-v2", "sink", "sinks",
                                  a_labels, 3, 75), CVR_OK);
    assert_true (s_saw (self, "service/orders/deregistered"));
    assert_true (s_saw (self, "service/orders-v2/registered"));
    assert_int_equal (s_register (self, "svc-a", "orders-v2", "sink", "sinks",
                                  a_labels, 3, 75), CVR_OK);
    assert_string_equal (self->events, "");
    //  Health: a change, no change, back; a lapse; an unknown id.
    assert_int_equal (s_service_cmd (self, CVR_CMD_HEARTBEAT, "svc-b",
                                     CVR_HEALTH_DEGRADED), CVR_OK);
    assert_true (s_saw (self, "service/orders/health health"));
    assert_int_equal (s_service_cmd (self, CVR_CMD_HEARTBEAT, "svc-b",
                                     CVR_HEALTH_DEGRADED), CVR_OK);
    assert_string_equal (self->events, "");
    assert_int_equal (s_service_cmd (self, CVR_CMD_HEARTBEAT, "svc-b",
                                     CVR_HEALTH_HEALTHY), CVR_OK);
    assert_int_equal (s_service_cmd (self, CVR_CMD_LAPSE, "svc-c", 0), CVR_OK);
    assert_true (s_saw (self, "service/audit/health health"));
    assert_int_equal (s_service_cmd (self, CVR_CMD_HEARTBEAT, "svc-d",
                                     CVR_HEALTH_UNKNOWN), CVR_OK);
    assert_int_equal (s_service_cmd (self, CVR_CMD_HEARTBEAT, "nope",
                                     CVR_HEALTH_HEALTHY), CVR_NOT_FOUND);
    //  The limit, and an expiry that counts.
    assert_int_equal (s_register (self, "svc-e", "spare", "source", NULL, NULL, 0, 1), CVR_OK);
    assert_int_equal (s_register (self, "svc-f", "spare", "source", NULL, NULL, 0, 1),
                      CVR_LIMIT_EXCEEDED);
    assert_int_equal (s_service_cmd (self, CVR_CMD_EXPIRE, "svc-e", 0), CVR_OK);
    assert_true (s_saw (self, "service/spare/expired expired"));
    assert_int_equal (cvr_registry_expired (cvr_state_registry (self->b)), 1);
    assert_int_equal (s_service_cmd (self, CVR_CMD_DEREGISTER, "nope", 0), CVR_NOT_FOUND);

    //  Topics.
    assert_int_equal (s_topic (self, "events", 6), CVR_OK);
    assert_int_equal (s_topic (self, "logs", 3), CVR_OK);
    assert_int_equal (s_topic (self, "metrics", 2), CVR_OK);
    assert_int_equal (s_topic (self, "events", 4), CVR_CONFLICT);
    assert_int_equal (s_topic (self, "logs", 3), CVR_OK);

    //  Range: a dynamic member with a duplicated topic, two static ones
    //  linked to services.
    assert_int_equal (s_join (self, "g-range", "m1", NULL, NULL, "events,logs,events",
                              "range"), CVR_OK);
    assert_int_equal (s_join (self, "g-range", "m2", "i-2", "svc-a", "events", "range"),
                      CVR_OK);
    assert_int_equal (s_join (self, "g-range", "m3", "i-1", "svc-b", "events,logs", NULL),
                      CVR_OK);
    assert_int_equal (s_flush (self), 1);
    assert_int_equal (s_generation (self, "g-range"), 1);
    assert_int_equal (s_commit (self, "g-range", "m1", 100, 0, false), CVR_OK);
    assert_int_equal (s_commit (self, "g-range", "m3", 200, 0, false), CVR_OK);
    assert_int_equal (s_commit (self, "g-range", "m1", 5, -1, false), CVR_ILLEGAL_GENERATION);
    assert_int_equal (s_commit (self, "g-range", "m1", 5, 0, true), CVR_NOT_OWNER);

    //  Roundrobin, with a topic created by the join (default partitions).
    assert_int_equal (s_join (self, "g-rr", "r1", NULL, NULL, "events,metrics",
                              "roundrobin"), CVR_OK);
    assert_int_equal (s_join (self, "g-rr", "r2", "i-r2", NULL, "events,metrics",
                              "roundrobin"), CVR_OK);
    assert_int_equal (s_join (self, "g-rr", "r3", NULL, NULL, "metrics,auto", NULL), CVR_OK);
    assert_true (s_saw (self, "topic/auto/changed changed"));
    //  Sticky by default, with a member linked to an unhealthy service.
    assert_int_equal (s_join (self, "g-sticky", "s1", NULL, NULL, "events", NULL), CVR_OK);
    assert_int_equal (s_join (self, "g-sticky", "s2", NULL, "svc-c", "events,logs", NULL),
                      CVR_OK);
    assert_int_equal (s_flush (self), 2);
    assert_int_equal (s_commit (self, "g-rr", "r2", 300, 0, false), CVR_OK);
    assert_int_equal (s_commit (self, "g-sticky", "s1", 400, 0, false), CVR_OK);
    //  State errors.
    assert_int_equal (s_join (self, "g-four", "x", NULL, NULL, "events", NULL),
                      CVR_LIMIT_EXCEEDED);
    assert_int_equal (s_join (self, "g-rr", "r4", NULL, NULL, "events", "range"),
                      CVR_CONFLICT);
    assert_int_equal (s_join (self, "g-rr", "r4", NULL, "nope", "events", NULL),
                      CVR_NOT_FOUND);

    //  A static replacement on a clean group: the old member is fenced and
    //  the new one takes its partitions without a new generation.
    assert_int_equal (s_join (self, "g-range", "m2b", "i-2", "svc-a", "events", "range"),
                      CVR_OK);
    assert_true (s_saw (self, "group/g-range/membership fenced"));
    assert_true (s_saw (self, "group/g-range/assignment assignment"));
    assert_false (cvr_groups_is_dirty (cvr_state_groups (self->a), "g-range"));
    assert_int_equal (s_join (self, "g-range", "m2", "i-2", "svc-a", "events", "range"),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (s_commit (self, "g-range", "m2b", 500, 0, false), CVR_OK);
    //  A static replacement that changes topics: dirty.
    assert_int_equal (s_join (self, "g-rr", "r2b", "i-r2", NULL, "logs", "roundrobin"),
                      CVR_OK);
    assert_true (cvr_groups_is_dirty (cvr_state_groups (self->a), "g-rr"));
    //  Topic growth marks every subscriber dirty; a member changes topics.
    assert_int_equal (s_topic (self, "events", 8), CVR_OK);
    assert_int_equal (s_join (self, "g-sticky", "s1", NULL, NULL, "events,metrics", NULL),
                      CVR_OK);
    assert_int_equal (s_flush (self), 3);
    assert_int_equal (s_commit (self, "g-sticky", "s2", 600, 0, false), CVR_OK);
    assert_int_equal (s_commit (self, "g-range", "m3", 700, 0, false), CVR_OK);

    //  Left pending: two groups waiting for their rebalance, in order.
    assert_int_equal (s_join (self, "g-rr", "r5", NULL, NULL, "auto", NULL), CVR_OK);
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "g-rr", "r1"), CVR_OK);
    assert_int_equal (s_join (self, "g-range", "m4", NULL, NULL, "logs", NULL), CVR_OK);
    assert_int_equal (s_join (self, "g-range", "m5", NULL, NULL, "logs", NULL),
                      CVR_LIMIT_EXCEEDED);
}

//  --------------------------------------------------------------------------
//  1. Every command type, encoded and decoded, in lock-step

static void
test_commands_in_lock_step (void **unused)
{
    pair_t *self = s_pair_new (NULL, NULL, 1000000);
    s_build (self);
    assert_int_equal (s_flush (self), 2);

    //  Leaves: by request, by session, and with a service.
    assert_int_equal (s_member_cmd (self, CVR_CMD_SESSION_EXPIRE, "g-range", "m1"), CVR_OK);
    assert_true (s_saw (self, "group/g-range/membership expired"));
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "g-range", "nope"),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "nope", "m1"), CVR_NOT_FOUND);
    assert_int_equal (s_service_cmd (self, CVR_CMD_DEREGISTER, "svc-b", 0), CVR_OK);
    assert_true (s_saw (self, "service/orders/deregistered"));
    assert_true (s_saw (self, "group/g-range/membership left"));
    assert_int_equal (s_service_cmd (self, CVR_CMD_EXPIRE, "svc-a", 0), CVR_OK);
    assert_true (s_saw (self, "group/g-range/membership expired"));
    assert_int_equal (s_flush (self), 1);
    assert_int_equal (cvr_groups_members_expired (cvr_state_groups (self->b)), 2);

    //  A group goes: not while it has members.
    assert_int_equal (s_member_cmd (self, CVR_CMD_DELETE_GROUP, "g-rr", NULL), CVR_CONFLICT);
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "g-rr", "r2b"), CVR_OK);
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "g-rr", "r3"), CVR_OK);
    assert_int_equal (s_member_cmd (self, CVR_CMD_LEAVE, "g-rr", "r5"), CVR_OK);
    assert_int_equal (s_member_cmd (self, CVR_CMD_DELETE_GROUP, "g-rr", NULL), CVR_OK);
    assert_int_equal (s_member_cmd (self, CVR_CMD_DELETE_GROUP, "g-rr", NULL), CVR_NOT_FOUND);
    assert_int_equal (s_member_cmd (self, CVR_CMD_REBALANCE, "g-rr", NULL), CVR_NOT_FOUND);
    assert_int_equal (s_flush (self), 0);
    //  Its place is free again, under a new assignor.
    assert_int_equal (s_join (self, "g-new", "n1", NULL, "svc-c", "logs,metrics",
                              "roundrobin"), CVR_OK);
    assert_int_equal (s_flush (self), 1);
    assert_int_equal (s_commit (self, "g-new", "n1", 9, 0, false), CVR_OK);

    //  A restart: every service unknown (a health event each, in id order)
    //  and every session renewed, alike on both sides.
    assert_int_equal (s_step (self, (cvr_cmd_t) { .type = CVR_CMD_RESTORE }), CVR_OK);
    size_t count;
    const cvr_service_t **all = cvr_registry_query (cvr_state_registry (self->b), NULL, &count);
    assert_true (count > 0);
    for (size_t i = 0; i < count; i++)
        assert_int_equal (all [i]->health, CVR_HEALTH_UNKNOWN);
    free (all);

    //  Every command type went through the codec and applied.
    for (int type = CVR_CMD_REGISTER; type <= CVR_CMD_RESTORE; type++)
        if (!(self->covered & (1u << type)))
            fail_msg ("command %s never applied", cvr_cmd_name ((cvr_cmd_type_t) type));
    s_pair_destroy (&self);
}

//  --------------------------------------------------------------------------
//  2. A snapshot restores a state that goes on exactly as the original

static void
s_assert_same_replies (cvr_state_t *a, cvr_state_t *b)
{
    const char *groups [] = { "g-range", "g-rr", "g-sticky" };
    for (size_t i = 0; i < 4; i++) {
        cvr_wr_t *x = cvr_wr_new (), *y = cvr_wr_new ();
        cvr_wr_map (x);
        cvr_wr_map (y);
        if (i < 3) {
            assert_int_equal (cvr_groups_write_group (cvr_state_groups (a), groups [i], x),
                              CVR_OK);
            assert_int_equal (cvr_groups_write_group (cvr_state_groups (b), groups [i], y),
                              CVR_OK);
            cvr_groups_write_offsets (cvr_state_groups (a), groups [i], NULL, 0, true, x);
            cvr_groups_write_offsets (cvr_state_groups (b), groups [i], NULL, 0, true, y);
        }
        else {
            cvr_groups_write_list (cvr_state_groups (a), x);
            cvr_groups_write_list (cvr_state_groups (b), y);
            cvr_groups_write_topics (cvr_state_groups (a), x);
            cvr_groups_write_topics (cvr_state_groups (b), y);
        }
        cvr_wr_close (x);
        cvr_wr_close (y);
        s_assert_same_bytes (x, y);
        cvr_wr_destroy (&x);
        cvr_wr_destroy (&y);
    }
    //  The registry's indexes were rebuilt.
    cvr_label_t eu = { "zone", "eu" };
    cvr_service_filter_t filters [] = {
        { .labels = &eu, .labels_count = 1 },
        { .service_name = "orders" },
        { .group_id = "sinks" },
        { .healthy_only = true },
    };
    for (size_t i = 0; i < sizeof (filters) / sizeof (filters [0]); i++) {
        size_t nx, ny;
        const cvr_service_t **x = cvr_registry_query (cvr_state_registry (a), &filters [i], &nx);
        const cvr_service_t **y = cvr_registry_query (cvr_state_registry (b), &filters [i], &ny);
        assert_int_equal (nx, ny);
        for (size_t s = 0; s < nx; s++)
            assert_string_equal (x [s]->service_id, y [s]->service_id);
        free (x);
        free (y);
    }
    assert_int_equal (cvr_registry_size (cvr_state_registry (a)),
                      cvr_registry_size (cvr_state_registry (b)));
    assert_int_equal (cvr_groups_rebalances (cvr_state_groups (a)),
                      cvr_groups_rebalances (cvr_state_groups (b)));
}

static void
test_snapshot_round_trip_and_continue (void **unused)
{
    pair_t *built = s_pair_new (NULL, NULL, 5000000);
    s_build (built);
    //  Soft state, outside the commands: it is in the snapshot too.
    cvr_groups_t *groups = cvr_state_groups (built->a);
    assert_int_equal (cvr_groups_heartbeat (groups, "g-sticky", "s2", built->now + 3), CVR_OK);
    cvr_groups_touch_service (groups, "svc-b", built->now + 5);
    cvr_registry_touch (cvr_state_registry (built->a), "svc-d", built->now + 7);

    //  write -> read -> write: the same bytes.
    cvr_state_t *restored = s_round_trip (built->a);
    assert_true (cvr_groups_is_dirty (cvr_state_groups (restored), "g-rr"));
    assert_true (cvr_groups_is_dirty (cvr_state_groups (restored), "g-range"));
    s_assert_same_replies (built->a, restored);

    //  The original and the restored state now take the same commands.
    pair_t *self = s_pair_new (built->a, restored, built->now + 100);
    built->a = NULL;
    s_pair_destroy (&built);
    //  The pending rebalances, in the same order, with the same reasons.
    assert_int_equal (s_flush (self), 2);
    s_assert_same_replies (self->a, self->b);
    assert_int_equal (s_commit (self, "g-range", "m4", 10, 0, false), CVR_OK);
    assert_int_equal (s_commit (self, "g-rr", "r3", 20, 0, false), CVR_OK);
    //  Fenced ids stay fenced; instance ids still replace.
    assert_int_equal (s_join (self, "g-range", "m2", "i-2", NULL, "events", NULL),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (s_join (self, "g-rr", "r2", NULL, NULL, "logs", NULL),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (s_join (self, "g-range", "m3b", "i-1", "svc-b", "events,logs", NULL),
                      CVR_OK);
    assert_true (s_saw (self, "group/g-range/membership fenced"));
    //  Member limits hold on the restored side as well.
    assert_int_equal (s_join (self, "g-range", "m6", NULL, NULL, "logs", NULL),
                      CVR_LIMIT_EXCEEDED);
    //  Service links: removing a service takes its members along.
    assert_int_equal (s_service_cmd (self, CVR_CMD_EXPIRE, "svc-c", 0), CVR_OK);
    assert_true (s_saw (self, "group/g-sticky/membership expired"));
    assert_int_equal (s_topic (self, "logs", 5), CVR_OK);
    //  g-sticky (its member expired), then the subscribers of logs.
    assert_int_equal (s_flush (self), 3);
    assert_int_equal (s_register (self, "svc-g", "late", "sink", NULL, NULL, 0, 1), CVR_OK);
    assert_int_equal (s_register (self, "svc-h", "late", "sink", NULL, NULL, 0, 1), CVR_OK);
    assert_int_equal (s_register (self, "svc-i", "late", "sink", NULL, NULL, 0, 1),
                      CVR_LIMIT_EXCEEDED);

    //  Sessions run out in the same order on both, deadlines restored.
    self->now += 60000;
    const char *ga, *ma, *gb, *mb;
    int expired = 0;
    while (cvr_groups_next_expired (cvr_state_groups (self->a), self->now, &ga, &ma)) {
        assert_true (cvr_groups_next_expired (cvr_state_groups (self->b), self->now,
                                              &gb, &mb));
        assert_string_equal (ga, gb);
        assert_string_equal (ma, mb);
        char group_id [64], member_id [64];
        snprintf (group_id, sizeof (group_id), "%s", ga);
        snprintf (member_id, sizeof (member_id), "%s", ma);
        assert_int_equal (s_member_cmd (self, CVR_CMD_SESSION_EXPIRE, group_id, member_id),
                          CVR_OK);
        expired++;
    }
    assert_false (cvr_groups_next_expired (cvr_state_groups (self->b), self->now, &gb, &mb));
    assert_true (expired >= 5);
    assert_int_equal (cvr_groups_members (cvr_state_groups (self->b)), 0);
    s_flush (self);
    assert_int_equal (s_member_cmd (self, CVR_CMD_DELETE_GROUP, "g-rr", NULL), CVR_OK);
    s_pair_destroy (&self);
}

//  A soft heartbeat moves the deadline a snapshot restores.
static void
test_snapshot_keeps_session_deadlines (void **unused)
{
    pair_t *self = s_pair_new (NULL, NULL, 1000);
    assert_int_equal (s_topic (self, "events", 2), CVR_OK);
    assert_int_equal (s_join (self, "g", "aa", NULL, NULL, "events", NULL), CVR_OK);
    assert_int_equal (s_join (self, "g", "bb", NULL, NULL, "events", NULL), CVR_OK);
    //  aa: 1010 + 7000 = 8010, bb: 1020 + 7000 = 8020; a heartbeat at
    //  2000 moves aa to 9000.
    assert_int_equal (cvr_groups_heartbeat (cvr_state_groups (self->a), "g", "aa", 2000),
                      CVR_OK);
    cvr_state_t *restored = s_round_trip (self->a);
    const char *group_id, *member_id;
    cvr_state_t *states [] = { self->a, restored };
    for (int i = 0; i < 2; i++) {
        cvr_groups_t *groups = cvr_state_groups (states [i]);
        assert_false (cvr_groups_next_expired (groups, 8019, &group_id, &member_id));
        assert_true (cvr_groups_next_expired (groups, 8020, &group_id, &member_id));
        assert_string_equal (member_id, "bb");
        cvr_cmd_t leave = { .type = CVR_CMD_LEAVE, .now = 8020, .group_id = "g",
                            .member_id = "bb" };
        assert_int_equal (cvr_state_apply (states [i], &leave, self->ea), CVR_OK);
        assert_false (cvr_groups_next_expired (groups, 8999, &group_id, &member_id));
        assert_true (cvr_groups_next_expired (groups, 9000, &group_id, &member_id));
        assert_string_equal (member_id, "aa");
    }
    cvr_state_destroy (&restored);
    s_pair_destroy (&self);
}

//  --------------------------------------------------------------------------
//  3. Malformed input

//  Writes o again, with the node numbered `target` (pre-order, map keys
//  counted) replaced by a value of another type. Sets *hit when it did.
static void
s_emit (cvr_wr_t *w, const msgpack_object *o, size_t target, size_t *node, bool *hit)
{
    if ((*node)++ == target) {
        *hit = true;
        switch (o->type) {
            case MSGPACK_OBJECT_STR:
                cvr_wr_int (w, 7);
                break;
            case MSGPACK_OBJECT_ARRAY:
                cvr_wr_map (w);
                cvr_wr_close (w);
                break;
            case MSGPACK_OBJECT_MAP:
                cvr_wr_array (w);
                cvr_wr_close (w);
                break;
            default:
                cvr_wr_str (w, "x");
                break;
        }
        return;
    }
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        cvr_wr_array (w);
        for (uint32_t i = 0; i < o->via.array.size; i++)
            s_emit (w, &o->via.array.ptr [i], target, node, hit);
        cvr_wr_close (w);
    }
    else
    if (o->type == MSGPACK_OBJECT_MAP) {
        cvr_wr_map (w);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            s_emit (w, &o->via.map.ptr [i].key, target, node, hit);
            s_emit (w, &o->via.map.ptr [i].val, target, node, hit);
        }
        cvr_wr_close (w);
    }
    else
        cvr_wr_obj (w, o);
}

//  A small state with one of everything.
static cvr_state_t *
s_small_state (void)
{
    pair_t *self = s_pair_new (NULL, NULL, 1000);
    cvr_label_t labels [] = { { "zone", "eu" } };
    assert_int_equal (s_register (self, "svc", "orders", "sink", "sinks", labels, 1, 5),
                      CVR_OK);
    assert_int_equal (s_topic (self, "t", 2), CVR_OK);
    assert_int_equal (s_join (self, "g", "m1", "i1", "svc", "t", NULL), CVR_OK);
    assert_int_equal (s_flush (self), 1);
    assert_int_equal (s_commit (self, "g", "m1", 42, 0, false), CVR_OK);
    assert_int_equal (s_join (self, "g", "m2", "i1", NULL, "t", NULL), CVR_OK);
    assert_int_equal (s_join (self, "g", "m3", NULL, NULL, "t", NULL), CVR_OK);
    cvr_state_t *state = self->a;
    self->a = NULL;
    s_pair_destroy (&self);
    return state;
}

//  Every node of value replaced by another type: the reader refuses it.
static void
s_assert_every_node_checked (const void *data, size_t size, bool snapshot)
{
    cvr_msg_t *msg = cvr_msg_decode (data, size);
    assert_non_null (msg);
    size_t nodes = 0;
    for (size_t target = 0; ; target++) {
        cvr_wr_t *w = cvr_wr_new ();
        size_t node = 0;
        bool hit = false;
        s_emit (w, cvr_msg_root (msg), target, &node, &hit);
        if (!hit) {
            cvr_wr_destroy (&w);
            break;
        }
        if (snapshot) {
            cvr_state_t *state = cvr_codec_read_state (cvr_wr_data (w), cvr_wr_size (w),
                                                       &s_limits);
            if (state)
                fail_msg ("snapshot with node %zu retyped was accepted", target);
        }
        else {
            cvr_msg_t *bad = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
            assert_non_null (bad);
            cvr_codec_cmd_t *cmd = cvr_codec_read_cmd (cvr_msg_root (bad));
            if (cmd)
                fail_msg ("command with node %zu retyped was accepted", target);
            cvr_msg_destroy (&bad);
        }
        cvr_wr_destroy (&w);
        nodes++;
    }
    assert_true (nodes >= 2);
    cvr_msg_destroy (&msg);
}

static cvr_state_t *
s_read_built (cvr_wr_t *w)
{
    return cvr_codec_read_state (cvr_wr_data (w), cvr_wr_size (w), &s_limits);
}

//  Snapshots that are well typed but do not describe a state.
static void
s_assert_inconsistent_refused (void)
{
    const char *cases [] = {
        "none", "version", "duplicate service", "label not a pair", "bad health",
        "duplicate topic", "partitions too big", "unknown topic", "unsorted topics",
        "unsorted assignment", "duplicate member", "duplicate instance",
        "duplicate fenced", "duplicate offset", "unknown dirty group",
        "dirty twice", "deadline overflow", "missing field", "not a map",
        "negative counter"
    };
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases [0]); c++) {
        const char *name = cases [c];
        cvr_wr_t *w = cvr_wr_new ();
        if (streq (name, "not a map")) {
            cvr_wr_array (w);
            cvr_wr_close (w);
        }
        else {
            cvr_wr_map (w);
            cvr_wr_kuint (w, "v", streq (name, "version") ? 2 : 1);
            cvr_wr_str (w, "sv");
            cvr_wr_array (w);
            int services = streq (name, "duplicate service") ? 2 : 1;
            for (int i = 0; i < services; i++) {
                cvr_wr_map (w);
                cvr_wr_kstr (w, "id", "svc");
                cvr_wr_kstr (w, "nm", "orders");
                cvr_wr_kstr (w, "h", streq (name, "bad health") ? "sick" : "healthy");
                cvr_wr_str (w, "l");
                cvr_wr_array (w);
                cvr_wr_array (w);
                cvr_wr_str (w, "zone");
                if (!streq (name, "label not a pair"))
                    cvr_wr_str (w, "eu");
                cvr_wr_close (w);
                cvr_wr_close (w);
                cvr_wr_kint (w, "w", 1);
                cvr_wr_kint (w, "ra", 1);
                cvr_wr_kint (w, "lh", 1);
                cvr_wr_kint (w, "lm", 1);
                cvr_wr_kint (w, "r", 1);
                cvr_wr_close (w);
            }
            cvr_wr_close (w);
            cvr_wr_kuint (w, "ex", 0);
            cvr_wr_str (w, "tp");
            cvr_wr_array (w);
            const char *topics [] = { "a", "b", "a" };
            int ntopics = streq (name, "duplicate topic") ? 3 : 2;
            for (int i = 0; i < ntopics; i++) {
                cvr_wr_array (w);
                cvr_wr_str (w, topics [i]);
                if (streq (name, "partitions too big"))
                    cvr_wr_uint (w, (uint64_t) UINT32_MAX + 1);
                else
                    cvr_wr_uint (w, 4);
                cvr_wr_close (w);
            }
            cvr_wr_close (w);
            cvr_wr_str (w, "gr");
            cvr_wr_array (w);
            cvr_wr_map (w);
            cvr_wr_kstr (w, "id", "g");
            cvr_wr_kint (w, "ge", 3);
            cvr_wr_kstr (w, "a", "sticky");
            cvr_wr_str (w, "mb");
            cvr_wr_array (w);
            int members = streq (name, "duplicate member")
                       || streq (name, "duplicate instance") ? 2 : 1;
            for (int i = 0; i < members; i++) {
                cvr_wr_map (w);
                cvr_wr_kstr (w, "id", streq (name, "duplicate instance") && i ? "m2" : "m1");
                cvr_wr_kstr (w, "i", "inst");
                cvr_wr_str (w, "tp");
                cvr_wr_array (w);
                if (streq (name, "unknown topic"))
                    cvr_wr_str (w, "zz");
                else
                if (streq (name, "unsorted topics")) {
                    cvr_wr_str (w, "b");
                    cvr_wr_str (w, "a");
                }
                else
                    cvr_wr_str (w, "a");
                cvr_wr_close (w);
                cvr_wr_kint (w, "st", 1000);
                cvr_wr_kint (w, "ja", 1);
                cvr_wr_kint (w, "lh", streq (name, "deadline overflow") ? INT64_MAX : 1);
                cvr_wr_str (w, "as");
                cvr_wr_array (w);
                uint64_t partitions [] = { 1, 0 };
                int owned = streq (name, "unsorted assignment") ? 2 : 1;
                for (int p = 0; p < owned; p++) {
                    cvr_wr_array (w);
                    cvr_wr_str (w, "a");
                    cvr_wr_uint (w, partitions [p]);
                    cvr_wr_close (w);
                }
                cvr_wr_close (w);
                cvr_wr_close (w);
            }
            cvr_wr_close (w);
            cvr_wr_str (w, "fe");
            cvr_wr_array (w);
            cvr_wr_str (w, "old");
            if (streq (name, "duplicate fenced"))
                cvr_wr_str (w, "old");
            cvr_wr_close (w);
            cvr_wr_str (w, "of");
            cvr_wr_array (w);
            int offsets = streq (name, "duplicate offset") ? 2 : 1;
            for (int i = 0; i < offsets; i++) {
                cvr_wr_array (w);
                cvr_wr_str (w, "a");
                cvr_wr_int (w, 1);
                cvr_wr_int (w, 10 + i);
                cvr_wr_close (w);
            }
            cvr_wr_close (w);
            cvr_wr_close (w);
            cvr_wr_close (w);
            cvr_wr_str (w, "dt");
            cvr_wr_array (w);
            int dirty = streq (name, "dirty twice") ? 2 : 1;
            for (int i = 0; i < dirty; i++) {
                cvr_wr_array (w);
                cvr_wr_str (w, streq (name, "unknown dirty group") ? "h" : "g");
                cvr_wr_str (w, "member joined");
                cvr_wr_close (w);
            }
            cvr_wr_close (w);
            if (streq (name, "negative counter"))
                cvr_wr_kint (w, "rb", -1);
            else
                cvr_wr_kuint (w, "rb", 3);
            if (!streq (name, "missing field"))
                cvr_wr_kuint (w, "mx", 0);
            cvr_wr_close (w);
        }
        cvr_state_t *state = s_read_built (w);
        //  The template itself is a valid snapshot, so each refusal is
        //  the case's doing.
        if (streq (name, "none")) {
            assert_non_null (state);
            cvr_state_t *again = s_round_trip (state);
            cvr_state_destroy (&again);
            cvr_state_destroy (&state);
        }
        else
        if (state)
            fail_msg ("inconsistent snapshot accepted: %s", name);
        cvr_wr_destroy (&w);
    }
}

static void
test_malformed_snapshots (void **unused)
{
    cvr_state_t *small = s_small_state ();
    cvr_wr_t *w = s_snapshot (small);
    const uint8_t *data = cvr_wr_data (w);
    size_t size = cvr_wr_size (w);

    //  Every truncation.
    for (size_t len = 0; len < size; len++)
        assert_null (cvr_codec_read_state (len ? data : NULL, len, &s_limits));
    //  Trailing bytes.
    uint8_t *longer = (uint8_t *) malloc (size + 1);
    memcpy (longer, data, size);
    longer [size] = 0xc0;
    assert_null (cvr_codec_read_state (longer, size + 1, &s_limits));
    free (longer);
    //  Every value, and every key, of the wrong type.
    s_assert_every_node_checked (data, size, true);
    s_assert_inconsistent_refused ();

    //  Random mutations: refused, or read as a state that is itself
    //  canonical (a changed timestamp is still a state). Never a crash.
    uint8_t *mutant = (uint8_t *) malloc (size);
    unsigned seed = 12345;
    size_t accepted = 0;
    for (int round = 0; round < 20000; round++) {
        memcpy (mutant, data, size);
        int flips = 1 + rand_r (&seed) % 4;
        for (int f = 0; f < flips; f++) {
            size_t at = (size_t) rand_r (&seed) % size;
            if (rand_r (&seed) % 2)
                mutant [at] ^= (uint8_t) (1u << (rand_r (&seed) % 8));
            else
                mutant [at] = (uint8_t) rand_r (&seed);
        }
        cvr_state_t *state = cvr_codec_read_state (mutant, size, &s_limits);
        if (state) {
            accepted++;
            cvr_state_t *again = s_round_trip (state);
            cvr_state_destroy (&again);
            cvr_state_destroy (&state);
        }
    }
    free (mutant);
    //  Most mutations break something; some only change a value.
    assert_true (accepted < 20000 / 2);

    cvr_wr_destroy (&w);
    cvr_state_destroy (&small);
}

//  One encoded command of every type, for the malformed-command checks.
static void
s_each_command (cvr_wr_t **out, size_t *count)
{
    cvr_label_t labels [] = { { "zone", "eu" } };
    cvr_service_t service = { .service_id = "svc", .service_name = "orders",
        .service_type = "sink", .endpoint = "tcp://x:1", .group_id = "sinks",
        .labels = labels, .labels_count = 1, .weight = 3, .lease_ms = 1000 };
    const char *topics [] = { "t", "u" };
    cvr_join_t join = { .group_id = "g", .member_id = "m", .instance_id = "i",
        .service_id = "svc", .service_name = "orders", .topics = topics,
        .topics_count = 2, .session_timeout_ms = 100, .assignor = "range" };
    cvr_offset_t offsets [] = { { "t", 0, 5 }, { "u", 1, 6 } };
    cvr_cmd_t cmds [] = {
        { .type = CVR_CMD_REGISTER, .now = 1, .service = &service },
        { .type = CVR_CMD_HEARTBEAT, .now = 2, .service_id = "svc",
          .health = CVR_HEALTH_DEGRADED },
        { .type = CVR_CMD_LAPSE, .now = 3, .service_id = "svc" },
        { .type = CVR_CMD_DEREGISTER, .now = 4, .service_id = "svc" },
        { .type = CVR_CMD_EXPIRE, .now = 5, .service_id = "svc" },
        { .type = CVR_CMD_CREATE_TOPIC, .now = 6, .topic = "t", .partitions = 3 },
        { .type = CVR_CMD_JOIN, .now = 7, .join = &join },
        { .type = CVR_CMD_LEAVE, .now = 8, .group_id = "g", .member_id = "m" },
        { .type = CVR_CMD_SESSION_EXPIRE, .now = 9, .group_id = "g", .member_id = "m" },
        { .type = CVR_CMD_REBALANCE, .now = 10, .group_id = "g" },
        { .type = CVR_CMD_COMMIT, .now = 11, .group_id = "g", .member_id = "m",
          .generation = 2, .offsets = offsets, .offsets_count = 2 },
        { .type = CVR_CMD_DELETE_GROUP, .now = 12, .group_id = "g" },
        { .type = CVR_CMD_RESTORE, .now = 13 },
    };
    *count = sizeof (cmds) / sizeof (cmds [0]);
    for (size_t i = 0; i < *count; i++) {
        out [i] = cvr_wr_new ();
        cvr_codec_write_cmd (out [i], &cmds [i]);
    }
}

static cvr_codec_cmd_t *
s_read_cmd_bytes (const void *data, size_t size)
{
    cvr_msg_t *msg = cvr_msg_decode (data, size);
    if (!msg)
        return NULL;
    cvr_codec_cmd_t *cmd = cvr_codec_read_cmd (cvr_msg_root (msg));
    cvr_msg_destroy (&msg);
    return cmd;
}

static void
test_malformed_commands (void **unused)
{
    cvr_wr_t *cmds [16];
    size_t count;
    s_each_command (cmds, &count);
    for (size_t i = 0; i < count; i++) {
        const uint8_t *data = cvr_wr_data (cmds [i]);
        size_t size = cvr_wr_size (cmds [i]);
        //  It reads, and writes back the same.
        cvr_codec_cmd_t *cmd = s_read_cmd_bytes (data, size);
        assert_non_null (cmd);
        assert_int_equal (cvr_codec_cmd (cmd)->type, (cvr_cmd_type_t) (i + 1));
        cvr_wr_t *again = cvr_wr_new ();
        cvr_codec_write_cmd (again, cvr_codec_cmd (cmd));
        s_assert_same_bytes (cmds [i], again);
        cvr_wr_destroy (&again);
        cvr_codec_cmd_destroy (&cmd);
        //  Every node retyped: refused. Mutations: refused or canonical.
        s_assert_every_node_checked (data, size, false);
        uint8_t *mutant = (uint8_t *) malloc (size);
        unsigned seed = (unsigned) i;
        for (int round = 0; round < 2000; round++) {
            memcpy (mutant, data, size);
            size_t at = (size_t) rand_r (&seed) % size;
            mutant [at] = (uint8_t) rand_r (&seed);
            cmd = s_read_cmd_bytes (mutant, size);
            if (cmd) {
                cvr_wr_t *w = cvr_wr_new ();
                cvr_codec_write_cmd (w, cvr_codec_cmd (cmd));
                cvr_codec_cmd_t *twice = s_read_cmd_bytes (cvr_wr_data (w), cvr_wr_size (w));
                assert_non_null (twice);
                cvr_codec_cmd_destroy (&twice);
                cvr_wr_destroy (&w);
                cvr_codec_cmd_destroy (&cmd);
            }
        }
        free (mutant);
    }
    //  By hand: not a map, an unknown type, a join without topics, a
    //  health that is not one, an offset that is not a triple, NULL.
    assert_null (cvr_codec_read_cmd (NULL));
    const char *cases [] = { "array", "type 0", "type 14", "no topics", "health",
                             "offset pair", "no now", "nul in string" };
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases [0]); c++) {
        const char *name = cases [c];
        cvr_wr_t *w = cvr_wr_new ();
        if (streq (name, "array")) {
            cvr_wr_array (w);
            cvr_wr_close (w);
        }
        else {
            cvr_wr_map (w);
            int type = streq (name, "type 0") ? 0 : streq (name, "type 14") ? 14
                     : streq (name, "no topics") ? CVR_CMD_JOIN
                     : streq (name, "health") ? CVR_CMD_HEARTBEAT
                     : streq (name, "offset pair") ? CVR_CMD_COMMIT : CVR_CMD_LAPSE;
            cvr_wr_kint (w, "t", type);
            if (!streq (name, "no now"))
                cvr_wr_kint (w, "n", 1);
            if (streq (name, "nul in string")) {
                cvr_wr_str (w, "s");
                cvr_wr_strn (w, "a\0b", 3);
            }
            else
                cvr_wr_kstr (w, "s", "svc");
            cvr_wr_kstr (w, "h", "sick");
            cvr_wr_kstr (w, "g", "g");
            cvr_wr_kstr (w, "m", "m");
            cvr_wr_kint (w, "ge", 1);
            cvr_wr_str (w, "o");
            cvr_wr_array (w);
            cvr_wr_array (w);
            cvr_wr_str (w, "t");
            cvr_wr_int (w, 0);
            cvr_wr_close (w);
            cvr_wr_close (w);
            cvr_wr_str (w, "j");
            cvr_wr_map (w);
            cvr_wr_kstr (w, "g", "g");
            cvr_wr_kstr (w, "m", "m");
            cvr_wr_kint (w, "st", 1);
            cvr_wr_str (w, "tp");
            cvr_wr_array (w);
            cvr_wr_close (w);
            cvr_wr_close (w);
            cvr_wr_close (w);
        }
        cvr_codec_cmd_t *cmd = s_read_cmd_bytes (cvr_wr_data (w), cvr_wr_size (w));
        if (cmd)
            fail_msg ("malformed command accepted: %s", name);
        cvr_wr_destroy (&w);
    }
    for (size_t i = 0; i < count; i++)
        cvr_wr_destroy (&cmds [i]);
}

//  One decoder reads a stream of commands, as the raft thread does: each
//  read replaces the last (its zone is cleared, not freed), a command
//  outlives the bytes it was read from, a refused one leaves the decoder
//  fit for the next, and one too big for the zone's first chunk reads too.
//  A registration's service read from a map in any key order: a nil
//  optional field is absent, a later duplicate wins, a required field
//  absent or nil refuses the command.
static void
test_service_fields_any_order (void **unused)
{
    const char *cases [] = { "ok", "no id", "nil name" };
    for (size_t c = 0; c < sizeof (cases) / sizeof (cases [0]); c++) {
        cvr_wr_t *w = cvr_wr_new ();
        cvr_wr_map (w);
        cvr_wr_kint (w, "t", CVR_CMD_REGISTER);
        cvr_wr_kint (w, "n", 5);
        cvr_wr_str (w, "sv");
        cvr_wr_map (w);
        cvr_wr_kint (w, "r", 3);
        cvr_wr_kstr (w, "ep", "tcp://first");
        cvr_wr_str (w, "l");
        cvr_wr_array (w);
        cvr_wr_array (w);
        cvr_wr_str (w, "zone");
        cvr_wr_str (w, "a");
        cvr_wr_close (w);
        cvr_wr_close (w);
        cvr_wr_kint (w, "lm", 1000);
        cvr_wr_kint (w, "lh", 7);
        cvr_wr_kint (w, "ra", 6);
        cvr_wr_kint (w, "w", 50);
        cvr_wr_kstr (w, "h", "degraded");
        cvr_wr_str (w, "ty");
        cvr_wr_nil (w);
        if (streq (cases [c], "nil name")) {
            cvr_wr_str (w, "nm");
            cvr_wr_nil (w);
        }
        else
            cvr_wr_kstr (w, "nm", "orders");
        cvr_wr_kstr (w, "ep", "tcp://second");
        if (!streq (cases [c], "no id"))
            cvr_wr_kstr (w, "id", "svc-1");
        cvr_wr_close (w);
        cvr_wr_close (w);
        cvr_codec_cmd_t *cmd = s_read_cmd_bytes (cvr_wr_data (w), cvr_wr_size (w));
        cvr_wr_destroy (&w);
        if (!streq (cases [c], "ok")) {
            assert_null (cmd);
            continue;
        }
        assert_non_null (cmd);
        const cvr_service_t *service = cvr_codec_cmd (cmd)->service;
        assert_string_equal (service->service_id, "svc-1");
        assert_string_equal (service->service_name, "orders");
        assert_null (service->service_type);
        assert_string_equal (service->endpoint, "tcp://second");
        assert_null (service->group_id);
        assert_int_equal (service->health, CVR_HEALTH_DEGRADED);
        assert_int_equal (service->weight, 50);
        assert_int_equal (service->registered_at, 6);
        assert_int_equal (service->last_heartbeat_at, 7);
        assert_int_equal (service->lease_ms, 1000);
        assert_int_equal (service->revision, 3);
        assert_int_equal (service->labels_count, 1);
        assert_string_equal (service->labels [0].key, "zone");
        assert_string_equal (service->labels [0].value, "a");
        cvr_codec_cmd_destroy (&cmd);
    }
}

static void
test_one_decoder_reads_a_stream (void **unused)
{
    cvr_wr_t *cmds [17];
    size_t count;
    s_each_command (cmds, &count);
    //  A registration bigger than a chunk: 40 labels of 100 bytes each.
    char *labels_key [40], *labels_value [40];
    cvr_label_t labels [40];
    for (int i = 0; i < 40; i++) {
        labels_key [i] = zsys_sprintf ("key-%02d-%090d", i, 0);
        labels_value [i] = zsys_sprintf ("value-%02d-%088d", i, i);
        labels [i] = (cvr_label_t) { labels_key [i], labels_value [i] };
    }
    cvr_service_t big = { .service_id = "big", .service_name = "big-name",
                          .service_type = "sink", .endpoint = "tcp://h:1",
                          .labels = labels, .labels_count = 40, .lease_ms = 5 };
    cvr_cmd_t big_cmd = { .type = CVR_CMD_REGISTER, .now = 7, .service = &big };
    cmds [count] = cvr_wr_new ();
    cvr_codec_write_cmd (cmds [count], &big_cmd);
    count++;
    cvr_codec_cmd_t *decoder = cvr_codec_cmd_new ();
    unsigned seed = 7;
    for (int round = 0; round < 50; round++)
        for (size_t i = 0; i < count; i++) {
            size_t at = (i * 7 + (size_t) round) % count;
            size_t size = cvr_wr_size (cmds [at]);
            uint8_t *bytes = (uint8_t *) malloc (size);
            memcpy (bytes, cvr_wr_data (cmds [at]), size);
            bool mutated = round % 2 == 1;
            if (mutated)
                bytes [(size_t) rand_r (&seed) % size] = (uint8_t) rand_r (&seed);
            cvr_msg_t *msg = cvr_msg_decode (bytes, size);
            const cvr_cmd_t *cmd = msg ? cvr_codec_cmd_read (decoder, cvr_msg_root (msg)) : NULL;
            cvr_codec_cmd_t *fresh = msg ? cvr_codec_read_cmd (cvr_msg_root (msg)) : NULL;
            //  The same verdict as a decoder of its own.
            assert_true ((cmd == NULL) == (fresh == NULL));
            if (!mutated)
                assert_non_null (cmd);
            //  The bytes read are gone before the command is used.
            cvr_msg_destroy (&msg);
            memset (bytes, 0xA5, size);
            free (bytes);
            if (cmd) {
                cvr_wr_t *mine = cvr_wr_new (), *theirs = cvr_wr_new ();
                cvr_codec_write_cmd (mine, cmd);
                cvr_codec_write_cmd (theirs, cvr_codec_cmd (fresh));
                s_assert_same_bytes (mine, theirs);
                if (!mutated)
                    s_assert_same_bytes (cmds [at], mine);
                cvr_wr_destroy (&mine);
                cvr_wr_destroy (&theirs);
            }
            cvr_codec_cmd_destroy (&fresh);
        }
    cvr_codec_cmd_destroy (&decoder);
    assert_null (decoder);
    for (size_t i = 0; i < count; i++)
        cvr_wr_destroy (&cmds [i]);
    for (int i = 0; i < 40; i++) {
        zstr_free (&labels_key [i]);
        zstr_free (&labels_value [i]);
    }
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_commands_in_lock_step),
        cmocka_unit_test (test_snapshot_round_trip_and_continue),
        cmocka_unit_test (test_snapshot_keeps_session_deadlines),
        cmocka_unit_test (test_malformed_snapshots),
        cmocka_unit_test (test_malformed_commands),
        cmocka_unit_test (test_service_fields_any_order),
        cmocka_unit_test (test_one_decoder_reads_a_stream),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
