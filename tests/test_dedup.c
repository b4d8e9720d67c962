/*  test_dedup.c: the bounded table of write replies (cvr_dedup). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_dedup.h"

static char *
s_key (const char *client, int64_t rid)
{
    msgpack_object o = { .type = rid >= 0 ? MSGPACK_OBJECT_POSITIVE_INTEGER
                                          : MSGPACK_OBJECT_NEGATIVE_INTEGER };
    if (rid >= 0)
        o.via.u64 = (uint64_t) rid;
    else
        o.via.i64 = rid;
    return cvr_dedup_key (client, &o);
}

static void
test_put_get_evict (void **state)
{
    cvr_dedup_t *dedup = cvr_dedup_new (3);
    char *a = s_key ("client-a", 1), *b = s_key ("client-b", 1), *c = s_key ("client-a", 2);
    char *d = s_key ("client-a", -2);
    //  Keys tell client and rid apart.
    assert_string_not_equal (a, b);
    assert_string_not_equal (a, c);
    assert_string_not_equal (c, d);
    cvr_dedup_put (dedup, a, "one", 3);
    cvr_dedup_put (dedup, b, "two", 3);
    cvr_dedup_put (dedup, c, "three", 5);
    size_t size = 0;
    const uint8_t *reply = cvr_dedup_get (dedup, b, &size);
    assert_non_null (reply);
    assert_int_equal (size, 3);
    assert_memory_equal (reply, "two", 3);
    //  A fourth evicts the oldest (a), the others stay.
    cvr_dedup_put (dedup, d, "four", 4);
    assert_int_equal (cvr_dedup_size (dedup), 3);
    assert_null (cvr_dedup_get (dedup, a, &size));
    assert_non_null (cvr_dedup_get (dedup, c, &size));
    //  Replacing keeps one entry.
    cvr_dedup_put (dedup, d, "FOUR!", 5);
    assert_int_equal (cvr_dedup_size (dedup), 3);
    reply = cvr_dedup_get (dedup, d, &size);
    assert_int_equal (size, 5);
    assert_memory_equal (reply, "FOUR!", 5);

    //  Written and read back: same entries in the same order (the next
    //  eviction takes the same one).
    cvr_wr_t *w = cvr_wr_new ();
    cvr_dedup_write (dedup, w);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_non_null (msg);
    cvr_dedup_t *copy = cvr_dedup_new (3);
    cvr_dedup_put (copy, "stale", "x", 1);
    assert_int_equal (cvr_dedup_read (copy, cvr_msg_root (msg)), 0);
    assert_null (cvr_dedup_get (copy, "stale", &size));
    assert_int_equal (cvr_dedup_size (copy), 3);
    reply = cvr_dedup_get (copy, c, &size);
    assert_int_equal (size, 5);
    assert_memory_equal (reply, "three", 5);
    cvr_dedup_put (copy, a, "again", 5);
    assert_null (cvr_dedup_get (copy, b, &size));      //  b was the oldest
    //  Malformed: nothing changes.
    uint8_t bad [] = { 0x91, 0x92, 0xa1, 'k', 0x01 };  //  [["k", 1]]: not bin
    cvr_msg_t *bad_msg = cvr_msg_decode (bad, sizeof bad);
    assert_int_equal (cvr_dedup_read (copy, cvr_msg_root (bad_msg)), -1);
    assert_int_equal (cvr_dedup_size (copy), 3);
    cvr_msg_destroy (&bad_msg);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
    cvr_dedup_destroy (&copy);
    cvr_dedup_destroy (&dedup);
    free (a);
    free (b);
    free (c);
    free (d);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_put_get_evict),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
