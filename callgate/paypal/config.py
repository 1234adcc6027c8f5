"""PayPal settings (callgate.config.paypal_config fills them from [paypal]: file + environment)."""
from __future__ import annotations

from dataclasses import dataclass

SANDBOX_URL = "https://api-m.sandbox.paypal.com"

DEFAULT_CERT_HOSTS = ("api.paypal.com", "api-m.paypal.com", "api.sandbox.paypal.com", "api-m.sandbox.paypal.com")
"""Where PayPal serves its webhook signing certificates (over HTTPS)."""


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

    def problems(self) -> list[str]:
        """What is missing for checkout and webhooks to work (empty: ready)."""
        out = []
        for name, value in (("CLIENT_ID", self.client_id), ("SECRET", self.secret), ("WEBHOOK_ID", self.webhook_id)):
            if not value:
                out.append(f"CALLGATE_PAYPAL_{name} is not set")
        return out
