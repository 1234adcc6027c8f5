"""Shared bits of the sidecar tests."""
from __future__ import annotations

import json

from sqlalchemy import select

from billing_core.domain.money import parse_amount
from billing_core.mail.render import Renderer
from billing_core.mail.smtp import SmtpSender, SmtpSettings
from billing_core.sidecar import Sidecar, SidecarSettings
from billing_core.sidecar.outbox import OutboxSettings
from billing_core.store.tables import accounts, outbox

FAST_OUTBOX = OutboxSettings(backoff_base_seconds=1, backoff_max_seconds=8, lease_seconds=60)


def make_sidecar(core, port: int, **overrides) -> Sidecar:
    settings = SidecarSettings(**{"debit_interval": 0.05, "outbox": FAST_OUTBOX, **overrides})
    sender = SmtpSender(SmtpSettings(host="127.0.0.1", port=port, mail_from="billing@voip.test", timeout=5))
    return Sidecar(core, settings, core.clock, sender=sender, renderer=Renderer())


async def outbox_rows(core) -> list[dict]:
    def tx(conn):
        return [dict(r) for r in conn.execute(select(outbox).order_by(outbox.c.id)).mappings()]

    rows = await core.store.run(tx)
    for r in rows:
        r["context"] = json.loads(r["context"])
    return rows


async def account_row(core, ref: str) -> dict:
    def tx(conn):
        return dict(conn.execute(select(accounts).where(accounts.c.ref == ref)).mappings().one())

    return await core.store.run(tx)


async def debit(core, ref: str, amount: str, key: str | None = None):
    # explicitly allowed below the credit limit: these tests model negative balances on purpose
    return await core.credit(ref, -parse_amount(amount), "test debit", kind="debit", idempotency_key=key,
                             allow_below_limit=True)


async def pay(core, ref: str, amount: str, key: str | None = None):
    return await core.credit(ref, parse_amount(amount), "PayPal top-up", kind="payment", idempotency_key=key)
