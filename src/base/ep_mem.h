#ifndef EP_MEM_H
#define EP_MEM_H

#include <stddef.h>

/*
 * Allocation wrappers. They never return NULL: on out-of-memory they print the
 * size to stderr and abort.
 */

void *ep_malloc(size_t size);
void *ep_calloc(size_t n, size_t size);
void *ep_realloc(void *p, size_t size);
char *ep_strdup(const char *s);
char *ep_strndup(const char *s, size_t n);
void ep_free(void *p);

/**
 * Bytes the calling thread asked of ep_malloc, ep_calloc and ep_realloc so far
 * (a per-thread counter, no lock): lets a test check that an operation does
 * not allocate.
 */
unsigned long long ep_mem_thread_allocated(void);

/* Broken invariant: prints file:line and aborts. */
#define ep_assert(cond)                                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ep__assert_fail(#cond, __FILE__, __LINE__);                                            \
        }                                                                                          \
    } while (0)

_Noreturn void ep__assert_fail(const char *expr, const char *file, int line);

#endif /* EP_MEM_H */
