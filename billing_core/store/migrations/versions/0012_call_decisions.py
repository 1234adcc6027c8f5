"""call decisions: refused calls as records (call_refusals) and the per account-day totals of settled
calls (call_day_totals) the console's dashboard reads, filled from the existing sessions

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

DAY_MS = 86_400_000


def upgrade() -> None:
    op.create_table(
        "call_refusals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("pbx_id", sa.String(length=80), nullable=False),
        sa.Column("channel_id", sa.String(length=120), nullable=True),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("direction", sa.String(length=10), nullable=False),
        sa.Column("number", sa.String(length=40), nullable=False),
        sa.Column("number_e164", sa.String(length=20), nullable=True),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=16), nullable=True),
        sa.Column("endpoint", sa.String(length=80), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_refusals")),
        sa.UniqueConstraint("pbx_id", "channel_id", name="uq_call_refusals_pbx_channel"),
    )
    op.create_index(op.f("ix_call_refusals_at"), "call_refusals", ["at"], unique=False)
    op.create_index("ix_call_refusals_account_at", "call_refusals", ["account_id", "at"], unique=False)
    op.create_table(
        "call_day_totals",
        sa.Column("day_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("talk_ms", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("day_ms", "account_id", name=op.f("pk_call_day_totals")),
        sqlite_with_rowid=False,
    )
    # the calls settled before this migration (settle keeps the totals from now on)
    op.execute(
        f"INSERT INTO call_day_totals (day_ms, account_id, calls, talk_ms, revenue) "
        f"SELECT created_at - created_at % {DAY_MS}, COALESCE(account_id, 0), COUNT(*), "
        f"COALESCE(SUM(talk_ms), 0), COALESCE(SUM(cost), 0) FROM call_sessions WHERE state = 'settled' "
        f"GROUP BY created_at - created_at % {DAY_MS}, COALESCE(account_id, 0)"
    )


def downgrade() -> None:
    op.drop_table("call_day_totals")
    op.drop_index("ix_call_refusals_account_at", table_name="call_refusals")
    op.drop_index(op.f("ix_call_refusals_at"), table_name="call_refusals")
    op.drop_table("call_refusals")
