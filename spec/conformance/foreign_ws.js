// A WebSocket server the project did not write (Node's `ws`, from spec/conformance/package.json),
// misbehaving on purpose, for spec/integration/foreign_servers_spec.lua. The same scenarios and
// log lines as spec/support/foreign_ws.py (see there): the first path segment names the
// scenario, the first connection of a scenario misbehaves, later ones send three good events.
// Fragments and pings go through ws's own API (send with fin: false, ping); frames ws would
// never send are raw bytes on its socket after its handshake.
//
//   node foreign_ws.js --port 0 [--tls CERT KEY] --topic TOPIC --log FILE
'use strict';

const fs = require('fs');
const http = require('http');
const https = require('https');
const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
const opt = { port: 0 };
for (let i = 0; i < args.length; i++) {
  if (args[i] === '--port') opt.port = parseInt(args[++i], 10);
  else if (args[i] === '--tls') { opt.cert = args[++i]; opt.key = args[++i]; }
  else if (args[i] === '--topic') opt.topic = args[++i];
  else if (args[i] === '--log') opt.log = args[++i];
}

const conns = {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function event(sc, conn, i, size = 200) {
  const ev = { topicName: opt.topic, eventBody: { s: sc, c: conn, n: i, pad: '' },
    metadata: { CorrelationId: `${sc}-${conn}-${i}` } };
  let text = JSON.stringify(ev);
  if (text.length < size) {
    ev.eventBody.pad = 'x'.repeat(size - text.length);
    text = JSON.stringify(ev);
  }
  return text;
}

function frame(payload, o = {}) {
  const data = Buffer.from(payload);
  const opcode = o.opcode === undefined ? 1 : o.opcode;
  const b0 = 0x80 | (o.rsv || 0) | opcode;
  const m = o.mask ? 0x80 : 0;
  let head;
  if (data.length < 126 && !o.force64) head = Buffer.from([b0, m | data.length]);
  else if (data.length < 65536 && !o.force64) {
    head = Buffer.alloc(4); head[0] = b0; head[1] = m | 126; head.writeUInt16BE(data.length, 2);
  } else {
    head = Buffer.alloc(10); head[0] = b0; head[1] = m | 127;
    head.writeBigUInt64BE(BigInt(data.length), 2);
  }
  if (o.mask) {
    for (let i = 0; i < data.length; i++) data[i] ^= o.mask[i % 4];
    head = Buffer.concat([head, Buffer.from(o.mask)]);
  }
  return Buffer.concat([head, data]);
}

// Raw bytes on ws's socket: whole, or in pieces, each its own write (its own TLS record).
async function raw(ws, data, pieces) {
  const sock = ws._socket;
  sock.setNoDelay(true);
  if (!pieces) { sock.write(data); return; }
  let off = 0;
  for (const n of pieces) {
    if (off >= data.length) break;
    sock.write(data.subarray(off, off + n));
    off += n;
    await sleep(0.5);
  }
  if (off < data.length) sock.write(data.subarray(off));
}

function sendp(ws, data, o) {
  return new Promise((res, rej) => ws.send(data, o || {}, (e) => (e ? rej(e) : res())));
}

const S = {
  async good(ws, sc, c) { for (let i = 1; i <= 3; i++) await sendp(ws, event(sc, c, i)); },
  async fragments(ws, sc, c) {
    for (let i = 1; i <= 3; i++) {
      const t = event(sc, c, i, 300);
      for (let k = 0; k < t.length; k += 7) await sendp(ws, t.slice(k, k + 7), { fin: k + 7 >= t.length });
    }
  },
  async ping_between(ws, sc, c, rec) {
    let pings = 0, pongs = 0;
    ws.on('pong', () => { pongs++; });
    for (let i = 1; i <= 3; i++) {
      const t = event(sc, c, i, 300);
      for (let k = 0; k < t.length; k += 50) {
        await sendp(ws, t.slice(k, k + 50), { fin: k + 50 >= t.length });
        ws.ping(Buffer.from(`p${pings++}`));
      }
    }
    for (let w = 0; w < 1000 && pongs < pings; w++) await sleep(10);
    rec.pongs = pongs;
    if (pongs === pings) await sendp(ws, event(sc, c, 4)); // only once every ping was answered
  },
  async close_code(ws, sc, c) {
    await sendp(ws, event(sc, c, 1));
    await sendp(ws, event(sc, c, 2));
    ws.close(4001, 'going away for a test');
  },
  async len64(ws, sc, c) {
    await raw(ws, frame(event(sc, c, 1), { force64: true }));
    await sendp(ws, event(sc, c, 2, 70000));
    await raw(ws, frame(event(sc, c, 3), { force64: true }));
  },
  async bytewise(ws, sc, c) {
    const data = Buffer.concat([1, 2, 3].map((i) => frame(event(sc, c, i, 120))));
    await raw(ws, data, new Array(data.length).fill(1));
  },
  async split_records(ws, sc, c) {
    const data = Buffer.concat([frame(event(sc, c, 1, 5000)), frame(event(sc, c, 2, 40)),
      frame(event(sc, c, 3, 20000))]);
    const sizes = [1, 2, 3, 5, 13, 127, 1000, 4099];
    let seed = 24;
    const pieces = [];
    for (let k = 0; k < 4000; k++) { seed = (seed * 1103515245 + 12345) % 2147483648; pieces.push(sizes[seed % sizes.length]); }
    await raw(ws, data, pieces);
  },
  async masked(ws, sc, c) {
    await sendp(ws, event(sc, c, 1));
    await raw(ws, frame(event(sc, c, 2), { mask: [1, 2, 3, 4] }));
  },
  async rsv(ws, sc, c) {
    await sendp(ws, event(sc, c, 1));
    await raw(ws, frame(event(sc, c, 2), { rsv: 0x40 }));
  },
  async opcode(ws, sc, c) {
    await sendp(ws, event(sc, c, 1));
    await raw(ws, frame(event(sc, c, 2), { opcode: 3 }));
  },
};

const server = opt.cert
  ? https.createServer({ cert: fs.readFileSync(opt.cert), key: fs.readFileSync(opt.key) })
  : http.createServer();
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 0 });
wss.on('connection', (ws, req) => {
  const sc = req.url.replace(/^\/+/, '').split('/')[0];
  const c = conns[sc] = (conns[sc] || 0) + 1;
  const rec = { scenario: sc, conn: c };
  ws.on('error', (e) => { rec.error = e.code || e.message; });
  ws.on('close', (code) => {
    rec.client_close_code = code;
    fs.appendFileSync(opt.log, JSON.stringify(rec) + '\n');
  });
  const fn = c === 1 && S[sc] ? S[sc] : S.good;
  fn(ws, sc, c, rec).catch((e) => { rec.error = e.message; });
});
server.listen(opt.port, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ listening: true, port: server.address().port }) + '\n');
});
