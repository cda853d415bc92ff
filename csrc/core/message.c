/* message.c: classification of one stream message (see message.h). */
#include "message.h"
#include "utf8.h"

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gn_msg_kind_t malformed(gn_msg_t *m, const char *reason, const char *error) {
  m->kind = GN_MSG_MALFORMED;
  m->reason = reason;
  snprintf(m->error, sizeof m->error, "%s", error);
  return m->kind;
}

/* ---- A fast path to the same jansson tree -------------------------------------------------
 * json_loadb reads one byte at a time through a stream and a string buffer; on a ~1 KB event it
 * costs about ten times what building the tree does (issue 12's profile: jansson was 39 % of the
 * service thread). fast_parse builds the same tree (json_equal, same types, same key order) for
 * the JSON events are made of: plain strings are found with memchr-like scanning and checked as
 * UTF-8 the way jansson checks them, integers with strtoll. Anything it is not sure of (a \u
 * escape, a real number, a control character, bad UTF-8, an integer out of range, nesting deeper
 * than FAST_DEPTH, trailing bytes, any syntax error) makes it return NULL, and json_loadb parses
 * the message as before: its answers and error texts are unchanged. */
#define FAST_DEPTH 64

typedef struct {
  const unsigned char *p, *end;
  char *scratch; /* for strings with escapes */
  size_t cap;
} fast_t;

static void fast_ws(fast_t *f) {
  while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
    f->p++;
}

/* Steps over c when it comes next: 1, else 0. */
static int fast_eat(fast_t *f, char c) {
  if (f->p >= f->end || *f->p != c) return 0;
  f->p++;
  return 1;
}

/* utf8_seq: the shared validator (utf8.h), jansson's rules. */
#define utf8_seq gn_utf8_seq

/* A string after its opening quote: sets *out and *len (into the input, or into f->scratch when it
 * had escapes). Returns 0, or -1 to give up. */
