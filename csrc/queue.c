/* queue.c: the bounded queue to the owner (see queue.h).
 *
 * Lock order: q->mu, then metrics->mu (never the other way round).
 */
#include "queue.h"
#include "gn_util.h"

#include <errno.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <unistd.h>

int gn_queue_init(gn_queue_t *q, size_t event_limit, gn_metrics_t *metrics, char *err,
                  size_t errlen) {
  memset(q, 0, sizeof *q);
  pthread_mutex_init(&q->mu, NULL);
  pthread_cond_init(&q->cv, NULL);
  q->event_limit = event_limit;
  q->metrics = metrics;
  q->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (q->efd < 0) {
    snprintf(err, errlen, "eventfd: %s", strerror(errno));
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->cv);
    return -1;
  }
  return 0;
}

static void free_list(gn_item_t *it) {
  while (it) {
    gn_item_t *n = it->next;
    gn_item_free(it);
    it = n;
  }
}

void gn_queue_destroy(gn_queue_t *q) {
  free_list(q->head);
  q->head = q->tail = NULL;
  if (q->efd >= 0) close(q->efd);
  q->efd = -1;
  pthread_mutex_destroy(&q->mu);
  pthread_cond_destroy(&q->cv);
}

void gn_item_free(gn_item_t *it) {
  if (!it) return;
  json_decref(it->data);
  json_decref(it->body);
  free(it->raw);
  free(it);
}

void gn_queue_drop(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  q->dropped++;
  pthread_mutex_unlock(&q->mu);
  pthread_mutex_lock(&q->metrics->mu);
  q->metrics->dropped++;
  pthread_mutex_unlock(&q->metrics->mu);
}

void gn_queue_push(gn_queue_t *q, gn_item_t *it) {
  pthread_mutex_lock(&q->mu);
  if (q->detached) { /* closing: nobody will read it */
    pthread_mutex_unlock(&q->mu);
    gn_item_free(it);
    return;
  }
  if (it->type == GN_ITEM_EVENT) {
    if (q->events >= q->event_limit) {
      pthread_mutex_unlock(&q->mu);
      gn_item_free(it);
      gn_queue_drop(q);
      return;
    }
    q->events++;
  }
  int was_empty = q->head == NULL;
  it->next = NULL;
  if (q->tail) q->tail->next = it;
  else q->head = it;
  q->tail = it;
  if (was_empty) {
    uint64_t one = 1;
    ssize_t w = write(q->efd, &one, sizeof one);
    (void)w;
  }
  pthread_mutex_unlock(&q->mu);
}

void gn_queue_add(gn_queue_t *q, gn_item_type_t type, json_t *data, uint64_t seq) {
  gn_item_t *it = calloc(1, sizeof *it);
  if (!it) {
    json_decref(data);
    gn_queue_drop(q);
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
    gn_queue_drop(q);
    return;
  }
  json_object_set_new(fields, "kind", json_string(kind));
  json_object_set_new(fields, "state", json_string(state));
  json_object_set_new(fields, "timestamp_ms", json_real(gn_now_wall_ms()));
  pthread_mutex_lock(&q->metrics->mu);
  q->metrics->health++;
  pthread_mutex_unlock(&q->metrics->mu);
  gn_queue_add(q, GN_ITEM_HEALTH, fields, 0);
}

void gn_queue_event(gn_queue_t *q, gn_msg_t *m, const char *channel_id, const char *raw,
                    size_t len) {
  gn_item_t *it = calloc(1, sizeof *it);
  if (!it || !(it->raw = malloc(len + 1))) {
    free(it);
    gn_msg_clear(m);
    gn_queue_drop(q);
    return;
  }
  memcpy(it->raw, raw, len);
  it->raw[len] = 0;
  it->rawlen = len;
  it->type = GN_ITEM_EVENT;
  it->body = m->body ? json_incref(m->body) : NULL;
  it->data = json_pack("{s:s, s:s, s:f}", "topic", m->topic, "channel_id", channel_id,
                       "received_ms", gn_now_wall_ms());
  gn_msg_clear(m);
  pthread_mutex_lock(&q->metrics->mu);
  q->metrics->events++;
  pthread_mutex_unlock(&q->metrics->mu);
  gn_queue_push(q, it);
}

gn_item_t *gn_queue_pop(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
  gn_item_t *it = NULL;
  if (q->dropped > q->dropped_reported) {
    /* Report drops as soon as the owner reads again, before the next event. */
    uint64_t n = q->dropped - q->dropped_reported;
    it = calloc(1, sizeof *it);
    if (it) { /* without memory the report waits for the next pop */
      q->dropped_reported = q->dropped;
      it->type = GN_ITEM_HEALTH;
      it->data = json_pack("{s:s, s:I, s:I, s:I, s:f}", "kind", "overflow", "dropped",
                           (json_int_t)n, "total_dropped", (json_int_t)q->dropped, "queue_limit",
                           (json_int_t)q->event_limit, "timestamp_ms", gn_now_wall_ms());
    }
  }
  if (!it && q->head) {
    it = q->head;
    q->head = it->next;
    if (!q->head) q->tail = NULL;
    if (it->type == GN_ITEM_EVENT) q->events--;
    it->next = NULL;
  }
  if (!q->head && q->dropped == q->dropped_reported) {
    uint64_t v;
    ssize_t r = read(q->efd, &v, sizeof v); /* not readable while nothing waits */
    (void)r;
  }
  pthread_mutex_unlock(&q->mu);
  return it;
}

int gn_queue_fd(const gn_queue_t *q) { return q->efd; }

void gn_queue_detach(gn_queue_t *q) {
  pthread_mutex_lock(&q->mu);
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
  pthread_mutex_unlock(&q->mu);
  free_list(it);
}
