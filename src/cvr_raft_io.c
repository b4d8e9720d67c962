/*  cvr_raft_io.c: a raft_io that holds back InstallSnapshot while the
    node writes a snapshot of its own; see cvr_raft_io.h. Every call runs
    on the raft thread (libuv's loop); nothing here locks. */
#include "cvr_raft_io.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

//  A snapshot write in flight, sent to the inner I/O with our own request
//  so that its callback comes here first.
typedef struct {
    bool active;
    struct raft_io_snapshot_put req;        //  ours; data: the guard
    struct raft_io_snapshot_put *outer_req; //  libraft's
    raft_io_snapshot_put_cb outer_cb;       //  libraft's
} s_put_t;

typedef struct {
    raft_id id;
    char *address;                  //  owned
} s_peer_t;

struct _cvr_raft_io_t {
    struct raft_io inner;           //  the real I/O (raft_uv)
    struct raft_io outer;           //  what libraft calls
    raft_io_recv_cb recv;           //  libraft's receive callback
    raft_io_tick_cb tick;           //  libraft's tick callback
    s_put_t take;                   //  the node's own snapshot (trailing > 0)
    s_put_t install;                //  an installed one (trailing 0)
    //  An InstallSnapshot held until that write is done; owns its buffers
    bool holding;
    struct raft_message held;
    char *held_address;             //  the sender's, copied (kept until
                                    //  replaced: libraft may look at it)
    bool closing;
    size_t held_count;
    size_t dropped_count;
    //  Each server's address as last seen in a message libraft sent at
    //  once (a copy: see s_send). A cluster has a handful of servers.
    s_peer_t *peers;
    size_t peer_count;
    size_t refused_count;
};

static int s_init (struct raft_io *io, raft_id id, const char *address);

static cvr_raft_io_t *
s_from_inner (struct raft_io *inner)
{
    return (cvr_raft_io_t *) ((char *) inner - offsetof (cvr_raft_io_t, inner));
}

//  The guard behind a call. libraft calls the outer I/O's methods with the
//  raft_io it was handed (its tick asks r->io->time (io) of the io that
//  ticked), and raft_uv's own callbacks (close, its loop's prepare and
//  check) hand it the inner one. The outer has our methods and points at
//  us; the inner is one of our fields.
static cvr_raft_io_t *
s_self (struct raft_io *io)
{
    return io->init == s_init ? (cvr_raft_io_t *) io->impl : s_from_inner (io);
}

//  libraft reads two fields of its raft_io rather than calling it: the
//  version, and the free disk space in capacity, which raft_uv rewrites on
//  every turn of its loop and libraft reads with each event, right after
//  asking the time (legacyHandleEvent). So every call through the guard,
//  time included, and every callback it passes on copy both first. (A 0
//  left from before raft_uv's start makes a leader refuse every entry.)
static void
s_sync (cvr_raft_io_t *self)
{
    self->outer.version = self->inner.version;
#if CVR_RAFT_IO_CAPACITY
    self->outer.capacity = self->inner.capacity;
#endif
}

//  After every forwarded call. A call the inner I/O refused left its
//  reason in the inner errmsg; libraft reads the outer one.
static int
s_result (cvr_raft_io_t *self, int rc)
{
    s_sync (self);
    if (rc)
        memcpy (self->outer.errmsg, self->inner.errmsg, sizeof (self->outer.errmsg));
    return rc;
}

//  Frees what an InstallSnapshot owns, as libraft would have.
static void
s_free_install (struct raft_message *message)
{
    raft_free (message->install_snapshot.data.base);
    raft_configuration_close (&message->install_snapshot.conf);
}

static void
s_drop_held (cvr_raft_io_t *self)
{
    if (!self->holding)
        return;
    s_free_install (&self->held);
    self->holding = false;
    self->dropped_count++;
}

//  Hands the held message to libraft once nothing forbids it.
static void
s_release (cvr_raft_io_t *self)
{
    if (!self->holding || self->take.active || self->closing)
        return;
    struct raft_message message = self->held;
    self->holding = false;
    s_sync (self);
    self->recv (&self->outer, &message);
}

