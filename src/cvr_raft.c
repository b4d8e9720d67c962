/*  cvr_raft.c: libraft in its own libuv thread. See cvr_raft.h and
    shared/notes/raft.md for why each workaround is here.

    The owner's calls (submit, add, remove, destroy) push operations onto a
    mutex-guarded queue and wake the raft thread with uv_async_send. Wakeups
    coalesce, so the thread drains the whole queue each time: a burst of
    submits becomes a burst of raft_apply calls, which libraft writes and
    replicates together. Results go back on an inproc PAIR whose sending end
    only the raft thread touches.
*/
#include "cvr_raft.h"
#include "cvr_raft_io.h"

#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
#include <signal.h>
#include <stdatomic.h>
#include <inttypes.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

//  LeakSanitizer runs with no suppression for libraft. 0.22.1 leaked a
//  duplicate InstallSnapshot that arrives while it is still installing the
//  first one (its replicationInstallSnapshot answers "already taking or
//  installing snapshot" with *async = true, and nobody frees the message);
//  leaders send duplicates when two AppendEntries results both ask for a
//  snapshot. cvr_raft_io now drops such a duplicate itself, and holds one
//  back while a snapshot is taken, so libraft never sees either case.

#define S_POLL_MS 50                //  raft_state poll period
#define S_DRAIN_MS 1000             //  longest wait for disk writes on destroy
#define S_ENTRY_MAGIC 0x31525643u   //  "CVR1" little-endian
#define S_SNAPSHOT_MAGIC 0x53525643u    //  "CVRS" little-endian
#define S_ENTRY_HEADER 8            //  magic (4) + length (4)
#define S_SNAPSHOT_HEADER 16        //  magic (4) + reserved (4) + length (8)
//  The event picture: command, tag, status, error, index, result, leader, term
#define S_EVENT_PICTURE "s8ii8i88"

typedef enum {
    S_OP_SUBMIT,
    S_OP_ADD,
    S_OP_REMOVE
} s_op_type_t;

//  One queued request from the owner to the raft thread.
typedef struct _s_op_t {
    s_op_type_t type;
    uint64_t tag;               //  the caller's tag, echoed in the event
    uint64_t id;                //  ADD, REMOVE: the server
    char *address;              //  ADD: owned copy
    void *entry;                //  SUBMIT: padded raft_malloc'd buffer, owned
    size_t entry_size;          //  SUBMIT: its size, a multiple of 8
    struct _s_op_t *next;
} s_op_t;

//  The request structs start with libraft's, so callbacks cast back.
typedef struct {
    struct raft_apply req;
    cvr_raft_t *owner;
    uint64_t tag;
} s_apply_t;

typedef struct {
    struct raft_change req;
    cvr_raft_t *owner;
    uint64_t tag;
    uint64_t id;
    bool promote;               //  raft_add done: raft_assign VOTER next
} s_change_t;

typedef struct {
    struct raft_barrier req;
    cvr_raft_t *owner;
    uint64_t term;              //  the term it was issued in
} s_barrier_t;

//  A connect request as handed to libraft's TCP transport, so that the
//  connection can be given TCP_NODELAY before raft's own callback runs.
typedef struct {
    struct raft_uv_connect req;     //  ours, for the TCP transport
    struct raft_uv_connect *outer;  //  raft_uv's request
    raft_uv_connect_cb outer_cb;    //  raft_uv's callback
} s_connect_t;

struct _cvr_raft_t {
    //  Configuration, copied by cvr_raft_new
    uint64_t id;                //  this server's id
    char *address;              //  this server's "host:port"
    char *data_dir;             //  its data directory
    cvr_raft_peer_t *peers;     //  initial cluster; addresses owned
    size_t peer_count;
    unsigned election_ms;       //  election timeout
    unsigned heartbeat_ms;      //  heartbeat timeout
    unsigned threshold;         //  snapshot threshold
    unsigned trailing;          //  snapshot trailing
    unsigned connect_retry_ms;  //  0: libraft's default
    bool pre_vote;              //  raft_set_pre_vote
    cvr_raft_fsm_t fsm;         //  the caller's FSM
    void *arg;                  //  passed to every FSM callback

    //  Shared between the owner and the raft thread
    zsock_t *reader;            //  PAIR, the owner reads events here
    zsock_t *writer;            //  PAIR, only the raft thread sends here
    uv_thread_t thread;         //  the raft thread
    uv_sem_t started;           //  posted once startup has succeeded or failed
    char *error;                    //  the caller's, during cvr_raft_new only
    size_t error_size;
    int start_rc;               //  0 or -1, set before started is posted
    uv_mutex_t lock;            //  guards head, tail, stopping and cache
    s_op_t *head;               //  queued operations, oldest first
    s_op_t *tail;
    bool stopping;              //  no more operations; async may close
    cvr_raft_status_t cache;    //  what cvr_raft_status copies; owns servers
    atomic_bool is_leader;      //  leader with its barrier done
    _Atomic uint64_t leader_id; //  as cvr_raft_leader_id

    //  Raft thread only
    uv_loop_t loop;             //  the raft thread's loop
    uv_async_t async;           //  wakes the thread for queued operations
    uv_timer_t timer;           //  polls raft_state
    struct raft_uv_transport tcp;       //  libraft's TCP transport
    struct raft_uv_transport nodelay;   //  wraps tcp; what raft_uv uses
    raft_uv_accept_cb accept_cb;        //  raft_uv's accept callback
    raft_uv_transport_close_cb transport_close_cb;  //  raft_uv's close callback
    cvr_raft_io_t *io;          //  raft_uv disk and network I/O, guarded
                                //  (cvr_raft_io.h: libraft's snapshot crash)
    struct raft_fsm raft_fsm;   //  adapter to fsm
    struct raft raft;           //  the server
    bool draining;              //  stopping: waiting for writes to land
    uint64_t drain_deadline;    //  loop time when it closes regardless
    bool closing;               //  raft_close has been called
    bool barrier_pending;       //  a leader barrier is in flight
    bool leader_ready;          //  barrier done in ready_term, still leader
    uint64_t ready_term;        //  the term leader_ready belongs to
    bool reported_leader;       //  the last event sent was LEADER
    uint64_t reported_id;       //  leader id in the last event sent
};

