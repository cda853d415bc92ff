/* client.c: the state machine of one notification client (see client.h).
 *
 *   IDLE -> AUTH -> CHANNEL -> SUBSCRIBE -> CONNECT -> OPEN
 *   OPEN --(close, error, heartbeat missed, manual)--> BACKOFF --(timer)--> attempt
 *   attempt: soft (same channel: CONNECT) while the channel lives, hard (AUTH/CHANNEL/SUBSCRIBE
 *            with every topic) when it is gone (404, refused handshake, expiry, 401)
 *   any --(403, bad credentials, 401 after one refresh, give-up)--> FAILED
 *   any --(close)--> CLOSED
 *
 * Single flight: every failure goes through gn_sched_trigger(); only the trigger that opens a
 * cycle schedules the attempt; the attempt's outcome closes the cycle (gn_sched_complete). The
 * initial connection is the first cycle, so a reconnect() during it is folded into it.
 *
 * Threads: everything named step_/on_ runs on the service thread; the gn_client_* entry points
 * at the bottom run on the owner's thread and only post tasks, take the queue lock, or read
 * atomics.
 */
#include "client.h"
#include "http.h"
#include "oauth.h"
#include "schedule.h"
#include "service.h"
#include "transport.h"
#include "gn_util.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct {
  char **v;
  size_t n, cap;
} strset_t;

struct gn_client {
  /* immutable after new */
  char *token_url, *api_base, *client_id, *client_secret, *ca_file, *name;
  int verify;
  long connect_timeout_ms, handshake_timeout_ms, http_timeout_ms, idle_ms, ping_timeout_ms;
  size_t queue_limit, max_message;
  gn_backoff_policy_t policy;
  gn_service_t *svc;
  gn_token_entry_t *tok;

  /* shared with the owner */
  _Atomic int state;
  _Atomic int started;
  _Atomic int closing;
  gn_sched_t sched;
  gn_metrics_t metrics;
  pthread_mutex_t qmu;
  pthread_cond_t qcv;
  gn_item_t *qhead, *qtail;
  size_t qevents;              /* events (not health) waiting */
  uint64_t dropped, dropped_reported;
  int efd;
  int detached;                /* the service thread let go (close finished) */

  /* service thread only */
  gn_member_t member;
  gn_token_waiter_t waiter;
  int waiting_token;
  int token_purpose;           /* what the token being waited for is for (TOKP_*) */
  int live_auth_retried;
  char *token;
  uint64_t token_gen;
  int auth_retried;            /* one token refresh per chain of 401s */
  char *channel_id, *connect_uri;
  int hard_next;               /* the channel is gone: the next attempt creates one */
  strset_t topics;             /* desired topics, for this channel and every later one */
  strset_t confirmed;          /* topics the server last accepted as a whole list */
  int sub_400_retried;
  int topics_dirty;            /* the live channel's subscriptions differ from topics */
  gn_http_req_t *req;          /* attempt's REST call */
  gn_http_req_t *sub_req;      /* live subscription change */
  gn_conn_t *conn;
  uv_timer_t *backoff_timer, *watchdog_timer;
  int backoff_armed;
  gn_backoff_t bo;
  int in_attempt;
  uint64_t attempt_start_ms;
  int attempt_hard;
  uint64_t connection_id;
  uint64_t down_since_ms;      /* monotonic; 0 while connected or before the first open */
  double down_since_wall_ms;
  int ever_open;
  uint64_t last_rx_ms;
  int ping_sent;
  uint64_t open_since_ms;

  /* rollover (socket_closing): channel B is made, subscribed and connected while A still
   * delivers; then A is closed. Events seen on both are delivered once (CorrelationId). */
  int rolling;
  gn_http_req_t *roll_req;
  gn_conn_t *roll_conn;
  char *roll_channel_id, *roll_connect_uri;
  uint64_t roll_start_ms;
  char recent[128][40];        /* latest CorrelationIds, for the overlap */
  unsigned recent_pos;
  uint64_t dedup_until_ms;

  /* operator policy hook */
  int has_policy;
  uint64_t policy_seq;         /* the scheduled attempt the hook may still change */
  uint64_t backoff_set_ms;     /* when the backoff timer was armed */
  double backoff_retry_after;
};

const char *gn_state_name(gn_state_t s) {
  static const char *n[] = {"idle", "auth", "channel", "subscribe", "connect",
                            "open", "backoff", "failed", "closed"};
  return (unsigned)s <= GN_ST_CLOSED ? n[s] : "?";
}

/* ------------------------------------------------------------------------------------------ */
/* queue (service thread pushes, owner pops) */

/* An item that could not be queued (queue full, or out of memory): counted, and reported to the
 * owner as health "overflow" at its next poll. Takes qmu. */
static void count_drop(gn_client_t *c) {
  pthread_mutex_lock(&c->qmu);
  c->dropped++;
  pthread_mutex_unlock(&c->qmu);
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.dropped++;
  pthread_mutex_unlock(&c->metrics.mu);
}

/* Allocates and queues an item of type with data (stolen); on out-of-memory the drop is counted. */
static void queue_item(gn_client_t *c, gn_item_type_t type, json_t *data, uint64_t seq);

static void push_item(gn_client_t *c, gn_item_t *it) {
  pthread_mutex_lock(&c->qmu);
  if (c->detached) { /* closing: nobody will read it */
    pthread_mutex_unlock(&c->qmu);
    gn_item_free(it);
    return;
  }
  if (it->type == GN_ITEM_EVENT) {
    if (c->qevents >= c->queue_limit) {
      pthread_mutex_unlock(&c->qmu);
      gn_item_free(it);
      count_drop(c);
      return;
    }
    c->qevents++;
  }
  int was_empty = c->qhead == NULL;
  it->next = NULL;
  if (c->qtail) c->qtail->next = it;
  else c->qhead = it;
  c->qtail = it;
  if (was_empty) {
    uint64_t one = 1;
    ssize_t w = write(c->efd, &one, sizeof one);
    (void)w;
  }
  pthread_mutex_unlock(&c->qmu);
}

/* Queues a health item; fields is a jansson object (stolen) to which "kind" is added. */
static void health(gn_client_t *c, const char *kind, json_t *fields) {
  if (!fields) fields = json_object();
  if (!fields) {
    count_drop(c);
    return;
  }
  json_object_set_new(fields, "kind", json_string(kind));
  json_object_set_new(fields, "state", json_string(gn_state_name(atomic_load(&c->state))));
  json_object_set_new(fields, "timestamp_ms", json_real(gn_now_wall_ms()));
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.health++;
  pthread_mutex_unlock(&c->metrics.mu);
  queue_item(c, GN_ITEM_HEALTH, fields, 0);
}

static void queue_item(gn_client_t *c, gn_item_type_t type, json_t *data, uint64_t seq) {
  gn_item_t *it = calloc(1, sizeof *it);
  if (!it) {
    json_decref(data);
    count_drop(c);
    return;
  }
  it->type = type;
  it->data = data;
  it->seq = seq;
  push_item(c, it);
}

void gn_item_free(gn_item_t *it) {
  if (!it) return;
  json_decref(it->data);
  json_decref(it->body);
  free(it->raw);
  free(it);
}

static void set_state(gn_client_t *c, gn_state_t s) { atomic_store(&c->state, s); }

/* ------------------------------------------------------------------------------------------ */
/* topic sets */

static int strset_has(const strset_t *s, const char *t) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], t) == 0) return 1;
  return 0;
}
static int strset_add(strset_t *s, const char *t) {
  if (strset_has(s, t)) return 0;
  if (s->n == s->cap) {
    size_t cap = s->cap ? s->cap * 2 : 8;
    char **nv = realloc(s->v, cap * sizeof *nv);
    if (!nv) return -1;
    s->v = nv;
    s->cap = cap;
  }
  if (!(s->v[s->n] = gn_strdup(t))) return -1;
  s->n++;
  return 1;
}
static int strset_del(strset_t *s, const char *t) {
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->v[i], t) == 0) {
      free(s->v[i]);
      s->v[i] = s->v[--s->n];
      return 1;
    }
  return 0;
}
static void strset_free(strset_t *s) {
  for (size_t i = 0; i < s->n; i++) free(s->v[i]);
  free(s->v);
  memset(s, 0, sizeof *s);
}

