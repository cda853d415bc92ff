/* consumer.c: the fleet stream's reader (see consumer.h). The task_* functions and every
 * callback run on the service thread; the rest on the owner's. */
#include "consumer_int.h"
#include "conf.h"
#include "redis.h"
#include "resync_mark.h"
#include "service.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int gn_consumer_forked(const gn_consumer_t *c) { return c->pid != getpid(); }

void gn_consumer_health(gn_consumer_t *c, const char *kind, json_t *fields) {
  gn_queue_health(&c->queue, kind, c->stats.redis_up ? "open" : "connect", fields);
}

static void arm(gn_consumer_t *c, double ms);
static void read_next(gn_consumer_t *c);

/* ---- entries ---- */

#define health gn_consumer_health
#define field_of gn_consumer_field

const char *gn_consumer_field(redisReply *fields, const char *name, size_t *len) {
  if (!fields || fields->type != REDIS_REPLY_ARRAY) return NULL;
  for (size_t i = 0; i + 1 < fields->elements; i += 2) {
    redisReply *k = fields->element[i], *v = fields->element[i + 1];
    if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING &&
        strcmp(k->str, name) == 0) {
      if (len) *len = (size_t)v->len;
      return v->str;
    }
  }
  return NULL;
}

static double num_field(redisReply *f, const char *name) {
  const char *s = field_of(f, name, NULL);
  return s ? strtod(s, NULL) : -1;
}

static void ack_now(gn_consumer_t *c, const char *id);

/* A stream id "ms-seq" as two numbers. */
static void id_parse(const char *id, uint64_t *ms, uint64_t *seq) {
  char *end;
  *ms = strtoull(id, &end, 10);
  *seq = *end == '-' ? strtoull(end + 1, NULL, 10) : 0;
}

static int id_before(uint64_t ams, uint64_t aseq, uint64_t bms, uint64_t bseq) {
  return ams < bms || (ams == bms && aseq < bseq);
}

/* group: fence took effect at stream position id (kept unless known). */
static void transition(gn_consumer_t *c, uint64_t fence, const char *id) {
  uint64_t ms, seq;
  id_parse(id, &ms, &seq);
  for (int i = 0; i < c->ntrans; i++)
    if (c->trans[i].fence == fence) {
      if (id_before(ms, seq, c->trans[i].ms, c->trans[i].seq))
        c->trans[i].ms = ms, c->trans[i].seq = seq;
      return;
    }
  if (c->ntrans == TRANSITIONS) { /* the oldest goes */
    memmove(c->trans, c->trans + 1, sizeof c->trans[0] * (TRANSITIONS - 1));
    c->ntrans--;
  }
  c->trans[c->ntrans].fence = fence;
  c->trans[c->ntrans].ms = ms;
  c->trans[c->ntrans].seq = seq;
  c->ntrans++;
}

/* The fence that had taken the stream before position id when an entry of fence fv sits there
 * (0: none above fv). Fanout reads in order: the highest seen. A group member sees entries out
 * of order (claimed late, after a takeover): only a fence whose marker lies before the entry
 * makes it stale; an entry appended under the fence current at the time never is. */
static uint64_t newer_fence_before(gn_consumer_t *c, uint64_t fv, const char *id) {
  if (!c->group_mode) return fv < c->max_fence ? c->max_fence : 0;
  uint64_t ms, seq, best = 0;
  id_parse(id, &ms, &seq);
  for (int i = 0; i < c->ntrans; i++)
    if (c->trans[i].fence > fv && c->trans[i].fence > best &&
        id_before(c->trans[i].ms, c->trans[i].seq, ms, seq))
      best = c->trans[i].fence;
  return best;
}

