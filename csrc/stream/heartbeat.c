/* heartbeat.c: the watchdog of a live socket (see heartbeat.h). */
#include "heartbeat.h"
#include "gn_util.h"
#include "uvtimer.h"

static void arm(gn_heartbeat_t *hb, uint64_t ms);

static void timer_cb(uv_timer_t *t) {
  gn_heartbeat_t *hb = t->data;
  if (!hb->conn) return;
  uint64_t now = gn_now_mono_ms();
  if (hb->paused) { /* not reading: nothing can come, and that is ours, not the link's */
    arm(hb, (uint64_t)hb->idle_ms);
    return;
  }
  uint64_t quiet = now - hb->last_rx_ms;
  if (!hb->ping_sent) {
    if (quiet < (uint64_t)hb->idle_ms) {
      arm(hb, (uint64_t)hb->idle_ms - quiet);
      return;
    }
    static const char ping[] = "{\"message\":\"ping\"}";
    gn_conn_send_text(hb->conn, ping, sizeof ping - 1);
    hb->ping_sent = 1;
    hb->last_turn = 0;
    hb->last_rx_ms = now; /* the ping timeout counts from here */
    arm(hb, (uint64_t)hb->ping_timeout_ms);
    return;
  }
  if (quiet < (uint64_t)hb->ping_timeout_ms) {
    arm(hb, (uint64_t)hb->ping_timeout_ms - quiet);
    return;
  }
  if (!hb->last_turn) {
    /* The deadline has passed, but libuv runs timers before it polls: when the thread was kept
     * off the CPU past the deadline, the pong may be waiting unread in the socket. One turn of
     * the loop reads it first (1 ms, not 0: a 0 ms timer started here can run in this same
     * timer phase, before the poll); a message heard meanwhile clears ping_sent. */
    hb->last_turn = 1;
    arm(hb, 1);
    return;
  }
  /* Dead link: nothing came back, not even the pong. */
  hb->conn = NULL;
  hb->dead(hb->ud);
}

static void arm(gn_heartbeat_t *hb, uint64_t ms) {
  if (hb->timer) uv_timer_start(hb->timer, timer_cb, ms, 0);
}

int gn_heartbeat_init(gn_heartbeat_t *hb, uv_loop_t *loop, long idle_ms, long ping_timeout_ms,
                      void (*dead)(void *ud), void *ud) {
  memset(hb, 0, sizeof *hb);
  hb->idle_ms = idle_ms;
  hb->ping_timeout_ms = ping_timeout_ms;
  hb->dead = dead;
  hb->ud = ud;
  return (hb->timer = gn_timer_new(loop, hb)) ? 0 : -1;
}

void gn_heartbeat_watch(gn_heartbeat_t *hb, gn_conn_t *conn) {
  hb->conn = conn;
  hb->last_rx_ms = hb->heard_ms = gn_now_mono_ms();
  hb->ping_sent = 0;
  hb->paused = 0;
  arm(hb, (uint64_t)hb->idle_ms);
}

void gn_heartbeat_pause(gn_heartbeat_t *hb, int paused) {
  hb->paused = paused;
  if (paused || !hb->conn) return;
  /* A ping sent before the pause may have been answered into the unread buffer: the watch
   * starts over with a full idle period. */
  hb->last_rx_ms = gn_now_mono_ms();
  hb->ping_sent = 0;
  arm(hb, (uint64_t)hb->idle_ms);
}

void gn_heartbeat_heard(gn_heartbeat_t *hb) {
  hb->last_rx_ms = hb->heard_ms = gn_now_mono_ms();
  hb->ping_sent = 0;
}

uint64_t gn_heartbeat_last_heard(const gn_heartbeat_t *hb, double *wall_ms) {
  uint64_t now = gn_now_mono_ms();
  uint64_t at = hb->heard_ms && hb->heard_ms <= now ? hb->heard_ms : now;
  *wall_ms = gn_now_wall_ms() - (double)(now - at);
  return at;
}

void gn_heartbeat_stop(gn_heartbeat_t *hb) {
  hb->conn = NULL;
  if (hb->timer) uv_timer_stop(hb->timer);
}

void gn_heartbeat_close(gn_heartbeat_t *hb) {
  hb->conn = NULL;
  gn_timer_close(&hb->timer);
}
