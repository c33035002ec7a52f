"""The orbit service's queries and transactions over its tables (:mod:`services.orbit.tables`,
where the tables are described), returning :mod:`services.orbit.records`.

Writes use Core ``insert()`` with parameter lists (executemany / insertmanyvalues), never
ORM objects row by row: a 10k-record import is a handful of statements.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, and_, bindparam, func, insert, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.orbit.elements import ElementSet
from services.orbit.records import ImportOutcome, StoredElementSet, StoredGroup, StoredSatellite
from services.orbit.tables import (
    COMPARED,
    ES,
    GROUP_KINDS,
    GRP,
    LOG,
    MEM,
    SAT,
    Base,
    CatalogStateRow,
    GroupMemberRow,
    GroupRow,
    element_set_from_row,
    epoch_us,
    row_values,
)
from shared import idempotency
from shared.columns import UTCDateTime

#: The tables' metadata is ``Base.metadata`` (the migrations' env.py imports it from here).
__all__ = ["GROUP_KINDS", "Base", "Catalog", "ImportOutcome", "StoredElementSet",
           "StoredGroup", "StoredSatellite", "epoch_us", "now"]

_IN_CHUNK = 5000  # bound on parameters per IN (...) list (SQLite allows 32766)


def now() -> datetime:
    """The time stamped on a write (aware UTC, whole microseconds)."""
    return datetime.now(UTC)


def _stamp_sql(stamp: datetime) -> ColumnElement[datetime]:
    """``stamp`` as SQL text, for the time columns of a bulk insert: naive UTC in the text
    SQLAlchemy's ``DateTime`` writes on SQLite (PostgreSQL reads the same text as a
    ``timestamp``). Bound as a parameter, the one time would run the column type's bind
    processing once per row: a third of a 10,000-record import."""
    text = stamp.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return literal_column(f"'{text}'", UTCDateTime())


def _chunks(values: Sequence, size: int = _IN_CHUNK) -> Iterable[Sequence]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def _newest_subquery(as_of_us: int | None, numbers: Sequence[int] | None = None):
    """(catalog_number, epoch_us) of the newest element set per satellite."""
    query = select(ES.c.catalog_number, func.max(ES.c.epoch_us).label("epoch_us"))
    if as_of_us is not None:
        query = query.where(ES.c.epoch_us <= as_of_us)
    if numbers is not None:
        query = query.where(ES.c.catalog_number.in_(numbers))
    return query.group_by(ES.c.catalog_number).subquery()


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
        return await session.scalar(select(func.count()).select_from(SAT)) == 0

    # -- request log (AIP-155) -----------------------------------------------------
    @staticmethod
    async def claim(session: AsyncSession, key: idempotency.Key) -> bytes | None:
        """Claim ``key`` in this transaction (:func:`shared.idempotency.claim`): None when
        this write now holds it (store the answer with :meth:`answer`), else the first
        answer; INVALID_ARGUMENT REQUEST_ID_REUSED when the key is another request's.
        Claim it under the catalog lock (``lock_version``): of concurrent twins the first
        holds the lock, and the others find its committed key."""
        first = await idempotency.claim(session, LOG, key, response=b"", create_time=now())
        return None if first is None else bytes(first.response)

    @staticmethod
    async def answer(session: AsyncSession, key: idempotency.Key, response: bytes) -> None:
        """Keep ``response`` as the answer of the key this transaction claimed."""
        await session.execute(update(LOG).where(
            LOG.c.tenant == key.tenant, LOG.c.request_id == key.request_id
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
                    select(SAT.c.catalog_number, SAT.c.object_name, SAT.c.intl_designator)
                    .where(SAT.c.catalog_number.in_(part))):
                known_sats[int(row.catalog_number)] = (row.object_name, row.intl_designator)
            if not new_only:
                cols = [ES.c.id, ES.c.catalog_number, ES.c.epoch_us,
                        *(ES.c[name] for name in COMPARED)]
                for row in await session.execute(select(*cols).where(
                        ES.c.catalog_number.in_(part))):
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
            values = row_values(es)
            key = (n, values["epoch_us"])
            name = es.name[:64]
            intl = es.intl_designator[:32]
            if n not in known_sats and n not in new_sats:
                new_sats[n] = {"catalog_number": n, "object_name": name,
                               "object_name_lower": name.lower(), "intl_designator": intl}
                inserts[key] = {**values, "source_group": source}
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
                same = all(inserts[key][c] == values[c] for c in COMPARED)
                inserts[key] = {**values, "source_group": source}
            elif key in stored:
                old = stored[key]
                same = tuple(old[3:]) == tuple(values[c] for c in COMPARED)
                if not same:
                    updates[old[0]] = {"b_id": old[0], **{f"b_{c}": v for c, v in values.items()},
                                       "b_source_group": source, "b_create_time": stamp}
                    stored[key] = (old[0], n, key[1], *(values[c] for c in COMPARED))
            else:
                same = False
                inserts[key] = {**values, "source_group": source}
            if same:
                unchanged += 1
            else:
                updated += 1
                touched.add(n)
        if new_sats:
            at = _stamp_sql(stamp)
            await session.execute(insert(SAT).values(create_time=at, update_time=at),
                                  list(new_sats.values()))
        if renamed:
            await session.execute(
                update(SAT).where(SAT.c.catalog_number == bindparam("b_n")).values(
                    object_name=bindparam("b_object_name"),
                    object_name_lower=bindparam("b_object_name_lower"),
                    intl_designator=bindparam("b_intl_designator")),
                list(renamed.values()))
        if inserts:
            await session.execute(insert(ES).values(create_time=_stamp_sql(stamp)),
                                  list(inserts.values()))
        if updates:
            cols = [c.key for c in ES.c if c.key not in ("id", "catalog_number", "epoch_us")]
            await session.execute(
                update(ES).where(ES.c.id == bindparam("b_id")).values(
                    {c: bindparam(f"b_{c}") for c in cols}),
                list(updates.values()))
        stale = sorted(touched - set(new_sats))
        for part in _chunks(stale):
            await session.execute(update(SAT).where(SAT.c.catalog_number.in_(part))
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
        exists = await session.scalar(select(GRP.c.group_id).where(GRP.c.group_id == group_id))
        if exists is None:
            await session.execute(insert(GRP).values(
                group_id=group_id, display_name=display_name or group_id, kind=kind,
                create_time=stamp, update_time=stamp))
        present: set[int] = set()
        for part in _chunks(numbers):
            present.update(int(n) for n in (await session.scalars(
                select(MEM.c.catalog_number).where(
                    and_(MEM.c.group_id == group_id, MEM.c.catalog_number.in_(part))))))
        missing = [n for n in numbers if n not in present]
        if missing:
            await session.execute(insert(MEM), [
                {"group_id": group_id, "catalog_number": n} for n in missing])
            await session.execute(update(GRP).where(GRP.c.group_id == group_id)
                                  .values(update_time=stamp))
        return exists is None or bool(missing)

    async def group_exists(self, session: AsyncSession, group_id: str) -> bool:
        return await session.scalar(
            select(GRP.c.group_id).where(GRP.c.group_id == group_id)) is not None

    async def existing_numbers(self, session: AsyncSession, lo: int, hi: int) -> list[int]:
        return [int(n) for n in await session.scalars(
            select(SAT.c.catalog_number).where(SAT.c.catalog_number.between(lo, hi))
            .order_by(SAT.c.catalog_number).limit(10))]

    async def next_free_number(self, session: AsyncSession, floor: int) -> int:
        top = await session.scalar(select(func.max(SAT.c.catalog_number)).where(
            SAT.c.catalog_number >= floor))
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
                    select(ES, SAT.c.object_name, SAT.c.intl_designator)
                    .join(newest, and_(newest.c.catalog_number == ES.c.catalog_number,
                                       newest.c.epoch_us == ES.c.epoch_us))
                    .join(SAT, SAT.c.catalog_number == ES.c.catalog_number)
                    .order_by(ES.c.catalog_number))
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
                select(MEM.c.catalog_number).where(MEM.c.group_id == group_id)
                .order_by(MEM.c.catalog_number))]

    async def existing_subset(self, numbers: Sequence[int]) -> set[int]:
        found: set[int] = set()
        async with self.sessions() as session:
            for part in _chunks(sorted(numbers)):
                found.update(int(n) for n in await session.scalars(
                    select(SAT.c.catalog_number).where(SAT.c.catalog_number.in_(part))))
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
            conditions.append(SAT.c.object_name_lower.like(pattern, escape="\\"))
        if group_id:
            conditions.append(SAT.c.catalog_number.in_(
                select(MEM.c.catalog_number).where(MEM.c.group_id == group_id)))
        if min_number is not None:
            conditions.append(SAT.c.catalog_number >= min_number)
        if max_number is not None:
            conditions.append(SAT.c.catalog_number <= max_number)
        async with self.sessions() as session:
            total = int(await session.scalar(
                select(func.count()).select_from(SAT).where(and_(True, *conditions))) or 0)
            page_conditions = list(conditions)
            if after is not None:
                page_conditions.append(SAT.c.catalog_number > after)
            rows = (await session.execute(
                select(SAT).where(and_(True, *page_conditions))
                .order_by(SAT.c.catalog_number).limit(limit))).all()
            satellites = await self._decorate(session, rows, as_of_us)
        return satellites, total

    async def get_satellite(self, number: int, as_of_us: int | None = None
                            ) -> StoredSatellite | None:
        async with self.sessions() as session:
            rows = (await session.execute(
                select(SAT).where(SAT.c.catalog_number == number))).all()
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
                select(ES).join(newest, and_(
                    newest.c.catalog_number == ES.c.catalog_number,
                    newest.c.epoch_us == ES.c.epoch_us))):
            n = int(row.catalog_number)
            sets[n] = StoredElementSet(element_set_from_row(row, *names[n]),
                                       row.create_time, row.source_group)
        counts = {int(n): int(c) for n, c in await session.execute(
            select(ES.c.catalog_number, func.count()).where(ES.c.catalog_number.in_(numbers))
            .group_by(ES.c.catalog_number))}
        groups: dict[int, list[str]] = {}
        for n, g in await session.execute(
                select(MEM.c.catalog_number, MEM.c.group_id)
                .where(MEM.c.catalog_number.in_(numbers)).order_by(MEM.c.group_id)):
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
            sat = (await session.execute(select(SAT).where(
                SAT.c.catalog_number == number))).first()
            if sat is None:
                return None
            query = select(ES).where(ES.c.catalog_number == number)
            if before_us is not None:
                query = query.where(ES.c.epoch_us < before_us)
            rows = await session.execute(query.order_by(ES.c.epoch_us.desc()).limit(limit))
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
        counts = (select(MEM.c.group_id, func.count().label("n"))
                  .group_by(MEM.c.group_id).subquery())
        query = select(GRP, func.coalesce(counts.c.n, 0).label("n")).outerjoin(
            counts, counts.c.group_id == GRP.c.group_id)
        if only is not None:
            query = query.where(GRP.c.group_id == only)
        if after is not None:
            query = query.where(GRP.c.group_id > after)
        async with self.sessions() as session:
            rows = await session.execute(query.order_by(GRP.c.group_id).limit(limit))
            return [StoredGroup(r.group_id, r.display_name, r.kind, int(r.n), r.create_time,
                                r.update_time) for r in rows]
