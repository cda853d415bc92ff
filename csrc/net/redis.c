/* redis.c: a Redis connection on the libuv loop (see redis.h): name resolution off the loop's
 * thread, Sentinel discovery, TLS, AUTH/SELECT/ROLE before the owner hears "up".
 *
 * hiredis 0.14 and 1.x: both have the same async API for what is used here (redisAsyncConnect;
 * 1.x's redisAsyncConnectWithOptions, timeouts and address preferences are not used, the owner
 * times out and the address is already resolved;
 * the event hooks (redis_uv.c, for 0.14's libuv adapter loses poll errors), connect and
 * disconnect callbacks with a const context);
 * TLS exists only in 1.x (hiredis_ssl: redisInitiateSSL on the async context's redisContext, with
 * an SSL object made here so that the host name is checked, which hiredis' own
 * redisInitiateSSLWithContext does not do). A context freed from inside one of its callbacks is
 * freed by hiredis when the callback returns (both versions). */
#include "redis.h"
#include "redis_uv.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if GN_HIREDIS_SSL
#include <hiredis/hiredis_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#endif

enum { PH_IDLE = 0, PH_RESOLVE, PH_SENTINEL, PH_CONNECT, PH_UP };
enum { KIND_MASTER = 0, KIND_SENTINEL = 1, KIND_WATCH = 2 };

typedef struct resolve resolve_t;

struct gn_redis {
  uv_loop_t *loop;
  const gn_redis_conf_t *conf;
  redisAsyncContext *ac;  /* the server (NULL: none) */
  redisAsyncContext *sac; /* a sentinel being asked */
  redisAsyncContext *pac; /* the sentinel that answered, watched for +switch-master while up */
  char sentinel_ip[64];   /* its address */
  resolve_t *res;         /* a name being resolved */
  int phase;
  int hs_left;            /* handshake answers still awaited (AUTH, SELECT, ROLE / PING) */
  size_t sentinel_i, sentinel_asked;
  gn_redis_addr_t target; /* the address being connected */
  char sentinel_err[200]; /* why the last sentinel did not answer */
  void *ssl[3];           /* the SSL objects of ac, sac, pac (hiredis owns them) */
  int freeing;            /* inside gn_redis_free: no link callback */
  gn_redis_link_fn link;
  void *ud;
};

struct resolve {
  uv_getaddrinfo_t req;
  gn_redis_t *r; /* NULL: abandoned */
  int kind, port;
};

typedef struct {
  gn_redis_reply_fn fn;
  void *ud;
} pending_t;

static void connect_addr(gn_redis_t *r, int kind, const char *ip, int port);
static void ask_sentinel(gn_redis_t *r);
static void on_connect(const redisAsyncContext *cac, int status);
static void on_disconnect(const redisAsyncContext *cac, int status);
#if GN_HIREDIS_SSL
static int start_tls(gn_redis_t *r, int kind, redisAsyncContext *ac, const char *name, char *why,
                     size_t len);
#endif

gn_redis_t *gn_redis_new(uv_loop_t *loop, const gn_redis_conf_t *conf, gn_redis_link_fn link,
                         void *ud) {
  gn_redis_t *r = calloc(1, sizeof *r);
  if (!r) return NULL;
  r->loop = loop;
  r->conf = conf;
  r->link = link;
  r->ud = ud;
  return r;
}

static void report_down(gn_redis_t *r, const char *why) {
  r->phase = PH_IDLE;
  if (!r->freeing && r->link) r->link(r->ud, 0, why);
}

/* Lets go of a context: its callbacks see no owner any more. From inside one of its callbacks
 * hiredis frees it when that returns. */
static void let_go(redisAsyncContext *ac) {
  if (!ac) return;
  ac->data = NULL;
  redisAsyncFree(ac);
}

/* Ends every part of a connection attempt or connection; reports nothing. */
static void end_all(gn_redis_t *r) {
  if (r->res) {
    r->res->r = NULL;
    uv_cancel((uv_req_t *)&r->res->req); /* its callback still runs, and frees it */
    r->res = NULL;
  }
  redisAsyncContext *sac = r->sac, *ac = r->ac, *pac = r->pac;
  r->sac = NULL;
  r->ac = NULL;
  r->pac = NULL;
  r->ssl[0] = r->ssl[1] = r->ssl[2] = NULL;
  let_go(pac);
  let_go(sac);
  let_go(ac); /* pending replies: NULL */
  r->phase = PH_IDLE;
}

