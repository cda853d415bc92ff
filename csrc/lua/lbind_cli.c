/* lbind_cli.c: what the genesys-notify command (bin/genesys-notify) needs from C and plain Lua
 * lacks: signals as a file descriptor (signalfd), a wait on several descriptors with a timeout,
 * isatty, the JSON line of an event, and a small bounded HTTP/1.1 responder for /metrics that is
 * driven from that wait. Everything here runs on the Lua thread only; nothing is shared with the
 * service thread (which blocks every signal, so a signal blocked here too reaches the signalfd).
 *
 *   sig = core.signalfd{"HUP", "INT", "TERM"}   -- blocks them in this thread; sig:fd(),
 *                                              -- sig:read() -> {"HUP", ...}, sig:close()
 *   srv = core.http_server{host=, port=, handler=function(method, path) return status, ctype, body end,
 *                          max_conns=16, max_request=8192, timeout_ms=5000}
 *                                              -- srv:port(), srv:stats(), srv:close()
 *   ready = core.wait(timeout_ms, {fd, ...}, srv_or_nil)  -- {[fd] = true} of the readable fds;
 *                                              -- srv's sockets are served inside the call
 *   core.isatty(fd), core.event_line(raw, channel_id, received_ms)
 */
#include "gn_util.h"
#include "lbind.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LGN_SIGFD_MT "genesys.notify.signalfd"
#define LGN_HTTPD_MT "genesys.notify.httpd"
#define WAIT_MAX_FDS 64

static double mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

/* ---- signals ---------------------------------------------------------------------------- */

static const struct {
  const char *name;
  int sig;
} SIGNALS[] = {{"HUP", SIGHUP}, {"INT", SIGINT}, {"TERM", SIGTERM}, {"USR1", SIGUSR1},
               {"USR2", SIGUSR2}, {"PIPE", SIGPIPE}, {NULL, 0}};

typedef struct {
  int fd;
} lsigfd_t;

static int l_signalfd(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  sigset_t set;
  sigemptyset(&set);
  size_t n = lua_rawlen(L, 1);
  for (size_t i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, (int)i);
    const char *name = lua_tostring(L, -1);
    int sig = 0;
    for (int k = 0; name && SIGNALS[k].name; k++)
      if (strcmp(SIGNALS[k].name, name) == 0) sig = SIGNALS[k].sig;
    if (!sig)
      return luaL_error(L, "genesys.notify: signalfd: signals[%d]: expected HUP, INT, TERM, USR1, "
                           "USR2 or PIPE, got %s", (int)i, name ? name : luaL_typename(L, -1));
    sigaddset(&set, sig);
    lua_pop(L, 1);
  }
  lsigfd_t *s = (lsigfd_t *)lua_newuserdata(L, sizeof *s);
  s->fd = -1;
  luaL_setmetatable(L, LGN_SIGFD_MT);
  /* Blocked in this thread: threads created from it later inherit the mask; the service thread
   * blocks every signal itself. A blocked signal stays pending for the signalfd. */
  int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rc != 0) return luaL_error(L, "genesys.notify: signalfd: %s", strerror(rc));
  s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->fd < 0) return luaL_error(L, "genesys.notify: signalfd: %s", strerror(errno));
  return 1;
}

static lsigfd_t *check_sigfd(lua_State *L) {
  lsigfd_t *s = (lsigfd_t *)luaL_checkudata(L, 1, LGN_SIGFD_MT);
  if (s->fd < 0) luaL_error(L, "genesys.notify: the signalfd is closed");
  return s;
}

static int l_sigfd_fd(lua_State *L) {
  lua_pushinteger(L, check_sigfd(L)->fd);
  return 1;
}

/* The names of the signals that arrived since the last read, in order (empty when none). */
static int l_sigfd_read(lua_State *L) {
  lsigfd_t *s = check_sigfd(L);
  lua_newtable(L);
  int n = 0;
  struct signalfd_siginfo si;
  while (read(s->fd, &si, sizeof si) == (ssize_t)sizeof si) {
    for (int k = 0; SIGNALS[k].name; k++)
      if ((int)si.ssi_signo == SIGNALS[k].sig) {
        lua_pushstring(L, SIGNALS[k].name);
        lua_rawseti(L, -2, ++n);
      }
  }
  return 1;
}

