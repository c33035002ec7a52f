"""Ground-station contact tables and queries (SQLAlchemy 2.x Core, async; SQLite and
PostgreSQL). Migration: migrations/versions/0002_contacts.py.

Instants are aware UTC datetimes (`shared.columns.UTCDateTime`, whole microseconds;
migration 0005); elevations degrees; gaps and durations float seconds. The clock and the
rules in contacts.py stay in Unix seconds: the store converts at its boundary.

- `ground_stations`: reference data, inserted at start when missing.
- `contact_profiles`: per tenant, primary key (tenant, id).
- `contacts`: one row per reserved contact, with the antenna it holds. ``state`` is stored
  as the name of :class:`services.linkbroker.contacts.State`; a stored SCHEDULED whose
  ``end_time`` has passed reads as SUCCEEDED (see :func:`state_clause`).
- `contact_requests`: idempotency keys (tenant, request_id) with the first answer.

Concurrency: every mutation is one transaction that first claims its idempotency key
(``INSERT ... ON CONFLICT DO NOTHING``: a concurrent duplicate waits on the key's primary
key and then replays the first answer). A reservation then takes the profile row
``FOR SHARE`` and the ground-station row ``FOR UPDATE`` before it reads the station's
bookings and inserts the contact, so two replicas reserving on one station queue on that
row and the second sees the first's contact. SQLite has no row locks, but every
transaction there starts with ``BEGIN IMMEDIATE`` (shared/db.py) and so holds the write
lock from the start. Locks are always taken in the order key -> profile -> station ->
contact, so no two transactions deadlock.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.columns import UTCDateTime
from shared.errors import InvalidArgument

from .contacts import MAX_GUARD_GAP_S, Bookings, GroundStationSpec, State
from .records import ContactRecord, ProfileRecord, StationRecord, utc_instant
from .tables import metadata

ground_stations = sa.Table(
    "ground_stations", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("latitude_deg", sa.Double, nullable=False),
    sa.Column("longitude_deg", sa.Double, nullable=False),
    sa.Column("altitude_m", sa.Double, nullable=False),
    sa.Column("antennas", sa.Integer, nullable=False),
    sa.Column("min_elevation_deg", sa.Double, nullable=False),
    sa.Column("provider", sa.String(60), nullable=False),
    sa.Column("region", sa.String(40), nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
)

contact_profiles = sa.Table(
    "contact_profiles", metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("min_elevation_deg", sa.Double, nullable=False),
    sa.Column("min_duration_s", sa.Double, nullable=False),
    sa.Column("guard_gap_s", sa.Double, nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
)

contacts = sa.Table(
    "contacts", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("spacecraft", sa.BigInteger, nullable=False),
    sa.Column("ground_station", sa.String(40), nullable=False),
    sa.Column("profile", sa.String(40), nullable=False),
    sa.Column("antenna", sa.Integer, nullable=False),
    sa.Column("start_time", UTCDateTime, nullable=False),
    sa.Column("end_time", UTCDateTime, nullable=False),
    sa.Column("max_elevation_deg", sa.Double, nullable=False),
    sa.Column("start_azimuth_deg", sa.Double, nullable=False),
    sa.Column("end_azimuth_deg", sa.Double, nullable=False),
    sa.Column("min_elevation_deg", sa.Double, nullable=False),
    sa.Column("guard_gap_s", sa.Double, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("state_reason", sa.String(500), nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
    sa.Index("ix_contacts_station_state_start", "ground_station", "state", "start_time"),
    sa.Index("ix_contacts_tenant_start", "tenant", "start_time", "id"),
    sa.Index("ix_contacts_profile", "tenant", "profile", "state"),
)

contact_requests = sa.Table(
    "contact_requests", metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=True),
    sa.Column("create_time", UTCDateTime, nullable=False),
)

Row = Any  # a SQLAlchemy Row of contact_requests


def new_contact_id() -> str:
    """A time-ordered id: microseconds since the epoch in hex, then 48 random bits."""
    return f"{time.time_ns() // 1000:014x}{secrets.token_hex(6)}"


def fingerprint(method: str, payload: bytes) -> str:
    """What makes two requests with one idempotency key the same request."""
    return hashlib.sha256(method.encode() + b"\0" + payload).hexdigest()


def state_clause(state: State, now_s: float):
    """The SQL test for a contact's state *as read* (see contacts.effective_state)."""
    c = contacts.c
    now = utc_instant(now_s)
    if state == State.SCHEDULED:
        return sa.and_(c.state == State.SCHEDULED.name, c.end_time > now)
    if state == State.SUCCEEDED:
        return sa.or_(c.state == State.SUCCEEDED.name,
                      sa.and_(c.state == State.SCHEDULED.name, c.end_time <= now))
    return c.state == state.name


