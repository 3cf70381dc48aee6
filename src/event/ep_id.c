#include "event/ep_id.h"
#include "base/ep_time.h"

#include <stdint.h>
#include <string.h>
#include <sys/random.h>

/* xoshiro256** per thread, seeded from getrandom(). */
static _Thread_local uint64_t rng_s[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(void)
{
    uint64_t r, t;

    if (!rng_seeded) {
        if (getrandom(rng_s, sizeof(rng_s), 0) != (ssize_t)sizeof(rng_s)) {
            uint64_t seed = (uint64_t)ep_time_mono_ns() ^ (uint64_t)(uintptr_t)&rng_s;
            for (int i = 0; i < 4; i++) {
                seed += 0x9e3779b97f4a7c15ULL;
                uint64_t z = seed;
                z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
                z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
                rng_s[i] = z ^ (z >> 31);
            }
        }
        rng_seeded = 1;
    }
    r = rotl(rng_s[1] * 5, 7) * 9;
    t = rng_s[1] << 17;
    rng_s[2] ^= rng_s[0];
    rng_s[3] ^= rng_s[1];
    rng_s[1] ^= rng_s[2];
    rng_s[0] ^= rng_s[3];
    rng_s[2] ^= t;
    rng_s[3] = rotl(rng_s[3], 45);
    return r;
}

/* 8-4-4-4-12 lowercase hex, two characters per byte from a table. */
static void format(const uint8_t b[16], char *out)
{
    static const char pairs[513] =
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
        "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
        "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
        "606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
        "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
        "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
        "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
        "e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    char *o = out;

    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) {
            *o++ = '-';
        }
        memcpy(o, pairs + 2 * b[i], 2);
        o += 2;
    }
    *o = '\0';
}

void ep_id_uuid7(char *out)
{
    ep_id_uuid7_at(out, ep_time_now_ms());
}

void ep_id_uuid7_at(char *out, int64_t unix_ms)
{
    uint8_t b[16];
    uint64_t ms = (uint64_t)unix_ms;
    uint64_t r1 = rng_next(), r2 = rng_next();

    for (int i = 0; i < 6; i++) {
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    }
    memcpy(b + 6, &r1, 2);
    memcpy(b + 8, &r2, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x70);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    format(b, out);
}

/*
 * A UUID v8 (RFC 9562 "custom"): the v7 layout (48 bits of Unix milliseconds,
 * random bits) with version 8 and its last 24 bits zero, so that a request's
 * events can be numbered base + i. The version tells these ids from a client's.
 */
void ep_id_assigned_base(char *out)
{
    uint8_t b[16];
    uint64_t ms = (uint64_t)ep_time_now_ms();
    uint64_t r1 = rng_next(), r2 = rng_next();

    for (int i = 0; i < 6; i++) {
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    }
    memcpy(b + 6, &r1, 2);
    memcpy(b + 8, &r2, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x80);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    b[13] = b[14] = b[15] = 0;
    format(b, out);
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* 1 when s[0..n) is 8-4-4-4-12 hex digits (either case). */
int ep_id_uuid_valid(const char *s, size_t n)
{
    if (n != EP_UUID_STR_LEN) {
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-') {
                return 0;
            }
        } else if (hex_val(s[i]) < 0) {
            return 0;
        }
    }
    return 1;
}

/*
 * The i-th id of a request whose first id is base: base with i added to its
 * last 48 bits (modulo 2^48), lowercase. base must pass ep_id_uuid_valid.
 */
void ep_id_uuid_add(const char *base, uint64_t i, char *out)
{
    static const char digits[] = "0123456789abcdef";
    uint64_t v = 0;

    for (int k = 0; k < 24; k++) {
        out[k] = base[k] == '-' ? '-' : digits[hex_val(base[k]) & 15];
    }
    for (int k = 24; k < 36; k++) {
        v = (v << 4) | (uint64_t)(hex_val(base[k]) & 15);
    }
    v = (v + i) & ((1ULL << 48) - 1);
    for (int k = 35; k >= 24; k--) {
        out[k] = digits[v & 15];
        v >>= 4;
    }
    out[36] = '\0';
}

/* 1 when id is one ep_id_assigned_base numbering could give (a UUID of version 8). */
int ep_id_is_assigned(const char *id, size_t len)
{
    return len == EP_UUID_STR_LEN && id[14] == '8' && ep_id_uuid_valid(id, len);
}

/* 1 when id is a base itself: assigned, its last 24 bits zero. */
int ep_id_is_assigned_base(const char *id, size_t len)
{
    return ep_id_is_assigned(id, len) && memcmp(id + 30, "000000", 6) == 0;
}

/* The base of an assigned id (its last 24 bits zeroed), lowercase. */
void ep_id_base_of(const char *id, char *out)
{
    ep_id_uuid_add(id, 0, out);
    memcpy(out + 30, "000000", 6); /* NOLINT(bugprone-not-null-terminated-result): out[36] is */
}
