"""Client-area authentication: Argon2id passwords, server-side sessions, CSRF tokens, sign-in limits.

Choices:
* Passwords are hashed with Argon2id (argon2-cffi); hashing runs in a worker thread so a sign-in
  never stalls the event loop. A hash made with weaker parameters is upgraded at the next sign-in.
* The session cookie carries a random token; the database keeps only its SHA-256, so a database
  copy cannot be turned into cookies. Every sign-in makes a new session (no fixation).
* Sign-in is limited per email address and per client address, counted in the database (it
  survives restarts and is shared by every process on PostgreSQL). Only failures count. The check of
  the limits and a failure row for the attempt are written in one transaction that serialises per
  email and per address (SQLite: its one writer; PostgreSQL: transaction-scoped advisory locks), all
  *before* the password is checked, so parallel guesses are counted too: at most the limit of
  password checks ever run. A success deletes its own row again and clears the email's failures and
  that email's failures from the address (the customer is not locked out by their own typos once
  they get it right; an office behind one address signing in all day is never refused), while
  guesses at other emails from the address stay counted.
* Sign-in needs an email that only one account with a password has: ``set_password`` stores the
  email's canonical form (billing_core.domain.signin_email) on ``accounts.signin_email``, unique, so
  an email names one account; sign-in compares it exactly (the same on SQLite and PostgreSQL).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Connection

from billing_core.domain.errors import InvalidInput, NotFound
from billing_core.domain.signin_email import canonical_email
from billing_core.store.tables import accounts
from billing_core.store.tables_web import web_sessions, web_signin_attempts

PASSWORD_MIN = 10
PASSWORD_MAX = 256
EMAIL_MAX = 320


@dataclass(frozen=True)
class AuthSettings:
    """Session and sign-in knobs (tests shorten the timers and cheapen the hash)."""

    session_idle_seconds: int = 30 * 60
    """A session unused this long is over."""
    session_max_seconds: int = 12 * 3600
    """No session lives longer than this, however busy."""
    touch_every_seconds: int = 60
    """last_seen_at is rewritten at most this often (saves a write per page view)."""
    signin_window_seconds: int = 15 * 60
    """Failed sign-ins are counted over this window."""
    signin_max_per_email: int = 5
    """Failures allowed per email address in the window before sign-in is refused."""
    signin_max_per_ip: int = 20
    """Failures allowed per client address in the window (guessing across many emails)."""
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65536
    argon2_parallelism: int = 4


@dataclass(frozen=True)
class WebSession:
    """A signed-in customer."""

    token_hash: str
    account_id: int
    account_ref: str
    email: str
    name: str
    csrf_token: str
    """The synchronizer token every form of this session must send back."""


@dataclass(frozen=True)
class SignedIn:
    session: WebSession
    token: str
    """The cookie value (only its hash is stored)."""


@dataclass(frozen=True)
class SignInRefused:
    reason: str
    """``credentials`` (wrong email or password, deliberately not saying which) or ``rate_limited``."""
    field: str = "password"


class Passwords:
    """Hashing with the configured Argon2id parameters."""

    def __init__(self, settings: AuthSettings):
        self.hasher = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib,
                                     parallelism=settings.argon2_parallelism)

    @cached_property
    def _dummy_hash(self) -> str:
        # Checked against when the email is unknown, so both cases cost the same time.
        return self.hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        return await asyncio.to_thread(self.hasher.hash, password)

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self.hasher.verify(stored or self._dummy_hash, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        return await asyncio.to_thread(self._verify, stored, password)

    def needs_rehash(self, stored: str) -> bool:
        try:
            return self.hasher.check_needs_rehash(stored)
        except InvalidHashError:
            return True


def password_problem(password: str) -> str | None:
    """Why a new password is refused (None: acceptable)."""
    if not isinstance(password, str) or len(password) < PASSWORD_MIN:
        return f"password: must be at least {PASSWORD_MIN} characters"
    if len(password) > PASSWORD_MAX:
        return f"password: must be at most {PASSWORD_MAX} characters"
    if password.strip() != password:
        return "password: must not start or end with spaces"
    return None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def tokens_equal(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


# ------------------------------------------------------------------------------ set password
async def set_password(core, passwords: Passwords, ref: str, password: str) -> str:
    """Give account ``ref`` a client-area password (its email is the sign-in name). Signs the
    account out everywhere. Returns the account's email. Raises InvalidInput / NotFound."""
    problem = password_problem(password)
    if problem:
        raise InvalidInput(problem)
    hashed = await passwords.hash(password)
    return await core.store.run(_set_password_tx, ref, hashed)


