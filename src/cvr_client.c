/*  cvr_client.c: synchronous client for the registry and group operations.

    Every operation builds its request map, hands it to cvr_client_call
    (the one path that sends, matches the reply by rid and turns a failure
    into a code and a message), then reads its results from the reply.

    The client knows one or more request endpoints (the nodes of a
    cluster) and talks to one of them, the current one, until it has a
    reason to move: a NOT_LEADER reply sends the call to the leader it
    names (kept in the list if it was not there), or to the next node
    after a short pause while the cluster elects; a slice of the call's
    time without a reply sends it to the next node. Each move takes a
    fresh DEALER, so a late reply from the node left behind is never read
    as the answer to a later request; on one node, rids tell late replies
    apart. With a single endpoint and no redirect a call is one send and
    one wait for the whole timeout, as it always was.

    A request keeps its rid through every resend, and carries the client's
    client_id (made at construction): a server with a log answers a write
    it already applied with the reply it gave then (protocol appendix,
    "Retried writes").
*/
#include <czmq.h>
#include "conveyor/cvr_client.h"
#include "cvr_client_internal.h"

#define CVR_CLIENT_TIMEOUT_DEFAULT 5000
#define S_SLICE_MAX         1000    //  first slice of a call, at most (ms);
                                    //  each slice after one without a
                                    //  reply is twice as long
#define S_BACKOFF_MIN       20      //  pauses while the cluster elects (ms)
#define S_BACKOFF_MAX       250
#define S_ENDPOINTS_MAX     64      //  given and learnt together

struct _cvr_client_t {
    zsock_t *dealer;            //  to the current node; pipelining is not
                                //  used. NULL after a move, until the next
                                //  call connects it
    char **endpoints;           //  every request endpoint known: those
                                //  given, then leaders learnt; owned
    size_t count;
    size_t current;             //  the one talked to
    char *endpoint;             //  endpoints [current], borrowed
    char *list;                 //  cvr_client_endpoints' text, owned
    char *client_id;            //  sent with every request, owned
    int timeout_ms;             //  bound of each call
    uint64_t rid;               //  rid of the latest request: replies with
                                //  another one are late answers to calls
                                //  that already timed out
    cvr_wr_t *writer;           //  the request being built, reused by calls
    cvr_wr_t *scratch;          //  requests the call path makes itself
    cvr_err_t error;            //  outcome of the last call
    char *message;              //  its message; "" after a success
    uint64_t oldest;            //  `oldest` of the last COMPACTED reply
    char *events_endpoint;      //  the current node's, from hello, wildcard
                                //  resolved; NULL until first asked for
    cvr_security_t *security;   //  CURVE credentials, owned; NULL: plain
    bool retried;               //  the last call's request went out again
                                //  after a send that got no reply
    bool clustered;             //  a NOT_LEADER reply, or a hello naming a
                                //  leader, came back
    bool patient;               //  a node that took the request has the
                                //  rest of the call's time to answer
};

//  --------------------------------------------------------------------------
//  Outcome of the last call

static void
s_set_error (cvr_client_t *self, cvr_err_t code, const char *format, ...)
{
    va_list args;
    va_start (args, format);
    char *message = zsys_vprintf (format, args);
    va_end (args);
    free (self->message);
    self->message = message ? message : strdup ("");
    self->error = code;
}

static void
s_set_ok (cvr_client_t *self)
{
    if (*self->message) {
        free (self->message);
        self->message = strdup ("");
    }
    self->error = CVR_OK;
    self->oldest = 0;
}

//  A reply that lacks a result the operation promises.
static cvr_err_t
s_bad_reply (cvr_client_t *self, const char *op, const char *what)
{
    s_set_error (self, CVR_PROTOCOL, "%s reply from %s has no valid %s",
                 op, self->endpoint, what);
    return CVR_PROTOCOL;
}

//  --------------------------------------------------------------------------
//  Endpoints

//  Splits "scheme://host:port" into the host's offset and length; -1 when
//  the endpoint has no such shape (ipc://, inproc://).
static int
s_endpoint_host (const char *endpoint, size_t *start, size_t *length)
{
    const char *host = strstr (endpoint, "://");
    if (!host)
        return -1;
    host += 3;
    const char *colon = strrchr (host, ':');
    if (!colon || colon == host)
        return -1;
    *start = (size_t) (host - endpoint);
    *length = (size_t) (colon - host);
    return 0;
}

//  True when the endpoint's host is one a server binds to listen on every
//  interface: it names no host a client could reach.
static bool
s_wildcard (const char *endpoint)
{
    size_t start, length;
    if (s_endpoint_host (endpoint, &start, &length))
        return false;
    const char *host = endpoint + start;
    return (length == 1 && *host == '*')
        || (length == 7 && memcmp (host, "0.0.0.0", 7) == 0)
        || (length == 4 && memcmp (host, "[::]", 4) == 0);
}

//  endpoint with its host replaced by host (length bytes). Caller owns.
static char *
s_with_host (const char *endpoint, const char *host, size_t length)
{
    size_t start, old;
    if (s_endpoint_host (endpoint, &start, &old))
        return strdup (endpoint);
    return zsys_sprintf ("%.*s%.*s%s", (int) start, endpoint, (int) length, host,
                         endpoint + start + old);
}

//  The event endpoint a client can connect to: a server that publishes on
//  every interface reports the wildcard it bound, which only the host we
//  already reach it by can replace. Caller owns the result.
static char *
s_resolve_events (const char *events, const char *request)
{
    size_t rstart, rlength;
    if (!s_wildcard (events) || s_endpoint_host (request, &rstart, &rlength))
        return strdup (events);
    return s_with_host (events, request + rstart, rlength);
}

//  True when a DEALER accepts the endpoint (its shape, and for tcp a host
//  that resolves).
static bool
s_connectable (const char *endpoint, const cvr_security_t *security)
{
    zsock_t *probe = zsock_new (ZMQ_DEALER);
    if (!probe)
        return false;
    zsock_set_linger (probe, 0);
    zsock_set_immediate (probe, 1);
    cvr_security_apply (security, probe);
    bool valid = zsock_connect (probe, "%s", endpoint) == 0;
    zsock_destroy (&probe);
    return valid;
}

//  The index of endpoint in the list, added if it is new. -1 when it is
//  malformed or the list is full.
static int
s_add_endpoint (cvr_client_t *self, const char *endpoint)
{
    for (size_t i = 0; i < self->count; i++)
        if (streq (self->endpoints [i], endpoint))
            return (int) i;
    if (self->count == S_ENDPOINTS_MAX || !*endpoint
    ||  !s_connectable (endpoint, self->security))
        return -1;
    self->endpoints = (char **) realloc (self->endpoints,
                                         (self->count + 1) * sizeof (char *));
    assert (self->endpoints);
    self->endpoints [self->count] = strdup (endpoint);
    //  realloc may have moved the array, not the strings.
    self->endpoint = self->endpoints [self->current];
    return (int) self->count++;
}

//  "a,b,c" into the list (blanks around items ignored, repeats kept
//  once); -1 when an item is malformed or there is none.
static int
s_parse_endpoints (cvr_client_t *self, const char *text)
{
    char *copy = strdup (text), *save = NULL;
    int rc = 0;
    for (char *item = strtok_r (copy, ",", &save); item && rc == 0;
         item = strtok_r (NULL, ",", &save)) {
        while (isspace ((unsigned char) *item))
            item++;
        size_t length = strlen (item);
        while (length && isspace ((unsigned char) item [length - 1]))
            item [--length] = 0;
        if (length == 0 || s_add_endpoint (self, item) < 0)
            rc = -1;
    }
    free (copy);
    return self->count ? rc : -1;
}

