"""The gate types the core with ari_app.ports.BillingCorePort; BillingCore satisfies it."""
from __future__ import annotations

from ari_app.ports import BillingCorePort
from billing_core.api import BillingCore
from tests.protocols import assert_satisfies, protocol_members


def test_billing_core_satisfies_the_gates_port():
    assert protocol_members(BillingCorePort) == ["answer", "authorize_call", "extend", "heartbeat", "live_cutoffs",
                                                 "live_sessions", "settle"]
    assert_satisfies(BillingCore, BillingCorePort)


async def test_a_real_core_is_a_port(core):
    assert isinstance(core, BillingCorePort)


def test_the_gate_and_its_calls_are_typed_with_the_port():
    import typing

    from ari_app import gate

    hints = typing.get_type_hints(gate.Gate.__init__)
    assert hints["core"] is BillingCorePort
