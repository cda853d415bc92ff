/* service.h: the service thread of a context.
 *
 * One thread per context runs one libuv loop that carries everything network-related for every
 * client of the context: libwebsockets (on the loop as a foreign loop), libcurl's multi interface
 * (driven by uv_poll/uv_timer), DNS (uv_getaddrinfo on libuv's thread pool). Other threads talk to
 * it only through gn_service_post(), a locked task queue drained by a uv_async wake-up.
 *
 * Lifetime: reference counted. The last gn_service_release() stops the loop (from inside a loop
 * callback, the only order that frees lws and curl completely) and joins the thread, so a process
 * whose clients are all closed has no thread left behind. The default context is created lazily
 * by gn_service_acquire_default() and forgotten when its last client goes.
 *
 * Fork: a context belongs to the process that created it (its thread does not survive fork()).
 * In a child the default context is forgotten, so the next client there gets a new one; a
 * context from before the fork is left alone: gn_service_release() returns at once and its
 * memory is kept, unused (the parent's copy-on-write pages, reachable for leak checkers).
 */
#ifndef GN_SERVICE_H
#define GN_SERVICE_H

#include <stddef.h>
#include <sys/types.h>
#include <uv.h>

typedef struct gn_http gn_http_t;
typedef struct gn_transport gn_transport_t;
typedef struct gn_service gn_service_t;

typedef void (*gn_task_fn)(gn_service_t *svc, void *arg);

/* Something living on the loop that wants to hear about shared-state changes made by another
 * context (a token fetched elsewhere). Registered and unregistered on the loop thread only. */
typedef struct gn_member {
  struct gn_member *next, *prev;
  void (*poke)(struct gn_member *m);
} gn_member_t;

/* A new context with its own thread, reference count 1. NULL and err on failure. Any thread. */
gn_service_t *gn_service_new(char *err, size_t errlen);
/* The process's default context, created on first use; adds a reference. Any thread. */
gn_service_t *gn_service_acquire_default(char *err, size_t errlen);
/* Returns 1 when svc was created by another process (this one is a child forked after it),
 * else 0: nothing may be asked of it here. Any thread. */
int gn_service_forked(const gn_service_t *svc);
/* Returns the process that created svc. Any thread. */
pid_t gn_service_pid(const gn_service_t *svc);
/* Adds a reference. Returns nothing. Any thread. */
void gn_service_ref(gn_service_t *svc);
/* Drops a reference; the last one stops the loop and joins the thread. Returns at once, doing
 * nothing, for a context of another process (gn_service_forked). Any thread but the service
 * thread itself. */
void gn_service_release(gn_service_t *svc);

/* Runs fn(svc, arg) on the service thread, in posting order. Returns 0, or -1 if the context is
 * stopping, belongs to another process, or memory ran out (fn will then never run). Any
 * thread. */
int gn_service_post(gn_service_t *svc, gn_task_fn fn, void *arg);
/* Returns 1 when called on svc's service thread, else 0. Any thread. */
int gn_service_on_thread(const gn_service_t *svc);

/* The loop, the WebSocket transport (lws context and vhosts) and the HTTP engine of svc, for
 * use on its loop. Loop thread (the pointers may be read from any thread; the objects are the
 * loop's). */
uv_loop_t *gn_service_loop(gn_service_t *svc);
gn_transport_t *gn_service_transport(gn_service_t *svc);
gn_http_t *gn_service_http(gn_service_t *svc);

/* Registers / unregisters m (remove is a no-op for a member not registered). Return nothing.
 * Loop thread. */
void gn_service_member_add(gn_service_t *svc, gn_member_t *m);
void gn_service_member_remove(gn_service_t *svc, gn_member_t *m);
/* Asks the loop to call poke() on every member. Returns nothing. Any thread. */
void gn_service_poke(gn_service_t *svc);

/* A call deferred to the end of the service loop's current iteration (a uv_prepare, before the
 * loop waits for I/O again): queue.c writes its eventfd there once for all the events one read
 * of the socket produced, not once per event. */
typedef struct gn_defer {
  struct gn_defer *next;
  void (*fn)(void *arg);
  void *arg;
  int queued;
} gn_defer_t;
/* Queues d (once: a queued d is left as it is) to run on this service thread before its loop
 * next waits. Returns 0, or -1 when the caller is not on a service thread (run it now then).
 * Any thread. */
int gn_service_defer(gn_defer_t *d);
/* Takes d off this thread's list when queued (its owner is going away). Returns nothing. The
 * thread that queued it. */
void gn_service_undefer(gn_defer_t *d);

#endif
