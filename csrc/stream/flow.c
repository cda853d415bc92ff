/* flow.c: pausing the live socket while the queue is full (see flow.h). */
#include "flow.h"
#include "gn_util.h"
#include "uvtimer.h"

#include <stdio.h>
#include <stdlib.h>

static void report(gn_flow_t *f, const char *event, double paused_ms) {
  size_t ev, bytes;
  gn_queue_usage(f->env->queue, &ev, &bytes);
  json_t *fields = json_pack("{s:s, s:I, s:I, s:I, s:I}", "event", event, "queued_events",
                             (json_int_t)ev, "queue_limit", (json_int_t)f->env->conf->queue_limit,
                             "queued_bytes", (json_int_t)bytes, "pause_max_ms",
                             (json_int_t)f->env->conf->pause_max_ms);
  if (fields && paused_ms >= 0) json_object_set_new(fields, "paused_ms", json_real(paused_ms));
  gn_env_health(f->env, "backpressure", fields);
}

/* Ends the pause in the metrics and resumes reading the live socket. Returns the pause's ms. */
static double end_pause(gn_flow_t *f) {
  uint64_t now = gn_now_mono_ms();
  double ms = (double)(now - f->since_ms);
  f->paused = 0;
  f->conn = NULL;
  if (f->timer) uv_timer_stop(f->timer);
  pthread_mutex_lock(&f->env->metrics->mu);
  f->env->metrics->paused_ms += ms;
  f->env->metrics->paused_since_ms = 0;
  pthread_mutex_unlock(&f->env->metrics->mu);
  if (*f->live) gn_conn_pause(*f->live, 0);
  gn_heartbeat_pause(f->hb, 0);
  return ms;
}

static void max_cb(uv_timer_t *t) {
  gn_flow_t *f = t->data;
  if (!f->paused) return;
  /* Paused too long: read again and drop what does not fit, counted and reported. */
  f->dropping = 1;
  gn_queue_set_soft(f->env->queue, 0);
  report(f, "dropping", end_pause(f));
}

int gn_flow_start(gn_flow_t *f, gn_env_t *env, uv_loop_t *loop, gn_heartbeat_t *hb,
                  gn_conn_t **live) {
  memset(f, 0, sizeof *f);
  f->env = env;
  f->hb = hb;
  f->live = live;
  if (!env->conf->overflow_pause) return 0;
  if (!(f->timer = gn_timer_new(loop, f))) return -1;
  f->on = 1;
  gn_queue_set_soft(env->queue, 1);
  return 0;
}

void gn_flow_event(gn_flow_t *f, gn_conn_t *conn) {
  if (!f->on || f->dropping) return;
  if (f->paused) {
    if (conn != f->conn) { /* a new live socket while the queue is still full */
      f->conn = conn;
      gn_conn_pause(conn, 1);
      gn_heartbeat_pause(f->hb, 1);
    }
    return;
  }
  if (!gn_queue_want_room(f->env->queue)) return;
  f->paused = 1;
  f->conn = conn;
  f->since_ms = gn_now_mono_ms();
  gn_conn_pause(conn, 1);
  gn_heartbeat_pause(f->hb, 1);
  pthread_mutex_lock(&f->env->metrics->mu);
  f->env->metrics->pauses++;
  f->env->metrics->paused_since_ms = f->since_ms;
  pthread_mutex_unlock(&f->env->metrics->mu);
  long max = f->env->conf->pause_max_ms;
  if (max > 0) uv_timer_start(f->timer, max_cb, (uint64_t)max, 0);
  report(f, "paused", -1);
}

void gn_flow_room(gn_flow_t *f) {
  if (!f->on) return;
  if (f->dropping) {
    f->dropping = 0;
    gn_queue_set_soft(f->env->queue, 1);
    report(f, "recovered", -1);
    return;
  }
  if (!f->paused) return;
  report(f, "resumed", end_pause(f));
}

void gn_flow_close(gn_flow_t *f) {
  if (f->paused) {
    f->paused = 0;
    uint64_t now = gn_now_mono_ms();
    pthread_mutex_lock(&f->env->metrics->mu);
    f->env->metrics->paused_ms += (double)(now - f->since_ms);
    f->env->metrics->paused_since_ms = 0;
    pthread_mutex_unlock(&f->env->metrics->mu);
  }
  f->on = 0;
  gn_timer_close(&f->timer);
}
