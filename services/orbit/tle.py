"""Two-/three-line element set (TLE) reading and writing.

Column layout follows the Space-Track/NORAD TLE definition (1-based columns, 69 chars):

Line 1: ``1`` | 3-7 catalog no. | 8 classification | 10-17 international designator |
19-20 epoch year | 21-32 epoch day-of-year | 34-43 ndot/2 (rev/day^2) |
45-52 nddot/6 (rev/day^3, implied decimal) | 54-61 BSTAR (1/earth radii, implied
decimal) | 63 ephemeris type | 65-68 element set no. | 69 checksum.

Line 2: ``2`` | 3-7 catalog no. | 9-16 inclination deg | 18-25 RAAN deg |
27-33 eccentricity (implied leading decimal point) | 35-42 arg. of perigee deg |
44-51 mean anomaly deg | 53-63 mean motion rev/day | 64-68 revolution no. | 69 checksum.

Two-digit epoch years 57-99 are 1957-1999, 00-56 are 2000-2056.  Catalog numbers above
99999 use the alpha-5 scheme (letter A-Z without I and O, then four digits).

:func:`parse_tle` never raises on bad input: it returns the good element sets and a list
of :class:`~services.orbit.elements.RejectedRecord` and resynchronises on the next
``1 ``/``2 `` line pair after garbage.
"""

from __future__ import annotations

import re
from datetime import date

from services.orbit.elements import (
    ElementSet,
    RecordError,
    RejectedRecord,
    validate_elements,
)

__all__ = [
    "alpha5_decode",
    "alpha5_encode",
    "checksum",
    "format_tle",
    "parse_tle",
    "parse_tle_lines",
    "tle_designator",
]

TLE_LINE_LENGTH = 69
_ALPHA5_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # I and O skipped; A = 10
_ALPHA5_VALUE = {c: i + 10 for i, c in enumerate(_ALPHA5_LETTERS)}

_RE_CATNUM = re.compile(r"^(?:[A-HJ-NP-Z]\d{4}| {0,4}\d{1,5})$")
_RE_DECIMAL = re.compile(r"^ *[+-]?(?:\d+\.\d*|\.\d+)$")
_RE_IMPLIED = re.compile(r"^([ +-])(\d{5})([+-])(\d)$")
_RE_INT_OR_BLANK = re.compile(r"^ *\d*$")
_RE_EPOCH_DAY = re.compile(r"^ *\d{1,3}\.\d+$")
_RE_DIGITS = re.compile(r"^ *\d+$")

# 0-based column slices
_L1_SPACES = (1, 8, 17, 32, 43, 52, 61, 63)
_L2_SPACES = (1, 7, 16, 25, 33, 42, 51)


def alpha5_decode(field: str) -> int:
    """Decode a 5-character catalog field (``"25544"``, ``"A0001"``) to an int."""
    text = field.strip()
    if not text:
        raise ValueError("empty catalog number")
    first = text[0]
    if first.isalpha():
        if first not in _ALPHA5_VALUE or len(text) != 5 or not text[1:].isdigit():
            raise ValueError(f"bad alpha-5 catalog number {field!r}")
        return _ALPHA5_VALUE[first] * 10_000 + int(text[1:])
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"bad catalog number {field!r}")
    return int(text)


def alpha5_encode(number: int) -> str:
    """Encode a catalog number (0..339999) as the 5-character TLE field."""
    if not 0 <= number <= 339_999:
        raise ValueError(f"catalog number {number} not representable in a TLE")
    if number <= 99_999:
        return f"{number:05d}"
    head, tail = divmod(number, 10_000)
    return f"{_ALPHA5_LETTERS[head - 10]}{tail:04d}"


def checksum(line: str) -> int:
    """Mod-10 checksum of columns 1-68: digits count their value, '-' counts 1."""
    total = 0
    for ch in line[:68]:
        if "0" <= ch <= "9":
            total += ord(ch) - 48
        elif ch == "-":
            total += 1
    return total % 10


def _implied(field: str, what: str) -> float:
    """Implied-decimal exponent field like ``' 38792-4'`` -> 0.38792e-4."""
    m = _RE_IMPLIED.match(field)
    if not m:
        raise ValueError(f"bad {what} field {field!r}")
    sign, mant, esign, exp = m.groups()
    value = int(mant) * 10.0 ** (int(exp) * (1 if esign == "+" else -1) - 5)
    return -value if sign == "-" else value


def _decimal(field: str, what: str) -> float:
    if not _RE_DECIMAL.match(field):
        raise ValueError(f"bad {what} field {field!r}")
    return float(field)


def _int_or_zero(field: str, what: str) -> int:
    if not _RE_INT_OR_BLANK.match(field):
        raise ValueError(f"bad {what} field {field!r}")
    text = field.strip()
    return int(text) if text else 0


