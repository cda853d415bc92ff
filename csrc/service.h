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
 */
#ifndef GN_SERVICE_H
#define GN_SERVICE_H

#include <stddef.h>
#include <uv.h>

struct lws_context;
struct lws_vhost;
typedef struct gn_http gn_http_t;
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
void gn_service_ref(gn_service_t *svc);
/* Drops a reference; the last one stops the loop and joins the thread. Any thread but the
 * service thread itself. */
void gn_service_release(gn_service_t *svc);

/* Runs fn(svc, arg) on the service thread, in posting order. Returns 0, or -1 if the context is
 * stopping or memory ran out (fn will then never run). Any thread. */
int gn_service_post(gn_service_t *svc, gn_task_fn fn, void *arg);
/* 1 when called on svc's service thread. */
int gn_service_on_thread(const gn_service_t *svc);

/* Loop-thread accessors. */
uv_loop_t *gn_service_loop(gn_service_t *svc);
struct lws_context *gn_service_lws(gn_service_t *svc);
gn_http_t *gn_service_http(gn_service_t *svc);
/* The lws client vhost for a CA bundle ("" or NULL: the system's) and verification setting,
 * created on first use.
 * NULL and err when the bundle cannot be loaded. Loop thread. */
struct lws_vhost *gn_service_vhost(gn_service_t *svc, const char *ca_file, int verify, char *err,
                                   size_t errlen);

void gn_service_member_add(gn_service_t *svc, gn_member_t *m);    /* loop thread */
void gn_service_member_remove(gn_service_t *svc, gn_member_t *m); /* loop thread */
/* Asks the loop to call poke() on every member. Any thread. */
void gn_service_poke(gn_service_t *svc);

#endif
