"""Toll-fraud destination rules (issue 18): which outbound destinations a package (or an account
overriding it) lets a call reach. Pure: no I/O; phonenumbers is pure computation.

The rules, in the order they are checked (the first that refuses names the ``rule``):

1. ``prefix`` — the package's ``deny_prefixes``/``allow_prefixes`` and the account's own
   destinations (``account deny-destination``/``allow-destination``) are one list of E.164 digit
   prefixes; the longest prefix matching the number wins (at equal length the account's entry beats
   the package's, and a deny beats an allow). A winning deny refuses the call. A winning allow is an
   explicit exception: it lifts the region rule for that prefix (``--allow-regions CA,US
   --allow-prefixes 4420`` lets London through), and when it is the account's own
   (``allow-destination``) it is also the opt-in the high-cost guard asks for.
2. ``region`` — the number's region (phonenumbers' region of the normalised E.164 number; a number
   phonenumbers does not know as valid gets its country code's main region, ``001`` for the
   non-geographic codes such as 881 satellite and 882/883 international networks, which no ISO
   region list contains) must be in ``allow_regions``, unless that is ``*``.
3. ``number_type`` — the number's phonenumbers type (``PREMIUM_RATE``, ``SHARED_COST``, ``UAN``…)
   must not be in ``block_types``. No allow prefix lifts it: a premium-rate number behind an allowed
   country prefix is still premium-rate (an operator who wants it clears ``--block-types``).
4. ``max_rate`` — a destination whose per-minute rate is above ``max_rate_per_min`` is refused
   unless the account opted in for a prefix of it (``account allow-destination``). Checked after
   the rate lookup (the only rule that needs the rate).

Emergency numbers never reach these rules (the decision returns before them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import phonenumbers
from phonenumbers import PhoneNumberType

from .errors import InvalidInput

#: The rule names a refusal carries (``Authorization.rule``, ``quote --json``'s ``rule``, the
#: decision log and the ``callgate_destination_blocked_total{rule}`` metric).
RULE_REGION = "region"
RULE_NUMBER_TYPE = "number_type"
RULE_PREFIX = "prefix"
RULE_MAX_RATE = "max_rate"
RULES = (RULE_REGION, RULE_NUMBER_TYPE, RULE_PREFIX, RULE_MAX_RATE)

ALL_REGIONS = "*"
#: What a new package blocks unless told otherwise (the issue's defaults).
DEFAULT_BLOCK_TYPES = ("PREMIUM_RATE", "SHARED_COST", "UAN")
#: The region a number with a non-geographic country code (881, 882, 883, 800, 808, 870, 979) has.
NON_GEOGRAPHIC_REGION = "001"

#: phonenumbers type names an operator may block (every PhoneNumberType but the internal ones).
NUMBER_TYPES: dict[str, int] = {
    name: getattr(PhoneNumberType, name)
    for name in ("FIXED_LINE", "MOBILE", "FIXED_LINE_OR_MOBILE", "TOLL_FREE", "PREMIUM_RATE", "SHARED_COST", "VOIP",
                 "PERSONAL_NUMBER", "PAGER", "UAN", "VOICEMAIL", "UNKNOWN")
}
_TYPE_NAMES = {v: k for k, v in NUMBER_TYPES.items()}

_PREFIX_RE = re.compile(r"[0-9]{1,15}")
_REGIONS = frozenset(phonenumbers.SUPPORTED_REGIONS)


def default_allow_regions(home_region: str) -> str:
    """A new package's allowed regions: the home region and the US (NANP neighbours)."""
    return ",".join(dict.fromkeys([home_region.upper(), "US"]))


# ------------------------------------------------------------------------------ parsing input
def parse_regions(text: str, field: str = "--allow-regions") -> str:
    """``CA,US`` or ``*`` → its canonical stored form; an unknown region code is InvalidInput."""
    raw = (text or "").strip()
    if raw == ALL_REGIONS:
        return ALL_REGIONS
    items = [p.strip().upper() for p in raw.split(",") if p.strip()]
    if not items:
        raise InvalidInput(f"{field}: give ISO region codes (e.g. CA,US) or * (got {text!r})")
    for item in items:
        if item not in _REGIONS:
            raise InvalidInput(f"{field}: unknown region code {item!r} (ISO 3166 codes phonenumbers knows, e.g. CA, US, GB)")
    return ",".join(dict.fromkeys(items))


def parse_types(text: str, field: str = "--block-types") -> str:
    """``PREMIUM_RATE,SHARED_COST`` (phonenumbers type names; empty = none) → stored form."""
    items = [p.strip().upper() for p in (text or "").split(",") if p.strip()]
    for item in items:
        if item not in NUMBER_TYPES:
            raise InvalidInput(f"{field}: unknown number type {item!r} (one of {', '.join(NUMBER_TYPES)})")
    return ",".join(dict.fromkeys(items))


def parse_prefixes(text: str, field: str) -> str:
    """``881,882`` (E.164 digit prefixes, a leading + allowed; empty = none) → stored form."""
    items = [p.strip().lstrip("+") for p in (text or "").split(",") if p.strip()]
    for item in items:
        check_prefix(item, field)
    return ",".join(dict.fromkeys(items))


