/*  cvr_registration.h: keep a service registered from a background actor.

    cvr_registration_new registers once, synchronously, so a bad spec fails
    at once; then an actor heartbeats at lease/3, re-registers when the
    server answers NOT_FOUND (the lease was lost, or the server restarted),
    and reports every change of the health the server acknowledged through
    the optional callback (called from the actor's thread).
    cvr_registration_destroy deregisters and stops the actor.

    endpoint may list the nodes of a cluster, comma-separated (see
    cvr_client.h): the heartbeats follow the leader across a failover,
    soon enough that the lease never runs out (a new leader renews every
    lease when it takes over), and each move is reported once, through a
    log line and CVR_REGISTRATION_FAILOVER.
*/
#ifndef CVR_REGISTRATION_H_INCLUDED
#define CVR_REGISTRATION_H_INCLUDED

#include "cvr_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_registration_t cvr_registration_t;

typedef enum {
    CVR_REGISTRATION_HEALTH,        //  the acknowledged health changed
    CVR_REGISTRATION_REREGISTERED,  //  the lease was lost and registered again
    CVR_REGISTRATION_UNREACHABLE,   //  a heartbeat got no reply in time
    CVR_REGISTRATION_FAILOVER       //  the heartbeats moved to another node
                                    //  of the cluster (the leader changed, or
                                    //  stopped answering); health is the last
                                    //  acknowledged
} cvr_registration_event_t;

//  Called from the actor thread; must not block for long.
typedef void (cvr_registration_fn) (cvr_registration_event_t event,
                                    cvr_health_t health, void *arg);

//  Registers spec at endpoint (timeout_ms per call, <= 0: 5000) and starts
//  the heartbeat actor. fn may be NULL. Returns NULL if the first register
//  fails; *err (may be NULL) then holds the code.
CVR_EXPORT cvr_registration_t *
    cvr_registration_new (const char *endpoint, const cvr_service_spec_t *spec,
                          int timeout_ms, cvr_registration_fn *fn, void *arg,
                          cvr_err_t *err);

//  The same, to a server that requires CurveZMQ; security is copied (NULL:
//  plain).
CVR_EXPORT cvr_registration_t *
    cvr_registration_new_secure (const char *endpoint, const cvr_service_spec_t *spec,
                                 int timeout_ms, cvr_registration_fn *fn, void *arg,
                                 cvr_err_t *err, const cvr_security_t *security);

//  Deregisters (best effort, bounded by the timeout), stops the actor,
//  nulls the pointer.
CVR_EXPORT void
    cvr_registration_destroy (cvr_registration_t **self_p);

//  Reports a health with the next heartbeat, which is sent at once.
CVR_EXPORT void
    cvr_registration_set_health (cvr_registration_t *self, cvr_health_t health);

//  The health the server last acknowledged.
CVR_EXPORT cvr_health_t
    cvr_registration_health (cvr_registration_t *self);

//  The granted lease.
CVR_EXPORT int64_t
    cvr_registration_lease_ms (cvr_registration_t *self);

//  How many heartbeats the server acknowledged, and how many times the
//  service was registered (1 + re-registrations).
CVR_EXPORT uint64_t
    cvr_registration_heartbeats (cvr_registration_t *self);
CVR_EXPORT uint64_t
    cvr_registration_registrations (cvr_registration_t *self);

#ifdef __cplusplus
}
#endif
#endif
