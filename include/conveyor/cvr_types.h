/*  cvr_types.h: error codes and the service record shared by the public API. */
#ifndef CVR_TYPES_H_INCLUDED
#define CVR_TYPES_H_INCLUDED

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(CVR_BUILDING)
#   define CVR_EXPORT __attribute__ ((visibility ("default")))
#else
#   define CVR_EXPORT
#endif

#ifdef __cplusplus
extern "C" {
#endif

//  Outcome of an operation. The first codes are the protocol's error codes
//  (section 2); the last two only ever come from the client side.
typedef enum {
    CVR_OK = 0,
    CVR_BAD_REQUEST,
    CVR_UNKNOWN_OP,
    CVR_UNSUPPORTED_VERSION,
    CVR_NOT_FOUND,
    CVR_CONFLICT,
    CVR_UNKNOWN_MEMBER,
    CVR_ILLEGAL_GENERATION,
    CVR_NOT_OWNER,
    CVR_COMPACTED,
    CVR_LIMIT_EXCEEDED,
    CVR_NOT_LEADER,
    CVR_INTERNAL,
    CVR_TIMEOUT,            //  client: no reply within the timeout
    CVR_PROTOCOL,           //  client: the reply could not be understood
    CVR_ERR_COUNT
} cvr_err_t;

//  Returns the wire name of a code ("NOT_FOUND"); "TIMEOUT" and "PROTOCOL"
//  for the client-side codes. Static string, never NULL.
CVR_EXPORT const char *
    cvr_err_name (cvr_err_t code);

//  Returns the code for a wire name, or CVR_PROTOCOL for an unknown name.
CVR_EXPORT cvr_err_t
    cvr_err_from_name (const char *name);

//  Health of a service, protocol section 3.
typedef enum {
    CVR_HEALTH_HEALTHY = 0,
    CVR_HEALTH_DEGRADED,
    CVR_HEALTH_UNHEALTHY,
    CVR_HEALTH_UNKNOWN
} cvr_health_t;

//  Returns the wire name of a health ("healthy"); static string.
CVR_EXPORT const char *
    cvr_health_name (cvr_health_t health);

//  Parses a wire health name; returns 0 and sets *health, or -1.
CVR_EXPORT int
    cvr_health_parse (const char *name, cvr_health_t *health);

typedef struct {
    char *key;
    char *value;
} cvr_label_t;

//  A service record as the server returns and publishes it. Every string
//  is owned by the record; group_id is NULL when the service has none.
//  labels is sorted by key.
typedef struct {
    char *service_id;
    char *service_name;
    char *service_type;         //  "source", "transform" or "sink"
    char *endpoint;
    char *group_id;             //  NULL when nil
    cvr_health_t health;
    cvr_label_t *labels;
    size_t labels_count;
    int64_t weight;
    int64_t registered_at;      //  Unix ms, server clock
    int64_t last_heartbeat_at;  //  Unix ms, server clock
    int64_t lease_ms;
    int64_t revision;
} cvr_service_t;

//  Returns a deep copy of a service record; caller owns it.
CVR_EXPORT cvr_service_t *
    cvr_service_dup (const cvr_service_t *self);

//  Destroys a service record and nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_service_destroy (cvr_service_t **self_p);

//  Returns the value of a label (borrowed), or NULL when absent.
CVR_EXPORT const char *
    cvr_service_label (const cvr_service_t *self, const char *key);

//  An array of service records, as list_services returns it.
typedef struct {
    cvr_service_t **items;      //  owned
    size_t count;
    uint64_t seq;               //  the event seq the list reflects
} cvr_service_list_t;

//  Destroys a list and every record in it; nulls the pointer. NULL-safe.
CVR_EXPORT void
    cvr_service_list_destroy (cvr_service_list_t **self_p);

#ifdef __cplusplus
}
#endif
#endif
