/*  cvr_proto.c: msgpack reading and writing for protocol section 2. */
#include "cvr_proto.h"

struct _cvr_msg_t {
    msgpack_unpacked unpacked;      //  the decoded tree and its zone
    char *data;                     //  copy of the input: msgpack-c's strings
                                    //  point into it rather than copy
};

//  --------------------------------------------------------------------------
//  Reading

static inline uint64_t
s_be (const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p [i];
    return v;
}

//  Reads the header at data [*pos], advancing past the header and any
//  payload; sets *children to the number of nested values that follow.
//  Returns 1 for a container (even an empty one), 0 for a scalar, -1 if
//  the input ends early or the byte is not valid msgpack.
static int
s_skip_header (const uint8_t *data, size_t size, size_t *pos, uint64_t *children)
{
    uint8_t b = data [(*pos)++];
    size_t avail = size - *pos;
    uint64_t len = 0;
    size_t lenbytes = 0, extra = 0;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if (b >= 0x80 && b <= 0x8f) { *children = 2 * (uint64_t) (b & 0x0f); return 1; }
    if (b >= 0x90 && b <= 0x9f) { *children = b & 0x0f; return 1; }
    if (b >= 0xa0 && b <= 0xbf) len = b & 0x1f;
    else
    switch (b) {
        case 0xc4: case 0xd9: lenbytes = 1; break;         //  bin8, str8
        case 0xc5: case 0xda: lenbytes = 2; break;
        case 0xc6: case 0xdb: lenbytes = 4; break;
        case 0xc7: lenbytes = 1; extra = 1; break;          //  ext: + type
        case 0xc8: lenbytes = 2; extra = 1; break;
        case 0xc9: lenbytes = 4; extra = 1; break;
        case 0xca: len = 4; break;
        case 0xcb: len = 8; break;
        case 0xcc: case 0xd0: len = 1; break;
        case 0xcd: case 0xd1: len = 2; break;
        case 0xce: case 0xd2: len = 4; break;
        case 0xcf: case 0xd3: len = 8; break;
        case 0xd4: len = 2; break;                          //  fixext: type + data
        case 0xd5: len = 3; break;
        case 0xd6: len = 5; break;
        case 0xd7: len = 9; break;
        case 0xd8: len = 17; break;
        case 0xdc: case 0xdd: case 0xde: case 0xdf: {
            size_t n = b == 0xdc || b == 0xde ? 2 : 4;
            if (avail < n)
                return -1;
            uint64_t count = s_be (data + *pos, n);
            *pos += n;
            *children = b >= 0xde ? 2 * count : count;
            return 1;
        }
        default:
            return -1;                                      //  0xc1
    }
    if (lenbytes) {
        if (avail < lenbytes)
            return -1;
        len = s_be (data + *pos, lenbytes) + extra;
        *pos += lenbytes;
        avail -= lenbytes;
    }
    if (avail < len)
        return -1;
    *pos += len;
    return 0;
}

int
cvr_proto_check (const void *data, size_t size)
{
    const uint8_t *bytes = (const uint8_t *) data;
    uint64_t remaining [CVR_PROTO_MAX_DEPTH + 1];
    size_t depth = 0, pos = 0;
    remaining [0] = 1;
    while (true) {
        while (depth > 0 && remaining [depth] == 0)
            depth--;
        if (remaining [depth] == 0)
            break;
        if (pos >= size)
            return -1;
        uint64_t children;
        int kind = s_skip_header (bytes, size, &pos, &children);
        if (kind < 0)
            return -1;
        remaining [depth]--;
        if (kind == 1) {
            //  Every value takes a byte at least: a count above what is
            //  left is a lie, refused before anyone allocates for it.
            //  Depth counts containers, empty ones included.
            if (children > size - pos || depth == CVR_PROTO_MAX_DEPTH)
                return -1;
            remaining [++depth] = children;
        }
    }
    return pos == size ? 0 : -1;
}

