#!/usr/bin/env python3
"""A Genesys gateway that misbehaves on purpose, for spec/integration/hostile_spec.lua.

Not the emulator: a small server of the test suite's own, stdlib only, raw sockets, so it can lie
at every layer (HTTP framing, JSON, WebSocket framing, TLS handshake timing). One process plays the
token endpoint, the notifications REST API and the WebSocket of the channel:

  POST /oauth/token                                  {"access_token": TOKEN, "expires_in": 3600}
  POST /api/v2/notifications/channels                {"id": "hostile-N", "connectUri": ...}
  PUT  /api/v2/notifications/channels/ID/subscriptions   every topic "Permitted"
  GET  /channels/ID (Upgrade: websocket)             101, heartbeats, pong to {"message":"ping"}

--mode MODE makes the first --count matching requests (or connections) misbehave; later ones are
served well, so the client's recovery can be checked. POST /__hostile/mode {"mode":, "count":,
"flood":} changes the mode of a running server (counters and log start afresh). Every request is logged as one JSON line to
--log (method, path, headers, mode applied); the first line on stdout is {"listening": true,
"port": N} when the server is ready.

  python3 hostile_server.py --port 0 [--tls CERT KEY] --mode MODE [--count N] [--log FILE]
"""
import argparse
import asyncio
import base64
import hashlib
import json
import os
import ssl
import struct
import sys

A = None  # parsed arguments
LOG = None
COUNTS = {}  # mode -> how many times it was applied
CHANNELS = [0]
TOKEN = "hostile-access-token-7f3a9c"

# mode -> the endpoint it concerns: token, channel, subs, ws (the WebSocket, after the upgrade),
# upgrade (the upgrade request itself), tcp (any connection)
MODES = {
    "good": None,
    # HTTP framing, on the token endpoint
    "token_cl_short": "token", "token_cl_long": "token", "token_huge": "token",
    "token_slowloris": "token", "token_silence": "token", "token_deep_json": "token",
    "token_crlf": "token", "token_echo_401": "token", "token_echo_500": "token",
    "token_echo_utf8": "token",
    # REST, on the channel creation and the subscription
    "channel_cl_short": "channel", "channel_huge": "channel", "channel_million_keys": "channel",
    "channel_bad_id": "channel", "channel_long_id": "channel", "channel_long_uri": "channel",
    "channel_uri_crlf": "channel", "channel_uri_space": "channel",
    "channel_uri_wrong_host": "channel",
    "subs_echo_400": "subs", "subs_utf8_400": "subs",
    # the WebSocket upgrade
    "upgrade_never": "upgrade", "upgrade_half": "upgrade", "tcp_silence": "tcp",
    # any connection: its first request head read, then closed unanswered (a proxy that dies
    # on CONNECT, or a port that something else holds)
    "tcp_drop": "tcp",
    # the WebSocket, once open
    "ws_big_frame": "ws", "ws_fragments": "ws", "ws_deep_json": "ws", "ws_million_keys": "ws",
    "ws_ping_flood": "ws", "ws_close_1005": "ws", "ws_close_999": "ws", "ws_close_5000": "ws",
    "ws_close_1004": "ws", "ws_close_1015": "ws", "ws_close_short": "ws",
    "ws_close_bad_utf8": "ws", "ws_close_utf8_long": "ws", "ws_close_secret": "ws",
    "ws_404_secret": "ws", "ws_binary_flood": "ws", "ws_huge_stream": "ws",
}


def log(entry):
    if LOG:
        LOG.write(json.dumps(entry) + "\n")
        LOG.flush()


def take(endpoint):
    """The mode to apply to this request of endpoint, or None (behave)."""
    if MODES.get(A.mode) != endpoint:
        return None
    n = COUNTS.get(A.mode, 0)
    if A.count and n >= A.count:
        return None
    COUNTS[A.mode] = n + 1
    return A.mode


# ---- HTTP ------------------------------------------------------------------------------------

# What a request that cannot be read raises: the peer gone, or a head that is no HTTP.
BAD_READ = (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError,
            asyncio.LimitOverrunError)


async def read_request(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    body = b""
    n = int(headers.get("content-length", "0") or 0)
    if n:
        body = await reader.readexactly(n)
    return method, path, headers, body


def response(status, body, ctype="application/json", extra=None, length=None):
    if isinstance(body, str):
        body = body.encode()
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 500: "Internal Server Error"}
    h = ["HTTP/1.1 %d %s" % (status, reason.get(status, "X")), "Content-Type: " + ctype,
         "Content-Length: %d" % (len(body) if length is None else length)]
    h += extra or []
    return ("\r\n".join(h) + "\r\n\r\n").encode() + body


def jbody(o):
    return json.dumps(o, separators=(",", ":"))


