/*  cvr_registration.c: keeps one service registered from an actor.

    The caller's thread registers once (so a bad spec fails in
    cvr_registration_new), then the actor, with a client of its own,
    heartbeats every lease/3. Its pipe carries two commands: HEALTH <name>
    (heartbeat at once with it) and $TERM (deregister, then exit). What the
    caller may read while the actor runs lives in atomics.

    In a cluster the actor's client starts at the node that took the
    first register (the leader) and follows the leader from there: a
    heartbeat that finds it moved reports the move once (log line and
    CVR_REGISTRATION_FAILOVER). The new leader renewed every lease when it
    took over, and the heartbeat that moved the client was answered by it,
    so the service never expires; its health, "unknown" since the
    takeover, is the reported one again from that heartbeat on.
*/
#include <czmq.h>
#include <stdatomic.h>
#include "conveyor/cvr_registration.h"
#include "cvr_client_internal.h"

struct _cvr_registration_t {
    zactor_t *actor;                //  heartbeats; owns its own client
    char *endpoint;                 //  request endpoints, the leader first
    cvr_security_t *security;       //  CURVE credentials, owned; NULL: plain
    int timeout_ms;                 //  bound of each request
    cvr_service_spec_t spec;        //  what is registered; its strings and
                                    //  labels point into the copies below
    cvr_label_t *labels;            //  owned copies of the spec's labels
    cvr_registration_fn *fn;        //  change callback, may be NULL
    void *arg;                      //  its argument, borrowed
    _Atomic int health;             //  health the server last acknowledged
    _Atomic int64_t lease_ms;       //  lease the server last granted
    _Atomic uint64_t heartbeats;    //  acknowledged heartbeats
    _Atomic uint64_t registrations; //  successful registers, first included
};

//  The actor's own state, on its stack.
typedef struct {
    cvr_registration_t *owner;      //  shared fields and the spec; borrowed
    cvr_client_t *client;           //  the actor's connection
    cvr_health_t desired;           //  what the next heartbeat reports
    char *node;                     //  the node last talked to; owned
} s_actor_t;

static char *
s_strdup (const char *s)
{
    return s ? strdup (s) : NULL;
}

static void
s_spec_free (cvr_registration_t *self)
{
    free ((char *) self->spec.service_id);
    free ((char *) self->spec.service_name);
    free ((char *) self->spec.service_type);
    free ((char *) self->spec.endpoint);
    free ((char *) self->spec.group_id);
    for (size_t i = 0; i < self->spec.labels_count; i++) {
        free (self->labels [i].key);
        free (self->labels [i].value);
    }
    free (self->labels);
}

//  The caller's spec is borrowed for the call only; the actor needs it for
//  as long as it may have to register again.
static void
s_spec_copy (cvr_registration_t *self, const cvr_service_spec_t *spec)
{
    self->spec = *spec;
    self->spec.service_id = s_strdup (spec->service_id);
    self->spec.service_name = s_strdup (spec->service_name);
    self->spec.service_type = s_strdup (spec->service_type);
    self->spec.endpoint = s_strdup (spec->endpoint);
    self->spec.group_id = s_strdup (spec->group_id);
    self->labels = NULL;
    if (spec->labels_count) {
        self->labels = (cvr_label_t *) zmalloc (spec->labels_count * sizeof (cvr_label_t));
        for (size_t i = 0; i < spec->labels_count; i++) {
            self->labels [i].key = s_strdup (spec->labels [i].key);
            self->labels [i].value = s_strdup (spec->labels [i].value);
        }
    }
    self->spec.labels = self->labels;
}

static void
s_notify (cvr_registration_t *self, cvr_registration_event_t event, cvr_health_t health)
{
    if (self->fn)
        self->fn (event, health, self->arg);
}

//  After a request: reports a move of the client to another node.
static void
s_check_node (s_actor_t *actor)
{
    cvr_registration_t *self = actor->owner;
    const char *node = cvr_client_endpoint (actor->client);
    if (actor->node && streq (actor->node, node))
        return;
    if (actor->node) {
        zsys_info ("conveyor: registration of %s: heartbeats now go to %s (was %s: "
                   "the leader changed or stopped answering)", self->spec.service_id,
                   node, actor->node);
        s_notify (self, CVR_REGISTRATION_FAILOVER, atomic_load (&self->health));
    }
    free (actor->node);
    actor->node = strdup (node);
}