cvr_msg_t *
cvr_msg_decode (const void *data, size_t size)
{
    if (!data || size == 0 || cvr_proto_check (data, size))
        return NULL;
    cvr_msg_t *self = (cvr_msg_t *) zmalloc (sizeof (cvr_msg_t));
    msgpack_unpacked_init (&self->unpacked);
    self->data = (char *) malloc (size);
    assert (self->data);
    memcpy (self->data, data, size);
    size_t offset = 0;
    if (msgpack_unpack_next (&self->unpacked, self->data, size, &offset)
            != MSGPACK_UNPACK_SUCCESS
    ||  offset != size)
        cvr_msg_destroy (&self);
    return self;
}

void
cvr_msg_destroy (cvr_msg_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_unpacked_destroy (&(*self_p)->unpacked);
    free ((*self_p)->data);
    free (*self_p);
    *self_p = NULL;
}

struct _cvr_reader_t {
    msgpack_zone zone;              //  cleared, not freed, between messages
    msgpack_object root;
    char *data;                     //  copy of the input (strings point in)
    size_t capacity;
};

cvr_reader_t *
cvr_reader_new (void)
{
    cvr_reader_t *self = (cvr_reader_t *) zmalloc (sizeof (cvr_reader_t));
    bool ok = msgpack_zone_init (&self->zone, MSGPACK_ZONE_CHUNK_SIZE);
    assert (ok);
    (void) ok;
    return self;
}

void
cvr_reader_destroy (cvr_reader_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    msgpack_zone_destroy (&(*self_p)->zone);
    free ((*self_p)->data);
    free (*self_p);
    *self_p = NULL;
}

const msgpack_object *
cvr_reader_decode (cvr_reader_t *self, const void *data, size_t size)
{
    if (!data || size == 0 || cvr_proto_check (data, size))
        return NULL;
    if (size > self->capacity) {
        char *grown = (char *) realloc (self->data, size);
        assert (grown);
        self->data = grown;
        self->capacity = size;
    }
    memcpy (self->data, data, size);
    msgpack_zone_clear (&self->zone);
    size_t offset = 0;
    if (msgpack_unpack (self->data, size, &offset, &self->zone, &self->root)
            != MSGPACK_UNPACK_SUCCESS
    ||  offset != size)
        return NULL;
    return &self->root;
}

const msgpack_object *
cvr_msg_root (cvr_msg_t *self)
{
    return &self->unpacked.data;
}

bool
cvr_obj_is_str_map (const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP)
        return false;
    for (uint32_t i = 0; i < o->via.map.size; i++)
        if (o->via.map.ptr [i].key.type != MSGPACK_OBJECT_STR)
            return false;
    return true;
}

const msgpack_object *
cvr_obj_getn (const msgpack_object *o, const char *key, size_t keylen)
{
    if (!o || o->type != MSGPACK_OBJECT_MAP)
        return NULL;
    //  Later duplicates win, as in most decoders that build a dict: the
    //  scan goes from the end and stops at the first match.
    const msgpack_object *found = NULL;
    for (uint32_t i = o->via.map.size; i-- > 0; ) {
        const msgpack_object *k = &o->via.map.ptr [i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == keylen
        &&  memcmp (k->via.str.ptr, key, keylen) == 0) {
            found = &o->via.map.ptr [i].val;
            break;
        }
    }
    if (found && found->type == MSGPACK_OBJECT_NIL)
        return NULL;
    return found;
}

bool
cvr_obj_streq (const msgpack_object *o, const char *s)
{
    size_t len = strlen (s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len
        && memcmp (o->via.str.ptr, s, len) == 0;
}

char *
cvr_obj_strdup (const msgpack_object *o)
{
    if (!o || o->type != MSGPACK_OBJECT_STR
    ||  memchr (o->via.str.ptr, 0, o->via.str.size))
        return NULL;
    char *s = (char *) malloc (o->via.str.size + 1);
    assert (s);
    memcpy (s, o->via.str.ptr, o->via.str.size);
    s [o->via.str.size] = 0;
    return s;
}

int
cvr_obj_int (const msgpack_object *o, int64_t *value)
{
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *value = o->via.i64;
        return 0;
    }
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *value = (int64_t) o->via.u64;
        return 0;
    }
    return -1;
}

