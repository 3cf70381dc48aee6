/*
 * Idempotency window: 64 shards, each under its own mutex, each made of
 *
 *   ring   a FIFO of cap entries {hash, expires, state} in insertion order: the
 *          ring's head is the oldest id, new ids go to its tail. Entries never
 *          move; a released id leaves a hole (EMPTY) until the head passes it.
 *   index  an open-addressing (linear probing) table of 2 * cap or more cells,
 *          each the high 32 bits of an id's hash and its ring slot + 1 (0 = empty).
 *          Deletion shifts the following cells back (no tombstones), so probe
 *          sequences stay as short as the load (at most 1/2) makes them.
 *
 * An insert first drops up to TIDY_PER_OP expired entries or holes from the
 * head; if the ring is still full, it evicts the head (skipping at most
 * SCAN_PER_OP - 1 pending reservations or, when holes exist, entries, by moving
 * them to the tail without copying). So every operation does a bounded number
 * of probes and no allocation: all memory comes from ep_dedup_create.
 *
 * The effective window: an id is evicted only when it is the oldest of its
 * shard; `horizon` is the newest commit (or reservation) time of an evicted id
 * whose window had not ended, so every id committed after it is still held.
 */
#include "event/ep_dedup.h"
#include "base/ep_log.h"
#include "base/ep_mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <time.h>

#define N_SHARDS      64
#define PENDING_TTL_S 120 /* a reservation whose callback never came is dropped after this */
#define TIDY_PER_OP   2   /* stale head entries dropped per insert */
#define SCAN_PER_OP   4   /* head entries a full ring looks at before evicting one */
#define STATE_EMPTY   0
#define STATE_PENDING 1
#define STATE_DONE    2
#define CELL_TAG      0xffffffff00000000ULL
#define CELL_SLOT     0x00000000ffffffffULL
#define NO_HORIZON    INT64_MIN

typedef struct entry_s {
    uint64_t hash;
    int64_t expires;
    uint8_t state;
} entry_t;

typedef struct shard_s {
    pthread_mutex_t mu;
    entry_t *ring;   /* cap entries; [head, head + len) holds ids and holes, the rest is EMPTY */
    uint64_t *index; /* imask + 1 cells */
    size_t cap, head, len;
    size_t live; /* entries not EMPTY */
    size_t imask;
    int64_t horizon;  /* see the top of the file; NO_HORIZON before any early eviction */
    uint64_t evicted; /* ids evicted before their window ended */
    uint64_t probes;  /* index cells examined or moved */
    char pad[64];
} shard_t;

struct ep_dedup_s {
    int window_s;
    uint64_t seed; /* keys the hash: ids that collide cannot be computed in advance */
    size_t capacity;
    const char *setting;
    atomic_int warned;
    shard_t shards[N_SHARDS];
};

/* 64-bit FNV-1a from a per-table random basis, then a final avalanche mix. */
static uint64_t hash_id(uint64_t seed, const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;

    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ULL;
    }
    h ^= seed >> 29;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return h;
}

static uint64_t random_seed(void *salt)
{
    uint64_t s = 0;

    if (getrandom(&s, sizeof(s), GRND_NONBLOCK) != (ssize_t)sizeof(s)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        s = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ULL ^ (uint64_t)ts.tv_sec ^
            (uint64_t)(uintptr_t)salt;
    }
    return s;
}

ep_dedup_t *ep_dedup_create(int window_s, size_t capacity)
{
    ep_dedup_t *d = ep_calloc(1, sizeof(*d));
    size_t per = (capacity + N_SHARDS - 1) / N_SHARDS;
    size_t cells = 16;

    per = per < 4 ? 4 : per;
    ep_assert(per < CELL_SLOT);
    while (cells < per * 2) {
        cells *= 2;
    }
    d->window_s = window_s;
    d->seed = random_seed(d);
    d->capacity = per * N_SHARDS;
    d->setting = "capacity";
    atomic_init(&d->warned, 0);
    for (int i = 0; i < N_SHARDS; i++) {
        shard_t *sh = &d->shards[i];
        pthread_mutex_init(&sh->mu, NULL);
        sh->ring = ep_calloc(per, sizeof(entry_t));
        sh->index = ep_calloc(cells, sizeof(uint64_t));
        sh->cap = per;
        sh->imask = cells - 1;
        sh->horizon = NO_HORIZON;
    }
    return d;
}

void ep_dedup_set_name(ep_dedup_t *d, const char *setting)
{
    d->setting = setting;
}

static size_t home(const shard_t *sh, uint64_t tag)
{
    return (size_t)(tag >> 32) & sh->imask;
}

static size_t ring_next(const shard_t *sh, size_t slot)
{
    return slot + 1 == sh->cap ? 0 : slot + 1;
}

