/* probe.c: why the proxy refused the tunnel (see transport_int.h). */
#include "transport_int.h"
#include "scrub.h"

#include <stdio.h>

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

void gn_tr_wipe(char *p, size_t n) {
  for (volatile char *v = p; v < p + n; v++) *v = 0;
}

static void probe_closed(uv_handle_t *h) {
  probe_t *p = h->data;
  gn_conn_t *c = p->c;
  gn_tr_wipe(p->req, sizeof p->req);
  free(p);
  c->probe = NULL;
  gn_tr_conn_maybe_free(c);
}

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
    gn_tr_deliver_close(c, &p->info);
  }
  uv_close((uv_handle_t *)&p->tcp, probe_closed);
}

/* Stops a probe whose answer is no longer wanted (the connection is closed or timed out). */
void gn_tr_probe_cancel(gn_conn_t *c) {
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
int gn_tr_probe_start(gn_conn_t *c, const char *ip, const gn_close_info_t *info) {
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
    gn_tr_wipe(b64, sizeof b64);
  }
  const char *lb = strchr(c->host, ':') ? "[" : "", *rb = *lb ? "]" : "";
  int n = snprintf(p->req, sizeof p->req, "CONNECT %s%s%s:%d HTTP/1.1\r\nHost: %s%s%s:%d\r\n%s\r\n",
                   lb, c->host, rb, c->port, lb, c->host, rb, c->port, auth);
  gn_tr_wipe(auth, sizeof auth);
  if (n < 0 || (size_t)n >= sizeof p->req || uv_tcp_init(c->t->loop, &p->tcp) != 0) {
    gn_tr_wipe(p->req, sizeof p->req);
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