int
cvr_obj_uint (const msgpack_object *o, uint64_t *value)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        *value = o->via.u64;
        return 0;
    }
    return -1;
}

char *
cvr_obj_get_strdup (const msgpack_object *map, const char *key)
{
    return cvr_obj_strdup (cvr_obj_get (map, key));
}

int64_t
cvr_obj_get_int (const msgpack_object *map, const char *key, int64_t fallback)
{
    int64_t value;
    return cvr_obj_int (cvr_obj_get (map, key), &value) ? fallback : value;
}

//  --------------------------------------------------------------------------
//  Writing

static void
s_reserve (cvr_wr_t *self, size_t more)
{
    if (self->size + more <= self->capacity)
        return;
    size_t capacity = self->capacity ? self->capacity : 256;
    while (capacity < self->size + more)
        capacity *= 2;
    self->data = (uint8_t *) realloc (self->data, capacity);
    assert (self->data);
    self->capacity = capacity;
}

static int
s_write (void *data, const char *buf, size_t len)
{
    cvr_wr_t *self = (cvr_wr_t *) data;
    if (len == 0)
        return 0;       //  msgpack-c passes NULL for an empty string
    s_reserve (self, len);
    memcpy (self->data + self->size, buf, len);
    self->size += len;
    return 0;
}

cvr_wr_t *
cvr_wr_new (void)
{
    cvr_wr_t *self = (cvr_wr_t *) zmalloc (sizeof (cvr_wr_t));
    msgpack_packer_init (&self->packer, self, s_write);
    return self;
}

void
cvr_wr_destroy (cvr_wr_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free ((*self_p)->data);
    free (*self_p);
    *self_p = NULL;
}

void
cvr_wr_reset (cvr_wr_t *self)
{
    self->size = 0;
    self->depth = 0;
}

static void
s_open (cvr_wr_t *self, bool is_map)
{
    assert (self->depth < CVR_PROTO_MAX_DEPTH);
    cvr_wr_count (self);
    s_reserve (self, 5);
    self->open [self->depth++] = (cvr_wr_open_t) { self->size, 0, is_map };
    self->data [self->size] = is_map ? 0xdf : 0xdd;
    self->size += 5;
}

void
cvr_wr_map (cvr_wr_t *self)
{
    s_open (self, true);
}

void
cvr_wr_array (cvr_wr_t *self)
{
    s_open (self, false);
}

void
cvr_wr_close (cvr_wr_t *self)
{
    assert (self->depth > 0);
    cvr_wr_open_t *open = &self->open [--self->depth];
    assert (!open->is_map || open->items % 2 == 0);
    uint32_t count = open->is_map ? open->items / 2 : open->items;
    uint8_t *p = self->data + open->header + 1;
    p [0] = (uint8_t) (count >> 24);
    p [1] = (uint8_t) (count >> 16);
    p [2] = (uint8_t) (count >> 8);
    p [3] = (uint8_t) count;
}

//  Strings and integers are the bulk of every reply and event: they are
//  written straight into the buffer, one reserve each, in the very bytes
//  msgpack-c's packer gives (the shortest form; str8 from 32 bytes), which
//  test_proto checks value by value. The packer, a callback per header
//  and per body, stays for the rest.

//  Big-endian n (0, 1, 2, 4 or 8) bytes of v at p; returns the end. Byte
//  by byte, unrolled, so that any host gets it right and the compiler
//  makes one byte swap and one store of it where the host has them.
static inline uint8_t *
s_put_be (uint8_t *p, uint64_t v, size_t n)
{
    switch (n) {
        case 8: p [n - 8] = (uint8_t) (v >> 56);
                p [n - 7] = (uint8_t) (v >> 48);
                p [n - 6] = (uint8_t) (v >> 40);
                p [n - 5] = (uint8_t) (v >> 32);
                /* fall through */
        case 4: p [n - 4] = (uint8_t) (v >> 24);
                p [n - 3] = (uint8_t) (v >> 16);
                /* fall through */
        case 2: p [n - 2] = (uint8_t) (v >> 8);
                /* fall through */
        case 1: p [n - 1] = (uint8_t) v;
                /* fall through */
        default: break;
    }
    return p + n;
}

