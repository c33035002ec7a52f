"""The provisioning tables (SQLAlchemy 2.x typed ORM, this service's own DeclarativeBase).

Invariants the database itself enforces, whatever the code above it does:
- a subscription's `terminal_count` (its non-decommissioned terminals) stays within
  0..quantity (CHECK constraint; the count is maintained under the subscription's row lock);
- a terminal serial number is unique; one customer per co-sell engagement;
- at most one RUNNING operation per subscription (partial unique index);
- an idempotency key (tenant, request_id) exists once (primary key).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.columns import UTCDateTime


class Base(DeclarativeBase):
    pass


class PartnerRow(Base):
    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    contact_email: Mapped[str] = mapped_column(String(254), default="")
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())


class ReferralRow(Base):
    __tablename__ = "referrals"
    __table_args__ = (
        UniqueConstraint("engagement_id", "direction", name="uq_referrals_engagement_side"),
        Index("ix_referrals_owner", "owner_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    engagement_id: Mapped[str] = mapped_column(String(63))
    owner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    counterparty_id: Mapped[str] = mapped_column(ForeignKey("partners.id"))
    direction: Mapped[str] = mapped_column(String(16))
    display_name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    substatus: Mapped[str] = mapped_column(String(16))
    deal_currency: Mapped[str] = mapped_column(String(3))
    deal_units: Mapped[int] = mapped_column(BigInteger)
    deal_nanos: Mapped[int] = mapped_column(Integer)
    organization: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    contact_email: Mapped[str] = mapped_column(String(254))
    sector: Mapped[str] = mapped_column(String(16))
    consent_share_contact: Mapped[bool] = mapped_column(Boolean)
    consent_contact: Mapped[bool] = mapped_column(Boolean)
    notes: Mapped[str] = mapped_column(Text)
    expire_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_tenant", "tenant", "id"),
        Index("ix_customers_partner", "partner_id", "id"),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    sector: Mapped[str] = mapped_column(String(16))
    country: Mapped[str] = mapped_column(String(2))
    contact_email: Mapped[str] = mapped_column(String(254))
    azure_tenant_id: Mapped[str] = mapped_column(String(36), default="")
    azure_subscription_id: Mapped[str] = mapped_column(String(36), default="")
    tenant: Mapped[str] = mapped_column(String(200))
    partner_id: Mapped[str | None] = mapped_column(ForeignKey("partners.id"), nullable=True)
    referral_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    engagement_id: Mapped[str | None] = mapped_column(String(63), nullable=True, unique=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class TermsColumns:
    """The plan terms, as columns (on plans, and copied onto subscriptions)."""

    bandwidth_mbps: Mapped[float] = mapped_column(Float)
    priority_class: Mapped[str] = mapped_column(String(32))
    min_quantity: Mapped[int] = mapped_column(Integer)
    max_quantity: Mapped[int] = mapped_column(Integer)
    price_currency: Mapped[str] = mapped_column(String(3))
    price_units: Mapped[int] = mapped_column(BigInteger)
    price_nanos: Mapped[int] = mapped_column(Integer)
    regions: Mapped[str] = mapped_column(Text)  # comma separated; names are [a-z0-9]


class PlanRow(TermsColumns, Base):
    __tablename__ = "plans"

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    revision: Mapped[int] = mapped_column(Integer)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class PlanRevisionRow(Base):
    """Every revision of every plan's terms, kept for the record."""

    __tablename__ = "plan_revisions"

    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"), primary_key=True)
    revision: Mapped[int] = mapped_column(Integer, primary_key=True)
    terms: Mapped[str] = mapped_column(Text)  # JSON
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())


class SubscriptionRow(TermsColumns, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("terminal_count >= 0 AND terminal_count <= quantity",
                        name="ck_subscriptions_terminal_count"),
        Index("ix_subscriptions_customer", "customer_id", "id"),
        Index("ix_subscriptions_pending", "state", "activation_deadline"),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    display_name: Mapped[str] = mapped_column(String(200))
    plan_id: Mapped[str] = mapped_column(ForeignKey("plans.id"))
    plan_revision: Mapped[int] = mapped_column(Integer)
    quantity: Mapped[int] = mapped_column(Integer)
    terminal_count: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(32))
    activation_deadline: Mapped[datetime] = mapped_column(UTCDateTime())
    grace_end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    state_reason: Mapped[str] = mapped_column(String(500))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class OperationRow(Base):
    __tablename__ = "operations"
    __table_args__ = (
        Index("ix_operations_subscription", "subscription_id", "id"),
        Index("uq_operations_running", "subscription_id", unique=True,
              sqlite_where=text("state = 'RUNNING'"),
              postgresql_where=text("state = 'RUNNING'")),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    customer_id: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(16))
    plan_id: Mapped[str] = mapped_column(String(63), default="")
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(500), default="")
    error_code: Mapped[int] = mapped_column(Integer, default=0)
    error_reason: Mapped[str] = mapped_column(String(64), default="")
    error_message: Mapped[str] = mapped_column(Text, default="")
    requested_by: Mapped[str] = mapped_column(String(200))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)


class TerminalRow(Base):
    __tablename__ = "terminals"
    __table_args__ = (
        Index("ix_terminals_customer", "customer_id", "id"),
        Index("ix_terminals_subscription", "subscription_id", "state"),
    )

    id: Mapped[str] = mapped_column(String(63), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    subscription_id: Mapped[str] = mapped_column(ForeignKey("subscriptions.id"))
    serial_number: Mapped[str] = mapped_column(String(64), unique=True)
    latitude_deg: Mapped[float] = mapped_column(Float)
    longitude_deg: Mapped[float] = mapped_column(Float)
    altitude_m: Mapped[float] = mapped_column(Float)
    state: Mapped[str] = mapped_column(String(32))
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
    update_time: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(Integer)


class EventRow(Base):
    """The transactional outbox: written in the transaction of the change it records.

    `seq` is the insertion key (allocated under the changed rows' locks, so two changes of
    one resource get increasing `seq`s). `position` is the feed cursor: NULL when written,
    assigned after commit by one relay at a time in `seq` order of the committed events
    (`Store.publish_events`), so positions become visible in increasing order only.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("uq_events_position", "position", unique=True),
        Index("ix_events_tenant_position", "tenant", "position"),
        Index("ix_events_unpublished", "seq", sqlite_where=text("position IS NULL"),
              postgresql_where=text("position IS NULL")),
    )

    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                     primary_key=True, autoincrement=True)
    position: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    type: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(300))
    customer_id: Mapped[str] = mapped_column(String(63))
    tenant: Mapped[str] = mapped_column(String(200))
    partner_id: Mapped[str | None] = mapped_column(String(63), nullable=True)
    payload: Mapped[str] = mapped_column(Text)  # JSON snapshot of the resource
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())


class AuditRow(Base):
    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_resource", "resource", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True, autoincrement=True)
    resource: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    actor_tenant: Mapped[str] = mapped_column(String(200))
    request_id: Mapped[str] = mapped_column(String(128))
    before: Mapped[str] = mapped_column(Text)  # JSON, "" on create
    after: Mapped[str] = mapped_column(Text)  # JSON
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_created", "create_time"),)

    tenant: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    method: Mapped[str] = mapped_column(String(64))
    fingerprint: Mapped[str] = mapped_column(String(64))
    response: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    create_time: Mapped[datetime] = mapped_column(UTCDateTime())
