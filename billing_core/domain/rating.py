"""The billing convention — the one module both the cost of a call and its maximum duration use.

* Talk time is measured in milliseconds from answer to hangup.
* Billable seconds = talk rounded to the nearest whole second, exactly 500 ms rounding down.
* With initial increment ``I`` and increment ``N``: billed = 0 if t = 0; ``I`` if t ≤ I;
  else ``I + ceil((t − I) / N) · N``.
* cost = connect_fee + rate_per_min · billed / 60, rounded **up** to the micro-unit; a call with
  0 billed seconds (unanswered, or answered for under half a second) costs 0.
* ``max_talk_seconds(available, rate)`` = the largest whole t with cost(t) ≤ available, capped.

Because :func:`max_talk_seconds` is derived from the same :func:`cost`, the gate's cut-off and the
final charge can never disagree: a call cut at its max talk time always costs ≤ what was held.

Periods (rates by weekday and time of day; issue 19)
----------------------------------------------------
* A deck row may apply only on some ``days`` (Monday … Sunday) from ``start`` (inclusive) to
  ``end`` (exclusive) in minutes of the local day, ``end`` at most 24:00; a window never wraps past
  midnight (write two rows). Local means the wall clock of the plan's IANA zone
  (:data:`DEFAULT_TIMEZONE` unless the plan says otherwise). The rows of one prefix cover the whole
  week exactly once (:class:`RateSchedule` refuses a gap or an overlap; the deck parser names the
  line and column first). A row without periods applies always: an old deck is one period a prefix.
* The row in effect when the call starts gives the connect fee, the initial increment and the
  increment: the increments of a call never change mid-call.
* Each billed increment (the initial one, then each increment) is priced at ``rate_per_min`` of
  the period in effect at the instant it starts: the instant is turned into the zone's wall time
  (so a DST change is just another instant: 02:00–03:00 does not exist on a spring-forward day,
  and 01:00–02:00 comes twice on a fall-back day).
* cost = connect_fee + (Σ rate_per_minᵢ · secondsᵢ) / 60, rounded **up** to the micro-unit
  **once**, for the whole call: with one period this is exactly :func:`cost` above (the same
  rounding, never a micro-unit per increment more). A call of 0 billed seconds costs 0.
* The segments of a priced call (:class:`Segment`: the increments in a row at one rate) carry the
  cumulative rounding: segment k costs ceil(Sₖ/60) − ceil(Sₖ₋₁/60), Sₖ the running sum, the first
  segment with the connect fee; so the segments add up to the cost exactly (the sidecar's chunks
  are differences of cumulative costs in the same way).
* ``period_max_talk_seconds`` is the largest whole t ≤ cap with cost(t) ≤ available, computed by
  walking period boundaries and solving each constant-rate stretch arithmetically.

Pinned example: peak 0.02/min (08:00–18:00 mon-fri), off-peak 0.01/min, initial increment 60,
increment 60, no connect fee. A call starting Tuesday 17:59:30 local that talks 120 s costs
0.02 + 0.01 = 0.03 (its first increment starts at peak, its second at 18:00:30, off-peak); with
0.025 available its max talk is 60 s, with 0.03 it is 120 s.
"""
from __future__ import annotations

import json
from bisect import bisect_right
from dataclasses import dataclass
from functools import lru_cache
from datetime import datetime
from typing import Iterable, Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput
from .money import div_ceil


@dataclass(frozen=True, slots=True)
class Rate:
    """One row of a rate deck (amounts in micro-units)."""

    prefix: str
    """E.164 digits without ``+`` this rate applies to (longest match wins)."""
    rate_per_min: int
    """Price of one minute of talk, micro-units."""
    connect_fee: int = 0
    """Charged once when an answered call has at least one billed second, micro-units."""
    initial_increment: int = 60
    """Seconds billed for any call up to this long."""
    increment: int = 60
    """Billing step after the initial increment, seconds."""
    description: str = ""


