"""What an identifier, an email address or a line of operator text may contain — the one place
every entry point (CLI, client area, configuration, the mail layer) checks them. Pure.

Why so strict about control characters: these values end up in email headers and log lines. A
trailing newline in an email address once pushed a receipt's Subject, Date and MIME headers into
its body (header injection). Patterns are matched with ``fullmatch`` (``$`` also matches before a
trailing newline), and every value is checked for control characters on its own, so a permissive
pattern can never let one through.
"""
from __future__ import annotations

import re
import unicodedata

from .errors import InvalidInput

MAX_EMAIL_LENGTH = 254
"""RFC 5321's limit on a forward path; anything longer cannot be delivered."""

REF_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
"""Account refs, plan and package names."""
ENDPOINT_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,79}")
"""SIP endpoint names (what Asterisk puts in the channel name)."""
# One @, a dot in the domain, and nothing an address header must not carry unquoted:
# whitespace, the RFC 5322 specials, or any control character (checked separately too).
_ATOM = r"[^@\s<>()\[\]\\,;:\"]"
EMAIL_PATTERN = re.compile(rf"{_ATOM}+@{_ATOM}+\.[^@\s<>()\[\]\\,;:\".]+")
LOCAL_EMAIL_PATTERN = re.compile(rf"{_ATOM}+@{_ATOM}+")
"""A sender such as ``callgate@localhost`` (a host without a dot) is fine for a From: address."""

# Characters that change how a line or a header is read: C0/C1 controls (NUL, CR, LF, TAB, ESC…),
# format characters (bidi overrides that disguise text in a terminal), the Unicode line and
# paragraph separators and lone surrogates.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
# Zero-width (non-)joiners are format characters that some scripts need inside names.
_ALLOWED_FORMAT = frozenset({"\u200c", "\u200d"})


def control_character(text: str) -> tuple[int, str] | None:
    """The first character of ``text`` that must not appear in an identifier, a header or a log
    line, as ``(index, character)``; None when there is none."""
    if text.isprintable():  # C speed: every refused category is non-printable (a 300,000-row deck)
        return None
    for i, ch in enumerate(text):
        if (ch < " " or ch == "\x7f" or unicodedata.category(ch) in _REFUSED_CATEGORIES) and ch not in _ALLOWED_FORMAT:
            return i, ch
    return None


def describe_control(found: tuple[int, str]) -> str:
    """``"a control character (U+000A) at position 12"`` — never the raw character itself."""
    index, ch = found
    return f"a control character (U+{ord(ch):04X}) at position {index + 1}"


def check_text(value: object, field: str, *, max_length: int | None = None, allow_empty: bool = False) -> str:
    """Free text an operator or a customer typed (names, reasons): one line, no control characters.
    Returns it stripped of surrounding spaces."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: must be text (got {value!r})")
    found = control_character(value)
    if found is not None:
        raise InvalidInput(f"{field}: must not contain {describe_control(found)}")
    text = value.strip()
    if not text and not allow_empty:
        raise InvalidInput(f"{field}: must not be empty")
    if max_length is not None and len(text) > max_length:
        raise InvalidInput(f"{field}: longer than {max_length} characters")
    return text


def _check_pattern(pattern: re.Pattern, value: object, field: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{field}: {what} (got {value!r})")
    found = control_character(value)
    if found is not None:
        raise InvalidInput(f"{field}: {what}; it contains {describe_control(found)}")
    if not pattern.fullmatch(value):
        raise InvalidInput(f"{field}: {what} (got {value!r})")
    return value


def check_ref(value: object, field: str = "REF", what: str = "an account ref is letters, digits and _.@- (max 64)") -> str:
    """An account ref, or a plan or package name (``what`` says which in the error)."""
    return _check_pattern(REF_PATTERN, value, field, what)


def check_endpoint(value: object, field: str = "ENDPOINT") -> str:
    """A SIP endpoint name."""
    return _check_pattern(ENDPOINT_PATTERN, value, field, "a SIP endpoint name is letters, digits and _.+- (max 80)")


def check_email(value: object, field: str = "--email", *, dotted_domain: bool = True) -> str:
    """An email address that can go into a To: or From: header as it is: one ``@``, a dotted
    domain (unless ``dotted_domain`` is False: a local sender like ``callgate@localhost``), at most
    254 characters, no whitespace, control characters or header specials."""
    if isinstance(value, str) and len(value) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"{field}: an email address is at most {MAX_EMAIL_LENGTH} characters (got {len(value)})")
    return _check_pattern(EMAIL_PATTERN if dotted_domain else LOCAL_EMAIL_PATTERN, value, field, "not an email address")


def check_header_value(value: object, field: str) -> str:
    """The mail layer's last line of defence: a header value is one line of text."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} header: must be text (got {value!r})")
    found = control_character(value)
    if found is not None:
        raise InvalidInput(f"{field} header: must not contain {describe_control(found)}")
    return value


__all__ = ["MAX_EMAIL_LENGTH", "check_email", "check_endpoint", "check_header_value", "check_ref", "check_text",
           "control_character", "describe_control"]
