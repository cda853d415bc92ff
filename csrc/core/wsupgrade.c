/* wsupgrade.c: the WebSocket opening handshake, client side (see wsupgrade.h). */
#include "wsupgrade.h"

#include <openssl/sha.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void b64(const unsigned char *in, size_t n, char *out) {
  size_t o = 0;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)in[i] << 16 | (i + 1 < n ? (unsigned)in[i + 1] << 8 : 0) |
                 (i + 2 < n ? in[i + 2] : 0);
    out[o++] = B64[(v >> 18) & 63];
    out[o++] = B64[(v >> 12) & 63];
    out[o++] = i + 1 < n ? B64[(v >> 6) & 63] : '=';
    out[o++] = i + 2 < n ? B64[v & 63] : '=';
  }
  out[o] = 0;
}

void gn_wsu_accept(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  unsigned char md[SHA_DIGEST_LENGTH], in[128 + sizeof guid];
  size_t kl = strnlen(key, 128); /* our keys are 24 bytes */
  memcpy(in, key, kl);
  memcpy(in + kl, guid, sizeof guid - 1);
  SHA1(in, kl + sizeof guid - 1, md);
  b64(md, sizeof md, out);
}

void gn_wsu_key(const unsigned char nonce[16], char out[25]) { b64(nonce, 16, out); }

size_t gn_wsu_request(char *out, size_t outlen, const char *host, int port, int tls,
                      const char *path, const char *key) {
  const char *lb = strchr(host, ':') ? "[" : "", *rb = *lb ? "]" : "";
  char portpart[8] = "";
  if (port != (tls ? 443 : 80)) snprintf(portpart, sizeof portpart, ":%d", port);
  int n = snprintf(out, outlen,
                   "GET %s HTTP/1.1\r\nHost: %s%s%s%s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                   "\r\n",
                   path, lb, host, rb, portpart, key);
  return n > 0 && (size_t)n < outlen ? (size_t)n : 0;
}

/* 1 when the comma-separated list v (n bytes) holds token (any case), else 0. */
static int has_token(const char *v, size_t n, const char *token) {
  size_t tl = strlen(token), i = 0;
  while (i < n) {
    while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ',')) i++;
    size_t s = i;
    while (i < n && v[i] != ',') i++;
    size_t e = i;
    while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t')) e--;
    if (e - s == tl && strncasecmp(v + s, token, tl) == 0) return 1;
  }
  return 0;
}

static int refuse(char *err, size_t errlen, const char *why) {
  snprintf(err, errlen, "%s", why);
  return -1;
}

int gn_wsu_check(const char *buf, size_t len, const char *key, size_t *used, int *status,
                 char *err, size_t errlen) {
  *status = 0;
  /* the end of the header: an empty line */
  size_t hend = 0;
  for (size_t i = 0; i + 1 < len; i++) {
    if (buf[i] == '\n' && buf[i + 1] == '\n') { hend = i + 2; break; }
    if (buf[i] == '\n' && buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') {
      hend = i + 3;
      break;
    }
  }
  /* the status line can be judged before the header is complete */
  const char *nl = memchr(buf, '\n', len);
  if (len >= 12 || nl) {
    if (len < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' || buf[9] < '1' ||
        buf[9] > '9' || buf[10] < '0' || buf[10] > '9' || buf[11] < '0' || buf[11] > '9')
      return refuse(err, errlen, "handshake answer is not HTTP/1.x");
    *status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    if (*status != 101) {
      snprintf(err, errlen, "handshake refused with HTTP %d", *status);
      return -1;
    }
  }
  if (!hend) {
    if (len >= GN_WSU_MAX_ANSWER) return refuse(err, errlen, "handshake answer header too long");
    return 0;
  }
  if (hend > GN_WSU_MAX_ANSWER) return refuse(err, errlen, "handshake answer header too long");
  int upgrade = 0, connection = 0, accept_ok = 0, accept_seen = 0;
  char want[29];
  gn_wsu_accept(key, want);
  const char *p = nl + 1, *end = buf + hend;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) break;
    size_t ll = (size_t)(eol - p);
    if (ll && p[ll - 1] == '\r') ll--;
    if (ll == 0) break;
    const char *colon = memchr(p, ':', ll);
    if (!colon) return refuse(err, errlen, "handshake answer has a header line without a colon");
    size_t nlen = (size_t)(colon - p);
    const char *v = colon + 1, *ve = p + ll;
    while (v < ve && (*v == ' ' || *v == '\t')) v++;
    while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
    size_t vl = (size_t)(ve - v);
#define IS(name) (nlen == sizeof name - 1 && strncasecmp(p, name, nlen) == 0)
    if (IS("Upgrade")) {
      upgrade = vl == 9 && strncasecmp(v, "websocket", 9) == 0;
    } else if (IS("Connection")) {
      connection = has_token(v, vl, "upgrade");
    } else if (IS("Sec-WebSocket-Accept")) {
      if (accept_seen++) return refuse(err, errlen, "handshake answer has two Sec-WebSocket-Accept");
      accept_ok = vl == 28 && memcmp(v, want, 28) == 0;
    } else if (IS("Sec-WebSocket-Extensions")) {
      if (vl) return refuse(err, errlen, "handshake answer names an extension we did not ask for");
    } else if (IS("Sec-WebSocket-Protocol")) {
      if (vl) return refuse(err, errlen, "handshake answer names a subprotocol we did not ask for");
    }
#undef IS
    p = eol + 1;
  }
  if (!upgrade) return refuse(err, errlen, "handshake answer without Upgrade: websocket");
  if (!connection) return refuse(err, errlen, "handshake answer without Connection: Upgrade");
  if (!accept_seen) return refuse(err, errlen, "handshake answer without Sec-WebSocket-Accept");
  if (!accept_ok) return refuse(err, errlen, "handshake answer with a wrong Sec-WebSocket-Accept");
  *used = hend;
  return 1;
}
