"""The call decision (billing_core/domain/authorize.py) on its own: driven by a tiny dict-backed
driver, no database, milliseconds per test. The two real drivers (SQLAlchemy in api.py, raw asyncpg
in store/pg_fast.py) perform these same effects; tests/core/test_authorize.py runs them."""
from __future__ import annotations

from typing import Any

import pytest

from billing_core.domain import authorize as steps
from billing_core.domain.errors import DenyReason
from billing_core.domain.lifecycle import ACTIVE, DEPLETED, PRE_SUSPENDED, SUSPENDED
from billing_core.domain.rating import Rate, RateTable, cost

LIMITS = steps.Limits(home_region="CA", max_call_seconds=4 * 3600, chunk_seconds=60, inbound_initial_increment=1,
                      inbound_increment=1)
DECK = RateTable({"1": Rate("1", 12_500, 0, 60, 6, "NANP"), "44": Rate("44", 45_000, 15_000, 30, 6, "UK"),
                  "1800": Rate("1800", 0, 0, 1, 1, "toll free")}, version=1)
NOW = 1_795_000_000_000


class MemoryDriver:
    """The effects of authorize_steps on plain dicts: what a database driver does, minus the database."""

    def __init__(self, **account: Any) -> None:
        self.account = dict(id=1, ref="acme", status=ACTIVE, balance=10_000_000, credit_limit=0, held=0, live_calls=0,
                            max_calls=2, plan_id=7, plan_version=1, inbound_rate=0)
        self.account.update(account)
        self.endpoints = {"alice": 1, "bob": 1}
        self.dids = {"+15145551000": None, "+15145551001": "bob"}
        self.sessions: dict[tuple[str, str], dict] = {}
        self.effects: list[Any] = []
        self.refusals: dict[tuple[str, str | None], dict] = {}
        self.locked: list[str] = []

    def perform(self, e: Any) -> Any:
        self.effects.append(e)
        if isinstance(e, steps.SessionByChannel):
            return self.sessions.get((e.pbx_id, e.channel_id))
        if isinstance(e, steps.AccountRef):
            return self.account["ref"] if e.account_id == self.account["id"] else None
        if isinstance(e, steps.AccountByEndpoint):
            if e.lock:
                self.locked.append(e.endpoint)
            return dict(self.account) if self.endpoints.get(e.endpoint) == self.account["id"] else None
        if isinstance(e, steps.AccountByRef):
            return dict(self.account) if e.ref == self.account["ref"] else None
        if isinstance(e, steps.AccountByDid):
            self.locked.append(e.e164)
            return dict(self.account, did_endpoint=self.dids[e.e164]) if e.e164 in self.dids else None
        if isinstance(e, steps.FirstEndpoint):
            return min(n for n, a in self.endpoints.items() if a == e.account_id)
        if isinstance(e, steps.RatesOf):
            assert (e.plan_id, e.version) == (self.account["plan_id"], self.account["plan_version"])
            return DECK
        if isinstance(e, steps.TakeCall):
            self.account["held"] += e.hold
            self.account["live_calls"] += 1
            return None
        if isinstance(e, steps.InsertSession):
            self.sessions[(e.values["pbx_id"], e.values["channel_id"])] = dict(e.values)
            return None
        if isinstance(e, steps.RecordRefusal):  # (pbx, channel) unique: a replay records nothing more
            self.refusals.setdefault((e.values["pbx_id"], e.values["channel_id"]), dict(e.values))
            return None
        raise TypeError(f"unknown effect {e!r}")

    def decide(self, number: str, *, direction: str = "outbound", endpoint: str | None = "alice",
               channel_id: str | None = "c1", full_hold: bool = False, emergency: bool = False,
               account_ref: str | None = None, dry_run: bool = False):
        req = steps.AuthorizeRequest(direction, number, endpoint, None, "pbx", channel_id, full_hold, emergency, NOW,
                                     f"s{len(self.sessions) + 1}", account_ref=account_ref, dry_run=dry_run)
        gen = steps.authorize_steps(req, LIMITS)
        try:
            effect = gen.send(None)
            while True:
                effect = gen.send(self.perform(effect))
        except StopIteration as stop:
            return stop.value

    def writes(self) -> list[Any]:
        return [e for e in self.effects if isinstance(e, (steps.TakeCall, steps.InsertSession))]


def test_a_funded_call_holds_one_chunk_and_records_a_session():
    d = MemoryDriver()
    a = d.decide("15145550100")
    assert a.allowed and a.reason is None and a.session_id == "s1"
    assert (a.number_e164, a.prefix, a.rate_per_min, a.granted_seconds) == ("+15145550100", "1", 12_500, 60)
    assert a.max_talk_seconds == 4 * 3600  # 10.00 at 0.0125/min buys more than the cap
    assert d.account["held"] == cost(60, DECK.lookup("15145550100")) and d.account["live_calls"] == 1
    session = d.sessions[("pbx", "c1")]
    assert session["hold"] == d.account["held"] and session["hold_mode"] == "chunked" and session["state"] == "authorized"
    assert d.locked == ["alice"]


def test_a_full_hold_and_a_free_rate_grant_the_whole_max_talk():
    d = MemoryDriver(balance=1_000_000)  # 1.00 at 0.0125/min: 80 minutes
    full = d.decide("15145550100", full_hold=True)
    assert full.granted_seconds == full.max_talk_seconds == 4800
    free = MemoryDriver().decide("18005550100")
    assert free.granted_seconds == free.max_talk_seconds == 4 * 3600


