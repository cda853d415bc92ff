/* handover.c: make-before-break between two processes of a fleet (see lease.h): the holder
 * hands its lease over to a successor whose stream already runs; the successor appends what it
 * kept meanwhile that the previous holder did not. Service thread but for gn_lease_handover
 * (posted). */
#include "lease_int.h"
#include "service.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gn_ho_ev {
  struct gn_ho_ev *next;
  double at; /* wall ms received */
  char *topic, *chan, *cid, *raw;
  size_t len;
};

#define TAIL_PAGE "1000" /* stream entries read back per request */
#define TAIL_ROUNDS 50   /* at most this many pages (50,000 entries) */

/* KEYS: lease, last; ARGV: value, the successor's value, lease_ms, the token of our latest
 * write, our sockets' last proof of life. Moves the lease to the successor while it is ours,
 * and the watermark to that proof while it names our latest write (as a renewal does). 1:
 * moved; 0: not ours. */
static const char TRANSFER[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local last = redis.call('GET', KEYS[2])\n"
    "local t, tok\n"
    "if last then t, tok = string.match(last, '^(%S+) (%S+)$') end\n"
    "if tok == ARGV[4] and tonumber(ARGV[5]) > tonumber(t) then\n"
    "  redis.pcall('SET', KEYS[2], ARGV[5] .. ' ' .. ARGV[4]) end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "return 1\n";

static void ev_free(struct gn_ho_ev *e) {
  free(e->topic);
  free(e->chan);
  free(e->cid);
  free(e->raw);
  free(e);
}

void gn_lease_ho_clear(gn_lease_t *l) {
  while (l->kept) {
    struct gn_ho_ev *e = l->kept;
    l->kept = e->next;
    ev_free(e);
  }
  l->kept_tail = NULL;
  l->nkept = 0;
  l->flushing = 0;
  free(l->ho_to);
  l->ho_to = NULL;
}

int gn_lease_ho_keep(gn_lease_t *l, const gn_msg_t *m, const char *channel_id, const char *raw,
                     size_t len) {
  if (!l->running) return 0;
  if (!(l->successor && l->st == GN_LEASE_CANDIDATE) &&
      !(l->flushing && l->st == GN_LEASE_HOLDER))
    return 0;
  struct gn_ho_ev *e = calloc(1, sizeof *e);
  if (e) {
    e->at = gn_now_wall_ms();
    e->topic = gn_strdup(m->topic ? m->topic : "");
    e->chan = gn_strdup(channel_id ? channel_id : "");
    e->cid = gn_strdup(m->correlation_id ? m->correlation_id : "");
    e->raw = malloc(len + 1);
    e->len = len;
  }
  if (!e || !e->topic || !e->chan || !e->cid || !e->raw) {
    if (e) ev_free(e);
    STAT_ADD(l, discarded);
    return 1;
  }
  memcpy(e->raw, raw, len);
  e->raw[len] = 0;
  if (l->kept_tail) l->kept_tail->next = e;
  else l->kept = e;
  l->kept_tail = e;
  if (++l->nkept > GN_LEASE_HO_MAX) { /* the oldest: long before any handover's overlap */
    struct gn_ho_ev *old = l->kept;
    l->kept = old->next;
    ev_free(old);
    l->nkept--;
    STAT_ADD(l, discarded);
  }
  return 1;
}

/* ---- the successor took the lease: the stream's tail, then what it kept ---- */

typedef struct {
  gn_lease_t *l;
  uint64_t gen;
  char **cids; /* the tail's CorrelationIds */
  size_t n, cap;
  int rounds;
} tail_t;

static void tail_free(tail_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->cids[i]);
  free(t->cids);
  free(t);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends what was kept from one second before the old holder's watermark on, but what the
 * tail (sorted cids; known: the tail was read) holds; the marker when the stream was not open
 * since then. */
static void flush(gn_lease_t *l, tail_t *t, int known) {
  double from = l->gap_from_wall >= 0 ? l->gap_from_wall - GN_LEASE_LATENCY_MS : -1;
  double opened = l->hooks.opened(l->hooks.ud);
  l->flushing = 0;
  if (from >= 0) {
    if (opened < 0) l->gap_pending = 1; /* marked once open (gn_lease_write_gap) */
    else if (opened > from) gn_lease_mark_takeover(l, opened);
  }
  if (known) qsort(t->cids, t->n, sizeof *t->cids, cmp_str);
  json_int_t appended = 0, overlap = 0;
  for (struct gn_ho_ev *e = l->kept; e; e = e->next) {
    const char *key = e->cid;
    int dup = (from >= 0 && e->at < from) ||
              (known && key[0] && bsearch(&key, t->cids, t->n, sizeof *t->cids, cmp_str));
    if (dup) {
      overlap++;
      continue;
    }
    gn_lease_append_event(l, e->at, e->topic, e->chan, e->cid, e->raw, e->len);
    appended++;
  }
  gn_lease_ho_clear(l);
  gn_lease_health(l, "lease", json_pack("{s:s, s:I, s:I, s:b, s:b}", "event", "took_over",
                                        "appended", appended, "overlap", overlap, "tail_read",
                                        known, "gap", from >= 0 && (opened < 0 || opened > from)));
  tail_free(t);
}

static void read_tail(gn_lease_t *l, tail_t *t, const char *end);

static void tail_done(void *ud, redisReply *rep) {
  tail_t *t = ud;
  gn_lease_t *l = t->l;
  if (!l->running || t->gen != l->gen || l->st != GN_LEASE_HOLDER || !l->flushing) {
    tail_free(t);
    return;
  }
  if (!rep || rep->type != REDIS_REPLY_ARRAY) { /* the overlap unknown: at least once */
    flush(l, t, 0);
    return;
  }
  double from = l->gap_from_wall - GN_LEASE_LATENCY_MS, oldest_at = -1;
  const char *oldest = NULL;
  for (size_t i = 0; i < rep->elements; i++) {
    redisReply *e = rep->element[i];
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY)
      continue;
    oldest = e->element[0]->str;
    redisReply *f = e->element[1];
    for (size_t k = 0; k + 1 < f->elements; k += 2) {
      if (f->element[k]->type != REDIS_REPLY_STRING || f->element[k + 1]->type != REDIS_REPLY_STRING)
        continue;
      const char *name = f->element[k]->str, *v = f->element[k + 1]->str;
      if (strcmp(name, "received_ms") == 0) {
        oldest_at = strtod(v, NULL);
      } else if (strcmp(name, "correlation_id") == 0 && v[0]) {
        if (t->n == t->cap) {
          size_t cap = t->cap ? t->cap * 2 : 256;
          char **p = realloc(t->cids, cap * sizeof *p);
          if (!p) continue;
          t->cids = p;
          t->cap = cap;
        }
        char *s = gn_strdup(v);
        if (s) t->cids[t->n++] = s;
      }
    }
  }
  /* a full page whose oldest entry may still be in the overlap: the page before it (a new
   * fleet has no watermark: one page) */
  if (oldest && l->gap_from_wall >= 0 && rep->elements == (size_t)atoi(TAIL_PAGE) &&
      ++t->rounds < TAIL_ROUNDS &&
      (oldest_at < 0 || oldest_at >= from - GN_LEASE_LATENCY_MS)) {
    char end[96];
    snprintf(end, sizeof end, "(%s", oldest);
    read_tail(l, t, end);
    return;
  }
  flush(l, t, 1);
}

