/* consumer_int.h: what consumer.c (the reader: connection, reads, entries, markers) and
 * consumer_trim.c (the reads that check for trimmed entries, and their scripts) share. Not for
 * other files. Service thread but for the stats (under mu) and the owner-side fields.
 *
 * Trimming. The holder appends with XADD MAXLEN ~ maxlen: a consumer further behind than that
 * loses entries it had not read yet. Each read is one step (consumer_trim.c: a MULTI/EXEC
 * transaction for fanout, a script for a group) that reads after the cursor (XREAD, or
 * XREADGROUP for a group) and, at the same instant, what XINFO STREAM says:
 * entries-added (how many entries the stream ever took), length, first-entry and
 * max-deleted-entry-id (XDEL only: trimming does not move it). A consumer knows the ordinal of
 * its cursor (its place among all the entries ever added); when the cursor lies before the
 * first entry still there, ordinal(first) = entries-added - length + 1 (nothing deleted after
 * the first entry), and what lies between was trimmed before it was read: exactly that many.
 * A read that blocks (XREAD BLOCK) only wakes the next checked read up: an entry it returned
 * could follow a hole it cannot see.
 */
#ifndef GN_CONSUMER_INT_H
#define GN_CONSUMER_INT_H

#include "consumer.h"
#include "backoff.h"
#include "redis.h"
#include "gn_util.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

#define TRANSITIONS 64

struct gn_consumer {
  gn_queue_t queue;
  gn_metrics_t metrics;
  int queue_ready;
  gn_service_t *svc;
  pid_t pid;
  gn_redis_conf_t conf;
  char *stream, *gaps, *cursors, *group, *name;
  int group_mode;
  char block[24], count[24];
  double block_ms, claim_idle_ms;
  size_t queue_limit;
  _Atomic int started, closing;
  /* service thread */
  gn_redis_t *r;
  uv_timer_t *timer;
  gn_backoff_t bo;
  int running;
  int reading;               /* a read (or the group creation) is out */
  uint64_t read_since;
  int looked;                /* the watchdog let the loop turn once (read the socket) before
                                calling the link dead (consumer.c, tick) */
  int claiming;
  uint64_t last_claim;
  int scan;                  /* the next read is a checked read (1), or a wake-up (XREAD BLOCK) */
  char last_id[64];          /* fanout: the cursor (the last entry read); group: the group's
                                last delivered entry, where the wake-up read starts */
  long long cur_n;           /* fanout: the cursor's ordinal in the stream (-1: not known) */
  double last_rx;            /* fanout: received time of the last entry read (-1: not known) */
  char covered[64];          /* fanout: the highest XDEL'ed id already reported */
  char gap_id[64];           /* group: where the next read of KEY:gaps starts */
  int gap_reading;
  int group_from_start;      /* create the group at "0", not "$": connected before, so a group
                                that is not there any more went with its stream's data (a
                                restarted Redis, FLUSHALL) and the new stream is all new */
  uint64_t max_fence;
  /* group: where each fence took effect in the stream (its markers' stream_id), the latest
   * TRANSITIONS of them: an entry is stale only when a higher fence took effect before it */
  struct { uint64_t fence, ms, seq; } trans[TRANSITIONS];
  int ntrans;
  int reported_down;
  pthread_mutex_t mu;
  gn_consumer_stats_t stats;
};

#define STAT_ADD(c, field, n)           \
  do {                                  \
    pthread_mutex_lock(&(c)->mu);       \
    (c)->stats.field += (n);            \
    pthread_mutex_unlock(&(c)->mu);     \
  } while (0)

/* consumer.c */
void gn_consumer_health(gn_consumer_t *c, const char *kind, json_t *fields);
/* The value of field name in an entry's fields (NULL: none); *len its length. */
const char *gn_consumer_field(redisReply *fields, const char *name, size_t *len);
/* Queues (or reports) each entry of list, in order. */
void gn_consumer_entries(gn_consumer_t *c, redisReply *list);
/* Answers of the reads (and of the claims), consumer.c's: they go on reading. */
void gn_consumer_read_done(void *ud, redisReply *rep);
void gn_consumer_claim_done(void *ud, redisReply *rep);

/* consumer_trim.c: the checked read (fanout or group, by c->group_mode) or, when the last one
 * found nothing, the wake-up read. Returns gn_redis_cmd's result. */
int gn_consumer_send_read(gn_consumer_t *c);
/* A checked read's answer: reports what was trimmed and queues the entries. Returns how many
 * entries it read (the next read is a checked read when > 0), -1 when rep is not one. */
long gn_consumer_scan_reply(gn_consumer_t *c, redisReply *rep);
/* XAUTOCLAIM in a script: pending entries trimmed before they were claimed again become the
 * group's marker (KEY:gaps). Returns gn_redis_cmd's result. */
int gn_consumer_send_claim(gn_consumer_t *c);

#endif
