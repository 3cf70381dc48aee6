/*
 * ep_kafka_mock: a Kafka cluster for tests, from librdkafka's mock cluster
 * (rdkafka_mock.h). It listens on localhost TCP and speaks the Kafka protocol,
 * so eventpipe's producer and consumer run unchanged against it.
 *
 *   ep_kafka_mock [--brokers N] [--topic NAME:PARTITIONS[:RF]]... [--no-stdin]
 *
 * A topic gets min(N, 3) replicas: the mock of librdkafka 2.0.2 ignores the
 * factor it is given, so any other RF is refused. Its partition leaders are
 * spread round robin: partition P is led by broker P % N + 1. The mock keeps
 * one log per partition whatever its leader, so a replica list is metadata
 * only: nothing is copied between brokers.
 *
 * Prints the bootstrap servers ("127.0.0.1:port,...") as its first stdout
 * line, then reads commands from stdin, one per line, answering "ok" or
 * "error: ..." on stdout:
 *
 *   topic NAME PARTITIONS [RF]  create a topic
 *   down ID | up ID         stop / restart broker ID (1..N; -1 = all); the mock
 *                           moves no leadership by itself (a controller would)
 *   leader TOPIC P ID       make broker ID the leader of partition P (-1: none)
 *   leaders TOPIC           "ok P:LEADER:REPLICAS:ISR ...", from a metadata request
 *   coordinator GROUP ID    make broker ID the coordinator of consumer group GROUP
 *   rtt ID MS               broker ID answers every request MS milliseconds late (0: on time)
 *   errors APIKEY N ERR     the next N requests with that API key fail with error ERR
 *   produce TOPIC VALUE     append one raw record (key "raw"), answers once stored
 *   count TOPIC             "ok N": records in the topic (high - low watermarks)
 *   quit                    exit
 *
 * It exits on SIGTERM/SIGINT, on "quit", and at the end of stdin (so it does
 * not outlive the test that started it) unless --no-stdin is given.
 * Test-only: nothing under src/ uses the mock API.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop_flag;

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

/* Leaders round robin over the brokers: partition p led by broker p % brokers + 1. */
static int spread_leaders(rd_kafka_mock_cluster_t *mc, const char *name, int parts, int brokers)
{
    for (int p = 0; p < parts; p++) {
        if (rd_kafka_mock_partition_set_leader(mc, name, p, p % brokers + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

/* NAME:PARTITIONS[:RF]; RF defaults to min(brokers, 3). */
static int create_topic(rd_kafka_mock_cluster_t *mc, const char *spec, int brokers)
{
    char name[256];
    const char *colon = strchr(spec, ':');
    int parts = 1, rf = brokers < 3 ? brokers : 3;
    size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
    rd_kafka_resp_err_t err;

    if (colon) {
        const char *colon2 = strchr(colon + 1, ':');

        parts = atoi(colon + 1);
        if (colon2) {
            rf = atoi(colon2 + 1);
        }
    }
    if (len == 0 || len >= sizeof(name) || parts < 1) {
        return -1;
    }
    if (rf != (brokers < 3 ? brokers : 3)) {
        /* librdkafka 2.0.2's mock ignores the factor it is given: refuse rather than pretend. */
        fprintf(stderr, "%s: the mock gives every partition min(brokers, 3) = %d replicas\n", spec,
                brokers < 3 ? brokers : 3);
        return -1;
    }
    memcpy(name, spec, len);
    name[len] = '\0';
    err = rd_kafka_mock_topic_create(mc, name, parts, rf);
    return err ? -1 : spread_leaders(mc, name, parts, brokers);
}

static void reply(int ok, const char *what)
{
    if (ok) {
        printf("ok\n");
    } else {
        printf("error: %s\n", what);
    }
    fflush(stdout);
}

/* A client of the mock cluster for produce/count, created on first use. */
static rd_kafka_t *client_rk;

static rd_kafka_t *client(rd_kafka_mock_cluster_t *mc)
{
    rd_kafka_t *rk = client_rk;
    rd_kafka_conf_t *conf;
    char errstr[256];

    if (rk) {
        return rk;
    }
    conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", rd_kafka_mock_cluster_bootstraps(mc), errstr,
                      sizeof(errstr));
    rd_kafka_conf_set(conf, "log_level", "0", errstr, sizeof(errstr));
    client_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    return client_rk;
}

static int produce_raw(rd_kafka_mock_cluster_t *mc, const char *topic, const char *value)
{
    rd_kafka_t *rk = client(mc);

    if (rk == NULL ||
        rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY("raw", 3),
                          RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END) != 0) {
        return -1;
    }
    return rd_kafka_flush(rk, 10000) == 0 ? 0 : -1;
}

/* Records in topic: the sum over partitions of high - low watermark. -1 on error. */
static long long count_records(rd_kafka_mock_cluster_t *mc, const char *topic)
{
    rd_kafka_t *rk = client(mc);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    long long total = 0;

    if (rk == NULL) {
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) != 0 || md->topic_cnt != 1 || md->topics[0].err) {
        total = -1;
    }
    for (int p = 0; total >= 0 && p < md->topics[0].partition_cnt; p++) {
        int64_t lo, hi;
        if (rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 5000) != 0) {
            total = -1;
            break;
        }
        total += hi - lo;
    }
    if (md) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return total;
}

