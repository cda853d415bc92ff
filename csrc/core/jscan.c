/* jscan.c: the validating scan of a message (see jscan.h). */
#include "jscan.h"
#include "utf8.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SCAN_DEPTH 64

typedef struct {
  const unsigned char *p, *end;
  int lenient;
} scan_t;

static void scan_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* A string after its opening quote; leaves p after the closing one. *esc is set when it holds
 * escapes. Returns 0, or -1. */
static int scan_string(scan_t *s, int *esc) {
  const unsigned char *q = s->p, *end = s->end;
  *esc = 0;
  for (;;) {
    q = gn_json_plain_run(q, end);
    if (q >= end) return -1;
    if (*q == '"') break;
    if (*q == '\\') {
      if (q + 1 >= end) return -1;
      *esc = 1;
      switch (q[1]) {
      case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
        q += 2;
        continue;
      default:
        if (!s->lenient) return -1; /* \u (surrogates, NUL) and errors: jansson's */
        q += 2;
        continue;
      }
    }
    if (*q < 0x20) {
      if (!s->lenient) return -1;
      q++;
      continue;
    }
    if (s->lenient) {
      q++;
      continue;
    }
    size_t n = gn_utf8_seq(q, end);
    if (!n) return -1;
    q += n;
  }
  s->p = q + 1;
  return 0;
}

/* A number: JSON's grammar; integers of up to 18 digits, or checked with strtoll; reals
 * without an exponent and of sane length (no overflow possible). Returns 0, or -1. */
static int scan_number(scan_t *s) {
  const unsigned char *q = s->p, *end = s->end, *digits;
  if (q < end && *q == '-') q++;
  digits = q;
  if (q >= end || *q < '0' || *q > '9') return -1;
  if (*q == '0') q++;
  else
    while (q < end && *q >= '0' && *q <= '9') q++;
  size_t nd = (size_t)(q - digits);
  int real = 0;
  if (q < end && *q == '.') {
    real = 1;
    q++;
    const unsigned char *f = q;
    while (q < end && *q >= '0' && *q <= '9') q++;
    if (q == f) return -1;
  }
  if (q < end && (*q == 'e' || *q == 'E')) {
    if (!s->lenient) return -1; /* overflow is jansson's to judge */
    q++;
    if (q < end && (*q == '+' || *q == '-')) q++;
    while (q < end && *q >= '0' && *q <= '9') q++;
  }
  if (!s->lenient) {
    if (real && nd > 300) return -1;
    if (!real && nd > 18) {
      char buf[32];
      size_t n = (size_t)(q - s->p);
      if (n >= sizeof buf) return -1;
      memcpy(buf, s->p, n);
      buf[n] = 0;
      errno = 0;
      (void)strtoll(buf, NULL, 10);
      if (errno) return -1;
    }
  }
  s->p = q;
  return 0;
}

static int scan_value(scan_t *s, int depth);

/* Skips a value of a text known to be valid, without recursion. */
static int skip_value(scan_t *s) {
  int level = 0, esc;
  do {
    scan_ws(s);
    if (s->p >= s->end) return -1;
    unsigned char c = *s->p;
    if (c == '"') {
      s->p++;
      if (scan_string(s, &esc)) return -1;
    } else if (c == '{' || c == '[') {
      level++;
      s->p++;
    } else if (c == '}' || c == ']') {
      level--;
      s->p++;
    } else if (c == ',' || c == ':') {
      s->p++;
    } else {
      while (s->p < s->end && *s->p != ',' && *s->p != '}' && *s->p != ']' && *s->p != ' ' &&
             *s->p != '\t' && *s->p != '\n' && *s->p != '\r')
        s->p++;
    }
  } while (level > 0);
  return level == 0 ? 0 : -1;
}

static int scan_word(scan_t *s, const char *w, size_t n) {
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, w, n)) return -1;
  s->p += n;
  return 0;
}

