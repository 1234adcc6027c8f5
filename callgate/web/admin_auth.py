"""Operator console authentication: Argon2id passwords, an optional TOTP second factor, server-side
sessions of their own, sign-in attempts limited (counted apart from the customers').

The database side is billing_core.signin (operators' realm); hashing and TOTP checks happen here,
outside any transaction. Choices:
* A TOTP code is accepted for the current 30 s step and one step either side (clock drift of the
  phone), and only once: the step it matched is stored and a code of that step or an earlier one
  is refused afterwards (RFC 6238 §5.2).
* A wrong password and a wrong code get the same answer, so the form never tells a guesser that
  the password was right; both count as failures against the limits.
* Operators' cookies are their own (name and path /admin), so a customer's session is never taken
  for an operator's.
"""
from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

import pyotp

from billing_core import signin
from billing_core.domain.signin_email import canonical_email
from billing_core.signin import OperatorSession

from .auth import AuthSettings, Passwords, SignInRefused, token_hash

ADMIN_COOKIE = "callgate_admin"
SECURE_ADMIN_COOKIE = "__Secure-callgate_admin"  # Secure required by browsers; path stays /admin
ADMIN_SIGNIN_CSRF_COOKIE = "callgate_admin_signin"
TOTP_PERIOD = 30


@dataclass(frozen=True)
class OperatorSignedIn:
    session: OperatorSession
    token: str


def totp_step(secret: str, code: str, now_ms: int) -> int | None:
    """The time step ``code`` is valid for (now, or one step either side), or None."""
    code = (code or "").replace(" ", "")
    if not (len(code) == 6 and code.isascii() and code.isdigit()):
        return None
    totp = pyotp.TOTP(secret, interval=TOTP_PERIOD)
    now_s = now_ms // 1000
    for drift in (0, -1, 1):
        at = now_s + drift * TOTP_PERIOD
        if hmac.compare_digest(totp.at(at), code):
            return at // TOTP_PERIOD
    return None


async def operator_sign_in(core, passwords: Passwords, settings: AuthSettings, email: str, password: str,
                           code: str, ip: str) -> OperatorSignedIn | SignInRefused:
    email = canonical_email(email)
    ip = (ip or "")[:64]
    limits = settings.limits()
    gate = await core.store.run(signin.admit_operator_attempt_tx, limits, email, ip, core.clock.now_ms())
    if gate is None:
        return SignInRefused("rate_limited")
    operator_id, stored, creds = gate
    if not await passwords.verify(stored, password or ""):
        return SignInRefused("credentials")
    step = None
    if creds.totp_secret is not None:
        step = totp_step(creds.totp_secret, code, core.clock.now_ms())
        if step is None:
            return SignInRefused("credentials", field="code")
    rehashed = await passwords.hash(password) if passwords.needs_rehash(stored) else None
    token = secrets.token_urlsafe(32)
    session = await core.store.run(signin.start_operator_session_tx, limits, operator_id, email, ip,
                                   token_hash(token), secrets.token_urlsafe(32), rehashed, step, core.clock.now_ms())
    if session is None:  # disabled meanwhile, or the code was already used
        return SignInRefused("credentials", field="code")
    return OperatorSignedIn(session, token)


async def load_operator_session(core, settings: AuthSettings, token: str | None) -> OperatorSession | None:
    if not token or len(token) > 100:
        return None
    return await core.store.run(signin.load_operator_session_tx, settings.limits(), token_hash(token),
                                core.clock.now_ms())


async def operator_sign_out(core, session: OperatorSession) -> None:
    await core.store.run(signin.end_operator_session_tx, session.token_hash)


__all__ = ["ADMIN_COOKIE", "ADMIN_SIGNIN_CSRF_COOKIE", "OperatorSession", "OperatorSignedIn", "SECURE_ADMIN_COOKIE",
           "load_operator_session", "operator_sign_in", "operator_sign_out", "totp_step"]
