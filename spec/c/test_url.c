/* connectUri reading (csrc/net/url.c gn_url_parse): what the server sends goes into lws's
 * request line and its DNS lookup, so anything but a plain ws(s) URL is refused by name. */
#include <string.h>

#include "ctest.h"
#include "transport.h"

static void test_accepted(void) {
  static const struct { const char *url, *host, *path; int port, tls; } ok[] = {
      {"wss://streaming.mypurecloud.com/channels/abc", "streaming.mypurecloud.com",
       "/channels/abc", 443, 1},
      {"ws://127.0.0.1:8080/channels/x", "127.0.0.1", "/channels/x", 8080, 0},
      {"wss://[::1]:9443/c", "::1", "/c", 9443, 1},
      {"wss://[::1]", "::1", "/", 443, 1},
      {"WSS://Host", "Host", "/", 443, 1},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    gn_url_t u;
    char err[200] = "";
    int rc = gn_url_parse(ok[i].url, &u, err, sizeof err);
    CHECK(rc == 0, "%s: %s", ok[i].url, err);
    if (rc) continue;
    CHECK(strcmp(u.host, ok[i].host) == 0, "%s: host %s", ok[i].url, u.host);
    CHECK(strcmp(u.path, ok[i].path) == 0, "%s: path %s", ok[i].url, u.path);
    CHECK(u.port == ok[i].port && u.tls == ok[i].tls, "%s: %d %d", ok[i].url, u.port, u.tls);
    gn_url_free(&u);
  }
}

static void test_refused(void) {
  static const struct { const char *url, *why; } bad[] = {
      {"https://h/c", "expected a wss:// URL"},
      {"wss:///c", "expected a host name"},
      {"wss://:443/c", "expected a host name"},
      {"wss://h:80abc/c", "expected a port from 1 to 65535"},
      {"wss://h:/c", "expected a port from 1 to 65535"},
      {"wss://h:0/c", "expected a port from 1 to 65535"},
      {"wss://h:65536/c", "expected a port from 1 to 65535"},
      {"wss://h:-1/c", "expected a port from 1 to 65535"},
      {"wss://::1:80/c", "expected an IPv6 address in brackets"},
      {"wss://[::1]x/c", "expected a port or a path after the IPv6 literal"},
      {"wss://[::1/c", "bad IPv6 literal"},
      {"wss://user@h/c", "expected a host name"},
      {"wss://h?x/c", "expected a host name"},
      {"wss://h/c d", "expected printable ASCII without spaces"},
      {"wss://h/c\r\nX-Injected: 1", "expected printable ASCII without spaces"},
      {"wss://h/c\xc3\xa9", "expected printable ASCII without spaces"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    gn_url_t u;
    char err[200] = "";
    int rc = gn_url_parse(bad[i].url, &u, err, sizeof err);
    CHECK(rc == -1, "%s accepted", bad[i].url);
    if (rc == 0) gn_url_free(&u);
    CHECK(strstr(err, bad[i].why) != NULL, "%s: %s", bad[i].url, err);
  }
  char longurl[1100] = "wss://h/";
  memset(longurl + 8, 'a', sizeof longurl - 9);
  longurl[sizeof longurl - 1] = 0;
  gn_url_t u;
  char err[200] = "";
  CHECK(gn_url_parse(longurl, &u, err, sizeof err) == -1 && strstr(err, "at most 1024 bytes"),
        "%s", err);
}

int main(void) {
  RUN(test_accepted);
  RUN(test_refused);
  CT_END();
}
