/* lease.h: one stream holder for a fleet. A client configured with redis = {...} connects its
 * Genesys stream only while it holds a lease in Redis, and appends each event to a Redis Stream
 * for the fleet's consumers (consumer.h).
 *
 * Keys, from the configured base KEY: KEY:lease (the holder's value: host:pid:random, never a
 * secret; SET NX PX), KEY:fence (INCR at each acquisition: the fencing token), KEY:last (the
 * watermark: until when the holder's received events are all in the stream or inside a marker,
 * and which of its writes landed last; lease_int.h), KEY:stream (XADD ... MAXLEN ~ N: events and
 * gap markers) and KEY:gaps (the gap markers again, for consumer groups, whose members each see
 * only part of KEY:stream).
 *
 * Every write lands only while KEY:fence is still the holder's (a script checks it: writer-side
 * fencing), so no entry of a deposed holder reaches the stream; a write that finds the fence
 * moved makes the holder step down at once. Every hole becomes a marker (type gap, from_ms,
 * to_ms, reason) computed from the times events were received, never from stream ids: a
 * takeover ("takeover", from the last holder's watermark), writes that failed ("writes_failed",
 * written by the next write that lands), the holder's own reconnects and rollover gaps
 * ("reconnect", "rollover"). The memory policy is checked at each connection (lease.c).
 *
 * Everything runs on the client's service thread: the lease is renewed there every lease_ms/3
 * with a script that extends it only while the value is ours, whatever the owner does. A holder
 * steps down (parks its channel) when its own monotonic clock says the lease may be about to
 * expire at Redis without a renewal confirmed: at send time of the last confirmed request +
 * lease_ms - margin. Candidates retry with the backoff engine. Events the channel delivers while
 * this process does not hold a valid lease are withheld and counted (discarded).
 */
#ifndef GN_LEASE_H
#define GN_LEASE_H

#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "conf.h"
#include "redis.h"
#include "env.h"

typedef struct {
  gn_redis_opts_t redis; /* the connection: url, password_file, tls, sentinel (redis.h) */
  const char *key;   /* base key */
  double lease_ms;   /* lease time to live */
  double margin_ms;  /* step down this long before the lease could expire (0: lease_ms/5) */
  size_t maxlen;     /* stream length kept (approximately) */
  const gn_backoff_policy_t *backoff; /* candidates' retries (NULL: derived from lease_ms) */
  int successor;     /* a successor (handover.c): its stream runs before it holds the lease */
} gn_lease_cfg_t;

/* The fleet's options of a client (redis = {...}): rows of the one table of options (conf.h,
 * GN_CONF_OPTIONS: the same columns), read by genesys.notify (core.options) and the binding
 * from the normalized redis table by key; documented in docs/fleet.md. redis.key is also
 * required (genesys.notify says so); the connection fields (url, password_file, tls,
 * sentinel) are parsed by one parser (redis_conf.c) and are not rows. */
#define GN_LEASE_OPTIONS(X)                                                                        \
  X("redis.key", "key", key, STR, STRING, 0, 0, 0, "", "the fleet's base key")                    \
  X("redis.lease_ms", "lease_ms", lease_ms, DOUBLE, MS, 10000, 100, 3600000, "",                  \
    "the lease's time to live")                                                                   \
  X("redis.margin_ms", "margin_ms", margin_ms, DOUBLE, MS, 0, 1, 1800000, "",                     \
    "step down this long before the lease could expire (default: lease_ms/5)")                          \
  X("redis.maxlen", "maxlen", maxlen, SIZE, INT, 100000, 1, 1e12, "",                             \
    "stream entries kept (approximately)")                                                        \
  X("redis.successor", "successor", successor, BOOL, FLAG, 0, 0, 1, "",                           \
    "a successor: the stream runs before the lease is held, until a holder hands it over")

/* The rows of GN_LEASE_OPTIONS, in order; gn_lease_nopts of them. Any thread. */
extern const gn_conf_opt_t gn_lease_opts[];
extern const size_t gn_lease_nopts;

