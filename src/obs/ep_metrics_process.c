/*
 * The process_* metrics, read from /proc at scrape time (Linux), with the
 * names and meanings the Prometheus client libraries use.
 */
#include "obs/ep_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file into buf (NUL-terminated). Returns its length or -1. */
static long read_small(const char *path, char *buf, size_t len)
{
    FILE *f = fopen(path, "re");
    size_t n;

    if (f == NULL) {
        return -1;
    }
    n = fread(buf, 1, len - 1, f);
    fclose(f);
    buf[n] = '\0';
    return (long)n;
}

static long boot_time_s(void)
{
    char buf[8192];
    const char *p;

    if (read_small("/proc/stat", buf, sizeof(buf)) < 0 || (p = strstr(buf, "\nbtime ")) == NULL) {
        return 0;
    }
    return strtol(p + 7, NULL, 10);
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    int n = 0;

    if (d == NULL) {
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') {
            n++;
        }
    }
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

void ep_metrics_process_collect(void *arg, ep_buf_t *out)
{
    char buf[1024];
    const char *p;
    double ticks = (double)sysconf(_SC_CLK_TCK), page = (double)sysconf(_SC_PAGESIZE);
    unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
    long long rss = 0;
    struct rlimit rl;
    int fds;

    if (read_small("/proc/self/stat", buf, sizeof(buf)) > 0 && (p = strrchr(buf, ')')) != NULL) {
        /* Fields after "(comm)": 3 state ... 14 utime 15 stime ... 22 starttime 23 vsize 24 rss. */
        int field = 2;
        char *save = NULL, *tok, *copy = buf + (p - buf) + 1;

        for (tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
            field++;
            if (field == 14) {
                utime = strtoull(tok, NULL, 10);
            } else if (field == 15) {
                stime = strtoull(tok, NULL, 10);
            } else if (field == 22) {
                start = strtoull(tok, NULL, 10);
            } else if (field == 23) {
                vsize = strtoull(tok, NULL, 10);
            } else if (field == 24) {
                rss = strtoll(tok, NULL, 10);
                break;
            }
        }
    }
    ep_metrics_put_family(out, "process_cpu_seconds_total", EP_METRIC_COUNTER,
                          "Total user and system CPU time spent in seconds.");
    ep_metrics_put_sample(out, "process_cpu_seconds_total", 0, NULL, NULL,
                          (double)(utime + stime) / ticks);
    ep_metrics_put_family(out, "process_resident_memory_bytes", EP_METRIC_GAUGE,
                          "Resident memory size in bytes.");
    ep_metrics_put_sample(out, "process_resident_memory_bytes", 0, NULL, NULL, (double)rss * page);
    ep_metrics_put_family(out, "process_virtual_memory_bytes", EP_METRIC_GAUGE,
                          "Virtual memory size in bytes.");
    ep_metrics_put_sample(out, "process_virtual_memory_bytes", 0, NULL, NULL, (double)vsize);
    fds = open_fds();
    if (fds >= 0) {
        ep_metrics_put_family(out, "process_open_fds", EP_METRIC_GAUGE,
                              "Number of open file descriptors.");
        ep_metrics_put_sample(out, "process_open_fds", 0, NULL, NULL, (double)fds);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        ep_metrics_put_family(out, "process_max_fds", EP_METRIC_GAUGE,
                              "Maximum number of open file descriptors.");
        ep_metrics_put_sample(out, "process_max_fds", 0, NULL, NULL,
                              rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
    }
    ep_metrics_put_family(out, "process_start_time_seconds", EP_METRIC_GAUGE,
                          "Start time of the process since unix epoch in seconds.");
    ep_metrics_put_sample(out, "process_start_time_seconds", 0, NULL, NULL,
                          (double)boot_time_s() + (double)start / ticks);
}
