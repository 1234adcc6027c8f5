"""call_sessions.billing_basis and ledger.below_limit_allowed

``billing_basis`` records how a settled call's talk was known (measured, clamped to what could
have happened, or bounded because no gate saw the end), so an operator can find and refund calls
billed on a bound. ``below_limit_allowed`` marks a ledger entry the operator explicitly allowed to
take the balance below the credit limit (``callgate credit --allow-below-limit``); ``callgate
verify`` accepts what such entries took.

Revision ID: 0008
Revises: 0007
"""
from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("call_sessions", sa.Column("billing_basis", sa.String(24), nullable=True))
    op.add_column("ledger", sa.Column("below_limit_allowed", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("ledger") as batch:
        batch.drop_column("below_limit_allowed")
    with op.batch_alter_table("call_sessions") as batch:
        batch.drop_column("billing_basis")