class ContactStore:
    """Queries and transactions of the ground-station contacts."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, is_sqlite: bool,
                 clock: Callable[[], float] = time.time):
        self.sessions = sessions
        self.clock = clock
        self._insert = sqlite.insert if is_sqlite else postgresql.insert

    # ------------------------------------------------------------------ ground stations
    async def seed_ground_stations(self, specs: Sequence[GroundStationSpec]) -> int:
        """Insert the stations that are missing; returns how many were added."""
        now = self.clock()
        added = 0
        async with self.sessions.begin() as session:
            for s in specs:
                result = await session.execute(self._insert(ground_stations).values(
                    id=s.station_id, display_name=s.display_name, latitude_deg=s.latitude_deg,
                    longitude_deg=s.longitude_deg, altitude_m=s.altitude_m,
                    antennas=s.antennas, min_elevation_deg=s.min_elevation_deg,
                    provider=s.provider, region=s.region, create_time=utc_instant(now),
                ).on_conflict_do_nothing())
                added += max(result.rowcount or 0, 0)
        return added

    async def get_station(self, station_id: str) -> StationRecord | None:
        async with self.sessions() as session:
            row = (await session.execute(sa.select(ground_stations).where(
                ground_stations.c.id == station_id))).first()
        return None if row is None else StationRecord.of(row._mapping)

    async def list_stations(self, after_id: str | None, limit: int) -> list[StationRecord]:
        query = sa.select(ground_stations).order_by(ground_stations.c.id).limit(limit)
        if after_id is not None:
            query = query.where(ground_stations.c.id > after_id)
        async with self.sessions() as session:
            return [StationRecord.of(r._mapping) for r in await session.execute(query)]

    # ------------------------------------------------------------------ idempotency
    async def replay(self, tenant: str, request_id: str, method: str, print_: str
                     ) -> bytes | None:
        """The first answer to this key, None when unused; REQUEST_ID_REUSED when the key
        was used for a different request."""
        async with self.sessions() as session:
            row = (await session.execute(sa.select(contact_requests).where(
                contact_requests.c.tenant == tenant,
                contact_requests.c.request_id == request_id))).first()
        return None if row is None else _replayed(row, method, print_)

    async def mutate(self, tenant: str, request_id: str, method: str, print_: str,
                     work: Callable[[AsyncSession, float], Awaitable[Any]],
                     encode: Callable[[Any], bytes]) -> bytes:
        """Run ``work(session, now)`` once per (tenant, request_id) in one transaction
        with the key; returns the encoded first answer. An exception rolls everything
        back, the key included, so a retry runs afresh."""
        async with self.sessions() as session, session.begin():
            now = self.clock()
            claimed = await session.execute(
                self._insert(contact_requests).values(
                    tenant=tenant, request_id=request_id, method=method, fingerprint=print_,
                    response=None, create_time=utc_instant(now))
                .on_conflict_do_nothing().returning(contact_requests.c.request_id))
            if claimed.first() is None:
                row = (await session.execute(sa.select(contact_requests).where(
                    contact_requests.c.tenant == tenant,
                    contact_requests.c.request_id == request_id))).one()
                return _replayed(row, method, print_)
            answer = encode(await work(session, now))
            await session.execute(sa.update(contact_requests).where(
                contact_requests.c.tenant == tenant,
                contact_requests.c.request_id == request_id).values(response=answer))
        return answer

    # ------------------------------------------------------------------ profiles
    async def get_profile(self, tenant: str, profile_id: str) -> ProfileRecord | None:
        async with self.sessions() as session:
            return await self.profile_in(session, tenant, profile_id)

    @staticmethod
    async def profile_in(session: AsyncSession, tenant: str, profile_id: str, *,
                         lock: str | None = None) -> ProfileRecord | None:
        """The profile, optionally locked ``"share"`` or ``"update"`` (PostgreSQL)."""
        query = sa.select(contact_profiles).where(contact_profiles.c.tenant == tenant,
                                                  contact_profiles.c.id == profile_id)
        if lock:
            query = query.with_for_update(read=lock == "share")
        row = (await session.execute(query)).first()
        return None if row is None else ProfileRecord.of(row._mapping)

    async def list_profiles(self, tenant: str, after_id: str | None, limit: int
                            ) -> list[ProfileRecord]:
        query = (sa.select(contact_profiles).where(contact_profiles.c.tenant == tenant)
                 .order_by(contact_profiles.c.id).limit(limit))
        if after_id is not None:
            query = query.where(contact_profiles.c.id > after_id)
        async with self.sessions() as session:
            return [ProfileRecord.of(r._mapping) for r in await session.execute(query)]

    async def insert_profile(self, session: AsyncSession, profile: ProfileRecord) -> bool:
        """Insert a profile; False when the tenant already has one with this id (a
        concurrent creator waits on the primary key, then gets False)."""
        result = await session.execute(self._insert(contact_profiles).values(**asdict(profile))
                                       .on_conflict_do_nothing()
                                       .returning(contact_profiles.c.id))
        return result.first() is not None

    @staticmethod
    async def delete_profile(session: AsyncSession, tenant: str, profile_id: str) -> None:
        await session.execute(sa.delete(contact_profiles).where(
            contact_profiles.c.tenant == tenant, contact_profiles.c.id == profile_id))

    @staticmethod
    async def profile_in_use(session: AsyncSession, tenant: str, profile_id: str,
                             now_s: float) -> int:
        """Scheduled contacts that have not ended and use the profile."""
        return int(await session.scalar(
            sa.select(sa.func.count()).select_from(contacts).where(
                contacts.c.tenant == tenant, contacts.c.profile == profile_id,
                state_clause(State.SCHEDULED, now_s))))

    # ------------------------------------------------------------------ contacts
    @staticmethod
    async def lock_station(session: AsyncSession, station_id: str) -> StationRecord | None:
        """The station row, locked FOR UPDATE (the reservation lock of its antennas)."""
        row = (await session.execute(sa.select(ground_stations).where(
            ground_stations.c.id == station_id).with_for_update())).first()
        return None if row is None else StationRecord.of(row._mapping)

    @staticmethod
    async def bookings(session: AsyncSession, station_id: str, start_s: float, end_s: float
                       ) -> Bookings:
        """SCHEDULED contacts on the station that could clash with ``[start_s, end_s)``
        (any guard gap is at most MAX_GUARD_GAP_S)."""
        c = contacts.c
        reach = timedelta(seconds=MAX_GUARD_GAP_S)
        rows = (await session.execute(
            sa.select(c.start_time, c.end_time, c.guard_gap_s, c.antenna).where(
                c.ground_station == station_id, c.state == State.SCHEDULED.name,
                c.start_time < utc_instant(end_s) + reach,
                c.end_time > utc_instant(start_s) - reach))).all()
        # The rules compute in float seconds: convert at this boundary.
        return Bookings.of([(r.start_time.timestamp(), r.end_time.timestamp(), r.guard_gap_s,
                             r.antenna) for r in rows])

    async def station_bookings(self, station_id: str, start_s: float, end_s: float
                               ) -> Bookings:
        async with self.sessions() as session:
            return await self.bookings(session, station_id, start_s, end_s)

    @staticmethod
    async def insert_contact(session: AsyncSession, contact: ContactRecord) -> None:
        await session.execute(sa.insert(contacts).values(**asdict(contact)))

    @staticmethod
    async def contact_in(session: AsyncSession, contact_id: str, tenant: str | None, *,
                         lock: bool = False) -> ContactRecord | None:
        """A contact (of `tenant`, or of any tenant when None), optionally FOR UPDATE."""
        query = sa.select(contacts).where(contacts.c.id == contact_id)
        if tenant is not None:
            query = query.where(contacts.c.tenant == tenant)
        if lock:
            query = query.with_for_update()
        row = (await session.execute(query)).first()
        return None if row is None else ContactRecord.of(row._mapping)

    async def get_contact(self, contact_id: str, tenant: str | None) -> ContactRecord | None:
        async with self.sessions() as session:
            return await self.contact_in(session, contact_id, tenant)

    @staticmethod
    async def set_state(session: AsyncSession, contact_id: str, state: State, reason: str,
                        now_s: float) -> None:
        await session.execute(sa.update(contacts).where(contacts.c.id == contact_id).values(
            state=state.name, state_reason=reason, update_time=utc_instant(now_s)))

    async def list_contacts(self, tenant: str | None, *, station: str | None,
                            spacecraft: int | None, state: State | None, now_s: float,
                            after: tuple[datetime, str] | None, limit: int
                            ) -> list[ContactRecord]:
        c = contacts.c
        query = sa.select(contacts).order_by(c.start_time, c.id).limit(limit)
        if tenant is not None:
            query = query.where(c.tenant == tenant)
        if station is not None:
            query = query.where(c.ground_station == station)
        if spacecraft is not None:
            query = query.where(c.spacecraft == spacecraft)
        if state is not None:
            query = query.where(state_clause(state, now_s))
        if after is not None:
            query = query.where(sa.tuple_(c.start_time, c.id) > sa.tuple_(
                sa.literal(after[0], UTCDateTime), after[1]))
        async with self.sessions() as session:
            return [ContactRecord.of(r._mapping) for r in await session.execute(query)]


def _replayed(row: Row, method: str, print_: str) -> bytes:
    if row.fingerprint != print_ or row.method != method:
        raise InvalidArgument(
            f"request_id {row.request_id!r} was already used for a different request "
            f"({row.method})", reason="REQUEST_ID_REUSED",
            violations=[("request_id", "was already used with a different request")])
    return row.response or b""
