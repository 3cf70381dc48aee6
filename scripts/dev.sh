#!/usr/bin/env bash
# The seeds' convenience make targets (issue 17): `make help` lists them, each calls
#   scripts/dev.sh TARGET
# Settings come from the environment (and .env, written by `make switch-queue`):
#   QUEUE_TYPE (memory)  HOST (localhost)  API_PORT/INGEST_PORT/PROCESSOR_PORT/ANALYTICS_PORT
#   BUILD (build)  COUNT (1000)  RATE (0)  API_KEY  EVENTPIPE_IMAGE (eventpipe:latest)
# Docker: a reachable engine (DOCKER_HOST or the default socket) is used as it is; on a
# machine without one, scripts/docker.sh starts the project's private engine (host
# networking only, images made locally) and leaves it running for the next target;
# `make docker-down` stops the stack and that engine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# .env (make switch-queue) gives defaults; the environment wins.
if [ -f .env ]; then
    while IFS='=' read -r k v; do
        case "$k" in '' | \#*) continue ;; esac
        [ -n "${!k:-}" ] || export "$k=$v"
    done < .env
fi

QUEUE_TYPE=${QUEUE_TYPE:-memory}
HOST=${HOST:-localhost}
API_PORT=${API_PORT:-8080}
INGEST_PORT=${INGEST_PORT:-8081}
PROCESSOR_PORT=${PROCESSOR_PORT:-8082}
ANALYTICS_PORT=${ANALYTICS_PORT:-8083}
BUILD=${BUILD:-build}
BIN="$ROOT/$BUILD/eventpipe"
COUNT=${COUNT:-1000}
RATE=${RATE:-0}
IMAGE=${EVENTPIPE_IMAGE:-eventpipe:latest}
RUNDIR="$ROOT/$BUILD/run-local"
PROJECT=eventpipe
QUEUES="memory disk nats kafka composite"
KAFKA_TOPIC=${KAFKA_TOPIC:-diplom-messages}
KAFKA_DLQ_TOPIC=${KAFKA_DLQ_TOPIC:-diplom-messages-dlq}
KAFKA_PARTITIONS=${KAFKA_PARTITIONS:-6}
KAFKA_BIN=/opt/kafka/bin

say() { echo "$*" >&2; }
die() { say "$*"; exit 1; }

need_queue() {
    case " $QUEUES " in *" $1 "*) ;; *) die "QUEUE_TYPE: '$1' is not one of: $QUEUES" ;; esac
}

need_bin() { [ -x "$BIN" ] || die "no $BIN: run 'make build' first"; }

curl_() {
    local auth=()
    [ -n "${API_KEY:-}" ] && auth=(-H "X-API-Key: $API_KEY")
    curl -sS --max-time 5 "${auth[@]}" "$@"
}

# --- Docker -------------------------------------------------------------------
DOCKER=${DOCKER:-docker}
docker_engine() {
    if "$DOCKER" info >/dev/null 2>&1; then
        return 0
    fi
    say "no reachable Docker engine: starting the project's private one (scripts/docker.sh)"
    bash scripts/docker.sh install
    bash scripts/docker.sh start
    bash scripts/docker.sh images
    eval "$(bash scripts/docker.sh env)"
    DOCKER=/usr/bin/docker
}

compose() {
    if "$DOCKER" compose version >/dev/null 2>&1; then
        "$DOCKER" compose -p "$PROJECT" "$@"
    elif command -v docker-compose >/dev/null 2>&1; then
        docker-compose -p "$PROJECT" "$@"
    else
        die "neither 'docker compose' nor docker-compose is installed (scripts/docker.sh install)"
    fi
}

stack_files() {
    need_queue "$QUEUE_TYPE"
    local f="deploy/compose/docker-compose.$QUEUE_TYPE.yml"
    [ -f "$f" ] || die "$f: no compose stack for QUEUE_TYPE=$QUEUE_TYPE"
    echo "-f $f"
    if [ "${1:-}" = full ]; then echo "-f deploy/compose/docker-compose.monitoring.yml"; fi
}

