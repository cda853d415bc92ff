/* transport.c: a client connection's lifecycle (see transport.h and transport_int.h for the
 * files that share the work).
 *
 * What lws does with a connection is in rawws.c; why an attempt failed in verdict.c. Facts
 * relied on here (libwebsockets 4.1.6, see ARCHITECTURE.md):
 * - lws 4.1.6 resolves names synchronously on the loop: we resolve (uv_getaddrinfo) and hand
 *   lws the address, keeping the name for SNI and certificate checks.
 * - The reason of a TLS failure is only in lws's log besides the SSL object: the log is captured
 *   here, per thread, as the fallback verdict.c uses on TLS connections only.
 */
#include "transport_int.h"
#include "conf.h"
#include "scrub.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

/* ---- lws log capture: the only place TLS failure reasons appear ---- */
_Thread_local char gn_tr_last_log[512];
static void log_emit(int level, const char *line) {
  (void)level;
  /* Keep the latest error or warning of this thread; connections read it when they fail. */
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
  if (n >= sizeof gn_tr_last_log) n = sizeof gn_tr_last_log - 1;
  memcpy(gn_tr_last_log, line, n);
  gn_tr_last_log[n] = 0;
  if (getenv("GN_LWS_LOG")) fprintf(stderr, "lws: %s\n", gn_tr_last_log);
}
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) {
  lws_set_log_level(getenv("GN_LWS_LOG") ? (LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO)
                                         : (LLL_ERR | LLL_WARN), log_emit);
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

void gn_tr_conn_maybe_free(gn_conn_t *c) {
  if (!c->detached || c->gai_pending || c->in_connect || c->wsi) return;
  if (c->gone) { /* lws has closed the socket (or none was ever made) */
    gn_conn_gone_cb gone = c->gone;
    c->gone = NULL;
    gone(c->gone_ud, c);
  }
  if (c->timer) {
    uv_timer_stop(c->timer);
    uv_close((uv_handle_t *)c->timer, free_handle_cb);
    c->timer = NULL;
  }
  gn_tr_raw_free(c);
  free(c->host);
  free(c->path);
  free(c->ca_file);
  gn_proxy_free(&c->proxy);
  free(c);
}

void gn_tr_kill_wsi(gn_conn_t *c) {
  if (c->wsi) lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Delivers on_close once, then the connection is detached. */
void gn_tr_deliver_close(gn_conn_t *c, gn_close_info_t *info) {
  if (c->timer) uv_timer_stop(c->timer);
  int was = c->state;
  c->state = C_DONE;
  if (c->detached) return;
  c->detached = 1;
  if (!info->stage) info->stage = was == C_OPEN ? "open" : was == C_RESOLVING ? "dns" : "connect";
  c->cbs.on_close(c->ud, c, info);
}

void gn_tr_fail(gn_conn_t *c, const char *stage, int timed_out, const char *fmt, const char *a) {
  gn_close_info_t info = {0};
  info.code = 1006;
  info.stage = stage;
  info.timed_out = timed_out;
  snprintf(info.error, sizeof info.error, fmt, a ? a : "");
  gn_tr_deliver_close(c, &info);
}

void gn_tr_timer_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  const char *stage = c->state == C_RESOLVING ? "dns" : c->handshake_started ? "handshake" : "connect";
  char msg[96];
  snprintf(msg, sizeof msg, "%s timed out after %ld ms", stage,
           c->handshake_started ? c->handshake_timeout_ms : c->connect_timeout_ms);
  gn_tr_fail(c, stage, 1, "%s", msg); /* detached: lws's callbacks below deliver nothing */
  /* Closed now, not by an asynchronous kill: lws 4.1.6 acts on that only at its next service
   * of timers (after I/O on some other socket) and a connecting socket's own progress replaces
   * it with lws's next timeout, so an attempt given up while nothing else ran went on to TLS
   * and the upgrade, and displaced the channel's next connection. We run in a timer of ours:
   * no wsi is being serviced, as a synchronous kill requires. c outlives the call. */
  if (c->wsi) {
    c->in_connect = 1;
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_SYNC);
    c->in_connect = 0;
  }
  gn_tr_conn_maybe_free(c);
}

