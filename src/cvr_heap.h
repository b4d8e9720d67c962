/*  cvr_heap.h: the process heap on transparent huge pages (internal).

    A registry that grows by a hundred thousand services a second spends
    much of its time in page faults: one per 4 KB page of new records,
    index arrays and timers, each an expensive trap on a virtual machine.
    With 2 MB pages there is one fault where there were 512, and a big
    registry also needs 512 times fewer TLB entries.

    Linux gives anonymous memory huge pages where the process asked for
    them (madvise MADV_HUGEPAGE; the kernel's usual "madvise" setting of
    /sys/kernel/mm/transparent_hugepage/enabled). glibc's own switch for
    that (the glibc.malloc.hugetlb tunable) can only be set in the
    environment before the process starts, and it advises only the main
    arena, while each thread allocates from an arena of its own. So:

    - cvr_heap_setup, first thing in main (before any thread), keeps every
      thread on glibc's main arena (M_ARENA_MAX 1), which grows the
      program break, and grows it 32 MB at a time (M_TOP_PAD);
    - cvr_heap_advise, called by the server at the end of each batch of
      requests, advises the heap's new part, if the break moved since the
      server's mark, with MADV_HUGEPAGE. It costs one comparison when it
      did not.

    Memory given back to the system is not affected (M_TRIM_THRESHOLD
    keeps its default). Where huge pages are off ("never"), or the advice
    fails, nothing changes but the arena: the calls are advice.
*/
#ifndef CVR_HEAP_H_INCLUDED
#define CVR_HEAP_H_INCLUDED

#include <stdbool.h>
#include <stdint.h>

//  In main, before any thread starts.
void
    cvr_heap_setup (void);

//  The heap's end now: a mark for cvr_heap_advise.
uintptr_t
    cvr_heap_mark (void);

//  Advises the part of the heap past *mark, if it grew, and moves the
//  mark to its end. Returns true when it advised something. Each caller
//  keeps its own mark (advising a range twice is harmless).
bool
    cvr_heap_advise (uintptr_t *mark);

#endif
