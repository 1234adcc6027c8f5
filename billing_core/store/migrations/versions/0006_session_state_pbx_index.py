"""call_sessions: index (state, pbx_id) instead of (state)

The gate reads the live sessions of its PBX every second. With an index on state alone, SQLite
chose the (pbx_id, channel_id) key for ``state IN (…) AND pbx_id = ?`` and read every session the
PBX ever had; (state, pbx_id) reads the live ones only, and still serves queries on state alone.

Revision ID: 0006
Revises: 0005
"""
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_call_sessions_state_pbx", "call_sessions", ["state", "pbx_id"])
    op.drop_index("ix_call_sessions_state", table_name="call_sessions")


def downgrade() -> None:
    op.create_index("ix_call_sessions_state", "call_sessions", ["state"])
    op.drop_index("ix_call_sessions_state_pbx", table_name="call_sessions")
