"""CCSDS Orbit Ephemeris Messages in KVN form (CCSDS 502.0-B-3): arrays in, ASCII out.

Pure (no grpc, no SQL, no propagation). A message is a header (:func:`oem_header`)
followed by one segment per object (:func:`oem_segments`): a ``META_START`` ..
``META_STOP`` metadata block and the ephemeris data lines

    ``epoch x y z x_dot y_dot z_dot``

with the epoch in UTC as ``YYYY-MM-DDThh:mm:ss.ffffff``, positions in km with 6
decimals (1 mm) and velocities in km/s with 9 decimals (1 um/s). The frame is the
caller's (the orbit service writes SGP4's TEME); this module only prints it.

The data lines of a whole batch of objects are formatted at once with integer numpy
arithmetic into one ``uint8`` character matrix (no Python loop per value or per line):
see :func:`fixed_point`. Only the metadata blocks (a few lines per object) are Python
strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

__all__ = [
    "OEM_VERSION",
    "OemObject",
    "epoch_text",
    "fixed_point",
    "international_designator",
    "oem_header",
    "oem_segments",
]

OEM_VERSION = "3.0"
#: Decimals of positions (km) and velocities (km/s) in the data lines.
POSITION_DECIMALS = 6
VELOCITY_DECIMALS = 9
#: Lagrange degree advertised in INTERPOLATION_DEGREE (lowered for short segments).
INTERPOLATION_DEGREE = 7
_EPOCH_CHARS = 26  # YYYY-MM-DDThh:mm:ss.ffffff
_SPACE, _MINUS, _DOT, _ZERO, _NEWLINE = (ord(c) for c in " -.0\n")
#: int64 holds 9.2e18: scaled magnitudes must stay below this.
_MAX_SCALED = 9e18
_COSPAR = re.compile(r"^\d{4}-\d{3}[A-Z]{1,3}$")
_TLE_DESIGNATOR = re.compile(r"^(\d{2})(\d{3})([A-Z]{1,3})$")
_NOT_PRINTABLE = re.compile(r"[^\x20-\x7e]")


@dataclass(frozen=True, slots=True)
class OemObject:
    """What a segment's metadata says about its object."""

    object_name: str
    object_id: str
    comments: tuple[str, ...] = ()


def international_designator(text: str, catalog_number: int) -> str:
    """The OEM ``OBJECT_ID``: the international designator in ``YYYY-NNNP{PP}`` form
    when it is known (a TLE's ``98067A`` becomes ``1998-067A``: two-digit years 57..99
    are 19xx, 00..56 are 20xx, as for TLE epochs), else the catalog number."""
    value = (text or "").strip().upper()
    if _COSPAR.match(value):
        return value
    m = _TLE_DESIGNATOR.match(value)
    if m:
        yy = int(m.group(1))
        return f"{1900 + yy if yy >= 57 else 2000 + yy}-{m.group(2)}{m.group(3)}"
    return str(catalog_number)


def _value(text: str, fallback: str) -> str:
    """A KVN value: printable ASCII on one line, never empty."""
    clean = _NOT_PRINTABLE.sub("?", text or "").strip()
    return clean or fallback


def epoch_text(unix_us: np.ndarray) -> np.ndarray:
    """UTC instants (int64 microseconds since 1970) as ``(T, 26)`` uint8 characters
    ``YYYY-MM-DDThh:mm:ss.ffffff`` (numpy's own vectorized ISO formatting)."""
    stamps = np.asarray(unix_us, dtype=np.int64).astype("datetime64[us]")
    text = np.datetime_as_string(stamps, unit="us").astype(f"S{_EPOCH_CHARS}")
    return np.frombuffer(text.tobytes(), dtype=np.uint8).reshape(-1, _EPOCH_CHARS)


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")


