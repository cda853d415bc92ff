/* queue.c: the bounded queue to the owner (see queue.h).
 *
 * Lock order: q->mu, then metrics->mu (never the other way round).
 */
#include "queue.h"
#include "gn_util.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

static int pending_locked(const gn_queue_t *q);
static void wake_locked(gn_queue_t *q);

/* The deferred wake-up (gn_service_defer): the eventfd written once for the events queued in
 * this iteration of the loop, if they still wait. Service thread. */
static void flush_wake(void *arg) {
  gn_queue_t *q = arg;
  pthread_mutex_lock(&q->mu);
  if (pending_locked(q)) wake_locked(q);
  pthread_mutex_unlock(&q->mu);
}

int gn_queue_init(gn_queue_t *q, size_t event_limit, size_t byte_limit, gn_metrics_t *metrics,
                  char *err, size_t errlen) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  q->event_limit = event_limit;
  q->byte_limit = byte_limit;
  q->metrics = metrics;
  q->defer.fn = flush_wake;
  q->defer.arg = q;
  q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->efd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    return -1;
  }
  return 0;
}

/* Frees a list of items. Returns the estimated bytes they held. */
static size_t free_list(gn_item_t *it) {
  size_t bytes = 0;
  while (it) {
    gn_item_t *n = it->next;
    bytes += it->cost;
    gn_item_free(it);
    it = n;
  }
  return bytes;
}

/* After a large amount was freed at once (an unread queue), the allocator keeps it in its free
 * lists (in the service thread's arena for items built there): hand it back to the system. */
static void trim_after(size_t freed) {
#if defined(__GLIBC__)
  if (freed >= ((size_t)1 << 20)) malloc_trim(0);
#else
  (void)freed;
#endif
}

void gn_queue_destroy(gn_queue_t *q) {
  size_t freed = free_list(q->head);
  q->head = q->tail = NULL;
  if (q->efd >= 0) close(q->efd);
  q->efd = -1;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
  trim_after(freed);
}

void gn_item_free(gn_item_t *it) {
  if (!it) return;
  json_decref(it->data);
  free(it); /* an event's text lives in the same allocation */
}

/* glibc's chunk for a request of n bytes (size word, 16-byte alignment, 32 at least). */
static size_t chunk(size_t n) {
  size_t c = (n + 8 + 15) & ~(size_t)15;
  return c < 32 ? 32 : c;
}

/* Makes the eventfd readable if it was not: something (an item or a drop report) now waits.
 * Caller holds q->mu. */
static void wake_locked(gn_queue_t *q) {
  if (q->armed) return;
  uint64_t one = 1;
  ssize_t w = write(q->efd, &one, sizeof one);
  (void)w;
  q->armed = 1;
  if (q->bell) gn_bell_ring(q->bell);
}

static int pending_locked(const gn_queue_t *q) {
  return q->head != NULL || q->dropped != q->dropped_reported ||
         q->health_dropped != q->health_dropped_reported;
}

/* Counts a drop. Caller holds q->mu. */
static void drop_locked(gn_queue_t *q, int event) {
  if (q->detached) return; /* closing: nobody will read the report */
  if (event) q->dropped++;
  else q->health_dropped++;
  wake_locked(q);
  pthread_mutex_lock(&q->metrics->mu);
  if (event) q->metrics->dropped++;
  else q->metrics->health_dropped++;
  pthread_mutex_unlock(&q->metrics->mu);
}

void gn_queue_drop(gn_queue_t *q, int event) {
  pthread_mutex_lock(&q->mu);
  drop_locked(q, event);
  pthread_mutex_unlock(&q->mu);
}

/* Folds the malformed item it into the last item waiting when that one is a malformed item of
 * the same reason. Returns 1 when it was folded (it is then the caller's to free). Caller holds
 * q->mu. */
static int fold_locked(gn_queue_t *q, gn_item_t *it) {
  gn_item_t *t = q->tail;
  if (!t || t->type != GN_ITEM_HEALTH || it->type != GN_ITEM_HEALTH) return 0;
  json_t *n = json_object_get(it->data, "count");
  json_t *tn = json_object_get(t->data, "count");
  if (!n || !tn) return 0; /* only foldable items carry a count */
  const char *k = json_string_value(json_object_get(it->data, "kind"));
  const char *tk = json_string_value(json_object_get(t->data, "kind"));
  const char *r = json_string_value(json_object_get(it->data, "reason"));
  const char *tr = json_string_value(json_object_get(t->data, "reason"));
  if (!k || !tk || strcmp(k, tk) != 0 || !r || !tr || strcmp(r, tr) != 0) return 0;
  json_integer_set(tn, json_integer_value(tn) + json_integer_value(n));
  json_t *ts = json_object_get(it->data, "timestamp_ms");
  if (ts) json_object_set_new(t->data, "last_timestamp_ms", json_real(json_real_value(ts)));
  return 1;
}

