"""The AGI routes and keepalive type the core with agi.ports.BillingCorePort; BillingCore satisfies it."""
from __future__ import annotations

import typing

from agi import keepalive, routes, server
from agi.ports import BillingCorePort
from billing_core.api import BillingCore
from tests.protocols import assert_satisfies, protocol_members


def test_billing_core_satisfies_the_agi_port():
    assert protocol_members(BillingCorePort) == ["answer", "authorize_call", "clock", "heartbeat", "live_sessions",
                                                 "settle"]
    assert_satisfies(BillingCore, BillingCorePort)  # clock, an instance attribute: the isinstance test below


async def test_a_real_core_is_a_port(core):
    assert isinstance(core, BillingCorePort)
    assert isinstance(core.clock.now_ms(), int)


def test_the_routes_and_keepalive_are_typed_with_the_port():
    assert typing.get_type_hints(routes.Router.__init__)["core"] is BillingCorePort
    assert typing.get_type_hints(keepalive.keepalive_pass)["core"] is BillingCorePort
    assert typing.get_type_hints(server.serve)["core"] is BillingCorePort