//  A fresh DEALER to the current node.
static int
s_connect (cvr_client_t *self)
{
    zsock_destroy (&self->dealer);
    self->dealer = zsock_new (ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    //  Options go before connect: they apply to the connection it makes.
    //  Unanswered requests are worthless once the client is gone, and
    //  destroy (or process exit) must not wait for a dead server.
    zsock_set_linger (self->dealer, 0);
    //  Queue nothing while disconnected: a request that timed out must
    //  not reach a server that comes back later and act then.
    zsock_set_immediate (self->dealer, 1);
    cvr_security_apply (self->security, self->dealer);
    if (zsock_connect (self->dealer, "%s", self->endpoint)) {
        zsock_destroy (&self->dealer);
        return -1;
    }
    return 0;
}

//  Makes another node the current one; the next call connects to it.
static void
s_move (cvr_client_t *self, size_t index)
{
    if (index == self->current)
        return;
    self->current = index;
    self->endpoint = self->endpoints [index];
    zsock_destroy (&self->dealer);
    zstr_free (&self->events_endpoint);
}

static void
s_move_next (cvr_client_t *self)
{
    s_move (self, (self->current + 1) % self->count);
}

//  --------------------------------------------------------------------------
//  Construction

cvr_client_t *
cvr_client_new_secure (const char *endpoint, int timeout_ms,
                       const cvr_security_t *security)
{
    if (!endpoint || !*endpoint)
        return NULL;
    cvr_client_t *self = (cvr_client_t *) zmalloc (sizeof (cvr_client_t));
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : CVR_CLIENT_TIMEOUT_DEFAULT;
    self->writer = cvr_wr_new ();
    self->scratch = cvr_wr_new ();
    self->message = strdup ("");
    self->security = cvr_security_dup (security);
    zuuid_t *uuid = zuuid_new ();
    self->client_id = zsys_sprintf ("cvr-%s", zuuid_str_canonical (uuid));
    zuuid_destroy (&uuid);
    if (s_parse_endpoints (self, endpoint) || s_connect (self))
        cvr_client_destroy (&self);
    return self;
}

cvr_client_t *
cvr_client_new (const char *endpoint, int timeout_ms)
{
    return cvr_client_new_secure (endpoint, timeout_ms, NULL);
}

const cvr_security_t *
cvr_client_security (cvr_client_t *self)
{
    return self->security;
}

void
cvr_client_destroy (cvr_client_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_client_t *self = *self_p;
    zsock_destroy (&self->dealer);
    cvr_wr_destroy (&self->writer);
    cvr_wr_destroy (&self->scratch);
    for (size_t i = 0; i < self->count; i++)
        free (self->endpoints [i]);
    free (self->endpoints);
    free (self->list);
    free (self->client_id);
    free (self->message);
    free (self->events_endpoint);
    cvr_security_destroy (&self->security);
    free (self);
    *self_p = NULL;
}

void
cvr_client_set_timeout (cvr_client_t *self, int timeout_ms)
{
    assert (self);
    self->timeout_ms = timeout_ms > 0 ? timeout_ms : CVR_CLIENT_TIMEOUT_DEFAULT;
}

cvr_err_t
cvr_client_error (cvr_client_t *self)
{
    assert (self);
    return self->error;
}

const char *
cvr_client_message (cvr_client_t *self)
{
    assert (self);
    return self->message;
}

const char *
cvr_client_endpoint (cvr_client_t *self)
{
    assert (self);
    return self->endpoint;
}

const char *
cvr_client_endpoints (cvr_client_t *self)
{
    assert (self);
    size_t size = 1;
    for (size_t i = 0; i < self->count; i++)
        size += strlen (self->endpoints [i]) + 1;
    free (self->list);
    self->list = (char *) zmalloc (size);
    strcat (self->list, self->endpoint);
    for (size_t i = 0; i < self->count; i++)
        if (i != self->current) {
            strcat (self->list, ",");
            strcat (self->list, self->endpoints [i]);
        }
    return self->list;
}

bool
cvr_client_retried (cvr_client_t *self)
{
    assert (self);
    return self->retried;
}

void
cvr_client_set_patient (cvr_client_t *self, bool patient)
{
    assert (self);
    self->patient = patient;
}

bool
cvr_client_clustered (cvr_client_t *self)
{
    assert (self);
    return self->clustered || self->count > 1;
}

//  --------------------------------------------------------------------------
//  The request path

//  Waits until the socket is ready for events, at most until deadline
//  (zclock_mono ms). Returns 1 when ready, 0 at the deadline, -1 when
//  interrupted.
static int
s_wait (cvr_client_t *self, short events, int64_t deadline)
{
    zmq_pollitem_t item = { zsock_resolve (self->dealer), 0, events, 0 };
    while (true) {
        int64_t remaining = deadline - zclock_mono ();
        if (remaining < 0)
            remaining = 0;
        int rc = zmq_poll (&item, 1, (long) remaining);
        if (rc > 0)
            return 1;
        if (rc == 0)
            return 0;
        if (errno != EINTR || zsys_interrupted)
            return -1;
    }
}

//  How one send and wait on the current node ended.
typedef enum {
    S_ANSWERED,         //  the reply to our rid is in *reply_p
    S_UNSENT,           //  not connected in time: the node never saw it
    S_UNANSWERED,       //  sent, no reply in time: the node may have acted
    S_FAILED            //  the error is set (interrupted, undecodable)
} s_exchange_t;

//  Sends the body in w (ending in rid) to the current node and waits for
//  its reply. With ZMQ_IMMEDIATE a send waits for the connection: until
//  send_until at most; the reply is awaited until `until`.
static s_exchange_t
s_exchange (cvr_client_t *self, cvr_wr_t *w, uint64_t rid, int64_t send_until,
            int64_t until, cvr_msg_t **reply_p)
{
    *reply_p = NULL;
    void *handle = zsock_resolve (self->dealer);
    while (zmq_send (handle, cvr_wr_data (w), cvr_wr_size (w), ZMQ_DONTWAIT) == -1) {
        if (errno != EAGAIN && errno != EINTR) {
            s_set_error (self, CVR_TIMEOUT, "cannot send to %s: %s",
                         self->endpoint, zmq_strerror (errno));
            return S_FAILED;
        }
        int rc = s_wait (self, ZMQ_POLLOUT, send_until);
        if (rc < 0) {
            s_set_error (self, CVR_TIMEOUT, "interrupted while sending to %s (timeout %d ms)",
                         self->endpoint, self->timeout_ms);
            return S_FAILED;
        }
        if (rc == 0)
            return S_UNSENT;
    }
    while (true) {
        int rc = s_wait (self, ZMQ_POLLIN, until);
        if (rc < 0) {
            s_set_error (self, CVR_TIMEOUT, "interrupted waiting for %s (timeout %d ms)",
                         self->endpoint, self->timeout_ms);
            return S_FAILED;
        }
        if (rc == 0)
            return S_UNANSWERED;
        zmsg_t *msg = zmsg_recv (self->dealer);
        if (!msg)
            continue;
        if (zmsg_size (msg) != 1) {
            zmsg_destroy (&msg);        //  not a reply's shape: ignore it
            continue;
        }
        zframe_t *frame = zmsg_first (msg);
        cvr_msg_t *reply = cvr_msg_decode (zframe_data (frame), zframe_size (frame));
        zmsg_destroy (&msg);
        if (!reply || !cvr_obj_is_str_map (cvr_msg_root (reply))) {
            cvr_msg_destroy (&reply);
            s_set_error (self, CVR_PROTOCOL, "undecodable reply from %s",
                         self->endpoint);
            return S_FAILED;
        }
        //  A reply without rid answers a request the server could not
        //  decode (LIMIT_EXCEEDED); with one call in flight it is ours.
        const msgpack_object *echo = cvr_obj_get (cvr_msg_root (reply), "rid");
        uint64_t got;
        if (echo && (cvr_obj_uint (echo, &got) || got != rid)) {
            cvr_msg_destroy (&reply);   //  late reply to an earlier call
            continue;
        }
        *reply_p = reply;
        return S_ANSWERED;
    }
}

//  Turns the reply to our request into the call's outcome: the message
//  when ok is true, else NULL with the error set.
static cvr_msg_t *
s_outcome (cvr_client_t *self, cvr_msg_t *reply)
{
    const msgpack_object *root = cvr_msg_root (reply);
    const msgpack_object *ok = cvr_obj_get (root, "ok");
    if (ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean)
        return reply;
    if (ok && ok->type == MSGPACK_OBJECT_BOOLEAN) {
        char *name = cvr_obj_get_strdup (root, "error");
        char *message = cvr_obj_get_strdup (root, "message");
        cvr_err_t code = cvr_err_from_name (name);
        if (code == CVR_PROTOCOL)
            s_set_error (self, code, "unknown error %s from %s: %s",
                         name ? name : "(none)", self->endpoint,
                         message ? message : "");
        else
            s_set_error (self, code, "%s", message ? message : name);
        if (code == CVR_COMPACTED) {
            uint64_t oldest = 0;
            cvr_obj_uint (cvr_obj_get (root, "oldest"), &oldest);
            self->oldest = oldest;
        }
        free (name);
        free (message);
    }
    else
        s_set_error (self, CVR_PROTOCOL, "reply from %s has no boolean ok",
                     self->endpoint);
    cvr_msg_destroy (&reply);
    return NULL;
}

//  True for a NOT_LEADER refusal: the node did not act.
static bool
s_not_leader (const msgpack_object *root)
{
    const msgpack_object *ok = cvr_obj_get (root, "ok");
    return ok && ok->type == MSGPACK_OBJECT_BOOLEAN && !ok->via.boolean
        && cvr_obj_streq (cvr_obj_get (root, "error"), "NOT_LEADER");
}

//  A leader endpoint with a wildcard host (the leader bound tcp://*:N)
//  names no host: the current node's cluster_status tells the leader's
//  raft address, whose host reaches it. Falls back on the current node's
//  host. Caller owns the result.
static char *
s_resolve_leader (cvr_client_t *self, const char *leader, int64_t deadline)
{
    if (!s_wildcard (leader))
        return strdup (leader);
    char *resolved = NULL;
    cvr_wr_t *w = self->scratch;
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "cluster_status");
    uint64_t rid = ++self->rid;
    cvr_wr_kuint (w, "rid", rid);
    cvr_wr_close (w);
    int64_t until = zclock_mono () + S_SLICE_MAX;
    if (until > deadline)
        until = deadline;
    cvr_msg_t *reply = NULL;
    if (s_exchange (self, w, rid, until, until, &reply) == S_ANSWERED) {
        const msgpack_object *root = cvr_msg_root (reply);
        const msgpack_object *servers = cvr_obj_get (root, "servers");
        uint64_t leader_id = 0, id;
        cvr_obj_uint (cvr_obj_get (root, "leader_id"), &leader_id);
        for (uint32_t i = 0; leader_id && servers && servers->type == MSGPACK_OBJECT_ARRAY
                             && i < servers->via.array.size && !resolved; i++) {
            const msgpack_object *server = &servers->via.array.ptr [i];
            char *address = cvr_obj_get_strdup (server, "address");
            const char *colon = address ? strrchr (address, ':') : NULL;
            if (colon && colon > address
            &&  cvr_obj_uint (cvr_obj_get (server, "id"), &id) == 0 && id == leader_id)
                resolved = s_with_host (leader, address, (size_t) (colon - address));
            free (address);
        }
    }
    cvr_msg_destroy (&reply);
    if (!resolved) {
        size_t start, length;
        resolved = s_endpoint_host (self->endpoint, &start, &length) == 0
                 ? s_with_host (leader, self->endpoint + start, length)
                 : strdup (leader);
    }
    return resolved;
}

