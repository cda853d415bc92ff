/* client.h: one notification client: token, channel, topics, WebSocket, reconnection.
 *
 * The state machine runs on the service thread of its context (service.h). The owning thread
 * (Lua's) talks to it with the functions below, which post tasks or read shared state under
 * locks; it receives events and health as gn_item_t structs from a bounded queue whose eventfd
 * (gn_client_fd) is readable while items wait.
 *
 * No function here calls back into the owner: the owner pops items when it wants them.
 */
#ifndef GN_CLIENT_H
#define GN_CLIENT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "backoff.h"
#include "metrics.h"

typedef struct gn_service gn_service_t;
typedef struct gn_client gn_client_t;

typedef enum {
  GN_ST_IDLE = 0,   /* created, not started */
  GN_ST_AUTH,       /* getting a token */
  GN_ST_CHANNEL,    /* creating the channel */
  GN_ST_SUBSCRIBE,  /* putting the topics */
  GN_ST_CONNECT,    /* WebSocket connect and handshake */
  GN_ST_OPEN,
  GN_ST_BACKOFF,    /* waiting before the next attempt */
  GN_ST_FAILED,     /* final failure (gave up, auth, forbidden); reconnect() starts over */
  GN_ST_CLOSED
} gn_state_t;

const char *gn_state_name(gn_state_t s);

/* Configuration, validated by the caller (the Lua front module names the fields). Strings are
 * copied by gn_client_new. */
typedef struct {
  const char *token_url;     /* https://login.ENV/oauth/token */
  const char *api_base;      /* https://api.ENV (no trailing slash) */
  const char *client_id, *client_secret;
  const char *const *topics; /* initial topics */
  size_t ntopics;
  gn_backoff_policy_t backoff;
  const char *ca_file;       /* NULL: system bundle */
  int verify;                /* TLS verification (on unless the user turns it off) */
  long connect_timeout_ms, handshake_timeout_ms, http_timeout_ms;
  size_t queue_limit;        /* events waiting for the owner before new ones are dropped */
  size_t max_message;        /* bytes per WebSocket message */
  long idle_ms;              /* silence before a ping */
  long ping_timeout_ms;      /* silence after the ping before the link is declared dead */
  const char *name;          /* label for metrics and audit (may be NULL) */
  int policy;                /* an operator policy hook will answer GN_ITEM_POLICY items */
} gn_client_cfg_t;

/* GN_ITEM_POLICY: an attempt record for the operator's policy hook; answer it with
 * gn_client_policy_answer(c, item->seq, delay). */
typedef enum { GN_ITEM_EVENT = 1, GN_ITEM_HEALTH = 2, GN_ITEM_POLICY = 3 } gn_item_type_t;

typedef struct gn_item {
  struct gn_item *next;
  gn_item_type_t type;
  json_t *data;  /* health: {"kind":..., fields}; event: {"topic","channel_id","received_ms"} */
  json_t *body;  /* event: the decoded eventBody (owned) */
  char *raw;     /* event: the message text as received */
  size_t rawlen;
  uint64_t seq;  /* policy: which scheduled attempt this record is for */
} gn_item_t;

/* Creates a stopped client on svc (a reference is taken; NULL: the default context).
 * NULL and err on failure. Owner thread. */
gn_client_t *gn_client_new(const gn_client_cfg_t *cfg, gn_service_t *svc, char *err,
                           size_t errlen);
/* Starts connecting. Returns 0, or -1 (already started or closed). Owner thread. */
int gn_client_start(gn_client_t *c);
/* Asks for a reconnect now. Returns 1 if this call opened a reconnect cycle, 0 if one was already
 * open (the request is folded into it: single flight), -1 if the client is not running. Any
 * thread. */
int gn_client_reconnect(gn_client_t *c);
/* Adds (add = 1) or removes topics on the live channel and for every later channel. Results
 * come back as health "subscription". Returns 0 or -1 (closed / out of memory). Owner thread. */
int gn_client_subscribe(gn_client_t *c, const char *const *topics, size_t n, int add);
/* Stops everything, waits until the service thread has let go of the client; idempotent. After
 * it returns no item is produced any more. Owner thread. */
void gn_client_close(gn_client_t *c);
/* The policy hook's answer for attempt seq: delay_ms >= 0 replaces the engine's delay (checked
 * against the policy's caps), delay_ms < 0 gives up. Until it comes, or when it never does, the
 * engine's delay runs: a hook that is slow or never polled cannot stall reconnection. Any
 * thread. */
void gn_client_policy_answer(gn_client_t *c, uint64_t seq, double delay_ms);
/* Frees a closed (or never started) client. */
void gn_client_free(gn_client_t *c);

int gn_client_fd(gn_client_t *c);
/* Next waiting item or NULL. Owner thread. */
gn_item_t *gn_client_pop(gn_client_t *c);
void gn_item_free(gn_item_t *it);

gn_state_t gn_client_state(gn_client_t *c);
void gn_client_metrics(gn_client_t *c, gn_metrics_snapshot_t *out);
const char *gn_client_name(gn_client_t *c);
/* Scheduler counters: cycles opened, triggers coalesced. */
void gn_client_sched_counts(gn_client_t *c, uint64_t *cycles, uint64_t *coalesced,
                            uint64_t *triggers);
/* Token requests made for this client's credential (shared entry). */
unsigned long gn_client_token_requests(gn_client_t *c);

#endif