static int l_sigfd_close(lua_State *L) {
  lsigfd_t *s = (lsigfd_t *)luaL_checkudata(L, 1, LGN_SIGFD_MT);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  return 0;
}

/* ---- the /metrics responder ------------------------------------------------------------- */

typedef struct {
  int fd;              /* -1: free slot */
  double deadline;     /* monotonic ms: the whole exchange must end by then */
  char *in;            /* request bytes so far (max_request) */
  size_t inlen;
  char *out;           /* response; written from outpos */
  size_t outlen, outpos;
} hconn_t;

typedef struct {
  int lfd;
  int port;
  int max_conns;
  size_t max_request;
  double timeout_ms;
  hconn_t *conns;
  unsigned long long accepted, served, timed_out, too_large, bad;
} lhttpd_t;

static void hconn_close(hconn_t *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  free(c->in);
  free(c->out);
  c->in = c->out = NULL;
  c->inlen = c->outlen = c->outpos = 0;
}

static void httpd_close_all(lhttpd_t *h) {
  if (h->conns)
    for (int i = 0; i < h->max_conns; i++) hconn_close(&h->conns[i]);
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
      luaL_error(L, "genesys.notify: http_server: %s: expected an integer from %d to %d", k, lo,
                 hi);
    v = (int)lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

static int l_http_server(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "host");
  const char *host = luaL_optstring(L, -1, "127.0.0.1");
  lua_pop(L, 1); /* the table keeps it */
  int port = opt_int_field(L, "port", 0, 0, 65535);
  int max_conns = opt_int_field(L, "max_conns", 16, 1, 1024);
  int max_request = opt_int_field(L, "max_request", 8192, 256, 1 << 20);
  int timeout_ms = opt_int_field(L, "timeout_ms", 5000, 10, 600000);
  lua_getfield(L, 1, "handler");
  if (!lua_isfunction(L, -1))
    return luaL_error(L, "genesys.notify: http_server: handler: expected a function, got %s",
                      luaL_typename(L, -1));
  lhttpd_t *h = (lhttpd_t *)lua_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->lfd = -1;
  luaL_setmetatable(L, LGN_HTTPD_MT);
  lua_createtable(L, 0, 1);
  lua_pushvalue(L, -3);
  lua_setfield(L, -2, "handler");
  lua_setuservalue(L, -2);
  h->max_conns = max_conns;
  h->max_request = (size_t)max_request;
  h->timeout_ms = timeout_ms;
  h->conns = (hconn_t *)calloc((size_t)max_conns, sizeof *h->conns);
  if (!h->conns) return luaL_error(L, "genesys.notify: http_server: out of memory");
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
  if (gai != 0)
    return luaL_error(L, "cannot listen on %s:%d: %s", host, port, gai_strerror(gai));
  int err = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      err = errno;
      continue;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 16) == 0) {
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

static lhttpd_t *check_httpd(lua_State *L, int i) {
  lhttpd_t *h = (lhttpd_t *)luaL_checkudata(L, i, LGN_HTTPD_MT);
  if (h->lfd < 0) luaL_error(L, "genesys.notify: the HTTP server is closed");
  return h;
}

static int l_httpd_port(lua_State *L) {
  lua_pushinteger(L, check_httpd(L, 1)->port);
  return 1;
}

static int l_httpd_stats(lua_State *L) {
  lhttpd_t *h = (lhttpd_t *)luaL_checkudata(L, 1, LGN_HTTPD_MT);
  int open = 0;
  for (int i = 0; h->conns && i < h->max_conns; i++) open += h->conns[i].fd >= 0;
  lua_createtable(L, 0, 6);
  lua_pushnumber(L, (lua_Number)h->accepted);
  lua_setfield(L, -2, "accepted");
  lua_pushnumber(L, (lua_Number)h->served);
  lua_setfield(L, -2, "served");
  lua_pushnumber(L, (lua_Number)h->timed_out);
  lua_setfield(L, -2, "timed_out");
  lua_pushnumber(L, (lua_Number)h->too_large);
  lua_setfield(L, -2, "too_large");
  lua_pushnumber(L, (lua_Number)h->bad);
  lua_setfield(L, -2, "bad");
  lua_pushinteger(L, open);
  lua_setfield(L, -2, "open");
  return 1;
}

static int l_httpd_close(lua_State *L) {
  httpd_close_all((lhttpd_t *)luaL_checkudata(L, 1, LGN_HTTPD_MT));
  return 0;
}

static const char *reason_phrase(int status) {
  switch (status) {
  case 200: return "OK";
  case 400: return "Bad Request";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 503: return "Service Unavailable";
  default: return "Status";
  }
}

/* Builds c's response (head + body unless HEAD). Returns 0, or -1 out of memory. */
static int set_response(hconn_t *c, int status, const char *ctype, const char *body, size_t blen,
                        int head_only) {
  char hd[512];
  int n = snprintf(hd, sizeof hd,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                   "Connection: close\r\n\r\n",
                   status, reason_phrase(status), ctype, blen);
  if (n < 0 || (size_t)n >= sizeof hd) return -1;
  size_t total = (size_t)n + (head_only ? 0 : blen);
  char *o = (char *)malloc(total ? total : 1);
  if (!o) return -1;
  memcpy(o, hd, (size_t)n);
  if (!head_only && blen) memcpy(o + n, body, blen);
  free(c->out);
  c->out = o;
  c->outlen = total;
  c->outpos = 0;
  return 0;
}

static void plain_response(hconn_t *c, int status, const char *msg) {
  if (set_response(c, status, "text/plain; charset=utf-8", msg, strlen(msg), 0) != 0)
    hconn_close(c);
}

/* A whole request head is in c->in: parse its request line and ask the Lua handler (at
 * stack index hidx) for the answer. The handler runs in protected mode: an error is a 500. */
static void handle_request(lua_State *L, lhttpd_t *h, hconn_t *c, int hidx) {
  char method[16], path[1024];
  char *eol = (char *)memchr(c->in, '\r', c->inlen);
  size_t ll = eol ? (size_t)(eol - c->in) : 0;
  char line[1100];
  if (!eol || ll >= sizeof line) {
    h->bad++;
    plain_response(c, 400, "bad request\n");
    return;
  }
  memcpy(line, c->in, ll);
  line[ll] = 0;
  char version[16];
  if (sscanf(line, "%15s %1023s %15s", method, path, version) != 3 ||
      strncmp(version, "HTTP/1.", 7) != 0) {
    h->bad++;
    plain_response(c, 400, "bad request\n");
    return;
  }
  int top = lua_gettop(L);
  lua_pushvalue(L, hidx);
  lua_pushstring(L, method);
  lua_pushstring(L, path);
  if (lua_pcall(L, 2, 3, 0) != 0 || !lua_isnumber(L, -3)) {
    lua_settop(L, top);
    plain_response(c, 500, "handler failed\n");
    return;
  }
  int status = (int)lua_tonumber(L, -3);
  const char *ctype = luaL_optstring(L, -2, "text/plain; charset=utf-8");
  size_t blen = 0;
  const char *body = lua_tolstring(L, -1, &blen);
  if (status < 100 || status > 599 || strpbrk(ctype, "\r\n")) status = 500, ctype = "text/plain";
  if (set_response(c, status, ctype, body ? body : "", body ? blen : 0,
                   strcmp(method, "HEAD") == 0) != 0)
    hconn_close(c);
  else
    h->served++;
  lua_settop(L, top);
}

/* Reads what c has; answers once the head is complete (or too large). */
static void conn_read(lua_State *L, lhttpd_t *h, hconn_t *c, int hidx) {
  for (;;) {
    if (c->inlen >= h->max_request) {
      h->too_large++;
      plain_response(c, 431, "request too large\n");
      return;
    }
    ssize_t r = recv(c->fd, c->in + c->inlen, h->max_request - c->inlen, 0);
    if (r > 0) {
      c->inlen += (size_t)r;
      if (c->inlen >= 4 && memmem(c->in, c->inlen, "\r\n\r\n", 4)) {
        handle_request(L, h, c, hidx);
        return;
      }
      continue;
    }
    if (r == 0) {
      hconn_close(c); /* the peer went away before a whole request */
      return;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) hconn_close(c);
    return;
  }
}

static void conn_write(hconn_t *c) {
  while (c->outpos < c->outlen) {
    ssize_t w = send(c->fd, c->out + c->outpos, c->outlen - c->outpos, MSG_NOSIGNAL);
    if (w > 0) {
      c->outpos += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    break;
  }
  hconn_close(c); /* all written (Connection: close), or the peer is gone */
}

static void httpd_accept(lhttpd_t *h, double now) {
  for (;;) {
    int slot = -1;
    for (int i = 0; i < h->max_conns; i++)
      if (h->conns[i].fd < 0) {
        slot = i;
        break;
      }
    if (slot < 0) return; /* full: the rest wait in the listen backlog */
    int fd = accept4(h->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    hconn_t *c = &h->conns[slot];
    c->in = (char *)malloc(h->max_request);
    if (!c->in) {
      close(fd);
      return;
    }
    c->fd = fd;
    c->inlen = 0;
    c->deadline = now + h->timeout_ms;
    h->accepted++;
  }
}

/* ---- wait ------------------------------------------------------------------------------- */

/* core.wait(timeout_ms, fds, srv): poll() on the fds (readable) and srv's sockets; serves srv;
 * returns {[fd] = true} for the fds of the list that are readable. A negative timeout: no
 * limit. EINTR is a return with nothing ready. */
static int l_wait(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lhttpd_t *h = lua_isnoneornil(L, 3) ? NULL : check_httpd(L, 3);
  struct pollfd pfd[WAIT_MAX_FDS + 1 + 1024];
  int nf = (int)lua_rawlen(L, 2);
  if (nf > WAIT_MAX_FDS) return luaL_error(L, "genesys.notify: wait: at most %d fds", WAIT_MAX_FDS);
  for (int i = 0; i < nf; i++) {
    lua_rawgeti(L, 2, i + 1);
    pfd[i].fd = (int)luaL_checkinteger(L, -1);
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
    lua_pop(L, 1);
  }
  int n = nf;
  double now = mono_ms();
  double deadline = t < 0 ? HUGE_VAL : now + t;
  int hidx = 0;
  int slot_of[1025];
  if (h) {
    lua_getuservalue(L, 3);
    lua_getfield(L, -1, "handler");
    hidx = lua_gettop(L);
    int full = 1;
    for (int i = 0; i < h->max_conns; i++) {
      hconn_t *c = &h->conns[i];
      if (c->fd < 0) {
        full = 0;
        continue;
      }
      if (c->deadline < deadline) deadline = c->deadline;
      pfd[n].fd = c->fd;
      pfd[n].events = c->out ? POLLOUT : POLLIN;
      pfd[n].revents = 0;
      slot_of[n - nf] = i;
      n++;
    }
    if (!full) {
      pfd[n].fd = h->lfd;
      pfd[n].events = POLLIN;
      pfd[n].revents = 0;
      slot_of[n - nf] = -1;
      n++;
    }
  }
  double wait = deadline - now;
  int ms = wait == HUGE_VAL ? -1 : wait <= 0 ? 0 : wait > 2147483647.0 ? 2147483647 : (int)ceil(wait);
  int r = poll(pfd, (nfds_t)n, ms);
  lua_createtable(L, 0, nf);
  int res = lua_gettop(L);
  if (r < 0) r = 0; /* EINTR: nothing ready */
  for (int i = 0; i < nf; i++)
    if (pfd[i].revents) {
      lua_pushboolean(L, 1);
      lua_rawseti(L, res, pfd[i].fd);
    }
  if (h) {
    now = mono_ms();
    for (int k = nf; k < n; k++) {
      if (!pfd[k].revents) continue;
      int slot = slot_of[k - nf];
      if (slot < 0) continue;
      hconn_t *c = &h->conns[slot];
      if (c->fd < 0) continue;
      if (c->out) conn_write(c);
      else conn_read(L, h, c, hidx);
      if (c->fd >= 0 && c->out && (pfd[k].events & POLLIN)) conn_write(c); /* answer at once */
    }
    for (int i = 0; i < h->max_conns; i++) {
      hconn_t *c = &h->conns[i];
      if (c->fd >= 0 && now >= c->deadline) {
        h->timed_out++;
        hconn_close(c);
      }
    }
    if (n > nf && pfd[n - 1].fd == h->lfd && pfd[n - 1].revents) httpd_accept(h, now);
  }
  lua_pushvalue(L, res);
  return 1;
}

/* ---- small things ----------------------------------------------------------------------- */

/* core.wall_ms(): the wall clock in milliseconds (health items' timestamp_ms clock). */
static int l_wall_ms(lua_State *L) {
  lua_pushnumber(L, gn_now_wall_ms());
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* core.event_line(raw, channel_id, received_ms): the CLI's JSON line for an event (without the
 * newline): {"topic","channel_id","received","received_ms","correlation_id","body"}, the body
 * as the server sent it (jansson keeps integers exact and {} apart from []). nil and a message
 * when raw is not a JSON object. */
static int l_event_line(lua_State *L) {
  size_t len;
  const char *raw = luaL_checklstring(L, 1, &len);
  const char *chan = luaL_optstring(L, 2, "");
  double ms = luaL_optnumber(L, 3, 0);
  json_error_t je;
  json_t *j = json_loadb(raw, len, 0, &je);
  if (!j || !json_is_object(j)) {
    json_decref(j);
    lua_pushnil(L);
    lua_pushstring(L, j ? "not a JSON object" : je.text);
    return 2;
  }
  char ts[64];
  time_t secs = (time_t)floor(ms / 1000.0);
  struct tm tm;
  gmtime_r(&secs, &tm);
  size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + tl, sizeof ts - tl, ".%03dZ", (int)fmod(ms, 1000.0));
  json_t *o = json_object();
  json_t *topic = json_object_get(j, "topicName");
  json_t *corr = json_object_get(json_object_get(j, "metadata"), "CorrelationId");
  json_t *body = json_object_get(j, "eventBody");
  int bad = !o;
  bad |= json_object_set_new(o, "topic", json_is_string(topic) ? json_incref(topic) : json_null());
  bad |= json_object_set_new(o, "channel_id", json_string(chan));
  bad |= json_object_set_new(o, "received", json_string(ts));
  bad |= json_object_set_new(o, "received_ms", json_integer((json_int_t)ms));
  bad |= json_object_set_new(o, "correlation_id", json_is_string(corr) ? json_incref(corr) : json_null());
  bad |= json_object_set_new(o, "body", body ? json_incref(body) : json_null());
  char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
  json_decref(o);
  json_decref(j);
  if (!s) return luaL_error(L, "genesys.notify: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

int lgn_open_cli(lua_State *L) {
  if (luaL_newmetatable(L, LGN_SIGFD_MT)) {
    static const luaL_Reg m[] = {{"fd", l_sigfd_fd}, {"read", l_sigfd_read},
                                 {"close", l_sigfd_close}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, m, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_sigfd_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, LGN_HTTPD_MT)) {
    static const luaL_Reg m[] = {{"port", l_httpd_port}, {"stats", l_httpd_stats},
                                 {"close", l_httpd_close}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, m, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_httpd_close);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  static const luaL_Reg f[] = {{"signalfd", l_signalfd}, {"http_server", l_http_server},
                               {"wait", l_wait},         {"isatty", l_isatty},
                               {"event_line", l_event_line}, {"wall_ms", l_wall_ms},
                               {NULL, NULL}};
  luaL_setfuncs(L, f, 0);
  return 0;
}