//  Sleeps ms, at most until deadline.
static void
s_pause (int64_t ms, int64_t deadline)
{
    int64_t remaining = deadline - zclock_mono ();
    if (remaining > 0)
        zclock_sleep ((int) (ms < remaining ? ms : remaining));
}

//  The call's time ran out without a reply, or without a leader.
static void
s_timed_out (cvr_client_t *self, s_exchange_t last, bool electing)
{
    if (self->count == 1 && !electing)
        s_set_error (self, CVR_TIMEOUT, last == S_UNSENT
                     ? "no reply from %s within %d ms (not connected)"
                     : "no reply from %s within %d ms",
                     self->endpoint, self->timeout_ms);
    else
    if (electing)
        s_set_error (self, CVR_TIMEOUT, "no reply from a leader within %d ms "
                     "(%s: not the leader, no leader known; nodes: %s)",
                     self->timeout_ms, self->endpoint, cvr_client_endpoints (self));
    else
        s_set_error (self, CVR_TIMEOUT, "no reply from %s within %d ms%s (nodes: %s)",
                     self->endpoint, self->timeout_ms,
                     last == S_UNSENT ? " (not connected)" : "",
                     cvr_client_endpoints (self));
}

cvr_msg_t *
cvr_client_call (cvr_client_t *self, cvr_wr_t *w)
{
    assert (self);
    assert (w);
    s_set_ok (self);
    self->retried = false;
    if (cvr_wr_depth (w) != 1) {
        s_set_error (self, CVR_BAD_REQUEST, "request is not one open map");
        return NULL;
    }
    //  Servers ignore client_id where they do not deduplicate (reads,
    //  servers without a log).
    cvr_wr_kstr (w, "client_id", self->client_id);
    uint64_t rid = ++self->rid;
    cvr_wr_kuint (w, "rid", rid);
    cvr_wr_close (w);

    int64_t deadline = zclock_mono () + self->timeout_ms;
    int64_t first = self->timeout_ms < S_SLICE_MAX ? self->timeout_ms : S_SLICE_MAX;
    int64_t backoff = S_BACKOFF_MIN;
    int silent = 0;             //  slices that ended without a reply
    size_t redirects = 0;       //  redirects in a row
    bool unanswered = false;    //  a send got no reply: it may have acted
    while (true) {
        if (!self->dealer && s_connect (self)) {
            s_set_error (self, CVR_TIMEOUT, "cannot connect to %s", self->endpoint);
            return NULL;
        }
        //  With several nodes, a slice of the time each: a dead one (not
        //  connected within half a slice, or silent for a whole one)
        //  makes way for the next.
        int64_t now = zclock_mono ();
        int64_t send_until = deadline, until = deadline;
        if (self->count > 1) {
            int64_t slice = first << (silent < 3 ? silent : 3);
            if (now + slice < deadline && !self->patient)
                until = now + slice;
            if (now + slice / 2 < until)
                send_until = now + slice / 2;
        }
        cvr_msg_t *reply = NULL;
        s_exchange_t got = s_exchange (self, w, rid, send_until, until, &reply);
        if (got == S_FAILED)
            return NULL;
        if (got != S_UNSENT && unanswered)
            self->retried = true;
        if (got != S_ANSWERED) {
            if (got == S_UNANSWERED)
                unanswered = true;
            //  (A patient call's slice is the rest of the time, but a node
            //  it cannot reach still makes way after half a slice.)
            if (self->count == 1 || zclock_mono () >= deadline) {
                s_timed_out (self, got, false);
                //  The next call starts with another node.
                if (self->count > 1)
                    s_move_next (self);
                return NULL;
            }
            silent++;
            s_move_next (self);
            continue;
        }
        if (!s_not_leader (cvr_msg_root (reply)))
            return s_outcome (self, reply);
        //  Not the leader, so it did not act: the request goes elsewhere.
        self->clustered = true;
        char *named = cvr_obj_get_strdup (cvr_msg_root (reply), "leader");
        cvr_msg_destroy (&reply);
        char *leader = named ? s_resolve_leader (self, named, deadline) : NULL;
        int target = leader ? s_add_endpoint (self, leader) : -1;
        free (named);
        free (leader);
        if (target >= 0 && (size_t) target != self->current) {
            //  Nodes that name each other (a stale view during an
            //  election) are given time to agree.
            if (++redirects > self->count + 1) {
                redirects = 0;
                s_pause (backoff, deadline);
                backoff = backoff * 2 < S_BACKOFF_MAX ? backoff * 2 : S_BACKOFF_MAX;
            }
            s_move (self, (size_t) target);
        }
        else {
            //  No leader known (electing), or the node names itself (about
            //  to take over): ask again after a pause, the next node when
            //  none is known.
            s_pause (backoff, deadline);
            backoff = backoff * 2 < S_BACKOFF_MAX ? backoff * 2 : S_BACKOFF_MAX;
            if (target < 0)
                s_move_next (self);
        }
        if (zclock_mono () >= deadline) {
            s_timed_out (self, S_ANSWERED, true);
            return NULL;
        }
    }
}

