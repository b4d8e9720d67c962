/*  test_history.c: cvr_history numbering (seq, per-root prev), the ring,
    and events_since (prefix, limit, more, compaction, edge values).
*/
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <inttypes.h>
#include <cmocka.h>
#include "cvr_history.h"

//  Appends one event with a couple of fields of its own; returns its seq
//  and checks the body the writer holds afterwards.
static uint64_t
s_append (cvr_history_t *history, cvr_wr_t *w, const char *topic, const char *root,
          int64_t marker)
{
    cvr_wr_reset (w);
    cvr_wr_map (w);
    cvr_wr_kstr (w, "type", "test");
    cvr_wr_kint (w, "marker", marker);
    uint64_t seq = cvr_history_append (history, topic, root, w);
    assert_int_equal (cvr_wr_depth (w), 0);      //  the map was closed
    return seq;
}

static uint64_t
s_get_uint (const msgpack_object *map, const char *key)
{
    uint64_t value = 0;
    assert_int_equal (cvr_obj_uint (cvr_obj_get (map, key), &value), 0);
    return value;
}

//  The decoded events_since reply; *events is its events array.
typedef struct {
    cvr_msg_t *msg;
    const msgpack_object *events;
    bool more;
    uint64_t seq;
} s_reply_t;

static cvr_err_t
s_since (cvr_history_t *history, uint64_t since, const char *prefix, size_t limit,
         s_reply_t *reply)
{
    cvr_wr_t *w = cvr_wr_new ();
    cvr_wr_map (w);
    cvr_wr_kbool (w, "ok", true);
    cvr_err_t rc = cvr_history_since (history, since, prefix, limit, w);
    if (rc != CVR_OK) {
        //  Nothing written: the map holds only "ok".
        cvr_wr_close (w);
        cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
        assert_non_null (msg);
        assert_int_equal (cvr_msg_root (msg)->via.map.size, 1);
        cvr_msg_destroy (&msg);
        cvr_wr_destroy (&w);
        memset (reply, 0, sizeof *reply);
        return rc;
    }
    assert_int_equal (cvr_wr_depth (w), 1);      //  only our map left open
    cvr_wr_close (w);
    reply->msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_non_null (reply->msg);
    const msgpack_object *root = cvr_msg_root (reply->msg);
    assert_true (cvr_obj_is_str_map (root));
    assert_int_equal (root->via.map.size, 4);
    reply->events = cvr_obj_get (root, "events");
    assert_non_null (reply->events);
    assert_int_equal (reply->events->type, MSGPACK_OBJECT_ARRAY);
    const msgpack_object *more = cvr_obj_get (root, "more");
    assert_non_null (more);
    assert_int_equal (more->type, MSGPACK_OBJECT_BOOLEAN);
    reply->more = more->via.boolean;
    reply->seq = s_get_uint (root, "seq");
    cvr_wr_destroy (&w);
    return rc;
}

