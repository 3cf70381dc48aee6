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
# An engine of the machine's own (DOCKER_HOST or the default socket) is used as it is,
# with the compose files as they are. Otherwise the project's private engine
# (scripts/docker.sh: --bridge=none, no registry): the stacks run there rendered for
# host networking by scripts/compose_host.py (as the container tests run them), with
# the local nats-server and Prometheus images; an image the engine lacks is named.
DOCKER=${DOCKER:-docker}
PRIVATE=0
EP_DOCKER_RUN=${EP_DOCKER_RUN:-/run/eventpipe-docker}
PRIVATE_HOST="unix://$EP_DOCKER_RUN/docker.sock"
MARK="$EP_DOCKER_RUN/started-by-make"   # the engine a make target started (docker-down stops it)
PROJECT=${COMPOSE_PROJECT_NAME:-eventpipe}
RENDERED="$ROOT/$BUILD/compose/$PROJECT.json"

use_private() {
    eval "$(bash scripts/docker.sh env)"
    DOCKER=/usr/bin/docker
    PRIVATE=1
    export NATS_IMAGE=${NATS_IMAGE:-eventpipe-local/nats-server:debian12}
    export PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-eventpipe-local/prometheus:debian12}
}

engine_up() { # an engine that answers now (none is started)
    if [ "${DOCKER_HOST:-}" != "$PRIVATE_HOST" ] && "$DOCKER" info >/dev/null 2>&1; then
        return 0
    fi
    use_private
    "$DOCKER" info >/dev/null 2>&1
}

docker_engine() { # an engine, the private one started when none answers
    engine_up && [ $PRIVATE = 0 ] && return 0
    if ! "$DOCKER" info >/dev/null 2>&1; then
        say "no reachable Docker engine: starting the project's private one (scripts/docker.sh:" \
            "host networking only, no registry; 'make docker-down' stops it)"
        bash scripts/docker.sh install
        bash scripts/docker.sh start
        : >"$MARK"
    fi
    "$DOCKER" image inspect debian:12-slim "$NATS_IMAGE" "$PROMETHEUS_IMAGE" >/dev/null 2>&1 ||
        bash scripts/docker.sh images
}

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

missing_image() { # SERVICE IMAGE: why it cannot run, how to get the image
    local var
    var=$(echo "$1" | tr 'a-z-' 'A-Z_')_IMAGE
    case "$1" in gateway | ingest | processor | analytics) var=EVENTPIPE_IMAGE ;; esac
    say "$1: image $2 is not in the project's private Docker engine, which reaches no registry."
    say "  Get it where a registry is reachable: docker pull $2 && docker save -o image.tar $2"
    say "  then load it here: eval \"\$(bash scripts/docker.sh env)\" && /usr/bin/docker load -i image.tar"
    say "  (or set $var to an image this engine has: /usr/bin/docker images)"
}

build_image() {
    "$DOCKER" build --network host -t "$IMAGE" .
}

