/* verdict.h: why a connection ended, as its owner is told (gn_close_info_t), and the pure
 * function that reads a failed connect's facts into it. Any thread (pure). */
#ifndef GN_VERDICT_H
#define GN_VERDICT_H

#include <stddef.h>

typedef struct {
  int was_open;       /* the handshake had completed */
  int code;           /* close code (1006 when none came) */
  char reason[124];   /* peer's close reason, or empty */
  const char *stage;  /* "dns", "connect", "proxy", "tls", "handshake", "open" */
  int http_status;    /* refused handshake: the server's status, else 0 */
  int timed_out;
  int tls;            /* TLS or certificate failure */
  int oversize;       /* a message over max_message */
  int proxy;          /* the proxy failed us (unreachable, refused or dropped the tunnel) */
  int proxy_status;   /* the proxy's answer to CONNECT when it refused the tunnel, else 0 */
  char error[256];    /* human-readable cause (no secrets) */
} gn_close_info_t;

/* What is known when a connection attempt fails before it is open. */
typedef struct {
  const char *msg;      /* the connection layer's words ("proxy not h1", "Timed out ...") */
  const char *log;      /* the latest log line of the connection layer ("" when none) */
  const char *cert;     /* this connection's certificate verdict ("hostname mismatch"), or "" */
  int tls;              /* a wss connection */
  int handshake_started;/* the upgrade request was sent */
  int http_status;      /* the server's answer to the upgrade, else 0 */
  int proxied;          /* through an HTTP CONNECT proxy */
  const char *proxy_hp; /* its "host:port" for messages */
  const char *host;     /* the target's name and port */
  int port;
  int naddr;            /* addresses the name resolved to */
} gn_conn_failure_t;

enum {
  GN_VERDICT_RETRY = 1 /* an address-level failure: the next address may be tried */
};

/* Fills *info (code 1006, stage, the flags and a human-readable error without secrets) from f.
 * Returns a mask of GN_VERDICT_*. */
int gn_close_verdict(const gn_conn_failure_t *f, gn_close_info_t *info);

#endif
