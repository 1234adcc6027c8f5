"""AriClient against real sockets: the simulator, and a scripted events server for ordering."""
from __future__ import annotations

import asyncio
import json
import socket

import pytest
from aiohttp import web

from ari_app import errors
from ari_app.client import AriClient, backoff_delay
from callgate_fakes.ari_simulator import Party

USER, PASSWORD, APP = "callgate", "secret", "callgate"


@pytest.fixture
async def client(simulator):
    c = AriClient(simulator.url, USER, PASSWORD, APP, backoff_initial=0.01, backoff_max=0.05)
    yield c
    await c.close()


async def run_client(c: AriClient) -> asyncio.Task:
    task = asyncio.create_task(c.run())
    assert await c.wait_connected(5)
    return task


# ---------------------------------------------------------------- REST and typed errors
async def test_rest_typed_errors_carry_status_and_asterisk_message(simulator_factory):
    # created channels enter Stasis 0.2 s after the create: room for the 409 race on a busy machine
    simulator = await simulator_factory(stasis_entry_delay=0.2)
    client = AriClient(simulator.url, USER, PASSWORD, APP, backoff_initial=0.01, backoff_max=0.05)
    task = await run_client(client)
    call = await simulator.place_call(exten="15145550100")
    ch = call.channel_id

    with pytest.raises(errors.AriNotFound) as e404:
        await client.get_channel("no-such-channel")
    assert (e404.value.status, e404.value.message, e404.value.method, e404.value.path) == (
        404, "Channel not found", "GET", "/channels/no-such-channel")
    with pytest.raises(errors.AriNotFound) as unknown:
        await client.request("GET", "/no/such/resource")
    assert unknown.value.message == "Resource not found"
    with pytest.raises(errors.AriMethodNotAllowed) as e405:
        await client.request("PUT", "/channels")
    assert e405.value.message == "Invalid method"
    with pytest.raises(errors.AriBadRequest) as e400:
        await client.request("DELETE", f"/channels/{ch}", params={"reason": "insufficient_funds"})
    assert e400.value.message == "Invalid reason for hangup reason provided"
    with pytest.raises(errors.AriConflict) as e409:
        await client.dial(ch)
    assert e409.value.message == "Channel is not in the 'Down' state"
    callee = await client.create_channel("PJSIP/15145550100@trunk", "dialed", originator=ch)
    with pytest.raises(errors.AriConflict) as race:      # before its StasisStart
        await client.answer(callee["id"])
    assert race.value.message == "Channel not in Stasis application"
    await asyncio.sleep(0.3)
    with pytest.raises(errors.AriInvalidState) as e412:  # in Stasis, not dialled
        await client.answer(callee["id"])
    assert e412.value.message == "Channel in invalid state"
    with pytest.raises(errors.AriUnprocessable) as e422:
        await client.unsubscribe("bridge:no-such-bridge")
    assert e422.value.message == "Event source was not subscribed to"
    with pytest.raises(errors.AriServerError) as e500:
        await client.create_channel("NoSuchTech/123", "dialed")
    assert (e500.value.status, e500.value.message) == (500, "Allocation failed")
    assert isinstance(e500.value, errors.AriError)
    await client.close()
    await task


async def test_wrong_password_is_unauthorized(simulator):
    c = AriClient(simulator.url, USER, "wrong", APP)
    try:
        with pytest.raises(errors.AriUnauthorized) as e401:
            await c.list_channels()
        assert e401.value.message == "Authentication required"
    finally:
        await c.close()


async def test_unreachable_asterisk_is_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]   # closed again: nothing listens there
    c = AriClient(f"http://127.0.0.1:{port}", USER, PASSWORD, APP, request_timeout=2)
    try:
        with pytest.raises(errors.AriUnavailable) as exc:
            await c.list_channels()
        assert exc.value.status == 0
    finally:
        await c.close()