typedef enum { GN_LEASE_STOPPED = 0, GN_LEASE_CANDIDATE, GN_LEASE_HOLDER } gn_lease_state_t;

typedef struct {
  gn_lease_state_t state;
  uint64_t fence;          /* the fencing token of the current (or last) tenure */
  uint64_t acquired, lost, stepped_down, renewals, attempts;
  uint64_t appended, append_failed, discarded, gaps;
  int redis_up;
} gn_lease_stats_t;

typedef struct gn_lease gn_lease_t;

/* start(ud): the lease was taken, connect the stream; stop(ud): park it; opened(ud): -1 unless
 * the stream is open (every channel of the pool), else when it opened (wall ms, the latest
 * channel's); takeover(ud, from_ms, to_ms) (or NULL): the takeover marker for that interval
 * was written (the stream may heal it); heard(ud): the earliest of the channels' last messages
 * (data, heartbeat or pong; gn_client_heard). Service thread. */
typedef struct {
  void (*start)(void *ud);
  void (*stop)(void *ud);
  double (*opened)(void *ud);
  void *ud;
  void (*takeover)(void *ud, double from_ms, double to_ms);
  double (*heard)(void *ud); /* the stream's last proof of a live socket (wall ms; -1: none):
                                the watermark never passes it (lease_int.h) */
} gn_lease_hooks_t;

/* A lease for the client whose env is given (health goes there; its state and metrics say when
 * the stream opened). Returns it or NULL and err naming the field. Owner thread, before the
 * client starts. */
gn_lease_t *gn_lease_new(const gn_lease_cfg_t *cfg, gn_env_t *env, const gn_lease_hooks_t *hooks,
                         char *err, size_t errlen);
/* Starts competing for the lease. Returns nothing. Service thread. */
void gn_lease_start(gn_lease_t *l);
/* Stops (stepping down first when holding) and lets go of Redis; no hook runs after. Returns
 * nothing. Service thread. */
void gn_lease_stop(gn_lease_t *l);
/* Frees a stopped (or never started) lease; NULL allowed. Returns nothing. Owner thread. */
void gn_lease_free(gn_lease_t *l);
/* What the client's channels must show the lease (the event appends, the deaf intervals);
 * valid for the lease's life. Any thread. */
const gn_tap_t *gn_lease_tap_of(gn_lease_t *l);
/* Fills *out. Returns nothing. Any thread. */
void gn_lease_stats(gn_lease_t *l, gn_lease_stats_t *out);
/* "stopped", "candidate", "holder". Any thread. */
const char *gn_lease_state_name(gn_lease_state_t s);
/* This process's lease value (host:pid:random, nothing secret). Any thread. */
const char *gn_lease_value(const gn_lease_t *l);

/* Make-before-break between two processes (handover.c). A successor (cfg.successor) is a
 * candidate whose stream runs before it holds the lease: it keeps what it receives (up to
 * GN_LEASE_HO_MAX events, the oldest dropped and counted as discarded) and tries the lease
 * every 50 ms; without a handover within GN_LEASE_HO_WAIT_MS + lease_ms it parks its stream
 * and waits as any candidate (health "lease" "successor_ended"). The holder, once the successor's stream is open, hands the lease over with
 * gn_lease_handover(successor's value): a script moves KEY:lease to the successor only while
 * it is the holder's, and the holder parks its stream at once (health "lease" "handed_over";
 * no release). The successor takes the lease (a new fence: any late write of the old holder
 * fails the fence check), reads the stream's tail back from one second before the old
 * holder's watermark, and appends what it kept from then on that is not there (by
 * CorrelationId): the two streams' overlap once, nothing in between lost. No marker when its
 * stream was open since before that second; else the usual takeover marker from there to its
 * stream's opening. Posted to the service thread: returns 0, or -1 (not running). Any thread. */
int gn_lease_handover(gn_lease_t *l, const char *to_value);
#define GN_LEASE_HO_MAX 100000
#define GN_LEASE_HO_WAIT_MS 30000.0 /* a successor's stream runs at most this + lease_ms */

#endif
