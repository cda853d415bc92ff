/* append.c: the holder's writes to the fleet's stream: each event it receives, and the gap
 * markers (see lease_int.h for the watermark). Service thread. */
#include "lease_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* KEYS: fence, last, stream, gaps. ARGV: 1 fence, 2 the previous write's token, 3 this write's
 * token, 4 its time (an event's receipt, a marker's end), 5 maxlen, 6 latency ms, 7 where a hole
 * starts when KEY:last is gone, 8 the watermark's new time (at most 4: the sockets' last proof
 * of life), 9 "event" (10...: its fields), "gap" (10: from ms, 11: reason) or "check" (nothing
 * but the hole's marker, if writes failed: appended once the link is back, so a hole at the end
 * of a burst, with no event after it, is reported too).
 * Lands only while the fence is ours (returns 0 otherwise); a hole in our writes (KEY:last does
 * not name the previous one) becomes a marker first. Markers go to KEY:stream and to KEY:gaps
 * (every member of a consumer group reads it) with the stream entry's id (stream_id): where the
 * fence they carry took effect in the stream. */
static const char APPEND[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local function mark(from, to, why)\n"
    "  from = tonumber(from) to = tonumber(to)\n"
    "  if to < from then to = from end\n"
    "  local f = {'type', 'gap', 'from_ms', string.format('%.0f', from), 'to_ms',\n"
    "    string.format('%.0f', to), 'gap_ms', string.format('%.0f', to - from), 'fence', ARGV[1],\n"
    "    'reason', why}\n"
    "  local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(f))\n"
    "  f[#f + 1] = 'stream_id' f[#f + 1] = id\n"
    "  redis.call('XADD', KEYS[4], 'MAXLEN', '~', '1000', '*', unpack(f))\n"
    "end\n"
    "local last = redis.call('GET', KEYS[2])\n"
    "local t, tok\n"
    "if last then t, tok = string.match(last, '^(%S+) (%S+)$') end\n"
    "if tok ~= ARGV[2] then\n"
    "  mark((tonumber(t) or tonumber(ARGV[7])) - tonumber(ARGV[6]), ARGV[4], 'writes_failed')\n"
    "end\n"
    "if ARGV[9] == 'gap' then mark(ARGV[10], ARGV[4], ARGV[11])\n"
    "elseif ARGV[9] == 'event' then redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', unpack(ARGV, 10)) end\n"
    "redis.call('SET', KEYS[2], ARGV[8] .. ' ' .. ARGV[3])\n"
    "return 1\n";

typedef struct {
  gn_lease_t *l;
  uint64_t gen;
  double mark; /* the watermark it sets */
} write_t;

/* At most GN_LEASE_WRITES_OUT writes unanswered at a time; the rest wait in order in l->wq (a
 * copy of their arguments). A burst's appends once all went out at once: the renewal (sent
 * straight away, lease.c) then waited behind tens of thousands of them, came too late, and the
 * holder stepped down in the middle of the burst. */
#define GN_LEASE_WRITES_OUT 64
#define GN_LEASE_WQ_BYTES ((size_t)256 << 20) /* beyond: failed writes (a marker), never more */
enum { WQ_ARGS = 32 };
struct gn_wq {
  struct gn_wq *next;
  write_t *w;
  int argc;
  size_t lens[WQ_ARGS];
  char data[];
};

static void write_done(void *ud, redisReply *rep);
static void wq_pump(gn_lease_t *l, int all);

void gn_lease_token(const gn_lease_t *l, char *out, size_t n) {
  snprintf(out, n, "%llu:%llu", (unsigned long long)l->fence, (unsigned long long)l->seq);
}

static void write_failed(gn_lease_t *l, const char *why) {
  STAT_ADD(l, append_failed);
  l->hole = 1; /* marked by the next write that lands, or by gn_lease_mark_hole */
  if (!l->append_err_reported) {
    l->append_err_reported = 1;
    gn_lease_health(l, "stream", json_pack("{s:s, s:s}", "event", "append_failed", "error", why));
  }
}

static void write_done(void *ud, redisReply *rep) {
  write_t *w = ud;
  gn_lease_t *l = w->l;
  uint64_t gen = w->gen;
  double at = w->mark;
  free(w);
  if (!l->running) return;
  if (l->writes_out > 0) l->writes_out--;
  if (rep) l->last_answer = gn_now_mono_ms();
  if (rep && rep->type == REDIS_REPLY_INTEGER && rep->integer == 1) {
    STAT_ADD(l, appended);
    l->append_err_reported = 0;
    if (at > l->known_last) l->known_last = at;
    wq_pump(l, 0);
    return;
  }
  if (rep && rep->type == REDIS_REPLY_INTEGER) { /* the fence is not ours any more */
    write_failed(l, "the fence moved: another process took the lease, or redis lost its data");
    if (gen == l->gen) gn_lease_step_down(l, "lost", "the fencing token at redis is not ours");
    return;
  }
  write_failed(l, rep && rep->type == REDIS_REPLY_ERROR ? rep->str
                                                        : "connection lost before the answer");
  if (rep) wq_pump(l, 0); /* NULL: the link is going, link_cb sends the rest on the next one */
}

/* Sends what waits in l->wq while fewer than GN_LEASE_WRITES_OUT are unanswered (all = 1: all
 * of it, before the lease is let go). A write the link refuses is a failed one (its hole is
 * marked). Returns nothing. */
static void wq_pump(gn_lease_t *l, int all) {
  while (l->wq && l->r && gn_redis_up(l->r) && (all || l->writes_out < GN_LEASE_WRITES_OUT)) {
    struct gn_wq *q = l->wq;
    l->wq = q->next;
    if (!l->wq) l->wq_tail = NULL;
    l->wq_bytes -= q->lens[WQ_ARGS - 1];
    const char *argv[WQ_ARGS];
    const char *p = q->data;
    for (int i = 0; i < q->argc; i++) {
      argv[i] = i == 1 ? APPEND : p; /* the script is not copied */
      if (i != 1) p += q->lens[i];
    }
    if (gn_redis_cmd(l->r, write_done, q->w, q->argc, argv, q->lens) == 0) {
      l->writes_out++;
    } else {
      free(q->w);
      write_failed(l, "not connected to redis");
    }
    free(q);
  }
}

void gn_lease_wq_flush(gn_lease_t *l) { wq_pump(l, 1); }

void gn_lease_wq_clear(gn_lease_t *l) {
  int n = 0;
  while (l->wq) {
    struct gn_wq *q = l->wq;
    l->wq = q->next;
    free(q->w);
    free(q);
    n++;
  }
  l->wq_tail = NULL;
  l->wq_bytes = 0;
  if (n) write_failed(l, "the lease ended with appends not yet sent");
}

void gn_lease_writes_reset(gn_lease_t *l) {
  l->writes_out = 0; /* a new connection: nothing of it is unanswered */
  wq_pump(l, 0);
}

/* Sends one write (kind "event" with nf fields, "gap" or "check") at time at, or queues it. */
static void write_entry(gn_lease_t *l, double at, const char *kind, int nf, const char **fv,
                        const size_t *fl) {
  char fence[24], prev[48], tok[48], at_s[32], lat[16], hint[32], mark_s[32];
  /* the watermark: the events sent before the sockets' last proof of life are in (a socket
   * of the pool that went silent holds it back: lease_int.h) */
  double mark = l->hooks.heard ? l->hooks.heard(l->hooks.ud) : -1;
  if (mark < 0 || mark > at) mark = at;
  snprintf(fence, sizeof fence, "%llu", (unsigned long long)l->fence);
  gn_lease_token(l, prev, sizeof prev);
  l->seq++;
  gn_lease_token(l, tok, sizeof tok);
  /* whole ms, each rounded the way that widens what a marker covers: its end (at) up, where a
   * hole may start (hint, the watermark) down */
  snprintf(at_s, sizeof at_s, "%.0f", ceil(at));
  snprintf(lat, sizeof lat, "%.0f", GN_LEASE_LATENCY_MS);
  snprintf(hint, sizeof hint, "%.0f", floor(l->tenure_wall));
  snprintf(mark_s, sizeof mark_s, "%.0f", floor(mark));
  enum { HEAD = 16, MAXF = 16 };
  const char *argv[HEAD + MAXF] = {"EVAL", APPEND,   "4",  l->k_fence, l->k_last, l->k_stream,
                                   l->k_gaps, fence, prev, tok,        at_s,      l->maxlen,
                                   lat,       hint,  mark_s, kind};
  size_t lens[HEAD + MAXF];
  if (nf > MAXF) nf = MAXF;
  for (int i = 0; i < HEAD; i++) lens[i] = strlen(argv[i]);
  for (int i = 0; i < nf; i++) {
    argv[HEAD + i] = fv[i];
    lens[HEAD + i] = fl ? fl[i] : strlen(fv[i]);
  }
  write_t *w = malloc(sizeof *w);
  if (!w) {
    write_failed(l, "out of memory");
    return;
  }
  w->l = l;
  w->gen = l->gen;
  w->mark = mark;
  int argc = HEAD + nf;
  if (!l->wq && l->writes_out < GN_LEASE_WRITES_OUT) {
    if (gn_redis_cmd(l->r, write_done, w, argc, argv, lens) != 0) {
      free(w);
      write_failed(l, "not connected to redis");
      return;
    }
    l->writes_out++;
    return;
  }
  size_t total = 0;
  for (int i = 0; i < argc; i++) total += i == 1 ? 0 : lens[i];
  struct gn_wq *q = l->wq_bytes + total <= GN_LEASE_WQ_BYTES ? malloc(sizeof *q + total) : NULL;
  if (!q) { /* counted, and its hole marked by the next write that lands */
    free(w);
    write_failed(l, l->wq_bytes + total > GN_LEASE_WQ_BYTES
                      ? "more than 256 MiB of appends waiting for redis" : "out of memory");
    return;
  }
  q->next = NULL;
  q->w = w;
  q->argc = argc;
  char *p = q->data;
  for (int i = 0; i < argc; i++) {
    q->lens[i] = lens[i];
    if (i == 1) continue;
    memcpy(p, argv[i], lens[i]);
    p += lens[i];
  }
  q->lens[WQ_ARGS - 1] = total; /* argc <= HEAD + MAXF < WQ_ARGS: a free slot */
  l->wq_bytes += total;
  if (l->wq_tail) l->wq_tail->next = q;
  else l->wq = q;
  l->wq_tail = q;
}

void gn_lease_mark_hole(gn_lease_t *l) {
  if (!l->hole || !l->running || l->st != GN_LEASE_HOLDER || !gn_redis_up(l->r)) return;
  l->hole = 0;
  write_entry(l, gn_now_wall_ms(), "check", 0, NULL, NULL);
}

void gn_lease_write_gap(gn_lease_t *l) {
  if (!l->gap_pending || l->flushing) return;
  double to = l->hooks.opened(l->hooks.ud); /* the last channel of the pool to open */
  if (to < 0) return;
  l->gap_pending = 0;
  gn_lease_mark_takeover(l, to);
}

void gn_lease_mark_takeover(gn_lease_t *l, double to) {
  if (l->gap_from_wall < 0) return; /* a new fleet: nothing before us */
  char from[32];
  double from_ms = l->gap_from_wall - GN_LEASE_LATENCY_MS;
  snprintf(from, sizeof from, "%.0f", floor(from_ms)); /* and its end up (write_entry) */
  const char *fv[] = {from, "takeover"};
  write_entry(l, to, "gap", 2, fv, NULL);
  STAT_ADD(l, gaps);
  /* the marker's interval healed for every consumer (a resync, after the marker) */
  if (l->hooks.takeover) l->hooks.takeover(l->hooks.ud, from_ms, to);
}

void gn_lease_deaf(void *ud, const char *kind, double from_ms, double to_ms) {
  gn_lease_t *l = ud;
  /* while the takeover marker is pending, it covers the stream's opening (a resumed channel
   * reports its own interval from its park) */
  if (!l->running || l->st != GN_LEASE_HOLDER || l->gap_pending) return;
  char from[32];
  snprintf(from, sizeof from, "%.0f", floor(from_ms)); /* and its end up (write_entry) */
  const char *fv[] = {from, strcmp(kind, "gap") == 0 ? "rollover" : "reconnect"};
  write_entry(l, to_ms, "gap", 2, fv, NULL);
  STAT_ADD(l, gaps);
}

int gn_lease_tap(void *ud, const gn_msg_t *m, const char *channel_id, const char *raw, size_t len) {
  gn_lease_t *l = ud;
  if (gn_lease_ho_keep(l, m, channel_id, raw, len)) return 1;
  if (!l->running || l->st != GN_LEASE_HOLDER || gn_now_mono_ms() >= l->stepdown_at) {
    STAT_ADD(l, discarded);
    return 0;
  }
  if (!l->replicated) { /* withheld until the tenure reached the replicas (lease.c): a write */
    l->seq++;           /* that did not land, so the next one that does marks the hole */
    STAT_ADD(l, discarded);
    return 0;
  }
  gn_lease_write_gap(l);
  gn_lease_append_event(l, gn_now_wall_ms(), m->topic, channel_id, m->correlation_id, raw, len);
  return 1;
}

void gn_lease_append_event(gn_lease_t *l, double at, const char *topic, const char *channel_id,
                           const char *cid, const char *raw, size_t len) {
  char fence[24], recv[32];
  snprintf(fence, sizeof fence, "%llu", (unsigned long long)l->fence);
  snprintf(recv, sizeof recv, "%.0f", at);
  const char *fv[] = {"type",       "event",    "topic",          topic ? topic : "",
                      "channel_id", channel_id ? channel_id : "", "received_ms", recv,
                      "correlation_id", cid ? cid : "",
                      "fence",      fence,      "raw",            raw};
  size_t fl[14];
  for (int i = 0; i < 13; i++) fl[i] = strlen(fv[i]);
  fl[13] = len;
  write_entry(l, at, "event", 14, fv, fl);
}