def _set_password_tx(conn: Connection, ref: str, hashed: str) -> str:
    row = conn.execute(select(accounts.c.id, accounts.c.email).where(accounts.c.ref == ref)).first()
    if row is None:
        raise NotFound(f"REF: unknown account {ref!r}")
    email = canonical_email(row.email)
    if not email or "@" not in email:
        raise InvalidInput(f"REF: account {ref!r} has no usable email address to sign in with ({row.email!r})")
    if len(email) > EMAIL_MAX:
        raise InvalidInput(f"REF: account {ref!r} has an email longer than {EMAIL_MAX} characters")
    clash = conn.execute(
        select(accounts.c.ref).where(accounts.c.signin_email == email, accounts.c.id != row.id)
    ).first()
    if clash is not None:
        raise InvalidInput(f"REF: account {clash.ref!r} already signs in with {email}; give {ref!r} its own email first")
    conn.execute(update(accounts).where(accounts.c.id == row.id).values(password_hash=hashed, signin_email=email))
    conn.execute(delete(web_sessions).where(web_sessions.c.account_id == row.id))
    return row.email


# ------------------------------------------------------------------------------------ sign in
async def sign_in(core, passwords: Passwords, settings: AuthSettings, email: str, password: str, ip: str
                  ) -> SignedIn | SignInRefused:
    # Never truncated: a cut-down email could name another account. Longer than any stored one,
    # it signs in nobody (and still counts against the address).
    email = canonical_email(email)
    ip = (ip or "")[:64]
    now = core.clock.now_ms()
    gate = await core.store.run(_admit_attempt_tx, settings, email, ip, now)
    if gate is None:
        return SignInRefused("rate_limited")
    account_id, stored = gate
    ok = await passwords.verify(stored, password or "")
    if not ok:
        return SignInRefused("credentials")
    rehashed = await passwords.hash(password) if passwords.needs_rehash(stored) else None
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session = await core.store.run(_start_session_tx, settings, account_id, email, ip, token_hash(token), csrf,
                                   rehashed, core.clock.now_ms())
    return SignedIn(session, token)


# Advisory-lock namespaces (the first key of pg_advisory_xact_lock(int, int)): "cg" + 1 / 2.
_LOCK_EMAIL, _LOCK_IP = 0x63670001, 0x63670002


def _serialise_on(conn: Connection, namespace: int, value: str) -> None:
    """Hold, until this transaction ends, the lock of one email or address, so that counting its
    failures and recording this attempt cannot interleave with another attempt on the same key.
    SQLite needs none: its one writer runs transactions one at a time."""
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(value.encode()).digest()[:4], "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:ns, :key)"), {"ns": namespace, "key": key})


