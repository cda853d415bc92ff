/* wsframe.h: RFC 6455 frames as a client reads and writes them, in bulk (no I/O).
 *
 * The reader takes whatever a read returned (any split: one byte, a frame and a half, many
 * frames) and finds message boundaries itself. A complete unfragmented message that lies whole
 * inside the bytes fed is handed on in place, without a copy; only a message that spans reads or
 * comes in fragments is assembled in the reader's buffer. Every duty of a client's reader is
 * here: RSV bits and unknown opcodes refused (1002), masked frames from a server refused (1002),
 * control frames over 125 bytes or fragmented refused (1002), continuation without a start or a
 * new message inside a fragmented one refused (1002), text checked as UTF-8 (1007), a message over
 * max_message refused from its header, before any byte of it is stored (1009), close payloads
 * checked (code range, UTF-8 reason). Control frames may come between fragments.
 *
 * Pure functions of their arguments and the reader's state: any thread, one reader per thread.
 */
#ifndef GN_WSFRAME_H
#define GN_WSFRAME_H

#include <stddef.h>
#include <stdint.h>

#include "gn_util.h"

enum { GN_WS_CONT = 0, GN_WS_TEXT = 1, GN_WS_BINARY = 2, GN_WS_CLOSE = 8, GN_WS_PING = 9,
       GN_WS_PONG = 10 };

typedef struct {
  /* A complete data message; data is valid only during the call. Returns 0 to go on, nonzero to
   * stop reading (the rest of the bytes fed stay unread). */
  int (*on_message)(void *ud, const char *data, size_t len, int binary);
  /* A complete control frame (GN_WS_CLOSE, PING or PONG; a close's payload already checked).
   * Returns 0 to go on, nonzero to stop. */
  int (*on_control)(void *ud, int opcode, const unsigned char *data, size_t len);
} gn_wsf_cbs_t;

typedef struct {
  size_t max_message;     /* bytes; a longer message is refused from its frame headers */
  int check_utf8;         /* refuse text messages and close reasons that are not UTF-8 (1007) */
  unsigned char hdr[14];  /* a frame header split across reads */
  unsigned hlen;
  int in_frame;           /* reading the payload of the current frame */
  int opcode, fin;        /* of the current frame */
  uint64_t left;          /* its payload bytes not read yet */
  int frag;               /* a data message is being assembled in msg */
  int binary;             /* ... and it is binary */
  gn_buf_t msg;
  unsigned char ctl[125]; /* the current control frame's payload */
  unsigned ctl_len;
  int code;               /* after a failure: the close code to send (1002, 1007, 1009) */
  char error[128];        /* after a failure: what was wrong */
} gn_wsf_t;

/* Makes p a reader for a new connection (check_utf8 on). Returns nothing. */
void gn_wsf_init(gn_wsf_t *p, size_t max_message);
/* Frees what p holds. Returns nothing. */
void gn_wsf_free(gn_wsf_t *p);

/* Reads len bytes from a server. Returns 0 when all were read, 1 when a callback stopped it
 * (*used says how many were read, the rest are not), or -1 on a protocol failure (p->code and
 * p->error say which; p must not be fed again). */
int gn_wsf_feed(gn_wsf_t *p, const void *buf, size_t len, const gn_wsf_cbs_t *cbs, void *ud,
                size_t *used);

/* 1 when code may appear in a close frame on the wire (RFC 6455 7.4, IANA registry), else 0. */
int gn_wsf_close_code_ok(int code);

/* Writes a client frame (FIN set, masked with key) of opcode and len bytes of payload into out,
 * which must hold len + 14 bytes. Returns the frame's length. */
size_t gn_wsf_build(unsigned char *out, int opcode, const void *payload, size_t len,
                    const unsigned char key[4]);

#endif
