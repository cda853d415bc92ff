/* proxy.h: an HTTP proxy (HTTP CONNECT tunnels) for the REST calls and the WebSocket, and the
 * NO_PROXY rule both use, so curl and libwebsockets agree on which hosts bypass it.
 *
 * The Lua front module reads `proxy` (or HTTPS_PROXY/https_proxy) and NO_PROXY/no_proxy and
 * hands the parts over; curl's and lws's own environment reading is overridden (http.c and
 * transport.c set the proxy explicitly, also when there is none). The password is a secret:
 * never in a message, wiped on free. Pure functions and plain data: any thread.
 */
#ifndef GN_PROXY_H
#define GN_PROXY_H

#include <stddef.h>

typedef struct {
  char *host;      /* NULL: no proxy. A name or an address (IPv6 without brackets) */
  int port;
  char *user, *pass; /* Basic credentials (decoded), or NULL */
  char *no_proxy;  /* NO_PROXY list, or NULL */
} gn_proxy_t;

/* Copies src into dst (all strings owned). Returns 0, or -1 when out of memory (dst is then
 * empty). */
int gn_proxy_copy(gn_proxy_t *dst, const gn_proxy_t *src);
/* Frees p's strings (the password wiped first) and empties it. */
void gn_proxy_free(gn_proxy_t *p);
/* Returns 1 when a and b are the same proxy setting, else 0. */
int gn_proxy_same(const gn_proxy_t *a, const gn_proxy_t *b);

/* Returns 1 when a connection to host:port bypasses the proxy under no_proxy (curl's rule:
 * entries separated by commas or blanks; "*" alone matches every host; an entry matches the
 * host itself and every name ending in "." + entry, a leading dot ignored, case-insensitive;
 * an entry "name:port" only that port; IPv6 literals with or without brackets), else 0. A NULL
 * or empty list bypasses nothing. */
int gn_proxy_bypass(const char *no_proxy, const char *host, int port);

/* Returns the proxy to use for host:port: p when it has a host and no_proxy does not exempt
 * host:port, else NULL. */
const gn_proxy_t *gn_proxy_for(const gn_proxy_t *p, const char *host, int port);

/* Writes "host:port" (IPv6 in brackets) of p into out. Returns nothing. */
void gn_proxy_hostport(const gn_proxy_t *p, char *out, size_t outlen);

#endif
