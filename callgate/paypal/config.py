"""PayPal settings, from the environment (the config file layer exports its [paypal] keys there)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

SANDBOX_URL = "https://api-m.sandbox.paypal.com"

DEFAULT_CERT_HOSTS = ("api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com")
"""Where PayPal serves its webhook signing certificates (over HTTPS)."""


class PayPalConfigError(ValueError):
    """A PayPal setting that cannot be used; the message names the variable."""


@dataclass(frozen=True)
class PayPalConfig:
    """How to reach PayPal (live, sandbox or the stand-in) and check its webhooks."""

    client_id: str
    """REST app client id (CALLGATE_PAYPAL_CLIENT_ID)."""
    secret: str
    """REST app secret (CALLGATE_PAYPAL_SECRET)."""
    webhook_id: str
    """The webhook id PayPal signs with (CALLGATE_PAYPAL_WEBHOOK_ID)."""
    base_url: str = SANDBOX_URL
    """REST base URL (CALLGATE_PAYPAL_BASE_URL)."""
    cert_hosts: tuple[str, ...] = DEFAULT_CERT_HOSTS
    """Pinned hosts for PAYPAL-CERT-URL (CALLGATE_PAYPAL_CERT_HOSTS, comma-separated). A bare host
    means ``https://host``; ``scheme://host:port`` pins exactly that origin (tests, the stand-in)."""
    webhook_max_age: float = 300.0
    """Seconds a webhook transmission stays acceptable, either side of now (CALLGATE_PAYPAL_WEBHOOK_MAX_AGE)."""
    timeout: float = 20.0
    """Seconds for one HTTP exchange with PayPal (CALLGATE_PAYPAL_TIMEOUT)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "PayPalConfig":
        env = os.environ if environ is None else environ

        def get(name: str, default: str = "") -> str:
            return env.get(f"CALLGATE_PAYPAL_{name}", default).strip()

        def seconds(name: str, default: float) -> float:
            text = get(name)
            if not text:
                return default
            try:
                value = float(text)
            except ValueError:
                raise PayPalConfigError(f"CALLGATE_PAYPAL_{name}: must be a number of seconds (got {text!r})") from None
            if not value > 0:
                raise PayPalConfigError(f"CALLGATE_PAYPAL_{name}: must be > 0 (got {text!r})")
            return value

        hosts = tuple(h.strip() for h in get("CERT_HOSTS").split(",") if h.strip()) or DEFAULT_CERT_HOSTS
        base = get("BASE_URL", SANDBOX_URL).rstrip("/")
        if not base.startswith(("https://", "http://")):
            raise PayPalConfigError(f"CALLGATE_PAYPAL_BASE_URL: must be an http(s) URL (got {base!r})")
        return cls(client_id=get("CLIENT_ID"), secret=get("SECRET"), webhook_id=get("WEBHOOK_ID"), base_url=base,
                   cert_hosts=hosts, webhook_max_age=seconds("WEBHOOK_MAX_AGE", 300.0),
                   timeout=seconds("TIMEOUT", 20.0))

    def problems(self) -> list[str]:
        """What is missing for checkout and webhooks to work (empty: ready)."""
        out = []
        for name, value in (("CLIENT_ID", self.client_id), ("SECRET", self.secret), ("WEBHOOK_ID", self.webhook_id)):
            if not value:
                out.append(f"CALLGATE_PAYPAL_{name} is not set")
        return out
