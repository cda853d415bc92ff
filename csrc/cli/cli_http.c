/* cli_http.c: the small HTTP/1.1 responder behind genesys-notify --metrics-listen, driven from the
 * command's own wait (cli.c). One request per connection (Connection: close), answered by a Lua
 * handler(method, path) -> status, content_type, body.
 *
 * Bounded against slow and hostile peers, so a scrape is answered whatever else is connected:
 * - at most max_conns connections (64) and max_per_peer (8) from one address; a new connection
 *   over either bound takes the place of the oldest one still waiting for its request (counted
 *   in evicted), so idle connections renewed before they time out cannot keep /metrics dark;
 *   a new connection's request is read at once when it is already there;
 * - a request head must come within idle_ms (2000) of the last byte and within timeout_ms (5000)
 *   in all; at most max_request bytes (8 KiB) else 431;
 * - a request line or header line that is not HTTP/1.x is a 400; a line may end in LF alone
 *   (RFC 9112 2.2), so a bare-LF request is answered at once;
 * - after the answer the socket is shut for writing and what the peer still sends is read and
 *   dropped for up to linger_ms (1000) before the close, so an answer sent before a large
 *   request was read whole (431) arrives instead of a reset.
 */
#include "cli.h"
#include "http_parse.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

enum { C_FREE = 0, C_READ, C_WRITE, C_LINGER };

typedef struct {
  int fd, state;
  double accepted;  /* monotonic ms: the oldest waiting connection is evicted first */
  double deadline;  /* the current state must end by then */
  double end_by;    /* the whole request head by then */
  unsigned char peer[16]; /* the peer's address (IPv4 in the first 4 bytes) */
  char *in;         /* request bytes so far (max_request) */
  size_t inlen, scanned;
  char *out;        /* response; written from outpos */
  size_t outlen, outpos, drained;
} hconn_t;

struct lcli_httpd {
  int lfd, port, max_conns, max_per_peer;
  size_t max_request;
  double timeout_ms, idle_ms, linger_ms;
  hconn_t *conns;
  unsigned long long accepted, served, timed_out, too_large, bad, evicted, refused;
};

static void conn_free(hconn_t *c) {
  if (c->fd >= 0) close(c->fd);
  free(c->in);
  free(c->out);
  memset(c, 0, sizeof *c);
  c->fd = -1;
}

static void httpd_close_all(lcli_httpd_t *h) {
  for (int i = 0; h->conns && i < h->max_conns; i++) conn_free(&h->conns[i]);
  free(h->conns);
  h->conns = NULL;
  if (h->lfd >= 0) close(h->lfd);
  h->lfd = -1;
}

