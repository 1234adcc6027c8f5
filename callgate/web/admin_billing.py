"""The console's catalogue and money pages (/admin): packages, the DID pool, deposit invoices.

Reading goes through billing_core's query functions (read_model, admin, invoices); every change is
a billing_core.console action, audited in the transaction that makes it. Access (who may see or do
what, CSRF) is decided for every route by callgate.web.admin_access before a handler runs: the
POST routes here are admin only.
"""
from __future__ import annotations

import logging
import re
import secrets
from urllib.parse import quote, urlencode

from aiohttp import web

from billing_core import admin as admin_ops
from billing_core import console, invoices, read_model
from billing_core import operators as ops
from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.identifiers import REF_PATTERN
from billing_core.domain.money import format_amount, parse_amount
from billing_core.operators import ADMIN
from callgate.paypal.checkout import CheckoutError, request_refund

from .admin_access import PREFIX, actor_of, admin_error, admin_render, operator_of
from .admin_pages import PAGE, _read
from .context import CORE, PAYPAL

log = logging.getLogger("callgate.web.admin")

PACKAGE_NAME = r"[A-Za-z0-9_.@-]{1,64}"
DID_NUMBER = r"\+[0-9]{3,15}"
INVOICE_ID = r"[0-9]{1,10}"
_FORM_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")


def _is_admin(request: web.Request) -> bool:
    return operator_of(request).role == ADMIN


def _done(request: web.Request, notices: dict[str, str]) -> list[dict]:
    text = notices.get(request.query.get("done", ""))
    return [{"kind": "good", "text": text}] if text else []


def _page_urls(path: str, query: dict[str, str], cursor_name: str, cursor, shown_from) -> dict[str, str | None]:
    """The pager's links: the next page (when there is one) and the first (when not on it)."""
    kept = {k: v for k, v in query.items() if v}
    return {"next_url": f"{path}?" + urlencode({**kept, cursor_name: cursor}) if cursor is not None else None,
            "first_url": f"{path}?" + urlencode(kept) if shown_from else None}


# ------------------------------------------------------------------------------------ packages
PACKAGE_NOTICES = {"saved": "Package saved.", "unchanged": "Nothing changed: the form had the package's settings."}


#: How the package list summarises a limit that is set (None / "" = not set).
_LIMIT_TEXT = {"max_rate_per_min": "rates ≤ {}/min", "max_call_minutes": "calls ≤ {} min",
               "max_attempts_per_minute": "{} attempts/min", "daily_cap": "{}/day", "monthly_cap": "{}/month",
               "anomaly_spend_per_hour": "suspend above {}/hour", "allow_regions": "regions {}",
               "block_types": "blocks {}", "deny_prefixes": "denies {}"}


def limits_summary(rules: dict) -> str:
    return " · ".join(text.format(rules[k]) for k, text in _LIMIT_TEXT.items() if rules.get(k) not in (None, ""))


async def packages_page(request: web.Request) -> web.StreamResponse:
    after = request.query.get("after", "")[:64] or None
    rows, next_after = await _read(request.app[CORE], read_model.packages_page, after=after, limit=PAGE)
    return admin_render(request, "admin/packages.html", active="packages",
                        rows=[(p, limits_summary(p.rules)) for p in rows],
                        **_page_urls(PREFIX + "/packages", {}, "after", next_after, after))


def _setting_text(value) -> str:
    return "" if value is None else str(value)


async def _package_page(request: web.Request, name: str, *, status: int = 200, error: str = "",
                        form: dict[str, str] | None = None) -> web.Response:
    core = request.app[CORE]
    try:
        package = await core.admin.show_package(name)
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no package {name!r}.")
    audit = await _read(core, ops.audit_page_tx, target_kind="package", target=name, limit=20)
    shown = {k: _setting_text(package[k]) for k in console.PACKAGE_SETTINGS}
    return admin_render(request, "admin/package.html", status=status, active="packages", p=package, error=error,
                        settings=console.PACKAGE_SETTINGS, form={**shown, **(form or {})}, audit=audit,
                        notices=_done(request, PACKAGE_NOTICES), is_admin=_is_admin(request))


async def package_page(request: web.Request) -> web.StreamResponse:
    return await _package_page(request, request.match_info["name"])


