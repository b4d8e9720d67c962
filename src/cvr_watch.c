/*  cvr_watch.c: an ordered, gap-free stream of the events under a prefix.

    Protocol section 6: subscribe first, then read a snapshot, then deliver
    what comes live with a seq above it. What is known is kept as:

    - horizon: every event under the prefix with a seq up to it has been
      delivered or is covered by a snapshot. Raised by a snapshot and by a
      complete events_since reply; when watching everything (prefix ""),
      also by each live event that follows it directly, since then every
      seq is ours and contiguity proves completeness.
    - roots: for each root (service/<name>, group/<id>, topic/<name>), the
      seq of the last event delivered above the horizon. Events of a root
      are delivered above the horizon only as a complete chain (each one's
      prev is the one before, or at most the horizon), so an event above
      the horizon was delivered exactly when its seq is at most its root's.

    A live event whose prev is above the horizon and is not its root's last
    seq reveals a loss; so does a sys/heartbeat whose seq is above both the
    horizon and the last seq delivered. Either is repaired with
    events_since from the horizon, delivering (oldest first) what was not
    delivered yet; a lost event may therefore be delivered after a newer
    event of another root, never after a newer one of its own root. When
    the server no longer has that history (COMPACTED), a new snapshot is
    delivered instead.

    The subscription reaches the server some time after the snapshot, so
    what was published in between may be lost with no later event of the
    same root to tell. But once one message has arrived, the subscription
    is in place and everything after it arrives (short of a full queue):
    the first live event with a seq beyond the horizon's successor is
    therefore treated as a gap, which keeps even the startup in order.

    A cluster: every node publishes the same events with the same seq, and
    the watch listens to the node its client talks to. When the client
    moves (a redirect to the leader, or a node that stopped answering), the
    SUB socket is disconnected from the old node's publisher, what it
    queued is dropped, it is connected to the new node's, and a repair
    from the horizon fetches what the move may have cost; the new
    subscription's startup is then covered as above. Nothing is delivered
    twice (delivery is decided by seq, the same everywhere) and no
    snapshot is taken (that takes COMPACTED). A node that lags behind
    another reports a lower seq without having restarted, so a clustered
    watch never takes a seq below one seen for a restart. A dead node
    sends nothing, not even sys/heartbeat: after S_SILENCE_MS of silence
    the watch asks its node (hello), which moves the client on when that
    node does not answer.
*/
#include <czmq.h>
#include "conveyor/cvr_watch.h"
#include "cvr_client_internal.h"

#define CVR_WATCH_HEARTBEAT "sys/heartbeat"
#define S_SILENCE_MS        2500    //  without a message, a clustered watch
                                    //  asks whether its node is alive

struct _cvr_watch_t {
    cvr_client_t *client;       //  hello, snapshots and repairs
    zsock_t *sub;               //  live events under the prefix, heartbeats
    char *node;                 //  the request endpoint whose events sub
                                //  receives (the client's node); owned
    char *events;               //  that node's event endpoint; owned
    int64_t heard;              //  zclock_mono of the last message, or of
                                //  the last check that the node is alive
    bool following;             //  in s_follow (its repairs may move the
                                //  client again: the outer loop follows)
    bool started;               //  constructed: a move is news from now on
                                //  (before, it is the way to the leader)
    char *prefix;               //  what is watched; "" for everything
    bool everything;            //  prefix "": every seq is ours
    bool services;              //  the prefix covers service events, so a
                                //  snapshot lists services
    char *service_name;         //  list_services filter when the prefix
                                //  names one service; else NULL
    zlistx_t *queue;            //  events for cvr_watch_next, in delivery
                                //  order; owned
    zhashx_t *roots;            //  root -> uint64_t * seq of its last event
                                //  delivered above the horizon; owned
    uint64_t horizon;           //  see above
    uint64_t last;              //  highest seq delivered or covered
    uint64_t seen;              //  highest seq seen from this server, in any
                                //  message: a server whose latest is below
                                //  it has restarted and numbers anew
    bool live;                  //  a message came through the SUB socket,
                                //  so the subscription is in place
    uint64_t gaps;              //  repairs that delivered lost events
    uint64_t resyncs;           //  snapshots taken after COMPACTED
};