static int fast_string(fast_t *f, const char **out, size_t *len) {
  const unsigned char *start = f->p, *q = f->p;
  size_t used = 0;
  int escaped = 0;
  for (;;) {
    while (q < f->end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') q++;
    if (q >= f->end || *q < 0x20) return -1;
    if (*q >= 0x80) {
      size_t n = gn_utf8_seq(q, f->end);
      if (!n) return -1;
      q += n;
      continue;
    }
    if (*q == '"') break;
    /* a backslash: copy what came before into scratch, then the unescaped byte */
    if (q + 1 >= f->end) return -1;
    char c;
    switch (q[1]) {
    case '"': c = '"'; break;
    case '\\': c = '\\'; break;
    case '/': c = '/'; break;
    case 'b': c = '\b'; break;
    case 'f': c = '\f'; break;
    case 'n': c = '\n'; break;
    case 'r': c = '\r'; break;
    case 't': c = '\t'; break;
    default: return -1; /* \u and anything else: jansson's */
    }
    size_t seg = (size_t)(q - start);
    if (used + seg + 1 > f->cap) {
      size_t cap = (used + seg + 1) * 2 + 64;
      char *b = realloc(f->scratch, cap);
      if (!b) return -1;
      f->scratch = b;
      f->cap = cap;
    }
    memcpy(f->scratch + used, start, seg);
    used += seg;
    f->scratch[used++] = c;
    escaped = 1;
    q += 2;
    start = q;
  }
  if (escaped) {
    size_t seg = (size_t)(q - start);
    if (used + seg + 1 > f->cap) {
      size_t cap = used + seg + 1;
      char *b = realloc(f->scratch, cap);
      if (!b) return -1;
      f->scratch = b;
      f->cap = cap;
    }
    memcpy(f->scratch + used, start, seg);
    used += seg;
    *out = f->scratch;
    *len = used;
  } else {
    *out = (const char *)start;
    *len = (size_t)(q - start);
  }
  f->p = q + 1;
  return 0;
}

static json_t *fast_value(fast_t *f, int depth);

static json_t *fast_number(fast_t *f) {
  const unsigned char *s = f->p, *q = s;
  if (q < f->end && *q == '-') q++;
  if (q >= f->end || *q < '0' || *q > '9') return NULL;
  if (*q == '0') q++;
  else
    while (q < f->end && *q >= '0' && *q <= '9') q++;
  if (q < f->end && (*q == '.' || *q == 'e' || *q == 'E')) return NULL; /* a real: jansson's */
  size_t n = (size_t)(q - s);
  char buf[32];
  if (n >= sizeof buf) return NULL;
  memcpy(buf, s, n);
  buf[n] = 0;
  errno = 0;
  long long v = strtoll(buf, NULL, 10);
  if (errno) return NULL; /* out of range */
  f->p = q;
  return json_integer((json_int_t)v);
}

static int fast_word(fast_t *f, const char *w, size_t n) {
  if ((size_t)(f->end - f->p) < n || memcmp(f->p, w, n)) return -1;
  f->p += n;
  return 0;
}

static json_t *fast_value(fast_t *f, int depth) {
  if (depth > FAST_DEPTH) return NULL;
  fast_ws(f);
  if (f->p >= f->end) return NULL;
  switch (*f->p) {
  case '{': {
    json_t *o = json_object();
    if (!o) return NULL;
    f->p++;
    fast_ws(f);
    if (fast_eat(f, '}')) return o;
    for (;;) {
      const char *k;
      size_t kl;
      fast_ws(f);
      if (f->p >= f->end || *f->p != '"') break;
      f->p++;
      if (fast_string(f, &k, &kl)) break;
      /* the key may sit in scratch, which the value can reuse: keep a copy when it does */
      char kbuf[128], *kheap = NULL;
      if (k == f->scratch) {
        if (kl < sizeof kbuf) {
          memcpy(kbuf, k, kl);
          k = kbuf;
        } else if ((kheap = malloc(kl))) {
          memcpy(kheap, k, kl);
          k = kheap;
        } else
          break;
      }
      fast_ws(f);
      json_t *v = NULL;
      if (fast_eat(f, ':')) {
        v = fast_value(f, depth + 1);
      }
      int bad = !v || json_object_setn_new_nocheck(o, k, kl, v);
      free(kheap);
      if (bad) break;
      fast_ws(f);
      if (fast_eat(f, ',')) continue;
      if (fast_eat(f, '}')) return o;
      break;
    }
    json_decref(o);
    return NULL;
  }
  case '[': {
    json_t *a = json_array();
    if (!a) return NULL;
    f->p++;
    fast_ws(f);
    if (fast_eat(f, ']')) return a;
    for (;;) {
      json_t *v = fast_value(f, depth + 1);
      if (!v || json_array_append_new(a, v)) break;
      fast_ws(f);
      if (fast_eat(f, ',')) continue;
      if (fast_eat(f, ']')) return a;
      break;
    }
    json_decref(a);
    return NULL;
  }
  case '"': {
    const char *v;
    size_t vl;
    f->p++;
    if (fast_string(f, &v, &vl)) return NULL;
    return json_stringn_nocheck(v, vl);
  }
  case 't': return fast_word(f, "true", 4) ? NULL : json_true();
  case 'f': return fast_word(f, "false", 5) ? NULL : json_false();
  case 'n': return fast_word(f, "null", 4) ? NULL : json_null();
  default: return fast_number(f);
  }
}

/* The tree json_loadb(data, len, 0) would give, or NULL when unsure (then ask json_loadb). */
json_t *gn_msg_fast_parse(const char *data, size_t len) {
  fast_t f = {(const unsigned char *)data, (const unsigned char *)data + len, NULL, 0};
  fast_ws(&f);
  if (f.p >= f.end || (*f.p != '{' && *f.p != '[')) return NULL;
  json_t *j = fast_value(&f, 1);
  free(f.scratch);
  if (!j) return NULL;
  fast_ws(&f);
  if (f.p != f.end) {
    json_decref(j);
    return NULL;
  }
  return j;
}

/* ---- The scan: validate without a tree, note the top-level keys ------------------------------
 * strict: jansson's rules, giving up (-1) on anything not certain (then jansson decides).
 * lenient: the text is known valid (jansson parsed it); only find where values end. */
#define SCAN_DEPTH 64

typedef struct {
  const unsigned char *p, *end;
  int lenient;
} scan_t;

static void scan_ws(scan_t *s) {
  while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

/* The first byte at or after q that is not plain printable ASCII (a quote, a backslash, a control
 * character or a byte >= 0x80), or end: eight bytes at a time. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static const unsigned char *plain_run(const unsigned char *q, const unsigned char *end) {
  while (end - q >= 8) {
    uint64_t w;
    memcpy(&w, q, 8);
    uint64_t quote = w ^ (ONES * '"'), bslash = w ^ (ONES * '\\');
    uint64_t hit = (w | ((w - ONES * 0x20) & ~w) | ((quote - ONES) & ~quote) |
                    ((bslash - ONES) & ~bslash)) & HIGHS;
    if (hit) break;
    q += 8;
  }
  while (q < end && *q >= 0x20 && *q < 0x80 && *q != '"' && *q != '\\') q++;
  return q;
}

/* A string after its opening quote; leaves p after the closing one. *esc is set when it holds
 * escapes. Returns 0, or -1. */
static int scan_string(scan_t *s, int *esc) {
  const unsigned char *q = s->p, *end = s->end;
  *esc = 0;
  for (;;) {
    q = plain_run(q, end);
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

/* A span of the input: a value's text (string values: between the quotes; esc when escaped). */
typedef struct {
  const char *p;
  size_t n;
  char type; /* 's' string, 'o' object, 'n' number, other: first byte */
  int esc;
} span_t;

/* One value at s->p into *v (type and text). Returns 0, or -1. */
static int scan_span(scan_t *s, int depth, span_t *v) {
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

/* The spans of the keys we look for (the last of duplicates, as in jansson's tree). */
typedef struct {
  span_t topic, body, meta, result, message, corr;
  int has_topic, has_body, has_meta, has_result, has_message, has_corr;
} top_t;

/* An object's members at s->p (after '{'), noting the keys we look for (meta: metadata's
 * members, else the message's). Returns 0, or -1. */
static int scan_members(scan_t *s, int depth, top_t *t, int meta) {
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
    span_t v;
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

/* Scans a whole message that starts with '{' (after whitespace). Returns 0, or -1. */
static int scan_message(const char *data, size_t len, int lenient, top_t *t) {
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
    top_t mt;
    memset(&mt, 0, sizeof mt);
    if (scan_members(&ms, 2, &mt, 1)) return -1;
    t->corr = mt.corr;
    t->has_corr = mt.has_corr;
  }
  return 0;
}

/* A copy of string span v, unescaped and NUL-terminated, held by m. Returns it, or NULL (out of
 * memory). Only the short escapes reach here (\u makes the strict scan give up). */
static const char *keep(gn_msg_t *m, const span_t *v) {
  char *d;
  if (m->used + v->n + 1 <= sizeof m->buf) {
    d = m->buf + m->used;
    m->used += v->n + 1;
  } else {
    if (m->heap) return NULL; /* topic and correlation id fit; a third long one is the message */
    if (!(m->heap = malloc(v->n + 1))) return NULL;
    d = m->heap;
  }
  size_t o = 0;
  for (size_t i = 0; i < v->n; i++) {
    char c = v->p[i];
    if (c == '\\' && i + 1 < v->n) {
      switch (v->p[++i]) {
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'n': c = '\n'; break;
      case 'r': c = '\r'; break;
      case 't': c = '\t'; break;
      default: c = v->p[i]; break; /* " \ / */
      }
    }
    d[o++] = c;
  }
  d[o] = 0;
  return d;
}

/* The slow path: jansson parses (the reference), the scan only finds eventBody's span. */
static gn_msg_kind_t classify_tree(const char *data, size_t len, gn_msg_t *m) {
  json_error_t je;
  json_t *j = gn_msg_fast_parse(data, len);
  if (!j && !(j = json_loadb(data, len, 0, &je))) { /* jansson names bad UTF-8 "unable to decode
     * byte 0x.." (a bad lead or continuation byte) or "... UTF-8 ..." (a surrogate, overlong) */
    int utf8 = strstr(je.text, "decode byte") || strstr(je.text, "UTF-8");
    return malformed(m, utf8 ? "invalid_utf8" : "invalid_json", je.text);
  } /* jansson skips a NUL byte after a number or a literal ("[true\0]"); RFC 8259 has none */
  int nul = memchr(data, 0, len) != NULL, object = json_is_object(j);
  if (nul || !object) {
    json_decref(j);
    return nul ? malformed(m, "invalid_json", "a NUL byte (JSON has none)")
               : malformed(m, "not_an_object", "message is not a JSON object");
  }
  m->root = j;
  /* {"result":"404", ...} (a string in practice, a number in some SDK fixtures) */
  const char *res = json_string_value(json_object_get(j, "result"));
  if ((res && strcmp(res, "404") == 0) || json_integer_value(json_object_get(j, "result")) == 404) {
    const char *msg = json_string_value(json_object_get(j, "message"));
    m->kind = GN_MSG_CHANNEL_GONE;
    m->reason = msg ? msg : "the stream said 404: channel expired or evicted";
    return m->kind;
  }
  m->topic = json_string_value(json_object_get(j, "topicName"));
  if (!m->topic) return malformed(m, "no_topic", "message without topicName");
  if (strcmp(m->topic, "channel.metadata") == 0) return m->kind = GN_MSG_HEARTBEAT;
  if (strcmp(m->topic, "v2.system.socket_closing") == 0) return m->kind = GN_MSG_SOCKET_CLOSING;
  m->correlation_id =
      json_string_value(json_object_get(json_object_get(j, "metadata"), "CorrelationId"));
  top_t t;
  if (json_object_get(j, "eventBody")) {
    if (scan_message(data, len, 1, &t) || !t.has_body) /* cannot be: jansson parsed it */
      return malformed(m, "invalid_json", "eventBody not found again in a parsed message");
    m->body = t.body.type == 's' ? t.body.p - 1 : t.body.p;
    m->body_len = t.body.type == 's' ? t.body.n + 2 : t.body.n;
  }
  return m->kind = GN_MSG_EVENT;
}

gn_msg_kind_t gn_msg_classify(const char *data, size_t len, int binary, gn_msg_t *m) {
  memset(m, 0, offsetof(gn_msg_t, buf));
  if (binary) return malformed(m, "binary", "binary frame where JSON text was expected");
  top_t t;
  if (scan_message(data, len, 0, &t)) return classify_tree(data, len, m);
  if (t.has_result && ((t.result.type == 's' && !t.result.esc && t.result.n == 3 &&
                        memcmp(t.result.p, "404", 3) == 0) ||
                       (t.result.type == 'n' && t.result.n == 3 &&
                        memcmp(t.result.p, "404", 3) == 0))) {
    const char *msg = t.has_message && t.message.type == 's' ? keep(m, &t.message) : NULL;
    m->kind = GN_MSG_CHANNEL_GONE;
    m->reason = msg ? msg : "the stream said 404: channel expired or evicted";
    return m->kind;
  }
  if (!t.has_topic || t.topic.type != 's') return malformed(m, "no_topic", "message without topicName");
  if (!(m->topic = keep(m, &t.topic))) return classify_tree(data, len, m);
  if (strcmp(m->topic, "channel.metadata") == 0) return m->kind = GN_MSG_HEARTBEAT;
  if (strcmp(m->topic, "v2.system.socket_closing") == 0) return m->kind = GN_MSG_SOCKET_CLOSING;
  if (t.has_corr && t.corr.type == 's' && !(m->correlation_id = keep(m, &t.corr))) {
    gn_msg_clear(m);
    return classify_tree(data, len, m);
  }
  if (t.has_body) {
    m->body = t.body.type == 's' ? t.body.p - 1 : t.body.p;
    m->body_len = t.body.type == 's' ? t.body.n + 2 : t.body.n;
  }
  return m->kind = GN_MSG_EVENT;
}

void gn_msg_clear(gn_msg_t *m) {
  json_decref(m->root);
  m->root = NULL;
  free(m->heap);
  m->heap = NULL;
  m->used = 0;
}
