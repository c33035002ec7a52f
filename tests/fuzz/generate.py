"""Requests for any RPC, generated from its descriptors alone.

Four modes, for all four method kinds:

- `empty`: the empty message (zero bytes);
- `random`: a well-typed message: every field may be set (nested messages, repeated fields,
  maps, one member of each oneof, the well-known types), strings biased toward what the
  field plausibly holds (resource names seen in earlier OK answers, Azure region ids,
  emails, country and currency codes), numbers toward plausible ranges, times toward now;
- `hostile`: a random message with one to three hostile values at random field paths (NaN,
  infinities, -0.0, integer extremes, enum numbers the enum does not define, Timestamps and
  Durations out of their ranges, 100,000-element repeated fields and maps, 100 KB strings,
  control and bidirectional characters, SQL and template text, malformed and unknown names),
  or every member of a oneof at once (encoded as that many wire fields, which protobuf
  parsers accept: the last one wins), or invalid UTF-8 in a string field;
- `raw`: bytes that are not protobuf, or not this request type (sent with an identity
  serializer).

A streaming request is one to three such messages, sometimes with a raw one among them.
Everything but the names picked from the pool and the times (relative to now) follows from
`random.Random(seed)`: `Generator.case(method, rng)` draws only from `rng`.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import struct
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.descriptor import FieldDescriptor as FD
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass

from tests.fuzz import values as V
from tests.fuzz.pool import Pool, plural

MODES = ("empty", "random", "hostile", "raw")
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
NO_SIDE_EFFECTS = descriptor_pb2.MethodOptions.NO_SIDE_EFFECTS
_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_REQUIRED = field_behavior_pb2.REQUIRED
MAX_DEPTH = 5
BIG = 100_000


@dataclass(frozen=True)
class Method:
    """One RPC of a registered service."""

    service: str          # skybridge.orbit.v1.OrbitService
    name: str             # Propagate
    input: Descriptor
    output: Descriptor
    client_streaming: bool
    server_streaming: bool
    mutating: bool        # not idempotency_level NO_SIDE_EFFECTS

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.name}"

    @property
    def kind(self) -> str:
        return KINDS[2 * self.client_streaming + self.server_streaming]

    @property
    def short_service(self) -> str:
        return self.service.rsplit(".", 1)[-1]

    @classmethod
    def of(cls, descriptor: MethodDescriptor) -> Method:
        level = descriptor.GetOptions().idempotency_level
        return cls(descriptor.containing_service.full_name, descriptor.name,
                   descriptor.input_type, descriptor.output_type,
                   descriptor.client_streaming, descriptor.server_streaming,
                   level != NO_SIDE_EFFECTS)


def methods_of(services: Iterable) -> list[Method]:
    """Every method of the service descriptors, in declaration order."""
    return [Method.of(m) for service in services for m in service.methods]


@dataclass
class Case:
    """One generated call: its bodies (one, or the request stream) and what they hold."""

    method: Method
    mode: str
    bodies: list[bytes]
    #: One short description per body: the message (abridged) or what the raw bytes are.
    parts: list[str] = field(default_factory=list)
    #: The hostile values planted, as `path=value` notes.
    notes: list[str] = field(default_factory=list)

    @property
    def body(self) -> bytes:
        return self.bodies[0]

    def summary(self, limit: int = 600) -> str:
        text = " | ".join(self.parts)
        if self.notes:
            text = f"[{'; '.join(self.notes)}] {text}"
        text = f"{self.mode}: {text}"
        return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


# --- abridged text of a message ----------------------------------------------------------

def _short_value(value, budget: int) -> str:
    if isinstance(value, Message):
        return "{" + abridge(value, budget) + "}"
    if isinstance(value, str):
        shown = value[:60]
        more = f"...+{len(value) - 60}" if len(value) > 60 else ""
        return repr(shown) + more
    if isinstance(value, bytes):
        return f"bytes[{len(value)}]:{value[:16].hex()}"
    return repr(value)


def abridge(message: Message, budget: int = 400) -> str:
    """`text_format`-like, but repeated fields show 3 items and strings 60 characters."""
    out: list[str] = []
    used = 0
    for fd, value in message.ListFields():
        if fd.is_repeated and not (fd.type == FD.TYPE_MESSAGE
                                   and fd.message_type.GetOptions().map_entry):
            items = list(value[:3]) if len(value) > 3 else list(value)
            text = "[" + ", ".join(_short_value(v, budget // 4) for v in items)
            text += f", ...+{len(value) - 3}]" if len(value) > 3 else "]"
        elif fd.is_repeated:
            keys = list(value)[:3]
            text = "{" + ", ".join(f"{_short_value(k, 20)}: {_short_value(value[k], 40)}"
                                   for k in keys)
            text += f", ...+{len(value) - 3}}}" if len(value) > 3 else "}"
        else:
            text = _short_value(value, budget // 2)
        piece = f"{fd.name}: {text}"
        out.append(piece)
        used += len(piece)
        if used > budget:
            out.append("...")
            break
    return " ".join(out)


# --- raw wire encoding -------------------------------------------------------------------

def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _wrap(chain: tuple[FieldDescriptor, ...], payload: bytes) -> bytes:
    """`payload` (the encoded fields of the innermost message) nested along `chain`."""
    for fd in reversed(chain):
        payload = _len_field(fd.number, payload)
    return payload


# --- the generator ---------------------------------------------------------------------

_VERBS = re.compile(
    r"^(Get|List|Create|Update|Delete|Activate|Suspend|Reinstate|Change|Cancel|Provision|"
    r"Decommission|BatchCheck|Check|Watch|Drain|Restore|Estimate|Request|Release|Reserve|"
    r"Complete|ProviderCancel|Import|Generate|Propagate|Predict|Visible|Ingest|Stream|Echo|"
    r"Collect|Chat|Relay)")
_WORDS = re.compile(r"[A-Z][a-z0-9]*")


def _behaviors(fd: FieldDescriptor):
    if not fd.has_options:
        return ()
    return fd.GetOptions().Extensions[field_behavior_pb2.field_behavior]


def _output_only(fd: FieldDescriptor) -> bool:
    return _OUTPUT_ONLY in _behaviors(fd)


def _required(fd: FieldDescriptor) -> bool:
    return _REQUIRED in _behaviors(fd)


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.type == FD.TYPE_MESSAGE and fd.message_type.GetOptions().map_entry


def _real_oneofs(descriptor: Descriptor) -> list:
    """Oneofs that are not proto3 `optional` (a synthetic oneof of one field)."""
    return [o for o in descriptor.oneofs
            if not (len(o.fields) == 1 and o.name == "_" + o.fields[0].name)]


def _class(descriptor: Descriptor):
    return GetMessageClass(descriptor)


class Generator:
    """Generates `Case`s; `pool` supplies names seen in earlier OK answers."""

    def __init__(self, pool: Pool | None = None, clock=time.time) -> None:
        self.pool = pool if pool is not None else Pool()
        self.clock = clock
        #: The tenant of the call being generated (names it was shown are preferred).
        self.tenant: str | None = None
        self._paths: dict[str, list[tuple[FieldDescriptor, ...]]] = {}
        self._oneof_sites: dict[str, list[tuple[tuple[FieldDescriptor, ...], object]]] = {}
        self._string_paths: dict[str, list[tuple[FieldDescriptor, ...]]] = {}

    # --- cases ----------------------------------------------------------------------------

    def case(self, method: Method, rng: random.Random, mode: str | None = None,
             tenant: str | None = None) -> Case:
        mode = mode or rng.choices(MODES, weights=(1, 4, 4, 1.5))[0]
        self.tenant = tenant
        if not method.client_streaming:
            body, part, notes = self._one(method, rng, mode)
            return Case(method, mode, [body], [part], notes)
        # a request stream: one to three messages, sometimes one of them not protobuf
        count = rng.choice((1, 1, 2, 3))
        case = Case(method, mode, [], [], [])
        for i in range(count):
            body, part, notes = self._one(method, rng, mode if i == 0 else
                                          rng.choice(("random", "random", "hostile", "empty")))
            case.bodies.append(body)
            case.parts.append(part)
            case.notes += [f"requests[{i}].{n}" for n in notes]
        if count > 1 and mode != "raw" and rng.random() < 0.5:
            at = rng.randrange(count + 1)
            body, what = self.raw(method.input, rng)
            case.bodies.insert(at, body)
            case.parts.insert(at, f"raw({what}: {body[:24].hex()})")
            case.notes.append(f"requests[{at}] is not protobuf ({what})")
        return case

    def _one(self, method: Method, rng: random.Random, mode: str) -> tuple[bytes, str, list]:
        if mode == "empty":
            return b"", "{}", []
        if mode == "raw":
            body, what = self.raw(method.input, rng)
            return body, f"raw({what}: {body[:24].hex()})", []
        message = self.message(method.input, rng, method=method)
        if mode == "random":
            return message.SerializeToString(), "{" + abridge(message) + "}", []
        extra, notes = self.plant(message, method, rng)
        return message.SerializeToString() + extra, "{" + abridge(message) + "}", notes

    # --- random well-typed messages -------------------------------------------------------

    def message(self, descriptor: Descriptor, rng: random.Random, *, method: Method | None = None,
                depth: int = 0, fill: float = 0.8) -> Message:
        message = _class(descriptor)()
        self.fill(message, rng, method=method, depth=depth, fill=fill)
        return message

    def fill(self, message: Message, rng: random.Random, *, method: Method | None,
             depth: int, fill: float = 0.8) -> None:
        descriptor = message.DESCRIPTOR
        special = getattr(self, "_wkt_" + descriptor.full_name.replace(".", "_"), None)
        if special is not None:
            special(message, rng, method)
            return
        if depth >= MAX_DEPTH:
            return
        chosen_oneof = {o.name: rng.choice(o.fields) for o in _real_oneofs(descriptor)}
        for fd in descriptor.fields:
            oneof = fd.containing_oneof
            if oneof is not None and oneof.name in chosen_oneof:
                if chosen_oneof[oneof.name] is not fd or rng.random() > fill:
                    continue
            elif _required(fd):
                if rng.random() > 0.97:
                    continue
            elif rng.random() > fill or (_output_only(fd) and rng.random() < 0.8):
                continue
            self.set_field(message, fd, rng, method=method, depth=depth)
        self._agree(message, rng)

    def _agree(self, message: Message, rng: random.Random) -> None:
        """Make fields that must agree agree, most of the time: a `customer` that is the
        parent of the `terminal` beside it; an `end_time` after the `start_time`."""
        fields = message.DESCRIPTOR.fields_by_name
        for fd in message.DESCRIPTOR.fields:
            if fd.type != FD.TYPE_STRING or fd.is_repeated:
                continue
            value = getattr(message, fd.name)
            if value.count("/") < 3:
                continue
            parent = value.rsplit("/", 2)[0]
            collection = plural(parent.rsplit("/", 2)[-2])
            for other in message.DESCRIPTOR.fields:
                if (other is not fd and other.type == FD.TYPE_STRING and not other.is_repeated
                        and plural(other.name) == collection and rng.random() < 0.8):
                    setattr(message, other.name, parent)
        start, end = fields.get("start_time"), fields.get("end_time")
        if (start is not None and end is not None and start.type == FD.TYPE_MESSAGE
                and message.HasField("start_time") and message.HasField("end_time")
                and rng.random() < 0.8):
            begin = message.start_time
            message.end_time.seconds = begin.seconds + rng.choice(
                (60, 120, 300, rng.randint(1, 3600)))

    def set_field(self, message: Message, fd: FieldDescriptor, rng: random.Random, *,
                  method: Method | None, depth: int) -> None:
        if _is_map(fd):
            container = getattr(message, fd.name)
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            for _ in range(rng.randint(0, 3)):
                key = self.scalar(key_fd, rng, method, message.DESCRIPTOR)
                if value_fd.type == FD.TYPE_MESSAGE:
                    self.fill(container[key], rng, method=method, depth=depth + 1)
                else:
                    container[key] = self.scalar(value_fd, rng, method, message.DESCRIPTOR)
            return
        if fd.is_repeated:
            container = getattr(message, fd.name)
            for _ in range(rng.choice((0, 1, 1, 2, 3))):
                if fd.type == FD.TYPE_MESSAGE:
                    self.fill(container.add(), rng, method=method, depth=depth + 1)
                else:
                    value = self.scalar(fd, rng, method, message.DESCRIPTOR)
                    with contextlib.suppress(ValueError, TypeError):  # does not fit the field
                        container.append(value)
            return
        if fd.type == FD.TYPE_MESSAGE:
            child = getattr(message, fd.name)
            child.SetInParent()
            self.fill(child, rng, method=method, depth=depth + 1)
            return
        value = self.scalar(fd, rng, method, message.DESCRIPTOR)
        with contextlib.suppress(ValueError, TypeError):  # a learnt value that does not fit
            setattr(message, fd.name, value)

    # --- plausible scalars ----------------------------------------------------------------

    def scalar(self, fd: FieldDescriptor, rng: random.Random, method: Method | None,
               owner: Descriptor):
        kind = fd.type
        if kind == FD.TYPE_STRING:
            return self.string(fd, rng, method, owner)
        if kind == FD.TYPE_BOOL:
            return rng.random() < 0.5
        if kind == FD.TYPE_ENUM:
            numbers = [v.number for v in fd.enum_type.values]
            nonzero = [n for n in numbers if n] or numbers
            return rng.choice(nonzero) if rng.random() < 0.9 else 0
        if kind == FD.TYPE_BYTES:
            return rng.randbytes(rng.randint(0, 24))
        if kind in V.FLOAT_TYPES:
            return self.number(fd.name, rng)
        return self.integer(fd, rng)

    def number(self, name: str, rng: random.Random) -> float:
        if "latitude" in name:
            return rng.uniform(-60, 60)
        if "longitude" in name:
            return rng.uniform(-180, 180)
        if name.startswith("altitude_m"):
            return rng.uniform(0, 500)
        if name.startswith("altitude_km"):
            return rng.uniform(400, 1200)
        if "bandwidth" in name:
            return rng.choice((1.0, 5.0, 10.0, rng.uniform(0.5, 150)))
        if "elevation" in name:
            return rng.uniform(0, 45)
        if "inclination" in name:
            return rng.uniform(0, 98)
        if name.endswith("_deg"):
            return rng.uniform(0, 360)
        if "radius" in name:
            return rng.uniform(0, 50_000)
        if "probability" in name or "confidence" in name:
            return rng.random()
        return rng.choice((0.0, 1.0, rng.uniform(-10, 100)))

    def integer(self, fd: FieldDescriptor, rng: random.Random) -> int:
        name = fd.name
        unsigned = V.int_kind(fd).startswith("uint")
        if "catalog_number" in name or name == "catalog_numbers":
            # (names in answers may hold numbers beyond the field's uint32)
            known = [n for n in self.pool.numbers.get("catalog_number") or ()
                     if 0 <= n < 2 ** 32]
            if known and rng.random() < 0.8:
                return rng.choice(known)
            return rng.choice((25544, rng.randint(1, 99_999)))
        if name == "sensor_ids":
            return rng.randint(1, 4)
        if name in ("page_size",):
            return rng.choice((0, 1, 10, 50, rng.randint(0, 200)))
        if "quantity" in name:
            return rng.randint(1, 10)
        if name == "antennas":
            return rng.randint(1, 8)
        if name in ("planes", "satellites_per_plane"):
            return rng.randint(1, 3)
        if name in ("count", "chunk_steps"):
            return rng.randint(1, 20)
        if name == "units":
            return rng.randint(0, 1000)
        if name == "nanos":
            return 0
        value = rng.choice((0, 1, 2, 3, rng.randint(0, 100)))
        return value if unsigned or rng.random() < 0.9 else -value

    def string(self, fd: FieldDescriptor, rng: random.Random, method: Method | None,
               owner: Descriptor) -> str:
        name = fd.name
        pool = self.pool
        if name == "request_id":
            seen = pool.values.get("request_id")
            if seen and rng.random() < 0.15:
                return rng.choice(seen)  # a retry, or a reuse with another body
            value = f"fuzz-{rng.getrandbits(64):016x}"
            pool.add_value("request_id", value)
            return value
        if name == "etag":
            if pool.etags and rng.random() < 0.7:
                return pool.etags[rng.choice(sorted(pool.etags))]
            return rng.choice(("", "W/\"1\"", f"{rng.getrandbits(32):08x}"))
        if name == "page_token":
            seen = pool.values.get(f"page_token:{method.path if method else ''}")
            return rng.choice(seen) if seen and rng.random() < 0.5 else ""
        if name == "start_cursor":
            seen = pool.values.get("cursor")
            return rng.choice(seen) if seen and rng.random() < 0.6 else ""
        if name.endswith("email"):
            return rng.choice(("it@contoso.example.com", "ops@fabrikam.example.org"))
        if name == "country":
            return rng.choice(V.COUNTRIES)
        if name == "currency_code":
            return rng.choice(V.CURRENCIES)
        if name == "tenant":
            return rng.choice(V.TENANTS)
        if name in ("azure_tenant_id", "azure_subscription_id"):
            return str(uuid.UUID(int=rng.getrandbits(128), version=4))
        if name == "serial_number":
            return f"UT-{rng.randrange(10**8):08d}"
        if name == "text":
            return rng.choice((V.ISS_TLE, V.ISS_TLE, V.OMM_JSON))
        if name == "classification":
            return "U"
        if name == "intl_designator":
            return "98067A"
        if name == "preset":
            return rng.choice(("", "", "", "tracking_sensors", "no_such_preset"))
        if name in ("region", "target_region", "regions", "paired_region"):
            known = pool.of_collection("regions")
            if known and rng.random() < 0.4:
                return rng.choice(known)
            return rng.choice(V.AZURE_REGIONS)
        if name in V.REFERENCE_FIELDS:
            return self.reference(name, rng, method, owner)
        if name.endswith("_id"):
            return f"fz-{rng.choice(V.WORDS)}-{rng.randrange(10**6)}"
        if name in ("display_name", "organization", "object_name", "group_display_name"):
            return f"{rng.choice(V.WORDS).title()} {rng.randrange(1000)}"
        if name == "name_prefix":
            return "FUZZ"
        if name in ("name_contains",):
            return rng.choice(("", "STARLINK", "TRACKER", "iss"))
        if name == "code":
            return rng.choice(V.WORDS)
        return rng.choice((f"{rng.choice(V.WORDS)} {rng.randrange(100)}", "fuzz text", ""))

    def reference(self, name: str, rng: random.Random, method: Method | None,
                  owner: Descriptor) -> str:
        """A name for a field that refers to a resource: one seen in an OK answer when there
        is one (most of the time), else a made-up name of the right collection."""
        pool = self.pool
        collections = self._collections_for(name, method, owner)
        if name == "parent":
            for collection in collections:
                found = pool.parent_of(rng, collection)
                if found and rng.random() < 0.85:
                    return found
            found = pool.any_name(rng)
            if found and rng.random() < 0.7:
                return found
        elif collections and collections[0] == "*":
            found = pool.any_name(rng)
            if found:
                return found
        else:
            found = pool.pick(rng, collections, self.tenant)
            if found and rng.random() < 0.85:
                return found
        target = collections[0] if collections and collections[0] != "*" else "things"
        target = pool.spelling(target) or target
        ident = rng.choice((f"fz-{rng.randrange(10**6)}", f"{rng.getrandbits(128):032x}",
                            str(rng.randrange(1, 10**6))))
        return f"{target}/{ident}"

    def _collections_for(self, name: str, method: Method | None,
                         owner: Descriptor) -> tuple[str, ...]:
        if name in V.REFERENCE_ALIASES:
            return (V.REFERENCE_ALIASES[name],)
        if name not in ("name", "parent"):
            return (plural(name),)
        if not owner.name.endswith("Request") or method is None:
            return (plural(owner.name),)  # the name of a resource message
        noun = _VERBS.sub("", method.name) or method.name
        if name == "parent":
            noun = noun.removesuffix("s")
        words = [w.lower() for w in _WORDS.findall(noun)]
        siblings = {plural(f.name) for f in owner.fields if f.name != name}
        candidates = ["".join(words), words[-1], words[0]] if words else [noun.lower()]
        out = [plural(c) for c in candidates]
        return tuple(dict.fromkeys(c for c in out if c not in siblings)) or tuple(out)

    # --- well-known and common types ------------------------------------------------------

    def _wkt_google_protobuf_Timestamp(self, message, rng, method) -> None:
        when = self.clock() + rng.choice((0, rng.uniform(-3600, 3 * 3600),
                                          rng.uniform(-86400 * 30, 86400 * 7)))
        message.seconds = int(when)
        message.nanos = rng.choice((0, rng.randrange(1_000_000_000)))

    def _wkt_google_protobuf_Duration(self, message, rng, method) -> None:
        message.seconds = rng.choice((1, 10, 60, 120, 600, rng.randint(0, 3600)))
        message.nanos = 0

    def _wkt_google_protobuf_FieldMask(self, message, rng, method) -> None:
        # field names of the message being updated (the sibling message field) and a few bad
        names = []
        if method is not None:
            for fd in method.input.fields:
                if fd.type == FD.TYPE_MESSAGE and fd.message_type.full_name.startswith(
                        "skybridge."):
                    names += [f.name for f in fd.message_type.fields]
                    names += [f"{f.name}.{g.name}" for f in fd.message_type.fields
                              if f.type == FD.TYPE_MESSAGE for g in f.message_type.fields]
        names = names or ["display_name"]
        for _ in range(rng.randint(1, 3)):
            message.paths.append(rng.choice(names))

    def _wkt_google_protobuf_Struct(self, message, rng, method) -> None:
        for i in range(rng.randint(0, 3)):
            key = f"k{i}"
            choice = rng.randrange(4)
            if choice == 0:
                message.fields[key].string_value = rng.choice(V.WORDS)
            elif choice == 1:
                message.fields[key].number_value = rng.uniform(-1e3, 1e3)
            elif choice == 2:
                message.fields[key].bool_value = True
            else:
                message.fields[key].null_value = 0

    def _wkt_google_protobuf_Value(self, message, rng, method) -> None:
        message.string_value = rng.choice(V.WORDS)

    def _wkt_google_protobuf_ListValue(self, message, rng, method) -> None:
        for _ in range(rng.randint(0, 3)):
            message.values.add().number_value = rng.uniform(0, 10)

    def _wkt_google_protobuf_Any(self, message, rng, method) -> None:
        from google.protobuf import timestamp_pb2

        stamp = timestamp_pb2.Timestamp(seconds=int(self.clock()))
        message.Pack(stamp)

    def _wkt_google_type_Money(self, message, rng, method) -> None:
        message.currency_code = rng.choice(V.CURRENCIES)
        message.units = rng.randint(0, 10_000)
        message.nanos = rng.choice((0, 500_000_000))

    def _wkt_skybridge_common_v1_GeodeticPoint(self, message, rng, method) -> None:
        message.latitude_deg = rng.uniform(-60, 60)
        message.longitude_deg = rng.uniform(-180, 180)
        message.altitude_m = rng.choice((0.0, rng.uniform(0, 500)))

    def _wkt_skybridge_common_v1_TimeWindow(self, message, rng, method) -> None:
        # mostly the next half hour, whose geometry the link broker then has at hand
        start = self.clock() + rng.choice((0, 0, 60, 60, 20 * 60, 20 * 60,
                                           rng.uniform(0, 3 * 3600)))
        end = start + rng.choice((5 * 60, 10 * 60, 10 * 60, 30 * 60,
                                  rng.uniform(60, 2 * 3600)))
        message.start_time.seconds = int(start)
        message.end_time.seconds = int(end)

    def _wkt_skybridge_common_v1_DoubleArray(self, message, rng, method) -> None:
        n = rng.randint(0, 4)
        values = [rng.uniform(-1, 1) for _ in range(n)]
        if rng.random() < 0.5:
            message.shape.append(n)
        if rng.random() < 0.5:
            message.packed.values.extend(values)
        else:
            message.le_bytes = struct.pack(f"<{n}d", *values)

    def _wkt_skybridge_threat_v1_DetectionBatch(self, message, rng, method) -> None:
        # a coherent batch of n detections (shapes agree), unit lines of sight
        n = rng.randint(0, 4)
        message.base_time.seconds = int(self.clock() - rng.uniform(0, 120))
        message.time_offsets_s.shape.append(n)
        message.time_offsets_s.packed.values.extend(sorted(rng.uniform(0, 5) for _ in range(n)))
        message.sensor_ids.extend(rng.randint(1, 4) for _ in range(n))
        vectors = []
        for _ in range(n):
            x, y, z = (rng.gauss(0, 1) for _ in range(3))
            norm = math.sqrt(x * x + y * y + z * z) or 1.0
            vectors += [x / norm, y / norm, z / norm]
        message.los_ecef.shape.extend((n, 3))
        message.los_ecef.packed.values.extend(vectors)
        if rng.random() < 0.5:
            message.noise_rad.shape.append(n)
            message.noise_rad.packed.values.extend(2e-5 for _ in range(n))

    # --- hostile values -------------------------------------------------------------------

    def paths(self, descriptor: Descriptor) -> list[tuple[FieldDescriptor, ...]]:
        """Every field path below `descriptor` (through singular and repeated messages, not
        into maps), up to `MAX_DEPTH` deep, each type at most twice on a path."""
        key = descriptor.full_name
        if key not in self._paths:
            out: list[tuple[FieldDescriptor, ...]] = []

            def walk(d: Descriptor, chain: tuple, seen: tuple) -> None:
                for fd in d.fields:
                    path = (*chain, fd)
                    out.append(path)
                    if (fd.type == FD.TYPE_MESSAGE and not _is_map(fd)
                            and len(path) < MAX_DEPTH
                            and seen.count(fd.message_type.full_name) < 2):
                        walk(fd.message_type, path, (*seen, fd.message_type.full_name))

            walk(descriptor, (), (descriptor.full_name,))
            self._paths[key] = out
        return self._paths[key]

    def oneof_sites(self, descriptor: Descriptor) -> list[tuple[tuple, object]]:
        """(chain of singular message fields, oneof) for every real oneof reachable without
        crossing a repeated field (there, extra wire fields would add elements)."""
        key = descriptor.full_name
        if key not in self._oneof_sites:
            out = []
            for oneof in _real_oneofs(descriptor):
                out.append(((), oneof))
            for path in self.paths(descriptor):
                if any(fd.is_repeated for fd in path) or path[-1].type != FD.TYPE_MESSAGE:
                    continue
                for oneof in _real_oneofs(path[-1].message_type):
                    out.append((path, oneof))
            self._oneof_sites[key] = out
        return self._oneof_sites[key]

    def plant(self, message: Message, method: Method, rng: random.Random
              ) -> tuple[bytes, list[str]]:
        """Plant one to three hostile values in `message`; returns extra wire bytes (for
        what the API cannot express) and notes saying what was planted where."""
        extra = b""
        notes: list[str] = []
        paths = self.paths(message.DESCRIPTOR)
        for _ in range(rng.choice((1, 1, 2, 3))):
            roll = rng.random()
            sites = self.oneof_sites(message.DESCRIPTOR)
            if roll < 0.1 and sites:
                chain, oneof = rng.choice(sites)
                extra += self._all_members(message.DESCRIPTOR, chain, oneof, rng, method)
                notes.append(f"{_dotted(chain, oneof.name)}: every member set "
                             f"({', '.join(f.name for f in oneof.fields)})")
                continue
            if roll < 0.15:
                strings = [p for p in paths if p[-1].type == FD.TYPE_STRING]
                if strings:
                    chain = rng.choice(strings)
                    extra += _wrap(chain[:-1], _len_field(chain[-1].number, b"\xff\xfe\xc0"))
                    notes.append(f"{_dotted(chain)}: invalid UTF-8")
                    continue
            if not paths:
                break
            chain = rng.choice(paths)
            try:
                note = self._hostile_at(message, chain, rng, method)
            except (ValueError, TypeError, OverflowError) as error:  # not representable
                note = f"{_dotted(chain)}: (skipped: {type(error).__name__})"
            notes.append(note)
        return extra, notes

    def _all_members(self, root: Descriptor, chain, oneof, rng, method) -> bytes:
        out = b""
        members = list(oneof.fields)
        rng.shuffle(members)
        for fd in members:
            fresh = _class(root)()
            parent = fresh
            for step in chain:
                parent = getattr(parent, step.name)
            self.set_field(parent, fd, rng, method=method, depth=len(chain))
            if fd.type == FD.TYPE_MESSAGE:
                getattr(parent, fd.name).SetInParent()
            out += fresh.SerializeToString()
        return out

    def _parent(self, message: Message, chain) -> Message:
        current = message
        for fd in chain[:-1]:
            if fd.is_repeated:
                container = getattr(current, fd.name)
                current = container[0] if len(container) else container.add()
            else:
                current = getattr(current, fd.name)
                current.SetInParent()
        return current

    def _hostile_at(self, message: Message, chain, rng: random.Random, method) -> str:
        parent = self._parent(message, chain)
        fd = chain[-1]
        where = _dotted(chain)
        if fd.containing_oneof is not None and fd.containing_oneof in _real_oneofs(
                parent.DESCRIPTOR):
            parent.ClearField(fd.containing_oneof.name)
        if _is_map(fd):
            container = getattr(parent, fd.name)
            key_fd = fd.message_type.fields_by_name["key"]
            value_fd = fd.message_type.fields_by_name["value"]
            if rng.random() < 0.3:
                for i in range(BIG):
                    key = f"k{i}" if key_fd.type == FD.TYPE_STRING else i
                    if value_fd.type == FD.TYPE_MESSAGE:
                        container[key].SetInParent()
                    else:
                        container[key] = self.scalar(value_fd, rng, method, parent.DESCRIPTOR)
                return f"{where}: {BIG} entries"
            key = (self._hostile_scalar(key_fd, rng)[0] if key_fd.type != FD.TYPE_BOOL
                   else True)
            if value_fd.type == FD.TYPE_MESSAGE:
                container[key].SetInParent()
                value_text = "{}"
            else:
                value, value_text = self._hostile_scalar(value_fd, rng)
                container[key] = value
            return f"{where}[{key!r:.40}]: {value_text}"
        if fd.is_repeated:
            container = getattr(parent, fd.name)
            if rng.random() < 0.35:
                del container[:]
                if fd.type == FD.TYPE_MESSAGE:
                    for _ in range(BIG):
                        container.add()
                    return f"{where}: {BIG} empty messages"
                value = self.scalar(fd, rng, method, parent.DESCRIPTOR)
                container.extend([value] * BIG)
                return f"{where}: {BIG} x {value!r:.40}"
            if fd.type == FD.TYPE_MESSAGE:
                item = container.add()
                return self._hostile_message(item, fd, rng, method, f"{where}[{len(container) - 1}]")
            value, text = self._hostile_scalar(fd, rng)
            container.append(value)
            return f"{where}[{len(container) - 1}]: {text}"
        if fd.type == FD.TYPE_MESSAGE:
            child = getattr(parent, fd.name)
            return self._hostile_message(child, fd, rng, method, where)
        value, text = self._hostile_scalar(fd, rng)
        setattr(parent, fd.name, value)
        return f"{where}: {text}"

    def _hostile_message(self, child: Message, fd, rng, method, where: str) -> str:
        full = child.DESCRIPTOR.full_name
        child.SetInParent()
        if full == "google.protobuf.Timestamp":
            child.seconds, child.nanos = rng.choice(V.BAD_TIMESTAMPS)
            return f"{where}: Timestamp(seconds={child.seconds}, nanos={child.nanos})"
        if full == "google.protobuf.Duration":
            child.seconds, child.nanos = rng.choice(V.BAD_DURATIONS + V.ODD_DURATIONS)
            return f"{where}: Duration(seconds={child.seconds}, nanos={child.nanos})"
        if full == "google.protobuf.FieldMask":
            choice = rng.choice(("*", "no_such_field", "a..b", "", "name", "BIG"))
            if choice == "BIG":
                child.paths.extend(["display_name"] * BIG)
                return f"{where}: FieldMask with {BIG} paths"
            child.paths.append(choice)
            return f"{where}: FieldMask(paths=[{choice!r}])"
        if full == "google.protobuf.Struct":
            node = child
            for _ in range(rng.choice((3, 120))):
                node = node.fields["k"].struct_value
            node.fields["n"].number_value = V.NAN
            return f"{where}: deeply nested Struct with NaN"
        if full == "skybridge.common.v1.DoubleArray":
            choice = rng.randrange(4)
            child.Clear()
            if choice == 0:
                child.shape.extend((3, 3))
                child.packed.values.extend((1.0, 2.0))
                return f"{where}: shape [3, 3] with 2 values"
            if choice == 1:
                child.le_bytes = b"\x00" * 7
                return f"{where}: le_bytes of 7 bytes"
            if choice == 2:
                child.packed.values.extend((V.NAN, V.INF, -V.INF))
                return f"{where}: NaN, inf, -inf"
            child.shape.append(2**32 - 1)
            return f"{where}: shape [4294967295] and no values"
        # any other message: present but empty, or one hostile field inside
        inner = [f for f in child.DESCRIPTOR.fields if not _is_map(f)]
        if not inner or rng.random() < 0.3:
            child.Clear()
            child.SetInParent()
            return f"{where}: present but empty"
        target = rng.choice(inner)
        return self._hostile_at(child, (target,), rng, method).replace(
            target.name, f"{where}.{target.name}", 1)

    def _hostile_scalar(self, fd: FieldDescriptor, rng: random.Random) -> tuple[object, str]:
        kind = fd.type
        if kind == FD.TYPE_STRING:
            group = rng.choice((V.SQL_AND_TEMPLATES, V.CONTROL_AND_BIDI, V.UNICODE,
                                V.MALFORMED_NAMES, V.MALFORMED_NAMES, V.LONG_STRINGS))
            value = rng.choice(group)
            if value in V.LONG_STRINGS:
                return value, f"{len(value)}-char string {value[:12]!r}..."
            return value, repr(value)
        if kind == FD.TYPE_BYTES:
            value = rng.choice((b"", b"\x00", b"\xff" * V.KB100))
            return value, f"bytes[{len(value)}]"
        if kind == FD.TYPE_BOOL:
            return True, "True"
        if kind == FD.TYPE_ENUM:
            number = rng.choice(V.undefined_enum_numbers(fd.enum_type))
            return number, f"{number} (not a {fd.enum_type.name})"
        if kind in V.FLOAT_TYPES:
            value = rng.choice(V.HOSTILE_DOUBLES)
            return value, repr(value)
        value = rng.choice(V.INT_EXTREMES[V.int_kind(fd)])
        return value, repr(value)

    # --- not protobuf ---------------------------------------------------------------------

    def string_paths(self, descriptor: Descriptor) -> list[tuple[FieldDescriptor, ...]]:
        key = descriptor.full_name
        if key not in self._string_paths:
            self._string_paths[key] = [p for p in self.paths(descriptor)
                                       if p[-1].type == FD.TYPE_STRING
                                       and not any(f.is_repeated and f.type == FD.TYPE_MESSAGE
                                                   for f in p[:-1])]
        return self._string_paths[key]

    def raw(self, descriptor: Descriptor, rng: random.Random) -> tuple[bytes, str]:
        """Bytes that do not parse as `descriptor`'s message (most of the time)."""
        roll = rng.random()
        strings = self.string_paths(descriptor)
        if roll < 0.2 and strings:
            chain = rng.choice(strings)
            return (_wrap(chain[:-1], _len_field(chain[-1].number, b"\xff\xfe\x80abc")),
                    f"invalid UTF-8 in {_dotted(chain)}")
        if roll < 0.3:
            n = rng.randint(1, 64)
            return rng.randbytes(n), f"{n} random bytes"
        if roll < 0.4:
            # a valid message of the request type, cut short
            body = self.message(descriptor, rng).SerializeToString()
            if len(body) > 1:
                cut = rng.randrange(1, len(body))
                return body[:cut], f"a {descriptor.name} cut at {cut} of {len(body)} bytes"
        body, what = rng.choice(V.NOT_PROTOBUF)
        return body, what


def _dotted(chain, last: str | None = None) -> str:
    names = [fd.name for fd in chain]
    if last is not None:
        names.append(last)
    return ".".join(names) or "(request)"
