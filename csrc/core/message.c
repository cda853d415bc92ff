/* message.c: classification of one stream message (see message.h). */
#include "message.h"
#include "jscan.h"
#include "jsonesc.h"
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
    int c = gn_json_escape(q[1]);
    if (c < 0) return -1; /* \u and anything else: jansson's */
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
    f->scratch[used++] = (char)c;
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

/* A copy of string span v, unescaped and NUL-terminated, held by m. Returns it, or NULL (out of
 * memory). Only the short escapes reach here (\u makes the strict scan give up). */
static const char *keep(gn_msg_t *m, const gn_jspan_t *v) {
  char *d;
  if (m->used + v->n + 1 <= sizeof m->buf) {
    d = m->buf + m->used;
    m->used += v->n + 1;
  } else {
    if (m->heap) return NULL; /* topic and correlation id fit; a third long one is the message */
    if (!(m->heap = malloc(v->n + 1))) return NULL;
    d = m->heap;
  }
  if (!v->esc) { /* the usual case: the text as it is */
    memcpy(d, v->p, v->n);
    d[v->n] = 0;
    return d;
  }
  size_t o = 0;
  for (size_t i = 0; i < v->n; i++) {
    char c = v->p[i];
    if (c == '\\' && i + 1 < v->n) {
      int e = gn_json_escape((unsigned char)v->p[++i]);
      c = e < 0 ? v->p[i] : (char)e;
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
  gn_jtop_t t;
  if (json_object_get(j, "eventBody")) {
    if (gn_jscan_message(data, len, 1, &t) || !t.has_body) /* cannot be: jansson parsed it */
      return malformed(m, "invalid_json", "eventBody not found again in a parsed message");
    m->body = t.body.type == 's' ? t.body.p - 1 : t.body.p;
    m->body_len = t.body.type == 's' ? t.body.n + 2 : t.body.n;
  }
  return m->kind = GN_MSG_EVENT;
}

gn_msg_kind_t gn_msg_classify(const char *data, size_t len, int binary, gn_msg_t *m) {
  memset(m, 0, offsetof(gn_msg_t, buf));
  if (binary) return malformed(m, "binary", "binary frame where JSON text was expected");
  gn_jtop_t t;
  if (gn_jscan_message(data, len, 0, &t)) return classify_tree(data, len, m);
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
