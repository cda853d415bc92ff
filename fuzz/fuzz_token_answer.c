/* Fuzzes the reading of the token endpoint's answer (csrc/oauth.c gn_token_parse_answer).
 * Input: the response body; each input is read as a 200 answer and as an error answer whose
 * status depends on the input's length (400, 401, 403, 429, 500, 503). */
#include <math.h>

#include "fuzz_util.h"
#include "oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *body = fz_cstr(data, size); /* libcurl's bodies end with a NUL */
  gn_token_result_t r;
  gn_token_kind_t k = gn_token_parse_answer(NULL, 200, body, size, &r);
  FZ_ASSERT(k == r.kind && (k == GN_TOK_OK || k == GN_TOK_RETRY));
  FZ_ASSERT(memchr(r.error, 0, sizeof r.error) != NULL);
  if (k == GN_TOK_OK) {
    /* a usable token: fits a header, no blanks or control characters, a sane lifetime that
     * converts to milliseconds without overflow */
    size_t n = strlen(r.token);
    FZ_ASSERT(n > 0 && n <= 4000);
    for (size_t i = 0; i < n; i++)
      FZ_ASSERT((unsigned char)r.token[i] > 0x20 && (unsigned char)r.token[i] < 0x7f);
    FZ_ASSERT(isfinite(r.expires_in_s) && r.expires_in_s >= 1.0 &&
              r.expires_in_s <= 366.0 * 86400);
  } else {
    FZ_ASSERT(r.token == NULL && r.error[0]);
  }
  gn_token_result_clear(&r);

  static const long statuses[] = {400, 401, 403, 429, 500, 503};
  long st = statuses[size % (sizeof statuses / sizeof *statuses)];
  k = gn_token_parse_answer(NULL, st, body, size, &r);
  FZ_ASSERT(k != GN_TOK_OK && r.token == NULL && r.error[0]);
  FZ_ASSERT(memchr(r.error, 0, sizeof r.error) != NULL);
  gn_token_result_clear(&r);
  free(body);
  return 0;
}