async def test_helpers_send_the_traced_requests(simulator, client):
    task = await run_client(client)
    call = await simulator.place_call(exten="15145550100")
    ch = call.channel_id
    await client.ring(ch)
    await client.set_variable(ch, "CALLGATE_MAX_MS", "4000")
    assert await client.get_variable(ch, "CALLGATE_MAX_MS") == "4000"
    assert await client.get_variable(ch, "NOT_SET") is None
    app = await client.subscribe(f"channel:{ch}")
    assert app["channel_ids"] == [ch]
    bridge = await client.create_bridge(name=f"callgate-{ch}")
    assert (bridge["bridge_type"], bridge["technology"], bridge["channels"]) == ("mixing", "simple_bridge", [])
    pb = await client.play(ch, "sound:beep")
    assert pb["state"] == "queued" and pb["target_uri"] == f"channel:{ch}"
    assert [c["id"] for c in await client.list_channels()] == [ch]
    assert [b["id"] for b in await client.list_bridges()] == [bridge["id"]]
    info = await client.get_asterisk_info()
    assert info["system"]["entity_id"] == simulator.asterisk_id
    await client.hangup(ch, reason="rejected")
    await client.destroy_bridge(bridge["id"])
    outcome = await call.ended(timeout=5)
    assert (outcome.sip_final, outcome.q850_cause, outcome.ended_by) == (403, 21, "app")
    sent = [(r.method, r.path, r.query) for r in simulator.requests]
    assert ("POST", f"/ari/channels/{ch}/ring", {}) in sent
    assert ("POST", f"/ari/channels/{ch}/variable", {"variable": "CALLGATE_MAX_MS", "value": "4000"}) in sent
    assert ("POST", "/ari/applications/callgate/subscription", {"eventSource": f"channel:{ch}"}) in sent
    assert ("DELETE", f"/ari/channels/{ch}", {"reason": "rejected"}) in sent
    await client.stop()
    await task


def variable_posts(simulator, ch):
    return [r.query["variable"] for r in simulator.requests
            if r.method == "POST" and r.path == f"/ari/channels/{ch}/variable"]


async def test_set_variables_is_one_array_request_checked_once_per_connection(simulator, client, caplog):
    task = await run_client(client)
    first = await simulator.place_call(exten="15145550100")
    second = await simulator.place_call(exten="15145550100")
    items = [("CALLGATE_MAX_MS", "60000"), ("CALLGATE_STATUS", "ALLOW"), ("CALLGATE_REASON", ""),
             ("CALLGATE_SESSION", "9f1c")]
    await client.set_variables(first.channel_id, items)
    await client.set_variables(second.channel_id, items)
    for call in (first, second):
        ch = call.channel_id
        assert variable_posts(simulator, ch) == ["ARRAY(CALLGATE_MAX_MS,CALLGATE_STATUS,CALLGATE_REASON,CALLGATE_SESSION)"]
        assert simulator.channel_variables(ch) | dict(items) == simulator.channel_variables(ch)
        # Asterisk sets them one after the other: one ChannelVarset each, in order
        assert [(e["variable"], e["value"]) for e in simulator.events_of(ch, generated=True)
                if e["type"] == "ChannelVarset" and e["variable"].startswith("CALLGATE_")] == items
    gets = [r for r in simulator.requests if r.method == "GET" and r.path.endswith("/variable")]
    assert [(r.path, r.query) for r in gets] == [(f"/ari/channels/{first.channel_id}/variable",
                                                 {"variable": "CALLGATE_MAX_MS"})]  # checked once
    assert client.array_function is True
    simulator.drop_websockets()                # a reconnect may be another Asterisk: ask again
    await asyncio.sleep(0.05)
    assert await client.wait_connected(5) and client.array_function is None
    await client.stop()
    await task


