"""Call any Skybridge service from the command line, through server reflection.

    python -m shared.call 127.0.0.1:50051 list
    python -m shared.call 127.0.0.1:50051 describe skybridge.orbit.v1.OrbitService
    python -m shared.call 127.0.0.1:50051 skybridge.orbit.v1.OrbitService/ListSatellites \\
        '{"pageSize": 3}' --scope orbit.read

Requests and responses are protobuf JSON. The token comes from `--token`, or is minted with
the development key for `--scope` (repeatable), `--tenant` and `--subject`. Streaming
responses print one JSON object per message. Errors print the status code, the message and
the `google.rpc` details (reason, field violations), and the exit code is 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pool, json_format, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from shared.status import details_of


def _pool(channel: grpc.Channel) -> tuple[ProtoReflectionDescriptorDatabase,
                                          descriptor_pool.DescriptorPool]:
    database = ProtoReflectionDescriptorDatabase(channel)
    return database, descriptor_pool.DescriptorPool(database)


def _method(pool: descriptor_pool.DescriptorPool,
            full_method: str) -> tuple[ServiceDescriptor, MethodDescriptor]:
    service_name, _, method_name = full_method.replace("/", ".").rpartition(".")
    service = pool.FindServiceByName(service_name)
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise SystemExit(f"{service_name} has no method {method_name!r}; "
                         f"it has: {', '.join(service.methods_by_name)}")
    return service, method


def call(channel: grpc.Channel, pool: descriptor_pool.DescriptorPool, full_method: str,
         body: str, metadata: Sequence[tuple[str, str]] | None, timeout: float | None) -> int:
    service, method = _method(pool, full_method)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(body or "{}", request_class())
    path = f"/{service.full_name}/{method.name}"
    kind = ("stream" if method.client_streaming else "unary") + "_" + (
        "stream" if method.server_streaming else "unary")
    if method.client_streaming:
        raise SystemExit("client-streaming methods are not supported from the command line")
    invoke = getattr(channel, kind)(path, request_serializer=request_class.SerializeToString,
                                    response_deserializer=response_class.FromString)
    try:
        answers = invoke(request, metadata=metadata, timeout=timeout)
        if not method.server_streaming:
            answers = [answers]
        for answer in answers:
            print(json_format.MessageToJson(answer, indent=2))
    except grpc.RpcError as error:
        details = details_of(error)
        report = {"code": details.code.name, "message": details.message}
        if details.reason:
            report["reason"] = details.reason
            report["domain"] = details.domain
        if details.metadata:
            report["metadata"] = details.metadata
        if details.violations:
            report["fieldViolations"] = [
                {"field": v.field, "description": v.description} for v in details.violations]
        print(json.dumps(report, indent=2), file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.call", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", help="host:port of a service")
    parser.add_argument("method", help="'list', 'describe SERVICE', or package.Service/Method")
    parser.add_argument("body", nargs="?", default="", help="request as protobuf JSON")
    parser.add_argument("--token", help="a bearer token (default: mint one)")
    parser.add_argument("--scope", action="append", default=[], help="scope for a minted token")
    parser.add_argument("--tenant", default="skybridge", help="tenant for a minted token")
    parser.add_argument("--subject", default="cli", help="subject for a minted token")
    parser.add_argument("--timeout", type=float, default=30.0, help="deadline in seconds")
    args = parser.parse_args(argv)

    with grpc.insecure_channel(args.target) as channel:
        database, pool = _pool(channel)
        if args.method == "list":
            for name in database.get_services():
                print(name)
            return 0
        if args.method == "describe":
            service = pool.FindServiceByName(args.body)
            for method in service.methods:
                streams = ("stream " if method.client_streaming else "",
                           "stream " if method.server_streaming else "")
                print(f"rpc {method.name}({streams[0]}{method.input_type.full_name}) returns "
                      f"({streams[1]}{method.output_type.full_name})")
            return 0
        metadata = None
        token = args.token
        if token is None and args.scope:
            from shared.auth import minter_from_settings
            from shared.config import Settings

            token = minter_from_settings(Settings.from_env()).mint(
                args.subject, args.scope, args.tenant, 600)
        if token:
            metadata = (("authorization", f"Bearer {token}"),)
        return call(channel, pool, args.method, args.body, metadata, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
