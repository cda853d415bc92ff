/* Fuzzes the request head of genesys-notify's /metrics listener (csrc/cli/http_parse.c), the
 * code that reads bytes from any peer that connects. Input: the bytes a peer sends, taken whole
 * and in two pieces (as two reads): the head's end is found at the same place either way and
 * never past the input; a head taken gives a method token and a path of visible ASCII starting
 * with '/', both NUL-terminated inside their buffers. */
#include "fuzz_util.h"
#include "http_parse.h"

static int tchar(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c && strchr("!#$%&'*+-.^_`|~", c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  size_t scanned = 0;
  size_t whole = lcli_http_head_end(in, size, &scanned);
  FZ_ASSERT(whole <= size && scanned <= size);
  /* the same bytes arriving in two reads (split where the first byte says) */
  size_t cut = size ? data[0] % (size + 1) : 0, sc = 0;
  size_t first = lcli_http_head_end(in, cut, &sc);
  size_t twice = first ? first : lcli_http_head_end(in, size, &sc);
  FZ_ASSERT(twice == whole);
  if (!whole) return 0;
  FZ_ASSERT(in[whole - 1] == '\n');
  lcli_req_t req;
  memset(&req, 0x55, sizeof req);
  if (!lcli_http_parse(in, whole, &req)) return 0;
  size_t m = strnlen(req.method, sizeof req.method), p = strnlen(req.path, sizeof req.path);
  FZ_ASSERT(m > 0 && m < sizeof req.method && p > 0 && p < sizeof req.path);
  for (size_t i = 0; i < m; i++) FZ_ASSERT(tchar((unsigned char)req.method[i]));
  FZ_ASSERT(req.path[0] == '/');
  for (size_t i = 0; i < p; i++) FZ_ASSERT(req.path[i] > ' ' && req.path[i] < 0x7f);
  /* the request line is what the head starts with */
  FZ_ASSERT(memcmp(in, req.method, m) == 0 && in[m] == ' ' && memcmp(in + m + 1, req.path, p) == 0);
  return 0;
}
