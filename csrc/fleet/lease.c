/* lease.c: the fleet lease and the stream append (see lease.h). Service thread but for
 * gn_lease_new/free (owner, while stopped) and gn_lease_stats (any thread, under mu). */
#include "lease.h"
#include "redis.h"
#include "gn_util.h"
#include "service.h"
#include "uvtimer.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct gn_lease {
  gn_env_t *env;
  gn_lease_hooks_t hooks;
  gn_redis_conf_t conf;
  char *k_lease, *k_fence, *k_last, *k_stream, *k_gaps;
  char value[160];           /* host:pid:random: who holds it, nothing secret */
  double lease_ms, margin_ms;
  char maxlen[24];
  gn_backoff_t bo;
  gn_redis_t *r;
  uv_timer_t *timer;
  int running;
  gn_lease_state_t st;       /* the service thread's copy (stats.state: the shown one) */
  uint64_t gen;              /* bumped at each change of tenure: older answers are ignored */
  int inflight;              /* an acquire or renew request is out */
  uint64_t inflight_since;
  uint64_t stepdown_at;      /* monotonic ms: park the stream by then without a renewal */
  int gap_pending;           /* a takeover: write the gap marker once the stream is open */
  double gap_from_wall;
  int redis_reported_down;   /* one "redis down" item per outage */
  int append_err_reported;   /* one "append failed" item until an append succeeds again */
  int replicated;            /* this tenure's lease and fence reached the replicas (Sentinel) */
  pthread_mutex_t mu;
  gn_lease_stats_t stats;
};

typedef struct {
  gn_lease_t *l;
  uint64_t gen;
  uint64_t sent;
} req_t;

/* KEYS: lease, fence, last, stream; ARGV: value, lease_ms, wall_ms. A missing counter (a new
 * fleet, or a Redis that lost its data) starts from the wall clock in ms, so fences stay above
 * those handed out before the loss as long as the nodes' clocks agree to within the outage.
 * Already ours (an earlier request that this process gave up waiting for, run late by a Redis
 * that was stopped) counts as taken. Returns nil (held by another), or {fence, last renewal wall ms or false, last stream id or false}. */
static const char ACQUIRE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end\n"
    "if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[3]) end\n"
    "local f = redis.call('INCR', KEYS[2])\n"
    "local last = redis.call('GET', KEYS[3])\n"
    "local top = redis.call('XREVRANGE', KEYS[4], '+', '-', 'COUNT', 1)\n"
    "redis.call('SET', KEYS[3], ARGV[3])\n"
    "local id = false\n"
    "if top[1] then id = top[1][1] end\n"
    "return {f, last or false, id}\n";
/* KEYS: lease; ARGV: value. Deletes the lease if it is ours (a holder closing: the next one need
 * not wait for it to expire). */
