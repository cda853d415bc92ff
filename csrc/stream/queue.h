/* queue.h: the bounded queue of items from the service thread to the owner, and its wake-up.
 *
 * The service thread pushes events, health items and policy records; the owner pops them when
 * it wants (poll()), so nothing here ever calls into the owner. An eventfd (gn_queue_fd) is
 * readable while something waits (an unreported drop included); for events it is written at the
 * end of the service loop's iteration (gn_service_defer), once for all the events one read of
 * the socket gave, not once per event.
 *
 * Bounds, whether or not the owner ever pops: events by number (event_limit) and by their
 * estimated cost in memory (byte_limit: the item's one allocation, the text in it; one event is
 * always let in when no other waits, so an event larger than the limit is not lost for good);
 * health and policy items by number (GN_HEALTH_LIMIT). Consecutive "malformed" items of one
 * reason are one item whose "count" grows (a flood of bad frames costs one item). Whatever is
 * refused, and any item that cannot be allocated, is dropped, counted, and reported to the owner
 * as one health "overflow" item at its next pop: nothing is lost without being told.
 *
 * Closing: gn_queue_detach (service thread) makes the queue refuse every later item and wakes
 * an owner blocked in gn_queue_wait_detached; after that the owner may discard what is left.
 */
#ifndef GN_QUEUE_H
#define GN_QUEUE_H

#include <jansson.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "bell.h"
#include "message.h"
#include "metrics.h"
#include "service.h"

/* GN_ITEM_POLICY: an attempt record for the operator's policy hook; answered with
 * gn_client_policy_answer(c, item->seq, delay). */
/* GN_ITEM_RESYNC: an entity's state read back after a gap (resync.h), data = the item's fields
 * (topic, body, resync, family, deaf_from_ms, deaf_to_ms, read_ms, newer_than); bounded and
 * reported like an event. */
typedef enum {
  GN_ITEM_EVENT = 1,
  GN_ITEM_HEALTH = 2,
  GN_ITEM_POLICY = 3,
  GN_ITEM_RESYNC = 4
} gn_item_type_t;
/* Items bounded as events (queue_limit, queue_bytes): events and resync items. */
#define GN_ITEM_IS_EVENTLIKE(t) ((t) == GN_ITEM_EVENT || (t) == GN_ITEM_RESYNC)

#define GN_HEALTH_LIMIT 1024 /* health and policy items waiting before new ones are dropped */

typedef struct gn_item {
  struct gn_item *next;
  gn_item_type_t type;
  json_t *data;  /* health and policy: {"kind":..., fields}; NULL for an event */
  /* event: the message text as received and what the service thread read from it, all in the
   * item's one allocation (raw, topic and channel_id point behind the struct) */
  char *raw;
  size_t rawlen;
  size_t body_off, body_len; /* eventBody's text in raw (body_len 0: no eventBody) */
  const char *topic, *channel_id;
  const char *correlation_id; /* event: metadata.CorrelationId, or NULL when it had none */
  double received_ms;
  uint64_t seq;  /* policy: which scheduled attempt this record is for */
  size_t cost;   /* event: estimated bytes it holds (counted against the byte limit) */
} gn_item_t;

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t cv;
  gn_item_t *head, *tail;
  size_t events;         /* events (not health) waiting */
  size_t event_limit;
  size_t bytes;          /* estimated cost of the events waiting */
  size_t byte_limit;
  size_t health;         /* health and policy items waiting */
  uint64_t dropped, dropped_reported;               /* events */
  uint64_t health_dropped, health_dropped_reported; /* health and policy items */
  int efd;
  int armed;             /* the eventfd was written and not read since */
  gn_defer_t defer;      /* an event's wake-up, deferred to the end of the loop's iteration */
  int detached;          /* the service thread let go: items are refused */
  gn_bell_t *bell;       /* rung with the eventfd's wake-ups (the client's wake socket), or NULL */
  int soft;              /* overflow = "pause": events over the limits are let in (up to twice
                          * them) while the producer stops reading; see gn_queue_want_room */
  int room_wanted;       /* the producer paused: call room_cb once the queue is half empty */
  void (*room_cb)(void *ud);
  void *room_ud;
  gn_metrics_t *metrics; /* dropped and health are counted there too */
} gn_queue_t;

/* Prepares q (eventfd included). Returns 0, or -1 and err. Owner thread, before any other use. */
int gn_queue_init(gn_queue_t *q, size_t event_limit, size_t byte_limit, gn_metrics_t *metrics,
                  char *err, size_t errlen);