static void next_addr_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  if (c->detached || c->state != C_NEXT) return;
  uint64_t now = uv_now(c->t->loop);
  uv_timer_start(c->timer, gn_tr_timer_cb, c->deadline > now ? c->deadline - now : 1, 0);
  gn_tr_start_raw(c, c->addrs[c->next_addr++]);
  gn_tr_conn_maybe_free(c);
}

/* After a TCP connect failed (before TLS or the handshake): schedules the next resolved address
 * (a host may resolve to ::1 and 127.0.0.1 with a server listening on only one). Returns 1 when
 * one is scheduled, 0 when none is left. Not inside lws's call: from a 0 ms timer. */
int gn_tr_try_next_addr(gn_conn_t *c) {
  if (c->detached || c->handshake_started || c->next_addr >= c->naddr) return 0;
  c->state = C_NEXT;
  uv_timer_start(c->timer, next_addr_cb, 0, 0);
  return 1;
}

/* Returns 1 for an address a TCP connection can go to (not multicast, broadcast or
 * unspecified), else 0. */
static int unicast(const struct sockaddr *sa) {
  if (sa->sa_family == AF_INET) {
    uint32_t a = ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
    return !IN_MULTICAST(a) && a != INADDR_BROADCAST && a != INADDR_ANY;
  }
  if (sa->sa_family == AF_INET6) {
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return !IN6_IS_ADDR_MULTICAST(a) && !IN6_IS_ADDR_UNSPECIFIED(a);
  }
  return 0;
}

static void gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gn_conn_t *c = req->data;
  c->gai_pending = 0;
  free(req);
  c->gai = NULL;
  if (c->detached || c->state != C_RESOLVING) {
    if (res) uv_freeaddrinfo(res);
    gn_tr_conn_maybe_free(c);
    return;
  }
  if (status != 0 || !res) {
    char msg[200];
    snprintf(msg, sizeof msg, "cannot resolve %s%s: %s", c->proxy.host ? "the proxy " : "",
             c->proxy.host ? c->proxy.host : c->host, uv_strerror(status));
    if (res) uv_freeaddrinfo(res);
    gn_tr_fail(c, c->proxy.host ? "proxy" : "dns", 0, "%s", msg);
    gn_tr_conn_maybe_free(c);
    return;
  }
  /* Every address, in the resolver's order (RFC 6724), without duplicates. A multicast,
   * broadcast or unspecified one is left out: a TCP connect to it fails inside lws's connect
   * call, which leaks about 480 bytes in lws 4.1.6 each time. */
  c->naddr = c->next_addr = 0;
  for (const struct addrinfo *ai = res; ai && c->naddr < MAX_ADDRS; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN] = "";
    if (!unicast(ai->ai_addr)) continue;
    if (ai->ai_family == AF_INET)
      inet_ntop(AF_INET, &((struct sockaddr_in *)ai->ai_addr)->sin_addr, ip, sizeof ip);
    else if (ai->ai_family == AF_INET6)
      inet_ntop(AF_INET6, &((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr, ip, sizeof ip);
    if (!ip[0]) continue;
    int dup = 0;
    for (int i = 0; i < c->naddr; i++) dup |= strcmp(c->addrs[i], ip) == 0;
    if (!dup) memcpy(c->addrs[c->naddr++], ip, sizeof ip);
  }
  uv_freeaddrinfo(res);
  if (c->naddr == 0) {
    gn_tr_fail(c, "connect", 0, "connectUri: %s is not a unicast address", c->host);
    gn_tr_conn_maybe_free(c);
    return;
  }
  gn_tr_start_raw(c, c->addrs[c->next_addr++]);
  gn_tr_conn_maybe_free(c);
}

