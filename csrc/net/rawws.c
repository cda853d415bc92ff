/* rawws.c: the connection: a WebSocket client of our own over an lws RAW connection.
 *
 * lws carries the bytes (connect, the proxy's CONNECT, poll, writes); tlsmem.c does TLS over
 * memory BIOs; wsupgrade.c writes and checks the upgrade; wsframe.c reads frames in bulk, so no
 * received byte goes through a per-byte parser (lws's client runs every byte through
 * lws_ws_client_rx_sm). Figures and the choice: docs/receive.md.
 *
 * Facts of lws's RAW client role this file relies on (RECEIVE.md, tried on 4.1.6):
 * - RAW with LCCSCF_USE_SSL fails at once in 4.1.6: the connection is plain, TLS is ours.
 * - Through an HTTP proxy lws sends "CONNECT <ci.address>:<port>" but never reads the answer:
 *   RAW_CONNECTED never fires, the proxy's "200" (or refusal) is the first RAW_RX, the pending
 *   timeout must be cleared by hand, and the end of such a connection comes as
 *   CLIENT_CONNECTION_ERROR ("Closed before conn"), not RAW_CLOSE.
 * - lws 4.3.3 (tried) differs: RAW_CONNECTED comes twice for one connection (the second is
 *   ignored); through a proxy it comes once the TCP connection to the proxy is up, before the
 *   proxy's answer (which still arrives as the first RAW_RX); a connect that fails is reported
 *   on the vhost's first protocol (gn_tr_protocols holds only this one's callback).
 * - Writes: lws_callback_on_writable, one lws_write(LWS_WRITE_RAW) per RAW_WRITEABLE; lws keeps
 *   an unsent tail and drains it before the next writeable.
 * Loop thread only.
 */
#include "transport_int.h"
#include "scrub.h"
#include "verdict.h"
#include "wsupgrade.h"

#include <openssl/rand.h>
#include <stdio.h>

static void wsi_gone(gn_conn_t *c, struct lws *wsi) {
  lws_set_opaque_user_data(wsi, NULL);
  if (c->wsi == wsi) c->wsi = NULL;
}

void gn_tr_raw_free(gn_conn_t *c) {
  if (!c->raw) return;
  gn_tr_tls_free(c);
  gn_buf_free(&c->raw->in);
  gn_buf_free(&c->raw->out);
  gn_buf_free(&c->raw->held);
  gn_wsf_free(&c->raw->wsf);
  free(c->raw);
  c->raw = NULL;
}

static void want_write(gn_conn_t *c) {
  if (c->wsi && c->raw->out.len > LWS_PRE) lws_callback_on_writable(c->wsi);
}

/* Plaintext for the server: through TLS when the connection has it. Returns 0, or -1. */
static int put(gn_conn_t *c, const void *data, size_t len) {
  if (c->raw->ssl) return gn_tr_tls_write(c, data, len);
  char *dst = gn_tr_out_room(c->raw, len);
  if (!dst) return -1;
  memcpy(dst, data, len);
  c->raw->out.len += len;
  return 0;
}

/* A masked frame of ours. Returns 0, or -1. */
static int put_frame(gn_conn_t *c, int opcode, const void *payload, size_t len) {
  unsigned char key[4], small[256], *buf = len + 14 <= sizeof small ? small : malloc(len + 14);
  if (!buf) return -1;
  if (RAND_bytes(key, sizeof key) != 1) memset(key, 0x5a, sizeof key);
  size_t n = gn_wsf_build(buf, opcode, payload, len, key);
  int rc = put(c, buf, n);
  if (buf != small) free(buf);
  return rc;
}

/* Ends the connection at the next writeable (after what is queued, and our close_notify). */
static void end_soon(gn_conn_t *c) {
  gn_tr_tls_close_notify(c);
  c->raw->end = 1;
  if (c->wsi) lws_callback_on_writable(c->wsi);
}

/* A failure before or after the open: delivered now, the socket ended (a close frame with
 * close_code first when the connection is open and the code is not 0). */
