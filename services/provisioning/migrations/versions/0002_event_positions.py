"""Outbox events get a feed position assigned after commit, in commit order, by one relay at a
time (see `Store.publish_events`), instead of a sequence number handed out under a global lock
held through every commit. `seq` stays the insertion key; `position` is the feed cursor.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("events", sa.Column("position", sa.BigInteger(), nullable=True))
    # Events written before this revision were numbered in commit order already.
    op.execute("UPDATE events SET position = seq")
    op.create_index("uq_events_position", "events", ["position"], unique=True)
    op.create_index("ix_events_tenant_position", "events", ["tenant", "position"])
    op.create_index("ix_events_unpublished", "events", ["seq"],
                    sqlite_where=sa.text("position IS NULL"),
                    postgresql_where=sa.text("position IS NULL"))
    op.drop_index("ix_events_tenant", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_tenant", "events", ["tenant", "seq"])
    op.drop_index("ix_events_unpublished", table_name="events")
    op.drop_index("ix_events_tenant_position", table_name="events")
    op.drop_index("uq_events_position", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("position")
