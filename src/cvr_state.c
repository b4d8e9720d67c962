/*  cvr_state.c: applies commands to the registry (and, later, the groups). */
#include "cvr_state.h"

struct _cvr_state_t {
    cvr_registry_t *registry;   //  services, owned
    cvr_groups_t *groups;       //  topics, groups, offsets, owned
};

cvr_state_t *
cvr_state_new (const cvr_state_limits_t *limits)
{
    cvr_state_t *self = (cvr_state_t *) zmalloc (sizeof (cvr_state_t));
    self->registry = cvr_registry_new (limits->max_services, !limits->unindexed);
    self->groups = cvr_groups_new (&limits->groups);
    return self;
}

void
cvr_state_destroy (cvr_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_groups_destroy (&(*self_p)->groups);
    cvr_registry_destroy (&(*self_p)->registry);
    free (*self_p);
    *self_p = NULL;
}

//  A service leaves, and the group members linked to it with it.
static cvr_err_t
s_remove_service (cvr_state_t *self, const cvr_cmd_t *cmd, bool expired,
                  cvr_effects_t *effects)
{
    cvr_err_t rc = cvr_registry_remove (self->registry, cmd->service_id, expired,
                                        cmd->now, effects);
    if (rc == CVR_OK)
        cvr_groups_remove_service (self->groups, cmd->service_id, expired, cmd->now,
                                   effects);
    return rc;
}

static cvr_err_t
s_join (cvr_state_t *self, const cvr_cmd_t *cmd, cvr_effects_t *effects)
{
    //  Section 10: an unknown service is the first state error of a join.
    if (cmd->join->service_id
    &&  !cvr_registry_lookup (self->registry, cmd->join->service_id))
        return CVR_NOT_FOUND;
    return cvr_groups_join (self->groups, cmd->join, cmd->now, effects);
}

cvr_err_t
cvr_state_apply (cvr_state_t *self, const cvr_cmd_t *cmd, cvr_effects_t *effects)
{
    switch (cmd->type) {
        case CVR_CMD_REGISTER:
            return cvr_registry_register (self->registry, cmd->service, cmd->now, effects);
        case CVR_CMD_HEARTBEAT:
            return cvr_registry_set_health (self->registry, cmd->service_id,
                                            cmd->health, true, cmd->now, effects);
        case CVR_CMD_LAPSE:
            return cvr_registry_set_health (self->registry, cmd->service_id,
                                            CVR_HEALTH_UNHEALTHY, false, cmd->now, effects);
        case CVR_CMD_DEREGISTER:
            return s_remove_service (self, cmd, false, effects);
        case CVR_CMD_EXPIRE:
            return s_remove_service (self, cmd, true, effects);
        case CVR_CMD_CREATE_TOPIC:
            return cvr_groups_create_topic (self->groups, cmd->topic, cmd->partitions,
                                            cmd->now, effects);
        case CVR_CMD_JOIN:
            return s_join (self, cmd, effects);
        case CVR_CMD_LEAVE:
        case CVR_CMD_SESSION_EXPIRE:
            return cvr_groups_leave (self->groups, cmd->group_id, cmd->member_id,
                                     cmd->type == CVR_CMD_SESSION_EXPIRE, cmd->now, effects);
        case CVR_CMD_REBALANCE:
            return cvr_groups_rebalance (self->groups, cmd->group_id, cmd->now, effects);
        case CVR_CMD_COMMIT:
            return cvr_groups_commit (self->groups, cmd->group_id, cmd->member_id,
                                      cmd->generation, cmd->offsets, cmd->offsets_count);
        case CVR_CMD_DELETE_GROUP:
            return cvr_groups_delete (self->groups, cmd->group_id);
        case CVR_CMD_RESTORE:
            cvr_registry_restart (self->registry, cmd->now, effects);
            cvr_groups_renew_all (self->groups, cmd->now);
            return CVR_OK;
    }
    return CVR_INTERNAL;
}

cvr_registry_t *
cvr_state_registry (cvr_state_t *self)
{
    return self->registry;
}

cvr_groups_t *
cvr_state_groups (cvr_state_t *self)
{
    return self->groups;
}

const char *
cvr_cmd_name (cvr_cmd_type_t type)
{
    static const char *names [] = {
        "?", "register", "heartbeat", "lapse", "deregister", "expire",
        "create_topic", "join", "leave", "session_expire", "rebalance", "commit",
        "delete_group", "restore"
    };
    return (int) type > 0 && type <= CVR_CMD_RESTORE ? names [type] : "?";
}