static int strset_copy(strset_t *dst, const strset_t *src) {
  strset_t n = {0};
  for (size_t i = 0; i < src->n; i++)
    if (strset_add(&n, src->v[i]) < 0) {
      strset_free(&n);
      return -1;
    }
  strset_free(dst);
  *dst = n;
  return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* forward declarations of the machine */

static void run_attempt(gn_client_t *c);
static void step_token(gn_client_t *c);
static void step_channel(gn_client_t *c);
static void step_subscribe(gn_client_t *c);
static void step_connect(gn_client_t *c);
static void attempt_failed(gn_client_t *c, const char *reason, gn_reason_t why,
                           double retry_after_ms, json_t *fields);
static void fail_and_schedule(gn_client_t *c, gn_reason_t why, double retry_after_ms,
                              const char *reason);
static void final_failure(gn_client_t *c, const char *code, const char *msg);
static void put_live(gn_client_t *c);
static void live_need_token(gn_client_t *c);
enum { TOKP_ATTEMPT = 0, TOKP_LIVE, TOKP_ROLL };
static int fresh_token(gn_client_t *c, int purpose);
static void roll_post(gn_client_t *c);
static void roll_abort(gn_client_t *c, const char *msg);

static void drop_channel(gn_client_t *c) {
  free(c->channel_id);
  free(c->connect_uri);
  c->channel_id = c->connect_uri = NULL;
}

static void stop_watchdog(gn_client_t *c) {
  if (c->watchdog_timer) uv_timer_stop(c->watchdog_timer);
}

static void end_open_metrics(gn_client_t *c) {
  if (!c->open_since_ms) return;
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.open_since_ms = 0;
  pthread_mutex_unlock(&c->metrics.mu);
  c->open_since_ms = 0;
}

/* The live connection is gone (whatever the cause): remember when we became deaf. */
static void went_deaf(gn_client_t *c) {
  stop_watchdog(c);
  end_open_metrics(c);
  if (!c->down_since_ms) {
    c->down_since_ms = gn_now_mono_ms();
    c->down_since_wall_ms = gn_now_wall_ms();
  }
}

/* ------------------------------------------------------------------------------------------ */
/* REST helpers */

static int rest_call(gn_client_t *c, gn_http_req_t **slot, const char *method, const char *url,
                     const char *body, gn_http_cb cb) {
  char auth[64 + 4096];
  if (!c->token || strlen(c->token) > 4000) return -1;
  snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
  const char *headers[] = {auth, "Content-Type: application/json", "Accept: application/json",
                           NULL};
  gn_http_opts_t o = {0};
  o.method = method;
  o.url = url;
  o.headers = headers;
  o.body = body;
  o.body_len = body ? strlen(body) : 0;
  o.timeout_ms = c->http_timeout_ms;
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.ca_file = c->ca_file;
  o.verify = c->verify;
  o.max_body = 4u << 20;
  char err[200];
  *slot = gn_http_start(gn_service_http(c->svc), &o, cb, c, err, sizeof err);
  memset(auth, 0, sizeof auth);
  return *slot ? 0 : -1;
}

static char *subs_body(const strset_t *s) {
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

/* Reads a subscription answer: reports every rejected topic; returns how many were accepted. */
static void report_subscriptions(gn_client_t *c, const char *body, size_t len, const char *why) {
  c->sub_400_retried = 0;
  json_t *j = json_loadb(body, len, 0, NULL);
  json_t *ent = json_is_array(j) ? j : json_object_get(j, "entities");
  size_t i;
  json_t *e;
  json_t *accepted = json_array();
  int rejected = 0;
  if (json_is_array(ent)) {
    json_array_foreach(ent, i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      const char *st = json_string_value(json_object_get(e, "state"));
      if (!id) continue;
      if (st && strcasecmp(st, "Permitted") != 0 && strcasecmp(st, "active") != 0 &&
          strcasecmp(st, "subscribed") != 0) {
        rejected++;
        json_t *f = json_pack("{s:s, s:s, s:s, s:s}", "event", "rejected", "topic", id, "state",
                              st, "channel_id", c->channel_id ? c->channel_id : "");
        const char *rr = json_string_value(json_object_get(e, "rejectionReason"));
        if (f && rr) json_object_set_new(f, "reason", json_string(rr));
        json_t *mp = json_object_get(e, "missingPermissions");
        if (f && mp) json_object_set(f, "missing_permissions", mp);
        health(c, "subscription", f);
      } else if (accepted) {
        json_array_append_new(accepted, json_string(id));
      }
    }
  }
  /* Topics we asked for that the answer does not list were dropped (ignoreErrors=true). */
  for (size_t k = 0; json_is_array(ent) && k < c->topics.n; k++) {
    int found = 0;
    json_array_foreach(ent, i, e) {
      const char *id = json_string_value(json_object_get(e, "id"));
      if (id && strcmp(id, c->topics.v[k]) == 0) found = 1;
    }
    if (!found) {
      rejected++;
      health(c, "subscription",
             json_pack("{s:s, s:s, s:s, s:s}", "event", "rejected", "topic", c->topics.v[k],
                       "reason", "not accepted by the server (invalid topic name)",
                       "channel_id", c->channel_id ? c->channel_id : ""));
      /* Dropped by ignoreErrors: an invalid name stays invalid, so it is forgotten rather than
       * put (and reported) again with every channel. Topics refused by state (permissions)
       * are kept: a permission granted later makes them work on the next channel. */
      strset_del(&c->topics, c->topics.v[k]);
      k--;
    }
  }
  strset_copy(&c->confirmed, &c->topics);
  if (accepted) {
    json_t *f = json_pack("{s:s, s:s, s:o, s:i}", "event", why, "channel_id",
                          c->channel_id ? c->channel_id : "", "topics", accepted, "rejected",
                          rejected);
    if (f) health(c, "subscription", f);
  }
  json_decref(j);
}

/* ------------------------------------------------------------------------------------------ */
/* the attempt */

static void run_attempt(gn_client_t *c) {
  c->in_attempt = 1;
  c->attempt_start_ms = gn_now_mono_ms();
  c->attempt_hard = c->hard_next || !c->channel_id;
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.attempts++;
  pthread_mutex_unlock(&c->metrics.mu);
  if (c->attempt_hard) {
    drop_channel(c);
    c->topics_dirty = 1;
    step_token(c);
  } else {
    step_connect(c);
  }
}

static void live_on_token(gn_client_t *c, gn_token_result_t *r);

static void on_token(gn_client_t *c, gn_token_result_t *r) {
  if (c->token_purpose != TOKP_ATTEMPT) {
    int purpose = c->token_purpose;
    c->token_purpose = TOKP_ATTEMPT;
    if (purpose == TOKP_LIVE) {
      live_on_token(c, r);
    } else if (r->kind == GN_TOK_AGAIN) {
      if (fresh_token(c, TOKP_ROLL)) roll_post(c);
    } else if (r->kind == GN_TOK_OK) {
      gn_free_secret(c->token);
      c->token = r->token;
      r->token = NULL;
      c->token_gen = r->gen;
      if (c->rolling) roll_post(c);
    } else if (c->rolling) {
      roll_abort(c, r->error);
    }
    gn_token_result_clear(r);
    return;
  }
  switch (r->kind) {
  case GN_TOK_OK:
    gn_free_secret(c->token);
    c->token = r->token;
    r->token = NULL;
    c->token_gen = r->gen;
    if (r->fetched)
      health(c, "token", json_pack("{s:s, s:f}", "event", "refreshed", "expires_in_s",
                                   r->expires_in_s));
    if (!c->channel_id) step_channel(c);
    else step_subscribe(c);
    break;
  case GN_TOK_AUTH:
    health(c, "token", json_pack("{s:s, s:s, s:i}", "event", "refused", "error", r->error,
                                 "status", (int)r->status));
    final_failure(c, "auth", r->error);
    break;
  case GN_TOK_FORBIDDEN:
    final_failure(c, "forbidden", r->error);
    break;
  case GN_TOK_RATE:
  case GN_TOK_RETRY: {
    json_t *f = json_pack("{s:s, s:i}", "error", r->error, "status", (int)r->status);
    if (f && r->retry_after_ms >= 0) json_object_set_new(f, "retry_after_ms", json_real(r->retry_after_ms));
    if (f && r->tls) json_object_set_new(f, "tls", json_true());
    health(c, "token", json_pack("{s:s, s:s, s:i}", "event", "failed", "error", r->error,
                                 "status", (int)r->status));
    attempt_failed(c, r->kind == GN_TOK_RATE ? "rate_limited" : r->tls ? "tls" : "token",
                   GN_REASON_ERROR, r->retry_after_ms, f);
    break;
  }
  case GN_TOK_AGAIN:
    step_token(c);
    break;
  }
  gn_token_result_clear(r);
}

static void step_token(gn_client_t *c) {
  set_state(c, GN_ST_AUTH);
  c->token_purpose = TOKP_ATTEMPT; /* the attempt takes the wait over */
  gn_token_result_t r;
  if (gn_token_get(c->tok, c->svc, &c->waiter, &r)) {
    c->waiting_token = 0;
    on_token(c, &r);
  } else {
    c->waiting_token = 1;
  }
}

static void member_poke(gn_member_t *m) {
  gn_client_t *c = (gn_client_t *)((char *)m - offsetof(gn_client_t, member));
  if (!c->waiting_token || !atomic_load(&c->waiter.ready)) return;
  c->waiting_token = 0;
  gn_token_result_t r;
  if (gn_token_get(c->tok, c->svc, &c->waiter, &r)) on_token(c, &r);
  else c->waiting_token = 1;
}

/* A REST answer that is not a success: classify it. Returns after handling the failure. */
static void rest_failure(gn_client_t *c, const char *what, const gn_http_result_t *hr) {
  char msg[300];
  if (hr->error) {
    snprintf(msg, sizeof msg, "%s failed: %s", what, hr->error);
    attempt_failed(c, hr->tls_error ? "tls" : hr->timed_out ? "timeout" : "network",
                   hr->timed_out ? GN_REASON_TIMEOUT : GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", msg));
    return;
  }
  snprintf(msg, sizeof msg, "%s answered HTTP %ld", what, hr->status);
  if (hr->status == 401) {
    if (!c->auth_retried) {
      /* The token was refused: one refresh, then the attempt goes on. */
      c->auth_retried = 1;
      gn_token_invalidate(c->tok, c->token_gen);
      gn_free_secret(c->token);
      c->token = NULL;
      health(c, "token", json_pack("{s:s, s:s}", "event", "rejected", "error", msg));
      step_token(c);
      return;
    }
    final_failure(c, "auth", "the API refused a freshly issued token (401 twice); check the "
                             "OAuth client's permissions");
    return;
  }
  if (hr->status == 403) {
    final_failure(c, "forbidden", msg);
    return;
  }
  json_t *f = json_pack("{s:s, s:i}", "error", msg, "status", (int)hr->status);
  if (f && hr->retry_after_ms >= 0)
    json_object_set_new(f, "retry_after_ms", json_real(hr->retry_after_ms));
  if (hr->status == 404) c->hard_next = 1;
  attempt_failed(c, hr->status == 429 ? "rate_limited" : hr->status == 404 ? "channel_gone" : "http",
                 GN_REASON_ERROR, hr->status == 429 ? hr->retry_after_ms : -1, f);
}

static void channel_done(void *ud, const gn_http_result_t *hr) {
  gn_client_t *c = ud;
  c->req = NULL;
  if (hr->error || (hr->status != 200 && hr->status != 201)) {
    rest_failure(c, "channel creation", hr);
    return;
  }
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *id = json_string_value(json_object_get(j, "id"));
  const char *uri = json_string_value(json_object_get(j, "connectUri"));
  if (!id || !uri) {
    json_decref(j);
    attempt_failed(c, "protocol", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "channel creation answered without id and connectUri"));
    return;
  }
  drop_channel(c);
  c->channel_id = gn_strdup(id);
  c->connect_uri = gn_strdup(uri);
  json_decref(j);
  if (!c->channel_id || !c->connect_uri) {
    attempt_failed(c, "memory", GN_REASON_ERROR, -1, NULL);
    return;
  }
  c->hard_next = 0;
  c->topics_dirty = 1;
  step_subscribe(c);
}

static void step_channel(gn_client_t *c) {
  set_state(c, GN_ST_CHANNEL);
  char url[1024];
  snprintf(url, sizeof url, "%s/api/v2/notifications/channels", c->api_base);
  if (rest_call(c, &c->req, "POST", url, NULL, channel_done) != 0)
    attempt_failed(c, "http", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "cannot start the channel request"));
}

/* The server refused the whole topic list (400): the topics added since the last accepted list
 * are reported as rejected and forgotten, so one bad topic cannot break every later channel. */
static void refuse_new_topics(gn_client_t *c, const gn_http_result_t *hr) {
  json_t *j = json_loadb(hr->body, hr->body_len, 0, NULL);
  const char *m = json_string_value(json_object_get(j, "message"));
  char msg[300];
  snprintf(msg, sizeof msg, "the server refused the topic list (HTTP %ld): %.200s", hr->status,
           m ? m : hr->body);
  json_decref(j);
  int any = 0;
  for (size_t i = 0; i < c->topics.n; i++)
    if (!strset_has(&c->confirmed, c->topics.v[i])) {
      any = 1;
      health(c, "subscription",
             json_pack("{s:s, s:s, s:s, s:i, s:s}", "event", "rejected", "topic", c->topics.v[i],
                       "reason", msg, "status", (int)hr->status, "channel_id",
                       c->channel_id ? c->channel_id : ""));
    }
  if (!any)
    health(c, "subscription", json_pack("{s:s, s:s, s:i}", "event", "failed", "error", msg,
                                        "status", (int)hr->status));
  strset_copy(&c->topics, &c->confirmed);
}

static void subscribe_done(void *ud, const gn_http_result_t *hr) {
  gn_client_t *c = ud;
  c->req = NULL;
  if (!hr->error && (hr->status == 400 || hr->status == 413)) {
    /* The topic list itself was refused (e.g. over 1,000 topics): retrying cannot help. Say so
     * and connect anyway; the channel keeps whatever it had. */
    refuse_new_topics(c, hr);
    if (!c->sub_400_retried) {
      c->sub_400_retried = 1; /* once: put the list the server accepted before */
      c->topics_dirty = 1;
      step_subscribe(c);
      return;
    }
    c->topics_dirty = 0;
    step_connect(c);
    return;
  }
  if (hr->error || (hr->status != 200 && hr->status != 201 && hr->status != 204)) {
    rest_failure(c, "topic subscription", hr);
    return;
  }
  c->topics_dirty = 0;
  report_subscriptions(c, hr->body, hr->body_len, "subscribed");
  step_connect(c);
}

static void step_subscribe(gn_client_t *c) {
  if (!c->topics_dirty) {
    step_connect(c);
    return;
  }
  set_state(c, GN_ST_SUBSCRIBE);
  char url[1024];
  snprintf(url, sizeof url, "%s/api/v2/notifications/channels/%s/subscriptions?ignoreErrors=true",
           c->api_base, c->channel_id);
  char *body = subs_body(&c->topics);
  if (!body || rest_call(c, &c->req, "PUT", url, body, subscribe_done) != 0)
    attempt_failed(c, "http", GN_REASON_ERROR, -1,
                   json_pack("{s:s}", "error", "cannot start the subscription request"));
  free(body);
}

/* ---- the WebSocket ---- */

static void watchdog_cb(uv_timer_t *t);

static void arm_watchdog(gn_client_t *c, uint64_t ms) {
  if (c->watchdog_timer) uv_timer_start(c->watchdog_timer, watchdog_cb, ms, 0);
}

static void roll_open(gn_client_t *c);
static void roll_abort(gn_client_t *c, const char *msg);
static void roll_cancel(gn_client_t *c);

static void conn_open_cb(void *ud, gn_conn_t *conn) {
  gn_client_t *c = ud;
  if (conn == c->roll_conn && conn) {
    roll_open(c);
    return;
  }
  uint64_t now = gn_now_mono_ms();
  double latency = (double)(now - c->attempt_start_ms);
  set_state(c, GN_ST_OPEN);
  c->in_attempt = 0;
  c->auth_retried = 0;
  c->connection_id++;
  c->open_since_ms = now;
  c->last_rx_ms = now;
  c->ping_sent = 0;
  uint32_t attempt_no = c->bo.attempt;
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.successes++;
  c->metrics.open_since_ms = now;
  if (c->down_since_ms) c->metrics.deaf_ms += (double)(now - c->down_since_ms);
  pthread_mutex_unlock(&c->metrics.mu);
  gn_metrics_add_latency(&c->metrics, latency);
  /* Close the cycle before anyone can read "connected": a reconnect() asked after that must
   * open a new cycle, not fold into this finished one. */
  if (gn_sched_open(&c->sched)) gn_sched_complete(&c->sched, 1);
  gn_backoff_succeeded(&c->bo, now);
  health(c, "connected",
         json_pack("{s:f, s:s, s:I, s:i, s:b}", "latency_ms", latency, "channel_id",
                   c->channel_id ? c->channel_id : "", "connection_id",
                   (json_int_t)c->connection_id, "attempt", (int)attempt_no, "new_channel",
                   c->attempt_hard));
  if (c->ever_open && c->down_since_ms) {
    double gap = (double)(now - c->down_since_ms);
    health(c, "restored",
           json_pack("{s:f, s:f, s:f, s:b, s:s}", "gap_ms", gap, "deaf_from_ms",
                     c->down_since_wall_ms, "deaf_to_ms", gn_now_wall_ms(), "new_channel",
                     c->attempt_hard, "channel_id", c->channel_id ? c->channel_id : ""));
  }
  c->ever_open = 1;
  c->down_since_ms = 0;
  arm_watchdog(c, (uint64_t)c->idle_ms);
  /* A subscription change that arrived while we were connecting. */
  if (c->topics_dirty && !c->sub_req) {
    put_live(c);
  }
}

static void start_rollover(gn_client_t *c);
static int seen_before(gn_client_t *c, json_t *msg, int check);

static void handle_text(gn_client_t *c, gn_conn_t *conn, const char *data, size_t len) {
  const char *chan = conn == c->roll_conn && c->roll_conn ? c->roll_channel_id : c->channel_id;
  json_error_t je;
  json_t *j = json_loadb(data, len, 0, &je);
  if (!j || !json_is_object(j)) {
    int utf8 = strstr(je.text, "UTF-8") != NULL;
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.malformed++;
    pthread_mutex_unlock(&c->metrics.mu);
    health(c, "malformed", json_pack("{s:s, s:s, s:I}", "reason",
                                     !j ? (utf8 ? "invalid_utf8" : "invalid_json") : "not_an_object",
                                     "error", j ? "message is not a JSON object" : je.text,
                                     "size", (json_int_t)len));
    json_decref(j);
    return;
  }
  const char *topic = json_string_value(json_object_get(j, "topicName"));
  json_t *body = json_object_get(j, "eventBody");
  /* {"result":"404", ...}: the channel is gone (expired or evicted); the close follows. */
  const char *res = json_string_value(json_object_get(j, "result"));
  if ((res && strcmp(res, "404") == 0) || json_integer_value(json_object_get(j, "result")) == 404) {
    c->hard_next = 1;
    const char *m = json_string_value(json_object_get(j, "message"));
    health(c, "channel_gone", json_pack("{s:s, s:s}", "channel_id",
                                        c->channel_id ? c->channel_id : "", "reason",
                                        m ? m : "the stream said 404: channel expired or evicted"));
    json_decref(j);
    return;
  }
  if (!topic) {
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.malformed++;
    pthread_mutex_unlock(&c->metrics.mu);
    health(c, "malformed", json_pack("{s:s, s:s, s:I}", "reason", "no_topic", "error",
                                     "message without topicName", "size", (json_int_t)len));
    json_decref(j);
    return;
  }
  if (strcmp(topic, "channel.metadata") == 0) {
    /* Heartbeats and pongs: liveness only. */
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.heartbeats++;
    pthread_mutex_unlock(&c->metrics.mu);
    json_decref(j);
    return;
  }
  if (strcmp(topic, "v2.system.socket_closing") == 0) {
    /* The server will close this socket soon: open the replacement before it does. */
    health(c, "socket_closing", json_pack("{s:s}", "channel_id", chan ? chan : ""));
    json_decref(j);
    if (conn == c->conn && !c->rolling && atomic_load(&c->state) == GN_ST_OPEN) start_rollover(c);
    return;
  }
  if (seen_before(c, j, c->rolling || gn_now_mono_ms() < c->dedup_until_ms)) {
    /* Already delivered by the other connection of a rollover. */
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.duplicates++;
    pthread_mutex_unlock(&c->metrics.mu);
    json_decref(j);
    return;
  }
  gn_item_t *it = calloc(1, sizeof *it);
  if (!it || !(it->raw = malloc(len + 1))) {
    free(it);
    json_decref(j);
    count_drop(c);
    return;
  }
  memcpy(it->raw, data, len);
  it->raw[len] = 0;
  it->rawlen = len;
  it->type = GN_ITEM_EVENT;
  it->body = body ? json_incref(body) : NULL;
  it->data = json_pack("{s:s, s:s, s:f}", "topic", topic, "channel_id", chan ? chan : "",
                       "received_ms", gn_now_wall_ms());
  json_decref(j);
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.events++;
  pthread_mutex_unlock(&c->metrics.mu);
  push_item(c, it);
}

static void conn_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len, int binary) {
  gn_client_t *c = ud;
  if (conn == c->conn) {
    c->last_rx_ms = gn_now_mono_ms();
    c->ping_sent = 0;
  }
  if (binary) {
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.malformed++;
    pthread_mutex_unlock(&c->metrics.mu);
    health(c, "malformed", json_pack("{s:s, s:s, s:I}", "reason", "binary", "error",
                                     "binary frame where JSON text was expected", "size",
                                     (json_int_t)len));
    return;
  }
  handle_text(c, conn, data, len);
}

