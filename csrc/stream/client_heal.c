/* client_heal.c: a gap known above the client, from the owner's thread (see client.h): posted
 * to the service thread, where gn_client_resync_gap hands it to the resync engine. */
#include "client.h"
#include "service.h"

#include <stdlib.h>

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
  gn_state_t st = gn_client_state(c);
  if (gn_client_forked(c) || st == GN_ST_IDLE || st == GN_ST_CLOSED) return -1;
  heal_t *h = malloc(sizeof *h);
  if (!h) return -1;
  *h = (heal_t){c, from_ms, to_ms};
  /* posted before close()'s own task, so it runs while the client is there */
  if (gn_service_post(gn_client_env(c)->svc, heal_task, h) != 0) {
    free(h);
    return -1;
  }
  return 0;
}
