/*  cvr_member.c: keeps a consumer-group membership from an actor.

    The actor owns a cvr_client (DEALER) and a SUB socket subscribed to
    group/<group_id>/ and sys/heartbeat. It makes the first join itself,
    right after subscribing, and reports the outcome to cvr_member_new over
    its pipe; a failed first join leaves it waiting for $TERM only.

    Pipe commands: COMMIT <pointer to s_commit_t> (answered with the code),
    TEST <deaf> <paused> (test hook, answered with 0) and $TERM (revoke,
    leave, exit).

    What the application may read (member id, generation, assignment,
    fenced, joins) lives in the owner struct under `lock`; only the actor
    thread writes it, so the actor reads it without the lock.

    Why a first message on the SUB socket triggers a heartbeat: the
    subscription reaches the server some time after the connect, and what
    is published before it arrives is lost with nothing to tell. Once one
    message (any group event, or the server's sys/heartbeat, sent every
    second) has arrived, every later event arrives too; a heartbeat sent
    then covers whatever came before it.

    In a cluster (endpoint lists the nodes) the client follows the leader
    (cvr_client.h). After each request the actor checks where the client
    went: on a move it logs it once and moves the SUB socket to that
    node's event endpoint (every node publishes the same events with the
    same seq); the first message from there triggers the catch-up
    heartbeat as above. The new leader gave every session a fresh term
    when it took over, and the heartbeats go on from the interval they
    were at, so the membership is kept. Every join carries a member id
    chosen here (unless config->member_id), so a join sent again after a
    lost reply joins the same member, not a second one.
*/
#include <czmq.h>
#include <pthread.h>
#include "conveyor/cvr_member.h"
#include "cvr_client_internal.h"
#include "cvr_proto.h"

#define CVR_MEMBER_TIMEOUT_DEFAULT 5000
#define CVR_MEMBER_HEARTBEAT_TOPIC "sys/heartbeat"
#define CVR_MEMBER_FOREVER 3600000      //  a wait with nothing to do

typedef struct _s_actor_t s_actor_t;

struct _cvr_member_t {
    zactor_t *actor;                //  keeps the membership
    char *endpoint;                 //  request endpoint, copied
    cvr_security_t *security;       //  CURVE credentials, owned; NULL: plain
    //  The configuration, copied (borrowed by the actor).
    char *group_id;
    char **topics;
    size_t topics_count;
    char *config_member_id;         //  NULL: server-made ids
    char *instance_id;              //  NULL: dynamic member
    char *service_id;
    char *service_name;
    int64_t session_timeout_ms;     //  asked; <= 0: the server's default
    char *assignor;
    int timeout_ms;                 //  bound of each request
    cvr_member_partitions_fn *on_assigned;
    cvr_member_partitions_fn *on_revoked;
    cvr_member_fenced_fn *on_fenced;
    void *arg;                      //  callbacks' argument, borrowed

    pthread_mutex_t call_lock;      //  one application thread on the pipe
    pthread_t thread;               //  the actor's, to tell callbacks' calls
    s_actor_t *running;             //  the actor's state, for commits made
                                    //  from callbacks (actor thread only)

    pthread_mutex_t lock;           //  guards the fields below against the
                                    //  application's reads
    char *member_id;                //  current (or last) member id; owned
    int64_t generation;             //  current generation
    cvr_assignment_t assignment;    //  current assignment; owned
    bool fenced;                    //  replaced static member: stopped
    uint64_t joins;                 //  successful joins
};

//  The actor's own state, on its stack.
struct _s_actor_t {
    cvr_member_t *owner;            //  configuration and shared state
    zsock_t *pipe;                  //  to the owner, borrowed
    cvr_client_t *client;           //  requests
    zsock_t *sub;                   //  group events and sys/heartbeat
    char *node;                     //  the request endpoint whose events
                                    //  sub receives; owned
    char *events;                   //  that node's event endpoint; owned
    bool joined;                    //  a member as far as we know
    bool live;                      //  a message came through the SUB
                                    //  socket: the subscription is in place
    int64_t session_ms;             //  default or granted session timeout
    int64_t next;                   //  zclock_mono of the next heartbeat or
                                    //  rejoin
    char *pending_id;               //  id of the rejoin being attempted,
                                    //  kept until one succeeds; owned
    bool deaf;                      //  test hook: events are dropped
    bool paused;                    //  test hook: no periodic heartbeats
};

