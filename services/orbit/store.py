"""The orbit service's tables and queries: satellites, element-set history, groups.

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

Writes use Core ``insert()`` with parameter lists (executemany / insertmanyvalues), never
ORM objects row by row: a 10k-record import is a handful of statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Double,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
    and_,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from services.orbit.catalog import GroupKind
from services.orbit.elements import ElementSet
from shared import idempotency
from shared.columns import UTCDateTime

_IN_CHUNK = 5000  # bound on parameters per IN (...) list (SQLite allows 32766)


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


# --- helpers --------------------------------------------------------------------------

_ES = ElementSetRow.__table__
_SAT = SatelliteRow.__table__
_GRP = GroupRow.__table__
_MEM = GroupMemberRow.__table__
_LOG = RequestLogRow.__table__

GROUP_KINDS = tuple(GroupKind)


def now() -> datetime:
    """The time stamped on a write (aware UTC, whole microseconds)."""
    return datetime.now(UTC)


def epoch_us(es: ElementSet) -> int:
    """Integer microseconds since 1970 of an element set's epoch (its datetime)."""
    delta = es.epoch - datetime(1970, 1, 1, tzinfo=UTC)  # type: ignore[operator]
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def us_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, UTC).replace(microsecond=us % 1_000_000)


def _row_values(es: ElementSet) -> dict:
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


_COMPARED = ("epoch_jd", "epoch_fr", "mean_motion", "eccentricity", "inclination", "raan",
             "arg_perigee", "mean_anomaly", "bstar", "ndot", "nddot", "element_set_number",
             "rev_at_epoch", "classification", "ephemeris_type")


@dataclass(frozen=True, slots=True)
class StoredElementSet:
    """An element set as stored, with the bookkeeping the API shows."""

    elements: ElementSet
    create_time: datetime
    source_group: str | None


@dataclass(frozen=True, slots=True)
class StoredSatellite:
    catalog_number: int
    object_name: str
    intl_designator: str
    create_time: datetime
    update_time: datetime
    element_set: StoredElementSet | None
    element_set_count: int
    groups: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoredGroup:
    group_id: str
    display_name: str
    kind: str
    satellite_count: int
    create_time: datetime
    update_time: datetime


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    added: int
    updated: int
    unchanged: int
    version: int


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


