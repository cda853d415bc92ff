/* resync.c: the resync engine (see resync.h).
 *
 * The route of one resync: a channel reports a deaf interval (env.c calls the client, which
 * calls gn_resync_deaf) -> the topics of enabled families become pending ids per family ->
 * the timer takes the next batch of one family -> a token from the shared cache, a unit of the
 * token's budget, the spacing since the last request -> one HTTP request on the loop -> its
 * answer becomes items (resync_families.c reads it) -> the timer again, until nothing is
 * pending: health "resync" "completed".
 */
#include "resync.h"
#include "oauth.h"
#include "http.h"
#include "rest.h"
#include "gn_util.h"
#include "resync_families.h"
#include "service.h"

#include <stdio.h>
#include <strings.h>
#include <time.h>

#define MAX_FAILURES 5       /* failed requests in a row before the resync gives up */
#define DEFAULT_429_MS 3000  /* a 429 without Retry-After waits this (the official SDKs' 3 s) */
#define MAX_TOKEN 4000

struct gn_resync {
  gn_env_t *env;
  gn_env_t *henv;               /* where health goes: the env of the channel that was deaf */
  unsigned fams, forbidden;
  json_t *pending[GN_RS_COUNT]; /* id -> true */
  json_t *seen;                 /* topic (lower case) -> newest date an event carried */
  int active;
  double from_ms, to_ms;
  uint64_t started_ms, last_req_ms;
  uint64_t entities, requests, stale;
  /* the batch under way */
  int fam, page;
  char **ids;
  size_t nids;
  json_t *acc;
  gn_http_req_t *req;
  uv_timer_t *timer;
  gn_bearer_t bearer;
  gn_backoff_t bo;
  int failures;
  int running;
};

static void kick(gn_resync_t *r, double ms);

gn_resync_t *gn_resync_new(const gn_conf_t *conf, gn_env_t *env) {
  gn_resync_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->env = env;
  r->fams = conf->resync_families;
  r->fam = -1;
  int oom = !(r->seen = json_object());
  for (int f = 0; f < GN_RS_COUNT; f++) oom |= !(r->pending[f] = json_object());
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  p.base_ms = 1000;
  p.max_ms = 30000;
  char err[100];
  if (oom || gn_backoff_init(&r->bo, &p, err, sizeof err) != 0) {
    gn_resync_free(r);
    return NULL;
  }
  gn_bearer_init(&r->bearer, env, NULL, r);
  return r;
}

int gn_resync_make(gn_resync_t **out, const gn_conf_t *conf, gn_env_t *env, char *err,
                   size_t errlen) {
  *out = NULL;
  if (!conf->resync_families) return 0;
  if ((*out = gn_resync_new(conf, env))) return 0;
  snprintf(err, errlen, "out of memory");
  return -1;
}

void gn_resync_env_deaf(gn_resync_t *r, gn_env_t *env, double from_ms, double to_ms) {
  if (!r) return;
  r->henv = env; /* its state and channel number stamp the health items */
  gn_resync_deaf(r, env->topics, from_ms, to_ms);
}

static void deaf_cb(void *ud, gn_env_t *env, double from_ms, double to_ms) {
  gn_resync_env_deaf(ud, env, from_ms, to_ms);
}

static void seen_cb(void *ud, const gn_msg_t *m) { gn_resync_seen(ud, m); }

void gn_resync_wire(gn_resync_t *r, gn_env_t *env) {
  if (!r) return;
  env->deaf = deaf_cb;
  env->seen = seen_cb;
  env->resync_ud = r;
}

static void free_batch(gn_resync_t *r) {
  for (size_t i = 0; i < r->nids; i++) free(r->ids[i]);
  free(r->ids);
  r->ids = NULL;
  r->nids = 0;
  r->fam = -1;
  r->page = 1;
  json_decref(r->acc);
  r->acc = NULL;
}

void gn_resync_free(gn_resync_t *r) {
  if (!r) return;
  free_batch(r);
  for (int f = 0; f < GN_RS_COUNT; f++) json_decref(r->pending[f]);
  json_decref(r->seen);
  gn_bearer_free(&r->bearer);
  free(r);
}

#define HENV(r) ((r)->henv ? (r)->henv : (r)->env)

