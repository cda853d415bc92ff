// Peer client for make bench-peers: Node + ws + JSON.parse (see bench/peers/README in run.lua).
// Env: GN_BASE (https://host:port), GN_CA, GN_CRED (id:secret), GN_TOPIC, GN_COUNT, GN_CONNS.
'use strict';
const fs = require('fs');
const https = require('https');
const WebSocket = require('ws');

const base = new URL(process.env.GN_BASE);
const ca = fs.readFileSync(process.env.GN_CA);
const topic = process.env.GN_TOPIC;
const COUNT = Number(process.env.GN_COUNT || 0);
const CONNS = Number(process.env.GN_CONNS || 1);
const out = (s) => process.stdout.write(s + '\n');
const now = () => Number(process.hrtime.bigint()) / 1e6;

function req(method, path, headers, body) {
  return new Promise((resolve, reject) => {
    const r = https.request({ host: base.hostname, port: base.port, method, path, headers, ca }, (res) => {
      let d = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { d += c; });
      res.on('end', () => res.statusCode === 200 ? resolve(JSON.parse(d))
        : reject(new Error(method + ' ' + path + ': HTTP ' + res.statusCode)));
    });
    r.on('error', reject);
    r.end(body);
  });
}

async function channel(token, t) {
  const auth = { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' };
  const ch = await req('POST', '/api/v2/notifications/channels', auth, '');
  await req('PUT', '/api/v2/notifications/channels/' + ch.id + '/subscriptions', auth,
    JSON.stringify([{ id: t }]));
  return ch;
}

function stream(ch, t, counting, onOpen) {
  let n = 0, bad = false, first = 0, closedAt = 0, opened = false;
  const connect = () => {
    const ws = new WebSocket(ch.connectUri, { ca, perMessageDeflate: false });
    ws.on('open', () => {
      if (closedAt) out('reconnect ' + (now() - closedAt).toFixed(3));
      closedAt = 0;
      if (!opened) { opened = true; onOpen(); }
    });
    if (counting) ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.topicName !== t) return;
      const seq = m.eventBody.sequence;
      if (seq === 1) { n = 0; bad = false; first = now(); }
      n++;
      if (seq !== n) bad = true;
      if (seq === COUNT) out('done ' + n + ' ' + (bad || n !== COUNT ? 0 : 1) + ' ' + (now() - first).toFixed(3));
    });
    ws.on('error', () => {});
    ws.on('close', () => { closedAt = now(); setImmediate(connect); });
  };
  connect();
}

(async () => {
  const cred = Buffer.from(process.env.GN_CRED).toString('base64');
  const tok = await req('POST', '/oauth/token', { Authorization: 'Basic ' + cred,
    'Content-Type': 'application/x-www-form-urlencoded' }, 'grant_type=client_credentials');
  const first = await channel(tok.access_token, topic);
  await new Promise((res) => stream(first, topic, CONNS === 1, res));
  out('open ' + first.id);
  if (CONNS > 1) {
    await new Promise((r) => setTimeout(r, 1000));
    out('base');
    await new Promise((r) => setTimeout(r, 1000));
    for (let i = 2; i <= CONNS; i++) {
      const t = topic.replace('.presence', '-' + i + '.presence');
      const ch = await channel(tok.access_token, t);
      await new Promise((res) => stream(ch, t, false, res));
    }
    out('all');
  }
})().catch((e) => { out('error ' + e.message); process.exit(1); });
