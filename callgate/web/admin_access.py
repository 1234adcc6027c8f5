"""Who may do what in the operator console (/admin): one middleware decides for every route.

* Every /admin route needs a signed-in operator, except those marked :func:`public` (the sign-in
  form). Anonymous visitors and customers (whose cookie is not an operator's) get 403 and nothing
  is read or written; GET pages say where to sign in rather than redirecting (the issue asks 403).
* What an operator may do follows the role: GET/HEAD pages are open to every role; any other
  method is ``admin`` only unless its handler is marked with :func:`roles` (``support`` may add
  notes). So a new route is locked down by default, and tests/web/test_admin_access.py walks the
  app's router to prove it for every route.
* Every POST's CSRF token is checked here, before its handler runs, against the operator session's
  synchronizer token.
"""
from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from billing_core.operators import ADMIN, ROLES, Actor

from .admin_auth import ADMIN_COOKIE, SECURE_ADMIN_COOKIE, OperatorSession, load_operator_session
from .auth import tokens_equal
from .context import CORE, SETTINGS, TEMPLATES, client_ip

log = logging.getLogger("callgate.web.admin")

PREFIX = "/admin"
try:
    OPERATOR = web.RequestKey("operator", object)
except AttributeError:  # aiohttp < 3.12 has no RequestKey
    OPERATOR = "operator"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CSRF_REFUSED = "This form has expired or did not come from this console. Reload the page and try again."


def public(handler: Handler) -> Handler:
    """Served without an operator session (the sign-in form and its POST, which checks its own token)."""
    handler.admin_public = True  # type: ignore[attr-defined]
    return handler


def roles(*allowed: str) -> Callable[[Handler], Handler]:
    """The roles that may call a handler (default: every role for GET/HEAD, admin for the rest)."""
    assert allowed and all(r in ROLES for r in allowed)

    def mark(handler: Handler) -> Handler:
        handler.admin_roles = tuple(allowed)  # type: ignore[attr-defined]
        return handler

    return mark


def max_body(size: int) -> Callable[[Handler], Handler]:
    """Mark a handler that accepts a request body up to ``size`` bytes (an upload) instead of the
    app's small default."""

    def mark(handler: Handler) -> Handler:
        handler.admin_max_body = size  # type: ignore[attr-defined]
        return handler

    return mark


def allowed_roles(handler: Any, method: str) -> tuple[str, ...]:
    explicit = getattr(handler, "admin_roles", None)
    if explicit is not None:
        return explicit
    return ROLES if method in ("GET", "HEAD") else (ADMIN,)


def admin_cookie(request: web.Request) -> str:
    return SECURE_ADMIN_COOKIE if request.app[SETTINGS].secure_cookies else ADMIN_COOKIE


def operator_of(request: web.Request) -> OperatorSession:
    return request[OPERATOR]


def actor_of(request: web.Request) -> Actor:
    op = operator_of(request)
    return Actor(op.email, op.operator_id)


def admin_render(request: web.Request, name: str, *, status: int = 200, **context: Any) -> web.Response:
    context.setdefault("operator", request.get(OPERATOR))
    context.setdefault("notices", [])
    context.setdefault("active", "")
    html = request.app[TEMPLATES].get_template(name).render(**context)
    return web.Response(text=html, status=status, content_type="text/html", charset="utf-8")


def admin_error(request: web.Request, status: int, title: str, message: str) -> web.Response:
    return admin_render(request, "admin/error.html", status=status, title=title, message=message)


@web.middleware
async def admin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path != PREFIX and not request.path.startswith(PREFIX + "/"):
        return await handler(request)
    route = request.match_info.route
    target = getattr(route, "handler", None)
    if getattr(target, "admin_public", False):
        return await handler(request)
    op = await load_operator_session(request.app[CORE], request.app[SETTINGS].auth, request.cookies.get(admin_cookie(request)))
    if op is None:
        return admin_error(request, 403, "Operators only",
                           "This is the operator console. Sign in as an operator first.")
    request[OPERATOR] = op
    if op.role not in allowed_roles(target, request.method):
        log.warning("refused: %s %s by %s (%s)", request.method, request.path, op.email, op.role)
        return admin_error(request, 403, "Not allowed", f"Your role ({op.role}) may not do this.")
    if request.method not in ("GET", "HEAD"):
        limit = getattr(target, "admin_max_body", None)  # a route taking a file (a rate deck) says how big
        if limit is not None:
            request = request.clone(client_max_size=limit)
        form = await request.post()
        if not tokens_equal(form.get("csrf"), op.csrf_token):
            log.warning("csrf refused: %s %s from %s", request.method, request.path, client_ip(request))
            return admin_error(request, 403, "Form refused", CSRF_REFUSED)
    return await handler(request)


__all__ = ["OPERATOR", "PREFIX", "actor_of", "admin_error", "admin_guard", "admin_render", "allowed_roles", "max_body",
           "operator_of", "public", "roles"]
