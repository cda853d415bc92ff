/* bell.h: a wake-up bell on a unix-domain stream socket, served by a context's service thread.
 *
 * Peers (an OpenResty cosocket, any process that can connect to a unix socket) connect to the
 * bell's path and wait for bytes; gn_bell_ring() writes one byte to every connected peer, from
 * the thread that rings (the service thread accepts and closes the peers). That is what an
 * eventfd cannot do for ngx_lua: a cosocket can wait on a unix socket, not on an eventfd. A
 * client's wake socket (client:wake_socket()) is a bell rung by its queue when items start
 * waiting; notify.bell(path) is one the application rings itself.
 *
 * Bounded and never blocking: at most GN_BELL_MAX_PEERS peers (one more is accepted and closed
 * at once, and counted as refused); one byte per peer per ring; writes are non-blocking, and a
 * peer whose buffer is full is skipped (it already has unread bytes); EPIPE never raises SIGPIPE
 * (MSG_NOSIGNAL); what a peer sends is read and thrown away, so its EOF is seen and its slot
 * freed. A new peer gets one byte at once, so it drains whatever was waiting before it
 * connected.
 *
 * Fork: a bell belongs to the process that created it. In a child forked after it, every
 * descriptor of the bell (the listening socket, the peers') is closed at the fork (so peers see
 * EOF when the bell's own process closes it or dies, whatever the child does); gn_bell_ring does
 * nothing there and gn_bell_free keeps the memory (the parent's copy-on-write pages) and leaves
 * the socket file, which is the parent's.
 */
#ifndef GN_BELL_H
#define GN_BELL_H

#include <stddef.h>
#include <stdint.h>

typedef struct gn_service gn_service_t;
typedef struct gn_bell gn_bell_t;

#define GN_BELL_MAX_PEERS 1024

typedef struct {
  uint64_t peers;    /* connected now */
  uint64_t accepted; /* peers accepted in all */
  uint64_t refused;  /* connections closed at once: GN_BELL_MAX_PEERS reached, or no memory */
  uint64_t rings;    /* rings */
  uint64_t skipped;  /* writes skipped because the peer's buffer was full */
} gn_bell_stats_t;

/* A bell listening at path, served by svc (a reference is taken). path NULL: a private
 * directory made with mkdtemp (mode 0700) under $TMPDIR or /tmp, removed again by gn_bell_free.
 * A socket file already at path is replaced (unlinked first); anything else there is refused.
 * Returns the bell, or NULL and err ("path: expected ..., got ..." for a bad path). Owner
 * thread (any thread but svc's). */
gn_bell_t *gn_bell_new(gn_service_t *svc, const char *path, char *err, size_t errlen);
/* The socket's path. Any thread. */
const char *gn_bell_path(const gn_bell_t *b);
/* Writes one byte to every peer now (never blocks: a peer whose buffer is full is skipped).
 * Returns nothing. Any thread of the creating process, the service thread included. */
void gn_bell_ring(gn_bell_t *b);
/* The counters. Returns nothing. Any thread. */
void gn_bell_stats(gn_bell_t *b, gn_bell_stats_t *out);
/* Returns 1 when b was created by another process (this one was forked after it). */
int gn_bell_forked(const gn_bell_t *b);
/* Closes every peer (they see EOF) and the listening socket, removes the socket file (if it is
 * still this bell's) and the private directory, waits until the service thread has let go,
 * drops the context reference and frees b. NULL allowed. In a forked child: returns at once.
 * Returns nothing. Owner thread (not svc's). */
void gn_bell_free(gn_bell_t *b);

#endif