//  A commit handed to the actor: borrowed from the caller, who waits.
typedef struct {
    const cvr_committed_t *offsets;
    size_t count;
} s_commit_t;

static char *
s_strdup (const char *s)
{
    return s ? strdup (s) : NULL;
}

//  --------------------------------------------------------------------------
//  Partition sets

static int
s_cmp_partition (const cvr_partition_t *x, const cvr_partition_t *y)
{
    int rc = strcmp (x->topic, y->topic);
    return rc ? rc : (x->partition > y->partition) - (x->partition < y->partition);
}

static int
s_qsort_partition (const void *a, const void *b)
{
    return s_cmp_partition ((const cvr_partition_t *) a, (const cvr_partition_t *) b);
}

//  a - b, both sorted: a new sorted set the caller clears.
static cvr_assignment_t
s_minus (const cvr_assignment_t *a, const cvr_assignment_t *b)
{
    cvr_assignment_t diff = { NULL, 0 };
    if (a->count)
        diff.items = (cvr_partition_t *) zmalloc (a->count * sizeof (cvr_partition_t));
    size_t j = 0;
    for (size_t i = 0; i < a->count; i++) {
        int rc = 1;
        while (j < b->count && (rc = s_cmp_partition (&b->items [j], &a->items [i])) < 0)
            j++;
        if (j < b->count && rc == 0)
            continue;
        diff.items [diff.count++] = (cvr_partition_t) { strdup (a->items [i].topic),
                                                        a->items [i].partition };
    }
    return diff;
}

//  [[topic, partition], ...] into a sorted set; -1 when malformed (what
//  was read is still owned by the set).
static int
s_read_assignment (const msgpack_object *o, cvr_assignment_t *set)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    if (o->via.array.size)
        set->items = (cvr_partition_t *) zmalloc (o->via.array.size * sizeof (cvr_partition_t));
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        const msgpack_object *pair = &o->via.array.ptr [i];
        int64_t partition;
        if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2
        ||  cvr_obj_int (&pair->via.array.ptr [1], &partition)
        ||  partition < 0 || partition > INT32_MAX)
            return -1;
        char *topic = cvr_obj_strdup (&pair->via.array.ptr [0]);
        if (!topic)
            return -1;
        set->items [set->count++] = (cvr_partition_t) { topic, (int32_t) partition };
    }
    if (set->count > 1)
        qsort (set->items, set->count, sizeof (cvr_partition_t), s_qsort_partition);
    return 0;
}

//  --------------------------------------------------------------------------
//  State changes (actor thread)

//  The member id for messages.
static const char *
s_id (cvr_member_t *self)
{
    return self->member_id ? self->member_id : "(not joined)";
}

static void
s_log_error (s_actor_t *actor, const char *what, cvr_err_t rc)
{
    cvr_member_t *self = actor->owner;
    if (rc == CVR_TIMEOUT)
        zsys_debug ("conveyor: member %s of %s: %s: %s", s_id (self),
                    self->group_id, what, cvr_client_message (actor->client));
    else
        zsys_warning ("conveyor: member %s of %s: %s failed: %s %s", s_id (self),
                      self->group_id, what, cvr_err_name (rc),
                      cvr_client_message (actor->client));
}

static int64_t
s_interval (s_actor_t *actor)
{
    int64_t interval = actor->session_ms / 3;
    return interval > 0 ? interval : 1;
}

