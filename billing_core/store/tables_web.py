"""Client-area tables: signed-in sessions and sign-in attempts (the rate limit survives restarts).

The password hash itself lives on ``accounts.password_hash`` (core table). Only the SHA-256 of a
session token is stored, so a copy of the database cannot be replayed as a cookie.
"""
from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Index, Integer, String, Table

from .tables import metadata

web_sessions = Table(
    "web_sessions",
    metadata,
    # hex SHA-256 of the cookie's random token
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    # Synchronizer token every form of this session carries.
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", BigInteger, nullable=False),
    Column("last_seen_at", BigInteger, nullable=False),
    # Absolute end of the session (idle expiry is last_seen_at + idle timeout).
    Column("expires_at", BigInteger, nullable=False),
    Column("ip", String(64), nullable=False, default=""),
)

web_signin_attempts = Table(
    "web_signin_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    # "email" (canonical sign-in form) or "ip" (client address): each is limited on its own.
    Column("key_kind", String(8), nullable=False),
    Column("key_value", String(320), nullable=False),
    Column("succeeded", Boolean, nullable=False, default=False),
    # On "ip" rows: the (canonical) email tried, so a success clears that customer's own typos from
    # the address's count and leaves guesses at other emails counted.
    Column("email", String(320), nullable=True),
    Column("at", BigInteger, nullable=False),
    Index("ix_web_signin_attempts_key_at", "key_kind", "key_value", "at"),
)

password_resets = Table(
    "password_resets",
    metadata,
    # hex SHA-256 of the emailed token: the token itself is only in the email (and its outbox row)
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", Integer, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    # set when the token is used: a token works once
    Column("used_at", BigInteger, nullable=True),
)