static inline size_t
s_pad8 (size_t size)
{
    return (size + 7) & ~(size_t) 7;
}

static void
s_put32 (uint8_t *p, uint32_t value)
{
    for (int i = 0; i < 4; i++)
        p [i] = (uint8_t) (value >> (8 * i));
}

static uint32_t
s_get32 (const uint8_t *p)
{
    uint32_t value = 0;
    for (int i = 3; i >= 0; i--)
        value = (value << 8) | p [i];
    return value;
}

static void
s_put64 (uint8_t *p, uint64_t value)
{
    for (int i = 0; i < 8; i++)
        p [i] = (uint8_t) (value >> (8 * i));
}

static uint64_t
s_get64 (const uint8_t *p)
{
    uint64_t value = 0;
    for (int i = 7; i >= 0; i--)
        value = (value << 8) | p [i];
    return value;
}

static cvr_raft_t *
s_from_raft (struct raft *raft)
{
    return (cvr_raft_t *) ((char *) raft - offsetof (cvr_raft_t, raft));
}


//  --------------------------------------------------------------------------
//  Events to the owner (raft thread)

static void
s_send (cvr_raft_t *self, const char *command, uint64_t tag, int status,
        int error, uint64_t index, int result, uint64_t leader, uint64_t term)
{
    zsock_send (self->writer, S_EVENT_PICTURE, command, tag, status, error,
                index, result, leader, term);
}

static void
s_send_applied (cvr_raft_t *self, uint64_t tag, int status, int error,
                uint64_t index, int result)
{
    s_send (self, "APPLIED", tag, status, error, index, result, 0, 0);
}

static void
s_send_changed (cvr_raft_t *self, uint64_t tag, int status, int error)
{
    s_send (self, "CHANGED", tag, status, error, 0, 0, 0, 0);
}

//  A request libraft refused synchronously was never appended.
static int
s_refused_status (int rc)
{
    return rc == RAFT_NOTLEADER? CVR_RAFT_NOT_LEADER: CVR_RAFT_REJECTED;
}


//  --------------------------------------------------------------------------
//  The TCP_NODELAY transport: libraft's TCP transport, with Nagle off on
//  every accepted and connected stream (neither fork sets it, and Nagle
//  stalls pipelined AppendEntries).

static void
s_copy_errmsg (struct raft_uv_transport *to, const struct raft_uv_transport *from)
{
    memcpy (to->errmsg, from->errmsg, sizeof (to->errmsg));
}

static int
s_nodelay_init (struct raft_uv_transport *t, raft_id id, const char *address)
{
    cvr_raft_t *self = (cvr_raft_t *) t->impl;
    int rc = self->tcp.init (&self->tcp, id, address);
    if (rc)
        s_copy_errmsg (t, &self->tcp);
    return rc;
}

static void
s_nodelay_accept (struct raft_uv_transport *tcp, raft_id id,
                  const char *address, struct uv_stream_s *stream)
{
    cvr_raft_t *self = (cvr_raft_t *) tcp->data;
    uv_tcp_nodelay ((uv_tcp_t *) stream, 1);
    self->accept_cb (&self->nodelay, id, address, stream);
}

static int
s_nodelay_listen (struct raft_uv_transport *t, raft_uv_accept_cb cb)
{
    cvr_raft_t *self = (cvr_raft_t *) t->impl;
    self->accept_cb = cb;
    int rc = self->tcp.listen (&self->tcp, s_nodelay_accept);
    if (rc)
        s_copy_errmsg (t, &self->tcp);
    return rc;
}

static void
s_nodelay_connected (struct raft_uv_connect *req, struct uv_stream_s *stream,
                     int status)
{
    s_connect_t *connect = (s_connect_t *) req;
    struct raft_uv_connect *outer = connect->outer;
    raft_uv_connect_cb outer_cb = connect->outer_cb;
    free (connect);
    if (status == 0)
        uv_tcp_nodelay ((uv_tcp_t *) stream, 1);
    outer_cb (outer, stream, status);
}

static int
s_nodelay_connect (struct raft_uv_transport *t, struct raft_uv_connect *req,
                   raft_id id, const char *address, raft_uv_connect_cb cb)
{
    cvr_raft_t *self = (cvr_raft_t *) t->impl;
    s_connect_t *connect = (s_connect_t *) calloc (1, sizeof (s_connect_t));
    if (!connect)
        return RAFT_NOMEM;
    connect->outer = req;
    connect->outer_cb = cb;
    req->cb = cb;
    int rc = self->tcp.connect (&self->tcp, &connect->req, id, address,
                                s_nodelay_connected);
    if (rc) {
        s_copy_errmsg (t, &self->tcp);
        free (connect);
    }
    return rc;
}

static void
s_nodelay_closed (struct raft_uv_transport *tcp)
{
    cvr_raft_t *self = (cvr_raft_t *) tcp->data;
    if (self->transport_close_cb)
        self->transport_close_cb (&self->nodelay);
}

static void
s_nodelay_close (struct raft_uv_transport *t, raft_uv_transport_close_cb cb)
{
    cvr_raft_t *self = (cvr_raft_t *) t->impl;
    self->transport_close_cb = cb;
    self->tcp.close (&self->tcp, s_nodelay_closed);
}

