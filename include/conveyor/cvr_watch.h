/*  cvr_watch.h: an ordered, gap-free stream of the events under a prefix.

    Subscribes first, then reads a snapshot (for prefixes that cover
    services: list_services), then delivers every event with a seq above
    the snapshot's, in order. A lost event is detected through `prev` (per
    root) and through sys/heartbeat's seq, and fetched with events_since;
    when the server no longer has it (COMPACTED), a fresh snapshot event is
    delivered instead and the stream continues from it.

    endpoint may list the nodes of a cluster, comma-separated (see
    cvr_client.h). The watch listens to the node its client talks to; when
    the client moves (to the leader, or past a node that stopped
    answering) it subscribes to the new node's events and fetches what it
    may have missed with events_since from the last seq it knows. Every
    node numbers the events alike, so each is delivered once, in order,
    and no snapshot is taken for a move. A node that dies goes silent: a
    clustered watch that hears nothing (not even sys/heartbeat, sent
    every second) for 2.5 s asks its node whether it is alive, which takes
    up to one slice of the timeout when it is not.
*/
#ifndef CVR_WATCH_H_INCLUDED
#define CVR_WATCH_H_INCLUDED

#include <czmq.h>
#include "cvr_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_watch_t cvr_watch_t;

//  Watches prefix ("" or NULL: everything) on the server at endpoint.
//  timeout_ms bounds each request. Returns NULL if the server cannot be
//  reached for hello or the snapshot.
CVR_EXPORT cvr_watch_t *
    cvr_watch_new (const char *endpoint, const char *prefix, int timeout_ms);

//  The same, to a server that requires CurveZMQ (both sockets use it).
CVR_EXPORT cvr_watch_t *
    cvr_watch_new_secure (const char *endpoint, const char *prefix, int timeout_ms,
                          const cvr_security_t *security);

CVR_EXPORT void
    cvr_watch_destroy (cvr_watch_t **self_p);

//  Returns the next event (caller owns), waiting at most timeout_ms (-1:
//  forever; requests to the server, to repair a gap or to follow a
//  cluster's failover, may add their own time); NULL on timeout or
//  interruption. The first event is always the snapshot.
CVR_EXPORT cvr_event_t *
    cvr_watch_next (cvr_watch_t *self, int timeout_ms);

//  The SUB socket, to poll on together with other sockets. When it is
//  readable, cvr_watch_next (self, 0) returns what is ready. The socket
//  stays the same when the watch moves to another node of a cluster; call
//  cvr_watch_next (self, 0) every second or so even when it is not
//  readable, so that a silent node is noticed.
CVR_EXPORT zsock_t *
    cvr_watch_socket (cvr_watch_t *self);

//  How many gaps were repaired with events_since, and how many snapshots
//  were taken after COMPACTED.
CVR_EXPORT uint64_t
    cvr_watch_gaps (cvr_watch_t *self);
CVR_EXPORT uint64_t
    cvr_watch_resyncs (cvr_watch_t *self);

#ifdef __cplusplus
}
#endif
#endif
