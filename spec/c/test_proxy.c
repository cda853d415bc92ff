/* The NO_PROXY rule (csrc/proxy.c gn_proxy_bypass): one rule for the REST calls and the
 * WebSocket, curl's (suffix match on label boundaries, "*", ports, a leading dot ignored). */
#include <string.h>

#include "ctest.h"
#include "proxy.h"

static void test_bypass(void) {
  static const struct { const char *list, *host; int port, want; } cases[] = {
      {NULL, "api.example.com", 443, 0},
      {"", "api.example.com", 443, 0},
      {"*", "api.example.com", 443, 1},
      {"example.com", "example.com", 443, 1},
      {"example.com", "api.example.com", 443, 1},
      {".example.com", "api.example.com", 443, 1},
      {".example.com", "example.com", 443, 1},
      {"example.com", "badexample.com", 443, 0},
      {"example.com", "example.com.evil", 443, 0},
      {"EXAMPLE.com", "Api.Example.COM", 443, 1},
      {"other.org, example.com", "api.example.com", 443, 1},
      {"other.org example.com", "api.example.com", 443, 1},
      {"other.org,,", "api.example.com", 443, 0},
      {"example.com:8443", "api.example.com", 8443, 1},
      {"example.com:8443", "api.example.com", 443, 0},
      {"127.0.0.1", "127.0.0.1", 9000, 1},
      {"127.0.0.1", "127.0.0.10", 9000, 0},
      {"::1", "::1", 443, 1},
      {"[::1]", "::1", 443, 1},
      {"[::1]:443", "[::1]", 443, 1},
      {"[::1]:444", "::1", 443, 0},
      {"localhost", "localhost.", 443, 1},
      {"*.example.com", "api.example.com", 443, 0}, /* curl takes no wildcards but "*" alone */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int got = gn_proxy_bypass(cases[i].list, cases[i].host, cases[i].port);
    CHECK(got == cases[i].want, "NO_PROXY=%s host %s:%d: got %d", cases[i].list ? cases[i].list : "(null)",
          cases[i].host, cases[i].port, got);
  }
}

static void test_for(void) {
  gn_proxy_t p = {0};
  CHECK(gn_proxy_for(&p, "h", 443) == NULL, "no host: no proxy");
  p.host = "proxy.corp";
  p.port = 3128;
  CHECK(gn_proxy_for(&p, "h", 443) == &p, "a host: the proxy");
  p.no_proxy = "h";
  CHECK(gn_proxy_for(&p, "h", 443) == NULL, "exempt host: no proxy");
  char hp[64];
  gn_proxy_hostport(&p, hp, sizeof hp);
  CHECK(strcmp(hp, "proxy.corp:3128") == 0, "%s", hp);
  p.host = "::1";
  gn_proxy_hostport(&p, hp, sizeof hp);
  CHECK(strcmp(hp, "[::1]:3128") == 0, "%s", hp);
}

int main(void) {
  RUN(test_bypass);
  RUN(test_for);
  CT_END();
}
