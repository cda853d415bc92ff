/* client_int.h: the client's insides, shared by its files only: client.c (the owner's calls
 * and the service thread's tasks), client_pool.c (topics spread over the pool's channels within
 * the budget) and client_metrics.c (what the owner reads of the pool). */
#ifndef GN_CLIENT_INT_H
#define GN_CLIENT_INT_H

#include "client.h"
#include "channel.h"
#include "oauth.h"
#include "pool.h"
#include "resync.h"
#include "service.h"
#include "gn_util.h"

#define GN_EVICT_WINDOW_MS 2000 /* an eviction this soon after a creation was caused by it */

/* One channel of the pool, with what it does not share with the others (its state, counters
 * and topics). Allocated on first use and kept until the client is freed (at most
 * GN_POOL_MAX), so the owner may read it at any time; the channel in it comes and goes. */
typedef struct {
  gn_env_t env;          /* the client's, but for state, metrics, topics and index */
  gn_metrics_t *metrics; /* the channel's own counters, kept across the channels it held:
                            the first slot's are the client's own (which the queue counts
                            in too: a lone channel costs no second set), the others' own */
  gn_topics_t topics;    /* placed on this channel (service thread once started) */
  gn_channel_t *ch;      /* NULL: free (an emptied channel was closed); under pool_mu */
  int unit;              /* holds a unit of the credential's budget (service thread) */
  _Atomic int running;   /* started on the service thread */
  uint64_t gen;          /* channels it held: a reconnect asked of an earlier one is dropped */
  uint64_t sched_base[3 + GN_METRICS_REASONS]; /* scheduler counts of its earlier channels */
} gn_slot_t;

struct gn_client {
  gn_conf_t conf;
  gn_metrics_t metrics; /* what the queue counts (events, drops, health) */
  gn_queue_t queue;
  gn_env_t env;         /* shared parts; state: idle until started, closed at the end */
  _Atomic(gn_slot_t *) slots[GN_POOL_MAX];
  pthread_mutex_t pool_mu;  /* slots[i]->ch changes (service thread) and the owner's reads */
  /* desired topics: every one in index (its slot, or -1 while it waits for budget in
   * pending); the owner's until start(), the service thread's after */
  gn_tindex_t index;
  gn_topics_t pending;
  _Atomic size_t npending;
  _Atomic int pooled;       /* held more than one channel once: health items name the channel */
  gn_budget_t *budget;      /* the credential's channels, shared by the process */
  gn_budget_waiter_t waiter;/* poked when a unit comes back (start to close) */
  _Atomic int poke_posted;
  int first_cycle;          /* start() opened slot 0's first cycle, not yet used (service) */
  int pool_started;         /* pool_start ran (service thread) */
  int gate_open;            /* gated: the layer above lets the pool run now (service thread) */
  gn_client_gate_t gate;    /* a layer above (the fleet) decides when the pool runs */
  gn_resync_t *resync;      /* resync = ...: gaps healed over REST (resync.h), or NULL */
  _Atomic int started;
  _Atomic int closing;
  /* subscribe/unsubscribe calls posted and applied: until they agree the subscriptions do not
   * count as synced, whatever the service thread last said */
  _Atomic uint64_t changes_posted, changes_applied;
  int queue_ready;
  _Atomic(gn_bell_t *) wake; /* the wake socket, once asked for (set by the owner) */
  int unreached;        /* close() could not reach the service thread: it may still use it */
  pid_t pid;            /* the process that created it (see gn_client_forked) */
  gn_client_t *next_orphan;
};

/* Slot i of the pool (NULL: never used). Any thread. */
static inline gn_slot_t *gn_cl_slot_at(gn_client_t *c, int i) { return atomic_load(&c->slots[i]); }

/* ---- client_pool.c ---- (each function's full comment is at its definition) */
/* The client's state: "open" when every running channel is, else the least advanced one's.
 * Any thread. */
gn_state_t gn_cl_client_state(gn_client_t *c);
/* Slot i, allocated on first use with its env. Returns it, or NULL when out of memory. */
gn_slot_t *gn_cl_slot_get(gn_client_t *c, int i);
/* A new channel in slot s (free). Returns 0, or -1 and err. */
int gn_cl_slot_new_channel(gn_client_t *c, gn_slot_t *s, char *err, size_t errlen);
/* Stops slot i's channel and gives its unit back (why: "empty", "closed"); the slot is free.
 * Returns nothing. */
void gn_cl_slot_stop(gn_client_t *c, int i, const char *why);
/* Wants t: a topic not wanted yet waits in pending for pool_fill. Returns 1 when it is new. */
int gn_cl_pool_want(gn_client_t *c, const char *t);
/* No longer wants t (changed[slot] set for the slot it left). Returns nothing. */
void gn_cl_pool_unwant(gn_client_t *c, const char *t, int *changed);
/* Places waiting topics on channels while the budget allows, reports what waits or got in,
 * starts the new channels and puts the topics on the changed ones. Service thread, once
 * started. Returns nothing. */
void gn_cl_pool_fill(gn_client_t *c, int *changed, int wanted);
/* After topics left: a channel left empty is closed unless it is the last one or waiting
 * topics fill it. Service thread. Returns nothing. */
void gn_cl_pool_settle(gn_client_t *c, int *changed, int wanted);

/* The budget's poke (a unit came back): posts gn_cl_task_poke once. Any thread. */
void gn_cl_poke(void *ud);

/* ---- client.c ---- */
/* The task that places topics waiting for budget (posted by the budget's poke). */
void gn_cl_task_poke(gn_service_t *svc, void *arg);

#endif