static int parse_url(gn_conn_t *c, const char *url, char *err, size_t errlen) {
  gn_url_t u;
  if (gn_url_parse(url, &u, err, errlen) != 0) return -1;
  c->host = u.host;
  c->path = u.path;
  c->port = u.port;
  c->tls = u.tls;
  return 0;
}

gn_conn_t *gn_conn_open(gn_transport_t *t, const gn_conn_opts_t *o, const gn_conn_cbs_t *cbs,
                        void *ud, char *err, size_t errlen) {
  gn_conn_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->t = t;
  c->cbs = *cbs;
  c->ud = ud;
  c->verify = o->verify;
  c->max_message = o->max_message ? o->max_message : GN_MAX_MESSAGE_DEFAULT;
  c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms
                                                : GN_CONNECT_TIMEOUT_MS_DEFAULT;
  c->handshake_timeout_ms = o->handshake_timeout_ms > 0 ? o->handshake_timeout_ms
                                                    : GN_HANDSHAKE_TIMEOUT_MS_DEFAULT;
  c->peer_code = 0;
  if (parse_url(c, o->url, err, errlen) != 0 ||
      (o->ca_file && !(c->ca_file = gn_strdup(o->ca_file))) ||
      gn_proxy_copy(&c->proxy, gn_proxy_for(o->proxy, c->host, c->port)) != 0 ||
      !(c->timer = malloc(sizeof *c->timer)) || !(c->gai = calloc(1, sizeof *c->gai))) {
    if (!*err) snprintf(err, errlen, "out of memory");
    free(c->host);
    free(c->path);
    free(c->ca_file);
    gn_proxy_free(&c->proxy);
    free(c->timer);
    free(c);
    return NULL;
  }
  uv_loop_t *loop = t->loop;
  uv_timer_init(loop, c->timer);
  c->timer->data = c;
  uv_timer_start(c->timer, gn_tr_timer_cb, (uint64_t)c->connect_timeout_ms, 0);
  c->deadline = uv_now(loop) + (uint64_t)c->connect_timeout_ms;
  c->state = C_RESOLVING;
  c->gai->data = c;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  c->gai_pending = 1;
  /* Through a proxy, only the proxy's name is ours to resolve (the proxy resolves the host's). */
  if (c->proxy.host) gn_proxy_hostport(&c->proxy, c->proxy_hp, sizeof c->proxy_hp);
  const char *name = c->proxy.host ? c->proxy.host : c->host;
  int rc = uv_getaddrinfo(loop, c->gai, gai_cb, name, NULL, &hints);
  if (rc != 0) {
    c->gai_pending = 0;
    free(c->gai);
    c->gai = NULL;
    snprintf(err, errlen, "cannot resolve %s%s: %s", c->proxy.host ? "the proxy " : "", name,
             uv_strerror(rc));
    c->detached = 1;
    gn_tr_conn_maybe_free(c);
    return NULL;
  }
  return c;
}

int gn_conn_send_text(gn_conn_t *c, const char *text, size_t len) {
  if (!c || c->state != C_OPEN || c->detached || !c->wsi || !c->raw) return -1;
  return gn_tr_raw_send_text(c, text, len);
}

void gn_conn_set_cbs(gn_conn_t *c, const gn_conn_cbs_t *cbs, void *ud) {
  c->cbs = *cbs;
  c->ud = ud;
}

void gn_conn_close(gn_conn_t *c, int code, const char *reason) {
  if (!c) return;
  c->detached = 1;
  if (c->timer) uv_timer_stop(c->timer);
  if (c->raw) gn_tr_raw_close(c, code, reason);
  else gn_tr_kill_wsi(c);
  c->state = C_DONE;
  gn_tr_conn_maybe_free(c);
}

void gn_conn_close_then(gn_conn_t *c, int code, const char *reason, gn_conn_gone_cb gone,
                        void *ud) {
  if (!c) return;
  c->gone = gone;
  c->gone_ud = ud;
  gn_conn_close(c, code, reason);
}

