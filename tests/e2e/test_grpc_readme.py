"""README's grpcurl example (issue 16), replayed against `eventpipe run`.

grpcurl is not packaged in Debian 12, so this test does what it does with
python3-grpcio: it reads the commands of the ```bash block of README's
"gRPC API" section, and for each one uses server reflection only (the
reflection protocol's own messages are compiled by protoc from
proto/grpc/reflection; no eventpipe message type is known in advance):
`list` asks ServerReflection for the services; a method call fetches the file
that defines the service (and its dependencies), builds the request from the
-d JSON with protobuf's JSON mapping (as grpcurl does), calls the method and
turns the answer back into JSON (lowerCamelCase names, defaults left out:
grpcurl's output). The lines after a command that start with `# ` are its
expected output: service names for `list`, a JSON object for a call."""

import os

from eptest import debian_module  # noqa: E402

grpc = debian_module("grpc")  # python3-grpcio

import importlib.util
import json
import re
import shlex
import subprocess
import tempfile

from eptest import Eventpipe, free_port, main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROTO = os.path.join(ROOT, "proto")
# The README's ports, and the settings that move them for the test.
PORTS = {50051: "GRPC_PRODUCER_PORT", 50052: "GRPC_CONSUMER_PORT", 50053: "GRPC_ANALYTICS_PORT"}


def _reflection_messages():
    gen = tempfile.mkdtemp(prefix="ep-grpcurl-pb-")
    rel = "grpc/reflection/v1alpha/reflection.proto"
    subprocess.run(["protoc", "-I" + PROTO, "--python_out=" + gen, rel], check=True)
    spec = importlib.util.spec_from_file_location(
        "ep_readme_reflection_pb2", os.path.join(gen, rel.replace(".proto", "_pb2.py")))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


refl = _reflection_messages()


def readme_commands():
    """[(argv, expected output lines)] of the README's gRPC example block."""
    text = open(os.path.join(ROOT, "README.md")).read()
    section = text[text.index("## gRPC API"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    cmds, cur = [], ""
    for line in block.splitlines():
        if cur == "" and line.startswith("# "):
            cmds[-1][1].append(line[2:])
            continue
        cur += line + "\n"
        if cur.count("'") % 2 == 0 and not line.endswith("\\"):
            cmds.append((shlex.split(cur.replace("\\\n", " ")), []))
            cur = ""
    assert cur == "", "unfinished command in README: %r" % cur
    return cmds


class Grpcurl:
    """The subset of grpcurl the README uses: -plaintext, -d, list, Service/Method."""

    def __init__(self, ports):
        self.ports = ports
        self.channels = {}

    def channel(self, target):
        host, port = target.rsplit(":", 1)
        assert host == "localhost", target
        port = self.ports[int(port)]
        if port not in self.channels:
            self.channels[port] = grpc.insecure_channel("127.0.0.1:%d" % port)
        return self.channels[port]

    def reflect(self, ch, **req):
        call = ch.stream_stream(
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            request_serializer=refl.ServerReflectionRequest.SerializeToString,
            response_deserializer=refl.ServerReflectionResponse.FromString)
        out = list(call(iter([refl.ServerReflectionRequest(**req)]), timeout=10))
        assert len(out) == 1 and not out[0].HasField("error_response"), out
        return out[0]

    def method(self, ch, full):
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
        service, name = re.split(r"[/.](?=[^/.]+$)", full)
        r = self.reflect(ch, file_containing_symbol=service)
        files = [descriptor_pb2.FileDescriptorProto.FromString(b)
                 for b in r.file_descriptor_response.file_descriptor_proto]
        pool, added = descriptor_pool.DescriptorPool(), set()
        while len(added) < len(files):  # dependencies first
            progress = False
            for f in files:
                if f.name not in added and all(d in added for d in f.dependency):
                    pool.Add(f)
                    added.add(f.name)
                    progress = True
            assert progress, "reflection did not return every dependency: %s" % [
                (f.name, list(f.dependency)) for f in files]
        m = pool.FindServiceByName(service).FindMethodByName(name)

        def cls(desc):
            if hasattr(message_factory, "GetMessageClass"):
                return message_factory.GetMessageClass(desc)
            return message_factory.MessageFactory(pool).GetPrototype(desc)
        return "/%s/%s" % (service, name), cls(m.input_type), cls(m.output_type)

    def run(self, argv):
        from google.protobuf import json_format
        assert argv[0] == "grpcurl", argv
        data, rest, i = None, [], 1
        while i < len(argv):
            if argv[i] == "-plaintext":
                pass
            elif argv[i] == "-d":
                i += 1
                data = argv[i]
            else:
                rest.append(argv[i])
            i += 1
        ch = self.channel(rest[0])
        if rest[1:] == ["list"]:
            r = self.reflect(ch, list_services="")
            return sorted(s.name for s in r.list_services_response.service)
        path, req_cls, resp_cls = self.method(ch, rest[1])
        req = json_format.Parse(data or "{}", req_cls())
        call = ch.unary_unary(path, request_serializer=req_cls.SerializeToString,
                              response_deserializer=resp_cls.FromString)
        return json_format.MessageToDict(call(req, timeout=10))

    def close(self):
        for ch in self.channels.values():
            ch.close()


def test_readme_grpcurl_example_works_as_written():
    cmds = readme_commands()
    assert len(cmds) >= 3 and all(c[0][0] == "grpcurl" for c in cmds), cmds
    ports = {p: free_port() for p in PORTS}
    env = {PORTS[p]: str(ports[p]) for p in PORTS}
    with Eventpipe("run", env=env):
        g = Grpcurl(ports)
        try:
            for argv, expected in cmds:
                got = g.run(argv)
                print(" ".join(argv[:2]), "...", got)
                if "list" in argv:
                    assert got == expected, (argv, got, expected)
                elif expected:
                    assert got == json.loads("\n".join(expected)), (argv, got, expected)
                else:
                    assert isinstance(got, dict), got  # answered OK
        finally:
            g.close()


if __name__ == "__main__":
    main(globals())
