"""web sign-in: accounts.signin_email (canonical, unique) and web_signin_attempts.email

Sign-in compared ``lower(accounts.email)`` in SQL with Python's lower-cased input; SQLite's lower()
folds ASCII only, so an email with non-ASCII letters could not sign in there. The canonical form is
now computed in Python once, stored with the password, and compared exactly. Existing accounts with
a password get theirs here (the first account keeps an email two accounts shared).

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

from billing_core.domain.signin_email import canonical_email

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts") as batch:
        batch.add_column(sa.Column("signin_email", sa.String(length=320), nullable=True))
    with op.batch_alter_table("web_signin_attempts") as batch:
        batch.add_column(sa.Column("email", sa.String(length=320), nullable=True))
    conn = op.get_bind()
    accounts = sa.table("accounts", sa.column("id", sa.Integer), sa.column("email", sa.String),
                        sa.column("password_hash", sa.String), sa.column("signin_email", sa.String))
    taken: set[str] = set()
    rows = conn.execute(sa.select(accounts.c.id, accounts.c.email).where(accounts.c.password_hash.is_not(None))
                        .order_by(accounts.c.id)).all()
    for row in rows:
        email = canonical_email(row.email)
        if email and email not in taken:
            taken.add(email)
            conn.execute(sa.update(accounts).where(accounts.c.id == row.id).values(signin_email=email))
    op.create_index("ix_accounts_signin_email", "accounts", ["signin_email"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_accounts_signin_email", table_name="accounts")
    with op.batch_alter_table("web_signin_attempts") as batch:
        batch.drop_column("email")
    with op.batch_alter_table("accounts") as batch:
        batch.drop_column("signin_email")