/* Prints "ok P:LEADER:REPLICAS:ISR ..." for topic from a fresh metadata request. */
static int print_leaders(rd_kafka_mock_cluster_t *mc, const char *topic)
{
    rd_kafka_t *rk = client(mc);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt;
    int rc = -1;

    if (rk == NULL) {
        return -1;
    }
    rkt = rd_kafka_topic_new(rk, topic, NULL);
    /* A few tries: the request may have gone to a broker that was just taken down. */
    for (int attempt = 0; attempt < 4; attempt++) {
        if (md) {
            rd_kafka_metadata_destroy(md);
            md = NULL;
        }
        if (rd_kafka_metadata(rk, 0, rkt, &md, 5000) == 0 && md->topic_cnt == 1 &&
            md->topics[0].err == 0) {
            break;
        }
    }
    if (md && md->topic_cnt == 1 && md->topics[0].err == 0) {
        printf("ok");
        for (int p = 0; p < md->topics[0].partition_cnt; p++) {
            const struct rd_kafka_metadata_partition *mp = &md->topics[0].partitions[p];

            printf(" %d:%d:%d:%d", (int)mp->id, (int)mp->leader, mp->replica_cnt, mp->isr_cnt);
        }
        printf("\n");
        fflush(stdout);
        rc = 0;
    }
    if (md) {
        rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return rc;
}

/* Runs one stdin command. Returns 1 to quit. */
static int command(rd_kafka_mock_cluster_t *mc, char *line, int brokers)
{
    char verb[32], arg1[256];
    int arg2 = 1, arg3 = 0, n;

    line[strcspn(line, "\r\n")] = '\0';
    n = sscanf(line, "%31s %255s %d %d", verb, arg1, &arg2, &arg3);
    if (n < 1) {
        return 0;
    }
    if (strcmp(verb, "quit") == 0) {
        reply(1, NULL);
        return 1;
    }
    if (strcmp(verb, "topic") == 0 && n >= 2) {
        char spec[300];
        if (n >= 4) {
            snprintf(spec, sizeof(spec), "%s:%d:%d", arg1, arg2, arg3);
        } else {
            snprintf(spec, sizeof(spec), "%s:%d", arg1, arg2);
        }
        reply(create_topic(mc, spec, brokers) == 0, "cannot create topic");
    } else if (strcmp(verb, "produce") == 0 && n >= 2) {
        const char *value = strstr(line, arg1) + strlen(arg1);
        value += strspn(value, " ");
        reply(produce_raw(mc, arg1, value) == 0, "produce failed");
    } else if (strcmp(verb, "count") == 0 && n >= 2) {
        long long c = count_records(mc, arg1);
        if (c >= 0) {
            printf("ok %lld\n", c);
            fflush(stdout);
        } else {
            reply(0, "no such topic");
        }
    } else if (strcmp(verb, "leader") == 0 && n >= 4) {
        reply(rd_kafka_mock_partition_set_leader(mc, arg1, arg2, arg3) == 0, "cannot set leader");
    } else if (strcmp(verb, "leaders") == 0 && n >= 2) {
        if (print_leaders(mc, arg1) != 0) {
            reply(0, "no such topic");
        }
    } else if (strcmp(verb, "errors") == 0 && n >= 4 && arg2 > 0 && arg2 <= 1000) {
        /* errors APIKEY COUNT ERR: the next COUNT requests of that kind fail with ERR. */
        rd_kafka_resp_err_t errs[1000];

        for (int i = 0; i < arg2; i++) {
            errs[i] = (rd_kafka_resp_err_t)arg3;
        }
        rd_kafka_mock_push_request_errors_array(mc, (int16_t)atoi(arg1), (size_t)arg2, errs);
        reply(1, NULL);
    } else if (strcmp(verb, "coordinator") == 0 && n >= 3) {
        reply(rd_kafka_mock_coordinator_set(mc, "group", arg1, arg2) == 0,
              "cannot set coordinator");
    } else if (strcmp(verb, "rtt") == 0 && n >= 3 && arg2 >= 0) {
        reply(rd_kafka_mock_broker_set_rtt(mc, atoi(arg1), arg2) == 0, "no such broker");
    } else if (strcmp(verb, "down") == 0 && n >= 2) {
        reply(rd_kafka_mock_broker_set_down(mc, atoi(arg1)) == 0, "no such broker");
    } else if (strcmp(verb, "up") == 0 && n >= 2) {
        reply(rd_kafka_mock_broker_set_up(mc, atoi(arg1)) == 0, "no such broker");
    } else {
        reply(0,
              "unknown command (topic NAME N | produce TOPIC VALUE | count TOPIC | down ID | up "
              "ID | rtt ID MS | leader TOPIC P ID | leaders TOPIC | coordinator GROUP ID | errors "
              "APIKEY N ERR | quit)");
    }
    return 0;
}

int main(int argc, char **argv)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_mock_cluster_t *mc;
    rd_kafka_t *rk;
    struct sigaction sa;
    char errstr[256], line[512];
    int brokers = 1, use_stdin = 1;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--brokers") == 0 && i + 1 < argc) {
            brokers = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--no-stdin") == 0) {
            use_stdin = 0;
        } else if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            i++; /* created below, once the cluster exists */
        } else {
            fprintf(stderr,
                    "usage: %s [--brokers N] [--topic NAME:PARTITIONS[:RF]]... [--no-stdin]\n",
                    argv[0]);
            return 2;
        }
    }
    if (brokers < 1 || brokers > 16) {
        fprintf(stderr, "--brokers: 1..16\n");
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    /* The mock cluster lives inside a client handle; this one is otherwise idle. */
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr));
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "rd_kafka_new: %s\n", errstr);
        return 1;
    }
    mc = rd_kafka_mock_cluster_new(rk, brokers);
    if (mc == NULL) {
        fprintf(stderr, "cannot create the mock cluster\n");
        rd_kafka_destroy(rk);
        return 1;
    }
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--topic") == 0 && i + 1 < argc) {
            if (create_topic(mc, argv[++i], brokers) != 0) {
                fprintf(stderr, "--topic %s: cannot create\n", argv[i]);
                rd_kafka_mock_cluster_destroy(mc);
                rd_kafka_destroy(rk);
                return 2;
            }
        }
    }
    printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
    fflush(stdout);

    /* No SA_RESTART: a signal interrupts the blocking read and ends the loop. */
    while (!stop_flag) {
        if (!use_stdin) {
            pause();
            continue;
        }
        if (fgets(line, sizeof(line), stdin) == NULL) {
            break; /* a signal, or the test that started us is gone */
        }
        if (command(mc, line, brokers)) {
            break;
        }
    }
    if (client_rk) {
        rd_kafka_destroy(client_rk);
    }
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(rk);
    return 0;
}
