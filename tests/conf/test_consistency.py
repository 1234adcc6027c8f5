"""The drop-in configuration says the same names as the code: routes of the AGI server (agi.routes),
the dialplan contract both adapters speak — CALLGATE_* variables, statuses, directions, refusal
causes — from the neutral callgate_dialplan module, the Stasis app name and arguments of the ARI gate
(read as strings from ari_app's settings and gate), the emergency numbers of the core, and the names
shared between the .conf files. Also: every setting line of every file is explained by a comment."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import callgate_dialplan as dialplan
from agi import routes
from callgate_fakes.ari_simulator.dialplan import DENY_CAUSES
from agi.settings import AgiSettings
from billing_core.domain.numbers import DEFAULT_EMERGENCY_NUMBERS

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "asterisk-conf"
DIALPLANS = ["extensions.conf", "extensions_custom.conf"]
ALL_FILES = ["http.conf", "ari.conf", "pjsip.conf", *DIALPLANS]


def contexts(name: str) -> dict[str, list[str]]:
    """context → its dialplan lines (comments stripped)."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in (CONF / name).read_text().splitlines():
        line = raw.split(";", 1)[0].rstrip() if not raw.lstrip().startswith(";") else ""
        if m := re.match(r"^\[([^\]]+)\]", line):
            current = m.group(1)
            out.setdefault(current, [])
        elif line.strip() and current is not None:
            out[current].append(line.strip())
    return out


def text(name: str) -> str:
    """The file without comment lines."""
    return "\n".join(l for l in (CONF / name).read_text().splitlines() if not l.lstrip().startswith(";"))


def ari_source(module: str) -> str:
    return (ROOT / "ari_app" / f"{module}.py").read_text()


# ---------------------------------------------------------------------------------- the AGI server
@pytest.mark.parametrize("name", DIALPLANS)
def test_agi_routes_and_args_match_the_server(name):
    calls = re.findall(r"AGI\(([^,)]+)/(\w+)(?:,([^)]*))?\)", text(name))
    assert {route for _, route, _ in calls} == set(routes.ROUTES)
    port = AgiSettings().port
    for url, route, args in calls:
        assert url in (f"agi://127.0.0.1:{port}", "${CALLGATE_AGI}"), url
        if route == routes.ROUTE_AUTHORIZE:
            assert args.split(",")[0] in dialplan.DIRECTIONS
        if route == routes.ROUTE_SETTLE:
            assert args == f"${{{dialplan.VAR_SESSION}}},${{ANSWEREDTIME}},${{ANSWEREDTIME_MS}}"
        if route == routes.ROUTE_ANSWERED:
            assert args == "${ARG1}"
    if "${CALLGATE_AGI}" in text(name):
        assert f"CALLGATE_AGI=agi://127.0.0.1:{port}" in text(name)


@pytest.mark.parametrize("name", DIALPLANS)
def test_fastagi_contexts_read_every_variable_the_server_sets(name):
    body = text(name)
    for var in dialplan.VARIABLES:
        assert "${" + var + "}" in body, var
    assert f'"${{{dialplan.VAR_STATUS}}}" != "{dialplan.STATUS_ALLOW}"' in body  # only an explicit ALLOW dials
    assert '"${AGISTATUS}" != "SUCCESS"' in body
    assert "L(${CALLGATE_MAX_MS}:" in body and "U(callgate-answered^${CALLGATE_SESSION})" in body
    assert "Set(CHANNEL(hangup_handler_push)=callgate-settle,s,1)" in body


@pytest.mark.parametrize("name", DIALPLANS)
def test_hangup_handler_is_pushed_before_authorize(name):
    for ctx, lines in contexts(name).items():
        auth = [i for i, l in enumerate(lines) if "/authorize," in l]
        if auth:
            push = [i for i, l in enumerate(lines) if "hangup_handler_push" in l]
            assert push and push[0] < auth[0], ctx
            failed = next(l for l in lines if "agi-failed" in l and "GotoIf" in l)
            assert lines.index(failed) == auth[0] + 1  # AGISTATUS checked right after the AGI
            assert any(l.endswith("Hangup(34)") for l in lines), ctx


