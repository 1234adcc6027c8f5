"""The client area's pages and form actions.

Every page but sign-in needs a session; every POST checks the form's CSRF token before anything
else and writes nothing when it is wrong. Anything addressed by id (invoices, PayPal orders) is
looked up together with the signed-in account: another customer's id answers 404 exactly like an id
that does not exist.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import unicodedata
from functools import partial
from typing import Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web
from yarl import URL

from billing_core import invoices as inv
from billing_core import read_model
from billing_core.domain import lifecycle
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.ids import ID_PATTERN, plain_id
from billing_core.domain.identifiers import check_email
from billing_core.domain.money import format_amount
from callgate.paypal.checkout import CheckoutError, cancel_return, complete_return, start_checkout

from .context import (CORE, PAYPAL, PASSWORDS, RETURN_KEY, SESSION, SETTINGS, SIGNIN_CSRF_COOKIE, client_ip,
                      error_page, render)
from .auth import (SignedIn, WebSession, request_password_reset, reset_password, reset_token_valid, sign_in, sign_out,
                   tokens_equal)

log = logging.getLogger("callgate.web")

STATUS_TEXT = {
    lifecycle.ACTIVE: "Active",
    lifecycle.DEPLETED: "Depleted — calls are refused until you add funds",
    lifecycle.PRE_SUSPENDED: "Pre-suspended — add funds to keep your numbers",
    lifecycle.SUSPENDED: "Suspended",
}
INVOICE_STATUS_TEXT = {
    inv.OUTSTANDING: "Outstanding",
    inv.PENDING: "Payment clearing (eCheque)",
    inv.PAID: "Paid",
    inv.CANCELLED: "Cancelled",
    inv.REFUNDED: "Refunded",
}
HISTORY_PAGE = 20
CSRF_REFUSED = "This form has expired or did not come from this site. Reload the page and try again."


class InvoiceRow:
    """An invoice as the pages show it."""

    def __init__(self, invoice: inv.Invoice):
        self.id = invoice.id
        self.amount = invoice.amount
        self.currency = invoice.currency
        self.created_at = invoice.created_at
        self.settled_at = invoice.paid_at or invoice.cancelled_at
        self.refunded = invoice.refunded
        self.payable = invoice.payable
        self.status = invoice.status
        text = INVOICE_STATUS_TEXT.get(invoice.status, invoice.status)
        if invoice.status == inv.REFUNDED and invoice.refunded < invoice.amount:
            text = f"Partly refunded ({format_amount(invoice.refunded)} {invoice.currency})"
        self.status_text = text


# ------------------------------------------------------------------------------------ helpers
def _session(request: web.Request) -> WebSession:
    session = request.get(SESSION)
    if session is None:
        if request.method in ("GET", "HEAD"):
            target = request.path_qs
            raise web.HTTPSeeOther("/signin?" + urlencode({"next": target}))
        raise _Refused(error_page(request, 403, "Signed out", "Your session has ended. Sign in and try again."))
    return session


async def _form(request: web.Request, session: WebSession | None) -> Any:
    """The posted form, after its CSRF token matched the session's (403 and nothing done otherwise)."""
    form = await request.post()
    if session is None or not tokens_equal(form.get("csrf"), session.csrf_token):
        log.warning("csrf refused: %s %s from %s", request.method, request.path, client_ip(request))
        raise _Refused(error_page(request, 403, "Form refused", CSRF_REFUSED))
    return form


class _Refused(Exception):
    def __init__(self, response: web.Response):
        self.response = response


DEFAULT_NEXT = "/balance"


def _unsafe_char(ch: str) -> bool:
    # Whitespace and every control, format, surrogate, private or unassigned character: URL
    # parsers (browsers', yarl's) drop or reinterpret some of them, turning "/<tab>/evil" into "//evil".
    return ch.isspace() or unicodedata.category(ch)[0] in ("C", "Z")


def _is_local_path(url: str) -> bool:
    if not url.startswith("/") or url[1:2] in ("/", "\\") or "\\" in url or any(_unsafe_char(c) for c in url):
        return False
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        return False
    # No dot segments (also percent-encoded): the path names a page as it is.
    return not any(seg.lower().replace("%2e", ".") in (".", "..") for seg in parts.path.split("/"))


