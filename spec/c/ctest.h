/* ctest.h: a tiny assertion harness for the C tests. Each test binary ends with the plain line
 * "N passed, N failed" and exits non-zero on any failure. */
#ifndef GN_CTEST_H
#define GN_CTEST_H

#include <stdio.h>
#include <stdlib.h>

static int ct_passed, ct_failed, ct_case_failed;

#define CHECK(cond, ...) do { \
    if (!(cond)) { \
      ct_case_failed = 1; \
      fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      fprintf(stderr, __VA_ARGS__); \
      fputc('\n', stderr); \
    } \
  } while (0)

#define RUN(fn) do { \
    ct_case_failed = 0; \
    fn(); \
    if (ct_case_failed) { ct_failed++; printf("not ok - %s\n", #fn); } \
    else { ct_passed++; printf("ok - %s\n", #fn); } \
    fflush(stdout); \
  } while (0)

#define CT_END() do { \
    printf("%d passed, %d failed\n", ct_passed, ct_failed); \
    return ct_failed ? 1 : 0; \
  } while (0)

#endif