/* The cell holding h (*found = 1), or the empty cell ending its probe sequence. */
static size_t probe(shard_t *sh, uint64_t h, int *found)
{
    uint64_t tag = h & CELL_TAG;

    for (size_t i = home(sh, tag);; i = (i + 1) & sh->imask) {
        uint64_t c = sh->index[i];
        sh->probes++;
        if (c == 0) {
            *found = 0;
            return i;
        }
        if ((c & CELL_TAG) == tag && sh->ring[(c & CELL_SLOT) - 1].hash == h) {
            *found = 1;
            return i;
        }
    }
}

/* The cell that points at ring slot `slot` (which holds an id). */
static size_t cell_of(shard_t *sh, size_t slot)
{
    uint64_t want = (sh->ring[slot].hash & CELL_TAG) | (uint64_t)(slot + 1);

    for (size_t i = home(sh, want);; i = (i + 1) & sh->imask) {
        sh->probes++;
        if (sh->index[i] == want) {
            return i;
        }
        ep_assert(sh->index[i] != 0);
    }
}

/* Empties cell i, shifting back the cells after it that may move (no tombstone). */
static void unindex(shard_t *sh, size_t i)
{
    size_t mask = sh->imask;

    for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
        uint64_t c = sh->index[j];
        sh->probes++;
        if (c == 0) {
            break;
        }
        /* c may fill the hole when i lies on its probe path, from its home to j. */
        if (((j - home(sh, c)) & mask) >= ((j - i) & mask)) {
            sh->index[i] = c;
            i = j;
        }
    }
    sh->index[i] = 0;
}

/* Forgets the id in ring slot `slot`, indexed at `cell`; the slot becomes a hole. */
static void forget(shard_t *sh, size_t cell, size_t slot)
{
    size_t last = sh->head + sh->len - 1;

    unindex(sh, cell);
    sh->ring[slot].state = STATE_EMPTY;
    sh->live--;
    if (slot == sh->head) {
        sh->head = ring_next(sh, slot);
        sh->len--;
    } else if (slot == (last >= sh->cap ? last - sh->cap : last)) {
        sh->len--;
    }
}

static void pop_head(shard_t *sh)
{
    size_t slot = sh->head;

    if (sh->ring[slot].state != STATE_EMPTY) {
        unindex(sh, cell_of(sh, slot));
        sh->ring[slot].state = STATE_EMPTY;
        sh->live--;
    }
    sh->head = ring_next(sh, slot);
    sh->len--;
}

static int stale(const entry_t *e, int64_t now_s)
{
    return e->state == STATE_EMPTY || e->expires <= now_s;
}

/* When the entry was reserved (pending) or committed. */
static int64_t stamp(const ep_dedup_t *d, const entry_t *e)
{
    return e->expires - (e->state == STATE_DONE ? d->window_s : PENDING_TTL_S);
}

/*
 * Frees the ring's tail slot: drops stale head entries, then, when the ring is
 * full, evicts its head. *evicted_age is set to the age of an id evicted before
 * its window ended (else left alone).
 */
static void make_room(const ep_dedup_t *d, shard_t *sh, int64_t now_s, int64_t *evicted_age)
{
    for (int t = 0; t < TIDY_PER_OP && sh->len > 0 && stale(&sh->ring[sh->head], now_s); t++) {
        pop_head(sh);
    }
    if (sh->len < sh->cap) {
        return;
    }
    for (int s = 1;; s++) {
        entry_t *e = &sh->ring[sh->head];
        if (stale(e, now_s)) {
            pop_head(sh);
            return;
        }
        if (s < SCAN_PER_OP && (e->state == STATE_PENDING || sh->live < sh->len)) {
            /* Keep a request in flight, or look for a hole: in a full ring, moving the
               head on makes its entry the newest without copying anything. */
            sh->head = ring_next(sh, sh->head);
            continue;
        }
        int64_t t = stamp(d, e);
        if (t > sh->horizon) {
            sh->horizon = t;
        }
        sh->evicted++;
        *evicted_age = now_s > t ? now_s - t : 0;
        pop_head(sh);
        return;
    }
}

static void insert(const ep_dedup_t *d, shard_t *sh, uint64_t h, uint8_t state, int64_t expires,
                   int64_t now_s, int64_t *evicted_age)
{
    size_t slot, cell;
    int found;

    make_room(d, sh, now_s, evicted_age);
    cell = probe(sh, h, &found); /* after make_room: removals shift cells */
    slot = sh->head + sh->len;
    slot = slot >= sh->cap ? slot - sh->cap : slot;
    sh->ring[slot] = (entry_t){.hash = h, .expires = expires, .state = state};
    sh->index[cell] = (h & CELL_TAG) | (uint64_t)(slot + 1);
    sh->len++;
    sh->live++;
}

