/*  cvr_heap.c: the heap on transparent huge pages; see cvr_heap.h. */
#include "cvr_heap.h"
#include <malloc.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#define S_HUGE      (2u << 20)          //  bytes in a huge page
#define S_TOP_PAD   (32u << 20)         //  bytes the heap grows by at least

void
cvr_heap_setup (void)
{
    mallopt (M_ARENA_MAX, 1);
    mallopt (M_TOP_PAD, S_TOP_PAD);
}

uintptr_t
cvr_heap_mark (void)
{
    //  Up to a huge page's boundary: the 2 MB block the heap's end is in
    //  may begin below the heap, where nothing is advised.
    return ((uintptr_t) sbrk (0) + S_HUGE - 1) & ~(uintptr_t) (S_HUGE - 1);
}

bool
cvr_heap_advise (uintptr_t *mark)
{
#ifdef MADV_HUGEPAGE
    uintptr_t end = (uintptr_t) sbrk (0);
    uintptr_t from = *mark;
    if (end <= from)
        return false;
    *mark = end;
    //  From the 2 MB boundary below the mark (advised already, or the
    //  mark's own start): the kernel maps a huge page only where a whole
    //  aligned 2 MB block lies inside one advised area.
    uintptr_t start = from & ~(uintptr_t) (S_HUGE - 1);
    uintptr_t page = (uintptr_t) sysconf (_SC_PAGESIZE);
    end = (end + page - 1) & ~(page - 1);
    return madvise ((void *) start, end - start, MADV_HUGEPAGE) == 0;
#else
    (void) mark;
    return false;
#endif
}
