#!/usr/bin/env bash
# A private Docker engine for eventpipe's container tests (ctest -L docker, `make
# test-docker`) and for trying the image and the compose stacks on a machine that
# has no Docker engine and reaches no registry.
#
#   scripts/docker.sh install    docker.io, docker-compose, debootstrap (apt-get) when missing
#   scripts/docker.sh start      dockerd on a private socket, host networking only
#   scripts/docker.sh images     debian:12-slim (debootstrap) + local nats-server and
#                                prometheus images built from Debian packages
#   scripts/docker.sh up         install, start, images
#   scripts/docker.sh test-up    up, then removes containers an interrupted test run left
#   scripts/docker.sh env        prints `export DOCKER_HOST=...` for this engine
#   scripts/docker.sh stop       stops that dockerd by its pid
#   scripts/docker.sh exec CMD.. up, CMD with DOCKER_HOST set, stop
#
# The engine never touches the machine's network set-up: no bridge, no iptables,
# no forwarding or masquerading (--bridge=none --iptables=false --ip-forward=false
# --ip-masq=false). Containers and builds use the host's network (`--network host`,
# `network_mode: host`). Its data (images, the debootstrap tarball) stays in
# EP_DOCKER_ROOT between runs; its socket, pid file and state in EP_DOCKER_RUN.
#
# The base image: no registry is reachable here, so `debian:12-slim` is made with
# debootstrap (minbase, trimmed as the official slim image is) from the Debian mirror
# that apt on this machine uses (read from /etc/apt/sources.list*), and tagged.
set -euo pipefail

EP_DOCKER_ROOT=${EP_DOCKER_ROOT:-/var/lib/eventpipe-docker}
EP_DOCKER_RUN=${EP_DOCKER_RUN:-/run/eventpipe-docker}
DOCKER=${DOCKER:-/usr/bin/docker}   # Debian's client (another may sit earlier in PATH)
SOCK="$EP_DOCKER_RUN/docker.sock"
PIDFILE="$EP_DOCKER_RUN/dockerd.pid"
LOG="$EP_DOCKER_ROOT/dockerd.log"
BASE_TAG=debian:12-slim
BASE_TAR="$EP_DOCKER_ROOT/cache/debian-12-slim.tar"
NATS_IMAGE=${NATS_IMAGE:-eventpipe-local/nats-server:debian12}
PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-eventpipe-local/prometheus:debian12}
HERE="$(cd "$(dirname "$0")/.." && pwd)"

export DOCKER_HOST="unix://$SOCK"
export DOCKER_BUILDKIT=1

say() { echo "docker.sh: $*" >&2; }
die() { say "$*"; exit 1; }

cmd_install() {
    local pkgs=(docker.io docker-compose debootstrap) missing=() p
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}; run as root"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The package's own service is not started (no systemd here, and we want ours).
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

running() {
    [ -f "$PIDFILE" ] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null &&
        "$DOCKER" version >/dev/null 2>&1
}

cmd_start() {
    [ -x /usr/sbin/dockerd ] || die "dockerd missing: run '$0 install' first"
    if running; then
        return 0
    fi
    mkdir -p "$EP_DOCKER_ROOT" "$EP_DOCKER_RUN"
    # setsid + no inherited descriptors: the caller (ctest) does not wait for it.
    setsid /usr/sbin/dockerd \
        --host "unix://$SOCK" --data-root "$EP_DOCKER_ROOT/data" \
        --exec-root "$EP_DOCKER_RUN/exec" --pidfile "$PIDFILE" \
        --iptables=false --ip6tables=false --ip-forward=false --ip-masq=false \
        --bridge=none --userland-proxy=false \
        </dev/null >"$LOG" 2>&1 &
    local pid=$!
    for _ in $(seq 1 120); do
        if "$DOCKER" version >/dev/null 2>&1; then
            echo "$pid" >"$PIDFILE"
            say "dockerd (pid $pid) answers on $SOCK"
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    tail -n 20 "$LOG" >&2 || true
    die "dockerd did not start (log: $LOG)"
}

cmd_stop() {
    local pid
    [ -f "$PIDFILE" ] || return 0
    pid=$(cat "$PIDFILE")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        # dockerd stops its containers (each within its stop timeout) and its containerd.
        for _ in $(seq 1 120); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "dockerd $pid still running after 60 s: SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$PIDFILE"
    # dockerd leaves its bind mount of the host's network namespace behind.
    if mountpoint -q "$EP_DOCKER_RUN/exec/netns/default" 2>/dev/null; then
        umount "$EP_DOCKER_RUN/exec/netns/default" || true
    fi
    say "dockerd stopped"
}