static void
s_free_item (void **item_p)
{
    free (*item_p);
    *item_p = NULL;
}

static void
s_destroy_event (void **item_p)
{
    cvr_event_destroy ((cvr_event_t **) item_p);
}

//  The root of a topic: its first two segments ("service/orders").
static char *
s_root (const char *topic)
{
    const char *slash = strchr (topic, '/');
    if (slash)
        slash = strchr (slash + 1, '/');
    size_t length = slash ? (size_t) (slash - topic) : strlen (topic);
    return zsys_sprintf ("%.*s", (int) length, topic);
}

static uint64_t
s_root_last (cvr_watch_t *self, const char *topic)
{
    char *root = s_root (topic);
    uint64_t *seq = (uint64_t *) zhashx_lookup (self->roots, root);
    free (root);
    return seq ? *seq : 0;
}

//  True when a and b agree over the shorter one's length: the services
//  whose topics start "service/<name>/" are under a prefix exactly then.
static bool
s_overlaps (const char *a, const char *b)
{
    size_t length = strlen (a) < strlen (b) ? strlen (a) : strlen (b);
    return strncmp (a, b, length) == 0;
}

//  A protocol name (section 2): what the server accepts as a filter.
static bool
s_valid_name (const char *name, size_t length)
{
    if (length == 0 || length > 200)
        return false;
    for (size_t i = 0; i < length; i++)
        if (!isalnum ((unsigned char) name [i]) && !strchr ("._:@-", name [i]))
            return false;
    return true;
}

//  --------------------------------------------------------------------------
//  Delivery

//  Queues an event known to be next for its root, and records it.
static void
s_deliver (cvr_watch_t *self, cvr_event_t *event)
{
    if (self->everything) {
        if (event->seq > self->horizon)
            self->horizon = event->seq;
    }
    else {
        uint64_t *seq = (uint64_t *) malloc (sizeof (uint64_t));
        assert (seq);
        *seq = event->seq;
        char *root = s_root (event->topic);
        zhashx_update (self->roots, root, seq);
        free (root);
    }
    if (event->seq > self->last)
        self->last = event->seq;
    zlistx_add_end (self->queue, event);
}

//  True when the event was delivered already or a snapshot covers it.
static bool
s_known (cvr_watch_t *self, const cvr_event_t *event)
{
    if (event->seq <= self->horizon)
        return true;
    return !self->everything && event->seq <= s_root_last (self, event->topic);
}

//  Everything up to seq under the prefix is now known: the chains above
//  the old horizon are complete and need no more tracking.
static void
s_raise_horizon (cvr_watch_t *self, uint64_t seq)
{
    if (seq > self->horizon)
        self->horizon = seq;
    if (seq > self->last)
        self->last = seq;
    zhashx_purge (self->roots);
}

//  Reads the state the prefix covers: the services under it, or just the
//  current seq. NULL when the server does not answer.
static cvr_event_t *
s_snapshot (cvr_watch_t *self)
{
    cvr_service_list_t *list = NULL;
    uint64_t seq = 0;
    if (self->services) {
        cvr_service_filter_t filter = { .service_name = self->service_name };
        if (cvr_client_list_services (self->client, &filter, &list))
            return NULL;
        //  A prefix like "service/ord" covers several names: keep the
        //  services whose events it matches, and those only.
        size_t kept = 0;
        for (size_t i = 0; i < list->count; i++) {
            char *topic = zsys_sprintf ("service/%s/", list->items [i]->service_name);
            if (s_overlaps (self->prefix, topic))
                list->items [kept++] = list->items [i];
            else
                cvr_service_destroy (&list->items [i]);
            free (topic);
        }
        list->count = kept;
        seq = list->seq;
    }
    else {
        cvr_hello_t hello;
        if (cvr_client_hello (self->client, &hello))
            return NULL;
        seq = hello.seq;
        cvr_hello_clear (&hello);
    }
    cvr_event_t *event = (cvr_event_t *) zmalloc (sizeof (cvr_event_t));
    event->topic = strdup (self->prefix);
    event->type = strdup ("snapshot");
    event->seq = seq;
    event->services = list;
    return event;
}

static void
    s_follow (cvr_watch_t *self);