static void fail_now(gn_conn_t *c, gn_close_info_t *info, int close_code) {
  if (close_code && c->raw->upgraded && !c->raw->close_sent) {
    unsigned char p[2] = {(unsigned char)(close_code >> 8), (unsigned char)close_code};
    put_frame(c, GN_WS_CLOSE, p, 2);
    c->raw->close_sent = 1;
  }
  gn_tr_deliver_close(c, info);
  end_soon(c);
}

static void fail_stage(gn_conn_t *c, const char *stage, int tls, const char *fmt, const char *a) {
  gn_close_info_t info = {0};
  info.code = 1006;
  info.stage = stage;
  info.tls = tls;
  snprintf(info.error, sizeof info.error, fmt, a);
  fail_now(c, &info, 0);
}

/* ---- the frames ---- */
static int on_message(void *ud, const char *data, size_t len, int binary) {
  gn_conn_t *c = ud;
  /* closed by its owner: read on to the server's close frame, deliver nothing */
  if (!c->detached) c->cbs.on_message(c->ud, c, data, len, binary);
  return 0;
}

static int on_control(void *ud, int opcode, const unsigned char *data, size_t len) {
  gn_conn_t *c = ud;
  if (opcode == GN_WS_PING) {
    if (!c->raw->close_sent && put_frame(c, GN_WS_PONG, data, len) == 0) want_write(c);
    return 0;
  }
  if (opcode != GN_WS_CLOSE) return 0;
  if (len >= 2) {
    c->peer_code = (data[0] << 8) | data[1];
    /* the server's text, safe to show: valid UTF-8, no control characters */
    gn_scrub(c->peer_reason, sizeof c->peer_reason, (const char *)data + 2, len - 2, NULL);
  } else {
    c->peer_code = 1005;
  }
  if (!c->raw->close_sent) { /* the handshake's answer: the server's code echoed */
    unsigned char p[2] = {(unsigned char)(c->peer_code >> 8), (unsigned char)c->peer_code};
    put_frame(c, GN_WS_CLOSE, p, len >= 2 ? 2 : 0);
    c->raw->close_sent = 1;
  }
  end_soon(c);
  return 1; /* nothing after a close is read */
}

static const gn_wsf_cbs_t frame_cbs = {on_message, on_control};

/* Plaintext from the server. Returns 0, or -1 when the connection failed (delivered). */
static int ws_in(gn_conn_t *c, const char *in, size_t len) {
  gn_raw_t *r = c->raw;
  if (r->end) return 0; /* closing: nothing more is read */
  if (!r->upgraded) {
    if (gn_buf_add(&r->in, in, len) != 0) {
      fail_stage(c, "handshake", 0, "%sout of memory", "");
      return -1;
    }
    size_t used = 0;
    int status = 0;
    char err[160] = "";
    int rc = gn_wsu_check(r->in.p, r->in.len, r->key, &used, &status, err, sizeof err);
    if (rc == 0) return 0;
    if (rc < 0) {
      gn_close_info_t info = {0};
      info.code = 1006;
      info.stage = "handshake";
      info.http_status = status != 101 ? status : 0;
      snprintf(info.error, sizeof info.error, "%s", err);
      fail_now(c, &info, 0);
      return -1;
    }
    r->upgraded = 1;
    if (c->timer) uv_timer_stop(c->timer);
    c->state = C_OPEN;
    gn_buf_t rest = r->in;
    r->in = (gn_buf_t){0};
    if (!c->detached) c->cbs.on_open(c->ud, c);
    int frc = 0;
    if (!c->detached && rest.len > used) frc = ws_in(c, rest.p + used, rest.len - used);
    gn_buf_free(&rest);
    return frc;
  }
  int rc = gn_wsf_feed(&r->wsf, in, len, &frame_cbs, c, NULL);
  if (rc < 0 && !c->detached) {
    gn_close_info_t info = {0};
    info.was_open = 1;
    info.code = r->wsf.code;
    info.stage = "open";
    info.oversize = r->wsf.code == 1009;
    if (info.oversize) snprintf(info.error, sizeof info.error, "%s", r->wsf.error);
    else snprintf(info.error, sizeof info.error, "protocol error: %s", r->wsf.error);
    fail_now(c, &info, r->wsf.code);
    return -1;
  }
  if (rc < 0) end_soon(c);
  return 0;
}

