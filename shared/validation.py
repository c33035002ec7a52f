"""What any request can carry wrong, checked from its descriptor before the servicer runs.

Every servicer has its own rules (a catalog number in range, a known plan); this module holds
the ones that follow from the contract alone, so that no servicer has to remember them and
none can be reached by a value it did not expect:

- an enum number the enum does not define (proto3 enums are open: any int32 arrives);
- a `google.protobuf.Timestamp` outside 0001-01-01..9999-12-31 UTC or with nanos outside
  0..999,999,999, a `google.protobuf.Duration` beyond +-10,000 years or with nanos of the
  other sign (the ranges the well-known types define);
- NaN or infinity in a `double` or `float` (every number of the contracts is finite);
- a `skybridge.common.v1.DoubleArray` whose `shape` does not match its values;
- more than one member of an "exactly one of" group that is not a proto `oneof` (the
  servicer still says when none is set);
- strings beyond their limit (default `DEFAULT_MAX_CHARS`), with control characters
  (C0 but tab and line breaks, DEL, C1) or bidirectional overrides anywhere, and with any
  control character at all in a name-like field (`name`, `parent`, `*_id`, `request_id`,
  `page_token`, `etag`, and what a service declares);
- repeated fields beyond their cap (default `DEFAULT_MAX_ITEMS` for strings, messages and
  enums; numbers are bounded by the message size).

Output-only fields (`google.api.field_behavior = OUTPUT_ONLY`) are ignored, as AIP-203 asks.
Each problem is a `FieldViolation` with the path as the client wrote it (`points`,
`plan.priority_class`, `checks[3].terminal`, `labels["k"]`); a request with any is refused
with INVALID_ARGUMENT, `ErrorInfo` reason `INVALID_ARGUMENT` and a `BadRequest`.

A checker is compiled once per message type (`Validator.checker`): the fields that cannot
carry any of these problems (integers, booleans, bytes) cost nothing per call, and a
message type with nothing to check is skipped whole.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from google.api import field_behavior_pb2
from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message

from shared.errors import FieldViolation, InvalidArgument

if TYPE_CHECKING:
    from skybridge.common.v1.common_pb2 import DoubleArray

#: Characters in any string field: C0 controls but tab, LF and CR; DEL; C1 controls; the
#: bidirectional embeddings, overrides and isolates (the "Trojan Source" characters).
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: In a name-like field nothing of that kind is allowed, tab and line breaks included.
_NAME_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")

DEFAULT_MAX_CHARS = 65_536
DEFAULT_MAX_NAME_CHARS = 1024
DEFAULT_MAX_ITEMS = 10_000
#: Dimensions of a `DoubleArray` (the contracts use at most 3).
MAX_DIMENSIONS = 8
#: At most this many violations are listed in one answer.
MAX_VIOLATIONS = 20

_NAME_FIELDS = frozenset(("name", "parent", "request_id", "page_token", "etag"))

# google.protobuf.Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z.
TIMESTAMP_MIN_SECONDS, TIMESTAMP_MAX_SECONDS = -62_135_596_800, 253_402_300_799
# google.protobuf.Duration: +-10,000 years.
DURATION_MAX_SECONDS = 315_576_000_000
_NANOS = 999_999_999

_OUTPUT_ONLY = field_behavior_pb2.OUTPUT_ONLY
_FIELD_BEHAVIOR = field_behavior_pb2.field_behavior

#: A check of one value (a message, or one element of a field: a number, a string...), under
#: its path, adding what it finds to the list.
Check = Callable[[Any, str, list[FieldViolation]], None]


@dataclass(frozen=True)
class Rules:
    """What a service declares beyond its descriptors, by full field or message name.

    >>> Rules(max_items={"skybridge.orbit.v1.TimeList.times": 100_000},
    ...       at_most_one={"skybridge.orbit.v1.VisibleSatellitesRequest":
    ...                    [("points", "point_array")]})
    """

    #: Cap of a repeated field (`package.Message.field`).
    max_items: Mapping[str, int] = field(default_factory=dict)
    #: Cap in characters of a string field.
    max_chars: Mapping[str, int] = field(default_factory=dict)
    #: More string fields that hold names or ids (no control characters at all).
    names: frozenset[str] = frozenset()
    #: Groups of fields of a message (`package.Message`) of which at most one may be set.
    at_most_one: Mapping[str, Iterable[tuple[str, ...]]] = field(default_factory=dict)
    #: Repeated fields whose items the servicer answers one by one (a batch in which a bad
    #: item fails alone): only their cap is checked here, and the servicer checks each item
    #: with `item_violations`.
    per_item: frozenset[str] = frozenset()

    def merged(self, other: Rules) -> Rules:
        groups: dict[str, list[tuple[str, ...]]] = {k: list(v) for k, v in self.at_most_one.items()}
        for key, value in other.at_most_one.items():
            groups.setdefault(key, []).extend(value)
        return Rules(max_items={**self.max_items, **other.max_items},
                     max_chars={**self.max_chars, **other.max_chars},
                     names=self.names | other.names, at_most_one=groups,
                     per_item=self.per_item | other.per_item)


def _output_only(fd: FieldDescriptor) -> bool:
    return fd.has_options and _OUTPUT_ONLY in fd.GetOptions().Extensions[_FIELD_BEHAVIOR]


def _name_like(fd: FieldDescriptor, rules: Rules) -> bool:
    return (fd.name in _NAME_FIELDS or fd.name.endswith("_id") or fd.name.endswith("_ids")
            or fd.full_name in rules.names)


def _timestamp(value: timestamp_pb2.Timestamp, path: str, out: list[FieldViolation]) -> None:
    if not TIMESTAMP_MIN_SECONDS <= value.seconds <= TIMESTAMP_MAX_SECONDS:
        out.append(FieldViolation(path, "must be between 0001-01-01 and 9999-12-31 UTC "
                                        f"(seconds {value.seconds} is outside)"))
    if not 0 <= value.nanos <= _NANOS:
        out.append(FieldViolation(path, f"nanos must be 0..{_NANOS}, got {value.nanos}"))


def _duration(value: duration_pb2.Duration, path: str, out: list[FieldViolation]) -> None:
    if not -DURATION_MAX_SECONDS <= value.seconds <= DURATION_MAX_SECONDS:
        out.append(FieldViolation(path, f"must be within +-{DURATION_MAX_SECONDS} s "
                                        f"(10,000 years), got {value.seconds} s"))
    if not -_NANOS <= value.nanos <= _NANOS or (
            value.seconds and value.nanos and (value.seconds < 0) != (value.nanos < 0)):
        out.append(FieldViolation(path, f"nanos must be within +-{_NANOS} and of the sign "
                                        f"of seconds, got {value.nanos}"))


def _double_array(value: DoubleArray, path: str, out: list[FieldViolation]) -> None:
    """`skybridge.common.v1.DoubleArray`: values that fill `shape`, all finite."""
    kind = value.WhichOneof("values")
    if kind == "le_bytes":
        data = value.le_bytes
        if len(data) % 8:
            out.append(FieldViolation(f"{path}.le_bytes", f"holds {len(data)} bytes, not a "
                                                          "multiple of 8 (float64 values)"))
            return
        values = np.frombuffer(data, "<f8")
    elif kind == "packed":
        values = np.asarray(value.packed.values, dtype=np.float64)
    else:
        values = np.zeros(0)
    if len(value.shape) > MAX_DIMENSIONS:
        out.append(FieldViolation(f"{path}.shape", f"must have at most {MAX_DIMENSIONS} "
                                                   f"dimensions (got {len(value.shape)})"))
        return
    if len(value.shape):
        expected = math.prod(int(n) for n in value.shape)
        if expected != values.size:
            out.append(FieldViolation(path, f"shape {list(value.shape)[:8]} needs "
                                            f"{expected} values, got {values.size}"))
            return
    if values.size and not np.isfinite(values).all():
        first = int(np.flatnonzero(~np.isfinite(values))[0])
        out.append(FieldViolation(path, f"value {first} is {values[first]}; every value must "
                                        "be a finite number"))


_WELL_KNOWN: dict[str, Check] = {
    "google.protobuf.Timestamp": _timestamp,
    "google.protobuf.Duration": _duration,
    "skybridge.common.v1.DoubleArray": _double_array,
}

_FLOATS = (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT)


def _enum_description(fd: FieldDescriptor, number: int) -> str:
    enum_type = cast(EnumDescriptor, fd.enum_type)  # set on every enum field
    names = [v.name for v in enum_type.values if v.number != 0][:8]
    return (f"{number} is not a value of {enum_type.name}"
            + (f" (one of {', '.join(names)})" if names else ""))


def _present(message: Message, fd: FieldDescriptor) -> bool:
    if fd.is_repeated:
        return len(getattr(message, fd.name)) > 0
    if fd.has_presence:
        return message.HasField(fd.name)
    return cast(bool, getattr(message, fd.name) != fd.default_value)


class Validator:
    """Compiled checkers for the request types of one server, under its `Rules`."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()
        self._checkers: dict[str, Check | None] = {}
        self._compiling: set[str] = set()

    def add_rules(self, rules: Rules) -> None:
        self.rules = self.rules.merged(rules)
        self._checkers.clear()

    def violations(self, message: Message, prefix: str = "") -> list[FieldViolation]:
        """Every contract-level problem of `message` (at most about `MAX_VIOLATIONS`)."""
        out: list[FieldViolation] = []
        # The stubs type DESCRIPTOR as the pure-Python or the upb class; both are used alike.
        check = self.checker(cast(Descriptor, message.DESCRIPTOR))
        if check is not None:
            check(message, prefix, out)
        return out

    def validate(self, message: Message, what: str = "the request") -> None:
        """Raise `InvalidArgument` naming every bad field of `message`."""
        problems = self.violations(message)
        if problems:
            problems = problems[:MAX_VIOLATIONS]
            summary = "; ".join(f"{v.field}: {v.description}" for v in problems[:5])
            raise InvalidArgument(f"{what} has invalid fields: {summary}",
                                  violations=problems)

    # -- compilation -----------------------------------------------------------------------

    def checker(self, descriptor: Descriptor) -> Check | None:
        """The check of one message type, or None when it can carry none of the problems."""
        key = descriptor.full_name
        if key in self._checkers:
            return self._checkers[key]
        if key in self._compiling:
            # A recursive type (google.protobuf.Struct): check through a late lookup.
            return lambda message, path, out: self._late(key, message, path, out)
        self._compiling.add(key)
        try:
            compiled = self._compile(descriptor)
        finally:
            self._compiling.discard(key)
        self._checkers[key] = compiled
        return compiled

    def _late(self, key: str, message: Message, path: str, out: list[FieldViolation]) -> None:
        check = self._checkers.get(key)
        if check is not None and len(out) < MAX_VIOLATIONS:
            check(message, path, out)

    def _compile(self, descriptor: Descriptor) -> Check | None:
        special = _WELL_KNOWN.get(descriptor.full_name)
        if special is not None:
            return special
        steps: list[Check] = []
        for fd in descriptor.fields:
            if _output_only(fd):
                continue
            step = self._field(fd)
            if step is not None:
                steps.append(step)
        for group in self.rules.at_most_one.get(descriptor.full_name, ()):
            steps.append(self._group(descriptor, tuple(group)))
        if not steps:
            return None
        if len(steps) == 1:
            return steps[0]

        def check(message: Message, path: str, out: list[FieldViolation]) -> None:
            for step in steps:
                step(message, path, out)
                if len(out) >= MAX_VIOLATIONS:
                    return

        return check

    def _group(self, descriptor: Descriptor, group: tuple[str, ...]) -> Check:
        fields = [descriptor.fields_by_name[name] for name in group]

        def check(message: Message, path: str, out: list[FieldViolation]) -> None:
            chosen = [fd.name for fd in fields if _present(message, fd)]
            if len(chosen) > 1:
                out.append(FieldViolation(
                    path or chosen[0],
                    f"set exactly one of {', '.join(group)}, not {' and '.join(chosen)}"))

        return check

    def _field(self, fd: FieldDescriptor) -> Check | None:
        element = self._element(fd)
        name = fd.name
        if not fd.is_repeated:
            if element is None:
                return None
            # `element` is reassigned below, so mypy does not carry the narrowing into the
            # closures: name the (not None) check once for them.
            single: Check = element
            if fd.type == FieldDescriptor.TYPE_MESSAGE:
                def singular_message(message: Message, path: str,
                                     out: list[FieldViolation]) -> None:
                    if message.HasField(name):
                        single(getattr(message, name), _join(path, name), out)
                return singular_message

            def singular(message: Message, path: str, out: list[FieldViolation]) -> None:
                single(getattr(message, name), _join(path, name), out)
            return singular

        if (fd.type == FieldDescriptor.TYPE_MESSAGE
                and cast(Descriptor, fd.message_type).GetOptions().map_entry):
            return self._map(fd)
        numeric = fd.type not in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_MESSAGE,
                                  FieldDescriptor.TYPE_ENUM, FieldDescriptor.TYPE_BYTES)
        cap = self.rules.max_items.get(fd.full_name, None if numeric else DEFAULT_MAX_ITEMS)
        if fd.full_name in self.rules.per_item:
            element = None
        if fd.type in _FLOATS:
            def floats(message: Message, path: str, out: list[FieldViolation]) -> None:
                values = getattr(message, name)
                if not values or _over_cap(values, cap, path, name, out):
                    return
                array = np.asarray(values, dtype=np.float64)
                bad = np.flatnonzero(~np.isfinite(array))
                if bad.size:
                    i = int(bad[0])
                    out.append(FieldViolation(f"{_join(path, name)}[{i}]",
                                              f"must be a finite number, got {array[i]}"))
            return floats
        if element is None and cap is None:
            return None

        def repeated(message: Message, path: str, out: list[FieldViolation]) -> None:
            values = getattr(message, name)
            if not values or _over_cap(values, cap, path, name, out) or element is None:
                return
            base = _join(path, name)
            for i, value in enumerate(values):
                element(value, f"{base}[{i}]", out)
                if len(out) >= MAX_VIOLATIONS:
                    return
        return repeated

    def _map(self, fd: FieldDescriptor) -> Check | None:
        entry = cast(Descriptor, fd.message_type)  # a map field's entry type
        key_check = self._element(entry.fields_by_name["key"])
        value_check = self._element(entry.fields_by_name["value"])
        name = fd.name
        cap = self.rules.max_items.get(fd.full_name, DEFAULT_MAX_ITEMS)

        def check(message: Message, path: str, out: list[FieldViolation]) -> None:
            entries = getattr(message, name)
            if not entries:
                return
            base = _join(path, name)
            if _over_cap(entries, cap, path, name, out):
                return
            for key in entries:
                where = f"{base}[{key!r}]" if isinstance(key, str) else f"{base}[{key}]"
                if key_check is not None:
                    key_check(key, where, out)
                if value_check is not None:
                    value_check(entries[key], where, out)
                if len(out) >= MAX_VIOLATIONS:
                    return
        return check

    def _element(self, fd: FieldDescriptor) -> Check | None:
        """The check of one value of the field (an element, for a repeated field)."""
        kind = fd.type
        if kind == FieldDescriptor.TYPE_ENUM:
            defined = frozenset(v.number for v in cast(EnumDescriptor, fd.enum_type).values)

            def enum(value: int, path: str, out: list[FieldViolation]) -> None:
                if value not in defined:
                    out.append(FieldViolation(path, _enum_description(fd, value)))
            return enum
        if kind in _FLOATS:
            def finite(value: float, path: str, out: list[FieldViolation]) -> None:
                if not math.isfinite(value):
                    out.append(FieldViolation(path, f"must be a finite number, got {value}"))
            return finite
        if kind == FieldDescriptor.TYPE_STRING:
            name_like = _name_like(fd, self.rules)
            cap = self.rules.max_chars.get(
                fd.full_name, DEFAULT_MAX_NAME_CHARS if name_like else DEFAULT_MAX_CHARS)
            control = _NAME_CONTROL if name_like else _CONTROL
            what = ("control or bidirectional characters are not allowed in a name" if name_like
                    else "control characters (other than tab and line breaks) and "
                         "bidirectional overrides are not allowed")

            def string(value: str, path: str, out: list[FieldViolation]) -> None:
                if not value:
                    return
                if len(value) > cap:
                    out.append(FieldViolation(path, f"must be at most {cap} characters "
                                                    f"(got {len(value)})"))
                    return
                found = control.search(value)
                if found is not None:
                    out.append(FieldViolation(path, f"{what} (U+{ord(found.group()):04X} at "
                                                    f"position {found.start()})"))
            return string
        if kind == FieldDescriptor.TYPE_MESSAGE:
            return self.checker(cast(Descriptor, fd.message_type))
        return None


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _over_cap(values: Sized, cap: int | None, path: str, name: str,
              out: list[FieldViolation]) -> bool:
    """True (with a violation) when a repeated field or map holds more than `cap` items."""
    if cap is None or len(values) <= cap:
        return False
    out.append(FieldViolation(_join(path, name),
                              f"must hold at most {cap} items (got {len(values)})"))
    return True


_PLAIN = Validator()


def item_violations(message: Message, path: str) -> list[FieldViolation]:
    """The contract problems of one item of a `Rules.per_item` batch, under `path`
    (`checks[3]`), for the servicer to answer that item with."""
    return _PLAIN.violations(message, path)
