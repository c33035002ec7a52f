"""Ask a server for its health over the gRPC health protocol (`grpc.health.v1.Health/Check`).

    python -m shared.healthcheck HOST:PORT [SERVICE] [--timeout SECONDS]
    python -m shared.healthcheck HOST:PORT --http [--timeout SECONDS]   # the gateway

With `--http` it asks an HTTP server (the gateway) for `GET /healthz` instead, which
answers `{"status": "SERVING"}` with 200 when it serves.

Prints the status and exits 0 only when it is SERVING; anything else (NOT_SERVING, an
unknown service, nothing listening, no answer within the timeout, a bad argument) exits 1.
Docker reserves exit code 2 for health checks, so it is never used. SERVICE defaults to ""
(the whole server). docker-compose runs this as every service's health check.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import cast

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

HEALTHY, UNHEALTHY = 0, 1


def parse_target(value: str) -> str:
    """`HOST:PORT` (IPv6 hosts in brackets), checked so that a typo fails loudly."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"{value!r} is not HOST:PORT")
    return value


def positive(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be above 0")
    return seconds


def check(target: str, service: str = "", timeout: float = 5.0) -> str:
    """The status name `target` reports for `service`; raises `grpc.RpcError` if no answer."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        answer = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    return cast(str, health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status))


def check_http(target: str, timeout: float = 5.0) -> str:
    """The status an HTTP server (the gateway) reports at `/healthz`; raises OSError when
    there is no answer."""
    try:
        with urllib.request.urlopen(f"http://{target}/healthz", timeout=timeout) as answer:
            body = answer.read(4096)
    except urllib.error.HTTPError as error:
        body = error.read(4096)
    try:
        status = json.loads(body).get("status")
    except (ValueError, AttributeError):
        status = None
    return status if isinstance(status, str) else "UNKNOWN"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.healthcheck",
                                     description="Exit 0 only when the server is SERVING.")
    parser.add_argument("target", type=parse_target, help="HOST:PORT of the gRPC server")
    parser.add_argument("service", nargs="?", default="",
                        help='service name to check (default "": the whole server)')
    parser.add_argument("--timeout", type=positive, default=5.0,
                        help="seconds to wait for the answer (default 5)")
    parser.add_argument("--http", action="store_true",
                        help="an HTTP server (the gateway): GET /healthz")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return HEALTHY if exit_.code == 0 else UNHEALTHY  # --help, or a usage error
    if args.http:
        try:
            status = check_http(args.target, args.timeout)
        except OSError as error:
            print(f"UNAVAILABLE: {error}", file=sys.stderr)
            return UNHEALTHY
        print(status)
        return HEALTHY if status == "SERVING" else UNHEALTHY
    try:
        status = check(args.target, args.service, args.timeout)
    except grpc.RpcError as error:
        code = error.code().name if error.code() is not None else "UNKNOWN"
        print(f"{code}: {error.details()}", file=sys.stderr)
        return UNHEALTHY
    print(status)
    return HEALTHY if status == "SERVING" else UNHEALTHY


if __name__ == "__main__":
    sys.exit(main())