static void conn_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info) {
  gn_client_t *c = ud;
  if (conn == c->roll_conn && conn) {
    c->roll_conn = NULL;
    roll_abort(c, info->error);
    return;
  }
  c->conn = NULL;
  if (atomic_load(&c->state) == GN_ST_OPEN && c->rolling) {
    /* The old socket went before the replacement was ready: deaf until it is. */
    went_deaf(c);
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.disconnects++;
    pthread_mutex_unlock(&c->metrics.mu);
    set_state(c, GN_ST_CONNECT);
    health(c, "disconnected",
           json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", "socket_closing", "code", info->code,
                     "error", info->error, "channel_id", c->channel_id ? c->channel_id : "",
                     "connection_id", (json_int_t)c->connection_id));
    return;
  }
  if (atomic_load(&c->state) == GN_ST_OPEN) {
    went_deaf(c);
    const char *reason = info->oversize ? "oversize" : info->code != 1006 ? "closed" : "lost";
    json_t *f = json_pack("{s:s, s:i, s:s, s:s, s:I}", "reason", reason, "code", info->code,
                          "error", info->error, "channel_id", c->channel_id ? c->channel_id : "",
                          "connection_id", (json_int_t)c->connection_id);
    if (f && info->reason[0]) json_object_set_new(f, "close_reason", json_string(info->reason));
    if (info->oversize)
      health(c, "oversize", json_pack("{s:s, s:I}", "error", info->error, "limit",
                                      (json_int_t)c->max_message));
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.disconnects++;
    pthread_mutex_unlock(&c->metrics.mu);
    set_state(c, GN_ST_BACKOFF);
    health(c, "disconnected", f);
    fail_and_schedule(c, info->code == 1006 ? GN_REASON_ERROR : GN_REASON_CLOSE, -1, reason);
    return;
  }
  /* The attempt's connect or handshake failed. */
  json_t *f = json_pack("{s:s, s:s}", "error", info->error, "stage", info->stage);
  if (f && info->http_status) json_object_set_new(f, "status", json_integer(info->http_status));
  if (info->http_status == 401 && !c->auth_retried) {
    c->auth_retried = 1;
    gn_token_invalidate(c->tok, c->token_gen);
    c->hard_next = 1;
  } else if (info->http_status == 401) {
    json_decref(f);
    final_failure(c, "auth", "the stream refused the handshake with 401 after a token refresh");
    return;
  }
  if (info->http_status == 403) {
    json_decref(f);
    final_failure(c, "forbidden", "the stream refused the handshake with 403");
    return;
  }
  if (info->http_status && info->http_status != 429 && info->http_status < 500)
    c->hard_next = 1; /* 404, 410, 400: the channel is gone */
  attempt_failed(c, info->tls ? "tls" : info->timed_out ? "timeout" : info->http_status ? "handshake" : "connect",
                 info->timed_out ? GN_REASON_TIMEOUT : GN_REASON_ERROR, -1, f);
}

