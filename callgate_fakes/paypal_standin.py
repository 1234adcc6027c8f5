"""A PayPal stand-in: the slice of PayPal's REST API and checkout pages that callgate uses, on
127.0.0.1, for tests and the demo.

It serves OAuth tokens, Orders v2 (create, get, capture with ``PayPal-Request-Id`` replay),
captures and refunds, an approval page ("Pay with PayPal", "Pay with card", "Pay by eCheque",
"Cancel and return"), its own RSA signing key with a self-signed certificate at
``/v1/notifications/certs/…``, and it POSTs webhooks signed exactly as PayPal signs them.

Tests drive the rest through hooks: :meth:`PayPalStandIn.complete_pending`, :meth:`deny`,
:meth:`reverse`, :meth:`refund`, :meth:`send_webhook` (with tamper options), :meth:`approve`.

Run it for a demo: ``python -m callgate_fakes.paypal_standin --port 8099 --webhook-url URL`` prints the
CALLGATE_PAYPAL_* settings that point callgate at it.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import dataclasses
import datetime as dt
import functools
import html
import itertools
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from billing_core.domain.money import AmountError, format_amount, parse_amount
from callgate import config as cfgmod
from callgate.paypal.config import PayPalConfig
from callgate.paypal.webhook import AUTH_ALGO, signed_message

log = logging.getLogger("callgate_fakes.paypal_standin")

CERT_NAME = "CERT-standin-0001"


def _iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_signing_key(common_name: str = "messageverificationcerts.standin.invalid",
                     *, valid_from: float | None = None, valid_days: float = 365) -> tuple[rsa.RSAPrivateKey, bytes]:
    """An RSA key and a self-signed PEM certificate for it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start = dt.datetime.fromtimestamp(valid_from if valid_from is not None else time.time() - 86400, tz=dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=valid_days))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@functools.lru_cache(maxsize=1)
def _process_key() -> tuple[rsa.RSAPrivateKey, bytes]:
    # One key per process: a 2048-bit key costs ~0.1 s to make and the suite starts many stand-ins.
    return make_signing_key()


@dataclass(frozen=True)
class SignedWebhook:
    """A webhook transmission as PayPal would POST it."""

    headers: dict[str, str]
    body: bytes
    event: dict

    @property
    def transmission_id(self) -> str:
        return self.headers["PAYPAL-TRANSMISSION-ID"]


@dataclass(frozen=True)
class Delivery:
    """One webhook POST and what the receiver answered."""

    webhook: SignedWebhook
    status: int
    """HTTP status (0: the receiver could not be reached)."""
    body: str


@dataclass
class _Order:
    id: str
    amount: dict
    custom_id: str | None
    reference_id: str | None
    description: str | None
    return_url: str | None
    cancel_url: str | None
    status: str = "CREATED"
    method: str | None = None
    payer_id: str | None = None
    capture_id: str | None = None
    created: float = field(default_factory=time.time)


@dataclass
class _Capture:
    id: str
    order_id: str
    amount: dict
    custom_id: str | None
    status: str
    reason: str | None = None
    refunded: int = 0


