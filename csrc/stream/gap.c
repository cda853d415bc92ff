/* gap.c: a channel's deaf interval (see gap.h). */
#include "gap.h"
#include "gn_util.h"

void gn_gap_not_open(gn_gap_t *g, gn_metrics_t *m) {
  if (!g->open_since_ms) return;
  pthread_mutex_lock(&m->mu);
  m->open_since_ms = 0;
  m->open_since_wall_ms = 0;
  pthread_mutex_unlock(&m->mu);
  g->open_since_ms = 0;
}

void gn_gap_deaf(gn_gap_t *g, gn_metrics_t *m, uint64_t heard_ms, double heard_wall_ms) {
  gn_gap_not_open(g, m);
  if (!g->down_since_ms) {
    /* Not when the death was noticed (up to idle_ms + ping_timeout_ms later): what the link
     * did not deliver after its last message is what may be lost. */
    g->down_since_ms = heard_ms;
    g->down_since_wall_ms = heard_wall_ms - GN_GAP_LATENCY_MS;
  }
}

void gn_gap_attempt_failed(gn_gap_t *g, uint64_t attempt_start_ms) {
  if (g->ever_open || g->down_since_ms) return;
  g->down_since_ms = attempt_start_ms;
  g->down_since_wall_ms = gn_now_wall_ms();
}

void gn_gap_opened(gn_gap_t *g, gn_metrics_t *m, uint64_t now) {
  g->open_since_ms = now;
  double wall = gn_now_wall_ms();
  pthread_mutex_lock(&m->mu);
  m->successes++;
  m->open_since_ms = now;
  m->open_since_wall_ms = wall;
  if (g->down_since_ms) m->deaf_ms += (double)(now - g->down_since_ms);
  pthread_mutex_unlock(&m->mu);
}

void gn_gap_restored(gn_gap_t *g, gn_env_t *env, uint64_t now, int new_channel,
                     const char *channel_id) {
  if (g->ever_open && g->down_since_ms)
    gn_env_health(env, "restored",
                  json_pack("{s:f, s:f, s:f, s:b, s:s}", "gap_ms",
                            (double)(now - g->down_since_ms), "deaf_from_ms",
                            g->down_since_wall_ms, "deaf_to_ms", gn_now_wall_ms(), "new_channel",
                            new_channel, "channel_id", channel_id));
  g->ever_open = 1;
  g->down_since_ms = 0;
}
