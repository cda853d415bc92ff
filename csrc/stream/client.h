/* client.h: one notification client, as its owner (the Lua binding, or any C program) sees it.
 *
 * A client holds the settings, the desired topics, the queue of items to the owner, metrics,
 * the shared token cache entry of its credential, and a pool of channels (channel.h): its
 * topics spread over the fewest channels of 1,000 (pool.h), as many as the credential's
 * channel budget allows, each with its own state machine on the service thread of its context
 * (service.h); topics that do not fit wait, reported, until budget frees up. The functions below run on
 * the owner's thread and only post tasks, take the queue's lock, or read atomics; the owner
 * receives events and health as gn_item_t structs (queue.h) whose eventfd (gn_client_fd) is
 * readable while items wait.
 *
 * No function here calls back into the owner: the owner pops items when it wants them.
 *
 * Fork: a client belongs to the process that created it. In a child forked after it, start,
 * reconnect and subscribe refuse (-1), close returns at once and free keeps the memory (the
 * parent's copy-on-write pages; its service thread is not in the child). Check gn_client_forked
 * before anything else. A client created in the child works normally (new default context, new
 * token cache).
 */
#ifndef GN_CLIENT_H
#define GN_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "bell.h"
#include "conf.h"
#include "env.h"
#include "metrics.h"
#include "queue.h"

typedef struct gn_service gn_service_t;
typedef struct gn_client gn_client_t;

/* Creates a stopped client on svc (a reference is taken; NULL: the default context). Returns
 * it, or NULL and err. Owner thread. */
gn_client_t *gn_client_new(const gn_client_cfg_t *cfg, gn_service_t *svc, char *err,
                           size_t errlen);
/* Returns 1 when c was created by another process (this one was forked after it), else 0.
 * Any thread. */
int gn_client_forked(const gn_client_t *c);
/* A layer above the client that decides when its pool runs (the fleet: csrc/fleet/fleet.h):
 * start at the client's start (the pool stays parked: state standby), stop at its close before
 * the pool stops (service thread, both), free when the client is freed (owner thread). */
typedef struct {
  void (*start)(void *ud);
  void (*stop)(void *ud);
  void (*free)(void *ud);
  void *ud;
} gn_client_gate_t;
/* Gates c and gives every channel tap (may be NULL). Returns 0, or -1 when c is already gated
 * or started. Owner thread, before gn_client_start. */
int gn_client_set_gate(gn_client_t *c, const gn_client_gate_t *gate, const gn_tap_t *tap);
/* The gate opens (the pool runs: the first time it starts) or closes (every channel parks).
 * Return nothing. Service thread. */
void gn_client_resume(gn_client_t *c);
void gn_client_park(gn_client_t *c);
/* Every topic of every running channel was deaf from from_ms to to_ms (wall clock), a gap
 * the layer above knows of (a fleet takeover): a resync heals it when resync is on, its items
 * passing the channels' tap. Returns nothing. Service thread. */
void gn_client_resync_gap(gn_client_t *c, double from_ms, double to_ms);
/* The same from the owner's thread (client_heal.c: posted to the service thread). Returns 0;
 * -2 when resync is off (nothing would heal the gap); -1 when the client is not running (not
 * started, closed, another process's) or memory ran out. */
int gn_client_heal(gn_client_t *c, double from_ms, double to_ms);
/* The earliest of the pool's channels' last proofs of a live socket (gn_channel_heard): every
 * event the server sent before it was received. -1 when no channel had a socket. Service
 * thread (client_heal.c). */
double gn_client_heard(gn_client_t *c);
/* The first channel's env (its state, metrics and the owner's queue), for the gate's health
 * items and for when the stream opened. Valid for the client's life. Any thread. */
