"""toll-fraud protection (issue 18): destination rules on packages, overrides on accounts

Packages get their destination rules: allowed regions, blocked number types, deny/allow prefix
lists, the high-cost guard. **Packages that exist before this migration get allowed regions ``*``
and no blocked types**, so an upgrade changes no call's outcome silently (docs/OPERATIONS.md,
upgrade notes); packages created afterwards get the issue's defaults (the home region and US;
PREMIUM_RATE, SHARED_COST, UAN blocked). Accounts get overrides (NULL = the package's) and their
own allowed/denied destination prefixes.

Revision ID: 0009
Revises: 0008
"""
import time

from alembic import op
import sqlalchemy as sa

from billing_core.domain import fraud_limits

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

_PACKAGE_COLUMNS = (
    ("allow_regions", sa.String(400), dict(nullable=False, server_default="*")),
    ("block_types", sa.String(200), dict(nullable=False, server_default="")),
    ("deny_prefixes", sa.Text(), dict(nullable=False, server_default="")),
    ("allow_prefixes", sa.Text(), dict(nullable=False, server_default="")),
    ("max_rate_per_min", sa.BigInteger(), dict(nullable=True)),
    ("max_call_minutes", sa.Integer(), dict(nullable=True)),
    ("max_attempts_per_minute", sa.Integer(), dict(nullable=True)),
    ("daily_cap", sa.BigInteger(), dict(nullable=True)),
    ("monthly_cap", sa.BigInteger(), dict(nullable=True)),
    ("timezone", sa.String(64), dict(nullable=False, server_default="America/Toronto")),
    ("anomaly_spend_per_hour", sa.BigInteger(), dict(nullable=True)),
    ("anomaly_blocked_attempts", sa.Integer(), dict(nullable=True)),
    ("anomaly_window_minutes", sa.Integer(), dict(nullable=False, server_default="60")),
)
_ACCOUNT_COLUMNS = (
    ("allow_regions", sa.String(400), dict(nullable=True)),
    ("block_types", sa.String(200), dict(nullable=True)),
    ("max_rate_per_min", sa.BigInteger(), dict(nullable=True)),
    ("max_call_minutes", sa.Integer(), dict(nullable=True)),
    ("max_attempts_per_minute", sa.Integer(), dict(nullable=True)),
    ("attempts_minute", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("attempts_count", sa.Integer(), dict(nullable=False, server_default="0")),
    ("attempts_prev", sa.Integer(), dict(nullable=False, server_default="0")),
    ("daily_cap", sa.BigInteger(), dict(nullable=True)),
    ("monthly_cap", sa.BigInteger(), dict(nullable=True)),
    ("spend_day_key", sa.Integer(), dict(nullable=False, server_default="0")),
    ("spend_day", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("spend_month_key", sa.Integer(), dict(nullable=False, server_default="0")),
    ("spend_month", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("anomaly_spend_per_hour", sa.BigInteger(), dict(nullable=True)),
    ("anomaly_blocked_attempts", sa.Integer(), dict(nullable=True)),
    ("anomaly_window", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("anomaly_spend", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("anomaly_spend_prev", sa.BigInteger(), dict(nullable=False, server_default="0")),
    ("anomaly_blocked", sa.Integer(), dict(nullable=False, server_default="0")),
    ("anomaly_blocked_prev", sa.Integer(), dict(nullable=False, server_default="0")),
    ("suspended_reason", sa.String(40), dict(nullable=True)),
    ("suspensions", sa.Integer(), dict(nullable=False, server_default="0")),
    ("allow_destinations", sa.Text(), dict(nullable=False, server_default="")),
    ("deny_destinations", sa.Text(), dict(nullable=False, server_default="")),
)


def upgrade() -> None:
    for name, type_, kw in _PACKAGE_COLUMNS:
        op.add_column("packages", sa.Column(name, type_, **kw))
    for name, type_, kw in _ACCOUNT_COLUMNS:
        op.add_column("accounts", sa.Column(name, type_, **kw))
    _backfill_spend()
    op.create_table(
        "fraud_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("account_id", sa.Integer(), sa.ForeignKey("accounts.id", name="fk_fraud_events_account_id_accounts"),
                  nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("reason", sa.String(40), nullable=False),
        sa.Column("detail", sa.String(300), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_fraud_events"),
    )
    op.create_index("ix_fraud_events_account_id", "fraud_events", ["account_id"])


def _backfill_spend() -> None:
    """Today's and this month's call charges (America/Toronto: every package's time zone after
    this upgrade) into the new spend counters, so the caps and `verify` start from the truth."""
    conn = op.get_bind()
    now = int(time.time() * 1000)
    day, month = fraud_limits.period_keys(now, None)
    month_start = fraud_limits.period_start_ms(month, None)
    day_start = fraud_limits.period_start_ms(day, None)
    ledger = sa.table("ledger", sa.column("account_id", sa.Integer), sa.column("kind", sa.String),
                      sa.column("amount", sa.BigInteger), sa.column("created_at", sa.BigInteger))
    accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("spend_day_key", sa.Integer),
                        sa.column("spend_day", sa.BigInteger), sa.column("spend_month_key", sa.Integer),
                        sa.column("spend_month", sa.BigInteger))
    charges = (ledger.c.kind.in_(fraud_limits.CALL_CHARGE_KINDS))
    rows = conn.execute(
        sa.select(ledger.c.account_id,
                  sa.func.sum(sa.case((ledger.c.created_at >= day_start, -ledger.c.amount), else_=0)),
                  sa.func.sum(-ledger.c.amount))
        .where(charges, ledger.c.created_at >= month_start, ledger.c.created_at <= now)
        .group_by(ledger.c.account_id)).all()
    for account_id, spent_day, spent_month in rows:
        conn.execute(sa.update(accounts).where(accounts.c.id == account_id).values(
            spend_day_key=day, spend_day=int(spent_day or 0), spend_month_key=month, spend_month=int(spent_month or 0)))


def downgrade() -> None:
    op.drop_index("ix_fraud_events_account_id", table_name="fraud_events")
    op.drop_table("fraud_events")
    with op.batch_alter_table("accounts") as batch:
        for name, _, _ in reversed(_ACCOUNT_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("packages") as batch:
        for name, _, _ in reversed(_PACKAGE_COLUMNS):
            batch.drop_column(name)
