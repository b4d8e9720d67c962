/*  cvr_state.h: the whole coordinator state, changed only by commands.

    No sockets and no clock. cvr_state_apply is deterministic: the same
    commands in the same order give the same state and the same events,
    which is what lets a log (and later a Raft log) carry them. Whoever
    proposes a command stamps `now` into it.

    Reads (lookups, queries) go straight to the parts: cvr_state_registry.
*/
#ifndef CVR_STATE_H_INCLUDED
#define CVR_STATE_H_INCLUDED

#include "cvr_registry.h"
#include "cvr_groups.h"

typedef enum {
    CVR_CMD_REGISTER = 1,       //  service: upsert
    CVR_CMD_HEARTBEAT,          //  service_id, health: a heartbeat that changes health
    CVR_CMD_LAPSE,              //  service_id: one lease without heartbeat: unhealthy
    CVR_CMD_DEREGISTER,         //  service_id
    CVR_CMD_EXPIRE,             //  service_id: two leases without heartbeat: removed
    CVR_CMD_CREATE_TOPIC,       //  topic, partitions
    CVR_CMD_JOIN,               //  join
    CVR_CMD_LEAVE,              //  group_id, member_id
    CVR_CMD_SESSION_EXPIRE,     //  group_id, member_id: its session ran out
    CVR_CMD_REBALANCE,          //  group_id: one new generation for what changed
    CVR_CMD_COMMIT,             //  group_id, member_id, generation, offsets
    CVR_CMD_DELETE_GROUP,       //  group_id
    CVR_CMD_RESTORE             //  after a restart or a leader change: every
                                //  service `unknown` with a fresh lease, every
                                //  session a fresh term (protocol section 3)
} cvr_cmd_type_t;

//  One command. Pointers are borrowed for the call.
typedef struct {
    cvr_cmd_type_t type;
    int64_t now;                    //  the proposer's clock, Unix ms
    const char *service_id;
    cvr_health_t health;
    const cvr_service_t *service;   //  CVR_CMD_REGISTER
    const char *group_id;
    const char *member_id;
    int64_t generation;
    const char *topic;
    int64_t partitions;
    const cvr_join_t *join;         //  CVR_CMD_JOIN
    const cvr_offset_t *offsets;    //  CVR_CMD_COMMIT
    size_t offsets_count;
} cvr_cmd_t;

typedef struct {
    size_t max_services;
    cvr_groups_limits_t groups;
    bool unindexed;                 //  services by id only (see cvr_registry_new)
} cvr_state_limits_t;

typedef struct _cvr_state_t cvr_state_t;

cvr_state_t *
    cvr_state_new (const cvr_state_limits_t *limits);
void
    cvr_state_destroy (cvr_state_t **self_p);

//  Applies one command, appending the events it causes to effects; with
//  effects NULL the events are not written at all (a leader whose events
//  come from the committed log). Returns CVR_OK, or the state error
//  (nothing changed then).
cvr_err_t
    cvr_state_apply (cvr_state_t *self, const cvr_cmd_t *cmd, cvr_effects_t *effects);

//  The registry, for reads and soft-state touches. Borrowed.
cvr_registry_t *
    cvr_state_registry (cvr_state_t *self);

//  The groups and topics, for reads and soft-state touches. Borrowed.
cvr_groups_t *
    cvr_state_groups (cvr_state_t *self);

//  The name of a command type, for logs.
const char *
    cvr_cmd_name (cvr_cmd_type_t type);

#endif