gn_env_t *gn_client_env(gn_client_t *c);
/* c's gate, or NULL when it has none. Any thread. */
const gn_client_gate_t *gn_client_gate(const gn_client_t *c);
/* Starts connecting. Returns 0, or -1 (already started, closed, or forked). Owner thread. */
int gn_client_start(gn_client_t *c);
/* Asks for a reconnect of every channel now. Returns 1 if this call opened a reconnect cycle
 * (on any channel), 0 if each had one open already (the request is folded into it: single
 * flight), -1 if the client is not running or out of memory. Any thread. */
int gn_client_reconnect(gn_client_t *c);
/* Adds (add = 1) or removes topics: new ones go to a channel with room first, then to a new
 * channel while the budget allows, else they wait (reported); removed ones leave their channel,
 * which is closed when it empties (but the last). Results come back as health "subscription".
 * Returns 0 or -1 (closed / out of memory). Owner thread. */
int gn_client_subscribe(gn_client_t *c, const char *const *topics, size_t n, int add);
/* Stops everything, waits until the service thread has let go of the client; idempotent. After
 * it returns no item is produced any more. Returns nothing. Owner thread. */
void gn_client_close(gn_client_t *c);
/* The policy hook's answer for attempt seq: delay_ms >= 0 replaces the engine's delay (checked
 * against the policy's caps), delay_ms < 0 gives up. Until it comes, or when it never does, the
 * engine's delay runs: a hook that is slow or never polled cannot stall reconnection. Returns
 * nothing. Any thread. */
void gn_client_policy_answer(gn_client_t *c, uint64_t seq, double delay_ms);
/* Frees a client (closing it first if needed); NULL allowed. Returns nothing. Owner thread. */
void gn_client_free(gn_client_t *c);

/* The eventfd that is readable while items wait. Any thread. */
int gn_client_fd(gn_client_t *c);
/* The path of the client's wake socket (bell.h), created on first use in a private directory:
 * every peer connected there gets a byte when items start waiting. Closed, and its directory
 * removed, by gn_client_close. Returns the path, or NULL and err. Owner thread. */
const char *gn_client_wake_path(gn_client_t *c, char *err, size_t errlen);
/* The wake socket's counters (all 0 before gn_client_wake_path and after close). Returns
 * nothing. Owner thread (gn_client_metrics fills them too). */
void gn_client_wake_stats(gn_client_t *c, gn_bell_stats_t *out);
/* Returns the next waiting item (free it with gn_item_free), or NULL. Owner thread. */
gn_item_t *gn_client_pop(gn_client_t *c);
/* Returns up to max waiting items linked by next (one lock for all; free each with
 * gn_item_free), or NULL. Owner thread. */
gn_item_t *gn_client_pop_batch(gn_client_t *c, size_t max);

/* Returns the state. Any thread. */
gn_state_t gn_client_state(gn_client_t *c);
/* Fills out with a snapshot of the counters. Returns nothing. Any thread (the wake socket's
 * counters: not while the owner closes the client). */
void gn_client_metrics(gn_client_t *c, gn_metrics_snapshot_t *out);
/* One channel of the client's pool, as the owner sees it. */
typedef struct {
  int number;              /* 1-based, the "channel" of its health items and metrics */
  gn_state_t state;
  gn_metrics_snapshot_t m; /* its own counters (events: those it received) */
} gn_client_channel_t;
/* Fills out[0..max) with the running channels, in order. Returns how many. Any thread. */
size_t gn_client_channels(gn_client_t *c, gn_client_channel_t *out, size_t max);
/* Returns how many wanted topics wait for the credential's channel budget. Any thread. */
size_t gn_client_topics_waiting(gn_client_t *c);
/* Returns the label for metrics and audit ("" when none). Any thread. */
const char *gn_client_name(gn_client_t *c);
/* Fills the scheduler's counters: cycles opened, triggers coalesced, triggers. Returns nothing.
 * Any thread. */
void gn_client_sched_counts(gn_client_t *c, uint64_t *cycles, uint64_t *coalesced,
                            uint64_t *triggers);
/* Returns the token requests made for this client's credential (shared entry). Any thread. */
unsigned long gn_client_token_requests(gn_client_t *c);

#endif
