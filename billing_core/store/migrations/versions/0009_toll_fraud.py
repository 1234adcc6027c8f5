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
from alembic import op
import sqlalchemy as sa

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
    ("allow_destinations", sa.Text(), dict(nullable=False, server_default="")),
    ("deny_destinations", sa.Text(), dict(nullable=False, server_default="")),
)


def upgrade() -> None:
    for name, type_, kw in _PACKAGE_COLUMNS:
        op.add_column("packages", sa.Column(name, type_, **kw))
    for name, type_, kw in _ACCOUNT_COLUMNS:
        op.add_column("accounts", sa.Column(name, type_, **kw))


def downgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        for name, _, _ in reversed(_ACCOUNT_COLUMNS):
            batch.drop_column(name)
    with op.batch_alter_table("packages") as batch:
        for name, _, _ in reversed(_PACKAGE_COLUMNS):
            batch.drop_column(name)
