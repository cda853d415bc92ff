/* Fuzzes the reading of a Retry-After header value (csrc/http.c gn_http_retry_after_ms): only
 * delta-seconds or an HTTP-date give a delay, which is never negative, NaN or over a day. Input:
 * the header value as libcurl hands it (after "Retry-After:"). */
#include <math.h>

#include "fuzz_util.h"
#include "http.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* not NUL-terminated: an exact-size copy lets ASan see any read past the end */
  char *v = malloc(size ? size : 1);
  if (!v) abort();
  memcpy(v, data, size);
  static const double nows[] = {0, 784111777000.0, 1767225600000.0};
  for (int i = 0; i < 3; i++) {
    double ms = gn_http_retry_after_ms(v, size, nows[i]);
    FZ_ASSERT(ms == -1 || (isfinite(ms) && ms >= 0 && ms <= 86400.0 * 1000.0));
    if (ms >= 0 && i == 0 && size && data[0] >= '0' && data[0] <= '9') {
      /* delta-seconds: digits only (blanks and the line end aside) */
      for (size_t k = 0; k < size; k++)
        FZ_ASSERT((data[k] >= '0' && data[k] <= '9') || data[k] == ' ' || data[k] == '\t' ||
                  data[k] == '\r' || data[k] == '\n');
    }
  }
  free(v);
  return 0;
}
