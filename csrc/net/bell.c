/* bell.c: the unix-socket wake-up bell (see bell.h).
 *
 * Threads: the listening socket, the peers and their uv handles are the service thread's (the
 * open and close tasks, the callbacks). gn_bell_ring() may come from any thread: it writes the
 * byte to every peer itself, under reg_mu, which every creation and close of a peer's descriptor
 * holds too (so each descriptor it writes to is the peer's). It used to hand the ring to the
 * service thread (a uv_async), which was busy reading the stream exactly when a holder in nginx
 * rang: the other workers heard the bell 1.6 ms late at the median, 5 ms at the 90th percentile
 * (docs/openresty.md).
 *
 * Fork: every descriptor of every bell is recorded in the bell under reg_mu, the registry's lock,
 * which the atfork handlers hold across fork(); a descriptor is created and recorded, or closed
 * and forgotten, in one critical section. So the child's handler sees exactly the descriptors
 * that exist and closes them all.
 *
 * Lock order: a queue's lock, then reg_mu (gn_bell_ring from the queue); b->mu and reg_mu are
 * never held together.
 */
#include "bell.h"
#include "service.h"
#include "gn_util.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#define ACCEPTS_PER_WAKE 64 /* connections taken per readable listening socket */
#define READS_PER_WAKE 8    /* reads of what a peer sent, per wake-up */
#define EMFILE_PAUSE_MS 100 /* out of descriptors: stop accepting for this long */

typedef struct peer {
  uv_poll_t poll;
  gn_bell_t *b;
  int fd;
  int slot;
} peer_t;

struct gn_bell {
  gn_service_t *svc;
  pid_t pid;
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char dir[sizeof(((struct sockaddr_un *)0)->sun_path)]; /* private directory, or "" */
  dev_t dev;
  ino_t ino;
  int lfd; /* reg_mu */
  uv_poll_t lpoll;
  uv_timer_t pause;
  peer_t *peers[GN_BELL_MAX_PEERS]; /* the slots and fds: reg_mu; the rest: the loop */
  int npeers;
  int top; /* reg_mu: every peer's slot is below it */

  pthread_mutex_t mu; /* guards the fields below */
  pthread_cond_t cv;
  int opened;  /* the open task ran: 1, or -1 failed */
  int pending; /* handles whose close callback has not run yet */
  int done;    /* every handle closed */

  _Atomic uint64_t n_peers, accepted, refused, rings, skipped;
  struct gn_bell *reg_next, *reg_prev; /* reg_mu */
};

/* ---- the registry, for fork ---- */
static pthread_mutex_t reg_mu = PTHREAD_MUTEX_INITIALIZER;
static gn_bell_t *reg_head;
static pthread_once_t reg_once = PTHREAD_ONCE_INIT;

static void reg_prepare(void) { pthread_mutex_lock(&reg_mu); }
static void reg_parent(void) { pthread_mutex_unlock(&reg_mu); }
/* The child: every bell is the parent's. Close our copies of its descriptors (its peers then see
 * EOF when the parent closes or dies, whatever the child does) and forget them. */
static void reg_child(void) {
  for (gn_bell_t *b = reg_head; b; b = b->reg_next) {
    if (b->lfd >= 0) close(b->lfd);
    b->lfd = -1;
    for (int i = 0; i < GN_BELL_MAX_PEERS; i++)
      if (b->peers[i] && b->peers[i]->fd >= 0) {
        close(b->peers[i]->fd);
        b->peers[i]->fd = -1;
      }
  }
  pthread_mutex_unlock(&reg_mu);
}
static void reg_init(void) { pthread_atfork(reg_prepare, reg_parent, reg_child); }

/* reg_mu held. */
static void reg_add(gn_bell_t *b) {
  b->reg_prev = NULL;
  b->reg_next = reg_head;
  if (reg_head) reg_head->reg_prev = b;
  reg_head = b;
}
static void reg_remove(gn_bell_t *b) {
  if (b->reg_prev) b->reg_prev->reg_next = b->reg_next;
  else reg_head = b->reg_next;
  if (b->reg_next) b->reg_next->reg_prev = b->reg_prev;
}

