"""The client area's aiohttp application: settings, middlewares, routes.

``make_web_app(core, paypal, settings)`` builds it; ``callgate web`` (callgate/commands/web.py)
serves it. The web layer only translates: money comes from the core and billing_core.invoices,
payments go through callgate.paypal.checkout (and PayPal's webhooks through
callgate.paypal.webhook), and every lookup is scoped to the signed-in account.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from aiohttp import web

from callgate.http_hardening import harden_aiohttp_servers

from . import admin_billing, admin_pages, admin_rates, pages
from .admin_access import PREFIX as ADMIN_PREFIX
from .admin_access import admin_guard
from .auth import AuthSettings, Passwords, WebSession, load_session
# the shared context (cookie names, app keys, render helpers) is context.py's: the pages import it,
# never this module; ``when`` stays importable from here
from .context import (CORE, HERE, PASSWORDS, PAYPAL, RETURN_KEY, SECURE_SESSION_COOKIE, SESSION, SESSION_COOKIE,
                      SETTINGS, TEMPLATES, error_page, template_env, when)

log = logging.getLogger("callgate.web")


@dataclass(frozen=True)
class WebSettings:
    """How the client area runs ([web]: callgate.config.web_settings)."""

    listen: str = "127.0.0.1:8080"
    """host:port to serve on."""
    public_url: str = ""
    """Base URL customers reach (PayPal return/cancel links). Empty: ``http://<listen>`` when the
    client area listens on loopback (a proxy on the same host, the demo); otherwise checkout is
    refused until it is set. Never taken from the request's Host header (anyone can send one)."""
    secret_key: str = ""
    """Signs the PayPal return links, so a customer whose session ended at PayPal still gets the
    payment captured. Empty: a random key per process (a return after a restart, or to another
    process, then asks the customer to sign in first; nothing is lost)."""
    secure_cookies: bool = False
    """Mark cookies Secure (set it when the site is served over HTTPS)."""
    forwarded_for: bool = False
    """Take the client address from the last X-Forwarded-For entry (only behind your own proxy),
    so per-address sign-in limits see customers rather than the proxy."""
    calls_shown: int = 50
    """Recent calls listed on the Calls page."""
    did_release_days: float | None = None
    """Pre-suspended this long → DIDs released: the date the DIDs page shows. The sidecar's
    CALLGATE_DID_RELEASE_DAYS (None: the core's setting)."""
    auth: AuthSettings = field(default_factory=AuthSettings)

    @property
    def session_cookie(self) -> str:
        return SECURE_SESSION_COOKIE if self.secure_cookies else SESSION_COOKIE

    def listen_host_port(self) -> tuple[str, int]:
        from callgate.config import host_port

        return host_port(self.listen, "CALLGATE_WEB_LISTEN")

    def checkout_base_url(self, bound_port: int | None = None) -> str | None:
        """Where PayPal sends customers back: ``public_url``, else ``http://<listen>`` when that is
        a loopback address (``bound_port``: the real port when the listen port is 0), else None
        (checkout refused: a URL built from the request's Host header could be anyone's site)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host, port = self.listen_host_port()
        if not _is_loopback(host):
            return None
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{bound_port or port}"


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ------------------------------------------------------------------------------- middlewares
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    # No scripts at all; the pages are plain forms and links.
    "Content-Security-Policy": "default-src 'self'; script-src 'none'; frame-ancestors 'none'; base-uri 'none'",
}


@web.middleware
async def error_pages(request: web.Request, handler: Handler) -> web.StreamResponse:
    """404 and 405 as the site's own page rather than aiohttp's plain text."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status in (404, 405) and not exc.text.lstrip().startswith("<"):
            return error_page(request, exc.status, "Not found" if exc.status == 404 else "Not allowed",
                              "There is no such page here." if exc.status == 404 else "That is not allowed here.")
        raise


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """On every response the application prepares: pages, redirects (raised or returned), errors.
    Why a prepare signal rather than a middleware: a redirect raised as an exception passed the
    middleware by, and went out without the headers."""
    if not request.path.startswith("/paypal/webhook"):
        for k, v in _SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        if not request.path.startswith("/static/"):
            response.headers.setdefault("Cache-Control", "no-store")


@web.middleware
async def session_loader(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Puts the signed-in customer (or None) on ``request["session"]``."""
    session: WebSession | None = None
    # The console (/admin) has its own sessions (admin_access.admin_guard): a customer's is not read there.
    if not request.path.startswith(("/static/", "/paypal/webhook", ADMIN_PREFIX)):
        settings = request.app[SETTINGS]
        session = await load_session(request.app[CORE], settings.auth, request.cookies.get(settings.session_cookie))
    request[SESSION] = session
    return await handler(request)


def make_web_app(core, paypal=None, settings: WebSettings | None = None, *, verifier=None) -> web.Application:
    """The client area on ``core``. ``paypal``: a :class:`callgate.paypal.client.PayPalClient`
    (None: Add Funds says PayPal is unavailable). With PayPal, POST /paypal/webhook is served too,
    its signatures checked by ``verifier`` (default: one built from the client's config)."""
    harden_aiohttp_servers()
    settings = settings or WebSettings()
    app = web.Application(middlewares=[error_pages, session_loader, admin_guard], client_max_size=64 * 1024)
    app.on_response_prepare.append(security_headers)
    app[CORE] = core
    app[RETURN_KEY] = settings.secret_key.encode() if settings.secret_key else secrets.token_bytes(32)
    app[PAYPAL] = paypal
    app[SETTINGS] = settings
    app[PASSWORDS] = Passwords(settings.auth)
    app[TEMPLATES] = template_env()
    pages.add_routes(app)
    admin_pages.add_routes(app)
    admin_rates.add_routes(app)
    admin_billing.add_routes(app)
    if paypal is not None:
        from callgate.paypal.webhook import WebhookVerifier, paypal_routes

        app.add_routes(paypal_routes(core, verifier=verifier or WebhookVerifier(paypal.config)))
    app.router.add_static("/static/", str(HERE / "static"), append_version=False)
    return app


__all__ = ["WebSettings", "make_web_app", "when"]