//  Records the health the server acknowledged; reports a change.
static void
s_acknowledge (cvr_registration_t *self, cvr_health_t health)
{
    int before = atomic_exchange (&self->health, (int) health);
    if (before != (int) health)
        s_notify (self, CVR_REGISTRATION_HEALTH, health);
}

//  The lease was lost (expired, or a restarted server forgot it): register
//  again. Returns true if the health to report still differs from what the
//  new registration holds, so a heartbeat must follow at once.
static bool
s_reregister (s_actor_t *actor)
{
    cvr_registration_t *self = actor->owner;
    int64_t lease_ms;
    cvr_service_t *service = NULL;
    cvr_err_t rc = cvr_client_register (actor->client, &self->spec, &lease_ms, &service);
    s_check_node (actor);
    if (rc != CVR_OK) {
        if (rc == CVR_TIMEOUT)
            s_notify (self, CVR_REGISTRATION_UNREACHABLE, atomic_load (&self->health));
        else
            zsys_warning ("conveyor: re-register of %s failed: %s %s",
                          self->spec.service_id, cvr_err_name (rc),
                          cvr_client_message (actor->client));
        return false;
    }
    atomic_store (&self->lease_ms, lease_ms);
    atomic_fetch_add (&self->registrations, 1);
    cvr_health_t health = service->health;
    cvr_service_destroy (&service);
    atomic_store (&self->health, (int) health);
    s_notify (self, CVR_REGISTRATION_REREGISTERED, health);
    return health != actor->desired;
}

//  One heartbeat. Returns true if another one should go at once.
//  *failed is set when it got no answer.
static bool
s_heartbeat (s_actor_t *actor, bool *failed)
{
    cvr_registration_t *self = actor->owner;
    int64_t lease_ms;
    cvr_health_t health;
    cvr_err_t rc = cvr_client_heartbeat (actor->client, self->spec.service_id,
                                         actor->desired, &lease_ms, &health);
    s_check_node (actor);
    if (rc == CVR_OK) {
        atomic_store (&self->lease_ms, lease_ms);
        atomic_fetch_add (&self->heartbeats, 1);
        s_acknowledge (self, health);
    }
    else
    if (rc == CVR_NOT_FOUND)
        return s_reregister (actor);
    else
    if (rc == CVR_TIMEOUT) {
        *failed = true;
        s_notify (self, CVR_REGISTRATION_UNREACHABLE, atomic_load (&self->health));
    }
    else
        zsys_warning ("conveyor: heartbeat of %s failed: %s %s",
                      self->spec.service_id, cvr_err_name (rc),
                      cvr_client_message (actor->client));
    return false;
}

static int64_t
s_interval (cvr_registration_t *self)
{
    int64_t interval = atomic_load (&self->lease_ms) / 3;
    return interval > 0 ? interval : 1;
}

static void
s_actor (zsock_t *pipe, void *args)
{
    s_actor_t actor = { (cvr_registration_t *) args, NULL, CVR_HEALTH_HEALTHY, NULL };
    cvr_registration_t *self = actor.owner;
    actor.client = cvr_client_new_secure (self->endpoint, self->timeout_ms, self->security);
    if (actor.client)
        actor.node = strdup (cvr_client_endpoint (actor.client));
    zpoller_t *poller = zpoller_new (pipe, NULL);
    //  The owner decides when we stop: an interrupt in the application
    //  must not silently end the heartbeats.
    zpoller_set_nonstop (poller, true);
    zsock_signal (pipe, 0);

    int64_t next = zclock_mono () + s_interval (self);
    bool running = true;
    while (running) {
        int64_t wait = next - zclock_mono ();
        zsock_t *which = (zsock_t *) zpoller_wait (poller, wait > 0 ? (int) wait : 0);
        if (which == pipe) {
            char *command = NULL, *value = NULL;
            if (zstr_recvx (pipe, &command, &value, NULL) < 1)
                continue;
            if (streq (command, "$TERM"))
                running = false;
            else
            if (streq (command, "HEALTH") && value) {
                cvr_health_t health;
                if (cvr_health_parse (value, &health) == 0) {
                    actor.desired = health;
                    next = zclock_mono ();
                }
            }
            zstr_free (&command);
            zstr_free (&value);
            continue;
        }
        if (zclock_mono () >= next && actor.client) {
            bool failed = false;
            bool again = s_heartbeat (&actor, &failed);
            int64_t interval = s_interval (self);
            //  A cluster without a leader for the whole call (a long
            //  election) has one soon: try again before the usual time.
            if (failed && cvr_client_clustered (actor.client) && interval > 250)
                interval = 250;
            next = again ? zclock_mono () : zclock_mono () + interval;
        }
        else
        if (!actor.client)
            next = zclock_mono () + 3600000;    //  nothing to do but wait
    }
    if (actor.client) {
        cvr_err_t rc = cvr_client_deregister (actor.client, self->spec.service_id);
        if (rc != CVR_OK && rc != CVR_NOT_FOUND)
            zsys_warning ("conveyor: deregister of %s failed: %s %s",
                          self->spec.service_id, cvr_err_name (rc),
                          cvr_client_message (actor.client));
    }
    cvr_client_destroy (&actor.client);
    zpoller_destroy (&poller);
    free (actor.node);
}

