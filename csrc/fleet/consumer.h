/* consumer.h: reads a fleet's Redis Stream (the one a lease holder appends to, lease.h) on a
 * service thread and queues its entries to the owner like a client's items (queue.h).
 *
 * Modes: fanout (XREAD BLOCK from the stream's end: every consumer sees every entry) and group
 * (XREADGROUP in a consumer group: each entry to one consumer; the owner acknowledges it with
 * gn_consumer_ack after its handler returned (XACK), and entries another consumer left pending
 * longer than claim_idle_ms are taken over with XAUTOCLAIM: at least once).
 *
 * Fencing: an entry is stale when a higher fence had taken the stream at an earlier position
 * (an append that did not check the fence: the holder's own writes do, lease.h): not delivered,
 * counted (stale) and reported as health "stale" (and acknowledged in group mode). Fanout reads
 * in order (the highest fence seen so far); a group member learns where each fence took effect
 * from the markers' stream_id, so an entry appended under the fence current at the time is
 * delivered however late it is claimed (after a takeover, a raised handler, a killed member).
 * A gap marker reaches the owner as health "restored" with the deaf interval and its reason:
 * from KEY:stream in fanout mode (in order with the events), from KEY:gaps in group mode (every
 * member of the group reads it, before each group read, from the time it was created). A group
 * that is gone at a reconnection went with its stream's data: it is created again at the new
 * stream's first entry.
 *
 * Trimming (consumer_int.h): entries trimmed (or deleted) after the cursor before they were read
 * are a marker too: health "restored" with reason "trimmed" and their count where it is known,
 * checked in the same step as each read (one script), so neither a false marker nor a silent
 * loss. Fanout: the consumer's own. Group: written to KEY:gaps (with the group's name) by the
 * member whose read moved the group past the hole, and by the member whose XAUTOCLAIM found
 * pending entries deleted: every member of that group reports it.
 */
#ifndef GN_CONSUMER_H
#define GN_CONSUMER_H

#include <stddef.h>
#include <stdint.h>

#include "queue.h"
#include "redis.h"

typedef struct gn_service gn_service_t;
typedef struct gn_consumer gn_consumer_t;

typedef struct {
  gn_redis_opts_t redis; /* the connection: url, password_file, tls, sentinel (redis.h) */
  const char *key;       /* the fleet's base key: the stream is KEY:stream */
  int group;             /* 0: fanout, 1: consumer group */
  const char *group_name, *consumer_name;
  double block_ms;       /* XREAD BLOCK */
  double claim_idle_ms;  /* group: claim entries pending longer than this */
  size_t count;          /* entries per read */
  size_t queue_limit;    /* entries waiting for the owner (reads pause above half of it) */
  const char *after_id;  /* fanout: start after this entry ("<ms>-<seq>"; NULL: the end) */
} gn_consumer_cfg_t;

typedef struct {
  uint64_t events, stale, gaps, acked, claimed, dropped;
  uint64_t trimmed;         /* markers of entries trimmed before they were read (in gaps too) */
  uint64_t trimmed_entries; /* the entries they counted (a marker's count, where known) */
  uint64_t highest_fence;
  int redis_up;
} gn_consumer_stats_t;

/* A stopped consumer on svc (NULL: the default context). Returns it or NULL and err naming the
 * field. Owner thread. */
gn_consumer_t *gn_consumer_new(const gn_consumer_cfg_t *cfg, gn_service_t *svc, char *err,
                               size_t errlen);
/* Starts reading. Returns 0 or -1 (already started, closed). Owner thread. */
int gn_consumer_start(gn_consumer_t *c);
/* Stops reading and waits until the service thread let go; idempotent. Owner thread. */
void gn_consumer_close(gn_consumer_t *c);
/* Closes and frees (NULL allowed). Owner thread. */
void gn_consumer_free(gn_consumer_t *c);
/* Readable while items wait. Any thread. */
int gn_consumer_fd(gn_consumer_t *c);
/* The next item (free with gn_item_free), or NULL. An event's data has "id" (the stream
 * entry's id). Owner thread. */
gn_item_t *gn_consumer_pop(gn_consumer_t *c);
/* Group mode: acknowledges entry id (XACK) once the handler returned. Returns nothing. Owner
 * thread. */
void gn_consumer_ack(gn_consumer_t *c, const char *id);
/* Fills *out. Any thread. */
void gn_consumer_stats(gn_consumer_t *c, gn_consumer_stats_t *out);
/* 1 when c was created by another process (forked after). Any thread. */
int gn_consumer_forked(const gn_consumer_t *c);

#endif
