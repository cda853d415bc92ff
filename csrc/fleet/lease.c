/* lease.c: the fleet lease: acquire, renew, step down, the memory policy (see lease.h; the
 * holder's writes are append.c's). Service thread but for gn_lease_new/free (owner, while
 * stopped) and gn_lease_stats (any thread, under mu). */
#include "lease_int.h"
#include "service.h"
#include "uvtimer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  gn_lease_t *l;
  uint64_t gen;
  uint64_t sent;
} req_t;

/* KEYS: lease, fence, last; ARGV: value, lease_ms, wall_ms, the watermark time last seen (or
 * ""). A missing counter (a new fleet, or a Redis that lost its data) starts from the wall clock
 * in ms, so fences stay above those handed out before the loss as long as the nodes' clocks
 * agree to within the outage. Already ours (an earlier request that this process gave up
 * waiting for, run late by a Redis that was stopped) counts as taken. Returns {false, KEY:last}
 * (held by another) or {fence, the watermark's time or false}; KEY:last keeps its time (the
 * hole is ours to mark once the stream is open) and names this tenure's write 0. */
static const char ACQUIRE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "elseif not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then\n"
    "  return {false, redis.call('GET', KEYS[3]) or false} end\n"
    "if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[3]) end\n"
    "local f = redis.call('INCR', KEYS[2])\n"
    "local last = redis.call('GET', KEYS[3])\n"
    "local t = false\n"
    "if last then t = string.match(last, '^(%S+)') end\n"
    "local keep = t or ARGV[4]\n"
    "if keep == '' then keep = ARGV[3] end\n"
    "redis.call('SET', KEYS[3], keep .. ' ' .. f .. ':0')\n"
    "return {f, t}\n";
/* KEYS: lease; ARGV: value. Deletes the lease if it is ours (a holder closing: the next one need
 * not wait for it to expire). */
static const char RELEASE[] =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n";
/* KEYS: lease, last; ARGV: value, lease_ms, the token of our latest write, the time we listened
 * until (the sockets' last proof of life; "": not listening). 1: extended; 0: not ours any more. The watermark moves on only
 * while it names our latest write (every earlier hole is marked); a failure to move it (a full
 * memory) does not fail the renewal. */
