/*  pipeline.h: what the demo pipeline's C programs share (examples only).

    The record stream. Partition p of the source's topic holds, at offset
    o, the record [p, o, payload (p, o)]: a 32-bit value anyone can
    recompute, so a sink checks every record it gets. A transform sends
    [p, o, transform (payload)]. The Python side (pipeline_common.py) has
    the same two functions.

        payload (p, o)  = fmix32 (p * 0x9E3779B1 + o * 0x85EBCA77)  (mod 2^32)
        transform (v)   = v * 3                                     (mod 2^32)

    fmix32 is MurmurHash3's finalizer; o is taken mod 2^32.

    Wire (msgpack maps, one frame, over DEALER -> ROUTER; a REQ's empty
    delimiter is accepted and echoed):
        source: {op: "fetch", rid, partition, offset, max}
                  -> {ok: true, rid, records: [[p, o, payload], ...],
                      end: bool (offset reached the partition's last record),
                      high: int (records available in that partition now)}
                {op: "info", rid}
                  -> {ok: true, rid, topic, partitions, records_per_partition,
                      rate, produced, high: [int, ...], fetches, served}
        sink:   {op: "deliver", id, from, records: [[p, o, value], ...]}
                  -> {ok: true, id, unique, duplicates, bad}
        errors: {ok: false, rid|id, error: "BAD_REQUEST", message}
*/
#ifndef PIPELINE_H_INCLUDED
#define PIPELINE_H_INCLUDED

#include <conveyor/conveyor.h>
#include <msgpack.h>
#include <inttypes.h>
#include <string.h>
#include <errno.h>
#include <stdlib.h>

//  Parses a whole decimal number within [min, max] (an option's value);
//  0, or -1 when it is not one.
static inline int
pipeline_number (const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end;
    errno = 0;
    long long value = strtoll (text, &end, 10);
    if (errno || end == text || *end || value < min || value > max)
        return -1;
    *out = value;
    return 0;
}

static inline uint32_t
pipeline_fmix32 (uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static inline uint32_t
pipeline_payload (int64_t partition, int64_t offset)
{
    return pipeline_fmix32 ((uint32_t) partition * 0x9E3779B1u
                            + (uint32_t) offset * 0x85EBCA77u);
}

static inline uint32_t
pipeline_transform (uint32_t value)
{
    return value * 3u;
}

//  The value of key in a msgpack map, or NULL.
static inline const msgpack_object *
pipeline_get (const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t len = strlen (key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len
        &&  memcmp (k->via.str.ptr, key, len) == 0) {
            const msgpack_object *v = &map->via.map.ptr [i].val;
            return v->type == MSGPACK_OBJECT_NIL ? NULL : v;
        }
    }
    return NULL;
}

//  An integer value; 0 and *out set, or -1.
static inline int
pipeline_int (const msgpack_object *obj, int64_t *out)
{
    if (!obj)
        return -1;
    if (obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (obj->via.u64 > INT64_MAX)
            return -1;
        *out = (int64_t) obj->via.u64;
        return 0;
    }
    if (obj->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = obj->via.i64;
        return 0;
    }
    return -1;
}

//  True if obj is the string s.
static inline bool
pipeline_str_is (const msgpack_object *obj, const char *s)
{
    size_t len = strlen (s);
    return obj && obj->type == MSGPACK_OBJECT_STR && obj->via.str.size == len
        && memcmp (obj->via.str.ptr, s, len) == 0;
}

static inline void
pipeline_pack_str (msgpack_packer *pk, const char *s)
{
    size_t len = strlen (s);
    msgpack_pack_str (pk, len);
    msgpack_pack_str_body (pk, s, len);
}

//  Writes s as a JSON string (the ids and codes the examples print are
//  plain, but escape anyway).
static inline void
pipeline_json_str (FILE *file, const char *s)
{
    fputc ('"', file);
    for (; *s; s++) {
        unsigned char c = (unsigned char) *s;
        if (c == '"' || c == '\\')
            fprintf (file, "\\%c", c);
        else
        if (c < 0x20)
            fprintf (file, "\\u%04x", c);
        else
            fputc (c, file);
    }
    fputc ('"', file);
}

//  --------------------------------------------------------------------------
//  CurveZMQ, as examples/service.c takes it: --server-key KEY|FILE (the
//  coordinator's public key, 40 Z85 characters, or its NAME.cert) and
//  --cert FILE (this program's NAME.cert_secret). Only the coordinator
//  connection uses them; the pipeline's own sockets stay plaintext.
//
//  The credentials of --server-key and --cert into *security (NULL when
//  neither was given): 0, or 2 (usage) after one line on stderr saying
//  which option is wrong. Checks what cvr_security_new would only log, and
//  a 40-character key that is not Z85 (which libzmq would refuse later).
static inline int
pipeline_security (const char *prog, const char *server_key, const char *cert,
                   cvr_security_t **security)
{
    *security = NULL;
    if (!server_key && !cert)
        return 0;
    if (!server_key || !cert) {
        fprintf (stderr, "%s: --server-key and --cert go together (see --help)\n", prog);
        return 2;
    }
    if (strlen (server_key) == 40 && !zsys_file_exists (server_key)) {
        uint8_t binary [32];
        if (!zmq_z85_decode (binary, server_key)) {
            fprintf (stderr, "%s: --server-key '%s' is not a Z85 key\n", prog, server_key);
            return 2;
        }
    }
    else {
        zcert_t *server = cvr_security_load_cert (server_key);
        if (!server) {
            fprintf (stderr, "%s: --server-key '%s' is neither 40 Z85 characters nor a "
                     "readable certificate file\n", prog, server_key);
            return 2;
        }
        zcert_destroy (&server);
    }
    //  zcert_load reads NAME.cert_secret too when given NAME.cert.
    zcert_t *mine = cvr_security_load_cert (cert);
    bool secret = mine && !streq (zcert_secret_txt (mine),
                                  "0000000000000000000000000000000000000000");
    zcert_destroy (&mine);
    if (!secret) {
        fprintf (stderr, "%s: --cert '%s' is not a readable certificate with a secret key "
                 "(conveyorctl keygen NAME writes NAME.cert_secret)\n", prog, cert);
        return 2;
    }
    *security = cvr_security_new (server_key, cert);
    if (!*security) {
        fprintf (stderr, "%s: --server-key and --cert must both be usable\n", prog);
        return 2;
    }
    return 0;
}

//  What to add to a TIMEOUT from the coordinator when CURVE is on.
static inline const char *
pipeline_curve_hint (const cvr_security_t *security, cvr_err_t err)
{
    return security && err == CVR_TIMEOUT
         ? " (CurveZMQ: a coordinator whose key is not --server-key, or that does not list"
           " the public key of --cert, answers nothing)"
         : "";
}

#endif
