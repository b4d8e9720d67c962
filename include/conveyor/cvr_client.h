/*  cvr_client.h: synchronous client for every registry and group operation.

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

    A cluster (conveyord --peers): give every node, comma-separated,
    "tcp://10.0.0.1:7400,tcp://10.0.0.2:7400,tcp://10.0.0.3:7400". The
    client talks to one node at a time, the current one, and moves only
    when it must, within each call's timeout:
    - a node that answers NOT_LEADER naming the leader: the request goes
      to the leader (added to the list if it was not there);
    - NOT_LEADER with no leader (an election is on): after a short pause
      (20 ms, doubling up to 250 ms) the request goes to the next node;
    - no reply within a slice of the call's time (min (timeout, 1000) ms,
      doubling after each slice without a reply; not connected within
      half a slice counts the same): the request goes to the next node.
    When the timeout runs out the call fails with CVR_TIMEOUT. Every move
    takes a fresh connection, so a late reply from the node left behind
    is never taken for the answer to a later request. hello, stats,
    events_since and cluster_status are answered by any node, so they do
    not move the client to the leader. With a single endpoint (and no
    NOT_LEADER) a call is one send and one wait for the whole timeout.

    A request sent again after a send that got no reply (a leader that
    died or lost its leadership) may have been applied already: the node
    may have committed it before it stopped. cvr_client_retried tells
    when that happened. Every request keeps its rid through its resends
    and carries the client's own client_id (a UUID made by
    cvr_client_new), so a server with --data-dir (every cluster node)
    answers a write it already applied with the reply it gave then, on
    any leader (protocol appendix, "Retried writes"). Where that cannot
    help (a server without it, a reply lost from its memory):
    register, heartbeat, group_heartbeat,
    commit_offsets, create_topic, join_group with a member_id, and
    cluster_add / cluster_remove are idempotent. deregister, leave_group
    and delete_group are not, so on such a retry their NOT_FOUND (and
    leave_group's UNKNOWN_MEMBER) is taken for success: the first send
    most likely did it (on a first send those errors stand). A join_group
    without a member_id may make a second member on a retry: give a
    member_id (cvr_member always does).
*/
#ifndef CVR_CLIENT_H_INCLUDED
#define CVR_CLIENT_H_INCLUDED

#include "cvr_types.h"
#include "cvr_security.h"

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
    char *leader;               //  NULL when not clustered, or electing
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

//  Creates a client connected to a request endpoint, or to the first of
//  a comma-separated list of them (the nodes of a cluster; see above);
//  timeout_ms bounds every call (<= 0: 5000). Connecting does not wait for
//  the server. Returns NULL only when the socket cannot be made or an
//  endpoint is malformed.
CVR_EXPORT cvr_client_t *
    cvr_client_new (const char *endpoint, int timeout_ms);

//  The same, to a server that requires CurveZMQ (--curve-secret): security
//  (copied; NULL: plain) holds the server's key and this client's
//  certificate. A server that does not accept them never answers: calls
//  end in CVR_TIMEOUT.
CVR_EXPORT cvr_client_t *
    cvr_client_new_secure (const char *endpoint, int timeout_ms,
                           const cvr_security_t *security);

//  The client's credentials (borrowed), or NULL: for event sockets that
//  must connect the same way.
CVR_EXPORT const cvr_security_t *
    cvr_client_security (cvr_client_t *self);

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

//  The endpoint the client talks to: the current node (borrowed until the
//  next call, which may move the client to another node).
CVR_EXPORT const char *
    cvr_client_endpoint (cvr_client_t *self);

//  Every request endpoint the client knows, comma-separated, the current
//  one first: those it was given and the leaders it was sent to. Another
//  client made with it starts where this one is. Borrowed until the next
//  call on this client.
CVR_EXPORT const char *
    cvr_client_endpoints (cvr_client_t *self);

//  True when the last call's request was sent again after a send that got
//  no reply, so it may have been applied twice (see above).
CVR_EXPORT bool
    cvr_client_retried (cvr_client_t *self);

//  hello. Fills *hello (caller clears it). Any node of a cluster answers;
//  hello->leader is the leader's request endpoint as it announced it.
CVR_EXPORT cvr_err_t
    cvr_client_hello (cvr_client_t *self, cvr_hello_t *hello);

