/* service.c: the service thread of a context (see service.h).
 *
 * Teardown order matters and was found by trial with valgrind (ARCHITECTURE.md): inside a loop
 * callback, shut curl down and close our own handles, stop the transport (lws_context_destroy()
 * once), let uv_run() return, free the transport (lws_context_destroy() a second time: lws frees
 * the rest of its per-thread state only then), and close the loop.
 */
#include "service.h"
#include "http.h"
#include "transport.h"
#include "gn_util.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

typedef struct task {
  struct task *next;
  gn_task_fn fn;
  void *arg;
} task_t;

struct gn_service {
  pthread_t thread;
  pthread_t thread_id_copy;
  uv_loop_t loop;
  uv_async_t wake;
  uv_prepare_t prep;   /* runs the deferred calls (gn_service_defer) */
  gn_transport_t *transport;
  gn_http_t *http;
  gn_member_t members; /* sentinel of a circular list */

  pthread_mutex_t mu;  /* guards tasks, stopping, refs, ready */
  pthread_cond_t cv;
  task_t *head, *tail;
  int stopping;        /* no more posts accepted */
  int ready;           /* 1 started, -1 failed to start */
  char start_err[256];
  int refs;
  int is_default;
  pid_t pid;           /* the process that created it: its thread lives only there */
  gn_service_t *next_orphan;
  task_t stop_mem;
};

static pthread_mutex_t default_mu = PTHREAD_MUTEX_INITIALIZER;
static gn_service_t *default_svc;

/* ---- fork ----
 * A child process has a copy of every context but none of their threads. The default context is
 * forgotten in the child (the next client creates a new one); a context from before the fork is
 * never touched there: gn_service_release() returns at once, and its memory (copy-on-write
 * pages of the parent's) stays allocated, listed in `orphans` so that it is still reachable (no
 * leak report from LeakSanitizer at the child's exit). Its descriptors (the loop's, the
 * sockets') stay open in the child until it exits; the child never reads or writes them. */
static gn_service_t *orphans;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void orphan(gn_service_t *svc) {
  svc->next_orphan = orphans;
  orphans = svc;
}

/* pthread_atfork: default_mu is held across fork() so the child never inherits it locked by a
 * thread that does not exist there. */