compose() {
    if [ $PRIVATE = 0 ] && "$DOCKER" compose version >/dev/null 2>&1; then
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

# stack_up full|"" [SERVICE...]: the QUEUE_TYPE stack (all services, or those) in the
# background; on the private engine rendered for host networking into RENDERED.
stack_up() {
    local full=$1 files
    shift
    files=$(stack_files "$full")
    if [ $PRIVATE = 0 ]; then
        # shellcheck disable=SC2086
        compose $files up -d --build "$@"
        return
    fi
    export EVENTPIPE_IMAGE=$IMAGE
    local drop=() lines svc img bad=0
    # shellcheck disable=SC2086
    lines=$(/usr/bin/python3 scripts/compose_host.py render "$RENDERED.new" ${files//-f /}) || exit 1
    while read -r svc img; do
        if [ "$svc" = grafana ] && ! have_image "$img"; then
            missing_image grafana "$img"
            say "docker-up-full: Grafana is left out; the stack runs with Prometheus (:9090) only."
            drop=(--without grafana)
        fi
    done <<<"$lines"
    if [ ${#drop[@]} -gt 0 ]; then
        # shellcheck disable=SC2086
        lines=$(/usr/bin/python3 scripts/compose_host.py render "$RENDERED.new" "${drop[@]}" \
            ${files//-f /}) || exit 1
    fi
    while read -r svc img; do
        [ $# -eq 0 ] || [[ " $* " == *" $svc "* ]] || continue
        have_image "$img" || { missing_image "$svc" "$img"; bad=1; }
    done <<<"$lines"
    [ $bad = 0 ] || die "QUEUE_TYPE=$QUEUE_TYPE: nothing started (an image is missing)"
    mv "$RENDERED.new" "$RENDERED"
    compose -f "$RENDERED" up -d --no-build "$@"
}

wait_healthy() { # SECONDS: every container of the project healthy (or without a healthcheck)
    local ids states end=$((SECONDS + $1))
    while [ $SECONDS -lt $end ]; do
        ids=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
        [ -n "$ids" ] || die "no container of compose project $PROJECT"
        # shellcheck disable=SC2086
        states=$("$DOCKER" inspect -f \
            '{{index .Config.Labels "com.docker.compose.service"}}={{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids)
        if ! grep -qv -e '=healthy$' -e '=running$' <<<"$states"; then
            say "healthy: $(tr '\n' ' ' <<<"$states")"
            return 0
        fi
        sleep 1
    done
    die "not healthy after $1 s: $(tr '\n' ' ' <<<"$states")(make docker-logs)"
}

compose_project() { # compose arguments for the stack a docker-up started
    if [ $PRIVATE = 1 ]; then
        [ -f "$RENDERED" ] || die "no stack started by 'make docker-up' here ($RENDERED)"
        echo "-f $RENDERED"
    else
        stack_files full
    fi
}

kafka_exec() {
    engine_up || die "no Docker engine is running: Kafka runs in the kafka stack (QUEUE_TYPE=kafka make docker-up)"
    local c
    c=$("$DOCKER" ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter label=com.docker.compose.service=kafka | head -n 1)
    if [ -z "$c" ]; then
        say "no running kafka container in compose project $PROJECT: start the kafka stack"
        say "with 'QUEUE_TYPE=kafka make docker-up' (or QUEUE_TYPE=kafka make compose-up)."
        local img=${KAFKA_IMAGE:-apache/kafka:3.7.0}
        [ $PRIVATE = 1 ] && ! have_image "$img" && missing_image kafka "$img"
        exit 1
    fi
    local t=()
    [ -t 0 ] && [ -t 1 ] && t=(-t)
    "$DOCKER" exec -i "${t[@]}" "$c" "$@"
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

wait_ok() { # URL SECONDS [PID]: 0 once URL answers 2xx; 1 at the deadline or once PID is gone
    local i
    for i in $(seq 1 $(($2 * 10))); do
        curl -fsS --max-time 2 -o /dev/null "$1" 2>/dev/null && return 0
        [ -z "${3:-}" ] || kill -0 "$3" 2>/dev/null || return 1
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
    build_image
    ;;
docker-up | docker-up-full)
    need_queue "$QUEUE_TYPE"
    docker_engine
    full=""
    [ "$1" = docker-up-full ] && full=full
    [ $PRIVATE = 0 ] || build_image  # compose's --build cannot build on host networking
    stack_up "$full"
    wait_healthy 300
    say "QUEUE_TYPE=$QUEUE_TYPE stack is up: make health, make urls, make docker-logs"
    ;;
docker-down)
    if engine_up; then
        if [ $PRIVATE = 1 ]; then
            if [ -f "$RENDERED" ]; then compose -f "$RENDERED" down --remove-orphans || true; fi
        else
            for q in $QUEUES; do
                QUEUE_TYPE=$q
                files=$(stack_files full)
                # shellcheck disable=SC2086
                compose $files down --remove-orphans 2>/dev/null || true
            done
        fi
        left=$("$DOCKER" ps -aq --filter "label=com.docker.compose.project=$PROJECT")
        # shellcheck disable=SC2086
        [ -z "$left" ] || "$DOCKER" rm -f $left >/dev/null
        "$DOCKER" rm -f eventpipe >/dev/null 2>&1 || true
        say "compose project $PROJECT and container eventpipe stopped"
    else
        say "no Docker engine is running: nothing to stop"
    fi
    if [ -f "$MARK" ]; then
        rm -f "$MARK"
        bash scripts/docker.sh stop
    fi
    ;;
docker-logs)
    engine_up || die "no Docker engine is running: start a stack with 'make docker-up'"
    # shellcheck disable=SC2046
    compose $(compose_project) logs --no-color --tail=200 ${FOLLOW:+-f}
    ;;
docker-run)
    need_queue "$QUEUE_TYPE"
    docker_engine
    have_image "$IMAGE" || build_image
    "$DOCKER" run -d --rm --name eventpipe --network host -e QUEUE_TYPE="$QUEUE_TYPE" "$IMAGE"
    wait_ok "http://127.0.0.1:$API_PORT/ready" 60 ||
        die "eventpipe run did not become ready on :$API_PORT: $DOCKER logs eventpipe"
    say "eventpipe run (every role, one container) on :$API_PORT-:$ANALYTICS_PORT; 'make docker-down' stops it"
    ;;
compose-up)
    # seed 003: the infrastructure only (the brokers), for `make run-local` against it
    need_queue "$QUEUE_TYPE"
    case "$QUEUE_TYPE" in
    nats) svcs="nats" ;;
    kafka) svcs="kafka" ;;
    composite) svcs="nats kafka" ;;
    *) say "QUEUE_TYPE=$QUEUE_TYPE needs no broker: nothing to start (make run-local)"; exit 0 ;;
    esac
    docker_engine
    # shellcheck disable=SC2086
    stack_up "" $svcs
    wait_healthy 120
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
    wait_ok "http://127.0.0.1:$API_PORT/ready" 60 $pid || {
        tail -n 5 "$ROOT/$BUILD/demo.log" >&2
        die "eventpipe run did not start; see $BUILD/demo.log"
    }
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
