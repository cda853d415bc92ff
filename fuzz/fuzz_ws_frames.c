/* Fuzzes the bulk WebSocket frame reader (csrc/core/wsframe.c) with what a server sends after the
 * upgrade. Input: a first byte choosing the read size (1..256, as TLS records and TCP reads may cut
 * anywhere), then the bytes. Invariants: every split gives the same messages and the same verdict
 * as the whole; no message is over max_message; text messages are UTF-8; a failure names a code. */
#include "fuzz_util.h"
#include "utf8.h"
#include "wsframe.h"

#define MAX 4096

typedef struct {
  unsigned long long hash;
  size_t count;
} sink_t;

static void mix(sink_t *s, const void *d, size_t len, int tag) {
  const unsigned char *p = d;
  s->hash = s->hash * 1099511628211ull ^ (unsigned)tag;
  for (size_t i = 0; i < len; i++) s->hash = (s->hash ^ p[i]) * 1099511628211ull;
  s->count++;
}

static int on_msg(void *ud, const char *d, size_t len, int binary) {
  FZ_ASSERT(len <= MAX);
  if (!binary) FZ_ASSERT(gn_utf8_valid(d, len));
  mix(ud, d, len, binary ? 'B' : 'T');
  return 0;
}

static int on_ctl(void *ud, int op, const unsigned char *d, size_t len) {
  FZ_ASSERT(len <= 125 && (op == GN_WS_CLOSE || op == GN_WS_PING || op == GN_WS_PONG));
  if (op == GN_WS_CLOSE) FZ_ASSERT(len != 1);
  mix(ud, d, len, op);
  return op == GN_WS_CLOSE; /* the transport stops reading at a close */
}

static const gn_wsf_cbs_t cbs = {on_msg, on_ctl};

static int run(const uint8_t *data, size_t size, size_t step, sink_t *s, int *code) {
  gn_wsf_t p;
  gn_wsf_init(&p, MAX);
  int rc = 0;
  size_t off = 0;
  while (off < size && rc == 0) {
    size_t n = size - off < step ? size - off : step, used = n;
    rc = gn_wsf_feed(&p, data + off, n, &cbs, s, &used);
    FZ_ASSERT(used <= n);
    off += n;
  }
  *code = rc < 0 ? p.code : 0;
  if (rc < 0) FZ_ASSERT(p.error[0] && (p.code == 1002 || p.code == 1007 || p.code == 1009));
  gn_wsf_free(&p);
  return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t step = (size_t)data[0] + 1;
  data++;
  size--;
  sink_t whole = {0}, cut = {0};
  int wc, cc;
  int rw = run(data, size, size ? size : 1, &whole, &wc);
  int rcut = run(data, size, step, &cut, &cc);
  FZ_ASSERT(rw == rcut && wc == cc && whole.count == cut.count && whole.hash == cut.hash);
  return 0;
}
