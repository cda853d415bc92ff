/* redis_conf.c: the Redis connection's configuration (see redis.h): the URL, the password file,
 * TLS files, Sentinel. Errors name the field and what was expected, never a value: a URL may
 * hold a password. */
#include "redis.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if GN_HIREDIS_SSL
#include <openssl/err.h>
#include <openssl/ssl.h>
#endif

#define URL_FORM "a URL redis[s]://[user[:password]@]host[:port][/db]"

static void wipe_free(char *s) {
  if (!s) return;
  volatile char *p = s;
  while (*p) *p++ = 0;
  free(s);
}

static char *dup_n(const char *s, size_t n) {
  char *d = malloc(n + 1);
  if (!d) return NULL;
  memcpy(d, s, n);
  d[n] = 0;
  return d;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..n) into a new string; NULL on a bad escape, a NUL or memory. */
static char *pct_decode(const char *s, size_t n) {
  char *d = malloc(n + 1), *o = d;
  if (!d) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '%') {
      if (i + 2 >= n || hexval(s[i + 1]) < 0 || hexval(s[i + 2]) < 0 ||
          (hexval(s[i + 1]) == 0 && hexval(s[i + 2]) == 0)) {
        /* not terminated yet: wiped by its length */
        volatile char *p = d;
        for (size_t k = 0; k <= n; k++) p[k] = 0;
        free(d);
        return NULL;
      }
      char c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
      *o++ = c;
      i += 2;
    } else {
      *o++ = s[i];
    }
  }
  *o = 0;
  return d;
}

static int host_char_ok(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

/* Parses a host ("name", "1.2.3.4" or "[v6]") at s, up to a ':' / '/' / end; *end after it. */
static int parse_host(const char *s, const char *lim, char *out, size_t outlen, const char **end) {
  const char *e;
  if (*s == '[') {
    e = memchr(s, ']', (size_t)(lim - s));
    if (!e || e == s + 1 || (size_t)(e - s - 1) >= outlen) return -1;
    memcpy(out, s + 1, (size_t)(e - s - 1));
    out[e - s - 1] = 0;
    unsigned char buf[16];
    if (inet_pton(AF_INET6, out, buf) != 1) return -1;
    *end = e + 1;
    return 0;
  }
  e = s;
  while (e < lim && host_char_ok(*e)) e++;
  if (e == s || (size_t)(e - s) >= outlen) return -1;
  memcpy(out, s, (size_t)(e - s));
  out[e - s] = 0;
  *end = e;
  return 0;
}

static int parse_port(const char *s, const char *lim, int *port, const char **end) {
  long p = 0;
  const char *e = s;
  while (e < lim && *e >= '0' && *e <= '9' && p <= 65535) p = p * 10 + (*e++ - '0');
  if (e == s || p < 1 || p > 65535) return -1;
  *port = (int)p;
  *end = e;
  return 0;
}

int gn_redis_addr_parse(const char *s, size_t n, gn_redis_addr_t *out, const char *field,
                        char *err, size_t errlen) {
  const char *lim = s + n, *e;
  if (parse_host(s, lim, out->host, sizeof out->host, &e) != 0 || e >= lim || *e != ':' ||
      parse_port(e + 1, lim, &out->port, &e) != 0 || e != lim) {
    snprintf(err, errlen, "%s: expected \"host:port\" or \"[IPv6 address]:port\" entries", field);
    return -1;
  }
  return 0;
}

/* Reads a one-line secret from path (a trailing newline, and a CR before it, are not part of
 * it). Returns a new string or NULL with err naming field (never the content). */
static char *read_secret(const char *path, const char *field, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "%s: expected a readable file (%s)", field, strerror(errno));
    return NULL;
  }
  char buf[1025];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  if (n == sizeof buf) {
    memset(buf, 0, sizeof buf);
    snprintf(err, errlen, "%s: expected a file of at most 1024 bytes", field);
    return NULL;
  }
  if (n && buf[n - 1] == '\n') n--;
  if (n && buf[n - 1] == '\r') n--;
  int bad = n == 0 || memchr(buf, 0, n) || memchr(buf, '\n', n) || memchr(buf, '\r', n);
  char *s = bad ? NULL : dup_n(buf, n);
  memset(buf, 0, sizeof buf);
  if (bad) {
    snprintf(err, errlen, "%s: expected one line holding the password (it is empty, or holds "
             "several lines or a NUL byte)", field);
    return NULL;
  }
  if (!s) snprintf(err, errlen, "out of memory");
  return s;
}