//  The current node's event endpoint, learnt through hello (called if
//  needed, on the current node). A wildcard host (tcp://*:N,
//  tcp://0.0.0.0:N) is replaced with the host of the request endpoint.
//  Every node of a cluster publishes the same events with the same seq,
//  so a subscriber may follow the client from node to node (cvr_watch
//  does). Borrowed until the client moves; NULL on failure.
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

//  deregister: NOT_FOUND when no such service (but CVR_OK when the
//  request was sent again after a lost reply, see above).
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


//  --------------------------------------------------------------------------
//  Topics, consumer groups and offsets (protocol sections 4 and 5)
//
//  Every result below is owned by the caller and freed with the function
//  named next to its type; every input is borrowed for the call. On a
//  failure the output pointers are NULL (structs zeroed), so freeing them
//  is always safe.

//  One partition of a topic. topic is owned by whatever holds the struct.
typedef struct {
    char *topic;
    int32_t partition;
} cvr_partition_t;

//  A set of partitions sorted by topic (strcmp), then partition, without
//  duplicates: a member's assignment. Owns items and their topics.
typedef struct {
    cvr_partition_t *items;
    size_t count;
} cvr_assignment_t;

//  Frees the items of an assignment held by value and zeroes it; the
//  struct itself stays the caller's. NULL-safe.
CVR_EXPORT void
    cvr_assignment_clear (cvr_assignment_t *self);

//  Destroys a heap assignment (as cvr_assignment_dup and
//  cvr_client_group_heartbeat return) and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_assignment_destroy (cvr_assignment_t **self_p);

//  Returns a deep copy on the heap; caller owns it (cvr_assignment_destroy).
//  A NULL source gives an empty assignment.
CVR_EXPORT cvr_assignment_t *
    cvr_assignment_dup (const cvr_assignment_t *self);

//  True if the assignment holds topic/partition (binary search).
CVR_EXPORT bool
    cvr_assignment_contains (const cvr_assignment_t *self, const char *topic,
                             int32_t partition);

//  A committed offset: what commit_offsets takes and fetch_offsets returns
//  (offset -1: nothing committed for that partition).
typedef struct {
    char *topic;
    int32_t partition;
    int64_t offset;
} cvr_committed_t;

//  The reply to fetch_offsets. Owns its items and their topics.
typedef struct {
    cvr_committed_t *items;
    size_t count;
} cvr_committed_list_t;

//  Destroys an offset list and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_committed_list_destroy (cvr_committed_list_t **self_p);

//  A topic and its partition count.
typedef struct {
    char *name;
    int64_t partitions;
} cvr_topic_info_t;

//  The reply to list_topics, sorted by name. Owns its items.
typedef struct {
    cvr_topic_info_t *items;
    size_t count;
} cvr_topic_list_t;

//  Destroys a topic list and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_topic_list_destroy (cvr_topic_list_t **self_p);

//  The optional fields of join_group. Strings are borrowed for the call;
//  NULL (or <= 0) leaves a field out so the server's default applies.
typedef struct {
    const char *member_id;      //  NULL or "": the server makes one
    const char *service_name;
    const char *service_id;     //  links the member to a registered service
    const char *instance_id;    //  static membership
    int64_t session_timeout_ms; //  <= 0: the server's default
    const char *assignor;       //  "range", "roundrobin" or "sticky"
} cvr_join_options_t;

//  The reply to join_group. Owns its strings; free with
//  cvr_join_result_clear.
typedef struct {
    char *group_id;
    char *member_id;            //  the member's id, server-made if none asked
    int64_t generation;
    cvr_assignment_t assignment;    //  this member's, in that generation
    char **members;             //  every member id, sorted
    size_t members_count;
} cvr_join_result_t;

//  Frees what a join result holds and zeroes it. NULL-safe.
CVR_EXPORT void
    cvr_join_result_clear (cvr_join_result_t *self);

//  One member of a group, as get_group returns it. Strings owned by the
//  group that holds it; service_name, service_id and instance_id are NULL
//  when the member has none.
typedef struct {
    char *member_id;
    char *service_name;
    char *service_id;
    char *instance_id;
    char **topics;              //  its subscriptions, sorted
    size_t topics_count;
    cvr_assignment_t assignment;
    int64_t joined_at;          //  Unix ms, server clock
    int64_t last_heartbeat_at;  //  Unix ms, server clock
    int64_t session_timeout_ms; //  as granted
} cvr_group_member_t;