static void count(gn_resync_t *r, uint64_t *field, uint64_t n) {
  pthread_mutex_lock(&r->env->metrics->mu);
  *field += n;
  pthread_mutex_unlock(&r->env->metrics->mu);
}
#define COUNT(r, f, n) count((r), &(r)->env->metrics->f, (n))

static void timer_cb(uv_timer_t *t);
static void token_ready(void *ud, int purpose, gn_token_result_t *res) {
  (void)purpose;
  (void)res; /* asked again at the next tick: the cache keeps it */
  kick(ud, 0);
}

int gn_resync_start(gn_resync_t *r) {
  if (!r) return 0;
  if (!(r->timer = malloc(sizeof *r->timer))) return -1;
  uv_timer_init(gn_service_loop(r->env->svc), r->timer);
  r->timer->data = r;
  r->bearer.ready = token_ready;
  gn_bearer_start(&r->bearer);
  r->running = 1;
  return 0;
}

static void close_cb(uv_handle_t *h) { free(h); }

void gn_resync_stop(gn_resync_t *r) {
  if (!r || !r->running) return;
  r->running = 0;
  if (r->req) gn_http_cancel(r->req);
  r->req = NULL;
  uv_timer_stop(r->timer);
  uv_close((uv_handle_t *)r->timer, close_cb);
  r->timer = NULL;
  gn_bearer_stop(&r->bearer);
}

static void kick(gn_resync_t *r, double ms) {
  if (!r->running) return;
  uv_timer_start(r->timer, timer_cb, ms > 0 ? (uint64_t)ms : 0, 0);
}

