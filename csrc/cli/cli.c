/* cli.c: genesys.notify.cli, what the genesys-notify command (bin/genesys-notify) needs from C and
 * plain Lua lacks; its own module (build/<lua>/genesys/notify/cli.so), not part of core.so, so
 * nginx and applications never load the command's signal handling or HTTP listener:
 *
 *   sig = cli.signalfd{"HUP", "INT", "TERM", "PIPE"}  -- blocks them in this thread; sig:fd(),
 *                                              -- sig:read() -> {"HUP", ...}, sig:close()
 *   out = cli.output{fd = 1, limit = bytes}    -- stdout that never blocks (below)
 *   srv = cli.http_server{...}                 -- the /metrics responder (cli_http.c)
 *   ready = cli.wait(timeout_ms, {fd, ...}, srv_or_nil, out_or_nil)
 *                                              -- {[fd] = true} of the readable fds; srv's sockets
 *                                              -- are served and out is written inside the call
 *   cli.read_secret(path) -> text | nil, message  -- checked as ssh checks a key (below)
 *   cli.isatty(fd), cli.wall_ms(), cli.event_line(raw, channel_id, received_ms)
 *
 * Everything here runs on the command's Lua thread; the library's service thread blocks every
 * signal itself, so a signal blocked here too reaches the signalfd.
 */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define LCLI_SIGFD_MT "genesys.notify.cli.signalfd"
#define LCLI_OUT_MT "genesys.notify.cli.output"
#define WAIT_MAX_FDS 64
#define SRV_MAX_FDS 1100

int luaopen_genesys_notify_cli(lua_State *L) __attribute__((visibility("default")));

double lcli_mono_ms(void) {
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
      return luaL_error(L, "genesys.notify.cli: signalfd: signals[%d]: expected HUP, INT, TERM, "
                           "USR1, USR2 or PIPE, got %s", (int)i, name ? name : luaL_typename(L, -1));
    sigaddset(&set, sig);
    lua_pop(L, 1);
  }
  lsigfd_t *s = (lsigfd_t *)lua_newuserdata(L, sizeof *s);
  s->fd = -1;
  luaL_setmetatable(L, LCLI_SIGFD_MT);
  /* Blocked in this thread: threads created from it later inherit the mask; the service thread
   * blocks every signal itself. A blocked signal stays pending for the signalfd. */
  int rc = pthread_sigmask(SIG_BLOCK, &set, NULL);
  if (rc != 0) return luaL_error(L, "genesys.notify.cli: signalfd: %s", strerror(rc));
  s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  if (s->fd < 0) return luaL_error(L, "genesys.notify.cli: signalfd: %s", strerror(errno));
  return 1;
}

static lsigfd_t *check_sigfd(lua_State *L) {
  lsigfd_t *s = (lsigfd_t *)luaL_checkudata(L, 1, LCLI_SIGFD_MT);
  if (s->fd < 0) luaL_error(L, "genesys.notify.cli: the signalfd is closed");
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
  lsigfd_t *s = (lsigfd_t *)luaL_checkudata(L, 1, LCLI_SIGFD_MT);
  if (s->fd >= 0) close(s->fd);
  s->fd = -1;
  return 0;
}

/* ---- output that never blocks -----------------------------------------------------------
 * Lines go into a buffer of at most `limit` bytes (a line that does not fit is dropped and
 * counted); the buffer is written whenever the descriptor takes bytes, never waiting for it. A
 * full pipe (`| less` paused, a FIFO nobody reads) therefore never stops the command's loop:
 * signals, /metrics and the library keep being served. How the descriptor is made non-blocking
 * without touching what other processes share: a regular file or block device is written as is
 * (it does not wait on a reader); a socket with MSG_DONTWAIT; a pipe, FIFO or terminal through
 * a description of its own (/proc/self/fd/N opened with O_NONBLOCK); only when that fails is
 * O_NONBLOCK set on the shared one, and put back at close. */
enum { W_PLAIN, W_OWN, W_SEND, W_FLAGGED };

typedef struct {
  int fd, orig, mode, saved_flags, err;
  char *buf;
  size_t start, len, cap, limit;
  unsigned long long written, dropped_lines, dropped_bytes;
} lout_t;

