/*
 * ThreadSanitizer builds only (-DEP_SANITIZE=thread): librdkafka is built
 * with C11 threads, and glibc's thrd_create/mtx_lock/cnd_wait reach the
 * pthread functions through internal aliases that ThreadSanitizer does not
 * intercept. A thread started that way has no sanitizer state and crashes on
 * its first intercepted call, and locks taken that way are invisible to the
 * race detector. These definitions take precedence over glibc's for
 * librdkafka (the executable's symbols win) and forward to the intercepted
 * pthread functions; glibc's C11 types are its pthread types underneath.
 *
 * librdkafka itself is not instrumented: its atomics (reference counts that
 * decide who frees a buffer or destroys a lock) are invisible, so the race
 * detector reports its internal hand-offs as races. Those reports are
 * suppressed by default below, only for frames inside librdkafka; races in
 * eventpipe's own code are still reported. If another module needs default
 * suppressions too, they must be merged here (the hook can exist once).
 *
 * In every other build this file is empty but for ep__kafka_tsan_link().
 */
#include <pthread.h>

#if defined(__SANITIZE_THREAD__)
#define EP_KAFKA_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EP_KAFKA_TSAN 1
#endif
#endif

void ep__kafka_tsan_link(void);

/* Does nothing; the provider calls it so this object is always linked in. Thread-safe. */
void ep__kafka_tsan_link(void)
{
}

#ifdef EP_KAFKA_TSAN

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <threads.h>

typedef struct tramp_s {
    thrd_start_t fn;
    void *arg;
} tramp_t;

static void *trampoline(void *p)
{
    tramp_t t = *(tramp_t *)p;

    free(p);
    return (void *)(intptr_t)t.fn(t.arg);
}

static int c11(int rc)
{
    return rc == 0           ? thrd_success
           : rc == ENOMEM    ? thrd_nomem
           : rc == EBUSY     ? thrd_busy
           : rc == ETIMEDOUT ? thrd_timedout
                             : thrd_error;
}

int thrd_create(thrd_t *thr, thrd_start_t fn, void *arg)
{
    tramp_t *t = malloc(sizeof(*t));
    int rc;

    if (t == NULL) {
        return thrd_nomem;
    }
    t->fn = fn;
    t->arg = arg;
    rc = pthread_create((pthread_t *)thr, NULL, trampoline, t);
    if (rc != 0) {
        free(t);
    }
    return c11(rc);
}

int thrd_join(thrd_t thr, int *res)
{
    void *r = NULL;
    int rc = pthread_join((pthread_t)thr, &r);

    if (rc == 0 && res) {
        *res = (int)(intptr_t)r;
    }
    return c11(rc);
}

int thrd_detach(thrd_t thr)
{
    return c11(pthread_detach((pthread_t)thr));
}

int mtx_init(mtx_t *m, int type)
{
    pthread_mutexattr_t a;
    int rc;

    pthread_mutexattr_init(&a);
    if (type & mtx_recursive) {
        pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    }
    rc = pthread_mutex_init((pthread_mutex_t *)m, &a);
    pthread_mutexattr_destroy(&a);
    return c11(rc);
}

int mtx_lock(mtx_t *m)
{
    return c11(pthread_mutex_lock((pthread_mutex_t *)m));
}

int mtx_trylock(mtx_t *m)
{
    return c11(pthread_mutex_trylock((pthread_mutex_t *)m));
}

int mtx_timedlock(mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11(pthread_mutex_timedlock((pthread_mutex_t *)m, ts));
}

int mtx_unlock(mtx_t *m)
{
    return c11(pthread_mutex_unlock((pthread_mutex_t *)m));
}

void mtx_destroy(mtx_t *m)
{
    pthread_mutex_destroy((pthread_mutex_t *)m);
}

int cnd_init(cnd_t *c)
{
    return c11(pthread_cond_init((pthread_cond_t *)c, NULL));
}

int cnd_signal(cnd_t *c)
{
    return c11(pthread_cond_signal((pthread_cond_t *)c));
}

int cnd_broadcast(cnd_t *c)
{
    return c11(pthread_cond_broadcast((pthread_cond_t *)c));
}

int cnd_wait(cnd_t *c, mtx_t *m)
{
    return c11(pthread_cond_wait((pthread_cond_t *)c, (pthread_mutex_t *)m));
}

int cnd_timedwait(cnd_t *restrict c, mtx_t *restrict m, const struct timespec *restrict ts)
{
    return c11(pthread_cond_timedwait((pthread_cond_t *)c, (pthread_mutex_t *)m, ts));
}

void cnd_destroy(cnd_t *c)
{
    pthread_cond_destroy((pthread_cond_t *)c);
}

const char *__tsan_default_suppressions(void);

/* ThreadSanitizer's hook for built-in suppressions: librdkafka's internal hand-offs. */
const char *__tsan_default_suppressions(void)
{
    return "called_from_lib:librdkafka.so.1\n"
           "race:librdkafka.so.1\n";
}

#endif /* EP_KAFKA_TSAN */
