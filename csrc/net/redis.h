/* redis.h: one Redis connection on a service thread's libuv loop (hiredis' async API and its
 * libuv adapter), for the lease (lease.h) and the stream consumer (consumer.h).
 *
 * The connection does not reconnect by itself: its owner calls gn_redis_connect when it wants
 * one (under its own backoff) and hears about every loss through `down`. A command that gets no
 * answer (a stopped or unreachable server: hiredis has no timeout of its own) is the owner's to
 * notice; gn_redis_drop ends the connection at once, answering every pending command with a NULL
 * reply. Everything here runs on the loop's thread.
 *
 * URLs: redis://host[:port][/db]. No password: the URL is shown in health items and errors.
 */
#ifndef GN_REDIS_H
#define GN_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <uv.h>

typedef struct {
  char host[256];
  int port;
  int db;
} gn_redis_url_t;

/* Parses url into *out. Returns 0, or -1 and err naming what was expected. Any thread. */
int gn_redis_url_parse(const char *url, gn_redis_url_t *out, char *err, size_t errlen);

typedef struct gn_redis gn_redis_t;
/* up = 1: connected (and the database selected); up = 0: the connection is gone (err says why).
 * Called from loop callbacks, never from inside gn_redis_free. */
typedef void (*gn_redis_link_fn)(void *ud, int up, const char *err);
/* A command's answer: reply is NULL when the connection went away before it came. */
typedef void (*gn_redis_reply_fn)(void *ud, redisReply *reply);

/* A connection object (not connected yet). Returns it or NULL (memory). Loop thread. */
gn_redis_t *gn_redis_new(uv_loop_t *loop, const gn_redis_url_t *url, gn_redis_link_fn link,
                         void *ud);
/* Starts connecting unless connected or connecting. Returns 0, or -1 (the failure is also
 * reported through link with up = 0). Loop thread. */
int gn_redis_connect(gn_redis_t *r);
/* Returns 1 when connected. Loop thread. */
int gn_redis_up(const gn_redis_t *r);
/* Returns 1 while connecting or connected. Loop thread. */
int gn_redis_busy(const gn_redis_t *r);
/* Sends a command (argv as binary-safe strings); fn(ud, reply) runs once with its answer.
 * Returns 0, or -1 when not connected (fn is then not called). Loop thread. */
int gn_redis_cmd(gn_redis_t *r, gn_redis_reply_fn fn, void *ud, int argc, const char **argv,
                 const size_t *lens);
/* Writes what commands are buffered now, as far as the socket takes them without blocking (for a
 * last command before gn_redis_free). Returns nothing. Loop thread, not from a reply callback. */
void gn_redis_flush(gn_redis_t *r);
/* Ends the connection now: pending commands get NULL, link hears up = 0 with why. Returns
 * nothing. Loop thread, not from inside a reply callback. */
void gn_redis_drop(gn_redis_t *r, const char *why);
/* Drops the connection (pending commands get NULL; link is not called) and frees r (NULL
 * allowed). Returns nothing. Loop thread, not from inside a reply callback. */
void gn_redis_free(gn_redis_t *r);

#endif
