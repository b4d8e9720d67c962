/*  cvr_json.c: msgpack to JSON for conveyorctl's --json output. */
#include "cvr_json.h"
#include "cvr_proto.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static json_t *
    s_convert (const msgpack_object *o, int depth);

//  --------------------------------------------------------------------------
//  Strings

char *
cvr_json_base64 (const void *data, size_t size)
{
    static const char alphabet [] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *in = (const uint8_t *) data;
    char *out = (char *) malloc ((size + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    char *p = out;
    size_t i = 0;
    for (; i + 2 < size; i += 3) {
        uint32_t v = (uint32_t) in [i] << 16 | (uint32_t) in [i + 1] << 8 | in [i + 2];
        *p++ = alphabet [v >> 18 & 63];
        *p++ = alphabet [v >> 12 & 63];
        *p++ = alphabet [v >> 6 & 63];
        *p++ = alphabet [v & 63];
    }
    if (i < size) {
        uint32_t v = (uint32_t) in [i] << 16;
        if (i + 1 < size)
            v |= (uint32_t) in [i + 1] << 8;
        *p++ = alphabet [v >> 18 & 63];
        *p++ = alphabet [v >> 12 & 63];
        *p++ = i + 1 < size ? alphabet [v >> 6 & 63] : '=';
        *p++ = '=';
    }
    *p = 0;
    return out;
}

//  Length of the valid UTF-8 sequence at s (at most len bytes), or 0 when
//  it is not one: overlong forms, surrogates and code points above
//  U+10FFFF are refused, as jansson refuses them.
static size_t
s_utf8_seq (const uint8_t *s, size_t len)
{
    uint8_t b = s [0];
    size_t n;
    uint32_t cp;
    if (b < 0x80)
        return 1;
    else
    if (b >= 0xc2 && b <= 0xdf) { n = 2; cp = b & 0x1f; }
    else
    if (b >= 0xe0 && b <= 0xef) { n = 3; cp = b & 0x0f; }
    else
    if (b >= 0xf0 && b <= 0xf4) { n = 4; cp = b & 0x07; }
    else
        return 0;
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s [i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s [i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)
    ||  (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
        return 0;
    return n;
}

//  A copy of s with each byte that does not start a valid UTF-8 sequence
//  replaced by U+FFFD; *out_len gets its length. Caller frees.
static char *
s_utf8_repair (const char *s, size_t len, size_t *out_len)
{
    //  Every bad byte grows to 3: the worst case is known up front.
    char *out = (char *) malloc (len * 3 + 1);
    if (!out)
        return NULL;
    const uint8_t *in = (const uint8_t *) s;
    size_t pos = 0, used = 0;
    while (pos < len) {
        size_t n = s_utf8_seq (in + pos, len - pos);
        if (n) {
            memcpy (out + used, in + pos, n);
            used += n;
            pos += n;
        }
        else {
            memcpy (out + used, "\xef\xbf\xbd", 3);
            used += 3;
            pos++;
        }
    }
    out [used] = 0;
    *out_len = used;
    return out;
}

//  A JSON string of len bytes; repairs invalid UTF-8 rather than failing.
static json_t *
s_string (const char *s, size_t len)
{
    json_t *value = json_stringn (s, len);
    if (!value) {
        size_t fixed_len;
        char *fixed = s_utf8_repair (s, len, &fixed_len);
        if (fixed)
            value = json_stringn (fixed, fixed_len);
        free (fixed);
    }
    return value;
}

//  --------------------------------------------------------------------------
//  Values

//  The text a non-string map key stands for; caller frees.
static char *
s_key_text (const msgpack_object *key, int depth)
{
    char buffer [64];
    switch (key->type) {
        case MSGPACK_OBJECT_NIL:
            return strdup ("null");
        case MSGPACK_OBJECT_BOOLEAN:
            return strdup (key->via.boolean ? "true" : "false");
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            snprintf (buffer, sizeof buffer, "%" PRIu64, key->via.u64);
            return strdup (buffer);
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            snprintf (buffer, sizeof buffer, "%" PRId64, key->via.i64);
            return strdup (buffer);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            snprintf (buffer, sizeof buffer, "%.17g", key->via.f64);
            return strdup (buffer);
        case MSGPACK_OBJECT_BIN:
            return cvr_json_base64 (key->via.bin.ptr, key->via.bin.size);
        default: {
            //  Arrays, maps, ext: the compact JSON of what they convert to.
            json_t *value = s_convert (key, depth + 1);
            char *text = value
                ? json_dumps (value, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            json_decref (value);
            return text;
        }
    }
}

static json_t *
s_convert_map (const msgpack_object *o, int depth)
{
    json_t *object = json_object ();
    for (uint32_t i = 0; object && i < o->via.map.size; i++) {
        const msgpack_object *key = &o->via.map.ptr [i].key;
        json_t *value = s_convert (&o->via.map.ptr [i].val, depth + 1);
        int rc = -1;
        if (value && key->type == MSGPACK_OBJECT_STR) {
            const char *s = key->via.str.ptr;
            size_t len = key->via.str.size;
            rc = json_object_setn_new (object, s, len, json_incref (value));
            if (rc) {
                size_t fixed_len;
                char *fixed = s_utf8_repair (s, len, &fixed_len);
                if (fixed)
                    rc = json_object_setn_new (object, fixed, fixed_len,
                                               json_incref (value));
                free (fixed);
            }
        }
        else
        if (value) {
            char *text = s_key_text (key, depth);
            if (text) {
                size_t fixed_len;
                char *fixed = s_utf8_repair (text, strlen (text), &fixed_len);
                if (fixed)
                    rc = json_object_setn_new (object, fixed, fixed_len,
                                               json_incref (value));
                free (fixed);
            }
            free (text);
        }
        json_decref (value);
        if (rc) {
            //  Only memory can fail here: give up on the whole value.
            json_decref (object);
            object = NULL;
        }
    }
    return object;
}

static json_t *
s_convert (const msgpack_object *o, int depth)
{
    if (depth > CVR_JSON_MAX_DEPTH)
        return json_null ();
    switch (o->type) {
        case MSGPACK_OBJECT_NIL:
            return json_null ();
        case MSGPACK_OBJECT_BOOLEAN:
            return json_boolean (o->via.boolean);
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
            if (o->via.u64 <= (uint64_t) INT64_MAX)
                return json_integer ((json_int_t) o->via.u64);
            else {
                char buffer [32];
                snprintf (buffer, sizeof buffer, "%" PRIu64, o->via.u64);
                return json_string (buffer);
            }
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            return json_integer ((json_int_t) o->via.i64);
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            return isfinite (o->via.f64) ? json_real (o->via.f64) : json_null ();
        case MSGPACK_OBJECT_STR:
            return s_string (o->via.str.ptr, o->via.str.size);
        case MSGPACK_OBJECT_BIN: {
            char *text = cvr_json_base64 (o->via.bin.ptr, o->via.bin.size);
            json_t *value = text ? json_string (text) : NULL;
            free (text);
            return value;
        }
        case MSGPACK_OBJECT_ARRAY: {
            json_t *array = json_array ();
            for (uint32_t i = 0; array && i < o->via.array.size; i++)
                if (json_array_append_new (array,
                        s_convert (&o->via.array.ptr [i], depth + 1))) {
                    json_decref (array);
                    array = NULL;
                }
            return array;
        }
        case MSGPACK_OBJECT_MAP:
            return s_convert_map (o, depth);
        default:
            //  ext: no meaning in this protocol, and none in JSON.
            return json_null ();
    }
}

json_t *
cvr_json_from_msgpack (const msgpack_object *o)
{
    if (!o)
        return json_null ();
    return s_convert (o, 0);
}

json_t *
cvr_json_from_reply (const msgpack_object *reply)
{
    if (!reply || reply->type != MSGPACK_OBJECT_MAP)
        return NULL;
    json_t *object = cvr_json_from_msgpack (reply);
    if (object) {
        json_object_del (object, "ok");
        json_object_del (object, "rid");
    }
    return object;
}

json_t *
cvr_json_from_bytes (const void *data, size_t size)
{
    cvr_msg_t *msg = cvr_msg_decode (data, size);
    if (!msg)
        return NULL;
    json_t *value = cvr_json_from_msgpack (cvr_msg_root (msg));
    cvr_msg_destroy (&msg);
    return value;
}

json_t *
cvr_json_from_service (const cvr_service_t *service)
{
    if (!service)
        return json_null ();
    //  Through the wire encoding, so the JSON has exactly the protocol's
    //  field names and order, whoever adds a field later.
    cvr_wr_t *w = cvr_wr_new ();
    if (!w)
        return NULL;
    cvr_proto_write_service (w, service);
    json_t *value = cvr_json_from_bytes (cvr_wr_data (w), cvr_wr_size (w));
    cvr_wr_destroy (&w);
    return value;
}

int
cvr_json_print (const json_t *value, FILE *file, bool compact)
{
    size_t flags = JSON_ENCODE_ANY
                 | (compact ? JSON_COMPACT : JSON_INDENT (2));
    if (!value || json_dumpf (value, file, flags) || fputc ('\n', file) == EOF)
        return -1;
    return 0;
}