//  A group, as get_group returns it. Owns everything in it; free with
//  cvr_group_destroy.
typedef struct {
    char *group_id;
    int64_t generation;
    char *assignor;
    cvr_topic_info_t *topics;   //  subscribed topics, sorted by name
    size_t topics_count;
    cvr_group_member_t *members;    //  sorted by member_id
    size_t members_count;
} cvr_group_t;

//  Destroys a group and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_group_destroy (cvr_group_t **self_p);

//  One entry of list_groups.
typedef struct {
    char *group_id;
    int64_t generation;
    uint64_t members;           //  how many members it has
} cvr_group_summary_t;

//  The reply to list_groups, sorted by group_id. Owns its items.
typedef struct {
    cvr_group_summary_t *items;
    size_t count;
    uint64_t seq;               //  the event seq the list reflects
} cvr_group_list_t;

//  Destroys a group list and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_group_list_destroy (cvr_group_list_t **self_p);

//  create_topic. Creates the topic or grows it (CVR_CONFLICT: it has more
//  partitions already). *granted (may be NULL) is the topic's partition
//  count after the call.
CVR_EXPORT cvr_err_t
    cvr_client_create_topic (cvr_client_t *self, const char *topic,
                             int64_t partitions, int64_t *granted);

//  list_topics; *list (sorted by name) is owned by the caller.
CVR_EXPORT cvr_err_t
    cvr_client_list_topics (cvr_client_t *self, cvr_topic_list_t **list);

//  join_group with topics_count >= 1 topic names; options may be NULL.
//  Returns once the rebalance that includes the member is done. Fills
//  *result (caller clears it with cvr_join_result_clear; zeroed on
//  failure).
CVR_EXPORT cvr_err_t
    cvr_client_join_group (cvr_client_t *self, const char *group_id,
                           const char *const *topics, size_t topics_count,
                           const cvr_join_options_t *options,
                           cvr_join_result_t *result);

//  leave_group: NOT_FOUND (group) or UNKNOWN_MEMBER when not a member
//  (CVR_OK instead when the request was sent again after a lost reply).
CVR_EXPORT cvr_err_t
    cvr_client_leave_group (cvr_client_t *self, const char *group_id,
                            const char *member_id);

//  group_heartbeat with the member's generation. *current (may be NULL)
//  is the group's current generation. When that differs from generation
//  the server sends the member's assignment: *assignment (may be NULL) is
//  then set to it (caller owns, cvr_assignment_destroy), else to NULL. So
//  a non-NULL *assignment means "stale: take this".
CVR_EXPORT cvr_err_t
    cvr_client_group_heartbeat (cvr_client_t *self, const char *group_id,
                                const char *member_id, int64_t generation,
                                int64_t *current, cvr_assignment_t **assignment);

//  get_group; *group is owned by the caller; seq (may be NULL) is the
//  event seq the group reflects.
CVR_EXPORT cvr_err_t
    cvr_client_get_group (cvr_client_t *self, const char *group_id,
                          cvr_group_t **group, uint64_t *seq);

//  list_groups; *list is owned by the caller and carries the seq.
CVR_EXPORT cvr_err_t
    cvr_client_list_groups (cvr_client_t *self, cvr_group_list_t **list);

//  commit_offsets, all or nothing: NOT_FOUND, UNKNOWN_MEMBER,
//  ILLEGAL_GENERATION (generation is not current), NOT_OWNER (a partition
//  is not the member's). offsets (count entries) are borrowed.
CVR_EXPORT cvr_err_t
    cvr_client_commit_offsets (cvr_client_t *self, const char *group_id,
                               const char *member_id, int64_t generation,
                               const cvr_committed_t *offsets, size_t count);

//  fetch_offsets. partitions NULL: every committed offset of the group;
//  else the count partitions asked, in that order, with offset -1 where
//  none is committed. *offsets is owned by the caller.
CVR_EXPORT cvr_err_t
    cvr_client_fetch_offsets (cvr_client_t *self, const char *group_id,
                              const cvr_partition_t *partitions, size_t count,
                              cvr_committed_list_t **offsets);

//  delete_group: CONFLICT while the group has members, NOT_FOUND when it
//  does not exist (CVR_OK instead when the request was sent again after a
//  lost reply).
CVR_EXPORT cvr_err_t
    cvr_client_delete_group (cvr_client_t *self, const char *group_id);

#ifdef __cplusplus
}
#endif
#endif
