/*  cvr_raft_io.h: libraft's disk and network I/O with a guard (internal).

    libraft 0.22.1 (cowsql) crashes a node that receives an InstallSnapshot
    while it is writing a snapshot of its own. Its legacy layer puts the
    install on hold (r->legacy.snapshot_pending) until the write is done,
    and then, in takeSnapshotCb (src/legacy.c), clears that pointer before
    reading it:

        r->legacy.snapshot_pending = NULL;
        persist = r->legacy.snapshot_pending;
        rv = legacyPersistSnapshotStart(persist);   //  NULL: SIGSEGV

    A follower that takes its snapshots while lagging far enough behind its
    leader to be sent one (a joiner, a slow or restarted node) hits it; a
    core dump of tests/test_raft.c's membership test shows exactly that
    frame.

    The guard sits between libraft and the raft_io it uses (raft_uv): it
    forwards every call (keeping the two fields libraft reads directly,
    version and capacity, copied from raft_uv's), and it holds back an InstallSnapshot that arrives
    while the node's own snapshot write (a snapshot_put with trailing > 0;
    an install's put has trailing 0) is in flight. Once that write's
    callback has run, libraft is no longer taking a snapshot, and the held
    message is handed over: libraft then installs it at once. If another
    arrives meanwhile, the older is dropped, as a network may drop it (the
    leader sends again). Nothing is held across close.

    While an installed snapshot is being written, a further InstallSnapshot
    is a duplicate (a leader sends one for each AppendEntries result that
    asks): libraft would answer "already installing" and leak its buffers.
    The guard frees it instead and hands nothing over.

    The same layer sends an InstallSnapshot late (after reading the
    snapshot from disk) with a server address that points into the
    configuration of when it was queued; a membership change meanwhile
    frees it, and raft_uv then reads freed memory. The guard notes each
    server's address from the messages libraft sends at once, and gives an
    InstallSnapshot that one instead (see s_send).

    Usage: initialise the inner raft_io (raft_uv_init on cvr_raft_io_inner),
    then give cvr_raft_io_outer to raft_init. Destroy after libraft's close
    callback.
*/
#ifndef CVR_RAFT_IO_H_INCLUDED
#define CVR_RAFT_IO_H_INCLUDED

#include <raft.h>
#include <stdbool.h>
#include <stddef.h>

//  The cowsql fork renamed the message types and added the disk capacity
//  raft_uv keeps in its raft_io; bookworm's 0.15 (which has no such crash:
//  its snapshots predate that code) has neither.
#ifdef RAFT_VERSION_NUMBER
#   define CVR_RAFT_INSTALL_SNAPSHOT RAFT_INSTALL_SNAPSHOT
#   define CVR_RAFT_IO_CAPACITY 1
#else
#   define CVR_RAFT_INSTALL_SNAPSHOT RAFT_IO_INSTALL_SNAPSHOT
#   define CVR_RAFT_IO_CAPACITY 0
#endif

typedef struct _cvr_raft_io_t cvr_raft_io_t;

cvr_raft_io_t *
    cvr_raft_io_new (void);

//  Frees a held message, if any.
void
    cvr_raft_io_destroy (cvr_raft_io_t **self_p);

//  The raft_io the guard forwards to: initialise it first.
struct raft_io *
    cvr_raft_io_inner (cvr_raft_io_t *self);

//  The raft_io for raft_init (takes the inner one's version and capacity).
struct raft_io *
    cvr_raft_io_outer (cvr_raft_io_t *self);

//  InstallSnapshot messages held back so far, and of those, dropped:
//  superseded by a newer one, or still held at close or destroy (for tests
//  and logs).
size_t
    cvr_raft_io_held (cvr_raft_io_t *self);
size_t
    cvr_raft_io_dropped (cvr_raft_io_t *self);

//  InstallSnapshot sends refused because no address was known for the
//  server (a leader sends AppendEntries first, so never expected).
size_t
    cvr_raft_io_refused (cvr_raft_io_t *self);

#endif