static int parse_url(gn_redis_conf_t *c, const char *url, int sentinel, char *err, size_t errlen) {
  const char *p;
  if (strncmp(url, "redis://", 8) == 0) {
    p = url + 8;
  } else if (strncmp(url, "rediss://", 9) == 0) {
    p = url + 9;
    c->tls = 1;
  } else {
    snprintf(err, errlen, "redis.url: expected " URL_FORM);
    return -1;
  }
  const char *lim = p + strlen(p);
  for (const char *q = p; q < lim; q++) {
    if ((unsigned char)*q <= ' ' || *q == 127) {
      snprintf(err, errlen, "redis.url: expected " URL_FORM " without blanks or control characters");
      return -1;
    }
  }
  const char *at = NULL;
  for (const char *q = p; q < lim; q++)
    if (*q == '@') at = q;
  if (at) {
    const char *colon = memchr(p, ':', (size_t)(at - p));
    const char *ue = colon ? colon : at;
    if (ue > p && !(c->user = pct_decode(p, (size_t)(ue - p)))) goto bad_userinfo;
    if (colon && !(c->password = pct_decode(colon + 1, (size_t)(at - colon - 1)))) goto bad_userinfo;
    if (c->password && !c->password[0]) {
      wipe_free(c->password);
      c->password = NULL;
    }
    p = at + 1;
  }
  const char *e;
  if (parse_host(p, lim, c->addr.host, sizeof c->addr.host, &e) != 0) {
    snprintf(err, errlen, "redis.url: expected " URL_FORM " with a host name, an IPv4 address or "
             "an [IPv6 address]");
    return -1;
  }
  c->addr.port = 6379;
  if (*e == ':') {
    if (sentinel) {
      snprintf(err, errlen, "redis.url: expected the master's name as the host and no port (with "
               "redis.sentinel, the sentinels give the address)");
      return -1;
    }
    if (parse_port(e + 1, lim, &c->addr.port, &e) != 0) {
      snprintf(err, errlen, "redis.url: expected a port from 1 to 65535 after the host");
      return -1;
    }
  }
  if (*e == '/') {
    if (e[1]) {
      char *end;
      long d = strtol(e + 1, &end, 10);
      if (end == e + 1 || *end || d < 0 || d > 65535 || e[1] == '-' || e[1] == '+') {
        snprintf(err, errlen, "redis.url: expected a database number after the '/'");
        return -1;
      }
      c->db = (int)d;
    }
  } else if (*e) {
    snprintf(err, errlen, "redis.url: expected " URL_FORM);
    return -1;
  }
  return 0;
bad_userinfo:
  snprintf(err, errlen, "redis.url: expected a user and password percent-encoded, without NUL "
           "bytes, before the '@'");
  return -1;
}

#if GN_HIREDIS_SSL
static int tls_ctx(gn_redis_conf_t *c, const gn_redis_opts_t *o, char *err, size_t errlen) {
  SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  c->ssl_ctx = ctx;
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  if (o->tls_ca_file ? SSL_CTX_load_verify_locations(ctx, o->tls_ca_file, NULL) != 1
                     : SSL_CTX_set_default_verify_paths(ctx) != 1) {
    ERR_clear_error();
    snprintf(err, errlen, "redis.tls.ca_file: expected a readable PEM file of CA certificates");
    return -1;
  }
  if (!o->tls_cert_file != !o->tls_key_file) {
    snprintf(err, errlen, "%s: expected with %s (a client certificate and its key)",
             o->tls_cert_file ? "redis.tls.key_file" : "redis.tls.cert_file",
             o->tls_cert_file ? "redis.tls.cert_file" : "redis.tls.key_file");
    return -1;
  }
  if (o->tls_cert_file) {
    if (SSL_CTX_use_certificate_chain_file(ctx, o->tls_cert_file) != 1) {
      ERR_clear_error();
      snprintf(err, errlen, "redis.tls.cert_file: expected a readable PEM certificate (chain)");
      return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, o->tls_key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      snprintf(err, errlen, "redis.tls.key_file: expected a readable PEM private key of "
               "redis.tls.cert_file's certificate");
      return -1;
    }
  }
  return 0;
}
#endif