/* ---- loop thread ---- */

/* One more handle of b is closed; the last one lets gn_bell_free go on. */
static void closed_one(gn_bell_t *b) {
  pthread_mutex_lock(&b->mu);
  if (--b->pending == 0) {
    b->done = 1;
    pthread_cond_broadcast(&b->cv);
  }
  pthread_mutex_unlock(&b->mu);
}

static void handle_closed(uv_handle_t *h) { closed_one(h->data); }

static void peer_closed(uv_handle_t *h) {
  peer_t *p = (peer_t *)h;
  gn_bell_t *b = p->b;
  free(p);
  closed_one(b);
}

/* Closes a peer: its handle, its descriptor, its slot. Loop thread. */
static void peer_close(peer_t *p) {
  gn_bell_t *b = p->b;
  uv_close((uv_handle_t *)&p->poll, peer_closed); /* stops polling the fd first */
  pthread_mutex_lock(&reg_mu);
  if (p->fd >= 0) close(p->fd);
  p->fd = -1;
  b->peers[p->slot] = NULL;
  pthread_mutex_unlock(&reg_mu);
  b->npeers--;
  atomic_fetch_sub(&b->n_peers, 1);
}

/* One byte to the peer at fd, unless its buffer is full. Any thread, reg_mu held (the fd is the
 * peer's). A peer that is gone (EPIPE, ECONNRESET) is left to the loop, which sees its EOF or
 * error and closes it (peer_cb). */
static void peer_ring(gn_bell_t *b, int fd) {
  ssize_t w = send(fd, "!", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
  if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
    atomic_fetch_add(&b->skipped, 1); /* it has unread bytes: it will wake anyway */
}

/* What a peer sends is read and dropped; EOF or an error closes it. */
static void peer_cb(uv_poll_t *h, int status, int events) {
  peer_t *p = (peer_t *)h;
  if (status < 0) {
    peer_close(p);
    return;
  }
  char buf[256];
  for (int i = 0; i < READS_PER_WAKE; i++) {
    ssize_t r = recv(p->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (r > 0) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
    peer_close(p); /* 0: EOF; else an error */
    return;
  }
}

static void lpoll_cb(uv_poll_t *h, int status, int events);

static void pause_cb(uv_timer_t *t) {
  gn_bell_t *b = t->data;
  uv_poll_start(&b->lpoll, UV_READABLE, lpoll_cb);
}

static void lpoll_cb(uv_poll_t *h, int status, int events) {
  gn_bell_t *b = h->data;
  if (status < 0) return;
  for (int n = 0; n < ACCEPTS_PER_WAKE; n++) {
    pthread_mutex_lock(&reg_mu);
    int fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      int e = errno;
      pthread_mutex_unlock(&reg_mu);
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        /* The connection stays in the backlog: poll again later, not in a busy loop. */
        atomic_fetch_add(&b->refused, 1);
        uv_poll_stop(&b->lpoll);
        uv_timer_start(&b->pause, pause_cb, EMFILE_PAUSE_MS, 0);
      }
      return; /* EAGAIN: nothing more; ECONNABORTED and the like: the next wake-up */
    }
    int slot = -1;
    if (b->npeers < GN_BELL_MAX_PEERS)
      for (int i = 0; i < GN_BELL_MAX_PEERS; i++)
        if (!b->peers[i]) {
          slot = i;
          break;
        }
    peer_t *p = slot >= 0 ? calloc(1, sizeof *p) : NULL;
    if (!p || uv_poll_init(gn_service_loop(b->svc), &p->poll, fd) != 0) {
      /* Counted before the close: a peer that sees its EOF also sees the count. */
      atomic_fetch_add(&b->refused, 1);
      close(fd); /* the peer sees EOF at once */
      pthread_mutex_unlock(&reg_mu);
      free(p);
      continue;
    }
    p->b = b;
    p->fd = fd;
    p->slot = slot;
    p->poll.data = b;
    b->peers[slot] = p;
    if (slot >= b->top) b->top = slot + 1;
    /* Counted before its first byte: a peer woken by it also sees itself in stats(). */
    b->npeers++;
    atomic_fetch_add(&b->n_peers, 1);
    atomic_fetch_add(&b->accepted, 1);
    peer_ring(b, fd); /* so it drains what waited before it came */
    pthread_mutex_unlock(&reg_mu);
    pthread_mutex_lock(&b->mu);
    b->pending++;
    pthread_mutex_unlock(&b->mu);
    uv_poll_start(&p->poll, UV_READABLE | UV_DISCONNECT, peer_cb);
  }
}

