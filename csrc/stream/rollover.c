/* rollover.c: make-before-break hand-over to a new channel (see rollover.h). */
#include "rollover.h"
#include "gap.h"
#include "message.h"
#include "oauth.h"
#include "rest.h"
#include "service.h"
#include "subs.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <stdio.h>

/* CorrelationIds are kept this long: far beyond the skew between two sockets of one client. */
#define DEDUP_MAX_AGE_MS 5000

void gn_roll_init(gn_roll_t *r, gn_env_t *env, const gn_roll_hooks_t *hooks, void *ud) {
  memset(r, 0, sizeof *r);
  r->env = env;
  r->hooks = hooks;
  r->ud = ud;
  gn_dedup_init(&r->dedup, DEDUP_MAX_AGE_MS);
  r->expires_wall_ms = -1;
  r->drain_ms = 10000;
}

static void drain_cb(uv_timer_t *t);

int gn_roll_start(gn_roll_t *r, uv_loop_t *loop) {
  return (r->drain_timer = gn_timer_new(loop, r)) ? 0 : -1;
}

static int draining(const gn_roll_t *r) {
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn) return 1;
  return 0;
}

static int busy(const gn_roll_t *r) { return r->active || draining(r); }

/* A unit comes back at due (monotonic); with no room left in r->units (GN_ROLL_UNITS) it is
 * counted in r->unit_overflow and comes back at the next give. */
static void unit_back(gn_roll_t *r, uint64_t due) {
  if (r->nunits < GN_ROLL_UNITS) r->units[r->nunits++] = (gn_roll_unit_t){due, NULL};
  else r->unit_overflow++;
}

/* The transport says conn (closed or aborted by us, holding a unit) is over: the server has
 * seen our close, or the TCP connection is gone. Its unit comes back a settle margin later (the
 * drain timer gives it). Inside the transport's free: only r's bookkeeping and its timer. */
static void arm_drain(gn_roll_t *r);
static void unit_gone(void *ud, gn_conn_t *conn) {
  gn_roll_t *r = ud;
  for (int i = 0; i < r->nunits; i++)
    if (r->units[i].conn == conn) {
      r->units[i].conn = NULL;
      r->units[i].due = gn_now_mono_ms() + GN_ROLL_CLOSE_SETTLE_MS;
    }
  arm_drain(r);
}

/* Ends conn (a close frame with code, or abort when code is 0); the unit it holds (unit) comes
 * back once the transport confirms the end (unit_gone), at the latest GN_ROLL_CLOSE_WAIT_MS
 * from now. The entry is made before the close: the transport may end conn inside it. */
static void end_holding(gn_roll_t *r, gn_conn_t *conn, int unit, int code) {
  if (unit && r->nunits < GN_ROLL_UNITS) {
    r->units[r->nunits++] = (gn_roll_unit_t){gn_now_mono_ms() + GN_ROLL_CLOSE_WAIT_MS, conn};
    if (code) gn_conn_close_then(conn, code, "rollover: drained", unit_gone, r);
    else gn_conn_abort_then(conn, unit_gone, r);
    return;
  }
  if (unit) unit_back(r, gn_now_mono_ms() + GN_ROLL_CLOSE_SETTLE_MS); /* no room: as before */
  if (code) gn_conn_close(conn, code, "rollover: drained");
  else gn_conn_abort(conn);
}

/* Takes the units due now (all: every unit) out of r. Returns their number. A unit whose
 * socket's end is still awaited is due only when the bound passed (or all); its callback is
 * forgotten (the connection still exists: its callback has not run). */
static int units_due(gn_roll_t *r, int all) {
  uint64_t now = gn_now_mono_ms();
  int n = r->unit_overflow;
  r->unit_overflow = 0;
  for (int i = 0; i < r->nunits;)
    if (all || r->units[i].due <= now) {
      if (r->units[i].conn) gn_conn_set_gone(r->units[i].conn, NULL, NULL);
      r->units[i] = r->units[--r->nunits];
      n++;
    } else {
      i++;
    }
  if (all) {
    n += r->unit;
    r->unit = 0;
    for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++) {
      n += r->old[i].unit;
      r->old[i].unit = 0;
    }
  }
  return n;
}

void gn_roll_give_units(gn_roll_t *r, int all) {
  int n = units_due(r, all);
  for (; r->env->spare && n > 0; n--) r->env->spare(r->env->spare_ud, 0);
}

/* Nothing overlaps any more: de-duplication runs a little longer (the new socket may still
 * bring what an old one delivered first), then ends. */
