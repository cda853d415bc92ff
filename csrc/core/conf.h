/* conf.h: a client's settings: what the owner passes in (gn_client_cfg_t, validated by the Lua
 * front module, which names the fields) and the client's own copy with defaults applied
 * (gn_conf_t), immutable once the client exists, so every part may read it from any thread.
 */
#ifndef GN_CONF_H
#define GN_CONF_H

#include <stddef.h>

#include "backoff.h"
#include "proxy.h"

#define GN_QUEUE_BYTES_DEFAULT ((size_t)64 << 20)
/* Defaults other layers fall back on too (transport.c, http.c: a zero in their options). */
#define GN_CONNECT_TIMEOUT_MS_DEFAULT 10000
#define GN_HANDSHAKE_TIMEOUT_MS_DEFAULT 10000
#define GN_HTTP_TIMEOUT_MS_DEFAULT 30000
#define GN_MAX_MESSAGE_DEFAULT 1048576

/* Renewal of channels before their end (the renewal: stream/channel_int.h). */
typedef enum {
  GN_RENEW_BOTH = 0, /* default: a channel may end at its expires or with its creating token */
  GN_RENEW_CHANNEL,  /* only at its expires (the official rule): resubscribing always suffices */
  GN_RENEW_OFF       /* never renewed (the channel ends; the reconnect reports the gap) */
} gn_renew_rule_t;
typedef struct {
  int rule;          /* gn_renew_rule_t */
  double at;         /* renew when this fraction of the lifetime has passed (0: 0.8) */
  long margin_ms;    /* ... or this long before the end, whichever is earlier (-1: 60000) */
  long drain_ms;     /* an old socket of a renewal is read at most this long (0: 10000) */
} gn_renew_conf_t;

/* Configuration as given. Strings are copied by gn_conf_init (and gn_client_new). */
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
  size_t queue_bytes;        /* their estimated bytes (text and decoded tree), the same way */
  size_t max_message;        /* bytes per WebSocket message */
  int overflow_pause;        /* a full queue stops reading the socket instead of dropping */
  long pause_max_ms;         /* longest pause before dropping again (0: no limit) */
  long idle_ms;              /* silence before a ping */
  long ping_timeout_ms;      /* silence after the ping before the link is declared dead */
  const char *name;          /* label for metrics and audit (may be NULL) */
  int policy;                /* an operator policy hook will answer GN_ITEM_POLICY items */
  gn_proxy_t proxy;          /* HTTP proxy for REST and WebSocket (host NULL: none) */
  int channel_budget;        /* channels of the credential, one spare for rollovers (0: 20) */
  gn_renew_conf_t renew;     /* renewal before a channel's or its token's end (stream/channel_int.h) */
  /* resync (resync.h): families as bits (0: off), the token's REST budget (requests per
   * window, the stream's included; 0: 150 a minute), units kept for the stream (reserve: 0 =
   * 4 per channel of the channel budget), and the spacing of resync requests (0: the
   * window spread over the budget) */
  unsigned resync_families;
  int resync_budget, resync_reserve;
  long resync_window_ms, resync_spacing_ms;
} gn_client_cfg_t;

/* ---- The numeric options: one table ----
 * One row per numeric option of a client, read by every part that needs it: gn_conf_init (the
 * default of a value outside its range, a zero from a C caller), the binding (lbind_new.c: the
 * table genesys.notify normalized, by key) and genesys.notify itself (core.options: the user's
 * field checked against its range, with the same message as before). Adding an option is one
 * row here, its member (same name) in gn_client_cfg_t and gn_conf_t, and one opt_into() call
 * where it sits in the user's configuration (lua/genesys/notify.lua); plus its doc row in
 * docs/client.md and its spec.
 *   X(field: the user's name, key: the normalized table's, member of gn_client_cfg_t, C type
 *     (GN_OPT_T_*), kind (how the message says it: GN_OPT_MS, GN_OPT_INT, GN_OPT_BYTES,
 *     GN_OPT_FRACTION), default, lowest, highest) */
