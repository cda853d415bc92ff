/* vhost.c: the lws vhost a connection goes out on (its TLS context and proxy) and the one
 * protocol every connection speaks (rawws.c's RAW client; see transport_int.h).
 *
 * lws's own WebSocket client (the GN_RECEIVE=lws path) is gone: no spec ran it, and run under
 * the connection's specs it failed 16 of 297: a masked server frame taken as an event, a reserved
 * bit or an unknown opcode ending the connection as 1006 without the reason, pings between
 * fragments left unanswered, and a closed socket's end not waited for by the channel budget.
 */
#include "transport_int.h"

#include <stdio.h>

/* See transport_int.h. */
void gn_tr_wipe(char *p, size_t n) {
  for (volatile char *v = p; v < p + n; v++) *v = 0;
}

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

/* The only protocol: lws 4.3.3 reports a RAW connection's failed connect on the vhost's first
 * protocol, which is this one. */
const struct lws_protocols gn_tr_protocols[] = {
    {"gn-raw", gn_tr_raw_cb, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};
