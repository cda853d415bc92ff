/* scrub.c: server text made safe to show (see scrub.h). */
#include "scrub.h"
#include "utf8.h"

#include <string.h>
#include <strings.h>

void gn_secrets_add(gn_secrets_t *set, const char *s) {
  if (!s || !*s || set->n >= GN_SCRUB_MAX_SECRETS) return;
  set->v[set->n++] = s;
}

/* Length of the valid UTF-8 sequence at p (at most left bytes), or 0 when it is not one. */
static size_t utf8_len(const unsigned char *p, size_t left) {
  return p[0] < 0x80 ? 1 : gn_utf8_seq(p, p + left);
}

size_t gn_utf8_fit(const char *s, size_t len, size_t max) {
  if (len <= max) return len;
  size_t n = max;
  /* back over continuation bytes to the start of the character that does not fit */
  while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80) n--;
  return n;
}

/* Characters a credential after "Bearer "/"Basic " is made of (RFC 7235 token68, and the
 * characters of a JWT). */
static int cred_char(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/' || c == '=';
}

/* Length of "Bearer " / "Basic " (with any run of spaces) at s, or 0. The word must not be the
 * tail of a longer word. */
static size_t scheme_at(const char *s, size_t left, const char *start) {
  static const char *const words[] = {"bearer", "basic"};
  if (s > start && cred_char((unsigned char)s[-1])) return 0;
  for (size_t w = 0; w < 2; w++) {
    size_t wl = strlen(words[w]);
    if (left > wl && strncasecmp(s, words[w], wl) == 0 && (s[wl] == ' ' || s[wl] == '\t')) {
      size_t n = wl;
      while (n < left && (s[n] == ' ' || s[n] == '\t')) n++;
      if (n < left && cred_char((unsigned char)s[n])) return n;
    }
  }
  return 0;
}

static int put(char *dst, size_t dstlen, size_t *o, const char *p, size_t n) {
  if (*o + n + 1 > dstlen) return -1;
  memcpy(dst + *o, p, n);
  *o += n;
  return 0;
}

size_t gn_scrub(char *dst, size_t dstlen, const char *src, size_t len,
                const gn_secrets_t *secrets) {
  if (!dstlen) return 0;
  size_t o = 0, i = 0;
  dst[0] = 0;
  if (!src) return 0;
  while (i < len) {
    size_t hit = 0;
    for (size_t k = 0; secrets && k < secrets->n; k++) {
      size_t sl = strlen(secrets->v[k]);
      if (sl && sl <= len - i && sl > hit && memcmp(src + i, secrets->v[k], sl) == 0) hit = sl;
    }
    if (hit) {
      if (put(dst, dstlen, &o, GN_REDACTED, sizeof GN_REDACTED - 1)) break;
      i += hit;
      continue;
    }
    size_t sch = scheme_at(src + i, len - i, src);
    if (sch) {
      size_t word = sch;
      while (word > 0 && (src[i + word - 1] == ' ' || src[i + word - 1] == '\t')) word--;
      if (put(dst, dstlen, &o, src + i, word) || put(dst, dstlen, &o, " " GN_REDACTED,
                                                     sizeof GN_REDACTED)) break;
      i += sch;
      while (i < len && cred_char((unsigned char)src[i])) i++;
      continue;
    }
    unsigned char c = (unsigned char)src[i];
    if (c < 0x20 || c == 0x7f) {
      if (put(dst, dstlen, &o, " ", 1)) break;
      i++;
      continue;
    }
    size_t n = utf8_len((const unsigned char *)src + i, len - i);
    if (!n) {
      if (put(dst, dstlen, &o, "?", 1)) break;
      i++;
      continue;
    }
    if (put(dst, dstlen, &o, src + i, n)) break;
    i += n;
  }
  dst[o] = 0;
  return o;
}

int gn_basic_b64(const char *id, const char *secret, char *out, size_t outlen) {
  static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  size_t il = strlen(id), sl = strlen(secret), n = il + 1 + sl;
  if (4 * ((n + 2) / 3) + 1 > outlen) return -1;
  size_t o = 0;
  unsigned char b[3];
  for (size_t i = 0; i < n; i += 3) {
    size_t k;
    for (k = 0; k < 3 && i + k < n; k++) {
      size_t j = i + k;
      b[k] = (unsigned char)(j < il ? id[j] : j == il ? ':' : secret[j - il - 1]);
    }
    for (size_t r = k; r < 3; r++) b[r] = 0;
    out[o++] = al[b[0] >> 2];
    out[o++] = al[((b[0] & 3) << 4) | (b[1] >> 4)];
    out[o++] = k > 1 ? al[((b[1] & 15) << 2) | (b[2] >> 6)] : '=';
    out[o++] = k > 2 ? al[b[2] & 63] : '=';
  }
  out[o] = 0;
  memset(b, 0, sizeof b); /* the secret's last bytes do not stay on the stack */
  return 0;
}
