"""The operator console's pages (/admin): sign-in, the dashboard, accounts, calls, the audit log.

Access (who may see or do what) is decided for every route by callgate.web.admin_access's
middleware before a handler runs; handlers here only translate between forms and the core.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import re
import secrets
from functools import partial
from typing import Any, Iterable
from urllib.parse import urlencode

from aiohttp import web

from billing_core import console, invoices, read_model
from billing_core import operators as ops
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.ids import ID_PATTERN, plain_id
from billing_core.domain.identifiers import REF_PATTERN, check_email
from billing_core.domain.money import format_amount, parse_amount
from billing_core.operators import ADMIN, SUPPORT
from billing_core.sidecar.outbox import list_tx as list_alerts_tx

from .admin_access import PREFIX, actor_of, admin_cookie, admin_error, admin_render, operator_of, public, roles
from .admin_auth import ADMIN_SIGNIN_CSRF_COOKIE, OperatorSignedIn, operator_sign_in, operator_sign_out
from .auth import operator_set_password, send_password_reset, tokens_equal
from .charts import bar_chart, minute_label
from .context import CORE, PASSWORDS, SETTINGS, client_ip, when

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
PAGE = 50
LEDGER_PAGE = 25
CSV_CHUNK = 10_000
NOTICES = {
    "credited": ("good", "Credit recorded."),
    "debited": ("good", "Debit recorded."),
    "replayed": ("good", "That form was already submitted: recorded once, nothing changed this time."),
    "suspended": ("good", "Account suspended: its calls are refused."),
    "active": ("good", "Account reactivated."),
    "depleted": ("good", "Account reactivated; it is depleted, so calls stay refused until it has money."),
    "noted": ("good", "Note added."),
    "reset_sent": ("good", "Password-reset email queued to the customer (the link works once, within an hour)."),
    "password_set": ("good", "Client-area password set; the customer was signed out everywhere."),
    "package": ("good", "Package changed: its plan, limits and rules apply from the next call."),
}
ACCOUNT_INVOICES = 10
ACCOUNT_EMAILS = 20


async def _read(core, fn, *args, **kwargs):
    """``fn(conn, *args, **kwargs)`` in one transaction of the core's store."""
    return await core.store.run(partial(fn, **kwargs), *args)


def _notices(request: web.Request) -> list[dict]:
    found = NOTICES.get(request.query.get("done", ""))
    return [{"kind": found[0], "text": found[1]}] if found else []