def test_deny_causes_match_the_server():
    """callgate-deny maps CALLGATE_REASON to the same causes when only the reason is set (ARI continue)."""
    lines = contexts("extensions.conf")["callgate-deny"]
    mapped: dict[str, int] = {}
    for l in lines:
        if m := re.search(r'"\$\{CALLGATE_REASON\}" = "(\w+)"\]\?Set\(LOCAL\(cause\)=(\d+)\)', l):
            mapped[m.group(1)] = int(m.group(2))
        if m := re.search(r'REGEX\("\^\(([\w|]+)\)\$" \$\{CALLGATE_REASON\}\)\}\]\?Set\(LOCAL\(cause\)=(\d+)\)', l):
            mapped.update({r: int(m.group(2)) for r in m.group(1).split("|")})
    assert "Set(LOCAL(cause)=34)" in "".join(lines)  # the default
    expected = {r.value: c for r, c in dialplan.HANGUP_CAUSES.items() if c != dialplan.CAUSE_NO_CIRCUIT}
    assert mapped == expected
    assert f"Set(LOCAL(cause)={dialplan.CAUSE_NO_CIRCUIT})" in "".join(lines)
    # FastAGI's CALLGATE_HANGUPCAUSE and the ARI simulator's model of this context say the same
    assert routes.HANGUP_CAUSES is dialplan.HANGUP_CAUSES
    assert DENY_CAUSES == expected
    assert lines[-1] == "same => n,Hangup(${cause})"


# ---------------------------------------------------------------------------------- the ARI gate
def test_stasis_app_name_and_args_match_the_gate():
    app = re.search(r'app: str = "(\w+)"', ari_source("settings")).group(1)
    call_args = set(re.findall(r'"(\w+)"', re.search(r"CALL_ARGS = \(([^)]*)\)", ari_source("gate")).group(1)))
    assert '"continue" in args' in ari_source("gate")
    handler_arg = re.search(r'^HANDLER_ARG = "([\w-]+)"', ari_source("continue_mode"), re.M).group(1)
    settle_arg = re.search(r'^SETTLE_ARG = "([\w-]+)"', ari_source("continue_mode"), re.M).group(1)
    calls = re.findall(r"Stasis\(([^)]*)\)", text("extensions.conf"))
    settle = f"{app},{settle_arg},${{CALLGATE_SESSION}},${{ANSWEREDTIME_MS}}"
    assert {c for c in calls} == {f"{app},outbound", f"{app},inbound", f"{app},outbound,continue,{handler_arg}",
                                  f"{app},inbound,continue,{handler_arg}", settle}
    for c in calls:
        if c != settle:
            assert set(c.split(",")[1:]) <= call_args | {"continue", handler_arg}
        assert c.split(",")[0] == app


def test_continue_contexts_push_the_settle_handler_before_stasis():
    """The handler is pushed before the gate decides (a caller who hangs up meanwhile is reported
    too), only where Stasis() says so, and it reports the session and Dial's talk time."""
    ctxs = contexts("extensions.conf")
    for ctx in ("callgate-outbound-continue", "callgate-inbound-continue"):
        lines = ctxs[ctx]
        push = next(i for i, l in enumerate(lines) if "hangup_handler_push)=callgate-continue-settle,s,1" in l)
        stasis = next(i for i, l in enumerate(lines) if "Stasis(callgate," in l)
        assert push < stasis and lines[stasis].endswith(",continue,hangup-handler)"), ctx
    handler = ctxs["callgate-continue-settle"]
    assert handler[0] == 'exten => s,1,GotoIf($["${CALLGATE_SESSION}" = ""]?done)'
    assert handler[-1] == "same => n,Return()"
    # the simulator plays this route with its own copy of the names (callgate_fakes/ari_simulator/dialplan.py)
    from callgate_fakes.ari_simulator.dialplan import CONTINUE_CONTEXTS, HANDLER_ARG, SETTLE_HANDLER
    assert (set(CONTINUE_CONTEXTS), HANDLER_ARG, SETTLE_HANDLER) == (
        {"callgate-outbound-continue", "callgate-inbound-continue"}, "hangup-handler", "callgate-continue-settle")


