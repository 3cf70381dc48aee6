/*
 * Idempotency window: 64 shards, each an open-addressing (linear probing)
 * table of {hash, expiry, state} under its own mutex. Expired entries are
 * dropped by rebuilding a shard when it gets 3/4 full.
 */
#include "ep_dedup.h"
#include "ep_mem.h"

#include <pthread.h>
#include <string.h>

#define N_SHARDS      64
#define PENDING_TTL_S 120 /* a reservation whose callback never came is dropped after this */
#define STATE_EMPTY   0
#define STATE_PENDING 1
#define STATE_DONE    2

typedef struct entry_s {
    uint64_t hash;
    int64_t expires;
    uint8_t state;
} entry_t;

typedef struct shard_s {
    pthread_mutex_t mu;
    entry_t *slots;
    size_t cap; /* power of two */
    size_t count;
    char pad[64];
} shard_t;

struct ep_dedup_s {
    int window_s;
    shard_t shards[N_SHARDS];
};

/* 64-bit FNV-1a followed by a final avalanche mix. */
static uint64_t hash_id(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h ? h : 1;
}

ep_dedup_t *ep_dedup_create(int window_s, size_t capacity)
{
    ep_dedup_t *d = ep_calloc(1, sizeof(*d));
    size_t per = 16;

    while (per * N_SHARDS < capacity * 4 / 3) {
        per *= 2;
    }
    d->window_s = window_s;
    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_init(&d->shards[i].mu, NULL);
        d->shards[i].slots = ep_calloc(per, sizeof(entry_t));
        d->shards[i].cap = per;
    }
    return d;
}

static entry_t *find(shard_t *sh, uint64_t h)
{
    size_t mask = sh->cap - 1;

    for (size_t i = (size_t)h & mask;; i = (i + 1) & mask) {
        entry_t *e = &sh->slots[i];
        if (e->state == STATE_EMPTY || e->hash == h) {
            return e;
        }
    }
}

/* Rebuilds the table without expired entries. */
static void sweep(shard_t *sh, int64_t now_s)
{
    entry_t *old = sh->slots;
    size_t cap = sh->cap;

    sh->slots = ep_calloc(cap, sizeof(entry_t));
    sh->count = 0;
    for (size_t i = 0; i < cap; i++) {
        if (old[i].state != STATE_EMPTY && old[i].expires > now_s) {
            *find(sh, old[i].hash) = old[i];
            sh->count++;
        }
    }
    ep_free(old);
}

ep_dedup_result_t ep_dedup_reserve(ep_dedup_t *d, const char *id, size_t len, int64_t now_s)
{
    uint64_t h = hash_id(id, len);
    shard_t *sh = &d->shards[h % N_SHARDS];
    ep_dedup_result_t res = EP_DEDUP_NEW;
    entry_t *e;

    pthread_mutex_lock(&sh->mu);
    e = find(sh, h);
    if (e->state != STATE_EMPTY && e->expires > now_s) {
        res = e->state == STATE_DONE ? EP_DEDUP_DONE : EP_DEDUP_PENDING;
    } else if (e->state != STATE_EMPTY) {
        /* Expired: reuse the slot. */
        e->state = STATE_PENDING;
        e->expires = now_s + PENDING_TTL_S;
    } else {
        if (sh->count + 1 > sh->cap * 3 / 4) {
            sweep(sh, now_s);
            e = find(sh, h);
        }
        if (sh->count + 1 <= sh->cap * 3 / 4) {
            e->hash = h;
            e->state = STATE_PENDING;
            e->expires = now_s + PENDING_TTL_S;
            sh->count++;
        }
    }
    pthread_mutex_unlock(&sh->mu);
    return res;
}

void ep_dedup_commit(ep_dedup_t *d, const char *id, size_t len, int64_t now_s)
{
    uint64_t h = hash_id(id, len);
    shard_t *sh = &d->shards[h % N_SHARDS];
    entry_t *e;

    pthread_mutex_lock(&sh->mu);
    e = find(sh, h);
    if (e->state != STATE_EMPTY) {
        e->state = STATE_DONE;
        e->expires = now_s + d->window_s;
    }
    pthread_mutex_unlock(&sh->mu);
}

void ep_dedup_release(ep_dedup_t *d, const char *id, size_t len)
{
    uint64_t h = hash_id(id, len);
    shard_t *sh = &d->shards[h % N_SHARDS];
    entry_t *e;

    pthread_mutex_lock(&sh->mu);
    e = find(sh, h);
    if (e->state == STATE_PENDING) {
        /* Expire it instead of deleting: deleting would break linear-probe chains. */
        e->expires = 0;
    }
    pthread_mutex_unlock(&sh->mu);
}

size_t ep_dedup_size(ep_dedup_t *d)
{
    size_t n = 0;

    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_lock(&d->shards[i].mu);
        n += d->shards[i].count;
        pthread_mutex_unlock(&d->shards[i].mu);
    }
    return n;
}

void ep_dedup_destroy(ep_dedup_t *d)
{
    if (d == NULL) {
        return;
    }
    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_destroy(&d->shards[i].mu);
        ep_free(d->shards[i].slots);
    }
    ep_free(d);
}