@pytest.mark.parametrize("account,number,reason", [
    (dict(status=SUSPENDED), "not-a-number", DenyReason.SUSPENDED),        # the account's state first
    (dict(status=DEPLETED), "01186138001380000", DenyReason.DEPLETED),      # ... before an unrated number
    (dict(status=PRE_SUSPENDED), "15145550100", DenyReason.DEPLETED),
    (dict(balance=0), "15145550100", DenyReason.DEPLETED),
    (dict(balance=-5), "15145550100", DenyReason.DEPLETED),
    ({}, "not-a-number", DenyReason.INVALID_NUMBER),
    ({}, "01186138001380000", DenyReason.NO_RATE),
    (dict(live_calls=2), "15145550100", DenyReason.TOO_MANY_CALLS),
    (dict(balance=100), "15145550100", DenyReason.INSUFFICIENT_FUNDS),
    (dict(balance=20_000, held=19_000), "15145550100", DenyReason.INSUFFICIENT_FUNDS),
])
def test_refusals_write_nothing(account, number, reason):
    d = MemoryDriver(**account)
    a = d.decide(number)
    assert not a.allowed and a.reason == reason and a.session_id is None
    assert d.writes() == [] and d.account["held"] == account.get("held", 0)
    # ... but the decision itself, once (issue 20)
    recorded = [e for e in d.effects if isinstance(e, steps.RecordRefusal)]
    assert len(recorded) == 1 and recorded[0].values["reason"] == reason.value
    assert recorded[0].values["account_id"] == 1 and recorded[0].values["channel_id"] == "c1"


def test_dry_runs_and_grants_and_emergency_calls_record_no_refusal():
    d = MemoryDriver(balance=0)
    assert d.decide("15145550100", dry_run=True, account_ref="acme", endpoint=None).reason == DenyReason.DEPLETED
    assert d.decide("911", emergency=True).allowed
    assert MemoryDriver().decide("15145550100").allowed
    assert not [e for e in d.effects if isinstance(e, steps.RecordRefusal)]


def test_a_refusal_without_an_account_is_recorded_without_one():
    d = MemoryDriver()
    assert d.decide("15145550100", endpoint="mallory").reason == DenyReason.UNKNOWN_ENDPOINT
    assert d.refusals[("pbx", "c1")]["account_id"] is None and d.refusals[("pbx", "c1")]["endpoint"] == "mallory"


def test_the_credit_limit_counts_as_money():
    assert MemoryDriver(balance=100, credit_limit=1_000_000).decide("15145550100").allowed


def test_an_unknown_endpoint_is_refused():
    a = MemoryDriver().decide("15145550100", endpoint="mallory")
    assert a.reason == DenyReason.UNKNOWN_ENDPOINT


def test_inbound_rings_the_did_endpoint_or_the_first_endpoint():
    d = MemoryDriver()
    assert d.decide("15145551001", direction="inbound", endpoint=None).ring_endpoint == "bob"
    first = d.decide("15145551000", direction="inbound", endpoint=None, channel_id="c2")
    assert first.allowed and first.ring_endpoint == "alice" and first.rate_per_min == 0
    assert d.decide("15145559999", direction="inbound", channel_id="c3").reason == DenyReason.UNKNOWN_DID
    assert d.decide("junk", direction="inbound", channel_id="c4").reason == DenyReason.UNKNOWN_DID


def test_a_replayed_channel_gets_the_same_answer_and_no_second_hold():
    d = MemoryDriver()
    first = d.decide("15145550100")
    held = d.account["held"]
    again = d.decide("15145550100")
    assert again.allowed and again.session_id == first.session_id and again.granted_seconds == first.granted_seconds
    assert d.account["held"] == held and d.account["live_calls"] == 1


def test_emergency_calls_are_recorded_at_no_cost_for_any_account_or_none():
    d = MemoryDriver(status=SUSPENDED, balance=0)
    a = d.decide("911", emergency=True)
    assert a.allowed and a.emergency and a.account_ref == "acme" and a.max_talk_seconds == 4 * 3600
    anonymous = d.decide("911", emergency=True, endpoint=None, channel_id="c2")
    assert anonymous.allowed and anonymous.account_ref is None
    assert d.sessions[("pbx", "c2")]["account_id"] is None and d.account["held"] == 0


@pytest.mark.parametrize("account,number,emergency", [
    ({}, "15145550100", False), (dict(status=DEPLETED), "01186138001380000", False), ({}, "not-a-number", False),
    (dict(live_calls=2), "15145550100", False), ({}, "911", True),
])
def test_a_dry_run_decides_the_same_with_no_lock_and_no_write(account, number, emergency):
    real = MemoryDriver(**account).decide(number, emergency=emergency)
    d = MemoryDriver(**account)
    dry = d.decide(number, emergency=emergency, endpoint=None, channel_id=None, account_ref="acme", dry_run=True)
    assert (dry.allowed, dry.reason, dry.max_talk_seconds, dry.granted_seconds, dry.emergency) == (
        real.allowed, real.reason, real.max_talk_seconds, real.granted_seconds, real.emergency)
    assert dry.session_id is None and d.writes() == [] and d.locked == []
    assert any(isinstance(e, steps.AccountByRef) for e in d.effects)
