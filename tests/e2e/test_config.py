"""Configuration: --help, --version, and invalid values -> exit 2 with a
message naming the variable."""

import subprocess

from eptest import EP_BIN, Eventpipe, free_port, get_json, main


def run(args, env=None, timeout=60):
    import os
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run([EP_BIN] + args, env=e, capture_output=True, timeout=timeout,
                          text=True)


def test_help_and_version():
    r = run(["--version"])
    assert r.returncode == 0 and r.stdout.startswith("eventpipe "), r
    r = run(["--help"])
    assert r.returncode == 0 and "run" in r.stdout and "gateway" in r.stdout, r
    for cmd in ("run", "gateway", "ingest", "processor"):
        r = run([cmd, "--help"])
        assert r.returncode == 0, r
        for var in ("API_PORT", "INGEST_PORT", "PROCESSOR_PORT", "PROCESSOR_WORKERS",
                    "PROCESSOR_URL", "INGEST_URL", "QUEUE_SIZE", "QUEUE_TYPE", "NATS_URL",
                    "KAFKA_BROKERS", "KAFKA_TOPIC", "KAFKA_CONSUMER_GROUP",
                    "COMPOSITE_PROVIDERS", "COMPOSITE_STRATEGY", "PROCESSOR_SINK"):
            assert var in r.stdout, (cmd, var)
    r = run(["bogus"])
    assert r.returncode == 2 and "unknown command" in r.stderr, r


def test_invalid_values_exit_2_naming_the_variable():
    cases = [
        ({"PROCESSOR_WORKERS": "abc"}, [], "PROCESSOR_WORKERS"),
        ({"PROCESSOR_WORKERS": "0"}, [], "PROCESSOR_WORKERS"),
        ({"QUEUE_SIZE": "-1"}, [], "QUEUE_SIZE"),
        ({"QUEUE_TYPE": "rabbit"}, [], "QUEUE_TYPE"),
        ({"API_PORT": "70000"}, [], "API_PORT"),
        ({"PROCESSOR_URL": "localhost"}, [], "PROCESSOR_URL"),
        ({"LOG_LEVEL": "loud"}, [], "LOG_LEVEL"),
        ({"COMPOSITE_STRATEGY": "yolo"}, [], "COMPOSITE_STRATEGY"),
        ({}, ["--queue-size", "zero"], "QUEUE_SIZE"),
        ({}, ["--no-such-flag"], "no-such-flag"),
        ({"PROCESSOR_SINK": "kafka://x"}, [], "PROCESSOR_SINK"),
    ]
    for env, args, name in cases:
        r = run(["run"] + args, env=env)
        assert r.returncode == 2, (env, args, r.returncode, r.stderr)
        assert name in r.stderr, (env, args, r.stderr)


def test_flags_override_environment():
    port = free_port()
    with Eventpipe("processor", env={"QUEUE_SIZE": "5"},
                   args=["--queue-size", "77", "--processor-port", str(port)],
                   ports={"api": free_port(), "ingest": free_port(), "processor": port}) as ep:
        assert get_json(port, "/stats")["queue"]["capacity"] == 77
        assert ep.stop() == 0


if __name__ == "__main__":
    main(globals())
