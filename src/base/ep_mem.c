#include "base/ep_mem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Thread_local unsigned long long allocated; /* see ep_mem_thread_allocated */

_Noreturn static void oom(size_t size)
{
    fprintf(stderr, "eventpipe: out of memory allocating %zu bytes\n", size);
    abort();
}

void *ep_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);

    allocated += size;
    if (p == NULL) {
        oom(size);
    }
    return p;
}

void *ep_calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);

    allocated += (unsigned long long)n * size;
    if (p == NULL) {
        oom(n * size);
    }
    return p;
}

void *ep_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);

    allocated += size;
    if (q == NULL) {
        oom(size);
    }
    return q;
}

char *ep_strndup(const char *s, size_t n)
{
    char *d = ep_malloc(n + 1);

    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

char *ep_strdup(const char *s)
{
    return ep_strndup(s, strlen(s));
}

void ep_free(void *p)
{
    free(p);
}

unsigned long long ep_mem_thread_allocated(void)
{
    return allocated;
}

void ep__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "eventpipe: assertion failed: %s (%s:%d)\n", expr, file, line);
    abort();
}
