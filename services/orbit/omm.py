"""CCSDS Orbit Mean-elements Messages (OMM) as CelesTrak serves them: JSON, CSV, XML.

Every record becomes an :class:`~services.orbit.elements.ElementSet` (mean elements in
TEME, SGP4 theory, UTC epoch; units as in the TLE: rev/day, degrees, 1/earth radii) or a
:class:`~services.orbit.elements.RejectedRecord` carrying the 1-based record number and
the offending key.  Unknown keys, wrong JSON types, out-of-range values and a frame,
time system or theory other than TEME/UTC/SGP4 reject the record.  Document-level
failures (not JSON, malformed XML, DOCTYPE/ENTITY declarations) return a single
rejection with number 0 (or the line number the parser reports for XML/JSON syntax).

Only the standard library is used; XML is parsed with ``xml.etree.ElementTree`` after
refusing any ``<!DOCTYPE``/``<!ENTITY`` so no entity expansion can happen.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from services.orbit.elements import (
    ElementFormat,
    ElementSet,
    RecordError,
    RejectedRecord,
    datetime_to_jd,
    validate_elements,
)

__all__ = ["detect_format", "parse_omm", "parse_omm_csv", "parse_omm_json", "parse_omm_xml"]

_FLOAT_KEYS = (
    "MEAN_MOTION",
    "ECCENTRICITY",
    "INCLINATION",
    "RA_OF_ASC_NODE",
    "ARG_OF_PERICENTER",
    "MEAN_ANOMALY",
    "BSTAR",
    "MEAN_MOTION_DOT",
    "MEAN_MOTION_DDOT",
)
_MAX_INT32 = 2**31 - 1
_INT_KEYS = ("NORAD_CAT_ID", "ELEMENT_SET_NO", "REV_AT_EPOCH", "EPHEMERIS_TYPE")
_STR_KEYS = (
    "OBJECT_NAME",
    "OBJECT_ID",
    "EPOCH",
    "CLASSIFICATION_TYPE",
    # CCSDS header/metadata keys (checked for their values where it matters)
    "CCSDS_OMM_VERS",
    "COMMENT",
    "CREATION_DATE",
    "ORIGINATOR",
    "CENTER_NAME",
    "REF_FRAME",
    "TIME_SYSTEM",
    "MEAN_ELEMENT_THEORY",
)
_REQUIRED = (
    "EPOCH",
    "MEAN_MOTION",
    "ECCENTRICITY",
    "INCLINATION",
    "RA_OF_ASC_NODE",
    "ARG_OF_PERICENTER",
    "MEAN_ANOMALY",
    "NORAD_CAT_ID",
)
_FIXED_VALUES = {
    "CENTER_NAME": "EARTH",
    "REF_FRAME": "TEME",
    "TIME_SYSTEM": "UTC",
    "MEAN_ELEMENT_THEORY": "SGP4",
}
KNOWN_KEYS = frozenset(_FLOAT_KEYS + _INT_KEYS + _STR_KEYS)
#: Epochs are accepted from the first satellite's year to 2099 (TLE two-digit years span
#: 1957..2056 by construction).
MIN_EPOCH_YEAR = 1957
MAX_EPOCH_YEAR = 2100
#: Largest NORAD_CAT_ID accepted (the 9-digit range planned for the catalog; fits uint32).
MAX_OMM_CATALOG_NUMBER = 999_999_999
_RE_EPOCH = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,12}))?Z?$")
_RE_INT = re.compile(r"^[+-]?\d+$")
_RE_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


def _parse_epoch(text: str) -> tuple[datetime, float, float]:
    """ISO epoch -> (aware datetime, jd, fr) keeping all decimals in ``fr``."""
    m = _RE_EPOCH.match(text.strip())
    if not m:
        raise ValueError(f"bad EPOCH {text!r}")
    y, mo, d, hh, mm, ss = (int(g) for g in m.groups()[:6])
    frac = m.group(7) or ""
    if hh > 23 or mm > 59 or ss > 59:
        raise ValueError(f"bad EPOCH time of day {text!r}")
    whole = datetime(y, mo, d, hh, mm, ss, tzinfo=UTC)  # raises ValueError on bad dates
    jd, fr = datetime_to_jd(whole)
    if frac:
        fr += float("0." + frac) / 86400.0
    micro = min(999_999, round(float("0." + frac) * 1e6)) if frac else 0
    return whole.replace(microsecond=micro), jd, fr


def _build(values: dict[str, Any], number: int) -> ElementSet:
    """Typed values of one record -> ElementSet (raises RecordError)."""
    for key in _REQUIRED:
        if key not in values:
            raise RecordError(number, f"missing required key {key}", key)
    for key, expected in _FIXED_VALUES.items():
        if key in values and str(values[key]).strip().upper() != expected:
            raise RecordError(number, f"{key} must be {expected}, got {values[key]!r}", key)
    try:
        epoch, jd, fr = _parse_epoch(values["EPOCH"])
    except ValueError as exc:
        raise RecordError(number, str(exc), "EPOCH") from None
    if not MIN_EPOCH_YEAR <= epoch.year < MAX_EPOCH_YEAR:
        raise RecordError(
            number, f"EPOCH year {epoch.year} outside {MIN_EPOCH_YEAR}..{MAX_EPOCH_YEAR - 1}",
            "EPOCH")
    catnum = values["NORAD_CAT_ID"]
    if catnum < 0:
        raise RecordError(number, f"NORAD_CAT_ID {catnum} is negative", "NORAD_CAT_ID")
    if catnum > MAX_OMM_CATALOG_NUMBER:
        raise RecordError(
            number, f"NORAD_CAT_ID {catnum} above {MAX_OMM_CATALOG_NUMBER}", "NORAD_CAT_ID")
    cls = values.get("CLASSIFICATION_TYPE", "U") or "U"
    if cls not in ("U", "C", "S"):
        raise RecordError(number, f"bad CLASSIFICATION_TYPE {cls!r}", "CLASSIFICATION_TYPE")
    for key in ("ELEMENT_SET_NO", "REV_AT_EPOCH", "EPHEMERIS_TYPE"):
        if values.get(key, 0) < 0:
            raise RecordError(number, f"{key} is negative", key)
        if values.get(key, 0) > _MAX_INT32:  # an int32 in orbit.proto and in the store
            raise RecordError(number, f"{key} above {_MAX_INT32}", key)
    args = {k: values.get(k, 0.0) for k in _FLOAT_KEYS}
    try:
        validate_elements(
            args["MEAN_MOTION"],
            args["ECCENTRICITY"],
            args["INCLINATION"],
            args["RA_OF_ASC_NODE"],
            args["ARG_OF_PERICENTER"],
            args["MEAN_ANOMALY"],
            args["BSTAR"],
        )
    except ValueError as exc:
        raise RecordError(number, str(exc), _key_for_message(str(exc))) from None
    for key in ("MEAN_MOTION_DOT", "MEAN_MOTION_DDOT"):
        if not math.isfinite(args[key]):
            raise RecordError(number, f"{key} is not finite", key)
    return ElementSet(
        catalog_number=catnum,
        mean_motion_rev_day=args["MEAN_MOTION"],
        eccentricity=args["ECCENTRICITY"],
        inclination_deg=args["INCLINATION"],
        raan_deg=args["RA_OF_ASC_NODE"],
        arg_perigee_deg=args["ARG_OF_PERICENTER"],
        mean_anomaly_deg=args["MEAN_ANOMALY"],
        epoch=epoch,
        epoch_jd=jd,
        epoch_fr=fr,
        bstar=args["BSTAR"],
        ndot=args["MEAN_MOTION_DOT"],
        nddot=args["MEAN_MOTION_DDOT"],
        name=values.get("OBJECT_NAME", "") or "",
        intl_designator=values.get("OBJECT_ID", "") or "",
        element_set_number=values.get("ELEMENT_SET_NO", 999),
        rev_at_epoch=values.get("REV_AT_EPOCH", 0),
        classification=cls,
        ephemeris_type=values.get("EPHEMERIS_TYPE", 0),
    )


_MESSAGE_KEYS = {
    "mean motion": "MEAN_MOTION",
    "eccentricity": "ECCENTRICITY",
    "inclination": "INCLINATION",
    "RAAN": "RA_OF_ASC_NODE",
    "argument of perigee": "ARG_OF_PERICENTER",
    "mean anomaly": "MEAN_ANOMALY",
    "bstar": "BSTAR",
}


def _key_for_message(message: str) -> str | None:
    for prefix, key in _MESSAGE_KEYS.items():
        if message.startswith(prefix):
            return key
    return None


def _typed_from_json(obj: object, number: int) -> dict[str, Any]:
    """Check JSON value types strictly (numbers for numeric keys, no bools)."""
    if not isinstance(obj, dict):
        raise RecordError(number, f"record is a {type(obj).__name__}, expected an object")
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key not in KNOWN_KEYS:
            raise RecordError(number, f"unknown key {key!r}", str(key))
        if value is None:  # JSON null: treated as absent (required keys then reject)
            continue
        if key in _FLOAT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise RecordError(number, f"{key} must be a number", key)
            value = float(value)
            if not math.isfinite(value):
                raise RecordError(number, f"{key} is not finite", key)
        elif key in _INT_KEYS:
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecordError(number, f"{key} must be an integer", key)
        elif not isinstance(value, str):
            raise RecordError(number, f"{key} must be a string", key)
        out[key] = value
    return out


def _typed_from_strings(raw: dict[str, Any], number: int) -> dict[str, Any]:
    """Convert text values (CSV cells, XML element text) to the types of each key."""
    out: dict[str, Any] = {}
    for key, text in raw.items():
        if key not in KNOWN_KEYS:
            raise RecordError(number, f"unknown key {key!r}", str(key))
        text = (text or "").strip()
        if key in _FLOAT_KEYS:
            if not _RE_FLOAT.match(text):
                raise RecordError(number, f"{key} must be a number, got {text!r}", key)
            out[key] = float(text)
            if not math.isfinite(out[key]):
                raise RecordError(number, f"{key} is not finite", key)
        elif key in _INT_KEYS:
            if not _RE_INT.match(text):
                raise RecordError(number, f"{key} must be an integer, got {text!r}", key)
            out[key] = int(text)
        else:
            out[key] = text
    return out


def _collect(
    records: list[Any], convert: Callable[[object, int], dict[str, Any]]
) -> tuple[list[ElementSet], list[RejectedRecord]]:
    good: list[ElementSet] = []
    bad: list[RejectedRecord] = []
    for number, rec in enumerate(records, start=1):
        try:
            good.append(_build(convert(rec, number), number))
        except RecordError as exc:
            bad.append(exc.to_rejection())
        except (ValueError, OverflowError) as exc:  # e.g. datetime range in an odd record
            bad.append(RejectedRecord(number, str(exc)))
    return good, bad


def parse_omm_json(text: str) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """CelesTrak OMM JSON: a list of flat objects (a single object is accepted too)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        line = getattr(exc, "lineno", 0)
        return [], [RejectedRecord(line, f"not valid JSON: {exc}")]
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        return [], [RejectedRecord(0, "JSON document is not a list of OMM objects")]
    return _collect(doc, _typed_from_json)


