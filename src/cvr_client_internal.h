/*  cvr_client_internal.h: the client's request path and event decoder, for
    conveyorctl, cvr_watch and the tests (internal, not installed).
*/
#ifndef CVR_CLIENT_INTERNAL_H_INCLUDED
#define CVR_CLIENT_INTERNAL_H_INCLUDED

#include <czmq.h>
#include "conveyor/cvr_client.h"
#include "cvr_proto.h"

//  Sends a request and waits for its reply. w holds exactly one open map
//  (cvr_wr_map called, fields written, not closed); the call appends "rid"
//  and closes it. Returns the decoded reply (caller owns) when ok is true;
//  NULL on failure with cvr_client_error/message set (server code and
//  message, CVR_TIMEOUT, or CVR_PROTOCOL).
cvr_msg_t *
    cvr_client_call (cvr_client_t *self, cvr_wr_t *w);

//  Decodes an event (topic + msgpack body bytes) into a cvr_event_t; NULL
//  if the body is not a valid event. Caller owns.
cvr_event_t *
    cvr_event_decode (const char *topic, const void *body, size_t size);

#endif