def _epoch_jd(year2: str, day_field: str) -> tuple[float, float]:
    if not (len(year2) == 2 and year2.isdigit()):
        raise ValueError(f"bad epoch year {year2!r}")
    if not _RE_EPOCH_DAY.match(day_field):
        raise ValueError(f"bad epoch day {day_field!r}")
    yy = int(year2)
    year = 1900 + yy if yy >= 57 else 2000 + yy
    day = float(day_field)
    days_in_year = (date(year + 1, 1, 1) - date(year, 1, 1)).days
    if not 1.0 <= day < days_in_year + 1:
        raise ValueError(f"epoch day {day} outside 1..{days_in_year}")
    whole_text, frac_text = day_field.strip().split(".")
    jd = date(year, 1, 1).toordinal() + 1721424.5 + (int(whole_text) - 1)
    return jd, float("0." + frac_text)  # exact decimal fraction, no day - int(day) noise


def _check_layout(line: str, number: str, spaces: tuple[int, ...]) -> None:
    if len(line) != TLE_LINE_LENGTH:
        raise ValueError(f"line {number} has {len(line)} characters, expected 69")
    if not line.isascii():
        raise ValueError(f"line {number} contains non-ASCII characters")
    if line[0] != number:
        raise ValueError(f"line {number} does not start with {number!r}")
    for col in spaces:
        if line[col] != " ":
            raise ValueError(f"line {number} column {col + 1} should be blank")
    if not line[68].isdigit():
        raise ValueError(f"line {number} checksum column is not a digit")
    if checksum(line) != int(line[68]):
        raise ValueError(
            f"line {number} checksum mismatch (expected {checksum(line)}, found {line[68]})"
        )


def parse_tle_lines(line1: str, line2: str, name: str = "", line_number: int = 1) -> ElementSet:
    """Parse one record; raise :class:`RecordError` (with ``line_number``) if invalid."""
    line1 = line1.rstrip("\r\n")
    line2 = line2.rstrip("\r\n")
    try:
        _check_layout(line1, "1", _L1_SPACES)
        _check_layout(line2, "2", _L2_SPACES)
        for text, which in ((line1[2:7], 1), (line2[2:7], 2)):
            if not _RE_CATNUM.match(text):
                raise ValueError(f"bad catalog number {text!r} on line {which}")
        catnum = alpha5_decode(line1[2:7])
        if alpha5_decode(line2[2:7]) != catnum:
            raise ValueError(f"catalog numbers differ: {line1[2:7]!r} vs {line2[2:7]!r}")
        classification = line1[7]
        if classification not in "UCS ":
            raise ValueError(f"bad classification {classification!r}")
        jd, fr = _epoch_jd(line1[18:20], line1[20:32])
        ndot = _decimal(line1[33:43], "ndot")
        nddot = _implied(line1[44:52], "nddot")
        bstar = _implied(line1[53:61], "bstar")
        ephtype = line1[62]
        if not (ephtype == " " or ephtype.isdigit()):
            raise ValueError(f"bad ephemeris type {ephtype!r}")
        elnum = _int_or_zero(line1[64:68], "element set number")
        incl = _decimal(line2[8:16], "inclination")
        raan = _decimal(line2[17:25], "RAAN")
        ecc_field = line2[26:33]
        if not _RE_DIGITS.match(ecc_field):
            raise ValueError(f"bad eccentricity field {ecc_field!r}")
        ecc = float("0." + ecc_field.strip().zfill(7))
        argp = _decimal(line2[34:42], "argument of perigee")
        mean_anomaly = _decimal(line2[43:51], "mean anomaly")
        mean_motion = _decimal(line2[52:63], "mean motion")
        revnum = _int_or_zero(line2[63:68], "revolution number")
        validate_elements(mean_motion, ecc, incl, raan, argp, mean_anomaly, bstar)
    except ValueError as exc:
        raise RecordError(line_number, str(exc)) from None
    return ElementSet(
        catalog_number=catnum,
        mean_motion_rev_day=mean_motion,
        eccentricity=ecc,
        inclination_deg=incl,
        raan_deg=raan,
        arg_perigee_deg=argp,
        mean_anomaly_deg=mean_anomaly,
        epoch_jd=jd,
        epoch_fr=fr,
        bstar=bstar,
        ndot=ndot,
        nddot=nddot,
        name=name,
        intl_designator=line1[9:17].strip(),
        element_set_number=elnum,
        rev_at_epoch=revnum,
        classification=classification.strip() or "U",
        ephemeris_type=0 if ephtype == " " else int(ephtype),
    )


def _is_line(line: str, number: str) -> bool:
    return line.startswith(number + " ") or line == number


