"""The database side of web sign-in: limiting attempts, starting, loading and ending sessions,
storing a customer's password hash. Used by the client area (customers) and the operator console
(operators): the web never touches the store's tables itself (import-linter: callgate.web may not
import billing_core.store).

Every function is a plain sync function on a SQLAlchemy ``Connection`` that the core's store runs
(``await core.store.run(fn, ...)``): one transaction each. Hashing and verifying passwords, which
take real time, happen outside them (callgate.web.auth), never while a transaction is open.

Rate limiting (see callgate.web.auth for the reasoning): failures are counted per email and per
client address over a window, in ``web_signin_attempts``; the check and a failure row for the
attempt are written in one transaction that serialises per email and per address (SQLite: its one
writer; PostgreSQL: transaction-scoped advisory locks), all before the password is checked. A
:class:`Realm` names the key kinds a kind of user counts under, so a customer's and an operator's
attempts are counted apart (an office's customers failing at the client area never lock the
operators out, and the other way round).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.engine import Connection

from .domain.errors import InvalidInput, NotFound
from .domain.signin_email import canonical_email
from .operators import Actor, audit_tx
from .store.tables import accounts
from .store.tables_operators import operator_sessions, operators
from .store.tables_web import password_resets, web_sessions, web_signin_attempts

EMAIL_MAX = 320


@dataclass(frozen=True)
class Limits:
    """The sign-in knobs the database side needs (callgate.web.auth.AuthSettings carries them)."""

    window_ms: int
    max_per_email: int
    max_per_ip: int
    idle_ms: int
    """A session unused this long is over."""
    max_ms: int
    """No session lives longer than this."""
    touch_ms: int
    """last_seen_at is rewritten at most this often."""


@dataclass(frozen=True)
class Realm:
    """Who signs in: the key kinds their failures are counted under (at most 8 characters)."""

    email_kind: str
    ip_kind: str


CUSTOMERS = Realm("email", "ip")
OPERATORS = Realm("op_email", "op_ip")
RESETS = Realm("rs_email", "rs_ip")
"""Password-reset requests: every request counts (none is "forgiven"), so at most the limit of
reset emails go to one address, or out from one client address, per window."""


@dataclass(frozen=True)
class CustomerSession:
    """A signed-in customer, as the database knows them."""

    token_hash: str
    account_id: int
    account_ref: str
    email: str
    name: str
    csrf_token: str


# ------------------------------------------------------------------------------ set password
def set_customer_password_tx(conn: Connection, ref: str, hashed: str) -> str:
    """Give account ``ref`` the password hash ``hashed``; its canonical email becomes its sign-in
    name. Signs the account out everywhere. Returns the account's email. Raises InvalidInput /
    NotFound (nothing written)."""
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


# ---------------------------------------------------------------------------- attempt limits
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


def admit_attempt_tx(conn: Connection, realm: Realm, limits: Limits, email: str, ip: str, now: int,
                     lookup: Callable[[Connection, str], tuple | None]):
    """Refuse (None) when the email or the address used up its failures; else count this attempt
    as a failure up front and return ``lookup(conn, email)`` — (user id, stored hash, ...) or
    (None, None) for unknown emails. ``email`` is already canonical."""
    since = now - limits.window_ms
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

    if (email_key and failures(realm.email_kind, email_key) >= limits.max_per_email) \
            or failures(realm.ip_kind, ip) >= limits.max_per_ip:
        return None
    # Old rows are no use to anybody: the window is all that is ever counted.
    conn.execute(delete(web_signin_attempts).where(web_signin_attempts.c.at <= since))
    rows = [dict(key_kind=realm.ip_kind, key_value=ip, email=email_key, succeeded=False, at=now)]
    if email_key:
        rows.append(dict(key_kind=realm.email_kind, key_value=email_key, email=email_key, succeeded=False, at=now))
    conn.execute(web_signin_attempts.insert(), rows)
    found = lookup(conn, email_key) if email_key else None
    return (None, None) if found is None else found


def forgive_tx(conn: Connection, realm: Realm, email: str, ip: str) -> None:
    """The right password: this attempt was no failure after all, and the user's earlier typos
    stop counting, for the email and for the address. The address keeps its count of other emails
    (one address guessing many emails still runs into its own limit)."""
    conn.execute(delete(web_signin_attempts).where(
        web_signin_attempts.c.key_kind == realm.email_kind, web_signin_attempts.c.key_value == email))
    conn.execute(delete(web_signin_attempts).where(
        web_signin_attempts.c.key_kind == realm.ip_kind, web_signin_attempts.c.key_value == ip,
        web_signin_attempts.c.email == email))


def _open_session_tx(conn: Connection, sessions, limits: Limits, thash: str, csrf: str, ip: str, now: int,
                     **owner: int) -> None:
    """A new row in a realm's sessions table (``owner``: its account_id or operator_id column).
    Dead sessions (anyone's) are swept here rather than on every page view: sign-ins are rare."""
    conn.execute(delete(sessions).where((sessions.c.expires_at <= now) | (sessions.c.last_seen_at <= now - limits.idle_ms)))
    conn.execute(sessions.insert().values(token_hash=thash, csrf_token=csrf, created_at=now, last_seen_at=now,
                                          expires_at=now + limits.max_ms, ip=ip, **owner))


# ------------------------------------------------------------------------------- customers
def customer_credentials(conn: Connection, email: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(accounts.c.id, accounts.c.password_hash)
        .where(accounts.c.signin_email == email, accounts.c.password_hash.is_not(None))
    ).first()
    return None if row is None else (row.id, row.password_hash)


def admit_customer_attempt_tx(conn: Connection, limits: Limits, email: str, ip: str, now: int):
    return admit_attempt_tx(conn, CUSTOMERS, limits, email, ip, now, customer_credentials)


def start_customer_session_tx(conn: Connection, limits: Limits, account_id: int, email: str, ip: str, thash: str,
                              csrf: str, rehashed: str | None, now: int) -> CustomerSession:
    forgive_tx(conn, CUSTOMERS, email, ip)
    if rehashed:
        conn.execute(update(accounts).where(accounts.c.id == account_id).values(password_hash=rehashed))
    _open_session_tx(conn, web_sessions, limits, thash, csrf, ip, now, account_id=account_id)
    acct = conn.execute(select(accounts.c.ref, accounts.c.email, accounts.c.name).where(accounts.c.id == account_id)).one()
    return CustomerSession(thash, account_id, acct.ref, acct.email, acct.name, csrf)


def load_customer_session_tx(conn: Connection, limits: Limits, thash: str, now: int) -> CustomerSession | None:
    """The live session a token hash names, or None (unknown, expired, idle too long: removed)."""
    row = conn.execute(
        select(web_sessions, accounts.c.ref, accounts.c.email, accounts.c.name)
        .select_from(web_sessions.join(accounts, accounts.c.id == web_sessions.c.account_id))
        .where(web_sessions.c.token_hash == thash)
    ).mappings().first()
    if row is None:
        return None
    if row["expires_at"] <= now or row["last_seen_at"] + limits.idle_ms <= now:
        conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == thash))
        return None
    if now - row["last_seen_at"] >= limits.touch_ms:
        conn.execute(update(web_sessions).where(web_sessions.c.token_hash == thash).values(last_seen_at=now))
    return CustomerSession(thash, row["account_id"], row["ref"], row["email"], row["name"], row["csrf_token"])


