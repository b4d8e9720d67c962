/*  cvr_raft.h: a Raft engine (libraft) in its own libuv thread (internal).

    One cvr_raft_t runs one libraft server. libraft and libuv live on a
    private thread; the owner (typically the coordinator's zloop thread)
    talks to it through thread-safe calls that enqueue work, and hears back
    through an inproc PAIR socket that it polls like any other reader.

    Written against the legacy API shared by libraft 0.15 (Debian bookworm)
    and the cowsql fork 0.22 (bookworm-backports, trixie), with the
    workarounds recorded in shared/notes/raft.md:

    - SIGPIPE is ignored process-wide by cvr_raft_new (libuv writes to dead
      peers without MSG_NOSIGNAL; otherwise followers die on a leader crash).
    - Every entry is one raft_malloc'd buffer, one per raft_apply, padded to
      a multiple of 8 bytes, with an 8-byte header holding the real length.
      The FSM sees exactly the bytes that were submitted.
    - The TCP transport is wrapped to set TCP_NODELAY on every connection.
    - A new leader runs raft_barrier before it reports itself leader, so its
      FSM has applied everything committed before it serves.
    - libraft has no state-change callback: the thread polls raft_state
      every 50 ms.
    - 0.22.1 crashes a node that receives an InstallSnapshot while it writes
      a snapshot of its own (takeSnapshotCb passes NULL on): libraft runs
      on a guarded raft_io that holds such a message back until the write
      is done (cvr_raft_io.h).

    Threads: the FSM callbacks (apply, snapshot, restore) run on the raft
    thread only, one at a time, never concurrently with each other. The
    cvr_raft_* calls below are for the owner's thread, except where a call
    says it is thread-safe.

    Events, one message each on cvr_raft_socket, read with cvr_raft_recv:

        APPLIED   tag status error index result
            A cvr_raft_submit finished. status CVR_RAFT_OK: committed and
            applied on this node at index; result is what fsm.apply returned
            for it here. CVR_RAFT_NOT_LEADER: refused, not in the log.
            CVR_RAFT_REJECTED: refused before it was appended (e.g. out of
            memory), not in the log. CVR_RAFT_UNKNOWN: the leader accepted
            it and then failed (leadership lost, shutdown): it may still be
            committed later. Commands must therefore be idempotent
            (deduplicated by the FSM), and the caller retries on the new
            leader. error holds libraft's code behind a non-OK status.
        CHANGED   tag status error
            A cvr_raft_add / cvr_raft_remove finished, same status codes.
        LEADER    leader_id (own id) term
            This node is leader and its barrier has completed: its FSM has
            everything committed before the election. A second LEADER with
            a higher term means leadership was lost and won back between
            two polls: treat it as a new election (e.g. renew every lease).
        FOLLOWER  leader_id term
            This node is not leader (any more) and leader_id is the leader
            it knows of, 0 while there is none. Sent when that changes.

    Entries submitted in one call keep their order: APPLIED events for one
    node come in log order.
*/
#ifndef CVR_RAFT_H_INCLUDED
#define CVR_RAFT_H_INCLUDED

#include <czmq.h>

typedef struct _cvr_raft_t cvr_raft_t;

//  Status of a finished request (APPLIED, CHANGED).
typedef enum {
    CVR_RAFT_OK = 0,            //  committed (and applied, for entries)
    CVR_RAFT_NOT_LEADER = 1,    //  this node is not the leader; not in the log
    CVR_RAFT_UNKNOWN = 2,       //  accepted, then failed: outcome unknown
    CVR_RAFT_REJECTED = 3       //  refused before it was appended
} cvr_raft_status_code_t;

//  Event types returned by cvr_raft_recv.
typedef enum {
    CVR_RAFT_APPLIED = 1,
    CVR_RAFT_CHANGED = 2,
    CVR_RAFT_LEADER = 3,
    CVR_RAFT_FOLLOWER = 4
} cvr_raft_event_type_t;

