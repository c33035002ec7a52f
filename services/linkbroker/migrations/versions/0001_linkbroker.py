"""The link broker tables: gateways, leases, capacity_usage, lease_events, requests,
feed_cursors.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("latitude_deg", sa.Double(), nullable=False),
        sa.Column("longitude_deg", sa.Double(), nullable=False),
        sa.Column("altitude_m", sa.Double(), nullable=False),
        sa.Column("antennas", sa.Integer(), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
        sa.Column("update_s", sa.Double(), nullable=False),
    )
    op.create_table(
        "leases",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("customer", sa.String(63), nullable=False),
        sa.Column("terminal", sa.String(63), nullable=False),
        sa.Column("subscription", sa.String(200), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("bandwidth_mbps", sa.Double(), nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("first_slot", sa.BigInteger(), nullable=False),
        sa.Column("end_slot", sa.BigInteger(), nullable=False),
        sa.Column("latitude_deg", sa.Double(), nullable=False),
        sa.Column("longitude_deg", sa.Double(), nullable=False),
        sa.Column("altitude_m", sa.Double(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("plan", sa.LargeBinary(), nullable=False),
        sa.Column("plan_revision", sa.Integer(), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
        sa.Column("update_s", sa.Double(), nullable=False),
    )
    op.create_index("ix_leases_tenant", "leases", ["tenant", "create_s", "id"])
    op.create_index("ix_leases_state_end", "leases", ["state", "end_slot"])
    op.create_index("ix_leases_subscription", "leases", ["subscription", "state"])
    op.create_table(
        "capacity_usage",
        sa.Column("slot", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("resource", sa.String(64), primary_key=True),
        sa.Column("used_mbps", sa.Double(), nullable=False),
        sa.Column("capacity_mbps", sa.Double(), nullable=False),
        sa.CheckConstraint("used_mbps <= capacity_mbps + 1e-06",
                           name="ck_capacity_usage_within_capacity"),
    )
    op.create_table(
        "lease_events",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("lease_id", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
    )
    op.create_index("ix_lease_events_lease", "lease_events", ["lease_id", "id"])
    op.create_table(
        "requests",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("create_s", sa.Double(), nullable=False),
    )
    op.create_index("ix_requests_create", "requests", ["create_s"])
    op.create_table(
        "feed_cursors",
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("cursor", sa.String(200), nullable=False),
        sa.Column("update_s", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    for table in ("feed_cursors", "requests", "lease_events", "capacity_usage", "leases",
                  "gateways"):
        op.drop_table(table)