def deep_json(depth):
    return "[" * depth + "]" * depth


def million_keys():
    return "{" + ",".join('"k%d":0' % i for i in range(1000000)) + "}"


async def stream_huge(writer, total, chunk=1 << 16):
    block = b"x" * chunk
    sent = 0
    try:
        while sent < total:
            writer.write(block)
            await writer.drain()
            sent += chunk
    except (ConnectionError, OSError):
        pass
    return sent


async def serve_token(writer, headers, mode):
    auth = headers.get("authorization", "")
    ok = jbody({"access_token": TOKEN, "token_type": "bearer", "expires_in": 3600})
    if mode == "token_cl_short":
        writer.write(response(200, ok, length=len(ok) // 2))
    elif mode == "token_cl_long":
        writer.write(response(200, ok, length=len(ok) + 1000))
        await writer.drain()
        await asyncio.sleep(3600)
    elif mode == "token_huge":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 400000000\r\n\r\n")
        log({"streamed": await stream_huge(writer, 400000000)})
        return False
    elif mode == "token_slowloris":
        for b in response(200, ok):
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(1)
    elif mode == "token_silence":
        await asyncio.sleep(3600)
    elif mode == "token_deep_json":
        writer.write(response(200, '{"access_token":' + deep_json(100000) + ',"expires_in":60}'))
    elif mode == "token_crlf":
        writer.write(response(200, jbody({"access_token": "abc\r\nX-Injected: 1",
                                          "expires_in": 3600})))
    elif mode in ("token_echo_401", "token_echo_500"):
        # an endpoint that echoes the request's credentials into its error text
        secret = A.secret
        # (no token: the client has none yet, so it cannot know one to hide)
        text = "bad request from %s (secret %s) headers=%s" % (auth, secret, json.dumps(headers))
        st = 401 if mode == "token_echo_401" else 500
        writer.write(response(st, jbody({"error": "invalid_client", "error_description": text})))
    elif mode == "token_echo_utf8":
        # a description whose cut would fall inside a character
        writer.write(response(500, jbody({"error_description": "\u00e9" * 400})))
    else:
        writer.write(response(200, ok))
    return True


def connect_uri(cid):
    scheme = "wss" if A.tls else "ws"
    return "%s://%s:%d/channels/%s" % (scheme, A.host, A.port_bound, cid)


async def serve_channel(writer, headers, mode):
    CHANNELS[0] += 1
    cid = "hostile-%d" % CHANNELS[0]
    uri = connect_uri(cid)
    ans = {"id": cid, "connectUri": uri, "expires": "2099-01-01T00:00:00Z"}
    if mode == "channel_cl_short":
        b = jbody(ans)
        writer.write(response(200, b, length=len(b) - 10))
    elif mode == "channel_huge":
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        block = b"x" * 65536
        sent = 0
        try:
            while sent < 300000000:
                writer.write(b"%x\r\n" % len(block) + block + b"\r\n")
                await writer.drain()
                sent += len(block)
        except (ConnectionError, OSError):
            pass
        log({"streamed": sent})
        return False
    elif mode == "channel_million_keys":
        writer.write(response(200, million_keys()))
    elif mode == "channel_bad_id":
        ans["id"] = "../../oauth/token?x="
        writer.write(response(200, jbody(ans)))
    elif mode == "channel_long_id":
        ans["id"] = "a" * 2000
        writer.write(response(200, jbody(ans)))
    elif mode == "channel_long_uri":
        ans["connectUri"] = uri + "?pad=" + "p" * 200000
        writer.write(response(200, jbody(ans)))
    elif mode == "channel_uri_crlf":
        ans["connectUri"] = uri + "\r\nX-Injected: 1"
        writer.write(response(200, jbody(ans)))
    elif mode == "channel_uri_wrong_host":
        # the same server on an address its certificate does not name
        ans["connectUri"] = uri.replace("localhost", "127.0.0.2")
        writer.write(response(200, jbody(ans)))
    elif mode == "channel_uri_space":
        ans["connectUri"] = uri + " HTTP/1.1"
        writer.write(response(200, jbody(ans)))
    else:
        writer.write(response(200, jbody(ans)))
    return True


async def serve_subs(writer, headers, body, mode):
    try:
        topics = json.loads(body or b"[]")
    except ValueError:
        topics = []
    if mode == "subs_echo_400":
        text = "refused: you sent %s with secret %s" % (headers.get("authorization", ""),
                                                          A.secret)
        writer.write(response(400, jbody({"message": text, "code": "bad.request"})))
    elif mode == "subs_utf8_400":
        writer.write(response(400, jbody({"message": "\u20ac" * 300})))
    else:
        ents = [{"id": t.get("id"), "state": "Permitted"} for t in topics if isinstance(t, dict)]
        writer.write(response(200, jbody({"entities": ents})))
    return True


# ---- WebSocket -------------------------------------------------------------------------------

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode, payload, fin=True):
    if isinstance(payload, str):
        payload = payload.encode()
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 127, n)
    return hdr + payload