//  Roles of a server in the configuration (libraft's values).
typedef enum {
    CVR_RAFT_STANDBY = 0,       //  replicates the log, does not vote
    CVR_RAFT_VOTER = 1,         //  replicates and votes
    CVR_RAFT_SPARE = 2          //  neither (a freshly added server)
} cvr_raft_role_t;

//  States of the local server (libraft's values).
typedef enum {
    CVR_RAFT_UNAVAILABLE = 0,
    CVR_RAFT_FOLLOWER_STATE = 1,
    CVR_RAFT_CANDIDATE_STATE = 2,
    CVR_RAFT_LEADER_STATE = 3
} cvr_raft_state_t;

typedef struct {
    uint64_t id;                //  server id, > 0
    const char *address;        //  "host:port" (IPv4 or a resolvable name)
} cvr_raft_peer_t;

//  Zero-initialise, then set what you need: a zero number means the
//  default. All strings are copied by cvr_raft_new.
typedef struct {
    uint64_t id;                //  this server's id, > 0
    const char *address;        //  this server's raft address, "host:port"
    const char *data_dir;       //  log and snapshots; created if missing
    //  The initial cluster, this server included, identical on every
    //  initial server: it bootstraps the log on the very first start only
    //  (a restart keeps what is on disk). A single-node cluster is just
    //  this server. A server that will join a running cluster through
    //  cvr_raft_add passes none.
    const cvr_raft_peer_t *peers;
    size_t peer_count;
    unsigned election_timeout_ms;   //  default 1000 (randomised 1x-2x)
    unsigned heartbeat_ms;          //  default 100
    unsigned snapshot_threshold;    //  entries between snapshots, default 8192
    unsigned snapshot_trailing;     //  entries kept after one, default 1024
    unsigned connect_retry_ms;      //  peer reconnect delay, default 1000
    bool disable_pre_vote;          //  pre-vote is on unless this is set
    char *error;                    //  if set, why a start failed goes here
    size_t error_size;              //  (error_size bytes) instead of the log
} cvr_raft_config_t;

//  The replicated state machine. Every callback runs on the raft thread.
typedef struct {
    //  Applies one committed entry: data and size are exactly what was
    //  submitted (borrowed for the call). index is its log index, strictly
    //  increasing. Must be deterministic. The int returned is handed back
    //  to the submitter as APPLIED's result on this node; it does not stop
    //  the log (libraft would halt the FSM on an error), so report failures
    //  of a command through it.
    int (*apply) (void *arg, const void *data, size_t size, uint64_t index);
    //  Serialises the whole state into a malloc'd buffer that the engine
    //  takes over (*data may be NULL when *size is 0). Return 0, or -1 to
    //  skip this snapshot.
    int (*snapshot) (void *arg, void **data, size_t *size);
    //  Replaces the whole state with a snapshot's bytes (borrowed for the
    //  call). Return 0, or -1 if they cannot be read (fatal for the node).
    int (*restore) (void *arg, const void *data, size_t size);
} cvr_raft_fsm_t;

//  One decoded event from cvr_raft_socket.
typedef struct {
    cvr_raft_event_type_t type;
    uint64_t tag;               //  APPLIED, CHANGED: the caller's tag
    int status;                 //  APPLIED, CHANGED: cvr_raft_status_code_t
    int error;                  //  libraft error behind a non-OK status
    uint64_t index;             //  APPLIED OK: the entry's log index
    int result;                 //  APPLIED OK: fsm.apply's return here
    uint64_t leader_id;         //  LEADER, FOLLOWER: the leader, 0 if none
    uint64_t term;              //  LEADER, FOLLOWER: the current term
} cvr_raft_event_t;

typedef struct {
    uint64_t id;
    char *address;              //  owned by the status
    cvr_raft_role_t role;
} cvr_raft_server_t;

