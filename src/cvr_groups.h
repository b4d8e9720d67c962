/*  cvr_groups.h: topics, consumer groups, members and offsets (internal).

    The group part of the state (protocol sections 4 and 5). No sockets and
    no clock: every mutation takes `now` from its command and writes its
    events into effects, so applying the same commands gives the same
    groups, generations, assignments and events on every node.

    Rebalances are deferred: joins, leaves, expiries and topic growth mark
    a group dirty (their membership events carry the generation the
    rebalance will produce); the server then applies one rebalance command
    per dirty group, which bumps the generation once and publishes one
    assignment event, however many changes came together.

    Session deadlines live here too, in a deadline heap derived from each
    member's last join or group heartbeat, or (for members linked to a
    service) its service's last heartbeat, whichever came last.
*/
#ifndef CVR_GROUPS_H_INCLUDED
#define CVR_GROUPS_H_INCLUDED

#include "cvr_effects.h"

typedef struct _cvr_groups_t cvr_groups_t;

typedef struct {
    size_t max_groups;
    size_t max_members;             //  per group
    uint32_t default_partitions;    //  auto-created topics; 0: no auto-creation
} cvr_groups_limits_t;

//  A join, as validated by the server. Strings borrowed.
typedef struct {
    const char *group_id;
    const char *member_id;          //  never empty: the server makes one
    const char *instance_id;        //  NULL: dynamic member
    const char *service_id;         //  NULL: not linked to a service
    const char *service_name;       //  NULL
    const char *const *topics;      //  >= 1 names (duplicates allowed)
    size_t topics_count;
    int64_t session_timeout_ms;     //  clamped by the server
    const char *assignor;           //  NULL: the group's (default sticky)
} cvr_join_t;

typedef struct {
    const char *topic;
    int64_t partition;
    int64_t offset;
} cvr_offset_t;

cvr_groups_t *
    cvr_groups_new (const cvr_groups_limits_t *limits);
void
    cvr_groups_destroy (cvr_groups_t **self_p);

//  Commands.
cvr_err_t
    cvr_groups_create_topic (cvr_groups_t *self, const char *topic, int64_t partitions,
                             int64_t now, cvr_effects_t *effects);
cvr_err_t
    cvr_groups_join (cvr_groups_t *self, const cvr_join_t *join, int64_t now,
                     cvr_effects_t *effects);
//  A member leaves (expired: by its session or its service's lease).
cvr_err_t
    cvr_groups_leave (cvr_groups_t *self, const char *group_id, const char *member_id,
                      bool expired, int64_t now, cvr_effects_t *effects);
//  Rebalances a dirty group (no-op on a clean one).
cvr_err_t
    cvr_groups_rebalance (cvr_groups_t *self, const char *group_id, int64_t now,
                          cvr_effects_t *effects);
cvr_err_t
    cvr_groups_commit (cvr_groups_t *self, const char *group_id, const char *member_id,
                       int64_t generation, const cvr_offset_t *offsets, size_t count);
cvr_err_t
    cvr_groups_delete (cvr_groups_t *self, const char *group_id);
//  The members linked to a service leave with it.
void
    cvr_groups_remove_service (cvr_groups_t *self, const char *service_id, bool expired,
                               int64_t now, cvr_effects_t *effects);

//  Soft state: a group heartbeat renews the member's session. Returns
//  NOT_FOUND or UNKNOWN_MEMBER, else OK.
cvr_err_t
    cvr_groups_heartbeat (cvr_groups_t *self, const char *group_id,
                          const char *member_id, int64_t now);

//  Soft state: a heartbeat (or register) of a service renews the sessions
//  of the members linked to it (section 5: they are also kept alive by
//  the service's heartbeats).
void
    cvr_groups_touch_service (cvr_groups_t *self, const char *service_id, int64_t now);

//  A member whose session ran out by now: sets *group_id and *member_id
//  (borrowed until the next change) and returns true. The caller applies
//  the leave (expired) before asking again.
bool
    cvr_groups_next_expired (cvr_groups_t *self, int64_t now, const char **group_id,
                             const char **member_id);

//  A group waiting for its rebalance (borrowed), or NULL.
const char *
    cvr_groups_next_dirty (cvr_groups_t *self);

//  True if the group is waiting for a rebalance.
bool
    cvr_groups_is_dirty (cvr_groups_t *self, const char *group_id);

//  Checks a member exists: NOT_FOUND (group), UNKNOWN_MEMBER, or OK.
cvr_err_t
    cvr_groups_check (cvr_groups_t *self, const char *group_id, const char *member_id);

//  Replies. Each writes its fields into an open map.
//  join_group: group_id, member_id, generation, assignment, members.
void
    cvr_groups_write_join (cvr_groups_t *self, const char *group_id,
                           const char *member_id, cvr_wr_t *w);
//  group_heartbeat: generation, and assignment when stale.
void
    cvr_groups_write_heartbeat (cvr_groups_t *self, const char *group_id,
                                const char *member_id, int64_t generation, cvr_wr_t *w);
//  get_group: "group" (NOT_FOUND when absent).
cvr_err_t
    cvr_groups_write_group (cvr_groups_t *self, const char *group_id, cvr_wr_t *w);
//  list_groups: "groups".
void
    cvr_groups_write_list (cvr_groups_t *self, cvr_wr_t *w);
//  list_topics: "topics".
void
    cvr_groups_write_topics (cvr_groups_t *self, cvr_wr_t *w);
