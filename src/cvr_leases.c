/*  cvr_leases.c: lease deadlines to lapse and expire commands. */
#include "cvr_leases.h"
#include "cvr_deadlines.h"

struct _cvr_leases_t {
    cvr_deadlines_t *deadlines;     //  service_id -> next transition
    char service_id [256];          //  the id of the command last returned
};

cvr_leases_t *
cvr_leases_new (void)
{
    cvr_leases_t *self = (cvr_leases_t *) zmalloc (sizeof (cvr_leases_t));
    self->deadlines = cvr_deadlines_new ();
    return self;
}

void
cvr_leases_destroy (cvr_leases_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_deadlines_destroy (&(*self_p)->deadlines);
    free (*self_p);
    *self_p = NULL;
}

void
cvr_leases_renew (cvr_leases_t *self, const cvr_service_t *service)
{
    cvr_deadlines_set (self->deadlines, service->service_id,
                       service->last_heartbeat_at + service->lease_ms);
}

void
cvr_leases_forget (cvr_leases_t *self, const char *service_id)
{
    cvr_deadlines_remove (self->deadlines, service_id);
}

bool
cvr_leases_next (cvr_leases_t *self, cvr_registry_t *registry, int64_t now,
                 cvr_cmd_t *cmd)
{
    const char *key;
    while ((key = cvr_deadlines_due (self->deadlines, now))) {
        snprintf (self->service_id, sizeof (self->service_id), "%s", key);
        const char *id = self->service_id;
        const cvr_service_t *service = cvr_registry_lookup (registry, id);
        if (!service) {
            cvr_deadlines_remove (self->deadlines, id);
            continue;
        }
        //  Both deadlines follow from the last heartbeat, so a heartbeat
        //  that moved it (soft state) is honoured here too.
        int64_t lapse_at = service->last_heartbeat_at + service->lease_ms;
        int64_t expire_at = lapse_at + service->lease_ms;
        *cmd = (cvr_cmd_t) { .now = now, .service_id = id };
        if (now >= expire_at) {
            cvr_deadlines_remove (self->deadlines, id);
            cmd->type = CVR_CMD_EXPIRE;
            return true;
        }
        if (now >= lapse_at) {
            cvr_deadlines_set (self->deadlines, id, expire_at);
            if (service->health == CVR_HEALTH_UNHEALTHY)
                continue;
            cmd->type = CVR_CMD_LAPSE;
            return true;
        }
        cvr_deadlines_set (self->deadlines, id, lapse_at);
    }
    return false;
}

void
cvr_leases_prefetch (cvr_leases_t *self, const char *service_id, size_t len)
{
    cvr_deadlines_prefetch (self->deadlines, service_id, len);
}

size_t
cvr_leases_size (cvr_leases_t *self)
{
    return cvr_deadlines_size (self->deadlines);
}
