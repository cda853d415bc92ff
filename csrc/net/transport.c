/* transport.c: libwebsockets client connections (see transport.h).
 *
 * Facts this file relies on (libwebsockets 4.1.6, see ARCHITECTURE.md):
 * - ci.host must never be NULL with TLS (crash); it carries the name for SNI and certificate
 *   checks while ci.address carries the resolved IP.
 * - The reason of a TLS failure reaches the callback only as "connect SSL err 1"; the useful text
 *   ("unable to get local issuer certificate") is read from the connection's own SSL object
 *   (its verify result); lws's log, captured per thread, is only the fallback for failures that
 *   are not a certificate verdict, on TLS connections only.
 * - Returning -1 from CLIENT_ESTABLISHED causes an extra CONNECTION_ERROR: we close with
 *   lws_set_timeout(..., LWS_TO_KILL_ASYNC) instead.
 * - lws may call CLIENT_WRITEABLE without being asked: writes are driven by pending flags.
 */
#include "transport.h"
#include "conf.h"
#include "gn_util.h"
#include "scrub.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdio.h>
#include <strings.h>

/* C_NEXT: a TCP connect failed and the next resolved address is about to be tried. */
enum { C_RESOLVING = 1, C_CONNECTING, C_NEXT, C_OPEN, C_DONE };

#define MAX_ADDRS 8 /* resolved addresses tried in turn, in the resolver's order */

/* TLS sessions kept for resumption, per vhost (so per CA bundle, verify setting and proxy),
 * keyed by the server name (SNI, the name the certificate was checked against) and the peer's
 * address and port: a session is offered only to the same host, port and name. */
#define SESS_SLOTS 8
typedef struct {
  char key[INET6_ADDRSTRLEN + 300];
  SSL_SESSION *sess;
} sess_slot_t;

typedef struct vhost_ent {
  struct vhost_ent *next;
  sess_slot_t sess[SESS_SLOTS];
  int sess_next;     /* the slot a new key takes (round robin) */
  char *ca_file;     /* "" for the system's bundle */
  int verify;
  char *proxy;       /* "[user:pass@]name:port" of the proxy, "" for none (wiped); lws is given
                      * the address to use before each connect */
  struct lws_vhost *vh;
  SSL_CTX *ssl_ctx;  /* ours: freed after the lws context (see transport.h) */
} vhost_ent_t;

struct gn_transport {
  uv_loop_t *loop;
  struct lws_context *lws;
  vhost_ent_t *vhosts;
  int vhost_seq;
};

typedef struct probe probe_t;

struct gn_conn {
  gn_transport_t *t;
  probe_t *probe;     /* asking the proxy why it refused the tunnel (see probe_start) */
  gn_conn_cbs_t cbs;
  void *ud;
  int state;
  int detached;      /* owner closed or aborted, or on_close delivered: no more callbacks */
  int gai_pending;
  int in_connect;    /* inside lws_client_connect_via_info or a synchronous kill: lws may
                      * close us there */
  uv_getaddrinfo_t *gai;
  uv_timer_t *timer;
  uint64_t deadline;  /* loop time when connect_timeout_ms is up, over every address */
  char addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
  int naddr, next_addr;
  struct lws *wsi;
  char *host, *path;
  int port, tls;
  char *ca_file;
  int verify;
  gn_proxy_t proxy;   /* the proxy this connection goes through (host NULL: direct) */
  char proxy_hp[280]; /* its "host:port" for messages */
  size_t max_message;
  long connect_timeout_ms, handshake_timeout_ms;
  int handshake_started;
  gn_buf_t rx;
  int rx_binary, rx_discard;
  gn_buf_t tx;        /* pending text messages, each prefixed by a 4-byte length */
  size_t tx_off;
  int close_pending;  /* send a close frame at the next writeable */
  int close_code;
  char close_reason[124];
  int peer_code;
  char peer_reason[124];
  int http_status;
  int paused;         /* reading is off (gn_conn_pause) */
  int tls_resumed;    /* the TLS session was resumed (no full handshake) */
};

