// Conformance of genesys-notify-emulator with Genesys's own JavaScript SDK
// (purecloud-platform-client-v2) and a standard WebSocket client (ws).
//
//   EMU_PORT=43121 EMU_CLIENT=test-id:test-secret NODE_EXTRA_CA_CERTS=build/certs/ca.pem \
//     node spec/conformance/conformance.js
//
// The SDK is pointed at the emulator with setGateway; every answer is checked against the SDK's
// own model definitions (index.d.ts: Channel, ChannelEntityListing, ChannelTopic,
// ChannelTopicEntityListing): no undeclared field, every declared field of the right type.
// Then ws connects to the returned connectUri and must get a heartbeat, a pong and a published
// event in the Genesys envelope. Prints one JSON line per check; exit 0 only if all passed.
'use strict';

const fs = require('fs');
const path = require('path');
const platformClient = require('purecloud-platform-client-v2');
const WebSocket = require('ws');

const port = parseInt(process.env.EMU_PORT, 10);
const host = process.env.EMU_HOST || 'localhost';
const [clientId, clientSecret] = (process.env.EMU_CLIENT || 'test-id:test-secret').split(':');
const TOPICS = ['v2.users.8d0f8c5c-0000-4000-8000-000000000001.presence',
  'v2.routing.queues.4a4b-queue-1.conversations'];

function log(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
function fail(msg) { throw new Error(msg); }

// ---- the SDK's models, read from its TypeScript definitions ----------------------------------
const dts = fs.readFileSync(path.join(path.dirname(require.resolve('purecloud-platform-client-v2/package.json')),
  'index.d.ts'), 'utf8');
function model(name) {
  const m = dts.match(new RegExp('export interface ' + name + ' \\{([^}]*)\\}'));
  if (!m) fail('model ' + name + ' not found in the SDK');
  const fields = {};
  for (const line of m[1].split('\n')) {
    const f = line.match(/^\s*"([^"]+)"(\??):\s*([^;]+);/);
    if (f) fields[f[1]] = { optional: f[2] === '?', type: f[3].trim() };
  }
  return fields;
}
function checkType(v, type, where) {
  let a = type.match(/^Array<(.+)>$/);
  if (a) {
    if (!Array.isArray(v)) fail(where + ': expected an array');
    v.forEach((x, i) => checkType(x, a[1], where + '[' + i + ']'));
    return;
  }
  if (type === 'string') { if (typeof v !== 'string') fail(where + ': expected a string'); return; }
  if (type === 'number') { if (typeof v !== 'number') fail(where + ': expected a number'); return; }
  if (type === 'boolean') { if (typeof v !== 'boolean') fail(where + ': expected a boolean'); return; }
  const mm = type.match(/^Models\.(\w+)$/);
  if (mm) { conforms(v, mm[1], where); return; }
  fail(where + ': unhandled type ' + type);
}
function conforms(obj, name, where) {
  where = where || name;
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) fail(where + ': expected an object');
  const fields = model(name);
  for (const k of Object.keys(obj)) {
    if (!fields[k]) fail(where + ': field "' + k + '" is not in the SDK model ' + name);
    checkType(obj[k], fields[k].type, where + '.' + k);
  }
  for (const [k, f] of Object.entries(fields)) if (!f.optional && !(k in obj)) fail(where + ': missing ' + k);
  return obj;
}

function adminPost(p, body) {
  return fetch('https://' + host + ':' + port + '/__emulator/' + p, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body),
  }).then((r) => r.json().then((j) => ({ status: r.status, body: j })));
}