static void maybe_settle(gn_roll_t *r) {
  if (!r->active && !draining(r)) {
    r->dedup_until_ms = gn_now_mono_ms() + GN_ROLL_DEDUP_TAIL_MS;
    r->release_wanted = 0;
  }
}

void gn_roll_cancel(gn_roll_t *r) {
  /* B is given up: its unit comes back, once its socket (if any) is over at the server */
  if (r->conn) end_holding(r, r->conn, r->unit, 0);
  else if (r->unit) unit_back(r, gn_now_mono_ms());
  r->unit = 0;
  if (r->req) gn_http_cancel(r->req);
  r->req = NULL;
  r->conn = NULL;
  free(r->channel_id);
  free(r->connect_uri);
  r->channel_id = r->connect_uri = NULL;
  gn_free_secret(r->token);
  r->token = NULL;
  gn_topics_free(&r->sent);
  gn_topics_free(&r->confirmed);
  r->active = 0;
  r->renewal = 0;
  r->expires_wall_ms = -1;
  r->token_end_ms = 0;
  maybe_settle(r);
}

static void forget_old(gn_roll_old_t *o) {
  gn_roll_t *r = o->roll;
  /* The server closed it, or it was lost (one we closed gave its unit to end_holding). */
  if (r && o->unit) unit_back(r, gn_now_mono_ms());
  if (o->req) gn_http_cancel(o->req);
  free(o->channel_id);
  memset(o, 0, sizeof *o);
}

static void report_drained(gn_roll_t *r, gn_roll_old_t *o, int code, int clean);

/* Ends a draining socket ourselves (a close frame with code, or abort when 0): its unit comes
 * back once the server has seen the end (end_holding). Reported by the caller. */
static void end_old(gn_roll_t *r, gn_roll_old_t *o, int code) {
  end_holding(r, o->conn, o->unit, code);
  o->unit = 0;
}

void gn_roll_abort_all(gn_roll_t *r) {
  gn_roll_cancel(r);
  r->live_serial = ++r->next_serial; /* the next live socket is a new one */
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn) { /* cut short: reported like a socket lost while draining */
      end_old(r, &r->old[i], 0);
      report_drained(r, &r->old[i], 1006, 0);
    }
  arm_drain(r); /* only the settling of what was closed is left to wait for */
  gn_dedup_clear(&r->dedup);
  r->dedup_until_ms = 0;
}

void gn_roll_close(gn_roll_t *r) {
  gn_roll_abort_all(r);
  gn_timer_close(&r->drain_timer);
  /* r goes away (or idles): no transport callback may reach it. A unit whose socket's end is
   * awaited goes to the client, which gives it back at that end (unit_on_gone); without one it
   * stays counted for gn_roll_give_units(r, 1). */
  for (int i = 0; i < r->nunits;)
    if (r->units[i].conn && r->env->unit_on_gone) {
      r->env->unit_on_gone(r->env->spare_ud, r->units[i].conn);
      r->units[i] = r->units[--r->nunits];
    } else {
      if (r->units[i].conn) gn_conn_set_gone(r->units[i].conn, NULL, NULL);
      r->units[i].conn = NULL;
      r->units[i].due = 0;
      i++;
    }
}

void gn_roll_begin(gn_roll_t *r) {
  r->active = 1;
  r->start_ms = gn_now_mono_ms();
  r->notice_wall_ms = gn_now_wall_ms();
  r->live_after_notice = 0;
  if (!r->live_serial) r->live_serial = ++r->next_serial;
  r->dedup_until_ms = 0;
}

static void fail(gn_roll_t *r, const char *msg) {
  gn_roll_cancel(r);
  r->hooks->failed(r->ud, msg);
}

/* The rollover's sockets: B until it is taken over, the old ones while they drain. */
static void roll_open_cb(void *ud, gn_conn_t *conn);
static void roll_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len, int binary);
static void roll_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info);
static const gn_conn_cbs_t roll_cbs = {roll_open_cb, roll_message_cb, roll_close_cb};

static void sub_done(void *ud, const gn_http_result_t *hr) {
  gn_roll_t *r = ud;
  r->req = NULL;
  if (!gn_rest_ok(hr)) {
    char msg[200];
    snprintf(msg, sizeof msg, "subscribing the new channel: %s%s", hr->error ? hr->error : "HTTP ",
             hr->error ? "" : (hr->status == 401 ? "401" : hr->status == 404 ? "404" : "error"));
    if (hr->status == 401) gn_token_invalidate(r->env->tok, r->token_gen);
    fail(r, msg);
    return;
  }
  gn_subs_read(r->env, &r->sent, r->channel_id, hr->body, hr->body_len, "subscribed",
               &r->confirmed);
  char err[256] = "";
  r->conn = gn_env_open_conn(r->env, r->connect_uri, &roll_cbs, r, err, sizeof err);
  if (!r->conn) fail(r, err);
  else r->b_serial = ++r->next_serial;
}