/* ---- lws log capture: the only place TLS failure reasons appear ---- */
static _Thread_local char last_log[512];
static void log_emit(int level, const char *line) {
  (void)level;
  /* Keep the latest error or warning of this thread; connections read it when they fail. */
  size_t n = strlen(line);
  while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
  if (n >= sizeof last_log) n = sizeof last_log - 1;
  memcpy(last_log, line, n);
  last_log[n] = 0;
  if (getenv("GN_LWS_LOG")) fprintf(stderr, "lws: %s\n", last_log);
}
static pthread_once_t log_once = PTHREAD_ONCE_INIT;
static void log_init(void) {
  lws_set_log_level(getenv("GN_LWS_LOG") ? (LLL_ERR | LLL_WARN | LLL_NOTICE | LLL_INFO)
                                         : (LLL_ERR | LLL_WARN), log_emit);
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

static void conn_maybe_free(gn_conn_t *c) {
  if (!c->detached || c->gai_pending || c->in_connect || c->wsi || c->probe) return;
  if (c->timer) {
    uv_timer_stop(c->timer);
    uv_close((uv_handle_t *)c->timer, free_handle_cb);
    c->timer = NULL;
  }
  gn_buf_free(&c->rx);
  gn_buf_free(&c->tx);
  free(c->host);
  free(c->path);
  free(c->ca_file);
  gn_proxy_free(&c->proxy);
  free(c);
}

static void kill_wsi(gn_conn_t *c) {
  if (c->wsi) lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

/* Delivers on_close once, then the connection is detached. */
static void deliver_close(gn_conn_t *c, gn_close_info_t *info) {
  if (c->timer) uv_timer_stop(c->timer);
  int was = c->state;
  c->state = C_DONE;
  if (c->detached) return;
  c->detached = 1;
  if (!info->stage) info->stage = was == C_OPEN ? "open" : was == C_RESOLVING ? "dns" : "connect";
  c->cbs.on_close(c->ud, c, info);
}

/* ---- why the proxy refused the tunnel ----
 * lws 4.1.6 reads the proxy's answer to CONNECT and keeps it to itself ("proxy not h1"). The
 * status tells a 403 (the streaming host is not on the proxy's list) from a 407 (credentials),
 * so the refusal is asked again once, with the same request on a plain TCP connection of ours
 * to the same proxy address, and the status line read. The connection's failure is delivered
 * when that ends (answer, error, or the connection's own deadline); its owner may close it
 * meanwhile (the probe is then closed). Only after a refusal: never on the way to a success. */
struct probe {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  gn_conn_t *c;
  int done;               /* its result is in (or it was cancelled): the handle is closing */
  char req[800];          /* the CONNECT request (may carry the proxy's credentials: wiped) */
  size_t reqlen;
  char resp[64];
  size_t resplen;
  gn_close_info_t info;   /* what the connection delivers when the probe ends */
};

static void wipe(char *p, size_t n) {
  for (volatile char *v = p; v < p + n; v++) *v = 0;
}

static void probe_closed(uv_handle_t *h) {
  probe_t *p = h->data;
  gn_conn_t *c = p->c;
  wipe(p->req, sizeof p->req);
  free(p);
  c->probe = NULL;
  conn_maybe_free(c);
}

static void deliver_close(gn_conn_t *c, gn_close_info_t *info);

/* Ends the probe with the proxy's status (0: none read) and delivers the failure, unless the
 * connection was closed meanwhile. */
static void probe_end(probe_t *p, int status) {
  if (p->done) return;
  p->done = 1;
  gn_conn_t *c = p->c;
  if (!c->detached) {
    if (status >= 100 && status <= 999) {
      p->info.proxy_status = status;
      size_t n = strlen(p->info.error);
      snprintf(p->info.error + n, sizeof p->info.error - n, " with HTTP %d", status);
    }
    deliver_close(c, &p->info);
  }
  uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

/* Stops a probe whose answer is no longer wanted (the connection is closed or timed out). */
static void probe_cancel(gn_conn_t *c) {
  if (!c->probe || c->probe->done) return;
  c->probe->done = 1;
  uv_close((uv_handle_t *)&c->probe->tcp, probe_closed);
}

static int probe_status(const probe_t *p) {
  int major, minor, status;
  if (sscanf(p->resp, "HTTP/%d.%d %d", &major, &minor, &status) == 3) return status;
  return 0;
}

static void probe_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  probe_t *p = h->data;
  size_t room = sizeof p->resp - 1 - p->resplen;
  *buf = uv_buf_init(p->resp + p->resplen, (unsigned)(room ? room : 1));
}

static void probe_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  probe_t *p = s->data;
  if (n < 0) {
    probe_end(p, probe_status(p));
    return;
  }
  p->resplen += (size_t)n;
  if (p->resplen >= sizeof p->resp) p->resplen = sizeof p->resp - 1;
  p->resp[p->resplen] = 0;
  if (strstr(p->resp, "\r\n") || p->resplen >= sizeof p->resp - 1) probe_end(p, probe_status(p));
}

static void probe_written(uv_write_t *w, int status) {
  probe_t *p = w->data;
  if (status < 0 || p->done) {
    probe_end(p, 0);
    return;
  }
  if (uv_read_start((uv_stream_t *)&p->tcp, probe_alloc, probe_read) != 0) probe_end(p, 0);
}

static void probe_connected(uv_connect_t *r, int status) {
  probe_t *p = r->data;
  if (status < 0 || p->done) {
    probe_end(p, 0);
    return;
  }
  uv_buf_t b = uv_buf_init(p->req, (unsigned)p->reqlen);
  p->wreq.data = p;
  if (uv_write(&p->wreq, (uv_stream_t *)&p->tcp, &b, 1, probe_written) != 0) probe_end(p, 0);
}

/* Starts the probe for c's refused tunnel through the proxy at ip, to deliver info when it
 * ends. Returns 0, or -1 when it cannot start (info is then the caller's to deliver). */
static int probe_start(gn_conn_t *c, const char *ip, const gn_close_info_t *info) {
  struct sockaddr_storage sa;
  if (uv_ip4_addr(ip, c->proxy.port, (struct sockaddr_in *)&sa) != 0 &&
      uv_ip6_addr(ip, c->proxy.port, (struct sockaddr_in6 *)&sa) != 0)
    return -1;
  probe_t *p = calloc(1, sizeof *p);
  if (!p) return -1;
  p->c = c;
  p->info = *info;
  char auth[200] = "";
  if (c->proxy.user) {
    char b64[160];
    if (gn_basic_b64(c->proxy.user, c->proxy.pass ? c->proxy.pass : "", b64, sizeof b64) == 0)
      snprintf(auth, sizeof auth, "Proxy-Authorization: Basic %s\r\n", b64);
    wipe(b64, sizeof b64);
  }
  const char *lb = strchr(c->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
  int n = snprintf(p->req, sizeof p->req, "CONNECT %s%s%s:%d HTTP/1.1\r\nHost: %s%s%s:%d\r\n%s\r\n",
                   lb, c->host, rb, c->port, lb, c->host, rb, c->port, auth);
  wipe(auth, sizeof auth);
  if (n < 0 || (size_t)n >= sizeof p->req || uv_tcp_init(c->t->loop, &p->tcp) != 0) {
    wipe(p->req, sizeof p->req);
    free(p);
    return -1;
  }
  p->reqlen = (size_t)n;
  p->tcp.data = p;
  p->creq.data = p;
  c->probe = p;
  if (uv_tcp_connect(&p->creq, &p->tcp, (const struct sockaddr *)&sa, probe_connected) != 0) {
    p->done = 1; /* nothing delivered: the caller does */
    uv_close((uv_handle_t *)&p->tcp, probe_closed);
    return -1;
  }
  return 0;
}

static void fail(gn_conn_t *c, const char *stage, int timed_out, const char *fmt, const char *a) {
  gn_close_info_t info = {0};
  info.code = 1006;
  info.stage = stage;
  info.timed_out = timed_out;
  snprintf(info.error, sizeof info.error, fmt, a ? a : "");
  deliver_close(c, &info);
}

static void timer_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  const char *stage = c->state == C_RESOLVING ? "dns" : c->handshake_started ? "handshake" : "connect";
  char msg[96];
  snprintf(msg, sizeof msg, "%s timed out after %ld ms", stage,
           c->handshake_started ? c->handshake_timeout_ms : c->connect_timeout_ms);
  fail(c, stage, 1, "%s", msg); /* detached: lws's callbacks below deliver nothing */
  probe_cancel(c);
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
  conn_maybe_free(c);
}

static struct lws_vhost *vhost_for(gn_transport_t *t, const char *ca_file, int verify,
                                   const char *proxy, char *err, size_t errlen);
static int try_next_addr(gn_conn_t *c);

/* "[user:pass@]host:port" (IPv6 in brackets) of c's proxy at host, as lws_set_proxy takes it. */
static void proxy_spec(const gn_conn_t *c, const char *host, char *out, size_t outlen) {
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
static int start_lws(gn_conn_t *c, const char *ip) {
  char err[256] = "";
  char proxy[600] = "";
  if (c->proxy.host) proxy_spec(c, c->proxy.host, proxy, sizeof proxy);
  struct lws_vhost *vh = vhost_for(c->t, c->ca_file, c->verify, proxy, err, sizeof err);
  if (vh && c->proxy.host) {
    proxy_spec(c, ip, proxy, sizeof proxy);
    if (lws_set_proxy(vh, proxy) != 0) snprintf(err, sizeof err, "proxy: lws refused its setting");
  }
  wipe(proxy, sizeof proxy); /* may hold a password */
  if (err[0] && c->proxy.host && vh) {
    fail(c, "proxy", 0, "%s", err);
    return -1;
  }
  if (!vh) {
    gn_close_info_t info = {0};
    info.code = 1006;
    info.stage = "tls";
    info.tls = 1;
    snprintf(info.error, sizeof info.error, "%s", err);
    deliver_close(c, &info);
    return -1;
  }
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
  last_log[0] = 0;
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
      if (try_next_addr(c)) return 0;
      fail(c, "connect", 0, "connection failed: %s", last_log[0] ? last_log : "lws refused the connection");
    }
    return -1;
  }
  if (c->state == C_DONE) return -1;
  c->wsi = wsi;
  return 0;
}