static void restored(gn_consumer_t *c, redisReply *f, uint64_t fv, const char *id) {
  const char *reason = field_of(f, "reason", NULL);
  double count = num_field(f, "count"); /* a trimmed marker's (-1: none, or not known) */
  json_t *h = json_pack("{s:f, s:f, s:f, s:b, s:s, s:I, s:s}", "gap_ms", num_field(f, "gap_ms"),
                        "deaf_from_ms", num_field(f, "from_ms"), "deaf_to_ms",
                        num_field(f, "to_ms"), "takeover", !reason || strcmp(reason, "takeover") == 0,
                        "reason", reason ? reason : "takeover", "fence", (json_int_t)fv, "id", id);
  if (h && count >= 0) json_object_set_new(h, "count", json_integer((json_int_t)count));
  if (h && field_of(f, "pending", NULL)) /* pending entries of the group's, trimmed */
    json_object_set_new(h, "pending", json_true());
  int trimmed = reason && strcmp(reason, "trimmed") == 0;
  pthread_mutex_lock(&c->mu);
  c->stats.gaps++;
  c->stats.trimmed += trimmed;
  if (trimmed && count > 0) c->stats.trimmed_entries += (uint64_t)count;
  pthread_mutex_unlock(&c->mu);
  health(c, "restored", h);
}

static void handle_entry(gn_consumer_t *c, redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
    return;
  const char *id = e->element[0]->str;
  redisReply *f = e->element[1];
  if (!c->group_mode && strlen(id) < sizeof c->last_id) strcpy(c->last_id, id);
  if (f->type != REDIS_REPLY_ARRAY) return; /* deleted while pending (Redis 6.2's XAUTOCLAIM) */
  const char *type = field_of(f, "type", NULL);
  if (!c->group_mode) { /* where a fanout's hole would start (consumer_trim.c) */
    double rx = num_field(f, type && strcmp(type, "gap") == 0 ? "to_ms" : "received_ms");
    if (rx >= 0) c->last_rx = rx;
  }
  double fence = num_field(f, "fence");
  uint64_t fv = fence > 0 ? (uint64_t)fence : 0;
  if (type && strcmp(type, "gap") == 0) {
    if (fv > c->max_fence) c->max_fence = fv;
    if (c->group_mode) { /* reported from KEY:gaps, which every member reads */
      transition(c, fv, id);
      ack_now(c, id);
      return;
    }
    restored(c, f, fv, id);
    return;
  }
  if (!type || strcmp(type, "event") != 0) {
    if (c->group_mode) ack_now(c, id);
    return;
  }
  uint64_t newer = newer_fence_before(c, fv, id);
  if (newer) {
    STAT_ADD(c, stale, 1);
    health(c, "stale", json_pack("{s:s, s:I, s:I, s:s}", "id", id, "fence", (json_int_t)fv,
                                 "highest_fence", (json_int_t)newer, "reason",
                                 "appended after a newer holder had taken the stream (a write "
                                 "that did not check the fence)"));
    if (c->group_mode) ack_now(c, id);
    return;
  }
  if (fv > c->max_fence) c->max_fence = fv;
  pthread_mutex_lock(&c->mu);
  c->stats.highest_fence = c->max_fence;
  pthread_mutex_unlock(&c->mu);
  size_t rawlen = 0;
  const char *raw = field_of(f, "raw", &rawlen);
  /* one allocation, as the client's events (queue.h): the text, its eventBody's span found by
   * the same scan, and the stream's fields in data */
  gn_item_t *it = malloc(sizeof *it + rawlen + 1);
  if (!it) {
    gn_queue_drop(&c->queue, 1);
    STAT_ADD(c, dropped, 1);
    return;
  }
  memset(it, 0, sizeof *it);
  it->raw = (char *)(it + 1);
  if (rawlen) memcpy(it->raw, raw, rawlen);
  it->raw[rawlen] = 0;
  it->rawlen = rawlen;
  it->type = GN_ITEM_EVENT;
  gn_msg_t m;
  if (gn_msg_classify(it->raw, rawlen, 0, &m) == GN_MSG_EVENT && m.body) {
    it->body_off = (size_t)(m.body - it->raw);
    it->body_len = m.body_len;
  }
  gn_msg_clear(&m);
  const char *topic = field_of(f, "topic", NULL), *chan = field_of(f, "channel_id", NULL);
  const char *cid = field_of(f, "correlation_id", NULL);
  it->data = json_pack("{s:s, s:s, s:f, s:s, s:I, s:s}", "topic", topic ? topic : "",
                       "channel_id", chan ? chan : "", "received_ms",
                       num_field(f, "received_ms"), "correlation_id", cid ? cid : "", "fence",
                       (json_int_t)fv, "id", id);
  gn_fleet_resync_fields(it->raw, rawlen, it->data); /* a holder's resync item: ev.resync */
  it->cost = sizeof *it + rawlen + 1 + 256;
  STAT_ADD(c, events, 1);
  gn_queue_push(&c->queue, it);
}