/* The socket (or the proxy's tunnel) is up: TLS or the upgrade starts. Returns 0, or -1. */
static int session_start(gn_conn_t *c) {
  gn_raw_t *r = c->raw;
  if (c->tls && !r->ssl) {
    char err[200] = "";
    SSL_CTX *ctx = NULL;
    /* the vhost's TLS context: the same cache (CA bundle, verify, proxy) as lws's path */
    struct lws_vhost *vh = lws_get_vhost(c->wsi);
    for (vhost_ent_t *v = c->t->vhosts; v; v = v->next)
      if (v->vh == vh) ctx = v->ssl_ctx;
    const char *ip = c->proxy.host ? "proxy" : c->addrs[c->next_addr - 1];
    if (!ctx || gn_tr_tls_begin(c, ctx, ip, err, sizeof err) != 0) {
      fail_stage(c, "tls", 1, "%s", err[0] ? err : "tls: no context");
      return -1;
    }
    char e2[200] = "";
    if (gn_tr_tls_handshake(c, e2, sizeof e2) < 0) {
      fail_stage(c, "tls", 1, "TLS failure: %s", e2);
      return -1;
    }
    gn_tr_tls_flush(c);
    want_write(c);
    return 0;
  }
  /* the upgrade request */
  unsigned char nonce[16];
  if (RAND_bytes(nonce, sizeof nonce) != 1) {
    fail_stage(c, "handshake", 0, "%scannot make a WebSocket key", "");
    return -1;
  }
  gn_wsu_key(nonce, r->key);
  char req[1400];
  size_t n = gn_wsu_request(req, sizeof req, c->host, c->port, c->tls, c->path, r->key);
  if (!n || put(c, req, n) != 0) {
    fail_stage(c, "handshake", 0, "%scannot write the upgrade request", "");
    return -1;
  }
  c->handshake_started = 1;
  if (c->timer && !c->detached)
    uv_timer_start(c->timer, gn_tr_timer_cb, (uint64_t)c->handshake_timeout_ms, 0);
  want_write(c);
  return 0;
}