int gn_redis_conf_init(gn_redis_conf_t *c, const gn_redis_opts_t *o, char *err, size_t errlen) {
  memset(c, 0, sizeof *c);
  int sentinel = o->sentinel_master || o->sentinel_addrs;
  if (sentinel) {
    if (!o->sentinel_master || !o->sentinel_master[0]) {
      snprintf(err, errlen, "redis.sentinel.master: expected the master's name (a non-empty string)");
      goto fail;
    }
    if (!o->sentinel_addrs || !o->sentinel_addrs[0]) {
      snprintf(err, errlen, "redis.sentinel.addrs: expected a list of \"host:port\" of sentinels");
      goto fail;
    }
    if (!(c->master = strdup(o->sentinel_master))) goto oom;
  }
  if (o->url) {
    if (parse_url(c, o->url, sentinel, err, errlen) != 0) goto fail;
    if (sentinel && strcmp(c->addr.host, c->master) != 0) {
      snprintf(err, errlen, "redis.url: expected redis.sentinel.master as the host (with "
               "redis.sentinel, the URL gives the scheme, user, password and database)");
      goto fail;
    }
  } else if (!sentinel) {
    snprintf(err, errlen, "redis.url: expected " URL_FORM);
    goto fail;
  }
  if (o->password_file) {
    if (c->password) {
      snprintf(err, errlen, "redis.password_file: expected no password in redis.url as well");
      goto fail;
    }
    if (!(c->password = read_secret(o->password_file, "redis.password_file", err, errlen)))
      goto fail;
  }
  if (c->user && !c->password) {
    snprintf(err, errlen, "redis.url: expected a password (in the URL or redis.password_file) with "
             "the user name");
    goto fail;
  }
  int tls_opts = o->tls_ca_file || o->tls_cert_file || o->tls_key_file || o->tls_server_name;
  if (tls_opts && !c->tls) {
    snprintf(err, errlen, "redis.tls: expected a rediss:// URL with TLS settings");
    goto fail;
  }
  if (c->tls) {
#if GN_HIREDIS_SSL
    if (tls_ctx(c, o, err, errlen) != 0) goto fail;
    const char *name = o->tls_server_name ? o->tls_server_name : c->addr.host;
    if (!(c->server_name = strdup(name))) goto oom;
#else
    snprintf(err, errlen, "redis.url: rediss:// (TLS) needs a build with hiredis 1.x and "
             "hiredis_ssl; this one is built with hiredis %d.%d, without TLS (see \"Running a "
             "fleet\")", HIREDIS_MAJOR, HIREDIS_MINOR);
    goto fail;
#endif
  }
  if (sentinel) {
    const char *s = o->sentinel_addrs;
    size_t n = 1;
    for (const char *q = s; *q; q++) n += *q == ',';
    if (!(c->sentinels = calloc(n, sizeof *c->sentinels))) goto oom;
    while (*s) {
      const char *e = strchr(s, ',');
      size_t len = e ? (size_t)(e - s) : strlen(s);
      if (gn_redis_addr_parse(s, len, &c->sentinels[c->nsentinels], "redis.sentinel.addrs", err,
                              errlen) != 0)
        goto fail;
      c->nsentinels++;
      s += len + (e ? 1 : 0);
    }
    if (o->sentinel_user && !(c->sentinel_user = strdup(o->sentinel_user))) goto oom;
    if (o->sentinel_password && o->sentinel_password_file) {
      snprintf(err, errlen, "redis.sentinel.password_file: expected no redis.sentinel.password as "
               "well");
      goto fail;
    }
    if (o->sentinel_password && !(c->sentinel_password = strdup(o->sentinel_password))) goto oom;
    if (o->sentinel_password_file &&
        !(c->sentinel_password = read_secret(o->sentinel_password_file,
                                             "redis.sentinel.password_file", err, errlen)))
      goto fail;
    c->min_replicas = o->sentinel_min_replicas < 0 ? 1 : o->sentinel_min_replicas;
    if (c->min_replicas > 100) {
      snprintf(err, errlen, "redis.sentinel.min_replicas: expected an integer from 0 to 100");
      goto fail;
    }
    if (c->sentinel_user && !c->sentinel_password) {
      snprintf(err, errlen, "redis.sentinel.password: expected with redis.sentinel.user");
      goto fail;
    }
  }
  return 0;
oom:
  snprintf(err, errlen, "out of memory");
fail:
  gn_redis_conf_clear(c);
  return -1;
}

void gn_redis_conf_clear(gn_redis_conf_t *c) {
  free(c->user);
  wipe_free(c->password);
#if GN_HIREDIS_SSL
  if (c->ssl_ctx) SSL_CTX_free(c->ssl_ctx);
#endif
  free(c->server_name);
  free(c->master);
  free(c->sentinels);
  free(c->sentinel_user);
  wipe_free(c->sentinel_password);
  memset(c, 0, sizeof *c);
}
