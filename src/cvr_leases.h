/*  cvr_leases.h: when services turn unhealthy and when they expire.

    Protocol section 3: no heartbeat for one lease -> unhealthy, for two ->
    removed. Holds one deadline per service in a cvr_deadlines heap, so a
    renewal costs O(log n) and a tick costs what is due. No clock: the
    caller passes `now`, and turns what is due into commands, so the whole
    lifecycle is testable with a fake clock.
*/
#ifndef CVR_LEASES_H_INCLUDED
#define CVR_LEASES_H_INCLUDED

#include "cvr_state.h"

typedef struct _cvr_leases_t cvr_leases_t;

cvr_leases_t *
    cvr_leases_new (void);
void
    cvr_leases_destroy (cvr_leases_t **self_p);

//  After a register or a heartbeat: the service's next transition is one
//  lease after its last heartbeat.
void
    cvr_leases_renew (cvr_leases_t *self, const cvr_service_t *service);

//  After a deregistration: no transition is left.
void
    cvr_leases_forget (cvr_leases_t *self, const char *service_id);

//  The next transition due at now, as a command (CVR_CMD_LAPSE or
//  CVR_CMD_EXPIRE, stamped with now) that the caller must apply before
//  calling again; its service_id is borrowed until then. Returns false
//  when nothing more is due. A service already unhealthy at its first
//  deadline yields no command there, only its expiry later.
bool
    cvr_leases_next (cvr_leases_t *self, cvr_registry_t *registry, int64_t now,
                     cvr_cmd_t *cmd);

//  Hints that a lease for service_id (len bytes) is about to be set: its
//  slot in the deadlines' map comes into cache. Changes nothing.
void
    cvr_leases_prefetch (cvr_leases_t *self, const char *service_id, size_t len);

//  Services with a pending transition.
size_t
    cvr_leases_size (cvr_leases_t *self);

#endif