async def dashboard(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    d = await _read(core, read_model.dashboard, core.clock.now_ms())
    days = [f.day_ms for f in d.days]
    currency = core.settings.currency
    minutes = bar_chart(days, [f.talk_ms // 60_000 for f in d.days], label="Minutes of talk per day, last 30 days",
                        fmt=lambda v: f"{v} min", chart_id="chart-minutes")
    revenue = bar_chart(days, [f.revenue for f in d.days], label=f"Revenue per day ({currency}), last 30 days",
                        fmt=lambda v: f"{format_amount(v)} {currency}", chart_id="chart-revenue")
    decisions = bar_chart([m.minute_ms for m in d.decisions], [(m.granted, m.refused) for m in d.decisions],
                          label="Decisions per minute (granted, refused), last 60 minutes (UTC)", fmt=str,
                          chart_id="chart-decisions", tick=minute_label, every=10, parts=("granted", "refused"))
    return admin_render(request, "admin/dashboard.html", active="dashboard", d=d, currency=currency,
                        minutes_chart=minutes, revenue_chart=revenue, decisions_chart=decisions)


def _ref(request: web.Request) -> str:
    ref = request.match_info["ref"]
    if not REF_PATTERN.fullmatch(ref):
        raise web.HTTPNotFound()
    return ref


async def accounts_page(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    query = request.query.get("q", "")[:200]
    after = request.query.get("after") or None
    rows, next_after = await _read(core, read_model.search_accounts, query, after=after, limit=PAGE)
    next_url = f"{PREFIX}/accounts?" + urlencode({"q": query, "after": next_after}) if next_after else None
    return admin_render(request, "admin/accounts.html", active="accounts", rows=rows, q=query, next_url=next_url,
                        first_url=f"{PREFIX}/accounts?" + urlencode({"q": query}) if after else None)


async def _account_page(request: web.Request, ref: str, *, status: int = 200, error: str = "",
                        form: dict | None = None) -> web.Response:
    core = request.app[CORE]
    try:
        view = await core.account(ref)
        facts = await _read(core, read_model.account_facts, ref)
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    before = request.query.get("before")
    before_id = int(before) if before and before.isascii() and before.isdigit() and len(before) < 19 else None
    entries, next_before = await _read(core, read_model.ledger_page, facts.id, before=before_id, limit=LEDGER_PAGE)
    calls = await _read(core, read_model.recent_calls, facts.id, 20)
    audit = await _read(core, ops.audit_page_tx, target_kind="account", target=ref, limit=20)
    account_invoices, more_invoices = await _read(core, invoices.page_tx, ref=ref, limit=ACCOUNT_INVOICES)
    emails = await _read(core, list_alerts_tx, None, ACCOUNT_EMAILS, account_id=facts.id)
    rules = await core.admin.account_rules(ref)
    form = {"amount": "", "direction": "credit", "reason": "", "key": "", **(form or {})}
    return admin_render(
        request, "admin/account.html", status=status, active="accounts", a=view, facts=facts, entries=entries,
        calls=calls, audit=audit, error=error, notices=_notices(request), invoices=account_invoices,
        more_invoices=more_invoices is not None, emails=emails, limits=rules["limits"], overrides=rules["overrides"],
        packages=await _read(core, read_model.package_names),
        ledger_next=f"{PREFIX}/accounts/{ref}?before={next_before}" if next_before else None,
        ledger_first=f"{PREFIX}/accounts/{ref}" if before_id else None,
        # a fresh idempotency key per form shown: submitting it twice credits once
        credit_key=form.get("key") or secrets.token_urlsafe(16), form=form,
        is_admin=operator_of(request).role == ADMIN)


async def account_page(request: web.Request) -> web.StreamResponse:
    return await _account_page(request, _ref(request))


async def account_credit(request: web.Request) -> web.StreamResponse:
    ref = _ref(request)
    form = await request.post()
    fields = {k: str(form.get(k, ""))[:400] for k in ("amount", "direction", "reason", "key")}
    try:
        amount = parse_amount(fields["amount"], field="amount", allow_negative=False)
        if fields["direction"] not in ("credit", "debit"):
            raise InvalidInput("direction: choose credit or debit")
        entry = await console.credit_account(request.app[CORE], actor_of(request), ref,
                                             amount if fields["direction"] == "credit" else -amount,
                                             fields["reason"], fields["key"])
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    except InvalidInput as exc:
        return await _account_page(request, ref, status=400, error=str(exc), form=fields)
    log.info("console %s of %s on %s by %s (entry %s%s)", fields["direction"], format_amount(amount), ref,
             operator_of(request).email, entry.entry_id, ", replayed" if entry.replayed else "")
    done = "replayed" if entry.replayed else ("credited" if entry.amount > 0 else "debited")
    raise web.HTTPSeeOther(f"{PREFIX}/accounts/{ref}?done={done}")


async def account_status(request: web.Request) -> web.StreamResponse:
    ref = _ref(request)
    form = await request.post()
    try:
        new = await console.set_account_status(request.app[CORE], actor_of(request), ref,
                                               str(form.get("action", "")), str(form.get("reason", ""))[:400])
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    except InvalidInput as exc:
        return await _account_page(request, ref, status=400, error=str(exc))
    raise web.HTTPSeeOther(f"{PREFIX}/accounts/{ref}?done={new}")


def _site_base(request: web.Request) -> str | None:
    sock = request.transport.get_extra_info("sockname") if request.transport is not None else None
    return request.app[SETTINGS].checkout_base_url(sock[1] if sock else None)


async def account_password(request: web.Request) -> web.StreamResponse:
    """Admin: set the customer's client-area password, or email them a reset link."""
    ref = _ref(request)
    form = await request.post()
    core = request.app[CORE]
    try:
        if form.get("action") == "email":
            base = _site_base(request)
            if base is None:
                raise InvalidInput("reset email: set [web] public_url first (the link needs the site's address)")
            await send_password_reset(core, actor_of(request), ref, base)
            done = "reset_sent"
        else:
            await operator_set_password(core, request.app[PASSWORDS], actor_of(request), ref,
                                        str(form.get("password", ""))[:300])
            done = "password_set"
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    except InvalidInput as exc:
        return await _account_page(request, ref, status=400, error=str(exc))
    raise web.HTTPSeeOther(f"{PREFIX}/accounts/{ref}?done={done}")


async def account_package(request: web.Request) -> web.StreamResponse:
    """Admin: move the account to another package."""
    ref = _ref(request)
    form = await request.post()
    try:
        await console.change_package(request.app[CORE], actor_of(request), ref, str(form.get("package", ""))[:100],
                                     str(form.get("reason", ""))[:400])
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    except InvalidInput as exc:
        return await _account_page(request, ref, status=400, error=f"{exc}. Nothing was changed.")
    raise web.HTTPSeeOther(f"{PREFIX}/accounts/{ref}?done=package")


@roles(ADMIN, SUPPORT)  # the one change support may make
async def account_note(request: web.Request) -> web.StreamResponse:
    ref = _ref(request)
    form = await request.post()
    try:
        await console.add_note(request.app[CORE], actor_of(request), ref, str(form.get("body", ""))[:4000])
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no account {ref!r}.")
    except InvalidInput as exc:
        return await _account_page(request, ref, status=400, error=str(exc))
    raise web.HTTPSeeOther(f"{PREFIX}/accounts/{ref}?done=noted")


# --------------------------------------------------------------------------------- live calls
LIVE_POLL_SECONDS = 2
# The live page runs one script of our own (/static/admin-live.js): every other page allows none.
LIVE_CSP = "default-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"


def _live_row(r: dict) -> dict:
    why = console.why_not_endable(r)
    return {"id": r["id"], "account": r["account_ref"] or "", "direction": r["direction"],
            "number": r["number_e164"] or r["number"], "state": r["state"], "started": when(r["created_at"]),
            "answered": when(r["answered_at"]), "cutoff": when(r["cutoff_at"]), "pbx": r["pbx_id"],
            "hold": format_amount(r["hold"]), "emergency": bool(r["emergency"]),
            "endable": why is None, "why_not": why or ""}


LIVE_NOTICES = {"ended": ("good", "Call ended: the gate hangs it up within 2 seconds (no warning tone) and "
                                  "settles it at the talk so far.")}


async def live_page(request: web.Request) -> web.StreamResponse:
    rows = [_live_row(r) for r in await _read(request.app[CORE], read_model.live_calls)]
    found = LIVE_NOTICES.get(request.query.get("done", ""))
    response = admin_render(request, "admin/live.html", active="live", rows=rows, poll=LIVE_POLL_SECONDS,
                            is_admin=operator_of(request).role == ADMIN,
                            notices=[{"kind": found[0], "text": found[1]}] if found else [])
    response.headers["Content-Security-Policy"] = LIVE_CSP
    return response


async def live_end(request: web.Request) -> web.StreamResponse:
    """Admin: end one live ARI call now (the core moves its cut-off; the gate cuts it)."""
    session_id = request.match_info["session_id"]
    form = await request.post()
    try:
        result = await console.end_call(request.app[CORE], actor_of(request), session_id,
                                        str(form.get("reason", ""))[:300])
    except NotFound:
        return admin_error(request, 404, "Not found", "There is no such call.")
    except InvalidInput as exc:
        return admin_error(request, 409, "Not ended", str(exc))
    log.info("console ended call %s by %s%s", session_id, operator_of(request).email,
             " (already ended)" if result["replayed"] else "")
    raise web.HTTPSeeOther(f"{PREFIX}/live?done=ended")


async def live_json(request: web.Request) -> web.StreamResponse:
    """What the live page polls: the live calls now (the page redraws its table from it)."""
    rows = [_live_row(r) for r in await _read(request.app[CORE], read_model.live_calls)]
    return web.json_response({"calls": rows, "count": len(rows)})


# -------------------------------------------------------------------------------------- calls
CALL_FIELDS = ["id", "account_ref", "direction", "number", "number_e164", "caller_id", "endpoint", "state",
               "created_at", "answered_at", "settled_at", "talk_ms", "cost", "charged", "prefix", "rate_per_min",
               "billing_basis", "settle_note"]
MONEY = {"cost", "charged", "rate_per_min"}
CALL_INTS = {"created_at", "answered_at", "settled_at", "talk_ms"}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day_ms(text: str, field: str) -> int | None:
    if not text:
        return None
    try:
        if not _DATE.fullmatch(text):
            raise ValueError
        day = dt.datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise InvalidInput(f"{field}: a date such as 2026-01-31") from None
    return int(day.timestamp() * 1000)


CALL_FILTERS = ("account", "since", "until", "direction", "prefix", "outcome", "reason")


def _call_filter(request: web.Request) -> tuple[read_model.CallFilter, dict[str, str]]:
    q = {k: request.query.get(k, "").strip()[:64] for k in CALL_FILTERS}
    until = _day_ms(q["until"], "until")
    f = read_model.CallFilter(
        account=q["account"] or None, since_ms=_day_ms(q["since"], "since"),
        until_ms=None if until is None else until + 86_400_000,  # the whole last day
        direction=q["direction"] or None, prefix=q["prefix"].lstrip("+") or None, outcome=q["outcome"] or None,
        reason=q["reason"] or None)
    return f.checked(), q


async def calls_page(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]
    try:
        f, q = _call_filter(request)
        rows, next_before = await _read(core, read_model.calls_page, f, before=request.query.get("before"),
                                                 limit=PAGE)
    except InvalidInput as exc:
        q = {k: request.query.get(k, "")[:64] for k in CALL_FILTERS}
        return admin_render(request, "admin/calls.html", status=400, active="calls", rows=[], q=q, error=str(exc),
                            next_url=None, csv_url=None, outcomes=read_model.OUTCOMES,
                            directions=read_model.DIRECTIONS, reasons=read_model.REASONS)
    shown = {k: v for k, v in q.items() if v}
    return admin_render(
        request, "admin/calls.html", active="calls", rows=rows, q=q, error="", outcomes=read_model.OUTCOMES,
        directions=read_model.DIRECTIONS, reasons=read_model.REASONS,
        next_url=f"{PREFIX}/calls?" + urlencode({**shown, "before": next_before}) if next_before else None,
        csv_url=f"{PREFIX}/calls.csv" + ("?" + urlencode(shown) if shown else ""))


_RISKY_START = frozenset("=@\t\r+-")
_PLAIN_NUMBER = re.compile(r"[+-][0-9.]+")


def csv_cell(value: Any) -> Any:
    """A cell; text a spreadsheet would run as a formula gets a leading apostrophe (CSV
    injection), except plain numbers such as +15145551000 or -1.50. Numbers pass as they are."""
    if value is None:
        return ""
    if type(value) is not str:
        return value
    if value[:1] in _RISKY_START and not (value[0] in "+-" and _PLAIN_NUMBER.fullmatch(value)):
        return "'" + value
    return value


def _csv_lines(rows: Iterable[Iterable[Any]]) -> bytes:
    """Rows whose cells already went through csv_cell, as CSV bytes."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerows(rows)
    return out.getvalue().encode()


_MONEY_AT = [i for i, k in enumerate(CALL_FIELDS) if k in MONEY]
_TEXT_AT = [i for i, k in enumerate(CALL_FIELDS) if k not in MONEY and k not in CALL_INTS]


def _call_values(row: tuple) -> list:
    """One exported call (a tuple in CALL_FIELDS order) as `calls --json` shows it: money as decimal
    strings; text through csv_cell (None is written as an empty cell by the csv module)."""
    out = list(row)
    for i in _TEXT_AT:
        v = out[i]
        if v and v[0] in _RISKY_START:
            out[i] = csv_cell(v)
    for i in _MONEY_AT:
        v = out[i]
        if v is not None:
            out[i] = format_amount(v)
    return out


async def _stream_csv(request: web.Request, filename: str, header: list[str], pages) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/csv; charset=utf-8",
                                           "Content-Disposition": f'attachment; filename="{filename}"'})
    await response.prepare(request)
    await response.write(_csv_lines([[csv_cell(h) for h in header]]))
    async for chunk in pages:
        await response.write(_csv_lines(chunk))
    await response.write_eof()
    return response


async def calls_csv(request: web.Request) -> web.StreamResponse:
    """Every call the filters match, streamed in pages of CSV_CHUNK rows (each its own short read:
    memory stays flat however many there are, and no transaction stays open while the client reads)."""
    core = request.app[CORE]
    try:
        f, _ = _call_filter(request)
    except InvalidInput as exc:
        return admin_error(request, 400, "Bad filter", str(exc))

    # refusals add their reason and rule as the last columns; the call log's columns stay as they were
    fields = CALL_FIELDS + list(read_model.REFUSAL_FIELDS) if f.refused else CALL_FIELDS

    async def pages():
        before = None
        while True:
            rows, before = await _read(core, read_model.calls_export_chunk, f, fields, before=before,
                                       limit=CSV_CHUNK)
            yield [_call_values(r) for r in rows]
            if before is None:
                return

    return await _stream_csv(request, "calls.csv", fields, pages())


# ------------------------------------------------------------------------------------- alerts
async def alerts_page(request: web.Request) -> web.StreamResponse:
    status = request.query.get("status") or None
    if status not in (None, "queued", "sent", "failed"):
        status = None
    rows = await request.app[CORE].store.run(list_alerts_tx, status, 200)
    done = request.query.get("done")
    notices = [{"kind": "good", "text": f"Alert {done} queued to be sent again."}] if done and done.isdigit() else []
    return admin_render(request, "admin/alerts.html", active="alerts", rows=rows, shown_status=status or "",
                        notices=notices, is_admin=operator_of(request).role == ADMIN)


async def alert_retry(request: web.Request) -> web.StreamResponse:
    alert_id = plain_id(request.match_info["alert_id"])
    if alert_id is None:
        raise web.HTTPNotFound()
    try:
        await console.retry_alert(request.app[CORE], actor_of(request), alert_id)
    except NotFound:
        return admin_error(request, 404, "Not found", "There is no such alert.")
    except InvalidInput as exc:
        return admin_error(request, 409, "Not retried", str(exc))
    raise web.HTTPSeeOther(f"{PREFIX}/alerts?done={alert_id}")


# ---------------------------------------------------------------------------------- operators
async def operators_page(request: web.Request) -> web.StreamResponse:
    rows = await ops.list_operators(request.app[CORE])
    done = request.query.get("done")
    notices = [{"kind": "good", "text": f"Operator {done} disabled and signed out."}] if done and any(
        r["email"] == done for r in rows) else []
    return admin_render(request, "admin/operators.html", active="operators", rows=rows, notices=notices,
                        is_admin=operator_of(request).role == ADMIN)


async def operator_disable(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    email = str(form.get("email", ""))[:320]
    if email == operator_of(request).email:
        return admin_error(request, 400, "Not allowed", "You cannot disable yourself (another admin can).")
    try:
        op = await ops.disable_operator(request.app[CORE], email, actor=actor_of(request))
    except NotFound:
        return admin_error(request, 404, "Not found", "There is no such operator.")
    raise web.HTTPSeeOther(f"{PREFIX}/operators?" + urlencode({"done": op["email"]}))


# -------------------------------------------------------------------------------------- audit
AUDIT_FIELDS = ["id", "at", "actor", "action", "target_kind", "target", "before", "after", "reason"]


async def audit_page(request: web.Request) -> web.StreamResponse:
    before = request.query.get("before")
    before_id = int(before) if before and before.isascii() and before.isdigit() and len(before) < 19 else None
    rows = await _read(request.app[CORE], ops.audit_page_tx, before_id=before_id, limit=PAGE + 1)
    shown = rows[:PAGE]
    return admin_render(request, "admin/audit.html", active="audit", rows=shown,
                        next_url=f"{PREFIX}/audit?before={shown[-1].id}" if len(rows) > PAGE else None,
                        first_url=f"{PREFIX}/audit" if before_id else None)


async def audit_csv(request: web.Request) -> web.StreamResponse:
    core = request.app[CORE]

    async def pages():
        before_id = None
        while True:
            rows = await _read(core, ops.audit_page_tx, before_id=before_id, limit=CSV_CHUNK)
            yield [[csv_cell(getattr(r, k)) for k in AUDIT_FIELDS] for r in rows]
            if len(rows) < CSV_CHUNK:
                return
            before_id = rows[-1].id

    return await _stream_csv(request, "audit.csv", AUDIT_FIELDS, pages())


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/signin", signin_page)
    r.add_post(PREFIX + "/signin", signin_submit)
    r.add_post(PREFIX + "/signout", signout)
    r.add_get(PREFIX, dashboard)
    r.add_get(PREFIX + "/accounts", accounts_page)
    r.add_get(PREFIX + "/accounts/{ref}", account_page)
    r.add_post(PREFIX + "/accounts/{ref}/credit", account_credit)
    r.add_post(PREFIX + "/accounts/{ref}/status", account_status)
    r.add_post(PREFIX + "/accounts/{ref}/notes", account_note)
    r.add_post(PREFIX + "/accounts/{ref}/password", account_password)
    r.add_post(PREFIX + "/accounts/{ref}/package", account_package)
    r.add_get(PREFIX + "/live", live_page)
    r.add_get(PREFIX + "/live.json", live_json)
    r.add_post(PREFIX + "/live/{session_id:[A-Za-z0-9_-]{1,40}}/end", live_end)
    r.add_get(PREFIX + "/calls", calls_page)
    r.add_get(PREFIX + "/calls.csv", calls_csv)
    r.add_get(PREFIX + "/alerts", alerts_page)
    r.add_post(PREFIX + f"/alerts/{{alert_id:{ID_PATTERN}}}/retry", alert_retry)
    r.add_get(PREFIX + "/operators", operators_page)
    r.add_post(PREFIX + "/operators/disable", operator_disable)
    r.add_get(PREFIX + "/audit", audit_page)
    r.add_get(PREFIX + "/audit.csv", audit_csv)


__all__ = ["add_routes", "admin_error"]