static lout_t *check_out(lua_State *L, int i) {
  return (lout_t *)luaL_checkudata(L, i, LCLI_OUT_MT);
}

static int l_output(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "fd");
  int fd = (int)luaL_optinteger(L, -1, 1);
  lua_getfield(L, 1, "limit");
  lua_Number limit = luaL_optnumber(L, -1, 64.0 * 1024 * 1024);
  lua_pop(L, 2);
  if (limit < 4096 || limit > 1e12)
    return luaL_error(L, "genesys.notify.cli: output: limit: expected 4096 to 1e12 bytes");
  struct stat st;
  if (fstat(fd, &st) != 0) return luaL_error(L, "genesys.notify.cli: output: fd %d: %s", fd,
                                             strerror(errno));
  lout_t *o = (lout_t *)lua_newuserdata(L, sizeof *o);
  memset(o, 0, sizeof *o);
  o->fd = o->orig = fd;
  o->saved_flags = -1;
  o->limit = (size_t)limit;
  luaL_setmetatable(L, LCLI_OUT_MT);
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
    o->mode = W_PLAIN;
  } else if (S_ISSOCK(st.st_mode)) {
    o->mode = W_SEND;
  } else {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    int nfd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (nfd >= 0) {
      o->fd = nfd;
      o->mode = W_OWN;
    } else {
      int fl = fcntl(fd, F_GETFL);
      o->mode = W_FLAGGED;
      if (fl >= 0 && !(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0)
        o->saved_flags = fl;
    }
  }
  lua_pushstring(L, o->mode == W_PLAIN ? "plain" : o->mode == W_OWN ? "own" :
                    o->mode == W_SEND ? "send" : "flagged");
  return 2;
}

/* out:write(s): true, or false when s does not fit within the limit (dropped, counted). */
static int l_out_write(lua_State *L) {
  lout_t *o = check_out(L, 1);
  size_t n;
  const char *s = luaL_checklstring(L, 2, &n);
  if (o->len + n > o->limit) {
    o->dropped_lines++;
    o->dropped_bytes += n;
    lua_pushboolean(L, 0);
    return 1;
  }
  if (o->start + o->len + n > o->cap) {
    if (o->start) { /* move what is left to the front first */
      memmove(o->buf, o->buf + o->start, o->len);
      o->start = 0;
    }
    if (o->len + n > o->cap) {
      size_t cap = o->cap ? o->cap : 65536;
      while (cap < o->len + n) cap *= 2;
      char *b = (char *)realloc(o->buf, cap);
      if (!b) return luaL_error(L, "genesys.notify.cli: output: out of memory");
      o->buf = b;
      o->cap = cap;
    }
  }
  memcpy(o->buf + o->start + o->len, s, n);
  o->len += n;
  lua_pushboolean(L, 1);
  return 1;
}

/* Writes what the descriptor takes now. Returns 0, or the errno of a failed write (sticky). */
static int out_flush(lout_t *o) {
  while (o->len && !o->err) {
    ssize_t w = o->mode == W_SEND
                    ? send(o->fd, o->buf + o->start, o->len, MSG_DONTWAIT | MSG_NOSIGNAL)
                    : write(o->fd, o->buf + o->start, o->len);
    if (w > 0) {
      o->start += (size_t)w;
      o->len -= (size_t)w;
      o->written += (unsigned long long)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    o->err = w < 0 ? errno : EIO;
  }
  if (!o->len && o->cap > (1u << 20)) { /* a burst's buffer is not kept */
    free(o->buf);
    o->buf = NULL;
    o->cap = 0;
  }
  if (!o->len) o->start = 0;
  return o->err;
}

/* out:flush(): true, or nil and the error of a failed write (a reader that went away). */
static int l_out_flush(lua_State *L) {
  lout_t *o = check_out(L, 1);
  int e = o->fd >= 0 ? out_flush(o) : EBADF;
  if (!e) {
    lua_pushboolean(L, 1);
    return 1;
  }
  lua_pushnil(L);
  lua_pushstring(L, strerror(e));
  return 2;
}

static int l_out_pending(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)check_out(L, 1)->len);
  return 1;
}

