/* transport_int.h: what the files of one transport share (not a public interface).
 *
 * transport.c   the connection's lifecycle: lookup, timers, open/close/pause/abort, the context
 * rawws.c       the connection: an lws RAW client, the upgrade and frames (core/wsupgrade.c,
 *               core/wsframe.c) over it
 * tlsmem.c      our TLS over memory BIOs on that connection
 * vhost.c       the vhost a connection goes out on (TLS context, proxy); the protocol table
 * verdict.c     why a connection failed, from the facts lws gives (pure, spec/c/test_verdict.c)
 * tlsctx.c      our TLS contexts per (CA bundle, verify, proxy), and session resumption
 * url.c         a connectUri taken apart
 * Loop thread only, like transport.h.
 */
#ifndef GN_TRANSPORT_INT_H
#define GN_TRANSPORT_INT_H

#include "transport.h"
#include "gn_util.h"
#include "wsframe.h"

#include <arpa/inet.h>
#include <libwebsockets.h>
#include <openssl/ssl.h>

/* C_NEXT: a TCP connect failed and the next resolved address is about to be tried. */
enum { C_RESOLVING = 1, C_CONNECTING, C_NEXT, C_OPEN, C_DONE };

#define MAX_ADDRS 8 /* resolved addresses tried in turn, in the resolver's order */

/* TLS sessions kept for resumption, per vhost (so per CA bundle, verify setting and proxy),
 * keyed by the server name (SNI, the name the certificate was checked against) and the peer's
 * address and port: a session is offered only to the same host, port and name. */
#define SESS_SLOTS 8
typedef struct {
  char key[INET6_ADDRSTRLEN + 300];
  SSL_SESSION *sess;
} sess_slot_t;

typedef struct vhost_ent {
  struct vhost_ent *next;
  sess_slot_t sess[SESS_SLOTS];
  int sess_next;     /* the slot a new key takes (round robin) */
  char *ca_file;     /* "" for the system's bundle */
  int verify;
  char *proxy;       /* "[user:pass@]name:port" of the proxy, "" for none (wiped); lws is given
                      * the address to use before each connect */
  struct lws_vhost *vh;
  SSL_CTX *ssl_ctx;  /* ours: freed after the lws context (see transport.h) */
} vhost_ent_t;

struct gn_transport {
  uv_loop_t *loop;
  struct lws_context *lws;
  vhost_ent_t *vhosts;
  int vhost_seq;
};

/* A connection's own state (rawws.c, tlsmem.c): lws carries its bytes (a RAW connection), we
 * do TLS, the upgrade and the frames. */
typedef struct gn_raw {
  SSL *ssl;           /* our TLS over memory BIOs (wss), else NULL */
  BIO *rbio, *wbio;   /* network -> SSL, SSL -> network */
  int up;             /* lws said the socket is connected, or bytes came */
  int tls_up;         /* the TLS handshake is done */
  int proxy_wait;     /* reading the proxy's answer to CONNECT */
  int upgraded;       /* the server accepted the upgrade */
  char key[25];       /* our Sec-WebSocket-Key */
  char peer[INET6_ADDRSTRLEN + 300]; /* "name|address|port": the TLS session's key */
  gn_buf_t in;        /* the proxy's or the server's answer read so far */
  gn_wsf_t wsf;       /* the frame reader */
  gn_buf_t out;       /* bytes for the socket after LWS_PRE bytes of room */
  gn_buf_t held;      /* ws:// plaintext a pause left unread (wss leaves it in rbio) */
  int close_sent;     /* our close frame is queued */
  int end;            /* end the socket once out is written */
} gn_raw_t;

struct gn_conn {
  gn_transport_t *t;
  gn_conn_cbs_t cbs;
  void *ud;
  int state;
  int detached;      /* owner closed or aborted, or on_close delivered: no more callbacks */
  gn_conn_gone_cb gone; /* the owner's close is over (gn_conn_close_then): called at the free */
  void *gone_ud;
  int gai_pending;
  int in_connect;    /* inside lws_client_connect_via_info or a synchronous kill: lws may
                      * close us there */
  uv_getaddrinfo_t *gai;
  uv_timer_t *timer;
  uint64_t deadline;  /* loop time when connect_timeout_ms is up, over every address */
  char addrs[MAX_ADDRS][INET6_ADDRSTRLEN];
  int naddr, next_addr;
  struct lws *wsi;
  char *host, *path;
  int port, tls;
  char *ca_file;
  int verify;
  gn_proxy_t proxy;   /* the proxy this connection goes through (host NULL: direct) */
  char proxy_hp[280]; /* its "host:port" for messages */
  size_t max_message;
  long connect_timeout_ms, handshake_timeout_ms;
  int handshake_started;
  int peer_code;
  char peer_reason[124];
  int http_status;
  int paused;         /* reading is off (gn_conn_pause) */
  int rx_hold;        /* a pause was asked: no further frames are read */
  int tls_resumed;    /* the TLS session was resumed (no full handshake) */
  gn_raw_t *raw;      /* the connection's own state (made by the first connect) */
};

/* The thread's latest lws error or warning line (transport.c captures lws's log). */
extern _Thread_local char gn_tr_last_log[512];

/* transport.c */
/* Frees c once nothing refers to it any more (detached, no lookup, no wsi), its gone
 * callback called first. */
