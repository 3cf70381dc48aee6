#ifndef EP_AUTH_H
#define EP_AUTH_H

#include <stddef.h>
#include <stdint.h>

/*
 * API keys: the table built from API_KEYS (a comma-separated list; the keys are
 * named key1, key2, ... in order) and API_KEYS_FILE (one key a line:
 *
 *   # comment
 *   <name> <key>                   [rate=N] [burst=N]
 *   <name> sha256:<64 hex digits>  [rate=N] [burst=N]
 *
 * ), and the constant-time checks of a presented key or token.
 *
 * Every key is kept as the SHA-256 of its text, and a presented key is hashed
 * once and compared with every stored digest in constant time, so a lookup
 * takes the same time whatever the key, whichever key matches, and whatever
 * the keys' lengths; no key text is kept in memory.
 */

#define EP_AUTH_NAME_MAX  64    /* a key's name, with its NUL: [A-Za-z0-9_.-]{1,63} */
#define EP_AUTH_KEY_MIN   16    /* shortest key accepted (characters) */
#define EP_AUTH_KEY_MAX   256   /* longest key accepted (characters) */
#define EP_AUTH_MAX_KEYS  10000 /* keys in one table */
#define EP_AUTH_RATE_MAX  1000000000
#define EP_AUTH_DIGEST_SZ 32

typedef struct ep_auth_key_s {
    char name[EP_AUTH_NAME_MAX];
    uint8_t digest[EP_AUTH_DIGEST_SZ]; /* SHA-256 of the key */
    int64_t rate;                      /* events/s from the file (0: unlimited); -1: the default */
    int64_t burst;                     /* from the file; -1: the default */
} ep_auth_key_t;

typedef struct ep_auth_s {
    ep_auth_key_t *keys;
    int n, cap;
    /*
     * Index by digest (open addressing on its first 8 bytes, at most half
     * full): a lookup compares the presented key's digest with the few keys
     * on its probe path, so the time depends on that digest only, never on
     * the stored keys, and stays flat with thousands of keys.
     */
    int32_t *index; /* key number + 1; 0: empty */
    size_t index_mask;
} ep_auth_t;

/** An empty table (no allocation until the first key). */
void ep_auth_init(ep_auth_t *a);

/**
 * Adds the keys of API_KEYS (csv: "k1,k2"; blanks around a key are ignored,
 * empty items are an error). Returns 0, or EP_ECONFIG with "API_KEYS: why" in
 * err (the table keeps the keys added before the bad one).
 */
int ep_auth_add_csv(ep_auth_t *a, const char *csv, char *err, size_t errlen);

/**
 * Adds the keys of a key file's text (len bytes, NULs refused). fname names the
 * file in errors: "API_KEYS_FILE: <fname>:<line>: why". Returns 0 or
 * EP_ECONFIG. Pure: no I/O (the fuzz target calls it).
 */
int ep_auth_add_text(ep_auth_t *a, const char *text, size_t len, const char *fname, char *err,
                     size_t errlen);

/** Reads the file path and adds its keys (ep_auth_add_text). 0 or EP_ECONFIG. */
int ep_auth_add_file(ep_auth_t *a, const char *path, char *err, size_t errlen);

/**
 * The index of the key whose text is key[0..len), or -1. The key is hashed and
 * its digest compared in constant time with the keys on its probe path in the
 * index: the time depends on nothing an attacker does not already know (the
 * digest of what they sent). No allocation; thread-safe on a table no longer
 * changed.
 */
int ep_auth_find(const ep_auth_t *a, const char *key, size_t len);

/** Frees the table. */
void ep_auth_close(ep_auth_t *a);

/** SHA-256 of p[0..n) (OpenSSL's libcrypto). No allocation. */
void ep_auth_sha256(const void *p, size_t n, uint8_t out[EP_AUTH_DIGEST_SZ]);

/** 1 when a[0..n) equals b[0..n), else 0; the time depends on n only. */
int ep_auth_ct_equal(const void *a, const void *b, size_t n);

/**
 * 1 when the texts a[0..alen) and b[0..blen) are equal, in time independent of
 * their contents and of where they differ (both are hashed, then the digests
 * compared in constant time), else 0.
 */
int ep_auth_token_equal(const char *a, size_t alen, const char *b, size_t blen);

/**
 * The credential of an HTTP request: the X-API-Key value when present, else the
 * token of "Authorization: Bearer <token>" (scheme case-insensitive). x_api_key
 * and authorization are the header values (NULL when absent). Returns 1 with
 * *key and *len set, else 0.
 */
int ep_auth_credential(const char *x_api_key, const char *authorization, const char **key,
                       size_t *len);

/** The token of "Authorization: Bearer <token>", or 0 when there is none. */
int ep_auth_bearer(const char *authorization, const char **tok, size_t *len);

#endif /* EP_AUTH_H */
