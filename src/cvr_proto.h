/*  cvr_proto.h: the msgpack codec of protocol section 2 (internal).

    Reading: cvr_msg_decode checks the bytes are exactly one well-formed
    msgpack object before msgpack-c unpacks them, so a hostile header that
    claims a billion elements costs nothing. Accessors read fields of the
    decoded tree; a nil value counts as absent.

    Writing: cvr_wr_t builds one msgpack value. Containers are opened and
    closed; their element counts are patched in on close, so callers never
    count ahead (maps and arrays are always written with 32-bit headers).
*/
#ifndef CVR_PROTO_H_INCLUDED
#define CVR_PROTO_H_INCLUDED

#include <czmq.h>
#include <msgpack.h>
#include "conveyor/cvr_types.h"

typedef struct _cvr_msg_t cvr_msg_t;
typedef struct _cvr_wr_t cvr_wr_t;

//  The writer's state is here only for the inline fast path of short
//  strings below (every key, most values); use the functions.
typedef struct {
    size_t header;                  //  offset of the 5-byte container header
    uint32_t items;                 //  values written inside so far
    bool is_map;                    //  map (count = items / 2) or array
} cvr_wr_open_t;

//  Nesting deeper than this is refused on read and on write.
#define CVR_PROTO_MAX_DEPTH 32

//  Returns 0 if data holds exactly one complete msgpack object nested at
//  most CVR_PROTO_MAX_DEPTH deep with no trailing bytes, else -1.
int
    cvr_proto_check (const void *data, size_t size);

//  Decodes one msgpack object; NULL unless cvr_proto_check passes.
//  The message keeps its own copy of the bytes, so the input may be freed
//  at once. Caller owns the result.
cvr_msg_t *
    cvr_msg_decode (const void *data, size_t size);

void
    cvr_msg_destroy (cvr_msg_t **self_p);

//  The decoded root (borrowed from the message).
const msgpack_object *
    cvr_msg_root (cvr_msg_t *self);

//  A decoder for a stream of messages that reuses its memory (one zone and
//  one buffer), for the server's hot path: no allocation per message once
//  warm. What a decode returns is valid until the next decode.
typedef struct _cvr_reader_t cvr_reader_t;

cvr_reader_t *
    cvr_reader_new (void);

void
    cvr_reader_destroy (cvr_reader_t **self_p);

//  Decodes one msgpack object as cvr_msg_decode does; its root, or NULL.
const msgpack_object *
    cvr_reader_decode (cvr_reader_t *self, const void *data, size_t size);

//  True if o is a map whose keys are all strings.
bool
    cvr_obj_is_str_map (const msgpack_object *o);

//  The value of the key of keylen bytes in map o; NULL when o is not a
//  map, the key is absent or its value is nil. Borrowed.
const msgpack_object *
    cvr_obj_getn (const msgpack_object *o, const char *key, size_t keylen);

//  The same for a C string key (inline: a literal's length is known when
//  compiling).
static inline const msgpack_object *
cvr_obj_get (const msgpack_object *o, const char *key)
{
    return cvr_obj_getn (o, key, strlen (key));
}

//  True if o is a string equal to s.
bool
    cvr_obj_streq (const msgpack_object *o, const char *s);

//  A fresh NUL-terminated copy of string o (caller frees); NULL if o is
//  not a string or holds a NUL byte.
char *
    cvr_obj_strdup (const msgpack_object *o);

//  Reads an integer that fits int64; returns 0 or -1.
int
    cvr_obj_int (const msgpack_object *o, int64_t *value);

//  Reads a non-negative integer that fits uint64; returns 0 or -1.
int
    cvr_obj_uint (const msgpack_object *o, uint64_t *value);

//  Shorthands on a map: the field's string copy (NULL if absent or not a
//  string), the field as int (fallback when absent or mistyped).
char *
    cvr_obj_get_strdup (const msgpack_object *map, const char *key);
int64_t
    cvr_obj_get_int (const msgpack_object *map, const char *key, int64_t fallback);

//  Writer.
cvr_wr_t *
    cvr_wr_new (void);
void
    cvr_wr_destroy (cvr_wr_t **self_p);
//  Forgets everything written; keeps the memory.
void
    cvr_wr_reset (cvr_wr_t *self);
void
    cvr_wr_map (cvr_wr_t *self);        //  opens a map