/* group mode: an entry of KEY:gaps */
static void handle_gap(gn_consumer_t *c, redisReply *e) {
  if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 || e->element[0]->type != REDIS_REPLY_STRING)
    return;
  const char *id = e->element[0]->str;
  redisReply *f = e->element[1];
  if (strlen(id) < sizeof c->gap_id) strcpy(c->gap_id, id);
  const char *grp = field_of(f, "group", NULL);
  if (grp) { /* a group's trimmed entries (consumer_trim.c): that group's members report it */
    if (strcmp(grp, c->group) == 0) restored(c, f, 0, id);
    return;
  }
  double fence = num_field(f, "fence");
  uint64_t fv = fence > 0 ? (uint64_t)fence : 0;
  if (fv > c->max_fence) c->max_fence = fv;
  const char *at = field_of(f, "stream_id", NULL);
  transition(c, fv, at ? at : id); /* an older holder's marker: its own time stands for it */
  restored(c, f, fv, id);
}

static void gaps_done(void *ud, redisReply *rep) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  c->gap_reading = 0;
  if (!rep || rep->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i < rep->elements; i++) {
    redisReply *s = rep->element[i];
    if (s->type == REDIS_REPLY_ARRAY && s->elements == 2 && s->element[1]->type == REDIS_REPLY_ARRAY)
      for (size_t j = 0; j < s->element[1]->elements; j++) handle_gap(c, s->element[1]->element[j]);
  }
}

void gn_consumer_entries(gn_consumer_t *c, redisReply *list) {
  if (!list || list->type != REDIS_REPLY_ARRAY) return;
  for (size_t i = 0; i < list->elements; i++) handle_entry(c, list->element[i]);
}

/* ---- reading ---- */

void gn_consumer_read_done(void *ud, redisReply *rep) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  c->reading = 0;
  if (!rep) return; /* the link callback takes over */
  if (rep->type == REDIS_REPLY_ERROR) {
    if (strstr(rep->str, "NOGROUP")) { /* the stream was deleted (a restarted Redis) */
      c->group_from_start = 1; /* a new stream: the group reads it from its first entry */
      gn_redis_drop(c->r, "the consumer group is gone");
      return;
    }
    health(c, "redis", json_pack("{s:s, s:s}", "event", "error", "error", rep->str));
    arm(c, 500);
    return;
  }
  if (!c->scan) {
    c->scan = 1; /* woken up: what came is read (and checked) by a checked read */
  } else {
    long k = gn_consumer_scan_reply(c, rep);
    if (k < 0) { /* not an answer this code knows (XINFO STREAM before Redis 7.0) */
      health(c, "redis", json_pack("{s:s, s:s}", "event", "error", "error",
                                   "unexpected answer to a read (Redis 7.0 or later needed)"));
      arm(c, 2000);
      return;
    }
    c->scan = k > 0; /* nothing more: wait for it (XREAD BLOCK) */
  }
  read_next(c);
}

void gn_consumer_claim_done(void *ud, redisReply *rep) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  c->claiming = 0;
  if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 2) return;
  redisReply *list = rep->element[1];
  if (list->type == REDIS_REPLY_ARRAY && list->elements) {
    STAT_ADD(c, claimed, list->elements);
    gn_consumer_entries(c, list);
  }
}

static void claim(gn_consumer_t *c) {
  if (gn_consumer_send_claim(c) == 0) c->claiming = 1;
  c->last_claim = gn_now_mono_ms();
}