/* The proxy's answer to CONNECT (lws never reads it for RAW). Returns 0, or -1. */
static int proxy_in(gn_conn_t *c, const char *in, size_t len, size_t *used) {
  gn_raw_t *r = c->raw;
  size_t before = r->in.len;
  if (gn_buf_add(&r->in, in, len) != 0) return -1;
  char *end = strstr(r->in.p, "\r\n\r\n");
  if (!end) {
    *used = len;
    if (r->in.len > 8192) {
      fail_stage(c, "proxy", 0, "the proxy's answer to CONNECT is too long%s", "");
      return -1;
    }
    return 0;
  }
  size_t hl = (size_t)(end + 4 - r->in.p);
  *used = hl - before;
  int major, minor, status = 0;
  if (sscanf(r->in.p, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || status != 200) {
    gn_close_info_t info = {0};
    info.code = 1006;
    info.stage = "proxy";
    info.proxy = 1;
    info.proxy_status = status >= 100 && status <= 999 ? status : 0;
    snprintf(info.error, sizeof info.error, "the proxy %.100s refused the tunnel to %.100s:%d",
             c->proxy_hp, c->host, c->port);
    if (info.proxy_status) {
      size_t m = strlen(info.error);
      snprintf(info.error + m, sizeof info.error - m, " with HTTP %d", status);
    }
    fail_now(c, &info, 0);
    return -1;
  }
  gn_buf_free(&r->in);
  r->proxy_wait = 0;
  lws_set_timeout(c->wsi, NO_PENDING_TIMEOUT, 0); /* lws would end it ~20 s later */
  return session_start(c);
}

/* A socket read holds up to 64 KB (the context's pt_serv_buf_size), far more events than
 * overflow = "pause" lets in past the queue's limits before a pause takes effect (lws stops
 * reading at the next turn of the loop). So plaintext goes to the frames FEED bytes at a time,
 * as when lws read 4 KB at a time, and none once a pause is asked (c->rx_hold): wss leaves the
 * rest in its read BIO, ws:// in r->held, for gn_tr_raw_resume. */
#define FEED 4096

static int fail_oom(gn_conn_t *c) {
  fail_stage(c, c->raw->upgraded ? "open" : "tls", 0, "%sout of memory", "");
  return -1;
}

/* ws:// plaintext to the frames. Returns 0, or -1 when the connection failed (delivered). */
static int feed(gn_conn_t *c, const char *in, size_t len) {
  gn_raw_t *r = c->raw;
  while (len && !r->end && !c->detached) {
    if (c->rx_hold && r->upgraded) return gn_buf_add(&r->held, in, len) == 0 ? 0 : fail_oom(c);
    size_t n = len < FEED ? len : FEED;
    if (ws_in(c, in, n) != 0) return -1;
    in += n;
    len -= n;
  }
  return 0;
}

/* Every record the read BIO holds, decrypted FEED bytes at a time, to the frames (until a
 * pause is asked). Returns 0, or -1 when the connection failed (delivered). */
static int tls_drain(gn_conn_t *c) {
  gn_raw_t *r = c->raw;
  char buf[FEED];
  for (;;) {
    if (c->rx_hold && r->upgraded) break;
    size_t fill = 0;
    int n = 0;
    while (fill < sizeof buf && (n = gn_tr_tls_read(c, buf + fill, sizeof buf - fill)) > 0)
      fill += (size_t)n;
    if (fill && ws_in(c, buf, fill) != 0) return -1;
    if (n < 0) { /* the server's close_notify, or TLS broke */
      gn_tr_tls_flush(c);
      if (!r->end) end_soon(c);
      return 0;
    }
    if (n == 0 || r->end || c->detached) break;
  }
  gn_tr_tls_flush(c);
  want_write(c);
  return 0;
}

/* Bytes from the socket. Returns 0, or -1 when the connection failed (delivered). */
static int raw_in(gn_conn_t *c, const char *in, size_t len) {
  gn_raw_t *r = c->raw;
  if (r->proxy_wait) {
    size_t used = 0;
    if (proxy_in(c, in, len, &used) != 0) return -1;
    in += used;
    len -= used;
    if (r->proxy_wait || !len) return 0;
  }
  if (!r->ssl) {
    if (r->held.len) return gn_buf_add(&r->held, in, len) == 0 ? 0 : fail_oom(c);
    return feed(c, in, len);
  }
  if (gn_tr_tls_in(c, in, len) != 0) return fail_oom(c);
  if (!r->tls_up) {
    char err[200] = "";
    int hs = gn_tr_tls_handshake(c, err, sizeof err);
    gn_tr_tls_flush(c);
    if (hs < 0) {
      fail_stage(c, "tls", 1, "TLS failure: %s", err);
      return -1;
    }
    if (hs == 0) {
      want_write(c);
      return 0;
    }
    r->tls_up = 1;
    c->tls_resumed = SSL_session_reused(r->ssl);
    if (session_start(c) != 0) return -1;
  }
  return tls_drain(c);
}

void gn_tr_raw_resume(gn_conn_t *c) {
  gn_raw_t *r = c->raw;
  if (!r || r->end || c->rx_hold || !r->upgraded) return;
  if (r->ssl) {
    tls_drain(c);
    return;
  }
  gn_buf_t rest = r->held;
  r->held = (gn_buf_t){0};
  if (rest.len) feed(c, rest.p, rest.len);
  gn_buf_free(&rest);
}

/* The connection ended: its on_close, from what is known. */
static void ended(gn_conn_t *c, struct lws *wsi) {
  gn_raw_t *r = c->raw;
  gn_close_info_t info = {0};
  info.was_open = c->state == C_OPEN;
  info.code = c->peer_code ? c->peer_code : 1006;
  info.stage = r && r->upgraded ? "open" : c->handshake_started ? "handshake"
               : r && r->proxy_wait ? "proxy" : c->tls ? "tls" : "connect";
  snprintf(info.reason, sizeof info.reason, "%s", c->peer_reason);
  if (c->peer_code)
    snprintf(info.error, sizeof info.error, "closed by the server with code %d%s%s", c->peer_code,
             c->peer_reason[0] ? ": " : "", c->peer_reason);
  else if (info.was_open)
    snprintf(info.error, sizeof info.error, "connection lost (no close frame)");
  else if (r && r->proxy_wait)
    snprintf(info.error, sizeof info.error, "the proxy %.100s dropped the tunnel to %.100s:%d",
             c->proxy_hp, c->host, c->port);
  else
    snprintf(info.error, sizeof info.error, "connection closed during the %s",
             c->handshake_started ? "upgrade" : "TLS handshake");
  if (r && r->proxy_wait) info.proxy = 1;
  wsi_gone(c, wsi);
  gn_tr_deliver_close(c, &info);
  gn_tr_conn_maybe_free(c);
}

/* lws's CLIENT_CONNECTION_ERROR: a connect that failed (the next address may be tried), or the
 * end of a proxy's tunnel that was up (lws says "Closed before conn"). */
static void connect_failed(gn_conn_t *c, struct lws *wsi, const char *msg) {
  if (c->detached || (c->proxy.host && c->raw && !c->raw->proxy_wait)) {
    ended(c, wsi);
    return;
  }
  gn_conn_failure_t f = {msg, gn_tr_last_log, "", c->tls, c->handshake_started, 0,
                         c->proxy.host != NULL, c->proxy_hp, c->host, c->port, c->naddr};
  /* through a proxy the first answer is the proxy's: a close before it is a dropped tunnel */
  if (c->proxy.host && c->raw && c->raw->proxy_wait && msg && strstr(msg, "Closed before"))
    f.msg = "proxy conn dead";
  gn_close_info_t info;
  int v = gn_close_verdict(&f, &info);
  wsi_gone(c, wsi);
  if ((v & GN_VERDICT_RETRY) && gn_tr_try_next_addr(c)) return;
  gn_tr_deliver_close(c, &info);
  gn_tr_conn_maybe_free(c);
}

int gn_tr_raw_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len) {
  gn_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    if (c) connect_failed(c, wsi, in ? (const char *)in : NULL);
    return 0;
  case LWS_CALLBACK_RAW_CONNECTED:
    if (!c || c->detached) return -1; /* an attempt its owner gave up never upgrades */
    c->raw->up = 1;
    if (c->raw->ssl || c->handshake_started) return 0; /* lws 4.3.3 tells it twice */
    if (c->raw->proxy_wait) return 0; /* 4.3.3, through a proxy: its answer comes next */
    session_start(c); /* a failure is delivered and ends the socket at the next writeable */
    return 0;
  case LWS_CALLBACK_RAW_RX:
    /* after the owner's close, only the server's answering close is looked for */
    if (!c || c->raw->end || (c->detached && !c->raw->close_sent)) return 0;
    c->raw->up = 1;
    raw_in(c, in, len);
    return 0;
  case LWS_CALLBACK_RAW_WRITEABLE: {
    if (!c) return -1;
    gn_raw_t *r = c->raw;
    if (r->out.len > LWS_PRE) {
      size_t n = r->out.len - LWS_PRE;
      int m = lws_write(wsi, (unsigned char *)r->out.p + LWS_PRE, n, LWS_WRITE_RAW);
      r->out.len = LWS_PRE;
      gn_buf_free(&r->out); /* writes are few: an idle connection keeps no buffer */
      if (m < 0) return -1;
    }
    if (r->end) return -1;
    return 0;
  }
  case LWS_CALLBACK_RAW_CLOSE:
    if (!c) return 0;
    ended(c, wsi);
    return 0;
  case LWS_CALLBACK_WSI_DESTROY:
    if (c && !c->detached && c->state == C_CONNECTING && !c->raw->up) {
      /* lws 4.3.3 ends a refused connect with no CONNECTION_ERROR of its own */
      connect_failed(c, wsi, "connection refused or unreachable");
    } else if (c) {
      gn_close_info_t info = {0};
      info.code = 1006;
      info.was_open = c->state == C_OPEN;
      snprintf(info.error, sizeof info.error, "connection ended");
      wsi_gone(c, wsi);
      gn_tr_deliver_close(c, &info);
      gn_tr_conn_maybe_free(c);
    }
    return 0;
  default:
    return 0;
  }
}

