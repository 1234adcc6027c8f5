"""Quick seeding for tests: a plan, a package, accounts with balances, endpoints and DIDs."""
from __future__ import annotations

from dataclasses import dataclass

from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate

DEFAULT_DECK = [
    # prefix, rate/min, connect fee, initial, increment
    Rate("1", 12_500, 0, 60, 6, "NANP"),
    Rate("1514", 10_000, 0, 60, 6, "Montreal"),
    Rate("44", 45_000, 15_000, 30, 6, "UK"),
]


@dataclass(frozen=True)
class Seeded:
    plan: str
    package: str
    account: str
    endpoint: str
    did: str | None


async def seed(
    core,
    *,
    account: str = "acme",
    endpoint: str | None = "alice",
    balance: str = "10.00",
    did: str | None = "15145551000",
    plan: str = "standard",
    package: str = "basic",
    deck: list[Rate] | None = None,
    low_balance: str = "5.00",
    max_calls: int = 10,
    inbound_rate: str = "0",
    credit_limit: str = "0",
    email: str | None = None,
    allow_regions: str | None = "*",
    block_types: str | None = "",
) -> Seeded:
    """Create (or reuse) plan + package, then a new account with ``balance`` credited.

    The package allows every destination (``allow_regions="*"``, no ``block_types``: what a package
    from before migration 0009 has) unless told otherwise (None: a new package's defaults): the
    tests seeded here call UK and fictional numbers and test other things than the toll-fraud
    rules (the defaults have their own tests: tests/core/test_destination_rules.py)."""
    admin = core.admin
    plans = await admin.store.run(lambda conn: conn.exec_driver_sql("select name from plans").scalars().all())
    if plan not in plans:
        await admin.import_plan(plan, deck or DEFAULT_DECK)
    await admin.add_package(package, plan=plan, low_balance=parse_amount(low_balance), max_calls=max_calls,
                            inbound_rate=parse_amount(inbound_rate, decimals=6), allow_regions=allow_regions,
                            block_types=block_types)
    await admin.add_account(account, name=account.title(), email=email or f"{account}@example.test", package=package,
                            credit_limit=parse_amount(credit_limit))
    amount = parse_amount(balance)
    if amount:
        await core.credit(account, amount, "opening balance", kind="credit", idempotency_key=f"seed:{account}")
    if endpoint:
        await admin.add_endpoint(account, endpoint)
    if did:
        await admin.add_did(did)
        await admin.assign_did(did, account, endpoint)
    return Seeded(plan, package, account, endpoint or "", did)
