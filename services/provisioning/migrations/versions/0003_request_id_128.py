"""request_id up to 128 characters, as in every service of the suite (`shared.idempotency`).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_COLUMNS = (("idempotency_keys", "request_id"), ("audit_records", "request_id"))


def upgrade() -> None:
    for table, column in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.String(128), existing_type=sa.String(64),
                               existing_nullable=False)


def downgrade() -> None:
    for table, column in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(column, type_=sa.String(64), existing_type=sa.String(128),
                               existing_nullable=False)