/* Opens a WebSocket to url with the client's TLS, size and timeout settings (the live
 * connection and a rollover's replacement alike). NULL and err on failure. */
static gn_conn_t *open_conn(gn_client_t *c, const char *url, char *err, size_t errlen) {
  gn_conn_opts_t o = {0};
  o.url = url;
  o.ca_file = c->ca_file;
  o.verify = c->verify;
  o.max_message = c->max_message;
  o.connect_timeout_ms = c->connect_timeout_ms;
  o.handshake_timeout_ms = c->handshake_timeout_ms;
  static const gn_conn_cbs_t cbs = {conn_open_cb, conn_message_cb, conn_close_cb};
  return gn_conn_open(gn_service_transport(c->svc), &o, &cbs, c, err, errlen);
}

static void step_connect(gn_client_t *c) {
  set_state(c, GN_ST_CONNECT);
  char err[256] = "";
  c->conn = open_conn(c, c->connect_uri, err, sizeof err);
  if (!c->conn) {
    c->hard_next = 1;
    attempt_failed(c, "connect", GN_REASON_ERROR, -1, json_pack("{s:s}", "error", err));
  }
}

static void watchdog_cb(uv_timer_t *t) {
  gn_client_t *c = t->data;
  if (atomic_load(&c->state) != GN_ST_OPEN || !c->conn) return;
  uint64_t now = gn_now_mono_ms();
  uint64_t quiet = now - c->last_rx_ms;
  if (!c->ping_sent) {
    if (quiet < (uint64_t)c->idle_ms) {
      arm_watchdog(c, (uint64_t)c->idle_ms - quiet);
      return;
    }
    static const char ping[] = "{\"message\":\"ping\"}";
    gn_conn_send_text(c->conn, ping, sizeof ping - 1);
    c->ping_sent = 1;
    c->last_rx_ms = now; /* the ping timeout counts from here */
    arm_watchdog(c, (uint64_t)c->ping_timeout_ms);
    return;
  }
  if (quiet < (uint64_t)c->ping_timeout_ms) {
    arm_watchdog(c, (uint64_t)c->ping_timeout_ms - quiet);
    return;
  }
  /* Dead link: nothing came back, not even the pong. */
  roll_cancel(c);
  gn_conn_abort(c->conn);
  c->conn = NULL;
  went_deaf(c);
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.disconnects++;
  pthread_mutex_unlock(&c->metrics.mu);
  set_state(c, GN_ST_BACKOFF);
  char msg[128];
  snprintf(msg, sizeof msg, "no message for %ld ms and no answer to a ping within %ld ms",
           c->idle_ms, c->ping_timeout_ms);
  health(c, "disconnected", json_pack("{s:s, s:i, s:s, s:s}", "reason", "heartbeat_timeout",
                                      "code", 1006, "error", msg, "channel_id",
                                      c->channel_id ? c->channel_id : ""));
  fail_and_schedule(c, GN_REASON_TIMEOUT, -1, "heartbeat_timeout");
}

