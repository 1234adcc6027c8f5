"""Deck versions (issue 19): which version of a plan's deck is in effect at an instant, and the
in-memory cache both authorize drivers share (pure: the drivers do the reads it asks for).

* Every ``plan import`` stores a new, immutable version of the plan's deck, effective at a time
  (now unless ``--effective TIME``; a plan's first deck from the beginning of time). The version
  in effect at an instant is the one with the latest ``effective_at`` at or before it; of two
  effective at the same instant, the higher version. A version scheduled for later takes over at
  its time with no process having to notice anything.
* A ``--correction`` effective at TIME replaces, from TIME on, what was in effect: every version
  imported before it that took effect between TIME and the correction's import is *superseded*
  (never in effect again). Versions scheduled for after the correction's import stay scheduled: a
  correction fixes the past and present, it does not cancel a carrier's announced deck.
* A plan's deck before this existed is version 1, effective from :data:`BEGINNING_OF_TIME`.
* Versions never change once written, so their rate tables are cached for ever (a few at a time);
  the list of a plan's versions is read again when the plan's generation (``plans.version``,
  bumped by every import) moves.
"""
from __future__ import annotations

from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .rating import ALWAYS, MINUTES_PER_DAY, Period, Rate, RateTable

BEGINNING_OF_TIME = -(2 ** 62)
"""``effective_at`` of a version in effect since before any call (epoch ms; shown as null)."""

ALL_DAYS_MASK = 0b111_1111


def days_mask(days: Iterable[int]) -> int:
    """Weekdays (Monday = 0) → the ``rates.days`` bit mask (Monday = bit 0)."""
    return sum(1 << d for d in set(days))


def period_of(mask: int, start_min: int, end_min: int) -> Period:
    """A stored row's period (``rates.days``, ``start_min``, ``end_min``)."""
    if mask == ALL_DAYS_MASK and start_min == 0 and end_min == MINUTES_PER_DAY:
        return ALWAYS
    return Period(frozenset(d for d in range(7) if mask >> d & 1), start_min, end_min)


@dataclass(frozen=True, slots=True)
class DeckVersion:
    version: int
    effective_at: int
    timezone: str
    correction: bool = False
    rate_count: int = 0
    created_at: int = 0


class PlanVersions:
    """The versions of one plan, as of one generation of the plan."""

    __slots__ = ("generation", "versions", "_effective")

    def __init__(self, generation: int, versions: Iterable[DeckVersion]):
        self.generation = generation
        everything = list(versions)
        gone = superseded(everything)
        self.versions = tuple(sorted((v for v in everything if v.version not in gone),
                                     key=lambda v: (v.effective_at, v.version)))
        self._effective = [v.effective_at for v in self.versions]

    def at(self, at_ms: int) -> DeckVersion | None:
        """The version in effect at ``at_ms``, or None before the first takes effect."""
        i = bisect_right(self._effective, at_ms) - 1
        return self.versions[i] if i >= 0 else None


def superseded(versions: Iterable[DeckVersion]) -> dict[int, int]:
    """{version: the correction that supersedes it} (see the module's rules)."""
    versions = list(versions)
    out: dict[int, int] = {}
    for c in sorted((v for v in versions if v.correction), key=lambda v: v.version):
        for v in versions:
            if v.version < c.version and c.effective_at <= v.effective_at <= c.created_at:
                out.setdefault(v.version, c.version)  # the first correction that replaced it
    return out


def version_from_row(row: Mapping[str, Any]) -> DeckVersion:
    return DeckVersion(row["version"], row["effective_at"], row["timezone"], bool(row["correction"]),
                       row["rate_count"], row["created_at"])


def table_from_rows(version: DeckVersion, rows: Iterable[Mapping[str, Any]]) -> RateTable:
    """The stored rows of one version (``rates`` columns) → its :class:`RateTable`."""
    by_prefix: dict[str, list[tuple[Period, Rate]]] = {}
    for r in rows:
        rate = Rate(r["prefix"], r["rate_per_min"], r["connect_fee"], r["initial_increment"], r["increment"],
                    r["description"])
        by_prefix.setdefault(r["prefix"], []).append((period_of(r["days"], r["start_min"], r["end_min"]), rate))
    entries: dict[str, Rate | tuple[tuple[Period, Rate], ...]] = {
        prefix: (rows_[0][1] if len(rows_) == 1 and rows_[0][0] == ALWAYS else tuple(rows_))
        for prefix, rows_ in by_prefix.items()
    }
    return RateTable(entries, version=version.version, zone=version.timezone)


LOAD_VERSIONS = "versions"
"""What :meth:`DeckCache.need` asks for when the plan's list of versions must be read."""


class DeckCache:
    """Per process: each plan's versions (by generation) and the rate tables of recent versions.

    A driver resolves a (plan, generation, instant) with :meth:`need` until it answers None, doing
    the read it asks for (:data:`LOAD_VERSIONS`, or a version number whose rows to read) and handing
    the rows to :meth:`put_versions` / :meth:`put_rates`; then :meth:`table_at` answers.
    """

    def __init__(self, max_tables: int = 16):
        self._plans: dict[int, PlanVersions] = {}
        self._tables: OrderedDict[tuple[int, int], RateTable] = OrderedDict()
        self._max_tables = max_tables

    def need(self, plan_id: int, generation: int, at_ms: int) -> str | int | None:
        plan = self._plans.get(plan_id)
        # A list read at a later generation serves a transaction that saw an earlier one (versions
        # are only ever added): two transactions on either side of an import never take turns
        # re-reading it.
        if plan is None or plan.generation < generation:
            return LOAD_VERSIONS
        current = plan.at(at_ms)
        if current is None or (plan_id, current.version) in self._tables:
            return None
        return current.version

    def version_at(self, plan_id: int, at_ms: int) -> DeckVersion | None:
        plan = self._plans.get(plan_id)
        return plan.at(at_ms) if plan is not None else None

    def put_versions(self, plan_id: int, generation: int, rows: Iterable[Mapping[str, Any]]) -> None:
        current = self._plans.get(plan_id)
        if current is None or current.generation <= generation:
            self._plans[plan_id] = PlanVersions(generation, (version_from_row(r) for r in rows))

    def put_rates(self, plan_id: int, version: int, rows: Iterable[Mapping[str, Any]]) -> None:
        plan = self._plans[plan_id]
        info = next(v for v in plan.versions if v.version == version)
        self._tables[(plan_id, version)] = table_from_rows(info, rows)
        while len(self._tables) > self._max_tables:
            self._tables.popitem(last=False)

    def table_at(self, plan_id: int, generation: int, at_ms: int) -> RateTable | None:
        """The table of the version in effect at ``at_ms`` (None: no version in effect yet).
        Call after :meth:`need` answered None."""
        current = self._plans[plan_id].at(at_ms)
        if current is None:
            return None
        key = (plan_id, current.version)
        table = self._tables[key]
        self._tables.move_to_end(key)
        return table