static void
s_nodelay_setup (cvr_raft_t *self)
{
    memset (&self->nodelay, 0, sizeof (self->nodelay));
#ifdef RAFT_VERSION_NUMBER
    self->nodelay.version = 1;  //  as for tcp, see s_start
#endif
    self->nodelay.impl = self;
    self->nodelay.init = s_nodelay_init;
    self->nodelay.listen = s_nodelay_listen;
    self->nodelay.connect = s_nodelay_connect;
    self->nodelay.close = s_nodelay_close;
    self->tcp.data = self;
}


//  --------------------------------------------------------------------------
//  The FSM adapter (raft thread)

static int
s_fsm_apply (struct raft_fsm *fsm, const struct raft_buffer *buf, void **result)
{
    cvr_raft_t *self = (cvr_raft_t *) fsm->data;
    //  libraft applies entries in order and sets last_applied after each
    //  one (commands, barriers and configuration changes alike), so this
    //  entry's index is the next one.
    uint64_t index = (uint64_t) raft_last_applied (&self->raft) + 1;
    const uint8_t *base = (const uint8_t *) buf->base;
    int rc = -1;
    if (buf->len >= S_ENTRY_HEADER
    &&  s_get32 (base) == S_ENTRY_MAGIC
    &&  s_get32 (base + 4) <= buf->len - S_ENTRY_HEADER)
        rc = self->fsm.apply (self->arg, base + S_ENTRY_HEADER,
                              s_get32 (base + 4), index);
    else
        //  Never halt the log for it: libraft would stop applying for good.
        zsys_error ("raft %" PRIu64 ": entry %" PRIu64 " is malformed (%zu bytes), skipped",
                    self->id, index, buf->len);
    *result = (void *) (intptr_t) rc;
    return 0;
}

static int
s_fsm_snapshot (struct raft_fsm *fsm, struct raft_buffer *bufs [], unsigned *n_bufs)
{
    cvr_raft_t *self = (cvr_raft_t *) fsm->data;
    void *data = NULL;
    size_t size = 0;
    if (self->fsm.snapshot (self->arg, &data, &size)) {
        free (data);
        return RAFT_CANCELED;
    }
    size_t total = s_pad8 (S_SNAPSHOT_HEADER + size);
    struct raft_buffer *array = (struct raft_buffer *) raft_malloc (sizeof (struct raft_buffer));
    uint8_t *base = (uint8_t *) raft_malloc (total);
    if (!array || !base) {
        raft_free (array);
        raft_free (base);
        free (data);
        return RAFT_NOMEM;
    }
    memset (base, 0, total);
    s_put32 (base, S_SNAPSHOT_MAGIC);
    s_put64 (base + 8, size);
    if (size)
        memcpy (base + S_SNAPSHOT_HEADER, data, size);
    free (data);
    array [0].base = base;
    array [0].len = total;
    *bufs = array;
    *n_bufs = 1;
    return 0;
}

static int
s_fsm_restore (struct raft_fsm *fsm, struct raft_buffer *buf)
{
    cvr_raft_t *self = (cvr_raft_t *) fsm->data;
    const uint8_t *base = (const uint8_t *) buf->base;
    if (buf->len < S_SNAPSHOT_HEADER
    ||  s_get32 (base) != S_SNAPSHOT_MAGIC
    ||  s_get64 (base + 8) > buf->len - S_SNAPSHOT_HEADER) {
        zsys_error ("raft %" PRIu64 ": snapshot is malformed (%zu bytes)",
                    self->id, buf->len);
        return RAFT_CORRUPT;
    }
    if (self->fsm.restore (self->arg, base + S_SNAPSHOT_HEADER,
                           (size_t) s_get64 (base + 8))) {
        zsys_error ("raft %" PRIu64 ": the FSM could not restore a snapshot",
                    self->id);
        return RAFT_CORRUPT;
    }
    //  On success the buffer is ours (both forks); on failure libraft
    //  keeps it.
    raft_free (buf->base);
    return 0;
}


//  --------------------------------------------------------------------------
//  Leadership and status (raft thread)

static void
s_set_ready (cvr_raft_t *self, bool ready, uint64_t term)
{
    self->leader_ready = ready;
    self->ready_term = term;
    atomic_store (&self->is_leader, ready);
    if (ready) {
        atomic_store (&self->leader_id, self->id);
        self->reported_leader = true;
        self->reported_id = self->id;
        s_send (self, "LEADER", 0, 0, 0, 0, 0, self->id, term);
    }
}

static void
s_barrier_cb (struct raft_barrier *req, int status)
{
    s_barrier_t *barrier = (s_barrier_t *) req;
    cvr_raft_t *self = barrier->owner;
    uint64_t term = barrier->term;
    free (barrier);
    self->barrier_pending = false;
    if (status == 0 && !self->draining
    &&  raft_state (&self->raft) == RAFT_LEADER
    &&  (uint64_t) self->raft.current_term == term)
        s_set_ready (self, true, term);
}

//  There is no no-op entry on election: until this barrier is applied the
//  new leader's FSM may lag behind what was committed.
static void
s_barrier (cvr_raft_t *self)
{
    s_barrier_t *barrier = (s_barrier_t *) calloc (1, sizeof (s_barrier_t));
    if (!barrier)
        return;
    barrier->owner = self;
    barrier->term = (uint64_t) self->raft.current_term;
    if (raft_barrier (&self->raft, &barrier->req, s_barrier_cb) == 0)
        self->barrier_pending = true;
    else
        free (barrier);         //  try again on the next poll
}

static void
s_poll_state (cvr_raft_t *self)
{
    int state = (int) raft_state (&self->raft);
    uint64_t term = (uint64_t) self->raft.current_term;
    raft_id leader = 0;
    const char *leader_address = NULL;
    raft_leader (&self->raft, &leader, &leader_address);

    if (state == RAFT_LEADER) {
        if (self->leader_ready && self->ready_term != term)
            s_set_ready (self, false, 0);   //  lost and won again in between
        if (!self->leader_ready) {
            atomic_store (&self->leader_id, 0);
            if (!self->barrier_pending)
                s_barrier (self);
        }
        return;
    }
    if (self->leader_ready)
        s_set_ready (self, false, 0);
    uint64_t known = leader == self->id? 0: (uint64_t) leader;
    atomic_store (&self->leader_id, known);
    if (self->reported_leader || self->reported_id != known) {
        self->reported_leader = false;
        self->reported_id = known;
        s_send (self, "FOLLOWER", 0, 0, 0, 0, 0, known, term);
    }
}