static void lower(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

/* ---- what needs reading --------------------------------------------------------------- */

typedef struct {
  gn_resync_t *r;
  size_t added;
} add_t;

static void add_member(void *ud, const char *topic) {
  add_t *a = ud;
  gn_resync_t *r = a->r;
  char id[128];
  int f = gn_rs_classify(topic, id, sizeof id);
  if (f < 0 || !(r->fams & (1u << f)) || (r->forbidden & (1u << f))) return;
  if (!json_object_get(r->pending[f], id)) {
    json_object_set_new(r->pending[f], id, json_true());
    a->added++;
  }
}

void gn_resync_deaf(gn_resync_t *r, const gn_topics_t *topics, double from_ms, double to_ms) {
  if (!r->running) return;
  add_t a = {r, 0};
  for (size_t i = 0; i < topics->n; i++) gn_rs_members(topics->v[i], add_member, &a);
  size_t added = a.added;
  if (!added && !r->active) return;
  if (!r->active || from_ms < r->from_ms) r->from_ms = from_ms;
  if (!r->active || to_ms > r->to_ms) r->to_ms = to_ms;
  if (r->active) return; /* widened: the items queued from now on say so */
  r->active = 1;
  r->started_ms = gn_monotonic_ms();
  r->entities = r->requests = r->stale = 0;
  r->failures = 0;
  COUNT(r, resync_runs, 1);
  gn_env_health(HENV(r), "resync", json_pack("{s:s, s:f, s:f, s:I}", "phase", "started",
                                            "deaf_from_ms", r->from_ms, "deaf_to_ms", r->to_ms,
                                            "topics", (json_int_t)added));
  kick(r, 0);
}

void gn_resync_seen(gn_resync_t *r, const gn_msg_t *m) {
  if (!r->active || !m->topic || !m->body) return;
  char id[128];
  int f = gn_rs_classify(m->topic, id, sizeof id);
  if (f < 0 || !gn_rs_families[f].newer) return;
  /* the field's value in the body's text: "modifiedDate":"2024-..." (ISO 8601 in UTC compares
   * as text) */
  char pat[40];
  int pl = snprintf(pat, sizeof pat, "\"%s\":\"", gn_rs_families[f].newer);
  const char *b = m->body, *end = m->body + m->body_len, *p = b;
  const char *hit = NULL;
  while (p + pl < end && (p = memchr(p, '"', (size_t)(end - p))) && p + pl < end) {
    if (!memcmp(p, pat, (size_t)pl)) {
      hit = p + pl;
      break;
    }
    p++;
  }
  if (!hit) return;
  const char *q = memchr(hit, '"', (size_t)(end - hit));
  if (!q || q - hit > 40) return;
  char date[48], key[300];
  memcpy(date, hit, (size_t)(q - hit));
  date[q - hit] = 0;
  snprintf(key, sizeof key, "%s", m->topic);
  lower(key);
  const char *old = json_string_value(json_object_get(r->seen, key));
  if (!old || strcmp(date, old) > 0) json_object_set_new(r->seen, key, json_string(date));
}

/* ---- items ------------------------------------------------------------------------------ */

static void iso_ms(char *out, size_t n, double ms) {
  time_t s = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&s, &tm);
  size_t l = strftime(out, n, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(out + l, n - l, ".%03dZ", (int)((long long)ms % 1000));
}

static void emit(void *ud, int fam, const char *id, json_t *body, const char *date) {
  gn_resync_t *r = ud;
  /* The item goes to the application's thread: its body must share no value with the answer
   * this thread frees after the call (the families pick members of it, with a reference each).
   * jansson's reference counts do not order one thread's reads before another's free
   * (ThreadSanitizer saw a string freed here after the Lua thread had read it). */
  json_t *own = json_deep_copy(body);
  json_decref(body);
  if (!(body = own)) {
    gn_queue_drop(r->env->queue, 1);
    return;
  }
  char topic[300], key[300];
  gn_rs_topic(fam, id, topic, sizeof topic);
  snprintf(key, sizeof key, "%s", topic);
  lower(key);
  const char *newest = json_string_value(json_object_get(r->seen, key));
  if (date && newest && strcmp(newest, date) > 0) {
    /* an event newer than this snapshot was delivered already: it stands */
    r->stale++;
    COUNT(r, resync_stale, 1);
    json_decref(body);
    return;
  }
  const gn_rs_family_t *f = &gn_rs_families[fam];
  json_t *it = json_pack("{s:s, s:o, s:b, s:s, s:s, s:f, s:f, s:f}", "topic", topic, "body",
                         body, "resync", 1, "family", f->name, "newer_than",
                         f->newer ? f->newer : "none", "deaf_from_ms", r->from_ms,
                         "deaf_to_ms", r->to_ms, "read_ms", gn_now_wall_ms());
  if (it && (fam == GN_RS_CONV_USER || fam == GN_RS_CONV_QUEUE)) {
    /* the details query's interval ("from/to" in ISO 8601) for what ended inside the gap */
    char a[40], b[40], iv[90];
    iso_ms(a, sizeof a, r->from_ms);
    iso_ms(b, sizeof b, r->to_ms);
    snprintf(iv, sizeof iv, "%s/%s", a, b);
    json_object_set_new(json_object_get(it, "body"), "ended",
                        json_pack("{s:f, s:f, s:s, s:s}", "from_ms", r->from_ms, "to_ms",
                                  r->to_ms, "interval", iv, "query",
                                  "POST /api/v2/analytics/conversations/details/query"));
  }
  if (!it) {
    gn_queue_drop(r->env->queue, 1);
    return;
  }
  /* raw: the item as a stream message would carry it ({topicName, version, eventBody} plus a
   * "resync" member), for whatever passes events on as text (a CLI line, a Redis stream, the
   * nginx ring) */
  json_t *mark = json_pack("{s:s, s:s, s:O, s:O, s:O}", "family", f->name, "newer_than",
                           f->newer ? f->newer : "none", "deaf_from_ms",
                           json_object_get(it, "deaf_from_ms"), "deaf_to_ms",
                           json_object_get(it, "deaf_to_ms"), "read_ms",
                           json_object_get(it, "read_ms"));
  json_t *msg = json_pack("{s:s, s:s, s:O, s:o}", "topicName", topic, "version", "2",
                          "eventBody", json_object_get(it, "body"), "resync", mark);
  char *raw = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
  json_decref(msg);
  if (raw) json_object_set_new(it, "raw", json_string(raw));
  json_object_set(it, "received_ms", json_object_get(it, "read_ms"));
  /* a fleet holder (lease.h): the item goes through the fleet's stream as events do (the tap
   * appends its raw text); a tap that withholds it (not the holder any more) drops it */
  gn_env_t *he = HENV(r);
  int keep = 1;
  if (he->tap && he->tap->event && raw) {
    gn_msg_t m;
    if (gn_msg_classify(raw, strlen(raw), 0, &m) == GN_MSG_EVENT)
      keep = he->tap->event(he->tap->ud, &m, "", raw, strlen(raw));
    gn_msg_clear(&m);
  }
  free(raw);
  if (!keep) {
    json_decref(it);
    return;
  }
  r->entities++;
  COUNT(r, resync_entities, 1);
  gn_item_t *item = calloc(1, sizeof *item);
  if (!item) {
    json_decref(it);
    gn_queue_drop(r->env->queue, 1);
    return;
  }
  item->type = GN_ITEM_RESYNC;
  item->data = it;
  item->cost = sizeof *item + 512;
  gn_queue_push(r->env->queue, item);
}

static void finish(gn_resync_t *r, const char *phase, const char *why) {
  double ms = (double)(gn_monotonic_ms() - r->started_ms);
  json_t *f = json_pack("{s:s, s:I, s:I, s:I, s:f, s:f, s:f}", "phase", phase, "entities",
                        (json_int_t)r->entities, "requests", (json_int_t)r->requests, "stale",
                        (json_int_t)r->stale, "ms", ms, "deaf_from_ms", r->from_ms,
                        "deaf_to_ms", r->to_ms);
  if (why && f) json_object_set_new(f, "reason", json_string(why));
  if (!strcmp(phase, "failed")) {
    COUNT(r, resync_failed, 1);
    for (int k = 0; k < GN_RS_COUNT; k++) json_object_clear(r->pending[k]);
  }
  gn_env_health(HENV(r), "resync", f);
  free_batch(r);
  json_object_clear(r->seen);
  r->active = 0;
}

/* ---- requests --------------------------------------------------------------------------- */

/* Takes the next batch: up to the family's batch of pending ids. Returns 0, -1 when none. */
static int next_batch(gn_resync_t *r) {
  for (int f = 0; f < GN_RS_COUNT; f++) {
    size_t n = json_object_size(r->pending[f]);
    if (!n) continue;
    size_t take = n < (size_t)gn_rs_families[f].batch ? n : (size_t)gn_rs_families[f].batch;
    if (!(r->ids = calloc(take, sizeof *r->ids))) return -1;
    void *it = json_object_iter(r->pending[f]);
    while (it && r->nids < take) {
      r->ids[r->nids++] = gn_strdup(json_object_iter_key(it));
      it = json_object_iter_next(r->pending[f], it);
    }
    for (size_t i = 0; i < r->nids; i++)
      if (r->ids[i]) json_object_del(r->pending[f], r->ids[i]);
    r->fam = f;
    r->page = 1;
    return 0;
  }
  return -1;
}

static void forbid(gn_resync_t *r, int fam, const gn_http_result_t *hr) {
  const gn_rs_family_t *f = &gn_rs_families[fam];
  for (int k = 0; k < GN_RS_COUNT; k++)
    if (!strcmp(gn_rs_families[k].name, f->name)) {
      r->forbidden |= 1u << k;
      json_object_clear(r->pending[k]);
    }
  COUNT(r, resync_forbidden, 1);
  (void)hr;
  gn_env_health(HENV(r), "resync", json_pack("{s:s, s:s, s:s, s:i}", "phase", "forbidden",
                                            "family", f->name, "permission",
                                            f->permission ? f->permission : "unknown",
                                            "status", 403));
  free_batch(r);
}

static void answered(void *ud, const gn_http_result_t *hr) {
  gn_resync_t *r = ud;
  r->req = NULL;
  r->requests++;
  COUNT(r, resync_requests, 1);
  uint64_t now = gn_monotonic_ms();
  r->last_req_ms = now;
  const gn_conf_t *c = r->env->conf;
  if (!hr->error && hr->status == 200) {
    int more = 0;
    if (gn_rs_answer(r->fam, hr->body, hr->body_len, r->ids, r->nids, r->page, &r->acc, &more,
                     emit, r) == 0) {
      r->failures = 0;
      gn_backoff_succeeded(&r->bo, now);
      if (more) r->page = more;
      else free_batch(r);
      kick(r, (double)c->resync_spacing_ms);
      return;
    }
  } else if (!hr->error && hr->status == 429) {
    double wait = hr->retry_after_ms >= 0 ? hr->retry_after_ms : DEFAULT_429_MS;
    gn_rate_block(r->bearer.token ? r->bearer.token : "", wait);
    COUNT(r, resync_rate_limited, 1);
    gn_env_health(HENV(r), "resync", json_pack("{s:s, s:f, s:s}", "phase", "rate_limited",
                                              "retry_after_ms", wait, "family",
                                              gn_rs_families[r->fam].name));
    kick(r, wait);
    return;
  } else if (!hr->error && hr->status == 403) {
    forbid(r, r->fam, hr);
    kick(r, (double)c->resync_spacing_ms);
    return;
  } else if (!hr->error && hr->status == 401) {
    gn_bearer_refuse(&r->bearer);
  }
  /* anything else: the batch again, after the engine's delay */
  char why[120];
  if (hr->error) snprintf(why, sizeof why, "%s: %s", gn_rs_families[r->fam].name, hr->error);
  else snprintf(why, sizeof why, "%s: HTTP %ld", gn_rs_families[r->fam].name, hr->status);
  if (++r->failures >= MAX_FAILURES) {
    finish(r, "failed", why);
    return;
  }
  double delay = 1000;
  if (gn_backoff_next(&r->bo, -1, now, &delay) != GN_BACKOFF_OK) delay = 30000;
  kick(r, delay);
}

static gn_http_req_t *send_batch(gn_resync_t *r) {
  const gn_conf_t *c = r->env->conf;
  gn_rs_req_t q;
  if (gn_rs_request(r->fam, c->api_base, r->ids, r->nids, r->page, &q) != 0) return NULL;
  char auth[64 + MAX_TOKEN];
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", r->bearer.token);
  const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                           NULL};
  gn_http_opts_t o = {0};
  o.method = q.method;
  o.url = q.url;
  o.headers = headers;
  o.body = q.body;
  o.body_len = q.body ? strlen(q.body) : 0;
  o.timeout_ms = c->http_timeout_ms;
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.ca_file = c->ca_file;
  o.verify = c->verify;
  o.proxy = &c->proxy;
  o.max_body = 8u << 20;
  char err[200];
  gn_http_req_t *req = gn_http_start(gn_service_http(r->env->svc), &o, answered, r, err,
                                     sizeof err);
  memset(auth, 0, sizeof auth);
  gn_rs_req_free(&q);
  return req;
}