static void fork_prepare(void) { pthread_mutex_lock(&default_mu); }
static void fork_parent(void) { pthread_mutex_unlock(&default_mu); }
static void fork_child(void) {
  if (default_svc) orphan(default_svc);
  default_svc = NULL;
  pthread_mutex_unlock(&default_mu);
}
static void fork_init(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

static void drain_cb(uv_async_t *h) {
  gn_service_t *svc = h->data;
  for (;;) {
    /* Take the whole queue at once: several uv_async_send() calls may collapse into one wake-up. */
    pthread_mutex_lock(&svc->mu);
    task_t *t = svc->head;
    svc->head = svc->tail = NULL;
    pthread_mutex_unlock(&svc->mu);
    if (!t) break;
    while (t) {
      task_t *n = t->next;
      t->fn(svc, t->arg);
      if (t != &svc->stop_mem) free(t);
      t = n;
    }
  }
}

/* This thread's deferred calls (only service threads have a list: tls_service is set). */
static __thread int tls_service;
static __thread gn_defer_t *tls_deferred;

int gn_service_defer(gn_defer_t *d) {
  if (!tls_service) return -1;
  if (d->queued) return 0;
  d->queued = 1;
  d->next = tls_deferred;
  tls_deferred = d;
  return 0;
}

void gn_service_undefer(gn_defer_t *d) {
  if (!d->queued) return;
  for (gn_defer_t **pp = &tls_deferred; *pp; pp = &(*pp)->next)
    if (*pp == d) {
      *pp = d->next;
      break;
    }
  d->queued = 0;
}

static void prepare_cb(uv_prepare_t *h) {
  (void)h;
  while (tls_deferred) {
    gn_defer_t *d = tls_deferred;
    tls_deferred = d->next;
    d->queued = 0;
    d->fn(d->arg);
  }
}

static void stop_task(gn_service_t *svc, void *arg) {
  (void)arg;
  gn_http_shutdown(svc->http);
  svc->http = NULL;
  prepare_cb(&svc->prep);
  uv_close((uv_handle_t *)&svc->prep, NULL);
  uv_close((uv_handle_t *)&svc->wake, NULL);
  gn_transport_stop(svc->transport);
}

static void close_walk_cb(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

static void *thread_main(void *arg) {
  gn_service_t *svc = arg;
  char err[256] = "";
  int ok = 0, loop_ok = 0;
  if (uv_loop_init(&svc->loop) != 0) {
    snprintf(err, sizeof err, "context: uv_loop_init failed");
    goto signal;
  }
  loop_ok = 1;
  svc->wake.data = svc;
  uv_async_init(&svc->loop, &svc->wake, drain_cb);
  uv_prepare_init(&svc->loop, &svc->prep);
  uv_prepare_start(&svc->prep, prepare_cb);
  tls_service = 1;
  svc->http = gn_http_new(&svc->loop, err, sizeof err);
  if (!svc->http) goto signal;
  svc->transport = gn_transport_new(&svc->loop, err, sizeof err);
  if (!svc->transport) goto signal;
  ok = 1;
signal:
  pthread_mutex_lock(&svc->mu);
  svc->ready = ok ? 1 : -1;
  if (!ok) snprintf(svc->start_err, sizeof svc->start_err, "%s", err);
  pthread_cond_broadcast(&svc->cv);
  pthread_mutex_unlock(&svc->mu);
  if (!ok) {
    /* Undo what was set up: close every handle, let their close callbacks run, close the loop. */
    if (svc->http) gn_http_shutdown(svc->http);
    svc->http = NULL;
    if (!loop_ok) return NULL;
    uv_walk(&svc->loop, close_walk_cb, NULL);
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    uv_loop_close(&svc->loop);
    return NULL;
  }
  uv_run(&svc->loop, UV_RUN_DEFAULT);
  gn_transport_free(svc->transport);
  svc->transport = NULL;
  /* Anything still open (a handle lws left) is closed so the loop can be closed. */
  if (uv_loop_close(&svc->loop) == UV_EBUSY) {
    uv_walk(&svc->loop, close_walk_cb, NULL);
    uv_run(&svc->loop, UV_RUN_DEFAULT);
    uv_loop_close(&svc->loop);
  }
  return NULL;
}

gn_service_t *gn_service_new(char *err, size_t errlen) {
  pthread_once(&fork_once, fork_init);
  gn_service_t *svc = calloc(1, sizeof *svc);
  if (!svc) {
    snprintf(err, errlen, "context: out of memory");
    return NULL;
  }
  pthread_mutex_init(&svc->mu, NULL);
  pthread_cond_init(&svc->cv, NULL);
  svc->members.next = svc->members.prev = &svc->members;
  svc->refs = 1;
  svc->pid = getpid();
  /* The thread starts with every signal blocked (it inherits the mask in force here): the
   * application's handlers run on its own threads, never in the middle of the loop. */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int rc = pthread_create(&svc->thread, NULL, thread_main, svc);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (rc != 0) {
    snprintf(err, errlen, "context: cannot start the service thread (%s)", strerror(rc));
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    free(svc);
    return NULL;
  }
  pthread_mutex_lock(&svc->mu);
  while (svc->ready == 0) pthread_cond_wait(&svc->cv, &svc->mu);
  int ok = svc->ready == 1;
  pthread_mutex_unlock(&svc->mu);
  if (!ok) {
    pthread_join(svc->thread, NULL);
    snprintf(err, errlen, "%s", svc->start_err);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->cv);
    free(svc);
    return NULL;
  }
  return svc;
}

gn_service_t *gn_service_acquire_default(char *err, size_t errlen) {
  pthread_once(&fork_once, fork_init);
  pthread_mutex_lock(&default_mu);
  gn_service_t *svc = default_svc;
  if (svc && svc->pid != getpid()) { /* the atfork handler did not run (a raw clone) */
    orphan(svc);
    default_svc = svc = NULL;
  }
  if (svc) {
    pthread_mutex_lock(&svc->mu);
    svc->refs++;
    pthread_mutex_unlock(&svc->mu);
  } else {
    svc = gn_service_new(err, errlen);
    if (svc) {
      svc->is_default = 1;
      default_svc = svc;
    }
  }
  pthread_mutex_unlock(&default_mu);
  return svc;
}

void gn_service_ref(gn_service_t *svc) {
  pthread_mutex_lock(&svc->mu);
  svc->refs++;
  pthread_mutex_unlock(&svc->mu);
}

void gn_service_release(gn_service_t *svc) {
  if (!svc) return;
  if (gn_service_forked(svc)) return; /* its thread is in the parent: nothing to stop here */
  /* default_mu first so that acquire_default() never hands out a context that is stopping. */
  pthread_mutex_lock(&default_mu);
  pthread_mutex_lock(&svc->mu);
  int last = --svc->refs == 0;
  if (last) {
    if (svc->is_default && default_svc == svc) default_svc = NULL;
  }
  pthread_mutex_unlock(&svc->mu);
  pthread_mutex_unlock(&default_mu);
  if (!last) return;
  /* Queue the stop and refuse later posts in one critical section. */
  task_t *t = &svc->stop_mem; /* preallocated: stopping cannot fail for lack of memory */
  t->next = NULL;
  t->fn = stop_task;
  t->arg = NULL;
  pthread_mutex_lock(&svc->mu);
  svc->stopping = 1;
  if (svc->tail) svc->tail->next = t;
  else svc->head = t;
  svc->tail = t;
  uv_async_send(&svc->wake);
  pthread_mutex_unlock(&svc->mu);
  pthread_join(svc->thread, NULL);
  /* Tasks posted after the stop (none should be) are dropped: their owners are gone. */
  while (svc->head) {
    task_t *t = svc->head;
    svc->head = t->next;
    if (t != &svc->stop_mem) free(t);
  }
  pthread_mutex_destroy(&svc->mu);
  pthread_cond_destroy(&svc->cv);
  free(svc);
}

int gn_service_post(gn_service_t *svc, gn_task_fn fn, void *arg) {
  /* In a forked child its mutex may be held by a thread that is gone, and the wake-up would go
   * to the parent's loop (the descriptor is shared). */
  if (gn_service_forked(svc)) return -1;
  task_t *t = malloc(sizeof *t);
  if (!t) return -1;
  t->next = NULL;
  t->fn = fn;
  t->arg = arg;
  pthread_mutex_lock(&svc->mu);
  if (svc->stopping) {
    pthread_mutex_unlock(&svc->mu);
    free(t);
    return -1;
  }
  if (svc->tail) svc->tail->next = t;
  else svc->head = t;
  svc->tail = t;
  /* Sent under the lock: after stop_task is queued the handle is closed only by the loop
   * itself, which cannot happen before this send returns. */
  uv_async_send(&svc->wake);
  pthread_mutex_unlock(&svc->mu);
  return 0;
}

int gn_service_forked(const gn_service_t *svc) { return svc->pid != getpid(); }

pid_t gn_service_pid(const gn_service_t *svc) { return svc->pid; }

int gn_service_on_thread(const gn_service_t *svc) {
  return pthread_equal(pthread_self(), svc->thread);
}

uv_loop_t *gn_service_loop(gn_service_t *svc) { return &svc->loop; }
gn_transport_t *gn_service_transport(gn_service_t *svc) { return svc->transport; }
gn_http_t *gn_service_http(gn_service_t *svc) { return svc->http; }

void gn_service_member_add(gn_service_t *svc, gn_member_t *m) {
  m->next = svc->members.next;
  m->prev = &svc->members;
  svc->members.next->prev = m;
  svc->members.next = m;
}

void gn_service_member_remove(gn_service_t *svc, gn_member_t *m) {
  (void)svc;
  if (!m->next) return;
  m->prev->next = m->next;
  m->next->prev = m->prev;
  m->next = m->prev = NULL;
}

static void poke_task(gn_service_t *svc, void *arg) {
  (void)arg;
  /* A poke may remove its own member (a client failing): walk with a saved next. */
  gn_member_t *m = svc->members.next;
  while (m != &svc->members) {
    gn_member_t *n = m->next;
    m->poke(m);
    m = n;
  }
}

void gn_service_poke(gn_service_t *svc) { gn_service_post(svc, poke_task, NULL); }