async def test_set_variables_without_array_function_falls_back_one_by_one(simulator, client, caplog):
    simulator.dialplan_functions.discard("ARRAY")  # modules.conf without func_strings.so
    task = await run_client(client)
    first = await simulator.place_call(exten="15145550100")
    second = await simulator.place_call(exten="15145550100")
    items = [("CALLGATE_MAX_MS", "0"), ("CALLGATE_STATUS", "DENY"), ("CALLGATE_REASON", "depleted")]
    with caplog.at_level("ERROR", logger="ari_app.client"):
        await client.set_variables(first.channel_id, items)
        await client.set_variables(second.channel_id, items)
    assert simulator.function_errors == ["Function ARRAY not registered"]
    assert [r.getMessage() for r in caplog.records].count(
        "Asterisk has no ARRAY() function (func_strings.so not loaded?): channel variables are set one request "
        "each from now on; load func_strings.so to save those requests") == 1
    assert client.array_function is False
    assert variable_posts(simulator, first.channel_id) == ["ARRAY(CALLGATE_MAX_MS,CALLGATE_STATUS,CALLGATE_REASON)",
                                                           *(n for n, _ in items)]
    assert variable_posts(simulator, second.channel_id) == [n for n, _ in items]   # no second try
    for call in (first, second):
        vars_ = simulator.channel_variables(call.channel_id)
        assert {n: vars_[n] for n, _ in items} == dict(items)
    await client.stop()
    await task


@pytest.mark.parametrize("value", ["a,b", 'say "hi"', "x(y)", "two words", "back\\slash"])
async def test_set_variables_sends_values_array_would_mangle_one_by_one(simulator, client, value):
    task = await run_client(client)
    call = await simulator.place_call(exten="15145550100")
    items = [("CALLGATE_STATUS", "ALLOW"), ("CALLGATE_NOTE", value)]
    await client.set_variables(call.channel_id, items)
    assert variable_posts(simulator, call.channel_id) == ["CALLGATE_STATUS", "CALLGATE_NOTE"]
    assert simulator.channel_variables(call.channel_id)["CALLGATE_NOTE"] == value
    await client.stop()
    await task


