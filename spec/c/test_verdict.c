/* Why a connection attempt failed (csrc/net/verdict.c gn_close_verdict): the facts the
 * connection layer gives, read into the stage, the flags and a message without secrets. */
#include <string.h>

#include "ctest.h"
#include "verdict.h"

static gn_conn_failure_t base(void) {
  gn_conn_failure_t f = {"connection refused", "", "", 1, 0, 0, 0, "proxy.example:3128",
                         "streaming.example", 443, 1};
  return f;
}

static void test_refused_address_retries(void) {
  gn_conn_failure_t f = base();
  gn_close_info_t i;
  int v = gn_close_verdict(&f, &i);
  CHECK(v == GN_VERDICT_RETRY, "verdict %d", v);
  CHECK(i.code == 1006 && strcmp(i.stage, "connect") == 0 && !i.tls && !i.proxy, "%s", i.stage);
  CHECK(strcmp(i.error, "connection refused") == 0, "%s", i.error);
  f.naddr = 3;
  gn_close_verdict(&f, &i);
  CHECK(strcmp(i.error, "connection refused (3 addresses of streaming.example tried)") == 0, "%s",
        i.error);
}

static void test_tls_reasons(void) {
  gn_conn_failure_t f = base();
  f.msg = "connect SSL err 1";
  f.cert = "hostname mismatch";
  f.log = "an unrelated line of another connection";
  gn_close_info_t i;
  int v = gn_close_verdict(&f, &i);
  CHECK(v == 0 && i.tls && strcmp(i.stage, "tls") == 0, "v %d tls %d %s", v, i.tls, i.stage);
  CHECK(strcmp(i.error, "TLS failure: hostname mismatch") == 0, "%s", i.error);
  /* no certificate verdict: the log line, scrubbed */
  f.cert = "";
  f.log = "SSL error: bad record mac\x01 Bearer abc.def";
  gn_close_verdict(&f, &i);
  CHECK(i.tls && strstr(i.error, "TLS failure: SSL error: bad record mac") == i.error, "%s",
        i.error);
  CHECK(!strstr(i.error, "abc.def") && !strchr(i.error, '\x01'), "scrubbed: %s", i.error);
  /* a plain ws connection is never a TLS failure, whatever the log says */
  f.tls = 0;
  v = gn_close_verdict(&f, &i);
  CHECK(!i.tls && v == GN_VERDICT_RETRY, "plain: tls %d v %d", i.tls, v);
}

static void test_timeouts_and_handshake(void) {
  gn_conn_failure_t f = base();
  f.msg = "Timed out waiting SSL";
  gn_close_info_t i;
  int v = gn_close_verdict(&f, &i);
  CHECK(v == 0 && i.timed_out && strcmp(i.stage, "tls") == 0, "v %d %s", v, i.stage);
  f = base();
  f.handshake_started = 1;
  f.http_status = 403;
  f.msg = "HS: ws upgrade response not 101";
  v = gn_close_verdict(&f, &i);
  CHECK(v == 0 && i.http_status == 403 && strcmp(i.stage, "handshake") == 0, "v %d", v);
  CHECK(strcmp(i.error, "handshake refused with HTTP 403") == 0, "%s", i.error);
}

static void test_proxy(void) {
  gn_conn_failure_t f = base();
  f.proxied = 1;
  f.msg = "proxy not h1";
  gn_close_info_t i;
  int v = gn_close_verdict(&f, &i);
  CHECK(v == 0 && i.proxy && strcmp(i.stage, "proxy") == 0, "v %d", v);
  CHECK(strcmp(i.error, "the proxy proxy.example:3128 refused the tunnel to "
                        "streaming.example:443") == 0, "%s", i.error);
  f.msg = "proxy conn dead";
  v = gn_close_verdict(&f, &i);
  CHECK(v == 0 && strstr(i.error, "dropped the tunnel"), "v %d %s", v, i.error);
  f.msg = "connection refused";
  v = gn_close_verdict(&f, &i);
  CHECK(v == GN_VERDICT_RETRY && i.proxy && strstr(i.error, "cannot reach the proxy "
                                                           "proxy.example:3128: connection refused"),
        "v %d %s", v, i.error);
}

int main(void) {
  RUN(test_refused_address_retries);
  RUN(test_tls_reasons);
  RUN(test_timeouts_and_handshake);
  RUN(test_proxy);
  CT_END();
}