def test_continue_mode_reads_the_variables_the_gate_sets():
    from ari_app import continue_mode

    # the gate sets the neutral module's names (its flow is exercised in tests/ari/test_gate_continue.py)
    for name in ("VAR_STATUS", "VAR_REASON", "VAR_MAX_MS", "VAR_SESSION", "VAR_ENDPOINT", "STATUS_ALLOW", "STATUS_DENY"):
        assert getattr(continue_mode, name) is getattr(dialplan, name), name
    assert dict(continue_mode.deny_variables("suspended")) == {
        dialplan.VAR_MAX_MS: "0", dialplan.VAR_STATUS: dialplan.STATUS_DENY, dialplan.VAR_REASON: "suspended",
        dialplan.VAR_SESSION: ""}
    status, max_ms, endpoint = (f"${{{v}}}" for v in (dialplan.VAR_STATUS, dialplan.VAR_MAX_MS, dialplan.VAR_ENDPOINT))
    for ctx in ("callgate-outbound-continue", "callgate-inbound-continue"):
        body = "\n".join(contexts("extensions.conf")[ctx])
        assert '"${STASISSTATUS}" != "SUCCESS"' in body and "Congestion()" in body
        assert f'"{status}" != "{dialplan.STATUS_ALLOW}"' in body and f'"{max_ms}" = ""' in body
        assert f"L({max_ms}:" in body and "Gosub(callgate-deny,s,1)" in body
    inbound = "\n".join(contexts("extensions.conf")["callgate-inbound-continue"])
    assert f"Dial(PJSIP/{endpoint}," in inbound
    assert f'"{endpoint}" = ""' in inbound  # nobody to ring is a refusal
    deny_reads = set(re.findall(r"\$\{(CALLGATE_[A-Z_]+)\}", "\n".join(contexts("extensions.conf")["callgate-deny"])))
    assert dialplan.VAR_REASON in deny_reads


def test_the_recorded_end_handler_matches_the_gate():
    """[callgate-ended] (issue 15): pushed before bridge mode's Stasis(), keyed as the gate reads it."""
    from ari_app import recorded_ends

    ended = contexts("extensions.conf")[recorded_ends.ENDED_HANDLER.split(",")[0]]
    push = f"Set(CHANNEL(hangup_handler_push)={recorded_ends.ENDED_HANDLER})"
    for ctx in ("callgate-outbound", "callgate-inbound"):
        lines = contexts("extensions.conf")[ctx]
        stasis = next(i for i, line in enumerate(lines) if "Stasis(" in line)
        assert any(push in line for line in lines[:stasis]), ctx
    for ctx in ("callgate-outbound-continue", "callgate-inbound-continue"):  # DB() is blocked there
        assert not any(push in line for line in contexts("extensions.conf")[ctx]), ctx
    body = "\n".join(ended)
    assert f"${{{recorded_ends.CALL_VARIABLE}}}" in body and "${UNIQUEID}" in body
    assert f"Set(DB({recorded_ends.ENDED_FAMILY}/${{key}}/${{STRFTIME(,,%s%3q)}})=" in body
    assert f"DBdeltree({recorded_ends.ENDED_FAMILY})" in body
    for endpoint in (recorded_ends.READ_ENDPOINT, recorded_ends.CLEAR_ENDPOINT):
        exten, _, context = endpoint.removeprefix("Local/").partition("@")
        assert context == "callgate-ended" and any(line.startswith(f"exten => {exten},1,") for line in ended)


def test_every_callgate_variable_in_the_dialplans_is_known():
    from ari_app import recorded_ends

    globals_ = set(re.findall(r"^(CALLGATE_[A-Z_]+)=", text("extensions.conf"), re.M))
    known = set(dialplan.VARIABLES) | {recorded_ends.CALL_VARIABLE} | globals_
    for name in DIALPLANS:
        used = set(re.findall(r"\$\{(CALLGATE_[A-Z_]+)\}", text(name)))
        assert used <= known, used - known