static void read_next(gn_consumer_t *c) {
  if (!c->running || c->reading || !gn_redis_up(c->r)) return;
  size_t waiting, bytes;
  gn_queue_usage(&c->queue, &waiting, &bytes);
  if (waiting * 2 >= c->queue_limit) { /* the owner is behind: wait for it */
    arm(c, 20);
    return;
  }
  if (c->group_mode && !c->gap_reading) { /* not blocking: answered before the group read */
    const char *argv[] = {"XREAD", "COUNT", "1000", "STREAMS", c->gaps, c->gap_id};
    if (gn_redis_cmd(c->r, gaps_done, c, 6, argv, NULL) == 0) c->gap_reading = 1;
  }
  if (c->group_mode && !c->claiming &&
      (double)(gn_now_mono_ms() - c->last_claim) >= c->claim_idle_ms / 2)
    claim(c);
  if (gn_consumer_send_read(c) == 0) {
    c->reading = 1;
    c->read_since = gn_now_mono_ms();
  }
  c->looked = 0;
  arm(c, c->block_ms + 2000); /* watchdog */
}

static void group_done(void *ud, redisReply *rep) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  c->reading = 0;
  if (!rep) return;
  if (rep->type == REDIS_REPLY_ERROR && !strstr(rep->str, "BUSYGROUP"))
    health(c, "redis", json_pack("{s:s, s:s}", "event", "error", "error", rep->str));
  read_next(c);
}

static void link_cb(void *ud, int up, const char *err) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  pthread_mutex_lock(&c->mu);
  c->stats.redis_up = up;
  pthread_mutex_unlock(&c->mu);
  c->reading = c->claiming = c->gap_reading = c->looked = 0;
  c->scan = 1; /* a new connection starts with a checked read */
  if (up) {
    gn_backoff_succeeded(&c->bo, gn_now_mono_ms());
    if (c->reported_down) {
      c->reported_down = 0;
      health(c, "redis", json_pack("{s:s}", "event", "connected"));
    }
    if (c->group_mode) {
      const char *argv[] = {"XGROUP", "CREATE", c->stream, c->group,
                            c->group_from_start ? "0" : "$", "MKSTREAM"};
      c->group_from_start = 1; /* from now on */
      if (gn_redis_cmd(c->r, group_done, c, 6, argv, NULL) == 0) {
        c->reading = 1;
        c->read_since = gn_now_mono_ms();
      }
    } else {
      read_next(c);
    }
    return;
  }
  if (!c->reported_down) {
    c->reported_down = 1;
    health(c, "redis", json_pack("{s:s, s:s}", "event", "down", "error", err ? err : "?"));
  }
  double d = 0;
  if (gn_backoff_next(&c->bo, -1, gn_now_mono_ms(), &d) != GN_BACKOFF_OK) {
    gn_backoff_reset(&c->bo);
    gn_backoff_next(&c->bo, -1, gn_now_mono_ms(), &d);
  }
  arm(c, d);
}

/* The watchdog. Before it calls the link dead it lets the loop turn once, which reads what
 * waits in the socket (as the heartbeat's watchdog does): when this process was stopped
 * (SIGSTOP, a paused VM) or kept off the CPU, the answer came meanwhile, but after SIGCONT
 * libuv runs the timers before it polls. Without that turn every stop longer than the watchdog
 * became "redis down" and a new connection, and the answer was lost with it (when it was a
 * group's read, the entries it gave this member then waited in its pending list for
 * claim_idle_ms). 1 ms, not
 * 0: a 0 ms timer started here can run in this same timer phase, before the poll. */
#define LOOK_MS 1
static void tick(uv_timer_t *t) {
  gn_consumer_t *c = t->data;
  if (!c->running) return;
  if (!gn_redis_busy(c->r)) {
    if (gn_redis_connect(c->r) == 0) arm(c, 5000); /* a connect that never ends */
    return;
  }
  int late = !gn_redis_up(c->r) ||
             (c->reading && (double)(gn_now_mono_ms() - c->read_since) > c->block_ms + 1500);
  if (late && !c->looked) {
    c->looked = 1;
    arm(c, LOOK_MS);
    return;
  }
  if (!gn_redis_up(c->r)) {
    gn_redis_drop(c->r, "connect timed out");
    return;
  }
  if (late) {
    gn_redis_drop(c->r, "no answer in time");
    return;
  }
  if (!c->reading) read_next(c);
  else arm(c, c->block_ms + 2000);
}