//  Starts a request map for op in the client's writer.
static cvr_wr_t *
s_request (cvr_client_t *self, const char *op)
{
    cvr_wr_reset (self->writer);
    cvr_wr_map (self->writer);
    cvr_wr_kstr (self->writer, "op", op);
    return self->writer;
}

static uint64_t
s_get_uint (const msgpack_object *map, const char *key, uint64_t fallback)
{
    uint64_t value;
    return cvr_obj_uint (cvr_obj_get (map, key), &value) ? fallback : value;
}

static void
s_write_labels (cvr_wr_t *w, const cvr_label_t *labels, size_t count)
{
    cvr_wr_str (w, "labels");
    cvr_wr_map (w);
    for (size_t i = 0; i < count; i++)
        cvr_wr_kstr (w, labels [i].key, labels [i].value);
    cvr_wr_close (w);
}

//  --------------------------------------------------------------------------
//  hello and the event endpoint

void
cvr_hello_clear (cvr_hello_t *self)
{
    if (!self)
        return;
    free (self->server);
    free (self->version);
    free (self->node_id);
    free (self->events_endpoint);
    free (self->leader);
    memset (self, 0, sizeof (cvr_hello_t));
}

cvr_err_t
cvr_client_hello (cvr_client_t *self, cvr_hello_t *hello)
{
    assert (self);
    assert (hello);
    memset (hello, 0, sizeof (cvr_hello_t));
    cvr_msg_t *reply = cvr_client_call (self, s_request (self, "hello"));
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    hello->server = cvr_obj_get_strdup (root, "server");
    hello->version = cvr_obj_get_strdup (root, "version");
    hello->protocol = cvr_obj_get_int (root, "protocol", 0);
    hello->node_id = cvr_obj_get_strdup (root, "node_id");
    hello->events_endpoint = cvr_obj_get_strdup (root, "events_endpoint");
    hello->seq = s_get_uint (root, "seq", 0);
    hello->leader = cvr_obj_get_strdup (root, "leader");
    if (hello->leader)
        self->clustered = true;
    hello->lease_ms = cvr_obj_get_int (root, "lease_ms", 0);
    hello->session_timeout_ms = cvr_obj_get_int (root, "session_timeout_ms", 0);
    cvr_msg_destroy (&reply);
    if (!hello->events_endpoint) {
        cvr_hello_clear (hello);
        return s_bad_reply (self, "hello", "events_endpoint");
    }
    free (self->events_endpoint);
    self->events_endpoint = s_resolve_events (hello->events_endpoint, self->endpoint);
    return CVR_OK;
}

const char *
cvr_client_events_endpoint (cvr_client_t *self)
{
    assert (self);
    if (!self->events_endpoint) {
        cvr_hello_t hello;
        if (cvr_client_hello (self, &hello) == CVR_OK)
            cvr_hello_clear (&hello);
    }
    return self->events_endpoint;
}

//  --------------------------------------------------------------------------
//  Registry

cvr_err_t
cvr_client_register (cvr_client_t *self, const cvr_service_spec_t *spec,
                     int64_t *lease_ms, cvr_service_t **service)
{
    assert (self);
    assert (spec);
    cvr_wr_t *w = s_request (self, "register");
    cvr_wr_kstr (w, "service_id", spec->service_id);
    cvr_wr_kstr (w, "service_name", spec->service_name);
    cvr_wr_kstr (w, "service_type", spec->service_type);
    cvr_wr_kstr (w, "endpoint", spec->endpoint);
    if (spec->labels_count)
        s_write_labels (w, spec->labels, spec->labels_count);
    if (spec->group_id)
        cvr_wr_kstr (w, "group_id", spec->group_id);
    if (spec->lease_ms > 0)
        cvr_wr_kint (w, "lease_ms", spec->lease_ms);
    if (spec->weight >= 0)
        cvr_wr_kint (w, "weight", spec->weight);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    int64_t granted;
    cvr_service_t *record = NULL;
    if (cvr_obj_int (cvr_obj_get (root, "lease_ms"), &granted)) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "register", "lease_ms");
    }
    if (service && !(record = cvr_proto_read_service (cvr_obj_get (root, "service")))) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "register", "service");
    }
    cvr_msg_destroy (&reply);
    if (lease_ms)
        *lease_ms = granted;
    if (service)
        *service = record;
    return CVR_OK;
}

cvr_err_t
cvr_client_heartbeat (cvr_client_t *self, const char *service_id,
                      cvr_health_t health, int64_t *lease_ms,
                      cvr_health_t *health_out)
{
    assert (self);
    cvr_wr_t *w = s_request (self, "heartbeat");
    cvr_wr_kstr (w, "service_id", service_id);
    cvr_wr_kstr (w, "health", cvr_health_name (health));
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    int64_t granted;
    char *name = cvr_obj_get_strdup (root, "health");
    cvr_health_t acked;
    int rc = cvr_health_parse (name, &acked);
    free (name);
    if (cvr_obj_int (cvr_obj_get (root, "lease_ms"), &granted) || rc) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "heartbeat", "lease_ms or health");
    }
    cvr_msg_destroy (&reply);
    if (lease_ms)
        *lease_ms = granted;
    if (health_out)
        *health_out = acked;
    return CVR_OK;
}

cvr_err_t
cvr_client_deregister (cvr_client_t *self, const char *service_id)
{
    assert (self);
    cvr_wr_t *w = s_request (self, "deregister");
    cvr_wr_kstr (w, "service_id", service_id);
    cvr_msg_t *reply = cvr_client_call (self, w);
    cvr_msg_destroy (&reply);
    //  Sent again after a lost reply: the first one may have removed it.
    if (self->error == CVR_NOT_FOUND && self->retried)
        s_set_ok (self);
    return self->error;
}