static void next_addr_cb(uv_timer_t *t) {
  gn_conn_t *c = t->data;
  if (c->detached || c->state != C_NEXT) return;
  uint64_t now = uv_now(c->t->loop);
  uv_timer_start(c->timer, timer_cb, c->deadline > now ? c->deadline - now : 1, 0);
  start_lws(c, c->addrs[c->next_addr++]);
  conn_maybe_free(c);
}

/* After a TCP connect failed (before TLS or the handshake): schedules the next resolved address
 * (a host may resolve to ::1 and 127.0.0.1 with a server listening on only one). Returns 1 when
 * one is scheduled, 0 when none is left. Not inside lws's call: from a 0 ms timer. */
static int try_next_addr(gn_conn_t *c) {
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
    conn_maybe_free(c);
    return;
  }
  if (status != 0 || !res) {
    char msg[200];
    snprintf(msg, sizeof msg, "cannot resolve %s%s: %s", c->proxy.host ? "the proxy " : "",
             c->proxy.host ? c->proxy.host : c->host, uv_strerror(status));
    if (res) uv_freeaddrinfo(res);
    fail(c, c->proxy.host ? "proxy" : "dns", 0, "%s", msg);
    conn_maybe_free(c);
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
    fail(c, "connect", 0, "connectUri: %s is not a unicast address", c->host);
    conn_maybe_free(c);
    return;
  }
  start_lws(c, c->addrs[c->next_addr++]);
  conn_maybe_free(c);
}