//  Points the SUB socket at the current node's events. -1 when the node
//  did not say where they are (the next request tries again).
static int
s_subscribe (s_actor_t *actor)
{
    const char *events = cvr_client_events_endpoint (actor->client);
    if (!events)
        return -1;
    if (!actor->events || strneq (actor->events, events)) {
        if (actor->events) {
            //  What the old publisher queued is dropped: the catch-up
            //  heartbeat below brings whatever in it mattered.
            zsock_disconnect (actor->sub, "%s", actor->events);
            while (zsock_events (actor->sub) & ZMQ_POLLIN) {
                zmsg_t *stale = zmsg_recv (actor->sub);
                zmsg_destroy (&stale);
            }
        }
        zstr_free (&actor->events);
        if (zsock_connect (actor->sub, "%s", events))
            return -1;
        actor->events = strdup (events);
        //  What the new publisher sent before the subscription reached it
        //  is unknown: the first message from it brings a heartbeat.
        actor->live = false;
    }
    free (actor->node);
    actor->node = strdup (cvr_client_endpoint (actor->client));
    return 0;
}

//  After requests: when the client moved to another node (the cluster's
//  leader changed), listens to that node's events instead.
static void
s_follow (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    //  Asking the new node for its event endpoint may move the client
    //  again (a node that died meanwhile): a few rounds at most.
    for (int round = 0; round < 3; round++) {
        const char *node = cvr_client_endpoint (actor->client);
        if (actor->node && streq (actor->node, node))
            return;
        char *from = actor->node ? strdup (actor->node) : NULL;
        int rc = s_subscribe (actor);
        if (rc == 0 && from)
            zsys_info ("conveyor: member %s of %s: requests now go to %s (was %s: "
                       "the leader changed or stopped answering)", s_id (self),
                       self->group_id, actor->node, from);
        free (from);
        if (rc)
            return;                 //  the next tick tries again
    }
}

//  Moves to a new generation and assignment (taken): on_revoked with what
//  is lost while still at the old generation, then on_assigned with what
//  is gained once at the new one.
static void
s_transition (s_actor_t *actor, int64_t generation, cvr_assignment_t *assignment)
{
    cvr_member_t *self = actor->owner;
    cvr_assignment_t revoked = s_minus (&self->assignment, assignment);
    cvr_assignment_t assigned = s_minus (assignment, &self->assignment);
    if (revoked.count && self->on_revoked)
        self->on_revoked (&revoked, generation, self->arg);
    pthread_mutex_lock (&self->lock);
    cvr_assignment_clear (&self->assignment);
    self->assignment = *assignment;
    self->generation = generation;
    pthread_mutex_unlock (&self->lock);
    *assignment = (cvr_assignment_t) { NULL, 0 };
    if (assigned.count && self->on_assigned)
        self->on_assigned (&assigned, generation, self->arg);
    cvr_assignment_clear (&revoked);
    cvr_assignment_clear (&assigned);
}

//  Gives up the whole assignment (on_revoked at the last generation).
static void
s_revoke_all (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    if (self->assignment.count && self->on_revoked)
        self->on_revoked (&self->assignment, self->generation, self->arg);
    pthread_mutex_lock (&self->lock);
    cvr_assignment_clear (&self->assignment);
    pthread_mutex_unlock (&self->lock);
}

//  A replaced static member: revoke, stop for good, tell the application.
static void
s_fence (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    zsys_warning ("conveyor: member %s (instance %s) of %s was replaced by another "
                  "instance: stopping", self->member_id, self->instance_id,
                  self->group_id);
    s_revoke_all (actor);
    actor->joined = false;
    pthread_mutex_lock (&self->lock);
    self->fenced = true;
    pthread_mutex_unlock (&self->lock);
    actor->next = zclock_mono () + CVR_MEMBER_FOREVER;
    if (self->on_fenced)
        self->on_fenced (self->member_id, self->arg);
}

//  The session the server granted (it clamps what is asked), from
//  get_group; the heartbeat interval follows it.
static void
s_learn_session (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    cvr_group_t *group = NULL;
    if (cvr_client_get_group (actor->client, self->group_id, &group, NULL) != CVR_OK)
        return;
    for (size_t i = 0; i < group->members_count; i++)
        if (streq (group->members [i].member_id, self->member_id)
        &&  group->members [i].session_timeout_ms > 0)
            actor->session_ms = group->members [i].session_timeout_ms;
    cvr_group_destroy (&group);
}