def billable_seconds(talk_ms: int) -> int:
    """Talk milliseconds → whole billable seconds; 500 ms rounds down, 501 ms rounds up."""
    if talk_ms <= 0:
        return 0
    whole, rem = divmod(int(talk_ms), 1000)
    return whole + (1 if rem > 500 else 0)


def billed_seconds(seconds: int, initial_increment: int, increment: int) -> int:
    """Billable seconds → billed seconds under the increments."""
    if seconds <= 0:
        return 0
    if seconds <= initial_increment:
        return initial_increment
    return initial_increment + div_ceil(seconds - initial_increment, increment) * increment


def cost(seconds: int, rate: Rate) -> int:
    """Cost in micro-units of ``seconds`` billable seconds under ``rate`` (rounded up)."""
    billed = billed_seconds(seconds, rate.initial_increment, rate.increment)
    if billed == 0:
        return 0
    return rate.connect_fee + div_ceil(rate.rate_per_min * billed, 60)


def cost_of_talk(talk_ms: int, rate: Rate) -> int:
    """Cost of a call that talked ``talk_ms`` milliseconds."""
    return cost(billable_seconds(talk_ms), rate)


def max_talk_seconds(available: int, rate: Rate, *, cap: int) -> int:
    """The largest whole t ≤ ``cap`` with ``cost(t, rate) ≤ available``.

    0 means not even the first increment (plus connect fee) can be paid. With nothing available
    (≤ 0) the answer is 0 even at a free rate: no money, no call.
    """
    if cap <= 0 or available <= 0:
        return 0
    budget = available - rate.connect_fee
    if budget < 0:
        return 0
    if rate.rate_per_min == 0:
        return cap
    # ceil(r·b/60) ≤ budget  ⇔  r·b/60 ≤ budget (budget is an integer)  ⇔  b ≤ budget·60 / r
    max_billed = (budget * 60) // rate.rate_per_min
    first = rate.initial_increment
    if max_billed < first:
        return 0
    steps = (max_billed - first) // rate.increment
    return min(first + steps * rate.increment, cap)


def seconds_covered(amount: int, rate: Rate, *, cap: int) -> int:
    """Alias of :func:`max_talk_seconds` that reads better when sizing a hold."""
    return max_talk_seconds(amount, rate, cap=cap)


def round_up_to_increment(seconds: int, rate: Rate) -> int:
    """The billed length of ``seconds`` of talk (a hold bought in whole increments)."""
    return billed_seconds(seconds, rate.initial_increment, rate.increment)


# --- periods: rates by weekday and time of day --------------------------------------------------

DEFAULT_TIMEZONE = "America/Toronto"
"""The zone of a plan's periods unless the plan names another."""

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
"""Day names as a deck writes them; index = ``datetime.weekday()`` (Monday = 0)."""

MINUTES_PER_DAY = 24 * 60
_DAY_MS = 86_400_000
_WEEK_MS = 7 * _DAY_MS
_EPOCH_WEEKDAY = 3
"""1970-01-01, the epoch's first day, was a Thursday."""


def load_zone(name: str, *, field: str = "timezone") -> ZoneInfo:
    """The IANA zone ``name`` (e.g. ``America/Toronto``); :class:`InvalidInput` naming ``field``
    when there is no such zone (a path, a blank, a typo)."""
    try:
        if not isinstance(name, str) or not name or "\x00" in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidInput(f"{field}: no such time zone (got {name!r}); expected an IANA name such as "
                           f"{DEFAULT_TIMEZONE}") from None


def format_minute(minute: int) -> str:
    """Minutes after midnight → ``HH:MM`` (1440 → ``24:00``)."""
    return f"{minute // 60:02d}:{minute % 60:02d}"


