"""Creation and update times as aware-UTC datetimes (`shared.columns.UTCDateTime`: naive UTC
`DateTime` in the column), not integer microseconds; the request log keeps the suite's one
idempotency fingerprint (`shared.idempotency.fingerprint`: the method and the request
without its request_id).

`create_us`/`update_us` of `satellites`, `element_sets` and `groups` become
`create_time`/`update_time` holding the same instant to the microsecond (PostgreSQL:
`TIMESTAMP 'epoch'` plus so many microseconds; SQLite: the text SQLAlchemy writes for a
`DateTime`, `YYYY-MM-DD HH:MM:SS.ffffff`). Element-set epochs keep `epoch_us`: it is the
(satellite, epoch) uniqueness and ordering key and a page token, and propagation reads the
exact two-part Julian date beside it.

The request log is rebuilt with `fingerprint` and `create_time`: the keys kept so far hold
the old digest (of the whole request, request_id included), which no retry would match, so
they are dropped: a retry of one after this upgrade runs as a new request (as 0002 did).

SQLite cannot rebuild these tables in a migration (a table copy would drop `satellites`,
whose ON DELETE CASCADE empties `element_sets` and `group_members` with foreign keys on), so
there the new column is added NOT NULL with a placeholder default, filled, and the old one
dropped with `ALTER TABLE ... DROP COLUMN` (SQLite 3.35+).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIMES = {
    "satellites": ("create", "update"),
    "element_sets": ("create",),
    "groups": ("create", "update"),
}
_SQLITE_PLACEHOLDER = "1970-01-01 00:00:00.000000"


def _request_log(time: sa.Column, digest: str) -> None:
    op.create_table(
        "request_log",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column(digest, sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        time,
    )


def _convert(table: str, old: str, new: str, *, to_datetime: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    kind: sa.types.TypeEngine = sa.DateTime() if to_datetime else sa.BigInteger()
    if sqlite:
        placeholder = f"'{_SQLITE_PLACEHOLDER}'" if to_datetime else "0"
        op.add_column(table, sa.Column(new, kind, nullable=False,
                                       server_default=sa.text(placeholder)))
    else:
        op.add_column(table, sa.Column(new, kind, nullable=True))
    if to_datetime:
        value = (f"strftime('%Y-%m-%d %H:%M:%S', {old} / 1000000, 'unixepoch')"
                 f" || printf('.%06d', {old} % 1000000)" if sqlite else
                 f"TIMESTAMP '1970-01-01 00:00:00' + {old} * INTERVAL '1 microsecond'")
    else:
        value = (f"CAST(strftime('%s', substr({old}, 1, 19)) AS INTEGER) * 1000000"
                 f" + CAST(substr({old}, 21, 6) AS INTEGER)"
                 if sqlite else
                 f"CAST(EXTRACT(EPOCH FROM {old}) * 1000000 AS BIGINT)")
    op.execute(f"UPDATE {table} SET {new} = {value}")
    if sqlite:
        op.execute(f"ALTER TABLE {table} DROP COLUMN {old}")
    else:
        op.alter_column(table, new, nullable=False)
        op.drop_column(table, old)


def upgrade() -> None:
    for table, kinds in _TIMES.items():
        for kind in kinds:
            _convert(table, f"{kind}_us", f"{kind}_time", to_datetime=True)
    op.drop_table("request_log")
    _request_log(sa.Column("create_time", sa.DateTime, nullable=False), "fingerprint")


def downgrade() -> None:
    for table, kinds in _TIMES.items():
        for kind in kinds:
            _convert(table, f"{kind}_time", f"{kind}_us", to_datetime=False)
    op.drop_table("request_log")
    _request_log(sa.Column("create_us", sa.BigInteger, nullable=False), "request_hash")
