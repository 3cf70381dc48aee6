# eventpipe: the two commands are `make run` and `make test`. Both install any
# missing Debian package first (scripts/setup.sh, apt-get only).

BUILD   ?= build
JOBS    ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
RUN_ARGS ?=

.PHONY: all deps build run test test-unit test-e2e test-builds test-asan test-tsan fuzz bench \
        integration-test load-test soak attack format format-check clean test-under-load

all: build

deps:
	@bash scripts/setup.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

# Starts every role in one process with the memory queue (Ctrl-C stops it gracefully).
run: build
	./$(BUILD)/eventpipe run $(RUN_ARGS)

# Every test: the normal build (unit, fuzz corpus, end-to-end), the Release
# builds with gcc and clang, then the whole suite again under AddressSanitizer +
# UBSan, and again under ThreadSanitizer.
test: build format-check
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS)
	@$(MAKE) --no-print-directory test-builds
	@$(MAKE) --no-print-directory test-asan
	@$(MAKE) --no-print-directory test-tsan

# Container tests (issue 17, ctest label docker): installs docker.io, docker-compose and
# debootstrap, runs a private dockerd (scripts/docker.sh: host networking only, stopped
# afterwards), builds the image from a clean clone of HEAD, runs it and the compose stacks.
.PHONY: test-docker
test-docker: deps
	@cmake -S . -B build-docker -DEP_DOCKER_TESTS=ON >/dev/null
	cd build-docker && ctest --output-on-failure -L docker

# The whole CI (make test, three phases) ROUNDS times from fresh clones of HEAD
# while stress-ng keeps every core busy, as on a shared machine.
ROUNDS ?= 3
test-under-load: deps
	@bash scripts/test-under-load.sh $(ROUNDS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L unit

test-e2e: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L e2e

# Release (-O3, where gcc's -Wformat-truncation and friends see more) compiles
# every source, tests included, warning-free (-Werror) with gcc and with clang.
# Builds only; the suites run on the normal build and the sanitizer builds.
RELEASE_COMPILERS ?= gcc clang
test-builds: deps
	@for cc in $(RELEASE_COMPILERS); do \
		echo "Release build with $$cc"; \
		CC=$$cc cmake -S . -B build-release-$$cc -DCMAKE_BUILD_TYPE=Release >/dev/null || exit 1; \
		cmake --build build-release-$$cc -j$(JOBS) >/dev/null || exit 1; \
	done

test-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEP_SANITIZE=address >/dev/null
	@cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j$(JOBS)

test-tsan: deps
	@cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEP_SANITIZE=thread >/dev/null
	@cmake --build build-tsan -j$(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		ctest --output-on-failure -j$(JOBS)

# libFuzzer runs of every fuzz target (FUZZ_SECONDS each); new inputs are merged
# into tests/fuzz/corpus/<target>/.
FUZZ_SECONDS ?= 60
fuzz: deps
	@CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DEP_FUZZ=ON \
		-DEP_SANITIZE=address >/dev/null
	@cmake --build build-fuzz -j$(JOBS)
	@for t in build-fuzz/fuzz_*; do \
		case $$t in *_corpus) continue;; esac; \
		name=$$(basename $$t | sed 's/^fuzz_//'); \
		mkdir -p build-fuzz/new-$$name; \
		$$t -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/new-$$name \
			tests/fuzz/corpus/$$name || exit 1; \
		$$t -merge=1 tests/fuzz/corpus/$$name build-fuzz/new-$$name; \
	done

# The seed's integration test for every queue type, every acknowledged id
# processed: 1,000 events each through memory (eventpipe run, and gateway, ingest
# and processor as three processes), nats (a real nats-server), kafka
# (librdkafka's mock cluster over TCP) and composite(nats,kafka); the disk queue
# under load killed with SIGKILL 20 times (at least 200 acknowledged events).
integration-test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) \
		-R 'e2e\.test_(run_flow|split_flow|nats|kafka|composite|disk_crash)$$'

# Microbenchmarks of the hot-path pieces, then POST /api/v1/ingest under wrk.
bench: build
	@./$(BUILD)/ep_microbench $(BENCH_SCALE)
	@bash bench/http_bench.sh $(BUILD)/eventpipe

# End-to-end scenarios (single events, fixed rate, batches of 100, disk queue)
# with eventpipe bench, wrk as an independent client, then the disk queue's
# events per fsync. LOAD_DURATION=10 seconds each; WRITE_DOCS=1 updates
# docs/benchmarks.md.
load-test: build
	@bash bench/load_test.sh $(BUILD)/eventpipe $(if $(WRITE_DOCS),--write-docs,)
	@bash bench/disk_bench.sh $(BUILD)/eventpipe

# RSS over a long fixed-rate single-event run (SOAK_DURATION=600 s; SOAK_RATE=0: closed loop).
soak: build
	@bash bench/soak.sh $(BUILD)/eventpipe

# Hostile clients (issue 14): each attack against a fresh `eventpipe run` with default
# settings, traffic to 127.0.0.0/8 only, about 4 minutes in all; per attack the server's
# peak RSS and a normal client's worst latency. ATTACK_ARGS: e.g. --only slowloris --json.
attack: build
	@python3 bench/attack.py --binary $(BUILD)/eventpipe $(ATTACK_ARGS)

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

format-check:
	@clang-format --dry-run --Werror $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-release-gcc build-release-clang