static void channel_done(void *ud, const gn_http_result_t *hr) {
  gn_roll_t *r = ud;
  r->req = NULL;
  int rc = gn_rest_channel_answer(hr, &r->channel_id, &r->connect_uri);
  r->expires_wall_ms = rc == 0 ? gn_rest_channel_expires(hr) : -1;
  if (rc != 0) {
    char msg[200];
    if (rc == -3) snprintf(msg, sizeof msg, "creating the new channel: %s", GN_BAD_CHANNEL_ID);
    else if (hr->error) snprintf(msg, sizeof msg, "creating the new channel: %s", hr->error);
    else snprintf(msg, sizeof msg, "creating the new channel answered HTTP %ld", hr->status);
    if (hr->status == 401) gn_token_invalidate(r->env->tok, r->token_gen);
    fail(r, msg);
    return;
  }
  if (r->env->budget_note) r->env->budget_note(r->env->spare_ud, GN_NOTE_CREATED, r->channel_id);
  if (gn_topics_copy(&r->sent, r->env->topics) == 0)
    r->req = gn_rest_put_topics(gn_service_http(r->env->svc), r->env->conf, r->token,
                                r->channel_id, &r->sent, sub_done, r);
  if (!r->req) fail(r, "cannot start the subscription request for the new channel");
}

void gn_roll_post(gn_roll_t *r, const char *token, uint64_t gen, uint64_t token_end_ms) {
  if (!r->active || r->req || r->conn) return;
  gn_free_secret(r->token);
  r->token = gn_strdup(token);
  r->token_gen = gen;
  r->token_end_ms = token_end_ms;
  if (r->token)
    r->req = gn_rest_create_channel(gn_service_http(r->env->svc), r->env->conf, r->token,
                                    channel_done, r);
  if (!r->req) fail(r, "cannot start the request for the new channel");
}

static int owns(const gn_roll_t *r, const gn_conn_t *conn) { return conn && conn == r->conn; }

static void arm_drain(gn_roll_t *r) {
  uint64_t next = 0;
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn && (!next || r->old[i].until_ms < next)) next = r->old[i].until_ms;
  for (int i = 0; i < r->nunits; i++)
    if (!next || r->units[i].due < next) next = r->units[i].due;
  if (!r->drain_timer) return;
  if (!next) {
    uv_timer_stop(r->drain_timer);
    return;
  }
  uint64_t now = gn_now_mono_ms();
  uv_timer_start(r->drain_timer, drain_cb, next > now ? next - now : 0, 0);
}

/* Reports the end of a draining socket and forgets it. clean: the server closed it with a close
 * frame (it had written everything); otherwise (lost, or closed by us before the server did)
 * what it had not yet delivered may be gone. */
static void report_drained(gn_roll_t *r, gn_roll_old_t *o, int code, int clean) {
  gn_env_health(r->env, "rollover",
                json_pack("{s:s, s:s, s:I, s:i}", "event", "drained", "channel_id",
                          o->channel_id ? o->channel_id : "", "events", (json_int_t)o->events,
                          "code", code));
  const char *why = NULL;
  double from = 0, to = o->successor_open_wall_ms;
  if (o->overlapped) {
    /* An event came on it and on a later socket: the server wrote to both at once, and what
     * it wrote to this one before that came in order. Nothing is missing, however it ended. */
  } else if (o->flow > 0) {
    /* Events flowed but none came on both: the server stopped writing to it (its grace ended,
     * or the link died) before the successor was open, and what it published in between went
     * nowhere. The client may have read this socket late (behind a backlog), so its last
     * message says little about when the server stopped; the server stopped after it wrote
     * the notice, which the client read at most GN_GAP_LATENCY_MS later. */
    why = clean ? "rollover_no_overlap" : "rollover_drain_lost";
    from = o->notice_wall_ms - GN_GAP_LATENCY_MS;
  } else if (!clean) {
    /* Lost while quiet: whatever it had not delivered came after its last message. */
    why = "rollover_drain_lost";
    from = o->last_heard_wall_ms - GN_GAP_LATENCY_MS;
  }
  if (why && from < to)
    gn_env_health(r->env, "gap",
                  json_pack("{s:s, s:s, s:f, s:f, s:f}", "reason", why, "channel_id",
                            o->channel_id ? o->channel_id : "", "deaf_from_ms", from,
                            "deaf_to_ms", to, "gap_ms", to - from));
  forget_old(o);
}

