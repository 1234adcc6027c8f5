"""PayPal webhooks: verify the signature locally, as PayPal documents it, then apply the event.

Verification (no call back to PayPal):

1. The headers PAYPAL-TRANSMISSION-ID, -TIME, -SIG, PAYPAL-CERT-URL, PAYPAL-AUTH-ALGO are present
   and the algorithm is SHA256withRSA.
2. The certificate URL is on a pinned PayPal host (``https://api.paypal.com/v1/notifications/certs/…``;
   the pin list is configurable so tests can point at the stand-in) — otherwise anyone could sign
   with their own key and host their own certificate.
3. The transmission time is within ``webhook_max_age`` of now (stale messages are refused).
4. The certificate (fetched once, cached per URL) is currently valid and holds an RSA key. A
   failed fetch is remembered too (``failure_ttl``), and at most ``max_fetches_per_minute``
   fetches happen whatever the requests name: otherwise every unsigned request naming a new path
   on a pinned host made this server fetch from it.
5. The signed message ``<transmission id>|<transmission time>|<webhook id>|<CRC32 of the raw body,
   decimal>`` verifies against PAYPAL-TRANSMISSION-SIG (base64, RSA PKCS#1 v1.5, SHA-256).

Then, in **one** transaction: the transmission id is recorded (a second delivery with the same id
is a replay and changes nothing) and the event is applied to its invoice, the money going through
the core's ledger keyed by PayPal's ids — so a webhook racing the customer's return credits once.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import json
import logging
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import Counter
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from sqlalchemy.exc import IntegrityError

from billing_core import invoices
from billing_core.invoices import Change
from billing_core.store.engine import StorageError
from callgate import config as cfgmod

from .config import PayPalConfig
from .models import capture_from_json, refund_from_json

log = logging.getLogger("callgate.paypal.webhook")

AUTH_ALGO = "SHA256withRSA"
CERT_PATH_PREFIX = "/v1/notifications/certs/"
MAX_BODY = 256 * 1024
MAX_CERT = 64 * 1024

CAPTURE_EVENTS = ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.PENDING", "PAYMENT.CAPTURE.DENIED")
REFUND_EVENTS = {"PAYMENT.CAPTURE.REFUNDED": "refund", "PAYMENT.CAPTURE.REVERSED": "reversal"}


def crc32_decimal(raw_body: bytes) -> str:
    return str(zlib.crc32(raw_body) & 0xFFFFFFFF)


def signed_message(transmission_id: str, transmission_time: str, webhook_id: str, raw_body: bytes) -> bytes:
    """What PayPal signs for a webhook transmission."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc32_decimal(raw_body)}".encode()


def parse_transmission_time(text: str) -> float | None:
    """PAYPAL-TRANSMISSION-TIME (RFC 3339, e.g. ``2026-11-28T12:00:00Z``) as epoch seconds."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp()


@dataclass(frozen=True)
class Verified:
    """A transmission whose signature, certificate host and age all check out."""

    transmission_id: str
    transmission_time: str
    event: dict


@dataclass(frozen=True)
class Rejected:
    """Why a transmission was refused."""

    reason: str
    """missing_headers | bad_algorithm | cert_host | stale | cert_unavailable | bad_certificate |
    forged | bad_json."""
    detail: str
    transmission_id: str | None = None


@dataclass(frozen=True)
class WebhookResult:
    """What :func:`handle_webhook` did, and the HTTP answer for PayPal."""

    status: str
    """processed | ignored | rejected | replayed | error."""
    http_status: int
    """2xx tells PayPal to stop; anything else makes it retry (rejections do not become valid,
    an ``error`` — storage down — should be retried)."""
    reason: str
    """The rejection reason, or the invoice outcome (paid, pending, denied, refunded, …)."""
    detail: str = ""
    event_type: str | None = None
    transmission_id: str | None = None
    change: Change | None = None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:  # a plain dict: look case-insensitively
        lowered = name.lower()
        for key, val in headers.items():
            if key.lower() == lowered:
                return val
    return value


def cert_url_allowed(url: str, pinned: tuple[str, ...]) -> bool:
    """``url`` is a certificate path on one of the pinned origins (bare host = https only)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username or parts.password or parts.query or parts.fragment or not parts.hostname:
        return False
    if not parts.path.startswith(CERT_PATH_PREFIX) or ".." in parts.path:
        return False
    scheme, host = parts.scheme.lower(), parts.hostname.lower()
    default_port = {"https": 443, "http": 80}.get(scheme)
    for entry in pinned:
        entry = entry.strip().lower().rstrip("/")
        if "://" in entry:
            pin = urlsplit(entry)
            pin_port = pin.port or {"https": 443, "http": 80}.get(pin.scheme)
            if scheme == pin.scheme and host == pin.hostname and (port or default_port) == pin_port:
                return True
        elif scheme == "https" and host == entry and (port or 443) == 443:
            return True
    return False


