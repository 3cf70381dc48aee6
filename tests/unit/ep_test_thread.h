#ifndef EP_TEST_THREAD_H
#define EP_TEST_THREAD_H

/*
 * What another thread of the test process is doing, read from /proc, so that
 * a test waits until a thread is really blocked instead of sleeping and hoping
 * (a loaded machine, or TSan, can keep a thread from running for a long time).
 *
 *   ep_test_tid()                        the calling thread's kernel id
 *   ep_test_thread_blocked_in_futex(tid) 1 when that thread sleeps in futex(2):
 *                                        EP_TEST_FUTEX_TIMED with a timeout,
 *                                        EP_TEST_FUTEX_UNTIMED without one
 *   ep_test_wait_futex(tid, want, ms)    waits for that (polling) up to ms
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { EP_TEST_FUTEX_ANY = 0, EP_TEST_FUTEX_TIMED = 1, EP_TEST_FUTEX_UNTIMED = 2 };

static inline long ep_test_tid(void)
{
    return (long)syscall(SYS_gettid);
}

/* The thread's state letter from /proc/self/task/<tid>/stat ('S', 'R', ...), or 0. */
static inline char ep_test_thread_state(long tid)
{
    char path[64], buf[512], *p;
    FILE *f;
    size_t n;

    snprintf(path, sizeof(path), "/proc/self/task/%ld/stat", tid);
    if ((f = fopen(path, "r")) == NULL) {
        return 0;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' ? p[2] : 0;
}

/*
 * 1 when the thread sleeps in futex(2) with a timeout (EP_TEST_FUTEX_TIMED),
 * without one (EP_TEST_FUTEX_UNTIMED) or either (EP_TEST_FUTEX_ANY); else 0.
 * Without /proc/<tid>/syscall (a kernel without it) any sleep ('S') counts.
 */
static inline int ep_test_thread_blocked_in_futex(long tid, int want)
{
    char path[64], buf[512];
    unsigned long long a[6];
    long nr;
    FILE *f;
    size_t n;

    if (ep_test_thread_state(tid) != 'S') {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/self/task/%ld/syscall", tid);
    if ((f = fopen(path, "r")) == NULL) {
        return 1;
    }
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (sscanf(buf, "%ld %llx %llx %llx %llx %llx %llx", &nr, &a[0], &a[1], &a[2], &a[3], &a[4],
               &a[5]) != 7 ||
        nr != SYS_futex) {
        return 0;
    }
    /* futex(uaddr, op, val, timeout, ...): the 4th argument is the timeout. */
    if (want == EP_TEST_FUTEX_TIMED) {
        return a[3] != 0;
    }
    if (want == EP_TEST_FUTEX_UNTIMED) {
        return a[3] == 0;
    }
    return 1;
}

/* Polls every millisecond until the thread sleeps in futex(2) as wanted; 1 if it did. */
static inline int ep_test_wait_futex(long tid, int want, int timeout_ms)
{
    struct timespec ts = {0, 1000000};

    for (int i = 0; i < timeout_ms; i++) {
        if (ep_test_thread_blocked_in_futex(tid, want)) {
            return 1;
        }
        nanosleep(&ts, NULL);
    }
    return ep_test_thread_blocked_in_futex(tid, want);
}

#endif /* EP_TEST_THREAD_H */
