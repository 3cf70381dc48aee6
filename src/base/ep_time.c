#include "base/ep_time.h"
#include "base/ep_error.h"

#include <errno.h>
#include <stdio.h>
#include <time.h>

int64_t ep_time_now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ep_time_now_ms(void)
{
    return ep_time_now_us() / 1000;
}

int64_t ep_time_mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t ep_time_mono_ms(void)
{
    return ep_time_mono_ns() / 1000000;
}

void ep_time_deadline_ts(struct timespec *ts, clockid_t clock, int64_t ms_from_now)
{
    int64_t nsec;

    clock_gettime(clock, ts);
    nsec = (int64_t)ts->tv_nsec + (ms_from_now % 1000) * 1000000;
    ts->tv_sec += (time_t)(ms_from_now / 1000);
    if (nsec >= 1000000000) {
        ts->tv_sec++;
        nsec -= 1000000000;
    } else if (nsec < 0) {
        ts->tv_sec--;
        nsec += 1000000000;
    }
    ts->tv_nsec = (long)nsec;
}

void ep_time_sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};

    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static int digits(const char *s, size_t n, size_t at, size_t count, int *out)
{
    int v = 0;
    size_t i;

    if (at + count > n) {
        return -1;
    }
    for (i = 0; i < count; i++) {
        char c = s[at + i];
        if (c < '0' || c > '9') {
            return -1;
        }
        v = v * 10 + (c - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    int64_t era, yoe, doy, doe;

    y -= m <= 2;
    era = (y >= 0 ? y : y - 399) / 400;
    yoe = y - era * 400;
    doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int ep_time_parse_rfc3339(const char *s, size_t n, int64_t *out_ms)
{
    int Y, M, D, h, mi, sec, oh = 0, om = 0;
    int64_t ms = 0, frac_scale = 100, t;
    size_t i = 19;

    if (n < 20 || digits(s, n, 0, 4, &Y) || s[4] != '-' || digits(s, n, 5, 2, &M) || s[7] != '-' ||
        digits(s, n, 8, 2, &D) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        digits(s, n, 11, 2, &h) || s[13] != ':' || digits(s, n, 14, 2, &mi) || s[16] != ':' ||
        digits(s, n, 17, 2, &sec)) {
        return EP_EPARSE;
    }
    if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || mi > 59 || sec > 60) {
        return EP_EPARSE;
    }
    if (i < n && s[i] == '.') {
        i++;
        if (i >= n || s[i] < '0' || s[i] > '9') {
            return EP_EPARSE;
        }
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            ms += (s[i] - '0') * frac_scale;
            frac_scale /= 10;
            i++;
        }
    }
    if (i >= n) {
        return EP_EPARSE;
    }
    if (s[i] == 'Z' || s[i] == 'z') {
        i++;
    } else if (s[i] == '+' || s[i] == '-') {
        int sign = s[i] == '-' ? -1 : 1;
        if (digits(s, n, i + 1, 2, &oh) || i + 3 >= n || s[i + 3] != ':' ||
            digits(s, n, i + 4, 2, &om) || oh > 23 || om > 59) {
            return EP_EPARSE;
        }
        oh *= sign;
        om *= sign;
        i += 6;
    } else {
        return EP_EPARSE;
    }
    if (i != n) {
        return EP_EPARSE;
    }
    t = days_from_civil(Y, M, D) * 86400 + h * 3600 + mi * 60 + sec - (oh * 3600 + om * 60);
    *out_ms = t * 1000 + ms;
    return 0;
}

void ep_time_format_rfc3339(int64_t ms, char *out, size_t outlen)
{
    time_t secs = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    int milli = (int)(ms - (int64_t)secs * 1000);
    struct tm tm;

    gmtime_r(&secs, &tm);
    snprintf(out, outlen, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
}
