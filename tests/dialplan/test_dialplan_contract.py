"""The neutral dialplan module: one channel-name parser and one refusal mapping for both adapters."""
from __future__ import annotations

import pytest

import callgate_dialplan as dialplan
from billing_core.domain.errors import DenyReason


@pytest.mark.parametrize("channel, endpoint", [
    ("PJSIP/alice-0000002a", "alice"),
    ("PJSIP/alice-000000df", "alice"),
    ("PJSIP/my-phone-00000004", "my-phone"),       # an endpoint name may contain "-"
    ("PJSIP/alice.b_2+x-0000002A", "alice.b_2+x"),  # upper-case hex sequence
    ("SIP/alice-1", "alice"),                        # chan_sip: a short hex sequence
    ("SIP/1001-0000a1b2", "1001"),
    ("IAX2/bob-00000003", "bob"),
    ("PJSIP/alice", None),                           # no sequence: a dial string, not a channel
    ("PJSIP/alice-", None),
    ("PJSIP/alice-xyz", None),                       # the sequence is always hex
    ("PJSIP/-0000002a", None),
    ("Local/100@from-internal-00000001;2", None),    # a Local channel is no SIP endpoint
    ("Local/100@from-internal-00000001;1", None),
    ("Local/ended@callgate-ended", None),
    ("PJSIP/trunk/sip:15145550101@127.0.0.1:5070", None),  # a dial string with a URI
    ("PJSIP/trunk/sip:x-0000002a", None),
    ("alice", None),
    ("alice-0000002a", None),
    ("/alice-0000002a", None),
    ("", None),
    (None, None),
])
def test_endpoint_of_channel_for_every_shape(channel, endpoint):
    assert dialplan.endpoint_of_channel(channel) == endpoint


def test_both_adapters_parse_channel_names_with_the_one_parser():
    """ari_app and agi disagreed on ``PJSIP/alice`` (alice vs None): both now use the neutral parser."""
    from agi import protocol, routes
    from ari_app import calls

    assert calls.endpoint_of is dialplan.endpoint_of_channel
    assert protocol.endpoint_of_channel is dialplan.endpoint_of_channel
    assert routes.endpoint_of_channel is dialplan.endpoint_of_channel
    assert calls.endpoint_of("PJSIP/alice") is None


def test_every_deny_reason_has_a_cause_and_an_ari_reason():
    assert set(dialplan.HANGUP_CAUSES) == set(DenyReason)
    assert set(dialplan.ARI_HANGUP_REASONS) == {r.value for r in DenyReason}
    assert set(dialplan.ARI_HANGUP_REASONS.values()) <= set(dialplan.ARI_REASON_CAUSE)


def test_bridge_and_dialplan_refusals_give_the_same_cause_but_for_unknown_endpoint():
    """The one released difference (see ARI_HANGUP_REASONS): anything else new must agree."""
    differ = {r.value for r in DenyReason
              if dialplan.ARI_REASON_CAUSE[dialplan.ARI_HANGUP_REASONS[r.value]] != dialplan.HANGUP_CAUSES[r]}
    assert differ == {DenyReason.UNKNOWN_ENDPOINT.value}


def test_the_ari_reasons_causes_are_asterisks():
    """ARI_REASON_CAUSE says what Asterisk's ast_str_to_cause says (the simulator's recorded table)."""
    from callgate_fakes.ari_simulator.causes import REASON_TO_CAUSE

    assert {k: REASON_TO_CAUSE[k] for k in dialplan.ARI_REASON_CAUSE} == dict(dialplan.ARI_REASON_CAUSE)


@pytest.mark.parametrize("reason, cause", [
    (DenyReason.DEPLETED, 21), ("depleted", 21), ("unknown_did", 1), ("too_many_calls", 17),
    ("billing_unavailable", 34), ("no_such_reason", 34), (None, 34), ("", 34),
])
def test_hangup_cause_fails_closed(reason, cause):
    assert dialplan.hangup_cause(reason) == cause


def test_the_adapters_use_the_neutral_names():
    from agi import routes
    from ari_app import announcements

    for name in ("VAR_STATUS", "VAR_REASON", "VAR_MAX_MS", "VAR_SESSION", "VAR_HANGUPCAUSE", "VAR_ENDPOINT",
                 "VARIABLES", "STATUS_ALLOW", "STATUS_DENY", "DIRECTIONS", "HANGUP_CAUSES", "CAUSE_NO_CIRCUIT"):
        assert getattr(routes, name) is getattr(dialplan, name), name
    assert announcements.HANGUP_REASON is dialplan.ARI_HANGUP_REASONS


def test_importing_the_neutral_module_pulls_in_no_store():
    import subprocess
    import sys

    code = ("import sys, callgate_dialplan; bad = [m for m in sys.modules if m.startswith(('sqlalchemy', "
            "'billing_core.store', 'billing_core.api', 'ari_app', 'agi', 'callgate.'))]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_toll_fraud_refusals_are_forbidden_with_the_refusal_announcement():
    """Issue 18: destination_blocked is SIP 403 (cause 21) in every mode, with an announcement."""
    from ari_app import announcements
    from agi.routes import Decision

    assert dialplan.hangup_cause(DenyReason.DESTINATION_BLOCKED) == dialplan.CAUSE_CALL_REJECTED
    assert announcements.hangup_reason("destination_blocked") == "rejected"
    assert announcements.DEFAULT_ANNOUNCEMENTS["destination_blocked"] == "sound:cannot-complete-as-dialed"
    d = Decision.deny(DenyReason.DESTINATION_BLOCKED, rule="number_type")
    assert dict(d.variables())["CALLGATE_HANGUPCAUSE"] == "21" and dict(d.variables())["CALLGATE_REASON"] == \
        "destination_blocked" and d.rule == "number_type"
