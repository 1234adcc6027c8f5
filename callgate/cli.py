"""The ``callgate`` command line: one click group; each area registers its commands."""
from __future__ import annotations

import os

import click

DEFAULT_DB = "sqlite:///./var/callgate.db"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "db_url",
    envvar="CALLGATE_DB",
    default=DEFAULT_DB,
    show_default=True,
    help="Database URL: sqlite:///path or postgresql://user@host/db (env CALLGATE_DB).",
)
@click.pass_context
def main(ctx: click.Context, db_url: str) -> None:
    """callgate — prepaid call gating and billing for Asterisk."""
    ctx.ensure_object(dict)
    ctx.obj["db_url"] = db_url


def _register_all() -> None:
    from callgate.commands import agi, core, gate, invoices, sidecar, web

    for area in (core, gate, sidecar, agi, invoices, web):
        area.register(main)


_register_all()

if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.environ.get("CALLGATE_PROG", "callgate"))
