"""The console's rate decks (/admin/rates): plans and their versions; upload a deck, see what it
changes against the version in effect now, and confirm to apply it (admin only).

The confirm applies exactly the deck previewed: the parsed deck stays in this process, keyed by
a random single-use token bound to the operator who uploaded it (with the file's sha256 shown on
the page), for PENDING_SECONDS at most. The core refuses the confirm if another version of the
plan was imported since the preview (the diff the operator confirmed would be wrong). `callgate
web` is one process, so the token store is a dict; a restart drops pending previews, and the
operator uploads again (nothing was written).
"""
from __future__ import annotations

import datetime as dt
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from billing_core import rate_upload
from billing_core.domain.errors import InvalidInput
from billing_core.domain.decks import BEGINNING_OF_TIME
from billing_core.domain.money import STORAGE_MAX
from billing_core.domain.rating import load_zone

from .admin_access import PREFIX, actor_of, admin_error, admin_render, max_body, operator_of
from .context import CORE

log = logging.getLogger("callgate.web.admin")

MAX_DECK_BYTES = 32 * 1024 * 1024
"""The biggest deck the console takes (a 300,000-row deck is about 15 MB); bigger: the CLI."""
PENDING_SECONDS = 15 * 60
PENDING_MAX = 20
"""Previews kept at once (each holds a parsed deck in memory); the oldest is dropped first."""


@dataclass
class Pending:
    operator_id: int | None
    deck: rate_upload.DeckPreview
    filename: str
    timezone: str | None
    effective_at: int | None
    correction: bool
    created: float


_PENDING_KEY = web.AppKey("admin_rates_pending", OrderedDict)


def _pending(app: web.Application) -> OrderedDict:
    return app[_PENDING_KEY]


def _when(ms: int | None) -> str:
    if ms is None or ms <= BEGINNING_OF_TIME:
        return "the beginning"
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


async def _rates_page(request: web.Request, *, status: int = 200, error: str = "", form: dict | None = None,
                      notices: list | None = None) -> web.Response:
    core = request.app[CORE]
    rows = await core.store.run(rate_upload.plans_overview, core.clock.now_ms())
    form = {"plan": "", "effective": "", "timezone": "", "correction": "", **(form or {})}
    return admin_render(request, "admin/rates.html", status=status, active="rates", plans=rows, error=error,
                        form=form, notices=notices or [], is_admin=operator_of(request).role == "admin",
                        at=_when, max_mb=MAX_DECK_BYTES // (1024 * 1024))


async def rates_page(request: web.Request) -> web.StreamResponse:
    done = request.query.get("done", "")
    notices = []
    if done:
        plan, _, version = done.partition(":")
        if version.isdigit():
            notices.append({"kind": "good", "text": f"Plan {plan[:64]}: version {version} imported."})
    return await _rates_page(request, notices=notices)


def _effective(text: str) -> int | None:
    """The effective time as `plan import --effective` takes it: ISO 8601 with its UTC offset."""
    text = text.strip()
    if not text:
        return None
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"effective: not a time in ISO 8601 such as 2026-03-10T08:00:00-04:00 (got {text!r})") \
            from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise InvalidInput(f"effective: needs a UTC offset such as -04:00 or Z (got {text!r})")
    ms = (when - dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)) // dt.timedelta(milliseconds=1)
    if not -STORAGE_MAX <= ms <= STORAGE_MAX:
        raise InvalidInput(f"effective: out of range (got {text!r})")
    return ms


@max_body(MAX_DECK_BYTES + 64 * 1024)
async def rates_preview(request: web.Request) -> web.StreamResponse:
    """Admin: a deck uploaded for a plan → its errors (line and column), or the diff to confirm."""
    form = await request.post()
    fields = {k: str(form.get(k, "")).strip()[:200] for k in ("plan", "effective", "timezone")}
    fields["correction"] = "on" if form.get("correction") else ""
    upload = form.get("file")
    core = request.app[CORE]
    try:
        if not isinstance(upload, web.FileField):
            raise InvalidInput("file: choose a CSV file to upload")
        data = upload.file.read()
        if not data:
            raise InvalidInput("file: the file is empty")
        effective = _effective(fields["effective"])
        zone = load_zone(fields["timezone"], field="timezone").key if fields["timezone"] else None
        correction = bool(fields["correction"])
        if correction and effective is None:
            raise InvalidInput("correction: needs an effective time (the time the corrected deck applies from)")
        if effective is not None and effective < core.clock.now_ms() and not correction:
            raise InvalidInput(f"effective: {_when(effective)} is in the past; a deck that applies to calls already "
                               "made is a correction: tick correction (then re-rate them with callgate rerate)")
        deck = await rate_upload.preview(core, fields["plan"], data)
    except InvalidInput as exc:
        return await _rates_page(request, status=400, error=str(exc), form=fields)
    pending = _pending(request.app)
    now = time.monotonic()
    for token in [t for t, p in pending.items() if now - p.created > PENDING_SECONDS]:
        del pending[token]
    while len(pending) >= PENDING_MAX:
        pending.popitem(last=False)
    token = secrets.token_urlsafe(24)
    filename = (upload.filename or "deck.csv")[:200]
    pending[token] = Pending(operator_of(request).operator_id, deck, filename, zone, effective, correction, now)
    log.info("deck preview for plan %s by %s: %s (sha256 %s)", deck.plan, operator_of(request).email,
             deck.diff.counts, deck.digest)
    return admin_render(request, "admin/rates_preview.html", active="rates", p=pending[token], d=deck.diff,
                        token=token, at=_when)


async def rates_apply(request: web.Request) -> web.StreamResponse:
    """Admin: apply the deck previewed under the form's token (once; only by who uploaded it)."""
    form = await request.post()
    token = str(form.get("token", ""))[:100]
    pending = _pending(request.app)
    p = pending.get(token)
    if p is None or p.operator_id != operator_of(request).operator_id \
            or time.monotonic() - p.created > PENDING_SECONDS:
        return admin_error(request, 409, "Preview expired",
                           "This preview is no longer available (applied already, expired, or the console "
                           "restarted). Upload the deck again; nothing was written.")
    del pending[token]  # single use: a second confirm (double click) finds nothing
    if form.get("action") == "cancel":
        raise web.HTTPSeeOther(PREFIX + "/rates")
    try:
        result = await rate_upload.apply(request.app[CORE], actor_of(request), p.deck, timezone=p.timezone,
                                         effective_at=p.effective_at, correction=p.correction)
    except InvalidInput as exc:
        return admin_error(request, 409, "Not applied", f"{exc}. Nothing was written.")
    log.info("deck applied to plan %s by %s: version %s (sha256 %s)", result["plan"], operator_of(request).email,
             result["version"], p.deck.digest)
    raise web.HTTPSeeOther(PREFIX + "/rates?" + urlencode({"done": f"{result['plan']}:{result['version']}"}))


def add_routes(app: web.Application) -> None:
    app[_PENDING_KEY] = OrderedDict()
    r = app.router
    r.add_get(PREFIX + "/rates", rates_page)
    r.add_post(PREFIX + "/rates/preview", rates_preview)
    r.add_post(PREFIX + "/rates/apply", rates_apply)


__all__ = ["add_routes"]