/* ---- failures and scheduling ---- */

static void backoff_fire_cb(uv_timer_t *t) {
  gn_client_t *c = t->data;
  c->backoff_armed = 0;
  run_attempt(c);
}

/* Validates the attempt record before anything is scheduled from it (the original design's
 * payload validation): a record that breaks the policy ends the cycle instead of looping. */
static const char *check_record(const gn_client_t *c, uint32_t attempt, double delay_ms,
                                double retry_after_ms) {
  const gn_backoff_policy_t *p = &c->policy;
  if (attempt < 1) return "attempt number below 1";
  if (!isfinite(delay_ms) || delay_ms < 0) return "delay is not a finite non-negative number";
  double cap = p->max_ms;
  if (retry_after_ms > cap) cap = retry_after_ms;
  if (p->retry_after_max_ms > cap && retry_after_ms >= 0) cap = p->retry_after_max_ms;
  if (delay_ms > cap + 1e-6) return "delay above the policy's maximum";
  if (p->max_retries && attempt > p->max_retries) return "max_retries";
  if (p->max_window_ms > 0 && c->bo.cycle_start_ms &&
      (double)(gn_now_mono_ms() + (uint64_t)delay_ms - c->bo.cycle_start_ms) > p->max_window_ms)
    return "max_window_ms";
  return NULL;
}

static void schedule_attempt(gn_client_t *c, gn_reason_t why, double retry_after_ms,
                             const char *reason) {
  double delay = 0;
  uint64_t now = gn_now_mono_ms();
  gn_backoff_status_t st = gn_backoff_next(&c->bo, retry_after_ms, now, &delay);
  if (st != GN_BACKOFF_OK) {
    char msg[200];
    snprintf(msg, sizeof msg, "gave up after %u attempts (%s) following: %s", c->bo.attempt,
             gn_backoff_status_name(st), reason);
    final_failure(c, st == GN_BACKOFF_GIVEUP_RETRIES ? "max_retries" : "max_window", msg);
    return;
  }
  const char *bad = check_record(c, c->bo.attempt, delay, retry_after_ms);
  if (bad) {
    char msg[200];
    snprintf(msg, sizeof msg, "attempt record rejected (%s) following: %s", bad, reason);
    final_failure(c, strcmp(bad, "max_retries") == 0 ? "max_retries"
                     : strcmp(bad, "max_window_ms") == 0 ? "max_window" : "invalid_record", msg);
    return;
  }
  json_t *rec = json_pack("{s:s, s:I, s:i, s:f, s:f, s:s, s:s, s:b}", "type", "reconnect",
                          "connection_id", (json_int_t)c->connection_id, "attempt",
                          (int)c->bo.attempt, "timestamp_ms", gn_now_wall_ms(), "delay_ms", delay,
                          "reason", reason, "trigger", gn_reason_name(why), "new_channel",
                          c->hard_next || !c->channel_id);
  if (rec && retry_after_ms >= 0) json_object_set_new(rec, "retry_after_ms", json_real(retry_after_ms));
  set_state(c, GN_ST_BACKOFF);
  json_t *copy = c->has_policy && rec ? json_deep_copy(rec) : NULL;
  health(c, "attempt", rec);
  c->backoff_armed = 1;
  c->backoff_set_ms = gn_now_mono_ms();
  c->backoff_retry_after = retry_after_ms;
  uv_timer_start(c->backoff_timer, backoff_fire_cb, (uint64_t)(delay + 0.5), 0);
  /* The hook sees the same record; the engine's delay runs until it answers. */
  if (copy) queue_item(c, GN_ITEM_POLICY, copy, ++c->policy_seq);
}

typedef struct {
  gn_client_t *c;
  uint64_t seq;
  double delay_ms;
} policy_task_t;

static void task_policy(gn_service_t *svc, void *arg) {
  policy_task_t *t = arg;
  gn_client_t *c = t->c;
  uint64_t seq = t->seq;
  double d = t->delay_ms;
  free(t);
  if (seq != c->policy_seq || !c->backoff_armed) return; /* too late: the attempt has started */
  if (d < 0) {
    final_failure(c, "policy", "the policy hook gave up");
    return;
  }
  const char *bad = check_record(c, c->bo.attempt, d, c->backoff_retry_after);
  if (bad) {
    char msg[160];
    snprintf(msg, sizeof msg, "the policy hook's delay %.1f ms was refused (%s); the engine's "
             "delay stands", d, bad);
    health(c, "policy", json_pack("{s:s, s:s, s:f}", "event", "rejected", "error", msg,
                                  "delay_ms", d));
    return;
  }
  uint64_t elapsed = gn_now_mono_ms() - c->backoff_set_ms;
  uint64_t left = (uint64_t)(d + 0.5) > elapsed ? (uint64_t)(d + 0.5) - elapsed : 0;
  uv_timer_start(c->backoff_timer, backoff_fire_cb, left, 0);
  health(c, "policy", json_pack("{s:s, s:f, s:i}", "event", "applied", "delay_ms", d, "attempt",
                                (int)c->bo.attempt));
}

void gn_client_policy_answer(gn_client_t *c, uint64_t seq, double delay_ms) {
  if (atomic_load(&c->closing) || !c->svc) return;
  policy_task_t *t = malloc(sizeof *t);
  if (!t) return;
  t->c = c;
  t->seq = seq;
  t->delay_ms = isfinite(delay_ms) ? delay_ms : 1e300; /* refused by the check */
  if (gn_service_post(c->svc, task_policy, t) != 0) free(t);
}

static void fail_and_schedule(gn_client_t *c, gn_reason_t why, double retry_after_ms,
                              const char *reason) {
  if (!gn_sched_trigger(&c->sched, why)) return; /* folded into the cycle already open */
  schedule_attempt(c, why, retry_after_ms, reason);
}

static void cancel_attempt_io(gn_client_t *c) {
  if (c->req) gn_http_cancel(c->req);
  c->req = NULL;
  if (c->conn) gn_conn_abort(c->conn);
  c->conn = NULL;
  if (c->waiting_token) gn_token_cancel(c->tok, &c->waiter);
  c->waiting_token = 0;
}

static void attempt_failed(gn_client_t *c, const char *reason, gn_reason_t why,
                           double retry_after_ms, json_t *fields) {
  cancel_attempt_io(c);
  c->in_attempt = 0;
  if (!c->ever_open && !c->down_since_ms) {
    c->down_since_ms = c->attempt_start_ms;
    c->down_since_wall_ms = gn_now_wall_ms();
  }
  if (!fields) fields = json_object();
  if (fields) {
    json_object_set_new(fields, "reason", json_string(reason));
    json_object_set_new(fields, "attempt", json_integer(c->bo.attempt));
    json_object_set_new(fields, "new_channel", json_boolean(c->attempt_hard));
  }
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.failures++;
  pthread_mutex_unlock(&c->metrics.mu);
  set_state(c, GN_ST_BACKOFF);
  health(c, "failed", fields);
  if (gn_sched_open(&c->sched)) gn_sched_complete(&c->sched, 0);
  fail_and_schedule(c, why, retry_after_ms, reason);
}

