"""The orbit catalog: satellites, element-set history, groups, catalog version, request log.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "catalog_state",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute("INSERT INTO catalog_state (id, version) VALUES (1, 0)")
    op.create_table(
        "satellites",
        sa.Column("catalog_number", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("object_name", sa.String(64), nullable=False, server_default=""),
        sa.Column("object_name_lower", sa.String(64), nullable=False, server_default=""),
        sa.Column("intl_designator", sa.String(32), nullable=False, server_default=""),
        sa.Column("create_us", sa.BigInteger, nullable=False),
        sa.Column("update_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_satellites_object_name_lower", "satellites", ["object_name_lower"])
    op.create_table(
        "element_sets",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("catalog_number", sa.BigInteger,
                  sa.ForeignKey("satellites.catalog_number", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("epoch_us", sa.BigInteger, nullable=False),
        sa.Column("epoch_jd", sa.Double, nullable=False),
        sa.Column("epoch_fr", sa.Double, nullable=False),
        sa.Column("mean_motion", sa.Double, nullable=False),
        sa.Column("eccentricity", sa.Double, nullable=False),
        sa.Column("inclination", sa.Double, nullable=False),
        sa.Column("raan", sa.Double, nullable=False),
        sa.Column("arg_perigee", sa.Double, nullable=False),
        sa.Column("mean_anomaly", sa.Double, nullable=False),
        sa.Column("bstar", sa.Double, nullable=False),
        sa.Column("ndot", sa.Double, nullable=False),
        sa.Column("nddot", sa.Double, nullable=False),
        sa.Column("element_set_number", sa.Integer, nullable=False),
        sa.Column("rev_at_epoch", sa.Integer, nullable=False),
        sa.Column("classification", sa.String(1), nullable=False),
        sa.Column("ephemeris_type", sa.Integer, nullable=False),
        sa.Column("source_group", sa.String(63), nullable=True),
        sa.Column("create_us", sa.BigInteger, nullable=False),
        sa.UniqueConstraint("catalog_number", "epoch_us", name="uq_element_sets_sat_epoch"),
    )
    op.create_index("ix_element_sets_epoch", "element_sets", ["epoch_us"])
    op.create_table(
        "groups",
        sa.Column("group_id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False, server_default=""),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("create_us", sa.BigInteger, nullable=False),
        sa.Column("update_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String(63),
                  sa.ForeignKey("groups.group_id", ondelete="CASCADE"), primary_key=True),
        sa.Column("catalog_number", sa.BigInteger,
                  sa.ForeignKey("satellites.catalog_number", ondelete="CASCADE"),
                  primary_key=True),
    )
    op.create_index("ix_group_members_sat", "group_members", ["catalog_number"])
    op.create_table(
        "request_log",
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary, nullable=False),
        sa.Column("create_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("request_log", "group_members", "groups", "element_sets", "satellites",
                  "catalog_state"):
        op.drop_table(table)