//  Delivers a fresh snapshot and continues from it.
static int
s_resync (cvr_watch_t *self)
{
    cvr_event_t *snapshot = s_snapshot (self);
    if (!snapshot) {
        s_follow (self);
        return -1;
    }
    s_raise_horizon (self, snapshot->seq);
    zlistx_add_end (self->queue, snapshot);
    s_follow (self);
    return 0;
}

static void
    s_restart (cvr_watch_t *self, uint64_t latest);

//  Fetches and delivers what was missed since the horizon. On failure the
//  horizon stays, so the next heartbeat tries again.
static void
s_repair (cvr_watch_t *self)
{
    uint64_t since = self->horizon;
    size_t delivered = 0;
    while (true) {
        cvr_event_list_t *list = NULL;
        cvr_err_t rc = cvr_client_events_since (self->client, since, self->prefix,
                                                0, &list, NULL);
        if (rc == CVR_COMPACTED) {
            if (s_resync (self) == 0)
                self->resyncs++;
            return;
        }
        if (rc != CVR_OK) {
            zsys_debug ("conveyor: watch repair failed: %s %s", cvr_err_name (rc),
                        cvr_client_message (self->client));
            break;
        }
        if (list->seq < self->seen && !cvr_client_clustered (self->client)) {
            //  Its latest is below what it already sent us: not the same
            //  server's history any more.
            uint64_t latest = list->seq;
            cvr_event_list_destroy (&list);
            s_restart (self, latest);
            return;
        }
        uint64_t page_end = list->count ? list->items [list->count - 1]->seq : 0;
        //  A page that does not move forward would loop: take it as final.
        bool partial = list->more && page_end > since;
        for (size_t i = 0; i < list->count; i++) {
            cvr_event_t *event = list->items [i];
            if (strncmp (event->topic, self->prefix, strlen (self->prefix)) == 0
            &&  !s_known (self, event)) {
                list->items [i] = NULL;
                s_deliver (self, event);
                delivered++;
            }
        }
        if (partial) {
            //  Pages come oldest first: all up to the page's end is known.
            since = page_end;
            if (since > self->horizon)
                self->horizon = since;
        }
        else
            s_raise_horizon (self, list->seq);
        cvr_event_list_destroy (&list);
        if (!partial)
            break;
    }
    if (delivered)
        self->gaps++;
    s_follow (self);
}

//  The server restarted without its state and numbers from 1 again: all
//  that was known is void. What waits in the SUB queue came from the old
//  server (or is covered by the new snapshot, or will be fetched at the
//  next heartbeat, whose seq is then above the horizon): it is dropped, and
//  a new snapshot starts the stream over.
static void
s_restart (cvr_watch_t *self, uint64_t latest)
{
    zsys_info ("conveyor: watch: the server's seq went back from %" PRIu64 " to %" PRIu64
               " (it restarted); taking a new snapshot", self->seen, latest);
    self->horizon = 0;
    self->last = 0;
    self->seen = 0;
    zhashx_purge (self->roots);
    zsock_flush (self->sub);
    while (zsock_events (self->sub) & ZMQ_POLLIN) {
        zmsg_t *stale = zmsg_recv (self->sub);
        zmsg_destroy (&stale);
    }
    if (s_resync (self) == 0) {
        self->resyncs++;
        self->seen = self->horizon;
    }
}

//  A heartbeat below what we have seen is either one that waited in the
//  queue while a snapshot or repair read further, or a restarted server.
//  hello tells which.
static void
s_check_restart (cvr_watch_t *self)
{
    if (cvr_client_clustered (self->client))
        return;                 //  a node lagging behind, not a restart
    cvr_hello_t hello = { 0 };
    if (cvr_client_hello (self->client, &hello) == CVR_OK && hello.seq < self->seen)
        s_restart (self, hello.seq);
    cvr_hello_clear (&hello);
}

