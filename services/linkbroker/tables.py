"""The link broker's tables (SQLAlchemy Core; SQLite and PostgreSQL).

Times are timezone-aware UTC datetimes (`shared.columns.UTCDateTime`); slots are integers (``slot_index`` of
:mod:`services.linkbroker.slots`). Bandwidth and capacity are Mbit/s.

- `gateways`: the ground gateways (seeded from the defaults on first start).
- `leases`: one row per link: who, where, the window (``first_slot`` inclusive,
  ``end_slot`` exclusive), state, priority and the packed slot-by-slot plan.
- `capacity_usage`: the capacity ledger, one row per (slot, resource) in use. A CHECK
  constraint keeps ``used_mbps <= capacity_mbps``: the database itself refuses an
  oversubscription, whichever replica tries it.
- `lease_events`: what happened to a link (re-planned, degraded, pre-empted...), for
  WatchLink and audit.
- `requests`: idempotency keys of mutating calls (first answer kept for replays).
- `feed_cursors`: where the broker is in provisioning's event feed.
"""

from __future__ import annotations

import sqlalchemy as sa

from shared.columns import UTCDateTime

metadata = sa.MetaData()
_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

#: Slack on the capacity check, Mbit/s: sums of floats must not refuse an exact fill.
CAPACITY_EPSILON_MBPS = 1e-6

gateways = sa.Table(
    "gateways", metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("latitude_deg", sa.Double, nullable=False),
    sa.Column("longitude_deg", sa.Double, nullable=False),
    sa.Column("altitude_m", sa.Double, nullable=False),
    sa.Column("antennas", sa.Integer, nullable=False),
    sa.Column("region", sa.String(40), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
)

leases = sa.Table(
    "leases", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("tenant", sa.String(200), nullable=False),
    sa.Column("customer", sa.String(63), nullable=False),
    sa.Column("terminal", sa.String(63), nullable=False),
    sa.Column("subscription", sa.String(200), nullable=False),
    sa.Column("region", sa.String(40), nullable=False),
    sa.Column("bandwidth_mbps", sa.Double, nullable=False),
    sa.Column("priority", sa.String(16), nullable=False),
    sa.Column("first_slot", sa.BigInteger, nullable=False),
    sa.Column("end_slot", sa.BigInteger, nullable=False),
    sa.Column("latitude_deg", sa.Double, nullable=False),
    sa.Column("longitude_deg", sa.Double, nullable=False),
    sa.Column("altitude_m", sa.Double, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("state_reason", sa.String(500), nullable=False, default=""),
    sa.Column("plan", sa.LargeBinary, nullable=False),
    sa.Column("plan_revision", sa.Integer, nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
    sa.Index("ix_leases_tenant", "tenant", "create_time", "id"),
    sa.Index("ix_leases_state_end", "state", "end_slot"),
    sa.Index("ix_leases_subscription", "subscription", "state"),
)

capacity_usage = sa.Table(
    "capacity_usage", metadata,
    sa.Column("slot", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("resource", sa.String(64), primary_key=True),
    sa.Column("used_mbps", sa.Double, nullable=False),
    sa.Column("capacity_mbps", sa.Double, nullable=False),
    sa.CheckConstraint(f"used_mbps <= capacity_mbps + {CAPACITY_EPSILON_MBPS}",
                       name="ck_capacity_usage_within_capacity"),
)

lease_events = sa.Table(
    "lease_events", metadata,
    sa.Column("id", _ID, primary_key=True, autoincrement=True),
    sa.Column("lease_id", sa.String(32), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Index("ix_lease_events_lease", "lease_id", "id"),
)

requests = sa.Table(
    "requests", metadata,
    sa.Column("tenant", sa.String(200), primary_key=True),
    sa.Column("request_id", sa.String(128), primary_key=True),
    sa.Column("method", sa.String(40), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("response", sa.LargeBinary, nullable=True),
    sa.Column("create_time", UTCDateTime, nullable=False),
    sa.Index("ix_requests_create", "create_time"),
)

feed_cursors = sa.Table(
    "feed_cursors", metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("cursor", sa.String(200), nullable=False),
    sa.Column("update_time", UTCDateTime, nullable=False),
)