static void unsub_done(void *ud, const gn_http_result_t *hr) {
  gn_roll_old_t *o = ud;
  o->req = NULL;
  if (!o->conn || !gn_rest_ok(hr)) return;
  static const char ping[] = "{\"message\":\"ping\"}";
  o->pinged = gn_conn_send_text(o->conn, ping, sizeof ping - 1) == 0;
}

static void drain_cb(uv_timer_t *t) {
  gn_roll_t *r = t->data;
  uint64_t now = gn_now_mono_ms();
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn && r->old[i].until_ms <= now) {
      end_old(r, &r->old[i], 1000);
      report_drained(r, &r->old[i], 1000, 0);
    }
  arm_drain(r);
  maybe_settle(r);
  gn_roll_give_units(r, 0); /* units may have come back */
}

void gn_roll_take(gn_roll_t *r, gn_conn_t **conn, char **channel_id, char **connect_uri,
                  gn_topics_t *confirmed, gn_conn_t *old, const char *old_id,
                  double old_last_heard_wall_ms) {
  *conn = r->conn;
  *channel_id = r->channel_id;
  *connect_uri = r->connect_uri;
  gn_topics_free(confirmed);
  *confirmed = r->confirmed;
  memset(&r->confirmed, 0, sizeof r->confirmed);
  r->conn = NULL;
  r->channel_id = r->connect_uri = NULL;
  if (old) {
    int slot = 0;
    for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++) {
      if (!r->old[i].conn) {
        slot = i;
        break;
      }
      if (r->old[i].until_ms < r->old[slot].until_ms) slot = i;
    }
    if (r->old[slot].conn) { /* the oldest of too many: it has had its time */
      end_old(r, &r->old[slot], 1000);
      report_drained(r, &r->old[slot], 1000, 0);
    }
    gn_roll_old_t *o = &r->old[slot];
    o->conn = old;
    gn_conn_set_cbs(old, &roll_cbs, r); /* the old socket is the rollover's now */
    o->channel_id = gn_strdup(old_id ? old_id : "");
    o->until_ms = gn_now_mono_ms() + (r->renewal ? (uint64_t)r->drain_ms : GN_ROLL_DRAIN_MS);
    o->last_heard_wall_ms = old_last_heard_wall_ms;
    o->notice_wall_ms = r->notice_wall_ms;
    o->successor_open_wall_ms = gn_now_wall_ms();
    o->serial = r->live_serial;
    o->overlapped = 0;
    o->flow = r->live_after_notice;
    o->roll = r;
    o->ours = r->renewal;
    o->unit = r->unit; /* B's unit now stands for the old channel, while it lives */
    r->unit = 0;
    /* The successor is open and subscribed: every event from now on reaches it. The old
     * channel's topics come off (DELETE), then a ping goes out on it: its pong comes after
     * everything the server had written there, so once it is in the old socket carries
     * nothing more and is closed (its budget unit free at once, not after the server's
     * grace). Without an answer the drain runs its course. */
    if (r->token)
      o->req = gn_rest_delete_topics(gn_service_http(r->env->svc), r->env->conf, r->token,
                                     o->channel_id, unsub_done, o);
    arm_drain(r);
  }
  r->live_serial = r->b_serial; /* B is the live socket now */
  r->live_after_notice = 0;
  gn_roll_cancel(r);
}

/* Returns the draining entry of conn, or NULL. */
static gn_roll_old_t *draining_of(gn_roll_t *r, const gn_conn_t *conn) {
  for (int i = 0; conn && i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn == conn) return &r->old[i];
  return NULL;
}

/* A message on a draining socket o: when this is the pong to the ping sent on it after its
 * topics came off, everything the server had written to it is in (proven). A renewal's old
 * socket, or any while the spare unit is wanted (gn_roll_release), is then closed (no gap) and
 * forgotten; a socket_closing's is otherwise read until the server closes it. Returns 1 when
 * it was closed, else 0. */
static int pong(gn_roll_t *r, gn_roll_old_t *o, const char *data, size_t len) {
  if (!o->pinged || len > 512) return 0;
  json_t *j = json_loadb(data, len, 0, NULL);
  const char *topic = json_string_value(json_object_get(j, "topicName"));
  const char *msg = json_string_value(json_object_get(json_object_get(j, "eventBody"), "message"));
  int pong = topic && msg && !strcmp(topic, "channel.metadata") && !strcmp(msg, "pong");
  json_decref(j);
  if (!pong) return 0;
  o->proven = 1;
  o->overlapped = 1; /* nothing was missed between it and its successor */
  if (!o->ours && !r->release_wanted) return 0;
  end_old(r, o, 1000);
  report_drained(r, o, 1000, 1);
  arm_drain(r);
  maybe_settle(r);
  return 1;
}

