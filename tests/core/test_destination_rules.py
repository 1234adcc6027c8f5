"""Toll-fraud destination rules (issue 18): the pure evaluation, then the decision on both
databases (both drivers: SQLAlchemy on SQLite, raw asyncpg on PostgreSQL) and ``quote``."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from billing_core.domain import destination_rules as dest
from billing_core.domain.errors import DenyReason, InvalidInput, NotFound
from billing_core.domain.money import parse_amount
from billing_core.domain.rating import Rate
from tests.factories import seed

PREMIUM_US = "19005550100"  # +1 900: PREMIUM_RATE (US)
SATELLITE = "011881631234567"  # +881 6: Iridium, non-geographic region 001
INTL_NETWORK = "011882161234567"  # +882: international networks, region 001
LONDON = "011442079460000"  # +44 20: GB fixed line
MONTREAL = "15145550100"  # CA
NEW_YORK = "12125551212"  # US

DECK = [
    Rate("1", 12_500, 0, 60, 6, "NANP"),
    Rate("1900", 2_000_000, 0, 60, 6, "US premium"),
    Rate("44", 45_000, 15_000, 30, 6, "UK"),
    Rate("881", 9_000_000, 0, 60, 60, "Iridium"),
    Rate("882", 5_000_000, 0, 60, 60, "Intl networks"),
]


def _rules(allow_regions="*", block_types="", deny="", allow="", acct_deny="", acct_allow="", max_rate=None):
    return dest.compile_rules(allow_regions, block_types, deny, allow, acct_deny, acct_allow, max_rate)


# ------------------------------------------------------------------------------------ pure
def test_classify_gives_region_and_type():
    assert dest.classify("+19005550100") == dest.Destination("US", "PREMIUM_RATE")
    assert dest.classify("+15145550100").region == "CA"
    assert dest.classify("+442079460000") == dest.Destination("GB", "FIXED_LINE")
    assert dest.classify("+881631234567").region == dest.NON_GEOGRAPHIC_REGION


def test_new_package_defaults_refuse_premium_satellite_and_foreign():
    rules = _rules(dest.default_allow_regions("CA"), ",".join(dest.DEFAULT_BLOCK_TYPES))
    assert dest.check_destination(rules, "+15145550100") == (None, None)
    assert dest.check_destination(rules, "+12125551212") == (None, None)
    assert dest.check_destination(rules, "+19005550100")[0] == dest.RULE_NUMBER_TYPE
    assert dest.check_destination(rules, "+881631234567")[0] == dest.RULE_REGION
    assert dest.check_destination(rules, "+442079460000")[0] == dest.RULE_REGION


def test_longest_prefix_wins_and_account_beats_package_at_equal_length():
    rules = _rules(deny="88", allow="8816")
    assert dest.check_destination(rules, "+881631234567") == (None, "allow")
    assert dest.check_destination(rules, "+882161234567")[0] == dest.RULE_PREFIX
    rules = _rules(deny="44", acct_allow="44")
    assert dest.check_destination(rules, "+442079460000") == (None, "account_allow")
    rules = _rules(allow="44", acct_deny="44")
    assert dest.check_destination(rules, "+442079460000")[0] == dest.RULE_PREFIX
    rules = _rules(acct_allow="44", deny="4420")  # longer package deny beats a shorter account allow
    assert dest.check_destination(rules, "+442079460000")[0] == dest.RULE_PREFIX


def test_an_allow_prefix_lifts_the_region_rule_but_not_the_type_block():
    rules = _rules("CA,US", "PREMIUM_RATE", allow="4420,1900")
    assert dest.check_destination(rules, "+442079460000") == (None, "allow")
    assert dest.check_destination(rules, "+441632960000")[0] == dest.RULE_REGION
    assert dest.check_destination(rules, "+19005550100")[0] == dest.RULE_NUMBER_TYPE


def test_high_cost_guard_and_the_account_opt_in():
    rules = _rules(max_rate=1_000_000)
    assert dest.check_rate(rules, None, 1_000_000) is None
    assert dest.check_rate(rules, None, 1_000_001) == dest.RULE_MAX_RATE
    assert dest.check_rate(rules, "allow", 1_000_001) == dest.RULE_MAX_RATE  # a package allow is no opt-in
    assert dest.check_rate(rules, "account_allow", 9_000_000) is None
    assert dest.check_rate(_rules(), None, 10**12) is None


@pytest.mark.parametrize("text, field", [
    ("CA,XX", "--allow-regions"), ("", "--allow-regions"), ("CA;US", "--allow-regions"),
])
def test_bad_regions_name_the_field(text, field):
    with pytest.raises(InvalidInput, match=f"^{field}"):
        dest.parse_regions(text, field)


def test_parsing_canonicalises_and_rejects():
    assert dest.parse_regions(" ca , us,CA") == "CA,US"
    assert dest.parse_regions("*") == "*"
    assert dest.parse_types("premium_rate, UAN") == "PREMIUM_RATE,UAN"
    assert dest.parse_types("") == ""
    assert dest.parse_prefixes("+881, 882", "--deny-prefixes") == "881,882"
    for bad in ("88a", "-1", "1234567890123456"):
        with pytest.raises(InvalidInput, match="^--deny-prefixes"):
            dest.parse_prefixes(bad, "--deny-prefixes")
    with pytest.raises(InvalidInput, match="^--block-types"):
        dest.parse_types("PREMIUM")


# ------------------------------------------------------------------------- the decision
async def _seed_default_package(core, **kw):
    """A package created with the issue's defaults (home region CA + US; premium etc. blocked)."""
    return await seed(core, deck=DECK, allow_regions=None, block_types=None, **kw)


