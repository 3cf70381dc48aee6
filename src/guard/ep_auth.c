/*
 * API key table (API_KEYS, API_KEYS_FILE) and constant-time comparisons.
 */
/*
 * OpenSSL 3 marks SHA256_Init/Update/Final deprecated in favour of EVP, but
 * EVP_DigestInit allocates a new algorithm context on every call (measured:
 * one malloc per digest even with a reused EVP_MD_CTX), and a key is hashed on
 * every request. The low-level functions work on a context on the stack.
 */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "guard/ep_auth.h"
#include "base/ep_error.h"
#include "base/ep_mem.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define FILE_MAX (16 * 1024 * 1024) /* a key file larger than this is refused */

void ep_auth_init(ep_auth_t *a)
{
    memset(a, 0, sizeof(*a));
}

void ep_auth_close(ep_auth_t *a)
{
    ep_free(a->keys);
    ep_free(a->index);
    ep_auth_init(a);
}

static size_t home_of(const uint8_t *digest)
{
    uint64_t h;

    memcpy(&h, digest, sizeof(h)); /* a SHA-256: already uniform */
    return (size_t)h;
}

/* The slot of digest in the index: the key's, or the empty one where it would go. */
static size_t index_slot(const ep_auth_t *a, const uint8_t *digest)
{
    size_t i = home_of(digest) & a->index_mask;

    while (a->index[i] != 0 &&
           !ep_auth_ct_equal(a->keys[a->index[i] - 1].digest, digest, EP_AUTH_DIGEST_SZ)) {
        i = (i + 1) & a->index_mask;
    }
    return i;
}

/* Makes room for one more key: the index stays at most half full. */
static void index_grow(ep_auth_t *a)
{
    size_t cap = a->index ? a->index_mask + 1 : 0;

    if ((size_t)(a->n + 1) * 2 <= cap) {
        return;
    }
    cap = cap ? cap * 2 : 16;
    ep_free(a->index);
    a->index = ep_calloc(cap, sizeof(*a->index));
    a->index_mask = cap - 1;
    for (int k = 0; k < a->n; k++) {
        a->index[index_slot(a, a->keys[k].digest)] = k + 1;
    }
}

void ep_auth_sha256(const void *p, size_t n, uint8_t out[EP_AUTH_DIGEST_SZ])
{
    SHA256_CTX c;

    SHA256_Init(&c);
    SHA256_Update(&c, p, n);
    SHA256_Final(out, &c);
}

int ep_auth_ct_equal(const void *a, const void *b, size_t n)
{
    const volatile uint8_t *x = a, *y = b;
    uint8_t d = 0;

    for (size_t i = 0; i < n; i++) {
        d |= (uint8_t)(x[i] ^ y[i]);
    }
    /* 1 when d == 0, without a branch on d. */
    return (int)(1 & (((unsigned)d - 1) >> 8));
}

int ep_auth_token_equal(const char *a, size_t alen, const char *b, size_t blen)
{
    uint8_t da[EP_AUTH_DIGEST_SZ], db[EP_AUTH_DIGEST_SZ];

    ep_auth_sha256(a, alen, da);
    ep_auth_sha256(b, blen, db);
    return ep_auth_ct_equal(da, db, sizeof(da));
}

int ep_auth_find(const ep_auth_t *a, const char *key, size_t len)
{
    uint8_t d[EP_AUTH_DIGEST_SZ];

    if (a->n == 0) {
        return -1;
    }
    ep_auth_sha256(key, len, d);
    return a->index[index_slot(a, d)] - 1;
}

int ep_auth_bearer(const char *h, const char **tok, size_t *len)
{
    size_t n;

    if (h == NULL) {
        return 0;
    }
    while (*h == ' ' || *h == '\t') {
        h++;
    }
    if (strncasecmp(h, "Bearer", 6) != 0 || (h[6] != ' ' && h[6] != '\t')) {
        return 0;
    }
    h += 6;
    while (*h == ' ' || *h == '\t') {
        h++;
    }
    n = strlen(h);
    while (n > 0 && (h[n - 1] == ' ' || h[n - 1] == '\t')) {
        n--;
    }
    if (n == 0) {
        return 0;
    }
    *tok = h;
    *len = n;
    return 1;
}

int ep_auth_credential(const char *x_api_key, const char *authorization, const char **key,
                       size_t *len)
{
    if (x_api_key != NULL) {
        size_t n;
        while (*x_api_key == ' ' || *x_api_key == '\t') {
            x_api_key++;
        }
        n = strlen(x_api_key);
        while (n > 0 && (x_api_key[n - 1] == ' ' || x_api_key[n - 1] == '\t')) {
            n--;
        }
        if (n > 0) {
            *key = x_api_key;
            *len = n;
            return 1;
        }
    }
    return ep_auth_bearer(authorization, key, len);
}

/* ------------------------------------------------------------ building the table */

static int name_ok(const char *s, size_t n)
{
    if (n == 0 || n >= EP_AUTH_NAME_MAX) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-') {
            return 0;
        }
    }
    return 1;
}

