"""Helpers every CLI area shares: opening the core, running coroutines, clean errors, JSON."""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import json
import sys
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator, Callable

import click

from billing_core.api import BillingCore
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.money import INTEGER_MAX, STORAGE_MAX, AmountError, format_amount
from billing_core.domain.ratedeck import DeckError
from billing_core.store import migrate
from billing_core.store.engine import DatabaseUrlError, StorageError, parse_db_url
from callgate import config as cfgmod
from callgate.redaction import redact

# Fields of records that carry money (micro-units) and print as decimal strings.
MONEY_FIELDS = {
    "balance", "credit_limit", "held", "available", "low_balance_threshold", "amount", "balance_after", "hold",
    "charged", "cost", "rate_per_min", "connect_fee", "overrun", "final_charge", "charged_by_chunks", "low_balance",
    "inbound_rate", "rerated_cost",
}

USER_ERRORS = (InvalidInput, NotFound, AmountError, DeckError, DatabaseUrlError)


class CliError(click.ClickException):
    """One clear line on stderr, exit status 1."""

    def show(self, file=None) -> None:  # "error: …" without click's "Error: " prefix noise
        # Error texts quote URLs and driver messages: never let a password through to a terminal or journal.
        click.echo(f"error: {redact(self.format_message())}", err=True)


class WholeNumber(click.ParamType):
    """A whole number between ``min`` and ``max`` (by default what a BIGINT column holds), checked
    once when the command line is read: ``10^20``, ``1e20`` or 21 digits are one line naming the
    option or argument (exit 1), never a driver's OverflowError after the database was opened."""

    name = "integer"

    def __init__(self, min: int = 0, max: int = STORAGE_MAX):
        self.min, self.max = min, max

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        else:
            text = str(value).strip()
            if not (text.isascii() and text.lstrip("+-").isdigit() and len(text) <= 30):
                raise CliError(f"{_param_name(param)}: must be a whole number (got {value!r})")
            number = int(text)
        if not self.min <= number <= self.max:
            raise CliError(f"{_param_name(param)}: must be between {self.min} and {self.max} (got {value})")
        return number


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class Instant(click.ParamType):
    """A TIME in ISO 8601 with its UTC offset (``2026-03-10T08:00:00-04:00``, ``…Z``) → epoch ms.
    A time without an offset is refused: which zone it meant would be a guess, and money depends
    on it (a deck effective an hour early, a quote in the wrong period)."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        text = str(value).strip()
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise CliError(f"{_param_name(param)}: not a time in ISO 8601 such as 2026-03-10T08:00:00-04:00 "
                           f"(got {value!r})") from None
        if when.tzinfo is None or when.utcoffset() is None:
            raise CliError(f"{_param_name(param)}: needs a UTC offset such as -04:00 or Z (got {value!r})")
        ms = (when - _EPOCH) // dt.timedelta(milliseconds=1)
        if not -STORAGE_MAX <= ms <= STORAGE_MAX:
            raise CliError(f"{_param_name(param)}: out of range (got {value!r})")
        return ms


def _param_name(param: click.Parameter | None) -> str:
    if param is None:
        return "value"
    if isinstance(param, click.Option):
        return max(param.opts, key=len)
    return param.human_readable_name


def database_error_text(exc: BaseException) -> str:
    """A database error in one line: the driver's own message, without SQLAlchemy's statement
    and background-link lines."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def command_config(ctx: click.Context, overrides: cfgmod.Overrides | None = None) -> cfgmod.Config:
    """The configuration the group validated (callgate/cli.py), or, with a command's own options
    (``{(section, key): (option, value)}``), validated again with them on top: a bad option is one
    line naming its variable, exit 1."""
    root = ctx.find_root()
    obj = root.obj if isinstance(root.obj, dict) else {}
    if not overrides and obj.get("config") is not None:
        return obj["config"]
    return cfgmod.load_or_exit(obj.get("config_path"), {**obj.get("overrides", {}), **(overrides or {})})


async def ensure_schema(url: str) -> None:
    """The embedded SQLite default migrates itself on first use; anything else must be current."""
    parsed = parse_db_url(url)
    try:
        current = await migrate.current(url)
    except Exception as exc:
        raise CliError(f"database unavailable ({url}): {database_error_text(exc)}") from None
    head = migrate.head_revision()
    if current == head:
        return
    if parsed.dialect == "sqlite":
        await migrate.upgrade(url)
        return
    raise CliError(f"database schema is at {current or 'nothing'}, expected {head}: run `callgate db upgrade`")


@asynccontextmanager
async def open_core(ctx: click.Context, *, migrate_schema: bool = True) -> AsyncIterator[BillingCore]:
    """An open BillingCore on the group's --db URL."""
    url = ctx.find_root().obj["db_url"]
    try:
        parse_db_url(url)
    except DatabaseUrlError as exc:
        raise CliError(f"--db/CALLGATE_DB: {exc}") from None
    if migrate_schema:
        await ensure_schema(url)
    core = await BillingCore.open(url, settings=cfgmod.core_settings(command_config(ctx)))
    try:
        yield core
    finally:
        await core.close()


def run_async(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async click command; user errors become one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return asyncio.run(fn(*args, **kwargs))
        except click.ClickException:
            raise
        except USER_ERRORS as exc:
            raise CliError(str(exc)) from None
        except StorageError as exc:
            raise CliError(str(exc)) from None

    return wrapper


def jsonable(value: Any) -> Any:
    """Records → JSON-ready values; money fields become decimal strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: (format_amount(v) if k in MONEY_FIELDS and isinstance(v, int) and not isinstance(v, bool) else jsonable(v))
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "value") and isinstance(getattr(value, "value"), str):  # enums
        return value.value
    return value


def emit_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), indent=2, sort_keys=False, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")

#: The shutdown grace of every process that serves calls (`run`, `gate`, `agi`): one option, one
#: variable, as contrib/systemd's TimeoutStopSec (120 s) assumes.
grace_option = click.option(
    "--grace", type=click.FloatRange(0, 86_400), envvar="CALLGATE_SHUTDOWN_GRACE", default=60.0, show_default=True,
    help="On SIGTERM, seconds live calls may go on before the process stops (env CALLGATE_SHUTDOWN_GRACE).")


def isatty() -> bool:
    return sys.stderr.isatty()
