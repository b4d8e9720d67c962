/*  cvr_log.h: the durable log of state commands, on libraft (internal).

    The seam of design.md between the server and the state when the daemon
    runs with --data-dir. The server applies a command to its own state at
    once (it is the only writer, so the order it applies is the log's
    order) and appends it here; at the end of each batch it commits the
    batch as ONE raft entry and holds the batch's replies and events until
    that entry is committed (APPLIED on cvr_log_socket).

    Behind it, on the raft thread, the log keeps the committed state: a
    second cvr_state that applies every committed entry, with the event
    numbering of a cvr_history. Snapshots are taken from that committed
    state (never from the server's, which runs ahead by the entries in
    flight), and a restart rebuilds it from the last snapshot and the log;
    cvr_log_copy then hands the server a copy to go on from.

    Every node applies every committed entry to its committed state and
    numbers the events it causes there: those events, identical on every
    node, are what each node publishes (cvr_log_events), so a follower
    publishes the same events with the same seq as the leader. The leader's
    own state only decides and answers.

    Entries: {"c": [command, ...], "d": [[dedup key, reply], ...]}
    (cvr_codec; "d": the replies of writes that carried a client_id, see
    cvr_dedup.h), or {"n": {"id", "req", "ev"}}: a node's request and event endpoints, which a new leader
    announces so that followers can redirect clients to it. Snapshot: an
    8-byte big-endian length, a map {"numbering": (cvr_history numbering),
    "nodes": {id: [req, ev]}, "dedup": (cvr_dedup_write)}, then the state (cvr_codec_write_state).
*/
#ifndef CVR_LOG_H_INCLUDED
#define CVR_LOG_H_INCLUDED

#include "cvr_state.h"
#include "cvr_history.h"
#include "cvr_raft.h"
#include "cvr_dedup.h"

typedef struct _cvr_log_t cvr_log_t;

typedef struct {
    const char *data_dir;           //  created if missing
    uint64_t node_id;               //  raft server id, >= 1
    const char *raft_address;       //  "host:port" the engine listens on
    const cvr_raft_peer_t *peers;   //  the initial cluster (itself included);
    size_t peer_count;              //  none: a single-node cluster of itself
    bool joining;                   //  joins a running cluster (cluster add):
                                    //  no bootstrap, peers ignored
    unsigned snapshot_threshold;    //  0: the engine's default
    unsigned snapshot_trailing;     //  0: the engine's default
    unsigned election_timeout_ms;   //  0: the engine's default
    unsigned heartbeat_ms;          //  0: the engine's default
    cvr_state_limits_t limits;      //  of the committed state
    char *error;                    //  if set, why a start failed goes here
    size_t error_size;              //  instead of the log
} cvr_log_config_t;

//  Opens the data directory and starts the engine (which restores the
//  last snapshot and reads the log). NULL after a zsys_error saying why.
cvr_log_t *
    cvr_log_new (const cvr_log_config_t *config);

void
    cvr_log_destroy (cvr_log_t **self_p);

//  Waits until this node leads with everything committed before applied
//  (the engine's barrier), at most timeout_ms. Returns 0, or -1.
int
    cvr_log_wait_leader (cvr_log_t *self, int timeout_ms);

//  A copy of the committed state (caller owns it), and its numbering
//  continued in history. Call only while nothing is in flight (after
//  cvr_log_wait_leader, before the first cvr_log_commit).
cvr_state_t *
    cvr_log_copy (cvr_log_t *self, cvr_history_t *history);

//  Adds one command (already applied by the caller, with CVR_OK) to the
//  open batch.
void
    cvr_log_append (cvr_log_t *self, const cvr_cmd_t *cmd);

//  Adds a write's reply to the open batch under its dedup key (see
//  cvr_dedup.h): once committed, the committed state remembers it.
void
    cvr_log_append_reply (cvr_log_t *self, const char *key, const void *reply, size_t size);

//  Replaces dedup's entries with the committed state's (a new leader's).
void
    cvr_log_copy_dedup (cvr_log_t *self, cvr_dedup_t *dedup);

//  Forgets the open batch (a leader that stepped down: its state is gone).
void
    cvr_log_discard (cvr_log_t *self);

//  Commands in the open batch.
size_t
    cvr_log_pending (cvr_log_t *self);

//  Proposes the open batch as one entry. Returns its tag (> 0; the APPLIED
//  event carries it), 0 when the batch was empty, -1 when the engine
//  refused it.
int64_t
    cvr_log_commit (cvr_log_t *self);

//  The engine's event socket and reader (see cvr_raft.h).
zsock_t *
    cvr_log_socket (cvr_log_t *self);
int
    cvr_log_recv (cvr_log_t *self, cvr_raft_event_t *event);

//  The events of the committed state, numbered, in parcels: one message
//  holds the events of one entry, at most CVR_LOG_PARCEL_EVENTS of them
//  (an entry with more sends several). Read with cvr_log_recv_event.
//  Owned by the log.
#define CVR_LOG_PARCEL_EVENTS 256
zsock_t *
    cvr_log_events (cvr_log_t *self);

//  One event as read: topic and root as C strings, the body's bytes; all
//  point into the parcel being read and stay valid until the next call.
typedef struct {
    const char *topic;
    const char *root;
    uint64_t seq;
    const void *body;
    size_t body_size;
} cvr_log_event_t;

//  Reads the next event if one is waiting (never blocks): no allocation,
//  no copy. Returns 0 and fills event, or -1 when none is waiting.
int
    cvr_log_recv_event (cvr_log_t *self, cvr_log_event_t *event);

//  True while a parcel is partly read. The socket no longer signals its
//  events, so a reader that bounds its turn reads on while this is true.
bool
    cvr_log_events_open (cvr_log_t *self);

//  Proposes node id's endpoints as an entry (a new leader announces its
//  own, so that followers can point clients at it; followers have theirs
//  announced through the leader). Returns 0 or -1.
int
    cvr_log_announce (cvr_log_t *self, uint64_t id, const char *request, const char *events);

//  The request (or event) endpoint node id announced, or NULL. Caller owns.
char *
    cvr_log_endpoint (cvr_log_t *self, uint64_t id, bool events);

//  The committed state, for a follower's reads (stats): locked until
//  cvr_log_unlock, which must follow soon (the raft thread waits).
cvr_state_t *
    cvr_log_lock (cvr_log_t *self);
void
    cvr_log_unlock (cvr_log_t *self);

//  The engine, for leadership and membership (cvr_raft.h).
cvr_raft_t *
    cvr_log_raft (cvr_log_t *self);

//  Entries applied to the committed state, and snapshots restored, since
//  start (for stats and tests).
uint64_t
    cvr_log_applied (cvr_log_t *self);

#endif
