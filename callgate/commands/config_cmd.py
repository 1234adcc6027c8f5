"""`callgate config check` / `callgate config example`."""
from __future__ import annotations

import json

import click

from callgate import config as cfgmod


def register(main: click.Group) -> None:
    @main.group("config")
    def config_group() -> None:
        """Configuration file and environment."""

    @config_group.command("check")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
    @click.pass_context
    def check(ctx: click.Context, as_json: bool) -> None:
        """Validate the configuration and print the effective values (secrets masked).

        Exit 1 naming the file/variable and key of each error."""
        cfg = cfgmod.load_or_exit(ctx.find_root().obj.get("config_path"))
        eff = cfg.effective()
        if as_json:
            click.echo(json.dumps({"ok": True, "file": cfg.file, "config": eff}, indent=2))
            return
        click.echo(f"configuration ok ({cfg.file or 'no file: defaults + environment'})")
        for section, keys in eff.items():
            click.echo(f"[{section}]")
            for key, v in keys.items():
                click.echo(f"  {key} = {v['value']!r}    # {v['source']}")

    @config_group.command("example")
    def example() -> None:
        """Print a commented example configuration with every key."""
        click.echo(cfgmod.example_toml(), nl=False)