/* The longest connectUri taken. lws 4.1.6 builds the upgrade request in a header space of a
 * few KB; a longer path failed inside lws_client_connect_via_info and leaked ~101 KB there on
 * each attempt. Genesys's are under 100 bytes. */
#define MAX_URL 1024

/* See transport.h. */
int gn_url_parse(const char *url, gn_url_t *c, char *err, size_t errlen) {
  const char *p;
  memset(c, 0, sizeof *c);
  size_t ul = strlen(url);
  if (ul > MAX_URL) {
    snprintf(err, errlen, "connectUri: expected at most %d bytes, got %zu", MAX_URL, ul);
    return -1;
  }
  for (size_t i = 0; i < ul; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
      /* a space, CR/LF or a byte lws would put into the request line as it is */
      snprintf(err, errlen, "connectUri: expected printable ASCII without spaces, got byte "
               "0x%02x at offset %zu", (unsigned char)url[i], i);
      return -1;
    }
  if (strncasecmp(url, "wss://", 6) == 0) {
    c->tls = 1;
    p = url + 6;
  } else if (strncasecmp(url, "ws://", 5) == 0) {
    c->tls = 0;
    p = url + 5;
  } else {
    snprintf(err, errlen, "connectUri: expected a wss:// URL");
    return -1;
  }
  const char *slash = strchr(p, '/');
  size_t hl = slash ? (size_t)(slash - p) : strlen(p);
  char hostport[300];
  if (hl == 0 || hl >= sizeof hostport) {
    snprintf(err, errlen, "connectUri: expected a host name");
    return -1;
  }
  memcpy(hostport, p, hl);
  hostport[hl] = 0;
  c->port = c->tls ? 443 : 80;
  char *hs = hostport, *colon;
  if (hs[0] == '[') { /* [v6]:port */
    char *rb = strchr(hs, ']');
    if (!rb) {
      snprintf(err, errlen, "connectUri: bad IPv6 literal");
      return -1;
    }
    if (rb[1] && rb[1] != ':') {
      snprintf(err, errlen, "connectUri: expected a port or a path after the IPv6 literal");
      return -1;
    }
    *rb = 0;
    colon = rb[1] == ':' ? rb + 1 : NULL;
    hs++;
  } else {
    colon = strrchr(hs, ':');
    if (colon) *colon = 0;
    if (strchr(hs, ':')) {
      snprintf(err, errlen, "connectUri: expected an IPv6 address in brackets");
      return -1;
    }
  }
  if (colon) {
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || port <= 0 || port > 65535) {
      snprintf(err, errlen, "connectUri: expected a port from 1 to 65535");
      return -1;
    }
    c->port = (int)port;
  }
  if (!*hs || strpbrk(hs, "@?#[]")) {
    snprintf(err, errlen, "connectUri: expected a host name");
    return -1;
  }
  c->host = gn_strdup(hs);
  c->path = gn_strdup(slash ? slash : "/");
  if (!c->host || !c->path) {
    snprintf(err, errlen, "out of memory");
    gn_url_free(c);
    return -1;
  }
  return 0;
}

