/* Tests for the processed-event sink (src/pipeline/ep_sink.c). */
#include "base/ep_str.h"
#include "ep_test.h"

#include "base/ep_buf.h"
#include "base/ep_error.h"
#include "event/ep_event.h"
#include "base/ep_mem.h"
#include "pipeline/ep_sink.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

static char tmpdir[64];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/ep_sink_XXXXXX");
    EP_ASSERT(mkdtemp(tmpdir) != NULL);
}

/* Reads a whole file into a new NUL-terminated buffer (ep_free). */
static char *slurp(const char *path, size_t *len)
{
    ep_buf_t b = EP_BUF_INIT;
    char chunk[4096];
    ssize_t n;
    int fd = open(path, O_RDONLY);

    EP_ASSERT(fd >= 0);
    ep_buf_puts(&b, "");
    while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
        ep_buf_append(&b, chunk, (size_t)n);
    }
    close(fd);
    return ep_buf_steal(&b, len);
}

/* Checks that every line parses as a JSON object with an "id"; returns the line count. */
static size_t check_lines(char *text, size_t len)
{
    size_t lines = 0;
    char *p = text, *nl;

    EP_ASSERT(len == 0 || text[len - 1] == '\n');
    while ((nl = strchr(p, '\n')) != NULL) {
        char errbuf[128];
        yajl_val v, id;
        const char *path[] = {"id", NULL};

        *nl = '\0';
        v = yajl_tree_parse(p, errbuf, sizeof(errbuf));
        EP_ASSERT(v != NULL);
        EP_ASSERT(YAJL_IS_OBJECT(v));
        id = yajl_tree_get(v, path, yajl_t_string);
        EP_ASSERT(id != NULL);
        yajl_tree_free(v);
        lines++;
        p = nl + 1;
    }
    EP_ASSERT(*p == '\0');
    return lines;
}

static ep_event_t *make_event(const char *id)
{
    ep_event_t *ev = ep_event_create(id, "src \"quoted\"", "click", "u1", "d", 1, NULL, 0, 0);
    ev->processed_us = ev->received_us + 5;
    return ev;
}

static void test_invalid_specs(void)
{
    const char *bad[] = {"", "file:", "files:/tmp/x", "STDOUT", "none ", "kafka", NULL};
    ep_sink_t *s = (ep_sink_t *)&s;
    char err[256];

    for (int i = 0; bad[i]; i++) {
        err[0] = '\0';
        EP_ASSERT_EQ(ep_sink_create(bad[i], &s, err, sizeof(err)), EP_EINVAL);
        EP_ASSERT(s == NULL);
        EP_ASSERT(strstr(err, "PROCESSOR_SINK") != NULL);
        EP_ASSERT(strstr(err, "none, stdout or file:PATH") != NULL);
    }
    EP_ASSERT_EQ(ep_sink_create(NULL, &s, err, sizeof(err)), EP_EINVAL);
}

static void test_unopenable_file(void)
{
    ep_sink_t *s = NULL;
    char err[256] = "";

    EP_ASSERT_EQ(ep_sink_create("file:/nonexistent-dir/x/y.ndjson", &s, err, sizeof(err)), EP_EIO);
    EP_ASSERT(s == NULL);
    EP_ASSERT(strstr(err, "/nonexistent-dir/x/y.ndjson") != NULL);
}

