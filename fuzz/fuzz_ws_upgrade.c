/* Fuzzes the check of a server's answer to the WebSocket upgrade (csrc/core/wsupgrade.c).
 * Input: the answer's bytes. Invariants: an acceptance has status 101 and its header ends inside
 * the input with an empty line; a refusal says why; a prefix of an accepted answer is never
 * accepted; a refusal with a status never has 101 unless a field was wrong. */
#include "fuzz_util.h"
#include "wsupgrade.h"

#define KEY "dGhlIHNhbXBsZSBub25jZQ=="

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t used = 0;
  int status = -1;
  char err[160] = "";
  int rc = gn_wsu_check((const char *)data, size, KEY, &used, &status, err, sizeof err);
  FZ_ASSERT(rc >= -1 && rc <= 1);
  if (rc == 1) {
    FZ_ASSERT(status == 101 && used >= 16 && used <= size && used <= GN_WSU_MAX_ANSWER);
    FZ_ASSERT(data[used - 1] == '\n');
    size_t u2;
    int s2;
    FZ_ASSERT(gn_wsu_check((const char *)data, used - 1, KEY, &u2, &s2, err, sizeof err) != 1);
  } else if (rc == -1) {
    FZ_ASSERT(err[0] && memchr(err, 0, sizeof err));
    FZ_ASSERT(status == 0 || (status >= 100 && status <= 999));
  } else {
    FZ_ASSERT(size < GN_WSU_MAX_ANSWER);
  }
  return 0;
}
