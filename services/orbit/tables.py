"""The orbit service's tables, and the mapping between an element set and its row.

Tables (own schema on PostgreSQL, own file on SQLite):

* ``catalog_state``: one row holding the catalog version, bumped by every change; it is the
  cache key of the in-memory catalog snapshot and of the SGP4 propagators, and the row lock
  that serialises writers (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite transactions
  start with ``BEGIN IMMEDIATE``).
* ``satellites``: catalog number (primary key), name, international designator.
* ``element_sets``: the history, unique per (satellite, epoch). The epoch is stored three
  ways: ``epoch_us`` (integer microseconds since 1970, the uniqueness and ordering key),
  and the exact two-part Julian date ``epoch_jd``/``epoch_fr`` (float64, round-trips bit
  for bit) that propagation uses.
* ``groups`` and ``group_members``.
* Creation and update times (``create_time``, ``update_time``) are aware UTC datetimes
  (:class:`shared.columns.UTCDateTime`).
* ``request_log``: the first answer of each mutating call with a ``request_id`` (AIP-155),
  keyed by (tenant, request_id): a key is the caller's tenant's (``shared.idempotency``).
  The key is claimed with :func:`shared.idempotency.claim` (the suite's fingerprint: the
  method and the request without its request_id). Writers are serialised by the
  ``catalog_state`` row lock taken before the key is claimed, so
  of concurrent twins the first stores its answer and the others, once it commits, replay
  it (the primary key backs that up).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.orbit.catalog import GroupKind
from services.orbit.elements import ElementSet
from shared.columns import UTCDateTime


class Base(DeclarativeBase):
    pass


class CatalogStateRow(Base):
    __tablename__ = "catalog_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, default=0)


class SatelliteRow(Base):
    __tablename__ = "satellites"

    catalog_number: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    object_name: Mapped[str] = mapped_column(String(64), default="")
    object_name_lower: Mapped[str] = mapped_column(String(64), default="", index=True)
    intl_designator: Mapped[str] = mapped_column(String(32), default="")
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)


class ElementSetRow(Base):
    __tablename__ = "element_sets"
    __table_args__ = (
        UniqueConstraint("catalog_number", "epoch_us", name="uq_element_sets_sat_epoch"),
        Index("ix_element_sets_epoch", "epoch_us"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    catalog_number: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("satellites.catalog_number", ondelete="CASCADE"))
    epoch_us: Mapped[int] = mapped_column(BigInteger)
    epoch_jd: Mapped[float] = mapped_column(Double)
    epoch_fr: Mapped[float] = mapped_column(Double)
    mean_motion: Mapped[float] = mapped_column(Double)
    eccentricity: Mapped[float] = mapped_column(Double)
    inclination: Mapped[float] = mapped_column(Double)
    raan: Mapped[float] = mapped_column(Double)
    arg_perigee: Mapped[float] = mapped_column(Double)
    mean_anomaly: Mapped[float] = mapped_column(Double)
    bstar: Mapped[float] = mapped_column(Double)
    ndot: Mapped[float] = mapped_column(Double)
    nddot: Mapped[float] = mapped_column(Double)
    element_set_number: Mapped[int] = mapped_column(Integer)
    rev_at_epoch: Mapped[int] = mapped_column(Integer)
    classification: Mapped[str] = mapped_column(String(1))
    ephemeris_type: Mapped[int] = mapped_column(Integer)
    source_group: Mapped[str | None] = mapped_column(String(63), nullable=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)


class GroupRow(Base):
    __tablename__ = "groups"

    group_id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    kind: Mapped[str] = mapped_column(String(16))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)
    update_time: Mapped[datetime] = mapped_column(UTCDateTime)


class GroupMemberRow(Base):
    __tablename__ = "group_members"
    __table_args__ = (Index("ix_group_members_sat", "catalog_number"),)

    group_id: Mapped[str] = mapped_column(
        String(63), ForeignKey("groups.group_id", ondelete="CASCADE"), primary_key=True)
    catalog_number: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("satellites.catalog_number", ondelete="CASCADE"),
        primary_key=True)


class RequestLogRow(Base):
    __tablename__ = "request_log"

    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes] = mapped_column(LargeBinary)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime)




ES = ElementSetRow.__table__
SAT = SatelliteRow.__table__
GRP = GroupRow.__table__
MEM = GroupMemberRow.__table__
LOG = RequestLogRow.__table__

GROUP_KINDS = tuple(GroupKind)


def epoch_us(es: ElementSet) -> int:
    """Integer microseconds since 1970 of an element set's epoch (its datetime)."""
    delta = es.epoch - datetime(1970, 1, 1, tzinfo=UTC)  # type: ignore[operator]
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def row_values(es: ElementSet) -> dict[str, Any]:
    """The ``element_sets`` columns of an element set (all but id, source and time)."""
    return {
        "catalog_number": es.catalog_number,
        "epoch_us": epoch_us(es),
        "epoch_jd": es.epoch_jd,
        "epoch_fr": es.epoch_fr,
        "mean_motion": es.mean_motion_rev_day,
        "eccentricity": es.eccentricity,
        "inclination": es.inclination_deg,
        "raan": es.raan_deg,
        "arg_perigee": es.arg_perigee_deg,
        "mean_anomaly": es.mean_anomaly_deg,
        "bstar": es.bstar,
        "ndot": es.ndot,
        "nddot": es.nddot,
        "element_set_number": es.element_set_number,
        "rev_at_epoch": es.rev_at_epoch,
        "classification": (es.classification or "U")[:1],
        "ephemeris_type": es.ephemeris_type,
    }


COMPARED = ("epoch_jd", "epoch_fr", "mean_motion", "eccentricity", "inclination", "raan",
            "arg_perigee", "mean_anomaly", "bstar", "ndot", "nddot", "element_set_number",
            "rev_at_epoch", "classification", "ephemeris_type")



def element_set_from_row(row, name: str = "", intl: str = "") -> ElementSet:
    """Rebuild the domain element set exactly (two-part JD floats round-trip)."""
    return ElementSet(
        catalog_number=int(row.catalog_number),
        mean_motion_rev_day=row.mean_motion,
        eccentricity=row.eccentricity,
        inclination_deg=row.inclination,
        raan_deg=row.raan,
        arg_perigee_deg=row.arg_perigee,
        mean_anomaly_deg=row.mean_anomaly,
        epoch=us_to_datetime(int(row.epoch_us)),
        epoch_jd=row.epoch_jd,
        epoch_fr=row.epoch_fr,
        bstar=row.bstar,
        ndot=row.ndot,
        nddot=row.nddot,
        name=name,
        intl_designator=intl,
        element_set_number=int(row.element_set_number),
        rev_at_epoch=int(row.rev_at_epoch),
        classification=row.classification,
        ephemeris_type=int(row.ephemeris_type),
    )
