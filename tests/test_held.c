/*  test_held.c: cvr_held over a real ROUTER and two DEALERs on inproc,
    where ZeroMQ passes a message's bytes by reference, so a reply still
    unread points into the buffer it was sent from. Replies arrive at the
    right peer, in order, intact; REQ peers get their delimiter; replies
    sent and not yet read survive later adds, sends, drops and the
    holder's destruction (the buffer is freed when the last is read:
    AddressSanitizer reports it otherwise); a reply to a peer that is gone
    is dropped without a leak; a big burst goes out whole; buffers pinned
    by a peer that does not read stay within the budget; a buffer whose
    replies are all read is reused, one still referenced is not. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include "cvr_held.h"

#define S_TIMEOUT_MS 5000

typedef struct {
    zsock_t *router;
    zsock_t *a;                 //  DEALER with identity "A"
    zsock_t *b;                 //  DEALER with identity "B"
    zsock_t *req;               //  REQ with identity "R"
} pair_t;

static zsock_t *
s_peer (int type, const char *endpoint, const char *identity)
{
    zsock_t *sock = zsock_new (type);
    zsock_set_identity (sock, identity);
    zsock_set_rcvtimeo (sock, S_TIMEOUT_MS);
    assert_int_equal (zsock_connect (sock, "%s", endpoint), 0);
    return sock;
}

static void
s_setup (pair_t *p)
{
    static int s_count = 0;
    char endpoint [64];
    snprintf (endpoint, sizeof (endpoint), "inproc://test-held-%d", ++s_count);
    p->router = zsock_new (ZMQ_ROUTER);
    zsock_set_sndhwm (p->router, 0);
    assert_int_equal (zsock_bind (p->router, "%s", endpoint), 0);
    p->a = s_peer (ZMQ_DEALER, endpoint, "A");
    p->b = s_peer (ZMQ_DEALER, endpoint, "B");
    p->req = s_peer (ZMQ_REQ, endpoint, "R");
    //  The ROUTER knows a peer once it has heard from it.
    zstr_send (p->a, "hello");
    zstr_send (p->b, "hello");
    zstr_send (p->req, "hello");
    zsock_set_rcvtimeo (p->router, S_TIMEOUT_MS);
    for (int i = 0; i < 3; i++) {
        zmsg_t *msg = zmsg_recv (p->router);
        assert_non_null (msg);
        zmsg_destroy (&msg);
    }
}

static void
s_teardown (pair_t *p)
{
    zsock_destroy (&p->a);
    zsock_destroy (&p->b);
    zsock_destroy (&p->req);
    zsock_destroy (&p->router);
}

//  Each test's fixture: the sockets and a holder.
typedef struct {
    pair_t p;
    cvr_held_budget_t *budget;
    cvr_held_t *held;
} fixture_t;

#define S_BUDGET    (256 * 1024)    //  bytes the tests' holders may pin

static int
s_fixture_setup (void **state)
{
    fixture_t *f = (fixture_t *) calloc (1, sizeof (fixture_t));
    assert_non_null (f);
    s_setup (&f->p);
    f->budget = cvr_held_budget_new (S_BUDGET);
    f->held = cvr_held_new (f->budget, 0);
    *state = f;
    return 0;
}

static int
s_fixture_teardown (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    cvr_held_destroy (&f->held);       //  a test may have destroyed it
    s_teardown (&f->p);
    //  Every reply read or dropped with its socket: nothing is pinned.
    assert_int_equal (cvr_held_budget_pinned (f->budget), 0);
    cvr_held_budget_destroy (&f->budget);
    free (f);
    return 0;
}

static void
s_add (cvr_held_t *held, const char *identity, const char *body)
{
    cvr_held_add (held, identity, strlen (identity), false, body, strlen (body));
}

//  The next message on a DEALER: one frame with the body expected.
static void
s_expect (zsock_t *dealer, const char *body)
{
    zmsg_t *msg = zmsg_recv (dealer);
    assert_non_null (msg);
    assert_int_equal (zmsg_size (msg), 1);
    char *got = zmsg_popstr (msg);
    assert_string_equal (got, body);
    free (got);
    zmsg_destroy (&msg);
}

static void
test_replies_reach_their_peer_in_order (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    pair_t p = f->p;
    cvr_held_t *held = f->held;
    assert_int_equal (cvr_held_size (held), 0);
    char body [64];
    for (int i = 0; i < 100; i++) {
        snprintf (body, sizeof (body), "reply %d", i);
        s_add (held, i % 3 ? "A" : "B", body);
    }
    cvr_held_add (held, "R", 1, true, "to req", 6);
    assert_true (cvr_held_size (held) > 0);
    cvr_held_send (held, zsock_resolve (p.router));
    assert_int_equal (cvr_held_size (held), 0);
    for (int i = 0; i < 100; i++) {
        snprintf (body, sizeof (body), "reply %d", i);
        s_expect (i % 3 ? p.a : p.b, body);
    }
    //  A REQ socket takes the delimiter off; it only accepts the reply
    //  because it was there.
    char *got = zstr_recv (p.req);
    assert_non_null (got);
    assert_string_equal (got, "to req");
    free (got);
    cvr_held_destroy (&f->held);
    assert_null (f->held);
}

//  Replies sent and still unread keep their bytes while the holder goes on
//  (new replies must land in a new buffer) and after it is destroyed.
static void
test_unread_replies_survive (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    pair_t p = f->p;
    cvr_held_t *held = f->held;
    s_add (held, "A", "first batch, first reply");
    s_add (held, "A", "first batch, second reply");
    cvr_held_send (held, zsock_resolve (p.router));
    s_add (held, "A", "SECOND BATCH, FIRST REPLY, WRITTEN OVER THE OLD?");
    s_add (held, "B", "second batch, to B");
    cvr_held_send (held, zsock_resolve (p.router));
    s_add (held, "A", "dropped, never sent");
    cvr_held_drop (held);
    assert_int_equal (cvr_held_size (held), 0);
    s_add (held, "A", "held at destruction, never sent");
    cvr_held_destroy (&f->held);
    s_expect (p.a, "first batch, first reply");
    s_expect (p.a, "first batch, second reply");
    s_expect (p.a, "SECOND BATCH, FIRST REPLY, WRITTEN OVER THE OLD?");
    s_expect (p.b, "second batch, to B");
    //  Nothing else was sent.
    zsock_set_rcvtimeo (p.a, 100);
    zmsg_t *none = zmsg_recv (p.a);
    assert_null (none);
}

//  A reply to a peer the ROUTER does not know is dropped (and its
//  reference given back: a leak otherwise); the others still go out.
static void
test_reply_to_a_gone_peer_is_dropped (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    pair_t p = f->p;
    cvr_held_t *held = f->held;
    s_add (held, "A", "before");
    s_add (held, "nobody", "lost");
    s_add (held, "A", "after");
    cvr_held_send (held, zsock_resolve (p.router));
    s_expect (p.a, "before");
    s_expect (p.a, "after");
}

//  4 MB of replies in one buffer (grown many times), unread until the
//  holder has sent the next, smaller batch. Past the budget: copied.
static void
test_big_burst (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    pair_t p = f->p;
    cvr_held_t *held = f->held;
    size_t size = 4000;
    char *body = (char *) malloc (size + 1);
    assert_non_null (body);
    for (int i = 0; i < 1000; i++) {
        memset (body, 'a' + i % 26, size);
        body [size] = 0;
        s_add (held, "B", body);
    }
    assert_true (cvr_held_size (held) > 1000 * size);
    cvr_held_send (held, zsock_resolve (p.router));
    s_add (held, "B", "small");
    cvr_held_send (held, zsock_resolve (p.router));
    for (int i = 0; i < 1000; i++) {
        memset (body, 'a' + i % 26, size);
        s_expect (p.b, body);
    }
    s_expect (p.b, "small");
    free (body);
}

//  A peer that does not read: sent buffers stay pinned, up to the budget;
//  past it replies are copied, and nothing is lost or changed either way.
//  Once read, nothing is pinned.
static void
test_pinned_buffers_stay_within_the_budget (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    char body [1024];
    size_t pinned_most = 0;
    for (int batch = 0; batch < 100; batch++) {
        for (int i = 0; i < 10; i++) {
            snprintf (body, sizeof (body), "batch %d reply %d %0900d", batch, i, 0);
            s_add (f->held, "A", body);
        }
        cvr_held_send (f->held, zsock_resolve (f->p.router));
        size_t pinned = cvr_held_budget_pinned (f->budget);
        assert_true (pinned <= S_BUDGET);
        if (pinned > pinned_most)
            pinned_most = pinned;
    }
    //  In place at first (something pinned), then copied: 100 batches of
    //  10 KB would pin 1 MB.
    assert_true (pinned_most > S_BUDGET / 2);
    for (int batch = 0; batch < 100; batch++)
        for (int i = 0; i < 10; i++) {
            snprintf (body, sizeof (body), "batch %d reply %d %0900d", batch, i, 0);
            s_expect (f->p.a, body);
        }
    assert_int_equal (cvr_held_budget_pinned (f->budget), 0);
}

//  A holder's first buffer is sized as asked (the server passes the size
//  of the batch before), so a batch like the last is held without growing
//  its buffer; the default is small. Seen through the budget: a buffer
//  sent in place and unread is pinned whole.
static void
test_first_buffer_is_sized_as_asked (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    s_add (f->held, "A", "default");
    cvr_held_send (f->held, zsock_resolve (f->p.router));
    size_t small = cvr_held_budget_pinned (f->budget);
    assert_true (small > 0 && small < 100000);
    cvr_held_t *sized = cvr_held_new (f->budget, 100000);
    s_add (sized, "B", "sized");
    cvr_held_send (sized, zsock_resolve (f->p.router));
    assert_int_equal (cvr_held_budget_pinned (f->budget), small + 100000);
    cvr_held_destroy (&sized);
    s_expect (f->p.a, "default");
    s_expect (f->p.b, "sized");
    assert_int_equal (cvr_held_budget_pinned (f->budget), 0);
}

//  A buffer whose replies are all read is reused by a later batch; one
//  still referenced is not. What the reused buffer carries is the new
//  batch's, whole, and the old replies were read intact before.
static void
test_written_buffers_are_reused (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    void *router = zsock_resolve (f->p.router);
    size_t reused = cvr_held_budget_reused (f->budget);
    s_add (f->held, "A", "first");
    cvr_held_send (f->held, router);
    //  "first" is unread: its buffer is pinned, so a new one is allocated.
    s_add (f->held, "A", "second");
    cvr_held_send (f->held, router);
    assert_int_equal (cvr_held_budget_reused (f->budget), reused);
    s_expect (f->p.a, "first");
    s_expect (f->p.a, "second");
    //  Both are spares now: each batch takes one (the first slot's, put
    //  back once read, serves both).
    char body [600];
    for (int batch = 0; batch < 2; batch++) {
        snprintf (body, sizeof (body), "reused %d %0500d", batch, batch);
        s_add (f->held, "B", body);
        s_add (f->held, "A", "short");
        cvr_held_send (f->held, router);
        assert_int_equal (cvr_held_budget_reused (f->budget), reused + 1 + batch);
        s_expect (f->p.b, body);
        s_expect (f->p.a, "short");
    }
    assert_int_equal (cvr_held_budget_pinned (f->budget), 0);
}

//  A spare grown by a burst is reused by a batch of about its size, but
//  not by a small one, which it would make pin its whole capacity: that
//  one gets a buffer of its own size.
static void
test_oversized_spares_are_freed (void **state)
{
    fixture_t *f = (fixture_t *) *state;
    void *router = zsock_resolve (f->p.router);
    size_t big_size = 200 * 1024;
    char *big = (char *) malloc (big_size + 1);
    assert_non_null (big);
    memset (big, 'b', big_size);
    big [big_size] = 0;
    s_add (f->held, "A", big);
    cvr_held_send (f->held, router);
    s_expect (f->p.a, big);
    //  The next batch is sized like that one: the spare fits and is taken.
    size_t reused = cvr_held_budget_reused (f->budget);
    s_add (f->held, "A", "small");
    cvr_held_send (f->held, router);
    assert_int_equal (cvr_held_budget_reused (f->budget), reused + 1);
    s_expect (f->p.a, "small");
    //  The one after is sized like "small": the big spare is not taken.
    s_add (f->held, "A", "tiny");
    cvr_held_send (f->held, router);
    assert_int_equal (cvr_held_budget_reused (f->budget), reused + 1);
    size_t pinned = cvr_held_budget_pinned (f->budget);
    assert_true (pinned > 0 && pinned < 100000);
    s_expect (f->p.a, "tiny");
    assert_int_equal (cvr_held_budget_pinned (f->budget), 0);
    free (big);
}

int
main (void)
{
    zsys_init ();
    const struct CMUnitTest tests [] = {
        cmocka_unit_test_setup_teardown (test_replies_reach_their_peer_in_order, s_fixture_setup,
                                         s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_unread_replies_survive, s_fixture_setup,
                                         s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_reply_to_a_gone_peer_is_dropped, s_fixture_setup,
                                         s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_big_burst, s_fixture_setup,
                                         s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_pinned_buffers_stay_within_the_budget,
                                         s_fixture_setup, s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_first_buffer_is_sized_as_asked,
                                         s_fixture_setup, s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_written_buffers_are_reused,
                                         s_fixture_setup, s_fixture_teardown),
        cmocka_unit_test_setup_teardown (test_oversized_spares_are_freed,
                                         s_fixture_setup, s_fixture_teardown),
    };
    int rc = cmocka_run_group_tests (tests, NULL, NULL);
    zsys_shutdown ();
    return rc;
}