def end_customer_session_tx(conn: Connection, thash: str) -> None:
    conn.execute(delete(web_sessions).where(web_sessions.c.token_hash == thash))


# ------------------------------------------------------------------------------- operators
@dataclass(frozen=True)
class OperatorSession:
    """A signed-in operator of the console."""

    token_hash: str
    operator_id: int
    email: str
    role: str
    csrf_token: str


@dataclass(frozen=True)
class OperatorCredentials:
    operator_id: int
    password_hash: str
    totp_secret: str | None
    totp_last_step: int | None


def operator_credentials(conn: Connection, email: str) -> tuple[int | None, str | None, OperatorCredentials | None]:
    """(id, hash, credentials) of an enabled operator with a password; None for anyone else
    (unknown, disabled, no password yet: all refused alike)."""
    row = conn.execute(
        select(operators.c.id, operators.c.password_hash, operators.c.totp_secret, operators.c.totp_last_step)
        .where(operators.c.email == email, operators.c.password_hash.is_not(None), operators.c.disabled_at.is_(None))
    ).first()
    if row is None:
        return None
    return (row.id, row.password_hash,
            OperatorCredentials(row.id, row.password_hash, row.totp_secret, row.totp_last_step))


def admit_operator_attempt_tx(conn: Connection, limits: Limits, email: str, ip: str, now: int):
    """None: rate limited; else (operator id, stored hash, OperatorCredentials) — (None, None) for
    nobody. The attempt counts as a failure until a session starts."""
    found = admit_attempt_tx(conn, OPERATORS, limits, email, ip, now, operator_credentials)
    return (None, None, None) if found == (None, None) else found


