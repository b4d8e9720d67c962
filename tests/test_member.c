/*  test_member.c: the client's group calls and cvr_member against a real
    server actor over TCP on ephemeral ports.

    Every wait is a bounded poll on a condition (mutex-protected state the
    callbacks accumulate, or the member's getters); a sleep is only ever
    the step of such a poll.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <pthread.h>
#include <cmocka.h>
#include <czmq.h>
#include "conveyor/conveyor.h"

#define TIMEOUT 3000            //  per request
#define WAIT_MS 5000            //  bound of every wait on a condition
#define LONG_SESSION 30000      //  heartbeats every 10 s: what arrives within
                                //  WAIT_MS came through events
#define PARTITIONS 12

//  Test hook of cvr_member.c (not in the public header).
void
    cvr_member_test_set (cvr_member_t *self, bool deaf, bool paused);

//  Polls cond every 5 ms until it holds or ms have passed.
#define WAIT_UNTIL(cond, ms) do {                                   \
    int64_t wait_deadline_ = zclock_mono () + (ms);                 \
    while (!(cond) && zclock_mono () < wait_deadline_)              \
        zclock_sleep (5);                                           \
} while (0)

//  --------------------------------------------------------------------------
//  A server actor on ephemeral ports

typedef struct {
    zactor_t *actor;
    char *requests;
    char *events;
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

//  Starts a server on the endpoints given (NULL: ephemeral TCP ports).
static void
s_server_start_on (s_server_t *server, const char *requests, const char *events)
{
    server->actor = zactor_new (cvr_server, "member-test");
    assert_non_null (server->actor);
    const char *commands [][3] = {
        { "SET", "log-level", "warn" }, { "SET", "min-lease-ms", "100" },
        { "BIND", requests ? requests : "tcp://127.0.0.1:*", NULL },
        { "PUBLISH", events ? events : "tcp://127.0.0.1:*", NULL },
        { "START", NULL, NULL }
    };
    for (size_t i = 0; i < sizeof (commands) / sizeof (commands [0]); i++) {
        zstr_sendx (server->actor, commands [i][0], commands [i][1], commands [i][2], NULL);
        s_expect_ok (server->actor, commands [i][0]);
    }
    zstr_sendx (server->actor, "ENDPOINTS", NULL);
    assert_int_equal (zstr_recvx (server->actor, &server->requests, &server->events, NULL), 2);
}

static void
s_server_start (s_server_t *server)
{
    s_server_start_on (server, NULL, NULL);
}

static void
s_server_stop (s_server_t *server)
{
    zactor_destroy (&server->actor);
    zstr_free (&server->requests);
    zstr_free (&server->events);
}

static const char *s_orders [] = { "orders" };

//  --------------------------------------------------------------------------
//  Client group calls

static void
s_assert_sorted (const cvr_assignment_t *a)
{
    for (size_t i = 1; i < a->count; i++) {
        int rc = strcmp (a->items [i - 1].topic, a->items [i].topic);
        assert_true (rc < 0 || (rc == 0 && a->items [i - 1].partition < a->items [i].partition));
    }
}

static bool
s_same_assignment (const cvr_assignment_t *a, const cvr_assignment_t *b)
{
    if (a->count != b->count)
        return false;
    for (size_t i = 0; i < a->count; i++)
        if (!streq (a->items [i].topic, b->items [i].topic)
        ||  a->items [i].partition != b->items [i].partition)
            return false;
    return true;
}

static const cvr_group_member_t *
s_find_member (const cvr_group_t *group, const char *member_id)
{
    for (size_t i = 0; i < group->members_count; i++)
        if (streq (group->members [i].member_id, member_id))
            return &group->members [i];
    return NULL;
}

static void
test_client_topics_and_groups (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_non_null (client);

    //  Topics: create, same count, grow, shrink refused, bad name.
    int64_t granted = 0;
    assert_int_equal (cvr_client_create_topic (client, "orders", 4, &granted), CVR_OK);
    assert_int_equal (granted, 4);
    assert_int_equal (cvr_client_create_topic (client, "orders", 4, &granted), CVR_OK);
    assert_int_equal (granted, 4);
    assert_int_equal (cvr_client_create_topic (client, "orders", 6, &granted), CVR_OK);
    assert_int_equal (granted, 6);
    assert_int_equal (cvr_client_create_topic (client, "orders", 2, &granted), CVR_CONFLICT);
    assert_int_equal (cvr_client_error (client), CVR_CONFLICT);
    assert_true (strlen (cvr_client_message (client)) > 0);
    assert_int_equal (cvr_client_create_topic (client, "bad name", 2, NULL), CVR_BAD_REQUEST);
    assert_int_equal (cvr_client_create_topic (client, "audit", 3, NULL), CVR_OK);
    cvr_topic_list_t *topics = NULL;
    assert_int_equal (cvr_client_list_topics (client, &topics), CVR_OK);
    assert_int_equal (topics->count, 2);
    assert_string_equal (topics->items [0].name, "audit");
    assert_int_equal (topics->items [0].partitions, 3);
    assert_string_equal (topics->items [1].name, "orders");
    assert_int_equal (topics->items [1].partitions, 6);
    cvr_topic_list_destroy (&topics);
    assert_null (topics);

    //  Joins: a server-made id after the service name, then a chosen one.
    const char *both [] = { "orders", "audit" };
    cvr_join_options_t first = { .service_name = "svc", .session_timeout_ms = 60000,
                                 .assignor = "range" };
    cvr_join_result_t j1;
    assert_int_equal (cvr_client_join_group (client, "g1", both, 2, &first, &j1), CVR_OK);
    assert_string_equal (j1.group_id, "g1");
    assert_true (strncmp (j1.member_id, "svc-", 4) == 0);
    assert_int_equal (j1.generation, 1);
    assert_int_equal (j1.assignment.count, 9);
    s_assert_sorted (&j1.assignment);
    assert_string_equal (j1.assignment.items [0].topic, "audit");
    assert_true (cvr_assignment_contains (&j1.assignment, "orders", 5));
    assert_false (cvr_assignment_contains (&j1.assignment, "orders", 6));
    assert_int_equal (j1.members_count, 1);
    assert_string_equal (j1.members [0], j1.member_id);

    cvr_join_options_t second = { .member_id = "m2", .instance_id = "inst-2" };
    cvr_join_result_t j2;
    assert_int_equal (cvr_client_join_group (client, "g1", both, 2, &second, &j2), CVR_OK);
    assert_string_equal (j2.member_id, "m2");
    assert_int_equal (j2.generation, 2);
    assert_int_equal (j2.members_count, 2);
    assert_true (strcmp (j2.members [0], j2.members [1]) < 0);
    s_assert_sorted (&j2.assignment);
    //  range: 6 orders partitions 3 + 3, 3 audit partitions 2 + 1.
    assert_true (j2.assignment.count == 4 || j2.assignment.count == 5);
    //  An unknown assignor, and another one while the group has members.
    cvr_join_result_t bad;
    cvr_join_options_t unknown = { .assignor = "fifo" };
    assert_int_equal (cvr_client_join_group (client, "g1", both, 2, &unknown, &bad),
                      CVR_BAD_REQUEST);
    assert_null (bad.member_id);
    cvr_join_options_t other = { .assignor = "sticky" };
    assert_int_equal (cvr_client_join_group (client, "g1", both, 2, &other, &bad),
                      CVR_CONFLICT);

    //  Heartbeats: stale gets the assignment, current does not.
    int64_t current = 0;
    cvr_assignment_t *stale = NULL;
    assert_int_equal (cvr_client_group_heartbeat (client, "g1", j1.member_id, 1,
                                                  &current, &stale), CVR_OK);
    assert_int_equal (current, 2);
    assert_non_null (stale);
    assert_int_equal (stale->count + j2.assignment.count, 9);
    for (size_t i = 0; i < stale->count; i++)
        assert_false (cvr_assignment_contains (&j2.assignment, stale->items [i].topic,
                                               stale->items [i].partition));
    cvr_assignment_t *fresh = (cvr_assignment_t *) 1;
    assert_int_equal (cvr_client_group_heartbeat (client, "g1", j1.member_id, 2,
                                                  &current, &fresh), CVR_OK);
    assert_int_equal (current, 2);
    assert_null (fresh);
    assert_int_equal (cvr_client_group_heartbeat (client, "g1", "ghost", 2, NULL, NULL),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (cvr_client_group_heartbeat (client, "nope", "m2", 2, NULL, NULL),
                      CVR_NOT_FOUND);

    //  get_group, typed.
    cvr_group_t *group = NULL;
    uint64_t seq = 0;
    assert_int_equal (cvr_client_get_group (client, "g1", &group, &seq), CVR_OK);
    assert_true (seq > 0);
    assert_string_equal (group->group_id, "g1");
    assert_int_equal (group->generation, 2);
    assert_string_equal (group->assignor, "range");
    assert_int_equal (group->topics_count, 2);
    assert_string_equal (group->topics [0].name, "audit");
    assert_int_equal (group->topics [0].partitions, 3);
    assert_string_equal (group->topics [1].name, "orders");
    assert_int_equal (group->members_count, 2);
    const cvr_group_member_t *m1 = s_find_member (group, j1.member_id);
    const cvr_group_member_t *m2 = s_find_member (group, "m2");
    assert_non_null (m1);
    assert_non_null (m2);
    assert_string_equal (m1->service_name, "svc");
    assert_null (m1->service_id);
    assert_null (m1->instance_id);
    assert_int_equal (m1->session_timeout_ms, 60000);
    assert_int_equal (m1->topics_count, 2);
    assert_string_equal (m1->topics [0], "audit");
    assert_string_equal (m1->topics [1], "orders");
    assert_true (s_same_assignment (&m1->assignment, stale));
    assert_true (m1->joined_at > 0);
    assert_true (m1->last_heartbeat_at >= m1->joined_at);
    assert_string_equal (m2->instance_id, "inst-2");
    assert_null (m2->service_name);
    assert_int_equal (m2->session_timeout_ms, 30000);
    assert_true (s_same_assignment (&m2->assignment, &j2.assignment));
    cvr_group_destroy (&group);
    assert_null (group);
    assert_int_equal (cvr_client_get_group (client, "nope", &group, NULL), CVR_NOT_FOUND);
    assert_null (group);
    cvr_assignment_destroy (&stale);

    //  list_groups.
    cvr_group_list_t *groups = NULL;
    assert_int_equal (cvr_client_list_groups (client, &groups), CVR_OK);
    assert_int_equal (groups->count, 1);
    assert_string_equal (groups->items [0].group_id, "g1");
    assert_int_equal (groups->items [0].generation, 2);
    assert_int_equal (groups->items [0].members, 2);
    assert_true (groups->seq >= seq);
    cvr_group_list_destroy (&groups);

    //  Leaves; delete_group only once empty.
    assert_int_equal (cvr_client_leave_group (client, "g1", "m2"), CVR_OK);
    assert_int_equal (cvr_client_leave_group (client, "g1", "m2"), CVR_UNKNOWN_MEMBER);
    assert_int_equal (cvr_client_leave_group (client, "nope", "m2"), CVR_NOT_FOUND);
    assert_int_equal (cvr_client_delete_group (client, "g1"), CVR_CONFLICT);
    assert_int_equal (cvr_client_leave_group (client, "g1", j1.member_id), CVR_OK);
    //  An empty group keeps its generation. (A leave is answered before
    //  the rebalance it causes, which follows the batch of requests the
    //  server is draining: the next read may come before it.)
    int64_t generation = 0;
    uint64_t members = 1;
    int64_t deadline = zclock_mono () + WAIT_MS;
    while ((generation != 4 || members != 0) && zclock_mono () < deadline) {
        assert_int_equal (cvr_client_list_groups (client, &groups), CVR_OK);
        assert_int_equal (groups->count, 1);
        generation = groups->items [0].generation;
        members = groups->items [0].members;
        cvr_group_list_destroy (&groups);
    }
    assert_int_equal (generation, 4);
    assert_int_equal (members, 0);
    assert_int_equal (cvr_client_delete_group (client, "g1"), CVR_OK);
    assert_int_equal (cvr_client_delete_group (client, "g1"), CVR_NOT_FOUND);
    assert_int_equal (cvr_client_list_groups (client, &groups), CVR_OK);
    assert_int_equal (groups->count, 0);
    cvr_group_list_destroy (&groups);

    cvr_join_result_clear (&j1);
    cvr_join_result_clear (&j2);
    cvr_join_result_clear (&bad);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static void
test_client_offsets (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_int_equal (cvr_client_create_topic (client, "orders", 4, NULL), CVR_OK);
    cvr_join_options_t a = { .member_id = "a" }, b = { .member_id = "b" };
    cvr_join_result_t ja, jb;
    assert_int_equal (cvr_client_join_group (client, "g", s_orders, 1, &a, &ja), CVR_OK);
    assert_int_equal (cvr_client_join_group (client, "g", s_orders, 1, &b, &jb), CVR_OK);
    assert_int_equal (jb.generation, 2);
    cvr_assignment_t *mine = NULL;
    int64_t generation;
    assert_int_equal (cvr_client_group_heartbeat (client, "g", "a", 1, &generation, &mine),
                      CVR_OK);
    assert_int_equal (mine->count, 2);
    assert_int_equal (jb.assignment.count, 2);
    cvr_partition_t own = mine->items [0], theirs = jb.assignment.items [0];

    cvr_committed_t ok [] = { { own.topic, own.partition, 42 } };
    assert_int_equal (cvr_client_commit_offsets (client, "g", "a", 2, ok, 1), CVR_OK);
    //  The error codes, in the order the spec checks them.
    assert_int_equal (cvr_client_commit_offsets (client, "nope", "a", 2, ok, 1), CVR_NOT_FOUND);
    assert_int_equal (cvr_client_commit_offsets (client, "g", "ghost", 1, ok, 1),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (cvr_client_commit_offsets (client, "g", "a", 1, ok, 1),
                      CVR_ILLEGAL_GENERATION);
    cvr_committed_t mixed [] = { { own.topic, own.partition, 50 },
                                 { theirs.topic, theirs.partition, 7 } };
    assert_int_equal (cvr_client_commit_offsets (client, "g", "a", 2, mixed, 2), CVR_NOT_OWNER);
    cvr_committed_t negative [] = { { own.topic, own.partition, -5 } };
    assert_int_equal (cvr_client_commit_offsets (client, "g", "a", 2, negative, 1),
                      CVR_BAD_REQUEST);

    //  Fetch the partitions asked, in order, -1 where none: the NOT_OWNER
    //  commit changed nothing (all or nothing).
    cvr_partition_t asked [] = { theirs, own };
    cvr_committed_list_t *offsets = NULL;
    assert_int_equal (cvr_client_fetch_offsets (client, "g", asked, 2, &offsets), CVR_OK);
    assert_int_equal (offsets->count, 2);
    assert_string_equal (offsets->items [0].topic, theirs.topic);
    assert_int_equal (offsets->items [0].partition, theirs.partition);
    assert_int_equal (offsets->items [0].offset, -1);
    assert_int_equal (offsets->items [1].partition, own.partition);
    assert_int_equal (offsets->items [1].offset, 42);
    cvr_committed_list_destroy (&offsets);
    assert_null (offsets);
    //  Without partitions: every committed one.
    assert_int_equal (cvr_client_fetch_offsets (client, "g", NULL, 0, &offsets), CVR_OK);
    assert_int_equal (offsets->count, 1);
    assert_int_equal (offsets->items [0].offset, 42);
    cvr_committed_list_destroy (&offsets);
    assert_int_equal (cvr_client_fetch_offsets (client, "nope", NULL, 0, &offsets),
                      CVR_NOT_FOUND);
    assert_null (offsets);

    //  Offsets outlive rebalances and the members.
    assert_int_equal (cvr_client_leave_group (client, "g", "a"), CVR_OK);
    assert_int_equal (cvr_client_commit_offsets (client, "g", "a", 3, ok, 1),
                      CVR_UNKNOWN_MEMBER);
    assert_int_equal (cvr_client_leave_group (client, "g", "b"), CVR_OK);
    assert_int_equal (cvr_client_fetch_offsets (client, "g", NULL, 0, &offsets), CVR_OK);
    assert_int_equal (offsets->count, 1);
    cvr_committed_list_destroy (&offsets);

    cvr_assignment_destroy (&mine);
    cvr_join_result_clear (&ja);
    cvr_join_result_clear (&jb);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  --------------------------------------------------------------------------
//  What a member's callbacks saw

#define LOG_MAX 256

typedef struct {
    char kind;                  //  'A' assigned, 'R' revoked
    int64_t generation;
    int count;
} s_entry_t;

typedef struct {
    pthread_mutex_t lock;
    bool owned [PARTITIONS];    //  the set the callbacks add up to
    int count;
    int64_t generation;         //  the latest a callback was given
    s_entry_t log [LOG_MAX];
    size_t logged;
    int fenced;                 //  on_fenced calls
    char error [256];           //  the first inconsistency seen
    cvr_member_t *member;       //  set once cvr_member_new returned; for
                                //  commits from callbacks
    bool commit_on_revoke;      //  on_revoked commits offset 1000 + p
    int revoke_commits_ok;
} s_rec_t;

static void
s_rec_init (s_rec_t *rec)
{
    memset (rec, 0, sizeof (s_rec_t));
    pthread_mutex_init (&rec->lock, NULL);
}

static void
s_rec_fini (s_rec_t *rec)
{
    pthread_mutex_destroy (&rec->lock);
}

static void
s_record (s_rec_t *rec, char kind, const cvr_assignment_t *partitions, int64_t generation)
{
    pthread_mutex_lock (&rec->lock);
    if (partitions->count == 0 && !*rec->error)
        snprintf (rec->error, sizeof (rec->error), "a callback with an empty set");
    if (generation < rec->generation && !*rec->error)
        snprintf (rec->error, sizeof (rec->error), "generation went back from %" PRId64
                  " to %" PRId64, rec->generation, generation);
    rec->generation = generation;
    for (size_t i = 0; i < partitions->count; i++) {
        int32_t p = partitions->items [i].partition;
        if (!streq (partitions->items [i].topic, "orders") || p < 0 || p >= PARTITIONS) {
            snprintf (rec->error, sizeof (rec->error), "unexpected partition");
            continue;
        }
        if (rec->owned [p] == (kind == 'A') && !*rec->error)
            snprintf (rec->error, sizeof (rec->error), "%s partition %d twice",
                      kind == 'A' ? "assigned" : "revoked", p);
        rec->owned [p] = kind == 'A';
        rec->count += kind == 'A' ? 1 : -1;
    }
    if (rec->logged < LOG_MAX)
        rec->log [rec->logged++] = (s_entry_t) { kind, generation, (int) partitions->count };
    pthread_mutex_unlock (&rec->lock);
}

static void
s_on_assigned (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    s_record ((s_rec_t *) arg, 'A', partitions, generation);
}

static void
s_on_revoked (const cvr_assignment_t *partitions, int64_t generation, void *arg)
{
    s_rec_t *rec = (s_rec_t *) arg;
    pthread_mutex_lock (&rec->lock);
    bool commit = rec->commit_on_revoke && rec->member;
    pthread_mutex_unlock (&rec->lock);
    if (commit) {
        cvr_committed_t *offsets = (cvr_committed_t *) calloc (partitions->count,
                                                               sizeof (cvr_committed_t));
        for (size_t i = 0; i < partitions->count; i++)
            offsets [i] = (cvr_committed_t) { partitions->items [i].topic,
                                              partitions->items [i].partition,
                                              1000 + partitions->items [i].partition };
        if (cvr_member_commit (rec->member, offsets, partitions->count) == CVR_OK) {
            pthread_mutex_lock (&rec->lock);
            rec->revoke_commits_ok++;
            pthread_mutex_unlock (&rec->lock);
        }
        free (offsets);
    }
    s_record (rec, 'R', partitions, generation);
}

static void
s_on_fenced (const char *member_id, void *arg)
{
    s_rec_t *rec = (s_rec_t *) arg;
    pthread_mutex_lock (&rec->lock);
    rec->fenced++;
    pthread_mutex_unlock (&rec->lock);
}

static int
s_rec_count (s_rec_t *rec)
{
    pthread_mutex_lock (&rec->lock);
    int count = rec->count;
    pthread_mutex_unlock (&rec->lock);
    return count;
}

static int
s_rec_fenced (s_rec_t *rec)
{
    pthread_mutex_lock (&rec->lock);
    int fenced = rec->fenced;
    pthread_mutex_unlock (&rec->lock);
    return fenced;
}

static void
s_rec_check (s_rec_t *rec)
{
    pthread_mutex_lock (&rec->lock);
    if (*rec->error)
        fail_msg ("callbacks: %s", rec->error);
    pthread_mutex_unlock (&rec->lock);
}

//  Revoked before assigned within every generation (for members that
//  never lost their membership, where every entry is a rebalance's).
//  Returns how many generations had both.
static int
s_rec_order (s_rec_t *rec)
{
    int both = 0;
    pthread_mutex_lock (&rec->lock);
    for (size_t i = 0; i < rec->logged; i++)
        for (size_t j = i + 1; j < rec->logged; j++)
            if (rec->log [i].generation == rec->log [j].generation) {
                if (rec->log [i].kind == 'A' && rec->log [j].kind == 'R')
                    fail_msg ("assigned before revoked in generation %" PRId64,
                              rec->log [i].generation);
                both++;
            }
    pthread_mutex_unlock (&rec->lock);
    return both;
}

//  True if the callbacks saw a change in generation.
static bool
s_rec_saw (s_rec_t *rec, int64_t generation)
{
    bool saw = false;
    pthread_mutex_lock (&rec->lock);
    for (size_t i = 0; i < rec->logged; i++)
        saw |= rec->log [i].generation == generation;
    pthread_mutex_unlock (&rec->lock);
    return saw;
}

//  The callbacks' set equals the member's own view.
static void
s_rec_matches (s_rec_t *rec, cvr_member_t *member)
{
    cvr_assignment_t *assignment = cvr_member_assignment (member);
    pthread_mutex_lock (&rec->lock);
    assert_int_equal (assignment->count, rec->count);
    for (size_t i = 0; i < assignment->count; i++)
        assert_true (rec->owned [assignment->items [i].partition]);
    pthread_mutex_unlock (&rec->lock);
    cvr_assignment_destroy (&assignment);
}

static int s_timeout_ms = TIMEOUT;     //  members' request bound

static cvr_member_t *
s_member (s_server_t *server, s_rec_t *rec, const char *instance_id,
          int64_t session_ms, const char *assignor)
{
    cvr_member_config_t config = {
        .group_id = "g", .topics = s_orders, .topics_count = 1,
        .instance_id = instance_id, .session_timeout_ms = session_ms,
        .assignor = assignor, .timeout_ms = s_timeout_ms,
        .on_assigned = s_on_assigned, .on_revoked = s_on_revoked,
        .on_fenced = s_on_fenced, .arg = rec
    };
    cvr_err_t err = CVR_INTERNAL;
    cvr_member_t *member = cvr_member_new (server->requests, &config, &err);
    assert_int_equal (err, CVR_OK);
    assert_non_null (member);
    pthread_mutex_lock (&rec->lock);
    rec->member = member;
    pthread_mutex_unlock (&rec->lock);
    return member;
}

static int64_t
s_group_generation (cvr_client_t *client, size_t *members)
{
    cvr_group_t *group = NULL;
    assert_int_equal (cvr_client_get_group (client, "g", &group, NULL), CVR_OK);
    int64_t generation = group->generation;
    if (members)
        *members = group->members_count;
    cvr_group_destroy (&group);
    return generation;
}

//  True once the member is at the group's current generation.
static bool
s_in_step (cvr_client_t *client, cvr_member_t *member)
{
    return cvr_member_generation (member) == s_group_generation (client, NULL);
}

//  --------------------------------------------------------------------------
//  Members

static void
test_member_bad_config (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_err_t err = CVR_OK;
    cvr_member_config_t config = { .group_id = "g", .timeout_ms = TIMEOUT };
    assert_null (cvr_member_new (server.requests, &config, &err));
    assert_int_equal (err, CVR_BAD_REQUEST);
    config.topics = s_orders;
    config.topics_count = 1;
    config.group_id = "bad group";
    assert_null (cvr_member_new (server.requests, &config, &err));
    assert_int_equal (err, CVR_BAD_REQUEST);
    config.group_id = "g";
    config.assignor = "fifo";
    assert_null (cvr_member_new (server.requests, &config, &err));
    assert_int_equal (err, CVR_BAD_REQUEST);
    //  The group's assignor is range: sticky conflicts while it has members.
    config.assignor = "range";
    cvr_member_t *member = cvr_member_new (server.requests, &config, &err);
    assert_non_null (member);
    assert_int_equal (cvr_member_generation (member), 1);
    config.assignor = "sticky";
    assert_null (cvr_member_new (server.requests, &config, &err));
    assert_int_equal (err, CVR_CONFLICT);
    cvr_member_destroy (&member);
    assert_null (member);
    //  Nobody there: the first join times out.
    config.timeout_ms = 200;
    config.assignor = NULL;
    assert_null (cvr_member_new ("tcp://127.0.0.1:1", &config, &err));
    assert_int_equal (err, CVR_TIMEOUT);
    s_server_stop (&server);
}

//  Three members share 12 partitions; one leaves cleanly, one "dies".
static void
test_member_rebalances (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    assert_int_equal (cvr_client_create_topic (client, "orders", PARTITIONS, NULL), CVR_OK);

    //  roundrobin: whichever member goes, a survivor both loses and gains
    //  partitions, so the order of the callbacks is seen.
    s_rec_t rec [3];
    cvr_member_t *members [3];
    for (int i = 0; i < 3; i++) {
        s_rec_init (&rec [i]);
        members [i] = s_member (&server, &rec [i], NULL, LONG_SESSION, "roundrobin");
        //  The join returned after the initial on_assigned.
        assert_true (s_rec_count (&rec [i]) > 0);
        assert_int_equal (cvr_member_generation (members [i]), i + 1);
    }
    WAIT_UNTIL (s_rec_count (&rec [0]) == 4 && s_rec_count (&rec [1]) == 4
                && cvr_member_generation (members [0]) == 3
                && cvr_member_generation (members [1]) == 3, WAIT_MS);
    bool seen [PARTITIONS] = { false };
    for (int i = 0; i < 3; i++) {
        s_rec_check (&rec [i]);
        assert_int_equal (s_rec_count (&rec [i]), 4);
        assert_int_equal (cvr_member_generation (members [i]), 3);
        s_rec_matches (&rec [i], members [i]);
        s_rec_order (&rec [i]);
        for (int p = 0; p < PARTITIONS; p++)
            if (rec [i].owned [p]) {
                assert_false (seen [p]);
                seen [p] = true;
            }
    }

    //  A clean leave: the survivors get 6 each through events (heartbeats
    //  are 10 s apart), revoked before assigned.
    cvr_member_destroy (&members [1]);
    s_rec_check (&rec [1]);
    assert_int_equal (s_rec_count (&rec [1]), 0);
    WAIT_UNTIL (s_rec_count (&rec [0]) == 6 && s_rec_count (&rec [2]) == 6
                && cvr_member_generation (members [0]) == 4
                && cvr_member_generation (members [2]) == 4, WAIT_MS);
    assert_int_equal (s_rec_count (&rec [0]), 6);
    assert_int_equal (s_rec_count (&rec [2]), 6);
    assert_int_equal (cvr_member_generation (members [0]), 4);
    assert_int_equal (cvr_member_generation (members [2]), 4);
    assert_true (s_rec_saw (&rec [0], 4) && s_rec_saw (&rec [2], 4));
    assert_true (s_rec_order (&rec [0]) + s_rec_order (&rec [2]) >= 1);
    for (int i = 0; i < 3; i += 2) {
        s_rec_check (&rec [i]);
        s_rec_matches (&rec [i], members [i]);
        assert_int_equal (cvr_member_joins (members [i]), 1);
    }

    //  A member that dies: joined with a 300 ms session and never heard
    //  from again. Its join and its expiry each rebalance the survivors.
    cvr_join_options_t ghost = { .member_id = "ghost", .session_timeout_ms = 300 };
    cvr_join_result_t joined;
    assert_int_equal (cvr_client_join_group (client, "g", s_orders, 1, &ghost, &joined),
                      CVR_OK);
    assert_int_equal (joined.generation, 5);
    assert_int_equal (joined.assignment.count, 4);
    cvr_join_result_clear (&joined);
    WAIT_UNTIL (cvr_member_generation (members [0]) == 6
                && cvr_member_generation (members [2]) == 6
                && s_rec_count (&rec [0]) == 6 && s_rec_count (&rec [2]) == 6, WAIT_MS);
    assert_int_equal (cvr_member_generation (members [0]), 6);
    assert_int_equal (cvr_member_generation (members [2]), 6);
    assert_int_equal (s_rec_count (&rec [0]), 6);
    assert_int_equal (s_rec_count (&rec [2]), 6);
    //  Both rebalances came to both survivors.
    assert_true (s_rec_saw (&rec [0], 5) && s_rec_saw (&rec [2], 5));
    assert_true (s_rec_saw (&rec [0], 6) && s_rec_saw (&rec [2], 6));
    size_t count = 0;
    assert_int_equal (s_group_generation (client, &count), 6);
    assert_int_equal (count, 2);
    for (int i = 0; i < 3; i += 2) {
        s_rec_check (&rec [i]);
        s_rec_order (&rec [i]);
        s_rec_matches (&rec [i], members [i]);
    }

    cvr_member_destroy (&members [0]);
    cvr_member_destroy (&members [2]);
    //  Two leaves, one or two generations (they may share a batch).
    WAIT_UNTIL ((s_group_generation (client, &count), count == 0), WAIT_MS);
    assert_int_equal (count, 0);
    WAIT_UNTIL (s_group_generation (client, NULL) >= 7, WAIT_MS);
    assert_true (s_group_generation (client, NULL) >= 7);
    for (int i = 0; i < 3; i++) {
        assert_int_equal (s_rec_count (&rec [i]), 0);
        s_rec_fini (&rec [i]);
    }
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

static cvr_committed_t
s_offset (const cvr_assignment_t *assignment, size_t index, int64_t offset)
{
    return (cvr_committed_t) { assignment->items [index].topic,
                               assignment->items [index].partition, offset };
}

static void
test_member_commit (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    s_rec_t rec;
    s_rec_init (&rec);
    cvr_member_t *member = s_member (&server, &rec, NULL, LONG_SESSION, "roundrobin");
    char *id = cvr_member_id (member);
    assert_non_null (id);
    cvr_assignment_t *assignment = cvr_member_assignment (member);
    assert_int_equal (assignment->count, PARTITIONS);

    //  With the current generation.
    cvr_committed_t offsets [] = { s_offset (assignment, 0, 10), s_offset (assignment, 5, 50) };
    assert_int_equal (cvr_member_commit (member, offsets, 2), CVR_OK);
    cvr_committed_list_t *fetched = NULL;
    assert_int_equal (cvr_client_fetch_offsets (client, "g", NULL, 0, &fetched), CVR_OK);
    assert_int_equal (fetched->count, 2);
    assert_int_equal (fetched->items [0].offset, 10);
    assert_int_equal (fetched->items [1].offset, 50);
    cvr_committed_list_destroy (&fetched);

    //  The member hears nothing while another joins: its generation is
    //  stale. The commit says so, and the member has caught up (heartbeat,
    //  callbacks) before it returns.
    cvr_member_test_set (member, true, true);
    cvr_join_options_t other = { .member_id = "other", .session_timeout_ms = LONG_SESSION };
    cvr_join_result_t joined;
    assert_int_equal (cvr_client_join_group (client, "g", s_orders, 1, &other, &joined),
                      CVR_OK);
    assert_int_equal (joined.generation, 2);
    assert_int_equal (cvr_member_generation (member), 1);
    assert_int_equal (cvr_member_commit (member, offsets, 1), CVR_ILLEGAL_GENERATION);
    assert_int_equal (cvr_member_generation (member), 2);
    assert_int_equal (s_rec_count (&rec), 6);
    s_rec_check (&rec);
    s_rec_matches (&rec, member);

    //  Retry with what it still owns; what went to the other is NOT_OWNER.
    cvr_assignment_t *now = cvr_member_assignment (member);
    cvr_committed_t retry [] = { s_offset (now, 0, 11) };
    assert_int_equal (cvr_member_commit (member, retry, 1), CVR_OK);
    cvr_committed_t theirs [] = { s_offset (&joined.assignment, 0, 99) };
    assert_int_equal (cvr_member_commit (member, theirs, 1), CVR_NOT_OWNER);

    //  Removed behind its back (a leave in its name): the commit gets
    //  UNKNOWN_MEMBER, and the member has rejoined with a new id before
    //  returning.
    assert_int_equal (cvr_client_leave_group (client, "g", id), CVR_OK);
    assert_int_equal (cvr_member_commit (member, retry, 1), CVR_UNKNOWN_MEMBER);
    assert_int_equal (cvr_member_joins (member), 2);
    char *id2 = cvr_member_id (member);
    assert_string_not_equal (id, id2);
    //  3 or 4: the rejoin may share the leave's rebalance.
    assert_true (cvr_member_generation (member) >= 3);
    assert_true (s_in_step (client, member));
    assert_int_equal (s_rec_count (&rec), 6);
    s_rec_check (&rec);
    s_rec_matches (&rec, member);
    cvr_member_test_set (member, false, false);

    //  The final revocation (destroy) is still at a valid generation, so
    //  a commit from on_revoked succeeds there.
    pthread_mutex_lock (&rec.lock);
    rec.commit_on_revoke = true;
    pthread_mutex_unlock (&rec.lock);
    cvr_assignment_t *last = cvr_member_assignment (member);
    cvr_member_destroy (&member);
    assert_int_equal (rec.revoke_commits_ok, 1);
    cvr_partition_t asked [] = { last->items [0] };
    assert_int_equal (cvr_client_fetch_offsets (client, "g", asked, 1, &fetched), CVR_OK);
    assert_int_equal (fetched->items [0].offset, 1000 + last->items [0].partition);
    cvr_committed_list_destroy (&fetched);

    cvr_assignment_destroy (&last);
    cvr_assignment_destroy (&now);
    cvr_assignment_destroy (&assignment);
    cvr_join_result_clear (&joined);
    zstr_free (&id);
    zstr_free (&id2);
    s_rec_fini (&rec);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  Missed events: the heartbeat reply is the backstop. A lost membership
//  (by the event, or by a heartbeat's UNKNOWN_MEMBER) means a rejoin.
static void
test_member_backstop_and_rejoin (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    s_rec_t rec;
    s_rec_init (&rec);
    //  600 ms sessions: heartbeats every 200 ms.
    cvr_member_t *member = s_member (&server, &rec, NULL, 600, NULL);
    assert_int_equal (s_rec_count (&rec), PARTITIONS);

    //  Deaf: the rebalance arrives through the heartbeat reply.
    cvr_member_test_set (member, true, false);
    cvr_join_options_t other = { .member_id = "other", .session_timeout_ms = LONG_SESSION };
    cvr_join_result_t joined;
    assert_int_equal (cvr_client_join_group (client, "g", s_orders, 1, &other, &joined),
                      CVR_OK);
    WAIT_UNTIL (cvr_member_generation (member) == 2 && s_rec_count (&rec) == 6, WAIT_MS);
    assert_int_equal (cvr_member_generation (member), 2);
    assert_int_equal (s_rec_count (&rec), 6);
    s_rec_check (&rec);
    s_rec_matches (&rec, member);

    //  A `left` event naming it (a leave in its name): revoke all, rejoin.
    cvr_member_test_set (member, false, false);
    char *id = cvr_member_id (member);
    assert_int_equal (cvr_client_leave_group (client, "g", id), CVR_OK);
    WAIT_UNTIL (cvr_member_joins (member) == 2 && s_rec_count (&rec) == 6
                && s_in_step (client, member), WAIT_MS);
    assert_int_equal (cvr_member_joins (member), 2);
    assert_true (s_in_step (client, member));
    assert_int_equal (s_rec_count (&rec), 6);
    s_rec_check (&rec);
    char *id2 = cvr_member_id (member);
    assert_string_not_equal (id, id2);

    //  Deaf and silent until the server expires it; then the first
    //  heartbeat gets UNKNOWN_MEMBER and the member rejoins.
    cvr_member_test_set (member, true, true);
    size_t count = 0;
    WAIT_UNTIL ((s_group_generation (client, &count), count == 1), WAIT_MS);
    assert_int_equal (count, 1);
    assert_int_equal (cvr_member_joins (member), 2);
    int64_t expired_at = s_group_generation (client, NULL);
    //  Still deaf (the `expired` event is dropped): the heartbeat tells.
    cvr_member_test_set (member, true, false);
    WAIT_UNTIL (cvr_member_joins (member) == 3 && s_rec_count (&rec) == 6
                && s_in_step (client, member), WAIT_MS);
    cvr_member_test_set (member, false, false);
    assert_int_equal (cvr_member_joins (member), 3);
    assert_int_equal (cvr_member_generation (member), expired_at + 1);
    assert_int_equal (s_rec_count (&rec), 6);
    s_rec_check (&rec);
    s_rec_matches (&rec, member);
    assert_int_equal (s_group_generation (client, &count), expired_at + 1);
    assert_int_equal (count, 2);

    cvr_member_destroy (&member);
    assert_int_equal (s_rec_count (&rec), 0);
    zstr_free (&id);
    zstr_free (&id2);
    cvr_join_result_clear (&joined);
    s_rec_fini (&rec);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  A static member replaced by a new instance with its instance_id: the
//  new one takes its partitions at the same generation, the old one is
//  fenced and stops (Kafka's fenced static member), nobody rebalances.
static void
test_member_static_takeover (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    s_rec_t rec_old, rec_dyn, rec_new;
    s_rec_init (&rec_old);
    s_rec_init (&rec_dyn);
    s_rec_init (&rec_new);
    cvr_member_t *old = s_member (&server, &rec_old, "i1", LONG_SESSION, NULL);
    cvr_member_t *dyn = s_member (&server, &rec_dyn, NULL, LONG_SESSION, NULL);
    WAIT_UNTIL (s_rec_count (&rec_old) == 6 && cvr_member_generation (old) == 2, WAIT_MS);
    assert_int_equal (s_rec_count (&rec_old), 6);
    cvr_assignment_t *before = cvr_member_assignment (old);
    char *old_id = cvr_member_id (old);

    cvr_member_t *replacement = s_member (&server, &rec_new, "i1", LONG_SESSION, NULL);
    cvr_assignment_t *taken = cvr_member_assignment (replacement);
    assert_true (s_same_assignment (before, taken));
    assert_int_equal (cvr_member_generation (replacement), 2);
    assert_int_equal (s_rec_count (&rec_new), 6);

    //  The old one hears `fenced`: revokes everything and stops.
    WAIT_UNTIL (cvr_member_fenced (old) && s_rec_fenced (&rec_old) == 1
                && s_rec_count (&rec_old) == 0, WAIT_MS);
    assert_true (cvr_member_fenced (old));
    assert_int_equal (s_rec_fenced (&rec_old), 1);
    assert_int_equal (s_rec_count (&rec_old), 0);
    assert_int_equal (cvr_member_joins (old), 1);
    cvr_assignment_t *empty = cvr_member_assignment (old);
    assert_int_equal (empty->count, 0);
    cvr_assignment_destroy (&empty);
    assert_int_equal (cvr_member_commit (old, NULL, 0), CVR_UNKNOWN_MEMBER);

    //  No rebalance: the dynamic member saw nothing new.
    size_t count = 0;
    assert_int_equal (s_group_generation (client, &count), 2);
    assert_int_equal (count, 2);
    assert_int_equal (cvr_member_generation (dyn), 2);
    assert_int_equal (s_rec_count (&rec_dyn), 6);
    //  The fenced id stays fenced.
    assert_int_equal (cvr_client_group_heartbeat (client, "g", old_id, 2, NULL, NULL),
                      CVR_UNKNOWN_MEMBER);
    //  A zombie's destroy does not leave (it is not a member).
    cvr_member_destroy (&old);
    assert_int_equal (s_group_generation (client, &count), 2);
    assert_int_equal (count, 2);
    //  The replacement commits at the shared generation.
    cvr_committed_t offsets [] = { s_offset (taken, 0, 5) };
    assert_int_equal (cvr_member_commit (replacement, offsets, 1), CVR_OK);
    s_rec_check (&rec_old);
    s_rec_check (&rec_dyn);
    s_rec_check (&rec_new);

    cvr_member_destroy (&replacement);
    cvr_member_destroy (&dyn);
    cvr_assignment_destroy (&before);
    cvr_assignment_destroy (&taken);
    zstr_free (&old_id);
    s_rec_fini (&rec_old);
    s_rec_fini (&rec_dyn);
    s_rec_fini (&rec_new);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  A static member whose session ran out (nobody replaced it) is not
//  fenced: it rejoins with its instance_id.
static void
test_member_static_expiry (void **state)
{
    s_server_t server;
    s_server_start (&server);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    s_rec_t rec;
    s_rec_init (&rec);
    cvr_member_t *member = s_member (&server, &rec, "i9", 600, NULL);
    char *id = cvr_member_id (member);
    cvr_member_test_set (member, true, true);
    size_t count = 1;
    WAIT_UNTIL ((s_group_generation (client, &count), count == 0), WAIT_MS);
    assert_int_equal (count, 0);
    cvr_member_test_set (member, false, false);
    WAIT_UNTIL (cvr_member_joins (member) == 2 && s_rec_count (&rec) == PARTITIONS, WAIT_MS);
    assert_int_equal (cvr_member_joins (member), 2);
    assert_false (cvr_member_fenced (member));
    assert_int_equal (s_rec_fenced (&rec), 0);
    assert_int_equal (s_rec_count (&rec), PARTITIONS);
    s_rec_check (&rec);
    char *id2 = cvr_member_id (member);
    assert_string_not_equal (id, id2);
    cvr_group_t *group = NULL;
    assert_int_equal (cvr_client_get_group (client, "g", &group, NULL), CVR_OK);
    assert_int_equal (group->members_count, 1);
    assert_string_equal (group->members [0].member_id, id2);
    assert_string_equal (group->members [0].instance_id, "i9");
    cvr_group_destroy (&group);

    cvr_member_destroy (&member);
    zstr_free (&id);
    zstr_free (&id2);
    s_rec_fini (&rec);
    cvr_client_destroy (&client);
    s_server_stop (&server);
}

//  With the server gone the member keeps its partitions (no callback);
//  a server that comes back without state answers the next heartbeat
//  NOT_FOUND, and the member revokes and rejoins.
static void
test_member_server_restart (void **state)
{
    //  ipc endpoints of this process: a TCP port given up could be taken
    //  by another test process before the restart.
    char *requests = zsys_sprintf ("ipc:///tmp/cvr-test-member-%d-req", (int) getpid ());
    char *events = zsys_sprintf ("ipc:///tmp/cvr-test-member-%d-pub", (int) getpid ());
    s_server_t server;
    s_server_start_on (&server, requests, events);
    s_rec_t rec;
    s_rec_init (&rec);
    s_timeout_ms = 200;
    cvr_member_t *member = s_member (&server, &rec, NULL, 600, NULL);
    s_timeout_ms = TIMEOUT;
    assert_int_equal (s_rec_count (&rec), PARTITIONS);
    s_server_stop (&server);
    //  Several heartbeat intervals (200 ms) with no answer: nothing may
    //  change. (A fixed window: this checks that nothing happens.)
    zclock_sleep (1000);
    assert_int_equal (s_rec_count (&rec), PARTITIONS);
    pthread_mutex_lock (&rec.lock);
    assert_int_equal (rec.logged, 1);
    pthread_mutex_unlock (&rec.lock);
    cvr_assignment_t *kept = cvr_member_assignment (member);
    assert_int_equal (kept->count, PARTITIONS);
    cvr_assignment_destroy (&kept);
    assert_int_equal (cvr_member_joins (member), 1);

    s_server_stop (&server);
    s_server_start_on (&server, requests, events);
    WAIT_UNTIL (cvr_member_joins (member) == 2 && s_rec_count (&rec) == PARTITIONS, WAIT_MS);
    assert_int_equal (cvr_member_joins (member), 2);
    assert_int_equal (s_rec_count (&rec), PARTITIONS);
    pthread_mutex_lock (&rec.lock);
    assert_int_equal (rec.logged, 3);
    assert_int_equal (rec.log [1].kind, 'R');
    assert_int_equal (rec.log [2].kind, 'A');
    pthread_mutex_unlock (&rec.lock);
    s_rec_check (&rec);
    cvr_client_t *client = cvr_client_new (server.requests, TIMEOUT);
    size_t count = 0;
    assert_int_equal (s_group_generation (client, &count), 1);
    assert_int_equal (count, 1);

    cvr_member_destroy (&member);
    s_rec_fini (&rec);
    cvr_client_destroy (&client);
    s_server_stop (&server);
    zsys_file_delete (requests + strlen ("ipc://"));
    zsys_file_delete (events + strlen ("ipc://"));
    zstr_free (&requests);
    zstr_free (&events);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_client_topics_and_groups),
        cmocka_unit_test (test_client_offsets),
        cmocka_unit_test (test_member_bad_config),
        cmocka_unit_test (test_member_rebalances),
        cmocka_unit_test (test_member_commit),
        cmocka_unit_test (test_member_backstop_and_rejoin),
        cmocka_unit_test (test_member_static_takeover),
        cmocka_unit_test (test_member_static_expiry),
        cmocka_unit_test (test_member_server_restart),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