@dataclass(frozen=True, slots=True)
class Period:
    """When a deck row applies: on ``days`` from ``start`` to ``end`` local time."""

    days: frozenset[int] = frozenset(range(7))
    """Weekdays, Monday = 0 … Sunday = 6."""
    start: int = 0
    """Minutes after local midnight, inclusive."""
    end: int = MINUTES_PER_DAY
    """Minutes after local midnight, exclusive; 1440 is 24:00 (a window never wraps past midnight)."""

    def __post_init__(self) -> None:
        if not self.days or not self.days <= frozenset(range(7)):
            raise ValueError(f"days must be weekdays 0-6 (got {sorted(self.days)})")
        if not 0 <= self.start < self.end <= MINUTES_PER_DAY:
            raise ValueError(f"need 00:00 <= start < end <= 24:00 (got {self.start}, {self.end})")

    def describe(self) -> str:
        """E.g. ``Mon,Tue 08:00-18:00``."""
        return f"{_days_text(self.days)} {format_minute(self.start)}-{format_minute(self.end)}"


ALWAYS = Period()
"""Every day, all day: a row without periods."""


def _days_text(days: Iterable[int]) -> str:
    """E.g. ``Mon-Fri,Sun``: runs of days as ranges, as a deck writes them."""
    runs: list[list[int]] = []
    for d in sorted(set(days)):
        if runs and runs[-1][-1] == d - 1:
            runs[-1].append(d)
        else:
            runs.append([d])
    return ",".join(DAY_NAMES[r[0]].capitalize() + (f"-{DAY_NAMES[r[-1]].capitalize()}" if len(r) > 1 else "")
                    for r in runs)


@dataclass(frozen=True, slots=True)
class CoverageProblem:
    """Why periods do not cover the week exactly once (see :func:`coverage_problem`)."""

    index: int
    """The period (position in the list given) to name."""
    column: str
    """``days``, ``start`` or ``end``: the column of that row to fix."""
    message: str


def coverage_problem(periods: list[Period], names: list[str] | None = None) -> CoverageProblem | None:
    """The first reason ``periods`` do not cover the week exactly once, or None.

    An overlap is reported at the later period of the two (in list order), by the column that
    runs into the other: ``start`` when it starts inside the other's window, ``end`` when it ends
    inside it, else ``days`` (its window covers the other's on a day it should not apply). A gap
    inside a day is reported at the period that ends where the gap starts (``end``), a gap at the
    start of a day at the period that starts where it ends (``start``), a day nothing covers at the
    last period (``days``). ``names`` (e.g. ``"line 7"``) are how messages refer to other periods.
    """
    names = names or [f"period {i + 1}" for i in range(len(periods))]
    by_day: list[list[int]] = [[] for _ in range(7)]
    for i, p in enumerate(periods):
        for d in sorted(p.days):
            for j in by_day[d]:
                q = periods[j]
                if p.start < q.end and q.start < p.end:
                    if q.start < p.start < q.end:
                        column = "start"
                    elif q.start < p.end < q.end:
                        column = "end"
                    else:
                        column = "days"
                    both = f"{format_minute(max(p.start, q.start))}-{format_minute(min(p.end, q.end))}"
                    return CoverageProblem(i, column, f"overlaps {names[j]} on {DAY_NAMES[d].capitalize()} {both} "
                                                      f"({p.describe()} and {q.describe()})")
            by_day[d].append(i)
    for d in range(7):
        if not by_day[d]:
            missing = [e for e in range(7) if not by_day[e]]
            return CoverageProblem(len(periods) - 1, "days", f"no rate on {_days_text(missing)}: no period "
                                                              f"covers {'that day' if len(missing) == 1 else 'those days'}")
        reached, last = 0, None
        for i in sorted(by_day[d], key=lambda k: periods[k].start):
            p = periods[i]
            if p.start > reached:
                gap = f"{DAY_NAMES[d].capitalize()} {format_minute(reached)}-{format_minute(p.start)}"
                if last is None:
                    return CoverageProblem(i, "start", f"no rate on {gap}: the first period of the day starts "
                                                       f"at {format_minute(p.start)}")
                return CoverageProblem(last, "end", f"no rate on {gap}: this period ends at "
                                                    f"{format_minute(reached)}, the next starts at "
                                                    f"{format_minute(p.start)} ({names[i]})")
            reached, last = p.end, i
        if reached < MINUTES_PER_DAY:
            gap = f"{DAY_NAMES[d].capitalize()} {format_minute(reached)}-24:00"
            return CoverageProblem(last, "end", f"no rate on {gap}: the last period of the day ends at "
                                                f"{format_minute(reached)}")
    return None


