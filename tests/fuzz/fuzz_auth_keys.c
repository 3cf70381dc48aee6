/*
 * Fuzz target: arbitrary bytes -> the API key file parser (ep_auth_add_text)
 * and the API_KEYS list (ep_auth_add_csv). Either a clear error naming the
 * file and a line, or a table whose names are valid and distinct, whose
 * digests are distinct, and which written back as "name sha256:<hex> rate=
 * burst=" lines parses to the same table. Any broken invariant aborts.
 */
#include "guard/ep_auth.h"
#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"

#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_auth_keys: %s:%d: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void check_table(const ep_auth_t *a)
{
    CHECK(a->n >= 0 && a->n <= EP_AUTH_MAX_KEYS);
    for (int i = 0; i < a->n; i++) {
        const ep_auth_key_t *k = &a->keys[i];
        size_t n = strnlen(k->name, sizeof(k->name));
        CHECK(n > 0 && n < sizeof(k->name));
        for (size_t j = 0; j < n; j++) {
            CHECK(isalnum((unsigned char)k->name[j]) || strchr("_.-", k->name[j]) != NULL);
        }
        CHECK(k->rate >= -1 && k->rate <= EP_AUTH_RATE_MAX);
        CHECK(k->burst == -1 || (k->burst >= 1 && k->burst <= EP_AUTH_RATE_MAX));
        for (int m = 0; m < i; m++) {
            CHECK(strcmp(a->keys[m].name, k->name) != 0);
            CHECK(memcmp(a->keys[m].digest, k->digest, EP_AUTH_DIGEST_SZ) != 0);
        }
    }
}

/* The table written back as a key file, every key by its digest. */
static void write_back(const ep_auth_t *a, ep_buf_t *out)
{
    for (int i = 0; i < a->n; i++) {
        const ep_auth_key_t *k = &a->keys[i];
        ep_buf_printf(out, "%s sha256:", k->name);
        for (int j = 0; j < EP_AUTH_DIGEST_SZ; j++) {
            ep_buf_printf(out, "%02x", k->digest[j]);
        }
        if (k->rate >= 0) {
            ep_buf_printf(out, " rate=%lld", (long long)k->rate);
        }
        if (k->burst >= 0) {
            ep_buf_printf(out, " burst=%lld", (long long)k->burst);
        }
        ep_buf_puts(out, i % 2 ? "\r\n" : "   # again\n");
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ep_auth_t a, b;
    char err[512] = "";
    int rc;

    ep_auth_init(&a);
    rc = ep_auth_add_text(&a, (const char *)data, size, "fuzz", err, sizeof(err));
    if (rc != 0) {
        CHECK(rc == EP_ECONFIG);
        CHECK(strncmp(err, "API_KEYS_FILE: fuzz:", 20) == 0);
    } else {
        ep_buf_t text = EP_BUF_INIT;

        check_table(&a);
        write_back(&a, &text);
        ep_auth_init(&b);
        CHECK(ep_auth_add_text(&b, text.data ? text.data : "", text.len, "again", err,
                               sizeof(err)) == 0);
        CHECK(b.n == a.n);
        for (int i = 0; i < a.n; i++) {
            CHECK(strcmp(a.keys[i].name, b.keys[i].name) == 0);
            CHECK(memcmp(a.keys[i].digest, b.keys[i].digest, EP_AUTH_DIGEST_SZ) == 0);
            CHECK(a.keys[i].rate == b.keys[i].rate && a.keys[i].burst == b.keys[i].burst);
        }
        ep_auth_close(&b);
        ep_buf_close(&text);
    }
    ep_auth_close(&a);

    /* The same bytes as API_KEYS (a C string: up to the first NUL). */
    {
        char *s = ep_malloc(size + 1);
        memcpy(s, data, size);
        s[size] = '\0';
        ep_auth_init(&a);
        rc = ep_auth_add_csv(&a, s, err, sizeof(err));
        CHECK(rc == 0 || (rc == EP_ECONFIG && strncmp(err, "API_KEYS: key ", 14) == 0));
        if (rc == 0) {
            check_table(&a);
            CHECK(a.n >= 1);
            /* Every listed key is found by its own text. */
            for (int i = 0, k = 0; k < a.n; k++) {
                const char *st = s + i, *e = strchr(st, ',');
                size_t n = e ? (size_t)(e - st) : strlen(st);
                while (n > 0 && (*st == ' ' || *st == '\t')) {
                    st++, n--;
                }
                while (n > 0 && (st[n - 1] == ' ' || st[n - 1] == '\t')) {
                    n--;
                }
                CHECK(ep_auth_find(&a, st, n) == k);
                i = e ? (int)(e - s) + 1 : (int)size;
            }
        }
        ep_auth_close(&a);
        ep_free(s);
    }
    return 0;
}