/* out:stats(): {written_bytes, pending_bytes, dropped_lines, dropped_bytes}. */
static int l_out_stats(lua_State *L) {
  lout_t *o = check_out(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushnumber(L, (lua_Number)o->written);
  lua_setfield(L, -2, "written_bytes");
  lua_pushnumber(L, (lua_Number)o->len);
  lua_setfield(L, -2, "pending_bytes");
  lua_pushnumber(L, (lua_Number)o->dropped_lines);
  lua_setfield(L, -2, "dropped_lines");
  lua_pushnumber(L, (lua_Number)o->dropped_bytes);
  lua_setfield(L, -2, "dropped_bytes");
  return 1;
}

/* out:close(): puts back the shared description's flags, closes its own one. Idempotent. */
static int l_out_close(lua_State *L) {
  lout_t *o = check_out(L, 1);
  if (o->mode == W_OWN && o->fd >= 0) close(o->fd);
  if (o->mode == W_FLAGGED && o->saved_flags >= 0) fcntl(o->orig, F_SETFL, o->saved_flags);
  o->saved_flags = -1;
  o->fd = -1;
  free(o->buf);
  o->buf = NULL;
  o->start = o->len = o->cap = 0;
  return 0;
}

/* ---- wait ------------------------------------------------------------------------------- */

/* cli.wait(timeout_ms, fds, srv, out): poll() on the fds (readable), srv's sockets and out's
 * descriptor (writable, while it holds bytes); serves srv and writes out; returns {[fd] = true}
 * for the fds of the list that are readable. A negative timeout: no limit. EINTR is a return
 * with nothing ready. */
static int l_wait(lua_State *L) {
  lua_Number t = luaL_checknumber(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lcli_httpd_t *h = lua_isnoneornil(L, 3) ? NULL : lcli_check_httpd(L, 3);
  lout_t *o = lua_isnoneornil(L, 4) ? NULL : check_out(L, 4);
  struct pollfd pfd[WAIT_MAX_FDS + 1 + SRV_MAX_FDS];
  int slot[SRV_MAX_FDS];
  int nf = (int)lua_rawlen(L, 2);
  if (nf > WAIT_MAX_FDS)
    return luaL_error(L, "genesys.notify.cli: wait: at most %d fds", WAIT_MAX_FDS);
  for (int i = 0; i < nf; i++) {
    lua_rawgeti(L, 2, i + 1);
    pfd[i].fd = (int)luaL_checkinteger(L, -1);
    pfd[i].events = POLLIN;
    pfd[i].revents = 0;
    lua_pop(L, 1);
  }
  int n = nf, oi = -1;
  if (o && o->fd >= 0 && o->len && !o->err) {
    oi = n++;
    pfd[oi].fd = o->fd;
    pfd[oi].events = POLLOUT;
    pfd[oi].revents = 0;
  }
  double now = lcli_mono_ms();
  double deadline = t < 0 ? HUGE_VAL : now + t;
  int hidx = 0, hn = 0;
  if (h) {
    lua_getuservalue(L, 3);
    lua_getfield(L, -1, "handler");
    hidx = lua_gettop(L);
    hn = lcli_httpd_pollfds(h, pfd + n, slot, SRV_MAX_FDS, &deadline);
  }
  double wait = deadline - now;
  int ms = wait == HUGE_VAL ? -1 : wait <= 0 ? 0 : wait > 2147483647.0 ? 2147483647 : (int)ceil(wait);
  if (poll(pfd, (nfds_t)(n + hn), ms) < 0)
    for (int i = 0; i < n + hn; i++) pfd[i].revents = 0; /* EINTR: nothing ready */
  lua_createtable(L, 0, nf);
  int res = lua_gettop(L);
  for (int i = 0; i < nf; i++)
    if (pfd[i].revents) {
      lua_pushboolean(L, 1);
      lua_rawseti(L, res, pfd[i].fd);
    }
  if (oi >= 0 && pfd[oi].revents) out_flush(o);
  if (h) lcli_httpd_serve(L, h, pfd + n, slot, hn, hidx);
  lua_pushvalue(L, res);
  return 1;
}

/* ---- the secret file -------------------------------------------------------------------- */

/* cli.read_secret(path): the file's bytes when it is a regular file owned by the effective user
 * that neither group nor others may read or write (ssh's rule for a private key), else nil and
 * a message naming the file, what is wrong and the fix; nil, strerror and "unreadable" when it
 * cannot be opened. At most 64 KiB. */
static int l_read_secret(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  struct stat st;
  char msg[600];
  if (fd < 0 || fstat(fd, &st) != 0) {
    snprintf(msg, sizeof msg, "%s", strerror(errno));
    if (fd >= 0) close(fd);
    lua_pushnil(L);
    lua_pushstring(L, msg);
    lua_pushliteral(L, "unreadable");
    return 3;
  } else if (!S_ISREG(st.st_mode)) {
    snprintf(msg, sizeof msg, "%s is not a regular file", path);
  } else if (st.st_uid != geteuid()) {
    snprintf(msg, sizeof msg, "%s is owned by uid %u, not by this user (uid %u): a secret file "
             "must be yours (chown %u %s)", path, (unsigned)st.st_uid, (unsigned)geteuid(),
             (unsigned)geteuid(), path);
  } else if (st.st_mode & 077) {
    snprintf(msg, sizeof msg, "%s has mode %04o: others than its owner may %s it (chmod 600 %s)",
             path, (unsigned)(st.st_mode & 07777), (st.st_mode & 044) ? "read" : "change", path);
  } else if (st.st_size > 65536) {
    snprintf(msg, sizeof msg, "%s holds %lld bytes: a secret file holds one line", path,
             (long long)st.st_size);
  } else {
    char buf[65537];
    size_t n = 0;
    for (;;) {
      ssize_t r = read(fd, buf + n, sizeof buf - n);
      if (r > 0 && (n += (size_t)r) < sizeof buf) continue;
      if (r < 0 && errno == EINTR) continue;
      break;
    }
    close(fd);
    lua_pushlstring(L, buf, n);
    memset(buf, 0, n); /* no copy of the secret left on the stack */
    return 1;
  }
  if (fd >= 0) close(fd);
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

/* ---- small things ----------------------------------------------------------------------- */

/* cli.wall_ms(): the wall clock in milliseconds (health items' timestamp_ms clock). */
static int l_wall_ms(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000000));
  return 1;
}

static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
  return 1;
}