static int scan_value(scan_t *s, int depth) {
  int esc;
  if (s->lenient) return skip_value(s);
  if (depth > SCAN_DEPTH) return -1;
  scan_ws(s);
  if (s->p >= s->end) return -1;
  switch (*s->p) {
  case '{':
    s->p++;
    scan_ws(s);
    if (s->p < s->end && *s->p == '}') {
      s->p++;
      return 0;
    }
    for (;;) {
      scan_ws(s);
      if (s->p >= s->end || *s->p != '"') return -1;
      s->p++;
      if (scan_string(s, &esc)) return -1;
      scan_ws(s);
      if (s->p >= s->end || *s->p != ':') return -1;
      s->p++;
      if (scan_value(s, depth + 1)) return -1;
      scan_ws(s);
      if (s->p >= s->end) return -1;
      if (*s->p == ',') {
        s->p++;
        continue;
      }
      if (*s->p == '}') {
        s->p++;
        return 0;
      }
      return -1;
    }
  case '[':
    s->p++;
    scan_ws(s);
    if (s->p < s->end && *s->p == ']') {
      s->p++;
      return 0;
    }
    for (;;) {
      if (scan_value(s, depth + 1)) return -1;
      scan_ws(s);
      if (s->p >= s->end) return -1;
      if (*s->p == ',') {
        s->p++;
        continue;
      }
      if (*s->p == ']') {
        s->p++;
        return 0;
      }
      return -1;
    }
  case '"':
    s->p++;
    return scan_string(s, &esc);
  case 't': return scan_word(s, "true", 4);
  case 'f': return scan_word(s, "false", 5);
  case 'n': return scan_word(s, "null", 4);
  default: return scan_number(s);
  }
}

/* One value at s->p into *v (type and text). Returns 0, or -1. */
static int scan_span(scan_t *s, int depth, gn_jspan_t *v) {
  scan_ws(s);
  if (s->p >= s->end) return -1;
  const unsigned char *start = s->p;
  unsigned char c = *start;
  if (c == '"') {
    s->p++;
    if (scan_string(s, &v->esc)) return -1;
    v->p = (const char *)start + 1;
    v->n = (size_t)(s->p - start) - 2;
    v->type = 's';
    return 0;
  }
  if (scan_value(s, depth)) return -1;
  v->p = (const char *)start;
  v->n = (size_t)(s->p - start);
  v->type = c == '{' ? 'o' : (c == '-' || (c >= '0' && c <= '9')) ? 'n' : (char)c;
  v->esc = 0;
  return 0;
}

static int key_is(const unsigned char *k, size_t n, const char *w) {
  return n == strlen(w) && memcmp(k, w, n) == 0;
}

/* An object's members at s->p (after '{'), noting the keys we look for (meta: metadata's
 * members, else the message's). Returns 0, or -1. */
static int scan_members(scan_t *s, int depth, gn_jtop_t *t, int meta) {
  scan_ws(s);
  if (s->p < s->end && *s->p == '}') {
    s->p++;
    return 0;
  }
  for (;;) {
    int esc;
    scan_ws(s);
    if (s->p >= s->end || *s->p != '"') return -1;
    const unsigned char *k = ++s->p;
    if (scan_string(s, &esc)) return -1;
    size_t kn = (size_t)(s->p - k) - 1;
    scan_ws(s);
    if (s->p >= s->end || *s->p != ':') return -1;
    s->p++;
    gn_jspan_t v;
    if (scan_span(s, depth + 1, &v)) return -1;
    if (esc) {
      /* not a key we look for: the short escapes make none of their letters, and a \u escape
       * made the strict scan give up (jansson has the tree then) */
    } else if (meta) {
      if (key_is(k, kn, "CorrelationId")) t->corr = v, t->has_corr = 1;
    } else if (key_is(k, kn, "topicName")) {
      t->topic = v, t->has_topic = 1;
    } else if (key_is(k, kn, "eventBody")) {
      t->body = v, t->has_body = 1;
    } else if (key_is(k, kn, "metadata")) {
      t->meta = v, t->has_meta = 1;
    } else if (key_is(k, kn, "result")) {
      t->result = v, t->has_result = 1;
    } else if (key_is(k, kn, "message")) {
      t->message = v, t->has_message = 1;
    }
    scan_ws(s);
    if (s->p >= s->end) return -1;
    if (*s->p == ',') {
      s->p++;
      continue;
    }
    if (*s->p == '}') {
      s->p++;
      return 0;
    }
    return -1;
  }
}

/* See jscan.h. */
int gn_jscan_message(const char *data, size_t len, int lenient, gn_jtop_t *t) {
  scan_t s = {(const unsigned char *)data, (const unsigned char *)data + len, lenient};
  memset(t, 0, sizeof *t);
  scan_ws(&s);
  if (s.p >= s.end || *s.p != '{') return -1;
  s.p++;
  if (scan_members(&s, 1, t, 0)) return -1;
  scan_ws(&s);
  if (s.p != s.end) return -1;
  if (t->has_meta && t->meta.type == 'o') {
    scan_t ms = {(const unsigned char *)t->meta.p + 1, (const unsigned char *)t->meta.p + t->meta.n,
                 1};
    gn_jtop_t mt;
    memset(&mt, 0, sizeof mt);
    if (scan_members(&ms, 2, &mt, 1)) return -1;
    t->corr = mt.corr;
    t->has_corr = mt.has_corr;
  }
  return 0;
}

