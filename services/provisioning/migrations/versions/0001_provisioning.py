"""The provisioning tables: partners, referrals, customers, plans (with revisions),
subscriptions, operations, terminals, the event outbox, audit records, idempotency keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_records",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("actor_tenant", sa.String(200), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=False),
        sa.Column("before", sa.Text(), nullable=False),
        sa.Column("after", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_audit_resource", "audit_records", ["resource", "id"])
    op.create_table(
        "events",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(300), nullable=False),
        sa.Column("customer_id", sa.String(63), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("partner_id", sa.String(63), nullable=True),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_events_tenant", "events", ["tenant", "seq"])
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(64), primary_key=True),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("response", sa.LargeBinary(), nullable=True),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_idempotency_created", "idempotency_keys", ["create_time"])
    op.create_table(
        "partners",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("contact_email", sa.String(254), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "plans",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("bandwidth_mbps", sa.Float(), nullable=False),
        sa.Column("priority_class", sa.String(32), nullable=False),
        sa.Column("min_quantity", sa.Integer(), nullable=False),
        sa.Column("max_quantity", sa.Integer(), nullable=False),
        sa.Column("price_currency", sa.String(3), nullable=False),
        sa.Column("price_units", sa.BigInteger(), nullable=False),
        sa.Column("price_nanos", sa.Integer(), nullable=False),
        sa.Column("regions", sa.Text(), nullable=False),
    )
    op.create_table(
        "customers",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("sector", sa.String(16), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("contact_email", sa.String(254), nullable=False),
        sa.Column("azure_tenant_id", sa.String(36), nullable=False),
        sa.Column("azure_subscription_id", sa.String(36), nullable=False),
        sa.Column("tenant", sa.String(200), nullable=False),
        sa.Column("partner_id", sa.String(63), sa.ForeignKey("partners.id"), nullable=True),
        sa.Column("referral_id", sa.String(63), nullable=True),
        sa.Column("engagement_id", sa.String(63), nullable=True, unique=True),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_customers_partner", "customers", ["partner_id", "id"])
    op.create_index("ix_customers_tenant", "customers", ["tenant", "id"])
    op.create_table(
        "plan_revisions",
        sa.Column("plan_id", sa.String(63), sa.ForeignKey("plans.id"), primary_key=True),
        sa.Column("revision", sa.Integer(), primary_key=True),
        sa.Column("terms", sa.Text(), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "referrals",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("engagement_id", sa.String(63), nullable=False),
        sa.Column("owner_id", sa.String(63), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("counterparty_id", sa.String(63), sa.ForeignKey("partners.id"), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("substatus", sa.String(16), nullable=False),
        sa.Column("deal_currency", sa.String(3), nullable=False),
        sa.Column("deal_units", sa.BigInteger(), nullable=False),
        sa.Column("deal_nanos", sa.Integer(), nullable=False),
        sa.Column("organization", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("contact_email", sa.String(254), nullable=False),
        sa.Column("sector", sa.String(16), nullable=False),
        sa.Column("consent_share_contact", sa.Boolean(), nullable=False),
        sa.Column("consent_contact", sa.Boolean(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("expire_time", sa.DateTime(), nullable=True),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.UniqueConstraint("engagement_id", "direction", name="uq_referrals_engagement_side"),
    )
    op.create_index("ix_referrals_owner", "referrals", ["owner_id", "id"])
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("customer_id", sa.String(63), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("plan_id", sa.String(63), sa.ForeignKey("plans.id"), nullable=False),
        sa.Column("plan_revision", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("terminal_count", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("activation_deadline", sa.DateTime(), nullable=False),
        sa.Column("grace_end_time", sa.DateTime(), nullable=True),
        sa.Column("state_reason", sa.String(500), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("bandwidth_mbps", sa.Float(), nullable=False),
        sa.Column("priority_class", sa.String(32), nullable=False),
        sa.Column("min_quantity", sa.Integer(), nullable=False),
        sa.Column("max_quantity", sa.Integer(), nullable=False),
        sa.Column("price_currency", sa.String(3), nullable=False),
        sa.Column("price_units", sa.BigInteger(), nullable=False),
        sa.Column("price_nanos", sa.Integer(), nullable=False),
        sa.Column("regions", sa.Text(), nullable=False),
        sa.CheckConstraint("terminal_count >= 0 AND terminal_count <= quantity", name="ck_subscriptions_terminal_count"),
    )
    op.create_index("ix_subscriptions_customer", "subscriptions", ["customer_id", "id"])
    op.create_index("ix_subscriptions_pending", "subscriptions", ["state", "activation_deadline"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("subscription_id", sa.String(63), sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("customer_id", sa.String(63), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("plan_id", sa.String(63), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("error_code", sa.Integer(), nullable=False),
        sa.Column("error_reason", sa.String(64), nullable=False),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("requested_by", sa.String(200), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("end_time", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_operations_subscription", "operations", ["subscription_id", "id"])
    op.create_index("uq_operations_running", "operations", ["subscription_id"], unique=True, sqlite_where=sa.text("state = 'RUNNING'"), postgresql_where=sa.text("state = 'RUNNING'"))
    op.create_table(
        "terminals",
        sa.Column("id", sa.String(63), primary_key=True),
        sa.Column("customer_id", sa.String(63), sa.ForeignKey("customers.id"), nullable=False),
        sa.Column("subscription_id", sa.String(63), sa.ForeignKey("subscriptions.id"), nullable=False),
        sa.Column("serial_number", sa.String(64), nullable=False, unique=True),
        sa.Column("latitude_deg", sa.Float(), nullable=False),
        sa.Column("longitude_deg", sa.Float(), nullable=False),
        sa.Column("altitude_m", sa.Float(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("create_time", sa.DateTime(), nullable=False),
        sa.Column("update_time", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_terminals_customer", "terminals", ["customer_id", "id"])
    op.create_index("ix_terminals_subscription", "terminals", ["subscription_id", "state"])


def downgrade() -> None:
    op.drop_table("terminals")
    op.drop_table("operations")
    op.drop_table("subscriptions")
    op.drop_table("referrals")
    op.drop_table("plan_revisions")
    op.drop_table("customers")
    op.drop_table("plans")
    op.drop_table("partners")
    op.drop_table("idempotency_keys")
    op.drop_table("events")
    op.drop_table("audit_records")
