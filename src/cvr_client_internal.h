/*  cvr_client_internal.h: the client's request path and event decoder, for
    conveyorctl, cvr_watch and the tests (internal, not installed).
*/
#ifndef CVR_CLIENT_INTERNAL_H_INCLUDED
#define CVR_CLIENT_INTERNAL_H_INCLUDED

#include <czmq.h>
#include "conveyor/cvr_client.h"
#include "cvr_proto.h"

//  Sends a request and waits for its reply, following NOT_LEADER
//  redirects and moving past silent nodes (see cvr_client.h). w holds exactly one open map
//  (cvr_wr_map called, fields written, not closed); the call appends "rid"
//  and closes it. Returns the decoded reply (caller owns) when ok is true;
//  NULL on failure with cvr_client_error/message set (server code and
//  message, CVR_TIMEOUT, or CVR_PROTOCOL).
cvr_msg_t *
    cvr_client_call (cvr_client_t *self, cvr_wr_t *w);

//  True when the client deals with a cluster: it knows several endpoints,
//  or a node answered NOT_LEADER or named a leader in hello. A node of a
//  cluster may then report a seq below one seen before (it lags behind
//  another node) without having lost its history.
bool
    cvr_client_clustered (cvr_client_t *self);

//  Patient calls (off by default): a node that took the request (it was
//  sent) has the rest of the call's timeout to answer instead of a slice,
//  so a slow operation is not sent to another node meanwhile (conveyorctl
//  does this for cluster_add and cluster_remove, whose replies wait for the
//  membership change). A node that cannot be reached still makes way for
//  the next one after half a slice.
void
    cvr_client_set_patient (cvr_client_t *self, bool patient);

//  Decodes an event (topic + msgpack body bytes) into a cvr_event_t; NULL
//  if the body is not a valid event. Caller owns.
cvr_event_t *
    cvr_event_decode (const char *topic, const void *body, size_t size);

#endif