void gn_url_free(gn_url_t *u) {
  free(u->host);
  free(u->path);
  u->host = u->path = NULL;
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
  c->connect_timeout_ms = o->connect_timeout_ms > 0 ? o->connect_timeout_ms : GN_CONNECT_TIMEOUT_MS_DEFAULT;
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
  uv_timer_start(c->timer, timer_cb, (uint64_t)c->connect_timeout_ms, 0);
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
    conn_maybe_free(c);
    return NULL;
  }
  return c;
}

int gn_conn_send_text(gn_conn_t *c, const char *text, size_t len) {
  if (!c || c->state != C_OPEN || c->detached || !c->wsi) return -1;
  uint32_t l = (uint32_t)len;
  if (gn_buf_add(&c->tx, &l, sizeof l) || gn_buf_add(&c->tx, text, len)) return -1;
  lws_callback_on_writable(c->wsi);
  return 0;
}

void gn_conn_close(gn_conn_t *c, int code, const char *reason) {
  if (!c) return;
  c->detached = 1;
  probe_cancel(c);
  if (c->timer) uv_timer_stop(c->timer);
  if (c->state == C_OPEN && c->wsi) {
    c->close_pending = 1;
    c->close_code = code;
    snprintf(c->close_reason, sizeof c->close_reason, "%s", reason ? reason : "");
    lws_callback_on_writable(c->wsi);
    /* If the peer never lets us write, lws's own timeout ends it. */
    lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 2);
  } else {
    kill_wsi(c);
  }
  c->state = C_DONE;
  conn_maybe_free(c);
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

void gn_conn_pause(gn_conn_t *c, int pause) {
  if (!c || c->state != C_OPEN || c->detached || !c->wsi || !c->timer) return;
  if (pause) {
    uv_timer_start(c->timer, pause_cb, 0, 0);
    return;
  }
  uv_timer_stop(c->timer); /* a pause not applied yet */
  if (!c->paused) return;
  c->paused = 0;
  lws_rx_flow_control(c->wsi, 1);
}

