/*  cvr_balancer.h: pick an endpoint among the services of a name.

    Round-robin, or smooth weighted round-robin as nginx does it (over many
    picks each service's share is its weight's share of the total). Only
    healthy services are picked; degraded and unknown ones only when no
    healthy one is left; unhealthy ones and weight 0 never.
*/
#ifndef CVR_BALANCER_H_INCLUDED
#define CVR_BALANCER_H_INCLUDED

#include "cvr_client.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct _cvr_balancer_t cvr_balancer_t;

typedef enum {
    CVR_BALANCE_ROUND_ROBIN,
    CVR_BALANCE_WEIGHTED
} cvr_balance_t;

//  service_name: only services of that name are kept (NULL: all).
CVR_EXPORT cvr_balancer_t *
    cvr_balancer_new (cvr_balance_t policy, const char *service_name);

CVR_EXPORT void
    cvr_balancer_destroy (cvr_balancer_t **self_p);

//  Replaces the whole set with copies of the list's services.
CVR_EXPORT void
    cvr_balancer_set (cvr_balancer_t *self, const cvr_service_list_t *list);

//  Adds or replaces one service (copied).
CVR_EXPORT void
    cvr_balancer_upsert (cvr_balancer_t *self, const cvr_service_t *service);

//  Removes a service by id; no-op when absent.
CVR_EXPORT void
    cvr_balancer_remove (cvr_balancer_t *self, const char *service_id);

//  Applies an event from cvr_watch: snapshot replaces the set, registered,
//  updated and health upsert, deregistered and expired remove; any other
//  event is ignored. Returns true if the set changed.
CVR_EXPORT bool
    cvr_balancer_apply (cvr_balancer_t *self, const cvr_event_t *event);

//  Picks a service; borrowed until the next change of the set. NULL when
//  no service can be picked.
CVR_EXPORT const cvr_service_t *
    cvr_balancer_pick (cvr_balancer_t *self);

//  Number of services held (pickable or not).
CVR_EXPORT size_t
    cvr_balancer_size (cvr_balancer_t *self);

#ifdef __cplusplus
}
#endif
#endif