//  Points the SUB socket at the current node's event endpoint. When that
//  is another publisher, what the old one queued is dropped (the repair
//  that follows fetches whatever of it was not delivered). -1 when the
//  node does not say where its events are.
static int
s_subscribe (cvr_watch_t *self)
{
    const char *events = cvr_client_events_endpoint (self->client);
    if (!events)
        return -1;
    if (!self->events || strneq (self->events, events)) {
        if (self->events) {
            zsock_disconnect (self->sub, "%s", self->events);
            while (zsock_events (self->sub) & ZMQ_POLLIN) {
                zmsg_t *stale = zmsg_recv (self->sub);
                zmsg_destroy (&stale);
            }
        }
        zstr_free (&self->events);
        if (zsock_connect (self->sub, "%s", events))
            return -1;
        self->events = strdup (events);
        self->live = false;
    }
    free (self->node);
    self->node = strdup (cvr_client_endpoint (self->client));
    self->heard = zclock_mono ();
    return 0;
}

//  After requests: when the client moved to another node, listens to that
//  node's events and repairs from the horizon.
static void
s_follow (cvr_watch_t *self)
{
    if (self->following)
        return;
    self->following = true;
    //  The repair may move the client again (a node that died
    //  meanwhile): a few rounds at most, the next request does the rest.
    for (int round = 0; round < 3; round++) {
        if (self->node && streq (self->node, cvr_client_endpoint (self->client)))
            break;
        char *from = self->node ? strdup (self->node) : strdup ("-");
        if (s_subscribe (self)) {
            free (from);
            break;
        }
        if (self->started)
            zsys_info ("conveyor: watch of '%s': now on %s, events %s (was %s); "
                       "fetching what was missed since seq %" PRIu64, self->prefix,
                       self->node, self->events, from, self->horizon);
        free (from);
        s_repair (self);
    }
    self->following = false;
}

//  A clustered watch that heard nothing for a while: its node may be
//  dead. hello (answered by any node) moves the client on if so, and
//  tells the latest seq.
static void
s_probe (cvr_watch_t *self)
{
    self->heard = zclock_mono ();
    cvr_hello_t hello = { 0 };
    bool behind = cvr_client_hello (self->client, &hello) == CVR_OK
               && hello.seq > self->last && hello.seq > self->horizon;
    cvr_hello_clear (&hello);
    bool moved = !self->node || strneq (self->node, cvr_client_endpoint (self->client));
    s_follow (self);
    if (behind && !moved)
        s_repair (self);
}

//  One live event or heartbeat from the SUB socket.
static void
s_on_event (cvr_watch_t *self, cvr_event_t *event)
{
    bool first = !self->live;
    self->live = true;
    if (streq (event->topic, CVR_WATCH_HEARTBEAT)) {
        //  Its seq is the latest event: above what we have means lost ones
        //  (for a narrow prefix it often only means others' events, which
        //  the repair then finds nothing of).
        if (event->seq > self->last && event->seq > self->horizon)
            s_repair (self);
        else
        if (event->seq < self->seen)
            s_check_restart (self);
        if (event->seq > self->seen)
            self->seen = event->seq;
        cvr_event_destroy (&event);
        return;
    }
    if (event->seq > self->seen)
        self->seen = event->seq;
    if (strncmp (event->topic, self->prefix, strlen (self->prefix)) != 0
    ||  s_known (self, event)) {
        cvr_event_destroy (&event);
        return;
    }
    bool gap = self->everything || first
             ? event->seq != self->horizon + 1
             : event->prev > self->horizon
               && event->prev != s_root_last (self, event->topic);
    if (gap) {
        //  The repair brings this event too (it was published before we
        //  asked); if it fails, this one waits for the next repair rather
        //  than going out ahead of the events it follows.
        cvr_event_destroy (&event);
        s_repair (self);
    }
    else
        s_deliver (self, event);
}