static void
s_status_clear (cvr_raft_status_t *status)
{
    for (size_t i = 0; i < status->server_count; i++)
        free (status->servers [i].address);
    free (status->servers);
    status->servers = NULL;
    status->server_count = 0;
}

//  Copies the engine's view where cvr_raft_status can read it.
static void
s_refresh_status (cvr_raft_t *self)
{
    const struct raft_configuration *conf = &self->raft.configuration;
    cvr_raft_server_t *servers = NULL;
    if (conf->n)
        servers = (cvr_raft_server_t *) zmalloc (conf->n * sizeof (cvr_raft_server_t));
    for (unsigned i = 0; i < conf->n; i++) {
        servers [i].id = (uint64_t) conf->servers [i].id;
        servers [i].address = strdup (conf->servers [i].address);
        servers [i].role = (cvr_raft_role_t) conf->servers [i].role;
    }
    uv_mutex_lock (&self->lock);
    s_status_clear (&self->cache);
    self->cache.state = (cvr_raft_state_t) raft_state (&self->raft);
    self->cache.is_leader = self->leader_ready;
    self->cache.leader_id = atomic_load (&self->leader_id);
    self->cache.term = (uint64_t) self->raft.current_term;
    self->cache.commit_index = (uint64_t) self->raft.commit_index;
    self->cache.last_applied = (uint64_t) raft_last_applied (&self->raft);
    self->cache.servers = servers;
    self->cache.server_count = conf->n;
    uv_mutex_unlock (&self->lock);
}

static void
s_tick (uv_timer_t *timer)
{
    cvr_raft_t *self = (cvr_raft_t *) timer->data;
    s_poll_state (self);
    s_refresh_status (self);
}


//  --------------------------------------------------------------------------
//  Operations (raft thread)

static void
s_apply_cb (struct raft_apply *req, int status, void *result)
{
    s_apply_t *apply = (s_apply_t *) req;
    if (status == 0)
        s_send_applied (apply->owner, apply->tag, CVR_RAFT_OK, 0,
                        (uint64_t) req->index, (int) (intptr_t) result);
    else
        //  Accepted, then failed: another leader may still commit it.
        s_send_applied (apply->owner, apply->tag, CVR_RAFT_UNKNOWN, status, 0, 0);
    free (apply);
}

static void
s_do_submit (cvr_raft_t *self, s_op_t *op)
{
    s_apply_t *apply = (s_apply_t *) calloc (1, sizeof (s_apply_t));
    if (!apply) {
        s_send_applied (self, op->tag, CVR_RAFT_REJECTED, RAFT_NOMEM, 0, 0);
        return;
    }
    apply->owner = self;
    apply->tag = op->tag;
    //  Exactly one buffer: with more, 0.15 completes after the first entry
    //  and the cowsql fork silently drops the rest.
    struct raft_buffer buf = { op->entry, op->entry_size };
    int rc = raft_apply (&self->raft, &apply->req, &buf, 1, s_apply_cb);
    if (rc == 0)
        op->entry = NULL;       //  libraft owns it now
    else {
        free (apply);
        s_send_applied (self, op->tag, s_refused_status (rc), rc, 0, 0);
    }
}

static const struct raft_server *
s_find_server (cvr_raft_t *self, uint64_t id)
{
    const struct raft_configuration *conf = &self->raft.configuration;
    for (unsigned i = 0; i < conf->n; i++)
        if ((uint64_t) conf->servers [i].id == id)
            return &conf->servers [i];
    return NULL;
}

static void s_change_cb (struct raft_change *req, int status);

static s_change_t *
s_change_new (cvr_raft_t *self, uint64_t tag, uint64_t id, bool promote)
{
    s_change_t *change = (s_change_t *) calloc (1, sizeof (s_change_t));
    if (change) {
        change->owner = self;
        change->tag = tag;
        change->id = id;
        change->promote = promote;
    }
    return change;
}

//  Starts raft_assign (VOTER); reports the outcome itself if refused.
static void
s_promote (cvr_raft_t *self, uint64_t tag, uint64_t id)
{
    s_change_t *change = s_change_new (self, tag, id, false);
    if (!change) {
        s_send_changed (self, tag, CVR_RAFT_REJECTED, RAFT_NOMEM);
        return;
    }
    int rc = raft_assign (&self->raft, &change->req, id, RAFT_VOTER, s_change_cb);
    if (rc) {
        free (change);
        s_send_changed (self, tag, s_refused_status (rc), rc);
    }
}

static void
s_change_cb (struct raft_change *req, int status)
{
    s_change_t *change = (s_change_t *) req;
    cvr_raft_t *self = change->owner;
    uint64_t tag = change->tag;
    uint64_t id = change->id;
    bool promote = change->promote;
    free (change);
    if (self->draining)
        return;                 //  destroying: no new work, no one listening
    s_refresh_status (self);
    if (status == 0 && promote)
        s_promote (self, tag, id);
    else
        s_send_changed (self, tag, status? CVR_RAFT_UNKNOWN: CVR_RAFT_OK, status);
}

