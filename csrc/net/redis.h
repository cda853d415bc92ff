/* redis.h: one Redis connection on a service thread's libuv loop (hiredis' async API and its
 * libuv adapter), for the lease (lease.h) and the stream consumer (consumer.h).
 *
 * The connection does not reconnect by itself: its owner calls gn_redis_connect when it wants
 * one (under its own backoff) and hears about every loss through `down`. A command that gets no
 * answer (a stopped or unreachable server: hiredis has no timeout of its own) is the owner's to
 * notice; gn_redis_drop ends the connection at once, answering every pending command with a NULL
 * reply. Everything here runs on the loop's thread.
 *
 * A connection (gn_redis_connect) goes through: the host name resolved with uv_getaddrinfo (off
 * the loop's thread; an IP address is taken as it is), with Sentinel first the master's address
 * asked from each sentinel in turn (SENTINEL get-master-addr-by-name), the TCP connection to the
 * address, TLS (rediss://: SNI and certificate checked against the host name, or
 * tls.server_name), AUTH [user] password, SELECT db and, with Sentinel, ROLE (a master, or the
 * connection is dropped and the sentinels asked again). Only then is it up. A -READONLY or
 * -NOAUTH answer to a command ends the connection (a failover, or a password changed: the next
 * connection asks the sentinels again and authenticates again).
 *
 * Credentials (the URL's password, password_file, the sentinels' password) are never shown:
 * errors name the field, never a value; a connection's errors name the address.
 */
#ifndef GN_REDIS_H
#define GN_REDIS_H

#include <stddef.h>
#include <hiredis/hiredis.h>
#include <hiredis/async.h>
#include <uv.h>

/* 1 when this build has TLS (hiredis 1.x with hiredis_ssl: see the Makefile). */
#ifndef GN_HIREDIS_SSL
#define GN_HIREDIS_SSL 0
#endif

/* What the configuration says (strings borrowed from it for the call of gn_redis_conf_init). */
typedef struct {
  const char *url;            /* redis[s]://[user[:password]@]host[:port][/db]; with Sentinel
                                 the host is the master's name and there is no port */
  const char *password_file;  /* the password, from a file (one line) */
  const char *tls_ca_file, *tls_cert_file, *tls_key_file, *tls_server_name;
  const char *sentinel_master;
  const char *sentinel_addrs; /* "host:port,[v6]:port,..." */
  const char *sentinel_user, *sentinel_password, *sentinel_password_file;
  int sentinel_min_replicas;  /* replicas a lease acquisition must reach (WAIT); < 0: default 1 */
} gn_redis_opts_t;

typedef struct {
  char host[256];
  int port;
} gn_redis_addr_t;

/* The parsed configuration; owned (gn_redis_conf_clear), read-only once made. */
typedef struct {
  int tls;
  gn_redis_addr_t addr;       /* the server (not used with Sentinel) */
  int db;
  char *user, *password;      /* NULL: none */
  void *ssl_ctx;              /* SSL_CTX * (tls) */
  char *server_name;          /* the name TLS checks (tls.server_name or the host) */
  char *master;               /* Sentinel: the master's name (NULL: no Sentinel) */
  gn_redis_addr_t *sentinels;
  size_t nsentinels;
  char *sentinel_user, *sentinel_password;
  int min_replicas;           /* Sentinel: see gn_redis_opts_t (0: no WAIT) */
} gn_redis_conf_t;

/* Parses and checks o into *c (reads the password files, loads the TLS files). Returns 0, or -1
 * and err naming the field ("redis.url: expected ...", never a value). Any thread. */
int gn_redis_conf_init(gn_redis_conf_t *c, const gn_redis_opts_t *o, char *err, size_t errlen);
/* Frees what c holds (the passwords wiped first). Returns nothing. Any thread. */
void gn_redis_conf_clear(gn_redis_conf_t *c);
/* Parses "host:port" or "[v6]:port" (field names it in err). Returns 0 or -1. Any thread. */
int gn_redis_addr_parse(const char *s, size_t n, gn_redis_addr_t *out, const char *field,
                        char *err, size_t errlen);

typedef struct gn_redis gn_redis_t;
/* up = 1: connected (and the database selected); up = 0: the connection is gone (err says why).
 * Called from loop callbacks, never from inside gn_redis_free. */
typedef void (*gn_redis_link_fn)(void *ud, int up, const char *err);
/* A command's answer: reply is NULL when the connection went away before it came. */
typedef void (*gn_redis_reply_fn)(void *ud, redisReply *reply);

/* A connection object (not connected yet) for conf (borrowed: it must outlive r). Returns it or
 * NULL (memory). Loop thread. */
gn_redis_t *gn_redis_new(uv_loop_t *loop, const gn_redis_conf_t *conf, gn_redis_link_fn link,
                         void *ud);
/* Starts connecting unless connected or connecting. Returns 0, or -1 (the failure is also
 * reported through link with up = 0). Loop thread. */
int gn_redis_connect(gn_redis_t *r);
/* Returns 1 when connected. Loop thread. */
int gn_redis_up(const gn_redis_t *r);
/* Returns 1 while connecting or connected. Loop thread. */
int gn_redis_busy(const gn_redis_t *r);
/* Sends a command (argv as binary-safe strings); fn(ud, reply) runs once with its answer.
 * Returns 0, or -1 when not connected (fn is then not called). Loop thread. */
int gn_redis_cmd(gn_redis_t *r, gn_redis_reply_fn fn, void *ud, int argc, const char **argv,
                 const size_t *lens);
/* Writes what commands are buffered now, as far as the socket takes them without blocking (for a
 * last command before gn_redis_free). Returns nothing. Loop thread, not from a reply callback. */
void gn_redis_flush(gn_redis_t *r);
/* Ends the connection now: pending commands get NULL, link hears up = 0 with why. Returns
 * nothing. Loop thread, not from inside a reply callback. */
void gn_redis_drop(gn_redis_t *r, const char *why);
/* Drops the connection (pending commands get NULL; link is not called) and frees r (NULL
 * allowed). Returns nothing. Loop thread, not from inside a reply callback. */
void gn_redis_free(gn_redis_t *r);

#endif