void gn_conn_abort(gn_conn_t *c) {
  if (!c) return;
  c->detached = 1;
  probe_cancel(c);
  c->state = C_DONE;
  kill_wsi(c);
  conn_maybe_free(c);
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
  switch (reason) {
  case LWS_CALLBACK_CLIENT_CONNECTION_ERROR: {
    if (!c) return 0;
    gn_close_info_t info = {0};
    info.code = 1006;
    const char *msg = in ? (const char *)in : "connection error";
    int status = (int)lws_http_client_http_response(wsi);
    info.stage = c->handshake_started ? "handshake" : "connect";
    /* This connection's own verdict on the certificate, from its SSL object: the log line
     * below is the thread's latest, which may be another connection's. */
    char verdict[160] = "";
    if (c->tls && !c->handshake_started) tls_verdict(wsi, verdict, sizeof verdict);
    if (strstr(msg, "imed out") || strstr(msg, "imeout")) {
      info.timed_out = 1; /* lws's own timer ("Timed out waiting SSL") */
      if (!c->handshake_started) info.stage = "tls";
    } else if (c->tls && (verdict[0] || strstr(msg, "SSL") || strstr(msg, "ssl") ||
                          strstr(msg, "tls") || strstr(last_log, "SSL") ||
                          strstr(last_log, "certificate"))) {
      if (!c->handshake_started) {
        info.tls = 1;
        info.stage = "tls";
      }
    }
    if (c->handshake_started && status > 0 && status != 101) info.http_status = status;
    /* lws's own words for a tunnel the proxy refused ("proxy not h1": its answer to CONNECT was
     * not 200) or dropped before it was up ("proxy conn dead", "proxy read err") */
    int tunnel = c->proxy.host && !c->handshake_started && strncmp(msg, "proxy", 5) == 0;
    if (tunnel) {
      info.proxy = 1;
      info.tls = 0;
      info.stage = "proxy";
    }
    if (!tunnel && !info.tls && !info.timed_out && !info.http_status && try_next_addr(c)) {
      wsi_gone(c, wsi); /* a refused or unreachable address: the next one is due */
      return 0;
    }
    if (tunnel) {
      snprintf(info.error, sizeof info.error, "the proxy %.100s %s the tunnel to %.100s:%d",
               c->proxy_hp, strstr(msg, "h1") ? "refused" : "dropped", c->host, c->port);
    } else if (info.tls && verdict[0]) {
      snprintf(info.error, sizeof info.error, "TLS failure: %s", verdict);
    } else if (info.tls && last_log[0]) {
      /* lws's line may quote what the server sent (names in its certificate): made safe to
       * show and cut on a character boundary */
      char line[200];
      gn_scrub(line, sizeof line, last_log, strlen(last_log), NULL);
      snprintf(info.error, sizeof info.error, "TLS failure: %s", line);
    } else if (info.http_status) {
      snprintf(info.error, sizeof info.error, "handshake refused with HTTP %d", info.http_status);
    } else if (c->proxy.host && !c->handshake_started && !info.tls && !info.timed_out) {
      char line[120];
      gn_scrub(line, sizeof line, msg, strlen(msg), NULL);
      info.proxy = 1;
      info.stage = "proxy";
      snprintf(info.error, sizeof info.error, "cannot reach the proxy %.100s: %s", c->proxy_hp,
               line);
    } else {
      char line[200];
      gn_scrub(line, sizeof line, msg, strlen(msg), NULL);
      if (c->naddr > 1)
        snprintf(info.error, sizeof info.error, "%s (%d addresses of %s tried)", line, c->naddr,
                 c->host);
      else
        snprintf(info.error, sizeof info.error, "%s", line);
    }
    wsi_gone(c, wsi);
    /* a refused tunnel: its status is asked for, then the failure delivered */
    if (tunnel && strstr(msg, "h1") && c->next_addr > 0 &&
        probe_start(c, c->addrs[c->next_addr - 1], &info) == 0)
      return 0;
    deliver_close(c, &info);
    conn_maybe_free(c);
    return 0;
  }
  case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
    /* An attempt its owner gave up never sends its upgrade (lws closes it): the server would
     * take it as the channel's connection and close the live one. */
    if (!c || c->detached) return -1;
    if (!c->handshake_started) {
      c->handshake_started = 1;
      if (c->timer && !c->detached)
        uv_timer_start(c->timer, timer_cb, (uint64_t)c->handshake_timeout_ms, 0);
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
      kill_wsi(c);
      deliver_close(c, &info);
      return 0;
    }
    if (gn_buf_add(&c->rx, in, len) != 0) {
      gn_close_info_t info = {0};
      info.code = 1009;
      info.stage = "open";
      snprintf(info.error, sizeof info.error, "out of memory reassembling a message");
      kill_wsi(c);
      deliver_close(c, &info);
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
    if (n < (int)l) kill_wsi(c);
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
    deliver_close(c, &info);
    conn_maybe_free(c);
    return 0;
  }
  case LWS_CALLBACK_WSI_DESTROY:
    if (c) {
      gn_close_info_t info = {0};
      info.code = 1006;
      info.was_open = c->state == C_OPEN;
      snprintf(info.error, sizeof info.error, "connection ended");
      wsi_gone(c, wsi);
      deliver_close(c, &info);
      conn_maybe_free(c);
    }
    return 0;
  default:
    return 0;
  }
}

