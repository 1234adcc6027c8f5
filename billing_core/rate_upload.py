"""Rate decks from the console (issue 20): the plans and their versions, and an uploaded deck
compared with the version in effect now (prefixes added, removed, re-priced) before it is applied.

The deck is parsed by the same strict parser as ``callgate plan import`` (the first bad row
stops it with its line and column; nothing is written) and applied by the same
:meth:`billing_core.admin.Admin.import_plan`, audited, and only if no other version of the plan
was imported since the preview (``based_on``).
"""
from __future__ import annotations

import asyncio
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from .domain.decks import PlanVersions, period_of, superseded, version_from_row
from .domain.errors import InvalidInput
from .domain.identifiers import check_ref
from .domain.money import format_amount
from .domain.ratedeck import DeckError, DeckRow, parse_deck_rows
from .domain.rating import ALWAYS, DAY_NAMES, Period, format_minute
from .operators import Actor
from .store.tables import deck_versions, plans, rates

SHOWN = 200
"""Rows of each kind of change the preview lists (the counts are always whole)."""


def plans_overview(conn: Connection, now: int) -> list[dict[str, Any]]:
    """Every plan with its versions (newest first) and the one in effect now."""
    out = []
    for plan in conn.execute(select(plans.c.id, plans.c.name).order_by(plans.c.name)).mappings():
        found = [version_from_row(r) for r in conn.execute(
            select(deck_versions).where(deck_versions.c.plan_id == plan["id"])).mappings()]
        current = PlanVersions(0, found).at(now)
        gone = superseded(found)
        out.append({"name": plan["name"], "in_effect": current.version if current else None,
                    "versions": [{"version": v.version, "effective_at": v.effective_at, "timezone": v.timezone,
                                  "correction": v.correction, "rates": v.rate_count, "imported_at": v.created_at,
                                  "in_effect": current is not None and v.version == current.version,
                                  "superseded_by": gone.get(v.version)}
                                 for v in sorted(found, key=lambda v: -v.version)]})
    return out


def _price(period: Period, rate_per_min: int, connect_fee: int, first: int, inc: int) -> str:
    text = f"{format_amount(rate_per_min)}/min"
    if connect_fee:
        text += f" + {format_amount(connect_fee)}"
    text += f" ({first}/{inc} s)"
    if period != ALWAYS:
        text = f"[{_days(period.days)} {format_minute(period.start)}-{format_minute(period.end)}] " + text
    return text


def _days(days) -> str:
    return ",".join(DAY_NAMES[d] for d in sorted(days))


def _key(period: Period) -> tuple:
    return (tuple(sorted(period.days)), period.start, period.end)


@dataclass
class DeckDiff:
    base_version: int | None  # the version in effect now (None: the plan has none)
    added: list[dict] = field(default_factory=list)
    removed: list[dict] = field(default_factory=list)
    repriced: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


@dataclass
class DeckPreview:
    """A parsed, checked deck for plan ``plan`` and its difference with the version in effect."""

    plan: str
    rows: list[DeckRow]
    digest: str  # sha256 of the uploaded bytes
    based_on: int  # the plan's latest version at preview time (0: no plan yet)
    diff: DeckDiff


def _describe(entries: list[tuple[tuple, str, str]]) -> tuple[str, str]:
    """(description, price text) of a prefix's rows, in period order."""
    entries = sorted(entries)
    return entries[0][1], "; ".join(e[2] for e in entries)


def parse_upload(data: bytes) -> list[DeckRow]:
    """A CSV file's bytes (UTF-8) → deck rows, as `plan import` reads a file; InvalidInput with
    the line and column of the first problem."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"file: not UTF-8 text (byte {exc.start + 1})") from None
    try:
        # csv's own line splitting (see `plan import`: str.splitlines would hide some control characters)
        return parse_deck_rows(io.StringIO(text, newline=""))
    except DeckError as exc:
        raise InvalidInput(str(exc)) from None


def current_deck(conn: Connection, plan: str, now: int) -> tuple[dict[str, list], int, int | None]:
    """(the rows of ``plan``'s version in effect at ``now`` by prefix, its latest version (0: no
    plan), the version in effect (None: none))."""
    plan_row = conn.execute(select(plans.c.id).where(plans.c.name == plan)).first()
    old: dict[str, list] = {}
    based_on = 0
    current = None
    if plan_row is not None:
        found = [version_from_row(r) for r in conn.execute(
            select(deck_versions).where(deck_versions.c.plan_id == plan_row.id)).mappings()]
        based_on = max((v.version for v in found), default=0)
        current = PlanVersions(0, found).at(now)
        if current is not None:
            for r in conn.execute(select(rates).where(rates.c.plan_id == plan_row.id,
                                                      rates.c.version == current.version)):
                period = period_of(r.days, r.start_min, r.end_min)
                old.setdefault(r.prefix, []).append(
                    (_key(period), r.description,
                     _price(period, r.rate_per_min, r.connect_fee, r.initial_increment, r.increment)))
    return old, based_on, current.version if current else None


def compare(plan: str, rows: list[DeckRow], digest: str, current: tuple[dict[str, list], int, int | None]
            ) -> DeckPreview:
    """The preview of parsed ``rows`` against :func:`current_deck`'s answer."""
    old, based_on, base_version = current
    new: dict[str, list] = {}
    for row in rows:
        r = row.rate
        new.setdefault(r.prefix, []).append(
            (_key(row.period), r.description,
             _price(row.period, r.rate_per_min, r.connect_fee, r.initial_increment, r.increment)))
    diff = DeckDiff(base_version=base_version)
    added = sorted(p for p in new if p not in old)
    removed = sorted(p for p in old if p not in new)
    repriced = sorted(p for p in new if p in old and
                      sorted((k, price) for k, _, price in new[p]) != sorted((k, price) for k, _, price in old[p]))
    diff.counts = {"added": len(added), "removed": len(removed), "repriced": len(repriced),
                   "unchanged": len(new) - len(added) - len(repriced), "rows": len(rows)}
    for p in added[:SHOWN]:
        desc, price = _describe(new[p])
        diff.added.append({"prefix": p, "description": desc, "new": price})
    for p in removed[:SHOWN]:
        desc, price = _describe(old[p])
        diff.removed.append({"prefix": p, "description": desc, "old": price})
    for p in repriced[:SHOWN]:
        desc, price = _describe(new[p])
        diff.repriced.append({"prefix": p, "description": desc, "old": _describe(old[p])[1], "new": price})
    return DeckPreview(plan, rows, digest, based_on, diff)


async def preview(core, plan: str, data: bytes) -> DeckPreview:
    """Parse ``data`` (in a worker thread: a 300,000-row deck takes seconds, and no transaction
    of the store waits on it), then compare it with the plan's version in effect now."""
    check_ref(plan, "plan", "a plan name is letters, digits and _.@- (max 64)")
    rows = await asyncio.to_thread(parse_upload, data)
    current = await core.store.run(current_deck, plan, core.clock.now_ms())
    return await asyncio.to_thread(compare, plan, rows, hashlib.sha256(data).hexdigest(), current)


async def apply(core, actor: Actor, deck: DeckPreview, *, timezone: str | None, effective_at: int | None,
                correction: bool) -> dict[str, Any]:
    """Import the previewed deck (as `plan import`), audited; refused if the plan changed since."""
    return await core.admin.import_plan(deck.plan, deck.rows, timezone=timezone, effective_at=effective_at,
                                        correction=correction, actor=actor, based_on=deck.based_on)
