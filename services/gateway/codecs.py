"""Connect's JSON and binary codecs, refusing a body that does not parse as the method's
request with INVALID_ARGUMENT (reason `MALFORMED_REQUEST`, a `BadRequest` naming
`request`), exactly as the gRPC services refuse bytes that are not their request type.

connect-python 0.9 (pinned) reads codecs from one registry and lets any decoding error out
as UNKNOWN (HTTP 500); it has no per-application codec option yet, so `install()` puts these
two in its registry, once, when the gateway is built. tests/gateway checks the answers.
"""

from __future__ import annotations

from typing import TypeVar

from connectrpc import _codec
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from services.gateway.translate import domain_error
from shared import errors

M = TypeVar("M", bound=Message)

#: Cause text kept in the violation's description.
MAX_CAUSE_CHARS = 160


def malformed(message: Message, cause: str) -> Exception:
    type_name = message.DESCRIPTOR.full_name
    description = f"does not parse as {type_name} ({cause[:MAX_CAUSE_CHARS]})"
    return domain_error(errors.InvalidArgument(
        f"the request {description}", reason="MALFORMED_REQUEST",
        violations=[("request", description)]))


class StrictJSONCodec(_codec.ProtoJSONCodec[M]):
    def decode(self, data: bytes | bytearray, message: M) -> M:
        try:
            json_format.Parse(bytes(data), message)
        except (json_format.ParseError, UnicodeDecodeError, RecursionError, ValueError,
                TypeError) as error:
            raise malformed(message, str(error) or "it is not JSON") from None
        return message


class StrictBinaryCodec(_codec.ProtoBinaryCodec[M]):
    def decode(self, data: bytes | bytearray, message: M) -> M:
        try:
            message.ParseFromString(bytes(data))
        except (DecodeError, RecursionError, ValueError) as error:
            raise malformed(message, str(error) or "it is not protobuf") from None
        return message


def install() -> None:
    """Make connect-python decode with the strict codecs (idempotent)."""
    json_codec: StrictJSONCodec[Message] = StrictJSONCodec()
    binary_codec: StrictBinaryCodec[Message] = StrictBinaryCodec()
    for name in list(_codec._codecs):
        current = _codec._codecs[name]
        if isinstance(current, _codec.ProtoJSONCodec):
            _codec._codecs[name] = json_codec
        elif isinstance(current, _codec.ProtoBinaryCodec):
            _codec._codecs[name] = binary_codec