static void open_task(gn_service_t *svc, void *arg) {
  gn_bell_t *b = arg;
  uv_loop_t *loop = gn_service_loop(svc);
  int ok = uv_poll_init(loop, &b->lpoll, b->lfd) == 0;
  if (ok) {
    b->lpoll.data = b;
    uv_timer_init(loop, &b->pause);
    b->pause.data = b;
    uv_poll_start(&b->lpoll, UV_READABLE, lpoll_cb);
  }
  pthread_mutex_lock(&b->mu);
  b->opened = ok ? 1 : -1;
  b->pending = ok ? 2 : 0;
  pthread_cond_broadcast(&b->cv);
  pthread_mutex_unlock(&b->mu);
}

static void close_task(gn_service_t *svc, void *arg) {
  gn_bell_t *b = arg;
  for (int i = 0; i < GN_BELL_MAX_PEERS; i++)
    if (b->peers[i]) peer_close(b->peers[i]);
  uv_close((uv_handle_t *)&b->lpoll, handle_closed);
  pthread_mutex_lock(&reg_mu);
  if (b->lfd >= 0) close(b->lfd);
  b->lfd = -1;
  pthread_mutex_unlock(&reg_mu);
  uv_close((uv_handle_t *)&b->pause, handle_closed);
}

/* ---- owner thread ---- */

static const char *file_kind(mode_t m) {
  if (S_ISREG(m)) return "a regular file";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  return "a file that is not a socket";
}

gn_bell_t *gn_bell_new(gn_service_t *svc, const char *path, char *err, size_t errlen) {
  pthread_once(&reg_once, reg_init);
  gn_bell_t *b = calloc(1, sizeof *b);
  if (!b) {
    snprintf(err, errlen, "out of memory");
    return NULL;
  }
  b->lfd = -1;
  b->pid = getpid();
  pthread_mutex_init(&b->mu, NULL);
  pthread_cond_init(&b->cv, NULL);
  const size_t max = sizeof b->path - 1;
  if (!path) {
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp) tmp = "/tmp";
    int n = snprintf(b->dir, sizeof b->dir, "%s/gn-notify-XXXXXX", tmp);
    if (n < 0 || (size_t)n + sizeof "/wake.sock" - 1 > max) {
      snprintf(err, errlen, "TMPDIR: expected a directory path short enough for a unix socket "
               "path (at most %zu bytes with \"/gn-notify-XXXXXX/wake.sock\"), got %zu bytes",
               max, strlen(tmp));
      goto fail;
    }
    if (!mkdtemp(b->dir)) {
      snprintf(err, errlen, "TMPDIR: cannot make a private directory under \"%s\" (%s)", tmp,
               strerror(errno));
      b->dir[0] = 0;
      goto fail;
    }
    size_t dl = strlen(b->dir);
    memcpy(b->path, b->dir, dl);
    memcpy(b->path + dl, "/wake.sock", sizeof "/wake.sock"); /* fits: checked above */
  } else {
    size_t n = strlen(path);
    if (n == 0 || n > max) {
      snprintf(err, errlen, "path: expected a unix socket path of 1 to %zu bytes, got %zu bytes",
               max, n);
      goto fail;
    }
    struct stat st;
    if (lstat(path, &st) == 0) {
      if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "path: expected a free path or a stale socket file, got %s at "
                 "\"%s\"", file_kind(st.st_mode), path);
        goto fail;
      }
      if (unlink(path) != 0 && errno != ENOENT) {
        snprintf(err, errlen, "path: cannot replace the socket file at \"%s\" (%s)", path,
                 strerror(errno));
        goto fail;
      }
    }
    memcpy(b->path, path, n + 1);
  }
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  memcpy(sa.sun_path, b->path, strlen(b->path) + 1);
  /* Created, bound and recorded in one critical section: a fork meanwhile sees it recorded. */
  pthread_mutex_lock(&reg_mu);
  b->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int e = errno;
  const char *what = "socket";
  if (b->lfd >= 0) {
    what = "bind";
    if (bind(b->lfd, (struct sockaddr *)&sa, sizeof sa) == 0) {
      what = "listen";
      if (listen(b->lfd, 128) == 0) what = NULL;
    }
    e = errno;
  }
  if (what && b->lfd >= 0) {
    close(b->lfd);
    b->lfd = -1;
    if (strcmp(what, "listen") == 0) unlink(b->path); /* bound: the file is ours */
  }
  if (!what) reg_add(b);
  pthread_mutex_unlock(&reg_mu);
  if (what) {
    snprintf(err, errlen, "%s: cannot listen at \"%s\" (%s: %s)", path ? "path" : "TMPDIR",
             b->path, what, strerror(e));
    goto fail;
  }
  struct stat st;
  if (stat(b->path, &st) == 0) {
    b->dev = st.st_dev;
    b->ino = st.st_ino;
  }
  b->svc = svc;
  gn_service_ref(svc);
  if (gn_service_post(svc, open_task, b) != 0) {
    snprintf(err, errlen, "bell: the service thread is not available");
    goto fail_registered;
  }
  pthread_mutex_lock(&b->mu);
  while (b->opened == 0) pthread_cond_wait(&b->cv, &b->mu);
  int ok = b->opened == 1;
  pthread_mutex_unlock(&b->mu);
  if (!ok) {
    snprintf(err, errlen, "bell: cannot watch the socket on the service thread");
    goto fail_registered;
  }
  return b;
