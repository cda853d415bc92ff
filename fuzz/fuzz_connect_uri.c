/* Fuzzes the reading of a connectUri from the server (csrc/net/url.c gn_url_parse), done
 * before any of it reaches libwebsockets. Input: the connectUri. */
#include "fuzz_util.h"
#include "transport.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *url = fz_cstr(data, size); /* jansson hands the string NUL-terminated */
  gn_url_t u;
  char err[200] = "";
  if (gn_url_parse(url, &u, err, sizeof err) == 0) {
    FZ_ASSERT(u.host && u.path && u.path[0] == '/');
    FZ_ASSERT(u.port > 0 && u.port <= 65535);
    FZ_ASSERT(u.tls == 0 || u.tls == 1);
    FZ_ASSERT(strlen(u.host) < 300 && strlen(u.path) <= strlen(url));
    FZ_ASSERT(u.host[0] && !strpbrk(u.host, "@?#[]/"));
    for (const char *p = u.path; *p; p++) FZ_ASSERT(*p > 0x20 && *p < 0x7f);
    gn_url_free(&u);
  } else {
    FZ_ASSERT(err[0] && memchr(err, 0, sizeof err));
  }
  free(url);
  return 0;
}
