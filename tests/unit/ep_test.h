#ifndef EP_TEST_H
#define EP_TEST_H

/*
 * A tiny single-header test harness.
 *
 *   static void test_something(void) { EP_ASSERT_EQ(1 + 1, 2); }
 *   EP_TEST_LIST = { EP_TEST(test_something), EP_TEST_END };
 *   EP_TEST_MAIN()
 *
 * EP_TEST_MAIN() generates main(): with no argument every test runs (each in a
 * fork()ed child, so a crash fails only that test); "./test_x name" runs one.
 * The last line is "N passed, M failed".
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* EP_TEST_TSAN: built with ThreadSanitizer (gcc or clang); tests scale their load down. */
#if defined(__SANITIZE_THREAD__)
#define EP_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define EP_TEST_TSAN 1
#endif
#endif

typedef struct {
    const char *name;
    void (*fn)(void);
} ep_test_t;

#define EP_TEST(fn)                                                                                \
    {                                                                                              \
#fn, fn                                                                                    \
    }
#define EP_TEST_END                                                                                \
    {                                                                                              \
        NULL, NULL                                                                                 \
    }
#define EP_TEST_LIST static const ep_test_t ep_test_list[]

#define EP__FAIL(...)                                                                              \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

#define EP_ASSERT(c)                                                                               \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            EP__FAIL("assertion failed: %s", #c);                                                  \
        }                                                                                          \
    } while (0)

#define EP_ASSERT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long ep__a = (long long)(a), ep__b = (long long)(b);                                  \
        if (ep__a != ep__b) {                                                                      \
            EP__FAIL("%s == %s: %lld != %lld", #a, #b, ep__a, ep__b);                              \
        }                                                                                          \
    } while (0)

#define EP_ASSERT_NE(a, b)                                                                         \
    do {                                                                                           \
        long long ep__a = (long long)(a), ep__b = (long long)(b);                                  \
        if (ep__a == ep__b) {                                                                      \
            EP__FAIL("%s != %s: both %lld", #a, #b, ep__a);                                        \
        }                                                                                          \
    } while (0)

#define EP_ASSERT_STR_EQ(a, b)                                                                     \
    do {                                                                                           \
        const char *ep__a = (a), *ep__b = (b);                                                     \
        if (ep__a == NULL || ep__b == NULL || strcmp(ep__a, ep__b) != 0) {                         \
            EP__FAIL("%s == %s: \"%s\" != \"%s\"", #a, #b, ep__a ? ep__a : "(null)",               \
                     ep__b ? ep__b : "(null)");                                                    \
        }                                                                                          \
    } while (0)

#define EP_ASSERT_STRN_EQ(a, b, n)                                                                 \
    do {                                                                                           \
        if (memcmp((a), (b), (n)) != 0) {                                                          \
            EP__FAIL("%s == %s (first %zu bytes)", #a, #b, (size_t)(n));                           \
        }                                                                                          \
    } while (0)

static int ep__run_one(const ep_test_t *t)
{
    pid_t pid;
    int st;

    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        t->fn();
        exit(0);
    }
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        return 1;
    }
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "  killed by signal %d\n", WTERMSIG(st));
        return 1;
    }
    return WEXITSTATUS(st) != 0;
}

static int ep__main(const ep_test_t *list, int argc, char **argv)
{
    int passed = 0, failed = 0;

    for (const ep_test_t *t = list; t->name; t++) {
        int rc;
        if (argc > 1 && strcmp(argv[1], t->name) != 0) {
            continue;
        }
        rc = ep__run_one(t);
        printf("%s %s\n", rc ? "FAIL" : "ok  ", t->name);
        rc ? failed++ : passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : (passed ? 0 : 1);
}

#define EP_TEST_MAIN()                                                                             \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return ep__main(ep_test_list, argc, argv);                                                 \
    }

#endif /* EP_TEST_H */
