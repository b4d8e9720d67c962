/*  cvr_codec.h: state commands and state snapshots as msgpack (internal).

    What a replicated log carries: each command as one msgpack map, and the
    whole state as one msgpack value to compact the log with. Applying a
    decoded command gives exactly what applying the original gives, and a
    restored snapshot is the state it was taken from, field for field, so
    both go on applying commands the same way.

    A command is a map with a short key per field, only the fields its
    type uses (absent optional strings are left out):

        t   type (cvr_cmd_type_t, as a number; the numbers are frozen)
        n   now                         every type
        s   service_id                  heartbeat, lapse, deregister, expire
        h   health (its wire name)      heartbeat
        sv  service (see below)         register
        tp  topic, p partitions         create_topic
        j   join (see below)            join
        g   group_id                    leave, session_expire, rebalance,
                                        commit, delete_group
        m   member_id                   leave, session_expire, commit
        ge  generation, o offsets       commit: o is [[topic, partition,
                                        offset], ...] in the command's order

    A service: id service_id, nm service_name, ty service_type, ep
    endpoint, g group_id, h health name, l labels [[key, value], ...] in
    the record's order, w weight, ra registered_at, lh last_heartbeat_at,
    lm lease_ms, r revision.

    A join: g group_id, m member_id, i instance_id, s service_id, sn
    service_name, tp topics (as given, duplicates kept; at least one), st
    session_timeout_ms, a assignor.

    A snapshot is one map, canonical: fields in a fixed order, every
    collection sorted by its key (strcmp) unless its order is itself state
    (fenced ids, dirty groups, labels), integers in their shortest form,
    so two equal states give the same bytes:

        v   1, the format
        sv  services sorted by id, each as above with every field
        ex  services expired so far
        tp  topics [[name, partitions], ...] sorted by name
        gr  groups sorted by id: {id, ge generation, a assignor,
            mb members, fe fenced member ids oldest first,
            of committed offsets [[topic, partition, offset], ...]
            sorted by topic then partition}
        dt  groups waiting for a rebalance [[group_id, reason], ...] in
            the order they get it
        rb  rebalances so far, mx members expired so far

    A member: id member_id, i instance_id, s service_id, sn service_name,
    tp topics (sorted), st session_timeout_ms, ja joined_at, lh
    last_heartbeat_at, as assignment [[topic, partition], ...] sorted.

    Not in a snapshot, because it follows from what is: the indexes, the
    instance ids of a group (from its members), its subscription counts,
    the session deadlines (last_heartbeat_at + session_timeout_ms) and
    the limits (the reader's own). One thing does not round-trip: the
    order in which cvr_groups_next_expired gives members whose sessions
    end at the very same millisecond, which depends on the deadline heap's
    history; expiries reach the log as explicit commands, so applies do
    not depend on it. The server's lease heap (cvr_leases) is not part of
    the state: after a restore, renew it for every service.
*/
#ifndef CVR_CODEC_H_INCLUDED
#define CVR_CODEC_H_INCLUDED

#include "cvr_state.h"

//  Appends one command as a map.
void
    cvr_codec_write_cmd (cvr_wr_t *w, const cvr_cmd_t *cmd);

//  A decoder of commands: the command last read and the storage it points
//  into, reused by the next read. A command whose strings and arrays fit
//  the zone's first chunk (8 KB: all but the biggest registrations) is
//  read without allocating; a bigger one takes chunks the next read frees.
typedef struct _cvr_codec_cmd_t cvr_codec_cmd_t;

cvr_codec_cmd_t *
    cvr_codec_cmd_new (void);
void
    cvr_codec_cmd_destroy (cvr_codec_cmd_t **self_p);

//  Decodes o in place of the command read before, which is gone. Returns
//  the command (borrowed from self until the next read), or NULL if o is
//  not a well-formed, well-typed command.
const cvr_cmd_t *
    cvr_codec_cmd_read (cvr_codec_cmd_t *self, const msgpack_object *o);

//  A decoder holding o decoded, or NULL as above. Caller destroys.
cvr_codec_cmd_t *
    cvr_codec_read_cmd (const msgpack_object *o);

//  The command last read, for cvr_state_apply. Borrowed from self.
const cvr_cmd_t *
    cvr_codec_cmd (cvr_codec_cmd_t *self);

//  Appends the whole state as one canonical msgpack value.
void
    cvr_codec_write_state (cvr_wr_t *w, cvr_state_t *state);

//  Builds a fresh state from a snapshot's bytes, with these limits for
//  what comes next (a snapshot beyond them is still restored whole).
//  NULL if the bytes are not exactly one well-formed, consistent snapshot.
//  Caller destroys.
cvr_state_t *
    cvr_codec_read_state (const void *data, size_t size,
                          const cvr_state_limits_t *limits);

#endif