static void warn_evicting(ep_dedup_t *d, int64_t age)
{
    if (atomic_exchange(&d->warned, 1) == 0) {
        ep_log_warn("dedup",
                    "%s=%zu ids reached: the oldest ids are now evicted before their %d s "
                    "window ended, the effective window is down to %lld s (a repeat of an "
                    "older id may be missed; see /stats dedup.effective_window_s, metric "
                    "ep_dedup_effective_window_seconds)",
                    d->setting, d->capacity, d->window_s, (long long)age);
    }
}

static shard_t *shard_of(ep_dedup_t *d, uint64_t h)
{
    return &d->shards[h % N_SHARDS];
}

/* Locks the shard of id and looks it up: *h its hash, *cell its index cell, *found whether known.
 */
static shard_t *lock_probe(ep_dedup_t *d, const char *id, size_t len, uint64_t *h, size_t *cell,
                           int *found)
{
    shard_t *sh;

    *h = hash_id(d->seed, id, len);
    sh = shard_of(d, *h);
    pthread_mutex_lock(&sh->mu);
    *cell = probe(sh, *h, found);
    return sh;
}

/* Unlocks sh; then, outside the lock, warns when an insert evicted a live entry. */
static void unlock_warn(ep_dedup_t *d, shard_t *sh, int64_t evicted_age)
{
    pthread_mutex_unlock(&sh->mu);
    if (evicted_age >= 0) {
        warn_evicting(d, evicted_age);
    }
}

ep_dedup_result_t ep_dedup_reserve(ep_dedup_t *d, const char *id, size_t len, int64_t now_s)
{
    uint64_t h;
    size_t cell;
    int found;
    shard_t *sh = lock_probe(d, id, len, &h, &cell, &found);
    ep_dedup_result_t res = EP_DEDUP_NEW;
    int64_t evicted_age = -1;

    if (found) {
        size_t slot = (size_t)(sh->index[cell] & CELL_SLOT) - 1;
        entry_t *e = &sh->ring[slot];
        if (e->expires > now_s) {
            res = e->state == STATE_DONE ? EP_DEDUP_DONE : EP_DEDUP_PENDING;
        } else {
            forget(sh, cell, slot); /* expired: remembered again below, as the newest */
        }
    }
    if (res == EP_DEDUP_NEW) {
        insert(d, sh, h, STATE_PENDING, now_s + PENDING_TTL_S, now_s, &evicted_age);
    }
    unlock_warn(d, sh, evicted_age);
    return res;
}

void ep_dedup_commit(ep_dedup_t *d, const char *id, size_t len, int64_t now_s)
{
    uint64_t h;
    size_t cell;
    int found;
    shard_t *sh = lock_probe(d, id, len, &h, &cell, &found);
    int64_t evicted_age = -1;

    if (found) {
        entry_t *e = &sh->ring[(sh->index[cell] & CELL_SLOT) - 1];
        e->state = STATE_DONE;
        e->expires = now_s + d->window_s;
    } else {
        /* Evicted while its event was being stored: the event is kept, remember it. */
        insert(d, sh, h, STATE_DONE, now_s + d->window_s, now_s, &evicted_age);
    }
    unlock_warn(d, sh, evicted_age);
}

void ep_dedup_release(ep_dedup_t *d, const char *id, size_t len)
{
    uint64_t h;
    size_t cell;
    int found;
    shard_t *sh = lock_probe(d, id, len, &h, &cell, &found);

    if (found) {
        size_t slot = (size_t)(sh->index[cell] & CELL_SLOT) - 1;
        if (sh->ring[slot].state == STATE_PENDING) {
            forget(sh, cell, slot);
        }
    }
    pthread_mutex_unlock(&sh->mu);
}

size_t ep_dedup_size(ep_dedup_t *d)
{
    size_t n = 0;

    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_lock(&d->shards[i].mu);
        n += d->shards[i].live;
        pthread_mutex_unlock(&d->shards[i].mu);
    }
    return n;
}

void ep_dedup_stats(ep_dedup_t *d, int64_t now_s, ep_dedup_stats_t *st)
{
    *st = (ep_dedup_stats_t){
        .capacity = d->capacity, .window_s = d->window_s, .effective_window_s = d->window_s};
    for (int i = 0; i < N_SHARDS; i++) {
        shard_t *sh = &d->shards[i];
        pthread_mutex_lock(&sh->mu);
        st->size += sh->live;
        st->evicted += sh->evicted;
        st->probes += sh->probes;
        if (sh->horizon != NO_HORIZON && now_s - sh->horizon < st->effective_window_s) {
            st->effective_window_s = now_s - sh->horizon < 0 ? 0 : now_s - sh->horizon;
        }
        pthread_mutex_unlock(&sh->mu);
    }
}

void ep_dedup_destroy(ep_dedup_t *d)
{
    if (d == NULL) {
        return;
    }
    for (int i = 0; i < N_SHARDS; i++) {
        pthread_mutex_destroy(&d->shards[i].mu);
        ep_free(d->shards[i].ring);
        ep_free(d->shards[i].index);
    }
    ep_free(d);
}