static int opt_int_field(lua_State *L, const char *k, int def, int lo, int hi) {
  lua_getfield(L, 1, k);
  int v = def;
  if (!lua_isnil(L, -1)) {
    if (!gn_isinteger(L, -1) || lua_tonumber(L, -1) < lo || lua_tonumber(L, -1) > hi)
      luaL_error(L, "genesys.notify.cli: http_server: %s: expected an integer from %d to %d", k,
                 lo, hi);
    v = (int)lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* cli.http_server{host=, port=, handler=, max_conns=64, max_per_peer=8, max_request=8192,
 * timeout_ms=5000, idle_ms=2000, linger_ms=1000}: listening at once. Raises "cannot listen on
 * HOST:PORT: why". */
static int l_http_server(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_pop(L, 1); /* the table keeps it */
  int port = opt_int_field(L, "port", 0, 0, 65535);
  int max_conns = opt_int_field(L, "max_conns", 64, 1, 1024);
  int per_peer = opt_int_field(L, "max_per_peer", 8, 1, 1024);
  int max_request = opt_int_field(L, "max_request", 8192, 256, 1 << 20);
  int timeout_ms = opt_int_field(L, "timeout_ms", 5000, 10, 600000);
  int idle_ms = opt_int_field(L, "idle_ms", 2000, 10, 600000);
  int linger_ms = opt_int_field(L, "linger_ms", 1000, 0, 60000);
  lua_getfield(L, 1, "handler");
  if (!lua_isfunction(L, -1))
    return luaL_error(L, "genesys.notify.cli: http_server: handler: expected a function, got %s",
                      luaL_typename(L, -1));
  lcli_httpd_t *h = (lcli_httpd_t *)lua_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->lfd = -1;
  luaL_setmetatable(L, LCLI_HTTPD_MT);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "handler");
  lua_setuservalue(L, -2);
  h->max_conns = max_conns;
  h->max_per_peer = per_peer;
  h->max_request = (size_t)max_request;
  h->timeout_ms = timeout_ms;
  h->idle_ms = idle_ms;
  h->linger_ms = linger_ms;
  h->conns = (hconn_t *)calloc((size_t)max_conns, sizeof *h->conns);
  if (!h->conns) return luaL_error(L, "genesys.notify.cli: http_server: out of memory");
  for (int i = 0; i < max_conns; i++) h->conns[i].fd = -1;

  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  char portstr[16];
  snprintf(portstr, sizeof portstr, "%d", port);
  const char *hn = host;
  char hbuf[256];
  size_t hl = strlen(host);
  if (hl > 2 && host[0] == '[' && host[hl - 1] == ']' && hl - 2 < sizeof hbuf) {
    memcpy(hbuf, host + 1, hl - 2); /* [::1] */
    hbuf[hl - 2] = 0;
    hn = hbuf;
  }
  int gai = getaddrinfo(*hn ? hn : NULL, portstr, &hints, &res);
  if (gai != 0) return luaL_error(L, "cannot listen on %s:%d: %s", host, port, gai_strerror(gai));
  int err = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 64) == 0) {
      h->lfd = fd;
      break;
    }
    err = errno;
    close(fd);
  }
  freeaddrinfo(res);
  if (h->lfd < 0)
    return luaL_error(L, "cannot listen on %s:%d: %s", host, port, strerror(err ? err : EINVAL));
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(h->lfd, (struct sockaddr *)&ss, &sl) == 0)
    h->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
  return 1;
}

lcli_httpd_t *lcli_check_httpd(lua_State *L, int i) {
  lcli_httpd_t *h = (lcli_httpd_t *)luaL_checkudata(L, i, LCLI_HTTPD_MT);
  if (h->lfd < 0) luaL_error(L, "genesys.notify.cli: the HTTP server is closed");
  return h;
}

static int l_httpd_port(lua_State *L) {
  lua_pushinteger(L, lcli_check_httpd(L, 1)->port);
  return 1;
}

static void set_count(lua_State *L, const char *k, unsigned long long v) {
  lua_pushnumber(L, (lua_Number)v);
  lua_setfield(L, -2, k);
}

/* srv:stats(): {accepted, served, timed_out, too_large, bad, evicted, refused, open}. */
static int l_httpd_stats(lua_State *L) {
  lcli_httpd_t *h = (lcli_httpd_t *)luaL_checkudata(L, 1, LCLI_HTTPD_MT);
  int open = 0;
  for (int i = 0; h->conns && i < h->max_conns; i++) open += h->conns[i].fd >= 0;
  lua_createtable(L, 0, 8);
  set_count(L, "accepted", h->accepted);
  set_count(L, "served", h->served);
  set_count(L, "timed_out", h->timed_out);
  set_count(L, "too_large", h->too_large);
  set_count(L, "bad", h->bad);
  set_count(L, "evicted", h->evicted);
  set_count(L, "refused", h->refused);
  set_count(L, "open", (unsigned long long)open);
  return 1;
}

static int l_httpd_close(lua_State *L) {
  httpd_close_all((lcli_httpd_t *)luaL_checkudata(L, 1, LCLI_HTTPD_MT));
  return 0;
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Status";
  }
}

/* Shuts c for writing and reads what the peer still sends until it closes or linger_ms pass. */
static void conn_linger(lcli_httpd_t *h, hconn_t *c, double now) {
  shutdown(c->fd, SHUT_WR);
  c->state = C_LINGER;
  c->deadline = now + h->linger_ms;
}