static void arm(gn_consumer_t *c, double ms) {
  if (c->timer) uv_timer_start(c->timer, tick, (uint64_t)ceil(ms > 0 ? ms : 0), 0);
}

static void ack_done(void *ud, redisReply *rep) {
  gn_consumer_t *c = ud;
  if (!c->running) return;
  if (rep && rep->type == REDIS_REPLY_INTEGER) STAT_ADD(c, acked, (uint64_t)rep->integer);
}

static void ack_now(gn_consumer_t *c, const char *id) {
  const char *argv[] = {"XACK", c->stream, c->group, id};
  gn_redis_cmd(c->r, ack_done, c, 4, argv, NULL); /* lost with the connection: claimed later */
}

/* ---- tasks ---- */

static void task_start(gn_service_t *svc, void *arg) {
  gn_consumer_t *c = arg;
  uv_loop_t *loop = gn_service_loop(svc);
  c->running = 1;
  if (!(c->r = gn_redis_new(loop, &c->conf, link_cb, c)) || !(c->timer = gn_timer_new(loop, c))) {
    health(c, "redis", json_pack("{s:s, s:s}", "event", "error", "error", "out of memory"));
    return;
  }
  if (gn_redis_connect(c->r) == 0) arm(c, 5000);
}

static void task_close(gn_service_t *svc, void *arg) {
  gn_consumer_t *c = arg;
  c->running = 0;
  gn_timer_close(&c->timer);
  gn_redis_free(c->r);
  c->r = NULL;
  gn_queue_detach(&c->queue);
}

typedef struct {
  gn_consumer_t *c;
  char id[64];
} ack_task_t;

static void task_ack(gn_service_t *svc, void *arg) {
  ack_task_t *t = arg;
  if (t->c->running && t->c->r) ack_now(t->c, t->id);
  free(t);
}

/* ---- owner ---- */

gn_consumer_t *gn_consumer_new(const gn_consumer_cfg_t *cfg, gn_service_t *svc, char *err,
                               size_t errlen) {
  gn_consumer_t *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  c->pid = getpid();
  pthread_mutex_init(&c->mu, NULL);
  gn_metrics_init(&c->metrics);
  if (gn_redis_conf_init(&c->conf, &cfg->redis, err, errlen) != 0) goto fail;
  if (!cfg->key || !cfg->key[0]) {
    snprintf(err, errlen, "redis.key: expected a non-empty string");
    goto fail;
  }
  size_t n = strlen(cfg->key) + 8;
  if (!(c->stream = malloc(n))) goto oom;
  snprintf(c->stream, n, "%s:stream", cfg->key);
  if (!(c->gaps = malloc(n))) goto oom;
  snprintf(c->gaps, n, "%s:gaps", cfg->key);
  if (!(c->cursors = malloc(n + 4))) goto oom;
  snprintf(c->cursors, n + 4, "%s:cursors", cfg->key);
  c->cur_n = -1;
  c->last_rx = -1;
  c->scan = 1;
  strcpy(c->covered, "0-0");
  /* markers from now on (stream ids are the server's milliseconds) */
  snprintf(c->gap_id, sizeof c->gap_id, "%.0f-0", gn_now_wall_ms());
  c->group_mode = cfg->group;
  if (cfg->group) {
    if (!cfg->group_name || !cfg->group_name[0]) {
      snprintf(err, errlen, "group: expected a non-empty string (mode = \"group\")");
      goto fail;
    }
    if (!(c->group = gn_strdup(cfg->group_name))) goto oom;
    char def[96];
    char host[64] = "";
    gethostname(host, sizeof host - 1);
    snprintf(def, sizeof def, "%s:%d", host, (int)getpid());
    if (!(c->name = gn_strdup(cfg->consumer_name && cfg->consumer_name[0] ? cfg->consumer_name : def)))
      goto oom;
  }
  c->block_ms = cfg->block_ms > 0 ? cfg->block_ms : 1000;
  c->claim_idle_ms = cfg->claim_idle_ms > 0 ? cfg->claim_idle_ms : 30000;
  c->queue_limit = cfg->queue_limit ? cfg->queue_limit : 10000;
  snprintf(c->block, sizeof c->block, "%.0f", c->block_ms);
  snprintf(c->count, sizeof c->count, "%zu", cfg->count ? cfg->count : (size_t)100);
  if (cfg->after_id && cfg->after_id[0] && strlen(cfg->after_id) < sizeof c->last_id)
    strcpy(c->last_id, cfg->after_id); /* checked by the binding: "<ms>-<seq>" */
  else
    strcpy(c->last_id, "$");
  gn_backoff_policy_t p;
  gn_backoff_policy_default(&p);
  p.base_ms = 100;
  p.max_ms = 2000;
  p.max_retries = 0;
  p.max_window_ms = 0;
  if (gn_backoff_init(&c->bo, &p, err, errlen) != 0) goto fail;
  if (gn_queue_init(&c->queue, c->queue_limit, GN_QUEUE_BYTES_DEFAULT, &c->metrics, err, errlen) != 0)
    goto fail;
  c->queue_ready = 1;
  if (svc) {
    gn_service_ref(svc);
    c->svc = svc;
  } else if (!(c->svc = gn_service_acquire_default(err, errlen))) {
    goto fail;
  }
  return c;
oom:
  snprintf(err, errlen, "out of memory");
fail:
  gn_consumer_free(c);
  return NULL;
}

