"""ARI simulator: a real aiohttp HTTP + WebSocket server on 127.0.0.1 that behaves like the
Asterisk 22 of the recorded traces (/work/shared/ari/traces; copies in tests/ari/traces).

Driving it::

    sim = AriSimulator(user="callgate", password="secret", apps=("callgate",), time_scale=1.0)
    await sim.start(port=0)          # sim.url == "http://127.0.0.1:PORT"; the app connects
                                     # ws://.../ari/events?app=callgate&api_key=callgate:secret
    await sim.wait_app_connected()   # until the app's event socket is up
    sim.script_destination("PJSIP/15145550100@trunk", Party(answer_after=1.0, hangup_after=3.0))
    sim.script_destination_default(Party(busy=True))       # any other dialled endpoint
    call = await sim.place_call(endpoint="alice", exten="15145550100", app_args=["outbound"],
                                caller_hangup_after=2.0)   # alice dials; Stasis(callgate,outbound)
    outcome = await call.ended(timeout=5)   # CallOutcome(sip_final, q850_cause, answered, talk_ms,
                                            #   heard, progress, ended_by, sip_reason, ringing, ...)
    await sim.stop()

Parties (``Party``): ``answer_after`` / ``ring_after`` / ``hangup_after`` seconds, ``busy=True``
(486, cause 17), ``no_answer=True`` (rings until the dial ``timeout``: cause 19, the caller then gets
whatever the app sends), ``fail_cause=34`` (503). A calling phone: ``caller_hangup_after`` (BYE that
long after it is answered), ``caller_cancel_after`` (CANCEL that long after dialling, if still
unanswered: cause 127, 487). ``await sim.hangup_channel(id)`` makes any party hang up now.

Time: every scripted delay is in simulated seconds; ``time_scale`` (real seconds per simulated
second, e.g. 0.01) speeds everything up, including dial timeouts, playback lengths (``sim.sounds``)
and the continue-mode L() limit. Timestamps, ``talk_ms`` and ANSWEREDTIME are simulated time
(wall clock at start + real elapsed / time_scale).

Behaviour as traced: the event types, key order and field shapes; created channels enter Stasis
asynchronously (``stasis_entry_delay``; before that -> 409 "Channel not in Stasis application",
after it and before answer -> 412 "Channel in invalid state"); ChannelDestroyed causes
(16 normal, 17 busy, 19 no answer, 127 caller cancel); hangup ``reason``/``reason_code`` -> SIP
final response (``callgate_fakes.ari_simulator.causes``); PlaybackStarted/Finished (missing sound -> failed,
unknown scheme -> never finishes); ApplicationReplaced when a second socket takes the app (the
first stays open, silent); events are lost while an app's socket is down; a call placed while the
app is not connected fails with 603 (``ended_by="pbx"``); Basic auth or ``api_key`` (401).
Continue mode: POST /continue -> StasisEnd, then a tiny dialplan: context ``callgate-continue``
dials at once; otherwise (the product's ``callgate-outbound-continue`` / ``callgate-inbound-continue``
routes of asterisk-conf/extensions.conf) it checks CALLGATE_STATUS == ALLOW and a numeric
CALLGATE_MAX_MS (and, inbound, a CALLGATE_ENDPOINT), else hangs up as ``[callgate-deny]`` does: the
cause follows CALLGATE_REASON (21 → 403, 1 → 404, 17 → 486, anything else 34 → 503; the lab route of
the traces used 21 for every refusal). The Dial() runs ``PJSIP/${EXTEN}@trunk`` (inbound:
``PJSIP/${CALLGATE_ENDPOINT}``) with L() as the product dialplan gives it (CALLGATE_MAX_MS, and a warning
CALLGATE_WARN_MS = 60 s before the limit, at most limit - 1 ms: Asterisk plays only a warning strictly
inside the limit): the scripted party answers, the warning beep is "heard" (at the answer for a grant
of 60 s or less), the call ends at the limit (``ended_by="limit"``) with the Dial
events and ANSWEREDTIME/ANSWEREDTIME_MS varsets a subscribed app sees.

Every REST call is validated against the ARI swagger (``swagger_table``, loading the data file
``ari_swagger.json`` that ``swagger_gen`` derives from the api-docs): unknown path ->
404 "Resource not found", wrong method -> 405 "Invalid method", missing/invalid parameters -> 400
(Asterisk's wording where the traces show it). Swagger operations the simulator does not model
answer 501. Inspection: ``sim.requests`` (RecordedRequest: method, path with /ari, query, body,
status), ``sim.events_generated`` ((app, event, fate) in order: sent / dropped / filtered),
``sim.events_sent`` ((app, event) in send order), ``sim.events_dropped``,
``sim.events_of(channel_id)``, ``sim.channels`` / ``sim.bridges`` (live JSON), ``sim.calls``.
Faults: ``sim.inject_rest_fault("POST", r"/channels/.*/answer", 500, "boom", times=1)``,
``sim.drop_websockets()``, ``sim.refuse_websockets(True)``.
"""
from callgate_fakes.ari_simulator.model import CallOutcome, Party, RecordedRequest, SimCall
from callgate_fakes.ari_simulator.server import AriSimulator

__all__ = ["AriSimulator", "CallOutcome", "Party", "RecordedRequest", "SimCall"]
