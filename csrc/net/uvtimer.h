/* uvtimer.h: a malloc'd libuv timer owned by one part of a channel (backoff, heartbeat,
 * subscription retries, rollover drains). Created and released on the loop's thread; the memory
 * goes back in the close callback, after libuv is done with the handle.
 */
#ifndef GN_UVTIMER_H
#define GN_UVTIMER_H

#include <stdlib.h>
#include <uv.h>

/* Returns a timer on loop whose data is data, or NULL when out of memory. Loop thread. */
static inline uv_timer_t *gn_timer_new(uv_loop_t *loop, void *data) {
  uv_timer_t *t = malloc(sizeof *t);
  if (!t) return NULL;
  uv_timer_init(loop, t);
  t->data = data;
  return t;
}

static inline void gn_timer_free_cb(uv_handle_t *h) { free(h); }

/* Stops *t and hands it back to libuv to close and free; *t becomes NULL (NULL allowed).
 * Returns nothing. Loop thread. */
static inline void gn_timer_close(uv_timer_t **t) {
  if (!*t) return;
  uv_timer_stop(*t);
  uv_close((uv_handle_t *)*t, gn_timer_free_cb);
  *t = NULL;
}

#endif