def parse_tle(text: str) -> tuple[list[ElementSet], list[RejectedRecord]]:
    """Parse CelesTrak TLE text (2-line and 3-line records, mixed).

    Returns ``(element_sets, rejected)``; ``rejected`` carries the 1-based line number
    where each bad record (or stray line) starts.  Blank lines are ignored; a name line
    is any other line directly followed by a line 1 (a leading ``"0 "`` is dropped).
    """
    lines = text.splitlines()
    good: list[ElementSet] = []
    bad: list[RejectedRecord] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].rstrip()
        if not line.strip():
            i += 1
            continue
        nxt = lines[i + 1].rstrip() if i + 1 < n else ""
        if _is_line(line, "1"):
            if _is_line(nxt, "2"):
                _parse_into(line, nxt, "", i + 1, good, bad)
                i += 2
            else:
                bad.append(RejectedRecord(i + 1, "line 1 not followed by a line 2"))
                i += 1
        elif _is_line(line, "2"):
            bad.append(RejectedRecord(i + 1, "line 2 without a preceding line 1"))
            i += 1
        elif _is_line(nxt, "1"):
            name = line.strip()
            if name.startswith("0 "):
                name = name[2:].strip()
            third = lines[i + 2].rstrip() if i + 2 < n else ""
            if _is_line(third, "2"):
                _parse_into(nxt, third, name, i + 1, good, bad)
                i += 3
            else:
                bad.append(RejectedRecord(i + 1, "name line and line 1 without a line 2"))
                i += 2
        else:
            bad.append(RejectedRecord(i + 1, "unexpected line outside a TLE record"))
            i += 1
    return good, bad


def _parse_into(
    line1: str,
    line2: str,
    name: str,
    line_number: int,
    good: list[ElementSet],
    bad: list[RejectedRecord],
) -> None:
    try:
        good.append(parse_tle_lines(line1, line2, name, line_number))
    except RecordError as exc:
        bad.append(exc.to_rejection())


# -- writer ------------------------------------------------------------------------


def _format_implied(value: float) -> str:
    """0.38792e-4 -> ' 38792-4' (8 chars)."""
    if value == 0.0:
        return " 00000+0"
    sign = "-" if value < 0 else " "
    mag = abs(value)
    exp = 0
    mant = 0
    for exp in range(-9, 10):
        mant = round(mag / 10.0 ** (exp - 5))
        if mant < 100_000:
            break
    else:
        raise ValueError(f"value {value} not representable in TLE exponent format")
    if mant == 0:
        return " 00000+0"
    if not -9 <= exp <= 9:
        raise ValueError(f"value {value} not representable in TLE exponent format")
    return f"{sign}{mant:05d}{'-' if exp < 0 else '+'}{abs(exp)}"


def _format_ndot(value: float) -> str:
    text = f"{value:.8f}"  # '-0.00000084'
    if abs(value) >= 1.0:
        raise ValueError(f"ndot {value} not representable in a TLE")
    sign = "-" if text.startswith("-") else " "
    return sign + text.lstrip("-")[1:]  # drop leading 0 -> '.00000084'


def _epoch_fields(es: ElementSet) -> str:
    jd, fr = es.jd_fr
    # round to the 8 decimals a TLE carries, carrying into the day if needed
    frac = round(fr * 1e8)
    day_jd = jd
    if frac >= 100_000_000:
        frac -= 100_000_000
        day_jd += 1.0
    d = date.fromordinal(int(day_jd - 1721424.5))
    year = d.year
    if not 1957 <= year <= 2056:
        raise ValueError(f"epoch year {year} not representable in a TLE")
    doy = d.toordinal() - date(year, 1, 1).toordinal() + 1
    return f"{year % 100:02d}{doy:03d}.{frac:08d}"


_RE_COSPAR = re.compile(r"^(\d{2})(\d{2})-(\d{3})([A-Z]{1,3})$")


def tle_designator(intl_designator: str) -> str:
    """COSPAR id ``'2019-074A'`` -> TLE form ``'19074A'``; TLE-form input is kept."""
    text = (intl_designator or "").strip()
    m = _RE_COSPAR.match(text)
    if m:
        return f"{m.group(2)}{m.group(3)}{m.group(4)}"
    return text[:8]


def format_tle(es: ElementSet, *, include_name: bool = True) -> str:
    """Render an element set as TLE text (name line if present and wanted, 2 lines,
    '\\n'-terminated) with valid checksums; inverse of :func:`parse_tle` to the
    precision of the format."""
    cat = alpha5_encode(es.catalog_number)
    intl = tle_designator(es.intl_designator)
    line1 = (
        f"1 {cat}{(es.classification or 'U')[0]} {intl:<8s} {_epoch_fields(es)} "
        f"{_format_ndot(es.ndot)} {_format_implied(es.nddot)} {_format_implied(es.bstar)} "
        f"{es.ephemeris_type % 10:d} {es.element_set_number % 10000:4d}"
    )
    ecc = f"{es.eccentricity:.7f}"
    if not ecc.startswith("0."):
        raise ValueError(f"eccentricity {es.eccentricity} not representable")
    line2 = (
        f"2 {cat} {es.inclination_deg:8.4f} {es.raan_deg % 360.0:8.4f} {ecc[2:]} "
        f"{es.arg_perigee_deg % 360.0:8.4f} {es.mean_anomaly_deg % 360.0:8.4f} "
        f"{es.mean_motion_rev_day:11.8f}{es.rev_at_epoch % 100000:5d}"
    )
    line1 += str(checksum(line1))
    line2 += str(checksum(line2))
    head = f"{es.name}\n" if include_name and es.name else ""
    return f"{head}{line1}\n{line2}\n"
