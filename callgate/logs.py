"""Structured logs: one line per event, ``key=value`` (default) or JSON (CALLGATE_LOG_FORMAT=json).

Fields passed with ``extra={...}`` (``session``, ``account``, ``number``, ``reason`` …) are printed
after the message, so every line about a call can carry its session id and be grepped or parsed.
"""
from __future__ import annotations

import json
import logging
import sys
import time

from billing_core.domain.identifiers import control_character
from callgate.redaction import redact, secret_values

_STANDARD = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {"message", "asctime", "taskName"}


def _extras(record: logging.LogRecord) -> dict:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


def _kv(value) -> str:
    text = str(value)
    # Quoted (JSON escapes) whenever a value could split the line or smuggle a terminal escape.
    if control_character(text) is not None:
        return json.dumps(text)  # ASCII escapes: no raw line separator or escape survives
    if not text or any(c in text for c in ' "='):
        return json.dumps(text, ensure_ascii=False)
    return text


class _RedactingFormatter(logging.Formatter):
    """Every line goes through callgate.redaction: a driver error or a traceback can quote a URL
    with its password, or a secret setting."""

    def __init__(self, *args, secrets: frozenset[str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.secrets = secret_values() if secrets is None else secrets

    def format(self, record: logging.LogRecord) -> str:
        return redact(self.format_line(record), self.secrets)

    def format_line(self, record: logging.LogRecord) -> str:
        raise NotImplementedError


class KeyValueFormatter(_RedactingFormatter):
    def format_line(self, record: logging.LogRecord) -> str:
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"
        parts = [f"ts={ts}", f"level={record.levelname.lower()}", f"logger={record.name}", f"msg={_kv(record.getMessage())}"]
        parts += [f"{k}={_kv(v)}" for k, v in _extras(record).items()]
        if record.exc_info:
            parts.append(f"exc={_kv(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JsonFormatter(_RedactingFormatter):
    def format_line(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update({k: v if isinstance(v, (int, float, bool, type(None))) else str(v) for k, v in _extras(record).items()})
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(fmt: str | None = None, level: str | None = None, stream=None) -> None:
    """Configure the root logger once for a service process (``fmt``, ``level``: [log] format and
    level of the configuration, CALLGATE_LOG_FORMAT / CALLGATE_LOG_LEVEL)."""
    fmt = (fmt or "kv").lower()
    level = (level or "INFO").upper()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else KeyValueFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("aiohttp.access", "sqlalchemy", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