//  Joins (first time or again). On success the member is at the join's
//  generation with its assignment, and on_assigned has been called.
static cvr_err_t
s_join (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    cvr_join_options_t options = {
        .member_id = self->config_member_id ? self->config_member_id : actor->pending_id,
        .service_name = self->service_name,
        .service_id = self->service_id, .instance_id = self->instance_id,
        .session_timeout_ms = self->session_timeout_ms, .assignor = self->assignor
    };
    cvr_join_result_t result;
    cvr_err_t rc = cvr_client_join_group (actor->client, self->group_id,
                                          (const char *const *) self->topics,
                                          self->topics_count, &options, &result);
    if (rc != CVR_OK)
        return rc;
    pthread_mutex_lock (&self->lock);
    free (self->member_id);
    self->member_id = result.member_id;
    result.member_id = NULL;
    self->joins++;
    pthread_mutex_unlock (&self->lock);
    actor->joined = true;
    zstr_free (&actor->pending_id);
    if (self->session_timeout_ms > 0)
        actor->session_ms = self->session_timeout_ms;
    s_learn_session (actor);
    actor->next = zclock_mono () + s_interval (actor);
    //  The set is empty here (first join, or revoked when the membership
    //  was lost), so on_assigned gets the whole assignment.
    s_transition (actor, result.generation, &result.assignment);
    cvr_join_result_clear (&result);
    return CVR_OK;
}

//  True when another member now holds our instance id: we were replaced.
//  -1 when the server could not tell.
static int
s_replaced (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    cvr_group_t *group = NULL;
    cvr_err_t rc = cvr_client_get_group (actor->client, self->group_id, &group, NULL);
    if (rc == CVR_NOT_FOUND)
        return 0;
    if (rc != CVR_OK) {
        s_log_error (actor, "get_group", rc);
        return -1;
    }
    int replaced = 0;
    for (size_t i = 0; i < group->members_count; i++)
        if (group->members [i].instance_id
        &&  streq (group->members [i].instance_id, self->instance_id)
        &&  !streq (group->members [i].member_id, self->member_id)
        &&  !(actor->pending_id && streq (group->members [i].member_id, actor->pending_id)))
            replaced = 1;
    cvr_group_destroy (&group);
    return replaced;
}

//  Not a member now: join again, unless a static member was replaced.
//  On failure the next tick tries again.
//
//  A rejoin whose reply timed out may still have been applied, so the id
//  is chosen here (fresh, shaped like the server's) and kept for every
//  attempt until one succeeds: a retry of an applied join is then a join
//  that changes nothing, not a second member, and a static member does
//  not mistake its own earlier attempt for a replacement.
static void
s_choose_id (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    if (!self->config_member_id && !actor->pending_id) {
        zuuid_t *uuid = zuuid_new ();
        actor->pending_id = zsys_sprintf ("%.150s-%s", self->service_name
                                          ? self->service_name : "member",
                                          zuuid_str_canonical (uuid));
        zuuid_destroy (&uuid);
    }
}

static void
s_rejoin (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    actor->next = zclock_mono () + s_interval (actor);
    s_choose_id (actor);
    if (self->instance_id) {
        int replaced = s_replaced (actor);
        if (replaced < 0)
            return;
        if (replaced) {
            s_fence (actor);
            return;
        }
    }
    cvr_err_t rc = s_join (actor);
    if (rc == CVR_UNKNOWN_MEMBER && self->instance_id)
        s_fence (actor);        //  our own id is fenced
    else
    if (rc != CVR_OK)
        s_log_error (actor, "rejoin", rc);
    else
        zsys_info ("conveyor: member of %s rejoined as %s at generation %" PRId64,
                   self->group_id, self->member_id, self->generation);
}

//  The server no longer knows the member: revoke everything, rejoin.
static void
s_lost (s_actor_t *actor, const char *why)
{
    cvr_member_t *self = actor->owner;
    zsys_info ("conveyor: member %s of %s lost its membership (%s)", s_id (self),
               self->group_id, why);
    actor->joined = false;
    s_revoke_all (actor);
    s_rejoin (actor);
}

