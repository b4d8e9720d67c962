/*  test_cluster_client.c: the clients against a three-node cluster.

    Three server actors in-process, each with its own data directory under
    a mkdtemp in /tmp and a raft port picked by binding port 0 and closing
    it; request and event sockets on ephemeral tcp ports. The clients get
    every node's request endpoint, followers first, and find the leader
    through NOT_LEADER redirects. Then the leader is destroyed under a
    running registration, member and watches: each goes on with the new
    leader (the registration never expires and reports healthy again, the
    member keeps its id and generation, the watches deliver every event
    once, in seq order), and a plain client's calls succeed on the new
    leader within their timeout. Fake nodes (a ROUTER each) then stand for
    what a real cluster does not do on demand: a node that takes a request
    and dies without a word, one that is electing for ever, a leader that
    announced a wildcard endpoint.

    Every wait is bounded; no sleep is an assertion. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include "conveyor/conveyor.h"
#include "cvr_client_internal.h"
#include "cvr_test_port.h"

#define NODES           3
#define WAIT_MS         10000   //  bound of every wait for the cluster
#define CALL_MS         5000    //  the clients' timeout
#define LEASE_MS        3000    //  heartbeats every second
#define SESSION_MS      3000

typedef struct {
    zactor_t *server;           //  NULL once destroyed
    char id [8];
    char dir [128];
    int raft_port;
    char *requests;             //  as bound
    char *events;
} node_t;

typedef struct {
    char root [64];             //  mkdtemp, removed by the teardown
    char peers [256];
    node_t nodes [NODES];
} cluster_t;

static int
s_free_port (void)
{
    return cvr_test_free_port (20000, 32000);
}

static void
s_command (zactor_t *server, const char *command, const char *a, const char *b)
{
    zstr_sendx (server, command, a, b, NULL);
    char *status = zstr_recv (server);
    assert_non_null (status);
    if (strneq (status, "0"))
        fail_msg ("%s %s %s: %s", command, a ? a : "", b ? b : "", status);
    zstr_free (&status);
}

static void
s_start (cluster_t *self, size_t i)
{
    node_t *node = &self->nodes [i];
    node->server = zactor_new (cvr_server, node->id);
    assert_non_null (node->server);
    s_command (node->server, "SET", "log-level", "warn");
    s_command (node->server, "SET", "min-lease-ms", "100");
    s_command (node->server, "SET", "data-dir", node->dir);
    s_command (node->server, "SET", "peers", self->peers);
    s_command (node->server, "SET", "election-timeout-ms", "300");
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "tcp://127.0.0.1:%d", s_free_port ());
    s_command (node->server, "BIND", endpoint, NULL);
    snprintf (endpoint, sizeof (endpoint), "tcp://127.0.0.1:%d", s_free_port ());
    s_command (node->server, "PUBLISH", endpoint, NULL);
    s_command (node->server, "START", NULL, NULL);
    zstr_sendx (node->server, "ENDPOINTS", NULL);
    assert_int_equal (zstr_recvx (node->server, &node->requests, &node->events, NULL), 2);
}

static int
s_setup (void **state)
{
    cluster_t *self = (cluster_t *) zmalloc (sizeof (cluster_t));
    strcpy (self->root, "/tmp/cvr-cluster-client-XXXXXX");
    assert_non_null (mkdtemp (self->root));
    size_t used = 0;
    for (size_t i = 0; i < NODES; i++) {
        node_t *node = &self->nodes [i];
        snprintf (node->id, sizeof (node->id), "%zu", i + 1);
        snprintf (node->dir, sizeof (node->dir), "%s/node-%zu", self->root, i + 1);
        assert_int_equal (zsys_dir_create ("%s", node->dir), 0);
        node->raft_port = s_free_port ();
        used += (size_t) snprintf (self->peers + used, sizeof (self->peers) - used,
                                   "%s%zu=127.0.0.1:%d", i ? "," : "", i + 1,
                                   node->raft_port);
    }
    for (size_t i = 0; i < NODES; i++)
        s_start (self, i);
    *state = self;
    return 0;
}

static int
s_teardown (void **state)
{
    cluster_t *self = (cluster_t *) *state;
    for (size_t i = 0; i < NODES; i++) {
        zactor_destroy (&self->nodes [i].server);
        zstr_free (&self->nodes [i].requests);
        zstr_free (&self->nodes [i].events);
    }
    zdir_t *dir = zdir_new (self->root, NULL);
    if (dir) {
        zdir_remove (dir, true);
        zdir_destroy (&dir);
    }
    free (self);
    return 0;
}

//  cluster_status of one node, through a client of its own; NULL when it
//  does not answer.
static cvr_msg_t *
s_status (const char *endpoint)
{
    cvr_client_t *client = cvr_client_new (endpoint, 500);
    assert_non_null (client);
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "cluster_status");
    cvr_msg_t *reply = cvr_client_call (client, w);
    cvr_wr_destroy (&w);
    cvr_client_destroy (&client);
    return reply;
}

//  Waits until one running node leads and every running node knows where
//  it serves; returns its index.
static size_t
s_wait_leader (cluster_t *self)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (zclock_mono () < deadline) {
        int leader = -1;
        size_t agree = 0, running = 0;
        for (size_t i = 0; i < NODES; i++) {
            if (!self->nodes [i].server)
                continue;
            running++;
            cvr_msg_t *reply = s_status (self->nodes [i].requests);
            if (!reply)
                continue;
            const msgpack_object *root = cvr_msg_root (reply);
            const msgpack_object *leading = cvr_obj_get (root, "leading");
            if (leading && leading->type == MSGPACK_OBJECT_BOOLEAN && leading->via.boolean)
                leader = (int) i;
            char *named = cvr_obj_get_strdup (root, "leader");
            for (size_t j = 0; named && j < NODES; j++)
                if (self->nodes [j].server && streq (named, self->nodes [j].requests)
                &&  (leader < 0 || (size_t) leader == j))
                    agree++;
            free (named);
            cvr_msg_destroy (&reply);
        }
        if (leader >= 0 && agree == running)
            return (size_t) leader;
        zclock_sleep (50);
    }
    fail_msg ("no leader known to every node within %d ms", WAIT_MS);
    return 0;
}

//  Every request endpoint, the followers first (so a client starts at one
//  that redirects), or the leader alone left out. Caller frees.
static char *
s_endpoints (cluster_t *self, size_t leader, bool with_leader)
{
    char *list = strdup ("");
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < NODES; i++) {
            if ((pass == 0) == (i == leader) || (pass == 1 && !with_leader))
                continue;
            char *longer = zsys_sprintf ("%s%s%s", list, *list ? "," : "",
                                         self->nodes [i].requests);
            free (list);
            list = longer;
        }
    return list;
}

//  --------------------------------------------------------------------------

static void
test_redirects (void **state)
{
    cluster_t *self = (cluster_t *) *state;
    size_t leader = s_wait_leader (self);
    const char *at_leader = self->nodes [leader].requests;

    //  Every node, followers first: the first write is redirected.
    char *all = s_endpoints (self, leader, true);
    cvr_client_t *client = cvr_client_new (all, CALL_MS);
    assert_non_null (client);
    assert_string_not_equal (cvr_client_endpoint (client), at_leader);
    cvr_service_spec_t spec = { .service_id = "r1", .service_name = "orders",
                                .service_type = "source", .endpoint = "tcp://x:1",
                                .weight = -1 };
    assert_int_equal (cvr_client_register (client, &spec, NULL, NULL), CVR_OK);
    assert_string_equal (cvr_client_endpoint (client), at_leader);
    assert_false (cvr_client_retried (client));
    //  Its event endpoint is the leader's now.
    assert_string_equal (cvr_client_events_endpoint (client), self->nodes [leader].events);
    //  The list starts with where it is.
    assert_int_equal (strncmp (cvr_client_endpoints (client), at_leader,
                               strlen (at_leader)), 0);
    cvr_client_destroy (&client);

    //  A follower alone: the leader it names is learnt.
    char *followers = s_endpoints (self, leader, false);
    char *one = strndup (followers, strcspn (followers, ","));
    client = cvr_client_new (one, CALL_MS);
    assert_non_null (client);
    cvr_service_t *service = NULL;
    assert_int_equal (cvr_client_get_service (client, "r1", &service, NULL), CVR_OK);
    cvr_service_destroy (&service);
    assert_string_equal (cvr_client_endpoint (client), at_leader);
    char *expected = zsys_sprintf ("%s,%s", at_leader, one);
    assert_string_equal (cvr_client_endpoints (client), expected);
    zstr_free (&expected);
    //  Any node answers hello itself, naming the leader.
    cvr_client_t *direct = cvr_client_new (one, CALL_MS);
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (direct, &hello), CVR_OK);
    assert_string_equal (hello.leader, at_leader);
    assert_string_equal (cvr_client_endpoint (direct), one);
    cvr_hello_clear (&hello);
    cvr_client_destroy (&direct);
    //  Deregister of what is not there is still NOT_FOUND on a first send.
    assert_int_equal (cvr_client_deregister (client, "nobody"), CVR_NOT_FOUND);
    assert_false (cvr_client_retried (client));
    cvr_client_destroy (&client);

    //  A single endpoint that is malformed, or one in a list, is refused.
    assert_null (cvr_client_new ("nonsense", CALL_MS));
    char *bad = zsys_sprintf ("%s,nonsense", at_leader);
    assert_null (cvr_client_new (bad, CALL_MS));
    zstr_free (&bad);
    free (one);
    free (followers);
    free (all);
}

typedef struct {
    int failovers;
    int unreachable;
    int reregistered;
    int assigned;
    int revoked;
} counts_t;

static int
s_load (int *value)
{
    return __atomic_load_n (value, __ATOMIC_SEQ_CST);
}

static void
s_on_registration (cvr_registration_event_t event, cvr_health_t health, void *arg)
{
    counts_t *counts = (counts_t *) arg;
    if (event == CVR_REGISTRATION_FAILOVER)
        __atomic_add_fetch (&counts->failovers, 1, __ATOMIC_SEQ_CST);
    if (event == CVR_REGISTRATION_UNREACHABLE)
        __atomic_add_fetch (&counts->unreachable, 1, __ATOMIC_SEQ_CST);
    if (event == CVR_REGISTRATION_REREGISTERED)
        __atomic_add_fetch (&counts->reregistered, 1, __ATOMIC_SEQ_CST);
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

//  What a watch delivered: every seq, checked in order as it comes.
typedef struct {
    cvr_watch_t *watch;
    const char *prefix;
    uint64_t first;             //  the snapshot's seq
    uint64_t last;              //  the last seq delivered
    size_t count;               //  events after the snapshot
    bool contiguous;            //  prefix "": every seq is ours
    bool svc_expired;           //  an `expired` event for the registration
    uint64_t snapshots;         //  snapshots after the first
} seen_t;

//  Reads the watch's first event, its snapshot.
static void
s_first (seen_t *seen)
{
    cvr_event_t *event = cvr_watch_next (seen->watch, WAIT_MS);
    assert_non_null (event);
    assert_string_equal (event->type, "snapshot");
    seen->first = seen->last = event->seq;
    cvr_event_destroy (&event);
}

//  Reads what the watch delivers until it has delivered seq `until`,
//  checking each event against the last.
static void
s_drain (seen_t *seen, uint64_t until)
{
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (seen->last < until) {
        if (zclock_mono () >= deadline)
            fail_msg ("watch '%s' stopped at seq %" PRIu64 ", not %" PRIu64,
                      seen->prefix, seen->last, until);
        cvr_event_t *event = cvr_watch_next (seen->watch, 200);
        if (!event)
            continue;
        if (streq (event->type, "snapshot"))
            seen->snapshots++;
        else {
            if (event->seq <= seen->last)
                fail_msg ("watch '%s': seq %" PRIu64 " (%s %s) after %" PRIu64,
                          seen->prefix, event->seq, event->topic, event->type, seen->last);
            if (seen->contiguous && event->seq != seen->last + 1)
                fail_msg ("watch '%s': seq %" PRIu64 " after %" PRIu64 ": a gap",
                          seen->prefix, event->seq, seen->last);
            seen->last = event->seq;
            seen->count++;
            if (streq (event->type, "expired") && event->service
            &&  streq (event->service->service_id, "svc"))
                seen->svc_expired = true;
        }
        cvr_event_destroy (&event);
    }
}

//  The latest seq, from a node that answers.
static uint64_t
s_seq (cvr_client_t *client)
{
    cvr_hello_t hello;
    assert_int_equal (cvr_client_hello (client, &hello), CVR_OK);
    uint64_t seq = hello.seq;
    cvr_hello_clear (&hello);
    return seq;
}

//  Registers and deregisters `count` services named prefix-N.
static void
s_churn (cvr_client_t *client, const char *prefix, int count)
{
    for (int i = 0; i < count; i++) {
        char id [32];
        snprintf (id, sizeof (id), "%s-%d", prefix, i);
        cvr_service_spec_t spec = { .service_id = id, .service_name = "orders",
                                    .service_type = "sink", .endpoint = "tcp://y:2",
                                    .weight = -1 };
        assert_int_equal (cvr_client_register (client, &spec, NULL, NULL), CVR_OK);
        if (i % 2)
            assert_int_equal (cvr_client_deregister (client, id), CVR_OK);
    }
}

static void
test_failover (void **state)
{
    cluster_t *self = (cluster_t *) *state;
    size_t leader = s_wait_leader (self);
    char *all = s_endpoints (self, leader, true);
    counts_t counts = { 0 };

    //  Watches first, so they see everything that follows.
    seen_t everything = { .prefix = "", .contiguous = true };
    everything.watch = cvr_watch_new (all, "", CALL_MS);
    assert_non_null (everything.watch);
    seen_t services = { .prefix = "service/orders/" };
    services.watch = cvr_watch_new (all, "service/orders/", CALL_MS);
    assert_non_null (services.watch);
    s_first (&everything);
    s_first (&services);

    cvr_service_spec_t spec = { .service_id = "svc", .service_name = "orders",
                                .service_type = "source", .endpoint = "tcp://x:1",
                                .weight = -1, .lease_ms = LEASE_MS };
    cvr_err_t err;
    cvr_registration_t *registration = cvr_registration_new (
        all, &spec, CALL_MS, s_on_registration, &counts, &err);
    assert_non_null (registration);
    assert_int_equal (cvr_registration_lease_ms (registration), LEASE_MS);

    const char *topics [] = { "events" };
    cvr_member_config_t config = {
        .group_id = "g", .topics = topics, .topics_count = 1,
        .session_timeout_ms = SESSION_MS, .timeout_ms = CALL_MS,
        .on_assigned = s_on_assigned, .on_revoked = s_on_revoked, .arg = &counts
    };
    cvr_member_t *member = cvr_member_new (all, &config, &err);
    assert_non_null (member);
    assert_int_equal (s_load (&counts.assigned), 1);
    char *member_id = cvr_member_id (member);
    int64_t generation = cvr_member_generation (member);

    cvr_client_t *client = cvr_client_new (all, CALL_MS);
    s_churn (client, "before", 10);
    uint64_t before = s_seq (client);
    s_drain (&everything, before);
    //  Heartbeats go on for a while, on the leader.
    zclock_sleep (1200);
    assert_true (cvr_registration_heartbeats (registration) >= 1);
    assert_string_equal (cvr_client_endpoint (client), self->nodes [leader].requests);

    //  The leader goes.
    int64_t killed = zclock_mono ();
    zactor_destroy (&self->nodes [leader].server);

    //  A call goes through within its timeout, on the new leader.
    spec.service_id = "after";
    spec.lease_ms = 0;
    assert_int_equal (cvr_client_register (client, &spec, NULL, NULL), CVR_OK);
    int64_t took = zclock_mono () - killed;
    size_t next = s_wait_leader (self);
    assert_true (next != leader);
    assert_string_equal (cvr_client_endpoint (client), self->nodes [next].requests);
    assert_true (took < CALL_MS);
    s_churn (client, "after", 10);

    //  The registration never expired: the service is there, registered
    //  once, and healthy again after its next heartbeat on the new leader.
    int64_t deadline = zclock_mono () + WAIT_MS;
    while (true) {
        cvr_service_t *service = NULL;
        assert_int_equal (cvr_client_get_service (client, "svc", &service, NULL), CVR_OK);
        bool healthy = service->health == CVR_HEALTH_HEALTHY;
        cvr_service_destroy (&service);
        if (healthy && s_load (&counts.failovers) >= 1)
            break;
        assert_true (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    assert_int_equal (s_load (&counts.failovers), 1);
    assert_int_equal (s_load (&counts.reregistered), 0);
    assert_int_equal (cvr_registration_registrations (registration), 1);
    assert_int_equal (cvr_registration_health (registration), CVR_HEALTH_HEALTHY);
    uint64_t heartbeats = cvr_registration_heartbeats (registration);

    //  A whole lease and session after the takeover, both are still
    //  there: the heartbeats renewed them on the new leader.
    int64_t wait = killed + (LEASE_MS > SESSION_MS ? LEASE_MS : SESSION_MS) + 1000
                 - zclock_mono ();
    if (wait > 0)
        zclock_sleep ((int) wait);
    //  And at least one more heartbeat answered since it was healthy there
    //  (on a loaded machine the wait above may already have passed).
    deadline = zclock_mono () + WAIT_MS;
    while (cvr_registration_heartbeats (registration) <= heartbeats) {
        assert_true (zclock_mono () < deadline);
        zclock_sleep (50);
    }
    cvr_service_t *kept = NULL;
    assert_int_equal (cvr_client_get_service (client, "svc", &kept, NULL), CVR_OK);
    assert_int_equal (kept->health, CVR_HEALTH_HEALTHY);
    cvr_service_destroy (&kept);
    assert_int_equal (cvr_registration_registrations (registration), 1);

    //  The member kept its membership: same id, same generation, never
    //  revoked, the only member of its group on the new leader.
    cvr_group_t *group = NULL;
    assert_int_equal (cvr_client_get_group (client, "g", &group, NULL), CVR_OK);
    assert_int_equal (group->members_count, 1);
    assert_string_equal (group->members [0].member_id, member_id);
    assert_int_equal (group->generation, generation);
    cvr_group_destroy (&group);
    char *id_now = cvr_member_id (member);
    assert_string_equal (id_now, member_id);
    zstr_free (&id_now);
    assert_int_equal (cvr_member_joins (member), 1);
    assert_int_equal (cvr_member_generation (member), generation);
    assert_int_equal (s_load (&counts.revoked), 0);
    assert_int_equal (s_load (&counts.assigned), 1);

    //  The watches delivered every event once, in seq order, across the
    //  failover, without a new snapshot.
    uint64_t after = s_seq (client);
    s_drain (&everything, after);
    assert_int_equal (everything.snapshots, 0);
    assert_int_equal (everything.count, after - everything.first);
    assert_false (everything.svc_expired);
    //  The narrow one ends with the last churned service's event.
    cvr_service_t *last = NULL;
    uint64_t last_seq = 0;
    assert_int_equal (cvr_client_get_service (client, "after-8", &last, &last_seq), CVR_OK);
    cvr_service_destroy (&last);
    cvr_service_list_t *list = NULL;
    cvr_service_filter_t filter = { .service_name = "orders" };
    assert_int_equal (cvr_client_list_services (client, &filter, &list), CVR_OK);
    cvr_service_list_destroy (&list);
    cvr_event_list_t *orders = NULL;
    assert_int_equal (cvr_client_events_since (client, services.first, "service/orders/",
                                               0, &orders, NULL), CVR_OK);
    assert_true (orders->count > 0);
    assert_false (orders->more);
    uint64_t orders_last = orders->items [orders->count - 1]->seq;
    size_t orders_count = orders->count;
    cvr_event_list_destroy (&orders);
    s_drain (&services, orders_last);
    assert_int_equal (services.count, orders_count);
    assert_int_equal (services.snapshots, 0);
    assert_false (services.svc_expired);

    //  Leaving and deregistering work on the new leader too.
    cvr_member_destroy (&member);
    cvr_registration_destroy (&registration);
    cvr_err_t rc = cvr_client_get_group (client, "g", &group, NULL);
    assert_true (rc == CVR_NOT_FOUND || (rc == CVR_OK && group->members_count == 0));
    cvr_group_destroy (&group);
    cvr_service_t *gone = NULL;
    assert_int_equal (cvr_client_get_service (client, "svc", &gone, NULL), CVR_NOT_FOUND);

    zstr_free (&member_id);
    cvr_client_destroy (&client);
    cvr_watch_destroy (&everything.watch);
    cvr_watch_destroy (&services.watch);
    free (all);
}

//  --------------------------------------------------------------------------
//  Fake nodes, for what a real cluster does not do on demand: a leader
//  that takes a request and never answers, a redirect to a wildcard.
//
//  The actor's argument is its behaviour: "silent" (reads, never answers),
//  "notfound" (NOT_FOUND to anything), "ok" (ok to anything), "electing"
//  (NOT_LEADER without a leader), or "redirect <endpoint>" (NOT_LEADER
//  naming it; cluster_status says leader 7 has raft address 127.0.0.1:9).
//  It sends its endpoint first; "COUNT" on the pipe answers how many
//  requests it read, then the last one's client_id and rid.

static void
s_fake_node (zsock_t *pipe, void *args)
{
    const char *mode = (const char *) args;
    zsock_t *router = zsock_new (ZMQ_ROUTER);
    assert (router);
    zsock_set_linger (router, 0);
    int port = -1;
    for (int attempt = 0; attempt < 20 && port < 0; attempt++)
        port = zsock_bind (router, "tcp://127.0.0.1:%d", 20000 + randof (12000));
    assert (port > 0);
    zsock_signal (pipe, 0);
    zstr_sendf (pipe, "tcp://127.0.0.1:%d", port);
    int count = 0;
    char *client_id = strdup ("-");
    uint64_t last_rid = 0;
    zpoller_t *poller = zpoller_new (pipe, router, NULL);
    while (true) {
        void *which = zpoller_wait (poller, -1);
        if (which == pipe) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            if (!term)
                zstr_sendf (pipe, "%d %s %" PRIu64, count, client_id, last_rid);
            zstr_free (&command);
            if (term)
                break;
            continue;
        }
        if (which != router)
            break;
        zmsg_t *msg = zmsg_recv (router);
        if (!msg)
            break;
        count++;
        zframe_t *identity = zmsg_pop (msg);
        zframe_t *body = zmsg_pop (msg);
        cvr_msg_t *request = cvr_msg_decode (zframe_data (body), zframe_size (body));
        const msgpack_object *root = cvr_msg_root (request);
        const msgpack_object *rid = cvr_obj_get (root, "rid");
        bool status = cvr_obj_streq (cvr_obj_get (root, "op"), "cluster_status");
        if (!status) {
            free (client_id);
            client_id = cvr_obj_get_strdup (root, "client_id");
            if (!client_id)
                client_id = strdup ("-");
            cvr_obj_uint (rid, &last_rid);
        }
        cvr_wr_t *w = cvr_wr_new ();
        cvr_wr_map (w);
        if (rid) {
            cvr_wr_str (w, "rid");
            cvr_wr_obj (w, rid);
        }
        if (streq (mode, "silent"))
            ;
        else
        if (streq (mode, "ok"))
            cvr_wr_kbool (w, "ok", true);
        else
        if (strncmp (mode, "redirect ", 9) == 0 && status) {
            cvr_wr_kbool (w, "ok", true);
            cvr_wr_kuint (w, "leader_id", 7);
            cvr_wr_str (w, "servers");
            cvr_wr_array (w);
            cvr_wr_map (w);
            cvr_wr_kuint (w, "id", 7);
            cvr_wr_kstr (w, "address", "127.0.0.1:9");
            cvr_wr_close (w);
            cvr_wr_close (w);
        }
        else {
            bool found = streq (mode, "notfound");
            cvr_wr_kbool (w, "ok", false);
            cvr_wr_kstr (w, "error", found ? "NOT_FOUND" : "NOT_LEADER");
            cvr_wr_kstr (w, "message", "fake");
            if (!found)
                cvr_wr_kstr (w, "leader", strncmp (mode, "redirect ", 9) == 0
                                          ? mode + 9 : NULL);
        }
        cvr_wr_close (w);
        if (strneq (mode, "silent")) {
            zmsg_t *reply = zmsg_new ();
            zmsg_append (reply, &identity);
            zmsg_addmem (reply, cvr_wr_data (w), cvr_wr_size (w));
            zmsg_send (&reply, router);
        }
        cvr_wr_destroy (&w);
        cvr_msg_destroy (&request);
        zframe_destroy (&identity);
        zframe_destroy (&body);
        zmsg_destroy (&msg);
    }
    zpoller_destroy (&poller);
    zsock_destroy (&router);
    free (client_id);
}

typedef struct {
    zactor_t *actor;
    char *endpoint;
} fake_t;

static fake_t
s_fake (const char *mode)
{
    fake_t fake = { zactor_new (s_fake_node, (void *) mode), NULL };
    assert_non_null (fake.actor);
    fake.endpoint = zstr_recv (fake.actor);
    return fake;
}

//  How many requests the fake read; *last (may be NULL) gets the last
//  one's "client_id rid" (caller frees).
static int
s_fake_last (fake_t *fake, char **last)
{
    zstr_send (fake->actor, "COUNT");
    char *text = zstr_recv (fake->actor);
    int count = atoi (text);
    if (last)
        *last = strdup (strchr (text, ' ') + 1);
    zstr_free (&text);
    return count;
}

static int
s_fake_count (fake_t *fake)
{
    return s_fake_last (fake, NULL);
}

static void
s_fake_destroy (fake_t *fake)
{
    zactor_destroy (&fake->actor);
    zstr_free (&fake->endpoint);
}

static void
test_retried_removals (void **state)
{
    //  The first node takes the request and dies without a word; the next
    //  one no longer knows what was removed: a retry, taken for success.
    fake_t silent = s_fake ("silent"), gone = s_fake ("notfound");
    char *list = zsys_sprintf ("%s,%s", silent.endpoint, gone.endpoint);
    cvr_client_t *client = cvr_client_new (list, 3000);
    int64_t started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_OK);
    assert_true (cvr_client_retried (client));
    int64_t took = zclock_mono () - started;
    assert_true (took >= 900 && took < 2500);       //  one slice, then the next
    assert_string_equal (cvr_client_endpoint (client), gone.endpoint);
    //  The resend was the same request: same client_id, same rid, which a
    //  server with a log answers with its first reply.
    char *first = NULL, *second = NULL;
    assert_int_equal (s_fake_last (&silent, &first), 1);
    assert_int_equal (s_fake_last (&gone, &second), 1);
    assert_int_equal (strncmp (first, "cvr-", 4), 0);
    assert_string_equal (first, second);
    zstr_free (&first);
    zstr_free (&second);
    //  A first send's NOT_FOUND stands.
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_NOT_FOUND);
    assert_false (cvr_client_retried (client));
    assert_int_equal (cvr_client_leave_group (client, "g", "m"), CVR_NOT_FOUND);
    //  A read is not made a success.
    cvr_service_t *service = NULL;
    assert_int_equal (cvr_client_get_service (client, "svc", &service, NULL), CVR_NOT_FOUND);
    cvr_client_destroy (&client);

    //  leave_group and delete_group the same way.
    client = cvr_client_new (list, 3000);
    assert_int_equal (cvr_client_leave_group (client, "g", "m"), CVR_OK);
    assert_true (cvr_client_retried (client));
    cvr_client_destroy (&client);
    client = cvr_client_new (list, 3000);
    assert_int_equal (cvr_client_delete_group (client, "g"), CVR_OK);
    assert_true (cvr_client_retried (client));
    assert_int_equal (cvr_client_get_service (client, "svc", &service, NULL), CVR_NOT_FOUND);
    cvr_client_destroy (&client);
    zstr_free (&list);

    //  Nobody answers: CVR_TIMEOUT within the timeout, naming the nodes.
    fake_t silent2 = s_fake ("silent");
    list = zsys_sprintf ("%s,%s", silent.endpoint, silent2.endpoint);
    client = cvr_client_new (list, 1500);
    started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_TIMEOUT);
    took = zclock_mono () - started;
    assert_true (took >= 1400 && took < 2500);
    assert_non_null (strstr (cvr_client_message (client), silent2.endpoint));
    cvr_client_destroy (&client);
    zstr_free (&list);
    s_fake_destroy (&silent2);
    s_fake_destroy (&silent);
    s_fake_destroy (&gone);
}

static void
test_electing_and_wildcard (void **state)
{
    //  NOT_LEADER without a leader: the next node, after a short pause.
    fake_t electing = s_fake ("electing"), leader = s_fake ("ok");
    char *list = zsys_sprintf ("%s,%s", electing.endpoint, leader.endpoint);
    cvr_client_t *client = cvr_client_new (list, 3000);
    int64_t started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_OK);
    assert_true (zclock_mono () - started < 1000);
    assert_false (cvr_client_retried (client));
    assert_string_equal (cvr_client_endpoint (client), leader.endpoint);
    cvr_client_destroy (&client);
    zstr_free (&list);

    //  Patient (conveyorctl's cluster add and remove): a node that took
    //  the request has the whole timeout; one that cannot be reached is
    //  still skipped after half a slice.
    fake_t silent = s_fake ("silent");
    list = zsys_sprintf ("%s,%s", silent.endpoint, leader.endpoint);
    client = cvr_client_new (list, 1500);
    cvr_client_set_patient (client, true);
    started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_TIMEOUT);
    assert_true (zclock_mono () - started >= 1400);
    cvr_client_destroy (&client);
    zstr_free (&list);
    s_fake_destroy (&silent);
    int before = s_fake_count (&leader);
    list = zsys_sprintf ("tcp://127.0.0.1:%d,%s", s_free_port (), leader.endpoint);
    client = cvr_client_new (list, 3000);
    cvr_client_set_patient (client, true);
    started = zclock_mono ();
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_OK);
    assert_true (zclock_mono () - started < 1000);
    assert_int_equal (s_fake_count (&leader), before + 1);
    cvr_client_destroy (&client);
    zstr_free (&list);

    //  Electing for ever, alone: CVR_TIMEOUT, saying no leader is known.
    client = cvr_client_new (electing.endpoint, 500);
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_TIMEOUT);
    assert_non_null (strstr (cvr_client_message (client), "no leader"));
    assert_true (s_fake_count (&electing) > 3);
    cvr_client_destroy (&client);

    //  A leader that bound every interface names no host: its raft
    //  address (from cluster_status) does.
    int port = atoi (strrchr (leader.endpoint, ':') + 1);
    char *mode = zsys_sprintf ("redirect tcp://0.0.0.0:%d", port);
    fake_t follower = s_fake (mode);
    client = cvr_client_new (follower.endpoint, 3000);
    assert_int_equal (cvr_client_deregister (client, "svc"), CVR_OK);
    char *expected = zsys_sprintf ("tcp://127.0.0.1:%d", port);
    assert_string_equal (cvr_client_endpoint (client), expected);
    zstr_free (&expected);
    //  The follower answered the deregister and the cluster_status.
    assert_int_equal (s_fake_count (&follower), 2);
    cvr_client_destroy (&client);
    s_fake_destroy (&follower);
    zstr_free (&mode);
    s_fake_destroy (&electing);
    s_fake_destroy (&leader);
}

int
main (void)
{
    zsys_init ();
    zsys_set_logstream (stderr);
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_redirects, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown (test_failover, s_setup, s_teardown),
        cmocka_unit_test (test_retried_removals),
        cmocka_unit_test (test_electing_and_wildcard),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
