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

from billing_core import signin
from billing_core.domain.errors import InvalidInput
from billing_core.domain.signin_email import canonical_email
from billing_core.signin import CustomerSession

PASSWORD_MIN = 10
PASSWORD_MAX = 256


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

    def limits(self) -> signin.Limits:
        """The knobs the database side (billing_core.signin) needs, in milliseconds."""
        return signin.Limits(window_ms=self.signin_window_seconds * 1000, max_per_email=self.signin_max_per_email,
                             max_per_ip=self.signin_max_per_ip, idle_ms=self.session_idle_seconds * 1000,
                             max_ms=self.session_max_seconds * 1000, touch_ms=self.touch_every_seconds * 1000)


WebSession = CustomerSession
"""A signed-in customer (token_hash, account_id, account_ref, email, name, csrf_token: the
synchronizer token every form of this session must send back)."""


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
    return await core.store.run(signin.set_customer_password_tx, ref, hashed)


# ------------------------------------------------------------------------------------ sign in
async def sign_in(core, passwords: Passwords, settings: AuthSettings, email: str, password: str, ip: str
                  ) -> SignedIn | SignInRefused:
    # Never truncated: a cut-down email could name another account. Longer than any stored one,
    # it signs in nobody (and still counts against the address).
    email = canonical_email(email)
    ip = (ip or "")[:64]
    limits = settings.limits()
    gate = await core.store.run(signin.admit_customer_attempt_tx, limits, email, ip, core.clock.now_ms())
    if gate is None:
        return SignInRefused("rate_limited")
    account_id, stored = gate
    ok = await passwords.verify(stored, password or "")
    if not ok:
        return SignInRefused("credentials")
    rehashed = await passwords.hash(password) if passwords.needs_rehash(stored) else None
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session = await core.store.run(signin.start_customer_session_tx, limits, account_id, email, ip, token_hash(token),
                                   csrf, rehashed, core.clock.now_ms())
    return SignedIn(session, token)


# ----------------------------------------------------------------------------------- sessions
async def load_session(core, settings: AuthSettings, token: str | None) -> WebSession | None:
    """The live session a cookie names, or None (unknown, expired, idle too long)."""
    if not token or len(token) > 100:
        return None
    return await core.store.run(signin.load_customer_session_tx, settings.limits(), token_hash(token),
                                core.clock.now_ms())


async def sign_out(core, session: WebSession) -> None:
    await core.store.run(signin.end_customer_session_tx, session.token_hash)


# ----------------------------------------------------------------------------- password reset
RESET_TTL_SECONDS = 3600
"""A reset link works this long, once."""


async def request_password_reset(core, settings: AuthSettings, email: str, ip: str, base_url: str) -> str:
    """Queue a reset email when ``email`` signs in to an account: ``sent``, ``unknown`` or
    ``rate_limited`` (the pages show ``sent`` and ``unknown`` alike: nobody learns who has an account)."""
    token = secrets.token_urlsafe(32)
    return await core.store.run(
        signin.request_reset_tx, core.enqueue_alert, settings.limits(), canonical_email(email), (ip or "")[:64],
        token_hash(token), secrets.token_hex(8), f"{base_url}/reset/{token}", RESET_TTL_SECONDS * 1000,
        core.clock.now_ms())


async def send_password_reset(core, actor, ref: str, base_url: str) -> str:
    """An operator emails account ``ref`` a reset link; returns the address."""
    token = secrets.token_urlsafe(32)
    return await core.store.run(signin.send_reset_tx, core.enqueue_alert, actor, ref, token_hash(token),
                                secrets.token_hex(8), f"{base_url}/reset/{token}", RESET_TTL_SECONDS * 1000,
                                core.clock.now_ms())


async def operator_set_password(core, passwords: Passwords, actor, ref: str, password: str) -> str:
    problem = password_problem(password)
    if problem:
        raise InvalidInput(problem)
    hashed = await passwords.hash(password)
    return await core.store.run(signin.operator_set_password_tx, actor, ref, hashed, core.clock.now_ms())


async def reset_token_valid(core, token: str) -> bool:
    if not token or len(token) > 100:
        return False
    return await core.store.run(signin.reset_token_valid_tx, token_hash(token), core.clock.now_ms())


async def reset_password(core, passwords: Passwords, token: str, password: str) -> str | None:
    """Set the new password with a reset token (once). The account's email, or None for a token
    unknown, used or expired. Raises InvalidInput for a password the rules refuse (token kept)."""
    problem = password_problem(password)
    if problem:
        raise InvalidInput(problem)
    if not await reset_token_valid(core, token):
        return None
    hashed = await passwords.hash(password)
    return await core.store.run(signin.reset_password_tx, token_hash(token), hashed, core.clock.now_ms())


__all__ = [
    "AuthSettings", "Passwords", "SignInRefused", "SignedIn", "WebSession", "canonical_email", "load_session",
    "password_problem", "request_password_reset", "reset_password", "reset_token_valid", "set_password", "sign_in",
    "sign_out", "tokens_equal",
]