static void read_tail(gn_lease_t *l, tail_t *t, const char *end) {
  const char *argv[] = {"XREVRANGE", l->k_stream, end, "-", "COUNT", TAIL_PAGE};
  if (gn_redis_cmd(l->r, tail_done, t, 6, argv, NULL) != 0) flush(l, t, 0);
}

void gn_lease_ho_acquired(gn_lease_t *l) {
  tail_t *t = calloc(1, sizeof *t);
  if (!t) {
    l->flushing = 0;
    gn_lease_ho_clear(l);
    gn_lease_step_down(l, "stepped_down", "out of memory taking the lease over");
    return;
  }
  t->l = l;
  t->gen = l->gen;
  l->gap_pending = 0; /* flush() marks, if anything */
  read_tail(l, t, "+");
}

/* ---- the holder hands over ---- */

typedef struct {
  gn_lease_t *l;
  uint64_t gen;
  char *to;
  double asked, heard;
} ho_t;

static void transfer_done(void *ud, redisReply *rep) {
  ho_t *h = ud;
  gn_lease_t *l = h->l;
  int stale = !l->running || h->gen != l->gen || l->st != GN_LEASE_HOLDER;
  double asked = h->asked, heard = h->heard;
  free(h);
  if (stale) return;
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
    gn_lease_health(l, "lease", json_pack("{s:s, s:I, s:I}", "event", "handover", "waited_ms",
                                          (json_int_t)(gn_now_wall_ms() - asked), "heard_after_ms",
                                          (json_int_t)(heard - asked)));
    gn_lease_step_down(l, "handed_over", "the lease went to the successor");
    return;
  }
  gn_lease_health(l, "lease", json_pack("{s:s, s:s}", "event", "handover_failed", "reason",
                                        rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                        : rep ? "the lease is not this process's"
                                              : "no answer from redis"));
}