cvr_err_t
cvr_client_get_service (cvr_client_t *self, const char *service_id,
                        cvr_service_t **service, uint64_t *seq)
{
    assert (self);
    assert (service);
    *service = NULL;
    cvr_wr_t *w = s_request (self, "get_service");
    cvr_wr_kstr (w, "service_id", service_id);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    *service = cvr_proto_read_service (cvr_obj_get (root, "service"));
    if (seq)
        *seq = s_get_uint (root, "seq", 0);
    cvr_msg_destroy (&reply);
    return *service ? CVR_OK : s_bad_reply (self, "get_service", "service");
}

cvr_err_t
cvr_client_list_services (cvr_client_t *self, const cvr_service_filter_t *filter,
                          cvr_service_list_t **list)
{
    assert (self);
    assert (list);
    *list = NULL;
    cvr_wr_t *w = s_request (self, "list_services");
    if (filter) {
        if (filter->service_name)
            cvr_wr_kstr (w, "service_name", filter->service_name);
        if (filter->service_type)
            cvr_wr_kstr (w, "service_type", filter->service_type);
        if (filter->group_id)
            cvr_wr_kstr (w, "group_id", filter->group_id);
        if (filter->labels_count)
            s_write_labels (w, filter->labels, filter->labels_count);
        if (filter->healthy_only)
            cvr_wr_kbool (w, "healthy_only", true);
    }
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    const msgpack_object *services = cvr_obj_get (root, "services");
    if (!services || services->type != MSGPACK_OBJECT_ARRAY) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "list_services", "services");
    }
    cvr_service_list_t *result = (cvr_service_list_t *) zmalloc (sizeof (cvr_service_list_t));
    result->seq = s_get_uint (root, "seq", 0);
    if (services->via.array.size)
        result->items = (cvr_service_t **) zmalloc (
            services->via.array.size * sizeof (cvr_service_t *));
    for (uint32_t i = 0; i < services->via.array.size; i++) {
        cvr_service_t *service = cvr_proto_read_service (&services->via.array.ptr [i]);
        if (!service) {
            cvr_service_list_destroy (&result);
            cvr_msg_destroy (&reply);
            return s_bad_reply (self, "list_services", "service record");
        }
        result->items [result->count++] = service;
    }
    cvr_msg_destroy (&reply);
    *list = result;
    return CVR_OK;
}

//  --------------------------------------------------------------------------
//  Events

cvr_event_t *
cvr_event_decode (const char *topic, const void *body, size_t size)
{
    if (!topic)
        return NULL;
    cvr_msg_t *msg = cvr_msg_decode (body, size);
    if (!msg)
        return NULL;
    const msgpack_object *root = cvr_msg_root (msg);
    cvr_event_t *self = (cvr_event_t *) zmalloc (sizeof (cvr_event_t));
    self->topic = strdup (topic);
    self->type = cvr_obj_get_strdup (root, "type");
    self->prev = s_get_uint (root, "prev", 0);
    self->at = cvr_obj_get_int (root, "at", 0);
    bool valid = cvr_obj_is_str_map (root) && self->type
              && cvr_obj_uint (cvr_obj_get (root, "seq"), &self->seq) == 0;
    //  A service event is only useful with its record: one without is
    //  as broken as one without a seq.
    if (valid && strncmp (topic, "service/", 8) == 0) {
        self->service = cvr_proto_read_service (cvr_obj_get (root, "service"));
        valid = self->service != NULL;
    }
    cvr_msg_destroy (&msg);
    if (!valid) {
        cvr_event_destroy (&self);
        return NULL;
    }
    self->body = (uint8_t *) malloc (size);
    assert (self->body);
    memcpy (self->body, body, size);
    self->body_size = size;
    return self;
}

void
cvr_event_destroy (cvr_event_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_event_t *self = *self_p;
    free (self->topic);
    free (self->type);
    cvr_service_destroy (&self->service);
    cvr_service_list_destroy (&self->services);
    free (self->body);
    free (self);
    *self_p = NULL;
}

void
cvr_event_list_destroy (cvr_event_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_event_list_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        cvr_event_destroy (&self->items [i]);
    free (self->items);
    free (self);
    *self_p = NULL;
}

//  One [topic, body] pair of an events_since reply. The body arrives as a
//  nested map; it is packed again so the event keeps its bytes exactly as
//  a subscriber would have received them.
static cvr_event_t *
s_read_event (const msgpack_object *pair, cvr_wr_t *scratch)
{
    if (!pair || pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2)
        return NULL;
    char *topic = cvr_obj_strdup (&pair->via.array.ptr [0]);
    const msgpack_object *body = &pair->via.array.ptr [1];
    cvr_event_t *event = NULL;
    if (topic && body->type == MSGPACK_OBJECT_MAP) {
        cvr_wr_reset (scratch);
        cvr_wr_obj (scratch, body);
        event = cvr_event_decode (topic, cvr_wr_data (scratch), cvr_wr_size (scratch));
    }
    else
    if (topic && body->type == MSGPACK_OBJECT_BIN)
        event = cvr_event_decode (topic, body->via.bin.ptr, body->via.bin.size);
    free (topic);
    return event;
}

cvr_err_t
cvr_client_events_since (cvr_client_t *self, uint64_t since, const char *prefix,
                         int limit, cvr_event_list_t **list, uint64_t *oldest)
{
    assert (self);
    assert (list);
    *list = NULL;
    cvr_wr_t *w = s_request (self, "events_since");
    cvr_wr_kuint (w, "since", since);
    if (prefix && *prefix)
        cvr_wr_kstr (w, "prefix", prefix);
    if (limit > 0)
        cvr_wr_kint (w, "limit", limit);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply) {
        if (oldest && self->error == CVR_COMPACTED)
            *oldest = self->oldest;
        return self->error;
    }
    const msgpack_object *root = cvr_msg_root (reply);
    const msgpack_object *events = cvr_obj_get (root, "events");
    if (!events || events->type != MSGPACK_OBJECT_ARRAY) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "events_since", "events");
    }
    cvr_event_list_t *result = (cvr_event_list_t *) zmalloc (sizeof (cvr_event_list_t));
    const msgpack_object *more = cvr_obj_get (root, "more");
    result->more = more && more->type == MSGPACK_OBJECT_BOOLEAN && more->via.boolean;
    result->seq = s_get_uint (root, "seq", 0);
    if (events->via.array.size)
        result->items = (cvr_event_t **) zmalloc (
            events->via.array.size * sizeof (cvr_event_t *));
    cvr_wr_t *scratch = cvr_wr_new ();
    for (uint32_t i = 0; i < events->via.array.size; i++) {
        cvr_event_t *event = s_read_event (&events->via.array.ptr [i], scratch);
        if (!event) {
            cvr_wr_destroy (&scratch);
            cvr_event_list_destroy (&result);
            cvr_msg_destroy (&reply);
            return s_bad_reply (self, "events_since", "event");
        }
        result->items [result->count++] = event;
    }
    cvr_wr_destroy (&scratch);
    cvr_msg_destroy (&reply);
    *list = result;
    return CVR_OK;
}

//  --------------------------------------------------------------------------
//  stats

static int
s_cmp_count (const void *a, const void *b)
{
    return strcmp (((const cvr_count_t *) a)->name, ((const cvr_count_t *) b)->name);
}

//  Reads a {name: count} map into a sorted array; -1 if it is not one.
static int
s_read_counts (const msgpack_object *map, cvr_count_t **counts, size_t *count)
{
    *counts = NULL;
    *count = 0;
    if (!map)
        return 0;                   //  absent: nothing counted yet
    if (!cvr_obj_is_str_map (map))
        return -1;
    if (map->via.map.size)
        *counts = (cvr_count_t *) zmalloc (map->via.map.size * sizeof (cvr_count_t));
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        cvr_count_t *item = &(*counts) [*count];
        item->name = cvr_obj_strdup (&map->via.map.ptr [i].key);
        if (!item->name)
            return -1;
        (*count)++;
        if (cvr_obj_uint (&map->via.map.ptr [i].val, &item->count))
            return -1;
    }
    if (*count)
        qsort (*counts, *count, sizeof (cvr_count_t), s_cmp_count);
    return 0;
}