class WebhookVerifier:
    """Checks PayPal webhook transmissions. One per process (it caches certificates per URL)."""

    def __init__(self, config: PayPalConfig, *, clock: Callable[[], float] = time.time, cert_ttl: float = 3600.0,
                 failure_ttl: float = 300.0, max_fetches_per_minute: int = 10):
        self.config = config
        self.clock = clock
        """Wall clock (epoch seconds) for the freshness check: PayPal's times are real times."""
        self.cert_ttl = cert_ttl
        self.failure_ttl = failure_ttl
        """A URL whose fetch failed is not fetched again for this long (PayPal retries a webhook
        for days, so a genuine one refused meanwhile still arrives)."""
        self.max_fetches_per_minute = max_fetches_per_minute
        self._certs: dict[str, tuple[x509.Certificate | Rejected, float]] = {}
        self._fetch_times: list[float] = []
        self._fetch_lock = asyncio.Lock()

    async def verify(self, headers: Mapping[str, str], raw_body: bytes) -> Verified | Rejected:
        tid = _header(headers, "PAYPAL-TRANSMISSION-ID")
        ttime = _header(headers, "PAYPAL-TRANSMISSION-TIME")
        sig = _header(headers, "PAYPAL-TRANSMISSION-SIG")
        cert_url = _header(headers, "PAYPAL-CERT-URL")
        algo = _header(headers, "PAYPAL-AUTH-ALGO")
        missing = [n for n, v in (("PAYPAL-TRANSMISSION-ID", tid), ("PAYPAL-TRANSMISSION-TIME", ttime),
                                  ("PAYPAL-TRANSMISSION-SIG", sig), ("PAYPAL-CERT-URL", cert_url),
                                  ("PAYPAL-AUTH-ALGO", algo)) if not v]
        if missing:
            return Rejected("missing_headers", f"missing {', '.join(missing)}", tid)
        if len(tid) > 100:
            return Rejected("missing_headers", "PAYPAL-TRANSMISSION-ID longer than 100 characters", tid[:100])
        if algo != AUTH_ALGO:
            return Rejected("bad_algorithm", f"PAYPAL-AUTH-ALGO {algo!r} is not {AUTH_ALGO}", tid)
        if not cert_url_allowed(cert_url, self.config.cert_hosts):
            return Rejected("cert_host", f"certificate URL {cert_url[:200]!r} is not on a pinned PayPal host", tid)
        sent = parse_transmission_time(ttime)
        if sent is None:
            return Rejected("stale", f"PAYPAL-TRANSMISSION-TIME {ttime!r} is not an RFC 3339 time", tid)
        age = self.clock() - sent
        if abs(age) > self.config.webhook_max_age:
            return Rejected("stale", f"transmitted {age:.0f}s from now (limit {self.config.webhook_max_age:.0f}s)", tid)
        try:
            signature = base64.b64decode(sig, validate=True)
        except (binascii.Error, ValueError):
            return Rejected("forged", "PAYPAL-TRANSMISSION-SIG is not base64", tid)
        cert = await self._certificate(cert_url)
        if isinstance(cert, Rejected):
            return Rejected(cert.reason, cert.detail, tid)
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            return Rejected("bad_certificate", "the certificate does not hold an RSA key", tid)
        try:
            key.verify(signature, signed_message(tid, ttime, self.config.webhook_id, raw_body),
                       padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return Rejected("forged", "signature does not match the body, transmission and webhook id", tid)
        try:
            event = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            return Rejected("bad_json", "body is not JSON", tid)
        if not isinstance(event, dict) or not isinstance(event.get("event_type"), str):
            return Rejected("bad_json", "body is not a webhook event", tid)
        return Verified(tid, ttime, event)

    async def _certificate(self, url: str) -> x509.Certificate | Rejected:
        now = self.clock()
        cached = self._certs.get(url)
        if cached is None or cached[1] < now:
            async with self._fetch_lock:
                cached = self._certs.get(url)
                if cached is None or cached[1] < now:
                    self._fetch_times = [t for t in self._fetch_times if t > now - 60]
                    if len(self._fetch_times) >= self.max_fetches_per_minute:
                        return Rejected("cert_unavailable", f"more than {self.max_fetches_per_minute} certificate "
                                                            "fetches in a minute; not fetched")
                    self._fetch_times.append(now)
                    fetched = await self._fetch(url)
                    if len(self._certs) >= 32:
                        # Keep the good certificates: only failures and expired entries go first.
                        self._certs = {u: c for u, c in self._certs.items()
                                       if not isinstance(c[0], Rejected) and c[1] >= now}
                        if len(self._certs) >= 32:
                            self._certs.clear()
                    ttl = self.failure_ttl if isinstance(fetched, Rejected) else self.cert_ttl
                    cached = (fetched, now + ttl)
                    self._certs[url] = cached
        cert = cached[0]
        if isinstance(cert, Rejected):
            return cert
        when = dt.datetime.fromtimestamp(now, tz=dt.timezone.utc)
        if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
            return Rejected("bad_certificate", "the signing certificate is not valid now")
        return cert

    async def _fetch(self, url: str) -> x509.Certificate | Rejected:
        try:
            timeout = aiohttp.ClientTimeout(total=self.config.timeout)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                async with session.get(url, allow_redirects=False) as resp:
                    if resp.status != 200:
                        return Rejected("cert_unavailable", f"certificate URL answered {resp.status}")
                    pem = await resp.content.read(MAX_CERT + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            return Rejected("cert_unavailable", f"certificate not fetched: {exc!r}")
        if len(pem) > MAX_CERT:
            return Rejected("bad_certificate", "certificate larger than 64 KiB")
        try:
            return x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            return Rejected("bad_certificate", f"not a PEM certificate: {exc}")


# ------------------------------------------------------------------------------- the handler
def _event_facts(event: dict) -> tuple[Any, Any] | None:
    """(transaction function, facts) for the events we act on; None for the rest."""
    etype = event.get("event_type")
    resource = event.get("resource")
    if not isinstance(resource, dict):
        return None
    if etype in CAPTURE_EVENTS:
        return invoices.apply_capture_tx, capture_from_json(resource).facts()
    if etype in REFUND_EVENTS:
        refund = refund_from_json(resource)
        if refund.capture_id is not None:
            return invoices.apply_refund_tx, refund.facts(REFUND_EVENTS[etype])
        if etype == "PAYMENT.CAPTURE.REVERSED" and resource.get("id"):
            # A reversal reported on the capture itself (no reversal id of its own): key it by the
            # capture, distinct from the payment's key, so it still debits once.
            cap = capture_from_json(resource)
            facts = cap.facts()
            return invoices.apply_refund_tx, invoices.RefundFacts(
                paypal_id=f"{cap.id}-REVERSAL", capture_id=cap.id, kind="reversal", amount=facts.amount,
                currency=facts.currency, status="COMPLETED", amount_text=facts.amount_text)
    return None


_REPLAY = object()


async def handle_webhook(core, headers: Mapping[str, str], raw_body: bytes, *, verifier: WebhookVerifier | None = None,
                         peer: str | None = None) -> WebhookResult:
    """Verify and apply one PayPal webhook transmission (``raw_body`` exactly as received)."""
    verifier = verifier or default_verifier()
    checked = await verifier.verify(headers, raw_body)
    if isinstance(checked, Rejected):
        log.warning("paypal webhook rejected: %s (%s) transmission=%s peer=%s", checked.reason, checked.detail,
                    checked.transmission_id, peer or "-")
        return WebhookResult("rejected", 400, checked.reason, checked.detail, transmission_id=checked.transmission_id)

    event = checked.event
    etype = event["event_type"]
    tid = checked.transmission_id
    action = _event_facts(event)

    def tx(conn):
        if invoices.seen_transmission_tx(conn, tid):
            return _REPLAY
        now = core.clock.now_ms()
        change = action[0](conn, core, action[1], "webhook", now) if action else None
        outcome = change.outcome if change is not None else "ignored"
        invoices.record_transmission_tx(conn, transmission_id=tid, event_id=event.get("id"), event_type=etype,
                                        outcome=outcome, detail=change.message if change else "", now=now)
        return change

    try:
        try:
            change = await core.store.run(tx)
        except IntegrityError:  # the same transmission (or capture) committed by another worker meanwhile
            change = await core.store.run(tx)
    except (StorageError, IntegrityError, OSError) as exc:
        log.error("paypal webhook %s (%s) not applied, PayPal will retry: %s", tid, etype, exc)
        return WebhookResult("error", 503, "billing_unavailable", str(exc), etype, tid)

    if change is _REPLAY:
        log.warning("paypal webhook rejected: replayed transmission=%s event=%s peer=%s", tid, etype, peer or "-")
        return WebhookResult("rejected", 409, "replayed", "transmission already accepted", etype, tid)
    if change is None:
        log.info("paypal webhook %s (%s) ignored: not an event callgate acts on", tid, etype)
        return WebhookResult("ignored", 200, "ignored", f"{etype} changes nothing", etype, tid)
    log.info("paypal webhook %s (%s): %s", tid, etype, change.message)
    return WebhookResult("processed", 200, change.outcome, change.message, etype, tid, change)


_default: WebhookVerifier | None = None


def default_verifier() -> WebhookVerifier:
    """A verifier from the configuration ([paypal]: CALLGATE_PAYPAL_*), made once per process."""
    global _default
    if _default is None:
        _default = WebhookVerifier(cfgmod.paypal_config(cfgmod.load()))
    return _default


WEBHOOK_RESULTS = Counter("callgate_paypal_webhooks_total", "PayPal webhook deliveries by outcome", ["status", "reason"])


def paypal_routes(core, *, verifier: WebhookVerifier | None = None, path: str = "/paypal/webhook") -> list[web.RouteDef]:
    """aiohttp routes for PayPal's webhook POSTs (exempt them from CSRF: PayPal signs them)."""

    async def webhook(request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_BODY:
            return web.json_response({"status": "rejected", "reason": "too_large"}, status=413)
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return web.json_response({"status": "rejected", "reason": "too_large"}, status=413)
        result = await handle_webhook(core, request.headers, raw, verifier=verifier, peer=request.remote)
        WEBHOOK_RESULTS.labels(result.status, result.reason or "").inc()
        return web.json_response({"status": result.status, "reason": result.reason}, status=result.http_status)

    return [web.post(path, webhook)]
