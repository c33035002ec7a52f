"""The procedures the gateway serves, read once from the services' descriptors.

Every method of every `skybridge.<service>.v1` service becomes one `Procedure`: its Connect
path (`/<package>.<Service>/<Method>`), its kind (unary, server, client or bidi streaming),
its request and response classes, its idempotency level (which lets Connect serve a
side-effect-free unary call by GET), and the suite service that owns it (the `<service>` of
the package), so that nothing is written per method.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from connectrpc.method import IdempotencyLevel, MethodInfo
from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from skybridge.linkbroker.v1 import contacts_pb2, linkbroker_pb2
from skybridge.orbit.v1 import orbit_pb2
from skybridge.provisioning.v1 import provisioning_pb2
from skybridge.threat.v1 import threat_pb2

#: The services the gateway fronts, by their proto descriptors.
SUITE_SERVICES: tuple[ServiceDescriptor, ...] = (
    orbit_pb2.DESCRIPTOR.services_by_name["OrbitService"],
    provisioning_pb2.DESCRIPTOR.services_by_name["ProvisioningService"],
    linkbroker_pb2.DESCRIPTOR.services_by_name["LinkBrokerService"],
    contacts_pb2.DESCRIPTOR.services_by_name["GroundStationService"],
    threat_pb2.DESCRIPTOR.services_by_name["ThreatService"],
)

_LEVELS = {
    descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS: IdempotencyLevel.NO_SIDE_EFFECTS,
    descriptor_pb2.MethodOptions.IDEMPOTENT: IdempotencyLevel.IDEMPOTENT,
}


class Kind(enum.StrEnum):
    UNARY = "unary"
    SERVER_STREAM = "server_stream"
    CLIENT_STREAM = "client_stream"
    BIDI_STREAM = "bidi_stream"


@dataclass(frozen=True, slots=True)
class Procedure:
    """One RPC as the gateway serves and forwards it."""

    path: str
    kind: Kind
    service: str
    info: MethodInfo[Message, Message]

    @property
    def request_type(self) -> type[Message]:
        return self.info.input

    @property
    def response_type(self) -> type[Message]:
        return self.info.output


def owner(service: ServiceDescriptor) -> str:
    """The suite service that serves `service`: `skybridge.<owner>.v1.<Name>` -> owner."""
    parts = service.full_name.split(".")
    if len(parts) != 4 or parts[0] != "skybridge":
        raise ValueError(f"{service.full_name} is not a skybridge.<service>.v1 service")
    return parts[1]


def _kind(method: MethodDescriptor) -> Kind:
    if method.client_streaming:
        return Kind.BIDI_STREAM if method.server_streaming else Kind.CLIENT_STREAM
    return Kind.SERVER_STREAM if method.server_streaming else Kind.UNARY


def procedures(services: Iterable[ServiceDescriptor] = SUITE_SERVICES) -> Sequence[Procedure]:
    """Every method of `services` as a `Procedure`, in descriptor order."""
    found: list[Procedure] = []
    for service in services:
        home = owner(service)
        for method in service.methods:
            info: MethodInfo[Message, Message] = MethodInfo(
                name=method.name,
                service_name=service.full_name,
                input=message_factory.GetMessageClass(method.input_type),
                output=message_factory.GetMessageClass(method.output_type),
                idempotency_level=_LEVELS.get(method.GetOptions().idempotency_level,
                                              IdempotencyLevel.UNKNOWN),
            )
            found.append(Procedure(path=f"/{service.full_name}/{method.name}",
                                   kind=_kind(method), service=home, info=info))
    return found