# ---------------------------------------------------------------------------------- emergency
@pytest.mark.parametrize("name", DIALPLANS)
def test_emergency_numbers_bypass_every_gate(name):
    ctxs = contexts(name)
    phones = ctxs["from-internal-custom" if name == "extensions_custom.conf" else "from-internal"]
    for number in sorted(DEFAULT_EMERGENCY_NUMBERS):
        line = next(l for l in phones if l.startswith(f"exten => {number},1,"))
        assert line.endswith("Goto(callgate-emergency,${EXTEN},1)")
        assert phones.index(line) < min(i for i, l in enumerate(phones) if l.startswith("exten => _"))
    body = "\n".join(ctxs["callgate-emergency"])
    assert "Stasis(" not in body and "AGI(" not in body and "L(" not in body and "Dial(PJSIP/${EXTEN}@" in body


# ---------------------------------------------------------------------------------- contexts
@pytest.mark.parametrize("name", DIALPLANS)
def test_every_referenced_context_exists(name):
    ctxs = contexts(name)
    body = text(name)
    refs = set(re.findall(r"(?:Goto|Gosub)\(([\w-]+),", body))
    refs |= set(re.findall(r"hangup_handler_push\)=([\w-]+),", body))
    refs |= set(re.findall(r"U\(([\w-]+)\^", body))
    assert refs and refs <= set(ctxs), refs - set(ctxs)


def test_pjsip_matches_the_dialplan():
    ctxs = contexts("extensions.conf")
    pjsip = contexts("pjsip.conf")
    trunk = re.search(r"^CALLGATE_TRUNK=(\S+)$", text("extensions.conf"), re.M).group(1)
    assert f"[{trunk}]" in text("pjsip.conf")
    endpoint_contexts = set(re.findall(r"^context=(\S+)$", text("pjsip.conf"), re.M))
    assert endpoint_contexts == {"from-internal", "from-trunk"} and endpoint_contexts <= set(ctxs)
    assert "type=identify" in text("pjsip.conf") and re.search(r"^match=\S+", text("pjsip.conf"), re.M)
    assert all("direct_media=no" in "\n".join(v) for k, v in pjsip.items() if k in ("phone-defaults", trunk))


def test_http_and_ari_bind_loopback_with_a_callgate_user():
    from callgate.config import SCHEMA

    http = text("http.conf")
    assert re.search(r"^bindaddr=127\.0\.0\.1$", http, re.M) and re.search(r"^bindport=8088$", http, re.M)
    assert SCHEMA["ari"]["url"].default == "http://127.0.0.1:8088"
    ari = contexts("ari.conf")
    user = SCHEMA["ari"]["user"].default
    assert "type=user" in ari[user] and "read_only=no" in ari[user]
    assert "TLS" in (CONF / "http.conf").read_text()


# ---------------------------------------------------------------------------------- comments
@pytest.mark.parametrize("name", ALL_FILES)
def test_every_setting_line_is_commented(name):
    lines = (CONF / name).read_text().splitlines()
    for i, line in enumerate(lines):
        s = line.strip()
        if not s or s.startswith(";") or re.match(r"^\[[^\]]+\](\([^)]*\))?$", s) or s.startswith("#include"):
            continue
        assert lines[i - 1].strip().startswith(";"), f"{name}:{i + 1}: no comment above {s!r}"


def test_readme_explains_every_file_context_and_variable():
    readme = (CONF / "README.md").read_text()
    for name in ALL_FILES:
        assert f"`{name}`" in readme, name
    for name in DIALPLANS:
        for ctx in contexts(name):
            if ctx not in ("general", "globals"):
                assert f"`{ctx}`" in readme, ctx
    for var in (*dialplan.VARIABLES, "CALLGATE_AGI", "CALLGATE_TRUNK", "CALLGATE_RING_SECONDS", "CALLGATE_WARN_MS"):
        assert f"`{var}`" in readme, var


def test_internal_extensions_ring_the_pjsip_phones():
    phones = contexts("extensions.conf")["from-internal"]
    pjsip = text("pjsip.conf")
    internal = [m for line in phones if (m := re.match(r"exten => (\d+),1,Dial\(PJSIP/(\w+),", line))]
    assert len(internal) == 3
    for m in internal:
        if m:
            number, endpoint = m.groups()
            assert f"[{endpoint}](phone-defaults)" in pjsip
            assert re.search(rf'^\[{endpoint}\]\(phone-defaults\)\n(?:.*\n)*?callerid=".*" <{number}>', pjsip, re.M)