def _safe_next(target: str | None) -> str:
    """A same-site path to redirect to after sign-in, or /balance: never an open redirect.

    Checked twice: the text as received (no whitespace, controls or backslashes at all), and the URL
    exactly as it will be sent in Location (aiohttp re-parses it with yarl, which drops tabs and
    newlines: ``next=/%09/evil.example`` became "//evil.example")."""
    if not target or len(target) > 2000 or not _is_local_path(target):
        return DEFAULT_NEXT
    try:
        sent = str(URL(target))
    except (ValueError, TypeError):
        return DEFAULT_NEXT
    return sent if _is_local_path(sent) else DEFAULT_NEXT


def _checkout_base(request: web.Request) -> str | None:
    """The configured base of PayPal's return/cancel links (never the request's Host header)."""
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return request.app[SETTINGS].checkout_base_url(sock[1] if sock else None)


def _return_signature(request: web.Request, invoice_id: int) -> str:
    """Proves a return link was made by this site's checkout for this invoice (the customer's
    session may have ended while they were at PayPal)."""
    return hmac.new(request.app[RETURN_KEY], f"paypal-return:{invoice_id}".encode(), hashlib.sha256).hexdigest()


def _not_found(request: web.Request) -> _Refused:
    return _Refused(error_page(request, 404, "Not found", "There is no such invoice."))


async def _own_invoice(request: web.Request, session: WebSession, raw_id: str) -> inv.Invoice:
    invoice_id = plain_id(raw_id)
    if invoice_id is None:
        raise _not_found(request)
    try:
        return await inv.get_invoice(request.app[CORE], invoice_id, account_ref=session.account_ref)
    except (NotFound, InvalidInput):
        raise _not_found(request) from None


async def _to_paypal(request: web.Request, session: WebSession, invoice: inv.Invoice) -> web.StreamResponse:
    """Start the PayPal checkout for an outstanding invoice of the signed-in customer."""
    paypal = request.app[PAYPAL]
    if paypal is None:
        return _unavailable(request, invoice, "Payments through PayPal are not set up on this site.")
    base = _checkout_base(request)
    if base is None:
        log.error("checkout for invoice %s not started: set [web] public_url (CALLGATE_WEB_PUBLIC_URL) to the URL "
                  "customers reach; the client area listens on %s", invoice.id, request.app[SETTINGS].listen)
        return _unavailable(request, invoice, "Payments through PayPal are not set up on this site.")
    back = urlencode({"invoice": invoice.id, "sig": _return_signature(request, invoice.id)})
    try:
        approval = await start_checkout(request.app[CORE], paypal, invoice.id,
                                        f"{base}/paypal/return?{back}",
                                        f"{base}/paypal/cancel?invoice={invoice.id}",
                                        account_ref=session.account_ref)
    except NotFound:
        return error_page(request, 404, "Not found", "There is no such invoice.")
    except CheckoutError as exc:  # PayPal down or the invoice no longer payable: nothing charged
        log.error("checkout for invoice %s not started: %s", invoice.id, exc)
        return _unavailable(request, invoice, str(exc))
    if not approval:
        return _unavailable(request, invoice, "PayPal did not give a payment page.")
    raise web.HTTPSeeOther(approval)


def _unavailable(request: web.Request, invoice: inv.Invoice, why: str) -> web.Response:
    return error_page(request, 503, "Payment not started",
                      f"{why} Deposit invoice #{invoice.id} ({format_amount(invoice.amount)} {invoice.currency}) "
                      "stays outstanding: pay it later from Invoices.")


