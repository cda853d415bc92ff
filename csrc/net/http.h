/* http.h: non-blocking HTTPS requests on the service loop (libcurl multi_socket on libuv).
 *
 * Everything here runs on the loop thread of the gn_http_t. A request's callback runs exactly
 * once, on the loop, unless the request is cancelled first; after gn_http_cancel() returns the
 * callback never runs. Request and response bodies may carry secrets (credentials, tokens): they
 * are never logged, and the request body is wiped before it is freed.
 */
#ifndef GN_HTTP_H
#define GN_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "proxy.h"

typedef struct gn_http gn_http_t;
typedef struct gn_http_req gn_http_req_t;

typedef struct {
  long status;              /* HTTP status, 0 when no response came (see error) */
  const char *body;         /* response body (NUL-terminated), never NULL */
  size_t body_len;
  double retry_after_ms;    /* from Retry-After (seconds or HTTP date); < 0 when absent */
  const char *error;        /* transport failure (curl's message), NULL when a response came */
  int tls_error;            /* 1 when error is a certificate or TLS failure */
  int timed_out;            /* 1 when error is a timeout */
  double elapsed_ms;
  int proxy;                /* 1 when error is the proxy's: unreachable, or refused the tunnel */
  long proxy_status;        /* the proxy's answer to CONNECT when it refused it, else 0 */
} gn_http_result_t;

typedef void (*gn_http_cb)(void *ud, const gn_http_result_t *res);

typedef struct {
  const char *method;       /* "GET", "POST", "PUT", "HEAD", "DELETE" */
  const char *url;
  const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
  const char *body;         /* or NULL */
  size_t body_len;
  long timeout_ms;          /* whole request */
  long connect_timeout_ms;
  const char *ca_file;      /* NULL: system bundle */
  int verify;               /* TLS peer and host verification (1 unless the user said no) */
  size_t max_body;          /* responses above this fail (protects the loop) */
  const gn_proxy_t *proxy;  /* NULL or without host: direct (curl's environment ignored);
                             * else a CONNECT tunnel unless no_proxy exempts the URL's host */
} gn_http_opts_t;

/* Creates an engine on loop. Returns it, or NULL and err (curl's global initialisation failed, or
 * out of memory). The thread that runs loop (the service thread), since it sets up a uv timer on
 * the loop. */
gn_http_t *gn_http_new(uv_loop_t *loop, char *err, size_t errlen);
/* Cancels every request (no callbacks) and frees the engine; its uv handles close on the loop.
 * NULL is a no-op. Returns nothing. Loop thread of h. */
void gn_http_shutdown(gn_http_t *h);

/* Starts a request. Returns its handle, valid until its callback is called or it is cancelled,
 * or NULL and err on failure (then cb never runs). Loop thread of h; cb runs there too. */
gn_http_req_t *gn_http_start(gn_http_t *h, const gn_http_opts_t *o, gn_http_cb cb, void *ud,
                             char *err, size_t errlen);
/* Cancels r and frees it: its callback never runs. NULL is a no-op. Returns nothing. Loop thread
 * of r's gn_http_t, and only before r's callback is called (r is freed just before that call). */
void gn_http_cancel(gn_http_req_t *r);

/* Reads a Retry-After header value (len bytes, not NUL-terminated, surrounding blanks and the
 * line end allowed) at wall-clock time now_wall_ms. Returns the delay it asks for in ms, or -1
 * when the value is not one. A pure function (fuzz/fuzz_retry_after.c). Any thread. */
double gn_http_retry_after_ms(const char *value, size_t len, double now_wall_ms);

/* Returns the number of requests started by this engine (for tests and metrics). Loop thread of
 * h: the count is a plain counter written there. */
unsigned long gn_http_started(const gn_http_t *h);

#endif