void
    cvr_wr_array (cvr_wr_t *self);      //  opens an array
void
    cvr_wr_close (cvr_wr_t *self);      //  closes the innermost container
//  A string of len bytes (any length; cvr_wr_strn inlines the short case).
void
    cvr_wr_strn_any (cvr_wr_t *self, const char *s, size_t len);
void
    cvr_wr_int (cvr_wr_t *self, int64_t value);
void
    cvr_wr_uint (cvr_wr_t *self, uint64_t value);
void
    cvr_wr_bool (cvr_wr_t *self, bool value);
void
    cvr_wr_nil (cvr_wr_t *self);
//  Writes a decoded object as it is (e.g. echoing `rid`).
void
    cvr_wr_obj (cvr_wr_t *self, const msgpack_object *o);
//  Writes one complete, already encoded msgpack value.
void
    cvr_wr_raw (cvr_wr_t *self, const void *data, size_t size);
struct _cvr_wr_t {
    uint8_t *data;                  //  bytes written
    size_t size;                    //  bytes used
    size_t capacity;                //  bytes allocated
    msgpack_packer packer;          //  writes the rarer scalars into data
    cvr_wr_open_t open [CVR_PROTO_MAX_DEPTH];   //  containers not yet closed
    size_t depth;                   //  how many are open
};

//  Internal to the writer: every value written inside a container counts
//  toward its header.
static inline void
cvr_wr_count (cvr_wr_t *self)
{
    if (self->depth)
        self->open [self->depth - 1].items++;
}

//  A string of len bytes. A short one (a fixstr) that fits the buffer is
//  written here, inline: with a literal, the length and the copy are known
//  when compiling.
static inline void
cvr_wr_strn (cvr_wr_t *self, const char *s, size_t len)
{
    if (len < 32 && self->size + len + 1 <= self->capacity) {
        cvr_wr_count (self);
        uint8_t *p = self->data + self->size;
        *p = (uint8_t) (0xa0 | len);
        if (len)
            memcpy (p + 1, s, len);
        self->size += len + 1;
    }
    else
        cvr_wr_strn_any (self, s, len);
}

//  A C string; NULL writes nil. Inline, and so are the key-value
//  shorthands for maps below, so that the length of a literal key is
//  known when compiling.
static inline void
cvr_wr_str (cvr_wr_t *self, const char *s)
{
    if (s)
        cvr_wr_strn (self, s, strlen (s));
    else
        cvr_wr_nil (self);
}

static inline void
cvr_wr_kstr (cvr_wr_t *self, const char *key, const char *value)
{
    cvr_wr_str (self, key);
    cvr_wr_str (self, value);
}

static inline void
cvr_wr_kint (cvr_wr_t *self, const char *key, int64_t value)
{
    cvr_wr_str (self, key);
    cvr_wr_int (self, value);
}

static inline void
cvr_wr_kuint (cvr_wr_t *self, const char *key, uint64_t value)
{
    cvr_wr_str (self, key);
    cvr_wr_uint (self, value);
}

static inline void
cvr_wr_kbool (cvr_wr_t *self, const char *key, bool value)
{
    cvr_wr_str (self, key);
    cvr_wr_bool (self, value);
}
//  How many containers are open.
size_t
    cvr_wr_depth (cvr_wr_t *self);
//  The bytes written so far (borrowed) and their size. Complete only when
//  every container is closed.
const uint8_t *
    cvr_wr_data (cvr_wr_t *self);
size_t
    cvr_wr_size (cvr_wr_t *self);
//  The bytes as a zframe (caller owns).
zframe_t *
    cvr_wr_frame (cvr_wr_t *self);

//  Writes a service record as protocol section 3 shows it.
void
    cvr_proto_write_service (cvr_wr_t *w, const cvr_service_t *service);

//  Reads a service record; NULL if o is not a valid one. Caller owns it.
cvr_service_t *
    cvr_proto_read_service (const msgpack_object *o);

//  The service_id a request body names, found by its bytes without
//  decoding: a key "service_id" (fixstr) followed by a fixstr or str8
//  value inside the body. Returns the value's first byte (not NUL
//  terminated) and sets *len, or NULL. Only a hint for prefetching: a
//  wrong guess costs a useless prefetch, never a wrong answer.
const char *
    cvr_proto_service_id_hint (const void *data, size_t size, size_t *len);

#endif
