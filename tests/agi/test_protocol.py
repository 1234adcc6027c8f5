"""The wire format pieces: environment lines, routes, replies, argument quoting, channel names."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agi.protocol import (
    ProtocolError, build_request, endpoint_of_channel, parse_env_line, parse_reply, quote_arg, route_of,
    set_variable_command, unquote_args,
)

from .fakes import env_block, load


def test_every_recorded_environment_line_parses():
    for name in ("agi_authorize_dial_caller_hangup", "agi_dial_u_answered_and_hangup_handler_settle"):
        records = load(name)
        for conn in ({r.get("connection") for r in records if r["kind"] == "agi"}):
            block = env_block(records, conn)
            pairs = [parse_env_line(l[:-1], i) for i, l in enumerate(block[:-1], 1)]
            req = build_request(pairs)
            assert req.env["agi_accountcode"] == ""  # "agi_accountcode: \n": empty value, blank kept
            assert req.route in ("authorize", "answered", "settle")
            assert req.args == tuple(v for k, v in pairs if k.startswith("agi_arg_"))


def test_env_line_errors_name_the_line():
    with pytest.raises(ProtocolError, match="environment line 7: not 'agi_<name>: <value>'"):
        parse_env_line("hello world", 7)


def test_route_from_agi_request_when_the_script_line_is_missing():
    assert route_of({"agi_request": "agi://127.0.0.1:4573/settle?x=1"}) == "settle"
    assert route_of({"agi_network_script": "/authorize/"}) == "authorize"
    assert route_of({"agi_request": "agi://127.0.0.1:4573"}) == ""
    with pytest.raises(ProtocolError, match="no agi_network_script"):
        build_request([("agi_channel", "PJSIP/alice-1")])


@pytest.mark.parametrize("line, code, result, data", [
    ("200 result=1", 200, 1, None),
    ("200 result=1 (alice)", 200, 1, "alice"),
    ("200 result=-1", 200, -1, None),
    ("200 result=0 endpos=12345", 200, 0, None),
    ("511 Command Not Permitted on a dead channel or intercept routine", 511, None, None),
    ("510 Invalid or unknown command", 510, None, None),
])
def test_replies(line, code, result, data):
    r = parse_reply(line)
    assert (r.code, r.result, r.data, r.text) == (code, result, data, line)
    assert r.dead_channel == (code == 511)


def test_garbage_reply():
    with pytest.raises(ProtocolError, match="reply: not"):
        parse_reply("HELLO")


def test_quoting_matches_the_recorded_bytes():
    assert set_variable_command("CALLGATE_MAX_MS", "5000") == "SET VARIABLE CALLGATE_MAX_MS 5000"
    assert set_variable_command("CALLGATE_SESSION", "") == 'SET VARIABLE CALLGATE_SESSION ""'
    assert quote_arg('a "b" \\c') == '"a \\"b\\" \\\\c"'


@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\n\r"),
                        max_size=20), min_size=1, max_size=4))
def test_quote_then_res_agi_parse_round_trips(values):
    assert unquote_args(" ".join(quote_arg(v) for v in values)) == values


@pytest.mark.parametrize("channel, endpoint", [
    ("PJSIP/alice-000000df", "alice"),
    ("PJSIP/my-phone-00000004", "my-phone"),
    ("SIP/1001-0000a1b2", "1001"),
    ("Local/100@from-internal-00000001;2", None),
    ("alice", None),
    ("PJSIP/alice", None),
])
def test_endpoint_of_channel(channel, endpoint):
    assert endpoint_of_channel(channel) == endpoint


def test_a_line_end_in_a_value_is_refused_not_sent():
    with pytest.raises(ValueError, match="line end"):
        set_variable_command("CALLGATE_REASON", "x\nEXEC Dial PJSIP/1900@trunk")
