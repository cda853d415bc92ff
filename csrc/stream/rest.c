/* rest.c: notifications REST calls and their answers, and each token's request budget (see rest.h). */
#include "rest.h"
#include "gn_util.h"

#include <jansson.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <time.h>

/* The longest token a request header takes; a longer one is refused before any request. */
#define MAX_TOKEN 4000

static gn_http_req_t *call(gn_http_t *h, const gn_conf_t *conf, const char *token,
                           const char *method, const char *url, const char *body, gn_http_cb cb,
                           void *ud) {
  char auth[64 + MAX_TOKEN];
  if (!token || strlen(token) > MAX_TOKEN) return NULL;
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
  const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                           NULL};
  gn_http_opts_t o = {0};
  o.method = method;
  o.url = url;
  o.headers = headers;
  o.body = body;
  o.body_len = body ? strlen(body) : 0;
  o.timeout_ms = conf->http_timeout_ms;
  o.connect_timeout_ms = conf->connect_timeout_ms;
  o.ca_file = conf->ca_file;
  o.verify = conf->verify;
  o.proxy = &conf->proxy;
  o.max_body = 4u << 20;
  char err[200];
  gn_http_req_t *r = gn_http_start(h, &o, cb, ud, err, sizeof err);
  if (r) gn_rate_note(token); /* the stream's calls count in the token's budget (rest.h) */
  memset(auth, 0, sizeof auth); /* the token does not linger on the stack */
  return r;
}

/* Builds base + the parts into a malloc'd URL; NULL when out of memory. No fixed buffer: a long
 * api_base is not cut (a cut URL sends the token to another path). */
static char *url_of(const char *base, const char *a, const char *b, const char *c) {
  size_t n = strlen(base) + strlen(a) + strlen(b) + strlen(c) + 1;
  char *u = malloc(n);
  if (u) snprintf(u, n, "%s%s%s%s", base, a, b, c);
  return u;
}

gn_http_req_t *gn_rest_create_channel(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                      gn_http_cb cb, void *ud) {
  char *url = url_of(conf->api_base, "/api/v2/notifications/channels", "", "");
  gn_http_req_t *r = url ? call(h, conf, token, "POST", url, NULL, cb, ud) : NULL;
  free(url);
  return r;
}

int gn_rest_channel_id_ok(const char *id) {
  if (!id) return 0;
  size_t n = 0;
  for (const char *p = id; *p; p++, n++) {
    char c = *p;
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '_'))
      return 0;
  }
  return n > 0 && n <= GN_CHANNEL_ID_MAX;
}

gn_http_req_t *gn_rest_put_topics(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                  const char *channel_id, const gn_topics_t *topics,
                                  gn_http_cb cb, void *ud) {
  /* The id goes into the path: only a plain id (channel answers are checked, this is the last
   * guard before the token is sent). */
  if (!gn_rest_channel_id_ok(channel_id)) return NULL;
  char *url = url_of(conf->api_base, "/api/v2/notifications/channels/", channel_id,
                     "/subscriptions?ignoreErrors=true");
  char *body = gn_topics_body(topics);
  gn_http_req_t *r = body && url ? call(h, conf, token, "PUT", url, body, cb, ud) : NULL;
  free(body);
  free(url);
  return r;
}

gn_http_req_t *gn_rest_delete_topics(gn_http_t *h, const gn_conf_t *conf, const char *token,
                                     const char *channel_id, gn_http_cb cb, void *ud) {
  if (!gn_rest_channel_id_ok(channel_id)) return NULL;
  char *url = url_of(conf->api_base, "/api/v2/notifications/channels/", channel_id,
                     "/subscriptions");
  gn_http_req_t *r = url ? call(h, conf, token, "DELETE", url, NULL, cb, ud) : NULL;
  free(url);
  return r;
}

int gn_rest_ok(const gn_http_result_t *hr) {
  return !hr->error && (hr->status == 200 || hr->status == 201 || hr->status == 204);
}