static void timer_cb(uv_timer_t *t) {
  gn_resync_t *r = t->data;
  if (!r->running || r->req || !r->active) return;
  if (r->fam < 0 && next_batch(r) != 0) {
    finish(r, "completed", NULL);
    return;
  }
  const gn_conf_t *c = r->env->conf;
  /* the owner first: no more items while the queue is half full */
  size_t ev, bytes;
  gn_queue_usage(r->env->queue, &ev, &bytes);
  if (ev >= c->queue_limit / 2 + 1) {
    kick(r, 50);
    return;
  }
  uint64_t now = gn_monotonic_ms();
  if (r->last_req_ms && now - r->last_req_ms < (uint64_t)c->resync_spacing_ms) {
    kick(r, (double)(r->last_req_ms + (uint64_t)c->resync_spacing_ms - now));
    return;
  }
  if (r->bearer.waiting) return; /* token_ready kicks */
  gn_token_result_t res;
  if (!gn_bearer_ask(&r->bearer, 0, &res)) return;
  if (res.kind == GN_TOK_AGAIN) { /* a fetch abandoned by its context: ask again */
    gn_token_result_clear(&res);
    kick(r, 100);
    return;
  }
  if (res.kind != GN_TOK_OK) {
    /* the stream reports token failures and retries through its own backoff: asking again
     * here would be a second loop of token requests */
    gn_token_result_clear(&res);
    finish(r, "failed", "no token");
    return;
  }
  gn_bearer_adopt(&r->bearer, &res);
  gn_token_result_clear(&res);
  if (!r->bearer.token || strlen(r->bearer.token) > MAX_TOKEN) {
    finish(r, "failed", "unusable token");
    return;
  }
  double wait = gn_rate_take(r->bearer.token, c->resync_budget, c->resync_window_ms,
                               c->resync_reserve);
  if (wait > 0) {
    kick(r, wait);
    return;
  }
  if (!(r->req = send_batch(r))) {
    finish(r, "failed", "request could not start");
    return;
  }
  r->last_req_ms = now;
}