void gn_queue_push(gn_queue_t *q, gn_item_t *it) {
  pthread_mutex_lock(&q->mu);
  if (q->detached) { /* closing: nobody will read it */
    pthread_mutex_unlock(&q->mu);
    gn_item_free(it);
    return;
  }
  int event = GN_ITEM_IS_EVENTLIKE(it->type);
  if (event) {
    /* One event always fits when no other waits: a larger one than the byte limit is not
     * refused for good. */
    size_t elim = q->soft ? 2 * q->event_limit : q->event_limit;
    size_t blim = q->soft ? 2 * q->byte_limit : q->byte_limit;
    if (q->events >= elim ||
        (q->events > 0 && (it->cost > blim || q->bytes > blim - it->cost))) {
      drop_locked(q, 1);
      pthread_mutex_unlock(&q->mu);
      gn_item_free(it);
      return;
    }
    q->events++;
    q->bytes += it->cost;
  } else if (fold_locked(q, it)) {
    pthread_mutex_unlock(&q->mu);
    gn_item_free(it);
    return;
  } else if (q->health >= GN_HEALTH_LIMIT) {
    drop_locked(q, 0);
    pthread_mutex_unlock(&q->mu);
    gn_item_free(it);
    return;
  } else {
    q->health++;
  }
  it->next = NULL;
  if (q->tail) q->tail->next = it;
  else q->head = it;
  q->tail = it;
  /* An event's wake-up waits for the end of the loop's iteration (on a service thread): the
   * other events of the same read join it. */
  if (!event || q->armed || gn_service_defer(&q->defer) != 0) wake_locked(q);
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_add(gn_queue_t *q, gn_item_type_t type, json_t *data, uint64_t seq) {
  gn_item_t *it = calloc(1, sizeof *it);
  if (!it) {
    json_decref(data);
    gn_queue_drop(q, GN_ITEM_IS_EVENTLIKE(type));
    return;
  }
  it->type = type;
  it->data = data;
  it->seq = seq;
  gn_queue_push(q, it);
}

void gn_queue_health(gn_queue_t *q, const char *kind, const char *state, json_t *fields) {
  if (!fields) fields = json_object();
  if (!fields) {
    gn_queue_drop(q, 0);
    return;
  }
  json_object_set_new(fields, "kind", json_string(kind));
  json_object_set_new(fields, "state", json_string(state));
  json_object_set_new(fields, "timestamp_ms", json_real(gn_now_wall_ms()));
  if (strcmp(kind, "malformed") == 0) { /* a flood of them folds into one item */
    json_object_set_new(fields, "count", json_integer(1));
    json_object_set_new(fields, "last_timestamp_ms",
                        json_real(json_real_value(json_object_get(fields, "timestamp_ms"))));
  }
  pthread_mutex_lock(&q->metrics->mu);
  q->metrics->health++;
  pthread_mutex_unlock(&q->metrics->mu);
  gn_queue_add(q, GN_ITEM_HEALTH, fields, 0);
}

void gn_queue_event(gn_queue_t *q, const gn_msg_t *m, const char *channel_id, const char *raw,
                    size_t len) {
  size_t tl = strlen(m->topic) + 1, cl = strlen(channel_id) + 1;
  size_t kl = m->correlation_id ? strlen(m->correlation_id) + 1 : 0;
  size_t n = sizeof(gn_item_t) + len + 1 + tl + cl + kl;
  gn_item_t *it = malloc(n);
  if (!it) {
    gn_queue_drop(q, 1);
    return;
  }
  memset(it, 0, sizeof *it);
  char *p = (char *)(it + 1);
  it->raw = p;
  memcpy(p, raw, len);
  p[len] = 0;
  it->rawlen = len;
  p += len + 1;
  memcpy(p, m->topic, tl);
  it->topic = p;
  p += tl;
  memcpy(p, channel_id, cl);
  it->channel_id = p;
  p += cl;
  if (kl) {
    memcpy(p, m->correlation_id, kl);
    it->correlation_id = p;
  }
  if (m->body) {
    it->body_off = (size_t)(m->body - raw);
    it->body_len = m->body_len;
  }
  it->type = GN_ITEM_EVENT;
  it->received_ms = gn_now_wall_ms();
  it->cost = chunk(n);
  __atomic_fetch_add(&q->metrics->events, 1, __ATOMIC_RELAXED);
  gn_queue_push(q, it);
}

/* The queue is at or over a limit. Caller holds q->mu. */
static int full_locked(const gn_queue_t *q) {
  return q->events >= q->event_limit || q->bytes >= q->byte_limit;
}

void gn_queue_set_soft(gn_queue_t *q, int on) {
  pthread_mutex_lock(&q->mu);
  q->soft = on;
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_set_room_cb(gn_queue_t *q, void (*cb)(void *ud), void *ud) {
  pthread_mutex_lock(&q->mu);
  q->room_cb = cb;
  q->room_ud = ud;
  pthread_mutex_unlock(&q->mu);
}

int gn_queue_want_room(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  int full = full_locked(q);
  if (full) q->room_wanted = 1;
  pthread_mutex_unlock(&q->mu);
  return full;
}

/* The next item, or NULL; *room set when it left the queue half empty for a paused producer
 * (overflow = "pause"). Caller holds q->mu. */
static gn_item_t *pop_locked(gn_queue_t *q, const char *state, int *room) {
  gn_item_t *it = NULL;
  if (q->dropped != q->dropped_reported || q->health_dropped != q->health_dropped_reported) {
    /* Report drops as soon as the owner reads again, before the next event. */
    uint64_t n = q->dropped - q->dropped_reported;
    uint64_t h = q->health_dropped - q->health_dropped_reported;
    it = calloc(1, sizeof *it);
    if (it) { /* without memory the report waits for the next pop */
      it->type = GN_ITEM_HEALTH;
      it->data = json_pack("{s:s, s:s, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I}", "kind",
                           "overflow", "state", state ? state : "?", "timestamp_ms",
                           gn_now_wall_ms(), "dropped", (json_int_t)n, "total_dropped",
                           (json_int_t)q->dropped, "health_dropped", (json_int_t)h,
                           "total_health_dropped", (json_int_t)q->health_dropped, "queue_limit",
                           (json_int_t)q->event_limit, "queue_bytes", (json_int_t)q->byte_limit,
                           "health_limit", (json_int_t)GN_HEALTH_LIMIT);
      if (it->data) {
        q->dropped_reported = q->dropped;
        q->health_dropped_reported = q->health_dropped;
      } else {
        free(it);
        it = NULL;
      }
    }
  }
  if (!it && q->head) {
    it = q->head;
    q->head = it->next;
    if (!q->head) q->tail = NULL;
    if (GN_ITEM_IS_EVENTLIKE(it->type)) {
      q->events--;
      q->bytes -= it->cost;
      /* half empty: the paused producer may read again (it refills the other half while the
       * owner works through this one) */
      if (q->room_wanted && q->events <= q->event_limit / 2 && q->bytes <= q->byte_limit / 2) {
        q->room_wanted = 0;
        *room = q->room_cb != NULL && !q->detached;
      }
    } else {
      q->health--;
    }
    it->next = NULL;
  }
  return it;
}

/* Drains the eventfd when nothing waits any more. Caller holds q->mu. */
static void settle_locked(gn_queue_t *q) {
  if (q->armed && !pending_locked(q)) {
    uint64_t v;
    ssize_t r = read(q->efd, &v, sizeof v); /* not readable while nothing waits */
    (void)r;
    q->armed = 0;
  }
}

gn_item_t *gn_queue_pop(gn_queue_t *q, const char *state) {
  int room = 0;
  pthread_mutex_lock(&q->mu);
  gn_item_t *it = pop_locked(q, state, &room);
  settle_locked(q);
  void (*cb)(void *) = q->room_cb;
  void *ud = q->room_ud;
  pthread_mutex_unlock(&q->mu);
  if (room) cb(ud);
  return it;
}

gn_item_t *gn_queue_pop_batch(gn_queue_t *q, const char *state, size_t max) {
  gn_item_t *head = NULL, **tail = &head, *it;
  int room = 0;
  pthread_mutex_lock(&q->mu);
  for (size_t i = 0; i < max && (it = pop_locked(q, state, &room)); i++) {
    *tail = it;
    tail = &it->next;
  }
  settle_locked(q);
  void (*cb)(void *) = q->room_cb;
  void *ud = q->room_ud;
  pthread_mutex_unlock(&q->mu);
  if (room) cb(ud);
  return head;
}

void gn_queue_usage(gn_queue_t *q, size_t *events, size_t *bytes) {
  pthread_mutex_lock(&q->mu);
  *events = q->events;
  *bytes = q->bytes;
  pthread_mutex_unlock(&q->mu);
}

int gn_queue_fd(const gn_queue_t *q) { return q->efd; }

void gn_queue_set_bell(gn_queue_t *q, gn_bell_t *b) {
  pthread_mutex_lock(&q->mu);
  q->bell = b;
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_detach(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  gn_service_undefer(&q->defer); /* the owner may free q once it sees this */
  q->detached = 1;
  pthread_cond_broadcast(&q->cv);
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_wait_detached(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  while (!q->detached) pthread_cond_wait(&q->cv, &q->mu);
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_discard(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  gn_item_t *it = q->head;
  q->head = q->tail = NULL;
  q->events = 0;
  q->bytes = 0;
  q->health = 0;
  pthread_mutex_unlock(&q->mu);
  trim_after(free_list(it));
}