static void final_failure(gn_client_t *c, const char *code, const char *msg) {
  roll_cancel(c);
  cancel_attempt_io(c);
  stop_watchdog(c);
  end_open_metrics(c);
  if (c->backoff_timer) uv_timer_stop(c->backoff_timer);
  c->backoff_armed = 0;
  c->in_attempt = 0;
  set_state(c, GN_ST_FAILED);
  health(c, "gave_up", json_pack("{s:s, s:s, s:i}", "reason", code, "error", msg, "attempts",
                                 (int)c->bo.attempt));
  if (gn_sched_open(&c->sched)) gn_sched_complete(&c->sched, 0);
}

/* ---- rollover ---- */

/* Remembers the message's CorrelationId; with check != 0 first looks whether it was already
 * seen (only during a rollover's overlap: the scan is not free). Returns 1 for a duplicate. */
static int seen_before(gn_client_t *c, json_t *msg, int check) {
  const char *id = json_string_value(json_object_get(json_object_get(msg, "metadata"),
                                                     "CorrelationId"));
  if (!id || strlen(id) >= sizeof c->recent[0]) return 0;
  if (check)
    for (size_t i = 0; i < sizeof c->recent / sizeof c->recent[0]; i++)
      if (strcmp(c->recent[i], id) == 0) return 1;
  strcpy(c->recent[c->recent_pos], id);
  c->recent_pos = (c->recent_pos + 1) % (sizeof c->recent / sizeof c->recent[0]);
  return 0;
}

static void roll_cancel(gn_client_t *c) {
  if (c->roll_req) gn_http_cancel(c->roll_req);
  c->roll_req = NULL;
  if (c->roll_conn) gn_conn_abort(c->roll_conn);
  c->roll_conn = NULL;
  free(c->roll_channel_id);
  free(c->roll_connect_uri);
  c->roll_channel_id = c->roll_connect_uri = NULL;
  c->rolling = 0;
}

static void roll_abort(gn_client_t *c, const char *msg) {
  roll_cancel(c);
  c->hard_next = 1; /* the old channel is going away: the next attempt makes a new one */
  health(c, "rollover", json_pack("{s:s, s:s, s:s}", "event", "failed", "error", msg ? msg : "",
                                  "channel_id", c->channel_id ? c->channel_id : ""));
  if (!c->conn) {
    /* The old socket is already gone: the ordinary reconnect takes over. */
    set_state(c, GN_ST_BACKOFF);
    fail_and_schedule(c, GN_REASON_CLOSE, -1, "socket_closing");
  }
}

static void roll_open(gn_client_t *c) {
  gn_conn_t *old = c->conn;
  char *old_id = c->channel_id;
  uint64_t now = gn_now_mono_ms();
  c->conn = c->roll_conn;
  c->roll_conn = NULL;
  c->channel_id = c->roll_channel_id;
  free(c->connect_uri);
  c->connect_uri = c->roll_connect_uri;
  c->roll_channel_id = c->roll_connect_uri = NULL;
  c->rolling = 0;
  c->hard_next = 0;
  c->dedup_until_ms = now + 5000;
  health(c, "rollover", json_pack("{s:s, s:s, s:s, s:f, s:b}", "event", "completed", "from",
                                  old_id ? old_id : "", "to", c->channel_id, "elapsed_ms",
                                  (double)(now - c->roll_start_ms), "gap", old == NULL));
  free(old_id);
  if (old) {
    gn_conn_close(old, 1000, "rollover to a new channel");
    c->last_rx_ms = now;
    c->ping_sent = 0;
    pthread_mutex_lock(&c->metrics.mu);
    c->metrics.rollovers++;
    pthread_mutex_unlock(&c->metrics.mu);
    return;
  }
  /* The old socket had already gone: this is a reconnect like any other. */
  c->attempt_start_ms = c->roll_start_ms;
  c->attempt_hard = 1;
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.attempts++;
  c->metrics.rollovers++;
  pthread_mutex_unlock(&c->metrics.mu);
  conn_open_cb(c, c->conn); /* connected + restored, as after any reconnect */
}

static void roll_sub_done(void *ud, const gn_http_result_t *hr) {
  gn_client_t *c = ud;
  c->roll_req = NULL;
  if (hr->error || (hr->status != 200 && hr->status != 201 && hr->status != 204)) {
    char msg[200];
    snprintf(msg, sizeof msg, "subscribing the new channel: %s%s", hr->error ? hr->error : "HTTP ",
             hr->error ? "" : (hr->status == 401 ? "401" : hr->status == 404 ? "404" : "error"));
    if (hr->status == 401) gn_token_invalidate(c->tok, c->token_gen);
    roll_abort(c, msg);
    return;
  }
  strset_copy(&c->confirmed, &c->topics);
  char err[256] = "";
  c->roll_conn = open_conn(c, c->roll_connect_uri, err, sizeof err);
  if (!c->roll_conn) roll_abort(c, err);
}

static void roll_channel_done(void *ud, const gn_http_result_t *hr) {
  gn_client_t *c = ud;
  c->roll_req = NULL;
  json_t *j = NULL;
  const char *id = NULL, *uri = NULL;
  if (!hr->error && (hr->status == 200 || hr->status == 201)) {
    j = json_loadb(hr->body, hr->body_len, 0, NULL);
    id = json_string_value(json_object_get(j, "id"));
    uri = json_string_value(json_object_get(j, "connectUri"));
  }
  if (!id || !uri) {
    char msg[200];
    if (hr->error) snprintf(msg, sizeof msg, "creating the new channel: %s", hr->error);
    else snprintf(msg, sizeof msg, "creating the new channel answered HTTP %ld", hr->status);
    if (hr->status == 401) gn_token_invalidate(c->tok, c->token_gen);
    json_decref(j);
    roll_abort(c, msg);
    return;
  }
  c->roll_channel_id = gn_strdup(id);
  c->roll_connect_uri = gn_strdup(uri);
  json_decref(j);
  char url[1024];
  snprintf(url, sizeof url, "%s/api/v2/notifications/channels/%s/subscriptions?ignoreErrors=true",
           c->api_base, c->roll_channel_id ? c->roll_channel_id : "");
  char *body = subs_body(&c->topics);
  if (!c->roll_channel_id || !c->roll_connect_uri || !body ||
      rest_call(c, &c->roll_req, "PUT", url, body, roll_sub_done) != 0)
    roll_abort(c, "cannot start the subscription request for the new channel");
  free(body);
}

static void start_rollover(gn_client_t *c) {
  c->rolling = 1;
  c->roll_start_ms = gn_now_mono_ms();
  health(c, "rollover", json_pack("{s:s, s:s}", "event", "started", "from",
                                  c->channel_id ? c->channel_id : ""));
  if (c->waiting_token) {
    roll_abort(c, "a token refresh is under way");
    return;
  }
  if (fresh_token(c, TOKP_ROLL)) roll_post(c);
}

static void roll_post(gn_client_t *c) {
  if (!c->rolling || c->roll_req || c->roll_conn) return;
  char url[1024];
  snprintf(url, sizeof url, "%s/api/v2/notifications/channels", c->api_base);
  if (!c->token || rest_call(c, &c->roll_req, "POST", url, NULL, roll_channel_done) != 0)
    roll_abort(c, "cannot start the request for the new channel");
}

/* ---- live subscription changes ---- */

static void live_put_done(void *ud, const gn_http_result_t *hr) {
  gn_client_t *c = ud;
  c->sub_req = NULL;
  if (hr->error || (hr->status != 200 && hr->status != 201 && hr->status != 204)) {
    if (hr->status == 404) c->hard_next = 1;
    if (hr->status == 400 || hr->status == 413) {
      refuse_new_topics(c, hr);
      if (!c->sub_400_retried) {
        c->sub_400_retried = 1;
        c->topics_dirty = 1;
        put_live(c);
      }
      return;
    }
    if (hr->status == 401 && !c->live_auth_retried) {
      /* One refresh, then the change is put again. */
      c->live_auth_retried = 1;
      c->topics_dirty = 1;
      gn_token_invalidate(c->tok, c->token_gen);
      gn_free_secret(c->token);
      c->token = NULL;
      health(c, "token", json_pack("{s:s, s:s}", "event", "rejected", "error",
                                   "subscription change answered HTTP 401"));
      live_need_token(c);
      return;
    }
    char msg[300];
    if (hr->error) snprintf(msg, sizeof msg, "subscription change failed: %s", hr->error);
    else snprintf(msg, sizeof msg, "subscription change answered HTTP %ld", hr->status);
    health(c, "subscription", json_pack("{s:s, s:s, s:i}", "event", "failed", "error", msg,
                                        "status", (int)hr->status)); /* the next reconnect makes a channel with them */
    /* The topics stay remembered; they are put again with the next channel or reconnect. */
    return;
  }
  c->live_auth_retried = 0;
  report_subscriptions(c, hr->body, hr->body_len, "updated");
  if (c->topics_dirty) put_live(c);
}

