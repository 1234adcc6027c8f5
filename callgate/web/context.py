"""What the client area's app and its pages share: cookie names, the application's keys, the
settings the pages read, and the render helpers.

Why its own module: the app mounts the pages and the pages need these; with them in the app, the
two imported each other (the app only reached the pages from inside a function). Now the app and
the pages both import this, and it imports neither (a contract in setup.cfg keeps it so).
"""
from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Protocol

import jinja2
from aiohttp import web

from billing_core.api import BillingCore
from billing_core.domain.money import format_amount, format_customer
from billing_core.domain.rating import billable_seconds

from .auth import AuthSettings, Passwords

HERE = Path(__file__).parent
SESSION_COOKIE = "callgate_session"
SECURE_SESSION_COOKIE = "__Host-callgate_session"  # the prefix makes browsers insist on Secure, Path=/, no Domain
SIGNIN_CSRF_COOKIE = "callgate_signin"


class SiteSettings(Protocol):
    """What the pages read of the client area's settings (callgate.web.app.WebSettings)."""

    listen: str
    secure_cookies: bool
    forwarded_for: bool
    calls_shown: int
    did_release_days: float | None
    auth: AuthSettings

    @property
    def session_cookie(self) -> str: ...

    def checkout_base_url(self, bound_port: int | None = None) -> str | None: ...


CORE = web.AppKey("core", BillingCore)
RETURN_KEY = web.AppKey("return_key", bytes)
PAYPAL = web.AppKey("paypal", object)
SETTINGS = web.AppKey("settings", SiteSettings)
PASSWORDS = web.AppKey("passwords", Passwords)
TEMPLATES = web.AppKey("templates", jinja2.Environment)
try:
    SESSION = web.RequestKey("session", object)
except AttributeError:  # aiohttp < 3.12 has no RequestKey
    SESSION = "session"


# ------------------------------------------------------------------------------ presentation
def when(ms: int | None) -> str:
    if ms is None:
        return ""
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def duration(talk_ms: int | None) -> str:
    seconds = billable_seconds(talk_ms or 0)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(HERE / "templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(money=format_customer, exact=format_amount, when=when, duration=duration)
    return env


def render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("session", request.get(SESSION))
    context.setdefault("notices", [])
    context.setdefault("active", "")
    html = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def error_page(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return render(request, "error.html", status=status, title=title, message=message)


def client_ip(request: web.Request) -> str:
    if request.app[SETTINGS].forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        if last:
            return last
    return request.remote or ""
