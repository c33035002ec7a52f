"""General-perturbations element sets (GPEs) and their conversion to SGP4 records.

An :class:`ElementSet` holds one SGP4 mean-element set exactly as published in a
TLE or CCSDS OMM (Kozai mean motion, TEME of epoch, UTC epoch).  Units follow the
published formats, not SI:

* mean motion in revolutions per day, angles in degrees;
* ``ndot`` is the TLE "first derivative of mean motion divided by two" in rev/day^2,
  ``nddot`` the "second derivative divided by six" in rev/day^3;
* ``bstar`` in inverse Earth radii.

The epoch is kept twice: as a timezone-aware ``datetime`` (UTC, microsecond
resolution, for display and storage) and as a two-part Julian date ``(jd, fr)``
(``jd`` ending in .5, ``0 <= fr < 1``) which is the exact value used for propagation.

Record-level problems are reported with :class:`RecordError` (raised inside a parser)
and :class:`RejectedRecord` (the value a parser returns for a record it skipped).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from sgp4.api import WGS72, Satrec

__all__ = [
    "ElementFormat",
    "ElementSet",
    "RecordError",
    "RejectedRecord",
    "MAX_MEAN_MOTION_REV_DAY",
    "MAX_CATALOG_NUMBER",
    "JD_UNIX_EPOCH",
    "datetime_to_jd",
    "jd_to_datetime",
    "validate_elements",
]

#: Above ~17.1 rev/day the SGP4 mean semi-major axis is below the Earth's equatorial
#: radius; 18 leaves headroom for decaying objects while rejecting nonsense.
MAX_MEAN_MOTION_REV_DAY = 18.0
#: Largest catalog number a TLE can carry (alpha-5 "Z9999").
MAX_CATALOG_NUMBER = 339_999
#: Julian date of 1970-01-01T00:00:00 UTC.
JD_UNIX_EPOCH = 2440587.5
_JD_ORDINAL_OFFSET = 1721424.5  # JD at 00:00 of proleptic Gregorian ordinal 0
_JD_1949_DEC_31 = 2433281.5  # SGP4 "epoch" origin used by sgp4init
_TWO_PI = 2.0 * math.pi
_MIN_PER_DAY = 1440.0
_XPDOTP = _MIN_PER_DAY / _TWO_PI  # rev/day per rad/min


@dataclass(frozen=True, slots=True)
class RejectedRecord:
    """A record a parser skipped.

    ``line_number`` is the 1-based line (TLE) or record (OMM) number where the bad
    record starts; 0 means the whole document was unusable.  ``key`` names the
    offending OMM field when there is one.
    """

    line_number: int
    reason: str
    key: str | None = None


class RecordError(ValueError):
    """Raised while parsing one record; carries the 1-based line/record number."""

    def __init__(self, line_number: int, reason: str, key: str | None = None):
        super().__init__(f"record at {line_number}: {reason}")
        self.line_number = line_number
        self.reason = reason
        self.key = key

    def to_rejection(self) -> RejectedRecord:
        return RejectedRecord(self.line_number, self.reason, self.key)


class ElementFormat(StrEnum):
    """The text an element set arrives in (the stored and logged spelling)."""

    TLE = "tle"
    OMM_JSON = "omm_json"
    OMM_CSV = "omm_csv"
    OMM_XML = "omm_xml"


def datetime_to_jd(epoch: datetime) -> tuple[float, float]:
    """UTC ``datetime`` -> two-part Julian date ``(jd, fr)``, ``jd`` at 00:00 (ends in .5).

    Naive datetimes are taken as UTC; aware ones are converted to UTC first.
    """
    if epoch.tzinfo is not None:
        epoch = epoch.astimezone(UTC)
    jd = epoch.toordinal() + _JD_ORDINAL_OFFSET
    micros = ((epoch.hour * 60 + epoch.minute) * 60 + epoch.second) * 1_000_000 + epoch.microsecond
    return float(jd), micros / 86_400_000_000.0


def jd_to_datetime(jd: float, fr: float) -> datetime:
    """Two-part Julian date (UTC) -> aware ``datetime`` rounded to the microsecond."""
    whole = math.floor(jd - 0.5) + math.floor(fr)
    frac = (jd - 0.5 - math.floor(jd - 0.5)) + (fr - math.floor(fr))
    ordinal = int(whole - (_JD_ORDINAL_OFFSET - 0.5))
    micros = round(frac * 86_400_000_000)
    return datetime.fromordinal(ordinal).replace(tzinfo=UTC) + timedelta(microseconds=micros)


def validate_elements(
    mean_motion_rev_day: float,
    eccentricity: float,
    inclination_deg: float,
    raan_deg: float,
    arg_perigee_deg: float,
    mean_anomaly_deg: float,
    bstar: float = 0.0,
) -> None:
    """Raise ``ValueError`` naming the first out-of-range field.

    Ranges: ``0 <= ecc < 1``, ``0 <= incl <= 180``, other angles in ``[0, 360]``,
    ``0 < n <= MAX_MEAN_MOTION_REV_DAY``; every value finite.
    """
    values = {
        "mean motion": mean_motion_rev_day,
        "eccentricity": eccentricity,
        "inclination": inclination_deg,
        "RAAN": raan_deg,
        "argument of perigee": arg_perigee_deg,
        "mean anomaly": mean_anomaly_deg,
        "bstar": bstar,
    }
    for name, value in values.items():
        if not math.isfinite(value):
            raise ValueError(f"{name} is not finite")
    if not 0.0 <= eccentricity < 1.0:
        raise ValueError(f"eccentricity {eccentricity} outside [0, 1)")
    if not 0.0 <= inclination_deg <= 180.0:
        raise ValueError(f"inclination {inclination_deg} deg outside [0, 180]")
    for name in ("RAAN", "argument of perigee", "mean anomaly"):
        if not 0.0 <= values[name] <= 360.0:
            raise ValueError(f"{name} {values[name]} deg outside [0, 360]")
    if not 0.0 < mean_motion_rev_day <= MAX_MEAN_MOTION_REV_DAY:
        raise ValueError(
            f"mean motion {mean_motion_rev_day} rev/day outside (0, {MAX_MEAN_MOTION_REV_DAY}]"
        )


@dataclass(frozen=True, slots=True)
class ElementSet:
    """One SGP4 mean-element set (TEME of epoch, Kozai mean motion, WGS72 constants).

    Construct with either ``epoch`` (a datetime, UTC) or ``epoch_jd``/``epoch_fr``
    (exact two-part Julian date, UTC); the other representation is derived.
    """

    catalog_number: int
    mean_motion_rev_day: float
    eccentricity: float
    inclination_deg: float
    raan_deg: float
    arg_perigee_deg: float
    mean_anomaly_deg: float
    epoch: datetime | None = None
    epoch_jd: float | None = None
    epoch_fr: float | None = None
    bstar: float = 0.0
    ndot: float = 0.0
    nddot: float = 0.0
    name: str = ""
    intl_designator: str = ""
    element_set_number: int = 999
    rev_at_epoch: int = 0
    classification: str = "U"
    ephemeris_type: int = 0
    _satrec_cache: list[Satrec] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        # catalog numbers above MAX_CATALOG_NUMBER are allowed (OMM); only TLE
        # encoding is limited to alpha-5
        if self.catalog_number < 0:
            raise ValueError(f"catalog number {self.catalog_number} is negative")
        if self.epoch_jd is None or self.epoch_fr is None:
            if self.epoch is None:
                raise ValueError("ElementSet needs an epoch or epoch_jd/epoch_fr")
            jd, fr = datetime_to_jd(self.epoch)
            object.__setattr__(self, "epoch_jd", jd)
            object.__setattr__(self, "epoch_fr", fr)
        else:
            # normalise to jd ending in .5 and 0 <= fr < 1
            jd, fr = float(self.epoch_jd), float(self.epoch_fr)
            shift = math.floor(jd - 0.5)
            fr += jd - 0.5 - shift
            jd = shift + 0.5
            carry = math.floor(fr)
            object.__setattr__(self, "epoch_jd", jd + carry)
            object.__setattr__(self, "epoch_fr", fr - carry)
        if self.epoch is None:
            object.__setattr__(self, "epoch", jd_to_datetime(*self.jd_fr))
        elif self.epoch.tzinfo is None:
            object.__setattr__(self, "epoch", self.epoch.replace(tzinfo=UTC))

    # -- derived quantities -------------------------------------------------------
    @property
    def jd_fr(self) -> tuple[float, float]:
        """Epoch as a two-part Julian date (UTC)."""
        return self.epoch_jd, self.epoch_fr  # type: ignore[return-value]

    @property
    def mean_motion_rad_min(self) -> float:
        """Kozai mean motion in rad/min (SGP4's ``no_kozai``).

        Computed as ``n / (1440 / 2pi)`` exactly like ``Satrec.twoline2rv`` does: highly
        eccentric deep-space orbits are sensitive to the last bit of this value.
        """
        return self.mean_motion_rev_day / _XPDOTP

    @property
    def period_min(self) -> float:
        """Nominal orbital period in minutes (from the Kozai mean motion)."""
        return _MIN_PER_DAY / self.mean_motion_rev_day

    def validate(self) -> None:
        """Raise ``ValueError`` if a field is outside its physical range."""
        validate_elements(
            self.mean_motion_rev_day,
            self.eccentricity,
            self.inclination_deg,
            self.raan_deg,
            self.arg_perigee_deg,
            self.mean_anomaly_deg,
            self.bstar,
        )

    def gpe_row(self) -> tuple[float, ...]:
        """The 9 GPE values heyoka's ``sgp4_propagator`` expects (rad/min, rad, JD)."""
        return (
            self.mean_motion_rad_min,
            self.eccentricity,
            math.radians(self.inclination_deg),
            math.radians(self.raan_deg),
            math.radians(self.arg_perigee_deg),
            math.radians(self.mean_anomaly_deg),
            self.bstar,
            *self.jd_fr,
        )

    def to_satrec(self) -> Satrec:
        """Build an initialised ``sgp4.api.Satrec`` (WGS72, improved mode).

        The result is cached on the instance; treat it as read-only.  After
        ``sgp4init`` the epoch is overwritten with the exact two-part Julian date so
        propagation does not suffer the rounding of "days since 1949" (the SDP4 lunar/solar
        terms still use that value, as in the reference code).
        """
        if self._satrec_cache:
            return self._satrec_cache[0]
        sat = Satrec()
        epoch_jd, epoch_fr = self.jd_fr
        satnum = self.catalog_number if self.catalog_number <= MAX_CATALOG_NUMBER else 0
        sat.sgp4init(
            WGS72,
            "i",
            satnum,
            # summed like Satrec.twoline2rv does, so deep-space lunar/solar terms match
            # the reference implementation bit for bit
            (epoch_jd + epoch_fr) - _JD_1949_DEC_31,
            self.bstar,
            self.ndot * _TWO_PI / _MIN_PER_DAY**2,
            self.nddot * _TWO_PI / _MIN_PER_DAY**3,
            self.eccentricity,
            math.radians(self.arg_perigee_deg),
            math.radians(self.inclination_deg),
            math.radians(self.mean_anomaly_deg),
            self.mean_motion_rad_min,
            math.radians(self.raan_deg),
        )
        sat.jdsatepoch = self.epoch_jd
        sat.jdsatepochF = self.epoch_fr
        sat.intldesg = self.intl_designator[:11]
        sat.classification = self.classification if self.classification else "U"
        sat.ephtype = self.ephemeris_type
        sat.elnum = self.element_set_number
        sat.revnum = self.rev_at_epoch
        self._satrec_cache.append(sat)
        return sat
