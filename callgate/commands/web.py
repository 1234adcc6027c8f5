"""CLI of the client area: ``callgate web`` serves it; ``callgate account password REF`` sets a
customer's sign-in password."""
from __future__ import annotations

import sys

import click

from callgate import config as cfgmod

from .common import CliError, command_config, emit_json, json_option, open_core, run_async


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise CliError("password: nothing on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise CliError("password: no terminal to ask on; pipe it with --password-stdin")
    return click.prompt("New password", hide_input=True, confirmation_prompt=True)


def register(main: click.Group) -> None:
    """``web`` on the main group, ``password`` on the core's ``account`` group."""

    @main.command("web")
    @click.option("--listen", default=None,
                  help="host:port to serve on (env CALLGATE_WEB_LISTEN, default 127.0.0.1:8080).")
    @click.option("--ops-listen", default=None,
                  help="host:port of the operator listener, /metrics and /healthz (env CALLGATE_OPS_LISTEN, "
                       "default 127.0.0.1:9464; off: none). Keep it private.")
    @click.pass_context
    @run_async
    async def web_cmd(ctx: click.Context, listen: str | None, ops_listen: str | None) -> None:
        """Serve the customer client area (balance, add funds through PayPal, invoices, calls, DIDs),
        and /metrics and /healthz on the private operator listener."""
        from callgate.web.server import serve

        options = {("web", "listen"): ("--listen", listen), ("ops", "listen"): ("--ops-listen", ops_listen)}
        cfg = command_config(ctx, {key: given for key, given in options.items() if given[1]})
        settings = cfgmod.web_settings(cfg)
        cfgmod.warn_if_secrets_exposed(cfg.file)
        import asyncio
        import logging

        from billing_core.log_limits import quiet_accept_errors

        quiet_accept_errors(asyncio.get_running_loop(), logging.getLogger("callgate.web"))
        async with open_core(ctx) as core:
            try:
                await serve(core, settings, paypal_config=cfgmod.paypal_config(cfg), ops_listen=cfgmod.ops_listen(cfg),
                            ready=lambda url: click.echo(f"client area on {url}", err=True),
                            ops_ready=lambda url: click.echo(f"operator listener (/metrics, /healthz) on {url}",
                                                             err=True))
            except OSError as exc:  # a port in use, an address we cannot bind
                raise CliError(f"cannot start: {exc}") from None

    account = main.commands.get("account")
    if not isinstance(account, click.Group):  # the core area registers it first (callgate/cli.py)
        @main.group()
        def account() -> None:
            """Customer accounts."""

    @account.command("password")
    @click.argument("ref")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
    @json_option
    @click.pass_context
    @run_async
    async def account_password(ctx: click.Context, ref: str, password_stdin: bool, as_json: bool) -> None:
        """Set the client-area password of account REF (it signs in with the account's email).
        Signs the account out of every open session."""
        from callgate.web.auth import Passwords, password_problem, set_password

        password = _read_password(password_stdin)
        problem = password_problem(password)
        if problem:
            raise CliError(problem)
        async with open_core(ctx) as core:
            email = await set_password(core, Passwords(cfgmod.web_settings(command_config(ctx)).auth), ref, password)
        if as_json:
            emit_json({"account": ref, "email": email, "password_set": True})
        else:
            click.echo(f"password set for {ref}; it signs in as {email}")


__all__ = ["register"]
