#!/usr/bin/python3
"""A WebSocket server the project did not write (Python `websockets`, Debian's python3-websockets),
misbehaving on purpose, for spec/integration/foreign_servers_spec.lua.

The first path segment names the scenario (the emulator's connect_uri fault points channels at
ws[s]://host:port/<scenario>, and appends /channels/<id>). The first connection of a scenario
misbehaves; later ones behave (three events), so the client's recovery can be seen. Events are
Genesys-shaped: {"topicName": TOPIC, "eventBody": {"s": scenario, "c": conn, "n": i, "pad": ...},
"metadata": {"CorrelationId": ...}}. Each connection, when it ends, writes one JSON line to --log:
scenario, conn, the close code the client sent ("client_close_code"), the pongs that came back.

Fragmented messages and pings use the library's own API (send() of an async iterable, ping());
the frames a library would never send (masked, RSV bits, unknown opcodes, 64-bit lengths of small
payloads, one byte per TCP write, TLS records cut anywhere) are written as raw bytes on the
connection's transport after the library's handshake.

  /usr/bin/python3 foreign_ws.py --port 0 [--tls CERT KEY] --topic TOPIC --log FILE
"""
import argparse
import asyncio
import json
import random
import socket
import ssl
import struct
import sys

import websockets

A = None
CONNS = {}


def event(sc, conn, i, size=200):
    body = {"s": sc, "c": conn, "n": i, "pad": ""}
    ev = {"topicName": A.topic, "eventBody": body,
          "metadata": {"CorrelationId": "%s-%d-%d" % (sc, conn, i)}}
    text = json.dumps(ev)
    if len(text) < size:
        body["pad"] = "x" * (size - len(text))
        text = json.dumps(ev)
    return text


def frame(payload, opcode=1, fin=True, rsv=0, mask=None, force64=False):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | rsv | opcode
    n = len(payload)
    m = 0x80 if mask else 0
    if n < 126 and not force64:
        head = struct.pack("!BB", b0, m | n)
    elif n < 65536 and not force64:
        head = struct.pack("!BBH", b0, m | 126, n)
    else:
        head = struct.pack("!BBQ", b0, m | 127, n)
    if mask:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


async def raw(ws, data, pieces=None):
    """Writes data on the connection's transport: whole, or in the given piece sizes, each piece
    its own write (its own TLS record over TLS) on its own turn of the loop."""
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
    if not pieces:
        ws.transport.write(data)
        await ws.drain()
        return
    off = 0
    for n in pieces:
        if off >= len(data):
            break
        ws.transport.write(data[off:off + n])
        off += n
        await asyncio.sleep(0.0005)
    if off < len(data):
        ws.transport.write(data[off:])
    await ws.drain()


async def good(ws, sc, conn, rec):
    for i in range(1, 4):
        await ws.send(event(sc, conn, i))


async def fragments(ws, sc, conn, rec):
    for i in range(1, 4):
        text = event(sc, conn, i, 300)
        await ws.send([text[k:k + 7] for k in range(0, len(text), 7)])


async def ping_between(ws, sc, conn, rec):
    waiters = []

    async def chunks(text):
        for k in range(0, len(text), 50):
            yield text[k:k + 50]
            waiters.append(await ws.ping(b"p%d" % len(waiters)))

    for i in range(1, 4):
        await ws.send(chunks(event(sc, conn, i, 300)))
    await asyncio.wait_for(asyncio.gather(*waiters), 10)
    rec["pongs"] = len(waiters)
    await ws.send(event(sc, conn, 4))  # only once every ping was answered


async def close_code(ws, sc, conn, rec):
    await ws.send(event(sc, conn, 1))
    await ws.send(event(sc, conn, 2))
    await ws.close(4001, "going away for a test")


async def len64(ws, sc, conn, rec):
    await raw(ws, frame(event(sc, conn, 1), force64=True))
    await ws.send(event(sc, conn, 2, 70000))  # the library's own 64-bit length
    await raw(ws, frame(event(sc, conn, 3), force64=True))


async def bytewise(ws, sc, conn, rec):
    data = b"".join(frame(event(sc, conn, i, 120)) for i in range(1, 4))
    await raw(ws, data, [1] * len(data))


async def split_records(ws, sc, conn, rec):
    rnd = random.Random(24)
    msgs = [frame(event(sc, conn, 1, 5000)), frame(event(sc, conn, 2, 40)),
            frame(event(sc, conn, 3, 20000))]
    data = b"".join(msgs)
    await raw(ws, data, [rnd.choice((1, 2, 3, 5, 13, 127, 1000, 4099)) for _ in range(4000)])


async def masked(ws, sc, conn, rec):
    await ws.send(event(sc, conn, 1))
    await raw(ws, frame(event(sc, conn, 2), mask=b"\x01\x02\x03\x04"))


async def rsv(ws, sc, conn, rec):
    await ws.send(event(sc, conn, 1))
    await raw(ws, frame(event(sc, conn, 2), rsv=0x40))


async def opcode(ws, sc, conn, rec):
    await ws.send(event(sc, conn, 1))
    await raw(ws, frame(event(sc, conn, 2), opcode=3))


SCENARIOS = {"good": good, "fragments": fragments, "ping_between": ping_between,
             "close_code": close_code, "len64": len64, "bytewise": bytewise,
             "split_records": split_records, "masked": masked, "rsv": rsv, "opcode": opcode}


async def handler(ws, path):
    sc = path.strip("/").split("/")[0]
    conn = CONNS[sc] = CONNS.get(sc, 0) + 1
    rec = {"scenario": sc, "conn": conn}
    try:
        await (SCENARIOS.get(sc, good) if conn == 1 else good)(ws, sc, conn, rec)
        await asyncio.wait_for(ws.wait_closed(), 60)
    except Exception as e:  # the client went away mid-scenario: recorded, not fatal
        rec["error"] = type(e).__name__
    rec["client_close_code"] = ws.close_code
    with open(A.log, "a") as f:
        f.write(json.dumps(rec) + "\n")


async def main():
    ctx = None
    if A.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(A.tls[0], A.tls[1])
    async with websockets.serve(handler, "127.0.0.1", A.port, ssl=ctx, compression=None,
                                max_size=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(json.dumps({"listening": True, "port": port}), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--tls", nargs=2)
    p.add_argument("--topic", required=True)
    p.add_argument("--log", required=True)
    A = p.parse_args()
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
