/* The WebSocket opening handshake, client side (csrc/core/wsupgrade.c): the request written and
 * every field of the answer checked, whole and in every split. */
#include <string.h>

#include "ctest.h"
#include "wsupgrade.h"

/* RFC 6455 1.3's example key and its accept value. */
#define KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

static void test_accept_and_key(void) {
  char out[29];
  gn_wsu_accept(KEY, out);
  CHECK(strcmp(out, ACCEPT) == 0, "accept %s", out);
  unsigned char nonce[16] = "the sample nonce";
  char key[25];
  gn_wsu_key(nonce, key);
  CHECK(strcmp(key, KEY) == 0, "key %s", key);
}

static void test_request(void) {
  char out[512];
  size_t n = gn_wsu_request(out, sizeof out, "h.example", 443, 1, "/c/1", KEY);
  CHECK(n > 0 && strncmp(out, "GET /c/1 HTTP/1.1\r\nHost: h.example\r\n", 36) == 0, "%s", out);
  CHECK(strstr(out, "\r\nSec-WebSocket-Key: " KEY "\r\n") && strstr(out, "Version: 13\r\n\r\n"),
        "%s", out);
  n = gn_wsu_request(out, sizeof out, "::1", 9443, 1, "/", KEY);
  CHECK(n > 0 && strstr(out, "Host: [::1]:9443\r\n"), "%s", out);
  n = gn_wsu_request(out, sizeof out, "h", 80, 0, "/", KEY);
  CHECK(n > 0 && strstr(out, "Host: h\r\n"), "%s", out);
  CHECK(gn_wsu_request(out, 40, "h", 80, 0, "/", KEY) == 0, "too small");
}

/* Checks answer whole and cut at every point: a cut before the end needs more (0) or refuses
 * already (only from the status line); the whole gives want. */
static int check_all(const char *answer, int want, int want_status, const char *why) {
  size_t len = strlen(answer), used = 0;
  int status = -1;
  char err[160] = "";
  int rc = gn_wsu_check(answer, len, KEY, &used, &status, err, sizeof err);
  CHECK(rc == want, "%s: rc %d want %d (%s)", why, rc, want, err);
  CHECK(status == want_status, "%s: status %d want %d", why, status, want_status);
  if (want < 0) CHECK(err[0] != 0, "%s: no reason given", why);
  for (size_t cut = 0; cut < len; cut++) {
    char e2[160] = "";
    int st;
    size_t u2;
    int r = gn_wsu_check(answer, cut, KEY, &u2, &st, e2, sizeof e2);
    CHECK(r == 0 || (r == -1 && want == -1), "%s: cut %zu gave %d (%s)", why, cut, r, e2);
  }
  return (int)used;
}

static void test_answers(void) {
  const char *ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n";
  int used = check_all(ok, 1, 101, "plain");
  CHECK(used == (int)strlen(ok), "used %d of %zu", used, strlen(ok));
  /* frames right behind the header are not part of it */
  char more[512];
  snprintf(more, sizeof more, "%s\x81\x02hi", ok);
  size_t u;
  int st;
  char err[160];
  CHECK(gn_wsu_check(more, strlen(more), KEY, &u, &st, err, sizeof err) == 1 && u == strlen(ok),
        "frames after the header");
  check_all("HTTP/1.1 101 x\r\nupgrade:  WebSocket \r\nconnection: keep-alive, upgrade\r\n"
            "sec-websocket-accept:" ACCEPT "\r\nServer: x\r\n\r\n", 1, 101, "any case, lists");
  check_all("HTTP/1.1 101 x\nUpgrade: websocket\nConnection: Upgrade\n"
            "Sec-WebSocket-Accept: " ACCEPT "\n\n", 1, 101, "bare LF");
  check_all("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", -1, 403, "refused");
  check_all("HTTP/1.1 200 OK\r\n\r\n", -1, 200, "200");
  check_all("HTTP/1.1 101 x\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
            -1, 101, "no Upgrade");
  check_all("HTTP/1.1 101 x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: " ACCEPT "\r\n\r\n", -1, 101, "Upgrade: h2c");
  check_all("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: " ACCEPT "\r\n\r\n",
            -1, 101, "no Connection");
  check_all("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", -1, 101,
            "no accept");
  check_all("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n", -1, 101, "wrong accept");
  check_all("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"
            "\r\n", -1, 101, "extension not asked for");
  check_all("HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: " ACCEPT "\r\nSec-WebSocket-Protocol: chat\r\n\r\n", -1, 101,
            "subprotocol not asked for");
  check_all("SSH-2.0-OpenSSH_9.2\r\n\r\n", -1, 0, "not HTTP");
  check_all("HTTP/1.1 101 x\r\nUpgrade websocket\r\n\r\n", -1, 101, "line without colon");
}

static void test_too_long(void) {
  static char big[GN_WSU_MAX_ANSWER + 64];
  strcpy(big, "HTTP/1.1 101 x\r\nX: ");
  memset(big + strlen(big), 'a', GN_WSU_MAX_ANSWER);
  size_t u;
  int st;
  char err[160];
  CHECK(gn_wsu_check(big, strlen(big), KEY, &u, &st, err, sizeof err) == -1, "never ends");
}

int main(void) {
  RUN(test_accept_and_key);
  RUN(test_request);
  RUN(test_answers);
  RUN(test_too_long);
  CT_END();
}
