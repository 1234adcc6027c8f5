"""CLI of the client area: ``callgate web`` serves it; ``callgate account password REF`` sets a
customer's sign-in password."""
from __future__ import annotations

import sys

import click

from .common import CliError, emit_json, json_option, open_core, run_async


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
    @click.option("--listen", envvar="CALLGATE_WEB_LISTEN", default=None,
                  help="host:port to serve on (env CALLGATE_WEB_LISTEN, default 127.0.0.1:8080).")
    @click.option("--ops-listen", envvar="CALLGATE_OPS_LISTEN", default=None,
                  help="host:port of the operator listener, /metrics and /healthz (env CALLGATE_OPS_LISTEN, "
                       "default 127.0.0.1:9464; off: none). Keep it private.")
    @click.pass_context
    @run_async
    async def web_cmd(ctx: click.Context, listen: str | None, ops_listen: str | None) -> None:
        """Serve the customer client area (balance, add funds through PayPal, invoices, calls, DIDs),
        and /metrics and /healthz on the private operator listener."""
        import os
        from dataclasses import replace

        from callgate.web.app import WebSettings
        from callgate.web.server import serve

        try:
            settings = WebSettings.from_env()
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if listen:
            settings = replace(settings, listen=listen)
        from callgate.ops_http import ops_listen as parse_ops_listen

        if ops_listen:
            os.environ["CALLGATE_OPS_LISTEN"] = ops_listen
        try:
            settings.listen_host_port()
            parse_ops_listen()
        except ValueError as exc:
            raise CliError(str(exc)) from None
        from callgate.paypal.config import PayPalConfig, PayPalConfigError

        try:
            PayPalConfig.from_env()
        except PayPalConfigError as exc:
            raise CliError(str(exc)) from None
        from callgate.config import warn_if_secrets_exposed

        warn_if_secrets_exposed(ctx.find_root().obj.get("config_path"))
        import asyncio
        import logging

        from billing_core.log_limits import quiet_accept_errors

        quiet_accept_errors(asyncio.get_running_loop(), logging.getLogger("callgate.web"))
        async with open_core(ctx) as core:
            try:
                await serve(core, settings, ready=lambda url: click.echo(f"client area on {url}", err=True),
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
        from callgate.web.app import WebSettings
        from callgate.web.auth import Passwords, password_problem, set_password

        password = _read_password(password_stdin)
        problem = password_problem(password)
        if problem:
            raise CliError(problem)
        async with open_core(ctx) as core:
            email = await set_password(core, Passwords(WebSettings.from_env().auth), ref, password)
        if as_json:
            emit_json({"account": ref, "email": email, "password_set": True})
        else:
            click.echo(f"password set for {ref}; it signs in as {email}")


__all__ = ["register"]