/* A failure of the step under way: the next sentinel, or down. */
static void step_failed(gn_redis_t *r, int kind, const char *why) {
  if (kind == KIND_SENTINEL) {
    snprintf(r->sentinel_err, sizeof r->sentinel_err, "%s", why);
    redisAsyncContext *sac = r->sac;
    r->sac = NULL;
    r->ssl[KIND_SENTINEL] = NULL;
    let_go(sac);
    r->sentinel_i = (r->sentinel_i + 1) % r->conf->nsentinels;
    ask_sentinel(r);
    return;
  }
  end_all(r);
  report_down(r, why);
}

/* ---- names ---- */

static void resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *ai) {
  resolve_t *q = req->data;
  gn_redis_t *r = q->r;
  char ip[INET6_ADDRSTRLEN] = "";
  if (r && status == 0 && ai) {
    if (ai->ai_family == AF_INET6)
      uv_ip6_name((const struct sockaddr_in6 *)ai->ai_addr, ip, sizeof ip);
    else
      uv_ip4_name((const struct sockaddr_in *)ai->ai_addr, ip, sizeof ip);
  }
  if (ai) uv_freeaddrinfo(ai);
  int kind = q->kind, port = q->port;
  free(q);
  if (!r) return;
  r->res = NULL;
  if (!ip[0]) {
    char why[160];
    snprintf(why, sizeof why, "resolve: %s", status ? uv_strerror(status) : "no address");
    step_failed(r, kind, why);
    return;
  }
  connect_addr(r, kind, ip, port);
}

static int numeric(const char *host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* Connects to host:port, resolving a name first (uv_getaddrinfo: the thread pool). */
static void resolve_then_connect(gn_redis_t *r, int kind, const char *host, int port) {
  if (numeric(host)) {
    connect_addr(r, kind, host, port);
    return;
  }
  resolve_t *q = calloc(1, sizeof *q);
  if (!q) {
    step_failed(r, kind, "resolve: out of memory");
    return;
  }
  q->r = r;
  q->kind = kind;
  q->port = port;
  q->req.data = q;
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  r->res = q;
  int rc = uv_getaddrinfo(r->loop, &q->req, resolved, host, NULL, &hints);
  if (rc != 0) {
    r->res = NULL;
    free(q);
    char why[160];
    snprintf(why, sizeof why, "resolve: %s", uv_strerror(rc));
    step_failed(r, kind, why);
  }
}

/* ---- the handshake ---- */

static void open_watch(gn_redis_t *r);

static void hs_step_done(gn_redis_t *r) {
  if (--r->hs_left > 0) return;
  r->phase = PH_UP;
  if (r->conf->master) open_watch(r);
  if (r->link) r->link(r->ud, 1, NULL);
}

/* AUTH, SELECT, PING: an error ends the connection with why. */
static void on_hs(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!r || r->ac != ac || !rep) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    char why[200];
    snprintf(why, sizeof why, "%s refused: %.150s", (const char *)pd, rep->str);
    step_failed(r, KIND_MASTER, why);
    return;
  }
  hs_step_done(r);
}

static void on_role(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!r || r->ac != ac || !rep) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 1 ||
      rep->element[0]->type != REDIS_REPLY_STRING || strcmp(rep->element[0]->str, "master") != 0) {
    step_failed(r, KIND_MASTER, "ROLE: the address the sentinels gave is not a master (yet)");
    return;
  }
  hs_step_done(r);
}

static void send_auth(redisAsyncContext *ac, redisCallbackFn *fn, void *pd, const char *user,
                      const char *pass) {
  const char *argv[3] = {"AUTH", user ? user : pass, pass};
  redisAsyncCommandArgv(ac, fn, pd, user ? 3 : 2, argv, NULL);
}