@dataclass(frozen=True, slots=True)
class Segment:
    """Consecutive billed increments of a call at one rate (quote's ``segments``)."""

    start_ms: int
    """The instant its first increment starts, epoch ms."""
    rate_per_min: int
    seconds: int
    """Billed seconds of its increments."""
    cost: int
    """Its share of the call's cost (cumulative rounding; the first holds the connect fee)."""


@dataclass(frozen=True, slots=True)
class PricedTalk:
    cost: int
    billed_seconds: int
    segments: tuple[Segment, ...]


class RateSchedule:
    """The rows of one prefix over the week, in a time zone: which row is in effect at an instant,
    and the stretches of constant rate from an instant on.

    Built once per prefix (the deck cache keeps it); lookups are a bisect on the week position.
    """

    __slots__ = ("zone", "one_price", "rows", "_flat", "_row_starts", "_row_rates", "_starts", "_ends", "_prices")

    def __init__(self, rows: Iterable[tuple[Period, Rate]], zone: ZoneInfo | str = DEFAULT_TIMEZONE):
        rows = list(rows)
        self.rows: tuple[tuple[Period, Rate], ...] = tuple(rows)
        self.zone = zone if isinstance(zone, ZoneInfo) else load_zone(zone)
        problem = coverage_problem([p for p, _ in rows])
        if problem is not None:
            raise ValueError(f"the periods of a prefix must cover the week once: {problem.message}")
        distinct = {rate for _, rate in rows}
        # One row for the whole week (every old deck): no clock needed at all.
        self._flat: Rate | None = next(iter(distinct)) if len(distinct) == 1 else None
        spans = sorted(((d * _DAY_MS + p.start * 60_000, d * _DAY_MS + p.end * 60_000, rate)
                        for p, rate in rows for d in p.days), key=lambda span: span[0])
        self._row_starts = [s for s, _, _ in spans]
        self._row_rates = [r for _, _, r in spans]
        # Stretches only care about the per-minute price: merge neighbours that share it.
        starts: list[int] = []
        ends: list[int] = []
        prices: list[int] = []
        for s, e, rate in spans:
            if prices and prices[-1] == rate.rate_per_min and ends[-1] == s:
                ends[-1] = e
            else:
                starts.append(s)
                ends.append(e)
                prices.append(rate.rate_per_min)
        self._starts, self._ends, self._prices = starts, ends, prices
        # One rate_per_min all week (every old deck): a call is priced by today's cost().
        self.one_price = len(prices) == 1

    @classmethod
    def always(cls, rate: Rate, zone: ZoneInfo | str = DEFAULT_TIMEZONE) -> RateSchedule:
        return cls([(ALWAYS, rate)], zone)

    def _offset_s(self, epoch_s: int) -> int:
        return int(datetime.fromtimestamp(epoch_s, self.zone).utcoffset().total_seconds())

    def _week_position(self, at_ms: int) -> tuple[int, int]:
        """(ms since local Monday 00:00, UTC offset in s) of the instant ``at_ms``."""
        epoch_s, ms = divmod(at_ms, 1000)
        offset = self._offset_s(epoch_s)
        return ((epoch_s + offset) * 1000 + ms + _EPOCH_WEEKDAY * _DAY_MS) % _WEEK_MS, offset

    def rate_at(self, at_ms: int) -> Rate:
        """The row in effect at ``at_ms`` (epoch ms)."""
        if self._flat is not None:
            return self._flat
        position, _ = self._week_position(at_ms)
        return self._row_rates[bisect_right(self._row_starts, position) - 1]

    def stretches(self, at_ms: int) -> Iterator[tuple[int, int, int]]:
        """(start ms, end ms, rate_per_min) of consecutive constant-rate stretches from ``at_ms``,
        for ever: each ends at a period boundary or a change of the zone's UTC offset (after which
        the wall clock, and so the period, is looked up again)."""
        t = at_ms
        while True:
            position, offset = self._week_position(t)
            i = bisect_right(self._starts, position) - 1
            end = t + self._ends[i] - position
            last_s = (end - 1) // 1000
            if self._offset_s(last_s) != offset:
                # The offset changes inside (one change: zones do not change twice within the
                # week a stretch lasts at most): find the first second of the new offset.
                lo, hi = t // 1000, last_s
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._offset_s(mid) == offset:
                        lo = mid
                    else:
                        hi = mid
                end = hi * 1000
            yield t, end, self._prices[i]
            t = end