static void
s_do_add (cvr_raft_t *self, s_op_t *op)
{
    if (raft_state (&self->raft) != RAFT_LEADER) {
        s_send_changed (self, op->tag, CVR_RAFT_NOT_LEADER, RAFT_NOTLEADER);
        return;
    }
    const struct raft_server *server = s_find_server (self, op->id);
    if (server && server->role == RAFT_VOTER)
        s_send_changed (self, op->tag, CVR_RAFT_OK, 0);
    else
    if (server)
        s_promote (self, op->tag, op->id);
    else {
        s_change_t *change = s_change_new (self, op->tag, op->id, true);
        if (!change) {
            s_send_changed (self, op->tag, CVR_RAFT_REJECTED, RAFT_NOMEM);
            return;
        }
        int rc = raft_add (&self->raft, &change->req, op->id, op->address, s_change_cb);
        if (rc) {
            free (change);
            s_send_changed (self, op->tag, s_refused_status (rc), rc);
        }
    }
}

static void
s_do_remove (cvr_raft_t *self, s_op_t *op)
{
    if (raft_state (&self->raft) != RAFT_LEADER) {
        s_send_changed (self, op->tag, CVR_RAFT_NOT_LEADER, RAFT_NOTLEADER);
        return;
    }
    if (!s_find_server (self, op->id)) {
        s_send_changed (self, op->tag, CVR_RAFT_OK, 0);
        return;
    }
    s_change_t *change = s_change_new (self, op->tag, op->id, false);
    if (!change) {
        s_send_changed (self, op->tag, CVR_RAFT_REJECTED, RAFT_NOMEM);
        return;
    }
    int rc = raft_remove (&self->raft, &change->req, op->id, s_change_cb);
    if (rc) {
        free (change);
        s_send_changed (self, op->tag, s_refused_status (rc), rc);
    }
}

static void
s_op_destroy (s_op_t **op_p)
{
    s_op_t *op = *op_p;
    if (op) {
        raft_free (op->entry);
        free (op->address);
        free (op);
        *op_p = NULL;
    }
}


//  --------------------------------------------------------------------------
//  Shutdown (raft thread)

static void
s_walk_close (uv_handle_t *handle, void *arg)
{
    if (!uv_is_closing (handle))
        uv_close (handle, NULL);
}

static void
s_loop_close (cvr_raft_t *self)
{
    int rc = uv_loop_close (&self->loop);
    if (rc == UV_EBUSY) {
        //  A handle libraft left open: close it rather than leak the loop.
        uv_walk (&self->loop, s_walk_close, NULL);
        uv_run (&self->loop, UV_RUN_DEFAULT);
        rc = uv_loop_close (&self->loop);
    }
    if (rc)
        zsys_error ("raft %" PRIu64 ": uv_loop_close: %s", self->id, uv_strerror (rc));
    if (self->io && cvr_raft_io_held (self->io))
        zsys_info ("raft %" PRIu64 ": %zu InstallSnapshot(s) held back while a snapshot "
                   "was written (%zu of them dropped)", self->id, cvr_raft_io_held (self->io),
                   cvr_raft_io_dropped (self->io));
    cvr_raft_io_destroy (&self->io);
}

//  raft_close is done: the I/O and the transport are closed too.
static void
s_raft_closed (struct raft *raft)
{
    cvr_raft_t *self = s_from_raft (raft);
    raft_uv_close (cvr_raft_io_inner (self->io));
    raft_uv_tcp_close (&self->tcp);
    uv_close ((uv_handle_t *) &self->async, NULL);
}

static void
s_close (cvr_raft_t *self)
{
    self->closing = true;
    uv_timer_stop (&self->timer);
    uv_close ((uv_handle_t *) &self->timer, NULL);
    raft_close (&self->raft, s_raft_closed);
}

static void
s_drain_tick (uv_timer_t *timer)
{
    cvr_raft_t *self = (cvr_raft_t *) timer->data;
    if (self->raft.last_stored >= raft_last_index (&self->raft)
    ||  uv_now (&self->loop) >= self->drain_deadline)
        s_close (self);
}

//  Bookworm's 0.15 crashes in raft_close (refsDecr, from appendLeaderCb
//  as uvAppendClose cancels queued appends) when a leader still has log
//  writes queued. So: take no more work, let the writes in flight land
//  (bounded by S_DRAIN_MS), then close.
static void
s_drain (cvr_raft_t *self)
{
    self->draining = true;
    self->leader_ready = false;
    atomic_store (&self->is_leader, false);
    atomic_store (&self->leader_id, 0);
    self->drain_deadline = uv_now (&self->loop) + S_DRAIN_MS;
    uv_timer_stop (&self->timer);
    uv_timer_start (&self->timer, s_drain_tick, 0, 2);
}

static void
s_wake (uv_async_t *async)
{
    cvr_raft_t *self = (cvr_raft_t *) async->data;
    uv_mutex_lock (&self->lock);
    s_op_t *op = self->head;
    self->head = self->tail = NULL;
    bool stopping = self->stopping;
    uv_mutex_unlock (&self->lock);

    while (op) {
        s_op_t *next = op->next;
        if (!self->draining) {
            if (op->type == S_OP_SUBMIT)
                s_do_submit (self, op);
            else
            if (op->type == S_OP_ADD)
                s_do_add (self, op);
            else
                s_do_remove (self, op);
        }
        s_op_destroy (&op);
        op = next;
    }
    if (stopping && !self->draining)
        s_drain (self);
}


//  --------------------------------------------------------------------------
//  Startup (raft thread)

//  Closes a raft instance that was initialised but did not start serving.
static void
s_raft_closed_early (struct raft *raft)
{
    cvr_raft_t *self = s_from_raft (raft);
    raft_uv_close (cvr_raft_io_inner (self->io));
    raft_uv_tcp_close (&self->tcp);
}

//  libraft leaves its reasons in one of three places.
static const char *
s_errmsg (cvr_raft_t *self)
{
    const char *message = raft_errmsg (&self->raft);
    if (!message || !*message)
        message = cvr_raft_io_outer (self->io)->errmsg;
    if (!*message)
        message = self->nodelay.errmsg;
    if (!*message)
        message = self->tcp.errmsg;
    return message;
}

