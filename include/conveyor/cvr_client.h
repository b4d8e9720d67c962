/*  cvr_client.h: synchronous client for every registry operation.

    One client is one DEALER socket; use it from one thread at a time.
    Every call waits at most the client's timeout and returns CVR_OK or the
    failure's code; cvr_client_error / cvr_client_message then tell the
    server's code and message (or CVR_TIMEOUT / CVR_PROTOCOL).

    cvr_client_t *c = cvr_client_new ("tcp://127.0.0.1:7400", 5000);
    cvr_service_spec_t spec = { .service_id = "src-1", .service_name = "orders",
        .service_type = "source", .endpoint = "tcp://10.0.0.5:9000", .weight = -1 };
    if (cvr_client_register (c, &spec, NULL, NULL))
        fprintf (stderr, "%s: %s\n", cvr_err_name (cvr_client_error (c)),
                 cvr_client_message (c));
    cvr_client_destroy (&c);
*/
#ifndef CVR_CLIENT_H_INCLUDED
#define CVR_CLIENT_H_INCLUDED

#include "cvr_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_client_t cvr_client_t;

//  What a service registers. Strings are borrowed for the call.
typedef struct {
    const char *service_id;
    const char *service_name;
    const char *service_type;   //  "source", "transform" or "sink"
    const char *endpoint;
    const char *group_id;       //  NULL: none
    const cvr_label_t *labels;
    size_t labels_count;
    int64_t lease_ms;           //  <= 0: the server's default
    int64_t weight;             //  < 0: the default, 100
} cvr_service_spec_t;

//  Filters for list_services; every filter set must hold. Borrowed.
typedef struct {
    const char *service_name;   //  NULL: any
    const char *service_type;
    const char *group_id;
    const cvr_label_t *labels;
    size_t labels_count;
    bool healthy_only;
} cvr_service_filter_t;

//  The reply to hello. Strings are owned by the struct; free with
//  cvr_hello_clear.
typedef struct {
    char *server;
    char *version;
    int64_t protocol;
    char *node_id;
    char *events_endpoint;
    uint64_t seq;
    char *leader;               //  NULL when not clustered
    int64_t lease_ms;
    int64_t session_timeout_ms;
} cvr_hello_t;

CVR_EXPORT void
    cvr_hello_clear (cvr_hello_t *self);

//  One event: its topic and decoded common fields, the raw msgpack body,
//  and for service events the decoded record. A snapshot (made by
//  cvr_watch, never sent by the server) has type "snapshot", seq set to
//  the seq the snapshot reflects, and services set.
typedef struct {
    char *topic;
    char *type;
    uint64_t seq;
    uint64_t prev;
    int64_t at;
    cvr_service_t *service;         //  service/ events; else NULL
    cvr_service_list_t *services;   //  snapshot only; else NULL
    uint8_t *body;                  //  msgpack map, as received
    size_t body_size;
} cvr_event_t;

CVR_EXPORT void
    cvr_event_destroy (cvr_event_t **self_p);

//  The reply to events_since. Owns its events.
typedef struct {
    cvr_event_t **items;
    size_t count;
    bool more;
    uint64_t seq;       //  latest seq on the server
    uint64_t oldest;    //  set when the call failed with CVR_COMPACTED
} cvr_event_list_t;

CVR_EXPORT void
    cvr_event_list_destroy (cvr_event_list_t **self_p);

typedef struct {
    char *name;
    uint64_t count;
} cvr_count_t;

//  The reply to stats; free with cvr_stats_destroy.
typedef struct {
    int64_t uptime_ms;
    uint64_t seq;
    uint64_t services, groups, members, topics;
    uint64_t dropped, rebalances, expired, members_expired, events_published;
    cvr_count_t *requests;      //  by op, "?" for undecodable ones
    size_t requests_count;
    cvr_count_t *errors;        //  by error code
    size_t errors_count;
} cvr_stats_t;

CVR_EXPORT void
    cvr_stats_destroy (cvr_stats_t **self_p);

//  Creates a client connected to a request endpoint; timeout_ms bounds
//  every call (<= 0: 5000). Connecting does not wait for the server.
//  Returns NULL only when the socket cannot be made or the endpoint is
//  malformed.
CVR_EXPORT cvr_client_t *
    cvr_client_new (const char *endpoint, int timeout_ms);

CVR_EXPORT void
    cvr_client_destroy (cvr_client_t **self_p);

//  Changes the timeout of later calls.
CVR_EXPORT void
    cvr_client_set_timeout (cvr_client_t *self, int timeout_ms);

//  Code and message of the last failed call (CVR_OK and "" after a success).
//  The message is borrowed until the next call.
CVR_EXPORT cvr_err_t
    cvr_client_error (cvr_client_t *self);
CVR_EXPORT const char *
    cvr_client_message (cvr_client_t *self);

//  The endpoint the client talks to (borrowed).
CVR_EXPORT const char *
    cvr_client_endpoint (cvr_client_t *self);

//  hello. Fills *hello (caller clears it).
CVR_EXPORT cvr_err_t
    cvr_client_hello (cvr_client_t *self, cvr_hello_t *hello);

//  The server's event endpoint, learnt through hello (called if needed).
//  A wildcard host (tcp://*:N, tcp://0.0.0.0:N) is replaced with the host
//  of the request endpoint. Borrowed; NULL on failure.
CVR_EXPORT const char *
    cvr_client_events_endpoint (cvr_client_t *self);

//  register. lease_ms (granted) and service (caller owns) may be NULL.
CVR_EXPORT cvr_err_t
    cvr_client_register (cvr_client_t *self, const cvr_service_spec_t *spec,
                         int64_t *lease_ms, cvr_service_t **service);

//  heartbeat reporting a health; lease_ms and health_out may be NULL.
CVR_EXPORT cvr_err_t
    cvr_client_heartbeat (cvr_client_t *self, const char *service_id,
                          cvr_health_t health, int64_t *lease_ms,
                          cvr_health_t *health_out);

CVR_EXPORT cvr_err_t
    cvr_client_deregister (cvr_client_t *self, const char *service_id);

//  get_service; *service is owned by the caller; seq may be NULL.
CVR_EXPORT cvr_err_t
    cvr_client_get_service (cvr_client_t *self, const char *service_id,
                            cvr_service_t **service, uint64_t *seq);

//  list_services; filter may be NULL; *list is owned by the caller.
CVR_EXPORT cvr_err_t
    cvr_client_list_services (cvr_client_t *self,
                              const cvr_service_filter_t *filter,
                              cvr_service_list_t **list);

//  events_since; prefix may be NULL; limit <= 0 means the server default.
//  *list is owned by the caller. On CVR_COMPACTED, *oldest (if not NULL)
//  is the oldest seq the server keeps.
CVR_EXPORT cvr_err_t
    cvr_client_events_since (cvr_client_t *self, uint64_t since,
                             const char *prefix, int limit,
                             cvr_event_list_t **list, uint64_t *oldest);

//  stats; *stats is owned by the caller.
CVR_EXPORT cvr_err_t
    cvr_client_stats (cvr_client_t *self, cvr_stats_t **stats);

#ifdef __cplusplus
}
#endif
#endif
