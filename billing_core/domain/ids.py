"""Ids that arrive as text (URLs, forms, PayPal's custom_id): plain ASCII decimal or nothing.

Why not ``str.isdigit()`` / ``int()``: both accept other scripts' digits (``"²".isdigit()`` is
True and ``int("٦")`` is 6), and ``int()`` takes any length, while every id column is a signed
64-bit integer. 18 digits always fit.
"""
from __future__ import annotations

import re

ID_PATTERN = "[0-9]{1,18}"
"""The same rule as an aiohttp route pattern: ``/invoices/{invoice_id:[0-9]{1,18}}``."""
_ID = re.compile(ID_PATTERN)


def plain_id(text: object) -> int | None:
    """The positive id ``text`` spells in ASCII decimal (at most 18 digits), else None."""
    if not isinstance(text, str) or not _ID.fullmatch(text):
        return None
    value = int(text)
    return value if value > 0 else None


__all__ = ["ID_PATTERN", "plain_id"]
