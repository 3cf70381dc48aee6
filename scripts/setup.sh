#!/usr/bin/env bash
# Installs every Debian package eventpipe needs to build, run and test.
# Idempotent: only missing packages are installed, with apt-get, as root.
set -euo pipefail

# libprotobuf-dev: google/protobuf/struct.proto, which proto/eventpipe_api.proto imports.
PKGS=(
    build-essential cmake pkg-config clang libclang-rt-14-dev
    libmicrohttpd-dev libyajl-dev libcurl4-openssl-dev zlib1g-dev
    libssl-dev openssl
    libprotobuf-c-dev protobuf-c-compiler libprotobuf-dev
    libnghttp2-dev protobuf-compiler python3-grpcio python3-protobuf nghttp2-client
    libnats-dev nats-server librdkafka-dev
    python3 curl wrk clang-format stress-ng
    prometheus chromium
    clang-tidy cppcheck gcovr
)

# --build-only (the Dockerfile's build stage): just what configures and compiles eventpipe:
# the compilers, build tools and -dev libraries of the list above, and python3 (CMake wants it).
if [ "${1:-}" = "--build-only" ]; then
    build=()
    for p in "${PKGS[@]}"; do
        case $p in
        libclang-rt-*) ;;
        build-essential | cmake | pkg-config | python3 | *-dev | *-compiler) build+=("$p") ;;
        esac
    done
    PKGS=("${build[@]}")
fi

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "setup: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "setup: missing packages (${missing[*]}) and not root; run as root" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