kafka_exec() {
    if ! "$DOCKER" info >/dev/null 2>&1; then
        eval "$(bash scripts/docker.sh env)"
        DOCKER=/usr/bin/docker
    fi
    local files
    files=$(stack_files)
    # shellcheck disable=SC2086
    compose $files ps --services --filter status=running 2>/dev/null | grep -qx kafka ||
        die "no running kafka service: start one with QUEUE_TYPE=kafka make docker-up"
    # shellcheck disable=SC2086
    compose $files exec -T kafka "$@"
}

# --- local processes (run-local) ----------------------------------------------
local_start() {
    need_bin
    need_queue "$QUEUE_TYPE"
    mkdir -p "$RUNDIR"
    export QUEUE_TYPE API_PORT INGEST_PORT PROCESSOR_PORT ANALYTICS_PORT
    export INGEST_URL="http://127.0.0.1:$INGEST_PORT" PROCESSOR_URL="http://127.0.0.1:$PROCESSOR_PORT"
    export ANALYTICS_URL="http://127.0.0.1:$ANALYTICS_PORT"
    for role in processor analytics ingest gateway; do
        if [ -f "$RUNDIR/$role.pid" ] && kill -0 "$(cat "$RUNDIR/$role.pid")" 2>/dev/null; then
            die "$role is already running (pid $(cat "$RUNDIR/$role.pid")): make stop"
        fi
        "$BIN" "$role" >"$RUNDIR/$role.log" 2>&1 &
        echo $! >"$RUNDIR/$role.pid"
        say "$role: pid $!, log $RUNDIR/$role.log"
    done
    # ready in the order the hops go (a role is ready once its downstream is)
    for port in $PROCESSOR_PORT $ANALYTICS_PORT $INGEST_PORT $API_PORT; do
        wait_ok "http://127.0.0.1:$port/ready" 60 || {
            local_stop || true
            die "the role on :$port did not become ready; see $RUNDIR/*.log"
        }
    done
    "$BIN" status --url "http://127.0.0.1:$API_PORT" || true
    say "QUEUE_TYPE=$QUEUE_TYPE; 'make stop' stops the four processes"
}

local_stop() {
    local any=0
    for role in gateway ingest analytics processor; do
        local f="$RUNDIR/$role.pid"
        [ -f "$f" ] || continue
        local pid
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid"
            for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            say "$role (pid $pid) stopped"
            any=1
        fi
        rm -f "$f"
    done
    return $((1 - any))
}

wait_ok() { # URL SECONDS
    local i
    for i in $(seq 1 $(($2 * 10))); do
        curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

roles_get() { # PATH: GET it from every role, exit 1 when one fails
    local bad=0 role port
    for role in gateway:$API_PORT ingest:$INGEST_PORT processor:$PROCESSOR_PORT analytics:$ANALYTICS_PORT; do
        port=${role#*:}
        printf '%-10s http://%s:%s%s  ' "${role%%:*}" "$HOST" "$port" "$1"
        if out=$(curl_ -f "http://$HOST:$port$1" 2>&1); then
            echo "$out"
        else
            echo "FAILED: $out"
            bad=1
        fi
    done
    return $bad
}

processed() { # the processor's processed count (from /stats)
    curl_ -f "http://$HOST:$PROCESSOR_PORT/stats" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["pool"]["processed"])'
}

case "${1:-}" in
docker-build)
    docker_engine
    "$DOCKER" build --network host -t "$IMAGE" .
    ;;
docker-up | docker-up-full)
    need_queue "$QUEUE_TYPE"
    docker_engine
    full=""
    [ "$1" = docker-up-full ] && full=full
    files=$(stack_files $full)
    # shellcheck disable=SC2086
    compose $files up -d --build
    say "QUEUE_TYPE=$QUEUE_TYPE stack is up: make health, make urls, make docker-logs"
    ;;