static const struct lws_protocols protocols[] = {
    {"gn-notify", callback, 0, 4096, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

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
  info.protocols = protocols;
  /* Our own timers (timeouts.connect_ms, handshake_ms) govern; lws's would cut in first. */
  info.timeout_secs = 3600;
  info.gid = -1;
  info.uid = -1;
  last_log[0] = 0;
  t->lws = lws_create_context(&info);
  if (!t->lws) {
    snprintf(err, errlen, "context: libwebsockets context creation failed%s%s (is "
             "libwebsockets-evlib-uv installed?)", last_log[0] ? ": " : "", last_log);
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
  while (t->vhosts) {
    vhost_ent_t *v = t->vhosts;
    t->vhosts = v->next;
    for (int i = 0; i < SESS_SLOTS; i++) SSL_SESSION_free(v->sess[i].sess);
    SSL_CTX_free(v->ssl_ctx); /* lws is done with it: its context is destroyed */
    free(v->ca_file);
    gn_free_secret(v->proxy);
    free(v);
  }
  free(t);
}

/* ---- TLS session resumption ----
 * lws 4.1.6 has no client session cache and no hook between SSL_new and SSL_connect, so the
 * session is offered from OpenSSL's info callback at the start of the first handshake (the
 * ClientHello is built after it) and kept from the new-session callback (TLS 1.3 tickets arrive
 * after the handshake). Both run on the loop thread. Not through a proxy: the peer is then the
 * proxy, whose address says nothing of the target's port. */
static int vhost_ex_idx = -1;
static pthread_once_t vhost_ex_once = PTHREAD_ONCE_INIT;
static void vhost_ex_init(void) { vhost_ex_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL); }

/* "name|address|port" of ssl's server into key. Returns 0, or -1 when it has none. */
static int sess_key(const SSL *ssl, char *key, size_t keylen) {
  const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  int fd = SSL_get_fd(ssl);
  if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) return -1;
  char ip[INET6_ADDRSTRLEN] = "";
  int port;
  if (ss.ss_family == AF_INET) {
    inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  } else if (ss.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, ip, sizeof ip);
    port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  } else {
    return -1;
  }
  int n = snprintf(key, keylen, "%s|%s|%d", name ? name : "", ip, port);
  return n > 0 && (size_t)n < keylen ? 0 : -1;
}

static vhost_ent_t *ent_of(const SSL *ssl) {
  vhost_ent_t *v = vhost_ex_idx >= 0 ? SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), vhost_ex_idx) : NULL;
  return v && !v->proxy[0] ? v : NULL;
}

static sess_slot_t *slot_for(vhost_ent_t *v, const char *key) {
  for (int i = 0; i < SESS_SLOTS; i++)
    if (v->sess[i].sess && strcmp(v->sess[i].key, key) == 0) return &v->sess[i];
  return NULL;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess) {
  vhost_ent_t *v = ent_of(ssl);
  char key[sizeof v->sess[0].key];
  if (!v || !SSL_SESSION_is_resumable(sess) || sess_key(ssl, key, sizeof key) != 0) return 0;
  /* A copy: OpenSSL marks the connection's own session not resumable when the connection ends
   * without a close_notify (an RST, the very case a fast reconnect is for). */
  SSL_SESSION *copy = SSL_SESSION_dup(sess);
  if (!copy) return 0;
  sess_slot_t *s = slot_for(v, key);
  if (!s) {
    s = &v->sess[v->sess_next];
    v->sess_next = (v->sess_next + 1) % SESS_SLOTS;
    snprintf(s->key, sizeof s->key, "%s", key);
  }
  SSL_SESSION_free(s->sess);
  s->sess = copy;
  return 0; /* sess stays OpenSSL's */
}

static void info_cb(const SSL *cssl, int where, int ret) {
  (void)ret;
  if (!(where & SSL_CB_HANDSHAKE_START) || SSL_is_server((SSL *)cssl) || SSL_get_session(cssl))
    return;
  vhost_ent_t *v = ent_of(cssl);
  char key[sizeof v->sess[0].key];
  if (!v || sess_key(cssl, key, sizeof key) != 0) return;
  sess_slot_t *s = slot_for(v, key);
  if (s && SSL_SESSION_is_resumable(s->sess)) SSL_set_session((SSL *)cssl, s->sess);
}