void
cvr_stats_destroy (cvr_stats_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_stats_t *self = *self_p;
    for (size_t i = 0; i < self->requests_count; i++)
        free (self->requests [i].name);
    free (self->requests);
    for (size_t i = 0; i < self->errors_count; i++)
        free (self->errors [i].name);
    free (self->errors);
    free (self);
    *self_p = NULL;
}

cvr_err_t
cvr_client_stats (cvr_client_t *self, cvr_stats_t **stats)
{
    assert (self);
    assert (stats);
    *stats = NULL;
    cvr_msg_t *reply = cvr_client_call (self, s_request (self, "stats"));
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    cvr_stats_t *result = (cvr_stats_t *) zmalloc (sizeof (cvr_stats_t));
    result->uptime_ms = cvr_obj_get_int (root, "uptime_ms", 0);
    result->seq = s_get_uint (root, "seq", 0);
    result->services = s_get_uint (root, "services", 0);
    result->groups = s_get_uint (root, "groups", 0);
    result->members = s_get_uint (root, "members", 0);
    result->topics = s_get_uint (root, "topics", 0);
    result->dropped = s_get_uint (root, "dropped", 0);
    result->rebalances = s_get_uint (root, "rebalances", 0);
    result->expired = s_get_uint (root, "expired", 0);
    result->members_expired = s_get_uint (root, "members_expired", 0);
    result->events_published = s_get_uint (root, "events_published", 0);
    int rc = s_read_counts (cvr_obj_get (root, "requests"),
                            &result->requests, &result->requests_count);
    if (rc == 0)
        rc = s_read_counts (cvr_obj_get (root, "errors"),
                            &result->errors, &result->errors_count);
    cvr_msg_destroy (&reply);
    if (rc) {
        cvr_stats_destroy (&result);
        return s_bad_reply (self, "stats", "requests or errors");
    }
    *stats = result;
    return CVR_OK;
}

//  --------------------------------------------------------------------------
//  Topics, groups and offsets: result types

static int
s_cmp_partition (const void *a, const void *b)
{
    const cvr_partition_t *x = (const cvr_partition_t *) a;
    const cvr_partition_t *y = (const cvr_partition_t *) b;
    int rc = strcmp (x->topic, y->topic);
    return rc ? rc : (x->partition > y->partition) - (x->partition < y->partition);
}

void
cvr_assignment_clear (cvr_assignment_t *self)
{
    if (!self)
        return;
    for (size_t i = 0; i < self->count; i++)
        free (self->items [i].topic);
    free (self->items);
    self->items = NULL;
    self->count = 0;
}

void
cvr_assignment_destroy (cvr_assignment_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_assignment_clear (*self_p);
    free (*self_p);
    *self_p = NULL;
}

cvr_assignment_t *
cvr_assignment_dup (const cvr_assignment_t *self)
{
    cvr_assignment_t *copy = (cvr_assignment_t *) zmalloc (sizeof (cvr_assignment_t));
    if (self && self->count) {
        copy->items = (cvr_partition_t *) zmalloc (self->count * sizeof (cvr_partition_t));
        for (size_t i = 0; i < self->count; i++)
            copy->items [i] = (cvr_partition_t) { strdup (self->items [i].topic),
                                                  self->items [i].partition };
        copy->count = self->count;
    }
    return copy;
}

bool
cvr_assignment_contains (const cvr_assignment_t *self, const char *topic,
                         int32_t partition)
{
    if (!self || !topic || !self->count)
        return false;
    cvr_partition_t key = { (char *) topic, partition };
    return bsearch (&key, self->items, self->count, sizeof (cvr_partition_t),
                    s_cmp_partition) != NULL;
}

void
cvr_committed_list_destroy (cvr_committed_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_committed_list_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free (self->items [i].topic);
    free (self->items);
    free (self);
    *self_p = NULL;
}

static void
s_topic_infos_free (cvr_topic_info_t *items, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free (items [i].name);
    free (items);
}

void
cvr_topic_list_destroy (cvr_topic_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    s_topic_infos_free ((*self_p)->items, (*self_p)->count);
    free (*self_p);
    *self_p = NULL;
}

static void
s_names_free (char **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free (names [i]);
    free (names);
}

void
cvr_join_result_clear (cvr_join_result_t *self)
{
    if (!self)
        return;
    free (self->group_id);
    free (self->member_id);
    cvr_assignment_clear (&self->assignment);
    s_names_free (self->members, self->members_count);
    memset (self, 0, sizeof (cvr_join_result_t));
}

void
cvr_group_destroy (cvr_group_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_group_t *self = *self_p;
    for (size_t i = 0; i < self->members_count; i++) {
        cvr_group_member_t *member = &self->members [i];
        free (member->member_id);
        free (member->service_name);
        free (member->service_id);
        free (member->instance_id);
        s_names_free (member->topics, member->topics_count);
        cvr_assignment_clear (&member->assignment);
    }
    free (self->members);
    s_topic_infos_free (self->topics, self->topics_count);
    free (self->group_id);
    free (self->assignor);
    free (self);
    *self_p = NULL;
}

void
cvr_group_list_destroy (cvr_group_list_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    cvr_group_list_t *self = *self_p;
    for (size_t i = 0; i < self->count; i++)
        free (self->items [i].group_id);
    free (self->items);
    free (self);
    *self_p = NULL;
}

//  --------------------------------------------------------------------------
//  Topics, groups and offsets: reading replies
//
//  Each reader fills its output (which the caller zeroed) and returns 0,
//  or -1 when the object is not of the promised shape; what it filled
//  before failing is still owned by the output, so the caller's usual
//  destructor frees it.

//  A partition number: an integer in 0..INT32_MAX.
static int
s_read_partition_number (const msgpack_object *o, int32_t *partition)
{
    int64_t value;
    if (cvr_obj_int (o, &value) || value < 0 || value > INT32_MAX)
        return -1;
    *partition = (int32_t) value;
    return 0;
}

//  [[topic, partition], ...] into a sorted assignment.
static int
s_read_assignment (const msgpack_object *o, cvr_assignment_t *assignment)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    uint32_t size = o->via.array.size;
    if (size)
        assignment->items = (cvr_partition_t *) zmalloc (size * sizeof (cvr_partition_t));
    for (uint32_t i = 0; i < size; i++) {
        const msgpack_object *pair = &o->via.array.ptr [i];
        if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2)
            return -1;
        cvr_partition_t *item = &assignment->items [assignment->count];
        if (!(item->topic = cvr_obj_strdup (&pair->via.array.ptr [0])))
            return -1;
        assignment->count++;
        if (s_read_partition_number (&pair->via.array.ptr [1], &item->partition))
            return -1;
    }
    //  The server sends it sorted; sorting again makes the promise ours.
    if (assignment->count > 1)
        qsort (assignment->items, assignment->count, sizeof (cvr_partition_t),
               s_cmp_partition);
    return 0;
}

//  An array of strings.
static int
s_read_names (const msgpack_object *o, char ***names, size_t *count)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return -1;
    *names = (char **) zmalloc ((o->via.array.size + 1) * sizeof (char *));
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        char *name = cvr_obj_strdup (&o->via.array.ptr [i]);
        if (!name)
            return -1;
        (*names) [(*count)++] = name;
    }
    return 0;
}