def close_frame(code, reason=b""):
    if isinstance(reason, str):
        reason = reason.encode()
    return frame(0x8, (struct.pack("!H", code) if code is not None else b"") + reason)


def event(topic, n):
    return jbody({"topicName": topic, "eventBody": {"n": n},
                  "metadata": {"CorrelationId": "hostile-%d" % n}})


async def read_frame(reader):
    h = await reader.readexactly(2)
    op = h[0] & 0x0F
    masked = h[1] & 0x80
    n = h[1] & 0x7F
    if n == 126:
        n = struct.unpack("!H", await reader.readexactly(2))[0]
    elif n == 127:
        n = struct.unpack("!Q", await reader.readexactly(8))[0]
    mask = await reader.readexactly(4) if masked else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= mask[i % 4]
    return op, bytes(data)


async def ws_reader(reader, writer, state):
    """Answers the client's app-level pings and its close; records what it sent."""
    try:
        while True:
            op, data = await read_frame(reader)
            if op == 0x1 and b'"ping"' in data:
                writer.write(frame(0x1, jbody({"topicName": "channel.metadata",
                                               "eventBody": {"message": "pong"}})))
            elif op == 0x9:
                writer.write(frame(0xA, data))
            elif op == 0x8:
                state["closed"] = True
                try:
                    writer.write(frame(0x8, data[:2]))
                except Exception:
                    pass
                return
    except (asyncio.IncompleteReadError, ConnectionError, OSError):
        state["closed"] = True


async def serve_ws(reader, writer, headers, path, mode):
    key = headers.get("sec-websocket-key", "")
    acc = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
    up = mode if MODES.get(mode) == "upgrade" else None
    if up == "upgrade_never":
        await asyncio.sleep(3600)
        return
    if up == "upgrade_half":
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n")
        await writer.drain()
        await asyncio.sleep(3600)
        return
    writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % acc).encode())
    await writer.drain()
    state = {"closed": False}
    rd = asyncio.ensure_future(ws_reader(reader, writer, state))
    wsmode = take("ws")
    log({"ws": path, "mode": wsmode})
    topic = A.topic
    try:
        if wsmode == "ws_big_frame":
            writer.write(frame(0x1, b"x" * (10 << 20)))
        elif wsmode == "ws_fragments":
            msg = event(topic, 1).encode()
            writer.write(frame(0x1, msg[:1], fin=False))
            for i in range(1, len(msg)):
                writer.write(frame(0x0, msg[i:i + 1], fin=(i == len(msg) - 1)))
            # and thousands more: a message of 5,000 one-byte fragments
            big = event(topic, 2).encode()
            big = big[:-1] + b',"pad":"' + b"y" * 5000 + b'"}'
            writer.write(frame(0x1, big[:1], fin=False))
            for i in range(1, len(big)):
                writer.write(frame(0x0, big[i:i + 1], fin=(i == len(big) - 1)))
        elif wsmode == "ws_deep_json":
            writer.write(frame(0x1, deep_json(100000)))
            writer.write(frame(0x1, event(topic, 1)))
        elif wsmode == "ws_million_keys":
            writer.write(frame(0x1, million_keys()))
            writer.write(frame(0x1, event(topic, 1)))
        elif wsmode == "ws_ping_flood":
            for i in range(20000):
                writer.write(frame(0x9, b"p%d" % i))
                if i % 1000 == 0:
                    await writer.drain()
            writer.write(frame(0x1, event(topic, 1)))
        elif wsmode and wsmode.startswith("ws_close_") and wsmode not in (
                "ws_close_short", "ws_close_bad_utf8", "ws_close_utf8_long", "ws_close_secret"):
            code = int(wsmode[len("ws_close_"):])
            writer.write(close_frame(code, "bye"))
        elif wsmode == "ws_close_short":
            writer.write(frame(0x8, b"\x03"))  # a one-byte close payload: invalid
        elif wsmode == "ws_close_bad_utf8":
            writer.write(close_frame(1011, b"bad \xff\xfe utf8"))
        elif wsmode == "ws_close_utf8_long":
            # 123 bytes is the most a close reason holds: "ab" + 40 three-byte characters + "c"
            writer.write(close_frame(1011, "ab" + "\u20ac" * 40 + "c"))
        elif wsmode == "ws_close_secret":
            writer.write(close_frame(1011, "tok " + TOKEN))
        elif wsmode == "ws_404_secret":
            writer.write(frame(0x1, jbody({"result": "404", "message": "gone, token " + TOKEN +
                                           " secret " + A.secret})))
            writer.write(close_frame(1000, "gone"))
        elif wsmode == "ws_binary_flood":
            blk = frame(0x2, b"b" * 16) * 4096
            sent = 0
            while not state["closed"] and sent < A.flood:
                writer.write(blk)
                await writer.drain()
                sent += 4096
            log({"binary_frames": sent})
        elif wsmode == "ws_huge_stream":
            # one text message announced at 300 MB, streamed until the client hangs up
            writer.write(struct.pack("!BBQ", 0x81, 127, 300 << 20))
            log({"streamed": await stream_huge(writer, 300 << 20)})
        await writer.drain()
        # then behave: heartbeats and an event now and then, until the client goes
        n = 100
        while not state["closed"]:
            n += 1
            writer.write(frame(0x1, jbody({"topicName": "channel.metadata",
                                           "eventBody": {"message": "WebSocket Heartbeat"}})))
            writer.write(frame(0x1, event(topic, n)))
            await writer.drain()
            await asyncio.sleep(0.2)
    except (ConnectionError, OSError):
        pass
    finally:
        rd.cancel()


