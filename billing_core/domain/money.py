"""Money: integer micro-units (1e-6 of the currency) inside, ``Decimal`` only at the edges.

Every amount the project stores or adds up is an ``int`` of micro-units. Text from the outside
(CLI arguments, CSV cells, HTML forms, PayPal JSON) goes through :func:`parse_amount`, which is strict
on purpose: a typo in a rate deck must never become a silent zero or a float.
"""
from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

from .errors import InvalidInput

MICRO = 1_000_000
"""Micro-units in one currency unit."""

CUSTOMER_DECIMALS = 2
"""Customer-facing amounts (credits, top-ups, thresholds) allow cents only."""

RATE_DECIMALS = 6
"""Rates and fees allow micro-unit precision."""

DEFAULT_CURRENCY = "CAD"

STORAGE_MIN = -(2**63)
STORAGE_MAX = 2**63 - 1
"""Every amount is stored as a signed 64-bit integer of micro-units (SQL ``BIGINT``): about
±9.2 trillion currency units. Anything outside is refused before it is written."""

INTEGER_MAX = 2**31 - 1
"""The largest value of the ``Integer`` columns (ids, ``max_calls``): PostgreSQL's INTEGER is 32-bit."""

_AMOUNT_RE = re.compile(r"^([+-]?)([0-9]+)(?:\.([0-9]+))?$")


class AmountError(InvalidInput):
    """A piece of text is not an acceptable amount; the message names the field. (An
    :class:`InvalidInput`, so every layer that reports bad input reports this one too.)"""

    def __init__(self, field: str, text: object, why: str):
        self.field = field
        self.text = text
        self.why = why
        super().__init__(f"{field}: {why} (got {text!r})")


def parse_amount(
    text: str,
    *,
    field: str = "amount",
    decimals: int = CUSTOMER_DECIMALS,
    allow_negative: bool = True,
) -> int:
    """Parse ``text`` (e.g. ``"12.5"``, ``"-1.00"``) into micro-units.

    Rejects anything that is not plain decimal notation: ``abc``, ``NaN``, ``Infinity``, ``1e3``,
    empty text, thousands separators, and more than ``decimals`` digits after the point.
    """
    if not isinstance(text, str):
        raise AmountError(field, text, "must be a decimal number such as 12.50")
    stripped = text.strip()
    if not stripped:
        raise AmountError(field, text, "is empty; expected a decimal number such as 12.50")
    m = _AMOUNT_RE.match(stripped)
    if not m:
        raise AmountError(field, text, "is not a plain decimal number such as 12.50")
    sign, whole, frac = m.group(1), m.group(2), m.group(3) or ""
    if len(frac) > decimals:
        raise AmountError(field, text, f"has more than {decimals} decimal places")
    if len(whole) > 12:
        raise AmountError(field, text, "is too large")
    micro = int(whole) * MICRO + int((frac + "000000")[:6])
    if sign == "-":
        micro = -micro
    if micro < 0 and not allow_negative:
        raise AmountError(field, text, "must not be negative")
    return micro


def check_storage_range(micro: int, *, field: str = "amount") -> int:
    """``micro`` when it fits the storage range (BIGINT micro-units), else :class:`AmountError`
    naming ``field``: the one range check for every amount, and every balance an amount leads to,
    before it is written (a raw OverflowError from the driver is no answer for an operator)."""
    if not STORAGE_MIN <= micro <= STORAGE_MAX:
        raise AmountError(field, format_amount(micro),
                          f"is beyond what can be stored (at most {format_amount(STORAGE_MAX)} in magnitude)")
    return micro


def to_decimal(micro: int) -> Decimal:
    """Micro-units as an exact ``Decimal`` (for edges that want one, e.g. PayPal JSON)."""
    return Decimal(micro).scaleb(-6)


def from_decimal(value: Decimal, *, field: str = "amount", decimals: int = RATE_DECIMALS) -> int:
    """An exact ``Decimal`` into micro-units; refuses non-finite values and excess precision."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise AmountError(field, value, "must be a finite decimal number")
    scaled = value.scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise AmountError(field, value, f"has more than {decimals} decimal places")
    return int(value.scaleb(6))


def format_amount(micro: int, *, min_decimals: int = 2) -> str:
    """Display: at least two decimals, further digits only when non-zero.

    ``4_000_000`` → ``"4.00"``, ``13_750`` → ``"0.01375"``, ``-1_500_000`` → ``"-1.50"``.
    """
    sign = "-" if micro < 0 else ""
    whole, frac = divmod(abs(int(micro)), MICRO)
    digits = f"{frac:06d}".rstrip("0")
    if len(digits) < min_decimals:
        digits = digits.ljust(min_decimals, "0")
    return f"{sign}{whole}.{digits}"


def format_customer(micro: int) -> str:
    """Exactly two decimals, for emails and customer pages (e.g. ``4.00``).

    Rounds toward −∞: a balance of 4.9975 shows as 4.99, never as 5.00 — which would read as "not
    below the 5.00 threshold" in a low-balance email — and a customer is never told they have a
    cent they do not have.
    """
    d = to_decimal(micro).quantize(Decimal("0.01"), rounding="ROUND_FLOOR")
    return f"{d:.2f}"


def div_ceil(numerator: int, denominator: int) -> int:
    """Integer division rounded towards +infinity (denominator > 0)."""
    return -((-numerator) // denominator)


__all__ = [
    "MICRO",
    "CUSTOMER_DECIMALS",
    "RATE_DECIMALS",
    "DEFAULT_CURRENCY",
    "AmountError",
    "STORAGE_MIN",
    "STORAGE_MAX",
    "INTEGER_MAX",
    "check_storage_range",
    "parse_amount",
    "to_decimal",
    "from_decimal",
    "format_amount",
    "format_customer",
    "div_ceil",
    "ROUND_CEILING",
]