/* A client vhost with a TLS context of our own (see transport.h); NULL and err when the CA
 * bundle cannot be loaded. verify = 0 accepts any certificate (tls.verify = false). */
static struct lws_vhost *vhost_new(struct lws_context *ctx, const char *name, const char *ca_file,
                                   int verify, const char *proxy, SSL_CTX **ssl_ctx, char *err,
                                   size_t errlen) {
  *ssl_ctx = NULL;
  SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
  if (!sc) {
    snprintf(err, errlen, "tls: cannot create a TLS context");
    return NULL;
  }
  SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
  int loaded = ca_file ? SSL_CTX_load_verify_locations(sc, ca_file, NULL)
                       : SSL_CTX_set_default_verify_paths(sc);
  if (loaded != 1) {
    unsigned long e = ERR_get_error();
    char detail[160];
    ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, errlen, "tls: cannot load the CA bundle %s: %s", ca_file ? ca_file : "(system)",
             detail);
    SSL_CTX_free(sc);
    return NULL;
  }
  /* Chain verification here; lws adds the host name check per connection (ci.host). */
  SSL_CTX_set_verify(sc, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
  /* Session resumption (see info_cb): the sessions are kept by us, per server. */
  SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(sc, new_session_cb);
  SSL_CTX_set_info_callback(sc, info_cb);
  /* An idle connection gives back OpenSSL's read and write buffers (about 34 KB with 4.1.6's
   * defaults) until the next record: most of an idle client's memory otherwise. */
  SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
  struct lws_context_creation_info info;
  memset(&info, 0, sizeof info);
  info.provided_client_ssl_ctx = sc;
  info.port = CONTEXT_PORT_NO_LISTEN;
  info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
  info.protocols = protocols;
  info.vhost_name = name;
  info.client_ssl_ca_filepath = ca_file;
  /* Always a proxy setting: without one lws 4.1.6 reads http_proxy from the environment (not
   * https_proxy, and without NO_PROXY), so the WebSocket and curl could take different routes.
   * ":0" is lws's way to say none (port 0). */
  info.http_proxy_address = *proxy ? proxy : ":0";
  info.timeout_secs = 3600;
  info.gid = -1;
  info.uid = -1;
  last_log[0] = 0;
  struct lws_vhost *vh = lws_create_vhost(ctx, &info);
  if (!vh) {
    snprintf(err, errlen, "tls: cannot create the client vhost%s%.200s", last_log[0] ? ": " : "",
             last_log);
    SSL_CTX_free(sc);
    return NULL;
  }
  *ssl_ctx = sc;
  return vh;
}

/* The vhost for a CA bundle (NULL: the system's) and verification setting, created on first
 * use; NULL and err when the bundle cannot be loaded. */
static struct lws_vhost *vhost_for(gn_transport_t *t, const char *ca_file, int verify,
                                   const char *proxy, char *err, size_t errlen) {
  const char *key = ca_file ? ca_file : "";
  verify = verify != 0;
  for (vhost_ent_t *v = t->vhosts; v; v = v->next)
    if (strcmp(v->ca_file, key) == 0 && v->verify == verify && strcmp(v->proxy, proxy) == 0)
      return v->vh;
  vhost_ent_t *v = calloc(1, sizeof *v);
  if (!v || !(v->ca_file = gn_strdup(key)) || !(v->proxy = gn_strdup(proxy))) {
    if (v) free(v->ca_file);
    free(v);
    snprintf(err, errlen, "tls: out of memory");
    return NULL;
  }
  char name[32];
  snprintf(name, sizeof name, "gn-client-%d", ++t->vhost_seq);
  v->vh = vhost_new(t->lws, name, *key ? key : NULL, verify, proxy, &v->ssl_ctx, err, errlen);
  if (!v->vh) {
    free(v->ca_file);
    gn_free_secret(v->proxy);
    free(v);
    return NULL;
  }
  v->verify = verify;
  pthread_once(&vhost_ex_once, vhost_ex_init);
  if (vhost_ex_idx >= 0) SSL_CTX_set_ex_data(v->ssl_ctx, vhost_ex_idx, v);
  v->next = t->vhosts;
  t->vhosts = v;
  return v->vh;
}
