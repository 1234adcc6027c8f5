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
@click.option(
    "--config",
    "config_path",
    envvar="CALLGATE_CONFIG",
    default=None,
    type=click.Path(dir_okay=False),
    help="TOML configuration file (env CALLGATE_CONFIG); environment variables override it.",
)
@click.pass_context
def main(ctx: click.Context, db_url: str, config_path: str | None) -> None:
    """callgate — prepaid call gating and billing for Asterisk."""
    from callgate.redaction import install_excepthook

    install_excepthook()
    ctx.ensure_object(dict)
    ctx.obj["config_path"] = config_path
    # --db on the command line beats CALLGATE_DB and the file; the environment is read by the config.
    given = ctx.get_parameter_source("db_url") == click.core.ParameterSource.COMMANDLINE
    ctx.obj["overrides"] = {("database", "url"): ("--db", db_url)} if given else {}
    if ctx.invoked_subcommand != "config":  # `config check` reports every problem itself
        from callgate import config as cfgmod

        # Every command validates the whole configuration the same way before doing anything.
        cfg = cfgmod.load_or_exit(config_path, ctx.obj["overrides"])
        ctx.obj["config"] = cfg
        db_url = cfg.get("database", "url")
    ctx.obj["db_url"] = db_url


def _register_all() -> None:
    from callgate.commands import agi, config_cmd, core, gate, invoices, operator, run, sidecar, web

    for area in (core, config_cmd, run, gate, sidecar, agi, invoices, web, operator):
        area.register(main)


_register_all()

if __name__ == "__main__":  # pragma: no cover
    main(prog_name=os.environ.get("CALLGATE_PROG", "callgate"))