static void test_none(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *ev = make_event("a");
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256];

    EP_ASSERT_EQ(ep_sink_create("none", &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, &ev, 1, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    EP_ASSERT_EQ(ep_sink_write(NULL, &ev, 1, &scratch), 0);
    ep_sink_destroy(s);
    ep_sink_destroy(NULL);
    ep_event_destroy(ev);
    ep_buf_close(&scratch);
}

static void test_stdout(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *ev = make_event("to-stdout");
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256], path[128], *text;
    size_t len;
    int saved, fd;

    /* Point fd 1 at a file for the duration of the write. */
    make_tmpdir();
    snprintf(path, sizeof(path), "%s/stdout.ndjson", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    EP_ASSERT(fd >= 0);
    fflush(stdout);
    saved = dup(STDOUT_FILENO);
    EP_ASSERT(dup2(fd, STDOUT_FILENO) == STDOUT_FILENO);
    close(fd);

    EP_ASSERT_EQ(ep_sink_create("stdout", &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, &ev, 1, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    ep_sink_destroy(s); /* must not close fd 1 */
    EP_ASSERT(write(STDOUT_FILENO, "", 0) == 0);

    dup2(saved, STDOUT_FILENO);
    close(saved);
    text = slurp(path, &len);
    EP_ASSERT_EQ(check_lines(text, len), 1);
    EP_ASSERT(strstr(text, "\"id\":\"to-stdout\"") != NULL);
    ep_free(text);
    ep_event_destroy(ev);
    ep_buf_close(&scratch);
    unlink(path);
    rmdir(tmpdir);
}

static void test_file_lines(void)
{
    ep_sink_t *s = NULL;
    ep_event_t *evs[3] = {make_event("a"), make_event("b\n\"c\""), make_event("d")};
    ep_buf_t scratch = EP_BUF_INIT;
    char err[256], spec[256], path[128], *text;
    size_t len;
    struct stat sb;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/out.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", path);
    umask(022);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs, 3, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs, 0, &scratch), 0);
    EP_ASSERT_EQ(ep_sink_flush(s, 1), 0);
    ep_sink_destroy(s);
    EP_ASSERT_EQ(stat(path, &sb), 0);
    EP_ASSERT_EQ(sb.st_mode & 0777, 0644);

    /* Reopening appends. */
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    EP_ASSERT_EQ(ep_sink_write(s, evs + 2, 1, &scratch), 0);
    ep_sink_destroy(s);

    text = slurp(path, &len);
    EP_ASSERT(strncmp(text, EP_STRLIT("{\"id\":\"a\",")) == 0);
    EP_ASSERT(strstr(text, "\"latency_us\":5}\n") != NULL);
    EP_ASSERT(strstr(text, "\"id\":\"b\\n\\\"c\\\"\"") != NULL);
    EP_ASSERT_EQ(check_lines(text, len), 4); /* cuts text into lines */
    ep_free(text);
    for (int i = 0; i < 3; i++) {
        ep_event_destroy(evs[i]);
    }
    ep_buf_close(&scratch);
    unlink(path);
    rmdir(tmpdir);
}

/* Several threads write batches at once: every line must stay whole. */
#define CW_THREADS 4
#define CW_BATCHES 200
#define CW_BATCH   50

typedef struct {
    ep_sink_t *s;
    int index;
} writer_t;

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    ep_event_t *evs[CW_BATCH];
    ep_buf_t scratch = EP_BUF_INIT;
    char id[32];

    for (int b = 0; b < CW_BATCHES; b++) {
        for (int i = 0; i < CW_BATCH; i++) {
            snprintf(id, sizeof(id), "w%d-%d-%d", w->index, b, i);
            evs[i] = make_event(id);
        }
        EP_ASSERT_EQ(ep_sink_write(w->s, evs, CW_BATCH, &scratch), 0);
        for (int i = 0; i < CW_BATCH; i++) {
            ep_event_destroy(evs[i]);
        }
    }
    ep_buf_close(&scratch);
    return NULL;
}

static void test_concurrent_writers(void)
{
    ep_sink_t *s = NULL;
    writer_t w[CW_THREADS];
    pthread_t t[CW_THREADS];
    char err[256], spec[256], path[128], *text;
    size_t len;

    make_tmpdir();
    snprintf(path, sizeof(path), "%s/cc.ndjson", tmpdir);
    snprintf(spec, sizeof(spec), "file:%s", path);
    EP_ASSERT_EQ(ep_sink_create(spec, &s, err, sizeof(err)), 0);
    for (int i = 0; i < CW_THREADS; i++) {
        w[i] = (writer_t){s, i};
        EP_ASSERT_EQ(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
    }
    for (int i = 0; i < CW_THREADS; i++) {
        pthread_join(t[i], NULL);
    }
    ep_sink_destroy(s);
    text = slurp(path, &len);
    EP_ASSERT_EQ(check_lines(text, len), CW_THREADS * CW_BATCHES * CW_BATCH);
    ep_free(text);
    unlink(path);
    rmdir(tmpdir);
}

EP_TEST_LIST = {
    EP_TEST(test_invalid_specs),
    EP_TEST(test_unopenable_file),
    EP_TEST(test_none),
    EP_TEST(test_stdout),
    EP_TEST(test_file_lines),
    EP_TEST(test_concurrent_writers),
    EP_TEST_END,
};

EP_TEST_MAIN()
