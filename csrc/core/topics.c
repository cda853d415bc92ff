/* topics.c: sets of topic names (see topics.h). */
#include "topics.h"
#include "gn_util.h"
#include "utf8.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* FNV-1a: names differ in their last bytes as often as in their first. */
static uint32_t name_hash(const char *t) {
  uint32_t h = 2166136261u;
  for (const unsigned char *p = (const unsigned char *)t; *p; p++) h = (h ^ *p) * 16777619u;
  return h;
}

/* The slot of t in the index, or of the empty slot where it would go. */
static size_t ix_slot(const gn_topics_t *s, const char *t) {
  size_t mask = s->ixcap - 1, p = name_hash(t) & mask;
  while (s->ix[p] && strcmp(s->v[s->ix[p] - 1], t) != 0) p = (p + 1) & mask;
  return p;
}

/* Builds the index for n names (dropped below GN_TOPICS_IX_MIN). Without memory the set goes
 * on without one: lookups are linear, as they were. */
void gn_topics_reindex(gn_topics_t *s) {
  free(s->ix);
  s->ix = NULL;
  s->ixcap = 0;
  if (s->n < GN_TOPICS_IX_MIN) return;
  size_t cap = 32;
  while (cap < 2 * (s->n + 1)) cap *= 2;
  if (!(s->ix = calloc(cap, sizeof *s->ix))) return;
  s->ixcap = cap;
  for (size_t i = 0; i < s->n; i++) s->ix[ix_slot(s, s->v[i])] = (uint32_t)(i + 1);
}

long gn_topics_index_of(const gn_topics_t *s, const char *t) {
  if (s->ix) {
    uint32_t e = s->ix[ix_slot(s, t)];
    return e ? (long)e - 1 : -1;
  }
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], t) == 0) return (long)i;
  return -1;
}

int gn_topics_has(const gn_topics_t *s, const char *t) { return gn_topics_index_of(s, t) >= 0; }

int gn_topics_push(gn_topics_t *s, const char *t) {
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    char **nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->cap = cap;
  }
  if (!(s->v[s->n] = gn_strdup(t))) return -1;
  s->n++;
  if (s->ix && 2 * (s->n + 1) <= s->ixcap) s->ix[ix_slot(s, t)] = (uint32_t)s->n;
  else if (s->n >= GN_TOPICS_IX_MIN) gn_topics_reindex(s); /* first built, or grown */
  return 0;
}

int gn_topics_add(gn_topics_t *s, const char *t) {
  if (gn_topics_has(s, t)) return 0;
  return gn_topics_push(s, t) == 0 ? 1 : -1;
}

/* Empties slot p of the index, moving later names of its run back (linear probing's deletion:
 * no name is left behind an empty slot it probed past). */
static void ix_remove(gn_topics_t *s, size_t p) {
  size_t mask = s->ixcap - 1, q = p;
  s->ix[p] = 0;
  for (;;) {
    q = (q + 1) & mask;
    if (!s->ix[q]) return;
    size_t home = name_hash(s->v[s->ix[q] - 1]) & mask;
    /* the name at q may fill p when its home is not within (p, q] cyclically */
    if ((q > p) ? (home <= p || home > q) : (home <= p && home > q)) {
      s->ix[p] = s->ix[q];
      s->ix[q] = 0;
      p = q;
    }
  }
}

int gn_topics_del(gn_topics_t *s, const char *t) {
  long i = gn_topics_index_of(s, t);
  if (i < 0) return 0;
  size_t last = s->n - 1;
  if (s->ix) {
    ix_remove(s, ix_slot(s, t));
    if ((size_t)i != last) s->ix[ix_slot(s, s->v[last])] = (uint32_t)(i + 1);
  }
  free(s->v[i]);
  s->v[i] = s->v[last];
  s->n--;
  if (s->ix && s->n < GN_TOPICS_IX_MIN / 2) gn_topics_reindex(s); /* small again: dropped */
  return 1;
}

void gn_topics_free(gn_topics_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  free(s->ix);
  memset(s, 0, sizeof *s);
}

int gn_topics_copy(gn_topics_t *dst, const gn_topics_t *src) {
  gn_topics_t n = {0};
  for (size_t i = 0; i < src->n; i++)
    if (gn_topics_push(&n, src->v[i]) < 0) { /* a set holds each name once */
      gn_topics_free(&n);
      return -1;
    }
  gn_topics_free(dst);
  *dst = n;
  return 0;
}