def check_prefix(prefix: str, field: str = "PREFIX") -> str:
    p = (prefix or "").strip().lstrip("+")
    if not _PREFIX_RE.fullmatch(p):
        raise InvalidInput(f"{field}: a prefix is 1 to 15 digits of an E.164 number, e.g. 881 (got {prefix!r})")
    return p


def split(text: str | None) -> tuple[str, ...]:
    return tuple(p for p in (text or "").split(",") if p)


# ------------------------------------------------------------------------------ classification
@dataclass(frozen=True, slots=True)
class Destination:
    region: str
    number_type: str


@lru_cache(maxsize=65_536)  # pure and hot: every outbound authorize classifies its number
def classify(e164: str) -> Destination:
    """The region and phonenumbers type of a normalised E.164 number."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return Destination("ZZ", "UNKNOWN")
    region = phonenumbers.region_code_for_number(parsed)
    if region is None:  # not a valid number of any region: its country code's main region
        region = phonenumbers.region_code_for_country_code(parsed.country_code)
    return Destination(region or "ZZ", _TYPE_NAMES.get(phonenumbers.number_type(parsed), "UNKNOWN"))


# ------------------------------------------------------------------------------ the rules
@dataclass(frozen=True, slots=True)
class DestinationRules:
    allow_regions: frozenset[str] | None
    """None = every region (``*``)."""
    block_types: frozenset[str]
    prefixes: Mapping[str, tuple[int, str]]
    """prefix → (precedence, action ``allow``/``deny``/``account_allow``); see :func:`compile_rules`."""
    max_lengths: tuple[int, ...]
    """The distinct prefix lengths, longest first (so a lookup tries only those)."""
    max_rate_per_min: int | None


# precedence at equal prefix length: account deny > account allow > package deny > package allow
_PRECEDENCE = {("package", "allow"): 0, ("package", "deny"): 1, ("account", "allow"): 2, ("account", "deny"): 3}


@lru_cache(maxsize=4096)  # the same few packages and accounts, every authorize
def compile_rules(allow_regions: str, block_types: str, deny_prefixes: str, allow_prefixes: str,
                  account_deny: str, account_allow: str, max_rate_per_min: int | None) -> DestinationRules:
    prefixes: dict[str, tuple[int, str]] = {}
    for source, action, text in (("package", "allow", allow_prefixes), ("package", "deny", deny_prefixes),
                                 ("account", "allow", account_allow), ("account", "deny", account_deny)):
        for p in split(text):
            rank = _PRECEDENCE[(source, action)]
            if p not in prefixes or prefixes[p][0] < rank:
                kind = "account_allow" if (source, action) == ("account", "allow") else action
                prefixes[p] = (rank, kind)
    regions = None if (allow_regions or ALL_REGIONS) == ALL_REGIONS else frozenset(split(allow_regions))
    return DestinationRules(regions, frozenset(split(block_types)), prefixes,
                            tuple(sorted({len(p) for p in prefixes}, reverse=True)), max_rate_per_min)


def _pick(acct: Mapping[str, Any], name: str) -> Any:
    """The account's override of a package rule (``acct_<name>``), else the package's (``<name>``)."""
    value = acct.get("acct_" + name)
    return acct.get(name) if value is None else value


def rules_of(acct: Mapping[str, Any]) -> DestinationRules:
    """The effective destination rules of an account row (package columns + account overrides)."""
    return compile_rules(
        _pick(acct, "allow_regions") or ALL_REGIONS, _pick(acct, "block_types") or "", acct.get("deny_prefixes") or "",
        acct.get("allow_prefixes") or "", acct.get("deny_destinations") or "", acct.get("allow_destinations") or "",
        _pick(acct, "max_rate_per_min"),
    )


def _prefix_action(rules: DestinationRules, digits: str) -> str | None:
    for n in rules.max_lengths:
        if n <= len(digits):
            hit = rules.prefixes.get(digits[:n])
            if hit is not None:
                return hit[1]
    return None


def check_destination(rules: DestinationRules, e164: str) -> tuple[str | None, str | None]:
    """(the rule refusing the number or None, the prefix action that decided it or None): the
    rate-independent rules (prefix, region, number type)."""
    action = _prefix_action(rules, e164.lstrip("+")) if rules.prefixes else None
    if action == "deny":
        return RULE_PREFIX, action
    if rules.allow_regions is None and not rules.block_types:
        return None, action
    dest = classify(e164)
    if action is None and rules.allow_regions is not None and dest.region not in rules.allow_regions:
        return RULE_REGION, action
    if dest.number_type in rules.block_types:
        return RULE_NUMBER_TYPE, action
    return None, action


def check_rate(rules: DestinationRules, action: str | None, rate_per_min: int) -> str | None:
    """The high-cost guard: ``max_rate`` when the rate is above the limit and the account did not
    opt in for the destination (``account allow-destination``)."""
    if rules.max_rate_per_min is not None and rate_per_min > rules.max_rate_per_min and action != "account_allow":
        return RULE_MAX_RATE
    return None
