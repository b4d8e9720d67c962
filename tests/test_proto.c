/*  test_proto.c: the msgpack codec of protocol section 2 (cvr_proto).

    Writer round trips, compatibility with msgpack-c's own packer, the
    pre-decode checker against every malformed input we can think of
    (and 10,000 random ones), the object accessors, and service records.
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <time.h>
#include <cmocka.h>
#include "cvr_proto.h"

//  --------------------------------------------------------------------------
//  Helpers

//  Decodes what w holds (every container must be closed); fails the test
//  when that is not one valid object.
static cvr_msg_t *
s_decode_wr (cvr_wr_t *w)
{
    assert_int_equal (cvr_wr_depth (w), 0);
    assert_int_equal (cvr_proto_check (cvr_wr_data (w), cvr_wr_size (w)), 0);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_non_null (msg);
    return msg;
}

static void
s_assert_int (const msgpack_object *o, int64_t expected)
{
    int64_t value = 0;
    assert_non_null (o);
    assert_int_equal (cvr_obj_int (o, &value), 0);
    assert_true (value == expected);
}

static void
s_assert_uint (const msgpack_object *o, uint64_t expected)
{
    uint64_t value = 0;
    assert_non_null (o);
    assert_int_equal (cvr_obj_uint (o, &value), 0);
    assert_true (value == expected);
}

static void
s_assert_strn (const msgpack_object *o, const char *s, size_t len)
{
    assert_non_null (o);
    assert_int_equal (o->type, MSGPACK_OBJECT_STR);
    assert_int_equal (o->via.str.size, len);
    if (len)
        assert_memory_equal (o->via.str.ptr, s, len);
}

//  True when data decodes; checks that cvr_proto_check agrees.
static bool
s_accepts (const void *data, size_t size)
{
    int check = cvr_proto_check (data, size);
    cvr_msg_t *msg = cvr_msg_decode (data, size);
    bool decoded = msg != NULL;
    cvr_msg_destroy (&msg);
    //  The checker is the gate: whatever it refuses must not decode, and
    //  whatever it passes must decode (it is exactly msgpack-c's grammar).
    assert_int_equal (check == 0, decoded);
    return decoded;
}

#define REJECTS(...) do { \
    const uint8_t bytes_ [] = { __VA_ARGS__ }; \
    if (s_accepts (bytes_, sizeof bytes_)) \
        fail_msg ("accepted malformed input at line %d", __LINE__); \
} while (0)

#define ACCEPTS(...) do { \
    const uint8_t bytes_ [] = { __VA_ARGS__ }; \
    if (!s_accepts (bytes_, sizeof bytes_)) \
        fail_msg ("rejected valid input at line %d", __LINE__); \
} while (0)

//  Deterministic PRNG (xorshift64*), so failures reproduce.
static uint64_t s_rng_state;

static void
s_seed (uint64_t seed)
{
    s_rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
}

static uint64_t
s_rand (void)
{
    s_rng_state ^= s_rng_state >> 12;
    s_rng_state ^= s_rng_state << 25;
    s_rng_state ^= s_rng_state >> 27;
    return s_rng_state * 0x2545F4914F6CDD1Dull;
}

//  A message exercising every msgpack type, packed by msgpack-c itself
//  (canonical, smallest encodings). Caller destroys the sbuffer.
static void
s_pack_everything (msgpack_sbuffer *sbuf)
{
    msgpack_sbuffer_init (sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, sbuf, msgpack_sbuffer_write);
    msgpack_pack_map (&pk, 12);
    //  1: small ints of every width
    msgpack_pack_str_with_body (&pk, "ints", 4);
    msgpack_pack_array (&pk, 12);
    msgpack_pack_int (&pk, 0);
    msgpack_pack_int (&pk, -1);
    msgpack_pack_int (&pk, -33);
    msgpack_pack_int (&pk, 200);
    msgpack_pack_int (&pk, -200);
    msgpack_pack_int (&pk, 60000);
    msgpack_pack_int (&pk, -30000);
    msgpack_pack_int64 (&pk, 4000000000ll);
    msgpack_pack_int64 (&pk, -2000000000ll);
    msgpack_pack_int64 (&pk, INT64_MIN);
    msgpack_pack_int64 (&pk, INT64_MAX);
    msgpack_pack_uint64 (&pk, UINT64_MAX);
    //  2: floats
    msgpack_pack_str_with_body (&pk, "floats", 6);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_float (&pk, 1.5f);
    msgpack_pack_double (&pk, -2.25);
    //  3: bools and nil
    msgpack_pack_str_with_body (&pk, "t", 1);
    msgpack_pack_true (&pk);
    msgpack_pack_str_with_body (&pk, "f", 1);
    msgpack_pack_false (&pk);
    msgpack_pack_str_with_body (&pk, "n", 1);
    msgpack_pack_nil (&pk);
    //  6: str8 (40 bytes)
    msgpack_pack_str_with_body (&pk, "s8", 2);
    msgpack_pack_str_with_body (&pk, "0123456789012345678901234567890123456789", 40);
    //  7: bin and ext (fixext 4 and ext8)
    msgpack_pack_str_with_body (&pk, "bin", 3);
    msgpack_pack_bin_with_body (&pk, "\x00\x01\xff", 3);
    msgpack_pack_str_with_body (&pk, "fx", 2);
    msgpack_pack_ext_with_body (&pk, "abcd", 4, 7);
    msgpack_pack_str_with_body (&pk, "ext", 3);
    msgpack_pack_ext_with_body (&pk, "abc", 3, -2);
    //  10: array16 of 20 nils
    msgpack_pack_str_with_body (&pk, "a16", 3);
    msgpack_pack_array (&pk, 20);
    for (int i = 0; i < 20; i++)
        msgpack_pack_nil (&pk);
    //  11: map16 of 17 int -> int entries
    msgpack_pack_str_with_body (&pk, "m16", 3);
    msgpack_pack_map (&pk, 17);
    for (int i = 0; i < 17; i++) {
        msgpack_pack_int (&pk, i);
        msgpack_pack_int (&pk, -i);
    }
    //  12: nested empties
    msgpack_pack_str_with_body (&pk, "nest", 4);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_map (&pk, 0);
    msgpack_pack_array (&pk, 0);
}

//  --------------------------------------------------------------------------
//  Writer round trips

static void
test_roundtrip_scalars (void **state)
{
    static const char binaryish [] = { 'a', 0, (char) 0xff, (char) 0xc1, '\n', 0 };
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_array (w);
    const int64_t ints [] = {
        INT64_MIN, INT64_MIN + 1, -2147483649ll, -2147483648ll, -32769, -32768,
        -129, -128, -33, -32, -1, 0, 1, 127, 128, 255, 256, 65535, 65536,
        4294967295ll, 4294967296ll, INT64_MAX
    };
    size_t nints = sizeof ints / sizeof ints [0];
    for (size_t i = 0; i < nints; i++)
        cvr_wr_int (w, ints [i]);
    cvr_wr_uint (w, UINT64_MAX);
    cvr_wr_uint (w, (uint64_t) INT64_MAX + 1);
    cvr_wr_uint (w, 0);
    cvr_wr_bool (w, true);
    cvr_wr_bool (w, false);
    cvr_wr_nil (w);
    cvr_wr_str (w, NULL);                   //  nil too
    cvr_wr_str (w, "");
    cvr_wr_str (w, "héllo wörld");
    cvr_wr_strn (w, binaryish, sizeof binaryish);
    //  Lengths at every str header boundary: fixstr, str8, str16, str32.
    const size_t lens [] = { 31, 32, 255, 256, 65535, 65536 };
    char *big = (char *) malloc (65536);
    assert_non_null (big);
    for (size_t i = 0; i < 65536; i++)
        big [i] = (char) (i * 7 + 3);
    for (size_t i = 0; i < 6; i++)
        cvr_wr_strn (w, big, lens [i]);
    cvr_wr_close (w);

    cvr_msg_t *msg = s_decode_wr (w);
    const msgpack_object *root = cvr_msg_root (msg);
    assert_int_equal (root->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (root->via.array.size, nints + 3 + 4 + 3 + 6);
    const msgpack_object *o = root->via.array.ptr;
    for (size_t i = 0; i < nints; i++)
        s_assert_int (o++, ints [i]);
    s_assert_uint (o++, UINT64_MAX);
    s_assert_uint (o++, (uint64_t) INT64_MAX + 1);
    s_assert_uint (o++, 0);
    assert_int_equal (o->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true (o++->via.boolean);
    assert_int_equal (o->type, MSGPACK_OBJECT_BOOLEAN);
    assert_false (o++->via.boolean);
    assert_int_equal (o++->type, MSGPACK_OBJECT_NIL);
    assert_int_equal (o++->type, MSGPACK_OBJECT_NIL);
    s_assert_strn (o++, "", 0);
    s_assert_strn (o++, "héllo wörld", strlen ("héllo wörld"));
    s_assert_strn (o++, binaryish, sizeof binaryish);
    for (size_t i = 0; i < 6; i++)
        s_assert_strn (o++, big, lens [i]);
    cvr_msg_destroy (&msg);
    assert_null (msg);
    free (big);
    cvr_wr_destroy (&w);
    assert_null (w);
}

//  The writer packs strings and integers itself: the bytes must be those
//  msgpack-c's packer gives for the same value (the shortest form), at
//  every boundary of every header: powers of two, one either side.
static void
s_assert_bytes_equal (cvr_wr_t *w, msgpack_sbuffer *sb)
{
    assert_int_equal (cvr_wr_size (w), sb->size);
    assert_memory_equal (cvr_wr_data (w), sb->data, sb->size);
}

//  One integer written both ways, compared.
static void
s_check_int (cvr_wr_t *w, msgpack_sbuffer *sb, msgpack_packer *pk, int64_t value)
{
    cvr_wr_reset (w);
    msgpack_sbuffer_clear (sb);
    cvr_wr_int (w, value);
    msgpack_pack_int64 (pk, value);
    s_assert_bytes_equal (w, sb);
}

static void
s_check_uint (cvr_wr_t *w, msgpack_sbuffer *sb, msgpack_packer *pk, uint64_t value)
{
    cvr_wr_reset (w);
    msgpack_sbuffer_clear (sb);
    cvr_wr_uint (w, value);
    msgpack_pack_uint64 (pk, value);
    s_assert_bytes_equal (w, sb);
}

static void
test_writer_bytes_match_msgpack_c (void **state)
{
    cvr_wr_t *w = cvr_wr_new ();
    msgpack_sbuffer sb;
    msgpack_sbuffer_init (&sb);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sb, msgpack_sbuffer_write);
    for (int bit = 0; bit < 64; bit++)
        for (int delta = -1; delta <= 1; delta++) {
            uint64_t u = ((uint64_t) 1 << bit) + (uint64_t) (int64_t) delta;
            //  Negated as unsigned: -(int64_t) (1 << 63) would overflow.
            s_check_int (w, &sb, &pk, (int64_t) u);
            s_check_int (w, &sb, &pk, (int64_t) (0 - u));
            s_check_int (w, &sb, &pk, (int64_t) (u - 1));
            s_check_uint (w, &sb, &pk, u);
        }
    const int64_t ends [] = { INT64_MIN, INT64_MIN + 1, INT64_MAX, -32, -33, 127, 128 };
    for (size_t i = 0; i < sizeof ends / sizeof ends [0]; i++)
        s_check_int (w, &sb, &pk, ends [i]);
    s_check_uint (w, &sb, &pk, UINT64_MAX);

    char *big = (char *) malloc (65537);
    assert_non_null (big);
    memset (big, 'x', 65537);
    const size_t lens [] = { 0, 1, 31, 32, 33, 255, 256, 257, 65535, 65536, 65537 };
    for (size_t i = 0; i < sizeof lens / sizeof lens [0]; i++) {
        cvr_wr_reset (w);
        msgpack_sbuffer_clear (&sb);
        //  After a few bytes, so that growing the buffer is exercised too.
        cvr_wr_int (w, 1);
        cvr_wr_strn (w, big, lens [i]);
        cvr_wr_str (w, "key");
        msgpack_pack_int64 (&pk, 1);
        msgpack_pack_str (&pk, lens [i]);
        msgpack_pack_str_body (&pk, big, lens [i]);
        msgpack_pack_str (&pk, 3);
        msgpack_pack_str_body (&pk, "key", 3);
        s_assert_bytes_equal (w, &sb);
    }
    //  Short strings in a fresh writer: the first goes the long way (no
    //  buffer yet), the next ones inline up to an exact fit of the
    //  buffer, then the long way again to grow it.
    cvr_wr_t *fresh = cvr_wr_new ();
    msgpack_sbuffer_clear (&sb);
    for (int i = 0; i < 10; i++) {
        if (i == 8)             //  the premise: the 8th string filled it exactly
            assert_int_equal (cvr_wr_size (fresh), fresh->capacity);
        cvr_wr_strn (fresh, big, 31);
        msgpack_pack_str (&pk, 31);
        msgpack_pack_str_body (&pk, big, 31);
    }
    s_assert_bytes_equal (fresh, &sb);
    cvr_wr_destroy (&fresh);
    free (big);
    msgpack_sbuffer_destroy (&sb);
    cvr_wr_destroy (&w);
}

static void
test_roundtrip_nested (void **state)
{
    cvr_wr_t *w = cvr_wr_new ();
    assert_int_equal (cvr_wr_depth (w), 0);
    cvr_wr_map (w);
    assert_int_equal (cvr_wr_depth (w), 1);
    cvr_wr_kstr (w, "op", "register");
    cvr_wr_kint (w, "neg", -5);
    cvr_wr_kuint (w, "big", UINT64_MAX);
    cvr_wr_kbool (w, "yes", true);
    cvr_wr_kstr (w, "none", NULL);
    cvr_wr_str (w, "matrix");
    cvr_wr_array (w);
    for (int i = 0; i < 3; i++) {
        cvr_wr_array (w);
        for (int j = 0; j <= i; j++)
            cvr_wr_int (w, i * 10 + j);
        cvr_wr_close (w);
    }
    cvr_wr_array (w);                       //  empty array
    cvr_wr_close (w);
    cvr_wr_map (w);                         //  empty map
    cvr_wr_close (w);
    assert_int_equal (cvr_wr_depth (w), 2);
    cvr_wr_close (w);
    cvr_wr_str (w, "inner");
    cvr_wr_map (w);
    cvr_wr_kstr (w, "k", "v");
    cvr_wr_str (w, "deeper");
    cvr_wr_map (w);
    cvr_wr_kint (w, "x", 1);
    cvr_wr_close (w);
    cvr_wr_close (w);
    cvr_wr_close (w);
    assert_int_equal (cvr_wr_depth (w), 0);
    //  Containers always carry 32-bit headers.
    assert_int_equal (cvr_wr_data (w) [0], 0xdf);
    assert_int_equal (cvr_wr_data (w) [4], 7);

    cvr_msg_t *msg = s_decode_wr (w);
    const msgpack_object *root = cvr_msg_root (msg);
    assert_true (cvr_obj_is_str_map (root));
    assert_int_equal (root->via.map.size, 7);
    assert_true (cvr_obj_streq (cvr_obj_get (root, "op"), "register"));
    s_assert_int (cvr_obj_get (root, "neg"), -5);
    s_assert_uint (cvr_obj_get (root, "big"), UINT64_MAX);
    assert_true (cvr_obj_get (root, "yes")->via.boolean);
    assert_null (cvr_obj_get (root, "none"));
    const msgpack_object *matrix = cvr_obj_get (root, "matrix");
    assert_int_equal (matrix->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (matrix->via.array.size, 5);
    for (int i = 0; i < 3; i++) {
        const msgpack_object *row = &matrix->via.array.ptr [i];
        assert_int_equal (row->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal (row->via.array.size, i + 1);
        for (int j = 0; j <= i; j++)
            s_assert_int (&row->via.array.ptr [j], i * 10 + j);
    }
    assert_int_equal (matrix->via.array.ptr [3].type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (matrix->via.array.ptr [3].via.array.size, 0);
    assert_int_equal (matrix->via.array.ptr [4].type, MSGPACK_OBJECT_MAP);
    assert_int_equal (matrix->via.array.ptr [4].via.map.size, 0);
    const msgpack_object *inner = cvr_obj_get (root, "inner");
    assert_true (cvr_obj_streq (cvr_obj_get (inner, "k"), "v"));
    s_assert_int (cvr_obj_get (cvr_obj_get (inner, "deeper"), "x"), 1);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

//  The writer may open CVR_PROTO_MAX_DEPTH containers, and what it writes
//  must decode.
static void
test_writer_max_depth (void **state)
{
    cvr_wr_t *w = cvr_wr_new ();
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH; i++)
        cvr_wr_array (w);
    assert_int_equal (cvr_wr_depth (w), CVR_PROTO_MAX_DEPTH);
    cvr_wr_int (w, 42);
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH; i++)
        cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    const msgpack_object *o = cvr_msg_root (msg);
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH; i++) {
        assert_int_equal (o->type, MSGPACK_OBJECT_ARRAY);
        assert_int_equal (o->via.array.size, 1);
        o = o->via.array.ptr;
    }
    s_assert_int (o, 42);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

//  Whatever decodes, cvr_wr_obj writes back to something that decodes to
//  an equal object; inside a container it counts as one value.
static void
test_wr_obj_echo (void **state)
{
    msgpack_sbuffer sbuf;
    s_pack_everything (&sbuf);
    cvr_msg_t *msg = cvr_msg_decode (sbuf.data, sbuf.size);
    assert_non_null (msg);
    const msgpack_object *root = cvr_msg_root (msg);

    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_obj (w, root);
    cvr_msg_t *again = s_decode_wr (w);
    assert_true (msgpack_object_equal (*root, *cvr_msg_root (again)));
    cvr_msg_destroy (&again);

    //  Each member echoed as a map value, plus rid-style echoes.
    cvr_wr_reset (w);
    assert_int_equal (cvr_wr_size (w), 0);
    cvr_wr_map (w);
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        cvr_wr_obj (w, &root->via.map.ptr [i].key);
        cvr_wr_obj (w, &root->via.map.ptr [i].val);
    }
    cvr_wr_str (w, "rid");
    cvr_wr_obj (w, cvr_obj_get (root, "ints"));
    cvr_wr_close (w);
    again = s_decode_wr (w);
    const msgpack_object *copy = cvr_msg_root (again);
    assert_int_equal (copy->via.map.size, root->via.map.size + 1);
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        assert_true (msgpack_object_equal (root->via.map.ptr [i].key,
                                           copy->via.map.ptr [i].key));
        assert_true (msgpack_object_equal (root->via.map.ptr [i].val,
                                           copy->via.map.ptr [i].val));
    }
    assert_true (msgpack_object_equal (*cvr_obj_get (root, "ints"),
                                       *cvr_obj_get (copy, "rid")));
    cvr_msg_destroy (&again);
    cvr_wr_destroy (&w);
    cvr_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&sbuf);
}

//  Empty strings, bins and containers decode with a NULL pointer in
//  msgpack-c; echoing them must still work (and be defined behaviour).
static void
test_wr_obj_empty_values (void **state)
{
    //  ["", bin "", {}, [], ext8 of length 0]
    const uint8_t bytes [] = { 0x95, 0xa0, 0xc4, 0x00, 0x80, 0x90, 0xc7, 0x00, 0x05 };
    cvr_msg_t *msg = cvr_msg_decode (bytes, sizeof bytes);
    assert_non_null (msg);
    const msgpack_object *a = cvr_msg_root (msg)->via.array.ptr;
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_str (w, "rid");
    cvr_wr_obj (w, &a [0]);                 //  an empty rid, echoed
    for (int i = 1; i < 5; i++) {
        char key [8];
        snprintf (key, sizeof key, "k%d", i);
        cvr_wr_str (w, key);
        cvr_wr_obj (w, &a [i]);
    }
    cvr_wr_str (w, "all");
    cvr_wr_obj (w, cvr_msg_root (msg));
    cvr_wr_close (w);
    cvr_msg_t *again = s_decode_wr (w);
    const msgpack_object *root = cvr_msg_root (again);
    s_assert_strn (cvr_obj_get (root, "rid"), "", 0);
    assert_int_equal (cvr_obj_get (root, "k1")->type, MSGPACK_OBJECT_BIN);
    assert_int_equal (cvr_obj_get (root, "k1")->via.bin.size, 0);
    assert_int_equal (cvr_obj_get (root, "k2")->via.map.size, 0);
    assert_int_equal (cvr_obj_get (root, "k3")->via.array.size, 0);
    assert_int_equal (cvr_obj_get (root, "k4")->type, MSGPACK_OBJECT_EXT);
    assert_int_equal (cvr_obj_get (root, "k4")->via.ext.size, 0);
    assert_true (msgpack_object_equal (*cvr_msg_root (msg), *cvr_obj_get (root, "all")));
    cvr_msg_destroy (&again);
    cvr_wr_destroy (&w);
    cvr_msg_destroy (&msg);
}

static void
test_wr_raw (void **state)
{
    //  An encoded map {"a": [1, 2]} and an encoded string, spliced in.
    const uint8_t map [] = { 0x81, 0xa1, 'a', 0x92, 0x01, 0x02 };
    const uint8_t str [] = { 0xa3, 'x', 'y', 'z' };
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_array (w);
    cvr_wr_int (w, 7);
    cvr_wr_raw (w, map, sizeof map);
    cvr_wr_raw (w, str, sizeof str);
    cvr_wr_map (w);
    cvr_wr_str (w, "body");
    cvr_wr_raw (w, map, sizeof map);
    cvr_wr_close (w);
    cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    const msgpack_object *root = cvr_msg_root (msg);
    assert_int_equal (root->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (root->via.array.size, 4);     //  each raw counts once
    s_assert_int (&root->via.array.ptr [0], 7);
    const msgpack_object *a = cvr_obj_get (&root->via.array.ptr [1], "a");
    assert_int_equal (a->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (a->via.array.size, 2);
    s_assert_int (&a->via.array.ptr [1], 2);
    s_assert_strn (&root->via.array.ptr [2], "xyz", 3);
    const msgpack_object *body = cvr_obj_get (&root->via.array.ptr [3], "body");
    assert_non_null (cvr_obj_get (body, "a"));
    cvr_msg_destroy (&msg);

    //  The raw bytes are copied verbatim at the top level too.
    cvr_wr_reset (w);
    cvr_wr_raw (w, map, sizeof map);
    assert_int_equal (cvr_wr_size (w), sizeof map);
    assert_memory_equal (cvr_wr_data (w), map, sizeof map);
    zframe_t *frame = cvr_wr_frame (w);
    assert_non_null (frame);
    assert_int_equal (zframe_size (frame), sizeof map);
    assert_memory_equal (zframe_data (frame), map, sizeof map);
    zframe_destroy (&frame);
    cvr_wr_destroy (&w);
}

//  reset forgets both the bytes and any open containers.
static void
test_wr_reset (void **state)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_array (w);
    cvr_wr_kint (w, "junk", 1);
    cvr_wr_reset (w);
    assert_int_equal (cvr_wr_depth (w), 0);
    assert_int_equal (cvr_wr_size (w), 0);
    cvr_wr_map (w);
    cvr_wr_kint (w, "x", 3);
    cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    assert_int_equal (cvr_msg_root (msg)->via.map.size, 1);
    s_assert_int (cvr_obj_get (cvr_msg_root (msg), "x"), 3);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
    cvr_wr_destroy (&w);            //  NULL-safe
    cvr_msg_destroy (&msg);
}

//  --------------------------------------------------------------------------
//  Compatibility with msgpack-c's canonical encodings

static void
test_decode_canonical (void **state)
{
    msgpack_sbuffer sbuf;
    s_pack_everything (&sbuf);
    assert_int_equal (cvr_proto_check (sbuf.data, sbuf.size), 0);
    cvr_msg_t *msg = cvr_msg_decode (sbuf.data, sbuf.size);
    assert_non_null (msg);
    const msgpack_object *root = cvr_msg_root (msg);
    assert_true (cvr_obj_is_str_map (root));
    assert_int_equal (root->via.map.size, 12);

    const msgpack_object *ints = cvr_obj_get (root, "ints");
    assert_int_equal (ints->via.array.size, 12);
    const int64_t expect [] = { 0, -1, -33, 200, -200, 60000, -30000,
                                4000000000ll, -2000000000ll, INT64_MIN, INT64_MAX };
    for (int i = 0; i < 11; i++)
        s_assert_int (&ints->via.array.ptr [i], expect [i]);
    s_assert_uint (&ints->via.array.ptr [11], UINT64_MAX);

    const msgpack_object *floats = cvr_obj_get (root, "floats");
    assert_true (floats->via.array.ptr [0].type == MSGPACK_OBJECT_FLOAT32
              || floats->via.array.ptr [0].type == MSGPACK_OBJECT_FLOAT64);
    assert_true (floats->via.array.ptr [0].via.f64 == 1.5);
    assert_true (floats->via.array.ptr [1].via.f64 == -2.25);
    assert_true (cvr_obj_get (root, "t")->via.boolean);
    assert_false (cvr_obj_get (root, "f")->via.boolean);
    assert_null (cvr_obj_get (root, "n"));      //  nil counts as absent
    s_assert_strn (cvr_obj_get (root, "s8"),
                   "0123456789012345678901234567890123456789", 40);
    const msgpack_object *bin = cvr_obj_get (root, "bin");
    assert_int_equal (bin->type, MSGPACK_OBJECT_BIN);
    assert_int_equal (bin->via.bin.size, 3);
    assert_memory_equal (bin->via.bin.ptr, "\x00\x01\xff", 3);
    const msgpack_object *fx = cvr_obj_get (root, "fx");
    assert_int_equal (fx->type, MSGPACK_OBJECT_EXT);
    assert_int_equal (fx->via.ext.type, 7);
    assert_int_equal (fx->via.ext.size, 4);
    assert_memory_equal (fx->via.ext.ptr, "abcd", 4);
    const msgpack_object *ext = cvr_obj_get (root, "ext");
    assert_int_equal (ext->via.ext.type, -2);
    assert_int_equal (ext->via.ext.size, 3);
    assert_int_equal (cvr_obj_get (root, "a16")->via.array.size, 20);
    const msgpack_object *m16 = cvr_obj_get (root, "m16");
    assert_int_equal (m16->via.map.size, 17);
    assert_false (cvr_obj_is_str_map (m16));
    s_assert_int (&m16->via.map.ptr [16].val, -16);
    const msgpack_object *nest = cvr_obj_get (root, "nest");
    assert_int_equal (nest->via.array.ptr [0].type, MSGPACK_OBJECT_MAP);
    assert_int_equal (nest->via.array.ptr [1].type, MSGPACK_OBJECT_ARRAY);
    cvr_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&sbuf);
}

//  Container headers at their 16- and 32-bit sizes, from msgpack-c.
static void
test_decode_canonical_big (void **state)
{
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init (&sbuf);
    msgpack_packer pk;
    msgpack_packer_init (&pk, &sbuf, msgpack_sbuffer_write);
    msgpack_pack_array (&pk, 2);
    msgpack_pack_array (&pk, 70000);            //  array32
    for (int i = 0; i < 70000; i++)
        msgpack_pack_int (&pk, i % 100);
    msgpack_pack_map (&pk, 65536);              //  map32
    for (int i = 0; i < 65536; i++) {
        msgpack_pack_int (&pk, i);
        msgpack_pack_nil (&pk);
    }
    cvr_msg_t *msg = cvr_msg_decode (sbuf.data, sbuf.size);
    assert_non_null (msg);
    const msgpack_object *root = cvr_msg_root (msg);
    assert_int_equal (root->via.array.ptr [0].via.array.size, 70000);
    s_assert_int (&root->via.array.ptr [0].via.array.ptr [69999], 99);
    assert_int_equal (root->via.array.ptr [1].via.map.size, 65536);
    s_assert_int (&root->via.array.ptr [1].via.map.ptr [65535].key, 65535);
    cvr_msg_destroy (&msg);
    msgpack_sbuffer_destroy (&sbuf);
}

//  --------------------------------------------------------------------------
//  Malformed input

static void
test_reject_empty (void **state)
{
    const uint8_t byte = 0xc0;
    assert_int_equal (cvr_proto_check (&byte, 0), -1);
    assert_null (cvr_msg_decode (&byte, 0));
    assert_null (cvr_msg_decode (NULL, 0));
    assert_null (cvr_msg_decode (NULL, 5));
    //  The smallest valid messages.
    ACCEPTS (0xc0);
    ACCEPTS (0x00);
    ACCEPTS (0x80);
    ACCEPTS (0x90);
    ACCEPTS (0xa0);
}

//  Every proper prefix of a valid message is refused; the whole is not.
static void
test_reject_every_prefix (void **state)
{
    msgpack_sbuffer sbuf;
    s_pack_everything (&sbuf);
    for (size_t n = 0; n < sbuf.size; n++) {
        assert_int_equal (cvr_proto_check (sbuf.data, n), -1);
        assert_null (cvr_msg_decode (sbuf.data, n));
    }
    assert_true (s_accepts (sbuf.data, sbuf.size));
    msgpack_sbuffer_destroy (&sbuf);

    //  Same for a writer-made message (32-bit container headers).
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "events_since");
    cvr_wr_kuint (w, "since", UINT64_MAX);
    cvr_wr_kint (w, "neg", INT64_MIN);
    cvr_wr_str (w, "arr");
    cvr_wr_array (w);
    cvr_wr_strn (w, "a\0b", 3);
    cvr_wr_map (w);
    cvr_wr_close (w);
    cvr_wr_nil (w);
    cvr_wr_close (w);
    cvr_wr_close (w);
    for (size_t n = 0; n < cvr_wr_size (w); n++)
        assert_null (cvr_msg_decode (cvr_wr_data (w), n));
    assert_true (s_accepts (cvr_wr_data (w), cvr_wr_size (w)));
    cvr_wr_destroy (&w);
}

static void
test_reject_trailing (void **state)
{
    REJECTS (0xc0, 0xc0);
    REJECTS (0x01, 0x02);
    REJECTS (0x80, 0x00);
    REJECTS (0x91, 0x01, 0x01);
    REJECTS (0x81, 0xa1, 'k', 0x01, 0xc0);
    REJECTS (0xa1, 'x', 'y');
    REJECTS (0x90, 0x90);

    msgpack_sbuffer sbuf;
    s_pack_everything (&sbuf);
    uint8_t *more = (uint8_t *) malloc (sbuf.size + 1);
    memcpy (more, sbuf.data, sbuf.size);
    for (int b = 0; b < 256; b++) {
        more [sbuf.size] = (uint8_t) b;
        assert_false (s_accepts (more, sbuf.size + 1));
    }
    free (more);
    msgpack_sbuffer_destroy (&sbuf);
}

static void
test_reject_c1 (void **state)
{
    REJECTS (0xc1);
    REJECTS (0x91, 0xc1);
    REJECTS (0x81, 0xc1, 0x01);
    REJECTS (0x81, 0xa1, 'k', 0xc1);
    REJECTS (0x92, 0x01, 0xc1);
    REJECTS (0xdd, 0x00, 0x00, 0x00, 0x01, 0xc1);
}

//  A container header claiming more elements than bytes remain is a lie;
//  it must be refused at once, not allocated for.
static void
test_reject_huge_counts (void **state)
{
    REJECTS (0xdf, 0xff, 0xff, 0xff, 0xff);
    REJECTS (0xdd, 0xff, 0xff, 0xff, 0xff);
    REJECTS (0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0);
    REJECTS (0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0, 0xc0);
    REJECTS (0xde, 0xff, 0xff, 0xc0, 0xc0);
    REJECTS (0xdc, 0xff, 0xff, 0xc0, 0xc0);
    REJECTS (0x91, 0xdd, 0x7f, 0xff, 0xff, 0xff);
    REJECTS (0x9f, 0x01, 0x02);
    REJECTS (0x8f, 0x01, 0x02);
    //  A map claims 2 values per entry: n entries need 2n bytes at least.
    REJECTS (0x82, 0x01, 0x02, 0x03);
    REJECTS (0xdf, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03);
    ACCEPTS (0xdf, 0x00, 0x00, 0x00, 0x02, 0x01, 0x02, 0x03, 0x04);
    //  Header bytes themselves cut short.
    REJECTS (0xdd);
    REJECTS (0xdd, 0x00, 0x00, 0x00);
    REJECTS (0xdf, 0x00);
    REJECTS (0xdc, 0x00);
    REJECTS (0xde);

    //  Exact boundary on a big array: n nils accepted, n + 1 claimed refused.
    const size_t n = 1000000;
    uint8_t *buf = (uint8_t *) malloc (5 + n);
    assert_non_null (buf);
    memset (buf + 5, 0xc0, n);
    buf [0] = 0xdd;
    buf [1] = (uint8_t) (n >> 24); buf [2] = (uint8_t) (n >> 16);
    buf [3] = (uint8_t) (n >> 8);  buf [4] = (uint8_t) n;
    assert_true (s_accepts (buf, 5 + n));
    size_t m = n + 1;
    buf [1] = (uint8_t) (m >> 24); buf [2] = (uint8_t) (m >> 16);
    buf [3] = (uint8_t) (m >> 8);  buf [4] = (uint8_t) m;
    assert_false (s_accepts (buf, 5 + n));
    free (buf);

    //  Quick: 200,000 lying headers in well under a second (an allocation
    //  of 4 G elements each would take far longer, or fail).
    const uint8_t liar [] = { 0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0 };
    const uint8_t liar2 [] = { 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0 };
    clock_t start = clock ();
    for (int i = 0; i < 100000; i++) {
        assert_null (cvr_msg_decode (liar, sizeof liar));
        assert_null (cvr_msg_decode (liar2, sizeof liar2));
    }
    double seconds = (double) (clock () - start) / CLOCKS_PER_SEC;
    assert_true (seconds < 1.0);
}

//  CVR_PROTO_MAX_DEPTH nested containers are fine; one more is refused,
//  whether or not the innermost one is empty.
static void
test_reject_depth (void **state)
{
    uint8_t buf [2 * CVR_PROTO_MAX_DEPTH + 8];
    //  32 arrays around an int: accepted.
    size_t k = 0;
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH; i++)
        buf [k++] = 0x91;
    buf [k++] = 0x01;
    assert_true (s_accepts (buf, k));
    //  32 arrays, the innermost empty: accepted.
    k = 0;
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH - 1; i++)
        buf [k++] = 0x91;
    buf [k++] = 0x90;
    assert_true (s_accepts (buf, k));
    //  33 arrays around an int: refused.
    k = 0;
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH + 1; i++)
        buf [k++] = 0x91;
    buf [k++] = 0x01;
    assert_false (s_accepts (buf, k));
    //  Maps count as much as arrays: 33 maps.
    k = 0;
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH + 1; i++) {
        buf [k++] = 0x81;
        buf [k++] = 0x00;
    }
    buf [k++] = 0x01;
    assert_int_equal (cvr_proto_check (buf, k), -1);
    assert_null (cvr_msg_decode (buf, k));
    //  Far deeper still.
    uint8_t deep [1000];
    memset (deep, 0x91, sizeof deep);
    deep [sizeof deep - 1] = 0x01;
    assert_int_equal (cvr_proto_check (deep, sizeof deep), -1);
    assert_null (cvr_msg_decode (deep, sizeof deep));
}

//  33 nested containers, the innermost empty, are deeper than the limit:
//  cvr_proto_check must refuse them too (not only msgpack-c's unpacker).
static void
test_reject_depth_empty_innermost (void **state)
{
    uint8_t buf [CVR_PROTO_MAX_DEPTH + 8];
    size_t k = 0;
    for (int i = 0; i < CVR_PROTO_MAX_DEPTH; i++)
        buf [k++] = 0x91;
    buf [k++] = 0x90;                       //  the 33rd container
    assert_null (cvr_msg_decode (buf, k));
    assert_int_equal (cvr_proto_check (buf, k), -1);
    buf [k - 1] = 0x80;                     //  an empty map as the 33rd
    assert_int_equal (cvr_proto_check (buf, k), -1);
}

static void
test_reject_short_payloads (void **state)
{
    //  str
    REJECTS (0xa5, 'a', 'b', 'c');
    REJECTS (0xd9, 0x0a, 'a', 'b', 'c');
    REJECTS (0xd9);
    REJECTS (0xda, 0x00, 0x10, 'a');
    REJECTS (0xda, 0x00);
    REJECTS (0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b');
    REJECTS (0xdb, 0x00, 0x00);
    ACCEPTS (0xd9, 0x03, 'a', 'b', 'c');
    ACCEPTS (0xdb, 0x00, 0x00, 0x00, 0x01, 'a');
    //  bin
    REJECTS (0xc4, 0x05, 0x01, 0x02);
    REJECTS (0xc4);
    REJECTS (0xc5, 0x01, 0x00, 0x01);
    REJECTS (0xc6, 0xff, 0xff, 0xff, 0xff, 0x00);
    ACCEPTS (0xc4, 0x02, 0x01, 0x02);
    ACCEPTS (0xc4, 0x00);
    //  ext: the type byte comes on top of the length
    REJECTS (0xc7, 0x02, 0x01, 0xaa);
    REJECTS (0xc7, 0x01, 0x01);
    REJECTS (0xc7, 0x01);
    REJECTS (0xc8, 0x00, 0x03, 0x01, 0xaa, 0xbb);
    REJECTS (0xc9, 0xff, 0xff, 0xff, 0xff, 0x01);
    REJECTS (0xc9, 0x00, 0x00, 0x00, 0x00);
    ACCEPTS (0xc7, 0x02, 0x01, 0xaa, 0xbb);
    ACCEPTS (0xc9, 0x00, 0x00, 0x00, 0x00, 0x05);
    //  fixext: type + 1, 2, 4, 8, 16 bytes
    REJECTS (0xd4, 0x01);
    REJECTS (0xd5, 0x01, 0xaa);
    REJECTS (0xd6, 0x01, 0xaa, 0xbb, 0xcc);
    REJECTS (0xd7, 0x01, 1, 2, 3, 4, 5, 6, 7);
    REJECTS (0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    ACCEPTS (0xd4, 0x01, 0xaa);
    ACCEPTS (0xd8, 0x01, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16);
    //  numbers
    REJECTS (0xcc);
    REJECTS (0xcd, 0x01);
    REJECTS (0xce, 0x01, 0x02, 0x03);
    REJECTS (0xcf, 1, 2, 3, 4, 5, 6, 7);
    REJECTS (0xd0);
    REJECTS (0xd3, 1, 2, 3, 4, 5, 6, 7);
    REJECTS (0xca, 0x00, 0x00, 0x00);
    REJECTS (0xcb, 0, 0, 0, 0, 0, 0, 0);
    ACCEPTS (0xcf, 1, 2, 3, 4, 5, 6, 7, 8);
    ACCEPTS (0xcb, 0, 0, 0, 0, 0, 0, 0, 0);
    //  a short payload inside a container
    REJECTS (0x92, 0xa3, 'a', 'b', 'c', 0xa2, 'x');
    REJECTS (0x81, 0xa3, 'k', 'e');
}

//  Decoded objects belong to the message: the caller may free the input
//  right after decoding (cvr_client does exactly that with its frame).
static void
test_decoded_outlives_input (void **state)
{
    const uint8_t src [] = { 0x82, 0xa3, 'r', 'i', 'd', 0xa5, 'h', 'e', 'l', 'l', 'o',
                             0xa3, 'b', 'i', 'n', 0xc4, 0x02, 0x01, 0x02 };
    uint8_t *input = (uint8_t *) malloc (sizeof src);
    assert_non_null (input);
    memcpy (input, src, sizeof src);
    cvr_msg_t *msg = cvr_msg_decode (input, sizeof src);
    assert_non_null (msg);
    //  What a freed and reused buffer would hold. (Overwritten rather than
    //  freed, so a failure is an assertion, not an ASan abort.)
    memset (input, 0x55, sizeof src);
    const msgpack_object *root = cvr_msg_root (msg);
    const msgpack_object *rid = cvr_obj_get (root, "rid");
    assert_non_null (rid);
    assert_true (cvr_obj_streq (rid, "hello"));
    const msgpack_object *bin = cvr_obj_get (root, "bin");
    assert_non_null (bin);
    assert_memory_equal (bin->via.bin.ptr, "\x01\x02", 2);
    cvr_msg_destroy (&msg);
    free (input);
}

//  --------------------------------------------------------------------------
//  Random input: never crash; what decodes re-encodes to what decodes.

static void
test_random_input (void **state)
{
    s_seed (20240601);
    msgpack_sbuffer sbuf;
    s_pack_everything (&sbuf);
    cvr_wr_t *w1 = cvr_wr_new ();
    cvr_wr_t *w2 = cvr_wr_new ();
    //  Bytes that make structure likely: containers, small values, strings.
    static const uint8_t alphabet [] = {
        0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x90, 0x91, 0x92, 0x93, 0xa0,
        0xa1, 0xa2, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc7, 0xca, 0xcb, 0xcc,
        0xcf, 0xd0, 0xd3, 0xd4, 0xd8, 0xd9, 0xdc, 0xdd, 0xde, 0xdf, 0xe0,
        0xff, 'k'
    };
    uint8_t buf [256];
    int accepted = 0;
    for (int iter = 0; iter < 10000; iter++) {
        size_t size = 0;
        int kind = (int) (s_rand () % 3);
        if (kind == 0) {                        //  uniform bytes
            size = (size_t) (s_rand () % 24);
            for (size_t i = 0; i < size; i++)
                buf [i] = (uint8_t) s_rand ();
        }
        else
        if (kind == 1) {                        //  structured alphabet
            size = 1 + (size_t) (s_rand () % 16);
            for (size_t i = 0; i < size; i++)
                buf [i] = s_rand () % 4
                        ? alphabet [s_rand () % sizeof alphabet]
                        : (uint8_t) (s_rand () % 4);
        }
        else {                                  //  mutated valid message
            size = sbuf.size < sizeof buf ? sbuf.size : sizeof buf;
            memcpy (buf, sbuf.data, size);
            int flips = 1 + (int) (s_rand () % 3);
            for (int f = 0; f < flips; f++)
                buf [s_rand () % size] = (uint8_t) s_rand ();
            if (s_rand () % 4 == 0)
                size = (size_t) (s_rand () % size) + 1;
        }
        //  Decode from an exact-size heap copy so ASan sees any overread.
        uint8_t *exact = (uint8_t *) malloc (size ? size : 1);
        assert_non_null (exact);
        memcpy (exact, buf, size);
        int check = cvr_proto_check (exact, size);
        cvr_msg_t *msg = cvr_msg_decode (exact, size);
        if (msg) {
            assert_int_equal (check, 0);
            accepted++;
            cvr_wr_reset (w1);
            cvr_wr_obj (w1, cvr_msg_root (msg));
            cvr_msg_t *again = cvr_msg_decode (cvr_wr_data (w1), cvr_wr_size (w1));
            assert_non_null (again);
            //  Re-encoding is canonical, so a second round is byte-identical
            //  (this holds even for NaN floats, unlike object equality).
            cvr_wr_reset (w2);
            cvr_wr_obj (w2, cvr_msg_root (again));
            assert_int_equal (cvr_wr_size (w1), cvr_wr_size (w2));
            assert_memory_equal (cvr_wr_data (w1), cvr_wr_data (w2), cvr_wr_size (w1));
            cvr_msg_destroy (&again);
            cvr_msg_destroy (&msg);
        }
        free (exact);
    }
    //  The generator must actually reach the accepting paths.
    assert_true (accepted > 500);
    cvr_wr_destroy (&w1);
    cvr_wr_destroy (&w2);
    msgpack_sbuffer_destroy (&sbuf);
}

//  --------------------------------------------------------------------------
//  Accessors

static void
test_obj_get (void **state)
{
    //  {"a": 1, "ab": 2, "nil": nil, "dup": 1, "dup": 2, 5: "int key"}
    const uint8_t bytes [] = {
        0x86, 0xa1, 'a', 0x01, 0xa2, 'a', 'b', 0x02, 0xa3, 'n', 'i', 'l', 0xc0,
        0xa3, 'd', 'u', 'p', 0x01, 0xa3, 'd', 'u', 'p', 0x02,
        0x05, 0xa7, 'i', 'n', 't', ' ', 'k', 'e', 'y'
    };
    cvr_msg_t *msg = cvr_msg_decode (bytes, sizeof bytes);
    assert_non_null (msg);
    const msgpack_object *root = cvr_msg_root (msg);
    s_assert_int (cvr_obj_get (root, "a"), 1);
    s_assert_int (cvr_obj_get (root, "ab"), 2);
    assert_null (cvr_obj_get (root, "abc"));
    assert_null (cvr_obj_get (root, "b"));
    assert_null (cvr_obj_get (root, ""));
    assert_null (cvr_obj_get (root, "nil"));        //  nil is absent
    s_assert_int (cvr_obj_get (root, "dup"), 2);    //  later duplicate wins
    assert_false (cvr_obj_is_str_map (root));       //  the int key
    //  Non-maps have no keys.
    assert_null (cvr_obj_get (NULL, "a"));
    assert_null (cvr_obj_get (cvr_obj_get (root, "a"), "a"));
    const uint8_t arr [] = { 0x92, 0xa1, 'a', 0x01 };
    cvr_msg_t *amsg = cvr_msg_decode (arr, sizeof arr);
    assert_non_null (amsg);
    assert_null (cvr_obj_get (cvr_msg_root (amsg), "a"));
    assert_false (cvr_obj_is_str_map (cvr_msg_root (amsg)));
    cvr_msg_destroy (&amsg);
    //  Fallback helpers.
    assert_int_equal (cvr_obj_get_int (root, "a", 99), 1);
    assert_int_equal (cvr_obj_get_int (root, "nil", 99), 99);
    assert_int_equal (cvr_obj_get_int (root, "missing", -7), -7);
    assert_null (cvr_obj_get_strdup (root, "a"));   //  not a string
    assert_null (cvr_obj_get_strdup (root, "missing"));
    cvr_msg_destroy (&msg);
}

static void
test_obj_is_str_map (void **state)
{
    const uint8_t empty [] = { 0x80 };
    const uint8_t good [] = { 0x82, 0xa1, 'a', 0x01, 0xa0, 0x02 };  //  "" key ok
    const uint8_t binkey [] = { 0x81, 0xc4, 0x01, 'a', 0x01 };
    const uint8_t nilkey [] = { 0x82, 0xa1, 'a', 0x01, 0xc0, 0x02 };
    const uint8_t str [] = { 0xa1, 'a' };
    struct { const uint8_t *bytes; size_t size; bool expect; } cases [] = {
        { empty, sizeof empty, true },
        { good, sizeof good, true },
        { binkey, sizeof binkey, false },
        { nilkey, sizeof nilkey, false },
        { str, sizeof str, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases [0]; i++) {
        cvr_msg_t *msg = cvr_msg_decode (cases [i].bytes, cases [i].size);
        assert_non_null (msg);
        assert_int_equal (cvr_obj_is_str_map (cvr_msg_root (msg)), cases [i].expect);
        cvr_msg_destroy (&msg);
    }
    assert_false (cvr_obj_is_str_map (NULL));
}

static void
test_obj_strings (void **state)
{
    //  ["abc", "a\0b", "", bin "abc", 5]
    const uint8_t bytes [] = {
        0x95, 0xa3, 'a', 'b', 'c', 0xa3, 'a', 0x00, 'b', 0xa0,
        0xc4, 0x03, 'a', 'b', 'c', 0x05
    };
    cvr_msg_t *msg = cvr_msg_decode (bytes, sizeof bytes);
    assert_non_null (msg);
    const msgpack_object *a = cvr_msg_root (msg)->via.array.ptr;
    char *s = cvr_obj_strdup (&a [0]);
    assert_non_null (s);
    assert_string_equal (s, "abc");
    free (s);
    assert_null (cvr_obj_strdup (&a [1]));          //  embedded NUL
    s = cvr_obj_strdup (&a [2]);
    assert_non_null (s);
    assert_string_equal (s, "");
    free (s);
    assert_null (cvr_obj_strdup (&a [3]));          //  bin is not str
    assert_null (cvr_obj_strdup (&a [4]));
    assert_null (cvr_obj_strdup (NULL));
    assert_true (cvr_obj_streq (&a [0], "abc"));
    assert_false (cvr_obj_streq (&a [0], "ab"));
    assert_false (cvr_obj_streq (&a [0], "abcd"));
    assert_false (cvr_obj_streq (&a [1], "a"));     //  not cut at the NUL
    assert_true (cvr_obj_streq (&a [2], ""));
    assert_false (cvr_obj_streq (&a [3], "abc"));   //  bin
    assert_false (cvr_obj_streq (NULL, "abc"));
    cvr_msg_destroy (&msg);
}

static void
test_obj_int_ranges (void **state)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_array (w);
    cvr_wr_int (w, INT64_MIN);                      //  0
    cvr_wr_int (w, -1);                             //  1
    cvr_wr_int (w, 0);                              //  2
    cvr_wr_int (w, INT64_MAX);                      //  3
    cvr_wr_uint (w, (uint64_t) INT64_MAX + 1);      //  4
    cvr_wr_uint (w, UINT64_MAX);                    //  5
    cvr_wr_str (w, "12");                           //  6
    cvr_wr_bool (w, true);                          //  7
    cvr_wr_nil (w);                                 //  8
    cvr_wr_close (w);
    //  Non-canonical encodings of small values must read the same.
    //  (int64 0xd3 holding 5; uint64 0xcf holding 5; int8 0xd0 holding -3)
    const uint8_t wide [] = { 0x93, 0xd3, 0, 0, 0, 0, 0, 0, 0, 5,
                              0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xd0, 0xfd };
    cvr_msg_t *msg = s_decode_wr (w);
    const msgpack_object *a = cvr_msg_root (msg)->via.array.ptr;
    int64_t i64;
    uint64_t u64;
    s_assert_int (&a [0], INT64_MIN);
    s_assert_int (&a [1], -1);
    s_assert_int (&a [2], 0);
    s_assert_int (&a [3], INT64_MAX);
    i64 = 12345;
    assert_int_equal (cvr_obj_int (&a [4], &i64), -1);  //  above INT64_MAX
    assert_int_equal (cvr_obj_int (&a [5], &i64), -1);
    assert_true (i64 == 12345);                          //  untouched
    assert_int_equal (cvr_obj_int (&a [6], &i64), -1);
    assert_int_equal (cvr_obj_int (&a [7], &i64), -1);
    assert_int_equal (cvr_obj_int (&a [8], &i64), -1);
    assert_int_equal (cvr_obj_int (NULL, &i64), -1);
    u64 = 777;
    assert_int_equal (cvr_obj_uint (&a [0], &u64), -1);  //  negative
    assert_int_equal (cvr_obj_uint (&a [1], &u64), -1);
    assert_true (u64 == 777);
    s_assert_uint (&a [2], 0);
    s_assert_uint (&a [3], INT64_MAX);
    s_assert_uint (&a [4], (uint64_t) INT64_MAX + 1);
    s_assert_uint (&a [5], UINT64_MAX);
    assert_int_equal (cvr_obj_uint (&a [6], &u64), -1);
    assert_int_equal (cvr_obj_uint (&a [7], &u64), -1);
    assert_int_equal (cvr_obj_uint (NULL, &u64), -1);
    cvr_msg_destroy (&msg);
    msg = cvr_msg_decode (wide, sizeof wide);
    assert_non_null (msg);
    a = cvr_msg_root (msg)->via.array.ptr;
    s_assert_int (&a [0], 5);
    s_assert_uint (&a [0], 5);
    s_assert_int (&a [1], 5);
    s_assert_int (&a [2], -3);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

//  --------------------------------------------------------------------------
//  Service records

static cvr_service_t *
s_service (const char *group_id)
{
    cvr_service_t *s = (cvr_service_t *) zmalloc (sizeof (cvr_service_t));
    s->service_id = strdup ("orders-1");
    s->service_name = strdup ("orders");
    s->service_type = strdup ("transform");
    s->endpoint = strdup ("tcp://10.0.0.5:9000");
    s->group_id = group_id ? strdup (group_id) : NULL;
    s->health = CVR_HEALTH_DEGRADED;
    s->labels_count = 3;
    s->labels = (cvr_label_t *) zmalloc (3 * sizeof (cvr_label_t));
    //  Deliberately unsorted.
    s->labels [0] = (cvr_label_t) { strdup ("zone"), strdup ("eu-1") };
    s->labels [1] = (cvr_label_t) { strdup ("az"), strdup ("") };
    s->labels [2] = (cvr_label_t) { strdup ("tier"), strdup ("gold") };
    s->weight = 250;
    s->registered_at = 1700000000000ll;
    s->last_heartbeat_at = 1700000012345ll;
    s->lease_ms = 30000;
    s->revision = 7;
    return s;
}

static void
test_service_roundtrip (void **state)
{
    for (int with_group = 0; with_group < 2; with_group++) {
        cvr_service_t *s = s_service (with_group ? "g1" : NULL);
        cvr_wr_t *w = cvr_wr_new ();
        cvr_proto_write_service (w, s);
        cvr_msg_t *msg = s_decode_wr (w);
        const msgpack_object *root = cvr_msg_root (msg);
        //  The wire shape of protocol section 3.
        assert_true (cvr_obj_is_str_map (root));
        assert_int_equal (root->via.map.size, 12);
        assert_true (cvr_obj_streq (cvr_obj_get (root, "health"), "degraded"));
        assert_true (cvr_obj_streq (cvr_obj_get (root, "service_type"), "transform"));
        const msgpack_object *labels = cvr_obj_get (root, "labels");
        assert_true (cvr_obj_is_str_map (labels));
        assert_int_equal (labels->via.map.size, 3);
        if (with_group)
            assert_true (cvr_obj_streq (cvr_obj_get (root, "group_id"), "g1"));
        else {
            //  Present, as nil.
            bool found = false;
            for (uint32_t i = 0; i < root->via.map.size; i++)
                if (cvr_obj_streq (&root->via.map.ptr [i].key, "group_id")) {
                    found = true;
                    assert_int_equal (root->via.map.ptr [i].val.type, MSGPACK_OBJECT_NIL);
                }
            assert_true (found);
        }

        cvr_service_t *r = cvr_proto_read_service (root);
        assert_non_null (r);
        assert_string_equal (r->service_id, "orders-1");
        assert_string_equal (r->service_name, "orders");
        assert_string_equal (r->service_type, "transform");
        assert_string_equal (r->endpoint, "tcp://10.0.0.5:9000");
        if (with_group)
            assert_string_equal (r->group_id, "g1");
        else
            assert_null (r->group_id);
        assert_int_equal (r->health, CVR_HEALTH_DEGRADED);
        assert_int_equal (r->weight, 250);
        assert_true (r->registered_at == 1700000000000ll);
        assert_true (r->last_heartbeat_at == 1700000012345ll);
        assert_int_equal (r->lease_ms, 30000);
        assert_int_equal (r->revision, 7);
        assert_int_equal (r->labels_count, 3);
        //  Sorted by key.
        assert_string_equal (r->labels [0].key, "az");
        assert_string_equal (r->labels [0].value, "");
        assert_string_equal (r->labels [1].key, "tier");
        assert_string_equal (r->labels [1].value, "gold");
        assert_string_equal (r->labels [2].key, "zone");
        assert_string_equal (r->labels [2].value, "eu-1");
        assert_string_equal (cvr_service_label (r, "zone"), "eu-1");

        //  Writing the read record gives the same record back again.
        cvr_wr_t *w2 = cvr_wr_new ();
        cvr_proto_write_service (w2, r);
        cvr_msg_t *msg2 = s_decode_wr (w2);
        cvr_service_t *r2 = cvr_proto_read_service (cvr_msg_root (msg2));
        assert_non_null (r2);
        assert_string_equal (r2->labels [0].key, "az");
        assert_int_equal (r2->revision, 7);
        cvr_service_destroy (&r2);
        cvr_msg_destroy (&msg2);
        cvr_wr_destroy (&w2);

        cvr_service_destroy (&r);
        assert_null (r);
        cvr_msg_destroy (&msg);
        cvr_wr_destroy (&w);
        cvr_service_destroy (&s);
    }
}

static void
test_service_no_labels_defaults (void **state)
{
    //  A minimal record: labels absent, weight absent (defaults to 100).
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "service_id", "a");
    cvr_wr_kstr (w, "service_name", "b");
    cvr_wr_kstr (w, "service_type", "sink");
    cvr_wr_kstr (w, "endpoint", "inproc://x");
    cvr_wr_kstr (w, "health", "unknown");
    cvr_wr_kstr (w, "extra", "ignored");
    cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    cvr_service_t *r = cvr_proto_read_service (cvr_msg_root (msg));
    assert_non_null (r);
    assert_int_equal (r->labels_count, 0);
    assert_int_equal (r->weight, 100);
    assert_int_equal (r->health, CVR_HEALTH_UNKNOWN);
    assert_null (r->group_id);
    cvr_service_destroy (&r);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

//  Builds a record with one field dropped or spoiled, and checks that
//  cvr_proto_read_service refuses it.
typedef enum { S_DROP, S_NIL, S_INT, S_NUL } s_spoil_t;

static void
s_expect_rejected (const char *field, s_spoil_t spoil)
{
    static const char *fields [][2] = {
        { "service_id", "id1" }, { "service_name", "nm" },
        { "service_type", "source" }, { "endpoint", "tcp://h:1" },
        { "health", "healthy" }
    };
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    for (size_t i = 0; i < 5; i++) {
        if (streq (fields [i][0], field)) {
            if (spoil == S_DROP)
                continue;
            cvr_wr_str (w, field);
            if (spoil == S_NIL)
                cvr_wr_nil (w);
            else
            if (spoil == S_INT)
                cvr_wr_int (w, 1);
            else
                cvr_wr_strn (w, "x\0y", 3);
        }
        else
            cvr_wr_kstr (w, fields [i][0], fields [i][1]);
    }
    cvr_wr_str (w, "labels");
    cvr_wr_map (w);
    cvr_wr_kstr (w, "k", "v");
    cvr_wr_close (w);
    cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    cvr_service_t *r = cvr_proto_read_service (cvr_msg_root (msg));
    if (r)
        fail_msg ("record accepted with %s spoiled (%d)", field, (int) spoil);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
}

static void
test_service_rejects (void **state)
{
    const char *required [] = {
        "service_id", "service_name", "service_type", "endpoint", "health"
    };
    for (size_t i = 0; i < 5; i++)
        for (int spoil = S_DROP; spoil <= S_NUL; spoil++)
            s_expect_rejected (required [i], (s_spoil_t) spoil);

    //  The untouched control record is accepted (so the above can fail).
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "service_id", "id1");
    cvr_wr_kstr (w, "service_name", "nm");
    cvr_wr_kstr (w, "service_type", "source");
    cvr_wr_kstr (w, "endpoint", "tcp://h:1");
    cvr_wr_kstr (w, "health", "healthy");
    cvr_wr_close (w);
    cvr_msg_t *msg = s_decode_wr (w);
    cvr_service_t *r = cvr_proto_read_service (cvr_msg_root (msg));
    assert_non_null (r);
    cvr_service_destroy (&r);
    cvr_msg_destroy (&msg);

    //  Unknown health name; a label value that is not a string; a label
    //  value with a NUL; a non-string key; not a map at all.
    for (int variant = 0; variant < 5; variant++) {
        cvr_wr_reset (w);
        if (variant == 4) {
            cvr_wr_array (w);
            cvr_wr_str (w, "service_id");
            cvr_wr_close (w);
        }
        else {
            cvr_wr_map (w);
            cvr_wr_kstr (w, "service_id", "id1");
            cvr_wr_kstr (w, "service_name", "nm");
            cvr_wr_kstr (w, "service_type", "source");
            cvr_wr_kstr (w, "endpoint", "tcp://h:1");
            cvr_wr_kstr (w, "health", variant == 0 ? "sick" : "healthy");
            cvr_wr_str (w, "labels");
            cvr_wr_map (w);
            cvr_wr_str (w, "k");
            if (variant == 1)
                cvr_wr_int (w, 5);
            else
            if (variant == 2)
                cvr_wr_strn (w, "a\0", 2);
            else
                cvr_wr_str (w, "v");
            cvr_wr_close (w);
            if (variant == 3) {
                cvr_wr_int (w, 1);
                cvr_wr_int (w, 2);
            }
            cvr_wr_close (w);
        }
        msg = s_decode_wr (w);
        r = cvr_proto_read_service (cvr_msg_root (msg));
        if (r)
            fail_msg ("record accepted in variant %d", variant);
        cvr_msg_destroy (&msg);
    }
    assert_null (cvr_proto_read_service (NULL));
    cvr_wr_destroy (&w);
}

//  The prefetch hint finds service_id in what clients send (fixstr and
//  str8 values, any position) and gives up on anything cut short.
static void
test_service_id_hint (void **state)
{
    const char *long_id = "a-service-id-that-is-longer-than-thirty-one-bytes";
    const char *ids [] = { "svc-1", long_id };
    for (int i = 0; i < 2; i++) {
        cvr_wr_t *w = cvr_wr_new ();
        cvr_wr_map (w);
        cvr_wr_kstr (w, "op", "heartbeat");
        cvr_wr_kint (w, "rid", 42);
        cvr_wr_kstr (w, "service_id", ids [i]);
        cvr_wr_kstr (w, "health", "healthy");
        cvr_wr_close (w);
        size_t len = 0;
        const char *id = cvr_proto_service_id_hint (cvr_wr_data (w), cvr_wr_size (w), &len);
        assert_non_null (id);
        assert_int_equal (len, strlen (ids [i]));
        assert_memory_equal (id, ids [i], len);
        //  Every truncation either misses or still points inside the body.
        for (size_t cut = 0; cut < cvr_wr_size (w); cut++) {
            id = cvr_proto_service_id_hint (cvr_wr_data (w), cut, &len);
            if (id)
                assert_true (id + len <= (const char *) cvr_wr_data (w) + cut);
            else
                assert_true (cut < cvr_wr_size (w) - strlen ("health") - 9);
        }
        cvr_wr_destroy (&w);
    }
    //  No such key, or a value that is not a string.
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kstr (w, "op", "stats");
    cvr_wr_kint (w, "service_id", 7);
    cvr_wr_close (w);
    size_t len;
    assert_null (cvr_proto_service_id_hint (cvr_wr_data (w), cvr_wr_size (w), &len));
    assert_null (cvr_proto_service_id_hint ("", 0, &len));
    cvr_wr_destroy (&w);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_roundtrip_scalars),
        cmocka_unit_test (test_writer_bytes_match_msgpack_c),
        cmocka_unit_test (test_service_id_hint),
        cmocka_unit_test (test_roundtrip_nested),
        cmocka_unit_test (test_writer_max_depth),
        cmocka_unit_test (test_wr_obj_echo),
        cmocka_unit_test (test_wr_obj_empty_values),
        cmocka_unit_test (test_wr_raw),
        cmocka_unit_test (test_wr_reset),
        cmocka_unit_test (test_decode_canonical),
        cmocka_unit_test (test_decode_canonical_big),
        cmocka_unit_test (test_reject_empty),
        cmocka_unit_test (test_reject_every_prefix),
        cmocka_unit_test (test_reject_trailing),
        cmocka_unit_test (test_reject_c1),
        cmocka_unit_test (test_reject_huge_counts),
        cmocka_unit_test (test_reject_depth),
        cmocka_unit_test (test_reject_depth_empty_innermost),
        cmocka_unit_test (test_reject_short_payloads),
        cmocka_unit_test (test_decoded_outlives_input),
        cmocka_unit_test (test_random_input),
        cmocka_unit_test (test_obj_get),
        cmocka_unit_test (test_obj_is_str_map),
        cmocka_unit_test (test_obj_strings),
        cmocka_unit_test (test_obj_int_ranges),
        cmocka_unit_test (test_service_roundtrip),
        cmocka_unit_test (test_service_no_labels_defaults),
        cmocka_unit_test (test_service_rejects),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