//  One heartbeat; a stale generation brings the new assignment.
static void
s_heartbeat (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    int64_t current;
    cvr_assignment_t *assignment = NULL;
    actor->next = zclock_mono () + s_interval (actor);
    cvr_err_t rc = cvr_client_group_heartbeat (actor->client, self->group_id,
                                               self->member_id, self->generation,
                                               &current, &assignment);
    if (rc == CVR_OK) {
        if (assignment && current != self->generation)
            s_transition (actor, current, assignment);
        cvr_assignment_destroy (&assignment);
    }
    else
    if (rc == CVR_UNKNOWN_MEMBER || rc == CVR_NOT_FOUND)
        s_lost (actor, cvr_err_name (rc));
    else {
        s_log_error (actor, "heartbeat", rc);     //  keep everything; retry
        //  A cluster without a leader for the whole call (a long
        //  election) has one soon: try again before the usual time.
        if (rc == CVR_TIMEOUT && cvr_client_clustered (actor->client)
        &&  s_interval (actor) > 250)
            actor->next = zclock_mono () + 250;
    }
}

//  Whatever is due: a heartbeat, or a rejoin while not a member.
static void
s_tick (s_actor_t *actor)
{
    if (actor->owner->fenced)
        actor->next = zclock_mono () + CVR_MEMBER_FOREVER;
    else
    if (!actor->joined)
        s_rejoin (actor);
    else
    if (actor->paused)
        actor->next = zclock_mono () + s_interval (actor);
    else
        s_heartbeat (actor);
    s_follow (actor);
}

//  A commit with the current generation. With refresh (a call from the
//  application), a stale generation is followed by a heartbeat and a lost
//  membership by a rejoin, both before the answer.
static cvr_err_t
s_commit (s_actor_t *actor, const cvr_committed_t *offsets, size_t count, bool refresh)
{
    cvr_member_t *self = actor->owner;
    if (self->fenced)
        return CVR_UNKNOWN_MEMBER;
    if (!actor->joined) {
        if (refresh)
            s_rejoin (actor);
        return CVR_UNKNOWN_MEMBER;
    }
    cvr_err_t rc = cvr_client_commit_offsets (actor->client, self->group_id,
                                              self->member_id, self->generation,
                                              offsets, count);
    if (refresh)
        s_follow (actor);
    if (refresh && rc == CVR_ILLEGAL_GENERATION)
        s_heartbeat (actor);
    else
    if (refresh && (rc == CVR_UNKNOWN_MEMBER || rc == CVR_NOT_FOUND))
        s_lost (actor, cvr_err_name (rc));
    return rc;
}

//  --------------------------------------------------------------------------
//  Events

static void
s_on_assignment (s_actor_t *actor, const msgpack_object *body)
{
    cvr_member_t *self = actor->owner;
    int64_t generation;
    const msgpack_object *assignments = cvr_obj_get (body, "assignments");
    if (cvr_obj_int (cvr_obj_get (body, "generation"), &generation)
    ||  !assignments || !cvr_obj_is_str_map (assignments)) {
        zsys_debug ("conveyor: member of %s dropped a malformed assignment event",
                    self->group_id);
        return;
    }
    if (generation <= self->generation)
        return;                 //  known already (join reply, heartbeat)
    cvr_assignment_t mine = { NULL, 0 };
    //  Absent: the member has nothing in this generation (or is gone,
    //  which its next heartbeat will tell).
    const msgpack_object *entry = cvr_obj_get (assignments, self->member_id);
    if (entry && s_read_assignment (entry, &mine)) {
        cvr_assignment_clear (&mine);
        zsys_debug ("conveyor: member of %s dropped a malformed assignment event",
                    self->group_id);
        return;
    }
    s_transition (actor, generation, &mine);
    cvr_assignment_clear (&mine);
}

static void
s_on_membership (s_actor_t *actor, const msgpack_object *body)
{
    cvr_member_t *self = actor->owner;
    const msgpack_object *member = cvr_obj_get (body, "member_id");
    if (!cvr_obj_streq (member, self->member_id))
        return;
    char *type = cvr_obj_get_strdup (body, "type");
    int64_t generation = cvr_obj_get_int (body, "generation", 0);
    if (type && streq (type, "fenced")) {
        //  Fenced ids stay fenced: this one is ours, whatever the
        //  generation (a replacement makes no new one).
        if (self->instance_id)
            s_fence (actor);
        else
            s_lost (actor, "fenced");
    }
    else
    //  A removal produces the next generation: one at or below ours is
    //  about an earlier incarnation of a reused member id.
    if (type && (streq (type, "left") || streq (type, "expired"))
    &&  generation > self->generation)
        s_lost (actor, type);
    free (type);
}

