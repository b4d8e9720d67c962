/*  test_links.c: cvr_links against a plain per-item record of which set it
    should be in, through random adds and removals (the first, a middle and
    the last item of a set's array; sets that grow and shrink), and the
    edge cases: removing what is in no set, an emptied set disappearing, a
    key coming back. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_links.h"

#define S_ITEMS     2000
#define S_KEYS      7

typedef struct {
    cvr_link_t link;
    int key;                    //  the set it should be in, -1 for none
} item_t;

static void
s_key (char *buffer, size_t size, int key)
{
    snprintf (buffer, size, "key-%d", key);
}

//  Every set holds exactly the items that say they are in it, once each,
//  each at the place its link gives, with the right count.
static void
s_check (cvr_links_t *links, item_t *items)
{
    for (int key = 0; key < S_KEYS; key++) {
        size_t expected = 0;
        for (int i = 0; i < S_ITEMS; i++)
            expected += items [i].key == key;
        char name [16];
        s_key (name, sizeof (name), key);
        size_t count = 99;
        void *const *set = cvr_links_items (links, name, &count);
        assert_int_equal (count, expected);
        assert_true ((set == NULL) == (expected == 0));
        for (size_t i = 0; i < count; i++) {
            item_t *item = (item_t *) set [i];
            assert_int_equal (item->key, key);
            assert_int_equal (item->link.pos, i);
            for (size_t j = 0; j < i; j++)
                assert_ptr_not_equal (set [j], item);
        }
    }
    for (int i = 0; i < S_ITEMS; i++)
        assert_true ((items [i].link.set == NULL) == (items [i].key < 0));
}

static void
test_random_adds_and_removals (void **unused)
{
    cvr_links_t *links = cvr_links_new ();
    item_t *items = (item_t *) calloc (S_ITEMS, sizeof (item_t));
    for (int i = 0; i < S_ITEMS; i++)
        items [i].key = -1;
    unsigned seed = 42;
    for (int round = 0; round < 20; round++) {
        for (int step = 0; step < S_ITEMS; step++) {
            item_t *item = &items [rand_r (&seed) % S_ITEMS];
            if (item->key >= 0) {
                cvr_links_remove (links, &item->link);
                item->key = -1;
            }
            else {
                char name [16];
                item->key = rand_r (&seed) % S_KEYS;
                s_key (name, sizeof (name), item->key);
                cvr_links_add (links, name, &item->link, item);
            }
        }
        s_check (links, items);
    }
    //  Destroying the index leaves the items alone.
    cvr_links_destroy (&links);
    assert_null (links);
    free (items);
}

typedef struct {
    item_t item;
    char name;
} named_t;

//  A set's array after each step, as a string of item names.
static void
s_expect (cvr_links_t *links, const char *key, const char *expected)
{
    size_t count;
    void *const *set = cvr_links_items (links, key, &count);
    char seen [16] = "";
    for (size_t i = 0; i < count && i < 15; i++) {
        seen [i] = ((named_t *) set [i])->name;
        seen [i + 1] = 0;
        assert_int_equal (((item_t *) set [i])->link.pos, i);
    }
    assert_string_equal (seen, expected);
    assert_true ((set == NULL) == (count == 0));
}

static void
test_edges (void **unused)
{
    cvr_links_t *links = cvr_links_new ();
    named_t a = { { .key = -1 }, 'a' }, b = { { .key = -1 }, 'b' },
            c = { { .key = -1 }, 'c' }, d = { { .key = -1 }, 'd' };
    s_expect (links, "k", "");
    //  In no set: removing changes nothing.
    cvr_links_remove (links, &a.item.link);
    assert_null (a.item.link.set);

    cvr_links_add (links, "k", &a.item.link, &a);
    cvr_links_add (links, "k", &b.item.link, &b);
    cvr_links_add (links, "k", &c.item.link, &c);
    cvr_links_add (links, "k", &d.item.link, &d);
    s_expect (links, "k", "abcd");
    cvr_links_remove (links, &b.item.link);        //  a middle: the last moves in
    s_expect (links, "k", "adc");
    assert_null (b.item.link.set);
    cvr_links_remove (links, &c.item.link);        //  the last
    s_expect (links, "k", "ad");
    cvr_links_remove (links, &a.item.link);        //  the first
    s_expect (links, "k", "d");
    cvr_links_remove (links, &d.item.link);        //  the only one: the set goes
    s_expect (links, "k", "");

    //  The key comes back, and a link can be used again.
    cvr_links_add (links, "k", &b.item.link, &b);
    s_expect (links, "k", "b");
    //  A key is copied: the caller's buffer may change.
    char key [8] = "other";
    cvr_links_add (links, key, &a.item.link, &a);
    strcpy (key, "xxxxx");
    s_expect (links, "other", "a");
    s_expect (links, "xxxxx", "");
    cvr_links_destroy (&links);
}

//  A big set shrinks as it empties and stays right.
static void
test_grow_and_shrink (void **unused)
{
    cvr_links_t *links = cvr_links_new ();
    size_t total = 100000;
    item_t *items = (item_t *) calloc (total, sizeof (item_t));
    for (size_t i = 0; i < total; i++)
        cvr_links_add (links, "big", &items [i].link, &items [i]);
    size_t count;
    assert_non_null (cvr_links_items (links, "big", &count));
    assert_int_equal (count, total);
    for (size_t i = 0; i < total - 10; i++)         //  the first ones: the last move down
        cvr_links_remove (links, &items [i].link);
    void *const *set = cvr_links_items (links, "big", &count);
    assert_int_equal (count, 10);
    for (size_t i = 0; i < count; i++) {
        item_t *item = (item_t *) set [i];
        assert_true (item >= &items [total - 10] && item < &items [total]);
        assert_int_equal (item->link.pos, i);
    }
    cvr_links_destroy (&links);
    free (items);
}

int
main (void)
{
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_random_adds_and_removals),
        cmocka_unit_test (test_edges),
        cmocka_unit_test (test_grow_and_shrink),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