static const char RENEW[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "if ARGV[4] ~= '' then\n"
    "  local last = redis.call('GET', KEYS[2])\n"
    "  local t, tok\n"
    "  if last then t, tok = string.match(last, '^(%S+) (%S+)$') end\n"
    "  if tok == ARGV[3] and tonumber(ARGV[4]) > tonumber(t) then\n"
    "    redis.pcall('SET', KEYS[2], ARGV[4] .. ' ' .. ARGV[3]) end\n"
    "end\n"
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

void gn_lease_health(gn_lease_t *l, const char *kind, json_t *fields) {
  gn_env_health(l->env, kind, fields);
}
static void health(gn_lease_t *l, const char *kind, json_t *fields) {
  gn_lease_health(l, kind, fields);
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
  gn_lease_wq_clear(l); /* not sent: the next holder's takeover marker covers them */
  l->hole = 0; /* the next holder's takeover marker covers it */
  gn_lease_ho_clear(l); /* what a successor kept and had not appended: the next marker's */
  set_state(l, GN_LEASE_CANDIDATE);
  if (strcmp(event, "lost") == 0) STAT_ADD(l, lost);
  else STAT_ADD(l, stepped_down);
  l->hooks.stop(l->hooks.ud);
  health(l, "lease", json_pack("{s:s, s:s, s:I}", "event", event, "reason", reason, "fence",
                               (json_int_t)l->fence));
  retry_later(l);
}
void gn_lease_step_down(gn_lease_t *l, const char *event, const char *reason) {
  step_down(l, event, reason);
}

static void ignore_reply(void *ud, redisReply *rep) {
  (void)ud;
  (void)rep;
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

/* The watermark's time in an answer element ("<ms> <token>"), or -1. */
static double watermark_of(const redisReply *e) {
  return e->type == REDIS_REPLY_STRING ? strtod(e->str, NULL) : -1;
}

static void acquired(gn_lease_t *l, const req_t *q, redisReply *rep) {
  uint64_t fence = (uint64_t)rep->element[0]->integer;
  /* The hole starts where the last holder's watermark is; a Redis that lost it (and its data)
   * leaves the latest one this process saw; a new fleet has none (no marker). */
  double from = rep->elements > 1 ? watermark_of(rep->element[1]) : -1;
  if (from < 0 && l->known_last > 0) from = l->known_last;
  l->gen++;
  l->stepdown_at = q->sent + (uint64_t)(l->lease_ms - l->margin_ms);
  l->gap_pending = 1;
  l->gap_from_wall = from;
  l->fence = fence;
  l->seq = 0;
  l->tenure_wall = gn_now_wall_ms();
  gn_backoff_reset(&l->bo);
  pthread_mutex_lock(&l->mu);
  l->stats.fence = fence;
  l->stats.acquired++;
  pthread_mutex_unlock(&l->mu);
  set_state(l, GN_LEASE_HOLDER);
  health(l, "lease", json_pack("{s:s, s:I, s:f, s:s}", "event", "acquired", "fence",
                               (json_int_t)fence, "lease_ms", l->lease_ms, "holder", l->value));
  if (l->successor) { /* its stream runs: what it kept goes in once the tail is read */
    l->successor = 0;
    l->flushing = 1;
  } else {
    l->hooks.start(l->hooks.ud);
  }
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
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements >= 1 &&
      rep->element[0]->type == REDIS_REPLY_INTEGER) {
    acquired(l, q, rep);
    if (l->running && l->st == GN_LEASE_HOLDER) confirm_replicated(l);
    /* after the WAIT (on the same connection): the replicas have the tenure by the answer */
    if (l->running && l->st == GN_LEASE_HOLDER && l->flushing) gn_lease_ho_acquired(l);
  } else if (rep->type == REDIS_REPLY_ARRAY) { /* another holds it: remember its watermark */
    double t = rep->elements > 1 ? watermark_of(rep->element[1]) : -1;
    if (t > l->known_last) l->known_last = t;
    if (l->successor) arm(l, 50); /* the holder hands over soon: ask again at once */
    else retry_later(l);
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
  char ms[32], wall[32], known[32] = "";
  snprintf(ms, sizeof ms, "%.0f", l->lease_ms);
  snprintf(wall, sizeof wall, "%.0f", floor(gn_now_wall_ms())); /* where a hole may start */
  if (l->known_last > 0) snprintf(known, sizeof known, "%.0f", floor(l->known_last));
  const char *argv[] = {"EVAL",   ACQUIRE, "3", l->k_lease, l->k_fence, l->k_last,
                        l->value, ms,      wall, known};
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
  if (rep) l->last_answer = gn_now_mono_ms();
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
  char ms[32], tok[48], wall[32] = "";
  snprintf(ms, sizeof ms, "%.0f", l->lease_ms);
  gn_lease_token(l, tok, sizeof tok);
  /* listening now (the stream open, its takeover marker written): the watermark may move to
   * the last proof of live sockets; the events received before were sent before this request,
   * on the same connection */
  double heard = l->hooks.heard ? l->hooks.heard(l->hooks.ud) : -1;
  if (!l->gap_pending && l->hooks.opened(l->hooks.ud) >= 0 && heard >= 0)
    snprintf(wall, sizeof wall, "%.0f", floor(heard)); /* a watermark: never late */
  const char *argv[] = {"EVAL", RENEW, "2", l->k_lease, l->k_last, l->value, ms, tok, wall};
  if (gn_redis_cmd(l->r, renew_done, q, 9, argv, NULL) != 0) {
    free(q);
    return;
  }
  l->inflight = 1;
  l->inflight_since = q->sent;
}

/* ---- the memory policy ---- */

/* Under memory pressure Redis evicts keys by any policy but noeviction: KEY:lease (it has a time
 * to live, so volatile-* too) or KEY:fence, and two processes would hold at once. Asked at each
 * connection (and before each attempt while it can evict): a candidate does not take the lease
 * while it can be evicted, a holder steps down (health "redis" "eviction_policy", at each
 * change). A CONFIG that is refused (managed services often rename it) is reported once and the
 * lease is taken: there is nothing else to go by. */

static void policy_done(void *ud, redisReply *rep) {
  req_t *q = ud;
  gn_lease_t *l = q->l;
  uint64_t gen = q->gen;
  free(q);
  if (!l->running) return;
  l->policy_asked = 0;
  if (!rep) return; /* the link callback takes over */
  const char *pol = NULL;
  if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 &&
      rep->element[1]->type == REDIS_REPLY_STRING)
    pol = rep->element[1]->str;
  int was = l->policy;
  l->policy = !pol ? 2 : strcmp(pol, "noeviction") == 0 ? 1 : -1;
  if (l->policy == -1 && was != -1)
    health(l, "redis", json_pack("{s:s, s:s, s:b, s:s}", "event", "eviction_policy", "policy", pol,
                                 "refused", 1, "reason",
                                 "maxmemory-policy can evict the lease: set it to noeviction"));
  else if (l->policy == 1 && was == -1)
    health(l, "redis", json_pack("{s:s, s:s, s:b}", "event", "eviction_policy", "policy", pol,
                                 "refused", 0));
  else if (l->policy == 2 && was != 2)
    health(l, "redis", json_pack("{s:s, s:s, s:s}", "event", "eviction_policy", "policy",
                                 "unknown", "error", rep->type == REDIS_REPLY_ERROR ? rep->str
                                 : "unexpected answer to CONFIG GET maxmemory-policy"));
  if (l->st == GN_LEASE_HOLDER && l->policy == -1 && gen == l->gen) {
    step_down(l, "stepped_down", "maxmemory-policy can evict the lease");
  } else if (l->st == GN_LEASE_CANDIDATE && !l->inflight) {
    if (l->policy > 0) acquire(l);
    else retry_later(l);
  }
}

static void ask_policy(gn_lease_t *l) {
  if (l->policy_asked) return;
  req_t *q = new_req(l);
  const char *argv[] = {"CONFIG", "GET", "maxmemory-policy"};
  if (!q) return;
  if (gn_redis_cmd(l->r, policy_done, q, 3, argv, NULL) != 0) {
    free(q);
    return;
  }
  l->policy_asked = 1;
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
    gn_lease_write_gap(l);
    gn_lease_ho_tick(l);
    if (!l->running || l->st != GN_LEASE_HOLDER) return;
    gn_lease_mark_hole(l);
    /* no answer for a period: the link is dead (answers to the appends a burst queued ahead
     * of the renewal show it is alive, only slow) */
    if (l->inflight && (double)(now - l->inflight_since) > period &&
        (double)(now - l->last_answer) > period) {
      gn_redis_drop(l->r, "no answer in time"); /* link_cb: down */
    } else if (!gn_redis_busy(l->r)) {
      gn_redis_connect(l->r);
    } else if (gn_redis_up(l->r) && !l->inflight) {
      renew(l);
    }
    if (!l->running || l->st != GN_LEASE_HOLDER) return;
    uint64_t t = gn_now_mono_ms();
    double left = l->stepdown_at > t ? (double)(l->stepdown_at - t) : 0;
    double next = l->gap_pending || l->ho_to ? 20 : period;
    arm(l, left < next ? left : next);
    return;
  }
  /* candidate */
  if (l->successor && now >= l->successor_until) { /* nobody handed over: a candidate as any */
    l->successor = 0;
    gn_lease_ho_clear(l);
    l->hooks.stop(l->hooks.ud);
    health(l, "lease", json_pack("{s:s, s:s}", "event", "successor_ended", "reason",
                                 "no holder handed the lease over in time: the stream is parked"));
  }
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
    if (l->policy > 0) {
      acquire(l);
      return;
    }
    ask_policy(l); /* its answer goes on */
    arm(l, period);
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
    l->policy = l->policy == 2 ? 2 : 0;
    ask_policy(l); /* a candidate's attempt waits for the answer */
    if (l->st == GN_LEASE_HOLDER) {
      renew(l); /* before the appends that waited */
      gn_lease_writes_reset(l);
      gn_lease_mark_hole(l);
    }
    return;
  }
  l->inflight = 0;
  l->policy_asked = 0;
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
  l->successor = cfg->successor;
  l->tap.event = gn_lease_tap;
  l->tap.deaf = gn_lease_deaf;
  l->tap.ud = l;
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
  if (l->successor) { /* its stream runs before it holds, for a while */
    l->successor_until = gn_now_mono_ms() + (uint64_t)(GN_LEASE_HO_WAIT_MS + l->lease_ms);
    l->hooks.start(l->hooks.ud);
  }
  tick(l);
}

void gn_lease_stop(gn_lease_t *l) {
  if (l->st == GN_LEASE_HOLDER) {
    l->hooks.stop(l->hooks.ud);
    /* Let go at Redis: sent now (appends still buffered go first), no answer awaited. */
    if (l->r) gn_lease_wq_flush(l);
    const char *argv[] = {"EVAL", RELEASE, "1", l->k_lease, l->value};
    if (l->r && gn_redis_cmd(l->r, ignore_reply, NULL, 5, argv, NULL) == 0) gn_redis_flush(l->r);
  }
  l->running = 0;
  l->gen++;
  gn_lease_ho_clear(l);
  gn_lease_wq_clear(l);
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

const gn_tap_t *gn_lease_tap_of(gn_lease_t *l) { return &l->tap; }

const char *gn_lease_value(const gn_lease_t *l) { return l->value; }

void gn_lease_stats(gn_lease_t *l, gn_lease_stats_t *out) {
  pthread_mutex_lock(&l->mu);
  *out = l->stats;
  pthread_mutex_unlock(&l->mu);
}
