"""What an ARI app costs on the wire (issue 16, docs/BENCHMARKS.md "Real Asterisk"): a loopback TCP
proxy 127.0.0.1:8089 -> 127.0.0.1:8088 (Asterisk's ARI) that counts the events (by type, and the
ChannelVarset events by variable) and their bytes on the /ari/events WebSocket, the REST requests
(by method + first path word) and the bytes each way. Point the app at :8089, place N calls, stop
the proxy: it writes the counters as JSON to argv[1] on SIGTERM/SIGINT. Stdlib only; a measuring
tool for the lab, not part of the product (it only parses unmasked server frames, no extensions).

    python bench/real_asterisk/ari_traffic_proxy.py /tmp/counts.json &
    CALLGATE_ARI_URL=http://127.0.0.1:8089 callgate gate   # then SIPp; then kill %1
"""
import asyncio
import collections
import json
import re
import signal
import sys

OUT = sys.argv[1]
ev_count = collections.Counter(); ev_bytes = collections.Counter()
rest = collections.Counter(); bytes_ = collections.Counter()
varsets = collections.Counter()

async def pump(reader, writer, on_data):
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            on_data(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass

REQ = re.compile(rb"(GET|POST|PUT|DELETE) /ari/([a-zA-Z]+)[^ ]* HTTP/1\.1\r\n")

async def handle(cr, cw):
    sr, sw = await asyncio.open_connection("127.0.0.1", 8088)
    state = {"ws": False, "hdr_done": False, "buf": b""}
    def from_client(data):
        bytes_["client->ast"] += len(data)
        for m in REQ.finditer(data):
            if m.group(2) == b"events":
                state["ws"] = True
            else:
                rest[(m.group(1) + b" " + m.group(2)).decode()] += 1
    def from_server(data):
        bytes_["ast->client"] += len(data)
        if not state["ws"]:
            return
        bytes_["ast->client ws"] += len(data)
        buf = state["buf"] + data
        if not state["hdr_done"]:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                state["buf"] = buf; return
            buf = buf[i + 4:]; state["hdr_done"] = True
        while len(buf) >= 2:
            op = buf[0] & 0x0F; n = buf[1] & 0x7F; off = 2
            if n == 126:
                if len(buf) < 4: break
                n = int.from_bytes(buf[2:4], "big"); off = 4
            elif n == 127:
                if len(buf) < 10: break
                n = int.from_bytes(buf[2:10], "big"); off = 10
            if len(buf) < off + n: break
            payload = buf[off:off + n]; buf = buf[off + n:]
            if op == 1:
                try:
                    ev = json.loads(payload)
                    t = ev.get("type", "?")
                except ValueError:
                    t = "?"
                ev_count[t] += 1; ev_bytes[t] += n + off
                if t == "ChannelVarset":
                    varsets[re.sub(r"\d+$", "", ev.get("variable", ""))] += 1
        state["buf"] = buf
    await asyncio.gather(pump(cr, sw, from_client), pump(sr, cw, from_server))

def dump():
    json.dump({"events": dict(ev_count), "event_bytes": dict(ev_bytes), "rest": dict(rest), "bytes": dict(bytes_),
               "varsets": dict(varsets), "events_total": sum(ev_count.values()), "event_bytes_total": sum(ev_bytes.values())},
              open(OUT, "w"), indent=1, sort_keys=True)

async def main():
    srv = await asyncio.start_server(handle, "127.0.0.1", 8089)
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(s, stop.set)
    print("proxy ready", flush=True)
    await stop.wait()
    dump()
asyncio.run(main())