def _admit_attempt_tx(conn: Connection, settings: AuthSettings, email: str, ip: str, now: int):
    """Refuse (None) when the email or the address used up its failures; else count this attempt
    as a failure up front and return (account id, stored hash) — both None for unknown emails."""
    since = now - settings.signin_window_seconds * 1000
    email_key = email if len(email) <= EMAIL_MAX else None
    # Always email before address: every attempt takes its locks in the same order (no deadlock).
    if email_key:
        _serialise_on(conn, _LOCK_EMAIL, email_key)
    _serialise_on(conn, _LOCK_IP, ip)

    def failures(kind: str, value: str) -> int:
        return conn.execute(
            select(func.count()).select_from(web_signin_attempts).where(
                web_signin_attempts.c.key_kind == kind, web_signin_attempts.c.key_value == value,
                web_signin_attempts.c.at > since, web_signin_attempts.c.succeeded.is_(False),
            )
        ).scalar_one()

    if (email_key and failures("email", email_key) >= settings.signin_max_per_email) \
            or failures("ip", ip) >= settings.signin_max_per_ip:
        return None
    # Old rows are no use to anybody: the window is all that is ever counted.
    conn.execute(delete(web_signin_attempts).where(web_signin_attempts.c.at <= since))
    rows = [dict(key_kind="ip", key_value=ip, email=email_key, succeeded=False, at=now)]
    if email_key:
        rows.append(dict(key_kind="email", key_value=email_key, email=email_key, succeeded=False, at=now))
    conn.execute(web_signin_attempts.insert(), rows)
    row = conn.execute(
        select(accounts.c.id, accounts.c.password_hash)
        .where(accounts.c.signin_email == email_key, accounts.c.password_hash.is_not(None))
    ).first() if email_key else None
    return (None, None) if row is None else (row.id, row.password_hash)


def _start_session_tx(conn: Connection, settings: AuthSettings, account_id: int, email: str, ip: str, thash: str,
                      csrf: str, rehashed: str | None, now: int) -> WebSession:
    # The right password: this attempt was no failure after all, and the customer's earlier typos
    # stop counting, for the email and for the address. The address keeps its count of other
    # emails (one address guessing many emails still runs into its own limit).
    conn.execute(delete(web_signin_attempts).where(
        web_signin_attempts.c.key_kind == "email", web_signin_attempts.c.key_value == email))
    conn.execute(delete(web_signin_attempts).where(
        web_signin_attempts.c.key_kind == "ip", web_signin_attempts.c.key_value == ip,
        web_signin_attempts.c.email == email))
    if rehashed:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(password_hash=rehashed))
    # Sweep dead sessions (anyone's) here rather than on every page view: sign-ins are rare.
    conn.execute(delete(web_sessions).where(
        (web_sessions.c.expires_at <= now)
        | (web_sessions.c.last_seen_at <= now - settings.session_idle_seconds * 1000)))
    conn.execute(web_sessions.insert().values(
        token_hash=thash, account_id=account_id, csrf_token=csrf, created_at=now, last_seen_at=now,
        expires_at=now + settings.session_max_seconds * 1000, ip=ip))
    acct = conn.execute(select(accounts.c.ref, accounts.c.email, accounts.c.name).where(accounts.c.id == account_id)).one()
    return WebSession(thash, account_id, acct.ref, acct.email, acct.name, csrf)


# ----------------------------------------------------------------------------------- sessions
async def load_session(core, settings: AuthSettings, token: str | None) -> WebSession | None:
    """The live session a cookie names, or None (unknown, expired, idle too long)."""
    if not token or len(token) > 100:
        return None
    return await core.store.run(_load_session_tx, settings, token_hash(token), core.clock.now_ms())


def _load_session_tx(conn: Connection, settings: AuthSettings, thash: str, now: int) -> WebSession | None:
    row = conn.execute(
        select(web_sessions, accounts.c.ref, accounts.c.email, accounts.c.name)
        .select_from(web_sessions.join(accounts, accounts.c.id == web_sessions.c.account_id))
        .where(web_sessions.c.token_hash == thash)
    ).mappings().first()
    if row is None:
        return None
    if row["expires_at"] <= now or row["last_seen_at"] + settings.session_idle_seconds * 1000 <= now:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == thash))
        return None
    if now - row["last_seen_at"] >= settings.touch_every_seconds * 1000:
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == thash).values(last_seen_at=now))
    return WebSession(thash, row["account_id"], row["ref"], row["email"], row["name"], row["csrf_token"])


async def sign_out(core, session: WebSession) -> None:
    await core.store.run(_sign_out_tx, session.token_hash)


def _sign_out_tx(conn: Connection, thash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == thash))


__all__ = [
    "AuthSettings", "Passwords", "SignInRefused", "SignedIn", "WebSession", "canonical_email", "load_session",
    "password_problem", "set_password", "sign_in", "sign_out", "tokens_equal",
]