//  One message from the SUB socket.
static void
s_receive (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    zmsg_t *msg = zmsg_recv (actor->sub);
    if (!msg)
        return;
    if (!actor->live) {
        actor->live = true;
        if (actor->joined)
            actor->next = zclock_mono ();   //  catch up once subscribed
    }
    if (actor->deaf || zmsg_size (msg) != 2 || !actor->joined) {
        zmsg_destroy (&msg);
        return;
    }
    char *topic = zframe_strdup (zmsg_first (msg));
    zframe_t *frame = zmsg_next (msg);
    cvr_msg_t *body = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
    const msgpack_object *root = body ? cvr_msg_root (body) : NULL;
    size_t prefix = strlen ("group/") + strlen (self->group_id) + 1;
    if (root && cvr_obj_is_str_map (root) && strlen (topic) > prefix
    &&  strncmp (topic, "group/", 6) == 0) {
        const char *kind = topic + prefix;
        if (streq (kind, "assignment"))
            s_on_assignment (actor, root);
        else
        if (streq (kind, "membership"))
            s_on_membership (actor, root);
    }
    cvr_msg_destroy (&body);
    free (topic);
    zmsg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  The actor

//  Connects the client and the SUB socket. Returns CVR_OK or the code of
//  what failed.
static cvr_err_t
s_connect (s_actor_t *actor)
{
    cvr_member_t *self = actor->owner;
    actor->client = cvr_client_new_secure (self->endpoint, self->timeout_ms, self->security);
    if (!actor->client)
        return CVR_BAD_REQUEST;
    cvr_hello_t hello;
    cvr_err_t rc = cvr_client_hello (actor->client, &hello);
    if (rc != CVR_OK)
        return rc;
    actor->session_ms = hello.session_timeout_ms > 0 ? hello.session_timeout_ms : 30000;
    cvr_hello_clear (&hello);
    bool known = cvr_client_events_endpoint (actor->client) != NULL;
    actor->sub = known ? zsock_new (ZMQ_SUB) : NULL;
    if (!actor->sub)
        return CVR_INTERNAL;
    zsock_set_linger (actor->sub, 0);
    cvr_security_apply (self->security, actor->sub);
    char *prefix = zsys_sprintf ("group/%s/", self->group_id);
    zsock_set_subscribe (actor->sub, prefix);
    zsock_set_subscribe (actor->sub, CVR_MEMBER_HEARTBEAT_TOPIC);
    free (prefix);
    if (s_subscribe (actor)) {
        zsock_destroy (&actor->sub);
        return CVR_BAD_REQUEST;
    }
    return CVR_OK;
}

//  A command from the owner; returns false on $TERM.
static bool
s_command (s_actor_t *actor)
{
    zmsg_t *msg = zmsg_recv (actor->pipe);
    if (!msg)
        return true;
    char *command = zmsg_popstr (msg);
    bool running = true;
    if (!command)
        ;
    else
    if (streq (command, "$TERM"))
        running = false;
    else
    if (streq (command, "COMMIT")) {
        zframe_t *frame = zmsg_pop (msg);
        s_commit_t *commit = NULL;
        if (frame && zframe_size (frame) == sizeof (commit))
            memcpy (&commit, zframe_data (frame), sizeof (commit));
        cvr_err_t rc = commit ? s_commit (actor, commit->offsets, commit->count, true)
                              : CVR_INTERNAL;
        zframe_destroy (&frame);
        zsock_send (actor->pipe, "i", (int) rc);
    }
    else
    if (streq (command, "TEST")) {
        char *deaf = zmsg_popstr (msg);
        char *paused = zmsg_popstr (msg);
        actor->deaf = deaf && streq (deaf, "1");
        actor->paused = paused && streq (paused, "1");
        zstr_free (&deaf);
        zstr_free (&paused);
        zsock_send (actor->pipe, "i", 0);
    }
    zstr_free (&command);
    zmsg_destroy (&msg);
    return running;
}

static void
s_actor (zsock_t *pipe, void *args)
{
    cvr_member_t *self = (cvr_member_t *) args;
    s_actor_t actor = { .owner = self, .pipe = pipe };
    self->thread = pthread_self ();
    self->running = &actor;
    zsock_signal (pipe, 0);

    cvr_err_t rc = s_connect (&actor);
    s_choose_id (&actor);
    if (rc == CVR_OK)
        rc = s_join (&actor);
    if (rc == CVR_OK) {
        //  The join went to the leader: listen to it, without a word the
        //  first time (moving there is no leader change).
        zstr_free (&actor.node);
        s_follow (&actor);
    }
    zsock_send (pipe, "i", (int) rc);
    if (rc != CVR_OK) {
        //  The owner destroys us at once: wait for that, nothing else.
        while (true) {
            char *command = zstr_recv (pipe);
            bool term = !command || streq (command, "$TERM");
            zstr_free (&command);
            if (term)
                break;
        }
    }
    else {
        zpoller_t *poller = zpoller_new (pipe, actor.sub, NULL);
        //  The owner decides when we stop: an interrupt in the application
        //  must not silently end the membership.
        zpoller_set_nonstop (poller, true);
        bool running = true;
        while (running) {
            int64_t wait = actor.next - zclock_mono ();
            void *which = zpoller_wait (poller, wait > 0 ? (int) wait : 0);
            if (which == pipe)
                running = s_command (&actor);
            else
            if (which == actor.sub)
                s_receive (&actor);
            if (running && zclock_mono () >= actor.next)
                s_tick (&actor);
        }
        zpoller_destroy (&poller);
        if (actor.joined && !self->fenced) {
            //  Still a member: the final on_revoked may commit.
            s_revoke_all (&actor);
            cvr_err_t left = cvr_client_leave_group (actor.client, self->group_id,
                                                     self->member_id);
            if (left != CVR_OK && left != CVR_UNKNOWN_MEMBER && left != CVR_NOT_FOUND)
                s_log_error (&actor, "leave", left);
        }
    }
    self->running = NULL;
    zstr_free (&actor.pending_id);
    zstr_free (&actor.node);
    zstr_free (&actor.events);
    zsock_destroy (&actor.sub);
    cvr_client_destroy (&actor.client);
}

//  --------------------------------------------------------------------------
//  Public API

static void
s_free (cvr_member_t *self)
{
    free (self->endpoint);
    cvr_security_destroy (&self->security);
    free (self->group_id);
    for (size_t i = 0; i < self->topics_count; i++)
        free (self->topics [i]);
    free (self->topics);
    free (self->config_member_id);
    free (self->instance_id);
    free (self->service_id);
    free (self->service_name);
    free (self->assignor);
    free (self->member_id);
    cvr_assignment_clear (&self->assignment);
    pthread_mutex_destroy (&self->lock);
    pthread_mutex_destroy (&self->call_lock);
    free (self);
}

cvr_member_t *
cvr_member_new (const char *endpoint, const cvr_member_config_t *config, cvr_err_t *err)
{
    if (err)
        *err = CVR_BAD_REQUEST;
    if (!endpoint || !config || !config->group_id || !config->topics
    ||  config->topics_count == 0)
        return NULL;
    for (size_t i = 0; i < config->topics_count; i++)
        if (!config->topics [i])
            return NULL;
    cvr_member_t *self = (cvr_member_t *) zmalloc (sizeof (cvr_member_t));
    self->endpoint = strdup (endpoint);
    self->security = cvr_security_dup (config->security);
    self->group_id = strdup (config->group_id);
    self->topics = (char **) zmalloc (config->topics_count * sizeof (char *));
    for (size_t i = 0; i < config->topics_count; i++)
        self->topics [i] = strdup (config->topics [i]);
    self->topics_count = config->topics_count;
    if (config->member_id && *config->member_id)
        self->config_member_id = strdup (config->member_id);
    self->instance_id = s_strdup (config->instance_id);
    self->service_id = s_strdup (config->service_id);
    self->service_name = s_strdup (config->service_name);
    self->session_timeout_ms = config->session_timeout_ms;
    self->assignor = s_strdup (config->assignor);
    self->timeout_ms = config->timeout_ms > 0 ? config->timeout_ms
                                              : CVR_MEMBER_TIMEOUT_DEFAULT;
    self->on_assigned = config->on_assigned;
    self->on_revoked = config->on_revoked;
    self->on_fenced = config->on_fenced;
    self->arg = config->arg;
    pthread_mutex_init (&self->lock, NULL);
    pthread_mutex_init (&self->call_lock, NULL);

    self->actor = zactor_new (s_actor, self);
    int rc = CVR_INTERNAL;
    if (self->actor && zsock_recv (self->actor, "i", &rc) != 0)
        rc = CVR_INTERNAL;
    if (err)
        *err = (cvr_err_t) rc;
    if (rc != CVR_OK) {
        zactor_destroy (&self->actor);
        s_free (self);
        return NULL;
    }
    return self;
}

void
cvr_member_destroy (cvr_member_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_member_t *self = *self_p;
    //  zactor_destroy sends $TERM and waits: the actor revokes and leaves.
    zactor_destroy (&self->actor);
    s_free (self);
    *self_p = NULL;
}

static bool
s_on_actor_thread (cvr_member_t *self)
{
    //  thread is set before the actor's handshake and never changes.
    return pthread_equal (self->thread, pthread_self ()) && self->running;
}

cvr_err_t
cvr_member_commit (cvr_member_t *self, const cvr_committed_t *offsets, size_t count)
{
    assert (self);
    if (!offsets && count)
        return CVR_BAD_REQUEST;
    if (s_on_actor_thread (self))
        return s_commit (self->running, offsets, count, false);
    s_commit_t commit = { offsets, count };
    s_commit_t *pointer = &commit;
    int rc = CVR_INTERNAL;
    pthread_mutex_lock (&self->call_lock);
    zmsg_t *msg = zmsg_new ();
    zmsg_addstr (msg, "COMMIT");
    zmsg_addmem (msg, &pointer, sizeof (pointer));
    if (zmsg_send (&msg, self->actor) == 0 && zsock_recv (self->actor, "i", &rc) != 0)
        rc = CVR_INTERNAL;
    zmsg_destroy (&msg);
    pthread_mutex_unlock (&self->call_lock);
    return (cvr_err_t) rc;
}

int64_t
cvr_member_generation (cvr_member_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    int64_t generation = self->generation;
    pthread_mutex_unlock (&self->lock);
    return generation;
}

cvr_assignment_t *
cvr_member_assignment (cvr_member_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    cvr_assignment_t *copy = cvr_assignment_dup (&self->assignment);
    pthread_mutex_unlock (&self->lock);
    return copy;
}

char *
cvr_member_id (cvr_member_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    char *id = s_strdup (self->member_id);
    pthread_mutex_unlock (&self->lock);
    return id;
}

bool
cvr_member_fenced (cvr_member_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    bool fenced = self->fenced;
    pthread_mutex_unlock (&self->lock);
    return fenced;
}

uint64_t
cvr_member_joins (cvr_member_t *self)
{
    assert (self);
    pthread_mutex_lock (&self->lock);
    uint64_t joins = self->joins;
    pthread_mutex_unlock (&self->lock);
    return joins;
}

//  Test hook, not in the public header (tests declare it): deaf drops
//  every event, paused stops the periodic heartbeats (a member that stops
//  without leaving). Returns once the actor applied it.
void
    cvr_member_test_set (cvr_member_t *self, bool deaf, bool paused);

void
cvr_member_test_set (cvr_member_t *self, bool deaf, bool paused)
{
    assert (self);
    pthread_mutex_lock (&self->call_lock);
    zstr_sendx (self->actor, "TEST", deaf ? "1" : "0", paused ? "1" : "0", NULL);
    int rc;
    zsock_recv (self->actor, "i", &rc);
    pthread_mutex_unlock (&self->call_lock);
}