def parse_omm_csv(text: str) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """CelesTrak OMM CSV: header row of OMM keywords, one record per row."""
    try:
        rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"), newline="")))
    except csv.Error as exc:
        return [], [RejectedRecord(0, f"not valid CSV: {exc}")]
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        return [], [RejectedRecord(0, "CSV has no header row")]
    header = [h.strip() for h in rows[0]]
    unknown = [h for h in header if h not in KNOWN_KEYS]
    if unknown:
        return [], [RejectedRecord(0, f"unknown CSV column {unknown[0]!r}", unknown[0])]
    if len(set(header)) != len(header):
        return [], [RejectedRecord(0, "duplicate CSV column")]

    def convert(row: object, number: int) -> dict[str, Any]:
        assert isinstance(row, list)
        if len(row) != len(header):
            raise RecordError(number, f"row has {len(row)} cells, header has {len(header)}")
        raw = {k: v for k, v in zip(header, row, strict=True) if v.strip() != ""}
        return _typed_from_strings(raw, number)

    return _collect(rows[1:], convert)


_XML_SECTIONS = {
    "ndm", "omm", "header", "body", "segment", "metadata", "data",
    "meanElements", "tleParameters", "userDefinedParameters",
}  # fmt: skip


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_omm_xml(text: str) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """CCSDS NDM/XML: ``<ndm><omm>`` elements (or a bare ``<omm>``), each one record."""
    lowered = text.lower()
    if "<!doctype" in lowered or "<!entity" in lowered:
        return [], [RejectedRecord(0, "DOCTYPE/ENTITY declarations are not allowed")]
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [], [RejectedRecord(exc.position[0], f"malformed XML: {exc}")]
    if _local(root.tag) == "omm":
        omms = [root]
    elif _local(root.tag) == "ndm":
        omms = list(root)
    else:
        return [], [RejectedRecord(0, f"root element <{_local(root.tag)}> is not ndm or omm")]

    def convert(omm: object, number: int) -> dict[str, Any]:
        assert isinstance(omm, ET.Element)
        if _local(omm.tag) != "omm":
            raise RecordError(number, f"unexpected element <{_local(omm.tag)}>")
        raw: dict[str, str] = {}
        for el in omm.iter():
            name = _local(el.tag)
            if el is omm or name in _XML_SECTIONS:
                continue
            if len(el):
                raise RecordError(number, f"unexpected nested element <{name}>", name)
            if name == "COMMENT":
                continue
            if name == "USER_DEFINED":
                raise RecordError(number, "unknown key USER_DEFINED", name)
            if name in raw:
                raise RecordError(number, f"duplicate key {name}", name)
            raw[name] = el.text or ""
        return _typed_from_strings(raw, number)

    return _collect(omms, convert)


def detect_format(text: str) -> ElementFormat:
    """Guess the :class:`ElementFormat` (TLE or OMM as JSON, CSV or XML) from the content."""
    head = text.lstrip("\ufeff \t\r\n")
    if head.startswith("<"):
        return ElementFormat.OMM_XML
    if head.startswith(("[", "{")):
        return ElementFormat.OMM_JSON
    first = head.split("\n", 1)[0]
    if "," in first and ("NORAD_CAT_ID" in first or "OBJECT_NAME" in first or "EPOCH" in first):
        return ElementFormat.OMM_CSV
    return ElementFormat.TLE


def parse_omm(text: str, fmt: str | None = None) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """Parse OMM text in the given (or detected) format."""
    fmt = fmt or detect_format(text)
    parsers: dict[str, Callable[[str], tuple[list[ElementSet], list[RejectedRecord]]]] = {
        ElementFormat.OMM_JSON: parse_omm_json, ElementFormat.OMM_CSV: parse_omm_csv,
        ElementFormat.OMM_XML: parse_omm_xml}
    if fmt not in parsers:
        return [], [RejectedRecord(0, f"not an OMM format: {fmt}")]
    return parsers[fmt](text)