//  A type byte and n big-endian bytes of v.
static inline void
s_put_scalar (cvr_wr_t *self, uint8_t type, uint64_t v, size_t n)
{
    s_reserve (self, 1 + n);
    uint8_t *p = self->data + self->size;
    *p = type;
    self->size = (size_t) (s_put_be (p + 1, v, n) - self->data);
}

void
cvr_wr_strn_any (cvr_wr_t *self, const char *s, size_t len)
{
    cvr_wr_count (self);
    s_reserve (self, len + 5);
    uint8_t *p = self->data + self->size;
    if (len < 32)
        *p++ = (uint8_t) (0xa0 | len);
    else
    if (len < 256) {
        *p++ = 0xd9;
        *p++ = (uint8_t) len;
    }
    else
    if (len < 65536) {
        *p++ = 0xda;
        p = s_put_be (p, len, 2);
    }
    else {
        *p++ = 0xdb;
        p = s_put_be (p, len, 4);
    }
    if (len)
        memcpy (p, s, len);
    self->size = (size_t) (p + len - self->data);
}

void
cvr_wr_uint (cvr_wr_t *self, uint64_t value)
{
    cvr_wr_count (self);
    if (value < 128)
        s_put_scalar (self, (uint8_t) value, 0, 0);
    else
    if (value < 256)
        s_put_scalar (self, 0xcc, value, 1);
    else
    if (value < 65536)
        s_put_scalar (self, 0xcd, value, 2);
    else
    if (value < 4294967296ULL)
        s_put_scalar (self, 0xce, value, 4);
    else
        s_put_scalar (self, 0xcf, value, 8);
}

void
cvr_wr_int (cvr_wr_t *self, int64_t value)
{
    if (value >= 0) {
        cvr_wr_uint (self, (uint64_t) value);
        return;
    }
    cvr_wr_count (self);
    if (value >= -32)
        s_put_scalar (self, (uint8_t) value, 0, 0);
    else
    if (value >= INT8_MIN)
        s_put_scalar (self, 0xd0, (uint64_t) value, 1);
    else
    if (value >= INT16_MIN)
        s_put_scalar (self, 0xd1, (uint64_t) value, 2);
    else
    if (value >= INT32_MIN)
        s_put_scalar (self, 0xd2, (uint64_t) value, 4);
    else
        s_put_scalar (self, 0xd3, (uint64_t) value, 8);
}

void
cvr_wr_bool (cvr_wr_t *self, bool value)
{
    cvr_wr_count (self);
    if (value)
        msgpack_pack_true (&self->packer);
    else
        msgpack_pack_false (&self->packer);
}

void
cvr_wr_nil (cvr_wr_t *self)
{
    cvr_wr_count (self);
    msgpack_pack_nil (&self->packer);
}

void
cvr_wr_obj (cvr_wr_t *self, const msgpack_object *o)
{
    cvr_wr_count (self);
    msgpack_pack_object (&self->packer, *o);
}

void
cvr_wr_raw (cvr_wr_t *self, const void *data, size_t size)
{
    cvr_wr_count (self);
    s_write (self, (const char *) data, size);
}


size_t
cvr_wr_depth (cvr_wr_t *self)
{
    return self->depth;
}

const uint8_t *
cvr_wr_data (cvr_wr_t *self)
{
    return self->data;
}

size_t
cvr_wr_size (cvr_wr_t *self)
{
    return self->size;
}

zframe_t *
cvr_wr_frame (cvr_wr_t *self)
{
    return zframe_new (self->data, self->size);
}

//  --------------------------------------------------------------------------
//  Service records