static const char RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";
/* KEYS: lease, last; ARGV: value, lease_ms, wall_ms. 1: extended; 0: not ours any more. */
static const char RENEW[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "redis.call('SET', KEYS[2], ARGV[3])\n"
    "return 1\n";

const char *gn_lease_state_name(gn_lease_state_t s) {
  switch (s) {
  case GN_LEASE_CANDIDATE: return "candidate";
  case GN_LEASE_HOLDER: return "holder";
  default: return "stopped";
  }
}

static char *key_of(const char *base, const char *suffix) {
  size_t n = strlen(base) + strlen(suffix) + 2;
  char *k = malloc(n);
  if (k) snprintf(k, n, "%s:%s", base, suffix);
  return k;
}

static void link_cb(void *ud, int up, const char *err);

static void set_state(gn_lease_t *l, gn_lease_state_t st) {
  l->st = st;
  pthread_mutex_lock(&l->mu);
  l->stats.state = st;
  pthread_mutex_unlock(&l->mu);
}

#define STAT_ADD(l, field)              \
  do {                                  \
    pthread_mutex_lock(&(l)->mu);       \
    (l)->stats.field++;                 \
    pthread_mutex_unlock(&(l)->mu);     \
  } while (0)

static void health(gn_lease_t *l, const char *kind, json_t *fields) {
  gn_env_health(l->env, kind, fields);
}

static void arm(gn_lease_t *l, double ms);

/* ---- stepping down and retrying ---- */

static void retry_later(gn_lease_t *l) {
  double d = 0;
  if (gn_backoff_next(&l->bo, -1, gn_now_mono_ms(), &d) != GN_BACKOFF_OK) {
    gn_backoff_reset(&l->bo);
    gn_backoff_next(&l->bo, -1, gn_now_mono_ms(), &d);
  }
  arm(l, d);
}

static void step_down(gn_lease_t *l, const char *event, const char *reason) {
  if (l->st != GN_LEASE_HOLDER) return;
  l->gen++;
  l->inflight = 0;
  l->gap_pending = 0;
  set_state(l, GN_LEASE_CANDIDATE);
  if (strcmp(event, "lost") == 0) STAT_ADD(l, lost);
  else STAT_ADD(l, stepped_down);
  l->hooks.stop(l->hooks.ud);
  pthread_mutex_lock(&l->mu);
  uint64_t fence = l->stats.fence;
  pthread_mutex_unlock(&l->mu);
  health(l, "lease", json_pack("{s:s, s:s, s:I}", "event", event, "reason", reason, "fence",
                               (json_int_t)fence));
  retry_later(l);
}

static void ignore_reply(void *ud, redisReply *rep) {
  (void)ud;
  (void)rep;
}

/* ---- the gap marker ---- */

static void append_done(void *ud, redisReply *rep) {
  gn_lease_t *l = ud;
  if (!l->running) return;
  if (rep && rep->type != REDIS_REPLY_ERROR) {
    STAT_ADD(l, appended);
    l->append_err_reported = 0;
    return;
  }
  STAT_ADD(l, append_failed);
  if (!l->append_err_reported) {
    l->append_err_reported = 1;
    health(l, "stream", json_pack("{s:s, s:s}", "event", "append_failed", "error",
                                  rep ? rep->str : "connection lost before the answer"));
  }
}

static void append_refused(gn_lease_t *l) {
  STAT_ADD(l, append_failed);
  if (!l->append_err_reported) {
    l->append_err_reported = 1;
    health(l, "stream", json_pack("{s:s, s:s}", "event", "append_failed", "error",
                                  "not connected to redis"));
  }
}

/* The wall time the live connection opened, or -1 when it is not open. */
static double open_wall_ms(gn_lease_t *l) {
  gn_state_t s = atomic_load(&l->env->state);
  if (s != GN_ST_OPEN && s != GN_ST_ROLLOVER) return -1;
  pthread_mutex_lock(&l->env->metrics->mu);
  uint64_t since = l->env->metrics->open_since_ms;
  pthread_mutex_unlock(&l->env->metrics->mu);
  uint64_t now = gn_now_mono_ms();
  double wall = gn_now_wall_ms();
  return since && since <= now ? wall - (double)(now - since) : wall;
}

static void write_gap(gn_lease_t *l) {
  if (!l->gap_pending) return;
  double to = open_wall_ms(l);
  if (to < 0) return;
  char fence[24], from_s[32], to_s[32], gap_s[32];
  pthread_mutex_lock(&l->mu);
  snprintf(fence, sizeof fence, "%llu", (unsigned long long)l->stats.fence);
  pthread_mutex_unlock(&l->mu);
  if (to < l->gap_from_wall) to = l->gap_from_wall;
  snprintf(from_s, sizeof from_s, "%.0f", l->gap_from_wall);
  snprintf(to_s, sizeof to_s, "%.0f", to);
  snprintf(gap_s, sizeof gap_s, "%.0f", to - l->gap_from_wall);
  const char *argv[] = {"XADD",      l->k_stream, "MAXLEN", "~",    l->maxlen, "*",
                        "type",      "gap",       "from_ms", from_s, "to_ms",   to_s,
                        "gap_ms",    gap_s,       "fence",   fence};
  size_t n = sizeof argv / sizeof *argv;
  if (gn_redis_cmd(l->r, append_done, l, (int)n, argv, NULL) != 0) return; /* later */
  /* and on KEY:gaps, where every consumer of a group sees it (a group shares the stream) */
  argv[1] = l->k_gaps;
  argv[4] = "1000";
  gn_redis_cmd(l->r, append_done, l, (int)n, argv, NULL);
  l->gap_pending = 0;
  STAT_ADD(l, gaps);
}

/* env->tap: each event the channel delivers. */
static int tap(void *ud, const gn_msg_t *m, const char *channel_id, const char *raw, size_t len) {
  gn_lease_t *l = ud;
  if (!l->running || l->st != GN_LEASE_HOLDER || !l->replicated ||
      gn_now_mono_ms() >= l->stepdown_at) {
    STAT_ADD(l, discarded);
    return 0;
  }
  write_gap(l);
  char fence[24], recv[32];
  pthread_mutex_lock(&l->mu);
  snprintf(fence, sizeof fence, "%llu", (unsigned long long)l->stats.fence);
  pthread_mutex_unlock(&l->mu);
  snprintf(recv, sizeof recv, "%.0f", gn_now_wall_ms());
  const char *cid = m->correlation_id ? m->correlation_id : "";
  const char *topic = m->topic ? m->topic : "";
  const char *argv[] = {"XADD",       l->k_stream, "MAXLEN",     "~",    l->maxlen,
                        "*",          "type",      "event",      "topic", topic,
                        "channel_id", channel_id,  "received_ms", recv,  "correlation_id",
                        cid,          "fence",     fence,        "raw",  raw};
  size_t lens[sizeof argv / sizeof *argv];
  size_t n = sizeof argv / sizeof *argv;
  for (size_t i = 0; i + 1 < n; i++) lens[i] = strlen(argv[i]);
  lens[n - 1] = len;
  if (gn_redis_cmd(l->r, append_done, l, (int)n, argv, lens) != 0) append_refused(l);
  return 1;
}

/* ---- acquire and renew ---- */

static req_t *new_req(gn_lease_t *l) {
  req_t *q = malloc(sizeof *q);
  if (!q) return NULL;
  q->l = l;
  q->gen = l->gen;
  q->sent = gn_now_mono_ms();
  return q;
}

static void redis_error(gn_lease_t *l, const char *what, const char *msg) {
  health(l, "redis", json_pack("{s:s, s:s, s:s}", "event", "error", "request", what, "error",
                               msg ? msg : "?"));
}

static void acquired(gn_lease_t *l, const req_t *q, redisReply *rep) {
  uint64_t fence = rep->element[0]->type == REDIS_REPLY_INTEGER ? (uint64_t)rep->element[0]->integer : 0;
  double from = -1;
  if (rep->elements > 1 && rep->element[1]->type == REDIS_REPLY_STRING)
    from = strtod(rep->element[1]->str, NULL);
  if (rep->elements > 2 && rep->element[2]->type == REDIS_REPLY_STRING) {
    double id_ms = strtod(rep->element[2]->str, NULL); /* "ms-seq" */
    if (id_ms > from) from = id_ms;
  }
  l->gen++;
  l->stepdown_at = q->sent + (uint64_t)(l->lease_ms - l->margin_ms);
  l->gap_pending = from >= 0;
  l->gap_from_wall = from;
  gn_backoff_reset(&l->bo);
  pthread_mutex_lock(&l->mu);
  l->stats.fence = fence;
  l->stats.acquired++;
  pthread_mutex_unlock(&l->mu);
  set_state(l, GN_LEASE_HOLDER);
  health(l, "lease", json_pack("{s:s, s:I, s:f, s:s}", "event", "acquired", "fence",
                               (json_int_t)fence, "lease_ms", l->lease_ms, "holder", l->value));
  l->hooks.start(l->hooks.ud);
  arm(l, l->lease_ms / 3);
}

/* With Sentinel, a new tenure's lease and fence must reach conf.min_replicas replicas (WAIT)
 * before an event is appended under it: a failover then promotes a replica that has them (the
 * most up-to-date one), so no later holder can be handed the same fence. Until then events are
 * withheld (discarded, counted); without the replicas in time, the holder steps down. */
static void wait_done(void *ud, redisReply *rep) {
  req_t *q = ud;
  gn_lease_t *l = q->l;
  int stale = !l->running || q->gen != l->gen || l->st != GN_LEASE_HOLDER;
  free(q);
  if (stale) return;
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer >= l->conf.min_replicas) {
    l->replicated = 1;
    return;
  }
  step_down(l, "stepped_down", "the lease did not reach a replica in time (WAIT): a failover "
            "could hand its fence to another holder");
}