static int
s_cmp_topic_info (const void *a, const void *b)
{
    return strcmp (((const cvr_topic_info_t *) a)->name,
                   ((const cvr_topic_info_t *) b)->name);
}

//  {name: partitions} into an array sorted by name.
static int
s_read_topic_map (const msgpack_object *o, cvr_topic_info_t **items, size_t *count)
{
    if (!o || !cvr_obj_is_str_map (o))
        return -1;
    uint32_t size = o->via.map.size;
    *items = (cvr_topic_info_t *) zmalloc ((size + 1) * sizeof (cvr_topic_info_t));
    for (uint32_t i = 0; i < size; i++) {
        cvr_topic_info_t *item = &(*items) [*count];
        if (!(item->name = cvr_obj_strdup (&o->via.map.ptr [i].key)))
            return -1;
        (*count)++;
        if (cvr_obj_int (&o->via.map.ptr [i].val, &item->partitions))
            return -1;
    }
    if (*count > 1)
        qsort (*items, *count, sizeof (cvr_topic_info_t), s_cmp_topic_info);
    return 0;
}

//  One member map of a get_group reply.
static int
s_read_group_member (const msgpack_object *o, cvr_group_member_t *member)
{
    if (!o || !cvr_obj_is_str_map (o))
        return -1;
    member->member_id = cvr_obj_get_strdup (o, "member_id");
    member->service_name = cvr_obj_get_strdup (o, "service_name");
    member->service_id = cvr_obj_get_strdup (o, "service_id");
    member->instance_id = cvr_obj_get_strdup (o, "instance_id");
    member->joined_at = cvr_obj_get_int (o, "joined_at", 0);
    member->last_heartbeat_at = cvr_obj_get_int (o, "last_heartbeat_at", 0);
    member->session_timeout_ms = cvr_obj_get_int (o, "session_timeout_ms", 0);
    if (!member->member_id
    ||  s_read_names (cvr_obj_get (o, "topics"), &member->topics, &member->topics_count)
    ||  s_read_assignment (cvr_obj_get (o, "assignment"), &member->assignment))
        return -1;
    return 0;
}

//  The "group" map of a get_group reply; NULL when it is not one.
static cvr_group_t *
s_read_group (const msgpack_object *o)
{
    if (!o || !cvr_obj_is_str_map (o))
        return NULL;
    cvr_group_t *group = (cvr_group_t *) zmalloc (sizeof (cvr_group_t));
    group->group_id = cvr_obj_get_strdup (o, "group_id");
    group->assignor = cvr_obj_get_strdup (o, "assignor");
    const msgpack_object *members = cvr_obj_get (o, "members");
    bool valid = group->group_id
              && cvr_obj_int (cvr_obj_get (o, "generation"), &group->generation) == 0
              && s_read_topic_map (cvr_obj_get (o, "topics"), &group->topics,
                                   &group->topics_count) == 0
              && members && members->type == MSGPACK_OBJECT_ARRAY;
    if (valid) {
        uint32_t size = members->via.array.size;
        group->members = (cvr_group_member_t *) zmalloc (
            (size + 1) * sizeof (cvr_group_member_t));
        for (uint32_t i = 0; i < size && valid; i++) {
            //  Counted first, so the destructor frees a half-read member.
            group->members_count++;
            valid = s_read_group_member (&members->via.array.ptr [i],
                                         &group->members [i]) == 0;
        }
    }
    if (!valid)
        cvr_group_destroy (&group);
    return group;
}

//  [[topic, partition, offset], ...] into an offset list (order kept).
static cvr_committed_list_t *
s_read_offsets (const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_ARRAY)
        return NULL;
    cvr_committed_list_t *list = (cvr_committed_list_t *) zmalloc (sizeof (cvr_committed_list_t));
    uint32_t size = o->via.array.size;
    if (size)
        list->items = (cvr_committed_t *) zmalloc (size * sizeof (cvr_committed_t));
    for (uint32_t i = 0; i < size; i++) {
        const msgpack_object *entry = &o->via.array.ptr [i];
        cvr_committed_t *item = &list->items [list->count];
        if (entry->type != MSGPACK_OBJECT_ARRAY || entry->via.array.size != 3
        ||  !(item->topic = cvr_obj_strdup (&entry->via.array.ptr [0]))) {
            cvr_committed_list_destroy (&list);
            return NULL;
        }
        list->count++;
        if (s_read_partition_number (&entry->via.array.ptr [1], &item->partition)
        ||  cvr_obj_int (&entry->via.array.ptr [2], &item->offset)
        ||  item->offset < -1) {
            cvr_committed_list_destroy (&list);
            return NULL;
        }
    }
    return list;
}

//  --------------------------------------------------------------------------
//  Topics, groups and offsets: operations

cvr_err_t
cvr_client_create_topic (cvr_client_t *self, const char *topic, int64_t partitions,
                         int64_t *granted)
{
    assert (self);
    cvr_wr_t *w = s_request (self, "create_topic");
    cvr_wr_kstr (w, "topic", topic);
    cvr_wr_kint (w, "partitions", partitions);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    int64_t count;
    int rc = cvr_obj_int (cvr_obj_get (cvr_msg_root (reply), "partitions"), &count);
    cvr_msg_destroy (&reply);
    if (rc)
        return s_bad_reply (self, "create_topic", "partitions");
    if (granted)
        *granted = count;
    return CVR_OK;
}

cvr_err_t
cvr_client_list_topics (cvr_client_t *self, cvr_topic_list_t **list)
{
    assert (self);
    assert (list);
    *list = NULL;
    cvr_msg_t *reply = cvr_client_call (self, s_request (self, "list_topics"));
    if (!reply)
        return self->error;
    cvr_topic_list_t *result = (cvr_topic_list_t *) zmalloc (sizeof (cvr_topic_list_t));
    int rc = s_read_topic_map (cvr_obj_get (cvr_msg_root (reply), "topics"),
                               &result->items, &result->count);
    cvr_msg_destroy (&reply);
    if (rc) {
        cvr_topic_list_destroy (&result);
        return s_bad_reply (self, "list_topics", "topics");
    }
    *list = result;
    return CVR_OK;
}

cvr_err_t
cvr_client_join_group (cvr_client_t *self, const char *group_id,
                       const char *const *topics, size_t topics_count,
                       const cvr_join_options_t *options, cvr_join_result_t *result)
{
    assert (self);
    assert (result);
    memset (result, 0, sizeof (cvr_join_result_t));
    cvr_wr_t *w = s_request (self, "join_group");
    cvr_wr_kstr (w, "group_id", group_id);
    cvr_wr_str (w, "topics");
    cvr_wr_array (w);
    for (size_t i = 0; i < topics_count; i++)
        cvr_wr_str (w, topics [i]);
    cvr_wr_close (w);
    if (options) {
        if (options->member_id && *options->member_id)
            cvr_wr_kstr (w, "member_id", options->member_id);
        if (options->service_name)
            cvr_wr_kstr (w, "service_name", options->service_name);
        if (options->service_id)
            cvr_wr_kstr (w, "service_id", options->service_id);
        if (options->instance_id)
            cvr_wr_kstr (w, "instance_id", options->instance_id);
        if (options->session_timeout_ms > 0)
            cvr_wr_kint (w, "session_timeout_ms", options->session_timeout_ms);
        if (options->assignor)
            cvr_wr_kstr (w, "assignor", options->assignor);
    }
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    result->group_id = cvr_obj_get_strdup (root, "group_id");
    result->member_id = cvr_obj_get_strdup (root, "member_id");
    bool valid = result->group_id && result->member_id
              && cvr_obj_int (cvr_obj_get (root, "generation"), &result->generation) == 0
              && s_read_assignment (cvr_obj_get (root, "assignment"), &result->assignment) == 0
              && s_read_names (cvr_obj_get (root, "members"), &result->members,
                               &result->members_count) == 0;
    cvr_msg_destroy (&reply);
    if (!valid) {
        cvr_join_result_clear (result);
        return s_bad_reply (self, "join_group",
                            "group_id, member_id, generation, assignment or members");
    }
    return CVR_OK;
}