//  Why a start failed: into the caller's buffer when it gave one (it says
//  so in its own words, one line), else to the log.
static void
s_start_error (char *buffer, size_t size, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    if (buffer && size)
        vsnprintf (buffer, size, format, args);
    else {
        char *text = zsys_vprintf (format, args);
        zsys_error ("%s", text ? text : format);
        zstr_free (&text);
    }
    va_end (args);
}

static int
s_bootstrap (cvr_raft_t *self)
{
    if (self->peer_count == 0)
        return 0;               //  joins a running cluster through raft_add
    struct raft_configuration conf;
    raft_configuration_init (&conf);
    int rc = 0;
    for (size_t i = 0; i < self->peer_count && rc == 0; i++)
        rc = raft_configuration_add (&conf, self->peers [i].id,
                                     self->peers [i].address, RAFT_VOTER);
    if (rc == 0)
        rc = raft_bootstrap (&self->raft, &conf);
    raft_configuration_close (&conf);
    if (rc == RAFT_CANTBOOTSTRAP)
        rc = 0;                 //  a restart: the log has its configuration
    if (rc)
        s_start_error (self->error, self->error_size, "raft %" PRIu64 ": bootstrap: %s (%s)", self->id,
                    raft_strerror (rc), s_errmsg (self));
    return rc;
}

//  Whether the node's address can be listened on, checked with sockets of
//  our own before libraft tries. libraft's own failed listen (address in
//  use, not local) leaves a handle that uv_run then aborts on, now and
//  then, while the start is being undone (seen as `uv__finish_close:
//  Assertion ... UV_HANDLE_CLOSING failed` in test_raft): this way a busy
//  or foreign address is a clean start error. The address is read as
//  libraft 0.22 reads it (host up to the first ':', empty for every local
//  address, IPv4, every address the name resolves to) and bound as libuv
//  binds (SO_REUSEADDR: a port with only TIME_WAIT connections passes).
static int
s_check_listen (cvr_raft_t *self)
{
    char host [256];
    const char *colon = strchr (self->address, ':');
    size_t host_len = colon ? (size_t) (colon - self->address) : 0;
    if (!colon || host_len >= sizeof (host))
        return 0;                       //  libraft says what is wrong with it
    memcpy (host, self->address, host_len);
    host [host_len] = 0;
    struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICSERV };
    struct addrinfo *found = NULL;
    if (getaddrinfo (host_len ? host : NULL, colon + 1, &hints, &found) || !found)
        return 0;                       //  likewise
    int error = 0;
    for (struct addrinfo *ai = found; ai && !error; ai = ai->ai_next) {
        int fd = socket (ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int on = 1;
        if (fd < 0
        ||  setsockopt (fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof (on))
        ||  bind (fd, ai->ai_addr, ai->ai_addrlen)
        ||  listen (fd, 1))
            error = errno;
        if (fd >= 0)
            close (fd);
    }
    freeaddrinfo (found);
    if (error)
        s_start_error (self->error, self->error_size,
                       "raft %" PRIu64 ": cannot listen on %s: %s", self->id,
                       self->address, strerror (error));
    return error ? -1 : 0;
}

static int
s_start (cvr_raft_t *self)
{
    if (s_check_listen (self))
        return -1;
    int rc = uv_loop_init (&self->loop);
    if (rc) {
        zsys_error ("raft %" PRIu64 ": uv_loop_init: %s", self->id, uv_strerror (rc));
        return -1;
    }
#ifdef RAFT_VERSION_NUMBER
    //  The cowsql fork (0.16+) refuses a transport whose user has not said
    //  which version of the struct it filled in; 0.15 has no such field.
    self->tcp.version = 1;
#endif
    rc = raft_uv_tcp_init (&self->tcp, &self->loop);
    if (rc) {
        zsys_error ("raft %" PRIu64 ": TCP transport: %s", self->id, raft_strerror (rc));
        s_loop_close (self);
        return -1;
    }
    s_nodelay_setup (self);
    self->io = cvr_raft_io_new ();
    rc = raft_uv_init (cvr_raft_io_inner (self->io), &self->loop, self->data_dir, &self->nodelay);
    if (rc) {
        s_start_error (self->error, self->error_size, "raft %" PRIu64 ": data directory %s: %s (%s)", self->id,
                    self->data_dir, raft_strerror (rc), cvr_raft_io_inner (self->io)->errmsg);
        raft_uv_tcp_close (&self->tcp);
        s_loop_close (self);
        return -1;
    }
    if (self->connect_retry_ms)
        raft_uv_set_connect_retry_delay (cvr_raft_io_inner (self->io), self->connect_retry_ms);

    self->raft_fsm.version = 1;
    self->raft_fsm.data = self;
    self->raft_fsm.apply = s_fsm_apply;
    self->raft_fsm.snapshot = s_fsm_snapshot;
    self->raft_fsm.restore = s_fsm_restore;
    rc = raft_init (&self->raft, cvr_raft_io_outer (self->io), &self->raft_fsm, self->id,
                    self->address);
    if (rc) {
        s_start_error (self->error, self->error_size, "raft %" PRIu64 ": init %s in %s: %s (%s)", self->id,
                    self->address, self->data_dir, raft_strerror (rc), s_errmsg (self));
        raft_uv_close (cvr_raft_io_inner (self->io));
        raft_uv_tcp_close (&self->tcp);
        s_loop_close (self);
        return -1;
    }
    raft_set_election_timeout (&self->raft, self->election_ms);
    raft_set_heartbeat_timeout (&self->raft, self->heartbeat_ms);
    raft_set_snapshot_threshold (&self->raft, self->threshold);
    //  Never 0: libraft and raft_uv tell a snapshot of its own from an
    //  installed one by trailing > 0, and so does cvr_raft_io.
    assert (self->trailing > 0);
    raft_set_snapshot_trailing (&self->raft, self->trailing);
    raft_set_pre_vote (&self->raft, self->pre_vote);

    rc = s_bootstrap (self);
    if (rc == 0) {
        //  Loads the log and the last snapshot (fsm.restore) synchronously,
        //  then listens on the address.
        rc = raft_start (&self->raft);
        //  A failed listen (address in use, not local) comes back as a bare
        //  RAFT_IOERR with no message from either fork.
        //  (The error message left by a refused bootstrap would be stale.)
        if (rc)
            s_start_error (self->error, self->error_size,
                           "raft %" PRIu64 ": start on %s in %s: %s (%s)", self->id,
                           self->address, self->data_dir, raft_strerror (rc),
                           rc == RAFT_IOERR || !*s_errmsg (self)
                           ? "cannot listen: is the address in use or not local?"
                           : s_errmsg (self));
    }
    if (rc) {
        raft_close (&self->raft, s_raft_closed_early);
        uv_run (&self->loop, UV_RUN_DEFAULT);
        s_loop_close (self);
        return -1;
    }
    uv_async_init (&self->loop, &self->async, s_wake);
    self->async.data = self;
    uv_timer_init (&self->loop, &self->timer);
    self->timer.data = self;
    uv_timer_start (&self->timer, s_tick, S_POLL_MS, S_POLL_MS);
    s_refresh_status (self);
    return 0;
}

