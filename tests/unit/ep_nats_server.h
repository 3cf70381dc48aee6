#ifndef EP_NATS_SERVER_H
#define EP_NATS_SERVER_H

/*
 * A real nats-server (JetStream on, store in a temporary directory, a free
 * port) as a child process of a unit test.
 *
 *   ep_nats_server_t ns;
 *   ep_nats_server_start(&ns, 0);      // 0 = pick a free port
 *   ... ns.url ...
 *   ep_nats_server_stop(&ns);          // SIGTERM, wait
 *   ep_nats_server_restart(&ns);       // same port, same store
 *   ep_nats_server_cleanup(&ns);       // stop and remove the store
 *
 * The child gets PR_SET_PDEATHSIG, so a test that dies takes its server with
 * it. nats-server is installed by scripts/setup.sh: a missing binary fails
 * the test (it is not skipped).
 */

#include "base/ep_str.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct ep_nats_server_s {
    pid_t pid;
    int port;
    char dir[128];   /* temporary directory: store/ and server.log */
    char url[64];    /* nats://127.0.0.1:<port> */
    char binary[64]; /* path of nats-server */
} ep_nats_server_t;

/*
 * A port nobody listens on right now, picked at random below the kernel's
 * ephemeral range (bind(0) and every outgoing connect() take ports from that
 * range, so a port found there can be gone before the server binds it).
 */
static inline int ep_nats_free_port(void)
{
    static unsigned seed;
    int lo = 10000, hi = 32767, port = 0;
    FILE *f = fopen("/proc/sys/net/ipv4/ip_local_port_range", "r");

    if (f) {
        int eph = 0;

        if (fscanf(f, "%d", &eph) == 1 && eph > 12000) {
            hi = eph - 1;
        }
        fclose(f);
    }
    if (seed == 0) {
        seed = (unsigned)getpid() ^ (unsigned)time(NULL) ^ (unsigned)clock();
    }
    for (int i = 0; i < 1000 && port == 0; i++) {
        struct sockaddr_in a;
        int fd = socket(AF_INET, SOCK_STREAM, 0),
            p = lo + (int)(rand_r(&seed) % (unsigned)(hi - lo + 1));

        memset(&a, 0, sizeof(a));
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons((uint16_t)p);
        if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0) {
            port = p;
        }
        if (fd >= 0) {
            close(fd);
        }
    }
    return port;
}

/* 1 when something accepts TCP connections on 127.0.0.1:port. */
static inline int ep_nats_port_open(int port)
{
    struct sockaddr_in a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0) {
        close(fd);
    }
    return ok;
}

static inline void ep_nats_sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

/* Starts the child on ns->port with ns->dir/store. Returns 0 or -1 (message on stderr). */
static inline int ep_nats_server_spawn(ep_nats_server_t *ns)
{
    char port[16], store[160], logf[160];
    pid_t parent = getpid();

    snprintf(port, sizeof(port), "%d", ns->port);
    snprintf(store, sizeof(store), "%s/store", ns->dir);
    snprintf(logf, sizeof(logf), "%s/server.log", ns->dir);
    fflush(stdout);
    fflush(stderr);
    ns->pid = fork();
    if (ns->pid < 0) {
        perror("fork");
        return -1;
    }
    if (ns->pid == 0) {
        int fd = open(logf, O_WRONLY | O_CREAT | O_APPEND, 0644);

        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) {
            _exit(1);
        }
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execl(ns->binary, "nats-server", "-js", "-a", "127.0.0.1", "-p", port, "-sd", store,
              (char *)NULL);
        _exit(127);
    }
    /* Up when the port accepts; JetStream answers right after (clients retry anyway). */
    for (int i = 0; i < 1200; i++) { /* 30 s: a loaded machine starts it slowly */
        int st;

        if (ep_nats_port_open(ns->port)) {
            ep_nats_sleep_ms(50);
            return 0;
        }
        if (waitpid(ns->pid, &st, WNOHANG) == ns->pid) {
            fprintf(stderr, "nats-server exited early (see %s)\n", logf);
            ns->pid = 0;
            return -1;
        }
        ep_nats_sleep_ms(25);
    }
    fprintf(stderr, "nats-server did not listen on %d within 30 s\n", ns->port);
    return -1;
}

/* Finds nats-server, makes the store directory, starts it. port 0 = a free one. */
static inline int ep_nats_server_start(ep_nats_server_t *ns, int port)
{
    static const char *paths[] = {"/usr/sbin/nats-server", "/usr/bin/nats-server",
                                  "/usr/local/bin/nats-server", NULL};

    memset(ns, 0, sizeof(*ns));
    for (int i = 0; paths[i]; i++) {
        if (access(paths[i], X_OK) == 0) {
            snprintf(ns->binary, sizeof(ns->binary), "%s", paths[i]);
            break;
        }
    }
    if (ns->binary[0] == '\0') {
        fprintf(stderr, "nats-server is not installed (scripts/setup.sh installs it)\n");
        return -1;
    }
    snprintf(ns->dir, sizeof(ns->dir), "/tmp/ep-nats-unit-XXXXXX");
    if (mkdtemp(ns->dir) == NULL) {
        perror("mkdtemp");
        return -1;
    }
    ns->port = port ? port : ep_nats_free_port();
    snprintf(ns->url, sizeof(ns->url), "nats://127.0.0.1:%d", ns->port);
    return ep_nats_server_spawn(ns);
}

/* Stops the server with sig (SIGTERM: clean, SIGKILL: crash) and reaps it. */
static inline void ep_nats_server_signal_stop(ep_nats_server_t *ns, int sig)
{
    int st;

    if (ns->pid > 0) {
        kill(ns->pid, sig);
        waitpid(ns->pid, &st, 0);
        ns->pid = 0;
    }
}

static inline void ep_nats_server_stop(ep_nats_server_t *ns)
{
    ep_nats_server_signal_stop(ns, SIGTERM);
}

/* Starts it again on the same port and store. Returns 0 or -1. */
static inline int ep_nats_server_restart(ep_nats_server_t *ns)
{
    return ep_nats_server_spawn(ns);
}

static inline int ep_nats_rm_entry(const char *path, const struct stat *st, int flag,
                                   struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* Stops the server and removes its directory. */
static inline void ep_nats_server_cleanup(ep_nats_server_t *ns)
{
    ep_nats_server_stop(ns);
    if (strncmp(ns->dir, EP_STRLIT("/tmp/ep-nats-unit-")) == 0) {
        nftw(ns->dir, ep_nats_rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    }
}

#endif /* EP_NATS_SERVER_H */