fail_registered:
  pthread_mutex_lock(&reg_mu);
  reg_remove(b);
  close(b->lfd);
  b->lfd = -1;
  pthread_mutex_unlock(&reg_mu);
  gn_service_release(b->svc);
  unlink(b->path);
fail:
  if (b->dir[0]) rmdir(b->dir);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
  return NULL;
}

const char *gn_bell_path(const gn_bell_t *b) { return b->path; }

int gn_bell_forked(const gn_bell_t *b) { return b->pid != getpid(); }

void gn_bell_ring(gn_bell_t *b) {
  if (gn_bell_forked(b)) return;
  atomic_fetch_add(&b->rings, 1);
  pthread_mutex_lock(&reg_mu);
  for (int i = 0; i < b->top; i++)
    if (b->peers[i] && b->peers[i]->fd >= 0) peer_ring(b, b->peers[i]->fd);
  pthread_mutex_unlock(&reg_mu);
}

void gn_bell_stats(gn_bell_t *b, gn_bell_stats_t *out) {
  out->peers = atomic_load(&b->n_peers);
  out->accepted = atomic_load(&b->accepted);
  out->refused = atomic_load(&b->refused);
  out->rings = atomic_load(&b->rings);
  out->skipped = atomic_load(&b->skipped);
}

void gn_bell_free(gn_bell_t *b) {
  if (!b || gn_bell_forked(b)) return; /* the child's copies were closed at the fork */
  /* The socket file goes first, and only if it is still ours (not a newer bell's at the same
   * path): a peer that sees its connection close then finds no file, rather than one whose
   * listener is gone (a refused connect, which nginx logs at level error). */
  struct stat st;
  if (lstat(b->path, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == b->dev &&
      st.st_ino == b->ino)
    unlink(b->path);
  if (gn_service_post(b->svc, close_task, b) != 0) return; /* out of memory: left to the loop */
  pthread_mutex_lock(&b->mu);
  while (!b->done) pthread_cond_wait(&b->cv, &b->mu);
  pthread_mutex_unlock(&b->mu);
  if (b->dir[0]) rmdir(b->dir);
  pthread_mutex_lock(&reg_mu);
  reg_remove(b);
  pthread_mutex_unlock(&reg_mu);
  gn_service_release(b->svc);
  pthread_mutex_destroy(&b->mu);
  pthread_cond_destroy(&b->cv);
  free(b);
}
