"""The threat tables: tracks, tracker_meta, detection_batches, assets, alerts.

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
        "tracks",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("estimate_s", sa.Double(), nullable=False),
        sa.Column("created_s", sa.Double(), nullable=False),
        sa.Column("last_hit_s", sa.Double(), nullable=False),
        sa.Column("hits", sa.BigInteger(), nullable=False),
        sa.Column("hit_bits", sa.BigInteger(), nullable=False),
        sa.Column("opportunities", sa.BigInteger(), nullable=False),
        sa.Column("estimate", sa.LargeBinary(), nullable=False),
        sa.Column("models", sa.LargeBinary(), nullable=False),
        sa.Column("threat_class", sa.SmallInteger(), nullable=False),
        sa.Column("class_confidence", sa.Double(), nullable=False),
        sa.Column("impact", sa.LargeBinary(), nullable=True),
        sa.Column("launch", sa.LargeBinary(), nullable=True),
        sa.Column("update_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_tracks_state", "tracks", ["state", "id"])
    op.create_table(
        "tracker_meta",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("next_id", sa.BigInteger(), nullable=False),
        sa.Column("processed_until_s", sa.Double(), nullable=True),
        sa.Column("latest_seen_s", sa.Double(), nullable=True),
        sa.Column("detections_processed", sa.BigInteger(), nullable=False),
        sa.Column("model_names", sa.String(200), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "detection_batches",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.String(128), nullable=True, unique=True),
        sa.Column("min_time_s", sa.Double(), nullable=False),
        sa.Column("max_time_s", sa.Double(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_detection_batches_max_time", "detection_batches", ["max_time_s"])
    op.create_table(
        "assets",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("lat_deg", sa.Double(), nullable=False),
        sa.Column("lon_deg", sa.Double(), nullable=False),
        sa.Column("radius_m", sa.Double(), nullable=False),
        sa.Column("request_id", sa.String(128), nullable=True, unique=True),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "alerts",
        sa.Column("id", _ID, primary_key=True, autoincrement=True),
        sa.Column("track_id", sa.BigInteger(), nullable=False),
        sa.Column("asset_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.SmallInteger(), nullable=False),
        sa.Column("severity", sa.SmallInteger(), nullable=False),
        sa.Column("time_to_impact_s", sa.Double(), nullable=False),
        sa.Column("impact", sa.LargeBinary(), nullable=False),
        sa.Column("evaluation_s", sa.Double(), nullable=False),
        sa.Column("withdraw_reason", sa.String(64), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_alerts_state", "alerts", ["state", "id"])


def downgrade() -> None:
    for table in ("alerts", "assets", "detection_batches", "tracker_meta", "tracks"):
        op.drop_table(table)
