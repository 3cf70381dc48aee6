/*
 * Metrics registry and text exposition. Layout of the cell arena: stripe s
 * is a block of `stride` cells starting at arena + s * stride; a child owns
 * the same cell range in every block. A thread picks its stripe once, so two
 * threads only write the same cache line when they share a stripe.
 */
#include "obs/ep_metrics.h"
#include "base/ep_mem.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CELLS_PER_LINE 8 /* 64-byte cache line / 8-byte cell */

typedef _Atomic uint64_t cell_t;

struct ep_metric_child_s {
    ep_metric_t *fam;
    cell_t *cells; /* stripe 0 of this child; stripe s at cells + s * stride */
    size_t stride; /* cells per stripe in the arena */
    cell_t gauge;  /* gauges: the double's bits */
    char **values; /* nlabels copies */
    struct ep_metric_child_s *next;
};

struct ep_metric_s {
    ep_metrics_t *reg;
    char *name;
    char *help;
    ep_metric_type_t type;
    int nlabels;
    char *labels[EP_METRICS_MAX_LABELS];
    int nbounds;
    double bounds[EP_METRICS_MAX_BUCKETS];
    uint64_t thresholds[EP_METRICS_MAX_BUCKETS]; /* bounds in the observed unit */
    double scale;
    int nchildren;
    ep_metric_child_t *children, **tail;
    struct ep_metric_s *next;
};

typedef struct collector_s {
    ep_metrics_collect_cb cb;
    void *arg;
    struct collector_s *next;
} collector_t;

struct ep_metrics_s {
    pthread_mutex_t lock; /* families, children, collectors, arena use */
    void *arena_mem;
    cell_t *arena;
    size_t stride;
    size_t used;
    ep_metric_t *families, **tail;
    collector_t *collectors;
};

static atomic_uint next_stripe;
static _Thread_local int my_stripe = -1;

static inline size_t stripe(void)
{
    if (my_stripe < 0) {
        my_stripe = (int)(atomic_fetch_add_explicit(&next_stripe, 1, memory_order_relaxed) %
                          EP_METRICS_STRIPES);
    }
    return (size_t)my_stripe;
}

int ep_metrics_name_valid(const char *s, int label)
{
    if (s == NULL || *s == '\0') {
        return 0;
    }
    for (const char *p = s; *p; p++) {
        int alpha = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_' ||
                    (!label && *p == ':');
        int digit = *p >= '0' && *p <= '9';
        if (!alpha && !(digit && p != s)) {
            return 0;
        }
    }
    if (label && s[0] == '_' && s[1] == '_') {
        return 0; /* reserved for Prometheus' internal use */
    }
    return 1;
}

