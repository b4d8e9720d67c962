/*  test_heap.c: cvr_heap in a process set up as conveyord sets itself up.
    Memory allocated by another thread comes from the program break (one
    arena); the heap grown past a mark is advised once, and the kernel
    then carries the advice on the heap's mapping (the "hg" flag in
    /proc/self/smaps), whether or not this machine's transparent huge
    pages are on; a mark at the end advises nothing. Skipped under
    AddressSanitizer, whose malloc is not glibc's, and on a kernel built
    without transparent huge pages. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <assert.h>
#include <unistd.h>
#include "cvr_heap.h"

#define S_BLOCKS    (64 * 1024)         //  of 1 KB: 64 MB, past the 32 MB pad
#define S_BLOCK     1024

//  The VmFlags line of the mapping that holds address, or "" when none.
static void
s_vm_flags (uintptr_t address, char *flags, size_t size)
{
    flags [0] = 0;
    FILE *file = fopen ("/proc/self/smaps", "r");
    assert_non_null (file);
    char line [512];
    bool inside = false;
    while (fgets (line, sizeof (line), file)) {
        unsigned long lo, hi;
        if (sscanf (line, "%lx-%lx ", &lo, &hi) == 2 && strchr (line, '-') < strchr (line, ' '))
            inside = address >= lo && address < hi;
        else
        if (inside && strncmp (line, "VmFlags:", 8) == 0) {
            snprintf (flags, size, "%s", line + 8);
            break;
        }
    }
    fclose (file);
}

static bool
s_has_flag (const char *flags, const char *flag)
{
    char padded [8];
    snprintf (padded, sizeof (padded), " %s ", flag);
    char spaced [600];
    snprintf (spaced, sizeof (spaced), " %s", flags);
    char *newline = strchr (spaced, '\n');
    if (newline)
        *newline = ' ';
    return strstr (spaced, padded) != NULL;
}

static void *
s_allocate (void *arg)
{
    void **blocks = (void **) arg;
    for (size_t i = 0; i < S_BLOCKS; i++) {
        blocks [i] = malloc (S_BLOCK);
        if (!blocks [i])
            abort ();
    }
    return NULL;
}

static void
test_a_thread_grows_the_advised_heap (void **state)
{
    (void) state;
#if defined (__SANITIZE_ADDRESS__)
    skip ();                            //  AddressSanitizer's malloc: no arenas
#endif
    if (access ("/sys/kernel/mm/transparent_hugepage/enabled", F_OK))
        skip ();                        //  a kernel without huge pages refuses the advice
    uintptr_t mark = cvr_heap_mark ();
    assert_false (cvr_heap_advise (&mark));             //  nothing grew
    void **blocks = (void **) calloc (S_BLOCKS, sizeof (void *));
    assert_non_null (blocks);
    pthread_t thread;
    assert_int_equal (pthread_create (&thread, NULL, s_allocate, blocks), 0);
    pthread_join (thread, NULL);
    //  One arena: the thread's blocks lie on the program break's heap.
    uintptr_t end = (uintptr_t) sbrk (0);
    uintptr_t last = (uintptr_t) blocks [S_BLOCKS - 1];
    assert_true (last < end);
    assert_true (last >= mark);
    assert_true (cvr_heap_advise (&mark));
    assert_int_equal (mark, end);
    assert_false (cvr_heap_advise (&mark));             //  once
    char flags [512];
    s_vm_flags (last, flags, sizeof (flags));
    assert_true (flags [0]);
    assert_true (s_has_flag (flags, "hg"));
    for (size_t i = 0; i < S_BLOCKS; i++)
        free (blocks [i]);
    free (blocks);
}

int
main (void)
{
    cvr_heap_setup ();                  //  before any thread, as conveyord
    const struct CMUnitTest tests [] = {
        cmocka_unit_test (test_a_thread_grows_the_advised_heap),
    };
    return cmocka_run_group_tests (tests, NULL, NULL);
}
