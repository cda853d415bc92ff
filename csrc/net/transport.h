/* transport.h: one WebSocket client connection over TLS (libwebsockets 4.1.6 on the service loop).
 *
 * The host name of the URL is resolved with uv_getaddrinfo (libuv's thread pool) because lws 4.1.6
 * resolves synchronously on the loop; lws then connects to the address with the name kept for SNI
 * and certificate checks. When a TCP connect fails (refused, unreachable) the next resolved
 * address is tried (up to 8, in the resolver's order), all within connect_timeout_ms; a TLS or
 * handshake failure ends the connection. Loop thread only.
 *
 * Callbacks: on_open once when the handshake completes; on_message per complete message
 * (fragments reassembled); on_close exactly once when the connection ends for any reason other
 * than gn_conn_close()/gn_conn_abort() by the owner. After gn_conn_close() or gn_conn_abort() no
 * callback runs but the gone callback of their _then forms; the connection frees itself when lws
 * is done with it.
 */
#ifndef GN_TRANSPORT_H
#define GN_TRANSPORT_H

#include <stddef.h>
#include <uv.h>

#include "proxy.h"
#include "url.h"
#include "verdict.h"

typedef struct gn_transport gn_transport_t;
typedef struct gn_conn gn_conn_t;


typedef struct {
  void (*on_open)(void *ud, gn_conn_t *c);
  void (*on_message)(void *ud, gn_conn_t *c, const char *data, size_t len, int binary);
  void (*on_close)(void *ud, gn_conn_t *c, const gn_close_info_t *info);
} gn_conn_cbs_t;

typedef struct {
  const char *url;          /* wss://host[:port]/path (ws:// when the user allows it) */
  const char *ca_file;      /* NULL: system bundle */
  int verify;
  size_t max_message;       /* bytes; larger messages end the connection (oversize) */
  long connect_timeout_ms;  /* DNS + TCP + TLS */
  long handshake_timeout_ms;/* HTTP upgrade */
  const gn_proxy_t *proxy;  /* NULL or without host: direct (lws's http_proxy ignored); else an
                             * HTTP CONNECT tunnel unless no_proxy exempts the URL's host */
} gn_conn_opts_t;

/* The lws context of one loop (libwebsockets on a foreign libuv loop) and its client vhosts, one
 * per (CA bundle, verify, proxy) triple, created on first use (lws keeps the proxy per vhost;
 * the proxy's name is resolved by us, not by lws's blocking lookup, and the vhost is given the
 * address just before each connect). The vhosts' TLS contexts are ours, not
 * lws's: lws 4.1.6 keeps the index under which it finds its own client SSL_CTX in a process-wide
 * variable that every new lws context overwrites, so an lws context created while another lives
 * would make the older one leak its SSL_CTX (and the CA store, about 700 KB).
 *
 * Teardown takes two calls because lws frees its per-thread state only on a second destroy:
 * gn_transport_stop() inside a loop callback, gn_transport_free() once uv_run() has returned. */

/* Returns a new transport on loop, or NULL and err (lws context creation failed: is the uv
 * event-loop plugin installed?). Loop thread. */
gn_transport_t *gn_transport_new(uv_loop_t *loop, char *err, size_t errlen);
/* Destroys the lws context from inside a loop callback; lws then closes its handles on the
 * loop. Returns nothing. Loop thread. */
void gn_transport_stop(gn_transport_t *t);
/* Completes the teardown after the loop has run dry (second destroy, TLS contexts) and frees t.
 * NULL is allowed. Returns nothing. The thread that ran the loop, after uv_run() returned. */
void gn_transport_free(gn_transport_t *t);

/* Starts connecting; returns the connection, or NULL and err on an immediate failure (bad URL,
 * unusable CA bundle, out of memory), in which case no callback will run. Loop thread. */
gn_conn_t *gn_conn_open(gn_transport_t *t, const gn_conn_opts_t *o, const gn_conn_cbs_t *cbs,
                        void *ud, char *err, size_t errlen);
/* Gives the connection to another owner: every later callback goes to cbs with ud (also when
 * called inside one of c's callbacks: the rest of that read goes to the new owner). A rollover
 * hands its new socket to the channel, and the channel its old one to the rollover. Returns
 * nothing. Loop thread. */
void gn_conn_set_cbs(gn_conn_t *c, const gn_conn_cbs_t *cbs, void *ud);
/* Queues a text message; returns 0, or -1 when the connection is not open. Loop thread. */
int gn_conn_send_text(gn_conn_t *c, const char *text, size_t len);
/* Sends a close frame with code (when open) and ends the connection; no callbacks afterwards.
 * Returns nothing. Loop thread. */
void gn_conn_close(gn_conn_t *c, int code, const char *reason);
/* Called once when a connection its owner closed or aborted is over: the server answered our
 * close frame, or the TCP connection ended (EOF, error, our or lws's close timeout of about
 * 2 s), and the socket is closed. c is only a name then (it is freed right after). */
typedef void (*gn_conn_gone_cb)(void *ud, gn_conn_t *c);
/* gn_conn_close, then gone(ud, c) once the connection is over (see gn_conn_gone_cb): a server
 * counts a socket as connected until it has seen our close, not when we send it. gone may run
 * inside this call (a connection that was not open ends at once). Returns nothing. Loop
 * thread. */
void gn_conn_close_then(gn_conn_t *c, int code, const char *reason, gn_conn_gone_cb gone,
                        void *ud);
/* gn_conn_abort, then gone(ud, c) once the socket is closed (may run inside this call).
 * Returns nothing. Loop thread. */
void gn_conn_abort_then(gn_conn_t *c, gn_conn_gone_cb gone, void *ud);
/* Sets (or, with gone NULL, forgets) the gone callback of c: before gn_conn_close or
 * gn_conn_abort, or after them while the callback set then has not run (c lives until it
 * would): its owner goes away first and forgets it, or hands it to another. Returns nothing.
 * Loop thread. */
void gn_conn_set_gone(gn_conn_t *c, gn_conn_gone_cb gone, void *ud);
/* Returns 1 when the open connection's TLS session was resumed (an abbreviated handshake with a
 * session kept from an earlier connection to the same server name, address and port), else 0.
 * Loop thread. */
int gn_conn_tls_resumed(const gn_conn_t *c);
/* Stops (pause = 1) or resumes (0) reading the socket of an open connection: the kernel's
 * receive buffer fills and TCP pushes back on the server. A message lws had already read may
 * still be delivered after the pause. A no-op for a connection not open. Returns nothing. Loop
 * thread. */
void gn_conn_pause(gn_conn_t *c, int pause);
/* Ends the connection at once (no close frame); no callbacks afterwards. Returns nothing. Loop
 * thread. */
void gn_conn_abort(gn_conn_t *c);

#endif