//  The seq in the body of the index'th event, after checking its shape.
static uint64_t
s_event_seq (const s_reply_t *reply, size_t index, const char **topic_p)
{
    const msgpack_object *pair = &reply->events->via.array.ptr [index];
    assert_int_equal (pair->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal (pair->via.array.size, 2);
    assert_int_equal (pair->via.array.ptr [0].type, MSGPACK_OBJECT_STR);
    const msgpack_object *body = &pair->via.array.ptr [1];
    assert_true (cvr_obj_is_str_map (body));
    if (topic_p) {
        static char topic [256];
        char *copy = cvr_obj_strdup (&pair->via.array.ptr [0]);
        assert_non_null (copy);
        snprintf (topic, sizeof topic, "%s", copy);
        free (copy);
        *topic_p = topic;
    }
    return s_get_uint (body, "seq");
}

static void
s_reply_free (s_reply_t *reply)
{
    cvr_msg_destroy (&reply->msg);
}

static void
test_seq_and_prev (void **state)
{
    cvr_history_t *history = cvr_history_new (100);
    cvr_wr_t *w = cvr_wr_new ();
    assert_int_equal (cvr_history_seq (history), 0);

    //  Roots interleaved: A A B A C B
    struct { const char *topic, *root; uint64_t prev; } steps [] = {
        { "service/a/registered", "service/a", 0 },
        { "service/a/health", "service/a", 1 },
        { "group/b/membership", "group/b", 0 },
        { "service/a/updated", "service/a", 2 },
        { "topic/c/changed", "topic/c", 0 },
        { "group/b/assignment", "group/b", 3 },
        { "service/ab/registered", "service/ab", 0 },    //  not service/a
        { "service/a/deregistered", "service/a", 4 },
    };
    for (size_t i = 0; i < sizeof steps / sizeof steps [0]; i++) {
        uint64_t seq = s_append (history, w, steps [i].topic, steps [i].root,
                                 (int64_t) i * 11);
        assert_int_equal (seq, i + 1);
        assert_int_equal (cvr_history_seq (history), i + 1);
        //  The writer holds the final body: original fields, seq, prev.
        cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
        assert_non_null (msg);
        const msgpack_object *body = cvr_msg_root (msg);
        assert_true (cvr_obj_is_str_map (body));
        assert_int_equal (body->via.map.size, 4);
        assert_true (cvr_obj_streq (cvr_obj_get (body, "type"), "test"));
        assert_int_equal (cvr_obj_get_int (body, "marker", -1), (int64_t) i * 11);
        assert_int_equal (s_get_uint (body, "seq"), i + 1);
        if (s_get_uint (body, "prev") != steps [i].prev)
            fail_msg ("step %zu: prev %" PRIu64 ", expected %" PRIu64, i,
                      s_get_uint (body, "prev"), steps [i].prev);
        cvr_msg_destroy (&msg);
    }
    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
    assert_null (history);
    cvr_history_destroy (&history);     //  NULL-safe
}

static bool
s_contains (const uint8_t *hay, size_t hay_size, const uint8_t *needle, size_t size)
{
    for (size_t i = 0; i + size <= hay_size; i++)
        if (memcmp (hay + i, needle, size) == 0)
            return true;
    return false;
}

//  The stored copy is the final body, byte for byte: events_since splices
//  exactly the bytes that were sent, even after the writer is reused.
static void
test_stored_body (void **state)
{
    cvr_history_t *history = cvr_history_new (10);
    cvr_wr_t *w = cvr_wr_new ();
    s_append (history, w, "service/x/registered", "service/x", 42);
    size_t size = cvr_wr_size (w);
    uint8_t *sent = (uint8_t *) malloc (size);
    assert_non_null (sent);
    memcpy (sent, cvr_wr_data (w), size);
    cvr_wr_reset (w);                   //  the history must not borrow it
    cvr_wr_map (w);
    cvr_wr_kstr (w, "junk", "overwrites the writer's bytes");
    cvr_wr_close (w);

    cvr_wr_t *reply = cvr_wr_new ();
    cvr_wr_map (reply);
    assert_int_equal (cvr_history_since (history, 0, NULL, 10, reply), CVR_OK);
    cvr_wr_close (reply);
    assert_true (s_contains (cvr_wr_data (reply), cvr_wr_size (reply), sent, size));
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (reply), cvr_wr_size (reply));
    assert_non_null (msg);
    const msgpack_object *events = cvr_obj_get (cvr_msg_root (msg), "events");
    assert_int_equal (events->via.array.size, 1);
    const msgpack_object *pair = events->via.array.ptr;
    assert_true (cvr_obj_streq (&pair->via.array.ptr [0], "service/x/registered"));
    cvr_msg_t *orig = cvr_msg_decode (sent, size);
    assert_non_null (orig);
    assert_true (msgpack_object_equal (*cvr_msg_root (orig), pair->via.array.ptr [1]));
    cvr_msg_destroy (&orig);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&reply);
    free (sent);
    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
}

