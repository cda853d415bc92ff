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

/* ---- The options: one table ----
 * One row per option of a client (the fleet's: GN_LEASE_OPTIONS in fleet/lease.h, the same
 * row), read by every part that needs it:
 *   - genesys.notify (core.options): the user's field found by its dotted path (a nested
 *     table's fields included, and the table's allowed keys), checked by its kind, with the
 *     message naming the field and what was expected, put in the normalized table under key;
 *   - the binding (lbind_new.c): each row read from the normalized table by key into its
 *     member (the row's default when absent);
 *   - gn_conf_init: a numeric value outside its range (a zero from a C caller) is the
 *     default; every row's member copied into gn_conf_t (same member name);
 *   - spec/unit/options_spec.lua: each row is in docs/client.md's (docs/fleet.md's) table of
 *     options, and a value out of its range (or of the wrong type) raises naming the field.
 * Adding an option is one row here and its member in gn_client_cfg_t and gn_conf_t (the C
 * compiler says when one is missing: the rows are compiled against both), plus its doc row.
 * What cannot be a row (callbacks, topic lists, the backoff policy, credentials with an
 * environment fallback, the proxy URL, resync's families, Redis's connection) is listed in
 * docs/client.md under "Options that are not rows".
 *   X(field: the user's dotted path, key: the normalized table's, member (of gn_client_cfg_t),
 *     ctype (GN_OPT_T_*: LONG, SIZE, INT, DOUBLE, BOOL (int), STR (const char *), ENUM (int:
 *     the index in choices)), kind (GN_OPT_*: how it is checked and said: MS, INT, BYTES,
 *     FRACTION, FLAG, CHOICE, STRING, PEMFILE, LABEL), default, lowest, highest (numbers;
 *     for ENUM 0 and the last index), choices ("a|b|c" for ENUM, else ""), doc (one line)) */
#define GN_CONF_OPTIONS(X)                                                                         \
  X("timeouts.connect_ms", "connect_timeout_ms", connect_timeout_ms, LONG, MS,                     \
    GN_CONNECT_TIMEOUT_MS_DEFAULT, 1, 3600000, "", "DNS, TCP and TLS of a connection")            \
  X("timeouts.handshake_ms", "handshake_timeout_ms", handshake_timeout_ms, LONG, MS,               \
    GN_HANDSHAKE_TIMEOUT_MS_DEFAULT, 1, 3600000, "", "the WebSocket upgrade")                     \
  X("timeouts.http_ms", "http_timeout_ms", http_timeout_ms, LONG, MS, GN_HTTP_TIMEOUT_MS_DEFAULT, \
    1, 3600000, "", "each HTTP request")                                                          \
  X("heartbeat.idle_ms", "idle_ms", idle_ms, LONG, MS, 35000, 10, 86400000, "",                   \
    "silence before the client sends a ping")                                                     \
  X("heartbeat.ping_timeout_ms", "ping_timeout_ms", ping_timeout_ms, LONG, MS, 10000, 10,          \
    86400000, "", "silence after the ping before the link is dead")                               \
  X("queue_limit", "queue_limit", queue_limit, SIZE, INT, 10000, 1, 1000000000, "",               \
    "events waiting for poll()")                                                                  \
  X("queue_bytes", "queue_bytes", queue_bytes, SIZE, BYTES, GN_QUEUE_BYTES_DEFAULT, 65536,         \
    1099511627776.0, "", "bytes of the events waiting")                                           \
  X("max_message_size", "max_message_size", max_message, SIZE, BYTES, GN_MAX_MESSAGE_DEFAULT, 256, \
    1073741824, "", "bytes of one WebSocket message")                                             \
  X("overflow", "overflow", overflow_pause, ENUM, CHOICE, 1, 0, 1, "drop|pause",                   \
    "what a full queue does")                                                                     \
  X("pause_max_ms", "pause_max_ms", pause_max_ms, LONG, MS, 30000, 0, 86400000, "",               \
    "longest pause of reading (0: no limit)")                                                     \
  X("channel_budget", "channel_budget", channel_budget, INT, INT, 20, 2, 1000, "",                \
    "channels of the credential, one spare")                                                      \
  X("tls.verify", "verify", verify, BOOL, FLAG, 1, 0, 1, "", "TLS verification")                  \
  X("tls.ca_file", "ca_file", ca_file, STR, PEMFILE, 0, 0, 0, "", "PEM bundle (default: the system's)") \
  X("name", "name", name, STR, LABEL, 0, 0, 0, "", "label for metrics and audit")                 \
  X("renew.rule", "renew_rule", renew.rule, ENUM, CHOICE, 0, 0, 2, "both|channel|off",           \
    "what ends a channel")                                                                        \
  X("renew.at", "renew_at", renew.at, DOUBLE, FRACTION, 0.8, 0.1, 0.95, "",                       \
    "fraction of the lifetime")                                                                   \
  X("renew.margin_ms", "renew_margin_ms", renew.margin_ms, LONG, MS, 60000, 0, 86400000, "",      \
    "renew at least this long before the end")                                                    \
  X("renew.drain_ms", "renew_drain_ms", renew.drain_ms, LONG, MS, 10000, 100, 600000, "",         \
    "a renewal's old socket is read at most this long")                                           \
  X("resync.budget", "resync_budget", resync_budget, INT, INT, 150, 2, 100000, "",                \
    "REST requests of the token per window")                                                      \
  X("resync.window_ms", "resync_window_ms", resync_window_ms, LONG, MS, 60000, 1000, 3600000, "", \
    "the budget's window")                                                                        \
  X("resync.spacing_ms", "resync_spacing_ms", resync_spacing_ms, LONG, MS, 0, 1, 600000, "",      \
    "between resync requests (default: the window over the budget)")                                    \
  X("resync.reserve", "resync_reserve", resync_reserve, INT, INT, 0, 1, 100000, "",               \
    "requests kept for the stream (default: 4 per channel of the budget)")

