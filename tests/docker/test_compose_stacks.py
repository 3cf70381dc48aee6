"""The memory and disk stacks of deploy/compose (issue 17) on the private engine:
gateway, ingest, processor and analytics as separate containers turn healthy in
dependency order; events posted through the gateway reach the processor over
ingest's forwarder (with the files' INTERNAL_TOKEN) and analytics; with the disk
queue the log is in the processor's named volume and survives the processor's
restart; `docker-compose stop` ends every role with exit status 0.

The kafka and composite stacks cannot run here (no Kafka image): every role of
every stack is started alone in the image with the environment its compose file
gives it (ports moved to free ones), which eventpipe accepts (a bad setting would
exit 2), serves /health without its broker, and stops with exit status 0."""

from dockertest import (IMAGE, STACKS, Stack, compose_config, compose_file, docker, figure,
                        get_json, inspect, interfaces, main, now, ports_free, request, run,
                        wait_for)
from eptest import free_port

ROLES = ("gateway", "ingest", "processor", "analytics")


def post(n, prefix):
    for i in range(n):
        r = request(8080, "POST", "/api/v1/ingest",
                    {"id": "%s-%d" % (prefix, i), "source": "compose", "data": "e%d" % i})
        assert r.status == 202, r


def processed():
    return get_json(8082, "/stats")["pool"]["processed"]


def run_stack(stack, check=None):
    ports_free([8080, 8081, 8082, 8083])
    links = interfaces()
    with Stack([compose_file(stack)], "eptest-" + stack, env={"EVENTPIPE_IMAGE": IMAGE}) as st:
        t0 = now()
        st.up()
        figure("%s stack: seconds to all healthy" % stack, "%.1f" % (now() - t0))
        post(200, stack)
        wait_for(lambda: processed() == 200, timeout=60, what="200 processed")
        wait_for(lambda: get_json(8083, "/analytics/summary")["total_events"] == 200,
                 timeout=60, what="analytics counted 200")
        if check:
            check(st)
        containers = {r: st.container(r) for r in ROLES}
        st.compose("stop", timeout=300)
        for r, c in containers.items():
            assert inspect(c, "{{.State.ExitCode}}") == "0", (stack, r, st.logs())
    assert interfaces() == links, "the engine changed this machine's interfaces"


def test_memory_stack():
    run_stack("memory")


def test_disk_stack_keeps_its_log_in_the_volume():
    def restart_processor(st):
        files = st.compose("exec", "-T", "processor", "ls", "/var/lib/eventpipe/queue").stdout
        assert files.split(), "no segment files in QUEUE_DIR"
        mounts = inspect(st.container("processor"),
                         "{{range .Mounts}}{{.Type}}:{{.Name}}:{{.Destination}} {{end}}")
        assert "volume:eptest-disk_queue-data:/var/lib/eventpipe" in mounts, mounts
        st.compose("restart", "processor", timeout=300)
        wait_for(lambda: request(8082, "GET", "/ready", timeout=5).status == 200, timeout=60,
                 what="the processor ready again")
        # The same log: what was consumed stays consumed, new events go on.
        post(50, "after-restart")
        wait_for(lambda: processed() == 50, timeout=60, what="50 more processed")
        assert st.compose("exec", "-T", "processor", "ls",
                          "/var/lib/eventpipe/queue").stdout.split()
    run_stack("disk", restart_processor)


def test_every_role_of_every_stack_accepts_its_environment():
    for stack in STACKS:
        services = compose_config([compose_file(stack)])["services"]
        for role in ROLES:
            env = dict(services[role]["environment"])
            env.update({k: free_port() for k in (
                "API_PORT", "INGEST_PORT", "PROCESSOR_PORT", "ANALYTICS_PORT",
                "GRPC_PRODUCER_PORT", "GRPC_CONSUMER_PORT", "GRPC_ANALYTICS_PORT")})
            name = "ep-test-env-%s-%s" % (stack, role)
            docker("rm", "-f", name, check=False)
            args = ["run", "-d", "--name", name, "--network", "host"]
            for k, v in env.items():
                args += ["-e", "%s=%s" % (k, v)]
            docker(*(args + [IMAGE] + services[role]["command"]))
            try:
                def alive():
                    if inspect(name, "{{.State.Running}}") != "true":
                        raise AssertionError("%s %s exited %s:\n%s" % (
                            stack, role, inspect(name, "{{.State.ExitCode}}"),
                            docker("logs", name, check=False).stderr[-3000:]))
                    return docker("exec", name, "eventpipe", "healthcheck", role,
                                  check=False).returncode == 0
                wait_for(alive, timeout=60, interval=0.3, what="%s %s /health" % (stack, role))
                docker("stop", "-t", "30", name, timeout=120)
                assert inspect(name, "{{.State.ExitCode}}") == "0", (
                    stack, role, docker("logs", name, check=False).stderr[-3000:])
            finally:
                docker("rm", "-f", name, check=False)


if __name__ == "__main__":
    main(globals())