static void
test_since_all_prefix_limit (void **state)
{
    cvr_history_t *history = cvr_history_new (1000);
    cvr_wr_t *w = cvr_wr_new ();
    //  seq 1..30: every third a group event, the rest services.
    for (int i = 1; i <= 30; i++) {
        if (i % 3 == 0)
            s_append (history, w, "group/g1/membership", "group/g1", i);
        else
            s_append (history, w, i % 2 ? "service/a/health" : "service/ab/health",
                      i % 2 ? "service/a" : "service/ab", i);
    }
    s_reply_t r;
    //  since = 0: everything, in order.
    assert_int_equal (s_since (history, 0, NULL, 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 30);
    for (size_t i = 0; i < 30; i++)
        assert_int_equal (s_event_seq (&r, i, NULL), i + 1);
    assert_false (r.more);
    assert_int_equal (r.seq, 30);
    s_reply_free (&r);

    //  An empty prefix is no filter.
    assert_int_equal (s_since (history, 0, "", 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 30);
    s_reply_free (&r);

    //  since = 10, no prefix: 11..30.
    assert_int_equal (s_since (history, 10, NULL, 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 20);
    assert_int_equal (s_event_seq (&r, 0, NULL), 11);
    assert_int_equal (s_event_seq (&r, 19, NULL), 30);
    s_reply_free (&r);

    //  Prefix "group/": 3, 6, ..., 30.
    assert_int_equal (s_since (history, 0, "group/", 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 10);
    for (size_t i = 0; i < 10; i++) {
        const char *topic;
        assert_int_equal (s_event_seq (&r, i, &topic), 3 * (i + 1));
        assert_string_equal (topic, "group/g1/membership");
    }
    assert_false (r.more);
    s_reply_free (&r);

    //  Prefix "service/a/" excludes service/ab; "service/a" includes both.
    assert_int_equal (s_since (history, 0, "service/a/", 1000, &r), CVR_OK);
    size_t only_a = r.events->via.array.size;
    for (size_t i = 0; i < only_a; i++) {
        const char *topic;
        uint64_t seq = s_event_seq (&r, i, &topic);
        assert_string_equal (topic, "service/a/health");
        assert_true (seq % 2 == 1 && seq % 3 != 0);
    }
    assert_int_equal (only_a, 10);      //  odd, not multiple of 3, <= 30
    s_reply_free (&r);
    assert_int_equal (s_since (history, 0, "service/a", 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 20);
    s_reply_free (&r);
    assert_int_equal (s_since (history, 0, "nothing/", 1000, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 0);
    assert_false (r.more);
    assert_int_equal (r.seq, 30);
    s_reply_free (&r);

    //  Limit: exactly fitting is not "more"; one short is.
    assert_int_equal (s_since (history, 20, NULL, 10, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 10);
    assert_false (r.more);
    s_reply_free (&r);
    assert_int_equal (s_since (history, 20, NULL, 9, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 9);
    assert_true (r.more);
    assert_int_equal (s_event_seq (&r, 8, NULL), 29);
    s_reply_free (&r);
    assert_int_equal (s_since (history, 0, NULL, 1, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 1);
    assert_int_equal (s_event_seq (&r, 0, NULL), 1);
    assert_true (r.more);
    s_reply_free (&r);
    //  Limit with prefix counts matching events only; "more" means another
    //  *matching* event exists.
    assert_int_equal (s_since (history, 0, "group/", 9, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 9);
    assert_int_equal (s_event_seq (&r, 8, NULL), 27);
    assert_true (r.more);
    s_reply_free (&r);
    assert_int_equal (s_since (history, 27, "group/", 1, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 1);
    assert_int_equal (s_event_seq (&r, 0, NULL), 30);
    assert_false (r.more);
    s_reply_free (&r);
    //  Paging with the last seq seen walks everything exactly once.
    uint64_t since = 0, expect = 1;
    int pages = 0;
    while (true) {
        assert_int_equal (s_since (history, since, NULL, 7, &r), CVR_OK);
        for (size_t i = 0; i < r.events->via.array.size; i++)
            assert_int_equal (s_event_seq (&r, i, NULL), expect++);
        bool more = r.more;
        if (r.events->via.array.size)
            since = s_event_seq (&r, r.events->via.array.size - 1, NULL);
        s_reply_free (&r);
        pages++;
        if (!more)
            break;
        assert_true (pages < 10);
    }
    assert_int_equal (expect, 31);
    assert_int_equal (pages, 5);        //  7+7+7+7+2

    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
}

static void
test_since_at_or_past_latest (void **state)
{
    cvr_history_t *history = cvr_history_new (4);
    cvr_wr_t *w = cvr_wr_new ();
    for (int i = 0; i < 10; i++)
        s_append (history, w, "topic/t/changed", "topic/t", i);
    const uint64_t sinces [] = { 10, 11, 1000, UINT64_MAX - 1, UINT64_MAX };
    for (size_t i = 0; i < sizeof sinces / sizeof sinces [0]; i++) {
        s_reply_t r;
        assert_int_equal (s_since (history, sinces [i], NULL, 1000, &r), CVR_OK);
        assert_int_equal (r.events->via.array.size, 0);
        assert_false (r.more);
        assert_int_equal (r.seq, 10);
        s_reply_free (&r);
        assert_int_equal (s_since (history, sinces [i], "topic/", 1, &r), CVR_OK);
        assert_int_equal (r.events->via.array.size, 0);
        assert_false (r.more);
        s_reply_free (&r);
    }
    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
}

static void
test_ring_overflow (void **state)
{
    cvr_history_t *history = cvr_history_new (5);
    cvr_wr_t *w = cvr_wr_new ();
    for (int i = 1; i <= 12; i++) {
        assert_int_equal (s_append (history, w, i % 2 ? "service/x/health" : "group/g/membership",
                                    i % 2 ? "service/x" : "group/g", i), (uint64_t) i);
        uint64_t expect_oldest = i <= 5 ? 1 : (uint64_t) i - 4;
        assert_int_equal (cvr_history_oldest (history), expect_oldest);
    }
    assert_int_equal (cvr_history_seq (history), 12);
    assert_int_equal (cvr_history_oldest (history), 8);

    s_reply_t r;
    //  since = 7: everything after it is still here.
    assert_int_equal (s_since (history, 7, NULL, 100, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 5);
    for (size_t i = 0; i < 5; i++) {
        const char *topic;
        uint64_t seq = s_event_seq (&r, i, &topic);
        assert_int_equal (seq, 8 + i);
        //  The ring slot holds the right event (topic matches the seq).
        assert_string_equal (topic, seq % 2 ? "service/x/health" : "group/g/membership");
        const msgpack_object *body = &r.events->via.array.ptr [i].via.array.ptr [1];
        assert_int_equal (cvr_obj_get_int (body, "marker", -1), (int64_t) seq);
        //  prev survives compaction of the events it names.
        assert_int_equal (s_get_uint (body, "prev"), seq - 2);
    }
    assert_false (r.more);
    s_reply_free (&r);
    assert_int_equal (s_since (history, 11, NULL, 100, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 1);
    s_reply_free (&r);

    //  since = 6 or 0: seq 7 is gone, whatever the prefix or limit.
    assert_int_equal (s_since (history, 6, NULL, 100, &r), CVR_COMPACTED);
    assert_int_equal (s_since (history, 0, NULL, 100, &r), CVR_COMPACTED);
    assert_int_equal (s_since (history, 6, "group/", 1, &r), CVR_COMPACTED);
    assert_int_equal (s_since (history, 0, "nothing/", 100, &r), CVR_COMPACTED);
    //  At or past the latest there is nothing to miss.
    assert_int_equal (s_since (history, 12, NULL, 100, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 0);
    s_reply_free (&r);

    //  Wrap several times more; the window keeps sliding.
    for (int i = 13; i <= 103; i++)
        s_append (history, w, "topic/t/changed", "topic/t", i);
    assert_int_equal (cvr_history_oldest (history), 99);
    assert_int_equal (s_since (history, 97, NULL, 100, &r), CVR_COMPACTED);
    assert_int_equal (s_since (history, 98, NULL, 100, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 5);
    assert_int_equal (s_event_seq (&r, 0, NULL), 99);
    assert_int_equal (s_event_seq (&r, 4, NULL), 103);
    s_reply_free (&r);

    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
}

//  A ring of one keeps only the latest.
static void
test_capacity_one (void **state)
{
    cvr_history_t *history = cvr_history_new (1);
    cvr_wr_t *w = cvr_wr_new ();
    for (int i = 1; i <= 3; i++)
        s_append (history, w, "topic/t/changed", "topic/t", i);
    assert_int_equal (cvr_history_oldest (history), 3);
    s_reply_t r;
    assert_int_equal (s_since (history, 1, NULL, 10, &r), CVR_COMPACTED);
    assert_int_equal (s_since (history, 2, NULL, 10, &r), CVR_OK);
    assert_int_equal (r.events->via.array.size, 1);
    assert_int_equal (s_event_seq (&r, 0, NULL), 3);
    s_reply_free (&r);
    cvr_wr_destroy (&w);
    cvr_history_destroy (&history);
}

static void
test_empty_history (void **state)
{
    cvr_history_t *history = cvr_history_new (5);
    assert_int_equal (cvr_history_seq (history), 0);
    assert_int_equal (cvr_history_oldest (history), 1);
    assert_int_equal (cvr_history_oldest (history), cvr_history_seq (history) + 1);
    const uint64_t sinces [] = { 0, 1, 5, UINT64_MAX };
    for (size_t i = 0; i < 4; i++) {
        s_reply_t r;
        assert_int_equal (s_since (history, sinces [i], NULL, 10, &r), CVR_OK);
        assert_int_equal (r.events->via.array.size, 0);
        assert_false (r.more);
        assert_int_equal (r.seq, 0);
        s_reply_free (&r);
    }
    cvr_history_destroy (&history);
}

//  The numbering survives a snapshot: a history restored from it numbers
//  the next events exactly as the original does (seq and each root's
//  prev), keeps no old events, and a malformed numbering changes nothing.
static void
test_numbering_round_trip (void **state)
{
    cvr_history_t *original = cvr_history_new (8);
    cvr_wr_t *w = cvr_wr_new ();
    s_append (original, w, "service/a/registered", "service/a", 1);
    s_append (original, w, "group/g/membership", "group/g", 2);
    s_append (original, w, "service/a/health", "service/a", 3);
    cvr_wr_t *numbering = cvr_wr_new ();
    cvr_history_write_numbering (original, numbering);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (numbering), cvr_wr_size (numbering));
    assert_non_null (msg);
    cvr_history_t *restored = cvr_history_new (8);
    s_append (restored, w, "topic/x/changed", "topic/x", 9);   //  forgotten
    assert_int_equal (cvr_history_read_numbering (restored, cvr_msg_root (msg)), 0);
    assert_int_equal (cvr_history_seq (restored), 3);
    assert_int_equal (cvr_history_oldest (restored), 4);
    s_reply_t r;
    assert_int_equal (s_since (restored, 0, "", 100, &r), CVR_COMPACTED);
    //  Re-writing gives the same bytes (canonical).
    cvr_wr_t *again = cvr_wr_new ();
    cvr_history_write_numbering (restored, again);
    assert_int_equal (cvr_wr_size (again), cvr_wr_size (numbering));
    assert_memory_equal (cvr_wr_data (again), cvr_wr_data (numbering), cvr_wr_size (again));
    //  The next events: same seq and prev on both.
    const char *roots [] = { "service/a", "group/g", "topic/new" };
    for (int i = 0; i < 3; i++) {
        char topic [64];
        snprintf (topic, sizeof topic, "%s/x", roots [i]);
        s_append (original, w, topic, roots [i], i);
        cvr_wr_t *other = cvr_wr_new ();
        s_append (restored, other, topic, roots [i], i);
        assert_int_equal (cvr_wr_size (other), cvr_wr_size (w));
        assert_memory_equal (cvr_wr_data (other), cvr_wr_data (w), cvr_wr_size (w));
        cvr_wr_destroy (&other);
    }
    //  Malformed: nothing changes.
    uint8_t bad [] = { 0x81, 0xa3, 's', 'e', 'q', 0xff };  //  {"seq": -1}
    cvr_msg_t *bad_msg = cvr_msg_decode (bad, sizeof bad);
    assert_int_equal (cvr_history_read_numbering (restored, cvr_msg_root (bad_msg)), -1);
    assert_int_equal (cvr_history_seq (restored), 6);
    cvr_msg_destroy (&bad_msg);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&again);
    cvr_wr_destroy (&numbering);
    cvr_wr_destroy (&w);
    cvr_history_destroy (&restored);
    cvr_history_destroy (&original);
}

//  Events numbered elsewhere: kept in order, repeats ignored, a gap refused.
static void
test_put_numbered (void **state)
{
    cvr_history_t *source = cvr_history_new (8);
    cvr_history_t *mirror = cvr_history_new (8);
    cvr_wr_t *w = cvr_wr_new ();
    for (int i = 0; i < 3; i++) {
        uint64_t seq = s_append (source, w, "service/a/health", "service/a", i);
        assert_int_equal (cvr_history_put (mirror, "service/a/health", "service/a", seq,
                                           cvr_wr_data (w), cvr_wr_size (w)), 0);
        //  The same event again: already counted.
        assert_int_equal (cvr_history_put (mirror, "service/a/health", "service/a", seq,
                                           cvr_wr_data (w), cvr_wr_size (w)), 0);
    }
    assert_int_equal (cvr_history_seq (mirror), 3);
    assert_int_equal (cvr_history_put (mirror, "x/y/z", "x/y", 5, "\x80", 1), -1);
    assert_int_equal (cvr_history_seq (mirror), 3);
    //  Both answer events_since alike.
    s_reply_t a, b;
    assert_int_equal (s_since (source, 0, "", 100, &a), CVR_OK);
    assert_int_equal (s_since (mirror, 0, "", 100, &b), CVR_OK);
    assert_int_equal (a.events->via.array.size, 3);
    assert_int_equal (b.events->via.array.size, 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal (s_event_seq (&a, i, NULL), s_event_seq (&b, i, NULL));
    s_reply_free (&a);
    s_reply_free (&b);
    //  An empty history starts where it is given (a node restored from a
    //  snapshot at seq 41), then insists on the next.
    cvr_history_t *late = cvr_history_new (8);
    assert_int_equal (cvr_history_put (late, "t/x/y", "t/x", 42, "\x80", 1), 0);
    assert_int_equal (cvr_history_seq (late), 42);
    assert_int_equal (cvr_history_put (late, "t/x/y", "t/x", 44, "\x80", 1), -1);
    assert_int_equal (cvr_history_put (late, "t/x/y", "t/x", 43, "\x80", 1), 0);
    cvr_history_destroy (&late);
    //  The next event numbered by the mirror itself follows on, prev too.
    uint64_t next = s_append (mirror, w, "service/a/x", "service/a", 9);
    assert_int_equal (next, 4);
    cvr_msg_t *msg = cvr_msg_decode (cvr_wr_data (w), cvr_wr_size (w));
    assert_int_equal (cvr_obj_get_int (cvr_msg_root (msg), "prev", -1), 3);
    cvr_msg_destroy (&msg);
    cvr_wr_destroy (&w);
    cvr_history_destroy (&mirror);
    cvr_history_destroy (&source);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_seq_and_prev),
        cmocka_unit_test (test_stored_body),
        cmocka_unit_test (test_since_all_prefix_limit),
        cmocka_unit_test (test_since_at_or_past_latest),
        cmocka_unit_test (test_ring_overflow),
        cmocka_unit_test (test_capacity_one),
        cmocka_unit_test (test_empty_history),
        cmocka_unit_test (test_numbering_round_trip),
        cmocka_unit_test (test_put_numbered),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