def start_operator_session_tx(conn: Connection, limits: Limits, operator_id: int, email: str, ip: str, thash: str,
                              csrf: str, rehashed: str | None, totp_step: int | None, now: int
                              ) -> OperatorSession | None:
    """Start the session of an operator whose password (and TOTP code, at ``totp_step``) checked
    out. None when the operator was disabled meanwhile or the code's time step was already used
    (a TOTP code signs in once: a code seen over a shoulder or in a proxy log is spent)."""
    row = conn.execute(select(operators).where(operators.c.id == operator_id, operators.c.disabled_at.is_(None))
                       ).mappings().first()
    if row is None:
        return None
    if totp_step is not None:
        spent = conn.execute(
            update(operators).where(operators.c.id == operator_id,
                                    (operators.c.totp_last_step.is_(None)) | (operators.c.totp_last_step < totp_step))
            .values(totp_last_step=totp_step)
        ).rowcount == 0
        if spent:
            return None
    forgive_tx(conn, OPERATORS, email, ip)
    if rehashed:
        conn.execute(update(operators).where(operators.c.id == operator_id).values(password_hash=rehashed))
    _open_session_tx(conn, operator_sessions, limits, thash, csrf, ip, now, operator_id=operator_id)
    audit_tx(conn, Actor(row["email"], operator_id), "operator.signin", "operator", row["email"],
             after={"ip": ip, "totp": totp_step is not None}, now=now)
    return OperatorSession(thash, operator_id, row["email"], row["role"], csrf)


def load_operator_session_tx(conn: Connection, limits: Limits, thash: str, now: int) -> OperatorSession | None:
    """The live session of an enabled operator a token hash names, or None (removed when over)."""
    row = conn.execute(
        select(operator_sessions, operators.c.email, operators.c.role, operators.c.disabled_at)
        .select_from(operator_sessions.join(operators, operators.c.id == operator_sessions.c.operator_id))
        .where(operator_sessions.c.token_hash == thash)
    ).mappings().first()
    if row is None:
        return None
    if row["disabled_at"] is not None or row["expires_at"] <= now or row["last_seen_at"] + limits.idle_ms <= now:
        conn.execute(delete(operator_sessions).where(operator_sessions.c.token_hash == thash))
        return None
    if now - row["last_seen_at"] >= limits.touch_ms:
        conn.execute(update(operator_sessions).where(operator_sessions.c.token_hash == thash).values(last_seen_at=now))
    return OperatorSession(thash, row["operator_id"], row["email"], row["role"], row["csrf_token"])


def end_operator_session_tx(conn: Connection, thash: str) -> None:
    conn.execute(delete(operator_sessions).where(operator_sessions.c.token_hash == thash))


# ------------------------------------------------------------------------ password reset
PASSWORD_RESET = "password_reset"
"""The outbox kind (billing_core/mail/templates/password_reset.*)."""


def _reset_target(conn: Connection, email: str):
    row = conn.execute(
        select(accounts.c.id, accounts.c.ref, accounts.c.name, accounts.c.email)
        .where(accounts.c.signin_email == email, accounts.c.password_hash.is_not(None))
    ).first()
    return None if row is None else (row.id, row)