class PayPalStandIn:
    """The stand-in server. ``await PayPalStandIn(...).start()``; ``await standin.stop()``."""

    def __init__(self, *, client_id: str = "standin-client", secret: str = "standin-secret",
                 webhook_id: str = "WHSTANDIN0001", webhook_url: str | None = None, auto_webhooks: bool = True,
                 webhook_timing: str = "after", clock: Callable[[], float] = time.time, token_ttl: int = 32400,
                 fresh_key: bool = False):
        self.client_id = client_id
        self.secret = secret
        self.webhook_id = webhook_id
        self.webhook_url = webhook_url
        """Where signed webhooks are POSTed (None: nowhere)."""
        self.auto_webhooks = auto_webhooks
        """Send PAYMENT.CAPTURE.* webhooks on capture and refund, as PayPal does."""
        self.webhook_timing = webhook_timing
        """On capture: ``after`` the API answer (a background task), ``before`` it (delivered and
        answered first) or ``concurrent`` (started, not awaited: races the caller)."""
        self.clock = clock
        self.token_ttl = token_ttl
        # The signing key (fresh_key=False: shared by the stand-ins of this process).
        self.key, self.cert_pem = make_signing_key() if fresh_key else _process_key()
        self.orders: dict[str, _Order] = {}
        self.captures: dict[str, _Capture] = {}
        self.refunds: dict[str, dict] = {}
        self.tokens: set[str] = set()
        self.deliveries: list[Delivery] = []
        self.requests: list[tuple[str, str]] = []
        """(method, path) of every request, for assertions."""
        self.fail_next: dict[str, tuple[int, dict]] = {}
        """Inject an error: ``{"capture": (500, {...})}`` answers the next capture with it."""
        self._tampered: dict[str, dict] = {}
        self._idempotent: dict[str, tuple[int, dict]] = {}
        self._ids = itertools.count(1)
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # ---------------------------------------------------------------------------- lifecycle
    async def start(self, host: str = "127.0.0.1", port: int = 0) -> "PayPalStandIn":
        app = web.Application()
        app.add_routes([
            web.post("/v1/oauth2/token", self._token),
            web.post("/v2/checkout/orders", self._create_order),
            web.get("/v2/checkout/orders/{id}", self._get_order),
            web.post("/v2/checkout/orders/{id}/capture", self._capture),
            web.get("/v2/payments/captures/{id}", self._get_capture),
            web.post("/v2/payments/captures/{id}/refund", self._refund_api),
            web.get("/v2/payments/refunds/{id}", self._get_refund),
            web.get("/v1/notifications/certs/{name}", self._cert),
            web.get("/checkoutnow", self._approval_page),
            web.post("/checkoutnow/{id}", self._approval_post),
        ])
        app.middlewares.append(self._log_requests)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = site._server.sockets[0].getsockname()  # port 0: the OS picked one
        self.base_url = f"http://{bound[0]}:{bound[1]}"
        return self

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "PayPalStandIn":
        return await self.start()

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    @property
    def cert_url(self) -> str:
        return f"{self.base_url}/v1/notifications/certs/{CERT_NAME}"

    def env(self) -> dict[str, str]:
        """The CALLGATE_PAYPAL_* settings that point callgate at this stand-in."""
        return {
            "CALLGATE_PAYPAL_CLIENT_ID": self.client_id, "CALLGATE_PAYPAL_SECRET": self.secret,
            "CALLGATE_PAYPAL_WEBHOOK_ID": self.webhook_id, "CALLGATE_PAYPAL_BASE_URL": self.base_url,
            "CALLGATE_PAYPAL_CERT_HOSTS": self.base_url,
        }

    def config(self, **overrides: Any) -> PayPalConfig:
        return dataclasses.replace(cfgmod.paypal_config(cfgmod.load(None, environ=self.env())), **overrides)

    # ------------------------------------------------------------------------------ helpers
    def _new_id(self, prefix: str) -> str:
        # PayPal ids look like 17 upper-case letters/digits; a prefix letter tells them apart here.
        return f"{prefix}{next(self._ids):04d}{secrets.token_hex(6).upper()}"

    @web.middleware
    async def _log_requests(self, request: web.Request, handler):
        self.requests.append((request.method, request.path))
        return await handler(request)

    def _authorized(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        return auth.startswith("Bearer ") and auth[7:] in self.tokens

    @staticmethod
    def _err(status: int, name: str, message: str, issue: str | None = None) -> web.Response:
        body: dict[str, Any] = {"name": name, "message": message, "debug_id": secrets.token_hex(6)}
        if issue:
            body["details"] = [{"issue": issue, "description": message}]
        return web.json_response(body, status=status)

    def _order_json(self, order: _Order) -> dict:
        unit: dict[str, Any] = {"reference_id": order.reference_id or "default", "amount": order.amount}
        if order.custom_id is not None:
            unit["custom_id"] = order.custom_id
        if order.description:
            unit["description"] = order.description
        if order.capture_id:
            unit["payments"] = {"captures": [self._capture_json(self.captures[order.capture_id])]}
        links = [{"href": f"{self.base_url}/v2/checkout/orders/{order.id}", "rel": "self", "method": "GET"}]
        if order.status == "CREATED":
            links.append({"href": f"{self.base_url}/checkoutnow?token={order.id}", "rel": "approve", "method": "GET"})
        if order.status == "APPROVED":
            links.append({"href": f"{self.base_url}/v2/checkout/orders/{order.id}/capture", "rel": "capture",
                          "method": "POST"})
        return {"id": order.id, "intent": "CAPTURE", "status": order.status, "purchase_units": [unit], "links": links}

    def _capture_json(self, cap: _Capture) -> dict:
        out: dict[str, Any] = {
            "id": cap.id, "status": cap.status, "amount": dict(cap.amount), "final_capture": True,
            "supplementary_data": {"related_ids": {"order_id": cap.order_id}},
            "links": [{"href": f"{self.base_url}/v2/payments/captures/{cap.id}", "rel": "self", "method": "GET"},
                      {"href": f"{self.base_url}/v2/payments/captures/{cap.id}/refund", "rel": "refund",
                       "method": "POST"},
                      {"href": f"{self.base_url}/v2/checkout/orders/{cap.order_id}", "rel": "up", "method": "GET"}],
        }
        if cap.custom_id is not None:
            out["custom_id"] = cap.custom_id
        if cap.reason:
            out["status_details"] = {"reason": cap.reason}
        return out

    def _refund_json(self, refund: dict) -> dict:
        return {
            "id": refund["id"], "status": refund["status"], "amount": dict(refund["amount"]),
            "note_to_payer": refund.get("note"),
            "links": [{"href": f"{self.base_url}/v2/payments/refunds/{refund['id']}", "rel": "self", "method": "GET"},
                      {"href": f"{self.base_url}/v2/payments/captures/{refund['capture_id']}", "rel": "up",
                       "method": "GET"}],
        }

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --------------------------------------------------------------------------------- REST
    async def _token(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        expected = base64.b64encode(f"{self.client_id}:{self.secret}".encode()).decode()
        form = await request.post()
        if auth != f"Basic {expected}":
            return web.json_response({"error": "invalid_client", "error_description": "Client Authentication failed"},
                                     status=401)
        if form.get("grant_type") != "client_credentials":
            return web.json_response({"error": "unsupported_grant_type", "error_description": "grant_type"}, status=400)
        token = f"A21AA{secrets.token_urlsafe(24)}"
        self.tokens.add(token)
        return web.json_response({"scope": "https://uri.paypal.com/services/payments/payment", "access_token": token,
                                  "token_type": "Bearer", "app_id": "APP-STANDIN", "expires_in": self.token_ttl,
                                  "nonce": secrets.token_hex(8)})

    async def _create_order(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed due to invalid authentication credentials")
        try:
            body = await request.json()
            unit = body["purchase_units"][0]
            amount = {"currency_code": str(unit["amount"]["currency_code"]), "value": str(unit["amount"]["value"])}
        except (ValueError, KeyError, IndexError, TypeError):
            return self._err(400, "INVALID_REQUEST", "Request is not well-formed", "MALFORMED_REQUEST_JSON")
        if body.get("intent") != "CAPTURE":
            return self._err(422, "UNPROCESSABLE_ENTITY", "intent must be CAPTURE", "INTENT_NOT_SUPPORTED")
        try:
            if parse_amount(amount["value"], decimals=2, allow_negative=False) <= 0:
                raise AmountError("value", amount["value"], "must be positive")
        except AmountError:
            return self._err(422, "UNPROCESSABLE_ENTITY", "amount value is invalid", "DECIMAL_PRECISION")
        ctx = body.get("application_context") or \
            ((body.get("payment_source") or {}).get("paypal") or {}).get("experience_context") or {}
        order = _Order(id=self._new_id("O"), amount=amount, custom_id=unit.get("custom_id"),
                       reference_id=unit.get("reference_id"), description=unit.get("description"),
                       return_url=ctx.get("return_url"), cancel_url=ctx.get("cancel_url"))
        self.orders[order.id] = order
        return web.json_response(self._order_json(order), status=201)

    async def _get_order(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return self._err(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")
        return web.json_response(self._order_json(order))

    def _replay(self, request_id: str | None) -> web.Response | None:
        """PayPal answers a repeated PayPal-Request-Id with its first answer."""
        if request_id and request_id in self._idempotent:
            status, body = self._idempotent[request_id]
            return web.json_response(body, status=status)
        return None

    async def _capture(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        request_id = request.headers.get("PayPal-Request-Id")
        replay = self._replay(request_id)
        if replay is not None:
            return replay
        if "capture" in self.fail_next:
            status, body = self.fail_next.pop("capture")
            return web.json_response(body, status=status)
        order = self.orders.get(request.match_info["id"])
        if order is None:
            return self._err(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")
        if order.status == "COMPLETED":
            return self._err(422, "UNPROCESSABLE_ENTITY", "Order already captured.", "ORDER_ALREADY_CAPTURED")
        if order.status != "APPROVED":
            return self._err(422, "UNPROCESSABLE_ENTITY", "Payer has not yet approved the Order for payment.",
                             "ORDER_NOT_APPROVED")
        echeque = order.method == "echeque"
        amount = dict(self._tampered.pop(order.id, order.amount))
        cap = _Capture(id=self._new_id("C"), order_id=order.id, amount=amount, custom_id=order.custom_id,
                       status="PENDING" if echeque else "COMPLETED", reason="ECHECK" if echeque else None)
        self.captures[cap.id] = cap
        order.status = "COMPLETED"
        order.capture_id = cap.id
        body = self._order_json(order)
        body["payer"] = {"payer_id": order.payer_id, "email_address": "customer@standin.invalid"}
        if request_id:
            self._idempotent[request_id] = (201, body)
        if self.auto_webhooks and self.webhook_url:
            event = "PAYMENT.CAPTURE.PENDING" if echeque else "PAYMENT.CAPTURE.COMPLETED"
            signed = self.build_webhook(event, self._capture_json(cap))
            if self.webhook_timing == "before":
                await self.deliver(signed)
            elif self.webhook_timing == "concurrent":
                self._spawn(self.deliver(signed))
                await asyncio.sleep(0)  # let the webhook POST start before the API answers
            else:
                self._spawn(self._deliver_later(signed))
        return web.json_response(body, status=201)

    async def _deliver_later(self, signed: SignedWebhook) -> None:
        await asyncio.sleep(0.01)  # PayPal's webhooks trail the API answer
        await self.deliver(signed)

    async def _get_capture(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        cap = self.captures.get(request.match_info["id"])
        if cap is None:
            return self._err(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")
        return web.json_response(self._capture_json(cap))

    async def _refund_api(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        request_id = request.headers.get("PayPal-Request-Id")
        replay = self._replay(request_id)
        if replay is not None:
            return replay
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            return self._err(400, "INVALID_REQUEST", "Request is not well-formed", "MALFORMED_REQUEST_JSON")
        amount = (body or {}).get("amount")
        result = self._make_refund(request.match_info["id"], amount and str(amount.get("value")),
                                   note=(body or {}).get("note_to_payer"))
        if isinstance(result, web.Response):
            return result
        refund, cap = result
        out = self._refund_json(refund)
        if request_id:
            self._idempotent[request_id] = (201, out)
        if self.auto_webhooks and self.webhook_url:
            self._spawn(self._deliver_later(self.build_webhook("PAYMENT.CAPTURE.REFUNDED", out)))
        return web.json_response(out, status=201)

    def _make_refund(self, capture_id: str, value: str | None, *, note: str | None = None, kind: str = "refund"):
        cap = self.captures.get(capture_id)
        if cap is None:
            return self._err(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")
        if cap.status not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return self._err(422, "UNPROCESSABLE_ENTITY", f"Capture is {cap.status}.", "CAPTURE_NOT_REFUNDABLE"
                             if cap.status != "REFUNDED" else "CAPTURE_FULLY_REFUNDED")
        total = parse_amount(cap.amount["value"], decimals=2)
        left = total - cap.refunded
        try:
            micro = left if value is None else parse_amount(value, decimals=2, allow_negative=False)
        except AmountError:
            return self._err(422, "UNPROCESSABLE_ENTITY", "amount value is invalid", "DECIMAL_PRECISION")
        if micro <= 0 or micro > left:
            return self._err(422, "UNPROCESSABLE_ENTITY", "Refund amount exceeds the capture.",
                             "REFUND_AMOUNT_EXCEEDED")
        cap.refunded += micro
        if kind == "reversal":
            cap.status = "REVERSED"
        else:
            cap.status = "REFUNDED" if cap.refunded == total else "PARTIALLY_REFUNDED"
        refund = {"id": self._new_id("R" if kind == "refund" else "V"), "status": "COMPLETED", "capture_id": cap.id,
                  "amount": {"currency_code": cap.amount["currency_code"], "value": format_amount(micro)},
                  "note": note, "kind": kind}
        self.refunds[refund["id"]] = refund
        return refund, cap

    async def _get_refund(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return self._err(401, "AUTHENTICATION_FAILURE", "Authentication failed")
        refund = self.refunds.get(request.match_info["id"])
        if refund is None:
            return self._err(404, "RESOURCE_NOT_FOUND", "The specified resource does not exist.", "INVALID_RESOURCE_ID")
        return web.json_response(self._refund_json(refund))

    async def _cert(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != CERT_NAME:
            return web.Response(status=404, text="no such certificate")
        return web.Response(body=self.cert_pem, content_type="application/x-pem-file")

    # ------------------------------------------------------------------------ approval page
    async def _approval_page(self, request: web.Request) -> web.Response:
        order = self.orders.get(request.query.get("token", ""))
        if order is None:
            return web.Response(status=404, text="This checkout session does not exist.")
        if order.status != "CREATED":
            return web.Response(status=409, text=f"This order is {order.status.lower()}.")
        esc = html.escape
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PayPal (stand-in) checkout</title>
<style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}button{{display:block;width:100%;margin:.5em 0;
padding:.8em;font-size:1em}}.amount{{font-size:1.6em}}</style></head>
<body><h1>PayPal <small>(stand-in)</small></h1>
<p>{esc(order.description or "Payment")}</p>
<p class="amount" id="amount">{esc(order.amount["value"])} {esc(order.amount["currency_code"])}</p>
<form method="post" action="/checkoutnow/{esc(order.id)}">
<button type="submit" name="action" value="paypal" id="pay-paypal">Pay with PayPal</button>
<button type="submit" name="action" value="card" id="pay-card">Pay with card</button>
<button type="submit" name="action" value="echeque" id="pay-echeque">Pay by eCheque</button>
<button type="submit" name="action" value="cancel" id="cancel">Cancel and return</button>
</form></body></html>"""
        return web.Response(text=page, content_type="text/html")

    async def _approval_post(self, request: web.Request) -> web.Response:
        form = await request.post()
        try:
            location = self.approve(request.match_info["id"], str(form.get("action", "")))
        except LookupError as exc:
            return web.Response(status=409, text=str(exc))
        raise web.HTTPSeeOther(location)

    def approve(self, order_id: str, method: str = "paypal") -> str:
        """The buyer's choice on the approval page; returns the redirect URL (return or cancel)."""
        order = self.orders.get(order_id)
        if order is None or order.status != "CREATED":
            raise LookupError(f"order {order_id} cannot be approved now")
        if method == "cancel":
            return _with_query(order.cancel_url or "/", {"token": order.id})
        if method not in ("paypal", "card", "echeque"):
            raise LookupError(f"unknown payment method {method!r}")
        order.status = "APPROVED"
        order.method = method
        order.payer_id = f"PAYER{secrets.token_hex(4).upper()}"
        return _with_query(order.return_url or "/", {"token": order.id, "PayerID": order.payer_id})

    # ------------------------------------------------------------------------- test hooks
    def tamper_capture(self, order_id: str, *, value: str | None = None, currency: str | None = None) -> None:
        """The next capture of ``order_id`` reports another amount/currency than the order's."""
        order = self.orders[order_id]
        self._tampered[order_id] = {"currency_code": currency or order.amount["currency_code"],
                                    "value": value or order.amount["value"]}

    async def complete_pending(self, capture_id: str) -> Delivery | None:
        """The eCheque cleared: the capture COMPLETES and PAYMENT.CAPTURE.COMPLETED is sent."""
        cap = self.captures[capture_id]
        cap.status, cap.reason = "COMPLETED", None
        return await self._notify("PAYMENT.CAPTURE.COMPLETED", self._capture_json(cap))

    async def deny(self, capture_id: str) -> Delivery | None:
        """The eCheque bounced: the capture is DECLINED and PAYMENT.CAPTURE.DENIED is sent."""
        cap = self.captures[capture_id]
        cap.status, cap.reason = "DECLINED", None
        return await self._notify("PAYMENT.CAPTURE.DENIED", self._capture_json(cap))

    async def refund(self, capture_id: str, value: str | None = None) -> tuple[dict, Delivery | None]:
        """A refund made in PayPal's dashboard (all, or ``value``); PAYMENT.CAPTURE.REFUNDED is sent."""
        result = self._make_refund(capture_id, value)
        if isinstance(result, web.Response):
            raise ValueError(f"refund refused: {result.text}")
        out = self._refund_json(result[0])
        return out, await self._notify("PAYMENT.CAPTURE.REFUNDED", out)

    async def reverse(self, capture_id: str, value: str | None = None) -> tuple[dict, Delivery | None]:
        """A chargeback: PAYMENT.CAPTURE.REVERSED with its own id (a refund-like resource)."""
        result = self._make_refund(capture_id, value, kind="reversal", note="Payment reversed")
        if isinstance(result, web.Response):
            raise ValueError(f"reversal refused: {result.text}")
        out = self._refund_json(result[0])
        return out, await self._notify("PAYMENT.CAPTURE.REVERSED", out)

    async def _notify(self, event_type: str, resource: dict) -> Delivery | None:
        if not self.webhook_url:
            return None
        return await self.deliver(self.build_webhook(event_type, resource))

    def build_webhook(self, event_type: str, resource: dict, *, transmission_id: str | None = None,
                      transmission_time: str | None = None, age: float = 0.0, webhook_id: str | None = None,
                      cert_url: str | None = None, signing_key: rsa.RSAPrivateKey | None = None,
                      tamper_body: bool = False, bad_signature: bool = False, auth_algo: str = AUTH_ALGO) -> SignedWebhook:
        """A signed webhook transmission. Tamper options make forgeries for tests: ``tamper_body``
        (body changed after signing), ``bad_signature`` (random bytes), ``signing_key`` (someone
        else's key), ``webhook_id`` (signed for another webhook), ``cert_url`` (another host),
        ``age`` (seconds in the past: stale)."""
        event = {
            "id": f"WH-{uuid.uuid4().hex[:20].upper()}", "event_version": "1.0", "create_time": _iso(self.clock()),
            "resource_type": "capture" if event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.PENDING",
                                                         "PAYMENT.CAPTURE.DENIED") else "refund",
            "resource_version": "2.0", "event_type": event_type,
            "summary": f"{event_type.split('.')[-1].title()} {resource.get('amount', {}).get('value', '')}",
            "resource": resource,
        }
        body = json.dumps(event, separators=(",", ":")).encode()
        tid = transmission_id or str(uuid.uuid1())
        ttime = transmission_time or _iso(self.clock() - age)
        message = signed_message(tid, ttime, webhook_id or self.webhook_id, body)
        sig = (signing_key or self.key).sign(message, padding.PKCS1v15(), hashes.SHA256())
        if bad_signature:
            sig = secrets.token_bytes(len(sig))
        if tamper_body:
            event = json.loads(body)
            event["resource"]["amount"] = {**event["resource"].get("amount", {}), "value": "1000.00"}
            body = json.dumps(event, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json", "PAYPAL-TRANSMISSION-ID": tid, "PAYPAL-TRANSMISSION-TIME": ttime,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(sig).decode(), "PAYPAL-CERT-URL": cert_url or self.cert_url,
            "PAYPAL-AUTH-ALGO": auth_algo,
        }
        return SignedWebhook(headers, body, event)

    async def send_webhook(self, event_type: str, resource: dict, **tamper: Any) -> Delivery:
        """Build (see :meth:`build_webhook` for tamper options) and POST a webhook now."""
        return await self.deliver(self.build_webhook(event_type, resource, **tamper))

    def capture_resource(self, capture_id: str) -> dict:
        """A capture as webhook resource (for hand-made events)."""
        return self._capture_json(self.captures[capture_id])

    async def deliver(self, signed: SignedWebhook, url: str | None = None) -> Delivery:
        """POST ``signed`` exactly as built (deliver it twice to replay it)."""
        target = url or self.webhook_url
        if not target:
            raise ValueError("no webhook URL configured")
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
                async with session.post(target, data=signed.body, headers=signed.headers) as resp:
                    delivery = Delivery(signed, resp.status, await resp.text())
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            delivery = Delivery(signed, 0, repr(exc))
        self.deliveries.append(delivery)
        return delivery

    async def settle(self) -> None:
        """Wait until every webhook the stand-in started has been delivered."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)


def _with_query(url: str, params: dict[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


async def _serve(port: int, webhook_url: str | None) -> None:  # pragma: no cover - demo entry point
    standin = await PayPalStandIn(webhook_url=webhook_url).start(port=port)
    for key, value in standin.env().items():
        print(f"export {key}={value}")
    print(f"# PayPal stand-in on {standin.base_url}; webhooks to {webhook_url or '(none)'}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await standin.stop()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - demo entry point
    parser = argparse.ArgumentParser(description="PayPal stand-in for callgate demos and tests (127.0.0.1 only).")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--webhook-url", default=None, help="where to POST signed webhooks, e.g. "
                        "http://127.0.0.1:8080/paypal/webhook")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve(args.port, args.webhook_url))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":  # pragma: no cover
    main()