/* cli.event_line(raw, channel_id, received_ms): the command's JSON line for an event (without
 * the newline): {"topic","channel_id","received","received_ms","correlation_id","body"}, the body
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
  bad |= json_object_set_new(o, "correlation_id",
                             json_is_string(corr) ? json_incref(corr) : json_null());
  bad |= json_object_set_new(o, "body", body ? json_incref(body) : json_null());
  char *s = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENCODE_ANY);
  json_decref(o);
  json_decref(j);
  if (!s) return luaL_error(L, "genesys.notify.cli: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

void lcli_new_class(lua_State *L, const char *mt, const luaL_Reg *m, lua_CFunction gc) {
  if (luaL_newmetatable(L, mt)) {
    lua_newtable(L);
    luaL_setfuncs(L, m, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
}

int luaopen_genesys_notify_cli(lua_State *L) {
  static const luaL_Reg sig_m[] = {{"fd", l_sigfd_fd}, {"read", l_sigfd_read},
                                   {"close", l_sigfd_close}, {NULL, NULL}};
  static const luaL_Reg out_m[] = {{"write", l_out_write}, {"flush", l_out_flush},
                                   {"pending", l_out_pending}, {"stats", l_out_stats},
                                   {"close", l_out_close}, {NULL, NULL}};
  lcli_new_class(L, LCLI_SIGFD_MT, sig_m, l_sigfd_close);
  lcli_new_class(L, LCLI_OUT_MT, out_m, l_out_close);
  static const luaL_Reg f[] = {{"signalfd", l_signalfd},   {"output", l_output},
                               {"wait", l_wait},           {"read_secret", l_read_secret},
                               {"isatty", l_isatty},       {"event_line", l_event_line},
                               {"wall_ms", l_wall_ms},     {NULL, NULL}};
  lua_newtable(L);
  luaL_setfuncs(L, f, 0);
  lcli_open_http(L);
  return 1;
}