async function rest() {
  const client = platformClient.ApiClient.instance;
  client.setGateway({ host, protocol: 'https', port });
  client.config.logger.log_level = client.config.logger.logLevelEnum.level.LNone;

  // bad credentials are refused the way the SDK expects
  try {
    await client.loginClientCredentialsGrant(clientId, 'wrong-' + clientSecret);
    fail('login with a wrong secret succeeded');
  } catch (e) {
    if (e instanceof Error && /succeeded/.test(e.message)) throw e;
    const st = e.status || (e.response && e.response.status);
    if (st !== 401) fail('bad credentials: expected 401, got ' + st);
  }
  log({ check: 'login_refused', status: 401 });

  const auth = await client.loginClientCredentialsGrant(clientId, clientSecret);
  if (!auth.accessToken || typeof auth.tokenExpiryTime !== 'number' || auth.tokenExpiryTime <= Date.now())
    fail('login: no token or expiry in AuthData');
  log({ check: 'login', expires_in_s: Math.round((auth.tokenExpiryTime - Date.now()) / 1000) });

  const api = new platformClient.NotificationsApi();
  const ch = conforms(await api.postNotificationsChannels(), 'Channel');
  const want = 'wss://' + host + ':' + port + '/channels/' + ch.id;
  if (ch.connectUri !== want) fail('connectUri ' + ch.connectUri + ' != ' + want);
  if (isNaN(Date.parse(ch.expires))) fail('expires is not a date: ' + ch.expires);
  log({ check: 'create_channel', id: ch.id, connectUri: ch.connectUri });

  const put = conforms(await api.putNotificationsChannelSubscriptions(ch.id, TOPICS.map((id) => ({ id }))),
    'ChannelTopicEntityListing');
  if (put.entities.map((e) => e.id).join() !== TOPICS.join()) fail('PUT subscriptions answered ' + JSON.stringify(put));
  log({ check: 'put_subscriptions', topics: put.entities.length });

  const got = conforms(await api.getNotificationsChannelSubscriptions(ch.id), 'ChannelTopicEntityListing');
  if (got.entities.map((e) => e.id).join() !== TOPICS.join()) fail('GET subscriptions answered ' + JSON.stringify(got));
  log({ check: 'get_subscriptions', topics: got.entities.length });

  await api.headNotificationsChannel(ch.id);
  const list = conforms(await api.getNotificationsChannels(), 'ChannelEntityListing');
  if (!list.entities.some((e) => e.id === ch.id)) fail('channel list misses ' + ch.id);
  log({ check: 'head_and_list', channels: list.entities.length });

  try {
    await api.getNotificationsChannelSubscriptions('streaming-0-unknown');
    fail('unknown channel answered 2xx');
  } catch (e) {
    if (e instanceof Error && /2xx/.test(e.message)) throw e;
    if (e.status !== 404) fail('unknown channel: expected 404, got ' + e.status);
  }
  log({ check: 'unknown_channel', status: 404 });
  return ch;
}

function stream(ch) {
  return new Promise((resolve, reject) => {
    const seen = { heartbeat: false, pong: false, event: false };
    const ws = new WebSocket(ch.connectUri);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error('stream: timeout, saw ' + JSON.stringify(seen))); }, 10000);
    ws.on('open', () => {
      ws.send(JSON.stringify({ message: 'ping' }));
      adminPost('publish', { topic: TOPICS[0], eventBody: { presenceDefinition: { systemPresence: 'Busy' } } })
        .then((r) => { if (r.status !== 200 || r.body.delivered !== 1) reject(new Error('publish: ' + JSON.stringify(r))); })
        .catch(reject);
    });
    ws.on('message', (data, isBinary) => {
      if (isBinary) return reject(new Error('unexpected binary frame'));
      const m = JSON.parse(data.toString());
      if (m.topicName === 'channel.metadata' && m.eventBody.message === 'WebSocket Heartbeat') seen.heartbeat = true;
      else if (m.topicName === 'channel.metadata' && m.eventBody.message === 'pong') seen.pong = true;
      else if (m.topicName === TOPICS[0]) {
        if (m.version !== '2' || !m.metadata || !m.metadata.CorrelationId ||
            m.eventBody.presenceDefinition.systemPresence !== 'Busy' || typeof m.eventBody.sequence !== 'number')
          return reject(new Error('event envelope: ' + data));
        seen.event = true;
      }
      if (seen.heartbeat && seen.pong && seen.event) {
        clearTimeout(timer);
        log({ check: 'stream', heartbeat: true, pong: true, event: true });
        ws.close(1000);
        resolve();
      }
    });
    ws.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

(async () => {
  if (!port) fail('EMU_PORT is not set');
  const ch = await rest();
  await stream(ch);
  log({ ok: true });
})().catch((e) => {
  log({ ok: false, error: String(e && e.message ? e.message : e) });
  process.exit(1);
});
