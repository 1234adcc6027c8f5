"""All tables on the one ``metadata``: the core's and each feature area's module."""
from __future__ import annotations

import importlib

from .tables import metadata

# Feature areas keep their tables in their own modules; importing them registers the tables on
# ``metadata``. Missing modules are fine while an area has not landed yet.
for _name in ("tables_sidecar", "tables_invoices", "tables_web", "tables_ari", "tables_operators"):
    try:
        importlib.import_module(f"{__package__}.{_name}")
    except ModuleNotFoundError as exc:  # pragma: no cover - depends on which areas exist
        if exc.name != f"{__package__}.{_name}":
            raise

__all__ = ["metadata"]
