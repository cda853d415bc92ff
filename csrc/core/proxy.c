/* proxy.c: the proxy setting and the NO_PROXY rule (see proxy.h). */
#include "proxy.h"
#include "gn_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int gn_proxy_copy(gn_proxy_t *dst, const gn_proxy_t *src) {
  memset(dst, 0, sizeof *dst);
  if (!src) return 0;
  dst->port = src->port;
  if ((src->host && !(dst->host = gn_strdup(src->host))) ||
      (src->user && !(dst->user = gn_strdup(src->user))) ||
      (src->pass && !(dst->pass = gn_strdup(src->pass))) ||
      (src->no_proxy && !(dst->no_proxy = gn_strdup(src->no_proxy)))) {
    gn_proxy_free(dst);
    return -1;
  }
  return 0;
}

void gn_proxy_free(gn_proxy_t *p) {
  free(p->host);
  free(p->user);
  gn_free_secret(p->pass);
  free(p->no_proxy);
  memset(p, 0, sizeof *p);
}

static int same_str(const char *a, const char *b) {
  return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int gn_proxy_same(const gn_proxy_t *a, const gn_proxy_t *b) {
  return same_str(a->host, b->host) && a->port == b->port && same_str(a->user, b->user) &&
         same_str(a->pass, b->pass) && same_str(a->no_proxy, b->no_proxy);
}

/* One entry (len bytes at e) against host (no brackets, no trailing dot) and port. */
static int entry_matches(const char *e, size_t len, const char *host, size_t hl, int port) {
  if (len == 1 && e[0] == '*') return 1;
  /* a port: "name:port", "[v6]:port"; a bare IPv6 literal has several colons and no port */
  const char *colon = NULL;
  if (e[0] == '[') {
    const char *rb = memchr(e, ']', len);
    if (!rb) return 0;
    if ((size_t)(rb - e) + 1 < len) {
      if (rb[1] != ':') return 0;
      colon = rb + 1;
    }
    if (colon) {
      int p = atoi(colon + 1);
      if (p != port) return 0;
    }
    e++;
    len = (size_t)(rb - e);
  } else {
    const char *c1 = memchr(e, ':', len);
    if (c1 && !memchr(c1 + 1, ':', len - (size_t)(c1 + 1 - e))) {
      char num[8];
      size_t nl = len - (size_t)(c1 + 1 - e);
      if (nl == 0 || nl >= sizeof num) return 0;
      memcpy(num, c1 + 1, nl);
      num[nl] = 0;
      if (atoi(num) != port) return 0;
      len = (size_t)(c1 - e);
    }
  }
  while (len && e[0] == '.') {
    e++;
    len--;
  }
  while (len && e[len - 1] == '.') len--;
  if (!len) return 0;
  if (hl == len) return strncasecmp(host, e, len) == 0;
  return hl > len && host[hl - len - 1] == '.' && strncasecmp(host + hl - len, e, len) == 0;
}

int gn_proxy_bypass(const char *no_proxy, const char *host, int port) {
  if (!no_proxy || !*no_proxy || !host) return 0;
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    host++;
    hl -= 2;
  }
  while (hl && host[hl - 1] == '.') hl--;
  const char *p = no_proxy;
  while (*p) {
    while (*p == ',' || *p == ' ' || *p == '\t') p++;
    const char *s = p;
    while (*p && *p != ',' && *p != ' ' && *p != '\t') p++;
    if (p > s && entry_matches(s, (size_t)(p - s), host, hl, port)) return 1;
  }
  return 0;
}

const gn_proxy_t *gn_proxy_for(const gn_proxy_t *p, const char *host, int port) {
  if (!p || !p->host || !*p->host) return NULL;
  return gn_proxy_bypass(p->no_proxy, host, port) ? NULL : p;
}

void gn_proxy_hostport(const gn_proxy_t *p, char *out, size_t outlen) {
  if (strchr(p->host, ':')) snprintf(out, outlen, "[%s]:%d", p->host, p->port);
  else snprintf(out, outlen, "%s:%d", p->host, p->port);
}
