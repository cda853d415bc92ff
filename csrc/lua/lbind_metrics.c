/* lbind_metrics.c: client:metrics() as a table or as Prometheus text (the text itself is the
 * core's: csrc/core/prom.c, the lease's csrc/fleet/fleet.c). The Lua thread. */
#include "lbind_client.h"
#include "pool.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* See lbind_client.h. */
int lgn_client_metrics(lua_State *L) {
  lclient_t *u = lgn_check_here(L, 1);
  if (!u->c) return luaL_error(L, "genesys.notify: the client is closed");
  const char *fmt = luaL_optstring(L, 2, "table");
  gn_metrics_snapshot_t s;
  gn_client_metrics(u->c, &s);
  const char *state = gn_state_name(gn_client_state(u->c));
  gn_client_channel_t chs[GN_POOL_MAX];
  size_t nch = gn_client_channels(u->c, chs, GN_POOL_MAX);
  size_t waiting = gn_client_topics_waiting(u->c);
  gn_lease_stats_t ls;
  int has_lease = gn_fleet_lease(u->c) && (gn_lease_stats(gn_fleet_lease(u->c), &ls), 1);
  if (strcmp(fmt, "prometheus") == 0) {
    /* the pool: each channel labelled channel="N", and the topics waiting for budget */
    gn_metrics_snapshot_t per[GN_POOL_MAX];
    const char *states[GN_POOL_MAX];
    int numbers[GN_POOL_MAX];
    for (size_t i = 0; i < nch; i++) {
      per[i] = chs[i].m;
      states[i] = gn_state_name(chs[i].state);
      numbers[i] = chs[i].number;
    }
    const char *name = gn_client_name(u->c);
    gn_buf_t b = {0};
    b.p = gn_prom_client(&s, state, name, per, states, numbers, nch, waiting);
    if (b.p) b.len = strlen(b.p), b.cap = b.len + 1;
    if (!b.p || (has_lease && gn_fleet_prometheus(&b, &ls, name))) {
      gn_buf_free(&b);
      return luaL_error(L, "genesys.notify: out of memory");
    }
    lua_pushlstring(L, b.p, b.len);
    gn_buf_free(&b);
    return 1;
  }
  if (strcmp(fmt, "table") != 0)
    return luaL_argerror(L, 2, "expected \"table\" or \"prometheus\"");
  lua_createtable(L, 0, 16);
  lgn_setint(L, "attempts", s.attempts);
  lgn_setint(L, "successes", s.successes);
  lgn_setint(L, "failures", s.failures);
  lgn_setnum(L, "success_rate", s.attempts ? (double)s.successes / (double)s.attempts : 0);
  lgn_setint(L, "events", s.events);
  lgn_setint(L, "dropped", s.dropped);
  lgn_setint(L, "heartbeats", s.heartbeats);
  lgn_setint(L, "malformed", s.malformed);
  lgn_setint(L, "disconnects", s.disconnects);
  lgn_setint(L, "health", s.health);
  lgn_setint(L, "duplicates", s.duplicates);
  lgn_setint(L, "rollovers", s.rollovers);
  lgn_setint(L, "renewals", s.renewals);
  lgn_setint(L, "renewal_rollovers", s.renewal_rollovers);
  lgn_setint(L, "evictions", s.evictions);
  lgn_setint(L, "health_dropped", s.health_dropped);
  lgn_setint(L, "pauses", s.pauses);
  lgn_setnum(L, "paused_ms", s.paused_ms);
  lgn_setint(L, "tls_resumed", s.tls_resumed);
  lgn_resync_metrics(L, &s); /* lbind_resync.c */
  lgn_setint(L, "queued_events", s.queued_events);
  lgn_setint(L, "queued_bytes", s.queued_bytes);
  lgn_setint(L, "topics_wanted", s.topics_wanted);
  lgn_setint(L, "topics_confirmed", s.topics_confirmed);
  lua_pushboolean(L, s.subscriptions_synced);
  lua_setfield(L, -2, "subscriptions_synced");
  lgn_setnum(L, "uptime_ms", s.uptime_ms);
  lgn_setnum(L, "connected_ms", s.connected_ms);
  lgn_setnum(L, "deaf_ms", s.deaf_ms);
  lua_pushstring(L, state);
  lua_setfield(L, -2, "state");
  lua_createtable(L, 0, 5);
  lgn_setint(L, "count", s.lat_count);
  if (s.lat_count) {
    lgn_setnum(L, "p50", s.lat_p50);
    lgn_setnum(L, "p90", s.lat_p90);
    lgn_setnum(L, "p99", s.lat_p99);
    lgn_setnum(L, "max", s.lat_max);
  }
  lgn_setnum(L, "sum", s.lat_sum);
  lua_setfield(L, -2, "latency_ms");
  lua_createtable(L, 0, 4);
  lgn_setint(L, "cycles", s.sched_cycles);
  lgn_setint(L, "coalesced", s.sched_coalesced);
  lgn_setint(L, "triggers", s.sched_triggers);
  static const char *const reasons[] = GN_METRICS_REASON_NAMES;
  lua_createtable(L, 0, GN_METRICS_REASONS);
  for (int i = 0; i < GN_METRICS_REASONS; i++) lgn_setint(L, reasons[i], s.sched_by_reason[i]);
  lua_setfield(L, -2, "by_reason");
  lua_setfield(L, -2, "scheduler");
  lgn_setint(L, "token_requests", s.token_requests);
  lgn_setint(L, "wake_peers", s.wake_peers);
  lgn_setint(L, "wake_refused", s.wake_refused);
  lgn_setint(L, "topics_waiting", waiting);
  lua_createtable(L, (int)nch, 0);
  for (size_t i = 0; i < nch; i++) {
    const gn_metrics_snapshot_t *m = &chs[i].m;
    lua_createtable(L, 0, 12);
    lgn_setint(L, "channel", (uint64_t)chs[i].number);
    lua_pushstring(L, gn_state_name(chs[i].state));
    lua_setfield(L, -2, "state");
    lgn_setint(L, "events", m->events);
    lgn_setint(L, "attempts", m->attempts);
    lgn_setint(L, "successes", m->successes);
    lgn_setint(L, "failures", m->failures);
    lgn_setint(L, "disconnects", m->disconnects);
    lgn_setint(L, "rollovers", m->rollovers);
    lgn_setint(L, "duplicates", m->duplicates);
    lgn_setint(L, "topics_wanted", m->topics_wanted);
    lgn_setint(L, "topics_confirmed", m->topics_confirmed);
    lua_pushboolean(L, m->subscriptions_synced);
    lua_setfield(L, -2, "subscriptions_synced");
    lgn_setnum(L, "connected_ms", m->connected_ms);
    lua_rawseti(L, -2, (int)i + 1);
  }
  lua_setfield(L, -2, "channels");
  if (has_lease) {
    lua_createtable(L, 0, 12);
    lua_pushstring(L, gn_lease_state_name(ls.state));
    lua_setfield(L, -2, "state");
    lgn_setint(L, "fence", ls.fence);
    lgn_setint(L, "acquired", ls.acquired);
    lgn_setint(L, "lost", ls.lost);
    lgn_setint(L, "stepped_down", ls.stepped_down);
    lgn_setint(L, "renewals", ls.renewals);
    lgn_setint(L, "attempts", ls.attempts);
    lgn_setint(L, "appended", ls.appended);
    lgn_setint(L, "append_failed", ls.append_failed);
    lgn_setint(L, "discarded", ls.discarded);
    lgn_setint(L, "gaps", ls.gaps);
    lua_pushboolean(L, ls.redis_up);
    lua_setfield(L, -2, "redis_up");
    lua_pushstring(L, gn_lease_value(gn_fleet_lease(u->c)));
    lua_setfield(L, -2, "value");
    lua_setfield(L, -2, "lease");
  }
  return 1;
}