static void confirm_replicated(gn_lease_t *l) {
  l->replicated = !l->conf.master || l->conf.min_replicas <= 0;
  if (l->replicated) return;
  req_t *q = new_req(l);
  char n[16], ms[32];
  snprintf(n, sizeof n, "%d", l->conf.min_replicas);
  snprintf(ms, sizeof ms, "%.0f", l->margin_ms);
  const char *argv[] = {"WAIT", n, ms};
  if (!q || gn_redis_cmd(l->r, wait_done, q, 3, argv, NULL) != 0) {
    free(q);
    step_down(l, "stepped_down", "could not ask whether the lease reached a replica (WAIT)");
  }
}

static void acquire_done(void *ud, redisReply *rep) {
  req_t *q = ud;
  gn_lease_t *l = q->l;
  if (!l->running || q->gen != l->gen || l->st != GN_LEASE_CANDIDATE) {
    free(q);
    return;
  }
  l->inflight = 0;
  if (!rep) { /* the link callback retries */
    free(q);
    return;
  }
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1) {
    acquired(l, q, rep);
    if (l->running && l->st == GN_LEASE_HOLDER) confirm_replicated(l);
  } else {
    if (rep->type == REDIS_REPLY_ERROR) redis_error(l, "acquire", rep->str);
    retry_later(l);
  }
  free(q);
}