static void live_need_token(gn_client_t *c) {
  if (c->waiting_token) return; /* a wait is already under way; its result is used */
  gn_token_result_t r;
  c->token_purpose = TOKP_LIVE;
  if (gn_token_get(c->tok, c->svc, &c->waiter, &r)) {
    c->token_purpose = TOKP_ATTEMPT;
    live_on_token(c, &r);
    gn_token_result_clear(&r);
  } else {
    c->waiting_token = 1;
  }
}

/* Makes c->token one with comfortable life left, from the shared cache (the token a client
 * got for its last attempt may be near its end by the time of a subscription change or a
 * rollover). Returns 1 when c->token is ready; 0 when a fetch is under way (its end runs the
 * purpose's continuation) or when the token could not be had (reported). */
static int fresh_token(gn_client_t *c, int purpose) {
  if (c->waiting_token) return 0;
  gn_token_result_t r;
  c->token_purpose = purpose;
  if (!gn_token_get(c->tok, c->svc, &c->waiter, &r)) {
    c->waiting_token = 1;
    return 0;
  }
  c->token_purpose = TOKP_ATTEMPT;
  if (r.kind != GN_TOK_OK) {
    if (purpose == TOKP_LIVE)
      health(c, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r.error));
    else if (c->rolling)
      roll_abort(c, r.error);
    gn_token_result_clear(&r);
    return 0;
  }
  gn_free_secret(c->token);
  c->token = r.token;
  r.token = NULL;
  c->token_gen = r.gen;
  if (r.fetched)
    health(c, "token", json_pack("{s:s, s:f}", "event", "refreshed", "expires_in_s",
                                 r.expires_in_s));
  gn_token_result_clear(&r);
  return 1;
}

