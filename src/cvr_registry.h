/*  cvr_registry.h: the services part of the state (internal).

    Owns the service records, indexed by id, by name, by group and by each
    label pair, so a query touches only the smallest matching set. No
    sockets, no clock: every mutation takes `now` from its command and
    writes the events it causes into effects.
*/
#ifndef CVR_REGISTRY_H_INCLUDED
#define CVR_REGISTRY_H_INCLUDED

#include "conveyor/cvr_client.h"
#include "cvr_effects.h"

typedef struct _cvr_registry_t cvr_registry_t;

//  indexed false: services by id only, no index by name, group or label.
//  A query then scans every service; the state the raft thread keeps
//  (cvr_log) only applies commands and writes snapshots, so it saves
//  the indexes' work and memory on every registration.
cvr_registry_t *
    cvr_registry_new (size_t max_services, bool indexed);
//  Whether it keeps the indexes (for tests).
bool
    cvr_registry_indexed (cvr_registry_t *self);
void
    cvr_registry_destroy (cvr_registry_t **self_p);

//  Registers or replaces (upsert) a service from spec (copied; its health,
//  revision, times are ignored). Returns CVR_LIMIT_EXCEEDED for a new id
//  beyond max_services; nothing changes then.
cvr_err_t
    cvr_registry_register (cvr_registry_t *self, const cvr_service_t *spec,
                           int64_t now, cvr_effects_t *effects);

//  Sets the health; touch also stamps last_heartbeat_at (a heartbeat, not
//  the clock). Publishes `health` when it changed. CVR_NOT_FOUND if absent.
cvr_err_t
    cvr_registry_set_health (cvr_registry_t *self, const char *service_id,
                             cvr_health_t health, bool touch, int64_t now,
                             cvr_effects_t *effects);

//  Removes a service, publishing `expired` or `deregistered`.
cvr_err_t
    cvr_registry_remove (cvr_registry_t *self, const char *service_id,
                         bool expired, int64_t now, cvr_effects_t *effects);

//  Soft state: stamps last_heartbeat_at only (no event, no revision).
//  Returns the service, or NULL when none has that id.
const cvr_service_t *
    cvr_registry_touch (cvr_registry_t *self, const char *service_id, int64_t now);

//  The record of a service (borrowed), or NULL.
const cvr_service_t *
    cvr_registry_lookup (cvr_registry_t *self, const char *service_id);

//  Hints that service_id (len bytes) is about to be looked up: step 0
//  fetches its map slot into cache, step 1 (after the slots of a batch)
//  its record. See cvr_map_prefetch_slot. Step 1 returns false when the
//  service is surely not registered (a registration is likely to come).
bool
    cvr_registry_prefetch (cvr_registry_t *self, const char *service_id, size_t len,
                           int step);

size_t
    cvr_registry_size (cvr_registry_t *self);

//  Services removed by lease expiry so far.
uint64_t
    cvr_registry_expired (cvr_registry_t *self);

//  The services matching every filter (NULL: all), sorted by service_id.
//  Returns an array of borrowed records that the caller frees (the array
//  only); *count is set. Uses the smallest index the filter names.
const cvr_service_t **
    cvr_registry_query (cvr_registry_t *self, const cvr_service_filter_t *filter,
                        size_t *count);

//  Snapshots (cvr_codec). Reading out is cvr_registry_query (NULL) and
//  cvr_registry_expired; these put a state back exactly.

//  Inserts a copy of a service record exactly as given: health, revision,
//  registered_at, last_heartbeat_at and the order of its labels are kept.
//  No event, and max_services is not checked (a snapshot is restored
//  whole). CVR_CONFLICT if the id is taken, CVR_BAD_REQUEST if the id,
//  the name or a label key or value is NULL.
cvr_err_t
    cvr_registry_restore (cvr_registry_t *self, const cvr_service_t *service);

//  Sets the count of services removed by lease expiry.
void
    cvr_registry_restore_expired (cvr_registry_t *self, uint64_t expired);

//  After a restart or a leader change (CVR_CMD_RESTORE): every service is
//  `unknown` with its lease starting at now; a `health` event for each one
//  whose health changed, in service_id order.
void
    cvr_registry_restart (cvr_registry_t *self, int64_t now, cvr_effects_t *effects);

#endif
