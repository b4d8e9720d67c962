/*  cvr_member.h: keep a consumer-group membership from a background actor.

    cvr_member_new joins the group synchronously (a bad config fails at
    once), then an actor with its own connection keeps the membership:

    - it subscribes to group/<group_id>/ before the first join, and on each
      `assignment` event with a generation above its own it calls
      on_revoked with what it lost, then on_assigned with what it gained
      (each only when non-empty), as soon as the event arrives;
    - it heartbeats every session_timeout/3 with its generation; a reply
      that carries a newer generation and an assignment is handled the
      same way (the backstop when an event was missed);
    - when the server no longer knows it (UNKNOWN_MEMBER on a heartbeat or
      a commit, NOT_FOUND for the group, or a `left`/`expired` event naming
      it) it revokes everything and joins again with a fresh member id
      (or config->member_id, if one was given), a static member with the
      same instance_id (after checking that no other member holds it);
    - a static member (instance_id set) that was replaced by another join
      with its instance_id (a `fenced` event naming it, or UNKNOWN_MEMBER
      while another member holds its instance_id) is a zombie: like
      Kafka's fenced static member it revokes everything, calls on_fenced
      and stops for good (no heartbeats, no rejoin, commits fail with
      CVR_UNKNOWN_MEMBER). Rejoining would fence the newer instance in
      turn, and the two would take the partitions from each other forever;
    - when the server does not answer, it keeps its assignment and tries
      again every interval: partitions are only given up when the server
      says so;
    - endpoint may list the nodes of a cluster, comma-separated (see
      cvr_client.h): the member follows the leader across a failover,
      logging each move once, listens to the events of the node it talks
      to, and keeps its membership (a new leader gives every session a
      fresh term when it takes over).

    The application never polls. Every callback is called from the actor's
    thread, one at a time, the initial on_assigned included (before
    cvr_member_new returns). A callback must not block for long and must
    not destroy the member; it may call the getters and cvr_member_commit.

    During on_revoked the member is still at the generation that owned the
    partitions; during on_assigned it is at the new one already (so a
    commit from on_assigned uses the generation that owns them). Because
    the server has already rebalanced when the assignment event arrives, a
    commit of revoked partitions from on_revoked fails (ILLEGAL_GENERATION):
    commit as you go. The one exception is cvr_member_destroy, which calls
    on_revoked with the whole assignment while the membership is still
    valid, so a final commit from there succeeds.
*/
#ifndef CVR_MEMBER_H_INCLUDED
#define CVR_MEMBER_H_INCLUDED

#include "cvr_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_member_t cvr_member_t;

//  Partitions gained or lost. partitions (sorted, never empty) is borrowed
//  for the call. generation is the one that made the change; for the
//  revocation of a lost membership (UNKNOWN_MEMBER, fenced, destroy) it is
//  the last generation the member had.
typedef void (cvr_member_partitions_fn) (const cvr_assignment_t *partitions,
                                         int64_t generation, void *arg);

//  A static member was replaced by another instance and has stopped.
//  member_id (borrowed) is its fenced id.
typedef void (cvr_member_fenced_fn) (const char *member_id, void *arg);

//  What to join and whom to tell. Strings and arrays are borrowed for the
//  call to cvr_member_new (the member keeps copies).
typedef struct {
    const char *group_id;           //  required
    const char *const *topics;      //  required, topics_count >= 1
    size_t topics_count;
    const char *member_id;          //  NULL: a fresh one for each join,
                                    //  shaped like the server's
                                    //  (<service_name or "member">-<uuid>)
    const char *instance_id;        //  NULL: dynamic member
    const char *service_id;         //  NULL: no service link
    const char *service_name;       //  NULL
    int64_t session_timeout_ms;     //  <= 0: the server's default
    const char *assignor;           //  NULL: the group's
    int timeout_ms;                 //  bound of each request; <= 0: 5000
    const cvr_security_t *security; //  CurveZMQ credentials (copied); NULL: plain
    cvr_member_partitions_fn *on_assigned;  //  may be NULL
    cvr_member_partitions_fn *on_revoked;   //  may be NULL
    cvr_member_fenced_fn *on_fenced;        //  may be NULL
    void *arg;                      //  passed to every callback, borrowed
} cvr_member_config_t;

//  Joins config->group_id at endpoint and starts the member's actor.
//  Returns NULL if the first join fails (or the config is incomplete);
//  *err (may be NULL) then holds the code: the server's (BAD_REQUEST,
//  NOT_FOUND, CONFLICT, UNKNOWN_MEMBER, LIMIT_EXCEEDED...), CVR_TIMEOUT,
//  or CVR_BAD_REQUEST for a config without group_id or topics. On success
//  on_assigned has already been called with the initial assignment (when
//  it is not empty). Caller owns the member.
CVR_EXPORT cvr_member_t *
    cvr_member_new (const char *endpoint, const cvr_member_config_t *config,
                    cvr_err_t *err);

//  Revokes the whole assignment (on_revoked), leaves the group (bounded by
//  the timeout; not for a fenced member), stops the actor and nulls the
//  pointer. NULL-safe. Never call it from a callback.
CVR_EXPORT void
    cvr_member_destroy (cvr_member_t **self_p);

//  Commits offsets (count entries, borrowed) with the member's current
//  generation and waits for the answer. Returns CVR_OK or the failure:
//  - CVR_ILLEGAL_GENERATION: the group moved on; before returning, the
//    member heartbeats and takes the new assignment (callbacks run), so
//    the application can retry with what it still owns;
//  - CVR_UNKNOWN_MEMBER: the membership was lost; the member has revoked
//    everything and rejoined (or, fenced, stopped) before returning;
//  - CVR_NOT_OWNER, CVR_TIMEOUT, CVR_BAD_REQUEST as the server or client
//    says.
//  From a callback it commits directly (no refresh on failure).
//  Thread-safe: calls from several threads are served one at a time.
CVR_EXPORT cvr_err_t
    cvr_member_commit (cvr_member_t *self, const cvr_committed_t *offsets,
                       size_t count);

//  The member's current generation.
CVR_EXPORT int64_t
    cvr_member_generation (cvr_member_t *self);

//  A copy of the current assignment (caller owns; cvr_assignment_destroy).
//  Empty while the membership is lost or fenced.
CVR_EXPORT cvr_assignment_t *
    cvr_member_assignment (cvr_member_t *self);

//  A copy of the current member id (caller frees); it changes on rejoin.
CVR_EXPORT char *
    cvr_member_id (cvr_member_t *self);

//  True once a static member was fenced (replaced) and stopped.
CVR_EXPORT bool
    cvr_member_fenced (cvr_member_t *self);

//  How many joins succeeded: 1 + rejoins.
CVR_EXPORT uint64_t
    cvr_member_joins (cvr_member_t *self);

#ifdef __cplusplus
}
#endif
#endif
