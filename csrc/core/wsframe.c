/* wsframe.c: RFC 6455 frames read in bulk and written masked (see wsframe.h).
 *
 * Why not lws's client parser: libwebsockets 4.1.6 and 4.3.3 run every received byte of a client
 * connection through lws_ws_client_rx_sm, one call per byte; that alone was most of the service
 * thread's time per event (RECEIVE.md). Here a frame header costs a few comparisons and a payload
 * costs nothing when it lies inside the buffer read (it is handed on in place) or one memcpy
 * when it does not.
 */
#include "wsframe.h"
#include "utf8.h"

#include <stdio.h>
#include <string.h>

void gn_wsf_init(gn_wsf_t *p, size_t max_message) {
  memset(p, 0, sizeof *p);
  p->max_message = max_message;
  p->check_utf8 = 1;
}

void gn_wsf_free(gn_wsf_t *p) { gn_buf_free(&p->msg); }

static int fail(gn_wsf_t *p, int code, const char *what) {
  p->code = code;
  snprintf(p->error, sizeof p->error, "%s", what);
  return -1;
}

int gn_wsf_close_code_ok(int code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

/* Bytes a header needs, from its first two bytes. */
static unsigned hdr_need(const unsigned char *h) {
  unsigned l7 = h[1] & 0x7f;
  return 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + (h[1] & 0x80 ? 4 : 0);
}

/* Checks a complete header h and starts its frame. Returns 0, or -1. */
static int start_frame(gn_wsf_t *p, const unsigned char *h) {
  unsigned l7 = h[1] & 0x7f;
  uint64_t len = l7;
  if (l7 == 126) {
    len = ((uint64_t)h[2] << 8) | h[3];
  } else if (l7 == 127) {
    len = 0;
    for (int i = 0; i < 8; i++) len = (len << 8) | h[2 + i];
    if (len >> 63) return fail(p, 1002, "frame length with its most significant bit set");
  }
  if (h[0] & 0x70) return fail(p, 1002, "frame with reserved bits set (no extension agreed)");
  if (h[1] & 0x80) return fail(p, 1002, "masked frame from the server");
  int op = h[0] & 0x0f, fin = (h[0] & 0x80) != 0;
  if (op >= 8) {
    if (op > GN_WS_PONG) {
      char msg[64];
      snprintf(msg, sizeof msg, "unknown control opcode %d", op);
      return fail(p, 1002, msg);
    }
    if (!fin) return fail(p, 1002, "fragmented control frame");
    if (len > 125) return fail(p, 1002, "control frame over 125 bytes");
    p->ctl_len = 0;
  } else {
    if (op > GN_WS_BINARY) {
      char msg[64];
      snprintf(msg, sizeof msg, "unknown data opcode %d", op);
      return fail(p, 1002, msg);
    }
    if (op == GN_WS_CONT && !p->frag) return fail(p, 1002, "continuation frame without a message");
    if (op != GN_WS_CONT && p->frag)
      return fail(p, 1002, "new message inside a fragmented one");
    size_t have = op == GN_WS_CONT ? p->msg.len : 0;
    if (len > p->max_message || have + len > p->max_message) {
      snprintf(p->error, sizeof p->error,
               "message of at least %llu bytes is over max_message_size (%zu bytes)",
               (unsigned long long)(have + len), p->max_message);
      p->code = 1009;
      return -1;
    }
    if (op != GN_WS_CONT) {
      p->binary = op == GN_WS_BINARY;
      gn_buf_reset(&p->msg);
    }
  }
  p->opcode = op;
  p->fin = fin;
  p->left = len;
  p->in_frame = 1;
  return 0;
}

/* A complete message: checked, handed on, the assembly buffer emptied. Returns the callback's
 * answer, or -1. */
static int deliver(gn_wsf_t *p, const char *data, size_t len, int binary,
                   const gn_wsf_cbs_t *cbs, void *ud) {
  if (!binary && p->check_utf8 && !gn_utf8_valid(data, len))
    return fail(p, 1007, "text message is not UTF-8");
  return cbs->on_message(ud, data, len, binary) ? 1 : 0;
}

/* The current frame's payload is complete. Returns 0, 1 (stop) or -1. */
static int end_frame(gn_wsf_t *p, const gn_wsf_cbs_t *cbs, void *ud) {
  p->in_frame = 0;
  if (p->opcode >= 8) {
    if (p->opcode == GN_WS_CLOSE) {
      if (p->ctl_len == 1) return fail(p, 1002, "close frame with a one-byte payload");
      if (p->ctl_len >= 2) {
        int code = (p->ctl[0] << 8) | p->ctl[1];
        if (!gn_wsf_close_code_ok(code)) {
          char msg[64];
          snprintf(msg, sizeof msg, "close code %d is not allowed on the wire", code);
          return fail(p, 1002, msg);
        }
        if (p->check_utf8 && !gn_utf8_valid(p->ctl + 2, p->ctl_len - 2))
          return fail(p, 1007, "close reason is not UTF-8");
      }
    }
    return cbs->on_control(ud, p->opcode, p->ctl, p->ctl_len) ? 1 : 0;
  }
  if (!p->fin) return 0;
  p->frag = 0;
  int rc = deliver(p, p->msg.p ? p->msg.p : "", p->msg.len, p->binary, cbs, ud);
  if (p->msg.cap > 65536) gn_buf_free(&p->msg); /* no large buffer kept per idle connection */
  else gn_buf_reset(&p->msg);
  return rc;
}

int gn_wsf_feed(gn_wsf_t *p, const void *buf, size_t len, const gn_wsf_cbs_t *cbs, void *ud,
                size_t *used) {
  const unsigned char *s = buf, *q = s, *end = s + len;
  int rc = 0;
  while (q < end && rc == 0) {
    if (!p->in_frame) {
      const unsigned char *h;
      if (p->hlen == 0 && end - q >= 2 && (size_t)(end - q) >= hdr_need(q)) {
        h = q; /* the whole header is here: read it in place */
        q += hdr_need(q);
      } else {
        while (q < end && (p->hlen < 2 || p->hlen < hdr_need(p->hdr))) p->hdr[p->hlen++] = *q++;
        if (p->hlen < 2 || p->hlen < hdr_need(p->hdr)) break;
        h = p->hdr;
        p->hlen = 0;
      }
      if (start_frame(p, h) != 0) return -1;
      /* the common case: a whole message inside this buffer, handed on where it lies */
      if (p->opcode != GN_WS_CONT && p->opcode < 8 && p->fin && (uint64_t)(end - q) >= p->left) {
        size_t n = (size_t)p->left;
        p->in_frame = 0;
        rc = deliver(p, (const char *)q, n, p->binary, cbs, ud);
        if (rc < 0) return -1;
        q += n;
        continue;
      }
      if (p->opcode < 8) {
        p->frag = 1;
        /* one allocation for what the header announces (bounded by max_message above) */
        if (p->left && p->msg.cap < p->msg.len + p->left + 1) {
          size_t want = p->msg.len + (size_t)p->left + 1;
          char *np = realloc(p->msg.p, want);
          if (!np) return fail(p, 1009, "out of memory assembling a message");
          p->msg.p = np;
          p->msg.cap = want;
        }
      }
    }
    size_t take = (uint64_t)(end - q) < p->left ? (size_t)(end - q) : (size_t)p->left;
    if (p->opcode >= 8) {
      memcpy(p->ctl + p->ctl_len, q, take);
      p->ctl_len += (unsigned)take;
    } else if (take && gn_buf_add(&p->msg, q, take) != 0) {
      return fail(p, 1009, "out of memory assembling a message");
    }
    q += take;
    p->left -= take;
    if (p->left == 0) rc = end_frame(p, cbs, ud);
    if (rc < 0) return -1;
  }
  if (used) *used = (size_t)(q - s);
  return rc ? 1 : 0;
}

size_t gn_wsf_build(unsigned char *out, int opcode, const void *payload, size_t len,
                    const unsigned char key[4]) {
  size_t n = 0;
  out[n++] = (unsigned char)(0x80 | (opcode & 0x0f));
  if (len < 126) {
    out[n++] = (unsigned char)(0x80 | len);
  } else if (len <= 0xffff) {
    out[n++] = 0x80 | 126;
    out[n++] = (unsigned char)(len >> 8);
    out[n++] = (unsigned char)len;
  } else {
    out[n++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) out[n++] = (unsigned char)((uint64_t)len >> (8 * i));
  }
  memcpy(out + n, key, 4);
  n += 4;
  const unsigned char *src = payload;
  for (size_t i = 0; i < len; i++) out[n + i] = src[i] ^ key[i & 3];
  return n + len;
}
