/*  cvr_state.c: applies commands to the registry (and, later, the groups). */
#include "cvr_state.h"

struct _cvr_state_t {
    cvr_registry_t *registry;   //  services, owned
};

cvr_state_t *
cvr_state_new (const cvr_state_limits_t *limits)
{
    cvr_state_t *self = (cvr_state_t *) zmalloc (sizeof (cvr_state_t));
    self->registry = cvr_registry_new (limits->max_services);
    return self;
}

void
cvr_state_destroy (cvr_state_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_registry_destroy (&(*self_p)->registry);
    free (*self_p);
    *self_p = NULL;
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
            return cvr_registry_remove (self->registry, cmd->service_id, false,
                                        cmd->now, effects);
        case CVR_CMD_EXPIRE:
            return cvr_registry_remove (self->registry, cmd->service_id, true,
                                        cmd->now, effects);
    }
    return CVR_INTERNAL;
}

cvr_registry_t *
cvr_state_registry (cvr_state_t *self)
{
    return self->registry;
}

const char *
cvr_cmd_name (cvr_cmd_type_t type)
{
    static const char *names [] = {
        "?", "register", "heartbeat", "lapse", "deregister", "expire"
    };
    return (int) type > 0 && type <= CVR_CMD_EXPIRE ? names [type] : "?";
}