static void live_on_token(gn_client_t *c, gn_token_result_t *r) {
  if (r->kind == GN_TOK_AGAIN) {
    live_need_token(c);
    return;
  }
  if (r->kind != GN_TOK_OK) {
    health(c, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error", r->error));
    return;
  }
  gn_free_secret(c->token);
  c->token = r->token;
  r->token = NULL;
  c->token_gen = r->gen;
  if (r->fetched)
    health(c, "token", json_pack("{s:s, s:f}", "event", "refreshed", "expires_in_s",
                                 r->expires_in_s));
  put_live(c);
}

static void put_live(gn_client_t *c) {
  if (!c->channel_id || c->sub_req) return;
  if (atomic_load(&c->state) != GN_ST_OPEN) return; /* the attempt will put them */
  if (!fresh_token(c, TOKP_LIVE)) return; /* put_live runs again when the token is in */
  c->topics_dirty = 0;
  char url[1024];
  snprintf(url, sizeof url, "%s/api/v2/notifications/channels/%s/subscriptions?ignoreErrors=true",
           c->api_base, c->channel_id);
  char *body = subs_body(&c->topics);
  if (!body || rest_call(c, &c->sub_req, "PUT", url, body, live_put_done) != 0) {
    c->topics_dirty = 1;
    health(c, "subscription", json_pack("{s:s, s:s}", "event", "failed", "error",
                                        "cannot start the subscription request"));
  }
  free(body);
}

/* ------------------------------------------------------------------------------------------ */
/* tasks posted by the owner */

typedef struct {
  gn_client_t *c;
  int add;
  size_t n;
  char **topics;
} sub_task_t;

static void task_start(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  uv_loop_t *loop = gn_service_loop(svc);
  c->backoff_timer = malloc(sizeof *c->backoff_timer);
  c->watchdog_timer = malloc(sizeof *c->watchdog_timer);
  if (!c->backoff_timer || !c->watchdog_timer) {
    free(c->backoff_timer);
    free(c->watchdog_timer);
    c->backoff_timer = c->watchdog_timer = NULL;
    final_failure(c, "memory", "out of memory");
    return;
  }
  uv_timer_init(loop, c->backoff_timer);
  uv_timer_init(loop, c->watchdog_timer);
  c->backoff_timer->data = c->watchdog_timer->data = c;
  c->member.poke = member_poke;
  gn_service_member_add(svc, &c->member);
  pthread_mutex_lock(&c->metrics.mu);
  c->metrics.started_ms = gn_now_mono_ms();
  pthread_mutex_unlock(&c->metrics.mu);
  run_attempt(c);
}

static void free_handle_cb(uv_handle_t *h) { free(h); }

static void task_close(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  roll_cancel(c);
  cancel_attempt_io(c);
  if (c->sub_req) gn_http_cancel(c->sub_req);
  c->sub_req = NULL;
  if (c->conn) gn_conn_close(c->conn, 1000, "client closed");
  c->conn = NULL;
  gn_token_cancel(c->tok, &c->waiter);
  if (c->backoff_timer) {
    uv_timer_stop(c->backoff_timer);
    uv_close((uv_handle_t *)c->backoff_timer, free_handle_cb);
    c->backoff_timer = NULL;
  }
  if (c->watchdog_timer) {
    uv_timer_stop(c->watchdog_timer);
    uv_close((uv_handle_t *)c->watchdog_timer, free_handle_cb);
    c->watchdog_timer = NULL;
  }
  gn_service_member_remove(svc, &c->member);
  set_state(c, GN_ST_CLOSED);
  if (gn_sched_open(&c->sched)) gn_sched_complete(&c->sched, 0);
  pthread_mutex_lock(&c->qmu);
  c->detached = 1;
  pthread_cond_broadcast(&c->qcv);
  pthread_mutex_unlock(&c->qmu);
}

static void task_reconnect(gn_service_t *svc, void *arg) {
  gn_client_t *c = arg;
  gn_state_t st = atomic_load(&c->state);
  if (c->rolling && !c->conn) {
    /* A rollover with the old socket gone is the attempt already under way. */
    gn_sched_complete(&c->sched, 0);
    return;
  }
  roll_cancel(c);
  if (st == GN_ST_OPEN) {
    if (c->conn) gn_conn_close(c->conn, 1000, "reconnect requested");
    c->conn = NULL;
    went_deaf(c);
    set_state(c, GN_ST_BACKOFF);
    health(c, "disconnected", json_pack("{s:s, s:i, s:s, s:s}", "reason", "manual", "code", 1000,
                                        "error", "client:reconnect() was called", "channel_id",
                                        c->channel_id ? c->channel_id : ""));
    schedule_attempt(c, GN_REASON_MANUAL, -1, "manual");
  } else if (st == GN_ST_FAILED) {
    /* A final failure: the application asks to start over with a fresh history. */
    gn_backoff_reset(&c->bo);
    c->auth_retried = 0;
    run_attempt(c);
  } else if (st == GN_ST_CLOSED || st == GN_ST_IDLE) {
    gn_sched_complete(&c->sched, 0);
  } else if (!c->in_attempt && !c->backoff_armed) {
    schedule_attempt(c, GN_REASON_MANUAL, -1, "manual");
  } else {
    /* Something already runs for this failure: nothing to add. */
    gn_sched_complete(&c->sched, 0);
  }
}

static void task_subscribe(gn_service_t *svc, void *arg) {
  sub_task_t *t = arg;
  gn_client_t *c = t->c;
  int changed = 0;
  for (size_t i = 0; i < t->n; i++) {
    int r = t->add ? strset_add(&c->topics, t->topics[i]) : strset_del(&c->topics, t->topics[i]);
    if (r > 0) changed = 1;
    free(t->topics[i]);
  }
  free(t->topics);
  free(t);
  if (!changed) return;
  c->topics_dirty = 1;
  put_live(c);
}

/* ------------------------------------------------------------------------------------------ */
/* owner-thread API */

gn_client_t *gn_client_new(const gn_client_cfg_t *cfg, gn_service_t *svc, char *err,
                           size_t errlen) {
  gn_client_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->efd = -1;
  gn_metrics_init(&c->metrics);
  pthread_mutex_init(&c->qmu, NULL);
  pthread_cond_init(&c->qcv, NULL);
  gn_sched_init(&c->sched);
  c->token_url = gn_strdup(cfg->token_url);
  c->api_base = gn_strdup(cfg->api_base);
  c->client_id = gn_strdup(cfg->client_id);
  c->client_secret = gn_strdup(cfg->client_secret);
  c->ca_file = cfg->ca_file ? gn_strdup(cfg->ca_file) : NULL;
  c->name = gn_strdup(cfg->name ? cfg->name : "");
  if (!c->token_url || !c->api_base || !c->client_id || !c->client_secret || !c->name ||
      (cfg->ca_file && !c->ca_file)) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  size_t bl = strlen(c->api_base);
  while (bl && c->api_base[bl - 1] == '/') c->api_base[--bl] = 0;
  c->verify = cfg->verify;
  c->connect_timeout_ms = cfg->connect_timeout_ms > 0 ? cfg->connect_timeout_ms : 10000;
  c->handshake_timeout_ms = cfg->handshake_timeout_ms > 0 ? cfg->handshake_timeout_ms : 10000;
  c->http_timeout_ms = cfg->http_timeout_ms > 0 ? cfg->http_timeout_ms : 30000;
  c->idle_ms = cfg->idle_ms > 0 ? cfg->idle_ms : 35000;
  c->ping_timeout_ms = cfg->ping_timeout_ms > 0 ? cfg->ping_timeout_ms : 10000;
  c->queue_limit = cfg->queue_limit ? cfg->queue_limit : 10000;
  c->max_message = cfg->max_message ? cfg->max_message : (1u << 20);
  c->policy = cfg->backoff;
  c->has_policy = cfg->policy;
  if (gn_backoff_init(&c->bo, &cfg->backoff, err, errlen) != 0) goto fail;
  for (size_t i = 0; i < cfg->ntopics; i++)
    if (strset_add(&c->topics, cfg->topics[i]) < 0) {
      snprintf(err, errlen, "out of memory");
      goto fail;
    }
  c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (c->efd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    goto fail;
  }
  gn_token_cfg_t tc = {c->token_url, c->client_id, c->client_secret, c->ca_file, c->verify,
                       c->http_timeout_ms, c->connect_timeout_ms};
  c->tok = gn_token_entry_acquire(&tc);
  if (!c->tok) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  if (svc) {
    gn_service_ref(svc);
    c->svc = svc;
  } else if (!(c->svc = gn_service_acquire_default(err, errlen))) {
    goto fail;
  }
  atomic_store(&c->state, GN_ST_IDLE);
  return c;
fail:
  gn_client_free(c);
  return NULL;
}

int gn_client_start(gn_client_t *c) {
  int expected = 0;
  if (atomic_load(&c->closing) || !atomic_compare_exchange_strong(&c->started, &expected, 1))
    return -1;
  gn_sched_trigger(&c->sched, GN_REASON_MANUAL); /* the first connection is the first cycle */
  if (gn_service_post(c->svc, task_start, c) != 0) return -1;
  return 0;
}

int gn_client_reconnect(gn_client_t *c) {
  if (!atomic_load(&c->started) || atomic_load(&c->closing)) return -1;
  if (!gn_sched_trigger(&c->sched, GN_REASON_MANUAL)) return 0;
  if (gn_service_post(c->svc, task_reconnect, c) != 0) {
    gn_sched_complete(&c->sched, 0);
    return -1;
  }
  return 1;
}

int gn_client_subscribe(gn_client_t *c, const char *const *topics, size_t n, int add) {
  if (atomic_load(&c->closing)) return -1;
  sub_task_t *t = calloc(1, sizeof *t);
  if (!t || !(t->topics = calloc(n ? n : 1, sizeof *t->topics))) {
    free(t);
    return -1;
  }
  t->c = c;
  t->add = add;
  for (; t->n < n; t->n++)
    if (!(t->topics[t->n] = gn_strdup(topics[t->n]))) goto oom;
  if (!atomic_load(&c->started)) {
    /* Not running yet: change the initial set directly (no other thread touches it). */
    for (size_t i = 0; i < t->n; i++) {
      if (add) strset_add(&c->topics, t->topics[i]);
      else strset_del(&c->topics, t->topics[i]);
    }
    goto oom; /* frees the task */
  }
  if (gn_service_post(c->svc, task_subscribe, t) != 0) goto oom;
  return 0;
oom:
  for (size_t i = 0; i < t->n; i++) free(t->topics[i]);
  free(t->topics);
  free(t);
  return atomic_load(&c->started) ? -1 : 0;
}

void gn_client_close(gn_client_t *c) {
  int expected = 0;
  if (!atomic_compare_exchange_strong(&c->closing, &expected, 1)) return;
  if (atomic_load(&c->started) && gn_service_post(c->svc, task_close, c) == 0) {
    pthread_mutex_lock(&c->qmu);
    while (!c->detached) pthread_cond_wait(&c->qcv, &c->qmu);
    pthread_mutex_unlock(&c->qmu);
  } else {
    pthread_mutex_lock(&c->qmu);
    c->detached = 1;
    pthread_mutex_unlock(&c->qmu);
  }
  set_state(c, GN_ST_CLOSED);
  /* Drop what was never read: the owner asked for no more callbacks. */
  pthread_mutex_lock(&c->qmu);
  gn_item_t *it = c->qhead;
  c->qhead = c->qtail = NULL;
  c->qevents = 0;
  pthread_mutex_unlock(&c->qmu);
  while (it) {
    gn_item_t *n = it->next;
    gn_item_free(it);
    it = n;
  }
  gn_service_t *svc = c->svc;
  c->svc = NULL;
  gn_service_release(svc);
  /* The cached token lives while some client uses its credential, not until this object is
   * collected. */
  gn_token_entry_release(c->tok);
  c->tok = NULL;
}

void gn_client_free(gn_client_t *c) {
  if (!c) return;
  if (c->svc) gn_client_close(c);
  gn_token_entry_release(c->tok);
  gn_item_t *it = c->qhead;
  while (it) {
    gn_item_t *n = it->next;
    gn_item_free(it);
    it = n;
  }
  if (c->efd >= 0) close(c->efd);
  strset_free(&c->topics);
  strset_free(&c->confirmed);
  drop_channel(c);
  free(c->roll_channel_id);
  free(c->roll_connect_uri);
  gn_free_secret(c->token);
  gn_token_result_clear(&c->waiter.res);
  free(c->token_url);
  free(c->api_base);
  free(c->client_id);
  gn_free_secret(c->client_secret);
  free(c->ca_file);
  free(c->name);
  gn_metrics_destroy(&c->metrics);
  pthread_mutex_destroy(&c->qmu);
  pthread_cond_destroy(&c->qcv);
  free(c);
}

int gn_client_fd(gn_client_t *c) { return c->efd; }

gn_item_t *gn_client_pop(gn_client_t *c) {
  pthread_mutex_lock(&c->qmu);
  gn_item_t *it = NULL;
  if (c->dropped > c->dropped_reported) {
    /* Report drops as soon as the owner reads again, before the next event. */
    uint64_t n = c->dropped - c->dropped_reported;
    it = calloc(1, sizeof *it);
    if (it) { /* without memory the report waits for the next pop */
      c->dropped_reported = c->dropped;
      it->type = GN_ITEM_HEALTH;
      it->data = json_pack("{s:s, s:I, s:I, s:I, s:f}", "kind", "overflow", "dropped",
                           (json_int_t)n, "total_dropped", (json_int_t)c->dropped, "queue_limit",
                           (json_int_t)c->queue_limit, "timestamp_ms", gn_now_wall_ms());
    }
  }
  if (!it && c->qhead) {
    it = c->qhead;
    c->qhead = it->next;
    if (!c->qhead) c->qtail = NULL;
    if (it->type == GN_ITEM_EVENT) c->qevents--;
    it->next = NULL;
  }
  if (!c->qhead && c->dropped == c->dropped_reported) {
    uint64_t v;
    ssize_t r = read(c->efd, &v, sizeof v); /* not readable while nothing waits */
    (void)r;
  }
  pthread_mutex_unlock(&c->qmu);
  return it;
}

gn_state_t gn_client_state(gn_client_t *c) { return atomic_load(&c->state); }

void gn_client_metrics(gn_client_t *c, gn_metrics_snapshot_t *out) {
  gn_metrics_snapshot(&c->metrics, out);
}

const char *gn_client_name(gn_client_t *c) { return c->name; }

void gn_client_sched_counts(gn_client_t *c, uint64_t *cycles, uint64_t *coalesced,
                            uint64_t *triggers) {
  *cycles = atomic_load(&c->sched.cycles);
  *coalesced = atomic_load(&c->sched.coalesced);
  *triggers = atomic_load(&c->sched.triggers);
}

unsigned long gn_client_token_requests(gn_client_t *c) {
  return c->tok ? gn_token_requests(c->tok) : 0;
}
