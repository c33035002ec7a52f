"""Idempotency keys in their own table, per tenant: `requests` (tenant, request_id) with the
method, the request's fingerprint and the first answer, claimed in the transaction of the
change, so a retry with another body is REQUEST_ID_REUSED and a key is the caller's tenant's
as in every other service (`shared.idempotency`). The global `request_id` columns of
`assets` and `detection_batches` go: keys they held were nobody's tenant's, and a retry of
one after this upgrade runs as a new request.

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
    op.create_table(
        "requests",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    for table in ("assets", "detection_batches"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("request_id")


def downgrade() -> None:
    for table in ("assets", "detection_batches"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("request_id", sa.String(128), nullable=True))
            batch.create_unique_constraint(f"uq_{table}_request_id", ["request_id"])
    op.drop_table("requests")
