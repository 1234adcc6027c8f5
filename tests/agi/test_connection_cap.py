"""A flood of idle connections (issue 15: 1,100 idle connections exhausted 1,024 descriptors, 94,000
tracebacks in 10 s, a good session stalled 9 s): the server serves at most max_connections at once,
closes the rest at once with one warning, and a good session still completes quickly."""
from __future__ import annotations

import asyncio
import errno
import logging
import time

import pytest

from agi.routes import VAR_STATUS
from agi.settings import AgiSettings
from callgate import config as cfgmod

from .fakes import play
from .test_server_robustness import env_for, stub_server

CAP = 40
IDLE = 100


async def test_beyond_the_cap_connections_are_closed_at_once_and_a_good_session_completes(caplog):
    caplog.set_level(logging.DEBUG)
    # Idle peers keep their connection for read_timeout (5 s): well past the good session below.
    async with stub_server(max_connections=CAP, read_timeout=5.0, session_timeout=10.0) as srv:
        idle = [await asyncio.open_connection(srv.host, srv.port) for _ in range(IDLE)]
        # Every connection past the cap is closed by the server without a byte.
        closed = 0
        for reader, _ in idle[CAP:]:
            data = await asyncio.wait_for(reader.read(), 3.0)
            assert data == b""
            closed += 1
        assert closed == IDLE - CAP
        await asyncio.sleep(0.1)
        assert srv.refused >= IDLE - CAP
        # While the cap is held by idle peers, new connections are refused too...
        for _, w in idle[CAP:]:
            w.close()
        # ...and once one slot frees, a good session gets in and completes well within the idle timeout.
        idle[0][1].close()
        await asyncio.sleep(0.2)
        started = time.monotonic()
        result = await asyncio.wait_for(play(srv.host, srv.port, env_for("1795.good")), 4.0)
        assert result.variables[VAR_STATUS] == "ALLOW"
        assert time.monotonic() - started < 3.0
        for _, w in idle[1:CAP]:
            w.close()
    agi_lines = [r for r in caplog.records if r.name == "callgate.agi"]
    refusals = [r for r in agi_lines if "connection limit reached" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.WARNING
    assert not any(r.exc_info for r in caplog.records)
    assert len(agi_lines) < 10, [r.getMessage() for r in agi_lines]


async def test_idle_peers_that_never_send_a_request_are_closed_by_the_idle_timeout_with_one_line(caplog):
    caplog.set_level(logging.DEBUG)
    async with stub_server(read_timeout=0.3) as srv:
        idle = [await asyncio.open_connection(srv.host, srv.port) for _ in range(30)]
        for reader, _ in idle:
            assert await asyncio.wait_for(reader.read(), 3.0) == b""  # closed by the server
        for _, w in idle:
            w.close()
    lines = [r for r in caplog.records if r.name == "callgate.agi" and "sent no request" in r.getMessage()]
    assert len(lines) == 1


async def test_accept_out_of_descriptors_is_one_warning_not_a_traceback_flood(caplog):
    caplog.set_level(logging.DEBUG)
    async with stub_server() as srv:
        loop = asyncio.get_running_loop()
        for _ in range(500):
            loop.call_exception_handler({"message": "socket.accept() out of system resource",
                                         "exception": OSError(errno.EMFILE, "Too many open files")})
        result = await play(srv.host, srv.port, env_for("1795.after"))
        assert result.variables[VAR_STATUS] == "ALLOW"
        loop.call_exception_handler({"message": "something else", "exception": RuntimeError("other")})
    lines = [r for r in caplog.records if "accept" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING and not lines[0].exc_info
    assert "Too many open files" in lines[0].getMessage() and "CALLGATE_AGI_MAX_CONNECTIONS" in lines[0].getMessage()
    # anything else still reaches asyncio's own handler
    assert any(r.name == "asyncio" and r.getMessage() == "something else" for r in caplog.records)


def from_env(environ):
    """AgiSettings through the one configuration path ([agi]: file + environment)."""
    return cfgmod.agi_settings(cfgmod.load(None, environ=environ))


def test_the_cap_is_configurable_by_file_and_environment(tmp_path):
    assert AgiSettings().max_connections == 512 and from_env({}).max_connections == 512
    assert from_env({"CALLGATE_AGI_MAX_CONNECTIONS": "64"}).max_connections == 64
    for bad in ("0", "-1", "lots", "1e3"):
        with pytest.raises(cfgmod.ConfigError, match="CALLGATE_AGI_MAX_CONNECTIONS"):
            from_env({"CALLGATE_AGI_MAX_CONNECTIONS": bad})
    f = tmp_path / "c.toml"
    f.write_text("[agi]\nmax_connections = 100\n")
    cfg = cfgmod.load(str(f), environ={})
    assert cfgmod.agi_settings(cfg).max_connections == 100