static void handshake(gn_redis_t *r) {
  const gn_redis_conf_t *c = r->conf;
  r->hs_left = 0;
  if (c->password) {
    r->hs_left++;
    send_auth(r->ac, on_hs, (void *)"AUTH", c->user, c->password);
  }
  if (c->db) {
    char db[16];
    snprintf(db, sizeof db, "%d", c->db);
    r->hs_left++;
    redisAsyncCommand(r->ac, on_hs, (void *)"SELECT", "SELECT %s", db);
  }
  if (c->master) {
    r->hs_left++;
    redisAsyncCommand(r->ac, on_role, NULL, "ROLE");
  }
  if (!r->hs_left) {
    r->hs_left++;
    redisAsyncCommand(r->ac, on_hs, (void *)"PING", "PING");
  }
}

/* ---- Sentinel ---- */

static void on_sentinel_auth(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!r || r->sac != ac || !rep) return;
  if (rep->type == REDIS_REPLY_ERROR) {
    char why[200];
    snprintf(why, sizeof why, "sentinel AUTH refused: %.150s", rep->str);
    step_failed(r, KIND_SENTINEL, why);
  }
}

static void on_master_addr(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!r || r->sac != ac || !rep) return;
  if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 2 ||
      rep->element[0]->type != REDIS_REPLY_STRING || rep->element[1]->type != REDIS_REPLY_STRING ||
      rep->element[0]->len >= sizeof r->target.host) {
    char why[200];
    snprintf(why, sizeof why, "sentinel: %.150s", rep->type == REDIS_REPLY_ERROR ? rep->str
                                                  : "does not know the master's name");
    step_failed(r, KIND_SENTINEL, why);
    return;
  }
  snprintf(r->target.host, sizeof r->target.host, "%s", rep->element[0]->str);
  r->target.port = atoi(rep->element[1]->str);
  r->sac = NULL;
  r->ssl[KIND_SENTINEL] = NULL;
  let_go(ac);
  r->phase = PH_CONNECT;
  resolve_then_connect(r, KIND_MASTER, r->target.host, r->target.port);
}

/* A message on +switch-master ("name old-ip old-port new-ip new-port"): the sentinels moved the
 * master; the connection ends and the next one asks them again. The old master may take several
 * seconds to be demoted and keeps taking writes meanwhile: without this, nothing tells us. */
static void on_switch(redisAsyncContext *ac, void *reply, void *pd) {
  gn_redis_t *r = ac->data;
  redisReply *rep = reply;
  if (!r || r->pac != ac || !rep || rep->type != REDIS_REPLY_ARRAY || rep->elements != 3) return;
  redisReply *kind = rep->element[0], *msg = rep->element[2];
  size_t n = strlen(r->conf->master);
  if (kind->type != REDIS_REPLY_STRING || strcmp(kind->str, "message") != 0 ||
      msg->type != REDIS_REPLY_STRING || msg->len <= n || strncmp(msg->str, r->conf->master, n) != 0 ||
      msg->str[n] != ' ')
    return;
  gn_redis_drop(r, "failover: the sentinels switched the master (+switch-master)");
}

/* Best effort: without a watch, a failover is still noticed (the old master's clients are killed
 * when it is demoted, and -READONLY). */
