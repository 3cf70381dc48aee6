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
# under load killed with SIGKILL 20 times (at least 200 acknowledged events); and the
# cluster label: a 3-node NATS JetStream cluster and a 3-broker Kafka mock under faults.
integration-test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) \
		-R 'e2e\.test_(run_flow|split_flow|nats|kafka|composite|disk_crash)$$|^cluster\.'

# The scale-out and fault tests alone (issue 18, label cluster; also part of make test).
.PHONY: test-cluster
test-cluster: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) -L cluster

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

# Events/s with 1, 2, 4 and 8 processor processes on NATS (a real nats-server) and Kafka
# (the mock), webhook sink to a receiver answering after 20 ms (issue 18); about 5 minutes.
# SCALE_ARGS: e.g. --queues nats --procs 1,2 --write-docs (docs/benchmarks.md).
.PHONY: scale-bench
scale-bench: build
	@python3 bench/scale_bench.py $(SCALE_ARGS)

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

# --- The seeds' targets (issue 17): `make help` lists them. The ones that talk to
# running services read HOST, API_PORT.., QUEUE_TYPE, API_KEY (scripts/dev.sh).
SEED_TARGETS := help setup lint fmt tidy test-coverage test-integration test-performance \
        test-services test-deploy docker-build docker-up docker-up-full docker-down docker-logs \
        docker-run compose-up run-local stop logs switch-queue demo health health-check ready \
        metrics lag urls create-topics list-topics kafka-console generate-data example
.PHONY: $(SEED_TARGETS)
DEV = bash scripts/dev.sh
COVERAGE_LABELS ?= unit|e2e

help:
	@echo "eventpipe: make run (every role, one process) and make test (every test)."
	@echo "  help              this list"
	@echo ""
	@echo "Build and test"
	@echo "  build             compile (CMake, $(BUILD)/)"
	@echo "  setup             install the Debian packages (scripts/setup.sh), then build"
	@echo "  test              the whole suite, then Release, ASan and TSan builds"
	@echo "  test-unit, test-e2e, test-asan, test-tsan, test-builds, fuzz"
	@echo "  test-coverage     unit + e2e tests of a --coverage build, HTML report (gcovr)"
	@echo "                    in build-coverage/coverage/index.html (COVERAGE_LABELS=$(COVERAGE_LABELS))"
	@echo "  test-integration  = integration-test: 1,000 events through every queue type"
	@echo "  test-performance  = load-test: throughput and latency scenarios (bench/)"
	@echo "  test-deploy       render and validate deploy/k8s and deploy/helm offline"
	@echo "  bench, load-test, scale-bench, soak, attack, test-under-load"
	@echo "  lint              clang-tidy and cppcheck over src/ (clean, or it fails)"
	@echo "  fmt               = format: clang-format -i every C file (format-check: verify)"
	@echo "  tidy              says why there is nothing to tidy (go mod tidy in the seed)"
	@echo ""
	@echo "Run locally (QUEUE_TYPE=memory|disk|nats|kafka|composite, also from .env)"
	@echo "  run               eventpipe run: every role in one process"
	@echo "  run-local         gateway, ingest, processor, analytics as four processes"
	@echo "  stop              stop the run-local processes"
	@echo "  logs              the run-local logs (else the compose stack's)"
	@echo "  switch-queue QUEUE=nats   write QUEUE_TYPE to .env (restarts run-local)"
	@echo "  demo              eventpipe run + 1,000 events + its figures, then stop"
	@echo ""
	@echo "Docker (scripts/docker.sh starts a private engine where none is reachable; its"
	@echo "stacks run on host networking, a missing image (kafka, grafana) is named)"
	@echo "  docker-build      the image eventpipe:latest"
	@echo "  docker-up         the compose stack deploy/compose/docker-compose.QUEUE_TYPE.yml"
	@echo "  docker-up-full    the same with Prometheus (:9090) and Grafana (:3000)"
	@echo "  docker-down       stop every stack (and the private engine a make target started)"
	@echo "  docker-logs       the stack's logs (FOLLOW=1 follows)"
	@echo "  docker-run        the image alone: eventpipe run, host network"
	@echo "  compose-up        only the stack's brokers (nats, kafka) for run-local"
	@echo "  create-topics, list-topics, kafka-console   Kafka topics in the kafka stack"
	@echo ""
	@echo "Talk to running services (HOST=localhost, API_KEY=...)"
	@echo "  health, ready     GET /health or /ready of every role"
	@echo "  health-check      /health, /ready and the gateway's /api/v1/status"
	@echo "  metrics, lag, urls"
	@echo "  generate-data     eventpipe send COUNT=1000 events (RATE=0: as fast as allowed)"
	@echo "  example           the seeds' example events, then the analytics summary"
	@echo "  test-services     the running services answer and process an event"

setup: deps build

lint: deps
	@bash scripts/lint.sh

fmt: format

tidy:
	@$(DEV) tidy

test-coverage: deps
	@cmake -S . -B build-coverage -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_FLAGS="--coverage -fprofile-update=atomic" >/dev/null
	@cmake --build build-coverage -j$(JOBS)
	@find build-coverage -name '*.gcda' -delete
	@rc=0; (cd build-coverage && ctest --output-on-failure -j$(JOBS) -L '$(COVERAGE_LABELS)') || rc=$$?; \
	mkdir -p build-coverage/coverage && \
	gcovr -r . --object-directory build-coverage --filter 'src/' -j $(JOBS) \
		--html-details build-coverage/coverage/index.html --print-summary || exit 1; \
	echo "coverage report: build-coverage/coverage/index.html"; \
	[ $$rc -eq 0 ] || echo "test-coverage: some tests failed (the report covers the runs that finished)"; \
	exit $$rc

test-integration: integration-test

test-performance: load-test

test-deploy: build
	cd $(BUILD) && ctest --output-on-failure -L deploy

test-services docker-build docker-up docker-up-full docker-down docker-logs docker-run \
compose-up run-local stop logs switch-queue demo health health-check ready metrics lag urls \
create-topics list-topics kafka-console generate-data example:
	@$(DEV) $@

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-release-gcc build-release-clang 		build-coverage build-lint