def _refusable(handler):
    async def wrapper(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _Refused as refused:
            return refused.response

    wrapper.__name__ = handler.__name__
    wrapper.__doc__ = handler.__doc__
    return wrapper


# ------------------------------------------------------------------------------------ sign in
async def index(request: web.Request) -> web.StreamResponse:
    raise web.HTTPSeeOther("/balance" if request.get(SESSION) else "/signin")


def _signin_form(request: web.Request, *, status: int = 200, error: str = "", email: str = "",
                 next_url: str = "", notices: list | None = None) -> web.Response:
    token = request.cookies.get(SIGNIN_CSRF_COOKIE) or ""
    if len(token) < 20:
        token = secrets.token_urlsafe(32)
    response = render(request, "signin.html", status=status, error=error, email=email, csrf=token,
                      next=_safe_next(next_url or request.query.get("next")), notices=notices or [])
    settings = request.app[SETTINGS]
    # Double-submit token for the sign-in form (there is no session to bind it to yet).
    response.set_cookie(SIGNIN_CSRF_COOKIE, token, path="/signin", httponly=True, samesite="Lax",
                        secure=settings.secure_cookies)
    return response


async def signin_page(request: web.Request) -> web.StreamResponse:
    if request.get(SESSION) is not None:
        raise web.HTTPSeeOther(_safe_next(request.query.get("next")))
    if request.query.get("reset") == "done":
        return _signin_form(request, notices=[{"kind": "good", "text": "Your new password is set: sign in with it."}])
    return _signin_form(request)


async def signin_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email = str(form.get("email", ""))
    next_url = str(form.get("next", ""))
    if not tokens_equal(form.get("csrf"), request.cookies.get(SIGNIN_CSRF_COOKIE)):
        return _signin_form(request, status=403, error=CSRF_REFUSED, email=email, next_url=next_url)
    try:  # before anything is recorded or logged: a control character would reach the log lines
        check_email(email.strip(" "), "email")  # surrounding spaces are forgiven, never a newline
    except InvalidInput:
        return _signin_form(request, status=400, next_url=next_url,
                            error="Enter the email address of your account, such as name@example.com.")
    settings = request.app[SETTINGS]
    result = await sign_in(request.app[CORE], request.app[PASSWORDS], settings.auth, email,
                           str(form.get("password", "")), client_ip(request))
    if not isinstance(result, SignedIn):
        if result.reason == "rate_limited":
            minutes = max(1, settings.auth.signin_window_seconds // 60)
            log.warning("sign-in rate limited: email=%s ip=%s", email, client_ip(request))
            return _signin_form(request, status=429, email=email, next_url=next_url,
                                error=f"Too many failed sign-ins. Try again in {minutes} minutes.")
        return _signin_form(request, status=401, email=email, next_url=next_url,
                            error="Wrong email or password.")
    log.info("signed in: account=%s ip=%s", result.session.account_ref, client_ip(request))
    response = web.HTTPSeeOther(_safe_next(next_url))
    response.set_cookie(settings.session_cookie, result.token, path="/", httponly=True, samesite="Lax",
                        secure=settings.secure_cookies)
    response.del_cookie(SIGNIN_CSRF_COOKIE, path="/signin")
    raise response


@_refusable
async def signout(request: web.Request) -> web.StreamResponse:
    session = request.get(SESSION)
    if session is None:
        raise web.HTTPSeeOther("/signin")
    await _form(request, session)
    await sign_out(request.app[CORE], session)
    settings = request.app[SETTINGS]
    response = web.HTTPSeeOther("/signin")
    response.del_cookie(settings.session_cookie, path="/")
    raise response


# -------------------------------------------------------------------------------------- pages
async def balance_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    core = request.app[CORE]
    account = await core.account(session.account_ref)
    limits = await core.admin.account_rules(session.account_ref)  # spend caps and today's spend (issue 18)
    outstanding = await inv.list_invoices(core, session.account_ref, status=inv.OUTSTANDING)
    notices = []
    invoice_id = plain_id(request.query.get("invoice"))
    if invoice_id is not None:
        notices += await _payment_notice(request, session, invoice_id)
    return render(request, "balance.html", active="balance", account=account, notices=notices, limits=limits,
                  status_text=STATUS_TEXT.get(account.status, account.status),
                  below_threshold=account.balance < account.low_balance_threshold, outstanding=len(outstanding))


async def _payment_notice(request: web.Request, session: WebSession, invoice_id: int) -> list[dict]:
    try:
        invoice = await inv.get_invoice(request.app[CORE], invoice_id, account_ref=session.account_ref)
    except (NotFound, InvalidInput):
        return []
    amount = f"{format_amount(invoice.amount)} {invoice.currency}"
    if invoice.status == inv.PAID:
        return [{"kind": "good", "text": f"Payment received: {amount} added to your balance (invoice #{invoice.id})."}]
    if invoice.status == inv.PENDING:
        return [{"kind": "good", "text": f"Your eCheque payment of {amount} for invoice #{invoice.id} is clearing; "
                                         "your balance rises as soon as it completes."}]
    if invoice.status == inv.OUTSTANDING:
        text = RETURN_NOTICES.get(request.query.get("outcome", ""),
                                  "Invoice #{id} is not paid yet; pay it from Invoices.")
        return [{"kind": "bad", "text": text.format(id=invoice.id)}]
    return []


async def funds_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    return _funds_form(request, session)


def _funds_form(request: web.Request, session: WebSession, *, amount: str = "", error: str = "",
                status: int = 200) -> web.Response:
    currency = request.app[CORE].settings.currency
    return render(request, "funds.html", status=status, active="funds", amount=amount, error=error, currency=currency,
                  min_amount=format_amount(inv.MIN_AMOUNT), max_amount=format_amount(inv.MAX_AMOUNT))


@_refusable
async def funds_submit(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    form = await _form(request, session)
    amount = str(form.get("amount", ""))  # validated whole: a cut-down value could be another amount
    try:
        invoice = await inv.create_invoice(request.app[CORE], session.account_ref, amount, source="web")
    except InvalidInput as exc:
        message = str(exc).removeprefix("amount: ")[:200]
        return _funds_form(request, session, amount=amount[:40], error=message[:1].upper() + message[1:], status=400)
    log.info("deposit invoice %s created for %s: %s", invoice.id, session.account_ref, format_amount(invoice.amount))
    return await _to_paypal(request, session, invoice)


async def invoices_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    rows = [InvoiceRow(i) for i in await inv.list_invoices(request.app[CORE], session.account_ref)]
    outstanding = [r for r in rows if r.status in (inv.OUTSTANDING, inv.PENDING)]
    history = sorted((r for r in rows if r.status not in (inv.OUTSTANDING, inv.PENDING)), key=lambda r: -r.id)
    # The history is paged (outstanding invoices are always all shown: they are the ones to act on).
    before = plain_id(request.query.get("before"))
    if before is not None:
        history = [r for r in history if r.id < before]
    next_url = f"/invoices?before={history[HISTORY_PAGE - 1].id}" if len(history) > HISTORY_PAGE else None
    history = history[:HISTORY_PAGE]
    notices = []
    cancelled = plain_id(request.query.get("cancelled"))
    if cancelled is not None:
        mine = [r for r in outstanding if r.id == cancelled]
        if mine:
            notices.append({"kind": "bad", "text": f"Payment cancelled at PayPal. Invoice #{mine[0].id} is still "
                                                   "outstanding: pay it now or later."})
    return render(request, "invoices.html", active="invoices", outstanding=outstanding, history=history,
                  notices=notices, next_url=next_url, first_url="/invoices" if before is not None else None)


@_refusable
async def invoice_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    invoice = await _own_invoice(request, session, request.match_info["invoice_id"])
    return render(request, "invoice.html", active="invoices", inv=InvoiceRow(invoice))


@_refusable
async def invoice_pay(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    await _form(request, session)
    invoice = await _own_invoice(request, session, request.match_info["invoice_id"])
    if not invoice.payable:
        return error_page(request, 409, "Nothing to pay",
                          f"Invoice #{invoice.id} is {INVOICE_STATUS_TEXT.get(invoice.status, invoice.status).lower()};"
                          " there is nothing to pay.")
    return await _to_paypal(request, session, invoice)


async def calls_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    core = request.app[CORE]
    before = request.query.get("before") or None
    try:
        calls, next_before = await core.store.run(
            partial(read_model.customer_calls_page, before=before, limit=request.app[SETTINGS].calls_shown),
            session.account_id)
    except InvalidInput:  # a cursor that is no cursor: the first page
        raise web.HTTPSeeOther("/calls") from None
    return render(request, "calls.html", active="calls", calls=calls, currency=core.settings.currency,
                  next_url="/calls?" + urlencode({"before": next_before}) if next_before else None,
                  first_url="/calls" if before else None)


async def dids_page(request: web.Request) -> web.StreamResponse:
    session = _session(request)
    core = request.app[CORE]
    dids = await core.store.run(read_model.held_dids, session.account_id)
    state = await core.store.run(read_model.account_lifecycle, session.account_id)
    release_at = None
    if state.status == lifecycle.PRE_SUSPENDED and state.presuspended_at is not None:
        days = request.app[SETTINGS].did_release_days
        release_at = lifecycle.release_date_ms(state.presuspended_at,
                                               core.settings.did_release_days if days is None else days)
    return render(request, "dids.html", active="dids", dids=dids, release_at=release_at)


# ------------------------------------------------------------------------- PayPal round trip
RETURN_NOTICES = {
    # outcome of complete_return -> what the Credit Balance page says when the invoice is not paid
    "denied": "PayPal declined the payment; nothing was charged. Invoice #{id} is still outstanding.",
    "not_approved": "The payment was not approved at PayPal; nothing was charged. Invoice #{id} is still outstanding.",
    "mismatch": "The amount PayPal reported does not match invoice #{id}; nothing was credited. Support will sort it out.",
    "unconfirmed": "We could not confirm the payment for invoice #{id} with PayPal yet. If it went through, your "
                   "balance rises as soon as PayPal confirms it; you will not be charged twice.",
}


def _return_params(request: web.Request) -> tuple[int, str]:
    invoice_id, token = plain_id(request.query.get("invoice")), request.query.get("token", "")
    if invoice_id is None or not token or len(token) > 64 or request.app[PAYPAL] is None:
        raise _Refused(error_page(request, 404, "Not found", "There is no such payment."))
    return invoice_id, token


@_refusable
async def paypal_return(request: web.Request) -> web.StreamResponse:
    """PayPal sends the customer back approved: capture (credit once), then show the balance.

    A signed-in customer can only complete their own invoices (another's answers 404, nothing
    captured). Without a session only a return link this site signed for this invoice captures
    (the customer approved the order at PayPal and their session ended meanwhile); anything else
    is sent to sign in before any lookup or PayPal request, so existing and missing invoices answer
    alike and nobody can make the site call PayPal."""
    invoice_id, token = _return_params(request)
    session = request.get(SESSION)
    if session is None and not tokens_equal(request.query.get("sig"), _return_signature(request, invoice_id)):
        raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
    try:
        result = await complete_return(request.app[CORE], request.app[PAYPAL], invoice_id, token,
                                       account_ref=session.account_ref if session else None)
    except (NotFound, InvalidInput):
        return error_page(request, 404, "Not found", "There is no such payment.")
    log.info("return from PayPal, invoice %s: %s (%s)", invoice_id, result.outcome, result.message)
    target = "/balance?" + urlencode({"invoice": invoice_id, "outcome": result.outcome})
    if session is None:
        raise web.HTTPSeeOther("/signin?" + urlencode({"next": target}))
    raise web.HTTPSeeOther(target)


@_refusable
async def paypal_cancel(request: web.Request) -> web.StreamResponse:
    """The customer cancelled at PayPal: the invoice stays outstanding with its Pay now button."""
    invoice_id, token = _return_params(request)
    session = request.get(SESSION)
    if session is None:  # nothing is noted for nobody: sign in first, then come back here
        raise web.HTTPSeeOther("/signin?" + urlencode({"next": request.path_qs}))
    try:
        await cancel_return(request.app[CORE], invoice_id, token, account_ref=session.account_ref)
    except (NotFound, InvalidInput):
        return error_page(request, 404, "Not found", "There is no such payment.")
    raise web.HTTPSeeOther(f"/invoices?cancelled={invoice_id}")


# ----------------------------------------------------------------------------- password reset
RESET_CSRF_COOKIE = "callgate_reset"
RESET_SENT = ("If that address signs in to an account here, we sent it a link to choose a new password. "
              "It works once, within an hour.")
RESET_GONE = "This link has expired or was already used. Ask for a new one."
_TOKEN = r"[A-Za-z0-9_-]{20,100}"


def _reset_form(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """A form without a session: a double-submit token in a cookie scoped to /reset (as sign-in's)."""
    token = request.cookies.get(RESET_CSRF_COOKIE) or ""
    if len(token) < 20:
        token = secrets.token_urlsafe(32)
    context.setdefault("error", "")
    response = render(request, template, status=status, csrf=token, **context)
    response.set_cookie(RESET_CSRF_COOKIE, token, path="/reset", httponly=True, samesite="Lax",
                        secure=request.app[SETTINGS].secure_cookies)
    return response


async def _reset_form_data(request: web.Request) -> Any:
    form = await request.post()
    if not tokens_equal(form.get("csrf"), request.cookies.get(RESET_CSRF_COOKIE)):
        raise _Refused(error_page(request, 403, "Form refused", CSRF_REFUSED))
    return form


async def reset_request_page(request: web.Request) -> web.StreamResponse:
    return _reset_form(request, "reset_request.html", email="", sent=False)


@_refusable
async def reset_request_submit(request: web.Request) -> web.StreamResponse:
    form = await _reset_form_data(request)
    email = str(form.get("email", ""))
    try:
        check_email(email.strip(" "), "email")
    except InvalidInput:
        return _reset_form(request, "reset_request.html", status=400, email="", sent=False,
                           error="Enter the email address of your account, such as name@example.com.")
    base = _checkout_base(request)
    if base is None:
        log.error("password reset not sent: set [web] public_url (CALLGATE_WEB_PUBLIC_URL) to the URL customers reach")
        return _reset_form(request, "reset_request.html", status=503, email=email[:320], sent=False,
                           error="Password reset is not set up on this site. Contact support.")
    settings = request.app[SETTINGS]
    outcome = await request_password_reset(request.app[CORE], settings.auth, email, client_ip(request), base)
    if outcome == "rate_limited":
        minutes = max(1, settings.auth.signin_window_seconds // 60)
        return _reset_form(request, "reset_request.html", status=429, email=email[:320], sent=False,
                           error=f"Too many reset requests. Try again in {minutes} minutes.")
    log.info("password reset requested from %s: %s", client_ip(request), outcome)
    return _reset_form(request, "reset_request.html", email="", sent=True)


async def reset_page(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    if not await reset_token_valid(request.app[CORE], token):
        return error_page(request, 410, "Link expired", RESET_GONE)
    return _reset_form(request, "reset_form.html", token=token)


@_refusable
async def reset_submit(request: web.Request) -> web.StreamResponse:
    token = request.match_info["token"]
    form = await _reset_form_data(request)
    password = str(form.get("password", ""))
    if password != str(form.get("confirm", "")):
        return _reset_form(request, "reset_form.html", status=400, token=token,
                           error="The two passwords differ. Type the same new password twice.")
    try:
        email = await reset_password(request.app[CORE], request.app[PASSWORDS], token, password)
    except InvalidInput as exc:
        message = str(exc).removeprefix("password: ")
        return _reset_form(request, "reset_form.html", status=400, token=token,
                           error=message[:1].upper() + message[1:] + ".")
    if email is None:
        return error_page(request, 410, "Link expired", RESET_GONE)
    log.info("password reset used from %s", client_ip(request))
    response = web.HTTPSeeOther("/signin?reset=done")
    response.del_cookie(RESET_CSRF_COOKIE, path="/reset")
    raise response


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/", index)
    r.add_get("/signin", signin_page)
    r.add_post("/signin", signin_submit)
    r.add_post("/signout", signout)
    r.add_get("/balance", balance_page)
    r.add_get("/funds", funds_page)
    r.add_post("/funds", funds_submit)
    r.add_get("/invoices", invoices_page)
    # Ids are plain ASCII decimal that fit a BIGINT (anything else is 404 before the database).
    r.add_get(f"/invoices/{{invoice_id:{ID_PATTERN}}}", invoice_page)
    r.add_post(f"/invoices/{{invoice_id:{ID_PATTERN}}}/pay", invoice_pay)
    r.add_get("/calls", calls_page)
    r.add_get("/dids", dids_page)
    r.add_get("/paypal/return", paypal_return)
    r.add_get("/paypal/cancel", paypal_cancel)
    r.add_get("/reset", reset_request_page)
    r.add_post("/reset", reset_request_submit)
    r.add_get(f"/reset/{{token:{_TOKEN}}}", reset_page)
    r.add_post(f"/reset/{{token:{_TOKEN}}}", reset_submit)


__all__ = ["add_routes"]
