/* lease_int.h: what lease.c (the tenure: acquire, renew, step down) and append.c (the holder's
 * writes to the stream: events and gap markers) share. Not for other files. Service thread but
 * for the stats (under mu).
 *
 * The watermark. KEY:last holds "<wall ms> <fence>:<seq>": every event the server sent the holder
 * of that fence before that time is in the stream or inside a marker there, and its writes
 * 1..seq of the tenure landed. Each write of a holder (append.c) is a script that lands only
 * while KEY:fence is still the holder's (writer-side fencing) and that first writes a marker
 * itself when KEY:last does not name the holder's previous write (some of its writes failed in
 * between: a restarted Redis, maxmemory, a lost connection); then it moves KEY:last on. A
 * renewal moves the time on (quiet periods) only while KEY:last names the holder's latest write.
 * The time is never later than the last proof that every socket of the stream was live (the
 * last message each delivered, data, heartbeat or pong: hooks.heard), never the time of the
 * write or renewal itself: a socket that died silently (half-open TCP: no FIN, no data) looks
 * alive until idle_ms + ping_timeout_ms, and a holder killed before it notices leaves the
 * watermark at its last message, so the next holder's marker covers the silence. A live socket
 * is heard at least every idle_ms (a pong), Genesys's heartbeat every 30 s: that bounds what
 * the watermark lags. The next holder's takeover marker starts at KEY:last's time: so every
 * hole's start is when an event was received, never a stream id (Redis stamps ids when it runs
 * a write, which after a stall is long after the event was received).
 */
#ifndef GN_LEASE_INT_H
#define GN_LEASE_INT_H

#include "lease.h"
#include "redis.h"
#include "gn_util.h"

#include <pthread.h>

/* Markers start this long before the watermark: an event the holder had not received yet at
 * that time may have been published a little before (gap.h: GN_GAP_LATENCY_MS, same reason). */
#define GN_LEASE_LATENCY_MS 1000.0

struct gn_lease {
  gn_env_t *env;
  gn_lease_hooks_t hooks;
  gn_tap_t tap;              /* the client's channels' (env->tap) */
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
  /* the tenure's writes (append.c) */
  uint64_t fence;            /* this tenure's fencing token */
  uint64_t seq;              /* writes tried in this tenure (sent or refused) */
  double tenure_wall;        /* wall ms of the acquisition */
  int gap_pending;           /* a takeover: write the gap marker once the stream is open */
  double gap_from_wall;      /* where it starts (-1: no marker, a new fleet) */
  double known_last;         /* the latest watermark time seen at Redis (0: none): where a
                                takeover's marker starts when Redis lost its data */
  /* the memory policy (CONFIG GET maxmemory-policy) at this connection */
  int policy;                /* 0: not known yet, 1: safe or not knowable, -1: can evict */
  int policy_asked;
  int replicated;            /* this tenure's lease and fence reached the replicas (Sentinel) */
  int redis_reported_down;   /* one "redis down" item per outage */
  int append_err_reported;   /* one "append failed" item until an append succeeds again */
  int hole;                  /* a write failed: its marker is still to be written */
  size_t writes_out;         /* writes sent, not answered yet (append.c: GN_LEASE_WRITES_OUT) */
  struct gn_wq *wq, *wq_tail; /* the writes waiting to be sent, in order */
  size_t wq_bytes;
  uint64_t last_answer;      /* monotonic ms of the latest answer to a write or a renewal: a
                                renewal queued behind a burst's appends is late, not lost */
  /* the handover (handover.c) */
  int successor;             /* a successor that does not hold the lease yet */
  uint64_t successor_until;  /* monotonic ms: then it parks its stream and waits as any other */
  int flushing;              /* it holds it: what it kept waits for the stream's tail */
  struct gn_ho_ev *kept, *kept_tail;
  size_t nkept;
  char *ho_to;               /* a holder asked to hand over to this value, not yet sent */
  double ho_asked;           /* wall ms it was asked */
  pthread_mutex_t mu;
  gn_lease_stats_t stats;
};

#define STAT_ADD(l, field)              \
  do {                                  \
    pthread_mutex_lock(&(l)->mu);       \
    (l)->stats.field++;                 \
    pthread_mutex_unlock(&(l)->mu);     \
  } while (0)

/* lease.c: a health item of kind with fields (stolen). */
void gn_lease_health(gn_lease_t *l, const char *kind, json_t *fields);
/* lease.c: parks the stream and becomes a candidate (event "lost" or "stepped_down"). */
void gn_lease_step_down(gn_lease_t *l, const char *event, const char *reason);

/* append.c */
/* env->tap: appends each event the channel delivers while this process validly holds. */
int gn_lease_tap(void *ud, const gn_msg_t *m, const char *channel_id, const char *raw, size_t len);
/* env->tap: a deaf interval of a channel while holding becomes a marker. */
void gn_lease_deaf(void *ud, const char *kind, double from_ms, double to_ms);
/* Sends every queued write now (before the lease is let go). Returns nothing. */
void gn_lease_wq_flush(gn_lease_t *l);
/* Drops the queued writes (the tenure ended; counted as failed). Returns nothing. */
void gn_lease_wq_clear(gn_lease_t *l);
/* A new connection: nothing unanswered; sends what waits. Returns nothing. */
void gn_lease_writes_reset(gn_lease_t *l);
/* Writes the marker of the writes that failed (hole) now, with no event to carry it: at once
 * when the link is back. Returns nothing. */
void gn_lease_mark_hole(gn_lease_t *l);
/* Writes the takeover marker once the stream is open (gap_pending). Returns nothing. */
void gn_lease_write_gap(gn_lease_t *l);
/* "<fence>:<seq>" of the tenure's latest write. */
void gn_lease_token(const gn_lease_t *l, char *out, size_t n);
/* Appends one event received at wall ms at (the fields of a stream entry). */
void gn_lease_append_event(gn_lease_t *l, double at, const char *topic, const char *channel_id,
                           const char *cid, const char *raw, size_t len);
/* Writes the takeover marker from gap_from_wall to `to` (and heals it). */
void gn_lease_mark_takeover(gn_lease_t *l, double to);

/* handover.c */
/* A successor keeps an event (not holding yet, or flushing). Returns 1 when kept. */
int gn_lease_ho_keep(gn_lease_t *l, const gn_msg_t *m, const char *channel_id, const char *raw,
                     size_t len);
/* A successor took the lease (its marker from gap_from_wall): reads the tail, then flushes. */
void gn_lease_ho_acquired(gn_lease_t *l);
/* Frees what is kept (and a handover not sent). */
void gn_lease_ho_clear(gn_lease_t *l);
/* A holder asked to hand over: sends it once its sockets were heard long enough after the ask. */
void gn_lease_ho_tick(gn_lease_t *l);

#endif