def _chunks(values: Sequence, size: int = _IN_CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _newest_subquery(as_of_us: int | None, numbers: Sequence[int] | None = None):
    """(catalog_number, epoch_us) of the newest element set per satellite."""
    query = select(_ES.c.catalog_number, func.max(_ES.c.epoch_us).label("epoch_us"))
    if as_of_us is not None:
        query = query.where(_ES.c.epoch_us <= as_of_us)
    if numbers is not None:
        query = query.where(_ES.c.catalog_number.in_(numbers))
    return query.group_by(_ES.c.catalog_number).subquery()


# --- the catalog ----------------------------------------------------------------------


class Catalog:
    """Queries and transactions over the orbit tables."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]):
        self.sessions = sessions

    # -- version -------------------------------------------------------------------
    async def version(self) -> int:
        async with self.sessions() as session:
            value = await session.scalar(select(CatalogStateRow.version).where(
                CatalogStateRow.id == 1))
            return int(value or 0)

    @staticmethod
    async def lock_version(session: AsyncSession) -> int:
        """The catalog version, locked for this transaction (one writer at a time)."""
        value = await session.scalar(
            select(CatalogStateRow.version).where(CatalogStateRow.id == 1).with_for_update())
        if value is None:
            await session.execute(insert(CatalogStateRow).values(id=1, version=0))
            return 0
        return int(value)

    @staticmethod
    async def _bump(session: AsyncSession, version: int) -> int:
        await session.execute(
            update(CatalogStateRow).where(CatalogStateRow.id == 1).values(version=version + 1))
        return version + 1

    async def is_empty(self) -> bool:
        async with self.sessions() as session:
            return await self.is_empty_in(session)

    @staticmethod
    async def is_empty_in(session: AsyncSession) -> bool:
        return await session.scalar(select(func.count()).select_from(_SAT)) == 0

    # -- request log (AIP-155) -----------------------------------------------------
    @staticmethod
    async def claim(session: AsyncSession, key: idempotency.Key) -> bytes | None:
        """Claim ``key`` in this transaction (:func:`shared.idempotency.claim`): None when
        this write now holds it (store the answer with :meth:`answer`), else the first
        answer; INVALID_ARGUMENT REQUEST_ID_REUSED when the key is another request's.
        Claim it under the catalog lock (``lock_version``): of concurrent twins the first
        holds the lock, and the others find its committed key."""
        first = await idempotency.claim(session, _LOG, key, response=b"", create_time=now())
        return None if first is None else bytes(first.response)

    @staticmethod
    async def answer(session: AsyncSession, key: idempotency.Key, response: bytes) -> None:
        """Keep ``response`` as the answer of the key this transaction claimed."""
        await session.execute(update(_LOG).where(
            _LOG.c.tenant == key.tenant, _LOG.c.request_id == key.request_id
        ).values(response=response))

    # -- writes --------------------------------------------------------------------
    async def store_element_sets(
        self,
        session: AsyncSession,
        sets: Sequence[ElementSet],
        *,
        group: tuple[str, str, str] | None = None,
        new_only: bool = False,
    ) -> ImportOutcome:
        """Upsert ``sets`` (in input order; a later record for the same satellite and
        epoch replaces an earlier one) inside the caller's transaction.

        ``group`` is ``(group_id, display_name, kind)``: created if missing, and every
        satellite of ``sets`` becomes a member. Each record counts once: ``added`` (its
        satellite was new), ``updated`` (a new or changed element set of a known
        satellite) or ``unchanged`` (identical to what is stored).
        """
        version = await self.lock_version(session)
        stamp = now()
        numbers = sorted({es.catalog_number for es in sets})
        known_sats: dict[int, tuple[str, str]] = {}
        stored: dict[tuple[int, int], tuple] = {}
        for part in _chunks(numbers):
            for row in await session.execute(
                    select(_SAT.c.catalog_number, _SAT.c.object_name, _SAT.c.intl_designator)
                    .where(_SAT.c.catalog_number.in_(part))):
                known_sats[int(row.catalog_number)] = (row.object_name, row.intl_designator)
            if not new_only:
                cols = [_ES.c.id, _ES.c.catalog_number, _ES.c.epoch_us,
                        *(_ES.c[name] for name in _COMPARED)]
                for row in await session.execute(select(*cols).where(
                        _ES.c.catalog_number.in_(part))):
                    stored[(int(row.catalog_number), int(row.epoch_us))] = tuple(row)
        added = updated = unchanged = 0
        new_sats: dict[int, dict] = {}
        renamed: dict[int, dict] = {}
        inserts: dict[tuple[int, int], dict] = {}
        updates: dict[int, dict] = {}
        touched: set[int] = set()
        source = group[0] if group else None
        for es in sets:
            n = es.catalog_number
            values = _row_values(es)
            key = (n, values["epoch_us"])
            name = es.name[:64]
            intl = es.intl_designator[:32]
            if n not in known_sats and n not in new_sats:
                new_sats[n] = {"catalog_number": n, "object_name": name,
                               "object_name_lower": name.lower(), "intl_designator": intl,
                               "create_time": stamp, "update_time": stamp}
                inserts[key] = {**values, "source_group": source, "create_time": stamp}
                added += 1
                continue
            if n in new_sats:
                sat = new_sats[n]
                if name:
                    sat.update(object_name=name, object_name_lower=name.lower())
                if intl:
                    sat["intl_designator"] = intl
            else:
                old_name, old_intl = known_sats[n]
                if (name and name != old_name) or (intl and intl != old_intl):
                    renamed[n] = {"b_n": n, "b_object_name": name or old_name,
                                  "b_object_name_lower": (name or old_name).lower(),
                                  "b_intl_designator": intl or old_intl}
            if key in inserts:
                same = all(inserts[key][c] == values[c] for c in _COMPARED)
                inserts[key] = {**values, "source_group": source, "create_time": stamp}
            elif key in stored:
                old = stored[key]
                same = tuple(old[3:]) == tuple(values[c] for c in _COMPARED)
                if not same:
                    updates[old[0]] = {"b_id": old[0], **{f"b_{c}": v for c, v in values.items()},
                                       "b_source_group": source, "b_create_time": stamp}
                    stored[key] = (old[0], n, key[1], *(values[c] for c in _COMPARED))
            else:
                same = False
                inserts[key] = {**values, "source_group": source, "create_time": stamp}
            if same:
                unchanged += 1
            else:
                updated += 1
                touched.add(n)
        if new_sats:
            await session.execute(insert(_SAT), list(new_sats.values()))
        if renamed:
            await session.execute(
                update(_SAT).where(_SAT.c.catalog_number == bindparam("b_n")).values(
                    object_name=bindparam("b_object_name"),
                    object_name_lower=bindparam("b_object_name_lower"),
                    intl_designator=bindparam("b_intl_designator")),
                list(renamed.values()))
        if inserts:
            await session.execute(insert(_ES), list(inserts.values()))
        if updates:
            cols = [c.key for c in _ES.c if c.key not in ("id", "catalog_number", "epoch_us")]
            await session.execute(
                update(_ES).where(_ES.c.id == bindparam("b_id")).values(
                    {c: bindparam(f"b_{c}") for c in cols}),
                list(updates.values()))
        stale = sorted(touched - set(new_sats))
        for part in _chunks(stale):
            await session.execute(update(_SAT).where(_SAT.c.catalog_number.in_(part))
                                  .values(update_time=stamp))
        changed = bool(new_sats or renamed or inserts or updates)
        if group is not None:
            changed |= await self._add_members(session, group, numbers, stamp)
        if changed:
            version = await self._bump(session, version)
        return ImportOutcome(added, updated, unchanged, version)

    async def _add_members(self, session: AsyncSession, group: tuple[str, str, str],
                           numbers: Sequence[int], stamp: datetime) -> bool:
        group_id, display_name, kind = group
        exists = await session.scalar(select(_GRP.c.group_id).where(_GRP.c.group_id == group_id))
        if exists is None:
            await session.execute(insert(_GRP).values(
                group_id=group_id, display_name=display_name or group_id, kind=kind,
                create_time=stamp, update_time=stamp))
        present: set[int] = set()
        for part in _chunks(numbers):
            present.update(int(n) for n in (await session.scalars(
                select(_MEM.c.catalog_number).where(
                    and_(_MEM.c.group_id == group_id, _MEM.c.catalog_number.in_(part))))))
        missing = [n for n in numbers if n not in present]
        if missing:
            await session.execute(insert(_MEM), [
                {"group_id": group_id, "catalog_number": n} for n in missing])
            await session.execute(update(_GRP).where(_GRP.c.group_id == group_id)
                                  .values(update_time=stamp))
        return exists is None or bool(missing)

    async def group_exists(self, session: AsyncSession, group_id: str) -> bool:
        return await session.scalar(
            select(_GRP.c.group_id).where(_GRP.c.group_id == group_id)) is not None

    async def existing_numbers(self, session: AsyncSession, lo: int, hi: int) -> list[int]:
        return [int(n) for n in await session.scalars(
            select(_SAT.c.catalog_number).where(_SAT.c.catalog_number.between(lo, hi))
            .order_by(_SAT.c.catalog_number).limit(10))]

    async def next_free_number(self, session: AsyncSession, floor: int) -> int:
        top = await session.scalar(select(func.max(_SAT.c.catalog_number)).where(
            _SAT.c.catalog_number >= floor))
        return floor if top is None else int(top) + 1

    # -- reads ---------------------------------------------------------------------
    async def newest_element_sets(
        self, as_of_us: int | None = None, numbers: Sequence[int] | None = None
    ) -> list[ElementSet]:
        """The newest element set (at or before ``as_of_us``) of every satellite (or of
        ``numbers``), ordered by catalog number, with names."""
        out: list[ElementSet] = []
        async with self.sessions() as session:
            parts = [None] if numbers is None else list(_chunks(sorted(numbers)))
            for part in parts:
                newest = _newest_subquery(as_of_us, part)
                query = (
                    select(_ES, _SAT.c.object_name, _SAT.c.intl_designator)
                    .join(newest, and_(newest.c.catalog_number == _ES.c.catalog_number,
                                       newest.c.epoch_us == _ES.c.epoch_us))
                    .join(_SAT, _SAT.c.catalog_number == _ES.c.catalog_number)
                    .order_by(_ES.c.catalog_number))
                result = await session.execute(query)
                out.extend(element_set_from_row(row, row.object_name, row.intl_designator)
                           for row in result)
        return out

    async def group_numbers(self, group_id: str) -> list[int] | None:
        """Member catalog numbers of a group (sorted), or None if the group is unknown."""
        async with self.sessions() as session:
            if not await self.group_exists(session, group_id):
                return None
            return [int(n) for n in await session.scalars(
                select(_MEM.c.catalog_number).where(_MEM.c.group_id == group_id)
                .order_by(_MEM.c.catalog_number))]

    async def existing_subset(self, numbers: Sequence[int]) -> set[int]:
        found: set[int] = set()
        async with self.sessions() as session:
            for part in _chunks(sorted(numbers)):
                found.update(int(n) for n in await session.scalars(
                    select(_SAT.c.catalog_number).where(_SAT.c.catalog_number.in_(part))))
        return found

    async def list_satellites(
        self,
        *,
        after: int | None,
        limit: int,
        name_contains: str = "",
        group_id: str = "",
        min_number: int | None = None,
        max_number: int | None = None,
        as_of_us: int | None = None,
    ) -> tuple[list[StoredSatellite], int]:
        """A page of satellites ordered by catalog number, and the total matching."""
        conditions = []
        if name_contains:
            pattern = "%" + name_contains.lower().replace("\\", "\\\\").replace(
                "%", "\\%").replace("_", "\\_") + "%"
            conditions.append(_SAT.c.object_name_lower.like(pattern, escape="\\"))
        if group_id:
            conditions.append(_SAT.c.catalog_number.in_(
                select(_MEM.c.catalog_number).where(_MEM.c.group_id == group_id)))
        if min_number is not None:
            conditions.append(_SAT.c.catalog_number >= min_number)
        if max_number is not None:
            conditions.append(_SAT.c.catalog_number <= max_number)
        async with self.sessions() as session:
            total = int(await session.scalar(
                select(func.count()).select_from(_SAT).where(and_(True, *conditions))) or 0)
            page_conditions = list(conditions)
            if after is not None:
                page_conditions.append(_SAT.c.catalog_number > after)
            rows = (await session.execute(
                select(_SAT).where(and_(True, *page_conditions))
                .order_by(_SAT.c.catalog_number).limit(limit))).all()
            satellites = await self._decorate(session, rows, as_of_us)
        return satellites, total

    async def get_satellite(self, number: int, as_of_us: int | None = None
                            ) -> StoredSatellite | None:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(_SAT).where(_SAT.c.catalog_number == number))).all()
            if not rows:
                return None
            return (await self._decorate(session, rows, as_of_us))[0]

    async def _decorate(self, session: AsyncSession, rows, as_of_us: int | None
                        ) -> list[StoredSatellite]:
        numbers = [int(r.catalog_number) for r in rows]
        if not numbers:
            return []
        newest = _newest_subquery(as_of_us, numbers)
        names = {int(r.catalog_number): (r.object_name, r.intl_designator) for r in rows}
        sets: dict[int, StoredElementSet] = {}
        for row in await session.execute(
                select(_ES).join(newest, and_(
                    newest.c.catalog_number == _ES.c.catalog_number,
                    newest.c.epoch_us == _ES.c.epoch_us))):
            n = int(row.catalog_number)
            sets[n] = StoredElementSet(element_set_from_row(row, *names[n]),
                                       row.create_time, row.source_group)
        counts = {int(n): int(c) for n, c in await session.execute(
            select(_ES.c.catalog_number, func.count()).where(_ES.c.catalog_number.in_(numbers))
            .group_by(_ES.c.catalog_number))}
        groups: dict[int, list[str]] = {}
        for n, g in await session.execute(
                select(_MEM.c.catalog_number, _MEM.c.group_id)
                .where(_MEM.c.catalog_number.in_(numbers)).order_by(_MEM.c.group_id)):
            groups.setdefault(int(n), []).append(g)
        out = []
        for r in rows:
            n = int(r.catalog_number)
            out.append(StoredSatellite(n, r.object_name, r.intl_designator, r.create_time,
                                       r.update_time, sets.get(n), counts.get(n, 0),
                                       tuple(groups.get(n, ()))))
        return out

    async def list_element_sets(self, number: int, *, before_us: int | None, limit: int
                                ) -> list[StoredElementSet] | None:
        """History of one satellite, newest first; None if the satellite is unknown."""
        async with self.sessions() as session:
            sat = (await session.execute(select(_SAT).where(
                _SAT.c.catalog_number == number))).first()
            if sat is None:
                return None
            query = select(_ES).where(_ES.c.catalog_number == number)
            if before_us is not None:
                query = query.where(_ES.c.epoch_us < before_us)
            rows = await session.execute(query.order_by(_ES.c.epoch_us.desc()).limit(limit))
            return [StoredElementSet(element_set_from_row(r, sat.object_name,
                                                          sat.intl_designator),
                                     r.create_time, r.source_group) for r in rows]

    @staticmethod
    async def group_in(session: AsyncSession, group_id: str) -> StoredGroup:
        """A group that exists, read in ``session`` (inside a write's transaction)."""
        row = (await session.execute(select(GroupRow).where(GroupRow.group_id == group_id))
               ).scalar_one()
        count = await session.scalar(select(func.count()).select_from(GroupMemberRow).where(
            GroupMemberRow.group_id == group_id))
        return StoredGroup(row.group_id, row.display_name, row.kind, int(count or 0),
                           row.create_time, row.update_time)

    async def get_group(self, group_id: str) -> StoredGroup | None:
        groups = await self.list_groups(after=None, limit=1, only=group_id)
        return groups[0] if groups else None

    async def list_groups(self, *, after: str | None, limit: int, only: str | None = None
                          ) -> list[StoredGroup]:
        counts = (select(_MEM.c.group_id, func.count().label("n"))
                  .group_by(_MEM.c.group_id).subquery())
        query = select(_GRP, func.coalesce(counts.c.n, 0).label("n")).outerjoin(
            counts, counts.c.group_id == _GRP.c.group_id)
        if only is not None:
            query = query.where(_GRP.c.group_id == only)
        if after is not None:
            query = query.where(_GRP.c.group_id > after)
        async with self.sessions() as session:
            rows = await session.execute(query.order_by(_GRP.c.group_id).limit(limit))
            return [StoredGroup(r.group_id, r.display_name, r.kind, int(r.n), r.create_time,
                                r.update_time) for r in rows]