static void acquire(gn_lease_t *l) {
  req_t *q = new_req(l);
  if (!q) {
    retry_later(l);
    return;
  }
  char ms[32], wall[32];
  snprintf(ms, sizeof ms, "%.0f", l->lease_ms);
  snprintf(wall, sizeof wall, "%.0f", gn_now_wall_ms());
  const char *argv[] = {"EVAL",    ACQUIRE,  "4",      l->k_lease, l->k_fence, l->k_last,
                        l->k_stream, l->value, ms,     wall};
  STAT_ADD(l, attempts);
  if (gn_redis_cmd(l->r, acquire_done, q, 10, argv, NULL) != 0) {
    free(q);
    retry_later(l);
    return;
  }
  l->inflight = 1;
  l->inflight_since = q->sent;
  /* the timer stays armed while the answer is out: one that never comes (or one that is not
   * this request's) is noticed by tick(), never waited for forever */
  arm(l, l->lease_ms / 3);
}

static void renew_done(void *ud, redisReply *rep) {
  req_t *q = ud;
  gn_lease_t *l = q->l;
  if (!l->running || q->gen != l->gen || l->st != GN_LEASE_HOLDER) {
    free(q);
    return;
  }
  l->inflight = 0;
  if (rep && rep->type == REDIS_REPLY_INTEGER) {
    if (rep->integer == 1) {
      uint64_t at = q->sent + (uint64_t)(l->lease_ms - l->margin_ms);
      if (at > l->stepdown_at) l->stepdown_at = at;
      STAT_ADD(l, renewals);
    } else {
      free(q);
      step_down(l, "lost", "the lease is held by another process or expired at redis");
      return;
    }
  } else if (rep && rep->type == REDIS_REPLY_ERROR) {
    redis_error(l, "renew", rep->str);
  }
  free(q);
}

static void renew(gn_lease_t *l) {
  req_t *q = new_req(l);
  if (!q) return;
  char ms[32], wall[32];
  snprintf(ms, sizeof ms, "%.0f", l->lease_ms);
  snprintf(wall, sizeof wall, "%.0f", gn_now_wall_ms());
  const char *argv[] = {"EVAL", RENEW, "2", l->k_lease, l->k_last, l->value, ms, wall};
  if (gn_redis_cmd(l->r, renew_done, q, 8, argv, NULL) != 0) {
    free(q);
    return;
  }
  l->inflight = 1;
  l->inflight_since = q->sent;
}