int gn_roll_release(gn_roll_t *r) {
  int n = 0;
  if (busy(r)) r->release_wanted = 1;
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn && r->old[i].proven) {
      end_old(r, &r->old[i], 1000);
      report_drained(r, &r->old[i], 1000, 1);
      n++;
    }
  if (n) {
    arm_drain(r);
    maybe_settle(r);
  }
  return n;
}

int gn_roll_seen(gn_roll_t *r, const char *id, uint64_t now_ms, const gn_conn_t *conn) {
  if (!r->active && !draining(r) && now_ms >= r->dedup_until_ms) {
    if (r->dedup.cap) gn_dedup_clear(&r->dedup); /* the overlap is over: give the memory back */
    return 0;
  }
  const gn_roll_old_t *self = draining_of(r, conn);
  uint32_t src = self ? self->serial : owns(r, conn) ? r->b_serial : r->live_serial;
  uint32_t first = 0;
  uint64_t overflows = r->dedup.overflows;
  int seen = gn_dedup_check_src(&r->dedup, id, now_ms, src, &first) == 1;
  if (seen && first != src) {
    /* On two sockets: the earlier one overlapped a later one. */
    uint32_t earlier = first < src ? first : src;
    for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
      if (r->old[i].conn && r->old[i].serial == earlier) r->old[i].overlapped = 1;
  }
  /* Events flowing since a draining socket's notice: on it, or first copies on a later one. */
  for (int i = 0; i < GN_ROLL_DRAIN_MAX; i++)
    if (r->old[i].conn && (r->old[i].serial == src || (!seen && r->old[i].serial < src)))
      r->old[i].flow++;
  if (r->active && src == r->live_serial) r->live_after_notice++;
  if (r->dedup.overflows != overflows)
    gn_env_health(r->env, "rollover",
                  json_pack("{s:s, s:s}", "event", "dedup_overflow", "error",
                            "too many unmatched CorrelationIds: de-duplication restarted"));
  return seen;
}

/* ------------------------------------------------------------------------------------------ */
/* the rollover's sockets */

/* B is open: the channel takes it over (and hands the old live socket back to us). */
static void roll_open_cb(void *ud, gn_conn_t *conn) {
  gn_roll_t *r = ud;
  if (owns(r, conn)) r->hooks->take_over(r->ud);
}

/* A message on a draining socket (or on B before the take-over, which the transport never
 * delivers: B is taken over inside its open). */
static void roll_message_cb(void *ud, gn_conn_t *conn, const char *data, size_t len,
                            int binary) {
  gn_roll_t *r = ud;
  gn_roll_old_t *o = draining_of(r, conn);
  const char *chan = o ? o->channel_id : r->channel_id ? r->channel_id : "";
  if (o) {
    o->last_heard_wall_ms = gn_now_wall_ms();
    if (pong(r, o, data, len)) { /* drained: its unit comes back */
      gn_roll_give_units(r, 0);
      return;
    }
  }
  gn_msg_t m;
  switch (gn_msg_classify(data, len, binary, &m)) {
  case GN_MSG_CHANNEL_GONE: /* a channel already left behind */
    break;
  case GN_MSG_SOCKET_CLOSING:
    gn_env_health(r->env, "socket_closing", json_pack("{s:s}", "channel_id", chan));
    break;
  case GN_MSG_EVENT:
    /* Once, even when both sockets deliver it. */
    if (gn_roll_seen(r, m.correlation_id, gn_now_mono_ms(), conn)) GN_COUNT(r->env, duplicates);
    else if (gn_env_deliver(r->env, &m, chan, data, len) && o) o->events++;
    break;
  default: /* heartbeats counted, malformed messages reported */
    gn_env_note(r->env, &m, len);
    break;
  }
  gn_msg_clear(&m);
}

/* B ended before it was taken over (a failure), or the server closed a draining socket (or it
 * was lost: info). */
static void roll_close_cb(void *ud, gn_conn_t *conn, const gn_close_info_t *info) {
  gn_roll_t *r = ud;
  if (owns(r, conn)) {
    r->conn = NULL;
    fail(r, info->error);
    return;
  }
  gn_roll_old_t *o = draining_of(r, conn);
  if (!o) return;
  report_drained(r, o, info->code, info->code != 1006);
  arm_drain(r);
  maybe_settle(r);
  gn_roll_give_units(r, 0);
}
