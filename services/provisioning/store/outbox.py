"""The outbox: events are written with their change and published after commit.

`publish` (one relay at a time: a transaction-scoped advisory lock on PostgreSQL, the
write lock on SQLite) gives the committed, unpublished events the next positions in `seq`
order. A relay's positions become visible all at once and only after every earlier
relay's, so a reader following `position > cursor` can never skip an event (no gaps) nor
see one twice (no duplicates on resume); an event exists exactly when its change
committed. Two changes of one resource are ordered by their row locks, so their events
keep that order in the feed. Readers of the feed run the relay before they read.

Also the audit records: every change's, read per resource.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.wakeup import PgWakeup

from ..domain.access import Audience
from ..domain.records import AuditRecord, Event, Page
from . import rows
from .queries import audience_clause, page
from .tables import AuditRow, EventRow

#: The relay's lock (PostgreSQL): one replica at a time publishes events. Advisory locks
#: belong to the whole database, so the key names this deployment's schema: another
#: deployment (another schema prefix: a test, a benchmark) has its own relay and its own
#: events, and a busy relay there must not keep this one from publishing.
OUTBOX_LOCK_SQL = text(
    "SELECT pg_try_advisory_xact_lock(hashtext('skybridge-outbox:' || current_schema()))")
#: Events published per relay transaction.
PUBLISH_BATCH = 5000

_PUBLISH = text(
    "UPDATE events SET position = numbered.position FROM ("
    " SELECT pending.seq, (SELECT coalesce(max(position), 0) FROM events)"
    " + row_number() OVER (ORDER BY pending.seq) AS position"
    " FROM (SELECT seq FROM events WHERE position IS NULL ORDER BY seq"
    f" LIMIT {PUBLISH_BATCH}) AS pending) AS numbered"
    " WHERE events.seq = numbered.seq")


class Outbox:
    """The relay, the feed's reads and the wake-ups of this replica's feeds."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], is_sqlite: bool) -> None:
        self.sessions = sessions
        self.is_sqlite = is_sqlite
        self._signal = asyncio.Event()
        self._publishing = asyncio.Lock()
        #: PostgreSQL: tells the other replicas of commits with events (LISTEN/NOTIFY).
        self.wakeup: PgWakeup | None = None

    @property
    def signal(self) -> asyncio.Event:
        """Set at the next commit of events by this replica (take it before reading)."""
        return self._signal

    @property
    def poll_seconds(self) -> float:
        """How long a feed sleeps without a wake-up: long when other replicas' commits
        arrive by notification, short when they can only be polled (SQLite)."""
        return 0.2 if self.wakeup is None else 5.0

    def wake(self) -> None:
        """Wake this process's feeds (new events were committed somewhere)."""
        signal, self._signal = self._signal, asyncio.Event()
        signal.set()

    def notify(self) -> None:
        """After a commit with events: wake this process's feeds and the other replicas'."""
        self.wake()
        if self.wakeup is not None:
            self.wakeup.notify()

    async def publish(self) -> int:
        """Publish the committed events (see the module doc); returns how many.

        Shielded: a caller cancelled mid-way (a WatchEvents stream closed by its client or
        by a drain) must not abandon the relay transaction half-way, which would leave its
        connection idle in a transaction holding the lock and the `events` rows."""
        return await asyncio.shield(self._publish())

    async def _publish(self) -> int:
        async with self._publishing:
            published = 0
            while True:
                async with self.sessions() as session, session.begin():
                    if not self.is_sqlite and not await session.scalar(OUTBOX_LOCK_SQL):
                        return published
                    count = (await session.execute(_PUBLISH)).rowcount or 0
                published += count
                if count < PUBLISH_BATCH:
                    return published

    async def read(self, audience: Audience, after: int, limit: int,
                   types: frozenset[str]) -> list[Event]:
        """Published events after position `after` that `audience` may see."""
        await self.publish()
        query = select(EventRow).where(
            EventRow.position > after,
            audience_clause(audience, EventRow.tenant, EventRow.partner_id))
        if types:
            query = query.where(EventRow.type.in_(sorted(types)))
        async with self.sessions() as session:
            found = (await session.execute(query.order_by(EventRow.position).limit(limit))
                     ).scalars()
            return [rows.event(r) for r in found]

    async def audit(self, resource: str, after: int | None, limit: int) -> Page[AuditRecord]:
        found, last = await page(self.sessions,
                                 select(AuditRow).where(AuditRow.resource == resource),
                                 AuditRow.id, after, limit)
        return Page([rows.audit(r) for r in found], last)
