/* url.h: a connectUri from the server taken apart, before any of it reaches a request line or a
 * lookup. Pure functions: any thread. */
#ifndef GN_URL_H
#define GN_URL_H

#include <stddef.h>

/* A connectUri taken apart: host (no brackets for IPv6), port (default 443/80), path ("/" when
 * none), tls (wss). */
typedef struct {
  char *host, *path;
  int port, tls;
} gn_url_t;

/* Reads url (a connectUri from the server) into *u. Returns 0 (free u with gn_url_free), or -1
 * and err naming what is wrong (nothing to free). A pure function of url
 * (fuzz/fuzz_connect_uri.c). Any thread. */
int gn_url_parse(const char *url, gn_url_t *u, char *err, size_t errlen);
/* Frees what u holds. Returns nothing. Any thread. */
void gn_url_free(gn_url_t *u);

#endif