int gn_tr_raw_send_text(gn_conn_t *c, const char *text, size_t len) {
  if (!c->raw || !c->raw->upgraded || c->raw->close_sent || !c->wsi) return -1;
  if (put_frame(c, GN_WS_TEXT, text, len) != 0) return -1;
  want_write(c);
  return 0;
}

void gn_tr_raw_close(gn_conn_t *c, int code, const char *reason) {
  gn_raw_t *r = c->raw;
  if (!r || !c->wsi || !r->upgraded || r->end) {
    gn_tr_kill_wsi(c);
    return;
  }
  if (!r->close_sent) {
    unsigned char p[125];
    size_t rl = reason ? gn_utf8_fit(reason, strlen(reason), sizeof p - 2) : 0;
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    if (rl) memcpy(p + 2, reason, rl);
    put_frame(c, GN_WS_CLOSE, p, rl + 2);
    r->close_sent = 1;
    want_write(c);
  }
  /* the server's close ends it (on_control); if it never comes, lws's timeout does */
  lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, 2);
}

/* See transport_int.h. Method RAW on a plain connection: TLS is ours (tlsmem.c). ci.host is
 * never NULL: it carries the name for the Host header while ci.address carries the address. */
int gn_tr_start_raw(gn_conn_t *c, const char *ip) {
  struct lws_vhost *vh = gn_tr_vhost_ready(c, ip);
  if (!vh) return -1;
  if (!c->raw) {
    c->raw = calloc(1, sizeof *c->raw);
    if (!c->raw) {
      gn_tr_fail(c, "connect", 0, "%sout of memory", "");
      return -1;
    }
  } else { /* the next address: a fresh start */
    gn_tr_tls_free(c);
    gn_buf_free(&c->raw->in);
    gn_buf_free(&c->raw->out);
    gn_wsf_free(&c->raw->wsf);
    memset(c->raw, 0, sizeof *c->raw);
  }
  gn_wsf_init(&c->raw->wsf, c->max_message);
  /* Text is checked where it is read as JSON (message.c: a malformed event is reported and the
   * stream goes on) and close reasons where they are shown (gn_scrub): failing the connection
   * (RFC 6455 8.1) would lose every event after a bad one. */
  c->raw->wsf.check_utf8 = 0;
  c->raw->proxy_wait = c->proxy.host != NULL;
  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = c->t->lws;
  ci.vhost = vh;
  ci.method = "RAW";
  ci.address = c->proxy.host ? c->host : ip;
  ci.port = c->port;
  ci.path = c->path;
  ci.host = c->host;
  ci.origin = c->host;
  ci.local_protocol_name = "gn-raw";
  ci.opaque_user_data = c;
  gn_tr_last_log[0] = 0;
  c->state = C_CONNECTING;
  c->in_connect = 1;
  struct lws *wsi = lws_client_connect_via_info(&ci);
  c->in_connect = 0;
  if (c->state == C_NEXT) return 0;
  if (!wsi) {
    if (c->state != C_DONE) {
      if (gn_tr_try_next_addr(c)) return 0;
      gn_tr_fail(c, "connect", 0, "connection failed: %s",
                 gn_tr_last_log[0] ? gn_tr_last_log : "lws refused the connection");
    }
    return -1;
  }
  if (c->state == C_DONE) return -1;
  c->wsi = wsi;
  return 0;
}
