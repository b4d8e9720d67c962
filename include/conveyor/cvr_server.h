/*  cvr_server.h: the coordinator as a czmq actor.

    zactor_t *server = zactor_new (cvr_server, "node-1");
    zstr_sendx (server, "BIND", "tcp://127.0.0.1:*", NULL);  //  request socket
    zstr_sendx (server, "PUBLISH", "tcp://127.0.0.1:*", NULL);
    zstr_sendx (server, "START", NULL);
    zstr_sendx (server, "PORT", NULL);    //  replies "PORT" <request> <event>

    Pipe commands (each answered with a status "0" or "-1 <message>" frame
    unless noted):
      BIND <endpoint>         request ROUTER endpoint (default tcp://127.0.0.1:7400)
      PUBLISH <endpoint>      event PUB endpoint (default tcp://127.0.0.1:7401)
      SET <option> <value>    an option of protocol section 9 by its name
                              without dashes, e.g. SET lease-ms 2000
      START                   binds both sockets and starts serving
      PORT                    replies "PORT", request port, event port
      ENDPOINTS               replies request and event endpoints as bound
      $TERM                   stops the actor (czmq convention, no reply)
*/
#ifndef CVR_SERVER_H_INCLUDED
#define CVR_SERVER_H_INCLUDED

#include <czmq.h>
#include "cvr_types.h"

#ifdef __cplusplus
extern "C" {
#endif

//  The actor function; args is the node id (const char *, may be NULL for
//  "conveyord").
CVR_EXPORT void
    cvr_server (zsock_t *pipe, void *args);

#ifdef __cplusplus
}
#endif
#endif