//  fetch_offsets: "offsets" for the partitions asked (NULL: every
//  committed one). NOT_FOUND when the group is absent.
cvr_err_t
    cvr_groups_write_offsets (cvr_groups_t *self, const char *group_id,
                              const cvr_offset_t *partitions, size_t count,
                              bool all, cvr_wr_t *w);

//  Partitions of a topic, 0 when it does not exist.
uint32_t
    cvr_groups_topic_partitions (cvr_groups_t *self, const char *topic);

//  Counters for stats.
size_t
    cvr_groups_count (cvr_groups_t *self);
size_t
    cvr_groups_members (cvr_groups_t *self);
size_t
    cvr_groups_topics (cvr_groups_t *self);
uint64_t
    cvr_groups_rebalances (cvr_groups_t *self);
uint64_t
    cvr_groups_members_expired (cvr_groups_t *self);

//  --------------------------------------------------------------------------
//  Snapshots (cvr_codec): every part read out in a canonical order, and put
//  back exactly. Restores publish no events and check no limits (a snapshot
//  is restored whole); what the rest derives (subscription counts, the
//  instance, topic and service indexes, session deadlines) is rebuilt.

//  A partition a member owns, by topic name.
typedef struct {
    const char *topic;
    uint32_t partition;
} cvr_owned_t;

//  A member as its group holds it. Strings borrowed.
typedef struct {
    const char *member_id;
    const char *instance_id;            //  NULL: dynamic member
    const char *service_id;             //  NULL: not linked to a service
    const char *service_name;           //  NULL
    const char *const *topics;          //  subscriptions, sorted and unique
    size_t topics_count;
    int64_t session_timeout_ms;
    int64_t joined_at;
    int64_t last_heartbeat_at;          //  the session runs out at this + timeout
    const cvr_owned_t *assignment;      //  sorted by topic name, then partition
    size_t assignment_count;
} cvr_member_record_t;

//  The topic names, sorted. The caller frees the array; names borrowed.
const char **
    cvr_groups_topic_names (cvr_groups_t *self, size_t *count);

//  The group ids, sorted. The caller frees the array; ids borrowed.
const char **
    cvr_groups_ids (cvr_groups_t *self, size_t *count);

//  The groups waiting for a rebalance, in the order cvr_groups_next_dirty
//  gives them. The caller frees the array; ids borrowed.
const char **
    cvr_groups_dirty_ids (cvr_groups_t *self, size_t *count);

//  A group's generation, assignor, and why it waits for a rebalance (NULL
//  when it does not). Strings borrowed. CVR_NOT_FOUND if absent.
cvr_err_t
    cvr_groups_info (cvr_groups_t *self, const char *group_id, int64_t *generation,
                     const char **assignor, const char **reason);

//  A group's members sorted by member id, as one block the caller frees
//  (assignments included; strings borrowed). NULL if the group is absent.
cvr_member_record_t *
    cvr_groups_member_records (cvr_groups_t *self, const char *group_id, size_t *count);

//  A group's fenced member ids, oldest first. The caller frees the array;
//  ids borrowed. NULL if the group is absent.
const char **
    cvr_groups_fenced (cvr_groups_t *self, const char *group_id, size_t *count);

//  A group's committed offsets sorted by topic, then partition, as one
//  block the caller frees (topic names inside it). NULL if absent.
cvr_offset_t *
    cvr_groups_committed (cvr_groups_t *self, const char *group_id, size_t *count);

//  Restores a topic. CVR_CONFLICT if it exists.
cvr_err_t
    cvr_groups_restore_topic (cvr_groups_t *self, const char *name, uint32_t partitions);

//  Restores an empty group, clean. CVR_CONFLICT if it exists.
cvr_err_t
    cvr_groups_restore_group (cvr_groups_t *self, const char *group_id,
                              int64_t generation, const char *assignor);

//  Restores a member into its group; its session deadline is
//  last_heartbeat_at + session_timeout_ms. CVR_NOT_FOUND if the group is
//  absent, CVR_CONFLICT if the member id or the instance id is taken in the
//  group, CVR_BAD_REQUEST if a topic (subscribed or assigned) does not
//  exist, the topics or the assignment are not sorted and unique, or the
//  deadline overflows.
cvr_err_t
    cvr_groups_restore_member (cvr_groups_t *self, const char *group_id,
                               const cvr_member_record_t *member);

//  Appends a fenced member id (the newest so far). CVR_NOT_FOUND,
//  CVR_CONFLICT if already fenced, CVR_BAD_REQUEST beyond the number of
//  fenced ids a group remembers.
cvr_err_t
    cvr_groups_restore_fenced (cvr_groups_t *self, const char *group_id,
                               const char *member_id);

//  Restores a committed offset. CVR_NOT_FOUND, CVR_CONFLICT if that
//  partition has one, CVR_BAD_REQUEST if the topic name is too long for
//  cvr_groups_commit to have stored it.
cvr_err_t
    cvr_groups_restore_offset (cvr_groups_t *self, const char *group_id,
                               const cvr_offset_t *offset);

//  Marks a group dirty with a reason, after those already dirty.
//  CVR_NOT_FOUND, CVR_CONFLICT if already dirty, CVR_BAD_REQUEST if the
//  reason is longer than a group keeps.
cvr_err_t
    cvr_groups_restore_dirty (cvr_groups_t *self, const char *group_id,
                              const char *reason);

//  Sets the counters that stats report.
void
    cvr_groups_restore_counters (cvr_groups_t *self, uint64_t rebalances,
                                 uint64_t members_expired);

//  After a restart or a leader change (CVR_CMD_RESTORE): every member's
//  session starts a fresh term at now.
void
    cvr_groups_renew_all (cvr_groups_t *self, int64_t now);

#endif
