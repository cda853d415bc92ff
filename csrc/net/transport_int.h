/* transport_int.h: what the files of one transport share (not a public interface).
 *
 * transport.c   the connection's lifecycle: lookup, timers, open/close/pause/abort, the context
 * lwsws.c       libwebsockets' WebSocket client: the connect call and the protocol callback
 * verdict.c     why a connection failed, from the facts lws gives (pure, spec/c/test_verdict.c)
 * probe.c       why the proxy refused the tunnel (asked again on a connection of ours)
 * tlsctx.c      our TLS contexts per (CA bundle, verify, proxy), and session resumption
 * url.c         a connectUri taken apart
 * Loop thread only, like transport.h.
 */
#ifndef GN_TRANSPORT_INT_H
#define GN_TRANSPORT_INT_H

#include "transport.h"
#include "gn_util.h"

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

typedef struct probe probe_t;

struct gn_conn {
  gn_transport_t *t;
  probe_t *probe;     /* asking the proxy why it refused the tunnel (see gn_tr_probe_start) */
  gn_conn_cbs_t cbs;
  void *ud;
  int state;
  int detached;      /* owner closed or aborted, or on_close delivered: no more callbacks */
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
  gn_buf_t rx;
  int rx_binary, rx_discard;
  gn_buf_t tx;        /* pending text messages, each prefixed by a 4-byte length */
  size_t tx_off;
  int close_pending;  /* send a close frame at the next writeable */
  int close_code;
  char close_reason[124];
  int peer_code;
  char peer_reason[124];
  int http_status;
  int paused;         /* reading is off (gn_conn_pause) */
  int tls_resumed;    /* the TLS session was resumed (no full handshake) */
};

/* The thread's latest lws error or warning line (transport.c captures lws's log). */
extern _Thread_local char gn_tr_last_log[512];

/* transport.c */
/* Frees c once nothing refers to it any more (detached, no lookup, no wsi, no probe). */
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

/* lwsws.c */
extern const struct lws_protocols gn_tr_protocols[];
/* Starts lws's connection to ip (the target's address, or the proxy's). Returns 0, or -1 when c
 * failed (delivered). */
int gn_tr_start_lws(gn_conn_t *c, const char *ip);

/* probe.c */
/* Asks the proxy at ip why it refused c's tunnel, then delivers info with its status. Returns 0,
 * or -1 when it cannot start (info is the caller's to deliver). */
int gn_tr_probe_start(gn_conn_t *c, const char *ip, const gn_close_info_t *info);
/* Stops a probe whose answer is no longer wanted. */
void gn_tr_probe_cancel(gn_conn_t *c);
/* Overwrites n bytes at p (a secret) in a way the compiler keeps. */
void gn_tr_wipe(char *p, size_t n);

/* tlsctx.c */
/* The vhost for a CA bundle (NULL: the system's), verification setting and proxy, created on
 * first use; NULL and err when the bundle cannot be loaded. */
struct lws_vhost *gn_tr_vhost_for(gn_transport_t *t, const char *ca_file, int verify,
                                  const char *proxy, char *err, size_t errlen);
/* Frees every vhost entry's TLS context and sessions (after the lws context is gone). */
void gn_tr_vhosts_free(gn_transport_t *t);

#endif
