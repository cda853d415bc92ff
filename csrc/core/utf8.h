/* utf8.h: the project's one UTF-8 validator (RFC 3629: no overlong forms, no surrogates, at most
 * U+10FFFF; the rules jansson applies), shared by the JSON scan and fast path (jscan.c,
 * message.c), the Lua decoder (lbind_json.c), scrub.c, the topic check (topics.c) and the
 * WebSocket frame layer (wsframe.c, text messages). Inline: both call it per byte on hot paths.
 * Pure functions: any thread.
 */
#ifndef GN_UTF8_H
#define GN_UTF8_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Length of a valid UTF-8 sequence starting at s (lead byte >= 0x80, s < end), or 0. */
static inline size_t gn_utf8_seq(const unsigned char *s, const unsigned char *end) {
  unsigned c = s[0], cp;
  size_t n;
  if (c >= 0xC2 && c <= 0xDF) n = 2, cp = c & 0x1F;
  else if (c >= 0xE0 && c <= 0xEF) n = 3, cp = c & 0x0F;
  else if (c >= 0xF0 && c <= 0xF4) n = 4, cp = c & 0x07;
  else return 0;
  if ((size_t)(end - s) < n) return 0;
  for (size_t i = 1; i < n; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    cp = (cp << 6) | (s[i] & 0x3F);
  }
  if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
      (cp >= 0xD800 && cp <= 0xDFFF))
    return 0;
  return n;
}

/* 1 when the len bytes at s are valid UTF-8, else 0. ASCII is skipped eight bytes at a time. */
static inline int gn_utf8_valid(const void *s, size_t len) {
  const unsigned char *p = s, *end = p + len;
  while (p < end) {
    while ((size_t)(end - p) >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      if (w & 0x8080808080808080ull) break;
      p += 8;
    }
    if (p >= end) break;
    if (*p < 0x80) {
      p++;
      continue;
    }
    size_t n = gn_utf8_seq(p, end);
    if (!n) return 0;
    p += n;
  }
  return 1;
}

/* Length of the longest valid UTF-8 prefix of s[0..n): n when all of it is valid. */
static inline size_t gn_utf8_valid_prefix(const unsigned char *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    size_t k = gn_utf8_seq(s + i, s + n);
    if (!k) return i;
    i += k;
  }
  return n;
}

#endif
