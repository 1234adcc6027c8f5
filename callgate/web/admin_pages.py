"""The operator console's pages (/admin): sign-in, the dashboard, accounts, calls, the audit log.

Access (who may see or do what) is decided for every route by callgate.web.admin_access's
middleware before a handler runs; handlers here only translate between forms and the core.
"""
from __future__ import annotations

import logging
import secrets

from aiohttp import web

from billing_core.domain.errors import InvalidInput
from billing_core.domain.identifiers import check_email
from billing_core.operators import ADMIN, SUPPORT

from .admin_access import PREFIX, admin_cookie, admin_error, admin_render, operator_of, public, roles
from .admin_auth import ADMIN_SIGNIN_CSRF_COOKIE, OperatorSignedIn, operator_sign_in, operator_sign_out
from .auth import tokens_equal
from .context import CORE, PASSWORDS, SETTINGS, client_ip

log = logging.getLogger("callgate.web.admin")

CSRF_REFUSED = "This form has expired or did not come from this console. Reload the page and try again."


# ------------------------------------------------------------------------------------ sign in
def _signin_form(request: web.Request, *, status: int = 200, error: str = "", email: str = "") -> web.Response:
    token = request.cookies.get(ADMIN_SIGNIN_CSRF_COOKIE) or ""
    if len(token) < 20:
        token = secrets.token_urlsafe(32)
    response = admin_render(request, "admin/signin.html", status=status, error=error, email=email, csrf=token,
                            operator=None)
    # Double-submit token for the sign-in form (there is no session to bind it to yet).
    response.set_cookie(ADMIN_SIGNIN_CSRF_COOKIE, token, path=PREFIX + "/signin", httponly=True, samesite="Strict",
                        secure=request.app[SETTINGS].secure_cookies)
    return response


@public
async def signin_page(request: web.Request) -> web.StreamResponse:
    return _signin_form(request)


@public
async def signin_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email = str(form.get("email", ""))
    if not tokens_equal(form.get("csrf"), request.cookies.get(ADMIN_SIGNIN_CSRF_COOKIE)):
        return _signin_form(request, status=403, error=CSRF_REFUSED, email=email[:320])
    try:  # before anything is recorded or logged: a control character would reach the log lines
        check_email(email.strip(" "), "email")
    except InvalidInput:
        return _signin_form(request, status=400, error="Enter your operator email address.")
    settings = request.app[SETTINGS]
    result = await operator_sign_in(request.app[CORE], request.app[PASSWORDS], settings.auth, email,
                                    str(form.get("password", "")), str(form.get("code", "")), client_ip(request))
    if not isinstance(result, OperatorSignedIn):
        if result.reason == "rate_limited":
            minutes = max(1, settings.auth.signin_window_seconds // 60)
            log.warning("operator sign-in rate limited: email=%s ip=%s", email, client_ip(request))
            return _signin_form(request, status=429, email=email,
                                error=f"Too many failed sign-ins. Try again in {minutes} minutes.")
        return _signin_form(request, status=401, email=email, error="Wrong email, password or code.")
    log.info("operator signed in: %s (%s) ip=%s", result.session.email, result.session.role, client_ip(request))
    response = web.HTTPSeeOther(PREFIX)
    response.set_cookie(admin_cookie(request), result.token, path=PREFIX, httponly=True, samesite="Strict",
                        secure=settings.secure_cookies)
    response.del_cookie(ADMIN_SIGNIN_CSRF_COOKIE, path=PREFIX + "/signin")
    raise response


@roles(ADMIN, SUPPORT)  # every operator may end their own session
async def signout(request: web.Request) -> web.StreamResponse:
    await operator_sign_out(request.app[CORE], operator_of(request))
    response = web.HTTPSeeOther(PREFIX + "/signin")
    response.del_cookie(admin_cookie(request), path=PREFIX)
    raise response


# ------------------------------------------------------------------------------------ pages
async def dashboard(request: web.Request) -> web.StreamResponse:
    return admin_render(request, "admin/dashboard.html", active="dashboard")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/signin", signin_page)
    r.add_post(PREFIX + "/signin", signin_submit)
    r.add_post(PREFIX + "/signout", signout)
    r.add_get(PREFIX, dashboard)


__all__ = ["add_routes", "admin_error"]
