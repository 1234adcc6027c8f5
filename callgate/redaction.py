"""The one place that hides secrets in anything callgate shows: `config check`, CLI error lines,
start-up errors and every log line (callgate.logs runs its output through :func:`redact`).

Secrets are: the password inside any URL (the database URL above all), and the values of the
settings that hold one (ARI and SMTP passwords, the PayPal client secret and webhook id, session
keys, tokens). Why mask at the output rather than at each message: a driver's error text, a
traceback or a future log line can quote a URL we never formatted ourselves.
"""
from __future__ import annotations

import os
import re
import sys
import traceback
from typing import Iterable, Mapping
from urllib.parse import unquote, urlsplit

MASK = "********"

# scheme://user:password@host — the password is whatever lies between the first ':' after the
# user and the last '@' before the host (a raw '@' in a password is common enough in the wild).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*:)(?P<password>[^\s/]*)@")
# key=value connection strings and query parameters (libpq DSNs, ?password=… in a URL).
_KEY_VALUE = re.compile(r"(?P<head>\b(?:password|passwd|pwd|secret|client_secret|token|api_key)=)(?P<value>[^\s&;,'\"]+)",
                        re.IGNORECASE)
# Names of environment variables whose value is a secret as a whole.
_SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|WEBHOOK_ID|SESSION_KEY|API_KEY|PRIVATE_KEY", re.IGNORECASE)
# Shorter values are not masked by value (a one-letter "password" would blank out every 'a').
_MIN_SECRET_LENGTH = 4


def mask_url(url: str) -> str:
    """``postgresql://cg:s3cret@db/callgate`` → ``postgresql://cg:********@db/callgate``."""
    return _mask_patterns(url)


def _mask_patterns(text: str) -> str:
    text = _URL_PASSWORD.sub(lambda m: f"{m['head']}{MASK}@" if m["password"] else m[0], text)
    return _KEY_VALUE.sub(lambda m: f"{m['head']}{MASK}", text)


def url_password(value: str) -> str | None:
    """The password inside a URL, if it holds one."""
    if "://" not in value:
        return None
    try:
        password = urlsplit(value.strip()).password
    except ValueError:
        return None
    return password or None


_remembered: set[str] = set()
"""Secrets of the loaded configuration (its file's values never reach the environment)."""


def remember_secrets(values: Iterable[str]) -> None:
    """The configuration layer tells which values are secrets (callgate.config.load_or_exit)."""
    for value in values:
        if value:
            _remembered.update({value, unquote(value)})


def secret_values(environ: Mapping[str, str] | None = None) -> frozenset[str]:
    """Every secret the process knows: the loaded configuration's secrets, values of secret-named
    CALLGATE_* variables and passwords inside CALLGATE_* URLs."""
    env = os.environ if environ is None else environ
    found: set[str] = set(_remembered) if environ is None else set()
    for name, value in env.items():
        if not value or not (name.startswith("CALLGATE_") or name in ("PGPASSWORD", "DATABASE_URL")):
            continue
        if _SECRET_NAME.search(name):
            found.add(value)
        password = url_password(value)
        if password:
            found.update({password, unquote(password)})
    return frozenset(v for v in found if len(v) >= _MIN_SECRET_LENGTH)


def redact(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` with every URL password, ``password=…`` pair and known secret value masked.
    ``secrets`` defaults to :func:`secret_values` of the current environment."""
    if not text:
        return text
    text = _mask_patterns(text)
    values = secret_values() if secrets is None else secrets
    # Longest first, so a secret containing another is masked whole.
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def install_excepthook() -> None:
    """A traceback that escapes a command is printed redacted too (it may quote a URL)."""

    def hook(exc_type, exc, tb) -> None:
        sys.stderr.write(redact("".join(traceback.format_exception(exc_type, exc, tb))))

    sys.excepthook = hook


__all__ = ["install_excepthook", "MASK", "mask_url", "redact", "remember_secrets", "secret_values", "url_password"]
