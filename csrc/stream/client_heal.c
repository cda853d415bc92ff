/* client_heal.c: a gap known above the client (see client.h): handed to the resync engine on
 * the service thread, from there (a fleet takeover) or posted from the owner's thread (a
 * reader of nginx's ring that missed items); and until when the pool's sockets were heard
 * (the fleet's watermark). */
#include "client_int.h"

#include <stdlib.h>

void gn_client_resync_gap(gn_client_t *c, double from_ms, double to_ms) {
  for (int i = 0; c->resync && i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (s && atomic_load(&s->running)) gn_resync_env_deaf(c->resync, &s->env, from_ms, to_ms);
  }
}

double gn_client_heard(gn_client_t *c) {
  double min = -1;
  for (int i = 0; i < GN_POOL_MAX; i++) {
    gn_slot_t *s = gn_cl_slot_at(c, i);
    if (!s || !atomic_load(&s->running) || !s->ch) continue;
    double h = gn_channel_heard(s->ch);
    if (h >= 0 && (min < 0 || h < min)) min = h;
  }
  return min;
}

typedef struct {
  gn_client_t *c;
  double from_ms, to_ms;
} heal_t;

static void heal_task(gn_service_t *svc, void *arg) {
  (void)svc;
  heal_t *h = arg;
  gn_client_resync_gap(h->c, h->from_ms, h->to_ms);
  free(h);
}

int gn_client_heal(gn_client_t *c, double from_ms, double to_ms) {
  if (!c->resync) return -2; /* resync is off: nothing would heal it */
  if (gn_client_forked(c) || !atomic_load(&c->started) || atomic_load(&c->closing)) return -1;
  heal_t *h = malloc(sizeof *h);
  if (!h) return -1;
  *h = (heal_t){c, from_ms, to_ms};
  /* posted before close()'s own task, so it runs while the client is there */
  if (gn_service_post(c->env.svc, heal_task, h) != 0) {
    free(h);
    return -1;
  }
  return 0;
}