/* The characters of a Bearer token (RFC 6750 b64token): what a key may hold. */
static int key_char_ok(unsigned char c)
{
    return isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' ||
           c == '=';
}

/* Checks a key's text; on error writes why (without the key) into why. */
static int key_ok(const char *s, size_t n, char *why, size_t wlen)
{
    if (n < EP_AUTH_KEY_MIN) {
        snprintf(why, wlen, "the key is %zu characters long; at least %d are needed", n,
                 EP_AUTH_KEY_MIN);
        return 0;
    }
    if (n > EP_AUTH_KEY_MAX) {
        snprintf(why, wlen, "the key is longer than %d characters", EP_AUTH_KEY_MAX);
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!key_char_ok((unsigned char)s[i])) {
            snprintf(why, wlen,
                     "the key holds a character other than letters, digits and - . _ ~ + / = "
                     "(at position %zu)",
                     i + 1);
            return 0;
        }
    }
    return 1;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (unsigned char)tolower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Appends a key; checks that its name and digest are new. 0, or -1 with why. */
static int add_key(ep_auth_t *a, const char *name, size_t nlen, const uint8_t *digest, int64_t rate,
                   int64_t burst, char *why, size_t wlen)
{
    ep_auth_key_t *k;

    if (a->n >= EP_AUTH_MAX_KEYS) {
        snprintf(why, wlen, "more than %d keys", EP_AUTH_MAX_KEYS);
        return -1;
    }
    for (int i = 0; i < a->n; i++) {
        if (strlen(a->keys[i].name) == nlen && memcmp(a->keys[i].name, name, nlen) == 0) {
            snprintf(why, wlen, "the name '%.*s' is used twice", (int)nlen, name);
            return -1;
        }
    }
    index_grow(a);
    if (a->index[index_slot(a, digest)] != 0) {
        snprintf(why, wlen, "the same key as '%s'",
                 a->keys[a->index[index_slot(a, digest)] - 1].name);
        return -1;
    }
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 8;
        a->keys = ep_realloc(a->keys, (size_t)a->cap * sizeof(*a->keys));
    }
    k = &a->keys[a->n++];
    memset(k, 0, sizeof(*k));
    memcpy(k->name, name, nlen);
    memcpy(k->digest, digest, EP_AUTH_DIGEST_SZ);
    k->rate = rate;
    k->burst = burst;
    a->index[index_slot(a, digest)] = a->n;
    return 0;
}

int ep_auth_add_csv(ep_auth_t *a, const char *csv, char *err, size_t errlen)
{
    const char *p = csv;
    int idx = 0;
    char why[160], name[32];
    uint8_t d[EP_AUTH_DIGEST_SZ];

    for (;;) {
        const char *comma = strchr(p, ',');
        const char *e = comma ? comma : p + strlen(p);
        const char *s = p;

        idx++;
        while (s < e && (*s == ' ' || *s == '\t')) {
            s++;
        }
        while (e > s && (e[-1] == ' ' || e[-1] == '\t')) {
            e--;
        }
        if (s == e) {
            snprintf(err, errlen, "API_KEYS: key %d is empty", idx);
            return EP_ECONFIG;
        }
        if (!key_ok(s, (size_t)(e - s), why, sizeof(why))) {
            snprintf(err, errlen, "API_KEYS: key %d: %s", idx, why);
            return EP_ECONFIG;
        }
        snprintf(name, sizeof(name), "key%d", idx);
        ep_auth_sha256(s, (size_t)(e - s), d);
        if (add_key(a, name, strlen(name), d, -1, -1, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "API_KEYS: key %d: %s", idx, why);
            return EP_ECONFIG;
        }
        if (comma == NULL) {
            return 0;
        }
        p = comma + 1;
    }
}

/* "rate=N" or "burst=N": 0 with *v set, or -1 with why. */
static int parse_opt(const char *s, size_t n, int64_t *rate, int64_t *burst, char *why, size_t wlen)
{
    const char *eq = memchr(s, '=', n);
    int64_t v = 0, *dst;
    size_t i, nlen = eq ? (size_t)(eq - s) : n;

    if (eq && nlen == 4 && memcmp(s, "rate", 4) == 0) {
        dst = rate;
    } else if (eq && nlen == 5 && memcmp(s, "burst", 5) == 0) {
        dst = burst;
    } else {
        snprintf(why, wlen, "unknown option '%.*s' (expected rate=N or burst=N)",
                 (int)(n > 40 ? 40 : n), s);
        return -1;
    }
    if (*dst != -1) {
        snprintf(why, wlen, "%.*s is given twice", (int)nlen, s);
        return -1;
    }
    if (nlen + 1 == n) {
        snprintf(why, wlen, "%.*s has no value", (int)nlen, s);
        return -1;
    }
    for (i = nlen + 1; i < n; i++) {
        if (s[i] < '0' || s[i] > '9' || v > EP_AUTH_RATE_MAX) {
            snprintf(why, wlen, "%.*s must be a whole number from %d to %d", (int)nlen, s,
                     dst == burst ? 1 : 0, EP_AUTH_RATE_MAX);
            return -1;
        }
        v = v * 10 + (s[i] - '0');
    }
    if (v > EP_AUTH_RATE_MAX || (dst == burst && v == 0)) {
        snprintf(why, wlen, "%.*s must be a whole number from %d to %d", (int)nlen, s,
                 dst == burst ? 1 : 0, EP_AUTH_RATE_MAX);
        return -1;
    }
    *dst = v;
    return 0;
}