/* ---- the timer ---- */

static void tick(gn_lease_t *l) {
  if (!l->running) return;
  uint64_t now = gn_now_mono_ms();
  double period = l->lease_ms / 3;
  if (l->st == GN_LEASE_HOLDER) {
    if (now >= l->stepdown_at) {
      step_down(l, "stepped_down", "no renewal confirmed in time");
      return;
    }
    write_gap(l);
    if (l->inflight && (double)(now - l->inflight_since) > period) {
      gn_redis_drop(l->r, "no answer in time"); /* link_cb: down */
    } else if (!gn_redis_busy(l->r)) {
      gn_redis_connect(l->r);
    } else if (gn_redis_up(l->r) && !l->inflight) {
      renew(l);
    }
    if (!l->running || l->st != GN_LEASE_HOLDER) return;
    uint64_t t = gn_now_mono_ms();
    double left = l->stepdown_at > t ? (double)(l->stepdown_at - t) : 0;
    double next = l->gap_pending ? 20 : period;
    arm(l, left < next ? left : next);
    return;
  }
  /* candidate */
  if (l->inflight && (double)(now - l->inflight_since) > period) {
    l->inflight = 0;
    if (gn_redis_busy(l->r)) gn_redis_drop(l->r, "no answer in time"); /* link_cb: retry */
    else retry_later(l);
    return;
  }
  if (!gn_redis_busy(l->r)) {
    if (gn_redis_connect(l->r) == 0) arm(l, l->lease_ms); /* a connect that never ends */
    return;
  }
  if (gn_redis_up(l->r) && !l->inflight) {
    acquire(l);
    return;
  }
  if (!gn_redis_up(l->r)) { /* still connecting after a whole lease: start over */
    gn_redis_drop(l->r, "connect timed out");
    return;
  }
  arm(l, period);
}

static void timer_cb(uv_timer_t *t) { tick(t->data); }

static void arm(gn_lease_t *l, double ms) {
  if (!l->timer) return;
  if (!(ms >= 0)) ms = 0;
  uv_timer_start(l->timer, timer_cb, (uint64_t)ceil(ms), 0);
}

static void link_cb(void *ud, int up, const char *err) {
  gn_lease_t *l = ud;
  if (!l->running) return;
  pthread_mutex_lock(&l->mu);
  l->stats.redis_up = up;
  pthread_mutex_unlock(&l->mu);
  if (up) {
    if (l->redis_reported_down) {
      l->redis_reported_down = 0;
      health(l, "redis", json_pack("{s:s}", "event", "connected"));
    }
    if (l->st == GN_LEASE_CANDIDATE) acquire(l);
    else if (l->st == GN_LEASE_HOLDER) renew(l);
    return;
  }
  l->inflight = 0;
  if (!l->redis_reported_down) {
    l->redis_reported_down = 1;
    health(l, "redis", json_pack("{s:s, s:s}", "event", "down", "error", err ? err : "?"));
  }
  if (l->st == GN_LEASE_CANDIDATE) {
    retry_later(l);
  } else if (l->st == GN_LEASE_HOLDER) {
    uint64_t now = gn_now_mono_ms();
    double left = l->stepdown_at > now ? (double)(l->stepdown_at - now) : 0;
    double next = l->lease_ms / 10;
    arm(l, left < next ? left : next);
  }
}

/* ---- life ---- */

