"""Dialled numbers → E.164, and the emergency-number test. Pure (phonenumbers is pure computation)."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import phonenumbers

DEFAULT_HOME_REGION = "CA"
DEFAULT_EMERGENCY_NUMBERS = frozenset({"911", "933"})


@dataclass(frozen=True, slots=True)
class Number:
    """A dialled number after normalisation."""

    e164: str
    """With the leading ``+`` (e.g. ``+15145550100``)."""

    @property
    def digits(self) -> str:
        """E.164 digits without ``+``, what rate-deck prefixes match against."""
        return self.e164[1:]


def _clean(raw: str) -> str:
    return "".join(ch for ch in raw.strip() if ch not in " -.()")


def is_emergency(raw: str, emergency_numbers: frozenset[str] | set[str] = DEFAULT_EMERGENCY_NUMBERS) -> bool:
    """True when ``raw`` is exactly one of the emergency numbers (after removing separators)."""
    return _clean(raw or "") in emergency_numbers


@lru_cache(maxsize=65_536)  # pure and hot (every authorize): the same numbers are dialled again and again
def normalise(raw: str, home_region: str = DEFAULT_HOME_REGION) -> Number | None:
    """``011``+CC+number, ``1``+NPA+number, 10-digit NANP, ``+E.164`` → :class:`Number`.

    Returns None for anything that cannot be a phone number (a deny reason, not an exception).
    """
    if not isinstance(raw, str):
        return None
    text = _clean(raw)
    if not text or len(text) > 20:
        return None
    body = text[1:] if text.startswith("+") else text
    if not body.isdigit():
        return None
    try:
        parsed = phonenumbers.parse(text, home_region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return Number(phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164))