docker-down)
    if "$DOCKER" info >/dev/null 2>&1 || { [ -S ${EP_DOCKER_RUN:-/run/eventpipe-docker}/docker.sock ] &&
        eval "$(bash scripts/docker.sh env)" && DOCKER=/usr/bin/docker; }; then
        for q in $QUEUES; do
            QUEUE_TYPE=$q
            [ -f "deploy/compose/docker-compose.$q.yml" ] || continue
            files=$(stack_files full)
            # shellcheck disable=SC2086
            compose $files down --remove-orphans 2>/dev/null || true
        done
        "$DOCKER" rm -f eventpipe >/dev/null 2>&1 || true
    else
        say "no Docker engine is running"
    fi
    [ -S ${EP_DOCKER_RUN:-/run/eventpipe-docker}/docker.sock ] && bash scripts/docker.sh stop || true
    ;;
docker-logs)
    files=$(stack_files full)
    docker_engine
    # shellcheck disable=SC2086
    compose $files logs --tail=200 ${FOLLOW:+-f}
    ;;
docker-run)
    need_queue "$QUEUE_TYPE"
    docker_engine
    "$DOCKER" run -d --rm --name eventpipe --network host -e QUEUE_TYPE="$QUEUE_TYPE" "$IMAGE"
    say "eventpipe run (every role, one container) on :$API_PORT-:$ANALYTICS_PORT; 'make docker-down' stops it"
    ;;
compose-up)
    # seed 003: the infrastructure only (the brokers), for `make run-local` against it
    files=$(stack_files)
    docker_engine
    case "$QUEUE_TYPE" in
    nats) svcs="nats" ;;
    kafka) svcs="kafka" ;;
    composite) svcs="nats kafka" ;;
    *) say "QUEUE_TYPE=$QUEUE_TYPE needs no broker: nothing to start (make run-local)"; exit 0 ;;
    esac
    # shellcheck disable=SC2086
    compose $files up -d $svcs
    ;;
run-local) local_start ;;
stop)
    local_stop || say "no run-local process was running"
    ;;