static void open_watch(gn_redis_t *r) {
  const gn_redis_conf_t *c = r->conf;
  if (r->pac || !r->sentinel_ip[0]) return;
  redisAsyncContext *ac = redisAsyncConnect(r->sentinel_ip, c->sentinels[r->sentinel_i].port);
  if (!ac) return;
  if (ac->err || gn_redis_uv_attach(ac, r->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    return;
  }
  ac->data = r;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  r->pac = ac;
#if GN_HIREDIS_SSL
  char why[240];
  if (c->tls && start_tls(r, KIND_WATCH, ac, c->sentinels[r->sentinel_i].host, why, sizeof why)) {
    r->pac = NULL;
    let_go(ac);
    return;
  }
#endif
  if (c->sentinel_password) send_auth(ac, NULL, NULL, c->sentinel_user, c->sentinel_password);
  redisAsyncCommand(ac, on_switch, NULL, "SUBSCRIBE +switch-master");
}

static void ask_sentinel(gn_redis_t *r) {
  if (r->sentinel_asked++ >= r->conf->nsentinels) {
    char why[240];
    snprintf(why, sizeof why, "no sentinel gave the master's address (last: %.190s)", r->sentinel_err);
    end_all(r);
    report_down(r, why);
    return;
  }
  const gn_redis_addr_t *s = &r->conf->sentinels[r->sentinel_i];
  resolve_then_connect(r, KIND_SENTINEL, s->host, s->port);
}

/* ---- connections ---- */

/* Why a connection of kind ended: hiredis' text, or what TLS says (hiredis 1.x reports a failed
 * handshake as an I/O error whose text is errno's). */
static void why_ended(gn_redis_t *r, int kind, const redisAsyncContext *cac, const char *what,
                      int ok, char *why, size_t len) {
  const char *detail = ok ? "closed" : cac->errstr[0] ? cac->errstr : "error";
#if GN_HIREDIS_SSL
  char tls[160] = "";
  SSL *ssl = r->ssl[kind];
  if (ssl && !ok) {
    long v = SSL_get_verify_result(ssl);
    unsigned long e = ERR_peek_last_error();
    if (v != X509_V_OK)
      snprintf(tls, sizeof tls, "TLS: certificate verify failed: %s", X509_verify_cert_error_string(v));
    else if (e)
      snprintf(tls, sizeof tls, "TLS: %s", ERR_reason_error_string(e) ? ERR_reason_error_string(e)
                                                                      : "handshake failed");
    ERR_clear_error();
    if (tls[0]) detail = tls;
  }
#endif
  const gn_redis_addr_t *at = kind ? &r->conf->sentinels[r->sentinel_i] : &r->target;
  int v6 = strchr(at->host, ':') != NULL;
  snprintf(why, len, "%s%s %s%.64s%s:%d: %s", kind ? "sentinel " : "", what, v6 ? "[" : "",
           at->host, v6 ? "]" : "", at->port, detail);
}

static void on_connect(const redisAsyncContext *cac, int status) {
  gn_redis_t *r = cac->data;
  if (r && r->pac == cac) { /* the watch: given up quietly */
    if (status != REDIS_OK) r->pac = NULL, r->ssl[KIND_WATCH] = NULL;
    return;
  }
  if (!r || (r->ac != cac && r->sac != cac)) return;
  int kind = r->sac == cac ? KIND_SENTINEL : KIND_MASTER;
  if (status != REDIS_OK) {
    char why[240];
    why_ended(r, kind, cac, "connect", 0, why, sizeof why);
    /* hiredis frees it after this callback */
    if (kind) r->sac = NULL;
    else r->ac = NULL;
    r->ssl[kind] = NULL;
    step_failed(r, kind, why);
  }
  /* up once the handshake's answers came */
}

static void on_disconnect(const redisAsyncContext *cac, int status) {
  gn_redis_t *r = cac->data;
  if (r && r->pac == cac) {
    r->pac = NULL;
    r->ssl[KIND_WATCH] = NULL;
    return;
  }
  if (!r || (r->ac != cac && r->sac != cac)) return; /* a context we let go of */
  int kind = r->sac == cac ? KIND_SENTINEL : KIND_MASTER;
  char why[240];
  why_ended(r, kind, cac, r->phase == PH_UP && !kind ? "connection lost" : "connect",
            status == REDIS_OK, why, sizeof why);
  if (kind) r->sac = NULL;
  else r->ac = NULL;
  r->ssl[kind] = NULL;
  step_failed(r, kind, why);
}

#if GN_HIREDIS_SSL
/* TLS on ac: SNI (for a name) and the certificate checked against name. Returns 0 or -1. */
static int start_tls(gn_redis_t *r, int kind, redisAsyncContext *ac, const char *name, char *why,
                     size_t len) {
  SSL *ssl = SSL_new(r->conf->ssl_ctx);
  if (!ssl) return -1;
  int ok;
  if (numeric(name)) {
    ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name) == 1;
  } else {
    ok = SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
  }
  if (!ok || redisInitiateSSL(&ac->c, ssl) != REDIS_OK) {
    r->ssl[kind] = ssl; /* for why_ended */
    why_ended(r, kind, ac, "connect", 0, why, len);
    r->ssl[kind] = NULL;
    SSL_free(ssl); /* not taken by hiredis on failure */
    return -1;
  }
  r->ssl[kind] = ssl;
  return 0;
}
#endif