# ---------------------------------------------------------------- events: keys and dispatch
def test_backoff_is_exponential_capped_and_jittered():
    assert [backoff_delay(n, 0.5, 30.0, lambda a, b: b) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert [backoff_delay(n, 0.5, 30.0, lambda a, b: a) for n in range(3)] == [0.25, 0.5, 1.0]
    assert backoff_delay(10_000, 0.5, 30.0, lambda a, b: b) == 30.0
    delays = {backoff_delay(3, 0.5, 30.0) for _ in range(50)}
    assert len(delays) > 1 and all(2.0 <= d <= 4.0 for d in delays)


def test_events_url_carries_app_credentials_and_subscribe_all():
    c = AriClient("http://127.0.0.1:8088/", "lab", "lab", "callgate", subscribe_all=True)
    assert c.events_url() == "ws://127.0.0.1:8088/ari/events?app=callgate&api_key=lab:lab&subscribeAll=true"
    assert AriClient("http://h:1", "u", "p", "a").events_url() == "ws://h:1/ari/events?app=a&api_key=u:p"


class ScriptedEvents:
    """A real websocket server that sends a fixed list of events on each connection."""

    def __init__(self, batches: list[list[dict]]) -> None:
        self.batches = batches
        self.connections = 0
        self.url = ""
        self._runner: web.AppRunner | None = None
        self.sockets: list[web.WebSocketResponse] = []

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ari/events", self._ws)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"

    async def _ws(self, request):
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.sockets.append(ws)
        batch = self.batches[min(self.connections, len(self.batches) - 1)]
        self.connections += 1
        for ev in batch:  # a str is sent as is (key order, pretty printing)
            await ws.send_str(ev if isinstance(ev, str) else json.dumps(ev))
        async for _ in ws:
            pass
        return ws

    async def stop(self) -> None:
        for ws in self.sockets:
            await ws.close()
        await self._runner.cleanup()


def ev(n: int, channel: str, etype: str = "ChannelVarset") -> dict:
    return {"type": etype, "n": n, "channel": {"id": channel}}


def test_the_client_keeps_no_per_key_dispatch():
    """One event-ordering mechanism: the gate's per-call inbox. The client only routes, in arrival order."""
    c = AriClient("http://h:1", "u", "p", "a")
    for gone in ("on_event", "drain", "_queues", "_workers"):
        assert not hasattr(c, gone), gone


async def test_on_connected_runs_before_the_connections_events():
    server = ScriptedEvents([[ev(1, "A")], [ev(2, "A")]])
    await server.start()
    c = AriClient(server.url, USER, PASSWORD, APP, backoff_initial=0.01, backoff_max=0.02)
    log: list[str] = []

    async def on_connected():
        log.append("resync-start")
        await asyncio.sleep(0.05)   # e.g. GET /channels while events are already arriving
        log.append("resync-done")

    def handler(event):
        log.append(f"event-{event['n']}")

    c.on_connected(on_connected)
    c.on_event_now(handler)
    task = asyncio.create_task(c.run())
    try:
        for _ in range(300):
            if "event-1" in log:
                break
            await asyncio.sleep(0.01)
        assert log == ["resync-start", "resync-done", "event-1"]
        await server.sockets[0].close()   # the server drops the socket
        for _ in range(300):
            if "event-2" in log:
                break
            await asyncio.sleep(0.01)
        assert log[3:] == ["resync-start", "resync-done", "event-2"]
        assert c.reconnects == 1 and c.connected
    finally:
        await c.close()
        await task
        await server.stop()


async def test_handler_exception_is_logged_and_dispatch_goes_on():
    server = ScriptedEvents([[ev(1, "A"), ev(2, "A")]])
    await server.start()
    c = AriClient(server.url, USER, PASSWORD, APP)
    seen = []

    def handler(event):
        seen.append(event["n"])
        if event["n"] == 1:
            raise RuntimeError("handler bug")

    c.on_event_now(handler)
    task = asyncio.create_task(c.run())
    try:
        for _ in range(300):
            if seen == [1, 2]:
                break
            await asyncio.sleep(0.01)
        assert seen == [1, 2]
    finally:
        await c.close()
        await task
        await server.stop()


# ---------------------------------------------------------------- reconnect against the simulator
async def test_reconnects_after_a_drop_and_resyncs(simulator, client):
    resyncs = []

    async def on_connected():
        resyncs.append((await client.get_application())["name"])

    client.on_connected(on_connected)
    gaps = []
    client.on_disconnected(lambda: gaps.append(len(resyncs)))
    task = await run_client(client)
    assert resyncs == ["callgate"] and gaps == []
    simulator.refuse_websockets(True)
    simulator.drop_websockets()
    await asyncio.sleep(0.1)
    assert not client.connected              # retrying against the refusing server
    assert gaps == [1]                       # told once when the gap began, not per failed retry
    simulator.refuse_websockets(False)
    assert await client.wait_connected(5)
    assert client.reconnects == 1 and resyncs == ["callgate", "callgate"]
    await client.stop()
    await task
    assert not client.connected
    assert gaps == [1]                       # stop() is not a gap


async def test_application_replaced_stops_the_first_client(simulator, caplog):
    first = AriClient(simulator.url, USER, PASSWORD, APP, backoff_initial=0.01)
    second = AriClient(simulator.url, USER, PASSWORD, APP, backoff_initial=0.01)
    got = []

    first.on_event_now(lambda event: got.append(event["type"]))
    t1 = await run_client(first)
    t2 = await run_client(second)
    await asyncio.wait_for(t1, 5)           # run() returns, it does not fight back
    assert first.replaced and not first.connected
    assert got == ["ApplicationReplaced"]
    assert any(r.levelname == "ERROR" and "REPLACED" in r.getMessage() for r in caplog.records)
    await asyncio.sleep(0.1)
    assert second.connected and not second.replaced and simulator.app_connected()
    await second.close()
    await t2
    await first.close()


async def test_events_reach_handlers_in_trace_order(simulator, client):
    """A reject flow through the client: progress, play, PlaybackFinished, DELETE."""
    done = asyncio.Event()
    seen = []
    requests: set[asyncio.Task] = set()

    async def act(event):
        if event["type"] == "StasisStart":
            await client.progress(event["channel"]["id"])
            await client.play(event["channel"]["id"], "sound:beep")
        elif event["type"] == "PlaybackFinished":
            await client.hangup(event["playback"]["target_uri"].split(":", 1)[1], reason="rejected")

    def handler(event):  # routes only (it must not block): the REST calls run in their own task
        if event["type"] != "ChannelVarset":    # RTPAUDIOQOS* after early media, as traced
            seen.append(event["type"])
        if event["type"] == "StasisEnd":
            done.set()
        task = asyncio.ensure_future(act(event))
        requests.add(task)
        task.add_done_callback(requests.discard)

    client.on_event_now(handler)
    task = await run_client(client)
    simulator.script_destination_default(Party())
    call = await simulator.place_call(exten="15145550100")
    await asyncio.wait_for(done.wait(), 5)
    outcome = await call.ended(timeout=5)
    assert seen == ["StasisStart", "PlaybackStarted", "PlaybackFinished", "ChannelHangupRequest", "StasisEnd"]
    assert (outcome.sip_final, outcome.progress, outcome.heard, outcome.answered) == (
        403, True, ["sound:beep"], False)
    await client.stop()
    await task


async def test_ignored_events_are_dropped_unparsed_and_nothing_wanted_is_lost():
    frames = [
        # Asterisk writes ChannelVarset with "variable" first, every other event with "type" first
        '{"variable":"RTPAUDIOQOS","value":"ssrc=1","type":"ChannelVarset","channel":{"id":"A"},"n":1}',
        '{"variable":"ANSWEREDTIME_MS","value":"1500","type":"ChannelVarset","channel":{"id":"A"},"n":2}',
        '{\n  "type": "ChannelDialplan",\n  "channel": {"id": "A"},\n  "n": 3\n}',
        '{"type":"ChannelVarset","variable":"BRIDGEPEER","value":"x","channel":{"id":"A"},"n":4}',
        '{"type":"ChannelVarset","variable":"ANSWEREDTIME_MS","value":"9","channel":{"id":"A"},"n":5}',
        # "type" not first: parsed and delivered (a router that wants to can still drop it)
        '{"n":6,"type":"ChannelDialplan","channel":{"id":"A"}}',
        # a value that merely mentions the varset type does not make a StasisStart a varset
        '{"variable":"X","value":"{\\"type\\":\\"ChannelVarset\\"}","type":"StasisStart","channel":{"id":"B"},"n":7}',
        '{"type":"StasisStart","channel":{"id":"B"},"n":8}',
    ]
    server = ScriptedEvents([frames])
    await server.start()
    c = AriClient(server.url, USER, PASSWORD, APP)
    c.ignore_events({"ChannelDialplan"}, varsets_except={"ANSWEREDTIME_MS"})
    now: list[int] = []
    c.on_event_now(lambda event: now.append(event["n"]))
    task = asyncio.create_task(c.run())
    try:
        for _ in range(300):
            if 8 in now:
                break
            await asyncio.sleep(0.01)
        assert now == [2, 5, 6, 7, 8]  # in arrival order, across channels
    finally:
        await c.close()
        await task
        await server.stop()


async def test_query_values_are_percent_encoded(simulator, client):
    task = await run_client(client)
    call = await simulator.place_call(exten="15145550100")
    ch = call.channel_id
    for _ in range(200):
        if simulator.channels.get(ch, {}).get("dialplan", {}).get("app_name") == "Stasis":
            break
        await asyncio.sleep(0.01)
    value = "a b&c=d,e:f/g?h#i%j+k é"
    await client.set_variable(ch, "CALLGATE_NOTE", value)
    sent = simulator.requests[-1]
    assert sent.path == f"/ari/channels/{ch}/variable" and sent.status == 204
    assert sent.query == {"variable": "CALLGATE_NOTE", "value": value}
    await client.hangup(ch)
    await client.stop()
    await task