# The URIs apt on this machine uses for a Debian suite ($1: bookworm, bookworm-security),
# one per line, from one-line (.list) and deb822 (.sources) files.
apt_uris() {
    local suite=$1 f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                               if ($(i + 1) == s) print $i }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v s="$suite" '
            function flush() { if (deb && enabled && (" " suites " ") ~ (" " s " ")) print uris
                               deb = 0; enabled = 1; suites = ""; uris = "" }
            BEGIN { enabled = 1 }
            /^[ \t]*$/ { flush(); next }
            /^#/ { next }
            tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
            tolower($1) == "suites:" { $1 = ""; suites = $0 }
            tolower($1) == "uris:" { uris = $2 }
            tolower($1) == "enabled:" { enabled = (tolower($2) != "no") }
            END { flush() }' "$f"
    done
}

cmd_base() {
    local mirror security dir
    if "$DOCKER" image inspect "$BASE_TAG" >/dev/null 2>&1; then
        return 0
    fi
    if [ -s "$BASE_TAR" ]; then
        say "importing $BASE_TAG from $BASE_TAR"
        "$DOCKER" import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE_TAG" >/dev/null
        return 0
    fi
    mirror=$(apt_uris bookworm | head -n 1)
    security=$(apt_uris bookworm-security | head -n 1)
    [ -n "$mirror" ] || die "no Debian bookworm mirror in /etc/apt/sources.list*"
    mirror=${mirror%/}
    say "making $BASE_TAG with debootstrap from $mirror"
    dir=$(mktemp -d "$EP_DOCKER_ROOT/rootfs.XXXXXX")
    debootstrap --variant=minbase --components=main bookworm "$dir/root" "$mirror" \
        >"$EP_DOCKER_ROOT/debootstrap.log" 2>&1 ||
        { tail -n 20 "$EP_DOCKER_ROOT/debootstrap.log" >&2; die "debootstrap failed"; }
    local r="$dir/root"
    # Sources as the official image has them (deb822), on this machine's mirror.
    rm -f "$r/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\n' "$mirror"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [ -n "$security" ]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: bookworm-security\nComponents: main\n' "${security%/}"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$r/etc/apt/sources.list.d/debian.sources"
    # A mirror that serves a dated snapshot has Release files past their Valid-Until:
    # the image's apt then needs the same leniency as the machine's.
    if apt-config dump 2>/dev/null | grep -q '^Acquire::Check-Valid-Until "false"'; then
        printf 'Acquire::Check-Valid-Until "false";\nAcquire::Check-Date "false";\n' \
            >"$r/etc/apt/apt.conf.d/50eventpipe-mirror"
    fi
    # Slim: no documentation, manual pages or translations now or in later installs;
    # no package caches; no recommends.
    cat >"$r/etc/dpkg/dpkg.cfg.d/50slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$r/etc/apt/apt.conf.d/50slim"
    printf 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n' \
        >"$r/etc/apt/apt.conf.d/50clean"
    find "$r/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
    find "$r/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian/*
    find "$r/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
        "$r"/var/log/* "$r"/tmp/* "$r"/root/.cache
    : >"$r/etc/hostname"
    mkdir -p "$(dirname "$BASE_TAR")"
    tar --numeric-owner --xattrs -C "$r" -cf "$BASE_TAR.tmp" .
    mv "$BASE_TAR.tmp" "$BASE_TAR"
    rm -rf "$dir"
    "$DOCKER" import --change 'CMD ["bash"]' "$BASE_TAR" "$BASE_TAG" >/dev/null
    say "$BASE_TAG: $("$DOCKER" image inspect -f '{{.Size}}' "$BASE_TAG") bytes"
}

cmd_images() {
    cmd_base
    local name tag
    for name in nats-server prometheus; do
        tag=$NATS_IMAGE
        [ "$name" = prometheus ] && tag=$PROMETHEUS_IMAGE
        "$DOCKER" build -q --network host -t "$tag" \
            -f "$HERE/deploy/compose/local-images/$name.Dockerfile" \
            "$HERE/deploy/compose/local-images" >/dev/null ||
            die "building $tag failed"
    done
}

case "${1:-}" in
install) cmd_install ;;
start) cmd_start ;;
stop) cmd_stop ;;
base) cmd_base ;;
images) cmd_images ;;
up)
    cmd_install
    cmd_start
    cmd_images
    ;;
test-up)
    # The test fixture: up, then remove the containers an interrupted test run left
    # (compose projects eptest-*). Their restart policy brings them back with the
    # engine, holding the stack ports (8080-8083) the next run needs.
    cmd_install
    cmd_start
    cmd_images
    left=$("$DOCKER" ps -aq --filter name=^eptest-)
    if [ -n "$left" ]; then
        say "removing $(echo "$left" | wc -l) container(s) an earlier test run left"
        # shellcheck disable=SC2086
        "$DOCKER" rm -f $left >/dev/null
    fi
    ;;
env) echo "export DOCKER_HOST=$DOCKER_HOST DOCKER_BUILDKIT=1" ;;
exec)
    shift
    [ $# -gt 0 ] || die "usage: $0 exec COMMAND [ARGS...]"
    cmd_install
    cmd_start
    trap cmd_stop EXIT
    cmd_images
    "$@"
    ;;
*)
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
