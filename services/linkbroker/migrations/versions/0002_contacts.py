"""Ground-station contacts: ground_stations, contact_profiles, contacts, contact_requests.

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
        "ground_stations",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("latitude_deg", sa.Double(), nullable=False),
        sa.Column("longitude_deg", sa.Double(), nullable=False),
        sa.Column("altitude_m", sa.Double(), nullable=False),
        sa.Column("antennas", sa.Integer(), nullable=False),
        sa.Column("min_elevation_deg", sa.Double(), nullable=False),
        sa.Column("provider", sa.String(60), nullable=False),
        sa.Column("region", sa.String(40), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
    )
    op.create_table(
        "contact_profiles",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("min_elevation_deg", sa.Double(), nullable=False),
        sa.Column("min_duration_s", sa.Double(), nullable=False),
        sa.Column("guard_gap_s", sa.Double(), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
    )
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("spacecraft", sa.BigInteger(), nullable=False),
        sa.Column("ground_station", sa.String(40), nullable=False),
        sa.Column("profile", sa.String(40), nullable=False),
        sa.Column("antenna", sa.Integer(), nullable=False),
        sa.Column("start_s", sa.Double(), nullable=False),
        sa.Column("end_s", sa.Double(), nullable=False),
        sa.Column("max_elevation_deg", sa.Double(), nullable=False),
        sa.Column("start_azimuth_deg", sa.Double(), nullable=False),
        sa.Column("end_azimuth_deg", sa.Double(), nullable=False),
        sa.Column("min_elevation_deg", sa.Double(), nullable=False),
        sa.Column("guard_gap_s", sa.Double(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("create_s", sa.Double(), nullable=False),
        sa.Column("update_s", sa.Double(), nullable=False),
    )
    op.create_index("ix_contacts_station_state_start", "contacts",
                    ["ground_station", "state", "start_s"])
    op.create_index("ix_contacts_tenant_start", "contacts", ["tenant", "start_s", "id"])
    op.create_index("ix_contacts_profile", "contacts", ["tenant", "profile", "state"])
    op.create_table(
        "contact_requests",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(40), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("create_s", sa.Double(), nullable=False),
    )


def downgrade() -> None:
    for table in ("contact_requests", "contacts", "contact_profiles", "ground_stations"):
        op.drop_table(table)