int ep_metrics_create(size_t cells, ep_metrics_t **out)
{
    ep_metrics_t *m = ep_calloc(1, sizeof(*m));
    uintptr_t p;

    if (cells == 0) {
        cells = EP_METRICS_DEFAULT_CELLS;
    }
    m->stride = (cells + CELLS_PER_LINE - 1) / CELLS_PER_LINE * CELLS_PER_LINE;
    /* calloc: untouched stripes stay unbacked zero pages; align by hand to 64 bytes. */
    m->arena_mem = ep_calloc(1, EP_METRICS_STRIPES * m->stride * sizeof(cell_t) + 64);
    p = ((uintptr_t)m->arena_mem + 63) & ~(uintptr_t)63;
    m->arena = (cell_t *)p;
    m->tail = &m->families;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

static ep_metric_t *find_family(ep_metrics_t *m, const char *name)
{
    for (ep_metric_t *f = m->families; f; f = f->next) {
        if (strcmp(f->name, name) == 0) {
            return f;
        }
    }
    return NULL;
}

static ep_metric_child_t *child_new(ep_metric_t *f, const char *const *values);

static ep_metric_t *family_new(ep_metrics_t *m, ep_metric_type_t type, const char *name,
                               const char *help, int nlabels, const char *const *label_names,
                               const double *bounds, int nbounds, double scale)
{
    ep_metric_t *f;

    if (!ep_metrics_name_valid(name, 0) || nlabels < 0 || nlabels > EP_METRICS_MAX_LABELS ||
        nbounds < 0 || nbounds > EP_METRICS_MAX_BUCKETS || (nbounds > 0 && !(scale > 0))) {
        return NULL;
    }
    for (int i = 0; i < nlabels; i++) {
        if (!ep_metrics_name_valid(label_names[i], 1) ||
            (type == EP_METRIC_HISTOGRAM && strcmp(label_names[i], "le") == 0)) {
            return NULL;
        }
    }
    for (int i = 1; i < nbounds; i++) {
        if (!(bounds[i] > bounds[i - 1])) {
            return NULL;
        }
    }
    pthread_mutex_lock(&m->lock);
    if (find_family(m, name)) {
        pthread_mutex_unlock(&m->lock);
        return NULL;
    }
    f = ep_calloc(1, sizeof(*f));
    f->reg = m;
    f->name = ep_strdup(name);
    f->help = ep_strdup(help ? help : "");
    f->type = type;
    f->nlabels = nlabels;
    for (int i = 0; i < nlabels; i++) {
        f->labels[i] = ep_strdup(label_names[i]);
    }
    f->nbounds = nbounds;
    f->scale = scale;
    for (int i = 0; i < nbounds; i++) {
        f->bounds[i] = bounds[i];
        /* Rounded, so 0.001 s is exactly 1000000 ns. */
        f->thresholds[i] = (uint64_t)llround(bounds[i] / scale);
    }
    f->tail = &f->children;
    *m->tail = f;
    m->tail = &f->next;
    /* A family without labels has exactly one child: create it, so it shows 0 at once. */
    if (nlabels == 0) {
        child_new(f, NULL);
    }
    pthread_mutex_unlock(&m->lock);
    return f;
}

ep_metric_t *ep_metrics_counter(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                                const char *const *label_names)
{
    return family_new(m, EP_METRIC_COUNTER, name, help, nlabels, label_names, NULL, 0, 1.0);
}

ep_metric_t *ep_metrics_gauge(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                              const char *const *label_names)
{
    return family_new(m, EP_METRIC_GAUGE, name, help, nlabels, label_names, NULL, 0, 1.0);
}

ep_metric_t *ep_metrics_histogram(ep_metrics_t *m, const char *name, const char *help, int nlabels,
                                  const char *const *label_names, const double *bounds, int nbounds,
                                  double scale)
{
    return family_new(m, EP_METRIC_HISTOGRAM, name, help, nlabels, label_names, bounds, nbounds,
                      scale);
}

/* Cells a child needs: counter 1; histogram one per bound, +Inf and the sum. */
static size_t child_cells(const ep_metric_t *f)
{
    switch (f->type) {
    case EP_METRIC_COUNTER:
        return 1;
    case EP_METRIC_HISTOGRAM:
        return (size_t)f->nbounds + 2;
    default:
        return 0;
    }
}

/* Registry lock held. */
static ep_metric_child_t *child_new(ep_metric_t *f, const char *const *values)
{
    ep_metrics_t *m = f->reg;
    size_t need = child_cells(f);
    ep_metric_child_t *c;

    if (f->nchildren >= EP_METRICS_MAX_CHILDREN || m->used + need > m->stride) {
        return NULL;
    }
    c = ep_calloc(1, sizeof(*c));
    c->fam = f;
    c->cells = m->arena + m->used;
    c->stride = m->stride;
    m->used += need;
    if (f->nlabels > 0) {
        c->values = ep_calloc((size_t)f->nlabels, sizeof(char *));
        for (int i = 0; i < f->nlabels; i++) {
            c->values[i] = ep_strdup(values[i] ? values[i] : "");
        }
    }
    *f->tail = c;
    f->tail = &c->next;
    f->nchildren++;
    return c;
}

ep_metric_child_t *ep_metrics_child(ep_metric_t *f, const char *const *label_values)
{
    ep_metric_child_t *c;

    if (f == NULL) {
        return NULL;
    }
    pthread_mutex_lock(&f->reg->lock);
    for (c = f->children; c; c = c->next) {
        int same = 1;
        for (int i = 0; i < f->nlabels && same; i++) {
            same = strcmp(c->values[i], label_values[i] ? label_values[i] : "") == 0;
        }
        if (same) {
            break;
        }
    }
    if (c == NULL) {
        c = child_new(f, label_values);
    }
    pthread_mutex_unlock(&f->reg->lock);
    return c;
}

void ep_metrics_collector_add(ep_metrics_t *m, ep_metrics_collect_cb cb, void *arg)
{
    collector_t *k = ep_calloc(1, sizeof(*k));
    collector_t **pp;

    k->cb = cb;
    k->arg = arg;
    pthread_mutex_lock(&m->lock);
    for (pp = &m->collectors; *pp; pp = &(*pp)->next) {
    }
    *pp = k;
    pthread_mutex_unlock(&m->lock);
}

void ep_metrics_collector_remove(ep_metrics_t *m, ep_metrics_collect_cb cb, void *arg)
{
    pthread_mutex_lock(&m->lock);
    for (collector_t **pp = &m->collectors; *pp; pp = &(*pp)->next) {
        if ((*pp)->cb == cb && (*pp)->arg == arg) {
            collector_t *k = *pp;
            *pp = k->next;
            ep_free(k);
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------ hot path */

void ep_metrics_counter_add(ep_metric_child_t *c, uint64_t n)
{
    if (c == NULL) {
        return;
    }
    atomic_fetch_add_explicit(c->cells + stripe() * c->stride, n, memory_order_relaxed);
}

void ep_metrics_hist_observe(ep_metric_child_t *c, uint64_t v)
{
    const ep_metric_t *f;
    cell_t *cells;
    int b = 0;

    if (c == NULL) {
        return;
    }
    f = c->fam;
    while (b < f->nbounds && v > f->thresholds[b]) {
        b++;
    }
    cells = c->cells + stripe() * c->stride;
    atomic_fetch_add_explicit(&cells[b], 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&cells[f->nbounds + 1], v, memory_order_relaxed);
}

void ep_metrics_gauge_set(ep_metric_child_t *c, double v)
{
    uint64_t bits;

    if (c == NULL) {
        return;
    }
    memcpy(&bits, &v, sizeof(bits));
    atomic_store_explicit(&c->gauge, bits, memory_order_relaxed);
}

/* ------------------------------------------------------------ reading */

static uint64_t cell_sum(const ep_metric_child_t *c, size_t k)
{
    uint64_t s = 0;

    for (size_t i = 0; i < EP_METRICS_STRIPES; i++) {
        s += atomic_load_explicit(c->cells + i * c->stride + k, memory_order_relaxed);
    }
    return s;
}

uint64_t ep_metrics_counter_value(const ep_metric_child_t *c)
{
    if (c == NULL || c->fam->type != EP_METRIC_COUNTER) {
        return 0;
    }
    return cell_sum(c, 0);
}

int ep_metrics_hist_read(const ep_metric_child_t *c, uint64_t *count, double *sum, uint64_t *cum)
{
    const ep_metric_t *f;
    uint64_t run = 0;

    if (c == NULL || c->fam->type != EP_METRIC_HISTOGRAM) {
        *count = 0;
        *sum = 0;
        return 0;
    }
    f = c->fam;
    /*
     * The buckets are read before the sum and stripe by stripe, so a scrape
     * racing an observation may see it in the count but not yet in the sum:
     * harmless, the next scrape is consistent.
     */
    for (int b = 0; b <= f->nbounds; b++) {
        run += cell_sum(c, (size_t)b);
        if (cum && b < f->nbounds) {
            cum[b] = run;
        }
    }
    *count = run;
    *sum = (double)cell_sum(c, (size_t)f->nbounds + 1) * f->scale;
    return f->nbounds;
}

double ep_metrics_hist_quantile(const ep_metric_child_t *c, double q)
{
    uint64_t cum[EP_METRICS_MAX_BUCKETS], count, prev = 0;
    double sum, rank;
    int nb = ep_metrics_hist_read(c, &count, &sum, cum);

    if (count == 0 || nb == 0) {
        return NAN;
    }
    rank = q * (double)count;
    for (int b = 0; b < nb; b++) {
        if ((double)cum[b] >= rank && cum[b] > 0) {
            double lo = b ? c->fam->bounds[b - 1] : 0.0;
            double hi = c->fam->bounds[b];
            double in = (double)(cum[b] - prev);
            return in > 0 ? lo + (hi - lo) * (rank - (double)prev) / in : hi;
        }
        prev = cum[b];
    }
    /* In the +Inf bucket: the largest finite bound, as histogram_quantile answers. */
    return c->fam->bounds[nb - 1];
}

/* ------------------------------------------------------------ exposition */

void ep_metrics_put_label_value(ep_buf_t *out, const char *v)
{
    for (const char *p = v; *p; p++) {
        switch (*p) {
        case '\\':
            ep_buf_puts(out, "\\\\");
            break;
        case '"':
            ep_buf_puts(out, "\\\"");
            break;
        case '\n':
            ep_buf_puts(out, "\\n");
            break;
        default:
            ep_buf_putc(out, *p);
        }
    }
}

void ep_metrics_put_value(ep_buf_t *out, double v)
{
    if (isnan(v)) {
        ep_buf_puts(out, "NaN");
    } else if (isinf(v)) {
        ep_buf_puts(out, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        ep_buf_printf(out, "%.0f", v);
    } else {
        ep_buf_printf(out, "%.15g", v);
    }
}

void ep_metrics_put_family(ep_buf_t *out, const char *name, ep_metric_type_t type, const char *help)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};

    ep_buf_printf(out, "# HELP %s ", name);
    for (const char *p = help ? help : ""; *p; p++) {
        if (*p == '\\') {
            ep_buf_puts(out, "\\\\");
        } else if (*p == '\n') {
            ep_buf_puts(out, "\\n");
        } else {
            ep_buf_putc(out, *p);
        }
    }
    ep_buf_printf(out, "\n# TYPE %s %s\n", name, types[type]);
}

/* name{labels[,le="x"]} */
static void put_series(ep_buf_t *out, const char *name, const char *suffix, int nlabels,
                       const char *const *names, const char *const *values, const char *le)
{
    ep_buf_puts(out, name);
    if (suffix) {
        ep_buf_puts(out, suffix);
    }
    if (nlabels > 0 || le) {
        ep_buf_putc(out, '{');
        for (int i = 0; i < nlabels; i++) {
            ep_buf_printf(out, "%s%s=\"", i ? "," : "", names[i]);
            ep_metrics_put_label_value(out, values[i]);
            ep_buf_putc(out, '"');
        }
        if (le) {
            ep_buf_printf(out, "%sle=\"%s\"", nlabels ? "," : "", le);
        }
        ep_buf_putc(out, '}');
    }
    ep_buf_putc(out, ' ');
}

void ep_metrics_put_sample(ep_buf_t *out, const char *name, int nlabels,
                           const char *const *label_names, const char *const *label_values,
                           double value)
{
    put_series(out, name, NULL, nlabels, label_names, label_values, NULL);
    ep_metrics_put_value(out, value);
    ep_buf_putc(out, '\n');
}

static void render_child(ep_buf_t *out, const ep_metric_t *f, const ep_metric_child_t *c)
{
    const char *const *ln = (const char *const *)f->labels;
    const char *const *lv = (const char *const *)c->values;
    uint64_t cum[EP_METRICS_MAX_BUCKETS] = {0}, count;
    double sum, g;
    uint64_t bits;
    char le[40];

    switch (f->type) {
    case EP_METRIC_COUNTER:
        put_series(out, f->name, NULL, f->nlabels, ln, lv, NULL);
        ep_buf_put_u64(out, cell_sum(c, 0));
        ep_buf_putc(out, '\n');
        break;
    case EP_METRIC_GAUGE:
        bits = atomic_load_explicit(&c->gauge, memory_order_relaxed);
        memcpy(&g, &bits, sizeof(g));
        ep_metrics_put_sample(out, f->name, f->nlabels, ln, lv, g);
        break;
    case EP_METRIC_HISTOGRAM:
        ep_metrics_hist_read(c, &count, &sum, cum);
        for (int b = 0; b < f->nbounds; b++) {
            ep_buf_t tmp = EP_BUF_INIT;
            ep_metrics_put_value(&tmp, f->bounds[b]);
            snprintf(le, sizeof(le), "%.*s", (int)tmp.len, tmp.data);
            ep_buf_close(&tmp);
            put_series(out, f->name, "_bucket", f->nlabels, ln, lv, le);
            ep_buf_put_u64(out, cum[b]);
            ep_buf_putc(out, '\n');
        }
        put_series(out, f->name, "_bucket", f->nlabels, ln, lv, "+Inf");
        ep_buf_put_u64(out, count);
        ep_buf_putc(out, '\n');
        put_series(out, f->name, "_sum", f->nlabels, ln, lv, NULL);
        ep_metrics_put_value(out, sum);
        ep_buf_putc(out, '\n');
        put_series(out, f->name, "_count", f->nlabels, ln, lv, NULL);
        ep_buf_put_u64(out, count);
        ep_buf_putc(out, '\n');
        break;
    }
}

void ep_metrics_render(ep_metrics_t *m, ep_buf_t *out)
{
    pthread_mutex_lock(&m->lock);
    for (const ep_metric_t *f = m->families; f; f = f->next) {
        ep_metrics_put_family(out, f->name, f->type, f->help);
        for (const ep_metric_child_t *c = f->children; c; c = c->next) {
            render_child(out, f, c);
        }
    }
    for (collector_t *k = m->collectors; k; k = k->next) {
        k->cb(k->arg, out);
    }
    pthread_mutex_unlock(&m->lock);
}

void ep_metrics_destroy(ep_metrics_t *m)
{
    ep_metric_t *f, *fn;
    collector_t *k, *kn;

    if (m == NULL) {
        return;
    }
    for (f = m->families; f; f = fn) {
        ep_metric_child_t *c, *cn;
        fn = f->next;
        for (c = f->children; c; c = cn) {
            cn = c->next;
            for (int i = 0; c->values && i < f->nlabels; i++) {
                ep_free(c->values[i]);
            }
            ep_free(c->values);
            ep_free(c);
        }
        for (int i = 0; i < f->nlabels; i++) {
            ep_free(f->labels[i]);
        }
        ep_free(f->name);
        ep_free(f->help);
        ep_free(f);
    }
    for (k = m->collectors; k; k = kn) {
        kn = k->next;
        ep_free(k);
    }
    pthread_mutex_destroy(&m->lock);
    ep_free(m->arena_mem);
    ep_free(m);
}