//  Reads one message from the SUB socket.
static void
s_receive (cvr_watch_t *self)
{
    zmsg_t *msg = zmsg_recv (self->sub);
    if (!msg)
        return;
    self->heard = zclock_mono ();
    if (zmsg_size (msg) == 2) {
        char *topic = zframe_strdup (zmsg_first (msg));
        zframe_t *body = zmsg_next (msg);
        cvr_event_t *event = cvr_event_decode (topic, zframe_data (body),
                                               zframe_size (body));
        if (event)
            s_on_event (self, event);
        else
            zsys_debug ("conveyor: watch dropped an undecodable event on %s", topic);
        free (topic);
    }
    zmsg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Public API

cvr_watch_t *
cvr_watch_new (const char *endpoint, const char *prefix, int timeout_ms)
{
    return cvr_watch_new_secure (endpoint, prefix, timeout_ms, NULL);
}

cvr_watch_t *
cvr_watch_new_secure (const char *endpoint, const char *prefix, int timeout_ms,
                      const cvr_security_t *security)
{
    if (!endpoint)
        return NULL;
    cvr_watch_t *self = (cvr_watch_t *) zmalloc (sizeof (cvr_watch_t));
    self->prefix = strdup (prefix ? prefix : "");
    self->everything = *self->prefix == 0;
    size_t length = strlen (self->prefix);
    self->services = length <= 8
                   ? strncmp (self->prefix, "service/", length) == 0
                   : strncmp (self->prefix, "service/", 8) == 0;
    if (length > 8 && strncmp (self->prefix, "service/", 8) == 0) {
        const char *name = self->prefix + 8;
        const char *slash = strchr (name, '/');
        //  Only "service/<name>/..." names one service: "service/ord"
        //  also matches "service/orders/".
        if (slash && s_valid_name (name, (size_t) (slash - name)))
            self->service_name = zsys_sprintf ("%.*s", (int) (slash - name), name);
    }
    self->queue = zlistx_new ();
    zlistx_set_destructor (self->queue, s_destroy_event);
    self->roots = zhashx_new ();
    zhashx_set_destructor (self->roots, s_free_item);

    self->client = cvr_client_new_secure (endpoint, timeout_ms, security);
    const char *events = self->client ? cvr_client_events_endpoint (self->client) : NULL;
    if (events) {
        self->sub = zsock_new (ZMQ_SUB);
        if (self->sub) {
            zsock_set_linger (self->sub, 0);
            cvr_security_apply (security, self->sub);
            zsock_set_subscribe (self->sub, self->prefix);
            zsock_set_subscribe (self->sub, CVR_WATCH_HEARTBEAT);
            if (s_subscribe (self))
                zsock_destroy (&self->sub);
        }
    }
    //  Subscribed before the snapshot, so nothing after it can slip by
    //  unseen (what the subscription misses while it propagates shows as
    //  a gap and is repaired).
    if (self->sub && s_resync (self) == 0) {
        self->started = true;
        return self;
    }
    cvr_watch_destroy (&self);
    return NULL;
}

void
cvr_watch_destroy (cvr_watch_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_watch_t *self = *self_p;
    zsock_destroy (&self->sub);
    cvr_client_destroy (&self->client);
    free (self->node);
    free (self->events);
    zlistx_destroy (&self->queue);
    zhashx_destroy (&self->roots);
    free (self->prefix);
    free (self->service_name);
    free (self);
    *self_p = NULL;
}

cvr_event_t *
cvr_watch_next (cvr_watch_t *self, int timeout_ms)
{
    assert (self);
    int64_t deadline = zclock_mono () + (timeout_ms > 0 ? timeout_ms : 0);
    zmq_pollitem_t item = { zsock_resolve (self->sub), 0, ZMQ_POLLIN, 0 };
    while (zlistx_size (self->queue) == 0) {
        bool clustered = cvr_client_clustered (self->client);
        int64_t now = zclock_mono ();
        if (clustered && now - self->heard >= S_SILENCE_MS) {
            s_probe (self);
            continue;
        }
        long wait = -1;
        if (timeout_ms >= 0)
            wait = deadline > now ? (long) (deadline - now) : 0;
        if (clustered) {
            long probe = (long) (self->heard + S_SILENCE_MS - now);
            if (wait < 0 || probe < wait)
                wait = probe;
        }
        int rc = zmq_poll (&item, 1, wait);
        if (rc < 0 && (errno != EINTR || zsys_interrupted))
            return NULL;
        if (rc > 0)
            s_receive (self);
        else
        if (rc == 0 && timeout_ms >= 0 && zclock_mono () >= deadline)
            return NULL;
    }
    return (cvr_event_t *) zlistx_detach (self->queue, NULL);
}

zsock_t *
cvr_watch_socket (cvr_watch_t *self)
{
    assert (self);
    return self->sub;
}

uint64_t
cvr_watch_gaps (cvr_watch_t *self)
{
    assert (self);
    return self->gaps;
}

uint64_t
cvr_watch_resyncs (cvr_watch_t *self)
{
    assert (self);
    return self->resyncs;
}
