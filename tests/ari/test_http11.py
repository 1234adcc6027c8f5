"""ari_app.http11 against real sockets on 127.0.0.1: a scripted HTTP server whose every byte the
test chooses, so keep-alive, framing, the server's closes and timeouts are the real thing."""
from __future__ import annotations

import asyncio

import pytest

from ari_app import errors
from ari_app.client import AriClient
from ari_app.http11 import ConnectionDropped, Http11Pool, HttpProtocolError
from tests.tls import server_context


def ok(body: bytes = b"{}", extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class ScriptedServer:
    """Answers request number i with ``script(i, head, body)``: bytes to write, or a special:
    ``"close"`` (close without answering) or ``"hang"`` (never answer). ``then_close`` closes
    the connection after writing."""

    def __init__(self, script, ssl_ctx=None):
        self.script = script
        self.ssl_ctx = ssl_ctx
        self.requests: list[tuple[int, bytes, bytes]] = []  # (connection number, head, body)
        self.connections = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self):
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        for w in self.writers:
            w.close()
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length) if length else b""
                self.requests.append((number, head, body))
                action = self.script(len(self.requests) - 1, head, body)
                if action == "close":
                    writer.close()
                    return
                if action == "hang":
                    await asyncio.sleep(3600)
                then_close = isinstance(action, tuple)
                data = action[0] if then_close else action
                writer.write(data)
                await writer.drain()
                if then_close:
                    writer.close()
                    return
        finally:
            writer.close()


async def test_keep_alive_reuses_one_connection_and_sends_well_formed_requests():
    async with ScriptedServer(lambda i, h, b: ok(b'{"n": %d}' % i)) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            first = await pool.request("GET", "/ari/channels", headers="Authorization: Basic eDp5\r\n")
            second = await pool.request("POST", "/ari/channels/c1/ring")
            third = await pool.request("POST", "/ari/channels/c1/variable", body=b'{"a":1}',
                                       headers="Content-Type: application/json\r\n")
        finally:
            await pool.close()
    assert [r.body for r in (first, second, third)] == [b'{"n": 0}', b'{"n": 1}', b'{"n": 2}']
    assert (first.status, first.reason, first.headers["content-length"]) == (200, "OK", "8")
    assert srv.connections == 1 and [n for n, _, _ in srv.requests] == [1, 1, 1]
    heads = [h.decode() for _, h, _ in srv.requests]
    assert heads[0] == f"GET /ari/channels HTTP/1.1\r\nHost: 127.0.0.1:{srv.port}\r\nAuthorization: Basic eDp5\r\n\r\n"
    assert "Content-Length: 0\r\n" in heads[1]  # a POST without a body still says so
    assert "Content-Length: 7\r\n" in heads[2] and srv.requests[2][2] == b'{"a":1}'


async def test_chunked_close_delimited_http10_and_interim_responses_are_read_whole():
    responses = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + b"x" * 70_000,),  # close-delimited
        ok(b"[]").replace(b"HTTP/1.1", b"HTTP/1.0"),  # 1.0 without keep-alive: closed after
        ok(b"last"),
    ]
    async with ScriptedServer(lambda i, h, b: responses[i]) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            chunked = await pool.request("GET", "/a")
            interim = await pool.request("DELETE", "/b")
            close_delimited = await pool.request("GET", "/c")
            http10 = await pool.request("GET", "/d")
            last = await pool.request("GET", "/e")
        finally:
            await pool.close()
    assert chunked.body == b"hello world"
    assert (interim.status, interim.body) == (204, b"")
    assert close_delimited.body == b"x" * 70_000
    assert http10.body == b"[]" and last.body == b"last"
    # /a and /b on the first connection; /c ended it; /d ended the third; /e on a fourth
    assert [n for n, _, _ in srv.requests] == [1, 1, 1, 2, 3]


