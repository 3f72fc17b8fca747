"""pm_remote: a small client of the pm gateway (Python grpcio, generated stubs).

    bazel run //gateway/examples:pm_remote -- list
    bazel run //gateway/examples:pm_remote -- start -- sh -c 'echo hi'
    bazel run //gateway/examples:pm_remote -- logs -f ID
    bazel run //gateway/examples:pm_remote -- status ID | stop ID | wait ID

Connects with mutual TLS (the dev PKI in certs/dev) and basic auth (user demo,
password read from certs/dev/demo.password: never from the command line).
"""
import argparse
import base64
import os
import sys

import grpc
from google.protobuf import json_format

from pm.v1 import process_manager_pb2 as pm
from pm.v1 import process_manager_pb2_grpc as pm_grpc


def default_certs():
    root = os.environ.get("BUILD_WORKSPACE_DIRECTORY", ".")
    return os.path.join(root, "certs", "dev")


def user_path(path):
    """Relative paths are the caller's (bazel run starts us elsewhere)."""
    return os.path.join(os.environ.get("BUILD_WORKING_DIRECTORY", "."), path)


def connect(args):
    certs = user_path(args.certs)
    read = lambda name: open(os.path.join(certs, name), "rb").read()
    password_file = user_path(args.password_file or os.path.join(certs, "demo.password"))
    with open(password_file) as f:
        password = f.readline().rstrip("\r\n")
    token = base64.b64encode(f"{args.user}:{password}".encode()).decode()
    tls = grpc.ssl_channel_credentials(read("ca.pem"), read("client.key"), read("client.pem"))
    auth = grpc.metadata_call_credentials(
        lambda _context, callback: callback((("authorization", "Basic " + token),), None))
    channel = grpc.secure_channel(args.target, grpc.composite_channel_credentials(tls, auth))
    return pm_grpc.ProcessManagerStub(channel)


def show(message):
    print(json_format.MessageToJson(message, preserving_proto_field_name=True))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="localhost:8080")
    parser.add_argument("--certs", default=default_certs())
    parser.add_argument("--user", default="demo")
    parser.add_argument("--password_file", default="")
    parser.add_argument("command", choices=["list", "start", "status", "logs", "stop", "wait"])
    parser.add_argument("rest", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    stub = connect(args)
    rest = args.rest[1:] if args.rest[:1] == ["--"] else args.rest
    follow = args.command == "logs" and rest[:1] in (["-f"], ["--follow"])
    if follow:
        rest = rest[1:]
    if args.command != "list" and not rest:
        parser.error(f"{args.command} needs an argument")
    try:
        if args.command == "list":
            for p in stub.List(pm.ListRequest(), timeout=30).processes:
                print(p.id, pm.ProcessStatus.State.Name(p.state), p.owner or "local",
                      p.executable, *p.args)
        elif args.command == "start":
            started = stub.Start(pm.StartRequest(executable=rest[0], args=rest[1:]), timeout=30)
            print(started.id)
        elif args.command == "status":
            show(stub.GetStatus(pm.GetStatusRequest(id=rest[0]), timeout=30))
        elif args.command == "stop":
            show(stub.Stop(pm.StopRequest(id=rest[0]), timeout=90))
        elif args.command == "wait":
            show(stub.Wait(pm.WaitRequest(id=rest[0])))
        elif args.command == "logs":
            request = pm.StreamOutputRequest(id=rest[0], from_start=True, follow=follow)
            for chunk in stub.StreamOutput(request):
                out = sys.stdout if chunk.stream == pm.OutputChunk.STREAM_STDOUT else sys.stderr
                out.buffer.write(chunk.data)
                out.flush()
    except grpc.RpcError as e:
        print(f"pm_remote: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