int gn_rest_channel_answer(const gn_http_result_t *hr, char **id, char **uri) {
  *id = *uri = NULL;
  if (hr->error || (hr->status != 200 && hr->status != 201)) return -1;
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *i = json_string_value(json_object_get(j, "id"));
  const char *u = json_string_value(json_object_get(j, "connectUri"));
  int rc = i && u ? 0 : -1;
  if (rc == 0 && !gn_rest_channel_id_ok(i)) rc = -3;
  if (rc == 0) {
    *id = gn_strdup(i);
    *uri = gn_strdup(u);
    if (!*id || !*uri) rc = -2;
  }
  json_decref(j);
  if (rc == 0) return 0;
  free(*id);
  free(*uri);
  *id = *uri = NULL;
  return rc;
}

double gn_rest_channel_expires(const gn_http_result_t *hr) {
  if (hr->error || (hr->status != 200 && hr->status != 201)) return -1;
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *s = json_string_value(json_object_get(j, "expires"));
  double ms = -1;
  struct tm tm;
  memset(&tm, 0, sizeof tm);
  int n = 0;
  if (s && sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) == 6) {
    const char *p = s + n;
    double frac = 0;
    if (*p == '.') {
      char *end;
      frac = strtod(p, &end);
      p = end;
    }
    long off = 0; /* seconds east of UTC */
    int oh, om;
    if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d", &oh, &om) == 2)
      off = (*p == '-' ? -1 : 1) * (oh * 3600L + om * 60L);
    else if (*p != 'Z' && *p != 'z' && *p)
      off = LONG_MAX;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = off == LONG_MAX ? (time_t)-1 : timegm(&tm);
    if (t != (time_t)-1) ms = ((double)t - (double)off + frac) * 1000.0;
  }
  json_decref(j);
  return ms;
}

void gn_rest_failure(const gn_http_result_t *hr, const char *what, gn_rest_failure_t *f) {
  memset(f, 0, sizeof *f);
  f->retry_after_ms = -1;
  f->header_retry_after_ms = -1;
  f->why = GN_REASON_ERROR;
  f->verdict = GN_REST_RETRY;
  if (hr->error) {
    snprintf(f->error, sizeof f->error, "%s failed: %s", what, hr->error);
    f->reason = hr->proxy ? "proxy" : hr->tls_error ? "tls" : hr->timed_out ? "timeout" : "network";
    if (hr->timed_out) f->why = GN_REASON_TIMEOUT;
    return;
  }
  snprintf(f->error, sizeof f->error, "%s answered HTTP %ld", what, hr->status);
  f->status = hr->status;
  f->header_retry_after_ms = hr->retry_after_ms;
  if (hr->status == 401) f->verdict = GN_REST_AUTH;
  else if (hr->status == 403) f->verdict = GN_REST_FORBIDDEN;
  f->gone = hr->status == 404;
  f->reason = hr->status == 429 ? "rate_limited" : f->gone ? "channel_gone" : "http";
  if (hr->status == 429) f->retry_after_ms = hr->retry_after_ms;
}

void gn_rest_handshake_failure(const gn_close_info_t *info, gn_rest_failure_t *f) {
  memset(f, 0, sizeof *f);
  f->retry_after_ms = f->header_retry_after_ms = -1;
  f->status = info->http_status;
  f->verdict = f->status == 401 ? GN_REST_AUTH : f->status == 403 ? GN_REST_FORBIDDEN
                                                                  : GN_REST_RETRY;
  f->gone = f->status && f->status != 429 && f->status < 500; /* 404, 410, 400 */
  f->reason = info->proxy ? "proxy" : info->tls ? "tls" : info->timed_out ? "timeout"
              : f->status ? "handshake" : "connect";
  f->why = info->timed_out ? GN_REASON_TIMEOUT : GN_REASON_ERROR;
}

/* ------------------------------------------------------------------------------------------ */
/* per-token request windows (rest.h, the request budget) */

/* The longest window a token's times are kept for, and the most times kept (a window never
 * needs more than the largest limit; the stream's own calls beyond that are still counted by
 * pushing the oldest out). */
#define KEEP_MS (10 * 60 * 1000)
#define MAX_TIMES 4096

typedef struct tok {
  struct tok *next;
  uint64_t key;
  uint64_t *t; /* monotonic ms of its requests, oldest first */
  size_t n, cap;
  uint64_t blocked_until;
  uint64_t last;
} tok_t;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tok_t *toks;

