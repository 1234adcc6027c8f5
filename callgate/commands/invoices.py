"""CLI commands of this area (placeholder until the area lands)."""
from __future__ import annotations

import click


def register(main: click.Group) -> None:
    """Add this area's commands to the ``callgate`` group."""