/* One line without its newline: 0 (a key added, or a blank or comment line) or -1 with why. */
static int add_line(ep_auth_t *a, const char *s, size_t n, char *why, size_t wlen)
{
    const char *f[8];
    size_t fl[8];
    int nf = 0;
    size_t i = 0;
    int64_t rate = -1, burst = -1;
    uint8_t d[EP_AUTH_DIGEST_SZ];

    if (n > 0 && s[n - 1] == '\r') {
        n--;
    }
    while (i < n) {
        size_t st;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) {
            i++;
        }
        if (i == n || s[i] == '#') {
            break; /* a comment runs to the end of the line */
        }
        st = i;
        while (i < n && s[i] != ' ' && s[i] != '\t') {
            i++;
        }
        if (nf == 8) {
            snprintf(why, wlen, "too many fields (expected: name key [rate=N] [burst=N])");
            return -1;
        }
        f[nf] = s + st;
        fl[nf++] = i - st;
    }
    if (nf == 0) {
        return 0;
    }
    if (nf == 1) {
        snprintf(why, wlen, "a name and a key are needed (expected: name key [rate=N] [burst=N])");
        return -1;
    }
    if (!name_ok(f[0], fl[0])) {
        snprintf(why, wlen, "the name must be 1 to %d letters, digits, '_', '.' or '-'",
                 EP_AUTH_NAME_MAX - 1);
        return -1;
    }
    for (int k = 2; k < nf; k++) {
        if (parse_opt(f[k], fl[k], &rate, &burst, why, wlen) != 0) {
            return -1;
        }
    }
    if (fl[1] > 7 && strncasecmp(f[1], "sha256:", 7) == 0) {
        if (fl[1] != 7 + 2 * EP_AUTH_DIGEST_SZ) {
            snprintf(why, wlen, "a sha256: key needs exactly 64 hex digits, not %zu", fl[1] - 7);
            return -1;
        }
        for (int k = 0; k < EP_AUTH_DIGEST_SZ; k++) {
            int hi = hexval((unsigned char)f[1][7 + 2 * k]),
                lo = hexval((unsigned char)f[1][8 + 2 * k]);
            if (hi < 0 || lo < 0) {
                snprintf(why, wlen, "a sha256: key holds a character that is not a hex digit");
                return -1;
            }
            d[k] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        if (!key_ok(f[1], fl[1], why, wlen)) {
            return -1;
        }
        ep_auth_sha256(f[1], fl[1], d);
    }
    return add_key(a, f[0], fl[0], d, rate, burst, why, wlen);
}

int ep_auth_add_text(ep_auth_t *a, const char *text, size_t len, const char *fname, char *err,
                     size_t errlen)
{
    size_t pos = 0;
    int line = 0;
    char why[200];

    if (memchr(text, '\0', len) != NULL) {
        snprintf(err, errlen, "API_KEYS_FILE: %s: holds a NUL byte (not a text file)", fname);
        return EP_ECONFIG;
    }
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;

        line++;
        if (add_line(a, text + pos, n, why, sizeof(why)) != 0) {
            snprintf(err, errlen, "API_KEYS_FILE: %s:%d: %s", fname, line, why);
            return EP_ECONFIG;
        }
        pos += n + (nl ? 1 : 0);
    }
    return 0;
}

int ep_auth_add_file(ep_auth_t *a, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    char *buf;
    size_t n = 0;
    int rc;

    if (f == NULL) {
        snprintf(err, errlen, "API_KEYS_FILE: cannot open %s: %s", path, strerror(errno));
        return EP_ECONFIG;
    }
    buf = ep_malloc(FILE_MAX + 1);
    n = fread(buf, 1, FILE_MAX + 1, f);
    if (ferror(f)) {
        snprintf(err, errlen, "API_KEYS_FILE: cannot read %s: %s", path, strerror(errno));
        rc = EP_ECONFIG;
    } else if (n > FILE_MAX) {
        snprintf(err, errlen, "API_KEYS_FILE: %s is larger than %d bytes", path, FILE_MAX);
        rc = EP_ECONFIG;
    } else {
        rc = ep_auth_add_text(a, buf, n, path, err, errlen);
        if (rc == 0 && a->n == 0) {
            snprintf(err, errlen, "API_KEYS_FILE: %s holds no key", path);
            rc = EP_ECONFIG;
        }
    }
    /* The buffer held keys in the clear: wipe it before it goes back to the allocator. */
    explicit_bzero(buf, n);
    ep_free(buf);
    fclose(f);
    return rc;
}