void
cvr_proto_write_service (cvr_wr_t *w, const cvr_service_t *service)
{
    cvr_wr_map (w);
    cvr_wr_kstr (w, "service_id", service->service_id);
    cvr_wr_kstr (w, "service_name", service->service_name);
    cvr_wr_kstr (w, "service_type", service->service_type);
    cvr_wr_kstr (w, "endpoint", service->endpoint);
    cvr_wr_str (w, "labels");
    cvr_wr_map (w);
    for (size_t i = 0; i < service->labels_count; i++)
        cvr_wr_kstr (w, service->labels [i].key, service->labels [i].value);
    cvr_wr_close (w);
    cvr_wr_kint (w, "weight", service->weight);
    cvr_wr_kstr (w, "group_id", service->group_id);
    cvr_wr_kstr (w, "health", cvr_health_name (service->health));
    cvr_wr_kint (w, "registered_at", service->registered_at);
    cvr_wr_kint (w, "last_heartbeat_at", service->last_heartbeat_at);
    cvr_wr_kint (w, "lease_ms", service->lease_ms);
    cvr_wr_kint (w, "revision", service->revision);
    cvr_wr_close (w);
}

static int
s_cmp_label (const void *a, const void *b)
{
    return strcmp (((const cvr_label_t *) a)->key, ((const cvr_label_t *) b)->key);
}

cvr_service_t *
cvr_proto_read_service (const msgpack_object *o)
{
    if (!cvr_obj_is_str_map (o))
        return NULL;
    cvr_service_t *self = (cvr_service_t *) zmalloc (sizeof (cvr_service_t));
    self->service_id = cvr_obj_get_strdup (o, "service_id");
    self->service_name = cvr_obj_get_strdup (o, "service_name");
    self->service_type = cvr_obj_get_strdup (o, "service_type");
    self->endpoint = cvr_obj_get_strdup (o, "endpoint");
    self->group_id = cvr_obj_get_strdup (o, "group_id");
    char *health = cvr_obj_get_strdup (o, "health");
    int rc = cvr_health_parse (health, &self->health);
    free (health);
    self->weight = cvr_obj_get_int (o, "weight", 100);
    self->registered_at = cvr_obj_get_int (o, "registered_at", 0);
    self->last_heartbeat_at = cvr_obj_get_int (o, "last_heartbeat_at", 0);
    self->lease_ms = cvr_obj_get_int (o, "lease_ms", 0);
    self->revision = cvr_obj_get_int (o, "revision", 0);
    const msgpack_object *labels = cvr_obj_get (o, "labels");
    if (labels && cvr_obj_is_str_map (labels) && labels->via.map.size) {
        self->labels = (cvr_label_t *) zmalloc (labels->via.map.size * sizeof (cvr_label_t));
        for (uint32_t i = 0; i < labels->via.map.size; i++) {
            cvr_label_t *label = &self->labels [self->labels_count];
            label->key = cvr_obj_strdup (&labels->via.map.ptr [i].key);
            label->value = cvr_obj_strdup (&labels->via.map.ptr [i].val);
            self->labels_count++;
            if (!label->key || !label->value)
                rc = -1;
        }
        qsort (self->labels, self->labels_count, sizeof (cvr_label_t), s_cmp_label);
    }
    if (rc || !self->service_id || !self->service_name || !self->service_type
    ||  !self->endpoint)
        cvr_service_destroy (&self);
    return self;
}

//  Scans for the key's bytes: 0xaa (fixstr of 10) "service_id".
const char *
cvr_proto_service_id_hint (const void *data, size_t size, size_t *len)
{
    const uint8_t *body = (const uint8_t *) data;
    static const char key [] = "\xaa" "service_id";
    const uint8_t *end = body + size, *at = body;
    while ((at = (const uint8_t *) memchr (at, key [0], (size_t) (end - at)))
    &&     ((size_t) (end - at) < sizeof (key) - 1 || memcmp (at, key, sizeof (key) - 1)))
        at++;
    if (!at)
        return NULL;
    at += sizeof (key) - 1;
    if (at < end && (*at & 0xe0) == 0xa0)
        *len = *at++ & 0x1f;
    else
    if (end - at > 1 && *at == 0xd9) {
        *len = at [1];
        at += 2;
    }
    else
        return NULL;
    return (size_t) (end - at) >= *len ? (const char *) at : NULL;
}