static void connect_addr(gn_redis_t *r, int kind, const char *ip, int port) {
  redisAsyncContext *ac = redisAsyncConnect(ip, port);
  char why[240];
  if (!ac) {
    step_failed(r, kind, "connect: out of memory");
    return;
  }
  if (ac->err) {
    why_ended(r, kind, ac, "connect", 0, why, sizeof why);
    redisAsyncFree(ac);
    step_failed(r, kind, why);
    return;
  }
  if (gn_redis_uv_attach(ac, r->loop) != REDIS_OK) {
    redisAsyncFree(ac);
    step_failed(r, kind, "connect: could not attach to the loop");
    return;
  }
  ac->data = r;
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  if (kind) {
    r->sac = ac;
    snprintf(r->sentinel_ip, sizeof r->sentinel_ip, "%s", ip);
  } else {
    r->ac = ac;
  }
  if (r->conf->tls) {
#if GN_HIREDIS_SSL
    const char *name = kind ? r->conf->sentinels[r->sentinel_i].host
                            : r->conf->server_name ? r->conf->server_name : r->target.host;
    if (start_tls(r, kind, ac, name, why, sizeof why) != 0) {
      step_failed(r, kind, why);
      return;
    }
#endif
  }
  if (kind) {
    const gn_redis_conf_t *c = r->conf;
    if (c->sentinel_password)
      send_auth(ac, on_sentinel_auth, NULL, c->sentinel_user, c->sentinel_password);
    redisAsyncCommand(ac, on_master_addr, NULL, "SENTINEL get-master-addr-by-name %s", c->master);
  } else {
    handshake(r);
  }
}

int gn_redis_connect(gn_redis_t *r) {
  if (r->phase != PH_IDLE) return 0;
  if (r->conf->master) {
    r->phase = PH_SENTINEL;
    r->sentinel_asked = 0;
    r->sentinel_err[0] = 0;
    ask_sentinel(r);
  } else {
    r->phase = PH_RESOLVE;
    r->target = r->conf->addr;
    resolve_then_connect(r, KIND_MASTER, r->target.host, r->target.port);
  }
  return r->phase == PH_IDLE ? -1 : 0;
}

int gn_redis_up(const gn_redis_t *r) { return r->phase == PH_UP && r->ac; }
int gn_redis_busy(const gn_redis_t *r) { return r->phase != PH_IDLE; }

/* An answer that says this connection can no longer serve: a master demoted to a replica (a
 * failover) or a server that wants a new AUTH. */
static const char *ends_connection(const redisReply *rep) {
  if (!rep || rep->type != REDIS_REPLY_ERROR || !rep->str) return NULL;
  if (strncmp(rep->str, "READONLY", 8) == 0) return "READONLY: the server is a replica now";
  if (strncmp(rep->str, "NOAUTH", 6) == 0) return "NOAUTH: the server wants a password";
  return NULL;
}

static void on_reply(redisAsyncContext *ac, void *reply, void *pd) {
  pending_t *p = pd;
  gn_redis_reply_fn fn = p->fn;
  void *ud = p->ud;
  free(p);
  const char *end = ends_connection(reply);
  char why[80] = "";
  if (end) snprintf(why, sizeof why, "%s", end);
  fn(ud, reply);
  gn_redis_t *r = ac->data;
  if (why[0] && r && r->ac == ac) gn_redis_drop(r, why); /* freed when this callback returns */
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
  if (r->phase == PH_IDLE) return;
  if (r->phase == PH_SENTINEL) /* one that does not answer: the next one first next time */
    r->sentinel_i = (r->sentinel_i + 1) % r->conf->nsentinels;
  end_all(r);
  report_down(r, why);
}

void gn_redis_free(gn_redis_t *r) {
  if (!r) return;
  r->freeing = 1;
  gn_redis_drop(r, "closed");
  free(r);
}
