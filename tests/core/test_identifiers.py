"""Identifiers, emails and operator text with control characters are refused wherever they enter
(issue 15: a trailing newline in an email pushed a receipt's headers into its body)."""
from __future__ import annotations

import json

import pytest

from billing_core.domain.errors import InvalidInput
from billing_core.domain.identifiers import check_email, check_endpoint, check_ref, check_text

HEADER = "prefix,description,rate_per_min,connect_fee,initial_increment,increment\n"
BAD_SUFFIXES = ["\n", "\r\n", "\r", "\x00", "\t", "\x1b[31m", "\u2028", "\u202e", "\x85"]


@pytest.mark.parametrize("suffix", BAD_SUFFIXES)
def test_the_domain_checks_refuse_every_control_character(suffix):
    for check, good in ((check_ref, "acme"), (check_endpoint, "alice"), (check_email, "billing@acme.test")):
        assert check(good) == good
        with pytest.raises(InvalidInput, match="control character") as info:
            check(good + suffix)
        assert suffix not in str(info.value)  # the error itself never carries the raw character
        with pytest.raises(InvalidInput):
            check(suffix + good)
    with pytest.raises(InvalidInput, match="--name: must not contain a control character"):
        check_text("Acme" + suffix + "Inc", "--name")


def test_emails_that_a_header_cannot_carry_are_refused():
    for bad in ("a b@acme.test", "a@acme.test, evil@x.test", "<a@acme.test>", "a@b@acme.test", "a;b@acme.test",
                "a@acme", "a\"@acme.test", "a@acme.test."):
        with pytest.raises(InvalidInput, match="--email"):
            check_email(bad)
    longest = "a" * 64 + "@" + "b" * 184 + ".test"
    assert len(longest) == 254 and check_email(longest) == longest
    with pytest.raises(InvalidInput, match="at most 254 characters"):
        check_email("a" + longest)
    assert check_email("José.Ñúñez@exämple.test")  # international addresses stay possible


@pytest.fixture
def seeded(cg, tmp_path):
    deck = tmp_path / "deck.csv"
    deck.write_text(HEADER + "1,NANP,0.0125,0,60,6\n")
    cg("db", "upgrade")
    cg("plan", "import", "std", str(deck))
    cg("package", "add", "basic", "--plan", "std", "--low-balance", "5.00", "--max-calls", "2")
    cg("account", "add", "acme", "--name", "Acme Inc", "--email", "billing@acme.test", "--package", "basic")
    cg("endpoint", "add", "acme", "alice")
    cg("did", "add", "5145551000")
    cg("did", "assign", "5145551000", "acme")
    cg("credit", "acme", "10.00", "--reason", "opening balance")
    return deck


def _state(cg):
    return tuple(cg(*args).output for args in (
        ("ledger", "acme", "--json"), ("account", "list", "--json"), ("did", "list", "--json"),
        ("plan", "show", "std", "--json")))


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\u2028"])
@pytest.mark.parametrize("args,field", [
    (("account", "add", "x1{}", "--name", "X", "--email", "x@y.test", "--package", "basic"), "REF"),
    (("account", "add", "x2", "--name", "X{}", "--email", "x@y.test", "--package", "basic"), "--name"),
    (("account", "add", "x3", "--name", "X", "--email", "x@y.test{}", "--package", "basic"), "--email"),
    (("endpoint", "add", "acme", "bob{}"), "ENDPOINT"),
    (("did", "assign", "5145551000", "acme", "--endpoint", "alice{}"), "--endpoint"),
    (("did", "release", "5145551000", "--reason", "gone{}"), "--reason"),
    (("package", "add", "p2{}", "--plan", "std", "--low-balance", "1", "--max-calls", "1"), "NAME"),
    (("plan", "import", "std2{}", "DECK"), "NAME"),
    (("credit", "acme", "1.00", "--reason", "gift{}"), "reason"),
    (("credit", "acme", "1.00", "--reason", "gift", "--key", "k{}"), "idempotency key"),
])
def test_every_cli_entry_refuses_control_characters_and_writes_nothing(cg, seeded, args, field, suffix):
    args = tuple(str(seeded) if a == "DECK" else a.replace("{}", suffix) for a in args)
    before = _state(cg)
    r = cg(*args, ok=False)
    assert r.exit_code == 1, r.output
    assert r.output.startswith(f"error: {field}: ") and "control character" in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert _state(cg) == before


def test_an_email_over_254_characters_is_refused_at_entry(cg, seeded):
    email = "a" * 250 + "@acme.test"
    r = cg("account", "add", "long", "--name", "X", "--email", email, "--package", "basic", ok=False)
    assert r.exit_code == 1 and "--email: an email address is at most 254 characters" in r.output
    assert "long" not in [a["ref"] for a in json.loads(cg("account", "list", "--json").output)]


@pytest.mark.parametrize("cell,column", [
    ("1,NANP\x00 zone,0.0125,0,60,6", "description"),
    ("1,NANP\x1b[2J,0.0125,0,60,6", "description"),
    ('1,"NANP\nzone",0.0125,0,60,6', "description"),
    ("1,NANP,0.0125\x00,0,60,6", "rate_per_min"),
    ("1\x00,NANP,0.0125,0,60,6", "prefix"),
    ("1,NANP,0.0125,0,60\x0b,6", "initial_increment"),
])
def test_a_control_character_in_any_deck_cell_names_line_and_column_and_writes_nothing(cg, seeded, tmp_path, cell, column):
    deck = tmp_path / "bad.csv"
    deck.write_text(HEADER + "44,UK,0.045,0.015,30,6\n" + cell + "\n", newline="")
    before = _state(cg)
    r = cg("plan", "import", "std", str(deck), ok=False)
    assert r.exit_code == 1
    assert f"line 3, column {column}: " in r.output and "control character" in r.output, r.output
    assert "\x00" not in r.output and "\x1b" not in r.output
    assert _state(cg) == before
