# Peer client for make bench-peers: Python + websockets (Debian python3-websockets) + json.loads.
# Env and output lines: see bench/peers/run.lua.
import asyncio, base64, http.client, json, os, ssl, sys, time

base = os.environ["GN_BASE"].split("://")[1]
host, port = base.rsplit(":", 1)
ctx = ssl.create_default_context(cafile=os.environ["GN_CA"])
topic = os.environ["GN_TOPIC"]
COUNT = int(os.environ.get("GN_COUNT", "0"))
CONNS = int(os.environ.get("GN_CONNS", "1"))

import websockets


def out(s):
    sys.stdout.write(s + "\n")
    sys.stdout.flush()


def req(method, path, headers, body):
    c = http.client.HTTPSConnection(host, int(port), context=ctx)
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    d = r.read()
    c.close()
    if r.status != 200:
        raise RuntimeError("%s %s: HTTP %d" % (method, path, r.status))
    return json.loads(d)


def channel(token, t):
    auth = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    ch = req("POST", "/api/v2/notifications/channels", auth, "")
    req("PUT", "/api/v2/notifications/channels/%s/subscriptions" % ch["id"], auth,
        json.dumps([{"id": t}]))
    return ch


async def stream(ch, t, counting, opened):
    closed_at = None
    while True:
        try:
            async with websockets.connect(ch["connectUri"], ssl=ctx, compression=None,
                                          max_size=None, ping_interval=None) as ws:
                if closed_at is not None:
                    out("reconnect %.3f" % ((time.monotonic() - closed_at) * 1000))
                if not opened.done():
                    opened.set_result(True)
                n, bad, first = 0, False, 0.0
                async for data in ws:
                    if not counting:
                        continue
                    m = json.loads(data)
                    if m.get("topicName") != t:
                        continue
                    seq = m["eventBody"]["sequence"]
                    if seq == 1:
                        n, bad, first = 0, False, time.monotonic()
                    n += 1
                    if seq != n:
                        bad = True
                    if seq == COUNT:
                        ok = 0 if bad or n != COUNT else 1
                        out("done %d %d %.3f" % (n, ok, (time.monotonic() - first) * 1000))
        except Exception:
            pass
        closed_at = time.monotonic()


async def main():
    cred = base64.b64encode(os.environ["GN_CRED"].encode()).decode()
    tok = req("POST", "/oauth/token", {"Authorization": "Basic " + cred,
              "Content-Type": "application/x-www-form-urlencoded"},
              "grant_type=client_credentials")["access_token"]
    loop = asyncio.get_running_loop()
    first = channel(tok, topic)
    opened = loop.create_future()
    tasks = [asyncio.ensure_future(stream(first, topic, CONNS == 1, opened))]
    await opened
    out("open " + first["id"])
    if CONNS > 1:
        await asyncio.sleep(1)
        out("base")
        await asyncio.sleep(1)
        for i in range(2, CONNS + 1):
            t = topic.replace(".presence", "-%d.presence" % i)
            ch = channel(tok, t)
            o = loop.create_future()
            tasks.append(asyncio.ensure_future(stream(ch, t, False, o)))
            await o
        out("all")
    await asyncio.gather(*tasks)


try:
    asyncio.run(main())
except Exception as e:
    out("error %s" % e)
    sys.exit(1)