def request_reset_tx(conn: Connection, enqueue, limits: Limits, email: str, ip: str, thash: str, nonce: str,
                     reset_url: str, ttl_ms: int, now: int) -> str:
    """``rate_limited``, ``unknown`` (no account signs in with ``email``: nothing written but the
    attempt) or ``sent``: a single-use token (only its hash kept) and its email queued in the outbox,
    in one transaction. A new request voids the account's earlier unused links. ``enqueue`` is
    BillingCore.enqueue_alert."""
    found = admit_attempt_tx(conn, RESETS, limits, email, ip, now, _reset_target)
    if found is None:
        return "rate_limited"
    account_id, row = found
    if account_id is None:
        return "unknown"
    _issue_reset(conn, enqueue, row, thash, nonce, reset_url, ttl_ms, now)
    return "sent"


def _issue_reset(conn: Connection, enqueue, row, thash: str, nonce: str, reset_url: str, ttl_ms: int, now: int) -> None:
    conn.execute(delete(password_resets).where(password_resets.c.account_id == row.id,
                                               password_resets.c.used_at.is_(None)))
    conn.execute(delete(password_resets).where(password_resets.c.expires_at <= now - ttl_ms))
    conn.execute(password_resets.insert().values(token_hash=thash, account_id=row.id, created_at=now,
                                                 expires_at=now + ttl_ms))
    enqueue(conn, account_id=row.id, to_addr=row.email, kind=PASSWORD_RESET,
            dedupe_key=f"{PASSWORD_RESET}:{row.id}:{nonce}",
            context={"account_ref": row.ref, "account_name": row.name, "reset_url": reset_url,
                     "expires_minutes": max(1, ttl_ms // 60_000)}, now=now)


def send_reset_tx(conn: Connection, enqueue, actor: Actor, ref: str, thash: str, nonce: str, reset_url: str,
                  ttl_ms: int, now: int) -> str:
    """An operator sends account ``ref`` a reset link (no request limits: staff act on purpose;
    audited in the same transaction). The account needs a usable email; it need not have had a
    password (a way to invite a customer). Returns the address written to."""
    row = conn.execute(select(accounts.c.id, accounts.c.ref, accounts.c.name, accounts.c.email)
                       .where(accounts.c.ref == ref)).first()
    if row is None:
        raise NotFound(f"unknown account {ref!r}")
    if "@" not in (row.email or ""):
        raise InvalidInput(f"account {ref!r} has no usable email address ({row.email!r})")
    _issue_reset(conn, enqueue, row, thash, nonce, reset_url, ttl_ms, now)
    audit_tx(conn, actor, "account.password_reset_email", "account", ref, after={"to": row.email}, now=now)
    return row.email


def operator_set_password_tx(conn: Connection, actor: Actor, ref: str, hashed: str, now: int) -> str:
    """An operator sets account ``ref``'s client-area password (signs it out everywhere), audited."""
    email = set_customer_password_tx(conn, ref, hashed)
    audit_tx(conn, actor, "account.password", "account", ref, after={"password_set": True}, now=now)
    return email


def reset_token_valid_tx(conn: Connection, thash: str, now: int) -> bool:
    return conn.execute(select(password_resets.c.account_id).where(
        password_resets.c.token_hash == thash, password_resets.c.used_at.is_(None),
        password_resets.c.expires_at > now)).first() is not None


def reset_password_tx(conn: Connection, thash: str, hashed: str, now: int) -> str | None:
    """Use the token: the account gets the new password hash and is signed out everywhere, and the
    token is spent, in one transaction. None when the token is unknown, used or expired."""
    spent = conn.execute(update(password_resets).where(
        password_resets.c.token_hash == thash, password_resets.c.used_at.is_(None),
        password_resets.c.expires_at > now).values(used_at=now)).rowcount
    if spent != 1:
        return None
    ref = conn.execute(select(accounts.c.ref).select_from(
        password_resets.join(accounts, accounts.c.id == password_resets.c.account_id))
        .where(password_resets.c.token_hash == thash)).scalar_one()
    return set_customer_password_tx(conn, ref, hashed)
