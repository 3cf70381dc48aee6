"""A Kafka broker for end-to-end tests: tests/tools/ep_kafka_mock (librdkafka's
mock cluster behind real localhost sockets), driven through its stdin."""

import os
import subprocess

from eptest import EP_BIN


def mock_path():
    p = os.environ.get("EP_KAFKA_MOCK")
    if p and os.path.exists(p):
        return p
    p = os.path.join(os.path.dirname(EP_BIN), "ep_kafka_mock")
    return p if os.path.exists(p) else None


class MockKafka:
    """ep_kafka_mock with `brokers` brokers and the given topics {name: partitions}."""

    def __init__(self, brokers=1, topics=None):
        path = mock_path()
        if path is None:
            raise RuntimeError("ep_kafka_mock not built (EP_WITH_KAFKA off?)")
        args = [path, "--brokers", str(brokers)]
        for name, parts in (topics or {}).items():
            args += ["--topic", "%s:%d" % (name, parts)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, bufsize=1)
        self.bootstraps = self.proc.stdout.readline().strip()
        if not self.bootstraps:
            raise RuntimeError("ep_kafka_mock did not start")

    def command(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline().strip()
        if not reply.startswith("ok"):
            raise AssertionError("ep_kafka_mock %r: %r" % (line, reply))
        return reply[3:]

    def count(self, topic):
        return int(self.command("count " + topic))

    def produce(self, topic, value):
        self.command("produce %s %s" % (topic, value))

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False
