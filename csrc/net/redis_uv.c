/* redis_uv.c: hiredis' async event hooks on libuv (see redis_uv.h). */
#include "redis_uv.h"

#include <stdlib.h>

typedef struct {
  redisAsyncContext *ac; /* NULL once hiredis cleaned up */
  uv_poll_t poll;
  int events;            /* what hiredis waits for */
} uvev_t;

static void on_poll(uv_poll_t *h, int status, int events) {
  uvev_t *p = h->data;
  /* an error (libuv stops the handle): let hiredis try what it waits for and see the error */
  int ev = status ? p->events : events;
  if (p->ac && (ev & UV_READABLE)) redisAsyncHandleRead(p->ac);
  if (p->ac && (ev & UV_WRITABLE)) redisAsyncHandleWrite(p->ac);
}

static void update(void *pd, int add, int del) {
  uvev_t *p = pd;
  if (!p->ac) return;
  p->events = (p->events | add) & ~del;
  if (p->events) uv_poll_start(&p->poll, p->events, on_poll);
  else uv_poll_stop(&p->poll);
}

static void add_read(void *pd) { update(pd, UV_READABLE, 0); }
static void del_read(void *pd) { update(pd, 0, UV_READABLE); }
static void add_write(void *pd) { update(pd, UV_WRITABLE, 0); }
static void del_write(void *pd) { update(pd, 0, UV_WRITABLE); }

static void on_close(uv_handle_t *h) { free(h->data); }

static void cleanup(void *pd) {
  uvev_t *p = pd;
  p->ac = NULL;
  uv_close((uv_handle_t *)&p->poll, on_close);
}

int gn_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  if (ac->ev.data) return REDIS_ERR;
  uvev_t *p = calloc(1, sizeof *p);
  if (!p) return REDIS_ERR;
  if (uv_poll_init_socket(loop, &p->poll, ac->c.fd) != 0) {
    free(p);
    return REDIS_ERR;
  }
  p->ac = ac;
  p->poll.data = p;
  ac->ev.addRead = add_read;
  ac->ev.delRead = del_read;
  ac->ev.addWrite = add_write;
  ac->ev.delWrite = del_write;
  ac->ev.cleanup = cleanup;
  ac->ev.data = p;
  return REDIS_OK;
}