logs)
    if ls "$RUNDIR"/*.log >/dev/null 2>&1; then
        tail -n 50 ${FOLLOW:+-f} "$RUNDIR"/*.log
    else
        exec "$0" docker-logs
    fi
    ;;
switch-queue)
    q=${QUEUE:-}
    [ -n "$q" ] || die "usage: make switch-queue QUEUE=memory|disk|nats|kafka|composite"
    need_queue "$q"
    touch .env
    grep -v '^QUEUE_TYPE=' .env >.env.tmp || true
    echo "QUEUE_TYPE=$q" >>.env.tmp
    mv .env.tmp .env
    say "QUEUE_TYPE=$q written to .env (make run-local and make docker-up read it)"
    if local_stop 2>/dev/null; then
        QUEUE_TYPE=$q local_start
    fi
    ;;
health) roles_get /health ;;
health-check)
    rc=0
    roles_get /health || rc=1
    roles_get /ready || rc=1
    printf 'status     http://%s:%s/api/v1/status  ' "$HOST" "$API_PORT"
    curl_ -f "http://$HOST:$API_PORT/api/v1/status" && echo || rc=1
    exit $rc
    ;;
ready) roles_get /ready ;;
metrics)
    for port in $API_PORT $INGEST_PORT $PROCESSOR_PORT $ANALYTICS_PORT; do
        echo "# http://$HOST:$port/metrics"
        curl_ -f "http://$HOST:$port/metrics" | grep -v '^#' || exit 1
    done
    ;;
lag) curl_ -f "http://$HOST:$PROCESSOR_PORT/lag" && echo ;;
urls)
    cat <<EOF
API (gateway)     http://$HOST:$API_PORT/api/v1/ingest   status: /api/v1/status   live page: /
ingest            http://$HOST:$INGEST_PORT   /ingest /events /events/batch /stats
processor         http://$HOST:$PROCESSOR_PORT   /stats /lag
analytics         http://$HOST:$ANALYTICS_PORT   /analytics/summary /analytics/timeseries
every role        /health /ready /metrics
Prometheus        http://$HOST:9090   (make docker-up-full)
Grafana           http://$HOST:3000   (make docker-up-full; admin/admin)
EOF
    ;;
create-topics)
    for t in "$KAFKA_TOPIC" "$KAFKA_DLQ_TOPIC"; do
        kafka_exec "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server localhost:9092 --create \
            --if-not-exists --topic "$t" --partitions "$KAFKA_PARTITIONS" --replication-factor 1
    done
    ;;
list-topics)
    kafka_exec "$KAFKA_BIN/kafka-topics.sh" --bootstrap-server localhost:9092 --describe
    ;;
kafka-console)
    kafka_exec "$KAFKA_BIN/kafka-console-consumer.sh" --bootstrap-server localhost:9092 \
        --topic "$KAFKA_TOPIC" --from-beginning --property print.key=true ${MAX:+--max-messages $MAX}
    ;;
generate-data)
    need_bin
    "$BIN" send --url "http://$HOST:$API_PORT" --count "$COUNT" --rate "$RATE" \
        ${API_KEY:+--api-key "$API_KEY"}
    ;;
example)
    # The seeds' example events, one of each shape, then what analytics made of them.
    base="http://$HOST:$API_PORT"
    for body in '{"source":"sensor-01","data":"temperature:23.5","metadata":{"location":"warehouse-A"}}' \
        '{"user_id":"user_456","event_type":"page_view","properties":{"page":"/dashboard"},"source":"web-app"}'; do
        echo "POST $base/api/v1/ingest $body"
        curl_ -f -H 'Content-Type: application/json' -d "$body" "$base/api/v1/ingest" && echo
    done
    for t in user order payment; do
        echo "POST $base/api/v1/events/$t"
        curl_ -f -H 'Content-Type: application/json' -d '{"data":"example"}' "$base/api/v1/events/$t" && echo
    done
    sleep 1
    echo "GET http://$HOST:$ANALYTICS_PORT/analytics/summary"
    curl_ -f "http://$HOST:$ANALYTICS_PORT/analytics/summary" && echo
    ;;
demo)
    # seed 001's quick demo: one `eventpipe run`, COUNT events through it, the figures.
    need_bin
    "$BIN" run >"$ROOT/$BUILD/demo.log" 2>&1 &
    pid=$!
    trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
    wait_ok "http://127.0.0.1:$API_PORT/ready" 30 || die "eventpipe run did not start; see $BUILD/demo.log"
    "$BIN" send --url "http://127.0.0.1:$API_PORT" --count "$COUNT" --batch 10
    for _ in $(seq 1 100); do
        [ "$(HOST=127.0.0.1 processed)" -ge "$COUNT" ] && break
        sleep 0.1
    done
    "$BIN" status --url "http://127.0.0.1:$API_PORT"
    echo "analytics summary:"
    curl_ "http://127.0.0.1:$ANALYTICS_PORT/analytics/summary" && echo
    ;;
test-services)
    # seed 004: the running services answer and carry an event end to end.
    roles_get /health
    roles_get /ready
    before=$(processed)
    id="test-services-$(date +%s)-$$"
    curl_ -f -H 'Content-Type: application/json' \
        -d "{\"id\":\"$id\",\"source\":\"make-test-services\",\"data\":\"ping\"}" \
        "http://$HOST:$API_PORT/api/v1/ingest" && echo
    for _ in $(seq 1 100); do
        after=$(processed)
        [ "$after" -gt "$before" ] && { echo "processed: $before -> $after: OK"; exit 0; }
        sleep 0.1
    done
    die "the event was accepted but the processor's count stayed at $before"
    ;;
tidy)
    echo "make tidy: nothing to do. The seed's 'tidy' is 'go mod tidy'; eventpipe is C and"
    echo "has no module file: its dependencies are the Debian packages in scripts/setup.sh."
    ;;
*)
    die "usage: scripts/dev.sh TARGET (see make help)"
    ;;
esac