void gn_conn_abort_then(gn_conn_t *c, gn_conn_gone_cb gone, void *ud) {
  if (!c) return;
  c->gone = gone;
  c->gone_ud = ud;
  gn_conn_abort(c);
}

void gn_conn_set_gone(gn_conn_t *c, gn_conn_gone_cb gone, void *ud) {
  if (!c) return;
  c->gone = gone;
  c->gone_ud = ud;
}

/* lws 4.1.6 must not be told to stop reading from inside its receive callback: it stashes the
 * rest of what it read and then spins on the loop thread draining and re-stashing it for as long
 * as reading stays off. From a 0 ms timer (after lws has parsed all it read) nothing is stashed:
 * lws only takes POLLIN off the socket. The connection's timer is free while it is open. */
static void pause_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  if (c->state != C_OPEN || c->detached || !c->wsi || c->paused) return;
  c->paused = 1;
  lws_rx_flow_control(c->wsi, 0);
}

int gn_conn_tls_resumed(const gn_conn_t *c) { return c && c->tls_resumed; }

/* After a pause, from a 0 ms timer (never inside the caller's own work): the frames the pause
 * left unread. */
static void resume_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  if (c->state == C_OPEN && !c->detached && !c->rx_hold) gn_tr_raw_resume(c);
}

void gn_conn_pause(gn_conn_t *c, int pause) {
  if (!c || c->state != C_OPEN || c->detached || !c->wsi || !c->timer) return;
  c->rx_hold = pause;
  if (pause) {
    uv_timer_start(c->timer, pause_cb, 0, 0);
    return;
  }
  uv_timer_stop(c->timer); /* a pause not applied yet */
  if (c->raw) uv_timer_start(c->timer, resume_cb, 0, 0);
  if (!c->paused) return;
  c->paused = 0;
  lws_rx_flow_control(c->wsi, 1);
}

void gn_conn_abort(gn_conn_t *c) {
  if (!c) return;
  c->detached = 1;
  c->state = C_DONE;
  gn_tr_kill_wsi(c);
  gn_tr_conn_maybe_free(c);
}

gn_transport_t *gn_transport_new(uv_loop_t *loop, char *err, size_t errlen) {
  pthread_once(&log_once, log_init);
  gn_transport_t *t = calloc(1, sizeof *t);
  if (!t) {
    snprintf(err, errlen, "context: out of memory");
    return NULL;
  }
  t->loop = loop;
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  void *loops[1] = {loop};
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT |
                 LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
  info.foreign_loops = loops;
  info.protocols = gn_tr_protocols;
  /* Our own timers (timeouts.connect_ms, handshake_ms) govern; lws's would cut in first. */
  info.timeout_secs = 3600;
  /* Up to 64 KB per socket read (lws's default of 4 KB made a burst cost a recv and an ACK per
   * 4 KB); rawws.c feeds the frames 4 KB at a time so a pause still stops within 4 KB. One
   * buffer per context. */
  info.pt_serv_buf_size = 65536;
  info.gid = -1;
  info.uid = -1;
  gn_tr_last_log[0] = 0;
  t->lws = lws_create_context(&info);
  if (!t->lws) {
    snprintf(err, errlen, "context: libwebsockets context creation failed%s%s (is "
             "libwebsockets-evlib-uv installed?)", gn_tr_last_log[0] ? ": " : "", gn_tr_last_log);
    free(t);
    return NULL;
  }
  return t;
}

void gn_transport_stop(gn_transport_t *t) {
  if (t && t->lws) lws_context_destroy(t->lws);
}

void gn_transport_free(gn_transport_t *t) {
  if (!t) return;
  if (t->lws) lws_context_destroy(t->lws); /* the second destroy frees lws's per-thread state */
  gn_tr_vhosts_free(t);
  free(t);
}