static void
s_run (void *arg)
{
    cvr_raft_t *self = (cvr_raft_t *) arg;
    self->start_rc = s_start (self);
    uv_sem_post (&self->started);
    if (self->start_rc == 0) {
        uv_run (&self->loop, UV_RUN_DEFAULT);
        s_loop_close (self);
    }
}


//  --------------------------------------------------------------------------
//  Owner's side

static void
s_free (cvr_raft_t *self)
{
    while (self->head) {
        s_op_t *op = self->head;
        self->head = op->next;
        s_op_destroy (&op);
    }
    s_status_clear (&self->cache);
    zsock_destroy (&self->writer);
    zsock_destroy (&self->reader);
    for (size_t i = 0; i < self->peer_count; i++)
        free ((char *) self->peers [i].address);
    free (self->peers);
    free (self->address);
    free (self->data_dir);
    uv_mutex_destroy (&self->lock);
    uv_sem_destroy (&self->started);
    free (self);
}

cvr_raft_t *
cvr_raft_new (const cvr_raft_config_t *config, const cvr_raft_fsm_t *fsm, void *arg)
{
    if (!config || !fsm || !fsm->apply || !fsm->snapshot || !fsm->restore
    ||  config->id == 0 || !config->address || !config->data_dir) {
        zsys_error ("raft: an id, an address, a data directory and three FSM callbacks are needed");
        return NULL;
    }
    unsigned election_ms = config->election_timeout_ms? config->election_timeout_ms: 1000;
    unsigned heartbeat_ms = config->heartbeat_ms? config->heartbeat_ms: 100;
    if (heartbeat_ms >= election_ms) {
        zsys_error ("raft %" PRIu64 ": the heartbeat (%u ms) must be shorter than the election timeout (%u ms)",
                    config->id, heartbeat_ms, election_ms);
        return NULL;
    }
    //  libuv writes to sockets without MSG_NOSIGNAL: a peer that dies would
    //  otherwise kill this process.
    signal (SIGPIPE, SIG_IGN);

    if (zsys_dir_create ("%s", config->data_dir)) {
        s_start_error (config->error, config->error_size,
                       "raft %" PRIu64 ": cannot create data directory %s: %s",
                       config->id, config->data_dir, strerror (errno));
        return NULL;
    }
    cvr_raft_t *self = (cvr_raft_t *) zmalloc (sizeof (cvr_raft_t));
    self->id = config->id;
    self->address = strdup (config->address);
    self->data_dir = strdup (config->data_dir);
    if (config->peer_count) {
        self->peers = (cvr_raft_peer_t *) zmalloc (config->peer_count * sizeof (cvr_raft_peer_t));
        for (size_t i = 0; i < config->peer_count; i++) {
            self->peers [i].id = config->peers [i].id;
            self->peers [i].address = strdup (config->peers [i].address? config->peers [i].address: "");
        }
        self->peer_count = config->peer_count;
    }
    self->election_ms = election_ms;
    self->heartbeat_ms = heartbeat_ms;
    self->threshold = config->snapshot_threshold? config->snapshot_threshold: 8192;
    self->trailing = config->snapshot_trailing? config->snapshot_trailing: 1024;
    self->connect_retry_ms = config->connect_retry_ms;
    self->pre_vote = !config->disable_pre_vote;
    self->fsm = *fsm;
    self->arg = arg;
    self->error = config->error;
    self->error_size = config->error_size;
    atomic_init (&self->is_leader, false);
    atomic_init (&self->leader_id, 0);
    uv_mutex_init (&self->lock);
    uv_sem_init (&self->started, 0);

    //  Unlimited queues both ways: the raft thread must never block on a
    //  slow owner (it would stop heartbeating and lose leadership).
    self->reader = zsock_new (ZMQ_PAIR);
    self->writer = zsock_new (ZMQ_PAIR);
    if (!self->reader || !self->writer) {
        zsys_error ("raft %" PRIu64 ": cannot create the event socket", self->id);
        s_free (self);
        return NULL;
    }
    zsock_set_rcvhwm (self->reader, 0);
    zsock_set_sndhwm (self->writer, 0);
    //  A fresh name each time: zmq releases an inproc name only once the
    //  closed socket is reaped, so reusing one (say, the same address from
    //  malloc after a destroy) can fail for a while.
    static atomic_uint s_instances;
    unsigned instance = atomic_fetch_add (&s_instances, 1);
    if (zsock_bind (self->reader, "inproc://cvr-raft-%u", instance) != 0
    ||  zsock_connect (self->writer, "inproc://cvr-raft-%u", instance) != 0) {
        zsys_error ("raft %" PRIu64 ": cannot connect the event socket", self->id);
        s_free (self);
        return NULL;
    }
    int rc = uv_thread_create (&self->thread, s_run, self);
    if (rc) {
        zsys_error ("raft %" PRIu64 ": cannot start its thread: %s", self->id, uv_strerror (rc));
        s_free (self);
        return NULL;
    }
    uv_sem_wait (&self->started);
    self->error = NULL;                 //  the caller's buffer, no longer
    if (self->start_rc) {
        uv_thread_join (&self->thread);
        s_free (self);
        return NULL;
    }
    return self;
}

