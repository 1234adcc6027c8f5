"""Alembic environment: always driven by billing_core.store.migrate with a live connection."""
from __future__ import annotations

from alembic import context

from billing_core.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - we never run alembic's CLI directly
    raise RuntimeError("run migrations with `callgate db upgrade`")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
