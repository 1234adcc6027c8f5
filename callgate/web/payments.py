"""The PayPal side of the client area, built from the environment (placeholder until
callgate.paypal.checkout lands)."""
from __future__ import annotations


async def from_env(core):
    async def close() -> None:
        return None

    return None, None, close
