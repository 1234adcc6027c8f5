"""PayPal Orders v2 over aiohttp: OAuth token, create order, capture, refund.

Why not the official SDK: it is synchronous and cannot point at a local server; the REST calls we
need are few. Every call that moves money carries a ``PayPal-Request-Id`` so a retry (ours, or a
customer reloading the return page) gets PayPal's first answer instead of a second charge.
"""
from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any

import aiohttp

from .config import PayPalConfig
from .models import Order, Refund, capture_from_json, money_text, order_from_json, refund_from_json

log = logging.getLogger("callgate.paypal")


class PayPalError(Exception):
    """PayPal answered with an error (``status`` ≥ 400) or could not be reached (``status`` 0)."""

    def __init__(self, status: int, name: str, message: str, *, issue: str | None = None, debug_id: str | None = None):
        self.status = status
        self.name = name
        self.issue = issue
        """The first ``details[].issue`` (e.g. ORDER_ALREADY_CAPTURED, INSTRUMENT_DECLINED)."""
        self.debug_id = debug_id
        super().__init__(f"PayPal {status or 'unreachable'} {name}{f' ({issue})' if issue else ''}: {message}")

    @property
    def unreachable(self) -> bool:
        return self.status == 0


class PayPalClient:
    """One client per process; use as ``async with PayPalClient(config) as paypal``."""

    def __init__(self, config: PayPalConfig, *, session: aiohttp.ClientSession | None = None):
        self.config = config
        self._session = session
        self._own_session = session is None
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = asyncio.Lock()

    async def __aenter__(self) -> "PayPalClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.config.timeout))
            self._own_session = True
        return self._session

    # ------------------------------------------------------------------------------ plumbing
    async def access_token(self, *, refresh: bool = False) -> str:
        async with self._token_lock:
            if not refresh and self._token and time.monotonic() < self._token_expires:
                return self._token
            url = f"{self.config.base_url}/v1/oauth2/token"
            try:
                basic = base64.b64encode(f"{self.config.client_id}:{self.config.secret}".encode()).decode()
                async with self._http().post(
                    url, data={"grant_type": "client_credentials"},
                    headers={"Accept": "application/json", "Authorization": f"Basic {basic}"},
                ) as resp:
                    body = await _json(resp)
                    if resp.status != 200 or "access_token" not in body:
                        raise _error(resp.status, body)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise PayPalError(0, "UNREACHABLE", f"{url}: {exc!r}") from None
            self._token = str(body["access_token"])
            # Renew a minute early so a token never expires between our check and PayPal's.
            self._token_expires = time.monotonic() + max(float(body.get("expires_in", 300)) - 60, 1)
            return self._token

    async def _call(self, method: str, path: str, *, json: Any = None, request_id: str | None = None) -> tuple[int, dict]:
        url = f"{self.config.base_url}{path}"
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {await self.access_token(refresh=attempt == 2)}",
                       "Content-Type": "application/json", "Accept": "application/json",
                       "Prefer": "return=representation"}
            if request_id:
                headers["PayPal-Request-Id"] = request_id
            try:
                async with self._http().request(method, url, json=json, headers=headers) as resp:
                    body = await _json(resp)
                    status = resp.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                raise PayPalError(0, "UNREACHABLE", f"{method} {url}: {exc!r}") from None
            if status == 401 and attempt == 1:  # token revoked or expired early: fetch a new one once
                continue
            if status >= 400:
                raise _error(status, body)
            return status, body
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------------------------- API
    async def create_order(self, *, invoice_id: int | str, amount: int, currency: str, return_url: str, cancel_url: str,
                           description: str | None = None, request_id: str | None = None) -> Order:
        """An order to capture ``amount`` (micro-units, whole cents) for the invoice."""
        body = {
            "intent": "CAPTURE",
            "purchase_units": [{
                "reference_id": f"invoice-{invoice_id}",
                "custom_id": str(invoice_id),
                "description": description or f"Deposit, invoice {invoice_id}",
                "amount": {"currency_code": currency, "value": money_text(amount)},
            }],
            "application_context": {
                "return_url": return_url, "cancel_url": cancel_url, "user_action": "PAY_NOW",
                "shipping_preference": "NO_SHIPPING",
            },
        }
        _, data = await self._call("POST", "/v2/checkout/orders", json=body, request_id=request_id)
        order = order_from_json(data)
        if not order.id or not order.approval_url:
            raise PayPalError(502, "BAD_RESPONSE", "order without an id or an approval link")
        return order

    async def get_order(self, order_id: str) -> Order:
        _, data = await self._call("GET", f"/v2/checkout/orders/{_safe(order_id)}")
        return order_from_json(data)

    async def capture_order(self, order_id: str, *, request_id: str | None = None) -> Order:
        """Capture an approved order; the same ``request_id`` returns the first capture again."""
        _, data = await self._call("POST", f"/v2/checkout/orders/{_safe(order_id)}/capture", json={},
                                   request_id=request_id or f"capture-{order_id}")
        return order_from_json(data)

    async def get_capture(self, capture_id: str):
        _, data = await self._call("GET", f"/v2/payments/captures/{_safe(capture_id)}")
        return capture_from_json(data)

    async def refund_capture(self, capture_id: str, *, amount: int | None = None, currency: str | None = None,
                             request_id: str | None = None, note: str | None = None) -> Refund:
        """Refund all (``amount=None``) or part of a capture."""
        body: dict[str, Any] = {}
        if amount is not None:
            body["amount"] = {"value": money_text(amount), "currency_code": currency}
        if note:
            body["note_to_payer"] = note[:255]
        _, data = await self._call("POST", f"/v2/payments/captures/{_safe(capture_id)}/refund", json=body,
                                   request_id=request_id)
        refund = refund_from_json(data)
        if refund.capture_id is None:
            refund = Refund(refund.id, refund.status, refund.value, refund.currency, capture_id)
        return refund


def _safe(ident: str) -> str:
    """PayPal ids are letters, digits and dashes; anything else never reaches a URL path."""
    if not isinstance(ident, str) or not ident or len(ident) > 64 or not all(c.isalnum() or c in "-_" for c in ident):
        raise PayPalError(400, "INVALID_RESOURCE_ID", f"not a PayPal id: {ident!r}")
    return ident


async def _json(resp: aiohttp.ClientResponse) -> dict:
    try:
        data = await resp.json(content_type=None)
    except (ValueError, aiohttp.ContentTypeError):
        text = await resp.text()
        return {"name": "BAD_RESPONSE", "message": text[:200]}
    return data if isinstance(data, dict) else {"name": "BAD_RESPONSE", "message": repr(data)[:200]}


def _error(status: int, body: dict) -> PayPalError:
    details = body.get("details") or []
    issue = details[0].get("issue") if details and isinstance(details[0], dict) else None
    name = str(body.get("name") or body.get("error") or "ERROR")
    message = str(body.get("message") or body.get("error_description") or "")
    return PayPalError(status, name, message, issue=issue, debug_id=body.get("debug_id"))
