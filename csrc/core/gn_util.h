/* gn_util.h: small helpers shared by the Lua-free core (growable byte buffer, clocks, strings).
 *
 * Nothing here locks or allocates behind the caller's back; every function may be called from any
 * thread on data that thread owns.
 */
#ifndef GN_UTIL_H
#define GN_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  char *p;
  size_t len, cap;
} gn_buf_t;

/* Appends n bytes (always keeps a NUL after len). Returns 0, or -1 when out of memory. */
static inline int gn_buf_add(gn_buf_t *b, const void *d, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *np = realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  if (n) memcpy(b->p + b->len, d, n);
  b->len += n;
  b->p[b->len] = 0;
  return 0;
}
/* Empties b, keeping its memory for reuse. Returns nothing. */
static inline void gn_buf_reset(gn_buf_t *b) { b->len = 0; if (b->p) b->p[0] = 0; }
/* Frees b's memory and leaves b empty and reusable. Returns nothing. It does not wipe: overwrite a
 * buffer that held a secret first. */
static inline void gn_buf_free(gn_buf_t *b) { free(b->p); b->p = NULL; b->len = b->cap = 0; }

/* Returns the monotonic clock (CLOCK_MONOTONIC) in whole milliseconds, for intervals. */
static inline uint64_t gn_now_mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
/* Returns the monotonic clock (CLOCK_MONOTONIC) in milliseconds with their fraction (to the
 * nanosecond), for intervals of a few ms such as a reconnect. */
static inline double gn_now_mono_msf(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}
/* Returns the wall clock (CLOCK_REALTIME) in whole milliseconds since the Unix epoch, for dates
 * such as an HTTP Retry-After date. */
static inline double gn_now_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000);
}
/* Returns a malloc'd copy of s, or NULL when s is NULL or out of memory. */
static inline char *gn_strdup(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
/* Overwrites a secret (a NUL-terminated string) before it is freed, so it does not linger in
 * freed heap memory. NULL is a no-op. Returns nothing. */
static inline void gn_free_secret(char *s) {
  if (!s) return;
  volatile char *v = s;
  while (*v) *v++ = 0;
  free(s);
}

#endif
