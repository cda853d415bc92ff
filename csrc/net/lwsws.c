/* lwsws.c: the connection as libwebsockets' WebSocket client (lws 4.1.6): the connect call and
 * the protocol callback, which hands each event to the lifecycle (transport.c).
 *
 * Facts this file relies on (see ARCHITECTURE.md):
 * - ci.host must never be NULL with TLS (crash); it carries the name for SNI and certificate
 *   checks while ci.address carries the resolved IP.
 * - Returning -1 from CLIENT_ESTABLISHED causes an extra CONNECTION_ERROR: we close with
 *   lws_set_timeout(..., LWS_TO_KILL_ASYNC) instead.
 * - lws may call CLIENT_WRITEABLE without being asked: writes are driven by pending flags.
 */
#include "transport_int.h"
#include "scrub.h"
#include "verdict.h"

#include <openssl/err.h>
#include <stdio.h>

/* "[user:pass@]host:port" (IPv6 in brackets) of c's proxy at host, as lws_set_proxy takes it. */
void gn_tr_proxy_spec(const gn_conn_t *c, const char *host, char *out, size_t outlen) {
  const char *fmt = strchr(host, ':') ? "%s%s%s%s[%s]:%d" : "%s%s%s%s%s:%d";
  snprintf(out, outlen, fmt, c->proxy.user ? c->proxy.user : "", c->proxy.user ? ":" : "",
           c->proxy.user && c->proxy.pass ? c->proxy.pass : "", c->proxy.user ? "@" : "", host,
           c->proxy.port);
}

/* ip is the target's address, or the proxy's when the connection goes through one: lws then
 * sends "CONNECT host:port" (the target's name: the proxy resolves it) to the vhost's proxy.
 * The vhost is the proxy's by name; its address is set to ip just before the connect (lws reads
 * it there, synchronously), so a proxy name resolving to ever new addresses does not add a vhost
 * (and a TLS context with its CA store) for each. */
/* See transport_int.h. */
struct lws_vhost *gn_tr_vhost_ready(gn_conn_t *c, const char *ip) {
  char err[256] = "";
  char proxy[600] = "";
  if (c->proxy.host) gn_tr_proxy_spec(c, c->proxy.host, proxy, sizeof proxy);
  struct lws_vhost *vh = gn_tr_vhost_for(c->t, c->ca_file, c->verify, proxy, NULL, err, sizeof err);
  if (vh && c->proxy.host) {
    gn_tr_proxy_spec(c, ip, proxy, sizeof proxy);
    if (lws_set_proxy(vh, proxy) != 0) snprintf(err, sizeof err, "proxy: lws refused its setting");
  }
  gn_tr_wipe(proxy, sizeof proxy); /* may hold a password */
  if (err[0] && c->proxy.host && vh) {
    gn_tr_fail(c, "proxy", 0, "%s", err);
    return NULL;
  }
  if (!vh) {
    gn_close_info_t info = {0};
    info.code = 1006;
    info.stage = "tls";
    info.tls = 1;
    snprintf(info.error, sizeof info.error, "%s", err);
    gn_tr_deliver_close(c, &info);
    return NULL;
  }
  return vh;
}

int gn_tr_start_lws(gn_conn_t *c, const char *ip) {
  struct lws_vhost *vh = gn_tr_vhost_ready(c, ip);
  if (!vh) return -1;
  struct lws_client_connect_info ci;
  memset(&ci, 0, sizeof ci);
  ci.context = c->t->lws;
  ci.vhost = vh;
  ci.address = c->proxy.host ? c->host : ip;
  ci.port = c->port;
  ci.path = c->path;
  ci.host = c->host; /* never NULL: SNI and certificate name */
  ci.origin = c->host;
  ci.ietf_version_or_minus_one = -1;
  ci.local_protocol_name = "gn-notify";
  ci.opaque_user_data = c;
  if (c->tls) {
    ci.ssl_connection = LCCSCF_USE_SSL;
    if (!c->verify)
      ci.ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
                           LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
  }
  gn_tr_last_log[0] = 0;
  c->state = C_CONNECTING;
  /* When connect() fails at once (an unroutable or multicast address, no local port left, no
   * file descriptor), lws 4.1.6 closes the connection inside this call and our callback sees
   * CONNECTION_ERROR there: c must outlive the call (the caller frees it if it is done). */
  c->in_connect = 1;
  struct lws *wsi = lws_client_connect_via_info(&ci);
  c->in_connect = 0;
  /* A synchronous failure has already called CONNECTION_ERROR (state DONE) or not at all. */
  if (c->state == C_NEXT) return 0; /* failed inside the call; the next address is due */
  if (!wsi) {
    if (c->state != C_DONE) {
      if (gn_tr_try_next_addr(c)) return 0;
      gn_tr_fail(c, "connect", 0, "connection failed: %s", gn_tr_last_log[0] ? gn_tr_last_log : "lws refused the connection");
    }
    return -1;
  }
  if (c->state == C_DONE) return -1;
  c->wsi = wsi;
  return 0;
}


