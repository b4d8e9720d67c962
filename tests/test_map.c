/*  test_map.c: cvr_map against zhashx as the reference, through random
    puts, replacements and removals (removal's backward shift is where an
    open-addressing map goes wrong), across growth; half the puts and gets
    through the calls that take the key's hash. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_map.h"

#define S_KEYS 5000

typedef struct {
    char key [32];
    int id;
} item_t;

static void
s_check_same (cvr_map_t *map, zhashx_t *reference, item_t *items)
{
    assert_int_equal (cvr_map_size (map), zhashx_size (reference));
    for (int i = 0; i < S_KEYS; i++)
        assert_ptr_equal (cvr_map_get (map, items [i].key),
                          zhashx_lookup (reference, items [i].key));
    //  Iteration visits every value once.
    size_t cursor = 0, seen = 0;
    item_t *item;
    while ((item = (item_t *) cvr_map_next (map, &cursor))) {
        assert_ptr_equal (zhashx_lookup (reference, item->key), item);
        seen++;
    }
    assert_int_equal (seen, zhashx_size (reference));
}

static void
test_random_against_zhashx (void **state)
{
    item_t *items = (item_t *) calloc (S_KEYS, sizeof (item_t));
    item_t *again = (item_t *) calloc (S_KEYS, sizeof (item_t));
    for (int i = 0; i < S_KEYS; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        snprintf (again [i].key, sizeof (again [i].key), "svc-%d", i);
        items [i].id = again [i].id = i;
    }
    cvr_map_t *map = cvr_map_new ();
    zhashx_t *reference = zhashx_new ();
    uint32_t rng = 12345;
    for (int round = 0; round < 200000; round++) {
        rng = rng * 1664525u + 1013904223u;
        int i = (int) ((rng >> 8) % S_KEYS);
        int action = (int) ((rng >> 4) % 3);
        if (action == 0) {
            //  Put: either copy of the item, so replacements happen too.
            item_t *item = (rng & 1) ? &items [i] : &again [i];
            void *old = (rng >> 20) & 1
                      ? cvr_map_put_hashed (map, item->key, cvr_map_hash (item->key), item)
                      : cvr_map_put (map, item->key, item);
            assert_ptr_equal (old, zhashx_lookup (reference, item->key));
            zhashx_update (reference, item->key, item);
        }
        else
        if (action == 1) {
            void *removed = cvr_map_remove (map, items [i].key);
            assert_ptr_equal (removed, zhashx_lookup (reference, items [i].key));
            zhashx_delete (reference, items [i].key);
        }
        else
            assert_ptr_equal ((rng >> 20) & 1
                              ? cvr_map_get_hashed (map, items [i].key,
                                                    cvr_map_hash (items [i].key))
                              : cvr_map_get (map, items [i].key),
                              zhashx_lookup (reference, items [i].key));
        if (round % 20000 == 0)
            s_check_same (map, reference, items);
    }
    s_check_same (map, reference, items);
    //  Empty it completely, then fill it again.
    for (int i = 0; i < S_KEYS; i++) {
        cvr_map_remove (map, items [i].key);
        zhashx_delete (reference, items [i].key);
    }
    s_check_same (map, reference, items);
    assert_int_equal (cvr_map_size (map), 0);
    for (int i = 0; i < S_KEYS; i++) {
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
        zhashx_insert (reference, items [i].key, &items [i]);
    }
    s_check_same (map, reference, items);
    assert_null (cvr_map_get (map, "absent"));
    assert_null (cvr_map_remove (map, "absent"));
    zhashx_destroy (&reference);
    cvr_map_destroy (&map);
    cvr_map_destroy (&map);         //  a second destroy is a no-op
    free (items);
    free (again);
}

//  A map big enough for huge-page slot arrays (2 MB and up: 131,072
//  slots), the cursor's keys, and prefetch hints that change nothing
//  (and tell a key surely absent).
static void
test_large_cursor_prefetch (void **state)
{
    const int count = 200000;
    item_t *items = (item_t *) calloc ((size_t) count, sizeof (item_t));
    cvr_map_t *map = cvr_map_new ();
    for (int i = 0; i < count; i++) {
        snprintf (items [i].key, sizeof (items [i].key), "svc-%d", i);
        items [i].id = i;
        assert_null (cvr_map_put (map, items [i].key, &items [i]));
    }
    assert_int_equal (cvr_map_size (map), count);
    for (int i = 0; i < count; i++) {
        cvr_map_prefetch_slot (map, items [i].key, strlen (items [i].key));
        assert_true (cvr_map_prefetch_value (map, items [i].key, strlen (items [i].key)));
    }
    //  An absent key is reported so (its 64-bit hash is in no slot).
    cvr_map_prefetch_slot (map, "absent", 6);
    assert_false (cvr_map_prefetch_value (map, "absent", 6));
    assert_false (cvr_map_prefetch_value (map, "svc-1", 3));    //  a prefix: "svc"
    //  Iteration visits each value once.
    size_t cursor = 0, seen = 0;
    item_t *item;
    while ((item = (item_t *) cvr_map_next (map, &cursor))) {
        assert_ptr_equal (cvr_map_get (map, item->key), item);
        seen++;
    }
    assert_int_equal (seen, count);
    for (int i = 0; i < count; i += 2)
        assert_ptr_equal (cvr_map_remove (map, items [i].key), &items [i]);
    for (int i = 0; i < count; i++)
        assert_ptr_equal (cvr_map_get (map, items [i].key), i % 2 ? &items [i] : NULL);
    cvr_map_destroy (&map);
    free (items);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_random_against_zhashx),
        cmocka_unit_test (test_large_cursor_prefetch),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