static void
s_recv (struct raft_io *inner, struct raft_message *message)
{
    cvr_raft_io_t *self = s_from_inner (inner);
    if (message->type == CVR_RAFT_INSTALL_SNAPSHOT && self->install.active) {
        //  A duplicate (the leader sends one per AppendEntries result that
        //  asks): libraft would answer "already installing" and leak its
        //  buffers. Dropped here, as the network could drop it.
        s_free_install (message);
        self->dropped_count++;
        return;
    }
    if (message->type != CVR_RAFT_INSTALL_SNAPSHOT || !self->take.active) {
        s_sync (self);
        self->recv (&self->outer, message);
        return;
    }
    //  The newest one wins: an older one is what the network could lose.
    s_drop_held (self);
    free (self->held_address);
    self->held_address = strdup (message->server_address ? message->server_address : "");
    assert (self->held_address);
    self->held = *message;
    self->held.server_address = self->held_address;
    self->holding = true;
    self->held_count++;
}

static void
s_tick (struct raft_io *inner)
{
    cvr_raft_io_t *self = s_from_inner (inner);
    s_sync (self);
    self->tick (&self->outer);
}

static void
s_put_done (struct raft_io_snapshot_put *req, int status)
{
    cvr_raft_io_t *self = (cvr_raft_io_t *) req->data;
    s_put_t *put = req == &self->take.req ? &self->take : &self->install;
    put->active = false;
    s_sync (self);
    put->outer_cb (put->outer_req, status);
    //  A message held for the node's own snapshot goes now, unless libraft
    //  started another meanwhile: then it waits for that one too.
    s_release (self);
}

//  --------------------------------------------------------------------------
//  The forwarding raft_io

static int
s_init (struct raft_io *io, raft_id id, const char *address)
{
    cvr_raft_io_t *self = s_self (io);
    //  raft_init set the outer data to its struct raft; the inner I/O
    //  passes itself to libraft's tick and close callbacks, which read it.
    self->inner.data = io->data;
    return s_result (self, self->inner.init (&self->inner, id, address));
}

static void
s_close (struct raft_io *io, raft_io_close_cb cb)
{
    cvr_raft_io_t *self = s_self (io);
    self->closing = true;
    s_drop_held (self);
    self->inner.close (&self->inner, cb);
}

static int
s_load (struct raft_io *io, raft_term *term, raft_id *voted_for,
        struct raft_snapshot **snapshot, raft_index *start_index,
        struct raft_entry *entries [], size_t *n_entries)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.load (&self->inner, term, voted_for, snapshot,
                                             start_index, entries, n_entries));
}

static int
s_start (struct raft_io *io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv)
{
    cvr_raft_io_t *self = s_self (io);
    self->recv = recv;
    self->tick = tick;
    return s_result (self, self->inner.start (&self->inner, msecs, s_tick, s_recv));
}

static int
s_bootstrap (struct raft_io *io, const struct raft_configuration *conf)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.bootstrap (&self->inner, conf));
}

static int
s_recover (struct raft_io *io, const struct raft_configuration *conf)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.recover (&self->inner, conf));
}

static int
s_set_term (struct raft_io *io, raft_term term)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.set_term (&self->inner, term));
}

static int
s_set_vote (struct raft_io *io, raft_id server_id)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.set_vote (&self->inner, server_id));
}

//  The server's noted address, or NULL.
static s_peer_t *
s_peer (cvr_raft_io_t *self, raft_id id)
{
    for (size_t index = 0; index < self->peer_count; index++)
        if (self->peers [index].id == id)
            return &self->peers [index];
    return NULL;
}

static void
s_peer_note (cvr_raft_io_t *self, raft_id id, const char *address)
{
    s_peer_t *peer = s_peer (self, id);
    if (!address || (peer && strcmp (peer->address, address) == 0))
        return;
    if (!peer) {
        self->peers = realloc (self->peers, (self->peer_count + 1) * sizeof (s_peer_t));
        assert (self->peers);
        peer = &self->peers [self->peer_count++];
        *peer = (s_peer_t) { id, NULL };
    }
    free (peer->address);
    peer->address = strdup (address);
    assert (peer->address);
}