cvr_registration_t *
cvr_registration_new (const char *endpoint, const cvr_service_spec_t *spec,
                      int timeout_ms, cvr_registration_fn *fn, void *arg,
                      cvr_err_t *err)
{
    return cvr_registration_new_secure (endpoint, spec, timeout_ms, fn, arg, err, NULL);
}

cvr_registration_t *
cvr_registration_new_secure (const char *endpoint, const cvr_service_spec_t *spec,
                             int timeout_ms, cvr_registration_fn *fn, void *arg,
                             cvr_err_t *err, const cvr_security_t *security)
{
    assert (spec);
    cvr_client_t *client = endpoint ? cvr_client_new_secure (endpoint, timeout_ms, security)
                                    : NULL;
    if (!client) {
        if (err)
            *err = CVR_BAD_REQUEST;
        return NULL;
    }
    int64_t lease_ms;
    cvr_service_t *service = NULL;
    cvr_err_t rc = cvr_client_register (client, spec, &lease_ms, &service);
    //  The actor starts at the node that took the register: the leader.
    char *endpoints = strdup (cvr_client_endpoints (client));
    cvr_client_destroy (&client);
    if (err)
        *err = rc;
    if (rc != CVR_OK) {
        free (endpoints);
        return NULL;
    }

    cvr_registration_t *self = (cvr_registration_t *) zmalloc (sizeof (cvr_registration_t));
    self->endpoint = endpoints;
    self->security = cvr_security_dup (security);
    self->timeout_ms = timeout_ms;
    s_spec_copy (self, spec);
    self->fn = fn;
    self->arg = arg;
    atomic_init (&self->health, (int) service->health);
    atomic_init (&self->lease_ms, lease_ms);
    atomic_init (&self->heartbeats, 0);
    atomic_init (&self->registrations, 1);
    cvr_service_destroy (&service);
    self->actor = zactor_new (s_actor, self);
    if (!self->actor) {
        if (err)
            *err = CVR_INTERNAL;
        cvr_registration_destroy (&self);
    }
    return self;
}

void
cvr_registration_destroy (cvr_registration_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_registration_t *self = *self_p;
    //  zactor_destroy sends $TERM and waits: the actor deregisters first.
    zactor_destroy (&self->actor);
    s_spec_free (self);
    free (self->endpoint);
    cvr_security_destroy (&self->security);
    free (self);
    *self_p = NULL;
}

void
cvr_registration_set_health (cvr_registration_t *self, cvr_health_t health)
{
    assert (self);
    zstr_sendx (self->actor, "HEALTH", cvr_health_name (health), NULL);
}

cvr_health_t
cvr_registration_health (cvr_registration_t *self)
{
    assert (self);
    return (cvr_health_t) atomic_load (&self->health);
}

int64_t
cvr_registration_lease_ms (cvr_registration_t *self)
{
    assert (self);
    return atomic_load (&self->lease_ms);
}

uint64_t
cvr_registration_heartbeats (cvr_registration_t *self)
{
    assert (self);
    return atomic_load (&self->heartbeats);
}

uint64_t
cvr_registration_registrations (cvr_registration_t *self)
{
    assert (self);
    return atomic_load (&self->registrations);
}