char *gn_topics_body(const gn_topics_t *s) {
  json_t *a = json_array();
  for (size_t i = 0; a && i < s->n; i++) {
    json_t *o = json_pack("{s:s}", "id", s->v[i]);
    if (!o || json_array_append_new(a, o)) {
      json_decref(a);
      return NULL;
    }
  }
  char *out = a ? json_dumps(a, JSON_COMPACT) : NULL;
  json_decref(a);
  return out;
}

/* 1 when name (nl bytes) is one of the members "m1&m2&..." of a composite, in any case. */
static int has_member(const char *members, const char *name, size_t nl) {
  for (const char *m = members;;) {
    size_t ml = strcspn(m, "&");
    if (ml == nl && nl && strncasecmp(m, name, nl) == 0) return 1;
    if (!m[ml]) return 0;
    m += ml + 1;
  }
}

/* 1 when every member of x is among those of y. */
static int members_within(const char *x, const char *y) {
  for (const char *m = x;;) {
    size_t ml = strcspn(m, "&");
    if (!has_member(y, m, ml)) return 0;
    if (!m[ml]) return 1;
    m += ml + 1;
  }
}

int gn_topic_same(const char *a, const char *b) {
  if (strcasecmp(a, b) == 0) return 1;
  const char *qa = strchr(a, '?'), *qb = strchr(b, '?');
  if (!qa || !qb || qa - a != qb - b || strncasecmp(a, b, (size_t)(qa - a)) != 0) return 0;
  return members_within(qa + 1, qb + 1) && members_within(qb + 1, qa + 1);
}

int gn_topic_member_of(const char *topic, const char *composite) {
  const char *q = strchr(composite, '?');
  size_t pl = q ? (size_t)(q - composite) : 0;
  if (!q || strncasecmp(topic, composite, pl) != 0 || topic[pl] != '.') return 0;
  return has_member(q + 1, topic + pl + 1, strlen(topic + pl + 1));
}

long gn_topics_find_same(const gn_topics_t *s, const char *t) {
  for (size_t i = 0; i < s->n; i++)
    if (gn_topic_same(s->v[i], t)) return (long)i;
  return -1;
}

/* ---- topic names: what may be sent ---- */
#define TOPIC_SHOW 48 /* bytes of a bad name shown in a message */

static int topic_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("._-?&:", c) != NULL);
}

/* Appends s[0..n) at out+*w as the inside of a double-quoted string: printable ASCII as is (\"
 * and \\ escaped), every other byte as \xHH, so no raw invalid or control byte reaches a
 * message. */
static void add_escaped(char *out, size_t cap, size_t *w, const char *s, size_t n) {
  for (size_t i = 0; i < n && *w + 5 < cap; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      out[(*w)++] = '\\';
      out[(*w)++] = (char)c;
    } else if (c >= 0x20 && c < 0x7F) {
      out[(*w)++] = (char)c;
    } else {
      *w += (size_t)snprintf(out + *w, cap - *w, "\\x%02x", c);
    }
  }
  out[*w] = 0;
}

/* See topics.h. */
int gn_topic_complaint(const char *s, size_t n, char *out, size_t cap) {
  char why[80];
  size_t bad = gn_utf8_valid_prefix((const unsigned char *)s, n);
  why[0] = 0;
  if (bad < n) {
    snprintf(why, sizeof why, "not valid UTF-8 at byte %zu", bad + 1);
  } else if (n < 3 || memcmp(s, "v2.", 3) != 0) {
    snprintf(why, sizeof why, "does not start with \"v2.\"");
  } else if (n < 4 || n > GN_TOPIC_MAX) {
    snprintf(why, sizeof why, "%zu bytes", n);
  } else {
    for (size_t i = 0; i < n && !why[0]; i++)
      if (!topic_char_ok((unsigned char)s[i])) {
        char c = s[i];
        int esc = (unsigned char)c < 0x20 || (unsigned char)c >= 0x7F || c == '"' || c == '\\';
        if (esc)
          snprintf(why, sizeof why, "byte %zu is \\x%02x, not allowed", i + 1, (unsigned char)c);
        else
          snprintf(why, sizeof why, "'%c' at byte %zu is not allowed", c, i + 1);
      }
  }
  if (!why[0]) return 0;
  if (cap == 0) return 1;
  int w0 = snprintf(out, cap, "expected " GN_TOPIC_EXPECTED ", got \"");
  size_t w = w0 < 0 ? 0 : (size_t)w0 >= cap ? cap - 1 : (size_t)w0;
  add_escaped(out, cap, &w, s, n > TOPIC_SHOW ? TOPIC_SHOW : n);
  snprintf(out + w, cap - w, "%s\" (%s)", n > TOPIC_SHOW ? "..." : "", why);
  return 1;
}