@pytest.mark.parametrize("response, needle", [
    (b"HTTP/2 200 OK\r\n\r\n", "status line"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabc", "more bytes"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
    (b"HTTP/1.1 200 OK\r\nX: " + b"a" * 70_000, "longer than"),
])
async def test_a_response_that_is_not_http_is_a_clear_error_and_the_connection_is_dropped(response, needle):
    answers = [response, ok(b"fine")]
    async with ScriptedServer(lambda i, h, b: answers[i]) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            with pytest.raises(HttpProtocolError, match=needle):
                await pool.request("GET", "/bad")
            assert (await pool.request("GET", "/next")).body == b"fine"
        finally:
            await pool.close()
    assert [n for n, _, _ in srv.requests] == [1, 2]  # never read the next answer on the bad one


async def test_a_connection_the_server_closed_while_idle_is_not_reused():
    async with ScriptedServer(lambda i, h, b: (ok(b"a"),) if i == 0 else ok(b"b")) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            assert (await pool.request("GET", "/one")).body == b"a"  # the server closes after it
            await asyncio.sleep(0.05)
            assert (await pool.request("POST", "/two")).body == b"b"
        finally:
            await pool.close()
    assert [n for n, _, _ in srv.requests] == [1, 2]


async def test_a_close_crossing_the_request_retries_idempotent_methods_once_never_posts():
    # the server reads request 1 (on the kept connection) and closes without answering: the
    # close crossed the request. A GET goes again on a new connection; a POST fails (it may
    # have been carried out).
    plan = {0: ok(b"first"), 1: "close", 2: ok(b"again"), 3: ok(b"warm"), 4: "close"}
    async with ScriptedServer(lambda i, h, b: plan[i]) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            assert (await pool.request("GET", "/x")).body == b"first"
            assert (await pool.request("GET", "/x")).body == b"again"
            assert (await pool.request("GET", "/x")).body == b"warm"
            with pytest.raises(ConnectionDropped) as dropped:
                await pool.request("POST", "/channels/create")
            assert not dropped.value.response_started
        finally:
            await pool.close()
    assert [n for n, _, _ in srv.requests] == [1, 1, 2, 2, 2]


async def test_a_timed_out_request_closes_its_connection_and_the_next_one_is_fresh():
    plan = {0: "hang", 1: ok(b"late but fine")}
    async with ScriptedServer(lambda i, h, b: plan[i]) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await pool.request("GET", "/slow")
            assert pool.connections == 0
            assert (await pool.request("GET", "/next")).body == b"late but fine"
        finally:
            await pool.close()
    assert [n for n, _, _ in srv.requests] == [1, 2]


async def test_idle_connections_expire_and_concurrency_is_capped():
    async with ScriptedServer(lambda i, h, b: ok(b"%d" % i)) as srv:
        pool = Http11Pool("127.0.0.1", srv.port, limit=2, idle_timeout=0.1)
        try:
            bodies = await asyncio.gather(*(pool.request("GET", f"/{i}") for i in range(6)))
            assert sorted(int(r.body) for r in bodies) == list(range(6))
            assert srv.connections <= 2
            before = srv.connections
            await asyncio.sleep(0.2)  # longer than idle_timeout: the kept connections are not reused
            await pool.request("GET", "/after")
            assert srv.connections == before + 1
        finally:
            await pool.close()


async def test_https_ari_url_verifies_the_certificate(tmp_path, monkeypatch):
    """https:// CALLGATE_ARI_URL (http.conf's tlsenable): TLS with the system's verification, which
    honours SSL_CERT_FILE; an untrusted certificate is refused (AriUnavailable), never ignored."""
    server_ctx, cert_file = server_context(tmp_path)
    body = b'{"system": {"entity_id": "tls"}}'
    async with ScriptedServer(lambda i, h, b: ok(body), ssl_ctx=server_ctx) as srv:
        untrusted = AriClient(f"https://127.0.0.1:{srv.port}", "u", "p", "callgate", request_timeout=5)
        try:
            with pytest.raises(errors.AriUnavailable, match="CERTIFICATE_VERIFY_FAILED"):
                await untrusted.get_asterisk_info()
        finally:
            await untrusted.close()
        monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
        trusted = AriClient(f"https://127.0.0.1:{srv.port}", "u", "p", "callgate", request_timeout=5)
        try:
            assert (await trusted.get_asterisk_info())["system"]["entity_id"] == "tls"
            assert (await trusted.get_asterisk_info())["system"]["entity_id"] == "tls"
        finally:
            await trusted.close()
    assert srv.requests[-1][1].startswith(b"GET /ari/asterisk/info HTTP/1.1\r\nHost: 127.0.0.1:")
    assert srv.requests[-1][0] == srv.requests[-2][0]  # kept alive over TLS too


async def test_ari_url_path_prefix_is_kept():
    """http.conf's ``prefix`` puts ARI under /<prefix>/ari: CALLGATE_ARI_URL carries it."""
    async with ScriptedServer(lambda i, h, b: ok(b"[]")) as srv:
        client = AriClient(f"http://127.0.0.1:{srv.port}/asterisk/", "u", "p", "callgate")
        try:
            assert await client.list_channels() == []
        finally:
            await client.close()
    assert srv.requests[0][1].startswith(b"GET /asterisk/ari/channels HTTP/1.1\r\n")


async def test_every_response_real_asterisk_sent_in_the_traces_reads_on_one_kept_connection():
    """The 320 REST responses of the Asterisk 22 recordings (tests/ari/traces), headers as
    recorded, served back to back on one connection: each is read whole, and the connection is
    kept (Asterisk sends Content-Length on every response and never "Connection: close")."""
    import json
    from pathlib import Path

    recorded = []
    for path in sorted((Path(__file__).parent / "traces").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            entry = json.loads(line) if line.strip() else {}
            if entry.get("kind") == "response" and "headers" in entry:
                recorded.append(entry)
    assert len(recorded) >= 300

    def raw(entry) -> bytes:
        body = b"" if entry["body"] is None else json.dumps(entry["body"]).encode()
        headers = dict(entry["headers"])
        if body or headers.get("Content-Length") != "0":
            headers["Content-Length"] = str(len(body))  # our serialisation, not Asterisk's spacing
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        return f"HTTP/1.1 {entry['status']} {entry['reason']}\r\n{head}\r\n".encode() + body

    async with ScriptedServer(lambda i, h, b: raw(recorded[i])) as srv:
        pool = Http11Pool("127.0.0.1", srv.port)
        try:
            for entry in recorded:
                resp = await pool.request(entry["method"], entry["path"])
                assert (resp.status, resp.reason) == (entry["status"], entry["reason"])
                assert (json.loads(resp.body) if resp.body else None) == entry["body"], entry["path"]
        finally:
            await pool.close()
    assert srv.connections == 1