typedef enum {
  GN_OPT_T_LONG, GN_OPT_T_SIZE, GN_OPT_T_INT, GN_OPT_T_DOUBLE, GN_OPT_T_BOOL, GN_OPT_T_STR,
  GN_OPT_T_ENUM
} gn_opt_ctype_t;
typedef enum {
  GN_OPT_MS, GN_OPT_INT, GN_OPT_BYTES, GN_OPT_FRACTION, GN_OPT_FLAG, GN_OPT_CHOICE,
  GN_OPT_STRING, GN_OPT_PEMFILE, GN_OPT_LABEL
} gn_opt_kind_t;
typedef struct {
  const char *field, *key; /* the user's name ("timeouts.connect_ms"), the normalized key */
  size_t offset;           /* of the member in its struct (gn_client_cfg_t, gn_lease_cfg_t) */
  gn_opt_ctype_t ctype;
  gn_opt_kind_t kind;
  double def, lo, hi;
  const char *choices;     /* ENUM: "a|b|c" (the member is the index), else "" */
  const char *doc;
} gn_conf_opt_t;

/* A row of a table of options on struct type S (what the X of GN_CONF_OPTIONS and
 * GN_LEASE_OPTIONS expands to, with S bound: see conf.c and lease.c). */
#define GN_CONF_ROW_OF(S, field, key, member, ctype, kind, def, lo, hi, choices, doc)           \
  {field, key, offsetof(S, member), GN_OPT_T_##ctype, GN_OPT_##kind, (double)(def), lo, hi,       \
   choices, doc},

/* Holds a row's member to its C type (the rows are read and written through their offsets):
 * the member's type must be the row's exactly. */
#define GN_OPT_IS_LONG(e) _Generic((e), long: 1, default: 0)
#define GN_OPT_IS_SIZE(e) _Generic((e), size_t: 1, default: 0)
#define GN_OPT_IS_INT(e) _Generic((e), int: 1, default: 0)
#define GN_OPT_IS_DOUBLE(e) _Generic((e), double: 1, default: 0)
#define GN_OPT_IS_BOOL(e) _Generic((e), int: 1, default: 0)
#define GN_OPT_IS_STR(e) _Generic((e), const char *: 1, default: 0)
#define GN_OPT_IS_ENUM(e) _Generic((e), int: 1, default: 0)
#define GN_CONF_CHECK_OF(S, field, key, member, ctype, ...)                                        \
  _Static_assert(GN_OPT_IS_##ctype(((S *)0)->member), "the member of " field " is not its row's C type");

/* The rows of GN_CONF_OPTIONS, in order; gn_conf_nopts of them. Any thread. */
extern const gn_conf_opt_t gn_conf_opts[];
extern const size_t gn_conf_nopts;
/* The option's value in the struct at base as a number (BOOL and ENUM: the int; STR: 0 or 1,
 * set or not). Any thread. */
double gn_conf_opt_get(const void *base, const gn_conf_opt_t *o);
/* Sets the option's numeric member (LONG, SIZE, INT, DOUBLE, BOOL, ENUM) of the struct at base
 * to v (converted to its C type). Returns nothing. */
void gn_conf_opt_set(void *base, const gn_conf_opt_t *o, double v);
/* Sets the option's STR member of the struct at base to s (borrowed). Returns nothing. */
void gn_conf_opt_set_str(void *base, const gn_conf_opt_t *o, const char *s);
/* The index of s among o's choices, or -1. Any thread. */
int gn_conf_opt_choice(const gn_conf_opt_t *o, const char *s);

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
