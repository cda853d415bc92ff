/* redis.c: a Redis connection on the libuv loop (see redis.h). */
#include "redis.h"

#include <hiredis/adapters/libuv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct gn_redis {
  uv_loop_t *loop;
  gn_redis_url_t url;
  redisAsyncContext *ac; /* NULL: no connection */
  int up;
  int freeing;           /* inside gn_redis_free: no link callback */
  gn_redis_link_fn link;
  void *ud;
};

typedef struct {
  gn_redis_reply_fn fn;
  void *ud;
} pending_t;

int gn_redis_url_parse(const char *url, gn_redis_url_t *out, char *err, size_t errlen) {
  memset(out, 0, sizeof *out);
  out->port = 6379;
  if (!url || strncmp(url, "redis://", 8) != 0) {
    snprintf(err, errlen, "url: expected redis://host[:port][/db]");
    return -1;
  }
  const char *h = url + 8, *e = h;
  if (strchr(h, '@')) {
    snprintf(err, errlen, "url: expected redis://host[:port][/db] without credentials");
    return -1;
  }
  while (*e && *e != ':' && *e != '/') e++;
  if (e == h || (size_t)(e - h) >= sizeof out->host) {
    snprintf(err, errlen, "url: expected redis://host[:port][/db] with a host name");
    return -1;
  }
  memcpy(out->host, h, (size_t)(e - h));
  if (*e == ':') {
    char *end;
    long p = strtol(e + 1, &end, 10);
    if (end == e + 1 || p < 1 || p > 65535) {
      snprintf(err, errlen, "url: expected a port from 1 to 65535 after the host");
      return -1;
    }
    out->port = (int)p;
    e = end;
  }
  if (*e == '/') {
    if (e[1]) {
      char *end;
      long d = strtol(e + 1, &end, 10);
      if (end == e + 1 || *end || d < 0 || d > 65535) {
        snprintf(err, errlen, "url: expected a database number after the '/'");
        return -1;
      }
      out->db = (int)d;
    }
  } else if (*e) {
    snprintf(err, errlen, "url: expected redis://host[:port][/db]");
    return -1;
  }
  return 0;
}

gn_redis_t *gn_redis_new(uv_loop_t *loop, const gn_redis_url_t *url, gn_redis_link_fn link,
                         void *ud) {
  gn_redis_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = loop;
  r->url = *url;
  r->link = link;
  r->ud = ud;
  return r;
}

static void report_down(gn_redis_t *r, const char *why) {
  r->up = 0;
  if (!r->freeing && r->link) r->link(r->ud, 0, why);
}

static void on_select(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = pd;
  redisReply *rep = reply;
  if (!rep || r->ac != ac) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    gn_redis_drop(r, "SELECT refused");
    return;
  }
  r->up = 1;
  if (r->link) r->link(r->ud, 1, NULL);
}

static void on_connect(const redisAsyncContext *ac, int status) {
  gn_redis_t *r = ac->data;
  if (!r || r->ac != ac) return;
  if (status != REDIS_OK) {
    char why[160];
    snprintf(why, sizeof why, "connect: %s", ac->errstr[0] ? ac->errstr : "failed");
    r->ac = NULL; /* hiredis frees it after this callback */
    report_down(r, why);
    return;
  }
  if (r->url.db == 0) {
    r->up = 1;
    if (r->link) r->link(r->ud, 1, NULL);
    return;
  }
  /* no SELECT reply yet: not up */
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  gn_redis_t *r = ac->data;
  if (!r || r->ac != ac) return; /* a context we dropped ourselves */
  char why[160];
  snprintf(why, sizeof why, "connection lost: %s",
           status == REDIS_OK ? "closed" : ac->errstr[0] ? ac->errstr : "error");
  r->ac = NULL;
  report_down(r, why);
}

int gn_redis_connect(gn_redis_t *r) {
  if (r->ac) return 0;
  redisAsyncContext *ac = redisAsyncConnect(r->url.host, r->url.port);
  if (!ac) {
    report_down(r, "connect: out of memory");
    return -1;
  }
  if (ac->err) {
    char why[160];
    snprintf(why, sizeof why, "connect: %s", ac->errstr);
    redisAsyncFree(ac);
    report_down(r, why);
    return -1;
  }
  ac->data = r;
  if (redisLibuvAttach(ac, r->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    report_down(r, "connect: could not attach to the loop");
    return -1;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  r->ac = ac;
  if (r->url.db != 0) {
    char db[16];
    snprintf(db, sizeof db, "%d", r->url.db);
    redisAsyncCommand(ac, on_select, r, "SELECT %s", db);
  }
  return 0;
}

int gn_redis_up(const gn_redis_t *r) { return r->ac && r->up; }
int gn_redis_busy(const gn_redis_t *r) { return r->ac != NULL; }

static void on_reply(redisAsyncContext *ac, void *reply, void *pd) {
  pending_t *p = pd;
  gn_redis_reply_fn fn = p->fn;
  void *ud = p->ud;
  free(p);
  fn(ud, reply);
}

int gn_redis_cmd(gn_redis_t *r, gn_redis_reply_fn fn, void *ud, int argc, const char **argv,
                 const size_t *lens) {
  if (!gn_redis_up(r)) return -1;
  pending_t *p = malloc(sizeof *p);
  if (!p) return -1;
  p->fn = fn;
  p->ud = ud;
  if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, lens) != REDIS_OK) {
    free(p);
    return -1;
  }
  return 0;
}

void gn_redis_flush(gn_redis_t *r) {
  if (gn_redis_up(r)) redisAsyncHandleWrite(r->ac);
}

void gn_redis_drop(gn_redis_t *r, const char *why) {
  redisAsyncContext *ac = r->ac;
  if (!ac) return;
  r->ac = NULL;
  r->up = 0;
  redisAsyncFree(ac); /* pending replies: NULL; our disconnect callback ignores it (r->ac) */
  report_down(r, why);
}

void gn_redis_free(gn_redis_t *r) {
  if (!r) return;
  r->freeing = 1;
  gn_redis_drop(r, "closed");
  free(r);
}
