/* http_parse.c: the /metrics listener's request head (see http_parse.h). */
#include "http_parse.h"

#include <string.h>

size_t lcli_http_head_end(const char *in, size_t len, size_t *scanned) {
  const char *end = in + len, *q = in + (*scanned < len ? *scanned : len);
  while ((q = (const char *)memchr(q, '\n', (size_t)(end - q)))) {
    if (q + 1 < end && q[1] == '\n') return (size_t)(q - in) + 2;
    if (q + 2 < end && q[1] == '\r' && q[2] == '\n') return (size_t)(q - in) + 3;
    if (q + 2 >= end) break; /* not sure yet: look at this LF again */
    q++;
  }
  *scanned = q ? (size_t)(q - in) : (len > 2 ? len - 2 : 0);
  return 0;
}

/* The length of the line at s (before end, which follows its LF) without its CR and LF; *next:
 * the byte after the LF. */
static size_t line_len(const char *s, const char *end, const char **next) {
  const char *lf = (const char *)memchr(s, '\n', (size_t)(end - s));
  *next = lf + 1;
  return (size_t)(lf - s) - (lf > s && lf[-1] == '\r');
}

static int tchar(unsigned char c) { /* RFC 9110 token characters */
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

int lcli_http_parse(const char *in, size_t hlen, lcli_req_t *req) {
  const char *end = in + hlen, *next;
  if (hlen < 2 || end[-1] != '\n') return 0;
  const unsigned char *s = (const unsigned char *)in;
  size_t ll = line_len(in, end, &next), i = 0, m = 0, p = 0;
  while (i < ll && tchar(s[i]) && m < sizeof req->method - 1) req->method[m++] = (char)s[i++];
  req->method[m] = 0;
  int ok = m > 0 && i < ll && s[i++] == ' ';
  while (ok && i < ll && s[i] > ' ' && s[i] < 0x7f && p < sizeof req->path - 1)
    req->path[p++] = (char)s[i++];
  req->path[p] = 0;
  ok = ok && p > 0 && req->path[0] == '/' && i < ll && s[i++] == ' ' && ll - i == 8 &&
       memcmp(s + i, "HTTP/1.", 7) == 0 && (s[i + 7] == '0' || s[i + 7] == '1');
  /* header lines, up to the empty one that ends the head */
  const char *blank = end - 1 - (hlen >= 2 && end[-2] == '\r');
  for (const char *q = next; ok && q < blank;) {
    const unsigned char *h = (const unsigned char *)q;
    size_t hl = line_len(q, end, &next), k = 0;
    while (k < hl && tchar(h[k])) k++;
    ok = k > 0 && k < hl && h[k] == ':';
    for (k++; ok && k < hl; k++) ok = (h[k] >= 0x20 && h[k] != 0x7f) || h[k] == '\t';
    q = next;
  }
  return ok;
}