/* Sends what c's response still has; lingers once all is sent, frees c when the peer is gone. */
static void conn_write(lcli_httpd_t *h, hconn_t *c, double now) {
  while (c->outpos < c->outlen) {
    ssize_t w = send(c->fd, c->out + c->outpos, c->outlen - c->outpos, MSG_NOSIGNAL);
    if (w > 0) {
      c->outpos += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    conn_free(c); /* the peer is gone */
    return;
  }
  conn_linger(h, c, now);
}

/* Makes c's response (head + body unless head_only) and starts sending it. */
static void respond(lcli_httpd_t *h, hconn_t *c, int status, const char *ctype, const char *body,
                    size_t blen, int head_only, double now) {
  char hd[512];
  int n = snprintf(hd, sizeof hd,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   status, reason_phrase(status), ctype, blen);
  size_t total = (size_t)n + (head_only ? 0 : blen);
  char *o = n > 0 && (size_t)n < sizeof hd ? (char *)malloc(total) : NULL;
  if (!o) {
    conn_free(c);
    return;
  }
  memcpy(o, hd, (size_t)n);
  if (!head_only && blen) memcpy(o + n, body, blen);
  free(c->out);
  c->out = o;
  c->outlen = total;
  c->outpos = 0;
  c->state = C_WRITE;
  c->deadline = now + h->timeout_ms;
  conn_write(h, c, now);
}

static void plain(lcli_httpd_t *h, hconn_t *c, int status, const char *msg, double now) {
  respond(h, c, status, "text/plain; charset=utf-8", msg, strlen(msg), 0, now);
}

/* A whole request head is in c->in (hlen bytes): checks its syntax (http_parse.c) and asks the
 * Lua handler (at stack index hidx) for the answer. The handler runs protected: an error is a
 * 500. */
static void handle_request(lua_State *L, lcli_httpd_t *h, hconn_t *c, int hidx, size_t hlen,
                           double now) {
  lcli_req_t req;
  if (!lcli_http_parse(c->in, hlen, &req)) {
    h->bad++;
    plain(h, c, 400, "bad request\n", now);
    return;
  }
  const char *method = req.method, *path = req.path;
  int top = lua_gettop(L);
  lua_pushvalue(L, hidx);
  lua_pushstring(L, method);
  lua_pushstring(L, path);
  if (lua_pcall(L, 2, 3, 0) != 0 || !lua_isnumber(L, -3)) {
    lua_settop(L, top);
    plain(h, c, 500, "handler failed\n", now);
    return;
  }
  int status = (int)lua_tonumber(L, -3);
  const char *ctype = luaL_optstring(L, -2, "text/plain; charset=utf-8");
  size_t blen = 0;
  const char *body = lua_tolstring(L, -1, &blen);
  if (status < 100 || status > 599 || strpbrk(ctype, "\r\n") || strlen(ctype) > 200)
    status = 500, ctype = "text/plain";
  h->served++;
  respond(h, c, status, ctype, body ? body : "", body ? blen : 0, strcmp(method, "HEAD") == 0, now);
  lua_settop(L, top);
}

/* Reads what c has; answers once the head is whole (or too large). */
static void conn_read(lua_State *L, lcli_httpd_t *h, hconn_t *c, int hidx, double now) {
  for (;;) {
    if (c->state == C_LINGER) { /* read and dropped, at most 64 KiB */
      char sink[4096];
      ssize_t r = recv(c->fd, sink, sizeof sink, 0);
      if (r > 0 && (c->drained += (size_t)r) < 65536) continue;
      if (r < 0 && errno == EINTR) continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      conn_free(c); /* the peer closed, an error, or enough dropped */
      return;
    }
    if (c->inlen >= h->max_request) {
      h->too_large++;
      plain(h, c, 431, "request header fields too large\n", now);
      return;
    }
    ssize_t r = recv(c->fd, c->in + c->inlen, h->max_request - c->inlen, 0);
    if (r > 0) {
      c->inlen += (size_t)r;
      c->deadline = now + h->idle_ms < c->end_by ? now + h->idle_ms : c->end_by;
      size_t hlen = lcli_http_head_end(c->in, c->inlen, &c->scanned);
      if (hlen) {
        handle_request(L, h, c, hidx, hlen, now);
        if (c->fd < 0 || c->state != C_LINGER) return;
      }
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    conn_free(c); /* the peer went away before a whole request, or an error */
    return;
  }
}

/* The slot for a new connection from peer: a free one, or that of the oldest connection still
 * waiting for its request (of this peer when it has max_per_peer, else of anyone when all are
 * taken), which is closed. -1 when every connection is busy answering. */
static int take_slot(lcli_httpd_t *h, const unsigned char *peer) {
  int free_slot = -1, mine = 0, oldest = -1, oldest_mine = -1;
  for (int i = 0; i < h->max_conns; i++) {
    hconn_t *c = &h->conns[i];
    if (c->fd < 0) {
      if (free_slot < 0) free_slot = i;
      continue;
    }
    int same = memcmp(c->peer, peer, sizeof c->peer) == 0;
    mine += same;
    if (c->state == C_WRITE) continue;
    if (oldest < 0 || c->accepted < h->conns[oldest].accepted) oldest = i;
    if (same && (oldest_mine < 0 || c->accepted < h->conns[oldest_mine].accepted)) oldest_mine = i;
  }
  int victim = mine >= h->max_per_peer ? oldest_mine : free_slot >= 0 ? free_slot : oldest;
  if (victim < 0) return -1;
  if (h->conns[victim].fd >= 0) {
    h->evicted += h->conns[victim].state == C_READ;
    conn_free(&h->conns[victim]);
  }
  return victim;
}

static void httpd_accept(lua_State *L, lcli_httpd_t *h, int hidx, double now) {
  for (int n = 0; n < 256; n++) {
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd = accept4(h->lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    unsigned char peer[16] = {0};
    if (ss.ss_family == AF_INET) memcpy(peer, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    else if (ss.ss_family == AF_INET6) memcpy(peer, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
    int slot = take_slot(h, peer);
    char *in = slot >= 0 ? (char *)malloc(h->max_request) : NULL;
    if (!in) {
      h->refused++;
      close(fd);
      continue;
    }
    hconn_t *c = &h->conns[slot];
    c->fd = fd;
    c->state = C_READ;
    c->in = in;
    c->accepted = now;
    c->end_by = now + h->timeout_ms;
    c->deadline = now + h->idle_ms < c->end_by ? now + h->idle_ms : c->end_by;
    memcpy(c->peer, peer, sizeof peer);
    h->accepted++;
    conn_read(L, h, c, hidx, now); /* the request is often there already */
  }
}

int lcli_httpd_pollfds(lcli_httpd_t *h, struct pollfd *pfd, int *slot, int max, double *deadline) {
  int n = 0;
  for (int i = 0; i < h->max_conns && n < max - 1; i++) {
    hconn_t *c = &h->conns[i];
    if (c->fd < 0) continue;
    if (c->deadline < *deadline) *deadline = c->deadline;
    pfd[n].fd = c->fd;
    pfd[n].events = c->state == C_WRITE ? POLLOUT : POLLIN;
    pfd[n].revents = 0;
    slot[n++] = i;
  }
  pfd[n].fd = h->lfd; /* always: a new connection can take an idle one's place */
  pfd[n].events = POLLIN;
  pfd[n].revents = 0;
  slot[n++] = -1;
  return n;
}

void lcli_httpd_serve(lua_State *L, lcli_httpd_t *h, const struct pollfd *pfd, const int *slot,
                      int n, int hidx) {
  double now = lcli_mono_ms();
  int listener_ready = 0;
  for (int k = 0; k < n; k++) {
    if (!pfd[k].revents) continue;
    if (slot[k] < 0) {
      listener_ready = 1;
      continue;
    }
    hconn_t *c = &h->conns[slot[k]];
    if (c->fd != pfd[k].fd) continue;
    if (c->state == C_WRITE) conn_write(h, c, now);
    else conn_read(L, h, c, hidx, now);
  }
  for (int i = 0; i < h->max_conns; i++) {
    hconn_t *c = &h->conns[i];
    if (c->fd >= 0 && now >= c->deadline) {
      h->timed_out += c->state == C_READ;
      conn_free(c);
    }
  }
  if (listener_ready) httpd_accept(L, h, hidx, now);
}

int lcli_open_http(lua_State *L) {
  static const luaL_Reg m[] = {{"port", l_httpd_port}, {"stats", l_httpd_stats},
                               {"close", l_httpd_close}, {NULL, NULL}};
  lcli_new_class(L, LCLI_HTTPD_MT, m, l_httpd_close);
  lua_pushcfunction(L, l_http_server);
  lua_setfield(L, -2, "http_server");
  return 0;
}