@pytest.mark.parametrize("number, rule", [
    (PREMIUM_US, "number_type"), (SATELLITE, "region"), (INTL_NETWORK, "region"), (LONDON, "region"),
])
async def test_a_new_package_refuses_risky_destinations(core, number, rule):
    await _seed_default_package(core)
    before = REGISTRY.get_sample_value("callgate_destination_blocked_total", {"rule": rule}) or 0
    a = await core.authorize_call(direction="outbound", number=number, endpoint="alice", channel_id="c1")
    assert not a.allowed and a.reason == DenyReason.DESTINATION_BLOCKED and a.rule == rule
    assert a.session_id is None
    acct = await core.account("acme")
    assert acct.held == 0 and acct.live_calls == 0 and acct.balance == parse_amount("10.00")
    assert REGISTRY.get_sample_value("callgate_destination_blocked_total", {"rule": rule}) == before + 1
    q = await core.admin.quote("acme", number)
    assert q["allowed"] is False and q["reason"] == "destination_blocked" and q["rule"] == rule


async def test_a_new_package_allows_home_region_and_us(core):
    await _seed_default_package(core)
    for i, number in enumerate((MONTREAL, NEW_YORK)):
        a = await core.authorize_call(direction="outbound", number=number, endpoint="alice", channel_id=f"c{i}")
        assert a.allowed and a.rule is None
    q = await core.admin.quote("acme", MONTREAL)
    assert q["allowed"] is True and q["rule"] is None


async def test_emergency_numbers_are_exempt_from_every_rule(core):
    await _seed_default_package(core)
    await core.admin.set_package("basic", allow_regions="GB", deny_prefixes="9,1", block_types="UNKNOWN,FIXED_LINE",
                                 max_rate_per_min=0)
    a = await core.authorize_call(direction="outbound", number="911", endpoint="alice", channel_id="e1")
    assert a.allowed and a.emergency
    q = await core.admin.quote("acme", "911")
    assert q["allowed"] is True and q["emergency"] is True and q["rule"] is None