/* The successor's stream was open when the handover was asked (it says so first): the lease
 * moves once this holder's sockets were heard (an event, a heartbeat, a pong) a marker's
 * latency after that, so its final watermark lies past the successor's opening by that much and
 * the successor needs no marker; a quiet stream that gives no proof within GN_LEASE_HO_PROOF_MS
 * hands over anyway (the successor then marks the interval). */
#define GN_LEASE_HO_PROOF_MS 15000.0
void gn_lease_ho_tick(gn_lease_t *l) {
  if (!l->ho_to || l->st != GN_LEASE_HOLDER || !l->r) return;
  if (l->wq) return; /* after the appends still waiting (TRANSFER checks the latest token) */
  double heard = l->hooks.heard ? l->hooks.heard(l->hooks.ud) : -1, now = gn_now_wall_ms();
  if (heard < l->ho_asked + GN_LEASE_LATENCY_MS && now < l->ho_asked + GN_LEASE_HO_PROOF_MS)
    return;
  ho_t *h = calloc(1, sizeof *h);
  if (!h) return;
  h->l = l;
  h->gen = l->gen;
  h->asked = l->ho_asked;
  h->heard = heard;
  char ms[32], tok[48], wall[32];
  snprintf(ms, sizeof ms, "%.0f", l->lease_ms);
  gn_lease_token(l, tok, sizeof tok);
  snprintf(wall, sizeof wall, "%.0f", heard >= 0 ? floor(heard) : 0); /* a watermark */
  const char *argv[] = {"EVAL", TRANSFER, "2", l->k_lease, l->k_last, l->value, l->ho_to, ms,
                        tok, wall};
  int rc = gn_redis_cmd(l->r, transfer_done, h, 10, argv, NULL);
  free(l->ho_to); /* argv's: freed once the command is formatted */
  l->ho_to = NULL;
  if (rc != 0) transfer_done(h, NULL);
}

static void ho_task(gn_service_t *svc, void *arg) {
  (void)svc;
  ho_t *h = arg;
  gn_lease_t *l = h->l;
  if (!l->running || l->st != GN_LEASE_HOLDER || !l->r) {
    gn_lease_health(l, "lease", json_pack("{s:s, s:s}", "event", "handover_failed", "reason",
                                          "this process does not hold the lease"));
    free(h->to);
    free(h);
    return;
  }
  free(l->ho_to);
  l->ho_to = h->to; /* sent by the lease's timer (gn_lease_ho_tick), every 20 ms meanwhile */
  l->ho_asked = h->asked;
  free(h);
  gn_lease_ho_tick(l);
}

int gn_lease_handover(gn_lease_t *l, const char *to_value) {
  ho_t *h = calloc(1, sizeof *h);
  if (!h || !(h->to = gn_strdup(to_value))) {
    free(h);
    return -1;
  }
  h->l = l;
  h->asked = gn_now_wall_ms();
  if (gn_service_post(l->env->svc, ho_task, h) != 0) {
    free(h->to);
    free(h);
    return -1;
  }
  return 0;
}
