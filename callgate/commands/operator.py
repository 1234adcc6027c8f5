"""CLI of the operator console's staff: ``callgate operator add|list|disable|password|totp enable``.

Operators sign in to /admin (``callgate web``); they are staff, not customers, with their own table
and sessions. Every change here writes an audit record whose actor is ``cli`` and the OS user.
"""
from __future__ import annotations

import getpass

import click
import pyotp

from billing_core import operators as ops
from callgate import config as cfgmod
from callgate.web.auth import Passwords, password_problem

from .common import CliError, command_config, emit_json, json_option, open_core, run_async
from .web import _read_password

TOTP_ISSUER = "callgate"


def _cli_actor() -> ops.Actor:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without passwd entry)
        user = ""
    return ops.Actor(f"{ops.CLI_ACTOR}:{user}" if user else ops.CLI_ACTOR)


def _show(op: dict) -> str:
    flags = [op["role"], "password set" if op["password_set"] else "no password",
             "totp" if op["totp"] else "no totp"] + (["disabled"] if op["disabled"] else [])
    return f"{op['email']}  " + ", ".join(flags)


def register(main: click.Group) -> None:
    @main.group()
    def operator() -> None:
        """Operators of the web console (/admin): staff with the role admin or support."""

    @operator.command("add")
    @click.argument("email")
    @click.option("--role", required=True, type=click.Choice(ops.ROLES),
                  help="admin: may change things; support: sees everything, may only add notes.")
    @json_option
    @click.pass_context
    @run_async
    async def operator_add(ctx: click.Context, email: str, role: str, as_json: bool) -> None:
        """Create operator EMAIL (then give them a password with `callgate operator password`)."""
        async with open_core(ctx) as core:
            op = await ops.add_operator(core, email, role, actor=_cli_actor())
        if as_json:
            emit_json(op)
        else:
            click.echo(f"operator {op['email']} created ({role}); set a password with "
                       f"`callgate operator password {op['email']}`")

    @operator.command("list")
    @json_option
    @click.pass_context
    @run_async
    async def operator_list(ctx: click.Context, as_json: bool) -> None:
        """Every operator, with role, password, TOTP and disabled state."""
        async with open_core(ctx) as core:
            found = await ops.list_operators(core)
        if as_json:
            emit_json(found)
        else:
            for op in found:
                click.echo(_show(op))

    @operator.command("disable")
    @click.argument("email")
    @json_option
    @click.pass_context
    @run_async
    async def operator_disable(ctx: click.Context, email: str, as_json: bool) -> None:
        """Disable operator EMAIL: signed out everywhere, sign-in refused."""
        async with open_core(ctx) as core:
            op = await ops.disable_operator(core, email, actor=_cli_actor())
        emit_json(op) if as_json else click.echo(f"operator {op['email']} disabled")

    @operator.command("password")
    @click.argument("email")
    @click.option("--password-stdin", is_flag=True, help="Read the password from the first line of standard input.")
    @json_option
    @click.pass_context
    @run_async
    async def operator_password(ctx: click.Context, email: str, password_stdin: bool, as_json: bool) -> None:
        """Set the console password of operator EMAIL (Argon2id). Signs them out everywhere."""
        password = _read_password(password_stdin)
        problem = password_problem(password)
        if problem:
            raise CliError(problem)
        hashed = await Passwords(cfgmod.web_settings(command_config(ctx)).auth).hash(password)
        async with open_core(ctx) as core:
            op = await ops.set_operator_password(core, email, hashed, actor=_cli_actor())
        if as_json:
            emit_json({"email": op["email"], "password_set": True})
        else:
            click.echo(f"password set for operator {op['email']}")

    @operator.group("totp")
    def totp() -> None:
        """The operator's second factor (TOTP, RFC 6238)."""

    @totp.command("enable")
    @click.argument("email")
    @json_option
    @click.pass_context
    @run_async
    async def totp_enable(ctx: click.Context, email: str, as_json: bool) -> None:
        """Require a TOTP code at sign-in for operator EMAIL; prints the provisioning URI to add to an
        authenticator app (a new secret each time: running it again re-enrols). Signs them out everywhere."""
        secret = pyotp.random_base32()
        async with open_core(ctx) as core:
            op = await ops.set_operator_totp(core, email, secret, actor=_cli_actor())
        uri = pyotp.TOTP(secret).provisioning_uri(name=op["email"], issuer_name=TOTP_ISSUER)
        if as_json:
            emit_json({"email": op["email"], "totp": True, "provisioning_uri": uri})
        else:
            click.echo(uri)
            click.echo(f"TOTP enabled for operator {op['email']}: add the URI above to an authenticator app "
                       "(it holds the secret: do not keep it anywhere else)", err=True)


__all__ = ["register"]
