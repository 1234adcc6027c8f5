"""The one canonical form of a client-area sign-in email.

Stored on ``accounts.signin_email`` when a password is set and compared exactly at sign-in, so
both databases match the same way. Why not ``lower()`` in SQL: SQLite's lower() folds ASCII only,
PostgreSQL's follows its locale, and neither is Python's; an email with non-ASCII letters then
matched on one database and not on the other.
"""
from __future__ import annotations

import unicodedata


def canonical_email(email: str | None) -> str:
    """NFC (one encoding of every accented letter), surrounding spaces off, Python's lower()."""
    return unicodedata.normalize("NFC", (email or "").strip()).lower()


__all__ = ["canonical_email"]