static uint64_t key_of(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* The token's record, created when missing (NULL when out of memory); forgets records idle
 * for KEEP_MS. Under mu. */
static tok_t *find(const char *token, uint64_t now) {
  uint64_t k = key_of(token);
  tok_t **pp = &toks, *hit = NULL;
  while (*pp) {
    tok_t *t = *pp;
    if (t->key == k) hit = t;
    if (t != hit && now - t->last > KEEP_MS && t->last < now) {
      *pp = t->next;
      free(t->t);
      free(t);
      continue;
    }
    pp = &t->next;
  }
  if (!hit && (hit = calloc(1, sizeof *hit))) {
    hit->key = k;
    hit->next = toks;
    toks = hit;
  }
  if (hit) hit->last = now;
  return hit;
}

static void prune(tok_t *t, uint64_t now) {
  size_t d = 0;
  while (d < t->n && t->t[d] + KEEP_MS <= now) d++;
  if (d) memmove(t->t, t->t + d, (t->n - d) * sizeof *t->t);
  t->n -= d;
}

static void add(tok_t *t, uint64_t now) {
  if (t->n == t->cap) {
    if (t->cap >= MAX_TIMES) {
      memmove(t->t, t->t + 1, (t->n - 1) * sizeof *t->t);
      t->n--;
    } else {
      size_t c = t->cap ? t->cap * 2 : 32;
      uint64_t *n = realloc(t->t, c * sizeof *n);
      if (!n) return;
      t->t = n;
      t->cap = c;
    }
  }
  t->t[t->n++] = now;
}

/* Requests within window_ms before now, and the time the oldest of them leaves it. */
static size_t in_window(const tok_t *t, uint64_t now, long window_ms, uint64_t *first) {
  size_t i = t->n;
  while (i > 0 && t->t[i - 1] + (uint64_t)window_ms > now) i--;
  *first = i < t->n ? t->t[i] : now;
  return t->n - i;
}

void gn_rate_note(const char *token) {
  uint64_t now = gn_now_mono_ms();
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (t) {
    prune(t, now);
    add(t, now);
  }
  pthread_mutex_unlock(&mu);
}

double gn_rate_take(const char *token, int limit, long window_ms, int reserve) {
  uint64_t now = gn_now_mono_ms();
  /* the server counts a request when it arrives, later than it left: a margin keeps a
   * request that left the window here from still being inside it there */
  window_ms += window_ms / 20 < 1000 ? window_ms / 20 : 1000;
  double wait = 0;
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (!t) {
    wait = 1000; /* out of memory: later */
  } else if (t->blocked_until > now) {
    wait = (double)(t->blocked_until - now);
  } else {
    prune(t, now);
    uint64_t first;
    size_t n = in_window(t, now, window_ms, &first);
    int room = limit - reserve;
    if (room < 1) room = 1;
    if (n >= (size_t)room) {
      /* the oldest requests must leave the window until one more fits */
      size_t i = t->n - n + (n - (size_t)room);
      wait = (double)(t->t[i] + (uint64_t)window_ms - now) + 1;
    } else {
      add(t, now);
    }
  }
  pthread_mutex_unlock(&mu);
  return wait;
}

void gn_rate_block(const char *token, double delay_ms) {
  uint64_t now = gn_now_mono_ms();
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  if (t && delay_ms > 0 && now + (uint64_t)delay_ms > t->blocked_until)
    t->blocked_until = now + (uint64_t)delay_ms;
  pthread_mutex_unlock(&mu);
}

int gn_rate_count(const char *token, long window_ms) {
  uint64_t now = gn_now_mono_ms(), first;
  pthread_mutex_lock(&mu);
  tok_t *t = find(token, now);
  int n = t ? (int)in_window(t, now, window_ms, &first) : 0;
  pthread_mutex_unlock(&mu);
  return n;
}

/* The records live as long as the module: freed when it is unloaded (Lua's lua_close dlcloses
 * core.so, after which nothing would reach them any more: LeakSanitizer says so). No client is
 * running by then. */
__attribute__((destructor)) static void free_all(void) {
  pthread_mutex_lock(&mu);
  for (tok_t *t = toks, *n; t; t = n) {
    n = t->next;
    free(t->t);
    free(t);
  }
  toks = NULL;
  pthread_mutex_unlock(&mu);
}
