/* Retry-After values (csrc/http.c gn_http_retry_after_ms): only RFC 7231's delta-seconds (digits)
 * or an HTTP-date are read; anything else (hex, floats, exponents, inf/nan, signs, trailing
 * text) is not a Retry-After at all, and huge values are clamped. */
#include <string.h>

#include "ctest.h"
#include "http.h"

#define DAY_MS (86400.0 * 1000.0)
/* Sun, 06 Nov 1994 08:49:37 GMT */
#define DATE_MS 784111777000.0

static double ra(const char *v, double now) { return gn_http_retry_after_ms(v, strlen(v), now); }

static void test_delta_seconds(void) {
  CHECK(ra("120", 0) == 120000, "%g", ra("120", 0));
  CHECK(ra(" 5\r\n", 0) == 5000, "blanks and the line end around it: %g", ra(" 5\r\n", 0));
  CHECK(ra("\t7 ", 0) == 7000, "%g", ra("\t7 ", 0));
  CHECK(ra("0", 0) == 0, "%g", ra("0", 0));
  CHECK(ra("0000000000000000000000000000000000000000003", 0) == 3000, "leading zeros: %g",
        ra("0000000000000000000000000000000000000000003", 0));
  /* not NUL-terminated: only len bytes are read */
  CHECK(gn_http_retry_after_ms("12345", 2, 0) == 12000, "%g",
        gn_http_retry_after_ms("12345", 2, 0));
}

static void test_rejected(void) {
  static const char *bad[] = {"0x10", "inf", "nan", "INF", "NaN", "infinity", "1e400", "1e3",
                              "-5", "+5", "-0", "1.5", ".5", "5.", "5 junk", "5s", "", "   ",
                              "\r\n", "5 5", "0x", "1,000", "١٢", NULL};
  for (int i = 0; bad[i]; i++)
    CHECK(ra(bad[i], 0) == -1, "\"%s\" gave %g", bad[i], ra(bad[i], 0));
  CHECK(gn_http_retry_after_ms("5\0009", 3, 0) == -1, "NUL inside");
  CHECK(gn_http_retry_after_ms("", 0, 0) == -1, "empty");
}

static void test_clamped(void) {
  CHECK(ra("86400", 0) == DAY_MS, "%g", ra("86400", 0));
  CHECK(ra("86401", 0) == DAY_MS, "%g", ra("86401", 0));
  CHECK(ra("99999999999999999999999999999999999999999999999999", 0) == DAY_MS, "%g",
        ra("99999999999999999999999999999999999999999999999999", 0));
  char big[400];
  memset(big, '9', sizeof big - 1);
  big[sizeof big - 1] = 0;
  CHECK(ra(big, 0) == DAY_MS, "399 digits: %g", ra(big, 0));
}

static void test_http_date(void) {
  const char *d = "Sun, 06 Nov 1994 08:49:37 GMT";
  CHECK(ra(d, DATE_MS - 30000) == 30000, "%g", ra(d, DATE_MS - 30000));
  CHECK(ra(d, DATE_MS + 30000) == 0, "a date in the past: now (%g)", ra(d, DATE_MS + 30000));
  CHECK(ra("Sunday, 06-Nov-94 08:49:37 GMT", DATE_MS - 1000) == 1000, "rfc850: %g",
        ra("Sunday, 06-Nov-94 08:49:37 GMT", DATE_MS - 1000));
  CHECK(ra("Sun Nov  6 08:49:37 1994", DATE_MS - 2000) == 2000, "asctime: %g",
        ra("Sun Nov  6 08:49:37 1994", DATE_MS - 2000));
  CHECK(ra("Fri, 31 Dec 9999 23:59:59 GMT", DATE_MS) == DAY_MS, "far future: clamped (%g)",
        ra("Fri, 31 Dec 9999 23:59:59 GMT", DATE_MS));
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 GMT\r\n", DATE_MS) == 0, "line end");
  CHECK(ra("yesterday", DATE_MS) == -1, "not a date");
  CHECK(ra("Sun, 06 Nov 1994 08:49:37 GMT; x=1e400", DATE_MS) == -1, "date with junk");
}

int main(void) {
  RUN(test_delta_seconds);
  RUN(test_rejected);
  RUN(test_clamped);
  RUN(test_http_date);
  CT_END();
}