//  The operations whose request is group_id and member_id, and whose
//  reply carries nothing. Both remove something: sent again after a lost
//  reply, NOT_FOUND (and for leave UNKNOWN_MEMBER) may only mean that the
//  first one did it.
static cvr_err_t
s_member_call (cvr_client_t *self, const char *op, const char *group_id,
               const char *member_id)
{
    cvr_wr_t *w = s_request (self, op);
    cvr_wr_kstr (w, "group_id", group_id);
    if (member_id)
        cvr_wr_kstr (w, "member_id", member_id);
    cvr_msg_t *reply = cvr_client_call (self, w);
    cvr_msg_destroy (&reply);
    if (self->retried && (self->error == CVR_NOT_FOUND
                          || (member_id && self->error == CVR_UNKNOWN_MEMBER)))
        s_set_ok (self);
    return self->error;
}

cvr_err_t
cvr_client_leave_group (cvr_client_t *self, const char *group_id, const char *member_id)
{
    assert (self);
    return s_member_call (self, "leave_group", group_id, member_id);
}

cvr_err_t
cvr_client_group_heartbeat (cvr_client_t *self, const char *group_id,
                            const char *member_id, int64_t generation,
                            int64_t *current, cvr_assignment_t **assignment)
{
    assert (self);
    if (assignment)
        *assignment = NULL;
    cvr_wr_t *w = s_request (self, "group_heartbeat");
    cvr_wr_kstr (w, "group_id", group_id);
    cvr_wr_kstr (w, "member_id", member_id);
    cvr_wr_kint (w, "generation", generation);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    int64_t now_generation;
    if (cvr_obj_int (cvr_obj_get (root, "generation"), &now_generation)) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "group_heartbeat", "generation");
    }
    const msgpack_object *stale = cvr_obj_get (root, "assignment");
    cvr_assignment_t *taken = NULL;
    if (stale) {
        taken = (cvr_assignment_t *) zmalloc (sizeof (cvr_assignment_t));
        if (s_read_assignment (stale, taken)) {
            cvr_assignment_destroy (&taken);
            cvr_msg_destroy (&reply);
            return s_bad_reply (self, "group_heartbeat", "assignment");
        }
    }
    cvr_msg_destroy (&reply);
    if (current)
        *current = now_generation;
    if (assignment)
        *assignment = taken;
    else
        cvr_assignment_destroy (&taken);
    return CVR_OK;
}

cvr_err_t
cvr_client_get_group (cvr_client_t *self, const char *group_id, cvr_group_t **group,
                      uint64_t *seq)
{
    assert (self);
    assert (group);
    *group = NULL;
    cvr_wr_t *w = s_request (self, "get_group");
    cvr_wr_kstr (w, "group_id", group_id);
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    *group = s_read_group (cvr_obj_get (root, "group"));
    if (seq)
        *seq = s_get_uint (root, "seq", 0);
    cvr_msg_destroy (&reply);
    return *group ? CVR_OK : s_bad_reply (self, "get_group", "group");
}

cvr_err_t
cvr_client_list_groups (cvr_client_t *self, cvr_group_list_t **list)
{
    assert (self);
    assert (list);
    *list = NULL;
    cvr_msg_t *reply = cvr_client_call (self, s_request (self, "list_groups"));
    if (!reply)
        return self->error;
    const msgpack_object *root = cvr_msg_root (reply);
    const msgpack_object *groups = cvr_obj_get (root, "groups");
    if (!groups || groups->type != MSGPACK_OBJECT_ARRAY) {
        cvr_msg_destroy (&reply);
        return s_bad_reply (self, "list_groups", "groups");
    }
    cvr_group_list_t *result = (cvr_group_list_t *) zmalloc (sizeof (cvr_group_list_t));
    result->seq = s_get_uint (root, "seq", 0);
    uint32_t size = groups->via.array.size;
    if (size)
        result->items = (cvr_group_summary_t *) zmalloc (size * sizeof (cvr_group_summary_t));
    bool valid = true;
    for (uint32_t i = 0; i < size && valid; i++) {
        const msgpack_object *entry = &groups->via.array.ptr [i];
        cvr_group_summary_t *item = &result->items [result->count];
        item->group_id = cvr_obj_get_strdup (entry, "group_id");
        if (item->group_id)
            result->count++;
        valid = item->group_id
             && cvr_obj_int (cvr_obj_get (entry, "generation"), &item->generation) == 0
             && cvr_obj_uint (cvr_obj_get (entry, "members"), &item->members) == 0;
    }
    cvr_msg_destroy (&reply);
    if (!valid) {
        cvr_group_list_destroy (&result);
        return s_bad_reply (self, "list_groups", "group entry");
    }
    *list = result;
    return CVR_OK;
}

cvr_err_t
cvr_client_commit_offsets (cvr_client_t *self, const char *group_id,
                           const char *member_id, int64_t generation,
                           const cvr_committed_t *offsets, size_t count)
{
    assert (self);
    assert (offsets || count == 0);
    cvr_wr_t *w = s_request (self, "commit_offsets");
    cvr_wr_kstr (w, "group_id", group_id);
    cvr_wr_kstr (w, "member_id", member_id);
    cvr_wr_kint (w, "generation", generation);
    cvr_wr_str (w, "offsets");
    cvr_wr_array (w);
    for (size_t i = 0; i < count; i++) {
        cvr_wr_array (w);
        cvr_wr_str (w, offsets [i].topic);
        cvr_wr_int (w, offsets [i].partition);
        cvr_wr_int (w, offsets [i].offset);
        cvr_wr_close (w);
    }
    cvr_wr_close (w);
    cvr_msg_t *reply = cvr_client_call (self, w);
    cvr_msg_destroy (&reply);
    return self->error;
}

cvr_err_t
cvr_client_fetch_offsets (cvr_client_t *self, const char *group_id,
                          const cvr_partition_t *partitions, size_t count,
                          cvr_committed_list_t **offsets)
{
    assert (self);
    assert (offsets);
    *offsets = NULL;
    cvr_wr_t *w = s_request (self, "fetch_offsets");
    cvr_wr_kstr (w, "group_id", group_id);
    if (partitions) {
        cvr_wr_str (w, "partitions");
        cvr_wr_array (w);
        for (size_t i = 0; i < count; i++) {
            cvr_wr_array (w);
            cvr_wr_str (w, partitions [i].topic);
            cvr_wr_int (w, partitions [i].partition);
            cvr_wr_close (w);
        }
        cvr_wr_close (w);
    }
    cvr_msg_t *reply = cvr_client_call (self, w);
    if (!reply)
        return self->error;
    *offsets = s_read_offsets (cvr_obj_get (cvr_msg_root (reply), "offsets"));
    cvr_msg_destroy (&reply);
    return *offsets ? CVR_OK : s_bad_reply (self, "fetch_offsets", "offsets");
}

cvr_err_t
cvr_client_delete_group (cvr_client_t *self, const char *group_id)
{
    assert (self);
    return s_member_call (self, "delete_group", group_id, NULL);
}