void gn_tr_conn_maybe_free(gn_conn_t *c);
/* Asks lws to end c's wsi (asynchronously). */
void gn_tr_kill_wsi(gn_conn_t *c);
/* Delivers on_close once, then the connection is detached. */
void gn_tr_deliver_close(gn_conn_t *c, gn_close_info_t *info);
/* Delivers a failure (code 1006) at stage with the message fmt (one %s: a). */
void gn_tr_fail(gn_conn_t *c, const char *stage, int timed_out, const char *fmt, const char *a);
/* The connect/handshake deadline's timer callback. */
void gn_tr_timer_cb(uv_timer_t *t);
/* Schedules the next resolved address after a failed TCP connect: 1, or 0 when none is left. */
int gn_tr_try_next_addr(gn_conn_t *c);

/* vhost.c */
extern const struct lws_protocols gn_tr_protocols[];
/* "[user:pass@]host:port" (IPv6 in brackets) of c's proxy at host, as lws_set_proxy takes it. */
void gn_tr_proxy_spec(const gn_conn_t *c, const char *host, char *out, size_t outlen);
/* Overwrites n bytes at p (a secret) in a way the compiler keeps. */
void gn_tr_wipe(char *p, size_t n);
/* The vhost for c's connection to ip (the target's address, or the proxy's), its proxy set (the
 * spec wiped after, since it may hold a password). Returns it, or NULL once the failure has
 * been reported (proxy refused: gn_tr_fail; no TLS context: a close with stage "tls"). */
struct lws_vhost *gn_tr_vhost_ready(gn_conn_t *c, const char *ip);

/* Room for n more bytes at the end of r->out, whose first LWS_PRE bytes are lws's (lws_write
 * wants them in front). Returns where to write them (then add n to r->out.len), or NULL. */
static inline char *gn_tr_out_room(gn_raw_t *r, size_t n) {
  size_t base = r->out.len < LWS_PRE ? LWS_PRE : r->out.len;
  if (r->out.cap < base + n + 1) {
    size_t want = r->out.cap ? r->out.cap : 1024;
    while (want < base + n + 1) want *= 2;
    char *np = realloc(r->out.p, want);
    if (!np) return NULL;
    r->out.p = np;
    r->out.cap = want;
  }
  r->out.len = base;
  return r->out.p + base;
}

/* rawws.c: the connection */
/* The RAW protocol's callback ("gn-raw", the only one in gn_tr_protocols). */
int gn_tr_raw_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len);
/* Starts a RAW connection to ip (the target's, or the proxy's). Returns 0, or -1 when c failed
 * (delivered). */
int gn_tr_start_raw(gn_conn_t *c, const char *ip);
/* After a pause: the frames a pause left unread (c->rx_hold) are read now. Returns nothing.
 * Loop thread, outside lws's callbacks. */
void gn_tr_raw_resume(gn_conn_t *c);
/* Queues a text message on an open connection. Returns 0, or -1. */
int gn_tr_raw_send_text(gn_conn_t *c, const char *text, size_t len);
/* Sends a close frame (open) and ends the connection once the server answers (or 2 s pass). */
void gn_tr_raw_close(gn_conn_t *c, int code, const char *reason);
/* Frees c's own state (c->raw). */
void gn_tr_raw_free(gn_conn_t *c);

/* tlsmem.c: our TLS over memory BIOs on the connection */
/* Starts TLS for c (SNI and host name check from c->host, never the address; the session kept
 * for c->host at ip and c->port offered). Returns 0, or -1 and err. */
int gn_tr_tls_begin(gn_conn_t *c, SSL_CTX *ctx, const char *ip, char *err, size_t errlen);
/* Feeds bytes read from the socket. Returns 0, or -1 when out of memory. */
int gn_tr_tls_in(gn_conn_t *c, const void *in, size_t len);
/* Advances the handshake. Returns 1 when done, 0 when it needs more bytes, -1 and err (the
 * connection's own certificate verdict first) when it failed. */
int gn_tr_tls_handshake(gn_conn_t *c, char *err, size_t errlen);
/* Reads plaintext into buf. Returns the bytes read, 0 when none is there yet, -1 when the
 * peer's close_notify came or TLS failed. */
int gn_tr_tls_read(gn_conn_t *c, void *buf, size_t cap);
/* Encrypts len bytes for the socket (into c->raw->out). Returns 0, or -1. */
int gn_tr_tls_write(gn_conn_t *c, const void *data, size_t len);
/* Queues our close_notify. Returns nothing. */
void gn_tr_tls_close_notify(gn_conn_t *c);
/* Moves what TLS wrote (records, alerts, tickets' acks) into c->raw->out. Returns 0, or -1. */
int gn_tr_tls_flush(gn_conn_t *c);
/* Frees c's TLS state. */
void gn_tr_tls_free(gn_conn_t *c);

/* tlsctx.c */
/* The vhost for a CA bundle (NULL: the system's), verification setting and proxy, created on
 * first use; NULL and err when the bundle cannot be loaded. */
struct lws_vhost *gn_tr_vhost_for(gn_transport_t *t, const char *ca_file, int verify,
                                  const char *proxy, SSL_CTX **ssl_ctx, char *err,
                                  size_t errlen);
/* Gives an SSL object of our own (no socket: memory BIOs) the "name|address|port" key its
 * session is kept and offered under; key must outlive ssl. Returns 0, or -1. */
int gn_tr_tls_set_peer(SSL *ssl, const char *key);
/* Frees every vhost entry's TLS context and sessions (after the lws context is gone). */
void gn_tr_vhosts_free(gn_transport_t *t);

#endif