def _increments_before(elapsed_ms: int, initial_ms: int, increment_ms: int) -> int:
    """How many increments of a call start before ``elapsed_ms`` after its start."""
    if elapsed_ms <= 0:
        return 0
    if elapsed_ms <= initial_ms:
        return 1
    return 1 + div_ceil(elapsed_ms - initial_ms, increment_ms)


def _increment_offset(k: int, rate: Rate) -> int:
    """Seconds from a call's start to the start of its increment ``k`` (0 = the initial one)."""
    return 0 if k == 0 else rate.initial_increment + (k - 1) * rate.increment


def period_cost(seconds: int, schedule: RateSchedule, start_ms: int) -> PricedTalk:
    """Cost and segments of ``seconds`` billable seconds of a call starting at ``start_ms``."""
    row = schedule.rate_at(start_ms)
    billed = billed_seconds(seconds, row.initial_increment, row.increment)
    if billed == 0:
        return PricedTalk(0, 0, ())
    if schedule.one_price:
        total = cost(seconds, row)
        return PricedTalk(total, billed, (Segment(start_ms, row.rate_per_min, billed, total),))
    count = 1 + (billed - row.initial_increment) // row.increment
    initial_ms, increment_ms = row.initial_increment * 1000, row.increment * 1000
    runs: list[list[int]] = []  # [start_ms, rate_per_min, seconds]
    k = 0
    for _, end, price in schedule.stretches(start_ms):
        upto = min(_increments_before(end - start_ms, initial_ms, increment_ms), count)
        if upto > k:
            length = _increment_offset(upto, row) - _increment_offset(k, row)
            if runs and runs[-1][1] == price:
                runs[-1][2] += length
            else:
                runs.append([start_ms + _increment_offset(k, row) * 1000, price, length])
            k = upto
        if k >= count:
            break
    segments = []
    running = charged = 0
    for at, price, length in runs:
        running += price * length
        share = div_ceil(running, 60) - charged
        charged += share
        segments.append(Segment(at, price, length, share + (row.connect_fee if not segments else 0)))
    return PricedTalk(row.connect_fee + charged, billed, tuple(segments))


