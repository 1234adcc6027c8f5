"""Rating v2 (issue 19): deck versions, rate periods, the deck that priced each call

* ``deck_versions``: every import is a new immutable version of a plan's deck, effective at a time,
  with the IANA zone of its periods. Each existing plan's deck becomes version 1, effective from
  the beginning of time (BEGINNING_OF_TIME), in America/Toronto (the default zone).
* ``rates`` gains ``version`` and the row's period (``days`` bit mask, ``start_min``, ``end_min``);
  its key becomes (plan_id, version, prefix, days, start_min). Existing rows: version 1, always.
* ``call_sessions`` gains ``plan_id``, ``deck_version`` and ``rate_periods`` (what priced it), and
  ``rerated_cost``, ``rerated_version``, ``rerated_at`` (``callgate rerate``), with an index on
  (plan_id, created_at) for rerate's window.

Revision ID: 0010
Revises: 0009
"""
from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BEGINNING_OF_TIME = -(2 ** 62)
"""billing_core.domain.decks.BEGINNING_OF_TIME (a migration keeps its own copy: it must not change)."""


def upgrade() -> None:
    op.create_table(
        "deck_versions",
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("effective_at", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("correction", sa.Boolean(), nullable=False),
        sa.Column("rate_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["plan_id"], ["plans.id"], name=op.f("fk_deck_versions_plan_id_plans"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("plan_id", "version", name=op.f("pk_deck_versions")),
    )
    op.execute(
        "INSERT INTO deck_versions (plan_id, version, effective_at, timezone, correction, rate_count, created_at) "
        f"SELECT id, 1, {BEGINNING_OF_TIME}, 'America/Toronto', false, rate_count, created_at FROM plans"
    )
    with op.batch_alter_table("rates", recreate="auto") as batch:
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("days", sa.Integer(), nullable=False, server_default="127"))
        batch.add_column(sa.Column("start_min", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("end_min", sa.Integer(), nullable=False, server_default="1440"))
        batch.drop_constraint("pk_rates", type_="primary")
        batch.create_primary_key("pk_rates", ["plan_id", "version", "prefix", "days", "start_min"])
    # the defaults served the existing rows only: every import writes the columns
    with op.batch_alter_table("rates", recreate="auto") as batch:
        for name in ("version", "days", "start_min", "end_min"):
            batch.alter_column(name, server_default=None)
    op.add_column("call_sessions", sa.Column("plan_id", sa.Integer(), nullable=True))
    op.add_column("call_sessions", sa.Column("deck_version", sa.Integer(), nullable=True))
    op.add_column("call_sessions", sa.Column("rate_periods", sa.Text(), nullable=True))
    op.add_column("call_sessions", sa.Column("rerated_cost", sa.BigInteger(), nullable=True))
    op.add_column("call_sessions", sa.Column("rerated_version", sa.Integer(), nullable=True))
    op.add_column("call_sessions", sa.Column("rerated_at", sa.BigInteger(), nullable=True))
    op.create_index("ix_call_sessions_plan_created", "call_sessions", ["plan_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_call_sessions_plan_created", table_name="call_sessions")
    with op.batch_alter_table("call_sessions") as batch:
        batch.drop_column("rerated_at")
        batch.drop_column("rerated_version")
        batch.drop_column("rerated_cost")
        batch.drop_column("rate_periods")
        batch.drop_column("deck_version")
        batch.drop_column("plan_id")
    # back to one deck a plan: the version in effect now is not knowable here; keep the newest
    op.execute("DELETE FROM rates WHERE version < (SELECT max(version) FROM deck_versions d WHERE d.plan_id = rates.plan_id)")
    op.execute("DELETE FROM rates WHERE NOT (days = 127 AND start_min = 0 AND end_min = 1440)")
    with op.batch_alter_table("rates", recreate="auto") as batch:
        batch.drop_constraint("pk_rates", type_="primary")
        batch.create_primary_key("pk_rates", ["plan_id", "prefix"])
        batch.drop_column("end_min")
        batch.drop_column("start_min")
        batch.drop_column("days")
        batch.drop_column("version")
    op.drop_table("deck_versions")
