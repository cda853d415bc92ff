/* url.c: a connectUri taken apart (see url.h). */
#include "url.h"
#include "gn_util.h"

#include <stdio.h>
#include <strings.h>

/* The longest connectUri taken. lws 4.1.6 builds the upgrade request in a header space of a
 * few KB; a longer path failed inside lws_client_connect_via_info and leaked ~101 KB there on
 * each attempt. Genesys's are under 100 bytes. */
#define MAX_URL 1024

/* See transport.h. */
int gn_url_parse(const char *url, gn_url_t *c, char *err, size_t errlen) {
  const char *p;
  memset(c, 0, sizeof *c);
  size_t ul = strlen(url);
  if (ul > MAX_URL) {
    snprintf(err, errlen, "connectUri: expected at most %d bytes, got %zu", MAX_URL, ul);
    return -1;
  }
  for (size_t i = 0; i < ul; i++)
    if ((unsigned char)url[i] <= 0x20 || (unsigned char)url[i] >= 0x7f) {
      /* a space, CR/LF or a byte lws would put into the request line as it is */
      snprintf(err, errlen, "connectUri: expected printable ASCII without spaces, got byte "
               "0x%02x at offset %zu", (unsigned char)url[i], i);
      return -1;
    }
  if (strncasecmp(url, "wss://", 6) == 0) {
    c->tls = 1;
    p = url + 6;
  } else if (strncasecmp(url, "ws://", 5) == 0) {
    c->tls = 0;
    p = url + 5;
  } else {
    snprintf(err, errlen, "connectUri: expected a wss:// URL");
    return -1;
  }
  const char *slash = strchr(p, '/');
  size_t hl = slash ? (size_t)(slash - p) : strlen(p);
  char hostport[300];
  if (hl == 0 || hl >= sizeof hostport) {
    snprintf(err, errlen, "connectUri: expected a host name");
    return -1;
  }
  memcpy(hostport, p, hl);
  hostport[hl] = 0;
  c->port = c->tls ? 443 : 80;
  char *hs = hostport, *colon;
  if (hs[0] == '[') { /* [v6]:port */
    char *rb = strchr(hs, ']');
    if (!rb) {
      snprintf(err, errlen, "connectUri: bad IPv6 literal");
      return -1;
    }
    if (rb[1] && rb[1] != ':') {
      snprintf(err, errlen, "connectUri: expected a port or a path after the IPv6 literal");
      return -1;
    }
    *rb = 0;
    colon = rb[1] == ':' ? rb + 1 : NULL;
    hs++;
  } else {
    colon = strrchr(hs, ':');
    if (colon) *colon = 0;
    if (strchr(hs, ':')) {
      snprintf(err, errlen, "connectUri: expected an IPv6 address in brackets");
      return -1;
    }
  }
  if (colon) {
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || port <= 0 || port > 65535) {
      snprintf(err, errlen, "connectUri: expected a port from 1 to 65535");
      return -1;
    }
    c->port = (int)port;
  }
  if (!*hs || strpbrk(hs, "@?#[]")) {
    snprintf(err, errlen, "connectUri: expected a host name");
    return -1;
  }
  c->host = gn_strdup(hs);
  c->path = gn_strdup(slash ? slash : "/");
  if (!c->host || !c->path) {
    snprintf(err, errlen, "out of memory");
    gn_url_free(c);
    return -1;
  }
  return 0;
}

void gn_url_free(gn_url_t *u) {
  free(u->host);
  free(u->path);
  u->host = u->path = NULL;
}