def period_max_talk_seconds(available: int, schedule: RateSchedule, start_ms: int, *, cap: int) -> int:
    """The largest whole t ≤ ``cap`` with ``period_cost(t, schedule, start_ms).cost ≤ available``.

    Walks the period boundaries; within a stretch of one rate the affordable increments are one
    division. Like :func:`max_talk_seconds`: 0 when nothing is available, even at a free rate.
    """
    row = schedule.rate_at(start_ms)
    if schedule.one_price:
        return max_talk_seconds(available, row, cap=cap)
    if cap <= 0 or available <= 0:
        return 0
    budget = available - row.connect_fee
    if budget < 0:
        return 0
    # ceil(S/60) ≤ budget ⇔ S ≤ 60·budget (budget an integer), S = Σ rate_per_min · seconds.
    room = budget * 60
    initial_ms, increment_ms = row.initial_increment * 1000, row.increment * 1000
    needed = _increments_before(cap * 1000, initial_ms, increment_ms)  # the increments of t = cap
    k = 0
    for _, end, price in schedule.stretches(start_ms):
        upto = min(_increments_before(end - start_ms, initial_ms, increment_ms), needed)
        if upto > k and price > 0:
            if k == 0:
                if price * row.initial_increment > room:
                    return 0
                room -= price * row.initial_increment
                k = 1
            step = price * row.increment
            affordable = min(upto - k, room // step)
            room -= affordable * step
            k += affordable
            if k < upto:
                return min(_increment_offset(k, row), cap)
        k = max(k, upto)
        if k >= needed:
            return cap
    raise AssertionError("unreachable: stretches never end")


# --- a plan's deck version in memory -----------------------------------------------------------

class RateTable:
    """One version of a plan's rate deck in memory: longest prefix first, then the period in effect.

    Prefixes are at most 15 digits (E.164), so a lookup is at most 15 dict probes. A prefix with one
    row for the whole week (every old deck) is kept as its :class:`Rate`; a prefix with periods as
    its rows, turned into a :class:`RateSchedule` on first use (building one for each of 300,000
    rows up front would cost seconds at every reload).
    """

    __slots__ = ("_rates", "_lengths", "version", "zone", "_schedules")

    def __init__(self, rates: dict[str, Rate | tuple[tuple[Period, Rate], ...]] | None = None, version: int = 0,
                 zone: ZoneInfo | str = DEFAULT_TIMEZONE):
        self._rates: dict[str, Rate | tuple[tuple[Period, Rate], ...]] = dict(rates or {})
        # Only probe the prefix lengths the deck has, longest first.
        self._lengths = tuple(sorted({len(p) for p in self._rates}, reverse=True))
        self.version = version
        self.zone = zone if isinstance(zone, ZoneInfo) else load_zone(zone)
        self._schedules: dict[str, RateSchedule] = {}

    def __len__(self) -> int:
        return len(self._rates)

    def _match(self, digits: str) -> str | None:
        get = self._rates.get
        size = len(digits)
        for n in self._lengths:
            if n <= size and get(digits[:n]) is not None:
                return digits[:n]
        return None

    def schedule(self, digits: str) -> RateSchedule | None:
        """The rows of the longest prefix of ``digits`` (E.164 without ``+``) over the week, or None."""
        prefix = self._match(digits)
        if prefix is None:
            return None
        found = self._schedules.get(prefix)
        if found is None:
            entry = self._rates[prefix]
            found = RateSchedule([(ALWAYS, entry)] if isinstance(entry, Rate) else entry, self.zone)
            self._schedules[prefix] = found
        return found

    def lookup(self, digits: str, at_ms: int | None = None) -> Rate | None:
        """The row of the longest prefix of ``digits`` in effect at ``at_ms`` (epoch ms), or None.
        Without ``at_ms`` only a prefix with one row for the whole week answers (a prefix with
        periods has no single rate)."""
        prefix = self._match(digits)
        if prefix is None:
            return None
        entry = self._rates[prefix]
        if isinstance(entry, Rate):
            return entry
        if at_ms is None:
            raise ValueError(f"prefix {prefix} has rates by period: say when (at_ms)")
        return self.schedule(digits).rate_at(at_ms)


# --- the periods of a call, copied into its session --------------------------------------------

@lru_cache(maxsize=4096)  # schedules are immutable and live with their deck's table: once each
def schedule_text(schedule: RateSchedule) -> str | None:
    """The periods of a call's prefix as text for its session (``call_sessions.rate_periods``), or
    None when the prefix has one price all week (the session's copied rate is then the whole truth).
    Only each row's ``rate_per_min`` is kept: the connect fee and increments are the start row's,
    which the session copies (:func:`session_schedule` puts them back)."""
    if schedule.one_price:
        return None
    rows = [[sum(1 << d for d in p.days), p.start, p.end, r.rate_per_min] for p, r in schedule.rows]
    return json.dumps({"tz": schedule.zone.key, "rows": rows}, separators=(",", ":"))


@lru_cache(maxsize=4096)
def session_schedule(text: str, rate: Rate) -> RateSchedule:
    """:func:`schedule_text` back into a schedule whose rows carry ``rate``'s connect fee and
    increments (the call's start row's): what settle, chunk debits and extensions price with."""
    data = json.loads(text)
    rows = [(Period(frozenset(d for d in range(7) if mask >> d & 1), start, end),
             Rate(rate.prefix, price, rate.connect_fee, rate.initial_increment, rate.increment, rate.description))
            for mask, start, end, price in data["rows"]]
    return RateSchedule(rows, data["tz"])
