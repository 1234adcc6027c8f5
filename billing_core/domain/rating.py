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
"""
from __future__ import annotations

from dataclasses import dataclass

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


class RateTable:
    """A plan's rate deck in memory with longest-prefix lookup.

    Prefixes are at most 15 digits (E.164), so a lookup is at most 15 dict probes.
    """

    __slots__ = ("_rates", "_lengths", "version")

    def __init__(self, rates: dict[str, Rate] | None = None, version: int = 0):
        self._rates: dict[str, Rate] = dict(rates or {})
        # Only probe the prefix lengths the deck has, longest first.
        self._lengths = tuple(sorted({len(p) for p in self._rates}, reverse=True))
        self.version = version

    def __len__(self) -> int:
        return len(self._rates)

    def lookup(self, digits: str) -> Rate | None:
        """The rate of the longest prefix of ``digits`` (E.164 without ``+``), or None."""
        get = self._rates.get
        size = len(digits)
        for n in self._lengths:
            if n <= size:
                r = get(digits[:n])
                if r is not None:
                    return r
        return None
