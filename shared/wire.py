"""The suite's wire conversions: numpy <-> protobuf for the columnar messages (both sides
of the wire, no Python loops), and every time and duration conversion (one place, so no
service keeps its own).

Arrays travel as ``skybridge.common.v1.DoubleArray`` with ``le_bytes`` (row-major
little-endian float64 plus the shape); see the measurement in orbit.proto for why not
packed ``repeated double``. Integer columns travel as plain little-endian ``bytes``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from google.protobuf import duration_pb2, timestamp_pb2
from skybridge.common.v1 import common_pb2

__all__ = [
    "bytes_field",
    "datetime_to_timestamp",
    "double_array",
    "double_array_field",
    "from_double_array",
    "duration_to_seconds",
    "from_le_bytes",
    "micros_to_timestamp",
    "optional_timestamp",
    "seconds_to_duration",
    "timestamp_to_datetime",
    "timestamp_to_jd",
    "timestamp_to_unix",
    "unix_to_timestamp",
]

_SEC_PER_DAY = 86_400
_JD_UNIX_EPOCH = 2440587.5


def double_array(values: np.ndarray) -> common_pb2.DoubleArray:
    """A DoubleArray holding ``values`` as little-endian float64 bytes."""
    arr = np.ascontiguousarray(values, dtype="<f8")
    return common_pb2.DoubleArray(shape=arr.shape, le_bytes=arr.tobytes())


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if not value:
            out.append(low)
            return bytes(out)
        out.append(low | 0x80)


def bytes_field(number: int, data: Any) -> list[Any]:
    """Protobuf wire encoding of a length-delimited field ``number`` holding ``data`` (any
    C-contiguous buffer: bytes, memoryview, numpy array; typed Any as numpy arrays are not
    a `Buffer` to the type checker), as a list of pieces for ``b"".join`` (``data`` is not
    copied)."""
    size = memoryview(data).nbytes
    return [_varint(number << 3 | 2) + _varint(size), data]


def double_array_field(number: int, values: np.ndarray) -> list[Any]:
    """Protobuf wire encoding of a ``DoubleArray`` (``le_bytes``) in field ``number`` of
    the enclosing message, as pieces for ``b"".join``: the same bytes as setting the field
    to :func:`double_array` and serializing, without copying ``values`` into protobuf
    first (a serialized message may be concatenated with other fields of the same
    message: protobuf merges them). ``values`` must be C-contiguous little-endian float64.
    """
    if values.dtype != np.dtype("<f8") or not values.flags.c_contiguous:
        raise ValueError("values must be C-contiguous little-endian float64")
    head = common_pb2.DoubleArray(shape=values.shape).SerializeToString()
    head += _varint(2 << 3 | 2) + _varint(values.nbytes)
    return [_varint(number << 3 | 2) + _varint(len(head) + values.nbytes) + head, values]


def from_double_array(message: common_pb2.DoubleArray) -> np.ndarray:
    """The array in a DoubleArray (either encoding); read-only view for ``le_bytes``.

    Raises ``ValueError`` when the shape does not match the number of values.
    """
    shape = tuple(int(d) for d in message.shape)
    if message.WhichOneof("values") == "packed":
        arr = np.array(message.packed.values, dtype=np.float64)
    else:
        data = message.le_bytes
        if len(data) % 8:
            raise ValueError(f"le_bytes holds {len(data)} bytes, not a multiple of 8")
        arr = np.frombuffer(data, dtype="<f8")
    expected = int(np.prod(shape, dtype=np.int64)) if shape else arr.size
    if arr.size != expected:
        raise ValueError(f"shape {list(shape)} needs {expected} values, got {arr.size}")
    return arr.reshape(shape) if shape else arr


def from_le_bytes(data: bytes, dtype: str) -> np.ndarray:
    """A 1-D read-only view of little-endian integers (``"<i8"``, ``"<u4"``, ``"i1"``)."""
    return np.frombuffer(data, dtype=dtype)


def timestamp_to_unix(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos * 1e-9


def timestamp_to_jd(ts: timestamp_pb2.Timestamp) -> tuple[float, float]:
    """Two-part UTC Julian date (``jd`` at 0h, ``0 <= fr < 1``) of a Timestamp, exact to
    the nanosecond in the numerator (same values as ``elements.datetime_to_jd`` for whole
    microseconds)."""
    days, secs = divmod(int(ts.seconds), _SEC_PER_DAY)
    return _JD_UNIX_EPOCH + days, (secs * 1_000_000_000 + int(ts.nanos)) / 86_400_000_000_000


def unix_to_timestamp(seconds: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    whole = int(np.floor(seconds))
    ts.seconds = whole
    ts.nanos = min(int(round((seconds - whole) * 1e9)), 999_999_999)
    return ts


def datetime_to_timestamp(value: datetime) -> timestamp_pb2.Timestamp:
    """A timezone-aware datetime as a Timestamp (a naive one is refused: the suite's times
    are all UTC-aware, so a naive value is a bug, not an input)."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: the suite's times are UTC-aware")
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def optional_timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    """`datetime_to_timestamp`, with None for an unset time (a message field left unset)."""
    return None if value is None else datetime_to_timestamp(value)


def timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    """A Timestamp as an aware UTC datetime (whole microseconds; nanoseconds truncated)."""
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=int(ts.seconds),
                                                        microseconds=int(ts.nanos) // 1000)


def micros_to_timestamp(micros: int) -> timestamp_pb2.Timestamp:
    """Integer microseconds since the Unix epoch as a Timestamp."""
    ts = timestamp_pb2.Timestamp()
    ts.FromMicroseconds(int(micros))
    return ts


def duration_to_seconds(value: duration_pb2.Duration) -> float:
    return value.seconds + value.nanos * 1e-9


def seconds_to_duration(seconds: float) -> duration_pb2.Duration:
    """Seconds as a Duration (seconds and nanos of one sign, as the type requires)."""
    out = duration_pb2.Duration()
    out.FromNanoseconds(int(round(seconds * 1e9)))
    return out
