"""The contact tables' instants as timezone-aware UTC DateTime (`shared.columns.UTCDateTime`,
naive UTC in the column as in 0004): ``start_s``/``end_s``/``create_s``/``update_s`` (float
Unix seconds) become ``start_time``/``end_time``/``create_time``/``update_time``, the stored
values converted to the same instants (whole microseconds). Durations (``min_duration_s``,
``guard_gap_s``) stay float seconds. Same add/copy/drop as 0004 on both backends, so the
conversion is the one Python does (not the server's ``to_timestamp``).

Revision ID: 0005
Revises: 0004
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

#: table -> (primary key columns, (old, new) time columns)
_TABLES = {
    "ground_stations": (("id",), (("create_s", "create_time"),)),
    "contact_profiles": (("tenant", "id"), (("create_s", "create_time"),)),
    "contacts": (("id",), (("start_s", "start_time"), ("end_s", "end_time"),
                           ("create_s", "create_time"), ("update_s", "update_time"))),
    "contact_requests": (("tenant", "request_id"), (("create_s", "create_time"),)),
}
#: indexes over a time column: name -> (table, columns before, columns after)
_INDEXES = {
    "ix_contacts_station_state_start": ("contacts", ["ground_station", "state", "start_s"],
                                        ["ground_station", "state", "start_time"]),
    "ix_contacts_tenant_start": ("contacts", ["tenant", "start_s", "id"],
                                 ["tenant", "start_time", "id"]),
}


def _to_naive_utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _to_seconds(value: datetime) -> float:
    return value.replace(tzinfo=UTC).timestamp()


def _convert(old_type, new_type, convert, down: bool) -> None:
    bind = op.get_bind()
    for table, (keys, columns) in _TABLES.items():
        pairs = [(n, o) if down else (o, n) for o, n in columns]
        with op.batch_alter_table(table) as batch:
            for _, target in pairs:
                batch.add_column(sa.Column(target, new_type, nullable=True))
        # Typed columns: the dialect reads and writes each value as its column type does
        # (SQLite keeps DateTime as text in SQLAlchemy's own format).
        source = sa.table(table, *(sa.column(k) for k in keys),
                          *(sa.column(s, old_type) for s, _ in pairs),
                          *(sa.column(t, new_type) for _, t in pairs))
        rows = bind.execute(sa.select(*(source.c[k] for k in keys),
                                      *(source.c[s] for s, _ in pairs))).all()
        if rows:
            update = source.update().where(*(source.c[k] == sa.bindparam(f"k_{k}")
                                             for k in keys)).values(
                **{t: sa.bindparam(f"v_{t}") for _, t in pairs})
            bind.execute(update, [
                {**{f"k_{k}": row[i] for i, k in enumerate(keys)},
                 **{f"v_{t}": convert(row[len(keys) + j]) for j, (_, t) in enumerate(pairs)}}
                for row in rows])
        for name, (index_table, _before, _after) in _INDEXES.items():
            if index_table == table:
                op.drop_index(name, table_name=table)
        with op.batch_alter_table(table) as batch:
            for source_column, target in pairs:
                batch.alter_column(target, existing_type=new_type, nullable=False)
                batch.drop_column(source_column)
        for name, (index_table, before, after) in _INDEXES.items():
            if index_table == table:
                op.create_index(name, table, before if down else after)


def upgrade() -> None:
    _convert(sa.Double(), sa.DateTime(), _to_naive_utc, down=False)


def downgrade() -> None:
    _convert(sa.DateTime(), sa.Double(), _to_seconds, down=True)