gn_lease_t *gn_lease_new(const gn_lease_cfg_t *cfg, gn_env_t *env, const gn_lease_hooks_t *hooks,
                         char *err, size_t errlen) {
  if (!cfg->key || !cfg->key[0]) {
    snprintf(err, errlen, "redis.key: expected a non-empty string");
    return NULL;
  }
  if (!(cfg->lease_ms >= 100 && cfg->lease_ms <= 3600e3)) {
    snprintf(err, errlen, "redis.lease_ms: expected a number of milliseconds from 100 to 3600000");
    return NULL;
  }
  gn_lease_t *l = calloc(1, sizeof *l);
  if (!l) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  pthread_mutex_init(&l->mu, NULL);
  l->env = env;
  l->hooks = *hooks;
  if (gn_redis_conf_init(&l->conf, &cfg->redis, err, errlen) != 0) goto fail;
  l->lease_ms = cfg->lease_ms;
  l->margin_ms = cfg->margin_ms > 0 ? cfg->margin_ms : cfg->lease_ms / 5;
  if (l->margin_ms >= l->lease_ms / 2) {
    snprintf(err, errlen, "redis.margin_ms: expected less than half of lease_ms");
    goto fail;
  }
  snprintf(l->maxlen, sizeof l->maxlen, "%zu", cfg->maxlen ? cfg->maxlen : (size_t)100000);
  gn_backoff_policy_t p;
  if (cfg->backoff) {
    p = *cfg->backoff;
  } else {
    gn_backoff_policy_default(&p);
    p.base_ms = cfg->lease_ms / 5;
    p.max_ms = cfg->lease_ms / 2;
    p.multiplier = 2;
    p.jitter = GN_JITTER_EQUAL;
    p.max_retries = 0;
    p.max_window_ms = 0;
  }
  if (gn_backoff_init(&l->bo, &p, err, errlen) != 0) goto fail;
  if (!(l->k_lease = key_of(cfg->key, "lease")) || !(l->k_fence = key_of(cfg->key, "fence")) ||
      !(l->k_last = key_of(cfg->key, "last")) || !(l->k_stream = key_of(cfg->key, "stream")) ||
      !(l->k_gaps = key_of(cfg->key, "gaps"))) {
    snprintf(err, errlen, "out of memory");
    goto fail;
  }
  char host[64] = "";
  gethostname(host, sizeof host - 1);
  host[sizeof host - 1] = 0;
  snprintf(l->value, sizeof l->value, "%s:%d:%08x", host[0] ? host : "host", (int)getpid(),
           (unsigned)(gn_backoff_uniform(&l->bo) * 4294967296.0));
  env->tap = tap;
  env->tap_ud = l;
  return l;
fail:
  gn_lease_free(l);
  return NULL;
}

void gn_lease_start(gn_lease_t *l) {
  uv_loop_t *loop = gn_service_loop(l->env->svc);
  set_state(l, GN_LEASE_CANDIDATE);
  l->running = 1;
  if (!(l->r = gn_redis_new(loop, &l->conf, link_cb, l)) || !(l->timer = gn_timer_new(loop, l))) {
    health(l, "lease", json_pack("{s:s, s:s}", "event", "failed", "reason", "out of memory"));
    gn_lease_stop(l);
    return;
  }
  tick(l);
}

void gn_lease_stop(gn_lease_t *l) {
  if (l->st == GN_LEASE_HOLDER) {
    l->hooks.stop(l->hooks.ud);
    /* Let go at Redis: sent now (appends still buffered go first), no answer awaited. */
    const char *argv[] = {"EVAL", RELEASE, "1", l->k_lease, l->value};
    if (l->r && gn_redis_cmd(l->r, ignore_reply, NULL, 5, argv, NULL) == 0) gn_redis_flush(l->r);
  }
  l->running = 0;
  l->gen++;
  gn_timer_close(&l->timer);
  gn_redis_free(l->r); /* pending answers come back NULL now and are ignored (running) */
  l->r = NULL;
  set_state(l, GN_LEASE_STOPPED);
}

void gn_lease_free(gn_lease_t *l) {
  if (!l) return;
  free(l->k_lease);
  free(l->k_fence);
  free(l->k_last);
  free(l->k_stream);
  free(l->k_gaps);
  gn_redis_conf_clear(&l->conf);
  pthread_mutex_destroy(&l->mu);
  free(l);
}

void gn_lease_stats(gn_lease_t *l, gn_lease_stats_t *out) {
  pthread_mutex_lock(&l->mu);
  *out = l->stats;
  pthread_mutex_unlock(&l->mu);
}