/* core.prometheus_family(name, type, help, samples): the text of one Prometheus family
 * genesys_notify_NAME as the core writes every family (prom.c), for what Lua counts itself (the
 * CLI's output, the OpenResty layer's ring): samples is an array of {labels, value} (labels ""
 * or "{k=\"v\"}", value an integer). Returns the text. */
static int l_prometheus_family(lua_State *L) {
  const char *name = luaL_checkstring(L, 1), *type = luaL_checkstring(L, 2);
  const char *help = luaL_checkstring(L, 3);
  luaL_checktype(L, 4, LUA_TTABLE);
  size_t n = lua_rawlen(L, 4);
  const char **labels = lua_newuserdata(L, (n ? n : 1) * sizeof *labels);
  const char **values = lua_newuserdata(L, (n ? n : 1) * sizeof *values);
  char(*num)[32] = lua_newuserdata(L, (n ? n : 1) * sizeof *num);
  for (size_t i = 0; i < n; i++) {
    lua_rawgeti(L, 4, (int)i + 1);
    luaL_checktype(L, -1, LUA_TTABLE);
    lua_rawgeti(L, -1, 1);
    labels[i] = luaL_checkstring(L, -1); /* kept alive by the samples table */
    lua_rawgeti(L, -2, 2);
    snprintf(num[i], sizeof num[i], "%.0f", (double)luaL_checknumber(L, -1));
    values[i] = num[i];
    lua_pop(L, 3);
  }
  gn_buf_t b = {0};
  if (gn_prom_samples(&b, name, type, help, labels, values, n)) {
    gn_buf_free(&b);
    return luaL_error(L, "genesys.notify: out of memory");
  }
  lua_pushlstring(L, b.p, b.len);
  gn_buf_free(&b);
  return 1;
}

/* See lbind_client.h. */
void lgn_open_metrics(lua_State *L) {
  lua_pushcfunction(L, l_prometheus_family);
  lua_setfield(L, -2, "prometheus_family");
}