async def handle(reader, writer):
    mode = take("tcp")
    if mode == "tcp_silence":
        log({"tcp": "silence"})
        await asyncio.sleep(3600)
        writer.close()
        return
    if mode == "tcp_drop":
        try:
            method, path, headers, _ = await read_request(reader)
            log({"method": method, "path": path, "headers": headers, "mode": mode})
        except BAD_READ:
            pass
        writer.close()
        return
    try:
        while True:
            try:
                method, path, headers, body = await read_request(reader)
            except BAD_READ:
                return
            entry = {"method": method, "path": path, "headers": headers}
            keep = True
            if headers.get("upgrade", "").lower() == "websocket":
                mode = take("upgrade")
                entry["mode"] = mode
                log(entry)
                await serve_ws(reader, writer, headers, path, mode)
                return
            if method == "POST" and path == "/__hostile/mode":
                # the spec's control: a new mode, its counters and the log start afresh
                global LOG
                o = json.loads(body or b"{}")
                if o.get("mode", "good") not in MODES:
                    writer.write(response(400, jbody({"message": "unknown mode"})))
                else:
                    A.mode = o.get("mode", "good")
                    A.count = int(o.get("count", 0))
                    A.flood = int(o.get("flood", A.flood_default))
                    COUNTS.clear()
                    CHANNELS[0] = 0
                    if LOG:
                        LOG.close()
                        LOG = open(A.log, "w")
                    writer.write(response(200, jbody({"mode": A.mode})))
                await writer.drain()
                return
            if method == "POST" and path == "/oauth/token":
                mode = take("token")
                entry["mode"] = mode
                log(entry)
                keep = await serve_token(writer, headers, mode)
            elif method == "POST" and path == "/api/v2/notifications/channels":
                mode = take("channel")
                entry["mode"] = mode
                log(entry)
                keep = await serve_channel(writer, headers, mode)
            elif method == "PUT" and path.startswith("/api/v2/notifications/channels/"):
                mode = take("subs")
                entry["mode"] = mode
                log(entry)
                keep = await serve_subs(writer, headers, body, mode)
            else:
                log(entry)
                writer.write(response(404, jbody({"message": "no such path"})))
            await writer.drain()
            if not keep:
                return
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    global A, LOG
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"))
    p.add_argument("--mode", default="good", choices=sorted(MODES))
    p.add_argument("--count", type=int, default=0, help="misbehave this many times (0: always)")
    p.add_argument("--log")
    p.add_argument("--secret", default="test-secret")
    p.add_argument("--topic", default="v2.users.hostile.presence")
    p.add_argument("--flood", type=int, default=2000000, help="binary frames in a flood")
    A = p.parse_args()
    A.flood_default = A.flood
    if A.log:
        LOG = open(A.log, "a")
    ctx = None
    if A.tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(A.tls[0], A.tls[1])
    server = await asyncio.start_server(handle, A.host, A.port, ssl=ctx, limit=1 << 20)
    A.port_bound = server.sockets[0].getsockname()[1]
    if ctx:
        # 127.0.0.2 on the same port: a name the certificate (localhost, 127.0.0.1) lacks
        try:
            await asyncio.start_server(handle, "127.0.0.2", A.port_bound, ssl=ctx, limit=1 << 20)
        except OSError:
            pass
    A.host = "localhost" if A.tls else A.host
    sys.stdout.write(json.dumps({"listening": True, "port": A.port_bound}) + "\n")
    sys.stdout.flush()
    # SIGTERM ends the process at once (default action): nothing here needs a clean exit
    async with server:
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())