async def package_set(request: web.Request) -> web.StreamResponse:
    """Admin: change the package's settings the form changed (``package set``'s checks)."""
    name = request.match_info["name"]
    core = request.app[CORE]
    form = await request.post()
    submitted = {k: str(form.get(k, ""))[:2000].strip() for k in console.PACKAGE_SETTINGS if k in form}
    try:
        current = await core.admin.show_package(name)
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no package {name!r}.")
    changes = {k: v for k, v in submitted.items() if v != _setting_text(current[k])}
    changed = False
    if changes:
        try:
            after = await console.set_package(core, actor_of(request), name, changes, str(form.get("reason", ""))[:400])
        except (InvalidInput, NotFound) as exc:  # NotFound: the --plan named
            return await _package_page(request, name, status=400, error=f"{exc}. Nothing was changed.", form=submitted)
        changed = any(after[k] != current[k] for k in changes)
    log.info("console package set %s by %s: %s", name, operator_of(request).email, sorted(changes))
    raise web.HTTPSeeOther(f"{PREFIX}/packages/{name}?done={'saved' if changed else 'unchanged'}")


# ---------------------------------------------------------------------------------------- DIDs
DID_NOTICES = {"assigned": "DID assigned.", "released": "DID released to the pool."}


async def dids_page(request: web.Request) -> web.StreamResponse:
    state = request.query.get("state", "")
    search = request.query.get("q", "")[:40]
    after = request.query.get("after", "")[:20] or None
    try:
        rows, next_after = await _read(request.app[CORE], read_model.dids_page, state=state or None, search=search,
                                       after=after, limit=PAGE)
    except InvalidInput as exc:
        return admin_error(request, 400, "Bad filter", str(exc))
    return admin_render(request, "admin/dids.html", active="dids", rows=rows, state=state, q=search,
                        states=read_model.DID_STATES,
                        **_page_urls(PREFIX + "/dids", {"state": state, "q": search}, "after", next_after, after))


async def _did_page(request: web.Request, e164: str, *, status: int = 200, error: str = "",
                    form: dict[str, str] | None = None) -> web.Response:
    core = request.app[CORE]
    try:
        did = await _read(core, admin_ops.did_tx, e164)
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no DID {e164} in the pool.")
    history = await core.admin.did_history(e164)
    audit = await _read(core, ops.audit_page_tx, target_kind="did", target=e164, limit=20)
    return admin_render(request, "admin/did.html", status=status, active="dids", did=did, history=history,
                        audit=audit, error=error, form={"account": "", "endpoint": "", "reason": "", **(form or {})},
                        notices=_done(request, DID_NOTICES), is_admin=_is_admin(request), path=did_path(e164))


def did_path(e164: str) -> str:
    return f"{PREFIX}/dids/{quote(e164)}"


async def did_page(request: web.Request) -> web.StreamResponse:
    return await _did_page(request, request.match_info["e164"])


async def did_assign(request: web.Request) -> web.StreamResponse:
    e164 = request.match_info["e164"]
    form = await request.post()
    fields = {k: str(form.get(k, ""))[:100].strip() for k in ("account", "endpoint")}
    try:
        if not REF_PATTERN.fullmatch(fields["account"]):
            raise InvalidInput("account: enter the ref of the account to assign it to")
        await console.assign_did(request.app[CORE], actor_of(request), e164, fields["account"],
                                 fields["endpoint"] or None)
    except InvalidInput as exc:
        return await _did_page(request, e164, status=400, error=f"{exc}. Nothing was changed.", form=fields)
    except NotFound as exc:  # the account (an unknown DID: its page says so, 404)
        return await _did_page(request, e164, status=400, error=f"account: {exc}. Nothing was changed.", form=fields)
    raise web.HTTPSeeOther(did_path(e164) + "?done=assigned")


async def did_release(request: web.Request) -> web.StreamResponse:
    e164 = request.match_info["e164"]
    form = await request.post()
    reason = str(form.get("reason", ""))[:300]
    try:
        await console.release_did(request.app[CORE], actor_of(request), e164, reason)
    except (InvalidInput, NotFound) as exc:
        return await _did_page(request, e164, status=400, error=f"{exc}. Nothing was changed.", form={"reason": reason})
    raise web.HTTPSeeOther(did_path(e164) + "?done=released")