async def test_prefix_lists_and_the_high_cost_guard(core):
    await seed(core, deck=DECK)  # every region
    await core.admin.set_package("basic", deny_prefixes="881,882", block_types="",
                                 max_rate_per_min=parse_amount("1.00", decimals=6))
    a = await core.authorize_call(direction="outbound", number=SATELLITE, endpoint="alice", channel_id="s1")
    assert a.reason == DenyReason.DESTINATION_BLOCKED and a.rule == "prefix"
    a = await core.authorize_call(direction="outbound", number=PREMIUM_US, endpoint="alice", channel_id="p1")
    assert a.reason == DenyReason.DESTINATION_BLOCKED and a.rule == "max_rate" and a.prefix == "1900"
    # the account opts in for the high-cost prefix; the deny list still wins for 881
    await core.admin.set_destination("acme", "1900", "allow")
    q = await core.admin.quote("acme", PREMIUM_US)
    assert q["allowed"] is True and q["rule"] is None
    a = await core.authorize_call(direction="outbound", number=PREMIUM_US, endpoint="alice", channel_id="p2")
    assert a.allowed
    await core.admin.set_destination("acme", "1514", "deny")
    a = await core.authorize_call(direction="outbound", number=MONTREAL, endpoint="alice", channel_id="m1")
    assert a.reason == DenyReason.DESTINATION_BLOCKED and a.rule == "prefix"
    rules = await core.admin.account_rules("acme")
    assert rules["allow_destinations"] == ["1900"] and rules["deny_destinations"] == ["1514"]
    await core.admin.set_destination("acme", "1514", "clear")
    assert (await core.admin.account_rules("acme"))["deny_destinations"] == []
    assert (await core.authorize_call(direction="outbound", number=MONTREAL, endpoint="alice", channel_id="m2")).allowed


async def test_account_overrides_and_clearing_them(core):
    await _seed_default_package(core)
    await core.admin.set_account_rules("acme", allow_regions="*", block_types="")
    a = await core.authorize_call(direction="outbound", number=LONDON, endpoint="alice", channel_id="l1")
    assert a.allowed
    assert (await core.admin.quote("acme", PREMIUM_US))["allowed"] is True
    rules = await core.admin.set_account_rules("acme", allow_regions="package")
    assert rules["overrides"]["allow_regions"] is None and rules["limits"]["allow_regions"] == "CA,US"
    q = await core.admin.quote("acme", LONDON)
    assert q["reason"] == "destination_blocked" and q["rule"] == "region"


async def test_inbound_calls_are_not_destination_rules_business(core):
    await _seed_default_package(core, inbound_rate="0")
    await core.admin.set_package("basic", allow_regions="GB")
    a = await core.authorize_call(direction="inbound", number="15145551000", did="15145551000", channel_id="in1")
    assert a.allowed


async def test_package_add_defaults_set_and_show(core):
    await core.admin.import_plan("std", DECK)
    await core.admin.add_package("p", plan="std", low_balance=0, max_calls=1, inbound_rate=0)
    shown = await core.admin.show_package("p")
    assert shown["allow_regions"] == "CA,US" and shown["block_types"] == "PREMIUM_RATE,SHARED_COST,UAN"
    assert shown["deny_prefixes"] == "" and shown["allow_prefixes"] == "" and shown["max_rate_per_min"] is None
    # `package add` on an existing package keeps rules it is not given
    await core.admin.set_package("p", deny_prefixes="881", max_rate_per_min=500_000)
    await core.admin.add_package("p", plan="std", low_balance=0, max_calls=2, inbound_rate=0)
    shown = await core.admin.show_package("p")
    assert shown["deny_prefixes"] == "881" and shown["max_rate_per_min"] == "0.50" and shown["max_calls"] == 2


@pytest.mark.parametrize("kw, field", [
    (dict(allow_regions="CA,ZZ"), "--allow-regions"),
    (dict(block_types="EXPENSIVE"), "--block-types"),
    (dict(deny_prefixes="88x"), "--deny-prefixes"),
    (dict(allow_prefixes="1,,+"), "--allow-prefixes"),
    (dict(max_rate_per_min=-1), "--max-rate-per-min"),
])
async def test_bad_rules_name_the_field_and_write_nothing(core, kw, field):
    await seed(core, deck=DECK)
    before = await core.admin.show_package("basic")
    with pytest.raises(InvalidInput, match=f"^{field}"):
        await core.admin.set_package("basic", deny_prefixes="999", **kw) if "deny_prefixes" not in kw else \
            await core.admin.set_package("basic", max_calls=5, **kw)
    assert await core.admin.show_package("basic") == before


async def test_rules_for_unknown_package_or_account(core):
    with pytest.raises(NotFound, match="unknown package 'nope'"):
        await core.admin.set_package("nope", deny_prefixes="881")
    with pytest.raises(NotFound, match="unknown account 'nobody'"):
        await core.admin.set_account_rules("nobody", allow_regions="*")
    with pytest.raises(NotFound, match="unknown account 'nobody'"):
        await core.admin.set_destination("nobody", "881", "allow")
