/*  cvr_types.c: names of codes and healths; service record copies. */
#include "conveyor/cvr_types.h"
#include <czmq.h>

static const char *s_err_names [CVR_ERR_COUNT] = {
    "OK", "BAD_REQUEST", "UNKNOWN_OP", "UNSUPPORTED_VERSION", "NOT_FOUND",
    "CONFLICT", "UNKNOWN_MEMBER", "ILLEGAL_GENERATION", "NOT_OWNER",
    "COMPACTED", "LIMIT_EXCEEDED", "NOT_LEADER", "INTERNAL", "TIMEOUT",
    "PROTOCOL"
};

const char *
cvr_err_name (cvr_err_t code)
{
    if ((int) code < 0 || code >= CVR_ERR_COUNT)
        return "INTERNAL";
    return s_err_names [code];
}

cvr_err_t
cvr_err_from_name (const char *name)
{
    for (int code = 1; name && code < CVR_TIMEOUT; code++)
        if (streq (name, s_err_names [code]))
            return (cvr_err_t) code;
    return CVR_PROTOCOL;
}

static const char *s_health_names [] = {
    "healthy", "degraded", "unhealthy", "unknown"
};

const char *
cvr_health_name (cvr_health_t health)
{
    if ((int) health < 0 || health > CVR_HEALTH_UNKNOWN)
        return "unknown";
    return s_health_names [health];
}

int
cvr_health_parse (const char *name, cvr_health_t *health)
{
    for (int h = 0; name && h <= CVR_HEALTH_UNKNOWN; h++)
        if (streq (name, s_health_names [h])) {
            *health = (cvr_health_t) h;
            return 0;
        }
    return -1;
}

static char *
s_strdup (const char *s)
{
    return s ? strdup (s) : NULL;
}

cvr_service_t *
cvr_service_dup (const cvr_service_t *self)
{
    if (!self)
        return NULL;
    cvr_service_t *copy = (cvr_service_t *) zmalloc (sizeof (cvr_service_t));
    *copy = *self;
    copy->service_id = s_strdup (self->service_id);
    copy->service_name = s_strdup (self->service_name);
    copy->service_type = s_strdup (self->service_type);
    copy->endpoint = s_strdup (self->endpoint);
    copy->group_id = s_strdup (self->group_id);
    copy->labels = NULL;
    if (self->labels_count) {
        copy->labels = (cvr_label_t *) zmalloc (self->labels_count * sizeof (cvr_label_t));
        for (size_t i = 0; i < self->labels_count; i++) {
            copy->labels [i].key = s_strdup (self->labels [i].key);
            copy->labels [i].value = s_strdup (self->labels [i].value);
        }
    }
    return copy;
}

void
cvr_service_destroy (cvr_service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_service_t *self = *self_p;
    free (self->service_id);
    free (self->service_name);
    free (self->service_type);
    free (self->endpoint);
    free (self->group_id);
    for (size_t i = 0; i < self->labels_count; i++) {
        free (self->labels [i].key);
        free (self->labels [i].value);
    }
    free (self->labels);
    free (self);
    *self_p = NULL;
}

const char *
cvr_service_label (const cvr_service_t *self, const char *key)
{
    for (size_t i = 0; self && key && i < self->labels_count; i++)
        if (streq (self->labels [i].key, key))
            return self->labels [i].value;
    return NULL;
}

void
cvr_service_list_destroy (cvr_service_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_service_list_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        cvr_service_destroy (&self->items [i]);
    free (self->items);
    free (self);
    *self_p = NULL;
}
