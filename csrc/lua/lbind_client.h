/* lbind_client.h: what the client's binding files share: lbind_client.c (the methods, poll(),
 * drain(), topics), lbind_new.c (construction from the normalized configuration),
 * lbind_metrics.c (metrics()), lbind_context.c (contexts and bells), lbind_fleet.c
 * (lease_handover), lbind_ring.c (drain_entries()). Only they include it. The Lua thread. */
#ifndef GN_LBIND_CLIENT_H
#define GN_LBIND_CLIENT_H

#include "fleet.h" /* and client.h */
#include "lbind.h"
#include "service.h"

#include <unistd.h>

#define LGN_CLIENT_MT "genesys.notify.client"

typedef struct {
  /* Its in_callback: the callback of this client running now ("on_event", ...), or NULL: poll()
   * and run() refuse to run inside one. They would recurse in C with the outer item
   * half-handled, and deep enough that recursion overflows the C stack and loses items. Another
   * client's poll() is fine. First member: lgn_client_state_of casts back. */
  lgn_caller_t caller;
  gn_client_t *c;
  int closed;
  pid_t pid; /* the process that created it */
} lclient_t;

#define LGN_CONTEXT_MT "genesys.notify.context"

typedef struct {
  gn_service_t *svc;
  pid_t pid;
} lcontext_t;

/* A client or context used in a child process forked after it was made: its service thread
 * stayed in the parent. Raises. */
int lgn_refuse_forked(lua_State *L, const char *what, pid_t pid);
/* The client at i, whatever its state: for close(), __gc and __tostring, which work (and
 * return at once) in a forked child too. */
lclient_t *lgn_check_client(lua_State *L, int i);
/* The client at i, which must belong to this process. */
lclient_t *lgn_check_here(lua_State *L, int i);
/* The client at i, of this process and not closed (raises otherwise). */
lclient_t *lgn_check_open(lua_State *L, int i);
/* The client's state in a callback_error report (lgn_caller_t.state). */
const char *lgn_client_state_of(lgn_caller_t *c);
/* topics at idx: a string or an array of strings, every one a valid topic name (raises naming
 * fn otherwise). Returns the names (in a userdata pushed on the stack, the strings the table's)
 * and sets *n. */
const char **lgn_read_topics(lua_State *L, int idx, size_t *n, const char *fn);
/* The metatable name: methods as __index, gc as __gc, close as __close (Lua 5.4), tostring as
 * __tostring. Leaves the stack as it was. */
void lgn_register_class(lua_State *L, const char *name, const luaL_Reg *methods,
                        lua_CFunction gc, lua_CFunction close, lua_CFunction tostring);

int lgn_client_metrics(lua_State *L); /* client:metrics([format]) (lbind_metrics.c) */
int lgn_client_lease_handover(lua_State *L); /* client:lease_handover(value) (lbind_fleet.c) */
void lgn_open_metrics(lua_State *L);   /* core.prometheus_family (lbind_metrics.c) */
int lgn_client_new(lua_State *L);     /* core.client_new(cfg) (lbind_new.c) */
/* Pushes core.options: the numeric options' table (conf.h) by the user's field name, each
 * {key=, kind="ms"|"int"|"bytes"|"fraction", default=, lo=, hi=} (lbind_new.c). */
void lgn_push_options(lua_State *L);
int lgn_open_context(lua_State *L);   /* contexts and bells (lbind_context.c) */

/* The policy hook answered for item it (uv: the client's user value). Returns nothing. */
void lgn_run_policy(lua_State *L, lclient_t *u, int uv, struct gn_item *it);
/* drain()'s parts (lbind_client.c), which drain_entries() shares: lgn_drain_pop takes the next
 * item, answering (and freeing) the policy records before it; NULL when nothing waits or the
 * client is closed. lgn_drain_put appends it (not a policy record) to the array at stack index
 * arr, at k + 1, as drain(max, mode) gives it (mode 0: tables, 1: "raw", 2: "record"), writes a
 * health item's audit line, and frees it; raises only on memory. */
struct gn_item *lgn_drain_pop(lua_State *L, lclient_t *u, int uv);
void lgn_drain_put(lua_State *L, lclient_t *u, int uv, int arr, int k, int mode,
                   struct gn_item *it);
/* client:drain_entries(max, bytes) (lbind_ring.c). */
int lgn_client_drain_entries(lua_State *L);

#endif