def _digit_table() -> np.ndarray:
    """``(10000, 4)`` uint8: the four decimal digits of 0..9999, zero-padded."""
    n = np.arange(10_000)
    return np.stack([_ZERO + (n // 10 ** p) % 10 for p in (3, 2, 1, 0)], axis=1).astype(np.uint8)


_DIGITS = _digit_table()


def _write_digits(out: np.ndarray, number: np.ndarray, right: int, count: int) -> None:
    """Write the ``count`` lowest decimal digits of ``number`` (int64 >= 0, zero-padded)
    into ``out[:, right - count + 1 : right + 1]``, four digits per table lookup."""
    rest = number
    while count > 0:
        g = min(4, count)
        rest, low = np.divmod(rest, 10 ** g)
        out[:, right - g + 1:right + 1] = _DIGITS[low, 4 - g:]
        right -= g
        count -= g


def fixed_point(values: np.ndarray, decimals: int) -> np.ndarray:
    """Finite floats ``(..., C)`` as fixed-point text, one ``uint8`` row per leading index:
    each value takes ``2 + digits + 1 + decimals`` characters (a blank separator, then
    the number right-aligned with its sign next to the first digit, e.g. ``  -12.345600``),
    ``digits`` being the integer digits of the largest magnitude. Rounded to the nearest
    unit of the last decimal (``numpy.rint`` of the scaled value, so a value within an ulp
    of a tie may round either way); ``-0`` prints without its sign. Raises ValueError for
    NaN, infinities or magnitudes beyond int64 at that scale.

    Vectorized: one division per four digits over the whole array, each giving four
    characters from a digit table, then the leading zeros blanked and the signs placed."""
    v = np.asarray(values, dtype=np.float64)
    scale = 10 ** decimals
    magnitude = np.abs(v)
    if v.size and not (np.isfinite(v).all() and float(magnitude.max()) * scale < _MAX_SCALED):
        raise ValueError("values must be finite and small enough for int64 at this scale")
    q = np.rint(magnitude * scale).astype(np.int64).reshape(-1)
    negative = (v.reshape(-1) < 0) & (q != 0)
    whole, fraction = np.divmod(q, scale)
    digits = len(str(int(whole.max()))) if q.size else 1
    width = 2 + digits + 1 + decimals
    out = np.empty((q.size, width), dtype=np.uint8)
    out[:, 0] = _SPACE
    dot = width - 1 - decimals
    out[:, dot] = _DOT
    _write_digits(out, fraction, width - 1, decimals)
    _write_digits(out, whole, dot - 1, digits)
    # blank the leading zeros of the integer part (each value keeps at least one digit)
    used = np.ones(q.size, dtype=np.int64)
    for k in range(1, digits):
        above = whole >= 10 ** k
        used += above
        np.copyto(out[:, dot - 1 - k], np.uint8(_SPACE), where=~above)
    out[:, 1] = _SPACE  # the sign slot of the widest values
    rows = np.flatnonzero(negative)
    out[rows, dot - 1 - used[rows]] = _MINUS
    return out.reshape(*v.shape[:-1], v.shape[-1] * width)


def oem_header(creation: datetime, originator: str, comments: Sequence[str] = ()) -> str:
    """The message header: version, comments, CREATION_DATE (UTC) and ORIGINATOR."""
    lines = [f"CCSDS_OEM_VERS = {OEM_VERSION}"]
    lines += [f"COMMENT {_value(c, '')}".rstrip() for c in comments]
    lines += [f"CREATION_DATE = {_iso(creation)}",
              f"ORIGINATOR = {_value(originator, 'UNKNOWN')}", ""]
    return "\n".join(lines) + "\n"


def oem_segments(objects: Sequence[OemObject], unix_us: np.ndarray,
                 position_km: np.ndarray, velocity_km_s: np.ndarray, valid: np.ndarray, *,
                 ref_frame: str, center_name: str = "EARTH",
                 epoch_chars: np.ndarray | None = None) -> tuple[bytes, list[int]]:
    """One segment per object with at least one valid sample, as ASCII bytes, and the
    indices (into ``objects``) of those left out because no sample was valid.

    ``unix_us`` is ``(T,)`` int64 UTC microseconds, increasing; ``position_km`` and
    ``velocity_km_s`` are ``(N, T, 3)`` in ``ref_frame``; ``valid`` is ``(N, T)`` bool
    (False samples are left out of the data lines, and a data-section COMMENT says how
    many). ``epoch_chars`` is :func:`epoch_text` of ``unix_us`` when the caller already
    has it. START_TIME and STOP_TIME are the first and last data epochs."""
    n, t = valid.shape
    if position_km.shape != (n, t, 3) or velocity_km_s.shape != (n, t, 3):
        raise ValueError("position_km and velocity_km_s must be (N, T, 3), valid (N, T)")
    if len(objects) != n or np.size(unix_us) != t:
        raise ValueError("one object per row of valid and one instant per column")
    epochs = epoch_text(unix_us) if epoch_chars is None else epoch_chars
    obj_rows, time_cols = np.nonzero(valid)  # satellite-major, times increasing
    states = np.concatenate((position_km, velocity_km_s), axis=2)[obj_rows, time_cols]
    lines = np.concatenate((
        epochs[time_cols],
        fixed_point(states[:, :3], POSITION_DECIMALS),
        fixed_point(states[:, 3:], VELOCITY_DECIMALS),
        np.full((time_cols.size, 1), _NEWLINE, dtype=np.uint8)), axis=1)
    line_bytes = lines.shape[1]
    data = lines.tobytes()
    del lines, states
    counts = valid.sum(axis=1)
    ends = np.cumsum(counts)
    starts = ends - counts
    first_epoch = epochs.tobytes()
    iso = [first_epoch[i * _EPOCH_CHARS:(i + 1) * _EPOCH_CHARS].decode("ascii")
           for i in range(t)]
    pieces: list[bytes] = []
    omitted: list[int] = []
    for i, obj in enumerate(objects):
        count = int(counts[i])
        if count == 0:
            omitted.append(i)
            continue
        cols = time_cols[starts[i]:ends[i]]
        meta = ["META_START"]
        meta += [f"COMMENT {_value(c, '')}".rstrip() for c in obj.comments]
        meta += [f"OBJECT_NAME = {_value(obj.object_name, obj.object_id)}",
                 f"OBJECT_ID = {_value(obj.object_id, 'UNKNOWN')}",
                 f"CENTER_NAME = {center_name}",
                 f"REF_FRAME = {ref_frame}",
                 "TIME_SYSTEM = UTC",
                 f"START_TIME = {iso[int(cols[0])]}",
                 f"STOP_TIME = {iso[int(cols[-1])]}"]
        if count > 1:
            meta += ["INTERPOLATION = LAGRANGE",
                     f"INTERPOLATION_DEGREE = {min(INTERPOLATION_DEGREE, count - 1)}"]
        meta += ["META_STOP", ""]
        if count < t:
            meta.append(f"COMMENT {t - count} of {t} samples left out: SGP4 flagged them")
        pieces.append("\n".join(meta).encode("ascii") + b"\n")
        pieces.append(data[int(starts[i]) * line_bytes:int(ends[i]) * line_bytes])
        pieces.append(b"\n")
    return b"".join(pieces), omitted