//  libraft 0.22.1 sends an InstallSnapshot late: its legacy layer copies
//  the message, reads the snapshot from disk (snapshot_get), and sends it
//  from that callback (legacyLoadSnapshotCb), with the server address
//  still pointing into the configuration of when it was queued. A
//  membership change meanwhile (raft_add, raft_remove) frees that
//  configuration, and raft_uv's send then reads freed memory (found by
//  AddressSanitizer in test_raft's snapshot storm). Every other message is
//  sent at once, while its address is valid: the guard notes each
//  server's, and gives an InstallSnapshot the noted one instead of
//  reading the message's. A leader always sends a server AppendEntries
//  first (a snapshot answers a rejected one), so one is known; if none
//  is, the send is refused and the leader tries again later.
static int
s_send (struct raft_io *io, struct raft_io_send *req, const struct raft_message *message,
        raft_io_send_cb cb)
{
    cvr_raft_io_t *self = s_self (io);
    if (message->type != CVR_RAFT_INSTALL_SNAPSHOT) {
        s_peer_note (self, message->server_id, message->server_address);
        return s_result (self, self->inner.send (&self->inner, req, message, cb));
    }
    s_peer_t *peer = s_peer (self, message->server_id);
    if (!peer) {
        self->refused_count++;
        snprintf (self->outer.errmsg, sizeof (self->outer.errmsg),
                  "no address known for server %llu", (unsigned long long) message->server_id);
        return RAFT_NOCONNECTION;
    }
    struct raft_message late = *message;
    late.server_address = peer->address;
    return s_result (self, self->inner.send (&self->inner, req, &late, cb));
}

static int
s_append (struct raft_io *io, struct raft_io_append *req, const struct raft_entry entries [],
          unsigned n, raft_io_append_cb cb)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.append (&self->inner, req, entries, n, cb));
}

static int
s_truncate (struct raft_io *io, raft_index index)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.truncate (&self->inner, index));
}

static int
s_snapshot_put (struct raft_io *io, unsigned trailing, struct raft_io_snapshot_put *req,
                const struct raft_snapshot *snapshot, raft_io_snapshot_put_cb cb)
{
    cvr_raft_io_t *self = s_self (io);
    //  One of each at a time: libraft takes one snapshot and installs one
    //  at a time, and tells them apart by trailing as raft_uv does.
    s_put_t *put = trailing ? &self->take : &self->install;
    assert (!put->active);
    put->outer_req = req;
    put->outer_cb = cb;
    put->req.data = self;
    //  Set first, in case an I/O completes the write before it returns.
    put->active = true;
    int rc = self->inner.snapshot_put (&self->inner, trailing, &put->req, snapshot, s_put_done);
    if (rc)
        put->active = false;
    return s_result (self, rc);
}

static int
s_snapshot_get (struct raft_io *io, struct raft_io_snapshot_get *req,
                raft_io_snapshot_get_cb cb)
{
    cvr_raft_io_t *self = s_self (io);
    return s_result (self, self->inner.snapshot_get (&self->inner, req, cb));
}

static raft_time
s_time (struct raft_io *io)
{
    cvr_raft_io_t *self = s_self (io);
    raft_time now = self->inner.time (&self->inner);
    s_sync (self);
    return now;
}

static int
s_random (struct raft_io *io, int min, int max)
{
    cvr_raft_io_t *self = s_self (io);
    return self->inner.random (&self->inner, min, max);
}

//  --------------------------------------------------------------------------

cvr_raft_io_t *
cvr_raft_io_new (void)
{
    cvr_raft_io_t *self = (cvr_raft_io_t *) calloc (1, sizeof (cvr_raft_io_t));
    assert (self);
    struct raft_io *outer = &self->outer;
    outer->impl = self;
    outer->init = s_init;
    outer->close = s_close;
    outer->load = s_load;
    outer->start = s_start;
    outer->bootstrap = s_bootstrap;
    outer->recover = s_recover;
    outer->set_term = s_set_term;
    outer->set_vote = s_set_vote;
    outer->send = s_send;
    outer->append = s_append;
    outer->truncate = s_truncate;
    outer->snapshot_put = s_snapshot_put;
    outer->snapshot_get = s_snapshot_get;
    outer->time = s_time;
    outer->random = s_random;
    return self;
}

void
cvr_raft_io_destroy (cvr_raft_io_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_raft_io_t *self = *self_p;
    s_drop_held (self);
    free (self->held_address);
    for (size_t index = 0; index < self->peer_count; index++)
        free (self->peers [index].address);
    free (self->peers);
    free (self);
    *self_p = NULL;
}

struct raft_io *
cvr_raft_io_inner (cvr_raft_io_t *self)
{
    return &self->inner;
}

struct raft_io *
cvr_raft_io_outer (cvr_raft_io_t *self)
{
    s_sync (self);
    return &self->outer;
}

size_t
cvr_raft_io_held (cvr_raft_io_t *self)
{
    return self->held_count;
}

size_t
cvr_raft_io_dropped (cvr_raft_io_t *self)
{
    return self->dropped_count;
}

size_t
cvr_raft_io_refused (cvr_raft_io_t *self)
{
    return self->refused_count;
}