void
cvr_raft_destroy (cvr_raft_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_raft_t *self = *self_p;
    uv_mutex_lock (&self->lock);
    self->stopping = true;
    uv_async_send (&self->async);
    uv_mutex_unlock (&self->lock);
    uv_thread_join (&self->thread);
    s_free (self);
    *self_p = NULL;
}

//  Queues op and wakes the raft thread. The send happens under the lock,
//  so once the thread has seen stopping no one touches the async handle.
static int
s_enqueue (cvr_raft_t *self, s_op_t *op)
{
    uv_mutex_lock (&self->lock);
    if (self->stopping) {
        uv_mutex_unlock (&self->lock);
        s_op_destroy (&op);
        return -1;
    }
    if (self->tail)
        self->tail->next = op;
    else
        self->head = op;
    self->tail = op;
    uv_async_send (&self->async);
    uv_mutex_unlock (&self->lock);
    return 0;
}

int
cvr_raft_submit (cvr_raft_t *self, const void *data, size_t size, uint64_t tag)
{
    assert (self);
    if (size > UINT32_MAX - 2 * S_ENTRY_HEADER || (size && !data))
        return -1;
    //  A multiple of 8: 0.15 checksums unpadded entries wrongly on disk
    //  and truncates the log there on reload.
    size_t total = s_pad8 (S_ENTRY_HEADER + size);
    uint8_t *entry = (uint8_t *) raft_malloc (total);
    if (!entry)
        return -1;
    memset (entry, 0, total);
    s_put32 (entry, S_ENTRY_MAGIC);
    s_put32 (entry + 4, (uint32_t) size);
    if (size)
        memcpy (entry + S_ENTRY_HEADER, data, size);
    s_op_t *op = (s_op_t *) zmalloc (sizeof (s_op_t));
    op->type = S_OP_SUBMIT;
    op->tag = tag;
    op->entry = entry;
    op->entry_size = total;
    return s_enqueue (self, op);
}

int
cvr_raft_add (cvr_raft_t *self, uint64_t id, const char *address, uint64_t tag)
{
    assert (self);
    if (id == 0 || !address)
        return -1;
    s_op_t *op = (s_op_t *) zmalloc (sizeof (s_op_t));
    op->type = S_OP_ADD;
    op->tag = tag;
    op->id = id;
    op->address = strdup (address);
    return s_enqueue (self, op);
}

int
cvr_raft_remove (cvr_raft_t *self, uint64_t id, uint64_t tag)
{
    assert (self);
    s_op_t *op = (s_op_t *) zmalloc (sizeof (s_op_t));
    op->type = S_OP_REMOVE;
    op->tag = tag;
    op->id = id;
    return s_enqueue (self, op);
}

zsock_t *
cvr_raft_socket (cvr_raft_t *self)
{
    assert (self);
    return self->reader;
}

int
cvr_raft_recv (cvr_raft_t *self, cvr_raft_event_t *event)
{
    assert (self);
    assert (event);
    char *command = NULL;
    memset (event, 0, sizeof (*event));
    if (zsock_recv (self->reader, S_EVENT_PICTURE, &command, &event->tag,
                    &event->status, &event->error, &event->index,
                    &event->result, &event->leader_id, &event->term) != 0
    ||  !command) {
        zstr_free (&command);
        return -1;
    }
    int rc = 0;
    if (streq (command, "APPLIED"))
        event->type = CVR_RAFT_APPLIED;
    else
    if (streq (command, "CHANGED"))
        event->type = CVR_RAFT_CHANGED;
    else
    if (streq (command, "LEADER"))
        event->type = CVR_RAFT_LEADER;
    else
    if (streq (command, "FOLLOWER"))
        event->type = CVR_RAFT_FOLLOWER;
    else
        rc = -1;
    zstr_free (&command);
    return rc;
}

bool
cvr_raft_is_leader (cvr_raft_t *self)
{
    assert (self);
    return atomic_load (&self->is_leader);
}

uint64_t
cvr_raft_leader_id (cvr_raft_t *self)
{
    assert (self);
    return atomic_load (&self->leader_id);
}

uint64_t
cvr_raft_id (cvr_raft_t *self)
{
    assert (self);
    return self->id;
}

int
cvr_raft_status (cvr_raft_t *self, cvr_raft_status_t *status)
{
    assert (self);
    assert (status);
    memset (status, 0, sizeof (*status));
    uv_mutex_lock (&self->lock);
    *status = self->cache;
    status->servers = NULL;
    status->server_count = 0;
    if (self->cache.server_count) {
        status->servers = (cvr_raft_server_t *)
            zmalloc (self->cache.server_count * sizeof (cvr_raft_server_t));
        for (size_t i = 0; i < self->cache.server_count; i++) {
            status->servers [i] = self->cache.servers [i];
            status->servers [i].address = strdup (self->cache.servers [i].address);
        }
        status->server_count = self->cache.server_count;
    }
    uv_mutex_unlock (&self->lock);
    return 0;
}

void
cvr_raft_status_reset (cvr_raft_status_t *status)
{
    if (status)
        s_status_clear (status);
}

int
cvr_raft_engine_version (void)
{
#ifdef RAFT_VERSION_NUMBER
    return RAFT_VERSION_NUMBER;
#else
    return 1500;                //  bookworm's 0.15.0 has no version macro
#endif
}