/* Frees what is left and closes the eventfd. Returns nothing. Owner thread, after the service
 * thread has let go (or never started). */
void gn_queue_destroy(gn_queue_t *q);

/* Queues it (taking ownership); an item over a limit is freed and counted as dropped, a
 * malformed item like the last one waiting is folded into it. Returns nothing. Service thread. */
void gn_queue_push(gn_queue_t *q, gn_item_t *it);
/* Queues a new item of type with data (stolen) and seq. Returns nothing (out of memory is
 * counted as a drop). Service thread. */
void gn_queue_add(gn_queue_t *q, gn_item_type_t type, json_t *data, uint64_t seq);
/* Queues a health item: fields (stolen; NULL for none) plus "kind", "state" and
 * "timestamp_ms" ("malformed" also "count" and "last_timestamp_ms"). Returns nothing. Service
 * thread. */
void gn_queue_health(gn_queue_t *q, const char *kind, const char *state, json_t *fields);
/* Queues event m (classified from raw, len bytes) received on channel_id: the raw text, where
 * its eventBody lies, the topic and the channel for the owner (no tree: the owner decodes the
 * body), counted in the metrics. Returns nothing (out of memory is counted as a drop). Service
 * thread. */
void gn_queue_event(gn_queue_t *q, const gn_msg_t *m, const char *channel_id, const char *raw,
                    size_t len);
/* Counts one item that could not be queued (an event when event is set, else a health or policy
 * item) and makes the eventfd readable for its report. Returns nothing. Service thread. */
void gn_queue_drop(gn_queue_t *q, int event);

/* Returns the next item (an "overflow" report first when drops are unreported; state is the
 * client's state name for it), or NULL when nothing waits; the eventfd is drained when nothing
 * is left. Free it with gn_item_free. Owner thread. */
gn_item_t *gn_queue_pop(gn_queue_t *q, const char *state);
/* Up to max items at once under one lock, as gn_queue_pop would return them one by one, linked
 * by next (NULL when nothing waits); the eventfd is drained when nothing is left. Free each with
 * gn_item_free. Owner thread. */
gn_item_t *gn_queue_pop_batch(gn_queue_t *q, const char *state, size_t max);
/* The events waiting and their estimated bytes. Returns nothing. Any thread. */
void gn_queue_usage(gn_queue_t *q, size_t *events, size_t *bytes);
/* The eventfd, readable while items wait. Any thread. */
int gn_queue_fd(const gn_queue_t *q);
/* Rings b (NULL: none) whenever the eventfd becomes readable (items start waiting where none
 * did): the client's wake socket. Returns nothing. Owner thread; b must outlive its use here
 * (set NULL before freeing it). */
void gn_queue_set_bell(gn_queue_t *q, gn_bell_t *b);

/* Flow control (overflow = "pause"). The service thread stops reading the socket when the
 * queue is full instead of dropping, and the owner's pops tell it when there is room again.
 *
 * gn_queue_set_soft: with on, an event over queue_limit/queue_bytes is still let in (what the
 * transport had already read when it paused), up to twice the limits (then dropped and
 * counted as ever); with 0 the limits are hard again (drop mode). Service thread (or the owner
 * before start). */
void gn_queue_set_soft(gn_queue_t *q, int on);
/* Sets the callback gn_queue_want_room arms: cb(ud) runs on the owner thread, inside a pop,
 * without the queue's lock, once the events waiting have fallen to half the limits. It must not
 * block (it posts to the service thread). Owner thread, before start. */
void gn_queue_set_room_cb(gn_queue_t *q, void (*cb)(void *ud), void *ud);
/* Returns 1 when the queue is at or over a limit, and then arms the room callback (once); 0
 * when there is room. One lock for both, so a pop in between cannot be missed. Service
 * thread. */
int gn_queue_want_room(gn_queue_t *q);

/* Refuses every later item and wakes gn_queue_wait_detached. Returns nothing. Service thread
 * (or the owner when the service thread never had the client). */
void gn_queue_detach(gn_queue_t *q);
/* Blocks until gn_queue_detach has run. Returns nothing. Owner thread. */
void gn_queue_wait_detached(gn_queue_t *q);
/* Frees every waiting item unread (and gives large amounts of freed memory back to the system).
 * Returns nothing. Owner thread. */
void gn_queue_discard(gn_queue_t *q);

/* Frees an item (NULL allowed). Returns nothing. Any thread that owns it. */
void gn_item_free(gn_item_t *it);

#endif
