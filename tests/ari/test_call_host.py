"""Calls reach the gate through the CallHost protocol; the gate asks calls what they are instead of
switching on their classes."""
from __future__ import annotations

import ast
import inspect

from ari_app import calls, continue_mode, gate
from ari_app.calls import BridgeCall, CallActor, CallHost
from ari_app.client import AriClient
from ari_app.continue_mode import ContinueCall
from tests.protocols import assert_satisfies, protocol_members


def test_the_gate_is_a_call_host(core):
    g = gate.Gate(AriClient("http://127.0.0.1:1", "u", "p", "callgate"), core)
    assert protocol_members(CallHost) == ["call_finished", "client", "core", "create_callee",
                                          "fallback_extension_enabled", "now_ms", "record_decision",
                                          "record_settle", "settings", "stats", "update_event_filter"]
    for name in protocol_members(CallHost):
        assert hasattr(g, name), name
    assert isinstance(g.now_ms(), int)
    assert isinstance(g.stats.failures, int) and isinstance(g.stats.extended, int)
    assert_satisfies(gate.Gate, CallHost, skip={"now_ms"})  # now_ms: an injectable clock, set per instance


def test_calls_type_their_host_and_never_import_the_gate():
    import typing

    assert typing.get_type_hints(CallActor.__init__, localns=vars(calls))["gate"] is CallHost
    for module in (calls, continue_mode):
        tree = ast.parse(inspect.getsource(module))
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "ari_app.gate" not in imported, module.__name__


def test_the_gate_asks_calls_what_they_are():
    tree = ast.parse(inspect.getsource(gate))
    switches = [ast.unparse(n) for n in ast.walk(tree)
                if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "isinstance"
                and any(getattr(a, "id", None) in ("BridgeCall", "ContinueCall", "CallActor") for a in ast.walk(n))]
    assert switches == []
    assert (BridgeCall.bridged, BridgeCall.needs_channel_varsets) == (True, False)
    assert (ContinueCall.bridged, ContinueCall.needs_channel_varsets) == (False, True)
