/* verdict.c: a failed connection attempt read into what its owner is told (see verdict.h).
 *
 * libwebsockets 4.1.6 reports a TLS failure only as "connect SSL err 1"; the useful reason is the
 * connection's own certificate verdict (its SSL object), then lws's log line, which is the
 * thread's latest and may be another connection's: used only on TLS connections. */
#include "verdict.h"
#include "scrub.h"

#include <stdio.h>
#include <string.h>

int gn_close_verdict(const gn_conn_failure_t *f, gn_close_info_t *info) {
  memset(info, 0, sizeof *info);
  info->code = 1006;
  const char *msg = f->msg ? f->msg : "connection error";
  const char *log = f->log ? f->log : "";
  const char *cert = f->cert ? f->cert : "";
  int hs = f->handshake_started;
  info->stage = hs ? "handshake" : "connect";
  if (strstr(msg, "imed out") || strstr(msg, "imeout")) {
    info->timed_out = 1; /* lws's own timer ("Timed out waiting SSL") */
    if (!hs) info->stage = "tls";
  } else if (f->tls && !hs &&
             (cert[0] || strstr(msg, "SSL") || strstr(msg, "ssl") || strstr(msg, "tls") ||
              strstr(log, "SSL") || strstr(log, "certificate"))) {
    info->tls = 1;
    info->stage = "tls";
  }
  if (hs && f->http_status > 0 && f->http_status != 101) info->http_status = f->http_status;
  /* lws's own words for a tunnel the proxy refused ("proxy not h1": its answer to CONNECT was
   * not 200) or dropped before it was up ("proxy conn dead", "proxy read err") */
  int tunnel = f->proxied && !hs && strncmp(msg, "proxy", 5) == 0;
  if (tunnel) {
    info->proxy = 1;
    info->tls = 0;
    info->stage = "proxy";
  }
  int rc = !tunnel && !info->tls && !info->timed_out && !info->http_status ? GN_VERDICT_RETRY : 0;
  if (tunnel) {
    snprintf(info->error, sizeof info->error, "the proxy %.100s %s the tunnel to %.100s:%d",
             f->proxy_hp, strstr(msg, "h1") ? "refused" : "dropped", f->host, f->port);
  } else if (info->tls && cert[0]) {
    snprintf(info->error, sizeof info->error, "TLS failure: %s", cert);
  } else if (info->tls && log[0]) {
    /* lws's line may quote what the server sent (names in its certificate): made safe to show
     * and cut on a character boundary */
    char line[200];
    gn_scrub(line, sizeof line, log, strlen(log), NULL);
    snprintf(info->error, sizeof info->error, "TLS failure: %s", line);
  } else if (info->http_status) {
    snprintf(info->error, sizeof info->error, "handshake refused with HTTP %d", info->http_status);
  } else if (f->proxied && !hs && !info->tls && !info->timed_out) {
    char line[120];
    gn_scrub(line, sizeof line, msg, strlen(msg), NULL);
    info->proxy = 1;
    info->stage = "proxy";
    snprintf(info->error, sizeof info->error, "cannot reach the proxy %.100s: %s", f->proxy_hp,
             line);
  } else {
    char line[200];
    gn_scrub(line, sizeof line, msg, strlen(msg), NULL);
    if (f->naddr > 1)
      snprintf(info->error, sizeof info->error, "%s (%d addresses of %s tried)", line, f->naddr,
               f->host);
    else
      snprintf(info->error, sizeof info->error, "%s", line);
  }
  return rc;
}