#define GN_CONF_OPTIONS(X)                                                                         \
  X("timeouts.connect_ms", "connect_timeout_ms", connect_timeout_ms, LONG, MS,                     \
    GN_CONNECT_TIMEOUT_MS_DEFAULT, 1, 3600000)                                                     \
  X("timeouts.handshake_ms", "handshake_timeout_ms", handshake_timeout_ms, LONG, MS,               \
    GN_HANDSHAKE_TIMEOUT_MS_DEFAULT, 1, 3600000)                                                   \
  X("timeouts.http_ms", "http_timeout_ms", http_timeout_ms, LONG, MS, GN_HTTP_TIMEOUT_MS_DEFAULT, \
    1, 3600000)                                                                                    \
  X("heartbeat.idle_ms", "idle_ms", idle_ms, LONG, MS, 35000, 10, 86400000)                        \
  X("heartbeat.ping_timeout_ms", "ping_timeout_ms", ping_timeout_ms, LONG, MS, 10000, 10,          \
    86400000)                                                                                      \
  X("queue_limit", "queue_limit", queue_limit, SIZE, INT, 10000, 1, 1000000000)                    \
  X("queue_bytes", "queue_bytes", queue_bytes, SIZE, BYTES, GN_QUEUE_BYTES_DEFAULT, 65536,         \
    1099511627776.0)                                                                               \
  X("max_message_size", "max_message_size", max_message, SIZE, BYTES, GN_MAX_MESSAGE_DEFAULT, 256, \
    1073741824)                                                                                    \
  X("pause_max_ms", "pause_max_ms", pause_max_ms, LONG, MS, 30000, 0, 86400000)                    \
  X("channel_budget", "channel_budget", channel_budget, INT, INT, 20, 2, 1000)                     \
  X("renew.at", "renew_at", renew.at, DOUBLE, FRACTION, 0.8, 0.1, 0.95)                            \
  X("renew.margin_ms", "renew_margin_ms", renew.margin_ms, LONG, MS, 60000, 0, 86400000)           \
  X("renew.drain_ms", "renew_drain_ms", renew.drain_ms, LONG, MS, 10000, 100, 600000)

typedef enum { GN_OPT_T_LONG, GN_OPT_T_SIZE, GN_OPT_T_INT, GN_OPT_T_DOUBLE } gn_opt_ctype_t;
typedef enum { GN_OPT_MS, GN_OPT_INT, GN_OPT_BYTES, GN_OPT_FRACTION } gn_opt_kind_t;
typedef struct {
  const char *field, *key; /* the user's name ("timeouts.connect_ms"), the normalized key */
  size_t offset;           /* of the member in gn_client_cfg_t */
  gn_opt_ctype_t ctype;
  gn_opt_kind_t kind;
  double def, lo, hi;
} gn_conf_opt_t;

/* The rows of GN_CONF_OPTIONS, in order; gn_conf_nopts of them. Any thread. */
extern const gn_conf_opt_t gn_conf_opts[];
extern const size_t gn_conf_nopts;
/* The option's value in cfg as a number. Any thread. */
double gn_conf_opt_get(const gn_client_cfg_t *cfg, const gn_conf_opt_t *o);
/* Sets the option's member of cfg to v (converted to its C type). Returns nothing. */
void gn_conf_opt_set(gn_client_cfg_t *cfg, const gn_conf_opt_t *o, double v);

/* The client's copy: owned strings, defaults filled in, api_base without trailing slashes. */
typedef struct {
  char *token_url, *api_base, *client_id, *client_secret, *ca_file, *name;
  int verify;
  long connect_timeout_ms, handshake_timeout_ms, http_timeout_ms, idle_ms, ping_timeout_ms;
  size_t queue_limit, queue_bytes, max_message;
  int overflow_pause;
  long pause_max_ms;
  gn_backoff_policy_t backoff;
  int has_policy;
  gn_proxy_t proxy;
  int channel_budget;
  gn_renew_conf_t renew;
  unsigned resync_families;
  int resync_budget, resync_reserve;
  long resync_window_ms, resync_spacing_ms;
} gn_conf_t;

/* Fills c from cfg. Returns 0, or -1 and err (out of memory; c is then freed). Any thread. */
int gn_conf_init(gn_conf_t *c, const gn_client_cfg_t *cfg, char *err, size_t errlen);
/* Frees c's strings (the secret is wiped first). Returns nothing. Any thread. */
void gn_conf_free(gn_conf_t *c);

#endif