static void wsi_gone(gn_conn_t *c, struct lws *wsi) {
  lws_set_opaque_user_data(wsi, NULL);
  if (c->wsi == wsi) c->wsi = NULL;
}

/* The certificate verification result of wsi's TLS session ("certificate has expired",
 * "hostname mismatch"), or "" when it has none or it verified. */
static void tls_verdict(struct lws *wsi, char *out, size_t outlen) {
  out[0] = 0;
  SSL *ssl = lws_get_ssl(wsi);
  if (!ssl) return;
  long v = SSL_get_verify_result(ssl);
  if (v != X509_V_OK) snprintf(out, outlen, "%s", X509_verify_cert_error_string(v));
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len) {
  gn_conn_t *c = wsi ? lws_get_opaque_user_data(wsi) : NULL;
  /* lws 4.3.3 reports a RAW connection's failed connect here, on the first protocol */
  if (c && c->raw) return gn_tr_raw_cb(wsi, reason, user, in, len);
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    if (!c) return 0;
    /* This connection's own verdict on the certificate, from its SSL object: the log line is
     * the thread's latest, which may be another connection's. */
    char cert[160] = "";
    if (c->tls && !c->handshake_started) tls_verdict(wsi, cert, sizeof cert);
    gn_conn_failure_t f = {in ? (const char *)in : NULL, gn_tr_last_log, cert, c->tls,
                           c->handshake_started, (int)lws_http_client_http_response(wsi),
                           c->proxy.host != NULL, c->proxy_hp, c->host, c->port, c->naddr};
    gn_close_info_t info;
    int v = gn_close_verdict(&f, &info);
    if ((v & GN_VERDICT_RETRY) && gn_tr_try_next_addr(c)) {
      wsi_gone(c, wsi); /* a refused or unreachable address: the next one is due */
      return 0;
    }
    wsi_gone(c, wsi);
    /* a refused tunnel: its status is asked for, then the failure delivered */
    if ((v & GN_VERDICT_ASK_PROXY) && c->next_addr > 0 &&
        gn_tr_probe_start(c, c->addrs[c->next_addr - 1], &info) == 0)
      return 0;
    gn_tr_deliver_close(c, &info);
    gn_tr_conn_maybe_free(c);
    return 0;
  }
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
    /* An attempt its owner gave up never sends its upgrade (lws closes it): the server would
     * take it as the channel's connection and close the live one. */
    if (!c || c->detached) return -1;
    if (!c->handshake_started) {
      c->handshake_started = 1;
      if (c->timer && !c->detached)
        uv_timer_start(c->timer, gn_tr_timer_cb, (uint64_t)c->handshake_timeout_ms, 0);
    }
    return 0;
  case LWS_CALLBACK_CLIENT_ESTABLISHED:
    if (!c || c->detached) {
      lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
      return 0;
    }
    uv_timer_stop(c->timer);
    c->state = C_OPEN;
    if (c->tls) {
      SSL *ssl = lws_get_ssl(wsi);
      c->tls_resumed = ssl && SSL_session_reused(ssl);
    }
    c->cbs.on_open(c->ud, c);
    return 0;
  case LWS_CALLBACK_CLIENT_RECEIVE: {
    if (!c || c->detached) return 0;
    if (lws_is_first_fragment(wsi)) {
      gn_buf_reset(&c->rx);
      c->rx_binary = lws_frame_is_binary(wsi);
    }
    if (c->rx.len + len > c->max_message) {
      size_t total = c->rx.len + len + lws_remaining_packet_payload(wsi);
      gn_close_info_t info = {0};
      info.code = 1009;
      info.stage = "open";
      info.oversize = 1;
      snprintf(info.error, sizeof info.error,
               "message of at least %zu bytes is over max_message_size (%zu bytes)", total,
               c->max_message);
      gn_buf_reset(&c->rx);
      gn_tr_kill_wsi(c);
      gn_tr_deliver_close(c, &info);
      return 0;
    }
    if (gn_buf_add(&c->rx, in, len) != 0) {
      gn_close_info_t info = {0};
      info.code = 1009;
      info.stage = "open";
      snprintf(info.error, sizeof info.error, "out of memory reassembling a message");
      gn_tr_kill_wsi(c);
      gn_tr_deliver_close(c, &info);
      return 0;
    }
    if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
      c->cbs.on_message(c->ud, c, c->rx.p, c->rx.len, c->rx_binary);
      if (c->rx.cap > 65536) gn_buf_free(&c->rx); /* do not keep a huge buffer per idle client */
      else gn_buf_reset(&c->rx);
    }
    return 0;
  }
  case LWS_CALLBACK_CLIENT_WRITEABLE: {
    if (!c) return 0;
    if (c->close_pending) {
      c->close_pending = 0;
      lws_close_reason(wsi, (enum lws_close_status)c->close_code, (unsigned char *)c->close_reason,
                       strlen(c->close_reason));
      return -1;
    }
    if (c->detached || c->tx_off >= c->tx.len) return 0;
    uint32_t l;
    memcpy(&l, c->tx.p + c->tx_off, sizeof l);
    unsigned char *buf = malloc(LWS_PRE + l + 1);
    if (!buf) return 0;
    memcpy(buf + LWS_PRE, c->tx.p + c->tx_off + sizeof l, l);
    c->tx_off += sizeof l + l;
    int n = lws_write(wsi, buf + LWS_PRE, l, LWS_WRITE_TEXT);
    free(buf);
    if (c->tx_off >= c->tx.len) {
      gn_buf_reset(&c->tx);
      c->tx_off = 0;
    } else {
      lws_callback_on_writable(wsi);
    }
    if (n < (int)l) gn_tr_kill_wsi(c);
    return 0;
  }
  case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
    if (c && len >= 2) {
      const unsigned char *p = in;
      c->peer_code = (p[0] << 8) | p[1];
      /* The server's text, safe to show: valid UTF-8, no control characters, cut (if ever) at
       * a character boundary; credentials are scrubbed where the client knows them. */
      gn_scrub(c->peer_reason, sizeof c->peer_reason, (const char *)p + 2, len - 2, NULL);
    } else if (c) {
      c->peer_code = 1005;
    }
    return 0;
  case LWS_CALLBACK_CLIENT_CLOSED: {
    if (!c) return 0;
    gn_close_info_t info = {0};
    info.was_open = c->state == C_OPEN;
    info.code = c->peer_code ? c->peer_code : 1006;
    info.stage = "open";
    snprintf(info.reason, sizeof info.reason, "%s", c->peer_reason);
    if (c->peer_code)
      snprintf(info.error, sizeof info.error, "closed by the server with code %d%s%s", c->peer_code,
               c->peer_reason[0] ? ": " : "", c->peer_reason);
    else
      snprintf(info.error, sizeof info.error, "connection lost (no close frame)");
    wsi_gone(c, wsi);
    gn_tr_deliver_close(c, &info);
    gn_tr_conn_maybe_free(c);
    return 0;
  }
  case LWS_CALLBACK_WSI_DESTROY:
    if (c) {
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

const struct lws_protocols gn_tr_protocols[] = {
    {"gn-notify", callback, 0, 4096, 0, NULL, 0},
    {"gn-raw", gn_tr_raw_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