int gn_consumer_start(gn_consumer_t *c) {
  int expected = 0;
  if (gn_consumer_forked(c) || atomic_load(&c->closing) ||
      !atomic_compare_exchange_strong(&c->started, &expected, 1))
    return -1;
  return gn_service_post(c->svc, task_start, c);
}

void gn_consumer_close(gn_consumer_t *c) {
  if (gn_consumer_forked(c)) return;
  int expected = 0;
  if (!atomic_compare_exchange_strong(&c->closing, &expected, 1)) return;
  if (atomic_load(&c->started)) {
    while (gn_service_post(c->svc, task_close, c) != 0) {
      struct timespec ts = {0, 1000000};
      nanosleep(&ts, NULL);
    }
    gn_queue_wait_detached(&c->queue);
  } else if (c->queue_ready) {
    gn_queue_detach(&c->queue);
  }
  if (c->queue_ready) gn_queue_discard(&c->queue);
  if (c->svc) gn_service_release(c->svc);
  c->svc = NULL;
}

void gn_consumer_free(gn_consumer_t *c) {
  if (!c) return;
  if (gn_consumer_forked(c)) return; /* the parent's pages: left alone */
  gn_consumer_close(c);
  if (c->queue_ready) gn_queue_destroy(&c->queue);
  gn_metrics_destroy(&c->metrics);
  pthread_mutex_destroy(&c->mu);
  free(c->stream);
  free(c->gaps);
  free(c->cursors);
  free(c->group);
  free(c->name);
  gn_redis_conf_clear(&c->conf);
  free(c);
}

int gn_consumer_fd(gn_consumer_t *c) { return gn_queue_fd(&c->queue); }

gn_item_t *gn_consumer_pop(gn_consumer_t *c) {
  pthread_mutex_lock(&c->mu);
  int up = c->stats.redis_up;
  pthread_mutex_unlock(&c->mu);
  return gn_queue_pop(&c->queue, up ? "open" : "connect");
}

void gn_consumer_ack(gn_consumer_t *c, const char *id) {
  if (!c->group_mode || atomic_load(&c->closing) || !c->svc || strlen(id) >= 64) return;
  ack_task_t *t = malloc(sizeof *t);
  if (!t) return;
  t->c = c;
  strcpy(t->id, id);
  if (gn_service_post(c->svc, task_ack, t) != 0) free(t);
}

void gn_consumer_stats(gn_consumer_t *c, gn_consumer_stats_t *out) {
  pthread_mutex_lock(&c->mu);
  *out = c->stats;
  pthread_mutex_unlock(&c->mu);
}
