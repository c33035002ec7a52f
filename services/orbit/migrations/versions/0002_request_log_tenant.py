"""`request_log` keys are per tenant: primary key (tenant, request_id), as in every other
service (`shared.idempotency`: a request_id belongs to the caller's tenant). The keys kept
so far were nobody's tenant's and are dropped: a retry of one after this upgrade runs as a
new request.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _request_log(*key: sa.Column) -> None:
    op.create_table(
        "request_log",
        *key,
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("create_us", sa.BigInteger, nullable=False),
    )


def upgrade() -> None:
    op.drop_table("request_log")
    _request_log(sa.Column("tenant", sa.String(200), primary_key=True))


def downgrade() -> None:
    op.drop_table("request_log")
    _request_log()