//  A copy of the engine's view, refreshed by the raft thread every 50 ms
//  and after each membership change.
typedef struct {
    cvr_raft_state_t state;     //  libraft's state (leader before barrier too)
    bool is_leader;             //  as cvr_raft_is_leader
    uint64_t leader_id;         //  as cvr_raft_leader_id
    uint64_t term;
    uint64_t commit_index;
    uint64_t last_applied;
    size_t server_count;
    cvr_raft_server_t *servers; //  latest configuration (maybe uncommitted)
} cvr_raft_status_t;

//  Starts a server: creates the data directory, loads the log (restoring
//  the last snapshot through fsm.restore), bootstraps on a first start,
//  listens on the address and runs it on a new thread. Returns NULL after
//  a zsys_error saying why (bad directory, address in use, ...). fsm is
//  copied; arg is passed to every callback and must outlive the engine.
cvr_raft_t *
    cvr_raft_new (const cvr_raft_config_t *config, const cvr_raft_fsm_t *fsm, void *arg);

//  Stops the server cleanly and nulls the pointer: takes no more work, lets
//  the log writes in flight reach the disk (at most 1 s; 0.15 crashes when
//  closed with appends queued), then raft_close, raft_uv_close, the
//  transport, its own handles, uv_loop_close and the thread join. Requests
//  still pending are not reported. A leader steps down without handing
//  over: the others elect a new one after their election timeout.
void
    cvr_raft_destroy (cvr_raft_t **self_p);

//  Proposes one entry (data is copied). Thread-safe. Its fate arrives as
//  one APPLIED event carrying tag. Returns 0, or -1 when the engine is
//  stopping or the entry is larger than 4 GiB.
int
    cvr_raft_submit (cvr_raft_t *self, const void *data, size_t size, uint64_t tag);

//  Adds a server to the cluster as a voter: raft_add, then raft_assign
//  VOTER once it is in (libraft catches it up first). Idempotent: a server
//  already present as a non-voter is only promoted, one already voting is
//  OK at once. Only the leader can; the new server must be running with no
//  peers. Thread-safe. The outcome arrives as one CHANGED event with tag.
//  Returns 0, or -1 when stopping.
int
    cvr_raft_add (cvr_raft_t *self, uint64_t id, const char *address, uint64_t tag);

//  Removes a server from the cluster (OK at once when it is not in it).
//  Thread-safe; one CHANGED event with tag. Returns 0, or -1 when stopping.
int
    cvr_raft_remove (cvr_raft_t *self, uint64_t id, uint64_t tag);

//  The socket to poll for events (the receiving end of an inproc PAIR).
//  Owned by the engine. Read it only with cvr_raft_recv.
zsock_t *
    cvr_raft_socket (cvr_raft_t *self);

//  Reads one event, waiting as the socket's receive timeout says (forever
//  by default: call it when the socket is readable). Returns 0, or -1 on
//  timeout or interruption.
int
    cvr_raft_recv (cvr_raft_t *self, cvr_raft_event_t *event);

//  True once this node is leader and its barrier has completed (so its
//  FSM has applied everything committed before). Thread-safe. It can lag
//  a lost leadership by one poll (50 ms): writes are safe regardless (they
//  fail with NOT_LEADER or UNKNOWN), but a read that must be linearizable
//  needs a committed entry of its own.
bool
    cvr_raft_is_leader (cvr_raft_t *self);

//  The leader's id as this node knows it, 0 if none. This node's own id
//  only once cvr_raft_is_leader is true. Thread-safe.
uint64_t
    cvr_raft_leader_id (cvr_raft_t *self);

//  This server's id.
uint64_t
    cvr_raft_id (cvr_raft_t *self);

//  Fills status with a copy of the engine's view; release it with
//  cvr_raft_status_reset. Thread-safe. Returns 0.
int
    cvr_raft_status (cvr_raft_t *self, cvr_raft_status_t *status);
void
    cvr_raft_status_reset (cvr_raft_status_t *status);

//  The libraft version linked in, e.g. 2201 for 0.22.1, 1500 for 0.15.
int
    cvr_raft_engine_version (void);

#endif
