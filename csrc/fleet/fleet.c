/* fleet.c: the lease as the client's gate (see fleet.h). The hooks run on the service thread
 * (the lease's and the client's), free on the owner's. */
#include "fleet.h"

#include "gn_util.h"
#include "pool.h"

#include <stdio.h>

static void acquired(void *ud) { gn_client_resume(ud); }
static void lost(void *ud) { gn_client_park(ud); }

/* -1 unless every running channel of the client is open; else when the last of them opened
 * (the wall clock's stamp at the open: an age in whole ms could place it up to 1 ms early, and
 * an event sent just before the open, lost, after the takeover marker's end). */
static double opened(void *ud) {
  gn_client_channel_t chs[GN_POOL_MAX];
  size_t n = gn_client_channels(ud, chs, GN_POOL_MAX);
  double wall = gn_now_wall_ms(), latest = -1;
  for (size_t i = 0; i < n; i++) {
    if (chs[i].state != GN_ST_OPEN && chs[i].state != GN_ST_ROLLOVER) return -1;
    /* 0: its metrics do not show it open yet, so it opened no earlier than now */
    double at = chs[i].m.opened_wall_ms > 0 ? chs[i].m.opened_wall_ms : wall;
    if (at > latest) latest = at;
  }
  return latest;
}
static void takeover(void *ud, double from_ms, double to_ms) {
  gn_client_resync_gap(ud, from_ms, to_ms);
}
static double heard(void *ud) { return gn_client_heard(ud); }
static void gate_start(void *ud) { gn_lease_start(ud); }
static void gate_stop(void *ud) { gn_lease_stop(ud); }
static void gate_free(void *ud) { gn_lease_free(ud); }

gn_lease_t *gn_fleet_lease(const gn_client_t *c) {
  const gn_client_gate_t *g = gn_client_gate(c);
  return g && g->start == gate_start ? g->ud : NULL;
}

gn_lease_t *gn_fleet_join(gn_client_t *c, const gn_lease_cfg_t *cfg, char *err, size_t errlen) {
  gn_lease_hooks_t hooks = {acquired, lost, opened, c, takeover, heard};
  /* The lease watches the first channel (always there) for when the stream opened, and taps
   * every channel (the client gives later ones the same tap). */
  gn_lease_t *l = gn_lease_new(cfg, gn_client_env(c), &hooks, err, errlen);
  if (!l) return NULL;
  gn_client_gate_t gate = {gate_start, gate_stop, gate_free, l};
  if (gn_client_set_gate(c, &gate, gn_lease_tap_of(l)) != 0) {
    gn_lease_free(l);
    snprintf(err, errlen, "redis: the client already has a lease or is started");
    return NULL;
  }
  return l;
}

/* See fleet.h. */
int gn_fleet_prometheus(gn_buf_t *b, const gn_lease_stats_t *ls, const char *client) {
  static const struct { const char *fam, *help; } c[] = {
      {"lease_acquired_total", "Times this client took the fleet lease"},
      {"lease_lost_total", "Times a renewal found the lease held by another or expired"},
      {"lease_stepped_down_total", "Times this client parked its stream for want of a timely renewal"},
      {"lease_renewals_total", "Lease renewals confirmed"},
      {"lease_appended_total", "Stream entries appended to redis"},
      {"lease_append_failed_total", "Stream appends refused or unanswered"},
      {"lease_discarded_total", "Events withheld because the lease was not (validly) held"}};
  uint64_t v[] = {ls->acquired, ls->lost, ls->stepped_down, ls->renewals, ls->appended,
                  ls->append_failed, ls->discarded};
  char num[32];
  snprintf(num, sizeof num, "%d", ls->state == GN_LEASE_HOLDER);
  if (gn_prom_family(b, "lease_holder", "gauge", "1 while this client holds the fleet lease",
                     client, num))
    return -1;
  snprintf(num, sizeof num, "%llu", (unsigned long long)ls->fence);
  if (gn_prom_family(b, "lease_fence", "gauge", "Fencing token of the current or last tenure",
                     client, num))
    return -1;
  for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
    snprintf(num, sizeof num, "%llu", (unsigned long long)v[i]);
    if (gn_prom_family(b, c[i].fam, "counter", c[i].help, client, num)) return -1;
  }
  return 0;
}

#define GN_LEASE_ROW(...) GN_CONF_ROW_OF(gn_lease_cfg_t, __VA_ARGS__)
const gn_conf_opt_t gn_lease_opts[] = {GN_LEASE_OPTIONS(GN_LEASE_ROW)};
#undef GN_LEASE_ROW
#define GN_LEASE_CHECK(...) GN_CONF_CHECK_OF(gn_lease_cfg_t, __VA_ARGS__)
GN_LEASE_OPTIONS(GN_LEASE_CHECK)
#undef GN_LEASE_CHECK
const size_t gn_lease_nopts = sizeof gn_lease_opts / sizeof *gn_lease_opts;