# ------------------------------------------------------------------------------------ invoices
REFUND_NOTICES = {"refunded": "Refund made at PayPal and debited from the account.",
                  "replayed": "That form was already submitted: refunded once, nothing changed this time."}


def _invoice_filter(request: web.Request) -> dict[str, str]:
    return {k: request.query.get(k, "").strip()[:64] for k in ("status", "account")}


async def _invoices_page(request: web.Request, *, status: int = 200, error: str = "") -> web.Response:
    core = request.app[CORE]
    shown = _invoice_filter(request)
    before = request.query.get("before", "")
    before_id = int(before) if before.isascii() and before.isdigit() and len(before) < 11 else None
    try:
        rows, next_before = await _read(core, invoices.page_tx, ref=shown["account"] or None,
                                        status=shown["status"] or None, before=before_id, limit=PAGE)
    except InvalidInput as exc:
        return admin_error(request, 400, "Bad filter", str(exc))
    return admin_render(request, "admin/invoices.html", status=status, active="invoices", rows=rows, shown=shown,
                        statuses=invoices.STATUSES, error=error, notices=_done(request, REFUND_NOTICES),
                        is_admin=_is_admin(request), paypal=request.app[PAYPAL] is not None,
                        # one idempotency key per refund form shown: submitting it twice refunds once
                        keys={r.id: secrets.token_urlsafe(16) for r in rows if r.refundable > 0},
                        **_page_urls(PREFIX + "/invoices", shown, "before", next_before, before_id))


async def invoices_page(request: web.Request) -> web.StreamResponse:
    return await _invoices_page(request)


async def invoice_refund(request: web.Request) -> web.StreamResponse:
    """Admin: refund a paid invoice through PayPal (all that is left, or an amount), then record
    the debit with its audit record. The form's key is PayPal's request id: a double-submitted
    form gets PayPal's first refund back, and the core finds its debit (refunded once)."""
    invoice_id = int(request.match_info["invoice_id"])
    form = await request.post()
    amount_text = str(form.get("amount", "")).strip()[:20]
    key = str(form.get("key", ""))
    paypal = request.app[PAYPAL]
    try:
        if paypal is None:
            raise InvalidInput("refund: PayPal is not configured, so the console cannot refund (nothing was changed)")
        if not _FORM_KEY.fullmatch(key):
            raise InvalidInput("key: the form has no valid idempotency key; reload the page")
        amount = parse_amount(amount_text, field="amount", decimals=2, allow_negative=False) if amount_text else None
        facts = await request_refund(request.app[CORE], paypal, invoice_id, amount,
                                     request_id=f"console-refund-{key}")
        change = await console.record_refund(request.app[CORE], actor_of(request), facts,
                                             str(form.get("reason", ""))[:400])
    except NotFound:
        return admin_error(request, 404, "Not found", f"There is no invoice {invoice_id}.")
    except (InvalidInput, CheckoutError) as exc:
        return await _invoices_page(request, status=400, error=f"Invoice {invoice_id}: {exc}")
    if change.outcome != "refunded":
        return await _invoices_page(request, status=409, error=f"Invoice {invoice_id}: {change.message}")
    log.info("console refund of invoice %s (%s) by %s: %s", invoice_id, format_amount(facts.amount or 0),
             operator_of(request).email, change.message)
    raise web.HTTPSeeOther(f"{PREFIX}/invoices?done={'refunded' if change.changed else 'replayed'}")


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(PREFIX + "/packages", packages_page)
    r.add_get(PREFIX + f"/packages/{{name:{PACKAGE_NAME}}}", package_page)
    r.add_post(PREFIX + f"/packages/{{name:{PACKAGE_NAME}}}/set", package_set)
    r.add_get(PREFIX + "/dids", dids_page)
    r.add_get(PREFIX + f"/dids/{{e164:{DID_NUMBER}}}", did_page)
    r.add_post(PREFIX + f"/dids/{{e164:{DID_NUMBER}}}/assign", did_assign)
    r.add_post(PREFIX + f"/dids/{{e164:{DID_NUMBER}}}/release", did_release)
    r.add_get(PREFIX + "/invoices", invoices_page)
    r.add_post(PREFIX + f"/invoices/{{invoice_id:{INVOICE_ID}}}/refund", invoice_refund)


__all__ = ["add_routes", "did_path"]
